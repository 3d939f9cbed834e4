/*
 * The hotplug step engine. See hp.h.
 *
 * An operation is a list of steps run one at a time. A step that succeeds
 * pushes its undo; the first failure turns the operation around and the
 * undos run last-in first-out. Undo steps never stop the unwinding: a
 * "not found" means there was nothing to undo, and a monitor that is
 * down is waited for (bounded), since QEMU keeps its state across our
 * reconnects and the undo is still due.
 */
#include <sys/time.h>

#include <ctype.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "hv/hp_int.h"

#define HP_RETRY_MS		200
#define HP_RETRY_TOTAL_MS	30000

#define HP_UNDO_MAX	2

/* A step's arguments, made from its operation; *fds is pointed at the
   fd the command passes, if it passes one. */
typedef json_t	*hp_args_fn(const struct hp_op *, int arg, const int **fds);
/* A step that is more than one command sends its first itself. */
typedef void	 hp_send_fn(struct hp_op *);
/* What a step's successful reply says, beyond that it succeeded. */
typedef void	 hp_took_fn(struct hp_op *, const json_t *ret);

/* A kind of step: one row of hp_steps[] below. Left out, a member is
   0: no undo (ST_NONE), nothing dropped, no flags. */
struct hp_stepdef {
	const char	*cmd;		/* as sent, journalled and logged */
	hp_args_fn	*args;		/* the arguments, or else */
	const char	*key;		/* {key: the op's name at name} */
	size_t		 name;
	hp_send_fn	*send;		/* instead of cmd and arguments */
	enum hp_stepk	 undo[HP_UNDO_MAX];	/* in the order they run */
	enum hp_stepk	 drops;		/* undos a success makes moot */
	hp_took_fn	*took;
	unsigned	 flags;
};
/* An argument object that is one of the operation's names: {k: op->m} */
#define HP_NAME(k, m)	.key = (k), .name = offsetof(struct hp_op, m)

/* Even when doing (not undoing), a monitor that is down is waited for:
   the device is out and its backend must go too, once QEMU is back. */
#define SF_RETRY	0x1
/* An error is no failure: what it deletes is normally gone already. */
#define SF_GONE_OK	0x2
/* Done once DEVICE_DELETED is in as well as the reply (or left pending
   after the unplug timeout). */
#define SF_UNPLUG	0x4
/* Done once MEMORY_DEVICE_SIZE_CHANGE says the guest has the size asked,
   as well as the reply; failed (and undone) after the op's timeout. */
#define SF_RESIZE	0x8

static void	hp_finish(struct hp_op *);
static void	hp_del_timeout(evutil_socket_t, short, void *);
static void	hp_step_reply(struct hp_op *, json_t *,
		    const struct qmp_error *);
static const struct hp_stepdef hp_steps[ST_NKINDS];

