/*
 * The monitor against two kinds of peer:
 *  - a scripted server inside the test (raw_*), for exact wire-level
 *    checks: id matching out of order, protocol errors, the fd rule;
 *  - tools/fake-qemu with one fault script per scenario (fake_*).
 * Every test compares the open-fd count before and after.
 */
#include "config.h"

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>
#include <jansson.h>

#include "hv/mon.h"
#include "tests/unit/testutil.h"
#include "util/defer.h"

#define WAIT(base, expr)	TU_WAIT((base), expr)

#define GREETING \
	"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, " \
	"\"major\": 7}, \"package\": \"Debian 1:7.2+dfsg-7\"}, " \
	"\"capabilities\": [\"oob\"]}}\r\n"

static void
reply_init(struct tu_reply *r, size_t n)
{
	memset(r, 0, n * sizeof *r);
}

static void
reply_clear(struct tu_reply *r, size_t n)
{
	size_t	i;

	for (i = 0; i < n; i++)
		tu_reply_clear(&r[i]);
}

static int
all_done(const struct tu_reply *r, size_t n)
{
	size_t	i;

	for (i = 0; i < n; i++)
		if (r[i].ncalls == 0)
			return (0);
	return (1);
}

static void
assert_once(const struct tu_reply *r, size_t n)
{
	size_t	i;

	for (i = 0; i < n; i++) {
		if (r[i].ncalls != 1)
			fail_msg("command %zu completed %d times", i,
			    r[i].ncalls);
		if (r[i].inside)
			fail_msg("command %zu completed inside mon_execute", i);
	}
}

static void
assert_err(const struct tu_reply *r, const char *cls, const char *part)
{
	if (!r->failed)
		fail_msg("expected %s error with \"%s\", got success", cls,
		    part);
	assert_string_equal(r->err.cls, cls);
	if (strstr(r->err.desc, part) == NULL)
		fail_msg("error \"%s\" does not mention \"%s\"", r->err.desc,
		    part);
}

static void
assert_ok(const struct tu_reply *r)
{
	if (r->failed)
		fail_msg("unexpected error %s: %s", r->err.cls, r->err.desc);
	assert_int_equal(r->ncalls, 1);
}

/* The last disconnect's reason mentions part. */
static void
assert_dropped(const struct tu_mon *tm, const char *part)
{
	const char	*why = tu_last_why(tm, MON_DISCONNECTED);

	if (strstr(why, part) == NULL)
		fail_msg("disconnect \"%s\" does not mention \"%s\"", why,
		    part);
}

/* What a failed test leaves behind: its teardown removes it. */
static struct tu_fake	*live_fake;
static char		 live_dir[64], live_sock[108];

static int
cleanup(void **state)
{
	if (live_fake != NULL)
		tu_fake_stop(live_fake);
	live_fake = NULL;
	if (live_sock[0] != '\0')
		unlink(live_sock);
	if (live_dir[0] != '\0')
		rmdir(live_dir);
	live_sock[0] = live_dir[0] = '\0';
	return (0);
}

/* ================= a scripted server inside the test ================= */

struct raw {
	struct event_base	*base;
	char			 dir[64];
	char			 path[108];
	int			 lfd;
	int			 cfd;
	char			 buf[1 << 16];
	size_t			 len;
	int			 fds[16];
	size_t			 nfds;
	int			 fd0;
};

static void
raw_start(struct raw *r)
{
	struct sockaddr_un	sun;

	memset(r, 0, sizeof *r);
	r->fd0 = tu_fd_count();
	r->cfd = -1;
	r->base = event_base_new();
	assert_non_null(r->base);
	snprintf(r->dir, sizeof r->dir, "/tmp/qb-raw.XXXXXX");
	assert_non_null(mkdtemp(r->dir));
	snprintf(r->path, sizeof r->path, "%s/qmp.sock", r->dir);
	memcpy(live_dir, r->dir, sizeof live_dir);
	memcpy(live_sock, r->path, sizeof live_sock);
	r->lfd = socket(AF_UNIX, SOCK_STREAM|SOCK_CLOEXEC|SOCK_NONBLOCK, 0);
	assert_true(r->lfd != -1);
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	strcpy(sun.sun_path, r->path);
	assert_int_equal(bind(r->lfd, (struct sockaddr *)&sun, sizeof sun), 0);
	assert_int_equal(listen(r->lfd, 4), 0);
}

static void
raw_stop(struct raw *r)
{
	size_t	i;

	for (i = 0; i < r->nfds; i++)
		close(r->fds[i]);
	if (r->cfd != -1)
		close(r->cfd);
	close(r->lfd);
	unlink(r->path);
	rmdir(r->dir);
	live_sock[0] = live_dir[0] = '\0';
	event_base_free(r->base);
	/* freed monitors and channels wait for a pass that will not come */
	defer_flush();
	assert_int_equal(defer_pending(), 0);
	assert_int_equal(tu_fd_count(), r->fd0);
}

static void
raw_accept(struct raw *r)
{
	WAIT(r->base, (r->cfd = accept4(r->lfd, NULL, NULL,
	    SOCK_CLOEXEC|SOCK_NONBLOCK)) != -1);
	r->len = 0;
}

static void __attribute__((format(printf, 2, 3)))
raw_send(struct raw *r, const char *fmt, ...)
{
	char	buf[4096];
	va_list	ap;
	int	n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	assert_true(n > 0 && (size_t)n < sizeof buf);
	assert_int_equal(write(r->cfd, buf, (size_t)n), n);
}

/* Pull what the monitor wrote; fds go to r->fds. 1 if bytes came. */
static int
raw_pull(struct raw *r)
{
	ssize_t	n;

	n = tu_recvfds(r->cfd, r->buf + r->len, sizeof r->buf - r->len,
	    r->fds, &r->nfds, 16);
	if (n <= 0)
		return (0);
	assert_true(r->nfds <= 16);
	r->len += (size_t)n;
	return (1);
}

