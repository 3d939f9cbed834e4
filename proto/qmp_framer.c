/*
 * Incremental QMP stream framer.
 *
 * The buffer holds [off, len) unconsumed bytes; the first 'scan' of them
 * are known to hold no LF, so bytes that arrive one at a time are searched
 * once, not once per arrival. Consuming a line only moves 'off'; the bytes
 * are moved down (memmove) only when the tail has no room for the next read
 * and moving avoids a reallocation, so each byte is moved at most once
 * while it waits for its LF. The buffer grows geometrically but never past
 * the limit plus one read: a peer cannot make us hold a line longer than
 * max (plus its CR).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/qmp_framer.h"
#include "proto/qmp_jstream.h"

/* The first allocation: a QMP reply to query-status fits many times over,
   and most monitors never need more. */
#define QMP_FRAMER_INITIAL	4096

/* Reset keeps a buffer this small for the next connection. */
#define QMP_FRAMER_KEEP		65536

void
qmp_framer_init(struct qmp_framer *f, size_t max)
{
	memset(f, 0, sizeof *f);
	f->max = max != 0 ? max : QMP_FRAMER_DEFAULT_MAX;
}

void
qmp_framer_free(struct qmp_framer *f)
{
	free(f->buf);
	f->buf = NULL;
	f->off = f->len = f->cap = f->scan = 0;
	f->broken = 0;
}

void
qmp_framer_reset(struct qmp_framer *f)
{
	/* One huge message must not pin its memory across reconnects. */
	if (f->cap > QMP_FRAMER_KEEP) {
		free(f->buf);
		f->buf = NULL;
		f->cap = 0;
	}
	f->off = f->len = f->scan = 0;
	f->broken = 0;
}

size_t
qmp_framer_pending(const struct qmp_framer *f)
{
	return (f->len - f->off);
}

/*
 * Can a line whose first 'n' bytes (no LF among them) still end within
 * the limit? Only if it fits, or if it is max bytes plus the CR of a CRLF.
 */
static int
qmp_framer_over(const struct qmp_framer *f, size_t n)
{
	if (n <= f->max)
		return (0);
	if (n == f->max + 1 && f->buf[f->off + f->max] == '\r')
		return (0);
	return (1);
}

/* Extend 'scan' over the bytes not searched yet. Returns 1 if an LF ends
   the first line, 0 if all buffered bytes are one partial line. */
static int
qmp_framer_scan(struct qmp_framer *f)
{
	char	*start = f->buf + f->off, *lf;
	size_t	 n = f->len - f->off;

	lf = memchr(start + f->scan, '\n', n - f->scan);
	if (lf == NULL) {
		f->scan = n;
		return (0);
	}
	f->scan = lf - start;
	return (1);
}

size_t
qmp_buf_room(char **buf, size_t *cap, size_t *off, size_t *len, size_t min,
    size_t initial, size_t hard)
{
	size_t	 pending = *len - *off, want, ncap, shift = *off;
	char	*nbuf;

	if (*cap - *len >= min)
		return (0);
	if (min > SIZE_MAX - pending)
		return ((size_t)-1);
	want = pending + min;
	if (shift != 0 && want <= *cap)
		memmove(*buf, *buf + shift, pending);
	else {
		ncap = *cap != 0 ? *cap : initial;
		while (ncap < want && ncap <= SIZE_MAX / 2)
			ncap *= 2;
		if (ncap > hard)
			ncap = hard;
		if (ncap < want)
			ncap = want;
		if (shift == 0) {
			if ((nbuf = realloc(*buf, ncap)) == NULL)
				return ((size_t)-1);
		} else {
			/* copy only the live bytes, once */
			if ((nbuf = malloc(ncap)) == NULL)
				return ((size_t)-1);
			memcpy(nbuf, *buf + shift, pending);
			free(*buf);
		}
		*buf = nbuf;
		*cap = ncap;
	}
	*off -= shift;
	*len -= shift;
	return (shift);
}

char *
qmp_framer_reserve(struct qmp_framer *f, size_t min, size_t *avail)
{
	size_t	hard;

	if (avail != NULL)
		*avail = 0;
	if (f->broken)
		return (NULL);
	if (f->off == f->len)
		f->off = f->len = f->scan = 0;
	if (f->buf != NULL) {
		qmp_framer_scan(f);
		if (qmp_framer_over(f, f->scan))
			return (NULL);
	}
	if (min == 0)
		min = 1;
	/* Double, but stop at what one line plus one read can need: beyond
	   it the stream is broken anyway. 'scan' counts from off: no shift. */
	hard = f->max + 2 + min;
	if (hard < f->max)
		hard = SIZE_MAX;
	if (qmp_buf_room(&f->buf, &f->cap, &f->off, &f->len, min,
	    QMP_FRAMER_INITIAL, hard) == (size_t)-1)
		return (NULL);
	if (avail != NULL)
		*avail = f->cap - f->len;
	return (f->buf + f->len);
}

void
qmp_framer_commit(struct qmp_framer *f, size_t n)
{
	/* A caller bug must not let len run past the buffer. */
	if (n > f->cap - f->len)
		n = f->cap - f->len;
	f->len += n;
}

