/*
 * Upgrade: hold, drain, hand over, exec (upgrade.h says why and how).
 */
#include "config.h"

#include <sys/mman.h>
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "broker/core/audit.h"
#include "broker/core/conf.h"
#include "broker/core/evlog.h"
#include "broker/core/job.h"
#include "broker/core/log.h"
#include "broker/core/loop.h"
#include "broker/core/proc.h"
#include "broker/notify.h"
#include "broker/privsep.h"
#include "broker/session/client.h"
#include "broker/session/listen.h"
#include "broker/session/peer.h"
#include "broker/svc/hotplug.h"
#include "broker/upgrade.h"
#include "broker/vm/vm.h"
#include "hv/mon.h"

#define UPG_ENV		"QMPBROKER_UPGRADE_FD"
#define UPG_FORMAT	UPGRADE_FORMAT
#define UPG_DOC_MAX	(512u * 1024 * 1024)	/* read back at most */
#define UPG_PREFLIGHT_MS 10000
#define UPG_POLL_US	1000	/* how often "is it quiet?" is asked */
#define UPG_LEFTOVER_S	2	/* unclaimed monitors closed after */
#define UPG_VERSION_MAX	128

enum upg_state {
	UPG_IDLE,
	UPG_PREFLIGHT,
	UPG_DRAINING,
};

static struct {
	enum upg_state	 st;
	struct req	*r;		/* the asker, or NULL */
	char		*binary;	/* the target */
	char		 self[4096];	/* the running binary, as on disk */
	char		*version;	/* ours */
	char		**argv;
	char		 next[UPG_VERSION_MAX];	/* the target's --version */
	struct proc	*proc;
	struct event	*poll;
	uint64_t	 held_at;	/* CLOCK_MONOTONIC ms */
	uint64_t	 held_cpu;	/* CLOCK_PROCESS_CPUTIME_ID us */
	bool		 reloading;	/* RELOADING=1 said */

	/* the new process's side */
	bool		 resuming;
	json_t		*doc;
	struct event	*leftover;
} U;

static uint64_t
upg_now(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000);
}

/* The CPU this process used, in us. It goes on across execve (the
   process is the same), so the pause's CPU time is the new process's
   reading minus the old one's: what the pause costs whatever else the
   machine runs, where the wall clock (pause-ms) also counts waiting. */
static uint64_t
upg_cpu_us(void)
{
	struct timespec	ts;

	if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) == -1)
		return (0);
	return ((uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000);
}

void
upgrade_init(const char *version, char **argv)
{
	ssize_t	n;
	char	*p;

	free(U.version);
	U.version = strdup(version);
	U.argv = argv;
	if ((n = readlink("/proc/self/exe", U.self, sizeof U.self - 1)) < 0)
		n = 0;
	U.self[n] = '\0';
	/* replaced on disk since we started: the path is what counts */
	if ((p = strstr(U.self, " (deleted)")) != NULL && p[10] == '\0')
		*p = '\0';
	U.resuming = getenv(UPG_ENV) != NULL;
}

bool
upgrade_resuming(void)
{
	return (U.resuming);
}

/* Back to as it was; r told why. */
static void __attribute__((format(printf, 1, 2)))
upg_fail(const char *fmt, ...)
{
	struct qmp_error	e;
	va_list			ap;

	va_start(ap, fmt);
	qmp_error_vset(&e, QMP_CLS_GENERIC, fmt, ap);
	va_end(ap);
	log_err("upgrade: %s", e.desc);
	if (U.poll != NULL)
		evtimer_del(U.poll);
	if (U.st == UPG_DRAINING) {
		client_hold(false);
		lsn_hold(false);
	}
	if (U.reloading)
		notify_reloaded();
	U.reloading = false;
	U.st = UPG_IDLE;
	U.proc = NULL;
	free(U.binary);
	U.binary = NULL;
	if (U.r != NULL)
		req_error_qmp(U.r, &e);
	U.r = NULL;
}

/* Why an upgrade cannot go now (what would not be carried over), or
   NULL. */
