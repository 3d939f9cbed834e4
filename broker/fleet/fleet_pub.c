/*
 * Events into JetStream: every record of the event log, in seq order,
 * on qmp.HOST.VM.event.NAME (VM "_" for broker-wide events; tokens
 * escaped by fleet_token), with Nats-Msg-Id: EPOCH-SEQ, so that
 * JetStream's duplicate window makes every republish of a record a
 * no-op (docs/nats.md).
 *
 * A JetStream publish is a core NATS publish with a reply subject; the
 * stream's ack is the reply. Each record goes out with the reply
 * subject INBOX.SEQ, and one synchronous subscription on INBOX.* takes
 * the acks: libnats parses them on the loop, in the adapter's read
 * event, and fleet_pub_drain takes them there, with no thread between
 * an ack and the publish it makes room for. The ack names its record:
 * nothing is kept per message. (libnats' js_PublishMsgAsync keeps every
 * message until its ack, in a hash by a random token, and hands every
 * ack to a delivery thread, woken by the loop with a futex per ack, to
 * be parsed into a jsPubAck: with nats-server on the same two cores,
 * that made the broker's rate 0.7x a bare client's; docs/nats.md.)
 *
 * At most nats-window records are published and not yet acknowledged.
 * base is the highest seq below which every record is acknowledged (it
 * is persisted in STATE_DIR/nats-acked, written atomically); next is the
 * next seq to publish. Acks may come in any order: a bit per seq in the
 * window, base moves over the bits. When acks stop (a lost connection,
 * a server that died with our messages, an error reply), everything
 * after base is published again, into a fresh JetStream context, whose
 * pending acks are the only ones libnats then keeps. Events wait in the
 * log, never here: nothing is held but the window.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "broker/core/conf.h"
#include "broker/core/evlog.h"
#include "broker/core/log.h"
#include "broker/core/loop.h"
#include "broker/core/work.h"
#include "broker/fleet/fleet_int.h"

#define PUB_FILE	"nats-acked"
#define PUB_ERR_LOG_S	10	/* an error repeated is logged this often */

static struct {
	char		 epoch[EVLOG_EPOCH_MAX];
	uint64_t	 base;		/* every seq <= base is in JetStream */
	uint64_t	 next;		/* the next seq to publish */
	uint64_t	 saved;		/* base as the file has it */
	unsigned char	*bits;		/* acked, seq % window */
	uint64_t	 window;
	natsSubscription *sub;		/* the acks, on rpre* */
	char		*rpre;		/* "_INBOX.NUID." */
	struct evlog_cur *cur;		/* at next - 1 */
	bool		 ready;		/* the stream is there */
	bool		 ensuring;	/* its work item runs */
	bool		 stopped;
	struct timespec	 progress;	/* base last moved, or a restart */
	time_t		 err_logged;
	char		*path;
	struct event	*ensure_ev;	/* retry of the stream's creation */
} pub;

static void	pub_ensure(void);
static void	pub_acked(uint64_t);
static void	pub_refused(uint64_t, const char *);
static void	pub_no_stream(void);

static double
pub_since(const struct timespec *t)
{
	struct timespec	now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return ((double)(now.tv_sec - t->tv_sec) +
	    (double)(now.tv_nsec - t->tv_nsec) / 1e9);
}

static void
pub_touch(void)
{
	clock_gettime(CLOCK_MONOTONIC, &pub.progress);
}

/* "EPOCH SEQ\n", by write to a temporary and rename: a kill -9 leaves
   the old or the new, never half. Not fsync'd: after a power cut the
   broker republishes from an older seq, and the duplicate window makes
   that a no-op. */
static void
pub_save(void)
{
	char	 buf[EVLOG_EPOCH_MAX + 32], *tmp;
	int	 fd, n;

	if (pub.saved == pub.base || pub.path == NULL)
		return;
	n = snprintf(buf, sizeof buf, "%s %" PRIu64 "\n", pub.epoch, pub.base);
	if (asprintf(&tmp, "%s.tmp", pub.path) == -1)
		return;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd == -1 || write(fd, buf, (size_t)n) != n || close(fd) == -1 ||
	    rename(tmp, pub.path) == -1) {
		if (fd != -1)
			close(fd);
		log_warn("nats: cannot write %s: %s", pub.path,
		    strerror(errno));
		unlink(tmp);
	} else
		pub.saved = pub.base;
	free(tmp);
}

