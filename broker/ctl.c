/*
 * The control socket and who may use it. The socket's mode (0660, a
 * configured group) is the first gate; SO_PEERCRED against the allowed
 * uids and gids is the second, checked on every accepted connection of
 * the control socket and of the shared per-VM sockets alike.
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

#include "broker/broker.h"

static struct lsn	*ctl_lsn;

/* Supplementary groups of the peer, from its uid (the kernel does not
   pass them with SO_PEERCRED). */
static int
ctl_in_gids(uid_t uid, gid_t gid, const int *gids, size_t ngids)
{
	struct passwd	*pw;
	gid_t		 groups[256];
	int		 n = 256, i;
	size_t		 j;

	if ((pw = getpwuid(uid)) == NULL)
		return (0);
	if (getgrouplist(pw->pw_name, gid, groups, &n) == -1)
		return (0);
	for (i = 0; i < n; i++) {
		for (j = 0; j < ngids; j++) {
			if ((int)groups[i] == gids[j])
				return (1);
		}
	}
	return (0);
}

int
ctl_vm_allowed(const struct peer *p, const char *name)
{
	const struct conf_vm_allow	*a = NULL;
	size_t				 i;

	/* the broker's own requests (config, restarts) carry no peer */
	if (p->uid == (uid_t)-1 || p->uid == 0 || p->uid == geteuid())
		return (1);
	for (i = 0; i < conf.n_vm_allows; i++)
		if (strcmp(conf.vm_allows[i].name, name) == 0)
			a = &conf.vm_allows[i];
	if (a == NULL)
		return (1);
	for (i = 0; i < a->n_uids; i++)
		if ((int)p->uid == a->uids[i])
			return (1);
	for (i = 0; i < a->n_gids; i++)
		if ((int)p->gid == a->gids[i])
			return (1);
	return (a->n_gids != 0 && ctl_in_gids(p->uid, p->gid, a->gids,
	    a->n_gids));
}

static int
ctl_in_groups(uid_t uid, gid_t gid)
{
	struct passwd	*pw;
	gid_t		 groups[256];
	int		 n = 256, i;
	size_t		 j;

	if ((pw = getpwuid(uid)) == NULL)
		return (0);
	if (getgrouplist(pw->pw_name, gid, groups, &n) == -1)
		return (0);
	for (i = 0; i < n; i++) {
		for (j = 0; j < conf.n_allow_gids; j++) {
			if ((int)groups[i] == conf.allow_gids[j])
				return (1);
		}
	}
	return (0);
}

static int
ctl_allowed(const struct peer *p)
{
	size_t	i;

	if (p->uid == 0 || p->uid == geteuid())
		return (1);
	for (i = 0; i < conf.n_allow_uids; i++) {
		if ((int)p->uid == conf.allow_uids[i])
			return (1);
	}
	for (i = 0; i < conf.n_allow_gids; i++) {
		if ((int)p->gid == conf.allow_gids[i])
			return (1);
	}
	return (conf.n_allow_gids != 0 && ctl_in_groups(p->uid, p->gid));
}

int
ctl_peer_check(int fd, struct peer *p, const char *what)
{
	struct ucred	uc;
	socklen_t	len = sizeof uc;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) == -1) {
		log_warn("%s: SO_PEERCRED: %s", what, strerror(errno));
		return (-1);
	}
	p->uid = uc.uid;
	p->gid = uc.gid;
	p->pid = uc.pid;
	if (!ctl_allowed(p)) {
		log_warn("%s: refused peer uid %u gid %u pid %ld", what,
		    (unsigned)p->uid, (unsigned)p->gid, (long)p->pid);
		return (-1);
	}
	return (0);
}

void
ctl_refuse(int fd, const char *desc)
{
	json_t			*j;
	char			*buf;
	size_t			 len;
	struct qmp_error	 e;

	qmp_error_set(&e, QMP_CLS_GENERIC, "%s", desc);
	j = json_pack("{s:o}", "error", qmp_error_json(&e));
	if (j != NULL && (buf = qmp_dump(j, &len)) != NULL) {
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
	if (ctl_peer_check(fd, p, what) == -1) {
		ctl_refuse(fd, "Permission denied");
		return (-1);
	}
	if (daemon_stopping()) {
		ctl_refuse(fd, "qmpbrokerd is shutting down");
		return (-1);
	}
	if (nclients >= conf.max_clients) {
		log_warn("%s: too many clients (%zu), refused uid %u pid %ld",
		    what, nclients, (unsigned)p->uid, (long)p->pid);
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

	if (ctl_admit(fd, &p, "control") == -1)
		return;
	if ((c = client_new(fd, CLIENT_CONTROL, &p, NULL)) == NULL) {
		ctl_refuse(fd, "out of memory");
		return;
	}
	client_greet(c);
}

int
ctl_open(char *err, size_t errlen)
{
	ctl_lsn = lsn_open(conf.control_path, 0660, conf.socket_gid, 1,
	    ctl_accept, NULL, err, errlen);
	return (ctl_lsn == NULL ? -1 : 0);
}

void
ctl_close(void)
{
	lsn_close(ctl_lsn);
	ctl_lsn = NULL;
}
