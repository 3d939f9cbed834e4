/*
 * The event log: a memory ring of records (one allocation each, found by
 * seq in O(1) since seqs in memory are contiguous) and append-only
 * segment files. Appends go to the ring and to a pending buffer of
 * frames; one event activated in the loop pass of the first append
 * writes the buffer (one write()) and then tells the listeners, so a
 * subscriber is only ever sent what the kernel already holds for the
 * file: a kill -9 never loses an event someone saw.
 */
#include "config.h"

#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "broker/core/evlog.h"
#include "broker/core/log.h"

#define EVLOG_HDR	16		/* u32 len, u32 crc, u64 seq */
#define EVLOG_SEG_NAME	20		/* digits of a segment's name */
#define EVLOG_READ_BUF	(256 * 1024)
#define EVLOG_AGE_TICK	60		/* s between age checks */
/* Writes at most this often: a flood becomes one write() per batch
   instead of one per loop pass, for at most this much more latency
   (a quiet log writes at once). */
#define EVLOG_FLUSH_GAP_US	500
/* The write-ahead files (opts.wal_dir): the loop begins the other one
   past this size, once all of the other is in the segments. */
#define EVLOG_WAL_SWITCH	(4u * 1024 * 1024)
/* Batches handed to the writer and not yet written: past this the loop
   waits for the disk (the memory the ring keeps for them is bounded). */
#define EVLOG_QUEUE_MAX		(64u * 1024 * 1024)

/* A batch of frames on its way to the segments, loop -> writer -> loop. */
struct batch {
	struct batch	*next;
	char		*buf;
	size_t		 len, cap;
	uint64_t	 first, last;
	bool		 newseg;	/* the writer began segment `first` */
	bool		 failed;	/* not written; why says why */
	char		 why[128];
};

struct erec {
	uint64_t	 seq;
	uint32_t	 plen;		/* payload: vm\0 event\0 text\r\n */
	uint16_t	 vlen;		/* 0: no VM */
	uint16_t	 elen;
	char		 p[];
};

struct seg {
	uint64_t	 first;
	uint64_t	 bytes;
	time_t		 mtime;
};

static struct {
	bool		 on;
	struct event_base *base;
	struct evlog_opts o;
	char		*dir;
	char		 epoch[EVLOG_EPOCH_MAX];
	uint64_t	 next;		/* seq the next append gets */

	/* memory ring */
	struct erec	**ring;
	size_t		 rcap, rhead, rcount;	/* rcap a power of two */
	uint64_t	 mem_bytes;
	uint64_t	 notified;	/* last seq the listeners heard */

	/* disk */
	bool		 disk;		/* writing segments */
	bool		 stopped;	/* a write failed: disk log stopped */
	int		 wfd;
	struct seg	*segs;
	size_t		 nsegs;
	uint64_t	 disk_bytes;
	uint64_t	 on_disk;	/* last seq written */
	char		*pend;
	size_t		 plen, pcap;
	uint64_t	 pend_first;
	char		 stop_why[128];

	struct event	*flush_ev;
	struct event	*age_ev;
	bool		 flush_on;
	struct timeval	 last_flush;
	evlog_full_fn	*full_cb;
	void		*full_arg;

	/* write-ahead mode (opts.wal_dir): the loop writes WAL files, a
	   writer thread the segments */
	bool		 async;
	bool		 epoch_kept;	/* open found the log's epoch */
	int		 wal_fd[2];
	char		*wal_path[2];
	size_t		 wal_bytes[2];
	uint64_t	 wal_last[2];	/* newest seq in each */
	int		 wal_act;	/* the one appended to */
	int		 efd;		/* writer -> loop: batches done */
	/* a written batch's buffer, the next pending one: no malloc and
	   free of it (and of the heap's top, brk) per batch */
	char		*spare;
	size_t		 spare_cap;
	struct event	*done_ev;
	bool		 thr_on;
	pthread_t	 thr;
	struct {
		evlog_append_fn	*fn;
		void		*arg;
	} lis[EVLOG_LISTENERS_MAX];
	size_t		 nlis;
} L = { .wfd = -1, .wal_fd = { -1, -1 }, .efd = -1 };

/* Shared by the loop and the writer thread, under W.mtx. The writer
   owns the segment fd (L.wfd) and its size while it runs. */
static struct {
	pthread_mutex_t	 mtx;
	pthread_cond_t	 work;		/* a batch to write, or quit */
	pthread_cond_t	 room;		/* queued bytes went down */
	struct batch	*q, **qtail;	/* to write, in order */
	struct batch	*done, **dtail;	/* written (or failed), in order */
	size_t		 qbytes;
	bool		 quit;
	bool		 busy;		/* a batch is being written */
	bool		 failed;	/* the writer stopped */
	uint64_t	 segbytes;	/* of the segment it writes */
} W = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
    PTHREAD_COND_INITIALIZER, NULL, &W.q, NULL, &W.done, 0, false, false,
    false, 0 };

struct evlog_cur {
	uint64_t	 pos;		/* next seq to return */
	int		 fd;		/* open segment, -1: none */
	uint64_t	 seg_first;
	uint64_t	 seg_end;	/* first seq after it; 0: unknown */
	char		*buf;
	size_t		 cap, have, off;
};

static int	evlog_cur_frame(struct evlog_cur *, uint64_t *, char **,
	    uint32_t *);

/* ---- crc32 (IEEE, reflected), slicing by 8: every record is checked
   on replay from disk, so this is on the replay's hot path ---- */

static uint32_t	crc_tab[8][256];

static void
evlog_crc_init(void)
{
	uint32_t	c;
	int		i, k;

	for (i = 0; i < 256; i++) {
		c = (uint32_t)i;
		for (k = 0; k < 8; k++)
			c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
		crc_tab[0][i] = c;
	}
	for (i = 0; i < 256; i++)
		for (k = 1; k < 8; k++)
			crc_tab[k][i] = (crc_tab[k - 1][i] >> 8) ^
			    crc_tab[0][crc_tab[k - 1][i] & 0xff];
}