static int
raw_has_line(struct raw *r)
{
	raw_pull(r);
	return (memchr(r->buf, '\n', r->len) != NULL);
}

/* The next command the monitor wrote. */
static json_t *
raw_next(struct raw *r)
{
	char	*lf;
	size_t	 n;
	json_t	*j;

	WAIT(r->base, raw_has_line(r));
	lf = memchr(r->buf, '\n', r->len);
	n = (size_t)(lf - r->buf) + 1;
	j = json_loadb(r->buf, n, 0, NULL);
	assert_non_null(j);
	memmove(r->buf, r->buf + n, r->len - n);
	r->len -= n;
	return (j);
}

/* Nothing more was written (after letting the loop run its work). */
static void
raw_assert_quiet(struct raw *r)
{
	tu_spin(r->base, 10);
	raw_pull(r);
	if (r->len != 0)
		fail_msg("unexpected bytes from the monitor: %.*s",
		    (int)r->len, r->buf);
}

static long long
raw_expect(struct raw *r, const char *name)
{
	json_t		*j = raw_next(r);
	const char	*s = json_string_value(json_object_get(j, "execute"));
	long long	 id;

	if (s == NULL || strcmp(s, name) != 0)
		fail_msg("expected %s, got %s", name, s != NULL ? s : "?");
	/* -1: written without an id (one such in QEMU at a time) */
	id = -1;
	if (json_object_get(j, "id") != NULL) {
		assert_true(json_is_integer(json_object_get(j, "id")));
		id = json_integer_value(json_object_get(j, "id"));
		assert_true(id >= 0);
	}
	json_decref(j);
	return (id);
}

/* QEMU's reply {BODY, "id": ID} to the command raw_expect saw, without
   an id where the command had none. */
static void
raw_reply(struct raw *r, const char *body, long long id)
{
	if (id < 0)
		raw_send(r, "{%s}\r\n", body);
	else
		raw_send(r, "{%s, \"id\": %lld}\r\n", body, id);
}

/* Greeting, capabilities, a short command list: the monitor is ready. */
static void
raw_negotiate(struct raw *r, struct tu_mon *tm)
{
	long long	id;

	raw_accept(r);
	raw_send(r, GREETING);
	id = raw_expect(r, "qmp_capabilities");
	assert_true(id == -1);	/* nothing else unanswered: no id */
	raw_reply(r, "\"return\": {}", id);
	id = raw_expect(r, "query-commands");
	raw_reply(r, "\"return\": [{\"name\": \"query-status\"}, "
	    "{\"name\": \"getfd\"}, {\"name\": \"query-version\"}, "
	    "{\"name\": \"stop\"}]", id);
	WAIT(r->base, mon_state(tm->m) == MON_READY);
}

static void
raw_open(struct raw *r, struct tu_mon *tm)
{
	struct mon_opts	o = { .no_reconnect = true };

	tu_mon_open(tm, r->base, r->path, &o);
	assert_non_null(tm->m);
}

/* Replies in reverse order reach the right callbacks. */
static void
test_raw_out_of_order(void **state)
{
	struct raw	r;
	struct tu_mon	tm;
	struct tu_reply	rep[3];
	long long	id[3];
	int		i;

	raw_start(&r);
	raw_open(&r, &tm);
	raw_negotiate(&r, &tm);
	reply_init(rep, 3);
	for (i = 0; i < 3; i++)
		tu_exec(&tm, &rep[i], "query-status", NULL, NULL, 0);
	for (i = 0; i < 3; i++)
		id[i] = raw_expect(&r, "query-status");
	/* the first without an id, the two behind it with their own */
	assert_true(id[0] == -1 && id[1] >= 0 && id[2] >= 0 &&
	    id[1] != id[2]);
	for (i = 2; i >= 0; i--) {
		char body[64];

		snprintf(body, sizeof body, "\"return\": {\"which\": %d}", i);
		raw_reply(&r, body, id[i]);
	}
	WAIT(r.base, all_done(rep, 3));
	assert_once(rep, 3);
	for (i = 0; i < 3; i++) {
		assert_ok(&rep[i]);
		assert_int_equal(json_integer_value(json_object_get(rep[i].ret,
		    "which")), i);
	}
	assert_true(rep[2].order < rep[1].order && rep[1].order < rep[0].order);
	assert_int_equal(tm.count[MON_DISCONNECTED], 0);
	reply_clear(rep, 3);
	tu_mon_close(&tm);
	raw_stop(&r);
}

/* What goes on the wire: a JSON object per line with the name, the
   arguments unchanged (escapes, UTF-8, big ones) and an integer id. */
static void
test_raw_wire_format(void **state)
{
	struct raw	 r;
	struct tu_mon	 tm;
	struct tu_reply	 rep[3];
	json_t		*args[3], *j;
	char		*big;
	int		 i;

	raw_start(&r);
	raw_open(&r, &tm);
	raw_negotiate(&r, &tm);
	reply_init(rep, 3);
	big = malloc(20000);
	assert_non_null(big);
	memset(big, 'w', 19999);
	big[19999] = '\0';
	args[0] = NULL;
	args[1] = json_pack("{s:s, s:i, s:[b, n]}", "s",
	    "quote\" back\\ \xc3\xbcml\xc3\xa4ut \n", "n", -5, "a", 1);
	args[2] = json_pack("{s:s}", "big", big);
	free(big);
	for (i = 0; i < 3; i++)
		tu_exec(&tm, &rep[i], "query-status",
		    args[i] != NULL ? json_incref(args[i]) : NULL, NULL, 0);
	for (i = 0; i < 3; i++) {
		j = raw_next(&r);
		assert_string_equal(json_string_value(json_object_get(j,
		    "execute")), "query-status");
		/* the first goes alone in QEMU: without an id; the two
		   written while it is unanswered carry theirs */
		if (i == 0)
			assert_null(json_object_get(j, "id"));
		else
			assert_true(json_is_integer(json_object_get(j, "id")));
		if (args[i] == NULL)
			assert_null(json_object_get(j, "arguments"));
		else
			assert_true(json_equal(json_object_get(j, "arguments"),
			    args[i]));
		assert_int_equal(json_object_size(j), (args[i] ? 2 : 1) +
		    (i > 0));
		raw_reply(&r, "\"return\": {}", i == 0 ? -1 :
		    (long long)json_integer_value(json_object_get(j, "id")));
		json_decref(j);
		json_decref(args[i]);
	}
	WAIT(r.base, all_done(rep, 3));
	assert_once(rep, 3);
	reply_clear(rep, 3);
	tu_mon_close(&tm);
	raw_stop(&r);
}

