/*
 * The per-VM QMP monitor.
 *
 * Commands live on two queues in issue order: 'queue' (not written yet)
 * and 'sent' (written, awaiting a reply). Every command has the same
 * timeout, so deadlines grow with issue order and one timer per monitor
 * is enough: it is armed for the oldest command and, when it fires,
 * re-armed for whatever is oldest then (completions never touch it).
 *
 * fd-carrying commands: QEMU keeps only the fds of its latest recvmsg for
 * the command being parsed, so an fd command is written only when nothing
 * else is in flight, and nothing is written after it until it is answered.
 * Plain commands pipeline.
 *
 * Re-entrancy: the owner may call mon_free() from any of our callbacks.
 * mon_free() marks the monitor dead, frees its channel and events, and
 * leaves the memory to a later loop pass (util/defer.h); every callback
 * is followed by a dead check, so code on the stack stops there.
 */
#include "config.h"

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "hv/chan.h"
#include "hv/mon.h"
#include "priv/priv.h"
#include "proto/qmp_out.h"
#include "util/defer.h"
#include "util/queue.h"

#define MON_TIMEOUT_DEF		30000
#define MON_BACKOFF_MIN_DEF	100
#define MON_BACKOFF_MAX_DEF	10000
#define MON_MAX_COMMANDS	4096	/* names kept from query-commands */
#define MON_MAX_NAME		128
/* With oob on, QEMU 7.2 queues at most 8 in-band commands and then stops
   reading its socket, exec-oob included: keep fewer than that in QEMU,
   so an exec-oob written now is read now. */
#define MON_OOB_INBAND_MAX	7
/* Commands given up on while postcopy is paused whose replies may still
   come: more than QEMU holds with oob on (MON_OOB_INBAND_MAX), so only a
   monitor without oob, piling commands up, ever falls back to a drop. */
#define MON_LATE_MAX		16

struct mon_cmd;
typedef void mon_internal_fn(struct mon *, json_t *, const struct qmp_error *);

struct mon_cmd {
	TAILQ_ENTRY(mon_cmd)	 entry;
	uint64_t		 id;
	uint64_t		 deadline;	/* monotonic ms */
	json_t			*args;		/* until written */
	int			*fds;		/* our dups, until written */
	size_t			 nfds;
	int			 has_fds;
	int			 oob;		/* exec-oob, not execute */
	int			 anon;		/* written without an id */
	mon_reply_fn		*fn;		/* NULL: negotiation step */
	mon_internal_fn		*internal;
	void			*arg;
	struct qmp_error	*lerr;		/* local failure, deferred */
	char			 name[];
};
TAILQ_HEAD(mon_cmdq, mon_cmd);

/* Supported commands, sorted. Monitors of the same QEMU build share one
   set: at thousands of VMs the names would otherwise dominate memory. */
struct mon_cmdset {
	struct mon_cmdset	*next;
	unsigned		 refs;
	size_t			 n;
	char			**names;
};
static struct mon_cmdset *mon_cmdsets;

struct mon {
	struct event_base	*base;
	char			*path;
	const struct mon_ops	*ops;
	void			*arg;
	int			 timeout_ms;
	int			 backoff_min;
	int			 backoff_max;
	size_t			 max_msg;
	int			 no_reconnect;
	int			 peer_pid;	/* SO_PEERCRED; 0: unknown */

	enum mon_state		 state;
	struct chan		*chan;
	int			 greeted;	/* this connection */
	int			 oob_offered;	/* QEMU's greeting offers oob */
	int			 oob;		/* ... and we enabled it */
	size_t			 ninband;	/* in-band commands written,
						   unanswered */
	struct qmp_version	 version;
	int			 have_version;
	struct mon_cmdset	*cmds;

	struct event		*retry;		/* backoff, first connect */
	struct event		*nego;		/* negotiation deadline */
	struct event		*timer;		/* oldest command's deadline */
	struct event		*defer;		/* local failures */
	unsigned		 attempts;
	uint32_t		 rnd;

	struct mon_cmdq		 queue;
	struct mon_cmdq		 sent;
	struct mon_cmdq		 done;		/* failed locally, to report */
	struct mon_cmd		*fdblock;	/* fd command awaiting reply */
	struct mon_cmd		*anon;		/* the in-band command in QEMU
						   without an id, if any */
	size_t			 npending;	/* owner's commands not completed */
	uint64_t		 timeouts;	/* commands that timed out */
	uint64_t		 next_id;
	int			 pc_paused;	/* the owner says postcopy is
						   paused: in-band goes
						   unanswered until recovery */
	/* ids of in-band commands failed while pc_paused, still in QEMU:
	   their replies are dropped when they come; late_anon: one went
	   without an id (no other goes so until its reply) */
	uint64_t		 late[MON_LATE_MAX];
	size_t			 nlate;
	int			 late_anon;

	struct defer		 reap;
	int			 dead;		/* mon_free was called */
	int			 adopted;	/* connection inherited */
	uint64_t		 resync_base;	/* fd store: ids below are the
						   dead process's */
	LIST_ENTRY(mon)		 all;
};

static LIST_HEAD(, mon)	mon_all = LIST_HEAD_INITIALIZER(mon_all);

static int	mon_adopt(struct mon *);

static void	mon_connect(struct mon *);
static void	mon_stop(struct mon *);
static void	mon_release(void *);
static void	mon_drop(struct mon *, const char *, struct mon_cmd *);
static void	mon_flush(struct mon *);
static void	mon_caps_done(struct mon *, json_t *, const struct qmp_error *);
static void	mon_commands_done(struct mon *, json_t *,
		    const struct qmp_error *);

const char *
mon_state_name(enum mon_state st)
{
	switch (st) {
	case MON_CONNECTING:
		return ("connecting");
	case MON_NEGOTIATING:
		return ("negotiating");
	case MON_READY:
		return ("ready");
	case MON_DISCONNECTED:
		return ("disconnected");
	}
	return ("unknown");
}

static uint64_t
mon_now(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000);
}

/* ---- command sets ---- */

static int
mon_cmp_name(const void *a, const void *b)
{
	return (strcmp(*(char *const *)a, *(char *const *)b));
}

static void
mon_cmdset_unref(struct mon_cmdset *cs)
{
	struct mon_cmdset	**pp;
	size_t			  i;

	if (cs == NULL || --cs->refs > 0)
		return;
	for (pp = &mon_cmdsets; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == cs) {
			*pp = cs->next;
			break;
		}
	}
	for (i = 0; i < cs->n; i++)
		free(cs->names[i]);
	free(cs->names);
	free(cs);
}

