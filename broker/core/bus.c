/*
 * The publish bus: one indirection between the modules that make events
 * and the subscriptions that deliver them, so producers below session/
 * never call up into it. Every event is made into its text here, once:
 * the log keeps that text and every subscriber gets the same bytes.
 */
#include "config.h"

#include <sys/time.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/core/bus.h"
#include "broker/core/conf.h"
#include "broker/core/log.h"
#include "proto/qmp_out.h"

#define BUS_STACK	2048	/* most events fit: no allocation */

static const struct bus_sink	*bus_sink;
static void			*bus_arg;
static struct evlog_cur		*bus_cur;	/* the next to deliver */

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

static bool
bus_name_plain(const char *p)
{
	for (; *p != '\0'; p++) {
		if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
		    (*p >= '0' && *p <= '9') || *p == '_' || *p == '-' ||
		    *p == '.'))
			return (false);
	}
	return (true);
}

/*
 * A QEMU event with "vm" added, written by hand into buf without its
 * closing brace: the names need no escaping (a VM name is
 * [A-Za-z0-9_.-], the event's is checked) and QEMU's timestamp is two
 * integers, so only "data" goes through jansson. Member order: event,
 * vm, data, timestamp. Returns the length, or 0 if the event needs the
 * general path.
 */
static size_t
bus_format_vm_event(char *buf, size_t cap, const char *vm, const char *name,
    json_t *ev)
{
	json_t	*data, *ts, *sec, *usec;
	size_t	 n, k;
	int	 r;

	if (!bus_name_plain(name))
		return (0);
	r = snprintf(buf, cap, "{\"event\":\"%s\",\"vm\":\"%s\"", name, vm);
	if (r < 0 || (size_t)r >= cap)
		return (0);
	n = (size_t)r;
	if ((data = json_object_get(ev, "data")) != NULL) {
		if (cap - n < 16)
			return (0);
		memcpy(buf + n, ",\"data\":", 8);
		n += 8;
		k = json_dumpb(data, buf + n, cap - n, JSON_COMPACT|
		    JSON_ENCODE_ANY);
		if (k == 0 || k >= cap - n)
			return (0);
		n += k;
	}
	if ((ts = json_object_get(ev, "timestamp")) != NULL) {
		sec = json_object_get(ts, "seconds");
		usec = json_object_get(ts, "microseconds");
		if (!json_is_integer(sec) || !json_is_integer(usec) ||
		    json_object_size(ts) != 2)
			return (0);
		r = snprintf(buf + n, cap - n, ",\"timestamp\":{\"seconds\":"
		    "%" JSON_INTEGER_FORMAT ",\"microseconds\":%"
		    JSON_INTEGER_FORMAT "}", json_integer_value(sec),
		    json_integer_value(usec));
		if (r < 0 || (size_t)r >= cap - n)
			return (0);
		n += (size_t)r;
	}
	return (cap - n < 4 ? 0 : n);
}

/* The general path: j's compact text without its closing brace, in a
   new buffer with room for 3 more bytes. */
static char *
bus_dump_body(json_t *j, size_t *len)
{
	struct qmp_out	 o;
	char		*s;
	size_t		 n;

	if ((s = json_dumps(j, JSON_COMPACT)) == NULL) {
		/* jansson refuses U+0000, kept as QEMU keeps it (C0 80):
		   QEMU's writer gives it back as \u0000 */
		qmp_out_init(&o);
		qmp_out_json(&o, j, QMP_OUT_COMPACT);
		if (o.failed || (s = malloc(o.len + 1)) == NULL) {
			qmp_out_free(&o);
			return (NULL);
		}
		memcpy(s, o.buf, o.len);
		s[o.len] = '\0';
		qmp_out_free(&o);
	}
	n = strlen(s);
	if (n < 2 || s[n - 1] != '}') {
		free(s);
		return (NULL);
	}
	if ((s = realloc(s, n + 3)) == NULL)
		return (NULL);
	*len = n - 1;
	return (s);
}

/* body has 3 bytes of room past blen. */
static void
bus_emit(const char *vm, const char *name, char *body, size_t blen)
{
	struct evlog_rec	rec;

	if (evlog_on()) {
		if (evlog_append(vm, name, body, blen, NULL) == -1)
			log_warn("event %s of %s too long for the event log: "
			    "not delivered", name, vm != NULL ? vm : "broker");
		return;
	}
	memcpy(body + blen, "}\r\n", 3);
	rec.seq = 0;
	rec.vm = vm;
	rec.event = name;
	rec.json = body;
	rec.len = blen + 1;
	bus_sink->deliver(&rec, bus_arg);
}

