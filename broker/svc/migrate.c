/*
 * vm-migrate jobs: QEMU's live migration driven over the VMs' endpoints.
 *
 * A job walks a fixed list of steps, one QMP command each; steps that
 * need nothing from each other go out together as a gang (mig_gang_add)
 * and are judged in step order:
 *
 *   the ends' states: query-status on the destination (must be
 *	inmigrate, i.e. started with -incoming defer) and on the source,
 *	query-migrate on the source (no migration of its own running);
 *   then migrate-set-capabilities on both ends (events, postcopy-ram,
 *	the client's) and migrate-set-parameters (bandwidth, downtime) on
 *	the source;
 *   then migrate-incoming on the destination (to a VM), migrate;
 *   then it watches: MIGRATION/MIGRATION_PASS events and a query-migrate
 *	poll, until QEMU says completed, failed or cancelled; then
 *	query-status and a last query-migrate (the totals, QEMU's error)
 *	on the source, together, the destination's state (its RESUME, or
 *	query-status), and quit on the source if asked.
 *
 * Nothing before migrate changes what a guest runs: a failing check
 * leaves both ends as they were, except that a destination whose
 * migrate-incoming was accepted keeps listening (QEMU has no way to stop
 * it; the result says so).
 *
 * Lifetime: the job owns the struct (job data); replies still out when
 * the job is freed hold it (inflight) and free it when the last one is
 * in. A VM removed mid-job drops the job's hold on it first (observer).
 */
#include "config.h"

#include <sys/queue.h>
#include <sys/un.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker/core/conf.h"
#include "broker/core/job.h"
#include "broker/core/journal.h"
#include "broker/core/log.h"
#include "broker/core/loop.h"
#include "broker/svc/hotplug.h"
#include "broker/svc/migrate.h"
#include "broker/vm/vm.h"

#define MIG_POLL_MS	250
/* finish-migrate -> postmigrate, inmigrate -> running: a few ms after
   QEMU says completed, and the job's end waits for them (tools/bench
   scenario 8 counts it), so ask often, for at most 5 s */
#define MIG_SETTLE_MS	5
#define MIG_SETTLE_MAX	1000
#define MIG_URI_MAX	1024
#define MIG_CAPS_MAX	32
#define MIG_GANG_MAX	3

enum mig_phase {
	P_RECON_WAIT,	/* from the journal: its VMs to be ready */
	P_RECON_SRC,	/* query-migrate on both ends */
	P_RECON_DST,
	P_DST_STATUS,
	P_SRC_STATUS,
	P_SRC_QUERY,
	P_DST_CAPS,
	P_DST_INCOMING,
	P_SRC_CAPS,
	P_SRC_PARAMS,
	P_MIGRATE,
	P_RUN,		/* watching */
	P_SRC_FINAL,	/* QEMU said it is over: the source's state */
	P_END_QUERY,	/* the totals */
	P_DST_FINAL,
	P_QUIT,
	P_DONE,
};

/* One command of a gang (mig_gang_add): its step and QEMU's answer. */
struct mig_part {
	struct mig		*m;
	enum mig_phase		 phase;
	json_t			*ret;		/* held until judged */
	bool			 failed;
	struct qmp_error	 err;
};

struct mig {
	struct job		*job;		/* NULL once the job freed us */
	char			*src, *dst, *uri;
	struct vm		*srcvm, *dstvm;	/* NULL once removed */
	struct vm_listener	*listener;	/* the source's events */
	struct vm_listener	*dlistener;	/* the destination's */
	bool			 dst_runs;	/* it said RESUME */
	bool			 postcopy, quit_source, own_sock;
	long long		 bandwidth, downtime_ms;
	json_t			*caps;		/* what both ends get */

	enum mig_phase		 phase;
	int			 inflight;	/* replies still out */
	struct mig_part		 gang[MIG_GANG_MAX];
	int			 ngang;		/* commands in the gang */
	int			 gang_left;	/* their replies still out */
	enum mig_phase		 gang_next;	/* the step after the gang */
	bool			 polling;	/* a poll's reply is out */
	bool			 cancel_sent, postcopy_started, incoming;
	int			 settle;	/* query-status retries */
	int			 dst_settle;	/* the same, destination */
	char			 qstatus[32];	/* QEMU's last word */
	char			*dst_lost;	/* why the destination went */
	json_t			*prog;		/* the job's progress */
	json_t			*final;		/* last query-migrate */
	json_t			*result;
	struct event		*poll_ev;
	/* a vm-migrate-recover in flight: the client's answer */
	vmq_reply_fn		*rfn;
	void			*rarg;
	char			*ruri;
	int			 recovered;	/* recoveries done */
	/* the journal (area "migrate", group the source, id "job") */
	const char		*jstep;		/* last step written, or NULL */
	json_t			*recon;		/* from a broker that died */
	json_t			*recon_src;	/* its source's query-migrate */
	const char		*recon_action;
	bool			 active;	/* in mig_all */
	LIST_ENTRY(mig)		 entry;
};

static LIST_HEAD(, mig)	mig_all = LIST_HEAD_INITIALIZER(mig_all);
static bool		mig_observing;

static void	mig_start(struct job *);
static void	mig_cancel(struct job *);
static void	mig_release(void *);
static void	mig_next(struct mig *);

static const struct job_ops mig_ops = {
	"vm-migrate", "vm-migrate", mig_start, mig_cancel, mig_release,
};

static bool
mig_terminal(const char *st)
{
	return (strcmp(st, "completed") == 0 || strcmp(st, "failed") == 0 ||
	    strcmp(st, "cancelled") == 0);
}

static void
mig_free(struct mig *m)
{
	int	i;

	for (i = 0; i < m->ngang; i++)
		json_decref(m->gang[i].ret);
	json_decref(m->caps);
	json_decref(m->prog);
	json_decref(m->final);
	json_decref(m->result);
	json_decref(m->recon);
	json_decref(m->recon_src);
	free(m->src);
	free(m->dst);
	free(m->uri);
	free(m->dst_lost);
	free(m->ruri);
	free(m);
}

/* ---- the journal ---- */

/* Records that step is about to be taken (NULL: the job is over).
   -1 if the record cannot be written: the step must not be taken. */
static int
mig_journal(struct mig *m, const char *step, struct qmp_error *err)
{
	json_t	*rec = NULL;
	int	 rc;

	if (step == NULL && m->jstep == NULL)
		return (0);
	if (step != NULL) {
		rec = json_pack("{s:s,s:s,s:s,s:b,s:b,s:b,s:I,s:I,s:O,s:I}",
		    "src", m->src, "uri", m->uri, "step", step, "own-sock",
		    m->own_sock, "postcopy", m->postcopy, "quit-source",
		    m->quit_source, "bandwidth", (json_int_t)m->bandwidth,
		    "downtime-ms", (json_int_t)m->downtime_ms, "caps", m->caps,
		    "job", (json_int_t)(m->job != NULL ? job_id(m->job) : 0));
		if (rec == NULL) {
			qmp_error_set(err, QMP_CLS_GENERIC, "out of memory");
			return (-1);
		}
		if (m->dst != NULL)
			json_object_set_new(rec, "dst", json_string(m->dst));
	}
	rc = journal_write(conf.state_dir, "migrate", m->src, "job", rec,
	    err);
	json_decref(rec);
	if (rc == 0)
		m->jstep = step;
	return (rc);
}

