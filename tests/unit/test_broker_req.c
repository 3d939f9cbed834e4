/*
 * Requests and dispatch: argument unpacking errors, names, fds, the
 * negotiation gate, exactly one completion per request.
 */
#include "config.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>
#include <cmocka.h>

#include "broker/cmd/cmd.h"
#include "broker/core/conf.h"
#include "broker/core/log.h"
#include "broker/core/loop.h"
#include "broker/session/req.h"

#ifndef nitems
#define nitems(a)	(sizeof (a) / sizeof ((a)[0]))
#endif

struct done {
	int			 calls;
	json_t			*ret;
	struct qmp_error	 err;
	int			 failed;
};

static void
capture(struct req *r, json_t *ret, const struct qmp_error *err, void *arg)
{
	struct done	*d = arg;

	d->calls++;
	json_decref(d->ret);
	d->ret = ret;
	d->failed = err != NULL;
	if (err != NULL)
		d->err = *err;
}

static int
count_fds(void)
{
	DIR	*d = opendir("/proc/self/fd");
	int	 n = 0;

	while (readdir(d) != NULL)
		n++;
	closedir(d);
	return (n);
}

/* Unpacks args with fmt through a fresh request; returns what finished. */
static void
run_dispatch(const char *name, const char *args_json, int negotiated,
    struct done *d)
{
	struct req	*r;
	json_t		*args = NULL;

	json_decref(d->ret);
	memset(d, 0, sizeof *d);
	if (args_json != NULL)
		assert_non_null(args = json_loads(args_json, JSON_DECODE_ANY,
		    NULL));
	r = req_new(NULL, NULL, json_integer(1), NULL, 0, capture, d);
	assert_non_null(r);
	cmd_dispatch(r, name, args, negotiated);
	json_decref(args);
}

static void
test_names(void **state)
{
	char	long_name[80];

	assert_true(conf_vm_name_valid("web-1.example_A"));
	assert_true(conf_vm_name_valid("a"));
	memset(long_name, 'x', 64);
	long_name[64] = '\0';
	assert_true(conf_vm_name_valid(long_name));
	long_name[64] = 'x';
	long_name[65] = '\0';
	assert_false(conf_vm_name_valid(long_name));
	assert_false(conf_vm_name_valid(""));
	assert_false(conf_vm_name_valid("."));
	assert_false(conf_vm_name_valid(".."));
	assert_false(conf_vm_name_valid("a/b"));
	assert_false(conf_vm_name_valid("a b"));
	assert_false(conf_vm_name_valid("caf\xc3\xa9"));
	assert_false(conf_vm_name_valid("x*"));
}

/* What a request's failure must be: its description equal to want, or
   holding it, or any failure at all. */
enum errmatch { ERR_IS, ERR_HAS, ERR_ANY };

struct argerr {
	const char	*cmd;
	const char	*args;		/* JSON; NULL: no arguments */
	int		 negotiated;
	enum errmatch	 match;
	const char	*want;
};

/* The error cmd_dispatch gives name with args_json, or "" if none. */
static const char *
dispatch_error(const char *name, const char *args_json, int negotiated,
    struct done *d)
{
	run_dispatch(name, args_json, negotiated, d);
	assert_int_equal(d->calls, 1);
	return (d->failed ? d->err.desc : "");
}

/* Dispatches each case once and checks its one completion. */
static void
check_errors(const struct argerr *c, size_t n)
{
	struct done	 d = { 0 };
	const char	*got;

	for (; n > 0; c++, n--) {
		got = dispatch_error(c->cmd, c->args, c->negotiated, &d);
		if (c->match != ERR_ANY && (c->match == ERR_IS ?
		    strcmp(got, c->want) : strstr(got, c->want) == NULL))
			print_error("%s %s: \"%s\"\n", c->cmd, c->args != NULL ?
			    c->args : "NULL", got);
		switch (c->match) {
		case ERR_IS:
			assert_string_equal(got, c->want);
			break;
		case ERR_HAS:
			assert_non_null(strstr(got, c->want));
			break;
		case ERR_ANY:
			assert_true(d.failed);
			break;
		}
	}
	json_decref(d.ret);
}

