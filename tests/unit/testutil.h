/*
 * Helpers shared by the unit tests that run real things: fake-qemu as a
 * child process, open-fd accounting, and running the event loop until a
 * condition holds (with a deadline that only guards against deadlocks;
 * no test asserts on time).
 */
#ifndef TESTUTIL_H
#define TESTUTIL_H

#include <sys/types.h>

#include <event2/event.h>
#include <jansson.h>

#include "hv/chan.h"
#include "hv/mon.h"

#define TU_DEADLINE_MS	20000	/* a hang, never a speed check */

/* fake-qemu (or any server) serving a unix socket in a private temp dir */
struct tu_fake {
	pid_t	pid;
	char	dir[64];
	char	sock[108];
	char	faults[128];	/* empty: none */
	char	machine[8];
};

/* Path of a program built next to the tests: $QB_BUILDDIR/NAME, else
   relative to this test binary (BUILDDIR/tests/unit/test_x). */
const char	*tu_build_path(const char *name);

/* Starts fake-qemu with the given fault script text (NULL: none) and
   waits until its socket listens. 0 or -1 (message on stderr). */
int		 tu_fake_start(struct tu_fake *, const char *faults);
/* Kills the process (SIGKILL, as a crash) and reaps it; keeps the dir. */
void		 tu_fake_kill(struct tu_fake *);
/* Starts it again on the same socket and fault file. */
int		 tu_fake_restart(struct tu_fake *);
/* Terminates, reaps, removes socket, fault file and dir. */
void		 tu_fake_stop(struct tu_fake *);
/* Waits until something listens on path (parses /proc/net/unix). */
int		 tu_wait_listening(const char *path, pid_t pid);

/* Spawns argv (argv[0] a path) and waits until it listens on sock.
   Returns the pid or -1. */
pid_t		 tu_spawn_server(const char *const argv[], const char *sock);
/* Waits up to ms for pid to exit (then SIGKILLs it). Returns the wait
   status, or -1 if it had to be killed. */
int		 tu_reap(pid_t, int ms);

/* sendmsg the string buf with nfds (at most TU_MAX_FDS) fds on its
   first byte, as a QEMU client does. Returns sendmsg's result. */
#define TU_MAX_FDS	16
ssize_t		 tu_sendfds(int sock, const char *buf, const int *fds,
		    size_t nfds);
/* One recvmsg into buf, not waiting; the fds that come are close-on-exec
   and stored at fds[*nfds] on, up to maxfds, and all counted in *nfds
   (those past maxfds closed) so the caller can check the count.
   Returns recvmsg's result. */
ssize_t		 tu_recvfds(int sock, void *buf, size_t len, int *fds,
		    size_t *nfds, size_t maxfds);

/* chan_new on one end of a fresh close-on-exec socketpair; the other
   end goes to *peer. NULL (and nothing left open) if either fails. */
struct chan	*tu_chan_pair(struct event_base *, const struct chan_opts *,
		    const struct chan_ops *, void *arg, int *peer);

/* Number of open fds of this process. */
int		 tu_fd_count(void);

/* Running the loop under a deadline guard. */
struct tu_guard {
	struct event	*tick;
	unsigned long long end;
	struct event_base *base;
};
void		 tu_guard_init(struct tu_guard *, struct event_base *, int ms);
int		 tu_guard_step(struct tu_guard *);	/* -1: deadline */
void		 tu_guard_done(struct tu_guard *);

/* Run the loop while 'expr' is false; ok set to 0 on deadline. */
#define TU_WAIT_FOR(base, ms, expr, ok) do {				\
	struct tu_guard g_;						\
	tu_guard_init(&g_, (base), (ms));				\
	(ok) = 1;							\
	while (!(expr)) {						\
		if (tu_guard_step(&g_) == -1) {				\
			(ok) = 0;					\
			break;						\
		}							\
	}								\
	tu_guard_done(&g_);						\
} while (0)

/* The same in a cmocka test: fail_msg names the condition on deadline. */
#define TU_WAIT(base, expr) do {					\
	int tu_ok_;							\
	TU_WAIT_FOR((base), TU_DEADLINE_MS, expr, tu_ok_);		\
	if (!tu_ok_)							\
		fail_msg("deadline waiting for: %s", #expr);		\
} while (0)

/* Let the loop run its ready work a few times (no waiting). */
void		 tu_spin(struct event_base *, int rounds);

/* ---- monitor recorder: states, events and replies as they come ---- */
#define TU_MAX_STATES	256

struct tu_mon {
	struct event_base	*base;
	struct mon		*m;
	int			 nstates;
	enum mon_state		 states[TU_MAX_STATES];
	char			 whys[TU_MAX_STATES][256];
	int			 count[4];	/* per state */
	json_t			*events;	/* array, in arrival order */
	int			 free_on_event;	/* mon_free from the callback */
};

struct tu_reply {
	int			 ncalls;	/* must end at exactly 1 */
	int			 inside;	/* called from inside mon_execute */
	int			 order;		/* completion sequence number */
	json_t			*ret;		/* ref held */
	struct qmp_error	 err;
	int			 failed;
	struct tu_mon		*tm;
	int			 free_mon;	/* mon_free from the callback */
};

extern const struct mon_ops tu_mon_ops;

/* mon_new with the recorder; opts may be NULL. */
void		 tu_mon_open(struct tu_mon *, struct event_base *,
		    const char *path, const struct mon_opts *);
/* mon_free (if still there) and drop what was recorded. */
void		 tu_mon_close(struct tu_mon *);
/* mon_execute, checking that the reply never comes from inside it. */
void		 tu_exec(struct tu_mon *, struct tu_reply *, const char *cmd,
		    json_t *args, const int *fds, size_t nfds);
void		 tu_reply_clear(struct tu_reply *);
/* Last state-change reason recorded for state st ("" if none). */
const char	*tu_last_why(const struct tu_mon *, enum mon_state);

/* Monotonic milliseconds. */
unsigned long long tu_now_ms(void);

#endif
