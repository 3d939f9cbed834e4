/*
 * Internals shared by fleet.c (the connection, the mailbox from
 * libnats' threads), fleet_pub.c (events into JetStream) and
 * fleet_ctl.c (fleet commands). Not for outside broker/fleet.
 */
#ifndef BROKER_FLEET_FLEET_INT_H
#define BROKER_FLEET_FLEET_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <nats/nats.h>

#include "broker/fleet/fleet.h"
#include "util/subject.h"

#define FLEET_TOKEN_MAX		(3 * 256 + 1)	/* an escaped token */

/* Loop state; libnats' threads touch none of it but through fleet_post*. */
struct fleet {
	natsOptions		*opts;
	natsConnection		*nc;	/* once connect's work is done */
	bool			 started;
	bool			 stopping;
	bool			 connected;	/* as libnats last told */
	bool			 closed;	/* for good: nc goes at retry */
	char			 host_tok[FLEET_TOKEN_MAX];
};
extern struct fleet fleet;

/* libnats' last error of this thread, without its source position. */
const char *fleet_last_error(natsStatus);

/* From any thread: m is taken (a request on qmp.HOST.control). */
void	fleet_post_request(natsMsg *m);

/* fleet_pub.c: on the loop unless said otherwise. */
int	fleet_pub_start(struct qmp_error *);
/* The connection is up: (re)publish from the last acked seq. */
void	fleet_pub_connected(void);
void	fleet_pub_disconnected(void);
/* Publishes what the window has room for. */
void	fleet_pub_pump(void);
/* After libnats has read from the socket (the adapter's read event):
   the acks it parsed, then a publish into the room they made. */
void	fleet_pub_drain(void);
void	fleet_pub_tick(void);
/* A work item uses fleet.nc: it must not be destroyed yet. */
bool	fleet_pub_busy(void);
void	fleet_pub_stop(void);
void	fleet_pub_cleanup(void);

/* fleet_ctl.c */
int	fleet_ctl_start(struct qmp_error *);
void	fleet_ctl_connected(void);
void	fleet_ctl_request(natsMsg *);	/* m is taken */
void	fleet_ctl_stop(void);

#endif
