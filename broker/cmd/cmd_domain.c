/*
 * Domain commands: one lifecycle job per command (svc/domain.c), and
 * query-domains.
 */
#include "config.h"

#include <string.h>

#include "broker/cmd/cmd.h"
#include "broker/svc/domain.h"

/* Starts q's job and answers with its id. */
static void
cmd_domain_launch(struct req *r, const struct domain_req *q)
{
	struct qmp_error	 err;
	struct job		*j;

	if ((j = domain_job(q, &err)) == NULL)
		req_error_qmp(r, &err);
	else
		cmd_reply_job(r, j);
}

/* domain-start and the others that name a domain and nothing else. */
static void
cmd_domain_simple(struct req *r, json_t *args, const struct cmd_entry *e,
    const struct cmd_target *t)
{
	struct domain_req	q = { .op = (enum virt_op)e->op };

	q.domain = cmd_arg_str(args, "domain");
	cmd_domain_launch(r, &q);
}

static void
cmd_domain_define(struct req *r, json_t *args, const struct cmd_entry *e,
    const struct cmd_target *t)
{
	struct domain_req	q = { .op = VIRT_DEFINE };

	q.arg = cmd_arg_str(args, "xml");
	cmd_domain_launch(r, &q);
}

static void
cmd_domain_shutdown(struct req *r, json_t *args, const struct cmd_entry *e,
    const struct cmd_target *t)
{
	struct domain_req	q = { .op = VIRT_SHUTDOWN };
	json_int_t		timeout;

	timeout = cmd_arg_int(args, "timeout", DOMAIN_SHUTDOWN_S);
	q.domain = cmd_arg_str(args, "domain");
	q.timeout_s = timeout < 0 || timeout > 3600 ? -1 : (int)timeout;
	q.force = cmd_arg_bool(args, "force");
	cmd_domain_launch(r, &q);
}

/* domain-snapshot, domain-snapshot-revert */
static void
cmd_domain_snap(struct req *r, json_t *args, const struct cmd_entry *e,
    const struct cmd_target *t)
{
	struct domain_req	q = { .op = (enum virt_op)e->op };

	q.domain = cmd_arg_str(args, "domain");
	q.arg = cmd_arg_str(args, "name");
	cmd_domain_launch(r, &q);
}

static void
cmd_domain_migrate(struct req *r, json_t *args, const struct cmd_entry *e,
    const struct cmd_target *t)
{
	struct domain_req	q = { .op = VIRT_MIGRATE };

	q.domain = cmd_arg_str(args, "domain");
	q.arg = cmd_arg_str(args, "uri");
	q.live = cmd_arg_bool(args, "live");
	q.bandwidth = cmd_arg_int(args, "bandwidth", 0);
	cmd_domain_launch(r, &q);
}

static void
cmd_query_domains_done(json_t *list, const struct qmp_error *err, void *arg)
{
	if (err != NULL)
		req_error_qmp(arg, err);
	else
		req_reply(arg, cmd_visible(req_peer(arg), list, "name"));
}

static void
cmd_query_domains(struct req *r, json_t *args, const struct cmd_entry *e,
    const struct cmd_target *t)
{
	struct qmp_error	err;

	if (domain_list(cmd_query_domains_done, r, &err) == -1)
		req_error_qmp(r, &err);
}

/* a domain libvirt runs is the broker's VM of the same name: vm-allow
   applies, though the broker may not know the VM */
#define DOMAIN_TARGET	{ "domain", CMD_ALLOW_VM }
#define DOMAIN_ARG	{ "domain", 's', true }
/* domain-start and the others that take nothing else */
#define DOMAIN_SIMPLE	.target = DOMAIN_TARGET, .args = { DOMAIN_ARG }

const struct cmd_entry cmd_domain_table[] = {
	{ .name = "domain-define", .exec = cmd_domain_define,
	    .args = { { "xml", 's', true } } },
	{ .name = "domain-undefine", .exec = cmd_domain_simple,
	    .op = VIRT_UNDEFINE, DOMAIN_SIMPLE },
	{ .name = "domain-start", .exec = cmd_domain_simple,
	    .op = VIRT_START, DOMAIN_SIMPLE },
	{ .name = "domain-shutdown", .exec = cmd_domain_shutdown,
	    .target = DOMAIN_TARGET,
	    .args = { DOMAIN_ARG, { "timeout", 'I', false },
	    { "force", 'b', false } } },
	{ .name = "domain-destroy", .exec = cmd_domain_simple,
	    .op = VIRT_DESTROY, DOMAIN_SIMPLE },
	{ .name = "domain-reboot", .exec = cmd_domain_simple,
	    .op = VIRT_REBOOT, DOMAIN_SIMPLE },
	{ .name = "domain-suspend", .exec = cmd_domain_simple,
	    .op = VIRT_SUSPEND, DOMAIN_SIMPLE },
	{ .name = "domain-resume", .exec = cmd_domain_simple,
	    .op = VIRT_RESUME, DOMAIN_SIMPLE },
	{ .name = "domain-save", .exec = cmd_domain_simple,
	    .op = VIRT_SAVE, DOMAIN_SIMPLE },
	{ .name = "domain-snapshot", .exec = cmd_domain_snap,
	    .op = VIRT_SNAPSHOT, .target = DOMAIN_TARGET,
	    .args = { DOMAIN_ARG, { "name", 's', true } } },
	{ .name = "domain-snapshot-revert", .exec = cmd_domain_snap,
	    .op = VIRT_SNAPSHOT_REVERT, .target = DOMAIN_TARGET,
	    .args = { DOMAIN_ARG, { "name", 's', true } } },
	{ .name = "domain-migrate", .exec = cmd_domain_migrate,
	    .target = DOMAIN_TARGET,
	    .args = { DOMAIN_ARG, { "uri", 's', true },
	    { "live", 'b', false }, { "bandwidth", 'I', false } } },
	{ .name = "query-domains", .exec = cmd_query_domains },
	{ .name = NULL }
};
