/*
 * Subscriptions and event fan-out.
 *
 * Only clients holding a subscription are on the fan-out list, so an
 * event nobody wants costs one empty-list check. An event is serialised
 * at most once, on its first match, and the same bytes are queued to
 * every subscriber; a connection gets an event once however many of its
 * subscriptions match it.
 */
#include "config.h"

#include <sys/time.h>

#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

#include "broker/core/bus.h"
#include "broker/core/conf.h"
#include "broker/core/loop.h"
#include "broker/session/client.h"
#include "broker/session/policy.h"
#include "broker/session/sub.h"

#define SUB_GLOB_MAX	256	/* bytes per glob */
#define SUB_GLOBS_MAX	64	/* globs per list */

struct sub {
	uint32_t	 id;
	char		**vms;		/* NULL: every VM */
	size_t		 nvms;
	char		**events;	/* NULL: every event */
	size_t		 nevents;
	TAILQ_ENTRY(sub) entry;
};

static TAILQ_HEAD(, client) sub_clients = TAILQ_HEAD_INITIALIZER(sub_clients);

bool
sub_glob_ok(const char *g)
{
	size_t	len = strlen(g);

	return (len > 0 && len <= SUB_GLOB_MAX);
}

/*
 * Most globs are a name or a prefix and a star ("vm*", "BLOCK_JOB_*"):
 * those are compared directly, the rest go to fnmatch. Every event is
 * matched against every subscription, and fnmatch's generality cost
 * more than the rest of the fan-out (callgrind).
 */
static bool
sub_match(const char *g, const char *s)
{
	size_t	i;

	for (i = 0; g[i] != '\0'; i++) {
		switch (g[i]) {
		case '*':
			if (g[i + 1] == '\0')
				return (strncmp(g, s, i) == 0);
			return (fnmatch(g, s, 0) == 0);
		case '?':
		case '[':
		case '\\':
			return (fnmatch(g, s, 0) == 0);
		}
		if (g[i] != s[i])
			return (false);
	}
	return (s[i] == '\0');
}

static bool
sub_match_list(char *const *globs, size_t n, const char *s)
{
	size_t	i;

	if (globs == NULL)
		return (true);
	if (s == NULL)
		return (false);
	for (i = 0; i < n; i++) {
		if (sub_match(globs[i], s))
			return (true);
	}
	return (false);
}

bool
sub_wants(const struct client *c, const char *vm, const char *event)
{
	const struct sub	*s;

	TAILQ_FOREACH(s, &c->subs, entry) {
		if (sub_match_list(s->vms, s->nvms, vm) &&
		    sub_match_list(s->events, s->nevents, event))
			return (true);
	}
	return (false);
}

static void
sub_free_list(char **l, size_t n)
{
	size_t	i;

	for (i = 0; i < n; i++)
		free(l[i]);
	free(l);
}

static void
sub_free(struct sub *s)
{
	sub_free_list(s->vms, s->nvms);
	sub_free_list(s->events, s->nevents);
	free(s);
}

void
sub_client_free(struct client *c)
{
	struct sub	*s;

	if (TAILQ_EMPTY(&c->subs))
		return;
	while ((s = TAILQ_FIRST(&c->subs)) != NULL) {
		TAILQ_REMOVE(&c->subs, s, entry);
		sub_free(s);
	}
	c->nsubs = 0;
	TAILQ_REMOVE(&sub_clients, c, sub_entry);
}

/*
 * A QEMU event with "vm" added, serialised by hand into buf: the names
 * need no escaping (a VM name is [A-Za-z0-9_.-], the event's is checked)
 * and QEMU's timestamp is two integers, so only "data" goes through
 * jansson. Member order as before: event, vm, data, timestamp. Returns
 * the length, or 0 if the event needs the general path.
 */
