#!/usr/bin/env python3
"""Privilege separation (issue 15, part 3): the privileged helper's
protocol fed raw datagrams, as a compromised daemon could send them. The
helper is priv-serve: the broker's own request loop (broker/privsep.c) on
a SOCK_SEQPACKET socketpair. Malformed requests, paths outside the image
roots, "..", "//", relative paths, symlinks (last component and middle),
a symlink swapped in between check and open (raced thousands of times:
never followed), FIFOs and directories, a device that is not a tap (lo, a
tun, a missing one), monitor sockets outside the roots: each is refused
with a reason, no fd comes back, and the helper keeps serving. The loop
operations: bad names, flags and device numbers, an image out of the
root or not a file, a taken device, and a detach of a device not backed
by the named file under a root are refused; a real attach and detach
work. nbd (on a fake sysfs tree): bad flags, formats and devices, the
same image paths, a connected device, and a disconnect of a device the
helper did not connect are refused; connect and disconnect work with the
helper's own argv."""

import errno
import fcntl
import os
import socket
import stat
import struct
import subprocess
import threading

import qb
from qb import check

MAGIC = 0x31504251
NAME_MAX = 4096
REQ = struct.Struct("<IIIIII%ds" % NAME_MAX)
REP = struct.Struct("<IIIiII512s")
TAP, IMAGE, CONNECT = 1, 2, 3
LOOP_FIND, LOOP_ATTACH, LOOP_DETACH = 4, 5, 6
LOOP_MAX = 1 << 20
NBD_CONNECT, NBD_DISCONNECT = 7, 8
NBD_MAX = 1024
F_RO = 0x1
TUNGETIFF = 0x800454d2
IFF_TUN, IFF_TAP = 0x1, 0x2


class Helper:
	def __init__(self, h, roots, monitor_root=None, opts=(), env=None):
		self.s, theirs = socket.socketpair(socket.AF_UNIX,
		    socket.SOCK_SEQPACKET)
		argv = [qb.program("priv-serve"), str(theirs.fileno())]
		if monitor_root:
			argv += ["--monitor-root", monitor_root]
		self.log = open(h.path("helper.log"), "w+")
		self.p = subprocess.Popen(argv + list(opts) + roots, pass_fds=[
		    theirs.fileno()], stdin=subprocess.DEVNULL,
		    stdout=self.log, stderr=subprocess.STDOUT,
		    env=dict(os.environ, **(env or {})))
		theirs.close()
		self.s.settimeout(qb.TIMEOUT)
		self.seq = 0

	def raw(self, data, fds=()):
		if fds:
			socket.send_fds(self.s, [data], list(fds))
		else:
			self.s.send(data)
		return self.reply()

	def reply(self):
		msg, fds, flags, _ = socket.recv_fds(self.s, REP.size + 16, 16)
		check(len(msg) == REP.size, "reply of %d bytes" % len(msg))
		magic, seq, op, status, nfds, pad, desc = REP.unpack(msg)
		check(magic == MAGIC, "reply magic")
		check(nfds == len(fds), "nfds %d, %d fds came" % (nfds,
		    len(fds)))
		return status, desc.split(b"\0")[0].decode(), fds

	def req(self, op, name, arg=0, flags=0, magic=MAGIC, pad=0):
		self.seq += 1
		if isinstance(name, str):
			name = name.encode()
		return REQ.pack(magic, self.seq, op, arg, flags, pad, name)

	def call(self, op, name, arg=0, flags=0):
		return self.raw(self.req(op, name, arg, flags))

	def refused(self, op, name, arg=0, flags=0, why=""):
		status, desc, fds = self.call(op, name, arg, flags)
		for fd in fds:
			os.close(fd)
		check(status != 0 and not fds, "%s %r not refused" % (why, name))
		check(desc, "refusal without a reason: %r" % name)
		return desc

	def ok(self, op, name, arg=0, flags=0):
		status, desc, fds = self.call(op, name, arg, flags)
		check(status == 0 and fds, "%r refused: %s" % (name, desc))
		return fds

	def close(self):
		self.s.close()
		self.p.wait(timeout=qb.TIMEOUT)
		self.log.close()


def helper_fds(pid):
	return len(os.listdir("/proc/%d/fd" % pid))


