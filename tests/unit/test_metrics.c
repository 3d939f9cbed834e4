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

/* A part collector of many samples: one per item, as the per-VM series
   are one per VM. */
#define T_ITEMS		100000
struct t_part {
	size_t	next;
	int	stopped_here;
};
static int	 t_stops;

static int
t_part(struct metrics_out *o, void *state, void *arg)
{
	static const struct metrics_str	head = METRICS_STR(METRICS_PREFIX
					    "p_total{");
	static const struct metrics_str	lab = METRICS_STR("vm=\"x\"");
	static const struct metrics_str	tail = METRICS_STR("} ");
	struct t_part			*p = state;

	if (p->next == 0)
		metrics_family(o, "p_total", "counter", "Parts.");
	for (; p->next < T_ITEMS; ) {
		metrics_sample(o, head, lab, tail, p->next++);
		if (metrics_out_full(o))
			return (0);
	}
	return (1);
}

static void
t_part_stop(void *state, void *arg)
{
	t_stops++;
}

static int
t_part_setup(void **state)
{
	struct event_base	*base = event_base_new();

	assert_non_null(base);
	assert_int_equal(metrics_init(base), 0);
	assert_int_equal(metrics_register_parts(t_part, t_part_stop, NULL),
	    0);
	assert_int_equal(metrics_register(t_collect, NULL), 0);
	*state = base;
	return (0);
}

/* A scrape in parts: each step is about METRICS_PART bytes, the parts
   make exactly what one go makes (every item once, in order, and the
   collector after the part one), and a scrape dropped mid-way stops
   the part collector once. */
static void
test_parts(void **state)
{
	struct metrics_scrape	*ms;
	struct evbuffer		*whole = evbuffer_new(), *all = evbuffer_new(),
				*part = evbuffer_new();
	size_t			 n, steps = 0;
	char			 line[80], *a, *w;
	int			 done;

	assert_non_null(whole);
	assert_non_null(all);
	assert_non_null(part);
	t_value = "v";
	memset(&t_hist, 0, sizeof t_hist);
	metrics_collect(whole);
	evbuffer_add(whole, "", 1);	/* for strstr */
	assert_non_null(ms = metrics_scrape_new());
	do {
		done = metrics_scrape_step(ms, part);
		n = evbuffer_get_length(part);
		assert_true(n > 0);
		/* a part, and at most one line over */
		assert_true(n < METRICS_PART + 200);
		evbuffer_add_buffer(all, part);
		steps++;
	} while (!done);
	evbuffer_add(all, "", 1);
	metrics_scrape_free(ms);
	assert_int_equal(t_stops, 0);
	assert_true(steps > 10);
	/* from the first family that does not move by itself (the
	   process' own RSS may) */
	a = strstr((char *)evbuffer_pullup(all, -1), "# HELP qmpbroker_p_");
	w = strstr((char *)evbuffer_pullup(whole, -1), "# HELP qmpbroker_p_");
	assert_non_null(a);
	assert_non_null(w);
	n = (size_t)((char *)evbuffer_pullup(whole, -1) +
	    evbuffer_get_length(whole) - w);
	assert_true(n > T_ITEMS * 20);
	assert_int_equal((size_t)((char *)evbuffer_pullup(all, -1) +
	    evbuffer_get_length(all) - a), n);
	assert_memory_equal(a, w, n);
	snprintf(line, sizeof line, "\nqmpbroker_p_total{vm=\"x\"} %d\n"
	    "# HELP qmpbroker_t_total", T_ITEMS - 1);
	assert_non_null(strstr((char *)evbuffer_pullup(all, -1), line));

	/* dropped after two parts: stopped, nothing leaks (ASan) */
	assert_non_null(ms = metrics_scrape_new());
	assert_int_equal(metrics_scrape_step(ms, part), 0);
	assert_int_equal(metrics_scrape_step(ms, part), 0);
	metrics_scrape_free(ms);
	assert_int_equal(t_stops, 1);
	evbuffer_free(whole);
	evbuffer_free(all);
	evbuffer_free(part);
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
		cmocka_unit_test_setup_teardown(test_parts, t_part_setup,
		    t_teardown),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
