#!/usr/bin/env python3
"""Hotplug through qmpbrokerd against fake-qemu (pc and q35 device models).

A recorder sits between the broker and fake-qemu where a case needs to see
the exact QMP the broker built (vhost and multiqueue arguments, nothing
sent for a refused request). Every case ends with the VM's devices, nodes
and fdsets as before (where the case undoes what it did), and the daemon's
fds back at baseline.
"""

import os
import socket
import stat

import qb
import hplib
from qb import check


def start(env, machine="pc", record=False, **kw):
	"""A fake VM "vm1" in the daemon, optionally behind a recorder."""
	hplib.baseline(env.d)
	f = hplib.fake(env.h, "vm1", machine=machine, **kw)
	rec = hplib.Recorder(env.h, f.path) if record else None
	c = env.d.client()
	c.cmd("vm-add", {"name": "vm1", "socket": rec.path if rec else
	    f.path})
	qb.wait_vm_state(c, "vm1", "ready")
	return f, c, rec


def fake_fds(f):
	"""What fake-qemu holds open, as link targets."""
	out = []
	for fd in os.listdir("/proc/%d/fd" % f.pid):
		try:
			out.append(os.readlink("/proc/%d/fd/%s" % (f.pid, fd)))
		except OSError:
			pass
	return out


def test_nic_add_del():
	"""nic-add by tap fd on pc and q35: {id,bus,addr}, shown used and
	present, then gone with nothing left."""
	hplib.need_root_tun()
	for machine in ("pc", "q35"):
		with qb.Env("hpf-nic-" + machine) as env:
			f, c, _ = start(env, machine)
			before = hplib.snapshot(c, "vm1")
			tap = hplib.Tap(env.h)
			fd = tap.open()
			r = c.cmd("nic-add", {"vm": "vm1", "id": "net0",
			    "mac": "52:54:00:aa:bb:01"}, fds=[fd])
			os.close(fd)
			check(sorted(r) == ["addr", "bus", "id"] and
			    r["id"] == "net0", "nic-add returned %r" % r)
			if machine == "q35":
				check(r["bus"].startswith("rp") and
				    r["addr"] == "0x0", "q35 place %r" % r)
			else:
				check(r["bus"] == "pci.0", "pc place %r" % r)
			s = [x for x in hplib.slots(c, "vm1") if
			    x["bus"] == r["bus"] and x["addr"] == r["addr"]]
			check(s and s[0]["state"] == "used" and
			    s[0].get("device") == "net0", "slots: %r" % s)
			check(c.cmd("has-device", {"vm": "vm1", "id": "net0"})
			    == {"present": True}, "has-device false")
			check(c.cmd("nic-del", {"vm": "vm1", "id": "net0"})
			    == {}, "nic-del")
			check(c.cmd("has-device", {"vm": "vm1", "id": "net0"})
			    == {"present": False}, "has-device true")
			hplib.same_state(c, "vm1", before, machine)
			check("/dev/net/tun" not in fake_fds(f),
			    "fake-qemu still holds the tap")
			env.finish()


def test_vhost_multiqueue_args():
	"""queues=2 with vhost: four getfds, netdev_add with fds= and
	vhostfds= naming them, device_add with mq and vectors=2*2+2; one
	queue with vhost uses fd= and vhostfd=."""
	hplib.need_root_tun()
	with qb.Env("hpf-mq") as env:
		f, c, rec = start(env, "pc", record=True)
		tap = hplib.Tap(env.h, multi_queue=True)
		# no /dev/vhost-net here: any character device stands in,
		# which is all fake-qemu (and the broker without vhost-net)
		# can check
		fds = [tap.open(True), tap.open(True),
		    os.open("/dev/null", os.O_RDWR),
		    os.open("/dev/null", os.O_RDWR)]
		r = c.cmd("nic-add", {"vm": "vm1", "id": "mq0", "queues": 2,
		    "vhost": True}, fds=fds)
		for fd in fds:
			os.close(fd)
		getfds = rec.commands("getfd")
		check(len(getfds) == 4 and all(n == 1 for _, n in getfds),
		    "getfds: %r" % getfds)
		names = [m["arguments"]["fdname"] for m, _ in getfds]
		check(len(set(names)) == 4, "fd names not unique: %r" % names)
		nd = rec.commands("netdev_add")[0][0]["arguments"]
		check(nd.get("type") == "tap" and
		    nd.get("fds") == ":".join(names[:2]) and
		    nd.get("vhostfds") == ":".join(names[2:]) and
		    nd.get("vhost") is True and "fd" not in nd,
		    "netdev_add %r" % nd)
		da = rec.commands("device_add")[0][0]["arguments"]
		check(da.get("mq") is True and da.get("vectors") == 6 and
		    da.get("netdev") == nd["id"] and
		    da.get("bus") == r["bus"] and da.get("addr") == r["addr"],
		    "device_add %r" % da)
		held = fake_fds(f)
		check(held.count("/dev/net/tun") == 2 and
		    held.count("/dev/null") >= 2, "fake holds %r" % held)
		c.cmd("nic-del", {"vm": "vm1", "id": "mq0"})

		rec.clear()
		tap1 = hplib.Tap(env.h)
		fds = [tap1.open(), os.open("/dev/null", os.O_RDWR)]
		c.cmd("nic-add", {"vm": "vm1", "id": "sq0", "vhost": True},
		    fds=fds)
		for fd in fds:
			os.close(fd)
		nd = rec.commands("netdev_add")[0][0]["arguments"]
		check("fd" in nd and "vhostfd" in nd and "fds" not in nd,
		    "single queue netdev_add %r" % nd)
		da = rec.commands("device_add")[0][0]["arguments"]
		check("mq" not in da and "vectors" not in da,
		    "single queue device_add %r" % da)
		c.cmd("nic-del", {"vm": "vm1", "id": "sq0"})
		env.finish()


