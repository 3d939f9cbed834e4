#!/usr/bin/env python3
"""The event log (issue 13, parts 1 and 2): every delivered event has
seq and epoch; a subscriber that comes back with "since" gets exactly
what it missed, with no gap and no duplicate at the seam, while events
keep flowing; a kill -9 of the broker loses nothing a subscriber saw and
seq goes on; a wrong epoch or a seq the log no longer holds gives
EVENTS_LOST first; a "since" in the future is an error; a full disk
stops the disk log with EVENT_LOG_FULL and the broker keeps serving."""

import json
import os
import select
import signal
import subprocess
import time

import qb
from qb import check, Env

FLOOD = "flood 2000\n"	# FAKE_TICK per second while the broker is connected


def add_vm(env, c, name, faults=None):
	f = env.h.fake(name, faults=faults)
	c.cmd("vm-add", {"name": name, "socket": f.path})
	qb.wait_vm_state(c, name, "ready")
	return f


def next_event(c, what="an event"):
	return c.wait_event(what=what)


def read_until_seq(c, seq, got, also=None):
	"""Appends c's events to got until one has seq >= seq; also (a
	client) is read meanwhile, so its queue never fills."""
	while True:
		if also is not None:
			also.poll_msgs()
		e = next_event(c, "seq %d" % seq)
		got.append(e)
		if e.get("seq", 0) >= seq:
			return got


def check_run(events, first, epoch):
	"""events carry seq first, first + 1, ... and the epoch."""
	want = first
	for e in events:
		check(e.get("epoch") == epoch, "epoch %r, want %r: %r" %
		    (e.get("epoch"), epoch, e))
		check(e.get("seq") == want, "seq %r, want %d (gap or "
		    "duplicate): %r" % (e.get("seq"), want, e))
		want += 1


def test_seq_and_query():
	with Env("evlog-q") as env:
		c = env.d.client()
		s = env.d.client()
		s.cmd("subscribe")
		add_vm(env, c, "v1")
		for i in range(5):
			c.cmd("vm-execute", {"vm": "v1", "command": "x-fake-event",
			    "arguments": {"event": "EV_%d" % i}})
		got = []
		while len([e for e in got if e["event"].startswith("EV_")]) < 5:
			got.append(next_event(s))
		q = c.cmd("query-event-log")
		for k in ("epoch", "first", "last", "bytes", "segments"):
			check(k in q, "query-event-log lacks %s: %r" % (k, q))
		check(q["first"] == 1, "first %r" % q)
		check_run(got, got[0]["seq"], q["epoch"])
		check(got[-1]["seq"] == q["last"], "last %r, saw %r" %
		    (q["last"], got[-1]["seq"]))
		check(q["segments"] >= 1 and q["bytes"] > 0, "nothing on disk: "
		    "%r" % q)
		seg = os.path.join(env.d.state_dir, "events",
		    "%020d.seg" % 1)
		check(os.path.getsize(seg) == q["bytes"], "segment size %d, "
		    "query says %d" % (os.path.getsize(seg), q["bytes"]))
		# since in the future: an error that says so
		cls, desc = s.cmd_error("subscribe", {"since": q["last"] + 100})
		check("future" in desc, desc)
		cls, desc = s.cmd_error("subscribe", {"since": -1})
		cls, desc = s.cmd_error("subscribe", {"since": "x"})
		cls, desc = s.cmd_error("subscribe", {"epoch": q["epoch"]})
		cls, desc = s.cmd_error("subscribe", {"since": 1, "epoch": 5})
		env.finish()


