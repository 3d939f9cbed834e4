/*
 * Scenario 1, hop cost: synchronous query-status round trips on one VM,
 * (a) on the QEMU socket itself, (b) through socat, (c) through the
 * broker's vm-execute, (d) through the broker's shared per-VM socket.
 * The modes take turns in rounds so that machine noise lands on all of
 * them alike; (c-a)/(b-a) and (d-a)/(b-a) are the broker's price in
 * units of one dumb hop. With --attach NAME's SOCKET, all four talk to
 * the same QEMU process: the broker is given it (vm-add) for its two
 * modes of each round and gives it back (vm-remove) for the other two,
 * as two QEMU processes of the same build still differ by tens of
 * microseconds a round trip.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/qmpbench/qmpbench.h"

enum { HOP_DIRECT, HOP_SOCAT, HOP_BROKER, HOP_SHARED, HOP_N };
static const char *const hop_names[HOP_N] = {
	"direct", "socat", "broker", "shared"
};

struct hop_run {
	struct qb_conn		*c;
	const char		*line;
	size_t			 len;
	long			 left;
	long			 skip;		/* warm-up */
	double			 t0;
	uint64_t		 id;
	int			 noid;		/* commands without an id */
	struct qb_samples	*s;
	int			 failed;
};

static void
hop_send(struct hop_run *h)
{
	char	buf[256];
	int	n;

	if (h->noid)
		n = snprintf(buf, sizeof buf, "%s}\r\n", h->line);
	else
		n = snprintf(buf, sizeof buf, "%s%llu}\r\n", h->line,
		    (unsigned long long)++h->id);
	h->t0 = qb_now();
	if (qb_conn_send(h->c, buf, (size_t)n, NULL, 0) == -1) {
		h->failed = 1;
		event_base_loopbreak(qb_base);
	}
}

static void
hop_reply(struct qb_conn *c, json_t *msg, uint64_t id, void *arg)
{
	struct hop_run	*h = arg;
	double		 t = qb_now() - h->t0;

	if (id != h->id || json_object_get(msg, "return") == NULL) {
		char *s = json_dumps(msg, JSON_COMPACT);

		fprintf(stderr, "qmpbench: hop: unexpected reply %s\n",
		    s != NULL ? s : "?");
		free(s);
		h->failed = 1;
		event_base_loopbreak(qb_base);
		return;
	}
	if (h->skip > 0)
		h->skip--;
	else {
		qb_samples_add(h->s, t);
		h->left--;
	}
	if (h->left == 0) {
		event_base_loopbreak(qb_base);
		return;
	}
	hop_send(h);
}

static int
hop_round(const char *path, const char *line, int noid, long n, long warm,
    struct qb_samples *s)
{
	struct hop_run	 h;
	const char	*why;
	double		 until;

	memset(&h, 0, sizeof h);
	h.line = line;
	h.noid = noid;
	h.left = n;
	h.skip = warm;
	h.s = s;
	if ((h.c = qb_conn_open(path, hop_reply, NULL, &h, &why)) == NULL) {
		fprintf(stderr, "qmpbench: hop: %s: %s\n", path, why);
		return (-1);
	}
	hop_send(&h);
	until = qb_now() + 300;
	while (h.left > 0 && !h.failed && !qb_conn_dead(h.c) &&
	    qb_now() < until)
		qb_run_for(until - qb_now());
	if (h.left > 0)
		h.failed = 1;
	qb_conn_close(h.c);
	return (h.failed ? -1 : 0);
}

/* vm-add the VM and wait until it is ready, or vm-remove it. */
static void
hop_attach(struct qb_conn *ctl, const char *vm, const char *sock, int add)
{
	json_t		*r, *a;
	const char	*st;
	double		 until = qb_now() + 30;

	if (!add) {
		r = qb_conn_call(ctl, "vm-remove", json_pack("{s:s}", "name",
		    vm), 30);
		if (r == NULL || json_object_get(r, "return") == NULL)
			qb_fatal("hop: vm-remove %s failed", vm);
		json_decref(r);
		return;
	}
	r = qb_conn_call(ctl, "vm-add", json_pack("{s:s,s:s}", "name", vm,
	    "socket", sock), 30);
	if (r == NULL || json_object_get(r, "return") == NULL)
		qb_fatal("hop: vm-add %s failed", vm);
	json_decref(r);
	for (;;) {
		r = qb_conn_call(ctl, "query-vms", json_pack("{s:s}", "name",
		    vm), 30);
		a = json_array_get(json_object_get(r, "return"), 0);
		st = json_string_value(json_object_get(a, "state"));
		if (st != NULL && strcmp(st, "ready") == 0) {
			json_decref(r);
			return;
		}
		json_decref(r);
		if (qb_now() > until)
			qb_fatal("hop: %s not ready after vm-add", vm);
		qb_run_for(0.01);
	}
}

