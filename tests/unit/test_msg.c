/*
 * Message tests: classification, strict command checking with QEMU's
 * wording, greeting, errors, serialisation.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "proto/qmp_framer.h"
#include "proto/qmp_jstream.h"
#include "proto/qmp_msg.h"
#include "proto/qmp_out.h"

#ifndef QB_TESTDATA
#define QB_TESTDATA "tests/data"
#endif

static json_t *
parse(const char *s)
{
	struct qmp_error	 err;
	json_t			*m;

	m = qmp_parse_line(s, strlen(s), &err);
	if (m == NULL)
		fail_msg("%s: %s", s, err.desc);
	return (m);
}

static void
test_classify(void **state)
{
	static const struct {
		const char		*s;
		enum qmp_msg_type	 t;
	} cases[] = {
		{ "{\"QMP\": {\"version\": {}, \"capabilities\": []}}",
		    QMP_MSG_GREETING },
		{ "{\"return\": {}}", QMP_MSG_RETURN },
		{ "{\"return\": [], \"id\": \"x\"}", QMP_MSG_RETURN },
		{ "{\"id\": {\"a\": 1}, \"return\": null}", QMP_MSG_RETURN },
		{ "{\"error\": {\"class\": \"GenericError\", \"desc\": \"d\"}, "
		    "\"id\": 3}", QMP_MSG_ERROR },
		{ "{\"event\": \"STOP\", \"timestamp\": {\"seconds\": 1, "
		    "\"microseconds\": 2}}", QMP_MSG_EVENT },
		{ "{\"event\": \"X\", \"data\": {\"a\": 1}}", QMP_MSG_EVENT },
		{ "{\"execute\": \"query-status\"}", QMP_MSG_COMMAND },
		{ "{\"execute\": \"q\", \"arguments\": {}, \"id\": 1}",
		    QMP_MSG_COMMAND },
		{ "{\"exec-oob\": \"q\"}", QMP_MSG_COMMAND },
		{ "{\"execute\": \"q\", \"exec-oob\": \"q\"}", QMP_MSG_COMMAND },
		{ "{}", QMP_MSG_INVALID },
		{ "{\"id\": 1}", QMP_MSG_INVALID },
		{ "{\"return\": 1, \"event\": \"X\"}", QMP_MSG_INVALID },
		{ "{\"return\": 1, \"error\": {}}", QMP_MSG_INVALID },
		{ "{\"QMP\": {}, \"execute\": \"x\"}", QMP_MSG_INVALID },
		{ "{\"event\": 5}", QMP_MSG_INVALID },
		{ "{\"event\": \"X\", \"data\": 5}", QMP_MSG_INVALID },
		{ "{\"error\": \"str\"}", QMP_MSG_INVALID },
		{ "{\"execute\": 1}", QMP_MSG_INVALID },
		{ "{\"QMP\": 1}", QMP_MSG_INVALID },
	};
	json_t	*m;
	size_t	 i;

	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		m = parse(cases[i].s);
		if (qmp_msg_classify(m) != cases[i].t)
			fail_msg("%s: %s, want %s", cases[i].s,
			    qmp_msg_type_name(qmp_msg_classify(m)),
			    qmp_msg_type_name(cases[i].t));
		json_decref(m);
	}
	m = json_array();
	assert_int_equal(qmp_msg_classify(m), QMP_MSG_INVALID);
	json_decref(m);
	assert_int_equal(qmp_msg_classify(NULL), QMP_MSG_INVALID);

	assert_string_equal(qmp_msg_type_name(QMP_MSG_GREETING), "greeting");
	assert_string_equal(qmp_msg_type_name(QMP_MSG_RETURN), "return");
	assert_string_equal(qmp_msg_type_name(QMP_MSG_ERROR), "error");
	assert_string_equal(qmp_msg_type_name(QMP_MSG_EVENT), "event");
	assert_string_equal(qmp_msg_type_name(QMP_MSG_COMMAND), "command");
	assert_string_equal(qmp_msg_type_name(QMP_MSG_INVALID), "invalid");
	assert_string_equal(qmp_msg_type_name((enum qmp_msg_type)99),
	    "unknown");
}

static void
test_cmd_parse_ok(void **state)
{
	struct qmp_error	 err;
	const char		*name;
	json_t			*m, *args, *id;

	m = parse("{\"execute\": \"query-status\"}");
	assert_int_equal(qmp_cmd_parse(m, &name, &args, &id, &err), 0);
	assert_string_equal(name, "query-status");
	assert_null(args);
	assert_null(id);
	json_decref(m);

	m = parse("{\"id\": [1, {\"x\": null}], \"arguments\": {\"a\": 1}, "
	    "\"execute\": \"stop\"}");
	assert_int_equal(qmp_cmd_parse(m, &name, &args, &id, &err), 0);
	assert_string_equal(name, "stop");
	assert_ptr_equal(args, json_object_get(m, "arguments"));
	assert_ptr_equal(id, json_object_get(m, "id"));
	json_decref(m);

	/* Out pointers are optional. */
	m = parse("{\"execute\": \"stop\"}");
	assert_int_equal(qmp_cmd_parse(m, NULL, NULL, NULL, NULL), 0);
	json_decref(m);
}

