/*
 * util/defer: a release runs from the loop, never inside the call that
 * queued it; memory freed from inside a callback stays valid until the
 * loop regains control; a failed schedule loses nothing. Then the two
 * objects built on it, a channel and a monitor, freed from inside their
 * own callbacks (run under valgrind: an early release is an invalid
 * read there, a lost one a leak).
 */
#include "config.h"

#include <sys/types.h>
#include <sys/socket.h>

#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>
#include <jansson.h>

#include "hv/chan.h"
#include "hv/mon.h"
#include "tests/unit/testutil.h"
#include "util/defer.h"

#define WAIT(base, expr)	TU_WAIT((base), expr)

/* ---- libevent's allocations, failed on demand ---- */

static int	t_fail_allocs;		/* libevent allocations to refuse */

#ifndef EVENT__DISABLE_MM_REPLACEMENT

static void *
t_ev_malloc(size_t n)
{
	if (t_fail_allocs > 0) {
		t_fail_allocs--;
		return (NULL);
	}
	return (malloc(n));
}

static void *
t_ev_realloc(void *p, size_t n)
{
	if (t_fail_allocs > 0) {
		t_fail_allocs--;
		return (NULL);
	}
	return (realloc(p, n));
}
#endif

/* ---- plain objects ---- */

#define NLOG	32

struct obj {
	struct defer		 reap;
	int			 id;
	int			 touched;	/* written after defer_free */
	struct event_base	*then_base;	/* release queues 'then' here */
	struct obj		*then;
};

static int	t_log[NLOG];		/* ids in release order */
static int	t_nlog;
static int	t_inside;		/* inside a call that queues */
static int	t_released_inside;	/* a release ran inside one */

static void
obj_release(void *arg)
{
	struct obj	*o = arg;

	if (t_inside)
		t_released_inside++;
	assert_true(t_nlog < NLOG);
	t_log[t_nlog++] = o->id;
	if (o->then != NULL) {
		t_inside = 1;
		defer_free(o->then_base, &o->then->reap, obj_release, o->then);
		t_inside = 0;
	}
	free(o);
}

static struct obj *
obj_new(int id)
{
	struct obj	*o;

	o = calloc(1, sizeof *o);
	assert_non_null(o);
	o->id = id;
	return (o);
}

/* queue o's release, checking it does not run inside the call */
static void
obj_free(struct event_base *base, struct obj *o)
{
	t_inside = 1;
	defer_free(base, &o->reap, obj_release, o);
	t_inside = 0;
}

static int
setup(void **state)
{
	t_nlog = 0;
	t_inside = 0;
	t_released_inside = 0;
	t_fail_allocs = 0;
	return (0);
}

static int
teardown(void **state)
{
	/* a failed test may leave entries of a freed base */
	defer_flush();
	return (0);
}

/* From outside the loop: nothing until the loop runs, then all of it, in
   the order queued. */
static void
test_later_in_order(void **state)
{
	struct event_base	*base;
	int			 i;

	base = event_base_new();
	assert_non_null(base);
	for (i = 1; i <= 3; i++)
		obj_free(base, obj_new(i));
	assert_int_equal(defer_pending(), 3);
	assert_int_equal(t_nlog, 0);
	tu_spin(base, 1);
	assert_int_equal(defer_pending(), 0);
	assert_int_equal(t_nlog, 3);
	for (i = 0; i < 3; i++)
		assert_int_equal(t_log[i], i + 1);
	assert_int_equal(t_released_inside, 0);
	event_base_free(base);
}

struct cb_state {
	struct event_base	*base;
	struct obj		*o;
	int			 nlog_after;	/* t_nlog when the callback ends */
	struct event_base	*other;		/* a loop run inside it */
	int			 nlog_other;	/* t_nlog after that loop */
};

