/*
 * Fleet commands: request/reply on qmp.HOST.control (docs/nats.md).
 *
 * A request's body is one control-socket command; its reply is the
 * reply the control socket would give. Only the commands on
 * nats-control-allow run (default: none); any other gets a QMP error
 * before anything looks at its arguments, so it can have no effect.
 * Nothing comes with an fd over NATS.
 *
 * The requester is the peer "nats": uid and gid (uid_t)-2, neither
 * the broker's own (-1) nor root, so a VM with a vm-allow list refuses
 * it unless that list names uid 4294967294. Who may publish on
 * qmp.HOST.control at all is the NATS server's accounts and
 * permissions' to say.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "broker/cmd/cmd.h"
#include "broker/core/conf.h"
#include "broker/core/log.h"
#include "broker/fleet/fleet_int.h"
#include "proto/qmp_framer.h"

#define FLEET_CTL_MAX	64	/* commands on the allow list */

static char		*ctl_allow[FLEET_CTL_MAX];
static size_t		 ctl_nallow;
static natsSubscription	*ctl_sub;
static char		 ctl_subject[FLEET_TOKEN_MAX + 32];

/* libnats' thread: to the loop. */
static void
fleet_ctl_msg(natsConnection *nc, natsSubscription *sub, natsMsg *m,
    void *arg)
{
	fleet_post_request(m);
}

static void
fleet_ctl_free_allow(void)
{
	while (ctl_nallow > 0)
		free(ctl_allow[--ctl_nallow]);
}

int
fleet_ctl_start(struct qmp_error *err)
{
	char	*list, *p, *tok, *save = NULL;

	fleet_ctl_free_allow();
	snprintf(ctl_subject, sizeof ctl_subject, "qmp.%s.control",
	    fleet.host_tok);
	if (!conf.nats_control || conf.nats_control_allow == NULL)
		return (0);
	if ((list = strdup(conf.nats_control_allow)) == NULL) {
		qmp_error_set(err, QMP_CLS_GENERIC, "out of memory");
		return (-1);
	}
	for (p = list; (tok = strtok_r(p, ", \t", &save)) != NULL; p = NULL) {
		if (cmd_find(tok) == NULL) {
			qmp_error_set(err, QMP_CLS_GENERIC, "nats-control-allow:"
			    " no command '%s'", tok);
			break;
		}
		if (ctl_nallow >= FLEET_CTL_MAX) {
			qmp_error_set(err, QMP_CLS_GENERIC, "nats-control-allow:"
			    " more than %d commands", FLEET_CTL_MAX);
			break;
		}
		if ((ctl_allow[ctl_nallow] = strdup(tok)) == NULL) {
			qmp_error_set(err, QMP_CLS_GENERIC, "out of memory");
			break;
		}
		ctl_nallow++;
	}
	free(list);
	if (tok != NULL) {
		fleet_ctl_free_allow();
		return (-1);
	}
	return (0);
}

void
fleet_ctl_connected(void)
{
	natsStatus	s;

	if (!conf.nats_control || ctl_sub != NULL || fleet.nc == NULL)
		return;
	s = natsConnection_Subscribe(&ctl_sub, fleet.nc, ctl_subject,
	    fleet_ctl_msg, NULL);
	if (s != NATS_OK) {
		log_err("nats: cannot serve %s: %s", ctl_subject,
		    natsStatus_GetText(s));
		ctl_sub = NULL;
		return;
	}
	log_notice("nats: serving fleet commands on %s (%zu allowed)",
	    ctl_subject, ctl_nallow);
}

void
fleet_ctl_stop(void)
{
	if (ctl_sub == NULL)
		return;
	natsSubscription_Unsubscribe(ctl_sub);
	natsSubscription_Destroy(ctl_sub);
	ctl_sub = NULL;
}

static bool
fleet_ctl_allowed(const char *name)
{
	size_t	i;

	for (i = 0; i < ctl_nallow; i++) {
		if (strcmp(ctl_allow[i], name) == 0)
			return (true);
	}
	return (false);
}

static void
fleet_ctl_send(const char *reply, json_t *id, json_t *ret,
    const struct qmp_error *err)
{
	json_t	*j;
	char	*s;

	if (err != NULL)
		j = json_pack("{s:o}", "error", qmp_error_json(err));
	else
		j = json_pack("{s:o}", "return", ret != NULL ? ret :
		    json_object());
	if (j == NULL)
		return;
	if (id != NULL)
		json_object_set(j, "id", id);
	s = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	/* Buffered; the adapter's write event sends it. A reply lost to a
	   broken connection is the requester's timeout. */
	if (s != NULL && fleet.nc != NULL && !fleet.stopping)
		natsConnection_PublishString(fleet.nc, reply, s);
	free(s);
}

static void
fleet_ctl_done(struct req *r, json_t *ret, const struct qmp_error *err,
    void *arg)
{
	char	*reply = arg;

	fleet_ctl_send(reply, req_id(r), ret, err);
	free(reply);
}

void
fleet_ctl_request(natsMsg *m)
{
	struct qmp_error	 err;
	struct peer		 p;
	struct req		*r;
	json_t			*j, *args = NULL, *id = NULL;
	const char		*reply = natsMsg_GetReply(m), *name;
	const char		*data = natsMsg_GetData(m);
	int			 len = natsMsg_GetDataLength(m);
	char			*rep;

	if (reply == NULL || *reply == '\0' || ctl_sub == NULL) {
		natsMsg_Destroy(m);	/* nobody to answer */
		return;
	}
	if (len < 0 || (size_t)len > conf.max_msg) {
		qmp_error_set(&err, QMP_CLS_GENERIC, "message too long");
		fleet_ctl_send(reply, NULL, NULL, &err);
		natsMsg_Destroy(m);
		return;
	}
	if ((j = qmp_parse_line(data != NULL ? data : "", (size_t)len,
	    &err)) == NULL) {
		fleet_ctl_send(reply, NULL, NULL, &err);
		natsMsg_Destroy(m);
		return;
	}
	if (qmp_cmd_parse(j, &name, &args, &id, &err) == -1) {
		fleet_ctl_send(reply, id, NULL, &err);
		goto out;
	}
	if (!fleet_ctl_allowed(name)) {
		/* Before the command is even looked up: refused here, it
		   can have no effect. */
		log_info("nats: refused '%s' from %s (not on "
		    "nats-control-allow)", name, ctl_subject);
		qmp_error_set(&err, QMP_CLS_NOTFOUND, "The command %s is not "
		    "allowed over NATS", name);
		fleet_ctl_send(reply, id, NULL, &err);
		goto out;
	}
	memset(&p, 0, sizeof p);
	p.uid = (uid_t)-2;
	p.gid = (gid_t)-2;
	if ((rep = strdup(reply)) == NULL ||
	    (r = req_new(NULL, &p, json_incref(id), NULL, 0, fleet_ctl_done,
	    rep)) == NULL) {
		free(rep);
		log_err("nats: out of memory for a fleet command");
		goto out;
	}
	log_info("nats: fleet command '%s'", name);
	cmd_dispatch(r, name, args, true);
out:
	json_decref(j);
	natsMsg_Destroy(m);
}
