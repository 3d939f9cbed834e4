/*
 * Domain lifecycle through libvirt: one job per command.
 *
 * A job makes its libvirt call on a worker, then (for commands that
 * promise a state) polls the domain's state from a loop timer, each poll
 * again on a worker, until the promise holds or the deadline passes.
 * Cancel: a call in flight is waited for (a migration is aborted through
 * virDomainAbortJob), a snapshot taken meanwhile is deleted again, a
 * finished call is reported as such; waiting simply stops.
 */
#include "config.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <libvirt/libvirt.h>

#include "broker/core/job.h"
#include "broker/core/loop.h"
#include "broker/core/work.h"
#include "broker/svc/domain.h"
#include "hv/virt.h"

#define DOM_POLL_MS		100
#define DOM_WAIT_MS		60000	/* default deadline for a state */
#define DOM_XML_MAX		(1024 * 1024)

/* States a command promises. */
enum dom_want {
	WANT_NONE,
	WANT_RUNNING,
	WANT_PAUSED,
	WANT_OFF,	/* shutoff, or gone for a transient domain */
};

struct dom_kind {
	struct job_ops	 ops;
	enum virt_op	 op;
	enum dom_want	 want;
};

enum dom_phase {
	PH_CALL,	/* the libvirt call is on a worker */
	PH_WAIT,	/* polling for the promised state */
	PH_FORCE,	/* graceful shutdown timed out: destroying */
	PH_UNDO,	/* cancelled after the call landed: undoing */
};

struct dom_job {
	struct job		*job;
	const struct dom_kind	*k;
	char			*domain;
	char			*arg;
	struct virt_args	 va;
	int			 timeout_ms;
	bool			 force;
	bool			 forced;

	enum dom_phase		 phase;
	struct work		*w;		/* call or poll in flight */
	struct work		*abort_w;	/* virDomainAbortJob in flight */
	struct event		*poll_ev;
	struct timeval		 deadline;

	/* Filled by the worker, read by the loop after the handoff. */
	int			 rc;
	struct qmp_error	 err;
	char			*name;
	int			 state;
	bool			 have_state;	/* state polled at least once */
	bool			 msave;
};

static void	dom_start(struct job *);
static void	dom_cancel(struct job *);
static void	dom_free(void *);

#define DOM_KIND(n, o, w) \
	{ { n, "domain", dom_start, dom_cancel, dom_free }, o, w }
static const struct dom_kind dom_kinds[] = {
	DOM_KIND("domain-define", VIRT_DEFINE, WANT_NONE),
	DOM_KIND("domain-undefine", VIRT_UNDEFINE, WANT_NONE),
	DOM_KIND("domain-start", VIRT_START, WANT_RUNNING),
	DOM_KIND("domain-shutdown", VIRT_SHUTDOWN, WANT_OFF),
	DOM_KIND("domain-destroy", VIRT_DESTROY, WANT_OFF),
	DOM_KIND("domain-reboot", VIRT_REBOOT, WANT_RUNNING),
	DOM_KIND("domain-suspend", VIRT_SUSPEND, WANT_PAUSED),
	DOM_KIND("domain-resume", VIRT_RESUME, WANT_RUNNING),
	DOM_KIND("domain-save", VIRT_SAVE, WANT_OFF),
	DOM_KIND("domain-snapshot", VIRT_SNAPSHOT, WANT_NONE),
	DOM_KIND("domain-snapshot-revert", VIRT_SNAPSHOT_REVERT, WANT_NONE),
	DOM_KIND("domain-migrate", VIRT_MIGRATE, WANT_NONE),
};

static const struct dom_kind *
dom_kind(enum virt_op op)
{
	size_t	i;

	for (i = 0; i < sizeof dom_kinds / sizeof dom_kinds[0]; i++)
		if (dom_kinds[i].op == op)
			return (&dom_kinds[i]);
	return (NULL);
}

static void
dom_free(void *arg)
{
	struct dom_job	*d = arg;

	if (d->poll_ev != NULL)
		event_free(d->poll_ev);
	free(d->domain);
	free(d->arg);
	free(d->name);
	free(d);
}

static json_t *
dom_result(struct dom_job *d)
{
	json_t	*r;

	r = json_pack("{s:s}", "domain", d->name != NULL ? d->name : d->domain);
	if (d->have_state)
		json_object_set_new(r, "state",
		    json_string(virt_state_name(d->state)));
	if (d->k->op == VIRT_SNAPSHOT || d->k->op == VIRT_SNAPSHOT_REVERT)
		json_object_set_new(r, "snapshot", json_string(d->arg));
	if (d->forced)
		json_object_set_new(r, "forced", json_true());
	return (r);
}

/* ---- workers ---- */

