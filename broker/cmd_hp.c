/*
 * Hotplug commands of the control socket: nic-add, nic-del, disk-add,
 * disk-del, query-pci-slots, has-device.
 *
 * This file turns requests into hp operations: it validates arguments,
 * opens (or proves) the fds, and wires hp to the VM registry (vm_execute,
 * vm_listen), the journal and the subscribers. The sequences themselves
 * live in hv/hp.c.
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

#include "broker/broker.h"
#include "broker/cmd.h"
#include "broker/cmd_hp.h"
#include "broker/conf.h"
#include "broker/journal.h"
#include "broker/sub.h"
#include "broker/vm.h"
#include "disk/imgpath.h"
#include "disk/uri.h"
#include "hv/hp.h"
#include "hv/pci.h"
#include "hv/tap.h"

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

/* --- hp_ops over the VM registry ------------------------------------------ */

struct hp_call {
	hp_reply_fn	*cb;
	void		*arg;
};

static void
hpv_reply(struct vm *vm, json_t *ret, const struct qmp_error *err, void *arg)
{
	struct hp_call	*c = arg;

	c->cb(ret, err, c->arg);
	free(c);
}

static void
hpv_execute(void *ctx, const char *cmd, json_t *args, const int *fds,
    size_t nfds, hp_reply_fn *cb, void *arg)
{
	struct hpv	*h = ctx;
	struct hp_call	*c;

	if ((c = malloc(sizeof *c)) == NULL) {
		/* vm_execute's contract forbids an inline reply, and
		   without memory there is no deferring: give up loudly */
		log_err("hotplug: out of memory for %s", cmd);
		json_decref(args);
		return;
	}
	c->cb = cb;
	c->arg = arg;
	vm_execute(h->vm, cmd, args, fds, nfds, hpv_reply, c);
}

static bool
hpv_has_command(void *ctx, const char *cmd)
{
	return (vm_has_command(((struct hpv *)ctx)->vm, cmd));
}

static bool
hpv_ready(void *ctx)
{
	return (vm_state(((struct hpv *)ctx)->vm) == MON_READY);
}

static int
hpv_journal(void *ctx, const char *id, const json_t *rec)
{
	struct hpv	*h = ctx;
	char		 err[512];

	if (journal_write(conf.state_dir, "hotplug", h->name, id, rec, err,
	    sizeof err) != 0) {
		log_err("hotplug journal for %s/%s: %s", h->name, id, err);
		return (-1);
	}
	return (0);
}

static void
hpv_unplugged(void *ctx, const char *id)
{
	struct hpv	*h = ctx;

	sub_publish(h->name, "DEVICE_UNPLUGGED", json_pack("{s:s, s:s}",
	    "vm", h->name, "id", id));
}

static void
hpv_log(void *ctx, int prio, const char *msg)
{
	log_msg(prio, "vm %s: %s", ((struct hpv *)ctx)->name, msg);
}

static const struct hp_ops hpv_ops = {
	hpv_execute, hpv_has_command, hpv_ready, hpv_journal, hpv_unplugged,
	hpv_log,
};

static void
hpv_event(struct vm *vm, json_t *event, void *arg)
{
	struct hpv	*h = arg;

	hp_vm_event(h->hp, event);
}

static void
hpv_gone(struct vm *vm, void *arg)
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

