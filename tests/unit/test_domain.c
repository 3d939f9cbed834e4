/*
 * Domain lifecycle jobs against libvirt's in-process test driver
 * (test:///default), through the command table, on a real loop with
 * libvirt's event loop on libevent. The control socket is not here:
 * requests are made and answered in-process.
 */
#include "config.h"

#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/thread.h>

#include "broker/cmd/cmd.h"
#include "broker/core/bus.h"
#include "broker/core/conf.h"
#include "broker/core/job.h"
#include "broker/core/loop.h"
#include "broker/core/work.h"
#include "broker/session/req.h"
#include "broker/svc/jobs.h"
#include "hv/virt.h"

/* ---- the broker side, in-process: real requests and dispatch ---- */
struct reply {
	json_t	*reply;		/* {"return": ...} or {"error": ...} */
};

static void
capture(struct req *r, json_t *ret, const struct qmp_error *err, void *arg)
{
	struct reply	*p = arg;

	if (err != NULL)
		p->reply = json_pack("{s:o}", "error", qmp_error_json(err));
	else
		p->reply = json_pack("{s:o}", "return", ret);
}

/* Starts name with args, the reply to go into p. */
static void
start(const char *name, json_t *args, struct reply *p)
{
	struct req	*r;

	r = req_new(NULL, NULL, NULL, NULL, 0, capture, p);
	assert_non_null(r);
	cmd_dispatch(r, name, args, true);
}

static struct event_base *base;

static int
replied(void *arg)
{
	return (((struct reply *)arg)->reply != NULL);
}

static void
run_until(int (*cond)(void *), void *arg)
{
	struct timeval	tv = { 0, 20000 };
	int		i;

	for (i = 0; i < 1500 && !cond(arg); i++)
		event_base_loopexit(base, &tv), event_base_dispatch(base);
	assert_true(cond(arg));
}

/* Runs a command to its reply; returns the reply (caller frees). */
static json_t *
call(const char *name, const char *argfmt, ...)
{
	struct reply	 r = { NULL };
	json_t		*args = NULL;
	va_list		 ap;

	if (argfmt != NULL) {
		va_start(ap, argfmt);
		args = json_vpack_ex(NULL, 0, argfmt, ap);
		va_end(ap);
		assert_non_null(args);
	}
	start(name, args, &r);
	json_decref(args);
	run_until(replied, &r);
	return (r.reply);
}

static int
job_over(void *arg)
{
	struct job *j = job_find(*(uint64_t *)arg);
	return (job_status(j) >= JOB_CONCLUDED);
}

/* Runs a job command to its end; returns job_json of it (caller frees). */
static json_t *
run_job(const char *name, const char *argfmt, ...)
{
	struct reply	 r = { NULL };
	json_t		*args, *ret;
	va_list		 ap;
	uint64_t	 id;

	va_start(ap, argfmt);
	args = json_vpack_ex(NULL, 0, argfmt, ap);
	va_end(ap);
	start(name, args, &r);
	json_decref(args);
	assert_non_null(r.reply);	/* answered at once */
	ret = json_object_get(r.reply, "return");
	if (ret == NULL)
		return (r.reply);		/* refused: the error itself */
	id = json_integer_value(json_object_get(ret, "job"));
	assert_true(id > 0);
	json_decref(r.reply);
	run_until(job_over, &id);
	return (job_json(job_find(id)));
}

static const char *
jstr(json_t *o, const char *path)
{
	char	 buf[128], *tok, *save;
	json_t	*v = o;

	snprintf(buf, sizeof buf, "%s", path);
	for (tok = strtok_r(buf, ".", &save); tok != NULL && v != NULL;
	    tok = strtok_r(NULL, ".", &save))
		v = json_object_get(v, tok);
	return (json_string_value(v));
}

static const char *
dom_state(const char *name)
{
	static char	 st[32];
	json_t		*r = call("query-domains", NULL), *d;
	size_t		 i;

	st[0] = '\0';
	json_array_foreach(json_object_get(r, "return"), i, d)
		if (strcmp(jstr(d, "name"), name) == 0)
			snprintf(st, sizeof st, "%s", jstr(d, "state"));
	json_decref(r);
	return (st[0] != '\0' ? st : "gone");
}

