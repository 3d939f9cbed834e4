/*
 * Migration, as QEMU 7.2 shows it over QMP: migrate-set-capabilities,
 * migrate-set-parameters, migrate-incoming (with --incoming-defer),
 * migrate, migrate_cancel, migrate-start-postcopy, query-migrate and the
 * MIGRATION/MIGRATION_PASS events (with the "events" capability).
 *
 * The stream is real bytes over a real socket (unix: or tcp:), so two
 * fake-qemu processes migrate into each other and a destination that is
 * killed breaks the source's writes ("Broken pipe"), as with QEMU. The
 * "RAM" is FMIG_TOTAL zero bytes paced by max-bandwidth, then one 'Q'
 * byte that tells the destination it has it all.
 *
 * Postcopy: migrate-start-postcopy puts a 'P' byte in the stream, on
 * which the destination runs the guest (RESUME) in postcopy-active. A
 * stream that breaks then pauses both ends (postcopy-paused), as does
 * migrate-pause on the source (out of band too, as QEMU 7.2 allows);
 * migrate-recover on the destination listens again (postcopy-recover)
 * and migrate with resume on the source carries on where it stopped.
 *
 * Fault: "migrate-fail N" fails the source once N% is sent.
 */
#include "config.h"

#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools/fake-qemu/fake.h"

#define FMIG_TOTAL	(16 * 1024 * 1024)
#define FMIG_TICK_MS	20
#define FMIG_CHUNK	65536

struct fmig {
	int		 events, postcopy;
	int64_t		 max_bw, downtime, pc_bw;
	const char	*status;		/* "none" ... */
	char		 error[256];
	int		 fd;			/* source: the stream */
	struct event	*tick;
	int64_t		 sent;
	int		 pass;
	struct timeval	 start;
	int64_t		 total_ms;
	int		 postmigrate;		/* source stopped for good */
	int		 pc_mark;		/* the 'P' byte still to send */
	/* destination */
	int		 lfd, ifd;
	struct event	*lev, *iev;
	int		 incoming;		/* migrate-incoming seen */
	const char	*in_status;
	char		 unix_path[108];
};

static struct fmig *
fmig_get(struct vm *vm)
{
	struct fmig	*m = vm->mig;

	if (m == NULL) {
		m = vm->mig = xcalloc(1, sizeof *m);
		m->max_bw = 134217728;
		m->downtime = 300;
		m->status = "none";
		m->fd = m->lfd = m->ifd = -1;
	}
	return (m);
}

static void
fmig_status(struct vm *vm, const char *st)
{
	struct fmig	*m = vm->mig;

	m->status = st;
	if (m->events)
		vm_event(vm, "MIGRATION", json_pack("{s:s}", "status", st));
}

static int
fmig_active(const struct fmig *m)
{
	return (strcmp(m->status, "setup") == 0 ||
	    strcmp(m->status, "active") == 0 ||
	    strncmp(m->status, "postcopy-", 9) == 0 ||
	    strcmp(m->status, "cancelling") == 0);
}

/* A socket for uri, listening or connected; -1 with err. */
static int
fmig_socket(const char *uri, int listening, char *upath,
    struct qmp_error *err)
{
	struct sockaddr_un	 sun;
	struct addrinfo		 hints, *ai = NULL;
	char			 host[256], *port;
	int			 fd = -1, one = 1;

