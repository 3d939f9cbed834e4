/*
 * The privileged parent and the unprivileged child. See privsep.h.
 *
 * The parent is a poll() loop over three things: the socketpair (the
 * child's requests), a signalfd (TERM/INT/HUP to forward, CHLD to reap)
 * and the child's readiness pipe. No libevent, no threads, no JSON: the
 * less the root side runs, the less there is to attack.
 */
#include "config.h"

#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>

#include <linux/capability.h>
#include <linux/loop.h>
#include <linux/major.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "broker/core/conf.h"
#include "broker/core/log.h"
#include "broker/core/loop.h"
#include "broker/privsep.h"
#include "disk/imgpath.h"
#include "disk/loop.h"
#include "disk/nbd.h"
#include "hv/tap.h"
#include "priv/priv.h"

#define PRIVSEP_DEFAULT_USER	"qmpbroker"
#define PRIVSEP_MAX_GROUPS	64
#define PRIVSEP_CRASHES		5	/* this many crashes ... */
#define PRIVSEP_CRASH_WINDOW_S	60	/* ... this close: give up */
#define PRIVSEP_UPG_ENV		"QMPBROKER_PRIV_FD"	/* fd:dumpable */

static int	privsep_child;

int
privsep_is_child(void)
{
	return (privsep_child);
}

pid_t
privsep_main_pid(void)
{
	return (privsep_child ? getppid() : getpid());
}

/* --- the operations (root side) ---------------------------------------- */

static void
privsep_err(struct priv_rep *rep, int status, const struct qmp_error *e)
{
	rep->status = status != 0 ? status : EPERM;
	snprintf(rep->desc, sizeof rep->desc, "%s", e->desc);
}

static size_t
privsep_tap(const struct priv_req *req, struct priv_rep *rep, int *fds)
{
	struct qmp_error	e;
	char			name[32];
	size_t			i, n = req->arg;
	bool			vhost = (req->flags & PRIV_F_VHOST) != 0;

	if ((req->flags & ~PRIV_F_VHOST) != 0 || n == 0 ||
	    n > TAP_MAX_QUEUES) {
		qmp_error_set(&e, QMP_CLS_GENERIC, "bad queues or flags");
		privsep_err(rep, EINVAL, &e);
		return (0);
	}
	if (tap_open(req->name, n, vhost, fds, &e) != 0) {
		privsep_err(rep, EPERM, &e);
		return (0);
	}
	/* Checked again on what was opened: each queue is a tap, of that
	   name; each vhost fd is /dev/vhost-net. */
	for (i = 0; i < (vhost ? 2 * n : n); i++) {
		if (i < n ? tap_check_fd(fds[i], n, name, sizeof name, &e) :
		    tap_check_vhost_fd(fds[i], &e))
			break;
		if (i < n && strcmp(name, req->name) != 0) {
			qmp_error_set(&e, QMP_CLS_GENERIC, "opened %s, not %s",
			    name, req->name);
			break;
		}
	}
	if (i < (vhost ? 2 * n : n)) {
		for (i = 0; i < (vhost ? 2 * n : n); i++)
			close(fds[i]);
		privsep_err(rep, EPERM, &e);
		return (0);
	}
	return (vhost ? 2 * n : n);
}

static size_t
privsep_image(const struct priv_req *req, struct priv_rep *rep, int *fds)
{
	struct qmp_error	e;

	if (req->flags != 0 || (req->arg != PRIV_RO && req->arg != PRIV_RW)) {
		qmp_error_set(&e, QMP_CLS_GENERIC, "bad mode or flags");
		privsep_err(rep, EINVAL, &e);
		return (0);
	}
	fds[0] = img_open_nofollow(conf.image_roots, conf.n_image_roots,
	    req->name, req->arg == PRIV_RW ? O_RDWR : O_RDONLY, &e);
	if (fds[0] == -1) {
		privsep_err(rep, EPERM, &e);
		return (0);
	}
	return (1);
}

static size_t
privsep_connect(const struct priv_req *req, struct priv_rep *rep, int *fds)
{
	struct qmp_error	 e;
	struct sockaddr_un	 sun;
	struct stat		 st;
	char			*roots[2];
	size_t			 n = 0;
	int			 pfd, s;

	if (req->flags != 0 || req->arg != 0) {
		qmp_error_set(&e, QMP_CLS_GENERIC, "bad flags");
		privsep_err(rep, EINVAL, &e);
		return (0);
	}
	if (conf.vm_dir != NULL)
		roots[n++] = conf.vm_dir;
	if (conf.monitor_root != NULL)
		roots[n++] = conf.monitor_root;
	/* The same no-follow walk as images: the socket's path, and every
	   directory on it, are what the roots hold now, not what a link
	   swapped in makes them. O_PATH: a socket cannot be opened. */
	pfd = img_open_nofollow(roots, n, req->name, O_PATH, &e);
	if (pfd == -1) {
		privsep_err(rep, EPERM, &e);
		return (0);
	}
	if (fstat(pfd, &st) != 0 || !S_ISSOCK(st.st_mode)) {
		close(pfd);
		qmp_error_set(&e, QMP_CLS_GENERIC, "%s is not a socket",
		    req->name);
		privsep_err(rep, ENOTSOCK, &e);
		return (0);
	}
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path, sizeof sun.sun_path, "/proc/self/fd/%d", pfd);
	s = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s == -1 || connect(s, (struct sockaddr *)&sun, sizeof sun) == -1) {
		rep->status = errno;
		snprintf(rep->desc, sizeof rep->desc, "connect %.200s: %s",
		    req->name, strerror(errno));
		if (s != -1)
			close(s);
		close(pfd);
		return (0);
	}
	close(pfd);
	fds[0] = s;
	return (1);
}

/* --- loop devices: what losetup did, as fixed ioctls ------------------ */

static void
privsep_errno(struct priv_rep *rep, const char *what, unsigned n)
{
	rep->status = errno != 0 ? errno : EIO;
	snprintf(rep->desc, sizeof rep->desc, "%s /dev/loop%u: %s", what, n,
	    strerror(rep->status));
}

/* /dev/loopN, opened without following a link and proved a loop block
   device, or -1 with rep filled. */