void
hp_log(struct hp_vm *vm, int prio, const char *fmt, ...)
{
	char	buf[1024];
	va_list	ap;

	if (vm->ops->log == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	vm->ops->log(vm->ctx, prio, buf);
}

bool
hp_ready(const struct hp_vm *vm)
{
	return (vmq_state(vm->q) == MON_READY);
}

bool
hp_id_valid(const char *s)
{
	size_t	n;

	/* QEMU's id_wellformed(): a letter, then letters, digits, '-',
	   '.', '_' */
	if (s == NULL || (n = strlen(s)) == 0 || n > HP_ID_MAX ||
	    !isalpha((unsigned char)s[0]))
		return (false);
	for (; *s != '\0'; s++) {
		if (!isalnum((unsigned char)*s) && *s != '-' && *s != '.' &&
		    *s != '_')
			return (false);
	}
	return (true);
}

/* Block node names must stay under 32 bytes, ids may be 64: derive a
   short stable name from the id. */
void
hp_node_name(char *buf, size_t len, const char *prefix, const char *id)
{
	uint32_t	h = 2166136261u;

	for (; *id != '\0'; id++)
		h = (h ^ (unsigned char)*id) * 16777619u;
	snprintf(buf, len, "%s%08x", prefix, h);
}

struct hp_vm *
hp_vm_new(struct event_base *base, struct vmq *q, const struct hp_ops *ops,
    void *ctx, int unplug_timeout_ms)
{
	struct hp_vm	*vm;

	if ((vm = calloc(1, sizeof *vm)) == NULL)
		return (NULL);
	vm->base = base;
	vm->q = q;
	vm->ops = ops;
	vm->ctx = ctx;
	vm->unplug_timeout_ms = unplug_timeout_ms > 0 ? unplug_timeout_ms :
	    10000;
	LIST_INIT(&vm->ops_list);
	return (vm);
}

size_t
hp_vm_busy(const struct hp_vm *vm)
{
	return (vm->nops);
}

/* The memory, from the loop (or defer_flush): no event, no callback. */
static void
hp_vm_release(void *arg)
{
	struct hp_vm	*vm = arg;

	pci_resv_free_all(&vm->resv);
	free(vm->hist);
	free(vm);
}

/* Once dead, the last holder to go queues the memory; nops reaches 0
   only once then, since a dead hp_vm takes no new operation. */
static void
hp_vm_maybe_free(struct hp_vm *vm)
{
	if (vm->dead && vm->nops == 0)
		defer_free(vm->base, &vm->reap, hp_vm_release, vm);
}

static void
hp_close_fds(struct hp_op *op)
{
	size_t	i;

	for (i = 0; i < op->nfds; i++) {
		if (op->fds[i] >= 0)
			close(op->fds[i]);
		op->fds[i] = -1;
	}
	if (op->disk.fd >= 0)
		close(op->disk.fd);
	op->disk.fd = -1;
}

void
hp_op_free(struct hp_op *op)
{
	struct hp_vm	*vm = op->vm;
	size_t		 i;

	LIST_REMOVE(op, entry);
	for (i = 0; i < op->ncpus; i++)
		json_decref(op->cpus[i]);
	vm->nops--;
	hp_close_fds(op);
	if (op->timer != NULL)
		event_free(op->timer);
	if (op->retry != NULL)
		event_free(op->retry);
	hp_scan_end(op);
	json_decref(op->disk.node);
	json_decref(op->result);
	json_decref(op->fdsets);
	free(op);
	hp_vm_maybe_free(vm);
}

static struct hp_stats	hp_st;
static const char *const hp_st_names[HP_NSTATKINDS] = {
	"nic-add", "nic-del", "disk-add", "disk-del", "reconcile", "query",
	"cpu-add", "cpu-del", "mem-add", "mem-del", "mem-resize",
};

const struct hp_stats *
hp_stats(void)
{
	return (&hp_st);
}

const char *
hp_stat_kind_name(enum hp_stat_kind k)
{
	return ((unsigned)k < HP_NSTATKINDS ? hp_st_names[k] : NULL);
}

static void
hp_count(const struct hp_op *op, bool ok)
{
	enum hp_stat_kind	k;

	if (op->reconcile)
		k = HP_ST_RECONCILE;
	else if (op->query)
		k = HP_ST_QUERY;
	else if (op->kind == HP_NIC)
		k = op->add ? HP_ST_NIC_ADD : HP_ST_NIC_DEL;
	else if (op->kind == HP_DISK)
		k = op->add ? HP_ST_DISK_ADD : HP_ST_DISK_DEL;
	else if (op->kind == HP_CPU)
		k = op->add ? HP_ST_CPU_ADD : HP_ST_CPU_DEL;
	else if (op->resize)
		k = HP_ST_MEM_RESIZE;
	else
		k = op->add ? HP_ST_MEM_ADD : HP_ST_MEM_DEL;
	if (ok)
		hp_st.ok[k]++;
	else
		hp_st.error[k]++;
	hist_observe(&hp_st.latency[k], hist_now_us() - op->start_us);
}

void
hp_answer(struct hp_op *op, json_t *ret, const struct qmp_error *err)
{
	hp_done_fn	*done = op->done;

	if (op->answered) {
		json_decref(ret);
		return;
	}
	hp_count(op, err == NULL);
	op->answered = true;
	op->done = NULL;
	if (done != NULL)
		done(ret, err, op->arg);
	else
		json_decref(ret);
}

void
hp_vm_free(struct hp_vm *vm)
{
	struct hp_op		*op, *next;
	struct qmp_error	 err;

	if (vm == NULL || vm->dead)
		return;
	vm->dead = true;
	qmp_error_set(&err, QMP_CLS_GENERIC, "the VM was removed while the "
	    "hotplug operation was in progress");
	/* held by this call too, so that freeing the last op below does
	   not queue the memory before the walk is done */
	vm->nops++;
	for (op = LIST_FIRST(&vm->ops_list); op != NULL; op = next) {
		next = LIST_NEXT(op, entry);
		hp_answer(op, NULL, &err);
		hp_close_fds(op);
		if (op->timer != NULL)
			event_del(op->timer);
		if (op->retry != NULL)
			event_del(op->retry);
		if (!op->inflight)
			hp_op_free(op);
	}
	vm->nops--;
	hp_vm_maybe_free(vm);
}

/* Every reply to an operation's command starts here, so that callbacks
   need not: nothing is in flight any more, and an operation whose VM
   was removed meanwhile was answered by hp_vm_free and is only freed
   (the last one lets the hp_vm go). */
static void
hp_exec_done(json_t *ret, const struct qmp_error *err, void *arg)
{
	struct hp_op	*op = arg;

	op->inflight = false;
	if (op->vm->dead) {
		hp_op_free(op);
		return;
	}
	op->exec_cb(op, ret, err);
}

void
hp_exec(struct hp_op *op, const char *cmd, json_t *args, const int *fds,
    size_t nfds, hp_exec_fn *cb)
{
	op->inflight = true;
	op->exec_cb = cb;
	vmq_execute(op->vm->q, cmd, args, fds, nfds, hp_exec_done, op);
}

/* The first step is deferred to the loop and comes back as a reply
   would: callers get their completion never from inside the call, as
   with vmq_execute. */
static void
hp_start_cb(evutil_socket_t fd, short ev, void *arg)
{
	hp_exec_done(NULL, NULL, arg);
}

static void
hp_started(struct hp_op *op, json_t *ret, const struct qmp_error *err)
{
	hp_next(op);
}

void
hp_start(struct hp_op *op)
{
	op->inflight = true;
	op->exec_cb = hp_started;
	if (event_base_once(op->vm->base, -1, EV_TIMEOUT, hp_start_cb, op,
	    NULL) != 0)
		hp_start_cb(-1, 0, op);
}

static const char *const hp_kind_names[] = { "nic", "disk", "cpu", "mem" };

static json_t *
hp_record(struct hp_op *op, const struct hp_step *st)
{
	json_t	*rec, *names;
	size_t	 i;

	rec = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}",
	    "op", op->name, "id", op->id,
	    "kind", hp_kind_names[op->kind],
	    "phase", op->undoing ? "undo" : "do",
	    "step", hp_steps[st->k].cmd,
	    "netdev", op->netdev, "node", op->node, "opaque", op->opaque);
	if (rec == NULL)
		return (NULL);
	names = json_array();
	for (i = 0; i < op->nfds; i++)
		if (op->fdname[i][0] != '\0')
			json_array_append_new(names,
			    json_string(op->fdname[i]));
	json_object_set_new(rec, "fdnames", names);
	if (op->kind == HP_CPU) {
		names = json_array();
		for (i = 0; i < op->ncpus; i++)
			json_array_append_new(names,
			    json_string(hp_dev_id(op, (int)i)));
		json_object_set_new(rec, "cpus", names);
	}
	if (op->memdev[0] != '\0')
		json_object_set_new(rec, "memdev", json_string(op->memdev));
	if (op->fdset >= 0)
		json_object_set_new(rec, "fdset", json_integer(op->fdset));
	if (op->bus[0] != '\0') {
		json_object_set_new(rec, "bus", json_string(op->bus));
		json_object_set_new(rec, "slot", json_integer(op->slot));
	}
	return (rec);
}