static void
dom_call_fn(void *arg)
{
	struct dom_job	*d = arg;
	enum virt_op	 op = d->k->op;

	if (d->phase == PH_FORCE)
		op = VIRT_DESTROY;
	else if (d->phase == PH_UNDO)
		op = VIRT_SNAPSHOT_DELETE;
	d->rc = virt_domain_op(d->domain, op, &d->va,
	    op == VIRT_DEFINE ? &d->name : NULL, &d->err);
}

static void
dom_state_fn(void *arg)
{
	struct dom_job	*d = arg;

	d->rc = virt_domain_state(d->domain, &d->state, &d->msave, &d->err);
}

static void
dom_abort_fn(void *arg)
{
	struct dom_job		*d = arg;
	struct qmp_error	 err;

	/* Failure is fine: the migration may have just finished. */
	virt_domain_op(d->domain, VIRT_ABORT_JOB, &d->va, NULL, &err);
}

/* ---- loop side ---- */

static void	dom_call_done(void *, bool);
static void	dom_state_done(void *, bool);

static bool
dom_submit(struct dom_job *d, work_fn *fn, work_done_fn *done)
{
	if ((d->w = work_submit(fn, done, d)) == NULL) {
		job_fail(d->job, QMP_CLS_GENERIC, "broker is shutting down");
		return (false);
	}
	return (true);
}

static void
dom_poll_cb(evutil_socket_t fd, short events, void *arg)
{
	struct dom_job	*d = arg;

	dom_submit(d, dom_state_fn, dom_state_done);
}

static void
dom_poll_later(struct dom_job *d)
{
	struct timeval	tv = { 0, DOM_POLL_MS * 1000 };

	if (d->poll_ev == NULL &&
	    (d->poll_ev = evtimer_new(job_base(), dom_poll_cb, d)) == NULL) {
		job_fail(d->job, QMP_CLS_GENERIC, "out of memory");
		return;
	}
	evtimer_add(d->poll_ev, &tv);
}

static void
dom_wait(struct dom_job *d, int ms)
{
	struct timeval	tv = { ms / 1000, (ms % 1000) * 1000 }, now;

	gettimeofday(&now, NULL);
	timeradd(&now, &tv, &d->deadline);
	d->phase = d->phase == PH_FORCE ? PH_FORCE : PH_WAIT;
	dom_submit(d, dom_state_fn, dom_state_done);
}

static bool
dom_reached(const struct dom_job *d)
{
	switch (d->k->want) {
	case WANT_RUNNING:
		return (d->state == VIR_DOMAIN_RUNNING);
	case WANT_PAUSED:
		return (d->state == VIR_DOMAIN_PAUSED);
	case WANT_OFF:
		if (d->k->op == VIRT_SAVE)
			return (d->state == VIRT_STATE_GONE ||
			    (d->state == VIR_DOMAIN_SHUTOFF && d->msave));
		return (d->state == VIR_DOMAIN_SHUTOFF ||
		    d->state == VIRT_STATE_GONE);
	case WANT_NONE:
		break;
	}
	return (true);
}

static void
dom_state_done(void *arg, bool ran)
{
	struct dom_job	*d = arg;
	struct timeval	 now;
	json_t		*r;

	d->w = NULL;
	if (!ran) {
		job_fail(d->job, QMP_CLS_GENERIC, "broker shutting down "
		    "while waiting for domain '%s'", d->domain);
		return;
	}
	if (d->rc == -1) {
		job_fail_err(d->job, &d->err);
		return;
	}
	d->have_state = true;
	if (dom_reached(d)) {
		r = dom_result(d);
		if (job_cancel_requested(d->job))
			json_object_set_new(r, "cancel",
			    json_string("too late: the domain had already "
			    "reached the state"));
		job_conclude(d->job, r);
		return;
	}
	if (job_cancel_requested(d->job)) {
		/* The request went to libvirt and cannot be taken back; say
		   where the domain is now. */
		r = dom_result(d);
		json_object_set_new(r, "requested", json_true());
		job_cancelled(d->job, r);
		return;
	}
	gettimeofday(&now, NULL);
	if (timercmp(&now, &d->deadline, <)) {
		dom_poll_later(d);
		return;
	}
	if (d->k->op == VIRT_SHUTDOWN && d->force && d->phase != PH_FORCE) {
		d->phase = PH_FORCE;
		d->forced = true;
		dom_submit(d, dom_call_fn, dom_call_done);
		return;
	}
	if (d->k->op == VIRT_SHUTDOWN && d->phase != PH_FORCE)
		job_fail(d->job, QMP_CLS_GENERIC, "domain '%s' did not shut "
		    "down within %d ms (state %s); not forced: retry with "
		    "\"force\": true or use domain-destroy", d->domain,
		    d->timeout_ms, virt_state_name(d->state));
	else
		job_fail(d->job, QMP_CLS_GENERIC, "domain '%s' is %s, not %s, "
		    "after the deadline", d->domain, virt_state_name(d->state),
		    d->k->want == WANT_RUNNING ? "running" :
		    d->k->want == WANT_PAUSED ? "paused" : "shut off");
}

