/*
 * A VM's run state as the broker last knew it, and the two events that
 * make up for what QEMU never replays (issue 13, part 3):
 *
 *   VM_STATUS {"status", "running", "reconciled": true, "previous"}
 *	when a monitor (re)connects and QEMU's query-status differs from
 *	the status recorded (a STOP, RESUME, SHUTDOWN or GUEST_PANICKED
 *	while nobody was connected, or while the broker was down: the
 *	status is kept in STATE_DIR/status/NAME/last.json);
 *   VM_EXITED {"status", "shutdown", "guest", "reason", "why", "pid"}
 *	when QEMU's pid is gone (known from SO_PEERCRED of the monitor
 *	socket, watched through a pidfd: no polling), or, where no pidfd
 *	could be had, when the monitor closed and the next connect finds
 *	no QEMU behind the socket (it is gone, or refuses). Once per QEMU:
 *	whichever comes first. "shutdown" says whether SHUTDOWN came
 *	first, "guest" whether the guest asked.
 */
#include "config.h"

#include <sys/resource.h>
#include <sys/syscall.h>

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "broker/core/bus.h"
#include "broker/core/conf.h"
#include "broker/core/journal.h"
#include "broker/core/log.h"
#include "broker/core/loop.h"
#include "broker/core/proc.h"
#include "broker/vm/vm.h"
#include "broker/vm/vm_int.h"
#include "hv/vmq.h"

#define VMS_AREA	"status"
#define VMS_ID		"last"

static json_t	*vms_saved;	/* name -> status, loaded once */
static bool	 vms_handed;	/* ... or handed over by an upgrade */

static void
vms_found(const char *group, const char *id, json_t *rec, void *arg)
{
	json_t	*s = json_object_get(rec, "status");

	if (strcmp(id, VMS_ID) == 0 && json_is_string(s))
		json_object_set(vms_saved, group, s);
}

static void
vms_bad(const char *path, const char *why, void *arg)
{
	log_warn("vm status record %s: %s (set aside)", path, why);
}

json_t *
vm_status_export(void)
{
	return (vms_saved != NULL ? json_deep_copy(vms_saved) : NULL);
}

/* A previous process of this broker read the files and kept them up to
   date (vm_status_set, vm_status_forget): 1,000 files fewer to read
   while the monitors wait for the new process. */
void
vm_status_preset(const json_t *saved)
{
	const char	*name;
	json_t		*v, *copy;

	if (vms_saved != NULL || !json_is_object(saved) ||
	    (copy = json_object()) == NULL)
		return;
	json_object_foreach((json_t *)(uintptr_t)saved, name, v) {
		if (!json_is_string(v) || json_string_length(v) >=
		    sizeof ((struct vm *)NULL)->status) {
			json_decref(copy);
			return;
		}
		if (json_object_set_new(copy, name, json_string(
		    json_string_value(v))) != 0) {
			json_decref(copy);
			return;
		}
	}
	vms_saved = copy;
	vms_handed = true;
}

/* The status a previous broker recorded for this VM, if any. */
void
vm_status_load(struct vm *vm)
{
	const char	*s;

	if (vms_saved == NULL) {
		if ((vms_saved = json_object()) == NULL)
			return;
		if (conf.state_dir != NULL)
			journal_load(conf.state_dir, VMS_AREA, vms_found,
			    vms_bad, NULL);
	}
	s = json_string_value(json_object_get(vms_saved, vm->name));
	if (s != NULL)
		snprintf(vm->status, sizeof vm->status, "%s", s);
}

static void
vm_status_set(struct vm *vm, const char *status)
{
	struct qmp_error	err;
	json_t			*rec;

	if (strcmp(vm->status, status) == 0)
		return;
	snprintf(vm->status, sizeof vm->status, "%s", status);
	if (conf.state_dir == NULL || !conf.event_log)
		return;
	/* Rare (a run state change), so written now, as journals are. */
	rec = json_pack("{s:s}", "status", status);
	memset(&err, 0, sizeof err);
	if (rec != NULL && journal_write(conf.state_dir, VMS_AREA, vm->name,
	    VMS_ID, rec, &err) == -1)
		log_warn("vm %s: cannot record its status: %s", vm->name,
		    err.desc);
	json_decref(rec);
	if (vms_saved != NULL)
		json_object_set_new(vms_saved, vm->name, json_string(status));
}

