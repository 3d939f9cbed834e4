/*
 * qmpfleet: the fleet side of qmpbroker's NATS streaming (docs/nats.md).
 *
 *   qmpfleet events  [OPTIONS]       every event of the stream, one JSON
 *                                     line each, from a durable cursor
 *   qmpfleet request [OPTIONS] --host H JSON
 *                                     one fleet command, its QMP reply
 *   qmpfleet publish [OPTIONS] --count N
 *                                     a bare libnats client publishing
 *                                     events like a broker's (tools/bench's
 *                                     baseline)
 *   qmpfleet stream  [OPTIONS] --stream S (--subjects LIST [--max-msg-size N]
 *                                     | --delete)
 *                                     makes a stream (one a broker would
 *                                     find there, and maybe refuse its
 *                                     messages), or deletes one
 *
 * events prints {"subject":S,"stream_seq":N,"stored_ns":T,"event":E} per
 * message, E being what the broker published. JetStream delivers at
 * least once: a message whose ack the server never applied (an ack lost
 * with a server that stopped or a node that died, or one that came after
 * the ack wait) is delivered again, maybe to the next consumer on the
 * same durable. So events prints a stream seq only once: within a run
 * from memory, across runs from --state FILE, where it writes what it
 * printed after each batch is out and before acknowledging it. A
 * consumer stopped (SIGTERM, or kill -9 between batches) and started
 * again with the same --durable and --state prints every event once.
 */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <nats/nats.h>

#include "util/subject.h"

static const char	*opt_url = "nats://127.0.0.1:4222";
static const char	*opt_creds;
static const char	*opt_stream = "QMP_EVENTS";
static const char	*opt_durable = "qmpfleet";
static const char	*opt_filter = "qmp.>";
static const char	*opt_host;
static const char	*opt_state;
static long		 opt_count = -1;
static long		 opt_idle_ms = -1;
static long		 opt_timeout_ms = 5000;	/* x6 for a stream */
static long		 opt_batch = 256;
static long		 opt_window = 256;
static long		 opt_rate;
static long		 opt_max_msg_size = -1;
static const char	*opt_subjects;
static int		 opt_latency, opt_delete;
static volatile sig_atomic_t stop;

static void
usage(void)
{
	fprintf(stderr,
	    "usage: qmpfleet events  [--nats URL] [--creds FILE] [--stream S]"
	    " [--durable NAME]\n"
	    "                        [--filter SUBJECT] [--count N]"
	    " [--idle-ms MS] [--batch N] [--latency]\n"
	    "                        [--state FILE]\n"
	    "       qmpfleet request [--nats URL] [--creds FILE] --host H"
	    " [--timeout-ms MS] JSON\n"
	    "       qmpfleet publish [--nats URL] [--creds FILE] [--stream S]"
	    " --count N [--window W]\n"
	    "                        [--rate PER_S] [--host H]\n"
	    "       qmpfleet stream  [--nats URL] [--creds FILE] --stream S\n"
	    "                        (--subjects LIST [--max-msg-size N] |"
	    " --delete)\n");
	exit(2);
}

static void
die(const char *what, natsStatus s)
{
	const char	*t = nats_GetLastError(NULL);

	fprintf(stderr, "qmpfleet: %s: %s\n", what, t != NULL && *t != '\0' ?
	    t : natsStatus_GetText(s));
	exit(1);
}

static void
on_signal(int sig)
{
	stop = 1;
}

