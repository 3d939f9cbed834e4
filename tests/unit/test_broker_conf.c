/*
 * Config parsing: the one option table behind the file and the flags.
 */
#include "config.h"

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

static char	tmpl[] = "/tmp/qb-conf-XXXXXX";

static char *
write_file(const char *text)
{
	static char	path[64];
	int		fd;

	snprintf(path, sizeof path, "/tmp/qb-conf-file-XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	return (path);
}

static void
test_defaults(void **state)
{
	struct conf		 c;
	struct qmp_error	 err;
	char			*argv[] = { "qmpbrokerd", "--run-dir", tmpl, NULL };

	assert_int_equal(conf_build(&c, 3, argv, &err), 0);
	assert_string_equal(c.run_dir, tmpl);
	/* Derived from the run dir when not given. */
	assert_non_null(strstr(c.control_path, tmpl));
	assert_non_null(strstr(c.pid_file, tmpl));
	assert_non_null(c.state_dir);
	assert_int_equal(c.max_msg, 4 * 1024 * 1024);
	assert_int_equal(c.socket_gid, -1);
	assert_int_equal(c.unplug_timeout_ms, 10000);
	assert_string_equal(c.libvirt_uri, "test:///default");
	assert_int_equal(c.workers, 4);
	assert_int_equal(c.vm_sockets, 1);
	conf_clear(&c);
}

static void
test_values(void **state)
{
	struct conf		c;
	struct qmp_error	err;

	conf_init(&c);
	assert_int_equal(conf_set(&c, "client-queue-max", "64K", &err), 0);
	assert_int_equal(c.client_queue_max, 64 * 1024);
	assert_int_equal(conf_set(&c, "max-msg", "2MiB", &err), 0);
	assert_int_equal(c.max_msg, 2 * 1024 * 1024);
	assert_int_equal(conf_set(&c, "log-level", "debug", &err), 0);
	assert_int_equal(c.log_level, LOG_DEBUG);
	assert_int_equal(conf_set(&c, "foreground", "yes", &err), 0);
	assert_int_equal(c.foreground, 1);
	assert_int_equal(conf_set(&c, "allow-uid", "root", &err), 0);
	assert_int_equal(conf_set(&c, "allow-uid", "1234", &err), 0);
	assert_int_equal(c.n_allow_uids, 2);
	assert_int_equal(c.allow_uids[0], 0);
	assert_int_equal(c.allow_uids[1], 1234);
	assert_int_equal(conf_set(&c, "vm", "a=/run/a.qmp", &err), 0);
	assert_int_equal(conf_set(&c, "vm", "b /run/b.qmp", &err), 0);
	assert_int_equal(c.n_vms, 2);
	assert_string_equal(c.vms[1].name, "b");
	assert_string_equal(c.vms[1].socket, "/run/b.qmp");

	/* Each bad value is refused with the option named. */
	assert_int_equal(conf_set(&c, "max-msg", "12Q", &err), -1);
	assert_non_null(strstr(err.desc, "max-msg"));
	assert_int_equal(conf_set(&c, "max-msg", "-5", &err), -1);
	assert_int_equal(conf_set(&c, "max-msg", "10", &err), -1);
	assert_int_equal(conf_set(&c, "reply-stall-ms", "99999999999", &err),
	    -1);
	assert_int_equal(conf_set(&c, "log-level", "loud", &err), -1);
	assert_int_equal(conf_set(&c, "foreground", "maybe", &err), -1);
	assert_int_equal(conf_set(&c, "allow-uid", "no-such-user-qb", &err),
	    -1);
	assert_int_equal(conf_set(&c, "vm", "a=/other", &err), -1);
	assert_int_equal(conf_set(&c, "vm", "bad/name=/x", &err), -1);
	assert_int_equal(conf_set(&c, "vm", "c=relative", &err), -1);
	assert_int_equal(conf_set(&c, "image-root", "relative", &err), -1);
	assert_int_equal(conf_set(&c, "no-such", "1", &err), -1);
	assert_string_equal(err.cls, "GenericError");
	assert_string_equal(err.desc, "unknown option 'no-such'");
	assert_int_equal(c.n_vms, 2);
	conf_clear(&c);
}

static void
test_file_and_flags(void **state)
{
	struct conf		 c;
	struct qmp_error	 err;
	char			*path;
	char			*argv[] = { "qmpbrokerd", "--config", NULL,
			    "--max-clients=7", "--allow-gid", "5",
			    "--vm-sockets=no", NULL };

	path = write_file(
	    "# a comment\n"
	    "\n"
	    "  max-clients 3   \n"
	    "client-queue-max 1M\n"
	    "allow-gid 1\n"
	    "allow-gid 2\n"
	    "vm web1 /run/web1.qmp\n"
	    "vm-sockets yes\n"
	    "control /tmp/x/control.sock\n");
	argv[2] = path;
	assert_int_equal(conf_build(&c, 7, argv, &err), 0);
	/* Flags win over the file... */
	assert_int_equal(c.max_clients, 7);
	assert_int_equal(c.vm_sockets, 0);
	/* ...a list given as flags replaces the file's list... */
	assert_int_equal(c.n_allow_gids, 1);
	assert_int_equal(c.allow_gids[0], 5);
	/* ...and the rest of the file stands. */
	assert_int_equal(c.client_queue_max, 1024 * 1024);
	assert_string_equal(c.control_path, "/tmp/x/control.sock");
	assert_int_equal(c.n_vms, 1);
	assert_string_equal(c.config_path, path);
	conf_clear(&c);
	unlink(path);
}

static void
test_file_errors(void **state)
{
	struct conf		 c;
	struct qmp_error	 err;
	char			*path;

	path = write_file("max-clients 3\nbogus-key 1\n");
	conf_init(&c);
	assert_int_equal(conf_load_file(&c, path, &err), -1);
	/* The line is named. */
	assert_non_null(strstr(err.desc, ":2: unknown option 'bogus-key'"));
	conf_clear(&c);
	unlink(path);

	path = write_file("config /etc/other\n");
	conf_init(&c);
	assert_int_equal(conf_load_file(&c, path, &err), -1);
	conf_clear(&c);
	unlink(path);

	conf_init(&c);
	assert_int_equal(conf_load_file(&c, "/nonexistent/qb.conf", &err), -1);
	conf_clear(&c);
}

static void
test_flag_errors(void **state)
{
	struct conf	 c;
	struct qmp_error err;
	char		*a1[] = { "qmpbrokerd", "--max-clients", NULL };
	char		*a2[] = { "qmpbrokerd", "--nope", NULL };
	char		*a3[] = { "qmpbrokerd", "stray", NULL };
	char		*a4[] = { "qmpbrokerd", "--config", "/nonexistent/x", NULL };

	assert_int_equal(conf_build(&c, 2, a1, &err), -1);
	assert_string_equal(err.desc, "--max-clients needs a value");
	conf_clear(&c);
	assert_int_equal(conf_build(&c, 2, a2, &err), -1);
	conf_clear(&c);
	assert_int_equal(conf_build(&c, 2, a3, &err), -1);
	conf_clear(&c);
	assert_int_equal(conf_build(&c, 3, a4, &err), -1);
	conf_clear(&c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_values),
		cmocka_unit_test(test_file_and_flags),
		cmocka_unit_test(test_file_errors),
		cmocka_unit_test(test_flag_errors),
	};

	log_open(LOG_CRIT, 0);
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
