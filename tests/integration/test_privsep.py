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
import test_upgrade
from qb import check

XML = """<domain type='test'><name>%s</name><memory>1024</memory>
<os><type>hvm</type></os></domain>"""


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


def loop_backing(dev):
	try:
		with open("/sys/block/%s/loop/backing_file" %
		    os.path.basename(dev)) as f:
			return f.read().strip()
	except OSError:
		return None


def image_job(c, cmd, args):
	"""Runs an image job to its end: its final JOB_STATUS_CHANGE data."""
	jid = c.cmd(cmd, args)["job"]
	return c.wait_event(lambda e: e.get("event") == "JOB_STATUS_CHANGE"
	    and e["data"]["id"] == jid and e["data"]["status"] in
	    ("concluded", "failed", "cancelled"), what=cmd)["data"]


def loop_attach_detach(c, d, img):
	sub = c.cmd("subscribe", {"events": ["JOB_STATUS_CHANGE"]})
	r = image_job(c, "image-attach", {"path": img, "mode": "loop",
	    "readonly": True})
	check(r["status"] == "concluded", "image-attach: %r" % r)
	dev = r["result"]["device"]
	try:
		check(loop_backing(dev) == img, "%s backs %r" %
		    (dev, loop_backing(dev)))
		with open("/sys/block/%s/ro" % os.path.basename(dev)) as f:
			check(f.read().strip() == "1", "%s not read-only" % dev)
		check("privsep: loop-attach %s: 0 fds" % img in d.output(),
		    "the loop device was not attached by the helper")
		r = image_job(c, "image-detach", {"device": dev})
		check(r["status"] == "concluded", "image-detach: %r" % r)
		qb.wait_for(lambda: loop_backing(dev) != img, dev + " detached")
	finally:
		if loop_backing(dev) == img:
			subprocess.run(["losetup", "--detach", dev])
	c.cmd("unsubscribe", {"subscription": sub["subscription"]})
	return dev


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
		qb.check_separated(parent, child, uid)
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

		# image-attach loop: the helper's ioctls, as a job; detached
		# the same way; a path out of the root refused; an nbd format
		# the helper does not take refused
		limg = hplib.image(os.path.join(root, "l.raw"), 1 << 20)
		dev = loop_attach_detach(c, env.d, limg)
		refused(c, "image-attach", {"path": env.h.path("outside.raw"),
		    "mode": "loop"}, "image-attach out of the root", "")
		refused(c, "image-attach", {"path": os.path.join(root,
		    "out.raw"), "mode": "loop"}, "image-attach of a link out",
		    "")
		refused(c, "image-attach", {"path": limg, "mode": "nbd",
		    "format": "vmdk"}, "image-attach nbd, a format off the "
		    "helper's list", "privilege separation")
		for p in (env.h.path("outside.raw"), os.path.join(root,
		    "out.raw")):
			check("loop-attach " + p not in env.d.output(),
			    "a refused attach reached the helper: " + p)

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
		qb.check_separated(parent, child2, uid)
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
		qb.check_separated(env.d.p.pid, env.d.pid, uid)
		c = env.d.client()
		qb.wait_vm_state(c, "vm1", "ready")
		check(c.cmd("has-device", {"vm": "vm1", "id": "n1"})["present"],
		    "n1 gone after the new pair")
		# the baseline of a daemon without the VM its registry gave it
		c.cmd("vm-remove", {"name": "vm1"})
		env.h.close_clients()
		env.d.baseline()
		env.finish()


def cloexec(pid, fd):
	with open("/proc/%d/fdinfo/%s" % (pid, fd)) as f:
		for line in f:
			if line.startswith("flags:"):
				return int(line.split()[1], 8) & 0o2000000 != 0
	return False


