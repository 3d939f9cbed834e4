/*
 * Image attachment records: what image-attach / image-detach are doing
 * to which device, in the step journal (journal.h) under
 * STATE_DIR/images/{loop,nbd}/DEV.json, so a restarted broker can adopt
 * what is attached and undo what was half done.
 */
#ifndef BROKER_SVC_IMGREC_H
#define BROKER_SVC_IMGREC_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>

#include "proto/qmp_msg.h"

enum imgrec_state {
	IMGREC_ATTACHING,	/* the attaching child may have run */
	IMGREC_ATTACHED,	/* attached; the broker answers for it */
	IMGREC_DETACHING,	/* the detaching child may have run */
};

struct imgrec {
	bool			 nbd;
	char			 device[256];
	char			 path[PATH_MAX];
	bool			 ro;
	char			 format[24];	/* "" when none given */
	enum imgrec_state	 state;
};

const char	*imgrec_state_name(enum imgrec_state);
/* Replaces (imgrec_write) or removes the record of the device. 0, or
   -1 with err (GenericError) saying why, as journal_write does. */
int	imgrec_write(const char *state_dir, const struct imgrec *r,
	    struct qmp_error *err);
int	imgrec_remove(const char *state_dir, bool nbd, const char *device,
	    struct qmp_error *err);
/* A loaded record (journal_fn's group, id, rec) back into r; -1 with err
   (GenericError) saying what is wrong when it is not one this broker
   writes (wrong group, the id not the device's name, a field missing). */
int	imgrec_parse(const char *group, const char *id, const json_t *rec,
	    struct imgrec *r, struct qmp_error *err);

#endif
