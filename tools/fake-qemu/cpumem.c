/*
 * CPU and memory hotplug as QEMU 7.2 (pc, TCG) does it: CPU slots
 * (-smp N,maxcpus=M: --smp, --maxcpus) listed by query-hotpluggable-cpus,
 * CPUs plugged with device_add of the slot's type and props; memory
 * backends (object-add/object-del of memory-backend-ram|memfd|file) and
 * pc-dimms on them (-m 256,slots=S,maxmem=X: --mem-slots, --maxmem) with
 * query-memory-devices and qom-get /machine memory. Texts and shapes are
 * QEMU 7.2's. device_del honours --unplug-delay as for PCI devices; an
 * unplugged CPU reports only its lapic's DEVICE_DELETED, as QEMU 7.2
 * under TCG does (the CPU object itself is never finalized there).
 *
 * virtio-mem-pci: a PCI device (pci.c gives it its slot) whose memory
 * part lives here. It needs maxmem but no DIMM slot, takes its whole
 * backend from maxmem, and cannot be unplugged (QEMU 7.2). qom-set of
 * its requested-size is followed by the guest's driver 20 ms later
 * (MEMORY_DEVICE_SIZE_CHANGE) while the VM runs; a stopped guest does
 * not follow, as a real one cannot.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/fake-qemu/fake.h"

#define CM_CPU_TYPE	"qemu64-x86_64-cpu"
#define CM_BASE_MEM	(256LL << 20)
#define CM_DIMM_ALIGN	(2LL << 20)
#define CM_VMEM_BLOCK	(2LL << 20)
#define CM_FOLLOW_MS	20

struct cm_obj {
	char		*id;
	char		*type;
	long long	 size;
	char		*user;		/* the DIMM on it */
};

struct cm_dev {
	char		*id;
	int		 cpu;		/* else a DIMM */
	int		 virtio;	/* a virtio-mem device */
	int		 slot;		/* CPU: core-id; DIMM: slot */
	char		*memdev;
	long long	 size, addr;
	long long	 max, requested;	/* virtio-mem */
	int		 node;
	int		 unplugging;
	struct event	*timer;
	struct vm	*vm;
};

struct fcm {
	struct cm_obj	**objs;	size_t nobjs;
	struct cm_dev	**devs;	size_t ndevs;
};

static struct fcm *
cm_get(struct vm *vm)
{
	if (vm->cm == NULL)
		vm->cm = xcalloc(1, sizeof *vm->cm);
	return (vm->cm);
}

static struct cm_obj *
cm_obj(struct vm *vm, const char *id)
{
	struct fcm	*c = cm_get(vm);
	size_t		 i;

	for (i = 0; i < c->nobjs; i++)
		if (strcmp(c->objs[i]->id, id) == 0)
			return (c->objs[i]);
	return (NULL);
}

static struct cm_dev *
cm_dev(struct vm *vm, const char *id)
{
	struct fcm	*c = cm_get(vm);
	size_t		 i;

	for (i = 0; i < c->ndevs; i++)
		if (strcmp(c->devs[i]->id, id) == 0)
			return (c->devs[i]);
	return (NULL);
}

int
cm_has(struct vm *vm, const char *id)
{
	return (cm_dev(vm, id) != NULL);
}

static void
cm_dev_free(struct cm_dev *d)
{
	if (d->timer != NULL)
		event_free(d->timer);
	free(d->id);
	free(d->memdev);
	free(d);
}

void
cm_free(struct vm *vm)
{
	struct fcm	*c = vm->cm;
	size_t		 i;

	if (c == NULL)
		return;
	for (i = 0; i < c->ndevs; i++)
		cm_dev_free(c->devs[i]);
	for (i = 0; i < c->nobjs; i++) {
		free(c->objs[i]->id);
		free(c->objs[i]->type);
		free(c->objs[i]->user);
		free(c->objs[i]);
	}
	free(c->devs);
	free(c->objs);
	free(c);
	vm->cm = NULL;
}

/* --- objects ------------------------------------------------------------ */