static void
vm_status_unwatch(struct vm *vm)
{
	if (vm->pid_ev == NULL)
		return;
	close(event_get_fd(vm->pid_ev));
	event_free(vm->pid_ev);
	vm->pid_ev = NULL;
	vm->pid = 0;
}

/* The VM leaves the broker for good (not a stopping broker). */
void
vm_status_forget(struct vm *vm)
{
	struct qmp_error	err;

	vm_status_unwatch(vm);

	/* A backend's call may complete after the VM's memory went
	   (vmq_free): its answer finds no VM. */
	if (vm->status_asking != NULL) {
		*vm->status_asking = NULL;
		vm->status_asking = NULL;
	}

	if (loop_stopping() || conf.state_dir == NULL || vm->status[0] == '\0')
		return;
	memset(&err, 0, sizeof err);
	journal_write(conf.state_dir, VMS_AREA, vm->name, VMS_ID, NULL, &err);
	if (vms_saved != NULL)
		json_object_del(vms_saved, vm->name);
}

void
vm_status_cleanup(void)
{
	json_decref(vms_saved);
	vms_saved = NULL;
	vms_handed = false;
}

/* QEMU's events that change its run state (RunState names). */
void
vm_status_event(struct vm *vm, json_t *ev)
{
	const char	*name = qmp_event_name(ev), *r;
	json_t		*data;

	if (name == NULL)
		return;
	if (strcmp(name, "STOP") == 0)
		vm_status_set(vm, "paused");
	else if (strcmp(name, "RESUME") == 0 || strcmp(name, "WAKEUP") == 0)
		vm_status_set(vm, "running");
	else if (strcmp(name, "MIGRATION") == 0) {
		/* QEMU holds in-band commands until a paused postcopy
		   recovers: the monitor must not take that for a dead peer */
		r = json_string_value(json_object_get(json_object_get(ev,
		    "data"), "status"));
		vmq_set_postcopy_paused(vm->q, r != NULL &&
		    (strcmp(r, "postcopy-paused") == 0 ||
		    strcmp(r, "postcopy-recover") == 0));
	} else if (strcmp(name, "SUSPEND") == 0)
		vm_status_set(vm, "suspended");
	else if (strcmp(name, "GUEST_PANICKED") == 0)
		vm_status_set(vm, "guest-panicked");
	else if (strcmp(name, "SHUTDOWN") == 0) {
		data = json_object_get(ev, "data");
		vm->shutdown_seen = 1;
		vm->shutdown_guest = json_is_true(json_object_get(data,
		    "guest"));
		r = json_string_value(json_object_get(data, "reason"));
		snprintf(vm->shutdown_reason, sizeof vm->shutdown_reason,
		    "%s", r != NULL ? r : "");
		vm_status_set(vm, "shutdown");
	}
}

static void
vm_status_reply(json_t *ret, const struct qmp_error *err, void *arg)
{
	struct vm	**slot = arg, *vm = *slot;
	const char	*st;
	char		 prev[sizeof vm->status];

	free(slot);
	if (vm == NULL)
		return;
	vm->status_asking = NULL;
	if (vm->removed)
		return;
	if (err != NULL || (st = json_string_value(json_object_get(ret,
	    "status"))) == NULL) {
		log_info("vm %s: query-status after connecting: %s", vm->name,
		    err != NULL ? err->desc : "no status");
		return;
	}
	snprintf(prev, sizeof prev, "%s", vm->status);
	vm_status_set(vm, st);
	if (prev[0] == '\0' || strcmp(prev, st) == 0)
		return;
	log_notice("vm %s: status %s, was %s while nobody watched", vm->name,
	    st, prev);
	bus_publish(vm->name, "VM_STATUS", json_pack("{s:s,s:b,s:b,s:s}",
	    "status", st, "running", json_is_true(json_object_get(ret,
	    "running")), "reconciled", 1, "previous", prev));
}

