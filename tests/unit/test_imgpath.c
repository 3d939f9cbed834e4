/*
 * Image-root confinement on a real temporary tree: symlinks in and out
 * of the roots, "..", a FIFO and a directory, each refused or accepted
 * for the right reason.
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

#include "disk/imgpath.h"

static char	top[PATH_MAX];
static char	root[PATH_MAX], root2[PATH_MAX], out[PATH_MAX];

/* a + b into dst (PATH_MAX), without format strings the compiler
   cannot check */
static char *
join(char *dst, const char *a, const char *b)
{
	size_t	la = strlen(a), lb = strlen(b);

	assert_true(la + lb < PATH_MAX);
	memcpy(dst, a, la);
	memcpy(dst + la, b, lb + 1);
	return (dst);
}

static void
mk(const char *a, const char *b, int kind)
{
	char	p[PATH_MAX];
	int	fd;

	join(p, a, b);
	switch (kind) {
	case 'd':
		assert_int_equal(mkdir(p, 0700), 0);
		break;
	case 'f':
		fd = open(p, O_CREAT | O_WRONLY, 0600);
		assert_true(fd >= 0);
		close(fd);
		break;
	case 'p':
		assert_int_equal(mkfifo(p, 0600), 0);
		break;
	}
}

static void
link_to(const char *target, const char *a, const char *b)
{
	char	p[PATH_MAX];

	assert_int_equal(symlink(target, join(p, a, b)), 0);
}

static int
setup(void **state)
{
	char		 t[PATH_MAX];
	const char	*tmp = getenv("TMPDIR");

	join(t, tmp != NULL && *tmp == '/' ? tmp : "/tmp", "/imgpathXXXXXX");
	assert_non_null(mkdtemp(t));
	assert_non_null(realpath(t, top));
	join(root, top, "/root");
	join(root2, top, "/root2");
	join(out, top, "/out");
	mk(root, "", 'd');
	mk(root2, "", 'd');
	mk(out, "", 'd');
	mk(root, "/sub", 'd');
	mk(root, "/a.img", 'f');
	mk(root, "/sub/b.img", 'f');
	mk(root2, "/c.img", 'f');
	mk(out, "/secret.img", 'f');
	mk(root, "/fifo", 'p');
	/* a link out, a link in, a directory link out, a dangling link */
	{
		char	tgt[PATH_MAX];

		link_to(join(tgt, out, "/secret.img"), root, "/evil.img");
		link_to("sub/b.img", root, "/good.img");
		link_to(out, root, "/outdir");
		link_to("nowhere", root, "/dangling");
		link_to(join(tgt, top, "/root"), out, "/viaroot");
	}
	return (0);
}

static int
teardown(void **state)
{
	char	*argv[] = { "rm", "-rf", top, NULL };
	pid_t	 pid;

	/* no system(): a child with an argv */
	if ((pid = fork()) == 0) {
		execvp(argv[0], argv);
		_exit(127);
	}
	return (0);
}

static void
ok(char **roots, size_t n, const char *rel, const char *want)
{
	char			 p[PATH_MAX], res[PATH_MAX], w[PATH_MAX];
	struct qmp_error	 err;

	join(p, top, "/");
	join(p, p, rel);
	join(w, top, "/");
	join(w, w, want);
	memset(&err, 0, sizeof err);
	if (img_path_check(roots, n, p, res, sizeof res, &err) != 0)
		fail_msg("%s refused: %s", rel, err.desc);
	assert_string_equal(res, w);
}

static void
bad(char **roots, size_t n, const char *rel, const char *needle)
{
	char			 p[PATH_MAX], res[PATH_MAX];
	struct qmp_error	 err;

	if (rel[0] == '=')		/* taken as it is, not under top */
		join(p, "", rel + 1);
	else {
		join(p, top, "/");
		join(p, p, rel);
	}
	memset(&err, 0, sizeof err);
	if (img_path_check(roots, n, p, res, sizeof res, &err) == 0)
		fail_msg("%s accepted", rel);
	assert_string_equal(err.cls, "GenericError");
	if (strstr(err.desc, needle) == NULL)
		fail_msg("%s: '%s' lacks '%s'", rel, err.desc, needle);
}

static void
test_inside(void **state)
{
	char	*roots[] = { root, root2 };

	ok(roots, 2, "root/a.img", "root/a.img");
	ok(roots, 2, "root/sub/b.img", "root/sub/b.img");
	ok(roots, 2, "root2/c.img", "root2/c.img");
	/* a final symlink inside the roots: accepted, not followed */
	ok(roots, 2, "root/good.img", "root/good.img");
	/* a directory symlink into a root resolves to the root */
	ok(roots, 2, "out/viaroot/a.img", "root/a.img");
}

static void
test_outside(void **state)
{
	char	*roots[] = { root };

	bad(roots, 1, "out/secret.img", "outside the image roots");
	bad(roots, 1, "root2/c.img", "outside the image roots");
	bad(roots, 1, "root/evil.img", "symlink out of the image roots");
	bad(roots, 1, "root/outdir/secret.img", "outside the image roots");
	bad(roots, 1, "root/../out/secret.img", "'..'");
	bad(roots, 1, "root/sub/../a.img", "'..'");
	bad(roots, 1, "root/./a.img", "'..'");
	bad(roots, 1, "root//a.img", "'..'");
	bad(roots, 1, "root/dangling", "dangling");
	bad(roots, 1, "root/missing.img", "No such file");
	bad(roots, 1, "root/nodir/x.img", "No such file");
	bad(roots, 1, "root/fifo", "not a regular file");
	bad(roots, 1, "root/sub", "not a regular file");
	bad(roots, 1, "=relative/a.img", "absolute");
	bad(roots, 1, "=/etc/passwd", "outside");
	bad(NULL, 0, "root/a.img", "no image roots");
	/* a root that is a prefix of a sibling must not admit the sibling */
	bad(roots, 1, "root2/c.img", "outside");
}

static void
test_fd(void **state)
{
	char			*roots[] = { root };
	char			 p[PATH_MAX];
	struct qmp_error	 err;
	int			 fd;

	join(p, root, "/a.img");
	fd = open(p, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(img_fd_check(roots, 1, fd, &err), 0);
	close(fd);

	join(p, out, "/secret.img");
	fd = open(p, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(img_fd_check(roots, 1, fd, &err), -1);
	assert_non_null(strstr(err.desc, "outside"));
	close(fd);

	fd = open(root, O_RDONLY | O_DIRECTORY);
	assert_true(fd >= 0);
	assert_int_equal(img_fd_check(roots, 1, fd, &err), -1);
	assert_non_null(strstr(err.desc, "not a regular file"));
	close(fd);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_inside),
		cmocka_unit_test(test_outside),
		cmocka_unit_test(test_fd),
	};

	return (cmocka_run_group_tests(tests, setup, teardown));
}
