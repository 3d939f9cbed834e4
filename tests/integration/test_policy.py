#!/usr/bin/env python3
"""Policy (issue 15, part 1): two tenants under other uids (setpriv) with
different roles, every argument guard tried with bypass attempts against a
real QEMU (and proved not to have reached it: the files the commands would
have made do not exist, the nodes and objects they would have added are
not there), visibility of query-vms, query-jobs and events, policy-check,
and a policy reload with a bad file keeping the old one."""

import json
import os
import shutil
import signal
import subprocess

import qb
from qb import check, Env

# Runs as a tenant: connects to argv[1], negotiates, optionally
# subscribes (argv[3] a JSON list of VM globs, or null), runs the
# commands of argv[2] ([[id, name, args], ...]) one by one, and prints
# {"replies": {id: reply}, "events": [...]}. With argv[4] == "events",
# waits for an END event from x-fake-event before printing.
TENANT = qb.TENANT_PRELUDE + r"""
def reply(i):
    while i not in out["replies"]:
        line = f.readline()
        if not line:
            raise EOFError("broker closed the connection")
        m = json.loads(line)
        if "event" in m:
            out["events"].append(m)
        elif "id" in m:
            out["replies"][m["id"]] = m
    return out["replies"][i]
greet = json.loads(f.readline())
send({"execute": "qmp_capabilities", "id": "cap"})
reply("cap")
subs = json.loads(sys.argv[3])
if subs is not None:
    send({"execute": "subscribe", "id": "sub", "arguments":
          {"vms": subs} if subs else {}})
    reply("sub")
for i, name, args in json.loads(sys.argv[2]):
    m = {"execute": name, "id": i}
    if args is not None:
        m["arguments"] = args
    send(m)
    reply(i)
print("READY", flush=True)
if len(sys.argv) > 4 and sys.argv[4] == "events":
    sys.stdin.readline()
    while not any(e.get("event") == "END" for e in out["events"]):
        line = f.readline()
        if not line:
            break
        m = json.loads(line)
        if "event" in m:
            out["events"].append(m)
print(json.dumps(out), flush=True)
"""


def tenant(user, group, sock, cmds, subs=None, events=False):
	"""Starts a tenant as user:group; returns the Popen (READY read)."""
	if os.geteuid() != 0:
		raise qb.Skip("needs root to switch uid")
	setpriv = shutil.which("setpriv")
	check(setpriv, "setpriv (util-linux) not installed")
	p = subprocess.Popen([setpriv, "--reuid=" + user, "--regid=" + group,
	    "--clear-groups", "python3", "-c", TENANT % {"timeout":
	    qb.TIMEOUT}, sock, json.dumps(cmds), json.dumps(subs)] +
	    (["events"] if events else []), stdin=subprocess.PIPE,
	    stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd="/")
	line = p.stdout.readline()
	if line.strip() != b"READY":
		p.kill()
		raise qb.Failure("%s tenant: %r %s" % (user, line,
		    p.stderr.read(3000).decode()))
	return p


def tenant_run(user, group, sock, cmds):
	"""Runs cmds as user:group on sock; returns the replies by id."""
	if os.geteuid() != 0:
		raise qb.Skip("needs root to switch uid")
	p = subprocess.run(["setpriv", "--reuid=" + user, "--regid=" + group,
	    "--clear-groups", "python3", "-c", TENANT % {"timeout":
	    qb.TIMEOUT}, sock, json.dumps(cmds), "null"],
	    capture_output=True, timeout=qb.TIMEOUT * 2, cwd="/")
	lines = p.stdout.decode().splitlines()
	check(p.returncode == 0 and lines and lines[0] == "READY",
	    "%s tenant: %r %s" % (user, lines, p.stderr.decode()[-2000:]))
	return json.loads(lines[-1])["replies"]


def open_to_all(env, *extra):
	for d in (env.h.dir, os.path.dirname(env.d.control)) + extra:
		os.chmod(d, 0o755)
	os.chmod(env.d.control, 0o666)


