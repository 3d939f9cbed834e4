/*
 * image-attach / image-detach: loop and nbd devices, as jobs.
 *
 * Every step that waits is a child (losetup, qemu-nbd) reaped from the
 * loop, a loop timer (retries, waiting for qemu-nbd's pid file in sysfs)
 * or, for the flush ioctl, a worker. Device choice for nbd happens on the
 * loop, which serialises it within the broker; the lock file serialises
 * it against everything else. A failed or cancelled attach disconnects
 * what it connected before it ends, and says so.
 *
 * Every attachment is also a record (imgrec.h), written before the
 * step it names: "attaching" before the attaching child runs (so the
 * device must be known first: nbd picks it, loop asks "losetup --find"
 * and then attaches that device), "attached" once it is, "detaching"
 * before the detaching child; removed once nothing is left. A restarted
 * broker adopts what is attached and detaches what was half done
 * (image_recover).
 *
 * A child that attaches or detaches (every losetup but --find, and
 * qemu-nbd -c) inherits the device's tool lock (imgrec.h), taken before
 * the record of its step: a broker killed meanwhile leaves the lock
 * held for as long as that child (its own process group, so it outlives
 * the kill) still runs, and the next broker waits for it before it
 * judges the device (IP_WAIT_TOOL, image_recover.c).
 *
 * Separated (priv.h), each losetup step is the privileged helper's loop
 * ioctl instead, its result fed to the same steps (image_job.c); nbd is
 * refused, as qemu-nbd -c would have to stay running as root.
 */
#include "config.h"

#include <sys/queue.h>

#include <ctype.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "broker/core/conf.h"
#include "broker/core/job.h"
#include "broker/svc/image.h"
#include "broker/svc/image_int.h"
#include "broker/svc/jobs.h"
#include "disk/imgpath.h"
#include "disk/nbd.h"
#include "priv/priv.h"

/* Every device this broker attached, or adopted after a restart. */
struct img_att_list	img_atts = TAILQ_HEAD_INITIALIZER(img_atts);

/* ---- what the commands ask for ---- */

static bool
img_format_ok(const char *s)
{
	size_t	n = strlen(s);

	if (n == 0 || n > 16)
		return (false);
	for (; *s != '\0'; s++)
		if (!islower((unsigned char)*s) && !isdigit((unsigned char)*s))
			return (false);
	return (true);
}

struct job *
image_attach(const char *path, const char *mode, const char *format,
    bool ro, struct qmp_error *err)
{
	struct img_job		*ij;
	struct job		*j;

	if (strcmp(mode, "loop") != 0 && strcmp(mode, "nbd") != 0) {
		qmp_error_set(err, QMP_CLS_GENERIC,
		    "mode must be \"loop\" or \"nbd\"");
		return (NULL);
	}
	if (format != NULL && !img_format_ok(format)) {
		qmp_error_set(err, QMP_CLS_GENERIC, "invalid format");
		return (NULL);
	}
	if (format != NULL && strcmp(mode, "loop") == 0 &&
	    strcmp(format, "raw") != 0) {
		qmp_error_set(err, QMP_CLS_GENERIC, "loop devices take raw "
		    "images only; use mode \"nbd\" for %s", format);
		return (NULL);
	}
	/* Separated, qemu-nbd is the helper's child (priv.h), and takes a
	   format of its fixed list only: said at once, no job made. */
	if (priv_active() && strcmp(mode, "nbd") == 0 &&
	    priv_nbd_format(format) == -1) {
		qmp_error_set(err, QMP_CLS_GENERIC, "image-attach mode \"nbd\" "
		    "with privilege separation takes format \"raw\" or "
		    "\"qcow2\"");
		return (NULL);
	}
	if ((ij = calloc(1, sizeof *ij)) == NULL) {
		qmp_error_set(err, QMP_CLS_GENERIC, "out of memory");
		return (NULL);
	}
	ij->nbd.lockfd = -1;
	ij->lockfd = -1;
	if (img_path_check(conf.image_roots, conf.n_image_roots, path,
	    ij->path, sizeof ij->path, err) != 0) {
		free(ij);
		return (NULL);
	}
	ij->attach = true;
	ij->mode = strcmp(mode, "loop") == 0 ? IMG_LOOP : IMG_NBD;
	ij->ro = ro;
	if (format != NULL && (ij->format = strdup(format)) == NULL) {
		free(ij);
		qmp_error_set(err, QMP_CLS_GENERIC, "out of memory");
		return (NULL);
	}
	if ((j = job_new(&img_attach_ops, ij->path, ij, err)) == NULL)
		return (NULL);
	job_start(j);
	return (j);
}

struct job *
img_detach_job(struct img_att *a, const struct imgrec *found, bool wait_tool,
    struct qmp_error *err)
{
	struct img_job	*ij;
	struct job	*j;

	if ((ij = calloc(1, sizeof *ij)) == NULL) {
		qmp_error_set(err, QMP_CLS_GENERIC, "out of memory");
		return (NULL);
	}
	ij->nbd.lockfd = -1;
	ij->lockfd = -1;
	ij->mode = a->mode;
	ij->att = a;
	ij->ro = a->ro;
	ij->recovery = found != NULL;
	ij->wait_tool = found != NULL && wait_tool;
	if (found != NULL)
		ij->found = found->state;
	snprintf(ij->device, sizeof ij->device, "%s", a->device);
	snprintf(ij->path, sizeof ij->path, "%s", a->path);
	if ((j = job_new(&img_detach_ops, ij->device, ij, err)) == NULL)
		return (NULL);
	a->detaching = true;
	job_start(j);
	return (j);
}

struct job *
image_detach(const char *dev, struct qmp_error *err)
{
	struct img_att		*a;

	TAILQ_FOREACH(a, &img_atts, entry)
		if (strcmp(a->device, dev) == 0)
			break;
	if (a == NULL) {
		qmp_error_set(err, QMP_CLS_DEVNOTFOUND,
		    "%.200s was not attached by this broker", dev);
		return (NULL);
	}
	if (a->detaching) {
		qmp_error_set(err, QMP_CLS_GENERIC, "%s is being detached "
		    "already", a->device);
		return (NULL);
	}
	return (img_detach_job(a, NULL, false, err));
}

int
image_init(struct event_base *base)
{
	return (0);
}

/* Attached devices stay attached (VMs use them); the broker only forgets
   them and lets their nbd locks go with the process. */
void
image_shutdown(void)
{
	struct img_att	*a;

	while ((a = TAILQ_FIRST(&img_atts)) != NULL) {
		TAILQ_REMOVE(&img_atts, a, entry);
		nbd_release(&a->nbd);
		free(a);
	}
}
