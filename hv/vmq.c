/*
 * A VM's QMP endpoint (see vmq.h): a monitor or a backend behind one
 * execute, one state and one feed of events to the owner.
 *
 * A command over the monitor takes a small record, only to turn the
 * monitor's completion (which names the monitor) into the caller's. A
 * backend gets the caller's completion as it is. Neither record nor
 * backend points back at the endpoint, which is why vmq_free() need not
 * wait for anything in flight.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "hv/mon.h"
#include "hv/vmq.h"
#include "util/defer.h"

struct vmq {
	struct event_base		*base;
	const struct vmq_ops		*ops;
	void				*arg;
	struct mon			*mon;		/* or */
	const struct vmq_backend	*be;
	void				*be_arg;
	enum mon_state			 be_state;
	struct defer			 reap;
	int				 dead;	/* vmq_free was called */
	char				 name[];
};

/* One command: the caller's completion, and a local failure's error. */
struct vmq_call {
	vmq_reply_fn		*fn;
	void			*arg;
	struct qmp_error	 err;
};

static void	vmq_mon_state(struct mon *, enum mon_state, const char *,
		    void *);
static void	vmq_mon_event(struct mon *, json_t *, void *);

static const struct mon_ops vmq_mon_ops = {
	vmq_mon_state,
	vmq_mon_event,
};

static struct vmq *
vmq_alloc(struct event_base *base, const char *name,
    const struct vmq_ops *ops, void *arg)
{
	struct vmq	*q;
	size_t		 len = strlen(name);

	if ((q = calloc(1, sizeof *q + len + 1)) == NULL)
		return (NULL);
	memcpy(q->name, name, len + 1);
	q->base = base;
	q->ops = ops;
	q->arg = arg;
	return (q);
}

struct vmq *
vmq_new_mon(struct event_base *base, const char *name,
    const char *socket_path, const struct mon_opts *opts,
    const struct vmq_ops *ops, void *arg)
{
	struct vmq	*q;

	if ((q = vmq_alloc(base, name, ops, arg)) == NULL)
		return (NULL);
	if ((q->mon = mon_new(base, socket_path, opts, &vmq_mon_ops,
	    q)) == NULL) {
		free(q);
		return (NULL);
	}
	return (q);
}

struct vmq *
vmq_new_backend(struct event_base *base, const char *name,
    const struct vmq_backend *be, void *be_arg, const struct vmq_ops *ops,
    void *arg)
{
	struct vmq	*q;

	if ((q = vmq_alloc(base, name, ops, arg)) == NULL)
		return (NULL);
	q->be = be;
	q->be_arg = be_arg;
	q->be_state = MON_NEGOTIATING;
	return (q);
}

/* The memory, from the loop or defer_flush(): all else went in
   vmq_free. */
static void
vmq_release(void *arg)
{
	free(arg);
}

void
vmq_free(struct vmq *q)
{
	const struct vmq_backend	*be;
	struct mon			*m;

	if (q == NULL || q->dead)
		return;
	/* first: what the completions below execute fails as removed */
	q->dead = 1;
	if ((m = q->mon) != NULL) {
		q->mon = NULL;
		mon_free(m);	/* fails what is pending, now */
	}
	if ((be = q->be) != NULL) {
		q->be = NULL;
		be->gone(q->be_arg);
	}
	/* the caller may be one of q's callbacks, or a completion that
	   mon_free made: the memory waits for the loop */
	defer_free(q->base, &q->reap, vmq_release, q);
}

/* ---- commands ---- */

static void
vmq_mon_done(struct mon *mon, json_t *ret, const struct qmp_error *err,
    void *arg)
{
	struct vmq_call	*call = arg;

	call->fn(ret, err, call->arg);
	free(call);
}

static void
vmq_call_fail(evutil_socket_t fd, short what, void *arg)
{
	struct vmq_call	*call = arg;

	call->fn(NULL, &call->err, call->arg);
	free(call);
}