static void
pub_load(void)
{
	char		 buf[EVLOG_EPOCH_MAX + 32], ep[EVLOG_EPOCH_MAX];
	uint64_t	 seq, first = evlog_first(), last = evlog_last();
	FILE		*f;
	bool		 have = false;

	/* Without a record of ours, all the log holds goes out. */
	pub.base = first > 0 ? first - 1 : last;
	if ((f = fopen(pub.path, "re")) != NULL) {
		if (fgets(buf, sizeof buf, f) != NULL &&
		    sscanf(buf, "%31s %" SCNu64, ep, &seq) == 2)
			have = true;
		fclose(f);
	}
	if (!have)
		log_info("nats: no %s: publishing the log from seq %" PRIu64,
		    pub.path, pub.base + 1);
	else if (strcmp(ep, pub.epoch) != 0)
		log_warn("nats: the event log's epoch is %s, %s was acked "
		    "in epoch %s: publishing the new log from seq %" PRIu64,
		    pub.epoch, pub.path, ep, pub.base + 1);
	else if (seq > last)
		log_warn("nats: %s says seq %" PRIu64 " was acked but the "
		    "log ends at %" PRIu64 "; resuming there", pub.path, seq,
		    last);
	else if (seq + 1 < first) {
		log_warn("nats: events %" PRIu64 "..%" PRIu64 " left the log "
		    "before NATS acknowledged them: they are not in the "
		    "stream", seq + 1, first - 1);
	} else {
		pub.base = seq;
		pub.saved = seq;
	}
	if (have && strcmp(ep, pub.epoch) == 0 && seq > last)
		pub.base = last;
	pub.next = pub.base + 1;
}

static void
pub_send_failed(natsStatus s)
{
	time_t	now = time(NULL);

	if (now - pub.err_logged >= PUB_ERR_LOG_S) {
		log_warn("nats: publishing seq %" PRIu64 ": %s; will retry",
		    pub.next, natsStatus_GetText(s));
		pub.err_logged = now;
	}
}

/* One record out; false if libnats refused it (then it stays next). */
static bool
pub_send(const struct evlog_rec *rec)
{
	/* "qmp." HOST "." VM ".event." NAME: three tokens, 11 more bytes
	   with the NUL; sized from those bounded parts. */
	char		 subj[3 * FLEET_TOKEN_MAX + 16];
	char		 vm[FLEET_TOKEN_MAX], ev[FLEET_TOKEN_MAX];
	const char	*vt, *et;
	char		 id[EVLOG_EPOCH_MAX + 24], reply[64];
	natsMsg		*m = NULL;
	natsStatus	 s;

	/* "_": broker-wide; "%": a name no token can hold. */
	if (rec->vm == NULL)
		vt = "_";
	else
		vt = subject_token(vm, sizeof vm, rec->vm) != 0 ? vm : "%";
	et = subject_token(ev, sizeof ev, rec->event) != 0 ? ev : "%";
	if ((size_t)snprintf(subj, sizeof subj, "qmp.%s.%s.event.%s",
	    fleet.host_tok, vt, et) >= sizeof subj)
		abort();	/* the sizes above say it cannot be */
	snprintf(id, sizeof id, "%s-%" PRIu64, pub.epoch, rec->seq);
	snprintf(reply, sizeof reply, "%s%" PRIu64, pub.rpre, rec->seq);
	s = natsMsg_Create(&m, subj, reply, rec->json, (int)rec->len);
	if (s == NATS_OK)
		s = natsMsgHeader_Set(m, "Nats-Msg-Id", id);
	if (s == NATS_OK)
		s = natsConnection_PublishMsg(fleet.nc, m);
	/* In the connection's buffer now, or refused: either way not
	   needed again (a republish reads the log). */
	natsMsg_Destroy(m);
	if (s != NATS_OK) {
		pub_send_failed(s);
		return (false);
	}
	return (true);
}