	if (strncmp(uri, "unix:", 5) == 0) {
		memset(&sun, 0, sizeof sun);
		sun.sun_family = AF_UNIX;
		if (strlen(uri + 5) >= sizeof sun.sun_path) {
			qmp_error_set(err, QMP_CLS_GENERIC, "UNIX socket path "
			    "'%s' is too long", uri + 5);
			return (-1);
		}
		strcpy(sun.sun_path, uri + 5);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (listening)
			unlink(sun.sun_path);
		if (fd < 0 || (listening ? bind(fd, (struct sockaddr *)&sun,
		    sizeof sun) != 0 || listen(fd, 1) != 0 :
		    connect(fd, (struct sockaddr *)&sun, sizeof sun) != 0))
			goto fail;
		if (listening && upath != NULL)
			strcpy(upath, sun.sun_path);
		return (fd);
	}
	if (strncmp(uri, "tcp:", 4) != 0 || strlen(uri) >= sizeof host + 4) {
		qmp_error_set(err, QMP_CLS_GENERIC, "unknown migration "
		    "protocol: %s", uri);
		return (-1);
	}
	strcpy(host, uri + 4);
	if ((port = strrchr(host, ':')) == NULL) {
		qmp_error_set(err, QMP_CLS_GENERIC, "address resolution "
		    "failed for %s: Name or service not known", uri + 4);
		return (-1);
	}
	*port++ = '\0';
	memset(&hints, 0, sizeof hints);
	hints.ai_socktype = SOCK_STREAM;
	if (getaddrinfo(host, port, &hints, &ai) != 0) {
		qmp_error_set(err, QMP_CLS_GENERIC, "address resolution "
		    "failed for %s:%s", host, port);
		return (-1);
	}
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0 && listening)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (fd < 0 || (listening ? bind(fd, ai->ai_addr, ai->ai_addrlen) !=
	    0 || listen(fd, 1) != 0 : connect(fd, ai->ai_addr,
	    ai->ai_addrlen) != 0))
		goto fail;
	freeaddrinfo(ai);
	return (fd);
fail:
	qmp_error_set(err, QMP_CLS_GENERIC, "Failed to %s socket: %s",
	    listening ? "bind" : "connect", strerror(errno));
	if (fd >= 0)
		close(fd);
	if (ai != NULL)
		freeaddrinfo(ai);
	return (-1);
}

/* ---- source ---- */

static void
fmig_stop(struct fmig *m)
{
	if (m->tick != NULL)
		evtimer_del(m->tick);
	if (m->fd >= 0)
		close(m->fd);
	m->fd = -1;
}

/* why: QEMU's error-desc */
static void
fmig_fail(struct vm *vm, const char *why)
{
	struct fmig	*m = vm->mig;

	fmig_stop(m);
	snprintf(m->error, sizeof m->error, "%s", why);
	fmig_status(vm, "failed");
	/* a source whose postcopy failed cannot run again; else it runs */
}

static void
fmig_fail_errno(struct vm *vm)
{
	char	why[256];

	if (strcmp(vm->mig->status, "postcopy-active") == 0) {
		/* the guest runs on the destination: QEMU waits for a
		   recovery */
		fmig_stop(vm->mig);
		fmig_status(vm, "postcopy-paused");
		return;
	}
	snprintf(why, sizeof why, "Unable to write to socket: %s",
	    strerror(errno));
	fmig_fail(vm, why);
}

