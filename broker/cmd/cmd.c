/*
 * Command tables and dispatch.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker/cmd/cmd.h"
#include "broker/core/conf.h"
#include "broker/core/job.h"
#include "broker/core/log.h"

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
 * vm-allow: a command that names a VM ("vm", "name" for the vm-*
 * commands and query-vms, "domain" for the domain-* ones) runs only for a peer that VM allows. Checked
 * here, once, so no command can forget it.
 */
static int
cmd_vm_allowed(struct req *r, const char *name, json_t *args)
{
	const char	*vm;

	if (conf.n_vm_allows == 0 || !json_is_object(args))
		return (1);
	vm = json_string_value(json_object_get(args, "vm"));
	if (vm == NULL && (strncmp(name, "vm-", 3) == 0 ||
	    strcmp(name, "query-vms") == 0 || strcmp(name, "has-device") == 0))
		vm = json_string_value(json_object_get(args, "name"));
	/* a domain libvirt runs is the broker's VM of the same name */
	if (vm == NULL && strncmp(name, "domain-", 7) == 0)
		vm = json_string_value(json_object_get(args, "domain"));
	if (vm == NULL || req_vm_allowed(r, vm))
		return (1);
	log_warn("refused %s on VM '%s' for uid %u gid %u pid %ld (vm-allow)",
	    name, vm, (unsigned)req_peer(r)->uid, (unsigned)req_peer(r)->gid,
	    (long)req_peer(r)->pid);
	req_error(r, QMP_CLS_GENERIC, "Permission denied");
	return (0);
}

void
cmd_dispatch(struct req *r, const char *name, json_t *args, bool negotiated)
{
	const struct cmd_entry	*e;

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
	/* fds nobody asked for must not pile up in the broker. */
	if (!(e->flags & CMD_FDS))
		req_close_fds(r);
	if (!cmd_vm_allowed(r, name, args))
		return;
	e->exec(r, args, e);
}

void
cmd_reply_job(struct req *r, struct job *j)
{
	req_reply(r, json_pack("{s:I}", "job", (json_int_t)job_id(j)));
}
