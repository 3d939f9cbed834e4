/*
 * One client connection of a fake VM: framing in, queued writes out, and
 * every fault directive applied at the exact point the spec names.
 *
 * This does not use hv/chan: the fake is the reference the channel is
 * tested against, and it needs control chan deliberately hides (one write
 * per chunk, closing right after the N-th message, not reading at all).
 * Framing and message checks do come from proto/.
 */
#include "config.h"

#include <sys/socket.h>
#include <sys/time.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools/fake-qemu/fake.h"

#define CONN_READ	65536

struct delayed {
	struct conn	*conn;
	struct event	*ev;
	char		*buf;
	size_t		 len;
	struct delayed	*next;
};

struct conn {
	struct vm	*vm;
	int		 fd;
	unsigned	 idx;		/* 0 for the VM's first connection */
	struct event	*rev, *wev;
	struct qmp_framer framer;
	struct evbuffer	*out;
	int		 dead;
	int		 negotiated;
	int		 silent;	/* no-greeting: read, never answer */
	int		 oob;		/* the client enabled oob */
	int		 oob_now;	/* answering exec-oob: no delay */
	int		 reading;

	int		 fds[FAKE_MAX_FDS];	/* received, not yet used */
	size_t		 nfds;

	long		 chunk;		/* 0: whole writes */
	uint64_t	 nmsgs;		/* messages queued */
	uint64_t	 queued;	/* bytes queued, ever */
	uint64_t	 written;	/* bytes written, ever */
	uint64_t	 close_at;	/* close once written reaches it; 0 off */

	struct delayed	*delayed;
	struct event	*flood;
	const struct fault *flood_f;
	uint64_t	 flood_seq;
	struct timeval	 flood_t0;
};

static void	conn_read_cb(evutil_socket_t, short, void *);
static void	conn_write_cb(evutil_socket_t, short, void *);
static void	conn_flush(struct conn *);

static void
conn_close_fds(struct conn *c)
{
	while (c->nfds > 0)
		close(c->fds[--c->nfds]);
}

static void
conn_free_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn	*c = arg;

	evbuffer_free(c->out);
	free(c);
}

/*
 * The one teardown path. Safe from inside any of this connection's
 * callbacks: everything that could call back is cancelled now, and the
 * memory goes only once the loop is back in control.
 */
void
conn_close(struct conn *c)
{
	struct vm	*vm = c->vm;
	struct delayed	*d;
	struct timeval	 now = { 0, 0 };

	if (c->dead)
		return;
	c->dead = 1;
	event_free(c->rev);
	event_free(c->wev);
	if (c->flood != NULL)
		event_free(c->flood);
	while ((d = c->delayed) != NULL) {
		c->delayed = d->next;
		event_free(d->ev);
		free(d->buf);
		free(d);
	}
	conn_close_fds(c);
	qmp_framer_free(&c->framer);
	close(c->fd);
	if (vm->conn == c)
		vm->conn = NULL;
	/* Like QEMU's monitor_fdsets_cleanup() when a monitor goes away. */
	vm_fdset_cleanup(vm);
	if (event_base_once(vm->fake->base, -1, EV_TIMEOUT, conn_free_cb, c,
	    &now) != 0)
		conn_free_cb(-1, 0, c);
	if (vm->quitting)
		vm_quit_done(vm);
	else if (vm->lev != NULL)
		event_add(vm->lev, NULL);	/* next client from the backlog */
}

/* Queue one whole message (with its CRLF) and count it for close-after. */
static void
conn_queue(struct conn *c, const char *buf, size_t len)
{
	if (c->dead || c->close_at != 0)
		return;		/* nothing goes out past close-after */
	if (evbuffer_get_length(c->out) + len > FAKE_MAX_OUTQ) {
		fprintf(stderr, "fake-qemu: %s: client not reading, dropped\n",
		    c->vm->path);
		conn_close(c);
		return;
	}
	evbuffer_add(c->out, buf, len);
	c->queued += len;
	c->nmsgs++;
	if (c->vm->fake->faults.n > 0) {
		const struct fault *f = fault_get(&c->vm->fake->faults, c->idx,
		    F_CLOSE_AFTER, NULL);
		if (f != NULL && c->nmsgs == (uint64_t)f->n)
			c->close_at = c->queued;
	}
}

/*
 * QEMU writes ", " and ": " between members and ends lines with CRLF;
 * jansson's non-compact one-line form is byte-identical, so a transcript
 * of the fake reads like one of QEMU.
 */