def test_upgrade_separated():
	"""An upgrade of the separated daemon: only the child execs (the
	next build and back, by command and by SIGUSR2 to the parent, the
	pid systemd and the pid file know); the same parent, the same child
	pid, still unprivileged and filtered (and not dumpable) after each;
	the subscriber and the asker keep their connections and get every
	event once, in order; the helper's socket is the one fd passed and
	is close-on-exec again; then a tap, an image and a monitor socket
	opened through the helper by the upgraded daemon."""
	hplib.need_root_tun()
	uid = pwd.getpwnam(qb.privsep_user()).pw_uid
	with qb.Env("privsep-upg", daemon=False) as env:
		h = env.h
		root = h.path("images")
		os.makedirs(root)
		img = hplib.image(os.path.join(root, "a.raw"), 1 << 20)
		vmdir, _ = test_upgrade.fakes(h, 3)
		d = env.d = h.daemon(vm_dir=vmdir, args=["--image-root", root])
		parent, child = d.p.pid, d.pid
		qb.check_separated(parent, child, uid)
		# not dumpable: /proc/PID/status is root's (a sanitizer build
		# is made dumpable for LeakSanitizer; it must stay as it was)
		dump0 = os.stat("/proc/%d/status" % child).st_uid
		check(dump0 == 0 or os.environ.get("QB_SANITIZER"),
		    "child dumpable")
		c = d.client()
		test_upgrade.all_ready(c, 3)
		sub = d.client()
		sub.cmd("subscribe", {"events": ["UPS_*"]})
		fds0 = test_upgrade.settled_fds(child)
		nxt = qb.builddir_path("tests", "qmpbrokerd-next")
		cur = qb.program("qmpbrokerd")
		n, seqs = 0, []
		for target in (nxt, cur, nxt, "SIGUSR2", cur):
			for i in range(3):
				n += 1
				c.cmd("vm-execute", {"vm": "vm%d" % i, "command":
				    "x-fake-event", "arguments": {"event": "UPS_%d"
				    % n}})
			done = d.output().count(" done: ")
			if target == "SIGUSR2":
				os.kill(parent, signal.SIGUSR2)
				qb.wait_for(lambda: d.output().count(" done: ") >
				    done or not d.alive(), "SIGUSR2's upgrade")
				target = nxt	# the running binary's own path
			else:
				r = c.cmd("upgrade", {"binary": target})
				check(r["version"].endswith("+next") == (target ==
				    nxt), "upgraded to %r, wanted %s" % (r, target))
			check(d.alive() and qb.children(parent) == [child],
			    "the pair after the upgrade: %r\n%s" %
			    (qb.children(parent), d.tail(20)))
			check(os.readlink("/proc/%d/exe" % child) == target,
			    "child runs %s" % os.readlink("/proc/%d/exe" % child))
			qb.check_separated(parent, child, uid)
			check(os.stat("/proc/%d/status" % child).st_uid == dump0,
			    "child's dumpable flag changed by the upgrade")
			check("restarting" not in d.output(), "the parent took the "
			    "exec for a crash: %s" % d.tail(20))
			for k in range(n - 2, n + 1):
				e = sub.wait_event(what="UPS_%d" % k)
				check(e["event"] == "UPS_%d" % k, "got %r, wanted "
				    "UPS_%d" % (e, k))
				seqs.append(e["seq"])
			check(qb.vm_state(c, "vm0") == "ready", "vm0 after upgrade")
		check(seqs == list(range(seqs[0], seqs[0] + n)), "seqs %r" % seqs)
		fds1 = test_upgrade.settled_fds(child)
		check(len(fds1) == len(fds0), "child fds %d before, %d after: %r"
		    % (len(fds0), len(fds1), (fds0, fds1)))
		for fd in os.listdir("/proc/%d/fd" % child):
			check(int(fd) < 3 or cloexec(child, fd), "fd %s (%s) not "
			    "close-on-exec" % (fd, os.readlink("/proc/%d/fd/%s" %
			    (child, fd))))

		# the upgraded daemon's helper: a monitor, a tap, an image
		log = len(d.output())
		f = hplib.fake(h, "hp")
		c.cmd("vm-add", {"name": "hp", "socket": f.path})
		qb.wait_vm_state(c, "hp", "ready")
		t = hplib.Tap(h)
		c.cmd("nic-add", {"vm": "hp", "id": "n1", "ifname": t.name})
		c.cmd("disk-add", {"vm": "hp", "id": "d1", "source": img,
		    "format": "raw"})
		for want in ("privsep: connect " + f.path, "privsep: tap %s: 1 "
		    "fds" % t.name, "privsep: image %s: 1 fds" % img):
			check(want in d.output()[log:], "not through the helper "
			    "after the upgrade: %s" % want)
		for dev in ("n1", "d1"):
			check(c.cmd("has-device", {"vm": "hp", "id": dev})[
			    "present"], "%s not in the VM" % dev)
		h.close_clients()
		d.terminate()
		check(not os.path.exists("/proc/%d" % parent), "parent left")


