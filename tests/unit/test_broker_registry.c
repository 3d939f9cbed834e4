/*
 * The registry file: parsing (good, corrupt, partly bad), atomic writes,
 * and a start from a damaged file that keeps what it can, keeps a copy of
 * the bad file and rewrites a clean one.
 */
#include "config.h"

#include <sys/stat.h>
#include <sys/wait.h>

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

#include "broker/core/conf.h"
#include "broker/core/log.h"
#include "broker/core/loop.h"
#include "broker/vm/registry.h"
#include "broker/vm/vm.h"
#include "util/defer.h"

static char	dir[] = "/tmp/qb-reg-XXXXXX";

static void
parse_ok(const char *text, size_t want_n, size_t want_bad)
{
	struct reg_entry	*e;
	size_t			 n, bad;
	struct qmp_error	 why;

	assert_int_equal(registry_parse(text, strlen(text), &e, &n, &bad, &why),
	    0);
	assert_int_equal(n, want_n);
	assert_int_equal(bad, want_bad);
	if (want_bad != 0)
		assert_true(strlen(why.desc) > 0);
	registry_entries_free(e, n);
}

static void
parse_bad(const char *text)
{
	struct reg_entry	*e;
	size_t			 n, bad;
	struct qmp_error	 why;

	assert_int_equal(registry_parse(text, strlen(text), &e, &n, &bad, &why),
	    -1);
	assert_null(e);
	assert_true(strlen(why.desc) > 0);
}

static void
test_parse(void **state)
{
	struct reg_entry	*e;
	size_t			 n, bad;
	struct qmp_error	 why;
	const char		*good = "{\"version\":1,\"vms\":["
	    "{\"name\":\"a\",\"socket\":\"/run/a.sock\"},"
	    "{\"name\":\"b\",\"socket\":\"/run/b.sock\"}]}";

	assert_int_equal(registry_parse(good, strlen(good), &e, &n, &bad, &why),
	    0);
	assert_int_equal(n, 2);
	assert_int_equal(bad, 0);
	assert_string_equal(why.desc, "");
	assert_string_equal(e[1].name, "b");
	assert_string_equal(e[1].socket, "/run/b.sock");
	assert_int_equal(e[1].share, VM_SHARE_CONF);
	registry_entries_free(e, n);

	/* vm-add's "shared-socket" is kept; anything but a boolean is a
	   bad entry. */
	good = "{\"version\":1,\"vms\":["
	    "{\"name\":\"a\",\"socket\":\"/a\",\"shared-socket\":false},"
	    "{\"name\":\"b\",\"socket\":\"/b\",\"shared-socket\":true},"
	    "{\"name\":\"c\",\"socket\":\"/c\",\"shared-socket\":\"no\"}]}";
	assert_int_equal(registry_parse(good, strlen(good), &e, &n, &bad, &why),
	    0);
	assert_int_equal(n, 2);
	assert_int_equal(bad, 1);
	assert_int_equal(e[0].share, VM_SHARE_NO);
	assert_int_equal(e[1].share, VM_SHARE_YES);
	registry_entries_free(e, n);

	/* vm-add's "pid" with its start time: both, in range, or the VM
	   is kept without them (and counted, so the file is kept). */
	good = "{\"version\":1,\"vms\":["
	    "{\"name\":\"a\",\"socket\":\"/a\",\"pid\":42,\"pid-start\":7},"
	    "{\"name\":\"b\",\"socket\":\"/b\",\"pid\":42},"
	    "{\"name\":\"c\",\"socket\":\"/c\",\"pid\":99999999,"
	    "\"pid-start\":7},"
	    "{\"name\":\"d\",\"socket\":\"/d\",\"pid\":\"42\",\"pid-start\":7},"
	    "{\"name\":\"e\",\"socket\":\"/e\",\"pid\":-1,\"pid-start\":0}]}";
	assert_int_equal(registry_parse(good, strlen(good), &e, &n, &bad, &why),
	    0);
	assert_int_equal(n, 5);
	assert_int_equal(bad, 4);
	assert_int_equal(e[0].pid, 42);
	assert_true(e[0].pid_start == 7);
	for (size_t i = 1; i < n; i++)
		assert_int_equal(e[i].pid, 0);
	registry_entries_free(e, n);

	parse_ok("{\"version\":1,\"vms\":[]}", 0, 0);
	/* Entries that cannot be used are counted, the rest kept. */
	good = "{\"version\":1,\"vms\":[{\"name\":\"a\",\"socket\":\"/a\"},"
	    "{\"name\":\"bad name\",\"socket\":\"/b\"},"
	    "{\"name\":\"c\",\"socket\":\"relative\"},"
	    "{\"name\":\"a\",\"socket\":\"/dup\"},"
	    "{\"name\":\"d\"}, 7, "
	    "{\"name\":\"e\",\"socket\":\"/e\"}]}";
	parse_ok(good, 2, 5);
	/* ...and every reason is said, in order, joined by "; ". */
	assert_int_equal(registry_parse(good, strlen(good), &e, &n, &bad, &why),
	    0);
	assert_string_equal(why.cls, "GenericError");
	assert_string_equal(why.desc, "entry 1: bad name or socket; "
	    "entry 2: bad name or socket; entry 3: a named twice; "
	    "entry 4: not {name, socket, shared-socket?}; "
	    "entry 5: not {name, socket, shared-socket?}");
	registry_entries_free(e, n);

	parse_bad("");
	parse_bad("{\"version\":1,\"vms\":[{\"name\":\"a\",");	/* cut */
	parse_bad("\x00\x01garbage");
	parse_bad("[]");
	parse_bad("{\"version\":2,\"vms\":[]}");
	parse_bad("{\"version\":1,\"vms\":{}}");
	parse_bad("{\"version\":1}");
}

