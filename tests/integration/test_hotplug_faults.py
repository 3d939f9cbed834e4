#!/usr/bin/env python3
"""Faults at every step of every hotplug operation, against fake-qemu.

For each step QEMU sees (query-pci, getfd, netdev_add, device_add; add-fd,
blockdev-add, remove-fd; device_del, netdev_del, blockdev-del) and each of
three faults (an error reply, EOF on the connection, no reply until the
broker's command timeout), one run checks:
  - the client gets exactly one reply, an error (for the error fault,
    QEMU's own text);
  - afterwards the VM holds the devices, netdevs (via the fds fake-qemu
    keeps), block nodes and fdsets it held before (adds: all undone; dels:
    the device either still fully there or fully gone);
  - the daemon's fds are back where they were and it still answers.
EOF and timeout faults apply to the first connection only: the broker
reconnects and must finish its undo over the new one.
"""

import os

import qb
import hplib
from qb import check

CMD_TIMEOUT_MS = 1000

FAULTS = (
    ("error", "error %s"),
    ("eof", "once eof-on %s"),
    ("timeout", "once no-reply %s"),
)


def state(c, f, reconnect=True):
	"""The VM's state, and the taps fake-qemu holds once the monitor
	connection was made anew: an fd QEMU received but never took (its
	command failed) stays with the connection until the next fd or a
	disconnect, in QEMU as in fake-qemu, and is no state of the VM."""
	s = hplib.snapshot(c, "vm1")
	if reconnect:
		c.cmd("vm-remove", {"name": "vm1"})
		c.cmd("vm-add", {"name": "vm1", "socket": f.path})
		qb.wait_vm_state(c, "vm1", "ready")
	s["taps"] = hplib.fake_taps(f.pid)
	return s


def fd_shape(pid):
	"""The daemon's fds, sockets by kind only: a monitor reconnect
	legitimately gives a new socket."""
	return sorted("socket" if t.split("->", 1)[1].startswith("socket:")
	    else t for t in qb.fd_list(pid))


def run_case(op, step, fault, directive):
	name = "%s-%s-%s" % (op, step, fault)
	with qb.Env("hpx-" + name, daemon=False) as env:
		root, img = hplib.image_root(env, 4 << 20, ["--cmd-timeout-ms",
		    str(CMD_TIMEOUT_MS), "--unplug-timeout-ms", "3000"])
		hplib.baseline(env.d)
		f = hplib.fake(env.h, "vm1", faults=directive % step)
		c = env.d.client()
		c.cmd("vm-add", {"name": "vm1", "socket": f.path})
		qb.wait_vm_state(c, "vm1", "ready")
		tap = hplib.Tap(env.h)

		def nic_add():
			fd = tap.open()
			try:
				return c.execute("nic-add", {"vm": "vm1",
				    "id": "n0"}, fds=[fd])
			finally:
				os.close(fd)

		def disk_add():
			return c.execute("disk-add", {"vm": "vm1", "id": "d0",
			    "source": img})

		if op in ("nic-del", "disk-del"):
			# the device goes in cleanly first (no fault on add
			# steps), then the del meets the fault
			r = nic_add() if op == "nic-del" else disk_add()
			check("return" in r, "setup add failed: %r" % r)
		# no reconnect here: "once" faults are for this connection
		if step == "query-pci" and op.endswith("-add"):
			# our own snapshot would meet the query-pci fault:
			# take it from an identical VM that has none
			ref = hplib.fake(env.h, "ref")
			c.cmd("vm-add", {"name": "ref", "socket": ref.path})
			qb.wait_vm_state(c, "ref", "ready")
			before = hplib.snapshot(c, "ref")
			before["taps"] = 0
		else:
			before = state(c, f, reconnect=False)
		# the VM's shared socket comes with readiness, a bit later
		qb.wait_for(lambda: os.path.exists(env.d.vm_socket("vm1")),
		    "shared socket")
		if step == "query-pci" and op.endswith("-add"):
			qb.wait_for(lambda: os.path.exists(env.d.vm_socket(
			    "ref")), "shared socket")
		fds_before = fd_shape(env.d.pid)
		if op == "nic-add":
			r = nic_add()
		elif op == "disk-add":
			r = disk_add()
		else:
			r = c.execute(op, {"vm": "vm1", "id": "n0" if
			    op == "nic-del" else "d0"})
		if op.endswith("-del") and "return" in r:
			# the backend step was retried over the new
			# connection: fine, if everything is gone
			check(fault != "error", "%s: %r" % (name, r))
		else:
			check("error" in r, "%s: no error reply: %r" %
			    (name, r))
		if fault == "error" and "error" in r:
			check(r["error"]["desc"] == "injected fault",
			    "%s: not QEMU's error: %r" % (name, r["error"]))
		qb.wait_vm_state(c, "vm1", "ready")
		qb.wait_for(lambda: fd_shape(env.d.pid) == fds_before,
		    "%s: daemon fds back (%r, now %r)" % (name, fds_before,
		    fd_shape(env.d.pid)))
		after = state(c, f)
		if (step, fault) == ("query-pci", "error"):
			# the fault hides the PCI view from us too
			after["pci"] = before["pci"]
		if op.endswith("-add"):
			if (step, fault) == ("remove-fd", "error"):
				# QEMU refuses every remove-fd here, and no
				# other command drops an fdset: all else must
				# be undone
				check(all(x["fds"][0]["opaque"].startswith(
				    "qmpbroker:d0:") for x in after["fdsets"]
				    if x["fds"]), "%s: %r" % (name, after))
				after["fdsets"] = before["fdsets"]
			check(after == before, "%s: not rolled back:\n before "
			    "%r\n after  %r" % (name, before, after))
		elif fault == "error" and step in ("netdev_del",
		    "blockdev-del"):
			# the device went; QEMU refuses to drop its backend
			# and the client was told so in QEMU's words
			check("n0" not in after["peripheral"] and
			    "d0" not in after["peripheral"],
			    "%s: device still there" % name)
		else:
			dev = "n0" if op == "nic-del" else "d0"
			present = dev in after["peripheral"]
			if present:
				check(after == before, "%s: device kept but "
				    "changed:\n before %r\n after %r" %
				    (name, before, after))
			else:
				# gone: then its backend must be gone too
				check(after["taps"] == 0 and
				    not after["nodes"] and not after["fdsets"],
				    "%s: device gone, backend left: %r" %
				    (name, after))
		check(isinstance(c.cmd("query-vms"), list), "daemon answers")
		env.finish()


def matrix(op, steps):
	def t():
		hplib.need_root_tun()
		bad = []
		for step in steps:
			for fault, directive in FAULTS:
				try:
					run_case(op, step, fault, directive)
					print("#   %s %s %s: pass" % (op, step,
					    fault), flush=True)
				except qb.Failure as e:
					bad.append(str(e))
					print("#   %s %s %s: FAIL" % (op, step,
					    fault), flush=True)
		check(not bad, "; ".join(bad))
	t.__name__ = "test_" + op.replace("-", "_")
	return t


qb.main([
    matrix("nic-add", ["query-pci", "getfd", "netdev_add", "device_add"]),
    matrix("disk-add", ["query-pci", "add-fd", "blockdev-add", "remove-fd",
	"device_add"]),
    matrix("nic-del", ["device_del", "netdev_del"]),
    matrix("disk-del", ["device_del", "blockdev-del"]),
])