static int
hp_journal(struct hp_op *op, const struct hp_step *st)
{
	json_t	*rec;
	int	 rc;

	if (op->vm->ops->journal == NULL)
		return (0);
	if (st == NULL)
		return (op->vm->ops->journal(op->vm->ctx, op->id, NULL));
	if ((rec = hp_record(op, st)) == NULL)
		return (-1);
	rc = op->vm->ops->journal(op->vm->ctx, op->id, rec);
	json_decref(rec);
	return (rc);
}

void
hp_push_undo(struct hp_op *op, enum hp_stepk k, int arg)
{
	if (op->nundo < HP_MAX_STEPS) {
		op->undo[op->nundo].k = k;
		op->undo[op->nundo].arg = arg;
		op->nundo++;
	}
}

/* Drops pending undos of kind k (their target is gone another way). */
static void
hp_drop_undo(struct hp_op *op, enum hp_stepk k)
{
	size_t	i, j;

	for (i = j = 0; i < op->nundo; i++)
		if (op->undo[i].k != k)
			op->undo[j++] = op->undo[i];
	op->nundo = j;
}

static void
hp_fail(struct hp_op *op, const struct qmp_error *err)
{
	if (!op->failed) {
		op->err = *err;
		op->failed = true;
	}
	if (!op->undoing) {
		op->undoing = true;
		hp_log(op->vm, LOG_NOTICE, "%s %s: %s failed (%s), undoing "
		    "%zu step(s)", op->name, op->id,
		    hp_steps[op->step.k].cmd, err->desc, op->nundo);
	}
}

/* --- device_del and its DEVICE_DELETED --------------------------------- */