static char *
conn_dump(const json_t *msg, size_t *len)
{
	char	*s;
	size_t	 n;

	if ((s = json_dumps(msg, JSON_INDENT(0) | JSON_PRESERVE_ORDER)) == NULL)
		return (NULL);
	n = strlen(s);
	s = xreallocarray(s, n + 3, 1);
	memcpy(s + n, "\r\n", 3);
	*len = n + 2;
	return (s);
}

static void
conn_send(struct conn *c, const json_t *msg)
{
	char	*s;
	size_t	 len;

	if (c->dead)
		return;
	if ((s = conn_dump(msg, &len)) == NULL) {
		fprintf(stderr, "fake-qemu: cannot serialise a message\n");
		return;
	}
	conn_queue(c, s, len);
	free(s);
}

static void
conn_flush(struct conn *c)
{
	ssize_t	n;
	size_t	max;

	while (!c->dead && evbuffer_get_length(c->out) > 0) {
		max = evbuffer_get_length(c->out);
		if (c->close_at != 0 && c->close_at - c->written < max)
			max = c->close_at - c->written;
		if (c->chunk > 0 && (size_t)c->chunk < max)
			max = c->chunk;
		n = evbuffer_write_atmost(c->out, c->fd, max);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				break;
			conn_close(c);
			return;
		}
		c->written += n;
		if (c->close_at != 0 && c->written >= c->close_at) {
			conn_close(c);
			return;
		}
		/* chunk: one write per loop turn, so pieces stay separate. */
		if (c->chunk > 0)
			break;
	}
	if (evbuffer_get_length(c->out) > 0)
		event_add(c->wev, NULL);
	else {
		event_del(c->wev);
		if (c->vm->quitting && c->vm->conn == c && c->delayed == NULL)
			conn_close(c);
	}
}

static void
conn_write_cb(evutil_socket_t fd, short what, void *arg)
{
	conn_flush(arg);
}

static json_t *
conn_timestamp(void)
{
	struct timeval	tv;

	gettimeofday(&tv, NULL);
	return (json_pack("{s:I,s:I}", "seconds", (json_int_t)tv.tv_sec,
	    "microseconds", (json_int_t)tv.tv_usec));
}

void
vm_event(struct vm *vm, const char *name, json_t *data)
{
	json_t	*ev;

	if (vm->conn == NULL || vm->conn->dead || vm->conn->silent ||
	    !vm->conn->negotiated) {
		json_decref(data);	/* QEMU drops events nobody listens to */
		return;
	}
	ev = json_object();
	json_object_set_new(ev, "timestamp", conn_timestamp());
	json_object_set_new(ev, "event", json_string(name));
	if (data != NULL)
		json_object_set_new(ev, "data", data);
	conn_send(vm->conn, ev);
	json_decref(ev);
	conn_flush(vm->conn);
}

static json_t *
conn_greeting(void)
{
	return (json_pack("{s:{s:{s:{s:i,s:i,s:i},s:s},s:[s]}}", "QMP",
	    "version", "qemu", "micro", 22, "minor", 2, "major", 7,
	    "package", "Debian 1:7.2+dfsg-7+deb12u18+b3 (fake-qemu)",
	    "capabilities", "oob"));
}

static void
conn_delayed_cb(evutil_socket_t fd, short what, void *arg)
{
	struct delayed	*d = arg, **pp;
	struct conn	*c = d->conn;

	for (pp = &c->delayed; *pp != d; pp = &(*pp)->next)
		;
	*pp = d->next;
	conn_queue(c, d->buf, d->len);
	event_free(d->ev);
	free(d->buf);
	free(d);
	if (!c->dead)
		conn_flush(c);
}

