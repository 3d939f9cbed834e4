#!/usr/bin/env python3
"""Operations: the watched --vm-dir, clean shutdown on SIGTERM/SIGINT
(pending commands answered with an error, sockets unlinked, exit 0), the
pid file, the control socket's mode, the config file and SIGHUP reload."""

import os
import signal
import stat

import qb
from qb import check, Env


def names(c):
	return sorted(v["name"] for v in c.cmd("query-vms"))


def test_vm_dir():
	with Env("vmdir", daemon=False) as env:
		h = env.h
		vmdir = h.path("vms")
		os.mkdir(vmdir)
		# The baseline is the daemon's with nothing to watch.
		env.d = h.daemon(vm_dir=vmdir)
		env.d.baseline()
		env.d.terminate()
		# One there before the daemon starts, one after.
		early = qb.FakeQemu(h, os.path.join(vmdir, "early.qmp"))
		with open(os.path.join(vmdir, "notes.txt"), "w") as f:
			f.write("not a socket\n")
		env.d.start()
		c = env.d.client()
		qb.wait_for(lambda: names(c) == ["early"], "early.qmp to be "
		    "picked up (VMs: %r)" % names(c))
		qb.wait_vm_state(c, "early", "ready")
		late = qb.FakeQemu(h, os.path.join(vmdir, "late.qmp"))
		qb.wait_for(lambda: names(c) == ["early", "late"],
		    "late.qmp to be picked up")
		qb.wait_vm_state(c, "late", "ready")
		check(c.cmd("vm-execute", {"vm": "late",
		    "command": "query-status"})["status"], "query-status")
		# A plain file named *.qmp is not a monitor.
		with open(os.path.join(vmdir, "plain.qmp"), "w") as f:
			f.write("x")
		# The socket going away removes the VM.
		late.kill()
		if os.path.lexists(late.path):
			os.unlink(late.path)
		qb.wait_for(lambda: "late" not in names(c),
		    "late to go with its socket")
		check(names(c) == ["early"], "VMs %r" % names(c))
		c.close()
		early.kill()
		os.unlink(early.path)
		qb.wait_for(lambda: names(env.d.client()) == [],
		    "early to go with its socket")
		env.finish()


def test_sigterm_pending():
	for sig in (signal.SIGTERM, signal.SIGINT):
		with Env("term") as env:
			c = env.d.client()
			f = env.h.fake("v1", faults="no-reply query-pci\n")
			c.cmd("vm-add", {"name": "v1", "socket": f.path})
			qb.wait_vm_state(c, "v1", "ready")
			sh = env.h.qmp(env.d.vm_socket("v1"))
			p1 = c.send_cmd("vm-execute", {"vm": "v1",
			    "command": "query-pci"})
			p2 = sh.send_cmd("query-pci")
			c.cmd("query-vms")
			# a shared socket answers in order, as QEMU: this one
			# waits behind the stuck query-pci
			q2 = sh.send_cmd("query-status")
			env.d.signal(sig)
			for cl, p in ((c, p1), (sh, p2)):
				r = cl.wait_reply(p)
				check("error" in r and r["error"].get("desc"),
				    "pending on %s: %r" % (sig.name, r))
			r = sh.wait_reply(q2)
			check("error" in r or "return" in r, "behind: %r" % r)
			for cl in (c, sh):
				cl.wait_closed()
			rc = env.d.wait()
			check(rc == 0, "exit %d on %s: %s" % (rc, sig.name,
			    env.d.tail()))
			check(not os.path.lexists(env.d.control),
			    "control socket left")
			check(not os.path.lexists(env.d.vm_socket("v1")),
			    "shared socket left")
			# fake-qemu saw its monitor close and still runs.
			check(f.alive() and qb.greeting_of(f.path),
			    "fake-qemu after broker exit")


def test_pid_file_and_mode():
	with Env("pid", daemon=False) as env:
		pidf = env.h.path("qmpbrokerd.pid")
		env.d = env.h.daemon(pid_file=pidf)
		env.d.baseline()
		with open(pidf) as f:
			check(f.read().strip() == str(env.d.pid), "pid file")
		st = os.stat(env.d.control)
		check(stat.S_ISSOCK(st.st_mode), "control is not a socket")
		check(stat.S_IMODE(st.st_mode) == 0o660, "control mode %o" %
		    stat.S_IMODE(st.st_mode))
		# A second daemon on the same control socket must not steal it.
		d2 = qb.Daemon(env.h, control=env.d.control, tag="d2",
		    wait=False)
		d2.wait_refused()
		check(qb.try_connect(env.d.control), "first daemon's socket")
		env.d.client().cmd("query-vms")
		env.finish()


def write(path, text):
	with open(path + ".new", "w") as f:
		f.write(text)
	os.rename(path + ".new", path)


def test_config_and_sighup():
	"""VMs and options from the config file; SIGHUP re-reads it; a
	broken config on SIGHUP keeps the daemon running on the old one."""
	with Env("hup", daemon=False) as env:
		h = env.h
		f1, f2 = h.fake("c1"), h.fake("c2")
		cfg = h.path("qmpbrokerd.conf")
		# The baseline is the daemon's without VMs.
		write(cfg, "log-level debug\n")
		env.d = h.daemon(config=cfg)
		env.d.baseline()
		env.d.terminate()
		write(cfg, "# test config\n"
		    "vm c1=%s\n"
		    "client-queue-max 256K\n"
		    "log-level debug\n" % f1.path)
		env.d.start()
		c = env.d.client()
		check(names(c) == ["c1"], "VMs from the config: %r" % names(c))
		qb.wait_vm_state(c, "c1", "ready")
		write(cfg, "vm c1=%s\nvm c2=%s\n" % (f1.path, f2.path))
		env.d.signal(signal.SIGHUP)
		qb.wait_for(lambda: names(c) == ["c1", "c2"],
		    "c2 after SIGHUP (VMs %r)" % names(c))
		qb.wait_vm_state(c, "c2", "ready")
		write(cfg, "no-such-option 1\nvm !!bad\n")
		env.d.signal(signal.SIGHUP)
		# Still serving, same VMs, and c2 still answers.
		check(c.cmd("vm-execute", {"vm": "c2",
		    "command": "query-status"})["status"], "c2 after bad HUP")
		check(names(c) == ["c1", "c2"], "VMs after a bad config: %r" %
		    names(c))
		check(env.d.alive(), "daemon died on a bad config")
		env.finish()


def test_bad_flags():
	"""Bad flags and config stop the start with a message, exit != 0."""
	with Env("flags", daemon=False) as env:
		cfg = env.h.path("bad.conf")
		write(cfg, "client-queue-max lots\n")
		for args in (["--no-such-flag"], ["--log-level", "loud"],
		    ["--config", cfg], ["--config", env.h.path("missing")]):
			d = qb.Daemon(env.h, args=args, wait=False,
			    tag="f%d" % env.h.next_seq())
			rc = d.wait_refused()
			check(d.output().strip(), "%r: exit %d, %r"
			    % (args, rc, d.output()))


qb.main([test_vm_dir, test_sigterm_pending, test_pid_file_and_mode,
    test_config_and_sighup, test_bad_flags])
