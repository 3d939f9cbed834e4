#!/usr/bin/env python3
"""Upgrade without dropping anything (broker/upgrade.h).

under_load: fake VMs (one fake-qemu process serving them all), 10
subscribers to every event, a control client and shared-socket clients
with commands always in flight, and the broker upgraded ROUNDS times,
alternately to a build with another version string (tests/qmpbrokerd-next)
and back. Zero errors, zero disconnects, every event each subscriber
should have exactly once with seq contiguous, the daemon's pid and fd
count unchanged. Prints the longest pause (the broker's own figure, and
the longest gap a client saw between replies). QB_UPGRADE_VMS (default
200, 100 under a sanitizer; tools/bench runs 1,000) and QB_UPGRADE_ROUNDS
(default 20).

refusals: asked twice at once, during a hotplug, with a missing binary,
a relative path, a binary that exits 1, a command in flight past the
deadline: refused or rolled back with a clear reply, nothing dropped.

fdstore: systemd's fd store played by the test: the broker stores each
monitor's fd on NOTIFY_SOCKET; after kill -9 a new broker gets them back
with LISTEN_FDS/LISTEN_FDNAMES and takes the monitors over without a
reconnect (QEMU sees no EOF: fake-qemu serves one connection per VM)."""

import array
import fcntl
import json
import os
import selectors
import signal
import socket
import subprocess
import time

import qb
from qb import check

# Under a sanitizer every process start costs several times more: fewer
# VMs there, the same 20 upgrades.
NVMS = int(os.environ.get("QB_UPGRADE_VMS",
    "100" if os.environ.get("QB_SANITIZER") else "200"))
ROUNDS = int(os.environ.get("QB_UPGRADE_ROUNDS", "20"))
INFLIGHT = 16		# the loader's commands in flight, always
SHARED = 3		# shared-socket clients, 2 commands in flight each
NSUBS = 10


class Conn:
	"""A raw client: blocking sends, reads when select says so."""

	def __init__(self, path, name, negotiate=True):
		self.name = name
		self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
		self.s.connect(path)
		self.buf = b""
		self.msgs = []
		self.eof = False
		if negotiate:
			self.wait(lambda m: "QMP" in m, "greeting")
			self.send({"execute": "qmp_capabilities", "id": "cap"})
			self.wait(lambda m: m.get("id") == "cap", "caps")

	def send(self, obj):
		self.s.sendall(json.dumps(obj).encode() + b"\n")

	def read(self):
		data = self.s.recv(1 << 20)
		if not data:
			self.eof = True
			return []
		self.buf += data
		out = []
		while b"\n" in self.buf:
			line, self.buf = self.buf.split(b"\n", 1)
			if line.strip():
				out.append(json.loads(line))
		return out

	def wait(self, pred, what, timeout=30):
		end = time.monotonic() + timeout
		while True:
			for i, m in enumerate(self.msgs):
				if pred(m):
					del self.msgs[i]
					return m
			left = end - time.monotonic()
			check(left > 0 and not self.eof, "%s: no %s" %
			    (self.name, what))
			self.s.settimeout(left)
			try:
				self.msgs += self.read()
			finally:
				self.s.settimeout(None)


def fakes(h, n):
	d = h.path("vms")
	os.makedirs(d)
	f = qb.Proc(h, [qb.program("fake-qemu"), "--sockets", d, "--count",
	    str(n)], "fake-qemu")
	qb.wait_for(lambda: not f.alive() or len(os.listdir(d)) == n,
	    "%d fake VMs" % n, timeout=60)
	check(f.alive(), "fake-qemu: " + f.tail())
	return d, f


def all_ready(c, n):
	def ready():
		vms = c.cmd("query-vms")
		return len(vms) == n and all(v["state"] == "ready" for v in vms)
	qb.wait_for(ready, "%d VMs ready" % n, timeout=120, interval=0.1)


def settled_fds(pid):
	last = [None]

	def same():
		now = qb.fd_list(pid)
		ok, last[0] = now == last[0], now
		return ok
	qb.wait_for(same, "daemon fds to settle", interval=0.2)
	return last[0]


