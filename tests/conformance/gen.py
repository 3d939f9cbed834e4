#!/usr/bin/env python3
"""Writes the conformance corpus (tests/conformance/corpus/), one raw byte
stream per file. Run it again after editing the table; the files it
writes are what tools/conformance reads (it never runs this script), and
fuzz findings saved next to them are kept.

Names: p-* are protocol-level streams (only qmp_capabilities, unknown
commands and input the monitor rejects before any command runs): they
are also fed to the broker's control socket. s-* use commands of QEMU's
own (query-status...) and go only to the shared socket. *.gen files are
streams too large to store: a JSON list of [latin-1 text, count] pairs
whose repetitions, joined, are the stream.
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus")

NEG = b'{"execute":"qmp_capabilities"}\n'
QS = b'{"execute":"query-status"}'
# p-* streams use only commands no server has (the control socket too)
UNK = b'{"execute":"no-such-cmd","id":"u"}'
S = {}		# name -> bytes, or a list for .gen


def add(name, data, neg=True):
	assert name not in S, name
	S[name] = (NEG if neg else b"") + data


# ---- framing (after negotiation) ----
add("s-frame-no-newline", QS)
add("s-frame-lf", QS + b"\n")
add("s-frame-crlf", QS + b"\r\n")
add("s-frame-cr-only", QS + b"\r")
add("s-frame-two-per-line", QS + QS + b"\n")
add("s-frame-three-per-line-spaced", QS + b" " + QS + b"\t" + QS + b"\n")
add("s-frame-two-no-newline-ids", b'{"execute":"query-status","id":1}'
    b'{"execute":"query-status","id":2}')
add("s-frame-over-lines", b'{\n"execute"\n:\n"query-status"\n}\n')
add("s-frame-over-lines-crlf", b'{\r\n"execute":\r\n"query-status"\r\n}\r\n')
add("s-frame-every-token-own-line", b'{\n"execute"\n:\n"query-status"\n,\n'
    b'"id"\n:\n7\n}\n')
add("s-frame-whitespace-inside", b'{ "execute" : "query-status" , '
    b'"id" : 3 }\n')
add("s-frame-tabs-inside", b'{\t"execute"\t:\t"query-status"\t}\n')
add("s-frame-leading-blank-lines", b"\n\n\r\n   \t\n" + QS + b"\n")
add("s-frame-trailing-spaces", QS + b"      \n\n\n")
add("s-frame-formfeed", b'{\f"execute":"query-status"}\n')
add("s-frame-vtab", b'{\v"execute":"query-status"}\n')
add("s-frame-nbsp-outside", b'\xc2\xa0{"execute":"query-status"}\n')
add("s-frame-single-quotes", b"{'execute':'query-status'}\n")
add("s-frame-single-quotes-id", b"{'execute':'query-status','id':'a\"b'}\n")
add("s-frame-single-quote-escape", b"{'execute':'query-status',"
    b"'id':'it\\'s'}\n")
add("s-frame-mixed-quotes", b"{\"execute\":'query-status','id':\"x'y\"}\n")
add("s-frame-half-then-rest", b'{"execute":"query-' + b"\n" +
    b'status"}\n')
add("s-frame-nested-args-lines", b'{"execute":"qom-list",\n"arguments":\n'
    b'{\n"path"\n:\n"/"\n}\n}\n')
add("s-frame-big-args-object", b'{"execute":"qom-list","arguments":'
    b'{"path":"/"},"id":{"a":[1,2,{"b":null}],"c":"d"}}\n')
add("s-frame-20-pipelined", b"".join(b'{"execute":"query-status","id":%d}'
    % i for i in range(20)) + b"\n")
add("s-frame-many-nl-between", QS + b"\n\n\n\n" + QS + b"\n")
add("s-frame-after-unicode-string", b'{"execute":"query-status",'
    b'"id":"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"}\n')

# ---- ids of every JSON type ----
IDS = [
	("string", b'"abc"'), ("empty-string", b'""'), ("int", b"1"),
	("zero", b"0"), ("negative", b"-5"), ("float", b"1.5"),
	("exp", b"1e3"), ("exp-neg", b"2E-2"), ("neg-zero", b"-0"),
	("int64-max", b"9223372036854775807"),
	("uint64-max", b"18446744073709551615"),
	("past-uint64", b"18446744073709551616"),
	("int64-min", b"-9223372036854775808"),
	("past-int64-min", b"-9223372036854775809"),
	("long-float", b"3.14159265358979323846264338327950288"),
	("object", b'{"a":1}'), ("empty-object", b"{}"),
	("array", b'[1,"two",null]'), ("empty-array", b"[]"),
	("nested", b'{"a":[{"b":{"c":[true,false,null]}}]}'),
	("null", b"null"), ("true", b"true"), ("false", b"false"),
	("unicode-escape", b'"\\u00e9\\u20ac"'),
	("surrogate-pair", b'"\\ud83d\\ude00"'),
	("escapes", b'"\\"\\\\\\/\\b\\f\\n\\r\\t"'),
	("single-quoted", b"'sq'"),
	("utf8-raw", b'"\xe2\x82\xac"'),
	("spaces-inside", b'[ 1 , { "a" : 2 } ]'),
	("dup-keys-object", b'{"a":1,"a":2}'),
]
for n, v in IDS:
	add("s-id-" + n, b'{"execute":"query-status","id":' + v + b"}\n")
for n in ("string", "int", "object", "array", "null", "true", "float",
    "nested"):
	v = dict(IDS)[n]
	add("p-id-unknown-cmd-" + n, b'{"execute":"no-such-cmd","id":' + v +
	    b"}\n")
add("p-id-before-neg-int", b'{"execute":"query-status","id":42}\n',
    neg=False)
add("p-id-before-neg-object", b'{"execute":"query-status","id":{"x":[1]}}\n',
    neg=False)
add("p-id-neg-string", b'{"execute":"qmp_capabilities","id":"n1"}\n',
    neg=False)
add("p-id-neg-array", b'{"execute":"qmp_capabilities","id":[1,2]}\n',
    neg=False)
add("p-id-neg-null", b'{"execute":"qmp_capabilities","id":null}\n',
    neg=False)
add("p-id-neg-float", b'{"execute":"qmp_capabilities","id":0.25}\n',
    neg=False)
add("p-id-first-then-execute", b'{"id":9,"execute":"no-such-cmd"}\n')
add("p-id-dup-key", b'{"execute":"no-such-cmd","id":1,"id":2}\n')
add("s-id-bad-args-error", b'{"execute":"query-status","id":5,'
    b'"arguments":{"x":1}}\n')

# ---- malformed input: lexical ----
LEX = [
	("bare-word", b"not json\n"),
	("lone-close-brace", b"}\n"),
	("lone-close-bracket", b"]\n"),
	("extra-close-brace", UNK + b"}\n"),
	("close-before-open", b"}" + UNK + b"\n"),
	("unclosed-then-cmd", b'{"execute":"no-such-cmd"\n' + UNK + b"\n"),
	("unclosed-string-then-cmd", b'{"execute":"no-such\n' + UNK + b"\n"),
	("bad-escape-x", b'{"execute":"no-such-cmd","id":"\\x41"}\n'),
	("bad-escape-u-short", b'{"execute":"no-such-cmd","id":"\\u12"}\n'),
	("bad-escape-u-hex", b'{"execute":"no-such-cmd","id":"\\uZZZZ"}\n'),
	("escape-u0000", b'{"execute":"no-such-cmd","id":"\\u0000"}\n'),
	("lone-high-surrogate", b'{"execute":"no-such-cmd","id":"\\ud800"}\n'),
	("lone-low-surrogate", b'{"execute":"no-such-cmd","id":"\\udc00"}\n'),
	("high-surrogate-then-char", b'{"execute":"no-such-cmd",'
	    b'"id":"\\ud800x"}\n'),
	("escape-single-quote-in-dq", b'{"execute":"no-such-cmd",'
	    b'"id":"\\\'"}\n'),
	("byte-ff-alone", b"\xff\n"),
	("byte-ff-before-cmd", b"\xff" + b'{"execute":"no-such-cmd"}\n'),
	("byte-ff-mid-message", b'{"execute":\xff"no-such-cmd"}\n' +
	    b'{"execute":"no-such-cmd","id":2}\n'),
	("byte-ff-in-string", b'{"execute":"no-such-cmd","id":"a\xffb"}\n'),
	("byte-fe-in-string", b'{"execute":"no-such-cmd","id":"a\xfeb"}\n'),
	("byte-fe-outside", b"\xfe\n" + b'{"execute":"no-such-cmd"}\n'),
	("nul-alone", b"\x00\n"),
	("nul-before-cmd", b"\x00" + b'{"execute":"no-such-cmd"}\n'),
	("nul-in-string", b'{"execute":"no-such-cmd","id":"a\x00b"}\n'),
	("nul-mid-message", b'{"execute":\x00"no-such-cmd"}\n'),
	("ctrl-in-string", b'{"execute":"no-such-cmd","id":"a\x01b"}\n'),
	("tab-in-string", b'{"execute":"no-such-cmd","id":"a\tb"}\n'),
	("newline-in-string", b'{"execute":"no-such-cmd","id":"a\nb"}\n'),
	("del-in-string", b'{"execute":"no-such-cmd","id":"a\x7fb"}\n'),
	("utf8-overlong", b'{"execute":"no-such-cmd","id":"\xc0\x80"}\n'),
	("utf8-overlong-slash", b'{"execute":"no-such-cmd","id":"\xc0\xaf"}\n'),
	("utf8-surrogate", b'{"execute":"no-such-cmd","id":"\xed\xa0\x80"}\n'),
	("utf8-truncated", b'{"execute":"no-such-cmd","id":"\xe2\x82"}\n'),
	("utf8-lone-continuation", b'{"execute":"no-such-cmd","id":"\x80"}\n'),
	("utf8-f5", b'{"execute":"no-such-cmd","id":"\xf5\x80\x80\x80"}\n'),
	("utf8-past-10ffff", b'{"execute":"no-such-cmd",'
	    b'"id":"\xf4\x90\x80\x80"}\n'),
	("utf8-4byte-ok", b'{"execute":"no-such-cmd","id":"\xf0\x9f\x98\x80"}\n'),
	("high-byte-outside", b"\x80\n" + b'{"execute":"no-such-cmd"}\n'),
	("literal-tru", b'{"execute":"no-such-cmd","id":tru}\n'),
	("literal-True", b'{"execute":"no-such-cmd","id":True}\n'),
	("literal-nul", b'{"execute":"no-such-cmd","id":nul}\n'),
	("literal-NaN", b'{"execute":"no-such-cmd","id":NaN}\n'),
	("literal-Infinity", b'{"execute":"no-such-cmd","id":Infinity}\n'),
	("literal-truex", b'{"execute":"no-such-cmd","id":truex}\n'),
	("num-leading-zero", b'{"execute":"no-such-cmd","id":01}\n'),
	("num-trailing-dot", b'{"execute":"no-such-cmd","id":1.}\n'),
	("num-leading-dot", b'{"execute":"no-such-cmd","id":.5}\n'),
	("num-minus-alone", b'{"execute":"no-such-cmd","id":-}\n'),
	("num-exp-empty", b'{"execute":"no-such-cmd","id":1e}\n'),
	("num-plus", b'{"execute":"no-such-cmd","id":+1}\n'),
	("num-hex", b'{"execute":"no-such-cmd","id":0x10}\n'),
	("num-minus-minus", b'{"execute":"no-such-cmd","id":--1}\n'),
	("interpolation", b'{"execute":"no-such-cmd","id":%d}\n'),
	("interpolation-s", b'{"execute":"no-such-cmd","id":%s}\n'),
	("garbage-then-cmd", b"@@@" + b'{"execute":"no-such-cmd","id":1}\n'),
	("garbage-after-cmd", b'{"execute":"no-such-cmd","id":1}@\n'),
	("slash-comment", b'// c\n{"execute":"no-such-cmd"}\n'),
]
for n, v in LEX:
	add("p-lex-" + n, v)
add("p-lex-before-neg-garbage", b"not json\n", neg=False)
add("p-lex-before-neg-ff", b"\xff", neg=False)

# ---- malformed input: syntax ----
SYN = [
	("missing-colon", b'{"execute" "no-such-cmd"}\n'),
	("missing-value", b'{"execute":}\n'),
	("missing-comma", b'{"execute":"no-such-cmd" "id":1}\n'),
	("trailing-comma-object", b'{"execute":"no-such-cmd",}\n'),
	("trailing-comma-array", b'{"execute":"no-such-cmd","id":[1,]}\n'),
	("leading-comma-object", b'{,"execute":"no-such-cmd"}\n'),
	("double-comma-array", b'{"execute":"no-such-cmd","id":[1,,2]}\n'),
	("number-key", b'{1:"no-such-cmd"}\n'),
	("bare-key", b'{execute:"no-such-cmd"}\n'),
	("colon-in-array", b'{"execute":"no-such-cmd","id":[1:2]}\n'),
	("mismatched-close", b'{"execute":"no-such-cmd","id":[1}]\n'),
	("mismatched-close2", b'{"execute":"no-such-cmd","id":{"a":1]}\n'),
	("unbalanced-open-brackets", b'{"execute":"no-such-cmd","id":[[[}\n'),
	("array-top", b'[{"execute":"no-such-cmd"}]\n'),
	("array-top-empty", b"[]\n"),
	("string-top", b'"no-such-cmd"\n'),
	("number-top", b"42\n"),
	("null-top", b"null\n"),
	("true-top", b"true\n"),
	("values-between-cmds", b'1 "a" [] {"execute":"no-such-cmd"}\n'),
	("object-then-array", b'{"execute":"no-such-cmd"}[1]\n'),
	("empty-object", b"{}\n"),
	("colon-alone", b":\n"),
	("comma-alone", b",\n"),
	("two-values-in-object", b'{"execute":"no-such-cmd" 1}\n'),
	("deep-error-then-ok", b'{"a":[{"b":}]}\n{"execute":"no-such-cmd"}\n'),
]
for n, v in SYN:
	add("p-syn-" + n, v)

# ---- members missing, extra, of the wrong type ----
MEM = [
	("no-execute-id-only", b'{"id":1}\n'),
	("no-execute-args-only", b'{"arguments":{}}\n'),
	("execute-int", b'{"execute":1}\n'),
	("execute-null", b'{"execute":null}\n'),
	("execute-array", b'{"execute":["no-such-cmd"]}\n'),
	("execute-object", b'{"execute":{}}\n'),
	("execute-bool", b'{"execute":true}\n'),
	("execute-empty", b'{"execute":""}\n'),
	("execute-long-name", b'{"execute":"' + b"x" * 300 + b'"}\n'),
	("execute-unicode-name", b'{"execute":"\xc3\xa9t\xc3\xa9"}\n'),
	("extra-member", b'{"execute":"no-such-cmd","foo":1}\n'),
	("extra-member-first", b'{"foo":1,"execute":"no-such-cmd"}\n'),
	("two-extra-members", b'{"execute":"no-such-cmd","a":1,"b":2}\n'),
	("execute-and-exec-oob", b'{"execute":"no-such-cmd","exec-oob":'
	    b'"no-such-cmd"}\n'),
	("args-array", b'{"execute":"no-such-cmd","arguments":[]}\n'),
	("args-int", b'{"execute":"no-such-cmd","arguments":1}\n'),
	("args-string", b'{"execute":"no-such-cmd","arguments":"x"}\n'),
	("args-null", b'{"execute":"no-such-cmd","arguments":null}\n'),
	("control-member", b'{"execute":"no-such-cmd","control":{}}\n'),
	("execute-case", b'{"Execute":"no-such-cmd"}\n'),
	("execute-twice", b'{"execute":"a","execute":"no-such-cmd"}\n'),
]
for n, v in MEM:
	add("p-mem-" + n, v)
add("s-mem-unknown-arg", b'{"execute":"query-status","arguments":{"x":1}}\n')
add("s-mem-args-empty", b'{"execute":"query-status","arguments":{}}\n')
add("s-mem-args-array-known-cmd", b'{"execute":"query-status",'
    b'"arguments":[]}\n')
add("s-mem-missing-required", b'{"execute":"qom-list","arguments":{}}\n')
add("s-mem-wrong-type-arg", b'{"execute":"qom-list","arguments":'
    b'{"path":1}}\n')
add("s-mem-wrong-type-arg-null", b'{"execute":"qom-list","arguments":'
    b'{"path":null}}\n')
add("s-mem-extra-arg", b'{"execute":"qom-list","arguments":'
    b'{"path":"/","x":1}}\n')
add("s-mem-bad-path", b'{"execute":"qom-list","arguments":'
    b'{"path":"/no/such"}}\n')
add("s-mem-extra-top-known-cmd", b'{"execute":"query-status","foo":1}\n')
add("s-mem-execute-int-with-id", b'{"execute":1,"id":"i"}\n')

# ---- negotiation ----
add("p-neg-cmd-before", b'{"execute":"query-status"}\n', neg=False)
add("p-neg-unknown-before", b'{"execute":"no-such-cmd"}\n', neg=False)
add("p-neg-twice", NEG + NEG, neg=False)
add("p-neg-twice-ids", b'{"execute":"qmp_capabilities","id":1}'
    b'{"execute":"qmp_capabilities","id":2}', neg=False)
add("p-neg-no-newline", b'{"execute":"qmp_capabilities"}', neg=False)
add("p-neg-args-empty", b'{"execute":"qmp_capabilities","arguments":{}}\n',
    neg=False)
add("p-neg-enable-empty", b'{"execute":"qmp_capabilities","arguments":'
    b'{"enable":[]}}\n', neg=False)
add("p-neg-enable-unknown", b'{"execute":"qmp_capabilities","arguments":'
    b'{"enable":["foo"]}}\n', neg=False)
add("p-neg-enable-string", b'{"execute":"qmp_capabilities","arguments":'
    b'{"enable":"oob"}}\n', neg=False)
add("p-neg-enable-null", b'{"execute":"qmp_capabilities","arguments":'
    b'{"enable":null}}\n', neg=False)
add("p-neg-enable-int-item", b'{"execute":"qmp_capabilities","arguments":'
    b'{"enable":[1]}}\n', neg=False)
add("p-neg-unknown-arg", b'{"execute":"qmp_capabilities","arguments":'
    b'{"foo":1}}\n', neg=False)
add("p-neg-args-array", b'{"execute":"qmp_capabilities","arguments":[]}\n',
    neg=False)
add("p-neg-single-quotes", b"{'execute':'qmp_capabilities'}\n", neg=False)
add("p-neg-over-lines", b'{\n"execute":\n"qmp_capabilities"\n}\n', neg=False)
add("p-neg-parse-error-first", b"{]\n" + NEG, neg=False)
add("p-neg-extra-member", b'{"execute":"qmp_capabilities","foo":1}\n',
    neg=False)
add("p-neg-then-unknown", NEG + b'{"execute":"no-such-cmd"}\n', neg=False)
add("p-neg-failed-then-retry", b'{"execute":"qmp_capabilities","arguments":'
    b'{"enable":["foo"]}}\n' + NEG + b'{"execute":"no-such-cmd"}\n',
    neg=False)
add("p-neg-exec-oob", b'{"exec-oob":"qmp_capabilities"}\n', neg=False)
add("p-neg-exec-oob-id", b'{"exec-oob":"qmp_capabilities","id":1}\n',
    neg=False)
add("s-neg-then-cmd-no-newline", b'{"execute":"qmp_capabilities"}' + QS,
    neg=False)
add("s-neg-after-neg-cmd", b'{"execute":"qmp_capabilities","id":"a"}\n' +
    b'{"execute":"query-status","id":"b"}\n', neg=False)

# ---- oob ----
ENOOB = (b'{"execute":"qmp_capabilities","arguments":{"enable":["oob"]}}\n')
add("p-oob-enable", ENOOB, neg=False)
add("p-oob-enable-twice-item", b'{"execute":"qmp_capabilities","arguments":'
    b'{"enable":["oob","oob"]}}\n', neg=False)
add("p-oob-enable-id", b'{"execute":"qmp_capabilities","arguments":'
    b'{"enable":["oob"]},"id":3}\n', neg=False)
add("p-oob-exec-oob-not-enabled", b'{"exec-oob":"no-such-cmd","id":1}\n')
add("p-oob-exec-oob-before-neg", b'{"exec-oob":"no-such-cmd","id":1}\n',
    neg=False)
add("p-oob-unknown-cmd-oob-on", ENOOB + b'{"exec-oob":"no-such-cmd",'
    b'"id":1}\n', neg=False)
add("p-oob-no-id-oob-on", ENOOB + b'{"exec-oob":"no-such-cmd"}\n', neg=False)
add("p-oob-exec-oob-int", ENOOB + b'{"exec-oob":1,"id":1}\n', neg=False)
add("p-oob-exec-oob-null", ENOOB + b'{"exec-oob":null}\n', neg=False)
add("p-oob-exec-oob-and-args-array", ENOOB + b'{"exec-oob":"no-such-cmd",'
    b'"arguments":[],"id":1}\n', neg=False)
add("p-oob-inband-no-id-oob-on", ENOOB + b'{"execute":"no-such-cmd"}\n',
    neg=False)
add("p-oob-neg-oob-exec-oob-neg", ENOOB + b'{"exec-oob":"qmp_capabilities",'
    b'"id":1}\n', neg=False)
add("s-oob-query-status-oob", ENOOB + b'{"exec-oob":"query-status",'
    b'"id":1}\n', neg=False)
add("s-oob-query-status-not-enabled", b'{"exec-oob":"query-status",'
    b'"id":1}\n')
add("s-oob-inband-no-id-oob-on", ENOOB + QS + b"\n", neg=False)
add("s-oob-inband-id-oob-on", ENOOB + b'{"execute":"query-status",'
    b'"id":"x"}\n', neg=False)
add("s-oob-yank-id", ENOOB + b'{"exec-oob":"yank","arguments":'
    b'{"instances":[]},"id":"y"}\n', neg=False)
add("s-oob-yank-no-id", ENOOB + b'{"exec-oob":"yank","arguments":'
    b'{"instances":[]}}\n', neg=False)
add("s-oob-yank-not-enabled", b'{"exec-oob":"yank","arguments":'
    b'{"instances":[]},"id":"y"}\n')
add("s-oob-yank-inband", ENOOB + b'{"execute":"yank","arguments":'
    b'{"instances":[]},"id":"y"}\n', neg=False)
add("s-oob-yank-bad-args", ENOOB + b'{"exec-oob":"yank","arguments":'
    b'{"instances":1},"id":"y"}\n', neg=False)
add("s-oob-migrate-pause", ENOOB + b'{"exec-oob":"migrate-pause",'
    b'"id":2}\n', neg=False)
add("s-oob-12-inband-oob-on", ENOOB + b"".join(
    b'{"execute":"query-status","id":%d}' % i for i in range(12)),
    neg=False)
add("s-oob-inband-and-oob-mixed", ENOOB + b'{"execute":"query-status",'
    b'"id":1}{"exec-oob":"yank","arguments":{"instances":[]},"id":2}'
    b'{"execute":"query-status","id":3}\n', neg=False)
add("s-oob-exec-oob-id-types", ENOOB + b''.join(
    b'{"exec-oob":"yank","arguments":{"instances":[]},"id":%s}' % v
    for v in (b"null", b"[1]", b'{"a":1}', b"1.5", b"true")), neg=False)

# ---- unknown commands ----
for n, c in (("plain", b"no-such-cmd"), ("trailing-space", b"query-status "),
    ("uppercase", b"QUERY-STATUS"), ("underscore", b"query_status"),
    ("x-prefix", b"x-no-such"), ("with-args", None), ("hmp-name", b"info"),
    ("slash", b"a/b"), ("escaped-name", b"no\\u002dsuch")):
	if c is None:
		add("p-unk-" + n, b'{"execute":"no-such-cmd","arguments":'
		    b'{"a":[1]},"id":1}\n')
	else:
		add("p-unk-" + n, b'{"execute":"' + c + b'"}\n')
add("p-unk-many", b"".join(b'{"execute":"nope%d","id":%d}\n' % (i, i)
    for i in range(30)))

# ---- ordinary commands (twin QEMUs answer alike) ----
for c in ("query-version", "query-name", "query-kvm", "query-uuid",
    "query-target", "query-commands", "query-iothreads",
    "query-migrate"):
	add("s-cmd-" + c, b'{"execute":"' + c.encode() + b'","id":"' + c.encode() +
	    b'"}\n')
add("s-cmd-qom-list-root", b'{"execute":"qom-list","arguments":'
    b'{"path":"/"}}\n')
add("s-cmd-escaped-name", b'{"execute":"query\\u002dstatus"}\n')

# ---- limits (QEMU 7.2 json-streamer.c: nesting 1024, token count 2M,
# token size 64 MiB; a message whose brackets exceed them is an error) ----
def nest(depth, o=b"[", c=b"]"):
	return b'{"execute":"no-such-cmd","id":' + o * (depth - 1) + \
	    c * (depth - 1) + b"}\n"
add("p-limit-nesting-1024", nest(1024))
add("p-limit-nesting-1025", nest(1025))
add("p-limit-nesting-1024-objects", b'{"execute":"no-such-cmd","id":' +
    b'{"a":' * 1023 + b"1" + b"}" * 1023 + b"}\n")
add("p-limit-nesting-1025-objects", b'{"execute":"no-such-cmd","id":' +
    b'{"a":' * 1024 + b"1" + b"}" * 1024 + b"}\n")
add("p-limit-nesting-2000-then-cmd", nest(2000) +
    b'{"execute":"no-such-cmd","id":"after"}\n')
add("p-limit-unclosed-deep", b"[" * 1100 + b"\n" +
    b'{"execute":"no-such-cmd","id":"after"}\n')
add("s-limit-long-string-id", b'{"execute":"query-status","id":"' +
    b"a" * 20000 + b'"}\n')
TS = 64 << 20
TC = 2 << 20
HEAD = '{"execute":"qmp_capabilities"}\n{"execute":"no-such-cmd","id":"'
S["p-limit-token-size-at"] = [[HEAD, 1], ["a", TS - 64], ['"}\n', 1],
    ['{"execute":"no-such-cmd","id":"after"}\n', 1]]
S["p-limit-token-size-past"] = [[HEAD, 1], ["a", TS + 16], ['"}\n', 1],
    ['{"execute":"no-such-cmd","id":"after"}\n', 1]]
HEADA = '{"execute":"qmp_capabilities"}\n{"execute":"no-such-cmd","id":['
# tokens: { "execute" : "..." , "id" : [ = 8, then 2 per "1," and ] }
S["p-limit-token-count-at"] = [[HEADA, 1], ["1,", (TC - 12) // 2],
    ["1]}\n", 1], ['{"execute":"no-such-cmd","id":"after"}\n', 1]]
S["p-limit-token-count-past"] = [[HEADA, 1], ["1,", TC // 2 + 8],
    ["1]}\n", 1], ['{"execute":"no-such-cmd","id":"after"}\n', 1]]


def main():
	os.makedirs(OUT, exist_ok=True)
	for name, data in sorted(S.items()):
		if isinstance(data, list):
			with open(os.path.join(OUT, name + ".gen"), "w") as f:
				json.dump(data, f)
				f.write("\n")
		else:
			with open(os.path.join(OUT, name), "wb") as f:
				f.write(data)
	print("%d streams in %s" % (len(S), OUT))


if __name__ == "__main__":
	sys.exit(main())
