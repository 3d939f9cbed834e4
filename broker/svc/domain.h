/*
 * Domains through libvirt: lifecycle jobs, the domain list, and the
 * libvirt connection whose running domains are VMs (virt_vm.c).
 */
#ifndef BROKER_SVC_DOMAIN_H
#define BROKER_SVC_DOMAIN_H

#include <stdbool.h>
#include <event2/event.h>
#include <jansson.h>

#include "broker/core/job.h"
#include "hv/virt.h"
#include "proto/qmp_msg.h"

#define DOMAIN_SHUTDOWN_S	60	/* default graceful shutdown */

/* One lifecycle command's arguments; strings borrowed for the call. */
struct domain_req {
	enum virt_op	 op;
	const char	*domain;	/* all but define */
	const char	*arg;		/* define's XML, a snapshot, a URI */
	int		 timeout_s;	/* shutdown */
	bool		 force;		/* shutdown */
	bool		 live;		/* migrate */
	long long	 bandwidth;	/* migrate, MiB/s */
};
/* Validates q and starts its job: the job, or NULL with err set. */
struct job *domain_job(const struct domain_req *q, struct qmp_error *err);

/* The domains libvirt knows, listed off the loop: fn gets the list
   (stolen) or err, once, never inside this call. -1 with err if it
   cannot start. */
typedef void domain_list_fn(json_t *list, const struct qmp_error *err,
	    void *arg);
int	domain_list(domain_list_fn *, void *arg, struct qmp_error *err);

/* The libvirt connection (virt_vm.c): on base (thread-enabled), its
   events as the VMs' events, reconnected when lost. */
int	domain_init(struct event_base *);
void	domain_shutdown(void);

#endif
