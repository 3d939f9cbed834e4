/*
 * The job runner: worker pool, child processes, the job table.
 * Runs on a real libevent loop with real threads and real children.
 */
#include "config.h"

#include <sys/file.h>
#include <sys/types.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "broker/core/bus.h"
#include "broker/core/conf.h"
#include "broker/core/job.h"
#include "broker/core/proc.h"
#include "broker/core/work.h"

/* ---- captured events: the publish bus's sink ---- */
static json_t	*events;

static bool
capture_active(void *arg)
{
	return (true);
}

/* The event's text as a subscriber would get it, parsed back. */
static void
capture_deliver(const struct evlog_rec *rec, void *arg)
{
	json_t	*j = json_loadb(rec->json, rec->len, 0, NULL);

	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "event")),
	    rec->event);
	json_array_append_new(events, json_pack("{s:s,s:O}", "event",
	    rec->event, "data", json_object_get(j, "data")));
	json_decref(j);
}

static const struct bus_sink capture_sink = {
	capture_active, capture_deliver
};

/* How many JOB_STATUS_CHANGE events job id had, and the last status. */
static int
events_for(uint64_t id, const char **last)
{
	size_t	 i;
	json_t	*e;
	int	 n = 0;

	json_array_foreach(events, i, e) {
		json_t *d = json_object_get(e, "data");
		if ((uint64_t)json_integer_value(json_object_get(d, "id")) != id)
			continue;
		n++;
		if (last != NULL)
			*last = json_string_value(json_object_get(d, "status"));
	}
	return (n);
}

/* ---- loop helpers ---- */
static struct pjob	*pjobs[64];
static int		 npjobs;
static struct event_base *base;
static int	fds_before;

static int
count_fds(void)
{
	DIR		*d = opendir("/proc/self/fd");
	struct dirent	*de;
	int		 n = 0;

	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return (n);
}

/* Runs the loop until cond holds; the 30s guard only catches deadlocks. */
static void
run_until(int (*cond)(void *), void *arg)
{
	struct timeval	tv = { 0, 20000 };
	int		i;

	for (i = 0; i < 1500 && !cond(arg); i++)
		event_base_loopexit(base, &tv), event_base_dispatch(base);
	assert_true(cond(arg));
}

static int
job_ended_cond(void *arg)
{
	struct job *j = job_find(*(uint64_t *)arg);
	return (j == NULL || job_status(j) >= JOB_CONCLUDED);
}

static void
wait_job(uint64_t id)
{
	run_until(job_ended_cond, &id);
}

static int
setup(void **state)
{
	fds_before = count_fds();
	events = json_array();
	bus_plug(&capture_sink, NULL);
	base = event_base_new();
	conf.job_keep_s = 600;
	assert_int_equal(job_init(base, 2), 0);
	return (0);
}

static int
teardown(void **state)
{
	job_shutdown();
	assert_int_equal(work_threads(), 0);
	assert_int_equal(proc_count(), 0);
	event_base_free(base);
	json_decref(events);
	while (npjobs > 0)
		free(pjobs[--npjobs]);
	assert_int_equal(count_fds(), fds_before);
	return (0);
}

/* ---- a worker job: fn runs ms milliseconds, or until released ---- */
struct wjob {
	struct job	*job;
	struct work	*w;
	int		 ms;
	bool		 fail;
	bool		 block;		/* wait for gate */
	atomic_int	 ran;
};

static pthread_mutex_t	gate_mtx = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t	gate_cond = PTHREAD_COND_INITIALIZER;
static bool		gate_open;
static atomic_int	blocked;

static void
gate_set(bool open)
{
	pthread_mutex_lock(&gate_mtx);
	gate_open = open;
	pthread_cond_broadcast(&gate_cond);
	pthread_mutex_unlock(&gate_mtx);
}

static void
wjob_fn(void *arg)
{
	struct wjob	*w = arg;

	atomic_fetch_add(&w->ran, 1);
	if (w->block) {
		atomic_fetch_add(&blocked, 1);
		pthread_mutex_lock(&gate_mtx);
		while (!gate_open)
			pthread_cond_wait(&gate_cond, &gate_mtx);
		pthread_mutex_unlock(&gate_mtx);
		atomic_fetch_sub(&blocked, 1);
	} else if (w->ms > 0)
		usleep(w->ms * 1000);
}