/* A reply nobody asked for, or one without an id: the stream cannot be
   trusted; the connection drops and the command in flight fails once. */
static void
raw_bad_reply(int with_id, const char *why)
{
	struct raw	r;
	struct tu_mon	tm;
	struct tu_reply	rep[2];
	long long	id0, id;

	raw_start(&r);
	raw_open(&r, &tm);
	raw_negotiate(&r, &tm);
	reply_init(rep, 2);
	/* the first goes without an id and is answered so; the second,
	   with its id, is the one in flight when the bad reply comes */
	tu_exec(&tm, &rep[0], "query-status", NULL, NULL, 0);
	tu_exec(&tm, &rep[1], "query-status", NULL, NULL, 0);
	id0 = raw_expect(&r, "query-status");
	id = raw_expect(&r, "query-status");
	assert_true(id0 == -1 && id >= 0);
	raw_reply(&r, "\"return\": {}", id0);
	WAIT(r.base, rep[0].ncalls == 1);
	assert_ok(&rep[0]);
	if (with_id)
		raw_send(&r, "{\"return\": {}, \"id\": %lld}\r\n", id + 1000);
	else
		raw_send(&r, "{\"return\": {}}\r\n");
	WAIT(r.base, rep[1].ncalls == 1 &&
	    mon_state(tm.m) == MON_DISCONNECTED);
	assert_once(rep, 2);
	assert_err(&rep[1], "GenericError", why);
	assert_dropped(&tm, why);
	tu_spin(r.base, 5);
	assert_int_equal(rep[1].ncalls, 1);
	reply_clear(rep, 2);
	tu_mon_close(&tm);
	raw_stop(&r);
}

static void
test_raw_unknown_id(void **state)
{
	raw_bad_reply(1, "unknown id");
}

static void
test_raw_no_id(void **state)
{
	raw_bad_reply(0, "without an id and none pending without one");
}

static void
test_raw_event_before_greeting(void **state)
{
	struct raw	r;
	struct tu_mon	tm;

	raw_start(&r);
	raw_open(&r, &tm);
	raw_accept(&r);
	raw_send(&r, "{\"event\": \"STOP\", \"timestamp\": {\"seconds\": 1, "
	    "\"microseconds\": 2}}\r\n" GREETING);
	WAIT(r.base, mon_state(tm.m) == MON_DISCONNECTED);
	assert_dropped(&tm, "before the greeting");
	assert_int_equal(json_array_size(tm.events), 0);
	tu_mon_close(&tm);
	raw_stop(&r);
}

/* Commands issued while connecting wait for negotiation, then go out
   after qmp_capabilities and query-commands. A command the peer does not
   list fails locally once ready, never reaching the wire. */
static void
test_raw_queue_before_ready(void **state)
{
	struct raw	r;
	struct tu_mon	tm;
	struct tu_reply	rep[2];
	long long	id;

	raw_start(&r);
	raw_open(&r, &tm);
	reply_init(rep, 2);
	assert_int_equal(mon_state(tm.m), MON_CONNECTING);
	tu_exec(&tm, &rep[0], "query-status", NULL, NULL, 0);
	tu_exec(&tm, &rep[1], "x-unlisted", NULL, NULL, 0);
	raw_negotiate(&r, &tm);	/* expects caps, then query-commands */
	id = raw_expect(&r, "query-status");
	raw_assert_quiet(&r);	/* x-unlisted never written */
	raw_reply(&r, "\"return\": {\"status\": \"running\", \"running\": "
	    "true}", id);
	WAIT(r.base, all_done(rep, 2));
	assert_once(rep, 2);
	assert_ok(&rep[0]);
	assert_err(&rep[1], "CommandNotFound",
	    "The command x-unlisted has not been found");
	reply_clear(rep, 2);
	tu_mon_close(&tm);
	raw_stop(&r);
}

/* The fd rule on the wire: an fd command waits until nothing is in
   flight, carries its fd, and nothing follows it until it is answered. */
static void
test_raw_fd_gating(void **state)
{
	struct raw	r;
	struct tu_mon	tm;
	struct tu_reply	rep[3];
	long long	ida, idg, idb;
	int		p[2];
	char		buf[8];

	raw_start(&r);
	raw_open(&r, &tm);
	raw_negotiate(&r, &tm);
	reply_init(rep, 3);
	assert_int_equal(pipe2(p, O_CLOEXEC|O_NONBLOCK), 0);
	tu_exec(&tm, &rep[0], "query-status", NULL, NULL, 0);
	tu_exec(&tm, &rep[1], "getfd", json_pack("{s:s}", "fdname", "x"),
	    &p[1], 1);
	close(p[1]);
	tu_exec(&tm, &rep[2], "query-version", NULL, NULL, 0);
	ida = raw_expect(&r, "query-status");
	raw_assert_quiet(&r);
	assert_int_equal(r.nfds, 0);
	raw_reply(&r, "\"return\": {}", ida);
	idg = raw_expect(&r, "getfd");
	assert_int_equal(r.nfds, 1);
	raw_assert_quiet(&r);
	raw_reply(&r, "\"return\": {}", idg);
	idb = raw_expect(&r, "query-version");
	/* each went alone, so each without an id: the slot comes back
	   with every reply without one */
	assert_true(ida == -1 && idg == -1 && idb == -1);
	raw_reply(&r, "\"return\": {}", idb);
	WAIT(r.base, all_done(rep, 3));
	assert_once(rep, 3);
	/* the fd that arrived is our pipe */
	assert_int_equal(write(r.fds[0], "fd!", 3), 3);
	assert_int_equal(read(p[0], buf, sizeof buf), 3);
	close(p[0]);
	reply_clear(rep, 3);
	tu_mon_close(&tm);
	raw_stop(&r);
}