static int64_t
now_ns(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ((int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec);
}

static natsConnection *
connect_nats(void)
{
	natsConnection	*nc = NULL;
	natsOptions	*o = NULL;
	natsStatus	 s;
	const char	*urls[SUBJECT_URLS_MAX];
	char		*list = strdup(opt_url);
	int		 n;

	if (list == NULL || (n = subject_urls(list, urls,
	    SUBJECT_URLS_MAX)) <= 0)
		usage();
	s = natsOptions_Create(&o);
	if (s == NATS_OK)
		s = natsOptions_SetServers(o, urls, n);
	if (s == NATS_OK)
		s = natsOptions_SetMaxReconnect(o, -1);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectWait(o, 250);
	if (s == NATS_OK && opt_creds != NULL)
		s = natsOptions_SetUserCredentialsFromFiles(o, opt_creds, NULL);
	if (s == NATS_OK)
		s = natsConnection_Connect(&nc, o);
	natsOptions_Destroy(o);
	free(list);
	if (s != NATS_OK)
		die(opt_url, s);
	return (nc);
}

/* Stream seqs printed above the floor (every seq <= floor printed):
   a redelivery of any of them is not printed again. */
static uint64_t		 seen_floor;
static unsigned char	*seen;
static size_t		 seen_cap;	/* bits */

static bool
seen_test_set(uint64_t seq)
{
	uint64_t	i;
	size_t		ncap;

	if (seq <= seen_floor)
		return (true);
	i = seq - seen_floor - 1;
	if (i >= seen_cap) {
		ncap = seen_cap == 0 ? 65536 : seen_cap;
		while (ncap <= i)
			ncap *= 2;
		if ((seen = realloc(seen, ncap / 8)) == NULL) {
			fprintf(stderr, "qmpfleet: out of memory\n");
			exit(1);
		}
		memset(seen + seen_cap / 8, 0, (ncap - seen_cap) / 8);
		seen_cap = ncap;
	}
	if (seen[i / 8] & (1u << (i % 8)))
		return (true);
	seen[i / 8] |= (unsigned char)(1u << (i % 8));
	/* Move the floor by whole bytes that are complete. */
	if (seen[0] == 0xff) {
		size_t	k = 0;

		while (k < seen_cap / 8 && seen[k] == 0xff)
			k++;
		memmove(seen, seen + k, seen_cap / 8 - k);
		memset(seen + seen_cap / 8 - k, 0, k);
		seen_floor += (uint64_t)k * 8;
	}
	return (false);
}

/* --state: "FLOOR\nSEQ SEQ ...\n", the printed seqs above the floor.
   Written to a temporary and renamed: a kill -9 leaves one or the
   other whole. */
static void
state_save(void)
{
	char	tmp[4096];
	FILE	*f;
	size_t	 i;

	if (opt_state == NULL)
		return;
	snprintf(tmp, sizeof tmp, "%s.tmp", opt_state);
	if ((f = fopen(tmp, "we")) == NULL) {
		fprintf(stderr, "qmpfleet: %s: %s\n", tmp, strerror(errno));
		exit(1);
	}
	fprintf(f, "%" PRIu64 "\n", seen_floor);
	for (i = 0; i < seen_cap; i++) {
		if (seen[i / 8] & (1u << (i % 8)))
			fprintf(f, "%" PRIu64 " ", seen_floor + 1 + i);
	}
	fputc('\n', f);
	if (fflush(f) == EOF || fsync(fileno(f)) == -1 || fclose(f) == EOF ||
	    rename(tmp, opt_state) == -1) {
		fprintf(stderr, "qmpfleet: %s: %s\n", opt_state,
		    strerror(errno));
		exit(1);
	}
}

static void
state_load(void)
{
	FILE		*f;
	uint64_t	 floor, seq;

	if (opt_state == NULL || (f = fopen(opt_state, "re")) == NULL)
		return;
	if (fscanf(f, "%" SCNu64, &floor) == 1) {
		seen_floor = floor;
		while (fscanf(f, "%" SCNu64, &seq) == 1)
			seen_test_set(seq);
	}
	fclose(f);
}

static bool
seen_has(uint64_t seq)
{
	uint64_t	i;

	if (seq <= seen_floor)
		return (true);
	i = seq - seen_floor - 1;
	return (i < seen_cap && (seen[i / 8] & (1u << (i % 8))) != 0);
}

static int
cmp_i64(const void *a, const void *b)
{
	int64_t	x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x < y ? -1 : x > y);
}

/* Emit time of an event: its QMP timestamp. */
static int64_t
event_time_ns(json_t *ev)
{
	json_t	*ts = json_object_get(ev, "timestamp");

	if (!json_is_object(ts))
		return (-1);
	return (json_integer_value(json_object_get(ts, "seconds")) *
	    1000000000 + json_integer_value(json_object_get(ts,
	    "microseconds")) * 1000);
}

