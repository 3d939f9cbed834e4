/*
 * Child processes reaped through pidfds on the loop (or, where there is
 * no pidfd_open, through a waitpid poll on a timer).
 */
#include "config.h"

#include <sys/queue.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker/core/proc.h"

extern char **environ;

struct proc_buf {
	int		 fd;
	struct event	*ev;
	char		*data;
	size_t		 len;
};

struct proc {
	pid_t			 pid;
	int			 pidfd;
	struct event		*pid_ev;
	struct event		*deadline_ev;
	struct event		*kill_ev;
	struct proc_buf		 out, err;
	bool			 timed_out;
	bool			 killed;
	proc_done_fn		*done;
	void			*arg;
	LIST_ENTRY(proc)	 entry;
};

/* Where pidfd_open is missing (ENOSYS: kernels before 5.3, and valgrind,
   which the daemon tests run under, up to at least 3.19) a child is
   polled with waitpid(WNOHANG) this often instead: still no SIGCHLD
   handler to share, at the cost of a late reap. */
#define PROC_POLL_MS	20

static struct event_base	*proc_base;
static LIST_HEAD(, proc)	 proc_all = LIST_HEAD_INITIALIZER(proc_all);
static size_t			 proc_n;
static bool			 proc_stopping;

static void	proc_reap(struct proc *, int status);

void
proc_init(struct event_base *base)
{
	proc_base = base;
	proc_stopping = false;
}

static int
proc_pidfd_open(pid_t pid)
{
	return ((int)syscall(SYS_pidfd_open, pid, 0));
}

/* Reads what is there; returns 0 at EOF or error, 1 if more may come. */
static int
proc_buf_read(struct proc_buf *b)
{
	char	tmp[4096];
	ssize_t	n;
	size_t	room;

	for (;;) {
		n = read(b->fd, tmp, sizeof tmp);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno == EAGAIN)
			return (1);
		if (n <= 0)
			return (0);
		room = PROC_OUT_MAX - b->len;
		if ((size_t)n < room)
			room = n;
		memcpy(b->data + b->len, tmp, room);
		b->len += room;
		b->data[b->len] = '\0';
	}
}

static void
proc_buf_close(struct proc_buf *b)
{
	if (b->ev != NULL) {
		event_free(b->ev);
		b->ev = NULL;
	}
	if (b->fd != -1) {
		close(b->fd);
		b->fd = -1;
	}
}

static void
proc_buf_cb(evutil_socket_t fd, short events, void *arg)
{
	struct proc_buf	*b = arg;

	if (proc_buf_read(b) == 0)
		proc_buf_close(b);
}

static void
proc_pid_cb(evutil_socket_t fd, short events, void *arg)
{
	struct proc	*p = arg;
	int		 status;
	pid_t		 r;

	r = waitpid(p->pid, &status, WNOHANG);
	if (r == 0 || (r == -1 && errno == EINTR))
		return;	/* spurious: keep watching */
	/* -1: someone else reaped it; proc_reap reports that as a failure. */
	proc_reap(p, r == -1 ? -1 : status);
}

static void
proc_signal(struct proc *p, int sig)
{
	/* The whole group: tools that fork (qemu-nbd -c) go too. */
	if (kill(-p->pid, sig) == -1)
		kill(p->pid, sig);
}

static void
proc_kill_cb(evutil_socket_t fd, short events, void *arg)
{
	proc_signal(arg, SIGKILL);
}

static void
proc_term(struct proc *p)
{
	struct timeval	tv = { PROC_KILL_GRACE_MS / 1000,
			    (PROC_KILL_GRACE_MS % 1000) * 1000 };

	if (p->killed)
		return;
	p->killed = true;
	proc_signal(p, SIGTERM);
	if (p->kill_ev == NULL)
		p->kill_ev = evtimer_new(proc_base, proc_kill_cb, p);
	if (p->kill_ev != NULL)
		evtimer_add(p->kill_ev, &tv);
	else
		proc_signal(p, SIGKILL);
}

