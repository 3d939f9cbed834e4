/*
 * A QMP channel over a connected unix stream socket.
 *
 * Not a bufferevent: file descriptors travel both ways as SCM_RIGHTS, so
 * reads are recvmsg() straight into the framer's buffer and writes are
 * sendmsg() straight from the output evbuffer's chains (no copy either
 * way). Every send uses MSG_NOSIGNAL so a vanished peer is an EPIPE for
 * this channel, never a SIGPIPE for the process.
 *
 * Which message do received fds belong to? Linux glues queued bytes into
 * one read up to and including the first skb that carries fds, then stops.
 * So fds always arrive with the last byte of the read that brought them;
 * they are tagged with that byte's stream offset and handed to the first
 * line (or message, with QEMU's grammar: the whitespace right after a
 * message is part of it) that ends after it. A sender that puts fds on a message's first
 * byte (as QEMU's clients and chan_send do) thus gets them matched to that
 * message even when earlier messages came in the same read.
 *
 * Too many fds before one message (more than max_fds): the extras are
 * closed, the stream is kept, and ops->bad reports it. The message still
 * gets the first max_fds.
 *
 * Lifetime (util/defer.h): chan_free() marks the channel dead, frees its
 * events and closes its socket; the memory, and the fds it still holds,
 * go on a later loop pass. Every callback is followed by a dead check, so
 * code on the stack stops without touching more than the memory.
 */
#include "config.h"

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "hv/chan.h"
#include "proto/qmp_framer.h"
#include "proto/qmp_jstream.h"
#include "util/defer.h"

#define CHAN_READ_MIN		4096	/* room asked of the framer per read */
#define CHAN_READ_MAX		262144	/* ... growing while reads fill it */
#define CHAN_READ_ROUNDS	4	/* reads per wakeup: fairness */
#define CHAN_IOV		64	/* extents per sendmsg */
#define CHAN_SCM_MAX		253	/* the kernel's SCM_MAX_FD */
#define CHAN_JSON_GUESS		1024	/* in-place serialisation attempt */

/* A chunk of the output that carries fds on its first byte. */
struct chan_mark {
	struct chan_mark	*next;
	uint64_t		 pos;	/* stream offset of the first byte */
	size_t			 len;	/* chunk length */
	size_t			 nfds;
	int			 fds[];
};

struct chan {
	struct event_base	*base;
	int			 fd;
	struct event		*rev;
	struct event		*wev;
	struct event		*lev;		/* incomplete line idle */
	int			 line_timeout_ms;

	const struct chan_ops	*ops;
	void			*arg;

	struct qmp_framer	 fr;		/* lines (QEMU's output) */
	struct qmp_jstream	 js;		/* QEMU's grammar (clients) */
	int			 grammar;	/* js, not fr */
	uint64_t		 rtotal;	/* bytes read so far */
	size_t			 rsize;		/* room asked per read */

	/* fds received, not yet handed over; tag = stream offset of the
	   last byte of the read that brought them */
	int			*rfds;
	uint64_t		*rtags;
	size_t			 nrfds;
	size_t			 max_fds;

	struct evbuffer		*out;
	uint64_t		 queued;	/* bytes ever queued */
	uint64_t		 sent;		/* bytes ever written */
	struct chan_mark	*marks;
	struct chan_mark	**marks_tail;

	struct defer		 reap;
	unsigned		 dead:1;	/* chan_free was called */
	unsigned		 closed:1;	/* the stream is over */
	unsigned		 paused:1;
	unsigned		 shutting:1;
	unsigned		 wsched:1;	/* the write callback will run */
	unsigned		 held:1;	/* output held data since drained */
};

static void	chan_read_cb(evutil_socket_t, short, void *);
static void	chan_write_cb(evutil_socket_t, short, void *);
static void	chan_line_cb(evutil_socket_t, short, void *);
static void	chan_stop(struct chan *);
static void	chan_release(void *);