static struct hpv *
hpv_get(struct vm *vm)
{
	struct hpv	*h;

	cmd_hp_init();
	for (h = hpv_list; h != NULL; h = h->next)
		if (h->vm == vm)
			return (h);
	if ((h = calloc(1, sizeof *h)) == NULL)
		return (NULL);
	h->vm = vm;
	snprintf(h->name, sizeof h->name, "%s", vm_name(vm));
	h->hp = hp_vm_new(broker_base, &hpv_ops, h, conf.unplug_timeout_ms);
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

/* --- requests -------------------------------------------------------------- */

static void
hp_req_done(json_t *ret, const struct qmp_error *err, void *arg)
{
	struct req	*r = arg;

	if (err != NULL)
		req_error_qmp(r, err);
	else
		req_reply(r, ret);
}

static struct hpv *
hp_req_vm(struct req *r, const char *name)
{
	struct vm	*vm;
	struct hpv	*h;

	if ((vm = vm_find(name)) == NULL) {
		req_error(r, QMP_CLS_GENERIC, "unknown VM '%s'", name);
		return (NULL);
	}
	if ((h = hpv_get(vm)) == NULL) {
		req_error(r, QMP_CLS_GENERIC, "out of memory");
		return (NULL);
	}
	return (h);
}

/*
 * hp_req_vm() for an operation on one device. An interrupted operation on
 * that id, from before a restart, is reconciled from a timer once its VM
 * is ready; until then it is still in progress: a new add could otherwise
 * build the backend that the old record's cleanup then deletes (the
 * backend names derive from the id), leaving a device without its tap.
 */
static struct hpv *
hp_req_dev(struct req *r, const char *name, const char *id)
{
	struct hp_stash	*s;

	for (s = stash_list; s != NULL; s = s->next) {
		if (strcmp(s->vm, name) == 0 && strcmp(s->id, id) == 0) {
			req_error(r, QMP_CLS_GENERIC, "an operation on device "
			    "'%s' is already in progress (interrupted by a "
			    "broker restart, being reconciled)", id);
			return (NULL);
		}
	}
	return (hp_req_vm(r, name));
}

/* bus/addr as the client gave them; -1 on a bad addr (request done). */
static int
hp_req_place(struct req *r, const char *bus, json_t *addr, char *busbuf,
    size_t buslen, int *slot)
{
	struct qmp_error	err;

	*slot = -1;
	busbuf[0] = '\0';
	if (bus != NULL) {
		if (strlen(bus) >= buslen) {
			req_error(r, QMP_CLS_GENERIC, "bus name too long");
			return (-1);
		}
		memcpy(busbuf, bus, strlen(bus) + 1);
	}
	if (addr != NULL && (*slot = pci_parse_addr(addr, &err)) < 0) {
		req_error_qmp(r, &err);
		return (-1);
	}
	return (0);
}

static int
hp_copy(struct req *r, const char *what, const char *s, char *buf,
    size_t len)
{
	buf[0] = '\0';
	if (s == NULL)
		return (0);
	if (strlen(s) >= len) {
		req_error(r, QMP_CLS_GENERIC, "'%s' too long", what);
		return (-1);
	}
	memcpy(buf, s, strlen(s) + 1);
	return (0);
}

static void
cmd_nic_add(struct req *r, json_t *args)
{
	const char		*vmname, *id, *mac = NULL, *driver = NULL;
	const char		*ifname = NULL, *bus = NULL;
	json_int_t		 queues = 1;
	int			 vhost = 0;
	json_t			*addr = NULL;
	struct hp_nic		 nic;
	struct qmp_error	 err;
	struct hpv		*h;
	size_t			 i, want;

	if (req_unpack(r, args, "{s:s, s:s, s?s, s?s, s?I, s?b, s?s, s?s, "
	    "s?o}", "vm", &vmname, "id", &id, "mac", &mac, "driver", &driver,
	    "queues", &queues, "vhost", &vhost, "ifname", &ifname, "bus", &bus,
	    "addr", &addr) != 0)
		return;
	if (queues < 1 || queues > TAP_MAX_QUEUES) {
		req_error(r, QMP_CLS_GENERIC, "'queues' must be 1..%d",
		    TAP_MAX_QUEUES);
		return;
	}
	if ((h = hp_req_dev(r, vmname, id)) == NULL)
		return;
	memset(&nic, 0, sizeof nic);
	for (i = 0; i < HP_MAX_FDS; i++)
		nic.fds[i] = -1;
	if (hp_copy(r, "id", id, nic.id, sizeof nic.id) != 0 ||
	    hp_copy(r, "mac", mac, nic.mac, sizeof nic.mac) != 0 ||
	    hp_copy(r, "driver", driver, nic.driver, sizeof nic.driver) != 0 ||
	    hp_req_place(r, bus, addr, nic.bus, sizeof nic.bus,
	    &nic.slot) != 0)
		return;
	nic.queues = (size_t)queues;
	nic.vhost = vhost != 0;
	want = nic.vhost ? 2 * nic.queues : nic.queues;

	if (ifname != NULL) {
		if (req_nfds(r) != 0) {
			req_error(r, QMP_CLS_GENERIC, "give either 'ifname' "
			    "or tap fds, not both");
			return;
		}
		if (tap_open(ifname, nic.queues, nic.vhost, nic.fds,
		    &err) != 0) {
			req_error_qmp(r, &err);
			return;
		}
	} else {
		if (req_nfds(r) != want) {
			req_error(r, QMP_CLS_GENERIC, "nic-add needs 'ifname' "
			    "or %zu fd(s) attached (%zu tap%s), got %zu",
			    want, nic.queues, nic.vhost ? ", then as many "
			    "vhost-net" : "", req_nfds(r));
			return;
		}
		/* prove every fd before taking any: a refusal leaves them
		   with the request, which closes them */
		for (i = 0; i < want; i++) {
			int fd = req_take_fd(r, i);

			nic.fds[i] = fd;
		}
		for (i = 0; i < want; i++) {
			if ((i < nic.queues ? tap_check_fd(nic.fds[i],
			    nic.queues, NULL, 0, &err) :
			    tap_check_vhost_fd(nic.fds[i], &err)) != 0) {
				for (i = 0; i < want; i++)
					close(nic.fds[i]);
				req_error_qmp(r, &err);
				return;
			}
		}
	}
	nic.nfds = want;
	hp_nic_add(h->hp, &nic, hp_req_done, r);
}

/* Opens a local image after proving it lies under the image roots. */
static int
hp_open_image(const char *src, bool readonly, int *fdp, bool *blk,
    struct qmp_error *err)
{
	char		 resolved[PATH_MAX];
	struct stat	 st;
	int		 fd;

	if (img_path_check(conf.image_roots, conf.n_image_roots, src,
	    resolved, sizeof resolved, err) != 0)
		return (-1);
	/* O_NONBLOCK: should the path have turned into a FIFO since the
	   check, the open must not hang the loop */
	fd = open(resolved, (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC |
	    O_NOCTTY | O_NONBLOCK);
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

static void
cmd_disk_add(struct req *r, json_t *args)
{
	const char		*vmname, *id, *source = NULL, *format = NULL;
	const char		*driver = NULL, *bus = NULL;
	int			 readonly = 0, fd, acc;
	json_t			*addr = NULL, *node = NULL;
	struct hp_disk		 disk;
	struct qmp_error	 err;
	struct stat		 st;
	struct hpv		*h;

	if (req_unpack(r, args, "{s:s, s:s, s?s, s?s, s?b, s?s, s?s, s?o}",
	    "vm", &vmname, "id", &id, "source", &source, "format", &format,
	    "readonly", &readonly, "driver", &driver, "bus", &bus, "addr",
	    &addr) != 0)
		return;
	if ((h = hp_req_dev(r, vmname, id)) == NULL)
		return;
	memset(&disk, 0, sizeof disk);
	disk.fd = -1;
	if (hp_copy(r, "id", id, disk.id, sizeof disk.id) != 0 ||
	    hp_copy(r, "format", format, disk.format,
	    sizeof disk.format) != 0 ||
	    hp_copy(r, "driver", driver, disk.driver,
	    sizeof disk.driver) != 0 ||
	    hp_req_place(r, bus, addr, disk.bus, sizeof disk.bus,
	    &disk.slot) != 0)
		return;
	disk.readonly = readonly != 0;

	if (req_nfds(r) > 1 || (req_nfds(r) == 1) == (source != NULL)) {
		req_error(r, QMP_CLS_GENERIC, "disk-add takes either "
		    "'source' or one fd attached");
		return;
	}
	if (req_nfds(r) == 1) {
		fd = req_take_fd(r, 0);
		if (fstat(fd, &st) != 0 || (!S_ISREG(st.st_mode) &&
		    !S_ISBLK(st.st_mode))) {
			close(fd);
			req_error(r, QMP_CLS_GENERIC, "the fd attached is not "
			    "a regular file or a block device");
			return;
		}
		acc = fcntl(fd, F_GETFL) & O_ACCMODE;
		if (!disk.readonly && acc != O_RDWR) {
			close(fd);
			req_error(r, QMP_CLS_GENERIC, "the fd attached is not "
			    "open read-write (say readonly: true)");
			return;
		}
		disk.fd = fd;
		disk.blkdev = S_ISBLK(st.st_mode);
	} else {
		switch (uri_parse(source, &node, &err)) {
		case URI_BAD:
			req_error_qmp(r, &err);
			return;
		case URI_NET:
			disk.node = node;
			break;
		case URI_LOCAL:
			if (hp_open_image(source, disk.readonly, &disk.fd,
			    &disk.blkdev, &err) != 0) {
				req_error_qmp(r, &err);
				return;
			}
			break;
		}
	}
	hp_disk_add(h->hp, &disk, hp_req_done, r);
}

static void
cmd_dev_del(struct req *r, json_t *args, enum hp_kind kind)
{
	const char	*vmname, *id;
	struct hpv	*h;

	if (req_unpack(r, args, "{s:s, s:s}", "vm", &vmname, "id", &id) != 0)
		return;
	if ((h = hp_req_dev(r, vmname, id)) == NULL)
		return;
	hp_del(h->hp, kind, id, hp_req_done, r);
}

static void
cmd_nic_del(struct req *r, json_t *args)
{
	cmd_dev_del(r, args, HP_NIC);
}

static void
cmd_disk_del(struct req *r, json_t *args)
{
	cmd_dev_del(r, args, HP_DISK);
}

static void
cmd_query_slots(struct req *r, json_t *args)
{
	const char	*vmname;
	struct hpv	*h;

	if (req_unpack(r, args, "{s:s}", "vm", &vmname) != 0)
		return;
	if ((h = hp_req_vm(r, vmname)) == NULL)
		return;
	hp_slots(h->hp, hp_req_done, r);
}

static void
cmd_has_device(struct req *r, json_t *args)
{
	const char	*vmname, *id;
	struct hpv	*h;

	if (req_unpack(r, args, "{s:s, s:s}", "vm", &vmname, "id", &id) != 0)
		return;
	if ((h = hp_req_vm(r, vmname)) == NULL)
		return;
	hp_has_device(h->hp, id, hp_req_done, r);
}

const struct cmd_entry cmd_hp_table[] = {
	{ "nic-add", cmd_nic_add, CMD_FDS },
	{ "nic-del", cmd_nic_del, 0 },
	{ "disk-add", cmd_disk_add, CMD_FDS },
	{ "disk-del", cmd_disk_del, 0 },
	{ "query-pci-slots", cmd_query_slots, 0 },
	{ "has-device", cmd_has_device, 0 },
	{ NULL, NULL, 0 }
};

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
cmd_hp_init(void)
{
	struct timeval	tv = { 0, 0 };
	int		n;

	if (hp_inited)
		return;
	hp_inited = true;
	vm_on_remove(hpv_gone, NULL);
	n = journal_load(conf.state_dir, "hotplug", hp_stash_add,
	    hp_stash_bad, NULL);
	if (n < 0)
		log_err("hotplug journal: cannot read %s/hotplug",
		    conf.state_dir);
	else if (n > 0)
		log_notice("hotplug journal: %d interrupted operation(s) to "
		    "reconcile", n);
	stash_ev = evtimer_new(broker_base, hp_stash_tick, NULL);
	if (stash_ev != NULL && stash_list != NULL)
		evtimer_add(stash_ev, &tv);
}

void
cmd_hp_shutdown(void)
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
