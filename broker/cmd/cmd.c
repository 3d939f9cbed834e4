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
#include "broker/core/audit.h"
#include "broker/core/conf.h"
#include "broker/core/job.h"
#include "broker/core/log.h"
#include "broker/session/policy.h"
#include "broker/vm/vm.h"

static const struct cmd_entry *const cmd_tables[] = {
	cmd_base_table,
	cmd_vm_table,
	cmd_sub_table,
	cmd_job_table,
	cmd_domain_table,
	cmd_image_table,
	cmd_hp_table,
	cmd_stats_table,
	cmd_migrate_table,
	cmd_policy_table,
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

/* Every item of a's (an array of objects) whose member key names
   something p may see; a is released. */
json_t *
cmd_visible(const struct peer *p, json_t *a, const char *key)
{
	json_t		*o, *v;
	const char	*s;
	size_t		 i;

	if (!json_is_array(a) || peer_is_admin(p))
		return (a);
	o = json_array();
	json_array_foreach(a, i, v) {
		s = json_string_value(json_object_get(v, key));
		if (s == NULL || policy_vm_visible(p, s))
			json_array_append(o, v);
	}
	json_decref(a);
	return (o);
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
	/* a refusal is audited, whoever refuses */
	req_audit(r, vm, e->name, NULL, args, "vm-allow");
	req_error(r, QMP_CLS_GENERIC, "Permission denied");
	return (0);
}

/*
 * The policy's verdict v, acted on: a refusal answers with its reason;
 * a command that changes something, and every refusal, is audited; and
 * while the audit trail cannot be written, a command that changes
 * something is refused (--audit-required). 1 if the command may run.
 */
static int
cmd_judged(struct req *r, const char *vm, const char *cmd, const char *qemu,
    json_t *args, bool query, const struct policy_verdict *v)
{
	const struct peer	*p = req_peer(r);
	char			 why[256];

	if (!query || !v->allow)
		req_audit(r, vm, cmd, qemu, args, v->rule);
	if (!v->allow) {
		log_warn("refused %s%s on VM '%s' for uid %u gid %u pid %ld: "
		    "%s (%s)", qemu != NULL ? "QEMU " : "", cmd,
		    vm != NULL ? vm : "-", (unsigned)p->uid,
		    (unsigned)p->gid, (long)p->pid, v->reason, v->rule);
		req_error(r, QMP_CLS_GENERIC, "Permission denied: %s",
		    v->reason);
		return (0);
	}
	if (!query && conf.audit_required && !audit_ok(why, sizeof why)) {
		req_error(r, QMP_CLS_GENERIC, "Refused: the audit trail "
		    "cannot be written (%s)", why);
		return (0);
	}
	return (1);
}

/*
 * The policy, for every command of every transport that dispatches here
 * with a peer: checked after vm-allow and before the arguments, so a
 * refused peer learns nothing from them. vm-execute is only the carrier
 * of a QEMU command, judged (and audited) as that in cmd_vm_command, as
 * the same command on a shared socket is: a rule says "stop", not
 * "vm-execute".
 */
static int
cmd_policy(struct req *r, const struct cmd_entry *e, json_t *args)
{
	struct policy_verdict	 v;
	const char		*vm = NULL;
	unsigned		 kind = e->target.kind & CMD_TARGET_KIND;

	if (strcmp(e->name, "vm-execute") == 0)
		return (1);
	if ((kind == CMD_ALLOW_VM || kind == CMD_FIND_VM) &&
	    json_is_object(args))
		vm = json_string_value(json_object_get(args, e->target.arg));
	policy_check(req_peer(r), vm, e->name, POLICY_BROKER,
	    json_is_object(args) ? args : NULL, &v);
	return (cmd_judged(r, vm, e->name, NULL, args,
	    policy_is_query(e->name, POLICY_BROKER), &v));
}

/* carrier: the broker command that brought it ("vm-execute"), or the
   QEMU command itself on a shared socket, for the audit record */
static void
cmd_qemu(struct req *r, const char *carrier, struct vm *vm, const char *cmd,
    json_t *args)
{
	struct policy_verdict	v;

	policy_check(req_peer(r), vm_name(vm), cmd, POLICY_QEMU, args, &v);
	if (!cmd_judged(r, vm_name(vm), carrier, cmd, args,
	    policy_is_query(cmd, POLICY_QEMU), &v))
		return;
	if (req_oob(r))
		req_vm_execute_oob(r, vm, cmd, args);
	else
		req_vm_execute(r, vm, cmd, args);
}

void
cmd_vm_command(struct req *r, struct vm *vm, const char *cmd, json_t *args)
{
	cmd_qemu(r, "vm-execute", vm, cmd, args);
}

void
cmd_share_command(struct req *r, struct vm *vm, const char *cmd,
    json_t *args)
{
	cmd_qemu(r, cmd, vm, cmd, args);
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

	/* QEMU asks for negotiation first, known command or not */
	e = cmd_find(name);
	if (!negotiated && (e == NULL || !(e->flags & CMD_PRECAP))) {
		req_error(r, QMP_CLS_NOTFOUND, "Expecting capabilities "
		    "negotiation with 'qmp_capabilities'");
		return;
	}
	if (e == NULL) {
		req_error(r, QMP_CLS_NOTFOUND, "The command %s has not been "
		    "found", name);
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
	if (!(e->flags & CMD_PRECAP) && !cmd_policy(r, e, args))
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

	/* a job about what the peer may not see is none of its business */
	if (id <= 0 || (j = job_find((uint64_t)id)) == NULL ||
	    (job_target(j) != NULL && !policy_vm_visible(req_peer(r),
	    job_target(j)))) {
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

json_t *
cmd_vms_json(struct req *r, const struct cmd_target *t,
    json_t *(*fn)(struct vm *))
{
	struct vm	**l;
	size_t		  n, i;
	json_t		 *a;

	/* the dispatcher found the VM "name" names, if it is given */
	if (t->vm != NULL) {
		if ((l = calloc(1, sizeof *l)) == NULL)
			return (NULL);
		l[0] = t->vm;
		n = 1;
	} else if ((l = vm_list(&n)) == NULL)
		return (NULL);
	/* The list is what this peer may see: another tenant's VM names
	   and sockets are not its business (vm-allow). With a name, the
	   dispatcher has already refused a VM the peer may not see. */
	a = json_array();
	for (i = 0; a != NULL && i < n; i++) {
		if (policy_vm_visible(req_peer(r), vm_name(l[i])))
			json_array_append_new(a, fn(l[i]));
	}
	free(l);
	return (a);
}