def test_concurrent_distinct_slots():
	"""Four nic-adds in flight at once get four distinct places, on pc
	and on q35 (four root ports)."""
	hplib.need_root_tun()
	for machine in ("pc", "q35"):
		with qb.Env("hpf-conc-" + machine) as env:
			f, c, _ = start(env, machine, root_ports=4)
			before = hplib.snapshot(c, "vm1")
			got = hplib.nic_adds(env, c, "vm1", 4)
			check(all("return" in r for r in got),
			    "%s: %r" % (machine, got))
			places = set((r["return"]["bus"], r["return"]["addr"])
			    for r in got)
			check(len(places) == 4, "%s collide: %r" %
			    (machine, got))
			for i in range(4):
				c.cmd("nic-del", {"vm": "vm1", "id": "c%d" % i})
			hplib.same_state(c, "vm1", before, machine)
			env.finish()


def test_no_free_slot():
	"""q35 with one root port: the second NIC is refused before anything
	reaches QEMU, and its fd is closed."""
	hplib.need_root_tun()
	with qb.Env("hpf-full") as env:
		f, c, rec = start(env, "q35", record=True, root_ports=1)
		t1, t2 = hplib.Tap(env.h), hplib.Tap(env.h)
		fd = t1.open()
		first = c.cmd("nic-add", {"vm": "vm1", "id": "a"}, fds=[fd])
		os.close(fd)
		before = hplib.snapshot(c, "vm1")
		rec.clear()
		fds_before = qb.fd_list(env.d.pid)
		fd = t2.open()
		cls, desc = c.cmd_error("nic-add", {"vm": "vm1", "id": "b"},
		    fds=[fd])
		os.close(fd)
		check("no free PCI slot" in desc, "error: %s" % desc)
		sent = [m["execute"] for m, _ in rec.commands()]
		check(not [s for s in sent if s not in ("query-pci",
		    "qom-list", "qom-get")], "sent after refusal: %r" % sent)
		check(qb.fd_list(env.d.pid) == fds_before, "daemon fds changed")
		hplib.same_state(c, "vm1", before, "refused NIC")
		# an explicit place that is taken says so too
		fd = t2.open()
		cls, desc = c.cmd_error("nic-add", {"vm": "vm1", "id": "b",
		    "bus": first["bus"], "addr": 0}, fds=[fd])
		os.close(fd)
		check("used" in desc, "explicit taken slot: %s" % desc)
		c.cmd("nic-del", {"vm": "vm1", "id": "a"})
		env.finish()


def test_paths_outside_roots():
	"""Disk paths outside the image roots, '..', a symlink out, a FIFO
	and a directory: refused before anything is opened or sent."""
	with qb.Env("hpf-paths", daemon=False) as env:
		root = env.h.path("images")
		out = env.h.path("elsewhere")
		os.makedirs(root)
		os.makedirs(out)
		secret = hplib.image(os.path.join(out, "secret.img"), 1 << 20)
		os.symlink(secret, os.path.join(root, "link.img"))
		os.mkfifo(os.path.join(root, "fifo.img"))
		os.makedirs(os.path.join(root, "dir.img"))
		env.d = env.h.daemon(args=["--image-root", root])
		f, c, rec = start(env, "pc", record=True)
		rec.clear()
		fds_before = qb.fd_list(env.d.pid)
		for src, why in ((secret, "outside"),
		    (root + "/../elsewhere/secret.img", ".."),
		    (os.path.join(root, "link.img"), "symlink out"),
		    (os.path.join(root, "fifo.img"), "not a regular file"),
		    (os.path.join(root, "dir.img"), "not a regular file"),
		    ("/etc/passwd", "outside"),
		    ("images/relative.img", "absolute")):
			cls, desc = c.cmd_error("disk-add", {"vm": "vm1",
			    "id": "d0", "source": src})
			check(why in desc, "%s: %s" % (src, desc))
		# a directory or a FIFO passed as the disk's fd
		for p in (os.path.join(root, "dir.img"),):
			fd = os.open(p, os.O_RDONLY | os.O_DIRECTORY)
			cls, desc = c.cmd_error("disk-add", {"vm": "vm1",
			    "id": "d0", "readonly": True}, fds=[fd])
			os.close(fd)
			check("not a regular file" in desc, desc)
		fd = os.open(os.path.join(root, "fifo.img"),
		    os.O_RDONLY | os.O_NONBLOCK)
		cls, desc = c.cmd_error("disk-add", {"vm": "vm1", "id": "d0",
		    "readonly": True}, fds=[fd])
		os.close(fd)
		check("not a regular file" in desc, desc)
		check(rec.commands() == [], "sent to QEMU: %r" %
		    rec.commands())
		check(qb.fd_list(env.d.pid) == fds_before, "daemon fds changed")
		env.finish()


