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

/* At start: starts the loop-lag timer on base. Idempotent. -1 if the
   timer cannot be made. */
int	metrics_init(struct event_base *base);
void	metrics_shutdown(void);
/* At start, at most METRICS_MAX_COLLECTORS; fn must outlive the
   process' metrics. -1 if the table is full. */
#define METRICS_MAX_COLLECTORS	8
int	metrics_register(metrics_collect_fn *fn, void *arg);
/* A whole exposition appended to buf (borrowed); the bytes are built in
   a fixed scratch buffer and moved to buf in large pieces. */
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

/* The process as the kernel and the loop see it. */
struct metrics_proc {
	uint64_t	open_fds;
	uint64_t	rss_bytes;
	struct hist	loop_lag;	/* how late the periodic timer fired */
};
void	metrics_proc(struct metrics_proc *out);

#endif