/* Lets go of the VMs, the timer and the socket: the job is over (or
   being freed). Idempotent. A broker that stops keeps the record and
   the socket: QEMU's migration runs on, and the next start reconciles
   it. */
static void
mig_detach(struct mig *m)
{
	struct qmp_error	err;

	if (m->active) {
		LIST_REMOVE(m, entry);
		m->active = false;
	}
	if (m->listener != NULL) {
		vm_unlisten(m->listener);
		m->listener = NULL;
	}
	if (m->dlistener != NULL) {
		vm_unlisten(m->dlistener);
		m->dlistener = NULL;
	}
	if (m->poll_ev != NULL) {
		event_free(m->poll_ev);
		m->poll_ev = NULL;
	}
	if (job_stopping() && m->jstep != NULL) {
		m->phase = P_DONE;
		return;
	}
	if (m->own_sock) {
		/* QEMU leaves its listening socket behind */
		unlink(m->uri + strlen("unix:"));
		m->own_sock = false;
	}
	if (mig_journal(m, NULL, &err) != 0)
		log_err("migration journal %s: %s", m->src, err.desc);
	m->phase = P_DONE;
}

static void
mig_release(void *arg)
{
	struct mig	*m = arg;

	mig_detach(m);
	m->job = NULL;
	if (m->inflight == 0)
		mig_free(m);
}

/* ---- ending ---- */

static json_t *
mig_result(struct mig *m)
{
	json_t	*r = json_pack("{s:s,s:s}", "vm", m->src, "uri", m->uri);

	if (m->dst != NULL)
		json_object_set_new(r, "to", json_string(m->dst));
	if (m->qstatus[0] != '\0')
		json_object_set_new(r, "status", json_string(m->qstatus));
	if (m->recovered > 0)
		json_object_set_new(r, "recovered", json_integer(m->recovered));
	if (m->recon != NULL)
		json_object_set_new(r, "reconciled", json_pack("{s:O,s:O,s:s}",
		    "step", json_object_get(m->recon, "step"), "job",
		    json_object_get(m->recon, "job"), "action",
		    m->recon_action != NULL ? m->recon_action : "none"));
	return (r);
}

static void
mig_fail(struct mig *m, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
mig_fail(struct mig *m, const char *fmt, ...)
{
	struct qmp_error	err;
	va_list			ap;

	va_start(ap, fmt);
	qmp_error_vset(&err, QMP_CLS_GENERIC, fmt, ap);
	va_end(ap);
	mig_detach(m);
	if (m->job != NULL)
		job_fail_err(m->job, &err);
}

static void
mig_fail_err(struct mig *m, const char *what, const struct qmp_error *e)
{
	mig_fail(m, "%s: %s", what, e->desc);
}

/* Cancelled before migrate was sent: say what stays. */
static void
mig_cancelled_early(struct mig *m)
{
	json_t	*r = mig_result(m);

	if (m->incoming)
		json_object_set_new(r, "left", json_sprintf("VM '%s' keeps "
		    "listening for an incoming migration on %s", m->dst,
		    m->uri));
	mig_detach(m);
	job_cancelled(m->job, r);
}

/* ---- QMP ---- */

static void	mig_step_done(json_t *, const struct qmp_error *, void *);

static void
mig_exec(struct mig *m, struct vm *vm, const char *cmd, json_t *args,
    vmq_reply_fn *fn)
{
	m->inflight++;
	vmq_execute(vm_vmq(vm), cmd, args, NULL, 0, fn, m);
}

/* A reply came back: false if the job is gone (m may be freed). */
static bool
mig_back(struct mig *m)
{
	m->inflight--;
	if (m->job != NULL)
		return (true);
	if (m->inflight == 0)
		mig_free(m);
	return (false);
}

static json_t *
mig_caps_json(struct mig *m)
{
	json_t		*a = json_array(), *v;
	const char	*k;

	json_object_foreach(m->caps, k, v)
		json_array_append_new(a, json_pack("{s:s,s:O}", "capability",
		    k, "state", v));
	return (json_pack("{s:o}", "capabilities", a));
}

/* The progress from a query-migrate reply (ret) and the events. */
static void
mig_progress(struct mig *m, const json_t *ret)
{
	json_t		*ram, *v;
	json_int_t	 rate, psize;

	if (ret != NULL) {
		ram = json_object_get(ret, "ram");
		if ((v = json_object_get(ret, "status")) != NULL &&
		    json_is_string(v))
			snprintf(m->qstatus, sizeof m->qstatus, "%s",
			    json_string_value(v));
		if (json_is_object(ram)) {
			json_object_set(m->prog, "transferred",
			    json_object_get(ram, "transferred"));
			json_object_set(m->prog, "remaining",
			    json_object_get(ram, "remaining"));
			json_object_set(m->prog, "total",
			    json_object_get(ram, "total"));
			if ((v = json_object_get(ram, "dirty-sync-count")) !=
			    NULL && json_integer_value(v) >
			    json_integer_value(json_object_get(m->prog, "pass")))
				json_object_set(m->prog, "pass", v);
			rate = json_integer_value(json_object_get(ram,
			    "dirty-pages-rate"));
			psize = json_integer_value(json_object_get(ram,
			    "page-size"));
			json_object_set_new(m->prog, "dirty-rate",
			    json_integer(rate * (psize > 0 ? psize : 4096)));
		}
		if ((v = json_object_get(ret, "expected-downtime")) != NULL)
			json_object_set(m->prog, "expected-downtime", v);
	}
	json_object_set_new(m->prog, "status", json_string(m->qstatus));
	if (m->job != NULL && job_status(m->job) == JOB_RUNNING)
		job_progress(m->job, json_deep_copy(m->prog));
}

/* QEMU said it is over: collect the totals, then the ends' states. */
static void
mig_over(struct mig *m)
{
	if (m->phase != P_RUN)
		return;
	if (m->poll_ev != NULL)
		evtimer_del(m->poll_ev);
	m->result = mig_result(m);
	m->phase = P_SRC_FINAL;
	mig_next(m);
}

static void
mig_poll_done(json_t *ret, const struct qmp_error *err, void *arg)
{
	struct mig	*m = arg;
	struct timeval	 tv = { 0, MIG_POLL_MS * 1000 };

	if (!mig_back(m))
		return;
	m->polling = false;
	if (m->phase != P_RUN)
		return;
	if (err != NULL) {
		mig_fail(m, "VM '%s': query-migrate failed: %s; the migration "
		    "may still run in QEMU", m->src, err->desc);
		return;
	}
	mig_progress(m, ret);
	if (mig_terminal(m->qstatus))
		mig_over(m);
	else if (m->poll_ev != NULL)
		evtimer_add(m->poll_ev, &tv);
}

static void
mig_poll_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct mig	*m = arg;

	if (m->phase == P_SRC_FINAL || m->phase == P_DST_FINAL ||
	    m->phase == P_RECON_WAIT) {
		/* settled a little more (or the VMs are back): ask again */
		mig_next(m);
		return;
	}
	if (m->phase != P_RUN || m->polling || m->srcvm == NULL)
		return;
	m->polling = true;
	mig_exec(m, m->srcvm, "query-migrate", NULL, mig_poll_done);
}