static const char *
upg_blocker(char *buf, size_t len)
{
	size_t	n;

	if (loop_stopping())
		return ("the broker is stopping");
	if ((n = job_count_active()) > 0) {
		snprintf(buf, len, "%zu jobs are running (image, domain or "
		    "migration jobs); try again when they end", n);
		return (buf);
	}
	if ((n = hotplug_busy_count()) > 0) {
		snprintf(buf, len, "a hotplug operation is under way on %zu "
		    "VMs; try again when it ends", n);
		return (buf);
	}
	if ((n = proc_count()) > 0) {
		snprintf(buf, len, "%zu child processes run (losetup, "
		    "qemu-nbd, qemu-img); try again when they end", n);
		return (buf);
	}
	return (NULL);
}

/* FD_CLOEXEC is the only fd flag: set, not read and set, as 2,000 fds
   go through here on each side of an exec. -1 if any failed (each is
   tried). */
static int
upg_cloexec(const json_t *fds, bool on)
{
	json_t	*v;
	size_t	 i;
	int	 rc = 0;

	json_array_foreach(fds, i, v) {
		if (fcntl((int)json_integer_value(v), F_SETFD, on ?
		    FD_CLOEXEC : 0) == -1)
			rc = -1;
	}
	return (rc);
}

/* The state, into an fd the new process inherits; -1 with errno. */
static int
upg_write_doc(const json_t *doc)
{
	char	*buf;
	size_t	 len, off = 0;
	ssize_t	 n;
	int	 fd;

	if ((buf = json_dumps(doc, JSON_COMPACT)) == NULL) {
		errno = ENOMEM;
		return (-1);
	}
	len = strlen(buf);
	if ((fd = memfd_create("qmpbroker-upgrade", MFD_CLOEXEC)) == -1) {
		free(buf);
		return (-1);
	}
	while (off < len) {
		if ((n = write(fd, buf + off, len - off)) == -1) {
			if (errno == EINTR)
				continue;
			free(buf);
			close(fd);
			return (-1);
		}
		off += (size_t)n;
	}
	free(buf);
	if (lseek(fd, 0, SEEK_SET) == -1) {
		close(fd);
		return (-1);
	}
	return (fd);
}

