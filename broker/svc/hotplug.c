/*
 * Hotplug as a service: each VM's hp state (hv/hp.c) on the VM's
 * endpoint (vm_vmq), fed the VM's events (vm_listen), its hooks wired to
 * the journal, the publish bus and the log; and the reconciliation of a
 * journal left by a broker that died.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "broker/core/bus.h"
#include "broker/core/conf.h"
#include "broker/core/journal.h"
#include "broker/core/log.h"
#include "broker/core/loop.h"
#include "broker/svc/hotplug.h"
#include "broker/vm/vm.h"
#include "disk/imgpath.h"
#include "hv/hp.h"
#include "priv/priv.h"

/* One per VM that has seen a hotplug command. */
struct hpv {
	struct vm		*vm;
	char			 name[128];
	struct hp_vm		*hp;
	struct vm_listener	*listener;
	struct hpv		*next;
};

/* A journal record waiting for its VM to be ready after a restart. */
struct hp_stash {
	char		 vm[128];
	char		 id[128];
	json_t		*rec;
	bool		 running;
	bool		 told;
	struct hp_stash	*next;
};

static struct hpv	*hpv_list;
static struct hp_stash	*stash_list;
static struct event	*stash_ev;
static bool		 hp_inited;

/* --- what hp tells us ---------------------------------------------------- */

static int
hpv_journal(void *ctx, const char *id, const json_t *rec)
{
	struct hpv		*h = ctx;
	struct qmp_error	 err;

	if (journal_write(conf.state_dir, "hotplug", h->name, id, rec,
	    &err) != 0) {
		log_err("hotplug journal for %s/%s: %s", h->name, id,
		    err.desc);
		return (-1);
	}
	return (0);
}

static void
hpv_unplugged(void *ctx, const char *id)
{
	struct hpv	*h = ctx;

	bus_publish(h->name, "DEVICE_UNPLUGGED", json_pack("{s:s, s:s}",
	    "vm", h->name, "id", id));
}

static void
hpv_log(void *ctx, int prio, const char *msg)
{
	log_msg(prio, "vm %s: %s", ((struct hpv *)ctx)->name, msg);
}

static const struct hp_ops hpv_ops = {
	hpv_journal, hpv_unplugged, hpv_log,
};

static void
hpv_event(struct vm *vm, json_t *event, void *arg)
{
	struct hpv	*h = arg;

	hp_vm_event(h->hp, event);
}

static void
hpv_removing(struct vm *vm, void *arg)
{
	struct hpv	**pp, *h;

	for (pp = &hpv_list; (h = *pp) != NULL; pp = &h->next) {
		if (h->vm != vm)
			continue;
		*pp = h->next;
		vm_unlisten(h->listener);
		hp_vm_free(h->hp);
		free(h);
		return;
	}
}

static const struct vm_observer hpv_observer = {
	NULL,
	hpv_removing,
	NULL,
	NULL,
};

static struct hpv *
hpv_get(struct vm *vm)
{
	struct hpv	*h;

	hotplug_init();
	for (h = hpv_list; h != NULL; h = h->next)
		if (h->vm == vm)
			return (h);
	if ((h = calloc(1, sizeof *h)) == NULL)
		return (NULL);
	h->vm = vm;
	snprintf(h->name, sizeof h->name, "%s", vm_name(vm));
	h->hp = hp_vm_new(loop_base, vm_vmq(vm), &hpv_ops, h,
	    conf.unplug_timeout_ms);
	h->listener = vm_listen(vm, hpv_event, h);
	if (h->hp == NULL || h->listener == NULL) {
		if (h->listener != NULL)
			vm_unlisten(h->listener);
		hp_vm_free(h->hp);
		free(h);
		return (NULL);
	}
	h->next = hpv_list;
	hpv_list = h;
	return (h);
}

/* --- what the commands ask for ---------------------------------------------- */

/*
 * An interrupted operation on device id, from before a restart, is
 * reconciled from a timer once its VM is ready; until then it is still in
 * progress: a new add could otherwise build the backend that the old
 * record's cleanup then deletes (the backend names derive from the id),
 * leaving a device without its tap.
 */
struct hp_vm *
hotplug_vm(const char *name, const char *id, struct qmp_error *err)
{
	struct hp_stash	*s;
	struct vm	*vm;
	struct hpv	*h;

	for (s = stash_list; id != NULL && s != NULL; s = s->next) {
		if (strcmp(s->vm, name) == 0 && strcmp(s->id, id) == 0) {
			qmp_error_set(err, QMP_CLS_GENERIC, "an operation on "
			    "device '%s' is already in progress (interrupted "
			    "by a broker restart, being reconciled)", id);
			return (NULL);
		}
	}
	if ((vm = vm_find(name)) == NULL) {
		qmp_error_set(err, QMP_CLS_GENERIC, "unknown VM '%s'", name);
		return (NULL);
	}
	if ((h = hpv_get(vm)) == NULL) {
		qmp_error_set(err, QMP_CLS_GENERIC, "out of memory");
		return (NULL);
	}
	return (h->hp);
}

bool
hotplug_busy(const char *name)
{
	struct hp_stash	*s;
	struct hpv	*h;

	for (s = stash_list; s != NULL; s = s->next)
		if (strcmp(s->vm, name) == 0)
			return (true);
	for (h = hpv_list; h != NULL; h = h->next)
		if (strcmp(h->name, name) == 0 && hp_vm_busy(h->hp) > 0)
			return (true);
	return (false);
}

