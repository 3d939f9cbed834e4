/*
 * Shared per-VM monitors: RUNDIR/vm/NAME.qmp behaves like the VM's own
 * QMP socket, but any number of clients may hold it at once (QEMU takes
 * one). Each gets QEMU's greeting, negotiates on its own and keeps its own
 * ids: a request becomes a command of the VM's single monitor, whose ids
 * the monitor makes, and the reply goes back under the client's id. Every
 * event of the VM goes to every negotiated client, as QEMU sends it.
 *
 * A client that connects before QEMU has greeted the broker waits for
 * the greeting; when QEMU goes away its shared clients are closed, as
 * QEMU's own would be.
 */
#include "config.h"

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker/core/conf.h"
#include "broker/core/log.h"
#include "broker/core/loop.h"
#include "broker/session/client.h"
#include "broker/session/ctl.h"
#include "broker/session/listen.h"
#include "broker/session/policy.h"
#include "broker/session/share.h"
#include "proto/qmp_out.h"

struct share {
	struct vm		*vm;
	struct lsn		*lsn;
	LIST_HEAD(, client)	 clients;
};

/* The VM's share, in its slot (vm_slot) */
static int	share_key = -1;
static share_exec_fn *share_exec = req_vm_execute;

void
share_set_exec(share_exec_fn *fn)
{
	share_exec = fn;
}

static void
share_accept(int fd, void *arg)
{
	struct share	*s = arg;
	struct client	*c;
	struct peer	 p;

	if (ctl_admit(fd, &p, lsn_path(s->lsn)) == -1)
		return;
	if (!policy_vm_visible(&p, vm_name(s->vm))) {
		log_warn("%s: refused uid %u gid %u pid %ld (vm-allow, "
		    "policy)",
		    lsn_path(s->lsn), (unsigned)p.uid, (unsigned)p.gid,
		    (long)p.pid);
		peer_release(&p);
		ctl_refuse(fd, "Permission denied");
		return;
	}
	c = client_new(fd, CLIENT_SHARE, &p, s->vm);
	peer_release(&p);
	if (c == NULL) {
		ctl_refuse(fd, "out of memory");
		return;
	}
	c->share = s;
	LIST_INSERT_HEAD(&s->clients, c, share_entry);
	if (vm_state(s->vm) == MON_READY)
		client_greet(c);
}

static struct share *
share_open(struct vm *vm, struct qmp_error *err)
{
	struct share	*s;
	char		 path[128];

	if ((size_t)snprintf(path, sizeof path, "%s/vm/%s.qmp", conf.run_dir,
	    vm_name(vm)) >= sizeof path) {
		qmp_error_set(err, QMP_CLS_GENERIC,
		    "run dir path too long for %s", vm_name(vm));
		return (NULL);
	}
	if ((s = calloc(1, sizeof *s)) == NULL) {
		qmp_error_set(err, QMP_CLS_GENERIC, "out of memory");
		return (NULL);
	}
	s->vm = vm;
	LIST_INIT(&s->clients);
	s->lsn = lsn_open(path, 0660, conf.socket_gid, 0, share_accept, s,
	    err);
	if (s->lsn == NULL) {
		free(s);
		return (NULL);
	}
	return (s);
}

void
share_detach(struct client *c)
{
	LIST_REMOVE(c, share_entry);
	c->share = NULL;
}

int
share_adopt(struct client *c)
{
	struct share	*s;

	if (c->vm == NULL || (s = vm_slot(c->vm, share_key)) == NULL)
		return (-1);
	c->share = s;
	LIST_INSERT_HEAD(&s->clients, c, share_entry);
	return (0);
}

static void
share_close(struct share *s)
{
	struct client	*c;

	if (s == NULL)
		return;
	vm_slot_set(s->vm, share_key, NULL);
	while ((c = LIST_FIRST(&s->clients)) != NULL) {
		share_detach(c);
		c->vm = NULL;
		/* Commands in flight fail when the monitor goes; their
		   errors go out before the close. */
		client_shutdown_idle(c);
	}
	lsn_close(s->lsn);
	free(s);
}

const char *
share_path(const struct vm *vm)
{
	struct share	*s = vm_slot(vm, share_key);

	return (s != NULL ? lsn_path(s->lsn) : NULL);
}

/*
 * Opens or closes the VM's shared socket to match what the VM asked for
 * at vm-add, else vm-sockets. An orchestrator that only uses the control
 * socket can do without the socket file and the listening fd per VM: at
 * 10,000 VMs that is half of the broker's fds. A socket that could not
 * be opened is tried again on the next reload.
 */
