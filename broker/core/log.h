/*
 * Logging: levels as syslog's, to stderr (foreground, tests) or syslog.
 * Every broker layer logs through here; hv/ and disk/ do not log (their
 * owners pass a log callback where they need one).
 */
#ifndef BROKER_CORE_LOG_H
#define BROKER_CORE_LOG_H

#include <syslog.h>

void	log_open(int level, int use_syslog);
void	log_set_level(int);
int	log_get_level(void);
int	log_level_parse(const char *);		/* -1 if unknown */
const char *log_level_name(int);
void	log_msg(int prio, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));
#define log_debug(...)	log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...)	log_msg(LOG_INFO, __VA_ARGS__)
#define log_notice(...)	log_msg(LOG_NOTICE, __VA_ARGS__)
#define log_warn(...)	log_msg(LOG_WARNING, __VA_ARGS__)
#define log_err(...)	log_msg(LOG_ERR, __VA_ARGS__)

#endif
