/*
 * Framer tests: splits, line endings, limits, hostile lines, and a real
 * QEMU 7.2 transcript replayed at every split size from 1 to 64.
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
#include "proto/qmp_out.h"
#include "proto/qmp_msg.h"

#ifndef QB_TESTDATA
#define QB_TESTDATA "tests/data"
#endif

#define TRANSCRIPT "qemu-7.2-session.raw"

/* What came out of a framer, one entry per next() that returned != NONE. */
struct got {
	int	 rc[256];
	json_t	*msg[256];
	char	 err[256][512];
	size_t	 n;
};

static void
got_free(struct got *g)
{
	size_t	i;

	for (i = 0; i < g->n; i++)
		json_decref(g->msg[i]);
	g->n = 0;
}

/* Drain until NONE or BROKEN; returns the last rc. */
static int
drain(struct qmp_framer *f, struct got *g)
{
	struct qmp_error	 err;
	json_t			*m;
	int			 rc;

	for (;;) {
		memset(&err, 0, sizeof err);
		rc = qmp_framer_next(f, &m, &err);
		if (rc == QMP_FRAME_NONE)
			return (rc);
		assert_true(g->n < 256);
		g->rc[g->n] = rc;
		g->msg[g->n] = m;
		snprintf(g->err[g->n], sizeof g->err[0], "%s", err.desc);
		if (rc == QMP_FRAME_MSG)
			assert_non_null(m);
		else {
			assert_null(m);
			assert_string_equal(err.cls, QMP_CLS_GENERIC);
			assert_true(err.desc[0] != '\0');
		}
		g->n++;
		if (rc == QMP_FRAME_BROKEN)
			return (rc);
	}
}

/* Feed s in pieces of 'step' bytes, draining after each. */
static void
feed_split(struct qmp_framer *f, const char *s, size_t len, size_t step,
    struct got *g)
{
	size_t	i, n;

	for (i = 0; i < len; i += n) {
		n = len - i < step ? len - i : step;
		if (qmp_framer_feed(f, s + i, n) != 0)
			break;
		if (drain(f, g) == QMP_FRAME_BROKEN)
			return;
	}
	drain(f, g);
}

static int
msg_int(const json_t *m, const char *key)
{
	return ((int)json_integer_value(json_object_get(m, key)));
}

static void
test_one_byte_at_a_time(void **state)
{
	const char		*s = "{\"return\": {}, \"id\": 1}\r\n"
	    "{\"event\": \"STOP\", \"timestamp\": {\"seconds\": 1}}\n"
	    "{\"return\": [1, 2, 3], \"id\": 2}\r\n";
	struct qmp_framer	 f;
	struct got		 g = { .n = 0 };
	size_t			 i;

	qmp_framer_init(&f, 0);
	assert_int_equal(f.max, QMP_FRAMER_DEFAULT_MAX);
	for (i = 0; i < strlen(s); i++) {
		assert_int_equal(qmp_framer_feed(&f, s + i, 1), 0);
		drain(&f, &g);
		/* A message comes out exactly when its LF arrives. */
		if (s[i] == '\n')
			assert_int_equal(qmp_framer_pending(&f), 0);
	}
	assert_int_equal(g.n, 3);
	assert_int_equal(g.rc[0], QMP_FRAME_MSG);
	assert_int_equal(msg_int(g.msg[0], "id"), 1);
	assert_string_equal(qmp_event_name(g.msg[1]), "STOP");
	assert_int_equal(json_array_size(json_object_get(g.msg[2], "return")),
	    3);
	got_free(&g);
	qmp_framer_free(&f);
}

