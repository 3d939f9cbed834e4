/*
 * The PCI device model: machine built-ins, hot-added devices in the slots
 * they took, bridges and root ports with their own buses, SCSI disks on
 * virtio-scsi controllers; device_add/device_del with QEMU 7.2's checks and
 * texts, DEVICE_DELETED as QEMU sends it, query-pci and qom-list shapes.
 *
 * query-pci shows what a booted guest's firmware leaves behind: bridges
 * get secondary bus numbers depth-first, so their devices are listed. (A
 * real QEMU started with -S and never run reports secondary 0 and no
 * "devices" for bridges, since nothing enumerated them.)
 */
#include "config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/fake-qemu/fake.h"
#include "tools/fake-qemu/pci.h"

#define R_MEM(bar, sz, pf, m64) "{\"prefetch\": " pf ", \"mem_type_64\": " \
	m64 ", \"bar\": " #bar ", \"size\": " #sz ", \"address\": -1, " \
	"\"type\": \"memory\"}"
#define R_IO(bar, sz) "{\"bar\": " #bar ", \"size\": " #sz ", \"address\": " \
	"-1, \"type\": \"io\"}"
#define R_VIRTIO R_MEM(1, 4096, "false", "false") ", " \
	R_MEM(4, 16384, "true", "true")
#define R_ROM ", " R_MEM(6, 262144, "false", "false")

/* Ids and regions copied from query-pci of QEMU 7.2 (pc and q35). */
static const struct drv drvs[] = {
	{ "virtio-net-pci", K_NET, 512, "Ethernet controller", 4096, 1, 4161,
	  4352, "virtio-net-device",
	  "[" R_IO(0, 32) ", " R_VIRTIO R_ROM "]", "[" R_VIRTIO R_ROM "]" },
	{ "virtio-blk-pci", K_BLK, 256, "SCSI controller", 4097, 2, 4162,
	  4352, "virtio-blk-device",
	  "[" R_IO(0, 128) ", " R_VIRTIO "]", "[" R_VIRTIO "]" },
	{ "virtio-scsi-pci", K_SCSI, 256, "SCSI controller", 4100, 8, 4168,
	  4352, "virtio-scsi-device",
	  "[" R_IO(0, 64) ", " R_VIRTIO "]", "[" R_VIRTIO "]" },
	{ "scsi-hd", K_SCSI_HD, 0, NULL, 0, 0, 0, 0, NULL, NULL, NULL },
	{ "pci-bridge", K_BRIDGE, 1540, "PCI bridge", 1, -1, 1, -1, NULL,
	  "[" R_MEM(0, 256, "false", "true") "]",
	  "[" R_MEM(0, 256, "false", "true") "]" },
	{ "pcie-root-port", K_RP, 1540, "PCI bridge", 12, -1, 12, -1, NULL,
	  "[" R_MEM(0, 4096, "false", "false") "]",
	  "[" R_MEM(0, 4096, "false", "false") "]" },
	/* modern only, class 0xff with no desc; its memory is cpumem.c's */
	{ "virtio-mem-pci", K_VMEM, 255, NULL, 4184, 4352, 4184, 4352,
	  "virtio-mem", "[" R_MEM(4, 16384, "true", "true") "]",
	  "[" R_MEM(4, 16384, "true", "true") "]" },
};

struct builtin {
	int		 slot, func;
	const char	*name;		/* QEMU's device name, for errors */
	int		 cls;
	const char	*desc;
	int		 device, irq_pin;
	const char	*regions;
};

static const struct builtin pc_builtins[] = {
	{ 0, 0, "i440FX", 1536, "Host bridge", 4663, 0, "[]" },
	{ 1, 0, "PIIX3", 1537, "ISA bridge", 28672, 0, "[]" },
	{ 1, 1, "piix3-ide", 257, "IDE controller", 28688, 0,
	  "[" R_IO(4, 16) "]" },
	{ 1, 3, "PIIX4_PM", 1664, "Bridge", 28947, 1, "[]" },
	{ -1, 0, NULL, 0, NULL, 0, 0, NULL },
};