static void
free_in_cb(evutil_socket_t fd, short what, void *arg)
{
	struct cb_state	*s = arg;

	obj_free(s->base, s->o);
	/* still ours until the loop regains control (valgrind checks) */
	s->o->touched = 1;
	if (s->other != NULL) {
		tu_spin(s->other, 1);
		s->nlog_other = t_nlog;
		s->o->touched = 2;
	}
	s->nlog_after = t_nlog;
}

/* From inside a callback: the object outlives the callback, and goes in
   the same turn of the loop once the callback has returned. */
static void
test_from_callback(void **state)
{
	struct cb_state	 s;

	memset(&s, 0, sizeof s);
	s.base = event_base_new();
	assert_non_null(s.base);
	s.o = obj_new(7);
	assert_int_equal(event_base_once(s.base, -1, EV_TIMEOUT, free_in_cb,
	    &s, NULL), 0);
	event_base_loop(s.base, EVLOOP_ONCE);
	assert_int_equal(s.nlog_after, 0);
	assert_int_equal(t_nlog, 1);
	assert_int_equal(t_log[0], 7);
	assert_int_equal(defer_pending(), 0);
	event_base_free(s.base);
}

/* A pass releases only its own base's entries: another base's loop run
   from inside a callback must not free what that callback still holds. */
static void
test_per_base(void **state)
{
	struct cb_state	 s;

	memset(&s, 0, sizeof s);
	s.base = event_base_new();
	s.other = event_base_new();
	assert_non_null(s.base);
	assert_non_null(s.other);
	obj_free(s.other, obj_new(2));	/* the other base has a pass due */
	s.o = obj_new(1);
	assert_int_equal(event_base_once(s.base, -1, EV_TIMEOUT, free_in_cb,
	    &s, NULL), 0);
	event_base_loop(s.base, EVLOOP_ONCE);
	/* inside: the other loop released its own entry only */
	assert_int_equal(s.nlog_other, 1);
	assert_int_equal(t_log[0], 2);
	assert_int_equal(s.nlog_after, 1);
	/* after: ours went too */
	assert_int_equal(t_nlog, 2);
	assert_int_equal(t_log[1], 1);
	assert_int_equal(defer_pending(), 0);
	event_base_free(s.other);
	event_base_free(s.base);
}

/* A release that queues another: not run inside the first one; both go
   with the loop, or with defer_flush. */
static void
test_chained(void **state)
{
	struct event_base	*base;
	struct obj		*a, *b;

	base = event_base_new();
	assert_non_null(base);
	a = obj_new(1);
	b = obj_new(2);
	a->then = b;
	a->then_base = base;
	obj_free(base, a);
	WAIT(base, t_nlog == 2);
	assert_int_equal(t_log[0], 1);
	assert_int_equal(t_log[1], 2);
	assert_int_equal(t_released_inside, 0);

	/* and when the loop is over: the flush takes the chain too */
	a = obj_new(3);
	b = obj_new(4);
	a->then = b;
	a->then_base = base;
	obj_free(base, a);
	event_base_free(base);	/* the pass is never run */
	assert_int_equal(defer_pending(), 1);
	defer_flush();
	assert_int_equal(defer_pending(), 0);
	assert_int_equal(t_nlog, 4);
	assert_int_equal(t_log[2], 3);
	assert_int_equal(t_log[3], 4);
	assert_int_equal(t_released_inside, 0);
}

/* event_base_once fails: the entry stays queued, nothing is released
   early, and the next pass of that base (or the flush) takes it. */
static void
test_schedule_fails(void **state)
{
	struct event_base	*base;

#ifdef EVENT__DISABLE_MM_REPLACEMENT
	skip();
#endif
	base = event_base_new();
	assert_non_null(base);

	t_fail_allocs = 1;
	obj_free(base, obj_new(1));
	assert_int_equal(t_fail_allocs, 0);	/* it did try */
	assert_int_equal(defer_pending(), 1);
	tu_spin(base, 3);			/* no pass is due */
	assert_int_equal(t_nlog, 0);
	assert_int_equal(defer_pending(), 1);
	/* the next successful one takes the orphan along, first */
	obj_free(base, obj_new(2));
	assert_int_equal(t_nlog, 0);
	tu_spin(base, 1);
	assert_int_equal(t_nlog, 2);
	assert_int_equal(t_log[0], 1);
	assert_int_equal(t_log[1], 2);
	assert_int_equal(defer_pending(), 0);

	/* with no later pass at all, the flush at exit */
	t_fail_allocs = 1;
	obj_free(base, obj_new(3));
	tu_spin(base, 3);
	assert_int_equal(t_nlog, 2);
	defer_flush();
	assert_int_equal(t_nlog, 3);
	assert_int_equal(t_log[2], 3);
	assert_int_equal(defer_pending(), 0);
	assert_int_equal(t_released_inside, 0);
	event_base_free(base);
}

