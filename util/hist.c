/*
 * Latency histograms (see hist.h).
 */
#include "config.h"

#include <time.h>

#include "util/hist.h"

/* From 100 us (a local monitor's round trip) to 10 s (a stuck guest;
   the command timeout is 30 s by default). */
const uint64_t hist_bounds_us[HIST_NBOUNDS] = {
	100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000,
	250000, 500000, 1000000, 2500000, 10000000,
};

uint64_t
hist_now_us(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000);
}

void
hist_observe(struct hist *h, uint64_t us)
{
	int	i;

	for (i = 0; i < HIST_NBOUNDS && us > hist_bounds_us[i]; i++)
		;
	h->n[i]++;
	h->count++;
	h->sum_us += us;
}

uint64_t
hist_quantile_us(const struct hist *h, double q)
{
	uint64_t	want, seen = 0;
	int		i;

	if (h->count == 0)
		return (0);
	want = (uint64_t)(q * (double)h->count);
	if (want == 0)
		want = 1;
	for (i = 0; i < HIST_NBOUNDS; i++) {
		seen += h->n[i];
		if (seen >= want)
			return (hist_bounds_us[i]);
	}
	return (UINT64_MAX);
}
