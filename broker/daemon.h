/*
 * The daemon's life on its loop: start (dirs, listeners, registry,
 * journals, and the wiring of every callback that carries information up
 * the layers), reload (SIGHUP), and a clean stop.
 */
#ifndef BROKER_DAEMON_H
#define BROKER_DAEMON_H

#include <stddef.h>

#include "proto/qmp_msg.h"

/* loop_base must exist. argv is kept for reloads. -1 with err
   (GenericError) saying what could not be set up. */
int	daemon_start(int argc, char **argv, struct qmp_error *err);
/* Answers every pending command with an error and unlinks every socket;
   the loop ends once clients have read their last replies. */
void	daemon_stop(void);
void	daemon_reload(void);
/* After the loop: whatever is left goes. */
void	daemon_cleanup(void);

#endif
