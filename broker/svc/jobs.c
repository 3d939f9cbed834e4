/*
 * Start and stop of the job runner and its families, in the one order
 * that is safe: the runner first and last, libvirt closed only once no
 * worker can be inside it.
 */
#include "config.h"

#include "broker/core/conf.h"
#include "broker/core/job.h"
#include "broker/svc/domain.h"
#include "broker/svc/image.h"
#include "broker/svc/jobs.h"
#include "broker/svc/migrate.h"

int
jobs_start(struct event_base *base)
{
	if (job_init(base, conf.workers) != 0)
		return (-1);
	if (domain_init(base) != 0 || image_init(base) != 0) {
		jobs_stop();
		return (-1);
	}
	/* vm-migrate jobs a broker that died left in its journal */
	migrate_init();
	return (0);
}

void
jobs_stop(void)
{
	job_shutdown();
	image_shutdown();
	domain_shutdown();
}
