/*
 * What flows through a VM once it is there: commands out (vm_execute,
 * to its monitor or its backend), events and state changes in (from
 * either), handed to its listeners, the observers and the bus. Apart
 * from vm.c, which is the set of VMs: adding, finding, removing and
 * reaping them.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "broker/core/bus.h"
#include "broker/core/log.h"
#include "broker/core/loop.h"
#include "broker/vm/vm.h"
#include "broker/vm/vm_int.h"
#include "hv/mon.h"

struct vm_call {
	struct vm		*vm;
	vm_reply_fn		*fn;
	void			*arg;
	struct qmp_error	 err;		/* local failures */
};

static void	vm_mon_state(struct mon *, enum mon_state, const char *,
		    void *);
static void	vm_mon_event(struct mon *, json_t *, void *);
static void	vm_dispatch_event(struct vm *, json_t *);
static void	vm_dispatch_state(struct vm *, enum mon_state, const char *);

const struct mon_ops vm_mon_ops = {
	vm_mon_state,
	vm_mon_event,
};

/* ---- backends ---- */

void
vm_backend_event(struct vm *vm, json_t *ev)
{
	if (!vm->removed)
		vm_dispatch_event(vm, ev);
}

void
vm_backend_state(struct vm *vm, enum mon_state st, const char *why)
{
	if (vm->removed || vm->be_state == st)
		return;
	vm->be_state = st;
	vm_dispatch_state(vm, st, why);
}

/* ---- commands ---- */

static void
vm_call_end(struct vm_call *call)
{
	struct vm	*vm = call->vm;

	free(call);
	if (--vm->calls == 0 && vm->removed)
		event_active(vm_reaper, EV_TIMEOUT, 0);
}

static void
vm_call_done(struct mon *mon, json_t *ret, const struct qmp_error *err,
    void *arg)
{
	struct vm_call	*call = arg;

	call->fn(call->vm, ret, err, call->arg);
	vm_call_end(call);
}

static void
vm_be_done(struct vm *vm, json_t *ret, const struct qmp_error *err,
    void *arg)
{
	vm_call_done(NULL, ret, err, arg);
}

static void
vm_call_fail(evutil_socket_t fd, short what, void *arg)
{
	struct vm_call	*call = arg;

	call->fn(call->vm, NULL, &call->err, call->arg);
	vm_call_end(call);
}

void
vm_execute(struct vm *vm, const char *cmd, json_t *args, const int *fds,
    size_t nfds, vm_reply_fn *fn, void *arg)
{
	struct vm_call	*call;
	struct timeval	 tv = { 0, 0 };

	if ((call = malloc(sizeof *call)) == NULL) {
		/* Nothing to promise a callback with: say so loudly. */
		log_err("vm %s: out of memory, command %s lost", vm->name,
		    cmd);
		json_decref(args);
		return;
	}
	call->vm = vm;
	call->fn = fn;
	call->arg = arg;
	vm->calls++;
	if (vm->removed || (vm->mon == NULL && vm->be == NULL)) {
		json_decref(args);
		qmp_error_set(&call->err, QMP_CLS_GENERIC, "VM '%s' has been "
		    "removed", vm->name);
		if (event_base_once(loop_base, -1, EV_TIMEOUT, vm_call_fail,
		    call, &tv) == -1)
			log_err("vm %s: cannot schedule a reply", vm->name);
		return;
	}
	if (vm->be != NULL) {
		vm->be->execute(vm, vm->be_arg, cmd, args, fds, nfds,
		    vm_be_done, call);
		return;
	}
	mon_execute(vm->mon, cmd, args, fds, nfds, vm_call_done, call);
}

/* ---- listeners and monitor callbacks ---- */

struct vm_listener *
vm_listen(struct vm *vm, vm_event_fn *fn, void *arg)
{
	struct vm_listener	*l;

	if ((l = calloc(1, sizeof *l)) == NULL)
		return (NULL);
	l->vm = vm;
	l->fn = fn;
	l->arg = arg;
	LIST_INSERT_HEAD(&vm->listeners, l, entry);
	return (l);
}

void
vm_unlisten(struct vm_listener *l)
{
	if (l == NULL)
		return;
	if (l->vm->dispatching) {
		l->dead = 1;
		return;
	}
	LIST_REMOVE(l, entry);
	free(l);
}

static void
vm_mon_event(struct mon *mon, json_t *ev, void *arg)
{
	vm_dispatch_event(arg, ev);
}

static void
vm_dispatch_event(struct vm *vm, json_t *ev)
{
	struct vm_listener	*l, *l1;

	if (!LIST_EMPTY(&vm->listeners)) {
		vm->dispatching = 1;
		LIST_FOREACH(l, &vm->listeners, entry) {
			if (!l->dead)
				l->fn(vm, ev, l->arg);
		}
		vm->dispatching = 0;
		LIST_FOREACH_SAFE(l, &vm->listeners, entry, l1) {
			if (l->dead) {
				LIST_REMOVE(l, entry);
				free(l);
			}
		}
	}
	VM_NOTIFY(event, vm, ev);
	bus_vm_event(vm->name, ev);
}

static void
vm_mon_state(struct mon *mon, enum mon_state st, const char *why, void *arg)
{
	vm_dispatch_state(arg, st, why);
}

static void
vm_dispatch_state(struct vm *vm, enum mon_state st, const char *why)
{
	json_t		*data;

	/* Leaving ready is news; the n-th failed reconnect is not. */
	if (why != NULL && (vm->was_ready || !vm->said_down))
		log_info("vm %s: %s (%s)", vm->name, mon_state_name(st), why);
	else
		log_debug("vm %s: %s%s%s", vm->name, mon_state_name(st),
		    why != NULL ? ": " : "", why != NULL ? why : "");
	if (st == MON_DISCONNECTED)
		vm->said_down = 1;
	vm->was_ready = st == MON_READY;
	if (st == MON_READY)
		vm->said_down = 0;
	VM_NOTIFY(state, vm, st, why);
	data = json_pack("{s:s}", "state", mon_state_name(st));
	if (data != NULL && why != NULL)
		json_object_set_new(data, "reason", json_string(why));
	bus_publish(vm->name, "VM_STATE_CHANGE", data);
}