static char *
slurp(const char *path)
{
	FILE	*f = fopen(path, "r");
	char	*buf = calloc(1, 1 << 20);

	assert_non_null(f);
	fread(buf, 1, (1 << 20) - 1, f);
	fclose(f);
	return (buf);
}

static int
count_files(const char *prefix)
{
	DIR		*d = opendir(dir);
	struct dirent	*de;
	int		 n = 0;

	while ((de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, prefix, strlen(prefix)) == 0)
			n++;
	}
	closedir(d);
	return (n);
}

static void
test_write_atomic(void **state)
{
	struct qmp_error	 err;
	char			 path[128], *back;

	snprintf(path, sizeof path, "%s/w.json", dir);
	assert_int_equal(registry_write_atomic(path, "one", 3, &err), 0);
	assert_int_equal(registry_write_atomic(path, "two!", 4, &err), 0);
	back = slurp(path);
	assert_string_equal(back, "two!");
	free(back);
	/* No temp file left behind. */
	assert_int_equal(count_files("w.json.tmp"), 0);
	assert_int_equal(registry_write_atomic("/nonexistent/dir/x", "a", 1,
	    &err), -1);
	unlink(path);
}

/* Start from a half-bad file: good VMs come back, the bad file is kept,
   and the next save writes a clean registry with every vm-add VM. */
static void
test_start_corrupt(void **state)
{
	struct qmp_error	 err, why;
	char			 path[128], *back;
	FILE			*f;
	struct reg_entry	*e;
	size_t			 n, bad;

	snprintf(path, sizeof path, "%s/vms.json", dir);
	f = fopen(path, "w");
	fputs("{\"version\":1,\"vms\":[{\"name\":\"good\",\"socket\":"
	    "\"/tmp/qb-nonexistent.sock\"},{\"name\":\"../evil\",\"socket\":"
	    "\"/x\"}]}", f);
	fclose(f);
	assert_int_equal(registry_start(&err), 0);
	assert_non_null(vm_find("good"));
	assert_null(vm_find("../evil"));
	assert_int_equal(vm_count(), 1);
	assert_int_equal(count_files("vms.json.bad-"), 1);
	event_base_loop(loop_base, EVLOOP_NONBLOCK);

	back = slurp(path);
	assert_int_equal(registry_parse(back, strlen(back), &e, &n, &bad, &why),
	    0);
	assert_int_equal(n, 1);
	assert_int_equal(bad, 0);
	assert_string_equal(e[0].name, "good");
	registry_entries_free(e, n);
	free(back);
	registry_stop();
	vm_cleanup();
	defer_flush();	/* the removed VMs' memory */
}

