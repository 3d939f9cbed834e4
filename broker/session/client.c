/*
 * Client sessions: the chan callbacks, replies, the output queue's rules
 * (client.h says them).
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker/core/conf.h"
#include "broker/core/log.h"
#include "broker/core/bus.h"
#include "broker/core/evlog.h"
#include "broker/core/loop.h"
#include "broker/session/client.h"
#include "broker/session/listen.h"
#include "broker/session/share.h"
#include "broker/session/sub.h"
#include "hv/chan.h"
#include "proto/qmp_out.h"

#define CLIENT_MAX_INFLIGHT	1024
/* QEMU 7.2 with oob on: one in-band command at work and 8 queued, then
   it stops reading the client (exec-oob included) until one is done */
#define CLIENT_OOB_INBAND_MAX	9
#define CLIENT_OUTQ_PAUSE	(8u * 1024 * 1024)

static TAILQ_HEAD(, client) clients = TAILQ_HEAD_INITIALIZER(clients);
static size_t			nclients;
static uint64_t			client_next_id;
static const struct client_hooks *client_hooks;
static bool			client_held;	/* an upgrade is under way */
/* Since start, over every client (the metrics' events out/dropped). */
static uint64_t			client_events_out;
static uint64_t			client_events_dropped;

static void	client_msg(struct chan *, json_t *, int *, size_t, void *);
static void	client_bad(struct chan *, const struct qmp_error *, void *);
static void	client_closed(struct chan *, const char *, void *);
static void	client_drained(struct chan *, void *);
static void	client_req_done(struct req *, json_t *,
		    const struct qmp_error *, void *);

static const struct chan_ops client_chan_ops = {
	client_msg,
	client_bad,
	client_closed,
	client_drained,
};

void
client_set_hooks(const struct client_hooks *h)
{
	client_hooks = h;
}

size_t
client_count(void)
{
	return (nclients);
}

void
client_stats(struct client_stats *st)
{
	const struct client	*c;

	memset(st, 0, sizeof *st);
	st->events_out = client_events_out;
	st->events_dropped = client_events_dropped;
	TAILQ_FOREACH(c, &clients, entry) {
		if (c->dead)
			continue;
		if (c->kind == CLIENT_CONTROL)
			st->control++;
		else
			st->shared++;
		st->subscriptions += c->nsubs;
		st->queued_bytes += chan_outq(c->chan);
	}
}

struct client *
client_of(const struct req *r)
{
	/* A request made by someone else (the broker itself, a test, a
	   fuzzer) has no client, whatever its arg is. */
	return (req_owner(r, client_req_done));
}

struct client *
client_new(int fd, enum client_kind kind, const struct peer *p,
    struct vm *vm)
{
	struct client		*c;
	struct chan_opts	 o;

	if ((c = calloc(1, sizeof *c)) == NULL)
		return (NULL);
	memset(&o, 0, sizeof o);
	o.max_msg = conf.max_msg;
	o.line_timeout_ms = conf.line_timeout_ms;
	o.max_fds = conf.max_fds;
	/* clients talk to the broker as to QEMU's monitor */
	o.qemu_grammar = 1;
	if ((c->chan = chan_new(loop_base, fd, &o, &client_chan_ops,
	    c)) == NULL) {
		free(c);
		return (NULL);
	}
	c->id = ++client_next_id;
	c->kind = kind;
	peer_copy(&c->peer, p);
	c->vm = vm;
	LIST_INIT(&c->reqs);
	TAILQ_INIT(&c->slots);
	TAILQ_INIT(&c->subs);
	TAILQ_INSERT_TAIL(&clients, c, entry);
	nclients++;
	log_debug("client %llu: connected (%s%s) uid %u pid %ld",
	    (unsigned long long)c->id, kind == CLIENT_CONTROL ? "control" :
	    "shared ", kind == CLIENT_CONTROL ? "" : vm_name(vm),
	    (unsigned)p->uid, (long)p->pid);
	return (c);
}

static void
client_release(void *arg)
{
	free(arg);
}

static void
client_slots_free(struct client *c)
{
	struct client_slot	*s;

	while ((s = TAILQ_FIRST(&c->slots)) != NULL) {
		TAILQ_REMOVE(&c->slots, s, entry);
		free(s->buf);
		free(s);
	}
	c->nslots = 0;
	c->noob = 0;
}