static int
privsep_loop_dev(uint32_t n, struct priv_rep *rep)
{
	struct stat	st;
	char		path[32];
	int		fd;

	snprintf(path, sizeof path, "/dev/loop%u", n);
	if ((fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)) ==
	    -1) {
		privsep_errno(rep, "open", n);
		return (-1);
	}
	if (fstat(fd, &st) != 0 || !S_ISBLK(st.st_mode) ||
	    major(st.st_rdev) != LOOP_MAJOR) {
		close(fd);
		rep->status = ENOTBLK;
		snprintf(rep->desc, sizeof rep->desc, "%s is not a loop "
		    "device", path);
		return (-1);
	}
	return (fd);
}

static size_t
privsep_loop_find(const struct priv_req *req, struct priv_rep *rep)
{
	int	fd, n;

	if (req->flags != 0 || req->arg != 0 ||
	    strcmp(req->name, PRIV_LOOP_CONTROL) != 0) {
		rep->status = EINVAL;
		snprintf(rep->desc, sizeof rep->desc, "bad name, arg or flags");
		return (0);
	}
	if ((fd = open("/dev/loop-control", O_RDWR | O_CLOEXEC)) == -1 ||
	    (n = ioctl(fd, LOOP_CTL_GET_FREE)) < 0) {
		rep->status = errno;
		/* losetup's words: the daemon retries on them. */
		snprintf(rep->desc, sizeof rep->desc, "cannot find an unused "
		    "loop device: %s", strerror(errno));
		if (fd != -1)
			close(fd);
		return (0);
	}
	close(fd);
	if ((unsigned)n >= PRIV_LOOP_MAX) {
		rep->status = ERANGE;
		snprintf(rep->desc, sizeof rep->desc, "loop%d: too many", n);
		return (0);
	}
	snprintf(rep->desc, sizeof rep->desc, "/dev/loop%d", n);
	return (0);
}

/* path by the no-follow walk under an image root, in the mode asked: a
   regular file (or, blk, a block device), or -1 with rep filled. */
static int
privsep_image_file(const char *path, bool ro, bool blk, struct priv_rep *rep)
{
	struct qmp_error	e;
	struct stat		st;
	int			fd;

	fd = img_open_nofollow(conf.image_roots, conf.n_image_roots, path,
	    ro ? O_RDONLY : O_RDWR, &e);
	if (fd == -1) {
		privsep_err(rep, EPERM, &e);
		return (-1);
	}
	if (fstat(fd, &st) != 0 || !(S_ISREG(st.st_mode) || (blk &&
	    S_ISBLK(st.st_mode)))) {
		close(fd);
		qmp_error_set(&e, QMP_CLS_GENERIC, "%s is not a regular file%s",
		    path, blk ? " or block device" : "");
		privsep_err(rep, EPERM, &e);
		return (-1);
	}
	return (fd);
}

static size_t
privsep_loop_attach(const struct priv_req *req, struct priv_rep *rep)
{
	struct qmp_error	e;
	struct loop_config	lc;
	bool			ro = (req->flags & PRIV_F_RO) != 0;
	int			img, dev;

	if ((req->flags & ~PRIV_F_RO) != 0 || req->arg >= PRIV_LOOP_MAX) {
		qmp_error_set(&e, QMP_CLS_GENERIC, "bad device or flags");
		privsep_err(rep, EINVAL, &e);
		return (0);
	}
	/* Loop devices take files: not a block device of the host. */
	if ((img = privsep_image_file(req->name, ro, false, rep)) == -1)
		return (0);
	if ((dev = privsep_loop_dev(req->arg, rep)) == -1) {
		close(img);
		return (0);
	}
	memset(&lc, 0, sizeof lc);
	lc.fd = (uint32_t)img;
	lc.info.lo_flags = ro ? LO_FLAGS_READ_ONLY : 0;
	/* What LOOP_GET_STATUS64 shows (sysfs has the whole path). */
	snprintf((char *)lc.info.lo_file_name, sizeof lc.info.lo_file_name,
	    "%.*s", (int)sizeof lc.info.lo_file_name - 1, req->name);
	/* No autoclear: the device stays attached after these fds close,
	   until a detach, as losetup's did. One ioctl (5.8 and later), so
	   nothing is ever half configured. */
	if (ioctl(dev, LOOP_CONFIGURE, &lc) == -1)
		privsep_errno(rep, "attaching", req->arg);
	close(dev);
	close(img);
	return (0);
}

/* path lies under one of the (resolved) image roots. */
static bool
privsep_under_root(const char *path)
{
	char	r[PATH_MAX];
	size_t	i, n;

	for (i = 0; i < conf.n_image_roots; i++) {
		if (realpath(conf.image_roots[i], r) == NULL)
			continue;
		n = strlen(r);
		if (n == 1 || (strncmp(path, r, n) == 0 && path[n] == '/'))
			return (true);
	}
	return (false);
}

static size_t
privsep_loop_detach(const struct priv_req *req, struct priv_rep *rep)
{
	char	dev[32], backing[PATH_MAX];
	int	fd;

	if (req->flags != 0 || req->arg >= PRIV_LOOP_MAX ||
	    req->name[0] != '/' || !privsep_under_root(req->name)) {
		rep->status = EINVAL;
		snprintf(rep->desc, sizeof rep->desc, "bad device or flags, "
		    "or %.200s is not under an image root", req->name);
		return (0);
	}
	if ((fd = privsep_loop_dev(req->arg, rep)) == -1)
		return (0);
	/* What backs it, from the kernel: only a device of a file under a
	   root is let go, never one the host set up for itself. */
	snprintf(dev, sizeof dev, "/dev/loop%u", req->arg);
	if (loop_backing_file(LOOP_SYSFS, dev, backing, sizeof backing) != 0 ||
	    !loop_backing_is(backing, req->name)) {
		close(fd);
		rep->status = EPERM;
		snprintf(rep->desc, sizeof rep->desc, "%s is not attached to "
		    "%.200s", dev, req->name);
		return (0);
	}
	if (ioctl(fd, LOOP_CLR_FD) == -1)
		privsep_errno(rep, "detaching", req->arg);
	close(fd);
	return (0);
}

/* --- nbd devices: qemu-nbd run by the helper, with its own argv ------- */

/* Devices this helper ran qemu-nbd -c for and has not disconnected since:
   what PRIV_NBD_DISCONNECT may let go (with the sysfs check below for
   those of a helper before a restart). */
static bool	privsep_nbd_started[PRIV_NBD_MAX];