static const struct argerr unpack_errors[] = {
	/* vm-remove: {"name": s} */
	{ "vm-remove", "{\"name\": 5}", 1, ERR_IS,
	    "Invalid parameter type for 'name', expected: string" },
	/* The second member is named, not the first. */
	{ "vm-add", "{\"name\": \"a\", \"socket\": []}", 1, ERR_IS,
	    "Invalid parameter type for 'socket', expected: string" },
	{ "unsubscribe", "{\"subscription\": 1.5}", 1, ERR_IS,
	    "Invalid parameter type for 'subscription', expected: integer" },
	{ "vm-remove", "{\"name\": \"a\", \"extra\": 1}", 1, ERR_IS,
	    "Parameter 'extra' is unexpected" },
	{ "vm-remove", "[1]", 1, ERR_ANY, NULL },
	/* No arguments counts as {}. */
	{ "vm-remove", NULL, 1, ERR_IS, "Parameter 'name' is missing" },
	{ "vm-remove", "{\"name\": \"nosuch\"}", 1, ERR_HAS, "nosuch" },
	/* The dispatcher resolves a declared target only after the
	   arguments: their errors come first, as when commands looked
	   their VM or job up themselves. */
	{ "vm-remove", "{\"name\": \"nosuch\", \"x\": 1}", 1, ERR_IS,
	    "Parameter 'x' is unexpected" },
	{ "query-vms", "{\"name\": 1}", 1, ERR_IS,
	    "Invalid parameter type for 'name', expected: string" },
	{ "query-vms", "{\"name\": \"nosuch\"}", 1, ERR_IS,
	    "No VM named 'nosuch'" },
	{ "job-cancel", "{}", 1, ERR_IS, "Parameter 'id' is missing" },
	{ "job-dismiss", "{\"id\": \"x\"}", 1, ERR_IS,
	    "Invalid parameter type for 'id', expected: integer" },
	{ "job-cancel", "{\"id\": 999999, \"x\": 1}", 1, ERR_IS,
	    "Parameter 'x' is unexpected" },
	{ "job-dismiss", "{\"id\": 999999}", 1, ERR_IS,
	    "job 999999 not found" },
	{ "job-cancel", "{\"id\": 0}", 1, ERR_IS, "job 0 not found" },

	{ "vm-add", "{\"name\": \"bad name\", \"socket\": \"/x\"}", 1,
	    ERR_HAS, "Invalid VM name" },
	{ "vm-add", "{\"name\": \"ok\", \"socket\": \"rel\"}", 1, ERR_HAS,
	    "socket" },
	{ "vm-execute", "{\"vm\": \"a\", \"command\": \"x\", "
	    "\"arguments\": 3}", 1, ERR_HAS, "arguments" },
	{ "vm-execute", "{\"vm\": \"nosuch\", \"command\": "
	    "\"query-status\"}", 1, ERR_HAS, "nosuch" },
	{ "subscribe", "{\"vms\": \"x\"}", 1, ERR_ANY, NULL },
	{ "unsubscribe", "{\"subscription\": \"x\"}", 1, ERR_ANY, NULL },
};

static void
test_unpack_errors(void **state)
{
	struct done	d = { 0 };

	run_dispatch("vm-remove", "{}", 1, &d);
	assert_int_equal(d.calls, 1);
	assert_true(d.failed);
	assert_string_equal(d.err.cls, "GenericError");
	assert_string_equal(d.err.desc, "Parameter 'name' is missing");
	json_decref(d.ret);

	check_errors(unpack_errors, nitems(unpack_errors));
}

/*
 * What the dispatcher answers for wrong arguments, command by command:
 * the first member of the command's spec missing or mistyped, in the
 * spec's order whatever the request's, then every unknown member in the
 * request's order, then the command's own checks.
 */
