/*
 * Requests: the broker's promise of exactly one reply to one command.
 *
 * A command's exec receives a request that it must finish exactly once
 * with req_reply() or req_error*(), now or later from a callback. A
 * request outlives the client that made it (the client may go while
 * QEMU still works on the command): its owner orphans it, and the reply
 * is then dropped.
 */
#ifndef BROKER_SESSION_REQ_H
#define BROKER_SESSION_REQ_H

#include <sys/queue.h>
#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>

#include "broker/session/peer.h"
#include "broker/vm/vm.h"
#include "proto/qmp_msg.h"

struct req;
LIST_HEAD(req_list, req);

/* The owner's finisher: ret stolen (NULL on error), err borrowed. It
   must not free the request: req_reply/req_error do, after it. */
typedef void req_done_fn(struct req *, json_t *ret,
	    const struct qmp_error *err, void *arg);

/* id and fds are stolen; p is copied (NULL: the broker's own). The
   request goes on list (may be NULL) until it finishes or is orphaned.
   NULL if out of memory (id and fds released). */
struct req *req_new(struct req_list *, const struct peer *, json_t *id,
	    int *fds, size_t nfds, req_done_fn *, void *arg);
/* The owner is gone: off its list, and the reply will go nowhere. */
void	req_orphan(struct req *);
json_t	*req_id(const struct req *);
/* The owner's arg if r was made with finisher done (so the caller knows
   the arg's type), else NULL; NULL once orphaned too. */
void	*req_owner(const struct req *, req_done_fn *done);

/* Finishing a request; each frees it. ret is stolen (NULL means {}). */
void	req_reply(struct req *, json_t *ret);
void	req_error(struct req *, const char *cls, const char *fmt, ...)
	    __attribute__((format(printf, 3, 4)));
void	req_error_qmp(struct req *, const struct qmp_error *);

/* Unpacks args (NULL counts as {}) with json_unpack_ex(JSON_STRICT, fmt):
   unknown members are refused. On failure finishes the request with a
   GenericError naming the problem, in QEMU's words, and returns -1.
   No command calls it any more (the dispatcher checks declared
   arguments with req_check_args); it stays as the reference
   req_check_args is held to: test_broker_req feeds both the same random
   requests and wants the same answer. */
int	req_unpack(struct req *, json_t *args, const char *fmt, ...);

/* One member of a spec for req_check_args: its name, its type as
   json_unpack's letter ('s' a string, 'i' or 'I' an integer, 'b' a
   boolean, 'F' a number, 'o' or 'O' any value), and whether it must be
   there. A spec is an array ending with a NULL name; names are unique. */
struct req_arg {
	const char	*name;
	char		 type;
	bool		 required;
};

/* Checks args (NULL counts as {}) against spec without unpacking:
   0 if req_unpack would accept them with the strict format
   "{s:T, s?T, ...}" spelling spec in order, else -1 with r finished by
   exactly the error req_unpack would give, in the same order: args not
   an object; else the first member of spec, in spec order, that is
   missing though required or present with the wrong type; else every
   member spec does not name, in args' order, as one "Parameter 'a, b'
   is unexpected" (cut where jansson cuts its text). Cheap enough for
   every request: no allocation unless it fails, one lookup per member
   of spec, and args are iterated only when some member is unknown. */
int	req_check_args(struct req *, json_t *args, const struct req_arg *spec);

/* fds that came with the request. take moves one out: the caller then
   owns it; fds left at finish time are closed. */
size_t	req_nfds(const struct req *);
int	req_take_fd(struct req *, size_t i);
void	req_close_fds(struct req *);

/* Who asked: for access checks and logs. */
const struct peer *req_peer(const struct req *);
bool	req_vm_allowed(const struct req *, const char *name);

/* Runs cmd on vm for r with the request's fds, and finishes r with
   QEMU's return or error, unchanged (vm-execute, the shared sockets).
   args is borrowed. */
/* The request came as exec-oob: answered past in-band work. */
void	req_set_oob(struct req *);
bool	req_oob(const struct req *);
/* cmd as exec-oob on the VM's QEMU (no fds). */
void	req_vm_execute_oob(struct req *, struct vm *, const char *cmd,
	    json_t *args);
void	req_vm_execute(struct req *, struct vm *, const char *cmd,
	    json_t *args);

#endif
