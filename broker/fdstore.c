/*
 * systemd's fd store for the monitors' connections (fdstore.h says
 * what and why).
 */
#include "config.h"

#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "broker/core/log.h"
#include "broker/core/loop.h"
#include "broker/fdstore.h"
#include "broker/vm/vm.h"
#include "hv/mon.h"
#include "hv/vmq.h"

#define FDS_PREFIX	"qmon"
#define FDS_NAME_MAX	255	/* systemd's limit for FDNAME */
#define FDS_LEFTOVER_S	2

static struct event	*fds_leftover;
static bool		 fds_reclaimed;

static bool
fds_on(void)
{
	const char	*s = getenv("NOTIFY_SOCKET");

	return (s != NULL && *s != '\0');
}

/* "qmon" oob path; 0 if the path cannot be a name (systemd takes
   printable ASCII but ':', at most 255 bytes). */
static int
fds_name(struct vm *vm, char *buf, size_t len)
{
	const char	*p = vm_socket(vm);
	size_t		 i;

	if (p == NULL || *p != '/' ||
	    (size_t)snprintf(buf, len, FDS_PREFIX "%d%s",
	    vmq_oob_offered(vm_vmq(vm)) ? 1 : 0, p) >= len ||
	    strlen(buf) > FDS_NAME_MAX)
		return (0);
	for (i = 0; buf[i] != '\0'; i++)
		if (buf[i] < 0x21 || buf[i] > 0x7e || buf[i] == ':')
			return (0);
	return (1);
}

static void
fds_state(struct vm *vm, enum mon_state st, const char *why, void *arg)
{
	char	name[FDS_NAME_MAX + 16], msg[FDS_NAME_MAX + 64];
	int	fd, r;

	if (!fds_on() || (st != MON_READY && st != MON_DISCONNECTED) ||
	    !fds_name(vm, name, sizeof name))
		return;
	if (st == MON_READY) {
		if ((fd = vmq_fd(vm_vmq(vm))) == -1)
			return;
		snprintf(msg, sizeof msg, "FDSTORE=1\nFDNAME=%s", name);
		r = sd_pid_notify_with_fds(0, 0, msg, &fd, 1);
	} else {
		snprintf(msg, sizeof msg, "FDSTOREREMOVE=1\nFDNAME=%s", name);
		r = sd_notify(0, msg);
	}
	if (r < 0)
		log_warn("vm %s: fd store: %s", vm_name(vm), strerror(-r));
}

static void
fds_removing(struct vm *vm, void *arg)
{
	fds_state(vm, MON_DISCONNECTED, NULL, arg);
}

static const struct vm_observer fds_observer = {
	NULL,
	fds_removing,
	fds_state,
	NULL,
};

void
fdstore_init(void)
{
	vm_observe(&fds_observer, NULL);
}

void
fdstore_reclaim(void)
{
	char	**names = NULL;
	int	  n, i, fd, kept = 0;
	const char *nm;

	/* unset: an upgrade's exec must not find them again */
	if ((n = sd_listen_fds_with_names(1, &names)) <= 0)
		return;
	for (i = 0; i < n; i++) {
		fd = SD_LISTEN_FDS_START + i;
		nm = names != NULL ? names[i] : NULL;
		if (nm == NULL || strncmp(nm, FDS_PREFIX, 4) != 0 ||
		    (nm[4] != '0' && nm[4] != '1') || nm[5] != '/') {
			log_warn("fd store: fd %d named '%s' is not ours: "
			    "closed", fd, nm != NULL ? nm : "");
			close(fd);
			continue;
		}
		/* the dead process's fds carried its flags: ours are all
		   close-on-exec */
		(void)fcntl(fd, F_SETFD, FD_CLOEXEC);
		if (mon_inherit_fd(nm + 5, fd, nm[4] == '1') == 0)
			kept++;
	}
	if (names != NULL) {
		for (i = 0; i < n; i++)
			free(names[i]);
		free(names);
	}
	fds_reclaimed = kept > 0;
	log_notice("fd store: %d monitor connections kept by systemd", kept);
}

static void
fds_leftover_cb(evutil_socket_t fd, short what, void *arg)
{
	size_t	n;

	if ((n = mon_inherit_end()) > 0)
		log_notice("fd store: %zu monitor connections had no VM: "
		    "closed", n);
	event_free(fds_leftover);
	fds_leftover = NULL;
}

void
fdstore_reclaim_end(void)
{
	struct timeval	tv = { FDS_LEFTOVER_S, 0 };

	if (!fds_reclaimed)
		return;
	if ((fds_leftover = evtimer_new(loop_base, fds_leftover_cb, NULL)) ==
	    NULL || evtimer_add(fds_leftover, &tv) == -1)
		mon_inherit_end();
}
