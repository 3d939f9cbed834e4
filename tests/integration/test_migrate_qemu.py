#!/usr/bin/env python3
"""vm-migrate through qmpbrokerd between real QEMU 7.2 on this host,
running the TCG test guest booted with "qb.tick" (it prints TICK N about
once a second on its serial console).

The guest boots once and is passed along: each scenario migrates it from
where it runs to a fresh QEMU started with -incoming defer (which needs no
boot), so the file costs one boot. Each migration is proven from inside
the guest: the destination's console goes on counting where the source's
stopped. The failure cases end with the source still running (QEMU's
query-status and the guest's ticks).
"""

import os
import re
import signal
import socket
import time

import qb
import hplib
from qb import check

GDIR = None
PAUSED = ("postmigrate", "inmigrate", "paused", "finish-migrate")

# Guest RAM: 256 MiB and 8 KiB (QEMU rounds -m to 8 KiB), not 256 MiB.
# QEMU before 9.0 loses guest stores under TCG when it migrates RAM
# blocks whose size is a multiple of 64 pages: its 64-bits-at-a-time
# dirty bitmap sync clears the bits without re-arming the TCG TLB's
# not-dirty trap, so a page written through a TLB entry filled before
# the sync is never sent again (fixed upstream by "physmem: Fix
# migration dirty bitmap coherency with TCG memory access"; Debian's
# 7.2 lacks it). The destination's memory then differs from the
# source's (pmemsave of both ends, a -S destination: 17 pages in one
# migration of 256 MiB here), and its kernel panics, or a task waits
# forever, soon after the switch-over: a guest that stops counting.
# Any other size takes QEMU's page-by-page sync, which re-arms the
# trap. The broker has no part in it (the same happens to a migrate
# sent to QEMU directly).
MIG_MEM = "262152k"
# A short command timeout: the postcopy step waits it out on the paused
# destination (QEMU answers everything else here in well under a second).
DARGS = ["--cmd-timeout-ms", "5000"]


def guest_dir():
	global GDIR
	if GDIR is None:
		GDIR = hplib.guest_dir()
	return GDIR


def src_guest(env, name="src"):
	return hplib.Guest(env.h, name, guest_dir(), append="qb.tick",
	    mem=MIG_MEM)


def dst_guest(env, name="dst", incoming="defer"):
	return hplib.Guest(env.h, name, guest_dir(), append="qb.tick",
	    extra=["-incoming", incoming], wait=False, mem=MIG_MEM)


def add(c, *guests):
	for g in guests:
		name = os.path.basename(g.path)[:-len(".qmp")]
		c.cmd("vm-add", {"name": name, "socket": g.path})
		qb.wait_vm_state(c, name, "ready")


def status(c, vm):
	return c.cmd("vm-execute", {"vm": vm, "command": "query-status"})[
	    "status"]


def ticks(g):
	return [int(m) for m in re.findall(r"^TICK (\d+)\r?$", g.serial(), re.M)]


def last_tick(g):
	"""The guest's last TICK so far, 0 before the first."""
	t = ticks(g)
	return t[-1] if t else 0


def wait_ticks_after(g, n, more=2):
	"""Waits until g's console counts past n by more. A guest whose QEMU
	exited (-no-reboot, panic=-1: a kernel panic) fails at once, with
	its console's last lines."""
	def counted():
		t = ticks(g)
		if t and t[-1] >= n + more:
			return t
		check(g.alive(), "%s exited before counting past %d; its console "
		    "ends: %s" % (g.name, n + more, g.serial()[-1500:]))
		return None
	return qb.wait_for(counted, "%s counting past %d" % (g.name, n + more),
	    timeout=qb.TIMEOUT * 4, interval=0.2)


def vm_stats(c, vm):
	return c.cmd("query-stats", {"name": vm})["vms"][0]


def job_end(c, jid):
	ev = c.wait_event(lambda e: e.get("event") == "JOB_STATUS_CHANGE" and
	    e["data"]["id"] == jid and e["data"]["status"] in
	    ("concluded", "failed", "cancelled"), timeout=qb.TIMEOUT * 8,
	    what="job %d end" % jid)
	return ev["data"]


