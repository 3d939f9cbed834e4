#!/usr/bin/env python3
"""qmpctl against the daemon: each subcommand, key=value parsing, --json,
events streaming, and the exit codes (0 ok, 1 error reply, 2 usage,
3 unreachable)."""

import json
import os
import select
import signal
import subprocess
import time

import qb
from qb import check, Env, qmpctl


def ctl(env, *args, **kw):
	return qmpctl(list(args), sock=env.d.control, **kw)


def ok(env, *args):
	rc, out, err = ctl(env, *args)
	check(rc == 0, "qmpctl %s: rc %d, %s" % (" ".join(args), rc, err))
	return out


def test_commands():
	with Env("ctl") as env:
		f = env.h.fake("v1")
		out = ok(env, "vm-add", "name=v1", "socket=" + f.path)
		check(out == "", "vm-add printed %r" % out)
		c = env.d.client()
		qb.wait_vm_state(c, "v1", "ready")
		out = ok(env, "vms")
		lines = out.splitlines()
		check(lines[0].split()[:2] == ["NAME", "STATE"] and
		    lines[1].split()[:2] == ["v1", "ready"] and
		    f.path in lines[1], "vms: %r" % out)
		vms = json.loads(ok(env, "--json", "vms"))
		check(vms == c.cmd("query-vms"), "vms --json %r" % vms)
		# Options after the command work too.
		check(json.loads(ok(env, "vms", "--json")) == vms, "vms --json")
		st = json.loads(ok(env, "--json", "exec", "v1", "query-status"))
		check(st == c.cmd("vm-execute", {"vm": "v1",
		    "command": "query-status"}), "exec: %r" % st)
		out = ok(env, "exec", "v1", "query-status")
		check(json.loads(out) == st and "\n  " in out,
		    "readable exec output %r" % out)
		# Values: JSON when they parse, else strings; dotted keys.
		ok(env, "exec", "v1", "x-fake-event", "event=CTL_X",
		    'data={"a": [1, 2]}')
		out = ok(env, "--json", "exec", "v1", "x-fake-event",
		    "event=CTL_Y", "data.n=5", "data.s=text", "data.b=true",
		    "data.q=\"5\"", "data.o.p=null")
		check(out.strip() == "{}", "x-fake-event --json %r" % out)
		s = env.d.client()
		s.cmd("subscribe")
		ok(env, "exec", "v1", "x-fake-event", "event=CTL_Z",
		    "data.n=5", "data.s=text", "data.b=true", "data.q=\"5\"",
		    "data.o.p=null", "data.e=")
		e = s.wait_event("CTL_Z")
		check(e["data"] == {"n": 5, "s": "text", "b": True, "q": "5",
		    "o": {"p": None}, "e": ""}, "parsed %r" % e["data"])
		# Raw commands.
		names = [x["name"] for x in
		    json.loads(ok(env, "--json", "query-commands"))]
		check("vm-execute" in names, "query-commands %r" % names)
		ok(env, "vm-remove", "name=v1")
		check(c.cmd("query-vms") == [], "vm-remove via qmpctl")
		env.finish()


def test_exit_codes():
	with Env("ctlrc") as env:
		f = env.h.fake("v1", faults="error query-pci DeviceNotActive "
		    "no such thing\n")
		ok(env, "vm-add", "name=v1", "socket=" + f.path)
		qb.wait_vm_state(env.d.client(), "v1", "ready")
		cases = [
			(["no-such-command"], 1, "CommandNotFound"),
			(["vm-remove", "name=nosuch"], 1, "nosuch"),
			(["vm-add", "name=bad/name", "socket=x"], 1,
			    "GenericError"),
			(["exec", "nosuch", "query-status"], 1, "nosuch"),
			(["exec", "v1", "query-pci"], 1,
			    "DeviceNotActive: no such thing"),
			(["exec", "v1"], 2, "usage"),
			(["vms", "extra"], 2, "usage"),
			(["query-vms", "novalue"], 2, "key=value"),
			(["query-vms", "=x"], 2, "key=value"),
			(["query-vms", "a=1", "a=2"], 2, "twice"),
			(["query-vms", "--vm", "x"], 2, "events"),
			(["--bogus-option"], 2, ""),
			([], 2, "usage"),
		]
		for args, want, text in cases:
			rc, out, err = ctl(env, *args)
			check(rc == want, "qmpctl %s: rc %d, want %d (%s)" %
			    (" ".join(args), rc, want, err.strip()))
			check(text in err, "qmpctl %s: stderr %r lacks %r" %
			    (" ".join(args), err, text))
			if want == 1:
				check(out == "", "error printed on stdout: %r" % out)
		rc, out, err = qmpctl(["vms"], sock=env.h.path("nothere"))
		check(rc == 3 and "nothere" in err, "unreachable: %d %r" %
		    (rc, err))
		# The environment names the socket; -S wins over it.
		rc, out, err = qmpctl(["vms"],
		    env={"QMPBROKER_SOCKET": env.d.control})
		check(rc == 0 and "v1" in out, "QMPBROKER_SOCKET: %d %r" %
		    (rc, err))
		rc, out, err = qmpctl(["vms"], sock=env.d.control,
		    env={"QMPBROKER_SOCKET": env.h.path("nothere")})
		check(rc == 0, "-S did not win: %r" % err)
		# The default path is the daemon's.
		rc, out, err = qmpctl(["vms"], env={"XDG_RUNTIME_DIR":
		    env.h.path("xdg")})
		want = "/run/qmpbroker/control.sock" if os.geteuid() == 0 \
		    else env.h.path("xdg", "qmpbroker", "control.sock")
		check(rc == 3 and want in err, "default socket: %r" % err)
		env.finish()