static void
test_many_per_feed(void **state)
{
	struct qmp_framer	 f;
	struct got		 g = { .n = 0 };
	char			 buf[200 * 32];
	size_t			 len = 0, i;

	for (i = 0; i < 200; i++)
		len += snprintf(buf + len, sizeof buf - len,
		    "{\"return\": {}, \"id\": %zu}%s", i, i % 2 ? "\r\n" : "\n");
	qmp_framer_init(&f, 0);
	assert_int_equal(qmp_framer_feed(&f, buf, len), 0);
	assert_int_equal(drain(&f, &g), QMP_FRAME_NONE);
	assert_int_equal(g.n, 200);
	for (i = 0; i < 200; i++) {
		assert_int_equal(g.rc[i], QMP_FRAME_MSG);
		assert_int_equal(msg_int(g.msg[i], "id"), (int)i);
	}
	assert_int_equal(qmp_framer_pending(&f), 0);
	got_free(&g);
	qmp_framer_free(&f);
}

static void
test_crlf_lf_empty_lines(void **state)
{
	const char		*s = "\r\n\n{\"id\": 1, \"return\": 0}\r\n"
	    "\n\n   \t \r\n{\"id\": 2, \"return\": 0}\n\r\n";
	struct qmp_framer	 f;
	struct got		 g = { .n = 0 };
	size_t			 step;

	for (step = 1; step <= strlen(s); step++) {
		qmp_framer_init(&f, 64);
		feed_split(&f, s, strlen(s), step, &g);
		assert_int_equal(g.n, 2);
		assert_int_equal(g.rc[0], QMP_FRAME_MSG);
		assert_int_equal(g.rc[1], QMP_FRAME_MSG);
		assert_int_equal(msg_int(g.msg[0], "id"), 1);
		assert_int_equal(msg_int(g.msg[1], "id"), 2);
		assert_int_equal(qmp_framer_pending(&f), 0);
		got_free(&g);
		qmp_framer_free(&f);
	}
}

/* A line of exactly n bytes: {"a":"xxxx..."} */
static char *
line_of(size_t n, const char *eol)
{
	char	*s;

	assert_true(n >= 8);
	s = malloc(n + strlen(eol) + 1);
	assert_non_null(s);
	memcpy(s, "{\"a\":\"", 6);
	memset(s + 6, 'x', n - 8);
	memcpy(s + n - 2, "\"}", 2);
	strcpy(s + n, eol);
	return (s);
}

static void
test_limit_exact(void **state)
{
	static const char	*eols[] = { "\n", "\r\n" };
	struct qmp_framer	 f;
	struct got		 g = { .n = 0 };
	char			*s;
	size_t			 i, step, max = 100;

	for (i = 0; i < 2; i++) {
		for (step = 1; step <= 103; step += 17) {
			/* max bytes: accepted, whatever the EOL and split. */
			s = line_of(max, eols[i]);
			qmp_framer_init(&f, max);
			feed_split(&f, s, strlen(s), step, &g);
			assert_int_equal(g.n, 1);
			assert_int_equal(g.rc[0], QMP_FRAME_MSG);
			assert_int_equal(strlen(json_string_value(
			    json_object_get(g.msg[0], "a"))), max - 8);
			got_free(&g);
			qmp_framer_free(&f);
			free(s);

			/* max + 1: the stream breaks, for good. */
			s = line_of(max + 1, eols[i]);
			qmp_framer_init(&f, max);
			feed_split(&f, s, strlen(s), step, &g);
			assert_int_equal(g.n, 1);
			assert_int_equal(g.rc[0], QMP_FRAME_BROKEN);
			assert_non_null(strstr(g.err[0], "exceeds the limit"));
			assert_non_null(strstr(g.err[0], "100"));
			assert_int_equal(qmp_framer_feed(&f, "{}\n", 3), -1);
			assert_null(qmp_framer_reserve(&f, 1, NULL));
			got_free(&g);
			assert_int_equal(drain(&f, &g), QMP_FRAME_BROKEN);
			assert_non_null(strstr(g.err[0], "broken"));
			got_free(&g);
			/* reset revives it. */
			qmp_framer_reset(&f);
			assert_int_equal(qmp_framer_feed(&f, "{}\n", 3), 0);
			assert_int_equal(drain(&f, &g), QMP_FRAME_NONE);
			assert_int_equal(g.n, 1);
			assert_int_equal(g.rc[0], QMP_FRAME_MSG);
			got_free(&g);
			qmp_framer_free(&f);
			free(s);
		}
	}
}

