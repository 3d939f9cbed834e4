#!/usr/bin/env python3
"""The broker's NATS credentials against a real nats-server configured
for each (docs/events.md, docs/nats.md): TLS with a client certificate
(--nats-tls-ca/-cert/-key; certificates made here by openssl), an nkey
user (--nats-nkey and --nats-nkey-seed; the ed25519 key made by openssl,
in nkeys' encoding), and a user credentials file in operator mode
(--nats-creds; operator, account and user JWTs signed here).

Each mode: a broker with the right credentials gets every event of its
log into the stream (counted by the server's own monitoring port); a
broker with wrong ones (an untrusted CA, an nkey the server does not
know, a user of an account the server does not know) logs a clear line
saying why, and keeps serving local clients (a command and a
subscription). Could fail by: an option not passed to libnats, a
connection refused for the right credentials, a silent or misleading
log line, a broker that stops serving when NATS refuses it.
"""

import os

import natsh
import qb
from qb import check, wait_for


def local_ok(d):
	c = d.client()
	sub = c.cmd("subscribe", {})
	check("subscription" in sub, "subscribe: %r" % sub)
	c.cmd("query-vms")
	c.close()


def streamed(h, node, url, args, host, account=None):
	"""A broker with args streams its whole log into node's stream."""
	d = h.daemon(tag=host, args=["--nats", url, "--host-id", host] +
	    args)
	f = h.fake(host + "v")
	c = d.client()
	c.cmd("vm-add", {"name": "v", "socket": f.path})
	qb.wait_vm_state(c, "v", "ready")
	c.close()
	wait_for(lambda: "nats: connected to" in d.output(),
	    "%s connected: %s" % (host, d.output()[-400:]))
	last = natsh.event_log_last(d)[1]
	wait_for(lambda: natsh.stream_messages(node, account) >= last,
	    "%d events of %s in the stream" % (last, host))
	return d


def refused(h, url, args, host, words):
	"""A broker with wrong credentials: a log line with one of words,
	local clients served."""
	d = h.daemon(tag=host, args=["--nats", url, "--host-id", host] +
	    args)
	wait_for(lambda: "nats: cannot connect" in d.output(),
	    "a log line for %s: %s" % (host, d.output()[-400:]))
	line = [l for l in d.output().splitlines()
	    if "nats: cannot connect" in l][0]
	check(any(w in line for w in words), "%s: not a clear reason: %s" %
	    (host, line))
	print("# %s: %s" % (host, line[line.index("nats:"):]))
	local_ok(d)
	return d


def conf_node(h, name, text):
	path = h.path(name + ".conf")
	with open(path, "w") as f:
		f.write(text)
	return natsh.single(h, name=name, extra=["-c", path])


def test_tls():
	with qb.Harness("natstls") as h:
		f = natsh.tls_files(h, h.path("tls"))
		n = conf_node(h, "tls", 'tls {\n  cert_file: "%s"\n  key_file: '
		    '"%s"\n  ca_file: "%s"\n  verify: true\n}\n' % (f["srv.pem"],
		    f["srv.key"], f["ca.pem"]))
		url = "tls://127.0.0.1:%d" % n.port
		good = streamed(h, n, url, ["--nats-tls-ca", f["ca.pem"],
		    "--nats-tls-cert", f["cli.pem"], "--nats-tls-key",
		    f["cli.key"]], "ht")
		bad = refused(h, url, ["--nats-tls-ca", f["other.pem"],
		    "--nats-tls-cert", f["cli.pem"], "--nats-tls-key",
		    f["cli.key"]], "hx", ("certificate", "SSL", "TLS"))
		# No client certificate: the server (verify: true) refuses.
		nocert = refused(h, url, ["--nats-tls-ca", f["ca.pem"]], "hy",
		    ("closed the connection",))
		for d in (good, bad, nocert):
			d.terminate()


def test_nkey():
	with qb.Harness("natsnkey") as h:
		d = h.path("nkey")
		os.makedirs(d)
		user = natsh.NKey(d, "user", "user")
		other = natsh.NKey(d, "other", "user")
		n = conf_node(h, "nkey", "authorization {\n  users = [\n"
		    "    { nkey: %s }\n  ]\n}\n" % user.public)
		good = streamed(h, n, n.url, ["--nats-nkey", user.public,
		    "--nats-nkey-seed", user.seed_file], "hn")
		bad = refused(h, n.url, ["--nats-nkey", other.public,
		    "--nats-nkey-seed", other.seed_file], "hx",
		    ("uthorization",))
		check(other.seed not in bad.output(), "the seed is in the log")
		for x in (good, bad):
			x.terminate()


def test_creds():
	with qb.Harness("natscreds") as h:
		conf, creds, stranger, acc = natsh.operator_setup(h.path("op"))
		n = conf_node(h, "op", conf)
		good = streamed(h, n, n.url, ["--nats-creds", creds], "hc",
		    account=acc)
		bad = refused(h, n.url, ["--nats-creds", stranger], "hx",
		    ("uthorization", "account"))
		# A creds file that is not there is read at each connect.
		gone = refused(h, n.url, ["--nats-creds", h.path("none.creds")],
		    "hz", ("none.creds",))
		for x in (good, bad, gone):
			x.terminate()


if __name__ == "__main__":
	qb.main([test_tls, test_nkey, test_creds])
