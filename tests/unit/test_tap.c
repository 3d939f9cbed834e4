/*
 * Tap opening and checking on real taps made with ip(8): this machine
 * has /dev/net/tun, so nothing here is mocked.
 */
#include <sys/wait.h>

#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "hv/tap.h"

static char	tap1[16], tapmq[16];

static int
run(char *const argv[])
{
	pid_t	pid;
	int	st;

	if ((pid = fork()) == 0) {
		int fd = open("/dev/null", O_WRONLY);

		dup2(fd, 2);
		execvp(argv[0], argv);
		_exit(127);
	}
	if (pid < 0 || waitpid(pid, &st, 0) != pid)
		return (-1);
	return (WIFEXITED(st) ? WEXITSTATUS(st) : -1);
}

static int
setup(void **state)
{
	char	*a1[] = { "ip", "tuntap", "add", "dev", tap1, "mode", "tap",
		    "vnet_hdr", NULL };
	char	*a2[] = { "ip", "tuntap", "add", "dev", tapmq, "mode", "tap",
		    "vnet_hdr", "multi_queue", NULL };

	snprintf(tap1, sizeof tap1, "qbt%d", (int)getpid() % 100000);
	snprintf(tapmq, sizeof tapmq, "qbm%d", (int)getpid() % 100000);
	if (run(a1) != 0 || run(a2) != 0) {
		fprintf(stderr, "cannot create taps (need root)\n");
		return (-1);
	}
	return (0);
}

static int
teardown(void **state)
{
	char	*a1[] = { "ip", "link", "del", tap1, NULL };
	char	*a2[] = { "ip", "link", "del", tapmq, NULL };

	run(a1);
	run(a2);
	return (0);
}

static void
test_open_single(void **state)
{
	struct qmp_error	err;
	char			name[16];
	int			fds[2];

	if (tap_open(tap1, 1, false, fds, &err) != 0)
		fail_msg("%s", err.desc);
	assert_int_equal(tap_check_fd(fds[0], 1, name, sizeof name, &err), 0);
	assert_string_equal(name, tap1);
	/* a single-queue fd is no good for a multiqueue NIC */
	assert_int_equal(tap_check_fd(fds[0], 2, NULL, 0, &err), -1);
	assert_non_null(strstr(err.desc, "multi-queue"));
	close(fds[0]);
}

static void
test_open_mq(void **state)
{
	struct qmp_error	err;
	int			fds[4], i;

	if (tap_open(tapmq, 4, false, fds, &err) != 0)
		fail_msg("%s", err.desc);
	for (i = 0; i < 4; i++) {
		assert_int_equal(tap_check_fd(fds[i], 4, NULL, 0, &err), 0);
		close(fds[i]);
	}
	/* asking one queue of a multi_queue tap without IFF_MULTI_QUEUE */
	assert_int_equal(tap_open(tapmq, 1, false, fds, &err), -1);
}

static void
test_refusals(void **state)
{
	struct qmp_error	err;
	int			fds[4], p[2], after;

	assert_int_equal(tap_open("nosuchtap0", 1, false, fds, &err), -1);
	assert_non_null(strstr(err.desc, "not an existing tap"));
	assert_int_equal(tap_open("lo", 1, false, fds, &err), -1);
	assert_int_equal(tap_open("a/b", 1, false, fds, &err), -1);
	assert_int_equal(tap_open("", 1, false, fds, &err), -1);
	assert_int_equal(tap_open("0123456789abcdef", 1, false, fds, &err), -1);
	assert_int_equal(tap_open(tap1, 0, false, fds, &err), -1);
	assert_int_equal(tap_open(tap1, 9, false, fds, &err), -1);
	/* no /dev/vhost-net here: all or nothing, the tap fd is closed */
	if (access("/dev/vhost-net", F_OK) != 0) {
		after = dup(0);
		close(after);
		assert_int_equal(tap_open(tap1, 1, true, fds, &err), -1);
		assert_non_null(strstr(err.desc, "/dev/vhost-net"));
		p[0] = dup(0);
		assert_int_equal(p[0], after);	/* lowest fd is free again */
		close(p[0]);
	}
	assert_int_equal(pipe(p), 0);
	assert_int_equal(tap_check_fd(p[0], 1, NULL, 0, &err), -1);
	assert_non_null(strstr(err.desc, "not a tap"));
	assert_int_equal(tap_check_vhost_fd(p[0], &err), -1);
	close(p[0]);
	close(p[1]);
	p[0] = open("/dev/null", O_RDWR);
	assert_int_equal(tap_check_vhost_fd(p[0], &err),
	    access("/dev/vhost-net", F_OK) == 0 ? -1 : 0);
	close(p[0]);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_open_single),
		cmocka_unit_test(test_open_mq),
		cmocka_unit_test(test_refusals),
	};

	if (geteuid() != 0 || access("/dev/net/tun", R_OK | W_OK) != 0)
		return (77);
	return (cmocka_run_group_tests(tests, setup, teardown));
}