/* The break comes before the LF: memory never follows an endless line. */
static void
test_endless_line_bounded(void **state)
{
	struct qmp_framer	 f;
	struct got		 g = { .n = 0 };
	size_t			 i, max = 1000, caps = 0, lastcap = 0;
	char			*p, x = 'x';
	int			 refused = 0;

	qmp_framer_init(&f, max);
	for (i = 0; i < 10 * max; i++) {
		if (qmp_framer_feed(&f, &x, 1) != 0) {
			refused = 1;
			break;
		}
		if (f.cap != lastcap) {
			caps++;
			lastcap = f.cap;
		}
		assert_true(f.cap <= max + 2 + 1);
		if (drain(&f, &g) == QMP_FRAME_BROKEN)
			break;
	}
	assert_true(refused || g.n == 1);
	/* It broke as soon as the line could no longer fit: max + 1 bytes
	   not ending in CR. */
	assert_int_equal(i, max);
	got_free(&g);
	assert_int_equal(drain(&f, &g), QMP_FRAME_BROKEN);
	got_free(&g);
	assert_true(caps <= 2);
	qmp_framer_free(&f);

	/* Big limit, reads of 1 byte: growth is geometric, not per byte. */
	qmp_framer_init(&f, 0);
	caps = lastcap = 0;
	for (i = 0; i < 1024 * 1024; i++) {
		p = qmp_framer_reserve(&f, 1, NULL);
		assert_non_null(p);
		*p = 'y';
		qmp_framer_commit(&f, 1);
		if (f.cap != lastcap) {
			caps++;
			lastcap = f.cap;
		}
		if (i % 4096 == 0)
			assert_int_equal(drain(&f, &g), QMP_FRAME_NONE);
	}
	assert_true(caps <= 10);
	/* scan covers what was searched: nothing is searched twice. */
	assert_int_equal(drain(&f, &g), QMP_FRAME_NONE);
	assert_int_equal(f.scan, 1024 * 1024);
	qmp_framer_free(&f);
}

static void
test_garbage_then_good(void **state)
{
	const char		*s = "this is not json\r\n"
	    "[1, 2]\n"
	    "\"str\"\n"
	    "{\"a\": 1} {\"b\": 2}\n"
	    "{\"a\": 1, \"a\": 2}\n"
	    "{\"unterminated\": \n"
	    "{\"return\": {}, \"id\": 7}\r\n";
	struct qmp_framer	 f;
	struct got		 g = { .n = 0 };
	size_t			 step, i;

	for (step = 1; step <= 16; step++) {
		qmp_framer_init(&f, 0);
		feed_split(&f, s, strlen(s), step, &g);
		assert_int_equal(g.n, 7);
		for (i = 0; i < 6; i++) {
			assert_int_equal(g.rc[i], QMP_FRAME_BAD);
			assert_non_null(strstr(g.err[i], i == 1 ?
			    "QMP input must be a JSON object" :
			    i == 2 ? "JSON parse error" : ""));
		}
		assert_non_null(strstr(g.err[4], "duplicate"));
		assert_int_equal(g.rc[6], QMP_FRAME_MSG);
		assert_int_equal(msg_int(g.msg[6], "id"), 7);
		got_free(&g);
		qmp_framer_free(&f);
	}
}

