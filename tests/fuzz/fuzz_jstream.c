/*
 * libFuzzer harness for the QEMU-grammar reader (proto/qmp_jstream.h).
 *
 * The first bytes choose the size limit and the split points; the rest is
 * the stream, read twice: in data-driven pieces (alternating feed and
 * reserve/commit) and in one piece. Both must give the same answers: how
 * bytes are split never changes what QEMU would answer. The buffer never
 * holds more than one message plus one read. Every message is an object
 * that QEMU's parser, given its compact dump, reads back unchanged.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/qmp_jstream.h"

#define MAXOUT	4096

struct result {
	int	 rc[MAXOUT];
	json_t	*msg[MAXOUT];
	char	 desc[MAXOUT][64];
	size_t	 n;
	int	 broken;
};

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static void
check_msg(json_t *m)
{
	struct qmp_error	 err;
	json_t			*back;
	char			*s;

	if (!json_is_object(m))
		__builtin_trap();
	/* what jansson writes, QEMU's parser reads as the same value
	   (a U+0000 only in "id", where the reader let it in) */
	if ((s = json_dumps(m, JSON_COMPACT)) == NULL)
		__builtin_trap();
	back = qmp_json_parse(s, strlen(s), &err);
	if (back != NULL && !json_equal(back, m))
		__builtin_trap();
	json_decref(back);
	free(s);
}

static int
drain(struct qmp_jstream *f, struct result *r)
{
	struct qmp_error	 err;
	json_t			*m;
	enum qmp_frame_rc	 rc;

	for (;;) {
		err.desc[0] = '\0';
		rc = qmp_jstream_next(f, &m, &err);
		if (rc == QMP_FRAME_NONE)
			return (0);
		if ((rc == QMP_FRAME_MSG) != (m != NULL))
			__builtin_trap();
		if (rc != QMP_FRAME_MSG && err.desc[0] == '\0')
			__builtin_trap();
		if (r->n < MAXOUT) {
			r->rc[r->n] = rc;
			r->msg[r->n] = m;
			strncpy(r->desc[r->n], rc == QMP_FRAME_MSG ? "" :
			    err.desc, sizeof r->desc[0] - 1);
			r->desc[r->n][sizeof r->desc[0] - 1] = '\0';
			r->n++;
		} else
			json_decref(m);
		if (rc == QMP_FRAME_BROKEN) {
			r->broken = 1;
			return (1);
		}
	}
}

static void
result_free(struct result *r)
{
	size_t	i;

	for (i = 0; i < r->n; i++)
		json_decref(r->msg[i]);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct result	 split, whole;
	struct qmp_jstream	 f;
	size_t			 max, i, n, avail, maxn = 0;
	uint32_t		 seed;
	char			*p;

	if (size < 3)
		return (0);
	max = data[0] == 0 ? 0 : (size_t)data[0] * 4;
	seed = (uint32_t)data[1] << 8 | data[2];
	data += 3;
	size -= 3;
	memset(&split, 0, sizeof split);
	memset(&whole, 0, sizeof whole);

	qmp_jstream_init(&f, max);
	for (i = 0; i < size; i += n) {
		seed ^= seed << 13;
		seed ^= seed >> 17;
		seed ^= seed << 5;
		n = (seed & 0xff) == 0 ? size - i : 1 + (seed >> 8) % 64;
		if (n > size - i)
			n = size - i;
		if (n > maxn)
			maxn = n;
		if (seed & 0x100000) {
			p = qmp_jstream_reserve(&f, n, &avail);
			if (p == NULL) {
				drain(&f, &split);
				break;
			}
			if (avail < n)
				__builtin_trap();
			memcpy(p, data + i, n);
			qmp_jstream_commit(&f, n);
		} else if (qmp_jstream_feed(&f, data + i, n) != 0) {
			drain(&f, &split);
			break;
		}
		/* never more than a message and one read */
		if (f.cap > f.max + maxn + 4096)
			__builtin_trap();
		if (drain(&f, &split))
			break;
	}
	if (!split.broken)
		drain(&f, &split);
	qmp_jstream_free(&f);

	qmp_jstream_init(&f, max);
	if (size > 0 && qmp_jstream_feed(&f, data, size) != 0)
		__builtin_trap();
	drain(&f, &whole);
	qmp_jstream_free(&f);

	/* a broken stream may break earlier in pieces than whole (the
	   limit counts what is buffered): compare up to the break */
	if (!split.broken && !whole.broken && split.n != whole.n)
		__builtin_trap();
	for (i = 0; i < split.n && i < whole.n; i++) {
		if (split.rc[i] == QMP_FRAME_BROKEN ||
		    whole.rc[i] == QMP_FRAME_BROKEN)
			break;
		if (split.rc[i] != whole.rc[i] ||
		    strcmp(split.desc[i], whole.desc[i]) != 0)
			__builtin_trap();
		if (split.rc[i] == QMP_FRAME_MSG) {
			if (!json_equal(split.msg[i], whole.msg[i]))
				__builtin_trap();
			check_msg(split.msg[i]);
		}
	}
	result_free(&split);
	result_free(&whole);
	return (0);
}