static const char *
privsep_qemu_nbd(void)
{
	return (conf.qemu_nbd_path != NULL ? conf.qemu_nbd_path :
	    NBD_QEMU_NBD);
}

/* DEVDIR/nbdN of the helper's own configuration into path, proved an nbd
   device: a block device of the nbd major, not followed through a link;
   in a configured device dir (a test's fake tree, root's configuration)
   a regular file stands for one. SYSFS/block/nbdN must exist. -1 with
   rep filled. */
static int
privsep_nbd_dev(uint32_t n, char *path, size_t len, struct priv_rep *rep)
{
	struct stat	st;
	char		sys[PATH_MAX];
	int		fd;
	bool		ok;

	snprintf(path, len, "%s/nbd%u", conf.nbd_dev_dir != NULL ?
	    conf.nbd_dev_dir : NBD_DEVDIR, n);
	snprintf(sys, sizeof sys, "%s/block/nbd%u", conf.nbd_sysfs != NULL ?
	    conf.nbd_sysfs : NBD_SYSFS, n);
	if (stat(sys, &st) != 0 || !S_ISDIR(st.st_mode)) {
		rep->status = ENODEV;
		snprintf(rep->desc, sizeof rep->desc, "nbd%u: no such nbd "
		    "device", n);
		return (-1);
	}
	if ((fd = open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC)) == -1) {
		rep->status = errno;
		snprintf(rep->desc, sizeof rep->desc, "%.200s: %s", path,
		    strerror(errno));
		return (-1);
	}
	ok = fstat(fd, &st) == 0 && ((S_ISBLK(st.st_mode) &&
	    major(st.st_rdev) == NBD_MAJOR) || (conf.nbd_dev_dir != NULL &&
	    S_ISREG(st.st_mode)));
	close(fd);
	if (!ok) {
		rep->status = ENOTBLK;
		snprintf(rep->desc, sizeof rep->desc, "%.200s is not an nbd "
		    "device", path);
		return (-1);
	}
	return (0);
}

/* SYSFS/block/nbdN/pid: the pid serving it, 0 when not connected. */
static long
privsep_nbd_pid(uint32_t n)
{
	char	path[PATH_MAX], buf[32];
	FILE	*f;
	long	 pid = 0;

	snprintf(path, sizeof path, "%s/block/nbd%u/pid", conf.nbd_sysfs !=
	    NULL ? conf.nbd_sysfs : NBD_SYSFS, n);
	if ((f = fopen(path, "re")) == NULL)
		return (0);
	if (fgets(buf, sizeof buf, f) != NULL)
		pid = strtol(buf, NULL, 10);
	fclose(f);
	return (pid > 0 ? pid : -1);
}

/* The process serving nbdN is a qemu-nbd (the configured one's name)
   with "-c DEV" and a /proc/self/fd/ image: one a helper started. */
