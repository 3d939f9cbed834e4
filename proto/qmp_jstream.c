/*
 * Incremental reader of client input with QEMU 7.2's grammar.
 *
 * Three stages, as in QEMU, written for this broker (the behaviour is
 * QEMU's, checked against the 7.2 binary; see qmp_jstream.h):
 *
 * The lexer (js_lex) is a state machine over bytes. Strings accept
 * 0x20..0xFD; any other byte in a string, and any byte that starts no
 * token, is a lexical error whose token is every byte of the token so far
 * plus the bad one. After an error the lexer skips bytes until a
 * structural character, an ASCII control character other than tab, or
 * 0xFE/0xFF (not consumed), then starts over. Numbers and keywords end
 * at the first byte that cannot continue them (not consumed).
 *
 * The streamer (js_token) counts braces and brackets and enforces the
 * limits; a message is complete when neither count is positive (a count
 * below zero ends it too). A lexical error or a limit throws away the
 * tokens gathered so far and answers with an error.
 *
 * The parser (qmp_json_parse) is recursive descent over the message's
 * tokens with QEMU's first-error-wins texts, building jansson values
 * directly (plain strings and keys straight from the buffer): two to
 * three times faster than json_loadb on the same bytes, which also reads
 * some inputs otherwise than QEMU ("0e5", noncharacters, big integers).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/qmp_jstream.h"
#include "proto/qmp_out.h"

#define JS_INITIAL	4096
#define JS_KEEP		65536

enum js_state {
	JS_START,
	JS_RECOVERY,
	JS_DQ,
	JS_DQ_ESC,
	JS_SQ,
	JS_SQ_ESC,
	JS_ZERO,
	JS_SIGN,
	JS_DIGITS,
	JS_MANT,
	JS_MANT_DIGITS,
	JS_EXP_E,
	JS_EXP_SIGN,
	JS_EXP_DIGITS,
	JS_KEYWORD,
};

enum js_tok {
	JT_NONE,
	JT_LCURLY,
	JT_RCURLY,
	JT_LSQUARE,
	JT_RSQUARE,
	JT_COLON,
	JT_COMMA,
	JT_INTEGER,
	JT_FLOAT,
	JT_KEYWORD,
	JT_STRING,
	JT_ERROR,
};


enum js_event {
	JE_NONE,
	JE_MSG,
	JE_ERR,
};

void
qmp_jstream_init(struct qmp_jstream *s, size_t max)
{
	memset(s, 0, sizeof *s);
	s->max = max != 0 ? max : QMP_FRAMER_DEFAULT_MAX;
	s->state = JS_START;
}

static void
js_clear(struct qmp_jstream *s)
{
	s->brace = s->bracket = 0;
	s->ntokens = 0;
	s->tsize = 0;
}

void
qmp_jstream_free(struct qmp_jstream *s)
{
	size_t	max = s->max;

	free(s->buf);
	qmp_jstream_init(s, max);
}

void
qmp_jstream_reset(struct qmp_jstream *s)
{
	char	*buf = s->buf;
	size_t	 cap = s->cap, max = s->max;

	if (cap > JS_KEEP) {
		free(buf);
		buf = NULL;
		cap = 0;
	}
	qmp_jstream_init(s, max);
	s->buf = buf;
	s->cap = cap;
}

size_t
qmp_jstream_pending(const struct qmp_jstream *s)
{
	return (s->len - s->off);
}

char *
qmp_jstream_reserve(struct qmp_jstream *s, size_t min, size_t *avail)
{
	size_t	hard, shift;

	if (avail != NULL)
		*avail = 0;
	if (s->broken || s->len - s->off > s->max)
		return (NULL);
	if (min == 0)
		min = 1;
	/* beyond one message plus one read the stream is broken */
	hard = s->max + min;
	if (hard < s->max)
		hard = SIZE_MAX;
	if ((shift = qmp_buf_room(&s->buf, &s->cap, &s->off, &s->len, min,
	    JS_INITIAL, hard)) == (size_t)-1)
		return (NULL);
	s->pos -= shift;
	s->tstart = s->tstart >= shift ? s->tstart - shift : 0;
	if (avail != NULL)
		*avail = s->cap - s->len;
	return (s->buf + s->len);
}

