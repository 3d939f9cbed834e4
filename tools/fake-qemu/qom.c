/*
 * qom-list over fake-qemu's device model: enough of QEMU 7.2's QOM tree
 * for a client to find devices and pcie-root-ports by path, with the
 * member names and types real QEMU lists for them.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "tools/fake-qemu/fake.h"
#include "tools/fake-qemu/pci.h"

static void
qom_add(json_t *list, const char *name, const char *type)
{
	json_array_append_new(list, json_pack("{s:s,s:s}", "name", name,
	    "type", type));
}

static void
qom_child(json_t *list, const char *name, const char *type)
{
	char	buf[160];

	snprintf(buf, sizeof buf, "child<%s>", type);
	qom_add(list, name, buf);
}

json_t *
pci_qom_list(struct cmdctx *x, json_t *args, struct qmp_error *err)
{
	struct vm	*vm = x->vm;
	const char	*path, *rest;
	json_t		*list;
	struct dev	*d = NULL;
	size_t		 i;
	int		 bad, q35 = vm->fake->machine == M_Q35;

	pci_ensure(vm);
	if ((path = arg_str(args, "path", 1, err, &bad)) == NULL)
		return (NULL);
	list = json_array();
	qom_add(list, "type", "string");
	if (strcmp(path, "/") == 0) {
		qom_add(list, "objects", "child<container>");
		qom_child(list, "machine", q35 ?
		    "pc-q35-7.2-machine" : "pc-i440fx-7.2-machine");
		qom_add(list, "chardevs", "child<container>");
		return (list);
	}
	if (strcmp(path, "/machine") == 0) {
		qom_add(list, "unattached", "child<container>");
		qom_add(list, "peripheral-anon", "child<container>");
		qom_add(list, "peripheral", "child<container>");
		if (q35)
			qom_add(list, "q35", "child<q35-pcihost>");
		else
			qom_add(list, "i440fx", "child<i440FX-pcihost>");
		return (list);
	}
	if (strcmp(path, "/machine/peripheral") == 0 ||
	    strcmp(path, "/machine/peripheral-anon") == 0) {
		for (i = 0; i < vm->ndevs; i++) {
			d = vm->devs[i];
			if (strncmp(d->qom, path, strlen(path)) != 0 ||
			    d->qom[strlen(path)] != '/' ||
			    strchr(d->qom + strlen(path) + 1, '/') != NULL)
				continue;
			qom_child(list, d->qom + strlen(path) + 1,
			    d->drv->name);
		}
		if (strcmp(path, "/machine/peripheral") == 0)
			cm_qom_peripheral(vm, list);
		return (list);
	}
	for (i = 0; i < vm->ndevs; i++) {
		size_t n = strlen(vm->devs[i]->qom);
		if (strncmp(vm->devs[i]->qom, path, n) == 0 &&
		    (path[n] == '\0' || path[n] == '/')) {
			d = vm->devs[i];
			break;
		}
	}
	rest = d != NULL ? path + strlen(d->qom) : NULL;
	if (d != NULL && *rest == '\0') {
		qom_add(list, "parent_bus", "link<bus>");
		qom_add(list, "realized", "bool");
		qom_add(list, "hotplugged", "bool");
		qom_add(list, "hotpluggable", "bool");
		if (d->drv->kind == K_SCSI_HD) {
			qom_add(list, "drive", "str");
			qom_add(list, "scsi-id", "uint32");
			qom_add(list, "lun", "uint32");
			return (list);
		}
		qom_add(list, "addr", "int32");
		qom_add(list, "multifunction", "bool");
		if (d->drv->kind == K_RP) {
			qom_add(list, "port", "uint8");
			qom_add(list, "slot", "uint16");
			qom_add(list, "chassis", "uint8");
			qom_add(list, d->id, "child<PCIE>");
		} else if (d->drv->kind == K_BRIDGE) {
			qom_add(list, "chassis_nr", "uint8");
			qom_add(list, d->id != NULL ? d->id : "pci.1",
			    "child<PCI>");
		} else if (d->drv->backend != NULL)
			qom_child(list, "virtio-backend",
			    d->drv->backend);
		return (list);
	}
	if (d != NULL && d->drv->backend != NULL &&
	    strcmp(rest, "/virtio-backend") == 0) {
		qom_add(list, "parent_bus", "link<bus>");
		qom_add(list, "realized", "bool");
		if (d->drv->kind == K_NET)
			qom_add(list, "netdev", "str");
		else if (d->drv->kind == K_BLK)
			qom_add(list, "drive", "str");
		return (list);
	}
	json_decref(list);
	qmp_error_set(err, QMP_CLS_DEVNOTFOUND, "Device '%s' not found", path);
	return (NULL);
}
