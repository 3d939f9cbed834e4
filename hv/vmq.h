/*
 * A VM's QMP endpoint: its monitor (mon.c) or a backend such as
 * libvirt-qemu. Whoever executes a command on a VM (the broker's
 * vm-execute, hotplug) goes through here, so both kinds look the same:
 * one state, one version, one command set, one execute with one
 * completion.
 *
 * The owner (the VM registry) hears of the endpoint's state changes and
 * QEMU's events through vmq_ops, in arrival order; a backend feeds both
 * in with vmq_backend_state() and vmq_backend_event().
 *
 * Lifetime (util/defer.h): vmq_free() marks the endpoint dead, frees its
 * monitor (which fails every pending command, inside the call) and lets
 * its backend go, then leaves the memory to a later loop pass. Nothing
 * in flight holds the endpoint: a completion carries only its caller's
 * argument, so an endpoint never waits for its commands.
 */
#ifndef HV_VMQ_H
#define HV_VMQ_H

#include <stdbool.h>
#include <stddef.h>
#include <event2/event.h>
#include <jansson.h>

#include "hv/mon.h"
#include "proto/qmp_msg.h"
#include "util/hist.h"

struct vmq;

/* The owner's callbacks; either may be NULL. Never called once
   vmq_free() has been called, nor from inside vmq_free(). */
struct vmq_ops {
	/* State changed; why says what happened when leaving READY or
	   failing a connect (NULL otherwise). */
	void	(*state)(struct vmq *, enum mon_state, const char *why,
		    void *arg);
	/* One QEMU event; borrowed. */
	void	(*event)(struct vmq *, json_t *event, void *arg);
};

/* Completion: exactly one call per vmq_execute(). On success err is NULL
   and ret is the "return" value (borrowed, valid during the call); on
   failure ret is NULL and err says why (QEMU's class and desc, or the
   monitor's, the backend's or this file's own). */
typedef void vmq_reply_fn(json_t *ret, const struct qmp_error *err,
		    void *arg);

/*
 * The other kind of endpoint: QMP through something other than a socket
 * (libvirt-qemu for domains libvirt runs).
 *   execute: as vmq_execute() below, whose arguments it gets: q and
 *	be_arg borrowed (q for its name, during the call only), args
 *	stolen, fds borrowed (dup what is kept), fn called exactly once
 *	with cbarg, never from inside the call, and also after gone.
 *   version: QEMU's version if known, else NULL; borrowed.
 *   has_command: whether QEMU offers cmd (false while not ready).
 *   gone: called once, from vmq_free(); be_arg is not used after it.
 *	Calls in flight must still complete.
 */
struct vmq_backend {
	void	(*execute)(struct vmq *, void *be_arg, const char *cmd,
		    json_t *args, const int *fds, size_t nfds,
		    vmq_reply_fn *fn, void *cbarg);
	const struct qmp_version *(*version)(void *be_arg);
	bool	(*has_command)(void *be_arg, const char *cmd);
	void	(*gone)(void *be_arg);
};

/*
 * An endpoint over a monitor on socket_path (see mon_new()).
 *   base: borrowed; must outlive the endpoint's loop passes.
 *   name: copied; the VM's name, in errors ("VM 'X' has been removed").
 *   socket_path, opts: copied by mon_new().
 *   ops: borrowed, must outlive the endpoint; arg is given to them.
 * NULL if out of memory.
 */
struct vmq	*vmq_new_mon(struct event_base *base, const char *name,
		    const char *socket_path, const struct mon_opts *opts,
		    const struct vmq_ops *ops, void *arg);
/*
 * An endpoint over a backend. Starts NEGOTIATING, until the backend says
 * otherwise through vmq_backend_state().
 *   be: borrowed, must outlive the endpoint; be_arg is given to it and
 *	is the backend's business until gone.
 *   base, name, ops, arg: as for vmq_new_mon().
 * NULL if out of memory (gone is not called then).
 */
struct vmq	*vmq_new_backend(struct event_base *base, const char *name,
		    const struct vmq_backend *be, void *be_arg,
		    const struct vmq_ops *ops, void *arg);
/*
 * Marks q dead and stops it at once: the monitor is freed (every pending
 * command completes with its error inside this call) or the backend's
 * gone is called; the owner's ops are not called from here on. Safe
 * from inside any callback, also q's own; a second call does nothing.
 * The memory goes on a later pass of base's loop: until then q may be
 * read (state DISCONNECTED, no version, no command) and executed on
 * (fails from the loop with "VM 'X' has been removed"). A process that
 * stops its loop for good calls defer_flush() after its last vmq_free().
 */
void		 vmq_free(struct vmq *q);

