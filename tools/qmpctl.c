/*
 * qmpctl: the command-line client of qmpbrokerd.
 *
 *	qmpctl [-S SOCK] [--json] COMMAND [key=value ...]
 *	qmpctl vms
 *	qmpctl exec VM COMMAND [key=value ...]
 *	qmpctl events [--vm GLOB]... [--event GLOB]... [--since SEQ
 *	    [--epoch E]] [--follow-from FILE]
 *
 * events --since replays the broker's event log after SEQ, then goes on
 * live; --follow-from keeps "EPOCH SEQ" of the last event printed in
 * FILE (updated after each event is written to stdout), and starts
 * from there when FILE exists, so a restarted qmpctl resumes where it
 * stopped: at least once, exactly once unless killed between printing
 * an event and updating FILE.
 *
 * The control socket speaks QMP, so a command that is not in the table
 * below goes to the broker as it is; the table only adds shapes that are
 * nicer to type or to read. Values are parsed as JSON when they parse and
 * taken as strings otherwise, as qmp-shell does; "a.b=1" builds nested
 * objects.
 *
 * Exit status: 0 done (or interrupted while streaming events), 1 the
 * broker or the VM answered with an error (class and desc on stderr), 2
 * usage, 3 the broker could not be reached or went away.
 */
#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "hv/chan.h"
#include "proto/qmp_msg.h"
#include "tools/qmpctl.h"
#include "util/defer.h"

#define CTL_EXIT_OK	0
#define CTL_EXIT_QMP	1
#define CTL_EXIT_USAGE	2
#define CTL_EXIT_CONN	3

#define CTL_MAX_REQS	4
#define CTL_MAX_FDS	CHAN_MAX_FDS
#define CTL_MAX_GLOBS	32

#define CTL_STREAM	0x1	/* keep running after the last reply */

struct ctl;

struct ctl_cmd {
	const char	*name;
	const char	*usage;
	/* Turns argv (the words after the command name) into requests
	   with ctl_request(). Returns -1 on a usage error (already said). */
	int		 (*prepare)(struct ctl *, int argc, char **argv);
	/* The last request's return value; NULL: ctl_print_return. */
	void		 (*result)(struct ctl *, json_t *ret);
	/* An event while streaming; returns 1 to stop. NULL: print it. */
	int		 (*event)(struct ctl *, json_t *event);
	unsigned	 flags;
};

struct ctl_req {
	char	*name;
	json_t	*args;
	int	 fds[CTL_MAX_FDS];
	size_t	 nfds;
};

struct ctl {
	struct event_base	*base;
	struct chan		*chan;
	const char		*sock;
	const struct ctl_cmd	*cmd;
	int			 json;
	int			 timeout_s;

	struct ctl_req		 reqs[CTL_MAX_REQS];
	size_t			 nreqs;
	size_t			 sent;		/* requests sent so far */
	int			 negotiated;
	int			 streaming;
	int			 rc;

	/* events options */
	const char		*vm_globs[CTL_MAX_GLOBS];
	size_t			 n_vm_globs;
	const char		*event_globs[CTL_MAX_GLOBS];
	size_t			 n_event_globs;
	const char		*since;		/* --since, NULL: none */
	const char		*epoch;		/* --epoch */
	const char		*follow;	/* --follow-from FILE */
	int			 follow_fd;
};

#define CTL_EPOCH_MAX	32

static const char *ctl_prog = "qmpctl";

static void ctl_finish(struct ctl *, int rc);