/* Listens before device_del goes out: DEVICE_DELETED may come first. */
static void
hp_unplug_arm(struct hp_op *op)
{
	struct hp_vm	*vm = op->vm;
	struct timeval	 tv;

	op->del_wait = true;
	op->del_replied = op->del_seen = false;
	if (op->timer == NULL)
		op->timer = evtimer_new(vm->base, hp_del_timeout, op);
	if (op->timer != NULL && !op->pending) {
		tv.tv_sec = vm->unplug_timeout_ms / 1000;
		tv.tv_usec = (vm->unplug_timeout_ms % 1000) * 1000;
		evtimer_add(op->timer, &tv);
	}
}

static void
hp_unplug_disarm(struct hp_op *op)
{
	op->del_wait = false;
	if (op->timer != NULL)
		event_del(op->timer);
}

/* device_del is done once both its reply and DEVICE_DELETED are in. */
static void
hp_del_check(struct hp_op *op)
{
	if (!op->del_wait || !op->del_replied || !op->del_seen)
		return;
	hp_unplug_disarm(op);
	hp_next(op);
}

static void
hp_del_timeout(evutil_socket_t fd, short ev, void *arg)
{
	struct hp_op		*op = arg;
	struct qmp_error	 err;

	if (!op->del_wait || op->pending)
		return;
	op->pending = true;
	hp_log(op->vm, LOG_NOTICE, "%s %s: no DEVICE_DELETED within %d ms; "
	    "unplug left pending", op->name, op->del_id,
	    op->vm->unplug_timeout_ms);
	if (op->undoing)
		hp_answer(op, NULL, &op->err);
	else {
		qmp_error_set(&err, QMP_CLS_GENERIC, "unplug of '%s' is still "
		    "pending: the guest has not released the device within "
		    "%d ms; its backend is kept until it does", op->del_id,
		    op->vm->unplug_timeout_ms);
		hp_answer(op, NULL, &err);
	}
}

/* --- qom-set requested-size and its MEMORY_DEVICE_SIZE_CHANGE --------- */

/* The same flags as device_del's wait: del_seen is "the size is in". */
static void
hp_resize_check(struct hp_op *op)
{
	struct qmp_error	err;

	if (!op->del_wait || !op->del_replied || (!op->del_seen &&
	    !op->pending))
		return;
	hp_unplug_disarm(op);
	if (!op->del_seen) {
		qmp_error_set(&err, QMP_CLS_GENERIC, "mem-resize of '%s': the "
		    "guest did not follow within %d ms: it has %lld MiB of "
		    "the %lld MiB requested (a guest without the virtio_mem "
		    "driver never does); requested-size set back to %lld MiB",
		    op->id, op->rs_timeout_ms, op->rs_now >> 20,
		    op->rs_want >> 20, op->rs_prev >> 20);
		hp_fail(op, &err);
	}
	hp_next(op);
}

static void
hp_resize_timeout(evutil_socket_t fd, short ev, void *arg)
{
	struct hp_op	*op = arg;

	/* pending: the time is up (the reply may still be out) */
	op->pending = true;
	hp_resize_check(op);
}

static void
hp_resize_arm(struct hp_op *op)
{
	struct timeval	tv;

	op->del_wait = true;
	op->del_replied = op->del_seen = op->pending = false;
	if (op->timer == NULL)
		op->timer = evtimer_new(op->vm->base, hp_resize_timeout, op);
	if (op->timer != NULL) {
		tv.tv_sec = op->rs_timeout_ms / 1000;
		tv.tv_usec = (op->rs_timeout_ms % 1000) * 1000;
		evtimer_add(op->timer, &tv);
	}
}

/* MEMORY_DEVICE_SIZE_CHANGE: the device's size now, after each change
   the guest made (QEMU rate-limits it, the last one always comes). */
static void
hp_resize_event(struct hp_vm *vm, const json_t *data)
{
	const char	*id, *path, *pre = "/machine/peripheral/";
	struct hp_op	*op, *next;
	const json_t	*size = json_object_get(data, "size");

	id = json_string_value(json_object_get(data, "id"));
	path = json_string_value(json_object_get(data, "qom-path"));
	if (id == NULL && path != NULL && strncmp(path, pre, strlen(pre)) == 0)
		id = path + strlen(pre);
	if (id == NULL || !json_is_integer(size))
		return;
	for (op = LIST_FIRST(&vm->ops_list); op != NULL; op = next) {
		next = LIST_NEXT(op, entry);
		if (!op->resize || !op->del_wait || strcmp(op->id, id) != 0)
			continue;
		op->rs_now = json_integer_value(size);
		if (op->rs_now == op->rs_want) {
			op->del_seen = true;
			hp_resize_check(op);
		}
	}
}

