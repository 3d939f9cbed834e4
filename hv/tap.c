/*
 * Tap fds. See tap.h.
 *
 * The flags match what QEMU's tap_open() asks for, so a tap the broker
 * opens behaves exactly as one QEMU would have opened by ifname=.
 */
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <linux/if.h>
#include <linux/if_tun.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "hv/tap.h"
#include "priv/priv.h"

#define TAP_TUN_PATH	"/dev/net/tun"
#define TAP_VHOST_PATH	"/dev/vhost-net"

bool
tap_ifname_valid(const char *s)
{
	size_t	n;

	if (s == NULL || (n = strlen(s)) == 0 || n >= IFNAMSIZ)
		return (false);
	if (strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
		return (false);
	for (; *s != '\0'; s++) {
		if (*s == '/' || *s == ':' || (unsigned char)*s <= ' ' ||
		    (unsigned char)*s >= 0x7f)
			return (false);
	}
	return (true);
}

/* A tun/tap interface has tun_flags in sysfs; nothing else does. */
static bool
tap_exists(const char *ifname)
{
	char	path[64];

	snprintf(path, sizeof path, "/sys/class/net/%s/tun_flags", ifname);
	return (access(path, F_OK) == 0);
}

static void
tap_close_all(int *fds, size_t n)
{
	size_t	i;

	for (i = 0; i < n; i++) {
		if (fds[i] >= 0)
			close(fds[i]);
		fds[i] = -1;
	}
}

int
tap_open(const char *ifname, size_t nqueues, bool vhost, int *fds,
    struct qmp_error *err)
{
	struct ifreq	ifr;
	size_t		i, total;

	if (!tap_ifname_valid(ifname)) {
		qmp_error_set(err, QMP_CLS_GENERIC, "invalid interface name");
		return (-1);
	}
	if (nqueues == 0 || nqueues > TAP_MAX_QUEUES) {
		qmp_error_set(err, QMP_CLS_GENERIC, "queues must be 1..%d",
		    TAP_MAX_QUEUES);
		return (-1);
	}
	/* Unprivileged: the helper opens it, and checks it again. */
	if (priv_active())
		return (priv_tap_open(ifname, nqueues, vhost, fds, err));
	total = vhost ? 2 * nqueues : nqueues;
	for (i = 0; i < total; i++)
		fds[i] = -1;
	for (i = 0; i < nqueues; i++) {
		fds[i] = open(TAP_TUN_PATH, O_RDWR | O_CLOEXEC);
		if (fds[i] < 0) {
			qmp_error_set(err, QMP_CLS_GENERIC, "%s: %s",
			    TAP_TUN_PATH, strerror(errno));
			goto fail;
		}
		memset(&ifr, 0, sizeof ifr);
		ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
		if (nqueues > 1)
			ifr.ifr_flags |= IFF_MULTI_QUEUE;
		memcpy(ifr.ifr_name, ifname, strlen(ifname));
		/* TUNSETIFF on a name that is not a tap would create one:
		   refuse anything that does not exist yet, so a typo never
		   leaves a stray interface behind. */
		if (i == 0 && !tap_exists(ifname)) {
			qmp_error_set(err, QMP_CLS_GENERIC,
			    "%s is not an existing tap interface", ifname);
			goto fail;
		}
		if (ioctl(fds[i], TUNSETIFF, &ifr) != 0) {
			qmp_error_set(err, QMP_CLS_GENERIC, "could not "
			    "configure tap %s: %s%s", ifname, strerror(errno),
			    errno == EINVAL && nqueues > 1 ? " (is it a "
			    "multi_queue tap?)" : "");
			goto fail;
		}
	}
	for (i = nqueues; i < total; i++) {
		fds[i] = open(TAP_VHOST_PATH, O_RDWR | O_CLOEXEC);
		if (fds[i] < 0) {
			qmp_error_set(err, QMP_CLS_GENERIC, "%s: %s",
			    TAP_VHOST_PATH, strerror(errno));
			goto fail;
		}
	}
	return (0);
fail:
	tap_close_all(fds, total);
	return (-1);
}

int
tap_check_fd(int fd, size_t nqueues, char *ifname, size_t len,
    struct qmp_error *err)
{
	struct ifreq	ifr;

	memset(&ifr, 0, sizeof ifr);
	if (ioctl(fd, TUNGETIFF, &ifr) != 0) {
		qmp_error_set(err, QMP_CLS_GENERIC,
		    "fd passed as a tap is not a tap (TUNGETIFF: %s)",
		    strerror(errno));
		return (-1);
	}
	if ((ifr.ifr_flags & IFF_TAP) == 0) {
		qmp_error_set(err, QMP_CLS_GENERIC,
		    "fd passed as a tap is a tun, not a tap");
		return (-1);
	}
	if ((ifr.ifr_flags & IFF_VNET_HDR) == 0) {
		qmp_error_set(err, QMP_CLS_GENERIC,
		    "tap fd was opened without IFF_VNET_HDR");
		return (-1);
	}
	if (nqueues > 1 && (ifr.ifr_flags & IFF_MULTI_QUEUE) == 0) {
		qmp_error_set(err, QMP_CLS_GENERIC,
		    "tap fd is not multi-queue but queues > 1");
		return (-1);
	}
	if (ifname != NULL && len > 0)
		snprintf(ifname, len, "%.*s", IFNAMSIZ, ifr.ifr_name);
	return (0);
}

int
tap_check_vhost_fd(int fd, struct qmp_error *err)
{
	struct stat	st, want;

	if (fstat(fd, &st) != 0 || !S_ISCHR(st.st_mode)) {
		qmp_error_set(err, QMP_CLS_GENERIC,
		    "fd passed as vhost-net is not a character device");
		return (-1);
	}
	if (stat(TAP_VHOST_PATH, &want) == 0 && want.st_rdev != st.st_rdev) {
		qmp_error_set(err, QMP_CLS_GENERIC,
		    "fd passed as vhost-net is not /dev/vhost-net");
		return (-1);
	}
	return (0);
}