/* A pass that finds its entries gone (flushed first) has nothing to do. */
static void
test_flush_before_pass(void **state)
{
	struct event_base	*base;

	base = event_base_new();
	assert_non_null(base);
	obj_free(base, obj_new(1));
	defer_flush();
	assert_int_equal(t_nlog, 1);
	tu_spin(base, 2);
	assert_int_equal(t_nlog, 1);
	event_base_free(base);
}

/* ---- a channel freed from inside its callbacks ---- */

struct tc {
	struct event_base	*base;
	struct chan		*c;
	int			 peer;
	int			 fd0;
	int			 nmsg;
	int			 nclosed;
	int			 ndrained;
	int			 free_in;	/* 1 msg, 2 closed, 3 drained */
	size_t			 pending_in_cb;	/* defer_pending() after free */
	int			 fd_in_cb;	/* chan_fd() after free */
};

static void
tc_free(struct tc *t, struct chan *c)
{
	chan_free(c);
	t->c = NULL;
	t->pending_in_cb = defer_pending();
	/* the memory is still there: the socket went already */
	t->fd_in_cb = chan_fd(c);
}

static void
tc_msg(struct chan *c, json_t *msg, int *fds, size_t nfds, void *arg)
{
	struct tc	*t = arg;
	size_t		 i;

	for (i = 0; i < nfds; i++)
		close(fds[i]);
	t->nmsg++;
	if (t->free_in == 1)
		tc_free(t, c);
}

static void
tc_closed(struct chan *c, const char *why, void *arg)
{
	struct tc	*t = arg;

	t->nclosed++;
	if (t->free_in == 2)
		tc_free(t, c);
}

static void
tc_drained(struct chan *c, void *arg)
{
	struct tc	*t = arg;

	t->ndrained++;
	if (t->free_in == 3)
		tc_free(t, c);
}

static const struct chan_ops tc_ops = {
	.msg = tc_msg,
	.closed = tc_closed,
	.drained = tc_drained,
};

static void
tc_open(struct tc *t, int free_in)
{
	memset(t, 0, sizeof *t);
	t->fd0 = tu_fd_count();
	t->free_in = free_in;
	t->base = event_base_new();
	assert_non_null(t->base);
	t->c = tu_chan_pair(t->base, NULL, &tc_ops, t, &t->peer);
	assert_non_null(t->c);
}

/* The peer sees EOF and every fd comes back without a flush: the loop
   did the release. */
static void
tc_check_released(struct tc *t)
{
	char	buf[64];

	assert_int_equal(t->pending_in_cb, 1);
	assert_int_equal(t->fd_in_cb, -1);
	assert_null(t->c);
	tu_spin(t->base, 3);
	assert_int_equal(defer_pending(), 0);
	if (t->peer != -1) {
		while (read(t->peer, buf, sizeof buf) > 0)
			;
		assert_int_equal(read(t->peer, buf, sizeof buf), 0);
		close(t->peer);
	}
	event_base_free(t->base);
	assert_int_equal(tu_fd_count(), t->fd0);
}

