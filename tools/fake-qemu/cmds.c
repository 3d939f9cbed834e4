/*
 * The command table and the commands that are not about devices: status,
 * run state, fds (getfd/closefd, add-fd/remove-fd/query-fdsets), netdevs,
 * quit and the test-only x-fake-event. Error texts are QEMU 7.2's.
 */
#include "config.h"

#include <sys/ioctl.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <linux/if_tun.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools/fake-qemu/fake.h"

#define NETDEV_MAX_QUEUES	8

const char *
arg_str(json_t *args, const char *key, int required, struct qmp_error *err,
    int *bad)
{
	json_t	*v = args != NULL ? json_object_get(args, key) : NULL;

	*bad = 0;
	if (v == NULL) {
		if (required) {
			qmp_error_set(err, QMP_CLS_GENERIC,
			    "Parameter '%s' is missing", key);
			*bad = 1;
		}
		return (NULL);
	}
	if (!json_is_string(v)) {
		qmp_error_set(err, QMP_CLS_GENERIC,
		    "Invalid parameter type for '%s', expected: string", key);
		*bad = 1;
		return (NULL);
	}
	return (json_string_value(v));
}

int
arg_int(json_t *args, const char *key, int64_t *out, int *present,
    struct qmp_error *err)
{
	json_t	*v = args != NULL ? json_object_get(args, key) : NULL;

	*present = 0;
	if (v == NULL)
		return (0);
	if (!json_is_integer(v)) {
		qmp_error_set(err, QMP_CLS_GENERIC,
		    "Invalid parameter type for '%s', expected: integer", key);
		return (-1);
	}
	*present = 1;
	*out = json_integer_value(v);
	return (0);
}

int
arg_bool(json_t *args, const char *key, int *out, struct qmp_error *err)
{
	json_t	*v = args != NULL ? json_object_get(args, key) : NULL;

	if (v == NULL)
		return (0);
	if (!json_is_boolean(v)) {
		qmp_error_set(err, QMP_CLS_GENERIC,
		    "Invalid parameter type for '%s', expected: boolean", key);
		return (-1);
	}
	*out = json_is_true(v);
	return (0);
}

/* Refuse members a command does not know, as QEMU's visitor does. */
static int
args_only(json_t *args, const char *const *known, struct qmp_error *err)
{
	const char	*k;
	json_t		*v;
	size_t		 i;

	if (args == NULL)
		return (0);
	json_object_foreach(args, k, v) {
		for (i = 0; known[i] != NULL; i++) {
			if (strcmp(known[i], k) == 0)
				break;
		}
		if (known[i] == NULL) {
			qmp_error_set(err, QMP_CLS_GENERIC,
			    "Parameter '%s' is unexpected", k);
			return (-1);
		}
	}
	return (0);
}

/* yank: QEMU's out-of-band command; no yank instances here, so only an
   empty list is honoured (QEMU: "Instance ... not found" otherwise). */
static json_t *
cmd_yank(struct cmdctx *x, json_t *args, struct qmp_error *err)
{
	json_t	*inst = json_object_get(args, "instances");

	if (!json_is_array(inst)) {
		qmp_error_set(err, QMP_CLS_GENERIC, inst == NULL ?
		    "Parameter 'instances' is missing" : "Invalid parameter "
		    "type for 'instances', expected: array");
		return (NULL);
	}
	if (json_array_size(inst) > 0) {
		qmp_error_set(err, QMP_CLS_DEVNOTFOUND, "Instance not found");
		return (NULL);
	}
	return (json_object());
}

static json_t *
cmd_query_status(struct cmdctx *x, json_t *args, struct qmp_error *err)
{
	const char	*st;

	st = x->vm->running ? "running" : x->vm->inmigrate ? "inmigrate" :
	    mig_postmigrate(x->vm) ? "postmigrate" :
	    (x->vm->started ? "paused" : "prelaunch");
	return (json_pack("{s:s,s:b,s:b}", "status", st, "singlestep", 0,
	    "running", x->vm->running));
}

static json_t *
cmd_query_version(struct cmdctx *x, json_t *args, struct qmp_error *err)
{
	return (json_pack("{s:{s:i,s:i,s:i},s:s}", "qemu", "micro", 22,
	    "minor", 2, "major", 7, "package",
	    "Debian 1:7.2+dfsg-7+deb12u18+b3 (fake-qemu)"));
}

