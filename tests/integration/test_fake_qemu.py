#!/usr/bin/env python3
"""Self-test of fake-qemu with a raw socket client: the QMP shapes copied
from QEMU 7.2, fd passing, the device model, every fault directive of
tests/faults/, and scale mode. Independent of qb.py on purpose: the fake is
what the other harnesses are tested against.

Timeouts are deadlock guards; where a case needs to see that something does
NOT happen (no greeting, no reply), it orders messages instead of timing
them whenever it can, and otherwise waits a fixed grace period."""

import contextlib
import fcntl
import json
import os
import select
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback

BUILDDIR = os.environ.get("QB_BUILDDIR") or os.getcwd()
SRCDIR = os.environ.get("QB_SRCDIR") or os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__))))
FAKE = os.path.join(BUILDDIR, "fake-qemu")
FAULTS = os.path.join(SRCDIR, "tests", "faults")
GUARD = 20.0 * float(os.environ.get("QB_TIMEOUT_SCALE") or 1)
GRACE = 0.5		# "nothing arrives" windows


class Fail(Exception):
	pass


def check(cond, why):
	if not cond:
		raise Fail(why)


@contextlib.contextmanager
def pipe():
	"""os.pipe(), both ends closed when the block ends."""
	r, w = os.pipe()
	try:
		yield r, w
	finally:
		os.close(r)
		os.close(w)


class Client:
	def __init__(self, path, greet=True):
		# The path exists from bind(); until listen() a connect is
		# refused, so retry that one error for a while.
		deadline = time.monotonic() + GUARD
		while True:
			self.s = socket.socket(socket.AF_UNIX,
			    socket.SOCK_STREAM)
			try:
				self.s.connect(path)
				break
			except ConnectionRefusedError:
				self.s.close()
				check(time.monotonic() < deadline, "refused")
				time.sleep(0.01)
		self.buf = b""
		self.eof = False
		self.lines = []		# raw lines, for byte-level checks
		if greet:
			self.greeting = self.recv()
			check("QMP" in self.greeting, "no greeting: %r" %
			    self.greeting)

	def close(self):
		self.s.close()

	def send(self, obj, fds=None):
		data = (json.dumps(obj) + "\n").encode()
		if fds:
			socket.send_fds(self.s, [data], fds)
		else:
			self.s.sendall(data)

	def line(self, timeout=GUARD):
		deadline = time.monotonic() + timeout
		while b"\n" not in self.buf:
			left = deadline - time.monotonic()
			if left <= 0 or self.eof:
				return None
			r, _, _ = select.select([self.s], [], [], left)
			if not r:
				return None
			d = self.s.recv(65536)
			if not d:
				self.eof = True
				continue
			self.buf += d
		line, self.buf = self.buf.split(b"\n", 1)
		self.lines.append(line + b"\n")
		return line

	def recv(self, timeout=GUARD):
		line = self.line(timeout)
		if line is None:
			return None
		return json.loads(line)

	def wait_eof(self, timeout=GUARD):
		deadline = time.monotonic() + timeout
		while not self.eof and time.monotonic() < deadline:
			if self.line(deadline - time.monotonic()) is None and \
			    not self.eof:
				return False
		return self.eof

	def cmd(self, name, args=None, fds=None, events=None):
		"""Returns the reply; events before it go to the events list."""
		m = {"execute": name}
		if args is not None:
			m["arguments"] = args
		self.send(m, fds)
		while True:
			r = self.recv()
			check(r is not None, "no reply to %s" % name)
			if "event" in r:
				if events is not None:
					events.append(r)
				continue
			return r

	def ok(self, name, args=None, fds=None, events=None):
		r = self.cmd(name, args, fds, events)
		check("return" in r, "%s failed: %r" % (name, r))
		return r["return"]

	def err(self, name, args=None, fds=None):
		r = self.cmd(name, args, fds)
		check("error" in r, "%s did not fail: %r" % (name, r))
		return r["error"]["class"], r["error"]["desc"]

	def err_is(self, desc, name, args=None, fds=None):
		"""name fails with exactly desc; returns the error class."""
		cls, got = self.err(name, args, fds)
		check(got == desc, got)
		return cls

	def negotiate(self):
		self.ok("qmp_capabilities")
		return self