json_t *
cm_object_add(struct cmdctx *x, json_t *args, struct qmp_error *err)
{
	struct vm	*vm = x->vm;
	struct fcm	*c = cm_get(vm);
	struct cm_obj	*o;
	const char	*type, *id;
	json_t		*size;
	int		 bad;

	if ((type = arg_str(args, "qom-type", 1, err, &bad)) == NULL ||
	    (id = arg_str(args, "id", 1, err, &bad)) == NULL)
		return (NULL);
	if (strcmp(type, "memory-backend-ram") != 0 &&
	    strcmp(type, "memory-backend-memfd") != 0 &&
	    strcmp(type, "memory-backend-file") != 0) {
		qmp_error_set(err, QMP_CLS_GENERIC, "Invalid parameter type "
		    "for 'qom-type', expected: QOM type");
		return (NULL);
	}
	if (strcmp(type, "memory-backend-file") == 0 &&
	    arg_str(args, "mem-path", 1, err, &bad) == NULL)
		return (NULL);
	size = json_object_get(args, "size");
	if (!json_is_integer(size) || json_integer_value(size) <= 0) {
		qmp_error_set(err, QMP_CLS_GENERIC, "can't create backend "
		    "with size 0");
		return (NULL);
	}
	if (cm_obj(vm, id) != NULL) {
		qmp_error_set(err, QMP_CLS_GENERIC, "attempt to add duplicate "
		    "property '%s' to object (type 'container')", id);
		return (NULL);
	}
	o = xcalloc(1, sizeof *o);
	o->id = xstrdup(id);
	o->type = xstrdup(type);
	o->size = json_integer_value(size);
	c->objs = xreallocarray(c->objs, c->nobjs + 1, sizeof *c->objs);
	c->objs[c->nobjs++] = o;
	return (json_object());
}

json_t *
cm_object_del(struct cmdctx *x, json_t *args, struct qmp_error *err)
{
	struct vm	*vm = x->vm;
	struct fcm	*c = cm_get(vm);
	const char	*id;
	size_t		 i;
	int		 bad;

	if ((id = arg_str(args, "id", 1, err, &bad)) == NULL)
		return (NULL);
	for (i = 0; i < c->nobjs; i++)
		if (strcmp(c->objs[i]->id, id) == 0)
			break;
	if (i == c->nobjs) {
		qmp_error_set(err, QMP_CLS_GENERIC, "object '%s' not found",
		    id);
		return (NULL);
	}
	if (c->objs[i]->user != NULL) {
		qmp_error_set(err, QMP_CLS_GENERIC, "object '%s' is in use, "
		    "can not be deleted", id);
		return (NULL);
	}
	free(c->objs[i]->id);
	free(c->objs[i]->type);
	free(c->objs[i]);
	memmove(c->objs + i, c->objs + i + 1, (c->nobjs - i - 1) *
	    sizeof *c->objs);
	c->nobjs--;
	return (json_object());
}

/* --- devices ------------------------------------------------------------ */

static long long
cm_plugged(struct vm *vm)
{
	struct fcm	*c = cm_get(vm);
	long long	 n = 0;
	size_t		 i;

	for (i = 0; i < c->ndevs; i++)
		if (!c->devs[i]->cpu)
			n += c->devs[i]->virtio ? c->devs[i]->max :
			    c->devs[i]->size;
	return (n);
}

static struct cm_dev *
cm_dev_new(struct vm *vm, const char *id, int cpu, int slot)
{
	struct fcm	*c = cm_get(vm);
	struct cm_dev	*d = xcalloc(1, sizeof *d);

	d->vm = vm;
	d->id = xstrdup(id);
	d->cpu = cpu;
	d->slot = slot;
	c->devs = xreallocarray(c->devs, c->ndevs + 1, sizeof *c->devs);
	c->devs[c->ndevs++] = d;
	return (d);
}

static int
cm_cpu_taken(struct vm *vm, int core)
{
	struct fcm	*c = cm_get(vm);
	size_t		 i;

	if (core < vm->fake->smp)
		return (1);
	for (i = 0; i < c->ndevs; i++)
		if (c->devs[i]->cpu && c->devs[i]->slot == core)
			return (1);
	return (0);
}

