/*
 * A latency histogram with fixed bounds, cheap enough for every command:
 * one monotonic clock read at each end and a short scan of the bounds,
 * no allocation. Counts are per bucket (not cumulative); whoever shows
 * them sums them up (Prometheus' buckets are cumulative).
 *
 * The bounds are the same for every histogram, so one table of labels
 * serves all of them and two histograms can be added up.
 */
#ifndef UTIL_HIST_H
#define UTIL_HIST_H

#include <stdint.h>

/* Upper bounds in microseconds, ascending; the last bucket is +Inf. */
#define HIST_NBOUNDS	15
extern const uint64_t	hist_bounds_us[HIST_NBOUNDS];

struct hist {
	uint64_t	n[HIST_NBOUNDS + 1];
	uint64_t	count;
	uint64_t	sum_us;
};

/* CLOCK_MONOTONIC in microseconds. */
uint64_t	hist_now_us(void);
void		hist_observe(struct hist *, uint64_t us);
/* The bound (us) under which a fraction q (0..1) of the observations
   fall, from the buckets: an upper estimate; 0 with none, UINT64_MAX
   for the +Inf bucket. */
uint64_t	hist_quantile_us(const struct hist *, double q);

#endif
