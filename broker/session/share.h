/*
 * Shared per-VM monitors: RUNDIR/vm/NAME.qmp behaves like the VM's own
 * QMP socket, but any number of clients may hold it at once. share_init()
 * makes the module a VM observer: sockets open and close with their VMs.
 */
#ifndef BROKER_SESSION_SHARE_H
#define BROKER_SESSION_SHARE_H

#include <jansson.h>

#include "broker/session/req.h"
#include "broker/vm/vm.h"

struct client;

void	share_init(void);
/* The VM's socket opened or closed to match the VM's own preference,
   else conf.vm_sockets (at add, and for every VM on reload). */
void	share_sync(struct vm *);
void	share_sync_all(void);
/* At start, after the registry: RUNDIR/vm's sockets that no VM owns
   (left by a broker killed with -9) removed. */
void	share_sweep(void);
/* RUNDIR/vm/NAME.qmp if the VM has one, else NULL. */
const char *share_path(const struct vm *);
/* A negotiated shared client's request: to QEMU, through the executor
   the daemon wires at start (the command layer's, which checks the
   policy; req_vm_execute until then). */
void	share_request(struct req *, struct client *, const char *name,
	    json_t *args);
typedef void share_exec_fn(struct req *, struct vm *, const char *name,
	    json_t *args);
void	share_set_exec(share_exec_fn *);
/* The client goes. */
void	share_detach(struct client *);
/* A client carried over by an upgrade (c->vm set) joins its VM's
   socket; -1 if the VM has none any more. */
int	share_adopt(struct client *);

#endif
