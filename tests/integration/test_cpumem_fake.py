#!/usr/bin/env python3
"""cpu-add, cpu-del, mem-add and mem-del against fake-qemu: the happy
paths, every limit (maxcpus, slots, maxmem, the memory block) refused
with an error naming it, and the rollback paths: a device_add that
fails (the memory backend made before it is deleted again), a guest
that never lets go (the unplug is left pending, the backend kept), and a
broker killed in the middle of a mem-add and a cpu-add (the restarted
broker's journal reconcile leaves no backend without its DIMM, and frees
the CPU lock).

virtio-mem (mem-add kind virtio-mem, mem-resize, mem-del): every refusal
before QEMU, the maxmem it takes whole, the resize answered once the
guest followed (fake-qemu's driver does while the VM runs), a stopped
guest's resize failing after its timeout with requested-size set back,
mem-del refused while it gives memory and then refused by QEMU 7.2 (it
cannot unplug one), and a device_add that fails (backend and PCI slot
given back).

One daemon for the first case, its fake-qemus side by side; a recorder
between the broker and one of them proves what never reached QEMU.
"""

import json
import os
import signal

import qb
import hplib
from qb import check

MIB = 1 << 20
# -smp 1,maxcpus=3 -m 256,slots=2,maxmem=768M: 512 MiB hot-pluggable
LIMITS = ["--smp", "1", "--maxcpus", "3", "--mem-slots", "2",
    "--maxmem", "768"]


def err_of(c, cmd, args):
	return c.cmd_error(cmd, args)[1]


def hot_cpus(c, vm):
	return sorted(e["qom-path"].rsplit("/", 1)[1] for e in
	    c.cmd("vm-execute", {"vm": vm, "command":
	    "query-hotpluggable-cpus"}) if e.get("qom-path", "").startswith(
	    "/machine/peripheral/"))


def dimms(c, vm):
	return sorted((d["data"]["id"], d["data"]["memdev"], d["data"]["size"])
	    for d in c.cmd("vm-execute", {"vm": vm, "command":
	    "query-memory-devices"}))


def has_object(c, vm, oid):
	"""Whether the memory backend oid exists: object-add of the same id
	is refused for a duplicate (and undone at once if it was not)."""
	try:
		c.cmd("vm-execute", {"vm": vm, "command": "object-add",
		    "arguments": {"qom-type": "memory-backend-ram", "id": oid,
		    "size": MIB}})
	except qb.QmpError:
		return True
	c.cmd("vm-execute", {"vm": vm, "command": "object-del",
	    "arguments": {"id": oid}})
	return False