/* A reply: QEMU puts "id" last after a return and first before an error. */
static void
conn_reply(struct conn *c, const char *cmd, json_t *ret,
    const struct qmp_error *err, json_t *id)
{
	const struct fault	*f;
	json_t			*msg;
	struct delayed		*d;
	struct timeval		 tv;
	char			*s;
	size_t			 len;

	msg = json_object();
	if (err != NULL) {
		if (id != NULL)
			json_object_set(msg, "id", id);
		json_object_set_new(msg, "error", qmp_error_json(err));
	} else {
		json_object_set_new(msg, "return",
		    ret != NULL ? ret : json_object());
		if (id != NULL)
			json_object_set(msg, "id", id);
	}
	f = NULL;
	if (cmd != NULL && !c->oob_now)
		f = fault_get(&c->vm->fake->faults, c->idx, F_DELAY_CMD, cmd);
	/* out of band: answered at once, whatever in-band waits */
	if (f == NULL && !c->oob_now)
		f = fault_get(&c->vm->fake->faults, c->idx, F_DELAY, NULL);
	if (f == NULL || f->n == 0) {
		conn_send(c, msg);
		json_decref(msg);
		return;
	}
	if ((s = conn_dump(msg, &len)) == NULL) {
		json_decref(msg);
		return;
	}
	json_decref(msg);
	d = xcalloc(1, sizeof *d);
	d->conn = c;
	d->buf = s;
	d->len = len;
	d->ev = evtimer_new(c->vm->fake->base, conn_delayed_cb, d);
	/* Appended at the tail so equal delays keep their order. */
	{
		struct delayed **pp = &c->delayed;
		while (*pp != NULL)
			pp = &(*pp)->next;
		*pp = d;
	}
	tv.tv_sec = f->n / 1000;
	tv.tv_usec = (f->n % 1000) * 1000;
	evtimer_add(d->ev, &tv);
}

static void
conn_flood_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn	*c = arg;
	struct timeval	 now, el, tv;
	uint64_t	 due;
	json_t		*ev;

	gettimeofday(&now, NULL);
	timersub(&now, &c->flood_t0, &el);
	due = ((uint64_t)el.tv_sec * 1000000 + el.tv_usec) *
	    (uint64_t)c->flood_f->n / 1000000;
	/* Never more than the queue bound: a slow reader slows the flood
	   instead of growing memory. */
	while (c->flood_seq < due && !c->dead &&
	    evbuffer_get_length(c->out) < FAKE_FLOOD_OUTQ) {
		ev = json_object();
		json_object_set_new(ev, "timestamp", conn_timestamp());
		json_object_set_new(ev, "event", json_string(c->flood_f->name));
		json_object_set_new(ev, "data", json_pack("{s:I}", "seq",
		    (json_int_t)++c->flood_seq));
		conn_send(c, ev);
		json_decref(ev);
	}
	if (c->dead)
		return;
	conn_flush(c);
	if (c->dead)
		return;
	/* Whole-second rates up to 1000/s get one event per tick; faster
	   ones are batched every millisecond. */
	tv.tv_sec = 0;
	tv.tv_usec = c->flood_f->n >= 1000 ? 1000 : 1000000 / c->flood_f->n;
	evtimer_add(c->flood, &tv);
}

/* After qmp_capabilities has been answered. */
static void
conn_negotiated(struct conn *c)
{
	const struct faults	*fs = &c->vm->fake->faults;
	const struct fault	*f;
	struct timeval		 tv = { 0, 0 };

	c->negotiated = 1;
	if ((f = fault_get(fs, c->idx, F_FLOOD, NULL)) != NULL) {
		c->flood_f = f;
		gettimeofday(&c->flood_t0, NULL);
		c->flood = evtimer_new(c->vm->fake->base, conn_flood_cb, c);
		evtimer_add(c->flood, &tv);
	}
	if (fault_get(fs, c->idx, F_STOP_READING, NULL) != NULL) {
		c->reading = 0;
		event_del(c->rev);
	}
}

int
cmd_take_fd(struct cmdctx *x)
{
	int	fd;

	if (*x->nfds == 0)
		return (-1);
	fd = x->fds[0];
	memmove(x->fds, x->fds + 1, (*x->nfds - 1) * sizeof *x->fds);
	(*x->nfds)--;
	return (fd);
}

static void
conn_oob_yank(struct conn *c, const char *name, json_t *args, json_t *id)
{
	const struct cmd_entry	*ce = cmd_find(name);
	struct qmp_error	 err;
	struct cmdctx		 x;
	json_t			*ret;

	memset(&err, 0, sizeof err);
	memset(&x, 0, sizeof x);
	x.vm = c->vm;
	x.conn = c;
	x.fds = c->fds;
	x.nfds = &c->nfds;
	ret = ce->fn(&x, args, &err);
	conn_reply(c, name, ret, ret != NULL ? NULL : &err, id);
}