static void
chan_close_fds(const int *fds, size_t n)
{
	size_t	i;

	for (i = 0; i < n; i++)
		close(fds[i]);
}

/* The reader in use: lines, or QEMU's input grammar. */
static char *
chan_rd_reserve(struct chan *c, size_t min, size_t *avail)
{
	return (c->grammar ? qmp_jstream_reserve(&c->js, min, avail) :
	    qmp_framer_reserve(&c->fr, min, avail));
}

static void
chan_rd_commit(struct chan *c, size_t n)
{
	if (c->grammar)
		qmp_jstream_commit(&c->js, n);
	else
		qmp_framer_commit(&c->fr, n);
}

static enum qmp_frame_rc
chan_rd_next(struct chan *c, json_t **msg, struct qmp_error *err)
{
	return (c->grammar ? qmp_jstream_next(&c->js, msg, err) :
	    qmp_framer_next(&c->fr, msg, err));
}

static size_t
chan_rd_pending(const struct chan *c)
{
	return (c->grammar ? qmp_jstream_pending(&c->js) :
	    qmp_framer_pending(&c->fr));
}

static size_t
chan_rd_cap(const struct chan *c)
{
	return (c->grammar ? c->js.cap : c->fr.cap);
}

static void
chan_rd_free(struct chan *c)
{
	if (c->grammar)
		qmp_jstream_free(&c->js);
	else
		qmp_framer_free(&c->fr);
}

struct chan *
chan_new(struct event_base *base, int fd, const struct chan_opts *opts,
    const struct chan_ops *ops, void *arg)
{
	struct chan	*c;
	int		 fl;
	size_t		 max_msg = 0, max_fds = 0;
	int		 lto = 0, grammar = 0;

	if (opts != NULL) {
		grammar = opts->qemu_grammar;
		max_msg = opts->max_msg;
		max_fds = opts->max_fds;
		lto = opts->line_timeout_ms > 0 ? opts->line_timeout_ms : 0;
	}
	if (max_msg == 0)
		max_msg = QMP_FRAMER_DEFAULT_MAX;
	if (max_fds == 0)
		max_fds = CHAN_MAX_FDS;
	if (max_fds > CHAN_SCM_MAX)
		max_fds = CHAN_SCM_MAX;

	if ((fl = fcntl(fd, F_GETFL)) == -1 || (!(fl & O_NONBLOCK) &&
	    fcntl(fd, F_SETFL, fl | O_NONBLOCK) == -1))
		return (NULL);
	if ((c = calloc(1, sizeof *c)) == NULL)
		return (NULL);
	c->base = base;
	c->fd = fd;
	c->ops = ops;
	c->arg = arg;
	c->max_fds = max_fds;
	c->line_timeout_ms = lto;
	c->rsize = CHAN_READ_MIN;
	c->marks_tail = &c->marks;
	c->grammar = grammar;
	qmp_framer_init(&c->fr, max_msg);
	qmp_jstream_init(&c->js, max_msg);
	c->rfds = calloc(max_fds, sizeof *c->rfds);
	c->rtags = calloc(max_fds, sizeof *c->rtags);
	c->out = evbuffer_new();
	c->rev = event_new(base, fd, EV_READ|EV_PERSIST, chan_read_cb, c);
	c->wev = event_new(base, fd, EV_WRITE, chan_write_cb, c);
	if (lto > 0)
		c->lev = evtimer_new(base, chan_line_cb, c);
	if (c->rfds == NULL || c->rtags == NULL || c->out == NULL ||
	    c->rev == NULL || c->wev == NULL || (lto > 0 && c->lev == NULL) ||
	    event_add(c->rev, NULL) != 0) {
		c->fd = -1;	/* the caller keeps fd on failure */
		chan_stop(c);
		chan_release(c);	/* no callback ran: nothing to wait for */
		return (NULL);
	}
	return (c);
}

