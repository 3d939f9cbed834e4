/*
 * The audit trail: chained on the loop, written by a thread.
 */
#include "config.h"

#include <sys/stat.h>
#include <sys/types.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-journal.h>

#include "broker/core/audit.h"
#include "broker/core/log.h"
#include "util/sha256.h"

#define AUDIT_QUEUE_MAX		(8 * 1024 * 1024)
#define AUDIT_ARGS_MAX		4096	/* bytes of arguments kept */
#define AUDIT_DEPTH_MAX		32

struct audit_line {
	char			*buf;	/* the record and its newline */
	size_t			 len;
	json_t			*rec;	/* for the journal's fields */
	char			 hash[SHA256_HEX];
	struct audit_line	*next;
};

struct audit_pending {
	json_t		*rec;
	struct timespec	 start;
};

static pthread_mutex_t	 audit_mtx = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t	 audit_cv = PTHREAD_COND_INITIALIZER;
static pthread_t	 audit_thread;
static bool		 audit_running;
static bool		 audit_stop;
static struct audit_line *audit_head, **audit_tail = &audit_head;
static size_t		 audit_queued;		/* bytes */
static char		 audit_err[256];	/* "" while writes work */
static bool		 audit_told;		/* the loop logged audit_err */

/* the writer's */
static char		*audit_dir;
static size_t		 audit_rotate;
static int		 audit_fd = -1;
static off_t		 audit_size;

/* the loop's: the chain */
static unsigned long long audit_seq;
static char		 audit_prev[SHA256_HEX];

static void
audit_fail(const char *what, int e)
{
	pthread_mutex_lock(&audit_mtx);
	snprintf(audit_err, sizeof audit_err, "%s/%s: %s: %s", audit_dir,
	    AUDIT_FILE, what, strerror(e));
	audit_told = false;
	pthread_mutex_unlock(&audit_mtx);
}

bool
audit_ok(char *why, size_t len)
{
	bool	ok, tell = false;

	pthread_mutex_lock(&audit_mtx);
	if (audit_queued > AUDIT_QUEUE_MAX && audit_err[0] == '\0')
		snprintf(audit_err, sizeof audit_err, "the audit writer is "
		    "%zu bytes behind", audit_queued);
	ok = audit_err[0] == '\0';
	if (!ok) {
		snprintf(why, len, "%s", audit_err);
		tell = !audit_told;
		audit_told = true;
	}
	pthread_mutex_unlock(&audit_mtx);
	if (tell)
		log_err("AUDIT TRAIL NOT WRITTEN: %s", why);
	return (ok);
}

static int
audit_open_file(void)
{
	char		path[4096];
	struct stat	st;

	snprintf(path, sizeof path, "%s/%s", audit_dir, AUDIT_FILE);
	audit_fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC |
	    O_NOFOLLOW, 0600);
	if (audit_fd == -1)
		return (-1);
	if (fstat(audit_fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		close(audit_fd);
		audit_fd = -1;
		errno = EINVAL;
		return (-1);
	}
	audit_size = st.st_size;
	return (0);
}

/* A broker killed in the middle of a write leaves a cut line: ended
   here, so the next record starts on its own line and audit-verify
   shows the cut one for what it is. */
static void
audit_end_line(void)
{
	char	c;

	if (audit_fd == -1 || audit_size == 0 ||
	    pread(audit_fd, &c, 1, audit_size - 1) != 1 || c == '\n')
		return;
	if (write(audit_fd, "\n", 1) == 1)
		audit_size++;
}

/* The full file gets the number of its first record: names sort in
   chain order. */
static void
audit_rotate_file(void)
{
	char	from[4096], to[4096], first[32];
	FILE	*f;

	snprintf(from, sizeof from, "%s/%s", audit_dir, AUDIT_FILE);
	if ((f = fopen(from, "re")) == NULL ||
	    fscanf(f, "{\"seq\":%30[0-9]", first) != 1) {
		if (f != NULL)
			fclose(f);
		return;
	}
	fclose(f);
	snprintf(to, sizeof to, "%s/audit.%020llu.jsonl", audit_dir,
	    strtoull(first, NULL, 10));
	close(audit_fd);
	audit_fd = -1;
	if (rename(from, to) == -1)
		audit_fail("rotate", errno);
}

