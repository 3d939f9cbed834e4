/*
 * chan over a socketpair: the test holds the raw other end and plays the
 * peer with plain read/write/sendmsg.
 */
#include "config.h"

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>
#include <jansson.h>

#include "hv/chan.h"
#include "tests/unit/testutil.h"
#include "util/defer.h"

#define MAXMSG	64

struct t {
	struct event_base	*base;
	struct chan		*c;
	int			 peer;
	int			 fd0;		/* fd count at start */

	int			 nmsg;
	json_t			*msgs[MAXMSG];
	int			 fds[MAXMSG][CHAN_MAX_FDS];
	size_t			 nfds[MAXMSG];
	int			 nbad;
	char			 bad[600];
	int			 nclosed;
	char			 why[256];
	int			 ndrained;

	int			 free_in_msg;
	int			 free_in_closed;
};

#define WAIT(t, expr)	TU_WAIT((t)->base, expr)

static void
t_msg(struct chan *c, json_t *msg, int *fds, size_t nfds, void *arg)
{
	struct t	*t = arg;
	size_t		 i;

	assert_true(t->nmsg < MAXMSG);
	assert_true(nfds <= CHAN_MAX_FDS);
	t->msgs[t->nmsg] = json_incref(msg);
	for (i = 0; i < nfds; i++)
		t->fds[t->nmsg][i] = fds[i];
	t->nfds[t->nmsg] = nfds;
	t->nmsg++;
	if (t->free_in_msg) {
		chan_free(c);
		t->c = NULL;
	}
}

static void
t_bad(struct chan *c, const struct qmp_error *e, void *arg)
{
	struct t	*t = arg;

	t->nbad++;
	snprintf(t->bad, sizeof t->bad, "%s: %s", e->cls, e->desc);
}

static void
t_closed(struct chan *c, const char *why, void *arg)
{
	struct t	*t = arg;

	t->nclosed++;
	snprintf(t->why, sizeof t->why, "%s", why);
	if (t->free_in_closed) {
		chan_free(c);
		t->c = NULL;
	}
}

static void
t_drained(struct chan *c, void *arg)
{
	struct t	*t = arg;

	t->ndrained++;
}

static const struct chan_ops t_ops = {
	.msg = t_msg,
	.bad = t_bad,
	.closed = t_closed,
	.drained = t_drained,
};

static void
t_open(struct t *t, const struct chan_opts *opts)
{
	memset(t, 0, sizeof *t);
	t->fd0 = tu_fd_count();
	t->base = event_base_new();
	assert_non_null(t->base);
	t->c = tu_chan_pair(t->base, opts, &t_ops, t, &t->peer);
	assert_non_null(t->c);
}

static void
t_close(struct t *t)
{
	int	i;
	size_t	j;

	if (t->c != NULL)
		chan_free(t->c);
	if (t->peer != -1)
		close(t->peer);
	for (i = 0; i < t->nmsg; i++) {
		json_decref(t->msgs[i]);
		for (j = 0; j < t->nfds[i]; j++)
			close(t->fds[i][j]);
	}
	event_base_free(t->base);
	/* the channel's memory and held fds wait for a loop pass that
	   will not come: after the base, so the release is seen not to
	   need it */
	defer_flush();
	assert_int_equal(defer_pending(), 0);
	assert_int_equal(tu_fd_count(), t->fd0);
}

static void
peer_write(struct t *t, const void *buf, size_t len)
{
	assert_int_equal(write(t->peer, buf, len), (ssize_t)len);
}

/* sendmsg with fds on the first byte, as a QEMU client does */
static void
peer_sendfds(int fd, const char *buf, const int *fds, size_t nfds)
{
	assert_int_equal(tu_sendfds(fd, buf, fds, nfds), (ssize_t)strlen(buf));
}

static int
member_int(json_t *o, const char *k)
{
	json_t	*v = json_object_get(o, k);

	assert_true(json_is_integer(v));
	return ((int)json_integer_value(v));
}

