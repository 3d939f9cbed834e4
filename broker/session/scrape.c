/*
 * GET /metrics over evhttp (see scrape.h).
 *
 * The connection cap: libevent 2.1's evhttp has no limit of its own and
 * tells nobody when a connection goes. So each connection's bufferevent
 * is made here (evhttp_set_bevcb), with a reference of ours on it: when
 * evhttp frees it, its callbacks are cleared but the memory (and, with
 * BEV_OPT_CLOSE_ON_FREE, the socket) stays until we drop our reference.
 * A sweep (on each new connection, and every SCRAPE_SWEEP_MS while any
 * is open) drops the references of those evhttp let go; the count of
 * the rest drives the listener: disabled at the cap, enabled below it.
 * The socket is closed by the bufferevent's own release, after its
 * events are deleted, so its number cannot be reused under a live
 * event.
 */
#include "config.h"

#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include <errno.h>
#include <netdb.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <event2/util.h>

#include "broker/core/conf.h"
#include "broker/core/log.h"
#include "broker/core/loop.h"
#include "broker/core/metrics.h"
#include "broker/session/client.h"
#include "broker/session/listen.h"
#include "broker/session/scrape.h"

#define SCRAPE_MAX_HEADERS	8192
#define SCRAPE_MAX_BODY		4096
#define SCRAPE_PATH		"/metrics"
#define SCRAPE_CTYPE		"text/plain; version=0.0.4; charset=utf-8"

enum scrape_code {
	SC_200,
	SC_404,
	SC_405,
	SC_N
};
static const char *const scrape_codes[SC_N] = { "200", "404", "405" };

#define SCRAPE_SWEEP_MS		250
#define SCRAPE_BACKOFF_MS	100	/* out of fds: accept again after */
/* What a connection may have read and evhttp not yet parsed: a request
   at its largest. Past it the socket is not read (while a reply is
   sent, evhttp reads nothing). */
#define SCRAPE_SNDBUF		(4 * METRICS_PART)
#define SCRAPE_MAX_INPUT	(SCRAPE_MAX_HEADERS + SCRAPE_MAX_BODY + 4096)

static struct evhttp			*scrape_http;
static struct evconnlistener		*scrape_lev;
static char				*scrape_unix;	/* to unlink */
static struct bufferevent		**scrape_bevs;	/* ours, referenced */
static size_t				 scrape_conns;
static size_t				 scrape_cap;	/* bound at open */
static struct event			*scrape_sweep_ev;
static int				 scrape_full;	/* at the cap */
static int				 scrape_paused;	/* out of fds */
static struct event			*scrape_backoff_ev;
static uint64_t				 scrape_fd_pauses;
static uint64_t				 scrape_reqs[SC_N];
static uint64_t				 scrape_cap_hits;
static size_t				 scrape_streams;	/* GETs sending */

/* ---- connections ---- */

/* evhttp has freed it: bufferevent_free cleared its callbacks (evhttp
   always sets its own). */
static int
scrape_bev_gone(struct bufferevent *bev)
{
	bufferevent_data_cb	 r, w;
	bufferevent_event_cb	 e;
	void			*arg;

	bufferevent_getcb(bev, &r, &w, &e, &arg);
	return (r == NULL && w == NULL && e == NULL);
}

static void
scrape_sweep_arm(void)
{
	struct timeval	tv = { 0, SCRAPE_SWEEP_MS * 1000 };

	if (scrape_sweep_ev != NULL && scrape_conns > 0 &&
	    !evtimer_pending(scrape_sweep_ev, NULL))
		evtimer_add(scrape_sweep_ev, &tv);
}

/* The listener accepts below the cap and when fds are to be had. */
static void
scrape_listen_update(void)
{
	if (scrape_lev == NULL)
		return;
	if (scrape_full || scrape_paused)
		evconnlistener_disable(scrape_lev);
	else
		evconnlistener_enable(scrape_lev);
}

/* accept() failed for want of fds or memory: the pending connection
   would keep the socket readable and the loop would spin on it, so the
   listener rests for SCRAPE_BACKOFF_MS (the control socket's listeners
   do the same, session/listen.c). */
