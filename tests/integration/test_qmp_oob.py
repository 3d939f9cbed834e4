#!/usr/bin/env python3
"""Out-of-band execution as QEMU 7.2 offers it, through the broker: the
shared socket greets with its QEMU's capabilities and answers every
qmp_capabilities variant and exec-oob as QEMU does (differentially, same
bytes to a real QEMU); exec-oob goes past an in-band command that is
stuck (fake-qemu's delay fault), on the shared socket and through
vm-execute on the control socket; the control socket runs its
never-waiting commands out of band."""

import json
import socket
import time

import qb
from qb import check, Env

END = b'{"execute": "query-name", "id": "END"}'

NEGOTIATIONS = [
	b'{"execute": "qmp_capabilities", "arguments": {"enable": ["foo"]}, '
	    b'"id": 1}',
	b'{"execute": "qmp_capabilities", "arguments": {"enable": "oob"}, '
	    b'"id": 2}',
	b'{"execute": "qmp_capabilities", "arguments": {"bogus": 1}, "id": 3}',
	b'{"exec-oob": "qmp_capabilities", "id": 4}',
	b'{"exec-oob": "yank", "arguments": {"instances": []}, "id": 5}',
]

# after {"enable": ["oob"]}
WITH_OOB = [
	b'{"exec-oob": "yank", "arguments": {"instances": []}, "id": "y1"}',
	b'{"exec-oob": "yank", "arguments": {"instances": []}}',
	b'{"exec-oob": "yank", "arguments": {"instances": []}, '
	    b'"id": {"any": ["json", 1, null]}}',
	b'{"exec-oob": "query-status", "id": 6}',
	b'{"exec-oob": "no-such-command", "id": 7}',
	b'{"exec-oob": 5, "id": 8}',
	b'{"exec-oob": "yank", "arguments": [], "id": 9}',
	b'{"execute": "query-status", "id": 10}',
	b'{"exec-oob": "qmp_capabilities", "id": 11}',
	b'{"execute": "qmp_capabilities", "arguments": {"enable": ["oob"]}, '
	    b'"id": 12}',
]


def answers(s, buf):
	out = []
	deadline = time.monotonic() + qb.TIMEOUT
	while True:
		while b"\n" in buf:
			line, buf = buf.split(b"\n", 1)
			if not line.strip():
				continue
			msg = json.loads(line)
			if msg.get("id") == "END":
				return out, buf
			if "event" not in msg:
				out.append(msg)
		left = deadline - time.monotonic()
		check(left > 0, "no answer to END; so far %r" % out)
		s.settimeout(left)
		data = s.recv(65536)
		check(data, "EOF; so far %r" % out)
		buf += data


def session(path, streams, enable):
	"""Greeting, then either each stream before negotiation (enable
	None) or negotiation with enable and each stream after it."""
	s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
	s.settimeout(qb.TIMEOUT)
	s.connect(path)
	buf = b""
	while b"\n" not in buf:
		buf += s.recv(4096)
	greeting, buf = buf.split(b"\n", 1)
	got = [json.loads(greeting)["QMP"]["capabilities"]]
	if enable is not None:
		s.sendall(b'{"execute": "qmp_capabilities", "arguments": '
		    b'{"enable": ' + json.dumps(enable).encode() + b'}}')
		s.sendall(END)
		out, buf = answers(s, buf)
		got.append(out)
	for data in streams:
		s.sendall(data + END)
		out, buf = answers(s, buf)
		got.append(out)
	s.close()
	return got


def test_shared_oob_like_qemu():
	with Env("oob-qemu") as env:
		c = env.d.client()
		direct = env.h.qemu("direct")
		twin = env.h.qemu("twin")
		c.cmd("vm-add", {"name": "twin", "socket": twin.path})
		qb.wait_vm_state(c, "twin", "ready")
		shared = env.d.vm_socket("twin")
		for streams, enable in ((NEGOTIATIONS, None),
		    (WITH_OOB, ["oob"]), (WITH_OOB[:1] + WITH_OOB[7:], []),
		    (WITH_OOB[:1], ["oob", "oob"])):
			want = session(direct.path, streams, enable)
			check(want[0] == ["oob"], "QEMU greets with %r" % want[0])
			got = session(shared, streams, enable)
			for i, (w, g) in enumerate(zip(want, got)):
				check(w == g, "enable %r, step %d:\n qemu   %s\n "
				    "broker %s" % (enable, i, json.dumps(w),
				    json.dumps(g)))
		# the control socket runs a VM's command out of band
		ctl = env.h.qmp(env.d.control, negotiate=False)
		g = ctl.read_greeting()
		check(g["QMP"]["capabilities"] == ["oob"], "control greeting "
		    "%r" % g)
		ctl.cmd("qmp_capabilities", {"enable": ["oob"]})
		ctl.send_msg({"exec-oob": "vm-execute", "arguments": {"vm": "twin",
		    "command": "yank", "arguments": {"instances": []}},
		    "id": "oy"})
		r = ctl.wait_reply("oy")
		check(r.get("return") == {}, "exec-oob vm-execute yank: %r" % r)
		ctl.send_msg({"exec-oob": "vm-execute", "arguments": {"vm": "twin",
		    "command": "query-status"}, "id": "oq"})
		r = ctl.wait_reply("oq")
		check(r.get("error", {}).get("desc") == "The command query-status "
		    "does not support OOB", "QEMU's refusal: %r" % r)
		env.finish()