def test_resume_under_load():
	"""A subscriber leaves and comes back with since while a VM floods:
	it gets exactly the events a subscriber that never left got, and
	nothing twice, across the seam between replay and live."""
	# A small queue: the replay pauses for the client to drain many
	# times, so live events arrive while it runs.
	with Env("evlog-load", args=["--event-log-memory=64K",
	    "--client-queue-max", "256K"]) as env:
		c = env.d.client()
		ref = env.d.client(negotiate=False)
		ref.sock.setsockopt(__import__("socket").SOL_SOCKET,
		    __import__("socket").SO_RCVBUF, 1 << 20)
		ref.negotiate()
		ref.cmd("subscribe")
		add_vm(env, c, "flood", faults="flood 1000\n")
		a = env.d.client()
		a.cmd("subscribe")
		got_a = []
		for _ in range(200):
			ref.poll_msgs()
			got_a.append(next_event(a))
		epoch = got_a[0]["epoch"]
		check_run(got_a, got_a[0]["seq"], epoch)
		last = got_a[-1]["seq"]
		a.close()
		# away for a while: more than the 64K memory ring holds, so
		# the replay starts from the segment files
		until = time.monotonic() + 4
		while time.monotonic() < until:
			ref.poll_msgs()
			time.sleep(0.01)
		b = env.d.client()
		b.cmd("subscribe", {"since": last, "epoch": epoch})
		q = c.cmd("query-event-log")
		target = q["last"] + 2000	# well past the seam, live
		got_b = read_until_seq(b, target, [], also=ref)
		check(not any(e["event"] in ("EVENTS_LOST", "EVENTS_DROPPED")
		    for e in got_b), "lost or dropped: %r" % [e for e in got_b
		    if e["event"].startswith("EVENTS_")][:3])
		check_run(got_b, last + 1, epoch)
		# the same events, byte for byte, as the one that stayed
		got_ref = read_until_seq(ref, target, [])
		check(not any(e["event"] == "EVENTS_DROPPED" for e in
		    ref.events + got_ref), "the reference dropped events")
		by_seq = dict((e["seq"], e) for e in got_ref)
		for e in got_b:
			check(by_seq.get(e["seq"]) == e, "seq %d differs: %r vs %r"
			    % (e["seq"], e, by_seq.get(e["seq"])))
		# and FAKE_TICK's own counter runs on without a hole
		ticks = [e["data"]["seq"] for e in got_b
		    if e["event"] == "FAKE_TICK"]
		check(ticks == list(range(ticks[0], ticks[0] + len(ticks))),
		    "FAKE_TICK counter has a hole")
		c.cmd("vm-remove", {"name": "flood"})
		env.finish()


def test_filtered_replay():
	"""since with filters: only matching events, in order."""
	with Env("evlog-filter") as env:
		c = env.d.client()
		add_vm(env, c, "a")
		add_vm(env, c, "b")
		q0 = c.cmd("query-event-log")
		for i in range(20):
			c.cmd("vm-execute", {"vm": "ab"[i % 2], "command":
			    "x-fake-event", "arguments": {"event": "EV_%d" % i}})
		s = env.d.client()
		s.cmd("subscribe", {"since": q0["last"], "vms": ["b"],
		    "events": ["EV_*"]})
		got = [next_event(s) for _ in range(10)]
		check([e["event"] for e in got] == ["EV_%d" % i
		    for i in range(1, 20, 2)], "got %r" % [e["event"]
		    for e in got])
		check(all(e["vm"] == "b" for e in got), "other VM")
		seqs = [e["seq"] for e in got]
		check(seqs == sorted(seqs) and len(set(seqs)) == 10, "order")
		# live after the replay, same filter
		c.cmd("vm-execute", {"vm": "b", "command": "x-fake-event",
		    "arguments": {"event": "EV_LIVE"}})
		c.cmd("vm-execute", {"vm": "a", "command": "x-fake-event",
		    "arguments": {"event": "EV_LIVE"}})
		e = next_event(s)
		check(e["event"] == "EV_LIVE" and e["vm"] == "b" and
		    e["seq"] > seqs[-1], "live: %r" % e)
		env.finish()


def test_kill9_restart():
	"""kill -9 under load: every event a subscriber saw is in the log
	after the restart, same epoch, and seq goes on from there."""
	h = qb.Harness("evlog-k9")
	try:
		d = h.daemon()
		c = d.client()
		s = d.client()
		s.cmd("subscribe")
		f = h.fake("flood", faults=FLOOD)
		c.cmd("vm-add", {"name": "flood", "socket": f.path})
		seen = [next_event(s) for _ in range(500)]
		epoch = seen[0]["epoch"]
		d.signal(signal.SIGKILL)
		d.wait()
		# whatever was still queued to s counts as seen too
		try:
			while True:
				seen.append(next_event(s))
		except (qb.Closed, qb.Failure):
			pass
		h.close_clients()
		d.start()
		c = d.client()
		q = c.cmd("query-event-log")
		check(q["epoch"] == epoch, "epoch changed on kill -9: %r -> %r"
		    % (epoch, q["epoch"]))
		check(q["last"] >= seen[-1]["seq"], "a seen event is not in the "
		    "log: last %d, saw %d" % (q["last"], seen[-1]["seq"]))
		r = d.client()
		r.cmd("subscribe", {"since": 0, "epoch": epoch})
		got = read_until_seq(r, seen[-1]["seq"], [])
		check_run(got, 1, epoch)
		by_seq = dict((e["seq"], e) for e in got)
		for e in seen:
			check(by_seq.get(e["seq"]) == e, "seq %d differs after "
			    "the restart: %r vs %r" % (e["seq"], e,
			    by_seq.get(e["seq"])))
		# new events go on from the last one logged
		c.cmd("vm-execute", {"vm": "flood", "command": "x-fake-event",
		    "arguments": {"event": "AFTER"}})
		rest = []
		while not rest or rest[-1]["event"] != "AFTER":
			rest.append(next_event(r))
		check_run(got + rest, 1, epoch)
		c.cmd("vm-remove", {"name": "flood"})
		d.terminate()
	finally:
		h.cleanup()


