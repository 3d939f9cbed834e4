"""Shared harness for the integration tests (Python 3 stdlib only).

Everything a test starts goes through a Harness, which owns a unique temp
dir and every child process, and tears all of it down even when the test
fails: processes killed and reaped, sockets and dirs removed.

Timeouts here are deadlock guards only: they are generous and a test never
asserts on how fast something happened.
"""

import errno
import fnmatch
import json
import os
import stat
import pwd
import grp
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

# Valgrind and sanitizers slow everything down; tools/check says by how
# much with QB_TIMEOUT_SCALE, and the guards grow with it.
TIMEOUT = float(os.environ.get("QB_TIMEOUT", "30")) * float(
    os.environ.get("QB_TIMEOUT_SCALE") or
    (4 if os.environ.get("QB_DAEMON_WRAPPER") else 1))

# What instruments the daemon in this run, if anything: tools/check's
# asan phase sets QB_SANITIZER=asan; `make check-valgrind` sets it to
# valgrind and puts valgrind in QB_DAEMON_WRAPPER (also honoured when a
# developer sets only the wrapper).
WRAPPER = os.environ.get("QB_DAEMON_WRAPPER", "")
SANITIZER = os.environ.get("QB_SANITIZER") or (
    "valgrind" if "valgrind" in WRAPPER else "")
VALGRIND = SANITIZER == "valgrind"


def wrapper_error_rc():
	"""The exit status the wrapper gives a daemon it found errors in
	(valgrind --error-exitcode=N), or None."""
	for a in shlex.split(WRAPPER):
		if a.startswith("--error-exitcode="):
			return int(a.split("=", 1)[1])
	return None


def skip_under_valgrind(why):
	"""For the one case that cannot run with the daemon under valgrind
	(it measures the process itself, or would take far too long): a
	skip that says why, instead of leaving the whole suite out."""
	if VALGRIND:
		raise Skip("not under valgrind: " + why)


BUILDDIR = os.environ.get("QB_BUILDDIR") or os.getcwd()
SRCDIR = os.environ.get("QB_SRCDIR") or os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__))))


class Failure(Exception):
	pass


class Skip(Exception):
	pass


def check(cond, why):
	if not cond:
		raise Failure(why)


def wait_for(pred, what, timeout=None, interval=0.02):
	"""Polls pred() until it returns a true value, which is returned.
	Raises Failure naming what was awaited if the guard runs out."""
	deadline = time.monotonic() + (timeout or TIMEOUT)
	while True:
		v = pred()
		if v:
			return v
		if time.monotonic() > deadline:
			raise Failure("timed out waiting for " + what)
		time.sleep(interval)


def builddir_path(*p):
	return os.path.join(BUILDDIR, *p)


def srcdir_path(*p):
	return os.path.join(SRCDIR, *p)


def program(name):
	path = builddir_path(name)
	if not os.access(path, os.X_OK):
		raise Failure("%s not built (looked for %s)" % (name, path))
	return path


# ---- /proc accounting ----

def fd_count(pid):
	return len(os.listdir("/proc/%d/fd" % pid))


# Files a process opens for a moment on its own (glibc reading the time
# zone for a log line): not the daemon's to account for.
TRANSIENT = ("/usr/share/zoneinfo/", "/etc/localtime")


def fd_list(pid):
	out = []
	for fd in sorted(os.listdir("/proc/%d/fd" % pid), key=int):
		try:
			target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
		except OSError:
			continue
		if not target.startswith(TRANSIENT):
			out.append("%s->%s" % (fd, target))
	return out


def children(pid):
	"""Pids of the live children of pid (all threads)."""
	kids = []
	try:
		tasks = os.listdir("/proc/%d/task" % pid)
	except OSError:
		return kids
	for t in tasks:
		try:
			with open("/proc/%d/task/%s/children" % (pid, t)) as f:
				kids += [int(x) for x in f.read().split()]
		except OSError:
			pass
	return kids


def proc_status(pid):
	"""/proc/PID/status as a dict of its fields."""
	out = {}
	with open("/proc/%d/status" % pid) as f:
		for line in f:
			k, _, v = line.partition(":")
			out[k] = v.strip()
	return out