static bool
bus_wanted(void)
{
	if (evlog_on())
		return (true);
	return (bus_sink != NULL && bus_sink->active(bus_arg));
}

void
bus_publish(const char *vm, const char *event, json_t *data)
{
	json_t	*j;
	char	*body;
	size_t	 blen;

	if (!bus_wanted()) {
		json_decref(data);
		return;
	}
	if (data == NULL)
		data = json_object();
	j = json_pack("{s:s,s:o,s:o}", "event", event, "data", data,
	    "timestamp", bus_timestamp_now());
	if (j != NULL && vm != NULL)
		json_object_set_new(j, "vm", json_string(vm));
	if (j == NULL || (body = bus_dump_body(j, &blen)) == NULL) {
		log_err("cannot make event %s", event);
		json_decref(j);
		return;
	}
	json_decref(j);
	bus_emit(vm, event, body, blen);
	free(body);
}

void
bus_vm_event(const char *vm, json_t *event)
{
	const char	*name;
	char		 stack[BUS_STACK], *body;
	size_t		 blen;
	json_t		*j, *v;

	if (!bus_wanted() || (name = qmp_event_name(event)) == NULL)
		return;
	if ((blen = bus_format_vm_event(stack, sizeof stack, vm, name,
	    event)) > 0) {
		bus_emit(vm, name, stack, blen);
		return;
	}
	if ((j = json_object()) == NULL)
		return;
	json_object_set_new(j, "event", json_string(name));
	json_object_set_new(j, "vm", json_string(vm));
	if ((v = json_object_get(event, "data")) != NULL)
		json_object_set(j, "data", v);
	if ((v = json_object_get(event, "timestamp")) != NULL)
		json_object_set(j, "timestamp", v);
	body = bus_dump_body(j, &blen);
	json_decref(j);
	if (body == NULL)
		return;
	bus_emit(vm, name, body, blen);
	free(body);
}

/* The log wrote a batch: deliver it, in order. */
static void
bus_on_append(uint64_t last, void *arg)
{
	struct evlog_rec	rec;
	uint64_t		lf, lt;
	int			k;

	while ((k = evlog_cur_next(bus_cur, &rec, &lf, &lt)) !=
	    EVLOG_CUR_END) {
		if (k == EVLOG_CUR_REC && bus_sink != NULL)
			bus_sink->deliver(&rec, bus_arg);
	}
}

static void
bus_on_full(const char *why, uint64_t last_on_disk, void *arg)
{
	bus_publish(NULL, "EVENT_LOG_FULL", json_pack("{s:s,s:I,s:s}",
	    "reason", why, "last-on-disk", (json_int_t)last_on_disk,
	    "dir", (const char *)arg));
}

static char	*bus_log_dir;

int
bus_log_start(struct event_base *base, struct qmp_error *err)
{
	struct evlog_opts	o;

	if (!conf.event_log)
		return (0);
	memset(&o, 0, sizeof o);
	if (conf.state_dir != NULL &&
	    asprintf(&bus_log_dir, "%s/events", conf.state_dir) == -1) {
		qmp_error_set(err, QMP_CLS_GENERIC, "out of memory");
		return (-1);
	}
	o.dir = bus_log_dir;
	/* The loop writes the run dir (a tmpfs), a thread the segments: a
	   slow disk never stalls the loop nor the subscribers. */
	o.wal_dir = bus_log_dir != NULL ? conf.run_dir : NULL;
	o.mem_bytes = conf.event_log_memory;
	o.segment_bytes = conf.event_log_segment;
	o.max_bytes = conf.event_log_max;
	o.max_age_s = conf.event_log_max_age_s;
	if (evlog_open(base, &o, err) == -1)
		goto fail;
	if ((bus_cur = evlog_cur_new(evlog_last())) == NULL ||
	    evlog_listen(bus_on_append, NULL) == -1) {
		qmp_error_set(err, QMP_CLS_GENERIC, "out of memory");
		goto fail;
	}
	evlog_set_full_cb(bus_on_full, bus_log_dir);
	log_info("event log %s: epoch %s, seq %llu to %llu",
	    bus_log_dir != NULL ? bus_log_dir : "(memory)", evlog_epoch(),
	    (unsigned long long)evlog_first(),
	    (unsigned long long)evlog_last());
	return (0);
fail:
	bus_log_stop();
	return (-1);
}

void
bus_log_stop(void)
{
	evlog_close();
	evlog_cur_free(bus_cur);
	bus_cur = NULL;
	free(bus_log_dir);
	bus_log_dir = NULL;
}
