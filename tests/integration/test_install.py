#!/usr/bin/env python3
"""make install into a DESTDIR, then what was installed.

destdir: every file is where the configure said (binaries, the unit in
the systemd unit dir, the three man pages, the docs and the example
config, bash completion as `qmpctl`); `mandoc -T lint` finds nothing in
the man pages; the installed unit names the installed binary and passes
`systemd-analyze verify` (every warning counts: verify exits 0 on a bad
value it ignores); the installed daemon starts and the installed qmpctl
runs query-vms through it; the completion, sourced in bash, offers the
subcommands and the broker's own commands (query-commands) and VMs.
Could fail by: a file missing or misplaced, a man page lint warning, a
unit directive systemd does not know, an ExecStart that is not the
installed binary, a completion that offers nothing.
"""

import os
import re
import shutil
import subprocess

import qb
from qb import check, Env


def make_var(name):
	"""A variable of the build tree's Makefile, expanded."""
	# a make of its own, not a sub-make of `make check` (which would
	# print "Entering directory" around the value)
	env = {k: v for k, v in os.environ.items()
	    if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
	p = subprocess.run(["make", "-s", "-C", qb.BUILDDIR, "--no-print-"
	    "directory", "-f", "Makefile", "-f", "-", "qb-print"],
	    input="qb-print:\n\t@echo $(%s)\n" % name, capture_output=True,
	    text=True, env=env)
	check(p.returncode == 0, "make: %s" % p.stderr)
	return p.stdout.strip()


def test_destdir():
	for tool in ("mandoc", "systemd-analyze", "bash"):
		if shutil.which(tool) is None:
			raise qb.Skip("%s not installed" % tool)
	with Env("install", daemon=False) as env:
		h = env.h
		dest = h.path("dest")
		p = subprocess.run(["make", "-s", "-C", qb.BUILDDIR,
		    "install", "DESTDIR=" + dest], capture_output=True,
		    text=True)
		check(p.returncode == 0, "make install: %s%s" % (p.stdout,
		    p.stderr))
		v = {n: make_var(n) for n in ("sbindir", "bindir", "mandir",
		    "docdir", "systemdsystemunitdir", "bashcompletiondir")}
		d = lambda *x: dest + os.path.join(*x)
		sbin = d(v["sbindir"], "qmpbrokerd")
		ctl = d(v["bindir"], "qmpctl")
		unit = d(v["systemdsystemunitdir"], "qmpbrokerd.service")
		mans = [d(v["mandir"], "man8", "qmpbrokerd.8"),
		    d(v["mandir"], "man1", "qmpctl.1"),
		    d(v["mandir"], "man5", "qmpbrokerd.conf.5")]
		comp = d(v["bashcompletiondir"], "qmpctl")
		example = d(v["docdir"], "examples", "qmpbrokerd.conf.example")
		for f in [sbin, ctl, unit, comp, example] + mans:
			check(os.path.isfile(f), "not installed: %s" % f)
		for f in (sbin, ctl):
			check(os.access(f, os.X_OK), "not executable: %s" % f)

		for m in mans:
			p = subprocess.run(["mandoc", "-T", "lint", "-W",
			    "warning", m], capture_output=True, text=True)
			check(p.returncode == 0 and not p.stdout + p.stderr,
			    "mandoc -T lint %s: %s%s" % (m, p.stdout, p.stderr))

		with open(unit) as fh:
			text = fh.read()
		want = "ExecStart=%s " % os.path.join(v["sbindir"],
		    "qmpbrokerd")
		check(want in text, "the unit does not start the installed "
		    "binary (%r): %s" % (want, text))
		check(re.search(r"^Type=notify$", text, re.M), "not "
		    "Type=notify")
		# systemctl reload upgrades in place with the installed qmpctl
		check("ExecReload=%s " % os.path.join(v["bindir"], "qmpctl")
		    in text, "ExecReload is not the installed qmpctl")
		# verify looks for ExecStart's binary: the DESTDIR's
		vdir = h.path("verify")
		os.makedirs(vdir)
		with open(os.path.join(vdir, "qmpbrokerd.service"), "w") as fh:
			fh.write(text.replace(want, "ExecStart=%s " % sbin)
			    .replace("ExecReload=%s " % os.path.join(
			    v["bindir"], "qmpctl"), "ExecReload=%s " % ctl))
		p = subprocess.run(["systemd-analyze", "verify", "--man=no",
		    os.path.join(vdir, "qmpbrokerd.service")],
		    capture_output=True, text=True)
		out = "\n".join(l for l in (p.stdout + p.stderr).splitlines()
		    if not l.startswith(("System has not been booted",
		    "Failed to connect to bus")))
		check(p.returncode == 0 and not out.strip(),
		    "systemd-analyze verify: %d %s" % (p.returncode, out))

		# the installed binaries, on a broker of the test's own
		run = h.path("run")
		ctlsock = os.path.join(run, "control.sock")
		dm = qb.Proc(h, [sbin, "--foreground", "--control", ctlsock,
		    "--run-dir", run, "--state-dir", h.path("state"),
		    "--config", "/dev/null", "--user", "root"], "qmpbrokerd")
		qb.wait_for(lambda: qb.listening(ctlsock), "installed "
		    "qmpbrokerd listening")
		f = h.fake("v1")
		p = subprocess.run([ctl, "-S", ctlsock, "vm-add", "name=v1",
		    "socket=" + f.path], capture_output=True, text=True)
		check(p.returncode == 0, "qmpctl vm-add: %s" % p.stderr)
		p = subprocess.run([ctl, "-S", ctlsock, "--json",
		    "query-vms"], capture_output=True, text=True)
		check(p.returncode == 0 and '"v1"' in p.stdout,
		    "qmpctl query-vms: %r %r" % (p.stdout, p.stderr))

		# completion: bash with the installed qmpctl first in PATH
		def complete(*words):
			script = ("source %s\nCOMP_WORDS=(%s)\nCOMP_CWORD=%d\n"
			    "_qmpctl\nprintf '%%s\\n' \"${COMPREPLY[@]}\"\n" % (
			    comp, " ".join("'%s'" % w for w in words),
			    len(words) - 1))
			env2 = dict(os.environ, PATH=os.path.dirname(ctl) +
			    ":" + os.environ["PATH"])
			p = subprocess.run(["bash", "--norc", "-c", script],
			    capture_output=True, text=True, env=env2)
			check(p.returncode == 0, "completion: %s" % p.stderr)
			return set(p.stdout.split())
		got = complete("qmpctl", "-S", ctlsock, "")
		check({"vms", "exec", "nic-add"} <= got, "subcommands: %r"
		    % got)
		check({"query-vms", "vm-add"} <= got, "the broker's "
		    "commands: %r" % got)
		got = complete("qmpctl", "-S", ctlsock, "exec", "")
		check(got == {"v1"}, "VMs for exec: %r" % got)
		subprocess.run([ctl, "-S", ctlsock, "vm-remove", "name=v1"],
		    capture_output=True)
		dm.signal(15)
		check(dm.wait() == 0, "installed qmpbrokerd: %s" % dm.tail())


qb.main([test_destdir])
