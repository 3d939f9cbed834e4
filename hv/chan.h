/*
 * A QMP channel: one connected unix stream socket on the event loop that
 * frames incoming JSON lines (QEMU's output) or reads QEMU's own input
 * grammar (clients', opts.qemu_grammar: proto/qmp_jstream.h) and queues
 * outgoing bytes, with file descriptors travelling both ways as
 * SCM_RIGHTS.
 *
 * Used by the per-VM monitor (broker <-> QEMU) and by every client
 * connection of the daemon (client <-> broker), so both get the same
 * bounded buffers, fd accounting and teardown rules.
 *
 * Teardown: the owner calls chan_free() exactly once, from anywhere,
 * including inside one of this channel's own callbacks; no further
 * callback is made and the socket is closed at once, the memory is
 * released on a later pass of the loop (util/defer.h). When the peer goes
 * away (EOF, error, overflow) ops->closed is called once; the owner then
 * calls chan_free(). A process that stops its loop for good calls
 * defer_flush() after its last chan_free().
 */
#ifndef HV_CHAN_H
#define HV_CHAN_H

#include <stddef.h>
#include <event2/event.h>
#include <jansson.h>

#include "proto/qmp_msg.h"

#define CHAN_MAX_FDS	16	/* fds accepted with one message */

struct chan;

struct chan_ops {
	/* One framed message. fds received since the previous message are
	   handed over with it: the callee owns them (close what it keeps
	   no use for). msg is borrowed. */
	void	(*msg)(struct chan *, json_t *msg, int *fds, size_t nfds,
		    void *arg);
	/* One line that was not a JSON object; the stream goes on.
	   May be NULL: such lines are then dropped. Also reports fds
	   beyond max_fds before one message: the extras are closed, the
	   message still gets the first max_fds, the stream goes on. fds
	   that arrived with a bad line are closed. */
	void	(*bad)(struct chan *, const struct qmp_error *, void *arg);
	/* The stream is over: EOF, I/O error, or a message past the limit.
	   Called at most once. */
	void	(*closed)(struct chan *, const char *why, void *arg);
	/* The output queue fell to empty after having held data. May be
	   NULL. */
	void	(*drained)(struct chan *, void *arg);
};

struct chan_opts {
	size_t	max_msg;	/* longest incoming line; 0: QMP_FRAMER_DEFAULT_MAX */
	size_t	max_fds;	/* fds per message; 0: CHAN_MAX_FDS */
	int	line_timeout_ms; /* part of a line, then silence this long:
				   closed; 0: never */
	int	qemu_grammar;	/* read input as QEMU's monitor does
				   (proto/qmp_jstream.h), not by lines */
};

/* Takes ownership of fd (made non-blocking here); on failure (NULL) the
   caller still owns it. */
struct chan	*chan_new(struct event_base *, int fd, const struct chan_opts *,
		    const struct chan_ops *, void *arg);
void		 chan_free(struct chan *);

/* Queue bytes; fds (if any) are dup'd and go out with the first byte of
   this chunk in one sendmsg. Returns -1 if the channel is closed. */
int		 chan_send(struct chan *, const void *, size_t,
		    const int *fds, size_t nfds);
/* Serialise (compact, CRLF-terminated) and queue. */
int		 chan_send_json(struct chan *, const json_t *);

size_t		 chan_outq(const struct chan *);	/* bytes queued */
int		 chan_fd(const struct chan *);
void		 chan_pause_read(struct chan *, int paused);
/* Stop reading, flush what is queued, then report closed. */
void		 chan_shutdown(struct chan *);

/*
 * Upgrade (broker/upgrade.h): what a channel holds besides its socket,
 * so that another process can carry on with the same stream.
 *   chan_export: {"fd": N, "in": HEX, "out": HEX, "rfds": [[fd, off]..]}
 *	in: bytes read and not yet handed out as messages (a partial
 *	message, or messages framed while paused); out: bytes queued and
 *	not yet written; rfds: fds received, not yet handed out, with
 *	their tag as an offset into in. Every fd in the object is also
 *	appended to fds (the caller clears FD_CLOEXEC on them). NULL if
 *	out of memory, or if queued output carries fds (never the case
 *	for clients; the monitor's queue is empty once nothing is
 *	pending). c keeps everything: it still works if the upgrade does
 *	not happen.
 *   chan_import: chan_new() on st's fd, with st's bytes: in is read
 *	first (from the loop), out is written first. st is hostile input
 *	(bounded by opts' max_msg for in, by out_max for out); NULL with
 *	err if it is not what chan_export makes. The fd is the caller's
 *	on failure; rfds are closed on failure once st was read (a
 *	malformed st closes nothing).
 */
json_t		*chan_export(struct chan *, json_t *fds);
struct chan	*chan_import(struct event_base *, const json_t *st,
		    size_t out_max, const struct chan_opts *,
		    const struct chan_ops *, void *arg, struct qmp_error *err);
/* The fd an exported object names, or -1 if it names none. */
int		 chan_export_fd(const json_t *st);

#endif
