/*
 * The publish bus: one indirection between the modules that make events
 * and the subscriptions that deliver them, so producers below session/
 * never call up into it.
 */
#include "config.h"

#include <sys/time.h>

#include "broker/core/bus.h"

static const struct bus_sink	*bus_sink;
static void			*bus_arg;

void
bus_plug(const struct bus_sink *sink, void *arg)
{
	bus_sink = sink;
	bus_arg = arg;
}

json_t *
bus_timestamp_now(void)
{
	struct timeval	tv;

	gettimeofday(&tv, NULL);
	return (json_pack("{s:I,s:I}", "seconds", (json_int_t)tv.tv_sec,
	    "microseconds", (json_int_t)tv.tv_usec));
}

void
bus_publish(const char *vm, const char *event, json_t *data)
{
	if (bus_sink == NULL || !bus_sink->active(bus_arg)) {
		json_decref(data);
		return;
	}
	if (data == NULL)
		data = json_object();
	bus_sink->publish(vm, event, data, bus_arg);
	json_decref(data);
}

void
bus_vm_event(const char *vm, json_t *event)
{
	if (bus_sink != NULL && bus_sink->active(bus_arg))
		bus_sink->vm_event(vm, event, bus_arg);
}
