/*
 * QMP output as QEMU 7.2 writes it (qobject/json-writer.c), byte for
 * byte: ", " and ": " separators, every code point outside 0x20..0x7E
 * as \uXXXX (upper case, surrogate pairs past the BMP, invalid UTF-8 as
 * U+FFFD), '/' as is, reals as "%.17g". For what clients read; what goes
 * to QEMU stays compact (qmp_dump).
 *
 * A struct qmp_out starts on its own stack buffer and moves to the heap
 * only when that fills; qmp_out_take hands the text over either way.
 */
#ifndef QMP_OUT_H
#define QMP_OUT_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>

/* Objects in the order QEMU writes a QDict it parsed from this text:
   by QDict hash bucket, later keys first within a bucket. For values a
   client sent that QEMU would echo (ids); without it, members go in
   their own order (QEMU's text, or the broker's own objects). */
#define QMP_OUT_PARSED	0x1
/* "," and ":" without the space: what the broker writes to QEMU (each
   byte costs a poll round there), reals with jansson's ".0" so they stay
   reals. Non-ASCII still as \uXXXX, U+0000 ("\xC0\x80" or a NUL) as
   \u0000, QMP_OUT_U64_KEY's digits bare: QEMU reads what was sent. */
#define QMP_OUT_COMPACT	0x2

/*
 * An id past int64 up to uint64, which QEMU echoes exactly and jansson
 * cannot hold as a number: the reader (qmp_jstream) gives it as
 * {QMP_OUT_U64_KEY: "digits"}, and qmp_out writes the digits bare. The
 * key is U+FFFF, a noncharacter no client input can produce.
 */
#define QMP_OUT_U64_KEY	"\xef\xbf\xbf"

struct qmp_out {
	char	*buf;
	size_t	 len, cap;
	bool	 failed;	/* out of memory: the text is incomplete */
	char	 stack[4096];
};

void	 qmp_out_init(struct qmp_out *);
void	 qmp_out_raw(struct qmp_out *, const char *, size_t);
void	 qmp_out_json(struct qmp_out *, const json_t *, int flags);
/* QEMU's mod_utf8_codepoint over at most n bytes (its reader and its
   writer both decode so): the code point, or -1 for an invalid sequence
   (*used then says what to skip). C0 80 is U+0000, as a NUL byte is. */
long	 qmp_utf8_cp(const unsigned char *p, size_t n, size_t *used);
/* s (n bytes, UTF-8) as a JSON string, QEMU's escapes */
void	 qmp_out_string(struct qmp_out *, const char *s, size_t n);
/* A reply as QEMU frames it: {"return": R, "id": I} or
   {"id": I, "error": E}, CRLF-terminated. ret and error borrowed; exactly
   one of them non-NULL; id borrowed, may be NULL. */
void	 qmp_out_reply(struct qmp_out *, const json_t *ret,
	    const json_t *error, const json_t *id);
void	 qmp_out_free(struct qmp_out *);

/* obj's members in the order QEMU's QDict of the same text keeps them
   (QMP_OUT_PARSED's order: what QEMU iterates when it checks a command):
   fn on each, borrowed, until it returns non-zero. That value; 0 when
   all were seen; -1 if out of memory before the first. */
typedef int qmp_out_member_fn(const char *key, size_t klen, json_t *val,
		    void *arg);
int	 qmp_out_qdict_foreach(const json_t *obj, qmp_out_member_fn *,
	    void *arg);

/* j in QEMU's text and CRLF, malloc'd (NULL if out of memory); *len
   excludes the NUL. */
char	*qmp_dump_qemu(const json_t *, size_t *len);

#endif