/* No callback and no I/O from here on: the events and the socket go. */
static void
chan_stop(struct chan *c)
{
	if (c->rev != NULL)
		event_free(c->rev);
	if (c->wev != NULL)
		event_free(c->wev);
	if (c->lev != NULL)
		event_free(c->lev);
	c->rev = c->wev = c->lev = NULL;
	if (c->fd != -1)
		close(c->fd);
	c->fd = -1;
}

/* The memory and the fds not handed over, from the loop (or
   defer_flush): touches no event, the base may be gone. */
static void
chan_release(void *arg)
{
	struct chan		*c = arg;
	struct chan_mark	*m;

	while ((m = c->marks) != NULL) {
		c->marks = m->next;
		chan_close_fds(m->fds, m->nfds);
		free(m);
	}
	chan_close_fds(c->rfds, c->nrfds);
	free(c->rfds);
	free(c->rtags);
	if (c->out != NULL)
		evbuffer_free(c->out);
	qmp_framer_free(&c->fr);
	qmp_jstream_free(&c->js);
	free(c);
}

void
chan_free(struct chan *c)
{
	if (c == NULL || c->dead)
		return;
	c->dead = 1;
	c->closed = 1;		/* closed is not reported after this */
	chan_stop(c);
	/* from inside our own callback the caller still reads c when it
	   returns: the memory waits for the loop */
	defer_free(c->base, &c->reap, chan_release, c);
}

/* The stream is over: report once, then only chan_free is expected. */
static void
chan_fail(struct chan *c, const char *why)
{
	if (c->closed)
		return;
	c->closed = 1;
	event_del(c->rev);
	event_del(c->wev);
	if (c->lev != NULL)
		event_del(c->lev);
	if (c->ops->closed != NULL)
		c->ops->closed(c, why, c->arg);
}

static void __attribute__((format(printf, 2, 3)))
chan_report_bad(struct chan *c, const char *fmt, ...)
{
	struct qmp_error	e;
	va_list			ap;

	/* a bad callback before may have freed or closed us */
	if (c->ops->bad == NULL || c->closed)
		return;
	va_start(ap, fmt);
	qmp_error_vset(&e, QMP_CLS_GENERIC, fmt, ap);
	va_end(ap);
	c->ops->bad(c, &e, c->arg);
}

/* ---- reading ---- */

/* Forget the first n received fds (handed over or closed). */
static void
chan_drop_fds(struct chan *c, size_t n)
{
	size_t	i;

	for (i = n; i < c->nrfds; i++) {
		c->rfds[i - n] = c->rfds[i];
		c->rtags[i - n] = c->rtags[i];
	}
	c->nrfds -= n;
}

/* Hand out complete lines. Returns -1 if the callee freed or closed us or
   asked us to pause. */
static int
chan_deliver(struct chan *c)
{
	json_t			*msg;
	struct qmp_error	 err;
	enum qmp_frame_rc	 rc;
	uint64_t		 end;
	size_t			 n;

	while (!c->paused && !c->closed) {
		rc = chan_rd_next(c, &msg, &err);
		if (rc == QMP_FRAME_NONE)
			return (0);
		if (rc == QMP_FRAME_BROKEN) {
			chan_fail(c, err.desc[0] != '\0' ? err.desc :
			    "stream broken");
			return (-1);
		}
		/* fds tagged before the end of this line are its own */
		end = c->rtotal - chan_rd_pending(c);
		for (n = 0; n < c->nrfds && c->rtags[n] < end; n++)
			;
		if (rc == QMP_FRAME_BAD) {
			/* fds that came with a broken request have no owner */
			chan_close_fds(c->rfds, n);
		}
		/* from here on the first n are consumed: the callee owns
		   them or they were closed */
		if (rc == QMP_FRAME_BAD) {
			chan_drop_fds(c, n);
			if (c->ops->bad != NULL)
				c->ops->bad(c, &err, c->arg);
		} else {
			c->ops->msg(c, msg, n > 0 ? c->rfds : NULL, n, c->arg);
			json_decref(msg);
			chan_drop_fds(c, n);
		}
		if (c->dead)
			return (-1);
	}
	return (-1);
}

