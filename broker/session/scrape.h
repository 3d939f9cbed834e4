/*
 * The metrics' HTTP server: GET /metrics on --metrics-listen (unix:PATH
 * or HOST:PORT), over libevent's evhttp on the daemon's loop, answering
 * with core/metrics.h's exposition. Anything else is a clear HTTP error
 * (404 for another path, 405 for another method); a connection idle or
 * slow for metrics-timeout-ms is closed by evhttp; at most
 * metrics-max-conns connections are open, beyond which the listener
 * stops accepting (the kernel's backlog holds the rest) until one goes.
 * Nothing here blocks the loop.
 *
 * A HOST that is not a loopback address is refused unless
 * metrics-remote is set: the figures name every VM.
 */
#ifndef BROKER_SESSION_SCRAPE_H
#define BROKER_SESSION_SCRAPE_H

#include "broker/core/metrics.h"
#include "proto/qmp_msg.h"

/* Listens on conf.metrics_listen (nothing if NULL); -1 with err
   (GenericError) naming the address and what failed. */
int	scrape_open(struct qmp_error *err);
/* Closes the listener and every HTTP connection; a unix socket is
   unlinked. Idempotent. */
void	scrape_close(void);

/* The sessions' figures (clients, subscriptions, events out and
   dropped, queued bytes, this server's own): a collector the daemon
   registers. */
metrics_collect_fn	scrape_collect;

#endif