class Fake:
	def __init__(self, t, *args, faults=None):
		self.t = t
		self.path = os.path.join(t.dir, "vm%d.qmp" % t.seq())
		argv = [FAKE, "--socket", self.path]
		if faults is not None:
			argv += ["--faults", os.path.join(FAULTS, faults)]
		argv += list(args)
		self.p = subprocess.Popen(argv, stdout=subprocess.PIPE,
		    stderr=subprocess.PIPE)
		t.procs.append(self.p)
		deadline = time.monotonic() + GUARD
		while not os.path.exists(self.path):
			if self.p.poll() is not None:
				raise Fail("fake-qemu exited: %r" %
				    self.p.stderr.read())
			check(time.monotonic() < deadline, "no socket")
			time.sleep(0.01)

	def client(self, greet=True):
		c = Client(self.path, greet)
		self.t.clients.append(c)
		return c

	def fds(self):
		return os.listdir("/proc/%d/fd" % self.p.pid)

	def fd_targets(self):
		out = set()
		for fd in self.fds():
			try:
				out.add(os.readlink("/proc/%d/fd/%s" %
				    (self.p.pid, fd)))
			except OSError:
				pass
		return out

	def wait(self):
		return self.p.wait(GUARD)


class T:
	def __init__(self):
		self.dir = tempfile.mkdtemp(prefix="fakeqemu.")
		self.procs = []
		self.clients = []
		self.n = 0

	def seq(self):
		self.n += 1
		return self.n

	def cleanup(self):
		for c in self.clients:
			c.close()
		for p in self.procs:
			if p.poll() is None:
				p.kill()
			p.wait()
			p.stdout.close()
			p.stderr.close()
		shutil.rmtree(self.dir, ignore_errors=True)


def tap_fd():
	fd = os.open("/dev/net/tun", os.O_RDWR)
	# TUNSETIFF, IFF_TAP | IFF_NO_PI; not persistent: gone on close.
	fcntl.ioctl(fd, 0x400454ca, struct.pack("16sH", b"", 0x0002 | 0x1000))
	return fd


def pci_devices(ret, bus=0):
	"""{(bus, slot, function): dev} over the whole query-pci tree."""
	out = {}

	def walk(devs):
		for d in devs:
			out[(d["bus"], d["slot"], d["function"])] = d
			if "pci_bridge" in d:
				walk(d["pci_bridge"].get("devices", []))
	for b in ret:
		walk(b["devices"])
	return out


CASES = []


def case(f):
	CASES.append(f)
	return f


@case
def greeting_shape(t):
	f = Fake(t)
	c = f.client()
	g = c.greeting["QMP"]
	check(g["version"]["qemu"] == {"micro": 22, "minor": 2, "major": 7},
	    "version %r" % g)
	check(g["capabilities"] == ["oob"], "capabilities %r" % g)
	check(c.lines[0].endswith(b"}}\r\n") and b'{"QMP": {"version"' in
	    c.lines[0], "bytes differ from QEMU's: %r" % c.lines[0])


@case
def negotiation(t):
	c = Fake(t).client()
	cls, desc = c.err("query-status")
	check((cls, desc) == ("CommandNotFound", "Expecting capabilities "
	    "negotiation with 'qmp_capabilities'"), desc)
	check(c.ok("qmp_capabilities") == {}, "qmp_capabilities")
	cls, desc = c.err("qmp_capabilities")
	check(cls == "CommandNotFound" and "already complete" in desc, desc)
	c.err_is("The command no-such-command has not been found",
	    "no-such-command")
	c.send({"execute": "query-status", "id": {"a": [1]}})
	r = c.recv()
	check(r.get("id") == {"a": [1]} and r["return"]["status"] ==
	    "prelaunch", "id not echoed: %r" % r)
	check(c.lines[-1].startswith(b'{"return": {"status"') and
	    c.lines[-1].endswith(b'"id": {"a": [1]}}\r\n'), "member order")
	names = {x["name"] for x in c.ok("query-commands")}
	for n in ("getfd", "add-fd", "netdev_add", "device_add",
	    "blockdev-add", "query-pci", "qom-list", "quit", "x-fake-event"):
		check(n in names, "query-commands lacks " + n)


@case
def stop_cont_events(t):
	c = Fake(t).client().negotiate()
	ev = []
	c.ok("cont", events=ev)
	check([e["event"] for e in ev] == ["RESUME"], "RESUME %r" % ev)
	check(c.ok("query-status")["status"] == "running", "running")
	ev = []
	c.ok("stop", events=ev)
	check([e["event"] for e in ev] == ["STOP"], "STOP %r" % ev)
	ev = []
	c.ok("stop", events=ev)
	check(ev == [], "second stop sent %r" % ev)
	c.ok("x-fake-event", {"event": "MY_EVENT", "data": {"k": 1}},
	    events=ev)
	check(len(ev) == 1 and ev[0]["event"] == "MY_EVENT" and
	    ev[0]["data"] == {"k": 1} and "seconds" in ev[0]["timestamp"],
	    "x-fake-event %r" % ev)


