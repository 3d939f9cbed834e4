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
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "broker/core/bus.h"
#include "broker/core/conf.h"
#include "broker/core/evlog.h"
#include "broker/core/loop.h"
#include "broker/session/client.h"
#include "broker/session/policy.h"
#include "broker/session/sub.h"
#include "hv/chan.h"
#include "proto/qmp_out.h"

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

static void	sub_replay_end(struct client *);

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

	sub_replay_end(c);
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
 * May c see rec (policy.h)? A VM's event if it may see the VM; a
 * broker-wide one about something (JOB_STATUS_CHANGE: its job's
 * "target") if it may see that. Only those are parsed again, and only
 * for a peer that is not admin: they are rare next to VM events.
 */
static bool
sub_visible(const struct client *c, const struct evlog_rec *rec)
{
	json_t	*j, *t;
	bool	 ok;

	if (rec->vm != NULL)
		return (policy_vm_visible(&c->peer, rec->vm));
	if (peer_is_admin(&c->peer))
		return (true);
	if ((j = json_loadb(rec->json, rec->len, 0, NULL)) == NULL)
		return (false);
	t = json_object_get(json_object_get(j, "data"), "target");
	ok = !json_is_string(t) ||
	    policy_vm_visible(&c->peer, json_string_value(t));
	json_decref(j);
	return (ok);
}

/* One event, as the log (or the bus, log off) made it: the same bytes
   to every connection that wants it, once per connection. A connection
   replaying the log gets it from there instead, in order. */
static void
sub_deliver(const struct evlog_rec *rec, void *arg)
{
	struct client	*c;

	TAILQ_FOREACH(c, &sub_clients, sub_entry) {
		if (c->replay != NULL || !sub_wants(c, rec->vm, rec->event) ||
		    !sub_visible(c, rec))
			continue;
		client_send_event(c, rec->json, rec->len + 2, rec->seq);
	}
}

static bool
sub_active(void *arg)
{
	return (!TAILQ_EMPTY(&sub_clients));
}

static const struct bus_sink sub_sink = {
	sub_active,
	sub_deliver,
};

void
sub_init(void)
{
	bus_plug(&sub_sink, NULL);
}

/* ---- replay: subscribe with "since" ---- */

#define SUB_REPLAY_STEP	8192	/* records read per loop pass */

/*
 * A connection replaying the log: it is skipped by the live fan-out,
 * and this reads the log from its cursor while its queue has room,
 * a bounded number of records per loop pass, until the cursor has
 * caught up with what the fan-out delivered: from then on it is live.
 * One loop thread, so nothing comes between the last record replayed
 * and the first delivered live.
 */
struct sub_replay {
	struct evlog_cur	*cur;
	struct sub		*s;		/* the subscription that asked */
	uint64_t		 live_upto;	/* others' matches sent live */
	/* a wrong epoch: EVENTS_LOST to send before anything else */
	bool			 lost_first;
	uint64_t		 lost_to;
	char			 old_epoch[EVLOG_EPOCH_MAX];
	struct event		*ev;
	struct client		*c;
};

static void
sub_send_lost(struct client *c, uint64_t from, uint64_t to,
    const char *reason, const char *old_epoch)
{
	json_t	*j;
	char	*buf;
	size_t	 len;

	j = json_pack("{s:s,s:{s:I,s:I,s:s,s:s},s:o}", "event", "EVENTS_LOST",
	    "data", "from", (json_int_t)from, "to", (json_int_t)to, "reason",
	    reason, "epoch", evlog_epoch(), "timestamp", bus_timestamp_now());
	if (j == NULL)
		return;
	if (old_epoch != NULL)
		json_object_set_new(json_object_get(j, "data"), "old-epoch",
		    json_string(old_epoch));
	if ((buf = qmp_dump_qemu(j, &len)) != NULL)
		client_send_event(c, buf, len, 0);
	free(buf);
	json_decref(j);
}

static void
sub_replay_end(struct client *c)
{
	struct sub_replay	*rp = c->replay;

	if (rp == NULL)
		return;
	c->replay = NULL;
	evlog_cur_free(rp->cur);
	event_free(rp->ev);
	free(rp);
}

static bool
sub_one_wants(const struct sub *s, const struct evlog_rec *rec)
{
	return (sub_match_list(s->vms, s->nvms, rec->vm) &&
	    sub_match_list(s->events, s->nevents, rec->event));
}

