/*
 * Test helpers: child processes, fd accounting, a guarded event loop.
 */
#include "config.h"

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tests/unit/testutil.h"

extern char **environ;

/* Room for TU_MAX_FDS fds in one control message. */
union tu_cmsg {
	struct cmsghdr	h;
	char		b[CMSG_SPACE(sizeof(int) * TU_MAX_FDS)];
};

static void
tu_msg_init(struct msghdr *mh, struct iovec *iov, void *buf, size_t len,
    union tu_cmsg *cb, size_t ctllen)
{
	memset(mh, 0, sizeof *mh);
	memset(cb, 0, sizeof *cb);
	iov->iov_base = buf;
	iov->iov_len = len;
	mh->msg_iov = iov;
	mh->msg_iovlen = 1;
	mh->msg_control = cb->b;
	mh->msg_controllen = ctllen;
}

ssize_t
tu_sendfds(int sock, const char *buf, const int *fds, size_t nfds)
{
	union tu_cmsg	 cb;
	struct msghdr	 mh;
	struct iovec	 iov;
	struct cmsghdr	*cm;

	if (nfds > TU_MAX_FDS) {
		errno = EINVAL;
		return (-1);
	}
	tu_msg_init(&mh, &iov, (void *)buf, strlen(buf), &cb,
	    CMSG_SPACE(sizeof(int) * nfds));
	cm = CMSG_FIRSTHDR(&mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
	memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
	return (sendmsg(sock, &mh, 0));
}

ssize_t
tu_recvfds(int sock, void *buf, size_t len, int *fds, size_t *nfds,
    size_t maxfds)
{
	union tu_cmsg	 cb;
	struct msghdr	 mh;
	struct iovec	 iov;
	struct cmsghdr	*cm;
	ssize_t		 n;
	size_t		 i, k;
	int		 fd;

	tu_msg_init(&mh, &iov, buf, len, &cb, sizeof cb.b);
	n = recvmsg(sock, &mh, MSG_DONTWAIT|MSG_CMSG_CLOEXEC);
	if (n == -1)
		return (-1);
	for (cm = CMSG_FIRSTHDR(&mh); cm != NULL; cm = CMSG_NXTHDR(&mh, cm)) {
		k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (i = 0; i < k; i++) {
			memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof fd);
			if (*nfds < maxfds)
				fds[*nfds] = fd;
			else
				close(fd);
			(*nfds)++;
		}
	}
	return (n);
}

struct chan *
tu_chan_pair(struct event_base *base, const struct chan_opts *opts,
    const struct chan_ops *ops, void *arg, int *peer)
{
	struct chan	*c;
	int		 sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM|SOCK_CLOEXEC, 0, sv) == -1)
		return (NULL);
	if ((c = chan_new(base, sv[0], opts, ops, arg)) == NULL) {
		close(sv[0]);
		close(sv[1]);
		return (NULL);
	}
	*peer = sv[1];
	return (c);
}