static json_t *
cmd_query_commands(struct cmdctx *x, json_t *args, struct qmp_error *err)
{
	return (cmd_list());
}

/* QEMU sends STOP/RESUME before the reply, and nothing on no change. */
static json_t *
cmd_stop(struct cmdctx *x, json_t *args, struct qmp_error *err)
{
	if (x->vm->running) {
		x->vm->running = 0;
		vm_event(x->vm, "STOP", NULL);
	}
	return (json_object());
}

static json_t *
cmd_cont(struct cmdctx *x, json_t *args, struct qmp_error *err)
{
	if (!x->vm->running) {
		x->vm->running = x->vm->started = 1;
		vm_event(x->vm, "RESUME", NULL);
	}
	return (json_object());
}

/* QEMU 7.2: SHUTDOWN, then the reply, then the socket goes away. */
static json_t *
cmd_quit(struct cmdctx *x, json_t *args, struct qmp_error *err)
{
	vm_event(x->vm, "SHUTDOWN", json_pack("{s:b,s:s}", "guest", 0,
	    "reason", "host-qmp-quit"));
	/* Set after the event went out: the connection closes once the
	   reply, queued next, is written. */
	x->vm->quitting = 1;
	return (json_object());
}

static json_t *
cmd_x_fake_event(struct cmdctx *x, json_t *args, struct qmp_error *err)
{
	static const char *const known[] = { "event", "data", NULL };
	const char	*name;
	json_t		*data;
	int		 bad;

	if (args_only(args, known, err) != 0)
		return (NULL);
	if ((name = arg_str(args, "event", 1, err, &bad)) == NULL)
		return (NULL);
	data = json_object_get(args, "data");
	if (data != NULL && !json_is_object(data)) {
		qmp_error_set(err, QMP_CLS_GENERIC,
		    "Invalid parameter type for 'data', expected: object");
		return (NULL);
	}
	vm_event(x->vm, name, data != NULL ? json_incref(data) : NULL);
	return (json_object());
}

/* ---- named fds (getfd/closefd), consumed by netdev_add ---- */

struct named_fd *
vm_named_fd(struct vm *vm, const char *name)
{
	size_t	i;

	for (i = 0; i < vm->nnfds; i++) {
		if (strcmp(vm->nfds[i].name, name) == 0)
			return (&vm->nfds[i]);
	}
	return (NULL);
}

/* monitor_get_fd(): the fd leaves the monitor's list with its new owner. */
int
vm_take_named_fd(struct vm *vm, const char *name)
{
	struct named_fd	*nf = vm_named_fd(vm, name);
	int		 fd;

	if (nf == NULL)
		return (-1);
	fd = nf->fd;
	free(nf->name);
	*nf = vm->nfds[--vm->nnfds];
	return (fd);
}

static json_t *
cmd_getfd(struct cmdctx *x, json_t *args, struct qmp_error *err)
{
	static const char *const known[] = { "fdname", NULL };
	struct named_fd	*nf;
	const char	*name;
	int		 fd, bad;

	if (args_only(args, known, err) != 0 ||
	    (name = arg_str(args, "fdname", 1, err, &bad)) == NULL)
		return (NULL);
	if ((fd = cmd_take_fd(x)) == -1) {
		qmp_error_set(err, QMP_CLS_GENERIC,
		    "No file descriptor supplied via SCM_RIGHTS");
		return (NULL);
	}
	if (isdigit((unsigned char)*name)) {
		close(fd);
		qmp_error_set(err, QMP_CLS_GENERIC, "Parameter 'fdname' "
		    "expects a name not starting with a digit");
		return (NULL);
	}
	/* Same name again: QEMU swaps the fd and closes the old one. */
	if ((nf = vm_named_fd(x->vm, name)) != NULL) {
		close(nf->fd);
		nf->fd = fd;
		return (json_object());
	}
	x->vm->nfds = xreallocarray(x->vm->nfds, x->vm->nnfds + 1,
	    sizeof *x->vm->nfds);
	x->vm->nfds[x->vm->nnfds].name = xstrdup(name);
	x->vm->nfds[x->vm->nnfds].fd = fd;
	x->vm->nnfds++;
	return (json_object());
}

