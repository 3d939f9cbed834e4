/*
 * Peers: credentials at accept, and the allow lists checked against them.
 */
#include "config.h"

#include <sys/types.h>
#include <sys/socket.h>

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker/core/conf.h"
#include "broker/core/log.h"
#include "broker/session/peer.h"

#define PEER_GROUPS_MAX	256

struct peer_groups {
	unsigned	refs;
	char		exe[PEER_EXE_MAX];
	char		via[PEER_EXE_MAX];
	int		n;
	gid_t		gids[];
};

void
peer_self(struct peer *p)
{
	memset(p, 0, sizeof *p);
	p->uid = (uid_t)-1;
	p->gid = (gid_t)-1;
}

void
peer_copy(struct peer *dst, const struct peer *src)
{
	*dst = *src;
	if (dst->groups != NULL)
		dst->groups->refs++;
}

void
peer_release(struct peer *p)
{
	if (p->groups != NULL && --p->groups->refs == 0)
		free(p->groups);
	p->groups = NULL;
}

/* Supplementary groups of uid, from NSS (none if there are none to
   know: no such user, or lookup is false), with room for the exe and
   the socket. NULL if out of memory: then only the primary gid counts. */
static struct peer_groups *
peer_lookup_groups(uid_t uid, gid_t gid, bool lookup)
{
	struct peer_groups	*g;
	struct passwd		*pw;
	gid_t			 groups[PEER_GROUPS_MAX];
	int			 n = PEER_GROUPS_MAX;

	if (!lookup || (pw = getpwuid(uid)) == NULL ||
	    getgrouplist(pw->pw_name, gid, groups, &n) == -1 || n < 0)
		n = 0;
	if ((g = calloc(1, sizeof *g + (size_t)n * sizeof *groups)) == NULL)
		return (NULL);
	g->refs = 1;
	g->n = n;
	memcpy(g->gids, groups, (size_t)n * sizeof *groups);
	return (g);
}

/* The executable, now: the pid may be reused by the time a command is
   audited. Best effort (a peer in another mount namespace, or gone). */
static void
peer_read_exe(struct peer_groups *g, pid_t pid, const char *what)
{
	char	path[64];
	ssize_t	n;

	if (pid <= 0)
		return;
	snprintf(path, sizeof path, "/proc/%ld/exe", (long)pid);
	if ((n = readlink(path, g->exe, sizeof g->exe - 1)) < 0)
		n = 0;
	g->exe[n] = '\0';
	snprintf(g->via, sizeof g->via, "%s", what);
}

bool
peer_has_gid(const struct peer *p, gid_t gid)
{
	int	j;

	if (p->gid == gid)
		return (true);
	if (p->groups == NULL)
		return (false);
	for (j = 0; j < p->groups->n; j++) {
		if (p->groups->gids[j] == gid)
			return (true);
	}
	return (false);
}

const char *
peer_exe(const struct peer *p)
{
	return (p->groups != NULL ? p->groups->exe : "");
}

const char *
peer_via(const struct peer *p)
{
	return (p->groups != NULL ? p->groups->via : "");
}

void
peer_lookup(struct peer *p, uid_t uid)
{
	struct passwd	*pw;

	memset(p, 0, sizeof *p);
	p->uid = uid;
	p->gid = (pw = getpwuid(uid)) != NULL ? pw->pw_gid : (gid_t)-1;
	p->groups = peer_lookup_groups(uid, p->gid, pw != NULL);
}

/* True if gid or one of p's groups is in the list. */
static bool
peer_in_gids(const struct peer *p, const int *gids, size_t ngids)
{
	size_t	i;

	for (i = 0; i < ngids; i++) {
		if (peer_has_gid(p, (gid_t)gids[i]))
			return (true);
	}
	return (false);
}

static bool
peer_in_uids(const struct peer *p, const int *uids, size_t nuids)
{
	size_t	i;

	for (i = 0; i < nuids; i++) {
		if ((int)p->uid == uids[i])
			return (true);
	}
	return (false);
}

/* root and the broker's own uid pass every gate; so do the broker's own
   requests (uid -1). */
bool
peer_is_admin(const struct peer *p)
{
	/* Asked on every request (the policy): geteuid() once, as a system
	   call costs microseconds on some hypervisors. The broker never
	   changes its uid; a privilege-separated one would set this when
	   it drops to its user. */
	static uid_t	 self = (uid_t)-2;

	if (self == (uid_t)-2)
		self = geteuid();
	return (p->uid == (uid_t)-1 || p->uid == 0 || p->uid == self);
}

int
peer_accept(int fd, struct peer *p, const char *what)
{
	struct ucred	uc;
	socklen_t	len = sizeof uc;

	memset(p, 0, sizeof *p);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) == -1) {
		log_warn("%s: SO_PEERCRED: %s", what, strerror(errno));
		return (-1);
	}
	p->uid = uc.uid;
	p->gid = uc.gid;
	p->pid = uc.pid;
	/* root's groups too: a policy rule may name one */
	if ((p->groups = peer_lookup_groups(p->uid, p->gid, true)) != NULL)
		peer_read_exe(p->groups, p->pid, what);
	if (peer_is_admin(p) ||
	    peer_in_uids(p, conf.allow_uids, conf.n_allow_uids) ||
	    peer_in_gids(p, conf.allow_gids, conf.n_allow_gids))
		return (0);
	log_warn("%s: refused peer uid %u gid %u pid %ld", what,
	    (unsigned)p->uid, (unsigned)p->gid, (long)p->pid);
	peer_release(p);
	return (-1);
}

bool
peer_vm_allowed(const struct peer *p, const char *name)
{
	const struct conf_vm_allow	*a = NULL;
	size_t				 i;

	if (peer_is_admin(p))
		return (true);
	for (i = 0; i < conf.n_vm_allows; i++) {
		if (strcmp(conf.vm_allows[i].name, name) == 0)
			a = &conf.vm_allows[i];
	}
	return (a == NULL || peer_in_uids(p, a->uids, a->n_uids) ||
	    peer_in_gids(p, a->gids, a->n_gids));
}

json_t *
peer_export(const struct peer *p)
{
	return (json_pack("{s:s,s:s}", "exe", peer_exe(p), "via",
	    peer_via(p)));
}

int
peer_import(int fd, const json_t *st, struct peer *p)
{
	struct ucred	 uc;
	socklen_t	 len = sizeof uc;
	const char	*s;

	memset(p, 0, sizeof *p);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) == -1)
		return (-1);
	p->uid = uc.uid;
	p->gid = uc.gid;
	p->pid = uc.pid;
	if ((p->groups = peer_lookup_groups(p->uid, p->gid, true)) == NULL)
		return (0);
	if ((s = json_string_value(json_object_get(st, "exe"))) != NULL)
		snprintf(p->groups->exe, sizeof p->groups->exe, "%s", s);
	if ((s = json_string_value(json_object_get(st, "via"))) != NULL)
		snprintf(p->groups->via, sizeof p->groups->via, "%s", s);
	return (0);
}
