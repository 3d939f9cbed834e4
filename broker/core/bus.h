/*
 * The publish bus: how an event reaches clients without the module that
 * makes it knowing who listens. Producers (the VM registry, jobs,
 * hotplug) publish; the one sink (subscriptions, in session/) is wired
 * at start by the daemon. With no sink every publish is a no-op, so a
 * unit test links the producers alone.
 */
#ifndef BROKER_CORE_BUS_H
#define BROKER_CORE_BUS_H

#include <stdbool.h>
#include <jansson.h>

struct bus_sink {
	/* False if nobody could want any event: producers skip building
	   one (most events of a busy broker have no subscriber). */
	bool	(*active)(void *arg);
	/* A QEMU event of VM vm (borrowed), as QEMU sent it. */
	void	(*vm_event)(const char *vm, json_t *event, void *arg);
	/* An event the broker makes; vm NULL for broker-wide ones. data is
	   borrowed. */
	void	(*publish)(const char *vm, const char *event, json_t *data,
		    void *arg);
};

/* One sink; sink NULL unplugs it. ops must outlive the registration. */
void	bus_plug(const struct bus_sink *, void *arg);

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
