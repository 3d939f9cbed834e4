/*
 * Scenario 2, throughput: C clients on the control socket, each keeping
 * D vm-execute query-status in flight, spread round robin over the first
 * N VMs. Commands per second and latency percentiles. Also the mixed
 * traffic of the soak, which reuses these clients.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/qmpbench/qmpbench.h"

struct tput_client {
	struct qb_conn		*c;
	struct tput		*t;
	double			*t0;		/* per slot */
	uint64_t		 seq;
	unsigned		 inflight;
};

struct tput {
	struct tput_client	*cl;
	long			 nclients, depth, nvms;
	unsigned long		 next_vm;
	int			 stopping;
	int			 failed;
	uint64_t		 done;
	uint64_t		 errors;
	struct qb_samples	 lat;
	int			 record;
};

static void
tput_send(struct tput_client *tc, unsigned slot)
{
	struct tput	*t = tc->t;
	char		 buf[256];
	int		 n;
	uint64_t	 id;

	id = ++tc->seq * (uint64_t)t->depth + slot;
	n = snprintf(buf, sizeof buf, "{\"execute\":\"vm-execute\","
	    "\"arguments\":{\"vm\":\"vm%lu\",\"command\":\"query-status\"},"
	    "\"id\":%llu}\r\n", t->next_vm++ % (unsigned long)t->nvms,
	    (unsigned long long)id);
	tc->t0[slot] = qb_now();
	if (qb_conn_send(tc->c, buf, (size_t)n, NULL, 0) == -1) {
		t->failed = 1;
		event_base_loopbreak(qb_base);
		return;
	}
	tc->inflight++;
}

static void
tput_reply(struct qb_conn *c, json_t *msg, uint64_t id, void *arg)
{
	struct tput_client	*tc = arg;
	struct tput		*t = tc->t;
	unsigned		 slot = (unsigned)(id % (uint64_t)t->depth);

	tc->inflight--;
	if (json_object_get(msg, "return") == NULL)
		t->errors++;
	t->done++;
	if (t->record)
		qb_samples_add(&t->lat, qb_now() - tc->t0[slot]);
	if (!t->stopping)
		tput_send(tc, slot);
}

static int
tput_start(struct tput *t, const char *control)
{
	const char	*why;
	long		 i;
	unsigned	 s;

	if ((t->cl = calloc((size_t)t->nclients, sizeof *t->cl)) == NULL)
		qb_fatal("out of memory");
	for (i = 0; i < t->nclients; i++) {
		t->cl[i].t = t;
		if ((t->cl[i].t0 = calloc((size_t)t->depth, sizeof(double))) ==
		    NULL)
			qb_fatal("out of memory");
		if ((t->cl[i].c = qb_conn_open(control, tput_reply, NULL,
		    &t->cl[i], &why)) == NULL) {
			fprintf(stderr, "qmpbench: tput: %s: %s\n", control,
			    why);
			return (-1);
		}
	}
	for (i = 0; i < t->nclients; i++)
		for (s = 0; s < (unsigned)t->depth; s++)
			tput_send(&t->cl[i], s);
	return (0);
}

/* Stop issuing, collect what is in flight, close. */
static int
tput_stop(struct tput *t)
{
	double	until = qb_now() + 60;
	long	i;
	int	busy;

	t->stopping = 1;
	do {
		busy = 0;
		for (i = 0; i < t->nclients; i++)
			if (t->cl[i].inflight > 0 && !qb_conn_dead(t->cl[i].c))
				busy = 1;
		if (busy)
			qb_run_for(0.05);
	} while (busy && qb_now() < until);
	for (i = 0; i < t->nclients; i++) {
		if (qb_conn_dead(t->cl[i].c))
			t->failed = 1;
		qb_conn_close(t->cl[i].c);
		free(t->cl[i].t0);
	}
	free(t->cl);
	return (busy || t->failed ? -1 : 0);
}

