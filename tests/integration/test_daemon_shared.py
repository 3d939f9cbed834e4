#!/usr/bin/env python3
"""Shared per-VM monitors: RUNDIR/vm/NAME.qmp behaves like the VM's own
QMP socket, but many clients hold it at once, each with its own
negotiation and ids, and each sees all of that VM's events."""

import os

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
		a.cmd("query-status")
		c.cmd("vm-remove", {"name": "v1"})
		try:
			r = a.wait_reply(stuck)
		except qb.Closed:
			raise qb.Failure("session closed without answering its "
			    "pending command")
		check("error" in r, "pending after vm-remove: %r" % r)
		a.wait_closed()
		check(not os.path.exists(path), "socket left after vm-remove")
		env.finish()


qb.main([test_many_clients, test_client_gone_midway, test_vm_removed])
