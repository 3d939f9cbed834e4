#!/usr/bin/env python3
"""CPU and memory hotplug through the broker, seen by the booted test
guest (its init reports CPUs and memory blocks coming and going): boot it
under TCG with room for one more CPU and two DIMMs, then cpu-add, mem-add,
mem-del and cpu-del through the broker, each answered only once QEMU and
the guest are done (CPU+/MEM+ before the add is over is not required;
CPU-/MEM- must be on the console once the del is answered, since the
guest offlines before it ejects). A mem-add past maxmem is refused with
an error naming it, and QEMU's view (query-memory-devices,
query-hotpluggable-cpus) is back to the boot state at the end.

Under TCG QEMU 7.2 sends no DEVICE_DELETED naming an unplugged CPU (only
its lapic's, which the broker waits for instead): cpu-del returning
proves that path.

Then a virtio-mem device in the room the DIMM left (the guest loads
virtio_mem): plugged on a PCI slot with nothing requested, counted whole
against maxmem, grown by mem-resize (answered once QEMU's
MEMORY_DEVICE_SIZE_CHANGE says the guest has it, its block on the
console), refused by mem-del while it gives memory, a resize of a
stopped guest (which cannot follow) failing after its timeout with
requested-size set back, shrunk to 0, and mem-del getting QEMU 7.2's own
refusal (it cannot unplug a virtio-mem device), as device_del sent
directly gets it.
"""

import re

import qb
import hplib
from qb import check

MIB = 1 << 20


def test_cpu_and_dimm():
	with qb.Env("guest-cpumem", daemon=False) as env:
		h = env.h
		env.d = h.daemon(args=["--unplug-timeout-ms", "60000"])
		# a kernel that onlines hot-added memory itself puts it in
		# ZONE_NORMAL, which cannot be unplugged: movable, as
		# hypervisors' guest tools configure it
		g = hplib.Guest(h, "vm", hplib.guest_dir(), extra=[
		    "-smp", "1,maxcpus=2", "-m", "256,slots=2,maxmem=512M"],
		    append="memhp_default_state=online_movable")
		boot = g.serial()
		check(re.search(r"^CPU\+ 0\r?$", boot, re.M) and
		    re.search(r"^MEM\+ \d+\r?$", boot, re.M), "boot: " + boot)
		mems = set(re.findall(r"^MEM\+ (\d+)\r?$", boot, re.M))
		hplib.baseline(env.d)
		c = env.d.client()
		c.cmd("vm-add", {"name": "vm", "socket": g.path})
		qb.wait_vm_state(c, "vm", "ready")

		def qemu(cmd):
			return c.cmd("vm-execute", {"vm": "vm", "command": cmd})
		cpus0 = qemu("query-hotpluggable-cpus")

		r = c.cmd("cpu-add", {"vm": "vm", "count": 1})
		check(r == {"ids": ["cpu-0-1-0"]}, "cpu-add %r" % r)
		g.wait_line(r"^CPU\+ 1\r?$")
		e = c.cmd_error("cpu-add", {"vm": "vm", "count": 1})[1]
		check(e.startswith("maxcpus:"), "past maxcpus: %r" % e)

		e = c.cmd_error("mem-add", {"vm": "vm", "id": "d1",
		    "size": 512 * MIB})[1]
		check(e.startswith("maxmem:"), "past maxmem: %r" % e)
		c.cmd("mem-add", {"vm": "vm", "id": "d1", "size": 128 * MIB})
		m = g.wait_line(r"^MEM\+ (\d+)\r?$")
		check(m.group(1) not in mems, "block %s was there" % m.group(1))
		check([d["data"]["id"] for d in qemu("query-memory-devices")] ==
		    ["d1"], "memory devices")

		c.cmd("mem-del", {"vm": "vm", "id": "d1"})
		g.wait_line(r"^MEM- %s\r?$" % m.group(1))
		check(qemu("query-memory-devices") == [], "DIMM left")
		virtio_mem(c, g, qemu)

		r = c.cmd("cpu-del", {"vm": "vm", "count": 1})
		check(r == {"ids": ["cpu-0-1-0"]}, "cpu-del %r" % r)
		g.wait_line(r"^CPU- 1\r?$")
		check(qemu("query-hotpluggable-cpus") == cpus0, "CPU slots "
		    "not back: %r" % qemu("query-hotpluggable-cpus"))
		# this QEMU under TCG aborts on a CPU hotplug after an
		# unplug (double free): refused, and the VM lives on
		e = c.cmd_error("cpu-add", {"vm": "vm", "count": 1})[1]
		check("restart the VM" in e, "cpu-add after del: %r" % e)
		check(qemu("query-status")["status"] == "running", "status")
		env.finish()