def test_disk_add_del():
	"""A raw image under the root: add-fd, blockdev-add over
	/dev/fdset/N, remove-fd, device_add; then all of it gone."""
	with qb.Env("hpf-disk", daemon=False) as env:
		root, img = hplib.image_root(env, 8 << 20)
		f, c, rec = start(env, "pc", record=True)
		before = hplib.snapshot(c, "vm1")
		r = c.cmd("disk-add", {"vm": "vm1", "id": "d0", "source": img})
		seq = [m["execute"] for m, _ in rec.commands() if
		    m["execute"] in ("add-fd", "blockdev-add", "remove-fd",
		    "device_add")]
		check(seq == ["add-fd", "blockdev-add", "remove-fd",
		    "device_add"], "steps %r" % seq)
		bd = rec.commands("blockdev-add")[0][0]["arguments"]
		check(bd["file"]["filename"].startswith("/dev/fdset/") and
		    bd["driver"] == "raw", "blockdev-add %r" % bd)
		check(c.cmd("has-device", {"vm": "vm1", "id": "d0"})[
		    "present"], "has-device")
		c.cmd("disk-del", {"vm": "vm1", "id": "d0"})
		hplib.same_state(c, "vm1", before, "disk")
		check(r["bus"] == "pci.0", "disk place %r" % r)
		env.finish()


def test_pending_unplug():
	"""The guest takes longer than the unplug timeout: an error saying
	the unplug is pending, a second nic-del says so too, and the late
	DEVICE_DELETED finishes the cleanup and is told to subscribers."""
	hplib.need_root_tun()
	with qb.Env("hpf-pend", args=["--unplug-timeout-ms", "300"]) as env:
		f, c, rec = start(env, "pc", record=True, unplug_delay=2500)
		before = hplib.snapshot(c, "vm1")
		sub = env.d.client()
		sub.cmd("subscribe", {"events": ["DEVICE_UNPLUGGED"]})
		tap = hplib.Tap(env.h)
		fd = tap.open()
		c.cmd("nic-add", {"vm": "vm1", "id": "slow"}, fds=[fd])
		os.close(fd)
		cls, desc = c.cmd_error("nic-del", {"vm": "vm1", "id": "slow"})
		check("pending" in desc, "first nic-del: %s" % desc)
		rec.clear()
		cls, desc = c.cmd_error("nic-del", {"vm": "vm1", "id": "slow"})
		check("already pending" in desc, "second nic-del: %s" % desc)
		check(rec.commands("device_del") == [],
		    "device_del sent again")
		ev = sub.wait_event(lambda e: e.get("event") ==
		    "DEVICE_UNPLUGGED", what="DEVICE_UNPLUGGED")
		check(ev.get("vm") == "vm1" and ev.get("data") ==
		    {"vm": "vm1", "id": "slow"}, "event %r" % ev)
		check(rec.commands("netdev_del"), "netdev not deleted")
		hplib.same_state(c, "vm1", before, "late unplug")
		env.finish()


