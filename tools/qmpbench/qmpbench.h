/*
 * qmpbench: the client side of tools/bench. Each scenario is a
 * subcommand that drives sockets someone else started (fake-qemu, socat,
 * qmpbrokerd, QEMU) and prints its figures as one "R scenario label
 * key=value ..." line per measurement, which tools/bench turns into the
 * table. Nothing here asserts a timing: a scenario fails (exit 1) only
 * when it could not run (a socket refused, a command errored, a
 * subscriber lost events it should have had is reported, not fatal).
 */
#ifndef QMPBENCH_H
#define QMPBENCH_H

#include <stddef.h>
#include <stdint.h>
#include <event2/event.h>
#include <jansson.h>

extern struct event_base *qb_base;

/* ---- util.c ---- */
void	qb_fatal(const char *, ...) __attribute__((format(printf, 1, 2),
	    noreturn));
double	qb_now(void);			/* CLOCK_MONOTONIC, seconds */
double	qb_wall(void);			/* gettimeofday, seconds */
void	qb_raise_nofile(void);
long	qb_rss_kib(long pid);		/* VmRSS, -1 if unknown */
double	qb_cpu_s(long pid);		/* utime+stime in seconds */
void	qb_run_for(double secs);	/* the loop, for a while */
/* --name VALUE from argv, or def. */
const char *qb_arg(int, char **, const char *name, const char *def);
long	qb_arg_l(int, char **, const char *name, long def);

/* Latency samples (seconds), for percentiles. */
struct qb_samples {
	double	*v;
	size_t	 n, cap;
	int	 sorted;
};
void	qb_samples_add(struct qb_samples *, double);
double	qb_samples_pct(struct qb_samples *, double pct);	/* 0..100 */
void	qb_samples_free(struct qb_samples *);

/* ---- conn.c: a negotiated QMP client connection on hv/chan ---- */
struct qb_conn;
typedef void qb_reply_fn(struct qb_conn *, json_t *msg, uint64_t id,
	    void *arg);
typedef void qb_event_fn(struct qb_conn *, json_t *msg, void *arg);

/* Connects, waits for the greeting and negotiates (the loop runs
   meanwhile); NULL on failure with *why set. */
struct qb_conn *qb_conn_open(const char *path, qb_reply_fn *, qb_event_fn *,
	    void *arg, const char **why);
void	qb_conn_close(struct qb_conn *);
int	qb_conn_dead(const struct qb_conn *);
/* Queues a preformatted command line (with CRLF). */
int	qb_conn_send(struct qb_conn *, const char *, size_t, const int *fds,
	    size_t nfds);
/* One command, waited for; returns the reply (caller decrefs) or NULL. */
json_t	*qb_conn_call(struct qb_conn *, const char *name, json_t *args,
	    double timeout);
void	*qb_conn_arg(const struct qb_conn *);

/* ---- subcommands ---- */
int	bench_hop(int, char **);
int	bench_tput(int, char **);
int	bench_scale(int, char **);
int	bench_fanout(int, char **);
int	bench_replay(int, char **);
int	bench_hotplug(int, char **);
int	bench_parse(int, char **);
int	bench_soak(int, char **);
int	bench_scrape(int, char **);

#endif
