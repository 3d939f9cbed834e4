#!/usr/bin/env python3
"""Metrics: GET /metrics (--metrics-listen) and query-stats/qmpctl stats.

The exposition is checked by promtool and scraped by a real Prometheus,
whose HTTP API must then show a counter this test moved; counters are
compared with what the test did (commands sent, their outcome), never
with a hard-coded figure. Bad HTTP input gets a clear status, and idle or
slow HTTP clients neither block the control socket nor hold more than
metrics-max-conns of the daemon's fds. Every case ends the standard way
(qb.Env.finish: fds back to the baseline, exit 0 on SIGTERM).
"""

import http.client
import json
import os
import random
import re
import resource
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request

import qb
from qb import check, Env

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def free_port():
	s = socket.socket()
	s.bind(("127.0.0.1", 0))
	port = s.getsockname()[1]
	s.close()
	return port


def http_req(port, path="/metrics", method="GET", body=None):
	"""(status, headers, body) of one request on a fresh connection."""
	c = http.client.HTTPConnection("127.0.0.1", port, timeout=qb.TIMEOUT)
	try:
		c.request(method, path, body=body)
		r = c.getresponse()
		return r.status, dict(r.getheaders()), r.read().decode()
	finally:
		c.close()


def parse(text):
	"""{(name, frozenset(labels)): value} of every sample; TYPE lines
	by family."""
	samples, types = {}, {}
	for line in text.splitlines():
		if line.startswith("# TYPE "):
			_, _, fam, t = line.split(" ", 3)
			types[fam] = t
			continue
		if not line or line.startswith("#"):
			continue
		m = SAMPLE.match(line)
		check(m is not None, "not a sample line: %r" % line)
		labels = frozenset(LABEL.findall(m.group(3) or ""))
		samples[(m.group(1), labels)] = float(m.group(4))
	return samples, types


def value(samples, name, **labels):
	return samples.get((name, frozenset(labels.items())))


def settle(env, c):
	"""The samples once the broker's own commands are done: it asks each
	VM's run state as its monitor becomes ready (vm_status.c), and those
	count like any other; tests count from here."""
	def idle():
		return not any(v["in-flight"] for v in
		    c.cmd("query-stats")["vms"])
	qb.wait_for(idle, "the broker's own commands to finish",
	    interval=0.1)
	return parse(scrape(env))[0]


def moved(samples, base, name, **labels):
	"""How far a counter moved since base (absent there: from 0)."""
	v = value(samples, name, **labels)
	return None if v is None else v - (value(base, name, **labels) or 0)


def series(samples, name):
	return [dict(k[1]) for k in samples if k[0] == name]


def promtool_ok(text):
	p = subprocess.run(["promtool", "check", "metrics"], input=text.encode(),
	    capture_output=True, timeout=qb.TIMEOUT)
	check(p.returncode == 0, "promtool check metrics: %s %s" %
	    (p.stdout.decode(), p.stderr.decode()))


def metrics_env(name, extra=(), **kw):
	port = free_port()
	env = Env(name, args=["--metrics-listen", "127.0.0.1:%d" % port] +
	    list(extra), **kw)
	env.port = port
	return env


def add_vm(env, c, name, **kw):
	f = env.h.fake(name, **kw)
	c.cmd("vm-add", {"name": name, "socket": f.path})
	qb.wait_vm_state(c, name, "ready")
	return f


def scrape(env):
	st, hdrs, body = http_req(env.port)
	check(st == 200, "GET /metrics: %d %s" % (st, body[:200]))
	check(hdrs.get("Content-Type", "").startswith("text/plain; "
	    "version=0.0.4"), "content type: %r" % hdrs)
	return body