static bool
privsep_nbd_helpers(long pid, const char *dev)
{
	char		 path[64], buf[8192], *a, *end;
	const char	*want = strrchr(privsep_qemu_nbd(), '/');
	ssize_t		 n;
	bool		 c = false, fd = false, first = true;
	int		 f;

	want = want != NULL ? want + 1 : privsep_qemu_nbd();
	snprintf(path, sizeof path, "/proc/%ld/cmdline", pid);
	if ((f = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return (false);
	n = read(f, buf, sizeof buf - 1);
	close(f);
	if (n <= 0)
		return (false);
	buf[n] = '\0';
	end = buf + n;
	for (a = buf; a < end; a += strlen(a) + 1) {
		if (first) {
			const char *b = strrchr(a, '/');
			if (strcmp(b != NULL ? b + 1 : a, want) != 0)
				return (false);
			first = false;
		} else if (strcmp(a, "-c") == 0 && a + strlen(a) + 1 < end)
			c = c || strcmp(a + strlen(a) + 1, dev) == 0;
		else if (strncmp(a, "/proc/self/fd/", 14) == 0)
			fd = true;
	}
	return (c && fd);
}

/* Runs argv (the helper's own) with keep as fd 3, stdin /dev/null,
   stdout and stderr to a pipe; waits PRIV_NBD_WAIT_MS at most, then
   kills it. rep: status 0, or EIO and the first line it wrote. */
static void
privsep_nbd_run(char *const argv[], int keep, struct priv_rep *rep)
{
	struct timespec	 t0, t;
	sigset_t	 none;
	char		 out[PRIV_DESC_MAX], *nl;
	size_t		 got = 0;
	ssize_t		 r;
	pid_t		 pid;
	int		 p[2], st = 0, nul;
	bool		 done = false, late = false;

	if (pipe2(p, O_CLOEXEC) == -1) {
		rep->status = errno;
		snprintf(rep->desc, sizeof rep->desc, "pipe: %s",
		    strerror(errno));
		return;
	}
	if ((pid = fork()) == -1) {
		rep->status = errno;
		snprintf(rep->desc, sizeof rep->desc, "fork: %s",
		    strerror(errno));
		close(p[0]);
		close(p[1]);
		return;
	}
	if (pid == 0) {
		/* The helper's signals are blocked (its signalfd). */
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		/* Dies with the helper: no qemu-nbd -c of a dead helper
		   acts on after it (its forked server is not affected). */
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) == -1 ||
		    getppid() == 1)
			_exit(126);
		nul = open("/dev/null", O_RDWR | O_CLOEXEC);
		if (nul == -1 || dup2(nul, 0) == -1 || dup2(p[1], 1) == -1 ||
		    dup2(p[1], 2) == -1)
			_exit(126);
		/* dup2 clears close-on-exec; keep is never 0..2 here. */
		if (keep != -1 && (keep == 3 ? fcntl(3, F_SETFD, 0) :
		    dup2(keep, 3)) == -1)
			_exit(126);
		execvp(argv[0], argv);
		dprintf(2, "%s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(p[1]);
	fcntl(p[0], F_SETFL, O_NONBLOCK);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (!done) {
		struct pollfd	pfd = { p[0], POLLIN, 0 };

		(void)poll(&pfd, 1, 20);
		while (got < sizeof out - 1 && (r = read(p[0], out + got,
		    sizeof out - 1 - got)) > 0)
			got += (size_t)r;
		if (waitpid(pid, &st, WNOHANG) == pid)
			break;
		clock_gettime(CLOCK_MONOTONIC, &t);
		if ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) /
		    1000000 >= PRIV_NBD_WAIT_MS) {
			kill(pid, SIGKILL);
			while (waitpid(pid, &st, 0) == -1 && errno == EINTR)
				;
			late = done = true;
		}
	}
	while (got < sizeof out - 1 && (r = read(p[0], out + got,
	    sizeof out - 1 - got)) > 0)
		got += (size_t)r;
	close(p[0]);
	out[got] = '\0';
	if ((nl = strchr(out, '\n')) != NULL)
		*nl = '\0';
	if (!late && WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return;
	rep->status = late ? ETIMEDOUT : EIO;
	if (late)
		snprintf(rep->desc, sizeof rep->desc, "%s timed out after %d "
		    "ms and was killed", argv[0], PRIV_NBD_WAIT_MS);
	else if (out[0] != '\0')
		snprintf(rep->desc, sizeof rep->desc, "%s", out);
	else if (WIFEXITED(st))
		snprintf(rep->desc, sizeof rep->desc, "exit status %d",
		    WEXITSTATUS(st));
	else
		snprintf(rep->desc, sizeof rep->desc, "killed by signal %d",
		    WTERMSIG(st));
}

#define PRIVSEP_NBD_QCOW2	"json:{\"driver\":\"qcow2\",\"backing\":null," \
	"\"file\":{\"driver\":\"file\",\"filename\":\"/proc/self/fd/3\"}}"

static bool
privsep_nbd_fmt_ok(uint32_t f)
{
	uint32_t	k;

	for (k = 0; priv_nbd_formats[k] != NULL; k++)
		if (k == f)
			return (true);
	return (false);
}

static size_t
privsep_nbd_connect(const struct priv_req *req, struct priv_rep *rep)
{
	struct qmp_error	 e;
	char			 dev[PATH_MAX], *argv[NBD_ARGV_MAX];
	uint32_t		 f = (req->flags & PRIV_NBD_FMT_MASK) >> 8;
	bool			 ro = (req->flags & PRIV_F_RO) != 0;
	int			 img, i = 0;

	if ((req->flags & ~(PRIV_F_RO | PRIV_NBD_FMT_MASK)) != 0 ||
	    req->arg >= PRIV_NBD_MAX || !privsep_nbd_fmt_ok(f)) {
		qmp_error_set(&e, QMP_CLS_GENERIC, "bad device, format or "
		    "flags");
		privsep_err(rep, EINVAL, &e);
		return (0);
	}
	if (privsep_nbd_dev(req->arg, dev, sizeof dev, rep) == -1)
		return (0);
	if (privsep_nbd_pid(req->arg) != 0) {
		rep->status = EBUSY;
		snprintf(rep->desc, sizeof rep->desc, "%.200s is connected "
		    "already", dev);
		return (0);
	}
	if ((img = privsep_image_file(req->name, ro, true, rep)) == -1)
		return (0);
	/* qemu-nbd opens the image the walk opened: fd 3, by its
	   /proc/self/fd name; nothing of the request reaches the argv but
	   numbers and a format of the fixed list. */
	argv[i++] = (char *)privsep_qemu_nbd();
	argv[i++] = "-c";
	argv[i++] = dev;
	if (ro)
		argv[i++] = "-r";
	/* raw is never read for what it names; qcow2's header may name a
	   backing file anywhere on the host, which a root qemu-nbd would
	   open: "backing": null (qemu-nbd's own syntax, not this protocol). */
	if (strcmp(priv_nbd_formats[f], "qcow2") == 0) {
		argv[i++] = "--";
		argv[i++] = PRIVSEP_NBD_QCOW2;
	} else {
		argv[i++] = "-f";
		argv[i++] = (char *)priv_nbd_formats[f];
		argv[i++] = "--";
		argv[i++] = "/proc/self/fd/3";
	}
	argv[i] = NULL;
	/* Whatever it does, a cleanup's disconnect may follow. */
	privsep_nbd_started[req->arg] = true;
	privsep_nbd_run(argv, img, rep);
	close(img);
	return (0);
}

static size_t
privsep_nbd_disconnect(const struct priv_req *req, struct priv_rep *rep)
{
	struct qmp_error	 e;
	char			 dev[PATH_MAX], *argv[NBD_ARGV_MAX];
	long			 pid;

	if (req->flags != 0 || req->arg >= PRIV_NBD_MAX ||
	    strcmp(req->name, PRIV_NBD_NAME) != 0) {
		rep->status = EINVAL;
		snprintf(rep->desc, sizeof rep->desc, "bad name, device or "
		    "flags");
		return (0);
	}
	if (privsep_nbd_dev(req->arg, dev, sizeof dev, rep) == -1)
		return (0);
	pid = privsep_nbd_pid(req->arg);
	if (!privsep_nbd_started[req->arg] && (pid <= 0 ||
	    !privsep_nbd_helpers(pid, dev))) {
		rep->status = EPERM;
		snprintf(rep->desc, sizeof rep->desc, "%.200s was not "
		    "connected by this helper", dev);
		return (0);
	}
	/* Flushed first, as unseparated; a failed flush (a device already
	   gone) does not stop the disconnect, and is said in desc. */
	if (nbd_flush(dev, &e) != 0)
		snprintf(rep->desc, sizeof rep->desc, "%s", e.desc);
	argv[0] = (char *)privsep_qemu_nbd();
	argv[1] = "-d";
	argv[2] = dev;
	argv[3] = NULL;
	privsep_nbd_run(argv, -1, rep);
	if (rep->status == 0)
		privsep_nbd_started[req->arg] = false;
	return (0);
}

static const char *const privsep_op_names[] = {
	NULL, "tap", "image", "connect", "loop-find", "loop-attach",
	"loop-detach", "nbd-connect", "nbd-disconnect",
};

/* One datagram: -1 on EOF (or a dead socket), else 0. */
static int
privsep_handle(int fd)
{
	struct priv_req	 req;
	struct priv_rep	 rep;
	int		 fds[PRIV_MAX_FDS];
	size_t		 n = 0, i;

	if (priv_req_recv(fd, &req, &rep) == -1) {
		if (rep.status == 0) {		/* EOF, or the socket failed */
			if (errno != 0)
				log_warn("privsep: recvmsg: %s",
				    strerror(errno));
			return (-1);
		}
		log_warn("privsep: refused a malformed request: %s", rep.desc);
		return (priv_rep_send(fd, &rep, NULL, 0) == -1 &&
		    errno == EPIPE ? -1 : 0);
	}
	switch (req.op) {
	case PRIV_TAP:
		n = privsep_tap(&req, &rep, fds);
		break;
	case PRIV_IMAGE:
		n = privsep_image(&req, &rep, fds);
		break;
	case PRIV_CONNECT:
		n = privsep_connect(&req, &rep, fds);
		break;
	case PRIV_LOOP_FIND:
		n = privsep_loop_find(&req, &rep);
		break;
	case PRIV_LOOP_ATTACH:
		n = privsep_loop_attach(&req, &rep);
		break;
	case PRIV_LOOP_DETACH:
		n = privsep_loop_detach(&req, &rep);
		break;
	case PRIV_NBD_CONNECT:
		n = privsep_nbd_connect(&req, &rep);
		break;
	case PRIV_NBD_DISCONNECT:
		n = privsep_nbd_disconnect(&req, &rep);
		break;
	}
	if (rep.status != 0)
		log_warn("privsep: %s %s refused: %s",
		    privsep_op_names[req.op], req.name, rep.desc);
	else
		log_debug("privsep: %s %s: %zu fds", privsep_op_names[req.op],
		    req.name, n);
	rep.nfds = (uint32_t)n;
	if (priv_rep_send(fd, &rep, fds, n) == -1)
		log_warn("privsep: reply: %s", strerror(errno));
	for (i = 0; i < n; i++)
		close(fds[i]);
	return (0);
}

void
privsep_serve(int fd)
{
	while (privsep_handle(fd) == 0)
		;
}

/* --- the child's side: dropping everything ----------------------------- */

struct privsep_user {
	char	name[64];
	uid_t	uid;
	gid_t	gid;
	gid_t	groups[PRIVSEP_MAX_GROUPS];
	int	ngroups;
};

static struct privsep_user	 pu;
static pid_t			 privsep_parent;

/* The syscalls the daemon makes (glibc, libevent, jansson, libvirt's
   client, libnats, libsystemd's journal and notify), and the children it
   starts (execve: job tools, and the exec-based upgrade of the broker
   binary itself). Anything else fails with EPERM; nothing here can raise
   privileges again, mount, trace, load modules or change namespaces. */
static const char *const privsep_syscalls[] = {
	"read", "write", "readv", "writev", "pread64", "pwrite64", "preadv",
	"pwritev", "preadv2", "pwritev2", "open", "openat", "openat2",
	"close", "close_range", "creat", "stat", "fstat", "lstat",
	"newfstatat", "statx", "statfs", "fstatfs", "lseek", "mmap", "munmap",
	"mprotect", "mremap", "madvise", "mincore", "msync", "brk",
	"rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigtimedwait",
	"rt_sigqueueinfo", "rt_tgsigqueueinfo", "rt_sigsuspend", "sigaltstack",
	"ioctl", "access", "faccessat", "faccessat2", "pipe", "pipe2", "select",
	"pselect6", "poll", "ppoll", "epoll_create", "epoll_create1",
	"epoll_ctl", "epoll_wait", "epoll_pwait", "epoll_pwait2", "dup", "dup2",
	"dup3", "socket", "socketpair", "connect", "accept", "accept4", "bind",
	"listen", "getsockname", "getpeername", "getsockopt", "setsockopt",
	"sendto", "recvfrom", "sendmsg", "recvmsg", "sendmmsg", "recvmmsg",
	"shutdown", "clone", "clone3", "fork", "vfork", "execve", "execveat",
	"exit", "exit_group", "wait4", "waitid", "kill", "tgkill", "tkill",
	"getpid", "gettid", "getppid", "getuid", "geteuid", "getgid",
	"getegid", "getgroups", "getresuid", "getresgid", "getpgid", "getpgrp",
	"getsid", "setpgid", "setsid", "uname", "fcntl", "flock", "fsync",
	"fdatasync", "ftruncate", "truncate", "fallocate", "fadvise64",
	"getdents", "getdents64", "getcwd", "chdir", "fchdir", "rename",
	"renameat", "renameat2", "mkdir", "mkdirat", "rmdir", "unlink",
	"unlinkat", "link", "linkat", "symlink", "symlinkat", "readlink",
	"readlinkat", "chmod", "fchmod", "fchmodat", "chown", "fchown",
	"fchownat", "lchown", "umask", "utimensat", "gettimeofday",
	"clock_gettime", "clock_getres", "clock_nanosleep", "nanosleep",
	"time", "getrlimit", "setrlimit", "prlimit64", "getrusage", "sysinfo",
	"times", "futex", "futex_waitv", "set_robust_list", "get_robust_list",
	"set_tid_address", "rseq", "sched_yield", "sched_getaffinity",
	"sched_getparam", "sched_getscheduler", "getpriority", "getrandom",
	"eventfd", "eventfd2", "timerfd_create", "timerfd_settime",
	"timerfd_gettime", "signalfd", "signalfd4", "inotify_init",
	"inotify_init1", "inotify_add_watch", "inotify_rm_watch", "pidfd_open",
	"pidfd_send_signal", "prctl", "arch_prctl", "membarrier", "capget",
	"memfd_create", "copy_file_range", "sendfile", "splice", "tee",
	"getitimer", "setitimer", "alarm", "pause", "restart_syscall",
	"mlock", "munlock", "name_to_handle_at", "sync_file_range",
};

/* LeakSanitizer stops the world with a ptrace-attaching thread at exit:
   a sanitizer build (tools/check's asan phase) gets ptrace and a dumpable
   daemon, nothing else does. */
#if defined(__SANITIZE_ADDRESS__)
#define PRIVSEP_SANITIZER	1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PRIVSEP_SANITIZER	1
#endif
#endif

static int
privsep_seccomp(struct qmp_error *err)
{
	scmp_filter_ctx	ctx;
	size_t		i;
	int		nr, r;

	if ((ctx = seccomp_init(SCMP_ACT_ERRNO(EPERM))) == NULL) {
		qmp_error_set(err, QMP_CLS_GENERIC, "seccomp_init failed");
		return (-1);
	}
	/* A binary tree, not a list, for kernels without the action cache
	   (5.11 and later allow these without running the filter). */
	(void)seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
	for (i = 0; i < sizeof privsep_syscalls / sizeof privsep_syscalls[0];
	    i++) {
		/* Names this architecture lacks (open on arm64...) skip. */
		if ((nr = seccomp_syscall_resolve_name(privsep_syscalls[i])) ==
		    __NR_SCMP_ERROR)
			continue;
		if ((r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0)) != 0) {
			qmp_error_set(err, QMP_CLS_GENERIC, "seccomp rule %s: %s",
			    privsep_syscalls[i], strerror(-r));
			seccomp_release(ctx);
			return (-1);
		}
	}
#ifdef PRIVSEP_SANITIZER
	if ((nr = seccomp_syscall_resolve_name("ptrace")) != __NR_SCMP_ERROR)
		seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
	prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
#endif
	if ((r = seccomp_load(ctx)) != 0) {
		qmp_error_set(err, QMP_CLS_GENERIC, "seccomp_load: %s",
		    strerror(-r));
		seccomp_release(ctx);
		return (-1);
	}
	seccomp_release(ctx);
	return (0);
}