int
bench_hop(int argc, char **argv)
{
	const char		*path[HOP_N], *label, *vm, *modes, *attach, *why;
	struct qb_conn		*ctl = NULL;
	int			 on[HOP_N];
	char			 bline[256];
	const char		*line[HOP_N];
	struct qb_samples	 s[HOP_N];
	double			 med[HOP_N], p99[HOP_N];
	long			 n, rounds, warm, per;
	int			 r, m, noid;

	path[HOP_DIRECT] = qb_arg(argc, argv, "direct", NULL);
	path[HOP_SOCAT] = qb_arg(argc, argv, "socat", NULL);
	path[HOP_BROKER] = qb_arg(argc, argv, "control", NULL);
	path[HOP_SHARED] = qb_arg(argc, argv, "shared", NULL);
	vm = qb_arg(argc, argv, "vm", "vm1");
	attach = qb_arg(argc, argv, "attach", NULL);
	label = qb_arg(argc, argv, "label", "fake");
	n = qb_arg_l(argc, argv, "n", 20000);
	rounds = qb_arg_l(argc, argv, "rounds", 4);
	warm = qb_arg_l(argc, argv, "warmup", 500);
	if (n < 1 || rounds < 1 || warm < 0)
		qb_fatal("hop: bad counts");
	modes = qb_arg(argc, argv, "modes", "direct,socat,broker,shared");
	/* --noid yes: commands without an id, as many clients send them
	   (their replies carry none, so the reply matched is id 0) */
	noid = strcmp(qb_arg(argc, argv, "noid", "no"), "yes") == 0;
	for (m = 0; m < HOP_N; m++) {
		on[m] = strstr(modes, hop_names[m]) != NULL;
		if (on[m] && path[m] == NULL)
			qb_fatal("hop: --%s needed", m == HOP_BROKER ?
			    "control" : hop_names[m]);
	}
	snprintf(bline, sizeof bline, "{\"execute\":\"vm-execute\","
	    "\"arguments\":{\"vm\":\"%s\",\"command\":\"query-status\"}"
	    "%s", vm, noid ? "" : ",\"id\":");
	line[HOP_DIRECT] = line[HOP_SOCAT] = line[HOP_SHARED] = noid ?
	    "{\"execute\":\"query-status\"" :
	    "{\"execute\":\"query-status\",\"id\":";
	line[HOP_BROKER] = bline;
	memset(s, 0, sizeof s);
	per = (n + rounds - 1) / rounds;
	if (attach != NULL && (ctl = qb_conn_open(path[HOP_BROKER], NULL, NULL,
	    NULL, &why)) == NULL)
		qb_fatal("hop: %s: %s", path[HOP_BROKER], why);
	for (r = 0; r < rounds; r++) {
		for (m = 0; m < HOP_N; m++) {
			if (!on[m])
				continue;
			/* with --attach all four talk to the same QEMU: the
			   broker holds it only for its own two modes */
			if (ctl != NULL && m == HOP_BROKER)
				hop_attach(ctl, vm, attach, 1);
			if (hop_round(path[m], line[m], noid, per, warm,
			    &s[m]) == -1)
				qb_fatal("hop: %s mode failed", hop_names[m]);
			if (ctl != NULL && m == HOP_SHARED)
				hop_attach(ctl, vm, attach, 0);
		}
	}
	qb_conn_close(ctl);
	for (m = 0; m < HOP_N; m++) {
		if (!on[m])
			continue;
		med[m] = qb_samples_pct(&s[m], 50) * 1e6;
		p99[m] = qb_samples_pct(&s[m], 99) * 1e6;
		printf("R hop %s-%s n=%zu median_us=%.2f p99_us=%.2f\n", label,
		    hop_names[m], s[m].n, med[m], p99[m]);
	}
	if (!on[HOP_DIRECT] || !on[HOP_SOCAT] || !on[HOP_BROKER] ||
	    !on[HOP_SHARED])
		;
	else if (med[HOP_SOCAT] - med[HOP_DIRECT] > 0)
		printf("R hopratio %s broker=%.2f shared=%.2f hop_us=%.2f\n",
		    label, (med[HOP_BROKER] - med[HOP_DIRECT]) /
		    (med[HOP_SOCAT] - med[HOP_DIRECT]),
		    (med[HOP_SHARED] - med[HOP_DIRECT]) /
		    (med[HOP_SOCAT] - med[HOP_DIRECT]),
		    med[HOP_SOCAT] - med[HOP_DIRECT]);
	else
		printf("R hopratio %s broker=nan shared=nan hop_us=%.2f\n",
		    label, med[HOP_SOCAT] - med[HOP_DIRECT]);
	for (m = 0; m < HOP_N; m++)
		qb_samples_free(&s[m]);
	return (0);
}