/* Everything is quiet: export, exec. Returns only if it failed. */
static void
upg_handover(void)
{
	json_t		*fds, *doc = NULL, *lsns, *mons, *clients, *st;
	sigset_t	 mask, omask;
	char		 num[16];
	int		 fd = -1, pfd = -1, saved;

	/* the events QEMU sent so far reach the subscribers' queues (and
	   the log's files, whose seq the new process goes on from) */
	evlog_flush();
	if ((fds = json_array()) == NULL ||
	    (lsns = lsn_export_all(fds)) == NULL) {
		json_decref(fds);
		upg_fail("out of memory");
		return;
	}
	mons = mon_export_all(fds);
	clients = client_export_all(U.r, fds);
	if (mons != NULL && clients != NULL)
		doc = json_pack("{s:i,s:s,s:I,s:O,s:o,s:o,s:o}", "format",
		    UPG_FORMAT, "version", U.version, "held-at",
		    (json_int_t)U.held_at, "fds", fds, "listeners", lsns,
		    "mons", mons, "clients", clients);
	else {
		json_decref(lsns);
		json_decref(mons);
		json_decref(clients);
	}
	/* what the status files say, as this process kept it: the new
	   one need not read them (vm_status_preset) */
	if (doc != NULL && json_object_set_new(doc, "held-cpu-us",
	    json_integer((json_int_t)U.held_cpu)) != 0) {
		json_decref(doc);
		doc = NULL;
	}
	if (doc != NULL && (st = vm_status_export()) != NULL &&
	    json_object_set_new(doc, "vm-status", st) != 0) {
		json_decref(doc);
		doc = NULL;
	}
	if (doc == NULL) {
		json_decref(fds);
		upg_fail("cannot gather the state to hand over (out of "
		    "memory, or a client turned busy)");
		return;
	}
	log_notice("upgrade: handing over to %s (%s): %zu listeners, %zu "
	    "monitors, %zu clients, held %" PRIu64 " ms", U.binary, U.next,
	    json_array_size(json_object_get(doc, "listeners")),
	    json_array_size(json_object_get(json_object_get(doc, "mons"),
	    "mons")), json_array_size(json_object_get(doc, "clients")),
	    upg_now() - U.held_at);
	if ((fd = upg_write_doc(doc)) == -1) {
		saved = errno;
		json_decref(doc);
		json_decref(fds);
		upg_fail("cannot write the state: %s", strerror(saved));
		return;
	}
	json_decref(doc);
	snprintf(num, sizeof num, "%d", fd);
	/* separated: the helper's socket too, the one fd the new process
	   needs to go on as the child (privsep.h) */
	if (json_array_append_new(fds, json_integer(fd)) != 0 ||
	    privsep_upgrade_pass(&pfd) == -1 || (pfd != -1 &&
	    json_array_append_new(fds, json_integer(pfd)) != 0) ||
	    upg_cloexec(fds, false) == -1 || setenv(UPG_ENV, num, 1) == -1) {
		saved = errno;
		privsep_upgrade_undo();
		upg_cloexec(fds, true);
		close(fd);
		json_decref(fds);
		upg_fail("cannot pass the connections on: %s",
		    strerror(saved));
		return;
	}
	fflush(NULL);
	/* The mask survives execve, the handlers do not: until the new
	   process watches them, a reload or another SIGUSR2 waits instead
	   of killing it (main unblocks them). */
	sigemptyset(&mask);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SIGUSR2);
	sigprocmask(SIG_BLOCK, &mask, &omask);
	execv(U.binary, U.argv);
	/* still here: the old process carries on, as it was */
	saved = errno;
	sigprocmask(SIG_SETMASK, &omask, NULL);
	unsetenv(UPG_ENV);
	privsep_upgrade_undo();
	upg_cloexec(fds, true);
	close(fd);
	json_decref(fds);
	upg_fail("cannot exec %s: %s; the broker carries on", U.binary,
	    strerror(saved));
}

static void
upg_poll_cb(evutil_socket_t fd, short what, void *arg)
{
	struct timeval	 tv = { 0, UPG_POLL_US };
	char		 buf[160];
	const char	*why;
	size_t		 nc, nm, na;

	if ((why = upg_blocker(buf, sizeof buf)) != NULL) {
		upg_fail("refused: %s; nothing changed", why);
		return;
	}
	nc = client_busy(U.r);
	nm = mon_busy();
	/* the audit trail's writer thread dies with the exec */
	na = audit_unwritten();
	if (nc == 0 && nm == 0 && na == 0) {
		upg_handover();
		return;
	}
	if (upg_now() - U.held_at >= (uint64_t)conf.upgrade_timeout_ms) {
		upg_fail("timed out after %d ms waiting for %zu clients and "
		    "%zu monitors with commands in flight%s; the broker "
		    "carries on", conf.upgrade_timeout_ms, nc, nm, na > 0 ?
		    " and the audit trail's writer" : "");
		return;
	}
	evtimer_add(U.poll, &tv);
}

static void
upg_preflight_done(struct proc *p, const struct proc_result *res, void *arg)
{
	struct timeval	 tv = { 0, 0 };
	char		 buf[160];
	const char	*why, *out = res->out != NULL ? res->out : "", *f;
	size_t		 n;

	U.proc = NULL;
	if (U.st != UPG_PREFLIGHT)
		return;
	if (!res->exited || res->code != 0 ||
	    strncmp(out, "qmpbrokerd ", 11) != 0) {
		proc_describe(res, buf, sizeof buf);
		upg_fail("refused: %s --upgrade-format failed (%s%s%.*s); the "
		    "broker carries on", U.binary, buf, res->errlen > 0 ?
		    ": " : "", (int)strcspn(res->err != NULL ? res->err : "",
		    "\n"), res->err != NULL ? res->err : "");
		return;
	}
	n = strcspn(out + 11, "\r\n");
	snprintf(U.next, sizeof U.next, "%.*s", (int)n, out + 11);
	if ((f = strstr(out, "\nupgrade-format ")) == NULL ||
	    atoi(f + 16) != UPG_FORMAT) {
		upg_fail("refused: %s (qmpbrokerd %s) does not read this "
		    "broker's state (upgrade-format %d); the broker carries on",
		    U.binary, U.next, UPG_FORMAT);
		return;
	}
	if ((why = upg_blocker(buf, sizeof buf)) != NULL) {
		upg_fail("refused: %s; nothing changed", why);
		return;
	}
	/* From here nothing new starts: requests wait in the kernel. */
	U.st = UPG_DRAINING;
	U.held_at = upg_now();
	U.held_cpu = upg_cpu_us();
	notify_reloading();
	U.reloading = true;
	lsn_hold(true);
	client_hold(true);
	log_notice("upgrade: %s is %s; holding, %zu monitors and %zu clients "
	    "to settle", U.binary, U.next, mon_busy(), client_busy(U.r));
	evtimer_add(U.poll, &tv);
}