void
ctl_warn(const char *fmt, ...)
{
	va_list	ap;

	fprintf(stderr, "%s: ", ctl_prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* ---- requests ---- */

/* Queues a request; they go out one after another, each once the previous
   succeeded. args is stolen (NULL: none). */
int
ctl_request(struct ctl *ctl, const char *name, json_t *args)
{
	struct ctl_req	*r;

	if (ctl->nreqs == CTL_MAX_REQS) {
		json_decref(args);
		ctl_warn("too many requests");
		return (-1);
	}
	r = &ctl->reqs[ctl->nreqs++];
	if ((r->name = strdup(name)) == NULL) {
		json_decref(args);
		ctl_warn("out of memory");
		return (-1);
	}
	r->args = args;
	r->nfds = 0;
	return (0);
}

/* Attaches an fd to the last queued request (sent with SCM_RIGHTS);
   the fd stays ours and is closed at exit. Kept for commands such as
   nic-add that hand QEMU a tap fd. */
int
ctl_pass_fd(struct ctl *ctl, int fd)
{
	struct ctl_req	*r;

	if (ctl->nreqs == 0 || ctl->reqs[ctl->nreqs - 1].nfds == CTL_MAX_FDS) {
		ctl_warn("cannot pass fd %d", fd);
		return (-1);
	}
	r = &ctl->reqs[ctl->nreqs - 1];
	r->fds[r->nfds++] = fd;
	return (0);
}

static void
ctl_free_reqs(struct ctl *ctl)
{
	size_t	i, j;

	for (i = 0; i < ctl->nreqs; i++) {
		free(ctl->reqs[i].name);
		json_decref(ctl->reqs[i].args);
		for (j = 0; j < ctl->reqs[i].nfds; j++)
			close(ctl->reqs[i].fds[j]);
	}
	ctl->nreqs = 0;
}

/* key=value words into an object. A value is JSON if it parses as JSON,
   else a string; dots in the key make nested objects. */
static int
ctl_set_kv(json_t *obj, const char *word)
{
	const char	*eq, *key, *dot;
	char		 part[256];
	json_t		*v, *sub;
	size_t		 n;

	if ((eq = strchr(word, '=')) == NULL || eq == word) {
		ctl_warn("expected key=value, not '%s'", word);
		return (-1);
	}
	v = json_loads(eq + 1, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL);
	if (v == NULL && (v = json_string(eq + 1)) == NULL) {
		ctl_warn("value of '%.*s' is not valid UTF-8",
		    (int)(eq - word), word);
		return (-1);
	}

	key = word;
	for (;;) {
		dot = memchr(key, '.', eq - key);
		n = (dot != NULL ? dot : eq) - key;
		if (n == 0 || n >= sizeof part) {
			ctl_warn("bad key in '%s'", word);
			goto fail;
		}
		memcpy(part, key, n);
		part[n] = '\0';
		if (dot == NULL)
			break;
		sub = json_object_get(obj, part);
		if (sub == NULL) {
			sub = json_object();
			if (sub == NULL || json_object_set_new(obj, part, sub))
				goto nomem;
		} else if (!json_is_object(sub)) {
			ctl_warn("'%s' is both a value and an object", part);
			goto fail;
		}
		obj = sub;
		key = dot + 1;
	}
	if (json_object_get(obj, part) != NULL) {
		ctl_warn("'%.*s' given twice", (int)(eq - word), word);
		goto fail;
	}
	if (json_object_set_new(obj, part, v) != 0) {
		v = NULL;
		goto nomem;
	}
	return (0);

nomem:
	ctl_warn("out of memory");
fail:
	json_decref(v);
	return (-1);
}

/* The arguments object of argv's key=value words; NULL when argc is 0
   (so no "arguments" member is sent), or on error (said). */
int
ctl_kv_args(int argc, char **argv, json_t **out)
{
	json_t	*obj;
	int	 i;

	*out = NULL;
	if (argc == 0)
		return (0);
	if ((obj = json_object()) == NULL) {
		ctl_warn("out of memory");
		return (-1);
	}
	for (i = 0; i < argc; i++) {
		if (ctl_set_kv(obj, argv[i]) != 0) {
			json_decref(obj);
			return (-1);
		}
	}
	*out = obj;
	return (0);
}

/* ---- output ---- */

static void
ctl_print_json(const json_t *v, size_t flags)
{
	char	*s;

	if ((s = json_dumps(v, flags | JSON_ENCODE_ANY)) == NULL) {
		ctl_warn("cannot format reply");
		return;
	}
	puts(s);
	free(s);
}

/* A return value: raw with --json; readably otherwise ({} is silence). */
static void
ctl_print_return(struct ctl *ctl, json_t *ret)
{
	const char	*str;
	size_t		 len;

	if (ctl->json) {
		ctl_print_json(ret, JSON_COMPACT);
		return;
	}
	if (json_is_object(ret) && json_object_size(ret) == 0)
		return;
	if (json_is_string(ret)) {
		/* Text (human-monitor-command) as text, one newline at end. */
		str = json_string_value(ret);
		len = strlen(str);
		fputs(str, stdout);
		if (len == 0 || str[len - 1] != '\n')
			putchar('\n');
		return;
	}
	ctl_print_json(ret, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
}

static void
ctl_print_event(struct ctl *ctl, json_t *ev)
{
	json_t		*ts, *data, *vm;
	json_int_t	 sec = 0, usec = 0;
	time_t		 t;
	struct tm	 tm;
	char		 when[64], *d = NULL;

	if (ctl->json) {
		ctl_print_json(ev, JSON_COMPACT | JSON_PRESERVE_ORDER);
		return;
	}
	if ((ts = json_object_get(ev, "timestamp")) != NULL) {
		sec = json_integer_value(json_object_get(ts, "seconds"));
		usec = json_integer_value(json_object_get(ts, "microseconds"));
	}
	t = (time_t)sec;
	if (localtime_r(&t, &tm) == NULL ||
	    strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm) == 0)
		snprintf(when, sizeof when, "?");
	vm = json_object_get(ev, "vm");
	data = json_object_get(ev, "data");
	if (data != NULL && !(json_is_object(data) && json_object_size(data) == 0))
		d = json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY |
		    JSON_PRESERVE_ORDER);
	printf("%s.%06lld %-16s %s%s%s\n", when, (long long)usec,
	    json_is_string(vm) ? json_string_value(vm) : "-",
	    json_is_string(json_object_get(ev, "event")) ?
	    json_string_value(json_object_get(ev, "event")) : "?",
	    d != NULL ? " " : "", d != NULL ? d : "");
	free(d);
}

/* ---- the subcommand table ---- */

static const char *
ctl_str(const json_t *v, const char *dflt)
{
	return (json_is_string(v) ? json_string_value(v) : dflt);
}

static int
ctl_prep_vms(struct ctl *ctl, int argc, char **argv)
{
	if (argc != 0) {
		ctl_warn("usage: vms");
		return (-1);
	}
	return (ctl_request(ctl, "query-vms", NULL));
}

static void
ctl_result_vms(struct ctl *ctl, json_t *ret)
{
	json_t		*vm, *q;
	size_t		 i;
	char		 ver[64];

	if (ctl->json || !json_is_array(ret)) {
		ctl_print_return(ctl, ret);
		return;
	}
	printf("%-20s %-13s %-10s %s\n", "NAME", "STATE", "QEMU", "SOCKET");
	json_array_foreach(ret, i, vm) {
		q = json_object_get(vm, "qemu");
		if (json_is_object(q))
			snprintf(ver, sizeof ver, "%lld.%lld.%lld",
			    (long long)json_integer_value(json_object_get(q,
			    "major")),
			    (long long)json_integer_value(json_object_get(q,
			    "minor")),
			    (long long)json_integer_value(json_object_get(q,
			    "micro")));
		else
			snprintf(ver, sizeof ver, "-");
		printf("%-20s %-13s %-10s %s\n",
		    ctl_str(json_object_get(vm, "name"), "?"),
		    ctl_str(json_object_get(vm, "state"), "?"), ver,
		    ctl_str(json_object_get(vm, "socket"), "-"));
	}
}

static int
ctl_prep_stats(struct ctl *ctl, int argc, char **argv)
{
	json_t	*args = NULL;

	if (argc > 1) {
		ctl_warn("usage: stats [VM]");
		return (-1);
	}
	if (argc == 1 && (args = json_pack("{s:s}", "name", argv[0])) == NULL)
		return (-1);
	return (ctl_request(ctl, "query-stats", args));
}

/* A latency member of query-stats in ms; -1 when unknown (null). */
static double
ctl_ms(const json_t *lat, const char *key)
{
	const json_t	*v = json_object_get(lat, key);

	return (json_is_number(v) ? json_number_value(v) * 1000 : -1);
}

static long long
ctl_int(const json_t *o, const char *key)
{
	return ((long long)json_integer_value(json_object_get(o, key)));
}

/* Slowest first: by p99, then by mean, then by name. */
static int
ctl_stats_cmp(const void *a, const void *b)
{
	const json_t	*x = *(const json_t *const *)a;
	const json_t	*y = *(const json_t *const *)b;
	const json_t	*lx = json_object_get(x, "latency");
	const json_t	*ly = json_object_get(y, "latency");
	double		 px = ctl_ms(lx, "p99"), py = ctl_ms(ly, "p99");

	if (px < 0)	/* beyond the last bucket: slowest */
		px = 1e12;
	if (py < 0)
		py = 1e12;
	if (ctl_int(lx, "count") == 0)
		px = -1;
	if (ctl_int(ly, "count") == 0)
		py = -1;
	if (px != py)
		return (px < py ? 1 : -1);
	px = ctl_ms(lx, "mean");
	py = ctl_ms(ly, "mean");
	if (px != py)
		return (px < py ? 1 : -1);
	return (strcmp(ctl_str(json_object_get(x, "name"), ""),
	    ctl_str(json_object_get(y, "name"), "")));
}

static void
ctl_print_ms(double ms)
{
	if (ms < 0)
		printf(" %9s", ">10000");
	else
		printf(" %9.3f", ms);
}

static void
ctl_result_stats(struct ctl *ctl, json_t *ret)
{
	const json_t	*p = json_object_get(ret, "process");
	const json_t	*vms = json_object_get(ret, "vms");
	const json_t	*lat, *lag;
	const json_t	**l;
	size_t		 i, n;

	if (ctl->json || !json_is_object(p) || !json_is_array(vms)) {
		ctl_print_return(ctl, ret);
		return;
	}
	lag = json_object_get(p, "loop-lag");
	printf("clients %lld control, %lld shared; subscriptions %lld; "
	    "events out %lld, dropped %lld; queued %lld bytes\n",
	    ctl_int(p, "clients-control"), ctl_int(p, "clients-shared"),
	    ctl_int(p, "subscriptions"), ctl_int(p, "events-out"),
	    ctl_int(p, "events-dropped"), ctl_int(p, "queued-bytes"));
	printf("open fds %lld; rss %lld KiB; loop lag p99 %.3f ms\n\n",
	    ctl_int(p, "open-fds"), ctl_int(p, "rss-bytes") / 1024,
	    ctl_ms(lag, "p99"));
	n = json_array_size(vms);
	if ((l = calloc(n + 1, sizeof *l)) == NULL) {
		ctl_print_return(ctl, ret);
		return;
	}
	for (i = 0; i < n; i++)
		l[i] = json_array_get(vms, i);
	qsort(l, n, sizeof *l, ctl_stats_cmp);
	printf("%-20s %-13s %8s %6s %5s %5s %5s %8s %9s %9s %9s\n", "NAME",
	    "STATE", "CMDS", "ERRS", "TMOUT", "INFL", "RECON", "EVENTS",
	    "MEAN_MS", "P50_MS", "P99_MS");
	for (i = 0; i < n; i++) {
		lat = json_object_get(l[i], "latency");
		printf("%-20s %-13s %8lld %6lld %5lld %5lld %5lld %8lld",
		    ctl_str(json_object_get(l[i], "name"), "?"),
		    ctl_str(json_object_get(l[i], "state"), "?"),
		    ctl_int(l[i], "commands"), ctl_int(l[i], "errors"),
		    ctl_int(l[i], "timeouts"), ctl_int(l[i], "in-flight"),
		    ctl_int(l[i], "reconnects"), ctl_int(l[i], "events-in"));
		printf(" %9.3f", ctl_ms(lat, "mean"));
		ctl_print_ms(ctl_ms(lat, "p50"));
		ctl_print_ms(ctl_ms(lat, "p99"));
		printf("\n");
	}
	free(l);
}

static int
ctl_prep_exec(struct ctl *ctl, int argc, char **argv)
{
	json_t	*args, *cargs;

	if (argc < 2) {
		ctl_warn("usage: exec VM COMMAND [key=value ...]");
		return (-1);
	}
	if (ctl_kv_args(argc - 2, argv + 2, &cargs) != 0)
		return (-1);
	args = json_pack("{s:s, s:s}", "vm", argv[0], "command", argv[1]);
	if (args == NULL) {
		json_decref(cargs);
		ctl_warn("VM and command must be UTF-8");
		return (-1);
	}
	if (cargs != NULL && json_object_set_new(args, "arguments", cargs)) {
		json_decref(args);
		return (-1);
	}
	return (ctl_request(ctl, "vm-execute", args));
}

static json_t *
ctl_globs(const char **globs, size_t n)
{
	json_t	*a;
	size_t	 i;

	if ((a = json_array()) == NULL)
		return (NULL);
	for (i = 0; i < n; i++) {
		if (json_array_append_new(a, json_string(globs[i])) != 0) {
			json_decref(a);
			return (NULL);
		}
	}
	return (a);
}

/* Where to start: --since/--epoch, else the cursor file's "EPOCH SEQ"
   if it exists (a missing file: live only, as without it). */
static int
ctl_prep_since(struct ctl *ctl, json_t *args)
{
	static char	 ep[CTL_EPOCH_MAX + 1];
	char		 line[128], *end;
	unsigned long long seq;
	FILE		*f;
	int		 n;

	if (ctl->follow != NULL) {
		ctl->follow_fd = open(ctl->follow, O_RDWR|O_CREAT|O_CLOEXEC,
		    0600);
		if (ctl->follow_fd == -1) {
			ctl_warn("%s: %s", ctl->follow, strerror(errno));
			return (-1);
		}
		if (ctl->since == NULL && (f = fdopen(dup(ctl->follow_fd),
		    "r")) != NULL) {
			n = fgets(line, sizeof line, f) == NULL ? -1 :
			    sscanf(line, "%32s %llu", ep, &seq);
			fclose(f);
			if (n == 2) {
				if (json_object_set_new(args, "since",
				    json_integer((json_int_t)seq)) != 0 ||
				    json_object_set_new(args, "epoch",
				    json_string(ep)) != 0)
					return (-1);
				ctl_warn("%s: resuming after seq %llu of epoch "
				    "%s", ctl->follow, seq, ep);
			} else if (n != -1) {
				ctl_warn("%s: not a cursor (EPOCH SEQ)",
				    ctl->follow);
				return (-1);
			}
		}
	}
	if (ctl->since != NULL) {
		errno = 0;
		seq = strtoull(ctl->since, &end, 10);
		if (errno != 0 || *end != '\0' || *ctl->since == '-' ||
		    seq > (unsigned long long)LLONG_MAX) {
			ctl_warn("bad --since '%s': a seq", ctl->since);
			return (-1);
		}
		if (json_object_set_new(args, "since",
		    json_integer((json_int_t)seq)) != 0)
			return (-1);
	}
	if (ctl->epoch != NULL) {
		if (ctl->since == NULL) {
			ctl_warn("--epoch goes with --since");
			return (-1);
		}
		if (json_object_set_new(args, "epoch",
		    json_string(ctl->epoch)) != 0)
			return (-1);
	}
	return (0);
}

/* Prints, then moves the cursor file past the event: same length
   every time, written in place. */
static int
ctl_event_follow(struct ctl *ctl, json_t *ev)
{
	char		 line[CTL_EPOCH_MAX + 32];
	const char	*ep;
	json_int_t	 seq;
	int		 n;

	ctl_print_event(ctl, ev);
	if (ctl->follow_fd < 0)
		return (0);
	ep = json_string_value(json_object_get(ev, "epoch"));
	seq = json_integer_value(json_object_get(ev, "seq"));
	if (ep == NULL || seq <= 0 || strlen(ep) > CTL_EPOCH_MAX)
		return (0);
	if (fflush(stdout) == EOF)
		return (0);
	n = snprintf(line, sizeof line, "%s %020lld\n", ep, (long long)seq);
	if (pwrite(ctl->follow_fd, line, (size_t)n, 0) != n ||
	    ftruncate(ctl->follow_fd, n) == -1)
		ctl_warn("%s: %s", ctl->follow, strerror(errno));
	return (0);
}

static int
ctl_prep_events(struct ctl *ctl, int argc, char **argv)
{
	json_t	*args, *a;

	if (argc != 0) {
		ctl_warn("usage: events [--vm GLOB]... [--event GLOB]...");
		return (-1);
	}
	if ((args = json_object()) == NULL)
		return (-1);
	if (ctl->n_vm_globs != 0) {
		a = ctl_globs(ctl->vm_globs, ctl->n_vm_globs);
		if (a == NULL || json_object_set_new(args, "vms", a) != 0)
			goto bad;
	}
	if (ctl->n_event_globs != 0) {
		a = ctl_globs(ctl->event_globs, ctl->n_event_globs);
		if (a == NULL || json_object_set_new(args, "events", a) != 0)
			goto bad;
	}
	if (ctl_prep_since(ctl, args) == -1) {
		json_decref(args);
		return (-1);
	}
	return (ctl_request(ctl, "subscribe", args));
bad:
	json_decref(args);
	ctl_warn("globs must be UTF-8");
	return (-1);
}

static void
ctl_result_events(struct ctl *ctl, json_t *ret)
{
	/* On stderr, so a script can tell when events start to count
	   while stdout stays nothing but events. */
	ctl_warn("subscription %lld: streaming events until interrupted",
	    (long long)json_integer_value(json_object_get(ret,
	    "subscription")));
}

/* upgrade [--binary PATH]: the broker execs PATH (its own binary by
   default) and hands everything over; the reply comes from the new
   one. */
static int
ctl_prep_upgrade(struct ctl *ctl, int argc, char **argv)
{
	json_t	*args = NULL;

	if (argc == 2 && strcmp(argv[0], "--binary") == 0)
		args = json_pack("{s:s}", "binary", argv[1]);
	else if (argc != 0) {
		ctl_warn("usage: upgrade [--binary PATH]");
		return (-1);
	}
	return (ctl_request(ctl, "upgrade", args));
}

static void
ctl_result_upgrade(struct ctl *ctl, json_t *ret)
{
	if (ctl->json) {
		ctl_print_return(ctl, ret);
		return;
	}
	printf("upgraded from %s to %s, requests held %lld ms\n",
	    json_string_value(json_object_get(ret, "previous")),
	    json_string_value(json_object_get(ret, "version")),
	    (long long)json_integer_value(json_object_get(ret, "pause-ms")));
}

static const struct ctl_cmd ctl_cmds[] = {
	{ "vms", "vms", ctl_prep_vms, ctl_result_vms, NULL, 0 },
	{ "exec", "exec VM COMMAND [key=value ...]", ctl_prep_exec, NULL,
	  NULL, 0 },
	{ "events", "events [--vm GLOB]... [--event GLOB]... [--since SEQ "
	  "[--epoch E]] [--follow-from FILE]",
	  ctl_prep_events, ctl_result_events, ctl_event_follow, CTL_STREAM },
	{ "nic-add", "nic-add VM ID (--tap IFNAME | --fd N...) [--mac MAC] "
	  "[--queues N] [--vhost] [--driver D] [--bus BUS] [--addr A]",
	  ctl_prep_nic_add, NULL, NULL, 0 },
	{ "nic-del", "nic-del VM ID", ctl_prep_nic_del, NULL, NULL, 0 },
	{ "disk-add", "disk-add VM ID (SOURCE | --fd N) [--format F] "
	  "[--readonly] [--driver D] [--bus BUS] [--addr A]",
	  ctl_prep_disk_add, NULL, NULL, 0 },
	{ "disk-del", "disk-del VM ID", ctl_prep_disk_del, NULL, NULL, 0 },
	{ "slots", "slots VM", ctl_prep_slots, NULL, NULL, 0 },
	{ "cpu-add", "cpu-add VM (N | ID...)", ctl_prep_cpu_add, NULL, NULL,
	  0 },
	{ "cpu-del", "cpu-del VM (N | ID...)", ctl_prep_cpu_del, NULL, NULL,
	  0 },
	{ "mem-add", "mem-add VM ID SIZE[K|M|G|T] [--backend ram|memfd|file] "
	  "[--path P] [--node N] [--kind dimm|virtio-mem] [--requested SIZE] "
	  "[--bus BUS] [--addr A]", ctl_prep_mem_add, NULL, NULL, 0 },
	{ "mem-del", "mem-del VM ID", ctl_prep_mem_del, NULL, NULL, 0 },
	{ "mem-resize", "mem-resize VM ID SIZE[K|M|G|T] [--timeout-ms N]",
	  ctl_prep_mem_resize, NULL, NULL, 0 },
	{ "stats", "stats [VM]", ctl_prep_stats, ctl_result_stats, NULL, 0 },
	{ "upgrade", "upgrade [--binary PATH]", ctl_prep_upgrade,
	  ctl_result_upgrade, NULL, 0 },
	{ "policy-check", "policy-check UID VM COMMAND [key=value ...]",
	  ctl_prep_policy_check, NULL, NULL, 0 },
	/* @qmpctl-commands@ (hotplug, jobs add here) */
	{ NULL, NULL, NULL, NULL, NULL, 0 }
};

/* Any other word is a control-socket command with key=value arguments. */
static int
ctl_prep_raw(struct ctl *ctl, int argc, char **argv)
{
	json_t	*args;

	if (ctl_kv_args(argc - 1, argv + 1, &args) != 0)
		return (-1);
	return (ctl_request(ctl, argv[0], args));
}

static const struct ctl_cmd ctl_raw = {
	NULL, "COMMAND [key=value ...]", NULL, NULL, NULL, 0
};

/* ---- the connection ---- */

static void
ctl_finish(struct ctl *ctl, int rc)
{
	ctl->rc = rc;
	event_base_loopbreak(ctl->base);
}

static void
ctl_send_next(struct ctl *ctl)
{
	struct ctl_req	*r = &ctl->reqs[ctl->sent];
	json_t		*msg;
	char		 id[32];
	char		*s;
	size_t		 len;
	int		 rv;

	snprintf(id, sizeof id, "qmpctl-%zu", ctl->sent);
	if (r->args != NULL)
		json_incref(r->args);
	msg = qmp_cmd_new(r->name, r->args, json_string(id));
	if (msg == NULL || (s = qmp_dump(msg, &len)) == NULL) {
		json_decref(msg);
		ctl_warn("cannot build the request");
		ctl_finish(ctl, CTL_EXIT_USAGE);
		return;
	}
	json_decref(msg);
	rv = chan_send(ctl->chan, s, len, r->fds, r->nfds);
	free(s);
	if (rv != 0) {
		ctl_warn("%s: connection closed", ctl->sock);
		ctl_finish(ctl, CTL_EXIT_CONN);
		return;
	}
	ctl->sent++;
}

static void
ctl_reply(struct ctl *ctl, json_t *msg, enum qmp_msg_type type)
{
	struct qmp_error	 err;
	json_t			*id;
	const char		*ids;
	int			 last;

	id = json_object_get(msg, "id");
	ids = json_string_value(id);
	if (type == QMP_MSG_ERROR) {
		qmp_error_from_json(&err, json_object_get(msg, "error"));
		if (id == NULL)
			ctl_warn("broker refused a request: %s: %s", err.cls,
			    err.desc);
		else
			fprintf(stderr, "%s: %s\n", err.cls, err.desc);
		ctl_finish(ctl, id == NULL ? CTL_EXIT_CONN : CTL_EXIT_QMP);
		return;
	}
	if (ids != NULL && strcmp(ids, "qmpctl-cap") == 0) {
		ctl->negotiated = 1;
		ctl_send_next(ctl);
		return;
	}
	if (ids == NULL || ctl->sent == 0 ||
	    strncmp(ids, "qmpctl-", 7) != 0 ||
	    strtoul(ids + 7, NULL, 10) != ctl->sent - 1) {
		ctl_warn("reply with an unexpected id ignored");
		return;
	}
	last = ctl->sent == ctl->nreqs;
	if (!last) {
		ctl_send_next(ctl);
		return;
	}
	if (ctl->cmd->result != NULL)
		ctl->cmd->result(ctl, json_object_get(msg, "return"));
	else
		ctl_print_return(ctl, json_object_get(msg, "return"));
	if (ctl->cmd->flags & CTL_STREAM)
		ctl->streaming = 1;
	else
		ctl_finish(ctl, CTL_EXIT_OK);
}

static void
ctl_msg(struct chan *chan, json_t *msg, int *fds, size_t nfds, void *arg)
{
	struct ctl		*ctl = arg;
	enum qmp_msg_type	 type;
	json_t			*cap;
	size_t			 i;

	for (i = 0; i < nfds; i++)
		close(fds[i]);

	type = qmp_msg_classify(msg);
	switch (type) {
	case QMP_MSG_GREETING:
		if (ctl->negotiated || ctl->sent != 0)
			return;		/* a second greeting: QEMU's habit */
		cap = qmp_cmd_new("qmp_capabilities", NULL,
		    json_string("qmpctl-cap"));
		if (cap == NULL || chan_send_json(chan, cap) != 0) {
			ctl_warn("%s: cannot negotiate", ctl->sock);
			ctl_finish(ctl, CTL_EXIT_CONN);
		}
		json_decref(cap);
		break;
	case QMP_MSG_RETURN:
	case QMP_MSG_ERROR:
		ctl_reply(ctl, msg, type);
		break;
	case QMP_MSG_EVENT:
		if (!ctl->streaming)
			break;
		if (ctl->cmd->event != NULL) {
			if (ctl->cmd->event(ctl, msg))
				ctl_finish(ctl, CTL_EXIT_OK);
		} else
			ctl_print_event(ctl, msg);
		if (ferror(stdout) || fflush(stdout) == EOF) {
			/* A reader that went away (| head) is not an error. */
			if (errno != EPIPE)
				ctl_warn("stdout: %s", strerror(errno));
			ctl_finish(ctl, errno == EPIPE ? CTL_EXIT_OK :
			    CTL_EXIT_CONN);
		}
		break;
	default:
		ctl_warn("unexpected message from the broker ignored");
		break;
	}
}

static void
ctl_bad(struct chan *chan, const struct qmp_error *err, void *arg)
{
	ctl_warn("broker sent a bad line: %s", err->desc);
}

static void
ctl_closed(struct chan *chan, const char *why, void *arg)
{
	struct ctl	*ctl = arg;

	ctl_warn("%s: connection closed%s%s", ctl->sock,
	    why != NULL ? ": " : "", why != NULL ? why : "");
	ctl_finish(ctl, CTL_EXIT_CONN);
}

static const struct chan_ops ctl_chan_ops = {
	ctl_msg, ctl_bad, ctl_closed, NULL
};

static void
ctl_signal(evutil_socket_t sig, short what, void *arg)
{
	ctl_finish(arg, CTL_EXIT_OK);
}

static void
ctl_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct ctl	*ctl = arg;

	ctl_warn("%s: no answer in %d s", ctl->sock, ctl->timeout_s);
	ctl_finish(ctl, CTL_EXIT_CONN);
}

