#!/usr/bin/env python3
"""Hotplug through qmpbrokerd into a real QEMU 7.2 running the test guest.

The guest (tools/guest/build) prints on its serial console what it sees
come and go, so every case checks the device from inside the VM, not just
QEMU's word. Unplug needs a guest that answers ACPI/PCIe hotplug, hence a
booted Linux (TCG) rather than a paused VM. Each case ends with the VM's
devices, block nodes and fdsets as they were before, and the daemon's fds
back at its baseline (Env.finish).
"""

import os
import subprocess
import time

import qb
import hplib
from qb import check

GDIR = None


def guest_dir():
	global GDIR
	if GDIR is None:
		GDIR = hplib.guest_dir()
	return GDIR


def setup(env, machine, name="vm1"):
	hplib.need_root_tun()
	hplib.baseline(env.d)
	g = hplib.Guest(env.h, name, guest_dir(), machine=machine)
	c = env.d.client()
	c.cmd("vm-add", {"name": name, "socket": g.path})
	qb.wait_vm_state(c, name, "ready")
	return g, c


def image_env(name, **kw):
	"""An Env whose daemon allows images under its own images/ dir."""
	env = qb.Env(name, daemon=False)
	env.images = env.h.path("images")
	os.makedirs(env.images)
	env.d = env.h.daemon(args=["--image-root", env.images] +
	    kw.get("args", []))
	return env


def nic_cycle(c, g, vm, args, fds=None, want_bus=None, pci_gone=False):
	r = c.cmd("nic-add", dict(args, vm=vm), fds=fds)
	for fd in fds or []:
		os.close(fd)
	check(r["id"] == args["id"] and "bus" in r and "addr" in r,
	    "nic-add returned %r" % r)
	if want_bus is not None:
		check(r["bus"] == want_bus(r["bus"]), "bus %r" % r["bus"])
	g.wait_line(r"^PCI\+ \S+ 1af4:(1000|1041)$")
	g.wait_line(r"^NET\+ eth\d+ ")
	check(c.cmd("has-device", {"vm": vm, "id": args["id"]})["present"],
	    "has-device says %s is absent" % args["id"])
	used = [s for s in hplib.slots(c, vm) if s.get("device") ==
	    args["id"] or (s["bus"] == r["bus"] and s["addr"] == r["addr"])]
	check(used and used[0]["state"] == "used",
	    "query-pci-slots does not show %r used: %r" % (r, used))
	check(c.cmd("nic-del", {"vm": vm, "id": args["id"]}) == {},
	    "nic-del did not return {}")
	mark = g.seen
	g.wait_line(r"^NET- eth\d+")
	if pci_gone:
		# pc's ACPI unplug takes the function off the bus; wait for
		# it, or a device reusing the slot would look like no change.
		# One poll of the guest may print PCI- before NET-.
		after_net, g.seen = g.seen, mark
		g.wait_line(r"^PCI- \S+ 1af4:1000$")
		g.seen = max(g.seen, after_net)
	check(not c.cmd("has-device", {"vm": vm, "id": args["id"]})["present"],
	    "has-device still sees %s" % args["id"])
	return r


def nic_case(machine):
	with qb.Env("hpq-nic-" + machine) as env:
		g, c = setup(env, machine)
		before = hplib.snapshot(c, "vm1")
		bus_ok = (lambda b: b if b.startswith("rp") else None) \
		    if machine == "q35" else (lambda b: "pci.0")
		# the tap passed as an fd the client opened
		t1 = hplib.Tap(env.h)
		nic_cycle(c, g, "vm1", {"id": "net1",
		    "mac": "52:54:00:00:00:01"}, fds=[t1.open()],
		    want_bus=bus_ok, pci_gone=machine == "pc")
		# and by name, opened by the broker
		t2 = hplib.Tap(env.h)
		nic_cycle(c, g, "vm1", {"id": "net2", "ifname": t2.name},
		    want_bus=bus_ok, pci_gone=machine == "pc")
		hplib.same_state(c, "vm1", before, "after two NICs")
		env.finish()


def test_nic_pc():
	"""pc: NIC by fd and by ifname appear in the guest and go away."""
	nic_case("pc")


def test_nic_q35():
	"""q35: NICs go into empty pcie-root-ports."""
	nic_case("q35")


def disk_cycle(c, g, vm, args, sectors):
	r = c.cmd("disk-add", dict(args, vm=vm))
	check(r["id"] == args["id"], "disk-add returned %r" % r)
	m = g.wait_line(r"^BLK\+ (vd[a-z]) (\d+)$")
	check(int(m.group(2)) == sectors, "guest sees %s sectors, want %d" %
	    (m.group(2), sectors))
	check(c.cmd("has-device", {"vm": vm, "id": args["id"]})["present"],
	    "has-device says %s is absent" % args["id"])
	check(c.cmd("disk-del", {"vm": vm, "id": args["id"]}) == {},
	    "disk-del did not return {}")
	g.wait_line(r"^BLK- " + m.group(1) + "$")
	return r