def check_separated(parent, child, uid):
	"""The daemon (child) runs as uid with no capability at all,
	no_new_privs and a seccomp filter; its parent, the helper, is root."""
	s = proc_status(child)
	check(s["Uid"].split() == [str(uid)] * 4, "daemon Uid %s" % s["Uid"])
	check(s["Gid"].split()[0] != "0", "daemon Gid %s" % s["Gid"])
	for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
		check(int(s[cap], 16) == 0, "daemon %s %s" % (cap, s[cap]))
	check(s["NoNewPrivs"] == "1", "no_new_privs %s" % s["NoNewPrivs"])
	check(s["Seccomp"] == "2", "Seccomp %s" % s["Seccomp"])
	p = proc_status(parent)
	check(p["Uid"].split()[0] == "0", "the helper is not root")


def rss_kib(pid):
	with open("/proc/%d/status" % pid) as f:
		for line in f:
			if line.startswith("VmRSS:"):
				return int(line.split()[1])
	return 0


def kvm_usable():
	"""tools/lib.sh's qb_kvm_probe says kvm: /dev/kvm is a character
	device that opens read-write and answers KVM_GET_API_VERSION (a
	regular file of that name, left by some probe that created it, or
	any other device, is not). One probe for the demo, tools/bench and
	the tests; test_kvm_probe runs it on nodes of its own."""
	lib = os.path.join(SRCDIR, "tools", "lib.sh")
	p = subprocess.run(["sh", "-c", '. "$QB_LIB_SH"; qb_kvm_probe'],
	    capture_output=True, text=True, env=dict(os.environ,
	    QB_LIB_SH=lib))
	return p.stdout.strip() == "kvm"


# ---- a QMP client ----

class QmpError(Exception):
	def __init__(self, cls, desc, reply=None):
		Exception.__init__(self, "%s: %s" % (cls, desc))
		self.cls = cls
		self.desc = desc
		self.reply = reply


class Closed(Exception):
	pass