def test_fdstore_separated():
	"""systemd's side when separated (played by test_upgrade.Systemd):
	READY=1 from the child names the parent as MAINPID, also after an
	upgrade; the child's FDSTORE=1 keeps each monitor; when the child is
	killed the parent exits 1 for systemd to restart the pair, the new
	parent gets the store in LISTEN_FDS and its child takes the monitors
	over without a reconnect, while the parent keeps no copy; the child
	sends the watchdog's pings though WATCHDOG_PID names the parent."""
	n = 3
	with qb.Env("privsep-fds", daemon=False) as env:
		h = env.h
		sd = test_upgrade.Systemd(h)
		os.chmod(sd.path, 0o777)	# as /run/systemd/notify is
		vmdir, fake = test_upgrade.fakes(h, n)
		os.environ["NOTIFY_SOCKET"] = sd.path
		try:
			d = env.d = h.daemon(vm_dir=vmdir)
		finally:
			del os.environ["NOTIFY_SOCKET"]
		parent, child = d.p.pid, d.pid
		c = d.client()
		test_upgrade.all_ready(c, n)
		qb.wait_for(lambda: sd.poll() or len(sd.store) == n,
		    "%d monitors in the fd store" % n)
		c.cmd("upgrade")
		qb.wait_for(lambda: sd.poll() or [m for m in sd.msgs
		    if m.get("READY") == "1"][1:], "READY=1 after the upgrade")
		pids = [m["MAINPID"] for m in sd.msgs if "MAINPID" in m]
		check(len(pids) == 2 and set(pids) == {str(parent)},
		    "MAINPID %r, the parent is %d" % (pids, parent))
		sd.poll(0.3)
		check(len(sd.store) == n and all(len(f) == 1 for f in
		    sd.store.values()), "store %r" % sd.store)
		stored = {os.fstat(f[0]).st_ino for f in sd.store.values()}
		fake_fds = qb.fd_count(fake.pid)
		argv = d.build_argv()
		# the daemon dies: the parent leaves the restart to systemd,
		# which holds the monitors (a child of its own would find each
		# QEMU still connected to systemd's copy)
		os.kill(child, signal.SIGKILL)
		check(d.wait() == 1, "parent exit %r" % d.p.returncode)
		check("leaving the restart to the service manager" in
		    d.output(), d.tail(5))
		h.close_clients()
		names = sorted(sd.store)
		sd.msgs = []
		# WATCHDOG_PID names the main process, as systemd sets it
		a = test_upgrade.Activated(h, ["/bin/sh", "-c", "WATCHDOG_PID=$$; "
		    'export WATCHDOG_PID; exec "$@"', "sh"] + argv,
		    [sd.store[k][0] for k in names], names, {"NOTIFY_SOCKET":
		    sd.path, "WATCHDOG_USEC": "1000000"})
		qb.wait_for(lambda: not a.alive() or ("ready on " + d.control)
		    in a.output(), "restarted pair")
		check(a.alive(), a.output()[-2000:])
		kids = qb.children(a.pid)
		check(len(kids) == 1, "children %r" % kids)
		c = qb.Qmp(d.control)
		h.closers.append(c)
		c.negotiate()
		test_upgrade.all_ready(c, n)
		check("%d monitor connections kept" % n in a.output(),
		    a.output()[-1500:])
		check(qb.fd_count(fake.pid) == fake_fds, "fake-qemu fds %d, "
		    "were %d: a reconnect" % (qb.fd_count(fake.pid), fake_fds))
		check(stored <= test_upgrade.sockets_of(kids[0]), "the child "
		    "does not hold the stored connections")
		check(not stored & test_upgrade.sockets_of(a.pid), "the parent "
		    "kept copies of the stored connections")
		# the pings come from the child, whose loop they vouch for
		qb.wait_for(lambda: sd.poll() or [m for m in sd.msgs if
		    m.get("WATCHDOG") == "1"][1:], "two WATCHDOG=1")
		h.close_clients()
		a.p.send_signal(signal.SIGTERM)
		check(a.p.wait(30) == 0, a.output()[-1500:])
		sd.close()


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
	qb.main([test_unprivileged_flow, test_upgrade_separated,
	    test_fdstore_separated, test_user_choice])