def qemu_img(*args):
	p = subprocess.run(["qemu-img"] + list(args), capture_output=True)
	check(p.returncode == 0, "qemu-img %r: %s" % (args, p.stderr))


def disk_case(machine):
	with image_env("hpq-disk-" + machine) as env:
		g, c = setup(env, machine)
		before = hplib.snapshot(c, "vm1")
		raw = os.path.join(env.images, "a.raw")
		qcow = os.path.join(env.images, "b.qcow2")
		qemu_img("create", "-q", "-f", "raw", raw, "8M")
		qemu_img("create", "-q", "-f", "qcow2", qcow, "16M")
		disk_cycle(c, g, "vm1", {"id": "d1", "source": raw},
		    8 * 2048)
		disk_cycle(c, g, "vm1", {"id": "d2", "source": qcow,
		    "format": "qcow2"}, 16 * 2048)
		# read-only, and the fd attached by the client
		fd = os.open(qcow, os.O_RDONLY)
		r = c.cmd("disk-add", {"vm": "vm1", "id": "d3", "format":
		    "qcow2", "readonly": True}, fds=[fd])
		os.close(fd)
		g.wait_line(r"^BLK\+ vd[a-z] 32768$")
		c.cmd("disk-del", {"vm": "vm1", "id": "d3"})
		g.wait_line(r"^BLK- ")
		check(r["id"] == "d3", "disk-add by fd: %r" % r)

		# an nbd+unix disk served by qemu-nbd
		sock = env.h.path("nbd.sock")
		nbd = qb.Proc(env.h, ["qemu-nbd", "--persistent", "--shared=2",
		    "-f", "raw", "-x", "exp0", "--socket=" + sock, raw],
		    "qemu-nbd")
		qb.wait_for(lambda: os.path.exists(sock), "qemu-nbd socket")
		disk_cycle(c, g, "vm1", {"id": "d4", "source":
		    "nbd+unix:///exp0?socket=" + sock}, 8 * 2048)
		nbd.kill()
		hplib.same_state(c, "vm1", before, "after four disks")
		env.finish()


def test_disk_pc():
	"""pc: raw, qcow2, client fd and nbd+unix disks in and out."""
	disk_case("pc")


def test_disk_q35():
	"""q35: the same disks through root ports."""
	disk_case("q35")


def test_locked_image():
	"""A second VM holds the image's write lock: QEMU's own error comes
	back and nothing is left behind (devices, nodes, fdsets, daemon
	fds)."""
	with image_env("hpq-lock") as env:
		g, c = setup(env, "pc")
		img = os.path.join(env.images, "locked.qcow2")
		qemu_img("create", "-q", "-f", "qcow2", img, "16M")
		holder = env.h.qemu("holder", extra=["-blockdev",
		    "driver=qcow2,node-name=h0,file.driver=file,"
		    "file.filename=" + img])
		check(holder.alive(), "holder QEMU died")
		before = hplib.snapshot(c, "vm1")
		fds_before = qb.fd_list(env.d.pid)
		try:
			c.cmd("disk-add", {"vm": "vm1", "id": "dl",
			    "source": img, "format": "qcow2"})
			raise qb.Failure("disk-add of a locked image succeeded")
		except qb.QmpError as e:
			check("Failed to get" in e.desc and "lock" in e.desc,
			    "not QEMU's lock error: %s" % e)
		hplib.same_state(c, "vm1", before, "after the locked image")
		check(qb.fd_list(env.d.pid) == fds_before,
		    "daemon fds changed: %r -> %r" % (fds_before,
		    qb.fd_list(env.d.pid)))
		# the guest saw nothing come
		time.sleep(0.5)
		check("BLK+" not in g.serial(), "guest saw a disk")
		holder.kill()
		env.finish()


def test_concurrent_real():
	"""Four nic-adds in flight at once on one real VM: distinct slots,
	all four in the guest, all four out again."""
	with qb.Env("hpq-conc") as env:
		g, c = setup(env, "pc")
		before = hplib.snapshot(c, "vm1")
		got = hplib.nic_adds(env, c, "vm1", 4)
		errs = [r for r in got if "error" in r]
		check(not errs, "concurrent nic-add failed: %r" % errs)
		places = set((r["return"]["bus"], r["return"]["addr"])
		    for r in got)
		check(len(places) == 4, "slots collide: %r" % got)
		for i in range(4):
			g.wait_line(r"^NET\+ ")
		for i in range(4):
			c.cmd("nic-del", {"vm": "vm1", "id": "c%d" % i})
		for i in range(4):
			g.wait_line(r"^NET- ")
		hplib.same_state(c, "vm1", before, "after 4 concurrent NICs")
		env.finish()


qb.main([test_nic_pc, test_nic_q35, test_disk_pc, test_disk_q35,
    test_locked_image, test_concurrent_real])