unsigned long long
tu_now_ms(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((unsigned long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

const char *
tu_build_path(const char *name)
{
	static char	 buf[PATH_MAX + 64];
	char		 self[PATH_MAX], *slash;
	const char	*dir;
	ssize_t		 n;
	int		 i;

	if ((dir = getenv("QB_BUILDDIR")) != NULL && *dir != '\0') {
		snprintf(buf, sizeof buf, "%.*s/%s", PATH_MAX - 1, dir, name);
		return (buf);
	}
	/* BUILDDIR/tests/unit/test_x: up three components */
	if ((n = readlink("/proc/self/exe", self, sizeof self - 1)) <= 0)
		return (name);
	self[n] = '\0';
	for (i = 0; i < 3; i++) {
		if ((slash = strrchr(self, '/')) == NULL)
			return (name);
		*slash = '\0';
	}
	snprintf(buf, sizeof buf, "%s/%s", self[0] != '\0' ? self : "/", name);
	return (buf);
}

int
tu_fd_count(void)
{
	DIR		*d;
	struct dirent	*de;
	int		 n = 0;

	if ((d = opendir("/proc/self/fd")) == NULL)
		return (-1);
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return (n - 1);	/* the directory's own fd */
}

/* Is there a listening unix socket bound to path? */
static int
tu_listening(const char *path)
{
	FILE		*f;
	char		 line[512], p[256];
	unsigned long	 flags;
	int		 found = 0;

	if ((f = fopen("/proc/net/unix", "re")) == NULL)
		return (0);
	while (fgets(line, sizeof line, f) != NULL) {
		/* Num RefCount Protocol Flags Type St Inode Path */
		if (sscanf(line, "%*s %*s %*s %lx %*s %*s %*s %255s", &flags,
		    p) != 2)
			continue;
		if ((flags & 0x10000) && strcmp(p, path) == 0) {
			found = 1;
			break;
		}
	}
	fclose(f);
	return (found);
}

int
tu_wait_listening(const char *path, pid_t pid)
{
	unsigned long long	 end = tu_now_ms() + TU_DEADLINE_MS;
	struct timespec		 ts = { 0, 5 * 1000 * 1000 };
	int			 status;

	/* Polling the kernel's table rather than connecting: a probe
	   connection would be the server's first client and eat 'once'
	   fault directives. */
	while (!tu_listening(path)) {
		if (pid > 0 && waitpid(pid, &status, WNOHANG) == pid) {
			fprintf(stderr, "server for %s exited early (%d)\n",
			    path, status);
			return (-1);
		}
		if (tu_now_ms() > end) {
			fprintf(stderr, "nothing listens on %s\n", path);
			return (-1);
		}
		nanosleep(&ts, NULL);
	}
	return (0);
}

pid_t
tu_spawn_server(const char *const argv[], const char *sock)
{
	pid_t	pid;
	int	rc;

	rc = posix_spawn(&pid, argv[0], NULL, NULL, (char *const *)argv,
	    environ);
	if (rc != 0) {
		fprintf(stderr, "spawn %s: %s\n", argv[0], strerror(rc));
		return (-1);
	}
	if (tu_wait_listening(sock, pid) == -1) {
		kill(pid, SIGKILL);
		while (waitpid(pid, NULL, 0) == -1 && errno == EINTR)
			;
		return (-1);
	}
	return (pid);
}

int
tu_reap(pid_t pid, int ms)
{
	unsigned long long	end = tu_now_ms() + (unsigned long long)ms;
	struct timespec		ts = { 0, 5 * 1000 * 1000 };
	int			status;

	for (;;) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			return (status);
		if (tu_now_ms() > end)
			break;
		nanosleep(&ts, NULL);
	}
	kill(pid, SIGKILL);
	while (waitpid(pid, NULL, 0) == -1 && errno == EINTR)
		;
	return (-1);
}

static int
tu_fake_spawn(struct tu_fake *f)
{
	const char	*argv[10];
	const char	*bin = tu_build_path("fake-qemu");
	int		 argc = 0;

	argv[argc++] = bin;
	argv[argc++] = "--socket";
	argv[argc++] = f->sock;
	if (f->faults[0] != '\0') {
		argv[argc++] = "--faults";
		argv[argc++] = f->faults;
	}
	if (f->machine[0] != '\0') {
		argv[argc++] = "--machine";
		argv[argc++] = f->machine;
	}
	argv[argc] = NULL;
	unlink(f->sock);
	f->pid = tu_spawn_server(argv, f->sock);
	return (f->pid == -1 ? -1 : 0);
}

int
tu_fake_start(struct tu_fake *f, const char *faults)
{
	FILE	*fp;

	memset(f, 0, sizeof *f);
	f->pid = -1;
	snprintf(f->dir, sizeof f->dir, "/tmp/qb-test.XXXXXX");
	if (mkdtemp(f->dir) == NULL) {
		perror("mkdtemp");
		return (-1);
	}
	snprintf(f->sock, sizeof f->sock, "%s/qmp.sock", f->dir);
	if (faults != NULL) {
		snprintf(f->faults, sizeof f->faults, "%s/faults", f->dir);
		if ((fp = fopen(f->faults, "we")) == NULL) {
			perror(f->faults);
			return (-1);
		}
		fputs(faults, fp);
		fclose(fp);
	}
	return (tu_fake_spawn(f));
}

void
tu_fake_kill(struct tu_fake *f)
{
	if (f->pid <= 0)
		return;
	kill(f->pid, SIGKILL);
	while (waitpid(f->pid, NULL, 0) == -1 && errno == EINTR)
		;
	f->pid = -1;
}

int
tu_fake_restart(struct tu_fake *f)
{
	tu_fake_kill(f);
	return (tu_fake_spawn(f));
}

void
tu_fake_stop(struct tu_fake *f)
{
	if (f->pid > 0) {
		kill(f->pid, SIGTERM);
		tu_reap(f->pid, TU_DEADLINE_MS);
		f->pid = -1;
	}
	if (f->faults[0] != '\0')
		unlink(f->faults);
	if (f->sock[0] != '\0')
		unlink(f->sock);
	if (f->dir[0] != '\0')
		rmdir(f->dir);
}

static void
tu_tick(evutil_socket_t fd, short what, void *arg)
{
	/* only there to make EVLOOP_ONCE come back to check the deadline */
}

void
tu_guard_init(struct tu_guard *g, struct event_base *base, int ms)
{
	struct timeval	tv = { 0, 50 * 1000 };

	g->base = base;
	g->end = tu_now_ms() + (unsigned long long)ms;
	g->tick = event_new(base, -1, EV_PERSIST, tu_tick, NULL);
	event_add(g->tick, &tv);
}

int
tu_guard_step(struct tu_guard *g)
{
	if (tu_now_ms() > g->end)
		return (-1);
	event_base_loop(g->base, EVLOOP_ONCE);
	return (0);
}

void
tu_guard_done(struct tu_guard *g)
{
	event_free(g->tick);
}

void
tu_spin(struct event_base *base, int rounds)
{
	while (rounds-- > 0)
		event_base_loop(base, EVLOOP_NONBLOCK);
}

/* ---- monitor recorder ---- */

static int	tu_in_execute;
static int	tu_seq;

static void
tu_on_state(struct mon *m, enum mon_state st, const char *why, void *arg)
{
	struct tu_mon	*tm = arg;

	if (tm->nstates < TU_MAX_STATES) {
		tm->states[tm->nstates] = st;
		snprintf(tm->whys[tm->nstates], sizeof tm->whys[0], "%s",
		    why != NULL ? why : "");
		tm->nstates++;
	}
	tm->count[st]++;
}

static void
tu_on_event(struct mon *m, json_t *ev, void *arg)
{
	struct tu_mon	*tm = arg;

	json_array_append(tm->events, ev);
	if (tm->free_on_event) {
		mon_free(tm->m);
		tm->m = NULL;
	}
}

const struct mon_ops tu_mon_ops = {
	.state = tu_on_state,
	.event = tu_on_event,
};

void
tu_mon_open(struct tu_mon *tm, struct event_base *base, const char *path,
    const struct mon_opts *opts)
{
	memset(tm, 0, sizeof *tm);
	tm->base = base;
	tm->events = json_array();
	tm->m = mon_new(base, path, opts, &tu_mon_ops, tm);
}

void
tu_mon_close(struct tu_mon *tm)
{
	if (tm->m != NULL)
		mon_free(tm->m);
	tm->m = NULL;
	json_decref(tm->events);
	tm->events = NULL;
}

const char *
tu_last_why(const struct tu_mon *tm, enum mon_state st)
{
	int	i;

	for (i = tm->nstates - 1; i >= 0; i--)
		if (tm->states[i] == st)
			return (tm->whys[i]);
	return ("");
}

static void
tu_on_reply(struct mon *m, json_t *ret, const struct qmp_error *err,
    void *arg)
{
	struct tu_reply	*r = arg;

	r->ncalls++;
	if (tu_in_execute)
		r->inside = 1;
	r->order = ++tu_seq;
	if (err != NULL) {
		r->failed = 1;
		r->err = *err;
	} else {
		json_decref(r->ret);
		r->ret = json_incref(ret);
	}
	if (r->free_mon && r->tm != NULL && r->tm->m != NULL) {
		r->tm->m = NULL;
		mon_free(m);
	}
}

void
tu_exec(struct tu_mon *tm, struct tu_reply *r, const char *cmd, json_t *args,
    const int *fds, size_t nfds)
{
	r->tm = tm;
	tu_in_execute = 1;
	mon_execute(tm->m, cmd, args, fds, nfds, tu_on_reply, r);
	tu_in_execute = 0;
}

void
tu_reply_clear(struct tu_reply *r)
{
	json_decref(r->ret);
	memset(r, 0, sizeof *r);
}