static void
mig_cancel_done(json_t *ret, const struct qmp_error *err, void *arg)
{
	struct mig	*m = arg;

	if (!mig_back(m))
		return;
	if (err != NULL && m->phase == P_RUN)
		log_warn("vm %s: migrate_cancel: %s", m->src, err->desc);
	/* the outcome comes as a MIGRATION event or from the poll */
}

static void
mig_send_cancel(struct mig *m)
{
	if (m->cancel_sent || m->srcvm == NULL || m->postcopy_started)
		return;
	m->cancel_sent = true;
	mig_exec(m, m->srcvm, "migrate_cancel", NULL, mig_cancel_done);
}

/* In postcopy the guest's state is split between the ends: with the
   destination gone and the source paused, nothing can recover it. */
static void
mig_postcopy_lost(struct mig *m)
{
	if (m->phase != P_RUN || !m->postcopy_started || m->dst_lost == NULL ||
	    strcmp(m->qstatus, "postcopy-paused") != 0)
		return;
	mig_fail(m, "destination VM '%s' went away during postcopy (%s): "
	    "the guest's state was split between the ends and is lost; VM "
	    "'%s' is postcopy-paused", m->dst, m->dst_lost, m->src);
}

/* The destination runs the guest from its RESUME on: only then can
   postcopy pause without failing it (QEMU 7.2 fails a destination
   whose stream breaks while it loads the device state). */
static void
mig_dst_event(struct vm *vm, json_t *ev, void *arg)
{
	struct mig	*m = arg;
	const char	*name = json_string_value(json_object_get(ev, "event"));

	if (name != NULL && strcmp(name, "STOP") == 0)
		m->dst_runs = false;
	if (name == NULL || strcmp(name, "RESUME") != 0)
		return;
	m->dst_runs = true;
	/* the job's end waits for this: ask now, not at the next tick */
	if (m->phase == P_DST_FINAL && m->poll_ev != NULL &&
	    evtimer_pending(m->poll_ev, NULL)) {
		evtimer_del(m->poll_ev);
		mig_next(m);
	}
}

static void
mig_event(struct vm *vm, json_t *ev, void *arg)
{
	struct mig	*m = arg;
	const char	*name = json_string_value(json_object_get(ev, "event"));
	json_t		*data = json_object_get(ev, "data");
	const char	*st;

	if (name == NULL || m->phase < P_MIGRATE || m->phase > P_RUN)
		return;
	if (strcmp(name, "MIGRATION_PASS") == 0) {
		json_object_set(m->prog, "pass", json_object_get(data,
		    "pass"));
		mig_progress(m, NULL);
		return;
	}
	if (strcmp(name, "MIGRATION") != 0 ||
	    (st = json_string_value(json_object_get(data, "status"))) == NULL)
		return;
	snprintf(m->qstatus, sizeof m->qstatus, "%s", st);
	if (strcmp(st, "postcopy-active") == 0)
		m->postcopy_started = true;
	mig_progress(m, NULL);
	if (mig_terminal(st))
		mig_over(m);
	else
		mig_postcopy_lost(m);
}

/* Builds the end result from the final query-migrate and the states. */
static void
mig_finish(struct mig *m)
{
	json_t		*r = m->result;
	const char	*desc;

	m->result = NULL;
	if (m->final != NULL) {
		static const char *const keep[] = { "total-time", "downtime",
		    "setup-time", "ram" };
		size_t	i;

		for (i = 0; i < sizeof keep / sizeof keep[0]; i++)
			if (json_object_get(m->final, keep[i]) != NULL)
				json_object_set(r, keep[i],
				    json_object_get(m->final, keep[i]));
	}
	mig_detach(m);
	if (strcmp(m->qstatus, "completed") == 0) {
		if (job_cancel_requested(m->job))
			json_object_set_new(r, "cancel", json_string(
			    m->postcopy_started ? "too late: postcopy had "
			    "started, the destination runs the guest" :
			    "too late: the migration had completed"));
		job_conclude(m->job, r);
		return;
	}
	if (m->dst_lost != NULL && m->dst != NULL)
		json_object_set_new(r, "destination-status", json_sprintf(
		    "gone (%s)", m->dst_lost));
	if (strcmp(m->qstatus, "cancelled") == 0 &&
	    job_cancel_requested(m->job)) {
		/* a QEMU whose incoming migration breaks off exits: the
		   destination going away is then the cancel's doing */
		job_cancelled(m->job, r);
		return;
	}
	desc = json_string_value(json_object_get(m->final, "error-desc"));
	if (m->dst_lost != NULL)
		mig_fail(m, "destination VM '%s' went away mid-migration "
		    "(%s); migration %s, VM '%s' is %s", m->dst, m->dst_lost,
		    m->qstatus, m->src, json_string_value(json_object_get(r,
		    "source-status")));
	else
		mig_fail(m, "migration of VM '%s' %s%s%s; VM '%s' is %s",
		    m->src, m->qstatus, desc != NULL ? ": " : "",
		    desc != NULL ? desc : "", m->src,
		    json_string_value(json_object_get(r, "source-status")));
	json_decref(r);
}

static void
mig_set_status(json_t *r, const char *key, const json_t *ret,
    const struct qmp_error *err)
{
	const char	*st = json_string_value(json_object_get(ret, "status"));

	json_object_set_new(r, key, json_string(err != NULL ? "unknown" :
	    st != NULL ? st : "unknown"));
}

/* ---- reconciling a journal record left by a broker that died ---- */

/* Writes the record for step; fails the job if it cannot. */
static int
mig_step_journal(struct mig *m, const char *step)
{
	struct qmp_error	err;

	if (mig_journal(m, step, &err) == 0)
		return (0);
	mig_fail(m, "cannot journal the '%s' step, not taken: %s", step,
	    err.desc);
	return (-1);
}

/* Whether the record's VMs are back and connected; if not, looks
   again in a while. */
static bool
mig_recon_ready(struct mig *m)
{
	struct timeval	 tv = { 0, MIG_POLL_MS * 1000 };
	struct vm	*s, *d = NULL;

	s = vm_find(m->src);
	if (m->dst != NULL && m->dst_lost == NULL)
		d = vm_find(m->dst);
	if (s != NULL && vm_state(s) == MON_READY && (m->dst == NULL ||
	    m->dst_lost != NULL || (d != NULL && vm_state(d) == MON_READY))) {
		m->srcvm = s;
		m->dstvm = d;
		return (true);
	}
	if (m->poll_ev == NULL &&
	    (m->poll_ev = evtimer_new(loop_base, mig_poll_cb, m)) == NULL) {
		mig_fail(m, "out of memory");
		return (false);
	}
	evtimer_add(m->poll_ev, &tv);
	return (false);
}

