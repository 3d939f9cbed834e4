#!/usr/bin/env python3
"""Shared per-VM monitors: RUNDIR/vm/NAME.qmp behaves like the VM's own
QMP socket, but many clients hold it at once, each with its own
negotiation and ids, and each sees all of that VM's events."""

import json
import os
import signal
import socket

import qb
from qb import check, Env


def setup(env, name="v1", faults=None):
	c = env.d.client()
	f = env.h.fake(name, faults=faults)
	g = qb.greeting_of(f.path)
	c.cmd("vm-add", {"name": name, "socket": f.path})
	qb.wait_vm_state(c, name, "ready")
	path = env.d.vm_socket(name)
	check(os.path.exists(path), "no shared socket %s" % path)
	return c, f, g, path


def test_many_clients():
	with Env("shared") as env:
		c, f, g, path = setup(env)
		clients = [env.h.qmp(path, negotiate=False) for _ in range(5)]
		for s in clients:
			sg = s.read_greeting()
			check(sg["QMP"]["version"] == g["QMP"]["version"],
			    "greeting %r, QEMU's %r" % (sg, g))
		# Each negotiates on its own: one not yet negotiated is
		# refused while the others work.
		for s in clients[1:]:
			s.cmd("qmp_capabilities")
		cls, _ = clients[0].cmd_error("query-status")
		check(cls == "CommandNotFound", "before negotiation: %s" % cls)
		clients[0].cmd("qmp_capabilities")
		# The same ids on every client, many in flight, each its own.
		for s in clients:
			for i in range(20):
				s.send_cmd(("query-status", "query-block")[i % 2],
				    id=i)
		for s in clients:
			for i in range(20):
				r = s.wait_reply(i)
				check("return" in r, repr(r))
				if i % 2 == 0:
					check("running" in r["return"], repr(r))
				else:
					check(isinstance(r["return"], list),
					    repr(r))
		for s in clients:
			s.poll_msgs()
			check(not s.replies and not s.noid,
			    "stray replies: %r %r" % (s.replies, s.noid))
		# A state change made by one is seen by all: it is one VM.
		# (fake-qemu starts paused, as QEMU with -S.)
		clients[1].cmd("cont")
		for s in clients:
			s.wait_event("RESUME")
			check(s.cmd("query-status")["running"] is True,
			    "cont not seen")
		clients[4].cmd("stop")
		for s in clients:
			s.wait_event("STOP")
			check(s.cmd("query-status")["running"] is False,
			    "stop not seen")
		# Every client gets every event of that VM.
		clients[2].cmd("x-fake-event", {"event": "SHARED_X",
		    "data": {"k": 1}})
		for s in clients:
			e = s.wait_event("SHARED_X")
			check(e.get("data") == {"k": 1} and "timestamp" in e,
			    repr(e))
		# QEMU's own errors come through unchanged.
		cls, _ = clients[3].cmd_error("no-such-command")
		check(cls == "CommandNotFound", cls)
		clients[3].send_raw(b"not json\r\n")
		r = clients[3].wait_noid()
		check(r["error"]["class"] == "GenericError", repr(r))
		clients[3].cmd("query-status")
		env.finish()


def test_client_gone_midway():
	"""A client that goes away with a command in flight leaves the VM
	and the other clients alone."""
	with Env("sharedgone") as env:
		c, f, g, path = setup(env, faults="delay-cmd query-block 300\n")
		a = env.h.qmp(path)
		b = env.h.qmp(path)
		for i in range(5):
			a.send_cmd("query-block")
		a.close()
		check(isinstance(b.cmd("query-block"), list), "b's query-block")
		check(b.cmd("query-status")["status"], "b's query-status")
		check(qb.vm_state(c, "v1") == "ready", "VM not ready")
		env.finish()


def test_vm_removed():
	"""Removing the VM ends its shared sessions and unlinks the socket."""
	with Env("sharedrm") as env:
		c, f, g, path = setup(env, faults="no-reply query-pci\n")
		a = env.h.qmp(path)
		stuck = a.send_cmd("query-pci")
		# behind the stuck one, as in QEMU's in-band queue
		behind = a.send_cmd("query-status")
		c.cmd("vm-remove", {"name": "v1"})
		try:
			r = a.wait_reply(stuck)
			r2 = a.wait_reply(behind)
		except qb.Closed:
			raise qb.Failure("session closed without answering its "
			    "pending commands")
		check("error" in r, "pending after vm-remove: %r" % r)
		check("error" in r2 or "return" in r2, "queued behind: %r" % r2)
		a.wait_closed()
		check(not os.path.exists(path), "socket left after vm-remove")
		env.finish()


