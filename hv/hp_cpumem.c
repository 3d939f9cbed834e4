/*
 * CPU and memory hotplug: the operations (cpu-add, cpu-del, mem-add; a
 * mem-del is hp_del) and the two steps that read QEMU before anything
 * is changed: ST_CPU_SCAN picks the CPUs from query-hotpluggable-cpus,
 * ST_MEM_CHECK holds a DIMM against the VM's slots and maxmem (add) or
 * finds the backend it sits on (del). A limit that is hit fails the
 * step, which has nothing to undo, with an error naming the limit.
 * A virtio-mem device is held against maxmem only (it takes no DIMM
 * slot), and on a resize ST_MEM_CHECK reads what the device has and
 * adds the qom-set step when there is a change to ask for.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hv/hp_int.h"

#define HP_PERIPH	"/machine/peripheral/"

/* --- ST_CPU_SCAN -------------------------------------------------------- */

/* cpu-S-C-T from the slot's props (die-id too where the machine has
   dies): unique, since the slot is free. */
static void
hp_cpu_name(char *buf, size_t len, const json_t *props)
{
	static const char *const keys[] = { "socket-id", "die-id", "core-id",
	    "thread-id", NULL };
	const char *const	*k;
	const json_t		*v;
	size_t			 n;

	n = (size_t)snprintf(buf, len, "cpu");
	for (k = keys; *k != NULL && n < len; k++) {
		v = json_object_get(props, *k);
		if (json_is_integer(v))
			n += (size_t)snprintf(buf + n, len - n, "-%lld",
			    (long long)json_integer_value(v));
	}
}

/* The scan's failure: the step ends with err (nothing to undo). */
static bool
hp_cpu_fail(struct hp_op *op, const struct qmp_error *err)
{
	hp_cpumem_reply(op, NULL, err);
	return (false);
}

/* add: the free slots, lowest first (QEMU lists them highest first). */
static bool
hp_cpu_pick_free(struct hp_op *op, const json_t *ret)
{
	struct qmp_error err;
	const json_t	*e;
	size_t		 i, n, want, nfree = 0;
	char		 id[HP_ID_MAX + 1];
	json_t		*a;

	want = op->cpu.nids > 0 ? op->cpu.nids : op->cpu.count;
	n = json_array_size(ret);
	for (i = 0; i < n; i++)
		if (json_object_get(json_array_get(ret, i), "qom-path") == NULL)
			nfree++;
	if (nfree < want) {
		qmp_error_set(&err, QMP_CLS_GENERIC, "maxcpus: %zu CPU(s) "
		    "asked, %zu of the %zu CPU slots (maxcpus) free", want,
		    nfree, n);
		return (hp_cpu_fail(op, &err));
	}
	for (i = n; i > 0 && op->ncpus < want; i--) {
		e = json_array_get(ret, i - 1);
		if (json_object_get(e, "qom-path") != NULL ||
		    !json_is_string(json_object_get(e, "type")) ||
		    !json_is_object(json_object_get(e, "props")))
			continue;
		if (op->cpu.nids > 0)
			snprintf(id, sizeof id, "%s", op->cpu.ids[op->ncpus]);
		else
			hp_cpu_name(id, sizeof id, json_object_get(e,
			    "props"));
		/* the driver and props QEMU gave for the slot, as is */
		a = json_deep_copy(json_object_get(e, "props"));
		json_object_set(a, "driver", json_object_get(e, "type"));
		json_object_set_new(a, "id", json_string(id));
		op->cpus[op->ncpus++] = a;
	}
	if (op->ncpus < want) {
		qmp_error_set(&err, QMP_CLS_GENERIC, "maxcpus: QEMU lists %zu "
		    "free CPU slot(s) of %zu, of which %zu usable", nfree, n,
		    op->ncpus);
		return (hp_cpu_fail(op, &err));
	}
	return (true);
}

/* The id of a CPU hot-plugged with one (its qom-path is under
   /machine/peripheral), or NULL. */
static const char *
hp_cpu_plugged(const json_t *e)
{
	const char	*p;

	p = json_string_value(json_object_get(e, "qom-path"));
	if (p == NULL || strncmp(p, HP_PERIPH, strlen(HP_PERIPH)) != 0)
		return (NULL);
	return (p + strlen(HP_PERIPH));
}

/* del: the CPUs named, or the count last plugged (QEMU lists the
   highest slots first). */
