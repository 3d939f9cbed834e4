/*
 * Scenario 3, scale: add N VMs (DIR/vmI.qmp, served by fake-qemu in
 * scale mode), poll query-vms until every one is ready, then look at the
 * idle broker: RSS per VM (over its RSS before the VMs came), CPU over a
 * few idle seconds (a loop that polls shows here), and how long
 * query-vms takes at that size. How many VMs have a shared socket is
 * read from query-vms too, so the table says what was measured rather
 * than what the broker was asked for.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/qmpbench/qmpbench.h"

struct scale {
	long		 count, acked, failed;
};

static void
scale_reply(struct qb_conn *c, json_t *msg, uint64_t id, void *arg)
{
	struct scale	*s = arg;

	s->acked++;
	if (json_object_get(msg, "return") == NULL) {
		if (s->failed++ == 0) {
			char *d = json_dumps(msg, JSON_COMPACT);

			fprintf(stderr, "qmpbench: scale: vm-add: %s\n",
			    d != NULL ? d : "?");
			free(d);
		}
	}
}

static long
scale_ready(json_t *r, long *total, long *shared)
{
	json_t	*a = json_object_get(r, "return"), *v;
	size_t	 i;
	long	 n = 0;
	const char *st;

	*total = (long)json_array_size(a);
	*shared = 0;
	json_array_foreach(a, i, v) {
		st = json_string_value(json_object_get(v, "state"));
		if (st != NULL && strcmp(st, "ready") == 0)
			n++;
		if (json_object_get(v, "shared-socket") != NULL)
			(*shared)++;
	}
	return (n);
}

int
bench_scale(int argc, char **argv)
{
	struct scale	 s;
	struct qb_conn	*c;
	const char	*control = qb_arg(argc, argv, "control", NULL);
	const char	*dir = qb_arg(argc, argv, "dir", NULL), *why;
	long		 pid = qb_arg_l(argc, argv, "pid", 0);
	long		 first = qb_arg_l(argc, argv, "first", 0);
	const char	*label = qb_arg(argc, argv, "label", "scale");
	double		 idle = (double)qb_arg_l(argc, argv, "idle-ms", 5000) /
			    1000.0;
	long		 rss0, rss1, ready = 0, total = 0, shared = 0, i;
	double		 t0, tready = -1, cpu0, cpu1, w0, q0;
	struct qb_samples qs;
	char		 buf[512];
	json_t		*r;
	int		 n;

	memset(&s, 0, sizeof s);
	memset(&qs, 0, sizeof qs);
	s.count = qb_arg_l(argc, argv, "count", 1000);
	if (control == NULL || dir == NULL || (pid <= 0 && idle > 0) ||
	    s.count < 1)
		qb_fatal("scale: --control, --dir, --count, --pid needed");
	if ((c = qb_conn_open(control, scale_reply, NULL, &s, &why)) == NULL)
		qb_fatal("scale: %s: %s", control, why);
	qb_run_for(0.5);
	rss0 = qb_rss_kib(pid);
	t0 = qb_now();
	for (i = first; i < first + s.count; i++) {
		n = snprintf(buf, sizeof buf, "{\"execute\":\"vm-add\","
		    "\"arguments\":{\"name\":\"vm%ld\",\"socket\":"
		    "\"%s/vm%ld.qmp\"},\"id\":%ld}\r\n", i, dir, i, i + 1);
		if (qb_conn_send(c, buf, (size_t)n, NULL, 0) == -1)
			qb_fatal("scale: control connection lost");
	}
	while (s.acked < s.count && !qb_conn_dead(c) && qb_now() - t0 < 120)
		qb_run_for(0.05);
	printf("R scaleadd %s added_s=%.3f\n", label, qb_now() - t0);
	if (s.failed > 0 || s.acked < s.count)
		qb_fatal("scale: %ld of %ld vm-add failed or unanswered",
		    s.failed + s.count - s.acked, s.count);
	while (qb_now() - t0 < 120) {
		if ((r = qb_conn_call(c, "query-vms", NULL, 60)) == NULL)
			qb_fatal("scale: query-vms failed");
		ready = scale_ready(r, &total, &shared);
		json_decref(r);
		if (ready >= total && total >= first + s.count) {
			tready = qb_now() - t0;
			break;
		}
		qb_run_for(0.1);
	}
	if (tready < 0)
		qb_fatal("scale: only %ld of %ld VMs ready after 120 s",
		    ready, total);
	if (idle <= 0) {		/* just setting up another scenario */
		printf("R setup %s vms=%ld ready_s=%.3f\n", label, total,
		    tready);
		qb_conn_close(c);
		return (0);
	}
	qb_run_for(1);
	rss1 = qb_rss_kib(pid);
	w0 = qb_now();
	cpu0 = qb_cpu_s(pid);
	qb_run_for(idle);
	cpu1 = qb_cpu_s(pid);
	w0 = qb_now() - w0;
	for (i = 0; i < 5; i++) {
		q0 = qb_now();
		if ((r = qb_conn_call(c, "query-vms", NULL, 60)) == NULL)
			qb_fatal("scale: query-vms failed");
		qb_samples_add(&qs, qb_now() - q0);
		json_decref(r);
	}
	printf("R scale %s vms=%ld shared=%ld ready_s=%.3f "
	    "rss_before_kib=%ld rss_after_kib=%ld rss_per_vm_kib=%.2f "
	    "idle_cpu_pct=%.2f query_vms_ms=%.2f\n", label, total, shared,
	    tready, rss0, rss1, (double)(rss1 - rss0) / (double)s.count,
	    (cpu1 - cpu0) / w0 * 100.0, qb_samples_pct(&qs, 50) * 1e3);
	qb_samples_free(&qs);
	qb_conn_close(c);
	return (0);
}
