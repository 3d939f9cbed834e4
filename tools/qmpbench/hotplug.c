/*
 * Scenario 5, hotplug: on each of N VMs in turn-taking loops, nic-add
 * (a tap fd attached, opened here once per VM) then nic-del, or
 * disk-add (a file under the broker's image root) then disk-del, or
 * mem-add (a 128 MiB DIMM) then mem-del, against fake-qemu answering
 * device_del with DEVICE_DELETED at once (for mem, started with DIMM
 * slots and maxmem). Operations
 * (adds plus dels) per second; any error fails the scenario.
 */
#include "config.h"

#include <sys/ioctl.h>

#include <linux/if.h>
#include <linux/if_tun.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools/qmpbench/qmpbench.h"

struct hp_vm {
	struct hp	*h;
	long		 idx;
	int		 tapfd;
	uint64_t	 seq;
	int		 adding;	/* 1: waiting for the add */
};

struct hp {
	struct qb_conn	*c;
	struct hp_vm	*vms;
	long		 nvms;
	int		 nic;
	int		 mem;
	const char	*image;
	int		 stopping;
	long		 inflight;
	uint64_t	 ops, errors;
	int		 counting;
	int		 run;		/* ids unique across runs */
};

static int
hp_tap_open(long i)
{
	struct ifreq	ifr;
	int		fd;

	if ((fd = open("/dev/net/tun", O_RDWR|O_CLOEXEC)) == -1)
		qb_fatal("hotplug: /dev/net/tun: %s", strerror(errno));
	memset(&ifr, 0, sizeof ifr);
	ifr.ifr_flags = IFF_TAP|IFF_NO_PI|IFF_VNET_HDR;
	snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "qbb%d.%d",
	    (int)(getpid() % 1000), (int)(i % 10000));
	if (ioctl(fd, TUNSETIFF, &ifr) == -1)
		qb_fatal("hotplug: TUNSETIFF: %s", strerror(errno));
	return (fd);
}

static void
hp_next(struct hp_vm *v)
{
	struct hp	*h = v->h;
	char		 buf[1024];
	int		 n;
	const char	*kind = h->nic ? "nic" : h->mem ? "mem" : "disk";
	uint64_t	 id = (uint64_t)v->idx;

	if (h->stopping && !v->adding) {
		/* a device is never left behind: only stop after a del */
		return;
	}
	if (!v->adding) {
		v->seq++;
		if (h->nic)
			n = snprintf(buf, sizeof buf, "{\"execute\":\"nic-add\","
			    "\"arguments\":{\"vm\":\"vm%ld\",\"id\":\"b%d-%llu\"},"
			    "\"id\":%llu}\r\n", v->idx, h->run,
			    (unsigned long long)v->seq,
			    (unsigned long long)id);
		else if (h->mem)
			n = snprintf(buf, sizeof buf, "{\"execute\":\"mem-add\","
			    "\"arguments\":{\"vm\":\"vm%ld\",\"id\":\"b%d-%llu\","
			    "\"size\":134217728},\"id\":%llu}\r\n", v->idx, h->run,
			    (unsigned long long)v->seq,
			    (unsigned long long)id);
		else
			n = snprintf(buf, sizeof buf, "{\"execute\":\"disk-add\","
			    "\"arguments\":{\"vm\":\"vm%ld\",\"id\":\"b%d-%llu\","
			    "\"source\":\"%s\"},\"id\":%llu}\r\n", v->idx, h->run,
			    (unsigned long long)v->seq, h->image,
			    (unsigned long long)id);
		v->adding = 1;
	} else {
		n = snprintf(buf, sizeof buf, "{\"execute\":\"%s-del\","
		    "\"arguments\":{\"vm\":\"vm%ld\",\"id\":\"b%d-%llu\"},"
		    "\"id\":%llu}\r\n", kind, v->idx, h->run,
		    (unsigned long long)v->seq, (unsigned long long)id);
		v->adding = 0;
	}
	if (qb_conn_send(h->c, buf, (size_t)n, h->nic && v->adding ?
	    &v->tapfd : NULL, h->nic && v->adding ? 1 : 0) == -1)
		qb_fatal("hotplug: control connection lost");
	h->inflight++;
}