static void
scrape_accept_error(struct evconnlistener *lev, void *arg)
{
	struct timeval	tv = { 0, SCRAPE_BACKOFF_MS * 1000 };
	int		e = EVUTIL_SOCKET_ERROR();

	if (e != EMFILE && e != ENFILE && e != ENOBUFS && e != ENOMEM) {
		log_warn("metrics: accept: %s", strerror(e));
		return;
	}
	if (scrape_paused || scrape_backoff_ev == NULL)
		return;
	scrape_paused = 1;
	scrape_fd_pauses++;
	scrape_listen_update();
	evtimer_add(scrape_backoff_ev, &tv);
}

static void
scrape_backoff_cb(evutil_socket_t fd, short what, void *arg)
{
	scrape_paused = 0;
	scrape_listen_update();
}

/* Drops our reference on every connection evhttp let go (all of them
   with all), then lets the listener accept again below the cap. */
static void
scrape_sweep(int all)
{
	size_t	i = 0;

	while (i < scrape_conns) {
		if (!all && !scrape_bev_gone(scrape_bevs[i])) {
			i++;
			continue;
		}
		bufferevent_decref(scrape_bevs[i]);
		scrape_bevs[i] = scrape_bevs[--scrape_conns];
	}
	if (scrape_full && scrape_conns < scrape_cap) {
		scrape_full = 0;
		scrape_listen_update();
	}
	scrape_sweep_arm();
}

static void
scrape_sweep_cb(evutil_socket_t fd, short what, void *arg)
{
	scrape_sweep(0);
}

static struct bufferevent *
scrape_bev(struct event_base *base, void *arg)
{
	struct bufferevent	*bev;

	scrape_sweep(0);
	/* the listener is off at the cap: this is one accepted before */
	if (scrape_conns == scrape_cap)
		return (NULL);
	if ((bev = bufferevent_socket_new(base, -1,
	    BEV_OPT_CLOSE_ON_FREE)) == NULL)
		return (NULL);
	bufferevent_incref(bev);
	/* a part in one write, not evhttp's 16 KiB at a time */
	bufferevent_set_max_single_write(bev, 2 * METRICS_PART);
	bufferevent_setwatermark(bev, EV_READ, 0, SCRAPE_MAX_INPUT);
	scrape_bevs[scrape_conns++] = bev;
	if (scrape_conns == scrape_cap && scrape_lev != NULL) {
		scrape_full = 1;
		scrape_listen_update();
		scrape_cap_hits++;
		log_warn("metrics: %zu HTTP connections open, not accepting "
		    "more until one closes", scrape_conns);
	}
	scrape_sweep_arm();
	return (bev);
}

/* ---- requests ---- */

static void
scrape_error(struct evhttp_request *req, int code, const char *reason,
    const char *text)
{
	struct evbuffer	*b = evbuffer_new();

	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Content-Type", "text/plain; charset=utf-8");
	if (b != NULL)
		evbuffer_add_printf(b, "%d %s: %s\n", code, reason, text);
	evhttp_send_reply(req, code, reason, b);
	if (b != NULL)
		evbuffer_free(b);
}

/* A GET in progress: the exposition goes out in parts, each made when
   the previous one has left the connection's buffer (evhttp calls
   scrape_more then), so that the loop spends a part's time at once and
   a scrape holds a part's memory. */
struct scrape_job {
	struct evhttp_request		*req;
	struct evhttp_connection	*evcon;
	struct metrics_scrape		*ms;
	struct evbuffer			*part;
};

static void
scrape_job_free(struct scrape_job *j)
{
	metrics_scrape_free(j->ms);
	if (j->part != NULL)
		evbuffer_free(j->part);
	free(j);
	scrape_streams--;
}

static void
scrape_more(struct evhttp_connection *evcon, void *arg)
{
	struct scrape_job	*j = arg;
	int			 done;

	do
		done = metrics_scrape_step(j->ms, j->part);
	while (!done && evbuffer_get_length(j->part) == 0);
	/* A part always comes with a callback for the next, or the end. */
	evhttp_send_reply_chunk_with_cb(j->req, j->part, done ? NULL :
	    scrape_more, j);
	if (!done)
		return;
	evhttp_connection_set_closecb(j->evcon, NULL, NULL);
	evhttp_send_reply_end(j->req);
	scrape_job_free(j);
}