def test_malformed():
	with qb.Harness("privh") as h:
		root = h.path("img")
		os.mkdir(root)
		with open(os.path.join(root, "a.raw"), "w") as f:
			f.write("x")
		hp = Helper(h, [root])
		good = os.path.join(root, "a.raw")
		base = helper_fds(hp.p.pid)
		bad = {
		    "short": hp.req(IMAGE, good)[:20],
		    "long": hp.req(IMAGE, good) + b"\0" * 8,
		    "empty": b"",
		    "magic": hp.req(IMAGE, good, magic=0x12345678),
		    "op 0": hp.req(0, good),
		    "op 99": hp.req(99, good),
		    "padding": hp.req(IMAGE, good, pad=1),
		    "no NUL": REQ.pack(MAGIC, 1, IMAGE, 0, 0, 0, b"/" * NAME_MAX),
		    "after NUL": hp.req(IMAGE, good.encode() + b"\0junk"),
		    "empty name": hp.req(IMAGE, b""),
		}
		for why, data in bad.items():
			if not data:
				continue	# a zero-length datagram reads as EOF
			status, desc, fds = hp.raw(data)
			check(status != 0 and not fds, "%s accepted" % why)
			check(desc, "%s: no reason" % why)
		# a request that carries an fd: refused, the fd not kept
		r, w = os.pipe()
		status, desc, fds = hp.raw(hp.req(IMAGE, good), [r, w])
		check(status != 0 and "fds" in desc, "fds in a request: %s" %
		    desc)
		os.close(r)
		os.close(w)
		# at most as many: a sanitizer may hold one of its own for a
		# moment when the baseline is read
		check(helper_fds(hp.p.pid) <= base, "helper kept fds: %d, "
		    "was %d" % (helper_fds(hp.p.pid), base))
		# bad arguments of good operations
		hp.refused(IMAGE, good, arg=7, why="mode 7")
		hp.refused(IMAGE, good, flags=1, why="image flags")
		hp.refused(TAP, "lo", arg=0, why="0 queues")
		hp.refused(TAP, "lo", arg=99, why="99 queues")
		hp.refused(TAP, "lo", arg=1, flags=0x80, why="tap flags")
		# and it still serves
		fds = hp.ok(IMAGE, good)
		check(os.read(fds[0], 1) == b"x", "served after the refusals")
		os.close(fds[0])
		log = open(h.path("helper.log")).read()
		check("refused a malformed request" in log, "refusals not "
		    "logged: %s" % log[-500:])
		hp.close()


def test_image_paths():
	with qb.Harness("privh") as h:
		root = h.path("img")
		out = h.path("outside")
		os.makedirs(os.path.join(root, "sub"))
		os.mkdir(out)
		inside = os.path.join(root, "a.raw")
		with open(inside, "w") as f:
			f.write("in")
		secret = os.path.join(out, "secret")
		with open(secret, "w") as f:
			f.write("secret")
		os.symlink(secret, os.path.join(root, "out-link"))
		os.symlink(inside, os.path.join(root, "in-link"))
		os.symlink(out, os.path.join(root, "dirlink"))
		os.mkfifo(os.path.join(root, "fifo"))
		hp = Helper(h, [root])
		# inside: read-write and read-only, the right file
		fds = hp.ok(IMAGE, inside, arg=1)
		check(os.fstat(fds[0]).st_ino == os.stat(inside).st_ino,
		    "wrong file")
		os.write(fds[0], b"IN")
		os.close(fds[0])
		fds = hp.ok(IMAGE, inside, arg=0)
		try:
			os.write(fds[0], b"no")
			check(False, "read-only fd writable")
		except OSError as e:
			check(e.errno == errno.EBADF, "ro write: %s" % e)
		os.close(fds[0])
		for path, why in [
		    ("/etc/passwd", "outside the roots"),
		    (secret, "outside the roots"),
		    (root + "/../outside/secret", ".."),
		    (root + "/sub/../a.raw", ".. inside"),
		    (root + "//a.raw", "//"),
		    (root + "/./a.raw", "."),
		    ("img/a.raw", "relative"),
		    (os.path.join(root, "out-link"), "symlink out"),
		    (os.path.join(root, "in-link"), "symlink in (none "
			"followed)"),
		    (os.path.join(root, "dirlink", "secret"), "directory "
			"symlink"),
		    (os.path.join(root, "fifo"), "FIFO"),
		    (os.path.join(root, "sub"), "directory"),
		    (os.path.join(root, "missing"), "missing"),
		    ("file:" + inside, "file: pseudo-protocol"),
		    (root, "the root itself")]:
			hp.refused(IMAGE, path, arg=1, why=why)
		check(open(secret).read() == "secret", "secret changed")
		hp.close()


