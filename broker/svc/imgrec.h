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
/*
 * The device's tool lock, STATE_DIR/images/GROUP/ID.lock, flock'd
 * (LOCK_EX | LOCK_NB). Handed to the child of a step as its fd 3
 * (proc_spawn_fd), it stays held while that child, or anything it forks
 * that keeps the fd, runs: even after the broker that started it died.
 * A restarted broker so knows whether a tool of the dead one may still
 * act on the device.
 * imgrec_tool_lock: the fd (close-on-exec; closing it lets go); -2
 * (IMGREC_BUSY) while someone else holds it; -1 with err (GenericError)
 * when it cannot be made or locked.
 * imgrec_tool_busy: whether someone holds it now (takes it for a moment;
 * a lock never made, or one that cannot be opened, is not held).
 */
#define IMGREC_BUSY	(-2)
int	imgrec_tool_lock(const char *state_dir, bool nbd, const char *device,
	    struct qmp_error *err);
bool	imgrec_tool_busy(const char *state_dir, bool nbd, const char *device);
/* A loaded record (journal_fn's group, id, rec) back into r; -1 with err
   (GenericError) saying what is wrong when it is not one this broker
   writes (wrong group, the id not the device's name, a field missing). */
int	imgrec_parse(const char *group, const char *id, const json_t *rec,
	    struct imgrec *r, struct qmp_error *err);

#endif
