#!/usr/bin/env python3
"""State reconciliation (issue 13, part 3): a VM whose run state changed
while the broker was not watching gets a synthetic VM_STATUS with
"reconciled": true when its monitor comes back, and a VM whose QEMU
exits gets VM_EXITED saying whether SHUTDOWN came first and whether the
guest asked for it, once, from the pidfd of the pid behind the monitor
socket (SO_PEERCRED). Real QEMU where it can be, fake-qemu for a guest
that shuts down (no guest OS here answers ACPI)."""

import json
import os
import signal

import qb
from qb import check


def start_time(pid):
	"""/proc/PID/stat's field 22, counted after the last ')'."""
	with open("/proc/%d/stat" % pid) as f:
		return int(f.read().rsplit(")", 1)[1].split()[19])


def last_seq(c):
	return c.cmd("query-event-log")["last"]


def events_since(d, since, stop):
	"""Replays the log after since until an event matching stop."""
	s = d.client()
	s.cmd("subscribe", {"since": since})
	got = []
	while True:
		e = s.wait_event(what="replay")
		got.append(e)
		if stop(e):
			return got


def stop_behind_broker(h, d, vm_path, cmd):
	"""kill -9 the broker, run cmd on the VM's own monitor, restart."""
	d.signal(signal.SIGKILL)
	d.wait()
	h.close_clients()
	m = qb.Qmp(vm_path)
	m.negotiate()
	m.cmd(cmd)
	m.close()
	d.start()


def reconcile_case(h, make_vm):
	d = h.daemon()
	c = d.client()
	path = make_vm()
	c.cmd("vm-add", {"name": "v", "socket": path})
	qb.wait_vm_state(c, "v", "ready")
	s = d.client()
	s.cmd("subscribe", {"vms": ["v"], "events": ["RESUME"]})
	c.cmd("vm-execute", {"vm": "v", "command": "cont"})
	s.wait_event("RESUME")
	before = last_seq(c)
	# stopped while the broker is down: QEMU never replays the STOP
	stop_behind_broker(h, d, path, "stop")
	c = d.client()
	qb.wait_vm_state(c, "v", "ready")
	got = events_since(d, before, lambda e: e["event"] == "VM_STATUS")
	e = got[-1]
	check(e["vm"] == "v" and e["data"] == {"status": "paused",
	    "running": False, "reconciled": True, "previous": "running"},
	    "VM_STATUS: %r" % e)
	check(c.cmd("vm-execute", {"vm": "v", "command": "query-status"})
	    ["status"] == "paused", "QEMU not paused")
	# no change behind its back: no VM_STATUS
	mark = last_seq(c)
	d.signal(signal.SIGKILL)
	d.wait()
	h.close_clients()
	d.start()
	c = d.client()
	qb.wait_vm_state(c, "v", "ready")
	# the broker asked query-status on connecting, before these: once
	# they are answered, its VM_STATUS, if any, is in the log
	c.cmd("vm-execute", {"vm": "v", "command": "query-status"})
	q = last_seq(c)
	got = events_since(d, mark, lambda e: e["seq"] >= q)
	check(got[-1]["seq"] == q, "replay ended at %r" % got[-1])
	check(not any(e["event"] == "VM_STATUS" for e in got),
	    "VM_STATUS with no change: %r" % got)
	c.cmd("vm-remove", {"name": "v"})
	h.close_clients()
	d.terminate()


def test_reconcile_fake():
	h = qb.Harness("rec-fake")
	try:
		reconcile_case(h, lambda: h.fake("v").path)
	finally:
		h.cleanup()


def test_reconcile_qemu():
	h = qb.Harness("rec-qemu")
	try:
		reconcile_case(h, lambda: h.qemu("v").path)
	finally:
		h.cleanup()


def exited_case(h, vm, end, want):
	"""The QEMU's pid is known (SO_PEERCRED) and watched by a pidfd:
	VM_EXITED says so, with the pid, and comes once: not again when the
	reconnect that follows finds the socket gone or refusing."""
	d = h.daemon()
	c = d.client()
	c.cmd("vm-add", {"name": "v", "socket": vm.path})
	qb.wait_vm_state(c, "v", "ready")
	s = d.client()
	s.cmd("subscribe", {"vms": ["v"], "events": ["VM_EXITED",
	    "SHUTDOWN", "VM_STATE_CHANGE"]})
	end(c, vm)
	e = s.wait_event("VM_EXITED")
	want = dict(want, pid=vm.pid, why="pid %d exited" % vm.pid)
	for k, v in want.items():
		check(e["data"].get(k) == v, "VM_EXITED %s: %r, want %r: %r" %
		    (k, e["data"].get(k), v, e))
	check(isinstance(e.get("seq"), int), "not logged: %r" % e)
	# The reconnect that finds no QEMU (where the socket path would
	# have said VM_EXITED, before this state change) adds none.
	s.wait_event(lambda x: x["event"] == "VM_STATE_CHANGE" and
	    x["data"].get("reason", "").startswith("connect "),
	    what="a failed reconnect")
	s.poll_msgs()
	again = [x for x in s.events if x["event"] == "VM_EXITED"]
	check(not again, "VM_EXITED twice: %r" % again)
	c.cmd("vm-remove", {"name": "v"})
	h.close_clients()
	d.terminate()


