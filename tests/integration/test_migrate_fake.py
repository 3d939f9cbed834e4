#!/usr/bin/env python3
"""vm-migrate's failure paths, against fake-qemu (tools/fake-qemu/
migrate.c), whose two processes stream a real socket to each other: a
migration that fails half way (fault "migrate-fail"), a destination that
dies, a hotplug in flight, a source that goes away; and the happy path
with its progress events, so the fake's model is checked against the job
too. The same scenarios against real QEMU: test_migrate_qemu.py.
"""

import os

import qb
import hplib
from qb import check


def fake(env, name, faults=None, dst=False):
	p = hplib.fake(env.h, name, faults=None if dst else faults)
	if dst:
		# hplib.fake has no --incoming-defer: restart it with one
		p.kill()
		argv = [qb.program("fake-qemu"), "--socket", p.path,
		    "--incoming-defer"]
		if faults is not None:
			fpath = env.h.path("faults.%d" % env.h.next_seq())
			with open(fpath, "w") as f:
				f.write(faults)
			argv += ["--faults", fpath]
		if os.path.lexists(p.path):
			os.unlink(p.path)
		p = qb.Proc(env.h, argv, "fake-" + name)
		p.path = argv[2]
		qb.wait_for(lambda: not p.alive() or os.path.exists(p.path),
		    "fake-qemu socket")
	return p


def setup(env, src_faults=None, dst_faults=None):
	src = fake(env, "src", faults=src_faults)
	dst = fake(env, "dst", faults=dst_faults, dst=True)
	c = env.d.client()
	c.cmd("subscribe", {"events": ["JOB_STATUS_CHANGE"]})
	for n, p in (("src", src), ("dst", dst)):
		c.cmd("vm-add", {"name": n, "socket": p.path})
		qb.wait_vm_state(c, n, "ready")
	return src, dst, c


def status(c, vm):
	return c.cmd("vm-execute", {"vm": vm, "command": "query-status"})[
	    "status"]


def job_end(c, jid):
	return c.wait_event(lambda e: e.get("event") == "JOB_STATUS_CHANGE" and
	    e["data"]["id"] == jid and e["data"]["status"] in
	    ("concluded", "failed", "cancelled"), what="job end")["data"]


def progress(c, jid, pred):
	return c.wait_event(lambda e: e.get("event") == "JOB_STATUS_CHANGE" and
	    e["data"]["id"] == jid and pred(e["data"].get("progress")),
	    what="progress")["data"]["progress"]


def test_completes():
	with qb.Env("migf-ok") as env:
		src, dst, c = setup(env)
		jid = c.cmd("vm-migrate", {"vm": "src", "to": "dst",
		    "bandwidth": 64 << 20, "downtime-ms": 100})["job"]
		p = progress(c, jid, lambda p: p is not None and
		    p["status"] == "active" and "total" in p)
		check(p["pass"] >= 1 and p["total"] == 16 << 20, "progress %r"
		    % p)
		r = job_end(c, jid)
		check(r["status"] == "concluded" and
		    r["result"]["source-status"] == "postmigrate" and
		    r["result"]["destination-status"] == "running" and
		    r["result"]["ram"]["transferred"] == 16 << 20, "job %r" % r)
		check(status(c, "src") == "postmigrate" and
		    status(c, "dst") == "running", "states")
		env.finish()


def test_fails_half_way():
	"""QEMU fails the migration at 50%: the job fails with QEMU's words
	and the source runs on."""
	with qb.Env("migf-half") as env:
		src, dst, c = setup(env, src_faults="migrate-fail 50\n")
		jid = c.cmd("vm-migrate", {"vm": "src", "to": "dst"})["job"]
		r = job_end(c, jid)
		d = r.get("error", {}).get("desc", "")
		check(r["status"] == "failed" and "injected fault" in d and
		    "'src' is running" in d, "job %r" % r)
		check(status(c, "src") == "running", "source not running")
		env.finish()


def test_destination_dies():
	with qb.Env("migf-dies") as env:
		src, dst, c = setup(env)
		jid = c.cmd("vm-migrate", {"vm": "src", "to": "dst",
		    "bandwidth": 1 << 20})["job"]
		progress(c, jid, lambda p: p is not None and
		    p.get("transferred", 0) > 0)
		dst.kill()
		r = job_end(c, jid)
		d = r.get("error", {}).get("desc", "")
		check(r["status"] == "failed" and "destination VM 'dst' went "
		    "away" in d and "'src' is running" in d, "job %r" % r)
		check(status(c, "src") == "running", "source not running")
		env.finish()


def test_cancel_and_again():
	"""Cancelled once QEMU says so; then the same pair migrates."""
	with qb.Env("migf-cancel") as env:
		src, dst, c = setup(env)
		sock = env.h.path("mig.sock")
		jid = c.cmd("vm-migrate", {"vm": "src", "to": "dst",
		    "uri": "unix:" + sock, "bandwidth": 1 << 20})["job"]
		progress(c, jid, lambda p: p is not None and
		    p.get("transferred", 0) > 0)
		c.cmd("job-cancel", {"id": jid})
		r = job_end(c, jid)
		check(r["status"] == "cancelled" and
		    r["result"]["status"] == "cancelled" and
		    r["result"]["source-status"] == "running", "job %r" % r)
		env.finish()


def test_hotplug_excludes():
	"""A pending unplug refuses migration; a migration refuses hotplug."""
	with qb.Env("migf-hp") as env:
		hplib.need_root_tun()
		src = hplib.fake(env.h, "src", unplug_delay=-1)
		dst = fake(env, "dst", dst=True)
		c = env.d.client()
		c.cmd("subscribe", {"events": ["JOB_STATUS_CHANGE"]})
		for n, p in (("src", src), ("dst", dst)):
			c.cmd("vm-add", {"name": n, "socket": p.path})
			qb.wait_vm_state(c, n, "ready")
		hplib.nic_adds(env, c, "src", 1)
		# one connection: the broker takes nic-del first
		c.send_cmd("nic-del", {"vm": "src", "id": "c0"})
		_, d = c.cmd_error("vm-migrate", {"vm": "src", "to": "dst"})
		check("hotplug operation running" in d, d)
		env.finish()


def test_source_removed():
	with qb.Env("migf-rm") as env:
		src, dst, c = setup(env)
		jid = c.cmd("vm-migrate", {"vm": "src", "to": "dst",
		    "bandwidth": 1 << 20})["job"]
		progress(c, jid, lambda p: p is not None and
		    p.get("transferred", 0) > 0)
		c.cmd("vm-remove", {"name": "src"})
		r = job_end(c, jid)
		check(r["status"] == "failed" and "'src'" in
		    r["error"]["desc"], "job %r" % r)
		env.finish()


if __name__ == "__main__":
	qb.main([test_completes, test_fails_half_way, test_destination_dies,
	    test_cancel_and_again, test_hotplug_excludes, test_source_removed])
