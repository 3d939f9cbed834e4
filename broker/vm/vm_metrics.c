/*
 * The VMs' figures for the metrics (core/metrics.h): each VM endpoint's
 * own counters (hv/vmq.h), read at scrape time. Totals over every VM
 * always; per-VM series unless conf.metrics_per_vm is off, which keeps a
 * scrape of any number of VMs to a fixed size.
 *
 * The format wants each family's samples together, so every per-VM
 * family is one walk of the VMs: a few walks of plain reads.
 */
#include "config.h"

#include <stddef.h>
#include <string.h>

#include "broker/core/conf.h"
#include "broker/core/metrics.h"
#include "broker/vm/vm.h"
#include "broker/vm/vm_metrics.h"
#include "hv/vmq.h"

#define VMM_NSTATES	4	/* enum mon_state */

struct vmm_walk {
	struct metrics_out	*o;
	const char		*family;
	/* totals over every VM */
	uint64_t		 states[VMM_NSTATES];
	uint64_t		 by_cmd[VMQ_NCMDS][VMQ_NOUTCOMES];
	struct hist		 latency;
	uint64_t		 reconnects, timeouts, inflight, events_in;
};

static const char *const vmm_outcomes[VMQ_NOUTCOMES] = { "ok", "error" };

static void
vmm_add(struct vmm_walk *w, const struct vmq_stats *st)
{
	size_t	i;
	int	k;

	w->reconnects += st->reconnects;
	w->timeouts += st->timeouts;
	w->inflight += st->inflight;
	w->events_in += st->events_in;
	for (k = 0; k <= HIST_NBOUNDS; k++)
		w->latency.n[k] += st->latency.n[k];
	w->latency.count += st->latency.count;
	w->latency.sum_us += st->latency.sum_us;
	if (st->by_cmd == NULL)
		return;
	for (i = 0; i < VMQ_NCMDS; i++) {
		w->by_cmd[i][VMQ_OK] += st->by_cmd[i][VMQ_OK];
		w->by_cmd[i][VMQ_ERROR] += st->by_cmd[i][VMQ_ERROR];
	}
}

static void
vmm_total(struct vm *vm, void *arg)
{
	struct vmm_walk		*w = arg;
	struct vmq_stats	 st;

	vmq_stats(vm_vmq(vm), &st);
	if ((unsigned)vm_state(vm) < VMM_NSTATES)
		w->states[vm_state(vm)]++;
	vmm_add(w, &st);
}

static void
vmm_state(struct vm *vm, void *arg)
{
	struct vmm_walk	*w = arg;
	const char	*kv[] = { "vm", vm_name(vm), "state", NULL, NULL };
	int		 s;

	for (s = 0; s < VMM_NSTATES; s++) {
		kv[3] = mon_state_name((enum mon_state)s);
		metrics_u64(w->o, w->family, kv, vm_state(vm) ==
		    (enum mon_state)s);
	}
}

/* One per-VM counter family: which member is the family's. */
static void
vmm_one(struct vm *vm, void *arg)
{
	struct vmm_walk		*w = arg;
	struct vmq_stats	 st;
	const char		*kv[] = { "vm", vm_name(vm), NULL };
	uint64_t		 v;

	vmq_stats(vm_vmq(vm), &st);
	if (strcmp(w->family, "vm_reconnects_total") == 0)
		v = st.reconnects;
	else if (strcmp(w->family, "vm_command_timeouts_total") == 0)
		v = st.timeouts;
	else if (strcmp(w->family, "vm_commands_in_flight") == 0)
		v = st.inflight;
	else
		v = st.events_in;
	metrics_u64(w->o, w->family, kv, v);
}

static void
vmm_cmds(struct vm *vm, void *arg)
{
	struct vmm_walk		*w = arg;
	struct vmq_stats	 st;
	const char		*kv[] = { "vm", vm_name(vm), "command", NULL,
				    "outcome", NULL, NULL };
	size_t			 i;
	int			 k;

	vmq_stats(vm_vmq(vm), &st);
	if (st.by_cmd == NULL)
		return;
	/* rows a VM never saw stay out: a few series per VM, not 136 */
	for (i = 0; i < VMQ_NCMDS; i++)
		for (k = 0; k < VMQ_NOUTCOMES; k++) {
			if (st.by_cmd[i][k] == 0)
				continue;
			kv[3] = vmq_cmd_name(i);
			kv[5] = vmm_outcomes[k];
			metrics_u64(w->o, w->family, kv, st.by_cmd[i][k]);
		}
}

