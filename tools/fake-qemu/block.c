/*
 * Block nodes: blockdev-add/-del and the two queries. A "file" node over
 * /dev/fdset/N really dups an fd of that set with the right access mode
 * (QEMU's monitor_fdset_dup_fd_add), a plain path is really opened, and a
 * qcow2 node reads its child's header, so a test cannot pass by naming
 * fds or files that were never handed over. nbd and gluster nodes are
 * recorded, not connected.
 */
#include "config.h"

#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools/fake-qemu/fake.h"

struct bnode {
	char		*name;
	char		*drv;
	char		*filename;	/* as QEMU shows it */
	int		 fd;		/* file nodes: the dup or the open */
	int64_t		 fdset;		/* -1: none */
	int		 ro;
	int		 implicit;	/* inline child, not monitor-owned */
	unsigned	 parents;	/* format nodes over it */
	struct bnode	*child;
	char		*user;		/* qdev path of the device using it */
	uint64_t	 vsize, asize;
};

struct bnode *
blk_find(struct vm *vm, const char *name)
{
	size_t	i;

	for (i = 0; i < vm->nnodes; i++) {
		if (strcmp(vm->nodes[i]->name, name) == 0)
			return (vm->nodes[i]);
	}
	return (NULL);
}

int
blk_in_use(struct bnode *bn)
{
	return (bn->user != NULL);
}

void
blk_set_user(struct bnode *bn, const char *qdev)
{
	free(bn->user);
	bn->user = qdev != NULL ? xstrdup(qdev) : NULL;
}

static void
bnode_free(struct vm *vm, struct bnode *bn)
{
	struct fdset	*fs;

	if (bn->fd != -1)
		close(bn->fd);
	if (bn->fdset != -1 && (fs = vm_fdset(vm, bn->fdset)) != NULL &&
	    fs->dups > 0)
		fs->dups--;
	free(bn->name);
	free(bn->drv);
	free(bn->filename);
	free(bn->user);
	free(bn);
}

/* Open what a file node names; sets fd, sizes and fdset. */
static int
blk_open_file(struct vm *vm, struct bnode *bn, const char *drv,
    const char *filename, struct qmp_error *err)
{
	struct fdset	*fs;
	struct stat	 st;
	char		*end;
	long long	 id;
	int		 want = bn->ro ? O_RDONLY : O_RDWR, fl;
	size_t		 i;

	if (strncmp(filename, "/dev/fdset/", 11) == 0) {
		id = strtoll(filename + 11, &end, 10);
		fs = NULL;
		if (*end == '\0' && end != filename + 11)
			fs = vm_fdset(vm, id);
		if (fs == NULL) {
			qmp_error_set(err, QMP_CLS_GENERIC, "Could not dup FD "
			    "for %s flags %d: %s", filename, want,
			    strerror(ENOENT));
			return (-1);
		}
		for (i = 0; i < fs->nfds; i++) {
			fl = fcntl(fs->fds[i].fd, F_GETFL);
			if (fl != -1 && (fl & O_ACCMODE) == want)
				break;
		}
		if (i == fs->nfds || (bn->fd = fcntl(fs->fds[i].fd,
		    F_DUPFD_CLOEXEC, 0)) == -1) {
			qmp_error_set(err, QMP_CLS_GENERIC, "Could not dup FD "
			    "for %s flags %d: %s", filename, want,
			    strerror(i == fs->nfds ? EACCES : errno));
			return (-1);
		}
		bn->fdset = id;
		fs->dups++;
	} else if ((bn->fd = open(filename, want | O_CLOEXEC)) == -1) {
		qmp_error_set(err, QMP_CLS_GENERIC, "Could not open '%s': %s",
		    filename, strerror(errno));
		return (-1);
	}
	if (fstat(bn->fd, &st) == 0) {
		if (strcmp(drv, "host_device") == 0 && !S_ISBLK(st.st_mode) &&
		    !S_ISCHR(st.st_mode)) {
			qmp_error_set(err, QMP_CLS_GENERIC, "'host_device' "
			    "driver requires '%s' to be either a character or "
			    "block device", filename);
			return (-1);
		}
		if (S_ISBLK(st.st_mode)) {
			off_t end_off = lseek(bn->fd, 0, SEEK_END);
			bn->vsize = end_off > 0 ? (uint64_t)end_off : 0;
		} else
			bn->vsize = st.st_size;
		bn->asize = (uint64_t)st.st_blocks * 512;
	}
	bn->filename = xstrdup(filename);
	return (0);
}