def test_exited_qemu_quit():
	"""quit: SHUTDOWN (host-qmp-quit, not the guest), then QEMU goes."""
	h = qb.Harness("exit-quit")
	try:
		vm = h.qemu("v")
		def end(c, vm):
			c.cmd("vm-execute", {"vm": "v", "command": "quit"})
		exited_case(h, vm, end, {"shutdown": True, "guest": False,
		    "reason": "host-qmp-quit", "status": "shutdown"})
	finally:
		h.cleanup()


def test_exited_qemu_killed():
	"""kill -9 of QEMU: no SHUTDOWN; its pidfd tells at once."""
	h = qb.Harness("exit-kill")
	try:
		vm = h.qemu("v")
		def end(c, vm):
			c.cmd("vm-execute", {"vm": "v", "command": "cont"})
			vm.signal(signal.SIGKILL)
		exited_case(h, vm, end, {"shutdown": False, "guest": False,
		    "status": "running"})
	finally:
		h.cleanup()


def test_exited_guest_shutdown():
	"""A guest-initiated shutdown: QEMU's SHUTDOWN says guest true (as
	fake-qemu sends it), then the process goes."""
	h = qb.Harness("exit-guest")
	try:
		vm = h.fake("v")
		def end(c, vm):
			c.cmd("vm-execute", {"vm": "v", "command": "x-fake-event",
			    "arguments": {"event": "SHUTDOWN", "data": {
			    "guest": True, "reason": "guest-shutdown"}}})
			vm.signal(signal.SIGKILL)
		exited_case(h, vm, end, {"shutdown": True, "guest": True,
		    "reason": "guest-shutdown", "status": "shutdown"})
	finally:
		h.cleanup()


def test_exited_pid_given():
	"""vm-add's "pid": the socket is a proxy's (socat, whose pid
	SO_PEERCRED names, not a QEMU: not watched), which lives on and
	accepts after the VM died, so no reconnect ever finds the socket
	dead; the pid given is watched, and its kill -9 is VM_EXITED."""
	h = qb.Harness("exit-pid")
	try:
		vm = h.fake("v")
		proxy = h.path("proxy.sock")
		qb.Proc(h, ["socat", "UNIX-LISTEN:%s,fork" % proxy,
		    "UNIX-CONNECT:%s" % vm.path], "socat")
		qb.wait_for(lambda: os.path.exists(proxy), "socat listening")
		d = h.daemon()
		c = d.client()
		cls, desc = c.cmd_error("vm-add", {"name": "w", "socket": proxy,
		    "pid": 0})
		check("pid" in desc, "vm-add pid 0: %s %s" % (cls, desc))
		c.cmd("vm-add", {"name": "v", "socket": proxy, "pid": vm.pid})
		qb.wait_vm_state(c, "v", "ready")
		# The pid survives a restart: saved with its start time, and
		# watched again only while that same process runs. A saved
		# pid that is another process now (socat's, with a start
		# time it does not have) or not a pid at all is dropped.
		reg = os.path.join(d.state_dir, "vms.json")
		with open(reg) as f:
			doc = json.load(f)
		ent = [e for e in doc["vms"] if e["name"] == "v"]
		check(len(ent) == 1 and ent[0].get("pid") == vm.pid and
		    ent[0].get("pid-start") == start_time(vm.pid),
		    "saved: %r" % doc)
		d.signal(signal.SIGKILL)
		d.wait()
		h.close_clients()
		socat = [p for p in h.procs if p.name == "socat"][0]
		none = h.path("none.sock")
		doc["vms"] += [{"name": "w", "socket": none, "pid": socat.pid,
		    "pid-start": start_time(socat.pid) + 1},
		    {"name": "x", "socket": none, "pid": "1", "pid-start": 5}]
		with open(reg, "w") as f:
			json.dump(doc, f)
		d.start()
		c = d.client()
		qb.wait_vm_state(c, "v", "ready")
		check("saved pid %d is another process now" % socat.pid in
		    d.output(), "reused pid not refused: %s" % d.tail())
		# the registry is rewritten without the pids it refused
		qb.wait_for(lambda: [e for e in json.load(open(reg))["vms"]
		    if e["name"] in ("w", "x") and "pid" in e] == [],
		    "refused pids out of %s" % reg)
		c.cmd("vm-remove", {"name": "w"})
		c.cmd("vm-remove", {"name": "x"})
		s = d.client()
		s.cmd("subscribe", {"vms": ["v"], "events": ["VM_EXITED"]})
		vm.signal(signal.SIGKILL)
		e = s.wait_event("VM_EXITED")
		check(e["data"].get("pid") == vm.pid and e["data"].get("why") ==
		    "pid %d exited" % vm.pid and not e["data"].get("shutdown"),
		    "VM_EXITED: %r" % e)
		c.cmd("vm-remove", {"name": "v"})
		h.close_clients()
		d.terminate()
	finally:
		h.cleanup()