/* Collect SCM_RIGHTS from one recvmsg; tag with the read's last byte. */
static void
chan_take_fds(struct chan *c, struct msghdr *mh, uint64_t tag)
{
	struct cmsghdr	*cm;
	const int	*p;
	size_t		 n, i, dropped = 0;

	for (cm = CMSG_FIRSTHDR(mh); cm != NULL; cm = CMSG_NXTHDR(mh, cm)) {
		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		p = (const int *)CMSG_DATA(cm);
		for (i = 0; i < n; i++) {
			int fd;

			memcpy(&fd, p + i, sizeof fd);
			if (c->nrfds == c->max_fds) {
				close(fd);
				dropped++;
				continue;
			}
			c->rfds[c->nrfds] = fd;
			c->rtags[c->nrfds] = tag;
			c->nrfds++;
		}
	}
	if (dropped > 0)
		chan_report_bad(c, "too many file descriptors: %zu closed "
		    "(at most %zu per message)", dropped, c->max_fds);
	if (mh->msg_flags & MSG_CTRUNC)
		chan_report_bad(c, "file descriptors lost: control data "
		    "truncated (%zu kept, at most %zu per message)",
		    c->nrfds, c->max_fds);
}

/*
 * A peer that sends part of a line and goes quiet holds its buffer and its
 * slot for ever; with line_timeout_ms the clock restarts on every read
 * that leaves an incomplete line behind and stops when none is left or
 * reading is paused (then the wait is ours, not the peer's).
 */
static void
chan_line_timer(struct chan *c, int progress)
{
	struct timeval	tv;

	if (c->lev == NULL || c->closed)
		return;
	if (c->paused || c->shutting || chan_rd_pending(c) == 0) {
		event_del(c->lev);
		return;
	}
	if (!progress && evtimer_pending(c->lev, NULL))
		return;
	tv.tv_sec = c->line_timeout_ms / 1000;
	tv.tv_usec = (c->line_timeout_ms % 1000) * 1000;
	evtimer_add(c->lev, &tv);
}

static void
chan_line_cb(evutil_socket_t fd, short what, void *arg)
{
	struct chan	*c = arg;
	char		 why[96];

	(void)fd;
	(void)what;
	snprintf(why, sizeof why, "incomplete line, then nothing for %d ms",
	    c->line_timeout_ms);
	chan_fail(c, why);
}

static void
chan_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct chan	*c = arg;
	union {
		struct cmsghdr	hdr;
		char		buf[CMSG_SPACE(sizeof(int) * CHAN_SCM_MAX)];
	} cbuf;
	struct msghdr	 mh;
	struct iovec	 iov;
	char		*p;
	size_t		 avail;
	ssize_t		 n;
	int		 round, progress = 0;

	/* lines framed before a pause come first */
	if (chan_deliver(c) == -1)
		goto out;
	for (round = 0; round < CHAN_READ_ROUNDS; round++) {
		p = chan_rd_reserve(c, c->rsize, &avail);
		if (p == NULL) {
			json_t			*j;
			struct qmp_error	 e;

			/* over the limit: the framer says so in its words */
			if (chan_rd_next(c, &j, &e) == QMP_FRAME_BROKEN)
				chan_fail(c, e.desc);
			else {
				json_decref(j);
				chan_fail(c, "out of memory");
			}
			goto out;
		}
		iov.iov_base = p;
		iov.iov_len = avail;
		memset(&mh, 0, sizeof mh);
		mh.msg_iov = &iov;
		mh.msg_iovlen = 1;
		mh.msg_control = cbuf.buf;
		mh.msg_controllen = sizeof cbuf.buf;
		n = recvmsg(c->fd, &mh, MSG_CMSG_CLOEXEC|MSG_DONTWAIT);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				chan_fail(c, strerror(errno));
			goto out;
		}
		if (mh.msg_controllen > 0)
			chan_take_fds(c, &mh, c->rtotal + (n > 0 ? n - 1 : 0));
		if (c->dead)
			goto out;
		if (n == 0) {
			chan_fail(c, "end of file");
			goto out;
		}
		chan_rd_commit(c, (size_t)n);
		progress = 1;
		c->rtotal += (uint64_t)n;
		if (chan_deliver(c) == -1)
			goto out;
		if ((size_t)n == avail) {
			/* a busy peer: read more at a time */
			if (c->rsize < CHAN_READ_MAX)
				c->rsize *= 2;
			continue;
		}
		/* The socket is drained (skip the EAGAIN read). A burst may
		   have grown the buffer: an idle channel keeps only a small
		   one, which matters at thousands of channels. */
		if (chan_rd_pending(c) == 0 &&
		    chan_rd_cap(c) > 2 * CHAN_READ_MIN) {
			chan_rd_free(c);
			c->rsize = CHAN_READ_MIN;
		}
		break;
	}
