/*
 * qmpctl's hotplug subcommands:
 *
 *	nic-add VM ID (--tap IFNAME | --fd N...) [--mac MAC] [--queues N]
 *	    [--vhost] [--driver D] [--bus BUS] [--addr ADDR] [key=value ...]
 *	nic-del VM ID
 *	disk-add VM ID (SOURCE | --fd N) [--format F] [--readonly]
 *	    [--driver D] [--bus BUS] [--addr ADDR] [key=value ...]
 *	disk-del VM ID
 *	slots VM
 *	cpu-add VM (N | ID...)		cpu-del VM (N | ID...)
 *	mem-add VM ID SIZE [--backend ram|memfd|file] [--path P] [--node N]
 *	    [--kind dimm|virtio-mem] [--requested SIZE] [--bus BUS]
 *	    [--addr ADDR]
 *	mem-del VM ID
 *	mem-resize VM ID SIZE [--timeout-ms N]
 *
 * A CPU count and a CPU id cannot be mistaken: QEMU ids begin with a
 * letter. SIZE takes a K, M, G or T suffix (binary: 1G is 1073741824).
 *
 * --fd N passes the caller's open fd N (a tap queue, then the vhost-net
 * fds; or the disk image) with SCM_RIGHTS, so an orchestrator that opened
 * them keeps the privilege to itself; --tap IFNAME lets the broker open
 * the tap.
 */
#include <ctype.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tools/qmpctl.h"

/* Options common to both adds, then key=value words. Returns the object
   of arguments (vm and id set) or NULL (said). */
static json_t *
ctl_hp_args(struct ctl *ctl, int argc, char **argv, int disk, int *fds,
    int *nfds)
{
	json_t		*args, *extra = NULL, *v;
	const char	*key, *val;
	char		*end, *kv[256];
	long		 n;
	int		 i, nkv = 0;

	*nfds = 0;
	if (argc < 2) {
		ctl_warn("usage: %s VM ID ...", disk ? "disk-add" : "nic-add");
		return (NULL);
	}
	args = json_pack("{s:s, s:s}", "vm", argv[0], "id", argv[1]);
	if (args == NULL) {
		ctl_warn("VM and ID must be UTF-8");
		return (NULL);
	}
	/* options (--name [value]) may come anywhere: qmpctl's own parser
	   hands them on after the words */
	for (i = 2; i < argc; i++) {
		key = argv[i];
		if (strncmp(key, "--", 2) != 0) {
			if (disk && strchr(key, '=') == NULL &&
			    json_object_get(args, "source") == NULL) {
				json_object_set_new(args, "source",
				    json_string(key));
				continue;
			}
			kv[nkv++] = argv[i];
			continue;
		}
		key += 2;
		if (strcmp(key, "vhost") == 0 || strcmp(key, "readonly") == 0) {
			json_object_set_new(args, key, json_true());
			continue;
		}
		if (i + 1 == argc) {
			ctl_warn("--%s needs a value", key);
			goto fail;
		}
		val = argv[++i];
		if (strcmp(key, "fd") == 0) {
			n = strtol(val, &end, 10);
			if (*val == '\0' || *end != '\0' || n < 0 ||
			    n > 65535 || fcntl((int)n, F_GETFD) == -1 ||
			    *nfds == 16) {
				ctl_warn("--fd %s: not an open fd", val);
				goto fail;
			}
			fds[(*nfds)++] = (int)n;
		} else if (strcmp(key, "queues") == 0) {
			n = strtol(val, &end, 10);
			if (*val == '\0' || *end != '\0') {
				ctl_warn("--queues %s: not a number", val);
				goto fail;
			}
			json_object_set_new(args, key, json_integer(n));
		} else if ((!disk && (strcmp(key, "tap") == 0 ||
		    strcmp(key, "mac") == 0)) || (disk &&
		    strcmp(key, "format") == 0) || strcmp(key, "driver") == 0 ||
		    strcmp(key, "bus") == 0 || strcmp(key, "addr") == 0) {
			v = json_string(val);
			if (v == NULL) {
				ctl_warn("--%s: not UTF-8", key);
				goto fail;
			}
			json_object_set_new(args, strcmp(key, "tap") == 0 ?
			    "ifname" : key, v);
		} else {
			ctl_warn("--%s does not go with %s", key, disk ?
			    "disk-add" : "nic-add");
			goto fail;
		}
	}
	if (ctl_kv_args(nkv, kv, &extra) != 0)
		goto fail;
	if (extra != NULL) {
		json_object_update(args, extra);
		json_decref(extra);
	}
	return (args);
fail:
	json_decref(args);
	return (NULL);
}

