/*
 * query-stats: the metrics' figures as JSON for a person (qmpctl stats)
 * or a script. The same counters the Prometheus exposition reads
 * (hv/vmq.h, hv/hp.h, core/job.h, session/client.h, core/metrics.h),
 * with each VM's latency as quantiles estimated from its histogram.
 * Only the VMs the peer may see (vm-allow) are listed; the process'
 * figures are for everyone, like query-version.
 */
#include "config.h"

#include "broker/cmd/cmd.h"
#include "broker/core/job.h"
#include "broker/core/metrics.h"
#include "broker/session/client.h"
#include "broker/session/req.h"
#include "broker/vm/vm.h"
#include "hv/hp.h"
#include "hv/vmq.h"
#include "util/hist.h"

/* Seconds as a JSON real; an estimate in the +Inf bucket is null. */
static json_t *
cmd_stats_secs(uint64_t us)
{
	if (us == UINT64_MAX)
		return (json_null());
	return (json_real((double)us / 1e6));
}

static json_t *
cmd_stats_hist(const struct hist *h)
{
	return (json_pack("{s:I, s:o, s:o, s:o, s:o}",
	    "count", (json_int_t)h->count,
	    "mean", h->count == 0 ? json_real(0) :
	    json_real((double)h->sum_us / 1e6 / (double)h->count),
	    "p50", cmd_stats_secs(hist_quantile_us(h, 0.5)),
	    "p99", cmd_stats_secs(hist_quantile_us(h, 0.99)),
	    "max-bucket", cmd_stats_secs(hist_quantile_us(h, 1.0))));
}

static json_t *
cmd_stats_vm(struct vm *vm)
{
	struct vmq_stats	 st;
	json_t			*by, *j;
	uint64_t		 errors = 0;
	size_t			 i;

	vmq_stats(vm_vmq(vm), &st);
	by = json_object();
	for (i = 0; st.by_cmd != NULL && i < VMQ_NCMDS; i++) {
		errors += st.by_cmd[i][VMQ_ERROR];
		if (st.by_cmd[i][VMQ_OK] + st.by_cmd[i][VMQ_ERROR] == 0)
			continue;
		json_object_set_new(by, vmq_cmd_name(i), json_pack("{s:I, s:I}",
		    "ok", (json_int_t)st.by_cmd[i][VMQ_OK],
		    "error", (json_int_t)st.by_cmd[i][VMQ_ERROR]));
	}
	j = json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:o}",
	    "name", vm_name(vm),
	    "state", mon_state_name(vm_state(vm)),
	    "commands", (json_int_t)st.commands,
	    "errors", (json_int_t)errors,
	    "timeouts", (json_int_t)st.timeouts,
	    "in-flight", (json_int_t)st.inflight,
	    "reconnects", (json_int_t)st.reconnects,
	    "events-in", (json_int_t)st.events_in,
	    "latency", cmd_stats_hist(&st.latency),
	    "by-command", by);
	return (j);
}

static json_t *
cmd_stats_process(void)
{
	struct client_stats	 cs;
	struct metrics_proc	 mp;
	struct job_stat		 js[JOB_STAT_KINDS];
	const struct hp_stats	*hs = hp_stats();
	json_t			*hp, *jobs, *o;
	size_t			 n, i, s;
	int			 k;

	client_stats(&cs);
	metrics_proc(&mp);
	hp = json_object();
	for (k = 0; k < HP_NSTATKINDS; k++)
		json_object_set_new(hp, hp_stat_kind_name((enum hp_stat_kind)k),
		    json_pack("{s:I, s:I, s:o}",
		    "ok", (json_int_t)hs->ok[k],
		    "error", (json_int_t)hs->error[k],
		    "latency", cmd_stats_hist(&hs->latency[k])));
	jobs = json_object();
	n = job_stats(js, JOB_STAT_KINDS);
	for (i = 0; i < n; i++) {
		o = json_object();
		for (s = 0; s < JOB_NSTATUS; s++)
			json_object_set_new(o,
			    job_status_name((enum job_status)s),
			    json_integer((json_int_t)js[i].entered[s]));
		json_object_set_new(jobs, js[i].kind, o);
	}
	return (json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o, "
	    "s:o, s:o}",
	    "clients-control", (json_int_t)cs.control,
	    "clients-shared", (json_int_t)cs.shared,
	    "subscriptions", (json_int_t)cs.subscriptions,
	    "events-out", (json_int_t)cs.events_out,
	    "events-dropped", (json_int_t)cs.events_dropped,
	    "queued-bytes", (json_int_t)cs.queued_bytes,
	    "open-fds", (json_int_t)mp.open_fds,
	    "rss-bytes", (json_int_t)mp.rss_bytes,
	    "loop-lag", cmd_stats_hist(&mp.loop_lag),
	    "hotplug", hp,
	    "jobs-entered", jobs));
}

static void
cmd_query_stats(struct req *r, json_t *args, const struct cmd_entry *e,
    const struct cmd_target *t)
{
	json_t	*a;

	if ((a = cmd_vms_json(r, t, cmd_stats_vm)) == NULL) {
		req_error(r, QMP_CLS_GENERIC, "out of memory");
		return;
	}
	req_reply(r, json_pack("{s:o, s:o}", "process", cmd_stats_process(),
	    "vms", a));
}

const struct cmd_entry cmd_stats_table[] = {
	{ .name = "query-stats", .exec = cmd_query_stats,
	    .target = { "name", CMD_FIND_VM | CMD_TARGET_OPT },
	    .args = { { "name", 's', false } } },
	{ .name = NULL }
};
