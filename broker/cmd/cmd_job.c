/*
 * Job commands: query-jobs, job-cancel, job-dismiss.
 */
#include "config.h"

#include <stdint.h>

#include "broker/cmd/cmd.h"
#include "broker/core/job.h"

static struct job *
cmd_job_lookup(struct req *req, json_int_t id)
{
	struct job	*j;

	if (id <= 0 || (j = job_find((uint64_t)id)) == NULL) {
		req_error(req, QMP_CLS_GENERIC, "job %lld not found",
		    (long long)id);
		return NULL;
	}
	return j;
}

static void
cmd_query_jobs(struct req *req, json_t *args,
    const struct cmd_entry *e)
{
	json_int_t	 id = -1;
	struct job	*j;
	json_t		*a;

	if (req_unpack(req, args, "{s?I}", "id", &id) != 0)
		return;
	if (id == -1) {
		req_reply(req, job_list_json());
		return;
	}
	if ((j = cmd_job_lookup(req, id)) == NULL)
		return;
	a = json_array();
	json_array_append_new(a, job_json(j));
	req_reply(req, a);
}

/* job-cancel and job-dismiss: the same lookup, one verb apart. */
static void
cmd_job_act(struct req *req, json_t *args,
    int (*act)(struct job *, struct qmp_error *))
{
	struct qmp_error	 err;
	json_int_t		 id;
	struct job		*j;

	if (req_unpack(req, args, "{s:I}", "id", &id) != 0)
		return;
	if ((j = cmd_job_lookup(req, id)) == NULL)
		return;
	if (act(j, &err) != 0) {
		req_error_qmp(req, &err);
		return;
	}
	req_reply(req, NULL);
}

static void
cmd_job_cancel(struct req *req, json_t *args,
    const struct cmd_entry *e)
{
	cmd_job_act(req, args, job_cancel);
}

static void
cmd_job_dismiss(struct req *req, json_t *args,
    const struct cmd_entry *e)
{
	cmd_job_act(req, args, job_dismiss);
}

const struct cmd_entry cmd_job_table[] = {
	{ "query-jobs", cmd_query_jobs, 0, 0 },
	{ "job-cancel", cmd_job_cancel, 0, 0 },
	{ "job-dismiss", cmd_job_dismiss, 0, 0 },
	{ NULL, NULL, 0, 0 }
};