static int
ctl_connect(const char *path)
{
	struct sockaddr_un	sun;
	int			fd;

	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof sun.sun_path) {
		ctl_warn("%s: socket path too long", path);
		return (-1);
	}
	memcpy(sun.sun_path, path, strlen(path) + 1);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1) {
		ctl_warn("socket: %s", strerror(errno));
		return (-1);
	}
	if (connect(fd, (struct sockaddr *)&sun, sizeof sun) == -1) {
		ctl_warn("cannot connect to %s: %s", path, strerror(errno));
		close(fd);
		return (-1);
	}
	return (fd);
}

/* As the daemon: root's under /run, anyone else's under XDG_RUNTIME_DIR,
   or /tmp/qmpbroker-UID when that is not set. */
static const char *
ctl_default_socket(void)
{
	static char	 path[PATH_MAX];
	const char	*env;
	int		 n;

	if ((env = getenv("QMPBROKER_SOCKET")) != NULL && *env != '\0')
		return (env);
	if (geteuid() == 0)
		return ("/run/qmpbroker/control.sock");
	if ((env = getenv("XDG_RUNTIME_DIR")) != NULL && *env == '/')
		n = snprintf(path, sizeof path, "%s/qmpbroker/control.sock",
		    env);
	else
		n = snprintf(path, sizeof path,
		    "/tmp/qmpbroker-%u/control.sock", (unsigned)geteuid());
	if (n < 0 || (size_t)n >= sizeof path) {
		ctl_warn("XDG_RUNTIME_DIR too long: use -S SOCK");
		return (NULL);
	}
	return (path);
}