static void
test_nul_and_utf8(void **state)
{
#define S(x) { x, sizeof(x) - 1 }
	static const struct {
		const char	*s;
		size_t		 len;
	} bad[] = {
		S("{\"a\": \"x\0y\"}\n"),		/* NUL in a string */
		S("{\"a\": 1}\0\n"),		/* NUL after the object */
		S("\0{\"a\": 1}\n"),		/* NUL before */
		S("{\"a\": \"\xff\"}\n"),		/* never valid */
		S("{\"a\": \"\xc0\xaf\"}\n"),	/* overlong '/' */
		S("{\"a\": \"\xed\xa0\x80\"}\n"),	/* surrogate */
		S("{\"a\": \"\xe2\x82\"}\n"),	/* truncated */
		S("{\"\xfe\": 1}\n"),		/* bad key */
	};
#undef S
	const char		*good = "{\"a\": \"\xe2\x82\xac\"}\n";
	struct qmp_framer	 f;
	struct got		 g = { .n = 0 };
	size_t			 i;

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		qmp_framer_init(&f, 0);
		assert_int_equal(qmp_framer_feed(&f, bad[i].s, bad[i].len), 0);
		assert_int_equal(qmp_framer_feed(&f, good, strlen(good)), 0);
		drain(&f, &g);
		assert_int_equal(g.n, 2);
		assert_int_equal(g.rc[0], QMP_FRAME_BAD);
		assert_int_equal(g.rc[1], QMP_FRAME_MSG);
		assert_string_equal(json_string_value(json_object_get(g.msg[1],
		    "a")), "\xe2\x82\xac");
		got_free(&g);
		qmp_framer_free(&f);
	}
}

static void
test_deep_nesting(void **state)
{
	struct qmp_framer	 f;
	struct got		 g = { .n = 0 };
	size_t			 depth = 100000, i;
	char			*s;
	const char		*open[] = { "[", "{\"a\":" };

	for (i = 0; i < 2; i++) {
		size_t	olen = strlen(open[i]), k, len = 0;

		s = malloc(depth * (olen + 1) + 64);
		assert_non_null(s);
		for (k = 0; k < depth; k++) {
			memcpy(s + len, open[i], olen);
			len += olen;
		}
		for (k = 0; k < depth; k++)
			s[len++] = i == 0 ? ']' : '}';
		memcpy(s + len, "\n{\"ok\": 1}\n", 11);
		len += 11;
		qmp_framer_init(&f, 0);
		assert_int_equal(qmp_framer_feed(&f, s, len), 0);
		drain(&f, &g);
		assert_int_equal(g.n, 2);
		assert_int_equal(g.rc[0], QMP_FRAME_BAD);
		assert_non_null(strstr(g.err[0], "depth"));
		assert_int_equal(g.rc[1], QMP_FRAME_MSG);
		assert_int_equal(msg_int(g.msg[1], "ok"), 1);
		got_free(&g);
		qmp_framer_free(&f);
		free(s);
	}
}