def test_cpu_mem_fake():
	with qb.Env("cpumem-fake", daemon=False) as env:
		env.d = env.h.daemon(args=["--unplug-timeout-ms", "1500"])
		hplib.baseline(env.d)
		c = env.d.client()
		f1 = hplib.fake(env.h, "vm1", extra=LIMITS)
		rec = hplib.Recorder(env.h, f1.path)
		c.cmd("vm-add", {"name": "vm1", "socket": rec.path})
		f2 = hplib.fake(env.h, "vm2", faults="error device_add\n",
		    extra=LIMITS)
		c.cmd("vm-add", {"name": "vm2", "socket": f2.path})
		f3 = hplib.fake(env.h, "vm3", unplug_delay=-1, extra=LIMITS)
		c.cmd("vm-add", {"name": "vm3", "socket": f3.path})
		for vm in ("vm1", "vm2", "vm3"):
			qb.wait_vm_state(c, vm, "ready")

		# --- CPUs: driver and props from QEMU, lowest slot first
		r = c.cmd("cpu-add", {"vm": "vm1", "count": 1})
		check(r == {"ids": ["cpu-0-1-0"]}, "cpu-add: %r" % r)
		adds = [m for m, _ in rec.commands("device_add")]
		check(adds[-1]["arguments"] == {"driver": "qemu64-x86_64-cpu",
		    "id": "cpu-0-1-0", "socket-id": 0, "core-id": 1,
		    "thread-id": 0, "node-id": 0}, "device_add %r" % adds)
		# qmpctl: a word that begins with a letter is an id
		rc, out, err = qb.qmpctl(["cpu-add", "vm1", "c2"],
		    sock=env.d.control)
		check(rc == 0 and json.loads(out) == {"ids": ["c2"]},
		    "qmpctl cpu-add: %d %r %r" % (rc, out, err))
		check(hot_cpus(c, "vm1") == ["c2", "cpu-0-1-0"],
		    "cpus %r" % hot_cpus(c, "vm1"))
		rec.clear()
		e = err_of(c, "cpu-add", {"vm": "vm1", "count": 1})
		check(e.startswith("maxcpus:"), "past maxcpus: %r" % e)
		check(rec.commands("device_add") == [], "sent %r" %
		    rec.commands("device_add"))
		e = err_of(c, "cpu-add", {"vm": "vm1", "count": 1, "ids": ["x"]})
		check("either 'count'" in e, "count and ids: %r" % e)
		e = err_of(c, "cpu-del", {"vm": "vm1", "ids": ["nope"]})
		check("not a hot-plugged CPU" in e, "del unknown: %r" % e)
		r = c.cmd("cpu-del", {"vm": "vm1", "count": 2})
		check(sorted(r["ids"]) == ["c2", "cpu-0-1-0"], "cpu-del %r" % r)
		check(hot_cpus(c, "vm1") == [], "cpus left %r" %
		    hot_cpus(c, "vm1"))
		e = err_of(c, "cpu-del", {"vm": "vm1", "count": 1})
		check("boot CPUs cannot be unplugged" in e, "boot cpu: %r" % e)
		# QEMU 7.2 under TCG aborts on a CPU hotplug after an unplug
		rec.clear()
		e = err_of(c, "cpu-add", {"vm": "vm1", "count": 1})
		check("restart the VM" in e, "after unplug: %r" % e)
		check(rec.commands("device_add") == [], "sent")

		# --- memory: limits told before anything changes in QEMU
		rec.clear()
		e = err_of(c, "mem-add", {"vm": "vm1", "id": "d1",
		    "size": 100 * MIB})
		check("multiple of 128 MiB" in e, "block: %r" % e)
		e = err_of(c, "mem-add", {"vm": "vm1", "id": "d1",
		    "size": 1024 * MIB})
		check(e.startswith("maxmem:"), "maxmem: %r" % e)
		e = err_of(c, "mem-add", {"vm": "vm1", "id": "d1",
		    "size": 128 * MIB, "backend": "file"})
		check("'path'" in e, "file without path: %r" % e)
		sent = [m["execute"] for m, _ in rec.commands()]
		check("object-add" not in sent and "device_add" not in sent,
		    "reached QEMU: %r" % sent)
		r = c.cmd("mem-add", {"vm": "vm1", "id": "d1", "size": 256 * MIB})
		check(r == {"id": "d1"}, "mem-add %r" % r)
		check(dimms(c, "vm1") == [("d1", "/objects/qbmem-d1", 256 * MIB)],
		    "dimms %r" % dimms(c, "vm1"))
		e = err_of(c, "mem-add", {"vm": "vm1", "id": "d2",
		    "size": 384 * MIB})
		check(e.startswith("maxmem:") and "256 MiB left" in e,
		    "maxmem left: %r" % e)
		rc, out, err = qb.qmpctl(["mem-add", "vm1", "d2", "128M",
		    "--backend", "memfd", "--node", "0"], sock=env.d.control)
		check(rc == 0, "qmpctl mem-add: %d %r %r" % (rc, out, err))
		e = err_of(c, "mem-add", {"vm": "vm1", "id": "d3",
		    "size": 128 * MIB})
		check(e.startswith("slots:"), "slots: %r" % e)
		check(not has_object(c, "vm1", "qbmem-d3"), "d3's backend")
		e = err_of(c, "mem-del", {"vm": "vm1", "id": "d9"})
		check("not a DIMM" in e, "mem-del unknown: %r" % e)
		c.cmd("mem-del", {"vm": "vm1", "id": "d1"})
		c.cmd("mem-del", {"vm": "vm1", "id": "d2"})
		check(dimms(c, "vm1") == [], "dimms left %r" % dimms(c, "vm1"))
		check(not has_object(c, "vm1", "qbmem-d1") and
		    not has_object(c, "vm1", "qbmem-d2"), "backends left")
		virtio_mem(c, rec)

		# --- device_add fails: the backend made first is undone
		e = err_of(c, "mem-add", {"vm": "vm2", "id": "d1",
		    "size": 128 * MIB})
		check(dimms(c, "vm2") == [] and
		    not has_object(c, "vm2", "qbmem-d1"), "vm2 after: %r" % e)
		before = hplib.snapshot(c, "vm2")
		free = hplib.slots(c, "vm2")
		e = err_of(c, "mem-add", {"vm": "vm2", "id": "v1",
		    "size": 128 * MIB, "kind": "virtio-mem"})
		check(vmem(c, "vm2") == [] and not has_object(c, "vm2",
		    "qbmem-v1") and hplib.slots(c, "vm2") == free,
		    "vm2 virtio-mem after: %r" % e)
		hplib.same_state(c, "vm2", before, "virtio-mem rollback")
		e = err_of(c, "cpu-add", {"vm": "vm2", "count": 1})
		check(hot_cpus(c, "vm2") == [], "vm2 cpus after %r" % e)

		# --- a guest that never lets go: pending, backend kept
		c.cmd("mem-add", {"vm": "vm3", "id": "d1", "size": 128 * MIB})
		e = err_of(c, "mem-del", {"vm": "vm3", "id": "d1"})
		check("still pending" in e, "pending: %r" % e)
		e = err_of(c, "mem-del", {"vm": "vm3", "id": "d1"})
		check("already pending" in e, "again: %r" % e)
		check(has_object(c, "vm3", "qbmem-d1"), "backend dropped")
		c.cmd("cpu-add", {"vm": "vm3", "ids": ["c1"]})
		e = err_of(c, "cpu-del", {"vm": "vm3", "ids": ["c1"]})
		check("'c1' is still pending" in e, "cpu pending: %r" % e)
		# the pending ops go with the VM
		env.finish()


