/*
 * QEMU's output text; see qmp_out.h.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/qmp_out.h"

#define QO_BUCKETS	512	/* QDICT_BUCKET_MAX */

void
qmp_out_init(struct qmp_out *o)
{
	o->buf = o->stack;
	o->len = 0;
	o->cap = sizeof o->stack;
	o->failed = false;
}

void
qmp_out_free(struct qmp_out *o)
{
	if (o->buf != o->stack)
		free(o->buf);
	qmp_out_init(o);
}

static bool
qo_room(struct qmp_out *o, size_t n)
{
	size_t	 cap;
	char	*b;

	if (o->failed)
		return (false);
	if (o->cap - o->len >= n)
		return (true);
	cap = o->cap;
	while (cap - o->len < n) {
		if (cap > SIZE_MAX / 2) {
			o->failed = true;
			return (false);
		}
		cap *= 2;
	}
	if (o->buf == o->stack) {
		if ((b = malloc(cap)) != NULL)
			memcpy(b, o->buf, o->len);
	} else
		b = realloc(o->buf, cap);
	if (b == NULL) {
		o->failed = true;
		return (false);
	}
	o->buf = b;
	o->cap = cap;
	return (true);
}

void
qmp_out_raw(struct qmp_out *o, const char *s, size_t n)
{
	if (!qo_room(o, n))
		return;
	memcpy(o->buf + o->len, s, n);
	o->len += n;
}

#define QO_LIT(o, s)	qmp_out_raw((o), (s), sizeof (s) - 1)

/*
 * QEMU's mod_utf8_codepoint over at most n bytes: the code point, or -1
 * for an invalid sequence (*used then says what to skip, as QEMU skips
 * it). "\xC0\x80" is U+0000, and so is a NUL byte here: jansson strings
 * carry the U+0000 an id may hold as a NUL.
 */