class Qmp:
	"""A QMP client: line framing, many commands in flight by id, events
	kept in arrival order, fds passed with SCM_RIGHTS."""

	def __init__(self, path, connect=True, rcvbuf=None):
		self.path = path
		self.sock = None
		self.buf = b""
		self.events = []
		self.replies = {}	# id (json-dumped) -> reply
		self.noid = []		# replies without an id (parse errors)
		self.greeting = None
		self.next_id = 0
		self.eof = False
		if connect:
			self.connect(rcvbuf)

	def connect(self, rcvbuf=None):
		self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
		if rcvbuf:
			self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF,
			    rcvbuf)
		self.sock.settimeout(TIMEOUT)
		self.sock.connect(self.path)
		self.sock.setblocking(False)

	def close(self):
		if self.sock is not None:
			self.sock.close()
			self.sock = None

	def __enter__(self):
		return self

	def __exit__(self, *a):
		self.close()

	def fileno(self):
		return self.sock.fileno()

	# -- raw I/O --

	def send_raw(self, data):
		if isinstance(data, str):
			data = data.encode()
		self.sock.setblocking(True)
		self.sock.settimeout(TIMEOUT)
		try:
			self.sock.sendall(data)
		finally:
			self.sock.setblocking(False)

	def send_msg(self, obj, fds=None):
		data = json.dumps(obj).encode() + b"\r\n"
		if fds:
			self.sock.setblocking(True)
			self.sock.settimeout(TIMEOUT)
			try:
				n = socket.send_fds(self.sock, [data], list(fds))
			finally:
				self.sock.setblocking(False)
			if n < len(data):
				self.send_raw(data[n:])
		else:
			self.send_raw(data)

	def _fill(self, deadline):
		"""Reads once, waiting until deadline. Returns False on EOF."""
		if self.eof:
			return False
		left = deadline - time.monotonic()
		if left <= 0:
			raise Failure("QMP read timed out on %s" % self.path)
		r, _, _ = select.select([self.sock], [], [], left)
		if not r:
			raise Failure("QMP read timed out on %s" % self.path)
		try:
			data = self.sock.recv(65536)
		except ConnectionResetError:
			data = b""
		except BlockingIOError:
			return True
		if not data:
			self.eof = True
			return False
		self.buf += data
		return True

	def _line(self):
		i = self.buf.find(b"\n")
		if i < 0:
			return None
		line, self.buf = self.buf[:i], self.buf[i + 1:]
		return line.rstrip(b"\r")

	def recv_msg(self, timeout=None):
		"""The next message of any kind; raises Closed on EOF."""
		deadline = time.monotonic() + (timeout or TIMEOUT)
		while True:
			line = self._line()
			if line is not None:
				if not line.strip():
					continue
				try:
					return json.loads(line)
				except ValueError:
					raise Failure("peer sent non-JSON: %r" %
					    line[:200])
			if not self._fill(deadline):
				raise Closed("EOF on %s" % self.path)

	def poll_msgs(self):
		"""Sorts whatever is readable now, without waiting."""
		while True:
			line = self._line()
			while line is not None:
				if line.strip():
					self._sort(json.loads(line))
				line = self._line()
			r, _, _ = select.select([self.sock], [], [], 0)
			if not r or not self._fill(time.monotonic() + 1):
				return

	def _sort(self, msg):
		if "event" in msg:
			self.events.append(msg)
		elif "return" in msg or "error" in msg:
			if "id" in msg:
				self.replies[json.dumps(msg["id"],
				    sort_keys=True)] = msg
			else:
				self.noid.append(msg)
		elif "QMP" in msg:
			if self.greeting is None:
				self.greeting = msg
		else:
			raise Failure("unclassifiable message %r" % msg)

	def pump(self, timeout=None):
		"""Reads one message and sorts it."""
		self._sort(self.recv_msg(timeout))

	# -- protocol --

	def read_greeting(self):
		msg = self.recv_msg()
		check("QMP" in msg, "expected a greeting, got %r" % msg)
		self.greeting = msg
		return msg

	def negotiate(self):
		self.read_greeting()
		self.cmd("qmp_capabilities")
		return self

	def new_id(self):
		self.next_id += 1
		return "c%d" % self.next_id

	def send_cmd(self, name, args=None, id=None, fds=None, noid=False):
		msg = {"execute": name}
		if args is not None:
			msg["arguments"] = args
		if id is None and not noid:
			id = self.new_id()
		if not noid:
			msg["id"] = id
		self.send_msg(msg, fds)
		return id

	def wait_reply(self, id, timeout=None):
		key = json.dumps(id, sort_keys=True)
		deadline = time.monotonic() + (timeout or TIMEOUT)
		while key not in self.replies:
			left = deadline - time.monotonic()
			if left <= 0:
				raise Failure("no reply for id %r" % (id,))
			self.pump(left)
		return self.replies.pop(key)

	def wait_noid(self, timeout=None):
		deadline = time.monotonic() + (timeout or TIMEOUT)
		while not self.noid:
			left = deadline - time.monotonic()
			if left <= 0:
				raise Failure("no id-less reply")
			self.pump(left)
		return self.noid.pop(0)

	def execute(self, name, args=None, fds=None, id=None):
		"""Full reply object."""
		return self.wait_reply(self.send_cmd(name, args, id=id, fds=fds))

	def cmd(self, name, args=None, fds=None):
		"""The return value, or raises QmpError."""
		r = self.execute(name, args, fds)
		if "error" in r:
			raise QmpError(r["error"].get("class"),
			    r["error"].get("desc"), r)
		return r["return"]

	def cmd_error(self, name, args=None, fds=None):
		"""Expects an error; returns (class, desc)."""
		r = self.execute(name, args, fds)
		check("error" in r, "%s %s: expected an error, got %r" %
		    (name, json.dumps(args), r))
		e = r["error"]
		check(isinstance(e.get("class"), str) and
		    isinstance(e.get("desc"), str) and e["desc"],
		    "error without class/desc: %r" % r)
		return e["class"], e["desc"]

	def wait_event(self, pred=None, timeout=None, what=None):
		"""Pops the first event matching pred (a name or a function)."""
		if isinstance(pred, str):
			name = pred
			pred = lambda e: e.get("event") == name
			what = what or name
		deadline = time.monotonic() + (timeout or TIMEOUT)
		while True:
			for i, e in enumerate(self.events):
				if pred is None or pred(e):
					return self.events.pop(i)
			left = deadline - time.monotonic()
			if left <= 0:
				raise Failure("no event %s" % (what or ""))
			self.pump(left)

	def wait_closed(self, timeout=None):
		"""Reads (and sorts) until EOF."""
		deadline = time.monotonic() + (timeout or TIMEOUT)
		while True:
			try:
				self.pump(max(0.001, deadline - time.monotonic()))
			except Closed:
				return


