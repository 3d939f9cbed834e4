/*
 * Subscriptions: glob filters, one delivery per connection however many
 * subscriptions match, and the queue limit with EVENTS_DROPPED. Clients
 * are real sessions on socketpairs, read from the other end.
 */
#include "config.h"

#include <sys/socket.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>
#include <cmocka.h>

#include "broker/cmd/cmd.h"
#include "broker/core/bus.h"
#include "broker/core/conf.h"
#include "broker/core/log.h"
#include "broker/core/loop.h"
#include "broker/session/client.h"
#include "broker/session/sub.h"
#include "hv/chan.h"

struct peerc {
	struct client	*c;
	int		 fd;		/* our end */
	char		 buf[1 << 20];
	size_t		 len;
};

static void
spin(void)
{
	int	i;

	for (i = 0; i < 20; i++)
		event_base_loop(loop_base, EVLOOP_NONBLOCK);
}

/* Everything the broker wrote so far, as lines. */
static void
drain(struct peerc *p)
{
	ssize_t	n;

	spin();
	for (;;) {
		n = read(p->fd, p->buf + p->len, sizeof p->buf - 1 - p->len);
		if (n <= 0)
			break;
		p->len += (size_t)n;
		spin();
	}
	p->buf[p->len] = '\0';
}

static int
count(struct peerc *p, const char *needle)
{
	const char	*s = p->buf;
	int		 n = 0;

	while ((s = strstr(s, needle)) != NULL) {
		n++;
		s++;
	}
	return (n);
}

static void
send_line(struct peerc *p, const char *line)
{
	assert_int_equal(write(p->fd, line, strlen(line)),
	    (ssize_t)strlen(line));
	spin();
}

static void
open_client(struct peerc *p)
{
	struct peer	peer = { 0, 0, 1, NULL };
	int		sv[2];

	memset(p, 0, sizeof *p);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	p->fd = sv[0];
	fcntl(p->fd, F_SETFL, O_NONBLOCK);
	p->c = client_new(sv[1], CLIENT_CONTROL, &peer, NULL);
	assert_non_null(p->c);
	client_greet(p->c);
	send_line(p, "{\"execute\":\"qmp_capabilities\"}\n");
	drain(p);
	assert_int_equal(count(p, "\"return\""), 1);
	p->len = 0;
}

static void
close_client(struct peerc *p)
{
	close(p->fd);
	spin();
}

static void
test_globs(void **state)
{
	struct peerc	*p = calloc(1, sizeof *p);

	open_client(p);
	assert_false(sub_wants(p->c, "web1", "STOP"));
	send_line(p, "{\"execute\":\"subscribe\",\"arguments\":{\"vms\":"
	    "[\"web*\",\"db[0-9]\"],\"events\":[\"STOP\",\"DEVICE_*\"]},"
	    "\"id\":1}\n");
	drain(p);
	assert_int_equal(count(p, "\"subscription\": 1") +
	    count(p, "\"subscription\":1"), 1);
	assert_true(sub_wants(p->c, "web1", "STOP"));
	assert_true(sub_wants(p->c, "db7", "DEVICE_DELETED"));
	assert_false(sub_wants(p->c, "db77", "STOP"));
	assert_false(sub_wants(p->c, "web1", "RESUME"));
	assert_false(sub_wants(p->c, "mail", "STOP"));
	/* Broker-wide events only match subscriptions without "vms". */
	assert_false(sub_wants(p->c, NULL, "STOP"));

	send_line(p, "{\"execute\":\"subscribe\",\"arguments\":{\"events\":"
	    "[\"JOB_*\"]},\"id\":2}\n");
	assert_true(sub_wants(p->c, NULL, "JOB_STATUS_CHANGE"));
	assert_true(sub_wants(p->c, "any", "JOB_STATUS_CHANGE"));

	/* Bad filters: each refused, connection kept. */
	p->len = 0;
	send_line(p, "{\"execute\":\"subscribe\",\"arguments\":{\"vms\":[]},"
	    "\"id\":3}\n");
	send_line(p, "{\"execute\":\"subscribe\",\"arguments\":{\"vms\":[1]},"
	    "\"id\":4}\n");
	send_line(p, "{\"execute\":\"subscribe\",\"arguments\":{\"x\":[]},"
	    "\"id\":5}\n");
	send_line(p, "{\"execute\":\"unsubscribe\",\"arguments\":"
	    "{\"subscription\":99},\"id\":6}\n");
	drain(p);
	assert_int_equal(count(p, "\"error\""), 4);

	send_line(p, "{\"execute\":\"unsubscribe\",\"arguments\":"
	    "{\"subscription\":2},\"id\":7}\n");
	assert_false(sub_wants(p->c, NULL, "JOB_STATUS_CHANGE"));
	assert_true(sub_wants(p->c, "web1", "STOP"));
	close_client(p);
	free(p);
}

