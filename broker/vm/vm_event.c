/*
 * What comes in through a VM's endpoint (hv/vmq.c: its monitor or its
 * backend): QEMU's events and the endpoint's state changes, handed to
 * the VM's listeners, the observers and the bus. Apart from vm.c, which
 * is the set of VMs: adding, finding and removing them. Commands go out
 * on the endpoint itself (vmq_execute), not through here.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "broker/core/bus.h"
#include "broker/core/log.h"
#include "broker/core/loop.h"
#include "broker/vm/vm.h"
#include "broker/vm/vm_int.h"
#include "hv/vmq.h"
#include "util/defer.h"
#include "util/queue.h"

static void	vm_q_state(struct vmq *, enum mon_state, const char *,
		    void *);
static void	vm_q_event(struct vmq *, json_t *, void *);

const struct vmq_ops vm_vmq_ops = {
	vm_q_state,
	vm_q_event,
};

/* ---- listeners ---- */

struct vm_listener *
vm_listen(struct vm *vm, vm_event_fn *fn, void *arg)
{
	struct vm_listener	*l;

	if ((l = calloc(1, sizeof *l)) == NULL)
		return (NULL);
	l->fn = fn;
	l->arg = arg;
	LIST_INSERT_HEAD(&vm->listeners, l, entry);
	return (l);
}

static void
vm_listener_release(void *arg)
{
	free(arg);
}

/* util/defer.h's idiom: unlinked and marked at once, the memory on a
   later pass, so a dispatch walking the list (vm_q_event) may step on
   it and off it again: it keeps its link to the one that followed. */
void
vm_unlisten(struct vm_listener *l)
{
	if (l == NULL || l->dead)
		return;
	l->dead = 1;
	LIST_REMOVE(l, entry);
	defer_free(loop_base, &l->reap, vm_listener_release, l);
}

/* ---- the endpoint's callbacks ---- */

static void
vm_q_event(struct vmq *q, json_t *ev, void *arg)
{
	struct vm		*vm = arg;
	struct vm_listener	*l, *l1;

	LIST_FOREACH_SAFE(l, &vm->listeners, entry, l1) {
		if (!l->dead)
			l->fn(vm, ev, l->arg);
		/* a listener removed the VM: the rest is not for it */
		if (vm->removed)
			return;
	}
	VM_NOTIFY(event, vm, ev);
	bus_vm_event(vm->name, ev);
	vm_status_event(vm, ev);
}

static void
vm_q_state(struct vmq *q, enum mon_state st, const char *why, void *arg)
{
	struct vm	*vm = arg;
	json_t		*data;

	/* Leaving ready is news; the n-th failed reconnect is not. */
	if (why != NULL && (vm->was_ready || !vm->said_down))
		log_info("vm %s: %s (%s)", vm->name, mon_state_name(st), why);
	else
		log_debug("vm %s: %s%s%s", vm->name, mon_state_name(st),
		    why != NULL ? ": " : "", why != NULL ? why : "");
	if (st == MON_DISCONNECTED)
		vm->said_down = 1;
	/* before was_ready changes: it tells a drop from a failed retry */
	vm_status_state(vm, st, why);
	vm->was_ready = st == MON_READY;
	if (st == MON_READY)
		vm->said_down = 0;
	VM_NOTIFY(state, vm, st, why);
	/* An upgrade carried the connection over ready: subscribers,
	   carried over too, saw no change, and the event log says none. */
	if (st == MON_READY && vmq_adopted(q))
		return;
	data = json_pack("{s:s}", "state", mon_state_name(st));
	if (data != NULL && why != NULL)
		json_object_set_new(data, "reason", json_string(why));
	bus_publish(vm->name, "VM_STATE_CHANGE", data);
}
