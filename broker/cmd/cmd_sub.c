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
	json_t		*vms = NULL, *events = NULL;

	if (req_unpack(r, args, "{s?o,s?o}", "vms", &vms, "events",
	    &events) == -1)
		return;
	if (c == NULL) {
		req_error(r, QMP_CLS_GENERIC, "client gone");
		return;
	}
	sub_subscribe(r, c, vms, events);
}

static void
cmd_unsubscribe(struct req *r, json_t *args, const struct cmd_entry *e,
    const struct cmd_target *t)
{
	struct client	*c = client_of(r);
	json_int_t	 id;

	if (req_unpack(r, args, "{s:I}", "subscription", &id) == -1)
		return;
	if (c == NULL) {
		req_error(r, QMP_CLS_GENERIC, "client gone");
		return;
	}
	sub_unsubscribe(r, c, id);
}

static void
cmd_query_subscriptions(struct req *r, json_t *args, const struct cmd_entry *e,
    const struct cmd_target *t)
{
	struct client	*c = client_of(r);

	if (req_unpack(r, args, "{}") == -1)
		return;
	req_reply(r, c != NULL ? sub_list_json(c) : json_array());
}

const struct cmd_entry cmd_sub_table[] = {
	{ .name = "subscribe", .exec = cmd_subscribe },
	{ .name = "unsubscribe", .exec = cmd_unsubscribe },
	{ .name = "query-subscriptions", .exec = cmd_query_subscriptions },
	{ .name = NULL }
};
