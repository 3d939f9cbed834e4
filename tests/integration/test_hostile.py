#!/usr/bin/env python3
"""Hostile clients of the control socket.

Every case ends the standard way (qb.Env.finish): the daemon is alive,
answers query-vms, its fds and children are back at the baseline taken
before the case, and it exits 0 on SIGTERM (so a sanitizer or valgrind
report fails the case too). Each case could fail by: the daemon dying or
hanging, a reply missing or malformed, the hostile connection kept when
it must go (or dropped when it must stay), or an fd leaked.
"""

import json
import os
import resource
import socket
import stat
import subprocess
import time

import qb
import hplib
from qb import check, Env


def alive_and_answers(d):
	check(d.alive(), "daemon died: " + d.tail())
	c = d.client()
	check(isinstance(c.cmd("query-vms"), list), "query-vms")
	c.close()


def raw(d):
	"""A connection that has read the greeting and negotiated."""
	c = d.client()
	return c


def expect_bad_line(c, data):
	"""data is not a usable request: one id-less error, the connection
	stays and still answers."""
	c.send_raw(data)
	r = c.wait_noid()
	check("error" in r and r["error"].get("class") == "GenericError" and
	    r["error"].get("desc"), "expected an id-less error for %r, got %r"
	    % (data[:60], r))
	check(isinstance(c.cmd("query-vms"), list),
	    "connection unusable after %r" % data[:60])


def expect_closed(c, what):
	c.wait_closed()
	check(c.eof, "%s: connection not closed" % what)


# ---- malformed input ----

def test_line_over_limit():
	with Env("hostile-big", args=["--max-msg", "65536"]) as env:
		c = env.d.client()
		other = env.d.client()
		c.send_raw(b'{"execute": "query-vms", "id": "' +
		    b"x" * 70000)
		expect_closed(c, "line past max-msg")
		check(isinstance(other.cmd("query-vms"), list),
		    "other client disturbed")
		# exactly at the limit is no reason to close: a long but
		# legal line gets its (error) reply
		line = b'{"execute": "query-vms", "id": "'
		id = "y" * (65536 - len(line) - 4)
		line += id.encode() + b'"}\r\n'
		ok = env.d.client()
		ok.send_raw(line)
		r = ok.wait_reply(id)
		check("return" in r, "line at the limit: %r" % r)
		env.finish()


def test_line_over_default_limit():
	"""The default max-msg is 4 MiB (docs/limits.md)."""
	with Env("hostile-bigdef") as env:
		c = env.d.client()
		c.send_raw(b"[" + b" " * (4 * 1024 * 1024 + 16))
		expect_closed(c, "line past the default 4 MiB")
		alive_and_answers(env.d)
		env.finish()


def expect_errors(c, data, descs):
	"""data gets exactly these id-less errors, as QEMU 7.2 answers it
	(test_qmp_grammar checks the same against QEMU itself), and the
	connection still answers."""
	c.send_raw(data)
	for want in descs:
		r = c.wait_noid()
		check(r.get("error", {}).get("desc") == want, "%r: expected "
		    "%r, got %r" % (data[:60], want, r))
	check(isinstance(c.cmd("query-vms"), list),
	    "connection unusable after %r" % data[:60])
	check(not c.noid, "%r: more answers than QEMU's: %r" % (data[:60],
	    c.noid))


def test_deep_nesting():
	"""QEMU's limit is 1024 levels: the bracket past it is answered with
	an error and dropped, and the count starts over."""
	with Env("hostile-nest") as env:
		c = env.d.client()
		nest = "JSON nesting depth limit exceeded"
		expect_errors(c, b"[" * 1025, [nest])
		expect_errors(c, b"{" + b'"a":{' * 1024 + b"\n", [nest])
		expect_errors(c, b"[" * 2050 + b"\n", [nest, nest])
		# deep nesting inside a real command's arguments
		expect_errors(c, b'{"execute": "vm-add", "arguments": '
		    b'{"name": ' + b"[" * 1023, [nest])
		env.finish()


