/*
 * Configuration: one table of options serves both the config file
 * (`key value` lines, `#` comments) and the command line (`--key value`
 * or `--key=value`), so every option is both and they cannot drift.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "broker/core/conf.h"
#include "broker/core/conf_int.h"
#include "broker/core/log.h"

struct conf conf;

#define CONF_DEFAULT_FILE	"/etc/qmpbroker/qmpbrokerd.conf"
#define CONF_LINE_MAX		4096
#define CONF_FILE_MAX		(1024 * 1024)

struct conf_opt {
	const char	*name;
	enum conf_type	 type;
	size_t		 off;
	long long	 min;
	const char	*help;
};

#define O(f)	offsetof(struct conf, f)
static const struct conf_opt conf_opts[] = {
	{ "config", CT_STR, O(config_path), 0, "config file" },
	{ "control", CT_STR, O(control_path), 0, "control socket path" },
	{ "run-dir", CT_STR, O(run_dir), 0, "run dir (shared sockets in DIR/vm)" },
	{ "state-dir", CT_STR, O(state_dir), 0, "state dir (registry)" },
	{ "vm-dir", CT_STR, O(vm_dir), 0, "watched dir of NAME.qmp sockets" },
	{ "vm-sockets", CT_BOOL, O(vm_sockets), 0, "serve RUNDIR/vm/NAME.qmp per VM (yes|no)" },
	{ "pid-file", CT_STR, O(pid_file), 0, "pid file" },
	{ "foreground", CT_BOOL, O(foreground), 0, "do not daemonise" },
	{ "log-level", CT_LEVEL, O(log_level), 0, "debug|info|notice|warning|err" },
	{ "log-target", CT_TARGET, O(log_syslog), 0, "stderr|syslog" },
	{ "socket-group", CT_GROUP, O(socket_gid), 0, "group of the sockets" },
	{ "allow-uid", CT_UIDS, 0, 0, "user allowed to connect (repeatable)" },
	{ "allow-gid", CT_GIDS, 0, 0, "group allowed to connect (repeatable)" },
	{ "max-msg", CT_SIZE, O(max_msg), 1024, "longest message" },
	{ "client-queue-max", CT_SIZE, O(client_queue_max), 1024, "event bytes queued per client" },
	{ "reply-stall-ms", CT_INT, O(reply_stall_ms), 1, "unread reply: disconnect after" },
	{ "upgrade-timeout-ms", CT_INT, O(upgrade_timeout_ms), 1, "upgrade: commands in flight get this long to finish" },
	{ "line-timeout-ms", CT_INT, O(line_timeout_ms), 1, "incomplete line idle: disconnect after" },
	{ "max-clients", CT_SIZE, O(max_clients), 1, "connections at once" },
	{ "max-subscriptions", CT_SIZE, O(max_subs), 1, "subscriptions per client" },
	{ "max-fds", CT_SIZE, O(max_fds), 1, "fds per message (at most 253)" },
	{ "event-log", CT_BOOL, O(event_log), 0, "number, keep and replay events (yes|no)" },
	{ "event-log-memory", CT_SIZE, O(event_log_memory), 4096, "event log bytes in memory" },
	{ "event-log-segment-size", CT_SIZE, O(event_log_segment), 4096, "event log segment file rotates past" },
	{ "event-log-max-size", CT_SIZE, O(event_log_max), 4096, "event log bytes on disk at most" },
	{ "event-log-max-age-s", CT_INT, O(event_log_max_age_s), 0, "event log segments older go (0: never)" },
	{ "cmd-timeout-ms", CT_INT, O(cmd_timeout_ms), 1, "QEMU command timeout" },
	{ "image-root", CT_ROOTS, 0, 0, "allowed image dir (repeatable)" },
	{ "unplug-timeout-ms", CT_INT, O(unplug_timeout_ms), 1, "DEVICE_DELETED wait" },
	{ "libvirt-uri", CT_STR, O(libvirt_uri), 0, "libvirt connection" },
	{ "workers", CT_INT, O(workers), 1, "job worker threads" },
	{ "max-jobs", CT_SIZE, O(max_jobs), 1, "unfinished jobs at once" },
	{ "job-keep-s", CT_INT, O(job_keep_s), 0, "finished jobs kept" },
	{ "losetup", CT_STR, O(losetup_path), 0, "losetup program" },
	{ "qemu-nbd", CT_STR, O(qemu_nbd_path), 0, "qemu-nbd program" },
	{ "loop-sysfs", CT_STR, O(loop_sysfs), 0, "sysfs root for loop devices" },
	{ "nbd-sysfs", CT_STR, O(nbd_sysfs), 0, "sysfs root for nbd devices" },
	{ "nbd-dev-dir", CT_STR, O(nbd_dev_dir), 0, "where nbdN device nodes are" },
	{ "nbd-lock-dir", CT_STR, O(nbd_lock_dir), 0, "nbd device lock files" },
	{ "nbd-wait-ms", CT_INT, O(nbd_wait_ms), 1, "qemu-nbd connect deadline" },
	{ "tool-timeout-ms", CT_INT, O(tool_timeout_ms), 1, "losetup/qemu-nbd deadline" },
	{ "metrics-listen", CT_STR, O(metrics_listen), 0, "unix:PATH or HOST:PORT: serve GET /metrics (off by default)" },
	{ "metrics-remote", CT_BOOL, O(metrics_remote), 0, "metrics-listen may be a non-loopback address (yes|no)" },
	{ "metrics-per-vm", CT_BOOL, O(metrics_per_vm), 0, "per-VM series in /metrics (yes|no)" },
	{ "metrics-max-conns", CT_SIZE, O(metrics_max_conns), 1, "metrics HTTP connections at once" },
	{ "metrics-timeout-ms", CT_INT, O(metrics_timeout_ms), 1, "metrics HTTP idle or slow request: close after" },
	{ "nats", CT_STR, O(nats_url), 0, "NATS URL(s): stream events to JetStream" },
	{ "nats-creds", CT_STR, O(nats_creds), 0, "NATS user credentials file" },
	{ "nats-nkey", CT_STR, O(nats_nkey), 0, "NATS user nkey (public key)" },
	{ "nats-nkey-seed", CT_STR, O(nats_nkey_seed), 0, "file with that nkey's seed" },
	{ "nats-tls-ca", CT_STR, O(nats_tls_ca), 0, "CA file for NATS TLS" },
	{ "nats-tls-cert", CT_STR, O(nats_tls_cert), 0, "client certificate for NATS TLS" },
	{ "nats-tls-key", CT_STR, O(nats_tls_key), 0, "client key for NATS TLS" },
	{ "host-id", CT_STR, O(host_id), 0, "this host's name in NATS subjects" },
	{ "nats-stream", CT_STR, O(nats_stream), 0, "JetStream stream name" },
	{ "nats-subjects", CT_STR, O(nats_subjects), 0, "stream subjects (comma list)" },
	{ "nats-retention", CT_STR, O(nats_retention), 0, "limits|interest|workqueue" },
	{ "nats-replicas", CT_INT, O(nats_replicas), 1, "stream replicas" },
	{ "nats-dup-window-s", CT_INT, O(nats_dup_window_s), 1, "JetStream duplicate window" },
	{ "nats-max-bytes", CT_SIZE, O(nats_max_bytes), 0, "stream byte cap (0: none)" },
	{ "nats-max-age-s", CT_INT, O(nats_max_age_s), 0, "stream age cap (0: none)" },
	{ "nats-window", CT_INT, O(nats_window), 1, "unacknowledged publishes at once" },
	{ "nats-ack-timeout-ms", CT_INT, O(nats_ack_timeout_ms), 1, "republish unacked after" },
	{ "nats-control", CT_BOOL, O(nats_control), 0, "serve qmp.HOST.control requests (yes|no)" },
	{ "nats-control-allow", CT_STR, O(nats_control_allow), 0, "commands allowed over NATS (comma list)" },
	{ "policy", CT_STR, O(policy_path), 0, "policy file (docs/policy.md)" },
	{ "user", CT_STR, O(user), 0, "run unprivileged as this user, with a privileged helper (default qmpbroker if it exists; root: no separation)" },
	{ "monitor-root", CT_STR, O(monitor_root), 0, "QEMU monitor sockets the helper may connect for the unprivileged daemon" },
	{ "audit-required", CT_BOOL, O(audit_required), 0, "refuse changes the audit trail cannot record (yes|no)" },
	{ "audit-rotate-bytes", CT_SIZE, O(audit_rotate), 4096, "audit file size before rotation" },
	{ "vm", CT_VM, 0, 0, "NAME=SOCKET: a VM (repeatable)" },
	{ "vm-allow", CT_VMALLOW, 0, 0, "NAME uid:N,gid:M,...: only they act on that VM (repeatable)" },
};
#undef O
#define CONF_NOPTS	(sizeof conf_opts / sizeof conf_opts[0])

char *
conf_xstrdup(const char *s)
{
	char	*p;

	if ((p = strdup(s)) == NULL) {
		log_err("out of memory");
		exit(1);
	}
	return (p);
}

static char *
dir_join(const char *a, const char *b)
{
	char	*p;

	if (asprintf(&p, "%s/%s", a, b) == -1) {
		log_err("out of memory");
		exit(1);
	}
	return (p);
}

void
conf_init(struct conf *c)
{
	memset(c, 0, sizeof *c);
	c->log_level = LOG_INFO;
	c->log_syslog = -1;
	c->socket_gid = -1;
	c->vm_sockets = 1;
	c->max_msg = 4 * 1024 * 1024;
	c->client_queue_max = 1024 * 1024;
	c->reply_stall_ms = 10000;
	c->upgrade_timeout_ms = 5000;
	c->line_timeout_ms = 30000;
	c->max_clients = 1024;
	c->max_subs = 64;
	c->max_fds = 16;
	c->event_log = 1;
	c->event_log_memory = 16 * 1024 * 1024;
	c->event_log_segment = 16 * 1024 * 1024;
	c->event_log_max = 256 * 1024 * 1024;
	c->event_log_max_age_s = 7 * 24 * 3600;
	c->cmd_timeout_ms = 30000;
	c->unplug_timeout_ms = 10000;
	c->libvirt_uri = conf_xstrdup("test:///default");
	c->workers = 4;
	c->metrics_per_vm = 1;
	c->metrics_max_conns = 64;
	c->metrics_timeout_ms = 10000;
	c->job_keep_s = 600;
	c->max_jobs = 256;
	c->nats_stream = conf_xstrdup("QMP_EVENTS");
	c->nats_subjects = conf_xstrdup("qmp.*.*.event.*");
	c->nats_retention = conf_xstrdup("limits");
	c->nats_replicas = 1;
	c->nats_dup_window_s = 120;
	c->nats_window = 1024;	/* tools/bench: 256 starved the pipeline */
	c->nats_ack_timeout_ms = 5000;
	c->audit_required = 1;
	c->audit_rotate = 64 * 1024 * 1024;
}