static void
test_chan_free_in_msg(void **state)
{
	struct tc	t;
	int		p[2];

	tc_open(&t, 1);
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	assert_int_equal(write(t.peer, "{\"n\": 1}\n{\"n\": 2}\n", 18), 18);
	/* one line with one fd on its first byte */
	assert_int_equal(tu_sendfds(t.peer, "{\"n\": 3}\n", &p[1], 1), 9);
	close(p[1]);
	close(p[0]);
	WAIT(t.base, t.nmsg == 1);
	tc_check_released(&t);
	assert_int_equal(t.nmsg, 1);
	assert_int_equal(t.nclosed, 0);
}

static void
test_chan_free_in_closed(void **state)
{
	struct tc	t;

	tc_open(&t, 2);
	assert_int_equal(write(t.peer, "{\"n\": 1}\n", 9), 9);
	close(t.peer);
	t.peer = -1;
	WAIT(t.base, t.nclosed == 1);
	tc_check_released(&t);
	assert_int_equal(t.nmsg, 1);
	assert_int_equal(t.nclosed, 1);
}

/* Freed in drained with an fd-carrying chunk sent before: the peer got
   it, the dup is gone. */
static void
test_chan_free_in_drained(void **state)
{
	struct tc	 t;
	int		 p[2];
	const char	*s = "{\"fd\": 1}\r\n";

	tc_open(&t, 3);
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	assert_int_equal(chan_send(t.c, s, strlen(s), &p[0], 1), 0);
	close(p[0]);
	close(p[1]);
	WAIT(t.base, t.ndrained == 1);
	tc_check_released(&t);
	assert_int_equal(t.nclosed, 0);
}

/* ---- a monitor freed from inside its callbacks ---- */

struct tmon {
	struct event_base	*base;
	struct mon		*m;
	struct tu_fake		 f;
	int			 fd0;
	int			 free_on_ready;
	size_t			 pending_in_cb;	/* defer_pending() after free */
	int			 nready;
	int			 nstate_after;	/* state calls after the free */
	int			 freed;
};

struct tmon_cmd {
	struct tmon		*t;
	int			 ncalls;
	int			 failed;
	struct qmp_error	 err;
	int			 free_mon;	/* mon_free from the reply */
	int			 reissue;	/* mon_execute from the reply */
	int			 inside_free;	/* completed inside mon_free */
	struct tmon_cmd		*next;		/* the reissued one */
};

static int	tm_in_free;

static void	tm_reply(struct mon *, json_t *, const struct qmp_error *,
		    void *);

static void
tm_do_free(struct tmon *t, struct mon *m)
{
	tm_in_free = 1;
	mon_free(m);
	tm_in_free = 0;
	t->m = NULL;
	t->freed = 1;
	t->pending_in_cb = defer_pending();
	/* still valid memory until the loop regains control */
	assert_int_equal(mon_state(m), MON_DISCONNECTED);
	assert_int_equal(mon_pending(m), 0);
}

static void
tm_reply(struct mon *m, json_t *ret, const struct qmp_error *err,
    void *arg)
{
	struct tmon_cmd	*c = arg;

	c->ncalls++;
	c->inside_free = tm_in_free;
	if (err != NULL) {
		c->failed = 1;
		c->err = *err;
	}
	if (c->reissue && c->next != NULL)
		mon_execute(m, "query-status", NULL, NULL, 0, tm_reply,
		    c->next);
	if (c->free_mon)
		tm_do_free(c->t, m);
}

static void
tm_state(struct mon *m, enum mon_state st, const char *why, void *arg)
{
	struct tmon	*t = arg;

	if (t->freed)
		t->nstate_after++;
	if (st != MON_READY)
		return;
	t->nready++;
	if (t->free_on_ready)
		tm_do_free(t, m);
}

static const struct mon_ops tm_ops = {
	.state = tm_state,
};

/* Static: a failed test longjmps out, the teardown still finds it. */
static struct tmon	tmon_slot;

static int
tm_teardown(void **state)
{
	if (tmon_slot.f.pid > 0)
		tu_fake_stop(&tmon_slot.f);
	memset(&tmon_slot.f, 0, sizeof tmon_slot.f);
	defer_flush();
	return (0);
}