static const struct argerr args_order[] = {
	/* nic-add: vm, id, mac, driver, queues, vhost, ifname, bus, addr */
	{ "nic-add", "{}", 1, ERR_IS, "Parameter 'vm' is missing" },
	{ "nic-add", "{\"zz\": 1, \"id\": 1, \"queues\": \"x\"}", 1, ERR_IS,
	    "Parameter 'vm' is missing" },
	{ "nic-add", "{\"zz\": 1, \"vm\": \"a\", \"queues\": \"x\"}", 1,
	    ERR_IS, "Parameter 'id' is missing" },
	{ "nic-add", "{\"zz\": 1, \"id\": 1, \"vm\": \"a\"}", 1, ERR_IS,
	    "Invalid parameter type for 'id', expected: string" },
	{ "nic-add", "{\"vhost\": 1, \"queues\": \"x\", \"vm\": \"a\", "
	    "\"id\": \"n\"}", 1, ERR_IS,
	    "Invalid parameter type for 'queues', expected: integer" },
	{ "nic-add", "{\"ifname\": 1, \"vhost\": 1, \"vm\": \"a\", "
	    "\"id\": \"n\"}", 1, ERR_IS,
	    "Invalid parameter type for 'vhost', expected: boolean" },
	{ "nic-add", "{\"vm\": \"a\", \"zz\": 1, \"id\": \"n\", "
	    "\"aa\": null, \"mac\": null}", 1, ERR_IS,
	    "Invalid parameter type for 'mac', expected: string" },
	{ "nic-add", "{\"vm\": \"a\", \"zz\": 1, \"id\": \"n\", "
	    "\"aa\": null, \"queues\": 0}", 1, ERR_IS,
	    "Parameter 'zz, aa' is unexpected" },
	{ "nic-add", "{\"vm\": \"a\", \"id\": \"n\", \"queues\": 0}", 1,
	    ERR_IS, "'queues' must be 1..8" },
	{ "nic-add", "[\"vm\"]", 1, ERR_IS,
	    "Invalid parameter: arguments must be an object" },

	/* disk-add: vm, id, source, format, readonly, driver, bus, addr */
	{ "disk-add", "{\"vm\": \"a\", \"id\": \"n\", \"addr\": {}, "
	    "\"bus\": 1, \"readonly\": 1}", 1, ERR_IS,
	    "Invalid parameter type for 'readonly', expected: boolean" },
	{ "disk-del", "{\"id\": \"n\", \"vm\": \"a\", \"source\": \"/x\"}",
	    1, ERR_IS, "Parameter 'source' is unexpected" },
	{ "has-device", "{\"vm\": \"a\"}", 1, ERR_IS,
	    "Parameter 'id' is missing" },
	{ "query-pci-slots", "{\"vm\": \"a\", \"id\": \"n\"}", 1, ERR_IS,
	    "Parameter 'id' is unexpected" },

	/* vm-add: name, socket, then "shared-socket" (any value): its
	   own check comes after the unknown members */
	{ "vm-add", "{\"shared-socket\": 1, \"socket\": 2}", 1, ERR_IS,
	    "Parameter 'name' is missing" },
	{ "vm-add", "{\"name\": \"a\", \"socket\": \"/x\", "
	    "\"shared-socket\": 1, \"zz\": 1}", 1, ERR_IS,
	    "Parameter 'zz' is unexpected" },
	{ "vm-add", "{\"name\": \"a\", \"socket\": \"/x\", "
	    "\"shared-socket\": null}", 1, ERR_IS,
	    "Invalid parameter type for 'shared-socket', expected: boolean" },

	/* vm-execute: vm, command, then "arguments" (any value) */
	{ "vm-execute", "{\"command\": 5}", 1, ERR_IS,
	    "Parameter 'vm' is missing" },
	{ "vm-execute", "{\"command\": 5, \"vm\": 5}", 1, ERR_IS,
	    "Invalid parameter type for 'vm', expected: string" },
	{ "vm-execute", "{\"x\": 1, \"command\": 5, \"vm\": \"a\"}", 1,
	    ERR_IS, "Invalid parameter type for 'command', expected: string" },
	{ "vm-execute", "{\"arguments\": 3, \"command\": \"\", "
	    "\"vm\": \"a\", \"x\": 1}", 1, ERR_IS,
	    "Parameter 'x' is unexpected" },
	{ "vm-execute", "{\"arguments\": 3, \"command\": \"\", "
	    "\"vm\": \"a\"}", 1, ERR_IS,
	    "Invalid parameter type for 'arguments', expected: object" },
	{ "vm-execute", "{\"command\": \"\", \"vm\": \"a\"}", 1, ERR_IS,
	    "Invalid command name" },
	{ "vm-execute", "7", 1, ERR_IS,
	    "Invalid parameter: arguments must be an object" },

	/* domain-shutdown: domain, timeout, force */
	{ "domain-shutdown", "{\"force\": 1, \"timeout\": \"x\", "
	    "\"domain\": \"d\"}", 1, ERR_IS,
	    "Invalid parameter type for 'timeout', expected: integer" },
	{ "domain-shutdown", "{\"force\": 1, \"domain\": 3}", 1, ERR_IS,
	    "Invalid parameter type for 'domain', expected: string" },
	/* domain-migrate: domain, uri, live, bandwidth */
	{ "domain-migrate", "{\"live\": 1, \"domain\": \"d\"}", 1, ERR_IS,
	    "Parameter 'uri' is missing" },
	{ "domain-migrate", "{\"bandwidth\": \"x\", \"live\": 1, "
	    "\"uri\": \"u\", \"domain\": \"d\"}", 1, ERR_IS,
	    "Invalid parameter type for 'live', expected: boolean" },
	{ "domain-snapshot", "{\"domain\": \"d\", \"snap\": \"s\", "
	    "\"name\": \"n\", \"force\": true}", 1, ERR_IS,
	    "Parameter 'snap, force' is unexpected" },
	{ "domain-define", "{\"domain\": \"d\"}", 1, ERR_IS,
	    "Parameter 'xml' is missing" },
	{ "domain-start", "{\"domain\": \"d\", \"xml\": 1}", 1, ERR_IS,
	    "Parameter 'xml' is unexpected" },

	/* image-attach: path, mode, format, readonly */
	{ "image-attach", "{\"q\": 1, \"readonly\": \"x\", \"format\": 1, "
	    "\"mode\": \"m\", \"path\": \"p\"}", 1, ERR_IS,
	    "Invalid parameter type for 'format', expected: string" },
	{ "image-detach", "{}", 1, ERR_IS, "Parameter 'device' is missing" },

	/* the rest */
	{ "query-jobs", "{\"id\": \"x\", \"y\": 1}", 1, ERR_IS,
	    "Invalid parameter type for 'id', expected: integer" },
	{ "query-jobs", "{\"y\": 1, \"id\": 2}", 1, ERR_IS,
	    "Parameter 'y' is unexpected" },
	{ "query-version", "{\"b\": 1, \"a\": 2}", 1, ERR_IS,
	    "Parameter 'b, a' is unexpected" },
	{ "query-commands", "\"x\"", 1, ERR_IS,
	    "Invalid parameter: arguments must be an object" },
	{ "query-subscriptions", "{\"x\": null}", 1, ERR_IS,
	    "Parameter 'x' is unexpected" },
	{ "query-domains", "{\"x\": 1}", 1, ERR_IS,
	    "Parameter 'x' is unexpected" },
	{ "subscribe", "{\"vms\": \"x\", \"y\": 1}", 1, ERR_IS,
	    "Parameter 'y' is unexpected" },
	{ "unsubscribe", "{}", 1, ERR_IS,
	    "Parameter 'subscription' is missing" },
	{ "qmp_capabilities", "{\"enable\": 3, \"x\": 1}", 0, ERR_IS,
	    "Parameter 'x' is unexpected" },
};