def test_no_exit_on_reconnect():
	"""A monitor connection that drops while QEMU lives is not an exit:
	the broker reconnects, and no VM_EXITED is logged."""
	h = qb.Harness("exit-no")
	try:
		d = h.daemon()
		c = d.client()
		vm = h.fake("v", faults="eof-on query-fdsets\n")
		c.cmd("vm-add", {"name": "v", "socket": vm.path})
		qb.wait_vm_state(c, "v", "ready")
		mark = last_seq(c)
		# the monitor connection drops; QEMU (the fake) lives on
		c.cmd_error("vm-execute", {"vm": "v", "command": "query-fdsets"})
		s = d.client()
		s.cmd("subscribe", {"since": mark, "events": [
		    "VM_STATE_CHANGE", "VM_EXITED", "VM_STATUS"]})
		got = []
		while not got or got[-1]["data"].get("state") != "ready":
			got.append(s.wait_event(what="ready again: %r" % got))
		check(any(e["data"].get("state") == "disconnected"
		    for e in got), "no disconnect: %r" % got)
		c.cmd("vm-execute", {"vm": "v", "command": "query-status"})
		s.poll_msgs()
		check(not any(e["event"] in ("VM_EXITED", "VM_STATUS") for e in
		    got + s.events), "VM_EXITED or VM_STATUS while QEMU lives "
		    "on unchanged: %r" % got)
		c.cmd("vm-remove", {"name": "v"})
		h.close_clients()
		d.terminate()
	finally:
		h.cleanup()


def pidfds(pid):
	n = 0
	for fd in os.listdir("/proc/%d/fd" % pid):
		try:
			if os.readlink("/proc/%d/fd/%s" % (pid, fd)) == \
			    "anon_inode:[pidfd]":
				n += 1
		except OSError:
			pass
	return n


def test_pidfd_reserve():
	"""Near its open-file limit the broker takes no pidfd from the last
	16th of it: a pidfd is a convenience (EOF and the socket gone tell
	an exit too), the fds there are the clients'. A VM added there is
	ready without one and the daemon says so; a client still connects."""
	import resource
	import socket
	import subprocess
	h = qb.Harness("pidfd-reserve")
	socks = []
	try:
		a, b = h.fake("a"), h.fake("b")
		d = h.daemon()
		c = d.client()
		c.cmd("vm-add", {"name": "a", "socket": a.path})
		qb.wait_vm_state(c, "a", "ready")
		check(pidfds(d.pid) == 1, "a: %d pidfds" % pidfds(d.pid))
		# 600 idle clients, so that the limit's last 16th is ~40 fds
		# wide: room for what the daemon opens and closes meanwhile
		# (the registry's temporary file, the event log's)
		soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
		if soft < 1024:
			resource.setrlimit(resource.RLIMIT_NOFILE,
			    (min(hard, 4096), hard))
		for _ in range(600):
			s = socket.socket(socket.AF_UNIX)
			s.connect(d.control)
			socks.append(s)
		qb.wait_for(lambda: qb.fd_count(d.pid) >= 600 + 1,
		    "the daemon holds the clients")
		soft = resource.prlimit(d.pid, resource.RLIMIT_NOFILE)[0]
		n = qb.fd_count(d.pid)
		lim = n + 24
		# the next fds (b's monitor, its pidfd) are past n: within
		# the reserve, with 24 fds to spare below the limit
		check(lim - lim // 16 <= n, "reserve %d at %d fds" % (lim // 16,
		    n))
		subprocess.run(["prlimit", "--pid", str(d.pid),
		    "--nofile=%d:" % lim], check=True)
		try:
			c.cmd("vm-add", {"name": "b", "socket": b.path})
			qb.wait_vm_state(c, "b", "ready")
			check(pidfds(d.pid) == 1, "b got a pidfd within the "
			    "reserve: %d pidfds" % pidfds(d.pid))
			check("pidfds: fd" in d.output(), "not said: %s" %
			    d.tail(10))
			c2 = d.client()
			c2.cmd("query-vms")
			c2.close()
		finally:
			subprocess.run(["prlimit", "--pid", str(d.pid),
			    "--nofile=%d:" % soft], check=True)
		for s in socks:
			s.close()
		socks = []
		# the VM without a pidfd still tells its exit (EOF, socket gone)
		s = d.client()
		s.cmd("subscribe", {"vms": ["b"], "events": ["VM_EXITED"]})
		b.kill()
		if os.path.exists(b.path):
			os.unlink(b.path)
		e = s.wait_event("VM_EXITED")
		check("pid" not in e["data"], "b had a pidfd: %r" % e)
	finally:
		for s in socks:
			s.close()
		h.cleanup()


if __name__ == "__main__":
	qb.main([test_reconcile_fake, test_reconcile_qemu,
	    test_exited_qemu_quit, test_exited_qemu_killed,
	    test_exited_guest_shutdown, test_exited_pid_given,
	    test_no_exit_on_reconnect, test_pidfd_reserve])
