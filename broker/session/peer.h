/*
 * Who is on the other end of a unix socket, and what it may do.
 *
 * The socket's mode (0660, a configured group) is the first gate;
 * SO_PEERCRED against the allowed uids and gids is the second, checked on
 * every accepted connection of the control socket and of the shared
 * per-VM sockets alike; vm-allow is the third, per VM.
 *
 * The kernel passes no supplementary groups with SO_PEERCRED, so
 * peer_accept() looks them up once (NSS may block: once per connection,
 * never per request or per event) and the peer carries them, shared by
 * reference with every request it makes.
 */
#ifndef BROKER_SESSION_PEER_H
#define BROKER_SESSION_PEER_H

#include <sys/types.h>
#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>

struct peer_groups;

struct peer {
	uid_t			 uid;
	gid_t			 gid;
	pid_t			 pid;
	struct peer_groups	*groups;	/* NULL: none looked up */
};

/* /proc/PID/exe and the socket's path, read once at accept for the
   audit trail (the process may exec or exit before its command is
   done): "" when not known. */
#define PEER_EXE_MAX	256

/* A peer for the broker's own requests (config, restarts): may do
   anything. */
void	peer_self(struct peer *);
/* Fills p from SO_PEERCRED and the groups; 0 if it may connect, else -1
   (logged, p cleared). what names the socket in logs. */
int	peer_accept(int fd, struct peer *p, const char *what);
/* dst shares src's groups; each copy is released on its own. */
void	peer_copy(struct peer *dst, const struct peer *src);
void	peer_release(struct peer *);
/* May p see and act on VM name (vm-allow; a VM without a list: every
   peer)? Never blocks. */
bool	peer_vm_allowed(const struct peer *, const char *name);
/* Is gid p's primary group or one of its supplementary groups? */
bool	peer_has_gid(const struct peer *, gid_t);
/* root, the broker's own uid, or the broker itself (peer_self). */
bool	peer_is_admin(const struct peer *);
/* What peer_accept read: the executable and the socket ("" if none). */
const char *peer_exe(const struct peer *);
const char *peer_via(const struct peer *);
/* A peer for uid (and its gid and groups from NSS, which may block:
   for admin commands such as policy-check only). */
void	peer_lookup(struct peer *, uid_t uid);

/* Upgrade (broker/upgrade.h): peer_export says what peer_accept read
   at accept that the socket cannot say again ({"exe","via"}; NULL if out
   of memory); peer_import fills p for a connection carried over: the
   credentials from the socket (the kernel's, kept from the connect), the
   groups looked up again, exe and via from st (checked, bounded). It
   admits whatever the previous process admitted. -1 if the socket has no
   credentials. */
json_t	*peer_export(const struct peer *);
int	peer_import(int fd, const json_t *st, struct peer *p);

#endif