/*
 * Execute cmd on q's QEMU.
 *   q: borrowed, live or dead (see vmq_free()).
 *   cmd: borrowed.
 *   args: stolen (may be NULL).
 *   fds, nfds: borrowed; the monitor dups what it sends, with the
 *	command (a backend may refuse fds).
 *   fn: called exactly once with arg, never from inside this call (as
 *	mon_execute(), the one exception is running out of memory for
 *	the record that would defer it: then fn gets "out of memory"
 *	inside the call). fn may free q.
 * A dead q fails it from the loop: GenericError "VM 'X' has been
 * removed". Otherwise the monitor's or backend's rules apply (see
 * mon_execute()).
 */
void		 vmq_execute(struct vmq *q, const char *cmd, json_t *args,
		    const int *fds, size_t nfds, vmq_reply_fn *fn, void *arg);

/* The monitor's state, or what the backend last fed; DISCONNECTED once
   dead. */
enum mon_state	 vmq_state(const struct vmq *q);
/* Valid once known (kept across disconnects); NULL before, and once
   dead. Borrowed. */
const struct qmp_version *vmq_version(const struct vmq *q);
/* The monitor's peer pid (mon_peer_pid); 0 for a backend, once dead,
   or unknown. */
int		 vmq_peer_pid(const struct vmq *q);
/* True if q's QEMU offers cmd (false while not ready, and once dead). */
bool		 vmq_has_command(const struct vmq *q, const char *cmd);
/* QEMU offers out-of-band execution (its monitor's greeting; never
   through a backend). */
bool		 vmq_oob_offered(const struct vmq *q);
/* The monitor's connection came from the previous process in an
   upgrade (mon_adopted): its "ready" is not news. */
bool		 vmq_adopted(const struct vmq *q);
/* The owner's word that q's QEMU is in postcopy-paused or -recover: see
   mon_set_postcopy_paused() (nothing for a backend or once dead). */
void		 vmq_set_postcopy_paused(struct vmq *q, bool paused);
/* The monitor's socket (mon_fd), -1 for a backend or while down. */
int		 vmq_fd(const struct vmq *q);
/* As vmq_execute, as exec-oob: past every command in flight. Fails
   (from the loop) where oob is not offered. */
void		 vmq_execute_oob(struct vmq *, const char *cmd, json_t *args,
		    vmq_reply_fn *, void *arg);
/* The name given at creation; borrowed, valid as long as q. */
const char	*vmq_name(const struct vmq *q);

/*
 * What an endpoint counts, for the metrics and query-stats: plain
 * integers bumped where things happen (no allocation, no lock: one
 * loop). Command names are a client's choice, so they are counted in a
 * fixed table of QEMU's commands plus one "other" bucket: however many
 * names clients invent, an endpoint keeps VMQ_NCMDS rows.
 */
#define VMQ_NCMDS	68		/* vmq_cmd_name(VMQ_NCMDS - 1): "other" */
enum vmq_outcome {
	VMQ_OK,
	VMQ_ERROR,			/* QEMU's error or the monitor's */
	VMQ_NOUTCOMES
};
struct vmq_stats {
	uint64_t	 events_in;
	uint64_t	 inflight;	/* executed, not yet completed */
	uint64_t	 reconnects;	/* connects after the first */
	uint64_t	 timeouts;	/* the monitor's, this endpoint's life */
	uint64_t	 commands;	/* completed */
	struct hist	 latency;	/* execute to completion */
	/* [VMQ_NCMDS][VMQ_NOUTCOMES], made at the first completion (NULL
	   before, and if out of memory: then only the totals count). */
	uint64_t	(*by_cmd)[VMQ_NOUTCOMES];
};
/* A snapshot of q's figures; by_cmd is borrowed (valid as long as q).
   All zero once q is dead: its figures went to vmq_stats_gone(). */
void		 vmq_stats(const struct vmq *q, struct vmq_stats *out);
/* The sum of every freed endpoint's figures (inflight 0), so that
   totals over all endpoints, live and gone, never go down. by_cmd is
   static. */
void		 vmq_stats_gone(struct vmq_stats *out);
/* The row of a command name (VMQ_NCMDS - 1 for any unknown name) and
   back; vmq_cmd_name's string is static. */
size_t		 vmq_cmd_index(const char *cmd);
const char	*vmq_cmd_name(size_t i);

/* A backend's feed (not for monitor endpoints; ignored once dead).
   event is borrowed. A state equal to the current one is not news and
   is dropped. */
void		 vmq_backend_event(struct vmq *q, json_t *event);
void		 vmq_backend_state(struct vmq *q, enum mon_state st,
		    const char *why);

#endif
