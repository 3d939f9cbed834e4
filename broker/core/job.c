/*
 * The job table. Ids count up from 1 and are never reused in one run.
 */
#include "config.h"

#include <sys/queue.h>
#include <sys/time.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/core/bus.h"
#include "broker/core/conf.h"
#include "broker/core/job.h"
#include "broker/core/proc.h"
#include "broker/core/work.h"

struct job {
	uint64_t		 id;
	const struct job_ops	*ops;
	char			*target;
	void			*data;
	enum job_status		 status;
	bool			 cancel_requested;
	struct timeval		 created, started, finished;
	json_t			*result;
	json_t			*progress;	/* job_progress(), or NULL */
	struct qmp_error	 err;
	struct event		*expire_ev;
	TAILQ_ENTRY(job)	 entry;
};

static TAILQ_HEAD(, job)	 job_all = TAILQ_HEAD_INITIALIZER(job_all);
static uint64_t			 job_next_id = 1;
static struct event_base	*job_evbase;
static bool			 job_stop;

static const char *job_status_names[] = {
	[JOB_CREATED] = "created",
	[JOB_RUNNING] = "running",
	[JOB_CONCLUDED] = "concluded",
	[JOB_FAILED] = "failed",
	[JOB_CANCELLED] = "cancelled",
};

const char *
job_status_name(enum job_status s)
{
	return (job_status_names[s]);
}

static bool
job_ended(const struct job *j)
{
	return (j->status >= JOB_CONCLUDED);
}

int
job_init(struct event_base *base, int workers)
{
	job_evbase = base;
	job_stop = false;
	proc_init(base);
	return (work_init(base, workers));
}

struct event_base *
job_base(void)
{
	return (job_evbase);
}

bool
job_stopping(void)
{
	return (job_stop);
}

static json_t *
job_time_json(const struct timeval *tv)
{
	return (json_pack("{s:I,s:I}", "seconds", (json_int_t)tv->tv_sec,
	    "microseconds", (json_int_t)tv->tv_usec));
}

/* Jobs that entered each status, by kind: a kind is a job_ops, of
   which the broker has a handful; any beyond the table count as one
   "other" row, so the table never grows. */
static struct job_stat	job_st[JOB_STAT_KINDS];
static size_t		job_nst;

static void
job_count(const struct job *j)
{
	size_t	i;

	for (i = 0; i < job_nst; i++)
		if (job_st[i].kind == j->ops->kind)
			break;
	if (i == job_nst) {
		if (job_nst < JOB_STAT_KINDS - 1) {
			job_st[job_nst++].kind = j->ops->kind;
		} else {		/* the last row, for good */
			i = JOB_STAT_KINDS - 1;
			job_st[i].kind = "other";
			job_nst = JOB_STAT_KINDS;
		}
	}
	job_st[i].entered[j->status]++;
}

size_t
job_stats(struct job_stat *out, size_t max)
{
	const struct job	*j;
	size_t			 i, n = job_nst < max ? job_nst : max;

	for (i = 0; i < n; i++) {
		out[i] = job_st[i];
		memset(out[i].now, 0, sizeof out[i].now);
	}
	TAILQ_FOREACH(j, &job_all, entry) {
		for (i = 0; i < n; i++)
			if (out[i].kind == j->ops->kind)
				break;
		if (i == n && n == JOB_STAT_KINDS)
			i = n - 1;
		if (i < n)
			out[i].now[j->status]++;
	}
	return (n);
}

static void
job_publish(struct job *j)
{
	json_t	*data;

	job_count(j);

	data = json_pack("{s:I,s:s,s:s}", "id", (json_int_t)j->id,
	    "kind", j->ops->kind, "status", job_status_name(j->status));
	if (data == NULL)
		return;
	if (j->target != NULL)
		json_object_set_new(data, "target", json_string(j->target));
	if (j->progress != NULL)
		json_object_set(data, "progress", j->progress);
	if (j->result != NULL)
		json_object_set(data, "result", j->result);
	if (j->status == JOB_FAILED)
		json_object_set_new(data, "error", qmp_error_json(&j->err));
	bus_publish(NULL, "JOB_STATUS_CHANGE", data);
}

