#!/usr/bin/env python3
"""pci-plan against real QEMU 7.2: the arguments it returns boot, and give
exactly the planned hotplug budget. A q35 VM planned for 8 NICs takes 8
(nic-add through the broker, each on a tap) and refuses the 9th with the
allocator's error; a pc VM planned past pci.0's slots gets pci-bridges
whose free slots query-pci-slots counts.
"""

import os

import qb
import hplib
from qb import check


def boot(env, plan, machine):
	path = env.h.path("vm.qmp")
	q = qb.Qemu(env.h, path, extra=["-machine", machine] + plan["args"])
	c = env.d.client()
	c.cmd("vm-add", {"name": "vm", "socket": path})
	qb.wait_vm_state(c, "vm", "ready")
	return q, c


def free(c):
	return [s for s in c.cmd("query-pci-slots", {"vm": "vm"})
	    if s["state"] == "free"]


def test_q35_eight_nics():
	hplib.need_root_tun()
	with qb.Env("plan-q35") as env:
		c0 = env.d.client()
		plan = c0.cmd("pci-plan", {"machine": "q35", "nics": 8})
		check(plan["places"] == 8 and len(plan["args"]) == 16,
		    "plan %r" % plan)
		q, c = boot(env, plan, "q35")
		check(len(free(c)) == 8 and all(s["kind"] == "pcie-root-port"
		    for s in free(c)), "free places %r" % free(c))
		bk = c.cmd("query-pci-slots", {"vm": "vm", "by-kind": True})
		check(bk == {"free": {"pcie-root-port": 8}, "used":
		    {"pcie-root-port": 0}, "reserved": {"pcie-root-port": 0}},
		    "by kind %r" % bk)
		rs = hplib.nic_adds(env, c, "vm", 9)
		ok = [r for r in rs if "return" in r]
		bad = [r for r in rs if "error" in r]
		check(len(ok) == 8 and len(bad) == 1, "replies %r" % rs)
		check("every pcie-root-port is in use" in
		    bad[0]["error"]["desc"], "error %r" % bad)
		check(sorted(r["return"]["bus"] for r in ok) ==
		    sorted("qb-rp%d" % i for i in range(8)), "buses %r" % ok)
		check(free(c) == [], "free after 8: %r" % free(c))
		bk = c.cmd("query-pci-slots", {"vm": "vm", "by-kind": True})
		check(bk["free"] == {"pcie-root-port": 0} and
		    bk["used"] == {"pcie-root-port": 8}, "by kind %r" % bk)
		env.finish()


def buses_ids(rs, bus):
	"""The device ids nic-add put on bus (its replies, in order c0...)."""
	return ["c%d" % i for i, r in enumerate(rs) if r["return"]["bus"] == bus]


def test_q35_conventional():
	"""conventional places on q35: a pcie-pci-bridge whose 31 slots
	query-pci-slots counts by kind, and which the allocator takes once
	the root ports are used up (root ports first)."""
	hplib.need_root_tun()
	with qb.Env("plan-conv") as env:
		c0 = env.d.client()
		plan = c0.cmd("pci-plan", {"machine": "q35", "nics": 2,
		    "conventional": 2})
		check(plan["places"] == 2 + 31 and plan["budget"][
		    "conventional"] == 2 and any(a.startswith("pcie-pci-bridge,"
		    "id=qb-pb0,bus=pcie.0,") for a in plan["args"]),
		    "plan %r" % plan)
		q, c = boot(env, plan, "q35")
		# running: the firmware numbers the bridges' buses, so the
		# broker reads them from query-pci, not QOM
		c.cmd("vm-execute", {"vm": "vm", "command": "cont"})

		def numbered():
			r = c.cmd("vm-execute", {"vm": "vm", "command":
			    "query-pci"})
			return [d for d in r[0]["devices"] if d.get("qdev_id") ==
			    "qb-pb0" and d["pci_bridge"]["bus"]["secondary"] > 0]
		qb.wait_for(numbered, "firmware numbering qb-pb0's bus",
		    timeout=qb.TIMEOUT * 2)
		bk = c.cmd("query-pci-slots", {"vm": "vm", "by-kind": True})
		check(bk["free"] == {"pcie-root-port": 2, "pcie-pci-bridge": 31},
		    "by kind %r" % bk)
		rs = hplib.nic_adds(env, c, "vm", 4)
		check(all("return" in r for r in rs), "replies %r" % rs)
		buses = [r["return"]["bus"] for r in rs]
		check(sorted(buses[:2]) == ["qb-rp0", "qb-rp1"] and
		    buses[2:] == ["qb-pb0", "qb-pb0"], "buses %r" % rs)
		# QEMU has the two devices on the bridge's bus
		on = [d.get("qdev_id") for d in numbered()[0]["pci_bridge"][
		    "devices"]]
		check(sorted(on) == sorted(buses_ids(rs, "qb-pb0")),
		    "qb-pb0's bus %r, broker %r" % (on, rs))
		bk = c.cmd("query-pci-slots", {"vm": "vm", "by-kind": True})
		check(bk["free"] == {"pcie-root-port": 0, "pcie-pci-bridge": 29}
		    and bk["used"] == {"pcie-root-port": 2, "pcie-pci-bridge":
		    2}, "by kind after 4: %r" % bk)
		fd = hplib.Tap(env.h).open()
		_, d = c.cmd_error("nic-add", {"vm": "vm", "id": "x", "bus":
		    "qb-pb0", "addr": 0}, fds=[fd])
		os.close(fd)
		check("not a hotplug-capable PCI slot" in d, d)
		env.finish()


def test_pc_bridges():
	with qb.Env("plan-pc") as env:
		c0 = env.d.client()
		plan = c0.cmd("pci-plan", {"machine": "pc", "nics": 20,
		    "disks": 20, "spare": 2})
		check(any("pci-bridge" in a for a in plan["args"]) and
		    plan["places"] >= 42, "plan %r" % plan)
		q, c = boot(env, plan, "pc")
		n = len(free(c))
		check(n >= 42, "only %d free places for a budget of 42" % n)
		kinds = {}
		for s in free(c):
			kinds[s["kind"]] = kinds.get(s["kind"], 0) + 1
		check(kinds.get("pci-bridge", 0) >= 31 and
		    kinds.get("pci-root", 0) > 0, "kinds %r" % kinds)
		env.finish()


def test_bad_input():
	with qb.Env("plan-bad") as env:
		c = env.d.client()
		_, d = c.cmd_error("pci-plan", {"machine": "virt", "nics": 1})
		check("pc or q35" in d, d)
		_, d = c.cmd_error("pci-plan", {"machine": "q35", "nics": -1})
		check("negative" in d, d)
		_, d = c.cmd_error("pci-plan", {"machine": "q35", "nics": 1000})
		check("more than the plan gives" in d, d)
		_, d = c.cmd_error("pci-plan", {"machine": "q35",
		    "conventional": 187})
		check("conventional places is more than" in d, d)
		_, d = c.cmd_error("pci-plan", {"machine": "q35",
		    "conventional": -1})
		check("negative" in d, d)
		_, d = c.cmd_error("pci-plan", {"machine": "pc", "nics": 2 ** 62,
		    "disks": 2 ** 62})
		check("more than the plan gives" in d, d)
		_, d = c.cmd_error("pci-plan", {"machine": "q35", "nics": "8"})
		check("nics" in d, d)
		env.finish()


if __name__ == "__main__":
	qb.main([test_q35_eight_nics, test_q35_conventional, test_pc_bridges,
	    test_bad_input])