/* Paths whose defaults depend on who runs us and on other paths. */
static void
conf_fill_paths(struct conf *c)
{
	const char	*x, *home;
	char		*base;

	if (c->run_dir == NULL) {
		if (geteuid() == 0)
			c->run_dir = conf_xstrdup("/run/qmpbroker");
		else if ((x = getenv("XDG_RUNTIME_DIR")) != NULL && *x == '/')
			c->run_dir = dir_join(x, "qmpbroker");
		else if (asprintf(&c->run_dir, "/tmp/qmpbroker-%u",
		    (unsigned)geteuid()) == -1)
			exit(1);
	}
	if (c->control_path == NULL)
		c->control_path = dir_join(c->run_dir, "control.sock");
	if (c->host_id == NULL) {
		char	host[256];

		if (gethostname(host, sizeof host) == -1)
			snprintf(host, sizeof host, "localhost");
		host[sizeof host - 1] = '\0';
		c->host_id = conf_xstrdup(host);
	}
	if (c->pid_file == NULL)
		c->pid_file = dir_join(c->run_dir, "qmpbrokerd.pid");
	if (c->state_dir == NULL) {
		if (geteuid() == 0)
			c->state_dir = conf_xstrdup("/var/lib/qmpbroker");
		else if ((x = getenv("XDG_STATE_HOME")) != NULL && *x == '/')
			c->state_dir = dir_join(x, "qmpbroker");
		else if ((home = getenv("HOME")) != NULL && *home == '/') {
			base = dir_join(home, ".local/state");
			c->state_dir = dir_join(base, "qmpbroker");
			free(base);
		} else
			c->state_dir = dir_join(c->run_dir, "state");
	}
}

