#!/usr/bin/env python3
"""50 VMs and 20 clients at once on the one loop: every client has
commands in flight to every VM, every reply reaches the right client
under the right id, every subscriber gets every event. Prints the
daemon's RSS."""

import os

import qb
from qb import check, Env

NVMS = int(os.environ.get("QB_SCALE_VMS", "50"))
NCLIENTS = int(os.environ.get("QB_SCALE_CLIENTS", "20"))


def test_many_vms_many_clients():
	with Env("scale") as env:
		rss0 = qb.rss_kib(env.d.pid)
		c = env.d.client()
		names = ["vm%02d" % i for i in range(NVMS)]
		fakes = {n: env.h.fake(n) for n in names}
		for n in names:
			c.cmd("vm-add", {"name": n, "socket": fakes[n].path})
		for n in names:
			qb.wait_vm_state(c, n, "ready")
		clients = [env.d.client() for _ in range(NCLIENTS)]
		for cl in clients:
			cl.cmd("subscribe", {"events": ["SCALE_*"]})
		# Everyone sends to every VM before anyone reads. The same ids
		# on every client: replies must not cross.
		for cl in clients:
			for i, n in enumerate(names):
				cl.send_cmd("vm-execute", {"vm": n,
				    "command": "query-status"}, id=i)
		for k, cl in enumerate(clients):
			n = names[k % NVMS]
			cl.send_cmd("vm-execute", {"vm": n,
			    "command": "x-fake-event", "arguments": {
			    "event": "SCALE_%d" % k, "data": {"from": k}}},
			    id="ev")
		for cl in clients:
			for i in range(NVMS):
				r = cl.wait_reply(i)
				check("return" in r and "running" in r["return"],
				    "reply %d: %r" % (i, r))
			check("return" in cl.wait_reply("ev"), "x-fake-event")
		for cl in clients:
			got = set()
			while len(got) < NCLIENTS:
				e = cl.wait_event()
				k = e["data"]["from"]
				check(e["event"] == "SCALE_%d" % k and
				    e["vm"] == names[k % NVMS], repr(e))
				check(k not in got, "event %d twice" % k)
				got.add(k)
		# Shared sockets: one client on each VM at the same time.
		shared = [env.h.qmp(env.d.vm_socket(n)) for n in names]
		for s in shared:
			s.send_cmd("query-status", id="x")
		for s in shared:
			check("return" in s.wait_reply("x"), "shared reply")
		rss = qb.rss_kib(env.d.pid)
		fds = qb.fd_count(env.d.pid)
		print("# %d VMs, %d control clients, %d shared clients: RSS "
		    "%d KiB (%d KiB at start), %d fds" % (NVMS, NCLIENTS + 1,
		    len(shared), rss, rss0, fds))
		env.finish()


qb.main([test_many_vms_many_clients])
