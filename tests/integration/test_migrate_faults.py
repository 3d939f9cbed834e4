#!/usr/bin/env python3
"""vm-migrate against fake-qemu, the cases kept out of the valgrind phase
(test_migrate_fake.py is in it): the broker killed with SIGKILL
mid-migration and started again on the same state dir, where the
migration journal (STATE_DIR/migrate/SRC/job.json) is reconciled from
query-migrate on both ends; an operator's URI that the policy's guard
refuses; postcopy paused and recovered, a recovery QEMU refuses, and a
destination that dies while paused.
"""

import json
import os
import signal

import qb
from qb import check
from test_migrate_fake import setup, status, progress, job_end


def postcopy_paused(env, c, src, dst):
	"""A postcopy job src -> dst at 1 MB/s, switched, then paused."""
	c.cmd("subscribe", {"vms": ["dst"], "events": ["RESUME"]})
	jid = c.cmd("vm-migrate", {"vm": "src", "to": "dst", "postcopy": True,
	    "bandwidth": 1 << 20})["job"]
	progress(c, jid, lambda p: p is not None and
	    p.get("transferred", 0) > 0)
	_, d = c.cmd_error("vm-migrate-pause", {"vm": "src"})
	check("not in postcopy" in d, d)
	c.cmd("vm-migrate-postcopy", {"vm": "src"})
	c.wait_event(lambda e: e.get("event") == "RESUME" and
	    e.get("vm") == "dst", what="RESUME")
	c.cmd("vm-migrate-pause", {"vm": "src"})
	progress(c, jid, lambda p: p is not None and
	    p["status"] == "postcopy-paused")
	qb.wait_for(lambda: c.cmd("vm-execute", {"vm": "dst", "command":
	    "query-migrate"})["status"] == "postcopy-paused", "dst paused")
	return jid


def test_postcopy_recover():
	"""Paused, a recovery QEMU refuses leaves the job paused; the next
	one completes it."""
	with qb.Env("migf-pcr") as env:
		src, dst, c = setup(env)
		jid = postcopy_paused(env, c, src, dst)
		_, d = c.cmd_error("vm-migrate-recover", {"vm": "src", "uri":
		    "unix:" + env.h.path("no", "r.sock")})
		check("Failed to bind" in d, d)
		check(c.cmd("query-jobs", {"id": jid})[0]["status"] ==
		    "running", "job ended")
		c.cmd("vm-execute", {"vm": "src", "command":
		    "migrate-set-parameters", "arguments": {"max-bandwidth":
		    1 << 30}})
		c.cmd("vm-migrate-recover", {"vm": "src"})
		r = job_end(c, jid)
		res = r.get("result", {})
		check(r["status"] == "concluded" and res["recovered"] == 1 and
		    res["destination-status"] == "running" and
		    res["source-status"] == "postmigrate", "job %r" % r)
		env.finish()


def test_postcopy_dst_dies():
	"""The destination dies while postcopy is paused: the guest's state
	is lost, the job fails at once and says so."""
	with qb.Env("migf-pcd") as env:
		src, dst, c = setup(env)
		jid = postcopy_paused(env, c, src, dst)
		dst.kill()
		r = job_end(c, jid)
		d = r.get("error", {}).get("desc", "")
		check(r["status"] == "failed" and "went away during postcopy" in
		    d and "postcopy-paused" in d, "job %r" % r)
		env.finish()


