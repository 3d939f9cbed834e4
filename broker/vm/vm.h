/*
 * The VM registry: every VM the broker knows, by name, each with its QMP
 * endpoint (hv/vmq.h: a monitor, or a backend such as libvirt-qemu).
 * Services (hotplug, jobs) reach QEMU only through that endpoint,
 * vm_vmq(), so a VM whose QMP goes through libvirt looks the same as a
 * socket VM. The registry keeps what is about the set of VMs: names,
 * origin, observers, listeners, slots and the share preference.
 *
 * The registry knows nothing of clients: modules above it learn of VMs
 * through observers that the daemon registers at start (the shared
 * sockets), and QEMU's events also go out on the publish bus
 * (core/bus.h), where subscriptions pick them up.
 */
#ifndef BROKER_VM_VM_H
#define BROKER_VM_VM_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>

#include "broker/core/conf.h"
#include "hv/mon.h"
#include "hv/vmq.h"

struct vm;

enum vm_origin {
	VM_ORIGIN_API	 = 0x1,
	VM_ORIGIN_CONFIG = 0x2,
	VM_ORIGIN_DIR	 = 0x4,
	VM_ORIGIN_LIBVIRT = 0x8,	/* a domain libvirt runs; not saved */
};
/* A VM's own say on its shared socket (vm-add's "shared-socket"). */
enum vm_share_pref {
	VM_SHARE_CONF = -1,		/* as vm-sockets says */
	VM_SHARE_NO = 0,
	VM_SHARE_YES = 1,
};

/* Validates; err says why on failure (NULL returned). */
struct vm	*vm_add(const char *name, const char *socket, unsigned origin,
		    enum vm_share_pref, struct qmp_error *err);
/* Unlinks the VM at once (its name is free again), after the observers'
   removing; its endpoint is freed (vmq_free: what is pending fails now)
   and its listeners dropped. The memory goes on a later loop pass
   (util/defer.h), so a VM may be removed from inside its own callbacks;
   a process that stops its loop for good calls defer_flush() after. */
void		 vm_remove(struct vm *);
void		 vm_remove_all(void);
void		 vm_cleanup(void);		/* at exit */
/* QEMU's pid as the one who added the VM knows it (vm-add's "pid"):
   watched through a pidfd for VM_EXITED from now on, instead of the pid
   SO_PEERCRED names at connect (a proxy's, or a manager's that made the
   socket). Its start time is read now: the registry saves both, and
   vm_restore_pid() takes the pid back only for that same process. */
void		 vm_set_pid(struct vm *, int pid);
/* The pid vm_set_pid gave (0: none) and its start time (0: unknown). */
int		 vm_pid_given(const struct vm *, unsigned long long *start);
/* A saved pid after a restart: watched again (true) only if a process
   with that pid still runs and started at `start` (not a reuse of the
   pid by a later process); else the VM goes on without it. */
bool		 vm_restore_pid(struct vm *, int pid, unsigned long long start);

/* The run states recorded per VM (STATE_DIR/status), as an upgrade
   hands them over: name -> status (a new reference), or NULL if this
   process never read them. vm_status_preset(saved) takes them instead
   of reading one file per VM when the first VM is added (saved: only
   read, the strings copied; an object of strings, else ignored). */
json_t		*vm_status_export(void);
void		 vm_status_preset(const json_t *saved);

struct vm	*vm_find(const char *name);
const char	*vm_name(const struct vm *);
const char	*vm_socket(const struct vm *);
unsigned	 vm_origin(const struct vm *);
void		 vm_set_origin(struct vm *, unsigned);
enum vm_share_pref vm_share_pref(const struct vm *);
/* The VM's QMP endpoint: borrowed, valid as long as the VM. Execute on
   it with vmq_execute(). */
struct vmq	*vm_vmq(const struct vm *);
/* vmq_state(), vmq_version(), vmq_has_command() of the VM's endpoint. */
enum mon_state	 vm_state(const struct vm *);
const struct qmp_version *vm_version(const struct vm *);
/* Its QEMU offers oob (the broker has enabled it with QEMU). */
bool		 vm_oob_offered(const struct vm *);
bool		 vm_has_command(const struct vm *, const char *);
size_t		 vm_count(void);
/* All VMs, sorted by name; caller frees the array. */
struct vm	**vm_list(size_t *n);
void		 vm_foreach(void (*)(struct vm *, void *), void *);
/* A walk of the VMs that may stop and go on at a later loop pass (a
   scrape sent in parts): a VM removed meanwhile is never returned after
   its removal, one added before the walk ends is returned at the end,
   none twice. The cursor is the caller's; from vm_cursor_start until
   vm_cursor_next returns NULL or vm_cursor_stop, the registry keeps it
   up to date (the VM last returned, or the one before it once that one
   is removed), so it must stay where it is. Its members are the
   registry's. */
struct vm_cursor {
	struct vm		*last;
	struct vm_cursor	*cprev, *cnext;
	int			 live;
};
void		 vm_cursor_start(struct vm_cursor *);
struct vm	*vm_cursor_next(struct vm_cursor *);
void		 vm_cursor_stop(struct vm_cursor *);	/* idempotent */
/* vm="NAME" (a name needs no escaping): made at the add, for the
   metrics' per-VM series. */
const char	*vm_metrics_label(const struct vm *, size_t *len);

/* Listeners of one VM's QEMU events (hotplug waits for DEVICE_DELETED
   this way). Called in arrival order, before observers and subscribers
   see the event. The event is borrowed. A listener may remove itself
   or another from inside the call: vm_unlisten marks it dead and frees
   it on a later loop pass (util/defer.h). NULL if out of memory. */
typedef void vm_event_fn(struct vm *, json_t *event, void *arg);
struct vm_listener;
struct vm_listener *vm_listen(struct vm *, vm_event_fn *, void *arg);
void		 vm_unlisten(struct vm_listener *);

/* Observers of every VM, registered once at start, called in
   registration order; any member may be NULL. removing runs before the
   VM leaves the registry (drop what you hold for it). */
struct vm_observer {
	void	(*added)(struct vm *, void *arg);
	void	(*removing)(struct vm *, void *arg);
	void	(*state)(struct vm *, enum mon_state, const char *why,
		    void *arg);
	void	(*event)(struct vm *, json_t *event, void *arg);
};
void		 vm_observe(const struct vm_observer *, void *arg);

/* A slot per observer module for what it keeps per VM (the shared
   socket), so it needs no table of its own: a key from vm_slot_key()
   once at start, then get/set. */
int		 vm_slot_key(void);
void		*vm_slot(const struct vm *, int key);
void		 vm_slot_set(struct vm *, int key, void *);

/* A second kind of VM, whose QMP goes through a backend (hv/vmq.h:
   libvirt-qemu for domains libvirt runs), fed through
   vmq_backend_event() and vmq_backend_state() of vm_vmq(); the registry
   does the rest (listeners, observers, subscribers) as for socket VMs.
   be and arg: as vmq_new_backend(); be->gone is called once, when the
   VM is removed (not if this fails). where is shown as the VM's socket
   in query-vms. */
struct vm	*vm_add_backend(const char *name, const char *where,
		    const struct vmq_backend *be, void *arg,
		    struct qmp_error *err);

#endif
