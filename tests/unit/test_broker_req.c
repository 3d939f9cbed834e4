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
		assert_non_null(args = json_loads(args_json, 0, NULL));
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

static void
test_unpack_errors(void **state)
{
	struct done	d = { 0 };

	/* vm-remove: {"name": s} */
	run_dispatch("vm-remove", "{}", 1, &d);
	assert_int_equal(d.calls, 1);
	assert_true(d.failed);
	assert_string_equal(d.err.cls, "GenericError");
	assert_string_equal(d.err.desc, "Parameter 'name' is missing");

	run_dispatch("vm-remove", "{\"name\": 5}", 1, &d);
	assert_true(d.failed);
	assert_string_equal(d.err.desc, "Invalid parameter type for 'name', "
	    "expected: string");
	/* The second member is named, not the first. */
	run_dispatch("vm-add", "{\"name\": \"a\", \"socket\": []}", 1, &d);
	assert_string_equal(d.err.desc, "Invalid parameter type for 'socket', "
	    "expected: string");
	run_dispatch("unsubscribe", "{\"subscription\": 1.5}", 1, &d);
	assert_string_equal(d.err.desc, "Invalid parameter type for "
	    "'subscription', expected: integer");

	run_dispatch("vm-remove", "{\"name\": \"a\", \"extra\": 1}", 1, &d);
	assert_true(d.failed);
	assert_string_equal(d.err.desc, "Parameter 'extra' is unexpected");

	run_dispatch("vm-remove", "[1]", 1, &d);
	assert_true(d.failed);

	/* No arguments counts as {}. */
	run_dispatch("vm-remove", NULL, 1, &d);
	assert_true(d.failed);
	assert_string_equal(d.err.desc, "Parameter 'name' is missing");

	run_dispatch("vm-remove", "{\"name\": \"nosuch\"}", 1, &d);
	assert_int_equal(d.calls, 1);
	assert_true(d.failed);
	assert_non_null(strstr(d.err.desc, "nosuch"));

	/* The dispatcher resolves a declared target only after the
	   arguments: their errors come first, as when commands looked
	   their VM or job up themselves. */
	run_dispatch("vm-remove", "{\"name\": \"nosuch\", \"x\": 1}", 1,
	    &d);
	assert_string_equal(d.err.desc, "Parameter 'x' is unexpected");
	run_dispatch("query-vms", "{\"name\": 1}", 1, &d);
	assert_string_equal(d.err.desc, "Invalid parameter type for 'name', "
	    "expected: string");
	run_dispatch("query-vms", "{\"name\": \"nosuch\"}", 1, &d);
	assert_string_equal(d.err.desc, "No VM named 'nosuch'");
	run_dispatch("job-cancel", "{}", 1, &d);
	assert_string_equal(d.err.desc, "Parameter 'id' is missing");
	run_dispatch("job-dismiss", "{\"id\": \"x\"}", 1, &d);
	assert_string_equal(d.err.desc, "Invalid parameter type for 'id', "
	    "expected: integer");
	run_dispatch("job-cancel", "{\"id\": 999999, \"x\": 1}", 1, &d);
	assert_string_equal(d.err.desc, "Parameter 'x' is unexpected");
	run_dispatch("job-dismiss", "{\"id\": 999999}", 1, &d);
	assert_int_equal(d.calls, 1);
	assert_string_equal(d.err.desc, "job 999999 not found");
	run_dispatch("job-cancel", "{\"id\": 0}", 1, &d);
	assert_string_equal(d.err.desc, "job 0 not found");

	run_dispatch("vm-add", "{\"name\": \"bad name\", \"socket\": \"/x\"}",
	    1, &d);
	assert_true(d.failed);
	assert_non_null(strstr(d.err.desc, "Invalid VM name"));
	run_dispatch("vm-add", "{\"name\": \"ok\", \"socket\": \"rel\"}", 1, &d);
	assert_true(d.failed);
	assert_non_null(strstr(d.err.desc, "socket"));

	run_dispatch("vm-execute", "{\"vm\": \"a\", \"command\": \"x\", "
	    "\"arguments\": 3}", 1, &d);
	assert_true(d.failed);
	assert_non_null(strstr(d.err.desc, "arguments"));
	run_dispatch("vm-execute", "{\"vm\": \"nosuch\", \"command\": "
	    "\"query-status\"}", 1, &d);
	assert_true(d.failed);
	assert_non_null(strstr(d.err.desc, "nosuch"));

	run_dispatch("subscribe", "{\"vms\": \"x\"}", 1, &d);
	assert_true(d.failed);
	run_dispatch("unsubscribe", "{\"subscription\": \"x\"}", 1, &d);
	assert_true(d.failed);
	json_decref(d.ret);
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
		cmocka_unit_test(test_gate),
		cmocka_unit_test(test_fds),
	};

	log_open(LOG_CRIT, 0);
	conf_init(&conf);
	loop_base = event_base_new();
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
