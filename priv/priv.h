/*
 * The privileged helper's protocol and its client (docs/policy.md,
 * "Privilege separation").
 *
 * With privilege separation the daemon that parses client bytes and
 * talks to QEMU runs as an unprivileged user; what still needs root is
 * asked of the helper (broker/privsep.c, the privileged parent) over a
 * SOCK_SEQPACKET socketpair. One request, one reply, both fixed-size
 * binary records (never JSON); the fds a reply carries come as
 * SCM_RIGHTS. The helper checks every request again on its own side: it
 * trusts nothing the daemon says.
 *
 * The operations, all of them:
 *   PRIV_TAP	  name = ifname, arg = queues (1..TAP_MAX_QUEUES), flags =
 *		  PRIV_F_VHOST: the tap's queue fds (then the vhost-net fds),
 *		  each proved a tap of that name by TUNGETIFF;
 *   PRIV_IMAGE	  name = absolute path under an --image-root, arg =
 *		  PRIV_RO or PRIV_RW: one fd of a regular file or block device,
 *		  opened by a walk that follows no symlink (O_NOFOLLOW at each
 *		  component from the root's fd), so a link swapped in between
 *		  the daemon's check and the open is refused, not followed;
 *   PRIV_CONNECT name = absolute path of a unix socket under --vm-dir or
 *		  --monitor-root: a connected, non-blocking stream socket;
 *   PRIV_LOOP_FIND name = "loop-control", arg 0: LOOP_CTL_GET_FREE (which
 *		  makes a device when none is free); no fd, desc = "/dev/loopN";
 *   PRIV_LOOP_ATTACH name = image path as for PRIV_IMAGE, arg = N of
 *		  /dev/loopN, flags = PRIV_F_RO: the image opened by that same
 *		  walk is attached to /dev/loopN (proved a loop block device by
 *		  fstat) with LOOP_CONFIGURE, no autoclear (the device stays
 *		  until a detach, as losetup's); no fd;
 *   PRIV_LOOP_DETACH name = the image path the daemon attached, arg = N:
 *		  /dev/loopN is a loop device whose sysfs backing_file is that
 *		  path, and the path lies under an --image-root; LOOP_CLR_FD.
 *   PRIV_NBD_CONNECT name = image path as for PRIV_IMAGE, arg = N of
 *		  DEVDIR/nbdN, flags = PRIV_F_RO | PRIV_NBD_FMT(i) (i an index
 *		  of priv_nbd_formats: 0 none, which the helper makes "raw",
 *		  never a probe as root): the image opened by that walk, the
 *		  device proved an nbd device that is not connected, and the
 *		  configured qemu-nbd run by the helper with an argv it builds
 *		  ("-c DEVDIR/nbdN [-r] -f FMT -- /proc/self/fd/3", the image
 *		  as that fd), waited for (PRIV_NBD_WAIT_MS at most, then
 *		  killed); its exit status is the reply's, its first line of
 *		  stderr the desc; no fd;
 *   PRIV_NBD_DISCONNECT name = "nbd", arg = N: only a device this helper
 *		  ran qemu-nbd -c for, or whose sysfs pid is a qemu-nbd
 *		  serving a /proc/self/fd/ path on it (one a helper started
 *		  before a restart); BLKFLSBUF, then qemu-nbd -d; status 0
 *		  with desc empty (flushed) or the flush's error.
 * Both block the helper (and the client) for as long as qemu-nbd runs:
 * call them from a worker, not the loop.
 *
 * Client side: used by hv (taps, monitors) and svc (images). When no
 * helper is set (no privilege separation), priv_active() is false and the
 * callers do the operation themselves, as before.
 */
#ifndef PRIV_PRIV_H
#define PRIV_PRIV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/qmp_msg.h"

#define PRIV_MAGIC	0x31504251u	/* "QBP1" little-endian */
#define PRIV_NAME_MAX	4096		/* name[] bytes, NUL included */
#define PRIV_MAX_FDS	16		/* 2 * TAP_MAX_QUEUES */
#define PRIV_DESC_MAX	512		/* as struct qmp_error's desc */
#define PRIV_TIMEOUT_MS	10000		/* a helper this slow is dead */

enum priv_op {
	PRIV_TAP = 1,
	PRIV_IMAGE = 2,
	PRIV_CONNECT = 3,
	PRIV_LOOP_FIND = 4,
	PRIV_LOOP_ATTACH = 5,
	PRIV_LOOP_DETACH = 6,
	PRIV_NBD_CONNECT = 7,
	PRIV_NBD_DISCONNECT = 8,
};
#define PRIV_OP_LAST	PRIV_NBD_DISCONNECT
#define PRIV_NBD_NAME	"nbd"		/* PRIV_NBD_DISCONNECT's name */
#define PRIV_NBD_MAX	1024u		/* N of nbdN: below */
#define PRIV_NBD_FMT(i)	((uint32_t)(i) << 8)	/* PRIV_NBD_CONNECT */
#define PRIV_NBD_FMT_MASK 0xff00u
/* Below PRIV_TIMEOUT_MS: a slow qemu-nbd is the helper's to kill, and
   the client never takes it for a dead helper. */