static void
test_cmd_parse_errors(void **state)
{
	static const struct {
		const char	*s;
		const char	*desc;
		int		 has_id;
	} cases[] = {
		{ "{\"id\": 2}", "QMP input lacks member 'execute'", 1 },
		{ "{}", "QMP input lacks member 'execute'", 0 },
		{ "{\"execute\": 5, \"id\": 3}",
		    "QMP input member 'execute' must be a string", 1 },
		{ "{\"execute\": null}",
		    "QMP input member 'execute' must be a string", 0 },
		{ "{\"execute\": \"q\", \"arguments\": [], \"id\": 4}",
		    "QMP input member 'arguments' must be an object", 1 },
		{ "{\"execute\": \"q\", \"arguments\": null}",
		    "QMP input member 'arguments' must be an object", 0 },
		{ "{\"execute\": \"q\", \"foo\": 1, \"id\": 5}",
		    "QMP input member 'foo' is unexpected", 1 },
		{ "{\"execute\": \"q\", \"control\": {}}",
		    "QMP input member 'control' is unexpected", 0 },
		{ "{\"return\": {}, \"id\": 1}",
		    "QMP input member 'return' is unexpected", 1 },
		{ "{\"exec-oob\": \"q\", \"id\": 7}",
		    "QMP input member 'exec-oob' is unexpected", 1 },
		{ "{\"execute\": \"q\", \"exec-oob\": \"q\"}",
		    "QMP input member 'exec-oob' is unexpected", 0 },
	};
	struct qmp_error	 err;
	const char		*name;
	json_t			*m, *args, *id;
	size_t			 i;

	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		m = parse(cases[i].s);
		memset(&err, 0, sizeof err);
		name = "stale";
		args = id = (json_t *)&err;
		assert_int_equal(qmp_cmd_parse(m, &name, &args, &id, &err), -1);
		assert_string_equal(err.cls, QMP_CLS_GENERIC);
		if (strcmp(err.desc, cases[i].desc) != 0)
			fail_msg("%s: '%s', want '%s'", cases[i].s, err.desc,
			    cases[i].desc);
		assert_null(name);
		assert_null(args);
		/* The id comes back so the error reply can carry it. */
		if (cases[i].has_id) {
			assert_non_null(id);
			assert_ptr_equal(id, json_object_get(m, "id"));
		} else
			assert_null(id);
		json_decref(m);
	}

	m = json_array();
	assert_int_equal(qmp_cmd_parse(m, &name, &args, &id, &err), -1);
	assert_string_equal(err.desc, "QMP input must be a JSON object");
	assert_null(id);
	json_decref(m);
}

