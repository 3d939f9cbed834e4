#!/usr/bin/env python3
"""Every control-socket command of the daemon issue, with good and bad
arguments. Every bad request must get a clear QMP error (class + desc, the
request's id) and leave the connection usable."""

import json
import os
import re

import qb
from qb import check, Env

CMDS = ["qmp_capabilities", "query-commands", "query-vms", "vm-add",
    "vm-remove", "vm-execute", "subscribe", "unsubscribe"]


def still_usable(c):
	"""The connection survived the previous error."""
	check(isinstance(c.cmd("query-vms"), list),
	    "connection not usable after an error")


def add_fake(env, c, name, **kw):
	f = env.h.fake(name, **kw)
	c.cmd("vm-add", {"name": name, "socket": f.path})
	qb.wait_vm_state(c, name, "ready")
	return f


def test_greeting():
	with Env("greet") as env:
		c = env.d.client(negotiate=False)
		g = c.read_greeting()["QMP"]
		# out-of-band execution, as QEMU offers it (test_qmp_oob)
		check(g.get("capabilities") == ["oob"], "capabilities %r" %
		    g.get("capabilities"))
		ver = g["version"]["qemu"]
		for k in ("major", "minor", "micro"):
			check(isinstance(ver.get(k), int), "version.%s %r" %
			    (k, ver.get(k)))
		m = re.match(r"^qmpbroker (\d+)\.(\d+)\.(\d+)$",
		    g["version"].get("package", ""))
		check(m, "package %r" % g["version"].get("package"))
		check([int(x) for x in m.groups()] ==
		    [ver["major"], ver["minor"], ver["micro"]],
		    "package %r and version %r differ" %
		    (g["version"]["package"], ver))
		env.finish()


def test_capabilities_first():
	with Env("precap") as env:
		c = env.d.client(negotiate=False)
		c.read_greeting()
		for cmd in ("query-vms", "query-commands", "vm-execute"):
			cls, desc = c.cmd_error(cmd)
			check(cls == "CommandNotFound", "%s before "
			    "negotiation: %s %s" % (cmd, cls, desc))
		check(c.cmd("qmp_capabilities") == {}, "negotiation")
		cls, desc = c.cmd_error("qmp_capabilities")
		check(cls == "CommandNotFound", "second qmp_capabilities: %s"
		    % cls)
		still_usable(c)
		env.finish()


def test_bad_json():
	with Env("badjson") as env:
		c = env.d.client()
		# (QEMU's grammar: an unfinished object waits for its end,
		# so the unfinished one here is closed wrongly)
		for junk in (b"this is not json", b"{\"execute\": }", b"[1, 2]",
		    b"42", b"\"query-vms\"", b"\xff\xfe{}"):
			c.send_raw(junk + b"\r\n")
			r = c.wait_noid()
			check("error" in r and r["error"].get("class") ==
			    "GenericError" and r["error"].get("desc"),
			    "%r answered %r" % (junk, r))
			still_usable(c)
		# Objects that are not commands, with an id to echo.
		for bad in ({"execute": 5, "id": 1},
		    {"execute": "query-vms", "arguments": [], "id": 2},
		    {"execute": "query-vms", "bogus": 1, "id": 3},
		    {"id": 4}):
			c.send_msg(bad)
			r = c.wait_reply(bad["id"])
			check("error" in r and r["error"].get("class") ==
			    "GenericError" and r["error"].get("desc"),
			    "%r answered %r" % (bad, r))
			still_usable(c)
		# Bare LF framing works as CRLF does.
		c.send_raw(b'{"execute": "query-vms", "id": "lf"}\n')
		check("return" in c.wait_reply("lf"), "LF-framed request")
		env.finish()


def test_unknown_command():
	with Env("unknown") as env:
		c = env.d.client()
		r = c.execute("no-such-command", id={"any": ["json", 1]})
		check(r.get("id") == {"any": ["json", 1]}, "id %r" % r.get("id"))
		check(r["error"]["class"] == "CommandNotFound" and
		    "no-such-command" in r["error"]["desc"], repr(r))
		still_usable(c)
		env.finish()


def test_ids_echoed():
	with Env("ids") as env:
		c = env.d.client()
		for i in (0, -7, 2 ** 40, "s", "", [1, "x"], {"a": None}, 1.5,
		    None, True):
			c.send_msg({"execute": "query-vms", "id": i})
			r = c.wait_reply(i)
			check(r.get("id") == i and "return" in r, repr(r))
		c.send_msg({"execute": "query-vms"})
		r = c.wait_noid()
		check("return" in r and "id" not in r, "no id: %r" % r)
		env.finish()


def test_query_commands():
	with Env("qcmds") as env:
		c = env.d.client()
		ret = c.cmd("query-commands")
		check(isinstance(ret, list) and all(isinstance(x, dict) and
		    isinstance(x.get("name"), str) for x in ret), repr(ret)[:200])
		names = [x["name"] for x in ret]
		for n in CMDS:
			check(n in names, "query-commands lacks %s" % n)
		check(len(names) == len(set(names)), "duplicates in %r" % names)
		cls, _ = c.cmd_error("query-commands", {"x": 1})
		still_usable(c)
		env.finish()


