/*
 * Each step's arguments, built from its operation: the builders that
 * hp.c's hp_steps[] rows name. A builder points *fds at the fd the
 * command passes, if it passes one.
 */
#include <stdio.h>
#include <string.h>

#include "hv/hp_int.h"

void
hp_addr(char *buf, size_t len, int slot)
{
	snprintf(buf, len, "0x%x", slot);
}

json_t *
hp_device_args(const struct hp_op *op, int arg, const int **fds)
{
	json_t	*a;
	char	 addr[8];
	size_t	 q;

	if (op->kind == HP_CPU)
		return (json_deep_copy(op->cpus[arg]));
	hp_addr(addr, sizeof addr, op->slot);
	if (op->kind == HP_MEM) {
		a = json_pack("{s:s, s:s, s:s}", "driver", op->mem.virtio ?
		    "virtio-mem-pci" : "pc-dimm", "id", op->id, "memdev",
		    op->memdev);
		if (op->mem.node >= 0)
			json_object_set_new(a, "node",
			    json_integer(op->mem.node));
		if (!op->mem.virtio)
			return (a);
		json_object_set_new(a, "requested-size",
		    json_integer(op->mem.requested));
	} else if (op->kind == HP_NIC) {
		a = json_pack("{s:s, s:s, s:s}", "driver",
		    op->nic.driver[0] != '\0' ? op->nic.driver :
		    "virtio-net-pci", "id", op->id, "netdev", op->netdev);
		if (op->nic.mac[0] != '\0')
			json_object_set_new(a, "mac",
			    json_string(op->nic.mac));
		q = op->nic.queues;
		if (q > 1) {
			json_object_set_new(a, "mq", json_true());
			json_object_set_new(a, "vectors",
			    json_integer(2 * (json_int_t)q + 2));
		}
	} else {
		a = json_pack("{s:s, s:s, s:s}", "driver",
		    op->disk.driver[0] != '\0' ? op->disk.driver :
		    "virtio-blk-pci", "id", op->id, "drive", op->node);
	}
	if (op->bus[0] != '\0') {
		json_object_set_new(a, "bus", json_string(op->bus));
		if (op->slot >= 0)
			json_object_set_new(a, "addr", json_string(addr));
	}
	return (a);
}

json_t *
hp_fdname_args(const struct hp_op *op, int arg, const int **fds)
{
	return (json_pack("{s:s}", "fdname", op->fdname[arg]));
}

json_t *
hp_getfd_args(const struct hp_op *op, int arg, const int **fds)
{
	*fds = &op->fds[arg];
	return (hp_fdname_args(op, arg, fds));
}

json_t *
hp_netdev_args(const struct hp_op *op, int arg, const int **fdsp)
{
	char	fds[HP_MAX_FDS * HP_NAME_MAX], vfds[HP_MAX_FDS * HP_NAME_MAX];
	size_t	q = op->nic.queues, i, nf = 0, nv = 0;
	json_t	*a;

	/* "a:b:c"; each name is shorter than HP_NAME_MAX, so it fits */
	fds[0] = vfds[0] = '\0';
	for (i = 0; i < q; i++) {
		nf += snprintf(fds + nf, sizeof fds - nf, "%s%s",
		    i > 0 ? ":" : "", op->fdname[i]);
		if (op->nic.vhost)
			nv += snprintf(vfds + nv, sizeof vfds - nv, "%s%s",
			    i > 0 ? ":" : "", op->fdname[q + i]);
	}
	a = json_pack("{s:s, s:s}", "type", "tap", "id", op->netdev);
	json_object_set_new(a, q > 1 ? "fds" : "fd", json_string(fds));
	if (op->nic.vhost) {
		json_object_set_new(a, "vhost", json_true());
		json_object_set_new(a, q > 1 ? "vhostfds" : "vhostfd",
		    json_string(vfds));
	}
	return (a);
}

json_t *
hp_addfd_args(const struct hp_op *op, int arg, const int **fds)
{
	*fds = &op->disk.fd;
	return (json_pack("{s:s}", "opaque", op->opaque));
}

json_t *
hp_removefd_args(const struct hp_op *op, int arg, const int **fds)
{
	return (json_pack("{s:I}", "fdset-id", (json_int_t)op->fdset));
}

json_t *
hp_blockdev_args(const struct hp_op *op, int arg, const int **fds)
{
	json_t	*file, *a;
	char	 path[64];

	if (op->disk.node != NULL) {
		file = json_deep_copy(op->disk.node);
		json_object_set_new(file, "node-name",
		    json_string(op->fnode));
	} else {
		snprintf(path, sizeof path, "/dev/fdset/%lld", op->fdset);
		file = json_pack("{s:s, s:s, s:s}", "driver",
		    op->disk.blkdev ? "host_device" : "file", "node-name",
		    op->fnode, "filename", path);
	}
	json_object_set_new(file, "read-only",
	    json_boolean(op->disk.readonly));
	a = json_pack("{s:s, s:s, s:b, s:o}", "driver",
	    op->disk.format[0] != '\0' ? op->disk.format : "raw",
	    "node-name", op->node, "read-only", op->disk.readonly,
	    "file", file);
	return (a);
}

const char *
hp_dev_id(const struct hp_op *op, int arg)
{
	const char	*id;

	if (op->kind != HP_CPU)
		return (op->id);
	id = json_string_value(json_object_get(op->cpus[arg], "id"));
	return (id != NULL ? id : "");
}

json_t *
hp_devdel_args(const struct hp_op *op, int arg, const int **fds)
{
	return (json_pack("{s:s}", "id", hp_dev_id(op, arg)));
}

/* The DIMM's memory backend. share for memfd and file: what a backend
   outside QEMU's anonymous memory is for (vhost-user, a file a host
   tool maps). */
json_t *
hp_object_args(const struct hp_op *op, int arg, const int **fds)
{
	const char	*b = op->mem.backend;
	json_t		*a;

	if (b[0] == '\0')
		b = "ram";
	a = json_pack("{s:s, s:I}", "id", op->memdev, "size",
	    (json_int_t)op->mem.size);
	if (strcmp(b, "file") == 0) {
		json_object_set_new(a, "qom-type",
		    json_string("memory-backend-file"));
		json_object_set_new(a, "mem-path", json_string(op->mem.path));
		json_object_set_new(a, "share", json_true());
	} else if (strcmp(b, "memfd") == 0) {
		json_object_set_new(a, "qom-type",
		    json_string("memory-backend-memfd"));
		json_object_set_new(a, "share", json_true());
	} else
		json_object_set_new(a, "qom-type",
		    json_string("memory-backend-ram"));
	return (a);
}
