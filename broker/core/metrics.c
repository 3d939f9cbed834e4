/*
 * Metrics registry and Prometheus' text format (see metrics.h).
 *
 * A scrape of 10,000 VMs writes some 17 MB in a few hundred thousand
 * lines. Each is formatted by hand straight into space reserved in the
 * output evbuffer (no printf, no scratch copy, no allocation per line),
 * and a scrape goes out in parts of METRICS_PART bytes, each made when
 * the previous one has been written to the socket: the loop never
 * spends more than a part's time on it, and a scrape holds a part's
 * memory, whatever the number of VMs.
 */
#include "config.h"

#include <sys/stat.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "broker/core/job.h"
#include "broker/core/metrics.h"
#include "hv/hp.h"
#include "util/hist.h"

#define METRICS_LAG_MS	500	/* loop-lag timer period */
/* Space reserved in the evbuffer at a time: a part and a line's slack,
   so that a part is mostly one chain of the buffer. */
#define METRICS_RESERVE	(METRICS_PART + 4096)

struct metrics_out {
	struct evbuffer		*buf;
	struct evbuffer_iovec	 v;	/* reserved in buf, len used */
	size_t			 len;
	size_t			 done;	/* committed this step */
};

struct metrics_scrape {
	size_t		 col;		/* the collector at work */
	int		 begun;		/* its state is in use */
	_Alignas(max_align_t) unsigned char state[METRICS_STATE_MAX];
};

static struct {
	metrics_collect_fn	*fn;
	metrics_part_fn		*part;
	metrics_stop_fn		*stop;
	void			*arg;
} metrics_col[METRICS_MAX_COLLECTORS];
static size_t		 metrics_ncol;
static struct event	*metrics_lag_ev;
static uint64_t		 metrics_lag_due;	/* us, monotonic */
static struct hist	 metrics_lag;
static char		 metrics_le[HIST_NBOUNDS][24];
/* ",le=\"0.0001\"} " for every bound and +Inf */
static char		 metrics_le_tail[HIST_NBOUNDS + 1][32];
static size_t		 metrics_le_tlen[HIST_NBOUNDS + 1];

/* ---- writing ---- */

static void
mo_commit(struct metrics_out *o)
{
	if (o->v.iov_base == NULL)
		return;
	o->v.iov_len = o->len;
	evbuffer_commit_space(o->buf, &o->v, 1);
	o->done += o->len;
	o->v.iov_base = NULL;
	o->v.iov_len = 0;
	o->len = 0;
}

/* Room for n more bytes, contiguous: where to write them. Out of
   memory, a scratch area that is dropped (the scrape comes out short,
   and promtool or Prometheus says so). */
static char *
mo_room(struct metrics_out *o, size_t n)
{
	static char	lost[METRICS_RESERVE];

	if (o->v.iov_base != NULL && o->v.iov_len - o->len >= n)
		return ((char *)o->v.iov_base + o->len);
	mo_commit(o);
	if (evbuffer_reserve_space(o->buf, (ev_ssize_t)(n > METRICS_RESERVE ?
	    n : METRICS_RESERVE), &o->v, 1) != 1) {
		o->v.iov_base = NULL;
		return (n <= sizeof lost ? lost : NULL);
	}
	return ((char *)o->v.iov_base);
}

static void
mo_mem(struct metrics_out *o, const char *s, size_t n)
{
	char	*w = mo_room(o, n);

	if (w == NULL)
		return;
	memcpy(w, s, n);
	if (o->v.iov_base != NULL)
		o->len += n;
}

static void
mo_str(struct metrics_out *o, const char *s)
{
	mo_mem(o, s, strlen(s));
}