static const struct builtin q35_builtins[] = {
	{ 0, 0, "mch", 1536, "Host bridge", 10688, 0, "[]" },
	{ 31, 0, "ICH9-LPC", 1537, "ISA bridge", 10520, 0, "[]" },
	{ 31, 2, "ich9-ahci", 262, "SATA controller", 10530, 1,
	  "[" R_IO(4, 32) ", " R_MEM(5, 4096, "false", "false") "]" },
	{ 31, 3, "ICH9-SMB", 3077, "SMBus", 10544, 1, "[" R_IO(4, 64) "]" },
	{ -1, 0, NULL, 0, NULL, 0, 0, NULL },
};

static json_t *pc_regions[sizeof drvs / sizeof drvs[0]][2];

void
pci_init(void)
{
	/* Region lists are parsed once; every query-pci copies them. */
	size_t	i;

	for (i = 0; i < sizeof drvs / sizeof drvs[0]; i++) {
		if (drvs[i].regions_legacy == NULL)
			continue;
		pc_regions[i][0] = json_loads(drvs[i].regions_legacy, 0, NULL);
		pc_regions[i][1] = json_loads(drvs[i].regions_modern, 0, NULL);
		if (pc_regions[i][0] == NULL || pc_regions[i][1] == NULL)
			fake_fatal("bad region table for %s", drvs[i].name);
	}
}

static const struct drv *
drv_find(const char *name)
{
	size_t	i;

	for (i = 0; i < sizeof drvs / sizeof drvs[0]; i++) {
		if (strcmp(drvs[i].name, name) == 0)
			return (&drvs[i]);
	}
	return (NULL);
}

static struct dev *
dev_new(struct vm *vm, const struct drv *drv, const char *id)
{
	struct dev	*d = xcalloc(1, sizeof *d);
	char		 path[256];

	d->vm = vm;
	d->drv = drv;
	if (id != NULL) {
		d->id = xstrdup(id);
		snprintf(path, sizeof path, "/machine/peripheral/%s", id);
	} else
		snprintf(path, sizeof path, "/machine/peripheral-anon/"
		    "device[%u]", vm->anon++);
	d->qom = xstrdup(path);
	vm->devs = xreallocarray(vm->devs, vm->ndevs + 1, sizeof *vm->devs);
	vm->devs[vm->ndevs++] = d;
	return (d);
}

/* q35 root ports exist from the start; made on first use so an idle VM
   in scale mode costs nothing. */
void
pci_ensure(struct vm *vm)
{
	struct dev	*d;
	char		 id[16];
	int		 i;

	if (vm->pci_built)
		return;
	vm->pci_built = 1;
	if (vm->fake->machine != M_Q35)
		return;
	for (i = 0; i < vm->fake->root_ports; i++) {
		snprintf(id, sizeof id, "rp%d", i + 1);
		d = dev_new(vm, drv_find("pcie-root-port"), id);
		d->builtin = 1;
		d->slot = i + 2;
	}
}

static struct dev *
dev_find(struct vm *vm, const char *id)
{
	size_t	i;

	for (i = 0; i < vm->ndevs; i++) {
		if (vm->devs[i]->id != NULL && strcmp(vm->devs[i]->id, id) == 0)
			return (vm->devs[i]);
	}
	return (NULL);
}

int
pci_has_id(struct vm *vm, const char *id)
{
	return (dev_find(vm, id) != NULL);
}

static const char *
root_bus_name(struct vm *vm)
{
	return (vm->fake->machine == M_Q35 ? "pcie.0" : "pci.0");
}

static const struct builtin *
builtins(struct vm *vm)
{
	return (vm->fake->machine == M_Q35 ? q35_builtins : pc_builtins);
}

/* Who holds slot.func on the bus owned by 'bus' (NULL: root)? */
static int
pci_taken(struct vm *vm, struct dev *bus, int slot, int func,
    const char **name, const char **id)
{
	const struct builtin	*b;
	size_t			 i;

	if (bus == NULL) {
		for (b = builtins(vm); b->name != NULL; b++) {
			if (b->slot == slot && b->func == func) {
				*name = b->name;
				*id = "(null)";	/* glibc's %s of NULL */
				return (1);
			}
		}
	}
	for (i = 0; i < vm->ndevs; i++) {
		struct dev *d = vm->devs[i];
		if (d->drv->kind == K_SCSI_HD || d->parent != bus ||
		    d->slot != slot || d->func != func)
			continue;
		*name = d->drv->name;
		*id = d->id != NULL ? d->id : "(null)";
		return (1);
	}
	return (0);
}

