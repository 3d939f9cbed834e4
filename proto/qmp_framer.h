/*
 * Incremental QMP stream framer.
 *
 * QMP is a stream of JSON objects, one per line (CRLF or bare LF). Bytes
 * arrive in any split. The framer owns one contiguous buffer that the
 * caller reads straight into (qmp_framer_reserve/commit), so a socket read
 * costs no extra copy, and it grows geometrically up to a hard limit: a
 * line longer than max_msg breaks the stream instead of growing memory.
 *
 * Pure code: no sockets, no event loop.
 */
#ifndef QMP_FRAMER_H
#define QMP_FRAMER_H

#include <stddef.h>
#include <jansson.h>

#include "proto/qmp_msg.h"

#define QMP_FRAMER_DEFAULT_MAX (16u * 1024 * 1024)

struct qmp_framer {
	char	*buf;
	size_t	 off;		/* start of unconsumed bytes */
	size_t	 len;		/* end of valid bytes */
	size_t	 cap;
	size_t	 scan;		/* bytes after off already known to hold no LF */
	size_t	 max;		/* longest accepted message, without its EOL */
	int	 broken;
};

enum qmp_frame_rc {
	QMP_FRAME_NONE,		/* no complete message yet: feed more */
	QMP_FRAME_MSG,		/* *out holds one message (caller owns it) */
	QMP_FRAME_BAD,		/* one line was not a JSON object; err says why;
				   the stream goes on */
	QMP_FRAME_BROKEN,	/* over max, or fed after break: stream is dead */
};

void	qmp_framer_init(struct qmp_framer *, size_t max);
void	qmp_framer_free(struct qmp_framer *);
void	qmp_framer_reset(struct qmp_framer *);

/* Room for at least 'min' bytes; *avail gets what is really there. Returns
   NULL when the pending partial line already reaches the limit. */
char	*qmp_framer_reserve(struct qmp_framer *, size_t min, size_t *avail);

/* The input buffer both readers (this one and qmp_jstream) keep: room
   for min more bytes after the live bytes [*off, *len) of *buf (*cap
   bytes): they move to the front when that makes room, else the buffer
   grows, doubling from initial up to hard (and at least to fit). Returns
   how far the live bytes moved down (0 if not), so callers shift their
   own offsets; (size_t)-1 if out of memory or past SIZE_MAX. */
size_t	 qmp_buf_room(char **buf, size_t *cap, size_t *off, size_t *len,
	    size_t min, size_t initial, size_t hard);
void	 qmp_framer_commit(struct qmp_framer *, size_t n);

/* reserve + memcpy + commit. Returns -1 if the data cannot fit the limit. */
int	 qmp_framer_feed(struct qmp_framer *, const void *, size_t);

enum qmp_frame_rc qmp_framer_next(struct qmp_framer *, json_t **out,
	    struct qmp_error *err);

/* Bytes buffered but not yet framed (a partial line). */
size_t	 qmp_framer_pending(const struct qmp_framer *);

/* Parse one line (without its EOL; a trailing CR is stripped) into a JSON
   object. Shared by the framer and anyone who frames on their own buffer.
   jansson reads it; a line jansson refuses only for an integer past int64
   or a U+0000 (QEMU writes both) is read with QEMU's whole grammar
   (qmp_jstream), never more leniently. Returns NULL and fills err (class
   GenericError, jansson's text) on failure. */
json_t	*qmp_parse_line(const char *, size_t, struct qmp_error *err);

#endif
