#!/usr/bin/env python3
"""Privilege separation (issue 15, part 3) on a real QEMU: the daemon that
serves clients and monitors is the qmpbroker user with no capabilities,
no_new_privs and a seccomp filter (/proc/PID/status), while a tap NIC by
name, a disk from the image root, a root QEMU's monitor socket and a
libvirt domain all work through it; what the helper refuses (lo as a tap,
a link out of the root) is refused with its reason and never reaches
QEMU; and a crash of either process is noticed by the other: the daemon
is restarted by its parent and takes its VM back, a dead parent makes the
daemon stop cleanly, and a new pair takes the VM back. One daemon, one
paused QEMU for the whole file (the QB_PRIVSEP=1 runs of the hotplug,
image and domain suites are the long form)."""

import os
import pwd
import signal
import subprocess

os.environ["QB_PRIVSEP"] = "1"	# before the harness reads it

import qb
import hplib
from qb import check

XML = """<domain type='test'><name>%s</name><memory>1024</memory>
<os><type>hvm</type></os></domain>"""


def status(pid):
	out = {}
	with open("/proc/%d/status" % pid) as f:
		for line in f:
			k, _, v = line.partition(":")
			out[k] = v.strip()
	return out


def check_unprivileged(parent, child, uid):
	s = status(child)
	check(s["Uid"].split() == [str(uid)] * 4, "daemon Uid %s" % s["Uid"])
	check(s["Gid"].split()[0] != "0", "daemon Gid %s" % s["Gid"])
	for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
		check(int(s[cap], 16) == 0, "daemon %s %s" % (cap, s[cap]))
	check(s["NoNewPrivs"] == "1", "no_new_privs %s" % s["NoNewPrivs"])
	check(s["Seccomp"] == "2", "Seccomp %s" % s["Seccomp"])
	p = status(parent)
	check(p["Uid"].split()[0] == "0", "the helper is not root")


def refused(c, cmd, args, why, want):
	try:
		c.cmd(cmd, args)
	except qb.QmpError as e:
		check(want in e.desc, "%s: %s" % (why, e.desc))
		return
	raise qb.Failure("%s: accepted" % why)


def wait_child(d, old):
	qb.wait_for(lambda: [k for k in qb.children(d.p.pid) if k != old],
	    "a new daemon")
	kid = qb.children(d.p.pid)[0]
	qb.wait_for(lambda: qb.listening(d.control), "control socket back")
	return kid


