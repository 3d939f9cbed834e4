/*
 * Image paths confined to the configured image roots.
 *
 * The broker runs as root and opens disk images for VMs on a client's
 * word, so a path is only ever opened after it is proved to lie under
 * one of the roots. Shared by hotplug (disk-add) and the jobs runner.
 */
#ifndef DISK_IMGPATH_H
#define DISK_IMGPATH_H

#include <stddef.h>

#include "proto/qmp_msg.h"

/*
 * Checks path against the roots without opening anything:
 *  - path is absolute, has no "." or ".." component and no empty one;
 *  - its directory, with every symlink in it resolved, lies under the
 *    resolved form of one of the roots;
 *  - if its final component is a symlink, what it points to (fully
 *    resolved) lies under a root too, so a link cannot lead out;
 *  - it exists and is a regular file or a block device (a directory,
 *    FIFO, socket or character device is refused here, before any
 *    open() could block or have side effects).
 * On success writes to resolved (size rlen) the path with its directory
 * resolved but its final component not followed, and returns 0. On
 * failure fills err (GenericError) and returns -1.
 */
int	img_path_check(char *const *roots, size_t nroots, const char *path,
	    char *resolved, size_t rlen, struct qmp_error *err);

/*
 * After open(): proves that what the fd refers to still lies under a root
 * and is a regular file or block device, closing the race between the
 * check above and the open. Returns 0 or -1 with err filled.
 */
int	img_fd_check(char *const *roots, size_t nroots, int fd,
	    struct qmp_error *err);

/*
 * Opens path for the privileged helper (priv/priv.h), which must not be
 * talked into following a link that appears after anyone's check: path
 * must lie lexically under one of the roots (each resolved once, here),
 * and is opened by a walk from that root's fd, one component at a time,
 * each with O_NOFOLLOW (directories as O_PATH), so no symlink anywhere
 * below the root is followed, whenever it was swapped in. flags is
 * O_RDONLY or O_RDWR; the fd comes back O_CLOEXEC, blocking, and only if
 * it is a regular file or a block device. With O_PATH (the helper's
 * monitor sockets) any kind comes back, for the caller to judge. Returns
 * the fd, or -1 with err.
 */
int	img_open_nofollow(char *const *roots, size_t nroots, const char *path,
	    int flags, struct qmp_error *err);

#endif