def greeting_of(path):
	"""The greeting a QMP server at path sends (then hangs up)."""
	with Qmp(path) as c:
		return c.read_greeting()


def listening(path):
	"""True once a unix socket bound to path listens, found without
	connecting (a probe connection would itself be a daemon fd)."""
	try:
		with open("/proc/net/unix") as f:
			next(f)
			for line in f:
				parts = line.split()
				if len(parts) >= 8 and parts[7] == path and \
				    int(parts[3], 16) & 0x10000:
					return True
	except OSError:
		pass
	return False


def try_connect(path):
	s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
	try:
		s.connect(path)
		return True
	except OSError:
		return False
	finally:
		s.close()


# ---- processes ----

class Proc:
	def __init__(self, h, argv, name, **kw):
		self.h = h
		self.name = name
		self.argv = argv
		self.log = os.path.join(h.dir, "%s.%d.log" % (name,
		    h.next_seq()))
		self.logf = open(self.log, "wb")
		self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
		    stdout=self.logf, stderr=subprocess.STDOUT,
		    close_fds=True, **kw)
		self.pid = self.p.pid
		if self not in h.procs:
			h.procs.append(self)

	def alive(self):
		return self.p.poll() is None

	def signal(self, sig):
		# The process started: a separated daemon's privileged parent
		# (which forwards it), not the child its pid names.
		if self.p.poll() is None:
			os.kill(self.p.pid, sig)

	def wait(self, timeout=None):
		try:
			return self.p.wait(timeout or TIMEOUT)
		except subprocess.TimeoutExpired:
			raise Failure("%s (pid %d) did not exit" % (self.name,
			    self.pid))

	def kill(self):
		if self.p.poll() is None:
			self.p.kill()
		try:
			self.p.wait(TIMEOUT)
		except subprocess.TimeoutExpired:
			pass
		self.logf.close()

	def output(self):
		if not self.logf.closed:
			self.logf.flush()
		with open(self.log, "rb") as f:
			return f.read().decode(errors="replace")

	def tail(self, n=20):
		return "\n".join(self.output().splitlines()[-n:])


class FakeQemu(Proc):
	def __init__(self, h, path, faults=None, machine=None,
	    unplug_delay=None, fault_file=None, extra=()):
		"""faults: the text of a fault script; fault_file: a script
		under tests/faults/ (or any path); extra: more flags
		(--running, ...)."""
		self.path = path
		argv = [program("fake-qemu"), "--socket", path]
		if fault_file is not None:
			if not os.path.isabs(fault_file):
				fault_file = srcdir_path("tests", "faults",
				    fault_file)
			argv += ["--faults", fault_file]
		if faults is not None:
			fpath = os.path.join(h.dir, "faults.%d" % h.next_seq())
			with open(fpath, "w") as f:
				f.write(faults)
			argv += ["--faults", fpath]
		if machine:
			argv += ["--machine", machine]
		if unplug_delay is not None:
			argv += ["--unplug-delay", str(unplug_delay)]
		argv += list(extra)
		if os.path.lexists(path):
			os.unlink(path)
		Proc.__init__(self, h, argv, "fake-qemu")
		wait_for(lambda: not self.alive() or try_connect(path),
		    "fake-qemu socket " + path)
		check(self.alive(), "fake-qemu exited: " + self.tail())


class Qemu(Proc):
	"""A real QEMU, paused (-S), with its QMP monitor on a unix socket."""

	def __init__(self, h, path, extra=()):
		self.path = path
		self.accel = "kvm" if kvm_usable() else "tcg"
		qemu = shutil.which("qemu-system-x86_64")
		if qemu is None:
			raise Failure("qemu-system-x86_64 not installed")
		argv = [qemu, "-nodefaults", "-no-user-config",
		    "-display", "none", "-S", "-m", "64",
		    "-accel", self.accel,
		    "-qmp", "unix:%s,server=on,wait=off" % path] + list(extra)
		Proc.__init__(self, h, argv, "qemu")
		wait_for(lambda: not self.alive() or os.path.exists(path),
		    "qemu monitor " + path)
		check(self.alive(), "qemu exited: " + self.tail())


PRIVSEP_USER = "qmpbroker"


