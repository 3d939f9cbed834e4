#!/usr/bin/env python3
"""Audit (issue 15, part 2): one record per command that changes something
and per refused command, with who (uid, gid, pid, exe), the socket, the VM,
the command, redacted arguments, the result and the duration; a SHA-256
chain across rotated files and restarts that qmpctl audit-verify checks,
catching an edited, a removed and an inserted record; and mutating
commands refused while the trail cannot be written."""

import hashlib
import json
import os
import shlex
import shutil
import socket
import tempfile

import qb
from qb import check, Env

from test_policy import open_to_all, tenant_run, tenants


def records(d):
	path = os.path.join(d.state_dir, "audit", "audit.jsonl")
	qb.wait_for(lambda: os.path.exists(path), "audit file")
	with open(path) as f:
		return [json.loads(l) for l in f if l.strip()]


def wait_records(d, n):
	qb.wait_for(lambda: len(records(d)) >= n, "%d audit records" % n)
	return records(d)


def verify(dir):
	rc, out, err = qb.qmpctl(["audit-verify", dir])
	return rc, out + err


def test_records():
	"""Fields of every record; queries not recorded; refusals are;
	secrets never reach the file."""
	nobody, _ = tenants()
	with Env("audrec", args=["--allow-uid", str(nobody),
	    "--vm-allow", "private uid:0"]) as env:
		open_to_all(env)
		c = env.d.client()
		f = env.h.fake("v")
		c.cmd("vm-add", {"name": "v", "socket": f.path})
		qb.wait_vm_state(c, "v", "ready")
		c.cmd("vm-execute", {"vm": "v", "command": "query-status"})
		c.cmd("vm-execute", {"vm": "v", "command": "stop"})
		for cmd, args in (
		    ("set_password", {"protocol": "vnc", "password":
			"hunter2"}),
		    ("object-add", {"qom-type": "secret", "id": "s0",
			"data": "s3cretdata"}),
		    ("x-uri", {"uri": "http://joe:pw123word@h/x",
			"nested": {"passwd": "pw456word"}})):
			try:
				c.cmd("vm-execute", {"vm": "v", "command": cmd,
				    "arguments": args})
			except qb.QmpError:
				pass	# fake-qemu knows none of them
		rep = tenant_run("nobody", "nogroup", env.d.control,
		    [["m", "vm-execute", {"vm": "v", "command": "migrate",
		    "arguments": {"uri": "exec:true"}}],
		    ["q", "query-vms", None],
		    ["p", "vm-remove", {"name": "private"}]])
		check("error" in rep["m"] and "return" in rep["q"] and
		    "error" in rep["p"],
		    "tenant: %r" % rep)
		# a shared socket's request: the socket and QEMU's command
		sc = env.h.qmp(env.d.vm_socket("v"))
		sc.cmd("cont")
		sc.cmd("query-status")
		recs = wait_records(env.d, 8)
		text = open(os.path.join(env.d.state_dir, "audit",
		    "audit.jsonl")).read()
		for s in ("hunter2", "s3cretdata", "pw123word", "pw456word"):
			check(s not in text, "secret %s in the audit file" % s)
		check(text.count("<redacted>") >= 4, "redactions: %s" % text)
		byq = {}
		for r in recs:
			byq.setdefault(r["qemu-command"] or r["command"], r)
		check("query-status" not in byq and "query-vms" not in byq,
		    "queries audited: %r" % list(byq))
		add, stop = byq["vm-add"], byq["stop"]
		me = os.path.realpath("/proc/self/exe")
		for r in (add, stop):
			check(r["uid"] == 0 and r["gid"] == os.getgid() and
			    r["pid"] == os.getpid() and r["exe"] == me and
			    r["socket"] == env.d.control and r["vm"] == "v" and
			    r["result"] == "ok" and isinstance(
			    r["duration-us"], int) and r["duration-us"] >= 0,
			    "record: %r" % r)
		check(stop["command"] == "vm-execute" and
		    add["qemu-command"] is None, "commands: %r %r" % (add, stop))
		sh = byq["cont"]
		check(sh["command"] == "cont" and sh["qemu-command"] == "cont"
		    and sh["socket"] == env.d.vm_socket("v") and
		    sh["result"] == "ok", "shared socket's record: %r" % sh)
		check(byq["set_password"]["result"] == "CommandNotFound",
		    "error class: %r" % byq["set_password"])
		m = byq["migrate"]
		check(m["uid"] == nobody and m["result"] == "GenericError" and
		    "migration URI" in m["error"] and m["rule"].startswith(
		    "built-in"), "refusal: %r" % m)
		p = byq["vm-remove"]
		check(p["uid"] == nobody and p["rule"] == "vm-allow" and
		    p["vm"] == "private" and p["result"] == "GenericError",
		    "vm-allow refusal: %r" % p)
		check([r["seq"] for r in recs] == list(range(1, len(recs) +
		    1)), "seqs: %r" % [r["seq"] for r in recs])
		env.finish()