def test_lost():
	"""A wrong epoch, or a seq the caps deleted: EVENTS_LOST first,
	then every event still held."""
	with Env("evlog-lost", args=["--event-log-memory", "4K",
	    "--event-log-segment-size", "4K", "--event-log-max-size",
	    "12K"]) as env:
		c = env.d.client()
		add_vm(env, c, "v")
		for i in range(300):
			c.cmd("vm-execute", {"vm": "v", "command": "x-fake-event",
			    "arguments": {"event": "EV", "data": {"i": i}}})
		q = c.cmd("query-event-log")
		check(q["first"] > 1, "nothing deleted by the caps: %r" % q)
		check(q["bytes"] <= 12 * 1024 + 4096, "size cap: %r" % q)
		s = env.d.client()
		s.cmd("subscribe", {"since": 0, "epoch": q["epoch"]})
		e = next_event(s)
		# the caps act as batches are written: "first" may have moved
		# on since the query
		check(e["event"] == "EVENTS_LOST" and e["data"]["from"] == 1 and
		    e["data"]["to"] >= q["first"] - 1, "too old: %r" % e)
		got = read_until_seq(s, q["last"], [])
		check_run(got, e["data"]["to"] + 1, q["epoch"])
		w = env.d.client()
		w.cmd("subscribe", {"since": 5, "epoch": "0123456789abcdef"})
		e = next_event(w)
		check(e["event"] == "EVENTS_LOST" and e["data"]["reason"] ==
		    "epoch" and e["data"]["old-epoch"] == "0123456789abcdef" and
		    e["data"]["to"] >= q["first"] - 1, "wrong epoch: %r" % e)
		got = read_until_seq(w, q["last"], [])
		check_run(got, e["data"]["to"] + 1, q["epoch"])
		env.finish()


def test_dropped_range():
	"""EVENTS_DROPPED says which seqs a slow subscriber missed, and a
	replay of that range gives exactly those."""
	with Env("evlog-drop", args=["--client-queue-max", "4K"]) as env:
		c = env.d.client()
		slow = env.d.client(negotiate=False)
		slow.sock.setsockopt(__import__("socket").SOL_SOCKET,
		    __import__("socket").SO_RCVBUF, 4096)
		slow.negotiate()
		slow.cmd("subscribe", {"events": ["EV"]})
		add_vm(env, c, "v")
		# More than the kernel holds for slow (its receive buffer and
		# the broker's send buffer, ~200 KiB) on top of the 4K queue,
		# however fast the commands are answered: drops are certain.
		for i in range(1500):
			c.send_cmd("vm-execute", {"vm": "v", "command":
			    "x-fake-event", "arguments": {"event": "EV",
			    "data": {"pad": "x" * 500}}})
		c.cmd("query-event-log")
		got = []
		while True:
			e = next_event(slow, "EVENTS_DROPPED")
			got.append(e)
			if e["event"] == "EVENTS_DROPPED":
				break
		d = e["data"]
		check(d["count"] > 0 and d["from"] <= d["to"], "dropped: %r" % d)
		held = set(x["seq"] for x in got if "seq" in x)
		r = env.d.client()
		r.cmd("subscribe", {"since": d["from"] - 1, "events": ["EV"]})
		again = read_until_seq(r, d["to"], [])
		missed = [x["seq"] for x in again if x["seq"] not in held]
		check(len(missed) == d["count"], "replayed %d missed events, "
		    "EVENTS_DROPPED said %d" % (len(missed), d["count"]))
		env.finish()


