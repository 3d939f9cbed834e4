/*
 * Hotplug commands: nic-add, nic-del, disk-add, disk-del, cpu-add,
 * cpu-del, mem-add, mem-del, mem-resize, query-pci-slots, has-device. They check what .args cannot say, open
 * (or prove) the fds and start hp operations on the VM's hotplug state
 * (svc/hotplug.c); the sequences themselves live in hv/hp.c.
 */
#include "config.h"

#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker/cmd/cmd.h"
#include "broker/svc/hotplug.h"
#include "broker/svc/migrate.h"
#include "disk/uri.h"
#include "hv/hp.h"
#include "hv/pci.h"
#include "hv/tap.h"

static void
hp_req_done(json_t *ret, const struct qmp_error *err, void *arg)
{
	struct req	*r = arg;

	if (err != NULL)
		req_error_qmp(r, err);
	else
		req_reply(r, ret);
}

/* The VM's hotplug state, for an operation on device id (NULL: on the
   VM as a whole); NULL with r finished if there is none. */
static struct hp_vm *
hp_req_vm(struct req *r, const char *name, const char *id)
{
	struct qmp_error	 err;
	struct hp_vm		*hp;

	/* a device added or removed mid-migration would not be on the
	   other end: QEMU's device state must match on both */
	if (id != NULL && migrate_busy(name, &err)) {
		req_error_qmp(r, &err);
		return (NULL);
	}
	if ((hp = hotplug_vm(name, id, &err)) == NULL)
		req_error_qmp(r, &err);
	return (hp);
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
cmd_nic_add(struct req *r, json_t *args, const struct cmd_entry *e,
    const struct cmd_target *t)
{
	const char		*id = cmd_arg_str(args, "id");
	const char		*ifname = cmd_arg_str(args, "ifname");
	json_int_t		 queues = cmd_arg_int(args, "queues", 1);
	struct hp_nic		 nic;
	struct qmp_error	 err;
	struct hp_vm		*hp;
	size_t			 i, want;

	if (queues < 1 || queues > TAP_MAX_QUEUES) {
		req_error(r, QMP_CLS_GENERIC, "'queues' must be 1..%d",
		    TAP_MAX_QUEUES);
		return;
	}
	if ((hp = hp_req_vm(r, cmd_arg_str(args, "vm"), id)) == NULL)
		return;
	memset(&nic, 0, sizeof nic);
	for (i = 0; i < HP_MAX_FDS; i++)
		nic.fds[i] = -1;
	if (hp_copy(r, "id", id, nic.id, sizeof nic.id) != 0 ||
	    hp_copy(r, "mac", cmd_arg_str(args, "mac"), nic.mac,
	    sizeof nic.mac) != 0 ||
	    hp_copy(r, "driver", cmd_arg_str(args, "driver"), nic.driver,
	    sizeof nic.driver) != 0 ||
	    hp_req_place(r, cmd_arg_str(args, "bus"),
	    json_object_get(args, "addr"), nic.bus, sizeof nic.bus,
	    &nic.slot) != 0)
		return;
	nic.queues = (size_t)queues;
	nic.vhost = cmd_arg_bool(args, "vhost");
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
	hp_nic_add(hp, &nic, hp_req_done, r);
}

static void
cmd_disk_add(struct req *r, json_t *args, const struct cmd_entry *e,
    const struct cmd_target *t)
{
	const char		*id = cmd_arg_str(args, "id");
	const char		*source = cmd_arg_str(args, "source");
	int			 fd, acc;
	json_t			*node = NULL;
	struct hp_disk		 disk;
	struct qmp_error	 err;
	struct stat		 st;
	struct hp_vm		*hp;

	if ((hp = hp_req_vm(r, cmd_arg_str(args, "vm"), id)) == NULL)
		return;
	memset(&disk, 0, sizeof disk);
	disk.fd = -1;
	if (hp_copy(r, "id", id, disk.id, sizeof disk.id) != 0 ||
	    hp_copy(r, "format", cmd_arg_str(args, "format"), disk.format,
	    sizeof disk.format) != 0 ||
	    hp_copy(r, "driver", cmd_arg_str(args, "driver"), disk.driver,
	    sizeof disk.driver) != 0 ||
	    hp_req_place(r, cmd_arg_str(args, "bus"),
	    json_object_get(args, "addr"), disk.bus, sizeof disk.bus,
	    &disk.slot) != 0)
		return;
	disk.readonly = cmd_arg_bool(args, "readonly");

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
			if (hotplug_open_image(source, disk.readonly, &disk.fd,
			    &disk.blkdev, &err) != 0) {
				req_error_qmp(r, &err);
				return;
			}
			break;
		}
	}
	hp_disk_add(hp, &disk, hp_req_done, r);
}

/* nic-del, disk-del */
static void
cmd_dev_del(struct req *r, json_t *args, const struct cmd_entry *e,
    const struct cmd_target *t)
{
	const char	*id = cmd_arg_str(args, "id");
	struct hp_vm	*hp;

	if ((hp = hp_req_vm(r, cmd_arg_str(args, "vm"), id)) == NULL)
		return;
	hp_del(hp, (enum hp_kind)e->op, id, hp_req_done, r);
}

