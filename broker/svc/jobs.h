/*
 * The job families as one unit for the daemon: start them after the loop
 * exists (the base must be thread-enabled: evthread_use_pthreads() before
 * event_base_new(), for libvirt's event loop), stop them before it goes.
 * Stopping ends every job (cancelled or failed), joins every worker and
 * reaps every child.
 */
#ifndef BROKER_SVC_JOBS_H
#define BROKER_SVC_JOBS_H

#include <stdbool.h>
#include <event2/event.h>
#include <jansson.h>


int	jobs_start(struct event_base *);
void	jobs_stop(void);

/* Parts, for tests that want less (domain_init: svc/domain.h). */
int	image_init(struct event_base *);
void	image_shutdown(void);
/* Reconciles the image journal a previous broker left: adopts what is
   attached, detaches (as jobs) what was half attached or detached. Once
   the control socket is ours, so a broker refused there never touches
   the running one's devices. */
void	image_recover(void);

#endif
