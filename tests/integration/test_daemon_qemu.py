#!/usr/bin/env python3
"""The daemon in front of two real QEMUs (-S; KVM when /dev/kvm works):
vm-execute, STOP/RESUME through subscriptions, the shared per-VM socket
with QEMU's own greeting, and a VM that quits."""

import os

import qb
from qb import check, Env


def test_two_qemus():
	with Env("qemu") as env:
		c = env.d.client()
		qs = {n: env.h.qemu(n) for n in ("q1", "q2")}
		greet = {}
		for n, q in qs.items():
			c.cmd("vm-add", {"name": n, "socket": q.path})
		for n in qs:
			qb.wait_vm_state(c, n, "ready")
		for vm in c.cmd("query-vms"):
			check(vm["qemu"]["major"] >= 2 and
			    isinstance(vm["package"], str), repr(vm))
			greet[vm["name"]] = vm
		s_all = env.d.client()
		s_all.cmd("subscribe", {"events": ["STOP", "RESUME"]})
		s_q2 = env.d.client()
		s_q2.cmd("subscribe", {"vms": ["q2"]})
		for n in qs:
			st = c.cmd("vm-execute", {"vm": n,
			    "command": "query-status"})
			check(st["running"] is False and st["status"] ==
			    "prelaunch", "%s: %r" % (n, st))
		for n in ("q1", "q2"):
			c.cmd("vm-execute", {"vm": n, "command": "cont"})
			e = s_all.wait_event(lambda e: e["event"] == "RESUME" and
			    e["vm"] == n, what="RESUME from " + n)
			check(isinstance(e["timestamp"]["seconds"], int), repr(e))
			check(c.cmd("vm-execute", {"vm": n,
			    "command": "query-status"})["running"] is True,
			    "%s not running after cont" % n)
		for n in ("q1", "q2"):
			c.cmd("vm-execute", {"vm": n, "command": "stop"})
			s_all.wait_event(lambda e: e["event"] == "STOP" and
			    e["vm"] == n, what="STOP from " + n)
		got = [s_q2.wait_event()["event"] for _ in range(2)]
		check(got == ["RESUME", "STOP"], "q2 subscriber got %r" % got)
		s_q2.poll_msgs()
		check(all(e["vm"] == "q2" for e in s_q2.events), "q1 leaked "
		    "to the q2 subscriber: %r" % s_q2.events)
		# QEMU's errors come back unchanged.
		cls, desc = c.cmd_error("vm-execute", {"vm": "q1",
		    "command": "device_del", "arguments": {"id": "nosuch"}})
		check(cls == "DeviceNotFound" and "nosuch" in desc, "%s: %s" %
		    (cls, desc))
		# Shared socket: QEMU's greeting, a real fd to getfd.
		sh = env.h.qmp(env.d.vm_socket("q1"), negotiate=False)
		g = sh.read_greeting()["QMP"]["version"]
		check(g["qemu"] == greet["q1"]["qemu"] and
		    g["package"] == greet["q1"]["package"], "greeting %r" % g)
		sh.cmd("qmp_capabilities")
		r, w = os.pipe()
		try:
			sh.cmd("getfd", {"fdname": "pipe0"}, fds=[r])
		finally:
			os.close(r)
			os.close(w)
		sh.cmd("closefd", {"fdname": "pipe0"})
		sh.cmd("cont")
		sh.wait_event("RESUME")
		s_all.wait_event(lambda e: e["event"] == "RESUME" and
		    e["vm"] == "q1", what="RESUME via the shared socket")
		# quit ends q1; the broker sees it go.
		c.cmd("vm-execute", {"vm": "q1", "command": "quit"})
		check(qs["q1"].wait() == 0, "q1 did not quit cleanly")
		qb.wait_vm_state(c, "q1", "disconnected")
		check(qb.vm_state(c, "q2") == "ready", "q2 affected")
		env.finish()


qb.main([test_two_qemus])