void
client_free(struct client *c)
{
	struct req	*r;

	if (c->dead)
		return;
	log_debug("client %llu: gone", (unsigned long long)c->id);
	c->dead = true;
	TAILQ_REMOVE(&clients, c, entry);
	nclients--;
	sub_client_free(c);
	if (c->share != NULL)
		share_detach(c);
	/* Requests still at work answer into the void. */
	while ((r = LIST_FIRST(&c->reqs)) != NULL)
		req_orphan(r);
	client_slots_free(c);
	if (c->stall_ev != NULL)
		event_free(c->stall_ev);
	chan_free(c->chan);
	peer_release(&c->peer);
	/* The caller may be one of c's own callbacks: the memory goes on
	   a later pass. */
	defer_free(loop_base, &c->defer, client_release, c);
	/* An fd came back: listeners that ran out may accept again. */
	lsn_resume_all();
	if (nclients == 0 && client_hooks != NULL &&
	    client_hooks->last_gone != NULL)
		client_hooks->last_gone();
}

void
client_free_all(void)
{
	struct client	*c;

	while ((c = TAILQ_FIRST(&clients)) != NULL)
		client_free(c);
}

static void
client_send_buf(struct client *c, const char *buf, size_t len)
{
	struct client_slot	*s = c->hold;
	char			*nbuf;

	if (s != NULL) {
		/* an answer that waits for those before it */
		if ((nbuf = realloc(s->buf, s->len + len)) == NULL) {
			log_err("client %llu: out of memory",
			    (unsigned long long)c->id);
			return;
		}
		memcpy(nbuf + s->len, buf, len);
		s->buf = nbuf;
		s->len += len;
		return;
	}
	if (chan_send(c->chan, buf, len, NULL, 0) == 0)
		c->queued += len;
}

static void
client_send_json(struct client *c, json_t *j)
{
	char	*buf;
	size_t	 len;

	if ((buf = qmp_dump_qemu(j, &len)) == NULL) {
		log_err("client %llu: cannot serialise a message",
		    (unsigned long long)c->id);
		return;
	}
	client_send_buf(c, buf, len);
	free(buf);
}

void
client_greet(struct client *c)
{
	const struct qmp_version	*v;
	json_t				*g;

	if (c->greeted)
		return;
	if (c->kind == CLIENT_CONTROL)
		v = loop_version();
	else if (c->vm == NULL || (v = vm_version(c->vm)) == NULL)
		return;
	/* exactly the capabilities we can honour */
	if ((g = qmp_greeting_new(v, client_oob_offered(c) ?
	    json_pack("[s]", "oob") : json_array())) == NULL)
		return;
	client_send_json(c, g);
	json_decref(g);
	c->greeted = true;
}

void
client_set_negotiated(struct client *c, bool oob)
{
	c->negotiated = true;
	c->oob = oob;
}

bool
client_oob_offered(const struct client *c)
{
	if (c->kind == CLIENT_CONTROL)
		return (true);
	return (c->vm != NULL && vm_oob_offered(c->vm));
}

static void
client_stall_cb(evutil_socket_t fd, short what, void *arg)
{
	struct client	*c = arg;
	struct timeval	 tv;
	uint64_t	 written;

	written = c->queued - chan_outq(c->chan);
	if (written < c->stall_mark) {
		log_warn("client %llu: replies unread for %d ms (uid %u pid "
		    "%ld): disconnecting", (unsigned long long)c->id,
		    conf.reply_stall_ms, (unsigned)c->peer.uid,
		    (long)c->peer.pid);
		client_free(c);
		return;
	}
	if (written < c->last_reply_end) {
		c->stall_mark = c->last_reply_end;
		tv.tv_sec = conf.reply_stall_ms / 1000;
		tv.tv_usec = (conf.reply_stall_ms % 1000) * 1000;
		evtimer_add(c->stall_ev, &tv);
	}
}

/* A reply was queued: it must be read within reply_stall_ms. One timer
   per client, armed only while a reply might be unread. */
