/*
 * The VMs the registry does not save: those the config file names
 * (`vm NAME SOCKET`) and the NAME.qmp sockets in the watched --vm-dir
 * (inotify). Both are recomputed at start, and on reload or a change in
 * the directory. Apart from registry.c, which is the saved registry
 * (vms.json) and its atomic, grouped writes.
 */
#include "config.h"

#include <sys/types.h>
#include <sys/inotify.h>
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker/core/conf.h"
#include "broker/core/log.h"
#include "broker/core/loop.h"
#include "broker/vm/registry.h"
#include "broker/vm/registry_int.h"
#include "broker/vm/vm.h"

static int		 reg_inotify = -1;
static struct event	*reg_inotify_ev;

/* ---- config VMs ---- */

static void
reg_drop_origin(struct vm *vm, void *arg)
{
	unsigned	bit = *(unsigned *)arg;
	size_t		i;

	if (!(vm_origin(vm) & bit))
		return;
	if (bit == VM_ORIGIN_CONFIG) {
		for (i = 0; i < conf.n_vms; i++) {
			if (strcmp(conf.vms[i].name, vm_name(vm)) == 0)
				return;
		}
	}
	vm_set_origin(vm, vm_origin(vm) & ~bit);
	if (vm_origin(vm) == 0)
		vm_remove(vm);
}

/* Adds a VM from a source, or marks an existing one as also from it. */
static void
reg_adopt(const char *name, const char *socket, unsigned bit)
{
	struct vm		*vm;
	struct qmp_error	 e;

	if ((vm = vm_find(name)) != NULL) {
		if (strcmp(vm_socket(vm), socket) != 0)
			log_warn("vm %s: already known with socket %s, "
			    "ignoring %s", name, vm_socket(vm), socket);
		else
			vm_set_origin(vm, vm_origin(vm) | bit);
		return;
	}
	if (vm_add(name, socket, bit, VM_SHARE_CONF, &e) == NULL)
		log_warn("vm %s: not added: %s", name, e.desc);
}

void
registry_sync_config(void)
{
	unsigned	bit = VM_ORIGIN_CONFIG;
	size_t		i;

	vm_foreach(reg_drop_origin, &bit);
	for (i = 0; i < conf.n_vms; i++)
		reg_adopt(conf.vms[i].name, conf.vms[i].socket, bit);
}

/* ---- the watched directory ---- */

/* NAME.qmp -> NAME, if it makes a valid VM name. */
static int
reg_dir_name(const char *file, char *name, size_t namelen)
{
	size_t	len = strlen(file);

	if (len <= 4 || strcmp(file + len - 4, ".qmp") != 0 ||
	    len - 4 >= namelen)
		return (-1);
	memcpy(name, file, len - 4);
	name[len - 4] = '\0';
	return (conf_vm_name_valid(name) ? 0 : -1);
}

static void
reg_dir_add(const char *file)
{
	char		 name[VM_NAME_MAX + 1], path[PATH_MAX];
	struct stat	 st;

	if (reg_dir_name(file, name, sizeof name) == -1)
		return;
	if ((size_t)snprintf(path, sizeof path, "%s/%s", conf.vm_dir, file) >=
	    sizeof path)
		return;
	if (lstat(path, &st) == -1 || !S_ISSOCK(st.st_mode))
		return;
	reg_adopt(name, path, VM_ORIGIN_DIR);
}

static void
reg_dir_del(const char *file)
{
	char		 name[VM_NAME_MAX + 1];
	struct vm	*vm;
	unsigned	 bit = VM_ORIGIN_DIR;

	if (reg_dir_name(file, name, sizeof name) == -1)
		return;
	if ((vm = vm_find(name)) == NULL)
		return;
	/* Only the VM this file made. */
	if (strncmp(vm_socket(vm), conf.vm_dir, strlen(conf.vm_dir)) != 0)
		return;
	reg_drop_origin(vm, &bit);
}

static void
reg_dir_gone(struct vm *vm, void *arg)
{
	struct stat	st;
	unsigned	bit = VM_ORIGIN_DIR;

	if ((vm_origin(vm) & VM_ORIGIN_DIR) &&
	    (lstat(vm_socket(vm), &st) == -1 || !S_ISSOCK(st.st_mode)))
		reg_drop_origin(vm, &bit);
}

void
registry_sync_dir(void)
{
	DIR		*d;
	struct dirent	*de;

	if (conf.vm_dir == NULL)
		return;
	vm_foreach(reg_dir_gone, NULL);
	if ((d = opendir(conf.vm_dir)) == NULL) {
		log_warn("vm dir %s: %s", conf.vm_dir, strerror(errno));
		return;
	}
	while ((de = readdir(d)) != NULL)
		reg_dir_add(de->d_name);
	closedir(d);
}

static void
reg_inotify_cb(evutil_socket_t fd, short what, void *arg)
{
	char				 buf[16384]
	    __attribute__((aligned(__alignof__(struct inotify_event))));
	const struct inotify_event	*ie;
	ssize_t				 n;
	char				*p;
	int				 rescan = 0;

	for (;;) {
		if ((n = read(fd, buf, sizeof buf)) <= 0)
			break;
		for (p = buf; p < buf + n; p += sizeof *ie + ie->len) {
			ie = (const struct inotify_event *)p;
			if (ie->mask & IN_Q_OVERFLOW)
				rescan = 1;
			else if (ie->len == 0)
				continue;
			else if (ie->mask & (IN_CREATE | IN_MOVED_TO))
				reg_dir_add(ie->name);
			else if (ie->mask & (IN_DELETE | IN_MOVED_FROM))
				reg_dir_del(ie->name);
		}
	}
	if (rescan)
		registry_sync_dir();
}

int
reg_watch_dir(struct qmp_error *err)
{
	char	shared[PATH_MAX];

	if (conf.vm_dir == NULL)
		return (0);
	snprintf(shared, sizeof shared, "%s/vm", conf.run_dir);
	if (strcmp(shared, conf.vm_dir) == 0) {
		qmp_error_set(err, QMP_CLS_GENERIC,
		    "--vm-dir must not be RUNDIR/vm, where the broker's own "
		    "shared sockets live");
		return (-1);
	}
	reg_inotify = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (reg_inotify == -1 || inotify_add_watch(reg_inotify, conf.vm_dir,
	    IN_CREATE | IN_DELETE | IN_MOVED_TO | IN_MOVED_FROM |
	    IN_ONLYDIR) == -1) {
		qmp_error_set(err, QMP_CLS_GENERIC, "watch %s: %s", conf.vm_dir,
		    strerror(errno));
		return (-1);
	}
	reg_inotify_ev = event_new(loop_base, reg_inotify,
	    EV_READ | EV_PERSIST, reg_inotify_cb, NULL);
	if (reg_inotify_ev == NULL || event_add(reg_inotify_ev, NULL) == -1) {
		qmp_error_set(err, QMP_CLS_GENERIC, "out of memory");
		return (-1);
	}
	registry_sync_dir();
	return (0);
}

void
reg_unwatch_dir(void)
{
	if (reg_inotify_ev != NULL) {
		event_free(reg_inotify_ev);
		reg_inotify_ev = NULL;
	}
	if (reg_inotify != -1) {
		close(reg_inotify);
		reg_inotify = -1;
	}
}
