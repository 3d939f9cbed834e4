/*
 * Control-socket commands: static dispatch tables, as tmux's cmd_entry.
 *
 * Each module (vm, subscriptions, hotplug, jobs, ...) defines one table
 * ending in a zeroed entry; broker/cmd.c lists the tables. A command's exec
 * receives a request that it must finish exactly once with req_reply() or
 * req_error*(), now or later from a callback. A request outlives its
 * client: if the client has gone when the reply is made, it is dropped.
 */
#ifndef BROKER_CMD_H
#define BROKER_CMD_H

#include <stddef.h>
#include <jansson.h>

#include "proto/qmp_msg.h"

struct req;

#define CMD_PRECAP	0x1	/* allowed before qmp_capabilities */
#define CMD_FDS		0x2	/* takes fds passed with the request */

struct cmd_entry {
	const char	*name;
	void		(*exec)(struct req *, json_t *args);
	unsigned	 flags;
};

const struct cmd_entry *cmd_find(const char *name);
/* Calls fn for every command, in table order (query-commands). */
void	cmd_foreach(void (*fn)(const struct cmd_entry *, void *), void *);

/* Finishing a request; each frees it. ret is stolen (NULL means {}). */
void	req_reply(struct req *, json_t *ret);
void	req_error(struct req *, const char *cls, const char *fmt, ...)
	    __attribute__((format(printf, 3, 4)));
void	req_error_qmp(struct req *, const struct qmp_error *);

/* Unpacks args (NULL counts as {}) with json_unpack_ex(JSON_STRICT, fmt):
   unknown members are refused. On failure finishes the request with a
   GenericError naming the problem and returns -1. */
int	req_unpack(struct req *, json_t *args, const char *fmt, ...);

/* fds that came with the request (CMD_FDS commands only). take moves them
   out: the caller then owns them; fds left at finish time are closed. */
size_t	req_nfds(const struct req *);
int	req_take_fd(struct req *, size_t i);

/* Who asked: for access checks and logs. */
struct client;
struct client *req_client(const struct req *);	/* NULL if gone */
int	req_peer_uid(const struct req *);
/* 1 if the peer may see and act on VM name (vm-allow; a VM without a
   list: every peer). */
int	req_vm_allowed(const struct req *, const char *name);

#endif