void
qmp_jstream_commit(struct qmp_jstream *s, size_t n)
{
	if (n > s->cap - s->len)
		n = s->cap - s->len;
	s->len += n;
}

int
qmp_jstream_feed(struct qmp_jstream *s, const void *data, size_t n)
{
	char	*p;

	if (s->broken)
		return (-1);
	if (n == 0)
		return (0);
	if ((p = qmp_jstream_reserve(s, n, NULL)) == NULL)
		return (-1);
	memcpy(p, data, n);
	qmp_jstream_commit(s, n);
	return (0);
}

/* ---- text of errors, as QEMU's JSON writer shows it ---- */

/* Surrogates, noncharacters and beyond U+10FFFF are invalid (QEMU's
   util/unicode.c; qmp_utf8_cp decodes). */
static int
js_valid_cp(long cp)
{
	if (cp < 0 || cp > 0x10ffff)
		return (0);
	if ((cp >= 0xfdd0 && cp <= 0xfdef) || (cp & 0xfffe) == 0xfffe)
		return (0);
	return (!(cp >= 0xd800 && cp <= 0xdfff));
}

/* Standard UTF-8 of a valid code point (NUL as one byte); returns its
   length. */
static size_t
js_utf8_put(char *o, long cp)
{
	if (cp < 0x80) {
		o[0] = (char)cp;
		return (1);
	}
	if (cp < 0x800) {
		o[0] = (char)(0xc0 | (cp >> 6));
		o[1] = (char)(0x80 | (cp & 0x3f));
		return (2);
	}
	if (cp < 0x10000) {
		o[0] = (char)(0xe0 | (cp >> 12));
		o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		o[2] = (char)(0x80 | (cp & 0x3f));
		return (3);
	}
	o[0] = (char)(0xf0 | (cp >> 18));
	o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	o[3] = (char)(0x80 | (cp & 0x3f));
	return (4);
}

/*
 * Bytes of a token as text for an error: QEMU prints the token as a C
 * string (it ends at a NUL) and its writer turns each invalid sequence
 * into U+FFFD. Room-bounded: a 64 MiB token is cut, as qmp_error is.
 */
static void
js_err_text(char *o, size_t room, const char *s, size_t n)
{
	const unsigned char	*p = (const unsigned char *)s;
	size_t			 i = 0, k = 0, used;
	long			 cp;

	while (i < n && p[i] != '\0' && k + 4 < room) {
		cp = qmp_utf8_cp(p + i, n - i, &used);
		if (cp < 0)
			cp = 0xfffd;
		i += used;
		if (cp == 0) {	/* C0 80: QEMU writes U+0000; so does qmp_out */
			o[k++] = (char)0xc0;
			o[k++] = (char)0x80;
			continue;
		}
		k += js_utf8_put(o + k, cp);
	}
	o[k] = '\0';
}

/* ---- the lexer and the streamer ---- */

static void
js_err_token(struct qmp_jstream *s, struct qmp_error *err, size_t end)
{
	char	text[400];

	js_err_text(text, sizeof text, s->buf + s->tstart, end - s->tstart);
	qmp_error_set(err, QMP_CLS_GENERIC, "JSON parse error, stray '%s'",
	    text);
}

/*
 * One token [tstart, end) for the streamer. Returns the event: a message
 * complete (its bytes are [off, end)), an error (err set, tokens
 * dropped), or none.
 */
static enum js_event
js_token(struct qmp_jstream *s, enum js_tok t, size_t end,
    struct qmp_error *err)
{
	size_t	n = end - s->tstart;

	switch (t) {
	case JT_LCURLY:
		s->brace++;
		break;
	case JT_RCURLY:
		s->brace--;
		break;
	case JT_LSQUARE:
		s->bracket++;
		break;
	case JT_RSQUARE:
		s->bracket--;
		break;
	default:
		break;
	}
	if (s->tsize + n + 1 > QMP_JSON_MAX_TOKEN_SIZE) {
		qmp_error_set(err, QMP_CLS_GENERIC,
		    "JSON token size limit exceeded");
		goto bad;
	}
	if (s->ntokens + 1 > QMP_JSON_MAX_TOKEN_COUNT) {
		qmp_error_set(err, QMP_CLS_GENERIC,
		    "JSON token count limit exceeded");
		goto bad;
	}
	if (s->brace + s->bracket > QMP_JSON_MAX_NESTING) {
		qmp_error_set(err, QMP_CLS_GENERIC,
		    "JSON nesting depth limit exceeded");
		goto bad;
	}
	if (s->ntokens == 0)
		s->off = s->tstart;	/* the message starts here */
	s->ntokens++;
	s->tsize += n;
	if ((s->brace > 0 || s->bracket > 0) && s->brace >= 0 &&
	    s->bracket >= 0)
		return (JE_NONE);
	return (JE_MSG);
bad:
	js_clear(s);
	return (JE_ERR);
}