def settled_fds(pid):
	"""The daemon's fd count once two readings in a row agree."""
	last = None
	def same():
		nonlocal last
		now = qb.fd_list(pid)
		same, last = now == last, now
		return same
	qb.wait_for(same, "daemon fds to settle", interval=0.1)
	return len(last)


def fds_per_vm(env, n):
	"""Adds n fake VMs, waits until they are ready; returns what they
	cost the daemon in fds, and the control client."""
	c = env.d.client()
	fakes = [env.h.fake("f%d" % i) for i in range(n)]
	before = settled_fds(env.d.pid)
	for i, f in enumerate(fakes):
		c.cmd("vm-add", {"name": "v%d" % i, "socket": f.path})
	for i in range(n):
		qb.wait_vm_state(c, "v%d" % i, "ready")
	return (settled_fds(env.d.pid) - before) / n, c


def test_vm_sockets_off():
	"""--vm-sockets=no: no RUNDIR/vm/NAME.qmp, no "shared-socket" in
	query-vms, one fd per VM less than with them (each VM holds its
	monitor and a pidfd either way); the VMs still work
	through the control socket."""
	n = 4
	with Env("shareon") as env:
		on, c = fds_per_vm(env, n)
		for vm in c.cmd("query-vms"):
			check(vm.get("shared-socket") == env.d.vm_socket(
			    vm["name"]), "shared socket on: %r" % vm)
		env.finish()
	with Env("shareoff", args=["--vm-sockets=no"]) as env:
		off, c = fds_per_vm(env, n)
		# the monitor, and the pidfd on fake-qemu's pid (VM_EXITED;
		# none under valgrind 3.19, which lacks pidfd_open)
		base = 1 if qb.VALGRIND else 2
		check(on == base + 1 and off == base, "fds per VM: %g with "
		    "shared sockets, %g without" % (on, off))
		for vm in c.cmd("query-vms"):
			check("shared-socket" not in vm, "shared socket off: %r"
			    % vm)
			check(not os.path.lexists(env.d.vm_socket(vm["name"])),
			    "%s exists" % env.d.vm_socket(vm["name"]))
			r = c.cmd("vm-execute", {"vm": vm["name"],
			    "command": "query-status"})
			check(r["status"] == "prelaunch", repr(r))
		check(os.listdir(os.path.join(env.d.run_dir, "vm")) == [],
		    "run dir: %r" % os.listdir(os.path.join(env.d.run_dir,
		    "vm")))
		env.finish()


def test_vm_sockets_reload():
	"""vm-sockets from the config file follows SIGHUP both ways: the
	sockets appear for every VM, then go, their clients disconnected."""
	with Env("sharehup", daemon=False) as env:
		h = env.h
		cfg = h.path("qmpbrokerd.conf")
		with open(cfg, "w") as f:
			f.write("vm-sockets no\n")
		env.d = h.daemon(config=cfg)
		env.d.baseline()
		c = env.d.client()
		f = h.fake("v1")
		c.cmd("vm-add", {"name": "v1", "socket": f.path})
		qb.wait_vm_state(c, "v1", "ready")
		path = env.d.vm_socket("v1")
		check(not os.path.lexists(path), "socket with vm-sockets no")
		with open(cfg, "w") as f:
			f.write("vm-sockets yes\n")
		env.d.signal(signal.SIGHUP)
		qb.wait_for(lambda: "shared-socket" in c.cmd("query-vms")[0],
		    "shared socket after SIGHUP")
		check(c.cmd("query-vms")[0]["shared-socket"] == path,
		    repr(c.cmd("query-vms")))
		s = h.qmp(path)
		check(s.cmd("query-status")["status"] == "prelaunch",
		    "shared socket after SIGHUP")
		with open(cfg, "w") as f:
			f.write("vm-sockets no\n")
		env.d.signal(signal.SIGHUP)
		s.wait_closed()
		check("shared-socket" not in c.cmd("query-vms")[0],
		    repr(c.cmd("query-vms")))
		check(not os.path.lexists(path), "socket left after SIGHUP")
		check(c.cmd("vm-execute", {"vm": "v1", "command":
		    "query-status"})["status"] == "prelaunch", "v1 after HUP")
		env.finish()