/* "5", "0x5", "05.1": slot.function in hex, as PCI address properties. */
static int
pci_parse_addr(json_t *v, int *slot, int *func)
{
	const char	*s;
	char		*end;
	unsigned long	 sl, fn = 0;

	if (json_is_integer(v)) {
		if (json_integer_value(v) < 0 || json_integer_value(v) > 255)
			return (-1);
		*slot = json_integer_value(v) >> 3;
		*func = json_integer_value(v) & 7;
		return (0);
	}
	if (!json_is_string(v))
		return (-1);
	s = json_string_value(v);
	if (!isxdigit((unsigned char)*s))
		return (-1);
	sl = strtoul(s, &end, 16);
	if (*end == '.') {
		if (!isxdigit((unsigned char)end[1]))
			return (-1);
		fn = strtoul(end + 1, &end, 16);
	}
	if (*end != '\0' || sl > 31 || fn > 7)
		return (-1);
	*slot = sl;
	*func = fn;
	return (0);
}

static int
valid_id(const char *s)
{
	if (!isalpha((unsigned char)*s) || strlen(s) > 127)
		return (0);
	for (; *s != '\0'; s++) {
		if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_' &&
		    *s != '.')
			return (0);
	}
	return (1);
}

static const char *const dev_props[] = {
	"driver", "id", "bus", "addr", "netdev", "mac", "mq", "vectors",
	"drive", "chassis_nr", "chassis", "port", "multifunction", "scsi-id",
	"lun", "channel", "serial", "bootindex", "romfile", "rombar",
	"share-rw", "write-cache", "num-queues", "queue-size",
	"disable-legacy", "disable-modern", "host_mtu", "rx_queue_size",
	"tx_queue_size", "failover", "wwn", "logical_block_size",
	"physical_block_size", "discard_granularity", "iothread",
	/* from here: virtio-mem-pci's alone */
	"memdev", "requested-size", "node", NULL
};
#define VMEM_PROPS	((int)(sizeof dev_props / sizeof dev_props[0]) - 4)