/* Bytes in any split, CRLF and LF, several lines in one read. */
static void
test_split_delivery(void **state)
{
	struct t	 t;
	const char	*s = "{\"a\": 1}\r\n{\"b\": [1, 2]}\n";
	size_t		 i, len = strlen(s);
	char		 many[1024];
	int		 n = 0;

	t_open(&t, NULL);
	for (i = 0; i < len; i++) {
		peer_write(&t, s + i, 1);
		if (i == len - 1)
			break;
		tu_spin(t.base, 3);
		/* the first message completes at its LF, not before */
		assert_int_equal(t.nmsg, i >= 9 ? 1 : 0);
	}
	WAIT(&t, t.nmsg == 2);
	assert_int_equal(member_int(t.msgs[0], "a"), 1);
	assert_true(json_is_array(json_object_get(t.msgs[1], "b")));

	for (i = 0; i < 20; i++)
		n += snprintf(many + n, sizeof many - (size_t)n,
		    "{\"seq\": %zu}%s", i, i % 2 ? "\n" : "\r\n");
	peer_write(&t, many, (size_t)n);
	WAIT(&t, t.nmsg == 22);
	for (i = 0; i < 20; i++)
		assert_int_equal(member_int(t.msgs[2 + i], "seq"), (int)i);
	assert_int_equal(t.nbad, 0);
	assert_int_equal(t.nclosed, 0);
	t_close(&t);
}

/* fds from the peer reach the message they were sent with, even when an
   earlier message is read in the same recvmsg. */
static void
test_fds_in(void **state)
{
	struct t	t;
	int		p[2];
	char		buf[8];

	t_open(&t, NULL);
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	peer_write(&t, "{\"n\": 0}\n", 9);
	peer_sendfds(t.peer, "{\"n\": 1}\n", &p[1], 1);
	close(p[1]);
	WAIT(&t, t.nmsg == 2);
	assert_int_equal(t.nfds[0], 0);
	assert_int_equal(t.nfds[1], 1);
	assert_int_equal(member_int(t.msgs[1], "n"), 1);
	/* it is the pipe: what goes in comes out of our read end */
	assert_int_equal(write(t.fds[1][0], "ping", 4), 4);
	assert_int_equal(read(p[0], buf, sizeof buf), 4);
	assert_memory_equal(buf, "ping", 4);
	/* received fds are close-on-exec */
	assert_true(fcntl(t.fds[1][0], F_GETFD) & FD_CLOEXEC);
	close(p[0]);
	t_close(&t);
}

/* Read from the raw peer until 'want' bytes, noting where fds came
   (fds: room for TU_MAX_FDS; NULL: none may come). */
static size_t
peer_recv(struct t *t, char *buf, size_t want, int *fds, size_t *nfds,
    size_t *fds_at)
{
	size_t		 got = 0, none = 0, before;
	ssize_t		 n;
	struct tu_guard	 g;

	tu_guard_init(&g, t->base, TU_DEADLINE_MS);
	while (got < want) {
		before = nfds != NULL ? *nfds : 0;
		n = tu_recvfds(t->peer, buf + got, want - got, fds,
		    nfds != NULL ? nfds : &none, nfds != NULL ? TU_MAX_FDS : 0);
		if (n == -1 && errno == EAGAIN) {
			if (tu_guard_step(&g) == -1)
				break;
			continue;
		}
		if (n <= 0)
			break;
		if (none != 0)
			fail_msg("unexpected fds");
		if (nfds != NULL && *nfds != before)
			*fds_at = got + (size_t)n;
		got += (size_t)n;
	}
	tu_guard_done(&g);
	return (got);
}

/* chan_send with an fd: it rides on the chunk's first byte, so the read
   that brings it ends inside that chunk; the channel's dup is closed once
   sent. */