static void
test_dedup(void **state)
{
	struct peerc	*a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b);

	open_client(a);
	open_client(b);
	/* a: three overlapping subscriptions; b: one that does not match. */
	send_line(a, "{\"execute\":\"subscribe\"}\n");
	send_line(a, "{\"execute\":\"subscribe\",\"arguments\":{\"vms\":"
	    "[\"vm1\"]}}\n");
	send_line(a, "{\"execute\":\"subscribe\",\"arguments\":{\"events\":"
	    "[\"X_*\"]}}\n");
	send_line(b, "{\"execute\":\"subscribe\",\"arguments\":{\"vms\":"
	    "[\"vm2\"]}}\n");
	drain(a);
	drain(b);
	a->len = b->len = 0;

	bus_publish("vm1", "X_EVENT", json_pack("{s:i}", "n", 42));
	bus_publish(NULL, "X_WIDE", NULL);
	drain(a);
	drain(b);
	assert_int_equal(count(a, "X_EVENT"), 1);
	assert_int_equal(count(a, "\"vm\""), 1);
	assert_int_equal(count(a, "\"n\":42"), 1);
	assert_int_equal(count(a, "X_WIDE"), 1);
	assert_int_equal(count(a, "timestamp"), 2);
	assert_int_equal(b->len, 0);

	bus_publish("vm2", "X_OTHER", NULL);
	drain(a);
	drain(b);
	assert_int_equal(count(b, "X_OTHER"), 1);
	assert_int_equal(count(a, "X_OTHER"), 1);
	close_client(a);
	close_client(b);
	free(a);
	free(b);
}

/* A client that does not read loses events past its queue, never
   replies, and hears how many it lost once it reads again. */
static void
test_drops(void **state)
{
	struct peerc	*p = calloc(1, sizeof *p);
	char		 big[2048];
	int		 i, sndbuf = 4096;
	json_t		*data;

	conf.client_queue_max = 16 * 1024;
	open_client(p);
	setsockopt(chan_fd(p->c->chan), SOL_SOCKET, SO_SNDBUF, &sndbuf,
	    sizeof sndbuf);
	send_line(p, "{\"execute\":\"subscribe\"}\n");
	drain(p);
	p->len = 0;
	memset(big, 'x', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	for (i = 0; i < 1000; i++) {
		data = json_pack("{s:s,s:i}", "pad", big, "seq", i);
		bus_publish("vm1", "BIG", data);
	}
	spin();
	assert_true(p->c->dropped > 0);
	/* A reply is queued past the limit all the same. */
	send_line(p, "{\"execute\":\"query-vms\",\"id\":\"r\"}\n");
	drain(p);
	assert_int_equal(count(p, "\"id\": \"r\"") + count(p, "\"id\":\"r\""),
	    1);
	assert_int_equal(count(p, "EVENTS_DROPPED"), 1);
	assert_true(count(p, "\"BIG\"") + 0 < 1000);
	assert_true(count(p, "\"BIG\"") > 0);
	close_client(p);
	free(p);
	conf.client_queue_max = 1024 * 1024;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_globs),
		cmocka_unit_test(test_dedup),
		cmocka_unit_test(test_drops),
	};

	static const struct client_hooks hooks = { cmd_dispatch, NULL };

	log_open(LOG_CRIT, 0);
	conf_init(&conf);
	loop_base = event_base_new();
	client_set_hooks(&hooks);
	sub_init();
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