/* What QEMU says on both ends decides: a migration still running is
   watched to its end, one that ended gives the job's outcome, and one
   whose migrate never reached the source is taken up again from the
   checks (a destination already listening is not asked twice): the
   client asked for it, and a destination left listening is the one
   thing that cannot be undone. */
static void
mig_recon_decide(struct mig *m, json_t *dret)
{
	const char	*st, *step, *dst_st;

	st = json_string_value(json_object_get(m->recon_src, "status"));
	if (st == NULL)
		st = "none";
	step = json_string_value(json_object_get(m->recon, "step"));
	dst_st = json_string_value(json_object_get(dret, "status"));
	if (strcmp(st, "none") != 0 && !mig_terminal(st)) {
		m->recon_action = "adopted";
		snprintf(m->qstatus, sizeof m->qstatus, "%s", st);
		m->postcopy_started = strncmp(st, "postcopy", 8) == 0;
		m->dst_runs = m->postcopy_started;
		m->incoming = true;
		if ((m->listener = vm_listen(m->srcvm, mig_event, m)) ==
		    NULL || (m->dstvm != NULL && (m->dlistener =
		    vm_listen(m->dstvm, mig_dst_event, m)) == NULL)) {
			mig_fail(m, "out of memory");
			return;
		}
		m->phase = P_RUN;
	} else if (strcmp(st, "none") != 0 && strcmp(step, "migrate") == 0) {
		m->recon_action = "outcome";
		snprintf(m->qstatus, sizeof m->qstatus, "%s", st);
		m->incoming = true;
		m->phase = P_RUN;
	} else {
		m->recon_action = "resumed";
		m->incoming = dret != NULL && (json_object_get(dret,
		    "socket-address") != NULL || (dst_st != NULL &&
		    strcmp(dst_st, "none") != 0));
		m->phase = P_DST_STATUS;
	}
	log_notice("migration journal %s: step %s, source %s%s%s: %s", m->src,
	    step, st, m->dst != NULL ? ", destination " : "", m->dst == NULL ?
	    "" : dst_st != NULL ? dst_st : json_object_get(dret,
	    "socket-address") != NULL ? "listening" : "none", m->recon_action);
}

/* Judges the reply to the current step: true if the job goes on to
   the next step, false if it failed, waits or has gone on itself. */
static bool
mig_step_check(struct mig *m, json_t *ret, const struct qmp_error *err)
{
	const char	*st;

	st = json_string_value(json_object_get(ret, "status"));
	switch (m->phase) {
	case P_RECON_WAIT:
		return (false);
	case P_RECON_SRC:
		if (err != NULL) {
			mig_fail(m, "reconciling after a restart: VM '%s': "
			    "query-migrate: %s", m->src, err->desc);
			return (false);
		}
		m->recon_src = json_deep_copy(ret);
		break;
	case P_RECON_DST:
		if (err != NULL) {
			mig_fail(m, "reconciling after a restart: VM '%s': "
			    "query-migrate: %s", m->dst, err->desc);
			return (false);
		}
		mig_recon_decide(m, ret);
		mig_next(m);
		return (false);
	case P_DST_STATUS:
		if (err != NULL) {
			mig_fail_err(m, "destination", err);
			return (false);
		}
		if (st == NULL || strcmp(st, "inmigrate") != 0) {
			mig_fail(m, "VM '%s' is not waiting for an incoming "
			    "migration (status %s): start it with -incoming "
			    "defer", m->dst, st != NULL ? st : "unknown");
			return (false);
		}
		break;
	case P_SRC_STATUS:
		if (err != NULL) {
			mig_fail_err(m, "source", err);
			return (false);
		}
		if (st != NULL && strcmp(st, "inmigrate") == 0) {
			mig_fail(m, "VM '%s' is itself waiting for an incoming "
			    "migration: nothing to migrate", m->src);
			return (false);
		}
		break;
	case P_SRC_QUERY:
		if (err != NULL) {
			mig_fail_err(m, "source", err);
			return (false);
		}
		if (st != NULL && !mig_terminal(st) &&
		    strcmp(st, "none") != 0) {
			mig_fail(m, "VM '%s' is already migrating (status %s), "
			    "started outside this job", m->src, st);
			return (false);
		}
		break;
	case P_DST_CAPS:
	case P_DST_INCOMING:
		if (err != NULL) {
			mig_fail(m, "destination VM '%s': %s: %s", m->dst,
			    m->phase == P_DST_CAPS ?
			    "migrate-set-capabilities" : "migrate-incoming",
			    err->desc);
			return (false);
		}
		if (m->phase == P_DST_INCOMING)
			m->incoming = true;
		break;
	case P_SRC_CAPS:
	case P_SRC_PARAMS:
	case P_MIGRATE:
		if (err != NULL) {
			mig_fail(m, "VM '%s': %s: %s", m->src,
			    m->phase == P_SRC_CAPS ? "migrate-set-capabilities"
			    : m->phase == P_SRC_PARAMS ?
			    "migrate-set-parameters" : "migrate", err->desc);
			return (false);
		}
		break;
	case P_SRC_FINAL:
		/* QEMU says completed before the source leaves
		   finish-migrate, and its totals come only then */
		if (err == NULL && st != NULL &&
		    strcmp(st, "finish-migrate") == 0 &&
		    m->settle++ < MIG_SETTLE_MAX && m->poll_ev != NULL) {
			struct timeval	tv = { 0, MIG_SETTLE_MS * 1000 };

			evtimer_add(m->poll_ev, &tv);
			return (false);
		}
		mig_set_status(m->result, "source-status", ret, err);
		break;
	case P_END_QUERY:
		if (err == NULL) {
			m->final = json_incref(ret);
			mig_progress(m, ret);
			json_object_set_new(m->result, "status",
			    json_string(m->qstatus));
		}
		break;
	case P_DST_FINAL:
		/* The destination loads the last pages after the source
		   says completed, and runs only then: inmigrate until. */
		if (err == NULL && st != NULL && strcmp(st, "inmigrate") == 0 &&
		    m->dst_settle++ < MIG_SETTLE_MAX && m->poll_ev != NULL) {
			struct timeval	tv = { 0, MIG_SETTLE_MS * 1000 };

			evtimer_add(m->poll_ev, &tv);
			return (false);
		}
		mig_set_status(m->result, "destination-status", ret, err);
		break;
	case P_QUIT:
		json_object_set_new(m->result, "source-status", json_string(
		    err == NULL ? "quit" : "postmigrate"));
		if (err != NULL)
			json_object_set_new(m->result, "quit-error",
			    json_string(err->desc));
		break;
	case P_RUN:
	case P_DONE:
		return (false);
	}
	return (true);
}

/* One step's reply. */
static void
mig_step_done(json_t *ret, const struct qmp_error *err, void *arg)
{
	struct mig	*m = arg;

	if (!mig_back(m) || !mig_step_check(m, ret, err))
		return;
	m->phase++;
	mig_next(m);
}

