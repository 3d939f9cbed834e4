/*
 * Listening unix sockets: the control socket and every shared per-VM
 * socket. When accept() runs out of fds every listener backs off until
 * a timer or a closing client says fds are back (lsn_resume_all).
 */
#ifndef BROKER_SESSION_LISTEN_H
#define BROKER_SESSION_LISTEN_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "proto/qmp_msg.h"

struct lsn;
/* fd is the accepted connection, owned by the callee. The callback must
   not close its own listener. */
typedef void lsn_accept_fn(int fd, void *arg);
/* A socket file left by a dead broker is replaced; with check_live one
   that answers is another broker's and the open fails. gid -1: as is.
   NULL with err (GenericError) naming the path or call that failed. */
struct lsn *lsn_open(const char *path, int mode, int gid, int check_live,
	    lsn_accept_fn *, void *arg, struct qmp_error *err);
/* The socket of lsn_open, bound and listening (non-blocking,
   close-on-exec), for a caller that accepts on it by other means (the
   metrics' HTTP server): the fd, or -1 with err. */
int	lsn_bind(const char *path, int mode, int gid, int check_live,
	    struct qmp_error *err);
/* Closes and unlinks the socket path. NULL is a no-op. */
void	lsn_close(struct lsn *);
const char *lsn_path(const struct lsn *);
/* Something listens on the socket at path (a connect is answered); true
   when it cannot tell, so that nothing live is taken for stale. */
bool	lsn_live(const char *path);
/* An fd came back: listeners that ran out may accept again. */
void	lsn_resume_all(void);

/*
 * Upgrade (broker/upgrade.h).
 *   lsn_hold: no listener accepts while held (connections wait in the
 *	backlog); false undoes it.
 *   lsn_export_all: [{"path": P, "fd": N}..] of every listener, fds
 *	also appended to fds. NULL if out of memory.
 *   lsn_inherit: st as lsn_export_all made it in the previous process
 *	(hostile: checked): lsn_open and lsn_bind of one of its paths take
 *	that socket as it is (bound, listening, nothing lost from its
 *	backlog) instead of binding anew. -1 with err if malformed.
 *   lsn_inherit_end: closes the sockets nobody took; how many.
 */
void	lsn_hold(bool);
json_t	*lsn_export_all(json_t *fds);
int	lsn_inherit(const json_t *st, struct qmp_error *err);
size_t	lsn_inherit_end(void);

#endif