def test_oob_past_stuck_inband():
	"""fake-qemu holds query-status's reply; exec-oob yank is answered
	meanwhile, on the shared socket and through vm-execute."""
	with Env("oob-fake") as env:
		c = env.d.client()
		f = env.h.fake("f1", faults="delay-cmd query-status 600000\n")
		c.cmd("vm-add", {"name": "f1", "socket": f.path})
		qb.wait_vm_state(c, "f1", "ready")
		sh = env.h.qmp(env.d.vm_socket("f1"), negotiate=False)
		g = sh.read_greeting()
		check(g["QMP"]["capabilities"] == ["oob"], "greeting %r" % g)
		sh.cmd("qmp_capabilities", {"enable": ["oob"]})
		stuck = sh.send_cmd("query-status")
		# a second client's in-band command is stuck behind it too
		other = env.h.qmp(env.d.vm_socket("f1"))
		other_stuck = other.send_cmd("query-status")
		sh.send_msg({"exec-oob": "yank", "arguments": {"instances": []},
		    "id": "oob1"})
		r = sh.wait_reply("oob1")
		check(r.get("return") == {}, "exec-oob yank: %r" % r)
		check(stuck not in [json.loads(k) for k in sh.replies],
		    "the in-band command was not stuck")
		# without oob enabled, exec-oob is QEMU's error
		other.send_msg({"exec-oob": "yank", "arguments": {"instances":
		    []}, "id": "nope"})
		# control socket: exec-oob vm-execute, in-band one stuck
		ctl = env.h.qmp(env.d.control, negotiate=False)
		ctl.read_greeting()
		ctl.cmd("qmp_capabilities", {"enable": ["oob"]})
		ctl_stuck = ctl.send_cmd("vm-execute", {"vm": "f1",
		    "command": "query-status"})
		ctl.send_msg({"exec-oob": "vm-execute", "arguments": {"vm": "f1",
		    "command": "yank", "arguments": {"instances": []}},
		    "id": "oob2"})
		r = ctl.wait_reply("oob2")
		check(r.get("return") == {}, "exec-oob vm-execute: %r" % r)
		# never-waiting broker commands run out of band; others not
		ctl.send_msg({"exec-oob": "query-vms", "id": "qv"})
		r = ctl.wait_reply("qv")
		check(isinstance(r.get("return"), list), "exec-oob query-vms: %r"
		    % r)
		ctl.send_msg({"exec-oob": "vm-remove", "arguments": {"name":
		    "f1"}, "id": "vr"})
		r = ctl.wait_reply("vr")
		check(r.get("error", {}).get("desc") == "The command vm-remove "
		    "does not support OOB", "exec-oob vm-remove: %r" % r)
		ctl_replies = [json.loads(k) for k in ctl.replies]
		check(ctl_stuck not in ctl_replies, "control in-band not stuck")
		# the other client's exec-oob (oob not enabled) waits its turn
		# behind its stuck command, as in QEMU; removing the VM ends
		# it all
		c.cmd("vm-remove", {"name": "f1"})
		r = other.wait_reply("nope")
		check(r.get("error", {}).get("desc") == "QMP input member "
		    "'exec-oob' is unexpected", "exec-oob without oob: %r" % r)
		other.wait_reply(other_stuck)
		sh.wait_reply(stuck)
		ctl.wait_reply(ctl_stuck)
		env.finish()


def oob_behind(env, n):
	"""A fresh oob client sends n in-band query-status (held by the
	fake's delay) then exec-oob yank; returns the ids in the order the
	replies came."""
	sh = env.h.qmp(env.d.vm_socket("f1"), negotiate=False)
	sh.read_greeting()
	sh.cmd("qmp_capabilities", {"enable": ["oob"]})
	ids = [sh.send_cmd("query-status") for _ in range(n)]
	sh.send_msg({"exec-oob": "yank", "arguments": {"instances": []},
	    "id": "oob"})
	order = []
	while len(order) < n + 1:
		sh.pump(qb.TIMEOUT)
		for k in list(sh.replies):
			order.append(json.loads(k))
			sh.replies.pop(k)
	check(sorted(order, key=str) == sorted(ids + ["oob"], key=str),
	    "replies %r" % order)
	sh.close()
	return order


def test_oob_inband_queue_limit():
	"""QEMU 7.2 with oob on holds one in-band command at work and 8
	queued, then stops reading that client, exec-oob included, until
	one is done: exec-oob behind 9 in-band commands is answered after
	the first of them, behind 8 at once (it has no COMMAND_DROPPED)."""
	with Env("oob-limit") as env:
		c = env.d.client()
		f = env.h.fake("f1", faults="delay-cmd query-status 3000\n")
		c.cmd("vm-add", {"name": "f1", "socket": f.path})
		qb.wait_vm_state(c, "f1", "ready")
		order = oob_behind(env, 8)
		check(order[0] == "oob", "behind 8: %r" % order)
		order = oob_behind(env, 9)
		check(order[0] != "oob" and order.index("oob") >= 1,
		    "behind 9, read before QEMU would: %r" % order)
		env.finish()


if __name__ == "__main__":
	qb.main([test_shared_oob_like_qemu, test_oob_past_stuck_inband,
	    test_oob_inband_queue_limit])