void
share_sync(struct vm *vm)
{
	struct share		*s = vm_slot(vm, share_key);
	struct qmp_error	 e;
	int			 want;

	want = vm_share_pref(vm) == VM_SHARE_CONF ? conf.vm_sockets :
	    vm_share_pref(vm) == VM_SHARE_YES;
	if (want && s == NULL) {
		e.desc[0] = '\0';
		if ((s = share_open(vm, &e)) == NULL)
			log_warn("vm %s: no shared socket: %s", vm_name(vm),
			    e.desc);
		vm_slot_set(vm, share_key, s);
	} else if (!want && s != NULL)
		share_close(s);
}

static void
share_sync_one(struct vm *vm, void *arg)
{
	share_sync(vm);
}

void
share_sync_all(void)
{
	vm_foreach(share_sync_one, NULL);
}

/* ---- the VM observer ---- */

static void
share_vm_added(struct vm *vm, void *arg)
{
	share_sync(vm);
}

static void
share_vm_removing(struct vm *vm, void *arg)
{
	share_close(vm_slot(vm, share_key));
}

/* A client waiting for its greeting waits through connecting and
   negotiating; when QEMU goes, its greeted clients go as QEMU's own
   would. */
static void
share_vm_state(struct vm *vm, enum mon_state st, const char *why, void *arg)
{
	struct share	*s = vm_slot(vm, share_key);
	struct client	*c, *c1;

	if (s == NULL)
		return;
	if (st == MON_READY) {
		LIST_FOREACH(c, &s->clients, share_entry)
			client_greet(c);
	} else if (st == MON_DISCONNECTED) {
		LIST_FOREACH_SAFE(c, &s->clients, share_entry, c1) {
			if (c->greeted)
				client_shutdown_idle(c);
		}
	}
}

static void
share_vm_event(struct vm *vm, json_t *ev, void *arg)
{
	struct share	*s = vm_slot(vm, share_key);
	struct client	*c;
	char		*buf = NULL;
	size_t		 len;

	if (s == NULL)
		return;
	LIST_FOREACH(c, &s->clients, share_entry) {
		if (!c->negotiated)
			continue;
		if (buf == NULL && (buf = qmp_dump_qemu(ev, &len)) == NULL)
			return;
		client_send_event(c, buf, len, 0);
	}
	free(buf);
}

static const struct vm_observer share_observer = {
	share_vm_added,
	share_vm_removing,
	share_vm_state,
	share_vm_event,
};

void
share_init(void)
{
	if (share_key == -1)
		share_key = vm_slot_key();
	vm_observe(&share_observer, NULL);
}

void
share_request(struct req *r, struct client *c, const char *name,
    json_t *args)
{
	if (c->vm == NULL) {
		req_error(r, QMP_CLS_GENERIC, "The VM has been removed");
		return;
	}
	share_exec(r, c->vm, name, args);
}

/*
 * RUNDIR/vm is the broker's own (--vm-dir may not be it). A broker
 * killed with -9 leaves its sockets there, and one of a VM the registry
 * did not keep (a vm-add not yet saved, a vm-remove saved before its
 * socket went) would stay for good: at start, after the registry has
 * opened its VMs' sockets, every socket there that is no VM's goes.
 * Other files are not ours to judge.
 *
 * Whether something still listens on it does not matter, and asking
 * would be wrong: a child the dead broker was spawning (losetup,
 * qemu-nbd, a hook) holds a copy of every listening fd from its clone
 * until its exec closes them, and outlives the kill -9. A connect then
 * succeeds into that orphaned backlog, and the socket looked "live" to
 * this sweep and was kept for good (under valgrind, where that window
 * is long, test_crash_restart found it). No other broker listens here:
 * this one holds the control socket (checked live at ctl_open) and the
 * pid lock, and share_open replaces a VM's socket unasked too.
 */
void
share_sweep(void)
{
	char		 dir[128], path[256], name[128];
	struct dirent	*de;
	struct stat	 st;
	struct vm	*vm;
	const char	*own;
	DIR		*d;
	size_t		 len;

	if ((size_t)snprintf(dir, sizeof dir, "%s/vm", conf.run_dir) >=
	    sizeof dir || (d = opendir(dir)) == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		len = strlen(de->d_name);
		if (len <= 4 || len - 4 >= sizeof name ||
		    strcmp(de->d_name + len - 4, ".qmp") != 0)
			continue;
		if ((size_t)snprintf(path, sizeof path, "%s/%s", dir,
		    de->d_name) >= sizeof path)
			continue;
		memcpy(name, de->d_name, len - 4);
		name[len - 4] = '\0';
		if ((vm = vm_find(name)) != NULL &&
		    (own = share_path(vm)) != NULL && strcmp(own, path) == 0)
			continue;
		if (lstat(path, &st) == -1 || !S_ISSOCK(st.st_mode))
			continue;
		if (unlink(path) == -1)
			log_warn("unlink %s: %s", path, strerror(errno));
		else
			log_notice("removed %s: no VM of that name", path);
	}
	closedir(d);
}
