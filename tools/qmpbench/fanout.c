/*
 * Scenario 4, event fan-out: fake-qemu floods FAKE_TICK {"seq": N} on
 * every VM; S subscribers on the control socket each hold a filtered
 * subscription (plus one that matches nothing, so the broker's matching
 * has work to do). Counted: events delivered per second over all
 * subscribers, delivery latency from the event's own timestamp, and lost
 * events (gaps in a VM's seq) for subscribers that keep up, while one
 * extra subscriber reads slowly and must be dropped to (its
 * EVENTS_DROPPED count is reported).
 *
 * Subscribers do not go through hv/chan: a full JSON parse of every event
 * would make this process, not the broker, the bottleneck on two cores.
 * They scan each line for the few members they need.
 */
#include "config.h"

#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools/qmpbench/qmpbench.h"

#define FAN_BUF		(256 * 1024)

struct fan_sub {
	int		 fd;
	struct event	*ev;
	struct fan	*f;
	int		 slow;
	char		*buf;
	size_t		 len;
	uint64_t	*last;		/* per VM: last seq seen, 0: none */
	uint64_t	 events, lost, dropped;
	int		 got_dropped;
	int		 dead;
	long		 fixed_vm;	/* direct: the VM this socket is */
};

struct fan {
	long			 nvms;
	int			 measuring;
	struct qb_samples	 lat;
	uint64_t		 delivered;	/* by fast subs, measuring */
	int			 fast_drain;	/* the slow one catches up */
};

static uint64_t
fan_num(const char *line, const char *key)
{
	const char	*p = strstr(line, key);

	if (p == NULL)
		return (UINT64_MAX);
	return (strtoull(p + strlen(key), NULL, 10));
}

static void
fan_line(struct fan_sub *s, char *line, double now)
{
	struct fan	*f = s->f;
	uint64_t	 vm, seq, sec, usec;

	if (strstr(line, "\"EVENTS_DROPPED\"") != NULL) {
		s->dropped += fan_num(line, "\"count\":");
		s->got_dropped = 1;
		return;
	}
	if (strstr(line, "\"FAKE_TICK\"") == NULL)
		return;
	vm = s->fixed_vm >= 0 ? (uint64_t)s->fixed_vm :
	    fan_num(line, "\"vm\":\"vm");
	seq = fan_num(line, "\"seq\":");
	if (vm >= (uint64_t)f->nvms || seq == UINT64_MAX)
		return;
	s->events++;
	if (s->last[vm] != 0 && seq > s->last[vm] + 1)
		s->lost += seq - s->last[vm] - 1;
	s->last[vm] = seq;
	if (s->slow || !f->measuring)
		return;
	f->delivered++;
	sec = fan_num(line, "\"seconds\":");
	usec = fan_num(line, "\"microseconds\":");
	if (sec != UINT64_MAX && usec != UINT64_MAX)
		qb_samples_add(&f->lat, now - ((double)sec +
		    (double)usec / 1e6));
}

/* Complete lines out of the buffer; returns -1 on EOF or error. */
static int
fan_fill(struct fan_sub *s, int block)
{
	char	*p, *lf;
	ssize_t	 n;
	double	 now;

	n = read(s->fd, s->buf + s->len, FAN_BUF - 1 - s->len);
	if (n == 0)
		return (-1);
	if (n < 0)
		return (errno == EAGAIN || errno == EINTR ? 0 : -1);
	s->len += (size_t)n;
	s->buf[s->len] = '\0';
	now = qb_wall();
	p = s->buf;
	while ((lf = memchr(p, '\n', s->len - (size_t)(p - s->buf))) != NULL) {
		*lf = '\0';
		fan_line(s, p, now);
		p = lf + 1;
	}
	s->len -= (size_t)(p - s->buf);
	memmove(s->buf, p, s->len);
	if (s->len == FAN_BUF - 1)
		s->len = 0;	/* a line this long is not ours */
	(void)block;
	return (0);
}

static void
fan_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct fan_sub	*s = arg;

	if (s->slow && !s->f->fast_drain)
		return;
	if (fan_fill(s, 0) == -1) {
		s->dead = 1;
		event_del(s->ev);
	}
}

/* The slow subscriber's pace: a little every 100 ms. */
static void
fan_slow_cb(evutil_socket_t fd, short what, void *arg)
{
	struct fan_sub	*s = arg;
	char		 tmp[4096];
	ssize_t		 n;

	if (s->f->fast_drain || s->dead)
		return;
	n = read(s->fd, tmp, sizeof tmp);
	if (n == 0)
		s->dead = 1;
}