static void
fmig_tick(evutil_socket_t fd, short ev, void *arg)
{
	static const char	 zero[FMIG_CHUNK];
	struct vm		*vm = arg;
	struct fmig		*m = vm->mig;
	struct timeval		 tv = { 0, FMIG_TICK_MS * 1000 }, now;
	const struct fault	*f;
	int64_t			 bw, allow;
	ssize_t			 n;

	if (strcmp(m->status, "setup") == 0) {
		fmig_status(vm, "active");
		m->pass = 1;
		if (m->events)
			vm_event(vm, "MIGRATION_PASS", json_pack("{s:i}",
			    "pass", 1));
	}
	bw = strcmp(m->status, "postcopy-active") == 0 && m->pc_bw > 0 ?
	    m->pc_bw : m->max_bw;
	allow = bw * FMIG_TICK_MS / 1000;
	if (allow < 1)
		allow = 1;
	if (m->pc_mark) {
		if (write(m->fd, "P", 1) != 1) {
			if (errno != EAGAIN) {
				fmig_fail_errno(vm);
				return;
			}
			evtimer_add(m->tick, &tv);
			return;
		}
		m->pc_mark = 0;
	}
	f = fault_get(&vm->fake->faults, vm->nconn - 1, F_MIGRATE_FAIL, NULL);
	while (allow > 0 && m->sent < FMIG_TOTAL) {
		if (f != NULL && m->sent * 100 >= (int64_t)FMIG_TOTAL * f->n) {
			fmig_fail(vm, "Unable to write to socket: injected "
			    "fault (migrate-fail)");
			return;
		}
		n = allow < FMIG_CHUNK ? allow : FMIG_CHUNK;
		if (n > FMIG_TOTAL - m->sent)
			n = FMIG_TOTAL - m->sent;
		if ((n = write(m->fd, zero, (size_t)n)) < 0) {
			if (errno == EAGAIN)
				break;
			fmig_fail_errno(vm);
			return;
		}
		m->sent += n;
		allow -= n;
	}
	if (m->sent < FMIG_TOTAL || write(m->fd, "Q", 1) != 1) {
		if (m->sent >= FMIG_TOTAL && errno != EAGAIN) {
			fmig_fail_errno(vm);
			return;
		}
		evtimer_add(m->tick, &tv);
		return;
	}
	fmig_stop(m);
	m->pass = 2;
	if (m->events)
		vm_event(vm, "MIGRATION_PASS", json_pack("{s:i}", "pass", 2));
	if (vm->running) {
		vm->running = 0;
		vm_event(vm, "STOP", NULL);
	}
	m->postmigrate = 1;
	gettimeofday(&now, NULL);
	m->total_ms = (now.tv_sec - m->start.tv_sec) * 1000 +
	    (now.tv_usec - m->start.tv_usec) / 1000;
	fmig_status(vm, "completed");
}

/* migrate {resume: true}: a paused postcopy goes on over a new stream */
static json_t *
fmig_resume(struct vm *vm, const char *uri, struct qmp_error *err)
{
	struct fmig	*m = vm->mig;
	struct timeval	 tv = { 0, FMIG_TICK_MS * 1000 };

	if (strcmp(m->status, "postcopy-paused") != 0) {
		qmp_error_set(err, QMP_CLS_GENERIC, "Cannot resume if there is "
		    "no paused migration");
		return (NULL);
	}
	fmig_status(vm, "postcopy-recover");
	if ((m->fd = fmig_socket(uri, 0, NULL, err)) < 0) {
		fmig_status(vm, "postcopy-paused");
		return (NULL);
	}
	fcntl(m->fd, F_SETFL, fcntl(m->fd, F_GETFL) | O_NONBLOCK);
	fmig_status(vm, "postcopy-active");
	evtimer_add(m->tick, &tv);
	return (json_object());
}

json_t *
mig_pause(struct cmdctx *x, json_t *args, struct qmp_error *err)
{
	struct vm	*vm = x->vm;
	struct fmig	*m = fmig_get(vm);

	if (strcmp(m->status, "postcopy-active") != 0) {
		qmp_error_set(err, QMP_CLS_GENERIC, "migrate-pause is currently "
		    "only supported during postcopy-active state");
		return (NULL);
	}
	if (m->fd >= 0) {
		fmig_stop(m);
		fmig_status(vm, "postcopy-paused");
	} else if (m->ifd >= 0) {
		/* the destination's end: the stream breaks, both pause */
		shutdown(m->ifd, SHUT_RDWR);
	}
	return (json_object());
}