/* The connection goes mid-way (the client left, or was too slow for
   metrics-timeout-ms, or the server closes): evhttp has let go of the
   request if it was ours to finish, and frees it itself otherwise. */
static void
scrape_gone(struct evhttp_connection *evcon, void *arg)
{
	struct scrape_job	*j = arg;

	if (evhttp_request_get_connection(j->req) == NULL)
		evhttp_send_reply_end(j->req);	/* frees it */
	scrape_job_free(j);
}

static void
scrape_req(struct evhttp_request *req, void *arg)
{
	const struct evhttp_uri	*u = evhttp_request_get_evhttp_uri(req);
	const char		*path = u != NULL ? evhttp_uri_get_path(u) :
				    NULL;
	enum evhttp_cmd_type	 m = evhttp_request_get_command(req);
	struct evkeyvalq	*oh = evhttp_request_get_output_headers(req);
	struct evkeyvalq	*ih;
	struct scrape_job	*j;
	const char		*conn;

	if (path == NULL || strcmp(path, SCRAPE_PATH) != 0) {
		scrape_reqs[SC_404]++;
		scrape_error(req, HTTP_NOTFOUND, "Not Found",
		    "only " SCRAPE_PATH " is served here");
		return;
	}
	if (m != EVHTTP_REQ_GET && m != EVHTTP_REQ_HEAD) {
		scrape_reqs[SC_405]++;
		evhttp_add_header(oh, "Allow", "GET, HEAD");
		scrape_error(req, HTTP_BADMETHOD, "Method Not Allowed",
		    SCRAPE_PATH " takes GET or HEAD");
		return;
	}
	scrape_reqs[SC_200]++;
	evhttp_add_header(oh, "Content-Type", SCRAPE_CTYPE);
	if (m == EVHTTP_REQ_HEAD) {
		evhttp_send_reply(req, HTTP_OK, "OK", NULL);
		return;
	}
	if ((j = calloc(1, sizeof *j)) == NULL ||
	    (j->ms = metrics_scrape_new()) == NULL ||
	    (j->part = evbuffer_new()) == NULL) {
		if (j != NULL) {
			metrics_scrape_free(j->ms);
			free(j);
		}
		scrape_reqs[SC_200]--;
		scrape_error(req, HTTP_SERVUNAVAIL, "Service Unavailable",
		    "out of memory");
		return;
	}
	scrape_streams++;
	j->req = req;
	j->evcon = evhttp_request_get_connection(req);
	evhttp_connection_set_closecb(j->evcon, scrape_gone, j);
	/* HTTP/1.1 gets chunks. HTTP/1.0 has none, and the length is not
	   known before the end: the body ends with the connection, also for
	   a client that asked to keep it (evhttp would send a length of 0).
	   To HTTP/1.1, keep-alive is what it does anyway. */
	ih = evhttp_request_get_input_headers(req);
	if ((conn = evhttp_find_header(ih, "Connection")) != NULL &&
	    evutil_ascii_strcasecmp(conn, "keep-alive") == 0)
		evhttp_remove_header(ih, "Connection");
	evhttp_send_reply_start(req, HTTP_OK, "OK");
	scrape_more(j->evcon, j);
}

/* ---- the listener ---- */

static int
scrape_loopback(const struct sockaddr *sa)
{
	const struct sockaddr_in	*s4;
	const struct sockaddr_in6	*s6;
	const uint8_t			*a;

	if (sa->sa_family == AF_INET) {
		s4 = (const struct sockaddr_in *)(const void *)sa;
		return ((ntohl(s4->sin_addr.s_addr) >> 24) == 127);
	}
	if (sa->sa_family == AF_INET6) {
		s6 = (const struct sockaddr_in6 *)(const void *)sa;
		if (IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr))
			return (1);
		a = s6->sin6_addr.s6_addr;
		return (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr) && a[12] == 127);
	}
	return (0);
}