# The suites issue 15 says must pass with the daemon unprivileged:
# QB_PRIVSEP=suites (tools/check's plain lane) separates these alone.
PRIVSEP_SUITES = ("test_hotplug_fake", "test_hotplug_qemu",
    "test_hotplug_faults", "test_hotplug_restart", "test_jobs_image",
    "test_jobs_domain", "test_jobs_libvirtd")


def privsep_user():
	"""QB_PRIVSEP=1 runs every harness daemon privilege-separated, as
	the qmpbroker user (made here if missing, as the deb's sysusers file
	makes it); QB_PRIVSEP=suites only in PRIVSEP_SUITES. None when off."""
	on = os.environ.get("QB_PRIVSEP", "")
	if on == "suites":
		me = os.path.splitext(os.path.basename(sys.argv[0]))[0]
		on = "1" if me in PRIVSEP_SUITES else ""
	if on in ("", "0"):
		return None
	try:
		pwd.getpwnam(PRIVSEP_USER)
	except KeyError:
		subprocess.run(["useradd", "--system", "--no-create-home",
		    "--home-dir", "/nonexistent", "--shell",
		    "/usr/sbin/nologin", PRIVSEP_USER], check=True)
	return PRIVSEP_USER


def privsep_args(h, ctl_dir):
	"""--user for a harness daemon. Off (the default), --user root says
	so explicitly: a host where the qmpbroker user exists would otherwise
	separate by default. On, the unprivileged daemon must reach the
	harness dir (search only), make its control socket in ctl_dir, and
	the helper connects the root QEMUs' monitors under the harness dir."""
	u = privsep_user()
	if u is None:
		return ["--user", "root"]
	pw = pwd.getpwnam(u)
	os.chmod(h.dir, 0o711)
	os.makedirs(ctl_dir, exist_ok=True)
	os.chown(ctl_dir, pw.pw_uid, -1)
	return ["--user", u, "--monitor-root", h.dir]