def test_invalid_utf8():
	with Env("hostile-utf8") as env:
		c = env.d.client()
		for bad in (b'{"execute": "query-vms", "id": "\xff\xfe"}\n',
		    b'{"execute": "query-\xc0\xafvms"}\n',	# overlong
		    b'{"execute": "query-vms", "id": "\xed\xa0\x80"}\n',
		    b'{"execute": "query-vms", "id": "\\ud800"}\n',
		    b'{"execute": "\xe2\x82"}\n'):		# truncated
			expect_bad_line(c, bad)
		env.finish()


def test_nul_bytes():
	"""NUL is a stray byte to QEMU's lexer: an error each, then it
	starts over (after a NUL inside a string it skips to the next
	structural character, as QEMU does)."""
	with Env("hostile-nul") as env:
		c = env.d.client()
		stray = "JSON parse error, stray ''"
		c.send_raw(b'{"execute": "query-vms"}\x00\n')
		check(c.wait_noid().get("return") == [], "command before NUL")
		check(c.wait_noid()["error"]["desc"] == stray, "NUL after")
		expect_errors(c, b'{"execute": "query\x00-vms"}\n',
		    ["JSON parse error, stray '\"query'",
		    "JSON parse error, expecting value"])
		expect_errors(c, b'\x00\x00\x00\n', [stray] * 3)
		# an id may hold U+0000 (QEMU gives it back)...
		c.send_raw(b'{"execute": "query-vms", "id": "a\\u0000b"}\n')
		check("return" in c.wait_reply("a\u0000b"), "NUL in an id")
		# ...but no name or path may: "a\u0000b" (read as QEMU reads
		# it, a string with U+0000 in it) must not become "a"
		c.send_raw(b'{"execute": "vm-add", "arguments": '
		    b'{"name": "a\\u0000b", "socket": "/tmp/x.sock"}, '
		    b'"id": 7}\n')
		r = c.wait_reply(7)
		check(r.get("error", {}).get("class") == "GenericError",
		    "vm-add of a name with U+0000: %r" % r)
		c.send_raw(b'{"execute": "vm-add", "arguments": '
		    b'{"name": "b", "socket": "/tmp/x\\u0000.sock"}, '
		    b'"id": 8}\n')
		r = c.wait_reply(8)
		check(r.get("error", {}).get("class") == "GenericError",
		    "vm-add of a path with U+0000: %r" % r)
		check(c.cmd("query-vms") == [], "a VM appeared")
		env.finish()


# ---- slow and stuck clients ----

def test_half_line_then_silence():
	with Env("hostile-half", args=["--line-timeout-ms", "300"]) as env:
		half = env.d.client()
		quiet = env.d.client()
		half.send_raw(b'{"execute": "query-vm')
		expect_closed(half, "half a line, then silence")
		# a connection with no partial line is never timed out
		time.sleep(0.6)
		check(isinstance(quiet.cmd("query-vms"), list),
		    "an idle but complete client was dropped")
		check("incomplete line" in env.d.output(),
		    "the daemon did not say why it closed")
		env.finish()


def test_half_line_default_timeout():
	"""Without --line-timeout-ms a partial line survives a short pause
	(the default is 30 s, docs/limits.md) and the line still works."""
	with Env("hostile-halfdef") as env:
		c = env.d.client()
		c.send_raw(b'{"execute": "query-')
		time.sleep(0.5)
		c.send_raw(b'vms", "id": "late"}\n')
		check("return" in c.wait_reply("late"), "late half")
		env.finish()


