/*
 * Listening unix sockets: the control socket and every shared per-VM
 * socket. One struct event each and nothing else, so 10,000 idle VMs
 * cost 10,000 small structs and no timers.
 *
 * When accept() runs out of fds (EMFILE/ENFILE) the pending connection
 * would keep the socket readable and the loop would spin, so every
 * listener stops until a timer or a closing client says fds are back.
 */
#include "config.h"

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "broker/core/log.h"
#include "broker/core/loop.h"
#include "broker/session/listen.h"

#define LSN_BACKLOG	1024
#define LSN_BATCH	64	/* accepts per wakeup, for fairness */
#define LSN_BACKOFF_MS	100

struct lsn {
	int		 fd;
	struct event	*ev;
	lsn_accept_fn	*fn;
	void		*arg;
	LIST_ENTRY(lsn)	 entry;
	char		 path[];
};

static LIST_HEAD(, lsn) lsns = LIST_HEAD_INITIALIZER(lsns);
static struct event	*lsn_backoff;
static int		 lsn_paused;
static int		 lsn_held;	/* an upgrade is under way */

/* Sockets handed over by the previous process (upgrade). */
struct lsn_heir {
	char	*path;
	int	 fd;
};
static struct lsn_heir	*lsn_heirs;
static size_t		 lsn_nheirs;
static bool		 lsn_heirs_sorted;

static void
lsn_backoff_cb(evutil_socket_t fd, short what, void *arg)
{
	lsn_resume_all();
}

static void
lsn_pause_all(void)
{
	static time_t	 last;
	struct lsn	*l;
	struct timeval	 tv = { 0, LSN_BACKOFF_MS * 1000 };
	time_t		 now = time(NULL);

	if (lsn_paused)
		return;
	/* Under a connection storm this repeats every backoff: say it
	   once in a while. */
	if (now - last >= 10) {
		log_warn("out of file descriptors: not accepting for a while");
		last = now;
	}
	LIST_FOREACH(l, &lsns, entry)
		event_del(l->ev);
	lsn_paused = 1;
	if (lsn_backoff == NULL)
		lsn_backoff = evtimer_new(loop_base, lsn_backoff_cb, NULL);
	if (lsn_backoff != NULL)
		evtimer_add(lsn_backoff, &tv);
}

void
lsn_resume_all(void)
{
	struct lsn	*l;

	if (!lsn_paused)
		return;
	lsn_paused = 0;
	if (lsn_backoff != NULL)
		evtimer_del(lsn_backoff);
	if (lsn_held)
		return;
	LIST_FOREACH(l, &lsns, entry)
		event_add(l->ev, NULL);
}

static void
lsn_cb(evutil_socket_t fd, short what, void *arg)
{
	struct lsn	*l = arg;
	int		 c, i;

	for (i = 0; i < LSN_BATCH; i++) {
		c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (c == -1) {
			if (errno == EMFILE || errno == ENFILE ||
			    errno == ENOBUFS || errno == ENOMEM)
				lsn_pause_all();
			else if (errno != EAGAIN && errno != EINTR &&
			    errno != ECONNABORTED)
				log_warn("accept %s: %s", l->path,
				    strerror(errno));
			return;
		}
		/* Callbacks never close their own listener (VMs go from
		   the loop, not from an accept), so l stays valid. */
		l->fn(c, l->arg);
		if (lsn_paused)
			return;
	}
}

bool
lsn_live(const char *path)
{
	struct sockaddr_un	sun;
	int			s;
	bool			live;

	if (strlen(path) >= sizeof sun.sun_path)
		return (false);
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, path, strlen(path));
	if ((s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
	    0)) == -1)
		return (true);	/* cannot tell: keep it */
	live = connect(s, (struct sockaddr *)&sun, sizeof sun) == 0 ||
	    errno == EAGAIN;
	close(s);
	return (live);
}

/* A socket file left by a dead broker is replaced; one that answers is
   another broker's and is left alone. */
