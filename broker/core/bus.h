/*
 * The publish bus: how an event reaches clients without the module that
 * makes it knowing who listens. Producers (the VM registry, jobs,
 * hotplug) publish; the one sink (subscriptions, in session/) is wired
 * at start by the daemon. With no sink every publish is a no-op, so a
 * unit test links the producers alone.
 *
 * With the event log on (bus_log_start), every event is first appended
 * to core/evlog.h, which gives it "seq" and "epoch", and reaches the
 * sink from the log once it is written (evlog's listener, once per loop
 * pass). With the log off, events go straight to the sink, without
 * seq, only when the sink says someone listens.
 */
#ifndef BROKER_CORE_BUS_H
#define BROKER_CORE_BUS_H

#include <stdbool.h>
#include <jansson.h>

#include "broker/core/evlog.h"
#include "proto/qmp_msg.h"

struct bus_sink {
	/* False if nobody could want any event: with the log off,
	   producers skip building one. */
	bool	(*active)(void *arg);
	/* One event, as its text (rec borrowed for the call; seq 0 when
	   the log is off). */
	void	(*deliver)(const struct evlog_rec *rec, void *arg);
};

/* One sink; sink NULL unplugs it. ops must outlive the registration. */
void	bus_plug(const struct bus_sink *, void *arg);

/* Opens the event log as conf says (STATE_DIR/events; nothing if
   event-log is no). A full disk later is logged and published as
   EVENT_LOG_FULL. Returns 0, or -1 with err. */
int	bus_log_start(struct event_base *, struct qmp_error *err);
void	bus_log_stop(void);

/* Publish an event the broker itself makes (JOB_STATUS_CHANGE,
   DEVICE_UNPLUGGED, ...). vm may be NULL for broker-wide events (then
   "vm" is omitted). data is stolen (NULL means {}). The timestamp is
   taken now. */
void	bus_publish(const char *vm, const char *event, json_t *data);
/* A QEMU event of one VM, borrowed: to subscribers with "vm" added. */
void	bus_vm_event(const char *vm, json_t *event);
/* {"seconds", "microseconds"} of now, as QEMU stamps its events. */
json_t	*bus_timestamp_now(void);

#endif
