/*
 * The helper's wire format and the daemon's client. See priv.h.
 *
 * The client is synchronous: the helper's operations are an open or an
 * ioctl on this host, a local round trip, so blocking the loop for one is
 * cheaper than the state a callback would need, and keeps the callers'
 * own (synchronous) contracts. A sequence number pairs replies with
 * requests, so a reply that comes after its caller gave up is dropped,
 * fds and all, instead of answering the next request.
 */
#include "config.h"

#include <sys/socket.h>
#include <sys/uio.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "priv/priv.h"

static int		 priv_fd = -1;
static void		(*priv_lost)(const char *);
static uint32_t		 priv_seq;
static unsigned long	 priv_ncalls;
/* Monitors connect from the loop, but nothing forbids a worker: one
   request on the wire at a time. */
static pthread_mutex_t	 priv_mtx = PTHREAD_MUTEX_INITIALIZER;

static void
priv_close_fds(const struct msghdr *m)
{
	struct cmsghdr	*c;
	size_t		 i, n;
	int		 fd;

	for (c = CMSG_FIRSTHDR(m); c != NULL; c = CMSG_NXTHDR((struct msghdr *)m,
	    c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		n = (c->cmsg_len - CMSG_LEN(0)) / sizeof (int);
		for (i = 0; i < n; i++) {
			memcpy(&fd, CMSG_DATA(c) + i * sizeof (int), sizeof fd);
			close(fd);
		}
	}
}

static void
priv_refuse(struct priv_rep *rep, int status, const char *why)
{
	rep->status = status;
	snprintf(rep->desc, sizeof rep->desc, "%s", why);
}

int
priv_req_recv(int fd, struct priv_req *req, struct priv_rep *rep)
{
	union {
		struct cmsghdr	hdr;
		char		buf[CMSG_SPACE(PRIV_MAX_FDS * sizeof (int))];
	}		 cm;
	struct msghdr	 m;
	struct iovec	 iov;
	ssize_t		 n;
	size_t		 len;

	memset(rep, 0, sizeof *rep);
	rep->magic = PRIV_MAGIC;
	memset(&m, 0, sizeof m);
	iov.iov_base = req;
	iov.iov_len = sizeof *req;
	m.msg_iov = &iov;
	m.msg_iovlen = 1;
	m.msg_control = cm.buf;
	m.msg_controllen = sizeof cm.buf;
	do
		n = recvmsg(fd, &m, MSG_CMSG_CLOEXEC);
	while (n == -1 && errno == EINTR);
	if (n == 0) {
		errno = 0;
		return (-1);
	}
	if (n == -1)		/* errno says why; status 0: not a request */
		return (-1);
	/* No request carries fds: whatever came is closed unused. */
	if (m.msg_controllen > 0) {
		priv_close_fds(&m);
		priv_refuse(rep, EBADMSG, "request carries fds");
		return (-1);
	}
	if ((m.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0 ||
	    (size_t)n != sizeof *req) {
		priv_refuse(rep, EBADMSG, "request of the wrong size");
		return (-1);
	}
	rep->seq = req->seq;
	rep->op = req->op;
	if (req->magic != PRIV_MAGIC) {
		priv_refuse(rep, EBADMSG, "bad magic");
		return (-1);
	}
	if (req->op < PRIV_TAP || req->op > PRIV_OP_LAST) {
		priv_refuse(rep, EOPNOTSUPP, "unknown operation");
		return (-1);
	}
	if (req->pad != 0) {
		priv_refuse(rep, EBADMSG, "padding not zero");
		return (-1);
	}
	len = strnlen(req->name, sizeof req->name);
	if (len == 0 || len == sizeof req->name) {
		priv_refuse(rep, EBADMSG, "name empty or not terminated");
		return (-1);
	}
	for (; len < sizeof req->name; len++) {
		if (req->name[len] != '\0') {
			priv_refuse(rep, EBADMSG, "bytes after the name");
			return (-1);
		}
	}
	return (0);
}

int
priv_rep_send(int fd, const struct priv_rep *rep, const int *fds, size_t n)
{
	union {
		struct cmsghdr	hdr;
		char		buf[CMSG_SPACE(PRIV_MAX_FDS * sizeof (int))];
	}		 cm;
	struct msghdr	 m;
	struct iovec	 iov;
	struct cmsghdr	*c;
	ssize_t		 r;

	if (n > PRIV_MAX_FDS) {
		errno = EINVAL;
		return (-1);
	}
	memset(&m, 0, sizeof m);
	iov.iov_base = (void *)rep;
	iov.iov_len = sizeof *rep;
	m.msg_iov = &iov;
	m.msg_iovlen = 1;
	if (n > 0) {
		memset(&cm, 0, sizeof cm);
		m.msg_control = cm.buf;
		m.msg_controllen = CMSG_SPACE(n * sizeof (int));
		c = CMSG_FIRSTHDR(&m);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(n * sizeof (int));
		memcpy(CMSG_DATA(c), fds, n * sizeof (int));
	}
	do
		r = sendmsg(fd, &m, MSG_NOSIGNAL);
	while (r == -1 && errno == EINTR);
	return (r == (ssize_t)sizeof *rep ? 0 : -1);
}

/* --- client ------------------------------------------------------------ */

void
priv_set_fd(int fd, void (*lost)(const char *))
{
	if (priv_fd != -1)
		close(priv_fd);
	priv_fd = fd;
	priv_lost = lost;
}

bool
priv_active(void)
{
	return (priv_fd != -1);
}

int
priv_get_fd(void)
{
	return (priv_fd);
}

unsigned long
priv_calls(void)
{
	return (priv_ncalls);
}

static void
priv_gone(const char *why, struct qmp_error *err)
{
	void	(*lost)(const char *) = priv_lost;

	qmp_error_set(err, QMP_CLS_GENERIC, "privileged helper: %s", why);
	close(priv_fd);
	priv_fd = -1;
	priv_lost = NULL;
	if (lost != NULL)
		lost(why);
}

/* Receives the reply to seq: -1 when the helper is gone (err set). */
static int
priv_recv_rep(uint32_t seq, struct priv_rep *rep, int *fds, size_t *nfds,
    struct qmp_error *err)
{
	union {
		struct cmsghdr	hdr;
		char		buf[CMSG_SPACE(PRIV_MAX_FDS * sizeof (int))];
	}		 cm;
	struct msghdr	 m;
	struct iovec	 iov;
	struct cmsghdr	*c;
	struct pollfd	 pfd;
	ssize_t		 n;
	size_t		 got;
	int		 r;

	for (;;) {
		pfd.fd = priv_fd;
		pfd.events = POLLIN;
		do
			r = poll(&pfd, 1, PRIV_TIMEOUT_MS);
		while (r == -1 && errno == EINTR);
		if (r == 0) {
			priv_gone("no reply in time", err);
			return (-1);
		}
		memset(&m, 0, sizeof m);
		iov.iov_base = rep;
		iov.iov_len = sizeof *rep;
		m.msg_iov = &iov;
		m.msg_iovlen = 1;
		m.msg_control = cm.buf;
		m.msg_controllen = sizeof cm.buf;
		do
			n = recvmsg(priv_fd, &m, MSG_CMSG_CLOEXEC);
		while (n == -1 && errno == EINTR);
		if (n <= 0) {
			priv_gone(n == 0 ? "gone" : strerror(errno), err);
			return (-1);
		}
		if ((size_t)n != sizeof *rep || rep->magic != PRIV_MAGIC ||
		    (m.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0) {
			priv_close_fds(&m);
			priv_gone("malformed reply", err);
			return (-1);
		}
		if (rep->seq != seq) {		/* a late one: drop it */
			priv_close_fds(&m);
			continue;
		}
		got = 0;
		for (c = CMSG_FIRSTHDR(&m); c != NULL; c = CMSG_NXTHDR(&m, c)) {
			if (c->cmsg_level != SOL_SOCKET ||
			    c->cmsg_type != SCM_RIGHTS)
				continue;
			n = (ssize_t)((c->cmsg_len - CMSG_LEN(0)) / sizeof (int));
			if (got + (size_t)n > PRIV_MAX_FDS)
				break;
			memcpy(fds + got, CMSG_DATA(c), (size_t)n * sizeof (int));
			got += (size_t)n;
		}
		*nfds = got;
		rep->desc[sizeof rep->desc - 1] = '\0';
		return (0);
	}
}

/* One round trip. 0 with exactly want fds, or -1 with err (and errno
   the helper's status) and no fd left open. */
static int
priv_call_out(uint32_t op, const char *name, uint32_t arg, uint32_t flags,
    int *fds, size_t want, char *out, size_t outlen, struct qmp_error *err)
{
	struct priv_req	 req;
	struct priv_rep	 rep;
	size_t		 nfds = 0, i;
	ssize_t		 n;
	int		 ret = -1, status = EIO, none[PRIV_MAX_FDS];

	if (fds == NULL)	/* fds that come anyway are closed there */
		fds = none;
	memset(&req, 0, sizeof req);
	if (strlen(name) >= sizeof req.name) {
		qmp_error_set(err, QMP_CLS_GENERIC, "name too long");
		errno = ENAMETOOLONG;
		return (-1);
	}
	pthread_mutex_lock(&priv_mtx);
	if (priv_fd == -1) {
		qmp_error_set(err, QMP_CLS_GENERIC, "privileged helper gone");
		goto out;
	}
	req.magic = PRIV_MAGIC;
	req.seq = ++priv_seq;
	req.op = op;
	req.arg = arg;
	req.flags = flags;
	memcpy(req.name, name, strlen(name));
	priv_ncalls++;
	do
		n = send(priv_fd, &req, sizeof req, MSG_NOSIGNAL);
	while (n == -1 && errno == EINTR);
	if (n != (ssize_t)sizeof req) {
		priv_gone(n == -1 ? strerror(errno) : "short send", err);
		goto out;
	}
	if (priv_recv_rep(req.seq, &rep, fds, &nfds, err) == -1)
		goto out;
	if (rep.status != 0 || nfds != want) {
		for (i = 0; i < nfds; i++)
			close(fds[i]);
		status = rep.status != 0 ? rep.status : EPROTO;
		qmp_error_set(err, QMP_CLS_GENERIC, "%s", rep.status != 0 ?
		    rep.desc : "privileged helper: wrong number of fds");
		goto out;
	}
	if (out != NULL)
		snprintf(out, outlen, "%s", rep.desc);
	ret = 0;
	status = 0;
out:
	pthread_mutex_unlock(&priv_mtx);
	errno = status;
	return (ret);
}

static int
priv_call(uint32_t op, const char *name, uint32_t arg, uint32_t flags,
    int *fds, size_t want, struct qmp_error *err)
{
	return (priv_call_out(op, name, arg, flags, fds, want, NULL, 0, err));
}

int
priv_tap_open(const char *ifname, size_t nqueues, bool vhost, int *fds,
    struct qmp_error *err)
{
	if (nqueues == 0 || nqueues > PRIV_MAX_FDS / 2) {
		qmp_error_set(err, QMP_CLS_GENERIC, "queues must be 1..%d",
		    PRIV_MAX_FDS / 2);
		return (-1);
	}
	return (priv_call(PRIV_TAP, ifname, (uint32_t)nqueues,
	    vhost ? PRIV_F_VHOST : 0, fds, vhost ? 2 * nqueues : nqueues,
	    err));
}

int
priv_image_open(const char *path, bool readonly, int *fdp,
    struct qmp_error *err)
{
	return (priv_call(PRIV_IMAGE, path, readonly ? PRIV_RO : PRIV_RW, 0,
	    fdp, 1, err));
}

int
priv_connect(const char *path, int *fdp, struct qmp_error *err)
{
	return (priv_call(PRIV_CONNECT, path, 0, 0, fdp, 1, err));
}

/* "/dev/loopN" to N; -1 for anything else. */
static long
priv_loop_num(const char *dev, struct qmp_error *err)
{
	char	*end;
	long	 n;

	if (strncmp(dev, "/dev/loop", 9) != 0 || dev[9] < '0' ||
	    dev[9] > '9') {
		qmp_error_set(err, QMP_CLS_GENERIC, "%.64s is no loop device",
		    dev);
		return (-1);
	}
	errno = 0;
	n = strtol(dev + 9, &end, 10);
	if (errno != 0 || *end != '\0' || n < 0 || n >= (long)PRIV_LOOP_MAX) {
		qmp_error_set(err, QMP_CLS_GENERIC, "%.64s is no loop device",
		    dev);
		return (-1);
	}
	return (n);
}

int
priv_loop_find(char *dev, size_t len, struct qmp_error *err)
{
	char	out[PRIV_DESC_MAX];

	if (priv_call_out(PRIV_LOOP_FIND, PRIV_LOOP_CONTROL, 0, 0, NULL, 0,
	    out, sizeof out, err) == -1)
		return (-1);
	/* The helper's answer is checked like losetup's output was. */
	if (priv_loop_num(out, err) == -1 || strlen(out) >= len) {
		qmp_error_set(err, QMP_CLS_GENERIC, "privileged helper: "
		    "unexpected device '%.64s'", out);
		return (-1);
	}
	snprintf(dev, len, "%s", out);
	return (0);
}

int
priv_loop_attach(const char *dev, const char *path, bool readonly,
    struct qmp_error *err)
{
	long	n;

	if ((n = priv_loop_num(dev, err)) == -1)
		return (-1);
	return (priv_call(PRIV_LOOP_ATTACH, path, (uint32_t)n,
	    readonly ? PRIV_F_RO : 0, NULL, 0, err));
}

int
priv_loop_detach(const char *dev, const char *path, struct qmp_error *err)
{
	long	n;

	if ((n = priv_loop_num(dev, err)) == -1)
		return (-1);
	return (priv_call(PRIV_LOOP_DETACH, path, (uint32_t)n, 0, NULL, 0,
	    err));
}

const char *const priv_nbd_formats[] = { "raw", "raw", "qcow2", NULL };

int
priv_nbd_format(const char *format)
{
	int	i;

	if (format == NULL)
		return (0);
	for (i = 1; priv_nbd_formats[i] != NULL; i++)
		if (strcmp(format, priv_nbd_formats[i]) == 0)
			return (i);
	return (-1);
}

int
priv_nbd_connect(int index, const char *path, bool readonly,
    const char *format, struct qmp_error *err)
{
	int	f = priv_nbd_format(format);

	if (f == -1 || index < 0 || (unsigned)index >= PRIV_NBD_MAX) {
		qmp_error_set(err, QMP_CLS_GENERIC, "bad nbd device or format");
		return (-1);
	}
	return (priv_call(PRIV_NBD_CONNECT, path, (uint32_t)index,
	    (readonly ? PRIV_F_RO : 0) | PRIV_NBD_FMT(f), NULL, 0, err));
}

int
priv_nbd_disconnect(int index, char *flush_err, size_t len,
    struct qmp_error *err)
{
	if (index < 0 || (unsigned)index >= PRIV_NBD_MAX) {
		qmp_error_set(err, QMP_CLS_GENERIC, "bad nbd device");
		return (-1);
	}
	return (priv_call_out(PRIV_NBD_DISCONNECT, PRIV_NBD_NAME,
	    (uint32_t)index, 0, NULL, 0, flush_err, len, err));
}