void
fleet_pub_pump(void)
{
	struct evlog_rec	rec;
	uint64_t		from, to;
	int			rc;

	if (pub.stopped || !pub.ready || !fleet.connected || pub.sub == NULL)
		return;
	if (pub.cur == NULL && (pub.cur = evlog_cur_new(pub.next - 1)) ==
	    NULL)
		return;
	while (pub.next - pub.base <= pub.window) {
		rc = evlog_cur_next(pub.cur, &rec, &from, &to);
		if (rc == EVLOG_CUR_END)
			break;
		if (rc == EVLOG_CUR_LOST) {
			log_warn("nats: events %" PRIu64 "..%" PRIu64 " left "
			    "the log before NATS acknowledged them: they are "
			    "not in the stream", from, to);
			/* Only when nothing is in flight can base jump. */
			if (pub.base + 1 == from || pub.base + 1 == pub.next)
				pub.base = to;
			pub.next = to + 1;
			continue;
		}
		if (rec.seq != pub.next) {
			/* The cursor and next disagree: start over at base. */
			evlog_cur_free(pub.cur);
			pub.cur = NULL;
			pub.next = pub.base + 1;
			return;
		}
		if (!pub_send(&rec)) {
			/* next stays; a fresh cursor finds it again. */
			evlog_cur_free(pub.cur);
			pub.cur = NULL;
			break;
		}
		pub.next++;
	}
}

/* The log calls this once per loop pass, outside its appends: publish
   now, not a pass later (that pass is emit->fleet latency). */
static void
pub_appended(uint64_t last, void *arg)
{
	fleet_pub_pump();
}

#define PUB_REFILL(w)	((w) / 8 > 0 ? (w) / 8 : 1)

/* The seq an ack is for: its subject's last token, after rpre. */
static bool
pub_ack_seq(const char *subj, uint64_t *seq)
{
	size_t		 n = strlen(pub.rpre);
	char		*end;

	if (subj == NULL || strncmp(subj, pub.rpre, n) != 0 ||
	    subj[n] < '0' || subj[n] > '9')
		return (false);
	errno = 0;
	*seq = strtoull(subj + n, &end, 10);
	return (errno == 0 && *end == '\0');
}

/* JetStream's answer to one publish. A stored record's ack is
   {"stream":...,"seq":...} (the server writes its error member first,
   and only on error): that is the one read without a parser. Anything
   else is an error, said by the server: its description and JetStream
   code. (NATS' own "no responders" never gets here: fleet_pub_drain.) */
static void
pub_ack_msg(natsMsg *m)
{
	static const char	 ok[] = "{\"stream\":";
	const char		*d = natsMsg_GetData(m);
	size_t			 len = (size_t)natsMsg_GetDataLength(m);
	uint64_t		 seq;
	json_t			*j, *e;
	char			 text[200];

	if (!pub_ack_seq(natsMsg_GetSubject(m), &seq))
		return;
	if (d != NULL && len > sizeof ok - 1 &&
	    memcmp(d, ok, sizeof ok - 1) == 0 &&
	    memmem(d, len, "\"error\"", 7) == NULL) {
		pub_acked(seq);
		return;
	}
	j = d != NULL ? json_loadb(d, len, 0, NULL) : NULL;
	e = json_object_get(j, "error");
	if (json_is_object(e))
		snprintf(text, sizeof text, "%s (%d)", json_string_value(
		    json_object_get(e, "description")) != NULL ?
		    json_string_value(json_object_get(e, "description")) :
		    "error", (int)json_integer_value(json_object_get(e,
		    "err_code")));
	else
		snprintf(text, sizeof text, "not a JetStream ack: %.*s",
		    len > 120 ? 120 : (int)len, d != NULL ? d : "");
	json_decref(j);
	pub_refused(seq, text);
}