static const char *
audit_str(json_t *r, const char *key)
{
	const char	*s = json_string_value(json_object_get(r, key));

	return (s != NULL ? s : "");
}

static long long
audit_int(json_t *r, const char *key)
{
	return ((long long)json_integer_value(json_object_get(r, key)));
}

static void
audit_journal(const struct audit_line *l)
{
	json_t		*r = l->rec;
	const char	*res = audit_str(r, "result");
	char		*args;
	int		 rc;

	args = json_dumps(json_object_get(r, "arguments"), JSON_COMPACT);
	rc = sd_journal_send("MESSAGE=audit: uid %lld %s %s on %s: %s",
	    audit_int(r, "uid"), audit_str(r, "command"),
	    audit_str(r, "qemu-command"), audit_str(r, "vm"), res,
	    "PRIORITY=5", "SYSLOG_IDENTIFIER=qmpbrokerd",
	    "QB_AUDIT_SEQ=%lld", audit_int(r, "seq"),
	    "QB_AUDIT_HASH=%s", l->hash,
	    "QB_AUDIT_PREV=%s", audit_str(r, "prev"),
	    "QB_UID=%lld", audit_int(r, "uid"),
	    "QB_GID=%lld", audit_int(r, "gid"),
	    "QB_PID=%lld", audit_int(r, "pid"),
	    "QB_EXE=%s", audit_str(r, "exe"),
	    "QB_SOCKET=%s", audit_str(r, "socket"),
	    "QB_VM=%s", audit_str(r, "vm"),
	    "QB_COMMAND=%s", audit_str(r, "command"),
	    "QB_QEMU_COMMAND=%s", audit_str(r, "qemu-command"),
	    "QB_ARGS=%s", args != NULL ? args : "",
	    "QB_RESULT=%s", res,
	    "QB_DURATION_US=%lld", audit_int(r, "duration-us"),
	    NULL);
	/* no journald (containers, tests): the file is the trail */
	(void)rc;
	free(args);
}

static void
audit_write_one(struct audit_line *l)
{
	const char	*p = l->buf;
	size_t		 left = l->len;
	ssize_t		 n;

	if (audit_fd == -1 && audit_open_file() == -1) {
		audit_fail("open", errno);
		return;
	}
	while (left > 0) {
		if ((n = write(audit_fd, p, left)) == -1) {
			if (errno == EINTR)
				continue;
			audit_fail("write", errno);
			return;
		}
		p += n;
		left -= (size_t)n;
	}
	audit_size += (off_t)l->len;
	pthread_mutex_lock(&audit_mtx);
	audit_err[0] = '\0';
	pthread_mutex_unlock(&audit_mtx);
	if (audit_rotate > 0 && (size_t)audit_size >= audit_rotate)
		audit_rotate_file();
}

static void
audit_line_free(struct audit_line *l)
{
	json_decref(l->rec);
	free(l->buf);
	free(l);
}

static void *
audit_main(void *arg)
{
	struct audit_line	*l;

	pthread_mutex_lock(&audit_mtx);
	for (;;) {
		while (audit_head == NULL && !audit_stop)
			pthread_cond_wait(&audit_cv, &audit_mtx);
		if ((l = audit_head) == NULL)
			break;
		if ((audit_head = l->next) == NULL)
			audit_tail = &audit_head;
		pthread_mutex_unlock(&audit_mtx);
		audit_write_one(l);
		audit_journal(l);
		pthread_mutex_lock(&audit_mtx);
		audit_queued -= l->len;
		pthread_mutex_unlock(&audit_mtx);
		audit_line_free(l);
		pthread_mutex_lock(&audit_mtx);
	}
	pthread_mutex_unlock(&audit_mtx);
	return (NULL);
}