static void
client_note_reply(struct client *c)
{
	struct timeval	tv;

	c->last_reply_end = c->queued;
	if (chan_outq(c->chan) == 0)
		return;
	if (c->stall_ev == NULL &&
	    (c->stall_ev = evtimer_new(loop_base, client_stall_cb, c)) == NULL)
		return;
	if (evtimer_pending(c->stall_ev, NULL))
		return;
	c->stall_mark = c->last_reply_end;
	tv.tv_sec = conf.reply_stall_ms / 1000;
	tv.tv_usec = (conf.reply_stall_ms % 1000) * 1000;
	evtimer_add(c->stall_ev, &tv);
}

/*
 * The reply as QEMU writes it, into a stack buffer that chan_send copies
 * once: no envelope object to build, no malloc'd dump unless it is big.
 */
static void
client_reply(struct client *c, json_t *id, json_t *ret,
    const struct qmp_error *err)
{
	struct qmp_out	 o;
	json_t		*e = NULL;

	/* The events a command caused (QEMU sends STOP before the reply
	   to stop) reach subscribers before its reply, as without the
	   event log. */
	evlog_flush();
	if (err != NULL && (e = qmp_error_json(err)) == NULL)
		goto out;
	if (err == NULL && ret == NULL)
		goto out;
	qmp_out_init(&o);
	qmp_out_reply(&o, err == NULL ? ret : NULL, e, id);
	if (o.failed)
		log_err("client %llu: cannot serialise a reply",
		    (unsigned long long)c->id);
	else {
		client_send_buf(c, o.buf, o.len);
		client_note_reply(c);
	}
	qmp_out_free(&o);
out:
	json_decref(e);
	json_decref(ret);
}

static void	client_req_finished(struct client *);
static void	client_note_reply(struct client *);
static void	client_pause_check(struct client *);

/* A new slot at the end of the order; NULL if out of memory (the
   answer then goes out at once). */
static struct client_slot *
client_slot_new(struct client *c, struct req *r)
{
	struct client_slot	*s;

	if ((s = calloc(1, sizeof *s)) == NULL)
		return (NULL);
	s->r = r;
	TAILQ_INSERT_TAIL(&c->slots, s, entry);
	c->nslots++;
	return (s);
}

/* Answers at the head of the order that are complete go out. */
static void
client_slots_flush(struct client *c)
{
	struct client_slot	*s;
	int			 sent = 0;

	while ((s = TAILQ_FIRST(&c->slots)) != NULL && s->r == NULL) {
		TAILQ_REMOVE(&c->slots, s, entry);
		c->nslots--;
		if (s->oob)
			c->noob--;
		if (s->len > 0)
			client_send_buf(c, s->buf, s->len);
		free(s->buf);
		free(s);
		sent = 1;
	}
	if (sent) {
		client_note_reply(c);
		if (c->paused)
			client_pause_check(c);
	}
}

/* An answer that is not a request's (a parse error, a refused
   command): after the answers still due before it. */
static void
client_reply_now(struct client *c, json_t *id, json_t *ret,
    const struct qmp_error *err)
{
	struct client_slot	*s = NULL;

	if (!TAILQ_EMPTY(&c->slots))
		s = client_slot_new(c, NULL);
	c->hold = s;
	client_reply(c, id, ret, err);
	c->hold = NULL;
	if (s != NULL) {
		client_slots_flush(c);
		client_pause_check(c);
	}
}

static void
client_req_done(struct req *r, json_t *ret, const struct qmp_error *err,
    void *arg)
{
	struct client		*c = arg;
	struct client_slot	*s;

	c->nreqs--;
	TAILQ_FOREACH(s, &c->slots, entry) {
		if (s->r == r)
			break;
	}
	/* an exec-oob's answer goes now; its slot only holds back what
	   came after it */
	c->hold = s != NULL && !s->oob ? s : NULL;
	client_reply(c, req_id(r), ret, err);
	c->hold = NULL;
	if (s != NULL) {
		s->r = NULL;
		client_slots_flush(c);
	}
	client_req_finished(c);
}

static void
client_pause_check(struct client *c)
{
	int	want;

	want = client_held || c->nreqs >= CLIENT_MAX_INFLIGHT ||
	    chan_outq(c->chan) > CLIENT_OUTQ_PAUSE ||
	    (c->oob && c->nslots - c->noob >= CLIENT_OOB_INBAND_MAX);
	if (want != c->paused && !c->closing) {
		c->paused = want;
		chan_pause_read(c->chan, want);
	}
}

