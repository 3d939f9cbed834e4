/*
 * VM commands: query-vms, vm-add, vm-remove, vm-execute.
 */
#include "config.h"

#include <sys/types.h>

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker/cmd/cmd.h"
#include "broker/core/log.h"
#include "broker/session/policy.h"
#include "broker/session/share.h"
#include "broker/vm/registry.h"
#include "broker/vm/vm.h"

#define CMD_VM_NAME_MAX	128	/* QEMU command names */

static const char *const cmd_vm_origins[] = { "api", "config", "dir",
    "libvirt" };

static json_t *
cmd_vm_json(struct vm *vm)
{
	const struct qmp_version	*v = vm_version(vm);
	const char			*shared = share_path(vm);
	json_t				*j, *o;
	size_t				 i;

	j = json_pack("{s:s,s:s,s:s,s:{s:i,s:i,s:i},s:s}",
	    "name", vm_name(vm),
	    "socket", vm_socket(vm),
	    "state", mon_state_name(vm_state(vm)),
	    "qemu",
	    "major", v != NULL ? v->major : 0,
	    "minor", v != NULL ? v->minor : 0,
	    "micro", v != NULL ? v->micro : 0,
	    "package", v != NULL ? v->package : "");
	if (j == NULL)
		return (NULL);
	if (shared != NULL)
		json_object_set_new(j, "shared-socket", json_string(shared));
	o = json_array();
	for (i = 0; i < 4; i++) {
		if (vm_origin(vm) & (1u << i))
			json_array_append_new(o, json_string(cmd_vm_origins[i]));
	}
	json_object_set_new(j, "origin", o);
	return (j);
}

static void
cmd_query_vms(struct req *r, json_t *args, const struct cmd_entry *e,
    const struct cmd_target *t)
{
	json_t	*a;

	if ((a = cmd_vms_json(r, t, cmd_vm_json)) == NULL)
		req_error(r, QMP_CLS_GENERIC, "out of memory");
	else
		req_reply(r, a);
}

static void
cmd_vm_saved(const struct qmp_error *err, void *arg)
{
	if (err != NULL)
		req_error_qmp(arg, err);
	else
		req_reply(arg, NULL);
}

/* The reply waits until the registry is on disk. */
static void
cmd_vm_saved_reply(struct req *r)
{
	if (registry_dirty(cmd_vm_saved, r) == -1)
		req_error(r, QMP_CLS_GENERIC, "out of memory");
}

static void
cmd_vm_add(struct req *r, json_t *args, const struct cmd_entry *e,
    const struct cmd_target *t)
{
	const char		*name, *socket;
	struct qmp_error	 err;
	struct vm		*vm;
	json_t			*share;
	json_int_t		 pid;

	name = cmd_arg_str(args, "name");
	socket = cmd_arg_str(args, "socket");
	pid = cmd_arg_int(args, "pid", 0);
	if (json_object_get(args, "pid") != NULL && (pid <= 0 ||
	    pid > INT_MAX || (kill((pid_t)pid, 0) == -1 && errno == ESRCH))) {
		req_error(r, QMP_CLS_GENERIC, "Parameter 'pid': no process "
		    "%lld", (long long)pid);
		return;
	}
	share = json_object_get(args, "shared-socket");
	if (share != NULL && !json_is_boolean(share)) {
		req_error(r, QMP_CLS_GENERIC, "Invalid parameter type for "
		    "'shared-socket', expected: boolean");
		return;
	}
	if ((vm = vm_add(name, socket, VM_ORIGIN_API, share == NULL ?
	    VM_SHARE_CONF : json_is_true(share) ? VM_SHARE_YES : VM_SHARE_NO,
	    &err)) == NULL) {
		req_error_qmp(r, &err);
		return;
	}
	if (pid > 0)
		vm_set_pid(vm, (int)pid);
	log_info("vm %s: added by uid %d", name, (int)req_peer(r)->uid);
	cmd_vm_saved_reply(r);
}

static void
cmd_vm_remove(struct req *r, json_t *args, const struct cmd_entry *e,
    const struct cmd_target *t)
{
	unsigned	 origin;

	origin = vm_origin(t->vm);
	log_info("vm %s: removed by uid %d", t->name, (int)req_peer(r)->uid);
	vm_remove(t->vm);
	if (origin & VM_ORIGIN_API)
		cmd_vm_saved_reply(r);
	else
		req_reply(r, NULL);
}

/*
 * vm-execute is the hot path: its arguments are checked by the
 * dispatcher's req_check_args, which neither parses a format nor builds
 * a key set as json_unpack in strict mode does on every call (a tenth of
 * the broker's work on a round trip), and are read here directly.
 */
static void
cmd_vm_execute(struct req *r, json_t *args, const struct cmd_entry *e,
    const struct cmd_target *t)
{
	const char	*name, *cmd;
	json_t		*cargs;
	struct vm	*vm;

	name = cmd_arg_str(args, "vm");
	cmd = cmd_arg_str(args, "command");
	cargs = json_object_get(args, "arguments");
	if (cargs != NULL && !json_is_object(cargs)) {
		req_error(r, QMP_CLS_GENERIC, "Invalid parameter type for "
		    "'arguments', expected: object");
		return;
	}
	if (*cmd == '\0' || strlen(cmd) > CMD_VM_NAME_MAX) {
		req_error(r, QMP_CLS_GENERIC, "Invalid command name");
		return;
	}
	/* The broker owns the monitor's negotiation. */
	if (strcmp(cmd, "qmp_capabilities") == 0) {
		req_error(r, QMP_CLS_GENERIC, "qmp_capabilities is the "
		    "broker's to send");
		return;
	}
	/* looked up here, not by the dispatcher: the checks above
	   answer first */
	if ((vm = vm_find(name)) == NULL) {
		req_error(r, QMP_CLS_GENERIC, "No VM named '%.80s'", name);
		return;
	}
	cmd_vm_command(r, vm, cmd, cargs);
}

const struct cmd_entry cmd_vm_table[] = {
	{ .name = "query-vms", .exec = cmd_query_vms, .flags = CMD_OOB,
	    .target = { "name", CMD_FIND_VM | CMD_TARGET_OPT },
	    .args = { { "name", 's', false } } },
	/* the VM it adds need not exist, but vm-allow may refuse it */
	{ .name = "vm-add", .exec = cmd_vm_add,
	    .target = { "name", CMD_ALLOW_VM },
	    .args = { { "name", 's', true }, { "socket", 's', true },
	    /* any value: its own text, after unexpected members */
	    { "shared-socket", 'o', false }, { "pid", 'I', false } } },
	{ .name = "vm-remove", .exec = cmd_vm_remove,
	    .target = { "name", CMD_FIND_VM },
	    .args = { { "name", 's', true } } },
	/* looks its VM up itself, after checking the command */
	{ .name = "vm-execute", .exec = cmd_vm_execute,
	    .flags = CMD_FDS | CMD_OOB,
	    .target = { "vm", CMD_ALLOW_VM },
	    .args = { { "vm", 's', true }, { "command", 's', true },
	    /* an object, said after unexpected members */
	    { "arguments", 'o', false } } },
	{ .name = NULL }
};