void
conf_clear(struct conf *c)
{
	size_t	i;

	for (i = 0; i < CONF_NOPTS; i++) {
		if (conf_opts[i].type == CT_STR)
			free(*(char **)((char *)c + conf_opts[i].off));
	}
	for (i = 0; i < c->n_image_roots; i++)
		free(c->image_roots[i]);
	for (i = 0; i < c->n_vms; i++) {
		free(c->vms[i].name);
		free(c->vms[i].socket);
	}
	free(c->vms);
	for (i = 0; i < c->n_vm_allows; i++)
		free(c->vm_allows[i].name);
	free(c->vm_allows);
	memset(c, 0, sizeof *c);
}

int
conf_number(const char *v, long long min, long long max, int sizes,
    long long *out)
{
	char		*end;
	long long	 n, mult = 1;

	if (!isdigit((unsigned char)*v))
		return (-1);
	errno = 0;
	n = strtoll(v, &end, 10);
	if (errno != 0 || end == v)
		return (-1);
	if (sizes && *end != '\0') {
		switch (toupper((unsigned char)*end)) {
		case 'K':
			mult = 1024;
			break;
		case 'M':
			mult = 1024 * 1024;
			break;
		case 'G':
			mult = 1024LL * 1024 * 1024;
			break;
		default:
			return (-1);
		}
		end++;
		if (toupper((unsigned char)*end) == 'I')
			end++;
		if (toupper((unsigned char)*end) == 'B')
			end++;
	}
	if (*end != '\0' || n > max / mult)
		return (-1);
	n *= mult;
	if (n < min || n > max)
		return (-1);
	*out = n;
	return (0);
}

