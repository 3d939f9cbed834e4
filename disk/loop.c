/*
 * losetup argv and output.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "disk/loop.h"

void
loop_attach_argv(const char *losetup, const char *path, bool ro,
    char *argv[LOOP_ARGV_MAX])
{
	int	i = 0;

	argv[i++] = (char *)losetup;
	argv[i++] = "--find";
	argv[i++] = "--show";
	if (ro)
		argv[i++] = "--read-only";
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
		return false;
	for (p = dev + 9; *p != '\0'; p++)
		if (*p < '0' || *p > '9')
			return false;
	return p - dev < 20;
}

int
loop_parse_device(const char *out, char *dev, size_t len,
    struct qmp_error *err)
{
	size_t	n = strcspn(out, "\n");

	if (n == 0 || n >= len || out[n] != '\n' || out[n + 1] != '\0') {
		qmp_error_set(err, QMP_CLS_GENERIC,
		    "losetup printed no single device line");
		return -1;
	}
	memcpy(dev, out, n);
	dev[n] = '\0';
	if (!loop_device_name_ok(dev)) {
		qmp_error_set(err, QMP_CLS_GENERIC,
		    "losetup printed an unexpected device '%.64s'", dev);
		return -1;
	}
	return 0;
}

bool
loop_out_of_devices(const char *s)
{
	return strstr(s, "could not find any free loop device") != NULL ||
	    strstr(s, "failed to find unused loop device") != NULL ||
	    strstr(s, "No such device") != NULL;
}