def tenants():
	nobody = qb.user_ids()[0]
	daemon = qb.user_ids("daemon", "daemon")[0]
	return nobody, daemon


def refused(rep, what):
	err = rep.get("error") or {}
	check(err.get("class") == "GenericError" and
	    err.get("desc", "").startswith("Permission denied"),
	    "%s was not refused: %r" % (what, rep))


def guard_cases(root, out, link):
	"""[id, command, arguments] that an operator must be refused: each
	guard, each with bypass attempts. out: a dir outside the roots;
	link: a symlink inside the root that points to out."""
	o = lambda n: os.path.join(out, n)
	cases = [
	    # migrate: a shell command run by QEMU, and what might hide it
	    ("mig-exec", "migrate", {"uri": "exec:touch " + o("m1")}),
	    ("mig-pct", "migrate", {"uri": "%65xec:touch " + o("m2")}),
	    ("mig-space", "migrate", {"uri": " exec:touch " + o("m3")}),
	    ("mig-unix-out", "migrate", {"uri": "unix:" + o("m4.sock")}),
	    ("mig-unix-dots", "migrate", {"uri": "unix:" + root +
		"/../out/m5.sock"}),
	    ("mig-unix-link", "migrate", {"uri": "unix:" + link +
		"/m6.sock"}),
	    ("mig-file", "migrate", {"uri": "file:" + o("m7")}),
	    ("mig-channels", "migrate", {"channels": [{"channel-type":
		"main", "addr": {"transport": "exec", "args": ["touch",
		o("m8")]}}]}),
	    ("migin-exec", "migrate-incoming", {"uri": "exec:touch " +
		o("m9")}),
	    # HMP bypasses everything, so it is refused whole
	    ("hmp-info", "human-monitor-command", {"command-line":
		"info version"}),
	    ("hmp-mig", "human-monitor-command", {"command-line":
		"migrate exec:touch " + o("h1")}),
	    ("hmp-dump", "human-monitor-command", {"command-line":
		"pmemsave 0 4096 " + o("h2")}),
	    # host files written
	    ("pmem-out", "pmemsave", {"val": 0, "size": 4096, "filename":
		o("p1")}),
	    ("pmem-rel", "pmemsave", {"val": 0, "size": 4096, "filename":
		"p2"}),
	    ("pmem-dots", "pmemsave", {"val": 0, "size": 4096, "filename":
		root + "/../out/p3"}),
	    ("pmem-link", "pmemsave", {"val": 0, "size": 4096, "filename":
		link + "/p4"}),
	    ("pmem-slashes", "pmemsave", {"val": 0, "size": 4096,
		"filename": root + "//..//out/p5"}),
	    ("pmem-file", "pmemsave", {"val": 0, "size": 4096, "filename":
		"file:" + o("p6")}),
	    ("shot-out", "screendump", {"filename": o("s1")}),
	    ("shot-rel", "screendump", {"filename": "../s2"}),
	    ("shot-link", "screendump", {"filename": link + "/s3"}),
	    ("dump-out", "dump-guest-memory", {"paging": False, "protocol":
		"file:" + o("d1")}),
	    ("dump-link", "dump-guest-memory", {"paging": False, "protocol":
		"file:" + link + "/d2"}),
	    ("dump-exec", "dump-guest-memory", {"paging": False, "protocol":
		"exec:touch " + o("d3")}),
	    # host files read: block devices
	    ("blk-file", "blockdev-add", {"driver": "file", "node-name":
		"b1", "filename": "/etc/hostname"}),
	    ("blk-nested", "blockdev-add", {"driver": "raw", "node-name":
		"b2", "file": {"driver": "file", "filename":
		"/etc/hostname"}}),
	    ("blk-json", "blockdev-add", {"driver": "file", "node-name":
		"b3", "filename": 'json:{"file": {"driver": "file", '
		'"filename": "/etc/hostname"}}'}),
	    ("blk-link", "blockdev-add", {"driver": "file", "node-name":
		"b4", "filename": link + "/o.img"}),
	    ("blk-vvfat", "blockdev-add", {"driver": "vvfat", "node-name":
		"b5", "dir": "/etc"}),
	    ("blk-backing", "blockdev-add", {"driver": "qcow2", "node-name":
		"b6", "file": {"driver": "file", "filename": root +
		"/in.img"}}),
	    ("blk-deep", "blockdev-add", {"driver": "raw", "node-name":
		"b7", "file": {"driver": "raw", "file": {"driver": "file",
		"filename": root + "/../out/o.img"}}}),
	    # fds the peer passed (add-fd) are /dev/fdset/N: nothing else
	    # under that name
	    ("fdset-dots", "blockdev-add", {"driver": "file", "node-name":
		"b8", "filename": "/dev/fdset/../../etc/hostname"}),
	    ("fdset-slash", "blockdev-add", {"driver": "file", "node-name":
		"b9", "filename": "/dev/fdset//0"}),
	    ("fdset-tail", "blockdev-add", {"driver": "file", "node-name":
		"b10", "filename": "/dev/fdset/0/../../../etc/hostname"}),
	    # drive_add (HMP's, which QEMU 7.2 does not take over QMP: the
	    # guard must answer, not QEMU)
	    ("drv-file", "drive_add", {"pci_addr": "auto", "file":
		"/etc/hostname"}),
	    ("drv-json", "drive_add", {"pci_addr": "auto", "file":
		'json:{"file": {"filename": "/etc/hostname"}}'}),
	    ("drv-rel", "drive_add", {"pci_addr": "auto", "file":
		"etc/hostname"}),
	    # objects that read host files
	    ("obj-secret-file", "object-add", {"qom-type": "secret", "id":
		"o1", "file": "/etc/hostname"}),
	    ("obj-secret-props", "object-add", {"qom-type": "secret", "id":
		"o2", "props": {"file": "/etc/hostname"}}),
	    ("obj-memfile", "object-add", {"qom-type": "memory-backend-file",
		"id": "o3", "size": 1048576, "mem-path": o("o3")}),
	    ("obj-memfile-case", "object-add", {"qom-type":
		"Memory-Backend-File", "id": "o4", "size": 1048576,
		"mem-path": o("o4")}),
	    ("obj-filter-dump", "object-add", {"qom-type": "filter-dump",
		"id": "o5", "netdev": "none", "file": o("o5")}),
	    # chardevs onto host files
	    ("chr-file", "chardev-add", {"id": "c1", "backend": {"type":
		"file", "data": {"out": o("c1")}}}),
	    ("chr-rel", "chardev-add", {"id": "c2", "backend": {"type":
		"file", "data": {"out": "c2"}}}),
	    ("chr-link", "chardev-add", {"id": "c3", "backend": {"type":
		"file", "data": {"out": link + "/c3"}}}),
	    ("chr-sock", "chardev-add", {"id": "c4", "backend": {"type":
		"socket", "data": {"server": True, "wait": False, "addr":
		{"type": "unix", "data": {"path": o("c4.sock")}}}}}),
	    # host programs
	    ("net-script", "netdev_add", {"type": "tap", "id": "n1",
		"script": "/bin/sh"}),
	    ("dev-rom", "device_add", {"driver": "e1000", "id": "e1",
		"romfile": "/etc/hostname"}),
	]
	return [[i, "vm-execute", {"vm": "v", "command": c, "arguments": a}]
	    for i, c, a in cases]


