"""Real nats-server for the fleet tests: a single JetStream node on a free
loopback port with its store in the harness dir, or a three-node
JetStream cluster on loopback; the fleet tool (qmpfleet) as consumer and
fleet-command client; and the checks every scenario ends with."""

import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.request

import qb
from qb import check, wait_for


def free_port():
	s = socket.socket()
	s.bind(("127.0.0.1", 0))
	port = s.getsockname()[1]
	s.close()
	return port


def nats_server_path():
	p = shutil.which("nats-server")
	if p is None:
		raise qb.Failure("nats-server not installed (Debian: nats-server;"
		    " tools/lib.sh QB_PKGS has it)")
	return p


class NatsNode:
	"""One nats-server -js. Stop and start keep port and store, so a
	restarted node is the same server to its clients."""

	def __init__(self, h, name="n1", cluster=None, extra=()):
		self.h = h
		self.name = name
		self.port = free_port()
		self.mport = free_port()
		self.cport = free_port() if cluster is not None else None
		self.store = h.path("nats-" + name)
		os.makedirs(self.store, exist_ok=True)
		self.cluster = cluster
		self.extra = list(extra)
		self.proc = None

	@property
	def url(self):
		return "nats://127.0.0.1:%d" % self.port

	def argv(self):
		a = [nats_server_path(), "-js", "-a", "127.0.0.1",
		    "-p", str(self.port), "-m", str(self.mport),
		    "-sd", self.store, "-n", self.name]
		if self.cluster is not None:
			a += ["--cluster_name", "qbc", "--cluster",
			    "nats://127.0.0.1:%d" % self.cport, "--routes",
			    ",".join("nats://127.0.0.1:%d" % n.cport
			    for n in self.cluster if n is not self)]
		return a + self.extra

	def start(self, wait=True):
		self.proc = qb.Proc(self.h, self.argv(), "nats-" + self.name)
		if wait:
			self.wait_healthy()

	def healthy(self):
		try:
			with urllib.request.urlopen("http://127.0.0.1:%d/healthz"
			    % self.mport, timeout=2) as r:
				return r.status == 200
		except Exception:
			return False

	def wait_healthy(self):
		wait_for(lambda: not self.proc.alive() or self.healthy(),
		    "nats-server %s healthy" % self.name, timeout=qb.TIMEOUT * 2,
		    interval=0.2)
		check(self.proc.alive(), "nats-server exited: " +
		    self.proc.tail())

	def stop(self, sig=None):
		if sig is None:
			self.proc.kill()
		else:
			self.proc.signal(sig)
			self.proc.wait()


def single(h, **kw):
	n = NatsNode(h, **kw)
	n.start()
	return n


def cluster(h, size=3):
	nodes = []
	for i in range(size):
		nodes.append(NatsNode(h, "c%d" % (i + 1), cluster=nodes))
	for n in nodes:
		n.start(wait=False)
	for n in nodes:
		n.wait_healthy()
	return nodes


def urls(nodes):
	return ",".join(n.url for n in nodes)


def fleet_run(args, timeout=None):
	p = subprocess.run([qb.program("qmpfleet")] + list(args),
	    capture_output=True, timeout=timeout or qb.TIMEOUT * 2,
	    stdin=subprocess.DEVNULL)
	return p.returncode, p.stdout.decode(), p.stderr.decode()


def request(url, host, cmd, timeout_ms=10000):
	"""A fleet command; the parsed reply."""
	rc, out, err = fleet_run(["request", "--nats", url, "--host", host,
	    "--timeout-ms", str(timeout_ms), json.dumps(cmd)])
	check(rc == 0, "qmpfleet request %r: rc %d %s" % (cmd, rc, err))
	return json.loads(out)