static int
lsn_clear_path(const char *path, int check_live, struct qmp_error *err)
{
	struct stat	st;

	if (lstat(path, &st) == -1) {
		if (errno == ENOENT)
			return (0);
		qmp_error_set(err, QMP_CLS_GENERIC, "%s: %s", path,
		    strerror(errno));
		return (-1);
	}
	if (!S_ISSOCK(st.st_mode)) {
		qmp_error_set(err, QMP_CLS_GENERIC,
		    "%s exists and is not a socket", path);
		return (-1);
	}
	if (check_live && lsn_live(path)) {
		qmp_error_set(err, QMP_CLS_GENERIC,
		    "%s is in use by a running process", path);
		return (-1);
	}
	if (unlink(path) == -1 && errno != ENOENT) {
		qmp_error_set(err, QMP_CLS_GENERIC, "unlink %s: %s", path,
		    strerror(errno));
		return (-1);
	}
	return (0);
}

static int
lsn_heir_cmp(const void *a, const void *b)
{
	return (strcmp(((const struct lsn_heir *)a)->path,
	    ((const struct lsn_heir *)b)->path));
}

/* The inherited socket for path, or -1. Sorted once, then a search:
   an upgrade with 1,000 VMs binds 1,000 shared sockets. */
static int
lsn_take(const char *path)
{
	struct lsn_heir	 key, *h;
	int		 fd;

	if (lsn_nheirs == 0)
		return (-1);
	if (!lsn_heirs_sorted) {
		qsort(lsn_heirs, lsn_nheirs, sizeof *lsn_heirs, lsn_heir_cmp);
		lsn_heirs_sorted = true;
	}
	key.path = (char *)(uintptr_t)path;
	if ((h = bsearch(&key, lsn_heirs, lsn_nheirs, sizeof *lsn_heirs,
	    lsn_heir_cmp)) == NULL || h->fd == -1)
		return (-1);
	fd = h->fd;
	h->fd = -1;
	return (fd);
}

int
lsn_bind(const char *path, int mode, int gid, int check_live,
    struct qmp_error *err)
{
	struct sockaddr_un	 sun;
	size_t			 len = strlen(path);
	int			 fd;

	if (len == 0 || len >= sizeof sun.sun_path) {
		qmp_error_set(err, QMP_CLS_GENERIC, "socket path too long: %s",
		    path);
		return (-1);
	}
	if ((fd = lsn_take(path)) != -1)
		return (fd);
	if (lsn_clear_path(path, check_live, err) == -1)
		return (-1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		qmp_error_set(err, QMP_CLS_GENERIC, "socket: %s",
		    strerror(errno));
		return (-1);
	}
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, path, len);
	/* Not listening yet: nobody can connect before the mode is set. */
	if (bind(fd, (struct sockaddr *)&sun, sizeof sun) == -1) {
		qmp_error_set(err, QMP_CLS_GENERIC, "bind %s: %s", path,
		    strerror(errno));
		close(fd);
		return (-1);
	}
	if (chmod(sun.sun_path, (mode_t)mode) == -1 ||
	    (gid != -1 && chown(sun.sun_path, (uid_t)-1, (gid_t)gid) == -1) ||
	    listen(fd, LSN_BACKLOG) == -1) {
		qmp_error_set(err, QMP_CLS_GENERIC, "%s: %s", sun.sun_path,
		    strerror(errno));
		unlink(path);
		close(fd);
		return (-1);
	}
	return (fd);
}

struct lsn *
lsn_open(const char *path, int mode, int gid, int check_live,
    lsn_accept_fn *fn, void *arg, struct qmp_error *err)
{
	struct lsn		*l;
	size_t			 len = strlen(path);
	int			 fd;

	if ((fd = lsn_bind(path, mode, gid, check_live, err)) == -1)
		return (NULL);
	if ((l = calloc(1, sizeof *l + len + 1)) == NULL) {
		qmp_error_set(err, QMP_CLS_GENERIC, "out of memory");
		unlink(path);
		close(fd);
		return (NULL);
	}
	memcpy(l->path, path, len + 1);
	l->fd = fd;
	l->fn = fn;
	l->arg = arg;
	l->ev = event_new(loop_base, fd, EV_READ | EV_PERSIST, lsn_cb, l);
	if (l->ev == NULL) {
		qmp_error_set(err, QMP_CLS_GENERIC, "out of memory");
		unlink(path);
		close(fd);
		free(l);
		return (NULL);
	}
	if (!lsn_paused && !lsn_held)
		event_add(l->ev, NULL);
	LIST_INSERT_HEAD(&lsns, l, entry);
	return (l);
}