def test_guards_qemu():
	"""Default policy: an operator tenant (nobody) is refused every
	guarded command, every bypass included, on vm-execute and on the
	shared socket; nothing reaches QEMU (no file made outside the root,
	no block node, object or chardev added). Root's migrate exec:
	does make its file: the test would see a leak."""
	nobody, daemon = tenants()
	with Env("guards", daemon=False) as env:
		h = env.h
		root = h.path("root")
		out = h.path("out")
		os.makedirs(root)
		os.makedirs(out)
		link = os.path.join(root, "link")
		os.symlink(out, link)
		for d in (root, out):
			os.chmod(d, 0o777)
		open(os.path.join(root, "in.img"), "wb").close()
		env.d = d = h.daemon(args=["--allow-uid", str(nobody),
		    "--image-root", root])
		d.baseline()
		open_to_all(env)
		q = h.qemu("v")
		c = d.client()
		c.cmd("vm-add", {"name": "v", "socket": q.path})
		qb.wait_vm_state(c, "v", "ready")
		for x in (d.run_dir, os.path.join(d.run_dir, "vm")):
			os.chmod(x, 0o755)
		cases = guard_cases(root, out, link)
		allowed = [
		    ["ok-status", "vm-execute", {"vm": "v", "command":
			"query-status"}],
		    ["ok-pmem", "vm-execute", {"vm": "v", "command": "pmemsave",
			"arguments": {"val": 0, "size": 4096, "filename":
			os.path.join(root, "ok.bin")}}],
		    ["ok-mig-tcp", "vm-execute", {"vm": "v", "command":
			"migrate-set-parameters", "arguments": {}}],
		]
		# another VM's monitor under a new name would escape vm-allow
		os.symlink(q.path, os.path.join(root, "qsock"))
		steal = [["steal-out", "vm-add", {"name": "s1", "socket":
		    q.path}],
		    ["steal-dots", "vm-add", {"name": "s2", "socket": root +
			"/../v.qmp"}],
		    ["steal-link", "vm-add", {"name": "s3", "socket":
			os.path.join(root, "qsock")}]]
		rep = tenant_run("nobody", "nogroup", d.control, cases +
		    allowed + steal)
		for i, _, a in steal:
			refused(rep[i], "%s (vm-add %s)" % (i, a["socket"]))
		for i, _, a in cases:
			refused(rep[i], "%s (%s)" % (i, a["command"]))
		check(rep["ok-status"].get("return", {}).get("status") ==
		    "prelaunch", "query-status: %r" % rep["ok-status"])
		check("return" in rep["ok-pmem"], "pmemsave in the root: %r" %
		    rep["ok-pmem"])
		check(os.path.exists(os.path.join(root, "ok.bin")),
		    "pmemsave in the root made no file")
		# the shared socket: each client is judged by its own peer
		sh = d.vm_socket("v")
		os.chmod(sh, 0o666)
		shared = [[i, a["command"], a.get("arguments")]
		    for i, _, a in cases]
		rep = tenant_run("nobody", "nogroup", sh, shared +
		    [["ok-status", "query-status", None]])
		for i, name, _ in shared:
			refused(rep[i], "shared %s (%s)" % (i, name))
		check(rep["ok-status"].get("return", {}).get("status") ==
		    "prelaunch", "shared query-status: %r" % rep["ok-status"])
		# nothing reached QEMU, and no VM was added
		check([v["name"] for v in c.cmd("query-vms")] == ["v"],
		    "VMs: %r" % c.cmd("query-vms"))
		made = sorted(os.listdir(out))
		check(made == [], "files made outside the root: %r" % made)
		nodes = [n.get("node-name") for n in c.cmd("vm-execute",
		    {"vm": "v", "command": "query-named-block-nodes"})]
		check(not any(n in nodes for n in ("b1", "b2", "b3", "b4",
		    "b5", "b6", "b7", "b8", "b9", "b10")),
		    "block nodes added: %r" % nodes)
		objs = [o["name"] for o in c.cmd("vm-execute", {"vm": "v",
		    "command": "qom-list", "arguments": {"path": "/objects"}})]
		check(not any(o in objs for o in ("o1", "o2", "o3", "o4",
		    "o5")), "objects added: %r" % objs)
		chrs = [x["label"] for x in c.cmd("vm-execute", {"vm": "v",
		    "command": "query-chardev"})]
		check(not any(x in chrs for x in ("c1", "c2", "c3", "c4")),
		    "chardevs added: %r" % chrs)
		# root is admin: no guards, and QEMU does run the command
		f0 = os.path.join(out, "root-was-here")
		c.cmd("vm-execute", {"vm": "v", "command": "migrate",
		    "arguments": {"uri": "exec:touch " + f0}})
		qb.wait_for(lambda: os.path.exists(f0), "root's exec: file")
		env.finish()


