/*
 * Metrics registry and Prometheus' text format (see metrics.h).
 *
 * A scrape of 10,000 VMs writes a few hundred thousand lines: each is
 * formatted by hand into a fixed scratch buffer (no printf, no
 * allocation per line), which goes to the output evbuffer whenever it
 * fills, so the cost is one copy of the bytes and memory grows only
 * with the response itself.
 */
#include "config.h"

#include <sys/stat.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "broker/core/job.h"
#include "broker/core/metrics.h"
#include "hv/hp.h"
#include "util/hist.h"

#define METRICS_LAG_MS	500	/* loop-lag timer period */
#define METRICS_SCRATCH	65536

struct metrics_out {
	struct evbuffer	*buf;
	size_t		 len;
	char		 tmp[METRICS_SCRATCH];
};

static struct {
	metrics_collect_fn	*fn;
	void			*arg;
} metrics_col[METRICS_MAX_COLLECTORS];
static size_t		 metrics_ncol;
static struct event	*metrics_lag_ev;
static uint64_t		 metrics_lag_due;	/* us, monotonic */
static struct hist	 metrics_lag;
static char		 metrics_le[HIST_NBOUNDS][24];

/* ---- writing ---- */

static void
mo_flush(struct metrics_out *o)
{
	if (o->len > 0)
		evbuffer_add(o->buf, o->tmp, o->len);
	o->len = 0;
}

static void
mo_mem(struct metrics_out *o, const char *s, size_t n)
{
	size_t	k;

	while (n > 0) {
		if (o->len == sizeof o->tmp)
			mo_flush(o);
		k = sizeof o->tmp - o->len;
		if (k > n)
			k = n;
		memcpy(o->tmp + o->len, s, k);
		o->len += k;
		s += k;
		n -= k;
	}
}

static void
mo_str(struct metrics_out *o, const char *s)
{
	mo_mem(o, s, strlen(s));
}