/* Does the 8-byte word hold a byte that stops a plain string scan:
   < 0x20, >= 0x80, the quote q, or a backslash? */
static inline int
js_word_stops(uint64_t v, uint64_t q)
{
	const uint64_t	ones = 0x0101010101010101ull;
	const uint64_t	high = 0x8080808080808080ull;
	uint64_t	x, y;

	x = v ^ (ones * q);
	y = v ^ (ones * '\\');
	return (((v | ((v - ones * 0x20) & ~v) | ((x - ones) & ~x) |
	    ((y - ones) & ~y)) & high) != 0);
}

/*
 * Lex from pos until an event or the end of the bytes. On JE_MSG the
 * message is [off, *mend); on JE_ERR err says QEMU's answer. pos stays
 * on a byte not consumed (lookahead).
 */
static enum js_event
js_lex(struct qmp_jstream *s, size_t *mend, struct qmp_error *err)
{
	const unsigned char	*b = (const unsigned char *)s->buf;
	size_t			 p = s->pos, end = s->len;
	enum js_tok		 t;
	enum js_event		 ev;
	unsigned		 c, q;
	uint64_t		 w;

	while (p < end) {
		c = b[p];
		switch (s->state) {
		case JS_START:
			if (c == ' ' || c == '\n' || c == '\r' || c == '\t') {
				p++;
				if (s->ntokens == 0)
					s->off = p;
				continue;
			}
			s->tstart = p;
			switch (c) {
			case '{': t = JT_LCURLY; break;
			case '}': t = JT_RCURLY; break;
			case '[': t = JT_LSQUARE; break;
			case ']': t = JT_RSQUARE; break;
			case ':': t = JT_COLON; break;
			case ',': t = JT_COMMA; break;
			case '"':
				s->state = JS_DQ;
				p++;
				continue;
			case '\'':
				s->state = JS_SQ;
				p++;
				continue;
			case '0':
				s->state = JS_ZERO;
				p++;
				continue;
			case '-':
				s->state = JS_SIGN;
				p++;
				continue;
			default:
				if (c >= '1' && c <= '9')
					s->state = JS_DIGITS;
				else if (c >= 'a' && c <= 'z')
					s->state = JS_KEYWORD;
				else
					goto lexerr;
				p++;
				continue;
			}
			p++;
			goto token;

		case JS_DQ:
		case JS_SQ:
			q = s->state == JS_DQ ? '"' : '\'';
			/* a word at a time over plain characters */
			while (end - p >= 8) {
				memcpy(&w, b + p, 8);
				if (js_word_stops(w, q))
					break;
				p += 8;
			}
			for (; p < end; p++) {
				c = b[p];
				if (c >= 0x20 && c < 0x80 && c != q &&
				    c != '\\')
					continue;
				break;
			}
			if (p == end)
				break;
			if (c == q) {
				p++;
				t = JT_STRING;
				s->state = JS_START;
				goto token;
			}
			if (c == '\\') {
				s->state = s->state == JS_DQ ? JS_DQ_ESC :
				    JS_SQ_ESC;
				p++;
				continue;
			}
			if (c >= 0x80 && c <= 0xfd) {
				p++;
				continue;
			}
			goto lexerr;

		case JS_DQ_ESC:
		case JS_SQ_ESC:
			if (c < 0x20 || c > 0xfd)
				goto lexerr;
			s->state = s->state == JS_DQ_ESC ? JS_DQ : JS_SQ;
			p++;
			continue;

		case JS_ZERO:
			if (c >= '0' && c <= '9')
				goto lexerr;
			if (c == '.') {
				s->state = JS_MANT;
				p++;
				continue;
			}
			t = JT_INTEGER;
			s->state = JS_START;
			goto token;

		case JS_SIGN:
			if (c == '0')
				s->state = JS_ZERO;
			else if (c >= '1' && c <= '9')
				s->state = JS_DIGITS;
			else
				goto lexerr;
			p++;
			continue;

		case JS_DIGITS:
			while (p < end && b[p] >= '0' && b[p] <= '9')
				p++;
			if (p == end)
				break;
			c = b[p];
			if (c == 'e' || c == 'E') {
				s->state = JS_EXP_E;
				p++;
				continue;
			}
			if (c == '.') {
				s->state = JS_MANT;
				p++;
				continue;
			}
			t = JT_INTEGER;
			s->state = JS_START;
			goto token;

		case JS_MANT:
			if (c < '0' || c > '9')
				goto lexerr;
			s->state = JS_MANT_DIGITS;
			p++;
			continue;

		case JS_MANT_DIGITS:
			if (c >= '0' && c <= '9') {
				p++;
				continue;
			}
			if (c == 'e' || c == 'E') {
				s->state = JS_EXP_E;
				p++;
				continue;
			}
			t = JT_FLOAT;
			s->state = JS_START;
			goto token;

		case JS_EXP_E:
			if (c == '-' || c == '+')
				s->state = JS_EXP_SIGN;
			else if (c >= '0' && c <= '9')
				s->state = JS_EXP_DIGITS;
			else
				goto lexerr;
			p++;
			continue;

		case JS_EXP_SIGN:
			if (c < '0' || c > '9')
				goto lexerr;
			s->state = JS_EXP_DIGITS;
			p++;
			continue;

		case JS_EXP_DIGITS:
			if (c >= '0' && c <= '9') {
				p++;
				continue;
			}
			t = JT_FLOAT;
			s->state = JS_START;
			goto token;

		case JS_KEYWORD:
			while (p < end && b[p] >= 'a' && b[p] <= 'z')
				p++;
			if (p == end)
				break;
			t = JT_KEYWORD;
			s->state = JS_START;
			goto token;

		case JS_RECOVERY:
		default:
			if ((c < 0x20 && c != '\t') || c >= 0xfe || c == '[' ||
			    c == ']' || c == '{' || c == '}' || c == ':' ||
			    c == ',') {
				s->state = JS_START;
				continue;
			}
			p++;
			s->off = p;
			continue;
		}
		break;

token:
		/* the token is [tstart, p) */
		ev = js_token(s, t, p, err);
		if (ev == JE_NONE)
			continue;
		s->pos = p;
		*mend = p;
		return (ev);

lexerr:
		/* the bad byte is part of the token QEMU prints */
		p++;
		js_err_token(s, err, p);
		js_clear(s);
		s->state = JS_RECOVERY;
		s->pos = p;
		s->off = p;
		return (JE_ERR);
	}
	s->pos = p;
	if (s->ntokens == 0 && (s->state == JS_START ||
	    s->state == JS_RECOVERY))
		s->off = p;
	else if (s->ntokens == 0)
		s->off = s->tstart;
	return (JE_NONE);
}

