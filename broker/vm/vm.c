/*
 * The VM registry: name -> VM, each with its QMP endpoint (hv/vmq.c)
 * and its event listeners.
 *
 * An idle VM is one allocation here (name inline) and its endpoint: no
 * timers, nothing polled. Removal is util/defer.h's idiom: the VM is
 * marked removed and unlinked at once (its name is free again), its
 * endpoint freed (which fails every pending command, then and there) and
 * its listeners dropped; the memory goes on a later loop pass, so a VM
 * removed from inside one of its own callbacks is safe. Nothing in
 * flight points at a VM: completions go to their callers through the
 * endpoint, so the VM has nothing to wait for.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "broker/core/bus.h"
#include "broker/core/conf.h"
#include "broker/core/log.h"
#include "broker/core/loop.h"
#include "broker/vm/vm.h"
#include "broker/vm/vm_int.h"
#include "hv/mon.h"
#include "hv/vmq.h"
#include "util/defer.h"

#define VM_SOCKET_MAX	107	/* sun_path less its NUL */

static TAILQ_HEAD(vm_all_head, vm) vm_all = TAILQ_HEAD_INITIALIZER(vm_all);
static struct vm	**vm_hash;
static size_t		  vm_hash_size;
static size_t		  vm_n;
static struct vm_cursor	 *vm_cursors;	/* live ones */

struct vm_obs_slot	vm_obs[VM_OBSERVERS];
size_t			vm_nobs;
static int	vm_nslots;

static size_t
vm_hash_of(const char *s)
{
	uint64_t	h = 14695981039346656037ULL;

	while (*s != '\0')
		h = (h ^ (unsigned char)*s++) * 1099511628211ULL;
	return ((size_t)h);
}

static int
vm_hash_grow(void)
{
	struct vm	**nh, *v, *next;
	size_t		  ns, i, b;

	ns = vm_hash_size == 0 ? 64 : vm_hash_size * 2;
	if ((nh = calloc(ns, sizeof *nh)) == NULL)
		return (-1);
	for (i = 0; i < vm_hash_size; i++) {
		for (v = vm_hash[i]; v != NULL; v = next) {
			next = v->hnext;
			b = vm_hash_of(v->name) & (ns - 1);
			v->hnext = nh[b];
			nh[b] = v;
		}
	}
	free(vm_hash);
	vm_hash = nh;
	vm_hash_size = ns;
	return (0);
}

struct vm *
vm_find(const char *name)
{
	struct vm	*v;

	if (vm_hash_size == 0)
		return (NULL);
	for (v = vm_hash[vm_hash_of(name) & (vm_hash_size - 1)]; v != NULL;
	    v = v->hnext) {
		if (strcmp(v->name, name) == 0)
			return (v);
	}
	return (NULL);
}

static void
vm_hash_remove(struct vm *vm)
{
	struct vm	**p;

	p = &vm_hash[vm_hash_of(vm->name) & (vm_hash_size - 1)];
	while (*p != NULL && *p != vm)
		p = &(*p)->hnext;
	if (*p != NULL)
		*p = vm->hnext;
	vm->hnext = NULL;
}

/* The memory: from the loop (or defer_flush), or at once for a VM that
   never was visible. Everything else went in vm_remove. */
static void
vm_release(void *arg)
{
	struct vm	*vm = arg;

	free(vm->socket);
	free(vm);
}

static void
vm_unlink(struct vm *vm)
{
	struct vm_cursor	*c;

	/* a cursor that returned vm goes on from the one before it */
	for (c = vm_cursors; c != NULL; c = c->cnext)
		if (c->last == vm)
			c->last = TAILQ_PREV(vm, vm_all_head, entry);
	vm_hash_remove(vm);
	TAILQ_REMOVE(&vm_all, vm, entry);
	vm_n--;
}

/* The registry part of adding a VM, common to both kinds. */
static struct vm *
vm_insert(const char *name, const char *socket, unsigned origin,
    struct qmp_error *err)
{
	struct vm	*vm;
	size_t		 len = strlen(name);