void
upgrade_start(struct req *r, const char *binary)
{
	struct qmp_error	 e;
	char			 buf[160];
	const char		*why;
	char			*argv[3];

	if (U.st != UPG_IDLE) {
		if (r != NULL)
			req_error(r, QMP_CLS_GENERIC, "An upgrade is already "
			    "under way (to %s)", U.binary);
		log_warn("upgrade: asked again while one is under way");
		return;
	}
	if ((why = upg_blocker(buf, sizeof buf)) != NULL) {
		if (r != NULL)
			req_error(r, QMP_CLS_GENERIC, "upgrade refused: %s",
			    why);
		log_warn("upgrade refused: %s", why);
		return;
	}
	if (binary == NULL)
		binary = U.self;
	if (*binary != '/') {
		if (r != NULL)
			req_error(r, QMP_CLS_GENERIC, "upgrade refused: the "
			    "binary must be an absolute path, not '%s'",
			    binary);
		log_warn("upgrade refused: no binary path");
		return;
	}
	if (U.poll == NULL &&
	    (U.poll = evtimer_new(loop_base, upg_poll_cb, NULL)) == NULL) {
		if (r != NULL)
			req_error(r, QMP_CLS_GENERIC, "out of memory");
		return;
	}
	if ((U.binary = strdup(binary)) == NULL) {
		if (r != NULL)
			req_error(r, QMP_CLS_GENERIC, "out of memory");
		return;
	}
	U.r = r;
	U.st = UPG_PREFLIGHT;
	log_notice("upgrade to %s asked%s", U.binary, r != NULL ? "" :
	    " (signal)");
	/* the binary proves it starts, and reads our state, before we
	   give anything up */
	argv[0] = U.binary;
	argv[1] = (char *)"--upgrade-format";
	argv[2] = NULL;
	if ((U.proc = proc_spawn(argv, UPG_PREFLIGHT_MS, upg_preflight_done,
	    NULL, &e)) == NULL)
		upg_fail("refused: %s; the broker carries on", e.desc);
}

/* ---- the new process ---- */

/* What the previous process passed and nobody can use: every fd >= 3
   that is not close-on-exec, as everything this process opens is. */
static void
upg_close_inherited(void)
{
	DIR		*d;
	struct dirent	*de;
	int		 fd, fl;

	if ((d = opendir("/proc/self/fd")) == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		fd = atoi(de->d_name);
		if (fd < 3 || fd == dirfd(d))
			continue;
		if ((fl = fcntl(fd, F_GETFD)) != -1 && !(fl & FD_CLOEXEC))
			close(fd);
	}
	closedir(d);
}

static int
upg_int_cmp(const void *a, const void *b)
{
	int	x = *(const int *)a, y = *(const int *)b;

	return ((x > y) - (x < y));
}

/* Every fd the document names is open and named once; -1 with why if
   not. */
