/*
 * The control socket, and the admission every accepted socket goes
 * through (peer credentials, shutdown, max-clients).
 */
#ifndef BROKER_SESSION_CTL_H
#define BROKER_SESSION_CTL_H

#include <stddef.h>

#include "broker/session/peer.h"
#include "proto/qmp_msg.h"

/* Listens on --control; -1 with err (GenericError, as lsn_open says it)
   when it cannot, e.g. another broker answers there. */
int	ctl_open(struct qmp_error *err);
void	ctl_close(void);
/* Best-effort QMP error line, then close(fd). */
void	ctl_refuse(int fd, const char *desc);
/* Common admission for every accepted socket. Returns 0 with *p filled
   (release it), or -1 having refused and closed fd. */
int	ctl_admit(int fd, struct peer *p, const char *what);

#endif