static struct bnode *blk_create(struct vm *, json_t *, int,
	    struct qmp_error *);
static void	blk_unlink(struct vm *, struct bnode *);

static int
blk_open_format(struct vm *vm, struct bnode *bn, json_t *args,
    struct qmp_error *err)
{
	json_t		*file = json_object_get(args, "file");
	struct bnode	*c;
	unsigned char	 hdr[32];

	if (file == NULL) {
		qmp_error_set(err, QMP_CLS_GENERIC, "A block device must be "
		    "specified for \"file\"");
		return (-1);
	}
	if (json_is_string(file)) {
		c = blk_find(vm, json_string_value(file));
		if (c == NULL) {
			qmp_error_set(err, QMP_CLS_GENERIC, "Cannot find "
			    "device='%s' nor node-name='%s'",
			    json_string_value(file), json_string_value(file));
			return (-1);
		}
	} else if (json_is_object(file)) {
		if ((c = blk_create(vm, file, 1, err)) == NULL)
			return (-1);
	} else {
		qmp_error_set(err, QMP_CLS_GENERIC, "Invalid parameter type "
		    "for 'file', expected: BlockdevRef");
		return (-1);
	}
	bn->filename = xstrdup(c->filename != NULL ? c->filename : "");
	bn->vsize = c->vsize;
	bn->asize = c->asize;
	if (strcmp(bn->drv, "qcow2") == 0) {
		if (c->fd == -1 || pread(c->fd, hdr, sizeof hdr, 0) !=
		    (ssize_t)sizeof hdr || memcmp(hdr, "QFI\xfb", 4) != 0) {
			qmp_error_set(err, QMP_CLS_GENERIC,
			    "Image is not in qcow2 format");
			if (c->implicit) {
				blk_unlink(vm, c);
				bnode_free(vm, c);
			}
			return (-1);
		}
		bn->vsize = (uint64_t)hdr[24] << 56 | (uint64_t)hdr[25] << 48 |
		    (uint64_t)hdr[26] << 40 | (uint64_t)hdr[27] << 32 |
		    (uint64_t)hdr[28] << 24 | (uint64_t)hdr[29] << 16 |
		    (uint64_t)hdr[30] << 8 | (uint64_t)hdr[31];
	}
	c->parents++;
	bn->child = c;
	return (0);
}

static int
blk_open_net(struct bnode *bn, json_t *args, struct qmp_error *err)
{
	json_t		*srv = json_object_get(args, "server");
	const char	*type, *exp;
	char		 buf[1024];

	if (strcmp(bn->drv, "gluster") == 0) {
		const char *vol = json_string_value(json_object_get(args,
		    "volume"));
		const char *path = json_string_value(json_object_get(args,
		    "path"));
		json_t *s0 = json_array_get(srv, 0);
		if (vol == NULL || path == NULL || s0 == NULL) {
			qmp_error_set(err, QMP_CLS_GENERIC, "Parameter '%s' is "
			    "missing", vol == NULL ? "volume" : path == NULL ?
			    "path" : "server");
			return (-1);
		}
		snprintf(buf, sizeof buf, "gluster://%s/%s/%s",
		    json_string_value(json_object_get(s0, "host")) != NULL ?
		    json_string_value(json_object_get(s0, "host")) : "",
		    vol, path);
		bn->filename = xstrdup(buf);
		return (0);
	}
	if (!json_is_object(srv) || (type = json_string_value(
	    json_object_get(srv, "type"))) == NULL) {
		qmp_error_set(err, QMP_CLS_GENERIC,
		    "Parameter 'server' is missing");
		return (-1);
	}
	exp = json_string_value(json_object_get(args, "export"));
	if (strcmp(type, "unix") == 0)
		snprintf(buf, sizeof buf, "nbd+unix:///%s?socket=%s",
		    exp != NULL ? exp : "", json_string_value(json_object_get(
		    srv, "path")) != NULL ? json_string_value(
		    json_object_get(srv, "path")) : "");
	else
		snprintf(buf, sizeof buf, "nbd://%s:%s/%s",
		    json_string_value(json_object_get(srv, "host")) != NULL ?
		    json_string_value(json_object_get(srv, "host")) : "",
		    json_string_value(json_object_get(srv, "port")) != NULL ?
		    json_string_value(json_object_get(srv, "port")) : "10809",
		    exp != NULL ? exp : "");
	bn->filename = xstrdup(buf);
	return (0);
}