static void
test_fds_out(void **state)
{
	struct t	 t;
	const char	*a = "{\"plain\": 0}\r\n", *b = "{\"withfd\": 1}\r\n";
	char		 buf[64];
	int		 p[2], fds[16];
	size_t		 nfds = 0, at = 0, la = strlen(a), lb = strlen(b);

	t_open(&t, NULL);
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	assert_int_equal(chan_send(t.c, a, la, NULL, 0), 0);
	assert_int_equal(chan_send(t.c, b, lb, &p[1], 1), 0);
	close(p[1]);	/* the channel holds its own copy */
	assert_int_equal(peer_recv(&t, buf, la + lb, fds, &nfds, &at),
	    la + lb);
	assert_memory_equal(buf, a, la);
	assert_memory_equal(buf + la, b, lb);
	assert_int_equal(nfds, 1);
	if (!(at > la && at <= la + lb))
		fail_msg("fds came with the read ending at %zu (la %zu lb %zu)", at, la, lb);
	assert_int_equal(write(fds[0], "pong", 4), 4);
	assert_int_equal(read(p[0], buf, sizeof buf), 4);
	assert_memory_equal(buf, "pong", 4);
	close(fds[0]);
	close(p[0]);
	WAIT(&t, chan_outq(t.c) == 0 && t.ndrained > 0);
	t_close(&t);	/* also: the channel's dup was closed */
}

/* More fds than allowed: the extras are closed, the message gets the
   first max_fds, 'bad' says so, the stream goes on. */
static void
test_fd_overflow(void **state)
{
	struct chan_opts	o = { .max_fds = 2 };
	struct t		t;
	int			fds[5], i;

	t_open(&t, &o);
	for (i = 0; i < 5; i++)
		assert_true((fds[i] = open("/dev/null",
		    O_RDONLY|O_CLOEXEC)) != -1);
	peer_sendfds(t.peer, "{\"many\": 5}\n", fds, 5);
	for (i = 0; i < 5; i++)
		close(fds[i]);
	WAIT(&t, t.nmsg == 1);
	assert_int_equal(t.nfds[0], 2);
	assert_int_equal(t.nbad, 1);
	assert_non_null(strstr(t.bad, "too many file descriptors"));
	peer_write(&t, "{\"after\": 1}\n", 13);
	WAIT(&t, t.nmsg == 2);
	assert_int_equal(t.nfds[1], 0);
	assert_int_equal(t.nclosed, 0);
	t_close(&t);	/* fd count proves the 3 extras were closed */
}

static void
test_peer_close(void **state)
{
	struct t	t;

	t_open(&t, NULL);
	close(t.peer);
	t.peer = -1;
	WAIT(&t, t.nclosed == 1);
	assert_true(t.why[0] != '\0');
	assert_int_equal(chan_send(t.c, "{}\n", 3, NULL, 0), -1);
	tu_spin(t.base, 5);
	assert_int_equal(t.nclosed, 1);
	t_close(&t);
}

/* Writing to a vanished peer is an error for the channel, not a
   SIGPIPE for the process. */
static void
test_epipe(void **state)
{
	struct t	t;

	signal(SIGPIPE, SIG_DFL);
	t_open(&t, NULL);
	chan_pause_read(t.c, 1);	/* only the write can notice */
	close(t.peer);
	t.peer = -1;
	assert_int_equal(chan_send(t.c, "{\"x\": 1}\n", 9, NULL, 0), 0);
	WAIT(&t, t.nclosed == 1);
	assert_non_null(strstr(t.why, "pipe"));
	tu_spin(t.base, 5);
	assert_int_equal(t.nclosed, 1);
	t_close(&t);
}

/* chan_free from inside the msg callback: nothing more is delivered,
   nothing is touched after, fds waiting for later lines are closed. */
