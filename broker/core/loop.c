/*
 * The process's shared state: its loop, its stop flag, its version.
 */
#include "config.h"

#include <sys/stat.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/core/loop.h"

struct event_base		*loop_base;
static bool			 loop_stop_flag;
static struct qmp_version	 loop_ver;

bool
loop_stopping(void)
{
	return (loop_stop_flag);
}

void
loop_set_stopping(void)
{
	loop_stop_flag = true;
}

const struct qmp_version *
loop_version(void)
{
	if (loop_ver.package[0] == '\0') {
		sscanf(PACKAGE_VERSION, "%d.%d.%d", &loop_ver.major,
		    &loop_ver.minor, &loop_ver.micro);
		snprintf(loop_ver.package, sizeof loop_ver.package,
		    "qmpbroker %s", PACKAGE_VERSION);
	}
	return (&loop_ver);
}

int
loop_mkdirs(const char *path, unsigned mode, struct qmp_error *err)
{
	char	*p, *s, c;

	if ((p = strdup(path)) == NULL) {
		qmp_error_set(err, QMP_CLS_GENERIC, "out of memory");
		return (-1);
	}
	for (s = p + 1; ; s++) {
		if (*s != '/' && *s != '\0')
			continue;
		c = *s;
		*s = '\0';
		if (mkdir(p, (mode_t)mode) == -1 && errno != EEXIST) {
			qmp_error_set(err, QMP_CLS_GENERIC, "mkdir %s: %s", p,
			    strerror(errno));
			free(p);
			return (-1);
		}
		if (c == '\0')
			break;
		*s = c;
	}
	free(p);
	return (0);
}

int
loop_mkdirs_for(const char *file, struct qmp_error *err)
{
	char	*d, *slash;
	int	 rc = 0;

	if ((d = strdup(file)) == NULL) {
		qmp_error_set(err, QMP_CLS_GENERIC, "out of memory");
		return (-1);
	}
	if ((slash = strrchr(d, '/')) != NULL && slash != d) {
		*slash = '\0';
		rc = loop_mkdirs(d, 0755, err);
	}
	free(d);
	return (rc);
}