/* mon_free from a reply callback with other commands pending: they
   complete inside that call, once each, and nothing is touched after. */
static void
test_raw_free_in_callback(void **state)
{
	struct raw	r;
	struct tu_mon	tm;
	struct tu_reply	rep[3];
	long long	id;
	int		i;

	raw_start(&r);
	raw_open(&r, &tm);
	raw_negotiate(&r, &tm);
	reply_init(rep, 3);
	rep[0].free_mon = 1;
	for (i = 0; i < 3; i++)
		tu_exec(&tm, &rep[i], "query-status", NULL, NULL, 0);
	assert_true(raw_expect(&r, "query-status") == -1);
	id = raw_expect(&r, "query-status");
	/* the reply to the first, and one for the second in the same read:
	   the second must not be delivered to a freed monitor */
	raw_send(&r, "{\"return\": {}}\r\n"
	    "{\"return\": {}, \"id\": %lld}\r\n", id);
	WAIT(r.base, tm.m == NULL);
	assert_once(rep, 3);
	assert_ok(&rep[0]);
	assert_err(&rep[1], "GenericError", "closed");
	assert_err(&rep[2], "GenericError", "closed");
	tu_spin(r.base, 5);
	assert_once(rep, 3);
	reply_clear(rep, 3);
	tu_mon_close(&tm);
	raw_stop(&r);
}

/* A ready monitor whose peer stops reading: 3 MiB of commands back up
   in our queue; the command timeout ends the connection, every command
   fails once, and the queued bytes are released (ASan/valgrind, fds). */
#define NBIG	48
static void
test_raw_stop_reading(void **state)
{
	struct mon_opts	 o = { .cmd_timeout_ms = 500, .no_reconnect = true };
	struct raw	 r;
	struct tu_mon	 tm;
	struct tu_reply	*rep;
	char		*big;
	int		 i, ntimeout = 0;

	raw_start(&r);
	tu_mon_open(&tm, r.base, r.path, &o);
	raw_negotiate(&r, &tm);
	rep = calloc(NBIG, sizeof *rep);
	big = malloc(65536);
	assert_non_null(rep);
	assert_non_null(big);
	memset(big, 'b', 65535);
	big[65535] = '\0';
	for (i = 0; i < NBIG; i++)
		tu_exec(&tm, &rep[i], "query-status", json_pack("{s:s}", "blob",
		    big), NULL, 0);
	free(big);
	WAIT(r.base, all_done(rep, NBIG));
	assert_once(rep, NBIG);
	for (i = 0; i < NBIG; i++) {
		assert_true(rep[i].failed);
		if (strstr(rep[i].err.desc, "connection lost") == NULL) {
			assert_non_null(strstr(rep[i].err.desc, "timed out"));
			ntimeout++;
		}
	}
	/* those in QEMU whose deadline had passed when the timer ran
	   (one, or more on a slow run: ASan), the rest reset */
	assert_true(ntimeout >= 1 && ntimeout <= NBIG);
	assert_int_equal(mon_state(tm.m), MON_DISCONNECTED);
	assert_dropped(&tm, "timed out");
	reply_clear(rep, NBIG);
	free(rep);
	tu_mon_close(&tm);
	raw_stop(&r);
}

/* mon_free with commands in flight completes them inside the call. */
static void
test_raw_free_pending(void **state)
{
	struct raw	r;
	struct tu_mon	tm;
	struct tu_reply	rep[3];
	int		i;

	raw_start(&r);
	raw_open(&r, &tm);
	raw_negotiate(&r, &tm);
	reply_init(rep, 3);
	for (i = 0; i < 3; i++)
		tu_exec(&tm, &rep[i], "query-status", NULL, NULL, 0);
	raw_expect(&r, "query-status");
	assert_int_equal(mon_pending(tm.m), 3);
	mon_free(tm.m);
	tm.m = NULL;
	assert_once(rep, 3);
	for (i = 0; i < 3; i++)
		assert_err(&rep[i], "GenericError", "closed");
	reply_clear(rep, 3);
	tu_mon_close(&tm);
	raw_stop(&r);
}

/* Postcopy paused (QEMU 7.2 holds in-band commands until recovery): a
   written command whose time is up fails alone with a clear error, the
   connection stays, and the late replies, when they come, are dropped,
   not given to the command in flight then. Without the flag the old
   rule holds: the connection drops. */