/* From query-commands' return: [{"name": S}, ...]. */
static struct mon_cmdset *
mon_cmdset_get(json_t *ret, struct qmp_error *err)
{
	struct mon_cmdset	 *cs;
	const char		**v;
	size_t			  n, i, j;
	json_t			 *e;
	const char		 *s;

	if (!json_is_array(ret)) {
		qmp_error_set(err, QMP_CLS_GENERIC,
		    "query-commands did not return an array");
		return (NULL);
	}
	if ((n = json_array_size(ret)) > MON_MAX_COMMANDS) {
		qmp_error_set(err, QMP_CLS_GENERIC,
		    "query-commands returned %zu commands (at most %d)", n,
		    MON_MAX_COMMANDS);
		return (NULL);
	}
	if ((v = calloc(n + 1, sizeof *v)) == NULL) {
		qmp_error_set(err, QMP_CLS_GENERIC, "out of memory");
		return (NULL);
	}
	for (i = 0, j = 0; i < n; i++) {
		e = json_array_get(ret, i);
		s = json_string_value(json_object_get(e, "name"));
		if (s == NULL || *s == '\0' || strlen(s) > MON_MAX_NAME) {
			free(v);
			qmp_error_set(err, QMP_CLS_GENERIC,
			    "query-commands: entry %zu has no valid name", i);
			return (NULL);
		}
		v[j++] = s;
	}
	qsort(v, j, sizeof *v, mon_cmp_name);
	/* duplicates would only confuse bsearch's users: squeeze */
	for (i = 0, n = 0; i < j; i++)
		if (n == 0 || strcmp(v[n - 1], v[i]) != 0)
			v[n++] = v[i];

	for (cs = mon_cmdsets; cs != NULL; cs = cs->next) {
		if (cs->n != n)
			continue;
		for (i = 0; i < n && strcmp(cs->names[i], v[i]) == 0; i++)
			;
		if (i == n) {
			cs->refs++;
			free(v);
			return (cs);
		}
	}
	if ((cs = calloc(1, sizeof *cs)) == NULL ||
	    (cs->names = calloc(n + 1, sizeof *cs->names)) == NULL)
		goto oom;
	for (cs->n = 0; cs->n < n; cs->n++)
		if ((cs->names[cs->n] = strdup(v[cs->n])) == NULL)
			goto oom;
	cs->refs = 1;
	cs->next = mon_cmdsets;
	mon_cmdsets = cs;
	free(v);
	return (cs);
oom:
	if (cs != NULL) {
		cs->refs = 1;
		cs->next = NULL;
		mon_cmdsets = cs;	/* unref unlinks it again */
		mon_cmdset_unref(cs);
	}
	free(v);
	qmp_error_set(err, QMP_CLS_GENERIC, "out of memory");
	return (NULL);
}

/* ---- commands ---- */

static void
mon_cmd_free(struct mon_cmd *c)
{
	size_t	i;

	json_decref(c->args);
	for (i = 0; i < c->nfds; i++)
		close(c->fds[i]);
	free(c->fds);
	free(c->lerr);
	free(c);
}

/* Report one owner's command and free it. The caller has unlinked it.
   Returns -1 if the owner freed the monitor meanwhile. */
static int
mon_complete(struct mon *m, struct mon_cmd *c, json_t *ret,
    const struct qmp_error *err)
{
	if (c->fn != NULL) {
		m->npending--;
		c->fn(m, ret, err, c->arg);
	}
	mon_cmd_free(c);
	return (m->dead ? -1 : 0);
}

static int __attribute__((format(printf, 3, 4)))
mon_fail(struct mon *m, struct mon_cmd *c, const char *fmt, ...)
{
	struct qmp_error	e;
	va_list			ap;

	va_start(ap, fmt);
	qmp_error_vset(&e, QMP_CLS_GENERIC, fmt, ap);
	va_end(ap);
	return (mon_complete(m, c, NULL, &e));
}

/* A failure found inside mon_execute: reported from the loop. */
static void __attribute__((format(printf, 4, 5)))
mon_defer_fail(struct mon *m, struct mon_cmd *c, const char *cls,
    const char *fmt, ...)
{
	va_list	ap;

	if ((c->lerr = malloc(sizeof *c->lerr)) != NULL) {
		va_start(ap, fmt);
		qmp_error_vset(c->lerr, cls, fmt, ap);
		va_end(ap);
	}
	TAILQ_INSERT_TAIL(&m->done, c, entry);
	/* dying: mon_free is reporting 'done' itself, the event is gone */
	if (!m->dead)
		event_active(m->defer, EV_TIMEOUT, 1);
}

static void
mon_defer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct mon		*m = arg;
	struct mon_cmd		*c;
	struct qmp_error	 oom;

	while (!m->dead && (c = TAILQ_FIRST(&m->done)) != NULL) {
		TAILQ_REMOVE(&m->done, c, entry);
		if (c->lerr == NULL)
			qmp_error_set(&oom, QMP_CLS_GENERIC, "out of memory");
		mon_complete(m, c, NULL, c->lerr != NULL ? c->lerr : &oom);
	}
}

static void
mon_arm_timer(struct mon *m)
{
	struct mon_cmd	*q, *s;
	uint64_t	 when, now;
	struct timeval	 tv;

	if (evtimer_pending(m->timer, NULL))
		return;
	q = TAILQ_FIRST(&m->queue);
	s = TAILQ_FIRST(&m->sent);
	/* Negotiating: the steps written answer to the negotiation
	   deadline alone (mon_nego_cb), so that one late wakeup cannot
	   find both due and report whichever this timer saw first. */
	if (evtimer_pending(m->nego, NULL))
		s = NULL;
	if (q == NULL && s == NULL)
		return;
	if (q == NULL || (s != NULL && s->deadline < q->deadline))
		when = s->deadline;
	else
		when = q->deadline;
	now = mon_now();
	when = when > now ? when - now : 0;
	tv.tv_sec = (time_t)(when / 1000);
	tv.tv_usec = (suseconds_t)(when % 1000) * 1000;
	evtimer_add(m->timer, &tv);
}

/* Postcopy paused: unlink c, an owner's in-band command QEMU holds, and
   remember its id so that its reply is dropped. 0 if c is not such a
   command or there is no room (then the connection is dropped as ever). */
static int
mon_give_up(struct mon *m, struct mon_cmd *c)
{
	if (c->fn == NULL || c->oob || c->has_fds ||
	    (c->anon ? m->late_anon : m->nlate == MON_LATE_MAX))
		return (0);
	TAILQ_REMOVE(&m->sent, c, entry);
	if (c->anon) {
		m->anon = NULL;
		m->late_anon = 1;
	} else
		m->late[m->nlate++] = c->id;
	/* ninband stays: QEMU still holds the command */
	return (1);
}