static void
test_reserve_commit(void **state)
{
	struct qmp_framer	 f;
	struct got		 g = { .n = 0 };
	const char		*a = "{\"id\": 1, \"return\": {}}\n{\"id\": 2, ";
	const char		*b = "\"return\": {}}\n";
	char			*p, *first;
	size_t			 avail, first_len, cap;

	qmp_framer_init(&f, 0);
	p = qmp_framer_reserve(&f, 16, &avail);
	assert_non_null(p);
	assert_true(avail >= 16);
	first = f.buf;
	memcpy(p, a, strlen(a));
	qmp_framer_commit(&f, strlen(a));
	assert_int_equal(drain(&f, &g), QMP_FRAME_NONE);
	assert_int_equal(g.n, 1);
	/* The partial second message waits; nothing was moved yet. */
	first_len = strchr(a, '\n') - a + 1;
	assert_int_equal(qmp_framer_pending(&f), strlen(a) - first_len);
	assert_int_equal(f.off, first_len);

	/* Ask for all the room the buffer has: the partial line moves down
	   instead of the buffer growing. */
	p = qmp_framer_reserve(&f, f.cap - qmp_framer_pending(&f), &avail);
	assert_non_null(p);
	assert_ptr_equal(f.buf, first);
	assert_int_equal(f.off, 0);
	assert_memory_equal(f.buf, "{\"id\": 2, ", 10);
	memcpy(p, b, strlen(b));
	qmp_framer_commit(&f, strlen(b));
	assert_int_equal(drain(&f, &g), QMP_FRAME_NONE);
	assert_int_equal(g.n, 2);
	assert_int_equal(msg_int(g.msg[1], "id"), 2);
	/* Everything consumed: the buffer starts over. */
	assert_int_equal(f.len, 0);
	assert_int_equal(f.off, 0);

	/* Growing while a line is half read keeps only the live bytes. */
	assert_int_equal(qmp_framer_feed(&f, a, strlen(a)), 0);
	assert_int_equal(drain(&f, &g), QMP_FRAME_NONE);
	assert_int_equal(g.n, 3);
	assert_int_equal(f.off, first_len);
	cap = f.cap;
	p = qmp_framer_reserve(&f, 2 * cap, &avail);
	assert_non_null(p);
	assert_true(avail >= 2 * cap);
	assert_true(f.cap > cap);
	assert_int_equal(f.off, 0);
	assert_int_equal(f.len, strlen(a) - first_len);
	assert_memory_equal(f.buf, "{\"id\": 2, ", 10);
	memcpy(p, b, strlen(b));
	qmp_framer_commit(&f, strlen(b));
	assert_int_equal(drain(&f, &g), QMP_FRAME_NONE);
	assert_int_equal(g.n, 4);
	assert_int_equal(msg_int(g.msg[3], "id"), 2);

	/* Commit past the reservation is clamped, not an overflow. */
	p = qmp_framer_reserve(&f, 1, &avail);
	assert_non_null(p);
	qmp_framer_commit(&f, avail + 1000);
	assert_int_equal(f.len, f.cap);
	got_free(&g);
	qmp_framer_free(&f);

	/* A partial line already at the limit: no more room is offered. */
	qmp_framer_init(&f, 8);
	assert_int_equal(qmp_framer_feed(&f, "123456789", 9), 0);
	assert_null(qmp_framer_reserve(&f, 1, &avail));
	assert_int_equal(avail, 0);
	assert_int_equal(drain(&f, &g), QMP_FRAME_BROKEN);
	got_free(&g);
	qmp_framer_free(&f);

	/* ... but max bytes plus a CR may still become a valid line. */
	qmp_framer_init(&f, 8);
	assert_int_equal(qmp_framer_feed(&f, "{\"a\":12}\r", 9), 0);
	assert_non_null(qmp_framer_reserve(&f, 1, &avail));
	assert_int_equal(qmp_framer_feed(&f, "\n", 1), 0);
	assert_int_equal(drain(&f, &g), QMP_FRAME_NONE);
	assert_int_equal(g.n, 1);
	assert_int_equal(msg_int(g.msg[0], "a"), 12);
	got_free(&g);
	qmp_framer_free(&f);
}

static void
test_parse_line(void **state)
{
	struct qmp_error	 err;
	json_t			*m;

	m = qmp_parse_line("{\"a\": 1}\r", 9, &err);
	assert_non_null(m);
	json_decref(m);
	/* Only one CR belongs to the EOL. */
	m = qmp_parse_line("{\"a\": 1}x\r", 10, &err);
	assert_null(m);
	assert_non_null(strstr(err.desc, "JSON parse error"));
	m = qmp_parse_line("", 0, &err);
	assert_null(m);
	m = qmp_parse_line("42", 2, &err);
	assert_null(m);
	/* Integers past int64 are not silently changed: QEMU writes them
	   (a uint64 parameter), they come as QMP_OUT_U64_KEY's digits */
	m = qmp_parse_line("{\"a\": 18446744073709551615}", 27, &err);
	assert_non_null(m);
	assert_string_equal(json_string_value(json_object_get(
	    json_object_get(m, "a"), QMP_OUT_U64_KEY)), "18446744073709551615");
	json_decref(m);
	/* and U+0000 as QEMU holds it, where jansson would need a NUL */
	m = qmp_parse_line("{\"a\": \"x\\u0000y\"}", 17, &err);
	assert_non_null(m);
	assert_string_equal(json_string_value(json_object_get(m, "a")),
	    "x\xc0\x80y");
	json_decref(m);
	/* Not NUL-terminated input: the length is what counts. */
	m = qmp_parse_line("{\"a\": 1}garbage", 8, &err);
	assert_non_null(m);
	json_decref(m);
}