static void
proc_deadline_cb(evutil_socket_t fd, short events, void *arg)
{
	struct proc	*p = arg;

	p->timed_out = true;
	proc_term(p);
}

void
proc_kill(struct proc *p)
{
	proc_term(p);
}

pid_t
proc_pid(const struct proc *p)
{
	return (p->pid);
}

size_t
proc_count(void)
{
	return (proc_n);
}

static void
proc_free(struct proc *p)
{
	proc_buf_close(&p->out);
	proc_buf_close(&p->err);
	if (p->pid_ev != NULL)
		event_free(p->pid_ev);
	if (p->deadline_ev != NULL)
		event_free(p->deadline_ev);
	if (p->kill_ev != NULL)
		event_free(p->kill_ev);
	if (p->pidfd != -1)
		close(p->pidfd);
	free(p->out.data);
	free(p->err.data);
	free(p);
}

/* status -1: the child vanished without us seeing its status. */
static void
proc_reap(struct proc *p, int status)
{
	struct proc_result	r;
	int			i;

	LIST_REMOVE(p, entry);
	proc_n--;

	/* What the child wrote before exiting is still in the pipes. A
	   daemonised grandchild may keep them open: read what is there,
	   do not wait for EOF. */
	for (i = 0; i < 2; i++) {
		struct proc_buf *b = i == 0 ? &p->out : &p->err;
		if (b->fd != -1)
			proc_buf_read(b);
	}

	memset(&r, 0, sizeof r);
	if (status == -1) {
		r.exited = true;
		r.code = 255;
	} else if (WIFEXITED(status)) {
		r.exited = true;
		r.code = WEXITSTATUS(status);
	} else if (WIFSIGNALED(status))
		r.sig = WTERMSIG(status);
	r.timed_out = p->timed_out;
	r.killed = p->killed;
	r.out = p->out.data;
	r.outlen = p->out.len;
	r.err = p->err.data;
	r.errlen = p->err.len;

	p->done(p, &r, p->arg);
	proc_free(p);
}

static int
proc_buf_init(struct proc *p, struct proc_buf *b, int fd)
{
	b->fd = fd;
	if ((b->data = calloc(1, PROC_OUT_MAX + 1)) == NULL)
		return (-1);
	b->ev = event_new(proc_base, fd, EV_READ | EV_PERSIST, proc_buf_cb, b);
	if (b->ev == NULL)
		return (-1);
	return (event_add(b->ev, NULL));
}

struct proc *
proc_spawn(char *const argv[], int timeout_ms, proc_done_fn *done,
    void *arg, struct qmp_error *err)
{
	return (proc_spawn_fd(argv, -1, timeout_ms, done, arg, err));
}

