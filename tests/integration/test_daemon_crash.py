#!/usr/bin/env python3
"""Crashes on both sides: a VM's QEMU dies (pending commands answered with
an error, the VM shows disconnected, and when QEMU is back events flow
again), and the broker itself is killed with SIGKILL (a restart comes back
with the registry intact and reconnects)."""

import ctypes
import errno
import os
import signal
import socket

import qb
from qb import check, Env


def emit(c, vm, event):
	c.cmd("vm-execute", {"vm": vm, "command": "x-fake-event",
	    "arguments": {"event": event}})


def test_vm_crash_and_return():
	with Env("vmcrash") as env:
		c = env.d.client()
		f = env.h.fake("v1", faults="no-reply query-pci\n")
		c.cmd("vm-add", {"name": "v1", "socket": f.path})
		qb.wait_vm_state(c, "v1", "ready")
		s = env.d.client()
		s.cmd("subscribe", {"vms": ["v1"]})
		shared = env.h.qmp(env.d.vm_socket("v1"))
		emit(c, "v1", "BEFORE")
		check(s.wait_event("BEFORE")["vm"] == "v1", "event before")
		shared.wait_event("BEFORE")
		p1 = c.send_cmd("vm-execute", {"vm": "v1", "command": "query-pci"})
		p2 = shared.send_cmd("query-pci")
		c.cmd("query-vms")	# both reached the broker
		# in order, as QEMU: this one waits behind the stuck query-pci
		q2 = shared.send_cmd("query-status")
		f.signal(signal.SIGKILL)
		f.wait()
		for cl, p in ((c, p1), (shared, p2)):
			r = cl.wait_reply(p)
			check("error" in r and r["error"]["class"] ==
			    "GenericError", "pending on crash: %r" % r)
		# answered by QEMU before the crash, or failed with it
		r = shared.wait_reply(q2)
		check("error" in r or "return" in r, "behind: %r" % r)
		qb.wait_vm_state(c, "v1", "disconnected")
		cls, _ = c.cmd_error("vm-execute", {"vm": "v1",
		    "command": "query-status"})
		# Back: a new QEMU on the same socket path.
		f2 = env.h.fake("v1")
		check(f2.path == f.path, "test bug")
		qb.wait_vm_state(c, "v1", "ready")
		emit(c, "v1", "AFTER")
		e = s.wait_event("AFTER")
		check(e["vm"] == "v1", repr(e))
		check("running" in c.cmd("vm-execute", {"vm": "v1",
		    "command": "query-status"}), "query-status after return")
		# The shared socket serves the returned VM (new sessions).
		sh2 = env.h.qmp(env.d.vm_socket("v1"))
		sh2.cmd("x-fake-event", {"event": "AGAIN"})
		sh2.wait_event("AGAIN")
		env.finish()


def registry(c):
	return sorted((v["name"], v["socket"]) for v in c.cmd("query-vms"))


def restart_case(sig, tag):
	with Env(tag) as env:
		c = env.d.client()
		names = ["r1", "r2", "r3"]
		fakes = {n: env.h.fake(n) for n in names}
		for n in names:
			c.cmd("vm-add", {"name": n, "socket": fakes[n].path})
		# A VM that never answers is kept as well.
		c.cmd("vm-add", {"name": "dead", "socket": env.h.path("nope")})
		c.cmd("vm-remove", {"name": "r3"})
		before = registry(c)
		for n in ("r1", "r2"):
			qb.wait_vm_state(c, n, "ready")
		c.close()
		env.d.signal(sig)
		rc = env.d.wait()
		if sig == signal.SIGTERM:
			check(rc == 0, "exit %d on SIGTERM" % rc)
		# Same dirs; leftovers of a SIGKILL (stale sockets) must not
		# stop it. The fd baseline stays the one of the empty daemon.
		env.d.start()
		c = env.d.client()
		check(registry(c) == before, "registry %r, was %r" %
		    (registry(c), before))
		for n in ("r1", "r2"):
			qb.wait_vm_state(c, n, "ready")
			check("running" in c.cmd("vm-execute", {"vm": n,
			    "command": "query-status"}), "query-status")
			sh = env.h.qmp(env.d.vm_socket(n))
			sh.cmd("query-status")
		check(qb.vm_state(c, "dead") != "ready", "dead VM ready")
		for n in ("r1", "r2", "dead"):
			c.cmd("vm-remove", {"name": n})
		env.h.close_clients()
		env.d.check_baseline()
		env.d.terminate()
		# Removal is saved too.
		env.d.start()
		c = env.d.client()
		check(c.cmd("query-vms") == [], "removed VMs came back")
		env.finish()