static void
mon_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct mon	*m = arg;
	struct mon_cmd	*c;
	uint64_t	 now = mon_now();

	/* Not yet written: only that command is late, the connection is
	   not to blame. */
	while ((c = TAILQ_FIRST(&m->queue)) != NULL && c->deadline <= now) {
		TAILQ_REMOVE(&m->queue, c, entry);
		m->timeouts++;
		if (mon_fail(m, c, "command '%s' timed out after %d ms "
		    "waiting for the monitor (%s)", c->name, m->timeout_ms,
		    mon_state_name(m->state)) == -1)
			return;
	}
	/* Written and unanswered while postcopy is paused: QEMU holds
	   in-band commands until recovery, which comes out of band on this
	   very connection, so keep it and fail the command alone. */
	while (m->pc_paused && (c = TAILQ_FIRST(&m->sent)) != NULL &&
	    c->deadline <= now && mon_give_up(m, c)) {
		m->timeouts++;
		if (mon_fail(m, c, "command '%s' timed out after %d ms: QEMU "
		    "does not answer in-band commands while postcopy is "
		    "paused (recover with migrate-recover)", c->name,
		    m->timeout_ms) == -1)
			return;
	}
	/* Written and unanswered: the peer is stuck. Its replies can no
	   longer be trusted to come, so start afresh. (Negotiation steps:
	   mon_nego_cb.) */
	if (!evtimer_pending(m->nego, NULL) &&
	    (c = TAILQ_FIRST(&m->sent)) != NULL && c->deadline <= now) {
		char	why[192];

		snprintf(why, sizeof why, "command '%s' timed out after %d ms",
		    c->name, m->timeout_ms);
		m->timeouts++;
		mon_drop(m, why, c);
		if (m->dead)
			return;
	}
	mon_arm_timer(m);
}

/* Command names QEMU uses need no JSON escaping. */
static int
mon_plain_name(const char *s)
{
	for (; *s != '\0'; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		    (*s >= '0' && *s <= '9') || *s == '-' || *s == '_' ||
		    *s == '.'))
			return (0);
	return (1);
}

/*
 * The command's one serialisation, into o: the envelope by hand, the
 * arguments in qmp_out's compact form (building an object to dump it
 * costs more than the rest of the round trip). Not jansson's dump: the
 * arguments may hold what QEMU reads and jansson cannot write, an
 * integer past int64 (QMP_OUT_U64_KEY) or U+0000 ("\xC0\x80"), and
 * they reach QEMU as the client sent them.
 */
static void
mon_format(const struct mon_cmd *c, struct qmp_out *o)
{
	char	 digits[24];
	size_t	 d;
	uint64_t v;

	/* memcpy, not snprintf: its format parsing cost more than the
	   bytes it wrote, twice per command (callgrind) */
	if (c->oob)
		qmp_out_raw(o, "{\"exec-oob\":", 12);
	else
		qmp_out_raw(o, "{\"execute\":", 11);
	if (mon_plain_name(c->name)) {
		qmp_out_raw(o, "\"", 1);
		qmp_out_raw(o, c->name, strlen(c->name));
		qmp_out_raw(o, "\"", 1);
	} else
		qmp_out_string(o, c->name, strlen(c->name));
	if (c->args != NULL) {
		qmp_out_raw(o, ",\"arguments\":", 13);
		qmp_out_json(o, c->args, QMP_OUT_COMPACT);
	}
	if (!c->anon) {
		d = sizeof digits;
		v = c->id;
		do {
			digits[--d] = (char)('0' + v % 10);
			v /= 10;
		} while (v != 0);
		qmp_out_raw(o, ",\"id\":", 6);
		qmp_out_raw(o, digits + d, sizeof digits - d);
	}
	qmp_out_raw(o, "}\r\n", 3);
}

/* Put a command on the wire. fds: the caller's (dup'd by chan). */
static int
mon_write(struct mon *m, struct mon_cmd *c, const int *fds, size_t nfds)
{
	struct qmp_out	o;
	int		rc;

	/*
	 * QEMU reads its monitor one byte per poll round (monitor_can_read
	 * answers 1), ~10 us a byte under TCG: the ",\"id\":N" we would add
	 * to a client's command costs more than the rest of our hop. So an
	 * in-band command goes without an id whenever no other one without
	 * an id is unanswered, and the reply without one is its; the
	 * commands written while it is there carry ids, so a QEMU (or
	 * fake-qemu) answering out of order is still matched right.
	 */
	c->anon = !c->oob && m->anon == NULL && !m->late_anon &&
	    /* after a crash (fd store), the dead process's command
	       without an id may still be answered: ids until the resync
	       is done (QEMU answers in order, so then it was) */
	    (m->resync_base == 0 || m->state == MON_READY);
	qmp_out_init(&o);
	mon_format(c, &o);
	rc = o.failed ? -1 : chan_send(m->chan, o.buf, o.len, fds, nfds);
	qmp_out_free(&o);
	if (rc == -1)
		return (-1);
	json_decref(c->args);
	c->args = NULL;
	TAILQ_INSERT_TAIL(&m->sent, c, entry);
	if (c->anon)
		m->anon = c;
	if (c->has_fds)
		m->fdblock = c;
	if (c->fn != NULL && !c->oob)
		m->ninband++;
	return (0);
}

/* May one more in-band command go to QEMU now? */
static int
mon_inband_room(const struct mon *m)
{
	return (!m->oob || m->ninband < MON_OOB_INBAND_MAX);
}

static struct mon_cmd *
mon_cmd_new(struct mon *m, const char *name, json_t *args)
{
	struct mon_cmd	*c;
	size_t		 len = strlen(name);

	if ((c = calloc(1, sizeof *c + len + 1)) == NULL) {
		json_decref(args);
		return (NULL);
	}
	memcpy(c->name, name, len + 1);
	c->id = ++m->next_id;
	c->deadline = mon_now() + (uint64_t)m->timeout_ms;
	c->args = args;
	return (c);
}

/* A negotiation step: written at once, answered to ourselves. */
static void
mon_internal(struct mon *m, const char *name, json_t *args,
    mon_internal_fn *fn)
{
	struct mon_cmd	*c;

	if ((c = mon_cmd_new(m, name, args)) == NULL) {
		mon_drop(m, "out of memory", NULL);
		return;
	}
	c->internal = fn;
	if (mon_write(m, c, NULL, 0) == -1) {
		mon_cmd_free(c);
		mon_drop(m, "cannot write to the monitor", NULL);
		return;
	}
	mon_arm_timer(m);
}

void
mon_execute(struct mon *m, const char *name, json_t *args, const int *fds,
    size_t nfds, mon_reply_fn *fn, void *arg)
{
	struct mon_cmd	*c;
	size_t		 i;

	if ((c = mon_cmd_new(m, name, args)) == NULL) {
		/* Nothing to report with: the one failure we cannot defer
		   without memory. */
		struct qmp_error e;

		qmp_error_set(&e, QMP_CLS_GENERIC, "out of memory");
		fn(m, NULL, &e, arg);
		return;
	}
	c->fn = fn;
	c->arg = arg;
	c->has_fds = nfds > 0;
	m->npending++;

	if (m->state == MON_DISCONNECTED) {
		mon_defer_fail(m, c, QMP_CLS_GENERIC,
		    "monitor %s is not connected%s", m->path,
		    m->no_reconnect ? "" : " (reconnecting)");
		return;
	}
	if (m->state == MON_READY && !mon_has_command(m, name)) {
		mon_defer_fail(m, c, QMP_CLS_NOTFOUND,
		    "The command %s has not been found", name);
		return;
	}
	/* the fast path: ready, nothing ahead of it */
	if (m->state == MON_READY && TAILQ_EMPTY(&m->queue) &&
	    m->fdblock == NULL && mon_inband_room(m) &&
	    (nfds == 0 || TAILQ_EMPTY(&m->sent))) {
		if (mon_write(m, c, fds, nfds) == -1)
			mon_defer_fail(m, c, QMP_CLS_GENERIC,
			    "cannot write to the monitor");
		else
			mon_arm_timer(m);
		return;
	}
	if (nfds > 0) {
		if ((c->fds = calloc(nfds, sizeof *c->fds)) == NULL) {
			mon_defer_fail(m, c, QMP_CLS_GENERIC, "out of memory");
			return;
		}
		for (i = 0; i < nfds; i++) {
			if ((c->fds[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 0)) ==
			    -1) {
				mon_defer_fail(m, c, QMP_CLS_GENERIC,
				    "fd %d: %s", fds[i], strerror(errno));
				return;
			}
			c->nfds++;
		}
	}
	TAILQ_INSERT_TAIL(&m->queue, c, entry);
	mon_arm_timer(m);
}

