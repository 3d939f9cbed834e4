/*
 * systemd's notification protocol through libsystemd's sd_notify: the
 * socket, its credentials and the message format are systemd's to define,
 * not ours to copy.
 *
 * STATUS= is polled, not pushed: a VM or client count that changes a
 * thousand times a second (a scale test, a reconnect storm) must not mean
 * a thousand datagrams to PID 1. Once a second the counts are formatted
 * and sent only if the text differs from the last one sent.
 *
 * WATCHDOG=1 comes from a timer of this loop at half of WatchdogSec, so a
 * loop that stops turning (a callback that never returns) stops the pings
 * and systemd restarts the broker; nothing here runs on another thread.
 */
#include "config.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "broker/core/log.h"
#include "broker/core/loop.h"
#include "broker/notify.h"
#include "broker/privsep.h"
#include "broker/session/client.h"
#include "broker/vm/vm.h"

#define NOTIFY_STATUS_MS	1000	/* at most one STATUS= a second */

static struct event	*notify_status_ev;
static struct event	*notify_wd_ev;
static char		 notify_last[128];

static bool
notify_on(void)
{
	const char	*s = getenv("NOTIFY_SOCKET");

	return (s != NULL && *s != '\0');
}

static void
notify_send(const char *msg)
{
	int	r;

	/* Not fatal: systemd restarted or gone, the broker keeps on. */
	if ((r = sd_notify(0, msg)) < 0)
		log_warn("sd_notify: %s", strerror(-r));
}

static void
notify_status_text(char *buf, size_t len)
{
	snprintf(buf, len, "STATUS=%zu VMs, %zu clients", vm_count(),
	    client_count());
}

static void
notify_status_cb(evutil_socket_t fd, short what, void *arg)
{
	char	buf[sizeof notify_last];

	notify_status_text(buf, sizeof buf);
	if (strcmp(buf, notify_last) == 0)
		return;
	memcpy(notify_last, buf, sizeof buf);
	notify_send(buf);
}

static void
notify_wd_cb(evutil_socket_t fd, short what, void *arg)
{
	notify_send("WATCHDOG=1");
}

static struct event *
notify_timer(long usec, event_callback_fn fn)
{
	struct timeval	 tv = { usec / 1000000, usec % 1000000 };
	struct event	*ev;

	ev = event_new(loop_base, -1, EV_PERSIST, fn, NULL);
	if (ev == NULL || event_add(ev, &tv) == -1) {
		log_warn("sd_notify: cannot arm a timer");
		if (ev != NULL)
			event_free(ev);
		return (NULL);
	}
	return (ev);
}

static void
notify_say_ready(void)
{
	char	msg[sizeof notify_last + 64];

	notify_status_text(notify_last, sizeof notify_last);
	/* MAINPID: right even when the broker forked away from the pid
	   systemd started (without --foreground); separated, the child
	   speaks (NotifyAccess=all) but the main process is its parent,
	   which holds the pid file and outlives every upgrade. */
	snprintf(msg, sizeof msg, "READY=1\nMAINPID=%ld\n%s",
	    (long)privsep_main_pid(), notify_last);
	notify_send(msg);
}

void
notify_ready(void)
{
	uint64_t	 usec = 0;
	const char	*wd;
	char		 pid[24];
	int		 r;

	if (!notify_on())
		return;
	notify_say_ready();
	if (notify_status_ev == NULL)
		notify_status_ev = notify_timer(NOTIFY_STATUS_MS * 1000L,
		    notify_status_cb);
	/* Separated, systemd named its main process, our parent, which
	   runs no loop: the loop that must prove it turns is this one. */
	if (privsep_is_child() && (wd = getenv("WATCHDOG_PID")) != NULL &&
	    atol(wd) == (long)getppid()) {
		snprintf(pid, sizeof pid, "%ld", (long)getpid());
		setenv("WATCHDOG_PID", pid, 1);
	}
	/* 0 when WatchdogSec is unset or WATCHDOG_PID names another
	   process (a child that inherited the environment). */
	r = sd_watchdog_enabled(0, &usec);
	if (r < 0)
		log_warn("WATCHDOG_USEC: %s", strerror(-r));
	if (r > 0 && notify_wd_ev == NULL) {
		notify_send("WATCHDOG=1");
		notify_wd_ev = notify_timer((long)(usec / 2 > 0 ? usec / 2 :
		    1), notify_wd_cb);
		log_info("watchdog: a ping every %llu ms",
		    (unsigned long long)(usec / 2000));
	}
}

void
notify_reloading(void)
{
	struct timespec	ts;
	char		msg[64];

	if (!notify_on())
		return;
	/* MONOTONIC_USEC: what Type=notify-reload (systemd 253) checks
	   RELOADING=1 against; older versions ignore it. */
	clock_gettime(CLOCK_MONOTONIC, &ts);
	snprintf(msg, sizeof msg, "RELOADING=1\nMONOTONIC_USEC=%llu",
	    (unsigned long long)ts.tv_sec * 1000000ULL +
	    (unsigned long long)ts.tv_nsec / 1000);
	notify_send(msg);
}

void
notify_reloaded(void)
{
	if (notify_on())
		notify_say_ready();
}

void
notify_stopping(void)
{
	if (notify_on())
		notify_send("STOPPING=1");
}

void
notify_cleanup(void)
{
	if (notify_status_ev != NULL)
		event_free(notify_status_ev);
	if (notify_wd_ev != NULL)
		event_free(notify_wd_ev);
	notify_status_ev = notify_wd_ev = NULL;
}
