/*
 * Job commands: query-jobs, job-cancel, job-dismiss.
 */
#include "config.h"

#include "broker/cmd/cmd.h"
#include "broker/core/job.h"

enum { CMD_JOB_CANCEL, CMD_JOB_DISMISS };

/*
 * query-jobs looks its job up itself: an "id" of -1 lists them all, as
 * no id does, where the dispatcher would answer "job -1 not found".
 */
static void
cmd_query_jobs(struct req *req, json_t *args, const struct cmd_entry *e,
    const struct cmd_target *t)
{
	json_int_t	 id = cmd_arg_int(args, "id", -1);
	struct job	*j;
	json_t		*a;

	if (id == -1) {
		req_reply(req, job_list_json());
		return;
	}
	if ((j = cmd_find_job(req, id)) == NULL)
		return;
	a = json_array();
	json_array_append_new(a, job_json(j));
	req_reply(req, a);
}

/* job-cancel and job-dismiss: the dispatcher found the job; .op is the
   verb. */
static void
cmd_job_act(struct req *req, json_t *args, const struct cmd_entry *e,
    const struct cmd_target *t)
{
	struct qmp_error	 err;
	int			 rc;

	if (e->op == CMD_JOB_CANCEL)
		rc = job_cancel(t->job, &err);
	else
		rc = job_dismiss(t->job, &err);
	if (rc != 0) {
		req_error_qmp(req, &err);
		return;
	}
	req_reply(req, NULL);
}

#define JOB_TARGET	{ "id", CMD_FIND_JOB }
#define JOB_ARGS	{ { "id", 'I', true } }

const struct cmd_entry cmd_job_table[] = {
	{ .name = "query-jobs", .exec = cmd_query_jobs, .flags = CMD_OOB,
	    .args = { { "id", 'I', false } } },
	{ .name = "job-cancel", .exec = cmd_job_act, .op = CMD_JOB_CANCEL,
	    .flags = CMD_OOB,
	    .target = JOB_TARGET, .args = JOB_ARGS },
	{ .name = "job-dismiss", .exec = cmd_job_act, .op = CMD_JOB_DISMISS,
	    .target = JOB_TARGET, .args = JOB_ARGS },
	{ .name = NULL }
};