void
mon_execute_oob(struct mon *m, const char *name, json_t *args,
    mon_reply_fn *fn, void *arg)
{
	struct mon_cmd	*c;

	if ((c = mon_cmd_new(m, name, args)) == NULL) {
		struct qmp_error e;

		qmp_error_set(&e, QMP_CLS_GENERIC, "out of memory");
		fn(m, NULL, &e, arg);
		return;
	}
	c->fn = fn;
	c->arg = arg;
	c->oob = 1;
	m->npending++;
	if (m->state != MON_READY || !m->oob) {
		mon_defer_fail(m, c, QMP_CLS_GENERIC, m->state != MON_READY ?
		    "monitor %s is not connected" : "QEMU at %s does not offer "
		    "out-of-band execution", m->path);
		return;
	}
	/* past every queue: QEMU runs it in its monitor I/O thread, even
	   while an in-band command is stuck */
	if (mon_write(m, c, NULL, 0) == -1)
		mon_defer_fail(m, c, QMP_CLS_GENERIC,
		    "cannot write to the monitor");
	else
		mon_arm_timer(m);
}

bool
mon_oob(const struct mon *m)
{
	return (m->state == MON_READY && m->oob);
}

bool
mon_oob_offered(const struct mon *m)
{
	return (m->oob_offered != 0);
}

/* Write what may go now. Called from the loop only. */
static void
mon_flush(struct mon *m)
{
	struct mon_cmd	*c;
	size_t		 i;
	int		 rc;

	while (!m->dead && m->state == MON_READY && m->fdblock == NULL &&
	    mon_inband_room(m) && (c = TAILQ_FIRST(&m->queue)) != NULL) {
		if (c->has_fds && !TAILQ_EMPTY(&m->sent))
			break;
		TAILQ_REMOVE(&m->queue, c, entry);
		if (!mon_has_command(m, c->name)) {
			struct qmp_error e;

			qmp_error_set(&e, QMP_CLS_NOTFOUND,
			    "The command %s has not been found", c->name);
			mon_complete(m, c, NULL, &e);
			continue;
		}
		rc = mon_write(m, c, c->fds, c->nfds);
		for (i = 0; i < c->nfds; i++)
			close(c->fds[i]);
		c->nfds = 0;
		if (rc == -1 && mon_fail(m, c, "cannot write to the monitor") ==
		    -1)
			return;
	}
}

/* ---- connection ---- */

static void
mon_set_state(struct mon *m, enum mon_state st, const char *why)
{
	if (m->state == st)
		return;
	m->state = st;
	if (!m->dead && m->ops != NULL && m->ops->state != NULL)
		m->ops->state(m, st, why, m->arg);
}

static uint32_t
mon_random(struct mon *m)
{
	/* xorshift: jitter only needs to spread monitors apart */
	m->rnd ^= m->rnd << 13;
	m->rnd ^= m->rnd >> 17;
	m->rnd ^= m->rnd << 5;
	return (m->rnd);
}

static void
mon_schedule(struct mon *m)
{
	struct timeval	tv;
	uint64_t	delay;
	unsigned	shift;

	shift = m->attempts < 20 ? m->attempts : 20;
	delay = (uint64_t)m->backoff_min << shift;
	if (delay > (uint64_t)m->backoff_max)
		delay = (uint64_t)m->backoff_max;
	/* full delay halved plus a random half: a crowd of monitors whose
	   QEMUs went away together does not come back in step */
	delay = delay / 2 + mon_random(m) % (delay / 2 + 1);
	if (m->attempts < UINT32_MAX)
		m->attempts++;
	tv.tv_sec = (time_t)(delay / 1000);
	tv.tv_usec = (suseconds_t)(delay % 1000) * 1000;
	evtimer_add(m->retry, &tv);
}

/*
 * The one way down from a connection: fail every pending command once,
 * report disconnected, schedule the retry. culprit (may be NULL) timed out
 * and gets its own message.
 */
static void
mon_drop(struct mon *m, const char *why, struct mon_cmd *culprit)
{
	struct mon_cmd	*c;
	enum mon_state	 was = m->state;
	char		 buf[256];

	if (was == MON_DISCONNECTED || m->dead)
		return;
	snprintf(buf, sizeof buf, "%s", why);
	chan_free(m->chan);
	m->chan = NULL;
	evtimer_del(m->nego);
	m->state = MON_DISCONNECTED;
	m->greeted = 0;
	m->adopted = 0;
	m->resync_base = 0;
	m->fdblock = NULL;
	m->anon = NULL;
	m->nlate = 0;
	m->late_anon = 0;
	mon_cmdset_unref(m->cmds);
	m->cmds = NULL;

	for (;;) {
		if ((c = TAILQ_FIRST(&m->sent)) != NULL)
			TAILQ_REMOVE(&m->sent, c, entry);
		else if ((c = TAILQ_FIRST(&m->queue)) != NULL)
			TAILQ_REMOVE(&m->queue, c, entry);
		else
			break;
		if (c == culprit) {
			if (mon_fail(m, c, "%s", buf) == -1)
				return;
		} else if (mon_fail(m, c, "monitor connection lost: %s",
		    buf) == -1)
			return;
	}
	evtimer_del(m->timer);
	if (!m->no_reconnect)
		mon_schedule(m);
	/* report with the state it had: set back so the change shows */
	m->state = was;
	mon_set_state(m, MON_DISCONNECTED, buf);
}

static void __attribute__((format(printf, 2, 3)))
mon_protocol_error(struct mon *m, const char *fmt, ...)
{
	char	why[256];
	size_t	n;
	va_list	ap;

	n = (size_t)snprintf(why, sizeof why, "protocol error: ");
	va_start(ap, fmt);
	vsnprintf(why + n, sizeof why - n, fmt, ap);
	va_end(ap);
	mon_drop(m, why, NULL);
}

/* Removes id from the late list; 0 if it is not there. */
static int
mon_late_take(struct mon *m, uint64_t id)
{
	size_t	i;

	for (i = 0; i < m->nlate; i++)
		if (m->late[i] == id) {
			m->late[i] = m->late[--m->nlate];
			return (1);
		}
	return (0);
}

/* A late reply came and was dropped: QEMU holds one command fewer. */
static void
mon_late_done(struct mon *m)
{
	if (m->ninband > 0)
		m->ninband--;
	mon_flush(m);
}