static int
cmd_events(void)
{
	natsConnection	*nc = connect_nats();
	natsSubscription *sub = NULL;
	jsCtx		*js = NULL;
	jsSubOptions	 so;
	jsErrCode	 jerr = 0;
	natsMsgList	 list;
	natsStatus	 s;
	jsMsgMetaData	*meta;
	json_t		*ev, *line;
	char		*out;
	int64_t		 last_msg = now_ns(), *lat = NULL, recv;
	int64_t		 st_min = INT64_MAX, st_max = 0;
	size_t		 nlat = 0, latcap = 0;
	long		 printed = 0;
	int		 i;

	if ((s = natsConnection_JetStream(&js, nc, NULL)) != NATS_OK)
		die("JetStream", s);
	state_load();
	jsSubOptions_Init(&so);
	so.Stream = opt_stream;
	so.Config.AckPolicy = js_AckExplicit;
	so.Config.DeliverPolicy = js_DeliverAll;
	so.Config.MaxAckPending = 65536;
	/* A delivery a dead server lost, or one a killed consumer never
	   acked, comes again this soon. An ack later than this (a loaded
	   machine) makes a redelivery, which the seen set and --state
	   skip: no longer a duplicate, so the wait need not be long. */
	so.Config.AckWait = 5LL * 1000000000;
	/* The brokers create the stream: a consumer started first waits
	   for it (--timeout-ms). */
	while ((s = js_PullSubscribe(&sub, js, opt_filter, opt_durable, NULL,
	    &so, &jerr)) != NATS_OK && !stop &&
	    (now_ns() - last_msg) / 1000000 < opt_timeout_ms * 6)
		usleep(250000);
	if (s != NATS_OK)
		die("pull subscribe", s);
	while (!stop && (opt_count < 0 || printed < opt_count)) {
		s = natsSubscription_Fetch(&list, sub, (int)opt_batch, 500,
		    &jerr);
		if (s == NATS_TIMEOUT || (s == NATS_OK && list.Count == 0)) {
			if (s == NATS_OK)
				natsMsgList_Destroy(&list);
			if (opt_idle_ms >= 0 && (now_ns() - last_msg) / 1000000 >=
			    opt_idle_ms)
				break;
			continue;
		}
		if (s != NATS_OK) {
			/* A server going away mid-fetch: try again. */
			fprintf(stderr, "qmpfleet: fetch: %s\n",
			    natsStatus_GetText(s));
			usleep(200000);
			continue;
		}
		recv = last_msg = now_ns();
		for (i = 0; i < list.Count; i++) {
			natsMsg	*m = list.Msgs[i];

			meta = NULL;
			if (natsMsg_GetMetaData(&meta, m) != NATS_OK ||
			    meta == NULL)
				continue;
			/* Past --count a message is neither printed nor
			   marked: it goes back (Nak) for the next run. */
			if ((opt_count < 0 || printed < opt_count) &&
			    !seen_test_set(meta->Sequence.Stream)) {
				ev = json_loadb(natsMsg_GetData(m),
				    (size_t)natsMsg_GetDataLength(m), 0, NULL);
				if (ev == NULL)
					ev = json_stringn(natsMsg_GetData(m),
					    (size_t)natsMsg_GetDataLength(m));
				if (meta->Timestamp < st_min)
					st_min = meta->Timestamp;
				if (meta->Timestamp > st_max)
					st_max = meta->Timestamp;
				if (opt_latency && event_time_ns(ev) > 0) {
					if (nlat == latcap) {
						latcap = latcap ? 2 * latcap :
						    4096;
						lat = realloc(lat, latcap *
						    sizeof *lat);
						if (lat == NULL)
							exit(1);
					}
					lat[nlat++] = recv - event_time_ns(ev);
				}
				line = json_pack("{s:s,s:I,s:I,s:o}", "subject",
				    natsMsg_GetSubject(m), "stream_seq",
				    (json_int_t)meta->Sequence.Stream,
				    "stored_ns", (json_int_t)meta->Timestamp,
				    "event", ev);
				out = line != NULL ? json_dumps(line,
				    JSON_COMPACT) : NULL;
				if (out != NULL && !opt_latency)
					printf("%s\n", out);
				free(out);
				json_decref(line);
				printed++;
			}
			jsMsgMetaData_Destroy(meta);
		}
		/* Printed, then recorded, then acked: a crash in between
		   costs a redelivery that the record skips, never a loss. */
		fflush(stdout);
		state_save();
		for (i = 0; i < list.Count; i++) {
			natsMsg	*m = list.Msgs[i];

			meta = NULL;
			/* Past --count: not ours, back to the next one. */
			if (natsMsg_GetMetaData(&meta, m) == NATS_OK &&
			    meta != NULL && meta->Sequence.Stream >
			    seen_floor && !seen_has(meta->Sequence.Stream))
				natsMsg_Nak(m, NULL);
			else
				natsMsg_Ack(m, NULL);
			jsMsgMetaData_Destroy(meta);
		}
		natsMsgList_Destroy(&list);
	}
	/* Acks out before we go: the cursor is where we stopped. */
	natsConnection_FlushTimeout(nc, 5000);
	if (opt_latency && nlat > 0) {
		qsort(lat, nlat, sizeof *lat, cmp_i64);
		/* stored_per_s: how fast the stream took them, from its own
		   timestamps (the publisher's rate, whoever it was). */
		printf("{\"count\":%zu,\"p50_us\":%.1f,\"p99_us\":%.1f,"
		    "\"stored_per_s\":%.0f}\n", nlat,
		    (double)lat[nlat / 2] / 1000,
		    (double)lat[nlat * 99 / 100] / 1000, st_max > st_min ?
		    (double)(nlat - 1) * 1e9 / (double)(st_max - st_min) : 0.0);
	}
	fflush(stdout);
	free(lat);
	free(seen);
	natsSubscription_Destroy(sub);
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	return (0);
}

