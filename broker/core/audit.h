/*
 * The audit trail: one record per command that changes something (and
 * per refused command), to journald with structured fields and to an
 * append-only JSON-lines file, STATE_DIR/audit/audit.jsonl, rotated by
 * size into audit.SEQ.jsonl (SEQ: its first record's, 20 digits).
 *
 * Each record is one line of JSON with "seq" (1, 2, ... across every
 * file) and "prev", the SHA-256 (hex) of the previous record's line
 * without its newline (64 zeros for the first): a hash chain, so an
 * edited, removed or inserted record breaks it (qmpctl audit-verify).
 * The chain is unkeyed: someone who can write the files can rebuild it
 * from the edit on; the journal's copy of every record's hash
 * (QB_AUDIT_HASH) is the anchor against that.
 *
 * Never blocks the loop: records are made and chained on the loop and
 * written by one thread of this module (write, then sd_journal_send).
 * When a write fails, or the writer falls more than AUDIT_QUEUE_MAX bytes
 * behind, audit_ok says so until a write succeeds again; the caller
 * refuses mutating commands then (--audit-required, the default).
 */
#ifndef BROKER_CORE_AUDIT_H
#define BROKER_CORE_AUDIT_H

#include <sys/types.h>
#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>

#include "proto/qmp_msg.h"

#define AUDIT_FILE	"audit.jsonl"

/* Who sent a command, and on what. Strings borrowed. */
struct audit_who {
	uid_t		 uid;
	gid_t		 gid;
	pid_t		 pid;
	const char	*exe;
	const char	*via;		/* the socket's path */
};

struct audit_pending;

/* Starts the writer on dir (made if missing; the chain resumes from its
   last record). rotate: bytes per file before rotating. A dir that
   cannot be written is logged loudly and audit_ok is false; -1 only if
   the thread cannot start. */
int	audit_open(const char *dir, size_t rotate, struct qmp_error *err);
/* Writes what is queued, stops the writer. */
void	audit_close(void);
/* Bytes of records not yet written by the writer (an upgrade waits for
   0: an exec would lose them). */
size_t	audit_unwritten(void);
/* true if records are being written; else why into why. */
bool	audit_ok(char *why, size_t len);

/* A command about to run: its arguments are redacted and copied now.
   vm, qemu (the QEMU command of a vm-execute or shared socket) and rule
   may be NULL. */
struct audit_pending *audit_begin(const struct audit_who *, const char *vm,
	    const char *cmd, const char *qemu, json_t *args,
	    const char *rule);
/* Its end: err NULL for success. Frees p. */
void	audit_end(struct audit_pending *, const struct qmp_error *err);

/* A copy of args with secrets replaced by "<redacted>": set_password's
   and change-vnc-password's password, a secret object's data, members
   named password or passwd at any depth, and the password of every
   URI (scheme://user:password@...). cmd is the QEMU or broker command. */
json_t	*audit_redact(const char *cmd, json_t *args);

#endif