static void
mon_reply(struct mon *m, json_t *msg, enum qmp_msg_type type)
{
	struct mon_cmd		*c;
	struct qmp_error	 err;
	json_t			*id;
	json_int_t		 v;

	if ((id = json_object_get(msg, "id")) == NULL) {
		if ((c = m->anon) == NULL && m->late_anon) {
			/* the late reply to a command given up on while
			   postcopy was paused: nobody's any more */
			m->late_anon = 0;
			mon_late_done(m);
			return;
		}
		if (c == NULL && m->resync_base != 0 &&
		    m->state != MON_READY) {
			/* the answer to the dead process's command without
			   an id: nobody's any more */
			return;
		}
		if (c == NULL) {
			mon_protocol_error(m, "%s without an id and none "
			    "pending without one", qmp_msg_type_name(type));
			return;
		}
	} else {
		if (!json_is_integer(id)) {
			mon_protocol_error(m, "%s without a numeric id",
			    qmp_msg_type_name(type));
			return;
		}
		v = json_integer_value(id);
		/* QEMU answers in order: the head nearly always matches */
		TAILQ_FOREACH(c, &m->sent, entry)
			if (!c->anon && (json_int_t)c->id == v)
				break;
		if (c == NULL && v >= 0 && mon_late_take(m, (uint64_t)v)) {
			mon_late_done(m);
			return;
		}
		if (c == NULL && m->resync_base != 0 && v >= 0 &&
		    (uint64_t)v < m->resync_base) {
			/* a reply to a command of the process that died: it
			   is nobody's any more */
			return;
		}
		if (c == NULL) {
			mon_protocol_error(m, "reply with unknown id %lld",
			    (long long)v);
			return;
		}
	}
	TAILQ_REMOVE(&m->sent, c, entry);
	if (m->anon == c)
		m->anon = NULL;
	if (m->fdblock == c)
		m->fdblock = NULL;
	if (c->fn != NULL && !c->oob && m->ninband > 0)
		m->ninband--;
	if (type == QMP_MSG_ERROR)
		qmp_error_from_json(&err, json_object_get(msg, "error"));
	if (c->internal != NULL) {
		c->internal(m, type == QMP_MSG_RETURN ?
		    json_object_get(msg, "return") : NULL,
		    type == QMP_MSG_ERROR ? &err : NULL);
		mon_cmd_free(c);
		return;
	}
	if (mon_complete(m, c, type == QMP_MSG_RETURN ?
	    json_object_get(msg, "return") : NULL,
	    type == QMP_MSG_ERROR ? &err : NULL) == -1)
		return;
	mon_flush(m);
}

static int
mon_caps_has_oob(json_t *greeting)
{
	json_t	*caps, *v;
	size_t	 i;

	caps = json_object_get(json_object_get(greeting, "QMP"),
	    "capabilities");
	json_array_foreach(caps, i, v) {
		if (json_is_string(v) && strcmp(json_string_value(v), "oob") ==
		    0)
			return (1);
	}
	return (0);
}

static void
mon_greeting(struct mon *m, json_t *msg)
{
	struct qmp_version	v;

	if (m->greeted)
		return;		/* QEMU may greet twice: the first counts */
	if (qmp_greeting_parse(msg, &v) == -1) {
		mon_protocol_error(m, "%s", "malformed greeting");
		return;
	}
	m->version = v;
	m->have_version = 1;
	m->greeted = 1;
	/* oob if QEMU offers it: then the broker's clients can have it */
	m->oob_offered = mon_caps_has_oob(msg);
	m->oob = 0;
	m->ninband = 0;
	mon_internal(m, "qmp_capabilities", m->oob_offered ?
	    json_pack("{s:[s]}", "enable", "oob") : NULL, mon_caps_done);
}

static void
mon_caps_done(struct mon *m, json_t *ret, const struct qmp_error *err)
{
	if (err != NULL) {
		mon_protocol_error(m, "qmp_capabilities refused: %s",
		    err->desc);
		return;
	}
	m->oob = m->oob_offered;
	mon_internal(m, "query-commands", NULL, mon_commands_done);
}

static void
mon_commands_done(struct mon *m, json_t *ret, const struct qmp_error *err)
{
	struct qmp_error	e;

	if (err != NULL) {
		mon_protocol_error(m, "query-commands failed: %s", err->desc);
		return;
	}
	if ((m->cmds = mon_cmdset_get(ret, &e)) == NULL) {
		mon_protocol_error(m, "%s", e.desc);
		return;
	}
	evtimer_del(m->nego);
	m->attempts = 0;
	mon_set_state(m, MON_READY, NULL);
	mon_flush(m);
}

static void
mon_chan_msg(struct chan *ch, json_t *msg, int *fds, size_t nfds, void *arg)
{
	struct mon		*m = arg;
	enum qmp_msg_type	 type;
	size_t			 i;

	for (i = 0; i < nfds; i++)	/* QEMU has no business sending fds */
		close(fds[i]);
	if (m->dead || m->chan != ch)
		return;
	type = qmp_msg_classify(msg);
	if (type == QMP_MSG_GREETING)
		mon_greeting(m, msg);
	else if (!m->greeted)
		mon_protocol_error(m, "%s before the greeting",
		    qmp_msg_type_name(type));
	else if (type == QMP_MSG_RETURN || type == QMP_MSG_ERROR)
		mon_reply(m, msg, type);
	else if (type == QMP_MSG_EVENT) {
		if (m->ops != NULL && m->ops->event != NULL)
			m->ops->event(m, msg, m->arg);
	} else
		mon_protocol_error(m, "unexpected %s message",
		    qmp_msg_type_name(type));
}

static void
mon_chan_bad(struct chan *ch, const struct qmp_error *err, void *arg)
{
	struct mon	*m = arg;

	if (m->dead || m->chan != ch)
		return;
	/* the rest of a line the process that died had begun to read */
	if (m->resync_base != 0 && m->state == MON_NEGOTIATING)
		return;
	mon_protocol_error(m, "%s", err->desc);
}

static void
mon_chan_closed(struct chan *ch, const char *why, void *arg)
{
	struct mon	*m = arg;
	char		 buf[256];

	if (m->dead || m->chan != ch)
		return;
	snprintf(buf, sizeof buf, "connection closed: %s", why);
	mon_drop(m, buf, NULL);
}

static const struct chan_ops mon_chan_ops = {
	.msg = mon_chan_msg,
	.bad = mon_chan_bad,
	.closed = mon_chan_closed,
};

static void
mon_nego_cb(evutil_socket_t fd, short what, void *arg)
{
	struct mon	*m = arg;
	char		 why[160];

	snprintf(why, sizeof why, "negotiation timed out after %d ms (%s)",
	    m->timeout_ms, m->greeted ? "no reply to qmp_capabilities or "
	    "query-commands" : "no greeting");
	mon_drop(m, why, NULL);
}

/* The pid that made the listening socket (QEMU, unless it was handed
   a socket someone else made): what VM_EXITED watches. */