POLICY = """# two tenants
role operator uid nobody vm 'ta*'
role read-only uid daemon
"""


def start_with_policy(env, text, *uids):
	"""env's daemon, started with text as its policy file and the uids
	admitted; returns the file's path."""
	pol = env.h.path("policy")
	with open(pol, "w") as f:
		f.write(text)
	args = ["--policy", pol]
	for u in uids:
		args += ["--allow-uid", str(u)]
	env.d = env.h.daemon(args=args)
	env.d.baseline()
	return pol


def test_roles_visibility():
	"""A policy file: nobody is operator on ta*, daemon is read-only
	everywhere. query-vms, query-jobs, events and JOB_STATUS_CHANGE show
	each only what it may see; read-only may query but not change;
	operator may change its VMs only."""
	nobody, daemon = tenants()
	with Env("roles", daemon=False) as env:
		start_with_policy(env, POLICY, nobody, daemon)
		open_to_all(env)
		c = env.d.client()
		for v in ("ta1", "tb1"):
			c.cmd("vm-add", {"name": v, "socket": env.h.fake(v).path})
		for v in ("ta1", "tb1"):
			qb.wait_vm_state(c, v, "ready")
		cmds = [["vms", "query-vms", None],
		    ["a-status", "vm-execute", {"vm": "ta1", "command":
			"query-status"}],
		    ["b-status", "vm-execute", {"vm": "tb1", "command":
			"query-status"}],
		    ["a-stop", "vm-execute", {"vm": "ta1", "command": "stop"}],
		    ["b-stop", "vm-execute", {"vm": "tb1", "command": "stop"}],
		    ["a-cont", "vm-execute", {"vm": "ta1", "command": "cont"}],
		    ["b-remove", "vm-remove", {"name": "tb1"}],
		    ["check", "policy-check", {"uid": 0, "command": "stop"}]]
		ps = {u: tenant(u, g, env.d.control, cmds, [], events=True)
		    for u, g in (("nobody", "nogroup"), ("daemon", "daemon"))}
		# a job on libvirt's test domain: target "test", which
		# nobody may not see and daemon may
		j = c.cmd("domain-suspend", {"domain": "test"})["job"]
		qb.wait_for(lambda: c.cmd("query-jobs", {"id": j})[0]["status"]
		    in ("concluded", "failed"), "domain job")
		for v in ("tb1", "ta1"):
			c.cmd("vm-execute", {"vm": v, "command": "x-fake-event",
			    "arguments": {"event": "EV_" + v}})
		c.cmd("vm-execute", {"vm": "ta1", "command": "x-fake-event",
		    "arguments": {"event": "END"}})
		outs = {}
		for u, p in ps.items():
			p.stdin.write(b"go\n")
			p.stdin.flush()
			o, e = p.communicate(timeout=qb.TIMEOUT)
			check(p.returncode == 0, "%s: %s" % (u, e.decode()))
			outs[u] = json.loads(o)
		# the jobs each sees, asked after the job ran
		jobs = {u: tenant_run(u, g, env.d.control, [["jobs",
		    "query-jobs", None], ["job", "query-jobs", {"id": j}]])
		    for u, g in (("nobody", "nogroup"), ("daemon", "daemon"))}
		n, dd = outs["nobody"], outs["daemon"]
		nr, dr = n["replies"], dd["replies"]
		check([v["name"] for v in nr["vms"]["return"]] == ["ta1"],
		    "nobody's query-vms: %r" % nr["vms"])
		check(sorted(v["name"] for v in dr["vms"]["return"]) ==
		    ["ta1", "tb1"], "daemon's query-vms: %r" % dr["vms"])
		check("return" in nr["a-status"], "nobody query ta1: %r" %
		    nr["a-status"])
		refused(nr["b-status"], "nobody query-status tb1")
		check("return" in nr["a-stop"], "nobody stop ta1: %r" %
		    nr["a-stop"])
		refused(nr["b-stop"], "nobody stop tb1")
		refused(nr["b-remove"], "nobody vm-remove tb1")
		refused(nr["check"], "nobody policy-check")
		check("return" in dr["a-status"] and "return" in dr["b-status"],
		    "daemon's queries: %r" % dr)
		for k in ("a-stop", "b-stop", "a-cont", "b-remove", "check"):
			refused(dr[k], "read-only daemon's %s" % k)
		check("read-only" in dr["a-stop"]["error"]["desc"],
		    "the refusal says why: %r" % dr["a-stop"])
		nvms = {e.get("vm") for e in n["events"] if "vm" in e}
		check(nvms == {"ta1"}, "nobody's events from %r" % nvms)
		check("tb1" in {e.get("vm") for e in dd["events"]},
		    "daemon saw no tb1 event: %r" % dd["events"])
		njob = [e for e in n["events"] if e["event"] ==
		    "JOB_STATUS_CHANGE"]
		djob = [e for e in dd["events"] if e["event"] ==
		    "JOB_STATUS_CHANGE"]
		check(njob == [], "nobody got the test domain's job events: %r"
		    % njob[:2])
		check(djob != [], "daemon got no job event")
		check(jobs["nobody"]["jobs"]["return"] == [],
		    "nobody's query-jobs: %r" % jobs["nobody"]["jobs"])
		check("not found" in jobs["nobody"]["job"].get("error", {}).get(
		    "desc", ""), "nobody's query-jobs id: %r" %
		    jobs["nobody"]["job"])
		check([x["id"] for x in jobs["daemon"]["jobs"]["return"]] ==
		    [j], "daemon's query-jobs: %r" % jobs["daemon"]["jobs"])
		env.finish()