class Consumer:
	"""qmpfleet events in the background, on a durable cursor; lines
	collected. stop() ends it as an operator would (SIGTERM)."""

	def __init__(self, h, url, durable="t", extra=(), state=None):
		self.h = h
		self.url = url
		self.durable = durable
		# what it printed, for the next run on this durable
		self.state = state or h.path("state-" + durable)
		self.extra = list(extra)
		self.lines = []
		self.start()

	def start(self):
		argv = [qb.program("qmpfleet"), "events", "--nats", self.url,
		    "--durable", self.durable, "--state", self.state] + self.extra
		self.p = subprocess.Popen(argv, stdout=subprocess.PIPE,
		    stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
		self.t = threading.Thread(target=self._read, daemon=True)
		self.t.start()

	def _read(self):
		for line in self.p.stdout:
			self.lines.append(json.loads(line))

	def wait(self):
		"""For a consumer that ends by itself (--idle-ms)."""
		self.p.wait(qb.TIMEOUT * 2)
		self.t.join(qb.TIMEOUT)

	def stop(self):
		self.p.terminate()
		try:
			self.p.wait(qb.TIMEOUT)
		except subprocess.TimeoutExpired:
			self.p.kill()
			raise qb.Failure("qmpfleet events ignored SIGTERM")
		self.t.join(qb.TIMEOUT)
		err = self.p.stderr.read().decode()
		check(self.p.returncode == 0, "qmpfleet events: rc %d %s" %
		    (self.p.returncode, err))

	def kill(self):
		if self.p.poll() is None:
			self.p.kill()
			self.p.wait()


def host_of(line):
	return line["subject"].split(".")[1]


def event_log_last(d):
	"""The broker's newest seq and its epoch (query-event-log)."""
	c = qb.Qmp(d.control)
	c.negotiate()
	r = c.cmd("query-event-log")
	c.close()
	return r["epoch"], r["last"]


def wait_all(cons, expect, what="the fleet consumer to have every event"):
	"""expect: {host: (epoch, last)}; waits until the consumer has seen
	every seq 1..last of every host (a message whose delivery a dead
	server lost comes again after the consumer's ack wait)."""
	def done():
		seen = {}
		for l in list(cons.lines):
			e = l["event"]
			k = (host_of(l), e.get("epoch"))
			seen.setdefault(k, set()).add(e.get("seq", 0))
		return all(seen.get((hst, ep), set()) >= set(range(1, last + 1))
		    for hst, (ep, last) in expect.items())
	wait_for(done, what, timeout=qb.TIMEOUT * 4, interval=0.2)


def check_exactly_once(lines, expect, stream_order=True):
	"""Every event of every host exactly once, seq 1..last with no gap
	within each host's epoch, and in seq order per VM (stream order;
	not with stream_order=False: docs/events.md does not promise it
	across a cluster leader change that lost a message the stream had
	not stored while a later one was stored).
	expect: {host: (epoch, last)} for the current epochs."""
	per = {}
	for l in lines:
		e = l["event"]
		per.setdefault((host_of(l), e["epoch"]), []).append(
		    (l["stream_seq"], e["seq"], e.get("vm"), l["subject"]))
	for hst, (ep, last) in expect.items():
		got = per.get((hst, ep), [])
		seqs = sorted(s for _, s, _, _ in got)
		dups = len(seqs) - len(set(seqs))
		check(dups == 0, "host %s: %d events twice" % (hst, dups))
		missing = sorted(set(range(1, last + 1)) - set(seqs))
		check(not missing, "host %s: %d seqs missing, first %r" %
		    (hst, len(missing), missing[:10]))
		check(seqs[-1] == last, "host %s: seq %d past the log's last %d"
		    % (hst, seqs[-1], last))
		# Per VM: stream order is seq order.
		if not stream_order:
			continue
		byvm = {}
		for ss, s, vm, _ in sorted(got):
			byvm.setdefault(vm, []).append(s)
		for vm, ss in byvm.items():
			check(ss == sorted(ss), "host %s vm %s: out of order" %
			    (hst, vm))
	return sum(len(v) for v in per.values())


# ---- credentials for nats-server's auth modes, made here with openssl ----

def openssl(*args, **kw):
	p = subprocess.run(["openssl"] + list(args), capture_output=True,
	    **kw)
	check(p.returncode == 0, "openssl %s: %s" % (" ".join(args),
	    p.stderr.decode()))
	return p.stdout


def tls_files(h, d):
	"""A CA, a server certificate for 127.0.0.1 and a client
	certificate, all by that CA; and a second CA nobody uses (for a
	client that trusts the wrong one). Returns {name: path}."""
	os.makedirs(d, exist_ok=True)
	f = {k: os.path.join(d, k) for k in ("ca.pem", "ca.key", "srv.pem",
	    "srv.key", "cli.pem", "cli.key", "other.pem", "other.key",
	    "ext")}
	ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
	    "-nodes"]
	for ca in ("ca", "other"):
		openssl("req", "-x509", *ec, "-keyout", f[ca + ".key"], "-out",
		    f[ca + ".pem"], "-days", "2", "-subj", "/CN=qb-" + ca)
	for who, ext in (("srv", "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
	    "extendedKeyUsage=serverAuth\n"), ("cli",
	    "extendedKeyUsage=clientAuth\n")):
		with open(f["ext"], "w") as e:
			e.write(ext)
		csr = os.path.join(d, who + ".csr")
		openssl("req", *ec, "-keyout", f[who + ".key"], "-out", csr,
		    "-subj", "/CN=qb-" + who)
		openssl("x509", "-req", "-in", csr, "-CA", f["ca.pem"],
		    "-CAkey", f["ca.key"], "-CAcreateserial", "-out",
		    f[who + ".pem"], "-days", "2", "-extfile", f["ext"])
	return f


def _crc16(b):
	crc = 0
	for x in b:
		crc ^= x << 8
		for _ in range(8):
			crc = ((crc << 1) ^ 0x1021 if crc & 0x8000 else
			    crc << 1) & 0xffff
	return crc


def _b32(raw):
	import base64
	raw += _crc16(raw).to_bytes(2, "little")
	return base64.b32encode(raw).decode().rstrip("=")