static json_t *
cmd_closefd(struct cmdctx *x, json_t *args, struct qmp_error *err)
{
	static const char *const known[] = { "fdname", NULL };
	const char	*name;
	int		 fd, bad;

	if (args_only(args, known, err) != 0 ||
	    (name = arg_str(args, "fdname", 1, err, &bad)) == NULL)
		return (NULL);
	if ((fd = vm_take_named_fd(x->vm, name)) == -1) {
		qmp_error_set(err, QMP_CLS_GENERIC,
		    "File descriptor named '%s' not found", name);
		return (NULL);
	}
	close(fd);
	return (json_object());
}

/* ---- fd sets ---- */

struct fdset *
vm_fdset(struct vm *vm, int64_t id)
{
	size_t	i;

	for (i = 0; i < vm->nfdsets; i++) {
		if (vm->fdsets[i].id == id)
			return (&vm->fdsets[i]);
	}
	return (NULL);
}

/*
 * monitor_fdset_cleanup(): a removed fd, or any fd once no monitor is
 * connected and no dup is out, is closed only while the VM runs; an empty
 * set without dups goes away. So on a paused VM, remove-fd leaves the fd
 * listed in query-fdsets, exactly as QEMU 7.2 does.
 */
void
vm_fdset_cleanup(struct vm *vm)
{
	struct fdset	*fs;
	size_t		 i, j;

	for (i = 0; i < vm->nfdsets; ) {
		fs = &vm->fdsets[i];
		for (j = 0; j < fs->nfds; ) {
			if ((fs->fds[j].removed ||
			    (fs->dups == 0 && vm->conn == NULL)) &&
			    vm->running) {
				close(fs->fds[j].fd);
				free(fs->fds[j].opaque);
				fs->fds[j] = fs->fds[--fs->nfds];
			} else
				j++;
		}
		if (fs->nfds == 0 && fs->dups == 0) {
			free(fs->fds);
			vm->fdsets[i] = vm->fdsets[--vm->nfdsets];
		} else
			i++;
	}
}

static json_t *
cmd_add_fd(struct cmdctx *x, json_t *args, struct qmp_error *err)
{
	static const char *const known[] = { "fdset-id", "opaque", NULL };
	struct vm	*vm = x->vm;
	struct fdset	*fs;
	const char	*opaque;
	int64_t		 id = 0;
	int		 present, fd, bad;
	size_t		 i;

	if (args_only(args, known, err) != 0 ||
	    arg_int(args, "fdset-id", &id, &present, err) != 0)
		return (NULL);
	opaque = arg_str(args, "opaque", 0, err, &bad);
	if (bad)
		return (NULL);
	if ((fd = cmd_take_fd(x)) == -1) {
		qmp_error_set(err, QMP_CLS_GENERIC,
		    "No file descriptor supplied via SCM_RIGHTS");
		return (NULL);
	}
	if (present && id < 0) {
		close(fd);
		qmp_error_set(err, QMP_CLS_GENERIC, "Parameter 'fdset-id' "
		    "expects a non-negative value");
		return (NULL);
	}
	if (!present) {
		/* The lowest free id, as monitor_fdset_add_fd(). */
		for (id = 0; vm_fdset(vm, id) != NULL; id++)
			;
	}
	if ((fs = vm_fdset(vm, id)) == NULL) {
		vm->fdsets = xreallocarray(vm->fdsets, vm->nfdsets + 1,
		    sizeof *vm->fdsets);
		fs = &vm->fdsets[vm->nfdsets++];
		memset(fs, 0, sizeof *fs);
		fs->id = id;
	}
	fs->fds = xreallocarray(fs->fds, fs->nfds + 1, sizeof *fs->fds);
	fs->fds[fs->nfds].fd = fd;
	fs->fds[fs->nfds].opaque = opaque != NULL ? xstrdup(opaque) : NULL;
	fs->fds[fs->nfds].removed = 0;
	fs->nfds++;
	(void)i;
	return (json_pack("{s:i,s:I}", "fd", fd, "fdset-id", (json_int_t)id));
}