static void
test_args_order(void **state)
{
	check_errors(args_order, nitems(args_order));
}

/* Every entry's .args is a spec req_check_args can use (names unique,
   letters it knows), and holds its target argument with the type the
   dispatcher's resolving reads. */
static void
check_entry(const struct cmd_entry *e, void *arg)
{
	const struct req_arg	*a, *b, *target = NULL;
	unsigned		 kind = e->target.kind & CMD_TARGET_KIND;

	for (a = e->args; a->name != NULL; a++) {
		assert_true(a < e->args + CMD_ARGS_MAX);
		assert_non_null(strchr("siIbFoO", a->type));
		for (b = e->args; b < a; b++)
			assert_string_not_equal(a->name, b->name);
		if (e->target.arg != NULL && strcmp(a->name,
		    e->target.arg) == 0)
			target = a;
	}
	if (kind == CMD_TARGET_NONE)
		return;
	assert_non_null(target);
	assert_int_equal(target->type, kind == CMD_FIND_JOB ? 'I' : 's');
	assert_int_equal(target->required, !(e->target.kind & CMD_TARGET_OPT));
	(*(int *)arg)++;
}

static void
test_tables(void **state)
{
	int	n = 0;

	cmd_foreach(check_entry, &n);
	assert_true(n > 20);
}

