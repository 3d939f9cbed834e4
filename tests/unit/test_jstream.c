/*
 * QEMU-grammar reader tests: the answers QEMU 7.2 gives to the same bytes
 * (test_qmp_grammar.py checks those against the real binary), the same
 * answers at every split, the limits, and bounded memory.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "proto/qmp_jstream.h"
#include "proto/qmp_out.h"

/* Every answer to data, as one line of text each: "M <compact json>" or
   "E <desc>", or "B <desc>" once broken. */
/* m as qmp_out writes it to QEMU, malloc'd */
static char *
out_compact(const json_t *m)
{
	struct qmp_out	 o;
	char		*d;

	qmp_out_init(&o);
	qmp_out_json(&o, m, QMP_OUT_COMPACT);
	qmp_out_raw(&o, "", 1);
	assert_false(o.failed);
	d = strdup(o.buf);
	qmp_out_free(&o);
	return (d);
}

static char *
answers(const char *data, size_t len, size_t piece, size_t max)
{
	struct qmp_jstream	 s;
	struct qmp_error	 err;
	enum qmp_frame_rc	 rc;
	json_t			*m;
	char			*out = NULL, *d;
	size_t			 olen = 0, i, n;
	FILE			*f;

	f = open_memstream(&out, &olen);
	assert_non_null(f);
	qmp_jstream_init(&s, max);
	for (i = 0; i <= len; i += n) {
		n = len - i < piece ? len - i : piece;
		if (n > 0 && qmp_jstream_feed(&s, data + i, n) != 0)
			n = len - i;	/* broken: next() says so */
		while ((rc = qmp_jstream_next(&s, &m, &err)) !=
		    QMP_FRAME_NONE) {
			if (rc == QMP_FRAME_MSG) {
				d = json_dumps(m, JSON_COMPACT|JSON_SORT_KEYS);
				if (d == NULL)	/* U+0000 as C0 80: jansson
						   cannot, qmp_out can */
					d = out_compact(m);
				fprintf(f, "M %s\n", d);
				free(d);
				json_decref(m);
			} else {
				fprintf(f, "%c %s\n", rc == QMP_FRAME_BAD ?
				    'E' : 'B', err.desc);
				if (rc == QMP_FRAME_BROKEN)
					goto out;
			}
		}
		if (n == 0)
			break;
	}
out:
	qmp_jstream_free(&s);
	fclose(f);
	return (out);
}

/* Same answers whole and at every piece size up to 17. */
static void
expect(const char *data, size_t len, const char *want)
{
	char	*got;
	size_t	 piece;

	for (piece = 1; piece <= 17; piece++) {
		got = answers(data, len, piece, 0);
		if (strcmp(got, want) != 0)
			fail_msg("piece %zu of %.40s:\n got  %s\n want %s",
			    piece, data, got, want);
		free(got);
	}
	got = answers(data, len, len + 1, 0);
	assert_string_equal(got, want);
	free(got);
}

#define EXPECT(lit, want)	expect(lit, sizeof lit - 1, want)

static void
test_framing(void **state)
{
	(void)state;
	EXPECT("{\"execute\":\"a\"}", "M {\"execute\":\"a\"}\n");
	EXPECT("{\"execute\":\"a\"}{\"execute\":\"b\"} {}",
	    "M {\"execute\":\"a\"}\nM {\"execute\":\"b\"}\nM {}\n");
	EXPECT("{\n\"execute\"\r\n:\t\"a\"\n}\n", "M {\"execute\":\"a\"}\n");
	EXPECT("  \r\n\t\n", "");
	/* a number or keyword at top level ends at the next byte */
	EXPECT("1", "");
	EXPECT("1 ", "E QMP input must be a JSON object\n");
	EXPECT("true{}", "E QMP input must be a JSON object\nM {}\n");
}

static void
test_strings(void **state)
{
	(void)state;
	EXPECT("{'a':'b\\'c\"d'}", "M {\"a\":\"b'c\\\"d\"}\n");
	EXPECT("{\"a\":\"\\u00e9\\ud83d\\ude00\"}",
	    "M {\"a\":\"\xc3\xa9\xf0\x9f\x98\x80\"}\n");
	EXPECT("{\"id\":\"a\\u0000b\"}", "M {\"id\":\"a\\u0000b\"}\n");
	/* elsewhere U+0000 as QEMU keeps it: modified UTF-8 */
	EXPECT("{\"x\":\"a\\u0000b\"}", "M {\"x\":\"a\\u0000b\"}\n");
	EXPECT("{\"x\":\"a\xc0\x80" "b\"}", "M {\"x\":\"a\\u0000b\"}\n");
	EXPECT("{\"id\":\"\\uFFFF\"}", "E JSON parse error, \\uFFFF is not a "
	    "valid Unicode character\n");
	EXPECT("{\"id\":\"\\ud800\"}", "E JSON parse error, \\ud800 is not a "
	    "valid Unicode character\n");
	EXPECT("{\"id\":\"\\u12\"}", "E JSON parse error, \\u12\" is not a "
	    "valid Unicode character\n");
	EXPECT("{\"id\":\"\\x\"}", "E JSON parse error, invalid escape "
	    "sequence in string\n");
	EXPECT("{\"id\":\"\xc0\xaf\"}", "E JSON parse error, invalid UTF-8 "
	    "sequence in string\n");
	EXPECT("{\"id\":\"\xef\xbf\xbf\"}", "E JSON parse error, invalid "
	    "UTF-8 sequence in string\n");
}

