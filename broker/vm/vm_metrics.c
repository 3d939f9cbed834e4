/*
 * The VMs' figures for the metrics (core/metrics.h): each VM endpoint's
 * own counters (hv/vmq.h), read at scrape time. Totals over every VM
 * always; per-VM series unless conf.metrics_per_vm is off, which keeps a
 * scrape of any number of VMs to a fixed size.
 *
 * The format wants each family's samples together, so every per-VM
 * family is one walk of the VMs: a few walks of plain reads, sent in
 * parts (core/metrics.h), each line a few copies of strings made once
 * (the VM's label at its add, the other labels here at the first
 * scrape).
 */
#include "config.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "broker/core/conf.h"
#include "broker/core/metrics.h"
#include "broker/vm/vm.h"
#include "broker/vm/vm_metrics.h"
#include "hv/vmq.h"

#define VMM_NSTATES	4	/* enum mon_state */

struct vmm_walk {
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

/* ---- per-VM series, in parts ---- */

/* What a scrape remembers between its parts. */
struct vmm_part {
	int			 fam;		/* in vmm_fams */
	int			 walking;	/* cur is live */
	struct vm_cursor	 cur;
};

struct vmm_fam {
	const char		*name, *type, *help;
	void			(*fn)(struct metrics_out *,
				    const struct vmm_fam *, struct vm *,
				    struct metrics_str);
	struct metrics_str	 head;
	size_t			 off;		/* vmm_one's member */
	struct metrics_hist_heads hist;
};

#define VMM_HEAD(n)	METRICS_STR(METRICS_PREFIX n "{")
#define S(m)		offsetof(struct vmq_stats, m)

/* ",state=\"ready\"} " and the like, made once */
static char	vmm_state_tail[VMM_NSTATES][40];
static size_t	vmm_state_tlen[VMM_NSTATES];
/* ",command=\"NAME\",outcome=\"ok\"} ", made once */
static char	vmm_cmd_tail[VMQ_NCMDS][VMQ_NOUTCOMES][96];
static size_t	vmm_cmd_tlen[VMQ_NCMDS][VMQ_NOUTCOMES];
static int	vmm_tails_made;

static void
vmm_tails(void)
{
	size_t	i;
	int	k;

	if (vmm_tails_made)
		return;
	vmm_tails_made = 1;
	for (k = 0; k < VMM_NSTATES; k++)
		vmm_state_tlen[k] = (size_t)snprintf(vmm_state_tail[k],
		    sizeof vmm_state_tail[k], ",state=\"%s\"} ",
		    mon_state_name((enum mon_state)k));
	for (i = 0; i < VMQ_NCMDS; i++)
		for (k = 0; k < VMQ_NOUTCOMES; k++)
			vmm_cmd_tlen[i][k] = (size_t)snprintf(vmm_cmd_tail[i][k],
			    sizeof vmm_cmd_tail[i][k], ",command=\"%s\","
			    "outcome=\"%s\"} ", vmq_cmd_name(i),
			    vmm_outcomes[k]);
}

static void
vmm_state(struct metrics_out *o, const struct vmm_fam *f, struct vm *vm,
    struct metrics_str lab)
{
	struct metrics_str	tail;
	int			s;

	for (s = 0; s < VMM_NSTATES; s++) {
		tail.s = vmm_state_tail[s];
		tail.n = vmm_state_tlen[s];
		metrics_sample(o, f->head, lab, tail, vm_state(vm) ==
		    (enum mon_state)s);
	}
}

/* One counter or gauge of the VM's: the vmq_stats member at f->off. */
static void
vmm_one(struct metrics_out *o, const struct vmm_fam *f, struct vm *vm,
    struct metrics_str lab)
{
	static const struct metrics_str	tail = METRICS_STR("} ");
	struct vmq_stats		st;

	vmq_stats(vm_vmq(vm), &st);
	metrics_sample(o, f->head, lab, tail,
	    *(const uint64_t *)(const void *)((const char *)&st + f->off));
}

static void
vmm_cmds(struct metrics_out *o, const struct vmm_fam *f, struct vm *vm,
    struct metrics_str lab)
{
	struct vmq_stats	st;
	struct metrics_str	tail;
	size_t			i;
	int			k;

