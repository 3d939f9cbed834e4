/*
 * What the image jobs (image_job.c) and the restart (image_recover.c)
 * share about the tools and the journal: where losetup, qemu-nbd and
 * sysfs are, whether a device is there, the record of a step and the
 * device's tool lock (imgrec.h) its child holds.
 */
#include "config.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "broker/core/conf.h"
#include "broker/core/log.h"
#include "broker/svc/image_int.h"
#include "broker/svc/imgrec.h"
#include "disk/loop.h"
#include "disk/nbd.h"

#define IMG_TOOL_MS		30000

const char *
img_losetup(void)
{
	return (conf.losetup_path != NULL ? conf.losetup_path : LOOP_LOSETUP);
}

const char *
img_qemu_nbd(void)
{
	return (conf.qemu_nbd_path != NULL ? conf.qemu_nbd_path : NBD_QEMU_NBD);
}

static const char *
img_loop_sysfs(void)
{
	return (conf.loop_sysfs != NULL ? conf.loop_sysfs : LOOP_SYSFS);
}

bool
img_loop_backed(const char *dev, const char *path)
{
	char	buf[PATH_MAX + 16];

	if (loop_backing_file(img_loop_sysfs(), dev, buf, sizeof buf) != 0)
		return (false);
	return (path == NULL || loop_backing_is(buf, path));
}

void
img_nbd_paths(struct nbd_paths *np)
{
	np->sysfs = conf.nbd_sysfs != NULL ? conf.nbd_sysfs : NBD_SYSFS;
	np->devdir = conf.nbd_dev_dir != NULL ? conf.nbd_dev_dir : NBD_DEVDIR;
	np->lockdir = conf.nbd_lock_dir != NULL ? conf.nbd_lock_dir :
	    NBD_LOCKDIR;
}

int
img_tool_ms(void)
{
	return (conf.tool_timeout_ms > 0 ? conf.tool_timeout_ms : IMG_TOOL_MS);
}

void
img_deadline(struct img_job *ij, int ms)
{
	struct timeval	now, tv = { ms / 1000, (ms % 1000) * 1000 };

	gettimeofday(&now, NULL);
	timeradd(&now, &tv, &ij->deadline);
}

bool
img_past_deadline(const struct img_job *ij)
{
	struct timeval	now;

	gettimeofday(&now, NULL);
	return (timercmp(&now, &ij->deadline, >=));
}

int
img_record(struct img_job *ij, enum imgrec_state st, struct qmp_error *err)
{
	struct imgrec	r;

	memset(&r, 0, sizeof r);
	r.nbd = ij->mode == IMG_NBD;
	snprintf(r.device, sizeof r.device, "%s", ij->device);
	snprintf(r.path, sizeof r.path, "%s", ij->path);
	r.ro = ij->ro;
	if (ij->format != NULL)
		snprintf(r.format, sizeof r.format, "%s", ij->format);
	r.state = st;
	return (imgrec_write(conf.state_dir, &r, err));
}

bool
img_record_step(struct img_job *ij, enum imgrec_state st)
{
	struct qmp_error	err;

	if (img_record(ij, st, &err) == 0) {
		if (ij->attach)
			ij->recorded = true;
		return (true);
	}
	log_err("image journal %s: %s", ij->device, err.desc);
	qmp_error_set(&ij->end_err, QMP_CLS_GENERIC, "cannot record %s of "
	    "%s, so not done: %s", st == IMGREC_DETACHING ? "the detach" :
	    "the attach", ij->device, err.desc);
	return (false);
}

void
img_unrecord(struct img_job *ij)
{
	struct qmp_error	err;

	if (ij->attach && !ij->recorded)
		return;
	ij->recorded = false;
	if (imgrec_remove(conf.state_dir, ij->mode == IMG_NBD, ij->device,
	    &err) != 0)
		log_err("image journal %s: %s", ij->device, err.desc);
}

int
img_lock(struct img_job *ij, struct qmp_error *err)
{
	struct qmp_error	why;
	int			fd;

	if (ij->lockfd != -1)
		return (0);
	fd = imgrec_tool_lock(conf.state_dir, ij->mode == IMG_NBD,
	    ij->device, &why);
	if (fd == IMGREC_BUSY) {
		qmp_error_set(err, QMP_CLS_GENERIC, "%s: a tool an earlier "
		    "broker started still runs on it", ij->device);
		return (IMGREC_BUSY);
	}
	if (fd == -1) {
		log_err("image journal %s: %s", ij->device, why.desc);
		qmp_error_set(err, QMP_CLS_GENERIC, "cannot lock %s for its "
		    "tool, so not done: %s", ij->device, why.desc);
		return (-1);
	}
	ij->lockfd = fd;
	return (0);
}

void
img_unlock(struct img_job *ij)
{
	if (ij->lockfd != -1) {
		close(ij->lockfd);
		ij->lockfd = -1;
	}
}
