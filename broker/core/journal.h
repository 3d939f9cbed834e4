/*
 * Step journals: one small file per operation in flight,
 * STATE_DIR/AREA/GROUP/ID.json, replaced atomically before every step
 * (temp file, fsync, rename, fsync of the directory) and removed when
 * the operation is over. What is left after a crash is exactly the set
 * of operations to reconcile. Each user has its own area ("hotplug":
 * GROUP is the VM; "images": GROUP is "loop" or "nbd") and never sees
 * another's records.
 */
#ifndef BROKER_CORE_JOURNAL_H
#define BROKER_CORE_JOURNAL_H

#include <stddef.h>
#include <jansson.h>

#include "proto/qmp_msg.h"

/* rec NULL removes the record. Returns 0, or -1 with err (GenericError)
   saying which name, path or system call failed. With no state directory
   configured nothing is written and 0 is returned. */
int	journal_write(const char *state_dir, const char *area,
	    const char *group, const char *id, const json_t *rec,
	    struct qmp_error *err);

/* Calls fn for every record found in area (rec borrowed). Unreadable or corrupt
   files are renamed to NAME.bad and reported through bad. Returns the
   number of records, -1 if the directory cannot be read. */
typedef void journal_fn(const char *group, const char *id, json_t *rec,
		    void *arg);
typedef void journal_bad_fn(const char *path, const char *why, void *arg);
int	journal_load(const char *state_dir, const char *area, journal_fn *,
	    journal_bad_fn *, void *arg);

#endif
