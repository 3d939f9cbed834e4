/*
 * Jobs: work the loop cannot do inline (libvirt calls, child processes),
 * visible to clients through query-jobs and JOB_STATUS_CHANGE events.
 *
 * created -> running -> concluded | failed | cancelled, each change
 * published once. A job ends exactly once; a kind ends it with
 * job_conclude(), job_fail() or job_cancelled() from its own callbacks.
 * Cancel is a request: the kind stops its work (waits for the libvirt call
 * to return or the child to be reaped), undoes what it did or says what it
 * left in the result, and only then calls job_cancelled(). Finished jobs
 * are kept until dismissed or conf.job_keep_s seconds.
 */
#ifndef BROKER_CORE_JOB_H
#define BROKER_CORE_JOB_H

#include <stdbool.h>
#include <stdint.h>
#include <event2/event.h>
#include <jansson.h>

#include "proto/qmp_msg.h"

enum job_status {
	JOB_CREATED,
	JOB_RUNNING,
	JOB_CONCLUDED,
	JOB_FAILED,
	JOB_CANCELLED,
};
const char	*job_status_name(enum job_status);

struct job;

struct job_ops {
	const char	*kind;		/* "domain-start", "image-attach", ... */
	/* Jobs of one family on one target exclude each other
	   ("domain": one lifecycle job per domain). NULL: no exclusion. */
	const char	*family;
	void		(*start)(struct job *);
	/* May be NULL: then cancel is refused once running. Called at most
	   once; the job must still end through one of the calls below. */
	void		(*cancel)(struct job *);
	void		(*free)(void *data);
};

int		 job_init(struct event_base *, int workers);
/* Broker shutdown: asks every running job to cancel, kills and reaps the
   children, waits for the workers; any job still not ended then fails
   ("broker shutting down"). Frees every job. */
void		 job_shutdown(void);
bool		 job_stopping(void);
struct event_base *job_base(void);

/* A new job in state created, or NULL with err set (busy target, no
   memory, shutting down). target may be NULL. data is owned by the job
   (ops->free) from here on, even on failure. */
struct job	*job_new(const struct job_ops *, const char *target, void *data,
		    struct qmp_error *err);
/* created -> running; calls ops->start. */
void		 job_start(struct job *);

uint64_t	 job_id(const struct job *);
const char	*job_target(const struct job *);
void		*job_data(const struct job *);
enum job_status	 job_status(const struct job *);
bool		 job_cancel_requested(const struct job *);

/* A running job's progress (stolen; ignored unless running): kept for
   query-jobs ("progress", also after the job ends) and published as a
   JOB_STATUS_CHANGE whose status is unchanged, when it differs from the
   last one. */
void		 job_progress(struct job *, json_t *progress);

/* Ending; result is stolen (NULL means none). */
void		 job_conclude(struct job *, json_t *result);
void		 job_fail(struct job *, const char *cls, const char *fmt, ...)
		    __attribute__((format(printf, 3, 4)));
void		 job_fail_err(struct job *, const struct qmp_error *);
/* result may say what was left behind ("undone": ..., "left": ...). */
void		 job_cancelled(struct job *, json_t *result);

struct job	*job_find(uint64_t id);
/* Request cancellation. -1 with err if unknown, finished or not
   cancellable. */
int		 job_cancel(struct job *, struct qmp_error *err);
/* Forget a finished job. -1 with err if it has not ended. */
int		 job_dismiss(struct job *, struct qmp_error *err);
json_t		*job_json(const struct job *);
/* All jobs, oldest first. */
json_t		*job_list_json(void);
size_t		 job_count_active(void);

/* Per kind: how many jobs entered each status since start, and how many
   are in it now (finished ones until dismissed or expired). Kinds past
   JOB_STAT_KINDS - 1 share one row, "other". */
#define JOB_STAT_KINDS	16
#define JOB_NSTATUS	5
struct job_stat {
	const char	*kind;		/* static */
	uint64_t	 entered[JOB_NSTATUS];
	uint64_t	 now[JOB_NSTATUS];
};
/* Fills out (max rows); returns the rows filled. */
size_t		 job_stats(struct job_stat *out, size_t max);

#endif
