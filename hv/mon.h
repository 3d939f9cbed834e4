/*
 * The per-VM QMP monitor: one connection to one QEMU monitor socket, kept
 * on the event loop and never blocking it.
 *
 * Life: connecting -> negotiating (greeting, qmp_capabilities,
 * query-commands) -> ready; any EOF, error or command timeout drops to
 * disconnected, completes every pending command with an error exactly
 * once, and reconnects with capped exponential backoff. Every state change
 * is reported to the owner.
 *
 * Commands carry ids the monitor makes, except one at a time: an in-band
 * command written while no other without an id is unanswered goes so
 * (QEMU reads its monitor a byte per poll round, so every byte added to
 * a client's command is paid for), and the reply without an id is its.
 * Replies are matched by id otherwise; events go to the owner's event
 * callback in arrival order, also while commands are in flight. A reply
 * with an unknown id, one without an id while no command went without
 * one, a line that is not JSON, or anything before the greeting is a
 * protocol error: the connection is dropped (and retried) as on EOF.
 *
 * Deadlines: negotiation (greeting, qmp_capabilities, query-commands)
 * must finish within cmd_timeout_ms of the connect, or the connection is
 * dropped. A command written and unanswered for cmd_timeout_ms drops the
 * connection (it fails with "command 'X' timed out after N ms", the
 * others pending with "monitor connection lost: ..."); one still queued
 * when its time is up fails alone.
 *
 * Postcopy paused (mon_set_postcopy_paused): QEMU 7.2 holds in-band
 * commands such as query-migrate until the migration recovers, while
 * query-status and out-of-band ones (migrate-recover) are answered. Then
 * a written in-band command whose time is up fails alone (GenericError
 * "... QEMU does not answer in-band commands while postcopy is paused
 * ...") and the connection stays, so recovery can go through it; its
 * reply, when it comes, is dropped. Up to MON_LATE_MAX such commands are
 * remembered; past that (or for an fd-carrying one) the old rule holds.
 */
#ifndef HV_MON_H
#define HV_MON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <event2/event.h>
#include <jansson.h>

#include "proto/qmp_msg.h"

enum mon_state {
	MON_CONNECTING,
	MON_NEGOTIATING,
	MON_READY,
	MON_DISCONNECTED,
};
const char	*mon_state_name(enum mon_state);

struct mon;

struct mon_ops {
	/* State changed. why says what happened when leaving READY or
	   failing a connect (NULL otherwise). */
	void	(*state)(struct mon *, enum mon_state, const char *why,
		    void *arg);
	/* One QEMU event; borrowed. */
	void	(*event)(struct mon *, json_t *event, void *arg);
};

struct mon_opts {
	size_t	max_msg;		/* 0: QMP_FRAMER_DEFAULT_MAX */
	int	cmd_timeout_ms;		/* 0: 30000 */
	int	backoff_min_ms;		/* 0: 100 */
	int	backoff_max_ms;		/* 0: 10000 */
	bool	no_reconnect;		/* one connection only (tools, tests) */
};

/* Completion: exactly one call per mon_execute(). On success err is NULL
   and ret is the "return" value (borrowed); on failure ret is NULL and
   err holds QEMU's class/desc or the monitor's own (GenericError for
   disconnects and timeouts, CommandNotFound for commands QEMU lacks). */
typedef void mon_reply_fn(struct mon *, json_t *ret,
		    const struct qmp_error *err, void *arg);

struct mon	*mon_new(struct event_base *, const char *socket_path,
		    const struct mon_opts *, const struct mon_ops *, void *arg);
/* Completes every pending command with an error first (callbacks run
   inside this call); the owner's ops are not called after it returns.
   Safe from inside any of this monitor's callbacks. The connection is
   closed at once, the memory released on a later pass of the loop
   (util/defer.h): a process that stops its loop for good calls
   defer_flush() after its last mon_free(). */
void		 mon_free(struct mon *);