static json_t *
cm_cpu_add(struct vm *vm, const char *id, json_t *args, struct qmp_error *err)
{
	static const char *const keys[] = { "socket-id", "core-id",
	    "thread-id", "node-id" };
	int64_t		 v[4] = { 0, -1, 0, 0 };
	int		 present, i;

	for (i = 0; i < 4; i++)
		if (arg_int(args, keys[i], &v[i], &present, err) != 0)
			return (NULL);
	if (v[1] < 0 || v[1] >= vm->fake->maxcpus) {
		qmp_error_set(err, QMP_CLS_GENERIC, "Invalid CPU core-id: %lld "
		    "must be in range 0:%d", (long long)v[1],
		    vm->fake->maxcpus - 1);
		return (NULL);
	}
	if (v[0] != 0 || v[2] != 0) {
		qmp_error_set(err, QMP_CLS_GENERIC, "Invalid CPU %s: %lld must "
		    "be in range 0:0", v[0] != 0 ? "socket-id" : "thread-id",
		    (long long)(v[0] != 0 ? v[0] : v[2]));
		return (NULL);
	}
	if (cm_cpu_taken(vm, (int)v[1])) {
		qmp_error_set(err, QMP_CLS_GENERIC, "CPU[%lld] with APIC ID "
		    "%lld exists", (long long)v[1], (long long)v[1]);
		return (NULL);
	}
	cm_dev_new(vm, id, 1, (int)v[1]);
	return (json_object());
}

/* The backend of a memory device being added, checked as QEMU does
   (a DIMM also against the slots); NULL with err if refused. */
static struct cm_obj *
cm_memdev(struct vm *vm, json_t *args, int dimm, struct qmp_error *err)
{
	struct fcm	*c = cm_get(vm);
	struct cm_obj	*o;
	const char	*md;
	long long	 total;
	int		 bad;
	size_t		 i, ndimms = 0;

	if ((md = arg_str(args, "memdev", 0, err, &bad)) == NULL) {
		if (!bad)
			qmp_error_set(err, QMP_CLS_GENERIC, "'memdev' property "
			    "is not set");
		return (NULL);
	}
	if ((o = cm_obj(vm, md)) == NULL) {
		qmp_error_set(err, QMP_CLS_GENERIC, "Device '%s' not found",
		    md);
		return (NULL);
	}
	if (o->user != NULL) {
		qmp_error_set(err, QMP_CLS_GENERIC, "can't use already busy "
		    "memdev: %s", md);
		return (NULL);
	}
	if (o->size % CM_DIMM_ALIGN != 0) {
		qmp_error_set(err, QMP_CLS_GENERIC, "backend memory size must "
		    "be multiple of 0x%llx", CM_DIMM_ALIGN);
		return (NULL);
	}
	total = vm->fake->maxmem - CM_BASE_MEM;
	if ((dimm && vm->fake->mem_slots == 0) || total <= 0) {
		qmp_error_set(err, QMP_CLS_GENERIC, "memory devices (e.g. for "
		    "memory hotplug) are not enabled, please specify the "
		    "maxmem option");
		return (NULL);
	}
	for (i = 0; i < c->ndevs; i++)
		if (!c->devs[i]->cpu && !c->devs[i]->virtio)
			ndimms++;
	if (dimm && ndimms >= (size_t)vm->fake->mem_slots) {
		qmp_error_set(err, QMP_CLS_GENERIC, "no free slots");
		return (NULL);
	}
	if (cm_plugged(vm) + o->size > total) {
		qmp_error_set(err, QMP_CLS_GENERIC, "not enough space, "
		    "currently 0x%llx in use of total space for memory "
		    "devices 0x%llx", cm_plugged(vm), total);
		return (NULL);
	}
	return (o);
}

static json_t *
cm_dimm_add(struct vm *vm, const char *id, json_t *args, struct qmp_error *err)
{
	struct fcm	*c = cm_get(vm);
	struct cm_obj	*o;
	struct cm_dev	*d;
	int64_t		 node = 0;
	int		 present, slot;
	size_t		 i;

	if (arg_int(args, "node", &node, &present, err) != 0 ||
	    (o = cm_memdev(vm, args, 1, err)) == NULL)
		return (NULL);
	/* the lowest free slot */
	for (slot = 0; ; slot++) {
		for (i = 0; i < c->ndevs; i++)
			if (!c->devs[i]->cpu && !c->devs[i]->virtio &&
			    c->devs[i]->slot == slot)
				break;
		if (i == c->ndevs)
			break;
	}
	d = cm_dev_new(vm, id, 0, slot);
	d->memdev = xstrdup(o->id);
	d->size = o->size;
	d->addr = (4LL << 30) + cm_plugged(vm) - o->size;
	d->node = (int)node;
	o->user = xstrdup(id);
	return (json_object());
}