def test_promtool_and_counts():
	"""Counters move by what was done, per VM and in total, and the
	whole exposition passes promtool; a removed VM's commands stay in
	the totals (a counter never goes down)."""
	with metrics_env("metrics_counts") as env:
		c = env.d.client()
		add_vm(env, c, "vm1")
		add_vm(env, c, "vm-2")
		b = settle(env, c)
		n_ok = random.randint(3, 9)
		for _ in range(n_ok):
			c.cmd("vm-execute", {"vm": "vm1", "command":
			    "query-status"})
		n_err = random.randint(1, 4)
		for _ in range(n_err):
			c.cmd_error("vm-execute", {"vm": "vm1", "command":
			    "no-such-command"})
		c.cmd("vm-execute", {"vm": "vm-2", "command": "query-status"})
		text = scrape(env)
		promtool_ok(text)
		s, types = parse(text)
		check(moved(s, b, "qmpbroker_vm_commands_total", vm="vm1",
		    command="query-status", outcome="ok") == n_ok,
		    "vm1 query-status ok")
		check(moved(s, b, "qmpbroker_vm_commands_total", vm="vm1",
		    command="other", outcome="error") == n_err,
		    "vm1 unknown commands counted as other/error")
		check(moved(s, b, "qmpbroker_commands_total",
		    command="query-status", outcome="ok") == n_ok + 1,
		    "query-status total over both VMs")
		check(moved(s, b, "qmpbroker_vm_command_duration_seconds_count",
		    vm="vm1") == n_ok + n_err, "vm1 latency count")
		check(value(s, "qmpbroker_vm_monitor_state", vm="vm-2",
		    state="ready") == 1, "vm-2 ready")
		check(value(s, "qmpbroker_vm_monitor_state", vm="vm-2",
		    state="disconnected") == 0, "vm-2 not disconnected")
		check(value(s, "qmpbroker_vms", state="ready") == 2, "2 ready")
		check(value(s, "qmpbroker_clients", kind="control") >= 1,
		    "control clients")
		check(value(s, "qmpbroker_open_fds") > 0, "open fds")
		check(value(s, "qmpbroker_resident_memory_bytes") > 0, "rss")
		for fam, t in (("qmpbroker_vm_commands_total", "counter"),
		    ("qmpbroker_vm_command_duration_seconds", "histogram"),
		    ("qmpbroker_loop_lag_seconds", "histogram"),
		    ("qmpbroker_hotplug_operations_total", "counter"),
		    ("qmpbroker_events_dropped_total", "counter"),
		    ("qmpbroker_client_queued_bytes", "gauge")):
			check(types.get(fam) == t, "%s is a %s" % (fam, t))
		c.cmd("vm-remove", {"name": "vm1"})
		s, _ = parse(scrape(env))
		check(series(s, "qmpbroker_vm_commands_total") ==
		    [{"vm": "vm-2", "command": "query-status", "outcome": "ok"}],
		    "vm1's series gone with it")
		check(moved(s, b, "qmpbroker_commands_total",
		    command="query-status", outcome="ok") == n_ok + 1,
		    "a removed VM's commands stay in the total")
		c.close()
		env.finish()


def test_cardinality():
	"""Random command names cannot grow the series: they all land in
	"other", and the exposition keeps its size."""
	with metrics_env("metrics_card") as env:
		c = env.d.client()
		add_vm(env, c, "vm1")
		def burst(n):
			for _ in range(n):
				name = "x-%08x" % random.getrandbits(32)
				c.cmd_error("vm-execute", {"vm": "vm1",
				    "command": name})
		burst(100)
		s1, _ = parse(scrape(env))
		burst(300)
		s2, _ = parse(scrape(env))
		check(set(s1) == set(s2), "300 more names added series: %r" %
		    (set(s2) - set(s1)))
		check(value(s2, "qmpbroker_vm_commands_total", vm="vm1",
		    command="other", outcome="error") == 400,
		    "400 invented names in other")
		names = {d["command"] for d in
		    series(s2, "qmpbroker_commands_total")}
		check(len(names) < 100 and "other" in names,
		    "command label values: %d" % len(names))
		c.close()
		env.finish()


def test_per_vm_off():
	"""--metrics-per-vm no: totals only, whatever the number of VMs."""
	with metrics_env("metrics_novm", extra=["--metrics-per-vm=no"]) \
	    as env:
		c = env.d.client()
		add_vm(env, c, "vm1")
		b = settle(env, c)
		c.cmd("vm-execute", {"vm": "vm1", "command": "query-status"})
		text = scrape(env)
		promtool_ok(text)
		check("qmpbroker_vm_" not in text, "per-VM series present")
		s, _ = parse(text)
		check(moved(s, b, "qmpbroker_commands_total",
		    command="query-status", outcome="ok") == 1, "total")
		c.close()
		env.finish()