def test_vm_add_remove():
	with Env("vmadd") as env:
		c = env.d.client()
		f = env.h.fake("v1")
		g = qb.greeting_of(f.path)["QMP"]["version"]
		check(c.cmd("vm-add", {"name": "v1", "socket": f.path}) == {},
		    "vm-add returns {}")
		vms = c.cmd("query-vms")
		check(len(vms) == 1 and vms[0]["name"] == "v1" and
		    vms[0]["socket"] == f.path and vms[0]["state"] in
		    ("connecting", "negotiating", "ready"), repr(vms))
		qb.wait_vm_state(c, "v1", "ready")
		vm = c.cmd("query-vms")[0]
		check(vm.get("qemu") == g["qemu"] and
		    vm.get("package") == g["package"],
		    "query-vms %r, QEMU's greeting %r" % (vm, g))
		check(os.path.exists(env.d.vm_socket("v1")),
		    "no shared socket " + env.d.vm_socket("v1"))
		# Name limits: 64 of the allowed characters is fine.
		long = "A-z_0.9" * 9 + "x"
		check(len(long) == 64, "test bug")
		f2 = env.h.fake("v2")
		c.cmd("vm-add", {"name": long, "socket": f2.path})
		qb.wait_vm_state(c, long, "ready")
		check(c.cmd("vm-remove", {"name": "v1"}) == {}, "vm-remove")
		check([v["name"] for v in c.cmd("query-vms")] == [long],
		    "v1 still listed")
		qb.wait_for(lambda: not os.path.exists(env.d.vm_socket("v1")),
		    "shared socket of a removed VM to go")
		c.cmd("vm-remove", {"name": long})
		check(c.cmd("query-vms") == [], "VMs left")
		# The fake saw its monitor go and serves a new client.
		check(qb.greeting_of(f.path), "fake-qemu after vm-remove")
		env.finish()


def test_vm_add_bad():
	with Env("vmaddbad") as env:
		c = env.d.client()
		f = env.h.fake("v1")
		bad = [
			{},
			{"name": "v1"},
			{"socket": f.path},
			{"name": 1, "socket": f.path},
			{"name": "v1", "socket": 7},
			{"name": None, "socket": f.path},
			{"name": "v1", "socket": f.path, "extra": 1},
			{"name": "", "socket": f.path},
			{"name": "a/b", "socket": f.path},
			{"name": "a b", "socket": f.path},
			{"name": "../x", "socket": f.path},
			{"name": "x" * 65, "socket": f.path},
			{"name": "caf\u00e9", "socket": f.path},
			{"name": "v1", "socket": ""},
		]
		for args in bad:
			cls, desc = c.cmd_error("vm-add", args)
			check(cls == "GenericError", "vm-add %r: %s" % (args, cls))
			still_usable(c)
		cls, desc = c.cmd_error("vm-add", None)
		check(c.cmd("query-vms") == [], "a bad vm-add added a VM")
		c.cmd("vm-add", {"name": "v1", "socket": f.path})
		cls, desc = c.cmd_error("vm-add", {"name": "v1",
		    "socket": f.path})
		check("v1" in desc, "duplicate: %s %s" % (cls, desc))
		check(len(c.cmd("query-vms")) == 1, "duplicate added")
		for args in ({}, {"name": 3}, {"name": "v1", "x": 1}):
			c.cmd_error("vm-remove", args)
			still_usable(c)
		cls, desc = c.cmd_error("vm-remove", {"name": "nosuch"})
		check("nosuch" in desc, "unknown VM: %s" % desc)
		check(len(c.cmd("query-vms")) == 1, "v1 gone")
		env.finish()


def test_vm_execute():
	with Env("vmexec") as env:
		c = env.d.client()
		add_fake(env, c, "v1", faults=
		    "error query-pci DeviceNotActive the injected desc\n")
		ret = c.cmd("vm-execute", {"vm": "v1", "command": "query-status"})
		check(isinstance(ret, dict) and "running" in ret, repr(ret))
		for cmd, running in (("cont", True), ("stop", False)):
			c.cmd("vm-execute", {"vm": "v1", "command": cmd,
			    "arguments": {}})
			ret = c.cmd("vm-execute", {"vm": "v1",
			    "command": "query-status"})
			check(ret["running"] is running, "%s did not reach QEMU: "
			    "%r" % (cmd, ret))
		# The VM's own error goes through unchanged.
		cls, desc = c.cmd_error("vm-execute", {"vm": "v1",
		    "command": "query-pci"})
		check((cls, desc) == ("DeviceNotActive", "the injected desc"),
		    "VM error changed: %s %s" % (cls, desc))
		# A command QEMU does not have.
		cls, desc = c.cmd_error("vm-execute", {"vm": "v1",
		    "command": "no-such-qmp-command"})
		check(cls == "CommandNotFound", "QEMU-unknown: %s" % cls)
		cls, desc = c.cmd_error("vm-execute", {"vm": "nosuch",
		    "command": "query-status"})
		check("nosuch" in desc, "unknown VM: %s %s" % (cls, desc))
		for args in ({}, {"vm": "v1"}, {"command": "query-status"},
		    {"vm": 1, "command": "query-status"},
		    {"vm": "v1", "command": ["query-status"]},
		    {"vm": "v1", "command": "query-status", "arguments": "x"},
		    {"vm": "v1", "command": "query-status", "arguments": [],},
		    {"vm": "v1", "command": "query-status", "other": 1}):
			cls, desc = c.cmd_error("vm-execute", args)
			check(cls == "GenericError", "%r: %s" % (args, cls))
			still_usable(c)
		env.finish()