class Daemon(Proc):
	"""qmpbrokerd in the foreground, on its own dirs under the harness dir.
	QB_DAEMON_WRAPPER (e.g. "valgrind --error-exitcode=99") is put in
	front of it."""

	def __init__(self, h, args=(), control=None, run_dir=None,
	    state_dir=None, vm_dir=None, config=None, pid_file=None,
	    wait=True, tag="d"):
		self.h = h
		base = os.path.join(h.dir, tag)
		os.makedirs(base, exist_ok=True)
		self.control = control or os.path.join(base, "control.sock")
		self.run_dir = run_dir or os.path.join(base, "run")
		self.state_dir = state_dir or os.path.join(base, "state")
		self.vm_dir = vm_dir
		self.config = config
		self.pid_file = pid_file
		self.extra = list(args)
		self.baseline_fds = None
		self.baseline_kids = None
		self.start(wait)

	def build_argv(self):
		argv = shlex.split(os.environ.get("QB_DAEMON_WRAPPER", ""))
		argv += [program("qmpbrokerd"), "--foreground",
		    "--log-level", os.environ.get("QB_LOG_LEVEL", "debug"),
		    "--control", self.control, "--run-dir", self.run_dir,
		    "--state-dir", self.state_dir]
		if self.vm_dir:
			argv += ["--vm-dir", self.vm_dir]
		if self.config:
			argv += ["--config", self.config]
		if self.pid_file:
			argv += ["--pid-file", self.pid_file]
		return argv + privsep_args(self.h, os.path.dirname(
		    self.control)) + self.extra

	def start(self, wait=True):
		if getattr(self, "logf", None) is not None:
			self.logf.close()
		Proc.__init__(self, self.h, self.build_argv(), "qmpbrokerd")
		if wait:
			self.wait_up()

	def wait_refused(self):
		"""For a start that must fail: a non-zero exit, and not the
		wrapper's own error status (a valgrind report on the way out
		is a failure like any other). Returns the exit status."""
		rc = self.wait()
		check(rc != 0, "qmpbrokerd %r exited 0: %s" % (self.extra,
		    self.tail()))
		check(rc != wrapper_error_rc(), "qmpbrokerd %r: the wrapper "
		    "found errors (exit %d): %s" % (self.extra, rc,
		    self.tail(40)))
		return rc

	def wait_up(self):
		# Listening is not ready: the broker binds its control socket
		# before it reloads the registry and reconciles its journals,
		# and a slow start (valgrind) shows the difference. Its
		# "ready on" line (a notice) marks the end of the start.
		argv = self.build_argv()
		levels = [argv[i + 1] for i, a in enumerate(argv[:-1])
		    if a == "--log-level"]
		said = not levels or levels[-1] in ("debug", "info", "notice")
		ready = "ready on " + self.control
		wait_for(lambda: not self.alive() or (listening(self.control)
		    and (not said or ready in self.output())),
		    "control socket " + self.control)
		check(self.alive(), "qmpbrokerd exited %r: %s" %
		    (self.p.returncode, self.tail()))
		# Separated, the daemon is the parent's one child: its fds,
		# children and threads are what the tests account.
		self.pid = self.p.pid
		if privsep_user() is not None:
			kids = children(self.p.pid)
			check(len(kids) == 1, "privileged parent has children "
			    "%r" % kids)
			self.pid = kids[0]
			# Every separated run proves it: the suites pass with
			# the daemon unprivileged, not merely asked to be.
			check_separated(self.p.pid, self.pid,
			    pwd.getpwnam(privsep_user()).pw_uid)

	def baseline(self):
		"""Records fd and child counts to compare with at the end: two
		equal readings in a row, so nothing passing is taken for
		the daemon's own."""
		last = None
		def settled():
			nonlocal last
			now = fd_list(self.pid)
			same, last = now == last, now
			return same
		wait_for(settled, "daemon fds to settle", interval=0.1)
		self.baseline_fds = last
		self.baseline_kids = children(self.pid)

	def client(self, negotiate=True):
		c = Qmp(self.control)
		self.h.closers.append(c)
		if negotiate:
			c.negotiate()
		return c

	def vm_socket(self, name):
		return os.path.join(self.run_dir, "vm", name + ".qmp")

	def check_baseline(self):
		"""Fds and children back where they were (after the test closed
		what it opened; the daemon tears down asynchronously, so wait)."""
		if self.baseline_fds is None:
			return
		try:
			wait_for(lambda: len(fd_list(self.pid)) ==
			    len(self.baseline_fds), "daemon fds back to baseline")
		except Failure:
			raise Failure("daemon fd leak: baseline %r now %r" %
			    (self.baseline_fds, fd_list(self.pid)))
		try:
			wait_for(lambda: len(children(self.pid)) ==
			    len(self.baseline_kids), "daemon children back")
		except Failure:
			raise Failure("daemon children: baseline %r now %r" %
			    (self.baseline_kids, children(self.pid)))

	def terminate(self, sig=signal.SIGTERM):
		"""Clean shutdown: exit status 0 (sanitizer and leak reports
		make it non-zero) and the sockets gone."""
		check(self.alive(), "qmpbrokerd died early: %s" % self.tail())
		self.signal(sig)
		rc = self.wait()
		check(rc == 0, "qmpbrokerd exited %d on %s: %s" %
		    (rc, signal.Signals(sig).name, self.tail(40)))
		check(not os.path.lexists(self.control),
		    "control socket left behind")
		vmdir = os.path.join(self.run_dir, "vm")
		left = [f for f in os.listdir(vmdir)] \
		    if os.path.isdir(vmdir) else []
		check(not left, "per-VM sockets left behind: %r" % left)
		return rc


class Harness:
	def __init__(self, name="qb"):
		self.dir = tempfile.mkdtemp(prefix=name + ".")
		self.procs = []
		self.closers = []
		self.seq = 0

	def next_seq(self):
		self.seq += 1
		return self.seq

	def path(self, *p):
		return os.path.join(self.dir, *p)

	def fake(self, name, **kw):
		return FakeQemu(self, self.path(name + ".sock"), **kw)

	def qemu(self, name, **kw):
		return Qemu(self, self.path(name + ".qmp"), **kw)

	def daemon(self, **kw):
		return Daemon(self, **kw)

	def qmp(self, path, negotiate=True):
		c = Qmp(path)
		self.closers.append(c)
		if negotiate:
			c.negotiate()
		return c

	def close_clients(self):
		for c in self.closers:
			c.close()
		self.closers = []

	def cleanup(self):
		self.close_clients()
		for p in reversed(self.procs):
			p.kill()
		self.procs = []
		if os.environ.get("QB_KEEP"):
			print("# kept %s (QB_KEEP)" % self.dir, flush=True)
		else:
			shutil.rmtree(self.dir, ignore_errors=True)

	def __enter__(self):
		return self

	def __exit__(self, *a):
		self.cleanup()