static int
ctl_hp_send(struct ctl *ctl, const char *name, json_t *args, const int *fds,
    int nfds)
{
	int	i;

	if (ctl_request(ctl, name, args) != 0)
		return (-1);
	for (i = 0; i < nfds; i++)
		if (ctl_pass_fd(ctl, fds[i]) != 0)
			return (-1);
	return (0);
}

int
ctl_prep_nic_add(struct ctl *ctl, int argc, char **argv)
{
	json_t	*args;
	int	 fds[16], nfds;

	if ((args = ctl_hp_args(ctl, argc, argv, 0, fds, &nfds)) == NULL)
		return (-1);
	if ((json_object_get(args, "ifname") != NULL) == (nfds > 0)) {
		ctl_warn("nic-add: give --tap IFNAME or --fd N (not both)");
		json_decref(args);
		return (-1);
	}
	return (ctl_hp_send(ctl, "nic-add", args, fds, nfds));
}

int
ctl_prep_disk_add(struct ctl *ctl, int argc, char **argv)
{
	json_t	*args;
	int	 fds[16], nfds;

	if ((args = ctl_hp_args(ctl, argc, argv, 1, fds, &nfds)) == NULL)
		return (-1);
	if ((json_object_get(args, "source") != NULL) == (nfds > 0) ||
	    nfds > 1) {
		ctl_warn("disk-add: give SOURCE or one --fd N");
		json_decref(args);
		return (-1);
	}
	return (ctl_hp_send(ctl, "disk-add", args, fds, nfds));
}

static int
ctl_hp_del(struct ctl *ctl, const char *name, int argc, char **argv)
{
	json_t	*args;

	if (argc != 2) {
		ctl_warn("usage: %s VM ID", name);
		return (-1);
	}
	if ((args = json_pack("{s:s, s:s}", "vm", argv[0], "id",
	    argv[1])) == NULL) {
		ctl_warn("VM and ID must be UTF-8");
		return (-1);
	}
	return (ctl_request(ctl, name, args));
}

int
ctl_prep_nic_del(struct ctl *ctl, int argc, char **argv)
{
	return (ctl_hp_del(ctl, "nic-del", argc, argv));
}

int
ctl_prep_disk_del(struct ctl *ctl, int argc, char **argv)
{
	return (ctl_hp_del(ctl, "disk-del", argc, argv));
}

int
ctl_prep_slots(struct ctl *ctl, int argc, char **argv)
{
	json_t	*args;

	if (argc != 1) {
		ctl_warn("usage: slots VM");
		return (-1);
	}
	if ((args = json_pack("{s:s}", "vm", argv[0])) == NULL) {
		ctl_warn("VM must be UTF-8");
		return (-1);
	}
	return (ctl_request(ctl, "query-pci-slots", args));
}

/* cpu-add, cpu-del: VM then a count or CPU ids */
static int
ctl_cpu(struct ctl *ctl, const char *name, int argc, char **argv)
{
	json_t	*args, *ids;
	char	*end;
	long	 n;
	int	 i;

	if (argc < 2) {
		ctl_warn("usage: %s VM (N | ID...)", name);
		return (-1);
	}
	if ((args = json_pack("{s:s}", "vm", argv[0])) == NULL) {
		ctl_warn("VM must be UTF-8");
		return (-1);
	}
	if (isdigit((unsigned char)argv[1][0])) {
		n = strtol(argv[1], &end, 10);
		if (argc != 2 || *end != '\0' || n < 1 || n > 255) {
			ctl_warn("usage: %s VM (N | ID...): N is 1..255",
			    name);
			json_decref(args);
			return (-1);
		}
		json_object_set_new(args, "count", json_integer(n));
	} else {
		ids = json_array();
		for (i = 1; i < argc; i++)
			json_array_append_new(ids, json_string(argv[i]));
		json_object_set_new(args, "ids", ids);
	}
	return (ctl_request(ctl, name, args));
}

int
ctl_prep_cpu_add(struct ctl *ctl, int argc, char **argv)
{
	return (ctl_cpu(ctl, "cpu-add", argc, argv));
}

int
ctl_prep_cpu_del(struct ctl *ctl, int argc, char **argv)
{
	return (ctl_cpu(ctl, "cpu-del", argc, argv));
}

