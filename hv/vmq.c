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

#include <sys/queue.h>

#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "hv/mon.h"
#include "hv/vmq.h"
#include "util/defer.h"
#include "util/hist.h"

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
	struct vmq_stats		 st;
	int				 connected;	/* once */
	LIST_HEAD(, vmq_call)		 calls;		/* in flight */
	char				 name[];
};

/* One command: the caller's completion, and a local failure's error;
   what the stats need (start, row). q is for the stats only, and
   vmq_free() clears it in every call still out (a backend's may
   complete after the endpoint's memory went), so nothing in flight
   holds the endpoint. */
struct vmq_call {
	vmq_reply_fn		*fn;
	void			*arg;
	struct qmp_error	 err;
	struct vmq		*q;		/* NULL: not counted */
	LIST_ENTRY(vmq_call)	 entry;		/* q's, while q is set */
	uint64_t		 start_us;
	size_t			 row;
};

/* QEMU's commands, sorted (bsearch); the last row is "other". */
static const char *const vmq_cmds[] = {
	"add-fd",
	"balloon",
	"block-commit",
	"block-job-cancel",
	"block-job-complete",
	"block-job-pause",
	"block-job-resume",
	"block-stream",
	"block_resize",
	"blockdev-add",
	"blockdev-backup",
	"blockdev-del",
	"blockdev-mirror",
	"chardev-add",
	"chardev-remove",
	"closefd",
	"cont",
	"device_add",
	"device_del",
	"drive-backup",
	"drive-mirror",
	"dump-guest-memory",
	"getfd",
	"human-monitor-command",
	"job-cancel",
	"job-dismiss",
	"job-finalize",
	"migrate",
	"migrate-incoming",
	"migrate-set-capabilities",
	"migrate-set-parameters",
	"migrate_cancel",
	"netdev_add",
	"netdev_del",
	"object-add",
	"object-del",
	"qmp_capabilities",
	"qom-get",
	"qom-list",
	"qom-set",
	"query-balloon",
	"query-block",
	"query-block-jobs",
	"query-blockstats",
	"query-chardev",
	"query-commands",
	"query-cpus-fast",
	"query-fdsets",
	"query-hotpluggable-cpus",
	"query-jobs",
	"query-kvm",
	"query-machines",
	"query-memory-devices",
	"query-migrate",
	"query-name",
	"query-pci",
	"query-status",
	"query-version",
	"quit",
	"remove-fd",
	"screendump",
	"set_link",
	"stop",
	"system_powerdown",
	"system_reset",
	"system_wakeup",
	"transaction",
	"other",
};
_Static_assert(sizeof vmq_cmds / sizeof vmq_cmds[0] == VMQ_NCMDS,
    "VMQ_NCMDS counts vmq_cmds");

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
	LIST_INIT(&q->calls);
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

/* The totals of endpoints gone, so that totals over every VM never go
   down when a VM is removed (they are counters). */
static struct vmq_stats	vmq_gone;
static uint64_t		vmq_gone_cmds[VMQ_NCMDS][VMQ_NOUTCOMES];

static void
vmq_retire(const struct vmq_stats *st)
{
	size_t	i;
	int	k;

	vmq_gone.events_in += st->events_in;
	vmq_gone.reconnects += st->reconnects;
	vmq_gone.timeouts += st->timeouts;
	vmq_gone.commands += st->commands;
	for (k = 0; k <= HIST_NBOUNDS; k++)
		vmq_gone.latency.n[k] += st->latency.n[k];
	vmq_gone.latency.count += st->latency.count;
	vmq_gone.latency.sum_us += st->latency.sum_us;
	for (i = 0; st->by_cmd != NULL && i < VMQ_NCMDS; i++) {
		vmq_gone_cmds[i][VMQ_OK] += st->by_cmd[i][VMQ_OK];
		vmq_gone_cmds[i][VMQ_ERROR] += st->by_cmd[i][VMQ_ERROR];
	}
}

void
vmq_stats_gone(struct vmq_stats *out)
{
	*out = vmq_gone;
	out->by_cmd = vmq_gone_cmds;
}

/* The memory, from the loop or defer_flush(): all else went in
   vmq_free. */
static void
vmq_release(void *arg)
{
	struct vmq	*q = arg;

	free(q->st.by_cmd);
	free(q);
}

void
vmq_free(struct vmq *q)
{
	const struct vmq_backend	*be;
	struct mon			*m;
	struct vmq_call			*call;

	if (q == NULL || q->dead)
		return;
	/* first: what the completions below execute fails as removed */
	q->dead = 1;
	if ((m = q->mon) != NULL) {
		q->st.timeouts += mon_timeouts(m);
		q->mon = NULL;
		mon_free(m);	/* fails what is pending, now */
	}
	if ((be = q->be) != NULL) {
		q->be = NULL;
		be->gone(q->be_arg);
	}
	/* a backend's calls may complete after the memory went */
	while ((call = LIST_FIRST(&q->calls)) != NULL) {
		LIST_REMOVE(call, entry);
		call->q = NULL;
		q->st.inflight--;
	}
	vmq_retire(&q->st);
	/* the caller may be one of q's callbacks, or a completion that
	   mon_free made: the memory waits for the loop */
	defer_free(q->base, &q->reap, vmq_release, q);
}

