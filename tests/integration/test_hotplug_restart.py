#!/usr/bin/env python3
"""The broker killed with SIGKILL in the middle of a hotplug, then started
again on the same state directory: the journal record left behind is
reconciled against what the VM shows (finished or undone, and logged
which), and the VM ends consistent: no half-plugged device, stray netdev,
block node, named fd or fdset.

fake-qemu delays its reply to one step (`delay-cmd`) so the kill lands
while that step is in flight; the record then names it.
"""

import json
import os
import signal

import qb
import hplib
from qb import check


def journal_path(d, vm, dev):
	return os.path.join(d.state_dir, "hotplug", vm, dev + ".json")


def kill_mid(op, step, dev, args_fn, check_fn):
	with qb.Env("hpr-%s-%s" % (op, step), daemon=False) as env:
		root, img = hplib.image_root(env, 4 << 20)
		dargs = ["--image-root", root]
		hplib.baseline(env.d)
		first = env.d
		f = hplib.fake(env.h, "vm1", faults="once delay-cmd %s 4000\n"
		    % step)
		c = env.d.client()
		c.cmd("vm-add", {"name": "vm1", "socket": f.path})
		qb.wait_vm_state(c, "vm1", "ready")
		before = hplib.snapshot(c, "vm1")
		before["taps"] = hplib.fake_taps(f.pid)
		args, fds = args_fn(env, img)
		c.send_cmd(op, dict(args, vm="vm1"), fds=fds)
		for fd in fds:
			os.close(fd)
		jpath = journal_path(env.d, "vm1", dev)

		def at_step():
			try:
				with open(jpath) as fh:
					return json.load(fh).get("step") == step
			except (OSError, ValueError):
				return False
		qb.wait_for(at_step, "journal record at " + step)
		env.d.signal(signal.SIGKILL)
		env.d.wait()
		env.h.close_clients()

		# the same state dir: the registry brings vm1 back, the
		# journal its interrupted operation
		env.d = qb.Daemon(env.h, args=dargs, state_dir=env.d.state_dir,
		    tag="d2")
		m = qb.wait_for(lambda: ("hotplug journal vm1/%s: " % dev) in
		    env.d.output() and [l for l in env.d.output().splitlines()
		    if ("hotplug journal vm1/%s: " % dev) in l and
		    ("finished" in l or "undone" in l or "pending" in l)],
		    "reconcile logged")
		action = m[-1].rsplit(": ", 1)[1].strip()
		print("#   reconciled: %s" % m[-1].split("qmpbrokerd ", 1)[-1])
		qb.wait_for(lambda: not os.path.exists(jpath),
		    "journal record removed")
		c = env.d.client()
		qb.wait_vm_state(c, "vm1", "ready")
		after = hplib.snapshot(c, "vm1")
		after["taps"] = hplib.fake_taps(f.pid)
		check_fn(c, before, after, action)
		# the restarted daemon must end as lean as the first began
		env.d.baseline_fds = first.baseline_fds
		env.d.baseline_kids = first.baseline_kids
		env.finish()


def nic_args(env, img):
	hplib.need_root_tun()
	tap = hplib.Tap(env.h)
	return {"id": "n0"}, [tap.open()]


def disk_args(env, img):
	return {"id": "d0", "source": img}, []


def consistent(dev):
	def fn(c, before, after, action):
		if action == "undone":
			check(after == before, "undone but VM changed:\n before "
			    "%r\n after  %r" % (before, after))
		else:
			check(action == "finished", "action %r" % action)
			check(dev in after["peripheral"], "finished without "
			    "the device: %r" % after)
			check(c.cmd("has-device", {"vm": "vm1", "id": dev})[
			    "present"], "has-device")
			# no fdset left with our name once QEMU holds the node
			for s in after["fdsets"]:
				check(not s["fds"], "fdset left: %r" % after)
			# and the device goes cleanly
			c.cmd("nic-del" if dev == "n0" else "disk-del",
			    {"vm": "vm1", "id": dev})
			now = hplib.snapshot(c, "vm1")
			del before["taps"]
			check(now == before, "after del:\n before %r\n now "
			    "%r" % (before, now))
	return fn