/* "512M", "1G", "134217728": bytes, or -1 */
static long long
ctl_size(const char *s)
{
	unsigned long long	 n;
	char			*end;
	int			 shift = 0;

	if (!isdigit((unsigned char)*s))
		return (-1);
	n = strtoull(s, &end, 10);
	switch (*end) {
	case 'K': case 'k': shift = 10; end++; break;
	case 'M': case 'm': shift = 20; end++; break;
	case 'G': case 'g': shift = 30; end++; break;
	case 'T': case 't': shift = 40; end++; break;
	}
	if (*end != '\0' || n > (unsigned long long)INT64_MAX >> shift)
		return (-1);
	return ((long long)(n << shift));
}

/* mem-add's and mem-resize's options: each with a value, a string
   unless its kind says otherwise */
struct ctl_memopt {
	const char	*opt;
	const char	*key;		/* the argument it sets */
	char		 kind;		/* 's', 'n' (a number), 'z' (a size) */
};

static const struct ctl_memopt ctl_mem_add_opts[] = {
	{ "--backend", "backend", 's' }, { "--path", "path", 's' },
	{ "--node", "node", 'n' }, { "--kind", "kind", 's' },
	{ "--requested", "requested-size", 'z' }, { "--bus", "bus", 's' },
	{ "--addr", "addr", 's' }, { NULL, NULL, 0 }
};
static const struct ctl_memopt ctl_mem_resize_opts[] = {
	{ "--timeout-ms", "timeout-ms", 'n' }, { NULL, NULL, 0 }
};

/* VM ID SIZE [OPTION VALUE]...: the request, or -1 */
static int
ctl_mem(struct ctl *ctl, const char *name, const char *usage,
    const struct ctl_memopt *opts, int argc, char **argv)
{
	const struct ctl_memopt	*o;
	json_t			*args, *v;
	long long		 size;
	char			*end;
	long			 n;
	int			 i;

	if (argc < 3 || (size = ctl_size(argv[2])) < 0) {
		ctl_warn("usage: %s", usage);
		return (-1);
	}
	if ((args = json_pack("{s:s, s:s, s:I}", "vm", argv[0], "id",
	    argv[1], "size", (json_int_t)size)) == NULL) {
		ctl_warn("VM and ID must be UTF-8");
		return (-1);
	}
	for (i = 3; i < argc; i += 2) {
		for (o = opts; o->opt != NULL; o++)
			if (strcmp(argv[i], o->opt) == 0)
				break;
		if (i + 1 == argc || o->opt == NULL) {
			ctl_warn("%s: %s: not an option with a value; usage: "
			    "%s", name, argv[i], usage);
			json_decref(args);
			return (-1);
		}
		v = NULL;
		if (o->kind == 'n') {
			n = strtol(argv[i + 1], &end, 10);
			if (argv[i + 1][0] != '\0' && *end == '\0')
				v = json_integer(n);
		} else if (o->kind == 'z') {
			if ((size = ctl_size(argv[i + 1])) >= 0)
				v = json_integer(size);
		} else
			v = json_string(argv[i + 1]);
		if (v == NULL) {
			ctl_warn("%s %s: not a %s", o->opt, argv[i + 1],
			    o->kind == 's' ? "UTF-8 string" : o->kind == 'n' ?
			    "number" : "size");
			json_decref(args);
			return (-1);
		}
		json_object_set_new(args, o->key, v);
	}
	return (ctl_request(ctl, name, args));
}

int
ctl_prep_mem_add(struct ctl *ctl, int argc, char **argv)
{
	return (ctl_mem(ctl, "mem-add", "mem-add VM ID SIZE[K|M|G|T] "
	    "[--backend ram|memfd|file] [--path P] [--node N] [--kind "
	    "dimm|virtio-mem] [--requested SIZE] [--bus BUS] [--addr A]",
	    ctl_mem_add_opts, argc, argv));
}

int
ctl_prep_mem_resize(struct ctl *ctl, int argc, char **argv)
{
	return (ctl_mem(ctl, "mem-resize", "mem-resize VM ID SIZE[K|M|G|T] "
	    "[--timeout-ms N]", ctl_mem_resize_opts, argc, argv));
}

int
ctl_prep_mem_del(struct ctl *ctl, int argc, char **argv)
{
	return (ctl_hp_del(ctl, "mem-del", argc, argv));
}