def test_symlink_swap():
	"""A name inside the root flips between a regular file and a
	symlink to a file outside, by rename (atomic), as fast as a thread
	can, while the helper is asked for it over and over: every answer
	is the inside file or a refusal, never the outside one."""
	with qb.Harness("privh") as h:
		root = h.path("img")
		os.mkdir(root)
		secret = h.path("secret")
		with open(secret, "w") as f:
			f.write("secret")
		target = os.path.join(root, "disk.raw")
		reg = os.path.join(root, ".reg")
		lnk = os.path.join(root, ".lnk")
		with open(target, "w") as f:
			f.write("inside")
		inside_ino = os.stat(target).st_ino
		secret_ino = os.stat(secret).st_ino
		stop = threading.Event()

		def flip():
			while not stop.is_set():
				os.rename(target, reg)
				os.symlink(secret, lnk)
				os.rename(lnk, target)
				os.unlink(target)
				os.rename(reg, target)

		hp = Helper(h, [root])
		t = threading.Thread(target=flip)
		t.start()
		got = {"inside": 0, "refused": 0}
		try:
			for i in range(20000):
				status, desc, fds = hp.call(IMAGE, target, arg=1)
				if status != 0:
					got["refused"] += 1
				for fd in fds:
					ino = os.fstat(fd).st_ino
					os.close(fd)
					check(ino != secret_ino, "the helper "
					    "followed the swapped symlink (try %d)"
					    % i)
					check(ino == inside_ino, "unknown file")
					got["inside"] += 1
				if i > 500 and got["inside"] > 20 and \
				    got["refused"] > 20:
					break
		finally:
			stop.set()
			t.join()
		# Both sides of the race were hit, or the test proved nothing.
		check(got["inside"] > 0 and got["refused"] > 0, "race not "
		    "exercised: %r" % got)
		print("# swap race: %r" % got)
		hp.close()


def ip(*args):
	return subprocess.run(["ip"] + list(args), capture_output=True,
	    text=True)


def test_tap():
	names = ["qbph%d" % (os.getpid() % 100000),
	    "qbpn%d" % (os.getpid() % 100000)]
	tap, tun = names
	p = ip("tuntap", "add", "dev", tap, "mode", "tap", "vnet_hdr")
	if p.returncode != 0:
		raise qb.Skip("cannot make a tap: %s" % p.stderr.strip())
	try:
		check(ip("tuntap", "add", "dev", tun, "mode", "tun").returncode
		    == 0, "cannot make a tun")
		with qb.Harness("privh") as h:
			hp = Helper(h, [h.dir])
			fds = hp.ok(TAP, tap, arg=1)
			check(len(fds) == 1, "one queue, %d fds" % len(fds))
			ifr = fcntl.ioctl(fds[0], TUNGETIFF, b"\0" * 40)
			name = ifr[:16].split(b"\0")[0].decode()
			flags = struct.unpack("<H", ifr[16:18])[0]
			check(name == tap and flags & IFF_TAP, "not the tap: "
			    "%s %#x" % (name, flags))
			os.close(fds[0])
			if os.path.exists("/dev/vhost-net"):
				fds = hp.ok(TAP, tap, arg=1, flags=1)
				check(len(fds) == 2 and stat.S_ISCHR(
				    os.fstat(fds[1]).st_mode), "vhost fd")
				for fd in fds:
					os.close(fd)
			for dev, why in [("lo", "loopback"), (tun, "a tun"),
			    ("qbpnone0", "missing"), ("../x", "bad name"),
			    ("a" * 20, "long name"), ("eth0:1", "alias")]:
				hp.refused(TAP, dev, arg=1, why=why)
			# a tun is not made a tap, a missing one is not made
			check(ip("link", "show", "qbpnone0").returncode != 0,
			    "the helper created an interface")
			hp.close()
	finally:
		for n in names:
			ip("tuntap", "del", "dev", n, "mode", "tap")
			ip("tuntap", "del", "dev", n, "mode", "tun")