static int
mon_peercred(int fd)
{
	struct ucred	uc;
	socklen_t	len = sizeof uc;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) == -1 ||
	    len != sizeof uc || uc.pid <= 0)
		return (0);
	return ((int)uc.pid);
}

static void
mon_connect(struct mon *m)
{
	struct sockaddr_un	 sun;
	struct chan_opts	 co;
	struct timeval		 tv;
	struct qmp_error	 perr;
	char			 why[256];
	int			 fd;

	mon_set_state(m, MON_CONNECTING, NULL);
	if (m->dead || mon_adopt(m) == 0)
		return;
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	if (strlen(m->path) >= sizeof sun.sun_path) {
		snprintf(why, sizeof why, "connect %s: path too long", m->path);
		goto fail;
	}
	memcpy(sun.sun_path, m->path, strlen(m->path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM|SOCK_NONBLOCK|SOCK_CLOEXEC, 0);
	if (fd == -1) {
		snprintf(why, sizeof why, "socket: %s", strerror(errno));
		goto fail;
	}
	/* A unix connect never stays in progress: it either gets in at
	   once or fails (EAGAIN when the backlog is full), and every
	   failure is worth a later retry. */
	if (connect(fd, (struct sockaddr *)&sun, sizeof sun) == -1) {
		/* Unprivileged, a root QEMU's socket is the helper's to
		   connect (under vm-dir or monitor-root only): one local
		   round trip, and only where our own connect is refused. */
		if (errno == EACCES && priv_active()) {
			close(fd);
			if (priv_connect(m->path, &fd, &perr) == -1) {
				snprintf(why, sizeof why, "%.200s", perr.desc);
				goto fail;
			}
		} else {
			snprintf(why, sizeof why, "connect %s: %s", m->path,
			    strerror(errno));
			close(fd);
			goto fail;
		}
	}
	m->peer_pid = mon_peercred(fd);
	memset(&co, 0, sizeof co);
	co.max_msg = m->max_msg;
	co.max_fds = 1;		/* QEMU sends none; keep the buffer small */
	if ((m->chan = chan_new(m->base, fd, &co, &mon_chan_ops, m)) == NULL) {
		close(fd);
		snprintf(why, sizeof why, "out of memory");
		goto fail;
	}
	tv.tv_sec = m->timeout_ms / 1000;
	tv.tv_usec = (m->timeout_ms % 1000) * 1000;
	evtimer_add(m->nego, &tv);
	mon_set_state(m, MON_NEGOTIATING, NULL);
	return;
fail:
	mon_drop(m, why, NULL);
}

static void
mon_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct mon	*m = arg;

	if (m->state == MON_DISCONNECTED || m->state == MON_CONNECTING)
		mon_connect(m);
}

struct mon *
mon_new(struct event_base *base, const char *path,
    const struct mon_opts *opts, const struct mon_ops *ops, void *arg)
{
	struct mon	*m;

	if ((m = calloc(1, sizeof *m)) == NULL)
		return (NULL);
	m->base = base;
	m->ops = ops;
	m->arg = arg;
	m->state = MON_CONNECTING;
	TAILQ_INIT(&m->queue);
	TAILQ_INIT(&m->sent);
	TAILQ_INIT(&m->done);
	if (opts != NULL) {
		m->timeout_ms = opts->cmd_timeout_ms;
		m->backoff_min = opts->backoff_min_ms;
		m->backoff_max = opts->backoff_max_ms;
		m->max_msg = opts->max_msg;
		m->no_reconnect = opts->no_reconnect;
	}
	if (m->timeout_ms <= 0)
		m->timeout_ms = MON_TIMEOUT_DEF;
	if (m->backoff_min <= 0)
		m->backoff_min = MON_BACKOFF_MIN_DEF;
	if (m->backoff_max <= 0)
		m->backoff_max = MON_BACKOFF_MAX_DEF;
	if (m->backoff_max < m->backoff_min)
		m->backoff_max = m->backoff_min;
	m->rnd = (uint32_t)mon_now() ^ ((uint32_t)getpid() << 16) ^
	    (uint32_t)(uintptr_t)m;
	if (m->rnd == 0)
		m->rnd = 1;
	m->path = strdup(path);
	m->retry = evtimer_new(base, mon_retry_cb, m);
	m->nego = evtimer_new(base, mon_nego_cb, m);
	m->timer = evtimer_new(base, mon_timer_cb, m);
	m->defer = event_new(base, -1, 0, mon_defer_cb, m);
	if (m->path == NULL || m->retry == NULL || m->nego == NULL ||
	    m->timer == NULL || m->defer == NULL) {
		/* no callback ran: nothing to wait for */
		mon_stop(m);
		mon_release(m);
		return (NULL);
	}
	/* connect from the loop: no callback from inside mon_new */
	event_active(m->retry, EV_TIMEOUT, 1);
	LIST_INSERT_HEAD(&mon_all, m, all);
	return (m);
}

/* No callback from here on: the channel and the events go. */
static void
mon_stop(struct mon *m)
{
	chan_free(m->chan);
	m->chan = NULL;
	if (m->retry != NULL)
		event_free(m->retry);
	if (m->nego != NULL)
		event_free(m->nego);
	if (m->timer != NULL)
		event_free(m->timer);
	if (m->defer != NULL)
		event_free(m->defer);
	m->retry = m->nego = m->timer = m->defer = NULL;
}

/* The memory, from the loop (or defer_flush): touches no event, the base
   may be gone. */
static void
mon_release(void *arg)
{
	struct mon	*m = arg;
	struct mon_cmd	*c;

	/* mon_free reported everything; only a command issued on the dead
	   monitor after mon_free returned can be left, and its owner was
	   told its callbacks are over */
	while ((c = TAILQ_FIRST(&m->done)) != NULL) {
		TAILQ_REMOVE(&m->done, c, entry);
		mon_cmd_free(c);
	}
	free(m->path);
	free(m);
}

void
mon_free(struct mon *m)
{
	struct mon_cmd	*c;

	if (m == NULL || m->dead)
		return;
	m->dead = 1;
	LIST_REMOVE(m, all);
	/* commands issued from the callbacks below fail through 'done' */
	m->state = MON_DISCONNECTED;
	mon_stop(m);
	mon_cmdset_unref(m->cmds);
	m->cmds = NULL;

	/* the owner hears about every command, inside this call */
	for (;;) {
		if ((c = TAILQ_FIRST(&m->done)) != NULL) {
			TAILQ_REMOVE(&m->done, c, entry);
			if (c->fn != NULL) {
				struct qmp_error e;

				if (c->lerr == NULL)
					qmp_error_set(&e, QMP_CLS_GENERIC,
					    "monitor closed");
				m->npending--;
				c->fn(m, NULL, c->lerr != NULL ? c->lerr : &e,
				    c->arg);
			}
			mon_cmd_free(c);
			continue;
		}
		if ((c = TAILQ_FIRST(&m->sent)) != NULL)
			TAILQ_REMOVE(&m->sent, c, entry);
		else if ((c = TAILQ_FIRST(&m->queue)) != NULL)
			TAILQ_REMOVE(&m->queue, c, entry);
		else
			break;
		mon_fail(m, c, "monitor %s closed", m->path);
	}
	/* from inside our own callback the caller still reads m when it
	   returns: the memory waits for the loop */
	defer_free(m->base, &m->reap, mon_release, m);
}

