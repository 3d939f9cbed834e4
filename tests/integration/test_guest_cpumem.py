#!/usr/bin/env python3
"""The test guest reports CPUs and memory blocks coming and going: boot it
under TCG with room for one more CPU and one DIMM, hot-add both over raw
QMP (no broker: this proves the guest, for the CPU/memory hotplug work),
see CPU+ and MEM+ on its console, remove both and see CPU- and MEM- (and
QEMU's DEVICE_DELETED for the DIMM).
"""

import re

import qb
import hplib
from qb import check


def test_cpu_and_dimm():
	with qb.Harness("guest-cpumem") as h:
		# a kernel that onlines hot-added memory itself puts it in
		# ZONE_NORMAL, which cannot be unplugged: movable, as
		# hypervisors' guest tools configure it
		g = hplib.Guest(h, "vm", hplib.guest_dir(), extra=[
		    "-smp", "1,maxcpus=2", "-m", "256,slots=2,maxmem=1G"],
		    append="memhp_default_state=online_movable")
		q = h.qmp(g.path)
		boot = g.serial()
		check(re.search(r"^CPU\+ 0\r?$", boot, re.M) and
		    re.search(r"^MEM\+ \d+\r?$", boot, re.M), "boot: " + boot)
		mems = set(re.findall(r"^MEM\+ (\d+)\r?$", boot, re.M))

		slots = [c for c in q.cmd("query-hotpluggable-cpus")
		    if "qom-path" not in c]
		check(len(slots) == 1, "hotpluggable %r" % slots)
		args = dict(slots[0]["props"], driver=slots[0]["type"], id="c1")
		q.cmd("device_add", args)
		g.wait_line(r"^CPU\+ 1\r?$")

		q.cmd("object-add", {"qom-type": "memory-backend-ram",
		    "id": "m1", "size": 128 << 20})
		q.cmd("device_add", {"driver": "pc-dimm", "id": "d1",
		    "memdev": "m1"})
		m = g.wait_line(r"^MEM\+ (\d+)\r?$")
		check(m.group(1) not in mems, "block %s was there" % m.group(1))

		q.cmd("device_del", {"id": "d1"})
		q.wait_event(lambda e: e.get("event") == "DEVICE_DELETED" and
		    e["data"].get("device") == "d1", timeout=qb.TIMEOUT * 4)
		g.wait_line(r"^MEM- %s\r?$" % m.group(1))
		q.cmd("object-del", {"id": "m1"})

		# The guest offlines the CPU on QEMU's eject request and says
		# so; QEMU's DEVICE_DELETED for it did not come within minutes
		# here under TCG (an open point for cpu-del), so only the
		# guest's side is checked.
		q.cmd("device_del", {"id": "c1"})
		g.wait_line(r"^CPU- 1\r?$")


if __name__ == "__main__":
	qb.main([test_cpu_and_dimm])
