/*
 * core/metrics: the text format's escapes and histogram lines, exactly;
 * util/hist's buckets and quantiles; hv/vmq's command-name table, which
 * keeps a client's invented names in one "other" row.
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
#include <event2/buffer.h>
#include <event2/event.h>

#include "broker/core/metrics.h"
#include "hv/vmq.h"
#include "util/hist.h"

static const char	*t_value;	/* a label value to write */
static struct hist	 t_hist;

static void
t_collect(struct metrics_out *o, void *arg)
{
	const char	*kv[] = { "vm", t_value, NULL };

	metrics_family(o, "t_total", "counter", "A test counter.");
	metrics_u64(o, "t_total", kv, 18446744073709551615ULL);
	metrics_u64(o, "t_total", NULL, 0);
	metrics_family(o, "t_seconds", "histogram", "A test histogram.");
	metrics_hist(o, "t_seconds", kv, &t_hist);
}

/* The exposition, after the process' own families (which come first). */
static char *
t_scrape(void)
{
	struct evbuffer	*b = evbuffer_new();
	size_t		 n;
	char		*s, *mine;

	assert_non_null(b);
	metrics_collect(b);
	n = evbuffer_get_length(b);
	s = calloc(1, n + 1);
	assert_non_null(s);
	evbuffer_remove(b, s, n);
	evbuffer_free(b);
	mine = strstr(s, "# HELP qmpbroker_t_total");
	assert_non_null(mine);
	memmove(s, mine, strlen(mine) + 1);
	return (s);
}

/* A registry with the process' collector and t_collect, on a base of
   its own. */
static int
t_setup(void **state)
{
	struct event_base	*base = event_base_new();

	assert_non_null(base);
	assert_int_equal(metrics_init(base), 0);
	assert_int_equal(metrics_register(t_collect, NULL), 0);
	*state = base;
	return (0);
}

static int
t_teardown(void **state)
{
	metrics_shutdown();
	event_base_free(*state);
	return (0);
}

static void
test_escapes(void **state)
{
	char	*s;

	t_value = "a\"b\\c\nd";
	memset(&t_hist, 0, sizeof t_hist);
	s = t_scrape();
	assert_non_null(strstr(s, "# HELP qmpbroker_t_total A test counter.\n"
	    "# TYPE qmpbroker_t_total counter\n"
	    "qmpbroker_t_total{vm=\"a\\\"b\\\\c\\nd\"} "
	    "18446744073709551615\n"
	    "qmpbroker_t_total 0\n"));
	free(s);
}

static void
test_histogram(void **state)
{
	char	*s;

	t_value = "v";
	memset(&t_hist, 0, sizeof t_hist);
	hist_observe(&t_hist, 50);		/* <= 100 us */
	hist_observe(&t_hist, 100);		/* on the bound: <= 100 us */
	hist_observe(&t_hist, 3000);		/* <= 5 ms */
	hist_observe(&t_hist, 60000000);	/* past 10 s: +Inf only */
	s = t_scrape();
	assert_non_null(strstr(s,
	    "qmpbroker_t_seconds_bucket{vm=\"v\",le=\"0.0001\"} 2\n"
	    "qmpbroker_t_seconds_bucket{vm=\"v\",le=\"0.00025\"} 2\n"));
	assert_non_null(strstr(s,
	    "qmpbroker_t_seconds_bucket{vm=\"v\",le=\"0.0025\"} 2\n"
	    "qmpbroker_t_seconds_bucket{vm=\"v\",le=\"0.005\"} 3\n"));
	assert_non_null(strstr(s,
	    "qmpbroker_t_seconds_bucket{vm=\"v\",le=\"10\"} 3\n"
	    "qmpbroker_t_seconds_bucket{vm=\"v\",le=\"+Inf\"} 4\n"
	    "qmpbroker_t_seconds_sum{vm=\"v\"} 60.00315\n"
	    "qmpbroker_t_seconds_count{vm=\"v\"} 4\n"));
	free(s);
	assert_int_equal(hist_quantile_us(&t_hist, 0.5), 100);
	assert_int_equal(hist_quantile_us(&t_hist, 0.75), 5000);
	assert_true(hist_quantile_us(&t_hist, 1.0) == UINT64_MAX);
}

static void
test_cmd_names(void **state)
{
	char	name[32];
	size_t	i, other = VMQ_NCMDS - 1;

	assert_string_equal(vmq_cmd_name(other), "other");
	assert_null(vmq_cmd_name(VMQ_NCMDS));
	/* every known name maps to its own row, and back */
	for (i = 0; i < other; i++) {
		assert_int_equal(vmq_cmd_index(vmq_cmd_name(i)), i);
		if (i > 0)	/* sorted, which bsearch needs */
			assert_true(strcmp(vmq_cmd_name(i - 1),
			    vmq_cmd_name(i)) < 0);
	}
	assert_int_not_equal(vmq_cmd_index("query-status"), other);
	assert_int_equal(vmq_cmd_index("other"), other);
	assert_int_equal(vmq_cmd_index(""), other);
	srandom(42);
	for (i = 0; i < 10000; i++) {
		snprintf(name, sizeof name, "x-%lx", (unsigned long)random());
		assert_int_equal(vmq_cmd_index(name), other);
	}
}

int
main(void)
{
	const struct CMUnitTest	tests[] = {
		cmocka_unit_test_setup_teardown(test_escapes, t_setup,
		    t_teardown),
		cmocka_unit_test_setup_teardown(test_histogram, t_setup,
		    t_teardown),
		cmocka_unit_test(test_cmd_names),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