/*
 * Whether path is a part of the CPU op unplugs: its lapic. QEMU 7.2
 * under TCG never finalizes an unplugged CPU (a reference stays), so
 * the DEVICE_DELETED naming the CPU never comes; the CPU's lapic, which
 * it unparents while the CPU is unrealized and removed, does report.
 * That happens only once the guest ejected the CPU, so it means the
 * same: the CPU is out (query-hotpluggable-cpus shows the slot free).
 */
static bool
hp_cpu_part(const struct hp_op *op, const char *path)
{
	const char	*pre = "/machine/peripheral/";
	size_t		 n = strlen(pre), m = strlen(op->del_id);

	return (path != NULL && strncmp(path, pre, n) == 0 &&
	    strncmp(path + n, op->del_id, m) == 0 &&
	    strcmp(path + n + m, "/lapic") == 0);
}

void
hp_vm_event(struct hp_vm *vm, const json_t *event)
{
	struct hp_op	*op, *next;
	const char	*name, *dev, *path;

	/* a dead hp_vm's operations were answered: nothing to wait for */
	if (vm->dead)
		return;
	name = json_string_value(json_object_get(event, "event"));
	if (name != NULL && strcmp(name, "MEMORY_DEVICE_SIZE_CHANGE") == 0) {
		hp_resize_event(vm, json_object_get(event, "data"));
		return;
	}
	if (name == NULL || strcmp(name, "DEVICE_DELETED") != 0)
		return;
	/* QEMU also reports .../virtio-backend without "device": only the
	   one naming the device means the guest let go of it */
	dev = json_string_value(json_object_get(json_object_get(event,
	    "data"), "device"));
	path = json_string_value(json_object_get(json_object_get(event,
	    "data"), "path"));
	for (op = LIST_FIRST(&vm->ops_list); op != NULL; op = next) {
		next = LIST_NEXT(op, entry);
		if (op->del_wait && (dev != NULL ?
		    strcmp(op->del_id, dev) == 0 :
		    op->kind == HP_CPU && hp_cpu_part(op, path))) {
			if (op->kind == HP_CPU)
				vm->cpu_unplugged = true;
			op->del_seen = true;
			hp_del_check(op);
		}
	}
}

/* --- a monitor that is down --------------------------------------------- */

static void
hp_retry_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct hp_op	*op = arg;

	/* the step to retry was pushed back; run it again */
	hp_next(op);
}

/* The monitor is down (EOF, timeout): QEMU keeps its state across our
   reconnect, so the step is still due. Retries it, bounded, and says
   whether it did. */
static bool
hp_retry(struct hp_op *op)
{
	struct timeval	now, tv;

	if (hp_ready(op->vm))
		return (false);
	gettimeofday(&now, NULL);
	if (!timerisset(&op->retry_until)) {
		tv.tv_sec = HP_RETRY_TOTAL_MS / 1000;
		tv.tv_usec = (HP_RETRY_TOTAL_MS % 1000) * 1000;
		timeradd(&now, &tv, &op->retry_until);
	} else if (timercmp(&now, &op->retry_until, >))
		return (false);
	if (op->retry == NULL)
		op->retry = evtimer_new(op->vm->base, hp_retry_cb, op);
	if (op->retry == NULL)
		return (false);
	if (op->undoing)
		hp_push_undo(op, op->step.k, op->step.arg);
	else
		op->cur--;
	tv.tv_sec = 0;
	tv.tv_usec = HP_RETRY_MS * 1000;
	evtimer_add(op->retry, &tv);
	return (true);
}

/* --- steps that are more than one command ------------------------------ */

static void
hp_scan_done(struct hp_op *op, struct pci_map *m, const struct qmp_error *err)
{
	struct hp_vm		*vm = op->vm;
	struct pci_place	*p;
	struct qmp_error	 e;
	const char		*bus = op->kind == HP_NIC ? op->nic.bus :
				    op->kind == HP_MEM ? op->mem.bus :
				    op->disk.bus;
	int			 slot = op->kind == HP_NIC ? op->nic.slot :
				    op->kind == HP_MEM ? op->mem.slot :
				    op->disk.slot;

	if (m != NULL) {
		pci_map_apply(m, vm->resv);
		if (vm->hist == NULL)
			vm->hist = calloc(1, sizeof *vm->hist);
		if (vm->hist != NULL)
			pci_hist_apply(m, vm->hist);
		p = pci_alloc(m, bus[0] != '\0' ? bus : NULL, slot, op->id, &e);
		if (p == NULL)
			err = &e;
		else {
			if (vm->hist != NULL)
				pci_hist_note(vm->hist, p);
			snprintf(op->bus, sizeof op->bus, "%s", p->bus);
			op->slot = p->slot;
			op->resv = pci_resv_add(&vm->resv, p->bus, p->slot,
			    op->id);
		}
	}
	hp_scan_end(op);
	/* nothing was sent yet: a failure has no undo, just the error */
	hp_step_reply(op, NULL, err);
}

