/*
 * The monitor against a real qemu-system-x86_64 (-nodefaults -display
 * none -S; KVM when /dev/kvm opens, TCG otherwise). QEMU is installed
 * wherever the suite runs, so it is not skipped: a missing binary fails.
 */
#include "config.h"

#include <sys/types.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
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

#include <linux/kvm.h>

#include <cmocka.h>
#include <event2/event.h>
#include <jansson.h>

#include "hv/mon.h"
#include "tests/unit/testutil.h"
#include "util/defer.h"

struct q {
	struct event_base	*base;
	struct tu_mon		 tm;
	pid_t			 pid;
	char			 dir[64];
	char			 sock[108];
	int			 fd0;
};

#define WAIT(q, expr)	TU_WAIT((q)->base, expr)

/* What a failed test leaves behind: its teardown removes it. */
static struct q	*live;

/* Ends the QEMU with sig and removes its socket and dir. */
static void
q_remove(struct q *q, int sig)
{
	if (q->pid > 0) {
		kill(q->pid, sig);
		tu_reap(q->pid, TU_DEADLINE_MS);
	}
	unlink(q->sock);
	rmdir(q->dir);
	live = NULL;
}

static int
cleanup(void **state)
{
	if (live != NULL)
		q_remove(live, SIGKILL);
	return (0);
}

static const char *
qemu_path(void)
{
	const char	*p = getenv("QB_QEMU");

	return (p != NULL && *p != '\0' ? p : "/usr/bin/qemu-system-x86_64");
}

/* Static, not on the test's stack: see cleanup(). */
static struct q	q_slot;

static struct q *
q_start(void)
{
	struct q	*q = &q_slot;
	const char	*argv[16];
	char		 qmp[160];
	int		 argc = 0, fd;
	const char	*accel = "tcg";
	struct stat	 st;

	memset(q, 0, sizeof *q);
	q->fd0 = tu_fd_count();
	/* tools/lib.sh's qb_kvm_probe in C: a character device that
	   opens (no O_CREAT) and answers as KVM; a regular file of that
	   name (some probe created it) or another device is no KVM. */
	if ((fd = open("/dev/kvm", O_RDWR|O_CLOEXEC|O_NOCTTY)) != -1) {
		if (fstat(fd, &st) == 0 && S_ISCHR(st.st_mode) &&
		    ioctl(fd, KVM_GET_API_VERSION, 0) == KVM_API_VERSION)
			accel = "kvm";
		close(fd);
	}
	snprintf(q->dir, sizeof q->dir, "/tmp/qb-qemu.XXXXXX");
	assert_non_null(mkdtemp(q->dir));
	snprintf(q->sock, sizeof q->sock, "%.63s/qmp.sock", q->dir);
	live = q;
	snprintf(qmp, sizeof qmp, "unix:%s,server=on,wait=off", q->sock);
	argv[argc++] = qemu_path();
	argv[argc++] = "-nodefaults";
	argv[argc++] = "-display";
	argv[argc++] = "none";
	argv[argc++] = "-S";
	argv[argc++] = "-machine";
	argv[argc++] = strcmp(accel, "kvm") == 0 ? "pc,accel=kvm" :
	    "pc,accel=tcg";
	argv[argc++] = "-m";
	argv[argc++] = "64";
	argv[argc++] = "-qmp";
	argv[argc++] = qmp;
	argv[argc] = NULL;
	q->pid = tu_spawn_server(argv, q->sock);
	if (q->pid == -1)
		fail_msg("cannot start %s", qemu_path());
	q->base = event_base_new();
	assert_non_null(q->base);
	return (q);
}

static void
q_open(struct q *q)
{
	struct mon_opts	o = { .no_reconnect = true };

	tu_mon_open(&q->tm, q->base, q->sock, &o);
	assert_non_null(q->tm.m);
	WAIT(q, mon_state(q->tm.m) == MON_READY ||
	    mon_state(q->tm.m) == MON_DISCONNECTED);
	assert_int_equal(mon_state(q->tm.m), MON_READY);
}

static void
q_stop(struct q *q)
{
	tu_mon_close(&q->tm);
	q_remove(q, SIGTERM);
	event_base_free(q->base);
	/* freed monitors and channels wait for a pass that will not come */
	defer_flush();
	assert_int_equal(defer_pending(), 0);
	assert_int_equal(tu_fd_count(), q->fd0);
}

/* Negotiation, the greeting's version, queries and a local
   CommandNotFound. */
