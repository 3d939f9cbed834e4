/*
 * Scrape: GET /metrics from the broker's metrics server (HOST:PORT),
 * timed from connect to the last byte, the reply checked for a 200;
 * with --pid, also the broker's CPU time per scrape, which a loaded
 * machine stretches less than the wall clock. Either --n scrapes back to back (the
 * figure: median and worst), or one every --every-ms for --secs (the
 * load of a Prometheus that scrapes while another scenario measures; no
 * figure).
 */
#include "config.h"

#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools/qmpbench/qmpbench.h"

/* One scrape: seconds, or -1 (why on stderr); *bytes the body's. */
static double
scrape_once(const struct sockaddr_in *sin, size_t *bytes)
{
	static const char	 req[] = "GET /metrics HTTP/1.0\r\n\r\n";
	static char		 buf[1 << 16];
	char			 head[64];
	size_t			 got = 0, hn = 0;
	ssize_t			 n;
	double			 t0 = qb_now();
	int			 fd;

	if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1 ||
	    connect(fd, (const struct sockaddr *)sin, sizeof *sin) == -1 ||
	    write(fd, req, sizeof req - 1) != (ssize_t)(sizeof req - 1)) {
		perror("qmpbench: scrape");
		if (fd != -1)
			close(fd);
		return (-1);
	}
	while ((n = read(fd, buf, sizeof buf)) > 0) {
		if (hn < sizeof head - 1) {
			size_t k = sizeof head - 1 - hn;

			memcpy(head + hn, buf, (size_t)n < k ? (size_t)n : k);
			hn += (size_t)n < k ? (size_t)n : k;
		}
		got += (size_t)n;
	}
	close(fd);
	head[hn] = '\0';
	if (strncmp(head, "HTTP/1.1 200", 12) != 0 &&
	    strncmp(head, "HTTP/1.0 200", 12) != 0) {
		fprintf(stderr, "qmpbench: scrape: %.40s\n", head);
		return (-1);
	}
	*bytes = got;
	return (qb_now() - t0);
}

int
bench_scrape(int argc, char **argv)
{
	const char		*addr = qb_arg(argc, argv, "addr", NULL);
	const char		*label = qb_arg(argc, argv, "label", "scrape");
	long			 n = qb_arg_l(argc, argv, "n", 5);
	long			 every = qb_arg_l(argc, argv, "every-ms", 0);
	long			 secs = qb_arg_l(argc, argv, "secs", 0);
	long			 pid = qb_arg_l(argc, argv, "pid", 0);
	double			 cpu0 = 0;
	struct sockaddr_in	 sin;
	struct qb_samples	 qs;
	const char		*colon;
	char			 host[64];
	size_t			 bytes = 0;
	double			 t, t0;
	long			 i;

	if (addr == NULL || (colon = strrchr(addr, ':')) == NULL ||
	    (size_t)(colon - addr) >= sizeof host)
		qb_fatal("scrape: --addr HOST:PORT needed");
	memcpy(host, addr, (size_t)(colon - addr));
	host[colon - addr] = '\0';
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)atoi(colon + 1));
	if (inet_pton(AF_INET, host, &sin.sin_addr) != 1)
		qb_fatal("scrape: %s is not an IPv4 address", host);
	if (every > 0) {
		for (t0 = qb_now(); qb_now() - t0 < (double)secs;) {
			if (scrape_once(&sin, &bytes) < 0)
				return (1);
			usleep((useconds_t)every * 1000);
		}
		return (0);
	}
	memset(&qs, 0, sizeof qs);
	if (pid > 0)
		cpu0 = qb_cpu_s(pid);
	for (i = 0; i < n; i++) {
		if ((t = scrape_once(&sin, &bytes)) < 0)
			qb_fatal("scrape: failed");
		qb_samples_add(&qs, t);
	}
	printf("R scrape %s bytes=%zu median_ms=%.2f max_ms=%.2f "
	    "cpu_ms=%.2f n=%ld\n", label, bytes, qb_samples_pct(&qs, 50) * 1e3,
	    qb_samples_pct(&qs, 100) * 1e3,
	    pid > 0 ? (qb_cpu_s(pid) - cpu0) / (double)n * 1e3 : -1.0, n);
	qb_samples_free(&qs);
	return (0);
}
