/*
 * What every layer of the daemon shares about the process: its one event
 * loop, whether it is stopping, the version it reports. The loop's owner (main.c, or a unit test)
 * sets loop_base before any module starts.
 */
#ifndef BROKER_CORE_LOOP_H
#define BROKER_CORE_LOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <event2/event.h>

#include "proto/qmp_msg.h"
#include "util/queue.h"

extern struct event_base *loop_base;

/* Set once by the daemon's stop: listeners refuse new clients. */
bool	loop_stopping(void);
void	loop_set_stopping(void);
/* qmpbroker's own version, as QMP's greeting and query-version say it. */
const struct qmp_version *loop_version(void);
/* mkdir -p of path, or of a file's directory; existing dirs are kept. */
int	loop_mkdirs(const char *path, unsigned mode, struct qmp_error *err);
int	loop_mkdirs_for(const char *file, struct qmp_error *err);

#endif
