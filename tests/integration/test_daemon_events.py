#!/usr/bin/env python3
"""Event subscriptions: VM and event globs, several subscriptions with one
delivery, unsubscribe, the event shape; and backpressure: a subscriber
that stops reading loses counted events (EVENTS_DROPPED) while a fast one
loses nothing and the broker keeps answering everyone."""

import json
import select
import threading

import qb
from qb import check, Env


def emit(c, vm, event, data=None):
	args = {"event": event}
	if data is not None:
		args["data"] = data
	c.cmd("vm-execute", {"vm": vm, "command": "x-fake-event",
	    "arguments": args})


def add_fakes(env, c, names, **kw):
	fakes = {}
	for n in names:
		fakes[n] = env.h.fake(n, **kw)
		c.cmd("vm-add", {"name": n, "socket": fakes[n].path})
	for n in names:
		qb.wait_vm_state(c, n, "ready")
	return fakes


def until(c, name, vm):
	"""Events up to and including the first NAME from vm."""
	got = []
	while True:
		e = c.wait_event(what="%s from %s" % (name, vm))
		got.append(e)
		if e.get("event") == name and e.get("vm") == vm:
			return got


def test_filters():
	with Env("filters") as env:
		c = env.d.client()
		add_fakes(env, c, ["a1", "a2", "b1"])
		# Each case: subscriptions, and what they should let through.
		cases = {
			"vm_glob": ([{"vms": ["a*"]}],
			    lambda vm, ev: vm.startswith("a")),
			"event_glob": ([{"events": ["FOO_*"]}],
			    lambda vm, ev: ev.startswith("FOO_")),
			"two_overlapping": ([{"vms": ["a1"]},
			    {"events": ["FOO_*"]}],
			    lambda vm, ev: vm == "a1" or ev.startswith("FOO_")),
			"both": ([{"vms": ["?2", "b1"], "events": ["BAR_*"]}],
			    lambda vm, ev: vm in ("a2", "b1") and
			    ev.startswith("BAR_")),
			"all": ([{}], lambda vm, ev: True),
			"exact": ([{"vms": ["b1"], "events": ["FOO_2"]}],
			    lambda vm, ev: (vm, ev) == ("b1", "FOO_2")),
			"none": ([], lambda vm, ev: False),
		}
		subs = {}
		for key, (specs, _) in cases.items():
			s = env.d.client()
			for spec in specs:
				s.cmd("subscribe", spec)
			subs[key] = s
		# Each x-fake-event is answered after its event reached the
		# broker, so the broker sees them in this order.
		sent = [("a1", "FOO_1"), ("a1", "BAR_1"), ("b1", "FOO_2"),
		    ("a2", "BAR_2"), ("b1", "BAZ_1"), ("a2", "FOO_3"),
		    ("a1", "FOO_4"), ("b1", "BAR_3"), ("b1", "FOO_2")]
		for i, (vm, ev) in enumerate(sent):
			emit(c, vm, ev, {"n": i})
		for key, (_, pred) in cases.items():
			w = [(i, vm, ev) for i, (vm, ev) in enumerate(sent)
			    if pred(vm, ev)]
			s = subs[key]
			got = [s.wait_event(what="%s #%d" % (key, k))
			    for k in range(len(w))]
			# The broker has nothing more for it: a reply asked
			# now comes after anything it queued before.
			s.cmd("query-vms")
			s.poll_msgs()
			check(not s.events, "%s: extra %r" % (key, s.events))
			triples = [(e.get("data", {}).get("n"), e.get("vm"),
			    e.get("event")) for e in got]
			check(sorted(triples) == sorted(w), "%s: got %r, want %r"
			    % (key, triples, w))
			# Per VM, arrival order is kept.
			for vm in ("a1", "a2", "b1"):
				check([t for t in triples if t[1] == vm] ==
				    [t for t in w if t[1] == vm],
				    "%s: order for %s: %r" % (key, vm, triples))
			for e in got:
				ts = e.get("timestamp", {})
				check(isinstance(ts.get("seconds"), int) and
				    isinstance(ts.get("microseconds"), int),
				    "timestamp %r" % e)
		env.finish()


