/*
 * Image-root confinement. See imgpath.h.
 *
 * The lexical check comes first and refuses "..", so that no later
 * step can be talked out of a root by path arithmetic; realpath() then
 * settles symlinks in the directory part, and the final component is
 * looked at with lstat() so it is never followed blindly.
 */
#include "config.h"

#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "disk/imgpath.h"

/* True if p (resolved) equals root (resolved) or lies below it. */
static bool
img_under(const char *root, const char *p)
{
	size_t	n = strlen(root);

	if (n == 1 && root[0] == '/')
		return (true);
	return (strncmp(root, p, n) == 0 && (p[n] == '/' || p[n] == '\0'));
}

static bool
img_under_any(char *const *roots, size_t nroots, const char *p)
{
	char	rroot[PATH_MAX];
	size_t	i;

	for (i = 0; i < nroots; i++) {
		if (roots[i] == NULL || realpath(roots[i], rroot) == NULL)
			continue;
		if (img_under(rroot, p))
			return (true);
	}
	return (false);
}

static int
img_kind_ok(const struct stat *st, const char *what, struct qmp_error *err)
{
	if (S_ISREG(st->st_mode) || S_ISBLK(st->st_mode))
		return (0);
	qmp_error_set(err, QMP_CLS_GENERIC, "%s is not a regular file or a "
	    "block device", what);
	return (-1);
}

/* Lexical: absolute, no empty, "." or ".." components. */
static int
img_lexical(const char *path, struct qmp_error *err)
{
	const char	*p, *e;
	size_t		 n;

	if (path[0] != '/') {
		qmp_error_set(err, QMP_CLS_GENERIC,
		    "image path must be absolute");
		return (-1);
	}
	for (p = path + 1; ; p = e + 1) {
		e = strchr(p, '/');
		n = e != NULL ? (size_t)(e - p) : strlen(p);
		if (n == 0 || (n == 1 && p[0] == '.') ||
		    (n == 2 && p[0] == '.' && p[1] == '.')) {
			qmp_error_set(err, QMP_CLS_GENERIC, "image path may "
			    "not hold empty, '.' or '..' components");
			return (-1);
		}
		if (e == NULL)
			return (0);
	}
}

int
img_path_check(char *const *roots, size_t nroots, const char *path,
    char *resolved, size_t rlen, struct qmp_error *err)
{
	char		 dir[PATH_MAX], rdir[PATH_MAX], target[PATH_MAX];
	const char	*base;
	struct stat	 st;
	size_t		 len;
	int		 n;

	len = strnlen(path, PATH_MAX);
	if (len == 0 || len >= PATH_MAX) {
		qmp_error_set(err, QMP_CLS_GENERIC,
		    "image path empty or too long");
		return (-1);
	}
	if (nroots == 0) {
		qmp_error_set(err, QMP_CLS_GENERIC, "no image roots are "
		    "configured: local image paths are refused");
		return (-1);
	}
	if (img_lexical(path, err) != 0)
		return (-1);

	base = strrchr(path, '/') + 1;
	if (base == path + 1)
		memcpy(dir, "/", 2);
	else {
		memcpy(dir, path, base - 1 - path);
		dir[base - 1 - path] = '\0';
	}
	if (realpath(dir, rdir) == NULL) {
		qmp_error_set(err, QMP_CLS_GENERIC, "image directory %s: %s",
		    dir, strerror(errno));
		return (-1);
	}
	n = snprintf(target, sizeof target, "%s%s%s", rdir,
	    strcmp(rdir, "/") == 0 ? "" : "/", base);
	if (n < 0 || (size_t)n >= sizeof target) {
		qmp_error_set(err, QMP_CLS_GENERIC, "image path too long");
		return (-1);
	}
	if (!img_under_any(roots, nroots, target) ||
	    !img_under_any(roots, nroots, rdir)) {
		qmp_error_set(err, QMP_CLS_GENERIC,
		    "image path %s is outside the image roots", path);
		return (-1);
	}
	if ((size_t)n >= rlen) {
		qmp_error_set(err, QMP_CLS_GENERIC, "image path too long");
		return (-1);
	}
	memcpy(resolved, target, n + 1);

	if (lstat(target, &st) != 0) {
		qmp_error_set(err, QMP_CLS_GENERIC, "image %s: %s", path,
		    strerror(errno));
		return (-1);
	}
	if (S_ISLNK(st.st_mode)) {
		char	rlink[PATH_MAX];

		if (realpath(target, rlink) == NULL) {
			qmp_error_set(err, QMP_CLS_GENERIC,
			    "image %s: dangling symlink", path);
			return (-1);
		}
		if (!img_under_any(roots, nroots, rlink)) {
			qmp_error_set(err, QMP_CLS_GENERIC, "image %s is a "
			    "symlink out of the image roots", path);
			return (-1);
		}
		if (stat(rlink, &st) != 0) {
			qmp_error_set(err, QMP_CLS_GENERIC, "image %s: %s",
			    path, strerror(errno));
			return (-1);
		}
	}
	return (img_kind_ok(&st, path, err));
}