static int
privsep_drop(struct qmp_error *err)
{
	struct __user_cap_header_struct	hdr;
	struct __user_cap_data_struct	data[2];
	int				cap;

	/* Every capability out of the bounding set while we may still
	   drop them (CAP_SETPCAP), so no exec can ever get one back. */
	for (cap = 0; prctl(PR_CAPBSET_READ, cap, 0, 0, 0) >= 0; cap++) {
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) == -1) {
			qmp_error_set(err, QMP_CLS_GENERIC, "PR_CAPBSET_DROP "
			    "%d: %s", cap, strerror(errno));
			return (-1);
		}
	}
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) == -1 &&
	    errno != EINVAL) {
		qmp_error_set(err, QMP_CLS_GENERIC, "ambient caps: %s",
		    strerror(errno));
		return (-1);
	}
	if (setgroups((size_t)pu.ngroups, pu.groups) == -1 ||
	    setresgid(pu.gid, pu.gid, pu.gid) == -1 ||
	    setresuid(pu.uid, pu.uid, pu.uid) == -1) {
		qmp_error_set(err, QMP_CLS_GENERIC, "cannot become %s: %s",
		    pu.name, strerror(errno));
		return (-1);
	}
	/* setuid cleared the effective and permitted sets; inheritable
	   survives it: zero it too. */
	memset(&hdr, 0, sizeof hdr);
	memset(data, 0, sizeof data);
	hdr.version = _LINUX_CAPABILITY_VERSION_3;
	if (syscall(SYS_capset, &hdr, data) == -1) {
		qmp_error_set(err, QMP_CLS_GENERIC, "capset: %s",
		    strerror(errno));
		return (-1);
	}
	if (setuid(0) != -1 || getuid() != pu.uid || geteuid() != pu.uid) {
		qmp_error_set(err, QMP_CLS_GENERIC, "privileges not dropped");
		return (-1);
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1) {
		qmp_error_set(err, QMP_CLS_GENERIC, "no_new_privs: %s",
		    strerror(errno));
		return (-1);
	}
	/* The credential change reset it: set after, then check that the
	   parent did not die before. */
	if (prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0) == -1 ||
	    getppid() != privsep_parent) {
		qmp_error_set(err, QMP_CLS_GENERIC, "privileged parent gone");
		return (-1);
	}
	return (privsep_seccomp(err));
}

