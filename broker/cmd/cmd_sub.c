/*
 * Subscription commands: subscribe, unsubscribe, query-subscriptions.
 */
#include "config.h"

#include "broker/cmd/cmd.h"
#include "broker/session/client.h"
#include "broker/session/sub.h"

static void
cmd_subscribe(struct req *r, json_t *args, const struct cmd_entry *e,
    const struct cmd_target *t)
{
	struct client	*c = client_of(r);

	if (c == NULL) {
		req_error(r, QMP_CLS_GENERIC, "client gone");
		return;
	}
	sub_subscribe(r, c, json_object_get(args, "vms"),
	    json_object_get(args, "events"));
}

static void
cmd_unsubscribe(struct req *r, json_t *args, const struct cmd_entry *e,
    const struct cmd_target *t)
{
	struct client	*c = client_of(r);

	if (c == NULL) {
		req_error(r, QMP_CLS_GENERIC, "client gone");
		return;
	}
	sub_unsubscribe(r, c, cmd_arg_int(args, "subscription", 0));
}

static void
cmd_query_subscriptions(struct req *r, json_t *args, const struct cmd_entry *e,
    const struct cmd_target *t)
{
	struct client	*c = client_of(r);

	req_reply(r, c != NULL ? sub_list_json(c) : json_array());
}

const struct cmd_entry cmd_sub_table[] = {
	/* sub_subscribe checks what "vms" and "events" hold */
	{ .name = "subscribe", .exec = cmd_subscribe,
	    .args = { { "vms", 'o', false }, { "events", 'o', false } } },
	{ .name = "unsubscribe", .exec = cmd_unsubscribe,
	    .args = { { "subscription", 'I', true } } },
	{ .name = "query-subscriptions", .exec = cmd_query_subscriptions },
	{ .name = NULL }
};