json_t *
pci_device_add(struct cmdctx *x, json_t *args, struct qmp_error *err)
{
	struct vm	*vm = x->vm;
	const struct drv *drv;
	struct dev	*bus = NULL, *d, *o;
	struct netdev	*nd = NULL;
	struct bnode	*bn = NULL;
	const char	*dname, *id, *busname, *netdev, *drive, *on, *oid, *k;
	const char	*root = root_bus_name(vm);
	json_t		*v, *addr;
	int		 bad, slot = -1, func = 0, hotplug, i;
	int64_t		 scsi_id = -1, lun = 0;
	int		 has_sid, has_lun;
	char		 qdev[300], scsibus[160];
	size_t		 j;

	pci_ensure(vm);
	if (cm_device_add(x, args, &v, err) == 0)
		return (v);
	if ((dname = arg_str(args, "driver", 1, err, &bad)) == NULL)
		return (NULL);
	if ((drv = drv_find(dname)) == NULL) {
		qmp_error_set(err, QMP_CLS_GENERIC, "'%s' is not a valid "
		    "device model name", dname);
		return (NULL);
	}
	id = arg_str(args, "id", 0, err, &bad);
	if (bad)
		return (NULL);
	busname = arg_str(args, "bus", 0, err, &bad);
	if (bad)
		return (NULL);

	/* The bus: named, or the machine's default for this kind. */
	if (drv->kind == K_SCSI_HD) {
		for (j = 0; j < vm->ndevs && bus == NULL; j++) {
			o = vm->devs[j];
			if (o->drv->kind != K_SCSI || o->unplugging)
				continue;
			snprintf(scsibus, sizeof scsibus, "%s.0",
			    o->id != NULL ? o->id : o->qom);
			if (busname == NULL || strcmp(busname, scsibus) == 0)
				bus = o;
		}
		if (bus == NULL) {
			if (busname != NULL && strcmp(busname, root) != 0 &&
			    dev_find(vm, busname) == NULL)
				qmp_error_set(err, QMP_CLS_GENERIC,
				    "Bus '%s' not found", busname);
			else if (busname != NULL)
				qmp_error_set(err, QMP_CLS_GENERIC, "Device "
				    "'%s' can't go on PCI bus", dname);
			else
				qmp_error_set(err, QMP_CLS_GENERIC, "No 'SCSI'"
				    " bus found for device '%s'", dname);
			return (NULL);
		}
		hotplug = 1;
	} else {
		if (busname != NULL && strcmp(busname, root) != 0) {
			bus = dev_find(vm, busname);
			if (bus == NULL || bus->unplugging || (bus->drv->kind !=
			    K_BRIDGE && bus->drv->kind != K_RP)) {
				qmp_error_set(err, QMP_CLS_GENERIC,
				    "Bus '%s' not found", busname);
				return (NULL);
			}
		}
		/* q35's pcie.0 does not hotplug; bridges and ports do. */
		hotplug = bus != NULL || vm->fake->machine == M_PC;
		if (drv->kind == K_RP)
			hotplug = 0;
	}
	if (!hotplug) {
		qmp_error_set(err, QMP_CLS_GENERIC, "Bus '%s' does not support "
		    "hotplugging", bus != NULL ? bus->id : root);
		return (NULL);
	}
	if (id != NULL && !valid_id(id)) {
		qmp_error_set(err, QMP_CLS_GENERIC,
		    "Parameter 'id' expects an identifier");
		return (NULL);
	}
	if (id != NULL && (dev_find(vm, id) != NULL || cm_has(vm, id))) {
		qmp_error_set(err, QMP_CLS_GENERIC, "Duplicate device ID '%s'",
		    id);
		return (NULL);
	}
	json_object_foreach(args, k, v) {
		for (i = 0; dev_props[i] != NULL; i++) {
			if (strcmp(dev_props[i], k) == 0)
				break;
		}
		if (dev_props[i] == NULL || (drv->kind != K_VMEM &&
		    i >= VMEM_PROPS)) {
			qmp_error_set(err, QMP_CLS_GENERIC,
			    "Property '%s.%s' not found", dname, k);
			return (NULL);
		}
	}

	/* Properties. */
	if ((addr = json_object_get(args, "addr")) != NULL &&
	    drv->kind != K_SCSI_HD && pci_parse_addr(addr, &slot, &func) != 0) {
		qmp_error_set(err, QMP_CLS_GENERIC, "Property '%s.addr' "
		    "doesn't take value '%s'", dname, json_is_string(addr) ?
		    json_string_value(addr) : "?");
		return (NULL);
	}
	netdev = arg_str(args, "netdev", 0, err, &bad);
	if (bad)
		return (NULL);
	if (netdev != NULL) {
		if (drv->kind != K_NET) {
			qmp_error_set(err, QMP_CLS_GENERIC, "Property "
			    "'%s.netdev' not found", dname);
			return (NULL);
		}
		if ((nd = vm_netdev(vm, netdev)) == NULL) {
			qmp_error_set(err, QMP_CLS_GENERIC, "Property "
			    "'virtio-net-device.netdev' can't find value '%s'",
			    netdev);
			return (NULL);
		}
		if (nd->user != NULL) {
			qmp_error_set(err, QMP_CLS_GENERIC, "Property "
			    "'virtio-net-device.netdev' can't take value '%s', "
			    "it's in use", netdev);
			return (NULL);
		}
	}
	drive = arg_str(args, "drive", 0, err, &bad);
	if (bad)
		return (NULL);
	if (drv->kind == K_BLK || drv->kind == K_SCSI_HD) {
		const char *pname = drv->kind == K_BLK ?
		    "virtio-blk-device" : "scsi-hd";
		if (drive == NULL) {
			qmp_error_set(err, QMP_CLS_GENERIC,
			    "drive property not set");
			return (NULL);
		}
		if ((bn = blk_find(vm, drive)) == NULL) {
			qmp_error_set(err, QMP_CLS_GENERIC, "Property "
			    "'%s.drive' can't find value '%s'", pname, drive);
			return (NULL);
		}
	} else if (drive != NULL) {
		qmp_error_set(err, QMP_CLS_GENERIC, "Property '%s.drive' not "
		    "found", dname);
		return (NULL);
	}
	if (drv->kind == K_SCSI_HD) {
		if (arg_int(args, "scsi-id", &scsi_id, &has_sid, err) != 0 ||
		    arg_int(args, "lun", &lun, &has_lun, err) != 0)
			return (NULL);
		if (scsi_id > 255 || lun > 16383 || (has_sid && scsi_id < 0) ||
		    lun < 0) {
			qmp_error_set(err, QMP_CLS_GENERIC,
			    "bad scsi device id or lun");
			return (NULL);
		}
	}

	/* Realize: the address on its bus. */
	j = 0;
	if (drv->kind == K_SCSI_HD) {
		for (i = has_sid ? scsi_id : 0; i < 256; i++) {
			for (j = 0; j < vm->ndevs; j++) {
				o = vm->devs[j];
				if (o->drv->kind == K_SCSI_HD &&
				    o->parent == bus && o->slot == i &&
				    o->func == lun)
					break;
			}
			if (j == vm->ndevs || has_sid)
				break;
		}
		if (i == 256 || j != vm->ndevs) {
			qmp_error_set(err, QMP_CLS_GENERIC, "lun already "
			    "used by '%s'", j != vm->ndevs ?
			    vm->devs[j]->qom : "?");
			return (NULL);
		}
		slot = i;
		func = lun;
	} else if (slot >= 0) {
		if (pci_taken(vm, bus, slot, func, &on, &oid)) {
			if (bus != NULL && bus->drv->kind == K_RP &&
			    slot != 0) {
				qmp_error_set(err, QMP_CLS_GENERIC, "PCI: slot "
				    "0 function 0 already occupied by %s, new "
				    "func %s cannot be exposed to guest.", on,
				    dname);
				return (NULL);
			}
			qmp_error_set(err, QMP_CLS_GENERIC, "PCI: slot %d "
			    "function %d not available for %s, in use by "
			    "%s,id=%s", slot, func, dname, on, oid);
			return (NULL);
		}
		if (bus != NULL && bus->drv->kind == K_RP && slot != 0 &&
		    pci_taken(vm, bus, 0, 0, &on, &oid)) {
			qmp_error_set(err, QMP_CLS_GENERIC, "PCI: slot 0 "
			    "function 0 already occupied by %s, new func %s "
			    "cannot be exposed to guest.", on, dname);
			return (NULL);
		}
	} else {
		for (slot = 0; slot < 32; slot++) {
			if (!pci_taken(vm, bus, slot, 0, &on, &oid))
				break;
		}
		if (slot == 32) {
			qmp_error_set(err, QMP_CLS_GENERIC, "PCI: no slot/"
			    "function available for %s, all in use or "
			    "reserved", dname);
			return (NULL);
		}
	}

	if (drv->kind == K_VMEM && cm_vmem_add(vm, id, args, err) != 0)
		return (NULL);
	d = dev_new(vm, drv, id);
	d->parent = bus;
	d->slot = slot;
	d->func = func;
	if (drv->kind == K_BLK)
		snprintf(qdev, sizeof qdev, "%s/virtio-backend", d->qom);
	else
		snprintf(qdev, sizeof qdev, "%s", d->qom);
	if (bn != NULL) {
		/* A second user of one node: QEMU's permission conflict. */
		if (blk_in_use(bn)) {
			qmp_error_set(err, QMP_CLS_GENERIC, "Permission conflict"
			    " on node '%s': permissions 'write' are both "
			    "required by an existing user (uses node '%s' as "
			    "'root' child) and unshared by block device '%s' "
			    "(uses node '%s' as 'root' child).", drive, drive,
			    qdev, drive);
			vm->ndevs--;
			free(d->id);
			free(d->qom);
			free(d);
			return (NULL);
		}
		blk_set_user(bn, qdev);
		d->drive = xstrdup(drive);
	}
	if (nd != NULL) {
		nd->user = xstrdup(id != NULL ? id : d->qom);
		d->netdev = xstrdup(netdev);
	}
	return (json_object());
}