def loop_backing(n):
	try:
		with open("/sys/block/loop%d/loop/backing_file" % n) as f:
			return f.read().strip()
	except OSError:
		return None


def test_loop():
	with qb.Harness("privh") as h:
		root = h.path("img")
		os.mkdir(root)
		img = os.path.join(root, "l.raw")
		other = os.path.join(root, "m.raw")
		for p in (img, other, h.path("outside.raw")):
			with open(p, "wb") as f:
				f.truncate(1 << 20)
		os.symlink(h.path("outside.raw"), os.path.join(root, "out"))
		os.mkfifo(os.path.join(root, "fifo"))
		hp = Helper(h, [root])
		base = helper_fds(hp.p.pid)
		# find: its one name, no arg, no flags
		hp.refused(LOOP_FIND, "x", why="find, another name")
		hp.refused(LOOP_FIND, "loop-control", arg=1, why="find arg")
		hp.refused(LOOP_FIND, "loop-control", flags=1, why="find flags")
		status, dev, fds = hp.call(LOOP_FIND, "loop-control")
		check(status == 0 and not fds and dev.startswith("/dev/loop"),
		    "find: %d %r" % (status, dev))
		n = int(dev[9:])
		# attach: flags, device number, what the image is
		hp.refused(LOOP_ATTACH, img, arg=n, flags=2, why="attach flags")
		hp.refused(LOOP_ATTACH, img, arg=LOOP_MAX, why="device number")
		for bad, why in ((h.path("outside.raw"), "out of the root"),
		    (os.path.join(root, "out"), "a link out"),
		    (os.path.join(root, "fifo"), "a FIFO"),
		    (root, "a directory"), ("l.raw", "a relative path"),
		    (root + "/../img/l.raw", "..")):
			hp.refused(LOOP_ATTACH, bad, arg=n, why=why)
		check(loop_backing(n) is None, "a refused attach attached")
		for _ in range(5):	# another may take it between the two
			status, desc, fds = hp.call(LOOP_ATTACH, img, arg=n,
			    flags=F_RO)
			if status != errno.EBUSY:
				break
			n = int(hp.call(LOOP_FIND, "loop-control")[1][9:])
		try:
			check(status == 0 and not fds, "attach: %s" % desc)
			check(loop_backing(n) == img, "loop%d backs %r" %
			    (n, loop_backing(n)))
			with open("/sys/block/loop%d/ro" % n) as f:
				check(f.read().strip() == "1", "not read-only")
			# taken: losetup's words, so the daemon retries
			d = hp.refused(LOOP_ATTACH, other, arg=n, why="taken")
			check("busy" in d, "taken device: %s" % d)
			check(loop_backing(n) == img, "a taken device changed")
			# detach: only of the file that backs it, under a root
			hp.refused(LOOP_DETACH, other, arg=n, why="another file")
			hp.refused(LOOP_DETACH, h.path("outside.raw"), arg=n,
			    why="detach out of the root")
			hp.refused(LOOP_DETACH, img, arg=n, flags=1,
			    why="detach flags")
			hp.refused(LOOP_DETACH, img, arg=LOOP_MAX,
			    why="detach device number")
			hp.refused(LOOP_DETACH, "l.raw", arg=n, why="relative")
			check(loop_backing(n) == img, "a refused detach detached")
			status, desc, fds = hp.call(LOOP_DETACH, img, arg=n)
			check(status == 0 and not fds, "detach: %s" % desc)
			# (udev may hold it a moment: the kernel lets go at its
			# close, as for losetup -d)
			qb.wait_for(lambda: loop_backing(n) != img,
			    "loop%d detached" % n)
			hp.refused(LOOP_DETACH, img, arg=n, why="detached twice")
		finally:
			if loop_backing(n) == img:
				subprocess.run(["losetup", "--detach", "/dev/loop%d"
				    % n])
		check(helper_fds(hp.p.pid) <= base, "helper kept fds: %d, "
		    "was %d" % (helper_fds(hp.p.pid), base))
		hp.close()


