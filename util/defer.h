/*
 * Deferred release: the one lifetime idiom for every object that a
 * callback may free (tmux's server_client_unref, Redis's freeClientAsync).
 *
 * Such an object's _free() does three things, in this order:
 *   1. marks it dead (a flag in the object);
 *   2. stops everything at once: frees its events, closes its sockets,
 *      so that no callback and no I/O can happen from here on;
 *   3. hands the rest (memory, descriptors it still holds) to
 *      defer_free(), which releases it from the loop, never inside the
 *      call.
 * So _free() may be called from anywhere, also from inside the object's
 * own callbacks or its owner's, called from the object. Code on the stack
 * that called out to a callback needs no reference count: when the
 * callback returns, the object's memory is still valid, and all the code
 * has to do is check the dead flag and, if set, return without touching
 * anything but the object's own memory. The memory stays valid until the
 * loop of the base given to defer_free() regains control.
 *
 * The release function frees memory and closes what descriptors are left.
 * It must not touch the event_base or any event, nor call anyone back: it
 * may run from defer_flush() after event_base_free(). That is why step 2
 * frees the events in _free() itself.
 *
 * When: event_base_once() with no delay, i.e. the release runs when the
 * loop next runs its active callbacks: after the callback that queued it
 * has returned (still in the same turn of the loop), or on the next turn
 * when queued from outside the loop. One pass releases every entry queued
 * for its base so far, in the order queued.
 *
 * Failure: event_base_once() allocates (inside libevent). If it cannot,
 * nothing is lost and nothing is released early: the entry is queued all
 * the same (its node is in the object, so queuing cannot fail) and goes
 * with the next pass of the same base, which the next successful
 * defer_free() for that base schedules, or with defer_flush().
 * defer_pending() counts what waits.
 *
 * Exit: a process that stops running its loop for good calls
 * defer_flush() after the loop has returned and after its last _free():
 * what was freed last would otherwise still be queued when the process
 * ends. Unit tests call it in their teardown for the same reason.
 *
 * Threads: the loop's thread only (the queue is a static list).
 */
#ifndef UTIL_DEFER_H
#define UTIL_DEFER_H

#include <stddef.h>
#include <event2/event.h>

#include "util/queue.h"

typedef void defer_fn(void *);

/* The queue node. Lives in the object being released; opaque to it. */
struct defer {
	TAILQ_ENTRY(defer)	 entry;
	struct event_base	*base;
	defer_fn		*fn;
	void			*arg;
};

/*
 * Queue fn(arg) to run once on a later pass of base's loop (see above).
 *   base: borrowed; the loop whose callbacks may have the object on their
 *	stack. If it is freed before the pass, the entry waits for
 *	defer_flush().
 *   d: the caller's storage, normally a member of the object fn frees;
 *	not queued already (an object is released once: its dead flag
 *	guards this). Nobody touches it until fn runs; fn may free it.
 *   fn: called exactly once with arg, from a pass of base's loop or from
 *	defer_flush(); may call defer_free() for other objects (from
 *	defer_flush() these are only queued, for the flush to take: their
 *	base may be freed).
 *   arg: given to fn; ownership is fn's business.
 * Never calls fn from inside this call.
 */
void	defer_free(struct event_base *base, struct defer *d, defer_fn *fn,
	    void *arg);

/* Run every queued release now, of every base, oldest first, including
   those queued by the releases themselves. Only where no deferred object
   can be on the stack: outside the loop's callbacks (after the loop has
   returned, or between two runs of it). */
void	defer_flush(void);

/* Releases queued and not run yet. */
size_t	defer_pending(void);

#endif
