/*
 * Control-socket commands: static dispatch tables, as tmux's cmd_entry.
 *
 * Each family (base, vm, subscriptions, jobs, domains, images, hotplug)
 * defines one table ending in a zeroed entry; cmd.c lists the tables. A
 * command's exec receives a request that it must finish exactly once
 * (session/req.h), now or later from a callback.
 */
#ifndef BROKER_CMD_CMD_H
#define BROKER_CMD_CMD_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>

#include "broker/session/req.h"

struct job;

#define CMD_PRECAP	0x1	/* allowed before qmp_capabilities */
#define CMD_FDS		0x2	/* takes fds passed with the request */

struct cmd_entry {
	const char	*name;
	void		(*exec)(struct req *, json_t *args,
			    const struct cmd_entry *);
	unsigned	 flags;
	int		 op;	/* for an exec that serves several commands */
};

/* Runs name with args on behalf of r: the session's dispatch hook. */
void	cmd_dispatch(struct req *, const char *name, json_t *args,
	    bool negotiated);
const struct cmd_entry *cmd_find(const char *name);
/* Calls fn for every command, in table order (query-commands). */
void	cmd_foreach(void (*fn)(const struct cmd_entry *, void *), void *);

/* A started job's reply, {"job": ID}. */
void	cmd_reply_job(struct req *, struct job *);

extern const struct cmd_entry cmd_base_table[];
extern const struct cmd_entry cmd_vm_table[];
extern const struct cmd_entry cmd_sub_table[];
extern const struct cmd_entry cmd_job_table[];
extern const struct cmd_entry cmd_domain_table[];
extern const struct cmd_entry cmd_image_table[];
extern const struct cmd_entry cmd_hp_table[];

#endif