enum mon_state
mon_state(const struct mon *m)
{
	return (m->state);
}

int
mon_peer_pid(const struct mon *m)
{
	return (m->peer_pid);
}

const char *
mon_path(const struct mon *m)
{
	return (m->path);
}

const struct qmp_version *
mon_version(const struct mon *m)
{
	return (m->have_version ? &m->version : NULL);
}

bool
mon_has_command(const struct mon *m, const char *name)
{
	if (m->state != MON_READY || m->cmds == NULL)
		return (false);
	return (bsearch(&name, m->cmds->names, m->cmds->n,
	    sizeof *m->cmds->names, mon_cmp_name) != NULL);
}

size_t
mon_command_count(const struct mon *m)
{
	return (m->state == MON_READY && m->cmds != NULL ? m->cmds->n : 0);
}

size_t
mon_pending(const struct mon *m)
{
	return (m->npending);
}

uint64_t
mon_timeouts(const struct mon *m)
{
	return (m->timeouts);
}

void
mon_set_postcopy_paused(struct mon *m, bool paused)
{
	m->pc_paused = paused;
}

size_t
mon_late(const struct mon *m)
{
	return (m->nlate + (m->late_anon ? 1 : 0));
}

/* ---- upgrade ---- */

#define MON_HEIRS_MAX	(1u << 20)
#define MON_PATH_MAX	4096

/* A connection handed over by the previous process, until a monitor
   for its path takes it. cs NULL: state unknown (fd store). */
struct mon_heir {
	char			*path;
	int			 fd;
	json_t			*chan;		/* chan_export's, or NULL */
	int			 oob_offered;
	int			 oob;
	struct qmp_version	 version;
	struct mon_cmdset	*cs;
	int			 taken;
};
static struct mon_heir	*mon_heirs;
static size_t		 mon_nheirs;
static int		 mon_heirs_sorted;

size_t
mon_busy(void)
{
	struct mon	*m;
	size_t		 n = 0;

	LIST_FOREACH(m, &mon_all, all)
		if (!TAILQ_EMPTY(&m->queue) || !TAILQ_EMPTY(&m->sent) ||
		    !TAILQ_EMPTY(&m->done) || m->npending > 0 ||
		    m->nlate > 0 || m->late_anon)
			n++;
	return (n);
}

int
mon_fd(const struct mon *m)
{
	return (m->chan != NULL ? chan_fd(m->chan) : -1);
}

bool
mon_adopted(const struct mon *m)
{
	return (m->adopted != 0);
}

json_t *
mon_export_all(json_t *fds)
{
	struct mon		*m;
	struct mon_cmdset	*cs, **sets = NULL;
	json_t			*j, *jsets, *jmons, *e, *ch, *names;
	size_t			 nsets = 0, i, k;

	if ((j = json_pack("{s:[],s:[]}", "cmdsets", "mons")) == NULL)
		return (NULL);
	jsets = json_object_get(j, "cmdsets");
	jmons = json_object_get(j, "mons");
	LIST_FOREACH(m, &mon_all, all) {
		if (m->state != MON_READY || m->chan == NULL ||
		    (cs = m->cmds) == NULL)
			continue;
		/* monitors of one QEMU build share one set: send it once */
		for (i = 0; i < nsets && sets[i] != cs; i++)
			;
		if (i == nsets) {
			struct mon_cmdset **ns;

			if ((ns = realloc(sets, (nsets + 1) * sizeof *ns)) ==
			    NULL || (names = json_array()) == NULL) {
				sets = ns != NULL ? ns : sets;
				goto fail;
			}
			sets = ns;
			sets[nsets++] = cs;
			for (k = 0; k < cs->n; k++)
				json_array_append_new(names,
				    json_string(cs->names[k]));
			if (json_array_append_new(jsets, names) != 0)
				goto fail;
		}
		if ((ch = chan_export(m->chan, fds)) == NULL)
			goto fail;
		e = json_pack("{s:s,s:o,s:b,s:b,s:{s:i,s:i,s:i,s:s},s:I}",
		    "path", m->path, "chan", ch, "oob-offered", m->oob_offered,
		    "oob", m->oob, "version", "major", m->version.major,
		    "minor", m->version.minor, "micro", m->version.micro,
		    "package", m->version.package, "cmdset", (json_int_t)i);
		if (e == NULL || json_array_append_new(jmons, e) != 0)
			goto fail;
	}
	free(sets);
	return (j);
fail:
	free(sets);
	json_decref(j);
	return (NULL);
}

static int
mon_heir_cmp(const void *a, const void *b)
{
	return (strcmp(((const struct mon_heir *)a)->path,
	    ((const struct mon_heir *)b)->path));
}

static void
mon_heir_clear(struct mon_heir *h)
{
	free(h->path);
	json_decref(h->chan);
	mon_cmdset_unref(h->cs);
	memset(h, 0, sizeof *h);
	h->fd = -1;
}

static struct mon_heir *
mon_heir_add(void)
{
	struct mon_heir	*n;

	if (mon_nheirs >= MON_HEIRS_MAX || (n = realloc(mon_heirs,
	    (mon_nheirs + 1) * sizeof *n)) == NULL)
		return (NULL);
	mon_heirs = n;
	memset(&n[mon_nheirs], 0, sizeof *n);
	n[mon_nheirs].fd = -1;
	mon_heirs_sorted = 0;
	return (&n[mon_nheirs++]);
}