@case
def getfd_really_passed(t):
	f = Fake(t)
	c = f.client().negotiate()
	c.err_is("No file descriptor supplied via SCM_RIGHTS", "getfd",
	    {"fdname": "a"})
	with pipe() as (r, w):
		target = os.readlink("/proc/self/fd/%d" % r)
		check(target not in f.fd_targets(), "pipe already there")
		c.ok("getfd", {"fdname": "a"}, fds=[r])
		check(target in f.fd_targets(), "fake does not hold the fd")
		c.ok("closefd", {"fdname": "a"})
		check(target not in f.fd_targets(), "closefd kept the fd")
		c.err_is("File descriptor named 'a' not found", "closefd",
		    {"fdname": "a"})


@case
def fdsets(t):
	f = Fake(t)
	c = f.client().negotiate()
	with pipe() as (r, w):
		a = c.ok("add-fd", {"opaque": "x"}, fds=[r])
		b = c.ok("add-fd", {"fdset-id": 4}, fds=[w])
		check(a["fdset-id"] == 0 and b["fdset-id"] == 4, "%r %r" %
		    (a, b))
		sets = c.ok("query-fdsets")
		check(sets == [{"fds": [{"fd": b["fd"]}], "fdset-id": 4},
		    {"fds": [{"fd": a["fd"], "opaque": "x"}], "fdset-id": 0}],
		    "query-fdsets %r" % sets)
		c.err_is("File descriptor named 'fdset-id:9' not found",
		    "remove-fd", {"fdset-id": 9})
		# Paused VM: QEMU 7.2 keeps removed fds until it runs.
		c.ok("remove-fd", {"fdset-id": 4})
		check(len(c.ok("query-fdsets")) == 2, "removed while paused")
		c.ok("cont")
		c.ok("remove-fd", {"fdset-id": 4})
		check([s["fdset-id"] for s in c.ok("query-fdsets")] == [0],
		    "removed fd still listed while running")


@case
def netdev_consumes_named_fd(t):
	f = Fake(t)
	c = f.client().negotiate()
	c.err_is("File descriptor named 'nope' has not been found",
	    "netdev_add", {"type": "tap", "id": "n0", "fd": "nope"})
	r, w = os.pipe()
	c.ok("getfd", {"fdname": "p"}, fds=[r])
	cls, desc = c.err("netdev_add", {"type": "tap", "id": "n0",
	    "fd": "p"})
	check("TUNGETIFF" in desc, "a pipe passed for a tap: " + desc)
	os.close(r)
	os.close(w)
	tap = tap_fd()
	c.ok("getfd", {"fdname": "t0"}, fds=[tap])
	os.close(tap)
	c.ok("netdev_add", {"type": "tap", "id": "n0", "fd": "t0"})
	cls, desc = c.err("closefd", {"fdname": "t0"})
	check("not found" in desc, "netdev_add did not consume t0")
	c.err_is("Duplicate ID 'n0'", "netdev_add", {"type": "tap",
	    "id": "n0", "fd": "p"})
	c.ok("netdev_del", {"id": "n0"})
	cls, desc = c.err("netdev_del", {"id": "n0"})
	check((cls, desc) == ("DeviceNotFound", "Device 'n0' not found"), desc)


@case
def pc_device_model(t):
	f = Fake(t)
	c = f.client().negotiate()
	c.ok("device_add", {"driver": "virtio-net-pci", "id": "nic0",
	    "bus": "pci.0", "addr": "0x5"})
	devs = pci_devices(c.ok("query-pci"))
	check(devs.get((0, 5, 0), {}).get("qdev_id") == "nic0",
	    "nic0 not in slot 5")
	check(devs[(0, 1, 1)]["class_info"]["desc"] == "IDE controller",
	    "PIIX3 IDE missing")
	cls, desc = c.err("device_add", {"driver": "virtio-net-pci",
	    "id": "nic1", "addr": "5"})
	check(desc == "PCI: slot 5 function 0 not available for "
	    "virtio-net-pci, in use by virtio-net-pci,id=nic0", desc)
	c.err_is("Duplicate device ID 'nic0'", "device_add",
	    {"driver": "virtio-net-pci", "id": "nic0"})
	c.ok("device_add", {"driver": "pci-bridge", "id": "br0",
	    "chassis_nr": 1, "addr": "0x7"})
	c.ok("device_add", {"driver": "virtio-net-pci", "id": "nic2",
	    "bus": "br0", "addr": "0x3"})
	devs = pci_devices(c.ok("query-pci"))
	br = devs[(0, 7, 0)]["pci_bridge"]
	check(devs.get((br["bus"]["secondary"], 3, 0), {}).get("qdev_id") ==
	    "nic2", "nic2 not behind br0: %r" % br)
	names = [x["name"] for x in c.ok("qom-list",
	    {"path": "/machine/peripheral"})]
	check(set(names) == {"type", "nic0", "br0", "nic2"}, "qom %r" % names)
	# Unplug with the default zero delay completes at once: QEMU then
	# sends both events before the reply.
	ev = []
	c.ok("device_del", {"id": "nic0"}, events=ev)
	check([e["data"] for e in ev] == [
	    {"path": "/machine/peripheral/nic0/virtio-backend"},
	    {"device": "nic0", "path": "/machine/peripheral/nic0"}],
	    "DEVICE_DELETED %r" % ev)
	check((0, 5, 0) not in pci_devices(c.ok("query-pci")), "still there")
	cls, desc = c.err("device_del", {"id": "nic0"})
	check((cls, desc) == ("DeviceNotFound", "Device 'nic0' not found"),
	    desc)