out:
	if (!c->dead)
		chan_line_timer(c, progress);
}

void
chan_pause_read(struct chan *c, int paused)
{
	if (c->closed || (c->paused != 0) == (paused != 0))
		return;
	c->paused = paused != 0;
	chan_line_timer(c, 1);
	if (c->paused || c->shutting)
		event_del(c->rev);
	else {
		event_add(c->rev, NULL);
		/* complete lines may already wait in the framer */
		if (chan_rd_pending(c) > 0)
			event_active(c->rev, EV_READ, 1);
	}
}

/* ---- writing ---- */

static void
chan_kick(struct chan *c)
{
	if (c->wsched || c->closed)
		return;
	c->wsched = 1;
	/* runs later in this loop pass: sends queued in one callback go
	   out in one sendmsg, and no epoll change is needed */
	event_active(c->wev, EV_WRITE, 1);
}

/* Write what the socket takes. 0: all written or would block (*more set);
   -1: error in errno. */
static int
chan_flush(struct chan *c, int *more)
{
	struct evbuffer_iovec	 ev[CHAN_IOV];
	struct iovec		 iov[CHAN_IOV];
	union {
		struct cmsghdr	hdr;
		char		buf[CMSG_SPACE(sizeof(int) * CHAN_SCM_MAX)];
	} cbuf;
	struct msghdr		 mh;
	struct cmsghdr		*cm;
	struct chan_mark	*m;
	size_t			 len, limit, total;
	ssize_t			 n;
	int			 i, nv;

	*more = 0;
	while ((len = evbuffer_get_length(c->out)) > 0) {
		m = c->marks;
		limit = len;
		if (m != NULL && m->pos == c->sent) {
			/* fds ride on the chunk's first byte; no byte past
			   the chunk joins them, so the reader can place them */
			if (m->len < limit)
				limit = m->len;
		} else {
			/* plain bytes up to the next fd chunk */
			if (m != NULL && m->pos - c->sent < limit)
				limit = (size_t)(m->pos - c->sent);
			m = NULL;
		}

		nv = evbuffer_peek(c->out, (ev_ssize_t)limit, NULL, ev,
		    CHAN_IOV);
		if (nv > CHAN_IOV)
			nv = CHAN_IOV;
		total = 0;
		for (i = 0; i < nv && total < limit; i++) {
			iov[i].iov_base = ev[i].iov_base;
			iov[i].iov_len = ev[i].iov_len;
			if (iov[i].iov_len > limit - total)
				iov[i].iov_len = limit - total;
			total += iov[i].iov_len;
		}
		memset(&mh, 0, sizeof mh);
		mh.msg_iov = iov;
		mh.msg_iovlen = i;
		if (m != NULL) {
			mh.msg_control = cbuf.buf;
			mh.msg_controllen = CMSG_SPACE(sizeof(int) * m->nfds);
			memset(cbuf.buf, 0, mh.msg_controllen);
			cm = CMSG_FIRSTHDR(&mh);
			cm->cmsg_level = SOL_SOCKET;
			cm->cmsg_type = SCM_RIGHTS;
			cm->cmsg_len = CMSG_LEN(sizeof(int) * m->nfds);
			memcpy(CMSG_DATA(cm), m->fds, sizeof(int) * m->nfds);
		}
		n = sendmsg(c->fd, &mh, MSG_NOSIGNAL|MSG_DONTWAIT);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				*more = 1;
				return (0);
			}
			return (-1);
		}
		evbuffer_drain(c->out, (size_t)n);
		c->sent += (uint64_t)n;
		if (m != NULL) {
			/* the fds went with the first byte: the rest of the
			   chunk is plain bytes */
			c->marks = m->next;
			if (c->marks == NULL)
				c->marks_tail = &c->marks;
			chan_close_fds(m->fds, m->nfds);
			free(m);
		}
		if ((size_t)n < total) {
			*more = 1;	/* the socket buffer is full */
			return (0);
		}
	}
	return (0);
}