	vmq_stats(vm_vmq(vm), &st);
	if (st.by_cmd == NULL)
		return;
	/* rows a VM never saw stay out: a few series per VM, not 136 */
	for (i = 0; i < VMQ_NCMDS; i++)
		for (k = 0; k < VMQ_NOUTCOMES; k++) {
			if (st.by_cmd[i][k] == 0)
				continue;
			tail.s = vmm_cmd_tail[i][k];
			tail.n = vmm_cmd_tlen[i][k];
			metrics_sample(o, f->head, lab, tail, st.by_cmd[i][k]);
		}
}

static void
vmm_latency(struct metrics_out *o, const struct vmm_fam *f, struct vm *vm,
    struct metrics_str lab)
{
	struct vmq_stats	st;

	vmq_stats(vm_vmq(vm), &st);
	metrics_hist_lab(o, &f->hist, lab, &st.latency);
}

#define VMM_ONE(n, t, h, m)	{ n, t, h, vmm_one, VMM_HEAD(n), S(m), \
				    { { NULL, 0 }, { NULL, 0 }, { NULL, 0 } } }
static const struct vmm_fam vmm_fams[] = {
	{ "vm_monitor_state", "gauge", "1 for the state the VM's monitor is "
	    "in, 0 for the others.", vmm_state,
	    VMM_HEAD("vm_monitor_state"), 0,
	    { { NULL, 0 }, { NULL, 0 }, { NULL, 0 } } },
	VMM_ONE("vm_reconnects_total", "counter", "Connections to the VM's "
	    "monitor after the first.", reconnects),
	{ "vm_commands_total", "counter", "Commands completed on the VM, by "
	    "command (unknown names: other) and outcome.", vmm_cmds,
	    VMM_HEAD("vm_commands_total"), 0,
	    { { NULL, 0 }, { NULL, 0 }, { NULL, 0 } } },
	{ "vm_command_duration_seconds", "histogram", "Time from executing a "
	    "command on the VM to its completion.", vmm_latency,
	    { NULL, 0 }, 0,
	    { VMM_HEAD("vm_command_duration_seconds_bucket"),
	    VMM_HEAD("vm_command_duration_seconds_sum"),
	    VMM_HEAD("vm_command_duration_seconds_count") } },
	VMM_ONE("vm_command_timeouts_total", "counter", "Commands that timed "
	    "out on the VM's monitor.", timeouts),
	VMM_ONE("vm_commands_in_flight", "gauge", "Commands executed on the VM "
	    "and not yet completed.", inflight),
	VMM_ONE("vm_events_total", "counter", "QEMU events received from the "
	    "VM.", events_in),
};
#define VMM_NFAMS	((int)(sizeof vmm_fams / sizeof vmm_fams[0]))
_Static_assert(sizeof (struct vmm_part) <= METRICS_STATE_MAX,
    "a scrape's state of the per-VM series");
#undef S

/* Each family is one walk of the VMs (the format wants a family's
   samples together); a part ends after the VM that filled it, and the
   cursor carries the walk over VMs added or removed in between. */
int
vm_metrics_parts(struct metrics_out *o, void *state, void *arg)
{
	struct vmm_part		*p = state;
	const struct vmm_fam	*f;
	struct metrics_str	 lab;
	struct vm		*vm;

	if (p->fam == 0 && !p->walking && !conf.metrics_per_vm)
		return (1);
	vmm_tails();
	for (; p->fam < VMM_NFAMS; p->fam++) {
		f = &vmm_fams[p->fam];
		if (!p->walking) {
			metrics_family(o, f->name, f->type, f->help);
			vm_cursor_start(&p->cur);
			p->walking = 1;
		}
		while ((vm = vm_cursor_next(&p->cur)) != NULL) {
			lab.s = vm_metrics_label(vm, &lab.n);
			f->fn(o, f, vm, lab);
			if (metrics_out_full(o))
				return (0);
		}
		p->walking = 0;
	}
	return (1);
}

void
vm_metrics_stop(void *state, void *arg)
{
	struct vmm_part	*p = state;

	if (p->walking)
		vm_cursor_stop(&p->cur);
	p->walking = 0;
}

/* ---- totals ---- */

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
}
