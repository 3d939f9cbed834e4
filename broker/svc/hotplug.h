/*
 * Hotplug as a service: per-VM hotplug state over the VM registry, and
 * the restart reconciliation of the hotplug journal.
 */
#ifndef BROKER_SVC_HOTPLUG_H
#define BROKER_SVC_HOTPLUG_H

#include <stdbool.h>
#include <stddef.h>

#include "hv/hp.h"
#include "proto/qmp_msg.h"

/* Once the loop and the VM registry exist: loads the hotplug journal
   and reconciles each record as its VM becomes ready. Idempotent. */
void	hotplug_init(void);
/* At shutdown: answers what is in flight, frees everything. */
void	hotplug_shutdown(void);

/* The hp state of VM name for an operation on device id (NULL: on the VM
   as a whole). NULL with err set for an unknown VM, or while an
   operation on that id from before a restart is being reconciled. */
struct hp_vm *hotplug_vm(const char *name, const char *id,
	    struct qmp_error *err);
/* Whether VM name has a hotplug operation in flight, a pending unplug,
   or a record from before a restart still to reconcile. */
bool	hotplug_busy(const char *name);
/* How many VMs are hotplug_busy (an upgrade waits for none). */
size_t	hotplug_busy_count(void);
/* Opens a local image after proving it lies under the image roots:
   0 with *fdp (owned by the caller) and *blk (a block device), or -1. */
int	hotplug_open_image(const char *src, bool readonly, int *fdp,
	    bool *blk, struct qmp_error *err);

#endif