static bool
hp_cpu_pick_plugged(struct hp_op *op, const json_t *ret)
{
	struct qmp_error err;
	const char	*id;
	size_t		 i, j, n = json_array_size(ret), nplugged = 0;

	for (i = 0; i < n; i++)
		if (hp_cpu_plugged(json_array_get(ret, i)) != NULL)
			nplugged++;
	for (j = 0; j < op->cpu.nids; j++) {
		for (i = 0; i < n; i++) {
			id = hp_cpu_plugged(json_array_get(ret, i));
			if (id != NULL && strcmp(id, op->cpu.ids[j]) == 0)
				break;
		}
		if (i == n) {
			qmp_error_set(&err, QMP_CLS_GENERIC, "'%s' is not a "
			    "hot-plugged CPU of this VM", op->cpu.ids[j]);
			return (hp_cpu_fail(op, &err));
		}
		op->cpus[op->ncpus++] = json_pack("{s:s}", "id",
		    op->cpu.ids[j]);
	}
	if (op->cpu.nids > 0)
		return (true);
	if (nplugged < op->cpu.count) {
		qmp_error_set(&err, QMP_CLS_GENERIC, "%zu CPU(s) asked to "
		    "unplug, %zu hot-plugged (the boot CPUs cannot be "
		    "unplugged)", op->cpu.count, nplugged);
		return (hp_cpu_fail(op, &err));
	}
	for (i = 0; i < n && op->ncpus < op->cpu.count; i++)
		if ((id = hp_cpu_plugged(json_array_get(ret, i))) != NULL)
			op->cpus[op->ncpus++] = json_pack("{s:s}", "id", id);
	return (true);
}

static void
hp_cpu_scan_done(struct hp_op *op, json_t *ret, const struct qmp_error *err)
{
	size_t	i;

	if (err != NULL) {
		hp_cpumem_reply(op, NULL, err);
		return;
	}
	if (!(op->add ? hp_cpu_pick_free(op, ret) :
	    hp_cpu_pick_plugged(op, ret)))
		return;
	for (i = 0; i < op->ncpus; i++)
		hp_step_add(op, op->add ? ST_DEVICE_ADD : ST_DEVICE_DEL,
		    (int)i);
	hp_cpumem_reply(op, NULL, NULL);
}

/*
 * QEMU 7.2 under TCG aborts ("double free or corruption") on the first
 * CPU device_add after any CPU was unplugged, whatever the slot: the
 * unplugged vCPU is never finalized and its teardown frees state the
 * next one reuses (tests/integration/test_guest_cpumem.py showed it).
 * A cpu-add that would kill the VM is refused instead.
 */
static void
hp_cpu_kvm_done(struct hp_op *op, json_t *ret, const struct qmp_error *err)
{
	struct qmp_error	e;

	if (err == NULL && !json_is_true(json_object_get(ret, "enabled"))) {
		qmp_error_set(&e, QMP_CLS_GENERIC, "a CPU was unplugged from "
		    "this VM, and QEMU under TCG aborts on the next CPU "
		    "hotplug (double free): restart the VM to add CPUs");
		hp_cpumem_reply(op, NULL, &e);
		return;
	}
	hp_exec(op, "query-hotpluggable-cpus", NULL, NULL, 0,
	    hp_cpu_scan_done);
}

void
hp_cpu_scan_send(struct hp_op *op)
{
	if (op->add && op->vm->cpu_unplugged &&
	    vmq_has_command(op->vm->q, "query-kvm")) {
		hp_exec(op, "query-kvm", NULL, NULL, 0, hp_cpu_kvm_done);
		return;
	}
	hp_exec(op, "query-hotpluggable-cpus", NULL, NULL, 0,
	    hp_cpu_scan_done);
}

/* --- ST_MEM_CHECK ------------------------------------------------------- */

/* The memory device id of QEMU's list (query-memory-devices), or NULL. */
static const json_t *
hp_mem_find(const json_t *list, const char *id)
{
	const json_t	*d;
	const char	*i;
	size_t		 n;

	json_array_foreach(list, n, d) {
		i = json_string_value(json_object_get(json_object_get(d,
		    "data"), "id"));
		if (i != NULL && strcmp(i, id) == 0)
			return (d);
	}
	return (NULL);
}

static long long
hp_mem_int(const json_t *d, const char *key)
{
	return (json_integer_value(json_object_get(json_object_get(d, "data"),
	    key)));
}

static bool
hp_is_virtio(const json_t *d)
{
	const char	*type = json_string_value(json_object_get(d, "type"));

	return (type != NULL && strcmp(type, "virtio-mem") == 0);
}