def test_never_reads():
	with Env("hostile-noread", args=["--reply-stall-ms", "300"]) as env:
		d = env.d
		s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
		s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
		s.connect(d.control)
		s.setblocking(False)
		req = b'{"execute": "qmp_capabilities"}\n' + \
		    b'{"execute": "query-commands", "id": 1}\n' * 4000
		sent = 0
		deadline = time.monotonic() + qb.TIMEOUT
		while sent < len(req) and time.monotonic() < deadline:
			try:
				sent += s.send(req[sent:])
			except BlockingIOError:
				time.sleep(0.01)
			except OSError:
				break	# the daemon gave up on us: fine
		other = d.client()
		check(isinstance(other.cmd("query-vms"), list),
		    "other client starved by a non-reader")
		other.close()
		# the daemon drops its end: its fds go back to the baseline
		# while ours is still open
		d.check_baseline()
		s.close()
		check("unread" in d.output() or "stall" in d.output(),
		    "the daemon did not say why it dropped the reader")
		env.finish()


# ---- many connections ----

def raise_nofile(n):
	soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
	if soft < n:
		resource.setrlimit(resource.RLIMIT_NOFILE, (min(n, hard), hard))


def open_many(path, n):
	out = []
	for _ in range(n):
		s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
		s.settimeout(qb.TIMEOUT)
		s.connect(path)
		out.append(s)
	return out


def first_line(s):
	buf = b""
	while b"\n" not in buf:
		d = s.recv(4096)
		if not d:
			break
		buf += d
	return buf.split(b"\n", 1)[0]


def test_thousand_connections():
	raise_nofile(4096)
	with Env("hostile-many", args=["--max-clients", "200"]) as env:
		socks = open_many(env.d.control, 1000)
		greeted = refused = 0
		for s in socks:
			line = first_line(s)
			if b'"QMP"' in line:
				greeted += 1
			elif b"Too many clients" in line:
				refused += 1
				check(first_line(s) == b"",
				    "refused connection left open")
			else:
				raise qb.Failure("unexpected first line %r" %
				    line)
		check(greeted == 200 and refused == 800,
		    "max-clients 200: %d greeted, %d refused" %
		    (greeted, refused))
		check("too many clients" in env.d.output(),
		    "refusals not logged")
		for s in socks:
			s.close()
		env.d.check_baseline()
		alive_and_answers(env.d)
		env.finish()


def test_thousand_connections_default():
	"""The default max-clients (1024) takes 1000 at once."""
	raise_nofile(4096)
	with Env("hostile-manydef") as env:
		socks = open_many(env.d.control, 1000)
		bad = [first_line(s) for s in socks]
		bad = [l for l in bad if b'"QMP"' not in l]
		check(not bad, "%d of 1000 not greeted, e.g. %r" % (len(bad),
		    bad[:1]))
		for s in socks:
			s.close()
		env.finish()


def cpu_ticks(pid):
	with open("/proc/%d/stat" % pid) as f:
		parts = f.read().rsplit(")", 1)[1].split()
	return int(parts[11]) + int(parts[12])	# utime + stime


def test_emfile_pauses_accept():
	"""With few fds left, accept() fails with EMFILE: the daemon must
	stop accepting for a while instead of waking up for the pending
	connection over and over, and take it once fds are back."""
	raise_nofile(4096)
	prlimit = "/usr/bin/prlimit"
	check(os.access(prlimit, os.X_OK), "prlimit (util-linux) missing")
	with Env("hostile-emfile") as env:
		d = env.d
		nfds = len(os.listdir("/proc/%d/fd" % d.pid))
		lim = nfds + 8
		soft = resource.prlimit(d.pid, resource.RLIMIT_NOFILE)[0]
		subprocess.run([prlimit, "--pid", str(d.pid),
		    "--nofile=%d:" % lim], check=True)
		socks = open_many(d.control, 30)	# past the limit
		hz = os.sysconf("SC_CLK_TCK")
		# the first few get in; wait until the daemon hits the wall
		qb.wait_for(lambda: "accept" in d.output() or
		    len(os.listdir("/proc/%d/fd" % d.pid)) >= lim - 1,
		    "daemon at its fd limit")
		t0 = cpu_ticks(d.pid)
		time.sleep(2)
		used = (cpu_ticks(d.pid) - t0) / hz
		# a spinning loop burns ~2 s here; a paused one almost none
		check(used < 0.5, "daemon used %.2f s of CPU in 2 s at EMFILE "
		    "(spinning on accept?)" % used)
		for s in socks:
			s.close()
		subprocess.run([prlimit, "--pid", str(d.pid),
		    "--nofile=%d:" % soft], check=True)
		# fds are back: new connections are taken again
		alive_and_answers(d)
		env.finish()