static struct bnode *
blk_create(struct vm *vm, json_t *args, int implicit, struct qmp_error *err)
{
	static const char *const drivers[] = { "file", "host_device", "raw",
	    "qcow2", "nbd", "gluster", NULL };
	struct bnode	*bn;
	const char	*drv, *name;
	char		 nbuf[32];
	int		 bad, i, rc;

	if ((drv = arg_str(args, "driver", 1, err, &bad)) == NULL)
		return (NULL);
	for (i = 0; drivers[i] != NULL; i++) {
		if (strcmp(drivers[i], drv) == 0)
			break;
	}
	if (drivers[i] == NULL) {
		qmp_error_set(err, QMP_CLS_GENERIC,
		    "Parameter 'driver' does not accept value '%s'", drv);
		return (NULL);
	}
	name = arg_str(args, "node-name", 0, err, &bad);
	if (bad)
		return (NULL);
	if (name == NULL && !implicit) {
		qmp_error_set(err, QMP_CLS_GENERIC,
		    "'node-name' must be specified for the root node");
		return (NULL);
	}
	if (name != NULL && blk_find(vm, name) != NULL) {
		qmp_error_set(err, QMP_CLS_GENERIC,
		    "Duplicate nodes with node-name='%s'", name);
		return (NULL);
	}
	if (name == NULL) {
		snprintf(nbuf, sizeof nbuf, "#block%u", vm->implicit++);
		name = nbuf;
	}
	bn = xcalloc(1, sizeof *bn);
	bn->fd = -1;
	bn->fdset = -1;
	bn->implicit = implicit && name == nbuf;
	bn->drv = xstrdup(drv);
	bn->name = xstrdup(name);
	if (arg_bool(args, "read-only", &bn->ro, err) != 0) {
		bnode_free(vm, bn);
		return (NULL);
	}
	if (strcmp(drv, "file") == 0 || strcmp(drv, "host_device") == 0) {
		const char *fn = arg_str(args, "filename", 1, err, &bad);
		rc = fn == NULL ? -1 : blk_open_file(vm, bn, drv, fn, err);
	} else if (strcmp(drv, "raw") == 0 || strcmp(drv, "qcow2") == 0)
		rc = blk_open_format(vm, bn, args, err);
	else
		rc = blk_open_net(bn, args, err);
	if (rc != 0) {
		bnode_free(vm, bn);
		return (NULL);
	}
	vm->nodes = xreallocarray(vm->nodes, vm->nnodes + 1,
	    sizeof *vm->nodes);
	vm->nodes[vm->nnodes++] = bn;
	return (bn);
}

json_t *
blk_add(struct cmdctx *x, json_t *args, struct qmp_error *err)
{
	if (blk_create(x->vm, args, 0, err) == NULL)
		return (NULL);
	return (json_object());
}

static void
blk_unlink(struct vm *vm, struct bnode *bn)
{
	size_t	i;

	for (i = 0; i < vm->nnodes; i++) {
		if (vm->nodes[i] == bn) {
			memmove(vm->nodes + i, vm->nodes + i + 1,
			    (vm->nnodes - i - 1) * sizeof *vm->nodes);
			vm->nnodes--;
			return;
		}
	}
}