def progress_event(c, jid, pred):
	return c.wait_event(lambda e: e.get("event") == "JOB_STATUS_CHANGE" and
	    e["data"]["id"] == jid and "progress" in e["data"] and
	    pred(e["data"]["progress"]), timeout=qb.TIMEOUT * 4,
	    what="job %d progress" % jid)["data"]["progress"]


def free_port():
	s = socket.socket()
	s.bind(("127.0.0.1", 0))
	port = s.getsockname()[1]
	s.close()
	return port


def name_of(g):
	return os.path.basename(g.path)[:-len(".qmp")]


def check_moved(src, dst, r, c):
	"""The guest left src and counts on dst, from where it was."""
	check(r["status"] == "concluded", "job %r" % r)
	res = r["result"]
	check(res["status"] == "completed", "result %r" % res)
	check(res["source-status"] == "postmigrate", "source %r" % res)
	check(res["destination-status"] == "running", "destination %r" % res)
	check(res["total-time"] > 0 and res["ram"]["transferred"] > 0,
	    "totals %r" % res)
	check(status(c, name_of(src)) == "postmigrate",
	    "source not postmigrate")
	last = ticks(src)[-1]
	got = wait_ticks_after(dst, last)
	# the destination's console starts where the source's stopped: the
	# counter is guest memory, carried over
	check(got[0] in (last, last + 1) and got == list(range(got[0],
	    got[0] + len(got))), "source ended at %d, destination counts %r"
	    % (last, got[:10]))


class Relay:
	"""The one booted guest and where it runs now (cur), on one daemon."""

	def __init__(self, env):
		self.env = env
		self.connect()
		self.cur = src_guest(env, "g0")
		wait_ticks_after(self.cur, 0, 1)
		add(self.c, self.cur)
		self.n = 0

	def connect(self):
		self.c = self.env.d.client()
		self.c.cmd("subscribe", {"events": ["JOB_STATUS_CHANGE"]})
		# the destinations' own word in postcopy, whose in-band
		# monitor may block on a page that has not come
		self.c.cmd("subscribe", {"vms": ["d*"], "events": ["RESUME",
		    "MIGRATION"]})

	def fresh(self):
		"""A new -incoming defer QEMU, added to the broker."""
		self.n += 1
		g = dst_guest(self.env, "d%d" % self.n)
		add(self.c, g)
		check(status(self.c, name_of(g)) == "inmigrate",
		    "destination not inmigrate")
		return g

	def drop(self, g):
		"""Removes g from the broker and stops its QEMU."""
		self.c.cmd("vm-remove", {"name": name_of(g)})
		g.kill()

	def moved(self, dst, r):
		"""The guest is on dst now; the old source goes."""
		check_moved(self.cur, dst, r, self.c)
		self.drop(self.cur)
		self.cur = dst

	def start(self, dst, extra=None):
		args = {"vm": name_of(self.cur), "to": name_of(dst)}
		args.update(extra or {})
		return self.c.cmd("vm-migrate", args)["job"]

	def slow(self, dst, extra=None):
		"""cur -> dst at 1 MB/s: minutes for 256 MiB, so it is still
		running when the test acts."""
		jid = self.start(dst, dict(extra or {}, bandwidth=1 << 20))
		progress_event(self.c, jid, lambda p: p["status"] == "active" and
		    p.get("transferred", 0) > 0)
		return jid


def unix_default(rl, env):
	"""to: a VM, over the broker's own unix socket; progress events carry
	the numbers QEMU reports."""
	c = rl.c
	dst = rl.fresh()
	jid = rl.start(dst)
	r = job_end(c, jid)
	rl.moved(dst, r)
	p = c.cmd("query-jobs", {"id": jid})[0]["progress"]
	for k in ("pass", "transferred", "remaining", "total",
	    "dirty-rate", "expected-downtime", "status"):
		check(k in p, "progress lacks %s: %r" % (k, p))
	check(p["pass"] >= 1 and p["total"] > 0, "progress %r" % p)
	check(not [f for f in os.listdir(env.d.run_dir)
	    if f.startswith("migrate-")], "migration socket left")