int
img_fd_check(char *const *roots, size_t nroots, int fd, struct qmp_error *err)
{
	char		 link[64], real[PATH_MAX];
	struct stat	 st;
	ssize_t		 n;

	if (fstat(fd, &st) != 0) {
		qmp_error_set(err, QMP_CLS_GENERIC, "fstat: %s",
		    strerror(errno));
		return (-1);
	}
	if (img_kind_ok(&st, "opened image", err) != 0)
		return (-1);
	snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
	n = readlink(link, real, sizeof real - 1);
	if (n <= 0) {
		qmp_error_set(err, QMP_CLS_GENERIC, "readlink %s: %s", link,
		    n < 0 ? strerror(errno) : "empty");
		return (-1);
	}
	real[n] = '\0';
	if (real[0] != '/' || !img_under_any(roots, nroots, real)) {
		qmp_error_set(err, QMP_CLS_GENERIC, "opened image %s is "
		    "outside the image roots", real);
		return (-1);
	}
	return (0);
}

/* From dirfd, open rel one component at a time, never following a link.
   rel is relative, lexically clean (img_lexical ran on the whole path). */
static int
img_walk(int dirfd, const char *rel, int flags, struct qmp_error *err)
{
	char		 comp[NAME_MAX + 1];
	const char	*p = rel, *slash;
	size_t		 n;
	int		 fd = dirfd, next;

	for (;;) {
		slash = strchr(p, '/');
		n = slash != NULL ? (size_t)(slash - p) : strlen(p);
		if (n == 0 || n > NAME_MAX) {
			qmp_error_set(err, QMP_CLS_GENERIC, "bad path component");
			break;
		}
		memcpy(comp, p, n);
		comp[n] = '\0';
		if (slash != NULL)
			next = openat(fd, comp, O_PATH | O_DIRECTORY |
			    O_NOFOLLOW | O_CLOEXEC);
		else	/* O_NONBLOCK: a FIFO must not hang the helper */
			next = openat(fd, comp, flags | O_NOFOLLOW | O_CLOEXEC |
			    O_NOCTTY | O_NONBLOCK);
		if (next == -1) {
			qmp_error_set(err, QMP_CLS_GENERIC, "cannot open %s: %s",
			    comp, errno == ELOOP || errno == ENOTDIR ?
			    "a symlink or not a directory (symlinks are not "
			    "followed)" : strerror(errno));
			break;
		}
		if (fd != dirfd)
			close(fd);
		fd = next;
		if (slash == NULL)
			return (fd);
		p = slash + 1;
	}
	if (fd != dirfd)
		close(fd);
	return (-1);
}

int
img_open_nofollow(char *const *roots, size_t nroots, const char *path,
    int flags, struct qmp_error *err)
{
	char		 rroot[PATH_MAX];
	struct stat	 st;
	const char	*rel;
	size_t		 i, n;
	int		 rootfd, fd;

	if (flags != O_RDONLY && flags != O_RDWR && flags != O_PATH) {
		qmp_error_set(err, QMP_CLS_GENERIC, "bad open mode");
		return (-1);
	}
	if (img_lexical(path, err) != 0)
		return (-1);
	for (i = 0; i < nroots; i++) {
		if (roots[i] == NULL || realpath(roots[i], rroot) == NULL)
			continue;
		n = strlen(rroot);
		if (n == 1)
			rel = path + 1;
		else if (strncmp(rroot, path, n) == 0 && path[n] == '/')
			rel = path + n + 1;
		else
			continue;
		if ((rootfd = open(rroot, O_PATH | O_DIRECTORY | O_CLOEXEC)) ==
		    -1) {
			qmp_error_set(err, QMP_CLS_GENERIC, "image root %s: %s",
			    rroot, strerror(errno));
			return (-1);
		}
		fd = img_walk(rootfd, rel, flags, err);
		close(rootfd);
		if (fd == -1)
			return (-1);
		if (flags == O_PATH)
			return (fd);	/* the caller judges what it is */
		if (fstat(fd, &st) != 0) {
			qmp_error_set(err, QMP_CLS_GENERIC, "fstat %s: %s",
			    path, strerror(errno));
			close(fd);
			return (-1);
		}
		if (img_kind_ok(&st, path, err) != 0) {
			close(fd);
			return (-1);
		}
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
		return (fd);
	}
	qmp_error_set(err, QMP_CLS_GENERIC, "%s is outside the image roots",
	    path);
	return (-1);
}