static void
sub_replay_run(evutil_socket_t fd, short what, void *arg)
{
	struct client		*c = arg;
	struct sub_replay	*rp = c->replay;
	struct evlog_rec	 rec;
	uint64_t		 lf, lt;
	int			 n, k;

	if (rp == NULL || c->closing || c->dead) {
		sub_replay_end(c);
		return;
	}
	if (rp->lost_first) {
		rp->lost_first = false;
		sub_send_lost(c, rp->lost_to > 0 ? 1 : 0, rp->lost_to,
		    "epoch", rp->old_epoch);
	}
	for (n = 0; n < SUB_REPLAY_STEP; n++) {
		/* room first: the queue drains, then client_drained
		   calls us again */
		if (chan_outq(c->chan) >= conf.client_queue_max / 2)
			return;
		k = evlog_cur_next(rp->cur, &rec, &lf, &lt);
		if (k == EVLOG_CUR_END) {
			sub_replay_end(c);
			return;
		}
		if (k == EVLOG_CUR_LOST) {
			sub_send_lost(c, lf, lt, "not-held", NULL);
			continue;
		}
		if (!sub_visible(c, &rec))
			continue;
		if (sub_one_wants(rp->s, &rec) || (rec.seq > rp->live_upto &&
		    sub_wants(c, rec.vm, rec.event)))
			client_send_event(c, rec.json, rec.len + 2, rec.seq);
	}
	event_active(rp->ev, 0, 1);
}

void
sub_drained(struct client *c)
{
	if (c->replay != NULL)
		event_active(c->replay->ev, 0, 1);
}

/* Checks since/epoch and starts the replay; -1 with r answered. */
static int
sub_replay_start(struct req *r, struct client *c, struct sub *s,
    json_t *since, json_t *epoch)
{
	struct sub_replay	*rp;
	json_int_t		 n;
	uint64_t		 after, first;
	const char		*ep = NULL;
	bool			 other = false;

	if (!evlog_on()) {
		req_error(r, QMP_CLS_GENERIC, "The event log is off "
		    "(event-log no): 'since' cannot be served");
		return (-1);
	}
	if (!json_is_integer(since) || (n = json_integer_value(since)) < 0) {
		req_error(r, QMP_CLS_GENERIC, "Invalid parameter type for "
		    "'since', expected: a seq (integer >= 0)");
		return (-1);
	}
	if (epoch != NULL) {
		if (!json_is_string(epoch) || json_string_length(epoch) == 0 ||
		    json_string_length(epoch) >= EVLOG_EPOCH_MAX) {
			req_error(r, QMP_CLS_GENERIC, "Invalid parameter type "
			    "for 'epoch', expected: the string of an epoch");
			return (-1);
		}
		ep = json_string_value(epoch);
		other = strcmp(ep, evlog_epoch()) != 0;
	}
	if (!other && (uint64_t)n > evlog_last()) {
		req_error(r, QMP_CLS_GENERIC, "'since' %lld is in the future: "
		    "the last seq of epoch %s is %llu", (long long)n,
		    evlog_epoch(), (unsigned long long)evlog_last());
		return (-1);
	}
	if (c->replay != NULL) {
		req_error(r, QMP_CLS_GENERIC, "A replay is already running on "
		    "this connection: subscribe with 'since' once it is done");
		return (-1);
	}
	if ((rp = calloc(1, sizeof *rp)) == NULL)
		goto nomem;
	after = (uint64_t)n;
	first = evlog_first();
	if (other) {
		/* Nothing the subscriber holds can be matched to this
		   log: all of it, after saying what is not held. */
		after = first > 0 ? first - 1 : evlog_last();
	}
	rp->s = s;
	rp->c = c;
	rp->live_upto = evlog_written();
	if ((rp->cur = evlog_cur_new(after)) == NULL ||
	    (rp->ev = event_new(loop_base, -1, 0, sub_replay_run, c)) ==
	    NULL) {
		evlog_cur_free(rp->cur);
		free(rp);
		goto nomem;
	}
	if (other) {
		rp->lost_first = true;
		rp->lost_to = after;
		snprintf(rp->old_epoch, sizeof rp->old_epoch, "%s", ep);
	}
	c->replay = rp;
	/* runs after this pass's reply is queued: the reply comes first */
	event_active(rp->ev, 0, 1);
	return (0);
nomem:
	req_error(r, QMP_CLS_GENERIC, "out of memory");
	return (-1);
}

/* ---- what the commands do ---- */