static void
test_free_in_msg(void **state)
{
	struct t	t;
	int		p[2];

	t_open(&t, NULL);
	t.free_in_msg = 1;
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	peer_write(&t, "{\"n\": 1}\n{\"n\": 2}\n", 18);
	peer_sendfds(t.peer, "{\"n\": 3}\n", &p[1], 1);
	close(p[1]);
	WAIT(&t, t.nmsg == 1);
	tu_spin(t.base, 5);
	assert_int_equal(t.nmsg, 1);
	assert_int_equal(t.nclosed, 0);
	assert_null(t.c);
	close(p[0]);
	t_close(&t);
}

static void
test_free_in_closed(void **state)
{
	struct t	t;

	t_open(&t, NULL);
	t.free_in_closed = 1;
	peer_write(&t, "{\"last\": 1}\n", 12);
	close(t.peer);
	t.peer = -1;
	WAIT(&t, t.nclosed == 1);
	assert_int_equal(t.nmsg, 1);
	assert_null(t.c);
	tu_spin(t.base, 5);
	t_close(&t);
}

/* A peer that does not read: the queue holds what the socket will not
   take; when the peer reads it all, the queue empties and drained
   fires. */
static void
test_outq_drained(void **state)
{
	struct t	 t;
	size_t		 total = 4u << 20, chunk = 65536, i, got;
	char		*buf, *in;

	t_open(&t, NULL);
	buf = malloc(chunk);
	in = malloc(total);
	assert_non_null(buf);
	assert_non_null(in);
	for (i = 0; i < total / chunk; i++) {
		memset(buf, 'a' + (int)(i % 26), chunk);
		assert_int_equal(chan_send(t.c, buf, chunk, NULL, 0), 0);
	}
	tu_spin(t.base, 5);
	assert_true(chan_outq(t.c) > 0);
	assert_int_equal(t.ndrained, 0);
	got = peer_recv(&t, in, total, NULL, NULL, NULL);
	assert_int_equal(got, total);
	for (i = 0; i < total; i += chunk)
		assert_int_equal(in[i + chunk - 1], 'a' + (int)(i / chunk % 26));
	WAIT(&t, t.ndrained >= 1);
	assert_int_equal(chan_outq(t.c), 0);
	free(buf);
	free(in);
	t_close(&t);
}

static void
test_bad_line(void **state)
{
	struct t	t;

	t_open(&t, NULL);
	peer_write(&t, "not json\n[1]\n{\"ok\": 1}\n", 23);
	WAIT(&t, t.nmsg == 1);
	assert_int_equal(t.nbad, 2);
	assert_int_equal(member_int(t.msgs[0], "ok"), 1);
	assert_int_equal(t.nclosed, 0);
	t_close(&t);
}

static void
test_too_long(void **state)
{
	struct chan_opts	o = { .max_msg = 64 };
	struct t		t;
	char			big[200];

	t_open(&t, &o);
	memset(big, 'x', sizeof big);
	peer_write(&t, "{\"short\": 1}\n", 13);
	peer_write(&t, big, sizeof big);
	WAIT(&t, t.nclosed == 1);
	assert_int_equal(t.nmsg, 1);
	assert_non_null(strstr(t.why, "limit"));
	t_close(&t);
}

/* Shutdown: what was queued still goes out, then closed is reported. */
static void
test_shutdown(void **state)
{
	struct t	 t;
	char		 buf[64];
	const char	*s = "{\"bye\": 1}\r\n";

	t_open(&t, NULL);
	assert_int_equal(chan_send(t.c, s, strlen(s), NULL, 0), 0);
	chan_shutdown(t.c);
	assert_int_equal(chan_send(t.c, s, strlen(s), NULL, 0), -1);
	assert_int_equal(t.nclosed, 0);	/* never from inside the call */
	WAIT(&t, t.nclosed == 1);
	assert_int_equal(peer_recv(&t, buf, strlen(s), NULL, NULL, NULL),
	    strlen(s));
	assert_memory_equal(buf, s, strlen(s));
	chan_free(t.c);
	t.c = NULL;
	assert_int_equal(read(t.peer, buf, sizeof buf), 0);	/* EOF */
	t_close(&t);
}

