/*
 * The fleet's NATS connection: options, connecting off the loop, the
 * mailbox through which libnats' threads reach the loop, and the
 * connection's life (docs/nats.md).
 *
 * Which libnats calls block, and where they run here:
 * - natsConnection_Connect: DNS, TCP connect, TLS and the INFO/CONNECT
 *   handshake, synchronously, up to its timeout: a core/work thread,
 *   again every FLEET_RETRY_MS while it fails. Not libnats'
 *   retry-on-failed-connect: that reports every failure, bad
 *   credentials included, as "not yet connected", and the operator
 *   would never read why. Once connected, libnats reconnects on its
 *   own thread, forever.
 * - the stream's lookup and creation (JetStream API request/reply):
 *   a core/work thread (fleet_pub.c).
 * - publishing (a plain publish with a reply subject: fleet_pub.c),
 *   subscribing, replying: buffered, the socket written by the
 *   adapter's write event on the loop.
 * Callbacks (requests, connected/disconnected/closed, async errors)
 * come on libnats' threads and only post to the mailbox. Acks are no
 * callback: libnats parses them on the loop, which takes them there
 * (fleet_io).
 */
#include "config.h"

#include <sys/queue.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
/* The adapter's header defines its functions, without prototypes:
   this is its one includer. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-prototypes"
#pragma GCC diagnostic ignored "-Wstrict-prototypes"
#include <nats/adapters/libevent.h>
#pragma GCC diagnostic pop

#include "broker/core/conf.h"
#include "broker/core/log.h"
#include "broker/core/loop.h"
#include "broker/core/work.h"
#include "broker/fleet/fleet_int.h"

#define FLEET_TICK_MS		250
#define FLEET_RETRY_MS		2000	/* a first connect that failed */
#define FLEET_RELOG_S		60	/* the same failure, logged again */
#define FLEET_RECONNECT_MS	1000
#define FLEET_CONNECT_MS	2000
#define FLEET_REQUESTS_MAX	256	/* queued fleet commands */

struct fleet fleet;

enum fleet_news {
	FN_CONNECTED = 1,
	FN_DISCONNECTED = 2,
	FN_CLOSED = 4,
};

struct fleet_reqmsg {
	natsMsg				*m;
	STAILQ_ENTRY(fleet_reqmsg)	 entry;
};

/* The mailbox: the only state libnats' threads write. */
static struct {
	pthread_mutex_t			 mu;
	struct event			*ev;	/* NULL: closed */
	unsigned			 news;
	char				 text[256];	/* last error */
	bool				 has_text;
	STAILQ_HEAD(, fleet_reqmsg)	 reqs;
	size_t				 nreqs;
	bool				 woken;	/* ev is active */
} mbox = { .mu = PTHREAD_MUTEX_INITIALIZER };

static struct event	*fleet_tick_ev, *fleet_retry_ev;
static char		 fleet_url[512];	/* for logs: no passwords */
static bool		 fleet_connecting;

static void	fleet_connect(void);

/* Once per drain: news in a burst takes libevent's lock (and maybe its
   notify fd) once. */
static void
fleet_wake_locked(void)
{
	if (mbox.ev != NULL && !mbox.woken) {
		mbox.woken = true;
		event_active(mbox.ev, EV_READ, 0);
	}
}

static void
fleet_post_news(unsigned what, const char *text)
{
	pthread_mutex_lock(&mbox.mu);
	mbox.news |= what;
	if (text != NULL) {
		snprintf(mbox.text, sizeof mbox.text, "%s", text);
		mbox.has_text = true;
	}
	fleet_wake_locked();
	pthread_mutex_unlock(&mbox.mu);
}

void
fleet_post_request(natsMsg *m)
{
	struct fleet_reqmsg	*q;

	pthread_mutex_lock(&mbox.mu);
	if (mbox.ev == NULL || mbox.nreqs >= FLEET_REQUESTS_MAX ||
	    (q = malloc(sizeof *q)) == NULL) {
		pthread_mutex_unlock(&mbox.mu);
		/* The requester's timeout tells it. */
		natsMsg_Destroy(m);
		return;
	}
	q->m = m;
	STAILQ_INSERT_TAIL(&mbox.reqs, q, entry);
	mbox.nreqs++;
	fleet_wake_locked();
	pthread_mutex_unlock(&mbox.mu);
}