def test_unsubscribe():
	with Env("unsub") as env:
		c = env.d.client()
		add_fakes(env, c, ["a1", "b1"])
		s = env.d.client()
		keep = s.cmd("subscribe", {"vms": ["a1"]})
		drop = s.cmd("subscribe", {"vms": ["b1"]})
		emit(c, "b1", "ONE")
		emit(c, "a1", "MARK1")
		got = until(s, "MARK1", "a1")
		check([e["event"] for e in got] == ["ONE", "MARK1"], repr(got))
		s.cmd("unsubscribe", drop)
		emit(c, "b1", "TWO")
		emit(c, "a1", "MARK2")
		got = until(s, "MARK2", "a1")
		check([e["event"] for e in got] == ["MARK2"],
		    "after unsubscribe: %r" % got)
		s.cmd("unsubscribe", keep)
		emit(c, "a1", "THREE")
		# Subscribe another client to know THREE went through.
		w = env.d.client()
		w.cmd("subscribe", {"vms": ["a1"]})
		emit(c, "a1", "MARK3")
		w.wait_event("MARK3")
		s.cmd("query-vms")
		s.poll_msgs()
		check(not s.events, "events after the last unsubscribe: %r" %
		    s.events)
		env.finish()


def gaps(seqs):
	return sum(b - a - 1 for a, b in zip(seqs, seqs[1:]))


def read_accounted(next_event, past, event="FAKE_TICK", seqs=None):
	"""Reads ticks and EVENTS_DROPPED until a tick past 'past' came and
	every hole in the ticks is accounted for by the drop counts.
	'seqs' holds the ticks already read, if any: a drop reported later
	may be of the ticks right after them. Returns (seqs, dropped)."""
	seqs, dropped = list(seqs or []), 0
	deadline = qb.time.monotonic() + qb.TIMEOUT * 4
	while not (seqs and seqs[-1] > past and gaps(seqs) == dropped):
		check(qb.time.monotonic() < deadline, "lost %d, counted %d" %
		    (gaps(seqs), dropped))
		e = next_event()
		if e.get("event") == event:
			check(not seqs or e["data"]["seq"] > seqs[-1],
			    "out of order: %r after %r" % (e, seqs[-1:]))
			seqs.append(e["data"]["seq"])
			continue
		check(e.get("event") == "EVENTS_DROPPED", repr(e))
		n = e.get("data", {}).get("count")
		check(isinstance(n, int) and n > 0, repr(e))
		check("vm" not in e, "EVENTS_DROPPED has a vm: %r" % e)
		dropped += n
	return seqs, dropped


class Reader(threading.Thread):
	"""Reads a subscriber as fast as it can (read_accounted)."""

	def __init__(self, c, first, past):
		threading.Thread.__init__(self, daemon=True)
		self.c = c
		self.first = first
		self.past = past
		self.result = None
		self.error = None

	def next_event(self):
		# what wait_event read past 'first' comes first, in order
		if self.c.events:
			return self.c.events.pop(0)
		return self.c.recv_msg()

	def run(self):
		try:
			self.result = read_accounted(self.next_event, self.past,
			    seqs=[self.first])
		except Exception as e:
			self.error = e


def test_flood_accounting():
	"""Under fake-qemu's flood, a subscriber that does not read has its
	events dropped and counted (EVENTS_DROPPED), never its replies; a
	reading one too loses only what it is told it lost; the controller
	is answered all along."""
	with Env("flood", args=["--client-queue-max", "65536"]) as env:
		c = env.d.client()
		add_fakes(env, c, ["f1"], faults="flood 2000\n")
		slow = qb.Qmp(env.d.control, rcvbuf=4096)
		env.h.closers.append(slow)
		slow.negotiate()
		slow.cmd("subscribe", {"events": ["FAKE_TICK"]})
		fast = env.d.client()
		fast.cmd("subscribe", {"events": ["FAKE_TICK"]})
		# Far more than the queue limit and socket buffers hold.
		start = fast.wait_event("FAKE_TICK")["data"]["seq"]
		target = start + 10000
		# The ticks after 'start' (and drops of them) count from
		# 'start' on: under a slow daemon (valgrind) a drop may come
		# before the reader's first read.
		r = Reader(fast, start, target)
		r.start()
		for _ in range(10):
			c.cmd("query-vms")
		r.join(qb.TIMEOUT * 5)
		check(not r.is_alive(), "reader stuck")
		check(r.error is None, "reader: %r" % r.error)
		# What the slow one read so far came with its subscribe's
		# reply (events the log had not yet handed out when it
		# subscribed go to every subscriber of that moment); they stay
		# queued in slow.events, first in line for read_accounted.
		check(all(e.get("event") == "FAKE_TICK" for e in slow.events),
		    "slow client's early events: %r" % slow.events[:3])
		# Now the slow one reads: a reply it asks for comes back, and
		# its holes are all counted.
		i = slow.send_cmd("query-vms")
		check("return" in slow.wait_reply(i), "slow client's reply")
		seqs, dropped = read_accounted(lambda: slow.wait_event(
		    what="FAKE_TICK or EVENTS_DROPPED"), target)
		check(dropped > 0, "nothing dropped")
		c.cmd("vm-remove", {"name": "f1"})
		env.finish()