static void
mo_u64(struct metrics_out *o, uint64_t v)
{
	char	b[24];
	size_t	i = sizeof b;

	do {
		b[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	mo_mem(o, b + i, sizeof b - i);
}

/* The format's label value escapes: backslash, double quote, newline. */
static void
mo_esc(struct metrics_out *o, const char *s)
{
	const char	*p;

	for (p = s; *p != '\0'; p++) {
		if (*p != '\\' && *p != '"' && *p != '\n')
			continue;
		mo_mem(o, s, (size_t)(p - s));
		mo_str(o, *p == '\\' ? "\\\\" : *p == '"' ? "\\\"" : "\\n");
		s = p + 1;
	}
	mo_mem(o, s, (size_t)(p - s));
}

/* name{k="v",...,extra_k="extra_v"} with the prefix. */
static void
mo_name(struct metrics_out *o, const char *name, const char *suffix,
    const char *const *kv, const char *xk, const char *xv)
{
	const char	*sep = "{";

	mo_str(o, METRICS_PREFIX);
	mo_str(o, name);
	if (suffix != NULL)
		mo_str(o, suffix);
	for (; kv != NULL && kv[0] != NULL; kv += 2) {
		mo_str(o, sep);
		mo_str(o, kv[0]);
		mo_str(o, "=\"");
		mo_esc(o, kv[1] != NULL ? kv[1] : "");
		mo_str(o, "\"");
		sep = ",";
	}
	if (xk != NULL) {
		mo_str(o, sep);
		mo_str(o, xk);
		mo_str(o, "=\"");
		mo_str(o, xv);
		mo_str(o, "\"");
		sep = ",";
	}
	if (sep[0] == ',')
		mo_str(o, "}");
	mo_str(o, " ");
}

void
metrics_family(struct metrics_out *o, const char *name, const char *type,
    const char *help)
{
	mo_str(o, "# HELP " METRICS_PREFIX);
	mo_str(o, name);
	mo_str(o, " ");
	mo_str(o, help);
	mo_str(o, "\n# TYPE " METRICS_PREFIX);
	mo_str(o, name);
	mo_str(o, " ");
	mo_str(o, type);
	mo_str(o, "\n");
}

void
metrics_u64(struct metrics_out *o, const char *name, const char *const *kv,
    uint64_t v)
{
	mo_name(o, name, NULL, kv, NULL, NULL);
	mo_u64(o, v);
	mo_str(o, "\n");
}

void
metrics_one(struct metrics_out *o, const char *name, const char *type,
    const char *help, uint64_t v)
{
	metrics_family(o, name, type, help);
	metrics_u64(o, name, NULL, v);
}

void
metrics_table(struct metrics_out *o, const struct metrics_def *d, size_t n,
    const void *base)
{
	size_t	i;

	for (i = 0; i < n; i++)
		metrics_one(o, d[i].name, d[i].type, d[i].help,
		    *(const uint64_t *)(const void *)((const char *)base +
		    d[i].off));
}

static void
mo_dbl(struct metrics_out *o, double v)
{
	char	b[40];

	snprintf(b, sizeof b, "%.9g", v);
	mo_str(o, b);
}

void
metrics_hist(struct metrics_out *o, const char *name, const char *const *kv,
    const struct hist *h)
{
	uint64_t	cum = 0;
	int		i;

	for (i = 0; i < HIST_NBOUNDS; i++) {
		cum += h->n[i];
		mo_name(o, name, "_bucket", kv, "le", metrics_le[i]);
		mo_u64(o, cum);
		mo_str(o, "\n");
	}
	mo_name(o, name, "_bucket", kv, "le", "+Inf");
	mo_u64(o, h->count);
	mo_str(o, "\n");
	mo_name(o, name, "_sum", kv, NULL, NULL);
	mo_dbl(o, (double)h->sum_us / 1e6);
	mo_str(o, "\n");
	mo_name(o, name, "_count", kv, NULL, NULL);
	mo_u64(o, h->count);
	mo_str(o, "\n");
}

/* ---- the process ---- */

/* Linux 6.2 and later give the count as the directory's size, at no
   cost; reading the directory makes the kernel build an entry per fd,
   which with 10,000 VMs was most of a scrape. */
static uint64_t
metrics_open_fds(void)
{
	DIR		*d;
	struct dirent	*e;
	struct stat	 st;
	uint64_t	 n = 0;

	if (stat("/proc/self/fd", &st) == 0 && st.st_size > 0)
		return ((uint64_t)st.st_size);
	if ((d = opendir("/proc/self/fd")) == NULL)
		return (0);
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return (n > 0 ? n - 1 : 0);	/* not the one reading it */
}

static uint64_t
metrics_rss(void)
{
	char		 b[128];
	unsigned long	 size, res;
	ssize_t		 n;
	int		 fd;

	if ((fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC)) == -1)
		return (0);
	n = read(fd, b, sizeof b - 1);
	close(fd);
	if (n <= 0)
		return (0);
	b[n] = '\0';
	if (sscanf(b, "%lu %lu", &size, &res) != 2)
		return (0);
	return ((uint64_t)res * (uint64_t)sysconf(_SC_PAGESIZE));
}

void
metrics_proc(struct metrics_proc *out)
{
	out->open_fds = metrics_open_fds();
	out->rss_bytes = metrics_rss();
	out->loop_lag = metrics_lag;
}

/* The loop's lateness: a timer due every METRICS_LAG_MS, measured
   against when it was due. A busy loop (a long callback, a scrape of
   many VMs) shows here. */
static void
metrics_lag_arm(void)
{
	struct timeval	tv = { METRICS_LAG_MS / 1000,
			    (METRICS_LAG_MS % 1000) * 1000 };

	metrics_lag_due = hist_now_us() + METRICS_LAG_MS * 1000;
	evtimer_add(metrics_lag_ev, &tv);
}

static void
metrics_lag_cb(evutil_socket_t fd, short what, void *arg)
{
	uint64_t	now = hist_now_us();

	hist_observe(&metrics_lag, now > metrics_lag_due ?
	    now - metrics_lag_due : 0);
	metrics_lag_arm();
}

static const struct metrics_def metrics_jobs[2] = {
	{ "jobs_total", "counter", "Jobs that entered each status, by kind.",
	    0 },
	{ "jobs", "gauge", "Jobs known now (finished ones until dismissed), "
	    "by kind and status.", 0 },
};

static void
metrics_collect_proc(struct metrics_out *o, void *arg)
{
	struct metrics_proc	 p;
	struct job_stat		 js[JOB_STAT_KINDS];
	const struct hp_stats	*hs = hp_stats();
	const char		*kv[7];
	size_t			 n, i, s;
	int			 k;

	metrics_proc(&p);
	metrics_one(o, "open_fds", "gauge", "Open file descriptors.",
	    p.open_fds);
	metrics_one(o, "resident_memory_bytes", "gauge", "Resident set size.",
	    p.rss_bytes);
	metrics_family(o, "loop_lag_seconds", "histogram",
	    "How late a periodic " "timer of the event loop fired.");
	metrics_hist(o, "loop_lag_seconds", NULL, &p.loop_lag);

	metrics_family(o, "hotplug_operations_total", "counter",
	    "Hotplug operations answered, by kind and outcome.");
	kv[0] = "kind";
	kv[2] = "outcome";
	kv[4] = NULL;
	for (k = 0; k < HP_NSTATKINDS; k++) {
		kv[1] = hp_stat_kind_name((enum hp_stat_kind)k);
		kv[3] = "ok";
		metrics_u64(o, "hotplug_operations_total", kv, hs->ok[k]);
		kv[3] = "error";
		metrics_u64(o, "hotplug_operations_total", kv, hs->error[k]);
	}
	metrics_family(o, "hotplug_duration_seconds", "histogram",
	    "Time from a hotplug request to its answer, by kind.");
	kv[2] = NULL;
	for (k = 0; k < HP_NSTATKINDS; k++) {
		kv[1] = hp_stat_kind_name((enum hp_stat_kind)k);
		metrics_hist(o, "hotplug_duration_seconds", kv,
		    &hs->latency[k]);
	}

	n = job_stats(js, JOB_STAT_KINDS);
	kv[0] = "kind";
	kv[2] = "status";
	kv[4] = NULL;
	for (k = 0; k < 2; k++) {
		metrics_family(o, metrics_jobs[k].name, metrics_jobs[k].type,
		    metrics_jobs[k].help);
		for (i = 0; i < n; i++)
			for (s = 0; s < JOB_NSTATUS; s++) {
				kv[1] = js[i].kind;
				kv[3] = job_status_name((enum job_status)s);
				metrics_u64(o, metrics_jobs[k].name, kv, k == 0 ?
				    js[i].entered[s] : js[i].now[s]);
			}
	}
}

/* ---- registry ---- */

int
metrics_init(struct event_base *base)
{
	int	i;

	if (metrics_lag_ev != NULL)
		return (0);
	for (i = 0; i < HIST_NBOUNDS; i++)
		snprintf(metrics_le[i], sizeof metrics_le[i], "%g",
		    (double)hist_bounds_us[i] / 1e6);
	if ((metrics_lag_ev = evtimer_new(base, metrics_lag_cb, NULL)) == NULL)
		return (-1);
	metrics_lag_arm();
	if (metrics_ncol == 0)
		metrics_register(metrics_collect_proc, NULL);
	return (0);
}

void
metrics_shutdown(void)
{
	if (metrics_lag_ev != NULL)
		event_free(metrics_lag_ev);
	metrics_lag_ev = NULL;
	metrics_ncol = 0;
}

int
metrics_register(metrics_collect_fn *fn, void *arg)
{
	if (metrics_ncol == METRICS_MAX_COLLECTORS)
		return (-1);
	metrics_col[metrics_ncol].fn = fn;
	metrics_col[metrics_ncol].arg = arg;
	metrics_ncol++;
	return (0);
}

void
metrics_collect(struct evbuffer *buf)
{
	static struct metrics_out	o;	/* 64 KiB: not the stack */
	size_t				i;

	o.buf = buf;
	o.len = 0;
	for (i = 0; i < metrics_ncol; i++)
		metrics_col[i].fn(&o, metrics_col[i].arg);
	mo_flush(&o);
	o.buf = NULL;
}