def test_events_stream():
	with Env("ctlev") as env:
		c = env.d.client()
		for n in ("a1", "b1"):
			f = env.h.fake(n)
			c.cmd("vm-add", {"name": n, "socket": f.path})
			qb.wait_vm_state(c, n, "ready")
		procs = {}
		for key, args in (("all", []), ("a", ["--vm", "a*"]),
		    ("foo", ["--event", "FOO*", "--json"])):
			procs[key] = subprocess.Popen([qb.program("qmpctl"),
			    "-S", env.d.control, "events"] + args,
			    stdout=subprocess.PIPE, stderr=subprocess.PIPE,
			    bufsize=0)
		try:
			for p in procs.values():
				line = p.stderr.readline().decode()
				check("subscription" in line, "events said %r" %
				    line)
			for vm, ev in (("b1", "BAR"), ("a1", "FOO"),
			    ("b1", "FOO2"), ("a1", "END_A"), ("b1", "FOO_END")):
				c.cmd("vm-execute", {"vm": vm,
				    "command": "x-fake-event", "arguments":
				    {"event": ev, "data": {"k": ev}}})
			want = {"all": ["BAR", "FOO", "FOO2", "END_A",
			    "FOO_END"], "a": ["FOO", "END_A"],
			    "foo": ["FOO", "FOO2", "FOO_END"]}
			for key, p in procs.items():
				lines = []
				while len(lines) < len(want[key]):
					r, _, _ = select.select([p.stdout], [], [],
					    qb.TIMEOUT)
					check(r, "%s: no output" % key)
					line = p.stdout.readline().decode()
					check(line, "%s: EOF" % key)
					lines.append(line)
				if key == "foo":
					evs = [json.loads(l) for l in lines]
					got = [e["event"] for e in evs]
					check(all(e["data"]["k"] == e["event"] and
					    e["vm"] in ("a1", "b1") for e in evs),
					    repr(evs))
				else:
					got = [l.split()[3] for l in lines]
					check(all(l.split()[2] in ("a1", "b1")
					    for l in lines), repr(lines))
				check(sorted(got) == sorted(want[key]),
				    "%s: got %r, want %r" % (key, got, want[key]))
			for p in procs.values():
				p.send_signal(signal.SIGINT)
				rc = p.wait(qb.TIMEOUT)
				check(rc == 0, "events exit %d on SIGINT" % rc)
			for n in ("a1", "b1"):
				c.cmd("vm-remove", {"name": n})
			env.h.close_clients()
			env.d.check_baseline()
			# A broker going away ends the stream with 3.
			p = subprocess.Popen([qb.program("qmpctl"), "-S",
			    env.d.control, "events"], stdout=subprocess.PIPE,
			    stderr=subprocess.PIPE)
			procs["last"] = p
			check("subscription" in p.stderr.readline().decode(),
			    "last subscribe")
			env.d.terminate()
			check(p.wait(qb.TIMEOUT) == 3, "events after broker exit")
		finally:
			for p in procs.values():
				if p.poll() is None:
					p.kill()
				p.wait()
				p.stdout.close()
				p.stderr.close()


qb.main([test_commands, test_exit_codes, test_events_stream])
