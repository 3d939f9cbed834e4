#!/usr/bin/env python3
"""systemd's notification protocol (sd_notify), against a listener of
our own on NOTIFY_SOCKET, as systemd would hold it for a Type=notify unit.

ready_after_start: READY=1 comes once, after the start is over: by the
time it arrives the control socket answers, the registry (two VMs in
vms.json) is loaded, their shared sockets listen and so does the
metrics server (GET /metrics answers). It carries MAINPID
(the daemon's pid) and a STATUS= with the counts; a vm-add and a client
move STATUS=; SIGHUP says RELOADING=1 then READY=1 again; SIGTERM says
STOPPING=1; no WATCHDOG=1 when the unit set no WatchdogSec.
Could fail by: READY=1 before the listeners or the registry, no STATUS
change, no RELOADING=1, a WATCHDOG=1 nobody asked for.

watchdog: WATCHDOG_USEC set: WATCHDOG=1 keeps coming from the loop;
WATCHDOG_PID naming another process (a child that inherited the
environment): none.
"""

import json
import os
import signal
import socket
import time

import qb
from qb import check, Env


class Listener:
	"""systemd's end: one datagram per sd_notify call."""

	def __init__(self, h):
		self.path = h.path("notify.sock")
		self.s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
		self.s.bind(self.path)
		self.msgs = []
		self.seen = 0	# wait() looks past what it found before

	def poll(self, timeout=0.05):
		self.s.settimeout(timeout)
		try:
			while True:
				m = self.s.recv(4096).decode()
				self.msgs.append(dict(l.split("=", 1) for l in
				    m.split("\n") if "=" in l))
				self.s.settimeout(0)
		except (socket.timeout, BlockingIOError):
			pass
		return self.msgs

	def wait(self, pred, what):
		"""The first message after the one the last wait() found for
		which pred is true: messages are taken in the order sent, even
		when one poll reads several (RELOADING=1 and READY=1)."""
		def found():
			self.poll()
			for i in range(self.seen, len(self.msgs)):
				if pred(self.msgs[i]):
					self.seen = i + 1
					return self.msgs[i]
			return None
		return qb.wait_for(found, what)

	def close(self):
		self.s.close()


def start(env, extra_env, state=None, args=()):
	"""The daemon with extra_env added to its environment, not waited
	for: the test's own listener says when it is ready."""
	old = {k: os.environ.get(k) for k in extra_env}
	os.environ.update(extra_env)
	try:
		return qb.Daemon(env.h, args=args, state_dir=state, wait=False)
	finally:
		for k, v in old.items():
			if v is None:
				del os.environ[k]
			else:
				os.environ[k] = v


def test_ready_after_start():
	with Env("notify", daemon=False) as env:
		h = env.h
		n = Listener(h)
		fakes = [h.fake(v) for v in ("a", "b")]
		state = h.path("state")
		os.makedirs(state)
		with open(os.path.join(state, "vms.json"), "w") as fh:
			json.dump({"version": 1, "vms": [{"name": v, "socket":
			    f.path} for v, f in zip(("a", "b"), fakes)]}, fh)
		msock = h.path("metrics.sock")
		d = env.d = start(env, {"NOTIFY_SOCKET": n.path}, state,
		    args=["--metrics-listen", "unix:" + msock])
		r = n.wait(lambda m: m.get("READY") == "1", "READY=1")
		# the metrics listener too is up and answers
		ms = socket.socket(socket.AF_UNIX)
		ms.settimeout(qb.TIMEOUT)
		ms.connect(msock)
		ms.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
		head = ms.recv(12)
		ms.close()
		check(head == b"HTTP/1.0 200", "at READY=1 GET /metrics: %r"
		    % head)
		# At READY=1, and before anything else: all is there.
		c = qb.Qmp(d.control)
		c.negotiate()
		names = sorted(x["name"] for x in c.cmd("query-vms"))
		check(names == ["a", "b"], "at READY=1 the registry has %r"
		    % names)
		for v in ("a", "b"):
			check(qb.listening(d.vm_socket(v)), "at READY=1 %s "
			    "does not listen" % d.vm_socket(v))
		check("ready on" in d.output(), "READY=1 before the start "
		    "ended: %s" % d.tail())
		check(r.get("MAINPID") == str(d.pid), "MAINPID %r, pid %d"
		    % (r.get("MAINPID"), d.pid))
		check(r.get("STATUS") == "2 VMs, 0 clients", "STATUS %r" %
		    r.get("STATUS"))
		early = n.msgs[:n.msgs.index(r)]
		check(not [m for m in early if "READY" in m], "READY twice "
		    "%r" % early)
		# the counts move STATUS=
		f = h.fake("c")
		c.cmd("vm-add", {"name": "c", "socket": f.path})
		n.wait(lambda m: m.get("STATUS") == "3 VMs, 1 clients",
		    "STATUS= after a vm-add")
		# SIGHUP: RELOADING=1, then READY=1 again
		d.signal(signal.SIGHUP)
		rl = n.wait(lambda m: m.get("RELOADING") == "1",
		    "RELOADING=1")
		check(int(rl.get("MONOTONIC_USEC", "0")) > 0, "RELOADING=1 "
		    "without MONOTONIC_USEC: %r" % rl)
		n.wait(lambda m: m.get("READY") == "1", "READY=1 after the "
		    "reload")
		check(names == sorted(x["name"] for x in c.cmd("query-vms"))
		    [:2], "VMs after the reload")
		for v in ("a", "b", "c"):
			c.cmd("vm-remove", {"name": v})
		c.close()
		d.terminate()
		n.wait(lambda m: m.get("STOPPING") == "1", "STOPPING=1")
		check(not [m for m in n.poll() if "WATCHDOG" in m],
		    "WATCHDOG=1 without WatchdogSec: %r" % n.msgs)
		n.close()


def test_watchdog():
	with Env("notifywd", daemon=False) as env:
		n = Listener(env.h)
		d = env.d = start(env, {"NOTIFY_SOCKET": n.path,
		    "WATCHDOG_USEC": "300000"})
		n.wait(lambda m: m.get("READY") == "1", "READY=1")
		for i in range(3):
			n.wait(lambda m: m.get("WATCHDOG") == "1",
			    "WATCHDOG=1 (%d)" % i)
		d.terminate()
		n.close()
	with Env("notifywdpid", daemon=False) as env:
		n = Listener(env.h)
		# the pid of a process that is not the daemon: ours
		d = env.d = start(env, {"NOTIFY_SOCKET": n.path,
		    "WATCHDOG_USEC": "100000", "WATCHDOG_PID":
		    str(os.getpid())})
		n.wait(lambda m: m.get("READY") == "1", "READY=1")
		# a vm-add's STATUS= marks a later point of its loop
		c = d.client()
		f = env.h.fake("a")
		c.cmd("vm-add", {"name": "a", "socket": f.path})
		n.wait(lambda m: m.get("STATUS", "").startswith("1 VMs"),
		    "STATUS= after a vm-add")
		check(not [m for m in n.msgs if "WATCHDOG" in m],
		    "WATCHDOG=1 for WATCHDOG_PID=%d: %r" % (os.getpid(),
		    n.msgs))
		c.cmd("vm-remove", {"name": "a"})
		c.close()
		d.terminate()
		n.close()


qb.main([test_ready_after_start, test_watchdog])