	if (vm_find(name) != NULL) {
		qmp_error_set(err, QMP_CLS_GENERIC, "VM '%s' already exists",
		    name);
		return (NULL);
	}
	if (vm_n >= vm_hash_size && vm_hash_grow() == -1)
		goto nomem;
	/* the name, then the metrics' label: vm="NAME" */
	if ((vm = calloc(1, sizeof *vm + 2 * len + 7)) == NULL)
		goto nomem;
	memcpy(vm->name, name, len + 1);
	vm->mlabel = vm->name + len + 1;
	memcpy(vm->mlabel, "vm=\"", 4);
	memcpy(vm->mlabel + 4, name, len);
	memcpy(vm->mlabel + 4 + len, "\"", 2);
	vm->mlabel_len = len + 5;
	if ((vm->socket = strdup(socket)) == NULL) {
		free(vm);
		goto nomem;
	}
	vm->origin = origin;
	vm->share_pref = VM_SHARE_CONF;
	LIST_INIT(&vm->listeners);
	TAILQ_INSERT_TAIL(&vm_all, vm, entry);
	vm->hnext = vm_hash[vm_hash_of(name) & (vm_hash_size - 1)];
	vm_hash[vm_hash_of(name) & (vm_hash_size - 1)] = vm;
	vm_n++;
	vm_status_load(vm);
	return (vm);
nomem:
	qmp_error_set(err, QMP_CLS_GENERIC, "out of memory");
	return (NULL);
}

struct vm *
vm_add_backend(const char *name, const char *where,
    const struct vmq_backend *be, void *arg, struct qmp_error *err)
{
	struct vm	*vm;

	if (!conf_vm_name_valid(name)) {
		qmp_error_set(err, QMP_CLS_GENERIC, "Invalid VM name '%.80s'",
		    name);
		return (NULL);
	}
	if ((vm = vm_insert(name, where, VM_ORIGIN_LIBVIRT, err)) == NULL)
		return (NULL);
	if ((vm->q = vmq_new_backend(loop_base, name, be, arg, &vm_vmq_ops,
	    vm)) == NULL) {
		vm_unlink(vm);
		vm_release(vm);
		qmp_error_set(err, QMP_CLS_GENERIC, "out of memory");
		return (NULL);
	}
	VM_NOTIFY(added, vm);
	log_info("vm %s: added (%s)", name, where);
	return (vm);
}

struct vm *
vm_add(const char *name, const char *socket, unsigned origin,
    enum vm_share_pref share, struct qmp_error *err)
{
	struct vm	*vm;
	struct mon_opts	 o;

	if (!conf_vm_name_valid(name)) {
		qmp_error_set(err, QMP_CLS_GENERIC, "Invalid VM name '%.80s': "
		    "1 to %d of [A-Za-z0-9_.-]", name, VM_NAME_MAX);
		return (NULL);
	}
	if (*socket != '/' || strlen(socket) > VM_SOCKET_MAX) {
		qmp_error_set(err, QMP_CLS_GENERIC, "Invalid socket path: "
		    "absolute and at most %d bytes", VM_SOCKET_MAX);
		return (NULL);
	}
	if ((vm = vm_insert(name, socket, origin, err)) == NULL)
		return (NULL);

	memset(&o, 0, sizeof o);
	o.max_msg = conf.max_msg;
	o.cmd_timeout_ms = conf.cmd_timeout_ms;
	if ((vm->q = vmq_new_mon(loop_base, name, socket, &o, &vm_vmq_ops,
	    vm)) == NULL) {
		vm_unlink(vm);
		vm_release(vm);
		goto nomem;
	}
	vm->share_pref = share;
	VM_NOTIFY(added, vm);
	log_info("vm %s: added (%s)", name, socket);
	return (vm);
nomem:
	qmp_error_set(err, QMP_CLS_GENERIC, "out of memory");
	return (NULL);
}

void
vm_remove(struct vm *vm)
{
	struct vm_listener	*l;

	if (vm->removed)
		return;
	log_info("vm %s: removed", vm->name);
	vm_status_forget(vm);
	VM_NOTIFY(removing, vm);
	vm->removed = 1;
	vm_unlink(vm);
	while ((l = LIST_FIRST(&vm->listeners)) != NULL)
		vm_unlisten(l);
	/* Stops it: no state or event from here on, and what is pending
	   fails now, while the VM is still readable. vm->q stays, dead,
	   for callers still holding the VM. */
	vmq_free(vm->q);
	defer_free(loop_base, &vm->reap, vm_release, vm);
}