static int
cmd_request(const char *body)
{
	natsConnection	*nc;
	natsMsg		*reply = NULL;
	natsStatus	 s;
	char		 tok[3 * 256 + 1], subj[sizeof tok + 32];

	if (opt_host == NULL || subject_token(tok, sizeof tok, opt_host) == 0)
		usage();
	snprintf(subj, sizeof subj, "qmp.%s.control", tok);
	nc = connect_nats();
	s = natsConnection_Request(&reply, nc, subj, body, (int)strlen(body),
	    opt_timeout_ms);
	if (s != NATS_OK)
		die(subj, s);
	printf("%.*s\n", natsMsg_GetDataLength(reply), natsMsg_GetData(reply));
	natsMsg_Destroy(reply);
	natsConnection_Destroy(nc);
	return (0);
}

/* The same shape of message as a broker's, by a plain libnats program:
   async publishes with Nats-Msg-Id, at most --window unacked. */
static int
cmd_publish(void)
{
	natsConnection	*nc = connect_nats();
	jsCtx		*js = NULL;
	jsOptions	 o;
	jsPubOptions	 po;
	natsMsg		*m;
	natsStatus	 s;
	char		 subj[64], id[64], body[512], run[32], all[64];
	const char	*subjs[1] = { all };
	jsStreamConfig	 cfg;
	jsStreamInfo	*si = NULL;
	jsErrCode	 jerr = 0;
	int64_t		 t0, t, next;
	struct timespec	 ts;
	long		 i;
	int		 n;

	if (opt_count < 0)
		usage();
	snprintf(run, sizeof run, "%lld", (long long)now_ns());
	jsOptions_Init(&o);
	o.PublishAsync.MaxPending = opt_window;
	/* A full window waits for room, however loaded the machine. */
	o.PublishAsync.StallWait = 60000;
	if ((s = natsConnection_JetStream(&js, nc, &o)) != NATS_OK)
		die("JetStream", s);
	jsPubOptions_Init(&po);
	snprintf(subj, sizeof subj, "qmp.%s.bench.event.BENCH",
	    opt_host != NULL ? opt_host : "bare");
	/* A stream of its own if asked for one that is not there (the
	   bench's rounds): file storage, as the broker makes it. */
	if (js_GetStreamInfo(&si, js, opt_stream, NULL, &jerr) ==
	    NATS_NOT_FOUND) {
		snprintf(all, sizeof all, "qmp.%s.>", opt_host != NULL ?
		    opt_host : "bare");
		jsStreamConfig_Init(&cfg);
		cfg.Name = opt_stream;
		cfg.Subjects = subjs;
		cfg.SubjectsLen = 1;
		cfg.Storage = js_FileStorage;
		if ((s = js_AddStream(&si, js, &cfg, NULL, &jerr)) != NATS_OK)
			die("add stream", s);
	}
	jsStreamInfo_Destroy(si);
	t0 = next = now_ns();
	for (i = 1; i <= opt_count; i++) {
		if (opt_rate > 0) {
			next += 1000000000LL / opt_rate;
			while ((t = now_ns()) < next) {
				ts.tv_sec = 0;
				ts.tv_nsec = (long)(next - t);
				nanosleep(&ts, NULL);
			}
		}
		t = now_ns();
		n = snprintf(body, sizeof body, "{\"event\":\"BENCH\",\"vm\":"
		    "\"bench\",\"data\":{\"n\":%ld},\"timestamp\":{\"seconds\":"
		    "%lld,\"microseconds\":%lld},\"seq\":%ld,\"epoch\":\"%s\"}",
		    i, (long long)(t / 1000000000),
		    (long long)(t % 1000000000 / 1000), i, run);
		snprintf(id, sizeof id, "%s-%ld", run, i);
		s = natsMsg_Create(&m, subj, NULL, body, n);
		if (s == NATS_OK)
			s = natsMsgHeader_Set(m, "Nats-Msg-Id", id);
		if (s == NATS_OK)
			s = js_PublishMsgAsync(js, &m, &po);
		if (s != NATS_OK)
			die("publish", s);
	}
	po.MaxWait = 60000;
	if ((s = js_PublishAsyncComplete(js, &po)) != NATS_OK)
		die("publish complete", s);
	t = now_ns();
	printf("{\"count\":%ld,\"seconds\":%.3f,\"per_s\":%.0f}\n", opt_count,
	    (double)(t - t0) / 1e9, (double)opt_count * 1e9 / (double)(t - t0));
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	return (0);
}