static json_t *
cmd_remove_fd(struct cmdctx *x, json_t *args, struct qmp_error *err)
{
	static const char *const known[] = { "fdset-id", "fd", NULL };
	struct fdset	*fs;
	int64_t		 id = 0, fd = -1;
	int		 has_id, has_fd, found = 0;
	size_t		 i;

	if (args_only(args, known, err) != 0 ||
	    arg_int(args, "fdset-id", &id, &has_id, err) != 0 ||
	    arg_int(args, "fd", &fd, &has_fd, err) != 0)
		return (NULL);
	if (!has_id) {
		qmp_error_set(err, QMP_CLS_GENERIC,
		    "Parameter 'fdset-id' is missing");
		return (NULL);
	}
	if ((fs = vm_fdset(x->vm, id)) != NULL) {
		for (i = 0; i < fs->nfds; i++) {
			if (has_fd && fs->fds[i].fd != fd)
				continue;
			fs->fds[i].removed = 1;
			found = 1;
		}
	}
	if (!found) {
		if (has_fd)
			qmp_error_set(err, QMP_CLS_GENERIC, "File descriptor "
			    "named 'fdset-id:%lld, fd:%lld' not found",
			    (long long)id, (long long)fd);
		else
			qmp_error_set(err, QMP_CLS_GENERIC, "File descriptor "
			    "named 'fdset-id:%lld' not found", (long long)id);
		return (NULL);
	}
	vm_fdset_cleanup(x->vm);
	return (json_object());
}

/* Newest set first, fds in the order added: what QEMU 7.2 lists. */
static json_t *
cmd_query_fdsets(struct cmdctx *x, json_t *args, struct qmp_error *err)
{
	json_t		*list = json_array(), *fds, *fd;
	struct fdset	*fs;
	size_t		 i, j;

	for (i = x->vm->nfdsets; i-- > 0; ) {
		fs = &x->vm->fdsets[i];
		fds = json_array();
		for (j = 0; j < fs->nfds; j++) {
			fd = json_pack("{s:i}", "fd", fs->fds[j].fd);
			if (fs->fds[j].opaque != NULL)
				json_object_set_new(fd, "opaque",
				    json_string(fs->fds[j].opaque));
			json_array_append_new(fds, fd);
		}
		json_array_append_new(list, json_pack("{s:o,s:I}", "fds", fds,
		    "fdset-id", (json_int_t)fs->id));
	}
	return (list);
}

/* ---- netdevs: tap over passed fds ---- */

struct netdev *
vm_netdev(struct vm *vm, const char *id)
{
	size_t	i;

	for (i = 0; i < vm->nnetdevs; i++) {
		if (strcmp(vm->netdevs[i].id, id) == 0)
			return (&vm->netdevs[i]);
	}
	return (NULL);
}

/* "a:b:c" -> names; returns the count or -1 if too many. */
static int
split_names(const char *s, char names[][64], int max)
{
	int		 n = 0;
	const char	*e;
	size_t		 len;

	for (;;) {
		e = strchr(s, ':');
		len = e != NULL ? (size_t)(e - s) : strlen(s);
		if (n == max || len >= 64)
			return (-1);
		memcpy(names[n], s, len);
		names[n++][len] = '\0';
		if (e == NULL)
			return (n);
		s = e + 1;
	}
}

