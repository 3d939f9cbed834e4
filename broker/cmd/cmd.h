/*
 * Control-socket commands: static dispatch tables, as tmux's cmd_entry.
 *
 * Each family (base, vm, subscriptions, jobs, domains, images, hotplug)
 * defines one table ending in a zeroed entry; cmd.c lists the tables. A
 * command's exec receives a request that it must finish exactly once
 * (session/req.h), now or later from a callback.
 *
 * An entry says what the command needs, and cmd_dispatch checks it
 * before exec runs, in this order (the order errors reach the wire):
 *
 *  .target.arg	the argument naming the command's VM, domain or job.
 *		For a VM or domain it is checked against vm-allow first,
 *		before any other argument: a refusal answers "Permission
 *		denied" whatever else is wrong with the request.
 *  .args	every argument the command takes, with its type and
 *		whether it is required, checked with req_check_args: the
 *		texts and order of a strict req_unpack ("Parameter 'x' is
 *		missing", ...), and any other member is refused. An entry
 *		without .args takes no arguments. exec then reads them with
 *		cmd_arg_*, and checks only what a type letter cannot say: a
 *		value's range, or what an 'o' must be (a boolean, an array)
 *		where that error is told after any unexpected member.
 *  .target	then resolved: CMD_FIND_VM and CMD_FIND_JOB put the VM or
 *		job in the struct cmd_target exec receives, or answer the
 *		command's not-found error. It is one of .args, so argument
 *		errors still come before "not found".
 *
 * CMD_ALLOW_VM only checks vm-allow: the VM need not exist (vm-add), it
 * is a libvirt domain (domain-*), or the command looks it up itself
 * because other checks must come first (vm-execute, and the hotplug
 * commands, whose hotplug_vm checks a running reconcile before the VM).
 * CMD_TARGET_OPT lets the argument be absent: then nothing is checked
 * or resolved.
 */
#ifndef BROKER_CMD_CMD_H
#define BROKER_CMD_CMD_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>

#include "broker/session/req.h"

struct job;
struct vm;

#define CMD_PRECAP	0x1	/* allowed before qmp_capabilities */
#define CMD_FDS		0x2	/* takes fds passed with the request */
#define CMD_OOB		0x4	/* may come as exec-oob: never waits (or,
				   vm-execute, runs its command out of band) */

/* .target.kind */
#define CMD_TARGET_NONE	0
#define CMD_ALLOW_VM	1	/* a string, checked against vm-allow */
#define CMD_FIND_VM	2	/* a string, vm-allow, then an existing VM */
#define CMD_FIND_JOB	3	/* an integer, an existing job */
#define CMD_TARGET_KIND	0xff
#define CMD_TARGET_OPT	0x100	/* may be absent */

#define CMD_ARGS_MAX	10	/* mem-add's */

/* What the dispatcher resolved for exec; all NULL when not declared. */
struct cmd_target {
	const char	*name;	/* the target argument's string */
	struct vm	*vm;	/* CMD_FIND_VM */
	struct job	*job;	/* CMD_FIND_JOB */
};

struct cmd_entry {
	const char	*name;
	void		(*exec)(struct req *, json_t *args,
			    const struct cmd_entry *,
			    const struct cmd_target *);
	unsigned	 flags;
	int		 op;	/* for an exec that serves several commands */
	struct {
		const char	*arg;
		unsigned	 kind;
	}		 target;
	struct req_arg	 args[CMD_ARGS_MAX + 1];	/* name NULL ends */
};

/* Runs name with args on behalf of r: the session's dispatch hook. */
void	cmd_dispatch(struct req *, const char *name, json_t *args,
	    bool negotiated);
const struct cmd_entry *cmd_find(const char *name);
/* Calls fn for every command, in table order (query-commands). */
void	cmd_foreach(void (*fn)(const struct cmd_entry *, void *), void *);

/* exec's view of an argument .args declares: NULL, def or false when
   it is absent (the dispatcher checked its type). */
const char *cmd_arg_str(json_t *args, const char *name);
json_int_t cmd_arg_int(json_t *args, const char *name, json_int_t def);
bool	cmd_arg_bool(json_t *args, const char *name);

/* Runs QEMU's cmd on vm for r (vm-execute), if the policy lets r's
   peer, with the argument guards; audited. args borrowed. */
void	cmd_vm_command(struct req *, struct vm *, const char *cmd,
	    json_t *args);
/* The same for a request on a VM's shared socket. */
void	cmd_share_command(struct req *, struct vm *, const char *cmd,
	    json_t *args);
/* Does a command glob of a policy rule match some broker or QEMU
   command? (policy_set_known) */
bool	cmd_glob_known(const char *glob);

/* The job numbered id, or NULL with r finished: "job ID not found". */
struct job *cmd_find_job(struct req *, json_int_t id);

/* fn(vm) of each VM a request may see, sorted by name: t->vm alone
   when the target named one, else every VM vm-allow lets its peer see.
   NULL if out of memory. */
json_t	*cmd_vms_json(struct req *, const struct cmd_target *t,
	    json_t *(*fn)(struct vm *));
/* The items of a (stolen; arrays of objects) whose member key names a
   VM, domain or job target the peer may see (query-jobs,
   query-domains). */
json_t	*cmd_visible(const struct peer *, json_t *a, const char *key);

/* The daemon's upgrade (broker/upgrade.h), wired at start: finishes r
   (in this process if refused, in the new one if done). binary may be
   NULL (the daemon's own). */
typedef void cmd_upgrade_fn(struct req *, const char *binary);
void	cmd_set_upgrade(cmd_upgrade_fn *);

/* A started job's reply, {"job": ID}. */
void	cmd_reply_job(struct req *, struct job *);

extern const struct cmd_entry cmd_base_table[];
extern const struct cmd_entry cmd_vm_table[];
extern const struct cmd_entry cmd_sub_table[];
extern const struct cmd_entry cmd_job_table[];
extern const struct cmd_entry cmd_domain_table[];
extern const struct cmd_entry cmd_image_table[];
extern const struct cmd_entry cmd_hp_table[];
extern const struct cmd_entry cmd_stats_table[];
extern const struct cmd_entry cmd_migrate_table[];
extern const struct cmd_entry cmd_policy_table[];

#endif