/* A stream made or deleted, as an operator would with the nats CLI. */
static int
cmd_stream(void)
{
	natsConnection	*nc;
	jsCtx		*js = NULL;
	jsStreamConfig	 cfg;
	jsStreamInfo	*si = NULL;
	jsErrCode	 jerr = 0;
	natsStatus	 s;
	const char	*subj[16];
	char		*list, *p, *tok, *save = NULL;
	int		 n = 0;

	if (opt_delete == (opt_subjects != NULL))
		usage();
	nc = connect_nats();
	if ((s = natsConnection_JetStream(&js, nc, NULL)) != NATS_OK)
		die("JetStream", s);
	if (opt_delete) {
		if ((s = js_DeleteStream(js, opt_stream, NULL, &jerr)) !=
		    NATS_OK)
			die("delete stream", s);
	} else {
		if ((list = strdup(opt_subjects)) == NULL)
			die("subjects", NATS_NO_MEMORY);
		for (p = list; n < 16 && (tok = strtok_r(p, ", ", &save)) !=
		    NULL; p = NULL)
			subj[n++] = tok;
		jsStreamConfig_Init(&cfg);
		cfg.Name = opt_stream;
		cfg.Subjects = subj;
		cfg.SubjectsLen = n;
		cfg.Storage = js_FileStorage;
		if (opt_max_msg_size > 0)
			cfg.MaxMsgSize = (int32_t)opt_max_msg_size;
		if ((s = js_AddStream(&si, js, &cfg, NULL, &jerr)) != NATS_OK)
			die("add stream", s);
		jsStreamInfo_Destroy(si);
		free(list);
	}
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	return (0);
}

int
main(int argc, char **argv)
{
	const char	*cmd, *body = NULL;
	int		 i, rc = 2;

	if (argc < 2)
		usage();
	cmd = argv[1];
	for (i = 2; i < argc; i++) {
		const char	*a = argv[i];
		const char	*v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(a, "--latency") == 0) {
			opt_latency = 1;
			continue;
		}
		if (strcmp(a, "--delete") == 0) {
			opt_delete = 1;
			continue;
		}
		if (strncmp(a, "--", 2) != 0) {
			if (body != NULL)
				usage();
			body = a;
			continue;
		}
		if (v == NULL)
			usage();
		i++;
		if (strcmp(a, "--nats") == 0)
			opt_url = v;
		else if (strcmp(a, "--creds") == 0)
			opt_creds = v;
		else if (strcmp(a, "--stream") == 0)
			opt_stream = v;
		else if (strcmp(a, "--durable") == 0)
			opt_durable = v;
		else if (strcmp(a, "--filter") == 0)
			opt_filter = v;
		else if (strcmp(a, "--host") == 0)
			opt_host = v;
		else if (strcmp(a, "--state") == 0)
			opt_state = v;
		else if (strcmp(a, "--count") == 0)
			opt_count = atol(v);
		else if (strcmp(a, "--idle-ms") == 0)
			opt_idle_ms = atol(v);
		else if (strcmp(a, "--timeout-ms") == 0)
			opt_timeout_ms = atol(v);
		else if (strcmp(a, "--batch") == 0)
			opt_batch = atol(v) > 0 ? atol(v) : 1;
		else if (strcmp(a, "--window") == 0)
			opt_window = atol(v) > 0 ? atol(v) : 1;
		else if (strcmp(a, "--rate") == 0)
			opt_rate = atol(v);
		else if (strcmp(a, "--subjects") == 0)
			opt_subjects = v;
		else if (strcmp(a, "--max-msg-size") == 0)
			opt_max_msg_size = atol(v);
		else
			usage();
	}
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	signal(SIGPIPE, SIG_IGN);
	if (strcmp(cmd, "events") == 0 && body == NULL)
		rc = cmd_events();
	else if (strcmp(cmd, "request") == 0 && body != NULL)
		rc = cmd_request(body);
	else if (strcmp(cmd, "publish") == 0 && body == NULL)
		rc = cmd_publish();
	else if (strcmp(cmd, "stream") == 0 && body == NULL)
		rc = cmd_stream();
	else
		usage();
	nats_CloseAndWait(2000);
	return (rc);
}