static void
wjob_done(void *arg, bool ran)
{
	struct wjob	*w = arg;

	w->w = NULL;
	if (!ran)
		job_fail(w->job, QMP_CLS_GENERIC, "not run: shutting down");
	else if (job_cancel_requested(w->job))
		job_cancelled(w->job, json_pack("{s:b}", "undone", 1));
	else if (w->fail)
		job_fail(w->job, QMP_CLS_GENERIC, "worker says no");
	else
		job_conclude(w->job, json_pack("{s:i}", "ms", w->ms));
}

static void
wjob_start(struct job *j)
{
	struct wjob	*w = job_data(j);

	w->job = j;
	if ((w->w = work_submit(wjob_fn, wjob_done, w)) == NULL)
		job_fail(j, QMP_CLS_GENERIC, "cannot submit");
}

static void
wjob_cancel(struct job *j)
{
	struct wjob	*w = job_data(j);

	/* Not started: nothing done, cancelled now. Otherwise done says. */
	if (w->w != NULL && work_cancel(w->w)) {
		w->w = NULL;
		job_cancelled(j, NULL);
	}
}

static const struct job_ops wjob_ops = {
	"t-work", "t", wjob_start, wjob_cancel, free
};

static struct job *
wjob_new(int ms, bool fail, bool block, const char *target)
{
	struct qmp_error	 err;
	struct wjob		*w = calloc(1, sizeof *w);
	struct job		*j;

	w->ms = ms;
	w->fail = fail;
	w->block = block;
	j = job_new(&wjob_ops, target, w, &err);
	assert_non_null(j);
	return (j);
}

/* ---- a child job ---- */
struct pjob {
	struct job		*job;
	struct proc		*p;
	char			**argv;
	int			 timeout;
	struct proc_result	 r;
	pid_t			 pid;
};

static void
pjob_done(struct proc *p, const struct proc_result *r, void *arg)
{
	struct pjob	*pj = arg;
	char		 why[256];

	pj->p = NULL;
	pj->r = *r;
	pj->r.out = NULL;
	pj->r.err = NULL;
	if (job_cancel_requested(pj->job)) {
		job_cancelled(pj->job, NULL);
		return;
	}
	if (r->exited && r->code == 0) {
		job_conclude(pj->job, json_pack("{s:s%}", "out", r->out,
		    r->outlen));
		return;
	}
	proc_describe(r, why, sizeof why);
	job_fail(pj->job, QMP_CLS_GENERIC, "%s", why);
}

static void
pjob_start(struct job *j)
{
	struct pjob		*pj = job_data(j);
	struct qmp_error	 err;

	pj->job = j;
	pj->p = proc_spawn(pj->argv, pj->timeout, pjob_done, pj, &err);
	if (pj->p == NULL)
		job_fail_err(j, &err);
	else
		pj->pid = proc_pid(pj->p);
}

static void
pjob_cancel(struct job *j)
{
	struct pjob	*pj = job_data(j);

	if (pj->p != NULL)
		proc_kill(pj->p);
}

static const struct job_ops pjob_ops = {
	"t-proc", NULL, pjob_start, pjob_cancel, NULL
};
/* Like a detach: runs to its end, cannot be cancelled. */
static const struct job_ops pjob_nocancel_ops = {
	"t-proc-nocancel", NULL, pjob_start, NULL, NULL
};
static const struct job_ops *pjob_next_ops = &pjob_ops;

static struct pjob *
pjob_run(int timeout, ...)
{
	static char		*argvs[16][8];
	static int		 slot;
	struct qmp_error	 err;
	struct pjob		*pj = calloc(1, sizeof *pj);
	struct job		*j;
	va_list			 ap;
	int			 i = 0;
	char			**argv = argvs[slot++ % 16];

	va_start(ap, timeout);
	while ((argv[i] = va_arg(ap, char *)) != NULL)
		i++;
	va_end(ap);
	pj->argv = argv;
	pj->timeout = timeout;
	pjobs[npjobs++] = pj;
	j = job_new(pjob_next_ops, NULL, pj, &err);
	pjob_next_ops = &pjob_ops;
	assert_non_null(j);
	job_start(j);
	return (pj);
}

/* ---- tests ---- */