# ---- qmpctl ----

def qmpctl(args, sock=None, env=None, timeout=None, input=None):
	"""Runs qmpctl; returns (rc, stdout, stderr)."""
	e = dict(os.environ)
	e.pop("QMPBROKER_SOCKET", None)
	if env:
		e.update(env)
	argv = [program("qmpctl")]
	if sock:
		argv += ["-S", sock]
	p = subprocess.run(argv + list(args), capture_output=True,
	    timeout=timeout or TIMEOUT, env=e, input=input,
	    stdin=None if input is not None else subprocess.DEVNULL)
	return p.returncode, p.stdout.decode(), p.stderr.decode()


# ---- a daemon test case with the standard ending ----

class Env:
	"""One daemon and its harness for one case. finish() is the standard
	ending every case goes through: clients closed, VMs removed, fds and
	children back to baseline, SIGTERM, exit 0."""

	def __init__(self, name, daemon=True, **kw):
		self.h = Harness(name)
		self.d = None
		if daemon:
			try:
				self.d = self.h.daemon(**kw)
				self.d.baseline()
			except BaseException:
				self.h.cleanup()
				raise

	def finish(self):
		self.h.close_clients()
		if self.d is None:
			return
		if self.d.alive():
			c = Qmp(self.d.control)
			c.negotiate()
			# all sent, then every reply: one round trip each
			# took a minute for a thousand VMs under ASan
			ids = [c.send_cmd("vm-remove", {"name": vm["name"]})
			    for vm in c.cmd("query-vms")]
			for i in ids:
				r = c.wait_reply(i)
				if "error" in r:
					raise QmpError(r["error"].get("class"),
					    r["error"].get("desc"), r)
			c.close()
		self.d.check_baseline()
		self.d.terminate()

	def __enter__(self):
		return self

	def __exit__(self, et, ev, tb):
		if et is not None and self.d is not None:
			# The daemon's last words usually say why.
			for line in self.d.tail(30).splitlines():
				print("# " + line)
		self.h.cleanup()


def vm_state(c, name):
	for vm in c.cmd("query-vms"):
		if vm["name"] == name:
			return vm["state"]
	return None


def wait_vm_state(c, name, state):
	return wait_for(lambda: vm_state(c, name) == state,
	    "VM %s %s" % (name, state), interval=0.05)


# ---- test runner: "ok - name" / "not ok - name: why" ----

class Runner:
	def __init__(self):
		self.failed = 0
		self.ran = 0
		self.skipped = 0

	def run(self, fn, name=None):
		name = name or fn.__name__.replace("test_", "")
		self.ran += 1
		try:
			fn()
		except Skip as e:
			self.skipped += 1
			print("ok - %s # SKIP %s" % (name, e), flush=True)
		except Failure as e:
			self.failed += 1
			where = [f for f in traceback.extract_tb(e.__traceback__)
			    if os.path.basename(f.filename).startswith("test_")]
			at = " (line %d)" % where[-1].lineno if where else ""
			print("not ok - %s: %s%s" % (name, e, at), flush=True)
		except Exception as e:
			self.failed += 1
			print("not ok - %s: %s: %s" % (name,
			    type(e).__name__, e), flush=True)
			traceback.print_exc(file=sys.stdout)
		else:
			print("ok - %s" % name, flush=True)

	def exit(self):
		if self.failed:
			sys.exit(1)
		if self.skipped == self.ran:
			sys.exit(77)
		sys.exit(0)


def main(cases):
	"""Runs the given test functions (or those named on the command
	line) and exits with the harness convention."""
	r = Runner()
	want = sys.argv[1:]
	for fn in cases:
		if want and fn.__name__ not in want and \
		    fn.__name__.replace("test_", "") not in want:
			continue
		r.run(fn)
	r.exit()


# The start of a tenant script run as another uid (python3 -c, "%" for
# its timeout): connected to argv[1], "out" for what it gathers, send().
TENANT_PRELUDE = r"""
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(%(timeout)f)
s.connect(sys.argv[1])
f = s.makefile("rwb")
out = {"replies": {}, "events": []}
def send(o):
    f.write(json.dumps(o).encode() + b"\n"); f.flush()
"""


def user_ids(user="nobody", group="nogroup"):
	return pwd.getpwnam(user).pw_uid, grp.getgrnam(group).gr_gid