static void
conn_command(struct conn *c, json_t *msg)
{
	const struct faults	*fs = &c->vm->fake->faults;
	const struct fault	*f;
	const struct cmd_entry	*ce;
	struct qmp_error	 err;
	struct cmdctx		 x;
	const char		*name;
	json_t			*args = NULL, *id = NULL, *ret;
	const char		*k;
	json_t			*v, *en;
	bool			 oob;
	size_t			 i;

	if (qmp_cmd_parse_oob(msg, c->oob, &name, &args, &id, &oob,
	    &err) != 0) {
		conn_reply(c, NULL, NULL, &err, id);
		return;
	}
	if (oob) {
		/* QEMU 7.2: only commands marked allow-oob run out of band */
		c->oob_now = 1;
		if (cmd_find(name) == NULL)
			qmp_error_set(&err, QMP_CLS_NOTFOUND,
			    "The command %s has not been found", name);
		else if (strcmp(name, "yank") != 0 &&
		    strcmp(name, "migrate-pause") != 0 &&
		    strcmp(name, "migrate-recover") != 0)
			qmp_error_set(&err, QMP_CLS_GENERIC,
			    "The command %s does not support OOB", name);
		else {
			conn_oob_yank(c, name, args, id);
			c->oob_now = 0;
			return;
		}
		conn_reply(c, name, NULL, &err, id);
		c->oob_now = 0;
		return;
	}
	if (fault_get(fs, c->idx, F_EOF_ON, name) != NULL) {
		conn_flush(c);
		conn_close(c);
		return;
	}
	if (fault_get(fs, c->idx, F_NO_REPLY, name) != NULL)
		return;
	if ((f = fault_get(fs, c->idx, F_ERROR, name)) != NULL) {
		qmp_error_set(&err, f->cls, "%s", f->desc);
		conn_reply(c, name, NULL, &err, id);
		return;
	}

	/* QEMU looks the command up in the negotiation-mode table first,
	   then rewrites "not found" into the negotiation hint. */
	ce = cmd_find(name);
	if (!c->negotiated && strcmp(name, "qmp_capabilities") != 0) {
		qmp_error_set(&err, QMP_CLS_NOTFOUND,
		    "Expecting capabilities negotiation with 'qmp_capabilities'");
		conn_reply(c, name, NULL, &err, id);
		return;
	}
	if (strcmp(name, "qmp_capabilities") == 0) {
		if (c->negotiated) {
			qmp_error_set(&err, QMP_CLS_NOTFOUND, "Capabilities "
			    "negotiation is already complete, command ignored");
			conn_reply(c, name, NULL, &err, id);
			return;
		}
		if (args != NULL) {
			json_object_foreach(args, k, v) {
				if (strcmp(k, "enable") == 0)
					continue;
				qmp_error_set(&err, QMP_CLS_GENERIC,
				    "Parameter '%s' is unexpected", k);
				conn_reply(c, name, NULL, &err, id);
				return;
			}
		}
		/* QEMU 7.2's answers to "enable" */
		en = json_object_get(args, "enable");
		if (en != NULL && !json_is_array(en)) {
			qmp_error_set(&err, QMP_CLS_GENERIC, "Invalid parameter "
			    "type for 'enable', expected: array");
			conn_reply(c, name, NULL, &err, id);
			return;
		}
		json_array_foreach(en, i, v) {
			if (json_is_string(v) &&
			    strcmp(json_string_value(v), "oob") == 0)
				continue;
			if (json_is_string(v))
				qmp_error_set(&err, QMP_CLS_GENERIC, "Parameter "
				    "'null' does not accept value '%s'",
				    json_string_value(v));
			else
				qmp_error_set(&err, QMP_CLS_GENERIC, "Invalid "
				    "parameter type for 'null', expected: "
				    "string");
			conn_reply(c, name, NULL, &err, id);
			return;
		}
		c->oob = json_array_size(en) > 0;
		conn_reply(c, name, NULL, NULL, id);
		conn_negotiated(c);
		return;
	}
	if (ce == NULL) {
		qmp_error_set(&err, QMP_CLS_NOTFOUND,
		    "The command %s has not been found", name);
		conn_reply(c, name, NULL, &err, id);
		return;
	}
	if (ce->noargs && args != NULL) {
		json_object_foreach(args, k, v) {
			qmp_error_set(&err, QMP_CLS_GENERIC,
			    "Parameter '%s' is unexpected", k);
			conn_reply(c, name, NULL, &err, id);
			return;
		}
	}
	memset(&err, 0, sizeof err);
	x.vm = c->vm;
	x.conn = c;
	x.fds = c->fds;
	x.nfds = &c->nfds;
	ret = ce->fn(&x, args, &err);
	if (c->dead)
		return;
	if (c->vm->quitting) {
		/* Nothing after quit is read, as QEMU is gone by then. */
		c->reading = 0;
		event_del(c->rev);
	}
	if (ret == NULL && err.cls[0] == '\0')
		ret = json_object();
	conn_reply(c, name, ret, ret != NULL ? NULL : &err, id);
}