/* mem-del: the backend the device sits on; a virtio-mem device only
   once it gives the guest nothing. */
static void
hp_mem_del_check(struct hp_op *op, const json_t *ret)
{
	struct qmp_error	 e;
	const json_t		*d = hp_mem_find(ret, op->id);
	const char		*type, *md;

	type = json_string_value(json_object_get(d, "type"));
	md = json_string_value(json_object_get(json_object_get(d, "data"),
	    "memdev"));
	if (type == NULL || md == NULL || (strcmp(type, "dimm") != 0 &&
	    strcmp(type, "nvdimm") != 0 && !hp_is_virtio(d))) {
		qmp_error_set(&e, QMP_CLS_GENERIC, "'%s' is not a DIMM "
		    "of this VM", op->id);
		hp_cpumem_reply(op, NULL, &e);
		return;
	}
	if (hp_is_virtio(d) && (hp_mem_int(d, "size") != 0 ||
	    hp_mem_int(d, "requested-size") != 0)) {
		qmp_error_set(&e, QMP_CLS_GENERIC, "size: the virtio-mem "
		    "device '%s' still gives the guest %lld MiB (%lld MiB "
		    "requested): mem-resize it to 0 first", op->id,
		    hp_mem_int(d, "size") >> 20,
		    hp_mem_int(d, "requested-size") >> 20);
		hp_cpumem_reply(op, NULL, &e);
		return;
	}
	if (strncmp(md, "/objects/", 9) == 0)
		md += 9;
	snprintf(op->memdev, sizeof op->memdev, "%s", md);
	hp_cpumem_reply(op, NULL, NULL);
}

/* mem-resize: a virtio-mem device, a size it can take; the qom-set
   only if there is a change to ask for. */
static void
hp_mem_resize_check(struct hp_op *op, const json_t *ret)
{
	struct qmp_error	 e;
	const json_t		*d = hp_mem_find(ret, op->id);
	long long		 block, max;

	if (d == NULL || !hp_is_virtio(d)) {
		qmp_error_set(&e, QMP_CLS_GENERIC, d == NULL ? "'%s' is not a "
		    "memory device of this VM" : "'%s' is a DIMM, whose size "
		    "is fixed: only a virtio-mem device resizes", op->id);
		hp_cpumem_reply(op, NULL, &e);
		return;
	}
	block = hp_mem_int(d, "block-size");
	max = hp_mem_int(d, "max-size");
	if (block <= 0 || op->rs_want % block != 0 || op->rs_want > max) {
		qmp_error_set(&e, QMP_CLS_GENERIC, "size must be a multiple of "
		    "the device's block-size (%lld KiB) from 0 to its "
		    "max-size (%lld MiB), not %lld", block >> 10, max >> 20,
		    op->rs_want);
		hp_cpumem_reply(op, NULL, &e);
		return;
	}
	op->rs_prev = hp_mem_int(d, "requested-size");
	op->rs_now = hp_mem_int(d, "size");
	if (op->rs_now != op->rs_want || op->rs_prev != op->rs_want)
		hp_step_add(op, ST_MEM_RESIZE, 0);
	hp_cpumem_reply(op, NULL, NULL);
}

/* mem-add: the limits, where QEMU told them (qom-get /machine memory);
   a virtio-mem device takes its whole max-size of maxmem and no slot */
static void
hp_mem_add_check(struct hp_op *op, const json_t *ret, json_t *lim)
{
	struct qmp_error	 e;
	const json_t		*d;
	long long		 plugged = 0, ndimms = 0, left, base, max;
	long long		 slots;
	size_t			 i;

	json_array_foreach(ret, i, d) {
		plugged += hp_mem_int(d, hp_is_virtio(d) ? "max-size" :
		    "size");
		if (!hp_is_virtio(d))
			ndimms++;
	}
	if (lim == NULL) {
		/* a QEMU without the machine's "memory" property: its own
		   device_add checks will have to do */
		hp_cpumem_reply(op, NULL, NULL);
		return;
	}
	base = json_integer_value(json_object_get(lim, "size"));
	max = json_integer_value(json_object_get(lim, "max-size"));
	slots = json_integer_value(json_object_get(lim, "slots"));
	left = max - base - plugged;
	if ((slots == 0 && !op->mem.virtio) || max <= base) {
		qmp_error_set(&e, QMP_CLS_GENERIC, "%s: the VM was started "
		    "without memory hotplug (-m SIZE,%smaxmem=MAX)",
		    op->mem.virtio ? "maxmem" : "slots/maxmem",
		    op->mem.virtio ? "" : "slots=N,");
	} else if (!op->mem.virtio && ndimms >= slots) {
		qmp_error_set(&e, QMP_CLS_GENERIC, "slots: all %lld DIMM "
		    "slots are in use", slots);
	} else if (op->mem.size > left) {
		qmp_error_set(&e, QMP_CLS_GENERIC, "maxmem: %lld MiB asked, "
		    "%lld MiB left below maxmem (%lld MiB)",
		    op->mem.size >> 20, left >> 20, max >> 20);
	} else {
		hp_cpumem_reply(op, NULL, NULL);
		return;
	}
	hp_cpumem_reply(op, NULL, &e);
}

