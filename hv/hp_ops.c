/*
 * Hotplug operations: the gate (id, readiness, QEMU's commands, one
 * operation per device id), argument checks, and the step list each
 * operation runs through hp.c's engine.
 */
#include <sys/random.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hv/hp_int.h"

struct hp_op *
hp_op_find(struct hp_vm *vm, const char *id)
{
	struct hp_op	*op;

	LIST_FOREACH(op, &vm->ops_list, entry)
		if (!op->query && strcmp(op->id, id) == 0)
			return (op);
	return (NULL);
}

/* Gate, lock, start. needs is a NULL-terminated command list. */
struct hp_op *
hp_op_new(struct hp_vm *vm, const char *name, enum hp_kind kind, bool add,
    const char *id, const char *const *needs, hp_done_fn *done, void *arg,
    struct qmp_error *err)
{
	struct hp_op	*op, *other;

	if (!hp_id_valid(id)) {
		qmp_error_set(err, QMP_CLS_GENERIC, "invalid device id: a "
		    "letter, then letters, digits, '-', '.', '_' (at most "
		    "%d)", HP_ID_MAX);
		return (NULL);
	}
	if (!hp_ready(vm)) {
		qmp_error_set(err, QMP_CLS_GENERIC,
		    "the VM's monitor is not ready");
		return (NULL);
	}
	for (; needs != NULL && *needs != NULL; needs++) {
		if (!vmq_has_command(vm->q, *needs)) {
			qmp_error_set(err, QMP_CLS_GENERIC, "hotplug is not "
			    "supported by this QEMU: it lacks the '%s' "
			    "command", *needs);
			return (NULL);
		}
	}
	if ((other = hp_op_find(vm, id)) != NULL) {
		if (other->pending && !other->add)
			qmp_error_set(err, QMP_CLS_GENERIC, "unplug of '%s' is "
			    "already pending: waiting for the guest to "
			    "release it", id);
		else
			qmp_error_set(err, QMP_CLS_GENERIC, "an operation on "
			    "device '%s' is already in progress", id);
		return (NULL);
	}
	if ((op = hp_op_alloc(vm, name, id, done, arg, err)) == NULL)
		return (NULL);
	op->kind = kind;
	op->add = add;
	return (op);
}

struct hp_op *
hp_op_alloc(struct hp_vm *vm, const char *name, const char *id,
    hp_done_fn *done, void *arg, struct qmp_error *err)
{
	struct hp_op	*op;
	uint32_t	 nonce;
	size_t		 i;

	/* a dead hp_vm's memory is due once its last op goes: none may
	   come after (only an answer's callback could ask) */
	if (vm->dead) {
		qmp_error_set(err, QMP_CLS_GENERIC, "the VM was removed");
		return (NULL);
	}
	if ((op = calloc(1, sizeof *op)) == NULL) {
		qmp_error_set(err, QMP_CLS_GENERIC, "out of memory");
		return (NULL);
	}
	op->vm = vm;
	op->name = name;
	op->start_us = hist_now_us();
	snprintf(op->id, sizeof op->id, "%s", id);
	op->fdset = -1;
	op->slot = -1;
	op->disk.fd = -1;
	for (i = 0; i < HP_MAX_FDS; i++)
		op->fds[i] = -1;
	op->done = done;
	op->arg = arg;
	if (getrandom(&nonce, sizeof nonce, 0) != sizeof nonce)
		nonce = (uint32_t)getpid() ^ ++vm->seq;
	snprintf(op->netdev, sizeof op->netdev, "qbnet-%s", id);
	hp_node_name(op->node, sizeof op->node, "qbd", id);
	hp_node_name(op->fnode, sizeof op->fnode, "qbf", id);
	snprintf(op->opaque, sizeof op->opaque, "qmpbroker:%s:%08x", id,
	    nonce);
	LIST_INSERT_HEAD(&vm->ops_list, op, entry);
	vm->nops++;
	return (op);
}

void
hp_step_add(struct hp_op *op, enum hp_stepk k, int arg)
{
	op->steps[op->nsteps].k = k;
	op->steps[op->nsteps].arg = arg;
	op->nsteps++;
}

/* A del's steps: the device, then its backend. A del that a dead broker
   left runs them too (hp_reconcile). */
void
hp_del_steps(struct hp_op *op)
{
	hp_step_add(op, ST_DEVICE_DEL, 0);
	if (op->kind == HP_NIC)
		hp_step_add(op, ST_NETDEV_DEL, 0);
	else if (op->kind == HP_MEM)
		hp_step_add(op, ST_OBJECT_DEL, 0);
	else {
		hp_step_add(op, ST_BLOCKDEV_DEL, 0);
		hp_step_add(op, ST_BLOCKDEV_DEL_FILE, 0);
	}
}

