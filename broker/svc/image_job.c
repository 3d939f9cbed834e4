/*
 * The image-attach and image-detach jobs, step by step: the children
 * (losetup, qemu-nbd), the timers, the flush worker, cancelling and
 * undoing, and the journal record written before each step. Apart from
 * image.c because this engine is most of the module and the requests
 * that start it read better without it; see image.c for the design.
 */
#include "config.h"

#include <sys/queue.h>
#include <sys/time.h>

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "broker/core/conf.h"
#include "broker/core/job.h"
#include "broker/core/log.h"
#include "broker/core/loop.h"
#include "broker/core/proc.h"
#include "broker/core/work.h"
#include "broker/svc/image_int.h"
#include "broker/svc/imgrec.h"
#include "disk/loop.h"
#include "disk/nbd.h"
#include "priv/priv.h"

#define IMG_LOOP_RETRIES	5	/* out of loop devices, or one taken
					   between find and attach */
#define IMG_LOOP_RETRY_MS	500
#define IMG_DETACH_TRIES	3	/* losetup -d fails now and then */
#define IMG_DETACH_RETRY_MS	200
#define IMG_NBD_POLL_MS		100
#define IMG_NBD_WAIT_MS		10000
#define IMG_TOOL_POLL_MS	50	/* a dead broker's tool still runs */

static void	img_start(struct job *);
static void	img_cancel(struct job *);
static void	img_free(void *);
static void	img_step(struct img_job *);
static bool	img_detach_record(struct img_job *);

const struct job_ops img_attach_ops = {
	"image-attach", "image", img_start, img_cancel, img_free
};
/* A detach is not undone halfway: it runs to its end (bounded by the
   tools' deadlines and the retry count). */
const struct job_ops img_detach_ops = {
	"image-detach", "image", img_start, NULL, img_free
};

static void
img_free(void *arg)
{
	struct img_job	*ij = arg;

	if (ij->timer != NULL)
		event_free(ij->timer);
	img_unlock(ij);
	/* A lock still held here belongs to no attachment: let it go. */
	nbd_release(&ij->nbd);
	if (ij->att != NULL)
		ij->att->detaching = false;
	free(ij->format);
	free(ij);
}

static void
img_after(struct img_job *ij, int ms)
{
	struct timeval	tv = { ms / 1000, (ms % 1000) * 1000 };

	evtimer_add(ij->timer, &tv);	/* made by img_start */
}

static json_t *
img_result(struct img_job *ij)
{
	return (json_pack("{s:s,s:s,s:s,s:b}", "device", ij->device, "mode",
	    ij->mode == IMG_LOOP ? "loop" : "nbd", "path", ij->path,
	    "readonly", ij->ro));
}

/* Ends a job whose cleanup (if any) is over. */
static void
img_end(struct img_job *ij, json_t *cancel_report)
{
	if (ij->end_cancel)
		job_cancelled(ij->job, cancel_report);
	else {
		json_decref(cancel_report);
		job_fail_err(ij->job, &ij->end_err);
	}
}

static void	img_proc_done(struct proc *, const struct proc_result *, void *);

/* A detach that failed leaves the attachment as it was, detachable
   again; the job lets go of it (a later detach may free it). */
static void
img_detach_failed(struct img_job *ij)
{
	struct qmp_error	err;

	if (ij->att != NULL)
		ij->att->detaching = false;
	ij->att = NULL;
	/* Still attached, as it was. A detach a restart started keeps its
	   "detaching": the next start tries again. */
	if (!ij->recovery && img_record(ij, IMGREC_ATTACHED, &err) != 0)
		log_err("image journal %s: %s", ij->device, err.desc);
}

/* The loop step losetup's argv stands for, asked of the privileged
   helper instead (separated: losetup would run unprivileged). Its
   result comes as a losetup's would, on the next loop pass. */
static void
img_priv_loop(struct img_job *ij)
{
	struct qmp_error	err;
	int			rc;

	if (ij->phase == IP_FIND)
		rc = priv_loop_find(ij->priv_out, sizeof ij->priv_out - 1,
		    &err);
	else if (ij->attach && ij->phase == IP_TOOL)
		rc = priv_loop_attach(ij->device, ij->path, ij->ro, &err);
	else
		rc = priv_loop_detach(ij->device, ij->path, &err);
	ij->priv_ok = rc == 0;
	if (rc == 0 && ij->phase == IP_FIND)
		/* as losetup prints it; the find left a byte for it */
		strcat(ij->priv_out, "\n");
	else if (rc == 0)
		ij->priv_out[0] = '\0';
	snprintf(ij->priv_err, sizeof ij->priv_err, "%s", rc == 0 ? "" :
	    err.desc);
	ij->priv_pending = true;
	img_after(ij, 0);
}