static void
hp_mem_devs_done(struct hp_op *op, json_t *ret, const struct qmp_error *err)
{
	json_t	*lim = op->result;

	op->result = NULL;
	if (err != NULL)
		hp_cpumem_reply(op, NULL, err);
	else if (op->resize)
		hp_mem_resize_check(op, ret);
	else if (!op->add)
		hp_mem_del_check(op, ret);
	else
		hp_mem_add_check(op, ret, lim);
	json_decref(lim);
}

static void
hp_mem_limits_done(struct hp_op *op, json_t *ret, const struct qmp_error *err)
{
	/* none: hp_mem_add_check does without */
	op->result = err == NULL && json_is_object(ret) ? json_incref(ret) :
	    NULL;
	hp_exec(op, "query-memory-devices", NULL, NULL, 0, hp_mem_devs_done);
}

void
hp_mem_check_send(struct hp_op *op)
{
	json_decref(op->result);
	op->result = NULL;
	if (!op->add) {
		hp_exec(op, "query-memory-devices", NULL, NULL, 0,
		    hp_mem_devs_done);
		return;
	}
	hp_exec(op, "qom-get", json_pack("{s:s, s:s}", "path", "/machine",
	    "property", "memory"), NULL, 0, hp_mem_limits_done);
}

/* --- the operations ----------------------------------------------------- */

static const char *const hp_cpu_needs[] = { "query-hotpluggable-cpus",
    "device_add", "device_del", NULL };

static bool
hp_cpu_valid(const struct hp_cpu *c, struct qmp_error *err)
{
	size_t	i, j;

	if ((c->nids == 0) == (c->count == 0) || c->count > HP_CPU_MAX ||
	    c->nids > HP_CPU_MAX) {
		qmp_error_set(err, QMP_CLS_GENERIC, "give either 'count' "
		    "(1..%d) or 'ids' (1..%d of them)", HP_CPU_MAX,
		    HP_CPU_MAX);
		return (false);
	}
	for (i = 0; i < c->nids; i++) {
		if (!hp_id_valid(c->ids[i])) {
			qmp_error_set(err, QMP_CLS_GENERIC, "invalid CPU id: "
			    "a letter, then letters, digits, '-', '.', '_' "
			    "(at most %d)", HP_ID_MAX);
			return (false);
		}
		for (j = 0; j < i; j++) {
			if (strcmp(c->ids[i], c->ids[j]) == 0) {
				qmp_error_set(err, QMP_CLS_GENERIC, "CPU id "
				    "'%s' given twice", c->ids[i]);
				return (false);
			}
		}
	}
	return (true);
}

static void
hp_cpu_op(struct hp_vm *vm, const struct hp_cpu *c, bool add,
    hp_done_fn *done, void *arg)
{
	struct hp_op		*op;
	struct qmp_error	 err;

	if (!hp_cpu_valid(c, &err) || (op = hp_op_new(vm, add ? "cpu-add" :
	    "cpu-del", HP_CPU, add, HP_CPU_LOCK, hp_cpu_needs, done, arg,
	    &err)) == NULL) {
		hp_refuse(vm, &err, done, arg);
		return;
	}
	op->cpu = *c;
	hp_step_add(op, ST_CPU_SCAN, 0);
	hp_start(op);
}

void
hp_cpu_add(struct hp_vm *vm, const struct hp_cpu *c, hp_done_fn *done,
    void *arg)
{
	hp_cpu_op(vm, c, true, done, arg);
}

void
hp_cpu_del(struct hp_vm *vm, const struct hp_cpu *c, hp_done_fn *done,
    void *arg)
{
	hp_cpu_op(vm, c, false, done, arg);
}