def test_vm_add_shared_socket():
	"""vm-add's "shared-socket" overrides vm-sockets for that VM either
	way, and survives a restart in the registry."""
	with Env("sharevm") as env:
		c = env.d.client()
		for name, arg in (("a", False), ("b", True), ("c", None)):
			f = env.h.fake(name)
			args = {"name": name, "socket": f.path}
			if arg is not None:
				args["shared-socket"] = arg
			c.cmd("vm-add", args)
			qb.wait_vm_state(c, name, "ready")
		cls, desc = c.cmd_error("vm-add", {"name": "d", "socket":
		    "/nonexistent", "shared-socket": "no"})
		check(cls == "GenericError" and "shared-socket" in desc, desc)

		def shared():
			vms = c.cmd("query-vms")
			for vm in vms:
				p = env.d.vm_socket(vm["name"])
				check(("shared-socket" in vm) ==
				    os.path.exists(p), "%r and %s" % (vm, p))
			return [vm["name"] for vm in vms if "shared-socket" in vm]
		check(shared() == ["b", "c"], "on: %r" % shared())
		check(c.cmd("vm-execute", {"vm": "a", "command":
		    "query-status"})["status"] == "prelaunch", "a")
		with open(os.path.join(env.d.state_dir, "vms.json")) as f:
			saved = {v["name"]: v.get("shared-socket") for v in
			    json.load(f)["vms"]}
		check(saved == {"a": False, "b": True, "c": None},
		    "saved: %r" % saved)
		env.h.close_clients()
		env.d.terminate()
		env.d.start()
		c = env.d.client()
		for name in "abc":
			qb.wait_vm_state(c, name, "ready")
		check(shared() == ["b", "c"], "after restart: %r" % shared())
		env.h.close_clients()
		env.d.terminate()
		env.d.extra = ["--vm-sockets=no"]
		env.d.start()
		c = env.d.client()
		for name in "abc":
			qb.wait_vm_state(c, name, "ready")
		check(shared() == ["b"], "vm-sockets no: %r" % shared())
		env.finish()


def test_vm_sockets_bad():
	"""A value that is not yes or no stops the start."""
	with Env("sharebad", daemon=False) as env:
		d = qb.Daemon(env.h, args=["--vm-sockets=maybe"], wait=False)
		rc = d.wait()
		check(rc == 2 and "vm-sockets" in d.output(), "exit %d, %r" %
		    (rc, d.output()))


def test_sweep_orphan_listener():
	"""At start, RUNDIR/vm's sockets that are no VM's go, whether or not
	something still holds them listening: a child the killed broker was
	spawning holds a copy of its listening fds until its exec, and a
	socket kept because it "answered" stayed for good
	(test_crash_restart's 'spare.qmp' left behind). Here the test holds
	one such orphaned listener, and one bound socket nobody listens on;
	a regular file of that suffix is not the broker's to remove."""
	with Env("sharesweep", daemon=False) as env:
		run = env.h.path("d", "run")
		vmdir = os.path.join(run, "vm")
		os.makedirs(vmdir)
		held = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
		held.bind(os.path.join(vmdir, "orphan.qmp"))
		held.listen(4)
		dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
		dead.bind(os.path.join(vmdir, "dead.qmp"))
		dead.close()
		with open(os.path.join(vmdir, "file.qmp"), "w") as fh:
			fh.write("not a socket\n")
		try:
			env.d = qb.Daemon(env.h, run_dir=run)
			left = sorted(os.listdir(vmdir))
			check(left == ["file.qmp"], "after the sweep: %r" % left)
			os.unlink(os.path.join(vmdir, "file.qmp"))
			env.d.terminate()
		finally:
			held.close()


qb.main([test_many_clients, test_client_gone_midway, test_vm_removed,
    test_vm_sockets_off, test_vm_sockets_reload, test_vm_add_shared_socket,
    test_vm_sockets_bad, test_sweep_orphan_listener])
