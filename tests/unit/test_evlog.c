/*
 * The event log on a real temporary directory: seq from 1 without gaps,
 * listeners hear appends after the write, restart goes on from the last
 * whole record, a torn tail is cut, a corrupt segment in the middle is
 * reported as a lost range and reading goes on after it, rotation and
 * the size cap, and a cursor reads across segments and memory.
 */
#include <sys/stat.h>
#include <sys/wait.h>

#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <dirent.h>
#include <event2/event.h>
#include <jansson.h>

#include "broker/core/evlog.h"

static char			 dir[256];
static struct event_base	*base;

static int
setup(void **state)
{
	snprintf(dir, sizeof dir, "/tmp/qbevlogXXXXXX");
	if (mkdtemp(dir) == NULL)
		return (-1);
	base = event_base_new();
	return (base == NULL ? -1 : 0);
}

static int
teardown(void **state)
{
	char	*argv[] = { "rm", "-rf", dir, NULL };
	pid_t	 pid;

	evlog_close();
	event_base_free(base);
	if ((pid = fork()) == 0) {
		execvp(argv[0], argv);
		_exit(127);
	}
	return (0);
}

static void
opts(struct evlog_opts *o, const char *d)
{
	memset(o, 0, sizeof *o);
	o->dir = d;
	o->mem_bytes = 1 << 20;
	o->segment_bytes = 16 << 20;
	o->max_bytes = 256 << 20;
	o->max_age_s = 0;
}

static void
open_log(const struct evlog_opts *o)
{
	struct qmp_error	err;

	memset(&err, 0, sizeof err);

	if (evlog_open(base, o, &err) != 0)
		fail_msg("evlog_open: %s", err.desc);
}

/* Appends n events "EV_i" with data {"i": i}. */
static void
append_n(int n, int from)
{
	struct evlog_rec	rec;
	char			body[128];
	int			i, len;

	for (i = from; i < from + n; i++) {
		len = snprintf(body, sizeof body, "{\"event\":\"EV\",\"vm\":"
		    "\"vm%d\",\"data\":{\"i\":%d}", i % 3, i);
		char vm[8];
		snprintf(vm, sizeof vm, "vm%d", i % 3);
		assert_int_equal(evlog_append(vm, "EV", body, (size_t)len,
		    &rec), 0);
		assert_true(rec.json[rec.len] == '\r');
	}
}

/* Until what was appended is written and heard (a flush may wait on
   a timer when the last one was recent). */
static void
run_loop(void)
{
	event_base_loop(base, EVLOOP_NONBLOCK);
	while (evlog_written() != evlog_last())
		event_base_loop(base, EVLOOP_ONCE);
}

/* Reads every record after `after`; checks the text parses, holds seq
   and epoch, and seqs follow each other. Returns the count; lost ranges
   are added to *lost. */
static int
read_all(uint64_t after, uint64_t *lost, uint64_t *lastseq)
{
	struct evlog_cur	*c = evlog_cur_new(after);
	struct evlog_rec	 rec;
	uint64_t		 lf, lt, want = after + 1;
	json_t			*j;
	json_error_t		 je;
	int			 n = 0, k;

	assert_non_null(c);
	while ((k = evlog_cur_next(c, &rec, &lf, &lt)) != EVLOG_CUR_END) {
		if (k == EVLOG_CUR_LOST) {
			assert_int_equal(lf, want);
			assert_true(lt >= lf);
			*lost += lt - lf + 1;
			want = lt + 1;
			continue;
		}
		assert_int_equal(rec.seq, want);
		j = json_loadb(rec.json, rec.len, 0, &je);
		assert_non_null(j);
		assert_int_equal(json_integer_value(json_object_get(j, "seq")),
		    (json_int_t)rec.seq);
		assert_string_equal(json_string_value(json_object_get(j,
		    "epoch")), evlog_epoch());
		assert_string_equal(rec.event, "EV");
		assert_non_null(rec.vm);
		assert_int_equal(json_integer_value(json_object_get(
		    json_object_get(j, "data"), "i")), (json_int_t)rec.seq);
		json_decref(j);
		want++;
		n++;
	}
	*lastseq = want - 1;
	evlog_cur_free(c);
	return (n);
}

static uint64_t	heard;
static int	heard_calls;

static void
on_append(uint64_t last, void *arg)
{
	heard = last;
	heard_calls++;
}

static void
test_memory_only(void **state)
{
	struct evlog_opts	o;
	uint64_t		lost = 0, last;
	int			n;

	opts(&o, NULL);
	o.mem_bytes = 4096;
	open_log(&o);
	heard = 0;
	heard_calls = 0;
	assert_int_equal(evlog_listen(on_append, NULL), 0);
	assert_int_equal(evlog_last(), 0);
	append_n(100, 1);
	assert_int_equal(evlog_last(), 100);
	/* nothing is trimmed before the listeners heard it */
	assert_int_equal(evlog_mem_first(), 1);
	assert_int_equal(heard, 0);
	run_loop();
	assert_int_equal(heard, 100);
	assert_int_equal(heard_calls, 1);
	/* trimmed to the cap now: the oldest are lost */
	assert_true(evlog_mem_first() > 1);
	n = read_all(0, &lost, &last);
	assert_int_equal(n, 100 - (int)lost);
	assert_int_equal(lost, evlog_mem_first() - 1);
	assert_int_equal(last, 100);
	assert_int_equal(strlen(evlog_epoch()), 16);
}

