/*
 * The VM registry: every VM the broker knows, by name, with its monitor.
 * Services (hotplug, jobs) reach QEMU only through this interface, so a
 * VM whose QMP goes through libvirt looks the same as a socket VM.
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
/* Unlinks the VM at once (its name is free again); its memory goes on a
   later loop pass, once every command in flight has completed. */
void		 vm_remove(struct vm *);
void		 vm_remove_all(void);
void		 vm_cleanup(void);		/* at exit */

struct vm	*vm_find(const char *name);
const char	*vm_name(const struct vm *);
const char	*vm_socket(const struct vm *);
unsigned	 vm_origin(const struct vm *);
void		 vm_set_origin(struct vm *, unsigned);
enum vm_share_pref vm_share_pref(const struct vm *);
enum mon_state	 vm_state(const struct vm *);
const struct qmp_version *vm_version(const struct vm *);
/* True if the VM's QEMU offers that command (false while not ready). */
bool		 vm_has_command(const struct vm *, const char *);
size_t		 vm_count(void);
/* All VMs, sorted by name; caller frees the array. */
struct vm	**vm_list(size_t *n);
void		 vm_foreach(void (*)(struct vm *, void *), void *);

/* As mon_execute(): exactly one completion, never from inside the call.
   The vm passed to the callback is the same object (a VM removed while
   commands are pending completes them with an error first). */
typedef void vm_reply_fn(struct vm *, json_t *ret,
		    const struct qmp_error *err, void *arg);
void		 vm_execute(struct vm *, const char *cmd, json_t *args,
		    const int *fds, size_t nfds, vm_reply_fn *, void *arg);

/* Listeners of one VM's QEMU events (hotplug waits for DEVICE_DELETED
   this way). Called in arrival order, before observers and subscribers
   see the event. The event is borrowed. A listener may remove itself
   from inside the call. */
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

/* A second kind of VM, whose QMP goes through something other than a
   socket (libvirt-qemu for domains libvirt runs). The backend answers
   each execute exactly once, never from inside the call, and feeds the
   VM's events and state changes back through vm_backend_event() and
   vm_backend_state(); the registry does the rest (listeners, observers,
   subscribers) as for socket VMs. gone is called once, when the VM is
   removed; calls in flight must still complete. where is shown as the
   VM's socket in query-vms. */
struct vm_backend {
	void	(*execute)(struct vm *, void *arg, const char *cmd,
		    json_t *args, const int *fds, size_t nfds, vm_reply_fn *,
		    void *cbarg);
	const struct qmp_version *(*version)(void *arg);
	bool	(*has_command)(void *arg, const char *cmd);
	void	(*gone)(void *arg);
};
struct vm	*vm_add_backend(const char *name, const char *where,
		    const struct vm_backend *, void *arg,
		    struct qmp_error *err);
void		 vm_backend_event(struct vm *, json_t *event);
void		 vm_backend_state(struct vm *, enum mon_state, const char *why);

#endif