def test_nbd():
	"""nbd on a fake sysfs tree with the stand-in qemu-nbd (no nbd module
	here): the helper builds the argv itself (the image as its own fd 3),
	refuses what is not its fixed list, and disconnects only devices it
	connected, or whose server is a helper's qemu-nbd."""
	import sys
	with qb.Harness("privh") as h:
		root = h.path("img")
		os.mkdir(root)
		img = os.path.join(root, "n.raw")
		with open(img, "wb") as f:
			f.truncate(1 << 20)
		with open(h.path("outside.raw"), "wb") as f:
			f.truncate(1 << 20)
		os.symlink(h.path("outside.raw"), os.path.join(root, "out"))
		os.mkfifo(os.path.join(root, "fifo"))
		sysfs, dev = h.path("sys"), h.path("dev")
		for i in range(4):
			os.makedirs("%s/block/nbd%d" % (sysfs, i))
		os.makedirs(dev)
		for i in range(3):
			open("%s/nbd%d" % (dev, i), "w").close()
		os.symlink("/dev/null", dev + "/nbd3")	# a link: refused
		os.makedirs("%s/block/nbd9" % sysfs)
		os.mkdir(dev + "/nbd9")			# not a device
		log, mode = h.path("nbdlog"), h.path("nbdmode")

		def nbd_mode(m):
			with open(mode, "w") as f:
				f.write(m)

		def last():
			with open(log) as f:
				return f.read().splitlines()[-1]

		def pid(n):
			try:
				with open("%s/block/nbd%d/pid" % (sysfs, n)) as f:
					return f.read().strip()
			except OSError:
				return None

		hp = Helper(h, [root], opts=["--qemu-nbd", os.path.join(
		    qb.SRCDIR, "tests/integration/fake-qemu-nbd"),
		    "--nbd-sysfs", sysfs, "--nbd-dev-dir", dev],
		    env={"FAKE_NBD_SYSFS": sysfs, "FAKE_NBD_MODE_FILE": mode,
		    "FAKE_NBD_LOG": log})
		base = helper_fds(hp.p.pid)
		nbd_mode("ok")
		fmt = lambda i: i << 8
		for flags, why in ((2, "flag"), (1 << 16, "high flag"),
		    (fmt(3), "format past the list"), (fmt(0xff), "format")):
			hp.refused(NBD_CONNECT, img, arg=0, flags=flags, why=why)
		for n, why in ((NBD_MAX, "device number"), (7, "no sysfs"),
		    (3, "a link in the dev dir"), (9, "a directory")):
			hp.refused(NBD_CONNECT, img, arg=n, why=why)
		for bad, why in ((h.path("outside.raw"), "out of the root"),
		    (os.path.join(root, "out"), "a link out"),
		    (os.path.join(root, "fifo"), "a FIFO"),
		    (root, "a directory"), ("n.raw", "a relative path"),
		    (root + "/../img/n.raw", ".."), (root + "//n.raw", "//")):
			hp.refused(NBD_CONNECT, bad, arg=0, why=why)
		check(not os.path.exists(log), "qemu-nbd ran for a refusal")
		# a real connect: its argv, and the image it was given
		status, desc, fds = hp.call(NBD_CONNECT, img, arg=0,
		    flags=1 | fmt(2))
		check(status == 0 and not fds, "connect: %d %s" % (status,
		    desc))
		# qcow2: its backing file never opened (a header may name any
		# host file), in qemu-nbd's own syntax
		check(last() == "-c %s/nbd0 -r -- json:{\"driver\":\"qcow2\","
		    "\"backing\":null,\"file\":{\"driver\":\"file\","
		    "\"filename\":\"/proc/self/fd/3\"}} (= %s)" % (dev, img),
		    "argv: %r" % last())
		check(pid(0) is not None, "not connected")
		d = hp.refused(NBD_CONNECT, img, arg=0, why="connected already")
		check("already" in d, d)
		# no format asked: raw, never a probe as root
		check(hp.call(NBD_CONNECT, img, arg=1)[0] == 0, "connect 1")
		check(" -f raw -- " in last(), "argv: %r" % last())
		# qemu-nbd failing: its words come back
		nbd_mode("fail")
		status, desc, _ = hp.call(NBD_CONNECT, img, arg=2)
		check(status != 0 and "Permission denied" in desc, desc)
		nbd_mode("ok")
		# disconnect: its one name, no flags, a device number
		hp.refused(NBD_DISCONNECT, "x", arg=0, why="another name")
		hp.refused(NBD_DISCONNECT, "nbd", arg=0, flags=1, why="flags")
		hp.refused(NBD_DISCONNECT, "nbd", arg=NBD_MAX, why="number")
		hp.refused(NBD_DISCONNECT, "nbd", arg=3, why="a link")
		# a device this helper never connected, served by another
		# process (this test's own): refused, left connected
		with open("%s/block/nbd3/pid" % sysfs, "w") as f:
			f.write("%d\n" % os.getpid())
		os.unlink(dev + "/nbd3")
		open(dev + "/nbd3", "w").close()
		d = hp.refused(NBD_DISCONNECT, "nbd", arg=3, why="not ours")
		check(pid(3) is not None and "-d" not in last(), d)
		# ... but one a helper before a restart started: its server is
		# the configured qemu-nbd (by name) serving a /proc/self/fd/ image on that device
		srv = subprocess.Popen(["fake-qemu-nbd", "-c",
		    "import time; time.sleep(60)", "-c", dev + "/nbd3",
		    "/proc/self/fd/3"], executable=sys.executable)
		try:
			with open("%s/block/nbd3/pid" % sysfs, "w") as f:
				f.write("%d\n" % srv.pid)
			qb.wait_for(lambda: open("/proc/%d/cmdline" % srv.pid,
			    "rb").read().startswith(b"fake-qemu-nbd\0"), "server")
			status, desc, _ = hp.call(NBD_DISCONNECT, "nbd", arg=3)
			check(status == 0 and pid(3) is None, desc)
		finally:
			srv.kill()
			srv.wait()
		# ours: flushed (a plain file cannot be: said) and disconnected
		status, desc, _ = hp.call(NBD_DISCONNECT, "nbd", arg=0)
		check(status == 0 and pid(0) is None, desc)
		check("flush" in desc, "flush error not said: %r" % desc)
		check(last() == "-d %s/nbd0" % dev, last())
		hp.refused(NBD_DISCONNECT, "nbd", arg=0, why="disconnected "
		    "twice")
		# a failed connect may be cleaned up (as the daemon does)
		status, desc, _ = hp.call(NBD_DISCONNECT, "nbd", arg=2)
		check(status == 0, desc)
		check(hp.call(NBD_DISCONNECT, "nbd", arg=1)[0] == 0, "nbd1")
		check(helper_fds(hp.p.pid) <= base, "helper kept fds: %d, "
		    "was %d" % (helper_fds(hp.p.pid), base))
		hp.close()


