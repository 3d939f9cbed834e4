/*
 * systemd's service notification (sd_notify(3), libsystemd): READY=1 once
 * the start is over (registry loaded, journals reconciled, every listener
 * up), STATUS= with the VM and client counts when they change, WATCHDOG=1
 * from the loop when the unit sets WatchdogSec, RELOADING=1 around SIGHUP
 * and STOPPING=1 on the way out. Outside systemd (no NOTIFY_SOCKET) every
 * call is a no-op and no timer runs.
 */
#ifndef BROKER_NOTIFY_H
#define BROKER_NOTIFY_H

/* After daemon_start succeeded, with loop_base running soon: says READY=1
   and arms the status and watchdog timers. */
void	notify_ready(void);
/* Before and after daemon_reload. */
void	notify_reloading(void);
void	notify_reloaded(void);
/* daemon_stop's first word. */
void	notify_stopping(void);
/* After the loop: frees the timers. */
void	notify_cleanup(void);

#endif
