/*
 * Deferred release (see defer.h).
 *
 * One static queue for every base. A scheduled pass carries only its base,
 * never an entry: an entry may be gone (released by defer_flush(), or by
 * an earlier pass of the same base) before a pass that was scheduled for
 * it runs, and such a pass must then find nothing to do rather than a
 * dangling pointer. For the same reason a pass releases every entry of its
 * base, not only the one it was scheduled for: that is also what frees
 * entries whose scheduling failed.
 *
 * Why only entries of its own base: a pass runs at the top of that base's
 * loop, so no callback of that base is on the stack. A loop of another
 * base could be running inside one of this base's callbacks; it must not
 * release what that callback may still hold.
 */
#include "config.h"

#include <stddef.h>

#include <event2/event.h>

#include "util/defer.h"

TAILQ_HEAD(defer_q, defer);

static struct defer_q	defer_queue = TAILQ_HEAD_INITIALIZER(defer_queue);
static size_t		defer_n;
static int		defer_flushing;	/* defer_flush() is running */

static void
defer_pass(evutil_socket_t fd, short what, void *arg)
{
	struct event_base	*base = arg;
	struct defer_q		 run;
	struct defer		*d, *d1;

	/* take them out first: a release may queue more, which get their
	   own pass */
	TAILQ_INIT(&run);
	TAILQ_FOREACH_SAFE(d, &defer_queue, entry, d1) {
		if (d->base != base)
			continue;
		TAILQ_REMOVE(&defer_queue, d, entry);
		TAILQ_INSERT_TAIL(&run, d, entry);
	}
	while ((d = TAILQ_FIRST(&run)) != NULL) {
		TAILQ_REMOVE(&run, d, entry);
		defer_n--;
		d->fn(d->arg);
	}
}

void
defer_free(struct event_base *base, struct defer *d, defer_fn *fn, void *arg)
{
	const struct timeval	now = { 0, 0 };

	d->base = base;
	d->fn = fn;
	d->arg = arg;
	TAILQ_INSERT_TAIL(&defer_queue, d, entry);
	defer_n++;
	/* Queued by a release that defer_flush() runs: the flush takes it
	   before it returns, and the base may be freed already. */
	if (defer_flushing)
		return;
	/* No delay: libevent makes it active at once, so it runs as soon as
	   the callbacks on the stack have returned to the loop. On failure
	   the entry waits in the queue (see defer.h). */
	(void)event_base_once(base, -1, EV_TIMEOUT, defer_pass, base, &now);
}

void
defer_flush(void)
{
	struct defer	*d;

	defer_flushing = 1;
	while ((d = TAILQ_FIRST(&defer_queue)) != NULL) {
		TAILQ_REMOVE(&defer_queue, d, entry);
		defer_n--;
		d->fn(d->arg);
	}
	defer_flushing = 0;
}

size_t
defer_pending(void)
{
	return (defer_n);
}