static void
test_pause(void **state)
{
	struct t	t;

	t_open(&t, NULL);
	chan_pause_read(t.c, 1);
	peer_write(&t, "{\"n\": 1}\n", 9);
	tu_spin(t.base, 5);
	assert_int_equal(t.nmsg, 0);
	chan_pause_read(t.c, 0);
	WAIT(&t, t.nmsg == 1);
	t_close(&t);
}

/* chan_send_json: small objects go in place, big ones the other way;
   both come out as compact CRLF lines. */
static void
test_send_json(void **state)
{
	struct t	 t;
	json_t		*small, *big, *in;
	char		*s, *buf;
	size_t		 total, i, len;
	char		*line, *eol;

	t_open(&t, NULL);
	small = json_pack("{s:s, s:i}", "execute", "query-status", "id", 7);
	s = malloc(5000);
	memset(s, 'z', 4999);
	s[4999] = '\0';
	big = json_pack("{s:s, s:{s:s}}", "execute", "x", "arguments", "s", s);
	free(s);
	assert_int_equal(chan_send_json(t.c, small), 0);
	assert_int_equal(chan_send_json(t.c, big), 0);
	assert_int_equal(chan_send_json(t.c, small), 0);
	total = 0;
	{
		char *a = json_dumps(small, JSON_COMPACT);
		char *b = json_dumps(big, JSON_COMPACT);

		total = 2 * (strlen(a) + 2) + strlen(b) + 2;
		free(a);
		free(b);
	}
	buf = malloc(total + 1);
	assert_int_equal(peer_recv(&t, buf, total, NULL, NULL, NULL), total);
	buf[total] = '\0';
	line = buf;
	for (i = 0; i < 3; i++) {
		eol = strstr(line, "\r\n");
		assert_non_null(eol);
		len = (size_t)(eol - line);
		in = json_loadb(line, len, 0, NULL);
		assert_non_null(in);
		assert_true(json_equal(in, i == 1 ? big : small));
		json_decref(in);
		line = eol + 2;
	}
	free(buf);
	json_decref(small);
	json_decref(big);
	t_close(&t);
}

/* A line far bigger than one read, written as fast as the socket takes
   it: the buffer grows, the line arrives whole, then more lines. */
static void
test_big_message(void **state)
{
	struct t	 t;
	size_t		 len = 1u << 20, off = 0;
	char		*buf;
	ssize_t		 n;
	struct tu_guard	 g;
	json_t		*v;

	t_open(&t, NULL);
	buf = malloc(len + 32);
	assert_non_null(buf);
	memcpy(buf, "{\"blob\": \"", 10);
	memset(buf + 10, 'q', len);
	memcpy(buf + 10 + len, "\"}\n{\"n\": 2}\n", 13);
	len += 23;
	assert_int_equal(fcntl(t.peer, F_SETFL, O_NONBLOCK), 0);
	tu_guard_init(&g, t.base, TU_DEADLINE_MS);
	while (off < len) {
		n = write(t.peer, buf + off, len - off);
		if (n > 0)
			off += (size_t)n;
		else if (tu_guard_step(&g) == -1)
			break;
	}
	tu_guard_done(&g);
	assert_int_equal(off, len);
	WAIT(&t, t.nmsg == 2);
	v = json_object_get(t.msgs[0], "blob");
	assert_int_equal(json_string_length(v), 1u << 20);
	assert_int_equal(member_int(t.msgs[1], "n"), 2);
	free(buf);
	t_close(&t);
}

/*
 * Upgrade: a channel paused with a complete message framed, half of the
 * next read and output queued is exported, and a second channel made
 * from the export (as the new process does with the same fd) delivers
 * the message, completes the half one, and writes the queue first.
 */
