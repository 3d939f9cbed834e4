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

	if (req_unpack(r, args, "{s:s}", "domain", &q.domain) != 0)
		return;
	cmd_domain_launch(r, &q);
}

static void
cmd_domain_define(struct req *r, json_t *args, const struct cmd_entry *e,
    const struct cmd_target *t)
{
	struct domain_req	q = { .op = VIRT_DEFINE };

	if (req_unpack(r, args, "{s:s}", "xml", &q.arg) != 0)
		return;
	cmd_domain_launch(r, &q);
}

static void
cmd_domain_shutdown(struct req *r, json_t *args, const struct cmd_entry *e,
    const struct cmd_target *t)
{
	struct domain_req	q = { .op = VIRT_SHUTDOWN };
	json_int_t		timeout = DOMAIN_SHUTDOWN_S;
	int			force = 0;

	if (req_unpack(r, args, "{s:s,s?I,s?b}", "domain", &q.domain,
	    "timeout", &timeout, "force", &force) != 0)
		return;
	q.timeout_s = timeout < 0 || timeout > 3600 ? -1 : (int)timeout;
	q.force = force;
	cmd_domain_launch(r, &q);
}

/* domain-snapshot, domain-snapshot-revert */
static void
cmd_domain_snap(struct req *r, json_t *args, const struct cmd_entry *e,
    const struct cmd_target *t)
{
	struct domain_req	q = { .op = (enum virt_op)e->op };

	if (req_unpack(r, args, "{s:s,s:s}", "domain", &q.domain, "name",
	    &q.arg) != 0)
		return;
	cmd_domain_launch(r, &q);
}

static void
cmd_domain_migrate(struct req *r, json_t *args, const struct cmd_entry *e,
    const struct cmd_target *t)
{
	struct domain_req	q = { .op = VIRT_MIGRATE };
	json_int_t		bw = 0;
	int			live = 0;

	if (req_unpack(r, args, "{s:s,s:s,s?b,s?I}", "domain", &q.domain,
	    "uri", &q.arg, "live", &live, "bandwidth", &bw) != 0)
		return;
	q.live = live;
	q.bandwidth = bw;
	cmd_domain_launch(r, &q);
}

static void
cmd_query_domains_done(json_t *list, const struct qmp_error *err, void *arg)
{
	if (err != NULL)
		req_error_qmp(arg, err);
	else
		req_reply(arg, list);
}

static void
cmd_query_domains(struct req *r, json_t *args, const struct cmd_entry *e,
    const struct cmd_target *t)
{
	struct qmp_error	err;

	if (req_unpack(r, args, "{}") != 0)
		return;
	if (domain_list(cmd_query_domains_done, r, &err) == -1)
		req_error_qmp(r, &err);
}

/* a domain libvirt runs is the broker's VM of the same name: vm-allow
   applies, though the broker may not know the VM */
#define DOMAIN_TARGET	{ "domain", CMD_ALLOW_VM }

const struct cmd_entry cmd_domain_table[] = {
	{ .name = "domain-define", .exec = cmd_domain_define },
	{ .name = "domain-undefine", .exec = cmd_domain_simple,
	    .op = VIRT_UNDEFINE, .target = DOMAIN_TARGET },
	{ .name = "domain-start", .exec = cmd_domain_simple,
	    .op = VIRT_START, .target = DOMAIN_TARGET },
	{ .name = "domain-shutdown", .exec = cmd_domain_shutdown,
	    .target = DOMAIN_TARGET },
	{ .name = "domain-destroy", .exec = cmd_domain_simple,
	    .op = VIRT_DESTROY, .target = DOMAIN_TARGET },
	{ .name = "domain-reboot", .exec = cmd_domain_simple,
	    .op = VIRT_REBOOT, .target = DOMAIN_TARGET },
	{ .name = "domain-suspend", .exec = cmd_domain_simple,
	    .op = VIRT_SUSPEND, .target = DOMAIN_TARGET },
	{ .name = "domain-resume", .exec = cmd_domain_simple,
	    .op = VIRT_RESUME, .target = DOMAIN_TARGET },
	{ .name = "domain-save", .exec = cmd_domain_simple,
	    .op = VIRT_SAVE, .target = DOMAIN_TARGET },
	{ .name = "domain-snapshot", .exec = cmd_domain_snap,
	    .op = VIRT_SNAPSHOT, .target = DOMAIN_TARGET },
	{ .name = "domain-snapshot-revert", .exec = cmd_domain_snap,
	    .op = VIRT_SNAPSHOT_REVERT, .target = DOMAIN_TARGET },
	{ .name = "domain-migrate", .exec = cmd_domain_migrate,
	    .target = DOMAIN_TARGET },
	{ .name = "query-domains", .exec = cmd_query_domains },
	{ .name = NULL }
};