static bool
vm_status_gone(const char *why)
{
	/* the monitor's connect failures: "connect PATH: strerror" */
	return (why != NULL && strncmp(why, "connect ", 8) == 0 &&
	    (strstr(why, "Connection refused") != NULL ||
	    strstr(why, "No such file or directory") != NULL));
}

static void
vm_status_exited(struct vm *vm, const char *why)
{
	json_t	*data;

	vm->exit_check = 0;
	if (vm->exit_said)
		return;
	vm->exit_said = 1;
	data = json_pack("{s:s,s:b,s:b,s:s,s:s}", "status",
	    vm->status[0] != '\0' ? vm->status : "unknown", "shutdown",
	    vm->shutdown_seen, "guest", vm->shutdown_seen &&
	    vm->shutdown_guest, "reason", vm->shutdown_seen ?
	    vm->shutdown_reason : "", "why", why);
	if (data != NULL && vm->pid > 0)
		json_object_set_new(data, "pid", json_integer(vm->pid));
	bus_publish(vm->name, "VM_EXITED", data);
	log_notice("vm %s: QEMU exited (%s)%s", vm->name, why,
	    vm->shutdown_seen ? " after SHUTDOWN" : "");
	vm->shutdown_seen = 0;
	vm->shutdown_guest = 0;
	vm->shutdown_reason[0] = '\0';
}

static void
vm_status_pid_gone(evutil_socket_t fd, short what, void *arg)
{
	struct vm	*vm = arg;
	char		 why[64];

	snprintf(why, sizeof why, "pid %d exited", vm->pid);
	vm_status_exited(vm, why);
	vm_status_unwatch(vm);
}

/* SO_PEERCRED names whoever made the listening socket: QEMU, or a
   manager that made it and handed it to QEMU (libvirt does), or a proxy.
   Only a process whose program (or, if that cannot be read, name) says
   QEMU is watched: the end of libvirtd or socat is not the end of the
   VM. (-name process=X renames QEMU's comm, not its exe.) */
static bool
vm_status_is_qemu(int pid)
{
	char		 path[64], buf[PATH_MAX];
	const char	*base;
	ssize_t		 n;
	FILE		*f;
	bool		 yes = false;

	snprintf(path, sizeof path, "/proc/%d/exe", pid);
	if ((n = readlink(path, buf, sizeof buf - 1)) > 0) {
		buf[n] = '\0';
		base = strrchr(buf, '/');
		return (strstr(base != NULL ? base : buf, "qemu") != NULL);
	}
	snprintf(path, sizeof path, "/proc/%d/comm", pid);
	if ((f = fopen(path, "re")) == NULL)
		return (false);
	if (fgets(buf, sizeof buf, f) != NULL)
		yes = strstr(buf, "qemu") != NULL;
	fclose(f);
	return (yes);
}

/*
 * Whether fd is one of the last fds of the process's limit: a 16th
 * of it, at most 1024, is kept for clients, scrapes and hotplug, which
 * cannot do without, while a pidfd is a convenience (EOF and the socket
 * gone tell an exit too). The kernel hands out the lowest free fd, so a
 * fd's number says how many are open, at no cost per VM.
 */
static bool
vm_status_fd_late(int fd)
{
	static bool	 said;
	struct rlimit	 rl;
	rlim_t		 keep;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1 || rl.rlim_cur == RLIM_INFINITY)
		return (false);
	keep = rl.rlim_cur / 16 < 1024 ? rl.rlim_cur / 16 : 1024;
	if ((rlim_t)fd + keep < rl.rlim_cur)
		return (false);
	if (!said)
		log_notice("pidfds: fd %d is within %llu of the open-file limit "
		    "%llu: VMs watched from now on get no pidfd (their "
		    "exit is told by EOF)", fd, (unsigned long long)keep,
		    (unsigned long long)rl.rlim_cur);
	said = true;
	return (true);
}