static void
chan_write_cb(evutil_socket_t fd, short what, void *arg)
{
	struct chan	*c = arg;
	int		 more;

	c->wsched = 0;
	if (c->closed)
		return;
	if (chan_flush(c, &more) == -1) {
		chan_fail(c, strerror(errno));
		return;
	}
	if (more) {
		c->wsched = 1;
		event_add(c->wev, NULL);
		return;
	}
	if (c->held) {
		c->held = 0;
		if (c->ops->drained != NULL)
			c->ops->drained(c, c->arg);
		if (c->closed)		/* freed, or closed, in there */
			return;
	}
	if (c->shutting && evbuffer_get_length(c->out) == 0)
		chan_fail(c, "shut down");
}

int
chan_send(struct chan *c, const void *buf, size_t len, const int *fds,
    size_t nfds)
{
	struct chan_mark	*m;
	size_t			 i;

	if (c->closed || c->shutting)
		return (-1);
	if (nfds > CHAN_SCM_MAX || (nfds > 0 && len == 0)) {
		errno = EINVAL;
		return (-1);
	}
	if (nfds > 0) {
		if ((m = malloc(sizeof *m + nfds * sizeof(int))) == NULL)
			return (-1);
		m->next = NULL;
		m->pos = c->queued;
		m->len = len;
		m->nfds = 0;
		for (i = 0; i < nfds; i++) {
			if ((m->fds[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 0)) ==
			    -1) {
				chan_close_fds(m->fds, i);
				free(m);
				return (-1);
			}
			m->nfds++;
		}
		if (evbuffer_add(c->out, buf, len) != 0) {
			chan_close_fds(m->fds, m->nfds);
			free(m);
			return (-1);
		}
		*c->marks_tail = m;
		c->marks_tail = &m->next;
	} else if (len > 0 && evbuffer_add(c->out, buf, len) != 0)
		return (-1);
	c->queued += len;
	if (len > 0) {
		c->held = 1;
		chan_kick(c);
	}
	return (0);
}

static void
chan_free_dump(const void *data, size_t len, void *arg)
{
	free((void *)data);
}

int
chan_send_json(struct chan *c, const json_t *j)
{
	struct evbuffer_iovec	 v;
	char			*buf;
	size_t			 n;

	if (c->closed || c->shutting)
		return (-1);
	/* Serialise straight into the output buffer; big messages take
	   the malloc'd route, still without a copy. */
	if (evbuffer_reserve_space(c->out, CHAN_JSON_GUESS, &v, 1) == 1 &&
	    v.iov_len > 2) {
		n = json_dumpb(j, v.iov_base, v.iov_len - 2, JSON_COMPACT);
		if (n > 0 && n <= v.iov_len - 2) {
			memcpy((char *)v.iov_base + n, "\r\n", 2);
			v.iov_len = n + 2;
			if (evbuffer_commit_space(c->out, &v, 1) != 0)
				return (-1);
			c->queued += n + 2;
			c->held = 1;
			chan_kick(c);
			return (0);
		}
	}
	if ((buf = qmp_dump(j, &n)) == NULL)
		return (-1);
	if (evbuffer_add_reference(c->out, buf, n, chan_free_dump, NULL) != 0) {
		free(buf);
		return (-1);
	}
	c->queued += n;
	c->held = 1;
	chan_kick(c);
	return (0);
}