static void
img_priv_done(struct img_job *ij)
{
	struct proc_result	r;

	memset(&r, 0, sizeof r);
	ij->priv_pending = false;
	r.exited = true;
	r.code = ij->priv_ok ? 0 : 1;
	r.out = ij->priv_out;
	r.outlen = strlen(ij->priv_out);
	r.err = ij->priv_err;
	r.errlen = strlen(ij->priv_err);
	img_proc_done(NULL, &r, ij);
}

/* Separated, an nbd step (qemu-nbd -c, or the flush and qemu-nbd -d) is
   the helper's, which runs qemu-nbd and waits for it: from a worker, so
   the loop never waits. Its result is handed over as a child's. */
static void
img_priv_nbd_fn(void *arg)
{
	struct img_job		*ij = arg;
	struct qmp_error	 err;
	int			 rc;

	if (ij->attach && ij->phase == IP_TOOL)
		rc = priv_nbd_connect(ij->nbd.index, ij->path, ij->ro,
		    ij->format, &err);
	else {
		ij->flush_err.desc[0] = '\0';
		rc = priv_nbd_disconnect(ij->attach ? ij->nbd.index :
		    ij->att->nbd.index, ij->flush_err.desc,
		    sizeof ij->flush_err.desc, &err);
		ij->flush_rc = ij->flush_err.desc[0] != '\0' ? -1 : 0;
	}
	ij->priv_ok = rc == 0;
	ij->priv_out[0] = '\0';
	snprintf(ij->priv_err, sizeof ij->priv_err, "%s", rc == 0 ? "" :
	    err.desc);
}

static void
img_priv_nbd_done(void *arg, bool ran)
{
	struct img_job	*ij = arg;

	ij->w = NULL;
	img_unlock(ij);		/* held while the helper acted */
	if (!ran) {
		ij->priv_ok = false;
		ij->priv_out[0] = '\0';
		snprintf(ij->priv_err, sizeof ij->priv_err, "broker shutting "
		    "down");
	}
	if (ij->phase == IP_FLUSH)
		ij->phase = IP_TOOL;
	img_priv_done(ij);
}

static bool
img_spawn(struct img_job *ij, char **argv)
{
	struct qmp_error	err;

	/* Every losetup but --find holds the tool lock (nbd: only -c, taken
	   by img_start; qemu-nbd's daemon keeps it while it serves). */
	if (ij->mode == IMG_LOOP && ij->phase != IP_FIND &&
	    img_lock(ij, &err) != 0)
		ij->p = NULL;
	else if (ij->mode == IMG_LOOP && priv_active()) {
		img_priv_loop(ij);
		img_unlock(ij);	/* held while the helper acted */
		return (true);
	} else if (ij->mode == IMG_NBD && priv_active()) {
		ij->p = NULL;
		if ((ij->w = work_submit(img_priv_nbd_fn, img_priv_nbd_done,
		    ij)) != NULL)
			return (true);
		qmp_error_set(&err, QMP_CLS_GENERIC, "broker shutting down");
	} else
		ij->p = proc_spawn_fd(argv, ij->lockfd, img_tool_ms(),
		    img_proc_done, ij, &err);
	img_unlock(ij);	/* the child's now, if it runs */
	if (ij->p == NULL) {
		if (ij->phase == IP_CLEANUP) {
			/* Cannot undo: end, and say what is left. */
			img_end(ij, json_pack("{s:s,s:s}", "left", ij->device,
			    "why", err.desc));
			return (false);
		}
		if (!ij->attach)
			img_detach_failed(ij);
		else if (ij->phase == IP_TOOL)
			img_unrecord(ij);	/* the tool never ran */
		job_fail_err(ij->job, &err);
		return (false);
	}
	return (true);
}

/* Disconnects what a failed or cancelled nbd attach connected. */
static void
img_cleanup(struct img_job *ij)
{
	char	*argv[NBD_ARGV_MAX];

	ij->phase = IP_CLEANUP;
	if (ij->mode == IMG_LOOP) {
		loop_detach_argv(img_losetup(), ij->device, argv);
		img_spawn(ij, argv);
		return;
	}
	nbd_disconnect_argv(img_qemu_nbd(), &ij->nbd, argv);
	img_spawn(ij, argv);
}