/*
 * Steps that need nothing from each other (the ends' states; the
 * capabilities and parameters) go out together, on both monitors at
 * once: one round trip to QEMU instead of one per step, which is most
 * of what the broker adds to a migration (tools/bench scenario 8). The
 * replies are kept and judged in step order once all are in, so a
 * failure says what it said when the steps went one by one.
 */
static void
mig_gang_done(json_t *ret, const struct qmp_error *err, void *arg)
{
	struct mig_part	*p = arg, parts[MIG_GANG_MAX];
	struct mig	*m = p->m;
	int		 i, n;
	bool		 go = true;

	p->ret = json_incref(ret);
	if ((p->failed = err != NULL))
		p->err = *err;
	m->gang_left--;
	if (!mig_back(m) || m->gang_left > 0)
		return;
	/* judging may end the job and free m: the replies leave it */
	n = m->ngang;
	memcpy(parts, m->gang, (size_t)n * sizeof parts[0]);
	m->ngang = 0;
	for (i = 0; i < n; i++) {
		if (go) {
			m->phase = parts[i].phase;
			go = mig_step_check(m, parts[i].ret, parts[i].failed ?
			    &parts[i].err : NULL);
		}
		json_decref(parts[i].ret);
	}
	if (!go)
		return;
	m->phase = m->gang_next;
	mig_next(m);
}

/* Adds a step's command to the gang; it goes out now. */
static void
mig_gang_add(struct mig *m, struct vm *vm, enum mig_phase phase,
    const char *cmd, json_t *args)
{
	struct mig_part	*p = &m->gang[m->ngang++];

	memset(p, 0, sizeof *p);
	p->m = m;
	p->phase = phase;
	m->gang_left++;
	m->inflight++;
	vmq_execute(vm_vmq(vm), cmd, args, NULL, 0, mig_gang_done, p);
}

/* Issues the current phase's command, skipping phases that do not
   apply. */
static void
mig_next(struct mig *m)
{
	struct timeval	 tv = { 0, MIG_POLL_MS * 1000 };
	json_t		*a;

	for (;;) {
		if (m->phase <= P_MIGRATE && job_cancel_requested(m->job)) {
			mig_cancelled_early(m);
			return;
		}
		if (m->phase == P_RECON_WAIT) {
			if (!mig_recon_ready(m))
				return;
			m->phase++;
		}
		if (m->phase < P_RUN && (m->srcvm == NULL ||
		    (m->dst != NULL && m->dstvm == NULL &&
		    (m->phase > P_RECON_DST || m->dst_lost == NULL)))) {
			mig_fail(m, "VM '%s' was removed", m->srcvm == NULL ?
			    m->src : m->dst);
			return;
		}
		switch (m->phase) {
		case P_RECON_WAIT:
			break;
		case P_RECON_SRC:
			mig_exec(m, m->srcvm, "query-migrate", NULL,
			    mig_step_done);
			return;
		case P_RECON_DST:
			if (m->dstvm != NULL) {
				mig_exec(m, m->dstvm, "query-migrate", NULL,
				    mig_step_done);
				return;
			}
			mig_recon_decide(m, NULL);
			continue;
		case P_DST_STATUS:
			/* the ends' states, together */
			if (m->dst != NULL)
				mig_gang_add(m, m->dstvm, P_DST_STATUS,
				    "query-status", NULL);
			mig_gang_add(m, m->srcvm, P_SRC_STATUS, "query-status",
			    NULL);
			mig_gang_add(m, m->srcvm, P_SRC_QUERY, "query-migrate",
			    NULL);
			m->gang_next = P_DST_CAPS;
			return;
		case P_DST_CAPS:
			/* capabilities on both ends and the source's
			   parameters, together: the source's change nothing
			   a guest runs, so they may go before
			   migrate-incoming */
			if (m->dst != NULL && !m->incoming)
				mig_gang_add(m, m->dstvm, P_DST_CAPS,
				    "migrate-set-capabilities",
				    mig_caps_json(m));
			mig_gang_add(m, m->srcvm, P_SRC_CAPS,
			    "migrate-set-capabilities", mig_caps_json(m));
			if (m->bandwidth > 0 || m->downtime_ms > 0) {
				a = json_object();
				if (m->bandwidth > 0)
					json_object_set_new(a, "max-bandwidth",
					    json_integer(m->bandwidth));
				if (m->downtime_ms > 0)
					json_object_set_new(a,
					    "downtime-limit",
					    json_integer(m->downtime_ms));
				mig_gang_add(m, m->srcvm, P_SRC_PARAMS,
				    "migrate-set-parameters", a);
			}
			m->gang_next = P_DST_INCOMING;
			return;
		case P_DST_INCOMING:
			if (m->dst == NULL || m->incoming)
				break;
			if (mig_step_journal(m, "incoming") != 0)
				return;
			if (m->dlistener == NULL && (m->dlistener =
			    vm_listen(m->dstvm, mig_dst_event, m)) == NULL) {
				mig_fail(m, "out of memory");
				return;
			}
			mig_exec(m, m->dstvm, "migrate-incoming",
			    json_pack("{s:s}", "uri", m->uri), mig_step_done);
			return;
		case P_SRC_STATUS:
		case P_SRC_QUERY:
		case P_SRC_CAPS:
		case P_SRC_PARAMS:
			/* went with the gangs above */
			break;
		case P_MIGRATE:
			if (mig_step_journal(m, "migrate") != 0)
				return;
			snprintf(m->qstatus, sizeof m->qstatus, "setup");
			if ((m->listener = vm_listen(m->srcvm, mig_event,
			    m)) == NULL) {
				mig_fail(m, "out of memory");
				return;
			}
			mig_exec(m, m->srcvm, "migrate", json_pack("{s:s}",
			    "uri", m->uri), mig_step_done);
			return;
		case P_RUN:
			/* the events may have said it all already */
			if (m->dst_lost != NULL || job_cancel_requested(m->job))
				mig_send_cancel(m);
			if (mig_terminal(m->qstatus)) {
				m->phase = P_RUN;
				mig_over(m);
				return;
			}
			if (m->poll_ev == NULL && (m->poll_ev = evtimer_new(
			    loop_base, mig_poll_cb, m)) == NULL) {
				mig_fail(m, "out of memory; the migration runs "
				    "on in QEMU");
				return;
			}
			evtimer_add(m->poll_ev, &tv);
			mig_progress(m, NULL);
			return;
		case P_SRC_FINAL:
			if (m->srcvm == NULL)
				break;
			/* the source's state and QEMU's totals, together:
			   QEMU answers in order, so totals asked with a
			   state past finish-migrate are there (if it is
			   not, both are asked again) */
			mig_gang_add(m, m->srcvm, P_SRC_FINAL, "query-status",
			    NULL);
			mig_gang_add(m, m->srcvm, P_END_QUERY, "query-migrate",
			    NULL);
			m->gang_next = P_DST_FINAL;
			return;
		case P_END_QUERY:
			if (m->srcvm == NULL)
				break;
			mig_exec(m, m->srcvm, "query-migrate", NULL,
			    mig_step_done);
			return;
		case P_DST_FINAL:
			if (m->dstvm == NULL || m->dst_lost != NULL)
				break;
			if (m->dst_runs) {
				/* its RESUME said so, and no STOP since: the
				   round trip would only delay the end */
				json_object_set_new(m->result,
				    "destination-status", json_string(
				    "running"));
				break;
			}
			mig_exec(m, m->dstvm, "query-status", NULL,
			    mig_step_done);
			return;
		case P_QUIT:
			if (!m->quit_source || m->srcvm == NULL ||
			    strcmp(m->qstatus, "completed") != 0)
				break;
			mig_exec(m, m->srcvm, "quit", NULL, mig_step_done);
			return;
		case P_DONE:
			mig_finish(m);
			return;
		}
		m->phase++;
	}
}