static void
test_cmd_new(void **state)
{
	json_t	*args, *id, *cmd;
	char	*s;
	size_t	 len;

	args = json_pack("{s:s}", "id", "net0");
	id = json_integer(42);
	json_incref(args);
	json_incref(id);
	cmd = qmp_cmd_new("netdev_del", args, id);
	assert_non_null(cmd);
	/* Stolen: the command holds the only other reference. */
	assert_int_equal(args->refcount, 2);
	assert_int_equal(id->refcount, 2);
	s = qmp_dump(cmd, &len);
	assert_string_equal(s, "{\"execute\":\"netdev_del\","
	    "\"arguments\":{\"id\":\"net0\"},\"id\":42}\r\n");
	assert_int_equal(len, strlen(s));
	free(s);
	assert_int_equal(qmp_msg_classify(cmd), QMP_MSG_COMMAND);
	assert_int_equal(qmp_cmd_parse(cmd, NULL, NULL, NULL, NULL), 0);
	json_decref(cmd);
	assert_int_equal(args->refcount, 1);
	assert_int_equal(id->refcount, 1);
	json_decref(args);
	json_decref(id);

	cmd = qmp_cmd_new("stop", NULL, NULL);
	s = qmp_dump(cmd, NULL);
	assert_string_equal(s, "{\"execute\":\"stop\"}\r\n");
	free(s);
	json_decref(cmd);

	/* A name jansson cannot hold: NULL, and the stolen values are
	   released (the leak checker of the sanitizer build sees it). */
	cmd = qmp_cmd_new("bad\xff", json_object(), json_integer(1));
	assert_null(cmd);
	cmd = qmp_cmd_new(NULL, NULL, json_string("x"));
	assert_null(cmd);
}

static char *
first_line(const char *name, size_t *len)
{
	const char	*dir = getenv("QB_SRCDIR");
	char		 path[4096], *line = NULL;
	size_t		 cap = 0;
	ssize_t		 n;
	FILE		*fp;

	if (dir != NULL)
		snprintf(path, sizeof path, "%s/tests/data/%s", dir, name);
	else
		snprintf(path, sizeof path, "%s/%s", QB_TESTDATA, name);
	if ((fp = fopen(path, "rb")) == NULL)
		fail_msg("cannot open %s", path);
	n = getline(&line, &cap, fp);
	fclose(fp);
	assert_true(n > 2);
	*len = n - 1;	/* without the LF; the CR stays for the parser */
	return (line);
}

static void
test_greeting_real(void **state)
{
	struct qmp_version	 v;
	struct qmp_error	 err;
	json_t			*m, *g, *caps;
	char			*line;
	size_t			 len;

	line = first_line("qemu-7.2-session.raw", &len);
	m = qmp_parse_line(line, len, &err);
	free(line);
	assert_non_null(m);
	assert_int_equal(qmp_msg_classify(m), QMP_MSG_GREETING);
	memset(&v, 0xff, sizeof v);
	assert_int_equal(qmp_greeting_parse(m, &v), 0);
	/* The transcript was recorded from Debian 12's QEMU 7.2.22. */
	assert_int_equal(v.major, 7);
	assert_int_equal(v.minor, 2);
	assert_int_equal(v.micro, 22);
	assert_string_equal(v.package, "Debian 1:7.2+dfsg-7+deb12u18+b3");

	/* What we build parses back to the same and equals QEMU's. */
	caps = json_pack("[s]", "oob");
	g = qmp_greeting_new(&v, caps);
	assert_non_null(g);
	assert_true(json_equal(g, m));
	json_decref(g);
	json_decref(m);

	g = qmp_greeting_new(&v, NULL);
	assert_int_equal(json_array_size(json_object_get(json_object_get(g,
	    "QMP"), "capabilities")), 0);
	assert_int_equal(qmp_greeting_parse(g, &v), 0);
	assert_int_equal(v.micro, 22);
	json_decref(g);
}

static void
test_greeting_partial(void **state)
{
	struct qmp_version	 v;
	json_t			*m;

	m = parse("{\"return\": {}}");
	assert_int_equal(qmp_greeting_parse(m, &v), -1);
	json_decref(m);
	m = parse("{\"QMP\": 1}");
	assert_int_equal(qmp_greeting_parse(m, &v), -1);
	json_decref(m);
	/* Fills what it can, zeroes the rest. */
	memset(&v, 0x55, sizeof v);
	m = parse("{\"QMP\": {\"version\": {\"qemu\": {\"major\": 9, "
	    "\"minor\": \"x\", \"micro\": -4}}}}");
	assert_int_equal(qmp_greeting_parse(m, &v), 0);
	assert_int_equal(v.major, 9);
	assert_int_equal(v.minor, 0);
	assert_int_equal(v.micro, 0);
	assert_string_equal(v.package, "");
	json_decref(m);
}