static void __attribute__((noreturn))
ctl_usage(int rc)
{
	const struct ctl_cmd	*c;
	FILE			*f = rc == 0 ? stdout : stderr;

	fprintf(f, "usage: %s [-S SOCK] [--json] [-t SECONDS] %s\n",
	    ctl_prog, ctl_raw.usage);
	for (c = ctl_cmds; c->name != NULL; c++)
		fprintf(f, "       %s [-S SOCK] [--json] %s\n", ctl_prog,
		    c->usage);
	fprintf(f, "The socket defaults to $QMPBROKER_SOCKET, else the "
	    "daemon's default.\nValues are JSON when they parse as JSON, "
	    "else strings.\nExit: 0 ok, 1 error reply, 2 usage, "
	    "3 broker unreachable or gone.\n");
	exit(rc);
}

static int
ctl_run(struct ctl *ctl)
{
	struct event	*sigint = NULL, *sigterm = NULL, *timer = NULL;
	struct timeval	 tv;
	int		 fd;

	if ((fd = ctl_connect(ctl->sock)) == -1)
		return (CTL_EXIT_CONN);
	if ((ctl->base = event_base_new()) == NULL) {
		close(fd);
		ctl_warn("cannot make an event loop");
		return (CTL_EXIT_CONN);
	}
	ctl->rc = CTL_EXIT_CONN;
	ctl->chan = chan_new(ctl->base, fd, NULL, &ctl_chan_ops, ctl);
	if (ctl->chan == NULL) {
		ctl_warn("cannot set up the connection");
		event_base_free(ctl->base);
		return (CTL_EXIT_CONN);
	}
	sigint = evsignal_new(ctl->base, SIGINT, ctl_signal, ctl);
	sigterm = evsignal_new(ctl->base, SIGTERM, ctl_signal, ctl);
	if (sigint == NULL || sigterm == NULL ||
	    evsignal_add(sigint, NULL) != 0 ||
	    evsignal_add(sigterm, NULL) != 0)
		ctl_warn("cannot catch signals");
	if (ctl->timeout_s > 0) {
		tv.tv_sec = ctl->timeout_s;
		tv.tv_usec = 0;
		if ((timer = evtimer_new(ctl->base, ctl_timeout, ctl)) == NULL ||
		    evtimer_add(timer, &tv) != 0)
			ctl_warn("cannot arm the timeout");
	}

	event_base_dispatch(ctl->base);

	chan_free(ctl->chan);
	if (timer != NULL)
		event_free(timer);
	if (sigint != NULL)
		event_free(sigint);
	if (sigterm != NULL)
		event_free(sigterm);
	event_base_free(ctl->base);
	/* the channel's memory waited for a loop pass */
	defer_flush();
	return (ctl->rc);
}