static void
conn_input(struct conn *c)
{
	enum qmp_frame_rc	 rc;
	struct qmp_error	 err;
	json_t			*msg;

	while (!c->dead && c->reading) {
		rc = qmp_framer_next(&c->framer, &msg, &err);
		if (rc == QMP_FRAME_NONE)
			return;
		if (rc == QMP_FRAME_BROKEN) {
			conn_close(c);
			return;
		}
		if (c->silent) {
			json_decref(msg);
			continue;
		}
		if (rc == QMP_FRAME_BAD) {
			conn_reply(c, NULL, NULL, &err, NULL);
			continue;
		}
		if (!json_is_object(msg)) {
			qmp_error_set(&err, QMP_CLS_GENERIC,
			    "QMP input must be a JSON object");
			conn_reply(c, NULL, NULL, &err, NULL);
		} else
			conn_command(c, msg);
		json_decref(msg);
	}
}

static void
conn_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn	*c = arg;
	struct msghdr	 mh;
	struct iovec	 iov;
	struct cmsghdr	*cm;
	union {
		struct cmsghdr	hdr;
		char		buf[CMSG_SPACE(FAKE_MAX_FDS * sizeof(int))];
	} cbuf;
	char		*p;
	size_t		 avail, i, n;
	ssize_t		 r;
	int		*rfds, refuse;

	if ((p = qmp_framer_reserve(&c->framer, 4096, &avail)) == NULL) {
		conn_close(c);
		return;
	}
	if (avail > CONN_READ)
		avail = CONN_READ;
	iov.iov_base = p;
	iov.iov_len = avail;
	memset(&mh, 0, sizeof mh);
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = cbuf.buf;
	mh.msg_controllen = sizeof cbuf.buf;
	r = recvmsg(c->fd, &mh, MSG_CMSG_CLOEXEC);
	if (r < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (r < 0) {
		/* A failed recvmsg (ECONNRESET when the client died with
		   replies unread) leaves mh's control data as it was: the
		   stack's leftovers, perhaps an fd number from an earlier
		   read that is now a netdev's tap. Nothing came. */
		conn_close(c);
		return;
	}
	refuse = fault_get(&c->vm->fake->faults, c->idx, F_REFUSE_FDS,
	    NULL) != NULL;
	for (cm = CMSG_FIRSTHDR(&mh); cm != NULL; cm = CMSG_NXTHDR(&mh, cm)) {
		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		rfds = (int *)CMSG_DATA(cm);
		n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		/* As QEMU's tcp_chr_recv: new fds replace unused old ones. */
		if (n > 0)
			conn_close_fds(c);
		for (i = 0; i < n; i++) {
			if (refuse || c->nfds == FAKE_MAX_FDS)
				close(rfds[i]);
			else
				c->fds[c->nfds++] = rfds[i];
		}
	}
	if (r <= 0) {
		conn_close(c);
		return;
	}
	qmp_framer_commit(&c->framer, r);
	conn_input(c);
	if (!c->dead)
		conn_flush(c);
}

void
conn_accept(struct vm *vm, int fd)
{
	const struct faults	*fs = &vm->fake->faults;
	const struct fault	*f;
	struct conn		*c;
	json_t			*g;

	c = xcalloc(1, sizeof *c);
	c->vm = vm;
	c->fd = fd;
	c->idx = vm->nconn++;
	c->reading = 1;
	c->out = evbuffer_new();
	qmp_framer_init(&c->framer, 1024 * 1024);
	c->rev = event_new(vm->fake->base, fd, EV_READ | EV_PERSIST,
	    conn_read_cb, c);
	c->wev = event_new(vm->fake->base, fd, EV_WRITE | EV_PERSIST,
	    conn_write_cb, c);
	if (c->out == NULL || c->rev == NULL || c->wev == NULL)
		fake_fatal("out of memory");
	vm->conn = c;
	event_del(vm->lev);	/* one client at a time, like QEMU */
	event_add(c->rev, NULL);

	if ((f = fault_get(fs, c->idx, F_CHUNK, NULL)) != NULL)
		c->chunk = f->n;
	if (fault_get(fs, c->idx, F_NO_GREETING, NULL) != NULL) {
		c->silent = 1;
		return;
	}
	g = conn_greeting();
	conn_send(c, g);
	if (fault_get(fs, c->idx, F_SECOND_GREETING, NULL) != NULL)
		conn_send(c, g);
	json_decref(g);
	if (fault_get(fs, c->idx, F_GARBAGE, NULL) != NULL)
		conn_queue(c, "this is not JSON {\r\n", 20);
	conn_flush(c);
}
