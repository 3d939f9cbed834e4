/*
 * Listening unix sockets: the control socket and every shared per-VM
 * socket. When accept() runs out of fds every listener backs off until
 * a timer or a closing client says fds are back (lsn_resume_all).
 */
#ifndef BROKER_SESSION_LISTEN_H
#define BROKER_SESSION_LISTEN_H

#include <stdbool.h>
#include <stddef.h>

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

#endif