/*
 * QEMU's grammar reads what jansson cannot hold (a big integer, U+0000),
 * but only QEMU's grammar: its lexer refuses a raw control character or
 * NUL in a string, where QEMU's parser alone would take them. The
 * fuzzers found both ways in (tests/fuzz/corpus/framer, msg): jansson's
 * error text quotes the line, so "too big" in a key passed for the
 * integer case; and a real big integer before a raw control character.
 */
static void
test_parse_line_qemu_only(void **state)
{
	static const char	 key[] = "{\"too big\x05\": 1}";
	static const char	 nulkey[] = "{\"too big\0\": 1}";
	static const char	 after[] =
	    "{\"a\": 18446744073709551615, \"b\": \"x\x01\"}";
	static const char	 nulstr[] =
	    "{\"a\": \"\\u0000\", \"b\": \"\0\"}";
	static const char	 two[] =
	    "{\"a\": 18446744073709551615} {\"b\": 1}";
	struct qmp_error	 err;
	json_t			*m;

	m = qmp_parse_line(key, sizeof key - 1, &err);
	assert_null(m);
	assert_non_null(strstr(err.desc, "control character"));
	m = qmp_parse_line(nulkey, sizeof nulkey - 1, &err);
	assert_null(m);
	m = qmp_parse_line(after, sizeof after - 1, &err);
	assert_null(m);
	assert_non_null(strstr(err.desc, "JSON parse error"));
	m = qmp_parse_line(nulstr, sizeof nulstr - 1, &err);
	assert_null(m);
	/* one object per line, as before */
	m = qmp_parse_line(two, sizeof two - 1, &err);
	assert_null(m);
	/* and what QEMU writes still reads, blanks around it */
	m = qmp_parse_line(" {\"k\\u0000\": -9223372036854775809} \r", 36,
	    &err);
	assert_non_null(m);
	assert_non_null(json_object_get(m, "k\xc0\x80"));
	json_decref(m);
}

/* --- the real QEMU transcript --- */

static char *
slurp(const char *name, size_t *len)
{
	const char	*dir = getenv("QB_SRCDIR");
	char		 path[4096];
	FILE		*fp;
	char		*buf;
	long		 n;

	if (dir != NULL)
		snprintf(path, sizeof path, "%s/tests/data/%s", dir, name);
	else
		snprintf(path, sizeof path, "%s/%s", QB_TESTDATA, name);
	fp = fopen(path, "rb");
	if (fp == NULL)
		fail_msg("cannot open %s", path);
	assert_int_equal(fseek(fp, 0, SEEK_END), 0);
	n = ftell(fp);
	assert_true(n > 0);
	rewind(fp);
	buf = malloc(n);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, n, fp), (size_t)n);
	fclose(fp);
	*len = n;
	return (buf);
}

/*
 * A message's signature, built without the classifier: type, id, event
 * name or error class. The reference side uses bare jansson.
 */
static void
signature(const json_t *m, char *out, size_t size)
{
	char	*id = NULL;
	json_t	*v;

	if ((v = json_object_get(m, "id")) != NULL)
		id = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	if (json_object_get(m, "QMP") != NULL)
		snprintf(out, size, "greeting");
	else if (json_object_get(m, "event") != NULL)
		snprintf(out, size, "event %s", json_string_value(
		    json_object_get(m, "event")));
	else if (json_object_get(m, "return") != NULL)
		snprintf(out, size, "return %s", id ? id : "-");
	else if ((v = json_object_get(m, "error")) != NULL)
		snprintf(out, size, "error %s %s", id ? id : "-",
		    json_string_value(json_object_get(v, "class")));
	else
		snprintf(out, size, "other");
	free(id);
}

