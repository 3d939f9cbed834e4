/*
 * Internals shared by registry.c (the saved registry, start and stop)
 * and registry_dir.c (config VMs and the watched --vm-dir). Not for
 * outside vm/registry.
 */
#ifndef BROKER_VM_REGISTRY_INT_H
#define BROKER_VM_REGISTRY_INT_H

#include <stddef.h>

#include "proto/qmp_msg.h"

/* Starts watching --vm-dir (none set: nothing to do) and adopts what is
   there; -1 with err (GenericError) saying why when it cannot. */
int	reg_watch_dir(struct qmp_error *err);
/* Stops watching; safe when not watching. */
void	reg_unwatch_dir(void);

#endif
