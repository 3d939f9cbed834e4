/*
 * The base commands: qmp_capabilities, query-commands, query-version.
 */
#include "config.h"

#include <string.h>

#include "broker/cmd/cmd.h"
#include "broker/core/loop.h"
#include "broker/session/client.h"
#include "broker/session/peer.h"

static cmd_upgrade_fn	*cmd_upgrade_hook;

void
cmd_set_upgrade(cmd_upgrade_fn *fn)
{
	cmd_upgrade_hook = fn;
}

/* Swapping the broker's binary is the host admin's: root or the
   broker's own user, whatever the policy lets others do. */
static void
cmd_upgrade(struct req *r, json_t *args, const struct cmd_entry *e,
    const struct cmd_target *t)
{
	/* a refusal is audited here, a success by the new process */
	req_audit(r, NULL, "upgrade", NULL, args, NULL);
	if (!peer_is_admin(req_peer(r))) {
		req_error(r, QMP_CLS_GENERIC, "Permission denied: upgrade is "
		    "for root or the broker's own user");
		return;
	}
	if (cmd_upgrade_hook == NULL) {
		req_error(r, QMP_CLS_GENERIC, "upgrade is not available");
		return;
	}
	cmd_upgrade_hook(r, cmd_arg_str(args, "binary"));
}

static void
cmd_qmp_capabilities(struct req *r, json_t *args, const struct cmd_entry *e,
    const struct cmd_target *t)
{
	struct client	*c = client_of(r);
	json_t		*enable, *v;
	size_t		 i;
	bool		 oob = false;

	/* QEMU 7.2's order: its marshaller checks the arguments' types
	   and enum values first, then qmp_qmp_capabilities says whether
	   negotiation is over, then whether the capability is offered */
	enable = json_object_get(args, "enable");
	if (enable != NULL && !json_is_array(enable)) {
		req_error(r, QMP_CLS_GENERIC, "Invalid parameter type for "
		    "'enable', expected: array");
		return;
	}
	/* its input visitor names a wrong-typed list element 'enable[N]',
	   its enum check names it 'null' */
	json_array_foreach(enable, i, v) {
		if (!json_is_string(v)) {
			req_error(r, QMP_CLS_GENERIC, "Invalid parameter type "
			    "for 'enable[%zu]', expected: string", i);
			return;
		}
		if (strcmp(json_string_value(v), "oob") != 0) {
			req_error(r, QMP_CLS_GENERIC, "Parameter 'null' does "
			    "not accept value '%s'", json_string_value(v));
			return;
		}
	}
	if (c != NULL && c->negotiated) {
		req_error(r, QMP_CLS_NOTFOUND, "Capabilities negotiation is "
		    "already complete, command ignored");
		return;
	}
	if (json_array_size(enable) > 0) {
		if (c == NULL || !client_oob_offered(c)) {
			req_error(r, QMP_CLS_GENERIC, "Capability 'oob' not "
			    "available");
			return;
		}
		oob = true;
	}
	if (c != NULL)
		client_set_negotiated(c, oob);
	req_reply(r, NULL);
}

static void
cmd_query_commands_one(const struct cmd_entry *e, void *arg)
{
	json_array_append_new(arg, json_pack("{s:s}", "name", e->name));
}

static void
cmd_query_commands(struct req *r, json_t *args, const struct cmd_entry *e,
    const struct cmd_target *t)
{
	json_t	*list;

	list = json_array();
	cmd_foreach(cmd_query_commands_one, list);
	req_reply(r, list);
}

static void
cmd_query_version(struct req *r, json_t *args, const struct cmd_entry *e,
    const struct cmd_target *t)
{
	const struct qmp_version	*v = loop_version();

	req_reply(r, json_pack("{s:{s:i,s:i,s:i},s:s}", "qemu",
	    "major", v->major, "minor", v->minor, "micro", v->micro,
	    "package", v->package));
}

const struct cmd_entry cmd_base_table[] = {
	/* "enable" any value: its own text, after unexpected members */
	{ .name = "qmp_capabilities", .exec = cmd_qmp_capabilities,
	    .flags = CMD_PRECAP,
	    .args = { { "enable", 'o', false } } },
	{ .name = "query-commands", .exec = cmd_query_commands,
	    .flags = CMD_OOB },
	{ .name = "query-version", .exec = cmd_query_version,
	    .flags = CMD_OOB },
	{ .name = "upgrade", .exec = cmd_upgrade,
	    .args = { { "binary", 's', false } } },
	{ .name = NULL }
};
