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

#include "broker/cmd.h"
#include "broker/conf.h"
#include "broker/job.h"
#include "broker/jobs.h"
#include "broker/sub.h"
#include "broker/work.h"
#include "hv/virt.h"

#define DOM_POLL_MS		100
#define DOM_WAIT_MS		60000	/* default deadline for a state */
#define DOM_SHUTDOWN_MS		60000	/* default graceful shutdown */
#define DOM_XML_MAX		(1024 * 1024)
#define DOM_RECONNECT_MIN_MS	500
#define DOM_RECONNECT_MAX_MS	30000

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
			return &dom_kinds[i];
	return NULL;
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
	return r;
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
		return false;
	}
	return true;
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
		return d->state == VIR_DOMAIN_RUNNING;
	case WANT_PAUSED:
		return d->state == VIR_DOMAIN_PAUSED;
	case WANT_OFF:
		if (d->k->op == VIRT_SAVE)
			return d->state == VIRT_STATE_GONE ||
			    (d->state == VIR_DOMAIN_SHUTOFF && d->msave);
		return d->state == VIR_DOMAIN_SHUTOFF ||
		    d->state == VIRT_STATE_GONE;
	case WANT_NONE:
		break;
	}
	return true;
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

/* ---- commands ---- */

static bool
dom_name_ok(const char *s)
{
	size_t	n = strlen(s);

	if (n == 0 || n > 255)
		return false;
	for (; *s != '\0'; s++)
		if (iscntrl((unsigned char)*s))
			return false;
	return true;
}

static bool
dom_snap_name_ok(const char *s)
{
	size_t	n = strlen(s);

	if (n == 0 || n > 64)
		return false;
	for (; *s != '\0'; s++)
		if (!isalnum((unsigned char)*s) && strchr("_.-", *s) == NULL)
			return false;
	return true;
}

/* The <name> of a domain XML, for the job's target (and its lock). */
static char *
dom_xml_name(const char *xml)
{
	const char	*s, *e;

	if ((s = strstr(xml, "<name>")) == NULL)
		return NULL;
	s += 6;
	if ((e = strstr(s, "</name>")) == NULL || e - s > 255)
		return NULL;
	return strndup(s, e - s);
}

static void
dom_launch(struct req *req, struct dom_job *d)
{
	struct qmp_error	 err;
	struct job		*j;

	if ((j = job_new(&d->k->ops, d->domain, d, &err)) == NULL) {
		req_error_qmp(req, &err);
		return;
	}
	job_start(j);
	req_reply(req, json_pack("{s:I}", "job", (json_int_t)job_id(j)));
}

static struct dom_job *
dom_new(enum virt_op op, const char *domain)
{
	struct dom_job	*d;

	if ((d = calloc(1, sizeof *d)) == NULL)
		return NULL;
	d->k = dom_kind(op);
	d->state = VIRT_STATE_GONE;
	if (domain != NULL && (d->domain = strdup(domain)) == NULL) {
		free(d);
		return NULL;
	}
	return d;
}

static void
dom_simple(struct req *req, json_t *args, enum virt_op op)
{
	const char	*name;
	struct dom_job	*d;

	if (req_unpack(req, args, "{s:s}", "domain", &name) != 0)
		return;
	if (!dom_name_ok(name)) {
		req_error(req, QMP_CLS_GENERIC, "invalid domain name");
		return;
	}
	if ((d = dom_new(op, name)) == NULL) {
		req_error(req, QMP_CLS_GENERIC, "out of memory");
		return;
	}
	dom_launch(req, d);
}

static void
cmd_domain_define(struct req *req, json_t *args)
{
	const char	*xml;
	struct dom_job	*d;
	char		*name;

	if (req_unpack(req, args, "{s:s}", "xml", &xml) != 0)
		return;
	if (strlen(xml) > DOM_XML_MAX) {
		req_error(req, QMP_CLS_GENERIC, "domain XML larger than %d bytes",
		    DOM_XML_MAX);
		return;
	}
	if ((name = dom_xml_name(xml)) == NULL || !dom_name_ok(name)) {
		free(name);
		req_error(req, QMP_CLS_GENERIC,
		    "domain XML has no usable <name>");
		return;
	}
	if ((d = dom_new(VIRT_DEFINE, NULL)) == NULL) {
		free(name);
		req_error(req, QMP_CLS_GENERIC, "out of memory");
		return;
	}
	d->domain = name;
	d->arg = strdup(xml);
	d->va.arg = d->arg;
	dom_launch(req, d);
}

