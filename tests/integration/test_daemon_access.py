#!/usr/bin/env python3
"""Access: peers of the control socket are checked with SO_PEERCRED. A
client running as another uid (setpriv to nobody:nogroup), which the file
mode lets through, is refused unless its uid or gid is allowed."""

import json
import os
import shutil
import subprocess

import qb
from qb import check, Env

# Runs as nobody: connect, try to negotiate and query, report what came
# back until EOF.
CLIENT = r"""
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(%(timeout)f)
out = {"connected": False, "msgs": [], "eof": False}
try:
    s.connect(sys.argv[1])
    out["connected"] = True
    try:
        s.sendall(b'{"execute": "qmp_capabilities", "id": 1}\r\n'
                  b'{"execute": "query-vms", "id": 2}\r\n')
    except OSError as e:
        out["send_error"] = str(e)
    buf = b""
    while True:
        try:
            d = s.recv(65536)
        except ConnectionResetError:
            d = b""
        if not d:
            out["eof"] = True
            break
        buf += d
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if line.strip():
                out["msgs"].append(json.loads(line))
        if any(m.get("id") == 2 for m in out["msgs"]):
            break
except Exception as e:
    out["error"] = "%%s: %%s" %% (type(e).__name__, e)
print(json.dumps(out))
"""


def as_nobody(path):
	if os.geteuid() != 0:
		raise qb.Skip("needs root to switch uid")
	setpriv = shutil.which("setpriv")
	check(setpriv, "setpriv (util-linux) not installed")
	p = subprocess.run([setpriv, "--reuid=nobody", "--regid=nogroup",
	    "--clear-groups", "python3", "-c", CLIENT % {"timeout": qb.TIMEOUT},
	    path], capture_output=True, timeout=qb.TIMEOUT * 2, cwd="/")
	check(p.returncode == 0, "client as nobody failed: %s" %
	    p.stderr.decode())
	return json.loads(p.stdout)


def open_to_all(env):
	"""Let the filesystem pass anyone, so only SO_PEERCRED decides."""
	for d in (env.h.dir, os.path.dirname(env.d.control)):
		os.chmod(d, 0o755)
	os.chmod(env.d.control, 0o666)


def refused(out):
	return out["connected"] and not any("return" in m and m.get("id") == 2
	    for m in out["msgs"]) and (out["eof"] or "error" in out)


def test_peer_refused():
	with Env("peercred") as env:
		open_to_all(env)
		out = as_nobody(env.d.control)
		check(out["connected"], "could not even connect: %r" % out)
		check(refused(out), "nobody was served: %r" % out)
		check(out["eof"], "connection not closed: %r" % out)
		# The same on a VM's shared monitor socket.
		c = env.d.client()
		f = env.h.fake("v1")
		c.cmd("vm-add", {"name": "v1", "socket": f.path})
		qb.wait_vm_state(c, "v1", "ready")
		path = env.d.vm_socket("v1")
		for d in (env.d.run_dir, os.path.dirname(path)):
			os.chmod(d, 0o755)
		os.chmod(path, 0o666)
		out = as_nobody(path)
		check(out["connected"] and out["eof"] and not any(
		    "return" in m for m in out["msgs"]),
		    "nobody was served on the shared socket: %r" % out)
		# Root still is, and the refusals left nothing behind.
		env.h.qmp(path).cmd("query-status")
		c.cmd("query-vms")
		env.finish()


def test_peer_allowed():
	uid, gid = qb.user_ids()
	for flag, val in (("--allow-uid", uid), ("--allow-gid", gid)):
		with Env("peerok", args=[flag, str(val)]) as env:
			open_to_all(env)
			out = as_nobody(env.d.control)
			check(not refused(out), "nobody allowed by %s refused: %r"
			    % (flag, out))
			env.finish()


def test_socket_group():
	uid, gid = qb.user_ids()
	with Env("sockgroup", args=["--socket-group", "nogroup"]) as env:
		st = os.stat(env.d.control)
		check(st.st_gid == gid, "control socket group %d" % st.st_gid)
		check(st.st_mode & 0o777 == 0o660, "mode %o" % st.st_mode)
		env.finish()


qb.main([test_peer_refused, test_peer_allowed, test_socket_group])
