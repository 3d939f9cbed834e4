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

/* The helper's request loop on fd until EOF (tests/unit/priv-serve runs
   it alone): every request checked, served or refused, and logged. */
void	privsep_serve(int fd);

#endif