/* ---- job ops ---- */

static void
mig_start(struct job *j)
{
	struct mig	*m = job_data(j);

	m->job = j;
	mig_next(m);
}

static void
mig_cancel(struct job *j)
{
	struct mig	*m = job_data(j);

	/* A broker that stops leaves QEMU's migration alone: the broker
	   only watches it. Before migrate, the next step sees the
	   request. */
	if (job_stopping() || m->phase != P_RUN)
		return;
	mig_send_cancel(m);
}

/* ---- the VMs going away ---- */

static void
mig_vm_lost(struct mig *m, struct vm *vm, const char *why)
{
	if (vm == m->dstvm && m->dst_lost == NULL) {
		m->dst_lost = strdup(why);
		/* the source may notice late (a TCP peer that does not
		   answer): it gives up now */
		if (m->phase == P_RUN)
			mig_send_cancel(m);
		mig_postcopy_lost(m);
	}
	if (vm == m->srcvm && m->phase <= P_RUN) {
		mig_fail(m, "source VM '%s' went away mid-migration (%s)",
		    m->src, why);
	}
}

static void
mig_vm_removing(struct vm *vm, void *arg)
{
	struct mig	*m, *m1;

	LIST_FOREACH_SAFE(m, &mig_all, entry, m1) {
		if (m->phase == P_RECON_WAIT) {
			/* a record's VM removed before it came back: the
			   source alone can still say how it ended */
			if (m->dst != NULL && strcmp(vm_name(vm), m->dst) == 0 &&
			    m->dst_lost == NULL)
				m->dst_lost = strdup("removed from the broker");
			continue;
		}
		if (vm != m->srcvm && vm != m->dstvm)
			continue;
		mig_vm_lost(m, vm, "removed from the broker");
		if (vm == m->srcvm) {
			if (m->listener != NULL)
				vm_unlisten(m->listener);
			m->listener = NULL;
			m->srcvm = NULL;
		}
		if (vm == m->dstvm) {
			if (m->dlistener != NULL)
				vm_unlisten(m->dlistener);
			m->dlistener = NULL;
			m->dstvm = NULL;
		}
	}
}

static void
mig_vm_state(struct vm *vm, enum mon_state st, const char *why, void *arg)
{
	struct mig	*m, *m1;

	if (st == MON_READY)
		return;
	LIST_FOREACH_SAFE(m, &mig_all, entry, m1)
		if (vm == m->srcvm || vm == m->dstvm)
			mig_vm_lost(m, vm, why != NULL ? why :
			    "monitor disconnected");
}

static const struct vm_observer mig_observer = {
	NULL,
	mig_vm_removing,
	mig_vm_state,
	NULL,
};

/* ---- what the commands ask for ---- */

static struct mig *
mig_of(const char *name)
{
	struct mig	*m;

	LIST_FOREACH(m, &mig_all, entry)
		if (strcmp(m->src, name) == 0 ||
		    (m->dst != NULL && strcmp(m->dst, name) == 0))
			return (m);
	return (NULL);
}

bool
migrate_busy(const char *name, struct qmp_error *err)
{
	struct mig	*m;

	if ((m = mig_of(name)) == NULL || m->job == NULL)
		return (false);
	qmp_error_set(err, QMP_CLS_GENERIC, "VM '%s' is %s of migration "
	    "job %llu: hotplug waits until it ends", name,
	    strcmp(m->src, name) == 0 ? "the source" : "the destination",
	    (unsigned long long)job_id(m->job));
	return (true);
}

/* The URI policy: a unix socket path or a TCP address, nothing that
   makes QEMU run a command (exec:) or use what it holds (fd:). */
static int
mig_uri_ok(const char *uri, struct qmp_error *err)
{
	const char	*p;

	if (strlen(uri) > MIG_URI_MAX) {
		qmp_error_set(err, QMP_CLS_GENERIC, "uri longer than %d bytes",
		    MIG_URI_MAX);
		return (-1);
	}
	for (p = uri; *p != '\0'; p++)
		if (iscntrl((unsigned char)*p)) {
			qmp_error_set(err, QMP_CLS_GENERIC, "uri has control "
			    "characters");
			return (-1);
		}
	if (strncmp(uri, "unix:", 5) == 0) {
		if (uri[5] != '/' ||
		    strlen(uri + 5) >= sizeof ((struct sockaddr_un *)0)->sun_path) {
			qmp_error_set(err, QMP_CLS_GENERIC, "unix: uri needs an "
			    "absolute socket path shorter than %zu bytes",
			    sizeof ((struct sockaddr_un *)0)->sun_path);
			return (-1);
		}
		return (0);
	}
	if (strncmp(uri, "tcp:", 4) == 0 && strchr(uri + 4, ':') != NULL)
		return (0);
	qmp_error_set(err, QMP_CLS_GENERIC, "migration uri '%.64s' not "
	    "allowed: only unix:PATH and tcp:HOST:PORT", uri);
	return (-1);
}

static int
mig_caps_ok(json_t *caps, struct qmp_error *err)
{
	const char	*k, *p;
	json_t		*v;

	if (caps == NULL)
		return (0);
	if (!json_is_object(caps) || json_object_size(caps) > MIG_CAPS_MAX) {
		qmp_error_set(err, QMP_CLS_GENERIC, "'capabilities' must be an "
		    "object of at most %d capability: bool", MIG_CAPS_MAX);
		return (-1);
	}
	json_object_foreach(caps, k, v) {
		for (p = k; *p != '\0'; p++)
			if (!islower((unsigned char)*p) &&
			    !isdigit((unsigned char)*p) && *p != '-')
				break;
		if (*p != '\0' || *k == '\0' || strlen(k) > 64 ||
		    !json_is_boolean(v)) {
			qmp_error_set(err, QMP_CLS_GENERIC, "capability "
			    "'%.64s' must be a lower-case name with a bool", k);
			return (-1);
		}
		if (strcmp(k, "events") == 0 && !json_is_true(v)) {
			qmp_error_set(err, QMP_CLS_GENERIC, "capability "
			    "'events' stays on: the job follows the migration "
			    "through them");
			return (-1);
		}
	}
	return (0);
}