/* On the loop: take everything out under the lock, act without it. */
static void
fleet_mail(evutil_socket_t fd, short what, void *arg)
{
	STAILQ_HEAD(, fleet_reqmsg) reqs = STAILQ_HEAD_INITIALIZER(reqs);
	struct fleet_reqmsg	*q;
	char			 text[256];
	unsigned		 news;
	bool			 has_text;

	pthread_mutex_lock(&mbox.mu);
	mbox.woken = false;
	news = mbox.news;
	mbox.news = 0;
	has_text = mbox.has_text;
	mbox.has_text = false;
	memcpy(text, mbox.text, sizeof text);
	STAILQ_CONCAT(&reqs, &mbox.reqs);
	mbox.nreqs = 0;
	pthread_mutex_unlock(&mbox.mu);

	if (has_text && news == 0)
		log_warn("nats: %s", text);
	if (news & FN_DISCONNECTED) {
		if (fleet.connected && !fleet.stopping)
			log_warn("nats: disconnected from %s%s%s; events wait "
			    "in the event log", fleet_url,
			    has_text ? ": " : "", has_text ? text : "");
		fleet.connected = false;
		fleet_pub_disconnected();
	}
	if ((news & FN_CLOSED) && !fleet.stopping) {
		log_err("nats: connection to %s closed for good%s%s; "
		    "starting over in %d s", fleet_url,
		    has_text ? ": " : "", has_text ? text : "",
		    FLEET_RETRY_MS / 1000);
		fleet.connected = false;
		fleet_pub_disconnected();
	}
	if ((news & FN_CONNECTED) && !fleet.stopping) {
		if (!fleet.connected)
			log_notice("nats: connected to %s", fleet_url);
		fleet.connected = true;
		fleet_ctl_connected();
		fleet_pub_connected();
	}
	while ((q = STAILQ_FIRST(&reqs)) != NULL) {
		STAILQ_REMOVE_HEAD(&reqs, entry);
		if (fleet.stopping)
			natsMsg_Destroy(q->m);
		else
			fleet_ctl_request(q->m);
		free(q);
	}
	if ((news & FN_CLOSED) && !fleet.stopping && fleet.nc != NULL) {
		/* Closed is final for this connection (auth refused on
		   every server, say): a new one, later. */
		fleet.closed = true;
		fleet_ctl_stop();
		fleet_pub_disconnected();
		event_add(fleet_retry_ev, &(struct timeval){
		    FLEET_RETRY_MS / 1000, 0 });
	}
}

/* libnats' threads */
static void
fleet_cb_reconnected(natsConnection *nc, void *arg)
{
	fleet_post_news(FN_CONNECTED, NULL);
}

static void
fleet_cb_disconnected(natsConnection *nc, void *arg)
{
	const char	*t = NULL;

	natsConnection_GetLastError(nc, &t);
	fleet_post_news(FN_DISCONNECTED, t != NULL && *t != '\0' ? t : NULL);
}

static void
fleet_cb_closed(natsConnection *nc, void *arg)
{
	const char	*t = NULL;

	natsConnection_GetLastError(nc, &t);
	fleet_post_news(FN_CLOSED, t != NULL && *t != '\0' ? t : NULL);
}

static void
fleet_cb_error(natsConnection *nc, natsSubscription *sub, natsStatus s,
    void *arg)
{
	char	buf[200];

	snprintf(buf, sizeof buf, "async error: %s", natsStatus_GetText(s));
	fleet_post_news(0, buf);
}

/* The adapter's events, with a handler of ours: after libnats has read
   from the socket, the loop takes the acks it parsed (fleet_pub_drain)
   in the same pass. */
static void
fleet_io(evutil_socket_t fd, short what, void *arg)
{
	natsLibeventEvents	*nle = arg;

	if (what & EV_READ) {
		natsConnection_ProcessReadEvent(nle->nc);
		fleet_pub_drain();
	}
	if (what & EV_WRITE)
		natsConnection_ProcessWriteEvent(nle->nc);
}

/* natsLibevent_Attach, but for the handler of the socket's events (the
   adapter offers no other way to set it; its Read, Write and Detach
   work on what this makes). Runs where libnats connects: a core/work
   thread, or libnats' reconnect thread; libevent is thread-enabled. */