static void
job_free(struct job *j)
{
	TAILQ_REMOVE(&job_all, j, entry);
	if (j->expire_ev != NULL)
		event_free(j->expire_ev);
	if (j->ops->free != NULL && j->data != NULL)
		j->ops->free(j->data);
	json_decref(j->result);
	json_decref(j->progress);
	free(j->target);
	free(j);
}

static void
job_expire_cb(evutil_socket_t fd, short events, void *arg)
{
	job_free(arg);
}

struct job *
job_new(const struct job_ops *ops, const char *target, void *data,
    struct qmp_error *err)
{
	struct job	*j, *o;

	if (job_stop) {
		qmp_error_set(err, QMP_CLS_GENERIC, "broker is shutting down");
		goto fail;
	}
	if (ops->family != NULL && target != NULL) {
		TAILQ_FOREACH(o, &job_all, entry) {
			if (job_ended(o) || o->ops->family == NULL ||
			    strcmp(o->ops->family, ops->family) != 0 ||
			    o->target == NULL || strcmp(o->target, target) != 0)
				continue;
			qmp_error_set(err, QMP_CLS_GENERIC,
			    "%s '%s' is busy with job %llu (%s)", ops->family,
			    target, (unsigned long long)o->id, o->ops->kind);
			goto fail;
		}
	}
	/* each job holds memory, maybe a worker and a child: a client
	   that starts them in a loop meets a limit, not the OOM killer */
	if (conf.max_jobs > 0) {
		size_t	n = 0;

		TAILQ_FOREACH(o, &job_all, entry)
			if (!job_ended(o))
				n++;
		if (n >= conf.max_jobs) {
			qmp_error_set(err, QMP_CLS_GENERIC, "Too many jobs "
			    "(max-jobs %zu)", conf.max_jobs);
			goto fail;
		}
	}
	if ((j = calloc(1, sizeof *j)) == NULL ||
	    (target != NULL && (j->target = strdup(target)) == NULL)) {
		free(j);
		qmp_error_set(err, QMP_CLS_GENERIC, "out of memory");
		goto fail;
	}
	j->id = job_next_id++;
	j->ops = ops;
	j->data = data;
	j->status = JOB_CREATED;
	gettimeofday(&j->created, NULL);
	TAILQ_INSERT_TAIL(&job_all, j, entry);
	job_publish(j);
	return (j);

fail:
	if (ops->free != NULL && data != NULL)
		ops->free(data);
	return (NULL);
}

void
job_start(struct job *j)
{
	if (j->status != JOB_CREATED)
		return;
	j->status = JOB_RUNNING;
	gettimeofday(&j->started, NULL);
	job_publish(j);
	j->ops->start(j);
}

uint64_t
job_id(const struct job *j)
{
	return (j->id);
}

const char *
job_target(const struct job *j)
{
	return (j->target);
}

void *
job_data(const struct job *j)
{
	return (j->data);
}

enum job_status
job_status(const struct job *j)
{
	return (j->status);
}

bool
job_cancel_requested(const struct job *j)
{
	return (j->cancel_requested);
}

static void
job_end(struct job *j, enum job_status s, json_t *result)
{
	struct timeval	tv;

	if (job_ended(j)) {
		/* A kind bug; keep the first ending, never publish twice. */
		json_decref(result);
		return;
	}
	j->status = s;
	j->result = result;
	gettimeofday(&j->finished, NULL);
	job_publish(j);

	if (!job_stop && conf.job_keep_s > 0 &&
	    (j->expire_ev = evtimer_new(job_evbase, job_expire_cb, j)) != NULL) {
		tv.tv_sec = conf.job_keep_s;
		tv.tv_usec = 0;
		evtimer_add(j->expire_ev, &tv);
	}
}

void
job_progress(struct job *j, json_t *progress)
{
	if (j->status != JOB_RUNNING || progress == NULL) {
		json_decref(progress);
		return;
	}
	if (j->progress != NULL && json_equal(j->progress, progress)) {
		/* no news: subscribers hear of changes only */
		json_decref(progress);
		return;
	}
	json_decref(j->progress);
	j->progress = progress;
	job_publish(j);
}

void
job_conclude(struct job *j, json_t *result)
{
	job_end(j, JOB_CONCLUDED, result);
}