static void
test_negotiate_query(void **state)
{
	struct q		 *q;
	struct tu_reply		 st, ver, nf;
	const struct qmp_version *v;

	q = q_start();
	q_open(q);
	memset(&st, 0, sizeof st);
	memset(&ver, 0, sizeof ver);
	memset(&nf, 0, sizeof nf);

	v = mon_version(q->tm.m);
	assert_non_null(v);
	assert_true(v->major >= 7);
	assert_true(mon_command_count(q->tm.m) > 100);
	assert_true(mon_has_command(q->tm.m, "query-status"));
	assert_true(mon_has_command(q->tm.m, "getfd"));
	assert_false(mon_has_command(q->tm.m, "x-no-such-command"));

	tu_exec(&q->tm, &st, "query-status", NULL, NULL, 0);
	tu_exec(&q->tm, &ver, "query-version", NULL, NULL, 0);
	tu_exec(&q->tm, &nf, "x-no-such-command", NULL, NULL, 0);
	WAIT(q, st.ncalls && ver.ncalls && nf.ncalls);
	assert_int_equal(st.failed, 0);
	assert_string_equal(json_string_value(json_object_get(st.ret,
	    "status")), "prelaunch");
	assert_true(json_is_false(json_object_get(st.ret, "running")));
	assert_int_equal(ver.failed, 0);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(
	    ver.ret, "qemu"), "major")), v->major);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(
	    ver.ret, "qemu"), "minor")), v->minor);
	assert_int_equal(nf.failed, 1);
	assert_string_equal(nf.err.cls, "CommandNotFound");
	assert_string_equal(nf.err.desc,
	    "The command x-no-such-command has not been found");
	assert_int_equal(st.inside + ver.inside + nf.inside, 0);
	assert_int_equal(mon_pending(q->tm.m), 0);
	tu_reply_clear(&st);
	tu_reply_clear(&ver);
	tu_reply_clear(&nf);
	q_stop(q);
}

/* getfd with a real pipe fd (pipelined between plain commands), then
   closefd works once and fails the second time. */
static void
test_getfd(void **state)
{
	struct q	*q;
	struct tu_reply	a, g, b, c1, c2;
	int		p[2];

	q = q_start();
	q_open(q);
	memset(&a, 0, sizeof a);
	memset(&g, 0, sizeof g);
	memset(&b, 0, sizeof b);
	memset(&c1, 0, sizeof c1);
	memset(&c2, 0, sizeof c2);
	/* non-blocking: a leaked copy of the write end must fail the EOF
	   check below, not hang it */
	assert_int_equal(pipe2(p, O_CLOEXEC|O_NONBLOCK), 0);

	tu_exec(&q->tm, &a, "query-status", NULL, NULL, 0);
	tu_exec(&q->tm, &g, "getfd", json_pack("{s:s}", "fdname", "qbtest"),
	    &p[1], 1);
	close(p[1]);	/* the monitor keeps its own copy until sent */
	tu_exec(&q->tm, &b, "query-status", NULL, NULL, 0);
	WAIT(q, a.ncalls && g.ncalls && b.ncalls);
	assert_int_equal(a.failed, 0);
	if (g.failed)
		fail_msg("getfd: %s: %s", g.err.cls, g.err.desc);
	assert_int_equal(b.failed, 0);
	assert_true(a.order < g.order && g.order < b.order);

	tu_exec(&q->tm, &c1, "closefd", json_pack("{s:s}", "fdname", "qbtest"),
	    NULL, 0);
	WAIT(q, c1.ncalls);
	assert_int_equal(c1.failed, 0);
	tu_exec(&q->tm, &c2, "closefd", json_pack("{s:s}", "fdname", "qbtest"),
	    NULL, 0);
	WAIT(q, c2.ncalls);
	assert_int_equal(c2.failed, 1);
	assert_string_equal(c2.err.cls, "GenericError");
	assert_non_null(strstr(c2.err.desc, "qbtest"));
	/* QEMU closed its copy: our read end now sees EOF */
	{
		char	buf[4];

		assert_int_equal(read(p[0], buf, sizeof buf), 0);
	}
	close(p[0]);
	assert_int_equal(a.ncalls + g.ncalls + b.ncalls + c1.ncalls +
	    c2.ncalls, 5);
	tu_reply_clear(&a);
	tu_reply_clear(&g);
	tu_reply_clear(&b);
	tu_reply_clear(&c1);
	tu_reply_clear(&c2);
	q_stop(q);
}