static void
test_restart_continues(void **state)
{
	struct evlog_opts	o;
	uint64_t		lost = 0, last;
	char			epoch[EVLOG_EPOCH_MAX];

	opts(&o, dir);
	open_log(&o);
	append_n(1000, 1);
	run_loop();
	snprintf(epoch, sizeof epoch, "%s", evlog_epoch());
	/* pending but never written: as if killed in the same pass */
	append_n(5, 1001);
	evlog_close();		/* close writes the pending ones */
	open_log(&o);
	assert_string_equal(evlog_epoch(), epoch);
	assert_int_equal(evlog_last(), 1005);
	assert_int_equal(evlog_first(), 1);
	assert_int_equal(evlog_mem_first(), 0);
	assert_int_equal(read_all(0, &lost, &last), 1005);
	assert_int_equal(lost, 0);
	append_n(10, 1006);
	run_loop();
	assert_int_equal(read_all(990, &lost, &last), 25);
	assert_int_equal(last, 1015);
}

static char *
dir_file(const char *name)
{
	static char	p[512];

	snprintf(p, sizeof p, "%s/%s", dir, name);
	return (p);
}

static char *
seg_path(uint64_t first)
{
	static char	p[512];

	snprintf(p, sizeof p, "%s/%020" PRIu64 ".seg", dir, first);
	return (p);
}

static void
test_torn_tail_cut(void **state)
{
	struct evlog_opts	o;
	struct stat		st;
	uint64_t		lost = 0, last;
	int			fd;

	opts(&o, dir);
	open_log(&o);
	append_n(50, 1);
	run_loop();
	evlog_close();
	assert_int_equal(stat(seg_path(1), &st), 0);
	/* tear the last record: cut 7 bytes off */
	assert_int_equal(truncate(seg_path(1), st.st_size - 7), 0);
	/* and add garbage after it as a torn write would */
	fd = open(seg_path(1), O_WRONLY|O_APPEND);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "\x10\0\0\0garbage", 11), 11);
	close(fd);
	open_log(&o);
	assert_int_equal(evlog_last(), 49);
	assert_int_equal(read_all(0, &lost, &last), 49);
	assert_int_equal(lost, 0);
	/* numbering goes on after the last whole record, on a clean file */
	append_n(1, 50);
	run_loop();
	evlog_close();
	open_log(&o);
	assert_int_equal(evlog_last(), 50);
	assert_int_equal(read_all(0, &lost, &last), 50);
}

static int
count_segs(void)
{
	DIR		*d = opendir(dir);
	struct dirent	*de;
	int		 n = 0;

	assert_non_null(d);
	while ((de = readdir(d)) != NULL)
		if (strstr(de->d_name, ".seg") != NULL)
			n++;
	closedir(d);
	return (n);
}

static void
test_rotation_and_cap(void **state)
{
	struct evlog_opts	o;
	uint64_t		lost = 0, last, dbytes, mbytes;
	size_t			nsegs;
	int			i, n;

	opts(&o, dir);
	o.segment_bytes = 8192;
	o.max_bytes = 40000;
	o.mem_bytes = 2048;
	open_log(&o);
	/* one pass each: rotation happens between writes */
	for (i = 0; i < 40; i++) {
		append_n(25, 1 + i * 25);
		run_loop();
	}
	evlog_stats(&dbytes, &mbytes, &nsegs);
	assert_true(nsegs > 1);
	assert_int_equal((int)nsegs, count_segs());
	assert_true(dbytes <= o.max_bytes);
	assert_true(evlog_first() > 1);
	n = read_all(0, &lost, &last);
	assert_int_equal(last, 1000);
	assert_int_equal((uint64_t)n + lost, 1000);
	assert_int_equal(lost, evlog_first() - 1);
	/* restart: the same */
	evlog_close();
	open_log(&o);
	assert_int_equal(evlog_last(), 1000);
	lost = 0;
	n = read_all(0, &lost, &last);
	assert_int_equal((uint64_t)n + lost, 1000);
}

static void
test_corrupt_middle_segment(void **state)
{
	struct evlog_opts	o;
	uint64_t		lost = 0, last;
	int			i, n, fd;
	uint64_t		second;
	DIR			*d;
	struct dirent		*de;
	char			 names[64][300];
	int			 nn = 0;

	opts(&o, dir);
	o.segment_bytes = 4096;
	open_log(&o);
	for (i = 0; i < 10; i++) {
		append_n(30, 1 + i * 30);
		run_loop();
	}
	evlog_close();
	d = opendir(dir);
	while ((de = readdir(d)) != NULL && nn < 64)
		if (strstr(de->d_name, ".seg") != NULL)
			snprintf(names[nn++], 300, "%s", de->d_name);
	closedir(d);
	assert_true(nn >= 3);
	qsort(names, (size_t)nn, 300, (int (*)(const void *,
	    const void *))strcmp);
	second = strtoull(names[1], NULL, 10);
	/* flip bytes in the middle of the second segment */
	fd = open(seg_path(second), O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, "XXXXXXXX", 8, 300), 8);
	close(fd);
	open_log(&o);
	assert_int_equal(evlog_last(), 300);
	n = read_all(0, &lost, &last);
	assert_int_equal(last, 300);
	assert_true(lost > 0);
	assert_int_equal((uint64_t)n + lost, 300);
	/* and reading from inside the bad segment says so too */
	lost = 0;
	n = read_all(second, &lost, &last);
	assert_true(lost > 0);
	assert_int_equal(last, 300);
}