static struct tmon *
tm_open(int free_on_ready)
{
	struct tmon	*t = &tmon_slot;
	struct mon_opts	 o = { .no_reconnect = true };

	memset(t, 0, sizeof *t);
	t->fd0 = tu_fd_count();
	t->free_on_ready = free_on_ready;
	t->base = event_base_new();
	assert_non_null(t->base);
	if (tu_fake_start(&t->f, NULL) == -1)
		fail_msg("cannot start fake-qemu (%s)",
		    tu_build_path("fake-qemu"));
	t->m = mon_new(t->base, t->f.sock, &o, &tm_ops, t);
	assert_non_null(t->m);
	return (t);
}

static void
tm_close(struct tmon *t)
{
	assert_null(t->m);
	tu_spin(t->base, 3);
	/* the loop released it: nothing left for a flush */
	assert_int_equal(defer_pending(), 0);
	assert_int_equal(t->nstate_after, 0);
	tu_fake_stop(&t->f);
	memset(&t->f, 0, sizeof t->f);
	event_base_free(t->base);
	assert_int_equal(tu_fd_count(), t->fd0);
}

/* Freed from the first reply with two more in flight: they complete with
   an error inside mon_free; one of them issues another command, which
   completes inside mon_free too; nothing is called after. */
static void
test_mon_free_in_reply(void **state)
{
	struct tmon	*t = tm_open(0);
	struct tmon_cmd	 c[4];
	int		 i;

	memset(c, 0, sizeof c);
	for (i = 0; i < 4; i++)
		c[i].t = t;
	WAIT(t->base, t->nready == 1);
	c[0].free_mon = 1;
	c[1].reissue = 1;
	c[1].next = &c[3];
	for (i = 0; i < 3; i++)
		mon_execute(t->m, "query-status", NULL, NULL, 0, tm_reply,
		    &c[i]);
	WAIT(t->base, c[0].ncalls == 1);
	assert_false(c[0].failed);
	for (i = 1; i < 4; i++) {
		assert_int_equal(c[i].ncalls, 1);
		assert_true(c[i].failed);
		assert_true(c[i].inside_free);
	}
	assert_non_null(strstr(c[1].err.desc, "closed"));
	assert_non_null(strstr(c[2].err.desc, "closed"));
	assert_non_null(strstr(c[3].err.desc, "not connected"));
	/* the monitor and its channel wait for the loop */
	assert_int_equal(t->pending_in_cb, 2);
	tm_close(t);
	for (i = 0; i < 4; i++)
		assert_int_equal(c[i].ncalls, 1);
}

/* Freed from the state callback that says ready, from inside the
   channel's msg callback (the query-commands reply). */
static void
test_mon_free_on_ready(void **state)
{
	struct tmon	*t = tm_open(1);

	WAIT(t->base, t->freed);
	assert_int_equal(t->nready, 1);
	assert_int_equal(t->pending_in_cb, 2);
	tm_close(t);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_later_in_order, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_from_callback, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_per_base, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_chained, setup, teardown),
		cmocka_unit_test_setup_teardown(test_schedule_fails, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_flush_before_pass, setup,
		    teardown),
		cmocka_unit_test_teardown(test_chan_free_in_msg, teardown),
		cmocka_unit_test_teardown(test_chan_free_in_closed, teardown),
		cmocka_unit_test_teardown(test_chan_free_in_drained, teardown),
		cmocka_unit_test_teardown(test_mon_free_in_reply, tm_teardown),
		cmocka_unit_test_teardown(test_mon_free_on_ready, tm_teardown),
	};
	const char *filter = getenv("QB_TEST_FILTER");

	/* before any libevent allocation: the failure test refuses some */
#ifndef EVENT__DISABLE_MM_REPLACEMENT
	event_set_mem_functions(t_ev_malloc, t_ev_realloc, free);
#endif
	signal(SIGPIPE, SIG_DFL);	/* a SIGPIPE would be our bug */
	if (filter != NULL && *filter != '\0')
		cmocka_set_test_filter(filter);
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