/*
 * req_check_args against req_unpack itself, with the equivalent strict
 * format and properly typed targets: the same verdict and the same text
 * for every mix of absent, well-typed, mistyped and null members, in
 * every order, with unknown members among them.
 */
struct argcase {
	const char	*fmt;
	int		(*unpack)(struct req *, json_t *);
	struct req_arg	 spec[CMD_ARGS_MAX + 1];
};

static int
unpack_none(struct req *r, json_t *a)
{
	return (req_unpack(r, a, "{}"));
}

static int
unpack_vm_add(struct req *r, json_t *a)
{
	const char	*s1, *s2;
	json_t		*o;

	return (req_unpack(r, a, "{s:s,s:s,s?o}", "name", &s1, "socket",
	    &s2, "shared-socket", &o));
}

static int
unpack_shutdown(struct req *r, json_t *a)
{
	const char	*s;
	json_int_t	 I;
	int		 b;

	return (req_unpack(r, a, "{s:s,s?I,s?b}", "domain", &s, "timeout",
	    &I, "force", &b));
}

static int
unpack_nic_add(struct req *r, json_t *a)
{
	const char	*s[6];
	json_int_t	 I;
	int		 b;
	json_t		*o;

	return (req_unpack(r, a, "{s:s, s:s, s?s, s?s, s?I, s?b, s?s, s?s, "
	    "s?o}", "vm", &s[0], "id", &s[1], "mac", &s[2], "driver", &s[3],
	    "queues", &I, "vhost", &b, "ifname", &s[4], "bus", &s[5], "addr",
	    &o));
}

static int
unpack_numbers(struct req *r, json_t *a)
{
	double	 F;
	int	 i;

	return (req_unpack(r, a, "{s?F,s:i}", "f", &F, "i", &i));
}

static int
unpack_badletter(struct req *r, json_t *a)
{
	const char	*s;
	int		 x;

	return (req_unpack(r, a, "{s:s,s?x}", "a", &s, "b", &x));
}

