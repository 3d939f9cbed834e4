#!/usr/bin/env python3
"""The KVM probe of tools/lib.sh (qb_kvm_probe), which tools/demo,
tools/bench and the tests (qb.kvm_usable) all use, run against device
nodes of the test's own through QB_KVM_DEV. A real KVM cannot be made
here; every other case can, and in none may the probe say kvm or create
or change what it probes.

no_kvm: a missing path (and this machine's own /dev/kvm, whatever it
is): tcg, and the path is still missing afterwards.
not_kvm: a character device that opens read-write but is not KVM (the
numbers of /dev/null), and a regular file (what the old '<>' probe
made): tcg.
cannot_open: KVM's own numbers (10, 232) with mode 000, probed by an
unprivileged user through setpriv; and a node with a bogus major, probed
by root: tcg, saying why.
no_creating_probe: nothing in tools/ or tests/ opens /dev/kvm with a
shell redirection or O_CREAT.
Could fail by: "kvm" for a device that is not KVM, a file created, a
probe that dies instead of answering tcg.
"""

import os
import re
import shutil
import stat
import subprocess
import tempfile

import qb
from qb import check, Env

LIB = os.path.join(qb.SRCDIR, "tools", "lib.sh")


def probe(dev, user=None):
	"""qb_kvm_probe -v on dev: (accel, the reason it logged)."""
	argv = ["sh", "-c", '. "$QB_LIB_SH"; qb_kvm_probe -v']
	if user is not None:
		argv = ["setpriv", "--reuid=%d" % user, "--regid=%d" % user,
		    "--clear-groups"] + argv
	p = subprocess.run(argv, capture_output=True, text=True,
	    env=dict(os.environ, QB_LIB_SH=LIB, QB_KVM_DEV=dev,
	    QB_PROG="probe"))
	check(p.returncode == 0, "probe of %s exited %d: %s" % (dev,
	    p.returncode, p.stderr))
	return p.stdout.strip(), p.stderr.strip()


def same_file(path, before):
	"""lstat of path now equals before (None: still missing)."""
	try:
		st = os.lstat(path)
	except FileNotFoundError:
		return before is None
	return before is not None and (st.st_mode, st.st_size, st.st_rdev,
	    st.st_ino) == (before.st_mode, before.st_size, before.st_rdev,
	    before.st_ino)


def lstat_or_none(path):
	try:
		return os.lstat(path)
	except FileNotFoundError:
		return None


def test_no_kvm():
	with Env("kvmnone", daemon=False) as env:
		dev = env.h.path("kvm")
		a, why = probe(dev)
		check(a == "tcg", "missing %s: %s (%s)" % (dev, a, why))
		check(not os.path.lexists(dev), "the probe created %s" % dev)
		check("No such file" in why, "reason: %r" % why)
	# this machine's own /dev/kvm: untouched, and the tests' helper
	# agrees with the probe
	before = lstat_or_none("/dev/kvm")
	a, why = probe("/dev/kvm")
	check(same_file("/dev/kvm", before), "/dev/kvm changed by the probe")
	check(qb.kvm_usable() == (a == "kvm"), "qb.kvm_usable() %r, probe "
	    "%r" % (qb.kvm_usable(), a))
	if before is None or not stat.S_ISCHR(before.st_mode):
		check(a == "tcg", "/dev/kvm %r: %s" % (before, a))
	print("# this machine: %s (%s)" % (a, why), flush=True)


def test_not_kvm():
	with Env("kvmnot", daemon=False) as env:
		null = env.h.path("kvm-null")
		os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
		before = os.lstat(null)
		a, why = probe(null)
		check(a == "tcg", "a /dev/null node: %s (%s)" % (a, why))
		check("no KVM" in why, "reason: %r" % why)
		check(same_file(null, before), "node changed")
		reg = env.h.path("kvm-file")
		open(reg, "w").close()
		before = os.lstat(reg)
		a, why = probe(reg)
		check(a == "tcg", "a regular file: %s (%s)" % (a, why))
		check("not a character device" in why, "reason: %r" % why)
		check(same_file(reg, before), "file changed")


def test_cannot_open():
	if os.geteuid() != 0:
		raise qb.Skip("mknod needs root")
	if shutil.which("setpriv") is None:
		raise qb.Skip("setpriv (util-linux) missing")
	# nobody must reach the node and lib.sh: a dir of mode 0755
	d = tempfile.mkdtemp(prefix="kvmprobe.")
	try:
		os.chmod(d, 0o755)
		node = os.path.join(d, "kvm")
		os.mknod(node, stat.S_IFCHR, os.makedev(10, 232))
		os.chmod(node, 0)
		before = os.lstat(node)
		lib_ok = subprocess.run(["setpriv", "--reuid=65534",
		    "--regid=65534", "--clear-groups", "test", "-r", LIB]
		    ).returncode == 0
		if not lib_ok:
			raise qb.Skip("user nobody cannot read %s" % LIB)
		a, why = probe(node, user=65534)
		check(a == "tcg", "mode 000 as nobody: %s (%s)" % (a, why))
		check("cannot open" in why and "Permission denied" in why,
		    "reason: %r" % why)
		check(same_file(node, before), "node changed")
		bogus = os.path.join(d, "kvm-bogus")
		os.mknod(bogus, 0o666 | stat.S_IFCHR, os.makedev(4000, 77))
		a, why = probe(bogus)
		check(a == "tcg", "bogus major: %s (%s)" % (a, why))
		check("cannot open" in why, "reason: %r" % why)
	finally:
		shutil.rmtree(d)


def test_no_creating_probe():
	bad = re.compile(r'(<>|>>?|\bO_CREAT\b[^;\n]*)\s*"?/dev/kvm|'
	    r'/dev/kvm"?[^;\n]*\bO_CREAT\b')
	found = []
	for top in ("tools", "tests"):
		for dirpath, dirs, files in os.walk(os.path.join(qb.SRCDIR,
		    top)):
			dirs[:] = [x for x in dirs if x not in ("cache",
			    "corpus")]
			for f in files:
				p = os.path.join(dirpath, f)
				try:
					with open(p, encoding="utf-8") as fh:
						text = fh.read()
				except (UnicodeDecodeError, OSError):
					continue
				for n, line in enumerate(text.splitlines()):
					if bad.search(line) and \
					    os.path.basename(p) != \
					    "test_kvm_probe.py":
						found.append("%s:%d: %s" % (
						    p, n + 1, line.strip()))
	check(not found, "probes that may create /dev/kvm:\n" +
	    "\n".join(found))
	# and the pattern finds what it is for
	check(bad.search(': 2>/dev/null <>/dev/kvm') and
	    bad.search('open("/dev/kvm", O_RDWR|O_CREAT)'),
	    "the pattern misses the old probe")


qb.main([test_no_kvm, test_not_kvm, test_cannot_open,
    test_no_creating_probe])