/* add-fd puts the fd in an fdset; remove-fd takes it out again. */
static void
test_add_fd(void **state)
{
	struct q	*q;
	struct tu_reply	 a, r, again;
	int		 p[2];
	json_int_t	 qfd;

	q = q_start();
	q_open(q);
	memset(&a, 0, sizeof a);
	memset(&r, 0, sizeof r);
	memset(&again, 0, sizeof again);
	assert_int_equal(pipe2(p, O_CLOEXEC|O_NONBLOCK), 0);
	tu_exec(&q->tm, &a, "add-fd", json_pack("{s:i}", "fdset-id", 7),
	    &p[0], 1);
	close(p[0]);
	WAIT(q, a.ncalls);
	if (a.failed)
		fail_msg("add-fd: %s: %s", a.err.cls, a.err.desc);
	assert_int_equal(json_integer_value(json_object_get(a.ret,
	    "fdset-id")), 7);
	assert_true(json_is_integer(json_object_get(a.ret, "fd")));
	qfd = json_integer_value(json_object_get(a.ret, "fd"));
	/* the set really holds the fd QEMU received */
	tu_exec(&q->tm, &again, "query-fdsets", NULL, NULL, 0);
	WAIT(q, again.ncalls);
	assert_int_equal(again.failed, 0);
	{
		json_t	*set, *fd;
		size_t	 i, j;
		int	 found = 0;

		json_array_foreach(again.ret, i, set) {
			if (json_integer_value(json_object_get(set,
			    "fdset-id")) != 7)
				continue;
			json_array_foreach(json_object_get(set, "fds"), j, fd)
				if (json_integer_value(json_object_get(fd,
				    "fd")) == qfd)
					found = 1;
		}
		assert_true(found);
	}
	tu_exec(&q->tm, &r, "remove-fd", json_pack("{s:i, s:I}", "fdset-id", 7,
	    "fd", qfd), NULL, 0);
	WAIT(q, r.ncalls);
	if (r.failed)
		fail_msg("remove-fd: %s: %s", r.err.cls, r.err.desc);
	close(p[1]);
	tu_reply_clear(&a);
	tu_reply_clear(&r);
	tu_reply_clear(&again);
	q_stop(q);
}

static const char *
event_at(struct tu_mon *tm, size_t i)
{
	return (qmp_event_name(json_array_get(tm->events, i)));
}

/* cont and stop reach the event callback as RESUME and STOP, in order. */
static void
test_stop_cont_events(void **state)
{
	struct q	*q;
	struct tu_reply	c, s, st;

	q = q_start();
	q_open(q);
	memset(&c, 0, sizeof c);
	memset(&s, 0, sizeof s);
	memset(&st, 0, sizeof st);
	tu_exec(&q->tm, &c, "cont", NULL, NULL, 0);
	WAIT(q, c.ncalls && json_array_size(q->tm.events) >= 1);
	assert_int_equal(c.failed, 0);
	assert_string_equal(event_at(&q->tm, 0), "RESUME");
	tu_exec(&q->tm, &s, "stop", NULL, NULL, 0);
	WAIT(q, s.ncalls && json_array_size(q->tm.events) >= 2);
	assert_int_equal(s.failed, 0);
	assert_string_equal(event_at(&q->tm, 1), "STOP");
	assert_true(json_is_object(json_object_get(json_array_get(
	    q->tm.events, 1), "timestamp")));
	tu_exec(&q->tm, &st, "query-status", NULL, NULL, 0);
	WAIT(q, st.ncalls);
	assert_string_equal(json_string_value(json_object_get(st.ret,
	    "status")), "paused");
	tu_reply_clear(&c);
	tu_reply_clear(&s);
	tu_reply_clear(&st);
	q_stop(q);
}

/* quit: answered, then QEMU closes the socket and exits; the monitor
   reports disconnected and later commands fail at once. */
static void
test_quit(void **state)
{
	struct q	*q;
	struct tu_reply	r, after;
	int		status;

	q = q_start();
	q_open(q);
	memset(&r, 0, sizeof r);
	memset(&after, 0, sizeof after);
	tu_exec(&q->tm, &r, "quit", NULL, NULL, 0);
	WAIT(q, r.ncalls && mon_state(q->tm.m) == MON_DISCONNECTED);
	assert_int_equal(r.failed, 0);
	assert_int_equal(r.ncalls, 1);
	assert_int_equal(q->tm.count[MON_DISCONNECTED], 1);
	assert_true(tu_last_why(&q->tm, MON_DISCONNECTED)[0] != '\0');
	status = tu_reap(q->pid, TU_DEADLINE_MS);
	q->pid = -1;
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);

	tu_exec(&q->tm, &after, "query-status", NULL, NULL, 0);
	assert_int_equal(after.ncalls, 0);
	WAIT(q, after.ncalls);
	assert_int_equal(after.failed, 1);
	assert_string_equal(after.err.cls, "GenericError");
	assert_non_null(strstr(after.err.desc, "not connected"));
	tu_reply_clear(&r);
	tu_reply_clear(&after);
	q_stop(q);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_negotiate_query, cleanup),
		cmocka_unit_test_teardown(test_getfd, cleanup),
		cmocka_unit_test_teardown(test_add_fd, cleanup),
		cmocka_unit_test_teardown(test_stop_cont_events, cleanup),
		cmocka_unit_test_teardown(test_quit, cleanup),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