/* A request of c finished: c may resume reading, or go. */
static void
client_req_finished(struct client *c)
{
	if (c->draining && c->nreqs == 0) {
		client_shutdown(c);
		return;
	}
	if (c->paused && (c->nreqs < CLIENT_MAX_INFLIGHT / 2 || c->oob))
		client_pause_check(c);
}

static void
client_close_fds(int *fds, size_t nfds)
{
	size_t	i;

	for (i = 0; i < nfds; i++)
		close(fds[i]);
}

static void
client_msg(struct chan *ch, json_t *msg, int *fds, size_t nfds, void *arg)
{
	struct client		*c = arg;
	struct qmp_error	 err;
	struct req		*r;
	const char		*name;
	json_t			*args, *id = NULL;
	struct client_slot	*s;
	bool			 oob;

	if (c->closing || c->draining) {
		client_close_fds(fds, nfds);
		return;
	}
	/* exec-oob only once the client enabled oob, as in QEMU */
	if (qmp_cmd_parse_oob(msg, c->oob, &name, &args, &id, &oob,
	    &err) == -1) {
		client_close_fds(fds, nfds);
		client_reply_now(c, id, NULL, &err);
		return;
	}
	id = json_incref(id);
	if (c->kind == CLIENT_SHARE && strcmp(name, "qmp_capabilities") != 0) {
		if (!c->negotiated) {
			client_close_fds(fds, nfds);
			qmp_error_set(&err, QMP_CLS_NOTFOUND, "Expecting "
			    "capabilities negotiation with 'qmp_capabilities'");
			client_reply_now(c, id, NULL, &err);
			json_decref(id);
			return;
		}
	}
	if ((r = req_new(&c->reqs, &c->peer, id, fds, nfds, client_req_done,
	    c)) == NULL) {
		log_err("client %llu: out of memory", (unsigned long long)c->id);
		return;
	}
	c->nreqs++;
	/* a shared socket answers in input order, as QEMU does; out of
	   band is answered as soon as it is done, past the others, and
	   before anything sent after it */
	if (oob)
		req_set_oob(r);
	if (c->kind == CLIENT_SHARE && (s = client_slot_new(c, r)) != NULL &&
	    oob) {
		s->oob = true;
		c->noob++;
	}
	if (c->kind == CLIENT_SHARE && c->negotiated)
		share_request(r, c, name, args);
	else
		client_hooks->dispatch(r, name, args, c->negotiated);
	client_pause_check(c);
}

static void
client_bad(struct chan *ch, const struct qmp_error *err, void *arg)
{
	struct client	*c = arg;

	if (!c->closing)
		client_reply_now(c, NULL, NULL, err);
}

static void
client_closed(struct chan *ch, const char *why, void *arg)
{
	struct client	*c = arg;

	log_debug("client %llu: %s", (unsigned long long)c->id,
	    why != NULL ? why : "closed");
	client_free(c);
}

static void
client_drained(struct chan *ch, void *arg)
{
	struct client	*c = arg;
	json_t		*j;

	if (c->dropped != 0 && !c->closing) {
		log_info("client %llu: %llu events dropped (queue full)",
		    (unsigned long long)c->id,
		    (unsigned long long)c->dropped);
		j = json_pack("{s:s,s:{s:I},s:o}", "event", "EVENTS_DROPPED",
		    "data", "count", (json_int_t)c->dropped, "timestamp",
		    bus_timestamp_now());
		/* the seq range to replay with "since": from - 1 */
		if (j != NULL && c->drop_from != 0) {
			json_object_set_new(json_object_get(j, "data"), "from",
			    json_integer((json_int_t)c->drop_from));
			json_object_set_new(json_object_get(j, "data"), "to",
			    json_integer((json_int_t)c->drop_to));
		}
		c->dropped = 0;
		c->drop_from = c->drop_to = 0;
		if (j != NULL) {
			client_send_json(c, j);
			json_decref(j);
		}
	}
	if (c->paused)
		client_pause_check(c);
	sub_drained(c);
}