int
mon_inherit(const json_t *st, struct qmp_error *err)
{
	json_t			*jsets, *jmons, *e, *v, *names, *wrapped;
	struct mon_cmdset	**sets;
	struct mon_heir		*h;
	const char		*path, *pkg;
	size_t			 nsets, i, k, base = mon_nheirs;
	json_int_t		 idx;
	int			 fd;

	jsets = json_object_get(st, "cmdsets");
	jmons = json_object_get(st, "mons");
	if (!json_is_array(jsets) || !json_is_array(jmons) ||
	    json_array_size(jmons) > MON_HEIRS_MAX ||
	    json_array_size(jsets) > json_array_size(jmons) + 1) {
		qmp_error_set(err, QMP_CLS_GENERIC, "monitors: malformed");
		return (-1);
	}
	nsets = json_array_size(jsets);
	if ((sets = calloc(nsets + 1, sizeof *sets)) == NULL) {
		qmp_error_set(err, QMP_CLS_GENERIC, "out of memory");
		return (-1);
	}
	json_array_foreach(jsets, i, names) {
		/* the form query-commands returns, which the set checks */
		if (!json_is_array(names) || (wrapped = json_array()) == NULL)
			goto bad;
		json_array_foreach(names, k, v)
			json_array_append_new(wrapped, json_pack("{s:O}",
			    "name", v));
		sets[i] = mon_cmdset_get(wrapped, err);
		json_decref(wrapped);
		if (sets[i] == NULL)
			goto fail;
	}
	json_array_foreach(jmons, i, e) {
		path = json_string_value(json_object_get(e, "path"));
		v = json_object_get(e, "version");
		pkg = json_string_value(json_object_get(v, "package"));
		idx = json_integer_value(json_object_get(e, "cmdset"));
		fd = chan_export_fd(json_object_get(e, "chan"));
		if (path == NULL || *path == '\0' ||
		    strlen(path) > MON_PATH_MAX || pkg == NULL ||
		    strlen(pkg) >= sizeof h->version.package ||
		    !json_is_integer(json_object_get(v, "major")) ||
		    !json_is_integer(json_object_get(v, "minor")) ||
		    !json_is_integer(json_object_get(v, "micro")) ||
		    !json_is_integer(json_object_get(e, "cmdset")) ||
		    idx < 0 || (size_t)idx >= nsets || fd == -1 ||
		    !json_is_boolean(json_object_get(e, "oob")) ||
		    !json_is_boolean(json_object_get(e, "oob-offered")))
			goto bad;
		if ((h = mon_heir_add()) == NULL ||
		    (h->path = strdup(path)) == NULL) {
			qmp_error_set(err, QMP_CLS_GENERIC, "out of memory");
			goto fail;
		}
		h->chan = json_incref(json_object_get(e, "chan"));
		h->fd = fd;
		h->oob = json_is_true(json_object_get(e, "oob"));
		h->oob_offered = json_is_true(json_object_get(e,
		    "oob-offered"));
		h->version.major = (int)json_integer_value(json_object_get(v,
		    "major"));
		h->version.minor = (int)json_integer_value(json_object_get(v,
		    "minor"));
		h->version.micro = (int)json_integer_value(json_object_get(v,
		    "micro"));
		snprintf(h->version.package, sizeof h->version.package, "%s",
		    pkg);
		h->cs = sets[idx];
		h->cs->refs++;
	}
	for (i = 0; i < nsets; i++)
		mon_cmdset_unref(sets[i]);
	free(sets);
	return (0);
bad:
	qmp_error_set(err, QMP_CLS_GENERIC, "monitors: entry %zu malformed",
	    i);
fail:
	while (mon_nheirs > base)
		mon_heir_clear(&mon_heirs[--mon_nheirs]);
	for (i = 0; i < nsets; i++)
		mon_cmdset_unref(sets[i]);
	free(sets);
	return (-1);
}

int
mon_inherit_fd(const char *path, int fd, bool oob)
{
	struct mon_heir	*h = NULL;

	if (strlen(path) > MON_PATH_MAX || (h = mon_heir_add()) == NULL ||
	    (h->path = strdup(path)) == NULL) {
		if (h != NULL)
			mon_heir_clear(&mon_heirs[--mon_nheirs]);
		close(fd);
		return (-1);
	}
	h->fd = fd;
	h->oob = h->oob_offered = oob;
	return (0);
}

size_t
mon_inherit_end(void)
{
	size_t	i, n = 0;

	for (i = 0; i < mon_nheirs; i++) {
		if (!mon_heirs[i].taken && mon_heirs[i].fd != -1) {
			close(mon_heirs[i].fd);
			n++;
		}
		mon_heir_clear(&mon_heirs[i]);
	}
	free(mon_heirs);
	mon_heirs = NULL;
	mon_nheirs = 0;
	return (n);
}

static struct mon_heir *
mon_heir_find(const char *path)
{
	struct mon_heir	key;

	if (mon_nheirs == 0)
		return (NULL);
	if (!mon_heirs_sorted) {
		qsort(mon_heirs, mon_nheirs, sizeof *mon_heirs, mon_heir_cmp);
		mon_heirs_sorted = 1;
	}
	key.path = (char *)(uintptr_t)path;
	return (bsearch(&key, mon_heirs, mon_nheirs, sizeof *mon_heirs,
	    mon_heir_cmp));
}

static void
mon_resync_version(struct mon *m, json_t *ret, const struct qmp_error *err)
{
	json_t	*q = json_object_get(ret, "qemu");
	json_t	*pkg = json_object_get(ret, "package");

	if (err != NULL || !json_is_object(q)) {
		mon_protocol_error(m, "query-version after a restart: %s",
		    err != NULL ? err->desc : "no version");
		return;
	}
	m->version.major = (int)json_integer_value(json_object_get(q,
	    "major"));
	m->version.minor = (int)json_integer_value(json_object_get(q,
	    "minor"));
	m->version.micro = (int)json_integer_value(json_object_get(q,
	    "micro"));
	snprintf(m->version.package, sizeof m->version.package, "%s",
	    json_is_string(pkg) ? json_string_value(pkg) : "");
	m->have_version = 1;
	mon_internal(m, "query-commands", NULL, mon_commands_done);
}

/* From mon_connect: 0 if an inherited connection was taken. */
static int
mon_adopt(struct mon *m)
{
	struct mon_heir		*h;
	struct chan_opts	 co;
	struct qmp_error	 e;
	struct timeval		 tv;
	char			 why[sizeof e.desc + 32];

	if ((h = mon_heir_find(m->path)) == NULL || h->taken)
		return (-1);
	h->taken = 1;
	/* QEMU's pid, as mon_connect knows it: the VM's pidfd watch (and
	   VM_EXITED) after an upgrade or a restart from the fd store too */
	m->peer_pid = mon_peercred(h->fd);
	memset(&co, 0, sizeof co);
	co.max_msg = m->max_msg;
	co.max_fds = 1;
	if (h->chan != NULL)
		m->chan = chan_import(m->base, h->chan, 1u << 20, &co,
		    &mon_chan_ops, m, &e);
	else if ((m->chan = chan_new(m->base, h->fd, &co, &mon_chan_ops,
	    m)) == NULL)
		qmp_error_set(&e, QMP_CLS_GENERIC, "out of memory");
	if (m->chan == NULL) {
		close(h->fd);
		h->fd = -1;
		snprintf(why, sizeof why, "inherited connection: %s", e.desc);
		mon_drop(m, why, NULL);
		return (0);
	}
	h->fd = -1;
	m->greeted = 1;
	m->oob_offered = h->oob_offered;
	m->oob = h->oob;
	m->ninband = 0;
	if (h->cs != NULL) {
		m->adopted = 1;
		/* the previous process negotiated it and left nothing in
		   flight: ready as it was */
		m->version = h->version;
		m->have_version = 1;
		m->cmds = h->cs;
		h->cs = NULL;
		m->attempts = 0;
		mon_set_state(m, MON_READY, NULL);
		if (!m->dead)
			mon_flush(m);
		return (0);
	}
	/* negotiated by a process that died: what it knew, asked again,
	   under ids it cannot have used (it counted from 1) */
	m->resync_base = m->next_id = (uint64_t)1 << 52;
	tv.tv_sec = m->timeout_ms / 1000;
	tv.tv_usec = (m->timeout_ms % 1000) * 1000;
	evtimer_add(m->nego, &tv);
	mon_set_state(m, MON_NEGOTIATING, NULL);
	if (!m->dead)
		mon_internal(m, "query-version", NULL, mon_resync_version);
	return (0);
}