def test_full_disk():
	"""STATE_DIR/events on a tiny tmpfs: EVENT_LOG_FULL, a loud log
	line, the broker keeps serving and numbering events."""
	if os.geteuid() != 0:
		raise qb.Skip("mounting a tmpfs needs root")
	h = qb.Harness("evlog-full")
	state = h.path("state")
	mnt = os.path.join(state, "events")
	os.makedirs(mnt)
	r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs",
	    mnt], capture_output=True)
	if r.returncode != 0:
		h.cleanup()
		raise qb.Skip("cannot mount a tmpfs: %s" % r.stderr.decode())
	try:
		d = h.daemon(state_dir=state)
		c = d.client()
		s = d.client()
		s.cmd("subscribe")
		f = h.fake("v")
		c.cmd("vm-add", {"name": "v", "socket": f.path})
		qb.wait_vm_state(c, "v", "ready")
		for i in range(1000):
			c.send_cmd("vm-execute", {"vm": "v", "command":
			    "x-fake-event", "arguments": {"event": "EV",
			    "data": {"pad": "y" * 100}}})
		full = s.wait_event("EVENT_LOG_FULL")
		check("space" in full["data"]["reason"].lower(), "reason: %r" %
		    full)
		check("stopped" in d.output(), "no loud log line")
		q = c.cmd("query-event-log")
		check(q["disk-stopped"] is True, "query: %r" % q)
		# still serving, still numbering
		c.cmd("vm-execute", {"vm": "v", "command": "x-fake-event",
		    "arguments": {"event": "AFTER_FULL"}})
		e = s.wait_event("AFTER_FULL")
		check(e["seq"] > full["seq"], "seq: %r" % e)
		check(c.cmd("query-event-log")["last"] == e["seq"], "last")
		c.cmd("vm-remove", {"name": "v"})
		h.close_clients()
		d.terminate()
		# the log on disk no longer holds every seq: a new epoch
		d.start()
		c = d.client()
		q2 = c.cmd("query-event-log")
		check(q2["epoch"] != full["epoch"], "same epoch after a stopped "
		    "disk log: %r" % q2)
		h.close_clients()
		d.terminate()
	finally:
		h.close_clients()
		for p in reversed(h.procs):
			p.kill()
		h.procs = []
		subprocess.run(["umount", "-l", mnt])
		h.cleanup()


def test_qmpctl_since_follow():
	"""qmpctl events --since replays; --follow-from FILE resumes a
	restarted qmpctl right after the last event it printed."""
	with Env("evlog-ctl") as env:
		c = env.d.client()
		add_vm(env, c, "v")
		cursor = env.h.path("cursor")

		def emit(names):
			for n in names:
				c.cmd("vm-execute", {"vm": "v", "command":
				    "x-fake-event", "arguments": {"event": n}})

		def start():
			return subprocess.Popen([qb.program("qmpctl"), "-S",
			    env.d.control, "--json", "events", "--event", "EV_*",
			    "--follow-from", cursor], stdout=subprocess.PIPE,
			    stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)

		bufs = {}

		def read_n(p, n):
			"""n lines of p's stdout, parsed (raw reads: a buffered
			reader would hide lines from select)."""
			out = []
			buf = bufs.get(p, b"")
			while len(out) < n:
				if b"\n" in buf:
					line, buf = buf.split(b"\n", 1)
					out.append(json.loads(line))
					continue
				r, _, _ = select.select([p.stdout], [], [], 30)
				if not r:
					p.kill()
					raise qb.Failure("qmpctl printed %r, then "
					    "nothing" % out)
				data = os.read(p.stdout.fileno(), 65536)
				check(data, "qmpctl ended after %r" % out)
				buf += data
			bufs[p] = buf
			return out

		p = start()
		# streaming once it said so on stderr
		check(b"streaming" in p.stderr.readline(), "no start line")
		emit(["EV_1", "EV_2", "EV_3"])
		got = read_n(p, 3)
		check([e["event"] for e in got] == ["EV_1", "EV_2", "EV_3"],
		    "first run: %r" % got)
		p.send_signal(signal.SIGINT)
		p.wait(timeout=30)
		with open(cursor) as f:
			ep, seq = f.read().split()
		check(ep == got[-1]["epoch"] and int(seq) == got[-1]["seq"],
		    "cursor %s %s, last %r" % (ep, seq, got[-1]))
		emit(["EV_4", "EV_5"])		# while it is down
		p = start()
		got2 = read_n(p, 2)
		emit(["EV_6"])
		got2 += read_n(p, 1)
		check([e["event"] for e in got2] == ["EV_4", "EV_5", "EV_6"],
		    "resumed run: %r" % got2)
		p.send_signal(signal.SIGINT)
		p.wait(timeout=30)
		# --since on its own: the replay after that seq
		r = subprocess.run([qb.program("qmpctl"), "-S", env.d.control,
		    "--json", "-t", "2", "events", "--event", "EV_*", "--since",
		    str(got[0]["seq"])], capture_output=True, timeout=60)
		evs = [json.loads(l)["event"] for l in r.stdout.splitlines()]
		check(evs == ["EV_2", "EV_3", "EV_4", "EV_5", "EV_6"],
		    "--since: %r %s" % (evs, r.stderr))
		r = subprocess.run([qb.program("qmpctl"), "-S", env.d.control,
		    "events", "--since", "999999999"], capture_output=True,
		    timeout=60)
		check(r.returncode == 1 and b"future" in r.stderr,
		    "future since: %r" % (r,))
		env.finish()


if __name__ == "__main__":
	qb.main([test_seq_and_query, test_resume_under_load,
	    test_filtered_replay, test_kill9_restart, test_lost,
	    test_dropped_range, test_full_disk, test_qmpctl_since_follow])