static void
vmm_latency(struct vm *vm, void *arg)
{
	struct vmm_walk		*w = arg;
	struct vmq_stats	 st;
	const char		*kv[] = { "vm", vm_name(vm), NULL };

	vmq_stats(vm_vmq(vm), &st);
	metrics_hist(w->o, w->family, kv, &st.latency);
}

static void
vmm_family(struct vmm_walk *w, const char *name, const char *type,
    const char *help, void (*fn)(struct vm *, void *))
{
	metrics_family(w->o, name, type, help);
	w->family = name;
	vm_foreach(fn, w);
}

static void
vmm_per_vm(struct vmm_walk *w)
{
	vmm_family(w, "vm_monitor_state", "gauge", "1 for the state the VM's "
	    "monitor is in, 0 for the others.", vmm_state);
	vmm_family(w, "vm_reconnects_total", "counter", "Connections to the "
	    "VM's monitor after the first.", vmm_one);
	vmm_family(w, "vm_commands_total", "counter", "Commands completed on "
	    "the VM, by command (unknown names: other) and outcome.",
	    vmm_cmds);
	vmm_family(w, "vm_command_duration_seconds", "histogram", "Time from "
	    "executing a command on the VM to its completion.", vmm_latency);
	vmm_family(w, "vm_command_timeouts_total", "counter", "Commands that "
	    "timed out on the VM's monitor.", vmm_one);
	vmm_family(w, "vm_commands_in_flight", "gauge", "Commands executed on "
	    "the VM and not yet completed.", vmm_one);
	vmm_family(w, "vm_events_total", "counter", "QEMU events received "
	    "from the VM.", vmm_one);
}

#define W(m)	offsetof(struct vmm_walk, m)
static const struct metrics_def vmm_totals[] = {
	{ "command_timeouts_total", "counter", "Commands that timed out on a "
	    "VM's monitor, every VM.", W(timeouts) },
	{ "commands_in_flight", "gauge", "Commands executed and not yet "
	    "completed, every VM.", W(inflight) },
	{ "monitor_reconnects_total", "counter", "Connections to a VM's "
	    "monitor after its first, every VM.", W(reconnects) },
	{ "events_in_total", "counter", "QEMU events received, every VM.",
	    W(events_in) },
};
#undef W

void
vm_metrics_collect(struct metrics_out *o, void *arg)
{
	static struct vmm_walk	 w;	/* 1 KiB of totals: not the stack */
	struct vmq_stats	 gone;
	const char		*kv[5];
	size_t			 i;
	int			 k;

	memset(&w, 0, sizeof w);
	w.o = o;
	vm_foreach(vmm_total, &w);
	vmq_stats_gone(&gone);
	vmm_add(&w, &gone);

	metrics_family(o, "vms", "gauge", "VMs by the state of their "
	    "monitor.");
	kv[0] = "state";
	kv[2] = NULL;
	for (k = 0; k < VMM_NSTATES; k++) {
		kv[1] = mon_state_name((enum mon_state)k);
		metrics_u64(o, "vms", kv, w.states[k]);
	}
	metrics_family(o, "commands_total", "counter", "Commands completed "
	    "on every VM, by command (unknown names: other) and outcome.");
	kv[0] = "command";
	kv[2] = "outcome";
	kv[4] = NULL;
	for (i = 0; i < VMQ_NCMDS; i++)
		for (k = 0; k < VMQ_NOUTCOMES; k++) {
			kv[1] = vmq_cmd_name(i);
			kv[3] = vmm_outcomes[k];
			metrics_u64(o, "commands_total", kv, w.by_cmd[i][k]);
		}
	metrics_family(o, "command_duration_seconds", "histogram", "Time "
	    "from executing a command on a VM to its completion, every VM.");
	metrics_hist(o, "command_duration_seconds", NULL, &w.latency);
	metrics_table(o, vmm_totals, sizeof vmm_totals / sizeof vmm_totals[0],
	    &w);

	if (conf.metrics_per_vm)
		vmm_per_vm(&w);
}
