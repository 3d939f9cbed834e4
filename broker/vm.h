/*
 * The VM registry: every VM the broker knows, by name, with its monitor.
 * Other modules (hotplug, jobs) reach QEMU only through this interface,
 * so a VM whose QMP goes through libvirt looks the same as a socket VM.
 */
#ifndef BROKER_VM_H
#define BROKER_VM_H

#include <stdbool.h>
#include <jansson.h>

#include "hv/mon.h"

struct vm;

struct vm	*vm_find(const char *name);
const char	*vm_name(const struct vm *);
enum mon_state	 vm_state(const struct vm *);
/* True if the VM's QEMU offers that command (false while not ready). */
bool		 vm_has_command(const struct vm *, const char *);

/* As mon_execute(): exactly one completion, never from inside the call.
   The vm passed to the callback is the same object (a VM removed while
   commands are pending completes them with an error first). */
typedef void vm_reply_fn(struct vm *, json_t *ret,
		    const struct qmp_error *err, void *arg);
void		 vm_execute(struct vm *, const char *cmd, json_t *args,
		    const int *fds, size_t nfds, vm_reply_fn *, void *arg);
/* A vm_reply_fn whose arg is a struct req: QEMU's return or error goes
   back to the client unchanged (vm-execute and the shared sockets). */
vm_reply_fn	 vm_reply_req;

/* Observers of a VM's QEMU events (hotplug waits for DEVICE_DELETED this
   way). Called in arrival order, before subscribers see the event. The
   event is borrowed. A listener may remove itself from inside the call. */
typedef void vm_event_fn(struct vm *, json_t *event, void *arg);
struct vm_listener;
struct vm_listener *vm_listen(struct vm *, vm_event_fn *, void *arg);
void		 vm_unlisten(struct vm_listener *);

/* A second kind of VM, whose QMP goes through something other than a
   socket (libvirt-qemu for domains libvirt runs). The backend answers
   each execute exactly once, never from inside the call, and feeds the
   VM's events and state changes back through vm_backend_event() and
   vm_backend_state(); the registry does the rest (listeners, shared
   socket, subscribers) as for socket VMs. gone is called once, when the
   VM is removed; calls in flight must still complete. where is shown as
   the VM's socket in query-vms. */
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

/* Called when a VM is about to go (vm-remove, shutdown): modules drop
   what they hold for it. Registered once at start-up. */
typedef void vm_gone_fn(struct vm *, void *arg);
void		 vm_on_remove(vm_gone_fn *, void *arg);

#endif
