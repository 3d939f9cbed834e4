/*
 * Live migration of broker-run VMs as jobs (vm-migrate).
 *
 * The broker drives QEMU's own migration over the VMs' endpoints
 * (vm_vmq): with a destination VM on this broker (started with
 * -incoming defer) it drives both ends, migrate-incoming there and then
 * migrate here; with a URI only the source. It only watches the
 * transfer: progress comes from QEMU's MIGRATION and MIGRATION_PASS
 * events (the "events" capability is switched on) and from query-migrate
 * polls, and goes out as the job's progress (query-jobs,
 * JOB_STATUS_CHANGE).
 *
 * Cancel is migrate_cancel; the job reports cancelled only once QEMU says
 * so (or concluded, if the migration completed first). A destination
 * that dies fails the job once the source has given up, which leaves the
 * source running where it was.
 */
#ifndef BROKER_SVC_MIGRATE_H
#define BROKER_SVC_MIGRATE_H

#include <stdbool.h>
#include <jansson.h>

#include "broker/core/job.h"
#include "hv/vmq.h"
#include "proto/qmp_msg.h"

/* One vm-migrate's arguments; borrowed for the call. */
struct migrate_req {
	const char	*vm;		/* the source */
	const char	*to;		/* destination VM, or NULL */
	const char	*uri;		/* NULL: a unix socket of the broker's
					   (needs to) */
	bool		 postcopy;
	bool		 quit_source;	/* quit the source once completed */
	long long	 bandwidth;	/* bytes/s; 0: QEMU's current */
	long long	 downtime_ms;	/* 0: QEMU's current */
	json_t		*caps;		/* {"name": bool}, or NULL */
};

/* At start, once the job runner runs: every migration the journal says
   a broker that died left in flight becomes a job again, which waits
   for its VMs, asks QEMU on both ends where it stands and watches the
   migration to its end, reports its outcome, or (migrate never reached
   the source) takes it up again. */
void		 migrate_init(void);

/* Validates q (names, URI policy, the ends' states as far as they can
   be known now) and starts the job: the job, or NULL with err set. */
struct job	*migrate_job(const struct migrate_req *q,
		    struct qmp_error *err);

/* vm-migrate-postcopy: switches VM vm's running postcopy migration to
   postcopy. fn gets QEMU's answer exactly once, never inside the call;
   -1 with err (and no call) if vm has no such migration. */
int		 migrate_postcopy(const char *vm, vmq_reply_fn *fn, void *arg,
		    struct qmp_error *err);

/* vm-migrate-pause: migrate-pause (out of band where QEMU offers it)
   on VM vm, the source of a job in postcopy-active. fn as above. */
int		 migrate_pause(const char *vm, vmq_reply_fn *fn, void *arg,
		    struct qmp_error *err);

/* vm-migrate-recover: for the job of source vm in postcopy-paused,
   migrate-recover on its destination VM (out of band where offered) at
   uri (NULL: the job's), then migrate with resume on the source. A
   URI-only job resumes the source only. fn gets the last answer, or the
   first error, exactly once, never inside the call. */
int		 migrate_recover(const char *vm, const char *uri,
		    vmq_reply_fn *fn, void *arg, struct qmp_error *err);

/* Whether VM name is an end of a running migration job: hotplug is
   refused then. err says which job. */
bool		 migrate_busy(const char *name, struct qmp_error *err);

#endif