static void
privsep_lost(const char *why)
{
	log_err("privileged helper lost (%s): stopping", why);
	kill(getpid(), SIGTERM);
}

/* --- an upgrade's exec in the child (privsep.h) ------------------------ */

int
privsep_upgrade_pass(int *fd)
{
	char	val[32];
	int	d;

	if (!privsep_child || (*fd = priv_get_fd()) == -1) {
		*fd = -1;
		return (0);
	}
	/* execve sets the dumpable flag again (the uids are all one now):
	   the new process puts back what this one had, so that no process
	   of the user can ptrace it or read its /proc files. */
	if ((d = prctl(PR_GET_DUMPABLE, 0, 0, 0, 0)) == -1)
		d = 0;
	snprintf(val, sizeof val, "%d:%d", *fd, d);
	return (setenv(PRIVSEP_UPG_ENV, val, 1));
}

void
privsep_upgrade_undo(void)
{
	unsetenv(PRIVSEP_UPG_ENV);
}

int
privsep_resume(int resuming, struct qmp_error *err)
{
	struct ucred	 uc;
	socklen_t	 len = sizeof uc, tlen = sizeof (int);
	const char	*s = getenv(PRIVSEP_UPG_ENV);
	char		 val[32], *end;
	long		 fd, d = 0;
	int		 fl, type = 0;

	if (s == NULL)
		return (0);
	snprintf(val, sizeof val, "%s", s);
	unsetenv(PRIVSEP_UPG_ENV);	/* no child of ours sees it */
	if (!resuming)
		return (0);
	errno = 0;
	fd = strtol(val, &end, 10);
	if (*end == ':')
		d = strtol(end + 1, &end, 10);
	/* Ours only if inherited (not close-on-exec), a seqpacket socket,
	   and its peer is root and our parent: the helper. */
	if (errno != 0 || *end != '\0' || fd < 3 || fd > INT32_MAX ||
	    (fl = fcntl((int)fd, F_GETFD)) == -1 || (fl & FD_CLOEXEC) ||
	    getsockopt((int)fd, SOL_SOCKET, SO_TYPE, &type, &tlen) == -1 ||
	    type != SOCK_SEQPACKET ||
	    getsockopt((int)fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) == -1 ||
	    uc.uid != 0 || uc.pid != getppid() || geteuid() == 0) {
		qmp_error_set(err, QMP_CLS_GENERIC, "upgrade: %s=%s is not "
		    "the socket to the privileged parent", PRIVSEP_UPG_ENV,
		    val);
		return (-1);
	}
	if (fcntl((int)fd, F_SETFD, fl | FD_CLOEXEC) == -1 ||
	    prctl(PR_SET_DUMPABLE, d != 0, 0, 0, 0) == -1) {
		qmp_error_set(err, QMP_CLS_GENERIC, "upgrade: %s",
		    strerror(errno));
		return (-1);
	}
	privsep_child = 1;
	privsep_parent = uc.pid;
	priv_set_fd((int)fd, privsep_lost);
	log_info("upgrade: still the unprivileged daemon (uid %u), the "
	    "helper's socket kept", (unsigned)geteuid());
	return (1);
}

