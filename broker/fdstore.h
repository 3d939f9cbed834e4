/*
 * systemd's file descriptor store (sd_pid_notify_with_fds(3),
 * FDSTORE=1): every monitor connection that is ready is stored under
 * FDNAME "qmon" + oob (0 or 1) + the monitor's socket path, and removed
 * (FDSTOREREMOVE=1) when the connection or the VM goes, so that systemd
 * never holds a connection the broker let go (QEMU would not see the
 * EOF). If the broker dies (a crash, kill -9, the watchdog), systemd
 * starts it again with the stored fds in LISTEN_FDS/LISTEN_FDNAMES: the
 * monitors take them over (hv/mon.h, mon_inherit_fd) without a new
 * connection, ask query-version and query-commands again, and go on.
 * QEMU sees no EOF. What the dead broker had half-read or had in flight
 * is lost with it: its replies are ignored, a torn line is skipped.
 *
 * Needs FileDescriptorStoreMax= in the unit (tools/qmpbrokerd.service).
 * Outside systemd (no NOTIFY_SOCKET) nothing is stored. Upgrades do not
 * need the store (broker/upgrade.h): their pid and fds stay, and systemd
 * keeps one copy of each fd however often it is stored.
 */
#ifndef BROKER_FDSTORE_H
#define BROKER_FDSTORE_H

/* Before the registry: monitors' connections systemd kept for us (not
   after an upgrade, which hands over its own). */
void	fdstore_reclaim(void);
/* Wires the VM observer that stores and removes. */
void	fdstore_init(void);
/* After the registry: what no VM took is closed later (the monitors
   take theirs from the loop). */
void	fdstore_reclaim_end(void);

#endif