static void
test_errors(void **state)
{
	struct qmp_error	 err;
	json_t			*e, *j;
	char			 big[1024];
	size_t			 i;

	qmp_error_set(&err, QMP_CLS_NOTFOUND, "The command %s has not been "
	    "found", "x");
	j = qmp_error_json(&err);
	assert_string_equal(json_string_value(json_object_get(j, "class")),
	    "CommandNotFound");
	assert_string_equal(json_string_value(json_object_get(j, "desc")),
	    "The command x has not been found");
	json_decref(j);

	/* A euro sign cut in half by truncation still makes valid JSON. */
	for (i = 0; i + 3 <= sizeof big - 1; i += 3)
		memcpy(big + i, "\xe2\x82\xac", 3);
	big[i] = '\0';
	for (i = 0; i < 3; i++) {
		qmp_error_set(&err, NULL, "%.*s%s", (int)i, "ab", big);
		assert_string_equal(err.cls, QMP_CLS_GENERIC);
		assert_int_equal(strlen(err.desc), sizeof err.desc - 1);
		j = qmp_error_json(&err);
		assert_non_null(j);
		json_decref(j);
	}
	qmp_error_set(&err, "Bad\xff", "x\xc0\xafy");
	assert_string_equal(err.desc, "x??y");
	assert_string_equal(err.cls, "Bad?");

	e = parse("{\"class\": \"DeviceNotFound\", \"desc\": \"no dev\"}");
	qmp_error_from_json(&err, e);
	assert_string_equal(err.cls, QMP_CLS_DEVNOTFOUND);
	assert_string_equal(err.desc, "no dev");
	json_decref(e);
	e = parse("{\"class\": 5}");
	qmp_error_from_json(&err, e);
	assert_string_equal(err.cls, QMP_CLS_GENERIC);
	assert_true(err.desc[0] != '\0');
	json_decref(e);
	qmp_error_from_json(&err, NULL);
	assert_string_equal(err.cls, QMP_CLS_GENERIC);
	/* Writing into no error is allowed (callers that do not care). */
	qmp_error_set(NULL, NULL, "ignored");
}

static void
test_event_name(void **state)
{
	json_t	*m;

	m = parse("{\"event\": \"DEVICE_DELETED\", \"data\": {\"device\": "
	    "\"n1\"}, \"timestamp\": {\"seconds\": 1, \"microseconds\": 0}}");
	assert_string_equal(qmp_event_name(m), "DEVICE_DELETED");
	json_decref(m);
	m = parse("{\"return\": {}}");
	assert_null(qmp_event_name(m));
	json_decref(m);
	m = parse("{\"event\": 3}");
	assert_null(qmp_event_name(m));
	json_decref(m);
}

static void
test_dump_roundtrip(void **state)
{
	static const char *cases[] = {
		"{\"return\": {\"status\": \"running\", \"running\": true}, "
		    "\"id\": \"a\\\"b\"}",
		"{\"event\": \"X\", \"data\": {\"s\": \"\xe2\x82\xac \\n "
		    "\\u0001\", \"n\": -9223372036854775808, \"f\": 1.5, "
		    "\"z\": null, \"l\": [[], {}, false]}}",
		"{}",
	};
	struct qmp_error	 err;
	json_t			*m, *back;
	char			*s;
	size_t			 i, len;

	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		m = parse(cases[i]);
		s = qmp_dump(m, &len);
		assert_non_null(s);
		assert_int_equal(len, strlen(s));
		assert_true(len >= 3);
		assert_memory_equal(s + len - 2, "\r\n", 2);
		/* One line: the framer can take it back. */
		assert_null(memchr(s, '\n', len - 1));
		back = qmp_parse_line(s, len - 1, &err);
		assert_non_null(back);
		assert_true(json_equal(m, back));
		json_decref(back);
		json_decref(m);
		free(s);
	}
	/* UTF-8 goes out as UTF-8, as QEMU sends it. */
	m = parse(cases[1]);
	s = qmp_dump(m, NULL);
	assert_non_null(strstr(s, "\xe2\x82\xac"));
	free(s);
	json_decref(m);
}

static void
expect_out(const json_t *j, int flags, const char *want)
{
	struct qmp_out	o;

	qmp_out_init(&o);
	qmp_out_json(&o, j, flags);
	assert_false(o.failed);
	qmp_out_raw(&o, "", 1);
	assert_string_equal(o.buf, want);
	qmp_out_free(&o);
}

/* QEMU 7.2's json-writer.c and qdict.c, rule by rule; the conformance
   suite checks the same against the binary. */