def test_broker_kill9_restart():
	restart_case(signal.SIGKILL, "kill9")


def test_broker_sigterm_restart():
	restart_case(signal.SIGTERM, "termrestart")


def test_registry_many_updates():
	"""After many updates and a SIGKILL, the registry is the last state
	that was answered."""
	with Env("atomic") as env:
		c = env.d.client()
		f = env.h.fake("a")
		for i in range(30):
			c.cmd("vm-add", {"name": "x%d" % i, "socket": f.path})
		for i in range(0, 30, 2):
			c.cmd("vm-remove", {"name": "x%d" % i})
		want = registry(c)
		c.close()
		env.d.signal(signal.SIGKILL)
		env.d.wait()
		env.d.start()
		c = env.d.client()
		check(registry(c) == want, "registry after kill -9: %r, was %r"
		    % (registry(c), want))
		env.finish()


def grab_fd(pid, path):
	"""A duplicate of the fd through which process pid holds path: the
	same open file description, as a child of it holds between its
	fork and its exec (pidfd_getfd)."""
	fd = None
	for n in os.listdir("/proc/%d/fd" % pid):
		try:
			if os.readlink("/proc/%d/fd/%s" % (pid, n)) == path:
				fd = int(n)
		except OSError:
			pass
	check(fd is not None, "no fd of pid %d on %s" % (pid, path))
	libc = ctypes.CDLL(None, use_errno=True)
	pfd = os.pidfd_open(pid)
	try:
		dup = libc.syscall(438, pfd, fd, 0)	# SYS_pidfd_getfd
	finally:
		os.close(pfd)
	if dup == -1:
		e = ctypes.get_errno()
		if e in (errno.ENOSYS, errno.EPERM):
			raise qb.Skip("pidfd_getfd: %s" % os.strerror(e))
		raise OSError(e, os.strerror(e))
	return dup


def test_pid_lock_outlives_no_broker():
	"""The pid file lock is the broker's alone. A process that shares
	the pid file's open file description (a child between fork and
	exec; a tool it started that outlives a kill -9) must not keep a
	restarted broker out; a second broker is still refused while the
	first lives, and told the live broker's pid."""
	with Env("pidlock", daemon=False) as env:
		pidf = env.h.path("qmpbrokerd.pid")
		env.d = env.h.daemon(pid_file=pidf)
		env.d.baseline()
		d2 = qb.Daemon(env.h, pid_file=pidf, tag="d2", wait=False)
		d2.wait_refused()
		check("already running (pid %d" % env.d.pid in d2.output(),
		    "second broker: %s" % d2.tail())
		held = grab_fd(env.d.pid, pidf)
		try:
			env.d.signal(signal.SIGKILL)
			env.d.wait()
			env.d.start()
		finally:
			os.close(held)
		with open(pidf) as f:
			check(f.read().strip() == str(env.d.pid), "pid file")
		env.finish()


def test_stale_shared_sockets():
	"""A kill -9 can leave RUNDIR/vm/NAME.qmp of a VM the registry does
	not keep (its vm-add not yet saved, its vm-remove saved but the
	socket not yet gone): the next start removes the sockets no VM
	owns, and leaves other files and a VM's own socket alone."""
	with Env("stale") as env:
		c = env.d.client()
		f = env.h.fake("keep")
		c.cmd("vm-add", {"name": "keep", "socket": f.path})
		c.close()
		env.d.signal(signal.SIGKILL)
		env.d.wait()
		vmdir = os.path.join(env.d.run_dir, "vm")
		check(os.listdir(vmdir) == ["keep.qmp"], "after the kill: "
		    "%r" % os.listdir(vmdir))
		# A VM the registry does not have, as a kill can leave it
		s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
		s.bind(os.path.join(vmdir, "ghost.qmp"))
		s.close()
		other = os.path.join(vmdir, "notes.txt")
		with open(other, "w") as fh:
			fh.write("not a socket\n")
		env.d.start()
		left = sorted(os.listdir(vmdir))
		check(left == ["keep.qmp", "notes.txt"], "RUNDIR/vm: %r" %
		    left)
		os.unlink(other)
		c = env.d.client()
		qb.wait_vm_state(c, "keep", "ready")
		env.h.qmp(env.d.vm_socket("keep")).cmd("query-status")
		env.finish()


qb.main([test_vm_crash_and_return, test_broker_kill9_restart,
    test_broker_sigterm_restart, test_registry_many_updates,
    test_pid_lock_outlives_no_broker, test_stale_shared_sockets])
