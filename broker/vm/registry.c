/*
 * Where VMs come from and how they survive a restart.
 *
 * Three sources: vm-add (persisted in STATE_DIR/vms.json), the config
 * file (`vm NAME SOCKET`) and the watched --vm-dir of NAME.qmp sockets.
 * Only vm-add VMs are saved; the other two are recomputed at start and
 * on reload or inotify.
 *
 * Saves are atomic (temp file, fsync, rename, fsync dir), so a kill -9
 * at any point leaves the old or the new file, and they are grouped: all
 * changes made in one loop pass go out in one write, and the requests
 * that made them are answered once it is on disk.
 */
#include "config.h"

#include <sys/types.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "broker/core/conf.h"
#include "broker/core/log.h"
#include "broker/core/loop.h"
#include "broker/vm/registry.h"
#include "broker/vm/registry_int.h"

#define REG_FILE	"vms.json"
#define REG_VERSION	1
#define REG_FILE_MAX	(64u * 1024 * 1024)
/* Linux's PID_MAX_LIMIT: no pid is above it. */
#define REG_PID_MAX	(4 * 1024 * 1024)

struct reg_wait {
	registry_saved_fn	*fn;
	void			*arg;
};

static struct event	*reg_save_ev;
static struct reg_wait	*reg_waits;
static size_t		 reg_nwaits, reg_capwaits;
static int		 reg_dirty;

static char *
reg_path(const char *suffix)
{
	char	*p;

	if (asprintf(&p, "%s/%s%s", conf.state_dir, REG_FILE, suffix) == -1)
		return (NULL);
	return (p);
}

void
registry_entries_free(struct reg_entry *e, size_t n)
{
	size_t	i;

	for (i = 0; i < n; i++) {
		free(e[i].name);
		free(e[i].socket);
	}
	free(e);
}

static void
reg_why(struct qmp_error *why, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Appends one reason to why's desc, as long as there is room. */
static void
reg_why(struct qmp_error *why, const char *fmt, ...)
{
	char	old[sizeof why->desc], add[sizeof why->desc];
	size_t	len;
	va_list	ap;

	if (why == NULL)
		return;
	len = strlen(why->desc);
	if (len + 3 >= sizeof why->desc)
		return;
	memcpy(old, why->desc, len + 1);
	va_start(ap, fmt);
	vsnprintf(add, sizeof add, fmt, ap);
	va_end(ap);
	qmp_error_set(why, QMP_CLS_GENERIC, "%s%s%s", old, len != 0 ? "; " :
	    "", add);
}

int
registry_parse(const char *buf, size_t len, struct reg_entry **out,
    size_t *n, size_t *bad, struct qmp_error *why)
{
	json_t		*doc, *vms, *v;
	json_error_t	 je;
	json_int_t	 version = 0;
	struct reg_entry *e = NULL;
	const char	*name, *socket;
	json_t		*share, *pid, *start;
	size_t		 i, j, ne = 0;

	*out = NULL;
	*n = 0;
	*bad = 0;
	qmp_error_set(why, QMP_CLS_GENERIC, "%s", "");
	if ((doc = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je)) == NULL) {
		reg_why(why, "not JSON (line %d: %s)", je.line,
		    je.text);
		return (-1);
	}
	if (json_unpack_ex(doc, &je, 0, "{s:I,s:o}", "version", &version,
	    "vms", &vms) == -1 || !json_is_array(vms)) {
		reg_why(why, "not a registry (%s)", je.text);
		json_decref(doc);
		return (-1);
	}
	if (version != REG_VERSION) {
		reg_why(why, "unknown version %lld",
		    (long long)version);
		json_decref(doc);
		return (-1);
	}
	if ((e = calloc(json_array_size(vms) + 1, sizeof *e)) == NULL) {
		reg_why(why, "out of memory");
		json_decref(doc);
		return (-1);
	}
	json_array_foreach(vms, i, v) {
		share = pid = start = NULL;
		if (json_unpack(v, "{s:s,s:s,s?o,s?o,s?o}", "name", &name,
		    "socket", &socket, "shared-socket", &share, "pid", &pid,
		    "pid-start", &start) == -1 ||
		    (share != NULL && !json_is_boolean(share))) {
			reg_why(why, "entry %zu: not {name, socket, "
			    "shared-socket?}", i);
			(*bad)++;
			continue;
		}
		if (!conf_vm_name_valid(name) || *socket != '/' ||
		    strlen(socket) > 107) {
			reg_why(why, "entry %zu: bad name or socket", i);
			(*bad)++;
			continue;
		}
		for (j = 0; j < ne; j++) {
			if (strcmp(e[j].name, name) == 0)
				break;
		}
		if (j < ne) {
			reg_why(why, "entry %zu: %s named twice", i,
			    name);
			(*bad)++;
			continue;
		}
		e[ne].share = share == NULL ? VM_SHARE_CONF :
		    json_is_true(share) ? VM_SHARE_YES : VM_SHARE_NO;
		/* Both or neither, in range: else the VM stays, without
		   the pid (its exit is then known by the socket only). */
		if (pid != NULL || start != NULL) {
			if (!json_is_integer(pid) || !json_is_integer(start) ||
			    json_integer_value(pid) <= 0 ||
			    json_integer_value(pid) > REG_PID_MAX ||
			    json_integer_value(start) <= 0) {
				reg_why(why, "entry %zu: bad pid or pid-start, "
				    "not watched", i);
				(*bad)++;
			} else {
				e[ne].pid = (int)json_integer_value(pid);
				e[ne].pid_start = (unsigned long long)
				    json_integer_value(start);
			}
		}
		if ((e[ne].name = strdup(name)) == NULL ||
		    (e[ne].socket = strdup(socket)) == NULL) {
			free(e[ne].name);
			registry_entries_free(e, ne);
			json_decref(doc);
			reg_why(why, "out of memory");
			return (-1);
		}
		ne++;
	}
	json_decref(doc);
	*out = e;
	*n = ne;
	return (0);
}