def test_chain_verify():
	"""Rotation and restarts keep one chain; audit-verify passes it and
	names the first record edited, removed or inserted, in any file."""
	with Env("audchain", args=["--audit-rotate-bytes", "4096"]) as env:
		c = env.d.client()
		f = env.h.fake("v")
		c.cmd("vm-add", {"name": "v", "socket": f.path})
		qb.wait_vm_state(c, "v", "ready")
		for i in range(30):
			c.cmd("vm-execute", {"vm": "v", "command":
			    "stop" if i % 2 else "cont"})
		adir = os.path.join(env.d.state_dir, "audit")
		qb.wait_for(lambda: verify(adir)[1].startswith("ok: 31 "),
		    "31 records verified")
		env.d.signal(15)
		env.d.wait()
		env.d.start()
		c = env.d.client()
		qb.wait_vm_state(c, "v", "ready")
		for i in range(10):
			c.cmd("vm-execute", {"vm": "v", "command": "stop"})
		c.cmd("vm-remove", {"name": "v"})
		env.d.signal(15)
		env.d.wait()
		rc, out = verify(adir)
		check(rc == 0 and out.startswith("ok: 42 records, seq 1 to 42"),
		    "after a restart: %s" % out)
		# a broker killed mid-write leaves a cut line: the next
		# record starts on a line of its own, and verify names the
		# cut one
		cut = env.h.path("cut")
		shutil.copytree(adir, cut)
		with open(os.path.join(cut, "audit.jsonl"), "a") as fh:
			fh.write('{"seq":43,"prev":"ab')
		env.d.state_dir, kept = env.h.path("cutstate"), env.d.state_dir
		os.makedirs(env.d.state_dir)
		shutil.copytree(cut, os.path.join(env.d.state_dir, "audit"))
		env.d.start()
		c = env.d.client()
		c.cmd("vm-add", {"name": "w", "socket": f.path})
		c.cmd("vm-remove", {"name": "w"})
		env.d.signal(15)
		env.d.wait()
		rc, out = verify(os.path.join(env.d.state_dir, "audit"))
		check(rc == 1 and "audit.jsonl:" in out and "changed: not an "
		    "audit record" in out, "cut line: %s" % out)
		with open(os.path.join(env.d.state_dir, "audit",
		    "audit.jsonl")) as fh:
			tail = fh.read().splitlines()[-3:]
		check(tail[0].endswith('"prev":"ab') and
		    json.loads(tail[1])["command"] == "vm-add" and
		    json.loads(tail[1])["seq"] == 43,
		    "cut line not ended, or numbers restarted: %r" % tail)
		env.d.state_dir = kept
		files = sorted(os.listdir(adir))
		check(len(files) >= 3 and files[-1] == "audit.jsonl",
		    "no rotation: %r" % files)
		old = os.path.join(adir, files[0])

		def tampered(fn, want):
			t = env.h.path("t")
			shutil.rmtree(t, ignore_errors=True)
			shutil.copytree(adir, t)
			p = os.path.join(t, files[0])
			with open(p) as fh:
				lines = fh.readlines()
			fn(lines)
			with open(p, "w") as fh:
				fh.writelines(lines)
			rc, out = verify(t)
			check(rc == 1 and want in out, "%s: rc %d %s" % (want, rc,
			    out))
			return out
		def edit(lines):
			lines[3] = lines[3].replace('"uid":0', '"uid":1000')
		out = tampered(edit, "changed")
		check("%s:4:" % files[0] in out, "edit at line 4: %s" % out)
		def remove(lines):
			del lines[3]
		out = tampered(remove, "removed")
		check("records seq 4 to 4" in out, "removed seq 4: %s" % out)
		def insert(lines):
			lines.insert(3, lines[1])
		out = tampered(insert, "inserted")
		check("%s:4:" % files[0] in out, "insert at line 4: %s" % out)
		# and the files untouched still verify
		check(verify(adir)[0] == 0, "original broken by the copies")
		env.d.start()
		env.d.baseline()
		env.finish()




