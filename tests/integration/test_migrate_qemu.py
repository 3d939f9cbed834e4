#!/usr/bin/env python3
"""vm-migrate through qmpbrokerd between two real QEMU 7.2 on this host,
running the TCG test guest booted with "qb.tick" (it prints TICK N about
once a second on its serial console).

Each migration is proven from inside the guest: the destination's console
goes on counting where the source's stopped. The failure cases end with the
source still running (QEMU's query-status and the guest's ticks).
"""

import os
import re
import socket

import qb
import hplib
from qb import check

GDIR = None
PAUSED = ("postmigrate", "inmigrate", "paused", "finish-migrate")


def guest_dir():
	global GDIR
	if GDIR is None:
		GDIR = hplib.guest_dir()
	return GDIR


def src_guest(env, name="src"):
	return hplib.Guest(env.h, name, guest_dir(), append="qb.tick")


def dst_guest(env, name="dst"):
	return hplib.Guest(env.h, name, guest_dir(), append="qb.tick",
	    extra=["-incoming", "defer"], wait=False)


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
	"""Waits until g's console counts past n by more."""
	return qb.wait_for(lambda: ticks(g) and ticks(g)[-1] >= n + more and
	    ticks(g), "%s counting past %d" % (g.name, n + more),
	    timeout=qb.TIMEOUT * 4, interval=0.2)


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


def check_moved(src, dst, r, c):
	"""The guest left src and counts on dst, from where it was."""
	check(r["status"] == "concluded", "job %r" % r)
	res = r["result"]
	check(res["status"] == "completed", "result %r" % res)
	check(res["source-status"] == "postmigrate", "source %r" % res)
	check(res["destination-status"] == "running", "destination %r" % res)
	check(res["total-time"] > 0 and res["ram"]["transferred"] > 0,
	    "totals %r" % res)
	check(status(c, "src") == "postmigrate", "source not postmigrate")
	last = ticks(src)[-1]
	got = wait_ticks_after(dst, last)
	# the destination's console starts where the source's stopped: the
	# counter is guest memory, carried over
	check(got[0] in (last, last + 1) and got == list(range(got[0],
	    got[0] + len(got))), "source ended at %d, destination counts %r"
	    % (last, got[:10]))


def migrate(env, args):
	src = src_guest(env)
	wait_ticks_after(src, 0, 1)
	dst = dst_guest(env)
	c = env.d.client()
	c.cmd("subscribe", {"events": ["JOB_STATUS_CHANGE"]})
	add(c, src, dst)
	check(status(c, "dst") == "inmigrate", "dst not inmigrate")
	jid = c.cmd("vm-migrate", dict(args, vm="src", to="dst"))["job"]
	r = job_end(c, jid)
	check_moved(src, dst, r, c)
	return c, jid


def test_unix_default():
	"""to: a VM, over the broker's own unix socket; progress events carry
	the numbers QEMU reports."""
	with qb.Env("mig-unix") as env:
		c, jid = migrate(env, {})
		js = c.cmd("query-jobs", {"id": jid})[0]
		p = js["progress"]
		for k in ("pass", "transferred", "remaining", "total",
		    "dirty-rate", "expected-downtime", "status"):
			check(k in p, "progress lacks %s: %r" % (k, p))
		check(p["pass"] >= 1 and p["total"] > 0, "progress %r" % p)
		check(not [f for f in os.listdir(env.d.run_dir)
		    if f.startswith("migrate-")], "migration socket left")
		env.finish()


def test_tcp_loopback():
	"""to: a VM over TCP on loopback, with bandwidth and downtime set."""
	with qb.Env("mig-tcp") as env:
		c, jid = migrate(env, {"uri": "tcp:127.0.0.1:%d" % free_port(),
		    "bandwidth": 1 << 30, "downtime-ms": 500})
		par = c.cmd("vm-execute", {"vm": "src", "command":
		    "query-migrate-parameters"})
		check(par["max-bandwidth"] == 1 << 30 and
		    par["downtime-limit"] == 500, "parameters %r" % par)
		env.finish()