def test_uri_policy():
	"""An operator (policy role, another uid) may not send the stream to
	a unix socket outside the allowed dirs, nor to exec: (the guard of
	QEMU's own migrate); nothing starts, the source runs."""
	import test_policy
	nobody, _ = test_policy.tenants()
	with qb.Env("migf-pol", daemon=False) as env:
		os.makedirs(env.h.path("ok"))
		test_policy.start_with_policy(env, "role operator uid nobody "
		    "vm '*'\nallow-dir %s\n" % env.h.path("ok"), nobody)
		test_policy.open_to_all(env)
		src, dst, c = setup(env)
		reps = test_policy.tenant_run("nobody", "nogroup", env.d.control,
		    [["a", "vm-migrate", {"vm": "src", "to": "dst", "uri":
		    "unix:/etc/qb-mig.sock"}], ["b", "vm-migrate", {"vm": "src",
		    "uri": "exec:cat >/tmp/qb-mig"}], ["c", "vm-migrate-recover",
		    {"vm": "src", "uri": "unix:/etc/qb-mig.sock"}]])
		for i, want in (("a", "outside the allowed dirs"), ("b",
		    "migration URI 'exec:"), ("c", "outside the allowed dirs")):
			test_policy.refused(reps[i], i)
			check(want in reps[i]["error"]["desc"], "%s: %r" %
			    (i, reps[i]))
		check(c.cmd("query-jobs") == [], "a job started")
		check(status(c, "src") == "running", "source state")
		env.finish()


def journal_step(d):
	try:
		with open(os.path.join(d.state_dir, "migrate", "src",
		    "job.json")) as f:
			return json.load(f).get("step")
	except (OSError, ValueError):
		return None


def kill_restart(env, step):
	"""SIGKILL the broker once its journal says step, then start it
	again on the same state dir; returns a client of the new one."""
	first = env.d
	qb.wait_for(lambda: journal_step(env.d) == step, "journal at " + step)
	env.d.signal(signal.SIGKILL)
	env.d.wait()
	env.h.close_clients()
	env.d = qb.Daemon(env.h, state_dir=first.state_dir, tag="d2")
	env.d.baseline_fds = first.baseline_fds
	env.d.baseline_kids = first.baseline_kids
	c = env.d.client()
	for n in ("src", "dst"):
		qb.wait_vm_state(c, n, "ready")
	return c


def reconciled_job(c):
	"""The vm-migrate job the restarted broker made of the record, once
	it ended."""
	def ended():
		js = [j for j in c.cmd("query-jobs") if j["kind"] ==
		    "vm-migrate"]
		return js and js[0]["status"] in ("concluded", "failed",
		    "cancelled") and js[0]
	return qb.wait_for(ended, "reconciled job to end", timeout=qb.TIMEOUT * 4)


def test_restart_mid_transfer():
	"""kill -9 mid-transfer: the restarted broker finds QEMU's migration
	still running on both ends (query-migrate), watches it to the end
	and concludes the job; the record and the socket are gone."""
	with qb.Env("migf-rst-run") as env:
		src, dst, c = setup(env)
		jid = c.cmd("vm-migrate", {"vm": "src", "to": "dst",
		    "bandwidth": 1 << 20})["job"]
		progress(c, jid, lambda p: p is not None and
		    p.get("transferred", 0) > 0)
		c = kill_restart(env, "migrate")
		# the new broker's job watches (QEMU said active), then the
		# rest goes fast
		qb.wait_for(lambda: [j for j in c.cmd("query-jobs") if
		    j["status"] == "running" and j.get("progress", {}).get(
		    "status") == "active"], "reconciled job watching")
		c.cmd("vm-execute", {"vm": "src", "command":
		    "migrate-set-parameters", "arguments": {"max-bandwidth":
		    1 << 30}})
		j = reconciled_job(c)
		r = j.get("result", {})
		check(j["status"] == "concluded" and r["status"] == "completed"
		    and r["reconciled"] == {"step": "migrate", "job": jid,
		    "action": "adopted"} and r["destination-status"] ==
		    "running" and r["source-status"] == "postmigrate",
		    "job %r" % j)
		check(journal_step(env.d) is None, "journal record left")
		check(not [f for f in os.listdir(env.d.run_dir)
		    if f.startswith("migrate-")], "migration socket left")
		env.finish()