json_t *
mig_migrate(struct cmdctx *x, json_t *args, struct qmp_error *err)
{
	struct vm	*vm = x->vm;
	struct fmig	*m = fmig_get(vm);
	struct timeval	 tv = { 0, FMIG_TICK_MS * 1000 };
	const char	*uri;
	int		 bad, resume = 0;

	if ((uri = arg_str(args, "uri", 1, err, &bad)) == NULL)
		return (NULL);
	if (arg_bool(args, "resume", &resume, err) != 0)
		return (NULL);
	if (resume)
		return (fmig_resume(vm, uri, err));
	if (vm->inmigrate) {
		qmp_error_set(err, QMP_CLS_GENERIC, "Guest is waiting for an "
		    "incoming migration");
		return (NULL);
	}
	if (fmig_active(m)) {
		qmp_error_set(err, QMP_CLS_GENERIC, "There's a migration "
		    "process in progress");
		return (NULL);
	}
	m->sent = 0;
	m->pass = 0;
	m->error[0] = '\0';
	gettimeofday(&m->start, NULL);
	fmig_status(vm, "setup");
	if ((m->fd = fmig_socket(uri, 0, NULL, err)) < 0) {
		/* QEMU 7.2 answers {} and fails the migration */
		fmig_fail(vm, err->desc);
		return (json_object());
	}
	fcntl(m->fd, F_SETFL, fcntl(m->fd, F_GETFL) | O_NONBLOCK);
	if (m->tick == NULL)
		m->tick = evtimer_new(vm->fake->base, fmig_tick, vm);
	evtimer_add(m->tick, &tv);
	return (json_object());
}

json_t *
mig_cancel(struct cmdctx *x, json_t *args, struct qmp_error *err)
{
	struct vm	*vm = x->vm;
	struct fmig	*m = fmig_get(vm);

	if (strcmp(m->status, "setup") == 0 ||
	    strcmp(m->status, "active") == 0) {
		fmig_stop(m);
		fmig_status(vm, "cancelling");
		fmig_status(vm, "cancelled");
	}
	return (json_object());
}

json_t *
mig_start_postcopy(struct cmdctx *x, json_t *args, struct qmp_error *err)
{
	struct vm	*vm = x->vm;
	struct fmig	*m = fmig_get(vm);

	if (!m->postcopy) {
		qmp_error_set(err, QMP_CLS_GENERIC, "Enable postcopy with "
		    "migrate_set_capability before the start of migration");
		return (NULL);
	}
	if (strcmp(m->status, "active") != 0 &&
	    strcmp(m->status, "setup") != 0) {
		qmp_error_set(err, QMP_CLS_GENERIC, "Postcopy must be started "
		    "after migration has been started");
		return (NULL);
	}
	if (vm->running) {
		vm->running = 0;
		vm_event(vm, "STOP", NULL);
	}
	m->pc_mark = 1;
	fmig_status(vm, "postcopy-active");
	return (json_object());
}

json_t *
mig_query(struct cmdctx *x, json_t *args, struct qmp_error *err)
{
	struct fmig	*m = fmig_get(x->vm);
	json_t		*r;

	if (strcmp(m->status, "none") == 0)
		return (json_object());
	r = json_pack("{s:s,s:{s:I,s:I,s:I,s:I,s:i,s:i,s:I}}", "status",
	    m->status, "ram", "transferred", (json_int_t)m->sent,
	    "remaining", (json_int_t)(FMIG_TOTAL - m->sent),
	    "total", (json_int_t)FMIG_TOTAL, "duplicate", (json_int_t)0,
	    "dirty-sync-count", m->pass, "page-size", 4096,
	    "dirty-pages-rate", (json_int_t)0);
	if (strcmp(m->status, "completed") == 0) {
		json_object_set_new(r, "total-time", json_integer(m->total_ms));
		json_object_set_new(r, "downtime", json_integer(1));
	} else if (fmig_active(m))
		json_object_set_new(r, "expected-downtime",
		    json_integer(m->downtime));
	if (strcmp(m->status, "failed") == 0 && m->error[0] != '\0')
		json_object_set_new(r, "error-desc", json_string(m->error));
	return (r);
}

