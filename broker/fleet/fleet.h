/*
 * The fleet: this broker's events streamed into NATS JetStream, and
 * fleet commands served from NATS (docs/nats.md).
 *
 * Everything runs on the broker's loop through libnats' libevent
 * adapter. The calls of libnats that block (connecting, with its DNS,
 * TCP and handshake; creating or looking up the stream, a JetStream
 * request/reply) run on core/work's threads; what libnats' own threads
 * report (acks, requests, connection state) reaches the loop through a
 * mailbox. NATS trouble never blocks the loop and never touches local
 * subscribers: events wait in the event log, not in memory.
 */
#ifndef BROKER_FLEET_FLEET_H
#define BROKER_FLEET_FLEET_H

#include <stdbool.h>
#include <stddef.h>

#include "proto/qmp_msg.h"

/* Starts streaming if conf.nats_url is set (else a no-op returning 0).
   -1 with err for options that can never work (a bad retention, a
   command on nats-control-allow that does not exist); an unreachable
   server is not an error: the broker keeps trying and logs why. */
int	fleet_start(struct qmp_error *err);
/* Closes the connection; pending publishes stay in the event log and
   the acknowledged seq is written out. Safe if never started. */
void	fleet_stop(void);
/* After fleet_stop and the loop's end: libnats' threads. */
void	fleet_cleanup(void);

#endif