static int
conf_bool(const char *v)
{
	if (strcmp(v, "1") == 0 || strcasecmp(v, "yes") == 0 ||
	    strcasecmp(v, "true") == 0 || strcasecmp(v, "on") == 0)
		return (1);
	if (strcmp(v, "0") == 0 || strcasecmp(v, "no") == 0 ||
	    strcasecmp(v, "false") == 0 || strcasecmp(v, "off") == 0)
		return (0);
	return (-1);
}

static const struct conf_opt *
conf_find(const char *key)
{
	size_t	i;

	for (i = 0; i < CONF_NOPTS; i++) {
		if (strcmp(conf_opts[i].name, key) == 0)
			return (&conf_opts[i]);
	}
	return (NULL);
}

int
conf_set(struct conf *c, const char *key, const char *v,
    struct qmp_error *err)
{
	const struct conf_opt	*o;
	void			*p;
	long long		 n;
	int			 id;

	if ((o = conf_find(key)) == NULL) {
		qmp_error_set(err, QMP_CLS_GENERIC, "unknown option '%s'", key);
		return (-1);
	}
	p = (char *)c + o->off;
	switch (o->type) {
	case CT_STR:
		if (*v == '\0') {
			qmp_error_set(err, QMP_CLS_GENERIC, "%s: empty value",
			    key);
			return (-1);
		}
		free(*(char **)p);
		*(char **)p = conf_xstrdup(v);
		return (0);
	case CT_BOOL:
		if ((id = conf_bool(v)) == -1)
			break;
		*(int *)p = id;
		return (0);
	case CT_INT:
		if (conf_number(v, o->min, INT_MAX, 0, &n) == -1)
			break;
		*(int *)p = (int)n;
		return (0);
	case CT_SIZE:
		if (conf_number(v, o->min, (long long)1 << 40, 1, &n) == -1)
			break;
		*(size_t *)p = (size_t)n;
		return (0);
	case CT_LEVEL:
		if ((id = log_level_parse(v)) == -1)
			break;
		*(int *)p = id;
		return (0);
	case CT_TARGET:
		if (strcmp(v, "syslog") == 0)
			*(int *)p = 1;
		else if (strcmp(v, "stderr") == 0)
			*(int *)p = 0;
		else
			break;
		return (0);
	case CT_GROUP:
		if (conf_gid(v, &id) == -1)
			break;
		*(int *)p = id;
		return (0);
	case CT_UIDS:
		if (conf_uid(v, &id) == -1)
			break;
		if (c->n_allow_uids >= CONF_MAX_IDS) {
			qmp_error_set(err, QMP_CLS_GENERIC, "%s: more than %d",
			    key, CONF_MAX_IDS);
			return (-1);
		}
		c->allow_uids[c->n_allow_uids++] = id;
		return (0);
	case CT_GIDS:
		if (conf_gid(v, &id) == -1)
			break;
		if (c->n_allow_gids >= CONF_MAX_IDS) {
			qmp_error_set(err, QMP_CLS_GENERIC, "%s: more than %d",
			    key, CONF_MAX_IDS);
			return (-1);
		}
		c->allow_gids[c->n_allow_gids++] = id;
		return (0);
	case CT_ROOTS:
		if (*v != '/')
			break;
		if (c->n_image_roots >= CONF_MAX_ROOTS) {
			qmp_error_set(err, QMP_CLS_GENERIC, "%s: more than %d",
			    key, CONF_MAX_ROOTS);
			return (-1);
		}
		c->image_roots[c->n_image_roots++] = conf_xstrdup(v);
		return (0);
	case CT_VM:
		return (conf_vm(c, v, err));
	case CT_VMALLOW:
		return (conf_vm_allow(c, v, err));
	}
	qmp_error_set(err, QMP_CLS_GENERIC, "%s: bad value '%s'", key, v);
	return (-1);
}