static void
img_cleanup_done(struct img_job *ij, const struct proc_result *r)
{
	char	why[256];

	nbd_release(&ij->nbd);
	if (r->exited && r->code == 0) {
		img_unrecord(ij);
		img_end(ij, json_pack("{s:s}", "undone", ij->device));
		return;
	}
	/* The record stays: the next start detaches what is left. */
	proc_describe(r, why, sizeof why);
	if (!ij->end_cancel) {
		/* Say both: why it failed, and what it could not undo. */
		size_t n = strlen(ij->end_err.desc);
		snprintf(ij->end_err.desc + n, sizeof ij->end_err.desc - n,
		    "; disconnecting %s failed too: %s", ij->device, why);
	}
	img_end(ij, json_pack("{s:s,s:s}", "left", ij->device, "why", why));
}

static void
img_attached(struct img_job *ij)
{
	struct img_att	*a;

	if (!img_record_step(ij, IMGREC_ATTACHED)) {
		img_cleanup(ij);
		return;
	}
	if ((a = calloc(1, sizeof *a)) == NULL) {
		qmp_error_set(&ij->end_err, QMP_CLS_GENERIC, "out of memory");
		img_cleanup(ij);
		return;
	}
	snprintf(a->device, sizeof a->device, "%s", ij->device);
	snprintf(a->path, sizeof a->path, "%s", ij->path);
	a->mode = ij->mode;
	a->ro = ij->ro;
	a->nbd = ij->nbd;
	ij->nbd.lockfd = -1;	/* the attachment holds the lock now */
	TAILQ_INSERT_TAIL(&img_atts, a, entry);
	job_conclude(ij->job, img_result(ij));
}