size_t
audit_unwritten(void)
{
	size_t	n;

	pthread_mutex_lock(&audit_mtx);
	n = audit_queued;
	pthread_mutex_unlock(&audit_mtx);
	return (n);
}

/* A record's parsed line, NULL if it is none. */
static json_t *
audit_seq_of(const char *line)
{
	json_t	*j;

	if ((j = json_loads(line, 0, NULL)) != NULL &&
	    !json_is_integer(json_object_get(j, "seq"))) {
		json_decref(j);
		j = NULL;
	}
	return (j);
}

/* The last line of the current file, or of the newest rotated one: the
   chain goes on from it. */
static void
audit_resume(void)
{
	char		 path[4096], best[256] = "", *line = NULL, *last = NULL;
	char		*before = NULL;
	struct dirent	*de;
	size_t		 cap = 0;
	ssize_t		 n;
	json_t		*j;
	DIR		*d;
	FILE		*f;

	audit_seq = 0;
	memset(audit_prev, '0', SHA256_HEX - 1);
	audit_prev[SHA256_HEX - 1] = '\0';
	snprintf(path, sizeof path, "%s/%s", audit_dir, AUDIT_FILE);
	if ((f = fopen(path, "re")) != NULL) {
		/* an empty current file (just rotated): the newest rotated
		   one has the tail */
		if (fgetc(f) == EOF) {
			fclose(f);
			f = NULL;
		} else
			rewind(f);
	}
	if (f == NULL && (d = opendir(audit_dir)) != NULL) {
		while ((de = readdir(d)) != NULL) {
			if (strncmp(de->d_name, "audit.", 6) == 0 &&
			    strcmp(de->d_name, AUDIT_FILE) != 0 &&
			    strlen(de->d_name) < sizeof best &&
			    strcmp(de->d_name, best) > 0)
				snprintf(best, sizeof best, "%s", de->d_name);
		}
		closedir(d);
		if (best[0] != '\0') {
			snprintf(path, sizeof path, "%s/%s", audit_dir, best);
			f = fopen(path, "re");
		}
	}
	if (f == NULL)
		return;
	while ((n = getline(&line, &cap, f)) > 0) {
		if (line[n - 1] == '\n')
			line[--n] = '\0';
		if (n == 0)
			continue;
		free(before);
		before = last;
		last = strdup(line);
	}
	fclose(f);
	free(line);
	if (last == NULL) {
		free(before);
		return;
	}
	/* The chain links to the last line whatever it is; the numbers go
	   on from the last record, or the one before a cut line. */
	if ((j = audit_seq_of(last)) == NULL) {
		log_err("audit: the last line of %s is not a record (cut by "
		    "a crash?); audit-verify will name it", path);
		if (before != NULL)
			j = audit_seq_of(before);
	}
	if (j != NULL)
		audit_seq = (unsigned long long)json_integer_value(
		    json_object_get(j, "seq"));
	json_decref(j);
	sha256_hex(last, strlen(last), audit_prev);
	free(last);
	free(before);
}

int
audit_open(const char *dir, size_t rotate, struct qmp_error *err)
{
	if (audit_running)
		return (0);
	free(audit_dir);
	if ((audit_dir = strdup(dir)) == NULL) {
		qmp_error_set(err, QMP_CLS_GENERIC, "out of memory");
		return (-1);
	}
	audit_rotate = rotate;
	audit_err[0] = '\0';
	if (mkdir(dir, 0700) == -1 && errno != EEXIST)
		audit_fail("mkdir", errno);
	else if (audit_open_file() == -1)
		audit_fail("open", errno);
	audit_end_line();
	audit_resume();
	if (audit_err[0] != '\0') {
		log_err("AUDIT TRAIL NOT WRITTEN: %s", audit_err);
		audit_told = true;
	}
	/* The journal hears where the chain resumes (an anchor for the
	   file's tail), and libsystemd opens its socket now, for good,
	   rather than on the first record. */
	(void)sd_journal_send("MESSAGE=audit trail %s resumes after seq "
	    "%llu", dir, audit_seq, "PRIORITY=5",
	    "SYSLOG_IDENTIFIER=qmpbrokerd", "QB_AUDIT_SEQ=%llu", audit_seq,
	    "QB_AUDIT_HASH=%s", audit_prev, NULL);
	audit_stop = false;
	if (pthread_create(&audit_thread, NULL, audit_main, NULL) != 0) {
		qmp_error_set(err, QMP_CLS_GENERIC, "cannot start the audit "
		    "writer");
		return (-1);
	}
	audit_running = true;
	return (0);
}