uint32_t
evlog_crc32(uint32_t crc, const void *buf, size_t len)
{
	const unsigned char	*p = buf;
	uint32_t		 a, b;

	if (crc_tab[0][1] == 0)
		evlog_crc_init();
	crc = ~crc;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	while (len >= 8) {
		memcpy(&a, p, 4);
		memcpy(&b, p + 4, 4);
		a ^= crc;
		crc = crc_tab[7][a & 0xff] ^ crc_tab[6][(a >> 8) & 0xff] ^
		    crc_tab[5][(a >> 16) & 0xff] ^ crc_tab[4][a >> 24] ^
		    crc_tab[3][b & 0xff] ^ crc_tab[2][(b >> 8) & 0xff] ^
		    crc_tab[1][(b >> 16) & 0xff] ^ crc_tab[0][b >> 24];
		p += 8;
		len -= 8;
	}
#endif
	while (len-- > 0)
		crc = crc_tab[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return (~crc);
}

static uint32_t
evlog_frame_crc(uint64_t seq, const void *payload, size_t len)
{
	return (evlog_crc32(evlog_crc32(0, &seq, sizeof seq), payload, len));
}

/* ---- records ---- */

static void
evlog_fill(struct evlog_rec *rec, uint64_t seq, const char *p, size_t plen,
    size_t vlen, size_t elen)
{
	rec->seq = seq;
	rec->vm = vlen > 0 ? p : NULL;
	rec->event = p + vlen + 1;
	rec->json = p + vlen + 1 + elen + 1;
	rec->len = plen - vlen - elen - 2 - 2;
}

/* Splits a payload read from disk; false if it is not one. */
static bool
evlog_split(const char *p, size_t plen, size_t *vlen, size_t *elen)
{
	const char	*z, *z2;

	if ((z = memchr(p, '\0', plen)) == NULL)
		return (false);
	*vlen = (size_t)(z - p);
	if ((z2 = memchr(z + 1, '\0', plen - *vlen - 1)) == NULL)
		return (false);
	*elen = (size_t)(z2 - z - 1);
	return (*elen > 0 && plen - *vlen - *elen - 2 >= 4 &&
	    p[plen - 2] == '\r' && p[plen - 1] == '\n');
}

static struct erec *
evlog_ring_at(uint64_t seq)
{
	uint64_t	first;

	if (L.rcount == 0)
		return (NULL);
	first = L.ring[L.rhead]->seq;
	if (seq < first || seq >= first + L.rcount)
		return (NULL);
	return (L.ring[(L.rhead + (size_t)(seq - first)) & (L.rcap - 1)]);
}

static int
evlog_ring_push(struct erec *r)
{
	struct erec	**n;
	size_t		  i;

	if (L.rcount == L.rcap) {
		size_t ncap = L.rcap == 0 ? 1024 : L.rcap * 2;

		if ((n = calloc(ncap, sizeof *n)) == NULL)
			return (-1);
		for (i = 0; i < L.rcount; i++)
			n[i] = L.ring[(L.rhead + i) & (L.rcap - 1)];
		free(L.ring);
		L.ring = n;
		L.rcap = ncap;
		L.rhead = 0;
	}
	L.ring[(L.rhead + L.rcount) & (L.rcap - 1)] = r;
	L.rcount++;
	L.mem_bytes += sizeof *r + r->plen;
	return (0);
}

/* Only records every listener heard go: the ring is also the queue
   between an append and its fan-out. */
static void
evlog_ring_trim(void)
{
	struct erec	*r;

	while (L.rcount > 1 && L.mem_bytes > L.o.mem_bytes) {
		r = L.ring[L.rhead];
		/* with a writer, what it has not written is read from here:
		   a cursor never reads a segment past L.on_disk */
		if (r->seq > L.notified || (L.async && L.disk &&
		    r->seq > L.on_disk))
			break;
		L.mem_bytes -= sizeof *r + r->plen;
		free(r);
		L.rhead = (L.rhead + 1) & (L.rcap - 1);
		L.rcount--;
	}
}

/* ---- disk ---- */

static char *
evlog_path(const char *name)
{
	char	*p;

	if (asprintf(&p, "%s/%s", L.dir, name) == -1)
		return (NULL);
	return (p);
}

static char *
evlog_seg_path(uint64_t first)
{
	char	*p;

	if (asprintf(&p, "%s/%020" PRIu64 ".seg", L.dir, first) == -1)
		return (NULL);
	return (p);
}

static void
evlog_seg_unlink(size_t i)
{
	char	*p;

	if ((p = evlog_seg_path(L.segs[i].first)) != NULL) {
		if (unlink(p) == -1 && errno != ENOENT)
			log_warn("event log: unlink %s: %s", p,
			    strerror(errno));
		free(p);
	}
	L.disk_bytes -= L.segs[i].bytes;
	memmove(&L.segs[i], &L.segs[i + 1],
	    (L.nsegs - i - 1) * sizeof *L.segs);
	L.nsegs--;
}

/* Never the segment being written. */
static void
evlog_caps(void)
{
	time_t	now = time(NULL);

	while (L.nsegs > 1 && L.disk_bytes > L.o.max_bytes)
		evlog_seg_unlink(0);
	while (L.nsegs > 1 && L.o.max_age_s > 0 &&
	    L.segs[0].mtime + L.o.max_age_s < now)
		evlog_seg_unlink(0);
}

static int
evlog_seg_new(uint64_t first, struct qmp_error *err)
{
	struct seg	*n;
	char		*p;
	int		 fd;

	if ((n = reallocarray(L.segs, L.nsegs + 1, sizeof *n)) == NULL) {
		qmp_error_set(err, QMP_CLS_GENERIC, "out of memory");
		return (-1);
	}
	L.segs = n;
	if ((p = evlog_seg_path(first)) == NULL) {
		qmp_error_set(err, QMP_CLS_GENERIC, "out of memory");
		return (-1);
	}
	fd = open(p, O_WRONLY|O_CREAT|O_APPEND|O_CLOEXEC, 0600);
	if (fd == -1) {
		qmp_error_set(err, QMP_CLS_GENERIC, "open %s: %s", p,
		    strerror(errno));
		free(p);
		return (-1);
	}
	free(p);
	if (L.wfd != -1)
		close(L.wfd);
	L.wfd = fd;
	L.segs[L.nsegs].first = first;
	L.segs[L.nsegs].bytes = 0;
	L.segs[L.nsegs].mtime = time(NULL);
	L.nsegs++;
	return (0);
}

static void
evlog_stop_disk(const char *why)
{
	char	*p;

	L.stopped = true;
	L.disk = false;
	snprintf(L.stop_why, sizeof L.stop_why, "%s", why);
	log_err("event log: writing %s stopped at seq %" PRIu64 ": %s; events "
	    "are numbered and kept in memory only from now on", L.dir,
	    L.on_disk, why);
	/* The log on disk no longer holds every seq: the next start must
	   begin a new epoch. Unlinking needs no free space. */
	if ((p = evlog_path("epoch")) != NULL) {
		unlink(p);
		free(p);
	}
	L.plen = 0;
}

/* ---- the writer thread (write-ahead mode) ---- */

/* On the writer: one batch into the segments, rotating first if the
   segment is full. Touches only W.segbytes, L.wfd and L's constants. */
static void
evlog_writer_batch(struct batch *b)
{
	size_t	 off = 0;
	ssize_t	 n;
	char	*p;
	int	 fd;

	if (W.failed) {
		b->failed = true;
		return;
	}
	if (W.segbytes >= L.o.segment_bytes) {
		if ((p = evlog_seg_path(b->first)) == NULL ||
		    (fd = open(p, O_WRONLY|O_CREAT|O_APPEND|O_CLOEXEC,
		    0600)) == -1) {
			snprintf(b->why, sizeof b->why, "open %s: %s",
			    p != NULL ? p : "segment", p != NULL ?
			    strerror(errno) : "out of memory");
			free(p);
			goto fail;
		}
		free(p);
		close(L.wfd);
		L.wfd = fd;
		W.segbytes = 0;
		b->newseg = true;
	}
	while (off < b->len) {
		n = write(L.wfd, b->buf + off, b->len - off);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			/* the segment ends on a whole record; a torn frame
			   would also be cut at the next start (so a failed
			   ftruncate needs no word: log.c is the loop's) */
			snprintf(b->why, sizeof b->why, "%s", n == -1 ?
			    strerror(errno) : "short write");
			if (off > 0)
				(void)ftruncate(L.wfd, (off_t)W.segbytes);
			goto fail;
		}
		off += (size_t)n;
	}
	W.segbytes += b->len;
	return;
fail:
	b->failed = true;
	W.failed = true;
}