def test_uri_only():
	"""uri only: the broker drives the source; the destination is a
	QEMU it does not know, started with -incoming on a unix socket."""
	with qb.Env("mig-uri") as env:
		sock = env.h.path("in.sock")
		src = src_guest(env)
		dst = hplib.Guest(env.h, "dst", guest_dir(), append="qb.tick",
		    extra=["-incoming", "unix:" + sock], wait=False)
		qb.wait_for(lambda: os.path.exists(sock), "incoming socket")
		c = env.d.client()
		c.cmd("subscribe", {"events": ["JOB_STATUS_CHANGE"]})
		add(c, src)
		wait_ticks_after(src, 0, 1)
		jid = c.cmd("vm-migrate", {"vm": "src", "uri": "unix:" +
		    sock})["job"]
		r = job_end(c, jid)
		check("to" not in r["result"] and "destination-status" not in
		    r["result"], "result %r" % r)
		r["result"]["destination-status"] = "running"
		check_moved(src, dst, r, c)
		env.finish()


def slow_migration(env, c, extra=None):
	"""src -> dst at 1 MB/s: minutes for 256 MiB, so it is still
	running when the test acts."""
	args = {"vm": "src", "to": "dst", "bandwidth": 1 << 20}
	args.update(extra or {})
	jid = c.cmd("vm-migrate", args)["job"]
	progress_event(c, jid, lambda p: p["status"] == "active" and
	    p.get("transferred", 0) > 0)
	return jid


def test_cancel():
	"""job-cancel runs migrate_cancel; the job says cancelled once QEMU
	does, and the source runs on."""
	with qb.Env("mig-cancel") as env:
		src, dst = src_guest(env), dst_guest(env)
		c = env.d.client()
		c.cmd("subscribe", {"events": ["JOB_STATUS_CHANGE"]})
		add(c, src, dst)
		jid = slow_migration(env, c)
		c.cmd("job-cancel", {"id": jid})
		r = job_end(c, jid)
		check(r["status"] == "cancelled", "job %r" % r)
		check(r["result"]["status"] == "cancelled" and
		    r["result"]["source-status"] == "running", "result %r" % r)
		mig = c.cmd("vm-execute", {"vm": "src", "command":
		    "query-migrate"})
		check(mig["status"] == "cancelled", "QEMU says %r" % mig)
		check(status(c, "src") == "running", "source not running")
		wait_ticks_after(src, last_tick(src))
		env.finish()


def test_postcopy():
	"""postcopy: vm-migrate-postcopy switches a slow precopy; paused
	(vm-migrate-pause) and recovered (vm-migrate-recover: migrate-recover
	on the destination, migrate resume on the source), it completes: the
	destination runs the guest, the source is left in postmigrate."""
	with qb.Env("mig-postcopy") as env:
		src, dst = src_guest(env), dst_guest(env)
		c = env.d.client()
		c.cmd("subscribe", {"events": ["JOB_STATUS_CHANGE"]})
		add(c, src, dst)
		wait_ticks_after(src, 0, 1)
		jid = slow_migration(env, c, {"postcopy": True})
		caps = c.cmd("vm-execute", {"vm": "dst", "command":
		    "query-migrate-capabilities"})
		check({"capability": "postcopy-ram", "state": True} in caps,
		    "destination lacks postcopy-ram: %r" % caps)
		_, d = c.cmd_error("vm-migrate-recover", {"vm": "src"})
		check("not in postcopy" in d, d)
		c.cmd("vm-migrate-postcopy", {"vm": "src"})
		progress_event(c, jid, lambda p: p["status"] ==
		    "postcopy-active")
		_, d = c.cmd_error("vm-migrate-recover", {"vm": "src"})
		check("not postcopy-paused" in d, d)

		# the stream breaks (migrate-pause, out of band): both ends
		# wait in postcopy-paused, the job runs on. QEMU 7.2 fails a
		# destination that breaks while it loads the device state:
		# the broker pauses only once it runs the guest.
		qb.wait_for(lambda: status(c, "dst") == "running",
		    "destination running")
		c.cmd("vm-migrate-pause", {"vm": "src"})
		progress_event(c, jid, lambda p: p["status"] ==
		    "postcopy-paused")
		qb.wait_for(lambda: c.cmd("vm-execute", {"vm": "dst", "command":
		    "query-migrate"}).get("status") == "postcopy-paused",
		    "destination postcopy-paused")
		check(c.cmd("query-jobs", {"id": jid})[0]["status"] ==
		    "running", "job not running while paused")
		_, d = c.cmd_error("vm-migrate-pause", {"vm": "src"})
		check("not postcopy-active" in d, d)
		_, d = c.cmd_error("vm-migrate-recover", {"vm": "src", "uri":
		    "exec:true"})
		check("not allowed" in d, d)
		# postcopy at 1 MB/s would still take minutes: lift the cap
		c.cmd("vm-execute", {"vm": "src", "command":
		    "migrate-set-parameters", "arguments": {"max-postcopy-bandwidth":
		    0, "max-bandwidth": 1 << 30}})
		# migrate-recover on dst (a new listener on the job's socket),
		# migrate resume on src
		c.cmd("vm-migrate-recover", {"vm": "src"})
		r = job_end(c, jid)
		check(r.get("result", {}).get("recovered") == 1, "job %r" % r)
		check_moved(src, dst, r, c)
		env.finish()