/* ---- commands ---- */

static int
vmq_cmd_cmp(const void *key, const void *elt)
{
	return (strcmp(key, *(const char *const *)elt));
}

size_t
vmq_cmd_index(const char *cmd)
{
	const char *const	*p;

	p = bsearch(cmd, vmq_cmds, VMQ_NCMDS - 1, sizeof vmq_cmds[0],
	    vmq_cmd_cmp);
	return (p == NULL ? VMQ_NCMDS - 1 : (size_t)(p - vmq_cmds));
}

const char *
vmq_cmd_name(size_t i)
{
	return (i < VMQ_NCMDS ? vmq_cmds[i] : NULL);
}

void
vmq_stats(const struct vmq *q, struct vmq_stats *out)
{
	*out = q->st;
	if (q->mon != NULL)
		out->timeouts += mon_timeouts(q->mon);
	if (q->dead)	/* counted in vmq_stats_gone() now */
		memset(out, 0, sizeof *out);
}

static struct vmq_call *
vmq_call_new(struct vmq *q, const char *cmd, vmq_reply_fn *fn, void *arg)
{
	struct vmq_call	*call;

	if ((call = malloc(sizeof *call)) == NULL)
		return (NULL);
	call->fn = fn;
	call->arg = arg;
	call->q = NULL;
	if (!q->dead) {
		call->q = q;
		call->row = vmq_cmd_index(cmd);
		call->start_us = hist_now_us();
		LIST_INSERT_HEAD(&q->calls, call, entry);
		q->st.inflight++;
	}
	return (call);
}

/* The caller's completion, counted while the endpoint lives. */
static void
vmq_call_done(struct vmq_call *call, json_t *ret,
    const struct qmp_error *err)
{
	struct vmq	*q = call->q;

	if (q != NULL) {
		LIST_REMOVE(call, entry);
		q->st.inflight--;
		q->st.commands++;
		hist_observe(&q->st.latency, hist_now_us() - call->start_us);
		if (q->st.by_cmd == NULL)
			q->st.by_cmd = calloc(VMQ_NCMDS,
			    sizeof q->st.by_cmd[0]);
		if (q->st.by_cmd != NULL)
			q->st.by_cmd[call->row][err == NULL ? VMQ_OK :
			    VMQ_ERROR]++;
	}
	call->fn(ret, err, call->arg);
	free(call);
}

static void
vmq_mon_done(struct mon *mon, json_t *ret, const struct qmp_error *err,
    void *arg)
{
	vmq_call_done(arg, ret, err);
}

static void
vmq_be_done(json_t *ret, const struct qmp_error *err, void *arg)
{
	vmq_call_done(arg, ret, err);
}

static void
vmq_call_fail(evutil_socket_t fd, short what, void *arg)
{
	struct vmq_call	*call = arg;

	vmq_call_done(call, NULL, &call->err);
}

void
vmq_execute(struct vmq *q, const char *cmd, json_t *args, const int *fds,
    size_t nfds, vmq_reply_fn *fn, void *arg)
{
	struct vmq_call		*call;
	struct qmp_error	 oom;
	struct timeval		 tv = { 0, 0 };

	if ((call = vmq_call_new(q, cmd, fn, arg)) == NULL)
		goto nomem;
	if (q->be != NULL) {
		q->be->execute(q, q->be_arg, cmd, args, fds, nfds, vmq_be_done,
		    call);
		return;
	}
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

int
vmq_peer_pid(const struct vmq *q)
{
	if (q->be != NULL || q->mon == NULL)
		return (0);
	return (mon_peer_pid(q->mon));
}

bool
vmq_oob_offered(const struct vmq *q)
{
	return (q->be == NULL && q->mon != NULL && mon_oob_offered(q->mon));
}

int
vmq_fd(const struct vmq *q)
{
	return (q->be == NULL && q->mon != NULL ? mon_fd(q->mon) : -1);
}

void
vmq_set_postcopy_paused(struct vmq *q, bool paused)
{
	if (q->be == NULL && q->mon != NULL)
		mon_set_postcopy_paused(q->mon, paused);
}

bool
vmq_adopted(const struct vmq *q)
{
	return (q->be == NULL && q->mon != NULL && mon_adopted(q->mon));
}

void
vmq_execute_oob(struct vmq *q, const char *cmd, json_t *args,
    vmq_reply_fn *fn, void *arg)
{
	struct vmq_call		*call;
	struct qmp_error	 e;
	struct timeval		 tv = { 0, 0 };

	/* vmq_call_new, not a bare malloc: vmq_call_done reads call->q */
	if ((call = vmq_call_new(q, cmd, fn, arg)) == NULL) {
		json_decref(args);
		qmp_error_set(&e, QMP_CLS_GENERIC, "out of memory");
		fn(NULL, &e, arg);
		return;
	}
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
	vmq_call_done(call, NULL, &call->err);
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
	if (st == MON_READY) {
		if (q->connected)
			q->st.reconnects++;
		q->connected = 1;
	}
	if (!q->dead && q->ops != NULL && q->ops->state != NULL)
		q->ops->state(q, st, why, q->arg);
}

static void
vmq_tell_event(struct vmq *q, json_t *ev)
{
	q->st.events_in++;
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
