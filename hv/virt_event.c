/*
 * libvirt's event loop on libevent (virEventRegisterImpl), so libvirt's
 * callbacks (keepalive, domain and QEMU monitor events, connection close)
 * run on the broker's loop with no extra thread.
 *
 * libvirt calls these functions from any thread (a worker inside a
 * blocking call adds and removes watches), so the tables are guarded by a
 * mutex and libevent must have threading enabled (evthread_use_pthreads()
 * before the base is made). Callbacks are made with the mutex released,
 * so they may add and remove watches. Removal frees on the loop, in a
 * later iteration, as libvirt asks of its free callbacks.
 *
 * That is util/defer's idiom, but not its code: defer's queue belongs to
 * the loop's thread, and libvirt removes watches from its own threads.
 * So removed watches wait on a list under the mutex, and the reaper is
 * woken with event_active(), which libevent allows from any thread.
 */
#include "config.h"

#include <sys/queue.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include <event2/event.h>
#include <libvirt/libvirt.h>

#include "hv/virt.h"

struct ve_watch {
	int			 id;
	bool			 timer;
	int			 fd;
	int			 events;	/* VIR_EVENT_HANDLE_* */
	int			 interval;	/* ms; -1 disabled */
	virEventHandleCallback	 hcb;
	virEventTimeoutCallback	 tcb;
	void			*opaque;
	virFreeCallback		 ff;
	struct event		*ev;
	bool			 removed;
	LIST_ENTRY(ve_watch)	 entry;
};

static pthread_mutex_t		 ve_mtx = PTHREAD_MUTEX_INITIALIZER;
static LIST_HEAD(, ve_watch)	 ve_all = LIST_HEAD_INITIALIZER(ve_all);
static LIST_HEAD(, ve_watch)	 ve_dead = LIST_HEAD_INITIALIZER(ve_dead);
/* Events replaced by an update, freed on the loop: the loop may be inside
   their callback right now. */
struct ve_old {
	struct event		*ev;
	LIST_ENTRY(ve_old)	 entry;
};
static LIST_HEAD(, ve_old)	 ve_olds = LIST_HEAD_INITIALIZER(ve_olds);
static struct event_base	*ve_base;
static struct event		*ve_reaper;
static int			 ve_next_id = 1;

static struct ve_watch *
ve_find(int id, bool timer)
{
	struct ve_watch	*w;

	LIST_FOREACH(w, &ve_all, entry)
		if (w->id == id && w->timer == timer && !w->removed)
			return (w);
	return (NULL);
}

static void
ve_handle_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ve_watch		*w = arg;
	virEventHandleCallback	 cb;
	void			*opaque;
	int			 id, events = 0;

	pthread_mutex_lock(&ve_mtx);
	if (w->removed) {
		pthread_mutex_unlock(&ve_mtx);
		return;
	}
	cb = w->hcb;
	opaque = w->opaque;
	id = w->id;
	if (what & EV_READ)
		events |= VIR_EVENT_HANDLE_READABLE;
	if (what & EV_WRITE)
		events |= VIR_EVENT_HANDLE_WRITABLE;
	pthread_mutex_unlock(&ve_mtx);
	cb(id, fd, events, opaque);
}

static void
ve_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ve_watch		*w = arg;
	virEventTimeoutCallback	 cb;
	void			*opaque;
	int			 id;

	pthread_mutex_lock(&ve_mtx);
	if (w->removed || w->interval < 0) {
		pthread_mutex_unlock(&ve_mtx);
		return;
	}
	cb = w->tcb;
	opaque = w->opaque;
	id = w->id;
	pthread_mutex_unlock(&ve_mtx);
	cb(id, opaque);
}

/* Under ve_mtx. */
static void
ve_arm(struct ve_watch *w)
{
	struct timeval	tv;
	short		what = EV_PERSIST;

	struct ve_old	*o;

	if (w->ev != NULL) {
		event_del_noblock(w->ev);
		if ((o = malloc(sizeof *o)) != NULL) {
			o->ev = w->ev;
			LIST_INSERT_HEAD(&ve_olds, o, entry);
			event_active(ve_reaper, EV_TIMEOUT, 0);
		}
		/* else leaked rather than freed under a running callback */
		w->ev = NULL;
	}
	if (w->timer) {
		if (w->interval < 0)
			return;
		w->ev = event_new(ve_base, -1, what, ve_timer_cb, w);
		tv.tv_sec = w->interval / 1000;
		tv.tv_usec = (w->interval % 1000) * 1000;
		if (w->ev != NULL)
			event_add(w->ev, &tv);
		return;
	}
	if (w->events & VIR_EVENT_HANDLE_READABLE)
		what |= EV_READ;
	if (w->events & VIR_EVENT_HANDLE_WRITABLE)
		what |= EV_WRITE;
	if ((what & (EV_READ | EV_WRITE)) == 0)
		return;
	w->ev = event_new(ve_base, w->fd, what, ve_handle_cb, w);
	if (w->ev != NULL)
		event_add(w->ev, NULL);
}