static void
dev_free(struct dev *d)
{
	if (d->timer != NULL)
		event_free(d->timer);
	free(d->id);
	free(d->qom);
	free(d->netdev);
	free(d->drive);
	free(d);
}

/* Gone from the guest: children first, then DEVICE_DELETED as QEMU 7.2
   sends it (the virtio backend's, then the device's own). */
static void
dev_remove(struct vm *vm, struct dev *d)
{
	struct netdev	*nd;
	struct bnode	*bn;
	json_t		*data;
	char		 path[300];
	size_t		 i;

	for (i = 0; i < vm->ndevs; ) {
		if (vm->devs[i]->parent == d)
			dev_remove(vm, vm->devs[i]);	/* shifts the array */
		else
			i++;
	}
	if (d->netdev != NULL && (nd = vm_netdev(vm, d->netdev)) != NULL) {
		free(nd->user);
		nd->user = NULL;
	}
	if (d->drive != NULL && (bn = blk_find(vm, d->drive)) != NULL)
		blk_set_user(bn, NULL);
	if (d->drv->backend != NULL) {
		snprintf(path, sizeof path, "%s/virtio-backend", d->qom);
		vm_event(vm, "DEVICE_DELETED", json_pack("{s:s}", "path",
		    path));
	}
	data = json_object();
	if (d->id != NULL)
		json_object_set_new(data, "device", json_string(d->id));
	json_object_set_new(data, "path", json_string(d->qom));
	vm_event(vm, "DEVICE_DELETED", data);
	for (i = 0; i < vm->ndevs; i++) {
		if (vm->devs[i] == d) {
			memmove(vm->devs + i, vm->devs + i + 1,
			    (vm->ndevs - i - 1) * sizeof *vm->devs);
			vm->ndevs--;
			break;
		}
	}
	dev_free(d);
}