def test_bad_requests():
	"""Wrong fds and arguments: clear errors, fds closed, nothing sent."""
	hplib.need_root_tun()
	with qb.Env("hpf-bad") as env:
		f, c, rec = start(env, "pc", record=True)
		rec.clear()
		fds_before = qb.fd_list(env.d.pid)
		tap = hplib.Tap(env.h)
		r, w = os.pipe()
		# fds are opened per case: a single-queue tap takes one at a time
		cases = [
		    ({"id": "x"}, lambda: [r], "not a tap"),
		    ({"id": "x"}, lambda: [], "needs 'ifname' or 1 fd"),
		    ({"id": "x", "queues": 2}, lambda: [tap.open()], "2 fd"),
		    ({"id": "x", "ifname": tap.name}, lambda: [tap.open()],
		    "not both"),
		    ({"id": "x", "ifname": "nosuchtap0"}, lambda: [],
		    "not an existing tap"),
		    ({"id": "x", "ifname": "../x"}, lambda: [],
		    "invalid interface"),
		    ({"id": "x", "queues": 99}, lambda: [], "queues"),
		    ({"id": "9x"}, lambda: [tap.open()], "invalid device id"),
		    ({"id": "x", "mac": "nope"}, lambda: [tap.open()], "mac"),
		    ({"id": "x", "addr": "0x40"}, lambda: [tap.open()],
		    "addr"),
		    ({"id": "x", "bogus": 1}, lambda: [], "bogus"),
		]
		for args, mkfds, why in cases:
			fds = mkfds()
			a = dict(args, vm="vm1")
			cls, desc = c.cmd_error("nic-add", a, fds=fds)
			check(why in desc, "%r: %s" % (args, desc))
			for fd in fds:
				if fd not in (r, w):
					os.close(fd)
		cls, desc = c.cmd_error("nic-add", {"vm": "nosuchvm",
		    "id": "x", "ifname": tap.name})
		check("unknown VM" in desc, desc)
		cls, desc = c.cmd_error("disk-add", {"vm": "vm1", "id": "d",
		    "source": "http://x/y"})
		check("unsupported image URI" in desc, desc)
		cls, desc = c.cmd_error("nic-del", {"vm": "vm1", "id": "none"})
		check(cls == "DeviceNotFound", "%s %s" % (cls, desc))
		os.close(r)
		os.close(w)
		sent = [m["execute"] for m, _ in rec.commands()]
		check(sent == ["device_del"], "sent: %r" % sent)
		check(qb.fd_list(env.d.pid) == fds_before, "daemon fds changed")
		env.finish()


def test_qmpctl():
	"""qmpctl's nic-add (--tap and --fd), slots, nic-del, disk-add and
	disk-del reach the broker and report errors with exit status 1."""
	import subprocess
	hplib.need_root_tun()
	with qb.Env("hpf-ctl", daemon=False) as env:
		root, img = hplib.image_root(env, 1 << 20)
		f, c, rec = start(env, "pc", record=True)
		before = hplib.snapshot(c, "vm1")

		def ctl(*args, fds=()):
			p = subprocess.run([qb.program("qmpctl"), "-S",
			    env.d.control, "--json"] + list(args),
			    capture_output=True, pass_fds=fds,
			    timeout=qb.TIMEOUT, stdin=subprocess.DEVNULL)
			return p.returncode, p.stdout.decode(), \
			    p.stderr.decode()

		t1, t2 = hplib.Tap(env.h), hplib.Tap(env.h)
		rc, out, err = ctl("nic-add", "vm1", "n1", "--tap", t1.name,
		    "--mac", "52:54:00:00:00:11")
		check(rc == 0 and '"n1"' in out, "--tap: %d %s %s" %
		    (rc, out, err))
		fd = t2.open()
		rc, out, err = ctl("nic-add", "vm1", "n2", "--fd", str(fd),
		    fds=(fd,))
		os.close(fd)
		check(rc == 0 and '"n2"' in out, "--fd: %d %s %s" %
		    (rc, out, err))
		check([n for m, n in rec.commands("getfd")] == [1, 1],
		    "getfd fds: %r" % rec.commands("getfd"))
		rc, out, err = ctl("slots", "vm1")
		check(rc == 0 and '"n1"' in out and '"n2"' in out,
		    "slots: %s" % out)
		rc, out, err = ctl("disk-add", "vm1", "d1", img, "--format",
		    "raw", "--readonly")
		check(rc == 0 and '"d1"' in out, "disk-add: %s %s" % (out, err))
		for cmd, dev in (("nic-del", "n1"), ("nic-del", "n2"),
		    ("disk-del", "d1")):
			rc, out, err = ctl(cmd, "vm1", dev)
			check(rc == 0, "%s %s: %s" % (cmd, dev, err))
		rc, out, err = ctl("nic-del", "vm1", "n1")
		check(rc == 1 and "DeviceNotFound" in err, "error exit: %d %s"
		    % (rc, err))
		rc, out, err = ctl("nic-add", "vm1", "n3")
		check(rc == 2, "usage exit: %d %s" % (rc, err))
		hplib.same_state(c, "vm1", before, "qmpctl")
		env.finish()


qb.main([test_qmpctl, test_nic_add_del, test_vhost_multiqueue_args,
    test_concurrent_distinct_slots, test_no_free_slot,
    test_paths_outside_roots, test_disk_add_del, test_pending_unplug,
    test_bad_requests])
