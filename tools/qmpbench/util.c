/*
 * qmpbench: entry point and small shared helpers (clock, /proc, samples).
 */
#include "config.h"

#include <sys/resource.h>
#include <sys/time.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tools/qmpbench/qmpbench.h"
#include "util/defer.h"

struct event_base *qb_base;

void
qb_fatal(const char *fmt, ...)
{
	va_list	ap;

	fputs("qmpbench: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

double
qb_now(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((double)ts.tv_sec + (double)ts.tv_nsec / 1e9);
}

double
qb_wall(void)
{
	struct timeval	tv;

	gettimeofday(&tv, NULL);
	return ((double)tv.tv_sec + (double)tv.tv_usec / 1e6);
}

void
qb_raise_nofile(void)
{
	struct rlimit	rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

long
qb_rss_kib(long pid)
{
	char	 path[64], line[256];
	FILE	*f;
	long	 v = -1;

	snprintf(path, sizeof path, "/proc/%ld/status", pid);
	if ((f = fopen(path, "r")) == NULL)
		return (-1);
	while (fgets(line, sizeof line, f) != NULL) {
		if (strncmp(line, "VmRSS:", 6) == 0) {
			v = strtol(line + 6, NULL, 10);
			break;
		}
	}
	fclose(f);
	return (v);
}

double
qb_cpu_s(long pid)
{
	char			 path[64], buf[1024], *p;
	FILE			*f;
	unsigned long long	 ut = 0, st = 0;
	size_t			 n;
	int			 i;

	snprintf(path, sizeof path, "/proc/%ld/stat", pid);
	if ((f = fopen(path, "r")) == NULL)
		return (-1);
	n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* the command name may hold spaces: count fields after its ')' */
	if ((p = strrchr(buf, ')')) == NULL)
		return (-1);
	for (i = 0; i < 12 && p != NULL; i++)
		p = strchr(p + 1, ' ');
	if (p == NULL || sscanf(p, " %llu %llu", &ut, &st) != 2)
		return (-1);
	return ((double)(ut + st) / (double)sysconf(_SC_CLK_TCK));
}

static void
qb_run_done(evutil_socket_t fd, short what, void *arg)
{
	event_base_loopbreak(qb_base);
}

void
qb_run_for(double secs)
{
	struct event	*ev;
	struct timeval	 tv;

	if (secs < 0)
		secs = 0;
	tv.tv_sec = (time_t)secs;
	tv.tv_usec = (suseconds_t)((secs - (double)tv.tv_sec) * 1e6);
	/* a timer of our own, gone afterwards: an earlier loopbreak must
	   not leave it to cut a later run short */
	if ((ev = evtimer_new(qb_base, qb_run_done, NULL)) == NULL)
		qb_fatal("out of memory");
	evtimer_add(ev, &tv);
	event_base_dispatch(qb_base);
	event_free(ev);
}

const char *
qb_arg(int argc, char **argv, const char *name, const char *def)
{
	int	i;

	for (i = 1; i + 1 < argc; i++) {
		if (argv[i][0] == '-' && argv[i][1] == '-' &&
		    strcmp(argv[i] + 2, name) == 0)
			return (argv[i + 1]);
	}
	return (def);
}

long
qb_arg_l(int argc, char **argv, const char *name, long def)
{
	const char	*s = qb_arg(argc, argv, name, NULL);
	char		*end;
	long		 v;

	if (s == NULL)
		return (def);
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || *end != '\0' || end == s)
		qb_fatal("--%s: not a number: %s", name, s);
	return (v);
}

void
qb_samples_add(struct qb_samples *s, double v)
{
	double	*nv;

	if (s->n == s->cap) {
		s->cap = s->cap == 0 ? 4096 : s->cap * 2;
		if ((nv = realloc(s->v, s->cap * sizeof *nv)) == NULL)
			qb_fatal("out of memory");
		s->v = nv;
	}
	s->v[s->n++] = v;
	s->sorted = 0;
}

static int
qb_cmp_double(const void *a, const void *b)
{
	double	x = *(const double *)a, y = *(const double *)b;

	return (x < y ? -1 : x > y);
}

double
qb_samples_pct(struct qb_samples *s, double pct)
{
	size_t	i;

	if (s->n == 0)
		return (0);
	if (!s->sorted) {
		qsort(s->v, s->n, sizeof *s->v, qb_cmp_double);
		s->sorted = 1;
	}
	i = (size_t)(pct / 100.0 * (double)(s->n - 1) + 0.5);
	if (i >= s->n)
		i = s->n - 1;
	return (s->v[i]);
}

void
qb_samples_free(struct qb_samples *s)
{
	free(s->v);
	memset(s, 0, sizeof *s);
}

static const struct {
	const char	*name;
	int		(*fn)(int, char **);
	const char	*usage;
} qb_cmds[] = {
	{ "hop", bench_hop, "--direct P --socat P --control P --vm NAME "
	    "--shared P [--n N] [--rounds R] [--warmup W] [--label L] [--modes LIST]" },
	{ "tput", bench_tput, "--control P --vms N --clients C [--depth D] "
	    "[--ms MS]" },
	{ "scale", bench_scale, "--control P --dir DIR --count N --pid PID "
	    "[--idle-ms MS] [--first I] [--label L]" },
	{ "replay", bench_replay, "--control P: since 0 into one subscriber" },
	{ "fanout", bench_fanout, "--control P --vms N --subs S [--secs S] "
	    "[--rate R]" },
	{ "hotplug", bench_hotplug, "--control P --vms N --kind nic|disk|mem "
	    "[--ms MS] [--image FILE]" },
	{ "parse", bench_parse, "--file F [--mb N]" },
	{ "soak", bench_soak, "--control P --vms N --pid PID [--ms MS]" },
	{ "scrape", bench_scrape, "--addr HOST:PORT [--n N] [--pid PID] "
	    "[--label L] | "
	    "--addr HOST:PORT --every-ms MS --secs S" },
};

static void
qb_usage(void)
{
	size_t	i;

	fprintf(stderr, "usage: qmpbench SCENARIO [options]\n");
	for (i = 0; i < sizeof qb_cmds / sizeof qb_cmds[0]; i++)
		fprintf(stderr, "  qmpbench %s %s\n", qb_cmds[i].name,
		    qb_cmds[i].usage);
}

int
main(int argc, char **argv)
{
	size_t	i;
	int	rc;

	if (argc < 2 || strcmp(argv[1], "--help") == 0 ||
	    strcmp(argv[1], "-h") == 0) {
		qb_usage();
		return (argc < 2 ? 2 : 0);
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	qb_raise_nofile();
	if ((qb_base = event_base_new()) == NULL)
		qb_fatal("event_base_new failed");
	for (i = 0; i < sizeof qb_cmds / sizeof qb_cmds[0]; i++) {
		if (strcmp(argv[1], qb_cmds[i].name) == 0) {
			rc = qb_cmds[i].fn(argc - 1, argv + 1);
			/* connections closed last waited for a loop pass */
			defer_flush();
			return (rc);
		}
	}
	qb_usage();
	return (2);
}