static void
hp_scan_send(struct hp_op *op)
{
	hp_scan_start(op, hp_scan_done);
}

/* remove-fd for every fdset carrying our opaque, one after the other;
   a failure is logged and the walk goes on. */
static void	hp_removefd_next(struct hp_op *);

static void
hp_removefd_done(struct hp_op *op, json_t *ret, const struct qmp_error *err)
{
	if (err != NULL)
		hp_log(op->vm, LOG_WARNING, "%s %s: remove-fd: %s", op->name,
		    op->id, err->desc);
	op->ifdset++;
	hp_removefd_next(op);
}

static void
hp_removefd_next(struct hp_op *op)
{
	json_t	*id;

	if (op->ifdset >= json_array_size(op->fdsets)) {
		json_decref(op->fdsets);
		op->fdsets = NULL;
		hp_step_reply(op, NULL, NULL);
		return;
	}
	id = json_array_get(op->fdsets, op->ifdset);
	hp_exec(op, "remove-fd", json_pack("{s:O}", "fdset-id", id), NULL, 0,
	    hp_removefd_done);
}

static void
hp_fdsets_done(struct hp_op *op, json_t *ret, const struct qmp_error *err)
{
	const json_t	*set, *fd;
	const char	*opq;
	size_t		 i, j;

	if (err != NULL) {
		hp_step_reply(op, NULL, err);
		return;
	}
	json_decref(op->fdsets);
	op->fdsets = json_array();
	op->ifdset = 0;
	json_array_foreach(ret, i, set) {
		json_array_foreach(json_object_get(set, "fds"), j, fd) {
			opq = json_string_value(json_object_get(fd, "opaque"));
			if (opq != NULL && strcmp(opq, op->opaque) == 0) {
				json_array_append(op->fdsets,
				    json_object_get(set, "fdset-id"));
				break;
			}
		}
	}
	hp_removefd_next(op);
}

static void
hp_fdsets_send(struct hp_op *op)
{
	hp_exec(op, "query-fdsets", NULL, NULL, 0, hp_fdsets_done);
}

/* add-fd answers with the fdset it made: blockdev-add opens it by that
   number and remove-fd lets go of it. */
static void
hp_addfd_took(struct hp_op *op, const json_t *ret)
{
	const json_t	*v = json_object_get(ret, "fdset-id");

	op->fdset = json_is_integer(v) ? json_integer_value(v) : -1;
}

/* --- the step kinds ----------------------------------------------------- */

/*
 * One row per kind of step: [kind] = { command, arguments, and where
 * needed its undo, the undos it makes moot, what its reply says, flags }.
 *
 * A row's undo steps are taken with the step's own arg, in the order
 * listed, once a later step fails. They are pushed when the step
 * succeeds, and also when its reply is an error, since the reply may
 * have been lost after QEMU acted (every undo tolerates "not found").
 */