def supplementary_member():
	"""A user of this host and a group it is a supplementary member of
	(in the group database, not its primary group), or None."""
	import grp
	import pwd
	for g in grp.getgrall():
		for u in g.gr_mem:
			try:
				pw = pwd.getpwnam(u)
			except KeyError:
				continue
			if pw.pw_gid != g.gr_gid:
				return u, grp.getgrgid(pw.pw_gid).gr_name, g.gr_name
	return None


def test_supplementary_gid():
	"""A gid rule matches a peer through a supplementary group looked up
	at accept, though the peer's process dropped its groups (setpriv
	--clear-groups): the policy follows the user's groups, as allow-gid
	does."""
	m = supplementary_member()
	if m is None:
		raise qb.Skip("no user with a supplementary group here")
	user, primary, group = m
	nobody, _ = tenants()
	uid = qb.user_ids(user, primary)[0]
	with Env("suppgid", daemon=False) as env:
		start_with_policy(env, "role operator gid %s vm 'g*'\n" % group,
		    uid, nobody)
		open_to_all(env)
		c = env.d.client()
		c.cmd("vm-add", {"name": "g1", "socket": env.h.fake("g1").path})
		qb.wait_vm_state(c, "g1", "ready")
		stop = [["s", "vm-execute", {"vm": "g1", "command": "stop"}]]
		r = tenant_run(user, primary, env.d.control, stop)
		check("return" in r["s"], "%s (in %s) refused: %r" % (user,
		    group, r))
		refused(tenant_run("nobody", "nogroup", env.d.control,
		    stop)["s"], "nobody, in no rule")
		env.finish()