void
client_send_event(struct client *c, const char *buf, size_t len,
    uint64_t seq)
{
	if (!c->negotiated || c->closing)
		return;
	if (chan_outq(c->chan) + len > conf.client_queue_max) {
		if (seq != 0) {
			if (c->dropped == 0 || c->drop_from == 0)
				c->drop_from = seq;
			c->drop_to = seq;
		}
		c->dropped++;
		c->dropped_total++;
		client_events_dropped++;
		return;
	}
	client_events_out++;
	client_send_buf(c, buf, len);
}

void
client_shutdown(struct client *c)
{
	if (c->closing)
		return;
	c->closing = true;
	chan_shutdown(c->chan);
}

void
client_shutdown_idle(struct client *c)
{
	if (c->nreqs == 0)
		client_shutdown(c);
	else
		c->draining = true;
}

void
client_shutdown_all(void)
{
	struct client	*c, *c1;

	TAILQ_FOREACH_SAFE(c, &clients, entry, c1)
		client_shutdown(c);
}

/* ---- upgrade ---- */

void
client_hold(bool hold)
{
	struct client	*c;

	client_held = hold;
	TAILQ_FOREACH(c, &clients, entry)
		client_pause_check(c);
}

size_t
client_busy(const struct req *except)
{
	struct client	*c, *asker = except != NULL ? client_of(except) : NULL;
	size_t		 n = 0;

	TAILQ_FOREACH(c, &clients, entry)
		if (c->closing || c->draining || c->replay != NULL ||
		    c->nslots > 0 || c->nreqs > (c == asker ? 1u : 0u))
			n++;
	return (n);
}

static json_t *
client_export(struct client *c, const struct req *except, json_t *fds)
{
	json_t	*j, *ch, *subs, *peer;

	if ((subs = sub_export(c)) == NULL)
		return (NULL);
	if ((peer = peer_export(&c->peer)) == NULL) {
		json_decref(subs);
		return (NULL);
	}
	if ((ch = chan_export(c->chan, fds)) == NULL) {
		json_decref(subs);
		json_decref(peer);
		return (NULL);
	}
	j = json_pack("{s:I,s:s,s:o,s:o,s:o,s:b,s:b,s:b,s:I,s:I,s:I,s:I}",
	    "id", (json_int_t)c->id, "kind", c->kind == CLIENT_CONTROL ?
	    "control" : "shared", "chan", ch, "peer", peer, "subs", subs,
	    "greeted", c->greeted, "negotiated", c->negotiated, "oob", c->oob,
	    "dropped", (json_int_t)c->dropped, "dropped-total",
	    (json_int_t)c->dropped_total, "drop-from",
	    (json_int_t)c->drop_from, "drop-to", (json_int_t)c->drop_to);
	if (j != NULL && c->kind == CLIENT_SHARE)
		json_object_set_new(j, "vm", c->vm != NULL ?
		    json_string(vm_name(c->vm)) : json_null());
	if (j != NULL && except != NULL && client_of(except) == c)
		json_object_set(j, "asker", req_id(except) != NULL ?
		    req_id(except) : json_null());
	return (j);
}

json_t *
client_export_all(const struct req *except, json_t *fds)
{
	struct client	*c;
	json_t		*a, *e;

	if (client_busy(except) > 0 || (a = json_array()) == NULL)
		return (NULL);
	TAILQ_FOREACH(c, &clients, entry) {
		if ((e = client_export(c, except, fds)) == NULL ||
		    json_array_append_new(a, e) != 0) {
			json_decref(a);
			return (NULL);
		}
	}
	return (a);
}

static uint64_t
client_u64(const json_t *j, const char *key)
{
	json_int_t	v = json_integer_value(json_object_get(j, key));

	return (v > 0 ? (uint64_t)v : 0);
}