static json_t *
cmd_netdev_add(struct cmdctx *x, json_t *args, struct qmp_error *err)
{
	static const char *const known[] = { "type", "id", "fd", "fds",
	    "vhost", "vhostfd", "vhostfds", "queues", "vhostforce",
	    "vnet_hdr", "sndbuf", "poll-us", NULL };
	struct vm	*vm = x->vm;
	struct netdev	*nd;
	const char	*type, *id, *fd, *fds, *vfd, *vfds;
	char		 names[2 * NETDEV_MAX_QUEUES][64];
	int		 fdv[2 * NETDEV_MAX_QUEUES];
	int		 nt = 0, nv = 0, i, bad;
	struct ifreq	 ifr;

	if ((type = arg_str(args, "type", 1, err, &bad)) == NULL ||
	    (id = arg_str(args, "id", 1, err, &bad)) == NULL)
		return (NULL);
	if (strcmp(type, "tap") != 0) {
		qmp_error_set(err, QMP_CLS_GENERIC, "fake-qemu: netdev type "
		    "'%s' is not modelled (only tap)", type);
		return (NULL);
	}
	if (args_only(args, known, err) != 0)
		return (NULL);
	fd = arg_str(args, "fd", 0, err, &bad);
	if (bad) return (NULL);
	fds = arg_str(args, "fds", 0, err, &bad);
	if (bad) return (NULL);
	vfd = arg_str(args, "vhostfd", 0, err, &bad);
	if (bad) return (NULL);
	vfds = arg_str(args, "vhostfds", 0, err, &bad);
	if (bad) return (NULL);
	if (vm_netdev(vm, id) != NULL) {
		qmp_error_set(err, QMP_CLS_GENERIC, "Duplicate ID '%s'", id);
		return (NULL);
	}
	if (fd == NULL && fds == NULL) {
		qmp_error_set(err, QMP_CLS_GENERIC, "fake-qemu: tap needs "
		    "'fd' or 'fds' (it cannot open /dev/net/tun itself)");
		return (NULL);
	}
	if (fd != NULL && fds != NULL) {
		qmp_error_set(err, QMP_CLS_GENERIC, "ifname=, script=, "
		    "downscript=, vnet_hdr=, helper=, queues=, fds=, and "
		    "vhostfds= are invalid with fd=");
		return (NULL);
	}
	if ((nt = split_names(fd != NULL ? fd : fds, names,
	    NETDEV_MAX_QUEUES)) < 0 ||
	    (vfd != NULL || vfds != NULL ? (nv = split_names(vfd != NULL ?
	    vfd : vfds, names + nt, NETDEV_MAX_QUEUES)) : 0) < 0) {
		qmp_error_set(err, QMP_CLS_GENERIC, "fake-qemu: too many fds");
		return (NULL);
	}
	if (nv != 0 && nv != nt) {
		qmp_error_set(err, QMP_CLS_GENERIC, "The number of fds passed "
		    "does not match the number of vhostfds passed");
		return (NULL);
	}
	/* Every name must have been passed with getfd; check all before
	   consuming any so a failure leaves the fds where they were. */
	for (i = 0; i < nt + nv; i++) {
		if (vm_named_fd(vm, names[i]) == NULL) {
			qmp_error_set(err, QMP_CLS_GENERIC, "File descriptor "
			    "named '%s' has not been found", names[i]);
			return (NULL);
		}
	}
	/* QEMU probes each tap fd with TUNGETIFF (tap_probe_vnet_hdr). */
	for (i = 0; i < nt; i++) {
		int tfd = vm_named_fd(vm, names[i])->fd;
		memset(&ifr, 0, sizeof ifr);
		if (ioctl(tfd, TUNGETIFF, &ifr) != 0) {
			qmp_error_set(err, QMP_CLS_GENERIC, "Unable to query "
			    "TUNGETIFF on FD %d: %s", tfd, strerror(errno));
			return (NULL);
		}
	}
	for (i = 0; i < nt + nv; i++)
		fdv[i] = vm_take_named_fd(vm, names[i]);
	vm->netdevs = xreallocarray(vm->netdevs, vm->nnetdevs + 1,
	    sizeof *vm->netdevs);
	nd = &vm->netdevs[vm->nnetdevs++];
	memset(nd, 0, sizeof *nd);
	nd->id = xstrdup(id);
	nd->nfds = nt + nv;
	nd->fds = xcalloc(nd->nfds, sizeof *nd->fds);
	memcpy(nd->fds, fdv, nd->nfds * sizeof *fdv);
	return (json_object());
}

static void
netdev_free(struct netdev *nd)
{
	size_t	i;

	for (i = 0; i < nd->nfds; i++)
		close(nd->fds[i]);
	free(nd->fds);
	free(nd->id);
	free(nd->user);
}

static json_t *
cmd_netdev_del(struct cmdctx *x, json_t *args, struct qmp_error *err)
{
	static const char *const known[] = { "id", NULL };
	struct vm	*vm = x->vm;
	struct netdev	*nd;
	const char	*id;
	int		 bad;

	if (args_only(args, known, err) != 0 ||
	    (id = arg_str(args, "id", 1, err, &bad)) == NULL)
		return (NULL);
	if ((nd = vm_netdev(vm, id)) == NULL) {
		qmp_error_set(err, QMP_CLS_DEVNOTFOUND,
		    "Device '%s' not found", id);
		return (NULL);
	}
	/* QEMU lets a NIC lose its peer; the NIC stays. */
	netdev_free(nd);
	*nd = vm->netdevs[--vm->nnetdevs];
	return (json_object());
}