void
fleet_pub_drain(void)
{
	natsMsg		*m;
	natsStatus	 s;
	int		 n = 0;
	uint64_t	 base;

	/* How many wait, first: an empty NextMsg sets libnats' error. */
	if (pub.sub == NULL || natsSubscription_GetPending(pub.sub, &n,
	    NULL) != NATS_OK || n <= 0)
		return;
	base = pub.base;
	for (; n > 0; n--) {
		s = natsSubscription_NextMsg(&m, pub.sub, 0);
		if (s == NATS_NO_RESPONDERS)
			/* libnats has freed the message, and with it the seq
			   it was for. */
			pub_no_stream();
		else if (s != NATS_OK)
			break;
		else {
			pub_ack_msg(m);
			natsMsg_Destroy(m);
		}
	}
	/* The room these acks made, filled in this loop pass once it is
	   an eighth of the window: a burst of publishes and one write,
	   not a few of each per read. A live event is published at once
	   still (pub_appended): this paces the backlog. */
	if (pub.base != base &&
	    pub.next - pub.base - 1 + PUB_REFILL(pub.window) <= pub.window)
		fleet_pub_pump();
}

/* The acks' subscription, once per connection (libnats renews it on
   every reconnect). */
static void
pub_subscribe(void)
{
	char		*subj;
	natsStatus	 s;

	if (pub.sub != NULL || fleet.nc == NULL)
		return;
	if (asprintf(&subj, "%s*", pub.rpre) == -1)
		return;
	s = natsConnection_SubscribeSync(&pub.sub, fleet.nc, subj);
	/* The window bounds what can wait: never drop an ack. */
	if (s == NATS_OK)
		s = natsSubscription_SetPendingLimits(pub.sub, -1, -1);
	if (s != NATS_OK) {
		log_err("nats: cannot subscribe to the acks on %s: %s", subj,
		    natsStatus_GetText(s));
		natsSubscription_Destroy(pub.sub);
		pub.sub = NULL;
	}
	free(subj);
}

static void
pub_unsubscribe(void)
{
	if (pub.sub == NULL)
		return;
	natsSubscription_Unsubscribe(pub.sub);
	natsSubscription_Destroy(pub.sub);
	pub.sub = NULL;
}

/* Everything after base again. Acks still coming for what went before
   are true (the record is stored) and count. */
static void
pub_restart(void)
{
	if (pub.cur != NULL)
		evlog_cur_free(pub.cur);
	pub.cur = NULL;
	memset(pub.bits, 0, (size_t)(pub.window + 7) / 8);
	pub.next = pub.base + 1;
	pub_touch();
	pub_subscribe();
}

void
fleet_pub_connected(void)
{
	if (!pub.ready) {
		pub_ensure();
		return;
	}
	pub_restart();
	fleet_pub_pump();
}

void
fleet_pub_disconnected(void)
{
	/* Whatever was in flight is published again once back. */
	if (pub.cur != NULL)
		evlog_cur_free(pub.cur);
	pub.cur = NULL;
	pub.next = pub.base + 1;
	/* A connection closed for good takes its subscription along. */
	if (fleet.nc == NULL || fleet.closed) {
		pub_unsubscribe();
		pub.ready = false;
	}
}

static void
pub_advance(void)
{
	uint64_t	i;

	while (pub.base + 1 < pub.next) {
		i = (pub.base + 1) % pub.window;
		if (!(pub.bits[i / 8] & (1u << (i % 8))))
			break;
		pub.bits[i / 8] &= (unsigned char)~(1u << (i % 8));
		pub.base++;
		pub_touch();
	}
}

static void
pub_acked(uint64_t seq)
{
	uint64_t	i;

	/* Late acks of records already behind base, or of an earlier
	   attempt, still tell the truth about the stream. */
	if (pub.stopped || seq <= pub.base || seq >= pub.base + 1 + pub.window)
		return;
	i = seq % pub.window;
	pub.bits[i / 8] |= (unsigned char)(1u << (i % 8));
	pub_advance();
}

/* The stream said no (text: its reason and code): the record stays
   next after base, published again when the ack timeout passes. */
static void
pub_refused(uint64_t seq, const char *text)
{
	time_t	now = time(NULL);

	if (pub.stopped || now - pub.err_logged < PUB_ERR_LOG_S)
		return;
	log_err("nats: stream %s refused seq %" PRIu64 ": %s; retrying every "
	    "%d ms", conf.nats_stream, seq, text, conf.nats_ack_timeout_ms);
	pub.err_logged = now;
}

/* No responders: no stream takes the subject (deleted, say). Look for
   it, and create it again. */