/* query-pci-slots {"by-kind": true}: the counts per kind and state */
static void
cmd_slots_by_kind(json_t *ret, const struct qmp_error *err, void *arg)
{
	if (err != NULL) {
		req_error_qmp(arg, err);
		return;
	}
	req_reply(arg, pci_slots_by_kind(ret));
	json_decref(ret);
}

static void
cmd_query_slots(struct req *r, json_t *args, const struct cmd_entry *e,
    const struct cmd_target *t)
{
	struct hp_vm	*hp;

	if ((hp = hp_req_vm(r, cmd_arg_str(args, "vm"), NULL)) == NULL)
		return;
	hp_slots(hp, cmd_arg_bool(args, "by-kind") ? cmd_slots_by_kind :
	    hp_req_done, r);
}

static void
cmd_has_device(struct req *r, json_t *args, const struct cmd_entry *e,
    const struct cmd_target *t)
{
	struct hp_vm	*hp;

	if ((hp = hp_req_vm(r, cmd_arg_str(args, "vm"), NULL)) == NULL)
		return;
	hp_has_device(hp, cmd_arg_str(args, "id"), hp_req_done, r);
}

/* cpu-add, cpu-del: {vm, count | ids} */
static void
cmd_cpu(struct req *r, json_t *args, const struct cmd_entry *e,
    const struct cmd_target *t)
{
	json_t		*ids = json_object_get(args, "ids"), *v;
	json_int_t	 count = cmd_arg_int(args, "count", 0);
	struct hp_cpu	 c;
	struct hp_vm	*hp;
	size_t		 i;

	memset(&c, 0, sizeof c);
	if (ids != NULL && (!json_is_array(ids) || json_array_size(ids) == 0 ||
	    json_array_size(ids) > HP_CPU_MAX)) {
		req_error(r, QMP_CLS_GENERIC, "'ids' must be an array of 1..%d "
		    "CPU ids", HP_CPU_MAX);
		return;
	}
	if ((ids != NULL) == (json_object_get(args, "count") != NULL) ||
	    count < 0 || count > HP_CPU_MAX) {
		req_error(r, QMP_CLS_GENERIC, "give either 'count' (1..%d) or "
		    "'ids'", HP_CPU_MAX);
		return;
	}
	json_array_foreach(ids, i, v) {
		if (!json_is_string(v) || hp_copy(r, "ids", json_string_value(v),
		    c.ids[i], sizeof c.ids[i]) != 0) {
			if (!json_is_string(v))
				req_error(r, QMP_CLS_GENERIC, "'ids' must be "
				    "strings");
			return;
		}
	}
	c.nids = json_array_size(ids);
	c.count = (size_t)count;
	if ((hp = hp_req_vm(r, cmd_arg_str(args, "vm"), HP_CPU_LOCK)) == NULL)
		return;
	if (e->op)
		hp_cpu_add(hp, &c, hp_req_done, r);
	else
		hp_cpu_del(hp, &c, hp_req_done, r);
}

static void
cmd_mem_add(struct req *r, json_t *args, const struct cmd_entry *e,
    const struct cmd_target *t)
{
	const char	*id = cmd_arg_str(args, "id");
	const char	*kind = cmd_arg_str(args, "kind");
	struct hp_mem	 m;
	struct hp_vm	*hp;

	memset(&m, 0, sizeof m);
	m.size = cmd_arg_int(args, "size", 0);
	m.node = (int)cmd_arg_int(args, "node", -1);
	if (json_object_get(args, "node") != NULL &&
	    (cmd_arg_int(args, "node", -1) < 0 ||
	    cmd_arg_int(args, "node", -1) > 255)) {
		req_error(r, QMP_CLS_GENERIC, "'node' must be 0..255");
		return;
	}
	if (hp_copy(r, "id", id, m.id, sizeof m.id) != 0 ||
	    hp_copy(r, "backend", cmd_arg_str(args, "backend"), m.backend,
	    sizeof m.backend) != 0 ||
	    hp_copy(r, "path", cmd_arg_str(args, "path"), m.path,
	    sizeof m.path) != 0 ||
	    hp_req_place(r, cmd_arg_str(args, "bus"),
	    json_object_get(args, "addr"), m.bus, sizeof m.bus, &m.slot) != 0)
		return;
	if (kind != NULL && strcmp(kind, "dimm") != 0 &&
	    strcmp(kind, "virtio-mem") != 0) {
		req_error(r, QMP_CLS_GENERIC, "'kind' must be dimm or "
		    "virtio-mem");
		return;
	}
	m.virtio = kind != NULL && strcmp(kind, "virtio-mem") == 0;
	m.requested = cmd_arg_int(args, "requested-size", 0);
	if (!m.virtio && m.slot >= 0) {
		req_error(r, QMP_CLS_GENERIC, "'addr' goes with kind "
		    "virtio-mem (a PCI device), not with a DIMM");
		return;
	}
	if ((hp = hp_req_vm(r, cmd_arg_str(args, "vm"), id)) == NULL)
		return;
	hp_mem_add(hp, &m, hp_req_done, r);
}