void
audit_close(void)
{
	struct timespec	ts;
	int		e;

	if (!audit_running)
		return;
	pthread_mutex_lock(&audit_mtx);
	audit_stop = true;
	pthread_cond_signal(&audit_cv);
	pthread_mutex_unlock(&audit_mtx);
	/* sd_journal_send blocks while journald does not read: a stuck
	   journald must not keep the broker from exiting. The writer then
	   keeps what it uses; the process is going. */
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 10;
	if ((e = pthread_timedjoin_np(audit_thread, NULL, &ts)) != 0) {
		log_err("audit writer did not stop in 10 s (%s; journald not "
		    "reading?): records still queued are lost", strerror(e));
		return;
	}
	audit_running = false;
	if (audit_fd != -1)
		close(audit_fd);
	audit_fd = -1;
	free(audit_dir);
	audit_dir = NULL;
}

/* "scheme://user:password@host" with the password replaced. */
static json_t *
audit_redact_uri(const char *s)
{
	const char	*scheme, *at, *colon;
	char		*out;
	json_t		*j;

	if ((scheme = strstr(s, "://")) == NULL ||
	    (at = strchr(scheme + 3, '@')) == NULL)
		return (json_string(s));
	for (colon = scheme + 3; colon < at && *colon != ':'; colon++)
		;
	if (colon == at || memchr(scheme + 3, '/', (size_t)(at - scheme -
	    3)) != NULL)
		return (json_string(s));
	if (asprintf(&out, "%.*s:<redacted>%s", (int)(colon - s), s, at) ==
	    -1)
		return (json_string(s));
	j = json_string(out);
	free(out);
	return (j);
}

static json_t *
audit_redact_at(json_t *v, bool secret, int depth)
{
	const char	*key;
	json_t		*o, *e;
	size_t		 i;

	if (depth > AUDIT_DEPTH_MAX)
		return (json_string("<too deep>"));
	if (json_is_string(v))
		return (audit_redact_uri(json_string_value(v)));
	if (json_is_array(v)) {
		o = json_array();
		json_array_foreach(v, i, e)
			json_array_append_new(o, audit_redact_at(e, secret,
			    depth + 1));
		return (o);
	}
	if (!json_is_object(v))
		return (json_deep_copy(v));
	o = json_object();
	json_object_foreach(v, key, e) {
		if (strcmp(key, "password") == 0 ||
		    strcmp(key, "passwd") == 0 ||
		    strcmp(key, "new-secret") == 0 ||
		    (secret && (strcmp(key, "data") == 0 ||
		    strcmp(key, "iv") == 0)))
			json_object_set_new(o, key, json_string("<redacted>"));
		else
			json_object_set_new(o, key, audit_redact_at(e, secret,
			    depth + 1));
	}
	return (o);
}

json_t *
audit_redact(const char *cmd, json_t *args)
{
	const char	*type;
	bool		 secret = false;

	if (args == NULL)
		return (json_object());
	if (strcmp(cmd, "object-add") == 0 &&
	    (type = json_string_value(json_object_get(args, "qom-type"))) !=
	    NULL)
		secret = strncmp(type, "secret", 6) == 0;
	return (audit_redact_at(args, secret, 0));
}

static json_t *
audit_time(void)
{
	struct timespec	ts;
	struct tm	tm;
	char		buf[64];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ",
	    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
	    tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000);
	return (json_string(buf));
}