void
lsn_close(struct lsn *l)
{
	if (l == NULL)
		return;
	LIST_REMOVE(l, entry);
	event_free(l->ev);
	unlink(l->path);
	close(l->fd);
	free(l);
	if (LIST_EMPTY(&lsns) && lsn_backoff != NULL) {
		event_free(lsn_backoff);
		lsn_backoff = NULL;
		lsn_paused = 0;
	}
}

const char *
lsn_path(const struct lsn *l)
{
	return (l->path);
}

/* ---- upgrade ---- */

void
lsn_hold(bool hold)
{
	struct lsn	*l;

	if (lsn_held == (int)hold)
		return;
	lsn_held = hold;
	LIST_FOREACH(l, &lsns, entry) {
		if (hold)
			event_del(l->ev);
		else if (!lsn_paused)
			event_add(l->ev, NULL);
	}
}

json_t *
lsn_export_all(json_t *fds)
{
	struct lsn	*l;
	json_t		*a;

	if ((a = json_array()) == NULL)
		return (NULL);
	LIST_FOREACH(l, &lsns, entry) {
		if (json_array_append_new(a, json_pack("{s:s,s:i}", "path",
		    l->path, "fd", l->fd)) != 0 ||
		    json_array_append_new(fds, json_integer(l->fd)) != 0) {
			json_decref(a);
			return (NULL);
		}
	}
	return (a);
}

int
lsn_inherit(const json_t *st, struct qmp_error *err)
{
	struct sockaddr_un	 sun;
	json_t			*e, *fd;
	const char		*path;
	size_t			 i, n;

	if (!json_is_array(st) || (n = json_array_size(st)) > (1u << 20)) {
		qmp_error_set(err, QMP_CLS_GENERIC, "listeners: malformed");
		return (-1);
	}
	json_array_foreach(st, i, e) {
		path = json_string_value(json_object_get(e, "path"));
		fd = json_object_get(e, "fd");
		if (path == NULL || *path == '\0' ||
		    strlen(path) >= sizeof sun.sun_path ||
		    !json_is_integer(fd) || json_integer_value(fd) < 0 ||
		    json_integer_value(fd) > INT32_MAX) {
			qmp_error_set(err, QMP_CLS_GENERIC,
			    "listeners: entry %zu malformed", i);
			return (-1);
		}
	}
	if (n > 0 && (lsn_heirs = calloc(n, sizeof *lsn_heirs)) == NULL) {
		qmp_error_set(err, QMP_CLS_GENERIC, "out of memory");
		return (-1);
	}
	json_array_foreach(st, i, e) {
		lsn_heirs[i].fd = (int)json_integer_value(json_object_get(e,
		    "fd"));
		if ((lsn_heirs[i].path = strdup(json_string_value(
		    json_object_get(e, "path")))) == NULL) {
			lsn_nheirs = i + 1;
			lsn_heirs[i].fd = -1;	/* the caller closes it */
			lsn_inherit_end();
			qmp_error_set(err, QMP_CLS_GENERIC, "out of memory");
			return (-1);
		}
		lsn_nheirs = i + 1;
	}
	return (0);
}

size_t
lsn_inherit_end(void)
{
	size_t	i, n = 0;

	for (i = 0; i < lsn_nheirs; i++) {
		if (lsn_heirs[i].fd != -1) {
			close(lsn_heirs[i].fd);
			n++;
		}
		free(lsn_heirs[i].path);
	}
	free(lsn_heirs);
	lsn_heirs = NULL;
	lsn_nheirs = 0;
	lsn_heirs_sorted = false;
	return (n);
}
