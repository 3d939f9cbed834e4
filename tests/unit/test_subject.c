/*
 * util/subject: NATS subject tokens. Every name gives a token NATS
 * accepts (no '.', '*', '>', whitespace, not empty), two different
 * names never give the same token, and the documented spellings hold
 * (docs/nats.md). Also the URL list splitter.
 */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "util/subject.h"

static const char *
tok(const char *s)
{
	static char	buf[3 * 300 + 1];

	assert_int_not_equal(subject_token(buf, sizeof buf, s), 0);
	return (buf);
}

static void
test_spellings(void **state)
{
	assert_string_equal(tok("web1"), "web1");
	assert_string_equal(tok("a-b_c"), "a-b_c");
	assert_string_equal(tok("web.1"), "web%2E1");
	assert_string_equal(tok("a*b>c d"), "a%2Ab%3Ec%20d");
	assert_string_equal(tok("100%"), "100%25");
	assert_string_equal(tok("_"), "%5F");
	assert_string_equal(tok("__"), "__");
	assert_string_equal(tok(""), "%");
	assert_string_equal(tok("\xc3\xa9"), "%C3%A9");
}

static int
cmp8(const void *a, const void *b)
{
	return (strcmp(a, b));
}

/* Every pair of bytes (and every byte alone: j = 0): valid tokens, all
   distinct. */
static void
test_valid_and_distinct(void **state)
{
	char		 in[3], (*out)[8];
	size_t		 n = 0, i, j;
	const char	*t;

	out = calloc(256 * 256 + 256, sizeof *out);
	assert_non_null(out);
	for (i = 1; i < 256; i++) {
		for (j = 0; j < 256; j++) {
			in[0] = (char)i;
			in[1] = (char)j;
			in[2] = '\0';
			t = tok(in);
			assert_true(strlen(t) > 0 && strlen(t) < 8);
			assert_null(strpbrk(t, ".*> \t\r\n"));
			strcpy(out[n++], t);
		}
	}
	qsort(out, n, sizeof *out, cmp8);
	for (i = 1; i < n; i++)
		assert_string_not_equal(out[i - 1], out[i]);
	free(out);
}

static void
test_short_buffer(void **state)
{
	char	buf[6];

	assert_int_equal(subject_token(buf, sizeof buf, "abcde"), 5);
	assert_int_equal(subject_token(buf, sizeof buf, "abcdef"), 0);
	assert_int_equal(subject_token(buf, sizeof buf, "ab.c"), 0);
	assert_int_equal(subject_token(buf, 3, "_"), 0);
}

static void
test_urls(void **state)
{
	char		 list[] = "nats://a:1, nats://b:2,,nats://c:3";
	char		 many[] = "a,b,c";
	const char	*u[4];

	assert_int_equal(subject_urls(list, u, 4), 3);
	assert_string_equal(u[0], "nats://a:1");
	assert_string_equal(u[1], "nats://b:2");
	assert_string_equal(u[2], "nats://c:3");
	assert_int_equal(subject_urls(many, u, 2), -1);
}

int
main(void)
{
	const struct CMUnitTest	tests[] = {
		cmocka_unit_test(test_spellings),
		cmocka_unit_test(test_valid_and_distinct),
		cmocka_unit_test(test_short_buffer),
		cmocka_unit_test(test_urls),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