/* --- the parent: resolve the user, own the dirs, supervise ------------- */

static int
privsep_user(struct qmp_error *err)
{
	struct passwd	*pw;
	const char	*name = conf.user;

	if (geteuid() != 0) {
		if (name != NULL && strcmp(name, "root") != 0) {
			qmp_error_set(err, QMP_CLS_GENERIC, "--user %s needs "
			    "the broker to start as root", name);
			return (-1);
		}
		return (0);
	}
	if (name != NULL && strcmp(name, "root") == 0)
		return (0);
	if ((pw = getpwnam(name != NULL ? name : PRIVSEP_DEFAULT_USER)) ==
	    NULL) {
		if (name != NULL) {
			qmp_error_set(err, QMP_CLS_GENERIC, "--user %s: no such "
			    "user", name);
			return (-1);
		}
		log_warn("running as root without privilege separation: "
		    "there is no user %s (create it, or pass --user root to "
		    "say this is meant)", PRIVSEP_DEFAULT_USER);
		return (0);
	}
	if (pw->pw_uid == 0) {
		qmp_error_set(err, QMP_CLS_GENERIC, "--user %s is uid 0",
		    pw->pw_name);
		return (-1);
	}
	snprintf(pu.name, sizeof pu.name, "%s", pw->pw_name);
	pu.uid = pw->pw_uid;
	pu.gid = pw->pw_gid;
	pu.ngroups = PRIVSEP_MAX_GROUPS;
	if (getgrouplist(pu.name, pu.gid, pu.groups, &pu.ngroups) == -1) {
		qmp_error_set(err, QMP_CLS_GENERIC, "%s is in more than %d "
		    "groups", pu.name, PRIVSEP_MAX_GROUPS);
		return (-1);
	}
	return (1);
}

static int
privsep_chown_one(const char *path, const struct stat *st, int flag,
    struct FTW *ftw)
{
	/* Not the pid file: it is the parent's word on who runs. */
	if (conf.pid_file != NULL && strcmp(path, conf.pid_file) == 0)
		return (0);
	if (st->st_uid != pu.uid && lchown(path, pu.uid, (gid_t)-1) == -1)
		log_warn("chown %s: %s", path, strerror(errno));
	return (0);
}

/* nbd devices are locked by the daemon (disk/nbd.h): the lock dir is the
   user's, made if missing, and the lock files an earlier root broker left
   in it. A dir anyone may write (a /run/lock of its own) is left as it
   is: never a shared dir's owner changed. */
static void
privsep_nbd_lockdir(void)
{
	const char	*dir = conf.nbd_lock_dir != NULL ? conf.nbd_lock_dir :
			    NBD_LOCKDIR;
	struct dirent	*de;
	struct stat	 st;
	char		 path[PATH_MAX];
	DIR		*d;
	size_t		 n;

	if (mkdir(dir, 0700) == -1 && errno != EEXIST)
		log_warn("nbd lock dir %s: %s", dir, strerror(errno));
	if (lstat(dir, &st) != 0 || !S_ISDIR(st.st_mode) ||
	    (st.st_mode & S_IWOTH) != 0)
		return;
	if (st.st_uid != pu.uid && lchown(dir, pu.uid, (gid_t)-1) == -1)
		log_warn("chown %s: %s", dir, strerror(errno));
	if ((d = opendir(dir)) == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		n = strlen(de->d_name);
		if (strncmp(de->d_name, "nbd", 3) != 0 || n < 5 ||
		    strcmp(de->d_name + n - 5, ".lock") != 0)
			continue;
		snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
		if (lstat(path, &st) == 0 && S_ISREG(st.st_mode) &&
		    st.st_uid != pu.uid && lchown(path, pu.uid, (gid_t)-1) ==
		    -1)
			log_warn("chown %s: %s", path, strerror(errno));
	}
	closedir(d);
}

/* The daemon writes its sockets under RUNDIR and its registry, journals,
   event log and audit trail under STATE_DIR: the user owns both (and
   what an earlier root broker left there). */
static int
privsep_dirs(struct qmp_error *err)
{
	char	vmdir[PATH_MAX];

	snprintf(vmdir, sizeof vmdir, "%s/vm", conf.run_dir);
	if (loop_mkdirs(conf.run_dir, 0755, err) == -1 ||
	    loop_mkdirs(conf.state_dir, 0700, err) == -1 ||
	    loop_mkdirs(vmdir, 0755, err) == -1)
		return (-1);
	nftw(conf.run_dir, privsep_chown_one, 16, FTW_PHYS | FTW_MOUNT);
	nftw(conf.state_dir, privsep_chown_one, 16, FTW_PHYS | FTW_MOUNT);
	privsep_nbd_lockdir();
	return (0);
}

/* The parent re-reads what its checks use on SIGHUP, as the child does. */
static void
privsep_reload(int argc, char **argv)
{
	struct conf		n;
	struct qmp_error	e;
	char			*keep;

	if (conf_build(&n, argc, argv, &e) == -1) {
		log_err("privsep: reload failed, roots unchanged: %s", e.desc);
		conf_clear(&n);
		return;
	}
	keep = n.pid_file;
	n.pid_file = conf.pid_file;
	conf.pid_file = keep;
	conf_clear(&conf);
	conf = n;
}

struct privsep_kid {
	pid_t	pid;
	int	sock;		/* requests */
	int	ready;		/* the child's "up" byte */
	int	up;
};

/* systemd hands its fd store (the monitors' connections, fdstore.h) to
   the main process, this one, when it starts the pair again after both
   died (the watchdog, a kill of the cgroup, the crash limit). They are
   the daemon's: the first child gets them (LISTEN_PID made its own, as
   sd_listen_fds checks it) and this process closes its copies, so that
   QEMU sees the EOF when the daemon lets one go. */
static void
privsep_listen_fds(int child)
{
	const char	*pid = getenv("LISTEN_PID"), *n = getenv("LISTEN_FDS");
	char		 buf[24];
	long		 i, nfds;

	if (pid == NULL || n == NULL || atol(pid) != (long)privsep_parent)
		return;
	if (child) {
		snprintf(buf, sizeof buf, "%ld", (long)getpid());
		setenv("LISTEN_PID", buf, 1);
		return;
	}
	nfds = atol(n);
	for (i = 0; i < nfds && i < INT_MAX - SD_LISTEN_FDS_START; i++)
		close(SD_LISTEN_FDS_START + (int)i);
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
}