def test_unprivileged_flow():
	hplib.need_root_tun()
	uid = pwd.getpwnam(qb.privsep_user()).pw_uid
	with qb.Env("privsep", daemon=False) as env:
		root = env.h.path("images")
		os.makedirs(root)
		img = hplib.image(os.path.join(root, "a.raw"), 1 << 20)
		with open(env.h.path("outside.raw"), "wb") as f:
			f.truncate(1 << 20)
		os.symlink(env.h.path("outside.raw"), os.path.join(root,
		    "out.raw"))
		env.d = env.h.daemon(args=["--image-root", root])
		parent, child = env.d.p.pid, env.d.pid
		check(parent != child, "not separated")
		check_unprivileged(parent, child, uid)
		env.d.baseline()

		# a root QEMU: its monitor socket is the helper's to connect
		q = env.h.qemu("vm1", extra=["-machine", "pc"])
		c = env.d.client()
		c.cmd("vm-add", {"name": "vm1", "socket": q.path})
		qb.wait_vm_state(c, "vm1", "ready")
		check("privsep: connect " + q.path in env.d.output(),
		    "the monitor was not connected by the helper")

		# a tap by name (TUNSETIFF needs CAP_NET_ADMIN: the helper's)
		t = hplib.Tap(env.h)
		c.cmd("nic-add", {"vm": "vm1", "id": "n1", "ifname": t.name})
		check(c.cmd("has-device", {"vm": "vm1", "id": "n1"})["present"],
		    "nic n1 not in QEMU")
		check("privsep: tap %s: 1 fds" % t.name in env.d.output(),
		    "the tap was not opened by the helper")
		refused(c, "nic-add", {"vm": "vm1", "id": "n2", "ifname": "lo"},
		    "lo as a tap", "not an existing tap")
		check(not c.cmd("has-device", {"vm": "vm1", "id": "n2"})[
		    "present"], "n2 reached QEMU")

		# a disk from the image root, opened by the helper
		c.cmd("disk-add", {"vm": "vm1", "id": "d1", "source": img,
		    "format": "raw"})
		check(c.cmd("has-device", {"vm": "vm1", "id": "d1"})["present"],
		    "disk d1 not in QEMU")
		check("privsep: image %s: 1 fds" % img in env.d.output(),
		    "the image was not opened by the helper")
		refused(c, "disk-add", {"vm": "vm1", "id": "d2", "source":
		    os.path.join(root, "out.raw"), "format": "raw"},
		    "a link out of the root", "")
		check(not c.cmd("has-device", {"vm": "vm1", "id": "d2"})[
		    "present"], "d2 reached QEMU")

		# image-attach: losetup/qemu-nbd are not the helper's (yet):
		# refused at once with the reason, nothing attached
		refused(c, "image-attach", {"path": img, "mode": "loop"},
		    "image-attach separated", "privilege separation")

		# libvirt (test driver) and its job workers under the filter
		jc = qb.Qmp(env.d.control)
		env.h.closers.append(jc)
		jc.negotiate()
		r = jc.cmd("domain-define", {"xml": XML % "ps1"})
		check(isinstance(r, dict), "domain-define: %r" % r)

		# the daemon crashes: its parent starts another, which takes
		# the VM back; QEMU never noticed more than a reconnect
		os.kill(child, signal.SIGSEGV)
		child2 = wait_child(env.d, child)
		check(child2 != child, "same child")
		check_unprivileged(parent, child2, uid)
		# (a sanitizer build reports the SEGV and exits 1 instead)
		check("died of signal 11; restarting" in env.d.output() or
		    (os.environ.get("QB_SANITIZER") and "exited 1; restarting"
		    in env.d.output()), "crash not noticed: %s" %
		    env.d.tail(10))
		env.h.close_clients()
		c = env.d.client()
		qb.wait_vm_state(c, "vm1", "ready")
		check(q.alive(), "QEMU died with the daemon")
		check(c.cmd("has-device", {"vm": "vm1", "id": "d1"})["present"],
		    "d1 gone after the restart")
		env.d.pid = child2

		# the parent dies: the daemon notices (parent-death signal,
		# EOF on the socketpair) and stops cleanly, sockets unlinked;
		# QEMU lives; a new pair takes the VM back
		env.h.close_clients()
		os.kill(parent, signal.SIGKILL)
		env.d.p.wait(qb.TIMEOUT)
		qb.wait_for(lambda: not os.path.exists("/proc/%d" % child2),
		    "the daemon to stop after its parent")
		check(not os.path.lexists(env.d.control),
		    "control socket left by the orphaned daemon")
		check(q.alive(), "QEMU died with the pair")
		env.d.start()
		check_unprivileged(env.d.p.pid, env.d.pid, uid)
		c = env.d.client()
		qb.wait_vm_state(c, "vm1", "ready")
		check(c.cmd("has-device", {"vm": "vm1", "id": "n1"})["present"],
		    "n1 gone after the new pair")
		# the baseline of a daemon without the VM its registry gave it
		c.cmd("vm-remove", {"name": "vm1"})
		env.h.close_clients()
		env.d.baseline()
		env.finish()


def test_user_choice():
	"""--user root keeps one root process; an unknown user stops the
	start with its name."""
	with qb.Env("privsep-u", daemon=False) as env:
		d = qb.Daemon(env.h, args=["--user", "nosuchuser-qb"],
		    wait=False, tag="u1")
		d.wait_refused()
		check("--user nosuchuser-qb: no such user" in d.output(),
		    "unknown user: %s" % d.tail(5))
		p = subprocess.run([qb.program("qmpbrokerd"), "--help"],
		    capture_output=True, text=True)
		check("--user" in p.stdout + p.stderr, "--user not in --help")


if __name__ == "__main__":
	qb.main([test_unprivileged_flow, test_user_choice])