static void
test_many_jobs(void **state)
{
	uint64_t	ids[200];
	const char	*last;
	int		i;

	for (i = 0; i < 200; i++) {
		struct job *j = wjob_new(i % 3, i % 7 == 0, false, NULL);
		ids[i] = job_id(j);
		job_start(j);
	}
	for (i = 0; i < 200; i++)
		wait_job(ids[i]);
	for (i = 0; i < 200; i++) {
		struct job *j = job_find(ids[i]);
		assert_non_null(j);
		assert_int_equal(job_status(j),
		    i % 7 == 0 ? JOB_FAILED : JOB_CONCLUDED);
		/* created, running, end: each exactly once */
		assert_int_equal(events_for(ids[i], &last), 3);
		assert_string_equal(last, i % 7 == 0 ? "failed" : "concluded");
	}
	{
		json_t *l = job_list_json();
		assert_int_equal(json_array_size(l), 200);
		json_decref(l);
	}
	assert_int_equal(job_count_active(), 0);
}

static void
test_failing_worker(void **state)
{
	struct job	*j = wjob_new(0, true, false, NULL);
	uint64_t	 id = job_id(j);
	json_t		*o;

	job_start(j);
	wait_job(id);
	o = job_json(job_find(id));
	assert_string_equal(json_string_value(json_object_get(o, "status")),
	    "failed");
	assert_string_equal(json_string_value(json_object_get(
	    json_object_get(o, "error"), "desc")), "worker says no");
	assert_non_null(json_object_get(o, "finished"));
	json_decref(o);
}

static void
test_cancel_created(void **state)
{
	struct qmp_error	 err;
	struct job		*j = wjob_new(0, false, false, NULL);
	struct wjob		*w = job_data(j);

	assert_int_equal(job_cancel(j, &err), 0);
	assert_int_equal(job_status(j), JOB_CANCELLED);
	job_start(j);	/* too late: stays cancelled, never runs */
	assert_int_equal(job_status(j), JOB_CANCELLED);
	assert_int_equal(atomic_load(&w->ran), 0);
	assert_int_equal(job_cancel(j, &err), -1);
	assert_non_null(strstr(err.desc, "already cancelled"));
}

static int
blocked_cond(void *arg)
{
	return (atomic_load(&blocked) == *(int *)arg);
}

static void
test_cancel_queued_and_running(void **state)
{
	struct qmp_error	 err;
	struct job		*run[2], *queued;
	struct wjob		*qw;
	uint64_t		 id0, id1;
	int			 two = 2, i;

	gate_set(false);
	/* Two workers, both held; the third item waits in the queue. */
	for (i = 0; i < 2; i++) {
		run[i] = wjob_new(0, false, true, NULL);
		job_start(run[i]);
	}
	queued = wjob_new(0, false, false, NULL);
	qw = job_data(queued);
	job_start(queued);
	run_until(blocked_cond, &two);

	assert_int_equal(job_cancel(queued, &err), 0);
	assert_int_equal(job_status(queued), JOB_CANCELLED);

	/* Running work cannot be taken back: honest "running" until the
	   worker returns, then cancelled. */
	id0 = job_id(run[0]);
	id1 = job_id(run[1]);
	assert_int_equal(job_cancel(run[0], &err), 0);
	assert_int_equal(job_status(run[0]), JOB_RUNNING);
	assert_int_equal(job_dismiss(run[0], &err), -1);
	gate_set(true);
	wait_job(id0);
	wait_job(id1);
	assert_int_equal(job_status(job_find(id0)), JOB_CANCELLED);
	assert_int_equal(job_status(job_find(id1)), JOB_CONCLUDED);
	assert_int_equal(atomic_load(&qw->ran), 0);
	assert_int_equal(job_dismiss(job_find(id0), &err), 0);
	assert_null(job_find(id0));
}

static void
test_lost_wakeup(void **state)
{
	struct job	*j = wjob_new(0, false, false, NULL);
	uint64_t	 id = job_id(j);

	work_test_fail_notify(1);
	job_start(j);
	wait_job(id);	/* found by the sweep, not the eventfd */
	assert_int_equal(job_status(job_find(id)), JOB_CONCLUDED);
}

static void
test_family_exclusion(void **state)
{
	struct qmp_error	 err;
	struct job		*a, *b;
	uint64_t		 ida;

	a = wjob_new(50, false, false, "dom1");
	ida = job_id(a);
	assert_null(job_new(&wjob_ops, "dom1", calloc(1, sizeof(struct wjob)),
	    &err));
	assert_non_null(strstr(err.desc, "busy"));
	b = wjob_new(0, false, false, "dom2");	/* another target is fine */
	job_start(a);
	job_start(b);
	wait_job(ida);
	wait_job(job_id(b));
	b = wjob_new(0, false, false, "dom1");	/* free again */
	job_start(b);
	wait_job(job_id(b));
}