def test_under_load():
	with qb.Env("upg-load", daemon=False) as env:
		h = env.h
		vmdir, fake = fakes(h, NVMS)
		d = env.d = h.daemon(vm_dir=vmdir, args=["--log-level",
		    "notice"])
		pid = d.pid
		ctl = d.client()
		all_ready(ctl, NVMS)
		nxt = qb.builddir_path("tests", "qmpbrokerd-next")
		cur = qb.program("qmpbrokerd")
		check(os.access(nxt, os.X_OK), "no %s (make check builds it)"
		    % nxt)
		subs = []
		for i in range(NSUBS):
			s = Conn(d.control, "sub%d" % i)
			s.send({"execute": "subscribe", "id": "s"})
			s.wait(lambda m: m.get("id") == "s", "subscribed")
			subs.append(s)
		loader = Conn(d.control, "loader")
		admin = Conn(d.control, "admin")
		shared = [Conn(d.vm_socket("vm%d" % i), "shared%d" % i)
		    for i in range(SHARED)]
		fds0 = settled_fds(pid)
		# The run states go over with the state: the new process
		# reads no status record (this one, planted while the daemon
		# runs, would be set aside as not JSON if it did).
		planted = os.path.join(d.state_dir, "status", "vm0",
		    "planted.json")
		os.makedirs(os.path.dirname(planted), exist_ok=True)
		with open(planted, "w") as f:
			f.write("not json")

		sel = selectors.DefaultSelector()
		for c in subs + [loader, admin] + shared:
			sel.register(c.s, selectors.EVENT_READ, c)
		seen = {s.name: [] for s in subs}	# seqs
		got = {s.name: set() for s in subs}	# UPG_EV n
		errors = []
		acked = set()
		sent = 0
		inflight = {}
		sh_inflight = {c.name: 0 for c in shared}
		sh_next = 0
		upgrades = []		# (version, pause-ms, wall s, CPU ms)
		asked = None
		last_done = time.monotonic()
		last_reply = time.monotonic()
		longest_gap = 0.0
		stop = False
		deadline = time.monotonic() + 60 + ROUNDS * 5

		def fire():
			nonlocal sent
			n = sent
			sent += 1
			inflight[n] = time.monotonic()
			loader.send({"execute": "vm-execute", "id": n,
			    "arguments": {"vm": "vm%d" % (n % NVMS),
			    "command": "x-fake-event", "arguments": {
			    "event": "UPG_EV", "data": {"n": n}}}})

		def shared_fire(c):
			nonlocal sh_next
			sh_next += 1
			sh_inflight[c.name] += 1
			c.send({"execute": "query-status", "id": sh_next})

		for _ in range(INFLIGHT):
			fire()
		for c in shared:
			shared_fire(c)
			shared_fire(c)
		while True:
			check(time.monotonic() < deadline, "stuck: %d upgrades, "
			    "%d in flight" % (len(upgrades), len(inflight)))
			now = time.monotonic()
			if not stop and asked is None and \
			    len(upgrades) < ROUNDS and now - last_done > 0.15:
				asked = (nxt if len(upgrades) % 2 == 0 else cur,
				    now)
				admin.send({"execute": "upgrade", "id": "u",
				    "arguments": {"binary": asked[0]}})
			if len(upgrades) == ROUNDS and asked is None:
				stop = True
			if stop and not inflight and \
			    not any(sh_inflight.values()):
				break
			for key, _ in sel.select(0.05):
				c = key.data
				msgs = c.read()
				check(not c.eof, "%s: disconnected" % c.name)
				for m in msgs:
					if "event" in m:
						if c in subs:
							seen[c.name].append(
							    m["seq"])
							# handed over right,
							# nothing to reconcile
							check(m["event"] !=
							    "VM_STATUS", repr(m))
							if m["event"] == \
							    "UPG_EV":
								n = m["data"]["n"]
								check(n not in
								    got[c.name],
								    "%s: event "
								    "%d twice" %
								    (c.name, n))
								got[c.name].add(n)
						continue
					if "error" in m:
						errors.append((c.name, m))
						continue
					if c is loader:
						inflight.pop(m["id"])
						acked.add(m["id"])
						t = time.monotonic()
						longest_gap = max(longest_gap,
						    t - last_reply)
						last_reply = t
						if not stop:
							fire()
					elif c is admin:
						r = m["return"]
						want = "+next" if asked[0] == \
						    nxt else ""
						check(r["version"].endswith(
						    want) and (want or
						    "+" not in r["version"]),
						    "upgraded to %r, wanted "
						    "%s" % (r, asked[0]))
						upgrades.append((r["version"],
						    r["pause-ms"],
						    time.monotonic() -
						    asked[1],
						    r["pause-cpu-ms"]))
						asked = None
						last_done = time.monotonic()
					elif c in shared:
						check(m["return"]["status"],
						    repr(m))
						sh_inflight[c.name] -= 1
						if not stop:
							shared_fire(c)
		check(not errors, "client errors: %r" % errors[:5])
		# the last events reach every subscriber: a marker after them
		loader.send({"execute": "vm-execute", "id": "end", "arguments":
		    {"vm": "vm0", "command": "x-fake-event", "arguments": {
		    "event": "UPG_END"}}})
		loader.wait(lambda m: m.get("id") == "end", "marker")
		for s in subs:
			s.msgs = []
			s.s.setblocking(True)
			while True:
				m = s.wait(lambda m: "event" in m, "events")
				seen[s.name].append(m["seq"])
				if m["event"] == "UPG_END":
					break
				if m["event"] == "UPG_EV":
					n = m["data"]["n"]
					check(n not in got[s.name], "%s: event "
					    "%d twice" % (s.name, n))
					got[s.name].add(n)
		for s in subs:
			q = seen[s.name]
			gaps = [(a, b) for a, b in zip(q, q[1:]) if b != a + 1]
			check(not gaps, "%s: seq not contiguous: %r" %
			    (s.name, gaps[:5]))
			missing = acked - got[s.name]
			check(not missing and got[s.name] <= acked,
			    "%s: %d events lost (%r...)" % (s.name,
			    len(missing), sorted(missing)[:5]))
		check(d.pid == pid and d.alive(), "the daemon's pid changed")
		check(os.path.exists(planted), "a status record was read "
		    "on an upgrade (set aside: %r)" % os.listdir(
		    os.path.dirname(planted)))
		check(len(upgrades) == ROUNDS, "upgrades %r" % upgrades)
		fds1 = settled_fds(pid)
		check(len(fds1) == len(fds0), "fds %d before, %d after: %r" %
		    (len(fds0), len(fds1), sorted(set(fds1) - set(fds0))[:10]))
		vms = ctl.cmd("query-vms")
		check(len(vms) == NVMS and all(v["state"] == "ready"
		    for v in vms), "VMs after: %r" % [v for v in vms
		    if v["state"] != "ready"][:5])
		pauses = sorted(u[1] for u in upgrades)
		cpus = sorted(u[3] for u in upgrades)
		# tools/bench's row (its "upgrade" scenario runs this case)
		print("R upgrade n%d vms=%d rounds=%d pause_max_ms=%d "
		    "pause_med_ms=%d cpu_max_ms=%d cpu_med_ms=%d "
		    "client_gap_ms=%.0f commands=%d events=%d "
		    "errors=%d lost=0 dup=0" % (NVMS, NVMS, ROUNDS, pauses[-1],
		    pauses[len(pauses) // 2], cpus[-1], cpus[len(cpus) // 2],
		    longest_gap * 1000, len(acked),
		    len(seen[subs[0].name]), len(errors)), flush=True)
		print("# %d VMs, %d upgrades, %d commands, %d events per "
		    "subscriber: longest pause %d ms (broker), %.0f ms "
		    "between replies (client); last version %s" % (NVMS,
		    ROUNDS, len(acked), len(seen[subs[0].name]),
		    max(u[1] for u in upgrades), longest_gap * 1000,
		    upgrades[-1][0]), flush=True)
		# the audit trail's chain goes on across every exec
		rc, out, err = qb.qmpctl(["audit-verify", os.path.join(
		    d.state_dir, "audit")])
		check(rc == 0, "audit-verify: %s%s" % (out, err))
		adir = os.path.join(d.state_dir, "audit")
		recs = [json.loads(l) for f in sorted(os.listdir(adir))
		    if f.endswith(".jsonl") for l in open(os.path.join(adir,
		    f)) if l.strip()]
		ups = [r for r in recs if r["command"] == "upgrade"]
		check(len(ups) == ROUNDS and all(r.get("result") == "ok"
		    for r in ups),
		    "audited upgrades: %r" % ups[:3])
		for c in subs + [loader, admin] + shared:
			c.s.close()
		h.close_clients()
		d.terminate()


def upgrade_error(c, args):
	cls, desc = c.cmd_error("upgrade", args)
	return desc


def test_refusals():
	with qb.Env("upg-ref", daemon=False) as env:
		h = env.h
		root = h.path("images")
		os.makedirs(root)
		img = os.path.join(root, "a.raw")
		with open(img, "wb") as f:
			f.truncate(1 << 20)
		d = env.d = h.daemon(args=["--image-root", root,
		    "--upgrade-timeout-ms", "300"])
		c = d.client()
		slow = h.fake("slow", faults="delay-cmd device_add 2000\n"
		    "delay-cmd yank 3000\n")
		c.cmd("vm-add", {"name": "slow", "socket": slow.path})
		qb.wait_vm_state(c, "slow", "ready")
		sub = d.client()
		sub.cmd("subscribe", {"events": ["REF_*"]})
		nxt = qb.builddir_path("tests", "qmpbrokerd-next")
		n = [0]

		def alive(why):
			"""Nothing dropped: the same connections answer and
			get events."""
			n[0] += 1
			c.cmd("vm-execute", {"vm": "slow", "command":
			    "x-fake-event", "arguments": {"event": "REF_%d" %
			    n[0]}})
			e = sub.wait_event(lambda e: e["event"] == "REF_%d" %
			    n[0], what="REF_%d after %s" % (n[0], why))
			check(e["vm"] == "slow", repr(e))
			check(qb.vm_state(c, "slow") == "ready", why)

		# missing, relative, broken
		desc = upgrade_error(c, {"binary": h.path("nosuch")})
		check("No such file" in desc and "carries on" in desc, desc)
		alive("missing binary")
		desc = upgrade_error(c, {"binary": "qmpbrokerd"})
		check("absolute path" in desc, desc)
		broken = h.path("broken")
		with open(broken, "w") as f:
			f.write("#!/bin/sh\necho 'no such luck' >&2\nexit 1\n")
		os.chmod(broken, 0o755)
		desc = upgrade_error(c, {"binary": broken})
		check("--upgrade-format failed" in desc and "no such luck" in
		    desc, desc)
		alive("broken binary")
		# runs, but would not read the state (an older build)
		older = h.path("older")
		with open(older, "w") as f:
			f.write("#!/bin/sh\necho 'qmpbrokerd 0.0.1'\n")
		os.chmod(older, 0o755)
		desc = upgrade_error(c, {"binary": older})
		check("does not read this broker's state" in desc, desc)
		alive("older binary")
		# twice at once (pipelined, so the order is the broker's own):
		# the first goes, the second is told
		c2 = d.client()
		c2.send_cmd("upgrade", {"binary": nxt}, id="a")
		c2.send_cmd("upgrade", {"binary": nxt}, id="b")
		rb, ra = c2.wait_reply("b"), c2.wait_reply("a")
		check("error" in rb and "already under way" in
		    rb["error"]["desc"], repr(rb))
		check(ra["return"]["version"].endswith("+next"), repr(ra))
		alive("upgrade asked twice")
		# a command in flight past the deadline: rolled back (the same
		# connection, so the command is at work before the upgrade)
		c2.send_cmd("vm-execute", {"vm": "slow", "command": "yank"},
		    id="stuck")
		c2.send_cmd("upgrade", {"binary": nxt}, id="late")
		r = c2.wait_reply("late")
		desc = r.get("error", {}).get("desc", "")
		check("timed out" in desc and "carries on" in desc, repr(r))
		alive("upgrade timed out")
		c2.wait_reply("stuck")
		# during a hotplug (pipelined after it)
		c2.send_cmd("disk-add", {"vm": "slow", "id": "d0", "source":
		    img}, id="hp")
		c2.send_cmd("upgrade", {}, id="during")
		r = c2.wait_reply("during")
		desc = r.get("error", {}).get("desc", "")
		check("hotplug" in desc, repr(r))
		r = c2.wait_reply("hp")
		check("return" in r, "disk-add: %r" % r)
		alive("upgrade during a hotplug")
		# and then it goes, to the daemon's own binary by default,
		# with half a request read but not parsed on a client that
		# enabled oob, and on a shared socket's client
		c3 = h.qmp(d.control, negotiate=False)
		c3.read_greeting()
		c3.send_msg({"execute": "qmp_capabilities", "arguments":
		    {"enable": ["oob"]}, "id": "cap"})
		c3.wait_reply("cap")
		c3.send_raw(b'{"execute": "query-v')
		sh = h.qmp(d.vm_socket("slow"))
		sh.send_raw(b'{"execute": "query-st')
		time.sleep(0.3)	# read by the broker, not parseable yet
		r = c.cmd("upgrade")
		check(r["previous"].endswith("+next") and
		    r["version"].endswith("+next"), repr(r))
		c3.send_raw(b'ms", "id": "half"}')
		check("return" in c3.wait_reply("half"), "half a request")
		sh.send_raw(b'atus", "id": "shalf"}')
		check(sh.wait_reply("shalf")["return"]["status"],
		    "half a request on the shared socket")
		c3.send_msg({"exec-oob": "query-version", "id": "oob"})
		check("return" in c3.wait_reply("oob"), "oob after upgrade")
		alive("upgrade to its own binary")
		# qmpctl, as systemctl reload runs it: the new process's word,
		# and a refusal exits 1 with the reason
		rc, out, err = qb.qmpctl(["-t", "60", "upgrade", "--binary",
		    nxt], sock=d.control)
		check(rc == 0 and out.startswith("upgraded from ") and
		    "+next" in out, "qmpctl upgrade: %d %s %s" % (rc, out, err))
		rc, out, err = qb.qmpctl(["upgrade", "--binary", broken],
		    sock=d.control)
		check(rc == 1 and "--upgrade-format failed" in err,
		    "qmpctl upgrade refused: %d %s %s" % (rc, out, err))
		alive("qmpctl upgrade")
		# SIGUSR2, twice in a row: the second is refused, or waits
		# (blocked across the exec) and upgrades again; never fatal
		done = d.output().count("done: ")
		pid = d.pid
		d.signal(signal.SIGUSR2)
		d.signal(signal.SIGUSR2)
		qb.wait_for(lambda: not d.alive() or
		    d.output().count("done: ") > done, "SIGUSR2's upgrade")
		time.sleep(1)
		check(d.alive() and d.pid == pid, "after SIGUSR2: %s" %
		    d.tail())
		alive("SIGUSR2")
		env.finish()


class Systemd:
	"""systemd's end of NOTIFY_SOCKET for the fd store: FDSTORE=1 keeps
	the fd under its FDNAME, FDSTOREREMOVE=1 drops the name's."""

	def __init__(self, h):
		self.path = h.path("notify.sock")
		self.s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
		self.s.bind(self.path)
		self.store = {}		# name -> [fd]
		self.removed = []
		self.msgs = []		# every datagram, as a dict

	def poll(self, timeout=0.05):
		self.s.settimeout(timeout)
		try:
			while True:
				msg, fds, _, _ = socket.recv_fds(self.s, 8192,
				    16)
				self.s.settimeout(0)
				kv = dict(l.split("=", 1) for l in
				    msg.decode().split("\n") if "=" in l)
				self.msgs.append(kv)
				name = kv.get("FDNAME", "stored")
				if kv.get("FDSTORE") == "1":
					# systemd keeps one copy of an fd
					have = [os.fstat(f).st_ino for f in
					    self.store.get(name, [])]
					for f in fds:
						if os.fstat(f).st_ino in have:
							os.close(f)
						else:
							self.store.setdefault(
							    name, []).append(f)
				else:
					for f in fds:
						os.close(f)
				if kv.get("FDSTOREREMOVE") == "1":
					self.removed.append(name)
					for f in self.store.pop(name, []):
						os.close(f)
		except (socket.timeout, BlockingIOError):
			pass

	def close(self):
		for fds in self.store.values():
			for f in fds:
				os.close(f)
		self.store = {}
		self.s.close()


class Activated:
	"""A process started as systemd starts a service with stored fds:
	they are fds 3.. in the order of LISTEN_FDNAMES, and LISTEN_PID is
	the service's own pid (sh's $$, which exec keeps)."""

	def __init__(self, h, argv, fds, names, env):
		self.log = h.path("activated.%d.log" % h.next_seq())
		self.logf = open(self.log, "wb")

		def pre():
			hi = [fcntl.fcntl(f, fcntl.F_DUPFD, 200) for f in fds]
			for f in fds:	# received inheritable: only 3.. go
				os.close(f)
			for i, f in enumerate(hi):
				os.dup2(f, 3 + i, inheritable=True)
				os.close(f)
		e = dict(os.environ)
		e.update(env)
		e["LISTEN_FDS"] = str(len(fds))
		e["LISTEN_FDNAMES"] = ":".join(names)
		self.p = subprocess.Popen(["/bin/sh", "-c",
		    'LISTEN_PID=$$; export LISTEN_PID; exec "$@"', "sh"] +
		    argv, stdin=subprocess.DEVNULL, stdout=self.logf,
		    stderr=subprocess.STDOUT, close_fds=False, env=e,
		    preexec_fn=pre)
		self.pid = self.p.pid
		h.procs.append(self)

	def alive(self):
		return self.p.poll() is None

	def output(self):
		self.logf.flush()
		with open(self.log, "rb") as f:
			return f.read().decode(errors="replace")

	def kill(self):
		if self.p.poll() is None:
			self.p.kill()
		self.p.wait()
		self.logf.close()


def sockets_of(pid):
	out = set()
	for l in qb.fd_list(pid):
		t = l.split("->", 1)[-1]
		if t.startswith("socket:["):
			out.add(int(t[8:-1]))
	return out


def test_fdstore():
	n = 3
	with qb.Env("upg-fds", daemon=False) as env:
		h = env.h
		sd = Systemd(h)
		vmdir, fake = fakes(h, n)
		os.environ["NOTIFY_SOCKET"] = sd.path
		try:
			d = h.daemon(vm_dir=vmdir)
		finally:
			del os.environ["NOTIFY_SOCKET"]
		c = d.client()
		all_ready(c, n)
		qb.wait_for(lambda: sd.poll() or len(sd.store) == n,
		    "%d monitors in the fd store" % n)
		for name, fds in sd.store.items():
			check(name.startswith("qmon") and name[5:].startswith(
			    vmdir) and len(fds) == 1, "stored %r" % name)
		# an upgrade: RELOADING=1, then READY=1 from the same pid,
		# and the store holds each connection once
		sd.msgs = []
		c.cmd("upgrade")
		qb.wait_for(lambda: sd.poll() or any(m.get("READY") == "1"
		    for m in sd.msgs), "READY=1 after the upgrade")
		kinds = [k for m in sd.msgs for k in ("RELOADING", "READY")
		    if m.get(k) == "1"]
		check(kinds[:2] == ["RELOADING", "READY"], "notify %r" %
		    sd.msgs)
		check(all(m.get("MAINPID", str(d.pid)) == str(d.pid)
		    for m in sd.msgs), "MAINPID %r" % sd.msgs)
		all_ready(c, n)
		sd.poll(0.3)
		check(len(sd.store) == n and all(len(f) == 1 for f in
		    sd.store.values()), "store %r" % sd.store)
		stored = {os.fstat(f[0]).st_ino for f in sd.store.values()}
		# the peer of each stored fd is one of fake-qemu's sockets
		fake_fds = qb.fd_count(fake.pid)
		argv = d.build_argv()
		d.signal(signal.SIGKILL)
		d.wait()
		h.close_clients()
		names = sorted(sd.store)
		fds = [sd.store[k][0] for k in names]
		a = Activated(h, argv, fds, names, {"NOTIFY_SOCKET": sd.path})
		qb.wait_for(lambda: not a.alive() or ("ready on " + d.control)
		    in a.output(), "restarted broker")
		check(a.alive(), a.output()[-2000:])
		c = qb.Qmp(d.control)
		h.closers.append(c)
		c.negotiate()
		all_ready(c, n)
		check("3 monitor connections kept" in a.output(),
		    a.output()[-1500:])
		# the same connections, no new one: fake-qemu holds as many
		# fds as before and the broker holds the stored sockets
		check(qb.fd_count(fake.pid) == fake_fds, "fake-qemu fds %d, "
		    "were %d: a reconnect" % (qb.fd_count(fake.pid), fake_fds))
		check(stored <= sockets_of(a.pid), "the broker does not hold "
		    "the stored connections %r: %r\n%s" % (stored,
		    qb.fd_list(a.pid), a.output()[-3000:]))
		sub = qb.Qmp(d.control)
		h.closers.append(sub)
		sub.negotiate()
		sub.cmd("subscribe", {"events": ["FDS_*"]})
		for i in range(n):
			r = c.cmd("vm-execute", {"vm": "vm%d" % i, "command":
			    "x-fake-event", "arguments": {"event": "FDS_%d" %
			    i}})
			e = sub.wait_event(lambda e: e["event"] == "FDS_%d" % i)
			check(e["vm"] == "vm%d" % i, repr(e))
		# a VM that goes leaves the store
		os.unlink(os.path.join(vmdir, "vm0.qmp"))
		qb.wait_for(lambda: sd.poll() or any(r.endswith("/vm0.qmp")
		    for r in sd.removed), "FDSTOREREMOVE of vm0")
		h.close_clients()
		a.p.send_signal(signal.SIGTERM)
		check(a.p.wait(30) == 0, a.output()[-1500:])
		sd.close()


class Inheriting(qb.Daemon):
	"""The daemon with fds of the test's kept open in it."""

	def __init__(self, h, pass_fds, **kw):
		self.pass_fds = pass_fds
		qb.Daemon.__init__(self, h, **kw)

	def start(self, wait=True):
		qb.Proc.__init__(self, self.h, self.build_argv(), "qmpbrokerd",
		    pass_fds=self.pass_fds)
		if wait:
			self.wait_up()


def test_bad_state():
	"""A state the new process cannot use (garbage, then a document
	that names an fd twice): logged, every inherited fd closed, and the
	start goes on afresh."""
	with qb.Env("upg-bad", daemon=False) as env:
		h = env.h
		for i, doc in enumerate((b"{not json",
		    None)):
			a, b = socket.socketpair()
			if doc is None:
				doc = json.dumps({"format": 1, "version": "x",
				    "held-at": 0, "fds": [a.fileno(),
				    a.fileno()], "listeners": [], "mons":
				    {"cmdsets": [], "mons": []}, "clients": []
				    }).encode()
			path = h.path("state%d" % i)
			with open(path, "wb") as f:
				f.write(doc)
			fd = os.open(path, os.O_RDONLY)
			os.environ["QMPBROKER_UPGRADE_FD"] = str(fd)
			try:
				d = Inheriting(h, (fd, a.fileno()),
				    wait=False, tag="bad%d" % i)
			finally:
				del os.environ["QMPBROKER_UPGRADE_FD"]
			os.close(fd)
			a.close()
			d.wait_up()
			check("starting afresh" in d.output(), d.tail())
			# the inherited socket was closed: its peer sees EOF
			b.settimeout(10)
			check(b.recv(1) == b"", "inherited fd kept open")
			b.close()
			c = d.client()
			check(c.cmd("query-vms") == [], "query-vms")
			h.close_clients()
			d.terminate()


if __name__ == "__main__":
	qb.main([test_under_load, test_refusals, test_fdstore,
	    test_bad_state])