# ---- file descriptors ----

def fds_with(d, n):
	"""The daemon holds its baseline fds plus n connections."""
	want = len(d.baseline_fds) + n
	try:
		qb.wait_for(lambda: len(qb.fd_list(d.pid)) == want,
		    "daemon fds at baseline + %d" % n)
	except qb.Failure:
		raise qb.Failure("daemon fd leak: want %d, have %r" %
		    (want, qb.fd_list(d.pid)))


def test_too_many_fds():
	with Env("hostile-fds") as env:
		c = env.d.client()
		r, w = os.pipe()
		try:
			fds = [r] * 40		# each arrives as its own fd
			id = c.send_cmd("query-vms", fds=fds)
			rep = c.wait_reply(id)
			check("return" in rep, "query-vms with 40 fds: %r" % rep)
			# the extras were reported (id-less), not kept
			c.poll_msgs()
			fds_with(env.d, 1)
			# 16 fds: the limit, no complaint, all closed
			id = c.send_cmd("query-vms", fds=[w] * 16)
			check("return" in c.wait_reply(id), "16 fds")
			fds_with(env.d, 1)
		finally:
			os.close(r)
			os.close(w)
		env.finish()


def test_max_fds_option():
	"""--max-fds 2: a third fd is closed and reported, the request still
	runs."""
	with Env("hostile-maxfds", args=["--max-fds", "2"]) as env:
		c = env.d.client()
		r, w = os.pipe()
		try:
			id = c.send_cmd("query-vms", fds=[r, w, r])
			check("return" in c.wait_reply(id), "query-vms")
			e = c.wait_noid()
			check("too many file descriptors" in
			    e["error"]["desc"] and "at most 2" in
			    e["error"]["desc"], "report: %r" % e)
			fds_with(env.d, 1)
		finally:
			os.close(r)
			os.close(w)
		env.finish()


def test_fds_on_fdless_request():
	with Env("hostile-fdless") as env:
		c = env.d.client()
		r, w = os.pipe()
		try:
			for cmd in ("query-vms", "query-version",
			    "query-subscriptions", "no-such-command"):
				c.execute(cmd, fds=[r, w, r])
			# an fd on a line that is not even JSON
			fds_with(env.d, 1)
			socket.send_fds(c.sock, [b"not json\n"], [r, w])
			c.wait_noid()
			# fds with no line at all, then EOF
			s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
			s.connect(env.d.control)
			socket.send_fds(s, [b'{"exec'], [r, w])
			s.close()
			fds_with(env.d, 1)
		finally:
			os.close(r)
			os.close(w)
		env.finish()


def fake_vm(env, name="vm1"):
	f = hplib.fake(env.h, name)
	c = env.d.client()
	c.cmd("vm-add", {"name": name, "socket": f.path})
	qb.wait_vm_state(c, name, "ready")
	return f, c


def no_devices(c, what):
	s = hplib.snapshot(c, "vm1")
	check(not s["nodes"] and not s["fdsets"] and
	    not any(p.startswith(("n", "d")) for p in s["peripheral"]),
	    "%s left something in the VM: %r" % (what, s))