static void
pub_no_stream(void)
{
	time_t	now = time(NULL);

	if (pub.stopped)
		return;
	if (pub.ready && !pub.ensuring) {
		pub.ready = false;
		pub_ensure();
	}
	if (now - pub.err_logged >= PUB_ERR_LOG_S) {
		log_err("nats: publishing to stream %s: no responders (no "
		    "stream takes the subject); looking for it",
		    conf.nats_stream);
		pub.err_logged = now;
	}
}

void
fleet_pub_tick(void)
{
	/* What a drain stopped short of (a status it could not read
	   past); acks otherwise come with the read event. */
	fleet_pub_drain();
	pub_save();
	if (pub.stopped || !pub.ready || !fleet.connected)
		return;
	if (pub.next > pub.base + 1 &&
	    pub_since(&pub.progress) * 1000 >= conf.nats_ack_timeout_ms) {
		log_info("nats: no ack for seq %" PRIu64 " in %d ms: "
		    "publishing again from there", pub.base + 1,
		    conf.nats_ack_timeout_ms);
		pub_restart();
	}
	fleet_pub_pump();
}

/* The stream: looked up, created if absent, off the loop (JetStream's
   API is request/reply and blocks). */
struct pub_ensure {
	natsConnection	*nc;
	natsStatus	 s;
	bool		 created;
	char		 text[300];
	/* Copies: a reload may free conf's while the work runs. */
	char		*stream, *subjects;
	jsRetentionPolicy retention;
	int		 replicas;
	int64_t		 dup_ns, max_bytes, max_age_ns;
};

static void
pub_ensure_free(struct pub_ensure *e)
{
	free(e->stream);
	free(e->subjects);
	free(e);
}

static jsRetentionPolicy
pub_retention(void)
{
	if (strcmp(conf.nats_retention, "interest") == 0)
		return (js_InterestPolicy);
	if (strcmp(conf.nats_retention, "workqueue") == 0)
		return (js_WorkQueuePolicy);
	return (js_LimitsPolicy);
}

static void
pub_ensure_work(void *arg)
{
	struct pub_ensure	*e = arg;
	jsStreamConfig		 cfg;
	jsStreamInfo		*si = NULL;
	jsErrCode		 jerr = 0;
	jsCtx			*js = NULL;
	const char		*subj[16];
	char			*list, *p, *tok, *save = NULL;
	int			 n = 0;

	if ((list = strdup(e->subjects)) == NULL) {
		e->s = NATS_NO_MEMORY;
		return;
	}
	for (p = list; n < 16 && (tok = strtok_r(p, ", ", &save)) != NULL;
	    p = NULL)
		subj[n++] = tok;
	e->s = natsConnection_JetStream(&js, e->nc, NULL);
	if (e->s == NATS_OK)
		e->s = js_GetStreamInfo(&si, js, e->stream, NULL, &jerr);
	if (e->s == NATS_NOT_FOUND) {
		jsStreamConfig_Init(&cfg);
		cfg.Name = e->stream;
		cfg.Subjects = subj;
		cfg.SubjectsLen = n;
		cfg.Retention = e->retention;
		cfg.Replicas = e->replicas;
		cfg.Duplicates = e->dup_ns;
		cfg.MaxBytes = e->max_bytes;
		cfg.MaxAge = e->max_age_ns;
		cfg.Storage = js_FileStorage;
		jerr = 0;
		e->s = js_AddStream(&si, js, &cfg, NULL, &jerr);
		e->created = e->s == NATS_OK;
	}
	if (e->s != NATS_OK)
		snprintf(e->text, sizeof e->text, "%s (JetStream error %d)",
		    fleet_last_error(e->s), (int)jerr);
	jsStreamInfo_Destroy(si);
	jsCtx_Destroy(js);
	free(list);
}

