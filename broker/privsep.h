/*
 * Privilege separation, OpenBSD style (docs/policy.md, "Privilege
 * separation"): the process main() starts as root stays root, small,
 * and does two things only: it serves the fixed operations of
 * priv/priv.h to its child, checking each again, and it supervises that
 * child. The child drops to --user (setgroups, setgid, setuid; an empty
 * capability bounding set, inheritable and ambient sets; no_new_privs;
 * a libseccomp allow list) and runs the whole daemon: every client byte
 * and every QEMU monitor is handled unprivileged.
 *
 * Why the privileged side is the parent: only a root process can start
 * an unprivileged one again, so a crashed daemon is restarted at once by
 * its parent (and QEMU, a process of its own, never notices more than a
 * monitor reconnect); a crashed parent is noticed by the daemon (parent
 * death signal, and EOF on the socketpair), which stops cleanly, and the
 * service manager restarts the pair (systemd: the main process died).
 */
#ifndef BROKER_PRIVSEP_H
#define BROKER_PRIVSEP_H

#include <sys/types.h>

#include "proto/qmp_msg.h"

/* Called by main() once, after the pid file, before any loop or thread.
 * Returns -1 with err filled (unknown user, cannot fork...).
 * Returns 0 in the process that is to run the daemon: with separation,
 * the unprivileged child (priv_active() is true, *ready is replaced by
 * the pipe on which the child tells its parent it is up, and the pid
 * file is not the child's to remove); without it (not root, or --user
 * root), the caller itself, unchanged.
 * Returns 1 in the privileged parent once it is done serving and
 * supervising: *code is the exit status main() returns. */
int	privsep_start(int argc, char **argv, int *ready, int *code,
	    struct qmp_error *err);
/* True in the unprivileged child. */
int	privsep_is_child(void);
/* The pid systemd and the pid file know: the privileged parent's in the
   child, else our own (sd_notify's MAINPID=). */
pid_t	privsep_main_pid(void);

/*
 * Upgrade of the separated daemon (docs/operations.md, "Upgrade"): only
 * the child execs; the parent, the process systemd knows, holding the
 * pid file and serving, stays (it is replaced by a restart only). The
 * exec keeps the child's uid, empty capability sets, no_new_privs, the
 * seccomp filter (filters survive execve and cannot be removed) and the
 * parent-death signal; what it would lose is the socket to the helper,
 * so that one fd is passed (its number in QMPBROKER_PRIV_FD) and taken
 * back before anything else.
 *
 * privsep_upgrade_pass: in the child just before the exec, *fd is the
 * helper's socket to keep open across it (the caller clears its
 * FD_CLOEXEC), -1 when not separated; -1 with errno if the variable
 * cannot be set. privsep_upgrade_undo after an exec that failed.
 */
int	privsep_upgrade_pass(int *fd);
void	privsep_upgrade_undo(void);
/* At start, before the pid file and privsep_start: with resuming (an
   upgrade's exec) and a QMPBROKER_PRIV_FD that names our inherited
   socket to a root peer that is our parent, takes it back: this process
   is the child again (privsep_start returns 0 at once, the pid file is
   left to the parent). The variable is unset either way. 1: resumed as
   the child; 0: not separated; -1 with err filled. */
int	privsep_resume(int resuming, struct qmp_error *err);

/* The helper's request loop on fd until EOF (tests/unit/priv-serve runs
   it alone): every request checked, served or refused, and logged. */
void	privsep_serve(int fd);

#endif