long
qmp_utf8_cp(const unsigned char *p, size_t n, size_t *used)
{
	static const long	 min_cp[5] = { 0x80, 0x800, 0x10000, 0x200000,
	    0x4000000 };
	unsigned		 b = p[0], mask, len, i;
	long			 cp;

	*used = 1;
	if (b < 0x80)
		return (b);
	if (b >= 0xfe || (b & 0x40) == 0)
		return (-1);
	len = 0;
	for (mask = 0x80; b & mask; mask >>= 1)
		len++;
	cp = b & (mask - 1);
	for (i = 1; i < len; i++) {
		if (i >= n || (p[i] & 0xc0) != 0x80) {
			*used = i;
			return (-1);
		}
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	*used = len;
	if (cp > 0x10ffff)
		return (-1);
	if ((cp >= 0xfdd0 && cp <= 0xfdef) || (cp & 0xfffe) == 0xfffe)
		return (-1);
	if (cp >= 0xd800 && cp <= 0xdfff)
		return (-1);
	if (cp < min_cp[len - 2] && !(len == 2 && cp == 0))
		return (-1);
	return (cp);
}

static void
qo_string(struct qmp_out *o, const char *s, size_t n)
{
	const unsigned char	*p = (const unsigned char *)s;
	const unsigned char	*e = p + n, *run;
	char			 esc[16];
	size_t			 used;
	long			 cp;
	int			 k;

	QO_LIT(o, "\"");
	while (p < e) {
		/* printable ASCII in runs: the common case */
		for (run = p; p < e && *p >= 0x20 && *p < 0x7f && *p != '"' &&
		    *p != '\\'; p++)
			;
		if (p > run)
			qmp_out_raw(o, (const char *)run, (size_t)(p - run));
		if (p >= e)
			break;
		cp = qmp_utf8_cp(p, (size_t)(e - p), &used);
		p += used;
		switch (cp) {
		case '"': QO_LIT(o, "\\\""); continue;
		case '\\': QO_LIT(o, "\\\\"); continue;
		case '\b': QO_LIT(o, "\\b"); continue;
		case '\f': QO_LIT(o, "\\f"); continue;
		case '\n': QO_LIT(o, "\\n"); continue;
		case '\r': QO_LIT(o, "\\r"); continue;
		case '\t': QO_LIT(o, "\\t"); continue;
		}
		if (cp < 0)
			cp = 0xfffd;
		if (cp > 0xffff)
			k = snprintf(esc, sizeof esc, "\\u%04lX\\u%04lX",
			    0xd800 + ((cp - 0x10000) >> 10),
			    0xdc00 + ((cp - 0x10000) & 0x3ff));
		else
			k = snprintf(esc, sizeof esc, "\\u%04lX", cp);
		qmp_out_raw(o, esc, (size_t)k);
	}
	QO_LIT(o, "\"");
}

/* QEMU's tdb_hash, reduced to its QDict bucket. */
static unsigned
qo_bucket(const char *key, size_t n)
{
	uint32_t	v = 0x238F13AFu * (uint32_t)n;
	size_t		i;

	for (i = 0; i < n; i++)
		v += (uint32_t)(unsigned char)key[i] << (i * 5 % 24);
	return ((1103515243u * v + 12345u) % QO_BUCKETS);
}

struct qo_member {
	const char	*key;
	size_t		 klen;
	json_t		*val;
	unsigned	 bucket, pos;
};

static int
qo_member_cmp(const void *a, const void *b)
{
	const struct qo_member	*x = a, *y = b;

	if (x->bucket != y->bucket)
		return (x->bucket < y->bucket ? -1 : 1);
	return (x->pos > y->pos ? -1 : x->pos < y->pos);
}

static void
qo_member(struct qmp_out *o, bool first, const char *key, size_t klen,
    const json_t *val, int flags)
{
	if (!first)
		qmp_out_raw(o, ", ", flags & QMP_OUT_COMPACT ? 1 : 2);
	qo_string(o, key, klen);
	qmp_out_raw(o, ": ", flags & QMP_OUT_COMPACT ? 1 : 2);
	qmp_out_json(o, val, flags);
}

int
qmp_out_qdict_foreach(const json_t *j, qmp_out_member_fn *fn, void *arg)
{
	struct qo_member	 stack[16], *m;
	size_t			 n = json_object_size(j), i = 0;
	void			*it;
	int			 rc = 0;

	if (n <= sizeof stack / sizeof stack[0])
		m = stack;
	else if ((m = calloc(n, sizeof *m)) == NULL)
		return (-1);
	for (it = json_object_iter((json_t *)j); it != NULL && i < n;
	    it = json_object_iter_next((json_t *)j, it), i++) {
		m[i].key = json_object_iter_key(it);
		m[i].klen = json_object_iter_key_len(it);
		m[i].val = json_object_iter_value(it);
		m[i].bucket = qo_bucket(m[i].key, m[i].klen);
		m[i].pos = (unsigned)i;
	}
	qsort(m, i, sizeof *m, qo_member_cmp);
	for (n = i, i = 0; i < n && rc == 0; i++)
		rc = fn(m[i].key, m[i].klen, m[i].val, arg);
	if (m != stack)
		free(m);
	return (rc);
}

struct qo_obj {
	struct qmp_out	*o;
	int		 flags;
	bool		 first;
};

static int
qo_obj_member(const char *key, size_t klen, json_t *val, void *arg)
{
	struct qo_obj	*w = arg;

	qo_member(w->o, w->first, key, klen, val, w->flags);
	w->first = false;
	return (0);
}

static void
qo_object(struct qmp_out *o, const json_t *j, int flags)
{
	struct qo_obj	 w = { o, flags, true };
	const char	*key;
	size_t		 klen, n = json_object_size(j), i = 0;
	json_t		*val;

	if (n == 1 && (val = json_object_get(j, QMP_OUT_U64_KEY)) != NULL &&
	    json_is_string(val)) {
		qmp_out_raw(o, json_string_value(val), json_string_length(val));
		return;
	}
	QO_LIT(o, "{");
	if (!(flags & QMP_OUT_PARSED) || n < 2) {
		json_object_keylen_foreach((json_t *)j, key, klen, val) {
			qo_member(o, i == 0, key, klen, val, flags);
			i++;
		}
	} else if (qmp_out_qdict_foreach(j, qo_obj_member, &w) == -1)
		o->failed = true;
	QO_LIT(o, "}");
}

void
qmp_out_string(struct qmp_out *o, const char *s, size_t n)
{
	qo_string(o, s, n);
}

void
qmp_out_json(struct qmp_out *o, const json_t *j, int flags)
{
	char	num[40];
	size_t	i, n;
	int	k;

	switch (json_typeof(j)) {
	case JSON_OBJECT:
		qo_object(o, j, flags);
		return;
	case JSON_ARRAY:
		QO_LIT(o, "[");
		n = json_array_size(j);
		for (i = 0; i < n; i++) {
			if (i > 0)
				qmp_out_raw(o, ", ",
				    flags & QMP_OUT_COMPACT ? 1 : 2);
			qmp_out_json(o, json_array_get(j, i), flags);
		}
		QO_LIT(o, "]");
		return;
	case JSON_STRING:
		qo_string(o, json_string_value(j), json_string_length(j));
		return;
	case JSON_INTEGER:
		k = snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT,
		    json_integer_value(j));
		qmp_out_raw(o, num, (size_t)k);
		return;
	case JSON_REAL:
		/* qnum_to_string: 17 digits, no ".0" added, "e+19" kept */
		k = snprintf(num, sizeof num, "%.17g", json_real_value(j));
		/* to QEMU a real stays one (jansson's ".0"): 2.0 is no int */
		if ((flags & QMP_OUT_COMPACT) && k > 0 &&
		    strpbrk(num, ".eni") == NULL && k + 2 < (int)sizeof num) {
			memcpy(num + k, ".0", 3);
			k += 2;
		}
		qmp_out_raw(o, num, (size_t)k);
		return;
	case JSON_TRUE:
		QO_LIT(o, "true");
		return;
	case JSON_FALSE:
		QO_LIT(o, "false");
		return;
	case JSON_NULL:
		QO_LIT(o, "null");
		return;
	}
}

/* QDict order puts "return" (bucket 401) before "id" (486), and "id"
   before "error" (489). */
void
qmp_out_reply(struct qmp_out *o, const json_t *ret, const json_t *error,
    const json_t *id)
{
	if (ret != NULL) {
		QO_LIT(o, "{\"return\": ");
		qmp_out_json(o, ret, 0);
		if (id != NULL) {
			QO_LIT(o, ", \"id\": ");
			qmp_out_json(o, id, QMP_OUT_PARSED);
		}
	} else {
		QO_LIT(o, "{");
		if (id != NULL) {
			QO_LIT(o, "\"id\": ");
			qmp_out_json(o, id, QMP_OUT_PARSED);
			QO_LIT(o, ", ");
		}
		QO_LIT(o, "\"error\": ");
		qmp_out_json(o, error, 0);
	}
	QO_LIT(o, "}\r\n");
}

char *
qmp_dump_qemu(const json_t *j, size_t *len)
{
	struct qmp_out	 o;
	char		*s;

	qmp_out_init(&o);
	qmp_out_json(&o, j, 0);
	QO_LIT(&o, "\r\n");
	if (o.failed || (s = malloc(o.len + 1)) == NULL) {
		qmp_out_free(&o);
		return (NULL);
	}
	memcpy(s, o.buf, o.len);
	s[o.len] = '\0';
	if (len != NULL)
		*len = o.len;
	qmp_out_free(&o);
	return (s);
}