int
registry_write_atomic(const char *path, const char *buf, size_t len,
    struct qmp_error *err)
{
	char		*tmp = NULL, *dir = NULL, *slash;
	int		 fd = -1, dfd = -1, rc = -1;
	size_t		 off = 0;
	ssize_t		 w;

	if (asprintf(&tmp, "%s.tmp", path) == -1) {
		tmp = NULL;
		qmp_error_set(err, QMP_CLS_GENERIC, "out of memory");
		goto out;
	}
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
	    0600)) == -1) {
		qmp_error_set(err, QMP_CLS_GENERIC, "%s: %s", tmp,
		    strerror(errno));
		goto out;
	}
	while (off < len) {
		if ((w = write(fd, buf + off, len - off)) == -1) {
			if (errno == EINTR)
				continue;
			qmp_error_set(err, QMP_CLS_GENERIC, "%s: %s", tmp,
			    strerror(errno));
			goto out;
		}
		off += (size_t)w;
	}
	if (fsync(fd) == -1 || close(fd) == -1) {
		fd = -1;
		qmp_error_set(err, QMP_CLS_GENERIC, "%s: %s", tmp,
		    strerror(errno));
		goto out;
	}
	fd = -1;
	if (rename(tmp, path) == -1) {
		qmp_error_set(err, QMP_CLS_GENERIC, "rename %s: %s", path,
		    strerror(errno));
		goto out;
	}
	/* The rename itself is durable only once the directory is. */
	if ((dir = strdup(path)) != NULL &&
	    (slash = strrchr(dir, '/')) != NULL) {
		*(slash == dir ? slash + 1 : slash) = '\0';
		if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) != -1)
			fsync(dfd);
	}
	rc = 0;
out:
	if (fd != -1) {
		close(fd);
		unlink(tmp);
	} else if (rc == -1 && tmp != NULL)
		unlink(tmp);
	if (dfd != -1)
		close(dfd);
	free(dir);
	free(tmp);
	return (rc);
}

/* "shared-socket" only where vm-add gave one, so a registry without
   such VMs reads as before. */
static void
reg_serialise_one(struct vm *vm, void *arg)
{
	json_t			*j;
	unsigned long long	 start;
	int			 pid;

	if (!(vm_origin(vm) & VM_ORIGIN_API))
		return;
	j = json_pack("{s:s,s:s}", "name", vm_name(vm), "socket",
	    vm_socket(vm));
	if (j != NULL && vm_share_pref(vm) != VM_SHARE_CONF)
		json_object_set_new(j, "shared-socket",
		    json_boolean(vm_share_pref(vm) == VM_SHARE_YES));
	/* vm-add's pid, with its start time: after a restart it is watched
	   again only if it is still that process. */
	if (j != NULL && (pid = vm_pid_given(vm, &start)) > 0 && start > 0 &&
	    start <= (unsigned long long)LLONG_MAX) {
		json_object_set_new(j, "pid", json_integer(pid));
		json_object_set_new(j, "pid-start",
		    json_integer((json_int_t)start));
	}
	json_array_append_new(arg, j);
}