static void
img_proc_done(struct proc *p, const struct proc_result *r, void *arg)
{
	struct img_job		*ij = arg;
	struct qmp_error	 err;
	char			 why[256];
	bool			 ok = r->exited && r->code == 0;
	int			 rc;

	ij->p = NULL;
	if (ij->phase == IP_CLEANUP) {
		img_cleanup_done(ij, r);
		return;
	}
	proc_describe(r, why, sizeof why);

	if (!ij->attach) {
		if (ok) {
			if (ij->mode == IMG_NBD)
				nbd_release(&ij->att->nbd);
			json_t *res = json_pack("{s:s}", "device", ij->device);
			if (ij->mode == IMG_NBD)
				json_object_set_new(res, "flushed",
				    json_boolean(ij->flush_rc == 0));
			if (ij->mode == IMG_NBD && ij->flush_rc != 0)
				json_object_set_new(res, "flush-error",
				    json_string(ij->flush_err.desc));
			TAILQ_REMOVE(&img_atts, ij->att, entry);
			free(ij->att);
			ij->att = NULL;
			img_unrecord(ij);
			job_conclude(ij->job, res);
			return;
		}
		if (ij->mode == IMG_LOOP && ++ij->tries < IMG_DETACH_TRIES &&
		    !job_stopping()) {
			ij->phase = IP_RETRY;
			img_after(ij, IMG_DETACH_RETRY_MS);
			return;
		}
		img_detach_failed(ij);
		job_fail(ij->job, QMP_CLS_GENERIC, "detaching %s: %s",
		    ij->device, why);
		return;
	}

	if (ij->mode == IMG_LOOP && ij->phase == IP_FIND) {
		/* losetup --find attaches nothing: nothing to undo. */
		if (job_cancel_requested(ij->job)) {
			job_cancelled(ij->job, NULL);
			return;
		}
		if (!ok) {
			if (loop_out_of_devices(r->err) && ++ij->tries <
			    IMG_LOOP_RETRIES && !job_stopping()) {
				ij->phase = IP_RETRY;
				img_after(ij, IMG_LOOP_RETRY_MS);
				return;
			}
			job_fail(ij->job, QMP_CLS_GENERIC, "losetup --find: %s",
			    why);
			return;
		}
		if (loop_parse_device(r->out, ij->device, sizeof ij->device,
		    &err) == -1) {
			job_fail(ij->job, QMP_CLS_GENERIC, "losetup: %s",
			    err.desc);
			return;
		}
		/* Locked before its record, so a record is never written
		   over one a dead broker's tool still acts on. */
		if ((rc = img_lock(ij, &err)) == IMGREC_BUSY &&
		    ++ij->tries < IMG_LOOP_RETRIES && !job_stopping()) {
			ij->phase = IP_RETRY;
			img_after(ij, IMG_LOOP_RETRY_MS);
			return;
		}
		if (rc != 0) {
			job_fail_err(ij->job, &err);
			return;
		}
		if (!img_record_step(ij, IMGREC_ATTACHING)) {
			job_fail_err(ij->job, &ij->end_err);
			return;
		}
		ij->phase = IP_TOOL;
		img_step(ij);
		return;
	}

	if (ij->mode == IMG_LOOP) {
		/* A losetup that failed (or was killed) may still have
		   attached our file: sysfs tells. */
		bool	ours = ok || img_loop_backed(ij->device, ij->path);

		if (job_cancel_requested(ij->job)) {
			ij->end_cancel = true;
			if (ours)
				img_cleanup(ij);
			else {
				img_unrecord(ij);
				job_cancelled(ij->job, NULL);
			}
			return;
		}
		if (ok) {
			img_attached(ij);
			return;
		}
		if (ours) {
			qmp_error_set(&ij->end_err, QMP_CLS_GENERIC,
			    "losetup %s %s: %s", ij->device, ij->path, why);
			img_cleanup(ij);
			return;
		}
		img_unrecord(ij);
		/* Someone took the device between find and attach ("Device
		   or resource busy"): find another. */
		if ((loop_out_of_devices(r->err) ||
		    img_loop_backed(ij->device, NULL)) &&
		    ++ij->tries < IMG_LOOP_RETRIES && !job_stopping()) {
			ij->phase = IP_RETRY;
			img_after(ij, IMG_LOOP_RETRY_MS);
			return;
		}
		job_fail(ij->job, QMP_CLS_GENERIC, "losetup %s %s: %s",
		    ij->device, ij->path, why);
		return;
	}

	/* nbd attach: qemu-nbd -c returned. */
	if (job_cancel_requested(ij->job)) {
		ij->end_cancel = true;
		img_cleanup(ij);
		return;
	}
	if (!ok) {
		qmp_error_set(&ij->end_err, QMP_CLS_GENERIC, "qemu-nbd %s: %s",
		    ij->device, why);
		img_cleanup(ij);
		return;
	}
	ij->phase = IP_WAIT_PID;
	img_deadline(ij, conf.nbd_wait_ms > 0 ? conf.nbd_wait_ms :
	    IMG_NBD_WAIT_MS);
	img_step(ij);
}

static void
img_flush_fn(void *arg)
{
	struct img_job	*ij = arg;

	ij->flush_rc = nbd_flush(ij->device, &ij->flush_err);
}

static void
img_flush_done(void *arg, bool ran)
{
	struct img_job	*ij = arg;
	char		*argv[NBD_ARGV_MAX];

	ij->w = NULL;
	if (!ran) {
		img_detach_failed(ij);
		job_fail(ij->job, QMP_CLS_GENERIC, "broker shutting down before "
		    "%s was flushed; still attached", ij->device);
		return;
	}
	/* Flush failing (a device already gone) does not stop the detach:
	   it is reported in the result. */
	ij->phase = IP_TOOL;
	nbd_disconnect_argv(img_qemu_nbd(), &ij->att->nbd, argv);
	img_spawn(ij, argv);
}

