/*
 * libFuzzer harness for the QMP stream framer.
 *
 * The first bytes choose the size limit and the split points; the rest is
 * the stream. The same stream is framed twice, once in data-driven pieces
 * (alternating feed and reserve/commit) and once in one piece, and both
 * must give the same sequence of results: how bytes are split must never
 * change what comes out. Every message is then classified, checked as a
 * client command, and dumped and parsed back unchanged.
 */
#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/qmp_framer.h"
#include "proto/qmp_msg.h"
#include "proto/qmp_out.h"
#include "tests/fuzz/fuzz_util.h"

#define MAXOUT	4096

struct result {
	int	 rc[MAXOUT];
	json_t	*msg[MAXOUT];
	size_t	 n;
	int	 broken;
};

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static void
check_msg(json_t *m)
{
	struct qmp_error	 err;
	struct qmp_version	 v;
	enum qmp_msg_type	 t;
	const char		*name;
	struct qmp_out		 o;
	json_t			*args, *id, *back;
	int			 ok;

	t = qmp_msg_classify(m);
	if (strcmp(qmp_msg_type_name(t), "unknown") == 0)
		__builtin_trap();
	ok = qmp_cmd_parse(m, &name, &args, &id, &err) == 0;
	if (ok && (name == NULL || t != QMP_MSG_COMMAND))
		__builtin_trap();
	if (!ok) {
		if (err.desc[0] == '\0')
			__builtin_trap();
		/* The error reply we would send must be buildable. */
		json_t *e = qmp_error_json(&err);
		if (e == NULL)
			__builtin_trap();
		json_decref(e);
	}
	if ((qmp_greeting_parse(m, &v) == 0) != (json_is_object(
	    json_object_get(m, "QMP"))))
		__builtin_trap();
	if (t == QMP_MSG_EVENT && qmp_event_name(m) == NULL)
		__builtin_trap();
	if (t == QMP_MSG_ERROR) {
		qmp_error_from_json(&err, json_object_get(m, "error"));
		json_t *e = qmp_error_json(&err);
		if (e == NULL)
			__builtin_trap();
		json_decref(e);
	}
	if (has_nul(m))
		return;
	/* written as the daemon writes (QEMU's text: U+0000, which
	   jansson's dump refuses, as \u0000), it reads back the same */
	qmp_out_init(&o);
	qmp_out_json(&o, m, QMP_OUT_COMPACT);
	qmp_out_raw(&o, "\n", 1);
	if (o.failed)
		__builtin_trap();
	back = qmp_parse_line(o.buf, o.len, &err);
	if (back == NULL || !json_equal(back, m))
		__builtin_trap();
	json_decref(back);
	qmp_out_free(&o);
}

/* Drain; returns 1 once the stream is broken. */
static int
drain(struct qmp_framer *f, struct result *r)
{
	struct qmp_error	 err;
	json_t			*m;
	enum qmp_frame_rc	 rc;

	for (;;) {
		rc = qmp_framer_next(f, &m, &err);
		if (rc == QMP_FRAME_NONE)
			return (0);
		if ((rc == QMP_FRAME_MSG) != (m != NULL))
			__builtin_trap();
		if (rc != QMP_FRAME_MSG && err.desc[0] == '\0')
			__builtin_trap();
		if (r->n < MAXOUT) {
			r->rc[r->n] = rc;
			r->msg[r->n] = m;
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
	struct qmp_framer	 f;
	size_t			 max, i, n, avail, maxn = 0;
	uint32_t		 seed;
	char			*p;

	if (size < 3)
		return (0);
	/* Small limits reach the edges; 0 means the default. */
	max = data[0] == 0 ? 0 : (size_t)data[0] * 4;
	seed = (uint32_t)data[1] << 8 | data[2];
	data += 3;
	size -= 3;
	memset(&split, 0, sizeof split);
	memset(&whole, 0, sizeof whole);

	qmp_framer_init(&f, max);
	for (i = 0; i < size; i += n) {
		/* xorshift: piece sizes 1..64, sometimes one big piece. */
		seed ^= seed << 13;
		seed ^= seed >> 17;
		seed ^= seed << 5;
		n = (seed & 0xff) == 0 ? size - i : 1 + (seed >> 8) % 64;
		if (n > size - i)
			n = size - i;
		if (n > maxn)
			maxn = n;
		if (seed & 0x100000) {
			p = qmp_framer_reserve(&f, n, &avail);
			if (p == NULL) {
				drain(&f, &split);
				break;
			}
			if (avail < n)
				__builtin_trap();
			memcpy(p, data + i, n);
			qmp_framer_commit(&f, n);
		} else if (qmp_framer_feed(&f, data + i, n) != 0) {
			drain(&f, &split);
			break;
		}
		/* Never more than a line, its CR and one read. */
		if (f.cap > f.max + 2 + maxn)
			__builtin_trap();
		if (drain(&f, &split))
			break;
	}
	if (!split.broken)
		drain(&f, &split);
	qmp_framer_free(&f);

	qmp_framer_init(&f, max);
	if (size > 0 && qmp_framer_feed(&f, data, size) != 0)
		__builtin_trap();
	drain(&f, &whole);
	qmp_framer_free(&f);

	if (split.n != whole.n)
		__builtin_trap();
	for (i = 0; i < split.n; i++) {
		if (split.rc[i] != whole.rc[i])
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
