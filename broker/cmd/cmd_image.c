/*
 * Image commands: image-attach, image-detach (jobs of svc/image.c).
 */
#include "config.h"

#include "broker/cmd/cmd.h"
#include "broker/svc/image.h"

static void
cmd_image_attach(struct req *r, json_t *args, const struct cmd_entry *e,
    const struct cmd_target *t)
{
	struct qmp_error	 err;
	struct job		*j;

	if ((j = image_attach(cmd_arg_str(args, "path"),
	    cmd_arg_str(args, "mode"), cmd_arg_str(args, "format"),
	    cmd_arg_bool(args, "readonly"), &err)) == NULL)
		req_error_qmp(r, &err);
	else
		cmd_reply_job(r, j);
}

static void
cmd_image_detach(struct req *r, json_t *args, const struct cmd_entry *e,
    const struct cmd_target *t)
{
	struct qmp_error	 err;
	struct job		*j;

	if ((j = image_detach(cmd_arg_str(args, "device"), &err)) == NULL)
		req_error_qmp(r, &err);
	else
		cmd_reply_job(r, j);
}

const struct cmd_entry cmd_image_table[] = {
	{ .name = "image-attach", .exec = cmd_image_attach,
	    .args = { { "path", 's', true }, { "mode", 's', true },
	    { "format", 's', false }, { "readonly", 'b', false } } },
	{ .name = "image-detach", .exec = cmd_image_detach,
	    .args = { { "device", 's', true } } },
	{ .name = NULL }
};