def virtio_mem(c, g, qemu):
	def vmem():
		return [d["data"] for d in qemu("query-memory-devices")
		    if d["type"] == "virtio-mem"]
	r = c.cmd("mem-add", {"vm": "vm", "id": "v1", "size": 256 * MIB,
	    "kind": "virtio-mem"})
	check(r["id"] == "v1" and r["bus"] == "pci.0" and "addr" in r,
	    "virtio-mem add %r" % r)
	v = vmem()
	check(len(v) == 1 and v[0]["memdev"] == "/objects/qbmem-v1" and
	    v[0]["max-size"] == 256 * MIB and v[0]["size"] == 0 and
	    v[0]["requested-size"] == 0, "virtio-mem %r" % v)
	# its whole max-size is taken from maxmem, nothing was plugged yet
	e = c.cmd_error("mem-add", {"vm": "vm", "id": "v2",
	    "size": 128 * MIB, "kind": "virtio-mem"})[1]
	check(e.startswith("maxmem:") and "0 MiB left" in e, "v2: %r" % e)
	e = c.cmd_error("mem-resize", {"vm": "vm", "id": "v1",
	    "size": 3 * MIB})[1]
	check("block-size (2048 KiB)" in e, "off block: %r" % e)

	r = c.cmd("mem-resize", {"vm": "vm", "id": "v1", "size": 128 * MIB})
	check(r == {"id": "v1", "size": 128 * MIB}, "resize %r" % r)
	check(vmem()[0]["size"] == 128 * MIB, "size %r" % vmem())
	m = g.wait_line(r"^MEM\+ (\d+)\r?$")
	e = c.cmd_error("mem-del", {"vm": "vm", "id": "v1"})[1]
	check(e.startswith("size:") and "mem-resize it to 0" in e,
	    "del while plugged: %r" % e)

	# a guest that does not follow: stopped, it cannot
	qemu("stop")
	e = c.cmd_error("mem-resize", {"vm": "vm", "id": "v1",
	    "size": 256 * MIB, "timeout-ms": 1500})[1]
	check("did not follow within 1500 ms" in e and "128 MiB of the "
	    "256 MiB" in e and "set back to 128 MiB" in e, "stopped: %r" % e)
	check(vmem()[0]["requested-size"] == 128 * MIB, "not set back %r" %
	    vmem())
	qemu("cont")

	c.cmd("mem-resize", {"vm": "vm", "id": "v1", "size": 0})
	g.wait_line(r"^MEM- %s\r?$" % m.group(1))
	check(vmem()[0]["size"] == 0, "shrunk %r" % vmem())
	# QEMU 7.2 cannot unplug a virtio-mem device: its own error, and
	# the device and its backend stay
	e = c.cmd_error("mem-del", {"vm": "vm", "id": "v1"})[1]
	direct = c.cmd_error("vm-execute", {"vm": "vm", "command":
	    "device_del", "arguments": {"id": "v1"}})[1]
	check(e == direct and "cannot be unplugged" in e, "del: %r vs %r" %
	    (e, direct))
	check(len(vmem()) == 1, "gone %r" % vmem())


if __name__ == "__main__":
	qb.main([test_cpu_and_dimm])
