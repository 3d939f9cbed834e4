/*
 * One client session, on the control socket or on a shared per-VM
 * socket: greeting, negotiation, requests in flight, replies by id, and
 * the output queue's rules.
 *
 * Output rules: events are optional, replies are not. An event that
 * would push the queue past client_queue_max is dropped and counted (the
 * client hears EVENTS_DROPPED when the queue drains); a reply is always
 * queued, and a client that leaves a reply unread for reply_stall_ms is
 * disconnected. A client with too much in flight stops being read.
 *
 * Lifetime: client_free() may be called from any callback; it unlinks
 * the client and releases its socket at once, and its memory goes on a
 * later loop pass.
 */
#ifndef BROKER_SESSION_CLIENT_H
#define BROKER_SESSION_CLIENT_H

#include <sys/queue.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "broker/session/peer.h"
#include "broker/session/req.h"
#include "broker/vm/vm.h"
#include "util/defer.h"

enum client_kind {
	CLIENT_CONTROL,
	CLIENT_SHARE,
};

/* Wired once at start by the daemon: how a request is run, and what to
   do when the last client has gone (a stopping daemon exits then). */
struct client_hooks {
	void	(*dispatch)(struct req *, const char *name, json_t *args,
		    bool negotiated);
	void	(*last_gone)(void);
};
void	client_set_hooks(const struct client_hooks *);

struct sub;
struct sub_replay;
struct share;

/* The session's state. client.c writes it; the two other modules of
   session/ keep their per-client state in the members marked theirs. */
/*
 * An answer of a shared socket's client, in the order of its input: QEMU
 * answers in-band input one by one, so a parse error after a command
 * comes after the command's reply. r: the request still at work (NULL
 * once answered); buf: the answer's bytes, held until those before it
 * are out.
 */
struct client_slot {
	TAILQ_ENTRY(client_slot) entry;
	struct req		*r;
	char			*buf;
	size_t			 len;
	/* exec-oob: answered as soon as it is done, past the slots ahead,
	   but what the client sent after it waits for it, as in QEMU (it
	   answers exec-oob while it reads, before reading on) */
	bool			 oob;
};

struct client {
	uint64_t		 id;
	enum client_kind	 kind;
	struct chan		*chan;
	struct peer		 peer;
	bool			 dead;		/* freed, memory pending */
	struct defer		 defer;

	bool			 greeted;
	bool			 negotiated;
	bool			 oob;		/* enabled by qmp_capabilities */
	bool			 closing;	/* no more input */
	bool			 draining;	/* closing once nreqs is 0 */
	bool			 paused;

	struct req_list		 reqs;		/* in flight */
	size_t			 nreqs;
	/* shared sockets: answers in input order; hold: the slot the
	   answer being written goes to */
	TAILQ_HEAD(, client_slot) slots;
	size_t			 nslots;
	size_t			 noob;		/* of them exec-oob */
	struct client_slot	*hold;

	/* Output accounting: bytes ever queued, so "was this reply
	   written?" is queued - outq >= its end. */
	uint64_t		 queued;
	uint64_t		 last_reply_end;
	uint64_t		 stall_mark;
	struct event		*stall_ev;
	uint64_t		 dropped;	/* events not queued */
	uint64_t		 dropped_total;
	uint64_t		 drop_from;	/* their seqs (0: unknown) */
	uint64_t		 drop_to;

	/* share.c's: the VM of a shared client, NULL once gone */
	struct vm		*vm;
	struct share		*share;
	LIST_ENTRY(client)	 share_entry;

	/* sub.c's */
	TAILQ_HEAD(, sub)	 subs;
	uint32_t		 next_sub;
	size_t			 nsubs;
	TAILQ_ENTRY(client)	 sub_entry;	/* clients with subs */
	struct sub_replay	*replay;	/* subscribe "since" running */

	TAILQ_ENTRY(client)	 entry;		/* all clients */
};

/* p is copied. vm: the VM of a shared socket, else NULL. */
struct client *client_new(int fd, enum client_kind, const struct peer *,
	    struct vm *);
void	client_free(struct client *);
size_t	client_count(void);
/* What the metrics show of the sessions: connected clients by kind,
   their subscriptions and queued output now; events queued and dropped
   (queue full) since start, over every client. */
struct client_stats {
	uint64_t	control;
	uint64_t	shared;
	uint64_t	subscriptions;
	uint64_t	queued_bytes;
	uint64_t	events_out;
	uint64_t	events_dropped;
};
void	client_stats(struct client_stats *);
/* The client of a request, NULL once it has gone. */
struct client *client_of(const struct req *);
void	client_greet(struct client *);
/* Negotiated; oob: with {"enable": ["oob"]}. */
void	client_set_negotiated(struct client *, bool oob);
/* Does c's greeting offer oob? The control socket's always does; a
   shared socket's when its QEMU does. */
bool	client_oob_offered(const struct client *);
/* Queue an event's bytes, subject to the queue limit. seq: its place in
   the event log (0: none), so EVENTS_DROPPED can say what was missed. */
void	client_send_event(struct client *, const char *, size_t,
	    uint64_t seq);
/* Stop reading, flush, then go (shutdown, shared VM gone). */
void	client_shutdown(struct client *);
/* The same, once every request in flight has been answered. */
void	client_shutdown_idle(struct client *);
void	client_shutdown_all(void);
/* At exit: every client, now. */
void	client_free_all(void);

/*
 * Upgrade (broker/upgrade.h).
 *   client_hold: no client is read while held (requests wait in the
 *	kernel and in the channels' buffers); false undoes it.
 *   client_busy: clients that are not ready to be carried over: with
 *	requests at work or answers held (but for one request, except,
 *	the upgrade's own), a replay running, or closing.
 *   client_export_all: [{..}..] of every client, with its channel
 *	(input not yet read as requests, output not yet written),
 *	negotiation, oob, peer, subscriptions and drop counters; fds
 *	appended to fds. The client of except is marked to get the reply
 *	to except's id in the new process. NULL if out of memory, or if a
 *	client is busy. Nothing changes here.
 *   client_import_all: the clients back from st (hostile: checked),
 *	after the VMs exist (a shared client whose VM is gone is
 *	closed). *asker (may be NULL) gets the client marked by except and
 *	*asker_id its request's id (a new reference, or NULL). -1 with
 *	err if st is malformed as a whole; a client that cannot be taken
 *	is closed and logged, the others go on. Every fd of st is taken
 *	(used or closed).
 *   client_answer: the reply (ret stolen) to id (borrowed) on c, as a
 *	request's reply goes.
 */
void	client_hold(bool);
size_t	client_busy(const struct req *except);
json_t	*client_export_all(const struct req *except, json_t *fds);
int	client_import_all(const json_t *st, struct client **asker,
	    json_t **asker_id, struct qmp_error *err);
void	client_answer(struct client *, json_t *id, json_t *ret);

#endif