static void *
evlog_writer(void *arg)
{
	struct batch	*b;
	uint64_t	 one = 1;

	pthread_mutex_lock(&W.mtx);
	for (;;) {
		while (W.q == NULL && !W.quit)
			pthread_cond_wait(&W.work, &W.mtx);
		if ((b = W.q) == NULL)
			break;
		if ((W.q = b->next) == NULL)
			W.qtail = &W.q;
		W.busy = true;
		pthread_mutex_unlock(&W.mtx);
		evlog_writer_batch(b);
		pthread_mutex_lock(&W.mtx);
		W.qbytes -= b->len;
		W.busy = false;
		pthread_cond_broadcast(&W.room);
		b->next = NULL;
		*W.dtail = b;
		W.dtail = &b->next;
		/* Not under the lock: preempted in a syscall while holding
		   it, the writer would stall the loop (perf trace: futex
		   waits of ms on the loop). A failed wakeup is found by the
		   next one, or at close. */
		pthread_mutex_unlock(&W.mtx);
		(void)write(L.efd, &one, sizeof one);
		pthread_mutex_lock(&W.mtx);
	}
	pthread_mutex_unlock(&W.mtx);
	return (NULL);
}

/* On the loop: what the writer finished moves L.on_disk, the segment
   list and the sizes; a WAL file wholly on disk is emptied. */
static void
evlog_reap(void)
{
	struct batch	*b, *list;
	struct seg	*n;
	bool		 stopped = L.stopped;
	int		 i;

	pthread_mutex_lock(&W.mtx);
	list = W.done;
	W.done = NULL;
	W.dtail = &W.done;
	pthread_mutex_unlock(&W.mtx);
	while ((b = list) != NULL) {
		list = b->next;
		if (b->failed && L.disk)
			evlog_stop_disk(b->why[0] != '\0' ? b->why :
			    "write error");
		else if (L.disk && b->newseg && (n = reallocarray(L.segs,
		    L.nsegs + 1, sizeof *n)) == NULL)
			evlog_stop_disk("out of memory");
		else if (L.disk) {
			if (b->newseg) {
				L.segs = n;
				L.segs[L.nsegs].first = b->first;
				L.segs[L.nsegs].bytes = 0;
				L.nsegs++;
			}
			L.segs[L.nsegs - 1].bytes += b->len;
			L.segs[L.nsegs - 1].mtime = time(NULL);
			L.disk_bytes += b->len;
			L.on_disk = b->last;
		}
		if (L.spare == NULL) {
			L.spare = b->buf;
			L.spare_cap = b->cap;
		} else
			free(b->buf);
		free(b);
	}
	for (i = 0; i < 2 && L.disk; i++) {
		if (L.wal_bytes[i] > 0 && L.on_disk >= L.wal_last[i] &&
		    (i != L.wal_act || L.wal_bytes[i] >= EVLOG_WAL_SWITCH)) {
			if (ftruncate(L.wal_fd[i], 0) == -1)
				log_warn("event log: ftruncate %s: %s",
				    L.wal_path[i], strerror(errno));
			L.wal_bytes[i] = 0;
		}
	}
	if (L.disk)
		evlog_caps();
	if (L.stopped && !stopped && L.full_cb != NULL)
		L.full_cb(L.stop_why, L.on_disk, L.full_arg);
	evlog_ring_trim();
}

static void
evlog_done_cb(evutil_socket_t fd, short what, void *arg)
{
	uint64_t	v;

	if (read(fd, &v, sizeof v) == -1 && errno != EAGAIN)
		log_warn("event log: eventfd: %s", strerror(errno));
	evlog_reap();
}

static int
evlog_wal_write(int fd, const char *buf, size_t len)
{
	size_t	off = 0;
	ssize_t	n;

	while (off < len) {
		n = write(fd, buf + off, len - off);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = ENOSPC;
			return (-1);
		}
		off += (size_t)n;
	}
	return (0);
}

/* The loop's write in write-ahead mode: the pending frames into the
   WAL file (kept by the kernel from here: a kill -9 loses none of it),
   then to the writer. */