void
vmq_execute(struct vmq *q, const char *cmd, json_t *args, const int *fds,
    size_t nfds, vmq_reply_fn *fn, void *arg)
{
	struct vmq_call		*call;
	struct qmp_error	 oom;
	struct timeval		 tv = { 0, 0 };

	if (q->be != NULL) {
		q->be->execute(q, q->be_arg, cmd, args, fds, nfds, fn, arg);
		return;
	}
	if ((call = malloc(sizeof *call)) == NULL)
		goto nomem;
	call->fn = fn;
	call->arg = arg;
	if (!q->dead) {
		mon_execute(q->mon, cmd, args, fds, nfds, vmq_mon_done, call);
		return;
	}
	json_decref(args);
	qmp_error_set(&call->err, QMP_CLS_GENERIC, "VM '%s' has been removed",
	    q->name);
	if (event_base_once(q->base, -1, EV_TIMEOUT, vmq_call_fail, call,
	    &tv) == 0)
		return;
	free(call);
	args = NULL;
nomem:
	/* Nothing left to defer with: as mon_execute, the one inline
	   completion. */
	json_decref(args);
	qmp_error_set(&oom, QMP_CLS_GENERIC, "out of memory");
	fn(NULL, &oom, arg);
}

/* ---- state, version, commands known ---- */

enum mon_state
vmq_state(const struct vmq *q)
{
	if (q->be != NULL)
		return (q->be_state);
	if (q->mon == NULL)
		return (MON_DISCONNECTED);
	return (mon_state(q->mon));
}

const struct qmp_version *
vmq_version(const struct vmq *q)
{
	if (q->be != NULL)
		return (q->be->version(q->be_arg));
	if (q->mon == NULL)
		return (NULL);
	return (mon_version(q->mon));
}

bool
vmq_oob_offered(const struct vmq *q)
{
	return (q->be == NULL && q->mon != NULL && mon_oob_offered(q->mon));
}

void
vmq_execute_oob(struct vmq *q, const char *cmd, json_t *args,
    vmq_reply_fn *fn, void *arg)
{
	struct vmq_call		*call;
	struct qmp_error	 e;
	struct timeval		 tv = { 0, 0 };

	if ((call = malloc(sizeof *call)) == NULL) {
		json_decref(args);
		qmp_error_set(&e, QMP_CLS_GENERIC, "out of memory");
		fn(NULL, &e, arg);
		return;
	}
	call->fn = fn;
	call->arg = arg;
	if (!q->dead && q->be == NULL) {
		mon_execute_oob(q->mon, cmd, args, vmq_mon_done, call);
		return;
	}
	json_decref(args);
	qmp_error_set(&call->err, QMP_CLS_GENERIC, q->dead ? "VM '%s' has "
	    "been removed" : "VM '%s' offers no out-of-band execution",
	    q->name);
	if (event_base_once(q->base, -1, EV_TIMEOUT, vmq_call_fail, call,
	    &tv) == 0)
		return;
	e = call->err;
	free(call);
	fn(NULL, &e, arg);
}

bool
vmq_has_command(const struct vmq *q, const char *cmd)
{
	if (q->be != NULL)
		return (q->be->has_command(q->be_arg, cmd));
	return (q->mon != NULL && mon_has_command(q->mon, cmd));
}

const char *
vmq_name(const struct vmq *q)
{
	return (q->name);
}

/* ---- what comes in: from the monitor or the backend ---- */

static void
vmq_tell_state(struct vmq *q, enum mon_state st, const char *why)
{
	if (!q->dead && q->ops != NULL && q->ops->state != NULL)
		q->ops->state(q, st, why, q->arg);
}

static void
vmq_tell_event(struct vmq *q, json_t *ev)
{
	if (!q->dead && q->ops != NULL && q->ops->event != NULL)
		q->ops->event(q, ev, q->arg);
}

static void
vmq_mon_state(struct mon *mon, enum mon_state st, const char *why, void *arg)
{
	vmq_tell_state(arg, st, why);
}

static void
vmq_mon_event(struct mon *mon, json_t *ev, void *arg)
{
	vmq_tell_event(arg, ev);
}

void
vmq_backend_event(struct vmq *q, json_t *ev)
{
	if (q->be != NULL)
		vmq_tell_event(q, ev);
}

void
vmq_backend_state(struct vmq *q, enum mon_state st, const char *why)
{
	if (q->be == NULL || q->be_state == st)
		return;
	q->be_state = st;
	vmq_tell_state(q, st, why);
}