static void
test_raw_postcopy_paused(void **state)
{
	struct raw	r;
	struct tu_mon	tm;
	struct tu_reply	rep[4];
	struct mon_opts	o = { .no_reconnect = true, .cmd_timeout_ms = 400 };
	long long	id[4];
	int		i;

	raw_start(&r);
	tu_mon_open(&tm, r.base, r.path, &o);
	assert_non_null(tm.m);
	raw_negotiate(&r, &tm);
	mon_set_postcopy_paused(tm.m, true);
	reply_init(rep, 4);
	for (i = 0; i < 2; i++)
		tu_exec(&tm, &rep[i], "query-status", NULL, NULL, 0);
	for (i = 0; i < 2; i++)
		id[i] = raw_expect(&r, "query-status");
	assert_true(id[0] == -1 && id[1] >= 0);
	WAIT(r.base, all_done(rep, 2));
	for (i = 0; i < 2; i++)
		assert_err(&rep[i], "GenericError", "QEMU does not answer "
		    "in-band commands while postcopy is paused");
	assert_int_equal(mon_state(tm.m), MON_READY);
	assert_int_equal(tm.count[MON_DISCONNECTED], 0);
	assert_int_equal(mon_late(tm.m), 2);
	assert_int_equal(mon_timeouts(tm.m), 2);

	/* the one without an id is still in QEMU: the next carries one */
	tu_exec(&tm, &rep[2], "query-status", NULL, NULL, 0);
	id[2] = raw_expect(&r, "query-status");
	assert_true(id[2] >= 0);
	raw_reply(&r, "\"return\": {\"which\": 0}", id[0]);
	raw_reply(&r, "\"return\": {\"which\": 1}", id[1]);
	raw_reply(&r, "\"return\": {\"which\": 2}", id[2]);
	WAIT(r.base, rep[2].ncalls == 1);
	assert_ok(&rep[2]);
	assert_int_equal(json_integer_value(json_object_get(rep[2].ret,
	    "which")), 2);
	assert_once(rep, 3);
	assert_int_equal(mon_late(tm.m), 0);
	assert_int_equal(tm.count[MON_DISCONNECTED], 0);

	/* recovered: a command unanswered in time means a stuck peer */
	mon_set_postcopy_paused(tm.m, false);
	tu_exec(&tm, &rep[3], "query-status", NULL, NULL, 0);
	id[3] = raw_expect(&r, "query-status");
	assert_true(id[3] == -1);
	WAIT(r.base, rep[3].ncalls == 1 &&
	    mon_state(tm.m) == MON_DISCONNECTED);
	assert_err(&rep[3], "GenericError", "timed out");
	assert_dropped(&tm, "timed out");
	assert_once(rep, 4);
	reply_clear(rep, 4);
	tu_mon_close(&tm);
	raw_stop(&r);
}

/* ========================= against fake-qemu ========================= */

struct fk {
	struct event_base	*base;
	struct tu_fake		 f;
	struct tu_mon		 tm;
	int			 fd0;
};

/* Static, not on the test's stack: a failed test longjmps out and its
   teardown still finds the child to kill. */
static struct fk	fk_slot;

static struct fk *
fk_start(const char *faults, const struct mon_opts *opts)
{
	struct fk	*k = &fk_slot;
	struct mon_opts	 o;

	memset(k, 0, sizeof *k);
	k->fd0 = tu_fd_count();
	k->base = event_base_new();
	assert_non_null(k->base);
	live_fake = &k->f;
	if (tu_fake_start(&k->f, faults) == -1)
		fail_msg("cannot start fake-qemu (%s)",
		    tu_build_path("fake-qemu"));
	if (opts == NULL) {
		memset(&o, 0, sizeof o);
		o.backoff_min_ms = 10;
		o.backoff_max_ms = 200;
		opts = &o;
	}
	tu_mon_open(&k->tm, k->base, k->f.sock, opts);
	assert_non_null(k->tm.m);
	return (k);
}

static void
fk_ready(struct fk *k)
{
	WAIT(k->base, mon_state(k->tm.m) == MON_READY);
}

static void
fk_stop(struct fk *k)
{
	tu_mon_close(&k->tm);
	tu_fake_stop(&k->f);
	live_fake = NULL;
	event_base_free(k->base);
	defer_flush();
	assert_int_equal(defer_pending(), 0);
	assert_int_equal(tu_fd_count(), k->fd0);
}

/* one command, waited for */
static void
fk_run(struct fk *k, struct tu_reply *r, const char *cmd, json_t *args)
{
	reply_init(r, 1);
	tu_exec(&k->tm, r, cmd, args, NULL, 0);
	WAIT(k->base, r->ncalls > 0);
	assert_once(r, 1);
}

/* The n commands (NULL: all query-status) issued at once, waited for,
   each completed once. */
static void
fk_batch(struct fk *k, struct tu_reply *r, size_t n,
    const char *const *cmds)
{
	size_t	i;

	reply_init(r, n);
	for (i = 0; i < n; i++)
		tu_exec(&k->tm, &r[i], cmds != NULL ? cmds[i] : "query-status",
		    NULL, NULL, 0);
	WAIT(k->base, all_done(r, n));
	assert_once(r, n);
}

/* The monitor ready a second time, and cmd succeeds on it. */
static void
fk_back(struct fk *k, const char *cmd)
{
	struct tu_reply	again;

	WAIT(k->base, k->tm.count[MON_READY] == 2);
	fk_run(k, &again, cmd, NULL);
	assert_ok(&again);
	reply_clear(&again, 1);
}

/* getfd with the write end of a fresh pipe p, waited for; the test's
   copy of that end is closed. */
static void
fk_getfd(struct fk *k, struct tu_reply *g, int p[2])
{
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	reply_init(g, 1);
	tu_exec(&k->tm, g, "getfd", json_pack("{s:s}", "fdname", "f0"),
	    &p[1], 1);
	close(p[1]);
	WAIT(k->base, g->ncalls);
	assert_once(g, 1);
}

static void
test_fake_basic(void **state)
{
	struct fk		 *k;
	struct tu_reply		 r, e;
	const struct qmp_version *v;
	json_t			*ev;

	k = fk_start(NULL, NULL);
	fk_ready(k);
	v = mon_version(k->tm.m);
	assert_non_null(v);
	assert_int_equal(v->major, 7);
	assert_int_equal(v->minor, 2);
	assert_true(mon_command_count(k->tm.m) > 10);
	assert_true(mon_has_command(k->tm.m, "query-status"));
	assert_true(mon_has_command(k->tm.m, "x-fake-event"));
	fk_run(k, &r, "query-status", NULL);
	assert_ok(&r);
	assert_true(json_is_string(json_object_get(r.ret, "status")));
	fk_run(k, &e, "x-fake-event", json_pack("{s:s, s:{s:i}}", "event",
	    "QB_TEST", "data", "n", 42));
	assert_ok(&e);
	WAIT(k->base, json_array_size(k->tm.events) == 1);
	ev = json_array_get(k->tm.events, 0);
	assert_string_equal(qmp_event_name(ev), "QB_TEST");
	assert_int_equal(json_integer_value(json_object_get(json_object_get(ev,
	    "data"), "n")), 42);
	assert_int_equal(mon_pending(k->tm.m), 0);
	reply_clear(&r, 1);
	reply_clear(&e, 1);
	fk_stop(k);
}