/* The guest's driver plugs or unplugs what was requested. */
static void
cm_follow_cb(evutil_socket_t fd, short what, void *arg)
{
	struct cm_dev	*d = arg;
	char		 path[300];

	if (!d->vm->running || d->size == d->requested)
		return;
	d->size = d->requested;
	snprintf(path, sizeof path, "/machine/peripheral/%s", d->id);
	vm_event(d->vm, "MEMORY_DEVICE_SIZE_CHANGE", json_pack("{s:s, s:I, "
	    "s:s}", "id", d->id, "size", (json_int_t)d->size, "qom-path",
	    path));
}

static void
cm_follow(struct cm_dev *d)
{
	struct timeval	tv = { 0, CM_FOLLOW_MS * 1000 };

	if (d->timer == NULL)
		d->timer = evtimer_new(d->vm->fake->base, cm_follow_cb, d);
	evtimer_add(d->timer, &tv);
}

static int
cm_requested_ok(const struct cm_dev *d, long long v, struct qmp_error *err)
{
	if (v % CM_VMEM_BLOCK != 0) {
		qmp_error_set(err, QMP_CLS_GENERIC, "'requested-size' has to "
		    "be multiples of 'block-size' (0x%llx)", CM_VMEM_BLOCK);
		return (-1);
	}
	if (v > d->max) {
		qmp_error_set(err, QMP_CLS_GENERIC, "'requested-size' cannot "
		    "exceed the memory backend size(0x%llx)", d->max);
		return (-1);
	}
	return (0);
}

int
cm_vmem_add(struct vm *vm, const char *id, json_t *args,
    struct qmp_error *err)
{
	struct cm_obj	*o;
	struct cm_dev	*d, tmp;
	int64_t		 req = 0, node = 0;
	int		 present;

	if (id == NULL) {
		qmp_error_set(err, QMP_CLS_GENERIC, "fake-qemu: a "
		    "virtio-mem-pci needs an id");
		return (-1);
	}
	if (arg_int(args, "requested-size", &req, &present, err) != 0 ||
	    arg_int(args, "node", &node, &present, err) != 0 ||
	    (o = cm_memdev(vm, args, 0, err)) == NULL)
		return (-1);
	memset(&tmp, 0, sizeof tmp);
	tmp.max = o->size;
	if (cm_requested_ok(&tmp, req, err) != 0)
		return (-1);
	d = cm_dev_new(vm, id, 0, -1);
	d->virtio = 1;
	d->memdev = xstrdup(o->id);
	d->max = o->size;
	d->requested = req;
	d->addr = (4LL << 30) + cm_plugged(vm) - o->size;
	d->node = (int)node;
	o->user = xstrdup(id);
	if (req != 0)
		cm_follow(d);
	return (0);
}

json_t *
cm_qom_set(struct cmdctx *x, json_t *args, struct qmp_error *err)
{
	struct vm	*vm = x->vm;
	struct cm_dev	*d;
	const char	*path, *id, *prop;
	json_t		*v;
	int		 bad;

	if ((path = arg_str(args, "path", 1, err, &bad)) == NULL ||
	    (prop = arg_str(args, "property", 1, err, &bad)) == NULL)
		return (NULL);
	id = strncmp(path, "/machine/peripheral/", 20) == 0 ? path + 20 :
	    path;
	if ((d = cm_dev(vm, id)) == NULL || !d->virtio) {
		if (d != NULL || pci_has_id(vm, id))
			qmp_error_set(err, QMP_CLS_GENERIC, "Property "
			    "'%s.%s' not found", d != NULL ? "pc-dimm" :
			    "device", prop);
		else
			qmp_error_set(err, QMP_CLS_DEVNOTFOUND, "Device '%s' "
			    "not found", path);
		return (NULL);
	}
	if (strcmp(prop, "requested-size") != 0) {
		qmp_error_set(err, QMP_CLS_GENERIC, "Property "
		    "'virtio-mem-pci.%s' not found", prop);
		return (NULL);
	}
	v = json_object_get(args, "value");
	if (!json_is_integer(v) || json_integer_value(v) < 0) {
		qmp_error_set(err, QMP_CLS_GENERIC, "Parameter "
		    "'requested-size' expects a size");
		return (NULL);
	}
	if (cm_requested_ok(d, json_integer_value(v), err) != 0)
		return (NULL);
	d->requested = json_integer_value(v);
	cm_follow(d);
	return (json_object());
}