def journal_fields(dgram):
	"""journald's native protocol: KEY=VALUE lines, or KEY, a newline, a
	little-endian 64-bit length and the value (for values with a
	newline)."""
	out = {}
	i = 0
	while i < len(dgram):
		nl = dgram.index(b"\n", i)
		line = dgram[i:nl]
		if b"=" in line:
			k, v = line.split(b"=", 1)
			i = nl + 1
		else:
			k = line
			n = int.from_bytes(dgram[nl + 1:nl + 9], "little")
			v = dgram[nl + 9:nl + 9 + n]
			i = nl + 9 + n + 1
		out[k.decode()] = v.decode()
	return out


def test_journal():
	"""Each record goes to journald too, with structured fields, the
	record's hash among them: a listener on journald's socket reads what
	sd_journal_send sent. The daemon runs in a mount namespace of its
	own whose /run/systemd/journal is this test's directory: the real
	path is the host's journald's, and other tests' daemons (running
	beside this one) must not be sending to a listener that does not
	read them."""
	if os.geteuid() != 0 or shutil.which("unshare") is None:
		raise qb.Skip("needs root and unshare(1) for a private /run")
	jdir = tempfile.mkdtemp(prefix="audjournal-sock.")
	j = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
	old = os.environ.get("QB_DAEMON_WRAPPER")
	os.environ["QB_DAEMON_WRAPPER"] = (
	    "unshare -m --propagation private sh -c 'mount -t tmpfs tmpfs "
	    "/run && mkdir -p /run/systemd/journal && mount --bind \"$0\" "
	    "/run/systemd/journal && exec \"$@\"' " + shlex.quote(jdir) +
	    " " + (old or ""))
	try:
		j.bind(os.path.join(jdir, "socket"))
		j.settimeout(qb.TIMEOUT)
		with Env("audjournal") as env:
			c = env.d.client()
			f = env.h.fake("v")
			c.cmd("vm-add", {"name": "v", "socket": f.path})
			qb.wait_vm_state(c, "v", "ready")
			c.cmd("vm-execute", {"vm": "v", "command": "stop"})
			recs = wait_records(env.d, 2)
			got = []
			while not any(g.get("QB_QEMU_COMMAND") == "stop"
			    for g in got):
				got.append(journal_fields(j.recv(65536)))
			stop = [g for g in got if g.get("QB_QEMU_COMMAND") ==
			    "stop"][0]
			with open(os.path.join(env.d.state_dir, "audit",
			    "audit.jsonl"), "rb") as fh:
				lines = fh.read().splitlines()
			want = hashlib.sha256(lines[1]).hexdigest()
			check(stop.get("QB_AUDIT_HASH") == want and
			    stop.get("QB_AUDIT_SEQ") == "2" and
			    stop.get("QB_AUDIT_PREV") == recs[1]["prev"] and
			    stop.get("QB_UID") == "0" and
			    stop.get("QB_PID") == str(os.getpid()) and
			    stop.get("QB_SOCKET") == env.d.control and
			    stop.get("QB_VM") == "v" and
			    stop.get("QB_COMMAND") == "vm-execute" and
			    stop.get("QB_RESULT") == "ok" and
			    stop.get("SYSLOG_IDENTIFIER") == "qmpbrokerd" and
			    int(stop.get("QB_DURATION_US", -1)) >= 0,
			    "journal entry %r, file hash %s" % (stop, want))
			check(any("resumes after seq 0" in g.get("MESSAGE", "")
			    for g in got), "no start entry: %r" % got[:2])
			env.finish()
	finally:
		if old is None:
			del os.environ["QB_DAEMON_WRAPPER"]
		else:
			os.environ["QB_DAEMON_WRAPPER"] = old
		j.close()
		shutil.rmtree(jdir, ignore_errors=True)


def test_unwritable():
	"""An audit file that cannot be written: mutating commands are
	refused (and said loudly), queries still run; --audit-required no
	lets them through."""
	for required in ("yes", "no"):
		with Env("audfail", daemon=False) as env:
			st = env.h.path("state")
			os.makedirs(os.path.join(st, "audit", "audit.jsonl"))
			env.d = env.h.daemon(state_dir=st, args=[
			    "--audit-required=" + required])
			env.d.baseline()
			check("AUDIT TRAIL NOT WRITTEN" in env.d.output(),
			    "not said loudly: %s" % env.d.tail(5))
			c = env.d.client()
			c.cmd("query-vms")
			f = env.h.fake("v")
			try:
				c.cmd("vm-add", {"name": "v", "socket": f.path})
				added = True
			except qb.QmpError as e:
				check("audit trail cannot be written" in str(e),
				    "refusal: %s" % e)
				added = False
			check(added == (required == "no"), "vm-add with "
			    "--audit-required %s: added %r" % (required, added))
			env.finish()


if __name__ == "__main__":
	qb.main([test_records, test_chain_verify, test_journal,
	    test_unwritable])