static void
test_dump_qemu(void **state)
{
	struct qmp_error	 err;
	json_t			*j, *id;
	char			*s;
	size_t			 len;

	/* escapes: upper-case \u, surrogate pairs, DEL, '/' as is */
	j = json_loads("[\"\\u00e9\\u20ac\\ud83d\\ude00/\\u007f\\u0001\\\"\\\\"
	    "\\b\\f\\n\\r\\t\"]", 0, NULL);
	assert_non_null(j);
	expect_out(j, 0, "[\"\\u00E9\\u20AC\\uD83D\\uDE00/\\u007F\\u0001"
	    "\\\"\\\\\\b\\f\\n\\r\\t\"]");
	json_decref(j);
	/* U+0000 an id may carry; invalid UTF-8 as U+FFFD */
	j = json_stringn_nocheck("a\0b\xff", 4);
	expect_out(j, 0, "\"a\\u0000b\\uFFFD\"");
	json_decref(j);
	/* qnum_to_string: %.17g */
	j = json_pack("[f,f,f,f,I]", 1000.0, 0.25, 18446744073709551616.0,
	    -0.0, (json_int_t)-9223372036854775807 - 1);
	expect_out(j, 0, "[1000, 0.25, 1.8446744073709552e+19, -0, "
	    "-9223372036854775808]");
	json_decref(j);
	/* a parsed QDict: by bucket (x 134, a 233, b 340), later first in
	   one bucket (micro and minor share 225); as is without the flag */
	j = parse("{\"b\": 1, \"a\": {\"micro\": 1, \"minor\": 2}, \"x\": []}");
	expect_out(j, QMP_OUT_PARSED, "{\"x\": [], \"a\": {\"minor\": 2, "
	    "\"micro\": 1}, \"b\": 1}");
	expect_out(j, 0, "{\"b\": 1, \"a\": {\"micro\": 1, \"minor\": 2}, "
	    "\"x\": []}");
	/* the envelope: "id" after "return", before "error" */
	id = json_integer(7);
	qmp_error_set(&err, "C", "D");
	{
		struct qmp_out	o;
		json_t		*e = qmp_error_json(&err);

		qmp_out_init(&o);
		qmp_out_reply(&o, NULL, e, id);
		qmp_out_reply(&o, json_object_get(j, "x"), NULL, id);
		qmp_out_reply(&o, json_object_get(j, "x"), NULL, NULL);
		qmp_out_raw(&o, "", 1);
		assert_string_equal(o.buf, "{\"id\": 7, \"error\": {\"class\": "
		    "\"C\", \"desc\": \"D\"}}\r\n{\"return\": [], \"id\": 7}\r\n"
		    "{\"return\": []}\r\n");
		qmp_out_free(&o);
		json_decref(e);
	}
	json_decref(id);
	/* a number past int64 (up to uint64) comes back digit for digit,
	   in the id and in the arguments: QEMU keeps it exactly in both
	   (a 'size' of 2^64-1 is taken; as a double it is refused) */
	{
		static const char	 in[] = "{\"id\": 18446744073709551615,"
		    " \"arguments\": {\"n\": 18446744073709551615}}";
		json_t			*m = qmp_json_parse(in, strlen(in), &err);

		assert_non_null(m);
		expect_out(json_object_get(m, "id"), QMP_OUT_PARSED,
		    "18446744073709551615");
		expect_out(json_object_get(m, "arguments"), 0,
		    "{\"n\": 18446744073709551615}");
		expect_out(json_object_get(m, "arguments"), QMP_OUT_COMPACT,
		    "{\"n\":18446744073709551615}");
		json_decref(m);
	}
	s = qmp_dump_qemu(j, &len);
	assert_non_null(s);
	assert_int_equal(len, strlen(s));
	assert_string_equal(s, "{\"b\": 1, \"a\": {\"micro\": 1, \"minor\": 2},"
	    " \"x\": []}\r\n");
	free(s);
	json_decref(j);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_classify),
		cmocka_unit_test(test_cmd_parse_ok),
		cmocka_unit_test(test_cmd_parse_errors),
		cmocka_unit_test(test_cmd_new),
		cmocka_unit_test(test_greeting_real),
		cmocka_unit_test(test_greeting_partial),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_event_name),
		cmocka_unit_test(test_dump_roundtrip),
		cmocka_unit_test(test_dump_qemu),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
