/*
 * nbd devices: finding a free one in sysfs, holding it with a lock file,
 * telling when qemu-nbd has connected it, flushing it. The broker runs
 * qemu-nbd itself (broker/proc.h) and serialises device choice on its
 * loop; the lock file (flock) keeps other tools, and a second broker,
 * away from the device while it is ours.
 *
 * Paths are configurable so the logic runs against a fake sysfs tree in
 * tests: SYSFS/module/nbd (module loaded), SYSFS/block/nbdN (devices),
 * SYSFS/block/nbdN/pid (connected), DEVDIR/nbdN, LOCKDIR/nbdN.lock.
 */
#ifndef DISK_NBD_H
#define DISK_NBD_H

#include <stdbool.h>
#include <stddef.h>

#include "proto/qmp_msg.h"

#define NBD_SYSFS	"/sys"
#define NBD_DEVDIR	"/dev"
#define NBD_LOCKDIR	"/run/lock/qmpbroker"
#define NBD_QEMU_NBD	"qemu-nbd"
#define NBD_ARGV_MAX	12

struct nbd_paths {
	const char	*sysfs;
	const char	*devdir;
	const char	*lockdir;
};

struct nbd_dev {
	int	 index;		/* N of nbdN */
	char	 path[256];	/* DEVDIR/nbdN */
	int	 lockfd;	/* held while ours; -1 when released */
};

/* Picks a free device at random (no pid file in sysfs, lock taken), or
   fails with "nbd module not loaded" / "no free nbd devices". */
int	nbd_pick(const struct nbd_paths *, struct nbd_dev *,
	    struct qmp_error *err);
void	nbd_release(struct nbd_dev *);
/* Takes DEVDIR/nbdN again (after a broker restart, for a device its
   journal names): 0 with the lock held, 1 when another process holds the
   lock (d filled, lockfd -1), -1 when dev is no nbd device of ours. */
int	nbd_claim(const struct nbd_paths *, const char *dev, struct nbd_dev *);
/* SYSFS/block/nbdN/pid exists: qemu-nbd holds the device. */
bool	nbd_connected(const struct nbd_paths *, const struct nbd_dev *);
/* Index of DEVDIR/nbdN, or -1. */
int	nbd_parse_device(const struct nbd_paths *, const char *dev);

void	nbd_connect_argv(const char *qemu_nbd, const struct nbd_dev *,
	    bool ro, const char *format, const char *path,
	    char *argv[NBD_ARGV_MAX]);
void	nbd_disconnect_argv(const char *qemu_nbd, const struct nbd_dev *,
	    char *argv[NBD_ARGV_MAX]);
/* BLKFLSBUF on the device; blocks: call it from a worker. */
int	nbd_flush(const char *dev, struct qmp_error *err);

#endif