/* One client back; -1 (fd closed) if it cannot be. */
static struct client *
client_import(const json_t *e, struct qmp_error *err)
{
	struct client		*c;
	struct chan_opts	 o;
	struct peer		 p;
	struct vm		*vm = NULL;
	const char		*kind, *vmname;
	int			 fd;

	kind = json_string_value(json_object_get(e, "kind"));
	fd = chan_export_fd(json_object_get(e, "chan"));
	if (fd == -1 || kind == NULL || (strcmp(kind, "control") != 0 &&
	    strcmp(kind, "shared") != 0) || !json_is_object(json_object_get(e,
	    "subs"))) {
		qmp_error_set(err, QMP_CLS_GENERIC, "client malformed");
		if (fd != -1)
			close(fd);
		return (NULL);
	}
	if (strcmp(kind, "shared") == 0 && ((vmname = json_string_value(
	    json_object_get(e, "vm"))) == NULL ||
	    (vm = vm_find(vmname)) == NULL)) {
		qmp_error_set(err, QMP_CLS_GENERIC, "its VM is gone");
		close(fd);
		return (NULL);
	}
	if (peer_import(fd, json_object_get(e, "peer"), &p) == -1) {
		qmp_error_set(err, QMP_CLS_GENERIC, "no peer credentials");
		close(fd);
		return (NULL);
	}
	if ((c = calloc(1, sizeof *c)) == NULL) {
		qmp_error_set(err, QMP_CLS_GENERIC, "out of memory");
		peer_release(&p);
		close(fd);
		return (NULL);
	}
	memset(&o, 0, sizeof o);
	o.max_msg = conf.max_msg;
	o.line_timeout_ms = conf.line_timeout_ms;
	o.max_fds = conf.max_fds;
	o.qemu_grammar = 1;
	/* the output may hold a full event queue and its replies */
	if ((c->chan = chan_import(loop_base, json_object_get(e, "chan"),
	    conf.client_queue_max + CLIENT_OUTQ_PAUSE, &o, &client_chan_ops,
	    c, err)) == NULL) {
		peer_release(&p);
		free(c);
		close(fd);
		return (NULL);
	}
	c->id = client_u64(e, "id");
	if (c->id == 0)
		c->id = client_next_id + 1;
	if (c->id > client_next_id)
		client_next_id = c->id;
	c->kind = strcmp(kind, "control") == 0 ? CLIENT_CONTROL : CLIENT_SHARE;
	c->peer = p;
	c->vm = vm;
	c->greeted = json_is_true(json_object_get(e, "greeted"));
	c->negotiated = json_is_true(json_object_get(e, "negotiated"));
	c->oob = json_is_true(json_object_get(e, "oob"));
	c->dropped = client_u64(e, "dropped");
	c->dropped_total = client_u64(e, "dropped-total");
	c->drop_from = client_u64(e, "drop-from");
	c->drop_to = client_u64(e, "drop-to");
	c->queued = chan_outq(c->chan);
	LIST_INIT(&c->reqs);
	TAILQ_INIT(&c->slots);
	TAILQ_INIT(&c->subs);
	TAILQ_INSERT_TAIL(&clients, c, entry);
	nclients++;
	if (vm != NULL && share_adopt(c) == -1) {
		qmp_error_set(err, QMP_CLS_GENERIC, "its VM has no socket");
		client_free(c);
		return (NULL);
	}
	if (sub_import(c, json_object_get(e, "subs")) == -1) {
		qmp_error_set(err, QMP_CLS_GENERIC, "subscriptions malformed");
		client_free(c);
		return (NULL);
	}
	if (c->queued > 0)
		client_note_reply(c);
	client_pause_check(c);
	return (c);
}

int
client_import_all(const json_t *st, struct client **asker,
    json_t **asker_id, struct qmp_error *err)
{
	struct qmp_error	 e;
	struct client		*c;
	json_t			*j;
	size_t			 i;

	if (asker != NULL)
		*asker = NULL;
	if (asker_id != NULL)
		*asker_id = NULL;
	if (!json_is_array(st)) {
		qmp_error_set(err, QMP_CLS_GENERIC, "clients: malformed");
		return (-1);
	}
	json_array_foreach(st, i, j) {
		if ((c = client_import(j, &e)) == NULL) {
			log_warn("upgrade: client %zu not carried over: %s", i,
			    e.desc);
			continue;
		}
		if (json_object_get(j, "asker") != NULL && asker != NULL &&
		    *asker == NULL) {
			*asker = c;
			if (asker_id != NULL)
				*asker_id = json_incref(json_object_get(j,
				    "asker"));
		}
	}
	return (0);
}

void
client_answer(struct client *c, json_t *id, json_t *ret)
{
	client_reply(c, json_is_null(id) ? NULL : id, ret, NULL);
	client_pause_check(c);
}