static void
evlog_wal_pending(void)
{
	struct batch	*b;
	char		 why[160];
	int		 o = 1 - L.wal_act;

	if (L.wal_bytes[L.wal_act] >= EVLOG_WAL_SWITCH && L.wal_bytes[o] == 0)
		L.wal_act = o;
	if (evlog_wal_write(L.wal_fd[L.wal_act], L.pend, L.plen) == -1) {
		snprintf(why, sizeof why, "%s: %s", L.wal_path[L.wal_act],
		    strerror(errno));
		if (ftruncate(L.wal_fd[L.wal_act],
		    (off_t)L.wal_bytes[L.wal_act]) == -1)
			log_warn("event log: ftruncate %s: %s",
			    L.wal_path[L.wal_act], strerror(errno));
		evlog_stop_disk(why);
		return;
	}
	L.wal_bytes[L.wal_act] += L.plen;
	L.wal_last[L.wal_act] = L.next - 1;
	if ((b = calloc(1, sizeof *b)) == NULL) {
		evlog_stop_disk("out of memory");
		return;
	}
	b->buf = L.pend;
	b->len = L.plen;
	b->cap = L.pcap;
	b->first = L.pend_first;
	b->last = L.next - 1;
	L.pend = L.spare;
	L.pcap = L.spare_cap;
	L.plen = 0;
	L.spare = NULL;
	L.spare_cap = 0;
	pthread_mutex_lock(&W.mtx);
	/* the disk is far behind: wait for it rather than hold more */
	while (W.qbytes > EVLOG_QUEUE_MAX)
		pthread_cond_wait(&W.room, &W.mtx);
	*W.qtail = b;
	W.qtail = &b->next;
	W.qbytes += b->len;
	pthread_cond_signal(&W.work);
	pthread_mutex_unlock(&W.mtx);
}

static void
evlog_write_pending(void)
{
	struct qmp_error	 err = { 0 };
	size_t			 off = 0;
	ssize_t			 n;
	struct seg		*cur;

	if (!L.disk || L.plen == 0)
		return;
	if (L.async) {
		evlog_wal_pending();
		return;
	}
	cur = &L.segs[L.nsegs - 1];
	if (cur->bytes >= L.o.segment_bytes) {
		if (evlog_seg_new(L.pend_first, &err) == -1) {
			evlog_stop_disk(err.desc);
			return;
		}
		cur = &L.segs[L.nsegs - 1];
	}
	while (off < L.plen) {
		n = write(L.wfd, L.pend + off, L.plen - off);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			/* Cut what went in, so the file ends on a whole
			   record; a torn frame would also be cut at the
			   next start. */
			if (off > 0 && ftruncate(L.wfd, (off_t)cur->bytes) ==
			    -1)
				log_warn("event log: ftruncate: %s",
				    strerror(errno));
			evlog_stop_disk(n == -1 ? strerror(errno) :
			    "short write");
			return;
		}
		off += (size_t)n;
	}
	cur->bytes += L.plen;
	cur->mtime = time(NULL);
	L.disk_bytes += L.plen;
	L.on_disk = L.next - 1;
	L.plen = 0;
	evlog_caps();
}

static void
evlog_flush_cb(evutil_socket_t fd, short what, void *arg)
{
	uint64_t	last = L.next - 1;
	size_t		i;
	bool		stopped = L.stopped;

	L.flush_on = false;
	event_base_gettimeofday_cached(L.base, &L.last_flush);
	evlog_write_pending();
	if (L.stopped && !stopped && L.full_cb != NULL)
		L.full_cb(L.stop_why, L.on_disk, L.full_arg);
	if (last > L.notified) {
		/* first: cursors of the listeners may read up to it */
		L.notified = last;
		for (i = 0; i < L.nlis; i++)
			L.lis[i].fn(last, L.lis[i].arg);
	}
	evlog_ring_trim();
}

void
evlog_flush(void)
{
	if (!L.on || !L.flush_on)
		return;
	event_del(L.flush_ev);
	evlog_flush_cb(-1, 0, NULL);
}

static void
evlog_age_cb(evutil_socket_t fd, short what, void *arg)
{
	evlog_caps();
}

/* ---- open: find the segments, cut a torn tail, epoch ---- */

static int
evlog_seg_cmp(const void *a, const void *b)
{
	const struct seg	*x = a, *y = b;

	return (x->first < y->first ? -1 : x->first > y->first);
}

static int
evlog_scan_dir(struct qmp_error *err)
{
	DIR		*d;
	struct dirent	*de;
	struct stat	 st;
	struct seg	*n;
	char		*p, *end;
	size_t		 len;
	unsigned long long v;

	if ((d = opendir(L.dir)) == NULL) {
		qmp_error_set(err, QMP_CLS_GENERIC, "opendir %s: %s", L.dir,
		    strerror(errno));
		return (-1);
	}
	while ((de = readdir(d)) != NULL) {
		len = strlen(de->d_name);
		if (len != EVLOG_SEG_NAME + 4 ||
		    strcmp(de->d_name + EVLOG_SEG_NAME, ".seg") != 0)
			continue;
		errno = 0;
		v = strtoull(de->d_name, &end, 10);
		if (errno != 0 || end != de->d_name + EVLOG_SEG_NAME || v == 0)
			continue;
		if ((p = evlog_path(de->d_name)) == NULL)
			continue;
		if (stat(p, &st) == -1 || !S_ISREG(st.st_mode)) {
			free(p);
			continue;
		}
		free(p);
		if ((n = reallocarray(L.segs, L.nsegs + 1, sizeof *n)) ==
		    NULL) {
			closedir(d);
			qmp_error_set(err, QMP_CLS_GENERIC, "out of memory");
			return (-1);
		}
		L.segs = n;
		L.segs[L.nsegs].first = v;
		L.segs[L.nsegs].bytes = (uint64_t)st.st_size;
		L.segs[L.nsegs].mtime = st.st_mtime;
		L.disk_bytes += (uint64_t)st.st_size;
		L.nsegs++;
	}
	closedir(d);
	if (L.nsegs > 1)
		qsort(L.segs, L.nsegs, sizeof *L.segs, evlog_seg_cmp);
	return (0);
}

/*
 * Reads the frames of fd from its start; returns the offset after the
 * last whole, valid, in-sequence record and its seq in *last (first - 1
 * if none).
 */