static size_t
sub_format_vm_event(char *buf, size_t cap, const char *vm, const char *name,
    json_t *ev)
{
	json_t	*data, *ts, *sec, *usec;
	size_t	 n, k;
	int	 r;
	const char *p;

	for (p = name; *p != '\0'; p++) {
		if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
		    (*p >= '0' && *p <= '9') || *p == '_' || *p == '-' ||
		    *p == '.'))
			return (0);
	}
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
	if (cap - n < 4)
		return (0);
	memcpy(buf + n, "}\r\n", 3);
	return (n + 3);
}

/* build makes the event on the first match only: most events of a busy
   broker have no subscriber at all. With ev (a QEMU event) the bytes are
   made by hand when they can be. */
/* scope: what a peer must be allowed to see to get the event: its VM,
   or for an event of the broker's own without one (JOB_STATUS_CHANGE)
   what it is about (the job's target); NULL: every subscriber. */
static void
sub_fanout(const char *vm, const char *scope, const char *name,
    json_t *(*build)(const char *, const char *, void *), void *arg,
    json_t *ev)
{
	struct client	*c;
	json_t		*j = NULL;
	char		*buf = NULL, stack[2048];
	size_t		 len = 0;
	int		 heap = 0;

	TAILQ_FOREACH(c, &sub_clients, sub_entry) {
		if (!sub_wants(c, vm, name) ||
		    (scope != NULL && !policy_vm_visible(&c->peer, scope)))
			continue;
		if (buf == NULL) {
			if (ev != NULL && vm != NULL && (len =
			    sub_format_vm_event(stack, sizeof stack, vm, name,
			    ev)) > 0)
				buf = stack;
			else {
				if ((j = build(vm, name, arg)) == NULL)
					return;
				buf = qmp_dump(j, &len);
				json_decref(j);
				if (buf == NULL)
					return;
				heap = 1;
			}
		}
		client_send_event(c, buf, len);
	}
	if (heap)
		free(buf);
}

static json_t *
sub_build_vm_event(const char *vm, const char *name, void *arg)
{
	json_t	*ev = arg, *j, *v;

	if ((j = json_object()) == NULL)
		return (NULL);
	json_object_set_new(j, "event", json_string(name));
	json_object_set_new(j, "vm", json_string(vm));
	if ((v = json_object_get(ev, "data")) != NULL)
		json_object_set(j, "data", v);
	if ((v = json_object_get(ev, "timestamp")) != NULL)
		json_object_set(j, "timestamp", v);
	return (j);
}

static bool
sub_active(void *arg)
{
	return (!TAILQ_EMPTY(&sub_clients));
}

static void
sub_vm_event(const char *vm, json_t *event, void *arg)
{
	const char	*name;

	if ((name = qmp_event_name(event)) == NULL)
		return;
	sub_fanout(vm, vm, name, sub_build_vm_event, event, event);
}

struct sub_own {
	json_t	*data;
};

static json_t *
sub_build_own(const char *vm, const char *name, void *arg)
{
	struct sub_own	*o = arg;
	json_t		*j;

	j = json_pack("{s:s,s:O,s:o}", "event", name, "data", o->data,
	    "timestamp", bus_timestamp_now());
	if (j != NULL && vm != NULL)
		json_object_set_new(j, "vm", json_string(vm));
	return (j);
}

static void
sub_publish(const char *vm, const char *event, json_t *data, void *arg)
{
	struct sub_own	o;

	o.data = data;
	sub_fanout(vm, vm != NULL ? vm : json_string_value(json_object_get(
	    data, "target")), event, sub_build_own, &o, NULL);
}

static const struct bus_sink sub_sink = {
	sub_active,
	sub_vm_event,
	sub_publish,
};

void
sub_init(void)
{
	bus_plug(&sub_sink, NULL);
}

/* ---- what the commands do ---- */