#define DOM_SIMPLE(fn, op) \
static void \
fn(struct req *req, json_t *args) \
{ \
	dom_simple(req, args, op); \
}
DOM_SIMPLE(cmd_domain_undefine, VIRT_UNDEFINE)
DOM_SIMPLE(cmd_domain_start, VIRT_START)
DOM_SIMPLE(cmd_domain_destroy, VIRT_DESTROY)
DOM_SIMPLE(cmd_domain_reboot, VIRT_REBOOT)
DOM_SIMPLE(cmd_domain_suspend, VIRT_SUSPEND)
DOM_SIMPLE(cmd_domain_resume, VIRT_RESUME)
DOM_SIMPLE(cmd_domain_save, VIRT_SAVE)

static void
cmd_domain_shutdown(struct req *req, json_t *args)
{
	const char	*name;
	json_int_t	 timeout = DOM_SHUTDOWN_MS / 1000;
	int		 force = 0;
	struct dom_job	*d;

	if (req_unpack(req, args, "{s:s,s?I,s?b}", "domain", &name,
	    "timeout", &timeout, "force", &force) != 0)
		return;
	if (!dom_name_ok(name) || timeout < 0 || timeout > 3600) {
		req_error(req, QMP_CLS_GENERIC, !dom_name_ok(name) ?
		    "invalid domain name" : "timeout must be 0..3600 seconds");
		return;
	}
	if ((d = dom_new(VIRT_SHUTDOWN, name)) == NULL) {
		req_error(req, QMP_CLS_GENERIC, "out of memory");
		return;
	}
	d->timeout_ms = (int)timeout * 1000;
	d->force = force;
	dom_launch(req, d);
}

static void
dom_snap(struct req *req, json_t *args, enum virt_op op)
{
	const char	*name, *snap;
	struct dom_job	*d;

	if (req_unpack(req, args, "{s:s,s:s}", "domain", &name, "name",
	    &snap) != 0)
		return;
	if (!dom_name_ok(name) || !dom_snap_name_ok(snap)) {
		req_error(req, QMP_CLS_GENERIC, !dom_name_ok(name) ?
		    "invalid domain name" :
		    "snapshot names are 1-64 of [A-Za-z0-9_.-]");
		return;
	}
	if ((d = dom_new(op, name)) == NULL ||
	    (d->arg = strdup(snap)) == NULL) {
		if (d != NULL)
			dom_free(d);
		req_error(req, QMP_CLS_GENERIC, "out of memory");
		return;
	}
	d->va.arg = d->arg;
	dom_launch(req, d);
}

static void
cmd_domain_snapshot(struct req *req, json_t *args)
{
	dom_snap(req, args, VIRT_SNAPSHOT);
}

static void
cmd_domain_snapshot_revert(struct req *req, json_t *args)
{
	dom_snap(req, args, VIRT_SNAPSHOT_REVERT);
}

static void
cmd_domain_migrate(struct req *req, json_t *args)
{
	const char	*name, *uri;
	int		 live = 0;
	json_int_t	 bw = 0;
	struct dom_job	*d;

	if (req_unpack(req, args, "{s:s,s:s,s?b,s?I}", "domain", &name,
	    "uri", &uri, "live", &live, "bandwidth", &bw) != 0)
		return;
	if (!dom_name_ok(name) || *uri == '\0' || strlen(uri) > 1024 ||
	    bw < 0) {
		req_error(req, QMP_CLS_GENERIC, !dom_name_ok(name) ?
		    "invalid domain name" : bw < 0 ?
		    "bandwidth must not be negative" : "invalid uri");
		return;
	}
	if ((d = dom_new(VIRT_MIGRATE, name)) == NULL ||
	    (d->arg = strdup(uri)) == NULL) {
		if (d != NULL)
			dom_free(d);
		req_error(req, QMP_CLS_GENERIC, "out of memory");
		return;
	}
	d->va.arg = d->arg;
	d->va.live = live;
	d->va.bandwidth = (unsigned long)bw;
	dom_launch(req, d);
}

/* query-domains: not a job, but still off the loop. */
struct dom_query {
	struct req		*req;
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

	if (!ran)
		req_error(q->req, QMP_CLS_GENERIC, "broker shutting down");
	else if (q->list == NULL)
		req_error_qmp(q->req, &q->err);
	else
		req_reply(q->req, q->list);
	free(q);
}

static void
cmd_query_domains(struct req *req, json_t *args)
{
	struct dom_query	*q;

	if (req_unpack(req, args, "{}") != 0)
		return;
	if ((q = calloc(1, sizeof *q)) == NULL) {
		req_error(req, QMP_CLS_GENERIC, "out of memory");
		return;
	}
	q->req = req;
	if (work_submit(dom_query_fn, dom_query_done, q) == NULL) {
		free(q);
		req_error(req, QMP_CLS_GENERIC, "broker shutting down");
	}
}