def test_policy_check():
	"""qmpctl policy-check says the decision and the rule (file and
	line) for a uid, a VM and a command, guards included."""
	nobody, daemon = tenants()
	with Env("pcheck", daemon=False) as env:
		pol = start_with_policy(env, POLICY, nobody)
		def pc(*a):
			rc, o, e = qb.qmpctl(["--json", "policy-check"] +
			    [str(x) for x in a], sock=env.d.control)
			check(rc == 0, "policy-check %r: %s %s" % (a, o, e))
			return json.loads(o)
		r = pc(nobody, "ta1", "vm-remove")
		check(r["decision"] == "allow" and r["role"] == "operator" and
		    r["rule"].startswith(pol + ":2:"), "operator: %r" % r)
		r = pc(nobody, "tb1", "vm-remove")
		check(r["decision"] == "deny" and "no rule" in r["rule"],
		    "other VM: %r" % r)
		r = pc(nobody, "ta1", "migrate", "uri=exec:true")
		check(r["decision"] == "deny" and r["namespace"] == "qemu" and
		    "migration URI" in r["reason"], "guard: %r" % r)
		r = pc(daemon, "tb1", "stop")
		check(r["decision"] == "deny" and r["role"] == "read-only" and
		    r["rule"].startswith(pol + ":3:"), "read-only: %r" % r)
		r = pc(0, "tb1", "human-monitor-command")
		check(r["decision"] == "allow" and r["role"] == "admin",
		    "root: %r" % r)
		env.finish()