@case
def unplug_delay(t):
	f = Fake(t, "--unplug-delay", "200")
	c = f.client().negotiate()
	c.ok("device_add", {"driver": "virtio-net-pci", "id": "n"})
	ev = []
	c.ok("device_del", {"id": "n"}, events=ev)
	check(ev == [], "events before the reply with a delay")
	c.err_is("Device n is already in the process of unplug",
	    "device_del", {"id": "n"})
	got = [c.recv(), c.recv()]
	check([e["event"] for e in got] == ["DEVICE_DELETED"] * 2 and
	    got[1]["data"]["device"] == "n", "events %r" % got)
	f2 = Fake(t, "--unplug-delay", "-1")
	c2 = f2.client().negotiate()
	c2.ok("device_add", {"driver": "virtio-net-pci", "id": "n"})
	c2.ok("device_del", {"id": "n"})
	check(c2.recv(GRACE) is None, "DEVICE_DELETED with delay -1")
	check(any(d["qdev_id"] == "n" for d in
	    pci_devices(c2.ok("query-pci")).values()), "gone with delay -1")


@case
def q35_root_ports(t):
	f = Fake(t, "--machine", "q35", "--root-ports", "3")
	c = f.client().negotiate()
	devs = pci_devices(c.ok("query-pci"))
	rps = sorted((k, d) for k, d in devs.items() if d["qdev_id"]
	    .startswith("rp"))
	check([d["qdev_id"] for k, d in rps] == ["rp1", "rp2", "rp3"], "%r" %
	    rps)
	check(all(d["class_info"]["desc"] == "PCI bridge" and
	    d["id"] == {"device": 12, "vendor": 6966} for k, d in rps), "rp")
	check(devs[(0, 31, 2)]["class_info"]["desc"] == "SATA controller",
	    "ich9 ahci missing")
	qom = c.ok("qom-list", {"path": "/machine/peripheral"})
	check({"name": "rp2", "type": "child<pcie-root-port>"} in qom, "%r" %
	    qom)
	c.err_is("Bus 'pcie.0' does not support hotplugging", "device_add",
	    {"driver": "virtio-net-pci", "id": "x"})
	c.ok("device_add", {"driver": "virtio-net-pci", "id": "n",
	    "bus": "rp2", "addr": "0x0"})
	devs = pci_devices(c.ok("query-pci"))
	sec = devs[rps[1][0]]["pci_bridge"]["bus"]["secondary"]
	check(devs.get((sec, 0, 0), {}).get("qdev_id") == "n" and
	    devs[(sec, 0, 0)]["id"]["device"] == 4161,
	    "n not at rp2's slot 0 as a modern virtio device")
	cls, desc = c.err("device_add", {"driver": "virtio-net-pci",
	    "id": "m", "bus": "rp2", "addr": "0x0"})
	check(desc.startswith("PCI: slot 0 function 0 not available"), desc)


@case
def block_nodes(t):
	f = Fake(t)
	c = f.client().negotiate()
	img = os.path.join(t.dir, "d.img")
	with open(img, "wb") as fp:
		fp.truncate(1 << 20)
	cls, desc = c.err("blockdev-add", {"driver": "file", "node-name": "f",
	    "filename": "/dev/fdset/1"})
	check(desc == "Could not dup FD for /dev/fdset/1 flags 2: No such "
	    "file or directory", desc)
	ro = os.open(img, os.O_RDONLY)
	c.ok("add-fd", {"fdset-id": 1}, fds=[ro])
	os.close(ro)
	cls, desc = c.err("blockdev-add", {"driver": "file", "node-name": "f",
	    "filename": "/dev/fdset/1"})
	check("Permission denied" in desc, "rw over a read-only fd: " + desc)
	rw = os.open(img, os.O_RDWR)
	c.ok("add-fd", {"fdset-id": 1}, fds=[rw])
	os.close(rw)
	c.ok("blockdev-add", {"driver": "file", "node-name": "f",
	    "filename": "/dev/fdset/1"})
	c.ok("blockdev-add", {"driver": "raw", "node-name": "d", "file": "f"})
	c.err_is("Image is not in qcow2 format", "blockdev-add",
	    {"driver": "qcow2", "node-name": "q",
	    "file": {"driver": "file", "filename": img}})
	c.ok("blockdev-add", {"driver": "nbd", "node-name": "nb", "server":
	    {"type": "unix", "path": "/nonexistent"}, "export": "e"})
	c.ok("device_add", {"driver": "virtio-blk-pci", "id": "disk",
	    "drive": "d"})
	blk = c.ok("query-block")
	check(len(blk) == 1 and blk[0]["qdev"] ==
	    "/machine/peripheral/disk/virtio-backend" and
	    blk[0]["inserted"]["image"]["virtual-size"] == 1 << 20,
	    "query-block %r" % blk)
	names = [n["node-name"] for n in c.ok("query-named-block-nodes")]
	check(names == ["nb", "d", "f"], "nodes %r" % names)
	c.err_is("Node d is in use", "blockdev-del", {"node-name": "d"})
	c.ok("device_del", {"id": "disk"})
	c.ok("blockdev-del", {"node-name": "d"})
	c.ok("blockdev-del", {"node-name": "f"})
	check(c.ok("query-block") == [], "query-block after del")