/* A VM that exists, is connected and has no hotplug running. */
static struct vm *
mig_vm(const char *name, struct qmp_error *err)
{
	struct vm	*vm;
	struct mig	*m;

	if ((vm = vm_find(name)) == NULL) {
		qmp_error_set(err, QMP_CLS_GENERIC, "unknown VM '%s'", name);
		return (NULL);
	}
	if (vm_state(vm) != MON_READY) {
		qmp_error_set(err, QMP_CLS_GENERIC, "VM '%s' is not connected",
		    name);
		return (NULL);
	}
	if ((m = mig_of(name)) != NULL && m->job != NULL) {
		qmp_error_set(err, QMP_CLS_GENERIC, "VM '%s' is already an end "
		    "of migration job %llu", name,
		    (unsigned long long)job_id(m->job));
		return (NULL);
	}
	if (hotplug_busy(name)) {
		qmp_error_set(err, QMP_CLS_GENERIC, "VM '%s' has a hotplug "
		    "operation running: migrate once it is over", name);
		return (NULL);
	}
	return (vm);
}

struct job *
migrate_job(const struct migrate_req *q, struct qmp_error *err)
{
	struct vm	*src, *dst = NULL;
	struct mig	*m;
	struct job	*j;
	char		 path[sizeof ((struct sockaddr_un *)0)->sun_path];
	bool		 own = false;

	if (!mig_observing) {
		vm_observe(&mig_observer, NULL);
		mig_observing = true;
	}
	if (q->to == NULL && q->uri == NULL) {
		qmp_error_set(err, QMP_CLS_GENERIC, "vm-migrate needs 'to' (a "
		    "VM of this broker) or 'uri'");
		return (NULL);
	}
	if (q->to != NULL && strcmp(q->to, q->vm) == 0) {
		qmp_error_set(err, QMP_CLS_GENERIC, "cannot migrate VM '%s' to "
		    "itself", q->vm);
		return (NULL);
	}
	if (q->bandwidth < 0 || q->downtime_ms < 0) {
		qmp_error_set(err, QMP_CLS_GENERIC, "'%s' must not be negative",
		    q->bandwidth < 0 ? "bandwidth" : "downtime-ms");
		return (NULL);
	}
	if ((q->uri != NULL && mig_uri_ok(q->uri, err) != 0) ||
	    mig_caps_ok(q->caps, err) != 0)
		return (NULL);
	if ((src = mig_vm(q->vm, err)) == NULL ||
	    (q->to != NULL && (dst = mig_vm(q->to, err)) == NULL))
		return (NULL);
	if (q->uri == NULL) {
		if ((size_t)snprintf(path, sizeof path, "unix:%s/migrate-%s."
		    "sock", conf.run_dir, q->to) >= sizeof path) {
			qmp_error_set(err, QMP_CLS_GENERIC, "run directory too "
			    "long for a migration socket: pass 'uri'");
			return (NULL);
		}
		own = true;
	}
	if ((m = calloc(1, sizeof *m)) == NULL)
		goto nomem;
	m->src = strdup(q->vm);
	m->dst = q->to != NULL ? strdup(q->to) : NULL;
	m->uri = strdup(own ? path : q->uri);
	m->caps = q->caps != NULL ? json_deep_copy(q->caps) : json_object();
	m->prog = json_pack("{s:i}", "pass", 0);
	if (m->src == NULL || (q->to != NULL && m->dst == NULL) ||
	    m->uri == NULL || m->caps == NULL || m->prog == NULL) {
		mig_free(m);
		goto nomem;
	}
	json_object_set_new(m->caps, "events", json_true());
	m->phase = P_DST_STATUS;
	m->srcvm = src;
	m->dstvm = dst;
	m->postcopy = q->postcopy || json_is_true(json_object_get(m->caps,
	    "postcopy-ram"));
	/* said either way on both ends: QEMU keeps a capability set by an
	   earlier migration, and a source still set for postcopy towards a
	   destination that is not fails ("Bad file descriptor") */
	json_object_set_new(m->caps, "postcopy-ram", json_boolean(m->postcopy));
	m->quit_source = q->quit_source;
	m->bandwidth = q->bandwidth;
	m->downtime_ms = q->downtime_ms;
	if (own) {
		/* a socket left by a broker that died */
		unlink(m->uri + strlen("unix:"));
		m->own_sock = true;
	}
	if ((j = job_new(&mig_ops, q->vm, m, err)) == NULL)
		return (NULL);
	LIST_INSERT_HEAD(&mig_all, m, entry);
	m->active = true;
	job_start(j);
	return (j);
nomem:
	qmp_error_set(err, QMP_CLS_GENERIC, "out of memory");
	return (NULL);
}

int
migrate_postcopy(const char *vm, vmq_reply_fn *fn, void *arg,
    struct qmp_error *err)
{
	struct mig	*m;

	if ((m = mig_of(vm)) == NULL || strcmp(m->src, vm) != 0 ||
	    m->job == NULL) {
		qmp_error_set(err, QMP_CLS_GENERIC, "VM '%s' is not the source "
		    "of a running migration job", vm);
		return (-1);
	}
	if (!m->postcopy) {
		qmp_error_set(err, QMP_CLS_GENERIC, "migration job %llu was "
		    "not started with postcopy", (unsigned long long)
		    job_id(m->job));
		return (-1);
	}
	if (m->phase != P_RUN || m->srcvm == NULL) {
		qmp_error_set(err, QMP_CLS_GENERIC, "migration job %llu is not "
		    "transferring yet (or any more)", (unsigned long long)
		    job_id(m->job));
		return (-1);
	}
	vmq_execute(vm_vmq(m->srcvm), "migrate-start-postcopy", NULL, NULL, 0,
	    fn, arg);
	return (0);
}

/* ---- restart ---- */

static void
mig_load(const char *group, const char *id, json_t *rec, void *arg)
{
	struct qmp_error	 err;
	struct mig		*m;
	struct job		*j;
	const char		*src, *dst, *uri, *step;
	json_t			*caps;

	src = json_string_value(json_object_get(rec, "src"));
	dst = json_string_value(json_object_get(rec, "dst"));
	uri = json_string_value(json_object_get(rec, "uri"));
	step = json_string_value(json_object_get(rec, "step"));
	caps = json_object_get(rec, "caps");
	if (src == NULL || strcmp(src, group) != 0 || strcmp(id, "job") != 0 ||
	    uri == NULL || mig_uri_ok(uri, &err) != 0 || step == NULL ||
	    (strcmp(step, "incoming") != 0 && strcmp(step, "migrate") != 0) ||
	    !json_is_object(caps) || mig_caps_ok(caps, &err) != 0 ||
	    (dst != NULL && strcmp(dst, src) == 0)) {
		log_warn("migration journal %s/%s: not a record of this "
		    "broker's; ignored", group, id);
		return;
	}
	if ((m = calloc(1, sizeof *m)) == NULL)
		return;
	m->src = strdup(src);
	m->dst = dst != NULL ? strdup(dst) : NULL;
	m->uri = strdup(uri);
	m->caps = json_deep_copy(caps);
	m->prog = json_pack("{s:i}", "pass", 0);
	m->recon = json_incref(rec);
	if (m->src == NULL || (dst != NULL && m->dst == NULL) ||
	    m->uri == NULL || m->caps == NULL || m->prog == NULL) {
		mig_free(m);
		return;
	}
	json_object_set_new(m->caps, "events", json_true());
	m->phase = P_RECON_WAIT;
	m->own_sock = json_is_true(json_object_get(rec, "own-sock"));
	m->postcopy = json_is_true(json_object_get(rec, "postcopy"));
	m->quit_source = json_is_true(json_object_get(rec, "quit-source"));
	m->bandwidth = json_integer_value(json_object_get(rec, "bandwidth"));
	m->downtime_ms = json_integer_value(json_object_get(rec,
	    "downtime-ms"));
	/* the record stands until the job is over */
	m->jstep = strcmp(step, "incoming") == 0 ? "incoming" : "migrate";
	if ((j = job_new(&mig_ops, m->src, m, &err)) == NULL) {
		log_err("migration journal %s: %s", group, err.desc);
		return;
	}
	log_notice("migration journal %s: interrupted at step %s: job %llu "
	    "reconciles it", group, step, (unsigned long long)job_id(j));
	LIST_INSERT_HEAD(&mig_all, m, entry);
	m->active = true;
	job_start(j);
}

