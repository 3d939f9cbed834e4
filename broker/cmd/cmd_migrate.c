/*
 * Migration commands: vm-migrate (a job, svc/migrate.c) and
 * vm-migrate-postcopy.
 */
#include "config.h"

#include "broker/cmd/cmd.h"
#include "broker/svc/migrate.h"

static void
cmd_vm_migrate(struct req *r, json_t *args, const struct cmd_entry *e,
    const struct cmd_target *t)
{
	struct migrate_req	 q = { 0 };
	struct qmp_error	 err;
	struct job		*j;

	q.vm = cmd_arg_str(args, "vm");
	q.to = cmd_arg_str(args, "to");
	q.uri = cmd_arg_str(args, "uri");
	q.postcopy = cmd_arg_bool(args, "postcopy");
	q.quit_source = cmd_arg_bool(args, "quit-source");
	q.bandwidth = cmd_arg_int(args, "bandwidth", 0);
	q.downtime_ms = cmd_arg_int(args, "downtime-ms", 0);
	q.caps = json_object_get(args, "capabilities");
	/* the destination is a VM too: vm-allow holds for it */
	if (q.to != NULL && !req_vm_allowed(r, q.to)) {
		req_error(r, QMP_CLS_GENERIC, "Permission denied");
		return;
	}
	if ((j = migrate_job(&q, &err)) == NULL)
		req_error_qmp(r, &err);
	else
		cmd_reply_job(r, j);
}

static void
cmd_migrate_done(json_t *ret, const struct qmp_error *err, void *arg)
{
	if (err != NULL)
		req_error_qmp(arg, err);
	else
		req_reply(arg, NULL);
}

static void
cmd_vm_migrate_postcopy(struct req *r, json_t *args,
    const struct cmd_entry *e, const struct cmd_target *t)
{
	struct qmp_error	err;

	if (migrate_postcopy(cmd_arg_str(args, "vm"), cmd_migrate_done, r,
	    &err) != 0)
		req_error_qmp(r, &err);
}

static void
cmd_vm_migrate_pause(struct req *r, json_t *args, const struct cmd_entry *e,
    const struct cmd_target *t)
{
	struct qmp_error	err;

	if (migrate_pause(cmd_arg_str(args, "vm"), cmd_migrate_done, r,
	    &err) != 0)
		req_error_qmp(r, &err);
}

static void
cmd_vm_migrate_recover(struct req *r, json_t *args,
    const struct cmd_entry *e, const struct cmd_target *t)
{
	struct qmp_error	err;

	if (migrate_recover(cmd_arg_str(args, "vm"), cmd_arg_str(args, "uri"),
	    cmd_migrate_done, r, &err) != 0)
		req_error_qmp(r, &err);
}

const struct cmd_entry cmd_migrate_table[] = {
	{ .name = "vm-migrate", .exec = cmd_vm_migrate,
	    .target = { "vm", CMD_ALLOW_VM },
	    .args = { { "vm", 's', true }, { "to", 's', false },
	    { "uri", 's', false }, { "postcopy", 'b', false },
	    { "quit-source", 'b', false }, { "bandwidth", 'I', false },
	    { "downtime-ms", 'I', false }, { "capabilities", 'o', false } } },
	{ .name = "vm-migrate-postcopy", .exec = cmd_vm_migrate_postcopy,
	    .target = { "vm", CMD_ALLOW_VM },
	    .args = { { "vm", 's', true } } },
	{ .name = "vm-migrate-pause", .exec = cmd_vm_migrate_pause,
	    .target = { "vm", CMD_ALLOW_VM },
	    .args = { { "vm", 's', true } } },
	{ .name = "vm-migrate-recover", .exec = cmd_vm_migrate_recover,
	    .target = { "vm", CMD_ALLOW_VM },
	    .args = { { "vm", 's', true }, { "uri", 's', false } } },
	{ .name = NULL }
};
