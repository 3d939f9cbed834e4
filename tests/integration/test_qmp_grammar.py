#!/usr/bin/env python3
"""QEMU's input grammar on the broker's client sockets, differentially:
the same bytes go to a real QEMU's monitor and to the broker's shared
socket for a twin QEMU (and, for what the control socket shares with
QEMU's protocol, to the control socket), and the answers must be the
same. Commands with no newline, several on one line, one over several
lines, single quotes, ids of every type, every kind of malformed input,
QEMU's limits, and every stream again one byte per write."""

import json
import socket
import time

import qb
from qb import check, Env

END = b'{"execute": "query-name", "id": "END"}'

# (name, bytes): each leaves QEMU's lexer where the END command is read
# as a command.
STREAMS = [
	("no newline", b'{"execute": "query-name", "id": 1}'),
	("two on a line", b'{"execute": "query-name", "id": 1}'
	    b'{"execute": "query-status", "id": 2}\n'),
	("three, no whitespace at all", b'{"execute":"query-name","id":1}'
	    b'{"execute":"query-name","id":2}{"execute":"query-name","id":3}'),
	("over several lines", b'{\n"execute"\n:\r\n"query-name" ,\n'
	    b'"id"\n:\n3\n}\n'),
	("whitespace around", b'\t\r\n {"execute": "query-name"} \r\n\t'),
	("single quotes", b"{'execute': 'query-name', 'id': 'sq'}"),
	("single-quote escapes", b"{'execute': 'query-name', "
	    b"'id': 'a\\'b\\\"c\"d\\u00e9'}"),
	("double-quote escapes", b'{"execute": "query-name", '
	    b'"id": "\\/\\b\\f\\n\\r\\t\\\\\\"\\\'\\ud83d\\ude00"}'),
	("id string", b'{"execute": "query-name", "id": "x"}'),
	("id integer", b'{"execute": "query-name", "id": -42}'),
	("id big integer", b'{"execute": "query-name", '
	    b'"id": 9223372036854775807}'),
	("id float", b'{"execute": "query-name", "id": 1.5e3}'),
	("id object", b'{"execute": "query-name", '
	    b'"id": {"a": [1, {"b": null}], "c": "d"}}'),
	("id array", b'{"execute": "query-name", "id": [1, "two", [3]]}'),
	("id null", b'{"execute": "query-name", "id": null}'),
	("id true", b'{"execute": "query-name", "id": true}'),
	("id false", b'{"execute": "query-name", "id": false}'),
	("id empty object", b'{"execute": "query-name", "id": {}}'),
	("id on an error", b'{"execute": "no-such-command", '
	    b'"id": [null, {"x": false}]}'),
	("id with U+0000", b'{"execute": "query-name", "id": "a\\u0000b"}'),
	("stray byte", b'@'),
	("0xFF", b'\xff'),
	("NUL", b'\x00'),
	("NUL after a command", b'{"execute": "query-name", "id": 1}\x00'),
	("NUL in a string", b'{"execute": "query\x00-name"}'),
	("control byte in a string", b'{"execute": "\x01"}'),
	("0xFF in a string", b'{"a": "\xff"}'),
	("lone closers", b'}]'),
	("mismatched", b'[}]'),
	("missing colon", b'{"a" 1}'),
	("missing comma", b'{"a": 1 "b": 2}'),
	("list separator", b'[1 2]'),
	("trailing comma", b'[1,]'),
	("key not a string", b'{1: 2}'),
	("bad keyword", b'tru '),
	("top-level integer", b'1 '),
	("top-level string", b'"s"'),
	("top-level list", b'[]'),
	("duplicate key", b'{"execute": "query-name", "execute": "x"}'),
	("noncharacter escape", b'{"id": "\\uFFFF"}'),
	("lone surrogate", b'{"execute": "query-name", "id": "\\ud800"}'),
	("short unicode escape", b'{"id": "\\u12"}'),
	("invalid escape", b'{"id": "\\x"}'),
	("overlong UTF-8", b'{"id": "\xc0\xaf"}'),
	("noncharacter UTF-8", b'{"id": "\xef\xbf\xbf"}'),
	("leading zero", b'01 '),
	("bad sign", b'-x'),
	("bad mantissa", b'1.x'),
	("bad exponent", b'1e}'),
	("zero then e", b'[0e5]'),
	("error between commands", b'{"execute": "query-name", "id": 1} @ '
	    b'{"execute": "query-name", "id": 2}'),
	("recovery skips to a bracket", b'{"execute": @ "x", "id": 1} '
	    b'{"execute": "query-name", "id": 2}'),
	("members", b'{"execute": "query-name", "bogus": 1}'
	    b'{"id": 5}{"execute": 1}{"execute": "query-name", '
	    b'"arguments": []}'),
	("nesting limit", b'[' * 1025 + b'\n'),
	("nesting past the limit, closed", b'[' * 1030 + b']' * 1030),
]