enum qmp_frame_rc
qmp_jstream_next(struct qmp_jstream *s, json_t **out, struct qmp_error *err)
{
	json_t		*j = NULL;
	enum js_event	 ev;
	size_t		 mend = 0, start;

	*out = NULL;
	if (s->broken) {
		qmp_error_set(err, QMP_CLS_GENERIC,
		    "QMP stream is broken by an earlier error");
		return (QMP_FRAME_BROKEN);
	}
	ev = js_lex(s, &mend, err);
	if (ev == JE_ERR) {
		s->off = s->pos;
		if (s->off == s->len)
			s->off = s->len = s->pos = 0;
		return (QMP_FRAME_BAD);
	}
	if (ev == JE_NONE) {
		if (s->len - s->off > s->max)
			goto toolong;
		if (s->off == s->len) {
			/* everything answered: start over at no cost */
			s->off = s->len = s->pos = 0;
		}
		return (QMP_FRAME_NONE);
	}
	start = s->off;
	js_clear(s);
	/* Whitespace after the message is answered with it: fds sent with
	   a command and its newline go with the command (hv/chan.c). */
	while (s->pos < s->len && (s->buf[s->pos] == ' ' ||
	    s->buf[s->pos] == '\n' || s->buf[s->pos] == '\r' ||
	    s->buf[s->pos] == '\t'))
		s->pos++;
	s->off = s->pos;
	if (mend - start > s->max)
		goto toolong;
	if ((j = qmp_json_parse(s->buf + start, mend - start, err)) == NULL)
		return (QMP_FRAME_BAD);
	if (!json_is_object(j)) {
		json_decref(j);
		qmp_error_set(err, QMP_CLS_GENERIC,
		    "QMP input must be a JSON object");
		return (QMP_FRAME_BAD);
	}
	*out = j;
	return (QMP_FRAME_MSG);

toolong:
	s->broken = 1;
	qmp_error_set(err, QMP_CLS_GENERIC,
	    "QMP message exceeds the limit of %zu bytes", s->max);
	return (QMP_FRAME_BROKEN);
}