/* Local refusals are answered from the loop too. */
struct hp_refusal {
	hp_done_fn		*done;
	void			*arg;
	struct qmp_error	 err;
};

static void
hp_refuse_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct hp_refusal	*r = arg;

	r->done(NULL, &r->err, r->arg);
	free(r);
}

void
hp_refuse(struct hp_vm *vm, const struct qmp_error *err, hp_done_fn *done,
    void *arg)
{
	struct hp_refusal	*r;

	if ((r = calloc(1, sizeof *r)) == NULL ||
	    event_base_once(vm->base, -1, EV_TIMEOUT, hp_refuse_cb, r,
	    NULL) != 0) {
		free(r);
		done(NULL, err, arg);
		return;
	}
	r->done = done;
	r->arg = arg;
	r->err = *err;
}

static bool
hp_mac_valid(const char *s)
{
	int	i;

	if (strlen(s) != 17)
		return (false);
	for (i = 0; i < 17; i++) {
		if (i % 3 == 2 ? s[i] != ':' : !isxdigit((unsigned char)s[i]))
			return (false);
	}
	return (true);
}

static bool
hp_word_valid(const char *s, size_t max)
{
	size_t	n = strlen(s);

	if (n == 0 || n > max)
		return (false);
	for (; *s != '\0'; s++)
		if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_' &&
		    *s != '.')
			return (false);
	return (true);
}

void
hp_nic_add(struct hp_vm *vm, struct hp_nic *nic, hp_done_fn *done, void *arg)
{
	static const char *const needs[] = { "getfd", "closefd", "netdev_add",
	    "netdev_del", "device_add", "device_del", "query-pci", NULL };
	struct hp_op		*op;
	struct qmp_error	 err;
	size_t			 q, i, want;

	q = nic->queues == 0 ? 1 : nic->queues;
	want = nic->vhost ? 2 * q : q;
	if (q > TAP_MAX_QUEUES) {
		qmp_error_set(&err, QMP_CLS_GENERIC, "queues must be 1..%d",
		    TAP_MAX_QUEUES);
		goto refuse;
	}
	if (nic->nfds != want) {
		qmp_error_set(&err, QMP_CLS_GENERIC, "nic-add needs %zu fd(s) "
		    "(%zu tap%s), got %zu", want, q, nic->vhost ?
		    " + as many vhost-net" : "", nic->nfds);
		goto refuse;
	}
	if (nic->mac[0] != '\0' && !hp_mac_valid(nic->mac)) {
		qmp_error_set(&err, QMP_CLS_GENERIC,
		    "mac must be xx:xx:xx:xx:xx:xx");
		goto refuse;
	}
	if (nic->driver[0] != '\0' && !hp_word_valid(nic->driver, 63)) {
		qmp_error_set(&err, QMP_CLS_GENERIC, "invalid driver name");
		goto refuse;
	}
	if (nic->bus[0] != '\0' && !hp_word_valid(nic->bus, 127)) {
		qmp_error_set(&err, QMP_CLS_GENERIC, "invalid bus name");
		goto refuse;
	}
	op = hp_op_new(vm, "nic-add", HP_NIC, true, nic->id, needs, done, arg,
	    &err);
	if (op == NULL)
		goto refuse;
	op->nic = *nic;
	op->nic.queues = q;
	memcpy(op->fds, nic->fds, sizeof op->fds);
	op->nfds = nic->nfds;
	for (i = 0; i < nic->nfds; i++) {
		nic->fds[i] = -1;
		snprintf(op->fdname[i], sizeof op->fdname[i], "%s-%s%zu-%s",
		    "qb", i < q ? "tap" : "vhost", i < q ? i : i - q,
		    op->opaque + strlen("qmpbroker:"));
		/* "qb-tap0-ID:nonce": colons separate names in fds= */
		for (char *c = op->fdname[i]; *c != '\0'; c++)
			if (*c == ':')
				*c = '-';
	}
	nic->nfds = 0;
	hp_step_add(op, ST_SCAN, 0);
	for (i = 0; i < op->nfds; i++)
		hp_step_add(op, ST_GETFD, (int)i);
	hp_step_add(op, ST_NETDEV_ADD, 0);
	hp_step_add(op, ST_DEVICE_ADD, 0);
	hp_start(op);
	return;
refuse:
	for (i = 0; i < nic->nfds; i++) {
		if (nic->fds[i] >= 0)
			close(nic->fds[i]);
		nic->fds[i] = -1;
	}
	nic->nfds = 0;
	hp_refuse(vm, &err, done, arg);
}