def vmem(c, vm):
	return [d["data"] for d in c.cmd("vm-execute", {"vm": vm, "command":
	    "query-memory-devices"}) if d["type"] == "virtio-mem"]


def virtio_mem(c, rec):
	rec.clear()
	for args, want in (({"kind": "dimmm"}, "'kind' must be"),
	    ({"kind": "virtio-mem", "requested-size": 3 * MIB},
	    "requested-size must be a multiple of 2 MiB"),
	    ({"kind": "virtio-mem", "requested-size": 512 * MIB},
	    "from 0 to size"),
	    ({"requested-size": 2 * MIB}, "go with kind virtio-mem"),
	    ({"addr": 7}, "'addr' goes with kind virtio-mem"),
	    ({"kind": "virtio-mem", "size": 100 * MIB}, "multiple of 128")):
		e = err_of(c, "mem-add", dict({"vm": "vm1", "id": "v1",
		    "size": 256 * MIB}, **args))
		check(want in e, "%r: %r" % (args, e))
	check([m["execute"] for m, _ in rec.commands()] == [],
	    "reached QEMU: %r" % rec.commands())
	rc, out, err = qb.qmpctl(["mem-add", "vm1", "v1", "256M", "--kind",
	    "virtio-mem", "--requested", "128M", "--addr", "7"],
	    sock=c.path)
	check(rc == 0 and json.loads(out) == {"id": "v1", "bus": "pci.0",
	    "addr": "0x7"}, "qmpctl mem-add: %d %r %r" % (rc, out, err))
	add = rec.commands("device_add")[-1][0]["arguments"]
	check(add == {"driver": "virtio-mem-pci", "id": "v1", "memdev":
	    "qbmem-v1", "requested-size": 128 * MIB, "bus": "pci.0",
	    "addr": "0x7"}, "device_add %r" % add)
	qb.wait_for(lambda: vmem(c, "vm1")[0]["size"] == 128 * MIB,
	    "the fake guest plugs")
	# all 256 MiB count against maxmem (512 MiB hot-pluggable)
	e = err_of(c, "mem-add", {"vm": "vm1", "id": "d1",
	    "size": 384 * MIB})
	check(e.startswith("maxmem:") and "256 MiB left" in e, "left %r" % e)

	rec.clear()
	rc, out, err = qb.qmpctl(["mem-resize", "vm1", "v1", "256M"],
	    sock=c.path)
	check(rc == 0 and json.loads(out) == {"id": "v1", "size": 256 * MIB},
	    "qmpctl mem-resize: %d %r %r" % (rc, out, err))
	check(vmem(c, "vm1")[0]["size"] == 256 * MIB, "size %r" %
	    vmem(c, "vm1"))
	check([m["arguments"] for m, _ in rec.commands("qom-set")] ==
	    [{"path": "/machine/peripheral/v1", "property": "requested-size",
	    "value": 256 * MIB}], "qom-set %r" % rec.commands("qom-set"))
	rec.clear()
	for vid, size, want in (("v1", 3 * MIB, "block-size (2048 KiB)"),
	    ("v1", 384 * MIB, "max-size (256 MiB)"),
	    ("nope", 0, "not a memory device"),
	    ("v1", -2 * MIB, "cannot be negative")):
		e = err_of(c, "mem-resize", {"vm": "vm1", "id": vid,
		    "size": size})
		check(want in e, "resize %s %d: %r" % (vid, size, e))
	e = err_of(c, "mem-del", {"vm": "vm1", "id": "v1"})
	check(e.startswith("size:") and "256 MiB" in e and
	    "mem-resize it to 0" in e, "del while plugged: %r" % e)
	check([m["execute"] for m, _ in rec.commands() if m["execute"] in
	    ("qom-set", "device_del")] == [], "sent %r" % rec.commands())
	c.cmd("mem-add", {"vm": "vm1", "id": "d1", "size": 128 * MIB})
	e = err_of(c, "mem-resize", {"vm": "vm1", "id": "d1", "size": 0})
	check("is a DIMM" in e, "DIMM resize: %r" % e)
	c.cmd("mem-del", {"vm": "vm1", "id": "d1"})

	# a guest that does not follow: stopped, it cannot; undone
	c.cmd("vm-execute", {"vm": "vm1", "command": "stop"})
	rec.clear()
	e = err_of(c, "mem-resize", {"vm": "vm1", "id": "v1", "size": 0,
	    "timeout-ms": 300})
	check("did not follow within 300 ms" in e and "256 MiB of the 0 MiB"
	    in e and "set back to 256 MiB" in e, "stopped: %r" % e)
	check([m["arguments"]["value"] for m, _ in rec.commands("qom-set")] ==
	    [0, 256 * MIB], "qom-sets %r" % rec.commands("qom-set"))
	check(vmem(c, "vm1")[0]["requested-size"] == 256 * MIB,
	    "requested %r" % vmem(c, "vm1"))
	c.cmd("vm-execute", {"vm": "vm1", "command": "cont"})

	c.cmd("mem-resize", {"vm": "vm1", "id": "v1", "size": 0})
	e = err_of(c, "mem-del", {"vm": "vm1", "id": "v1"})
	direct = err_of(c, "vm-execute", {"vm": "vm1", "command": "device_del",
	    "arguments": {"id": "v1"}})
	check(e == direct == "virtio based memory devices cannot be "
	    "unplugged.", "del %r vs %r" % (e, direct))
	check(len(vmem(c, "vm1")) == 1 and has_object(c, "vm1", "qbmem-v1"),
	    "v1 went: %r" % vmem(c, "vm1"))