/* Blocking: one line that is a reply (events before it are skipped). */
static int
fan_expect_reply(int fd, char *buf, size_t cap)
{
	size_t	 len = 0;
	ssize_t	 n;
	char	*lf;

	for (;;) {
		buf[len] = '\0';
		while ((lf = strchr(buf, '\n')) != NULL) {
			*lf = '\0';
			if (strstr(buf, "\"return\"") != NULL ||
			    strstr(buf, "\"error\"") != NULL ||
			    strstr(buf, "\"QMP\"") != NULL)
				return (strstr(buf, "\"error\"") != NULL ?
				    -1 : 0);
			len -= (size_t)(lf + 1 - buf);
			memmove(buf, lf + 1, len + 1);
		}
		if (len >= cap - 1)
			return (-1);
		if ((n = read(fd, buf + len, 1)) <= 0)
			return (-1);
		len += (size_t)n;
	}
}

static int
fan_say(int fd, const char *s)
{
	size_t	len = strlen(s);

	return (write(fd, s, len) == (ssize_t)len ? 0 : -1);
}

static void
fan_sub_open(struct fan_sub *s, struct fan *f, const char *control,
    int slow, long fixed_vm)
{
	struct sockaddr_un	sun;
	char			line[4096];
	int			rcv = 4096;

	memset(s, 0, sizeof *s);
	s->f = f;
	s->slow = slow;
	s->fixed_vm = fixed_vm;
	if ((s->buf = malloc(FAN_BUF)) == NULL ||
	    (s->last = calloc((size_t)f->nvms, sizeof *s->last)) == NULL)
		qb_fatal("out of memory");
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path, sizeof sun.sun_path, "%s", control);
	if ((s->fd = socket(AF_UNIX, SOCK_STREAM|SOCK_CLOEXEC, 0)) == -1 ||
	    (slow && setsockopt(s->fd, SOL_SOCKET, SO_RCVBUF, &rcv,
	    sizeof rcv) == -1) ||
	    connect(s->fd, (struct sockaddr *)&sun, sizeof sun) == -1)
		qb_fatal("fanout: %s: %s", control, strerror(errno));
	/* one byte at a time until subscribed: nothing is read past the
	   subscribe reply, so the event stream starts clean */
	if (fixed_vm >= 0) {
		/* the floor: fake-qemu's own stream, no broker */
		if (fan_expect_reply(s->fd, line, sizeof line) == -1 ||
		    fan_say(s->fd, "{\"execute\":\"qmp_capabilities\"}\r\n")
		    == -1 || fan_expect_reply(s->fd, line, sizeof line) == -1)
			qb_fatal("fanout: %s: cannot negotiate", control);
	} else if (fan_expect_reply(s->fd, line, sizeof line) == -1 ||
	    fan_say(s->fd, "{\"execute\":\"qmp_capabilities\"}\r\n") == -1 ||
	    fan_expect_reply(s->fd, line, sizeof line) == -1 ||
	    fan_say(s->fd, "{\"execute\":\"subscribe\",\"arguments\":"
	    "{\"events\":[\"NEVER_*\",\"BLOCK_JOB_*\"]}}\r\n") == -1 ||
	    fan_expect_reply(s->fd, line, sizeof line) == -1 ||
	    fan_say(s->fd, "{\"execute\":\"subscribe\",\"arguments\":"
	    "{\"vms\":[\"vm*\"],\"events\":[\"FAKE_*\"]}}\r\n") == -1 ||
	    fan_expect_reply(s->fd, line, sizeof line) == -1)
		qb_fatal("fanout: cannot subscribe");
	fcntl(s->fd, F_SETFL, fcntl(s->fd, F_GETFL) | O_NONBLOCK);
	if (slow)
		s->ev = event_new(qb_base, -1, EV_PERSIST, fan_slow_cb, s);
	else
		s->ev = event_new(qb_base, s->fd, EV_READ|EV_PERSIST,
		    fan_read_cb, s);
	if (s->ev == NULL)
		qb_fatal("out of memory");
	if (slow) {
		struct timeval tv = { 0, 100000 };

		event_add(s->ev, &tv);
	} else
		event_add(s->ev, NULL);
}