static natsStatus
fleet_attach(void **userData, void *loop, natsConnection *nc,
    natsSock sock)
{
	natsLibeventEvents	*nle = *userData;

	if (nle == NULL) {
		if ((nle = calloc(1, sizeof *nle)) == NULL)
			return (NATS_NO_MEMORY);
		nle->nc = nc;
		nle->loop = loop;
		/* As the adapter does: a base with no events would end
		   event_base_loop (the broker's never has none, but the
		   adapter's Detach frees it). */
		nle->keepActive = event_new(nle->loop, -1, EV_PERSIST,
		    keepAliveCb, NULL);
		if (nle->keepActive == NULL || event_add(nle->keepActive,
		    &(struct timeval){ 100000, 0 }) != 0) {
			natsLibevent_Detach(nle);
			return (NATS_NO_MEMORY);
		}
	} else {
		if (nle->read != NULL)
			event_free(nle->read);
		if (nle->write != NULL)
			event_free(nle->write);
		nle->read = nle->write = NULL;
	}
	nle->read = event_new(nle->loop, sock, EV_READ | EV_PERSIST,
	    fleet_io, nle);
	nle->write = event_new(nle->loop, sock, EV_WRITE | EV_PERSIST,
	    fleet_io, nle);
	if (nle->read == NULL || nle->write == NULL ||
	    natsLibevent_Read(nle, true) != NATS_OK) {
		if (*userData == NULL) {
			natsLibevent_Detach(nle);
			return (NATS_NO_MEMORY);
		}
		/* libnats keeps nle for its next attempt: empty, not
		   freed. */
		if (nle->read != NULL)
			event_free(nle->read);
		if (nle->write != NULL)
			event_free(nle->write);
		nle->read = nle->write = NULL;
		return (NATS_NO_MEMORY);
	}
	*userData = nle;
	return (NATS_OK);
}

/* The URLs without their user:password@ parts. */
static void
fleet_redact(char *dst, size_t len, const char *urls)
{
	const char	*p = urls, *at, *end, *scheme;
	size_t		 n = 0, k;

	dst[0] = '\0';
	while (*p != '\0' && n + 1 < len) {
		end = p + strcspn(p, ",");
		scheme = strstr(p, "://");
		scheme = scheme != NULL && scheme < end ? scheme + 3 : p;
		at = memchr(scheme, '@', (size_t)(end - scheme));
		k = (size_t)(scheme - p);
		if (at != NULL) {
			n += (size_t)snprintf(dst + n, len - n, "%.*s***@",
			    (int)k, p);
			p = at + 1;
		}
		if (n >= len)
			break;
		n += (size_t)snprintf(dst + n, len - n, "%.*s",
		    (int)(end - p), p);
		if (n >= len)
			break;
		p = end;
		if (*p == ',') {
			n += (size_t)snprintf(dst + n, len - n, ",");
			p++;
		}
	}
}

/* libnats' last error without its "(file.c:123): " prefix. */
const char *
fleet_last_error(natsStatus s)
{
	const char	*t = nats_GetLastError(NULL), *q;

	if (t == NULL || *t == '\0')
		return (natsStatus_GetText(s));
	if (*t == '(' && (q = strstr(t, "): ")) != NULL)
		return (q + 3);
	return (t);
}

