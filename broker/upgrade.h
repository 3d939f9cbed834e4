/*
 * Upgrade without dropping anything: the broker execs a binary from disk
 * (its own path by default, so a newer build there is picked up) in place
 * of itself, and hands over every connection it holds.
 *
 * Why execve in place, not fork+exec of a successor: the pid stays, so
 * systemd (MAINPID, the pid file and its lock, the cgroup, the fd store)
 * sees one service that reloaded, QEMU's and the clients' peer pids do
 * not change, and nothing runs twice at once. The price is that once
 * execve succeeded there is no old process to fall back to; so the new
 * binary is proven first: "NEW --upgrade-format" runs as a child (an argv, on
 * the loop) and must exit 0 saying "qmpbrokerd ..." and the format of the
 * state it reads (--upgrade-format; not --version alone: a binary that
 * runs but does not read the state, an older build, would start afresh
 * next to connections it does not know, and drop them all). A missing,
 * broken or older binary is refused there and the broker carries on as
 * before; an execve that fails (the file went in between) also leaves it
 * as it was.
 *
 * Steps (upgrade_start):
 *   1. refused with a clear error while an upgrade is under way, a job
 *	(image, domain, migration) or a hotplug runs, or a child process
 *	lives (their state is not carried over);
 *   2. the preflight above;
 *   3. hold: no listener accepts, no client is read (what they send
 *	waits in the kernel); commands in flight finish, up to
 *	conf.upgrade_timeout_ms (past it: everything resumes, error);
 *   4. the event log is flushed (its seq goes on in the new process
 *	from its files: no gap, no repeat), then the state goes into a
 *	memfd as JSON: listeners, monitors (fd, oob, version, commands,
 *	bytes read but not parsed), clients (fd, negotiation, oob, peer,
 *	subscriptions, unparsed input, unwritten output), and the VMs'
 *	recorded run states (optional "vm-status": the new process then
 *	reads no STATE_DIR/status record, one file per VM). Each layer
 *	exports and imports its own objects (lsn_, mon_, client_, sub_,
 *	peer_, chan_); this module only carries the document;
 *   5. FD_CLOEXEC is cleared on exactly those fds, the memfd's number
 *	goes in QMPBROKER_UPGRADE_FD, and the binary is exec'd with the
 *	same argv. Events QEMU sends meanwhile wait in the sockets.
 *
 * In the new process (upgrade_resume_begin before any listener opens,
 * upgrade_resume_end once the VMs exist): the document is read bounded
 * and checked (it is our own, but a broken file must not crash the
 * broker: what cannot be used is closed, and the start goes on fresh);
 * listeners and monitors are taken over as their modules open them,
 * clients are re-created, and whoever asked for the upgrade gets the
 * reply {"version": NEW, "previous": OLD, "pause-ms": N, "pause-cpu-ms":
 * N} (the process's CPU time goes on across execve). Leftovers (a VM
 * removed from the config meanwhile) are closed.
 *
 * The handover does not depend on the user the broker runs as: it passes
 * only fds it already holds and execs a path it can execute.
 */
#ifndef BROKER_UPGRADE_H
#define BROKER_UPGRADE_H

#include <stdbool.h>

#include "broker/session/req.h"
#include "proto/qmp_msg.h"

/* The state document's format; "qmpbrokerd --upgrade-format" says which
   one a binary reads, and an upgrade goes only to a binary that reads
   its own. */
#define UPGRADE_FORMAT	1

/* At start, before anything else: the version this binary reports
   (copied), and the path of the running binary as on disk, read from
   /proc/self/exe (so a newer build installed there is the default
   target; " (deleted)" is cut). */
void	upgrade_init(const char *version, char **argv);

/* Begin an upgrade. r (may be NULL: SIGUSR2, systemctl reload) gets the
   reply; binary NULL: the path upgrade_init found. Never blocks: the
   outcome is in r's reply (here on refusal, in the new process on
   success) and in the log. */
void	upgrade_start(struct req *r, const char *binary);

/* Started by an upgrade (QMPBROKER_UPGRADE_FD is set)? */
bool	upgrade_resuming(void);
/* Reads the document and hands listeners and monitors to their modules;
   a document that cannot be used is logged, its fds closed, and the
   start goes on as a fresh one. */
void	upgrade_resume_begin(void);
/* After the registry: clients back, leftovers closed, the asker told. */
void	upgrade_resume_end(void);

#endif