struct audit_pending *
audit_begin(const struct audit_who *w, const char *vm, const char *cmd,
    const char *qemu, json_t *args, const char *rule)
{
	struct audit_pending	*p;
	json_t			*red;
	char			*s;

	if (!audit_running || (p = calloc(1, sizeof *p)) == NULL)
		return (NULL);
	clock_gettime(CLOCK_MONOTONIC, &p->start);
	red = audit_redact(qemu != NULL ? qemu : cmd, args);
	/* a huge argument (domain XML) is cut, not kept whole */
	if ((s = json_dumps(red, JSON_COMPACT)) != NULL &&
	    strlen(s) > AUDIT_ARGS_MAX) {
		json_decref(red);
		red = json_pack("{s:b,s:I}", "truncated", 1, "bytes",
		    (json_int_t)strlen(s));
	}
	free(s);
	/* "seq" first, "prev" second: the keys are written in this order
	   (JSON_PRESERVE_ORDER), which audit-verify and the resume rely
	   on only for seq */
	p->rec = json_pack("{s:I,s:s,s:o,s:I,s:I,s:I,s:s,s:s,s:o,s:s,s:o,"
	    "s:o,s:o}",
	    "seq", (json_int_t)0, "prev", "",
	    "time", audit_time(),
	    "uid", (json_int_t)(int)w->uid, "gid", (json_int_t)(int)w->gid,
	    "pid", (json_int_t)w->pid,
	    "exe", w->exe != NULL ? w->exe : "",
	    "socket", w->via != NULL ? w->via : "",
	    "vm", vm != NULL ? json_string(vm) : json_null(),
	    "command", cmd,
	    "qemu-command", qemu != NULL ? json_string(qemu) : json_null(),
	    "arguments", red != NULL ? red : json_object(),
	    "rule", rule != NULL ? json_string(rule) : json_null());
	if (p->rec == NULL) {
		free(p);
		return (NULL);
	}
	return (p);
}

void
audit_end(struct audit_pending *p, const struct qmp_error *err)
{
	struct audit_line	*l;
	struct timespec		 now;
	long long		 us;
	char			*s;

	if (p == NULL)
		return;
	/* a command that ends after the writer stopped (shutdown) */
	if (!audit_running) {
		json_decref(p->rec);
		free(p);
		return;
	}
	clock_gettime(CLOCK_MONOTONIC, &now);
	us = (long long)(now.tv_sec - p->start.tv_sec) * 1000000 +
	    (now.tv_nsec - p->start.tv_nsec) / 1000;
	json_object_set_new(p->rec, "result", json_string(err != NULL ?
	    err->cls : "ok"));
	if (err != NULL)
		json_object_set_new(p->rec, "error", json_string(err->desc));
	json_object_set_new(p->rec, "duration-us", json_integer(us));
	json_object_set_new(p->rec, "seq", json_integer(
	    (json_int_t)++audit_seq));
	json_object_set_new(p->rec, "prev", json_string(audit_prev));
	s = json_dumps(p->rec, JSON_COMPACT | JSON_PRESERVE_ORDER);
	if ((l = calloc(1, sizeof *l)) == NULL || s == NULL ||
	    asprintf(&l->buf, "%s\n", s) == -1) {
		log_err("audit: out of memory, record %llu lost", audit_seq);
		free(l);
		free(s);
		json_decref(p->rec);
		free(p);
		audit_seq--;
		return;
	}
	sha256_hex(s, strlen(s), l->hash);
	memcpy(audit_prev, l->hash, sizeof audit_prev);
	free(s);
	l->len = strlen(l->buf);
	l->rec = p->rec;
	free(p);
	pthread_mutex_lock(&audit_mtx);
	*audit_tail = l;
	audit_tail = &l->next;
	audit_queued += l->len;
	pthread_cond_signal(&audit_cv);
	pthread_mutex_unlock(&audit_mtx);
}