def test_non_tap_fd_as_tap():
	with Env("hostile-tap", daemon=False) as env:
		env.d = env.h.daemon()
		hplib.baseline(env.d)
		f, c = fake_vm(env)
		r, w = os.pipe()
		sp = socket.socketpair()
		null = os.open("/dev/null", os.O_RDWR)
		tun = os.open("/dev/net/tun", os.O_RDWR)	# no TUNSETIFF
		try:
			for what, fd in (("pipe", r), ("socket", sp[0].fileno()),
			    ("/dev/null", null), ("unattached tun", tun)):
				e = c.cmd_error("nic-add", {"vm": "vm1",
				    "id": "n0"}, fds=[fd])
				check("tap" in e[1], "%s as a tap: %r" %
				    (what, e))
		finally:
			for fd in (r, w, null, tun):
				os.close(fd)
			sp[0].close()
			sp[1].close()
		no_devices(c, "non-tap nic-add")
		env.finish()


def test_dir_fifo_disk_fd():
	with Env("hostile-diskfd", daemon=False) as env:
		root, img = hplib.image_root(env)
		hplib.baseline(env.d)
		f, c = fake_vm(env)
		fifo = env.h.path("fifo")
		os.mkfifo(fifo)
		dfd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
		ffd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
		sp = socket.socketpair()
		try:
			for what, fd in (("directory", dfd), ("FIFO", ffd),
			    ("socket", sp[0].fileno())):
				e = c.cmd_error("disk-add", {"vm": "vm1",
				    "id": "d0"}, fds=[fd])
				check("regular file or a block device" in e[1],
				    "%s as a disk: %r" % (what, e))
			# two fds where one is taken: refused, both closed
			a = os.open(hplib.image(img, 1 << 20), os.O_RDWR)
			try:
				c.cmd_error("disk-add", {"vm": "vm1", "id": "d0"},
				    fds=[a, a])
			finally:
				os.close(a)
		finally:
			os.close(dfd)
			os.close(ffd)
			sp[0].close()
			sp[1].close()
		no_devices(c, "bad disk fds")
		env.finish()


def test_disk_paths_outside_roots():
	with Env("hostile-paths", daemon=False) as env:
		root = env.h.path("images")
		outside = env.h.path("outside")
		os.makedirs(os.path.join(root, "sub"))
		os.makedirs(outside)
		secret = hplib.image(os.path.join(outside, "secret.raw"),
		    1 << 20)
		hplib.image(os.path.join(root, "ok.raw"), 1 << 20)
		os.symlink(secret, os.path.join(root, "link.raw"))
		os.symlink(outside, os.path.join(root, "linkdir"))
		os.symlink("../outside/secret.raw", os.path.join(root,
		    "rel.raw"))
		os.mkfifo(os.path.join(root, "fifo.raw"))
		os.makedirs(os.path.join(root, "dir.raw"))
		# device nodes: a char device inside the root, a block device
		# outside it (loop0's numbers; never opened)
		os.mknod(os.path.join(root, "null.raw"), stat.S_IFCHR | 0o600,
		    os.makedev(1, 3))
		os.mknod(os.path.join(outside, "blk"), stat.S_IFBLK | 0o600,
		    os.makedev(7, 0))
		env.d = env.h.daemon(args=["--image-root", root])
		hplib.baseline(env.d)
		f, c = fake_vm(env)
		bad = [
		    os.path.join(root, "..", "outside", "secret.raw"),
		    os.path.join(root, "sub", "..", "ok.raw"),
		    os.path.join(root, ".", "ok.raw"),
		    root + "//ok.raw",
		    os.path.join(root, "link.raw"),
		    os.path.join(root, "rel.raw"),
		    os.path.join(root, "linkdir", "secret.raw"),
		    os.path.join(root, "fifo.raw"),
		    os.path.join(root, "dir.raw"),
		    os.path.join(root, "null.raw"),
		    os.path.join(outside, "blk"),
		    "/dev/null", "/dev/zero", "/etc/shadow",
		    "images/ok.raw", "file:" + secret,
		]
		for src in bad:
			e = c.cmd_error("disk-add", {"vm": "vm1", "id": "d0",
			    "source": src})
			check(e[0] == "GenericError", "%s: %r" % (src, e))
		# the daemon did not hang on the FIFO and still works: the
		# good path goes in and out
		c.cmd("disk-add", {"vm": "vm1", "id": "d0",
		    "source": os.path.join(root, "ok.raw")})
		c.cmd("disk-del", {"vm": "vm1", "id": "d0"})
		no_devices(c, "refused disk paths")
		env.finish()