static void
dom_call_done(void *arg, bool ran)
{
	struct dom_job	*d = arg;
	json_t		*r;

	d->w = NULL;
	if (!ran) {
		job_fail(d->job, QMP_CLS_GENERIC,
		    "broker shutting down before the call was made");
		return;
	}
	if (d->abort_w != NULL) {
		/* Wait for the abort to return too: no call left behind. */
		return;
	}
	if (d->phase == PH_UNDO) {
		r = json_pack("{s:s,s:s}", "domain", d->domain, "snapshot",
		    d->arg);
		if (d->rc == 0)
			json_object_set_new(r, "undone", json_string(
			    "the snapshot was taken, then deleted again"));
		else
			json_object_set_new(r, "left", json_sprintf(
			    "the snapshot was taken; deleting it failed: %s",
			    d->err.desc));
		job_cancelled(d->job, r);
		return;
	}
	if (d->rc == -1) {
		if (job_cancel_requested(d->job) && d->k->op == VIRT_MIGRATE)
			job_cancelled(d->job, json_pack("{s:s,s:s}", "domain",
			    d->domain, "aborted", d->err.desc));
		else
			job_fail_err(d->job, &d->err);
		return;
	}
	if (d->phase == PH_FORCE) {
		dom_wait(d, DOM_WAIT_MS);
		return;
	}
	if (job_cancel_requested(d->job) && d->k->op == VIRT_SNAPSHOT &&
	    !job_stopping()) {
		d->phase = PH_UNDO;
		dom_submit(d, dom_call_fn, dom_call_done);
		return;
	}
	if (d->k->want != WANT_NONE) {
		/* Even when cancelled: one look at the state tells whether
		   the promise already holds (concluded) or not (cancelled,
		   with where the domain is). */
		dom_wait(d, d->k->op == VIRT_SHUTDOWN ? d->timeout_ms :
		    DOM_WAIT_MS);
		return;
	}
	r = dom_result(d);
	if (job_cancel_requested(d->job))
		json_object_set_new(r, "cancel", json_string(
		    "too late: libvirt had completed the call"));
	job_conclude(d->job, r);
}

static void
dom_abort_done(void *arg, bool ran)
{
	struct dom_job	*d = arg;

	d->abort_w = NULL;
	if (d->w == NULL)	/* the migration returned first */
		dom_call_done(d, true);
}

static void
dom_start(struct job *j)
{
	struct dom_job	*d = job_data(j);

	d->job = j;
	d->phase = PH_CALL;
	dom_submit(d, dom_call_fn, dom_call_done);
}

static void
dom_cancel(struct job *j)
{
	struct dom_job	*d = job_data(j);

	if (d->w != NULL && work_cancel(d->w)) {
		/* The worker never picked it up. */
		d->w = NULL;
		if (d->phase == PH_CALL)
			job_cancelled(j, NULL);
		else
			job_cancelled(j, dom_result(d));
		return;
	}
	if (d->w == NULL && d->poll_ev != NULL &&
	    evtimer_pending(d->poll_ev, NULL)) {
		/* Between polls: stop waiting now. */
		evtimer_del(d->poll_ev);
		d->rc = 0;
		json_t *r = dom_result(d);
		json_object_set_new(r, "requested", json_true());
		job_cancelled(j, r);
		return;
	}
	if (d->phase == PH_CALL && d->k->op == VIRT_MIGRATE && d->w != NULL &&
	    !job_stopping())
		d->abort_w = work_submit(dom_abort_fn, dom_abort_done, d);
	/* Otherwise the call or poll in flight ends the job when it
	   returns. */
}

/* ---- what the commands ask for ---- */

static bool
dom_name_ok(const char *s)
{
	size_t	n = strlen(s);

	if (n == 0 || n > 255)
		return (false);
	for (; *s != '\0'; s++)
		if (iscntrl((unsigned char)*s))
			return (false);
	return (true);
}

static bool
dom_snap_name_ok(const char *s)
{
	size_t	n = strlen(s);

	if (n == 0 || n > 64)
		return (false);
	for (; *s != '\0'; s++)
		if (!isalnum((unsigned char)*s) && strchr("_.-", *s) == NULL)
			return (false);
	return (true);
}