def test_bad_http():
	"""Another path: 404; another method: 405 with Allow; garbage: an
	HTTP error or a close; each counted; the daemon carries on."""
	with metrics_env("metrics_bad") as env:
		st, _, body = http_req(env.port, "/")
		check(st == 404 and "/metrics" in body, "GET /: %d" % st)
		st, _, _ = http_req(env.port, "/metrics/x")
		check(st == 404, "GET /metrics/x: %d" % st)
		st, hdrs, _ = http_req(env.port, "/metrics", "POST", b"x=1")
		check(st == 405 and hdrs.get("Allow") == "GET, HEAD",
		    "POST: %d %r" % (st, hdrs))
		st, _, _ = http_req(env.port, "/metrics", "DELETE")
		check(st == 405, "DELETE: %d" % st)
		st, _, body = http_req(env.port, "/metrics", "HEAD")
		check(st == 200 and body == "", "HEAD: %d" % st)
		for junk in (b"\x00\xff garbage\r\n\r\n",
		    b"GET /metrics HTTP/1.1\r\n" + b"X: " + b"a" * 20000 +
		    b"\r\n\r\n"):
			s = socket.create_connection(("127.0.0.1", env.port))
			s.settimeout(qb.TIMEOUT)
			try:
				s.sendall(junk)
			except OSError:
				pass	# closed on us while sending: fine
			got = b""
			try:
				while True:
					b = s.recv(4096)
					if not b:
						break
					got += b
			except OSError:
				pass
			s.close()
			check(got == b"" or re.match(rb"HTTP/1\.[01] 4\d\d", got),
			    "junk answered with %r" % got[:80])
		s, _ = parse(scrape(env))
		check(value(s, "qmpbroker_http_requests_total", code="404") == 2,
		    "404s counted")
		check(value(s, "qmpbroker_http_requests_total", code="405") == 2,
		    "405s counted")
		env.finish()


def test_slow_and_idle_clients():
	"""A slowloris and 1,000 idle HTTP connections: the control socket
	still answers while they are open, the daemon holds at most
	metrics-max-conns of them, the idle ones are closed after
	metrics-timeout-ms, and a scrape works once they are gone."""
	cap = 16
	soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
	if soft < 1200:
		resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096),
		    hard))
	with metrics_env("metrics_idle", extra=["--metrics-max-conns",
	    str(cap), "--metrics-timeout-ms", "1000"]) as env:
		c = env.d.client()
		add_vm(env, c, "vm1")
		base = qb.fd_count(env.d.pid)
		slow = socket.create_connection(("127.0.0.1", env.port))
		slow.sendall(b"GET /metr")
		# evhttp closes it after the timeout: EOF, with no reply
		slow.settimeout(qb.TIMEOUT)
		check(slow.recv(100) == b"", "slowloris got an answer")
		slow.close()
		idle = []
		for _ in range(1000):
			s = socket.socket()
			s.setblocking(False)
			try:
				s.connect(("127.0.0.1", env.port))
			except (BlockingIOError, InterruptedError):
				pass
			except OSError:
				s.close()
				continue
			idle.append(s)
		# the loop serves the control socket meanwhile
		for _ in range(5):
			check(c.cmd("vm-execute", {"vm": "vm1", "command":
			    "query-status"}) is not None, "control command")
		now = qb.fd_count(env.d.pid)
		check(now <= base + cap + 2, "daemon holds %d fds for HTTP "
		    "(cap %d)" % (now - base, cap))
		for s in idle:
			s.close()
		s, _ = parse(scrape(env))
		check(value(s, "qmpbroker_http_connection_cap_hits_total") >= 1,
		    "the cap was never reached")
		check(value(s, "qmpbroker_http_connections") <= cap,
		    "connections over the cap")
		c.close()
		env.finish()


