/*
 * The per-command policy: who may run what on which VM, and the argument
 * guards that keep a tenant's QEMU commands off the host.
 *
 * A decision takes a peer (uid, gid and the supplementary groups looked
 * up at accept: peer.h), a VM name (NULL: the command names none), a
 * command name and the namespace it lives in (the broker's control
 * commands, or QEMU's, sent through vm-execute or a shared socket), and
 * for QEMU commands and a few broker ones the arguments. Rules are tried
 * in file order, the first whose peer, VM glob and command glob match
 * decides; none matching is a refusal. Before the file, root and the
 * broker's own uid are admin (they own the broker's files anyway). With
 * no file, every other admitted peer is operator.
 *
 * Roles: read-only (queries and events), operator (everything on its
 * VMs, under the guards), admin (everything, no guards). An "allow" rule
 * is operator for what it matches; "deny" refuses.
 *
 * The policy in force is replaced whole by policy_load (SIGHUP); a file
 * that does not parse is refused with its line and reason, and the old
 * policy stays. Decisions never block and never allocate, except the
 * guards' path checks, which resolve paths on the file system (and only
 * for guarded commands of non-admin peers).
 */
#ifndef BROKER_SESSION_POLICY_H
#define BROKER_SESSION_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>

#include "broker/session/peer.h"
#include "proto/qmp_msg.h"

enum policy_ns {
	POLICY_BROKER,		/* a control-socket command */
	POLICY_QEMU,		/* a QEMU command (vm-execute, shared) */
};

enum policy_role {
	POLICY_NONE,
	POLICY_READ_ONLY,
	POLICY_OPERATOR,
	POLICY_ADMIN,
};

#define POLICY_TEXT_MAX	256

struct policy_verdict {
	bool			allow;
	enum policy_role	role;	/* of the rule that decided */
	char			rule[POLICY_TEXT_MAX];	/* which, in words */
	char			reason[POLICY_TEXT_MAX]; /* a refusal's */
};

/* Checks a glob of a rule's command (may it match anything?): wired by
   the daemon from the command tables, which this layer cannot see. */
typedef bool policy_known_fn(const char *glob);
void	policy_set_known(policy_known_fn *);

/* Reads path (NULL: the built-in policy) and puts it in force. -1 with
   err ("FILE:LINE: reason") and the old policy in force if it does not
   parse. */
int	policy_load(const char *path, struct qmp_error *err);
void	policy_clear(void);
/* The file in force, NULL for the built-in policy. */
const char *policy_path(void);

/* The decision for p running cmd (args borrowed, may be NULL) on vm
   (NULL: none), into v. True if allowed. */
bool	policy_check(const struct peer *, const char *vm, const char *cmd,
	    enum policy_ns, json_t *args, struct policy_verdict *);
/* May p see vm at all (listed in query-vms, query-domains, its jobs and
   its events): vm-allow and the policy's decision on query-vms. */
bool	policy_vm_visible(const struct peer *, const char *vm);
/* Queries change nothing: not audited, and all read-only may run. */
bool	policy_is_query(const char *cmd, enum policy_ns);
const char *policy_role_name(enum policy_role);

/*
 * The argument guards (guard.c), for every peer but admin: 0 if cmd
 * with args may go to QEMU, else -1 with why. dirs (ndirs) are the host
 * dirs where a tenant may name files: --image-root and the policy's
 * allow-dir lines.
 */
int	guard_qemu(const char *cmd, json_t *args, char *const *dirs,
	    size_t ndirs, char *why, size_t len);
int	guard_broker(const char *cmd, json_t *args, char *const *dirs,
	    size_t ndirs, char *why, size_t len);
/* Does path lie under one of dirs, every symlink resolved? 0 or -1 with
   why. */
int	guard_path(const char *path, char *const *dirs, size_t ndirs,
	    char *why, size_t len);

#endif
