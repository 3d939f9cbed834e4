"""Helpers for the hotplug integration tests (on top of qb.py).

What a hotplug test needs beyond the daemon harness: real taps, tap fds
opened the way QEMU opens them, a booted test guest whose serial console
says what it sees, and a snapshot of everything a hotplug may leave behind
in a VM (devices, block nodes, fdsets) to compare before and after.
"""

import fcntl
import json
import os
import re
import shutil
import struct
import subprocess
import time

import qb

IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
IFF_MULTI_QUEUE = 0x0100
TUNSETIFF = 0x400454ca


# ---- taps ----

class Tap:
	"""A tap made with ip(8), removed on close."""

	seq = 0

	def __init__(self, h, multi_queue=False):
		Tap.seq += 1
		self.name = "qbhp%d_%d" % (os.getpid() % 10000, Tap.seq)
		argv = ["ip", "tuntap", "add", "dev", self.name, "mode", "tap",
		    "vnet_hdr"]
		if multi_queue:
			argv.append("multi_queue")
		p = subprocess.run(argv, capture_output=True)
		qb.check(p.returncode == 0, "ip tuntap add: %s" %
		    p.stderr.decode().strip())
		h.closers.append(self)

	def open(self, multi_queue=False):
		"""One queue fd, as QEMU's tap_open() would get it."""
		fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
		flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR
		if multi_queue:
			flags |= IFF_MULTI_QUEUE
		try:
			fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH",
			    self.name.encode(), flags))
		except OSError:
			os.close(fd)
			raise
		return fd

	def close(self):
		if self.name:
			subprocess.run(["ip", "link", "del", self.name],
			    capture_output=True)
			self.name = None


def need_root_tun():
	if os.geteuid() != 0 or not os.access("/dev/net/tun", os.R_OK):
		raise qb.Skip("needs root and /dev/net/tun")


# ---- a VM's hotplug state ----

def _try(c, vm, cmd, args=None):
	a = {"vm": vm, "command": cmd}
	if args is not None:
		a["arguments"] = args
	try:
		return c.cmd("vm-execute", a)
	except qb.QmpError as e:
		return {"unavailable": e.cls}


def _pci_devices(buses, out, where):
	for bus in buses or []:
		for d in bus.get("devices", []):
			out.append((where, bus.get("bus"), d.get("slot"),
			    d.get("function"), d.get("qdev_id", "")))
			br = d.get("pci_bridge")
			if br:
				_pci_devices([{"bus": d.get("qdev_id"),
				    "devices": br.get("devices", [])}], out,
				    d.get("qdev_id"))


def snapshot(c, vm):
	"""Everything a hotplug can leave behind, in comparable form:
	PCI devices, peripheral ids, block devices and nodes, fdsets."""
	s = {}
	pci = _try(c, vm, "query-pci")
	if isinstance(pci, list):
		devs = []
		_pci_devices(pci, devs, "root")
		s["pci"] = sorted(devs, key=repr)
	else:
		s["pci"] = pci
	per = _try(c, vm, "qom-list", {"path": "/machine/peripheral"})
	s["peripheral"] = sorted(e["name"] for e in per) \
	    if isinstance(per, list) else per
	blk = _try(c, vm, "query-block")
	s["block"] = sorted(b.get("device") or b.get("qdev", "")
	    for b in blk) if isinstance(blk, list) else blk
	nodes = _try(c, vm, "query-named-block-nodes")
	s["nodes"] = sorted(n.get("node-name", "") for n in nodes) \
	    if isinstance(nodes, list) else nodes
	s["fdsets"] = _try(c, vm, "query-fdsets")
	return s


def same_state(c, vm, before, what):
	now = snapshot(c, vm)
	qb.check(now == before, "%s: VM state changed:\nbefore %s\nafter  %s"
	    % (what, json.dumps(before, sort_keys=True),
	    json.dumps(now, sort_keys=True)))


def slots(c, vm):
	return c.cmd("query-pci-slots", {"vm": vm})


# ---- the test guest ----

def guest_dir():
	"""Builds (or finds in its cache) the test guest; returns its dir."""
	build = qb.srcdir_path("tools", "guest", "build")
	if not os.access(build, os.X_OK):
		raise qb.Failure("tools/guest/build missing")
	p = subprocess.run([build], capture_output=True, timeout=600,
	    stdin=subprocess.DEVNULL)
	qb.check(p.returncode == 0, "tools/guest/build failed: %s" %
	    p.stderr.decode()[-2000:])
	d = p.stdout.decode().strip().splitlines()[-1]
	qb.check(os.path.isfile(os.path.join(d, "vmlinuz")),
	    "no kernel in %s" % d)
	return d


class Guest(qb.Proc):
	"""The test guest booted under TCG (a nested KVM stalls Linux boots
	here), its QMP monitor on a unix socket, its serial console in a
	file. q35 gets `root_ports` pcie-root-ports rp0.. for hotplug."""

	def __init__(self, h, name, gdir, machine="pc", root_ports=4,
	    extra=()):
		self.path = h.path(name + ".qmp")
		self.serial_log = h.path(name + ".serial")
		argv = [shutil.which("qemu-system-x86_64"), "-machine",
		    machine + ",accel=tcg", "-nodefaults", "-no-user-config",
		    "-display", "none", "-m", "256", "-no-reboot",
		    "-kernel", os.path.join(gdir, "vmlinuz"),
		    "-initrd", os.path.join(gdir, "initrd.img"),
		    "-append", "console=ttyS0 quiet panic=-1",
		    "-serial", "file:" + self.serial_log,
		    "-qmp", "unix:%s,server=on,wait=off" % self.path]
		if machine == "q35":
			for i in range(root_ports):
				argv += ["-device", "pcie-root-port,id=rp%d,"
				    "chassis=%d,bus=pcie.0,addr=0x%x" %
				    (i, i + 1, 0x10 + i)]
		argv += list(extra)
		qb.Proc.__init__(self, h, argv, "guest-" + name)
		self.seen = 0
		self.wait_line("GUEST-READY", timeout=120)

	def serial(self):
		try:
			with open(self.serial_log, "rb") as f:
				return f.read().decode(errors="replace")
		except OSError:
			return ""

	def wait_line(self, pattern, timeout=None):
		"""Waits for a console line matching pattern (a regex) after
		the last one matched; returns the match."""
		rx = re.compile(pattern)

		def find():
			qb.check(self.alive(), "guest died: " + self.tail())
			text = self.serial()
			lines = text.splitlines()
			for i in range(self.seen, len(lines)):
				m = rx.search(lines[i])
				if m:
					self.seen = i + 1
					return m
			return None
		return qb.wait_for(find, "guest console: " + pattern,
		    timeout=timeout or qb.TIMEOUT * 2, interval=0.1)