static int
upg_check_fds(const json_t *fds, char *why, size_t len)
{
	json_t	*v;
	size_t	 i, n;
	int	*a, fl;

	if (!json_is_array(fds) || (n = json_array_size(fds)) > (1u << 22)) {
		snprintf(why, len, "state: no list of fds");
		return (-1);
	}
	if ((a = calloc(n + 1, sizeof *a)) == NULL) {
		snprintf(why, len, "out of memory");
		return (-1);
	}
	json_array_foreach(fds, i, v) {
		if (!json_is_integer(v) || json_integer_value(v) < 3 ||
		    json_integer_value(v) > INT32_MAX ||
		    (fl = fcntl((int)json_integer_value(v), F_GETFD)) == -1) {
			snprintf(why, len, "state: fd %zu is not an open fd",
			    i);
			free(a);
			return (-1);
		}
		a[i] = (int)json_integer_value(v);
	}
	qsort(a, n, sizeof *a, upg_int_cmp);
	for (i = 1; i < n; i++) {
		if (a[i] == a[i - 1]) {
			snprintf(why, len, "state: fd %d named twice", a[i]);
			free(a);
			return (-1);
		}
	}
	free(a);
	return (0);
}

/* The document from fd (closed here); NULL with why. */
static json_t *
upg_read_doc(int fd, char *why, size_t len)
{
	struct stat	 st;
	json_error_t	 je;
	json_t		*doc;
	char		*buf;
	size_t		 off = 0;
	ssize_t		 n;

	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode) || st.st_size <= 0 ||
	    (uint64_t)st.st_size > UPG_DOC_MAX) {
		snprintf(why, len, "state fd %d is not a document of at most "
		    "%u bytes", fd, UPG_DOC_MAX);
		close(fd);
		return (NULL);
	}
	if ((buf = malloc((size_t)st.st_size)) == NULL) {
		snprintf(why, len, "out of memory");
		close(fd);
		return (NULL);
	}
	while (off < (size_t)st.st_size) {
		n = pread(fd, buf + off, (size_t)st.st_size - off, (off_t)off);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	close(fd);
	doc = json_loadb(buf, off, JSON_REJECT_DUPLICATES, &je);
	free(buf);
	if (doc == NULL)
		snprintf(why, len, "state does not parse: %s", je.text);
	return (doc);
}

void
upgrade_resume_begin(void)
{
	struct qmp_error	 e;
	const char		*s;
	char			 why[sizeof e.desc + 64], *end, val[24];
	long			 fd;
	json_t			*doc;
	int			 fl;

	if ((s = getenv(UPG_ENV)) == NULL)
		return;
	U.resuming = true;
	snprintf(val, sizeof val, "%s", s);
	unsetenv(UPG_ENV);
	errno = 0;
	fd = strtol(val, &end, 10);
	/* Inherited fds are the only ones not close-on-exec here: one
	   that is, is this process's own (a stale variable) and stays. */
	if (errno != 0 || *end != '\0' || fd < 3 || fd > INT32_MAX ||
	    (fl = fcntl((int)fd, F_GETFD)) == -1 || (fl & FD_CLOEXEC)) {
		snprintf(why, sizeof why, "%s=%s is not an inherited fd",
		    UPG_ENV, val);
		goto fail;
	}
	if ((doc = upg_read_doc((int)fd, why, sizeof why)) == NULL)
		goto fail;
	if (json_integer_value(json_object_get(doc, "format")) != UPG_FORMAT ||
	    !json_is_string(json_object_get(doc, "version")) ||
	    json_string_length(json_object_get(doc, "version")) >
	    UPG_VERSION_MAX ||
	    !json_is_integer(json_object_get(doc, "held-at"))) {
		json_decref(doc);
		snprintf(why, sizeof why, "state of an unknown format");
		goto fail;
	}
	/* the memfd is closed: every fd the state names is one of the
	   previous process's connections */
	if (upg_check_fds(json_object_get(doc, "fds"), why, sizeof why) ==
	    -1) {
		json_decref(doc);
		goto fail;
	}
	if (lsn_inherit(json_object_get(doc, "listeners"), &e) == -1 ||
	    mon_inherit(json_object_get(doc, "mons"), &e) == -1) {
		/* they close what they took, the rest is closed below */
		lsn_inherit_end();
		mon_inherit_end();
		json_decref(doc);
		snprintf(why, sizeof why, "%s", e.desc);
		goto fail;
	}
	/* ours now: a child must not hold a QEMU connection */
	(void)upg_cloexec(json_object_get(doc, "fds"), true);
	/* the VMs added below take their recorded status from here, not
	   from one file each (absent: from the files, as at a start) */
	vm_status_preset(json_object_get(doc, "vm-status"));
	U.doc = doc;
	log_info("upgrade: state of %s read: %zu listeners, %zu monitors, "
	    "%zu clients", json_string_value(json_object_get(doc, "version")),
	    json_array_size(json_object_get(doc, "listeners")),
	    json_array_size(json_object_get(json_object_get(doc, "mons"),
	    "mons")), json_array_size(json_object_get(doc, "clients")));
	return;
fail:
	U.resuming = false;
	log_err("upgrade: %s; starting afresh (connections of the previous "
	    "process are closed)", why);
	upg_close_inherited();
}

