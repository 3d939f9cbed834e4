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
#include "broker/core/job.h"
#include "broker/core/journal.h"
#include "broker/core/log.h"
#include "broker/svc/image_int.h"
#include "broker/svc/imgrec.h"
#include "broker/svc/jobs.h"
#include "disk/loop.h"
#include "disk/nbd.h"

static void
img_rec_forget(bool nbd, const char *device, const char *path,
    enum imgrec_state st, const char *why)
{
	struct qmp_error	err;

	log_notice("image journal %s (%s, %s): %s; record removed", device,
	    path, imgrec_state_name(st), why);
	if (imgrec_remove(conf.state_dir, nbd, device, &err) != 0)
		log_err("image journal %s: %s", device, err.desc);
}

/* The device is (still) attached: loop, to path; nbd, connected. */
static bool
img_rec_there(bool nbd, const char *device, const char *path,
    const struct nbd_dev *nd)
{
	struct nbd_paths	np;

	if (!nbd)
		return (img_loop_backed(device, path));
	img_nbd_paths(&np);
	return (nbd_connected(&np, nd));
}

/*
 * A tool the dead broker started for this record may still act on the
 * device: its tool lock (imgrec.h) is held. Every losetup but --find
 * holds it; for nbd only qemu-nbd -c, whose daemon keeps it as long as
 * it serves, so there a connected device says the tool is done.
 */
static bool
img_rec_tool_runs(bool nbd, const char *device, enum imgrec_state st,
    bool there)
{
	if (st == IMGREC_ATTACHED || (nbd && (st != IMGREC_ATTACHING ||
	    there)))
		return (false);
	return (imgrec_tool_busy(conf.state_dir, nbd, device));
}

/* The attachment a waiting detach job held goes, and the job ends. */
static void
img_rec_drop(struct img_job *ij)
{
	struct img_att	*a = ij->att;

	ij->att = NULL;
	TAILQ_REMOVE(&img_atts, a, entry);
	nbd_release(&a->nbd);
	free(a);
}

int
img_rec_settle(struct img_job *ij)
{
	bool	nbd = ij->mode == IMG_NBD;
	bool	there = img_rec_there(nbd, ij->device, ij->path, &ij->att->nbd);

	if (img_rec_tool_runs(nbd, ij->device, ij->found, there)) {
		if (!img_past_deadline(ij))
			return (1);
		/* Not judged while it may still act: the next start
		   looks again. */
		log_warn("image journal %s (%s, %s): the previous broker's "
		    "tool still runs after %d ms; record kept", ij->device,
		    ij->path, imgrec_state_name(ij->found), img_tool_ms());
		img_rec_drop(ij);
		job_fail(ij->job, QMP_CLS_GENERIC, "a tool the previous "
		    "broker started still runs on %s after %d ms; left as it "
		    "is", ij->device, img_tool_ms());
		return (-1);
	}
	if (!there) {
		img_rec_forget(nbd, ij->device, ij->path, ij->found, nbd ?
		    "not connected" : "not attached to that file");
		img_rec_drop(ij);
		job_conclude(ij->job, json_pack("{s:s,s:b}", "device",
		    ij->device, "was-attached", false));
		return (-1);
	}
	log_notice("image journal %s (%s): %s; interrupted, detaching",
	    ij->device, ij->path, imgrec_state_name(ij->found));
	return (0);
}

/*
 * One record a previous broker left. A tool it started (a losetup just
 * before the kill) may still be running, and may still attach or detach
 * the device after this look: while it does (img_rec_tool_runs) the
 * record is judged by a detach job that waits for it first
 * (img_rec_settle), bounded by tool-timeout-ms. Otherwise what sysfs
 * shows now is the truth.
 */
static void
img_rec_found(const char *group, const char *id, json_t *rec, void *arg)
{
	struct imgrec		 r;
	struct img_att		*a;
	struct nbd_paths	 np;
	struct nbd_dev		 nd = { .lockfd = -1 };
	struct qmp_error	 err, why;
	bool			 there, wait;

	if (imgrec_parse(group, id, rec, &r, &why) != 0) {
		log_warn("image journal %s/%s: not an image record (%s); "
		    "ignored", group, id, why.desc);
		return;
	}
	if (r.nbd) {
		img_nbd_paths(&np);
		switch (nbd_claim(&np, r.device, &nd)) {
		case -1:
			img_rec_forget(r.nbd, r.device, r.path, r.state,
			    "not an nbd device here");
			return;
		case 1:
			/* Our lock went with the dead broker: whoever holds
			   it now owns the device. */
			img_rec_forget(r.nbd, r.device, r.path, r.state,
			    "device locked by another process");
			return;
		}
	} else if (!loop_device_name_ok(r.device)) {
		img_rec_forget(r.nbd, r.device, r.path, r.state,
		    "not a loop device");
		return;
	}
	there = img_rec_there(r.nbd, r.device, r.path, &nd);
	wait = img_rec_tool_runs(r.nbd, r.device, r.state, there);
	if (!there && !wait) {
		nbd_release(&nd);
		img_rec_forget(r.nbd, r.device, r.path, r.state, r.nbd ?
		    "not connected" : "not attached to that file");
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
	if (img_detach_job(a, &r, wait, &err) == NULL) {
		if (wait) {
			TAILQ_REMOVE(&img_atts, a, entry);
			nbd_release(&a->nbd);
			free(a);
		}
		log_err("image journal %s (%s): %s; cannot detach it now: %s; "
		    "%s", r.device, r.path, imgrec_state_name(r.state),
		    err.desc, wait ? "record kept" : "kept as attached");
		return;
	}
	if (wait)
		log_notice("image journal %s (%s): %s; a tool the previous "
		    "broker started still runs: waiting for it (up to %d ms)",
		    r.device, r.path, imgrec_state_name(r.state),
		    img_tool_ms());
	else
		log_notice("image journal %s (%s): %s; interrupted, "
		    "detaching", r.device, r.path, imgrec_state_name(r.state));
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