static int
privsep_fork(struct privsep_kid *k, const sigset_t *old, int *ready,
    struct qmp_error *err)
{
	int	sp[2], rp[2];

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) == -1 ||
	    pipe2(rp, O_CLOEXEC) == -1) {
		qmp_error_set(err, QMP_CLS_GENERIC, "socketpair: %s",
		    strerror(errno));
		return (-1);
	}
	privsep_parent = getpid();
	switch (k->pid = fork()) {
	case -1:
		qmp_error_set(err, QMP_CLS_GENERIC, "fork: %s",
		    strerror(errno));
		return (-1);
	case 0:
		close(sp[0]);
		close(rp[0]);
		sigprocmask(SIG_SETMASK, old, NULL);
		privsep_child = 1;
		privsep_listen_fds(1);
		if (privsep_drop(err) == -1)
			return (-1);
		priv_set_fd(sp[1], privsep_lost);
		if (*ready != -1)
			close(*ready);	/* the parent's to answer */
		*ready = rp[1];
		return (0);
	}
	privsep_listen_fds(0);
	close(sp[1]);
	close(rp[1]);
	k->sock = sp[0];
	k->ready = rp[0];
	k->up = 0;
	return (1);
}

static void
privsep_kid_close(struct privsep_kid *k)
{
	if (k->sock != -1)
		close(k->sock);
	if (k->ready != -1)
		close(k->ready);
	k->sock = k->ready = -1;
}

int
privsep_start(int argc, char **argv, int *ready, int *code,
    struct qmp_error *err)
{
	struct privsep_kid	 k = { -1, -1, -1, 0 };
	struct signalfd_siginfo	 si;
	struct pollfd		 pfd[3];
	sigset_t		 set, old;
	time_t			 crashes[PRIVSEP_CRASHES] = { 0 };
	int			 sfd, r, st, stopping = 0, ncrash = 0;
	char			 c;

	if (privsep_child)		/* resumed by an upgrade's exec */
		return (0);
	if ((r = privsep_user(err)) <= 0)
		return (r);
	if (privsep_dirs(err) == -1)
		return (-1);
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	/* An upgrade asked of the pid systemd or the pid file knows: the
	   child's to do (its default action would kill this process). */
	sigaddset(&set, SIGUSR2);
	if (sigprocmask(SIG_BLOCK, &set, &old) == -1 ||
	    (sfd = signalfd(-1, &set, SFD_CLOEXEC)) == -1) {
		qmp_error_set(err, QMP_CLS_GENERIC, "signalfd: %s",
		    strerror(errno));
		return (-1);
	}
	log_notice("privilege separation: the daemon runs as %s (uid %u)",
	    pu.name, (unsigned)pu.uid);
	for (;;) {
		if ((r = privsep_fork(&k, &old, ready, err)) <= 0) {
			if (r == 0)
				close(sfd);
			return (r);
		}
		/* Serve this child until it is reaped. */
		while (k.pid != -1) {
			pfd[0].fd = sfd;
			pfd[0].events = POLLIN;
			pfd[1].fd = k.sock;
			pfd[1].events = POLLIN;
			pfd[2].fd = k.ready;
			pfd[2].events = POLLIN;
			if (poll(pfd, 3, -1) == -1) {
				if (errno == EINTR)
					continue;
				log_err("privsep: poll: %s", strerror(errno));
				break;
			}
			if (pfd[1].revents != 0 && k.sock != -1 &&
			    privsep_handle(k.sock) == -1) {
				close(k.sock);	/* the child is going */
				k.sock = -1;
			}
			if (pfd[2].revents != 0 && k.ready != -1) {
				if (read(k.ready, &c, 1) == 1 && !k.up) {
					k.up = 1;
					if (*ready != -1) {
						if (write(*ready, "R", 1) != 1)
							log_warn("parent gone "
							    "before ready");
						close(*ready);
						*ready = -1;
					}
				}
				close(k.ready);
				k.ready = -1;
			}
			if (pfd[0].revents == 0 ||
			    read(sfd, &si, sizeof si) != sizeof si)
				continue;
			if (si.ssi_signo == SIGHUP) {
				privsep_reload(argc, argv);
				kill(k.pid, SIGHUP);
			} else if (si.ssi_signo == SIGUSR2) {
				kill(k.pid, SIGUSR2);
			} else if (si.ssi_signo != SIGCHLD) {
				stopping = 1;
				kill(k.pid, (int)si.ssi_signo);
			} else if (waitpid(k.pid, &st, WNOHANG) == k.pid)
				k.pid = -1;
		}
		privsep_kid_close(&k);
		if (WIFEXITED(st) && (stopping || WEXITSTATUS(st) == 0 ||
		    !k.up)) {
			/* A stop, or a start that failed: the parent goes
			   with the status the child gave. */
			*code = WEXITSTATUS(st);
			break;
		}
		if (stopping) {
			*code = 1;
			break;
		}
		/* Under systemd the daemon kept its monitors' connections in
		   the fd store too (fdstore.h, on when NOTIFY_SOCKET is): a
		   child started here would find each QEMU still connected
		   to the copy systemd keeps, and never be answered. Only
		   systemd gives them back, to a new pair: go, failed, and
		   Restart= starts one. */
		if (getenv("NOTIFY_SOCKET") != NULL) {
			log_err("privsep: the daemon died (%s %d); leaving the "
			    "restart to the service manager, which holds its "
			    "monitors", WIFSIGNALED(st) ? "signal" : "exit",
			    WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
			*code = 1;
			break;
		}
		if (WIFSIGNALED(st))
			log_err("privsep: the daemon died of signal %d; "
			    "restarting it", WTERMSIG(st));
		else
			log_err("privsep: the daemon exited %d; restarting it",
			    WEXITSTATUS(st));
		crashes[ncrash++ % PRIVSEP_CRASHES] = time(NULL);
		if (ncrash >= PRIVSEP_CRASHES && time(NULL) -
		    crashes[ncrash % PRIVSEP_CRASHES] < PRIVSEP_CRASH_WINDOW_S) {
			log_err("privsep: %d crashes in %d s: giving up",
			    PRIVSEP_CRASHES, PRIVSEP_CRASH_WINDOW_S);
			*code = 1;
			break;
		}
		sleep(1);
	}
	close(sfd);
	return (1);
}