void
hp_disk_add(struct hp_vm *vm, struct hp_disk *disk, hp_done_fn *done,
    void *arg)
{
	static const char *const needs_fd[] = { "add-fd", "remove-fd",
	    "query-fdsets", "blockdev-add", "blockdev-del", "device_add",
	    "device_del", "query-pci", NULL };
	static const char *const needs_net[] = { "blockdev-add",
	    "blockdev-del", "device_add", "device_del", "query-pci", NULL };
	static const char *const formats[] = { "raw", "qcow2", "qed", "vmdk",
	    "vdi", "vpc", "vhdx", NULL };
	const char *const	*f;
	struct hp_op		*op;
	struct qmp_error	 err;
	bool			 pci;

	if ((disk->fd < 0) == (disk->node == NULL)) {
		qmp_error_set(&err, QMP_CLS_GENERIC, "disk-add needs either "
		    "an image fd or a network source");
		goto refuse;
	}
	if (disk->format[0] != '\0') {
		for (f = formats; *f != NULL; f++)
			if (strcmp(*f, disk->format) == 0)
				break;
		if (*f == NULL) {
			qmp_error_set(&err, QMP_CLS_GENERIC, "unsupported "
			    "image format '%s'", disk->format);
			goto refuse;
		}
	}
	if (disk->driver[0] != '\0' && strcmp(disk->driver, "virtio-blk-pci")
	    != 0 && strcmp(disk->driver, "scsi-hd") != 0) {
		qmp_error_set(&err, QMP_CLS_GENERIC, "disk driver must be "
		    "virtio-blk-pci or scsi-hd");
		goto refuse;
	}
	pci = strcmp(disk->driver, "scsi-hd") != 0;
	if (disk->bus[0] != '\0' && !hp_word_valid(disk->bus, 127)) {
		qmp_error_set(&err, QMP_CLS_GENERIC, "invalid bus name");
		goto refuse;
	}
	if (!pci && disk->slot >= 0) {
		qmp_error_set(&err, QMP_CLS_GENERIC, "scsi-hd takes a SCSI "
		    "bus, not a PCI addr");
		goto refuse;
	}
	op = hp_op_new(vm, "disk-add", HP_DISK, true, disk->id,
	    disk->fd >= 0 ? needs_fd : needs_net, done, arg, &err);
	if (op == NULL)
		goto refuse;
	op->disk = *disk;
	disk->fd = -1;
	disk->node = NULL;
	if (pci)
		hp_step_add(op, ST_SCAN, 0);
	else
		snprintf(op->bus, sizeof op->bus, "%s", disk->bus);
	if (op->disk.fd >= 0)
		hp_step_add(op, ST_ADDFD, 0);
	hp_step_add(op, ST_BLOCKDEV_ADD, 0);
	if (op->disk.fd >= 0)
		hp_step_add(op, ST_REMOVEFD, 0);
	hp_step_add(op, ST_DEVICE_ADD, 0);
	hp_start(op);
	return;
refuse:
	if (disk->fd >= 0)
		close(disk->fd);
	disk->fd = -1;
	json_decref(disk->node);
	disk->node = NULL;
	hp_refuse(vm, &err, done, arg);
}

void
hp_del(struct hp_vm *vm, enum hp_kind kind, const char *id, hp_done_fn *done,
    void *arg)
{
	static const char *const needs_nic[] = { "device_del", "netdev_del",
	    NULL };
	static const char *const needs_disk[] = { "device_del",
	    "blockdev-del", NULL };
	static const char *const needs_mem[] = { "device_del",
	    "object-del", "query-memory-devices", NULL };
	static const char *const *const needs[] = { needs_nic, needs_disk,
	    NULL, needs_mem };
	static const char *const names[] = { "nic-del", "disk-del", NULL,
	    "mem-del" };
	struct hp_op		*op;
	struct qmp_error	 err;

	if (kind == HP_CPU)
		qmp_error_set(&err, QMP_CLS_GENERIC, "CPUs go with cpu-del");
	if (kind == HP_CPU || (op = hp_op_new(vm, names[kind], kind, false,
	    id, needs[kind], done, arg, &err)) == NULL) {
		hp_refuse(vm, &err, done, arg);
		return;
	}
	/* a DIMM's backend is whatever QEMU says it is on */
	if (kind == HP_MEM)
		hp_step_add(op, ST_MEM_CHECK, 0);
	hp_del_steps(op);
	hp_start(op);
}
