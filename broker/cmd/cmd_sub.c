/*
 * Subscription commands: subscribe, unsubscribe, query-subscriptions.
 */
#include "config.h"

#include "broker/cmd/cmd.h"
#include "broker/core/evlog.h"
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
	    json_object_get(args, "events"), json_object_get(args, "since"),
	    json_object_get(args, "epoch"));
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

static void
cmd_query_event_log(struct req *r, json_t *args, const struct cmd_entry *e,
    const struct cmd_target *t)
{
	uint64_t	disk, mem;
	size_t		segs;

	if (!evlog_on()) {
		req_error(r, QMP_CLS_GENERIC, "The event log is off "
		    "(event-log no)");
		return;
	}
	evlog_stats(&disk, &mem, &segs);
	req_reply(r, json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:b}", "epoch",
	    evlog_epoch(), "first", (json_int_t)evlog_first(), "last",
	    (json_int_t)evlog_last(), "bytes", (json_int_t)disk,
	    "memory-bytes", (json_int_t)mem, "segments", (json_int_t)segs,
	    "disk-stopped", evlog_disk_stopped()));
}

const struct cmd_entry cmd_sub_table[] = {
	/* sub_subscribe checks what "vms", "events", "since" and "epoch"
	   hold */
	{ .name = "subscribe", .exec = cmd_subscribe,
	    .args = { { "vms", 'o', false }, { "events", 'o', false },
	    { "since", 'o', false }, { "epoch", 'o', false } } },
	{ .name = "query-event-log", .exec = cmd_query_event_log },
	{ .name = "unsubscribe", .exec = cmd_unsubscribe,
	    .args = { { "subscription", 'I', true } } },
	{ .name = "query-subscriptions", .exec = cmd_query_subscriptions },
	{ .name = NULL }
};