int
bench_tput(int argc, char **argv)
{
	struct tput	 t;
	const char	*control = qb_arg(argc, argv, "control", NULL);
	double		 secs, t0, el;
	uint64_t	 d0;

	memset(&t, 0, sizeof t);
	t.nclients = qb_arg_l(argc, argv, "clients", 1);
	t.depth = qb_arg_l(argc, argv, "depth", 16);
	t.nvms = qb_arg_l(argc, argv, "vms", 1);
	secs = (double)qb_arg_l(argc, argv, "ms", 3000) / 1000.0;
	if (control == NULL || t.nclients < 1 || t.depth < 1 || t.nvms < 1)
		qb_fatal("tput: --control, --clients, --vms needed");
	if (tput_start(&t, control) == -1)
		return (1);
	qb_run_for(secs / 5);		/* warm-up */
	t.record = 1;
	d0 = t.done;
	t0 = qb_now();
	qb_run_for(secs);
	el = qb_now() - t0;
	t.record = 0;
	printf("R tput c%ld-v%ld clients=%ld vms=%ld depth=%ld cmds_s=%.0f "
	    "p50_us=%.1f p99_us=%.1f errors=%llu\n", t.nclients, t.nvms,
	    t.nclients, t.nvms, t.depth, (double)(t.done - d0) / el,
	    qb_samples_pct(&t.lat, 50) * 1e6, qb_samples_pct(&t.lat, 99) * 1e6,
	    (unsigned long long)t.errors);
	qb_samples_free(&t.lat);
	if (tput_stop(&t) == -1 || t.errors > 0) {
		fprintf(stderr, "qmpbench: tput: failed (%llu errors)\n",
		    (unsigned long long)t.errors);
		return (1);
	}
	return (0);
}

/*
 * The soak: 8 clients pipelining vm-execute over N VMs, one subscriber
 * taking every event, and a query-vms every second, for S seconds; the
 * broker's RSS sampled every 10 s. Memory should stay flat.
 */
static uint64_t soak_events;

static void
soak_event(struct qb_conn *c, json_t *msg, void *arg)
{
	soak_events++;
}

int
bench_soak(int argc, char **argv)
{
	struct tput	 t;
	struct qb_conn	*sub, *q;
	const char	*control = qb_arg(argc, argv, "control", NULL), *why;
	long		 pid = qb_arg_l(argc, argv, "pid", 0), rss0, rss, rmax;
	double		 secs, t0, next;
	json_t		*r;
	uint64_t	 queries = 0;

	memset(&t, 0, sizeof t);
	t.nclients = 8;
	t.depth = 8;
	t.nvms = qb_arg_l(argc, argv, "vms", 10);
	secs = (double)qb_arg_l(argc, argv, "secs", 120);
	if (control == NULL || pid <= 0)
		qb_fatal("soak: --control and --pid needed");
	if ((sub = qb_conn_open(control, NULL, soak_event, NULL, &why)) ==
	    NULL || (q = qb_conn_open(control, NULL, NULL, NULL, &why)) ==
	    NULL)
		qb_fatal("soak: %s", why);
	r = qb_conn_call(sub, "subscribe", NULL, 10);
	if (r == NULL || json_object_get(r, "return") == NULL)
		qb_fatal("soak: subscribe failed");
	json_decref(r);
	if (tput_start(&t, control) == -1)
		return (1);
	qb_run_for(2);
	rss0 = rmax = qb_rss_kib(pid);
	printf("R soakrss t=0 rss_kib=%ld\n", rss0);
	t0 = qb_now();
	next = t0 + 10;
	while (qb_now() - t0 < secs) {
		qb_run_for(1);
		if ((r = qb_conn_call(q, "query-vms", NULL, 10)) == NULL)
			qb_fatal("soak: query-vms failed");
		json_decref(r);
		queries++;
		if (qb_now() >= next) {
			rss = qb_rss_kib(pid);
			if (rss > rmax)
				rmax = rss;
			printf("R soakrss t=%.0f rss_kib=%ld\n", qb_now() - t0,
			    rss);
			next += 10;
		}
	}
	rss = qb_rss_kib(pid);
	printf("R soak secs=%.0f cmds=%llu events=%llu queries=%llu "
	    "rss_start_kib=%ld rss_end_kib=%ld rss_max_kib=%ld errors=%llu\n",
	    secs, (unsigned long long)t.done, (unsigned long long)soak_events,
	    (unsigned long long)queries, rss0, rss, rmax,
	    (unsigned long long)t.errors);
	qb_conn_close(sub);
	qb_conn_close(q);
	if (tput_stop(&t) == -1 || t.errors > 0)
		return (1);
	return (0);
}