int
qmp_framer_feed(struct qmp_framer *f, const void *data, size_t n)
{
	char	*p;

	if (f->broken)
		return (-1);
	if (n == 0)
		return (0);
	if ((p = qmp_framer_reserve(f, n, NULL)) == NULL)
		return (-1);
	memcpy(p, data, n);
	qmp_framer_commit(f, n);
	return (0);
}

/* Lines of only blanks are skipped like empty ones (a human on socat). */
static int
qmp_framer_blank(const char *s, size_t n)
{
	size_t	i;

	for (i = 0; i < n; i++) {
		if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
			return (0);
	}
	return (1);
}

enum qmp_frame_rc
qmp_framer_next(struct qmp_framer *f, json_t **out, struct qmp_error *err)
{
	char	*line;
	size_t	 raw, n;
	json_t	*obj;

	*out = NULL;
	if (f->broken) {
		qmp_error_set(err, QMP_CLS_GENERIC,
		    "QMP stream is broken by an earlier error");
		return (QMP_FRAME_BROKEN);
	}
	for (;;) {
		if (f->off == f->len) {
			/* Everything consumed: start over at no cost. */
			f->off = f->len = f->scan = 0;
			return (QMP_FRAME_NONE);
		}
		if (!qmp_framer_scan(f)) {
			if (qmp_framer_over(f, f->scan))
				goto toolong;
			return (QMP_FRAME_NONE);
		}
		line = f->buf + f->off;
		raw = f->scan;
		n = raw;
		if (n > 0 && line[n - 1] == '\r')
			n--;
		if (n > f->max)
			goto toolong;
		f->off += raw + 1;
		f->scan = 0;
		if (n == 0 || ((line[0] == ' ' || line[0] == '\t') &&
		    qmp_framer_blank(line, n)))
			continue;
		/* The line stays valid until the next reserve. */
		obj = qmp_parse_line(line, raw, err);
		if (obj == NULL)
			return (QMP_FRAME_BAD);
		*out = obj;
		return (QMP_FRAME_MSG);
	}

toolong:
	f->broken = 1;
	qmp_error_set(err, QMP_CLS_GENERIC,
	    "QMP message exceeds the limit of %zu bytes", f->max);
	return (QMP_FRAME_BROKEN);
}

/* Whether jansson refused a line only for what QEMU's grammar reads. */
static int
qmp_parse_line_qemu(const json_error_t *jerr)
{
	switch (json_error_code(jerr)) {
	case json_error_numeric_overflow:
		/* integers only ("too big [negative] integer"): QEMU
		   writes no real number jansson cannot read */
		return (strncmp(jerr->text, "too big ", 8) == 0);
	case json_error_null_character:
	case json_error_null_byte_in_key:
		return (1);
	default:
		return (0);
	}
}

/*
 * The line through QEMU's whole grammar (qmp_jstream: lexer, streamer,
 * parser), not its parser alone: jansson stopped at its first error, and
 * the parser trusts its input to be lexed (it would take a raw control
 * character or NUL in a string, which QEMU's lexer refuses). One object
 * and only blanks around it, or NULL.
 */
static json_t *
qmp_parse_line_stream(const char *s, size_t n)
{
	struct qmp_jstream	 js;
	struct qmp_error	 qerr;
	json_t			*obj = NULL, *more = NULL;

	qmp_jstream_init(&js, n + 1);
	if (qmp_jstream_feed(&js, s, n) == 0 &&
	    qmp_jstream_next(&js, &obj, &qerr) == QMP_FRAME_MSG &&
	    (qmp_jstream_next(&js, &more, &qerr) != QMP_FRAME_NONE ||
	    qmp_jstream_pending(&js) != 0)) {
		json_decref(more);
		json_decref(obj);
		obj = NULL;
	}
	qmp_jstream_free(&js);
	return (obj);
}

json_t *
qmp_parse_line(const char *s, size_t n, struct qmp_error *err)
{
	json_error_t	 jerr;
	json_t		*obj;

	if (n > 0 && s[n - 1] == '\r')
		n--;
	/*
	 * jansson refuses NUL bytes, invalid UTF-8 and nesting deeper than
	 * 2048 (a 100k-deep line costs no stack), and duplicate keys are
	 * refused as QEMU refuses them, so that we never read a different
	 * command than QEMU would.
	 */
	obj = json_loadb(s, n, JSON_REJECT_DUPLICATES, &jerr);
	/*
	 * What jansson cannot hold and QEMU writes: an integer past int64
	 * (a uint64 parameter a client set, echoed by a query) or U+0000 in
	 * a string or key (QEMU's own text of what a client sent). QEMU's
	 * grammar takes those lines, as QMP_OUT_U64_KEY and "\xC0\x80",
	 * which qmp_out writes back as QEMU wrote them. Rare: the fast path
	 * stays jansson's. Told by jansson's error code, not its text: the
	 * text quotes the line ("near '...'"), so a line holding "too big"
	 * would pass for one.
	 */
	if (obj == NULL && qmp_parse_line_qemu(&jerr))
		obj = qmp_parse_line_stream(s, n);
	if (obj == NULL) {
		qmp_error_set(err, QMP_CLS_GENERIC, "JSON parse error, %s",
		    jerr.text);
		return (NULL);
	}
	if (!json_is_object(obj)) {
		json_decref(obj);
		qmp_error_set(err, QMP_CLS_GENERIC,
		    "QMP input must be a JSON object");
		return (NULL);
	}
	return (obj);
}