void
vm_free_state(struct vm *vm)
{
	size_t	i, j;

	pci_free(vm);
	blk_free(vm);
	mig_free(vm);
	cm_free(vm);
	for (i = 0; i < vm->nnetdevs; i++)
		netdev_free(&vm->netdevs[i]);
	free(vm->netdevs);
	vm->netdevs = NULL;
	vm->nnetdevs = 0;
	for (i = 0; i < vm->nnfds; i++) {
		close(vm->nfds[i].fd);
		free(vm->nfds[i].name);
	}
	free(vm->nfds);
	vm->nfds = NULL;
	vm->nnfds = 0;
	for (i = 0; i < vm->nfdsets; i++) {
		for (j = 0; j < vm->fdsets[i].nfds; j++) {
			close(vm->fdsets[i].fds[j].fd);
			free(vm->fdsets[i].fds[j].opaque);
		}
		free(vm->fdsets[i].fds);
	}
	free(vm->fdsets);
	vm->fdsets = NULL;
	vm->nfdsets = 0;
}

/* What query-commands lists: exactly what is implemented here. */
static const struct cmd_entry cmd_table[] = {
	{ "qmp_capabilities",		NULL,			0 },
	{ "query-commands",		cmd_query_commands,	1 },
	{ "query-status",		cmd_query_status,	1 },
	{ "yank",			cmd_yank,		0 },
	{ "query-version",		cmd_query_version,	1 },
	{ "stop",			cmd_stop,		1 },
	{ "cont",			cmd_cont,		1 },
	{ "quit",			cmd_quit,		1 },
	{ "getfd",			cmd_getfd,		0 },
	{ "closefd",			cmd_closefd,		0 },
	{ "add-fd",			cmd_add_fd,		0 },
	{ "remove-fd",			cmd_remove_fd,		0 },
	{ "query-fdsets",		cmd_query_fdsets,	1 },
	{ "netdev_add",			cmd_netdev_add,		0 },
	{ "netdev_del",			cmd_netdev_del,		0 },
	{ "device_add",			pci_device_add,		0 },
	{ "device_del",			pci_device_del,		0 },
	{ "query-pci",			pci_query_pci,		1 },
	{ "object-add",			cm_object_add,		0 },
	{ "object-del",			cm_object_del,		0 },
	{ "query-hotpluggable-cpus",	cm_query_cpus,		1 },
	{ "query-memory-devices",	cm_query_memdevs,	1 },
	{ "qom-get",			cm_qom_get,		0 },
	{ "qom-set",			cm_qom_set,		0 },
	{ "query-kvm",			cm_query_kvm,		1 },
	{ "qom-list",			pci_qom_list,		0 },
	{ "blockdev-add",		blk_add,		0 },
	{ "blockdev-del",		blk_del,		0 },
	{ "query-block",		blk_query_block,	1 },
	{ "query-named-block-nodes",	blk_query_nodes,	0 },
	{ "x-fake-event",		cmd_x_fake_event,	0 },
	{ "migrate",			mig_migrate,		0 },
	{ "migrate-incoming",		mig_incoming,		0 },
	{ "migrate_cancel",		mig_cancel,		1 },
	{ "migrate-start-postcopy",	mig_start_postcopy,	1 },
	{ "migrate-pause",		mig_pause,		1 },
	{ "migrate-recover",		mig_recover,		0 },
	{ "query-migrate",		mig_query,		1 },
	{ "migrate-set-capabilities",	mig_set_caps,		0 },
	{ "migrate-set-parameters",	mig_set_params,		0 },
	{ "query-migrate-parameters",	mig_query_params,	1 },
};

const struct cmd_entry *
cmd_find(const char *name)
{
	size_t	i;

	for (i = 0; i < sizeof cmd_table / sizeof cmd_table[0]; i++) {
		if (strcmp(cmd_table[i].name, name) == 0)
			return (&cmd_table[i]);
	}
	return (NULL);
}

json_t *
cmd_list(void)
{
	json_t	*list = json_array();
	size_t	 i;

	for (i = 0; i < sizeof cmd_table / sizeof cmd_table[0]; i++)
		json_array_append_new(list, json_pack("{s:s}", "name",
		    cmd_table[i].name));
	return (list);
}
