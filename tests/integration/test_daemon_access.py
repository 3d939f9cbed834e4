#!/usr/bin/env python3
"""Access: peers of the control socket are checked with SO_PEERCRED. A
client running as another uid (setpriv to nobody:nogroup), which the file
mode lets through, is refused unless its uid or gid is allowed. Past that
gate, vm-allow scopes what a peer sees: query-vms lists, and a "*"
subscription delivers, only the VMs it is allowed."""

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


# Runs as a tenant: negotiates, subscribes to every VM ("*"), says READY;
# on a line from stdin asks query-vms (all, and the VMs named in argv[2]
# one by one), then reads until every reply and the END event are in and
# prints all of it as JSON.
TENANT = qb.TENANT_PRELUDE + r"""
def until(want, end=False):
    while want - set(out["replies"]) or (end and not any(
            e["event"] == "END" for e in out["events"])):
        line = f.readline()
        if not line:
            raise EOFError("broker closed the connection")
        m = json.loads(line)
        if "event" in m:
            out["events"].append(m)
        elif "id" in m:
            out["replies"][m["id"]] = m
msg = json.loads(f.readline())
assert "QMP" in msg, msg
send({"execute": "qmp_capabilities", "id": "cap"})
send({"execute": "subscribe", "id": "sub", "arguments": {"vms": ["*"]}})
until({"cap", "sub"})
print("READY", flush=True)
sys.stdin.readline()
want = {"all"}
send({"execute": "query-vms", "id": "all"})
for n in json.loads(sys.argv[2]):
    send({"execute": "query-vms", "id": n, "arguments": {"name": n}})
    send({"execute": "domain-suspend", "id": "dom-" + n,
          "arguments": {"domain": n}})
    want |= {n, "dom-" + n}
until(want, end=True)
print(json.dumps(out), flush=True)
"""


def as_user(user, group, script, *argv):
	"""Starts a python3 script as user:group (a Popen, pipes on stdin
	and stdout)."""
	if os.geteuid() != 0:
		raise qb.Skip("needs root to switch uid")
	setpriv = shutil.which("setpriv")
	check(setpriv, "setpriv (util-linux) not installed")
	return subprocess.Popen([setpriv, "--reuid=" + user,
	    "--regid=" + group, "--clear-groups", "python3", "-c",
	    script % {"timeout": qb.TIMEOUT}] + list(argv),
	    stdin=subprocess.PIPE, stdout=subprocess.PIPE,
	    stderr=subprocess.PIPE, cwd="/")


def test_vm_allow_scopes_query_and_events():
	"""Two tenants, each allowed on its own VM (vm-allow) and both on a
	VM without a list: query-vms lists, and a "*" subscription delivers
	(VM_STATE_CHANGE and QEMU's events), the tenant's own VM and the
	open one, never the other tenant's; naming the other's VM is
	refused. Root still sees everything."""
	if os.geteuid() != 0:
		raise qb.Skip("needs root to switch uid")
	nobody = qb.user_ids()[0]
	daemon = qb.user_ids("daemon", "daemon")[0]
	tenants = {"nobody": ("nogroup", "ta"), "daemon": ("daemon", "tb")}
	with Env("vmallow", args=["--allow-uid", str(nobody),
	    "--allow-uid", str(daemon), "--vm-allow", "ta uid:nobody",
	    "--vm-allow", "tb uid:%d" % daemon]) as env:
		open_to_all(env)
		procs = {}
		try:
			for user, (group, own) in tenants.items():
				procs[user] = as_user(user, group, TENANT,
				    env.d.control, json.dumps(["ta", "tb"]))
			for user, p in procs.items():
				line = p.stdout.readline()
				check(line.strip() == b"READY", "%s client: %r %r"
				    % (user, line, b"" if line else
				    p.stderr.read(2000)))
			# Added after the tenants subscribed: their
			# VM_STATE_CHANGE events are part of what is judged.
			c = env.d.client()
			for v in ("ta", "tb", "open"):
				f = env.h.fake(v)
				c.cmd("vm-add", {"name": v, "socket": f.path})
			for v in ("ta", "tb", "open"):
				qb.wait_vm_state(c, v, "ready")
			check(sorted(v["name"] for v in c.cmd("query-vms")) ==
			    ["open", "ta", "tb"], "root's query-vms")
			for p in procs.values():
				p.stdin.write(b"go\n")
				p.stdin.flush()
			# In this order at the broker, so END comes last to
			# every tenant.
			for v in ("ta", "tb", "open"):
				c.cmd("vm-execute", {"vm": v, "command":
				    "x-fake-event", "arguments": {"event":
				    "EV_" + v}})
			c.cmd("vm-execute", {"vm": "open", "command":
			    "x-fake-event", "arguments": {"event": "END"}})
			outs = {}
			for user, p in procs.items():
				o, e = p.communicate(timeout=qb.TIMEOUT)
				check(p.returncode == 0, "%s client: %s" % (user,
				    e.decode()[-2000:]))
				outs[user] = json.loads(o)
		finally:
			for p in procs.values():
				if p.poll() is None:
					p.kill()
					p.wait()
		for user, (_, own) in tenants.items():
			other = "tb" if own == "ta" else "ta"
			out = outs[user]
			rep = out["replies"]
			listed = [v["name"] for v in rep["all"]["return"]]
			check(listed == sorted(["open", own]), "%s's query-vms "
			    "lists %r" % (user, listed))
			check([v["name"] for v in rep[own]["return"]] == [own],
			    "%s's query-vms of its VM: %r" % (user, rep[own]))
			check(rep[other].get("error", {}).get("desc") ==
			    "Permission denied", "%s's query-vms of %s: %r" %
			    (user, other, rep[other]))
			# a domain libvirt runs is the VM of the same name
			check(rep["dom-" + other].get("error", {}).get("desc")
			    == "Permission denied", "%s's domain-suspend of "
			    "%s: %r" % (user, other, rep["dom-" + other]))
			check(rep["dom-" + own].get("error", {}).get("desc")
			    != "Permission denied", "%s's domain-suspend of "
			    "its own %s: %r" % (user, own, rep["dom-" + own]))
			vms = {e.get("vm") for e in out["events"]}
			check(other not in vms, "%s got %s's events: %r" % (user,
			    other, [e for e in out["events"] if e.get("vm") ==
			    other][:3]))
			for v in (own, "open"):
				names = {e["event"] for e in out["events"]
				    if e.get("vm") == v}
				check({"EV_" + v, "VM_STATE_CHANGE"} <= names,
				    "%s: events of %s: %r" % (user, v, names))
		env.finish()


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


qb.main([test_peer_refused, test_peer_allowed, test_socket_group,
    test_vm_allow_scopes_query_and_events])