@case
def state_across_connections(t):
	f = Fake(t)
	c = f.client().negotiate()
	c.ok("device_add", {"driver": "virtio-net-pci", "id": "keep"})
	# A second client waits in the backlog: connected, but no greeting.
	c2 = f.client(greet=False)
	check(c2.recv(GRACE) is None, "second client served concurrently")
	c.close()
	check("QMP" in (c2.recv() or {}), "backlog client never greeted")
	c2.negotiate()
	check(any(d["qdev_id"] == "keep" for d in
	    pci_devices(c2.ok("query-pci")).values()), "device model lost")


@case
def quit_exits(t):
	f = Fake(t, "--machine", "q35", "--unplug-delay", "-1")
	c = f.client().negotiate()
	# State of every kind, so a leak at exit shows under ASan.
	tap = tap_fd()
	c.ok("getfd", {"fdname": "t"}, fds=[tap])
	c.ok("getfd", {"fdname": "u"}, fds=[tap])
	c.ok("add-fd", {"opaque": "o"}, fds=[tap])
	os.close(tap)
	c.ok("netdev_add", {"type": "tap", "id": "n", "fd": "t"})
	c.ok("device_add", {"driver": "virtio-net-pci", "id": "nic",
	    "netdev": "n", "bus": "rp1"})
	c.ok("device_add", {"driver": "virtio-scsi-pci", "id": "s",
	    "bus": "rp2"})
	c.ok("blockdev-add", {"driver": "raw", "node-name": "d", "file":
	    {"driver": "file", "filename": "/dev/null"}})
	c.ok("device_add", {"driver": "scsi-hd", "id": "sd", "drive": "d"})
	c.ok("device_del", {"id": "nic"})	# never completes: pending
	r = c.cmd("quit")
	# QEMU 7.2 sends SHUTDOWN before the reply.
	check(r.get("event") is None, "quit reply")
	lines = [json.loads(x) for x in c.lines[-2:]]
	check(lines[0].get("event") == "SHUTDOWN" and lines[0]["data"] ==
	    {"guest": False, "reason": "host-qmp-quit"} and
	    lines[1] == {"return": {}}, "quit sequence %r" % lines)
	check(c.wait_eof(), "no EOF after quit")
	check(f.wait() == 0, "exit status")
	check(not os.path.exists(f.path), "socket left behind")
	check(f.p.stdout.read() == b"", "printed on stdout")
	err = f.p.stderr.read()
	check(err == b"", "stderr: %r" % err[:2000])


@case
def no_fd_leak(t):
	f = Fake(t, "--machine", "q35")
	base = len(f.fds())
	for i in range(5):
		c = f.client().negotiate()
		with pipe() as (r, w):
			c.ok("getfd", {"fdname": "x%d" % i}, fds=[r])
			c.ok("closefd", {"fdname": "x%d" % i})
			c.send({"execute": "query-status"}, fds=[w])	# unused fd
			c.recv()
		c.close()
	c = f.client().negotiate()
	c.close()
	deadline = time.monotonic() + GUARD
	while len(f.fds()) != base and time.monotonic() < deadline:
		time.sleep(0.02)
	check(len(f.fds()) == base, "fds %d -> %d" % (base, len(f.fds())))