size_t
chan_outq(const struct chan *c)
{
	return (evbuffer_get_length(c->out));
}

int
chan_fd(const struct chan *c)
{
	return (c->fd);
}

void
chan_shutdown(struct chan *c)
{
	if (c->closed || c->shutting)
		return;
	c->shutting = 1;
	if (c->lev != NULL)
		event_del(c->lev);
	event_del(c->rev);
	/* the write callback reports closed once the queue is empty */
	if (!c->wsched) {
		c->wsched = 1;
		event_active(c->wev, EV_WRITE, 1);
	}
}

/* ---- upgrade ---- */

static json_t *
chan_hex(const char *p, size_t n)
{
	static const char	 digits[] = "0123456789abcdef";
	json_t			*j;
	char			*s;
	size_t			 i;

	if ((s = malloc(2 * n + 1)) == NULL)
		return (NULL);
	for (i = 0; i < n; i++) {
		s[2 * i] = digits[(unsigned char)p[i] >> 4];
		s[2 * i + 1] = digits[(unsigned char)p[i] & 0xf];
	}
	s[2 * n] = '\0';
	j = json_stringn_nocheck(s, 2 * n);
	free(s);
	return (j);
}

static int
chan_unhex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return (c - '0');
	if (c >= 'a' && c <= 'f')
		return (c - 'a' + 10);
	return (-1);
}

/* 0 with *out (malloc'd, NULL if empty) and *n; -1 if not hex or past
   max bytes. */
static int
chan_unhex(const json_t *j, size_t max, char **out, size_t *n)
{
	const char	*s;
	size_t		 len, i;
	int		 hi, lo;

	*out = NULL;
	*n = 0;
	if (j == NULL)
		return (0);
	if ((s = json_string_value(j)) == NULL)
		return (-1);
	len = json_string_length(j);
	if (len % 2 != 0 || len / 2 > max)
		return (-1);
	if (len == 0)
		return (0);
	if ((*out = malloc(len / 2)) == NULL)
		return (-1);
	for (i = 0; i < len / 2; i++) {
		if ((hi = chan_unhex_digit(s[2 * i])) == -1 ||
		    (lo = chan_unhex_digit(s[2 * i + 1])) == -1) {
			free(*out);
			*out = NULL;
			return (-1);
		}
		(*out)[i] = (char)(hi << 4 | lo);
	}
	*n = len / 2;
	return (0);
}

json_t *
chan_export(struct chan *c, json_t *fds)
{
	json_t		*j, *rf;
	const char	*p;
	size_t		 pend, i;
	unsigned char	*out;
	uint64_t	 start;

	if (c->dead || c->closed || c->marks != NULL)
		return (NULL);
	pend = chan_rd_pending(c);
	p = c->grammar ? c->js.buf + c->js.off : c->fr.buf + c->fr.off;
	start = c->rtotal - pend;
	if ((out = evbuffer_pullup(c->out, -1)) == NULL &&
	    evbuffer_get_length(c->out) > 0)
		return (NULL);
	j = json_pack("{s:i,s:o,s:o,s:[]}", "fd", c->fd, "in",
	    chan_hex(pend > 0 ? p : "", pend), "out",
	    chan_hex((const char *)(out != NULL ? out : (unsigned char *)""),
	    evbuffer_get_length(c->out)), "rfds");
	if (j == NULL || json_array_append_new(fds, json_integer(c->fd)) != 0)
		goto fail;
	rf = json_object_get(j, "rfds");
	for (i = 0; i < c->nrfds; i++) {
		if (json_array_append_new(rf, json_pack("[i,I]", c->rfds[i],
		    (json_int_t)(c->rtags[i] >= start ? c->rtags[i] - start :
		    0))) != 0 || json_array_append_new(fds,
		    json_integer(c->rfds[i])) != 0)
			goto fail;
	}
	return (j);
fail:
	json_decref(j);
	return (NULL);
}