/* HOST:PORT ([V6]:PORT): a listening socket, or -1 with err. */
static int
scrape_tcp(const char *addr, struct qmp_error *err)
{
	struct addrinfo	 hints, *res = NULL;
	char		 host[256], *port;
	const char	*colon = strrchr(addr, ':');
	size_t		 hlen;
	int		 fd = -1, one = 1, rc;

	if (colon == NULL || colon == addr || colon[1] == '\0' ||
	    (size_t)(colon - addr) >= sizeof host) {
		qmp_error_set(err, QMP_CLS_GENERIC, "metrics-listen '%s': "
		    "expected unix:PATH or HOST:PORT", addr);
		return (-1);
	}
	hlen = (size_t)(colon - addr);
	memcpy(host, addr, hlen);
	host[hlen] = '\0';
	if (host[0] == '[' && hlen > 2 && host[hlen - 1] == ']') {
		memmove(host, host + 1, hlen - 2);
		host[hlen - 2] = '\0';
	}
	port = (char *)colon + 1;
	memset(&hints, 0, sizeof hints);
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	if ((rc = getaddrinfo(host, port, &hints, &res)) != 0) {
		qmp_error_set(err, QMP_CLS_GENERIC, "metrics-listen '%s': %s",
		    addr, gai_strerror(rc));
		return (-1);
	}
	if (!scrape_loopback(res->ai_addr) && !conf.metrics_remote) {
		qmp_error_set(err, QMP_CLS_GENERIC, "metrics-listen '%s' is "
		    "not a loopback address (metrics-remote yes allows it)",
		    addr);
		goto fail;
	}
	if ((fd = socket(res->ai_family, res->ai_socktype | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, res->ai_protocol)) == -1 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == -1 ||
	    bind(fd, res->ai_addr, res->ai_addrlen) == -1 ||
	    listen(fd, 128) == -1) {
		qmp_error_set(err, QMP_CLS_GENERIC, "metrics-listen '%s': %s",
		    addr, strerror(errno));
		goto fail;
	}
	freeaddrinfo(res);
	return (fd);
fail:
	if (fd != -1)
		close(fd);
	freeaddrinfo(res);
	return (-1);
}