static void
test_start_garbage(void **state)
{
	struct qmp_error	 err;
	char			 path[128];
	FILE			*f;

	snprintf(path, sizeof path, "%s/vms.json", dir);
	f = fopen(path, "w");
	fputs("\x7f\x45garbage{{{", f);
	fclose(f);
	assert_int_equal(registry_start(&err), 0);
	assert_int_equal(vm_count(), 0);
	assert_true(count_files("vms.json.bad-") >= 1);
	registry_stop();
	vm_cleanup();
	defer_flush();	/* the removed VMs' memory */
}

static struct vm *
cursor_vm(const char *name)
{
	struct qmp_error	 err;
	struct vm		*vm;

	vm = vm_add(name, "/tmp/qb-nonexistent.sock", VM_ORIGIN_API,
	    VM_SHARE_NO, &err);
	assert_non_null(vm);
	return (vm);
}

/* A walk across loop passes (a scrape in parts): a VM removed while the
   cursor points at it is skipped, one removed behind it does not
   matter, one added comes at the end; two cursors at once; a stopped
   cursor lets go. And the metrics' label made at the add. */
static void
test_cursor(void **state)
{
	struct vm_cursor	 c1, c2;
	struct vm		*a, *b, *c, *d;
	const char		*lab;
	size_t			 n;

	a = cursor_vm("a");
	b = cursor_vm("b");
	c = cursor_vm("c");
	lab = vm_metrics_label(b, &n);
	assert_int_equal(n, strlen("vm=\"b\""));
	assert_memory_equal(lab, "vm=\"b\"", n);

	vm_cursor_start(&c1);
	vm_cursor_start(&c2);
	assert_ptr_equal(vm_cursor_next(&c1), a);
	assert_ptr_equal(vm_cursor_next(&c2), a);
	vm_remove(b);			/* next for c1 and c2 */
	vm_remove(a);			/* the one c1 and c2 returned */
	assert_ptr_equal(vm_cursor_next(&c1), c);
	d = cursor_vm("d");		/* after c1's last: still seen */
	assert_ptr_equal(vm_cursor_next(&c1), d);
	assert_null(vm_cursor_next(&c1));
	assert_null(vm_cursor_next(&c1));	/* ended, stays ended */
	assert_ptr_equal(vm_cursor_next(&c2), c);
	vm_cursor_stop(&c2);
	vm_cursor_stop(&c2);		/* idempotent */
	vm_remove(c);			/* no cursor to move */
	vm_remove(d);
	assert_null(vm_cursor_next(&c2));
	assert_int_equal(vm_count(), 0);
	vm_cleanup();
	defer_flush();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_write_atomic),
		cmocka_unit_test(test_start_corrupt),
		cmocka_unit_test(test_start_garbage),
		cmocka_unit_test(test_cursor),
	};
	char	run[128];
	int	rc;

	log_open(LOG_CRIT, 0);
	assert_non_null(mkdtemp(dir));
	conf_init(&conf);
	conf.state_dir = strdup(dir);
	snprintf(run, sizeof run, "%s/run", dir);
	mkdir(run, 0755);
	conf.run_dir = strdup(run);
	snprintf(run, sizeof run, "%s/run/vm", dir);
	mkdir(run, 0755);
	loop_base = event_base_new();
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	/* Leave nothing behind. */
	{
		char *argv[] = { "rm", "-rf", dir, NULL };
		pid_t pid = fork();

		if (pid == 0) {
			execvp("rm", argv);
			_exit(127);
		}
		while (pid > 0 && waitpid(pid, NULL, 0) == -1)
			;
	}
	return (rc);
}
