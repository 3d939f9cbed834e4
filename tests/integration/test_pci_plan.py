#!/usr/bin/env python3
"""pci-plan against real QEMU 7.2: the arguments it returns boot, and give
exactly the planned hotplug budget. A q35 VM planned for 8 NICs takes 8
(nic-add through the broker, each on a tap) and refuses the 9th with the
allocator's error; a pc VM planned past pci.0's slots gets pci-bridges
whose free slots query-pci-slots counts.
"""

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
		rs = hplib.nic_adds(env, c, "vm", 9)
		ok = [r for r in rs if "return" in r]
		bad = [r for r in rs if "error" in r]
		check(len(ok) == 8 and len(bad) == 1, "replies %r" % rs)
		check("every pcie-root-port is in use" in
		    bad[0]["error"]["desc"], "error %r" % bad)
		check(sorted(r["return"]["bus"] for r in ok) ==
		    sorted("qb-rp%d" % i for i in range(8)), "buses %r" % ok)
		check(free(c) == [], "free after 8: %r" % free(c))
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
		_, d = c.cmd_error("pci-plan", {"machine": "q35", "nics": "8"})
		check("nics" in d, d)
		env.finish()


if __name__ == "__main__":
	qb.main([test_q35_eight_nics, test_pc_bridges, test_bad_input])
