/*
 * The argument guards: what an operator's QEMU command may name on the
 * host. QEMU runs as root beside the broker, so a file name in a command
 * is a file root opens, and a migration URI can be a shell command. The
 * guards allow what a tenant needs (tcp:, unix: and fd: migration; images,
 * dumps and sockets under the allowed dirs; fds it passed itself) and
 * refuse the rest, every encoding included: a path must be absolute, free
 * of ".", ".." and empty components, and must still lie under an allowed
 * dir once every symlink in it is resolved; pseudo-protocols (json:,
 * file:, nbd:...) and percent-escapes are refused, not decoded.
 *
 * What remains (without privilege separation): QEMU opens the file after
 * the check, so a peer that can write in an allowed dir can swap a
 * symlink in between (TOCTOU). Part 3 of the design closes it by opening
 * with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS) in a helper and
 * passing QEMU the fd (/dev/fdset/N, which is allowed here already).
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "broker/session/policy.h"

#define GUARD_DEPTH_MAX	16	/* nesting of block options, chardevs */

static int
guard_no(char *why, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
guard_no(char *why, size_t len, const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	vsnprintf(why, len, fmt, ap);
	va_end(ap);
	return (-1);
}

/* "/dev/fdset/N": an fd set the peer filled with add-fd, with fds it
   passed itself; the broker cannot open more than the peer could. */
static bool
guard_fdset(const char *p)
{
	const char	*d = p + strlen("/dev/fdset/");

	if (strncmp(p, "/dev/fdset/", strlen("/dev/fdset/")) != 0 ||
	    *d == '\0')
		return (false);
	for (; *d != '\0'; d++) {
		if (!isdigit((unsigned char)*d))
			return (false);
	}
	return (true);
}

/* Does real lie under the resolved dir? */
static bool
guard_under(const char *real, const char *dir)
{
	char	rdir[PATH_MAX];
	size_t	n;

	if (realpath(dir, rdir) == NULL)
		return (false);
	n = strlen(rdir);
	if (n == 1)
		return (true);
	return (strncmp(real, rdir, n) == 0 && real[n] == '/');
}

int
guard_path(const char *path, char *const *dirs, size_t ndirs, char *why,
    size_t len)
{
	char		 real[PATH_MAX], tmp[PATH_MAX], *dir, *base;
	const char	*c;
	size_t		 i, n, plen = strlen(path);

	if (guard_fdset(path))
		return (0);
	if (plen == 0 || plen >= PATH_MAX)
		return (guard_no(why, len, "empty or too long path"));
	if (path[0] != '/') {
		n = strspn(path, "abcdefghijklmnopqrstuvwxyz"
		    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-_");
		if (n > 0 && path[n] == ':')
			return (guard_no(why, len, "path '%.60s': the %.*s: "
			    "pseudo-protocol is refused", path, (int)n, path));
		return (guard_no(why, len, "path '%.60s' is relative", path));
	}
	/* every component: not empty, not ".", not ".." */
	for (c = path + 1; *c != '\0'; c += n + (c[n] == '/')) {
		n = strcspn(c, "/");
		if (n == 0 || (n == 1 && c[0] == '.') ||
		    (n == 2 && c[0] == '.' && c[1] == '.'))
			return (guard_no(why, len, "path '%.60s' has an empty, "
			    "'.' or '..' component", path));
	}
	if (ndirs == 0)
		return (guard_no(why, len, "path '%.60s': no allowed dirs "
		    "(--image-root, allow-dir)", path));
	/* An existing file is resolved whole (a final symlink followed),
	   a new one through its dir. */
	if (realpath(path, real) == NULL) {
		if (errno != ENOENT)
			return (guard_no(why, len, "path '%.60s': %s", path,
			    strerror(errno)));
		memcpy(tmp, path, plen + 1);
		dir = dirname(tmp);
		if (realpath(dir, real) == NULL)
			return (guard_no(why, len, "path '%.60s': %s", path,
			    strerror(errno)));
		memcpy(tmp, path, plen + 1);
		base = basename(tmp);
		n = strlen(real);
		if (n + 1 + strlen(base) >= sizeof real)
			return (guard_no(why, len, "path too long"));
		snprintf(real + n, sizeof real - n, "%s%s",
		    n > 1 ? "/" : "", base);
	}
	for (i = 0; i < ndirs; i++) {
		if (guard_under(real, dirs[i]))
			return (0);
	}
	return (guard_no(why, len, "path '%.60s' (%.60s) is outside the "
	    "allowed dirs", path, real));
}

/* A migration URI: tcp:, fd:, or unix: in an allowed dir. Nothing is
   decoded: an escape could hide a scheme, so none is accepted. */
static int
guard_uri(const char *uri, char *const *dirs, size_t nd, char *why,
    size_t len)
{
	if (strchr(uri, '%') != NULL)
		return (guard_no(why, len, "migration URI with a "
		    "percent-escape is refused"));
	if (strncmp(uri, "tcp:", 4) == 0 || strncmp(uri, "fd:", 3) == 0)
		return (0);
	if (strncmp(uri, "unix:", 5) == 0)
		return (guard_path(uri + 5, dirs, nd, why, len));
	return (guard_no(why, len, "migration URI '%.40s' refused: only "
	    "tcp:, fd: and unix: in an allowed dir", uri));
}

/* Block drivers a tenant may name: formats whose header cannot name
   another host file unchecked (see guard_block), and protocols that
   open only what "filename" or "path" says. */
static const char *const guard_drivers[] = {
	"file", "host_device", "host_cdrom", "raw", "qcow2", "qcow", "qed",
	"luks", "vdi", "vpc", "vhdx", "throttle", "copy-on-read", "compress",
	"preallocate", "null-co", "null-aio", "quorum", "nbd",
	"snapshot-access", "copy-before-write", NULL
};
/* Formats whose header may name a backing file, opened unless the
   command says which backing to use. */
static const char *const guard_backed[] = { "qcow2", "qcow", "qed",
	NULL };
/* Members that name a host file, anywhere in the arguments of the
   commands that take them. */
static const char *const guard_block_keys[] = { "filename", "path", "dir",
	"config", "conf", "logfile", NULL };

static bool
guard_in(const char *s, const char *const *l)
{
	for (; *l != NULL; l++) {
		if (strcmp(s, *l) == 0)
			return (true);
	}
	return (false);
}

struct guard_walk {
	const char *const	*keys;		/* members that are paths */
	bool			 block;		/* drivers checked */
	char *const		*dirs;
	size_t			 nd;
	char			*why;
	size_t			 len;
};

static int	guard_walk(const struct guard_walk *, json_t *, int depth);

static int
guard_walk_value(const struct guard_walk *w, const char *key, json_t *v,
    int depth)
{
	size_t	i;
	json_t	*e;

	if (json_is_object(v))
		return (guard_walk(w, v, depth + 1));
	if (json_is_array(v)) {
		json_array_foreach(v, i, e) {
			if (guard_walk_value(w, key, e, depth + 1) == -1)
				return (-1);
		}
		return (0);
	}
	if (json_is_string(v) && key != NULL && guard_in(key, w->keys))
		return (guard_path(json_string_value(v), w->dirs, w->nd,
		    w->why, w->len));
	return (0);
}

/* Every member, at every depth: a nested "file": {"driver": "file",
   "filename": ...} is checked as the top one is. */
static int
guard_walk(const struct guard_walk *w, json_t *o, int depth)
{
	const char	*key, *drv;
	json_t		*v;

	if (depth > GUARD_DEPTH_MAX)
		return (guard_no(w->why, w->len, "arguments nested deeper "
		    "than %d", GUARD_DEPTH_MAX));
	if (w->block && (v = json_object_get(o, "driver")) != NULL) {
		if ((drv = json_string_value(v)) == NULL ||
		    !guard_in(drv, guard_drivers))
			return (guard_no(w->why, w->len, "block driver "
			    "'%.40s' is not allowed",
			    drv != NULL ? drv : "?"));
		if (guard_in(drv, guard_backed) &&
		    json_object_get(o, "backing") == NULL)
			return (guard_no(w->why, w->len, "driver %s needs "
			    "\"backing\" (null or a node): the image's "
			    "header may name any host file", drv));
	}
	json_object_foreach(o, key, v) {
		if (guard_walk_value(w, key, v, depth) == -1)
			return (-1);
	}
	return (0);
}

static int
guard_keys(json_t *args, const char *const *keys, bool block,
    char *const *dirs, size_t nd, char *why, size_t len)
{
	struct guard_walk	w = { keys, block, dirs, nd, why, len };

	if (!json_is_object(args))
		return (0);
	return (guard_walk(&w, args, 0));
}

/* QOM types that open host files or devices when created. */
static const char *const guard_objects[] = {
	"memory-backend-file", "filter-dump", "rng-random",
	"tls-creds-x509", "tls-creds-psk", "tls-creds-anon",
	"authz-list-file", "input-linux", "cryptodev-vhost-user",
	"can-host-socketcan", "pr-manager-helper", "sev-guest",
	"secret_keyring", NULL
};

static int
guard_object(json_t *args, char *const *dirs, size_t nd, char *why,
    size_t len)
{
	static const char *const keys[] = { "filename", "mem-path", "dir",
	    "path", "evdev", "dh-cert-file", "session-file", NULL };
	const char	*type;
	char		 norm[64];
	size_t		 i;
	json_t		*props;

	type = json_string_value(json_object_get(args, "qom-type"));
	if (type == NULL)
		return (0);	/* QEMU refuses it */
	/* QEMU's lookup is exact; compared without case anyway */
	for (i = 0; type[i] != '\0' && i < sizeof norm - 1; i++)
		norm[i] = (char)tolower((unsigned char)type[i]);
	norm[i] = '\0';
	if (guard_in(norm, guard_objects))
		return (guard_no(why, len, "object type %.40s reads host "
		    "files or devices", type));
	/* "props" is how QEMU before 6.0 took them: checked the same */
	props = json_object_get(args, "props");
	if (strcmp(norm, "secret") == 0 &&
	    (json_object_get(args, "file") != NULL ||
	    json_object_get(props, "file") != NULL))
		return (guard_no(why, len, "a secret object's file= reads a "
		    "host file: give data= instead"));
	return (guard_keys(args, keys, false, dirs, nd, why, len));
}

static int
guard_netdev(json_t *args, char *const *dirs, size_t nd, char *why,
    size_t len)
{
	static const char *const run[] = { "script", "downscript", "helper",
	    NULL };
	static const char *const keys[] = { "path", "vhostdev", "sock",
	    NULL };
	const char *const	*k;
	const char		*v;

	for (k = run; *k != NULL; k++) {
		if ((v = json_string_value(json_object_get(args, *k))) !=
		    NULL && strcmp(v, "no") != 0)
			return (guard_no(why, len, "netdev %s runs a host "
			    "program", *k));
	}
	return (guard_keys(args, keys, false, dirs, nd, why, len));
}

static int
guard_dump(json_t *args, char *const *dirs, size_t nd, char *why,
    size_t len)
{
	const char	*p = json_string_value(json_object_get(args,
			    "protocol"));

	if (p == NULL || strncmp(p, "fd:", 3) == 0)
		return (0);
	if (strncmp(p, "file:", 5) == 0)
		return (guard_path(p + 5, dirs, nd, why, len));
	return (guard_no(why, len, "dump protocol '%.40s' refused: fd: or "
	    "file: in an allowed dir", p));
}

static int
guard_migrate(json_t *args, char *const *dirs, size_t nd, char *why,
    size_t len)
{
	const char	*uri;

	/* QEMU 8.1's channels can say exec too; not parsed here */
	if (json_object_get(args, "channels") != NULL)
		return (guard_no(why, len, "migration channels are refused: "
		    "give a uri"));
	if ((uri = json_string_value(json_object_get(args, "uri"))) == NULL)
		return (0);
	return (guard_uri(uri, dirs, nd, why, len));
}

int
guard_qemu(const char *cmd, json_t *args, char *const *dirs, size_t nd,
    char *why, size_t len)
{
	static const char *const filename[] = { "filename", NULL };
	static const char *const snapshot[] = { "snapshot-file", NULL };
	static const char *const target[] = { "target", NULL };
	static const char *const backing[] = { "backing-file", NULL };
	static const char *const drive[] = { "file", "filename", NULL };
	static const char *const chardev[] = { "out", "in", "device", "path",
	    "logfile", NULL };
	static const char *const export[] = { "mountpoint", "path",
	    "logfile", NULL };
	static const char *const device[] = { "romfile", "sysfsdev", "path",
	    "filename", NULL };

	if (strcmp(cmd, "human-monitor-command") == 0)
		return (guard_no(why, len, "human-monitor-command is admin "
		    "only: HMP bypasses every argument guard"));
	if (strcmp(cmd, "migrate") == 0 || strcmp(cmd, "migrate-incoming") ==
	    0 || strcmp(cmd, "migrate-recover") == 0)
		return (guard_migrate(args, dirs, nd, why, len));
	if (strcmp(cmd, "blockdev-add") == 0 ||
	    strcmp(cmd, "blockdev-create") == 0 ||
	    strcmp(cmd, "blockdev-reopen") == 0)
		return (guard_keys(args, guard_block_keys, true, dirs, nd,
		    why, len));
	if (strcmp(cmd, "drive_add") == 0)
		return (guard_keys(args, drive, false, dirs, nd, why, len));
	if (strcmp(cmd, "screendump") == 0 || strcmp(cmd, "pmemsave") == 0 ||
	    strcmp(cmd, "memsave") == 0 || strcmp(cmd, "dumpdtb") == 0 ||
	    strcmp(cmd, "dump-skeys") == 0 ||
	    strcmp(cmd, "xen-save-devices-state") == 0 ||
	    strcmp(cmd, "xen-load-devices-state") == 0 ||
	    strcmp(cmd, "blockdev-change-medium") == 0)
		return (guard_keys(args, filename, false, dirs, nd, why,
		    len));
	if (strcmp(cmd, "dump-guest-memory") == 0)
		return (guard_dump(args, dirs, nd, why, len));
	if (strcmp(cmd, "blockdev-snapshot-sync") == 0)
		return (guard_keys(args, snapshot, false, dirs, nd, why,
		    len));
	if (strcmp(cmd, "drive-mirror") == 0 ||
	    strcmp(cmd, "drive-backup") == 0)
		return (guard_keys(args, target, false, dirs, nd, why, len));
	if (strcmp(cmd, "change-backing-file") == 0 ||
	    strcmp(cmd, "block-stream") == 0 ||
	    strcmp(cmd, "block-commit") == 0)
		return (guard_keys(args, backing, false, dirs, nd, why, len));
	if (strcmp(cmd, "chardev-add") == 0 ||
	    strcmp(cmd, "chardev-change") == 0 ||
	    strcmp(cmd, "nbd-server-start") == 0)
		return (guard_keys(args, chardev, false, dirs, nd, why, len));
	if (strcmp(cmd, "block-export-add") == 0)
		return (guard_keys(args, export, false, dirs, nd, why, len));
	if (strcmp(cmd, "device_add") == 0)
		return (guard_keys(args, device, false, dirs, nd, why, len));
	if (strcmp(cmd, "object-add") == 0)
		return (guard_object(args, dirs, nd, why, len));
	if (strcmp(cmd, "netdev_add") == 0 || strcmp(cmd, "netdev-add") == 0)
		return (guard_netdev(args, dirs, nd, why, len));
	return (0);
}

int
guard_broker(const char *cmd, json_t *args, char *const *dirs, size_t nd,
    char *why, size_t len)
{
	const char	*s;

	/* another tenant's QEMU socket under a new name would escape its
	   vm-allow: a tenant adds only sockets in the allowed dirs */
	if (strcmp(cmd, "vm-add") == 0 && (s = json_string_value(
	    json_object_get(args, "socket"))) != NULL)
		return (guard_path(s, dirs, nd, why, len));
	/* a memory backend file is a file QEMU (root) creates or maps */
	if (strcmp(cmd, "mem-add") == 0 && (s = json_string_value(
	    json_object_get(args, "path"))) != NULL)
		return (guard_path(s, dirs, nd, why, len));
	/* the broker sends vm-migrate's uri to QEMU as migrate's and
	   migrate-incoming's: the same guard */
	if ((strcmp(cmd, "vm-migrate") == 0 ||
	    strcmp(cmd, "vm-migrate-recover") == 0) && (s = json_string_value(
	    json_object_get(args, "uri"))) != NULL)
		return (guard_uri(s, dirs, nd, why, len));
	if (strcmp(cmd, "policy-check") == 0)
		return (guard_no(why, len, "policy-check is admin only"));
	if (strcmp(cmd, "domain-define") == 0)
		return (guard_no(why, len, "domain-define is admin only: "
		    "libvirt XML names host devices and programs"));
	return (0);
}
