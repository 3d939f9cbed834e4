/*
 * Command tables and dispatch.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker/cmd/cmd.h"
#include "broker/core/conf.h"
#include "broker/core/job.h"
#include "broker/core/log.h"
#include "broker/vm/vm.h"

static const struct cmd_entry *const cmd_tables[] = {
	cmd_base_table,
	cmd_vm_table,
	cmd_sub_table,
	cmd_job_table,
	cmd_domain_table,
	cmd_image_table,
	cmd_hp_table,
	NULL
};

const struct cmd_entry *
cmd_find(const char *name)
{
	const struct cmd_entry *const	*t;
	const struct cmd_entry		*e;

	for (t = cmd_tables; *t != NULL; t++) {
		for (e = *t; e->name != NULL; e++) {
			if (strcmp(e->name, name) == 0)
				return (e);
		}
	}
	return (NULL);
}

void
cmd_foreach(void (*fn)(const struct cmd_entry *, void *), void *arg)
{
	const struct cmd_entry *const	*t;
	const struct cmd_entry		*e;

	for (t = cmd_tables; *t != NULL; t++) {
		for (e = *t; e->name != NULL; e++)
			fn(e, arg);
	}
}

/*
 * vm-allow: a command that names a VM (its .target.arg: "vm", "name" for
 * vm-add, vm-remove and query-vms, "domain" for the domain-* ones, as a
 * domain libvirt runs is the broker's VM of the same name) runs only for
 * a peer that VM allows. Checked here, once, before anything else about
 * the request, so no command can forget it and a refused peer learns
 * nothing from the other errors.
 */
static int
cmd_vm_allowed(struct req *r, const struct cmd_entry *e, json_t *args)
{
	const char	*vm;
	unsigned	 kind = e->target.kind & CMD_TARGET_KIND;

	if ((kind != CMD_ALLOW_VM && kind != CMD_FIND_VM) ||
	    conf.n_vm_allows == 0 || !json_is_object(args))
		return (1);
	vm = json_string_value(json_object_get(args, e->target.arg));
	if (vm == NULL || req_vm_allowed(r, vm))
		return (1);
	log_warn("refused %s on VM '%s' for uid %u gid %u pid %ld (vm-allow)",
	    e->name, vm, (unsigned)req_peer(r)->uid,
	    (unsigned)req_peer(r)->gid, (long)req_peer(r)->pid);
	req_error(r, QMP_CLS_GENERIC, "Permission denied");
	return (0);
}

/* The target into t; -1 with r finished if it names nothing. */
static int
cmd_resolve(struct req *r, const struct cmd_entry *e, json_t *args,
    struct cmd_target *t)
{
	json_t	*v;

	memset(t, 0, sizeof *t);
	if (e->target.arg == NULL ||
	    (v = json_object_get(args, e->target.arg)) == NULL)
		return (0);
	t->name = json_string_value(v);
	switch (e->target.kind & CMD_TARGET_KIND) {
	case CMD_FIND_VM:
		if ((t->vm = vm_find(t->name)) == NULL) {
			req_error(r, QMP_CLS_GENERIC, "No VM named '%.80s'",
			    t->name);
			return (-1);
		}
		break;
	case CMD_FIND_JOB:
		if ((t->job = cmd_find_job(r, json_integer_value(v))) == NULL)
			return (-1);
		break;
	}
	return (0);
}

void
cmd_dispatch(struct req *r, const char *name, json_t *args, bool negotiated)
{
	const struct cmd_entry	*e;
	struct cmd_target	 t;

	if ((e = cmd_find(name)) == NULL) {
		req_error(r, QMP_CLS_NOTFOUND, "The command %s has not been "
		    "found", name);
		return;
	}
	if (!negotiated && !(e->flags & CMD_PRECAP)) {
		req_error(r, QMP_CLS_NOTFOUND, "Expecting capabilities "
		    "negotiation with 'qmp_capabilities'");
		return;
	}
	if (req_oob(r) && !(e->flags & CMD_OOB)) {
		req_error(r, QMP_CLS_GENERIC, "The command %s does not support "
		    "OOB", name);
		return;
	}
	/* fds nobody asked for must not pile up in the broker. */
	if (!(e->flags & CMD_FDS))
		req_close_fds(r);
	if (!cmd_vm_allowed(r, e, args))
		return;
	/* the target argument is one of .args: it is then known to be of
	   the right type, or absent if CMD_TARGET_OPT */
	if (req_check_args(r, args, e->args) == -1)
		return;
	if (cmd_resolve(r, e, args, &t) == -1)
		return;
	e->exec(r, args, e, &t);
}

const char *
cmd_arg_str(json_t *args, const char *name)
{
	return (json_string_value(json_object_get(args, name)));
}

json_int_t
cmd_arg_int(json_t *args, const char *name, json_int_t def)
{
	json_t	*v;

	if ((v = json_object_get(args, name)) == NULL)
		return (def);
	return (json_integer_value(v));
}

bool
cmd_arg_bool(json_t *args, const char *name)
{
	return (json_is_true(json_object_get(args, name)));
}

struct job *
cmd_find_job(struct req *r, json_int_t id)
{
	struct job	*j;

	if (id <= 0 || (j = job_find((uint64_t)id)) == NULL) {
		req_error(r, QMP_CLS_GENERIC, "job %lld not found",
		    (long long)id);
		return (NULL);
	}
	return (j);
}

void
cmd_reply_job(struct req *r, struct job *j)
{
	req_reply(r, json_pack("{s:I}", "job", (json_int_t)job_id(j)));
}