static void
pub_ensure_done(void *arg, bool ran)
{
	struct pub_ensure	*e = arg;

	pub.ensuring = false;
	if (!ran || pub.stopped) {
		pub_ensure_free(e);
		return;
	}
	if (e->s != NATS_OK) {
		log_err("nats: stream %s: %s; local clients are served, "
		    "events wait in the event log; retrying in %d s",
		    conf.nats_stream, e->text, conf.nats_ack_timeout_ms / 1000);
		event_add(pub.ensure_ev, &(struct timeval){
		    conf.nats_ack_timeout_ms / 1000,
		    (conf.nats_ack_timeout_ms % 1000) * 1000 });
		pub_ensure_free(e);
		return;
	}
	if (e->created)
		log_notice("nats: created stream %s (%s, %s, %d replicas, "
		    "duplicate window %d s)", conf.nats_stream,
		    conf.nats_subjects, conf.nats_retention,
		    conf.nats_replicas, conf.nats_dup_window_s);
	else
		log_info("nats: stream %s is there", conf.nats_stream);
	pub_ensure_free(e);
	pub.ready = true;
	if (fleet.connected) {
		pub_restart();
		fleet_pub_pump();
	}
}

static void
pub_ensure(void)
{
	struct pub_ensure	*e;

	if (pub.ensuring || pub.ready || pub.stopped || fleet.nc == NULL)
		return;
	if ((e = calloc(1, sizeof *e)) == NULL)
		return;
	/* fleet.c destroys no connection while this runs
	   (fleet_pub_busy). */
	e->nc = fleet.nc;
	e->stream = strdup(conf.nats_stream);
	e->subjects = strdup(conf.nats_subjects);
	e->retention = pub_retention();
	e->replicas = conf.nats_replicas;
	e->dup_ns = (int64_t)conf.nats_dup_window_s * 1000000000;
	e->max_bytes = conf.nats_max_bytes > 0 ?
	    (int64_t)conf.nats_max_bytes : -1;
	e->max_age_ns = (int64_t)conf.nats_max_age_s * 1000000000;
	if (e->stream == NULL || e->subjects == NULL ||
	    work_submit(pub_ensure_work, pub_ensure_done, e) == NULL) {
		pub_ensure_free(e);
		return;
	}
	pub.ensuring = true;
}

static void
pub_ensure_cb(evutil_socket_t fd, short what, void *arg)
{
	pub_ensure();
}

int
fleet_pub_start(struct qmp_error *err)
{
	natsInbox	*inbox = NULL;

	if (!evlog_on()) {
		qmp_error_set(err, QMP_CLS_GENERIC, "--nats needs the event "
		    "log, which is off");
		return (-1);
	}
	if (strcmp(conf.nats_retention, "limits") != 0 &&
	    strcmp(conf.nats_retention, "interest") != 0 &&
	    strcmp(conf.nats_retention, "workqueue") != 0) {
		qmp_error_set(err, QMP_CLS_GENERIC, "nats-retention: '%s' is "
		    "not limits, interest or workqueue", conf.nats_retention);
		return (-1);
	}
	memset(&pub, 0, sizeof pub);
	snprintf(pub.epoch, sizeof pub.epoch, "%s", evlog_epoch());
	pub.window = (uint64_t)conf.nats_window;
	if (natsInbox_Create(&inbox) != NATS_OK ||
	    asprintf(&pub.rpre, "%s.", inbox) == -1)
		pub.rpre = NULL;
	natsInbox_Destroy(inbox);
	if (pub.rpre == NULL ||
	    (pub.bits = calloc((size_t)(pub.window + 7) / 8, 1)) == NULL ||
	    asprintf(&pub.path, "%s/%s", conf.state_dir, PUB_FILE) == -1 ||
	    (pub.ensure_ev = evtimer_new(loop_base, pub_ensure_cb, NULL)) ==
	    NULL || evlog_listen(pub_appended, NULL) == -1) {
		qmp_error_set(err, QMP_CLS_GENERIC, "nats: out of memory");
		return (-1);
	}
	pub_load();
	pub_touch();
	return (0);
}

bool
fleet_pub_busy(void)
{
	return (pub.ensuring);
}

void
fleet_pub_stop(void)
{
	if (pub.stopped)
		return;
	pub.stopped = true;
	pub_save();
	if (pub.ensure_ev != NULL)
		event_del(pub.ensure_ev);
}

void
fleet_pub_cleanup(void)
{
	pub_save();
	pub_unsubscribe();
	if (pub.cur != NULL)
		evlog_cur_free(pub.cur);
	if (pub.ensure_ev != NULL)
		event_free(pub.ensure_ev);
	free(pub.bits);
	free(pub.path);
	free(pub.rpre);
	memset(&pub, 0, sizeof pub);
}