static char *
conf_trim(char *s)
{
	char	*e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return (s);
}

int
conf_load_file(struct conf *c, const char *path, struct qmp_error *err)
{
	struct qmp_error	 e;
	FILE			*f;
	char			 line[CONF_LINE_MAX], *k, *v;
	size_t			 lineno = 0, total = 0;
	int			 rc = 0;

	if ((f = fopen(path, "re")) == NULL) {
		qmp_error_set(err, QMP_CLS_GENERIC, "%s: %s", path,
		    strerror(errno));
		return (-1);
	}
	while (fgets(line, sizeof line, f) != NULL) {
		lineno++;
		total += strlen(line);
		if (total > CONF_FILE_MAX) {
			qmp_error_set(err, QMP_CLS_GENERIC,
			    "%s: file too large", path);
			rc = -1;
			break;
		}
		if (strchr(line, '\n') == NULL && !feof(f)) {
			qmp_error_set(err, QMP_CLS_GENERIC,
			    "%s:%zu: line too long", path, lineno);
			rc = -1;
			break;
		}
		k = conf_trim(line);
		if (*k == '#' || *k == '\0')
			continue;
		v = k + strcspn(k, " \t");
		if (*v != '\0')
			*v++ = '\0';
		v = conf_trim(v);
		if (strcmp(k, "config") == 0) {
			qmp_error_set(err, QMP_CLS_GENERIC,
			    "%s:%zu: 'config' is a flag only", path, lineno);
			rc = -1;
			break;
		}
		if (conf_set(c, k, v, &e) == -1) {
			qmp_error_set(err, QMP_CLS_GENERIC, "%s:%zu: %s", path,
			    lineno, e.desc);
			rc = -1;
			break;
		}
	}
	if (rc == 0 && ferror(f)) {
		qmp_error_set(err, QMP_CLS_GENERIC, "%s: read error", path);
		rc = -1;
	}
	fclose(f);
	return (rc);
}