static const struct argcase argcases[] = {
	{ "{}", unpack_none, { { NULL, 0, false } } },
	{ "{s:s,s:s,s?o}", unpack_vm_add, { { "name", 's', true },
	    { "socket", 's', true }, { "shared-socket", 'o', false } } },
	{ "{s:s,s?I,s?b}", unpack_shutdown, { { "domain", 's', true },
	    { "timeout", 'I', false }, { "force", 'b', false } } },
	{ "nic-add", unpack_nic_add, { { "vm", 's', true },
	    { "id", 's', true }, { "mac", 's', false },
	    { "driver", 's', false }, { "queues", 'I', false },
	    { "vhost", 'b', false }, { "ifname", 's', false },
	    { "bus", 's', false }, { "addr", 'o', false } } },
	{ "{s?F,s:i}", unpack_numbers, { { "f", 'F', false },
	    { "i", 'i', true } } },
	{ "{s:s,s?x}", unpack_badletter, { { "a", 's', true },
	    { "b", 'x', false } } },
};

/* a fixed sequence: a failure is repeatable */
static uint64_t	rnd_state = 1;

static unsigned
rnd(unsigned n)
{
	rnd_state = rnd_state * 6364136223846793005ULL +
	    1442695040888963407ULL;
	return ((unsigned)(rnd_state >> 33) % n);
}

/* A member of type in state: 1 well typed, 2 mistyped, 3 null. */
static json_t *
value_of(char type, int state)
{
	if (state == 3)
		return (json_null());
	switch (type) {
	case 's':
		return (state == 1 ? json_string("v") : json_integer(1));
	case 'i':
	case 'I':
		return (state == 1 ? json_integer(2) : json_real(1.5));
	case 'b':
		return (state == 1 ? json_true() : json_integer(0));
	case 'F':
		return (state == 1 ? json_real(1.5) : json_string("1"));
	default:
		return (state == 1 ? json_object() : json_array());
	}
}

/* What unpack, or req_check_args with spec if unpack is NULL, makes of
   args through a fresh request. */
static void
args_outcome(int (*unpack)(struct req *, json_t *),
    const struct req_arg *spec, json_t *args, int *rc, struct done *d)
{
	struct req	*r;

	json_decref(d->ret);
	memset(d, 0, sizeof *d);
	r = req_new(NULL, NULL, NULL, NULL, 0, capture, d);
	assert_non_null(r);
	*rc = unpack != NULL ? unpack(r, args) : req_check_args(r, args,
	    spec);
	if (*rc == 0) {
		assert_int_equal(d->calls, 0);
		req_reply(r, NULL);
	}
	assert_int_equal(d->calls, 1);
}

static void
args_compare(const struct argcase *c, json_t *args)
{
	struct done	 u = { 0 }, k = { 0 };
	int		 urc, krc;
	char		*dump;

	args_outcome(c->unpack, NULL, args, &urc, &u);
	args_outcome(NULL, c->spec, args, &krc, &k);
	if (urc != krc || u.failed != k.failed || (u.failed &&
	    strcmp(u.err.desc, k.err.desc) != 0)) {
		dump = args != NULL ? json_dumps(args, 0) : NULL;
		print_error("%s with %s: req_unpack %d \"%s\", req_check_args "
		    "%d \"%s\"\n", c->fmt, dump != NULL ? dump : "NULL", urc,
		    u.failed ? u.err.desc : "", krc, k.failed ? k.err.desc : "");
		free(dump);
		fail();
	}
	json_decref(u.ret);
	json_decref(k.ret);
}