def tcp_loopback(rl, env):
	"""to: a VM over TCP on loopback, with bandwidth and downtime set."""
	dst = rl.fresh()
	jid = rl.start(dst, {"uri": "tcp:127.0.0.1:%d" % free_port(),
	    "bandwidth": 1 << 30, "downtime-ms": 500})
	r = job_end(rl.c, jid)
	par = rl.c.cmd("vm-execute", {"vm": name_of(rl.cur), "command":
	    "query-migrate-parameters"})
	check(par["max-bandwidth"] == 1 << 30 and
	    par["downtime-limit"] == 500, "parameters %r" % par)
	rl.moved(dst, r)


def restart(rl, env):
	"""The broker killed with SIGKILL mid-transfer and started again on
	the same state dir: its journal record becomes a job that finds
	QEMU's migration running (query-migrate on both ends), watches it
	to its end and concludes; the guest has moved."""
	dst = rl.fresh()
	jid = rl.slow(dst)
	rec = os.path.join(env.d.state_dir, "migrate", name_of(rl.cur),
	    "job.json")
	qb.check(os.path.exists(rec), "no journal record")
	first = env.d
	env.d.signal(signal.SIGKILL)
	env.d.wait()
	env.h.close_clients()
	env.d = qb.Daemon(env.h, state_dir=first.state_dir, tag="d2",
	    args=DARGS)
	env.d.baseline_fds = first.baseline_fds
	env.d.baseline_kids = first.baseline_kids
	rl.connect()
	for g in (rl.cur, dst):
		qb.wait_vm_state(rl.c, name_of(g), "ready")

	def job(st):
		js = [j for j in rl.c.cmd("query-jobs") if j["kind"] ==
		    "vm-migrate" and j["status"] == st]
		return js and js[0]
	qb.wait_for(lambda: (job("running") or {}).get("progress", {}).get(
	    "status") == "active", "the reconciled job watching")
	rl.c.cmd("vm-execute", {"vm": name_of(rl.cur), "command":
	    "migrate-set-parameters", "arguments": {"max-bandwidth": 1 << 30}})
	r = qb.wait_for(lambda: job("concluded") or job("failed"),
	    "the reconciled job's end", timeout=qb.TIMEOUT * 4)
	check(r["result"]["reconciled"] == {"step": "migrate", "job": jid,
	    "action": "adopted"}, "job %r" % r)
	check(not os.path.exists(rec), "journal record left")
	rl.moved(dst, r)


def cancel(rl, env):
	"""job-cancel runs migrate_cancel; the job says cancelled once QEMU
	does, and the source runs on."""
	c, src = rl.c, name_of(rl.cur)
	dst = rl.fresh()
	jid = rl.slow(dst)
	c.cmd("job-cancel", {"id": jid})
	r = job_end(c, jid)
	check(r["status"] == "cancelled", "job %r" % r)
	check(r["result"]["status"] == "cancelled" and
	    r["result"]["source-status"] == "running", "result %r" % r)
	mig = c.cmd("vm-execute", {"vm": src, "command": "query-migrate"})
	check(mig["status"] == "cancelled", "QEMU says %r" % mig)
	check(status(c, src) == "running", "source not running")
	wait_ticks_after(rl.cur, last_tick(rl.cur))
	rl.drop(dst)