def read_until_end(s, buf):
	"""Replies up to the one with id END (excluded); buf: leftover."""
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
			if "event" in msg:
				continue	# none expected from -S QEMUs
			out.append(msg)
		left = deadline - time.monotonic()
		check(left > 0, "no answer to END; so far %r" % out[-3:])
		s.settimeout(left)
		data = s.recv(65536)
		check(data, "EOF; so far %r" % out[-3:])
		buf += data


def session(path, streams, bytewise):
	"""One connection: greeting, negotiation, then each stream and END;
	returns the answers per stream."""
	s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
	s.settimeout(qb.TIMEOUT)
	s.connect(path)
	buf = b""
	while b"\n" not in buf:
		buf += s.recv(4096)
	greeting, buf = buf.split(b"\n", 1)
	check("QMP" in json.loads(greeting), "greeting %r" % greeting)
	s.sendall(b'{"execute": "qmp_capabilities", "id": "END"}')
	_, buf = read_until_end(s, buf)
	got = []
	for data in streams:
		if bytewise:
			for i in range(len(data)):
				s.sendall(data[i:i + 1])
		else:
			s.sendall(data)
		s.sendall(END)
		out, buf = read_until_end(s, buf)
		got.append(out)
	s.close()
	return got


def compare(what, names, want, got):
	bad = [(n, w, g) for n, w, g in zip(names, want, got) if w != g]
	for n, w, g in bad[:5]:
		print("# %s, %s:\n#  qemu   %s\n#  broker %s" % (what, n,
		    json.dumps(w)[:400], json.dumps(g)[:400]))
	check(not bad, "%s: %d of %d streams answered otherwise than by "
	    "QEMU: %s" % (what, len(bad), len(names),
	    ", ".join(n for n, _, _ in bad)))


def shape(answers):
	"""What the control socket shares with QEMU: errors (class, text)
	and ids; return values are the broker's own."""
	out = []
	for a in answers:
		a = dict(a)
		if "return" in a:
			a["return"] = "R"
		if "error" in a and a["error"]["class"] == "CommandNotFound":
			a["error"] = "CommandNotFound"
		out.append(a)
	return out


def test_shared_socket_like_qemu():
	with Env("grammar") as env:
		c = env.d.client()
		direct = env.h.qemu("direct")
		twin = env.h.qemu("twin")
		c.cmd("vm-add", {"name": "twin", "socket": twin.path})
		qb.wait_vm_state(c, "twin", "ready")
		names = [n for n, _ in STREAMS]
		data = [d for _, d in STREAMS]
		for bytewise in (False, True):
			what = "one byte per write" if bytewise else "whole"
			want = session(direct.path, data, bytewise)
			check(any(want), "QEMU answered nothing")
			got = session(env.d.vm_socket("twin"), data, bytewise)
			compare("shared socket, " + what, names, want, got)
			# the control socket: the same protocol answers, with
			# its own commands (query-vms where QEMU has its own)
			ctl = [d.replace(b"query-name", b"query-vms").replace(
			    b"query-status", b"query-vms") for d in data]
			got = session(env.d.control, ctl, bytewise)
			compare("control socket, " + what, names,
			    [shape(w) for w in want], [shape(g) for g in got])
		env.finish()


if __name__ == "__main__":
	qb.main([test_shared_socket_like_qemu])