static void
ve_reap_cb(evutil_socket_t fd, short what, void *arg)
{
	LIST_HEAD(, ve_watch)	 l = LIST_HEAD_INITIALIZER(l);
	LIST_HEAD(, ve_old)	 ol = LIST_HEAD_INITIALIZER(ol);
	struct ve_watch		*w;
	struct ve_old		*o;

	pthread_mutex_lock(&ve_mtx);
	while ((w = LIST_FIRST(&ve_dead)) != NULL) {
		LIST_REMOVE(w, entry);
		LIST_INSERT_HEAD(&l, w, entry);
	}
	while ((o = LIST_FIRST(&ve_olds)) != NULL) {
		LIST_REMOVE(o, entry);
		LIST_INSERT_HEAD(&ol, o, entry);
	}
	pthread_mutex_unlock(&ve_mtx);
	while ((o = LIST_FIRST(&ol)) != NULL) {
		LIST_REMOVE(o, entry);
		event_free(o->ev);
		free(o);
	}
	while ((w = LIST_FIRST(&l)) != NULL) {
		LIST_REMOVE(w, entry);
		if (w->ev != NULL)
			event_free(w->ev);
		if (w->ff != NULL)
			w->ff(w->opaque);
		free(w);
	}
}

static int
ve_add(struct ve_watch *w)
{
	int	id;

	pthread_mutex_lock(&ve_mtx);
	id = w->id = ve_next_id++;
	LIST_INSERT_HEAD(&ve_all, w, entry);
	ve_arm(w);
	pthread_mutex_unlock(&ve_mtx);
	/* Not w->id: the loop may have run, removed and freed it already. */
	return (id);
}

static int
ve_add_handle(int fd, int events, virEventHandleCallback cb, void *opaque,
    virFreeCallback ff)
{
	struct ve_watch	*w;

	if ((w = calloc(1, sizeof *w)) == NULL)
		return (-1);
	w->fd = fd;
	w->events = events;
	w->hcb = cb;
	w->opaque = opaque;
	w->ff = ff;
	return (ve_add(w));
}

static void
ve_update_handle(int id, int events)
{
	struct ve_watch	*w;

	pthread_mutex_lock(&ve_mtx);
	if ((w = ve_find(id, false)) != NULL && w->events != events) {
		w->events = events;
		ve_arm(w);
	}
	pthread_mutex_unlock(&ve_mtx);
}

static int
ve_remove(int id, bool timer)
{
	struct ve_watch	*w;

	pthread_mutex_lock(&ve_mtx);
	if ((w = ve_find(id, timer)) == NULL) {
		pthread_mutex_unlock(&ve_mtx);
		return (-1);
	}
	w->removed = true;
	if (w->ev != NULL)
		event_del_noblock(w->ev);
	LIST_REMOVE(w, entry);
	LIST_INSERT_HEAD(&ve_dead, w, entry);
	event_active(ve_reaper, EV_TIMEOUT, 0);
	pthread_mutex_unlock(&ve_mtx);
	return (0);
}

static int
ve_remove_handle(int id)
{
	return (ve_remove(id, false));
}

static int
ve_add_timeout(int interval, virEventTimeoutCallback cb, void *opaque,
    virFreeCallback ff)
{
	struct ve_watch	*w;

	if ((w = calloc(1, sizeof *w)) == NULL)
		return (-1);
	w->timer = true;
	w->fd = -1;
	w->interval = interval;
	w->tcb = cb;
	w->opaque = opaque;
	w->ff = ff;
	return (ve_add(w));
}

static void
ve_update_timeout(int id, int interval)
{
	struct ve_watch	*w;

	pthread_mutex_lock(&ve_mtx);
	if ((w = ve_find(id, true)) != NULL && w->interval != interval) {
		w->interval = interval;
		ve_arm(w);
	}
	pthread_mutex_unlock(&ve_mtx);
}

static int
ve_remove_timeout(int id)
{
	return (ve_remove(id, true));
}

int
virt_event_register(struct event_base *base)
{
	static bool	registered;

	if (registered)
		return (ve_base == base ? 0 : -1);
	ve_base = base;
	if ((ve_reaper = event_new(base, -1, 0, ve_reap_cb, NULL)) == NULL)
		return (-1);
	virEventRegisterImpl(ve_add_handle, ve_update_handle,
	    ve_remove_handle, ve_add_timeout, ve_update_timeout,
	    ve_remove_timeout);
	registered = true;
	return (0);
}

size_t
virt_event_watches(void)
{
	struct ve_watch	*w;
	size_t		 n = 0;

	pthread_mutex_lock(&ve_mtx);
	LIST_FOREACH(w, &ve_all, entry)
		n++;
	pthread_mutex_unlock(&ve_mtx);
	return (n);
}