static void
test_export_import(void **state)
{
	struct t		 t;
	struct chan_opts	 o;
	struct chan		*c2;
	struct qmp_error	 err;
	json_t			*fds, *st;
	char			 buf[64];
	int			 fd;
	ssize_t			 n;

	memset(&o, 0, sizeof o);
	o.qemu_grammar = 1;
	t_open(&t, &o);
	chan_pause_read(t.c, 0);
	peer_write(&t, "{\"a\": 1}", 8);
	WAIT(&t, t.nmsg == 1);
	chan_pause_read(t.c, 1);
	peer_write(&t, "{\"b\": 2} {\"c\":", 14);
	assert_int_equal(chan_send(t.c, "out1\n", 5, NULL, 0), 0);
	/* nothing is read while paused: the bytes wait in the socket */
	fds = json_array();
	st = chan_export(t.c, fds);
	assert_non_null(st);
	assert_int_equal(json_array_size(fds), 1);
	fd = chan_export_fd(st);
	assert_int_equal(fd, chan_fd(t.c));
	assert_string_equal(json_string_value(json_object_get(st, "out")),
	    "6f7574310a");
	/* the new owner of the same stream: the old one lets go of the
	   memory, not of the fd */
	fd = dup(fd);
	json_object_set_new(st, "fd", json_integer(fd));
	chan_free(t.c);
	t.c = NULL;
	c2 = chan_import(t.base, st, 1024, &o, &t_ops, &t, &err);
	assert_non_null(c2);
	t.c = c2;
	WAIT(&t, t.nmsg == 2);
	assert_int_equal(member_int(t.msgs[1], "b"), 2);
	peer_write(&t, " 3}", 3);
	WAIT(&t, t.nmsg == 3);
	assert_int_equal(member_int(t.msgs[2], "c"), 3);
	n = read(t.peer, buf, sizeof buf);
	assert_int_equal(n, 5);
	assert_memory_equal(buf, "out1\n", 5);
	json_decref(st);
	json_decref(fds);
	t_close(&t);
}

/* What chan_import refuses (the caller keeps the fd). */
static void
test_import_bad(void **state)
{
	struct event_base	*base = event_base_new();
	struct qmp_error	 err;
	const char		*bad[] = {
		"{}",
		"{\"fd\": -1}",
		"{\"fd\": 0, \"in\": \"abc\"}",
		"{\"fd\": 0, \"in\": \"zz\"}",
		"{\"fd\": 0, \"out\": \"00000000\"}",
		"{\"fd\": 0, \"in\": 5}",
		"{\"fd\": 0, \"rfds\": [[1, 99]]}",
		"{\"fd\": 0, \"rfds\": {}}",
	};
	size_t			 i;
	json_t			*st;
	int			 fd0 = tu_fd_count();	/* the base's too */

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		st = json_loads(bad[i], 0, NULL);
		assert_non_null(st);
		/* out_max 2: "00000000" is 4 bytes, past it */
		assert_null(chan_import(base, st, 2, NULL, &t_ops, NULL,
		    &err));
		assert_true(err.desc[0] != '\0');
		json_decref(st);
	}
	/* nothing closed, nothing left open */
	assert_int_equal(tu_fd_count(), fd0);
	event_base_free(base);
	defer_flush();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_split_delivery),
		cmocka_unit_test(test_export_import),
		cmocka_unit_test(test_import_bad),
		cmocka_unit_test(test_fds_in),
		cmocka_unit_test(test_fds_out),
		cmocka_unit_test(test_fd_overflow),
		cmocka_unit_test(test_peer_close),
		cmocka_unit_test(test_epipe),
		cmocka_unit_test(test_free_in_msg),
		cmocka_unit_test(test_free_in_closed),
		cmocka_unit_test(test_outq_drained),
		cmocka_unit_test(test_bad_line),
		cmocka_unit_test(test_too_long),
		cmocka_unit_test(test_shutdown),
		cmocka_unit_test(test_pause),
		cmocka_unit_test(test_send_json),
		cmocka_unit_test(test_big_message),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