BAD = [
	("role superuser uid nobody\n", ":1: unknown role 'superuser'"),
	("# ok\nallow uid no-such-user-qb\n", ":2: no user named"),
	("allow any vm '[abc'\n", ":1: glob '[abc': '[' not closed"),
	("allow any command 'migrat'\n", ":1: command glob 'migrat' matches"
	    " no broker or QEMU command"),
	("allow any vm\n", ":1: expected 'vm GLOB'"),
	("permit any\n", ":1: unknown keyword 'permit'"),
	("allow uid 4242424\n", ":1: no user 4242424"),
	("role operator any vm 'a\n", ":1: unclosed quote"),
	# a bad line after a rule: the rule's strings were freed twice
	("allow uid nobody vm 'a*'\nallow-dir /nonexistent-qb\n",
	    ":2: allow-dir /nonexistent-qb: No such file"),
]


def test_bad_policy_refused():
	"""Every kind of bad file is refused at start with its line and
	reason; on SIGHUP the old policy stays in force."""
	nobody, daemon = tenants()
	with qb.Harness("badpol") as h:
		for text, want in BAD:
			pol = h.path("policy")
			with open(pol, "w") as f:
				f.write(text)
			d = h.daemon(args=["--policy", pol], wait=False)
			d.wait_refused()
			check(pol + want in d.output(), "%r: %s" % (text,
			    d.tail(5)))
	with Env("reload", daemon=False) as env:
		pol = start_with_policy(env, POLICY, nobody)
		open_to_all(env)
		c = env.d.client()
		c.cmd("vm-add", {"name": "ta1", "socket":
		    env.h.fake("ta1").path})
		qb.wait_vm_state(c, "ta1", "ready")
		stop = [["s", "vm-execute", {"vm": "ta1", "command": "stop"}]]
		check("return" in tenant_run("nobody", "nogroup",
		    env.d.control, stop)["s"], "operator before reload")
		with open(pol, "w") as f:
			f.write("role read-only uid nobody\nrole bogus any\n")
		env.d.signal(signal.SIGHUP)
		qb.wait_for(lambda: "reload failed, policy" in env.d.output(),
		    "reload refusal")
		check(pol + ":2: unknown role 'bogus'" in env.d.output(),
		    "refusal without line: %s" % env.d.tail(5))
		check("return" in tenant_run("nobody", "nogroup",
		    env.d.control, stop)["s"], "old policy lost on a bad "
		    "reload")
		# a good one takes over
		with open(pol, "w") as f:
			f.write("role read-only uid nobody\n")
		env.d.signal(signal.SIGHUP)
		qb.wait_for(lambda: "configuration reloaded" in
		    env.d.output(), "reload")
		refused(tenant_run("nobody", "nogroup", env.d.control,
		    stop)["s"], "stop after the read-only reload")
		env.finish()


if __name__ == "__main__":
	qb.main([test_guards_qemu, test_roles_visibility,
	    test_supplementary_gid, test_policy_check,
	    test_bad_policy_refused])