static off_t
evlog_scan_seg(int fd, uint64_t first, uint64_t *last)
{
	char		*buf;
	size_t		 have = 0, pos = 0, cap = EVLOG_READ_BUF;
	off_t		 good = 0;
	uint64_t	 want = first, seq;
	uint32_t	 plen, crc;
	ssize_t		 n;
	size_t		 vl, el;

	*last = first - 1;
	if ((buf = malloc(cap)) == NULL)
		return (0);
	for (;;) {
		if (have - pos < EVLOG_HDR ||
		    (memcpy(&plen, buf + pos, 4), have - pos < EVLOG_HDR +
		    (size_t)plen)) {
			/* refill */
			memmove(buf, buf + pos, have - pos);
			have -= pos;
			pos = 0;
			if (have >= EVLOG_HDR) {
				memcpy(&plen, buf, 4);
				if (plen > EVLOG_EVENT_MAX + 2 * 256)
					break;
				if (EVLOG_HDR + (size_t)plen > cap) {
					char *nb = realloc(buf, EVLOG_HDR +
					    plen);
					if (nb == NULL)
						break;
					buf = nb;
					cap = EVLOG_HDR + plen;
				}
			}
			n = read(fd, buf + have, cap - have);
			if (n == -1 && errno == EINTR)
				continue;
			if (n <= 0)
				break;
			have += (size_t)n;
			continue;
		}
		memcpy(&crc, buf + pos + 4, 4);
		memcpy(&seq, buf + pos + 8, 8);
		if (seq != want || plen > EVLOG_EVENT_MAX + 2 * 256 ||
		    evlog_frame_crc(seq, buf + pos + EVLOG_HDR, plen) != crc ||
		    !evlog_split(buf + pos + EVLOG_HDR, plen, &vl, &el))
			break;
		*last = seq;
		want++;
		pos += EVLOG_HDR + plen;
		good += (off_t)(EVLOG_HDR + plen);
	}
	free(buf);
	return (good);
}

static int
evlog_epoch_load(void)
{
	char	*p, buf[EVLOG_EPOCH_MAX + 2];
	int	 fd;
	ssize_t	 n;
	size_t	 i;

	if ((p = evlog_path("epoch")) == NULL)
		return (-1);
	fd = open(p, O_RDONLY|O_CLOEXEC);
	free(p);
	if (fd == -1)
		return (-1);
	n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return (-1);
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	if (strlen(buf) == 0 || strlen(buf) >= EVLOG_EPOCH_MAX)
		return (-1);
	for (i = 0; buf[i] != '\0'; i++) {
		if (!((buf[i] >= '0' && buf[i] <= '9') ||
		    (buf[i] >= 'a' && buf[i] <= 'f')))
			return (-1);
	}
	memcpy(L.epoch, buf, strlen(buf) + 1);
	return (0);
}

static int
evlog_epoch_new(struct qmp_error *err)
{
	unsigned char	r[8];
	char		*p = NULL, *tmp = NULL, line[EVLOG_EPOCH_MAX + 1];
	int		 fd = -1, rc = -1;
	size_t		 i;
	uint64_t	 t;

	if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) {
		t = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
		memcpy(r, &t, sizeof r);
	}
	for (i = 0; i < sizeof r; i++)
		snprintf(L.epoch + 2 * i, 3, "%02x", r[i]);
	if (L.dir == NULL)
		return (0);
	if ((p = evlog_path("epoch")) == NULL ||
	    (tmp = evlog_path("epoch.tmp")) == NULL) {
		qmp_error_set(err, QMP_CLS_GENERIC, "out of memory");
		goto out;
	}
	snprintf(line, sizeof line, "%s\n", L.epoch);
	if ((fd = open(tmp, O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC, 0600)) == -1 ||
	    write(fd, line, strlen(line)) != (ssize_t)strlen(line) ||
	    fsync(fd) == -1 || rename(tmp, p) == -1) {
		qmp_error_set(err, QMP_CLS_GENERIC, "writing %s: %s", p,
		    strerror(errno));
		unlink(tmp);
		goto out;
	}
	rc = 0;
out:
	if (fd != -1)
		close(fd);
	free(p);
	free(tmp);
	return (rc);
}

static int
evlog_open_disk(struct qmp_error *err)
{
	struct seg	*s;
	char		*p;
	int		 fd;
	off_t		 good;
	uint64_t	 last, next = 1;

	if (mkdir(L.dir, 0700) == -1 && errno != EEXIST) {
		qmp_error_set(err, QMP_CLS_GENERIC, "mkdir %s: %s", L.dir,
		    strerror(errno));
		return (-1);
	}
	if (evlog_scan_dir(err) == -1)
		return (-1);
	/* The newest segment: cut what is torn or corrupt at its end. An
	   empty one still says where numbering goes on (its name). */
	if (L.nsegs > 0) {
		s = &L.segs[L.nsegs - 1];
		if ((p = evlog_seg_path(s->first)) == NULL ||
		    (fd = open(p, O_RDWR|O_CLOEXEC)) == -1) {
			qmp_error_set(err, QMP_CLS_GENERIC, "open %s: %s",
			    p != NULL ? p : "segment", strerror(errno));
			free(p);
			return (-1);
		}
		good = evlog_scan_seg(fd, s->first, &last);
		if ((uint64_t)good < s->bytes) {
			log_warn("event log: %s: cut %" PRIu64 " bytes of a "
			    "torn or corrupt tail after seq %" PRIu64, p,
			    s->bytes - (uint64_t)good, last);
			if (ftruncate(fd, good) == -1)
				log_warn("event log: ftruncate %s: %s", p,
				    strerror(errno));
			L.disk_bytes -= s->bytes - (uint64_t)good;
			s->bytes = (uint64_t)good;
		}
		close(fd);
		free(p);
		next = last + 1;
	}
	if (evlog_epoch_load() == 0)
		L.epoch_kept = true;
	else {
		/* The log is lost (first start, or its epoch file gone
		   with a stopped disk log): a new epoch, and what is left
		   belongs to no epoch anyone can name. Numbering goes on,
		   which costs nothing and helps a human reader. */
		if (L.nsegs > 0)
			log_warn("event log: %s has no epoch file: starting "
			    "a new epoch, %zu old segments removed", L.dir,
			    L.nsegs);
		while (L.nsegs > 0)
			evlog_seg_unlink(0);
		if (evlog_epoch_new(err) == -1)
			return (-1);
	}
	L.next = next;
	L.on_disk = next - 1;
	/* Append to the newest segment, or begin one. */
	if (L.nsegs > 0) {
		s = &L.segs[L.nsegs - 1];
		if ((p = evlog_seg_path(s->first)) == NULL)
			return (-1);
		L.wfd = open(p, O_WRONLY|O_APPEND|O_CLOEXEC);
		if (L.wfd == -1) {
			qmp_error_set(err, QMP_CLS_GENERIC, "open %s: %s", p,
			    strerror(errno));
			free(p);
			return (-1);
		}
		free(p);
	} else if (evlog_seg_new(next, err) == -1)
		return (-1);
	L.disk = true;
	evlog_caps();
	return (0);
}