/* The <name> of a domain XML, for the job's target (and its lock). */
static char *
dom_xml_name(const char *xml)
{
	const char	*s, *e;

	if ((s = strstr(xml, "<name>")) == NULL)
		return (NULL);
	s += 6;
	if ((e = strstr(s, "</name>")) == NULL || e - s > 255)
		return (NULL);
	return (strndup(s, e - s));
}

static struct dom_job *
dom_new(enum virt_op op, const char *domain)
{
	struct dom_job	*d;

	if ((d = calloc(1, sizeof *d)) == NULL)
		return (NULL);
	d->k = dom_kind(op);
	d->state = VIRT_STATE_GONE;
	if (domain != NULL && (d->domain = strdup(domain)) == NULL) {
		free(d);
		return (NULL);
	}
	return (d);
}

/* A job for d (owned by the job from here on), started. */
static struct job *
dom_launch(struct dom_job *d, struct qmp_error *err)
{
	struct job	*j;

	if ((j = job_new(&d->k->ops, d->domain, d, err)) == NULL)
		return (NULL);
	job_start(j);
	return (j);
}

struct job *
domain_job(const struct domain_req *q, struct qmp_error *err)
{
	struct dom_job	*d;
	char		*name = NULL;
	const char	*domain = q->domain;

	if (q->op == VIRT_DEFINE) {
		if (strlen(q->arg) > DOM_XML_MAX) {
			qmp_error_set(err, QMP_CLS_GENERIC, "domain XML "
			    "larger than %d bytes", DOM_XML_MAX);
			return (NULL);
		}
		if ((name = dom_xml_name(q->arg)) == NULL ||
		    !dom_name_ok(name)) {
			free(name);
			qmp_error_set(err, QMP_CLS_GENERIC, "domain XML has "
			    "no usable <name>");
			return (NULL);
		}
		domain = name;
	} else if (!dom_name_ok(domain)) {
		qmp_error_set(err, QMP_CLS_GENERIC, "invalid domain name");
		return (NULL);
	}
	switch (q->op) {
	case VIRT_SHUTDOWN:
		if (q->timeout_s < 0 || q->timeout_s > 3600) {
			qmp_error_set(err, QMP_CLS_GENERIC, "timeout must be "
			    "0..3600 seconds");
			return (NULL);
		}
		break;
	case VIRT_SNAPSHOT:
	case VIRT_SNAPSHOT_REVERT:
		if (!dom_snap_name_ok(q->arg)) {
			qmp_error_set(err, QMP_CLS_GENERIC, "snapshot names "
			    "are 1-64 of [A-Za-z0-9_.-]");
			return (NULL);
		}
		break;
	case VIRT_MIGRATE:
		if (*q->arg == '\0' || strlen(q->arg) > 1024 ||
		    q->bandwidth < 0) {
			qmp_error_set(err, QMP_CLS_GENERIC, q->bandwidth < 0 ?
			    "bandwidth must not be negative" : "invalid uri");
			return (NULL);
		}
		break;
	default:
		break;
	}
	d = dom_new(q->op, domain);
	free(name);
	if (d == NULL || (q->arg != NULL && (d->arg = strdup(q->arg)) ==
	    NULL)) {
		if (d != NULL)
			dom_free(d);
		qmp_error_set(err, QMP_CLS_GENERIC, "out of memory");
		return (NULL);
	}
	d->va.arg = d->arg;
	d->va.live = q->live;
	d->va.bandwidth = (unsigned long)q->bandwidth;
	d->timeout_ms = q->timeout_s * 1000;
	d->force = q->force;
	return (dom_launch(d, err));
}

/* query-domains: not a job, but still off the loop. */
struct dom_query {
	domain_list_fn		*fn;
	void			*arg;
	json_t			*list;
	struct qmp_error	 err;
};

static void
dom_query_fn(void *arg)
{
	struct dom_query	*q = arg;

	q->list = virt_list_domains(&q->err);
}

static void
dom_query_done(void *arg, bool ran)
{
	struct dom_query	*q = arg;

	if (!ran) {
		json_decref(q->list);
		q->list = NULL;
		qmp_error_set(&q->err, QMP_CLS_GENERIC, "broker shutting "
		    "down");
	}
	q->fn(q->list, q->list == NULL ? &q->err : NULL, q->arg);
	free(q);
}

int
domain_list(domain_list_fn *fn, void *arg, struct qmp_error *err)
{
	struct dom_query	*q;

	if ((q = calloc(1, sizeof *q)) == NULL) {
		qmp_error_set(err, QMP_CLS_GENERIC, "out of memory");
		return (-1);
	}
	q->fn = fn;
	q->arg = arg;
	if (work_submit(dom_query_fn, dom_query_done, q) == NULL) {
		free(q);
		qmp_error_set(err, QMP_CLS_GENERIC, "broker shutting down");
		return (-1);
	}
	return (0);
}