/* Unknown commands fail locally: had it been sent, eof-on would have
   cut the connection. */
static void
test_fake_command_not_found(void **state)
{
	struct fk	*k;
	struct tu_reply	r, s;

	k = fk_start("eof-on x-no-such-cmd\n", NULL);
	fk_ready(k);
	fk_run(k, &r, "x-no-such-cmd", NULL);
	assert_err(&r, "CommandNotFound",
	    "The command x-no-such-cmd has not been found");
	fk_run(k, &s, "query-status", NULL);
	assert_ok(&s);
	assert_int_equal(k->tm.count[MON_DISCONNECTED], 0);
	reply_clear(&r, 1);
	reply_clear(&s, 1);
	fk_stop(k);
}

/* Many commands in flight, replies out of order (one kind delayed):
   each reply reaches its own command. */
#define NMANY	300
static void
test_fake_ids_many(void **state)
{
	static const char *const cmds[] = {
		"query-status", "query-pci", "query-version"
	};
	struct fk	 *k;
	struct tu_reply	*rep;
	json_t		*ret;
	int		 i;

	k = fk_start("delay-cmd query-status 30\n", NULL);
	fk_ready(k);
	rep = calloc(NMANY, sizeof *rep);
	assert_non_null(rep);
	for (i = 0; i < NMANY; i++)
		tu_exec(&k->tm, &rep[i], cmds[i % 3], NULL, NULL, 0);
	assert_int_equal(mon_pending(k->tm.m), NMANY);
	WAIT(k->base, all_done(rep, NMANY));
	assert_once(rep, NMANY);
	for (i = 0; i < NMANY; i++) {
		assert_ok(&rep[i]);
		ret = rep[i].ret;
		switch (i % 3) {
		case 0:
			assert_true(json_is_string(json_object_get(ret,
			    "status")));
			break;
		case 1:
			assert_true(json_is_array(ret));
			break;
		case 2:
			assert_true(json_is_object(json_object_get(ret,
			    "qemu")));
			break;
		}
	}
	/* the delayed ones really came after the others */
	assert_true(rep[0].order > rep[1].order);
	assert_int_equal(mon_pending(k->tm.m), 0);
	assert_int_equal(k->tm.count[MON_DISCONNECTED], 0);
	reply_clear(rep, NMANY);
	free(rep);
	fk_stop(k);
}

/* Every message in 1-byte writes. */
static void
test_fake_chunk(void **state)
{
	struct fk	*k;
	struct tu_reply	r, e;

	k = fk_start("chunk 1\n", NULL);
	fk_ready(k);
	fk_run(k, &r, "query-status", NULL);
	assert_ok(&r);
	fk_run(k, &e, "x-fake-event", json_pack("{s:s}", "event", "ONE"));
	assert_ok(&e);
	WAIT(k->base, json_array_size(k->tm.events) == 1);
	assert_int_equal(k->tm.count[MON_DISCONNECTED], 0);
	reply_clear(&r, 1);
	reply_clear(&e, 1);
	fk_stop(k);
}

/* Slow replies are just slow: nothing times out or reconnects. */
static void
test_fake_delay(void **state)
{
	struct fk	*k;
	struct tu_reply	r[4];
	int		i;

	k = fk_start("delay 100\n", NULL);
	fk_ready(k);
	fk_batch(k, r, 4, NULL);
	for (i = 0; i < 4; i++)
		assert_ok(&r[i]);
	assert_int_equal(k->tm.count[MON_DISCONNECTED], 0);
	reply_clear(r, 4);
	fk_stop(k);
}

/* The peer closes after its 5th message (greeting, two negotiation
   replies, two of ours): the rest fail once, the monitor comes back. */
static void
test_fake_close_after(void **state)
{
	struct fk	*k;
	struct tu_reply	r[6];
	int		i;

	k = fk_start("once close-after 5\n", NULL);
	fk_ready(k);
	fk_batch(k, r, 6, NULL);
	assert_ok(&r[0]);
	assert_ok(&r[1]);
	for (i = 2; i < 6; i++)
		assert_err(&r[i], "GenericError", "connection lost");
	assert_int_equal(mon_pending(k->tm.m), 0);
	fk_back(k, "query-status");
	assert_true(k->tm.count[MON_DISCONNECTED] >= 1);
	tu_spin(k->base, 5);
	assert_once(r, 6);
	reply_clear(r, 6);
	fk_stop(k);
}

/* Not JSON on the wire: a protocol error, the stream is dropped and the
   command queued meanwhile fails once. (Every connection gets the garbage:
   fake-qemu does not count a client that never wrote a byte as its first
   connection, and we drop this one before our qmp_capabilities leaves,
   so "once garbage" would repeat. Reconnecting after a dropped stream is
   covered by close-after, no-reply and eof-on.) */
static void
test_fake_garbage(void **state)
{
	struct mon_opts	 o = { .no_reconnect = true };
	struct fk	*k;
	struct tu_reply	 r;

	k = fk_start("garbage\n", &o);
	reply_init(&r, 1);
	tu_exec(&k->tm, &r, "query-status", NULL, NULL, 0);
	WAIT(k->base, mon_state(k->tm.m) == MON_DISCONNECTED && r.ncalls);
	assert_dropped(&k->tm, "protocol error");
	assert_once(&r, 1);
	assert_err(&r, "GenericError", "protocol error");
	assert_int_equal(k->tm.count[MON_READY], 0);
	assert_int_equal(k->tm.count[MON_DISCONNECTED], 1);
	reply_clear(&r, 1);
	fk_stop(k);
}