int
main(int argc, char **argv)
{
	static const struct option	 longopts[] = {
		{ "socket",	required_argument,	NULL, 'S' },
		{ "json",	no_argument,		NULL, 'j' },
		{ "timeout",	required_argument,	NULL, 't' },
		{ "vm",		required_argument,	NULL, 'V' },
		{ "event",	required_argument,	NULL, 'E' },
		{ "since",	required_argument,	NULL, 'Q' },
		{ "epoch",	required_argument,	NULL, 'P' },
		{ "follow-from", required_argument,	NULL, 'F' },
		{ "help",	no_argument,		NULL, 'h' },
		/* hotplug subcommands' options, handed on to them */
		{ "tap",	required_argument,	NULL, 0x100 },
		{ "fd",		required_argument,	NULL, 0x100 },
		{ "mac",	required_argument,	NULL, 0x100 },
		{ "queues",	required_argument,	NULL, 0x100 },
		{ "driver",	required_argument,	NULL, 0x100 },
		{ "bus",	required_argument,	NULL, 0x100 },
		{ "addr",	required_argument,	NULL, 0x100 },
		{ "format",	required_argument,	NULL, 0x100 },
		{ "vhost",	no_argument,		NULL, 0x100 },
		{ "readonly",	no_argument,		NULL, 0x100 },
		{ "backend",	required_argument,	NULL, 0x100 },
		{ "path",	required_argument,	NULL, 0x100 },
		{ "node",	required_argument,	NULL, 0x100 },
		{ "kind",	required_argument,	NULL, 0x100 },
		{ "requested",	required_argument,	NULL, 0x100 },
		{ "timeout-ms",	required_argument,	NULL, 0x100 },
		{ "binary",	required_argument,	NULL, 0x100 },
		{ NULL,		0,			NULL, 0 }
	};
	static char			*subopt[64];
	static char			 subname[64][16];
	static char			*subargv[256];
	int				 nsubopt = 0, li, i;
	static struct ctl		 ctl;
	const struct ctl_cmd		*c;
	const char			*sock = NULL;
	char				*end;
	long				 l;
	int				 ch, rc;

	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	ctl.follow_fd = -1;

	/* Options may come anywhere (getopt permutes), so "qmpctl vms
	   --json" works; key=value words never start with '-'. */
	while ((ch = getopt_long(argc, argv, "S:jt:h", longopts, &li)) != -1) {
		switch (ch) {
		case 0x100:
			if (nsubopt + 2 > (int)(sizeof subopt / sizeof subopt[0])) {
				ctl_warn("too many options");
				return (CTL_EXIT_USAGE);
			}
			/* "--name" back as a word, then its value */
			snprintf(subname[nsubopt], sizeof subname[0], "--%s",
			    longopts[li].name);
			subopt[nsubopt] = subname[nsubopt];
			nsubopt++;
			if (optarg != NULL)
				subopt[nsubopt++] = optarg;
			break;
		case 'S':
			sock = optarg;
			break;
		case 'j':
			ctl.json = 1;
			break;
		case 't':
			errno = 0;
			l = strtol(optarg, &end, 10);
			if (errno != 0 || *end != '\0' || l < 0 || l > 86400) {
				ctl_warn("bad timeout '%s'", optarg);
				return (CTL_EXIT_USAGE);
			}
			ctl.timeout_s = (int)l;
			break;
		case 'V':
			if (ctl.n_vm_globs == CTL_MAX_GLOBS) {
				ctl_warn("too many --vm");
				return (CTL_EXIT_USAGE);
			}
			ctl.vm_globs[ctl.n_vm_globs++] = optarg;
			break;
		case 'E':
			if (ctl.n_event_globs == CTL_MAX_GLOBS) {
				ctl_warn("too many --event");
				return (CTL_EXIT_USAGE);
			}
			ctl.event_globs[ctl.n_event_globs++] = optarg;
			break;
		case 'Q':
			ctl.since = optarg;
			break;
		case 'P':
			ctl.epoch = optarg;
			break;
		case 'F':
			ctl.follow = optarg;
			break;
		case 'h':
			ctl_usage(0);
		default:
			ctl_usage(CTL_EXIT_USAGE);
		}
	}
	argc -= optind;
	argv += optind;
	if (argc < 1)
		ctl_usage(CTL_EXIT_USAGE);
	/* reads files, talks to no broker */
	if (strcmp(argv[0], "audit-verify") == 0)
		return (ctl_audit_verify(argc, argv));

	for (c = ctl_cmds; c->name != NULL; c++)
		if (strcmp(c->name, argv[0]) == 0)
			break;
	if (nsubopt > 0 && (c->name == NULL ||
	    strstr(c->usage, " [--") == NULL)) {
		ctl_warn("those options go with the hotplug commands");
		return (CTL_EXIT_USAGE);
	}
	if (c->name != NULL) {
		ctl.cmd = c;
		if (argc - 1 + nsubopt > (int)(sizeof subargv /
		    sizeof subargv[0])) {
			ctl_warn("too many arguments");
			return (CTL_EXIT_USAGE);
		}
		for (i = 1; i < argc; i++)
			subargv[i - 1] = argv[i];
		for (i = 0; i < nsubopt; i++)
			subargv[argc - 1 + i] = subopt[i];
		rc = c->prepare(&ctl, argc - 1 + nsubopt, subargv);
	} else {
		ctl.cmd = &ctl_raw;
		rc = ctl_prep_raw(&ctl, argc, argv);
	}
	if (rc == 0 && (ctl.n_vm_globs != 0 || ctl.n_event_globs != 0 ||
	    ctl.since != NULL || ctl.epoch != NULL || ctl.follow != NULL) &&
	    !(ctl.cmd->flags & CTL_STREAM)) {
		ctl_warn("--vm, --event, --since, --epoch and --follow-from go "
		    "with 'events'");
		rc = -1;
	}
	if (rc != 0 || ctl.nreqs == 0) {
		ctl_free_reqs(&ctl);
		return (CTL_EXIT_USAGE);
	}

	if (sock == NULL && (sock = ctl_default_socket()) == NULL) {
		ctl_free_reqs(&ctl);
		return (CTL_EXIT_USAGE);
	}
	ctl.sock = sock;
	rc = ctl_run(&ctl);
	ctl_free_reqs(&ctl);
	if (fflush(stdout) == EOF && errno != EPIPE && rc == 0) {
		ctl_warn("stdout: %s", strerror(errno));
		rc = CTL_EXIT_CONN;
	}
	return (rc);
}