static void
mig_load_bad(const char *path, const char *why, void *arg)
{
	log_warn("migration journal %s: %s; set aside as .bad", path, why);
}

void
migrate_init(void)
{
	if (!mig_observing) {
		vm_observe(&mig_observer, NULL);
		mig_observing = true;
	}
	if (journal_load(conf.state_dir, "migrate", mig_load, mig_load_bad,
	    NULL) < 0)
		log_err("migration journal: cannot read %s/migrate",
		    conf.state_dir);
}

/* ---- postcopy pause and recovery ---- */

/* The source job of VM vm in postcopy, or NULL with err. */
static struct mig *
mig_postcopy_of(const char *vm, struct qmp_error *err)
{
	struct mig	*m;

	if ((m = mig_of(vm)) == NULL || strcmp(m->src, vm) != 0 ||
	    m->job == NULL) {
		qmp_error_set(err, QMP_CLS_GENERIC, "VM '%s' is not the source "
		    "of a running migration job", vm);
		return (NULL);
	}
	if (!m->postcopy_started || m->phase != P_RUN || m->srcvm == NULL) {
		qmp_error_set(err, QMP_CLS_GENERIC, "migration job %llu is not "
		    "in postcopy (status %s)", (unsigned long long)
		    job_id(m->job), m->qstatus);
		return (NULL);
	}
	return (m);
}

/* migrate-pause and migrate-recover are what a stuck monitor must still
   take: out of band where QEMU offers it. */
static void
mig_exec_oob(struct vm *vm, const char *cmd, json_t *args, vmq_reply_fn *fn,
    void *arg)
{
	if (vmq_oob_offered(vm_vmq(vm)))
		vmq_execute_oob(vm_vmq(vm), cmd, args, fn, arg);
	else
		vmq_execute(vm_vmq(vm), cmd, args, NULL, 0, fn, arg);
}

int
migrate_pause(const char *vm, vmq_reply_fn *fn, void *arg,
    struct qmp_error *err)
{
	struct mig	*m;

	if ((m = mig_postcopy_of(vm, err)) == NULL)
		return (-1);
	if (strcmp(m->qstatus, "postcopy-active") != 0) {
		qmp_error_set(err, QMP_CLS_GENERIC, "migration job %llu is "
		    "%s, not postcopy-active: nothing to pause",
		    (unsigned long long)job_id(m->job), m->qstatus);
		return (-1);
	}
	if (m->dst != NULL && !m->dst_runs) {
		qmp_error_set(err, QMP_CLS_GENERIC, "destination VM '%s' does "
		    "not run the guest yet: a pause while it loads the device "
		    "state fails the migration; try again", m->dst);
		return (-1);
	}
	mig_exec_oob(m->srcvm, "migrate-pause", NULL, fn, arg);
	return (0);
}

static void
mig_recover_done(json_t *ret, const struct qmp_error *err, void *arg)
{
	struct mig		*m = arg;
	struct qmp_error	 e;
	vmq_reply_fn		*fn = m->rfn;
	void			*rarg = m->rarg;
	bool			 resumed = m->ruri == NULL;

	if (!mig_back(m)) {
		qmp_error_set(&e, QMP_CLS_GENERIC, "the migration job ended");
		fn(NULL, &e, rarg);
		return;
	}
	if (err != NULL || resumed || m->srcvm == NULL) {
		m->rfn = NULL;
		free(m->ruri);
		m->ruri = NULL;
		if (err == NULL && m->srcvm == NULL) {
			qmp_error_set(&e, QMP_CLS_GENERIC, "source VM '%s' "
			    "went away", m->src);
			err = &e;
		}
		if (err == NULL)
			m->recovered++;
		fn(ret, err, rarg);
		return;
	}
	/* the destination listens again: the source resumes there */
	m->inflight++;
	vmq_execute(vm_vmq(m->srcvm), "migrate", json_pack("{s:s,s:b}",
	    "uri", m->ruri, "resume", 1), NULL, 0, mig_recover_done, m);
	free(m->ruri);
	m->ruri = NULL;
}

int
migrate_recover(const char *vm, const char *uri, vmq_reply_fn *fn,
    void *arg, struct qmp_error *err)
{
	struct mig	*m;

	if ((m = mig_postcopy_of(vm, err)) == NULL)
		return (-1);
	if (m->rfn != NULL) {
		qmp_error_set(err, QMP_CLS_GENERIC, "migration job %llu is "
		    "already being recovered", (unsigned long long)
		    job_id(m->job));
		return (-1);
	}
	if (strcmp(m->qstatus, "postcopy-paused") != 0) {
		qmp_error_set(err, QMP_CLS_GENERIC, "migration job %llu is "
		    "%s, not postcopy-paused: nothing to recover",
		    (unsigned long long)job_id(m->job), m->qstatus);
		return (-1);
	}
	if (uri != NULL && mig_uri_ok(uri, err) != 0)
		return (-1);
	if (uri == NULL)
		uri = m->uri;
	if ((m->ruri = strdup(uri)) == NULL) {
		qmp_error_set(err, QMP_CLS_GENERIC, "out of memory");
		return (-1);
	}
	m->rfn = fn;
	m->rarg = arg;
	m->inflight++;
	if (m->dstvm != NULL && m->dst_lost == NULL) {
		/* QEMU replaces the old listener's socket file itself */
		mig_exec_oob(m->dstvm, "migrate-recover", json_pack("{s:s}",
		    "uri", uri), mig_recover_done, m);
		return (0);
	}
	/* a URI-only job: whoever runs the destination has run
	   migrate-recover there */
	free(m->ruri);
	m->ruri = NULL;
	vmq_execute(vm_vmq(m->srcvm), "migrate", json_pack("{s:s,s:b}", "uri",
	    uri, "resume", 1), NULL, 0, mig_recover_done, m);
	return (0);
}