/* Starts, retries or polls: the one place a phase moves on by itself. */
static void
img_step(struct img_job *ij)
{
	struct nbd_paths	 np;
	char			*argv[NBD_ARGV_MAX];

	switch (ij->phase) {
	case IP_FIND:
		loop_find_argv(img_losetup(), argv);
		img_spawn(ij, argv);
		return;
	case IP_TOOL:
	case IP_RETRY:
		if (ij->phase == IP_RETRY && ij->attach &&
		    ij->mode == IMG_LOOP) {
			ij->phase = IP_FIND;
			img_step(ij);
			return;
		}
		ij->phase = IP_TOOL;
		if (ij->attach && ij->mode == IMG_LOOP)
			loop_attach_argv(img_losetup(), ij->device, ij->path,
			    ij->ro, argv);
		else if (ij->mode == IMG_LOOP)
			loop_detach_argv(img_losetup(), ij->device, argv);
		else if (ij->attach)
			nbd_connect_argv(img_qemu_nbd(), &ij->nbd, ij->ro,
			    ij->format, ij->path, argv);
		else {
			ij->phase = IP_FLUSH;
			if ((ij->w = priv_active() ? work_submit(
			    img_priv_nbd_fn, img_priv_nbd_done, ij) :
			    work_submit(img_flush_fn, img_flush_done, ij)) ==
			    NULL) {
				img_detach_failed(ij);
				job_fail(ij->job, QMP_CLS_GENERIC,
				    "broker shutting down");
			}
			return;
		}
		img_spawn(ij, argv);
		return;
	case IP_WAIT_PID:
		img_nbd_paths(&np);
		if (nbd_connected(&np, &ij->nbd)) {
			img_attached(ij);
			return;
		}
		if (img_past_deadline(ij)) {
			qmp_error_set(&ij->end_err, QMP_CLS_GENERIC,
			    "qemu-nbd returned but %s did not connect within "
			    "the deadline (no pid in sysfs)", ij->device);
			img_cleanup(ij);
			return;
		}
		img_after(ij, IMG_NBD_POLL_MS);
		return;
	case IP_WAIT_TOOL:
		switch (img_rec_settle(ij)) {
		case 1:
			img_after(ij, IMG_TOOL_POLL_MS);
			return;
		case -1:
			return;
		}
		if (img_detach_record(ij)) {
			ij->phase = IP_TOOL;
			img_step(ij);
		}
		return;
	case IP_FLUSH:
	case IP_CLEANUP:
		break;
	}
}

/* "detaching", before the detach's first step; false when that cannot be
   written (the job failed, the attachment is as it was). */
static bool
img_detach_record(struct img_job *ij)
{
	if (img_record_step(ij, IMGREC_DETACHING))
		return (true);
	ij->att->detaching = false;
	ij->att = NULL;
	job_fail_err(ij->job, &ij->end_err);
	return (false);
}

static void
img_timer_cb(evutil_socket_t fd, short events, void *arg)
{
	struct img_job	*ij = arg;

	if (ij->priv_pending)
		img_priv_done(ij);
	else
		img_step(ij);
}

static void
img_start(struct job *j)
{
	struct img_job		*ij = job_data(j);
	struct nbd_paths	 np;
	struct qmp_error	 err;

	ij->job = j;
	if ((ij->timer = evtimer_new(job_base(), img_timer_cb, ij)) == NULL) {
		job_fail(j, QMP_CLS_GENERIC, "out of memory");
		return;
	}
	if (ij->attach && ij->mode == IMG_NBD) {
		img_nbd_paths(&np);
		if (nbd_pick(&np, &ij->nbd, &err) == -1) {
			job_fail_err(j, &err);
			return;
		}
		snprintf(ij->device, sizeof ij->device, "%s", ij->nbd.path);
		if (img_lock(ij, &err) != 0) {
			job_fail_err(j, &err);
			return;
		}
		if (!img_record_step(ij, IMGREC_ATTACHING)) {
			job_fail_err(j, &ij->end_err);
			return;
		}
	}
	if (ij->wait_tool) {
		/* Judged once the dead broker's tool is gone; first
		   looked at from the loop, not from inside image_recover. */
		img_deadline(ij, img_tool_ms());
		ij->phase = IP_WAIT_TOOL;
		img_after(ij, IMG_TOOL_POLL_MS);
		return;
	}
	if (!ij->attach && !img_detach_record(ij))
		return;
	ij->phase = ij->attach && ij->mode == IMG_LOOP ? IP_FIND : IP_TOOL;
	img_step(ij);
}

static void
img_cancel(struct job *j)
{
	struct img_job	*ij = job_data(j);

	switch (ij->phase) {
	case IP_FIND:
	case IP_TOOL:
		/* Reaped first; img_proc_done undoes what it finds. */
		if (ij->p != NULL)
			proc_kill(ij->p);
		return;
	case IP_RETRY:
		evtimer_del(ij->timer);
		job_cancelled(j, NULL);	/* nothing attached yet */
		return;
	case IP_WAIT_PID:
		evtimer_del(ij->timer);
		ij->end_cancel = true;
		img_cleanup(ij);
		return;
	case IP_FLUSH:
	case IP_CLEANUP:
	case IP_WAIT_TOOL:	/* detach only: never cancelled */
		return;	/* ends by itself shortly */
	}
}