void
hp_mem_add(struct hp_vm *vm, const struct hp_mem *m, hp_done_fn *done,
    void *arg)
{
	static const char *const needs[] = { "object-add", "object-del",
	    "device_add", "device_del", "query-memory-devices", "qom-get",
	    NULL };
	static const char *const needs_virtio[] = { "object-add",
	    "object-del", "device_add", "device_del", "query-memory-devices",
	    "qom-get", "query-pci", NULL };
	struct hp_op		*op;
	struct qmp_error	 err;
	bool			 file = strcmp(m->backend, "file") == 0;

	if (m->size <= 0 || m->size % HP_MEM_BLOCK != 0) {
		qmp_error_set(&err, QMP_CLS_GENERIC, "size must be a positive "
		    "multiple of %lld MiB (the guest's memory block), not %lld",
		    HP_MEM_BLOCK >> 20, m->size);
		goto refuse;
	}
	if (m->backend[0] != '\0' && strcmp(m->backend, "ram") != 0 &&
	    strcmp(m->backend, "memfd") != 0 && !file) {
		qmp_error_set(&err, QMP_CLS_GENERIC, "backend must be ram, "
		    "memfd or file");
		goto refuse;
	}
	if (file != (m->path[0] != '\0')) {
		qmp_error_set(&err, QMP_CLS_GENERIC, "'path' goes with "
		    "backend file, and only with it");
		goto refuse;
	}
	if (m->node < -1 || m->node > 255) {
		qmp_error_set(&err, QMP_CLS_GENERIC, "'node' must be 0..255");
		goto refuse;
	}
	/* a DIMM's slot is not a PCI one: slot is not looked at */
	if (!m->virtio && (m->requested != 0 || m->bus[0] != '\0')) {
		qmp_error_set(&err, QMP_CLS_GENERIC, "'requested-size', 'bus' "
		    "and 'addr' go with kind virtio-mem, and only with it");
		goto refuse;
	}
	if (m->requested < 0 || m->requested > m->size ||
	    m->requested % HP_MEM_VBLOCK != 0) {
		qmp_error_set(&err, QMP_CLS_GENERIC, "requested-size must be a "
		    "multiple of %lld MiB (virtio-mem's block) from 0 to size",
		    HP_MEM_VBLOCK >> 20);
		goto refuse;
	}
	if ((op = hp_op_new(vm, "mem-add", HP_MEM, true, m->id, m->virtio ?
	    needs_virtio : needs, done, arg, &err)) == NULL)
		goto refuse;
	op->mem = *m;
	snprintf(op->memdev, sizeof op->memdev, "qbmem-%s", m->id);
	hp_step_add(op, ST_MEM_CHECK, 0);
	/* a PCI device: its slot planned as a NIC's or a disk's */
	if (m->virtio)
		hp_step_add(op, ST_SCAN, 0);
	hp_step_add(op, ST_OBJECT_ADD, 0);
	hp_step_add(op, ST_DEVICE_ADD, 0);
	hp_start(op);
	return;
refuse:
	hp_refuse(vm, &err, done, arg);
}

void
hp_mem_resize(struct hp_vm *vm, const char *id, long long size,
    int timeout_ms, hp_done_fn *done, void *arg)
{
	static const char *const needs[] = { "query-memory-devices",
	    "qom-set", NULL };
	struct hp_op		*op;
	struct qmp_error	 err;

	if (size < 0 || timeout_ms < 0) {
		qmp_error_set(&err, QMP_CLS_GENERIC, "size and timeout-ms "
		    "cannot be negative");
		goto refuse;
	}
	if ((op = hp_op_new(vm, "mem-resize", HP_MEM, false, id, needs, done,
	    arg, &err)) == NULL)
		goto refuse;
	op->resize = true;
	op->rs_want = size;
	op->rs_timeout_ms = timeout_ms > 0 ? timeout_ms :
	    vm->unplug_timeout_ms;
	hp_step_add(op, ST_MEM_CHECK, 0);
	hp_start(op);
	return;
refuse:
	hp_refuse(vm, &err, done, arg);
}

static json_t *
hp_requested(const struct hp_op *op, long long size)
{
	char	path[HP_ID_MAX + sizeof HP_PERIPH];

	snprintf(path, sizeof path, HP_PERIPH "%s", op->id);
	return (json_pack("{s:s, s:s, s:I}", "path", path, "property",
	    "requested-size", "value", (json_int_t)size));
}

json_t *
hp_resize_args(const struct hp_op *op, int arg, const int **fds)
{
	return (hp_requested(op, op->rs_want));
}

json_t *
hp_resize_back_args(const struct hp_op *op, int arg, const int **fds)
{
	return (hp_requested(op, op->rs_prev));
}