/* Queue a command. args is stolen (may be NULL). fds are dup'd and sent
   with the command's bytes in one sendmsg, so getfd/add-fd find them.
   The callback is never made from inside this call: local failures (not
   ready, unknown command) are delivered from the loop.
   Before ready: while CONNECTING or NEGOTIATING the command is queued
   (its timeout already running) and written once negotiation is done;
   while DISCONNECTED it fails at once (GenericError "... is not
   connected"), as does everything pending when a connection is lost.
   Once ready, a command missing from query-commands fails with
   CommandNotFound "The command X has not been found". An fd-carrying
   command is written only when nothing else is in flight, and nothing
   follows it until it is answered (QEMU keeps only the latest fds). */
void		 mon_execute(struct mon *, const char *cmd, json_t *args,
		    const int *fds, size_t nfds, mon_reply_fn *, void *arg);

/* The same as exec-oob: written at once, past every queued and pending
   command, for QEMU to run out of band. Fails (from the loop) unless
   ready with oob enabled. Never carries fds. */
void		 mon_execute_oob(struct mon *, const char *cmd, json_t *args,
		    mon_reply_fn *, void *arg);
/* QEMU's greeting offers oob (the broker then enables it; kept across
   disconnects like the version); mon_oob: enabled on this connection. */
bool		 mon_oob_offered(const struct mon *);
bool		 mon_oob(const struct mon *);

enum mon_state	 mon_state(const struct mon *);
const char	*mon_path(const struct mon *);
/* The pid that listens on the socket, from SO_PEERCRED at the last
   connect (kept across disconnects); 0 if unknown. */
int		 mon_peer_pid(const struct mon *);
/* Valid once a greeting arrived (kept across disconnects). */
const struct qmp_version *mon_version(const struct mon *);
/* Known after negotiation; false while not ready. */
bool		 mon_has_command(const struct mon *, const char *);
size_t		 mon_command_count(const struct mon *);
size_t		 mon_pending(const struct mon *);
/* Commands that timed out (queued or unanswered), since mon_new. */
uint64_t	 mon_timeouts(const struct mon *);
/* The owner's word, from QEMU's MIGRATION events: postcopy is paused (or
   recovering), so in-band commands go unanswered for now (see above).
   Kept across reconnects: it is QEMU's state, not the connection's. */
void		 mon_set_postcopy_paused(struct mon *, bool paused);
/* Commands given up on while postcopy was paused whose replies have not
   come yet (dropped when they do; forgotten on a disconnect). */
size_t		 mon_late(const struct mon *);

/*
 * Upgrade (broker/upgrade.h): the connections of every monitor, with
 * their negotiated state, carried into a new process.
 *   mon_busy: monitors with anything in flight, queued or to report
 *	(negotiation steps included); exporting waits for 0.
 *   mon_export_all: {"cmdsets": [[NAME..]..], "mons": [{"path": P,
 *	"chan": (chan_export), "oob-offered": B, "oob": B, "version":
 *	{"major","minor","micro","package"}, "cmdset": I}..]} for every
 *	ready monitor (the others reconnect in the new process); their
 *	fds are appended to fds. Nothing changes here: if the upgrade does
 *	not happen the monitors go on. NULL if out of memory.
 *   mon_inherit: st is what mon_export_all made, in another process
 *	(hostile: checked, bounded). A monitor that mon_new makes later
 *	for one of st's paths takes that connection over from the loop:
 *	ready at once, no greeting, no negotiation, no query. -1 with err
 *	if st is malformed (then nothing is kept and no fd closed: the
 *	caller closes what it passed).
 *   mon_inherit_fd: the same for a bare connection whose state is not
 *	known (systemd's fd store after a crash): it was negotiated, so
 *	the monitor takes it, asks query-version and query-commands, and
 *	is ready; oob as given (QEMU cannot be asked). fd is taken.
 *   mon_inherit_end: closes every inherited connection no monitor took
 *	(their VMs are gone); returns how many.
 *   mon_adopted: m's connection came from the previous process (until
 *	it drops): its "ready" is not news.
 */
size_t		 mon_busy(void);
/* The connection's socket while there is one (-1 otherwise); borrowed:
   for systemd's fd store, which keeps a copy. */
int		 mon_fd(const struct mon *);
json_t		*mon_export_all(json_t *fds);
int		 mon_inherit(const json_t *st, struct qmp_error *err);
int		 mon_inherit_fd(const char *path, int fd, bool oob);
size_t		 mon_inherit_end(void);
bool		 mon_adopted(const struct mon *);

#endif
