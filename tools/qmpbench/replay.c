/*
 * Replay speed: one subscriber asks for the whole event log ("since": 0)
 * of a broker that was restarted after the log was filled, so every
 * event comes from the segment files, not memory. Counted: events/s
 * until the last seq query-event-log gave, and whether any seq was
 * missing or repeated. Lines are scanned, not parsed (as fanout's
 * subscribers): the reader must not be the bottleneck.
 */
#include "config.h"

#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools/qmpbench/qmpbench.h"

#define RP_BUF	(1024 * 1024)

static int
rp_line(int fd, char *buf, size_t cap, const char *want)
{
	size_t	 len = 0;
	ssize_t	 n;
	char	*lf;

	for (;;) {
		buf[len] = '\0';
		while ((lf = strchr(buf, '\n')) != NULL) {
			*lf = '\0';
			if (strstr(buf, want) != NULL)
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
rp_say(int fd, const char *s)
{
	return (write(fd, s, strlen(s)) == (ssize_t)strlen(s) ? 0 : -1);
}

/* The log's seq of an event line: its last "seq" member. */
static uint64_t
rp_seq(const char *line, size_t len)
{
	const char	*p, *last = NULL;

	for (p = line; (p = memmem(p, len - (size_t)(p - line), "\"seq\":",
	    6)) != NULL; p += 6)
		last = p;
	return (last != NULL ? strtoull(last + 6, NULL, 10) : 0);
}

int
bench_replay(int argc, char **argv)
{
	const char		*control = qb_arg(argc, argv, "control", NULL);
	/* the broker's pid: its CPU time per event, which a loaded
	   machine does not change as much as the wall-clock rate */
	long			 pid = qb_arg_l(argc, argv, "pid", 0);
	double			 cpu0 = 0, cpu = 0;
	struct sockaddr_un	 sun;
	char			 line[8192], *buf, *p, *lf;
	uint64_t		 last, seq, want = 1, events = 0, bad = 0;
	size_t			 have = 0;
	ssize_t			 n;
	double			 t0, el;
	int			 fd, rcv = 4 << 20;

	if (control == NULL)
		qb_fatal("replay: --control needed");
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path, sizeof sun.sun_path, "%s", control);
	if ((fd = socket(AF_UNIX, SOCK_STREAM|SOCK_CLOEXEC, 0)) == -1 ||
	    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv) == -1 ||
	    connect(fd, (struct sockaddr *)&sun, sizeof sun) == -1)
		qb_fatal("replay: %s: %s", control, strerror(errno));
	if (rp_line(fd, line, sizeof line, "\"QMP\"") == -1 ||
	    rp_say(fd, "{\"execute\":\"qmp_capabilities\"}\r\n") == -1 ||
	    rp_line(fd, line, sizeof line, "\"return\"") == -1 ||
	    rp_say(fd, "{\"execute\":\"query-event-log\"}\r\n") == -1 ||
	    rp_line(fd, line, sizeof line, "\"return\"") == -1)
		qb_fatal("replay: cannot query the event log");
	if ((p = strstr(line, "\"last\":")) == NULL ||
	    (last = strtoull(p + 7, NULL, 10)) == 0)
		qb_fatal("replay: the event log is empty: %s", line);
	if ((p = strstr(line, "\"first\":")) != NULL)
		want = strtoull(p + 8, NULL, 10);
	if ((buf = malloc(RP_BUF)) == NULL)
		qb_fatal("out of memory");
	if (pid > 0)
		cpu0 = qb_cpu_s(pid);
	t0 = qb_now();
	if (rp_say(fd, "{\"execute\":\"subscribe\",\"arguments\":"
	    "{\"since\":0}}\r\n") == -1)
		qb_fatal("replay: subscribe: %s", strerror(errno));
	while (want <= last) {
		if ((n = read(fd, buf + have, RP_BUF - have)) <= 0)
			qb_fatal("replay: connection ended at seq %llu",
			    (unsigned long long)want);
		have += (size_t)n;
		p = buf;
		while ((lf = memchr(p, '\n', have - (size_t)(p - buf))) !=
		    NULL) {
			if (memmem(p, (size_t)(lf - p), "\"event\":", 8) != NULL &&
			    (seq = rp_seq(p, (size_t)(lf - p))) != 0) {
				if (seq != want)
					bad++;
				want = seq + 1;
				events++;
			}
			p = lf + 1;
		}
		have -= (size_t)(p - buf);
		memmove(buf, p, have);
	}
	el = qb_now() - t0;
	if (pid > 0)
		cpu = qb_cpu_s(pid) - cpu0;
	printf("R replay disk events=%llu events_s=%.0f secs=%.3f "
	    "out_of_order=%llu broker_cpu_s=%.3f events_per_cpu_s=%.0f\n",
	    (unsigned long long)events, (double)events / el, el,
	    (unsigned long long)bad, cpu, cpu > 0 ? (double)events / cpu : 0);
	free(buf);
	close(fd);
	return (0);
}
