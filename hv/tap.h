/*
 * Tap devices for NIC hotplug: opening an existing tap by name, as
 * QEMU's own tap backend would, and proving that a client's fd is one.
 */
#ifndef HV_TAP_H
#define HV_TAP_H

#include <stdbool.h>
#include <stddef.h>

#include "proto/qmp_msg.h"

#define TAP_MAX_QUEUES	8

/* Opens nqueues fds on the tap ifname through /dev/net/tun with
   IFF_TAP|IFF_NO_PI|IFF_VNET_HDR (and IFF_MULTI_QUEUE when nqueues > 1),
   and, if vhost, one /dev/vhost-net fd per queue after them. fds gets
   nqueues (+ nqueues) entries. All or nothing: on failure every fd
   opened is closed, err says why, -1 is returned. */
int	tap_open(const char *ifname, size_t nqueues, bool vhost, int *fds,
	    struct qmp_error *err);

/* Checks that fd is a tap (TUNGETIFF answers, IFF_TAP is set), and that
   it was opened with IFF_VNET_HDR and, for nqueues > 1, IFF_MULTI_QUEUE.
   ifname (may be NULL) gets its interface name. */
int	tap_check_fd(int fd, size_t nqueues, char *ifname, size_t len,
	    struct qmp_error *err);

/* Checks that fd is a vhost-net fd: a character device, and the one
   /dev/vhost-net is when this host has it (without it, any character
   device passes: QEMU's own vhost setup is then the judge). */
int	tap_check_vhost_fd(int fd, struct qmp_error *err);

/* Valid Linux interface name: 1..15 bytes, no '/', ':' or space. */
bool	tap_ifname_valid(const char *);

#endif