static int
sub_globs(struct req *r, const char *what, json_t *a, char ***out,
    size_t *n)
{
	json_t	*v;
	size_t	 i;

	/* r NULL: an upgrade's import, which says no more than "bad" */
	*out = NULL;
	*n = 0;
	if (a == NULL)
		return (0);
	if (!json_is_array(a)) {
		if (r != NULL)
			req_error(r, QMP_CLS_GENERIC, "Invalid parameter type "
			    "for '%s', expected: array of strings", what);
		return (-1);
	}
	if (json_array_size(a) == 0 || json_array_size(a) > SUB_GLOBS_MAX) {
		if (r != NULL)
			req_error(r, QMP_CLS_GENERIC, "Parameter '%s' must "
			    "hold 1 to %d patterns (omit it to match all)",
			    what, SUB_GLOBS_MAX);
		return (-1);
	}
	json_array_foreach(a, i, v) {
		if (!json_is_string(v) || !sub_glob_ok(json_string_value(v))) {
			if (r != NULL)
				req_error(r, QMP_CLS_GENERIC, "Parameter '%s': "
				    "item %zu is not a pattern of 1 to %d bytes",
				    what, i, SUB_GLOB_MAX);
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
	if (r != NULL)
		req_error(r, QMP_CLS_GENERIC, "out of memory");
	return (-1);
}

void
sub_subscribe(struct req *r, struct client *c, json_t *vms, json_t *events,
    json_t *since, json_t *epoch)
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
	if (since == NULL && epoch != NULL) {
		sub_free(s);
		req_error(r, QMP_CLS_GENERIC, "'epoch' goes with 'since'");
		return;
	}
	if (since != NULL && sub_replay_start(r, c, s, since, epoch) == -1) {
		sub_free(s);
		return;
	}
	s->id = ++c->next_sub;
	if (TAILQ_EMPTY(&c->subs))
		TAILQ_INSERT_TAIL(&sub_clients, c, sub_entry);
	TAILQ_INSERT_TAIL(&c->subs, s, entry);
	c->nsubs++;
	/* The reply stays {"subscription": N}: clients pass it back to
	   unsubscribe as it is. Where the stream stands is in every
	   event, and in query-event-log. */
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
	if (c->replay != NULL && c->replay->s == s)
		sub_replay_end(c);
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

/* ---- upgrade ---- */

static json_t *
sub_list_out(char *const *l, size_t n)
{
	json_t	*a;
	size_t	 i;

	if (l == NULL)
		return (json_null());
	if ((a = json_array()) == NULL)
		return (NULL);
	for (i = 0; i < n; i++)
		json_array_append_new(a, json_string(l[i]));
	return (a);
}

json_t *
sub_export(const struct client *c)
{
	const struct sub	*s;
	json_t			*j, *a;

	if (c->replay != NULL)
		return (NULL);	/* upgrade waits for replays to end */
	if ((j = json_pack("{s:I,s:[]}", "next", (json_int_t)c->next_sub,
	    "subs")) == NULL)
		return (NULL);
	a = json_object_get(j, "subs");
	TAILQ_FOREACH(s, &c->subs, entry) {
		if (json_array_append_new(a, json_pack("{s:I,s:o,s:o}", "id",
		    (json_int_t)s->id, "vms", sub_list_out(s->vms, s->nvms),
		    "events", sub_list_out(s->events, s->nevents))) != 0) {
			json_decref(j);
			return (NULL);
		}
	}
	return (j);
}

int
sub_import(struct client *c, const json_t *st)
{
	struct sub	*s;
	json_t		*a, *e, *vms, *evs;
	json_int_t	 id, next;
	size_t		 i;

	a = json_object_get(st, "subs");
	next = json_integer_value(json_object_get(st, "next"));
	if (!json_is_array(a) || json_array_size(a) > conf.max_subs ||
	    !json_is_integer(json_object_get(st, "next")) || next < 0 ||
	    next > UINT32_MAX)
		return (-1);
	json_array_foreach(a, i, e) {
		id = json_integer_value(json_object_get(e, "id"));
		vms = json_object_get(e, "vms");
		evs = json_object_get(e, "events");
		if (id <= 0 || id > next || (s = calloc(1, sizeof *s)) == NULL)
			return (-1);
		if (sub_globs(NULL, "vms", json_is_null(vms) ? NULL : vms,
		    &s->vms, &s->nvms) == -1 || sub_globs(NULL, "events",
		    json_is_null(evs) ? NULL : evs, &s->events,
		    &s->nevents) == -1) {
			sub_free(s);
			return (-1);
		}
		s->id = (uint32_t)id;
		if (TAILQ_EMPTY(&c->subs))
			TAILQ_INSERT_TAIL(&sub_clients, c, sub_entry);
		TAILQ_INSERT_TAIL(&c->subs, s, entry);
		c->nsubs++;
	}
	c->next_sub = (uint32_t)next;
	return (0);
}