/* job_progress: published (status unchanged) only when it changes,
   shown by query-jobs, kept after the end, ignored unless running. */
static void
test_progress(void **state)
{
	struct job	*a;
	const char	*last = NULL;
	json_t		*o;
	uint64_t	 id;

	a = wjob_new(100, false, false, "p1");
	id = job_id(a);
	job_progress(a, json_pack("{s:i}", "pass", 1));	/* created */
	assert_int_equal(events_for(id, NULL), 1);
	job_start(a);
	assert_int_equal(events_for(id, NULL), 2);
	job_progress(a, json_pack("{s:i}", "pass", 1));
	job_progress(a, json_pack("{s:i}", "pass", 1));	/* no news */
	job_progress(a, json_pack("{s:i}", "pass", 2));
	assert_int_equal(events_for(id, &last), 4);
	assert_string_equal(last, "running");
	o = job_json(a);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(o,
	    "progress"), "pass")), 2);
	json_decref(o);
	wait_job(id);
	job_progress(a, json_pack("{s:i}", "pass", 3));	/* ended */
	assert_int_equal(events_for(id, &last), 5);
	assert_string_equal(last, "concluded");
	o = job_json(a);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(o,
	    "progress"), "pass")), 2);
	json_decref(o);
}

/* max-jobs: unfinished jobs past the limit are refused with a reason;
   finished ones do not count. */
static void
test_max_jobs(void **state)
{
	struct qmp_error	 err;
	struct job		*a, *b;

	conf.max_jobs = 2;
	a = wjob_new(0, false, false, NULL);
	b = wjob_new(0, false, false, NULL);
	assert_null(job_new(&wjob_ops, NULL, calloc(1, sizeof(struct wjob)),
	    &err));
	assert_non_null(strstr(err.desc, "Too many jobs"));
	job_start(a);
	wait_job(job_id(a));
	a = wjob_new(0, false, false, NULL);	/* a slot is free again */
	job_start(a);
	job_start(b);
	wait_job(job_id(a));
	wait_job(job_id(b));
	conf.max_jobs = 0;
}

static int
gone_cond(void *arg)
{
	return (job_find(*(uint64_t *)arg) == NULL);
}

static void
test_retention(void **state)
{
	struct job	*j;
	uint64_t	 id;

	conf.job_keep_s = 1;
	j = wjob_new(0, false, false, NULL);
	id = job_id(j);
	job_start(j);
	wait_job(id);
	assert_non_null(job_find(id));
	run_until(gone_cond, &id);
}

static int
pjob_done_cond(void *arg)
{
	struct pjob *pj = arg;
	return (job_status(pj->job) >= JOB_CONCLUDED);
}

static void
test_child_output(void **state)
{
	struct pjob	*pj;
	json_t		*o;

	pj = pjob_run(10000, "/bin/sh", "-c", "echo hello; echo oops >&2", NULL);
	run_until(pjob_done_cond, pj);
	assert_int_equal(job_status(pj->job), JOB_CONCLUDED);
	o = job_json(pj->job);
	assert_string_equal(json_string_value(json_object_get(json_object_get(o,
	    "result"), "out")), "hello\n");
	json_decref(o);

	/* Output beyond the bound is dropped, the child is not blocked. */
	pj = pjob_run(10000, "/bin/sh", "-c",
	    "head -c 200000 /dev/zero | tr '\\0' x", NULL);
	run_until(pjob_done_cond, pj);
	assert_int_equal(job_status(pj->job), JOB_CONCLUDED);
	o = job_json(pj->job);
	assert_int_equal(strlen(json_string_value(json_object_get(
	    json_object_get(o, "result"), "out"))), PROC_OUT_MAX);
	json_decref(o);

	/* A failing child's stderr becomes the error. */
	pj = pjob_run(10000, "/bin/sh", "-c", "echo 'no such thing' >&2; exit 3",
	    NULL);
	run_until(pjob_done_cond, pj);
	assert_int_equal(job_status(pj->job), JOB_FAILED);
	assert_int_equal(pj->r.code, 3);
	o = job_json(pj->job);
	assert_string_equal(json_string_value(json_object_get(json_object_get(o,
	    "error"), "desc")), "no such thing");
	json_decref(o);

	/* A program that does not exist fails the job at once. */
	pj = pjob_run(1000, "/nonexistent/tool", NULL);
	assert_int_equal(job_status(pj->job), JOB_FAILED);
}