static void
upg_leftover_cb(evutil_socket_t fd, short what, void *arg)
{
	size_t	n;

	if ((n = mon_inherit_end()) > 0)
		log_notice("upgrade: %zu monitor connections had no VM any "
		    "more: closed", n);
	event_free(U.leftover);
	U.leftover = NULL;
}

void
upgrade_resume_end(void)
{
	struct qmp_error	 e;
	struct client		*asker;
	struct timeval		 tv = { UPG_LEFTOVER_S, 0 };
	json_t			*id, *ret, *hc;
	uint64_t		 pause, cpu = 0, held_cpu;
	size_t			 n;

	if (U.doc == NULL)
		return;
	if ((n = lsn_inherit_end()) > 0)
		log_notice("upgrade: %zu listeners had no owner any more: "
		    "closed", n);
	if (client_import_all(json_object_get(U.doc, "clients"), &asker, &id,
	    &e) == -1)
		log_err("upgrade: clients: %s", e.desc);
	pause = upg_now() - (uint64_t)json_integer_value(json_object_get(
	    U.doc, "held-at"));
	/* absent from an older binary's document: not known then */
	hc = json_object_get(U.doc, "held-cpu-us");
	if (json_is_integer(hc) && json_integer_value(hc) > 0 &&
	    (held_cpu = (uint64_t)json_integer_value(hc)) < upg_cpu_us())
		cpu = (upg_cpu_us() - held_cpu) / 1000;
	log_notice("upgrade from %s to %s done: %zu clients carried over, "
	    "held %" PRIu64 " ms (%" PRIu64 " ms CPU)",
	    json_string_value(json_object_get(U.doc, "version")), U.version,
	    client_count(), pause, cpu);
	if (asker != NULL) {
		struct audit_who	 who;
		struct audit_pending	*ap;
		json_t			*args;

		/* the old process's request ends here: the trail has it
		   once, with what it did */
		who.uid = asker->peer.uid;
		who.gid = asker->peer.gid;
		who.pid = asker->peer.pid;
		who.exe = peer_exe(&asker->peer);
		who.via = peer_via(&asker->peer);
		args = json_pack("{s:s,s:s,s:s}", "binary", U.self, "previous",
		    json_string_value(json_object_get(U.doc, "version")),
		    "version", U.version);
		if ((ap = audit_begin(&who, NULL, "upgrade", NULL, args,
		    NULL)) != NULL)
			audit_end(ap, NULL);
		json_decref(args);
		ret = json_pack("{s:s,s:s,s:I}", "version", U.version,
		    "previous", json_string_value(json_object_get(U.doc,
		    "version")), "pause-ms", (json_int_t)pause);
		if (ret != NULL && json_is_integer(hc))
			json_object_set_new(ret, "pause-cpu-ms",
			    json_integer((json_int_t)cpu));
		client_answer(asker, id, ret);
	}
	json_decref(id);
	json_decref(U.doc);
	U.doc = NULL;
	/* The monitors take their connections from the loop, once their
	   VMs exist; what is left after that belongs to no VM. */
	if ((U.leftover = evtimer_new(loop_base, upg_leftover_cb, NULL)) ==
	    NULL || evtimer_add(U.leftover, &tv) == -1)
		mon_inherit_end();
}