def test_kill_mid_add():
	"""SIGKILL while device_add of a DIMM (vm1) and of a CPU (vm2) is
	out: the restarted broker reconciles both journal records. The DIMM
	is finished (in) or undone (its backend deleted); the CPU record is
	finished (a CPU has no backend), and cpu-* works again after. A
	mem-resize killed at its qom-set (vm4) is finished: requested-size
	is QEMU's, and the device takes resizes again."""
	with qb.Env("cpumem-kill", daemon=False) as env:
		env.d = env.h.daemon()
		hplib.baseline(env.d)
		first = env.d
		c = env.d.client()
		# vm3's QEMU swallows device_add: the DIMM never came
		for vm in ("vm1", "vm2", "vm3", "vm4"):
			f = hplib.fake(env.h, vm, faults="once %s %s%s\n"
			    % (("no-reply", "device_add", "") if vm == "vm3" else
			    ("delay-cmd", "qom-set" if vm == "vm4" else
			    "device_add", " 4000")), extra=LIMITS)
			c.cmd("vm-add", {"name": vm, "socket": f.path})
			qb.wait_vm_state(c, vm, "ready")
		c.cmd("mem-add", {"vm": "vm4", "id": "v1", "size": 128 * MIB,
		    "kind": "virtio-mem"})
		c.send_cmd("mem-add", {"vm": "vm1", "id": "d1",
		    "size": 128 * MIB})
		c.send_cmd("cpu-add", {"vm": "vm2", "ids": ["c1"]})
		c.send_cmd("mem-add", {"vm": "vm3", "id": "d1",
		    "size": 128 * MIB})
		c.send_cmd("mem-resize", {"vm": "vm4", "id": "v1",
		    "size": 64 * MIB})
		jdir = os.path.join(env.d.state_dir, "hotplug")
		recs = (("vm1", "d1"), ("vm2", "cpus"), ("vm3", "d1"),
		    ("vm4", "v1"))

		def at_step(vm, rid):
			try:
				with open(os.path.join(jdir, vm, rid + ".json")) as fh:
					return json.load(fh).get("step") == (
					    "qom-set" if vm == "vm4" else
					    "device_add")
			except (OSError, ValueError):
				return False
		qb.wait_for(lambda: all(at_step(*r) for r in recs),
		    "journals at device_add")
		env.d.signal(signal.SIGKILL)
		env.d.wait()
		env.h.close_clients()
		env.d = qb.Daemon(env.h, state_dir=env.d.state_dir, tag="d2")

		def logged(vm, rid):
			return [l for l in env.d.output().splitlines() if
			    "hotplug journal %s/%s: " % (vm, rid) in l and
			    ("finished" in l or "undone" in l)]
		qb.wait_for(lambda: all(logged(*r) for r in recs),
		    "reconciles logged")
		qb.wait_for(lambda: not any(os.path.exists(os.path.join(jdir,
		    vm, rid + ".json")) for vm, rid in recs), "records gone")
		c = env.d.client()
		for vm in ("vm1", "vm2", "vm3", "vm4"):
			qb.wait_vm_state(c, vm, "ready")
		check("finished" in logged("vm4", "v1")[-1], "resize record")
		r = c.cmd("mem-resize", {"vm": "vm4", "id": "v1", "size": 0})
		check(r == {"id": "v1", "size": 0}, "resize after %r" % r)
		check("undone" in logged("vm3", "d1")[-1], "vm3: %r" %
		    logged("vm3", "d1"))
		check(dimms(c, "vm3") == [] and not has_object(c, "vm3",
		    "qbmem-d1"), "vm3 left %r" % dimms(c, "vm3"))
		ds = dimms(c, "vm1")
		if "undone" in logged("vm1", "d1")[-1]:
			check(ds == [] and not has_object(c, "vm1", "qbmem-d1"),
			    "undone, left %r" % ds)
		else:
			check(ds == [("d1", "/objects/qbmem-d1", 128 * MIB)],
			    "finished, dimms %r" % ds)
			c.cmd("mem-del", {"vm": "vm1", "id": "d1"})
			check(not has_object(c, "vm1", "qbmem-d1"), "backend")
		check("finished" in logged("vm2", "cpus")[-1], "cpu record")
		# the CPU went in with the delayed reply: it is there, and
		# the lock on cpu-* is free again
		check(hot_cpus(c, "vm2") == ["c1"], "cpus %r" % hot_cpus(c, "vm2"))
		r = c.cmd("cpu-add", {"vm": "vm2", "count": 1})
		check(r == {"ids": ["cpu-0-2-0"]}, "cpu-add after %r" % r)
		env.d.baseline_fds = first.baseline_fds
		env.d.baseline_kids = first.baseline_kids
		env.finish()