#define EXPECT(j, status) do { \
	if (strcmp(jstr((j), "status"), (status)) != 0) \
		fail_msg("job %s: %s", jstr((j), "status"), \
		    json_dumps((j), 0)); \
} while (0)

#define XML \
    "<domain type='test'><name>%s</name><memory>65536</memory>" \
    "<os><type>hvm</type></os></domain>"

static void
test_lifecycle(void **state)
{
	json_t	*j, *r;
	char	 xml[512];

	snprintf(xml, sizeof xml, XML, "qb1");
	j = run_job("domain-define", "{s:s}", "xml", xml);
	EXPECT(j, "concluded");
	assert_string_equal(jstr(j, "result.domain"), "qb1");
	json_decref(j);
	assert_string_equal(dom_state("qb1"), "shutoff");

	/* Already off: destroy is success. */
	j = run_job("domain-destroy", "{s:s}", "domain", "qb1");
	EXPECT(j, "concluded");
	json_decref(j);

	j = run_job("domain-start", "{s:s}", "domain", "qb1");
	EXPECT(j, "concluded");
	assert_string_equal(jstr(j, "result.state"), "running");
	json_decref(j);

	j = run_job("domain-suspend", "{s:s}", "domain", "qb1");
	EXPECT(j, "concluded");
	assert_string_equal(jstr(j, "result.state"), "paused");
	json_decref(j);
	assert_string_equal(dom_state("qb1"), "paused");

	j = run_job("domain-resume", "{s:s}", "domain", "qb1");
	EXPECT(j, "concluded");
	assert_string_equal(dom_state("qb1"), "running");
	json_decref(j);

	j = run_job("domain-reboot", "{s:s}", "domain", "qb1");
	EXPECT(j, "concluded");
	json_decref(j);

	j = run_job("domain-snapshot", "{s:s,s:s}", "domain", "qb1", "name",
	    "s1");
	EXPECT(j, "concluded");
	json_decref(j);
	j = run_job("domain-snapshot-revert", "{s:s,s:s}", "domain", "qb1",
	    "name", "s1");
	EXPECT(j, "concluded");
	json_decref(j);
	j = run_job("domain-snapshot-revert", "{s:s,s:s}", "domain", "qb1",
	    "name", "nosuch");
	EXPECT(j, "failed");
	json_decref(j);

	j = run_job("domain-save", "{s:s}", "domain", "qb1");
	EXPECT(j, "concluded");
	assert_string_equal(dom_state("qb1"), "shutoff");
	json_decref(j);
	j = run_job("domain-start", "{s:s}", "domain", "qb1");	/* restores */
	EXPECT(j, "concluded");
	json_decref(j);

	j = run_job("domain-shutdown", "{s:s,s:i}", "domain", "qb1",
	    "timeout", 10);
	EXPECT(j, "concluded");
	assert_string_equal(jstr(j, "result.state"), "shutoff");
	json_decref(j);

	/* The test driver cannot migrate: a clear failure, not a hang. */
	j = run_job("domain-start", "{s:s}", "domain", "qb1");
	json_decref(j);
	j = run_job("domain-migrate", "{s:s,s:s,s:b,s:i}", "domain", "qb1",
	    "uri", "test:///default", "live", 1, "bandwidth", 10);
	EXPECT(j, "failed");
	assert_non_null(jstr(j, "error.desc"));
	json_decref(j);
	j = run_job("domain-destroy", "{s:s}", "domain", "qb1");
	EXPECT(j, "concluded");
	assert_string_equal(jstr(j, "result.state"), "shutoff");
	json_decref(j);

	j = run_job("domain-undefine", "{s:s}", "domain", "qb1");
	EXPECT(j, "concluded");
	json_decref(j);
	assert_string_equal(dom_state("qb1"), "gone");

	j = run_job("domain-start", "{s:s}", "domain", "qb1");
	EXPECT(j, "failed");
	assert_non_null(strstr(jstr(j, "error.desc"), "qb1"));
	json_decref(j);

	/* Bad arguments are refused at once, no job made. */
	r = run_job("domain-snapshot", "{s:s,s:s}", "domain", "qb1", "name",
	    "../x");
	assert_non_null(json_object_get(r, "error"));
	json_decref(r);
	r = run_job("domain-start", "{s:s,s:i}", "domain", "qb1", "extra", 1);
	assert_non_null(json_object_get(r, "error"));
	json_decref(r);
	r = run_job("domain-define", "{s:s}", "xml", "<domain/>");
	assert_non_null(json_object_get(r, "error"));
	json_decref(r);
}