def test_fast_loses_nothing():
	"""Events in bursts the reading subscriber can hold, paced by it: it
	gets every one, in order, with no EVENTS_DROPPED, while one that does
	not read loses most of them and is told exactly how many."""
	with Env("fastslow", args=["--client-queue-max", "65536"]) as env:
		c = env.d.client()
		add_fakes(env, c, ["f1"])
		slow = qb.Qmp(env.d.control, rcvbuf=4096)
		env.h.closers.append(slow)
		slow.negotiate()
		slow.cmd("subscribe", {"events": ["BURST"]})
		fast = env.d.client()
		fast.cmd("subscribe", {"events": ["BURST", "EVENTS_*"]})
		burst, nbursts = 200, 25
		for b in range(nbursts):
			ids = [c.send_cmd("vm-execute", {"vm": "f1",
			    "command": "x-fake-event", "arguments": {
			    "event": "BURST", "data": {"seq": b * burst + i}}})
			    for i in range(burst)]
			for i in ids:
				check("return" in c.wait_reply(i), "x-fake-event")
			for i in range(burst):
				e = fast.wait_event()
				check(e["event"] == "BURST" and e["data"]["seq"] ==
				    b * burst + i, "fast got %r, want seq %d" %
				    (e, b * burst + i))
		total = burst * nbursts
		i = slow.send_cmd("query-vms")
		check("return" in slow.wait_reply(i), "slow client's reply")
		seqs, dropped = [], 0
		deadline = qb.time.monotonic() + qb.TIMEOUT
		while len(seqs) + dropped < total:
			check(qb.time.monotonic() < deadline, "slow: %d got, %d "
			    "counted of %d" % (len(seqs), dropped, total))
			e = slow.wait_event()
			if e["event"] == "BURST":
				check(not seqs or e["data"]["seq"] > seqs[-1],
				    "out of order")
				seqs.append(e["data"]["seq"])
			else:
				check(e["event"] == "EVENTS_DROPPED", repr(e))
				dropped += e["data"]["count"]
		check(len(seqs) + dropped == total and dropped > 0,
		    "slow: %d got + %d counted != %d" % (len(seqs), dropped,
		    total))
		fast.cmd("query-vms")
		fast.poll_msgs()
		check(not fast.events, "fast got more: %r" % fast.events[:3])
		env.finish()


def test_reply_stall():
	"""A client that stops reading its replies is eventually hung up on,
	and the broker goes on serving the others."""
	with Env("stall", args=["--client-queue-max", "65536",
	    "--reply-stall-ms", "500"]) as env:
		c = env.d.client()
		s = qb.Qmp(env.d.control, rcvbuf=4096)
		env.h.closers.append(s)
		s.negotiate()
		# Pile up requests without reading a reply: enough for the
		# replies to fill the socket buffers and the broker's queue
		# past the point where it stops reading us (8 MiB).
		one = len(json.dumps(s.execute("query-commands")))
		need = (16 << 20) // one
		batch = b"".join(b'{"execute": "query-commands", "id": %d}\r\n'
		    % i for i in range(500))
		s.sock.setblocking(False)
		pending, sent = b"", 0
		while sent < need:
			if not pending:
				pending = batch
				sent += 500
			_, w, _ = select.select([], [s.sock], [], qb.TIMEOUT / 10)
			if not w:
				break		# it stopped reading us
			try:
				pending = pending[s.sock.send(pending):]
			except BlockingIOError:
				pass
			except (BrokenPipeError, ConnectionResetError):
				break
		# Not reading on: the broker hangs up (its fd goes).
		base = len(env.d.baseline_fds)
		qb.wait_for(lambda: qb.fd_count(env.d.pid) == base + 1,
		    "the stalled client to be dropped")
		s.wait_closed()
		check(isinstance(c.cmd("query-vms"), list), "broker stuck")
		env.finish()


qb.main([test_filters, test_unsubscribe, test_flood_accounting,
    test_fast_loses_nothing, test_reply_stall])