def test_in_flight():
	"""A command QEMU never answers must not hold up others; many in
	flight come back each with its own id; removing the VM answers the
	stuck one with an error."""
	with Env("inflight") as env:
		c = env.d.client()
		add_fake(env, c, "v1", faults="no-reply query-pci\n"
		    "delay-cmd query-block 200\n")
		stuck = c.send_cmd("vm-execute", {"vm": "v1",
		    "command": "query-pci"})
		ids = {}
		for i in range(40):
			cmd = ("query-block", "query-status")[i % 2]
			ids[c.send_cmd("vm-execute", {"vm": "v1",
			    "command": cmd})] = cmd
		ids[c.send_cmd("query-vms")] = "query-vms"
		for i, cmd in ids.items():
			r = c.wait_reply(i)
			check("return" in r, "%s: %r" % (cmd, r))
			if cmd == "query-status":
				check("running" in r["return"], "%s got %r" %
				    (cmd, r))
			elif cmd == "query-block":
				check(isinstance(r["return"], list),
				    "%s got %r" % (cmd, r))
		c.poll_msgs()
		check(json.dumps(stuck) not in c.replies,
		    "no-reply command answered")
		c.cmd("vm-remove", {"name": "v1"})
		r = c.wait_reply(stuck)
		check("error" in r, "pending command after vm-remove: %r" % r)
		env.finish()


def test_vm_not_ready():
	"""A VM that never greets: commands wait for negotiation (the
	monitor queues them) and fail with the command timeout; one whose
	socket is dead fails at once."""
	with Env("notready", args=["--cmd-timeout-ms", "1000"]) as env:
		c = env.d.client()
		f = env.h.fake("v1", faults="no-greeting\n")
		c.cmd("vm-add", {"name": "v1", "socket": f.path})
		cls, desc = c.cmd_error("vm-execute", {"vm": "v1",
		    "command": "query-status"})
		check(cls == "GenericError", "not ready: %s %s" % (cls, desc))
		check(qb.vm_state(c, "v1") in ("connecting", "negotiating",
		    "disconnected"), "state %r" % qb.vm_state(c, "v1"))
		# A socket nobody listens on: added, never ready.
		c.cmd("vm-add", {"name": "v2", "socket": env.h.path("none")})
		check(qb.vm_state(c, "v2") != "ready", "v2 ready")
		c.cmd_error("vm-execute", {"vm": "v2", "command": "query-status"})
		env.finish()


def test_subscribe_args():
	with Env("subargs") as env:
		c = env.d.client()
		s1 = c.cmd("subscribe")
		check(isinstance(s1, dict) and isinstance(
		    s1.get("subscription"), int) and len(s1) == 1, repr(s1))
		s2 = c.cmd("subscribe", {"vms": ["a*", "b?"], "events": ["*"]})
		s3 = c.cmd("subscribe", {"events": ["X"]})
		check(len({s1["subscription"], s2["subscription"],
		    s3["subscription"]}) == 3, "ids not distinct")
		for args in ({"vms": "a*"}, {"events": "X"}, {"vms": [1]},
		    {"events": [None]}, {"other": 1}, {"vms": {"a": 1}}):
			cls, desc = c.cmd_error("subscribe", args)
			check(cls == "GenericError", "%r: %s" % (args, cls))
			still_usable(c)
		check(c.cmd("unsubscribe", s2) == {}, "unsubscribe")
		for args in (s2, {}, {"subscription": "1"},
		    {"subscription": s1["subscription"], "x": 1},
		    {"subscription": 987654}):
			cls, desc = c.cmd_error("unsubscribe", args)
			check(cls == "GenericError", "%r: %s" % (args, cls))
			still_usable(c)
		# Another connection cannot drop ours.
		o = env.d.client()
		o.cmd_error("unsubscribe", s1)
		check(c.cmd("unsubscribe", s1) == {}, "own unsubscribe")
		env.finish()


qb.main([test_greeting, test_capabilities_first, test_bad_json,
    test_unknown_command, test_ids_echoed, test_query_commands,
    test_vm_add_remove, test_vm_add_bad, test_vm_execute, test_in_flight,
    test_vm_not_ready, test_subscribe_args])