static void
test_fake_second_greeting(void **state)
{
	struct fk	*k;
	struct tu_reply	r;

	k = fk_start("second-greeting\n", NULL);
	fk_ready(k);
	fk_run(k, &r, "query-status", NULL);
	assert_ok(&r);
	assert_int_equal(mon_version(k->tm.m)->major, 7);
	assert_int_equal(k->tm.count[MON_DISCONNECTED], 0);
	assert_int_equal(json_array_size(k->tm.events), 0);
	reply_clear(&r, 1);
	fk_stop(k);
}

/* No greeting: negotiation has a deadline (the command timeout); the
   command queued meanwhile fails once. */
static void
test_fake_no_greeting(void **state)
{
	struct mon_opts	o = { .cmd_timeout_ms = 300, .no_reconnect = true };
	struct fk	*k;
	struct tu_reply	r;

	k = fk_start("no-greeting\n", &o);
	WAIT(k->base, mon_state(k->tm.m) == MON_NEGOTIATING);
	reply_init(&r, 1);
	tu_exec(&k->tm, &r, "query-status", NULL, NULL, 0);
	WAIT(k->base, mon_state(k->tm.m) == MON_DISCONNECTED && r.ncalls);
	assert_dropped(&k->tm, "no greeting");
	assert_once(&r, 1);
	assert_err(&r, "GenericError", "");
	assert_int_equal(k->tm.count[MON_READY], 0);
	assert_null(mon_version(k->tm.m));
	reply_clear(&r, 1);
	fk_stop(k);
}

/* Injected errors pass through with their class and desc. */
static void
test_fake_error(void **state)
{
	struct fk	*k;
	struct tu_reply	a, b;

	k = fk_start("error query-status DeviceNotFound no such thing here\n"
	    "error query-pci\n", NULL);
	fk_ready(k);
	fk_run(k, &a, "query-status", NULL);
	assert_err(&a, "DeviceNotFound", "no such thing here");
	assert_string_equal(a.err.desc, "no such thing here");
	fk_run(k, &b, "query-pci", NULL);
	assert_err(&b, "GenericError", "injected fault");
	assert_int_equal(k->tm.count[MON_DISCONNECTED], 0);
	reply_clear(&a, 1);
	reply_clear(&b, 1);
	fk_stop(k);
}

/* A command never answered times out; the connection is reset, the
   other one in flight fails once, later ones answered before still
   succeed, and the monitor reconnects. */
static void
test_fake_no_reply(void **state)
{
	struct mon_opts	o = { .cmd_timeout_ms = 400, .backoff_min_ms = 10,
			    .backoff_max_ms = 100 };
	struct fk	*k;
	static const char *const cmds[] = {
		"query-version", "query-status", "query-status", "query-pci"
	};
	struct tu_reply	r[4];

	k = fk_start("no-reply query-status\n", &o);
	fk_ready(k);
	fk_batch(k, r, 4, cmds);
	assert_ok(&r[0]);
	assert_ok(&r[3]);
	assert_err(&r[1], "GenericError", "timed out");
	assert_err(&r[2], "GenericError", "connection lost");
	assert_dropped(&k->tm, "timed out");
	fk_back(k, "query-version");
	tu_spin(k->base, 5);
	assert_once(r, 4);
	reply_clear(r, 4);
	fk_stop(k);
}

/* The peer hangs up on a command: it and the one behind it fail once,
   the one before succeeded, and the monitor reconnects. */
static void
test_fake_eof_on(void **state)
{
	struct fk	*k;
	static const char *const cmds[] = {
		"query-status", "stop", "query-pci"
	};
	struct tu_reply	r[3];

	k = fk_start("eof-on stop\n", NULL);
	fk_ready(k);
	fk_batch(k, r, 3, cmds);
	assert_ok(&r[0]);
	assert_err(&r[1], "GenericError", "connection lost");
	assert_err(&r[2], "GenericError", "connection lost");
	assert_dropped(&k->tm, "closed");
	fk_back(k, "query-status");
	reply_clear(r, 3);
	fk_stop(k);
}

/* An event flood: every event arrives, in order, and commands issued
   meanwhile still get their replies. */
static void
test_fake_flood(void **state)
{
	struct fk	 *k;
	struct tu_reply	 r[40];
	size_t		 i, n;
	json_int_t	 prev = -1, seq;
	json_t		*ev;

	k = fk_start("flood 2000\n", NULL);
	fk_ready(k);
	reply_init(r, 40);
	for (i = 0; i < 40; i++) {
		tu_exec(&k->tm, &r[i], "query-status", NULL, NULL, 0);
		WAIT(k->base, r[i].ncalls > 0);
	}
	assert_once(r, 40);
	for (i = 0; i < 40; i++)
		assert_ok(&r[i]);
	WAIT(k->base, json_array_size(k->tm.events) >= 500);
	n = json_array_size(k->tm.events);
	for (i = 0; i < n; i++) {
		ev = json_array_get(k->tm.events, i);
		assert_string_equal(qmp_event_name(ev), "FAKE_TICK");
		seq = json_integer_value(json_object_get(json_object_get(ev,
		    "data"), "seq"));
		if (prev != -1 && seq != prev + 1)
			fail_msg("event %zu: seq %lld after %lld", i,
			    (long long)seq, (long long)prev);
		prev = seq;
	}
	assert_int_equal(k->tm.count[MON_DISCONNECTED], 0);
	reply_clear(r, 40);
	fk_stop(k);
}

/* mon_free from inside the event callback, mid-flood. */
static void
test_fake_free_in_event(void **state)
{
	struct fk	*k;
	size_t		 before;

	k = fk_start("flood 2000\n", NULL);
	fk_ready(k);
	/* the flood starts before query-commands is answered: a slow run
	   (valgrind) has events in by the time we are ready */
	before = json_array_size(k->tm.events);
	k->tm.free_on_event = 1;
	WAIT(k->base, k->tm.m == NULL);
	tu_spin(k->base, 5);
	assert_int_equal(json_array_size(k->tm.events), before + 1);
	fk_stop(k);
}