int
scrape_open(struct qmp_error *err)
{
	struct evhttp_bound_socket	*bs;
	struct timeval			 tv;
	const char			*addr = conf.metrics_listen;
	int				 fd, sndbuf;

	if (addr == NULL || scrape_http != NULL)
		return (0);
	if (strncmp(addr, "unix:", 5) == 0) {
		if ((fd = lsn_bind(addr + 5, 0660, conf.socket_gid, 1,
		    err)) == -1)
			return (-1);
		if ((scrape_unix = strdup(addr + 5)) == NULL) {
			unlink(addr + 5);
			close(fd);
			qmp_error_set(err, QMP_CLS_GENERIC, "out of memory");
			return (-1);
		}
	} else if ((fd = scrape_tcp(addr, err)) == -1)
		return (-1);
	/* Connections inherit it: the kernel holds a few parts of a
	   scrape, not the 4 MiB TCP's autotuning would give each of
	   metrics-max-conns slow readers. */
	sndbuf = SCRAPE_SNDBUF;
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
	scrape_cap = conf.metrics_max_conns;
	if ((scrape_bevs = calloc(scrape_cap,
	    sizeof scrape_bevs[0])) == NULL ||
	    (scrape_sweep_ev = evtimer_new(loop_base, scrape_sweep_cb,
	    NULL)) == NULL ||
	    (scrape_backoff_ev = evtimer_new(loop_base, scrape_backoff_cb,
	    NULL)) == NULL ||
	    (scrape_http = evhttp_new(loop_base)) == NULL ||
	    (bs = evhttp_accept_socket_with_handle(scrape_http, fd)) == NULL) {
		qmp_error_set(err, QMP_CLS_GENERIC, "metrics-listen '%s': "
		    "cannot start the HTTP server", addr);
		close(fd);
		scrape_close();
		return (-1);
	}
	scrape_lev = evhttp_bound_socket_get_listener(bs);
	evconnlistener_set_error_cb(scrape_lev, scrape_accept_error);
	tv.tv_sec = conf.metrics_timeout_ms / 1000;
	tv.tv_usec = (conf.metrics_timeout_ms % 1000) * 1000;
	evhttp_set_timeout_tv(scrape_http, &tv);
	evhttp_set_max_headers_size(scrape_http, SCRAPE_MAX_HEADERS);
	evhttp_set_max_body_size(scrape_http, SCRAPE_MAX_BODY);
	/* Every method reaches scrape_req, so that each gets a 405 saying
	   what is allowed rather than evhttp's bare refusal. */
	evhttp_set_allowed_methods(scrape_http, EVHTTP_REQ_GET |
	    EVHTTP_REQ_POST | EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT |
	    EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
	    EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
	evhttp_set_bevcb(scrape_http, scrape_bev, NULL);
	evhttp_set_gencb(scrape_http, scrape_req, NULL);
	log_notice("metrics on %s", addr);
	return (0);
}

void
scrape_close(void)
{
	struct evhttp	*h = scrape_http;

	scrape_lev = NULL;
	scrape_http = NULL;
	if (h != NULL)
		evhttp_free(h);		/* every connection */
	scrape_sweep(1);
	free(scrape_bevs);
	scrape_bevs = NULL;
	if (scrape_sweep_ev != NULL)
		event_free(scrape_sweep_ev);
	scrape_sweep_ev = NULL;
	if (scrape_backoff_ev != NULL)
		event_free(scrape_backoff_ev);
	scrape_backoff_ev = NULL;
	scrape_paused = 0;
	if (scrape_unix != NULL) {
		unlink(scrape_unix);
		free(scrape_unix);
		scrape_unix = NULL;
	}
	scrape_full = 0;
}

/* ---- the sessions' figures ---- */

#define C(m)	offsetof(struct client_stats, m)
static const struct metrics_def scrape_defs[] = {
	{ "subscriptions", "gauge", "Event subscriptions of every client.",
	    C(subscriptions) },
	{ "events_out_total", "counter", "Events queued to clients.",
	    C(events_out) },
	{ "events_dropped_total", "counter", "Events not queued to a client "
	    "because its queue was full.", C(events_dropped) },
	{ "client_queued_bytes", "gauge", "Bytes queued to clients and not "
	    "yet written.", C(queued_bytes) },
};
#undef C

void
scrape_collect(struct metrics_out *o, void *arg)
{
	struct client_stats	 st;
	const char		*kv[3] = { "kind", NULL, NULL };
	int			 i;

	client_stats(&st);
	metrics_family(o, "clients", "gauge", "Connected clients, by kind "
	    "(control socket, a VM's shared socket).");
	kv[1] = "control";
	metrics_u64(o, "clients", kv, st.control);
	kv[1] = "shared";
	metrics_u64(o, "clients", kv, st.shared);
	metrics_table(o, scrape_defs, sizeof scrape_defs /
	    sizeof scrape_defs[0], &st);
	metrics_one(o, "http_connections", "gauge", "Open connections to "
	    "this metrics server.", scrape_conns);
	metrics_one(o, "http_connection_cap_hits_total", "counter", "Times "
	    "the metrics server reached metrics-max-conns and stopped "
	    "accepting.", scrape_cap_hits);
	metrics_one(o, "http_accept_pauses_total", "counter", "Times the "
	    "metrics server ran out of file descriptors and stopped "
	    "accepting for a while.", scrape_fd_pauses);
	metrics_one(o, "http_scrapes_in_progress", "gauge", "GET /metrics "
	    "being sent, in parts (this one included).", scrape_streams);
	metrics_family(o, "http_requests_total", "counter", "Requests to the "
	    "metrics server, by HTTP status.");
	kv[0] = "code";
	for (i = 0; i < SC_N; i++) {
		kv[1] = scrape_codes[i];
		metrics_u64(o, "http_requests_total", kv, scrape_reqs[i]);
	}
}