NKEY_PREFIX = {"operator": 14 << 3, "account": 0, "user": 20 << 3}


class NKey:
	"""An ed25519 key made by openssl, in nkeys' encoding: public key
	("U..."/"A..."/"O...") and seed ("SU..."), and a signer."""

	def __init__(self, d, name, kind):
		self.pem = os.path.join(d, name + ".pem")
		openssl("genpkey", "-algorithm", "ed25519", "-out", self.pem)
		priv = openssl("pkey", "-in", self.pem, "-outform", "DER")
		pub = openssl("pkey", "-in", self.pem, "-pubout", "-outform",
		    "DER")
		p = NKEY_PREFIX[kind]
		self.public = _b32(bytes([p]) + pub[-32:])
		self.seed = _b32(bytes([(18 << 3) | (p >> 5), (p & 31) << 3]) +
		    priv[-32:])
		self.seed_file = os.path.join(d, name + ".seed")
		with open(self.seed_file, "w") as f:
			f.write(self.seed + "\n")
		os.chmod(self.seed_file, 0o600)

	def sign(self, data):
		# ed25519 signs in one shot: openssl wants a file, not a pipe
		path = self.pem + ".in"
		with open(path, "wb") as f:
			f.write(data)
		return openssl("pkeyutl", "-sign", "-rawin", "-inkey", self.pem,
		    "-in", path)


def _b64u(b):
	import base64
	return base64.urlsafe_b64encode(b).decode().rstrip("=")


def jwt(issuer, subject, name, nats):
	"""A NATS JWT (alg ed25519-nkey) for subject's public key, signed
	by issuer."""
	import base64
	import hashlib
	claims = {"iat": int(time.time()), "iss": issuer.public,
	    "name": name, "sub": subject.public, "nats": nats}
	claims["jti"] = base64.b32encode(hashlib.sha256(json.dumps(claims,
	    sort_keys=True).encode()).digest()).decode().rstrip("=")
	head = _b64u(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"})
	    .encode()) + "." + _b64u(json.dumps(claims).encode())
	return head + "." + _b64u(issuer.sign(head.encode()))


def operator_setup(d):
	"""Operator mode: an operator, a system account, an account with
	JetStream, a user of it in a .creds file, and a user of an account
	the server does not know. Returns (server config text, creds path,
	stranger's creds path, the account's public key)."""
	os.makedirs(d, exist_ok=True)
	op = NKey(d, "op", "operator")
	sys_acc = NKey(d, "sys", "account")
	acc = NKey(d, "acc", "account")
	ghost = NKey(d, "ghost", "account")
	lim = {"subs": -1, "data": -1, "payload": -1, "imports": -1,
	    "exports": -1, "wildcards": True, "conn": -1, "leaf": -1}
	op_jwt = jwt(op, op, "qb-op", {"type": "operator", "version": 2,
	    "system_account": sys_acc.public})
	sys_jwt = jwt(op, sys_acc, "SYS", {"type": "account", "version": 2,
	    "limits": lim})
	acc_jwt = jwt(op, acc, "QB", {"type": "account", "version": 2,
	    "limits": dict(lim, mem_storage=-1, disk_storage=-1,
	    streams=-1, consumer=-1)})
	def creds(name, account):
		u = NKey(d, name, "user")
		t = jwt(account, u, name, {"type": "user", "version": 2,
		    "pub": {}, "sub": {}, "subs": -1, "data": -1,
		    "payload": -1})
		path = os.path.join(d, name + ".creds")
		with open(path, "w") as f:
			f.write("-----BEGIN NATS USER JWT-----\n%s\n------END NATS"
			    " USER JWT------\n\n-----BEGIN USER NKEY SEED-----\n"
			    "%s\n------END USER NKEY SEED------\n" % (t, u.seed))
		os.chmod(path, 0o600)
		return path
	opf = os.path.join(d, "op.jwt")
	with open(opf, "w") as f:
		f.write(op_jwt + "\n")
	conf = ('operator: "%s"\nsystem_account: %s\nresolver: MEMORY\n'
	    'resolver_preload: {\n  %s: "%s"\n  %s: "%s"\n}\n' % (opf,
	    sys_acc.public, sys_acc.public, sys_jwt, acc.public, acc_jwt))
	return conf, creds("broker", acc), creds("stranger", ghost), acc.public


def stream_messages(node, account=None, stream="QMP_EVENTS"):
	"""The stream's message count from the server's monitoring port
	(-1: no such stream yet)."""
	url = ("http://127.0.0.1:%d/jsz?accounts=true&streams=true" %
	    node.mport)
	if account is not None:
		url += "&acc=" + account
	with urllib.request.urlopen(url, timeout=5) as r:
		j = json.load(r)
	for a in j.get("account_details") or []:
		for s in a.get("stream_detail") or []:
			if s.get("name") == stream:
				return s["state"]["messages"]
	return -1