def test_refused_while_migrating():
	"""cpu-* and mem-* (mem-resize too) on either end of a running
	vm-migrate are refused and reach neither QEMU."""
	with qb.Env("cpumem-mig") as env:
		src = hplib.fake(env.h, "src", extra=LIMITS)
		rec = hplib.Recorder(env.h, src.path)
		dst = hplib.fake(env.h, "dst", running=False,
		    extra=["--incoming-defer"] + LIMITS)
		c = env.d.client()
		c.cmd("subscribe", {"events": ["JOB_STATUS_CHANGE"]})
		c.cmd("vm-add", {"name": "src", "socket": rec.path})
		c.cmd("vm-add", {"name": "dst", "socket": dst.path})
		for n in ("src", "dst"):
			qb.wait_vm_state(c, n, "ready")
		jid = c.cmd("vm-migrate", {"vm": "src", "to": "dst",
		    "uri": "unix:" + env.h.path("mig.sock"),
		    "bandwidth": 1 << 20})["job"]
		c.wait_event(lambda e: e.get("event") == "JOB_STATUS_CHANGE" and
		    e["data"]["id"] == jid and (e["data"].get("progress") or
		    {}).get("transferred", 0) > 0, what="progress")
		rec.clear()
		for vm in ("src", "dst"):
			for cmd, args in (("cpu-add", {"count": 1}),
			    ("cpu-del", {"count": 1}),
			    ("mem-add", {"id": "d1", "size": 128 * MIB}),
			    ("mem-del", {"id": "d1"}),
			    ("mem-resize", {"id": "d1", "size": 0})):
				e = err_of(c, cmd, dict(args, vm=vm))
				check("migration job %d" % jid in e,
				    "%s on %s: %r" % (cmd, vm, e))
		sent = [m["execute"] for m, _ in rec.commands()]
		check(not [x for x in sent if x in ("device_add", "object-add",
		    "query-hotpluggable-cpus", "qom-set")], "reached QEMU: %r" %
		    sent)
		c.cmd("job-cancel", {"id": jid})
		c.wait_event(lambda e: e.get("event") == "JOB_STATUS_CHANGE" and
		    e["data"]["id"] == jid and e["data"]["status"] in
		    ("concluded", "failed", "cancelled"), what="job end")
		env.finish()