def test_unix_and_loopback():
	"""unix:PATH serves the same; a non-loopback HOST is refused at
	start unless metrics-remote, and a malformed ADDR too."""
	h = qb.Harness("metrics_addr")
	try:
		for addr, why in (("192.0.2.1:9100", "not a loopback"),
		    ("nonsense", "expected unix:PATH or HOST:PORT"),
		    ("unix:", "socket path")):
			d = h.daemon(args=["--metrics-listen", addr], wait=False,
			    tag="bad%d" % h.next_seq())
			d.wait_refused()
			check(why in d.output(), "%s: %s" % (addr, d.tail()))
	finally:
		h.cleanup()
	with qb.Harness("metrics_unix2") as h:
		path = h.path("metrics.sock")
		d = h.daemon(args=["--metrics-listen", "unix:" + path])
		check(os.stat(path).st_mode & 0o777 == 0o660, "socket mode")
		s = socket.socket(socket.AF_UNIX)
		s.settimeout(qb.TIMEOUT)
		s.connect(path)
		s.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
		got = b""
		while True:
			b = s.recv(65536)
			if not b:
				break
			got += b
		s.close()
		head, _, body = got.partition(b"\r\n\r\n")
		check(head.startswith(b"HTTP/1.0 200") or
		    head.startswith(b"HTTP/1.1 200"), "unix: %r" % head[:60])
		promtool_ok(body.decode())
		d.terminate()
		check(not os.path.exists(path), "metrics socket left behind")


def test_prometheus():
	"""A real Prometheus scrapes the broker every second; its HTTP API
	then shows the counter this test moved, and its new value after the
	test moved it again."""
	prom = shutil.which("prometheus")
	if prom is None:
		raise qb.Skip("prometheus not installed")
	with metrics_env("metrics_prom") as env:
		c = env.d.client()
		add_vm(env, c, "vm1")
		for _ in range(random.randint(2, 6)):
			c.cmd("vm-execute", {"vm": "vm1", "command":
			    "query-status"})
		# What the broker itself asked (the run state on connect,
		# vm_status.c) counts too: the figure Prometheus must show
		# is the broker's own, and the replies are in order, so
		# nothing is still in flight.
		s, _ = parse(scrape(env))
		n = int(value(s, "qmpbroker_vm_commands_total", vm="vm1",
		    command="query-status", outcome="ok"))
		ppath = env.h.path("prometheus.yml")
		with open(ppath, "w") as f:
			f.write("global:\n  scrape_interval: 1s\n"
			    "  scrape_timeout: 1s\n"
			    "scrape_configs:\n  - job_name: qmpbroker\n"
			    "    static_configs:\n"
			    "      - targets: ['127.0.0.1:%d']\n" % env.port)
		pport = free_port()
		p = qb.Proc(env.h, [prom, "--config.file=" + ppath,
		    "--storage.tsdb.path=" + env.h.path("tsdb"),
		    "--web.listen-address=127.0.0.1:%d" % pport,
		    "--log.level=warn"], "prometheus")
		q = 'qmpbroker_vm_commands_total{vm="vm1",' \
		    'command="query-status",outcome="ok"}'

		def prom_value():
			url = "http://127.0.0.1:%d/api/v1/query?%s" % (pport,
			    urllib.parse.urlencode({"query": q}))
			try:
				with urllib.request.urlopen(url,
				    timeout=5) as r:
					j = json.load(r)
			except OSError:
				return None
			res = j.get("data", {}).get("result", [])
			return float(res[0]["value"][1]) if res else None

		qb.wait_for(lambda: prom_value() == n,
		    "Prometheus to show %s = %d" % (q, n), interval=0.5)
		for _ in range(3):
			c.cmd("vm-execute", {"vm": "vm1", "command":
			    "query-status"})
		qb.wait_for(lambda: prom_value() == n + 3,
		    "Prometheus to show %s = %d" % (q, n + 3), interval=0.5)
		p.kill()	# its keep-alive connection goes with it
		c.close()
		env.finish()