/* Splits "--key[=value]"; the value may be the next argument. */
static int
conf_flag(struct conf *c, int argc, char **argv, int *i, int apply,
    unsigned char *reset, struct qmp_error *err)
{
	const struct conf_opt	*o;
	struct qmp_error	 e;
	char			 key[64];
	const char		*arg = argv[*i], *eq, *v;
	size_t			 len;

	if (strncmp(arg, "--", 2) != 0) {
		qmp_error_set(err, QMP_CLS_GENERIC, "unexpected argument '%s'",
		    arg);
		return (-1);
	}
	arg += 2;
	eq = strchr(arg, '=');
	len = eq != NULL ? (size_t)(eq - arg) : strlen(arg);
	if (len >= sizeof key) {
		qmp_error_set(err, QMP_CLS_GENERIC, "unknown flag '%s'",
		    argv[*i]);
		return (-1);
	}
	memcpy(key, arg, len);
	key[len] = '\0';
	if ((o = conf_find(key)) == NULL) {
		qmp_error_set(err, QMP_CLS_GENERIC, "unknown flag '--%s'", key);
		return (-1);
	}
	if (eq != NULL)
		v = eq + 1;
	else if (o->type == CT_BOOL)
		v = "1";
	else if (*i + 1 < argc)
		v = argv[++*i];
	else {
		qmp_error_set(err, QMP_CLS_GENERIC, "--%s needs a value", key);
		return (-1);
	}
	if (!apply)
		return (strcmp(key, "config") == 0 ?
		    conf_set(c, key, v, err) : 0);
	/* A list given as flags replaces the file's list. */
	if (!reset[o - conf_opts]) {
		reset[o - conf_opts] = 1;
		conf_list_reset(c, o->type);
	}
	if (conf_set(c, key, v, &e) == -1) {
		qmp_error_set(err, QMP_CLS_GENERIC, "--%s", e.desc);
		return (-1);
	}
	return (0);
}

int
conf_build(struct conf *c, int argc, char **argv, struct qmp_error *err)
{
	unsigned char	 reset[CONF_NOPTS];
	int		 i;
	char		*file;

	conf_init(c);
	memset(reset, 0, sizeof reset);
	for (i = 1; i < argc; i++) {
		if (conf_flag(c, argc, argv, &i, 0, reset, err) == -1)
			return (-1);
	}
	if (c->config_path != NULL) {
		file = conf_xstrdup(c->config_path);
		if (conf_load_file(c, file, err) == -1) {
			free(file);
			return (-1);
		}
		free(c->config_path);
		c->config_path = file;
	} else if (access(CONF_DEFAULT_FILE, F_OK) == 0) {
		if (conf_load_file(c, CONF_DEFAULT_FILE, err) == -1)
			return (-1);
		c->config_path = conf_xstrdup(CONF_DEFAULT_FILE);
	}
	for (i = 1; i < argc; i++) {
		if (conf_flag(c, argc, argv, &i, 1, reset, err) == -1)
			return (-1);
	}
	conf_fill_paths(c);
	return (0);
}

void
conf_usage(FILE *f)
{
	size_t	i;

	fprintf(f, "usage: qmpbrokerd [--help] [--version] [--OPTION VALUE ...]\n"
	    "Every option is also a config file line 'OPTION VALUE'.\n"
	    "A yes|no option given alone means yes: --OPTION=no for no.\n");
	for (i = 0; i < CONF_NOPTS; i++) {
		fprintf(f, "  --%-20s %s\n", conf_opts[i].name,
		    conf_opts[i].help);
	}
}

bool
conf_vm_name_valid(const char *s)
{
	size_t	i;

	for (i = 0; s[i] != '\0'; i++) {
		if (i >= VM_NAME_MAX)
			return (false);
		if (!((s[i] >= 'a' && s[i] <= 'z') ||
		    (s[i] >= 'A' && s[i] <= 'Z') ||
		    (s[i] >= '0' && s[i] <= '9') ||
		    s[i] == '_' || s[i] == '.' || s[i] == '-'))
			return (false);
	}
	/* "." and ".." would make odd socket file names. */
	return (i > 0 && strcmp(s, ".") != 0 && strcmp(s, "..") != 0);
}

