/*
 * Worker pool. One mutex guards both queues; workers sleep on a condition
 * variable, the loop sleeps in libevent and is woken by an eventfd.
 */
#include "config.h"

#include <sys/eventfd.h>
#include <sys/queue.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker/core/work.h"

enum work_where { WORK_QUEUED, WORK_RUNNING, WORK_DONE };

struct work {
	work_fn			*fn;
	work_done_fn		*done;
	void			*arg;
	enum work_where		 where;
	TAILQ_ENTRY(work)	 entry;
};
TAILQ_HEAD(work_list, work);

/* Completions missed because a wakeup was lost are found by this sweep. */
#define WORK_SWEEP_MS	500

static pthread_mutex_t	 work_mtx = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t	 work_cond = PTHREAD_COND_INITIALIZER;
static struct work_list	 work_pending = TAILQ_HEAD_INITIALIZER(work_pending);
static struct work_list	 work_finished = TAILQ_HEAD_INITIALIZER(work_finished);
static pthread_t	*work_tids;
static int		 work_ntids;
static atomic_int	 work_alive;
static bool		 work_stop;	/* under work_mtx */
static bool		 work_ready;	/* loop side only */
static int		 work_efd = -1;
static struct event	*work_ev;
static struct event	*work_sweep_ev;
static atomic_int	 work_fail_notify;

static void
work_notify(void)
{
	uint64_t	one = 1;

	if (atomic_load(&work_fail_notify) > 0) {
		atomic_fetch_sub(&work_fail_notify, 1);
		return;
	}
	/* EAGAIN (counter full) or anything else: the item is queued
	   already, the sweep timer will find it. */
	if (write(work_efd, &one, sizeof one) != sizeof one)
		return;
}

static void *
work_main(void *unused)
{
	struct work	*w;

	pthread_mutex_lock(&work_mtx);
	for (;;) {
		while (!work_stop && TAILQ_EMPTY(&work_pending))
			pthread_cond_wait(&work_cond, &work_mtx);
		if ((w = TAILQ_FIRST(&work_pending)) == NULL)
			break;	/* stopping and nothing left */
		TAILQ_REMOVE(&work_pending, w, entry);
		w->where = WORK_RUNNING;
		pthread_mutex_unlock(&work_mtx);

		w->fn(w->arg);

		pthread_mutex_lock(&work_mtx);
		w->where = WORK_DONE;
		TAILQ_INSERT_TAIL(&work_finished, w, entry);
		work_notify();
	}
	pthread_mutex_unlock(&work_mtx);
	atomic_fetch_sub(&work_alive, 1);
	return (NULL);
}

/* Runs every finished item's done on the loop. */
static void
work_drain(void)
{
	struct work_list	 l = TAILQ_HEAD_INITIALIZER(l);
	struct work		*w;

	pthread_mutex_lock(&work_mtx);
	TAILQ_CONCAT(&l, &work_finished, entry);
	pthread_mutex_unlock(&work_mtx);

	while ((w = TAILQ_FIRST(&l)) != NULL) {
		TAILQ_REMOVE(&l, w, entry);
		w->done(w->arg, true);
		free(w);
	}
}

static void
work_read_cb(evutil_socket_t fd, short events, void *unused)
{
	uint64_t	n;

	if (read(fd, &n, sizeof n) < 0 && errno != EAGAIN)
		return;
	work_drain();
}

static void
work_sweep_cb(evutil_socket_t fd, short events, void *unused)
{
	bool	some;

	pthread_mutex_lock(&work_mtx);
	some = !TAILQ_EMPTY(&work_finished);
	pthread_mutex_unlock(&work_mtx);
	if (some)
		work_drain();
}

