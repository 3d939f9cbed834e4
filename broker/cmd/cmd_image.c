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
	const char		*path, *mode, *format = NULL;
	int			 ro = 0;
	struct qmp_error	 err;
	struct job		*j;

	if (req_unpack(r, args, "{s:s,s:s,s?s,s?b}", "path", &path,
	    "mode", &mode, "format", &format, "readonly", &ro) != 0)
		return;
	if ((j = image_attach(path, mode, format, ro != 0, &err)) == NULL)
		req_error_qmp(r, &err);
	else
		cmd_reply_job(r, j);
}

static void
cmd_image_detach(struct req *r, json_t *args, const struct cmd_entry *e,
    const struct cmd_target *t)
{
	const char		*dev;
	struct qmp_error	 err;
	struct job		*j;

	if (req_unpack(r, args, "{s:s}", "device", &dev) != 0)
		return;
	if ((j = image_detach(dev, &err)) == NULL)
		req_error_qmp(r, &err);
	else
		cmd_reply_job(r, j);
}

const struct cmd_entry cmd_image_table[] = {
	{ .name = "image-attach", .exec = cmd_image_attach },
	{ .name = "image-detach", .exec = cmd_image_detach },
	{ .name = NULL }
};