/* Watch the pid behind the monitor socket, if the kernel gives a
   pidfd for it (Linux >= 5.3): its exit is then news at once, also
   when the socket outlives it. Else the reconnect tells. */
static void
vm_status_watch(struct vm *vm)
{
	int	pid = vm->pid_given > 0 ? vm->pid_given : vmq_peer_pid(vm->q);
	int	fd;

	if (pid <= 0 || pid == vm->pid || pid == getpid())
		return;
	vm_status_unwatch(vm);
	if (vm->pid_given == 0 && !vm_status_is_qemu(pid)) {
		log_debug("vm %s: the socket's pid %d is not a QEMU: no pidfd",
		    vm->name, pid);
		return;
	}
#ifdef SYS_pidfd_open
	if ((fd = (int)syscall(SYS_pidfd_open, pid, 0)) == -1) {
		log_debug("vm %s: pidfd_open %d: %s", vm->name, pid,
		    strerror(errno));
		return;
	}
	if (vm_status_fd_late(fd)) {
		close(fd);
		return;
	}
	if ((vm->pid_ev = event_new(loop_base, fd, EV_READ,
	    vm_status_pid_gone, vm)) == NULL || event_add(vm->pid_ev,
	    NULL) == -1) {
		if (vm->pid_ev != NULL)
			event_free(vm->pid_ev);
		vm->pid_ev = NULL;
		close(fd);
		return;
	}
	vm->pid = pid;
#else
	(void)fd;
#endif
}

void
vm_set_pid(struct vm *vm, int pid)
{
	vm->pid_given = pid;
	if (proc_start_time(pid, &vm->pid_start) == -1)
		vm->pid_start = 0;
	vm_status_watch(vm);
}

int
vm_pid_given(const struct vm *vm, unsigned long long *start)
{
	*start = vm->pid_start;
	return (vm->pid_given);
}

bool
vm_restore_pid(struct vm *vm, int pid, unsigned long long start)
{
	unsigned long long	now;

	if (pid <= 0 || start == 0 || proc_start_time(pid, &now) == -1) {
		log_info("vm %s: saved pid %d is gone: its exit is known by "
		    "the monitor socket only", vm->name, pid);
		return (false);
	}
	if (now != start) {
		log_warn("vm %s: saved pid %d is another process now (started "
		    "at %llu, not %llu): not watched", vm->name, pid, now,
		    start);
		return (false);
	}
	vm_set_pid(vm, pid);
	return (true);
}

/* The endpoint's state changes. */
void
vm_status_state(struct vm *vm, enum mon_state st, const char *why)
{
	switch (st) {
	case MON_READY:
		vm->exit_check = 0;
		vm->exit_said = 0;
		vm_status_watch(vm);
		/* Carried over ready by an upgrade, with the status the
		   previous process had from every event up to the hand-over
		   (the rest wait in the socket): nothing happened unseen,
		   and 1,000 query-status right after the pause would only
		   delay the clients' commands. */
		if (vms_handed && vm->status[0] != '\0' && vm->q != NULL &&
		    vmq_adopted(vm->q))
			break;
		if (vm->status_asking == NULL &&
		    (vm->status_asking = malloc(sizeof *vm->status_asking)) !=
		    NULL) {
			*vm->status_asking = vm;
			vmq_execute(vm->q, "query-status", NULL, NULL, 0,
			    vm_status_reply, vm->status_asking);
		}
		break;
	case MON_DISCONNECTED:
		if (vm->was_ready) {
			/* a connection that was up went: is QEMU still
			   there? Its pidfd, or else the next connect, says. */
			vm->exit_check = !vm->exit_said;
			break;
		}
		if (!vm->exit_check)
			break;
		vm->exit_check = 0;
		if (vm_status_gone(why))
			vm_status_exited(vm, why);
		break;
	default:
		break;
	}
}