/* ---- QEMU's parser over one message's bytes ---- */

struct jp {
	const unsigned char	*p, *end;
	struct qmp_error	*err;
	int			 failed;
	/* the token peeked */
	enum js_tok		 t;
	const unsigned char	*ts, *te;
	int			 have;
	int			 nul_ok;	/* in the top-level "id" */
};

static void __attribute__((format(printf, 2, 3)))
jp_error(struct jp *jp, const char *fmt, ...)
{
	char	msg[400];
	va_list	ap;

	if (jp->failed)
		return;		/* the first error is QEMU's answer */
	jp->failed = 1;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	qmp_error_set(jp->err, QMP_CLS_GENERIC, "JSON parse error, %s", msg);
}

/* The next token of a message the lexer already accepted: only
   whitespace and whole tokens. */
static enum js_tok
jp_scan(struct jp *jp)
{
	const unsigned char	*p = jp->p, *e = jp->end;
	unsigned		 q;
	enum js_tok		 t;

	while (p < e && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
		p++;
	jp->ts = p;
	if (p == e) {
		jp->p = jp->te = p;
		return (JT_NONE);
	}
	switch (*p) {
	case '{': t = JT_LCURLY; p++; break;
	case '}': t = JT_RCURLY; p++; break;
	case '[': t = JT_LSQUARE; p++; break;
	case ']': t = JT_RSQUARE; p++; break;
	case ':': t = JT_COLON; p++; break;
	case ',': t = JT_COMMA; p++; break;
	case '"':
	case '\'':
		q = *p++;
		while (p < e && *p != q)
			p += *p == '\\' ? 2 : 1;
		p++;
		t = JT_STRING;
		break;
	default:
		if (*p >= 'a' && *p <= 'z') {
			while (p < e && *p >= 'a' && *p <= 'z')
				p++;
			t = JT_KEYWORD;
			break;
		}
		/* a number, as the lexer cut it */
		t = JT_INTEGER;
		if (*p == '-')
			p++;
		if (p < e && *p == '0')
			p++;
		else
			while (p < e && *p >= '0' && *p <= '9')
				p++;
		if (p < e && *p == '.') {
			t = JT_FLOAT;
			p++;
			while (p < e && *p >= '0' && *p <= '9')
				p++;
		}
		if (p < e && (*p == 'e' || *p == 'E') &&
		    (jp->ts[*jp->ts == '-'] != '0' || t == JT_FLOAT)) {
			t = JT_FLOAT;
			p++;
			if (p < e && (*p == '+' || *p == '-'))
				p++;
			while (p < e && *p >= '0' && *p <= '9')
				p++;
		}
		break;
	}
	if (p > e)
		p = e;
	jp->p = jp->te = p;
	return (t);
}

static enum js_tok
jp_peek(struct jp *jp)
{
	if (!jp->have) {
		jp->t = jp_scan(jp);
		jp->have = 1;
	}
	return (jp->t);
}

static enum js_tok
jp_pop(struct jp *jp)
{
	enum js_tok	t = jp_peek(jp);

	jp->have = 0;
	return (t);
}

/* Four hex digits, or -1 (stops at the token's end). */
static long
jp_hex4(const unsigned char *p, const unsigned char *e)
{
	long	cp = 0;
	int	i;

	for (i = 0; i < 4; i++) {
		if (p + i >= e)
			return (-1);
		cp <<= 4;
		if (p[i] >= '0' && p[i] <= '9')
			cp |= p[i] - '0';
		else if (p[i] >= 'a' && p[i] <= 'f')
			cp |= p[i] - 'a' + 10;
		else if (p[i] >= 'A' && p[i] <= 'F')
			cp |= p[i] - 'A' + 10;
		else
			return (-1);
	}
	return (cp);
}

/*
 * One decoded code point into o. U+0000 as QEMU keeps it, "\xC0\x80"
 * (modified UTF-8, mod_utf8_encode): names and paths stay C strings,
 * "a\u0000b" never becomes "a", and qmp_out writes it back as \u0000,
 * to the client and to QEMU alike. In the top-level id a NUL, as before
 * (jansson holds it; qmp_out writes it as \u0000 too).
 */
static size_t
jp_put_cp(const struct jp *jp, char *o, long cp)
{
	if (cp == 0 && !jp->nul_ok) {
		o[0] = (char)0xc0;
		o[1] = (char)0x80;
		return (2);
	}
	return (js_utf8_put(o, cp));
}

static json_t *
jp_string(struct jp *jp, size_t *lenp, char **bufp)
{
	const unsigned char	*p = jp->ts, *e = jp->te, *beg;
	unsigned		 q = *p++;
	char			*o, *out;
	size_t			 used, k;
	long			 cp, tr;
	json_t			*j;

	/* most strings: plain ASCII, no escape; the token is the text */
	for (beg = p; beg < e && *beg != q && *beg != '\\' && *beg < 0x80;
	    beg++)
		;
	if (beg < e && *beg == q) {
		k = (size_t)(beg - p);
		if (bufp != NULL) {
			if ((*bufp = malloc(k + 1)) == NULL) {
				jp_error(jp, "out of memory");
				return (NULL);
			}
			memcpy(*bufp, p, k);
			*lenp = k;
			return (NULL);
		}
		if ((j = json_stringn_nocheck((const char *)p, k)) == NULL)
			jp_error(jp, "out of memory");
		return (j);
	}
	/* decoded text is never longer than the token, but for U+0000 as
	   two bytes (jp_put_cp) where a raw one took one: twice is room */
	if ((out = malloc(2 * (size_t)(e - p) + 4)) == NULL) {
		jp_error(jp, "out of memory");
		return (NULL);
	}
	o = out;
	while (p < e && *p != q) {
		if (*p != '\\') {
			cp = qmp_utf8_cp(p, (size_t)(e - p), &used);
			if (cp < 0) {
				jp_error(jp, "invalid UTF-8 sequence in string");
				goto fail;
			}
			p += used;
			o += jp_put_cp(jp, o, cp);
			continue;
		}
		beg = p++;
		if (p >= e) {	/* only from direct callers */
			jp_error(jp, "invalid escape sequence in string");
			goto fail;
		}
		switch (*p++) {
		case '"': *o++ = '"'; break;
		case '\'': *o++ = '\''; break;
		case '\\': *o++ = '\\'; break;
		case '/': *o++ = '/'; break;
		case 'b': *o++ = '\b'; break;
		case 'f': *o++ = '\f'; break;
		case 'n': *o++ = '\n'; break;
		case 'r': *o++ = '\r'; break;
		case 't': *o++ = '\t'; break;
		case 'u':
			cp = jp_hex4(p, e);
			p += 4;
			if (cp >= 0xd800 && cp <= 0xdbff && p + 1 < e &&
			    p[0] == '\\' && p[1] == 'u') {
				cp = 0x10000 + ((cp & 0x3ff) << 10);
				tr = jp_hex4(p + 2, e);
				if (tr >= 0xdc00 && tr <= 0xdfff) {
					cp |= tr & 0x3ff;
					p += 6;
				} else
					cp = -1;
			}
			if (cp != 0 && !js_valid_cp(cp)) {
				char text[64];

				k = (size_t)(p - beg);
				if (p > e)	/* QEMU's text ends with the token */
					k = (size_t)(e - beg);
				/* its bytes as QEMU shows them: invalid
				   UTF-8 as U+FFFD, cut at a NUL */
				js_err_text(text, sizeof text, (const char *)beg,
				    k);
				jp_error(jp, "%s is not a valid Unicode "
				    "character", text);
				goto fail;
			}
			o += jp_put_cp(jp, o, cp);
			break;
		default:
			jp_error(jp, "invalid escape sequence in string");
			goto fail;
		}
	}
	k = (size_t)(o - out);
	if (bufp != NULL) {
		*bufp = out;
		*lenp = k;
		return (NULL);
	}
	j = json_stringn_nocheck(out, k);
	free(out);
	if (j == NULL)
		jp_error(jp, "out of memory");
	return (j);
fail:
	free(out);
	return (NULL);
}

static json_t *
jp_number(struct jp *jp, enum js_tok t, int depth)
{
	char		 num[64], *big = NULL, *s;
	size_t		 n = (size_t)(jp->te - jp->ts);
	long long	 v;
	double		 d;
	json_t		*j;

	s = num;
	if (n >= sizeof num) {
		if ((big = malloc(n + 1)) == NULL) {
			jp_error(jp, "out of memory");
			return (NULL);
		}
		s = big;
	}
	memcpy(s, jp->ts, n);
	s[n] = '\0';
	if (t == JT_INTEGER) {
		errno = 0;
		v = strtoll(s, NULL, 10);
		if (errno == 0) {
			free(big);
			return (json_integer(v));
		}
		/* past int64 up to uint64, QEMU keeps the number exactly
		   (an id it echoes, a size it takes): see QMP_OUT_U64_KEY.
		   Not alone: a message that is one number is no object,
		   and the holder would read as one. */
		errno = 0;
		if (depth > 0 && s[0] != '-' &&
		    (strtoull(s, NULL, 10), errno == 0)) {
			j = json_pack("{s:s}", QMP_OUT_U64_KEY, s);
			free(big);
			if (j == NULL)
				jp_error(jp, "out of memory");
			return (j);
		}
	}
	/* Past int64: QEMU keeps up to uint64 exactly, jansson cannot;
	   both then go by double. */
	d = strtod(s, NULL);
	free(big);
	if ((j = json_real(d)) == NULL)
		j = json_null();	/* +-inf: jansson has no such real */
	return (j);
}

static json_t	*jp_value(struct jp *, int depth);

/* A plain string token (ASCII, no escape): its text, in place. */
static int
jp_plain(const struct jp *jp, const char **text, size_t *len)
{
	const unsigned char	*p = jp->ts + 1, *e = jp->te - 1;

	for (; p < e; p++) {
		if (*p == '\\' || *p >= 0x80)
			return (0);
	}
	*text = (const char *)jp->ts + 1;
	*len = (size_t)(e - jp->ts - 1);
	return (1);
}

static int
jp_pair(struct jp *jp, json_t *obj, int depth)
{
	enum js_tok	 t;
	char		*owned = NULL;
	const char	*key;
	size_t		 klen = 0;
	json_t		*v;

	t = jp_peek(jp);
	if (t == JT_NONE) {
		jp_error(jp, "premature EOI");
		return (-1);
	}
	if (t == JT_STRING) {
		jp_pop(jp);
		if (!jp_plain(jp, &key, &klen)) {
			jp_string(jp, &klen, &owned);
			if (owned == NULL)
				return (-1);
			key = owned;
		}
	} else {
		/* any other value first parses, then is no key */
		if ((v = jp_value(jp, depth)) == NULL)
			return (-1);
		json_decref(v);
		jp_error(jp, "key is not a string in object");
		return (-1);
	}
	t = jp_pop(jp);
	if (t == JT_NONE || t != JT_COLON) {
		jp_error(jp, t == JT_NONE ? "premature EOI" :
		    "missing : in object pair");
		goto fail;
	}
	jp->nul_ok = depth == 1 && klen == 2 && memcmp(key, "id", 2) == 0;
	v = jp_value(jp, depth);
	jp->nul_ok = 0;
	if (v == NULL) {
		jp_error(jp, "Missing value in dict");
		goto fail;
	}
	if (json_object_getn(obj, key, klen) != NULL) {
		json_decref(v);
		jp_error(jp, "duplicate key");
		goto fail;
	}
	if (json_object_setn_new_nocheck(obj, key, klen, v) != 0) {
		jp_error(jp, "out of memory");
		goto fail;
	}
	free(owned);
	return (0);
fail:
	free(owned);
	return (-1);
}

static json_t *
jp_object(struct jp *jp, int depth)
{
	json_t		*obj;
	enum js_tok	 t;

	jp_pop(jp);
	if ((obj = json_object()) == NULL) {
		jp_error(jp, "out of memory");
		return (NULL);
	}
	t = jp_peek(jp);
	if (t == JT_NONE) {
		jp_error(jp, "premature EOI");
		goto fail;
	}
	if (t == JT_RCURLY) {
		jp_pop(jp);
		return (obj);
	}
	if (jp_pair(jp, obj, depth) == -1)
		goto fail;
	while ((t = jp_pop(jp)) != JT_RCURLY) {
		if (t == JT_NONE) {
			jp_error(jp, "premature EOI");
			goto fail;
		}
		if (t != JT_COMMA) {
			jp_error(jp, "expected separator in dict");
			goto fail;
		}
		if (jp_pair(jp, obj, depth) == -1)
			goto fail;
	}
	return (obj);
fail:
	json_decref(obj);
	return (NULL);
}

static json_t *
jp_array(struct jp *jp, int depth)
{
	json_t		*arr, *v;
	enum js_tok	 t;

	jp_pop(jp);
	if ((arr = json_array()) == NULL) {
		jp_error(jp, "out of memory");
		return (NULL);
	}
	t = jp_peek(jp);
	if (t == JT_NONE) {
		jp_error(jp, "premature EOI");
		goto fail;
	}
	if (t == JT_RSQUARE) {
		jp_pop(jp);
		return (arr);
	}
	for (;;) {
		if ((v = jp_value(jp, depth)) == NULL) {
			jp_error(jp, "expecting value");
			goto fail;
		}
		json_array_append_new(arr, v);
		t = jp_pop(jp);
		if (t == JT_RSQUARE)
			return (arr);
		if (t == JT_NONE) {
			jp_error(jp, "premature EOI");
			goto fail;
		}
		if (t != JT_COMMA) {
			jp_error(jp, "expected separator in list");
			goto fail;
		}
	}
fail:
	json_decref(arr);
	return (NULL);
}

static json_t *
jp_value(struct jp *jp, int depth)
{
	enum js_tok	t = jp_peek(jp);
	size_t		n;

	/* the streamer bounds nesting; this is for direct callers */
	if (depth > QMP_JSON_MAX_NESTING + 1) {
		jp_error(jp, "JSON nesting depth limit exceeded");
		return (NULL);
	}
	switch (t) {
	case JT_NONE:
		jp_error(jp, "premature EOI");
		return (NULL);
	case JT_LCURLY:
		return (jp_object(jp, depth + 1));
	case JT_LSQUARE:
		return (jp_array(jp, depth + 1));
	case JT_STRING:
		jp_pop(jp);
		return (jp_string(jp, NULL, NULL));
	case JT_INTEGER:
	case JT_FLOAT:
		jp_pop(jp);
		return (jp_number(jp, t, depth));
	case JT_KEYWORD:
		jp_pop(jp);
		n = (size_t)(jp->te - jp->ts);
		if (n == 4 && memcmp(jp->ts, "true", 4) == 0)
			return (json_true());
		if (n == 5 && memcmp(jp->ts, "false", 5) == 0)
			return (json_false());
		if (n == 4 && memcmp(jp->ts, "null", 4) == 0)
			return (json_null());
		jp_error(jp, "invalid keyword '%.*s'", n > 300 ? 300 : (int)n,
		    (const char *)jp->ts);
		return (NULL);
	default:
		jp_error(jp, "expecting value");
		return (NULL);
	}
}

json_t *
qmp_json_parse(const char *s, size_t n, struct qmp_error *err)
{
	struct jp	 jp;
	json_t		*j;

	memset(&jp, 0, sizeof jp);
	jp.p = (const unsigned char *)s;
	jp.end = jp.p + n;
	jp.err = err;
	j = jp_value(&jp, 0);
	if (j != NULL && jp_peek(&jp) != JT_NONE) {
		/* cannot come from the streamer: for direct callers */
		json_decref(j);
		jp_error(&jp, "expecting value");
		return (NULL);
	}
	return (j);
}
