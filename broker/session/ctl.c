/*
 * The control socket, and the admission of every accepted connection
 * (who may connect is peer.c's to say).
 */
#include "config.h"

#include <sys/types.h>
#include <sys/socket.h>

#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker/core/conf.h"
#include "broker/core/log.h"
#include "broker/core/loop.h"
#include "broker/session/client.h"
#include "broker/session/ctl.h"
#include "broker/session/listen.h"
#include "proto/qmp_out.h"

static struct lsn	*ctl_lsn;

void
ctl_refuse(int fd, const char *desc)
{
	json_t			*j;
	char			*buf;
	size_t			 len;
	struct qmp_error	 e;

	qmp_error_set(&e, QMP_CLS_GENERIC, "%s", desc);
	j = json_pack("{s:o}", "error", qmp_error_json(&e));
	if (j != NULL && (buf = qmp_dump_qemu(j, &len)) != NULL) {
		/* Best effort: the socket is fresh, so its buffer is empty. */
		if (send(fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL) == -1)
			log_debug("refusal not sent: %s", strerror(errno));
		free(buf);
	}
	json_decref(j);
	close(fd);
}

int
ctl_admit(int fd, struct peer *p, const char *what)
{
	if (peer_accept(fd, p, what) == -1) {
		ctl_refuse(fd, "Permission denied");
		return (-1);
	}
	if (loop_stopping()) {
		peer_release(p);
		ctl_refuse(fd, "qmpbrokerd is shutting down");
		return (-1);
	}
	if (client_count() >= conf.max_clients) {
		log_warn("%s: too many clients (%zu), refused uid %u pid %ld",
		    what, client_count(), (unsigned)p->uid, (long)p->pid);
		peer_release(p);
		ctl_refuse(fd, "Too many clients");
		return (-1);
	}
	return (0);
}

static void
ctl_accept(int fd, void *arg)
{
	struct peer	 p;
	struct client	*c;

	/* the path, not "control": the audit trail says which socket */
	if (ctl_admit(fd, &p, conf.control_path) == -1)
		return;
	c = client_new(fd, CLIENT_CONTROL, &p, NULL);
	peer_release(&p);
	if (c == NULL) {
		ctl_refuse(fd, "out of memory");
		return;
	}
	client_greet(c);
}

int
ctl_open(struct qmp_error *err)
{
	ctl_lsn = lsn_open(conf.control_path, 0660, conf.socket_gid, 1,
	    ctl_accept, NULL, err);
	return (ctl_lsn == NULL ? -1 : 0);
}

void
ctl_close(void)
{
	lsn_close(ctl_lsn);
	ctl_lsn = NULL;
}
