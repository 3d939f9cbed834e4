/*
 * losetup argv and what sysfs says backs a loop device: the two-child
 * attach (find, then attach that device), output parsing, and the
 * backing_file comparison on a fake sysfs tree (the kernel's
 * " (deleted)" suffix, a longer name that only starts like ours).
 */
#include <sys/stat.h>

#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "disk/loop.h"

static int
argc_of(char **argv)
{
	int	n = 0;

	while (argv[n] != NULL)
		n++;
	return (n);
}

static void
test_argv(void **state)
{
	char	*argv[LOOP_ARGV_MAX];

	loop_find_argv("/sbin/losetup", argv);
	assert_int_equal(argc_of(argv), 2);
	assert_string_equal(argv[0], "/sbin/losetup");
	assert_string_equal(argv[1], "--find");

	loop_attach_argv("losetup", "/dev/loop3", "/img/-a.raw", false, argv);
	assert_int_equal(argc_of(argv), 4);
	assert_string_equal(argv[1], "/dev/loop3");
	assert_string_equal(argv[2], "--");
	assert_string_equal(argv[3], "/img/-a.raw");

	loop_attach_argv("losetup", "/dev/loop3", "/img/a.raw", true, argv);
	assert_int_equal(argc_of(argv), 5);
	assert_string_equal(argv[1], "--read-only");
	assert_string_equal(argv[2], "/dev/loop3");
	assert_string_equal(argv[3], "--");
	assert_string_equal(argv[4], "/img/a.raw");

	loop_detach_argv("losetup", "/dev/loop3", argv);
	assert_int_equal(argc_of(argv), 3);
	assert_string_equal(argv[1], "--detach");
	assert_string_equal(argv[2], "/dev/loop3");
}

static void
test_parse(void **state)
{
	char			dev[32];
	struct qmp_error	err;

	assert_int_equal(loop_parse_device("/dev/loop12\n", dev, sizeof dev,
	    &err), 0);
	assert_string_equal(dev, "/dev/loop12");
	assert_int_equal(loop_parse_device("/dev/loop1\n/dev/loop2\n", dev,
	    sizeof dev, &err), -1);
	assert_int_equal(loop_parse_device("/dev/sda\n", dev, sizeof dev,
	    &err), -1);
	assert_int_equal(loop_parse_device("", dev, sizeof dev, &err), -1);
	assert_true(loop_out_of_devices(
	    "losetup: cannot find an unused loop device"));
	assert_true(loop_out_of_devices("losetup: x: failed to set up loop "
	    "device: could not find any free loop device"));
	assert_false(loop_out_of_devices("losetup: x: failed to set up loop "
	    "device: Device or resource busy"));
}

static void
test_backing_is(void **state)
{
	assert_true(loop_backing_is("/img/a.raw", "/img/a.raw"));
	assert_true(loop_backing_is("/img/a.raw (deleted)", "/img/a.raw"));
	assert_false(loop_backing_is("/img/a.raw2", "/img/a.raw"));
	assert_false(loop_backing_is("/img/a.raw (deleted) x", "/img/a.raw"));
	assert_false(loop_backing_is("/img/b.raw", "/img/a.raw"));
	assert_false(loop_backing_is("/img/a", "/img/a.raw"));
	assert_false(loop_backing_is("", ""));
}

static void
put(const char *path, const char *text)
{
	FILE	*f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void
test_backing_file(void **state)
{
	char	top[] = "/tmp/qbloopXXXXXX", p[PATH_MAX], buf[64];
	char	big[200];

	assert_non_null(mkdtemp(top));
	snprintf(p, sizeof p, "%s/block", top);
	assert_int_equal(mkdir(p, 0700), 0);
	snprintf(p, sizeof p, "%s/block/loop4", top);
	assert_int_equal(mkdir(p, 0700), 0);
	/* a device without a loop/ directory is not attached */
	assert_int_equal(loop_backing_file(top, "/dev/loop4", buf,
	    sizeof buf), -1);
	snprintf(p, sizeof p, "%s/block/loop4/loop", top);
	assert_int_equal(mkdir(p, 0700), 0);
	snprintf(p, sizeof p, "%s/block/loop4/loop/backing_file", top);
	put(p, "/img/a.raw\n");
	assert_int_equal(loop_backing_file(top, "/dev/loop4", buf,
	    sizeof buf), 0);
	assert_string_equal(buf, "/img/a.raw");
	assert_true(loop_backing_is(buf, "/img/a.raw"));
	/* too long for buf: never a (truncated) match */
	memset(big, 'x', sizeof big - 2);
	big[0] = '/';
	big[sizeof big - 2] = '\n';
	big[sizeof big - 1] = '\0';
	put(p, big);
	assert_int_equal(loop_backing_file(top, "/dev/loop4", buf,
	    sizeof buf), 0);
	assert_string_equal(buf, "");
	/* only /dev/loopN names are looked up */
	assert_int_equal(loop_backing_file(top, "/dev/../loop4", buf,
	    sizeof buf), -1);
	assert_int_equal(loop_backing_file(top, "/dev/loop5", buf,
	    sizeof buf), -1);
	unlink(p);
	snprintf(p, sizeof p, "%s/block/loop4/loop", top);
	rmdir(p);
	snprintf(p, sizeof p, "%s/block/loop4", top);
	rmdir(p);
	snprintf(p, sizeof p, "%s/block", top);
	rmdir(p);
	rmdir(top);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_argv),
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_backing_is),
		cmocka_unit_test(test_backing_file),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
