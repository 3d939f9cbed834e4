/*
 * Incremental reader of client input with QEMU 7.2's grammar.
 *
 * QEMU does not frame QMP by lines: its lexer (qobject/json-lexer.c) cuts
 * the bytes into JSON tokens, its streamer (json-streamer.c) ends a
 * message where braces and brackets balance, and its parser
 * (json-parser.c) turns the message into a value. Newlines are only
 * whitespace, any whitespace or none separates messages, strings may be
 * single-quoted, and bad input is answered, skipped and recovered from in
 * a precise way. A client of the broker's control and shared sockets
 * gets the same: this reader has the same states, limits, recovery and
 * error texts, byte for byte (see docs/control.md "Grammar").
 *
 * Each call to qmp_jstream_next() gives one of QEMU's answers in the
 * order QEMU gives them: a message (QMP_FRAME_MSG, an object), or an
 * error (QMP_FRAME_BAD) whose text is QEMU's, for a lexical error, a
 * limit passed, a parse error, or a value that is not an object ("QMP
 * input must be a JSON object"). The stream goes on after every one.
 *
 * Bounded: bytes of one message (from its first token to its last) are
 * kept in one buffer; when a message in progress is longer than max, the
 * stream is broken (QMP_FRAME_BROKEN: the caller closes the connection).
 * Whitespace between messages and bytes skipped after an error cost no
 * memory. Same reserve/commit interface as proto/qmp_framer.h, so a
 * socket read costs no copy.
 *
 * Fast: the bytes are lexed once (strings, most of QMP's bytes, a word at
 * a time), then the message's tokens are parsed into jansson values by
 * this module's own parser (QEMU's rules), which is faster than
 * json_loadb.
 *
 * Pure code: no sockets, no event loop.
 */
#ifndef QMP_JSTREAM_H
#define QMP_JSTREAM_H

#include <stddef.h>
#include <jansson.h>

#include "proto/qmp_framer.h"
#include "proto/qmp_msg.h"

/* QEMU 7.2's limits (json-streamer.c), with its answers. */
#define QMP_JSON_MAX_TOKEN_SIZE		(64ull << 20)
#define QMP_JSON_MAX_TOKEN_COUNT	(2ull << 20)
#define QMP_JSON_MAX_NESTING		1024

struct qmp_jstream {
	char		*buf;
	size_t		 off;	/* first byte not yet answered */
	size_t		 len;	/* end of valid bytes */
	size_t		 cap;
	size_t		 max;	/* longest message kept */
	size_t		 pos;	/* next byte to lex */
	size_t		 tstart;	/* start of the token being lexed */
	int		 state;
	int		 broken;
	/* the message being gathered (QEMU's token queue) */
	long		 brace, bracket;
	size_t		 ntokens;
	unsigned long long tsize;	/* sum of its tokens' lengths */
};

void	qmp_jstream_init(struct qmp_jstream *, size_t max);
void	qmp_jstream_free(struct qmp_jstream *);
void	qmp_jstream_reset(struct qmp_jstream *);

/* As qmp_framer_reserve/commit/feed. */
char	*qmp_jstream_reserve(struct qmp_jstream *, size_t min, size_t *avail);
void	 qmp_jstream_commit(struct qmp_jstream *, size_t n);
int	 qmp_jstream_feed(struct qmp_jstream *, const void *, size_t);

/* The next answer; *out (caller owns it) only with QMP_FRAME_MSG; err
   (class GenericError, QEMU's text) with BAD and BROKEN. */
enum qmp_frame_rc qmp_jstream_next(struct qmp_jstream *, json_t **out,
	    struct qmp_error *err);

/* Bytes received and not yet answered (a message in progress). */
size_t	 qmp_jstream_pending(const struct qmp_jstream *);

/* QEMU's parser alone on a complete message's bytes (tests, fuzzing):
   the value (any type), or NULL and err. */
json_t	*qmp_json_parse(const char *, size_t, struct qmp_error *err);

#endif