/* Options whose files libnats reads now (TLS) or at connect (creds). */
static int
fleet_options(struct qmp_error *err)
{
	natsOptions	*o;
	natsStatus	 s;
	char		 name[300];
	const char	*what = "options", *urls[SUBJECT_URLS_MAX];
	char		*list;
	int		 nurls;

	if ((list = strdup(conf.nats_url)) == NULL ||
	    (nurls = subject_urls(list, urls, SUBJECT_URLS_MAX)) <= 0) {
		free(list);
		qmp_error_set(err, QMP_CLS_GENERIC, "--nats: not 1 to %d URLs",
		    SUBJECT_URLS_MAX);
		return (-1);
	}
	if ((s = natsOptions_Create(&o)) != NATS_OK) {
		free(list);
		qmp_error_set(err, QMP_CLS_GENERIC, "nats: %s",
		    natsStatus_GetText(s));
		return (-1);
	}
	snprintf(name, sizeof name, "qmpbrokerd %s", conf.host_id);
	s = natsOptions_SetServers(o, urls, nurls);
	if (s == NATS_OK)
		s = natsOptions_SetName(o, name);
	if (s == NATS_OK)
		s = natsOptions_SetEventLoop(o, loop_base, fleet_attach,
		    natsLibevent_Read, natsLibevent_Write,
		    natsLibevent_Detach);
	if (s == NATS_OK)
		s = natsOptions_SetTimeout(o, FLEET_CONNECT_MS);
	if (s == NATS_OK)
		s = natsOptions_SetMaxReconnect(o, -1);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectWait(o, FLEET_RECONNECT_MS);
	/* Publishing while reconnecting fails at once rather than going
	   into libnats' buffer: a record stays in the event log until a
	   live connection takes it, so no record can overtake an earlier
	   one lost with the old connection. */
	if (s == NATS_OK)
		s = natsOptions_SetReconnectBufSize(o, 1);
	/* Otherwise every publish wakes libnats' flusher thread, which
	   waits a millisecond for more before it asks the loop to write:
	   a thread hop and a millisecond of emit->fleet latency. With the
	   adapter, "as soon as possible" only adds the loop's write event
	   once; the publishes of one loop pass still go in one write. */
	if (s == NATS_OK)
		s = natsOptions_SetSendAsap(o, true);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectedCB(o, fleet_cb_reconnected,
		    NULL);
	if (s == NATS_OK)
		s = natsOptions_SetDisconnectedCB(o, fleet_cb_disconnected,
		    NULL);
	if (s == NATS_OK)
		s = natsOptions_SetClosedCB(o, fleet_cb_closed, NULL);
	if (s == NATS_OK)
		s = natsOptions_SetErrorHandler(o, fleet_cb_error, NULL);
	if (s == NATS_OK && conf.nats_creds != NULL) {
		what = conf.nats_creds;
		s = natsOptions_SetUserCredentialsFromFiles(o, conf.nats_creds,
		    NULL);
	}
	if (s == NATS_OK && conf.nats_nkey_seed != NULL) {
		what = "--nats-nkey/--nats-nkey-seed";
		if (conf.nats_nkey == NULL)
			s = NATS_INVALID_ARG;
		else
			s = natsOptions_SetNKeyFromSeed(o, conf.nats_nkey,
			    conf.nats_nkey_seed);
	}
	if (s == NATS_OK && (conf.nats_tls_ca != NULL ||
	    conf.nats_tls_cert != NULL)) {
		what = "TLS";
		s = natsOptions_SetSecure(o, true);
		if (s == NATS_OK && conf.nats_tls_ca != NULL) {
			what = conf.nats_tls_ca;
			s = natsOptions_LoadCATrustedCertificates(o,
			    conf.nats_tls_ca);
		}
		if (s == NATS_OK && conf.nats_tls_cert != NULL) {
			what = conf.nats_tls_cert;
			s = natsOptions_LoadCertificatesChain(o,
			    conf.nats_tls_cert, conf.nats_tls_key != NULL ?
			    conf.nats_tls_key : conf.nats_tls_cert);
		}
	}
	free(list);
	if (s != NATS_OK) {
		qmp_error_set(err, QMP_CLS_GENERIC, "nats: %s: %s", what,
		    fleet_last_error(s));
		natsOptions_Destroy(o);
		return (-1);
	}
	fleet.opts = o;
	return (0);
}

struct fleet_conn {
	natsConnection	*nc;
	natsStatus	 s;
	char		 text[256];
};

static void
fleet_connect_work(void *arg)
{
	struct fleet_conn	*c = arg;

	c->s = natsConnection_Connect(&c->nc, fleet.opts);
	if (c->s != NATS_OK && strstr(fleet_last_error(c->s), "PONG") != NULL)
		/* libnats' words for a server that hung up in the handshake:
		   with verify on, the usual cause is a refused client
		   certificate (the server tells the client nothing). */
		snprintf(c->text, sizeof c->text, "the server closed the "
		    "connection during the handshake (%s)%s",
		    fleet_last_error(c->s), conf.nats_tls_ca != NULL ||
		    conf.nats_tls_cert != NULL ? "; does it require a client "
		    "certificate (--nats-tls-cert) or refuse this one?" : "");
	else if (c->s != NATS_OK)
		snprintf(c->text, sizeof c->text, "%s",
		    fleet_last_error(c->s));
}

static void
fleet_connect_done(void *arg, bool ran)
{
	static char	 last[256];
	static time_t	 last_t;
	struct fleet_conn *c = arg;
	time_t		 now = time(NULL);

	fleet_connecting = false;
	if (!ran) {
		free(c);
		return;
	}
	if (c->s != NATS_OK) {
		/* Once, then again only if it changes or a minute passed:
		   a server away for hours is one line, not thousands. */
		if (strcmp(last, c->text) != 0 || now - last_t >=
		    FLEET_RELOG_S) {
			log_err("nats: cannot connect to %s: %s; local clients "
			    "are served, events wait in the event log; "
			    "retrying every %d ms", fleet_url, c->text,
			    FLEET_RETRY_MS);
			snprintf(last, sizeof last, "%s", c->text);
			last_t = now;
		}
		if (!fleet.stopping)
			event_add(fleet_retry_ev, &(struct timeval){
			    FLEET_RETRY_MS / 1000,
			    (FLEET_RETRY_MS % 1000) * 1000 });
		free(c);
		return;
	}
	last[0] = '\0';
	if (fleet.stopping) {
		natsConnection_Close(c->nc);
		natsConnection_Destroy(c->nc);
		free(c);
		return;
	}
	fleet.nc = c->nc;
	fleet_post_news(FN_CONNECTED, NULL);
	free(c);
}