const struct cmd_entry cmd_domain_table[] = {
	{ "domain-define", cmd_domain_define, 0 },
	{ "domain-undefine", cmd_domain_undefine, 0 },
	{ "domain-start", cmd_domain_start, 0 },
	{ "domain-shutdown", cmd_domain_shutdown, 0 },
	{ "domain-destroy", cmd_domain_destroy, 0 },
	{ "domain-reboot", cmd_domain_reboot, 0 },
	{ "domain-suspend", cmd_domain_suspend, 0 },
	{ "domain-resume", cmd_domain_resume, 0 },
	{ "domain-save", cmd_domain_save, 0 },
	{ "domain-snapshot", cmd_domain_snapshot, 0 },
	{ "domain-snapshot-revert", cmd_domain_snapshot_revert, 0 },
	{ "domain-migrate", cmd_domain_migrate, 0 },
	{ "query-domains", cmd_query_domains, 0 },
	{ NULL, NULL, 0 }
};

/* ---- the connection: events from libvirt-qemu, reconnect on loss ---- */

static struct event	*dom_reconnect_ev;
static int		 dom_reconnect_ms;
static bool		 dom_reconnecting;

static void
dom_qemu_event(const char *domain, const char *event, long long seconds,
    unsigned micros, json_t *data, void *arg)
{
	/* The domain's QMP events reach subscribers as its VM's: through
	   the registry when the domain is a VM, directly otherwise. */
	if (!virt_vm_event(domain, event, seconds, micros, data))
		sub_publish(domain, event, data != NULL ? json_incref(data) :
		    NULL);
}

static void
dom_opened(void *arg)
{
	virt_vm_opened();
}

static void
dom_lifecycle(const char *domain, bool running, void *arg)
{
	virt_vm_lifecycle(domain, running);
}

static void	dom_reconnect_later(void);

static void
dom_connect_fn(void *arg)
{
	struct qmp_error	*err = arg;

	if (virt_connect(err) == 0)
		err->cls[0] = '\0';
}

static void
dom_connect_done(void *arg, bool ran)
{
	struct qmp_error	*err = arg;
	bool			 failed = ran && err->cls[0] != '\0';

	free(err);
	dom_reconnecting = false;
	if (failed)
		dom_reconnect_later();
	else
		dom_reconnect_ms = 0;
}

static void
dom_reconnect_cb(evutil_socket_t fd, short events, void *arg)
{
	struct qmp_error	*err;

	if (dom_reconnecting || (err = calloc(1, sizeof *err)) == NULL)
		return;
	qmp_error_set(err, QMP_CLS_GENERIC, "not run");
	if (work_submit(dom_connect_fn, dom_connect_done, err) == NULL) {
		free(err);
		return;
	}
	dom_reconnecting = true;
}

static void
dom_reconnect_later(void)
{
	struct timeval	tv;

	dom_reconnect_ms = dom_reconnect_ms == 0 ? DOM_RECONNECT_MIN_MS :
	    dom_reconnect_ms * 2;
	if (dom_reconnect_ms > DOM_RECONNECT_MAX_MS)
		dom_reconnect_ms = DOM_RECONNECT_MAX_MS;
	tv.tv_sec = dom_reconnect_ms / 1000;
	tv.tv_usec = (dom_reconnect_ms % 1000) * 1000;
	if (dom_reconnect_ev != NULL && !job_stopping())
		evtimer_add(dom_reconnect_ev, &tv);
}

static void
dom_lost(const char *why, void *arg)
{
	/* Calls in flight fail by themselves; bring the connection (and
	   the monitor event stream) back. */
	sub_publish(NULL, "LIBVIRT_DISCONNECTED", json_pack("{s:s,s:s}",
	    "uri", virt_uri(), "reason", why));
	virt_vm_lost("libvirt connection lost");
	dom_reconnect_ms = 0;
	dom_reconnect_later();
}

static const struct virt_ops dom_virt_ops = {
	dom_qemu_event, dom_lost, dom_opened, dom_lifecycle
};

int
domain_init(struct event_base *base)
{
	struct timeval	tv = { 0, 0 };

	if (virt_event_register(base) != 0)
		return -1;
	virt_init(conf.libvirt_uri, &dom_virt_ops, NULL);
	/* Connect early, so libvirt-qemu events flow and running domains
	   are VMs before any command. The test driver has neither: it is
	   opened on first use. */
	if ((dom_reconnect_ev = evtimer_new(base, dom_reconnect_cb, NULL)) ==
	    NULL)
		return -1;
	if (strncmp(virt_uri(), "test:", 5) != 0)
		evtimer_add(dom_reconnect_ev, &tv);
	return 0;
}

void
domain_shutdown(void)
{
	if (dom_reconnect_ev != NULL) {
		event_free(dom_reconnect_ev);
		dom_reconnect_ev = NULL;
	}
	virt_shutdown();
}