void
vm_remove_all(void)
{
	struct vm	*vm;

	/* Each fails what is pending inside the call: shutdown wants the
	   errors out. */
	while ((vm = TAILQ_FIRST(&vm_all)) != NULL)
		vm_remove(vm);
}

void
vm_cleanup(void)
{
	vm_remove_all();
	vm_status_cleanup();
	free(vm_hash);
	vm_hash = NULL;
	vm_hash_size = 0;
}

void
vm_observe(const struct vm_observer *ops, void *arg)
{
	if (vm_nobs >= VM_OBSERVERS) {
		log_err("too many VM observers");
		return;
	}
	vm_obs[vm_nobs].ops = ops;
	vm_obs[vm_nobs].arg = arg;
	vm_nobs++;
}

int
vm_slot_key(void)
{
	if (vm_nslots >= VM_SLOTS) {
		log_err("too many VM slots");
		return (-1);
	}
	return (vm_nslots++);
}

void *
vm_slot(const struct vm *vm, int key)
{
	return (key >= 0 && key < VM_SLOTS ? vm->slots[key] : NULL);
}

void
vm_slot_set(struct vm *vm, int key, void *p)
{
	if (key >= 0 && key < VM_SLOTS)
		vm->slots[key] = p;
}

const char *
vm_name(const struct vm *vm)
{
	return (vm->name);
}

const char *
vm_socket(const struct vm *vm)
{
	return (vm->socket);
}

unsigned
vm_origin(const struct vm *vm)
{
	return (vm->origin);
}

void
vm_set_origin(struct vm *vm, unsigned origin)
{
	vm->origin = origin;
}

enum vm_share_pref
vm_share_pref(const struct vm *vm)
{
	return (vm->share_pref);
}

struct vmq *
vm_vmq(const struct vm *vm)
{
	return (vm->q);
}

enum mon_state
vm_state(const struct vm *vm)
{
	return (vmq_state(vm->q));
}

const struct qmp_version *
vm_version(const struct vm *vm)
{
	return (vmq_version(vm->q));
}

bool
vm_oob_offered(const struct vm *vm)
{
	return (vmq_oob_offered(vm->q));
}

bool
vm_has_command(const struct vm *vm, const char *cmd)
{
	return (vmq_has_command(vm->q, cmd));
}

size_t
vm_count(void)
{
	return (vm_n);
}

static int
vm_cmp(const void *a, const void *b)
{
	return (strcmp((*(struct vm *const *)a)->name,
	    (*(struct vm *const *)b)->name));
}

struct vm **
vm_list(size_t *n)
{
	struct vm	**l, *vm;
	size_t		  i = 0;

	*n = 0;
	if ((l = calloc(vm_n + 1, sizeof *l)) == NULL)
		return (NULL);
	TAILQ_FOREACH(vm, &vm_all, entry)
		l[i++] = vm;
	qsort(l, i, sizeof *l, vm_cmp);
	*n = i;
	return (l);
}

void
vm_foreach(void (*fn)(struct vm *, void *), void *arg)
{
	struct vm	*vm, *vm1;

	TAILQ_FOREACH_SAFE(vm, &vm_all, entry, vm1)
		fn(vm, arg);
}

void
vm_cursor_start(struct vm_cursor *c)
{
	c->last = NULL;
	c->cprev = NULL;
	c->cnext = vm_cursors;
	if (vm_cursors != NULL)
		vm_cursors->cprev = c;
	vm_cursors = c;
	c->live = 1;
}

void
vm_cursor_stop(struct vm_cursor *c)
{
	if (!c->live)
		return;
	if (c->cprev != NULL)
		c->cprev->cnext = c->cnext;
	else
		vm_cursors = c->cnext;
	if (c->cnext != NULL)
		c->cnext->cprev = c->cprev;
	c->live = 0;
	c->last = NULL;
}

struct vm *
vm_cursor_next(struct vm_cursor *c)
{
	struct vm	*vm = NULL;

	if (c->live)
		vm = c->last != NULL ? TAILQ_NEXT(c->last, entry) :
		    TAILQ_FIRST(&vm_all);
	if (vm == NULL) {
		vm_cursor_stop(c);
		return (NULL);
	}
	c->last = vm;
	return (vm);
}

const char *
vm_metrics_label(const struct vm *vm, size_t *len)
{
	*len = vm->mlabel_len;
	return (vm->mlabel);
}