static void
fleet_connect(void)
{
	struct fleet_conn	*c;

	if (fleet_connecting || fleet.nc != NULL || fleet.stopping)
		return;
	if ((c = calloc(1, sizeof *c)) == NULL ||
	    work_submit(fleet_connect_work, fleet_connect_done, c) == NULL) {
		free(c);
		log_err("nats: cannot start connecting; retrying");
		event_add(fleet_retry_ev, &(struct timeval){
		    FLEET_RETRY_MS / 1000, 0 });
		return;
	}
	fleet_connecting = true;
}

static void
fleet_retry(evutil_socket_t fd, short what, void *arg)
{
	if (fleet.closed) {
		if (fleet_pub_busy()) {
			event_add(fleet_retry_ev, &(struct timeval){ 0,
			    100000 });
			return;
		}
		natsConnection_Destroy(fleet.nc);
		fleet.nc = NULL;
		fleet.closed = false;
		fleet_pub_disconnected();
	}
	fleet_connect();
}

static void
fleet_tick(evutil_socket_t fd, short what, void *arg)
{
	fleet_mail(-1, 0, NULL);
	fleet_pub_tick();
}

int
fleet_start(struct qmp_error *err)
{
	static const struct timeval	tick = { 0, FLEET_TICK_MS * 1000 };

	if (conf.nats_url == NULL)
		return (0);
	memset(&fleet, 0, sizeof fleet);
	fleet_redact(fleet_url, sizeof fleet_url, conf.nats_url);
	if (subject_token(fleet.host_tok, sizeof fleet.host_tok,
	    conf.host_id) == 0) {
		qmp_error_set(err, QMP_CLS_GENERIC, "--host-id: too long");
		return (-1);
	}
	if (fleet_ctl_start(err) == -1)
		return (-1);
	if (fleet_options(err) == -1)
		return (-1);
	STAILQ_INIT(&mbox.reqs);
	if (fleet_pub_start(err) == -1)
		return (-1);
	pthread_mutex_lock(&mbox.mu);
	mbox.ev = event_new(loop_base, -1, 0, fleet_mail, NULL);
	pthread_mutex_unlock(&mbox.mu);
	fleet_tick_ev = event_new(loop_base, -1, EV_PERSIST, fleet_tick, NULL);
	fleet_retry_ev = evtimer_new(loop_base, fleet_retry, NULL);
	if (mbox.ev == NULL || fleet_tick_ev == NULL ||
	    fleet_retry_ev == NULL || event_add(fleet_tick_ev, &tick) == -1) {
		qmp_error_set(err, QMP_CLS_GENERIC, "out of memory");
		return (-1);
	}
	fleet.started = true;
	log_notice("nats: streaming events of host '%s' to %s, stream %s",
	    conf.host_id, fleet_url, conf.nats_stream);
	fleet_connect();
	return (0);
}

void
fleet_stop(void)
{
	if (!fleet.started || fleet.stopping)
		return;
	fleet.stopping = true;
	fleet_pub_stop();
	fleet_ctl_stop();
	if (fleet_retry_ev != NULL)
		event_del(fleet_retry_ev);
	if (fleet.nc != NULL)
		natsConnection_Close(fleet.nc);
}

void
fleet_cleanup(void)
{
	struct fleet_reqmsg	*q;

	if (!fleet.started)
		return;
	fleet_stop();
	fleet_pub_cleanup();
	if (fleet.nc != NULL)
		natsConnection_Destroy(fleet.nc);
	fleet.nc = NULL;
	natsOptions_Destroy(fleet.opts);
	fleet.opts = NULL;
	/* Every libnats thread gone: nobody posts any more. */
	nats_CloseAndWait(2000);
	pthread_mutex_lock(&mbox.mu);
	if (mbox.ev != NULL)
		event_free(mbox.ev);
	mbox.ev = NULL;
	while ((q = STAILQ_FIRST(&mbox.reqs)) != NULL) {
		STAILQ_REMOVE_HEAD(&mbox.reqs, entry);
		natsMsg_Destroy(q->m);
		free(q);
	}
	pthread_mutex_unlock(&mbox.mu);
	if (fleet_tick_ev != NULL)
		event_free(fleet_tick_ev);
	if (fleet_retry_ev != NULL)
		event_free(fleet_retry_ev);
	fleet_tick_ev = fleet_retry_ev = NULL;
	fleet.started = false;
}