# ---- per-VM allow list ----

# Runs as nobody: negotiates, subscribes to everything, runs the requests
# given as JSON in argv[2], says READY, waits for a line on stdin, then
# collects events until EV2 (or EOF) and prints everything as JSON.
NOBODY = r"""
import json, socket, sys
out = {"replies": {}, "events": [], "first": None}
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(%(timeout)f)
s.connect(sys.argv[1])
f = s.makefile("rwb")
def send(o):
    f.write(json.dumps(o).encode() + b"\n"); f.flush()
def msg():
    line = f.readline()
    if not line:
        raise EOFError
    return json.loads(line)
out["first"] = msg()
if "QMP" in out["first"]:
    reqs = [{"execute": "qmp_capabilities", "id": "cap"},
            {"execute": "subscribe", "id": "sub"}] + json.loads(sys.argv[2])
    for r in reqs:
        send(r)
    want = {r["id"] for r in reqs}
    while want - set(out["replies"]):
        m = msg()
        if "id" in m:
            out["replies"][m["id"]] = m
        elif "event" in m:
            out["events"].append(m)
    print("READY", flush=True)
    sys.stdin.readline()
    try:
        while True:
            m = msg()
            if "event" in m:
                out["events"].append(m)
                if m["event"] == "EV2":
                    break
    except (EOFError, OSError):
        pass
print(json.dumps(out), flush=True)
"""