struct proc *
proc_spawn_fd(char *const argv[], int fd, int timeout_ms, proc_done_fn *done,
    void *arg, struct qmp_error *err)
{
	posix_spawn_file_actions_t	 fa;
	posix_spawnattr_t		 at;
	sigset_t			 set;
	struct proc			*p;
	int				 outp[2] = { -1, -1 }, errp[2] = { -1, -1 };
	int				 error, fd3 = -1;
	struct timeval			 tv;

	if (proc_base == NULL || proc_stopping) {
		qmp_error_set(err, QMP_CLS_GENERIC, "broker is shutting down");
		return (NULL);
	}
	if ((p = calloc(1, sizeof *p)) == NULL) {
		qmp_error_set(err, QMP_CLS_GENERIC, "out of memory");
		return (NULL);
	}
	p->pidfd = p->out.fd = p->err.fd = -1;
	if (pipe2(outp, O_CLOEXEC | O_NONBLOCK) == -1 ||
	    pipe2(errp, O_CLOEXEC | O_NONBLOCK) == -1) {
		qmp_error_set(err, QMP_CLS_GENERIC, "pipe: %s", strerror(errno));
		goto fail;
	}
	/* The child's ends must block like any ordinary stdout. */
	fcntl(outp[1], F_SETFL, 0);
	fcntl(errp[1], F_SETFL, 0);
	/* Above the child's 0-3, so no dup2 before it clobbers it, and
	   never dup2(3, 3), which would leave close-on-exec set. */
	if (fd != -1 && (fd3 = fcntl(fd, F_DUPFD_CLOEXEC, 4)) == -1) {
		qmp_error_set(err, QMP_CLS_GENERIC, "fcntl: %s",
		    strerror(errno));
		goto fail;
	}

	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, outp[1], 1);
	posix_spawn_file_actions_adddup2(&fa, errp[1], 2);
	if (fd3 != -1)
		posix_spawn_file_actions_adddup2(&fa, fd3, 3);
	posix_spawn_file_actions_addclosefrom_np(&fa, fd3 != -1 ? 4 : 3);
	posix_spawnattr_init(&at);
	sigemptyset(&set);
	posix_spawnattr_setsigmask(&at, &set);
	sigfillset(&set);
	posix_spawnattr_setsigdefault(&at, &set);
	posix_spawnattr_setpgroup(&at, 0);
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK |
	    POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
	error = posix_spawnp(&p->pid, argv[0], &fa, &at, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	close(outp[1]);
	close(errp[1]);
	outp[1] = errp[1] = -1;
	if (fd3 != -1) {
		close(fd3);
		fd3 = -1;
	}
	if (error != 0) {
		qmp_error_set(err, QMP_CLS_GENERIC, "cannot run %s: %s",
		    argv[0], strerror(error));
		goto fail;
	}

	if ((p->pidfd = proc_pidfd_open(p->pid)) == -1 && errno != ENOSYS) {
		/* Cannot watch it: do not leave it running unseen. */
		error = errno;
		kill(p->pid, SIGKILL);
		waitpid(p->pid, NULL, 0);
		qmp_error_set(err, QMP_CLS_GENERIC, "pidfd_open: %s",
		    strerror(error));
		goto fail;
	}
	if (p->pidfd != -1)
		fcntl(p->pidfd, F_SETFD, FD_CLOEXEC);
	p->done = done;
	p->arg = arg;
	LIST_INSERT_HEAD(&proc_all, p, entry);
	proc_n++;

	/* The read ends belong to the proc from here, set up or not. */
	proc_buf_init(p, &p->out, outp[0]);
	proc_buf_init(p, &p->err, errp[0]);
	outp[0] = errp[0] = -1;
	if (p->pidfd != -1) {
		p->pid_ev = event_new(proc_base, p->pidfd, EV_READ |
		    EV_PERSIST, proc_pid_cb, p);
		if (p->pid_ev != NULL)
			event_add(p->pid_ev, NULL);
	} else {
		tv.tv_sec = 0;
		tv.tv_usec = PROC_POLL_MS * 1000;
		p->pid_ev = event_new(proc_base, -1, EV_PERSIST, proc_pid_cb,
		    p);
		if (p->pid_ev != NULL)
			event_add(p->pid_ev, &tv);
	}
	if (timeout_ms > 0) {
		tv.tv_sec = timeout_ms / 1000;
		tv.tv_usec = (timeout_ms % 1000) * 1000;
		p->deadline_ev = evtimer_new(proc_base, proc_deadline_cb, p);
		if (p->deadline_ev != NULL)
			evtimer_add(p->deadline_ev, &tv);
	}
	if (p->pid_ev == NULL || p->out.data == NULL || p->err.data == NULL ||
	    (timeout_ms > 0 && p->deadline_ev == NULL)) {
		/* Half set up: stop it and report through done as usual,
		   so the caller has one path. */
		p->killed = true;
		proc_signal(p, SIGKILL);
		if (p->pid_ev == NULL) {
			int status;
			waitpid(p->pid, &status, 0);
			proc_reap(p, status);
			qmp_error_set(err, QMP_CLS_GENERIC, "out of memory");
			return (NULL);
		}
	}
	return (p);

fail:
	if (fd3 != -1)
		close(fd3);
	if (outp[0] != -1)
		close(outp[0]);
	if (outp[1] != -1)
		close(outp[1]);
	if (errp[0] != -1)
		close(errp[0]);
	if (errp[1] != -1)
		close(errp[1]);
	proc_free(p);
	return (NULL);
}