int
chan_export_fd(const json_t *st)
{
	json_t	*fd = json_object_get(st, "fd");

	if (!json_is_integer(fd) || json_integer_value(fd) < 0 ||
	    json_integer_value(fd) > INT32_MAX)
		return (-1);
	return ((int)json_integer_value(fd));
}

struct chan *
chan_import(struct event_base *base, const json_t *st, size_t out_max,
    const struct chan_opts *opts, const struct chan_ops *ops, void *arg,
    struct qmp_error *err)
{
	struct chan	*c = NULL;
	char		*in = NULL, *out = NULL;
	size_t		 nin, nout, i, max_msg;
	json_t		*rf, *e;
	int		 fd, rc;

	max_msg = opts != NULL && opts->max_msg > 0 ? opts->max_msg :
	    QMP_FRAMER_DEFAULT_MAX;
	rf = json_object_get(st, "rfds");
	if ((fd = chan_export_fd(st)) == -1 ||
	    chan_unhex(json_object_get(st, "in"), 2 * max_msg + CHAN_READ_MAX,
	    &in, &nin) == -1 ||
	    chan_unhex(json_object_get(st, "out"), out_max, &out,
	    &nout) == -1 || (rf != NULL && (!json_is_array(rf) ||
	    json_array_size(rf) > CHAN_SCM_MAX))) {
		qmp_error_set(err, QMP_CLS_GENERIC, "channel state malformed");
		rf = NULL;
		goto fail;
	}
	json_array_foreach(rf, i, e) {
		if (!json_is_integer(json_array_get(e, 0)) ||
		    json_integer_value(json_array_get(e, 0)) < 0 ||
		    json_integer_value(json_array_get(e, 0)) > INT32_MAX ||
		    !json_is_integer(json_array_get(e, 1)) ||
		    json_integer_value(json_array_get(e, 1)) < 0 ||
		    (size_t)json_integer_value(json_array_get(e, 1)) > nin) {
			qmp_error_set(err, QMP_CLS_GENERIC,
			    "channel state: bad received fd");
			/* a list we cannot read names nothing to close */
			rf = NULL;
			goto fail;
		}
	}
	if ((c = chan_new(base, fd, opts, ops, arg)) == NULL) {
		qmp_error_set(err, QMP_CLS_GENERIC, "out of memory");
		goto fail;
	}
	if (nin > 0) {
		rc = c->grammar ? qmp_jstream_feed(&c->js, in, nin) :
		    qmp_framer_feed(&c->fr, in, nin);
		if (rc == -1) {
			c->fd = -1;	/* the caller keeps fd */
			chan_free(c);
			c = NULL;
			qmp_error_set(err, QMP_CLS_GENERIC,
			    "channel state: input does not fit");
			goto fail;
		}
		c->rtotal = nin;
		/* what waits is handed out from the loop */
		event_active(c->rev, EV_READ, 1);
	}
	json_array_foreach(rf, i, e) {
		if (c->nrfds == c->max_fds) {
			close((int)json_integer_value(json_array_get(e, 0)));
			continue;
		}
		c->rfds[c->nrfds] = (int)json_integer_value(json_array_get(e,
		    0));
		c->rtags[c->nrfds++] = (uint64_t)json_integer_value(
		    json_array_get(e, 1));
	}
	rf = NULL;
	if (nout > 0 && chan_send(c, out, nout, NULL, 0) == -1) {
		c->fd = -1;
		chan_free(c);
		c = NULL;
		qmp_error_set(err, QMP_CLS_GENERIC, "out of memory");
		goto fail;
	}
	free(in);
	free(out);
	return (c);
fail:
	json_array_foreach(rf, i, e)
		if (json_is_integer(json_array_get(e, 0)))
			close((int)json_integer_value(json_array_get(e, 0)));
	free(in);
	free(out);
	return (NULL);
}