json_t *
blk_del(struct cmdctx *x, json_t *args, struct qmp_error *err)
{
	struct vm	*vm = x->vm;
	struct bnode	*bn, *c;
	const char	*name;
	int		 bad;

	if ((name = arg_str(args, "node-name", 1, err, &bad)) == NULL)
		return (NULL);
	if ((bn = blk_find(vm, name)) == NULL) {
		qmp_error_set(err, QMP_CLS_GENERIC,
		    "Failed to find node with node-name='%s'", name);
		return (NULL);
	}
	if (bn->implicit) {
		qmp_error_set(err, QMP_CLS_GENERIC,
		    "Node %s is not owned by the monitor", name);
		return (NULL);
	}
	if (bn->user != NULL) {
		qmp_error_set(err, QMP_CLS_GENERIC, "Node %s is in use", name);
		return (NULL);
	}
	if (bn->parents > 0) {
		qmp_error_set(err, QMP_CLS_GENERIC, "Block device %s is in use",
		    name);
		return (NULL);
	}
	blk_unlink(vm, bn);
	if ((c = bn->child) != NULL) {
		c->parents--;
		if (c->implicit) {
			blk_unlink(vm, c);
			bnode_free(vm, c);
		}
	}
	bnode_free(vm, bn);
	vm_fdset_cleanup(vm);
	return (json_object());
}

static json_t *
blk_info(struct bnode *bn)
{
	json_t	*image;

	image = json_pack("{s:I,s:s,s:s}", "virtual-size",
	    (json_int_t)bn->vsize, "filename", bn->filename, "format", bn->drv);
	if (bn->fd != -1 || bn->child != NULL)
		json_object_set_new(image, "actual-size",
		    json_integer((json_int_t)bn->asize));
	json_object_set_new(image, "dirty-flag", json_false());
	return (json_pack("{s:i,s:s,s:o,s:i,s:b,s:s,s:i,s:s,s:i,s:i,s:i,"
	    "s:b,s:i,s:i,s:{s:b,s:b,s:b},s:s}",
	    "iops_rd", 0, "detect_zeroes", "off", "image", image,
	    "iops_wr", 0, "ro", bn->ro, "node-name", bn->name,
	    "backing_file_depth", 0, "drv", bn->drv, "iops", 0, "bps_wr", 0,
	    "write_threshold", 0, "encrypted", 0, "bps", 0, "bps_rd", 0,
	    "cache", "no-flush", 0, "direct", 0, "writeback", 1,
	    "file", bn->filename));
}

json_t *
blk_query_nodes(struct cmdctx *x, json_t *args, struct qmp_error *err)
{
	json_t	*list;
	size_t	 i;
	int	 flat = 0;

	if (arg_bool(args, "flat", &flat, err) != 0)
		return (NULL);
	list = json_array();
	for (i = x->vm->nnodes; i-- > 0; )
		json_array_append_new(list, blk_info(x->vm->nodes[i]));
	return (list);
}

json_t *
blk_query_block(struct cmdctx *x, json_t *args, struct qmp_error *err)
{
	json_t		*list = json_array();
	struct bnode	*bn;
	size_t		 i;

	for (i = 0; i < x->vm->nnodes; i++) {
		bn = x->vm->nodes[i];
		if (bn->user == NULL)
			continue;
		json_array_append_new(list, json_pack("{s:s,s:s,s:b,s:b,s:o,"
		    "s:s,s:s}", "io-status", "ok", "device", "", "locked", 0,
		    "removable", 0, "inserted", blk_info(bn), "qdev", bn->user,
		    "type", "unknown"));
	}
	return (list);
}

void
blk_free(struct vm *vm)
{
	size_t	i;

	for (i = 0; i < vm->nnodes; i++)
		bnode_free(vm, vm->nodes[i]);
	free(vm->nodes);
	vm->nodes = NULL;
	vm->nnodes = 0;
}