def bad_input(rl, env):
	"""Each refusal is clear and leaves the source running."""
	c, src = rl.c, name_of(rl.cur)
	other = qb.Qemu(env.h, env.h.path("plain.qmp"))
	c.cmd("vm-add", {"name": "plain", "socket": other.path})
	qb.wait_vm_state(c, "plain", "ready")
	dst = rl.fresh()
	to = name_of(dst)

	_, d = c.cmd_error("vm-migrate", {"vm": src, "to": src})
	check("itself" in d, d)
	_, d = c.cmd_error("vm-migrate", {"vm": src})
	check("'to'" in d and "'uri'" in d, d)
	_, d = c.cmd_error("vm-migrate", {"vm": src, "uri":
	    "exec:cat > /tmp/x"})
	check("not allowed" in d, d)
	_, d = c.cmd_error("vm-migrate", {"vm": src, "to": "nope"})
	check("unknown VM 'nope'" in d, d)
	_, d = c.cmd_error("vm-migrate", {"vm": src, "to": to,
	    "capabilities": {"events": False}})
	check("events" in d, d)
	_, d = c.cmd_error("vm-migrate", {"vm": src, "to": to,
	    "bandwidth": -1})
	check("negative" in d, d)

	# a destination not started with -incoming defer: the job fails
	# before anything is sent
	jid = c.cmd("vm-migrate", {"vm": src, "to": "plain"})["job"]
	r = job_end(c, jid)
	check(r["status"] == "failed" and "-incoming defer" in
	    r["error"]["desc"], "job %r" % r)
	check(status(c, src) == "running", "source not running")

	# twice at once, and hotplug on either end meanwhile
	jid = rl.slow(dst)
	_, d = c.cmd_error("vm-migrate", {"vm": src, "to": to})
	check("busy" in d or "already" in d, d)
	_, d = c.cmd_error("vm-migrate", {"vm": "plain", "to": to})
	check("already an end of migration job %d" % jid in d, d)
	for vm in (src, to):
		_, d = c.cmd_error("disk-add", {"vm": vm, "id": "d0",
		    "source": "/nonexistent"})
		check("migration job %d" % jid in d, d)
		_, d = c.cmd_error("nic-del", {"vm": vm, "id": "n0"})
		check("migration job %d" % jid in d, d)
	_, d = c.cmd_error("vm-migrate-postcopy", {"vm": src})
	check("not started with postcopy" in d, d)

	# the destination dies mid-migration
	dst.kill()
	r = job_end(c, jid)
	check(r["status"] == "failed" and "'%s'" % to in r["error"]["desc"]
	    and "went away" in r["error"]["desc"] and
	    "'%s' is running" % src in r["error"]["desc"], "job %r" % r)
	check(status(c, src) == "running", "source not running")
	wait_ticks_after(rl.cur, last_tick(rl.cur))
	rl.drop(dst)
	c.cmd("vm-remove", {"name": "plain"})
	other.kill()