static void
test_one_per_domain(void **state)
{
	struct reply	 a = { NULL }, b = { NULL };
	json_t		*args, *j;
	char		 xml[512];
	uint64_t	 id;

	snprintf(xml, sizeof xml, XML, "qb2");
	j = run_job("domain-define", "{s:s}", "xml", xml);
	json_decref(j);
	args = json_pack("{s:s}", "domain", "qb2");
	start("domain-start", args, &a);
	start("domain-suspend", args, &b);
	json_decref(args);
	assert_non_null(json_object_get(a.reply, "return"));
	assert_non_null(strstr(jstr(b.reply, "error.desc"), "busy"));
	id = json_integer_value(json_object_get(json_object_get(a.reply,
	    "return"), "job"));
	json_decref(a.reply);
	json_decref(b.reply);
	run_until(job_over, &id);
	j = run_job("domain-destroy", "{s:s}", "domain", "qb2");
	json_decref(j);
	j = run_job("domain-undefine", "{s:s}", "domain", "qb2");
	json_decref(j);
}

static void
test_cancel(void **state)
{
	struct qmp_error	 err;
	struct reply		 a = { NULL };
	json_t			*args, *j;
	char			 xml[512];
	uint64_t		 id;
	int			 i;

	snprintf(xml, sizeof xml, XML, "qb3");
	json_decref(run_job("domain-define", "{s:s}", "xml", xml));
	/* Cancel right after the command: the call is queued or running;
	   either way the job ends once, cancelled or (too late) concluded,
	   and a snapshot taken meanwhile is deleted again. */
	for (i = 0; i < 20; i++) {
		char	name[16];
		snprintf(name, sizeof name, "c%d", i);
		a.reply = NULL;
		args = json_pack("{s:s,s:s}", "domain", "qb3", "name", name);
		start("domain-snapshot", args, &a);
		json_decref(args);
		id = json_integer_value(json_object_get(json_object_get(
		    a.reply, "return"), "job"));
		json_decref(a.reply);
		assert_int_equal(job_cancel(job_find(id), &err), 0);
		run_until(job_over, &id);
		j = job_json(job_find(id));
		if (strcmp(jstr(j, "status"), "cancelled") == 0) {
			/* Either never ran, or ran and was undone. */
			json_t *rev = run_job("domain-snapshot-revert",
			    "{s:s,s:s}", "domain", "qb3", "name", name);
			EXPECT(rev, "failed");
			json_decref(rev);
		} else
			EXPECT(j, "concluded");
		json_decref(j);
	}
	json_decref(run_job("domain-undefine", "{s:s}", "domain", "qb3"));
}

static void
test_query_jobs(void **state)
{
	json_t	*r;

	r = call("query-jobs", NULL);
	assert_true(json_array_size(json_object_get(r, "return")) > 10);
	json_decref(r);
	r = call("query-jobs", "{s:i}", "id", 99999);
	assert_non_null(strstr(jstr(r, "error.desc"), "not found"));
	json_decref(r);
	r = call("job-dismiss", "{s:i}", "id", 1);
	assert_non_null(json_object_get(r, "return"));
	json_decref(r);
	r = call("query-jobs", "{s:i}", "id", 1);
	assert_non_null(json_object_get(r, "error"));
	json_decref(r);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lifecycle),
		cmocka_unit_test(test_one_per_domain),
		cmocka_unit_test(test_cancel),
		cmocka_unit_test(test_query_jobs),
	};
	int	rc;

	evthread_use_pthreads();
	loop_base = base = event_base_new();
	conf.job_keep_s = 600;
	conf.libvirt_uri = "test:///default";
	assert_int_equal(jobs_start(base), 0);
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	jobs_stop();
	assert_int_equal(work_threads(), 0);
	event_base_free(base);
	return (rc);
}