/* mem-resize {vm, id, size, timeout-ms?}: a virtio-mem device's
   requested-size, answered once the guest has it */
static void
cmd_mem_resize(struct req *r, json_t *args, const struct cmd_entry *e,
    const struct cmd_target *t)
{
	const char	*id = cmd_arg_str(args, "id");
	json_int_t	 ms = cmd_arg_int(args, "timeout-ms", 0);
	struct hp_vm	*hp;

	if (ms < 0 || ms > HP_RESIZE_MAX_MS) {
		req_error(r, QMP_CLS_GENERIC, "'timeout-ms' must be 1..%d",
		    HP_RESIZE_MAX_MS);
		return;
	}
	if ((hp = hp_req_vm(r, cmd_arg_str(args, "vm"), id)) == NULL)
		return;
	hp_mem_resize(hp, id, cmd_arg_int(args, "size", 0), (int)ms,
	    hp_req_done, r);
}

/* No VM: what to boot one with for a hotplug budget (hv/pci_plan.c). */
static void
cmd_pci_plan(struct req *r, json_t *args, const struct cmd_entry *e,
    const struct cmd_target *t)
{
	struct qmp_error	 err;
	json_t			*plan;

	plan = pci_plan(cmd_arg_str(args, "machine"), cmd_arg_int(args,
	    "nics", 0), cmd_arg_int(args, "disks", 0), cmd_arg_int(args,
	    "spare", 0), cmd_arg_int(args, "conventional", 0), &err);
	if (plan == NULL)
		req_error_qmp(r, &err);
	else
		req_reply(r, plan);
}

/* vm-allow only: hotplug_vm looks the VM up ("unknown VM"), after
   refusing an operation while a reconcile runs */
#define HP_TARGET	{ "vm", CMD_ALLOW_VM }

#define HP_VM		{ "vm", 's', true }
#define HP_ID		{ "id", 's', true }
/* "addr" is a slot number or a PCI address string: pci_parse_addr */
#define HP_PLACE	{ "bus", 's', false }, { "addr", 'o', false }

const struct cmd_entry cmd_hp_table[] = {
	{ .name = "nic-add", .exec = cmd_nic_add, .flags = CMD_FDS,
	    .target = HP_TARGET,
	    .args = { HP_VM, HP_ID, { "mac", 's', false },
	    { "driver", 's', false }, { "queues", 'I', false },
	    { "vhost", 'b', false }, { "ifname", 's', false }, HP_PLACE } },
	{ .name = "nic-del", .exec = cmd_dev_del, .op = HP_NIC,
	    .target = HP_TARGET, .args = { HP_VM, HP_ID } },
	{ .name = "disk-add", .exec = cmd_disk_add, .flags = CMD_FDS,
	    .target = HP_TARGET,
	    .args = { HP_VM, HP_ID, { "source", 's', false },
	    { "format", 's', false }, { "readonly", 'b', false },
	    { "driver", 's', false }, HP_PLACE } },
	{ .name = "disk-del", .exec = cmd_dev_del, .op = HP_DISK,
	    .target = HP_TARGET, .args = { HP_VM, HP_ID } },
	{ .name = "query-pci-slots", .exec = cmd_query_slots,
	    .flags = CMD_OOB,
	    .target = HP_TARGET, .args = { HP_VM, { "by-kind", 'b',
	    false } } },
	{ .name = "has-device", .exec = cmd_has_device,
	    .target = HP_TARGET, .args = { HP_VM, HP_ID } },
	/* .op: 1 adds */
	{ .name = "cpu-add", .exec = cmd_cpu, .op = 1, .target = HP_TARGET,
	    .args = { HP_VM, { "count", 'I', false }, { "ids", 'o', false } } },
	{ .name = "cpu-del", .exec = cmd_cpu, .op = 0, .target = HP_TARGET,
	    .args = { HP_VM, { "count", 'I', false }, { "ids", 'o', false } } },
	/* a file backend's path is held to the allowed dirs by the
	   guards (session/guard.c) for every peer but admin */
	{ .name = "mem-add", .exec = cmd_mem_add, .target = HP_TARGET,
	    .args = { HP_VM, HP_ID, { "size", 'I', true },
	    { "backend", 's', false }, { "node", 'I', false },
	    { "path", 's', false }, { "kind", 's', false },
	    { "requested-size", 'I', false }, HP_PLACE } },
	{ .name = "mem-del", .exec = cmd_dev_del, .op = HP_MEM,
	    .target = HP_TARGET, .args = { HP_VM, HP_ID } },
	{ .name = "mem-resize", .exec = cmd_mem_resize, .target = HP_TARGET,
	    .args = { HP_VM, HP_ID, { "size", 'I', true },
	    { "timeout-ms", 'I', false } } },
	{ .name = "pci-plan", .exec = cmd_pci_plan,
	    .args = { { "machine", 's', true }, { "nics", 'I', false },
	    { "disks", 'I', false }, { "spare", 'I', false },
	    { "conventional", 'I', false } } },
	{ .name = NULL }
};
