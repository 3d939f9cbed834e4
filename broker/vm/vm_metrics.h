/*
 * The VMs' figures for the metrics: a collector (core/metrics.h) that
 * the daemon registers at start. Totals over every VM, and per-VM series
 * unless conf.metrics_per_vm is off.
 */
#ifndef BROKER_VM_VM_METRICS_H
#define BROKER_VM_VM_METRICS_H

#include "broker/core/metrics.h"

/* The totals, at once. */
metrics_collect_fn	vm_metrics_collect;
/* The per-VM series, in parts (metrics_register_parts). */
metrics_part_fn		vm_metrics_parts;
metrics_stop_fn		vm_metrics_stop;

#endif