def test_restart_before_migrate():
	"""kill -9 while migrate-incoming is in flight: migrate never reached
	the source, so the restarted broker takes the job up again (the
	destination, listening already, is not asked twice) to the end."""
	with qb.Env("migf-rst-in") as env:
		src, dst, c = setup(env, dst_faults="once delay-cmd "
		    "migrate-incoming 4000\n")
		c.cmd("vm-migrate", {"vm": "src", "to": "dst"})
		c = kill_restart(env, "incoming")
		j = reconciled_job(c)
		r = j.get("result", {})
		check(j["status"] == "concluded" and r["status"] == "completed"
		    and r["reconciled"]["action"] == "resumed" and
		    r["destination-status"] == "running", "job %r" % j)
		check(status(c, "src") == "postmigrate", "source state")
		check(journal_step(env.d) is None, "journal record left")
		env.finish()


def test_restart_vms_gone():
	"""kill -9, and both QEMUs die before the broker is back: the record's
	job waits for its VMs; job-cancel gives it up and the record goes."""
	with qb.Env("migf-rst-gone") as env:
		src, dst, c = setup(env)
		jid = c.cmd("vm-migrate", {"vm": "src", "to": "dst",
		    "bandwidth": 1 << 20})["job"]
		progress(c, jid, lambda p: p is not None and
		    p.get("transferred", 0) > 0)
		first = env.d
		qb.wait_for(lambda: journal_step(env.d) == "migrate", "journal")
		env.d.signal(signal.SIGKILL)
		env.d.wait()
		env.h.close_clients()
		src.kill()
		dst.kill()
		env.d = qb.Daemon(env.h, state_dir=first.state_dir, tag="d2")
		env.d.baseline_fds = first.baseline_fds
		env.d.baseline_kids = first.baseline_kids
		c = env.d.client()
		j = qb.wait_for(lambda: [j for j in c.cmd("query-jobs") if
		    j["kind"] == "vm-migrate"], "the record's job")[0]
		check(j["status"] == "running", "job %r" % j)
		c.cmd("job-cancel", {"id": j["id"]})
		j = reconciled_job(c)
		check(j["status"] == "cancelled", "job %r" % j)
		check(journal_step(env.d) is None, "journal record left")
		env.finish()


def test_restart_after_failure():
	"""kill -9, then the migration fails in QEMU before the broker is
	back: the restarted broker reports QEMU's outcome, the source
	runs."""
	with qb.Env("migf-rst-fail") as env:
		src, dst, c = setup(env)
		jid = c.cmd("vm-migrate", {"vm": "src", "to": "dst",
		    "bandwidth": 1 << 20})["job"]
		progress(c, jid, lambda p: p is not None and
		    p.get("transferred", 0) > 0)
		first = env.d
		qb.wait_for(lambda: journal_step(env.d) == "migrate", "journal")
		env.d.signal(signal.SIGKILL)
		env.d.wait()
		env.h.close_clients()
		dst.kill()	# the source's writes fail: QEMU says failed
		env.d = qb.Daemon(env.h, state_dir=first.state_dir, tag="d2")
		env.d.baseline_fds = first.baseline_fds
		env.d.baseline_kids = first.baseline_kids
		c = env.d.client()
		qb.wait_vm_state(c, "src", "ready")
		# the destination is gone for good: removing it lets the
		# record's job go on with the source alone
		c.cmd("vm-remove", {"name": "dst"})
		j = reconciled_job(c)
		d = j.get("error", {}).get("desc", "")
		check(j["status"] == "failed" and "'dst'" in d, "job %r" % j)
		check(status(c, "src") == "running", "source not running")
		check(journal_step(env.d) is None, "journal record left")
		env.finish()


if __name__ == "__main__":
	qb.main([test_uri_policy, test_restart_mid_transfer,
	    test_restart_before_migrate, test_restart_vms_gone,
	    test_restart_after_failure,
	    test_postcopy_recover, test_postcopy_dst_dies])