static void
hp_reply(struct qb_conn *c, json_t *msg, uint64_t id, void *arg)
{
	struct hp	*h = arg;
	struct hp_vm	*v;

	if (id >= (uint64_t)h->nvms)
		return;
	v = &h->vms[id];
	h->inflight--;
	if (json_object_get(msg, "return") == NULL) {
		char *d = json_dumps(msg, JSON_COMPACT);

		if (h->errors++ < 3)
			fprintf(stderr, "qmpbench: hotplug: vm%ld: %s\n",
			    v->idx, d != NULL ? d : "?");
		free(d);
		/* an add that failed leaves nothing to delete */
		if (v->adding)
			v->adding = 0;
	} else if (h->counting)
		h->ops++;
	hp_next(v);
}

int
bench_hotplug(int argc, char **argv)
{
	struct hp	 h;
	const char	*control = qb_arg(argc, argv, "control", NULL), *why;
	const char	*kind = qb_arg(argc, argv, "kind", "nic");
	double		 secs = (double)qb_arg_l(argc, argv, "ms", 3000) / 1e3;
	double		 t0, el, until;
	long		 i;

	memset(&h, 0, sizeof h);
	h.nvms = qb_arg_l(argc, argv, "vms", 1);
	h.nic = strcmp(kind, "nic") == 0;
	h.mem = strcmp(kind, "mem") == 0;
	/* fake-qemu keeps a named inline file node after blockdev-del of
	   its parent (QEMU frees it): reused ids would collide there */
	h.run = (int)(getpid() % 100000);
	h.image = qb_arg(argc, argv, "image", NULL);
	if (control == NULL || h.nvms < 1 || (!h.nic && !h.mem &&
	    h.image == NULL))
		qb_fatal("hotplug: --control, --vms (and --image for disks)");
	if ((h.vms = calloc((size_t)h.nvms, sizeof *h.vms)) == NULL)
		qb_fatal("out of memory");
	if ((h.c = qb_conn_open(control, hp_reply, NULL, &h, &why)) == NULL)
		qb_fatal("hotplug: %s: %s", control, why);
	for (i = 0; i < h.nvms; i++) {
		h.vms[i].h = &h;
		h.vms[i].idx = i;
		h.vms[i].tapfd = h.nic ? hp_tap_open(i) : -1;
	}
	for (i = 0; i < h.nvms; i++)
		hp_next(&h.vms[i]);
	qb_run_for(secs / 5);
	h.counting = 1;
	t0 = qb_now();
	qb_run_for(secs);
	/* a short window on a busy disk (the hotplug journal fsyncs) may
	   end before any VM finished an operation: wait for one each */
	while ((long)h.ops < h.nvms && !qb_conn_dead(h.c) &&
	    qb_now() - t0 < 60)
		qb_run_for(0.05);
	el = qb_now() - t0;
	h.counting = 0;
	h.stopping = 1;
	until = qb_now() + 60;
	while (h.inflight > 0 && !qb_conn_dead(h.c) && qb_now() < until)
		qb_run_for(0.05);
	printf("R hotplug %s-v%ld kind=%s vms=%ld ops_s=%.1f ops=%llu "
	    "errors=%llu\n", kind, h.nvms, kind, h.nvms, (double)h.ops / el,
	    (unsigned long long)h.ops, (unsigned long long)h.errors);
	for (i = 0; i < h.nvms; i++)
		if (h.vms[i].tapfd != -1)
			close(h.vms[i].tapfd);
	qb_conn_close(h.c);
	free(h.vms);
	return (h.errors > 0 || h.ops == 0 || h.inflight > 0 ? 1 : 0);
}