/* getfd, closefd, closefd again: QEMU's own answers. */
static void
test_fake_getfd(void **state)
{
	struct fk	*k;
	struct tu_reply	g, c1, c2;
	int		p[2];

	k = fk_start(NULL, NULL);
	fk_ready(k);
	fk_getfd(k, &g, p);
	assert_ok(&g);
	fk_run(k, &c1, "closefd", json_pack("{s:s}", "fdname", "f0"));
	assert_ok(&c1);
	fk_run(k, &c2, "closefd", json_pack("{s:s}", "fdname", "f0"));
	assert_err(&c2, "GenericError", "f0");
	close(p[0]);
	reply_clear(&g, 1);
	reply_clear(&c1, 1);
	reply_clear(&c2, 1);
	fk_stop(k);
}

/* The peer closes passed fds: getfd fails with QEMU's words. */
static void
test_fake_refuse_fds(void **state)
{
	struct fk	*k;
	struct tu_reply	g;
	int		p[2];

	k = fk_start("refuse-fds\n", NULL);
	fk_ready(k);
	fk_getfd(k, &g, p);
	assert_err(&g, "GenericError",
	    "No file descriptor supplied via SCM_RIGHTS");
	close(p[0]);
	reply_clear(&g, 1);
	fk_stop(k);
}

/* stop-reading stops after qmp_capabilities, so our query-commands is
   never read: the monitor never gets ready, the negotiation deadline
   ends the connection and the commands queued meanwhile fail once. (The
   backed-up writes of a ready monitor: test_raw_stop_reading.) */
static void
test_fake_stop_reading(void **state)
{
	struct mon_opts	o = { .cmd_timeout_ms = 500, .no_reconnect = true };
	struct fk	*k;
	struct tu_reply	r[4];
	int		i;

	k = fk_start("stop-reading\n", &o);
	fk_batch(k, r, 4, NULL);
	for (i = 0; i < 4; i++)
		assert_err(&r[i], "GenericError", "timed out");
	WAIT(k->base, mon_state(k->tm.m) == MON_DISCONNECTED);
	assert_int_equal(k->tm.count[MON_READY], 0);
	assert_dropped(&k->tm, "negotiation timed out");
	reply_clear(r, 4);
	fk_stop(k);
}

/* fake-qemu dies and comes back on the same path: disconnected (commands
   then fail at once), retries with backoff, ready again. */
static void
test_fake_restart(void **state)
{
	struct fk	*k;
	struct tu_reply	r, down;
	int		attempts;

	k = fk_start(NULL, NULL);
	fk_ready(k);
	fk_run(k, &r, "query-status", NULL);
	assert_ok(&r);
	tu_fake_kill(&k->f);
	WAIT(k->base, mon_state(k->tm.m) == MON_DISCONNECTED);
	assert_dropped(&k->tm, "closed");
	fk_run(k, &down, "query-status", NULL);
	assert_err(&down, "GenericError", "not connected");
	/* a few refused attempts while it is down */
	attempts = k->tm.count[MON_CONNECTING];
	WAIT(k->base, k->tm.count[MON_CONNECTING] >= attempts + 2);
	assert_null(strstr(tu_last_why(&k->tm, MON_DISCONNECTED), "closed"));
	assert_int_equal(tu_fake_restart(&k->f), 0);
	fk_back(k, "query-status");
	reply_clear(&r, 1);
	reply_clear(&down, 1);
	fk_stop(k);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_raw_out_of_order, cleanup),
		cmocka_unit_test_teardown(test_raw_wire_format, cleanup),
		cmocka_unit_test_teardown(test_raw_unknown_id, cleanup),
		cmocka_unit_test_teardown(test_raw_no_id, cleanup),
		cmocka_unit_test_teardown(test_raw_event_before_greeting, cleanup),
		cmocka_unit_test_teardown(test_raw_queue_before_ready, cleanup),
		cmocka_unit_test_teardown(test_raw_fd_gating, cleanup),
		cmocka_unit_test_teardown(test_raw_free_in_callback, cleanup),
		cmocka_unit_test_teardown(test_raw_free_pending, cleanup),
		cmocka_unit_test_teardown(test_raw_stop_reading, cleanup),
		cmocka_unit_test_teardown(test_raw_postcopy_paused, cleanup),
		cmocka_unit_test_teardown(test_fake_basic, cleanup),
		cmocka_unit_test_teardown(test_fake_command_not_found, cleanup),
		cmocka_unit_test_teardown(test_fake_ids_many, cleanup),
		cmocka_unit_test_teardown(test_fake_chunk, cleanup),
		cmocka_unit_test_teardown(test_fake_delay, cleanup),
		cmocka_unit_test_teardown(test_fake_close_after, cleanup),
		cmocka_unit_test_teardown(test_fake_garbage, cleanup),
		cmocka_unit_test_teardown(test_fake_second_greeting, cleanup),
		cmocka_unit_test_teardown(test_fake_no_greeting, cleanup),
		cmocka_unit_test_teardown(test_fake_error, cleanup),
		cmocka_unit_test_teardown(test_fake_no_reply, cleanup),
		cmocka_unit_test_teardown(test_fake_eof_on, cleanup),
		cmocka_unit_test_teardown(test_fake_flood, cleanup),
		cmocka_unit_test_teardown(test_fake_free_in_event, cleanup),
		cmocka_unit_test_teardown(test_fake_getfd, cleanup),
		cmocka_unit_test_teardown(test_fake_refuse_fds, cleanup),
		cmocka_unit_test_teardown(test_fake_stop_reading, cleanup),
		cmocka_unit_test_teardown(test_fake_restart, cleanup),
	};
	const char *filter = getenv("QB_TEST_FILTER");

	signal(SIGPIPE, SIG_DFL);	/* a SIGPIPE would be our bug */
	if (filter != NULL && *filter != '\0')
		cmocka_set_test_filter(filter);
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
