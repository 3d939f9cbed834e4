/*
 * Metrics: a registry of collectors and the Prometheus text exposition
 * format (version 0.0.4) they write through.
 *
 * The counters live where things happen (hv/vmq.h's per-VM stats,
 * hv/hp.h's hotplug, core/job.h's jobs, the session's clients), bumped
 * as plain integers on the loop. Nothing is pushed here: a scrape asks
 * every collector, in registration order, to write what it reads. The
 * daemon registers the collectors of the layers above at start, so this
 * layer calls up only through those callbacks.
 *
 * The process' own figures (open fds, RSS, loop lag, jobs, hotplug) are
 * collected here, first.
 *
 * A family's samples must be contiguous in the format: a collector
 * writes one family at a time (metrics_family, then its samples).
 */
#ifndef BROKER_CORE_METRICS_H
#define BROKER_CORE_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include <event2/buffer.h>
#include <event2/event.h>

#include "util/hist.h"

#define METRICS_PREFIX	"qmpbroker_"

struct metrics_out;
/* o: borrowed for the call. */
typedef void metrics_collect_fn(struct metrics_out *o, void *arg);
/* A collector whose output grows with the VMs, in parts: it writes
   until metrics_out_full(o) and returns 0 to be called again (on a
   later loop pass, once that part is sent), 1 when it has written all.
   state: METRICS_STATE_MAX bytes of its own for the scrape, aligned for
   any type, zeroed before the first call. */
typedef int metrics_part_fn(struct metrics_out *o, void *state, void *arg);
/* A scrape ends or is abandoned before the part function returned 1:
   release what state holds (a VM cursor). */
typedef void metrics_stop_fn(void *state, void *arg);
#define METRICS_STATE_MAX	128
/* About this many bytes make a part: what a scrape holds at once. */
#define METRICS_PART		65536

/* At start: starts the loop-lag timer on base. Idempotent. -1 if the
   timer cannot be made. */
int	metrics_init(struct event_base *base);
void	metrics_shutdown(void);
/* At start, at most METRICS_MAX_COLLECTORS in all; fn must outlive the
   process' metrics. -1 if the table is full. A collector of fixed size
   writes everything in one call; metrics_register_parts takes one whose
   output grows with the VMs (stop may be NULL). */
#define METRICS_MAX_COLLECTORS	8
int	metrics_register(metrics_collect_fn *fn, void *arg);
int	metrics_register_parts(metrics_part_fn *fn, metrics_stop_fn *stop,
	    void *arg);
/* This part is big enough: a part collector returns 0 now. */
int	metrics_out_full(const struct metrics_out *);

/* A scrape in parts, so that neither the loop nor the memory waits on
   the whole exposition: each step appends about METRICS_PART bytes to
   buf (borrowed for the call; written into its own space, no copy) and
   returns 1 once the exposition is complete, 0 if more is to come.
   Several may run at once. NULL if out of memory. */
struct metrics_scrape;
struct metrics_scrape *metrics_scrape_new(void);
int	metrics_scrape_step(struct metrics_scrape *, struct evbuffer *buf);
/* Also mid-way (the client went): every collector's stop is called. */
void	metrics_scrape_free(struct metrics_scrape *);
/* A whole exposition appended to buf (borrowed), in one go. */
void	metrics_collect(struct evbuffer *buf);

/* Writers. name: without the prefix (added here). help: one line, no
   backslash or newline. kv: NULL, or a NULL-terminated list of label
   name, value, name, value...; values are escaped here (a VM's name is
   a client's choice). */
void	metrics_family(struct metrics_out *, const char *name,
	    const char *type, const char *help);
void	metrics_u64(struct metrics_out *, const char *name,
	    const char *const *kv, uint64_t v);
/* Families of one sample without labels, as a table: each row's value
   is the uint64_t at off in base. */
struct metrics_def {
	const char	*name;
	const char	*type;
	const char	*help;
	size_t		 off;
};
void	metrics_table(struct metrics_out *, const struct metrics_def *,
	    size_t n, const void *base);
/* A family of one sample without labels. */
void	metrics_one(struct metrics_out *, const char *name,
	    const char *type, const char *help, uint64_t v);
/* name_bucket{...,le=...} (cumulative), name_sum (seconds),
   name_count. */
void	metrics_hist(struct metrics_out *, const char *name,
	    const char *const *kv, const struct hist *h);

/* Samples whose labels are made once (a VM's, at its add), so that
   writing one copies known lengths and never scans or escapes: head is
   the family's name with the prefix and "{" (METRICS_STR(METRICS_PREFIX
   "x_total{")), lab the labels without braces, already escaped and
   never empty, tail what follows them up to the value ("} " or
   ",k=\"v\"} "). */
struct metrics_str {
	const char	*s;
	size_t		 n;
};
#define METRICS_STR(lit)	{ (lit), sizeof (lit) - 1 }
void	metrics_sample(struct metrics_out *, struct metrics_str head,
	    struct metrics_str lab, struct metrics_str tail, uint64_t v);
/* A histogram the same way: the heads of name_bucket{, name_sum{,
   name_count{. */
struct metrics_hist_heads {
	struct metrics_str	bucket, sum, count;
};
void	metrics_hist_lab(struct metrics_out *,
	    const struct metrics_hist_heads *, struct metrics_str lab,
	    const struct hist *h);

/* The process as the kernel and the loop see it. */
struct metrics_proc {
	uint64_t	open_fds;
	uint64_t	rss_bytes;
	struct hist	loop_lag;	/* how late the periodic timer fired */
};
void	metrics_proc(struct metrics_proc *out);

#endif
