/*
 * nbd device choice and locking.
 */
#include "config.h"

#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "disk/nbd.h"

#define NBD_MAX_DEVS	1024

static int
nbd_index(const char *name)
{
	const char	*p;
	long		 n;

	if (strncmp(name, "nbd", 3) != 0 || name[3] == '\0')
		return (-1);
	for (p = name + 3; *p != '\0'; p++)
		if (*p < '0' || *p > '9')
			return (-1);
	if (p - name > 8 || (name[3] == '0' && name[4] != '\0'))
		return (-1);
	n = strtol(name + 3, NULL, 10);
	return ((int)n);
}

static bool
nbd_has_pid(const struct nbd_paths *np, int index)
{
	char		path[512];
	struct stat	st;

	snprintf(path, sizeof path, "%s/block/nbd%d/pid", np->sysfs, index);
	return (stat(path, &st) == 0);
}

bool
nbd_connected(const struct nbd_paths *np, const struct nbd_dev *d)
{
	return (nbd_has_pid(np, d->index));
}

int
nbd_parse_device(const struct nbd_paths *np, const char *dev)
{
	size_t	n = strlen(np->devdir);

	if (strncmp(dev, np->devdir, n) != 0 || dev[n] != '/')
		return (-1);
	return (nbd_index(dev + n + 1));
}

static int
nbd_lock(const struct nbd_paths *np, int index)
{
	char	path[512];
	int	fd;

	snprintf(path, sizeof path, "%s/nbd%d.lock", np->lockdir, index);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd == -1)
		return (-1);
	if (flock(fd, LOCK_EX | LOCK_NB) == -1) {
		close(fd);
		return (-1);
	}
	return (fd);
}

int
nbd_pick(const struct nbd_paths *np, struct nbd_dev *d, struct qmp_error *err)
{
	char		 path[512];
	struct stat	 st;
	DIR		*dir;
	struct dirent	*de;
	int		*free_idx, nfree = 0, nall = 0, i, j, t, fd;

	d->lockfd = -1;
	snprintf(path, sizeof path, "%s/block", np->sysfs);
	if ((dir = opendir(path)) == NULL) {
		qmp_error_set(err, QMP_CLS_GENERIC, "cannot read %s: %s", path,
		    strerror(errno));
		return (-1);
	}
	if ((free_idx = calloc(NBD_MAX_DEVS, sizeof *free_idx)) == NULL) {
		closedir(dir);
		qmp_error_set(err, QMP_CLS_GENERIC, "out of memory");
		return (-1);
	}
	while ((de = readdir(dir)) != NULL && nfree < NBD_MAX_DEVS) {
		if ((i = nbd_index(de->d_name)) == -1)
			continue;
		nall++;
		if (!nbd_has_pid(np, i))
			free_idx[nfree++] = i;
	}
	closedir(dir);

	snprintf(path, sizeof path, "%s/module/nbd", np->sysfs);
	if (nall == 0) {
		free(free_idx);
		if (stat(path, &st) == -1)
			qmp_error_set(err, QMP_CLS_GENERIC, "nbd module not "
			    "loaded (modprobe nbd nbds_max=16)");
		else
			qmp_error_set(err, QMP_CLS_GENERIC, "nbd module loaded "
			    "but it has no devices");
		return (-1);
	}

	/* Random order: other tools scanning from nbd0 up race us less. */
	for (i = nfree - 1; i > 0; i--) {
		j = (int)(arc4random_uniform((uint32_t)i + 1));
		t = free_idx[i];
		free_idx[i] = free_idx[j];
		free_idx[j] = t;
	}
	if (nfree > 0 && mkdir(np->lockdir, 0700) == -1 && errno != EEXIST) {
		qmp_error_set(err, QMP_CLS_GENERIC, "cannot create %s: %s",
		    np->lockdir, strerror(errno));
		free(free_idx);
		return (-1);
	}
	for (i = 0; i < nfree; i++) {
		if ((fd = nbd_lock(np, free_idx[i])) == -1)
			continue;
		/* Taken between the scan and the lock by a tool that does
		   not lock: leave it. */
		if (nbd_has_pid(np, free_idx[i])) {
			close(fd);
			continue;
		}
		d->index = free_idx[i];
		d->lockfd = fd;
		snprintf(d->path, sizeof d->path, "%s/nbd%d", np->devdir,
		    d->index);
		free(free_idx);
		return (0);
	}
	free(free_idx);
	qmp_error_set(err, QMP_CLS_GENERIC, "no free nbd devices (%d in use)",
	    nall);
	return (-1);
}

int
nbd_claim(const struct nbd_paths *np, const char *dev, struct nbd_dev *d)
{
	int	index;

	d->lockfd = -1;
	if ((index = nbd_parse_device(np, dev)) == -1)
		return (-1);
	d->index = index;
	snprintf(d->path, sizeof d->path, "%s/nbd%d", np->devdir, index);
	if (mkdir(np->lockdir, 0700) == -1 && errno != EEXIST)
		return (1);
	if ((d->lockfd = nbd_lock(np, index)) == -1)
		return (1);
	return (0);
}

void
nbd_release(struct nbd_dev *d)
{
	if (d->lockfd != -1) {
		close(d->lockfd);	/* drops the flock */
		d->lockfd = -1;
	}
}

void
nbd_connect_argv(const char *qemu_nbd, const struct nbd_dev *d, bool ro,
    const char *format, const char *path, char *argv[NBD_ARGV_MAX])
{
	int	i = 0;

	argv[i++] = (char *)qemu_nbd;
	argv[i++] = "-c";
	argv[i++] = (char *)d->path;
	if (ro)
		argv[i++] = "-r";
	if (format != NULL) {
		argv[i++] = "-f";
		argv[i++] = (char *)format;
	}
	argv[i++] = "--";
	argv[i++] = (char *)path;
	argv[i] = NULL;
}

void
nbd_disconnect_argv(const char *qemu_nbd, const struct nbd_dev *d,
    char *argv[NBD_ARGV_MAX])
{
	argv[0] = (char *)qemu_nbd;
	argv[1] = "-d";
	argv[2] = (char *)d->path;
	argv[3] = NULL;
}

int
nbd_flush(const char *dev, struct qmp_error *err)
{
	int	fd, rc;

	if ((fd = open(dev, O_RDONLY | O_CLOEXEC | O_NONBLOCK)) == -1) {
		qmp_error_set(err, QMP_CLS_GENERIC, "open %s: %s", dev,
		    strerror(errno));
		return (-1);
	}
	rc = ioctl(fd, BLKFLSBUF, 0);
	if (rc == -1)
		qmp_error_set(err, QMP_CLS_GENERIC, "flush %s: %s", dev,
		    strerror(errno));
	close(fd);
	return (rc == -1 ? -1 : 0);
}