def postcopy(rl, env):
	"""postcopy: vm-migrate-postcopy switches a slow precopy; paused
	(vm-migrate-pause) and recovered (vm-migrate-recover: migrate-recover
	on the destination, migrate resume on the source), it completes: the
	destination runs the guest, the source is left in postmigrate."""
	c, src = rl.c, name_of(rl.cur)
	dst = rl.fresh()
	to = name_of(dst)
	jid = rl.slow(dst, {"postcopy": True})
	caps = c.cmd("vm-execute", {"vm": to, "command":
	    "query-migrate-capabilities"})
	check({"capability": "postcopy-ram", "state": True} in caps,
	    "destination lacks postcopy-ram: %r" % caps)
	_, d = c.cmd_error("vm-migrate-recover", {"vm": src})
	check("not in postcopy" in d, d)
	c.cmd("vm-migrate-postcopy", {"vm": src})
	progress_event(c, jid, lambda p: p["status"] == "postcopy-active")
	_, d = c.cmd_error("vm-migrate-recover", {"vm": src})
	check("not postcopy-paused" in d, d)

	# the stream breaks (migrate-pause, out of band): both ends wait in
	# postcopy-paused, the job runs on. QEMU 7.2 fails a destination
	# that breaks while it loads the device state: the broker pauses
	# only once it runs the guest (its RESUME). A paused destination's
	# in-band monitor may block on a missing page: only its events are
	# read.
	c.wait_event(lambda e: e.get("event") == "RESUME" and
	    e.get("vm") == to, timeout=qb.TIMEOUT * 4, what="RESUME")
	c.cmd("vm-migrate-pause", {"vm": src})
	progress_event(c, jid, lambda p: p["status"] == "postcopy-paused")
	c.wait_event(lambda e: e.get("event") == "MIGRATION" and
	    e.get("vm") == to and e["data"]["status"] == "postcopy-paused",
	    timeout=qb.TIMEOUT * 4, what="destination postcopy-paused")
	check(c.cmd("query-jobs", {"id": jid})[0]["status"] == "running",
	    "job not running while paused")
	# An in-band command that needs a page the paused destination has
	# not got blocks QEMU's main loop until recovery (query-migrate
	# does when a device waits on such a page; xp of guest RAM far
	# above what the 1 MB/s precopy sent always does): after
	# cmd-timeout-ms it fails alone, clearly, and the monitor stays
	# (recovery goes through it, out of band)
	st0 = vm_stats(c, to)
	cls, d = c.cmd_error("vm-execute", {"vm": to, "command":
	    "human-monitor-command", "arguments": {"command-line":
	    "xp /1xw 0x8000000"}})
	check(cls == "GenericError" and "while postcopy is paused" in d,
	    "%s: %s" % (cls, d))
	st1 = vm_stats(c, to)
	check(st1["state"] == "ready" and st1["reconnects"] ==
	    st0["reconnects"] and st1["timeouts"] == st0["timeouts"] + 1,
	    "destination's monitor %r, was %r" % (st1, st0))
	_, d = c.cmd_error("vm-migrate-pause", {"vm": src})
	check("not postcopy-active" in d, d)
	_, d = c.cmd_error("vm-migrate-recover", {"vm": src, "uri":
	    "exec:true"})
	check("not allowed" in d, d)
	# postcopy at 1 MB/s would still take minutes: lift the cap
	c.cmd("vm-execute", {"vm": src, "command": "migrate-set-parameters",
	    "arguments": {"max-postcopy-bandwidth": 0, "max-bandwidth":
	    1 << 30}})
	# migrate-recover on dst (a new listener on the job's socket),
	# migrate resume on src
	c.cmd("vm-migrate-recover", {"vm": src})
	r = job_end(c, jid)
	check(r.get("result", {}).get("recovered") == 1, "job %r" % r)
	# QEMU answers in order: the late xp reply came before
	# this one's and was dropped, neither taken for it nor a protocol
	# error (which would have redialed)
	st = c.cmd("vm-execute", {"vm": to, "command": "query-status"})
	check(st.get("status") == "running" and "running" in st,
	    "query-status after recovery %r" % st)
	st2 = vm_stats(c, to)
	check(st2["state"] == "ready" and st2["reconnects"] ==
	    st0["reconnects"], "destination's monitor %r, was %r" % (st2,
	    st0))
	rl.moved(dst, r)


def quit_source(rl, env):
	"""quit-source: the source QEMU exits once the guest has moved."""
	src = rl.cur
	dst = rl.fresh()
	jid = rl.start(dst, {"quit-source": True})
	r = job_end(rl.c, jid)
	check(r["status"] == "concluded" and
	    r["result"]["source-status"] == "quit", "job %r" % r)
	src.wait()
	wait_ticks_after(dst, last_tick(src))
	rl.c.cmd("vm-remove", {"name": name_of(src)})
	rl.cur = dst


def uri_only(rl, env):
	"""uri only: the broker drives the source; the destination is a
	QEMU it does not know, started with -incoming on a unix socket."""
	sock = env.h.path("in.sock")
	dst = dst_guest(env, "ext", "unix:" + sock)
	qb.wait_for(lambda: os.path.exists(sock), "incoming socket")
	jid = rl.c.cmd("vm-migrate", {"vm": name_of(rl.cur), "uri": "unix:" +
	    sock})["job"]
	r = job_end(rl.c, jid)
	check("to" not in r["result"] and "destination-status" not in
	    r["result"], "result %r" % r)
	r["result"]["destination-status"] = "running"
	check_moved(rl.cur, dst, r, rl.c)


def test_relay():
	"""The scenarios in turn, the guest passed along from QEMU to QEMU;
	each step says its name on failure."""
	with qb.Env("mig-qemu", args=DARGS) as env:
		rl = Relay(env)
		for step in (unix_default, tcp_loopback, restart, cancel,
		    bad_input,
		    postcopy, quit_source, uri_only):
			t0 = time.monotonic()
			try:
				step(rl, env)
			except qb.Failure as e:
				raise qb.Failure("%s: %s" % (step.__name__, e))
			print("#   %s ok (%.1f s)" % (step.__name__,
			    time.monotonic() - t0))
		env.finish()


if __name__ == "__main__":
	qb.main([test_relay])