/*
 * Write-ahead mode: what the WAL files hold past the segments' last
 * whole record (the writer had not written it when the broker died) is
 * appended to the segments now, then they start empty. Frames are taken
 * only in seq order from L.next on: a file that starts later is read
 * again after the other one.
 */
static int
evlog_wal_replay(int fd, struct evlog_cur *c)
{
	struct seg	*cur = &L.segs[L.nsegs - 1];
	uint64_t	 seq;
	uint32_t	 plen;
	char		*p;
	size_t		 vl, el;
	int		 took = 0;

	if (lseek(fd, 0, SEEK_SET) == -1)
		return (0);
	c->fd = fd;
	c->have = c->off = 0;
	while (evlog_cur_frame(c, &seq, &p, &plen) == 1) {
		if (seq < L.next)
			continue;
		if (seq > L.next || !evlog_split(p, plen, &vl, &el))
			break;
		if (evlog_wal_write(L.wfd, p - EVLOG_HDR, EVLOG_HDR + plen) ==
		    -1) {
			log_err("event log: replaying the write-ahead file: "
			    "%s", strerror(errno));
			break;
		}
		cur->bytes += EVLOG_HDR + plen;
		L.disk_bytes += EVLOG_HDR + plen;
		L.on_disk = L.next++;
		took++;
	}
	c->fd = -1;
	return (took);
}

static int
evlog_wal_open(const char *wal_dir, struct qmp_error *err)
{
	struct evlog_cur	c = { .fd = -1 };
	sigset_t		all, old;
	uint64_t		before = L.next;
	int			i, r;

	for (i = 0; i < 2; i++) {
		if (asprintf(&L.wal_path[i], "%s/events.wal.%d", wal_dir,
		    i) == -1) {
			L.wal_path[i] = NULL;
			qmp_error_set(err, QMP_CLS_GENERIC, "out of memory");
			return (-1);
		}
		if ((L.wal_fd[i] = open(L.wal_path[i], O_RDWR|O_CREAT|
		    O_APPEND|O_CLOEXEC, 0600)) == -1) {
			qmp_error_set(err, QMP_CLS_GENERIC, "open %s: %s",
			    L.wal_path[i], strerror(errno));
			return (-1);
		}
	}
	if (L.epoch_kept && L.nsegs > 0 &&
	    (c.buf = malloc(EVLOG_READ_BUF)) != NULL) {
		c.cap = EVLOG_READ_BUF;
		do {
			r = evlog_wal_replay(L.wal_fd[0], &c);
			r += evlog_wal_replay(L.wal_fd[1], &c);
		} while (r > 0);
		free(c.buf);
		if (L.next > before)
			log_warn("event log: seq %" PRIu64 "..%" PRIu64 " taken "
			    "from the write-ahead files into the segments",
			    before, L.next - 1);
	}
	for (i = 0; i < 2; i++) {
		if (ftruncate(L.wal_fd[i], 0) == -1) {
			qmp_error_set(err, QMP_CLS_GENERIC, "ftruncate %s: %s",
			    L.wal_path[i], strerror(errno));
			return (-1);
		}
	}
	W.segbytes = L.segs[L.nsegs - 1].bytes;
	W.failed = W.quit = false;
	if ((L.efd = eventfd(0, EFD_NONBLOCK|EFD_CLOEXEC)) == -1 ||
	    (L.done_ev = event_new(L.base, L.efd, EV_READ|EV_PERSIST,
	    evlog_done_cb, NULL)) == NULL || event_add(L.done_ev, NULL) ==
	    -1) {
		qmp_error_set(err, QMP_CLS_GENERIC, "eventfd: %s",
		    strerror(errno));
		return (-1);
	}
	/* signals are the loop's */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	r = pthread_create(&L.thr, NULL, evlog_writer, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r != 0) {
		qmp_error_set(err, QMP_CLS_GENERIC, "pthread_create: %s",
		    strerror(r));
		return (-1);
	}
	L.thr_on = true;
	L.async = true;
	return (0);
}

int
evlog_open(struct event_base *base, const struct evlog_opts *o,
    struct qmp_error *err)
{
	struct timeval	tv = { EVLOG_AGE_TICK, 0 };

	evlog_close();
	L.base = base;
	L.o = *o;
	if (L.o.mem_bytes == 0)
		L.o.mem_bytes = 1;
	L.next = 1;
	if (o->dir != NULL) {
		if ((L.dir = strdup(o->dir)) == NULL) {
			qmp_error_set(err, QMP_CLS_GENERIC, "out of memory");
			return (-1);
		}
		if (evlog_open_disk(err) == -1 || (o->wal_dir != NULL &&
		    evlog_wal_open(o->wal_dir, err) == -1)) {
			evlog_close();
			return (-1);
		}
	} else if (evlog_epoch_new(err) == -1)
		return (-1);
	L.notified = L.next - 1;
	if ((L.flush_ev = event_new(base, -1, 0, evlog_flush_cb, NULL)) ==
	    NULL || (L.age_ev = event_new(base, -1, EV_PERSIST, evlog_age_cb,
	    NULL)) == NULL || event_add(L.age_ev, &tv) == -1) {
		qmp_error_set(err, QMP_CLS_GENERIC, "out of memory");
		evlog_close();
		return (-1);
	}
	L.on = true;
	return (0);
}

