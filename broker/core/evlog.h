/*
 * The broker-wide event log: every event the broker delivers gets the
 * next "seq" (u64, from 1, strictly increasing, no gaps) and the log's
 * "epoch" (a string that changes only when the log itself is lost), and
 * is kept as the exact text subscribers receive:
 *
 *   {"event":"X","vm":"v","data":{..},"timestamp":{..},"seq":N,"epoch":"E"}
 *
 * ("vm" absent for broker-wide events). Records live in a memory ring
 * capped in bytes and, when a directory is given, in append-only segment
 * files DIR/SEQ.seg (SEQ: the first record's seq, 20 digits), each record
 * framed as [u32 length][u32 crc32][u64 seq][vm\0 event\0 text]. Appends
 * are written by the loop in one write() per loop pass, before the
 * subscribers' sockets are written (a kill -9 loses nothing a subscriber
 * could have seen): to the segment itself, or, with opts.wal_dir, to a
 * write-ahead file there (a tmpfs), from which one writer thread appends
 * them to the segments, so a slow disk never stalls the loop. Never
 * fsync'd. At open, a torn or corrupt tail of the newest segment is cut,
 * what the write-ahead files hold past it is appended, and seq continues
 * after the last whole record. A write error (full disk) stops the disk log, never the
 * memory log or the broker: the owner hears it through the full callback.
 *
 * Every function here is called on the loop thread only (in write-ahead
 * mode one writer thread of this module writes the segments).
 */
#ifndef BROKER_CORE_EVLOG_H
#define BROKER_CORE_EVLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <event2/event.h>

#include "proto/qmp_msg.h"

#define EVLOG_EPOCH_MAX		32	/* bytes of an epoch, NUL included */
#define EVLOG_EVENT_MAX		(1024 * 1024)	/* text of one record */

/* One record. Every pointer is borrowed: valid until the next call into
   this module (a cursor's until its next step). */
struct evlog_rec {
	uint64_t	 seq;
	const char	*vm;		/* NULL: a broker-wide event */
	const char	*event;		/* its name */
	const char	*json;		/* the text subscribers get, seq and
					   epoch in it; json[len] is '\r' */
	size_t		 len;		/* of json, without the "\r\n" */
};

struct evlog_opts {
	const char	*dir;		/* NULL: memory only */
	size_t		 mem_bytes;	/* ring cap, at least one record kept */
	size_t		 segment_bytes;	/* a segment rotates past this */
	size_t		 max_bytes;	/* oldest segments go past this */
	long		 max_age_s;	/* segments older than this go; 0: none */
	/* With dir: where the two write-ahead files go (a tmpfs: the run
	   dir); NULL: the loop writes the segments itself. */
	const char	*wal_dir;
};

/* Called when the disk log stops (why: the system error); the memory
   log goes on. Called on the loop, never from inside evlog_append. */
typedef void evlog_full_fn(const char *why, uint64_t last_on_disk,
		    void *arg);
/* Called on the loop after appended records were written (at most once
   per loop pass, or per 500 us under a flood; not per record), with the
   newest seq, which evlog_written() returns from then on: a publisher's
   cursor reads up to there. The bus's own listener (core/bus.c) is the
   one that delivers to subscribers. */
typedef void evlog_append_fn(uint64_t last, void *arg);

/* Opens (creates) the log: reads DIR, cuts a torn tail, keeps the epoch
   or makes a new one if the log is gone. base: the loop. Returns 0, or
   -1 with err (then nothing is logged: evlog_on() is false). */
int	evlog_open(struct event_base *, const struct evlog_opts *,
	    struct qmp_error *err);
/* Writes what is pending and closes; safe if never opened. Forgets the
   listeners and the full callback. */
void	evlog_close(void);
bool	evlog_on(void);
void	evlog_set_full_cb(evlog_full_fn *, void *arg);
/* Up to EVLOG_LISTENERS_MAX listeners; returns 0 or -1 (too many). */
#define EVLOG_LISTENERS_MAX	4
int	evlog_listen(evlog_append_fn *, void *arg);

/* Appends one event and fills rec with its record (valid until the next
   call into this module). vm may be NULL; event is the name; body is the
   JSON object's text WITHOUT its closing brace (e.g.
   {"event":"X","data":{}), to which ,"seq":N,"epoch":"E"} and \r\n are
   added. Returns 0, -1 if the log is off or the text too long. */
int	evlog_append(const char *vm, const char *event, const char *body,
	    size_t blen, struct evlog_rec *rec);

/* Writes the pending batch and tells the listeners now, instead of
   later in the loop pass: before a reply that must follow the events
   its command caused, and before clients are shut down. Nothing to do
   (one test) when nothing is pending. */
void	evlog_flush(void);

const char *evlog_epoch(void);	/* "" when off */
uint64_t evlog_first(void);	/* oldest seq held (memory or disk); 0: none */
uint64_t evlog_last(void);	/* newest seq given; 0: none yet */
/* Newest seq written and told to the listeners: cursors read up to it
   (a subscriber or publisher never sees a record a kill -9 can lose). */
uint64_t evlog_written(void);
uint64_t evlog_mem_first(void);	/* oldest seq in memory; 0: none */
/* Bytes on disk and in memory, and the number of segment files; in
   write-ahead mode after waiting for the writer to write what it was
   handed (exact, for an operator's query; not for a hot path). */
void	evlog_stats(uint64_t *disk_bytes, uint64_t *mem_bytes,
	    size_t *segments);
/* Whether the disk log stopped (full disk, write error). */
bool	evlog_disk_stopped(void);

/*
 * A reader: the records after seq `after`, in order, from memory when
 * held there, else from the segments. A publisher reads in bounded
 * batches: call evlog_cur_next until it returns 0, or stop at any point
 * and go on later (the cursor stays valid while the log is open).
 */
struct evlog_cur;
struct evlog_cur *evlog_cur_new(uint64_t after);
void	evlog_cur_free(struct evlog_cur *);
/* 1: rec filled (borrowed until the next step or free); 0: caught up
   with evlog_written(); 2: records were lost (deleted by a cap, corrupt):
   *lost_from..*lost_to (inclusive) will never come, the cursor moved
   past them. */
#define EVLOG_CUR_REC	1
#define EVLOG_CUR_END	0
#define EVLOG_CUR_LOST	2
int	evlog_cur_next(struct evlog_cur *, struct evlog_rec *rec,
	    uint64_t *lost_from, uint64_t *lost_to);
/* The seq the next successful step will return. */
uint64_t evlog_cur_pos(const struct evlog_cur *);

/* Tests and tools: the CRC of the segment frames (IEEE crc32). */
uint32_t evlog_crc32(uint32_t crc, const void *, size_t);

#endif