void
job_fail_err(struct job *j, const struct qmp_error *err)
{
	if (job_ended(j))
		return;
	j->err = *err;
	job_end(j, JOB_FAILED, NULL);
}

void
job_fail(struct job *j, const char *cls, const char *fmt, ...)
{
	struct qmp_error	err;
	va_list			ap;

	va_start(ap, fmt);
	qmp_error_vset(&err, cls, fmt, ap);
	va_end(ap);
	job_fail_err(j, &err);
}

void
job_cancelled(struct job *j, json_t *result)
{
	job_end(j, JOB_CANCELLED, result);
}

struct job *
job_find(uint64_t id)
{
	struct job	*j;

	TAILQ_FOREACH(j, &job_all, entry)
		if (j->id == id)
			return (j);
	return (NULL);
}

int
job_cancel(struct job *j, struct qmp_error *err)
{
	if (job_ended(j)) {
		qmp_error_set(err, QMP_CLS_GENERIC, "job %llu has already %s",
		    (unsigned long long)j->id, job_status_name(j->status));
		return (-1);
	}
	if (j->status == JOB_CREATED) {
		/* Nothing has been done yet: nothing to undo. */
		j->cancel_requested = true;
		job_cancelled(j, NULL);
		return (0);
	}
	if (j->ops->cancel == NULL) {
		qmp_error_set(err, QMP_CLS_GENERIC,
		    "job %llu (%s) cannot be cancelled once running",
		    (unsigned long long)j->id, j->ops->kind);
		return (-1);
	}
	if (j->cancel_requested)
		return (0);
	j->cancel_requested = true;
	j->ops->cancel(j);
	return (0);
}

int
job_dismiss(struct job *j, struct qmp_error *err)
{
	if (!job_ended(j)) {
		qmp_error_set(err, QMP_CLS_GENERIC,
		    "job %llu is still %s: cancel it first",
		    (unsigned long long)j->id, job_status_name(j->status));
		return (-1);
	}
	job_free(j);
	return (0);
}

json_t *
job_json(const struct job *j)
{
	json_t	*o;

	o = json_pack("{s:I,s:s,s:s,s:o}", "id", (json_int_t)j->id,
	    "kind", j->ops->kind, "status", job_status_name(j->status),
	    "created", job_time_json(&j->created));
	if (o == NULL)
		return (NULL);
	if (j->target != NULL)
		json_object_set_new(o, "target", json_string(j->target));
	if (j->status != JOB_CREATED)
		json_object_set_new(o, "started", job_time_json(&j->started));
	if (job_ended(j))
		json_object_set_new(o, "finished", job_time_json(&j->finished));
	if (j->cancel_requested)
		json_object_set_new(o, "cancel-requested", json_true());
	if (j->progress != NULL)
		json_object_set(o, "progress", j->progress);
	if (j->result != NULL)
		json_object_set(o, "result", j->result);
	if (j->status == JOB_FAILED)
		json_object_set_new(o, "error", qmp_error_json(&j->err));
	return (o);
}

json_t *
job_list_json(void)
{
	struct job	*j;
	json_t		*a = json_array();

	TAILQ_FOREACH(j, &job_all, entry)
		json_array_append_new(a, job_json(j));
	return (a);
}

size_t
job_count_active(void)
{
	struct job	*j;
	size_t		 n = 0;

	TAILQ_FOREACH(j, &job_all, entry)
		if (!job_ended(j))
			n++;
	return (n);
}

void
job_shutdown(void)
{
	struct job	*j;

	job_stop = true;
	TAILQ_FOREACH(j, &job_all, entry) {
		if (j->status == JOB_CREATED)
			job_fail(j, QMP_CLS_GENERIC, "broker shutting down");
		else if (!job_ended(j) && !j->cancel_requested &&
		    j->ops->cancel != NULL) {
			j->cancel_requested = true;
			j->ops->cancel(j);
		}
	}
	/* Children and workers finish; their completions end most jobs. */
	proc_shutdown();
	work_shutdown();
	TAILQ_FOREACH(j, &job_all, entry)
		if (!job_ended(j))
			job_fail(j, QMP_CLS_GENERIC,
			    "broker shutting down before the job finished");
	while ((j = TAILQ_FIRST(&job_all)) != NULL)
		job_free(j);
	job_next_id = 1;
}
