/*
 * The step journal on a real temporary state directory: records are
 * replaced whole, removed, found again after a "crash", and a corrupt
 * record or a left-over temp file never passes for a record.
 */
#include <sys/stat.h>

#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "broker/core/journal.h"

static char	dir[256];

static int
setup(void **state)
{
	snprintf(dir, sizeof dir, "/tmp/qbjournalXXXXXX");
	return (mkdtemp(dir) == NULL ? -1 : 0);
}

static int
teardown(void **state)
{
	char	*argv[] = { "rm", "-rf", dir, NULL };

	if (fork() == 0) {
		execvp(argv[0], argv);
		_exit(127);
	}
	return (0);
}

struct seen {
	int	n;
	char	vm[64], id[64];
	json_t	*rec;
	int	bad;
};

static void
on_rec(const char *vm, const char *id, json_t *rec, void *arg)
{
	struct seen	*s = arg;

	s->n++;
	snprintf(s->vm, sizeof s->vm, "%s", vm);
	snprintf(s->id, sizeof s->id, "%s", id);
	json_decref(s->rec);
	s->rec = json_incref(rec);
}

static void
on_bad(const char *path, const char *why, void *arg)
{
	((struct seen *)arg)->bad++;
}

static void
test_cycle(void **state)
{
	struct seen		 s = { 0 };
	struct qmp_error	 err;
	char			 path[512];
	json_t		*r1, *r2;
	int		 fd;

	r1 = json_pack("{s:s, s:s, s:s}", "op", "nic-add", "id", "n1",
	    "step", "getfd");
	r2 = json_pack("{s:s, s:s, s:s}", "op", "nic-add", "id", "n1",
	    "step", "device_add");
	assert_int_equal(journal_write(dir, "hotplug", "vm1", "n1", r1, &err),
	    0);
	assert_int_equal(journal_write(dir, "hotplug", "vm1", "n1", r2, &err),
	    0);
	assert_int_equal(journal_load(dir, "hotplug", on_rec, on_bad, &s), 1);
	assert_string_equal(s.vm, "vm1");
	assert_string_equal(s.id, "n1");
	assert_true(json_equal(s.rec, r2));

	/* a temp file a crash left is not a record, and is cleaned */
	snprintf(path, sizeof path, "%s/hotplug/vm1/.n2.tmp", dir);
	fd = open(path, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "{\"op\"", 5), 5);
	close(fd);
	/* a corrupt record is set aside and reported */
	snprintf(path, sizeof path, "%s/hotplug/vm1/n3.json", dir);
	fd = open(path, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "{\"op\": tru", 10), 10);
	close(fd);
	s.n = 0;
	assert_int_equal(journal_load(dir, "hotplug", on_rec, on_bad, &s), 1);
	assert_int_equal(s.bad, 1);
	assert_int_equal(access(path, F_OK), -1);
	strcat(path, ".bad");
	assert_int_equal(access(path, F_OK), 0);
	snprintf(path, sizeof path, "%s/hotplug/vm1/.n2.tmp", dir);
	assert_int_equal(access(path, F_OK), -1);

	assert_int_equal(journal_write(dir, "hotplug", "vm1", "n1", NULL, &err),
	    0);
	/* removing twice is fine */
	assert_int_equal(journal_write(dir, "hotplug", "vm1", "n1", NULL, &err),
	    0);
	s.n = 0;
	assert_int_equal(journal_load(dir, "hotplug", on_rec, on_bad, &s), 0);

	/* names that would leave the directory are refused */
	assert_int_equal(journal_write(dir, "hotplug", "..", "n1", r1, &err),
	    -1);
	assert_string_equal(err.cls, "GenericError");
	assert_string_equal(err.desc, "bad journal name");
	assert_int_equal(journal_write(dir, "hotplug", "vm1", "a/b", r1, &err),
	    -1);
	/* no state dir: nothing written, no error */
	assert_int_equal(journal_write(NULL, "hotplug", "vm1", "n1", r1, &err),
	    0);
	json_decref(r1);
	json_decref(r2);
	json_decref(s.rec);
}

/* Hotplug and images share the code, never the records: a load of one
   area sees only its own, and removing in one leaves the other. */
static void
test_areas(void **state)
{
	struct seen		 s = { 0 };
	struct qmp_error	 err;
	char			 path[512];
	json_t		*h, *i;

	h = json_pack("{s:s}", "op", "nic-add");
	i = json_pack("{s:s, s:s}", "path", "/img/a.raw", "state",
	    "attaching");
	assert_int_equal(journal_write(dir, "hotplug", "vm9", "loop0", h, &err),
	    0);
	assert_int_equal(journal_write(dir, "images", "loop", "loop0", i, &err),
	    0);
	snprintf(path, sizeof path, "%s/images/loop/loop0.json", dir);
	assert_int_equal(access(path, F_OK), 0);

	assert_int_equal(journal_load(dir, "images", on_rec, on_bad, &s), 1);
	assert_string_equal(s.vm, "loop");
	assert_string_equal(s.id, "loop0");
	assert_true(json_equal(s.rec, i));
	s.n = 0;
	assert_int_equal(journal_load(dir, "hotplug", on_rec, on_bad, &s), 1);
	assert_string_equal(s.vm, "vm9");
	assert_true(json_equal(s.rec, h));

	assert_int_equal(journal_write(dir, "images", "loop", "loop0", NULL,
	    &err), 0);
	s.n = 0;
	assert_int_equal(journal_load(dir, "images", on_rec, on_bad, &s), 0);
	assert_int_equal(journal_load(dir, "hotplug", on_rec, on_bad, &s), 1);
	assert_int_equal(s.bad, 0);
	/* an area is one directory name like the others */
	assert_int_equal(journal_write(dir, "../x", "loop", "loop0", i, &err),
	    -1);
	assert_int_equal(journal_load(dir, "..", on_rec, on_bad, &s), -1);
	/* an area nobody wrote yet is empty, not an error */
	assert_int_equal(journal_load(dir, "nothing", on_rec, on_bad, &s), 0);
	assert_int_equal(journal_write(dir, "hotplug", "vm9", "loop0", NULL,
	    &err), 0);
	json_decref(h);
	json_decref(i);
	json_decref(s.rec);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cycle),
		cmocka_unit_test(test_areas),
	};

	return (cmocka_run_group_tests(tests, setup, teardown));
}
