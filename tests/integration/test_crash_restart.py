#!/usr/bin/env python3
"""kill -9 of the broker at random points of a scripted workload, and the
other crashes a broker must live through.

kill9_loop: 50 rounds (QB_CRASH_ROUNDS) with seeded randomness (QB_SEED;
the seed is printed). Each round sends a burst of requests without waiting
(vm-add/vm-remove of a spare VM, nic-add/nic-del/disk-add/disk-del on three
VMs, image-attach/-detach jobs on a loop device, libvirt domain jobs, a
subscription and an event), kills the broker after a random pause,
restarts it on the same state dir and checks against what the answered
requests promised:
  - the registry: every VM whose vm-add was answered (and not removed) is
    back, none whose vm-remove was answered;
  - the devices: every answered add is still in its VM, every answered del
    gone; whatever was in flight is all there (device with its tap or
    block node) or all gone, and its journal record is reconciled away;
  - the loop devices: every attach whose job was seen concluding is still
    attached, and every loop device of the image after the restart (the
    restart detaches those whose attach it interrupted) can be detached
    through the broker: none is unknown to it, none is left;
  - a new client can subscribe again and gets the VMs' events.
Could fail by: a VM or device lost, a half-plugged device, a journal left,
the broker not starting, no events after the restart.

qemu_killed_mid_command: fake-qemu dies while a hotplug and a vm-execute
are pending: one error reply each, the VM comes back with a new QEMU and
holds nothing.

corrupt_state_file: truncated, garbage, and half-valid registries: the
broker starts, logs what it ignored, keeps the bad file as
vms.json.bad-TIME (same bytes) and loads what was valid.
"""

import glob
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

import qb
import hplib
from qb import check

ROUNDS = int(os.environ.get("QB_CRASH_ROUNDS", "50"))
VMS = ["v0", "v1", "v2"]
SPARE = "spare"
IDS = ["n0", "n1", "d0", "d1"]


def devices(c, vm, f):
	"""The VM's hotplugged devices, after checking each is whole."""
	s = hplib.snapshot(c, vm)
	present = {p for p in s["peripheral"] if p in IDS}
	nics = {p for p in present if p.startswith("n")}
	disks = present - nics
	try:
		qb.wait_for(lambda: hplib.fake_taps(f.pid) == len(nics), "taps")
	except qb.Failure:
		raise qb.Failure("%s: %d taps for %r (fake holds %d: %s)" % (vm,
		    len(nics), sorted(nics), hplib.fake_taps(f.pid),
		    " ".join(qb.fd_list(f.pid))))
	blk = {b.split("/")[3] if b.startswith("/machine/peripheral/") else b
	    for b in s["block"]}
	check({b for b in blk if b in IDS} == disks,
	    "%s: block devices %r, disks %r" % (vm, s["block"], disks))
	check(bool(s["nodes"]) == bool(disks), "%s: nodes %r, disks %r" %
	    (vm, s["nodes"], disks))
	if not disks:
		check(not [x for x in s["fdsets"] if x["fds"]],
		    "%s: fdsets without disks %r" % (vm, s["fdsets"]))
	return present


def img_loops(img):
	"""Loop devices backed by img, as losetup sees them."""
	out = subprocess.run(["losetup", "--noheadings", "-O", "NAME", "-j",
	    img], capture_output=True, text=True).stdout
	return {x.strip() for x in out.split() if x.strip()}


def job_end(c, jid):
	"""Waits for job jid to finish; returns its query-jobs entry."""
	def done():
		for j in c.cmd("query-jobs", {"id": jid}):
			if j["status"] in ("concluded", "failed", "cancelled"):
				return j
		return None
	return qb.wait_for(done, "job %d to end" % jid)


def jobs_settled(c):
	"""No job still running (the restart's own image-detach jobs)."""
	return not [j for j in c.cmd("query-jobs") if j["status"] in
	    ("created", "running")]


def test_kill9_loop():
	hplib.need_root_tun()
	seed = int(os.environ.get("QB_SEED") or random.randrange(1 << 30))
	print("# seed %d (QB_SEED=%d to repeat)" % (seed, seed), flush=True)
	rnd = random.Random(seed)
	with qb.Env("crash", daemon=False) as env:
		h = env.h
		root = h.path("images")
		os.makedirs(root)
		for i in IDS + ["img"]:
			with open(os.path.join(root, i + ".raw"), "wb") as fh:
				fh.truncate(1 << 20)
		img = os.path.join(root, "img.raw")	# image-attach's
		try:
			loop_rounds(env, h, root, img, rnd)
		finally:
			for dev in img_loops(img):
				subprocess.run(["losetup", "-d", dev])