def test_vm_allow_list():
	"""vm-allow: nobody may reach the broker (allow-uid) and act on vm2,
	which lists it, but not on vm1, which lists another user: every
	command naming vm1 is refused and logged with uid and pid, vm1's
	shared socket refuses nobody, and vm1's events never reach it."""
	import shutil
	if os.geteuid() != 0:
		raise qb.Skip("needs root to switch uid")
	setpriv = shutil.which("setpriv")
	check(setpriv, "setpriv (util-linux) not installed")
	uid, gid = qb.user_ids()
	with Env("hostile-allow", args=["--allow-uid", str(uid),
	    "--vm-allow", "vm1 uid:daemon,gid:daemon",
	    "--vm-allow", "vm2 uid:%d" % uid]) as env:
		d = env.d
		c = d.client()
		fakes = {}
		for v in ("vm1", "vm2"):
			fakes[v] = hplib.fake(env.h, v)
			c.cmd("vm-add", {"name": v, "socket": fakes[v].path})
			qb.wait_vm_state(c, v, "ready")
		for p in (env.h.dir, os.path.dirname(d.control), d.run_dir,
		    os.path.join(d.run_dir, "vm")):
			os.chmod(p, 0o755)
		for p in (d.control, d.vm_socket("vm1"), d.vm_socket("vm2")):
			os.chmod(p, 0o666)
		reqs = []
		for v in ("vm1", "vm2"):
			reqs += [
			    {"execute": "vm-execute", "id": v + "-exec",
			     "arguments": {"vm": v, "command": "query-status"}},
			    {"execute": "query-vms", "id": v + "-query",
			     "arguments": {"name": v}},
			    {"execute": "query-pci-slots", "id": v + "-slots",
			     "arguments": {"vm": v}},
			    {"execute": "disk-del", "id": v + "-diskdel",
			     "arguments": {"vm": v, "id": "nosuch"}},
			]
		reqs.append({"execute": "vm-remove", "id": "vm1-remove",
		    "arguments": {"name": "vm1"}})
		p = subprocess.Popen([setpriv, "--reuid=nobody",
		    "--regid=nogroup", "--clear-groups", "python3", "-c",
		    NOBODY % {"timeout": qb.TIMEOUT}, d.control,
		    json.dumps(reqs)], stdin=subprocess.PIPE,
		    stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd="/")
		try:
			line = p.stdout.readline()
			check(line.strip() == b"READY", "nobody client: %r %r" %
			    (line, p.stderr.read(2000) if not line else ""))
			for v, ev in (("vm1", "EV1"), ("vm2", "EV2")):
				c.cmd("vm-execute", {"vm": v, "command":
				    "x-fake-event", "arguments": {"event": ev}})
			p.stdin.write(b"go\n")
			p.stdin.flush()
			outb, errb = p.communicate(timeout=qb.TIMEOUT)
		finally:
			if p.poll() is None:
				p.kill()
				p.wait()
		out = json.loads(outb)
		rep = out["replies"]
		for k in ("vm1-exec", "vm1-query", "vm1-slots", "vm1-diskdel",
		    "vm1-remove"):
			e = rep[k].get("error", {})
			check(e.get("desc") == "Permission denied",
			    "%s as nobody: %r" % (k, rep[k]))
		check("return" in rep["vm2-exec"] and "return" in
		    rep["vm2-query"] and "return" in rep["vm2-slots"],
		    "vm2 refused to nobody: %r" % rep)
		check("Permission denied" not in json.dumps(rep["vm2-diskdel"]),
		    "vm2 disk-del: %r" % rep["vm2-diskdel"])
		names = [e["event"] for e in out["events"]]
		check("EV2" in names and "EV1" not in names and not any(
		    e.get("vm") == "vm1" for e in out["events"]),
		    "events seen by nobody: %r" % names)
		check(("refused vm-execute on VM 'vm1' for uid %d" % uid) in
		    d.output() and "pid" in d.output(), "refusal not logged")
		check(c.cmd("query-vms", {"name": "vm1"}), "vm1 removed")
		# the shared sockets: vm1 refuses nobody, vm2 greets it
		p = subprocess.run([setpriv, "--reuid=nobody",
		    "--regid=nogroup", "--clear-groups", "python3", "-c",
		    NOBODY % {"timeout": qb.TIMEOUT}, d.vm_socket("vm1"), "[]"],
		    capture_output=True, timeout=qb.TIMEOUT, cwd="/",
		    input=b"\n")
		first = json.loads(p.stdout.splitlines()[-1])["first"]
		check(first.get("error", {}).get("desc") == "Permission denied",
		    "vm1 shared socket as nobody: %r" % first)
		check("(vm-allow)" in d.output(), "shared refusal not logged")
		p = subprocess.run([setpriv, "--reuid=nobody",
		    "--regid=nogroup", "--clear-groups", "python3", "-c",
		    "import socket,sys; s=socket.socket(socket.AF_UNIX);"
		    "s.connect(sys.argv[1]); print(s.makefile().readline())",
		    d.vm_socket("vm2")], capture_output=True,
		    timeout=qb.TIMEOUT, cwd="/")
		check(b'"QMP"' in p.stdout, "vm2 shared socket refused "
		    "nobody: %r %r" % (p.stdout, p.stderr))
		env.finish()


qb.main([
    test_line_over_limit,
    test_line_over_default_limit,
    test_deep_nesting,
    test_invalid_utf8,
    test_nul_bytes,
    test_half_line_then_silence,
    test_half_line_default_timeout,
    test_never_reads,
    test_thousand_connections,
    test_thousand_connections_default,
    test_emfile_pauses_accept,
    test_too_many_fds,
    test_max_fds_option,
    test_fds_on_fdless_request,
    test_non_tap_fd_as_tap,
    test_dir_fifo_disk_fd,
    test_disk_paths_outside_roots,
    test_vm_allow_list,
])