static void
test_check_args_as_unpack(void **state)
{
	static const char *const	 unknown[] = { "zz", "aa", "name",
	    "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk1",
	    "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk2",
	    "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk3" };
	const struct argcase		*c;
	const struct req_arg		*a;
	json_t				*args;
	size_t				 i, n, j, k, order[CMD_ARGS_MAX + 6];
	unsigned			 iter, st[CMD_ARGS_MAX], x, nu;

	for (c = argcases; c < argcases + nitems(argcases); c++) {
		for (n = 0; c->spec[n].name != NULL; n++)
			;
		args_compare(c, NULL);
		args = json_array();
		args_compare(c, args);
		json_decref(args);
		args = json_string("x");
		args_compare(c, args);
		json_decref(args);
		for (iter = 0; iter < 3000; iter++) {
			/* each member absent, right, wrong or null */
			for (i = 0; i < n; i++)
				st[i] = rnd(4);
			/* mostly none or one unknown, sometimes more */
			nu = rnd(8);
			nu = nu < 3 ? 0 : nu < 6 ? 1 : nu - 4;
			if (rnd(16) == 0)
				nu = 3 + rnd(4);
			/* a random insertion order of members and unknowns:
			   indexes below n are spec members */
			for (i = 0; i < n + nu; i++)
				order[i] = i;
			for (i = n + nu; i > 1; i--) {
				j = rnd((unsigned)i);
				k = order[i - 1];
				order[i - 1] = order[j];
				order[j] = k;
			}
			args = json_object();
			for (i = 0; i < n + nu; i++) {
				if (order[i] >= n) {
					x = rnd(nitems(unknown));
					if (json_object_get(args,
					    unknown[x]) == NULL)
						json_object_set_new(args,
						    unknown[x],
						    json_integer(x));
					continue;
				}
				a = &c->spec[order[i]];
				if (st[order[i]] != 0)
					json_object_set_new(args, a->name,
					    value_of(a->type, st[order[i]]));
			}
			args_compare(c, args);
			json_decref(args);
		}
	}
}

static void
test_gate(void **state)
{
	struct done	d = { 0 };

	run_dispatch("query-vms", NULL, 0, &d);
	assert_true(d.failed);
	assert_string_equal(d.err.cls, "CommandNotFound");
	assert_non_null(strstr(d.err.desc, "qmp_capabilities"));

	run_dispatch("no-such-command", NULL, 1, &d);
	assert_true(d.failed);
	assert_string_equal(d.err.cls, "CommandNotFound");

	run_dispatch("qmp_capabilities", "{\"enable\": [\"oob\"]}", 0, &d);
	assert_true(d.failed);
	run_dispatch("qmp_capabilities", NULL, 0, &d);
	assert_false(d.failed);
	assert_int_equal(d.calls, 1);

	run_dispatch("query-commands", NULL, 1, &d);
	assert_false(d.failed);
	assert_true(json_is_array(d.ret));
	assert_true(json_array_size(d.ret) >= 8);
	run_dispatch("query-vms", NULL, 1, &d);
	assert_false(d.failed);
	assert_int_equal(json_array_size(d.ret), 0);
	json_decref(d.ret);
}

/* fds on a command that takes none are closed; on one that does, what
   the command does not take is closed when the request ends. */
static void
test_fds(void **state)
{
	struct done	 d;
	struct req	*r;
	int		 before, p[2], fds[2];

	before = count_fds();
	assert_int_equal(pipe(p), 0);
	memset(&d, 0, sizeof d);
	r = req_new(NULL, NULL, NULL, p, 2, capture, &d);
	cmd_dispatch(r, "query-vms", NULL, 1);
	assert_int_equal(d.calls, 1);
	assert_int_equal(count_fds(), before);

	assert_int_equal(pipe(p), 0);
	r = req_new(NULL, NULL, NULL, p, 2, capture, &d);
	assert_int_equal(req_nfds(r), 2);
	fds[0] = req_take_fd(r, 0);
	assert_int_equal(fds[0], p[0]);
	assert_int_equal(req_take_fd(r, 0), -1);
	assert_int_equal(req_take_fd(r, 7), -1);
	req_reply(r, NULL);
	assert_int_equal(count_fds(), before + 1);
	close(fds[0]);
	assert_int_equal(count_fds(), before);
	json_decref(d.ret);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_unpack_errors),
		cmocka_unit_test(test_tables),
		cmocka_unit_test(test_args_order),
		cmocka_unit_test(test_check_args_as_unpack),
		cmocka_unit_test(test_gate),
		cmocka_unit_test(test_fds),
	};

	log_open(LOG_CRIT, 0);
	conf_init(&conf);
	loop_base = event_base_new();
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