static void
test_child_no_fds_inherited(void **state)
{
	struct pjob	*pj;
	json_t		*o;

	/* The child sees only 0, 1, 2 (and ls's own directory fd). */
	pj = pjob_run(10000, "/bin/sh", "-c", "ls /proc/self/fd | wc -l", NULL);
	run_until(pjob_done_cond, pj);
	o = job_json(pj->job);
	assert_int_equal(atoi(json_string_value(json_object_get(json_object_get(
	    o, "result"), "out"))), 4);
	json_decref(o);
}

struct lockrun {
	bool	 done;
	char	 out[64];
};

static void
lockrun_done(struct proc *p, const struct proc_result *r, void *arg)
{
	struct lockrun	*lr = arg;

	snprintf(lr->out, sizeof lr->out, "%s", r->out);
	lr->done = true;
}

static int
lockrun_cond(void *arg)
{
	return (((struct lockrun *)arg)->done);
}

static bool
flock_busy(const char *path)
{
	int	fd = open(path, O_RDONLY | O_CLOEXEC);
	bool	busy;

	assert_true(fd != -1);
	busy = flock(fd, LOCK_EX | LOCK_NB) == -1 && errno == EWOULDBLOCK;
	close(fd);
	return (busy);
}

/* proc_spawn_fd: the fd is the child's fd 3 (and no other is added), so
   a flock on it stays held while the child runs, after ours is closed,
   and goes with the child. */
static void
test_child_lock_fd(void **state)
{
	char			 path[] = "/tmp/qb-test-lock-XXXXXX";
	char			*argv[] = { "/bin/sh", "-c",
				    "ls /proc/self/fd | wc -l; sleep 0.5", NULL };
	struct lockrun		 lr = { false, "" };
	struct qmp_error	 err;
	struct proc		*p;
	int			 fd;

	assert_true((fd = mkstemp(path)) != -1);
	assert_int_equal(fcntl(fd, F_SETFD, FD_CLOEXEC), 0);
	assert_int_equal(flock(fd, LOCK_EX | LOCK_NB), 0);
	p = proc_spawn_fd(argv, fd, 10000, lockrun_done, &lr, &err);
	assert_non_null(p);
	close(fd);
	assert_true(flock_busy(path));
	run_until(lockrun_cond, &lr);
	/* 0, 1, 2, the lock, ls's own directory fd */
	assert_int_equal(atoi(lr.out), 5);
	assert_false(flock_busy(path));
	unlink(path);
}

static int
group_gone_cond(void *arg)
{
	return (kill(-*(pid_t *)arg, 0) == -1 && errno == ESRCH);
}

static void
test_child_deadline(void **state)
{
	struct pjob	*pj;

	pj = pjob_run(200, "/bin/sleep", "30", NULL);
	run_until(pjob_done_cond, pj);
	assert_int_equal(job_status(pj->job), JOB_FAILED);
	assert_true(pj->r.timed_out);
	assert_int_equal(pj->r.sig, SIGTERM);
	assert_int_equal(kill(pj->pid, 0), -1);
	assert_int_equal(errno, ESRCH);

	/* One that ignores TERM gets KILL after the grace period. */
	pj = pjob_run(200, "/bin/sh", "-c", "trap '' TERM; sleep 30; sleep 1",
	    NULL);
	run_until(pjob_done_cond, pj);
	assert_true(pj->r.timed_out);
	assert_int_equal(pj->r.sig, SIGKILL);
	assert_int_equal(kill(pj->pid, 0), -1);
	/* The group went too: no sleep left behind (its zombie may take a
	   moment to be reaped by init). */
	run_until(group_gone_cond, &pj->pid);
}

static void
test_child_signal(void **state)
{
	struct pjob	*pj;
	json_t		*o;

	pj = pjob_run(10000, "/bin/sh", "-c", "kill -SEGV $$", NULL);
	run_until(pjob_done_cond, pj);
	assert_int_equal(job_status(pj->job), JOB_FAILED);
	assert_false(pj->r.exited);
	assert_false(pj->r.killed);
	assert_int_equal(pj->r.sig, SIGSEGV);
	o = job_json(pj->job);
	assert_non_null(strstr(json_string_value(json_object_get(
	    json_object_get(o, "error"), "desc")), "signal 11"));
	json_decref(o);
}