static const struct hp_stepdef hp_steps[ST_NKINDS] = {
	[ST_SCAN] =		{ .cmd = "query-pci", .send = hp_scan_send },
	[ST_GETFD] =		{ .cmd = "getfd", .args = hp_getfd_args,
	    .undo = { ST_CLOSEFD } },
	[ST_CLOSEFD] =		{ .cmd = "closefd", .args = hp_fdname_args },
	/* QEMU took the named fds out of the monitor's list */
	[ST_NETDEV_ADD] =	{ .cmd = "netdev_add", .args = hp_netdev_args,
	    .undo = { ST_NETDEV_DEL }, .drops = ST_CLOSEFD },
	[ST_NETDEV_DEL] =	{ .cmd = "netdev_del", HP_NAME("id", netdev),
	    .flags = SF_RETRY },
	[ST_ADDFD] =		{ .cmd = "add-fd", .args = hp_addfd_args,
	    .undo = { ST_REMOVEFD_OPAQUE }, .took = hp_addfd_took },
	/* the fdset now lives exactly as long as the node */
	[ST_REMOVEFD] =		{ .cmd = "remove-fd", .args = hp_removefd_args,
	    .drops = ST_REMOVEFD_OPAQUE },
	/* query-fdsets, then remove-fd of each fdset with our opaque */
	[ST_REMOVEFD_OPAQUE] =	{ .cmd = "remove-fd", .send = hp_fdsets_send },
	[ST_BLOCKDEV_ADD] =	{ .cmd = "blockdev-add", .args = hp_blockdev_args,
	    .undo = { ST_BLOCKDEV_DEL, ST_BLOCKDEV_DEL_FILE } },
	[ST_BLOCKDEV_DEL] =	{ .cmd = "blockdev-del", HP_NAME("node-name", node),
	    .flags = SF_RETRY },
	/* QEMU deletes the file node along with the format node it was
	   created under; asked again so that a QEMU (or fake) that keeps
	   it does not keep it for long */
	[ST_BLOCKDEV_DEL_FILE] = { .cmd = "blockdev-del", HP_NAME("node-name", fnode),
	    .flags = SF_GONE_OK },
	[ST_DEVICE_ADD] =	{ .cmd = "device_add", .args = hp_device_args,
	    .undo = { ST_DEVICE_DEL } },
	[ST_DEVICE_DEL] =	{ .cmd = "device_del", .args = hp_devdel_args,
	    .flags = SF_UNPLUG },
	/* reads only: a failure has nothing to undo */
	[ST_CPU_SCAN] =		{ .cmd = "query-hotpluggable-cpus",
	    .send = hp_cpu_scan_send },
	[ST_MEM_CHECK] =	{ .cmd = "query-memory-devices",
	    .send = hp_mem_check_send },
	[ST_OBJECT_ADD] =	{ .cmd = "object-add", .args = hp_object_args,
	    .undo = { ST_OBJECT_DEL } },
	/* QEMU refuses while the DIMM still uses it: retried as the other
	   backends' dels are */
	[ST_OBJECT_DEL] =	{ .cmd = "object-del", HP_NAME("id", memdev),
	    .flags = SF_RETRY },
	[ST_MEM_RESIZE] =	{ .cmd = "qom-set", .args = hp_resize_args,
	    .undo = { ST_MEM_RESIZE_BACK }, .flags = SF_RESIZE },
	[ST_MEM_RESIZE_BACK] =	{ .cmd = "qom-set",
	    .args = hp_resize_back_args, .flags = SF_RETRY },
};

void
hp_push_undo_of(struct hp_op *op, enum hp_stepk k, int arg)
{
	const enum hp_stepk	*u = hp_steps[k].undo;
	size_t			 n = 0;

	/* a stack: the one to run first goes on last */
	while (n < HP_UNDO_MAX && u[n] != ST_NONE)
		n++;
	while (n > 0)
		hp_push_undo(op, u[--n], arg);
}

/* --- running them ------------------------------------------------------- */

static void
hp_take(struct hp_op *op, const struct hp_step *st)
{
	const struct hp_stepdef	*d = &hp_steps[st->k];
	const int		*fds = NULL;
	json_t			*a;

	op->step = *st;
	/* with the journal, what a post-mortem needs: which step went out */
	hp_log(op->vm, LOG_DEBUG, "%s %s: %s%s %d", op->name, op->id,
	    op->undoing ? "undo " : "", d->cmd, st->arg);
	if (d->send != NULL) {
		d->send(op);
		return;
	}
	if (d->args != NULL)
		a = d->args(op, st->arg, &fds);
	else
		a = json_pack("{s:s}", d->key, (const char *)op + d->name);
	if (d->flags & SF_UNPLUG) {
		snprintf(op->del_id, sizeof op->del_id, "%s",
		    hp_dev_id(op, st->arg));
		hp_unplug_arm(op);
	}
	if (d->flags & SF_RESIZE)
		hp_resize_arm(op);
	hp_exec(op, d->cmd, a, fds, fds != NULL ? 1 : 0, hp_step_reply);
}

/* An undo that fails never stops the unwinding; a step that fails turns
   the operation around, unless its row says otherwise. */
static void
hp_step_failed(struct hp_op *op, const struct hp_stepdef *d,
    const struct qmp_error *err)
{
	if (op->undoing) {
		if (hp_retry(op))
			return;
		/* "not found" is the common, harmless case: the step being
		   undone never took effect */
		hp_log(op->vm, LOG_DEBUG, "%s %s: undo %s: %s", op->name,
		    op->id, d->cmd, err->desc);
	} else if (!(d->flags & SF_GONE_OK)) {
		if ((d->flags & SF_RETRY) && hp_retry(op))
			return;
		/* the reply may have been lost after QEMU acted: undo this
		   step too (its undo tolerates absence) */
		hp_push_undo_of(op, op->step.k, op->step.arg);
		hp_fail(op, err);
	}
	if (d->flags & (SF_UNPLUG | SF_RESIZE))
		hp_unplug_disarm(op);
	hp_next(op);
}

/* How every step ends, whether it was one command or more: its row says
   what follows. */