def test_qmpctl_stats():
	"""qmpctl stats lists every VM, slowest first; --json gives the
	figures /metrics shows."""
	with metrics_env("metrics_stats") as env:
		c = env.d.client()
		add_vm(env, c, "fast")
		add_vm(env, c, "slow", fault_file="delay-cmd.fault")
		add_vm(env, c, "idle")
		settle(env, c)
		base = {v["name"]: v["commands"] for v in
		    c.cmd("query-stats")["vms"]}
		for vm in ("fast", "slow", "fast"):
			c.cmd("vm-execute", {"vm": vm, "command":
			    "query-status"})
		rc, out, err = qb.qmpctl(["stats"], sock=env.d.control)
		check(rc == 0, "qmpctl stats: %d %s" % (rc, err))
		rows = [l.split() for l in out.splitlines()]
		hdr = [i for i, r in enumerate(rows) if r and r[0] == "NAME"]
		check(len(hdr) == 1, "no table header: %r" % out)
		names = [r[0] for r in rows[hdr[0] + 1:] if r]
		# slow first; fast and idle may tie (both answer at once, and
		# the broker asked each VM itself once)
		check(names[0] == "slow" and sorted(names[1:]) ==
		    ["fast", "idle"], "order: %r" % names)
		rc, out, err = qb.qmpctl(["--json", "stats"],
		    sock=env.d.control)
		check(rc == 0, "qmpctl --json stats: %d %s" % (rc, err))
		j = json.loads(out)
		s, _ = parse(scrape(env))
		for vm in j["vms"]:
			check(vm["commands"] == value(s,
			    "qmpbroker_vm_command_duration_seconds_count",
			    vm=vm["name"]), "%s: commands differ" % vm["name"])
		check({v["name"]: v["commands"] - base[v["name"]] for v in
		    j["vms"]} == {"fast": 2, "slow": 1, "idle": 0},
		    "commands: %r, base %r" % (j, base))
		rc, out, err = qb.qmpctl(["stats", "nosuch"], sock=env.d.control)
		check(rc == 1, "stats of an unknown VM: %d" % rc)
		c.close()
		env.finish()


def raise_nofile(n):
	soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
	if soft < n:
		resource.setrlimit(resource.RLIMIT_NOFILE, (min(n, hard), hard))


def read_chunked(sock, rest):
	"""The body of an HTTP/1.1 chunked reply whose head is read; rest:
	what was read past the head."""
	buf, body = rest, []
	def need(n):
		nonlocal buf
		while len(buf) < n:
			b = sock.recv(1 << 16)
			check(b != b"", "EOF inside the chunked body")
			buf += b
	while True:
		while b"\r\n" not in buf:
			need(len(buf) + 1)
		line, _, buf = buf.partition(b"\r\n")
		size = int(line.split(b";")[0], 16)
		need(size + 2)
		check(buf[size:size + 2] == b"\r\n", "chunk not ended by CRLF")
		body.append(buf[:size])
		buf = buf[size + 2:]
		if size == 0:
			return b"".join(body)


CHURN_VMS = 1000


