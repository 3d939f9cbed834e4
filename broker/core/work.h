/*
 * Worker threads for blocking calls (libvirt, ioctls on block devices).
 *
 * The loop submits an item; a worker runs its fn; the item then goes on a
 * completion queue guarded by a mutex and the loop is woken through one
 * eventfd, where done runs. A lost wakeup (the eventfd write failed) is
 * never fatal: the item stays queued and the next wakeup or the loop's
 * periodic sweep picks it up.
 */
#ifndef BROKER_CORE_WORK_H
#define BROKER_CORE_WORK_H

#include <stdbool.h>
#include <event2/event.h>

struct work;
/* fn runs on a worker thread and must not touch loop state. done runs on
   the loop exactly once per submitted item, unless work_cancel() took the
   item back first. The struct work is freed after done returns. */
typedef void work_fn(void *arg);
/* ran is false for items taken back at shutdown: fn never ran. */
typedef void work_done_fn(void *arg, bool ran);

#define WORK_DEFAULT_THREADS	4
#define WORK_MAX_THREADS	64

int		 work_init(struct event_base *, int nthreads);
/* Refuses new items, takes back those not started, waits for running ones, joins every thread and
   runs the remaining completions (done with ran false for the items that
   never started). Safe if work_init() was never called. */
void		 work_shutdown(void);
bool		 work_stopping(void);

/* NULL when shutting down or out of memory. */
struct work	*work_submit(work_fn *, work_done_fn *, void *arg);
/* Takes back an item no worker has started: returns true and neither fn
   nor done will run. False once a worker has it (done will run). */
bool		 work_cancel(struct work *);

/* Tests: make the next n eventfd writes fail as if the counter were full. */
void		 work_test_fail_notify(int n);
/* Threads currently alive (tests check none is left). */
int		 work_threads(void);

#endif
