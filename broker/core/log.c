/*
 * Logging: levels as syslog's, to stderr (foreground, tests) or syslog.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>

#include "broker/core/log.h"

static int	log_level = LOG_INFO;
static int	log_syslog;

static const char *const log_names[] = {
	"emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"
};

void
log_open(int level, int use_syslog)
{
	log_level = level;
	if (use_syslog && !log_syslog)
		openlog("qmpbrokerd", LOG_PID | LOG_NDELAY, LOG_DAEMON);
	else if (!use_syslog && log_syslog)
		closelog();
	log_syslog = use_syslog;
}

void
log_set_level(int level)
{
	log_level = level;
}

int
log_get_level(void)
{
	return (log_level);
}

int
log_level_parse(const char *s)
{
	size_t	i;

	for (i = 0; i < sizeof log_names / sizeof log_names[0]; i++) {
		if (strcasecmp(s, log_names[i]) == 0)
			return ((int)i);
	}
	if (strcasecmp(s, "error") == 0)
		return (LOG_ERR);
	if (strcasecmp(s, "warn") == 0)
		return (LOG_WARNING);
	return (-1);
}

const char *
log_level_name(int level)
{
	if (level < 0 || level > LOG_DEBUG)
		return ("?");
	return (log_names[level]);
}

void
log_msg(int prio, const char *fmt, ...)
{
	va_list		ap;
	char		buf[1024];
	struct timespec	ts;
	struct tm	tm;

	if (prio > log_level)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	if (log_syslog) {
		syslog(prio, "%s", buf);
		return;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	fprintf(stderr, "%02d:%02d:%02d.%03ld qmpbrokerd %s: %s\n",
	    tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000L,
	    log_names[prio], buf);
}