void
evlog_close(void)
{
	int	i;

	if (L.on)
		evlog_write_pending();
	if (L.thr_on) {
		pthread_mutex_lock(&W.mtx);
		W.quit = true;
		pthread_cond_signal(&W.work);
		pthread_mutex_unlock(&W.mtx);
		pthread_join(L.thr, NULL);
		L.thr_on = false;
		evlog_reap();
	}
	for (i = 0; i < 2; i++) {
		/* all of it in the segments (or the log lost): no more use */
		if (L.wal_fd[i] != -1 && (L.wal_bytes[i] == 0 || !L.disk ||
		    L.on_disk >= L.wal_last[i]))
			unlink(L.wal_path[i]);
		if (L.wal_fd[i] != -1)
			close(L.wal_fd[i]);
		free(L.wal_path[i]);
	}
	if (L.done_ev != NULL)
		event_free(L.done_ev);
	if (L.efd != -1)
		close(L.efd);
	while (L.rcount > 0) {
		free(L.ring[L.rhead]);
		L.rhead = (L.rhead + 1) & (L.rcap - 1);
		L.rcount--;
	}
	free(L.ring);
	if (L.flush_ev != NULL)
		event_free(L.flush_ev);
	if (L.age_ev != NULL)
		event_free(L.age_ev);
	if (L.wfd != -1)
		close(L.wfd);
	free(L.segs);
	free(L.pend);
	free(L.spare);
	free(L.dir);
	memset(&L, 0, sizeof L);
	L.wfd = -1;
	L.wal_fd[0] = L.wal_fd[1] = L.efd = -1;
}

bool
evlog_on(void)
{
	return (L.on);
}

void
evlog_set_full_cb(evlog_full_fn *fn, void *arg)
{
	L.full_cb = fn;
	L.full_arg = arg;
}

int
evlog_listen(evlog_append_fn *fn, void *arg)
{
	if (L.nlis == EVLOG_LISTENERS_MAX)
		return (-1);
	L.lis[L.nlis].fn = fn;
	L.lis[L.nlis].arg = arg;
	L.nlis++;
	return (0);
}

static int
evlog_pend_add(const struct erec *r)
{
	size_t		need = EVLOG_HDR + r->plen;
	uint32_t	crc;
	char		*n;

	if (L.plen + need > L.pcap) {
		size_t ncap = L.pcap == 0 ? 65536 : L.pcap;

		while (ncap < L.plen + need)
			ncap *= 2;
		if ((n = realloc(L.pend, ncap)) == NULL)
			return (-1);
		L.pend = n;
		L.pcap = ncap;
	}
	if (L.plen == 0)
		L.pend_first = r->seq;
	crc = evlog_frame_crc(r->seq, r->p, r->plen);
	memcpy(L.pend + L.plen, &r->plen, 4);
	memcpy(L.pend + L.plen + 4, &crc, 4);
	memcpy(L.pend + L.plen + 8, &r->seq, 8);
	memcpy(L.pend + L.plen + EVLOG_HDR, r->p, r->plen);
	L.plen += need;
	return (0);
}

static void
evlog_schedule(void)
{
	struct timeval	now, d;
	long		us;

	L.flush_on = true;
	event_base_gettimeofday_cached(L.base, &now);
	timersub(&now, &L.last_flush, &d);
	us = d.tv_sec > 0 || d.tv_sec < 0 ? EVLOG_FLUSH_GAP_US :
	    (long)d.tv_usec;
	if (us >= EVLOG_FLUSH_GAP_US || d.tv_sec < 0) {
		event_active(L.flush_ev, 0, 1);
		return;
	}
	d.tv_sec = 0;
	d.tv_usec = EVLOG_FLUSH_GAP_US - us;
	if (event_add(L.flush_ev, &d) == -1)
		event_active(L.flush_ev, 0, 1);
}

int
evlog_append(const char *vm, const char *event, const char *body,
    size_t blen, struct evlog_rec *rec)
{
	struct erec	*r;
	size_t		 vlen = vm != NULL ? strlen(vm) : 0;
	size_t		 elen = strlen(event);
	char		 tail[80 + EVLOG_EPOCH_MAX];
	int		 tl;
	char		*t;

	if (!L.on || blen > EVLOG_EVENT_MAX || vlen > 255 || elen == 0 ||
	    elen > 255)
		return (-1);
	tl = snprintf(tail, sizeof tail, ",\"seq\":%" PRIu64 ",\"epoch\":\"%s\"}"
	    "\r\n", L.next, L.epoch);
	if ((r = malloc(sizeof *r + vlen + elen + 2 + blen + (size_t)tl)) ==
	    NULL)
		return (-1);
	r->seq = L.next;
	r->vlen = (uint16_t)vlen;
	r->elen = (uint16_t)elen;
	r->plen = (uint32_t)(vlen + elen + 2 + blen + (size_t)tl);
	t = r->p;
	if (vlen > 0)
		memcpy(t, vm, vlen);
	t[vlen] = '\0';
	memcpy(t + vlen + 1, event, elen + 1);
	t += vlen + elen + 2;
	memcpy(t, body, blen);
	memcpy(t + blen, tail, (size_t)tl);
	if (evlog_ring_push(r) == -1) {
		free(r);
		return (-1);
	}
	if (L.disk && evlog_pend_add(r) == -1)
		evlog_stop_disk("out of memory");
	L.next++;
	if (!L.flush_on)
		evlog_schedule();
	if (rec != NULL)
		evlog_fill(rec, r->seq, r->p, r->plen, r->vlen, r->elen);
	return (0);
}

const char *
evlog_epoch(void)
{
	return (L.on ? L.epoch : "");
}

uint64_t
evlog_last(void)
{
	return (L.on ? L.next - 1 : 0);
}

uint64_t
evlog_written(void)
{
	return (L.on ? L.notified : 0);
}

uint64_t
evlog_mem_first(void)
{
	return (L.rcount > 0 ? L.ring[L.rhead]->seq : 0);
}

uint64_t
evlog_first(void)
{
	uint64_t	m = evlog_mem_first();

	if (L.nsegs > 0 && L.segs[0].first <= L.on_disk &&
	    (m == 0 || L.segs[0].first < m))
		return (L.segs[0].first);
	return (m);
}

void
evlog_stats(uint64_t *disk_bytes, uint64_t *mem_bytes, size_t *segments)
{
	/* What was handed to the writer is waited for: the answer is what
	   the files hold (an operator's command, not a hot path). */
	if (L.thr_on) {
		pthread_mutex_lock(&W.mtx);
		while (W.q != NULL || W.busy)
			pthread_cond_wait(&W.room, &W.mtx);
		pthread_mutex_unlock(&W.mtx);
		evlog_reap();
	}
	*disk_bytes = L.disk_bytes;
	*mem_bytes = L.mem_bytes;
	*segments = L.nsegs;
}

bool
evlog_disk_stopped(void)
{
	return (L.stopped);
}