static void
test_transcript_splits(void **state)
{
	char			*raw, *p, *nl, sig[128];
	size_t			 len, nref = 0, i, step, lfs = 0;
	json_t			*ref[64];
	char			 refsig[64][128];
	struct qmp_framer	 f;
	struct got		 g = { .n = 0 };
	enum qmp_msg_type	 t;
	int			 seen_stop = 0, seen_resume = 0;
	int			 seen_notfound = 0;

	raw = slurp(TRANSCRIPT, &len);
	/* The reference: bare json_loads on each line, one shot. */
	for (p = raw; (nl = memchr(p, '\n', raw + len - p)) != NULL;
	    p = nl + 1) {
		json_error_t	 jerr;

		lfs++;
		if (nl == p || (nl == p + 1 && *p == '\r'))
			continue;
		assert_true(nref < 64);
		ref[nref] = json_loadb(p, nl - p, 0, &jerr);
		if (ref[nref] == NULL)
			fail_msg("line %zu: %s", lfs, jerr.text);
		signature(ref[nref], refsig[nref], sizeof refsig[0]);
		nref++;
	}
	assert_ptr_equal(p, raw + len);		/* ends with its EOL */
	assert_int_equal(nref, lfs);		/* QEMU sends no blank line */
	assert_true(nref >= 15);
	/* What record-session.py asked for is really in there. */
	assert_string_equal(refsig[0], "greeting");
	assert_string_equal(refsig[1], "return 1");
	assert_string_equal(refsig[nref - 1], "return 13");
	for (i = 0; i < nref; i++) {
		seen_stop += strcmp(refsig[i], "event STOP") == 0;
		seen_resume += strcmp(refsig[i], "event RESUME") == 0;
		seen_notfound += strcmp(refsig[i],
		    "error 11 CommandNotFound") == 0;
	}
	assert_int_equal(seen_stop, 1);
	assert_int_equal(seen_notfound, 1);
	assert_int_equal(seen_resume, 2);

	for (step = 1; step <= 64; step++) {
		qmp_framer_init(&f, 0);
		feed_split(&f, raw, len, step, &g);
		if (g.n != nref)
			fail_msg("split %zu: %zu messages, want %zu", step,
			    g.n, nref);
		for (i = 0; i < nref; i++) {
			assert_int_equal(g.rc[i], QMP_FRAME_MSG);
			assert_true(json_equal(g.msg[i], ref[i]));
			signature(g.msg[i], sig, sizeof sig);
			assert_string_equal(sig, refsig[i]);
			/* The classifier agrees with the signature. */
			t = qmp_msg_classify(g.msg[i]);
			assert_int_equal(strncmp(sig, qmp_msg_type_name(t),
			    strlen(qmp_msg_type_name(t))), 0);
		}
		assert_int_equal(qmp_framer_pending(&f), 0);
		got_free(&g);
		qmp_framer_free(&f);
	}
	for (i = 0; i < nref; i++)
		json_decref(ref[i]);
	free(raw);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_one_byte_at_a_time),
		cmocka_unit_test(test_many_per_feed),
		cmocka_unit_test(test_crlf_lf_empty_lines),
		cmocka_unit_test(test_limit_exact),
		cmocka_unit_test(test_endless_line_bounded),
		cmocka_unit_test(test_garbage_then_good),
		cmocka_unit_test(test_nul_and_utf8),
		cmocka_unit_test(test_deep_nesting),
		cmocka_unit_test(test_reserve_commit),
		cmocka_unit_test(test_parse_line),
		cmocka_unit_test(test_parse_line_qemu_only),
		cmocka_unit_test(test_transcript_splits),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