/* Reaps every child that has exited; the rest stay. */
static void
proc_reap_exited(void)
{
	struct proc	*p, *next;
	int		 status;

	for (p = LIST_FIRST(&proc_all); p != NULL; p = next) {
		next = LIST_NEXT(p, entry);
		if (waitpid(p->pid, &status, WNOHANG) == p->pid) {
			proc_reap(p, status);
			/* done may have ended others' jobs, never reaped
			   children: restart, the list is still sound. */
			next = LIST_FIRST(&proc_all);
		}
	}
}

/* Waits up to ms for children to exit, reaping them as they do; with
   unasked, only while some child we did not ask to stop still runs. */
static void
proc_wait_all(int ms, bool unasked)
{
	struct pollfd	 pfd[64];
	struct proc	*p;
	nfds_t		 n;
	int		 waited;
	bool		 any;

	for (waited = 0; waited < ms; waited += 50) {
		proc_reap_exited();
		n = 0;
		any = false;
		LIST_FOREACH(p, &proc_all, entry) {
			if (unasked && p->killed)
				continue;
			any = true;
			/* without a pidfd, the poll's timeout paces it */
			if (p->pidfd != -1 && n < sizeof pfd / sizeof pfd[0]) {
				pfd[n].fd = p->pidfd;
				pfd[n].events = POLLIN;
				n++;
			}
		}
		if (!any)
			return;
		poll(pfd, n, 50);
	}
	proc_reap_exited();
}

/*
 * Children that were not asked to stop (a detach, a cleanup undoing an
 * attach) get the grace period to finish their work; then every child
 * gets TERM, then KILL, and all are reaped before this returns.
 */
void
proc_shutdown(void)
{
	struct proc	*p;
	int		 status;

	proc_stopping = true;
	proc_wait_all(PROC_KILL_GRACE_MS, true);
	LIST_FOREACH(p, &proc_all, entry) {
		p->killed = true;
		proc_signal(p, SIGTERM);
	}
	proc_wait_all(PROC_KILL_GRACE_MS, false);
	while ((p = LIST_FIRST(&proc_all)) != NULL) {
		proc_signal(p, SIGKILL);
		if (waitpid(p->pid, &status, 0) != p->pid)
			status = -1;
		proc_reap(p, status);
	}
}

void
proc_describe(const struct proc_result *r, char *buf, size_t len)
{
	const char	*s, *e;

	if (r->timed_out) {
		snprintf(buf, len, "timed out and was killed");
		return;
	}
	if (r->errlen > 0) {
		for (s = r->err; *s == '\n' || *s == ' '; s++)
			;
		if ((e = strchr(s, '\n')) == NULL)
			e = s + strlen(s);
		if (e > s) {
			snprintf(buf, len, "%.*s", (int)(e - s), s);
			return;
		}
	}
	if (r->exited)
		snprintf(buf, len, "exit status %d", r->code);
	else
		snprintf(buf, len, "killed by signal %d", r->sig);
}

int
proc_start_time(pid_t pid, unsigned long long *start)
{
	char			 path[64], buf[1024], *p, *end;
	unsigned long long	 v;
	ssize_t			 n;
	int			 fd, i;

	if (pid <= 0)
		return (-1);
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return (-1);
	n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return (-1);
	buf[n] = '\0';
	/* "PID (COMM) S ...": COMM may hold spaces and ')', so the fields
	   are counted from its last ')'; field 3 (S) follows it. */
	if ((p = strrchr(buf, ')')) == NULL)
		return (-1);
	p++;
	for (i = 3; i <= 22; i++) {
		while (*p == ' ')
			p++;
		if (*p == '\0')
			return (-1);
		if (i == 22)
			break;
		while (*p != ' ' && *p != '\0')
			p++;
	}
	errno = 0;
	v = strtoull(p, &end, 10);
	if (errno != 0 || end == p || (*end != ' ' && *end != '\0' &&
	    *end != '\n'))
		return (-1);
	*start = v;
	return (0);
}