json_t *
mig_set_caps(struct cmdctx *x, json_t *args, struct qmp_error *err)
{
	static const char *const known[] = { "xbzrle", "rdma-pin-all",
	    "auto-converge", "zero-blocks", "compress", "events",
	    "postcopy-ram", "x-colo", "release-ram", "block", "return-path",
	    "pause-before-switchover", "multifd", "dirty-bitmaps",
	    "postcopy-blocktime", "late-block-activate",
	    "x-ignore-shared", "validate-uuid", "background-snapshot",
	    "zero-copy-send", "postcopy-preempt", NULL };
	struct fmig	*m = fmig_get(x->vm);
	json_t		*caps = json_object_get(args, "capabilities"), *c;
	const char	*name;
	size_t		 i, k;

	if (!json_is_array(caps)) {
		qmp_error_set(err, QMP_CLS_GENERIC, "Parameter 'capabilities' "
		    "is missing");
		return (NULL);
	}
	if (fmig_active(m)) {
		qmp_error_set(err, QMP_CLS_GENERIC, "There's a migration "
		    "process in progress");
		return (NULL);
	}
	json_array_foreach(caps, i, c) {
		name = json_string_value(json_object_get(c, "capability"));
		for (k = 0; name != NULL && known[k] != NULL; k++)
			if (strcmp(known[k], name) == 0)
				break;
		if (name == NULL || known[k] == NULL) {
			qmp_error_set(err, QMP_CLS_GENERIC, "Parameter "
			    "'capability' does not accept value '%s'",
			    name != NULL ? name : "");
			return (NULL);
		}
	}
	json_array_foreach(caps, i, c) {
		name = json_string_value(json_object_get(c, "capability"));
		if (strcmp(name, "events") == 0)
			m->events = json_is_true(json_object_get(c, "state"));
		else if (strcmp(name, "postcopy-ram") == 0)
			m->postcopy = json_is_true(json_object_get(c,
			    "state"));
	}
	return (json_object());
}

json_t *
mig_set_params(struct cmdctx *x, json_t *args, struct qmp_error *err)
{
	struct fmig	*m = fmig_get(x->vm);
	int64_t		 v;
	int		 present;

	if (arg_int(args, "max-bandwidth", &v, &present, err) != 0)
		return (NULL);
	if (present)
		m->max_bw = v;
	if (arg_int(args, "downtime-limit", &v, &present, err) != 0)
		return (NULL);
	if (present)
		m->downtime = v;
	if (arg_int(args, "max-postcopy-bandwidth", &v, &present, err) != 0)
		return (NULL);
	if (present)
		m->pc_bw = v;
	return (json_object());
}

json_t *
mig_query_params(struct cmdctx *x, json_t *args, struct qmp_error *err)
{
	struct fmig	*m = fmig_get(x->vm);

	return (json_pack("{s:I,s:I,s:I}", "max-bandwidth",
	    (json_int_t)m->max_bw, "downtime-limit", (json_int_t)m->downtime,
	    "max-postcopy-bandwidth", (json_int_t)m->pc_bw));
}

/* ---- destination ---- */

static void
fmig_in_end(struct vm *vm, int ok)
{
	struct fmig	*m = vm->mig;

	event_free(m->iev);
	m->iev = NULL;
	close(m->ifd);
	m->ifd = -1;
	if (!ok && strcmp(m->status, "postcopy-active") == 0) {
		/* the guest runs here: wait for migrate-recover */
		fmig_status(vm, "postcopy-paused");
		return;
	}
	m->in_status = ok ? "completed" : "failed";
	fmig_status(vm, m->in_status);
	if (ok && !vm->running) {
		vm->inmigrate = 0;
		vm->running = vm->started = 1;
		vm_event(vm, "RESUME", NULL);
	}
}