@case
def reset_keeps_passed_fds(t):
	# A client that dies with a reply unread makes fake-qemu's next read
	# fail with ECONNRESET; the control buffer of that failed recvmsg is
	# the stack's leftover, the fd of the getfd before it. Taking it as
	# a new fd closed the named fd (a netdev's tap in the crash test).
	N = 5
	f = Fake(t)
	r, w = os.pipe()
	pipe = os.readlink("/proc/self/fd/%d" % r)
	for i in range(N):
		c = f.client().negotiate()
		c.send({"execute": "getfd", "arguments": {"fdname":
		    "keep%d" % i}}, fds=[r])
		# the reply is there, unread, when the client goes
		check(select.select([c.s], [], [], GUARD)[0], "no reply")
		c.close()
	os.close(r)
	os.close(w)
	c = f.client().negotiate()	# the old connections are gone
	held = 0
	for fd in f.fds():
		try:
			held += os.readlink("/proc/%d/fd/%s" % (f.p.pid,
			    fd)) == pipe
		except OSError:
			pass
	check(held == N, "fake-qemu holds %d of the %d named fds" % (held, N))
	for i in range(N):
		c.ok("closefd", {"fdname": "keep%d" % i})
	c.close()


# ---- faults: each directive does what tests/faults/*.fault says ----

