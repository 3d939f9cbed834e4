/*
 * The job families as one unit for the daemon: start them after the loop
 * exists (the base must be thread-enabled: evthread_use_pthreads() before
 * event_base_new(), for libvirt's event loop), stop them before it goes.
 * Stopping ends every job (cancelled or failed), joins every worker and
 * reaps every child.
 */
#ifndef BROKER_JOBS_H
#define BROKER_JOBS_H

#include <stdbool.h>
#include <event2/event.h>
#include <jansson.h>

#include "broker/cmd.h"

int	jobs_start(struct event_base *);
void	jobs_stop(void);

/* Parts, for tests that want less. */
int	domain_init(struct event_base *);
void	domain_shutdown(void);
int	image_init(struct event_base *);
void	image_shutdown(void);
/* Reconciles the image journal a previous broker left: adopts what is
   attached, detaches (as jobs) what was half attached or detached. Once
   the control socket is ours, so a broker refused there never touches
   the running one's devices. */
void	image_recover(void);

/* Domains libvirt runs, as VMs (virt_vm.c); called on the loop. */
void	virt_vm_lifecycle(const char *domain, bool running);
void	virt_vm_opened(void);
void	virt_vm_lost(const char *why);
bool	virt_vm_event(const char *domain, const char *event,
	    long long seconds, unsigned micros, json_t *data);

extern const struct cmd_entry cmd_job_table[];
extern const struct cmd_entry cmd_domain_table[];
extern const struct cmd_entry cmd_image_table[];

#endif