static int
sub_globs(struct req *r, const char *what, json_t *a, char ***out,
    size_t *n)
{
	json_t	*v;
	size_t	 i;

	*out = NULL;
	*n = 0;
	if (a == NULL)
		return (0);
	if (!json_is_array(a)) {
		req_error(r, QMP_CLS_GENERIC, "Invalid parameter type for "
		    "'%s', expected: array of strings", what);
		return (-1);
	}
	if (json_array_size(a) == 0 || json_array_size(a) > SUB_GLOBS_MAX) {
		req_error(r, QMP_CLS_GENERIC, "Parameter '%s' must hold 1 to "
		    "%d patterns (omit it to match all)", what, SUB_GLOBS_MAX);
		return (-1);
	}
	json_array_foreach(a, i, v) {
		if (!json_is_string(v) || !sub_glob_ok(json_string_value(v))) {
			req_error(r, QMP_CLS_GENERIC, "Parameter '%s': item %zu "
			    "is not a pattern of 1 to %d bytes", what, i,
			    SUB_GLOB_MAX);
			return (-1);
		}
	}
	if ((*out = calloc(json_array_size(a), sizeof **out)) == NULL)
		goto nomem;
	json_array_foreach(a, i, v) {
		if (((*out)[i] = strdup(json_string_value(v))) == NULL)
			goto nomem;
		(*n)++;
	}
	return (0);
nomem:
	sub_free_list(*out, *n);
	*out = NULL;
	req_error(r, QMP_CLS_GENERIC, "out of memory");
	return (-1);
}

void
sub_subscribe(struct req *r, struct client *c, json_t *vms, json_t *events)
{
	struct sub	*s;

	if (c->nsubs >= conf.max_subs) {
		req_error(r, QMP_CLS_GENERIC, "Too many subscriptions on this "
		    "connection (max-subscriptions is %zu)", conf.max_subs);
		return;
	}
	if ((s = calloc(1, sizeof *s)) == NULL) {
		req_error(r, QMP_CLS_GENERIC, "out of memory");
		return;
	}
	if (sub_globs(r, "vms", vms, &s->vms, &s->nvms) == -1 ||
	    sub_globs(r, "events", events, &s->events, &s->nevents) == -1) {
		sub_free(s);
		return;
	}
	s->id = ++c->next_sub;
	if (TAILQ_EMPTY(&c->subs))
		TAILQ_INSERT_TAIL(&sub_clients, c, sub_entry);
	TAILQ_INSERT_TAIL(&c->subs, s, entry);
	c->nsubs++;
	req_reply(r, json_pack("{s:I}", "subscription", (json_int_t)s->id));
}

void
sub_unsubscribe(struct req *r, struct client *c, json_int_t id)
{
	struct sub	*s;

	TAILQ_FOREACH(s, &c->subs, entry) {
		if ((json_int_t)s->id == id)
			break;
	}
	if (s == NULL) {
		req_error(r, QMP_CLS_GENERIC, "No subscription %lld on this "
		    "connection", (long long)id);
		return;
	}
	TAILQ_REMOVE(&c->subs, s, entry);
	sub_free(s);
	c->nsubs--;
	if (TAILQ_EMPTY(&c->subs))
		TAILQ_REMOVE(&sub_clients, c, sub_entry);
	req_reply(r, NULL);
}

static json_t *
sub_globs_json(char **l, size_t n)
{
	json_t	*a = json_array();
	size_t	 i;

	for (i = 0; i < n; i++)
		json_array_append_new(a, json_string(l[i]));
	return (a);
}

json_t *
sub_list_json(const struct client *c)
{
	const struct sub	*s;
	json_t			*list, *j;

	list = json_array();
	TAILQ_FOREACH(s, &c->subs, entry) {
		j = json_pack("{s:I}", "subscription", (json_int_t)s->id);
		if (s->vms != NULL)
			json_object_set_new(j, "vms",
			    sub_globs_json(s->vms, s->nvms));
		if (s->events != NULL)
			json_object_set_new(j, "events",
			    sub_globs_json(s->events, s->nevents));
		json_array_append_new(list, j);
	}
	return (list);
}