static void
test_lexical_errors(void **state)
{
	(void)state;
	EXPECT("@", "E JSON parse error, stray '@'\n");
	EXPECT("\xff", "E JSON parse error, stray '\xef\xbf\xbd'\n");
	EXPECT("\0", "E JSON parse error, stray ''\n");
	EXPECT("@\0", "E JSON parse error, stray '@'\n"
	    "E JSON parse error, stray ''\n");
	/* after an error: skip to a structural or control byte */
	EXPECT("{\"a\":\"\xff\"}", "E JSON parse error, stray '\"\xef\xbf\xbd'"
	    "\nE JSON parse error, expecting value\n");
	EXPECT("{\"a\" @ x y} {}", "E JSON parse error, stray '@'\n"
	    "E JSON parse error, expecting value\nM {}\n");
	EXPECT("01 ", "E JSON parse error, stray '01'\n");
	EXPECT("-x", "E JSON parse error, stray '-x'\n");
	EXPECT("1.x", "E JSON parse error, stray '1.x'\n");
	EXPECT("1e}", "E JSON parse error, stray '1e}'\n");
}

static void
test_parse_errors(void **state)
{
	(void)state;
	EXPECT("}", "E JSON parse error, expecting value\n");
	EXPECT("[}]", "E JSON parse error, expecting value\n"
	    "E JSON parse error, expecting value\n");
	EXPECT("{\"a\" 1}", "E JSON parse error, missing : in object pair\n");
	EXPECT("{\"a\":1 \"b\":2}", "E JSON parse error, expected separator "
	    "in dict\n");
	EXPECT("[1 2]", "E JSON parse error, expected separator in list\n");
	EXPECT("[0e5]", "E JSON parse error, expected separator in list\n");
	EXPECT("[1,]", "E JSON parse error, expecting value\n");
	EXPECT("{1:2}", "E JSON parse error, key is not a string in object\n");
	EXPECT("[tru]", "E JSON parse error, invalid keyword 'tru'\n");
	EXPECT("{\"a\":1,\"a\":2}", "E JSON parse error, duplicate key\n");
	/* QEMU keeps integers up to 2^64-1; jansson's stop at 2^63-1: the
	   larger ones as QMP_OUT_U64_KEY's digits, past 2^64-1 reals
	   (docs/control.md) */
	EXPECT("{\"a\":18446744073709551615}",
	    "M {\"a\":{\"\xef\xbf\xbf\":\"18446744073709551615\"}}\n");
	EXPECT("{\"a\":18446744073709551616}",
	    "M {\"a\":1.8446744073709552e19}\n");
	/* alone it is no object (its holder would read as one: fuzzing) */
	EXPECT("18446744073709551615 ", "E QMP input must be a JSON object\n");
}

static void
test_nesting(void **state)
{
	char	buf[3000];

	(void)state;
	memset(buf, '[', 1025);
	expect(buf, 1025, "E JSON nesting depth limit exceeded\n");
	/* 1024 deep is fine */
	memset(buf, '[', 1024);
	memset(buf + 1024, ']', 1024);
	expect(buf, 2048, "E QMP input must be a JSON object\n");
}

static void
test_token_count(void **state)
{
	size_t	 n = (size_t)QMP_JSON_MAX_TOKEN_COUNT + 10, i;
	char	*buf = malloc(2 * n), *got;

	(void)state;
	assert_non_null(buf);
	/* '[' then "1," pairs: the 2 Mi + 1st token is refused */
	buf[0] = '[';
	for (i = 1; i + 1 < 2 * n; i += 2)
		memcpy(buf + i, "1,", 2);
	got = answers(buf, QMP_JSON_MAX_TOKEN_COUNT + 1, 65536,
	    8u << 20);
	assert_string_equal(got, "E JSON token count limit exceeded\n");
	free(got);
	free(buf);
}

static void
test_max_msg(void **state)
{
	char			 buf[200];
	struct qmp_jstream	 s;
	struct qmp_error	 err;
	json_t			*m;
	char			*got;
	int			 i;

	(void)state;
	/* a message of 100 bytes with max 99: broken */
	memset(buf, ' ', sizeof buf);
	buf[0] = '[';
	buf[99] = ']';
	got = answers(buf, 100, 7, 99);
	assert_string_equal(got, "B QMP message exceeds the limit of 99 "
	    "bytes\n");
	free(got);
	got = answers(buf, 100, 7, 100);
	assert_string_equal(got, "E QMP input must be a JSON object\n");
	free(got);
	/* whitespace and skipped bytes between messages cost nothing */
	qmp_jstream_init(&s, 64);
	for (i = 0; i < 10000; i++) {
		assert_int_equal(qmp_jstream_feed(&s, "  \n@xyz ", 8), 0);
		while (qmp_jstream_next(&s, &m, &err) == QMP_FRAME_BAD)
			;
		assert_true(s.cap <= 4096);
	}
	qmp_jstream_free(&s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_framing),
		cmocka_unit_test(test_strings),
		cmocka_unit_test(test_lexical_errors),
		cmocka_unit_test(test_parse_errors),
		cmocka_unit_test(test_nesting),
		cmocka_unit_test(test_token_count),
		cmocka_unit_test(test_max_msg),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
