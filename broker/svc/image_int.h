/*
 * Internals shared by image.c (what the commands ask for), image_job.c
 * (the attach and detach jobs, step by step), image_tool.c (tools,
 * records and tool locks) and image_recover.c (what a restarted broker
 * finds in the journal). Not for outside svc/image.
 */
#ifndef BROKER_SVC_IMAGE_INT_H
#define BROKER_SVC_IMAGE_INT_H

#include <sys/queue.h>
#include <sys/time.h>

#include <limits.h>
#include <stdbool.h>

#include "broker/core/job.h"
#include "broker/svc/imgrec.h"
#include "disk/nbd.h"
#include "proto/qmp_msg.h"

enum img_mode { IMG_LOOP, IMG_NBD };

/* A device the broker attached; only those can be detached through it. */
struct img_att {
	char			 device[256];
	enum img_mode		 mode;
	char			 path[PATH_MAX];
	bool			 ro;
	struct nbd_dev		 nbd;
	bool			 detaching;
	TAILQ_ENTRY(img_att)	 entry;
};
TAILQ_HEAD(img_att_list, img_att);
extern struct img_att_list	img_atts;	/* image.c */

enum img_phase {
	IP_FIND,	/* losetup --find running */
	IP_TOOL,	/* losetup / qemu-nbd -c / -d running */
	IP_RETRY,	/* timer before the next try */
	IP_WAIT_PID,	/* qemu-nbd returned; waiting for sysfs pid */
	IP_FLUSH,	/* BLKFLSBUF on a worker */
	IP_CLEANUP,	/* undoing a failed or cancelled attach */
	IP_WAIT_TOOL,	/* restart: a dead broker's tool still runs */
};

struct img_job {
	struct job		*job;
	bool			 attach;
	enum img_mode		 mode;
	char			 path[PATH_MAX];
	char			*format;
	bool			 ro;
	char			 device[256];
	struct nbd_dev		 nbd;
	struct img_att		*att;		/* detach: what goes */
	bool			 recorded;	/* attach: a record names it */
	bool			 recovery;	/* detach started by a restart */
	bool			 wait_tool;	/* recovery: IP_WAIT_TOOL first */
	enum imgrec_state	 found;		/* recovery: the record's state */
	int			 lockfd;	/* tool lock for the next child */

	enum img_phase		 phase;
	struct proc		*p;
	struct work		*w;
	struct event		*timer;
	struct timeval		 deadline;
	int			 tries;
	/* Separated (priv.h), a loop step is the helper's, done at once;
	   its result is handed over from the next loop pass, as a child's
	   reaping would be, so cancel and the job's phases stay as they
	   are. */
	bool			 priv_pending;
	bool			 priv_ok;
	char			 priv_out[64];
	char			 priv_err[512];

	/* How the job ends once cleanup is over. */
	bool			 end_cancel;
	struct qmp_error	 end_err;
	/* Worker result (flush). */
	struct qmp_error	 flush_err;
	int			 flush_rc;
};

/* image_job.c */
extern const struct job_ops	img_attach_ops;
extern const struct job_ops	img_detach_ops;

/* image_tool.c */
const char	*img_losetup(void);
const char	*img_qemu_nbd(void);
/* dev is attached, to path when path is not NULL (sysfs: no wait). */
bool	img_loop_backed(const char *dev, const char *path);
void	img_nbd_paths(struct nbd_paths *);
int	img_tool_ms(void);	/* tool-timeout-ms, or its default */
/* ij->deadline: ms from now; whether it has passed. */
void	img_deadline(struct img_job *, int ms);
bool	img_past_deadline(const struct img_job *);
/* Writes (replaces) the job's record, in state st; imgrec_write's
   contract. */
int	img_record(struct img_job *, enum imgrec_state st, struct qmp_error *);
/* The record of a step about to be taken; false (ij->end_err says why,
   the step is not taken) when it cannot be written. */
bool	img_record_step(struct img_job *, enum imgrec_state st);
/* Nothing is attached (any more) for this record: removed. One that
   cannot be removed only costs a check at the next start. */
void	img_unrecord(struct img_job *);
/* Takes the device's tool lock (imgrec_tool_lock) into ij->lockfd, for
   the next child to inherit: 0 (taken, or held already); IMGREC_BUSY (a
   tool an earlier broker started still runs on the device) or -1, each
   with err set. img_unlock closes it (no-op when not held). */
int	img_lock(struct img_job *, struct qmp_error *err);
void	img_unlock(struct img_job *);

/* image_recover.c */
/* IP_WAIT_TOOL, once per poll: 1 while the dead broker's tool may still
   act on the device (the caller polls again); 0 when it is gone and the
   device is there (logged; the caller detaches it); -1 when the job has
   ended: nothing was there (record removed, attachment forgotten, job
   concluded) or the tool outlived the deadline (job failed, record kept
   for the next start). */
int	img_rec_settle(struct img_job *);

/* image.c */
/* A detach job for a; found (NULL unless a restart starts it) is the
   record it comes from, and with wait_tool the job waits for the dead
   broker's tool (IP_WAIT_TOOL) before it judges the device. NULL with
   err set when none could be made. */
struct job *img_detach_job(struct img_att *a, const struct imgrec *found,
	    bool wait_tool, struct qmp_error *err);

#endif