#define PRIV_NBD_WAIT_MS 8000
#define PRIV_LOOP_CONTROL "loop-control"	/* PRIV_LOOP_FIND's name */
#define PRIV_LOOP_MAX	(1u << 20)		/* N of /dev/loopN: below */

#define PRIV_F_VHOST	0x1u		/* PRIV_TAP: vhost-net fds too */
#define PRIV_F_RO	0x1u		/* PRIV_LOOP_ATTACH, PRIV_NBD_CONNECT:
					   read-only */
#define PRIV_RO		0u		/* PRIV_IMAGE modes */
#define PRIV_RW		1u

/* A request: exactly sizeof (struct priv_req) bytes in one datagram, no
   fds. name is NUL-terminated and zero after the NUL, so one request has
   exactly one encoding. */
struct priv_req {
	uint32_t	magic;
	uint32_t	seq;		/* echoed in the reply */
	uint32_t	op;		/* enum priv_op */
	uint32_t	arg;
	uint32_t	flags;
	uint32_t	pad;		/* zero */
	char		name[PRIV_NAME_MAX];
};

/* A reply: status 0 and nfds fds attached, or status an errno value and
   desc (NUL-terminated) says why. */
struct priv_rep {
	uint32_t	magic;
	uint32_t	seq;
	uint32_t	op;
	int32_t		status;
	uint32_t	nfds;
	uint32_t	pad;
	char		desc[PRIV_DESC_MAX];
};

/* --- the wire (both sides) --------------------------------------------- */

/* Reads one request from fd (blocking). 0: req is well formed; -1 with
   rep->status 0 on EOF (errno 0) or a failing socket (errno set: EINTR
   is retried); -1 with rep->status/desc set when the datagram is
   malformed (size, magic, op, name encoding, padding, fds attached: any
   fds that came are closed). */
int	priv_req_recv(int fd, struct priv_req *req, struct priv_rep *rep);
/* Sends rep with n fds (borrowed: the caller closes them after). */
int	priv_rep_send(int fd, const struct priv_rep *rep, const int *fds,
	    size_t n);

/* --- the client (the unprivileged daemon) ------------------------------ */

/* fd (owned from here on) is the daemon's end of the socketpair; -1
   clears it. lost runs once, from the failing call, when the helper is
   gone (EOF, an error or a timeout): the daemon stops then, because
   nothing it needs root for works any more. */
void	priv_set_fd(int fd, void (*lost)(const char *why));
bool	priv_active(void);
/* The socket priv_set_fd gave (still owned here), or -1: an upgrade's
   exec passes it on to the new process (broker/privsep.h). */
int	priv_get_fd(void);

/* Each returns 0 and the fds, or -1 with err filled (QMP's
   GenericError, the helper's reason). */
int	priv_tap_open(const char *ifname, size_t nqueues, bool vhost,
	    int *fds, struct qmp_error *err);
int	priv_image_open(const char *path, bool readonly, int *fdp,
	    struct qmp_error *err);
/* -1 with errno set too (EAGAIN, ECONNREFUSED...: the caller's retry
   rules stay as for its own connect). */
int	priv_connect(const char *path, int *fdp, struct qmp_error *err);

/* Loop devices (dev is "/dev/loopN"). Each 0, or -1 with err (the
   helper's reason, its text as losetup's would be for the callers'
   retry rules: "Device or resource busy" when the device is taken).
   loop_find fills dev (len bytes). */
int	priv_loop_find(char *dev, size_t len, struct qmp_error *err);
int	priv_loop_attach(const char *dev, const char *path, bool readonly,
	    struct qmp_error *err);
int	priv_loop_detach(const char *dev, const char *path,
	    struct qmp_error *err);

/* The formats PRIV_NBD_CONNECT takes, NULL-terminated; index 0 (no
   format asked) is "raw" too: the helper never lets a root qemu-nbd
   probe a file a tenant may write. */
extern const char *const priv_nbd_formats[];
/* Index of format (NULL: 0) in priv_nbd_formats, or -1. */
int	priv_nbd_format(const char *format);

/* nbd devices (index N of DEVDIR/nbdN, as the helper's configuration
   names them). Each blocks for as long as qemu-nbd runs: call them from
   a worker. 0, or -1 with err (qemu-nbd's first line of stderr, or the
   helper's refusal). disconnect fills flush_err (len bytes) with the
   BLKFLSBUF error, "" when the device was flushed. */
int	priv_nbd_connect(int index, const char *path, bool readonly,
	    const char *format, struct qmp_error *err);
int	priv_nbd_disconnect(int index, char *flush_err, size_t len,
	    struct qmp_error *err);

/* Round trips made, for tools/bench and the tests. */
unsigned long	priv_calls(void);

#endif