static void
test_cancel_child(void **state)
{
	struct qmp_error	 err;
	struct pjob		*pj;

	pj = pjob_run(0, "/bin/sleep", "30", NULL);
	assert_int_equal(job_cancel(pj->job, &err), 0);
	/* Not cancelled until reaped. */
	assert_int_equal(job_status(pj->job), JOB_RUNNING);
	assert_int_equal(kill(pj->pid, 0), 0);
	run_until(pjob_done_cond, pj);
	assert_int_equal(job_status(pj->job), JOB_CANCELLED);
	assert_int_equal(kill(pj->pid, 0), -1);
}

static void
test_shutdown_in_flight(void **state)
{
	struct job	*w[6];
	struct pjob	*pj[3];
	uint64_t	 ids[9];
	int		 i, two = 2;
	json_t		*l;

	gate_set(false);
	for (i = 0; i < 6; i++) {
		w[i] = wjob_new(0, false, i < 2, NULL);
		ids[i] = job_id(w[i]);
		if (i < 5)
			job_start(w[i]);	/* the sixth stays created */
	}
	for (i = 0; i < 3; i++) {
		pj[i] = pjob_run(0, "/bin/sh", "-c",
		    i == 0 ? "trap '' TERM; sleep 30; sleep 1" : "sleep 30",
		    NULL);
		ids[6 + i] = job_id(pj[i]->job);
	}
	run_until(blocked_cond, &two);
	/* Release the held workers from another thread a little later, as
	   a slow libvirt call would return. */
	gate_set(true);

	/* Capture states as events: the jobs are freed by shutdown. */
	job_shutdown();
	assert_int_equal(work_threads(), 0);
	assert_int_equal(proc_count(), 0);
	for (i = 0; i < 9; i++) {
		const char *last = NULL;
		events_for(ids[i], &last);
		assert_non_null(last);
		assert_true(strcmp(last, "failed") == 0 ||
		    strcmp(last, "cancelled") == 0);
	}
	for (i = 0; i < 3; i++)
		assert_int_equal(kill(pj[i]->pid, 0), -1);
	l = job_list_json();
	assert_int_equal(json_array_size(l), 0);
	json_decref(l);
	/* teardown's shutdown is a no-op now; start again for it. */
	assert_int_equal(job_init(base, 2), 0);
}

static void
test_shutdown_lets_unasked_finish(void **state)
{
	struct pjob	*pj, *hung;
	uint64_t	 id, hid;
	const char	*last = NULL;

	/* A job that cannot be cancelled finishes its short child; a
	   cancellable one hanging is stopped. */
	pjob_next_ops = &pjob_nocancel_ops;
	pj = pjob_run(0, "/bin/sh", "-c", "sleep 0.3; echo done", NULL);
	hung = pjob_run(0, "/bin/sleep", "30", NULL);
	id = job_id(pj->job);
	hid = job_id(hung->job);
	job_shutdown();
	events_for(id, &last);
	assert_string_equal(last, "concluded");
	events_for(hid, &last);
	assert_string_equal(last, "cancelled");
	assert_int_equal(proc_count(), 0);
	assert_int_equal(job_init(base, 2), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_many_jobs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failing_worker, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel_created, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel_queued_and_running, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lost_wakeup, setup, teardown),
		cmocka_unit_test_setup_teardown(test_family_exclusion, setup, teardown),
		cmocka_unit_test_setup_teardown(test_progress, setup, teardown),
		cmocka_unit_test_setup_teardown(test_retention, setup, teardown),
		cmocka_unit_test_setup_teardown(test_child_output, setup, teardown),
		cmocka_unit_test_setup_teardown(test_child_no_fds_inherited, setup, teardown),
		cmocka_unit_test_setup_teardown(test_child_lock_fd, setup, teardown),
		cmocka_unit_test_setup_teardown(test_child_deadline, setup, teardown),
		cmocka_unit_test_setup_teardown(test_child_signal, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel_child, setup, teardown),
		cmocka_unit_test_setup_teardown(test_shutdown_in_flight, setup, teardown),
		cmocka_unit_test_setup_teardown(test_max_jobs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_shutdown_lets_unasked_finish, setup, teardown),
	};

	signal(SIGPIPE, SIG_IGN);
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