/* v's digits at w (room for 20): how many. */
static size_t
mo_digits(char *w, uint64_t v)
{
	char	b[24];
	size_t	i = sizeof b, n;

	if (v < 10) {
		w[0] = (char)('0' + v);
		return (1);
	}
	do {
		b[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	n = sizeof b - i;
	memcpy(w, b + i, n);
	return (n);
}

static void
mo_u64(struct metrics_out *o, uint64_t v)
{
	char	b[24];

	mo_mem(o, b, mo_digits(b, v));
}

/* Microseconds as seconds, exactly: 60003150 is "60.00315". */
static size_t
mo_secs(char *w, uint64_t us)
{
	size_t	n = mo_digits(w, us / 1000000);
	uint64_t f = us % 1000000;
	int	i;

	if (f == 0)
		return (n);
	w[n++] = '.';
	for (i = 5; i >= 0; i--) {
		w[n + (size_t)i] = (char)('0' + f % 10);
		f /= 10;
	}
	n += 6;
	while (w[n - 1] == '0')
		n--;
	return (n);
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

void
metrics_hist(struct metrics_out *o, const char *name, const char *const *kv,
    const struct hist *h)
{
	char		b[40];
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
	mo_mem(o, b, mo_secs(b, h->sum_us));
	mo_str(o, "\n");
	mo_name(o, name, "_count", kv, NULL, NULL);
	mo_u64(o, h->count);
	mo_str(o, "\n");
}

/* head lab tail v\n, or with secs v as microseconds in seconds. */
static void
mo_line(struct metrics_out *o, struct metrics_str head,
    struct metrics_str lab, const char *tail, size_t tn, uint64_t v,
    int secs)
{
	char	*w0, *w;

	if ((w0 = w = mo_room(o, head.n + lab.n + tn + 32)) == NULL)
		return;
	memcpy(w, head.s, head.n);
	w += head.n;
	memcpy(w, lab.s, lab.n);
	w += lab.n;
	memcpy(w, tail, tn);
	w += tn;
	w += secs ? mo_secs(w, v) : mo_digits(w, v);
	*w++ = '\n';
	if (o->v.iov_base != NULL)
		o->len += (size_t)(w - w0);
}

void
metrics_sample(struct metrics_out *o, struct metrics_str head,
    struct metrics_str lab, struct metrics_str tail, uint64_t v)
{
	mo_line(o, head, lab, tail.s, tail.n, v, 0);
}

void
metrics_hist_lab(struct metrics_out *o, const struct metrics_hist_heads *hh,
    struct metrics_str lab, const struct hist *h)
{
	uint64_t	cum = 0;
	int		i;

	for (i = 0; i < HIST_NBOUNDS; i++) {
		cum += h->n[i];
		mo_line(o, hh->bucket, lab, metrics_le_tail[i],
		    metrics_le_tlen[i], cum, 0);
	}
	mo_line(o, hh->bucket, lab, metrics_le_tail[HIST_NBOUNDS],
	    metrics_le_tlen[HIST_NBOUNDS], h->count, 0);
	mo_line(o, hh->sum, lab, "} ", 2, h->sum_us, 1);
	mo_line(o, hh->count, lab, "} ", 2, h->count, 0);
}

int
metrics_out_full(const struct metrics_out *o)
{
	return (o->done + o->len >= METRICS_PART);
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
	for (i = 0; i <= HIST_NBOUNDS; i++)
		metrics_le_tlen[i] = (size_t)snprintf(metrics_le_tail[i],
		    sizeof metrics_le_tail[i], ",le=\"%s\"} ",
		    i < HIST_NBOUNDS ? metrics_le[i] : "+Inf");
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

static int
metrics_add(metrics_collect_fn *fn, metrics_part_fn *part,
    metrics_stop_fn *stop, void *arg)
{
	if (metrics_ncol == METRICS_MAX_COLLECTORS)
		return (-1);
	metrics_col[metrics_ncol].fn = fn;
	metrics_col[metrics_ncol].part = part;
	metrics_col[metrics_ncol].stop = stop;
	metrics_col[metrics_ncol].arg = arg;
	metrics_ncol++;
	return (0);
}

int
metrics_register(metrics_collect_fn *fn, void *arg)
{
	return (metrics_add(fn, NULL, NULL, arg));
}

int
metrics_register_parts(metrics_part_fn *fn, metrics_stop_fn *stop,
    void *arg)
{
	return (metrics_add(NULL, fn, stop, arg));
}

struct metrics_scrape *
metrics_scrape_new(void)
{
	return (calloc(1, sizeof (struct metrics_scrape)));
}

int
metrics_scrape_step(struct metrics_scrape *ms, struct evbuffer *buf)
{
	struct metrics_out	 o;
	size_t			 i;

	memset(&o, 0, sizeof o);
	o.buf = buf;
	for (; ms->col < metrics_ncol; ms->col++) {
		i = ms->col;
		if (metrics_col[i].fn != NULL) {
			metrics_col[i].fn(&o, metrics_col[i].arg);
		} else {
			if (!ms->begun)
				memset(ms->state, 0, sizeof ms->state);
			ms->begun = 1;
			if (metrics_col[i].part(&o, ms->state,
			    metrics_col[i].arg) == 0)
				break;
			ms->begun = 0;
		}
		if (metrics_out_full(&o)) {
			ms->col++;
			break;
		}
	}
	mo_commit(&o);
	return (ms->col >= metrics_ncol);
}

void
metrics_scrape_free(struct metrics_scrape *ms)
{
	if (ms == NULL)
		return;
	if (ms->begun && ms->col < metrics_ncol &&
	    metrics_col[ms->col].stop != NULL)
		metrics_col[ms->col].stop(ms->state, metrics_col[ms->col].arg);
	free(ms);
}

void
metrics_collect(struct evbuffer *buf)
{
	struct metrics_scrape	*ms = metrics_scrape_new();

	if (ms == NULL)
		return;
	while (metrics_scrape_step(ms, buf) == 0)
		;
	metrics_scrape_free(ms);
}