def loop_rounds(env, h, root, img, rnd):
	dargs = ["--image-root", root, "--cmd-timeout-ms", "3000",
	    "--log-level", os.environ.get("QB_LOG_LEVEL", "info")]
	d = h.daemon(args=dargs)
	hplib.baseline(d)
	first = env.d = d
	fakes = {v: hplib.fake(h, v) for v in VMS + [SPARE]}
	taps = {(v, i): hplib.Tap(h) for v in VMS for i in IDS
	    if i.startswith("n")}
	c = d.client()
	for v in VMS:
		c.cmd("vm-add", {"name": v, "socket": fakes[v].path})
	registered = set(VMS)
	have = {v: set() for v in VMS}		# devices promised
	att = set()				# loop devices promised
	nimg = {"jobs": 0, "found": 0}
	for rnd_no in range(ROUNDS):
		# ---- the burst ----
		sent = []	# (id, op, vm, dev)
		for v in VMS:
			qb.wait_vm_state(c, v, "ready")
		s = d.client()
		s.cmd("subscribe", {"vms": ["v*"]})
		jc = d.client()
		jc.cmd("subscribe", {"events": ["JOB_STATUS_CHANGE"]})
		busy = set()
		jobs = []	# (request id, op, loop device)
		for _ in range(rnd.randint(2, 6)):
			what = rnd.random()
			if what < 0.15 and "img" not in busy:
				busy.add("img")
				if att:
					dev = rnd.choice(sorted(att))
					i = c.send_cmd("image-detach",
					    {"device": dev})
				else:
					dev = None
					i = c.send_cmd("image-attach",
					    {"path": img, "mode": "loop"})
				jobs.append((i, dev))
				nimg["jobs"] += 1
				continue
			if what < 0.25:
				# libvirt's test driver lives in the
				# broker: nothing of it survives a kill,
				# but its jobs must not wedge the restart
				c.send_cmd(rnd.choice(["domain-suspend",
				    "domain-resume"]), {"domain": "test"})
				continue
			what = (what - 0.25) / 0.75
			if what < 0.2 and SPARE not in busy:
				busy.add(SPARE)
				if SPARE in registered:
					i = c.send_cmd("vm-remove",
					    {"name": SPARE})
					sent.append((i, "vm-remove", SPARE,
					    None))
				else:
					i = c.send_cmd("vm-add", {"name":
					    SPARE, "socket":
					    fakes[SPARE].path})
					sent.append((i, "vm-add", SPARE,
					    None))
				continue
			v = rnd.choice(VMS)
			dev = rnd.choice(IDS)
			if (v, dev) in busy:
				continue
			busy.add((v, dev))
			kind = "nic" if dev.startswith("n") else "disk"
			if dev in have[v]:
				op = kind + "-del"
				i = c.send_cmd(op, {"vm": v, "id": dev})
			elif kind == "nic":
				op = "nic-add"
				fd = taps[(v, dev)].open()
				try:
					i = c.send_cmd(op, {"vm": v,
					    "id": dev}, fds=[fd])
				finally:
					os.close(fd)
			else:
				op = "disk-add"
				i = c.send_cmd(op, {"vm": v, "id": dev,
				    "source": os.path.join(root,
				    dev + ".raw")})
			sent.append((i, op, v, dev))
		c.send_cmd("vm-execute", {"vm": rnd.choice(VMS),
		    "command": "x-fake-event", "arguments":
		    {"event": "BURST"}})
		time.sleep(rnd.random() * 0.05)
		d.signal(signal.SIGKILL)
		d.wait()
		# what was answered before the kill is promised
		try:
			c.poll_msgs()
		except (qb.Closed, qb.Failure):
			pass
		uncertain = set()
		for i, op, v, dev in sent:
			r = c.replies.get(json.dumps(i))
			done = r is not None and "return" in r
			if r is None:
				uncertain.add((v, dev))
			elif not done:
				continue
			elif op == "vm-add":
				registered.add(v)
			elif op == "vm-remove":
				registered.discard(v)
			elif op.endswith("-add"):
				have[v].add(dev)
			else:
				have[v].discard(dev)
		# what the job events said before the kill is promised
		try:
			jc.poll_msgs()
		except (qb.Closed, qb.Failure):
			pass
		ended = {e["data"]["id"]: e["data"] for e in jc.events
		    if e["data"]["status"] in ("concluded", "failed",
		    "cancelled")}
		img_unsure = False
		for i, dev in jobs:
			r = c.replies.get(json.dumps(i))
			jid = r and r.get("return", {}).get("job")
			e = ended.get(jid)
			if r is not None and "error" in r:
				continue
			if e is None:
				img_unsure = True
			elif e["status"] != "concluded":
				continue
			elif dev is None:
				att.add(e["result"]["device"])
			else:
				att.discard(dev)
		for x in (c, s, jc):
			x.close()

		# ---- restart and check ----
		d = qb.Daemon(h, args=dargs, state_dir=first.state_dir,
		    run_dir=first.run_dir, control=first.control,
		    tag="d%d" % (rnd_no + 2))
		env.d = d	# its log tail is printed on failure
		c = d.client()
		names = {x["name"] for x in c.cmd("query-vms")}
		maybe = {v for v, dev in uncertain if dev is None}
		check(registered - maybe <= names <= registered | maybe,
		    "round %d: registry %r, promised %r (in flight %r)"
		    % (rnd_no, sorted(names), sorted(registered),
		    sorted(maybe)))
		registered = names
		for v in VMS:
			qb.wait_vm_state(c, v, "ready")
			jdir = os.path.join(d.state_dir, "hotplug", v)
			qb.wait_for(lambda: not glob.glob(os.path.join(
			    jdir, "*.json")), "round %d: %s journals "
			    "reconciled" % (rnd_no, v))
			try:
				now = devices(c, v, fakes[v])
			except qb.Failure as e:
				raise qb.Failure("round %d: %s; in flight "
				    "%r; sent %r" % (rnd_no, e, sorted(
				    uncertain, key=repr), sent))
			flying = {dev for vv, dev in uncertain if vv == v}
			check(have[v] - flying <= now <= have[v] | flying,
			    "round %d: %s has %r, promised %r (in flight "
			    "%r)" % (rnd_no, v, sorted(now),
			    sorted(have[v]), sorted(flying)))
			have[v] = now
		# loop devices: every promised one survived and was
		# adopted (the broker can detach it), any other was
		# undone by the restart itself or is the broker's too
		qb.wait_for(lambda: jobs_settled(c), "round %d: the "
		    "restart's jobs" % rnd_no)
		loops = img_loops(img)
		check(att <= loops or img_unsure, "round %d: loop "
		    "devices %r, promised %r" % (rnd_no, sorted(loops),
		    sorted(att)))
		nimg["found"] += len(loops)
		for dev in sorted(loops):
			j = job_end(c, c.cmd("image-detach",
			    {"device": dev})["job"])
			check(j["status"] == "concluded", "round %d: "
			    "detaching %s after the restart: %r" %
			    (rnd_no, dev, j))
		check(not img_loops(img), "round %d: loop devices "
		    "left %r" % (rnd_no, sorted(img_loops(img))))
		att = set()
		check("test" in {x["name"] for x in
		    c.cmd("query-domains")}, "round %d: libvirt's "
		    "test domain" % rnd_no)
		# clients reconnect and resubscribe
		s = d.client()
		s.cmd("subscribe", {"vms": [VMS[0]]})
		c.cmd("vm-execute", {"vm": VMS[0], "command":
		    "x-fake-event", "arguments": {"event": "AFTER"}})
		check(s.wait_event("AFTER")["vm"] == VMS[0],
		    "event after restart")
	print("# %d rounds; devices at the end %r; %d image jobs, %d loop "
	    "devices found after restarts" % (ROUNDS, {v: sorted(x) for v, x
	    in have.items()}, nimg["jobs"], nimg["found"]), flush=True)
	# the last daemon ends as lean as the first began, with the
	# devices (and their fds in fake-qemu) removed
	for v in VMS:
		for dev in sorted(have[v]):
			c.cmd("nic-del" if dev.startswith("n") else
			    "disk-del", {"vm": v, "id": dev})
	d.baseline_fds = first.baseline_fds
	d.baseline_kids = first.baseline_kids
	env.d = d
	env.finish()


