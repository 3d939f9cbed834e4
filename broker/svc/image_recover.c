/*
 * After a restart: the image journal a previous broker left, read back.
 * What is attached is adopted into the attachments list; what was half
 * attached or half detached is detached, as a job. Apart from image.c
 * because it runs once, at start, and shares only the attachment list
 * and the detach job with the rest.
 */
#include "config.h"

#include <sys/queue.h>

#include <stdlib.h>
#include <string.h>

#include "broker/core/conf.h"
#include "broker/core/journal.h"
#include "broker/core/log.h"
#include "broker/svc/image_int.h"
#include "broker/svc/imgrec.h"
#include "broker/svc/jobs.h"
#include "disk/loop.h"
#include "disk/nbd.h"

static void
img_rec_forget(const struct imgrec *r, const char *why)
{
	struct qmp_error	err;

	log_notice("image journal %s (%s, %s): %s; record removed", r->device,
	    r->path, imgrec_state_name(r->state), why);
	if (imgrec_remove(conf.state_dir, r->nbd, r->device, &err) != 0)
		log_err("image journal %s: %s", r->device, err.desc);
}

/*
 * One record a previous broker left. Its children may still be finishing
 * (a losetup started just before the kill): they are not ours to wait
 * for, and losetup is quick, so what sysfs shows now is taken as the
 * truth; at worst an attach that completes after this look leaks as it
 * would have without the journal.
 */
static void
img_rec_found(const char *group, const char *id, json_t *rec, void *arg)
{
	struct imgrec		 r;
	struct img_att		*a;
	struct nbd_paths	 np;
	struct nbd_dev		 nd = { .lockfd = -1 };
	struct qmp_error	 err, why;
	bool			 there;

	if (imgrec_parse(group, id, rec, &r, &why) != 0) {
		log_warn("image journal %s/%s: not an image record (%s); "
		    "ignored", group, id, why.desc);
		return;
	}
	if (r.nbd) {
		img_nbd_paths(&np);
		switch (nbd_claim(&np, r.device, &nd)) {
		case -1:
			img_rec_forget(&r, "not an nbd device here");
			return;
		case 1:
			/* Our lock went with the dead broker: whoever holds
			   it now owns the device. */
			img_rec_forget(&r, "device locked by another process");
			return;
		}
		there = nbd_connected(&np, &nd);
	} else {
		if (!loop_device_name_ok(r.device)) {
			img_rec_forget(&r, "not a loop device");
			return;
		}
		there = img_loop_backed(r.device, r.path);
	}
	if (!there) {
		nbd_release(&nd);
		img_rec_forget(&r, r.nbd ? "not connected" :
		    "not attached to that file");
		return;
	}
	if ((a = calloc(1, sizeof *a)) == NULL) {
		nbd_release(&nd);
		log_err("image journal %s: out of memory; left as it is",
		    r.device);
		return;
	}
	snprintf(a->device, sizeof a->device, "%s", r.device);
	snprintf(a->path, sizeof a->path, "%s", r.path);
	a->mode = r.nbd ? IMG_NBD : IMG_LOOP;
	a->ro = r.ro;
	a->nbd = nd;
	TAILQ_INSERT_TAIL(&img_atts, a, entry);
	if (r.state == IMGREC_ATTACHED) {
		log_notice("image journal %s (%s): attached; adopted",
		    r.device, r.path);
		return;
	}
	/* Half attached or half detached: nobody was told it is there, or
	   somebody asked for it to go. Either way it goes, as a job like
	   any other (query-jobs, JOB_STATUS_CHANGE, the retries). */
	if (img_detach_job(a, true, &err) == NULL) {
		log_err("image journal %s (%s): %s; cannot detach it now: %s; "
		    "kept as attached", r.device, r.path,
		    imgrec_state_name(r.state), err.desc);
		return;
	}
	log_notice("image journal %s (%s): %s; interrupted, detaching",
	    r.device, r.path, imgrec_state_name(r.state));
}

static void
img_rec_bad(const char *path, const char *why, void *arg)
{
	log_warn("image journal %s: %s; set aside as .bad", path, why);
}

void
image_recover(void)
{
	int	n;

	n = journal_load(conf.state_dir, "images", img_rec_found, img_rec_bad,
	    NULL);
	if (n < 0)
		log_err("image journal: cannot read %s/images", conf.state_dir);
	else if (n > 0)
		log_notice("image journal: %d attachment record(s) reconciled",
		    n);
}