static void
dev_unplug_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dev	*d = arg;

	dev_remove(d->vm, d);
}

json_t *
pci_device_del(struct cmdctx *x, json_t *args, struct qmp_error *err)
{
	struct vm	*vm = x->vm;
	struct dev	*d;
	const char	*id, *k;
	json_t		*v;
	struct timeval	 tv;
	long		 delay = vm->fake->unplug_delay;
	int		 bad;

	pci_ensure(vm);
	if ((id = arg_str(args, "id", 1, err, &bad)) == NULL)
		return (NULL);
	json_object_foreach(args, k, v) {
		if (strcmp(k, "id") != 0) {
			qmp_error_set(err, QMP_CLS_GENERIC,
			    "Parameter '%s' is unexpected", k);
			return (NULL);
		}
	}
	if (strncmp(id, "/machine/peripheral/", 20) == 0)
		id += 20;
	if (cm_device_del(x, id, &v, err) == 0)
		return (v);
	if ((d = dev_find(vm, id)) == NULL) {
		qmp_error_set(err, QMP_CLS_DEVNOTFOUND, "Device '%s' not found",
		    id);
		return (NULL);
	}
	if (d->builtin) {
		qmp_error_set(err, QMP_CLS_GENERIC, "Bus '%s' does not support "
		    "hotplugging", root_bus_name(vm));
		return (NULL);
	}
	if (d->unplugging) {
		qmp_error_set(err, QMP_CLS_GENERIC, "Device %s is already in "
		    "the process of unplug", id);
		return (NULL);
	}
	d->unplugging = 1;
	/*
	 * SCSI disks leave at once; so does any device with a zero delay,
	 * which QEMU does whenever unplug completes synchronously: the
	 * events then precede the reply. A delay models a guest that
	 * answers later; -1 one that never does.
	 */
	if (d->drv->kind == K_SCSI_HD || delay == 0) {
		dev_remove(vm, d);
		return (json_object());
	}
	if (delay > 0) {
		d->timer = evtimer_new(vm->fake->base, dev_unplug_cb, d);
		tv.tv_sec = delay / 1000;
		tv.tv_usec = (delay % 1000) * 1000;
		evtimer_add(d->timer, &tv);
	}
	return (json_object());
}

/* Firmware-like numbering: depth first, in slot order. */
static int
pci_number(struct vm *vm, struct dev *bus, int next)
{
	int	slot, func;
	size_t	i;

	for (slot = 0; slot < 32; slot++) {
		for (func = 0; func < 8; func++) {
			for (i = 0; i < vm->ndevs; i++) {
				struct dev *d = vm->devs[i];
				if (d->parent != bus || d->slot != slot ||
				    d->func != func ||
				    (d->drv->kind != K_BRIDGE &&
				    d->drv->kind != K_RP))
					continue;
				d->secondary = next++;
				next = pci_number(vm, d, next);
				d->subordinate = next - 1;
			}
		}
	}
	return (next);
}

static json_t *
pci_ids(int device, int vendor, int sub)
{
	if (sub < 0)
		return (json_pack("{s:i,s:i}", "device", device, "vendor",
		    vendor));
	return (json_pack("{s:i,s:i,s:i,s:i}", "device", device,
	    "subsystem-vendor", 6900, "vendor", vendor, "subsystem", sub));
}

static json_t *pci_bus_devices(struct vm *, struct dev *, int);

