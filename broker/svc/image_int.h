/*
 * Internals shared by image.c (what the commands ask for), image_job.c
 * (the attach and detach jobs, step by step) and image_recover.c (what
 * a restarted broker finds in the journal). Not for outside svc/image.
 */
#ifndef BROKER_SVC_IMAGE_INT_H
#define BROKER_SVC_IMAGE_INT_H

#include <sys/queue.h>
#include <sys/time.h>

#include <limits.h>
#include <stdbool.h>

#include "broker/core/job.h"
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

	enum img_phase		 phase;
	struct proc		*p;
	struct work		*w;
	struct event		*timer;
	struct timeval		 deadline;
	int			 tries;

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
bool	img_loop_backed(const char *, const char *);
void	img_nbd_paths(struct nbd_paths *);

/* image.c */
struct job *img_detach_job(struct img_att *, bool, struct qmp_error *);

#endif