static void
hp_step_reply(struct hp_op *op, json_t *ret, const struct qmp_error *err)
{
	const struct hp_stepdef	*d = &hp_steps[op->step.k];

	if (err != NULL) {
		hp_step_failed(op, d, err);
		return;
	}
	if (!op->undoing) {
		if (d->drops != ST_NONE)
			hp_drop_undo(op, d->drops);
		if (d->took != NULL)
			d->took(op, ret);
		hp_push_undo_of(op, op->step.k, op->step.arg);
	}
	if (d->flags & SF_UNPLUG) {
		op->del_replied = true;
		hp_del_check(op);
		return;
	}
	if (d->flags & SF_RESIZE) {
		op->del_replied = true;
		hp_resize_check(op);
		return;
	}
	hp_next(op);
}

void
hp_cpumem_reply(struct hp_op *op, json_t *ret, const struct qmp_error *err)
{
	hp_step_reply(op, ret, err);
}

void
hp_next(struct hp_op *op)
{
	struct hp_step		 st;
	struct qmp_error	 err;

	if (op->undoing) {
		if (op->nundo == 0) {
			hp_finish(op);
			return;
		}
		st = op->undo[--op->nundo];
	} else {
		if (op->cur == op->nsteps) {
			hp_finish(op);
			return;
		}
		st = op->steps[op->cur++];
	}
	if (hp_journal(op, &st) != 0) {
		qmp_error_set(&err, QMP_CLS_GENERIC, "could not record the "
		    "hotplug step in the journal: refusing to take it");
		if (op->undoing) {
			/* keep unwinding: undoing is safer than stopping */
			hp_log(op->vm, LOG_ERR, "%s %s: journal write failed "
			    "during undo", op->name, op->id);
		} else {
			op->step = st;
			hp_fail(op, &err);
			hp_next(op);
			return;
		}
	}
	hp_take(op, &st);
}

static void
hp_finish(struct hp_op *op)
{
	struct hp_vm	*vm = op->vm;
	json_t		*ret, *names;
	char		 addr[8];
	size_t		 i;
	bool		 late;

	late = op->answered;
	if (op->resv != NULL) {
		if (!op->failed && op->add) {
			/* in: stays reserved until no stale snapshot remains */
			op->resv->in = true;
			if (vm->scanning == 0)
				pci_resv_prune(&vm->resv);
		} else
			pci_resv_del(&vm->resv, op->resv);
		op->resv = NULL;
	}
	hp_journal(op, NULL);
	if (op->reconcile && op->add) {
		/* hp_rec_periph_done said what it decided; this is the end
		   (a del's end is the unplug, told as for a late one) */
		hp_log(vm, LOG_INFO, "%s %s: journal reconciled", op->name,
		    op->id);
	} else if (op->failed) {
		hp_log(vm, LOG_INFO, "%s %s: rolled back: %s", op->name, op->id,
		    op->err.desc);
		hp_answer(op, NULL, &op->err);
	} else if (op->resize) {
		/* (a reconciled one was answered and has nothing to say) */
		if (!op->reconcile)
			hp_log(vm, LOG_INFO, "%s %s: the guest has %lld MiB",
			    op->name, op->id, op->rs_want >> 20);
		hp_answer(op, json_pack("{s:s, s:I}", "id", op->id, "size",
		    (json_int_t)op->rs_want), NULL);
	} else if (op->kind == HP_CPU) {
		names = json_array();
		for (i = 0; i < op->ncpus; i++)
			json_array_append_new(names,
			    json_string(hp_dev_id(op, (int)i)));
		hp_log(vm, LOG_INFO, "%s: %zu CPU(s) %s", op->name, op->ncpus,
		    op->add ? "plugged" : "unplugged");
		hp_answer(op, json_pack("{s:o}", "ids", names), NULL);
	} else if (op->add) {
		hp_addr(addr, sizeof addr, op->slot);
		ret = json_pack("{s:s}", "id", op->id);
		if (op->bus[0] != '\0') {
			json_object_set_new(ret, "bus", json_string(op->bus));
			json_object_set_new(ret, "addr", json_string(addr));
		}
		hp_log(vm, LOG_INFO, "%s %s: plugged at %s %s", op->name,
		    op->id, op->bus, addr);
		hp_answer(op, ret, NULL);
	} else {
		hp_log(vm, LOG_INFO, "%s %s: unplugged%s", op->name, op->id,
		    late ? " (after the request timed out)" : "");
		if (late && vm->ops->unplugged != NULL)
			vm->ops->unplugged(vm->ctx, op->id);
		hp_answer(op, json_object(), NULL);
	}
	hp_op_free(op);
}