def test_quit_source():
	"""quit-source: the source QEMU exits once the guest has moved."""
	with qb.Env("mig-quit") as env:
		src, dst = src_guest(env), dst_guest(env)
		c = env.d.client()
		c.cmd("subscribe", {"events": ["JOB_STATUS_CHANGE"]})
		add(c, src, dst)
		jid = c.cmd("vm-migrate", {"vm": "src", "to": "dst",
		    "quit-source": True})["job"]
		r = job_end(c, jid)
		check(r["status"] == "concluded" and
		    r["result"]["source-status"] == "quit", "job %r" % r)
		src.wait()
		env.finish()


def test_bad_input():
	"""Each refusal is clear and leaves the source running."""
	with qb.Env("mig-bad") as env:
		src, dst = src_guest(env), dst_guest(env)
		other = qb.Qemu(env.h, env.h.path("plain.qmp"))
		c = env.d.client()
		c.cmd("subscribe", {"events": ["JOB_STATUS_CHANGE"]})
		add(c, src, dst)
		c.cmd("vm-add", {"name": "plain", "socket": other.path})
		qb.wait_vm_state(c, "plain", "ready")

		_, d = c.cmd_error("vm-migrate", {"vm": "src", "to": "src"})
		check("itself" in d, d)
		_, d = c.cmd_error("vm-migrate", {"vm": "src"})
		check("'to'" in d and "'uri'" in d, d)
		_, d = c.cmd_error("vm-migrate", {"vm": "src", "uri":
		    "exec:cat > /tmp/x"})
		check("not allowed" in d, d)
		_, d = c.cmd_error("vm-migrate", {"vm": "src", "to": "nope"})
		check("unknown VM 'nope'" in d, d)
		_, d = c.cmd_error("vm-migrate", {"vm": "src", "to": "dst",
		    "capabilities": {"events": False}})
		check("events" in d, d)
		_, d = c.cmd_error("vm-migrate", {"vm": "src", "to": "dst",
		    "bandwidth": -1})
		check("negative" in d, d)

		# a destination not started with -incoming defer: the job
		# fails before anything is sent
		jid = c.cmd("vm-migrate", {"vm": "src", "to": "plain"})["job"]
		r = job_end(c, jid)
		check(r["status"] == "failed" and "-incoming defer" in
		    r["error"]["desc"], "job %r" % r)
		check(status(c, "src") == "running", "source not running")

		# twice at once, and hotplug on either end meanwhile
		jid = slow_migration(env, c)
		_, d = c.cmd_error("vm-migrate", {"vm": "src", "to": "dst"})
		check("busy" in d or "already" in d, d)
		_, d = c.cmd_error("vm-migrate", {"vm": "plain", "to": "dst"})
		check("already an end of migration job %d" % jid in d, d)
		for vm in ("src", "dst"):
			_, d = c.cmd_error("disk-add", {"vm": vm, "id": "d0",
			    "source": "/nonexistent"})
			check("migration job %d" % jid in d, d)
			_, d = c.cmd_error("nic-del", {"vm": vm, "id": "n0"})
			check("migration job %d" % jid in d, d)
		_, d = c.cmd_error("vm-migrate-postcopy", {"vm": "src"})
		check("not started with postcopy" in d, d)

		# the destination dies mid-migration
		dst.kill()
		r = job_end(c, jid)
		check(r["status"] == "failed" and "'dst'" in r["error"]["desc"]
		    and "went away" in r["error"]["desc"] and
		    "'src' is running" in r["error"]["desc"], "job %r" % r)
		check(status(c, "src") == "running", "source not running")
		wait_ticks_after(src, last_tick(src))
		env.finish()


if __name__ == "__main__":
	qb.main([test_unix_default, test_tcp_loopback, test_uri_only,
	    test_cancel, test_postcopy, test_quit_source, test_bad_input])
