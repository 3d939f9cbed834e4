/*
 * losetup argv and output.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "disk/loop.h"

void
loop_find_argv(const char *losetup, char *argv[LOOP_ARGV_MAX])
{
	argv[0] = (char *)losetup;
	argv[1] = "--find";
	argv[2] = NULL;
}

void
loop_attach_argv(const char *losetup, const char *dev, const char *path,
    bool ro, char *argv[LOOP_ARGV_MAX])
{
	int	i = 0;

	argv[i++] = (char *)losetup;
	if (ro)
		argv[i++] = "--read-only";
	argv[i++] = (char *)dev;
	/* "--" so a path can never be taken for an option. */
	argv[i++] = "--";
	argv[i++] = (char *)path;
	argv[i] = NULL;
}

void
loop_detach_argv(const char *losetup, const char *dev,
    char *argv[LOOP_ARGV_MAX])
{
	argv[0] = (char *)losetup;
	argv[1] = "--detach";
	argv[2] = (char *)dev;
	argv[3] = NULL;
}

bool
loop_device_name_ok(const char *dev)
{
	const char	*p;

	if (strncmp(dev, "/dev/loop", 9) != 0 || dev[9] == '\0')
		return (false);
	for (p = dev + 9; *p != '\0'; p++)
		if (*p < '0' || *p > '9')
			return (false);
	return (p - dev < 20);
}

int
loop_parse_device(const char *out, char *dev, size_t len,
    struct qmp_error *err)
{
	size_t	n = strcspn(out, "\n");

	if (n == 0 || n >= len || out[n] != '\n' || out[n + 1] != '\0') {
		qmp_error_set(err, QMP_CLS_GENERIC,
		    "losetup printed no single device line");
		return (-1);
	}
	memcpy(dev, out, n);
	dev[n] = '\0';
	if (!loop_device_name_ok(dev)) {
		qmp_error_set(err, QMP_CLS_GENERIC,
		    "losetup printed an unexpected device '%.64s'", dev);
		return (-1);
	}
	return (0);
}

bool
loop_out_of_devices(const char *s)
{
	return (strstr(s, "could not find any free loop device") != NULL ||
	    strstr(s, "cannot find an unused loop device") != NULL ||
	    strstr(s, "failed to find unused loop device") != NULL ||
	    strstr(s, "No such device") != NULL);
}

int
loop_backing_file(const char *sysfs, const char *dev, char *buf, size_t len)
{
	char	path[512];
	ssize_t	n;
	int	fd;

	if (len == 0 || !loop_device_name_ok(dev))
		return (-1);
	if ((size_t)snprintf(path, sizeof path, "%s/block/%s/loop/backing_file",
	    sysfs, dev + 5) >= sizeof path)
		return (-1);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return (-1);
	do
		n = read(fd, buf, len - 1);
	while (n == -1 && errno == EINTR);
	close(fd);
	if (n <= 0)
		return (-1);
	buf[n] = '\0';
	/* A name longer than buf is not ours to compare: say so by failing
	   the comparison, not by truncating into a false match. */
	if ((size_t)n == len - 1 && buf[n - 1] != '\n')
		buf[0] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	return (0);
}

bool
loop_backing_is(const char *backing, const char *path)
{
	size_t	n = strlen(path);

	if (n == 0 || strncmp(backing, path, n) != 0)
		return (false);
	return (backing[n] == '\0' || strcmp(backing + n, " (deleted)") == 0);
}