char *
registry_serialise(size_t *len)
{
	json_t	*doc, *vms;
	char	*buf;

	vms = json_array();
	vm_foreach(reg_serialise_one, vms);
	doc = json_pack("{s:i,s:o}", "version", REG_VERSION, "vms", vms);
	if (doc == NULL)
		return (NULL);
	buf = json_dumps(doc, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
	json_decref(doc);
	if (buf != NULL)
		*len = strlen(buf);
	return (buf);
}

static int
reg_save_now(struct qmp_error *err)
{
	char	*buf, *path;
	size_t	 len;
	int	 rc;

	reg_dirty = 0;
	if ((path = reg_path("")) == NULL ||
	    (buf = registry_serialise(&len)) == NULL) {
		free(path);
		qmp_error_set(err, QMP_CLS_GENERIC, "out of memory");
		return (-1);
	}
	rc = registry_write_atomic(path, buf, len, err);
	free(buf);
	free(path);
	return (rc);
}

static void
reg_save_cb(evutil_socket_t fd, short what, void *arg)
{
	struct qmp_error	 err, e;
	struct reg_wait		*w;
	size_t			 n, i;
	int			 rc;

	rc = reg_save_now(&err);
	if (rc == -1)
		log_err("registry not saved: %s", err.desc);
	/* Answering may make more changes: take the list first. */
	w = reg_waits;
	n = reg_nwaits;
	reg_waits = NULL;
	reg_nwaits = reg_capwaits = 0;
	if (rc == -1)
		qmp_error_set(&e, QMP_CLS_GENERIC, "Done, but the registry "
		    "could not be saved: %s", err.desc);
	for (i = 0; i < n; i++)
		w[i].fn(rc == -1 ? &e : NULL, w[i].arg);
	free(w);
}

int
registry_dirty(registry_saved_fn *fn, void *arg)
{
	struct reg_wait	*nw;
	size_t		 ncap;
	int		 rc = 0;

	if (fn != NULL && reg_nwaits == reg_capwaits) {
		ncap = reg_capwaits == 0 ? 16 : reg_capwaits * 2;
		if ((nw = reallocarray(reg_waits, ncap, sizeof *nw)) == NULL)
			rc = -1;
		else {
			reg_waits = nw;
			reg_capwaits = ncap;
		}
	}
	if (fn != NULL && rc == 0) {
		reg_waits[reg_nwaits].fn = fn;
		reg_waits[reg_nwaits].arg = arg;
		reg_nwaits++;
	}
	reg_dirty = 1;
	if (reg_save_ev != NULL)
		event_active(reg_save_ev, EV_TIMEOUT, 0);
	return (rc);
}

/* ---- start and stop ---- */

/* A state file we could not fully use is kept for the operator. Kept
   before the broker says what was wrong with it, so that whoever acts on
   those words (an operator, a monitor, a test) finds the copy there. */
static void
reg_keep_bad(const char *buf, size_t len)
{
	struct qmp_error	 err;
	char			*path, suffix[64];

	snprintf(suffix, sizeof suffix, ".bad-%lld", (long long)time(NULL));
	if ((path = reg_path(suffix)) == NULL)
		return;
	if (registry_write_atomic(path, buf, len, &err) == -1)
		log_err("cannot keep a copy of the bad registry: %s",
		    err.desc);
	else
		log_warn("registry: copy of the bad file kept as %s", path);
	free(path);
}

static void
reg_load(void)
{
	char			*path, *buf = NULL;
	struct reg_entry	*e = NULL;
	struct qmp_error	 qe, why;
	struct vm		*vm;
	struct stat		 st;
	size_t			 n = 0, bad = 0, len = 0, i;
	ssize_t			 r;
	int			 fd;

	if ((path = reg_path("")) == NULL)
		return;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		if (errno != ENOENT)
			log_err("registry %s: %s", path, strerror(errno));
		free(path);
		return;
	}
	if (fstat(fd, &st) == -1 || (size_t)st.st_size > REG_FILE_MAX ||
	    (buf = malloc((size_t)st.st_size + 1)) == NULL) {
		log_err("registry %s: unreadable or too large", path);
		goto out;
	}
	while (len < (size_t)st.st_size) {
		r = read(fd, buf + len, (size_t)st.st_size - len);
		if (r <= 0)
			break;
		len += (size_t)r;
	}
	if (registry_parse(buf, len, &e, &n, &bad, &why) == -1) {
		reg_keep_bad(buf, len);
		log_err("registry %s unusable, starting without it: %s", path,
		    why.desc);
		reg_dirty = 1;
		goto out;
	}
	if (bad != 0) {
		reg_keep_bad(buf, len);
		log_err("registry %s: %zu entries ignored or cut: %s", path, bad,
		    why.desc);
		reg_dirty = 1;
	}
	for (i = 0; i < n; i++) {
		if ((vm = vm_add(e[i].name, e[i].socket, VM_ORIGIN_API,
		    e[i].share, &qe)) == NULL)
			log_err("registry: vm %s not restored: %s", e[i].name,
			    qe.desc);
		else if (e[i].pid > 0 && !vm_restore_pid(vm, e[i].pid,
		    e[i].pid_start))
			reg_dirty = 1;	/* the dead pid leaves the file */
	}
	log_info("registry: %zu VMs restored", n);
out:
	registry_entries_free(e, n);
	free(buf);
	free(path);
	close(fd);
}

int
registry_start(struct qmp_error *err)
{
	reg_save_ev = event_new(loop_base, -1, 0, reg_save_cb, NULL);
	if (reg_save_ev == NULL) {
		qmp_error_set(err, QMP_CLS_GENERIC, "out of memory");
		return (-1);
	}
	reg_load();
	registry_sync_config();
	if (reg_watch_dir(err) == -1)
		return (-1);
	if (reg_dirty)
		(void)registry_dirty(NULL, NULL);
	return (0);
}

void
registry_stop(void)
{
	if (reg_save_ev != NULL) {
		if (reg_dirty || reg_nwaits != 0)
			reg_save_cb(-1, 0, NULL);
		event_free(reg_save_ev);
		reg_save_ev = NULL;
	}
	reg_unwatch_dir();
}