/* ---- cursors ---- */


struct evlog_cur *
evlog_cur_new(uint64_t after)
{
	struct evlog_cur	*c;

	if ((c = calloc(1, sizeof *c)) == NULL)
		return (NULL);
	c->pos = after + 1;
	c->fd = -1;
	return (c);
}

static void
evlog_cur_close(struct evlog_cur *c)
{
	if (c->fd != -1)
		close(c->fd);
	c->fd = -1;
	c->have = c->off = 0;
}

void
evlog_cur_free(struct evlog_cur *c)
{
	if (c == NULL)
		return;
	evlog_cur_close(c);
	free(c->buf);
	free(c);
}

uint64_t
evlog_cur_pos(const struct evlog_cur *c)
{
	return (c->pos);
}

/* Where records after a lost range go on: the next segment, or memory. */
static uint64_t
evlog_resume_after(uint64_t pos)
{
	size_t		i;
	uint64_t	m = evlog_mem_first();

	for (i = 0; i < L.nsegs; i++) {
		if (L.segs[i].first > pos && L.segs[i].first <= L.on_disk &&
		    (m == 0 || L.segs[i].first < m))
			return (L.segs[i].first);
	}
	return (m != 0 ? m : L.next);
}

/* Opens the segment that holds pos. -1 if none does. */
static int
evlog_cur_open(struct evlog_cur *c)
{
	size_t	i;
	char	*p;

	evlog_cur_close(c);
	for (i = L.nsegs; i > 0; i--) {
		if (L.segs[i - 1].first <= c->pos)
			break;
	}
	if (i == 0)
		return (-1);
	i--;
	if ((p = evlog_seg_path(L.segs[i].first)) == NULL)
		return (-1);
	c->fd = open(p, O_RDONLY|O_CLOEXEC);
	free(p);
	if (c->fd == -1)
		return (-1);
	c->seg_first = L.segs[i].first;
	c->seg_end = i + 1 < L.nsegs ? L.segs[i + 1].first : 0;
	if (c->buf == NULL) {
		if ((c->buf = malloc(EVLOG_READ_BUF)) == NULL) {
			evlog_cur_close(c);
			return (-1);
		}
		c->cap = EVLOG_READ_BUF;
	}
	return (0);
}

/* The next frame of the open segment: 1 (rec filled), 0 (end of file),
   -1 (corrupt). */
static int
evlog_cur_frame(struct evlog_cur *c, uint64_t *seq, char **payload,
    uint32_t *plen)
{
	uint32_t	crc;
	ssize_t		n;
	char		*nb;

	for (;;) {
		if (c->have - c->off >= EVLOG_HDR) {
			memcpy(plen, c->buf + c->off, 4);
			if (*plen > EVLOG_EVENT_MAX + 2 * 256)
				return (-1);
			if (c->have - c->off >= EVLOG_HDR + (size_t)*plen)
				break;
			if (EVLOG_HDR + (size_t)*plen > c->cap) {
				memmove(c->buf, c->buf + c->off,
				    c->have - c->off);
				c->have -= c->off;
				c->off = 0;
				if ((nb = realloc(c->buf, EVLOG_HDR + *plen)) ==
				    NULL)
					return (-1);
				c->buf = nb;
				c->cap = EVLOG_HDR + *plen;
			}
		}
		if (c->off > 0 && c->cap - c->have < 65536) {
			memmove(c->buf, c->buf + c->off, c->have - c->off);
			c->have -= c->off;
			c->off = 0;
		}
		n = read(c->fd, c->buf + c->have, c->cap - c->have);
		if (n == -1 && errno == EINTR)
			continue;
		if (n < 0)
			return (-1);
		if (n == 0)
			return (c->have == c->off ? 0 : -1);
		c->have += (size_t)n;
	}
	memcpy(&crc, c->buf + c->off + 4, 4);
	memcpy(seq, c->buf + c->off + 8, 8);
	*payload = c->buf + c->off + EVLOG_HDR;
	if (evlog_frame_crc(*seq, *payload, *plen) != crc)
		return (-1);
	c->off += EVLOG_HDR + *plen;
	return (1);
}

int
evlog_cur_next(struct evlog_cur *c, struct evlog_rec *rec,
    uint64_t *lost_from, uint64_t *lost_to)
{
	struct erec	*r;
	uint64_t	 seq, first, to;
	uint32_t	 plen;
	char		*p;
	size_t		 vl, el;
	int		 k;

	if (!L.on || c->pos > L.notified)
		return (EVLOG_CUR_END);
	if ((r = evlog_ring_at(c->pos)) != NULL) {
		evlog_cur_close(c);
		evlog_fill(rec, r->seq, r->p, r->plen, r->vlen, r->elen);
		c->pos++;
		return (EVLOG_CUR_REC);
	}
	first = evlog_first();
	if (first == 0 || c->pos < first) {
		to = (first == 0 ? L.next : first) - 1;
		goto lost;
	}
	for (;;) {
		if (c->fd == -1 || c->pos < c->seg_first ||
		    (c->seg_end != 0 && c->pos >= c->seg_end)) {
			if (evlog_cur_open(c) == -1) {
				to = evlog_resume_after(c->pos) - 1;
				goto lost;
			}
		}
		k = evlog_cur_frame(c, &seq, &p, &plen);
		if (k == 0) {
			/* end of this segment: the next one, or memory */
			if (c->seg_end != 0 && c->pos >= c->seg_end)
				continue;
			evlog_cur_close(c);
			to = evlog_resume_after(c->pos) - 1;
			if (to >= c->pos)
				goto lost;
			return (evlog_cur_next(c, rec, lost_from, lost_to));
		}
		if (k == -1 || seq > c->pos ||
		    !evlog_split(p, plen, &vl, &el)) {
			log_warn("event log: corrupt record in segment %020"
			    PRIu64 " near seq %" PRIu64, c->seg_first, c->pos);
			evlog_cur_close(c);
			to = evlog_resume_after(c->pos) - 1;
			if (to < c->pos)
				to = c->pos;
			goto lost;
		}
		if (seq < c->pos)
			continue;
		evlog_fill(rec, seq, p, plen, vl, el);
		c->pos++;
		return (EVLOG_CUR_REC);
	}
lost:
	*lost_from = c->pos;
	*lost_to = to;
	c->pos = to + 1;
	return (EVLOG_CUR_LOST);
}
