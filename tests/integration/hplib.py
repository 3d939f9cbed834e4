"""Helpers for the hotplug integration tests (on top of qb.py).

What a hotplug test needs beyond the daemon harness: real taps, tap fds
opened the way QEMU opens them, a booted test guest whose serial console
says what it sees, and a snapshot of everything a hotplug may leave behind
in a VM (devices, block nodes, fdsets) to compare before and after.
"""

import fcntl
import itertools
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

	# next() of a count is atomic: cases running side by side in
	# threads never get the same name
	ids = itertools.count(1)

	def __init__(self, h, multi_queue=False):
		self.name = "qbhp%d_%d" % (os.getpid() % 10000, next(Tap.ids))
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


def nic_adds(env, c, vm, n):
	"""n nic-adds on vm in flight at once, ids c0 to c<n-1>, each with a
	tap of its own: their replies, in order."""
	ids = []
	for i in range(n):
		fd = Tap(env.h).open()
		ids.append(c.send_cmd("nic-add", {"vm": vm, "id": "c%d" % i},
		    fds=[fd]))
		os.close(fd)
	return [c.wait_reply(i) for i in ids]


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
	file. q35 gets `root_ports` pcie-root-ports rp0.. for hotplug.
	append: more kernel arguments ("qb.tick": TICK N every second);
	wait=False: do not wait for the guest to boot (a migration's
	destination, started with -incoming defer, never does by itself).
	mem: -m (test_migrate_qemu says why it is not always 256)."""

	def __init__(self, h, name, gdir, machine="pc", root_ports=4,
	    extra=(), append="", wait=True, mem="256"):
		self.path = h.path(name + ".qmp")
		self.serial_log = h.path(name + ".serial")
		argv = [shutil.which("qemu-system-x86_64"), "-machine",
		    machine + ",accel=tcg", "-nodefaults", "-no-user-config",
		    "-display", "none", "-m", mem, "-no-reboot",
		    "-kernel", os.path.join(gdir, "vmlinuz"),
		    "-initrd", os.path.join(gdir, "initrd.img"),
		    "-append", ("console=ttyS0 quiet panic=-1 " + append).strip(),
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
		if not wait:
			qb.wait_for(lambda: not self.alive() or
			    os.path.exists(self.path), "qemu monitor " + self.path)
			qb.check(self.alive(), "qemu exited: " + self.tail())
			return
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


# ---- fake-qemu, and a recorder between it and the broker ----

def fake_taps(pid):
	"""How many tap fds (/dev/net/tun) process pid holds."""
	return sum(1 for t in qb.fd_list(pid) if t.endswith("->/dev/net/tun"))


def fake(h, name, faults=None, machine="pc", unplug_delay=None,
    root_ports=None, running=True, extra=()):
	"""fake-qemu with the hotplug options qb.FakeQemu lacks. Running by
	default, as a guest that answers unplugs is: a paused QEMU keeps
	removed fdset members until it runs. extra: more flags (--smp,
	--maxcpus, --mem-slots, --maxmem)."""
	path = h.path(name + ".sock")
	argv = [qb.program("fake-qemu"), "--socket", path, "--machine",
	    machine]
	if running:
		argv.append("--running")
	if faults is not None:
		fpath = h.path("faults.%d" % h.next_seq())
		with open(fpath, "w") as f:
			f.write(faults)
		argv += ["--faults", fpath]
	if unplug_delay is not None:
		argv += ["--unplug-delay", str(unplug_delay)]
	if root_ports is not None:
		argv += ["--root-ports", str(root_ports)]
	argv += list(extra)
	p = qb.Proc(h, argv, "fake-" + name)
	p.path = path
	# not by connecting: that would be the connection "once" faults
	# apply to
	qb.wait_for(lambda: not p.alive() or os.path.exists(path),
	    "fake-qemu socket " + path)
	qb.check(p.alive(), "fake-qemu exited: " + p.tail())
	return p


class Recorder:
	"""A unix-socket proxy in front of a QMP server that keeps every
	command the broker sends (with how many fds came with it), passing
	bytes and fds through both ways. The broker is pointed at
	self.path instead of the server's socket."""

	def __init__(self, h, target):
		import socket
		import threading
		self.target = target
		self.path = h.path("rec.%d.sock" % h.next_seq())
		self.cmds = []
		self.lock = threading.Lock()
		self.lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
		self.lsock.bind(self.path)
		self.lsock.listen(4)
		self.stop = False
		self.t = threading.Thread(target=self._serve, daemon=True)
		self.t.start()
		h.closers.append(self)

	def _pipe(self, a, b, record):
		import socket
		buf = b""
		while not self.stop:
			try:
				data, fds, _, _ = socket.recv_fds(a, 65536, 16)
			except OSError:
				break
			if not data:
				break
			if record:
				buf += data
				while b"\n" in buf:
					line, buf = buf.split(b"\n", 1)
					try:
						m = json.loads(line)
					except ValueError:
						continue
					with self.lock:
						self.cmds.append((m, len(fds)))
			try:
				if fds:
					socket.send_fds(b, [data], fds)
				else:
					b.sendall(data)
			except OSError:
				break
			finally:
				for fd in fds:
					os.close(fd)
		for s in (a, b):
			try:
				s.shutdown(socket.SHUT_RDWR)
			except OSError:
				pass

	def _serve(self):
		import socket
		import threading
		while not self.stop:
			try:
				c, _ = self.lsock.accept()
			except OSError:
				return
			s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
			try:
				s.connect(self.target)
			except OSError:
				c.close()
				s.close()
				continue
			threading.Thread(target=self._pipe, args=(c, s, True),
			    daemon=True).start()
			threading.Thread(target=self._pipe, args=(s, c, False),
			    daemon=True).start()

	def commands(self, name=None):
		with self.lock:
			return [(m, n) for m, n in self.cmds if name is None or
			    m.get("execute") == name]

	def clear(self):
		with self.lock:
			self.cmds = []

	def close(self):
		self.stop = True
		try:
			self.lsock.close()
		except OSError:
			pass


def stream_sockets(pid):
	"""How many of pid's fds are unix stream sockets (not the datagram
	socket libsystemd keeps for the journal, nor the seqpacket one of
	a separated daemon to its privileged helper)."""
	dgram = set()
	with open("/proc/net/unix") as f:
		next(f)
		for line in f:
			p = line.split()
			if p[4] != "0001":
				dgram.add(p[6])
	return sum(1 for t in qb.fd_list(pid) if "->socket:" in t and
	    t.split("socket:[")[1].rstrip("]") not in dgram)


def baseline(d):
	"""d.baseline() once the harness's own probe connection (wait_up's
	try_connect) is gone from the daemon: only the control listener may
	be a stream socket then."""
	qb.wait_for(lambda: stream_sockets(d.pid) == 1,
	    "daemon idle before baseline")
	d.baseline()


# ---- images ----

def image(path, size):
	"""A sparse file of size bytes at path; returns path."""
	with open(path, "wb") as fh:
		fh.truncate(size)
	return path


def image_root(env, size=0, args=()):
	"""env.d: a daemon whose image root is a fresh "images" directory,
	holding a.raw of size bytes unless size is 0; args go to the daemon
	too. Returns (root, a.raw's path)."""
	root = env.h.path("images")
	os.makedirs(root)
	img = os.path.join(root, "a.raw")
	if size:
		image(img, size)
	env.d = env.h.daemon(args=["--image-root", root] + list(args))
	return root, img