def test_scrape_during_churn():
	"""A scrape that the client stops reading part-way while half the
	VMs go and others come: the control socket answers meanwhile (the
	loop does not wait on the scrape), the scrape is still being sent
	(in parts, not built whole), and what finally comes is a valid
	exposition in which every VM that stayed is in every per-VM family
	once, and no VM is twice."""
	n = CHURN_VMS
	raise_nofile(3 * n + 500)
	# the scrape waits on the churn: not a slow reader to close
	with metrics_env("metrics_churn", extra=["--vm-sockets=no",
	    "--metrics-timeout-ms", "300000"]) as env:
		c = env.d.client()
		d = env.h.path("vms")
		os.mkdir(d)
		fake = qb.Proc(env.h, [qb.program("fake-qemu"), "--sockets", d,
		    "--count", str(n)], "fake-qemu")
		sock = lambda i: os.path.join(d, "vm%d.qmp" % i)
		qb.wait_for(lambda: os.path.exists(sock(n - 1)),
		    "fake-qemu's sockets")
		def pipeline(cmds):
			for i, (name, args) in enumerate(cmds):
				c.send_cmd(name, args, id=i)
			for i in range(len(cmds)):
				r = c.wait_reply(i)
				check("return" in r, "%s: %r" % (cmds[i], r))
		pipeline([("vm-add", {"name": "vm%d" % i, "socket": sock(i)})
		    for i in range(n)])
		def ready():
			return sum(v.get("state") == "ready" for v in
			    c.cmd("query-vms")) == n
		qb.wait_for(ready, "%d VMs ready" % n, interval=0.5)

		# a small window: the broker can send little ahead of us
		s = socket.socket()
		s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
		s.settimeout(qb.TIMEOUT)
		s.connect(("127.0.0.1", env.port))
		s.sendall(b"GET /metrics HTTP/1.1\r\nHost: qb\r\n"
		    b"Connection: close\r\n\r\n")
		got = b""
		while b"\r\n\r\n" not in got or len(got) < 65536:
			b = s.recv(65536)
			check(b != b"", "EOF after %d bytes" % len(got))
			got += b
		head, _, rest = got.partition(b"\r\n\r\n")
		check(head.startswith(b"HTTP/1.1 200") and
		    b"Transfer-Encoding: chunked" in head, "head: %r" % head)
		# churn while the scrape waits on us
		gone = range(n // 2, n)
		pipeline([("vm-remove", {"name": "vm%d" % i}) for i in gone])
		pipeline([("vm-add", {"name": "new%d" % i, "socket": sock(i)})
		    for i in gone[:n // 4]])
		st, _ = parse(scrape(env))
		check(value(st, "qmpbroker_http_scrapes_in_progress") == 2,
		    "the stalled scrape is not in progress: %r" %
		    value(st, "qmpbroker_http_scrapes_in_progress"))
		body = read_chunked(s, rest).decode()
		s.close()
		promtool_ok(body)
		samples, _ = parse(body)
		stayed = {"vm%d" % i for i in range(n // 2)}
		fams = ("qmpbroker_vm_reconnects_total",
		    "qmpbroker_vm_command_duration_seconds_count",
		    "qmpbroker_vm_events_total")
		for fam in fams:
			vms = [dict(k[1])["vm"] for k in samples if k[0] == fam]
			check(len(vms) == len(set(vms)), "%s: a VM twice" % fam)
			check(stayed <= set(vms), "%s: %d VMs that stayed "
			    "missing" % (fam, len(stayed - set(vms))))
		# clients that go mid-way: their scrapes end with them (no
		# leak, no fd left: env.finish and ASan say)
		for _ in range(3):
			s = socket.socket()
			s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
			s.settimeout(qb.TIMEOUT)
			s.connect(("127.0.0.1", env.port))
			s.sendall(b"GET /metrics HTTP/1.1\r\nHost: qb\r\n\r\n")
			check(len(s.recv(65536)) > 0, "no reply")
			s.close()
		qb.wait_for(lambda: value(parse(scrape(env))[0],
		    "qmpbroker_http_scrapes_in_progress") == 1,
		    "the dropped scrapes to end", interval=0.2)
		# and the loop answered all along; the daemon is whole
		c.cmd("vm-execute", {"vm": "vm0", "command": "query-status"})
		c.close()
		fake.kill()
		env.finish()


def test_emfile():
	"""Out of fds, the metrics listener rests instead of spinning on
	accept (the daemon's CPU stays low), says so in a counter, and
	serves again once fds are back."""
	raise_nofile(4096)
	prlimit = "/usr/bin/prlimit"
	check(os.access(prlimit, os.X_OK), "prlimit (util-linux) missing")
	with metrics_env("metrics_emfile") as env:
		pid = env.d.pid
		lim = qb.fd_count(pid) + 6
		soft = resource.prlimit(pid, resource.RLIMIT_NOFILE)[0]
		subprocess.run([prlimit, "--pid", str(pid), "--nofile=%d:" %
		    lim], check=True)
		socks = []
		for _ in range(30):		# past the limit
			s = socket.socket()
			s.setblocking(False)
			try:
				s.connect(("127.0.0.1", env.port))
			except (BlockingIOError, InterruptedError):
				pass
			socks.append(s)
		qb.wait_for(lambda: qb.fd_count(pid) >= lim - 1,
		    "daemon at its fd limit")
		hz = os.sysconf("SC_CLK_TCK")
		def ticks():
			with open("/proc/%d/stat" % pid) as f:
				p = f.read().rsplit(")", 1)[1].split()
			return int(p[11]) + int(p[12])
		t0 = ticks()
		time.sleep(2)
		used = (ticks() - t0) / hz
		# a spinning loop burns ~2 s here, a resting one almost none
		check(used < 0.5, "daemon used %.2f s of CPU in 2 s at EMFILE "
		    "(spinning on accept?)" % used)
		for s in socks:
			s.close()
		subprocess.run([prlimit, "--pid", str(pid), "--nofile=%d:" %
		    soft], check=True)
		s, _ = parse(scrape(env))
		check(value(s, "qmpbroker_http_accept_pauses_total") >= 1,
		    "no pause counted")
		env.finish()


if __name__ == "__main__":
	qb.main([test_promtool_and_counts, test_cardinality, test_per_vm_off,
	    test_bad_http, test_slow_and_idle_clients, test_unix_and_loopback,
	    test_prometheus, test_qmpctl_stats, test_scrape_during_churn,
	    test_emfile])