/* device_add of a CPU or a pc-dimm; 1 if driver is neither (for
   pci.c), else the reply (NULL with err). */
int
cm_device_add(struct cmdctx *x, json_t *args, json_t **ret,
    struct qmp_error *err)
{
	const char	*drv, *id;
	int		 bad, cpu;

	drv = json_string_value(json_object_get(args, "driver"));
	if (drv == NULL)
		return (1);
	cpu = strcmp(drv, CM_CPU_TYPE) == 0;
	if (!cpu && strcmp(drv, "pc-dimm") != 0)
		return (1);
	*ret = NULL;
	/* the peripheral ids of both models are one namespace */
	id = arg_str(args, "id", 1, err, &bad);
	if (id == NULL)
		return (0);
	if (cm_has(x->vm, id) || pci_has_id(x->vm, id)) {
		qmp_error_set(err, QMP_CLS_GENERIC, "Duplicate device ID '%s'",
		    id);
		return (0);
	}
	*ret = cpu ? cm_cpu_add(x->vm, id, args, err) :
	    cm_dimm_add(x->vm, id, args, err);
	return (0);
}

static void
cm_remove(struct vm *vm, struct cm_dev *d)
{
	struct fcm	*c = cm_get(vm);
	struct cm_obj	*o;
	char		 path[300];
	size_t		 i;

	if (d->cpu)
		snprintf(path, sizeof path, "/machine/peripheral/%s/lapic",
		    d->id);
	else {
		if ((o = cm_obj(vm, d->memdev)) != NULL) {
			free(o->user);
			o->user = NULL;
		}
		snprintf(path, sizeof path, "/machine/peripheral/%s", d->id);
	}
	vm_event(vm, "DEVICE_DELETED", d->cpu ? json_pack("{s:s}", "path",
	    path) : json_pack("{s:s, s:s}", "device", d->id, "path", path));
	for (i = 0; i < c->ndevs; i++) {
		if (c->devs[i] == d) {
			memmove(c->devs + i, c->devs + i + 1,
			    (c->ndevs - i - 1) * sizeof *c->devs);
			c->ndevs--;
			break;
		}
	}
	cm_dev_free(d);
}

static void
cm_unplug_cb(evutil_socket_t fd, short what, void *arg)
{
	struct cm_dev	*d = arg;

	cm_remove(d->vm, d);
}

/* device_del of a CPU or DIMM: 1 if id is neither. */
int
cm_device_del(struct cmdctx *x, const char *id, json_t **ret,
    struct qmp_error *err)
{
	struct vm	*vm = x->vm;
	struct cm_dev	*d;
	struct timeval	 tv;
	long		 delay = vm->fake->unplug_delay;

	if ((d = cm_dev(vm, id)) == NULL)
		return (1);
	*ret = NULL;
	if (d->virtio) {
		qmp_error_set(err, QMP_CLS_GENERIC, "virtio based memory "
		    "devices cannot be unplugged.");
		return (0);
	}
	if (d->unplugging) {
		qmp_error_set(err, QMP_CLS_GENERIC, "Device %s is already in "
		    "the process of unplug", id);
		return (0);
	}
	d->unplugging = 1;
	*ret = json_object();
	if (delay == 0) {
		cm_remove(vm, d);
		return (0);
	}
	if (delay > 0) {
		d->timer = evtimer_new(vm->fake->base, cm_unplug_cb, d);
		tv.tv_sec = delay / 1000;
		tv.tv_usec = (delay % 1000) * 1000;
		evtimer_add(d->timer, &tv);
	}
	return (0);
}

/* --- queries ------------------------------------------------------------ */

