/*
 * Child processes (losetup, qemu-nbd, qemu-img), run from the loop.
 *
 * A child gets an argv (never a shell), /dev/null for stdin, pipes for
 * stdout and stderr (captured into bounded buffers on the loop), no other
 * inherited fd, default signal dispositions and its own process group. It
 * is reaped from the loop through a pidfd (a waitpid poll where there is
 * no pidfd_open), so no SIGCHLD handler is shared with anyone. Past its deadline it gets SIGTERM, and SIGKILL a
 * grace period later; done runs once it is reaped, exactly once.
 */
#ifndef BROKER_CORE_PROC_H
#define BROKER_CORE_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <event2/event.h>

#include "proto/qmp_msg.h"

#define PROC_OUT_MAX	16384	/* captured per stream; the rest is dropped */
#define PROC_KILL_GRACE_MS 2000	/* TERM -> KILL */

struct proc;

struct proc_result {
	bool	 exited;	/* exit() rather than a signal */
	int	 code;		/* exit status if exited */
	int	 sig;		/* terminating signal if not */
	bool	 timed_out;	/* killed by us at the deadline */
	bool	 killed;	/* killed by us (deadline or proc_kill) */
	char	*out;		/* NUL-terminated, possibly truncated */
	size_t	 outlen;
	char	*err;
	size_t	 errlen;
};

/* Called on the loop once the child is reaped. r is borrowed. */
typedef void proc_done_fn(struct proc *, const struct proc_result *r,
		    void *arg);

void		 proc_init(struct event_base *);
/* NULL with err set if the child cannot be started (bad path, no memory,
   shutting down). timeout_ms <= 0 means no deadline. */
struct proc	*proc_spawn(char *const argv[], int timeout_ms,
		    proc_done_fn *, void *arg, struct qmp_error *err);
/* proc_spawn, and fd (unless -1) is also the child's fd 3: the same open
   file description, so a flock on fd stays held while the child, or
   anything it forks that keeps fd 3, runs; even after this process has
   died. fd is borrowed: the caller may close it once this returns. */
struct proc	*proc_spawn_fd(char *const argv[], int fd, int timeout_ms,
		    proc_done_fn *, void *arg, struct qmp_error *err);
/* Asks the child to stop now (TERM, then KILL after the grace period);
   done still runs, once it is reaped. */
void		 proc_kill(struct proc *);
pid_t		 proc_pid(const struct proc *);
/* Kills and reaps every child synchronously, running each done; refuses
   new children afterwards. */
void		 proc_shutdown(void);
size_t		 proc_count(void);

/* A short human description of how a child ended, for error messages:
   the first line of stderr, else "exit status N" / "killed by signal N". */
void		 proc_describe(const struct proc_result *, char *, size_t);

/* Any process's start time (clock ticks since boot, /proc/PID/stat's
   field 22): with its pid, a name no later process can take, so a pid
   saved across a restart is known to be the same process, not a reuse.
   0, or -1 if there is no such process or its stat is not readable. */
int		 proc_start_time(pid_t, unsigned long long *start);

#endif