/* The frames' CRC is IEEE crc32 (zlib's, cksum -o 3's): known values,
   and every length around the 8-byte steps. */

/* Write-ahead mode: the loop writes DIR/events.wal.N, a thread the
   segments. A broker killed before the thread wrote what subscribers
   were sent loses none of it: the next open takes it from the WAL. */
static void
test_wal_after_kill(void **state)
{
	struct evlog_opts	o;
	uint64_t		lost = 0, last;
	pid_t			pid;
	int			st, fd;

	opts(&o, dir);
	o.wal_dir = dir;
	if ((pid = fork()) == 0) {
		event_reinit(base);
		open_log(&o);
		append_n(300, 1);
		run_loop();	/* heard: in the WAL file */
		_exit(0);	/* as kill -9: no close */
	}
	assert_true(pid > 0);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	/* the writer may or may not have got there: as if it had not, and
	   a torn frame after the WAL's last (a write cut by the kill) */
	assert_int_equal(truncate(seg_path(1), 0), 0);
	fd = open(dir_file("events.wal.0"), O_WRONLY|O_APPEND);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "\x40\0\0\0torn", 8), 8);
	close(fd);
	open_log(&o);
	assert_int_equal(evlog_last(), 300);
	assert_int_equal(evlog_mem_first(), 0);	/* all from the segment */
	assert_int_equal(read_all(0, &lost, &last), 300);
	assert_int_equal(lost, 0);
	append_n(10, 301);
	run_loop();
	evlog_close();
	/* a clean close leaves no WAL and everything in the segments */
	assert_int_equal(access(dir_file("events.wal.0"), F_OK), -1);
	opts(&o, dir);
	open_log(&o);
	assert_int_equal(read_all(0, &lost, &last), 310);
	assert_int_equal(lost, 0);
}

/* The writer thread rotates segments; the loop learns of them when it
   reaps, and cursors read across them and memory with no gap. */
static void
test_wal_rotation(void **state)
{
	struct evlog_opts	o;
	uint64_t		lost = 0, last;
	int			i;

	opts(&o, dir);
	o.wal_dir = dir;
	o.segment_bytes = 4096;
	o.mem_bytes = 1;
	open_log(&o);
	for (i = 0; i < 20; i++) {
		append_n(100, 1 + i * 100);
		run_loop();
	}
	assert_int_equal(read_all(0, &lost, &last), 2000);
	assert_int_equal(lost, 0);
	evlog_close();
	assert_true(count_segs() > 10);
	open_log(&o);
	assert_int_equal(evlog_last(), 2000);
	assert_int_equal(read_all(0, &lost, &last), 2000);
	assert_int_equal(lost, 0);
}

static void
test_crc32(void **state)
{
	char	buf[64];
	size_t	i;
	uint32_t a, b;

	assert_int_equal(evlog_crc32(0, "123456789", 9), 0xcbf43926u);
	assert_int_equal(evlog_crc32(0, "", 0), 0);
	assert_int_equal(evlog_crc32(0, "The quick brown fox jumps over the "
	    "lazy dog", 43), 0x414fa339u);
	for (i = 0; i < sizeof buf; i++)
		buf[i] = (char)(i * 7 + 1);
	/* split anywhere: the same as in one go */
	for (i = 0; i <= sizeof buf; i++) {
		a = evlog_crc32(evlog_crc32(0, buf, i), buf + i,
		    sizeof buf - i);
		b = evlog_crc32(0, buf, sizeof buf);
		assert_int_equal(a, b);
	}
}

static void
test_epoch_lost(void **state)
{
	struct evlog_opts	o;
	char			epoch[EVLOG_EPOCH_MAX], p[512];

	opts(&o, dir);
	open_log(&o);
	append_n(10, 1);
	run_loop();
	snprintf(epoch, sizeof epoch, "%s", evlog_epoch());
	evlog_close();
	snprintf(p, sizeof p, "%s/epoch", dir);
	assert_int_equal(unlink(p), 0);
	open_log(&o);
	assert_string_not_equal(evlog_epoch(), epoch);
	/* numbering goes on; nothing of the old epoch is served */
	assert_int_equal(evlog_last(), 10);
	assert_int_equal(evlog_first(), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_memory_only, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_restart_continues, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_torn_tail_cut, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_rotation_and_cap, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_middle_segment,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_epoch_lost, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_wal_after_kill, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_wal_rotation, setup,
		    teardown),
		cmocka_unit_test(test_crc32),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