static void
fmig_in_read(evutil_socket_t fd, short ev, void *arg)
{
	struct vm	*vm = arg;
	char		 buf[FMIG_CHUNK];
	ssize_t		 n;

	n = read(fd, buf, sizeof buf);
	if (n < 0 && errno == EAGAIN)
		return;
	if (n > 0 && memchr(buf, 'P', (size_t)n) != NULL &&
	    strcmp(vm->mig->status, "active") == 0) {
		/* postcopy: the guest runs here from now on */
		vm->inmigrate = 0;
		vm->running = vm->started = 1;
		vm_event(vm, "RESUME", NULL);
		fmig_status(vm, "postcopy-active");
	}
	if (n <= 0)
		fmig_in_end(vm, 0);
	else if (buf[n - 1] == 'Q')
		fmig_in_end(vm, 1);
}

static void
fmig_accept(evutil_socket_t fd, short ev, void *arg)
{
	struct vm	*vm = arg;
	struct fmig	*m = vm->mig;
	int		 c;

	if ((c = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK)) < 0)
		return;
	event_free(m->lev);
	m->lev = NULL;
	close(m->lfd);
	m->lfd = -1;
	if (m->unix_path[0] != '\0')
		unlink(m->unix_path);
	m->ifd = c;
	m->iev = event_new(vm->fake->base, c, EV_READ | EV_PERSIST,
	    fmig_in_read, vm);
	event_add(m->iev, NULL);
	fmig_status(vm, strcmp(m->status, "postcopy-recover") == 0 ?
	    "postcopy-active" : "active");
}

json_t *
mig_recover(struct cmdctx *x, json_t *args, struct qmp_error *err)
{
	struct vm	*vm = x->vm;
	struct fmig	*m = fmig_get(vm);
	const char	*uri;
	int		 bad;

	if ((uri = arg_str(args, "uri", 1, err, &bad)) == NULL)
		return (NULL);
	if (strcmp(m->status, "postcopy-paused") != 0 || m->fd >= 0) {
		qmp_error_set(err, QMP_CLS_GENERIC, "Migrate recover can only "
		    "be run when postcopy is paused.");
		return (NULL);
	}
	if ((m->lfd = fmig_socket(uri, 1, m->unix_path, err)) < 0)
		return (NULL);
	m->lev = event_new(vm->fake->base, m->lfd, EV_READ, fmig_accept, vm);
	event_add(m->lev, NULL);
	fmig_status(vm, "postcopy-recover");
	return (json_object());
}

json_t *
mig_incoming(struct cmdctx *x, json_t *args, struct qmp_error *err)
{
	struct vm	*vm = x->vm;
	struct fmig	*m = fmig_get(vm);
	const char	*uri;
	int		 bad;

	if ((uri = arg_str(args, "uri", 1, err, &bad)) == NULL)
		return (NULL);
	if (!vm->inmigrate) {
		qmp_error_set(err, QMP_CLS_GENERIC, "'-incoming' was not "
		    "specified on the command line");
		return (NULL);
	}
	if (m->incoming) {
		qmp_error_set(err, QMP_CLS_GENERIC, "The incoming migration "
		    "has already been started");
		return (NULL);
	}
	if ((m->lfd = fmig_socket(uri, 1, m->unix_path, err)) < 0)
		return (NULL);
	m->incoming = 1;
	m->lev = event_new(vm->fake->base, m->lfd, EV_READ, fmig_accept, vm);
	event_add(m->lev, NULL);
	fmig_status(vm, "setup");
	return (json_object());
}

int
mig_postmigrate(const struct vm *vm)
{
	return (vm->mig != NULL && vm->mig->postmigrate);
}

void
mig_free(struct vm *vm)
{
	struct fmig	*m = vm->mig;

	if (m == NULL)
		return;
	fmig_stop(m);
	if (m->tick != NULL)
		event_free(m->tick);
	if (m->lev != NULL)
		event_free(m->lev);
	if (m->iev != NULL)
		event_free(m->iev);
	if (m->lfd >= 0)
		close(m->lfd);
	if (m->ifd >= 0)
		close(m->ifd);
	if (m->unix_path[0] != '\0')
		unlink(m->unix_path);
	free(m);
	vm->mig = NULL;
}