def test_file_backend_guarded():
	"""A file backend's path is a host file QEMU (root) creates: for a
	tenant it must lie under the allowed dirs, as any path (policy-check
	tells the guards' decision without a VM)."""
	nobody = qb.user_ids()[0]
	with qb.Env("cpumem-guard", daemon=False) as env:
		root = env.h.path("images")
		os.makedirs(root)
		pol = env.h.path("policy")
		with open(pol, "w") as f:
			f.write("role operator uid nobody vm 'ta*'\n")
		env.d = env.h.daemon(args=["--policy", pol, "--allow-uid",
		    str(nobody), "--image-root", root])
		env.d.baseline()

		def pc(path):
			rc, o, e = qb.qmpctl(["--json", "policy-check", str(nobody),
			    "ta1", "mem-add", "id=d1", "size=134217728",
			    "backend=file", "path=" + path], sock=env.d.control)
			check(rc == 0, "policy-check: %s %s" % (o, e))
			return json.loads(o)
		r = pc("/etc/qb-mem")
		check(r["decision"] == "deny" and "outside the allowed dirs" in
		    r["reason"], "outside: %r" % r)
		r = pc(os.path.join(root, "..", "x"))
		check(r["decision"] == "deny", "dot-dot: %r" % r)
		r = pc(os.path.join(root, "ta1.mem"))
		check(r["decision"] == "allow", "inside: %r" % r)
		env.finish()


if __name__ == "__main__":
	qb.main([test_cpu_mem_fake, test_kill_mid_add,
	    test_refused_while_migrating, test_file_backend_guarded])