json_t *
cm_query_cpus(struct cmdctx *x, json_t *args, struct qmp_error *err)
{
	struct vm	*vm = x->vm;
	struct fcm	*c = cm_get(vm);
	json_t		*list = json_array(), *e;
	char		 path[300];
	size_t		 i;
	int		 core;

	for (core = vm->fake->maxcpus - 1; core >= 0; core--) {
		e = json_pack("{s:{s:i, s:i, s:i, s:i}, s:i, s:s}", "props",
		    "core-id", core, "thread-id", 0, "node-id", 0,
		    "socket-id", 0, "vcpus-count", 1, "type", CM_CPU_TYPE);
		if (core < vm->fake->smp) {
			snprintf(path, sizeof path,
			    "/machine/unattached/device[%d]", core);
			json_object_set_new(e, "qom-path", json_string(path));
		}
		for (i = 0; i < c->ndevs; i++) {
			if (c->devs[i]->cpu && c->devs[i]->slot == core) {
				snprintf(path, sizeof path,
				    "/machine/peripheral/%s", c->devs[i]->id);
				json_object_set_new(e, "qom-path",
				    json_string(path));
			}
		}
		json_array_append_new(list, e);
	}
	return (list);
}

json_t *
cm_query_memdevs(struct cmdctx *x, json_t *args, struct qmp_error *err)
{
	struct fcm	*c = cm_get(x->vm);
	struct cm_dev	*d;
	json_t		*list = json_array();
	char		 md[300];
	size_t		 i;

	for (i = 0; i < c->ndevs; i++) {
		d = c->devs[i];
		if (d->cpu)
			continue;
		snprintf(md, sizeof md, "/objects/%s", d->memdev);
		if (d->virtio) {
			json_array_append_new(list, json_pack("{s:s, s:{s:s, "
			    "s:I, s:I, s:I, s:i, s:I, s:I, s:s}}", "type",
			    "virtio-mem", "data", "memdev", md, "memaddr",
			    (json_int_t)d->addr, "block-size",
			    (json_int_t)CM_VMEM_BLOCK, "size",
			    (json_int_t)d->size, "node", d->node, "max-size",
			    (json_int_t)d->max, "requested-size",
			    (json_int_t)d->requested, "id", d->id));
			continue;
		}
		json_array_append_new(list, json_pack("{s:s, s:{s:s, s:b, "
		    "s:I, s:b, s:I, s:i, s:i, s:s}}", "type", "dimm", "data",
		    "memdev", md, "hotplugged", 1, "addr", (json_int_t)d->addr,
		    "hotpluggable", 1, "size", (json_int_t)d->size, "slot",
		    d->slot, "node", d->node, "id", d->id));
	}
	return (list);
}

json_t *
cm_qom_get(struct cmdctx *x, json_t *args, struct qmp_error *err)
{
	struct vm	*vm = x->vm;
	const char	*path, *prop;
	int		 bad;

	if ((path = arg_str(args, "path", 1, err, &bad)) == NULL ||
	    (prop = arg_str(args, "property", 1, err, &bad)) == NULL)
		return (NULL);
	if (strcmp(path, "/machine") == 0 && strcmp(prop, "memory") == 0)
		return (json_pack("{s:I, s:i, s:I}", "size",
		    (json_int_t)CM_BASE_MEM, "slots", vm->fake->mem_slots,
		    "max-size", (json_int_t)(vm->fake->maxmem > CM_BASE_MEM ?
		    vm->fake->maxmem : CM_BASE_MEM)));
	qmp_error_set(err, QMP_CLS_GENERIC, "Property '%s' not found", prop);
	return (NULL);
}

/* qom-list /machine/peripheral: the CPUs and DIMMs among the devices */
void
cm_qom_peripheral(struct vm *vm, json_t *list)
{
	struct fcm	*c = cm_get(vm);
	size_t		 i;

	/* a virtio-mem device is pci.c's to list */
	for (i = 0; i < c->ndevs; i++)
		if (!c->devs[i]->virtio)
			json_array_append_new(list, json_pack("{s:s, s:s}",
			    "name", c->devs[i]->id, "type", c->devs[i]->cpu ?
			    "child<" CM_CPU_TYPE ">" : "child<pc-dimm>"));
}

/* TCG, as every fake VM is */
json_t *
cm_query_kvm(struct cmdctx *x, json_t *args, struct qmp_error *err)
{
	return (json_pack("{s:b, s:b}", "enabled", 0, "present", 0));
}