def test_connect():
	with qb.Harness("privh") as h:
		mon = h.path("mon")
		os.mkdir(mon)
		path = os.path.join(mon, "vm.qmp")
		ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
		ls.bind(path)
		ls.listen(4)
		outside = h.path("outside.qmp")
		lo = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
		lo.bind(outside)
		lo.listen(4)
		os.symlink(outside, os.path.join(mon, "link.qmp"))
		with open(os.path.join(mon, "file.qmp"), "w") as f:
			f.write("")
		hp = Helper(h, [], monitor_root=mon)
		fds = hp.ok(CONNECT, path)
		ls.settimeout(qb.TIMEOUT)
		conn, _ = ls.accept()
		os.write(fds[0], b"hello")
		check(conn.recv(5) == b"hello", "not connected to it")
		conn.close()
		os.close(fds[0])
		hp.refused(CONNECT, outside, why="outside the roots")
		hp.refused(CONNECT, os.path.join(mon, "link.qmp"),
		    why="symlink")
		hp.refused(CONNECT, os.path.join(mon, "file.qmp"),
		    why="not a socket")
		hp.refused(CONNECT, mon + "/../outside.qmp", why="..")
		hp.refused(CONNECT, path, arg=1, why="arg")
		lo.settimeout(0.2)
		try:
			lo.accept()
			check(False, "the outside socket was connected")
		except socket.timeout:
			pass
		hp.close()
		ls.close()
		lo.close()


if __name__ == "__main__":
	qb.main([test_malformed, test_image_paths, test_symlink_swap,
	    test_tap, test_loop, test_nbd, test_connect])