static json_t *
pci_dev_json(struct vm *vm, struct dev *d, int busnr)
{
	json_t	*o = json_object(), *br;
	int	 modern = d->parent != NULL && d->parent->drv->kind == K_RP;
	size_t	 di = d->drv - drvs;

	json_object_set_new(o, "irq_pin", json_integer(1));
	json_object_set_new(o, "bus", json_integer(busnr));
	if (d->drv->kind == K_BRIDGE || d->drv->kind == K_RP) {
		br = json_pack("{s:{s:{s:I,s:I},s:{s:I,s:I},s:i,s:{s:i,s:i},"
		    "s:i,s:i}}", "bus",
		    "prefetchable_range", "limit", (json_int_t)1048575,
		    "base", (json_int_t)0,
		    "memory_range", "limit", (json_int_t)1048575,
		    "base", (json_int_t)0,
		    "secondary", d->secondary,
		    "io_range", "limit", 4095, "base", 0,
		    "number", busnr, "subordinate", d->subordinate);
		json_object_set_new(br, "devices",
		    pci_bus_devices(vm, d, d->secondary));
		json_object_set_new(o, "pci_bridge", br);
	}
	json_object_set_new(o, "qdev_id", json_string(d->id != NULL ?
	    d->id : ""));
	json_object_set_new(o, "irq", json_integer(0));
	json_object_set_new(o, "slot", json_integer(d->slot));
	json_object_set_new(o, "class_info", json_pack("{s:i,s:s*}", "class",
	    d->drv->cls, "desc", d->drv->desc));
	json_object_set_new(o, "id", pci_ids(modern ? d->drv->dev_modern :
	    d->drv->dev_legacy, d->drv->kind == K_BRIDGE ||
	    d->drv->kind == K_RP ? 6966 : 6900,
	    modern ? d->drv->sub_modern : d->drv->sub_legacy));
	json_object_set_new(o, "function", json_integer(d->func));
	json_object_set_new(o, "regions",
	    json_deep_copy(pc_regions[di][modern]));
	return (o);
}

static json_t *
pci_builtin_json(const struct builtin *b)
{
	json_t	*o = json_object(), *regions;

	json_object_set_new(o, "irq_pin", json_integer(b->irq_pin));
	json_object_set_new(o, "bus", json_integer(0));
	json_object_set_new(o, "qdev_id", json_string(""));
	if (b->irq_pin != 0)
		json_object_set_new(o, "irq", json_integer(0));
	json_object_set_new(o, "slot", json_integer(b->slot));
	json_object_set_new(o, "class_info", json_pack("{s:i,s:s}", "class",
	    b->cls, "desc", b->desc));
	json_object_set_new(o, "id", pci_ids(b->device, 32902, 4352));
	json_object_set_new(o, "function", json_integer(b->func));
	regions = json_loads(b->regions, 0, NULL);
	json_object_set_new(o, "regions", regions != NULL ? regions :
	    json_array());
	return (o);
}

static json_t *
pci_bus_devices(struct vm *vm, struct dev *bus, int busnr)
{
	const struct builtin	*b;
	json_t			*list = json_array();
	int			 slot, func;
	size_t			 i;

	for (slot = 0; slot < 32; slot++) {
		for (func = 0; func < 8; func++) {
			if (bus == NULL) {
				for (b = builtins(vm); b->name != NULL; b++) {
					if (b->slot == slot && b->func == func)
						json_array_append_new(list,
						    pci_builtin_json(b));
				}
			}
			for (i = 0; i < vm->ndevs; i++) {
				struct dev *d = vm->devs[i];
				if (d->parent == bus && d->slot == slot &&
				    d->func == func &&
				    d->drv->kind != K_SCSI_HD)
					json_array_append_new(list,
					    pci_dev_json(vm, d, busnr));
			}
		}
	}
	return (list);
}

json_t *
pci_query_pci(struct cmdctx *x, json_t *args, struct qmp_error *err)
{
	pci_ensure(x->vm);
	pci_number(x->vm, NULL, 1);
	return (json_pack("[{s:i,s:o}]", "bus", 0, "devices",
	    pci_bus_devices(x->vm, NULL, 0)));
}

void
pci_free(struct vm *vm)
{
	size_t	i;

	for (i = 0; i < vm->ndevs; i++)
		dev_free(vm->devs[i]);
	free(vm->devs);
	vm->devs = NULL;
	vm->ndevs = 0;
	vm->anon = 0;
	vm->pci_built = 0;
}