int
work_init(struct event_base *base, int n)
{
	struct timeval	 tv = { 0, WORK_SWEEP_MS * 1000 };
	sigset_t	 all, old;
	int		 i, error;

	if (work_ready)
		return (-1);
	if (n <= 0)
		n = WORK_DEFAULT_THREADS;
	if (n > WORK_MAX_THREADS)
		n = WORK_MAX_THREADS;
	if ((work_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) == -1)
		return (-1);
	work_ev = event_new(base, work_efd, EV_READ | EV_PERSIST,
	    work_read_cb, NULL);
	work_sweep_ev = event_new(base, -1, EV_PERSIST, work_sweep_cb, NULL);
	if ((work_tids = calloc(n, sizeof *work_tids)) == NULL ||
	    work_ev == NULL || work_sweep_ev == NULL)
		goto fail;
	event_add(work_ev, NULL);
	event_add(work_sweep_ev, &tv);

	pthread_mutex_lock(&work_mtx);
	work_stop = false;
	pthread_mutex_unlock(&work_mtx);

	/* Workers take no signals: SIGCHLD and SIGTERM belong to the loop. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	for (i = 0; i < n; i++) {
		atomic_fetch_add(&work_alive, 1);
		error = pthread_create(&work_tids[i], NULL, work_main, NULL);
		if (error != 0) {
			atomic_fetch_sub(&work_alive, 1);
			break;
		}
		work_ntids++;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	work_ready = true;
	if (work_ntids == 0) {
		work_shutdown();
		return (-1);
	}
	return (0);

fail:
	if (work_ev != NULL)
		event_free(work_ev);
	if (work_sweep_ev != NULL)
		event_free(work_sweep_ev);
	work_ev = work_sweep_ev = NULL;
	free(work_tids);
	work_tids = NULL;
	close(work_efd);
	work_efd = -1;
	return (-1);
}

void
work_shutdown(void)
{
	struct work_list	 l = TAILQ_HEAD_INITIALIZER(l);
	struct work		*w;
	int			 i;

	if (!work_ready)
		return;
	pthread_mutex_lock(&work_mtx);
	work_stop = true;
	TAILQ_CONCAT(&l, &work_pending, entry);
	pthread_cond_broadcast(&work_cond);
	pthread_mutex_unlock(&work_mtx);

	while ((w = TAILQ_FIRST(&l)) != NULL) {
		TAILQ_REMOVE(&l, w, entry);
		w->done(w->arg, false);
		free(w);
	}
	for (i = 0; i < work_ntids; i++)
		pthread_join(work_tids[i], NULL);
	free(work_tids);
	work_tids = NULL;
	work_ntids = 0;

	/* Completions may submit more; that is refused now. */
	work_drain();

	event_free(work_ev);
	event_free(work_sweep_ev);
	work_ev = work_sweep_ev = NULL;
	close(work_efd);
	work_efd = -1;
	work_ready = false;
}

bool
work_stopping(void)
{
	bool	stop;

	pthread_mutex_lock(&work_mtx);
	stop = work_stop || !work_ready;
	pthread_mutex_unlock(&work_mtx);
	return (stop);
}

struct work *
work_submit(work_fn *fn, work_done_fn *done, void *arg)
{
	struct work	*w;

	if (!work_ready || (w = calloc(1, sizeof *w)) == NULL)
		return (NULL);
	w->fn = fn;
	w->done = done;
	w->arg = arg;
	w->where = WORK_QUEUED;

	pthread_mutex_lock(&work_mtx);
	if (work_stop) {
		pthread_mutex_unlock(&work_mtx);
		free(w);
		return (NULL);
	}
	TAILQ_INSERT_TAIL(&work_pending, w, entry);
	pthread_cond_signal(&work_cond);
	pthread_mutex_unlock(&work_mtx);
	return (w);
}

bool
work_cancel(struct work *w)
{
	bool	taken = false;

	pthread_mutex_lock(&work_mtx);
	if (w->where == WORK_QUEUED) {
		TAILQ_REMOVE(&work_pending, w, entry);
		taken = true;
	}
	pthread_mutex_unlock(&work_mtx);
	if (taken)
		free(w);
	return (taken);
}

void
work_test_fail_notify(int n)
{
	atomic_store(&work_fail_notify, n);
}

int
work_threads(void)
{
	return (atomic_load(&work_alive));
}