def test_qemu_killed_mid_command():
	hplib.need_root_tun()
	with qb.Env("qkill", daemon=False) as env:
		h = env.h
		env.d = h.daemon(args=["--cmd-timeout-ms", "2000"])
		hplib.baseline(env.d)
		f = hplib.fake(h, "vm1", faults="delay-cmd getfd 1000\n"
		    "delay-cmd query-status 1000\n")
		c = env.d.client()
		c.cmd("vm-add", {"name": "vm1", "socket": f.path})
		qb.wait_vm_state(c, "vm1", "ready")
		tap = hplib.Tap(h)
		fd = tap.open()
		try:
			a = c.send_cmd("nic-add", {"vm": "vm1", "id": "n0"},
			    fds=[fd])
		finally:
			os.close(fd)
		b = c.send_cmd("vm-execute", {"vm": "vm1",
		    "command": "query-status"})
		time.sleep(0.3)		# let both reach fake-qemu
		f.kill()
		for i, what in ((b, "vm-execute"), (a, "nic-add")):
			# a hotplug's undo waits up to 30 s (HP_RETRY_TOTAL_MS)
			# for QEMU to come back before it answers
			try:
				r = c.wait_reply(i, timeout=qb.TIMEOUT + 40)
			except qb.Failure:
				raise qb.Failure("no reply to %s once QEMU died" %
				    what)
			check("error" in r, "%s: %r" % (what, r))
		time.sleep(0.2)
		c.poll_msgs()
		check(not c.replies and not c.noid, "extra replies: %r %r" %
		    (c.replies, c.noid))
		# a new QEMU on the same socket: the VM comes back empty
		f = hplib.fake(h, "vm1")
		qb.wait_vm_state(c, "vm1", "ready")
		check(devices(c, "vm1", f) == set(), "device after restart")
		check(not glob.glob(os.path.join(env.d.state_dir, "hotplug",
		    "vm1", "*.json")), "journal left")
		env.finish()