@case
def fault_chunk(t):
	# Observed with strace: every write(2) of the fake is <= 7 bytes.
	if shutil.which("strace") is None:
		raise Fail("strace is needed to see write sizes")
	path = os.path.join(t.dir, "chunk.qmp")
	log = os.path.join(t.dir, "strace.log")
	p = subprocess.Popen(["strace", "-qq", "-e", "trace=write,writev,"
	    "sendmsg", "-e", "signal=none", "-o", log, FAKE, "--socket", path,
	    "--faults", os.path.join(FAULTS, "chunk.fault")],
	    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
	t.procs.append(p)
	deadline = time.monotonic() + GUARD
	while not os.path.exists(path):
		check(time.monotonic() < deadline and p.poll() is None, "start")
		time.sleep(0.02)
	c = Client(path)
	t.clients.append(c)
	c.negotiate()
	check(c.ok("query-status")["status"] == "prelaunch", "reply intact")
	c.ok("quit")
	p.wait(GUARD)
	sizes = []
	with open(log) as fp:
		for line in fp:
			# fd 2: sanitizer reports, not QMP traffic.
			if "= " in line and ("write" in line or "sendmsg" in
			    line) and not line.startswith(("write(2,",
			    "writev(2,")):
				sizes.append(int(line.rsplit("= ", 1)[1].split()[0]))
	check(sizes and max(sizes) <= 7, "write sizes %r" % sizes[:20])
	check(len(sizes) > 30, "too few writes: %r" % sizes)


@case
def fault_delay(t):
	c = Fake(t, faults="delay.fault").client()
	c.send({"execute": "qmp_capabilities"})
	c.send({"execute": "x-fake-event", "arguments": {"event": "E"}})
	# The event is not delayed, the replies are: the event comes first.
	msgs = [c.recv() for i in range(3)]
	check(msgs[0].get("event") == "E" and "return" in msgs[1] and
	    "return" in msgs[2], "order %r" % msgs)


@case
def fault_delay_cmd(t):
	c = Fake(t, faults="delay-cmd.fault").client().negotiate()
	c.send({"execute": "query-status", "id": 1})
	c.send({"execute": "query-version", "id": 2})
	ids = [c.recv()["id"], c.recv()["id"]]
	check(ids == [2, 1], "query-status not delayed: %r" % ids)


@case
def fault_close_after(t):
	c = Fake(t, faults="close-after.fault").client()
	# One write, so the fake has a 4th reply ready that must not go out.
	c.s.sendall(b'{"execute": "qmp_capabilities"}\n'
	    b'{"execute": "query-status"}\n{"execute": "query-version"}\n')
	check("return" in c.recv() and "return" in c.recv(), "2 and 3")
	check(c.recv() is None and c.eof, "more than 3 messages")


@case
def fault_garbage(t):
	c = Fake(t, faults="garbage.fault").client()
	line = c.line()
	try:
		json.loads(line)
		check(False, "garbage line is JSON: %r" % line)
	except ValueError:
		pass
	c.negotiate()


@case
def fault_second_greeting(t):
	c = Fake(t, faults="second-greeting.fault").client()
	check("QMP" in c.recv(), "no second greeting")
	c.negotiate()


@case
def fault_no_greeting(t):
	f = Fake(t, faults="no-greeting.fault")
	c = f.client(greet=False)
	check(c.recv(GRACE) is None and not c.eof, "said something")
	# It keeps reading: 4 MiB go through without backing up.
	c.s.setblocking(True)
	c.s.settimeout(GUARD)
	c.s.sendall(b'{"execute": "qmp_capabilities"}\n' * 131072)
	check(c.recv(GRACE) is None and not c.eof, "answered")


@case
def fault_error(t):
	c = Fake(t, faults="error.fault").client().negotiate()
	cls, desc = c.err("device_add", {"driver": "virtio-net-pci",
	    "id": "n"})
	check(cls == "GenericError" and desc.startswith("PCI: slot 5 "
	    "function 0 not available") and desc.endswith("id=nic0"), desc)
	check(c.err("query-pci") == ("GenericError", "injected fault"),
	    "default error")
	check(c.ok("query-status")["running"] is False, "others unaffected")


@case
def fault_no_reply(t):
	f = Fake(t, faults="no-reply.fault")
	c = f.client().negotiate()
	c.send({"execute": "netdev_add", "id": 1, "arguments":
	    {"type": "tap", "id": "n", "fd": "x"}})
	c.send({"execute": "query-status", "id": 2})
	r = c.recv()
	check(r.get("id") == 2, "netdev_add answered: %r" % r)
	check(c.recv(GRACE) is None, "late answer")


@case
def fault_eof_on(t):
	f = Fake(t, faults="eof-on.fault")
	c = f.client().negotiate()
	c.send({"execute": "device_add", "arguments": {"driver":
	    "virtio-net-pci", "id": "n"}})
	check(c.recv() is None and c.eof, "no EOF on device_add")
	c2 = f.client().negotiate()		# still serving
	check(not any(d["qdev_id"] == "n" for d in
	    pci_devices(c2.ok("query-pci")).values()), "device_add ran")


@case
def fault_flood(t):
	c = Fake(t, faults="flood.fault").client()
	check(c.recv(GRACE) is None, "flood before negotiation")
	c.negotiate()
	seqs = []
	while len(seqs) < 20:
		e = c.recv()
		check(e is not None and e.get("event") == "FAKE_TICK", "%r" % e)
		seqs.append(e["data"]["seq"])
	check(seqs == list(range(1, 21)), "seq %r" % seqs)
	c2 = Fake(t, faults="flood-event.fault").client().negotiate()
	e = c2.recv()
	check(e["event"] == "VM_TICK" and e["data"] == {"seq": 1}, "%r" % e)


@case
def fault_refuse_fds(t):
	f = Fake(t, faults="refuse-fds.fault")
	c = f.client().negotiate()
	with pipe() as (r, w):
		target = os.readlink("/proc/self/fd/%d" % r)
		c.err_is("No file descriptor supplied via SCM_RIGHTS",
		    "getfd", {"fdname": "a"}, fds=[r])
		c.err_is("No file descriptor supplied via SCM_RIGHTS",
		    "add-fd", {}, fds=[r])
		check(target not in f.fd_targets(), "fd kept")


@case
def fault_stop_reading(t):
	c = Fake(t, faults="stop-reading.fault").client().negotiate()
	c.s.setblocking(False)
	sent = 0
	chunk = b'{"execute": "query-status"}\n' * 1024
	while sent < 64 << 20:
		try:
			sent += c.s.send(chunk)
		except BlockingIOError:
			break
	check(sent < 64 << 20, "the fake kept reading")
	check(c.recv(GRACE) is None, "answered after stop-reading")


@case
def fault_once(t):
	f = Fake(t, faults="once.fault")
	c = f.client().negotiate()
	c.send({"execute": "query-status"})
	check(c.recv() is None and c.eof, "first connection not dropped")
	c2 = f.client().negotiate()
	check(c2.ok("query-status")["status"] == "prelaunch", "second")


@case
def bad_fault_files(t):
	for text, why in (("chunk\n", "missing or out-of-range number"),
	    ("chunk 0\n", "missing or out-of-range number"),
	    ("delay-cmd query-status\n", "missing or out-of-range number"),
	    ("explode\n", "unknown directive"),
	    ("garbage now\n", "unexpected extra words"),
	    ("error 'x'\n", "NAME is not a QMP command name"),
	    ("once\n", "'once' needs a directive")):
		fp = os.path.join(t.dir, "bad.fault")
		with open(fp, "w") as fh:
			fh.write("# comment\n\n" + text)
		p = subprocess.run([FAKE, "--socket", os.path.join(t.dir,
		    "bad.qmp"), "--faults", fp], capture_output=True,
		    timeout=GUARD)
		err = p.stderr.decode()
		check(p.returncode == 2 and "bad.fault:3: " + why in err,
		    "%r -> %d %r" % (text, p.returncode, err))
		check(not os.path.exists(os.path.join(t.dir, "bad.qmp")),
		    "listened despite a bad fault file")


@case
def scale_mode(t):
	n = 200
	d = os.path.join(t.dir, "many")
	os.mkdir(d)
	p = subprocess.Popen([FAKE, "--sockets", d, "--count", str(n)],
	    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
	t.procs.append(p)
	deadline = time.monotonic() + GUARD
	while len(os.listdir(d)) < n:
		check(time.monotonic() < deadline and p.poll() is None, "start")
		time.sleep(0.02)
	cs = []
	for i in range(n):
		c = Client(os.path.join(d, "vm%d.qmp" % i))
		t.clients.append(c)
		cs.append(c)
	for i, c in enumerate(cs):
		c.negotiate()
		if i % 2 == 0:
			c.ok("device_add", {"driver": "virtio-net-pci",
			    "id": "only%d" % i})
	for i, c in enumerate(cs):
		ids = {x["qdev_id"] for x in
		    pci_devices(c.ok("query-pci")).values()}
		want = {"only%d" % i} if i % 2 == 0 else set()
		check(ids - {""} == want, "vm%d sees %r" % (i, ids))
	for c in cs:
		c.ok("quit")
	check(p.wait(GUARD) == 0, "exit status")
	check(os.listdir(d) == [], "sockets left: %r" % os.listdir(d)[:5])
	err = p.stderr.read()
	check(err == b"", "stderr: %r" % err[:2000])


@case
def scale_first(t):
	# Two processes share one dir and one naming (the benchmark's way
	# past one process's fd limit): vm0..vm4 and vm5..vm9.
	d = os.path.join(t.dir, "split")
	os.mkdir(d)
	ps = [subprocess.Popen([FAKE, "--sockets", d, "--count", "5",
	    "--first", str(f)], stdout=subprocess.PIPE,
	    stderr=subprocess.PIPE) for f in (0, 5)]
	t.procs.extend(ps)
	want = sorted("vm%d.qmp" % i for i in range(10))
	deadline = time.monotonic() + GUARD
	while sorted(os.listdir(d)) != want:
		check(time.monotonic() < deadline and
		    all(p.poll() is None for p in ps), "start: %r" %
		    sorted(os.listdir(d)))
		time.sleep(0.02)
	for i in range(10):
		c = Client(os.path.join(d, "vm%d.qmp" % i))
		t.clients.append(c)
		c.negotiate()
		c.ok("quit")
	for p in ps:
		check(p.wait(GUARD) == 0, "exit status")
		err = p.stderr.read()
		check(err == b"", "stderr: %r" % err[:2000])
	check(os.listdir(d) == [], "sockets left: %r" % os.listdir(d))
	p = subprocess.run([FAKE, "--socket", os.path.join(d, "x"), "--first",
	    "1"], capture_output=True, timeout=GUARD)
	check(p.returncode == 2, "--first without --sockets: %d" %
	    p.returncode)


@case
def scale_out_of_fds(t):
	# 30 VMs under a 48-fd limit: clients past the limit wait in the
	# backlog (no busy loop, no crash) and are served once VMs quit.
	import resource
	n = 30
	d = os.path.join(t.dir, "few")
	os.mkdir(d)
	p = subprocess.Popen([FAKE, "--sockets", d, "--count", str(n)],
	    stdout=subprocess.PIPE, stderr=subprocess.PIPE,
	    preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE,
	    (48, 48)))
	t.procs.append(p)
	deadline = time.monotonic() + GUARD
	while len(os.listdir(d)) < n:
		check(time.monotonic() < deadline and p.poll() is None, "start")
		time.sleep(0.02)
	cs = [Client(os.path.join(d, "vm%d.qmp" % i), greet=False)
	    for i in range(n)]
	t.clients.extend(cs)
	done = 0
	pending = list(cs)
	while pending:
		r, _, _ = select.select([c.s for c in pending], [], [], GUARD)
		check(r, "%d clients never served" % len(pending))
		for c in [c for c in pending if c.s in r]:
			check("QMP" in (c.recv() or {}), "greeting")
			c.negotiate()
			c.ok("quit")
			check(c.wait_eof(), "EOF after quit")
			c.close()
			pending.remove(c)
			done += 1
	check(done == n and p.wait(GUARD) == 0, "exit")
	check(b"Too many open files" in p.stderr.read(), "limit never hit")


@case
def sigterm_cleans_up(t):
	f = Fake(t)
	c = f.client().negotiate()
	c.ok("device_add", {"driver": "virtio-net-pci", "id": "n"})
	f.p.terminate()
	check(f.wait() == 0, "exit status on SIGTERM")
	check(not os.path.exists(f.path), "socket left behind")
	err = f.p.stderr.read()
	check(err == b"", "stderr: %r" % err[:2000])


def main():
	if not os.access(FAKE, os.X_OK):
		print("not ok - fake-qemu not built at %s" % FAKE)
		return 1
	only = sys.argv[1:]
	failed = 0
	for f in CASES:
		if only and f.__name__ not in only:
			continue
		t = T()
		try:
			f(t)
			print("ok - %s" % f.__name__)
		except Fail as e:
			failed += 1
			print("not ok - %s: %s" % (f.__name__, e))
		except Exception:
			failed += 1
			print("not ok - %s: %s" % (f.__name__,
			    traceback.format_exc().strip().replace("\n", " | ")))
		finally:
			t.cleanup()
		sys.stdout.flush()
	return 1 if failed else 0


if __name__ == "__main__":
	sys.exit(main())