size_t
hotplug_busy_count(void)
{
	struct hp_stash	*s;
	struct hpv	*h;
	size_t		 n = 0;

	for (s = stash_list; s != NULL; s = s->next)
		n++;
	for (h = hpv_list; h != NULL; h = h->next)
		if (hp_vm_busy(h->hp) > 0)
			n++;
	return (n);
}

/* Opens a local image after proving it lies under the image roots. */
int
hotplug_open_image(const char *src, bool readonly, int *fdp, bool *blk,
    struct qmp_error *err)
{
	char		 resolved[PATH_MAX], target[PATH_MAX];
	struct stat	 st;
	int		 fd;

	if (img_path_check(conf.image_roots, conf.n_image_roots, src,
	    resolved, sizeof resolved, err) != 0)
		return (-1);
	if (priv_active()) {
		/* The helper follows no symlink at all: hand it the target
		   the check above proved to lie under a root (a link in the
		   last component). Swapped since: refused, not followed. */
		if (realpath(resolved, target) == NULL)
			snprintf(target, sizeof target, "%s", resolved);
		if (priv_image_open(target, readonly, &fd, err) != 0)
			return (-1);
	} else {
		/* O_NONBLOCK: should the path have turned into a FIFO since
		   the check, the open must not hang the loop */
		fd = open(resolved, (readonly ? O_RDONLY : O_RDWR) |
		    O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	}
	if (fd < 0) {
		qmp_error_set(err, QMP_CLS_GENERIC, "cannot open %s: %s", src,
		    strerror(errno));
		return (-1);
	}
	if (img_fd_check(conf.image_roots, conf.n_image_roots, fd, err) != 0 ||
	    fstat(fd, &st) != 0) {
		close(fd);
		return (-1);
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	*blk = S_ISBLK(st.st_mode);
	*fdp = fd;
	return (0);
}

/* --- restart reconciliation ---------------------------------------------- */

static void
hp_stash_done(json_t *ret, const struct qmp_error *err, void *arg)
{
	struct hp_stash	*s = arg, **pp;

	s->running = false;
	if (err != NULL) {
		log_warn("hotplug journal %s/%s: reconcile failed: %s; will "
		    "retry", s->vm, s->id, err->desc);
		return;
	}
	log_notice("hotplug journal %s/%s: %s", s->vm, s->id,
	    json_string_value(json_object_get(ret, "action")));
	json_decref(ret);
	for (pp = &stash_list; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	}
	json_decref(s->rec);
	free(s);
}

static void
hp_stash_tick(evutil_socket_t fd, short ev, void *arg)
{
	struct hp_stash	*s, *next;
	struct timeval	 tv = { 0, 250000 };
	struct vm	*vm;
	struct hpv	*h;

	for (s = stash_list; s != NULL; s = next) {
		next = s->next;
		if (s->running)
			continue;
		vm = vm_find(s->vm);
		if (vm == NULL || vm_state(vm) != MON_READY) {
			if (vm == NULL && !s->told) {
				log_warn("hotplug journal %s/%s: VM unknown; "
				    "kept until it is added", s->vm, s->id);
				s->told = true;
			}
			continue;
		}
		if ((h = hpv_get(vm)) == NULL)
			continue;
		s->running = true;
		hp_reconcile(h->hp, s->rec, hp_stash_done, s);
	}
	if (stash_list != NULL)
		evtimer_add(stash_ev, &tv);
}

static void
hp_stash_add(const char *vm, const char *id, json_t *rec, void *arg)
{
	struct hp_stash	*s;

	if ((s = calloc(1, sizeof *s)) == NULL)
		return;
	snprintf(s->vm, sizeof s->vm, "%s", vm);
	snprintf(s->id, sizeof s->id, "%s", id);
	s->rec = json_incref(rec);
	s->next = stash_list;
	stash_list = s;
}

static void
hp_stash_bad(const char *path, const char *why, void *arg)
{
	log_warn("hotplug journal %s: %s; set aside as .bad", path, why);
}

void
hotplug_init(void)
{
	struct timeval	tv = { 0, 0 };
	int		n;

	if (hp_inited)
		return;
	hp_inited = true;
	vm_observe(&hpv_observer, NULL);
	n = journal_load(conf.state_dir, "hotplug", hp_stash_add,
	    hp_stash_bad, NULL);
	if (n < 0)
		log_err("hotplug journal: cannot read %s/hotplug",
		    conf.state_dir);
	else if (n > 0)
		log_notice("hotplug journal: %d interrupted operation(s) to "
		    "reconcile", n);
	stash_ev = evtimer_new(loop_base, hp_stash_tick, NULL);
	if (stash_ev != NULL && stash_list != NULL)
		evtimer_add(stash_ev, &tv);
}

void
hotplug_shutdown(void)
{
	struct hp_stash	*s;
	struct hpv	*h;

	while ((h = hpv_list) != NULL) {
		hpv_list = h->next;
		vm_unlisten(h->listener);
		hp_vm_free(h->hp);
		free(h);
	}
	while ((s = stash_list) != NULL) {
		stash_list = s->next;
		json_decref(s->rec);
		free(s);
	}
	if (stash_ev != NULL)
		event_free(stash_ev);
	stash_ev = NULL;
	hp_inited = false;
}
