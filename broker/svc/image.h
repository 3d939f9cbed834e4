/*
 * Image attach as a service: loop and nbd devices, each attach or
 * detach a job (core/job.h), every attachment journaled so a restarted
 * broker adopts what is attached and undoes what was half done.
 */
#ifndef BROKER_SVC_IMAGE_H
#define BROKER_SVC_IMAGE_H

#include <stdbool.h>

#include "broker/core/job.h"
#include "proto/qmp_msg.h"

/* mode "loop" or "nbd"; format NULL for raw (nbd: any qemu-img format);
   path must lie under an image root. The started job, or NULL with err
   set. Strings are borrowed. */
struct job *image_attach(const char *path, const char *mode,
	    const char *format, bool ro, struct qmp_error *err);
/* Only a device this broker attached. */
struct job *image_detach(const char *device, struct qmp_error *err);

#endif