def test_kill_nic_netdev_add():
	"""Killed while netdev_add is in flight: the netdev and named fds
	are undone."""
	kill_mid("nic-add", "netdev_add", "n0", nic_args, consistent("n0"))


def test_kill_nic_device_add():
	"""Killed while device_add is in flight: finished or undone, never
	half."""
	kill_mid("nic-add", "device_add", "n0", nic_args, consistent("n0"))


def test_kill_disk_blockdev_add():
	"""Killed after add-fd, while blockdev-add is in flight: the fdset
	the dead broker made is found by its opaque and removed."""
	kill_mid("disk-add", "blockdev-add", "d0", disk_args,
	    consistent("d0"))


def test_kill_disk_device_add():
	kill_mid("disk-add", "device_add", "d0", disk_args, consistent("d0"))


def test_new_op_waits_for_reconcile():
	"""An interrupted operation on a device id is still in progress until
	it is reconciled: a new add of that id is refused meanwhile, since the
	old record's cleanup (netdev_del of the id's netdev) would otherwise
	tear the new device's tap away. Found by the kill -9 loop."""
	hplib.need_root_tun()
	with qb.Env("hpr-wait", daemon=False) as env:
		env.d = env.h.daemon()
		hplib.baseline(env.d)
		first = env.d
		f = hplib.fake(env.h, "vm1")
		c = env.d.client()
		c.cmd("vm-add", {"name": "vm1", "socket": f.path})
		qb.wait_vm_state(c, "vm1", "ready")
		env.d.signal(signal.SIGKILL)
		env.d.wait()
		env.h.close_clients()
		# a nic-del of n0 that died at its netdev_del, as the
		# broker journals it
		jpath = journal_path(env.d, "vm1", "n0")
		os.makedirs(os.path.dirname(jpath), exist_ok=True)
		with open(jpath, "w") as fh:
			json.dump({"op": "nic-del", "id": "n0", "kind": "nic",
			    "phase": "do", "step": "netdev_del",
			    "netdev": "qbnet-n0", "node": "", "opaque": "",
			    "fdnames": []}, fh)
		# QEMU is away, so the record must wait for it
		f.kill()
		env.d = qb.Daemon(env.h, state_dir=env.d.state_dir, tag="d2")
		c = env.d.client()
		tap = hplib.Tap(env.h)
		fd = tap.open()
		try:
			cls, desc = c.cmd_error("nic-add", {"vm": "vm1",
			    "id": "n0"}, fds=[fd])
		finally:
			os.close(fd)
		check("in progress" in desc, "nic-add during reconcile: %s: "
		    "%s" % (cls, desc))
		# QEMU back: the record is reconciled, then the id is free
		f = hplib.fake(env.h, "vm1")
		qb.wait_for(lambda: not os.path.exists(jpath),
		    "journal record reconciled")
		qb.wait_vm_state(c, "vm1", "ready")
		fd = tap.open()
		try:
			c.cmd("nic-add", {"vm": "vm1", "id": "n0"}, fds=[fd])
		finally:
			os.close(fd)
		qb.wait_for(lambda: hplib.fake_taps(f.pid) == 1,
		    "fake-qemu holds the new NIC's tap")
		c.cmd("nic-del", {"vm": "vm1", "id": "n0"})
		qb.wait_for(lambda: hplib.fake_taps(f.pid) == 0, "tap released")
		env.d.baseline_fds = first.baseline_fds
		env.d.baseline_kids = first.baseline_kids
		env.finish()


qb.main([test_kill_nic_netdev_add, test_kill_nic_device_add,
    test_kill_disk_blockdev_add, test_kill_disk_device_add,
    test_new_op_waits_for_reconcile])