def corrupt_case(tag, content, expect_vms):
	with qb.Env("corrupt-" + tag, daemon=False) as env:
		h = env.h
		state = h.path("state")
		os.makedirs(state)
		path = os.path.join(state, "vms.json")
		with open(path, "wb") as fh:
			fh.write(content)
		env.d = h.daemon(state_dir=state)
		out = qb.wait_for(lambda: "vms.json" in env.d.output() and
		    env.d.output(), "the broker says what it ignored")
		bad = glob.glob(path + ".bad-*")
		check(len(bad) == 1, "bad copy: %r" % bad)
		with open(bad[0], "rb") as fh:
			check(fh.read() == content, "bad copy differs")
		c = env.d.client()
		names = sorted(x["name"] for x in c.cmd("query-vms"))
		check(names == expect_vms, "loaded %r, want %r" % (names,
		    expect_vms))
		with open(path) as fh:
			clean = json.load(fh)
		check(sorted(x["name"] for x in clean["vms"]) == expect_vms,
		    "rewritten registry %r" % clean)
		# read again: the words may come on a line after the first
		# one naming vms.json
		out = env.d.output()
		check(any(w in out for w in ("ignor", "bad", "invalid")),
		    "no word about what was ignored: %s" % env.d.tail())
		for x in c.cmd("query-vms"):
			c.cmd("vm-remove", {"name": x["name"]})
		c.close()
		env.d.terminate()


def test_corrupt_state_file():
	good = {"version": 1, "vms": [{"name": "a", "socket": "/tmp/a.sock"},
	    {"name": "b", "socket": "/tmp/b.sock"}]}
	text = json.dumps(good).encode()
	corrupt_case("truncated", text[:len(text) // 2], [])
	corrupt_case("garbage", b"\x00\xff\xfe garbage \x01" * 50, [])
	half = {"version": 1, "vms": [{"name": "a", "socket": "/tmp/a.sock"},
	    {"name": "bad name", "socket": "/tmp/x.sock"},
	    {"name": "c", "socket": "relative"},
	    {"name": 5}, "str", {"name": "a", "socket": "/tmp/dup.sock"},
	    {"name": "d", "socket": "/tmp/d.sock"}]}
	corrupt_case("half-valid", json.dumps(half).encode(), ["a", "d"])


def in_background(fn):
	"""Starts case fn in a thread now; returns the case that waits for
	it and ends as it did. qemu_killed_mid_command spends most of its
	time waiting out the broker's 30 s hotplug retry (HP_RETRY_TOTAL_MS)
	on a harness and daemon of its own: kill9_loop runs meanwhile."""
	end = {}

	def run():
		try:
			fn()
		except BaseException as e:
			end["e"] = e
	t = threading.Thread(target=run, daemon=True)
	t.start()

	def case():
		t.join()
		if "e" in end:
			raise end["e"]
	case.__name__ = fn.__name__
	return case


if sys.argv[1:]:
	# cases named on the command line: one after another, as asked
	qb.main([test_corrupt_state_file, test_qemu_killed_mid_command,
	    test_kill9_loop])
else:
	qkill = in_background(test_qemu_killed_mid_command)
	qb.main([test_corrupt_state_file, test_kill9_loop, qkill])