int
bench_fanout(int argc, char **argv)
{
	struct fan	 f;
	struct fan_sub	*subs, slow;
	const char	*control = qb_arg(argc, argv, "control", NULL);
	const char	*direct = qb_arg(argc, argv, "direct", NULL);
	/* the broker's event log, as the caller started it: a label */
	const char	*log = qb_arg(argc, argv, "log", "on");
	/* the broker's pid: its CPU time per generated event, which a
	   loaded machine changes less than latency */
	long		 pid = qb_arg_l(argc, argv, "pid", 0);
	double		 cpu0 = 0, cpu = 0;
	long		 nsubs = qb_arg_l(argc, argv, "subs", 1), i;
	long		 rate = qb_arg_l(argc, argv, "rate", 0);
	double		 secs = (double)qb_arg_l(argc, argv, "ms", 5000) / 1e3;
	double		 t0, el, until;
	uint64_t	 lost = 0, fdrop = 0, events = 0;

	memset(&f, 0, sizeof f);
	f.nvms = qb_arg_l(argc, argv, "vms", 1);
	if ((control == NULL && direct == NULL) || nsubs < 1 || f.nvms < 1)
		qb_fatal("fanout: --control (or --direct DIR), --vms, --subs "
		    "needed");
	if (direct != NULL) {
		/* one reader per VM on fake-qemu's sockets, no broker: the
		   latency floor of the flood and of this process */
		char	path[4096];

		nsubs = f.nvms;
		if ((subs = calloc((size_t)nsubs, sizeof *subs)) == NULL)
			qb_fatal("out of memory");
		for (i = 0; i < nsubs; i++) {
			snprintf(path, sizeof path, "%s/vm%ld.qmp", direct, i);
			fan_sub_open(&subs[i], &f, path, 0, i);
		}
		qb_run_for(1);
		f.measuring = 1;
		t0 = qb_now();
		qb_run_for(secs);
		el = qb_now() - t0;
		for (i = 0; i < nsubs; i++)
			lost += subs[i].lost;
		printf("R fanfloor v%ld vms=%ld rate=%ld events_s=%.0f "
		    "p50_ms=%.3f p99_ms=%.3f lost=%llu\n", f.nvms, f.nvms,
		    rate, (double)f.delivered / el,
		    qb_samples_pct(&f.lat, 50) * 1e3,
		    qb_samples_pct(&f.lat, 99) * 1e3,
		    (unsigned long long)lost);
		return (0);
	}
	if ((subs = calloc((size_t)nsubs, sizeof *subs)) == NULL)
		qb_fatal("out of memory");
	for (i = 0; i < nsubs; i++)
		fan_sub_open(&subs[i], &f, control, 0, -1);
	fan_sub_open(&slow, &f, control, 1, -1);
	qb_run_for(1);			/* warm-up */
	f.measuring = 1;
	if (pid > 0)
		cpu0 = qb_cpu_s(pid);
	t0 = qb_now();
	qb_run_for(secs);
	el = qb_now() - t0;
	if (pid > 0)
		cpu = qb_cpu_s(pid) - cpu0;
	f.measuring = 0;

	/* the slow one catches up and must hear how much it missed */
	f.fast_drain = 1;
	event_del(slow.ev);
	event_free(slow.ev);
	slow.ev = event_new(qb_base, slow.fd, EV_READ|EV_PERSIST, fan_read_cb,
	    &slow);
	event_add(slow.ev, NULL);
	until = qb_now() + 10;
	while (!slow.got_dropped && !slow.dead && qb_now() < until)
		qb_run_for(0.1);

	for (i = 0; i < nsubs; i++) {
		lost += subs[i].lost;
		fdrop += subs[i].dropped;
		events += subs[i].events;
		if (subs[i].dead)
			qb_fatal("fanout: subscriber %ld was disconnected", i);
	}
	printf("R fanout v%ld-s%ld-%s vms=%ld subs=%ld rate=%ld log=%s "
	    "events_s=%.0f p50_ms=%.3f p99_ms=%.3f lost=%llu fast_dropped=%llu "
	    "slow_dropped=%llu slow_notified=%d broker_cpu_pct=%.1f "
	    "cpu_us_per_event=%.2f\n", f.nvms, nsubs, log, f.nvms,
	    nsubs, rate, log, (double)f.delivered / el,
	    qb_samples_pct(&f.lat, 50) * 1e3, qb_samples_pct(&f.lat, 99) * 1e3,
	    (unsigned long long)lost, (unsigned long long)fdrop,
	    (unsigned long long)slow.dropped, slow.got_dropped,
	    100 * cpu / el, f.delivered > 0 ? cpu * 1e6 /
	    ((double)f.delivered / (double)nsubs) : 0);
	for (i = 0; i < nsubs; i++) {
		event_free(subs[i].ev);
		close(subs[i].fd);
		free(subs[i].buf);
		free(subs[i].last);
	}
	event_free(slow.ev);
	close(slow.fd);
	free(slow.buf);
	free(slow.last);
	free(subs);
	qb_samples_free(&f.lat);
	if (events == 0)
		qb_fatal("fanout: no event arrived");
	return (0);
}
