/*
 * Command tables, dispatch and requests.
 *
 * A request is the broker's promise of exactly one reply. It outlives the
 * client that made it (the client may go while QEMU still works on the
 * command), so it holds a nullable client pointer that the client clears
 * on its way out.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker/broker.h"

struct req {
	struct client	*client;
	struct peer	 peer;
	json_t		*id;
	req_done_fn	*done;
	void		*arg;
	LIST_ENTRY(req)	 entry;
	size_t		 nfds;
	int		 fds[];
};

/* Each module's table; a new module adds its table here and to the list
   below (keep the marker lines). */
extern const struct cmd_entry cmd_base_table[];
extern const struct cmd_entry cmd_vm_table[];
extern const struct cmd_entry cmd_sub_table[];
extern const struct cmd_entry cmd_job_table[];
extern const struct cmd_entry cmd_domain_table[];
extern const struct cmd_entry cmd_image_table[];
extern const struct cmd_entry cmd_hp_table[];
/* @cmd-table-decls@ */

static const struct cmd_entry *const cmd_tables[] = {
	cmd_base_table,
	cmd_vm_table,
	cmd_sub_table,
	cmd_job_table,
	cmd_domain_table,
	cmd_image_table,
	cmd_hp_table,
	/* @cmd-tables@ */
	NULL
};

const struct cmd_entry *
cmd_find(const char *name)
{
	const struct cmd_entry *const	*t;
	const struct cmd_entry		*e;

	for (t = cmd_tables; *t != NULL; t++) {
		for (e = *t; e->name != NULL; e++) {
			if (strcmp(e->name, name) == 0)
				return (e);
		}
	}
	return (NULL);
}

void
cmd_foreach(void (*fn)(const struct cmd_entry *, void *), void *arg)
{
	const struct cmd_entry *const	*t;
	const struct cmd_entry		*e;

	for (t = cmd_tables; *t != NULL; t++) {
		for (e = *t; e->name != NULL; e++)
			fn(e, arg);
	}
}

int
cmd_precap_only(const char *name)
{
	const struct cmd_entry	*e = cmd_find(name);

	return (e != NULL && (e->flags & CMD_PRECAP));
}

struct req *
req_new(struct client *c, const struct peer *p, json_t *id, int *fds,
    size_t nfds, req_done_fn *done, void *arg)
{
	struct req	*r;
	size_t		 i;

	if ((r = calloc(1, sizeof *r + nfds * sizeof *fds)) == NULL) {
		for (i = 0; i < nfds; i++)
			close(fds[i]);
		json_decref(id);
		return (NULL);
	}
	r->client = c;
	if (p != NULL)
		r->peer = *p;
	else {
		r->peer.uid = (uid_t)-1;
		r->peer.gid = (gid_t)-1;
	}
	r->id = id;
	r->done = done;
	r->arg = arg;
	r->nfds = nfds;
	if (nfds != 0)
		memcpy(r->fds, fds, nfds * sizeof *fds);
	if (c != NULL) {
		LIST_INSERT_HEAD(&c->reqs, r, entry);
		c->nreqs++;
	}
	return (r);
}

static void
req_close_fds(struct req *r)
{
	size_t	i;

	for (i = 0; i < r->nfds; i++) {
		if (r->fds[i] != -1)
			close(r->fds[i]);
		r->fds[i] = -1;
	}
}

void
req_detach(struct req *r)
{
	if (r->client != NULL) {
		LIST_REMOVE(r, entry);
		r->client->nreqs--;
		r->client = NULL;
	}
}

static void
req_finish(struct req *r, json_t *ret, const struct qmp_error *err)
{
	struct client	*c = r->client;

	r->done(r, ret, err, r->arg);
	req_detach(r);
	req_close_fds(r);
	json_decref(r->id);
	free(r);
	if (c != NULL)
		client_req_finished(c);
}

void
req_reply(struct req *r, json_t *ret)
{
	if (ret == NULL)
		ret = json_object();
	req_finish(r, ret, NULL);
}

void
req_error_qmp(struct req *r, const struct qmp_error *err)
{
	req_finish(r, NULL, err);
}

void
req_error(struct req *r, const char *cls, const char *fmt, ...)
{
	struct qmp_error	e;
	va_list			ap;

	va_start(ap, fmt);
	qmp_error_vset(&e, cls, fmt, ap);
	va_end(ap);
	req_finish(r, NULL, &e);
}

/* jansson's texts, in QEMU's words where the meaning is clear. */
static void
req_unpack_error(struct req *r, const char *text)
{
	static const char	 missing[] = "Object item not found: ";
	static const char	 left[] = "object item(s) left unpacked: ";
	const char		*p;

	if (strncmp(text, missing, sizeof missing - 1) == 0) {
		req_error(r, QMP_CLS_GENERIC, "Parameter '%s' is missing",
		    text + sizeof missing - 1);
	} else if ((p = strstr(text, left)) != NULL) {
		req_error(r, QMP_CLS_GENERIC, "Parameter '%s' is unexpected",
		    p + sizeof left - 1);
	} else
		req_error(r, QMP_CLS_GENERIC, "Invalid parameter: %s", text);
}

/* For a flat "{s:T, s?T, ...}" format, the member whose type is wrong,
   in QEMU's words. 0 if it could not be told (then jansson's text goes
   out). */
static int
req_type_error(struct req *r, json_t *args, const char *fmt, va_list ap)
{
	const char	*key, *want;
	json_t		*v;
	int		 ok;

	if (*fmt++ != '{')
		return (0);
	for (;;) {
		while (*fmt == ' ' || *fmt == ',')
			fmt++;
		if (*fmt != 's')
			return (0);
		fmt++;
		key = va_arg(ap, const char *);
		if (*fmt == '?')
			fmt++;
		if (*fmt == ':')
			fmt++;
		v = json_object_get(args, key);
		switch (*fmt++) {
		case 's':
			want = "string";
			ok = json_is_string(v);
			break;
		case 'i':
		case 'I':
			want = "integer";
			ok = json_is_integer(v);
			break;
		case 'b':
			want = "boolean";
			ok = json_is_boolean(v);
			break;
		case 'F':
			want = "number";
			ok = json_is_number(v);
			break;
		case 'o':
		case 'O':
			want = NULL;
			ok = 1;
			break;
		default:
			return (0);
		}
		if (*fmt == '?') {
			fmt++;
			ok = ok || json_is_null(v);
		}
		(void)va_arg(ap, void *);
		if (v != NULL && !ok) {
			req_error(r, QMP_CLS_GENERIC, "Invalid parameter type "
			    "for '%s', expected: %s", key, want);
			return (1);
		}
	}
}

int
req_unpack(struct req *r, json_t *args, const char *fmt, ...)
{
	json_error_t	 je;
	json_t		*empty = NULL;
	va_list		 ap, ap2;
	int		 rc;

	if (args == NULL)
		args = empty = json_object();
	if (!json_is_object(args)) {
		json_decref(empty);
		req_error(r, QMP_CLS_GENERIC, "Invalid parameter: arguments "
		    "must be an object");
		return (-1);
	}
	va_start(ap, fmt);
	va_copy(ap2, ap);
	rc = json_vunpack_ex(args, &je, JSON_STRICT, fmt, ap);
	va_end(ap);
	if (rc == -1 && (strncmp(je.text, "Expected ", 9) != 0 ||
	    !req_type_error(r, args, fmt, ap2)))
		req_unpack_error(r, je.text);
	va_end(ap2);
	json_decref(empty);
	return (rc == -1 ? -1 : 0);
}

size_t
req_nfds(const struct req *r)
{
	return (r->nfds);
}

int
req_take_fd(struct req *r, size_t i)
{
	int	fd;

	if (i >= r->nfds)
		return (-1);
	fd = r->fds[i];
	r->fds[i] = -1;
	return (fd);
}

struct client *
req_client(const struct req *r)
{
	return (r->client);
}

int
req_peer_uid(const struct req *r)
{
	return ((int)r->peer.uid);
}

int
req_vm_allowed(const struct req *r, const char *name)
{
	return (ctl_vm_allowed(&r->peer, name));
}

json_t *
req_id(const struct req *r)
{
	return (r->id);
}

void *
req_arg(const struct req *r)
{
	return (r->arg);
}

/*
 * vm-allow: a command that names a VM ("vm", "name" for the vm-*
 * commands and query-vms, "domain" for the domain-* ones) runs only for a peer that VM allows. Checked
 * here, once, so no command can forget it.
 */
static int
cmd_vm_allowed(struct req *r, const char *name, json_t *args)
{
	const char	*vm;

	if (conf.n_vm_allows == 0 || !json_is_object(args))
		return (1);
	vm = json_string_value(json_object_get(args, "vm"));
	if (vm == NULL && (strncmp(name, "vm-", 3) == 0 ||
	    strcmp(name, "query-vms") == 0 || strcmp(name, "has-device") == 0))
		vm = json_string_value(json_object_get(args, "name"));
	/* a domain libvirt runs is the broker's VM of the same name */
	if (vm == NULL && strncmp(name, "domain-", 7) == 0)
		vm = json_string_value(json_object_get(args, "domain"));
	if (vm == NULL || ctl_vm_allowed(&r->peer, vm))
		return (1);
	log_warn("refused %s on VM '%s' for uid %u gid %u pid %ld (vm-allow)",
	    name, vm, (unsigned)r->peer.uid, (unsigned)r->peer.gid,
	    (long)r->peer.pid);
	req_error(r, QMP_CLS_GENERIC, "Permission denied");
	return (0);
}

void
cmd_dispatch(struct req *r, const char *name, json_t *args, int negotiated)
{
	const struct cmd_entry	*e;

	if ((e = cmd_find(name)) == NULL) {
		req_error(r, QMP_CLS_NOTFOUND, "The command %s has not been "
		    "found", name);
		return;
	}
	if (!negotiated && !(e->flags & CMD_PRECAP)) {
		req_error(r, QMP_CLS_NOTFOUND, "Expecting capabilities "
		    "negotiation with 'qmp_capabilities'");
		return;
	}
	/* fds nobody asked for must not pile up in the broker. */
	if (!(e->flags & CMD_FDS))
		req_close_fds(r);
	if (!cmd_vm_allowed(r, name, args))
		return;
	e->exec(r, args);
}

/* ---- the base commands ---- */

static void
cmd_qmp_capabilities(struct req *r, json_t *args)
{
	struct client	*c = req_client(r);
	json_t		*enable = NULL, *v;
	size_t		 i;

	if (req_unpack(r, args, "{s?o}", "enable", &enable) == -1)
		return;
	if (c != NULL && c->negotiated) {
		req_error(r, QMP_CLS_NOTFOUND, "Capabilities negotiation is "
		    "already complete, command ignored");
		return;
	}
	if (enable != NULL && !json_is_array(enable)) {
		req_error(r, QMP_CLS_GENERIC, "Invalid parameter type for "
		    "'enable', expected: array");
		return;
	}
	json_array_foreach(enable, i, v) {
		req_error(r, QMP_CLS_GENERIC, "Capability '%s' not available",
		    json_is_string(v) ? json_string_value(v) : "?");
		return;
	}
	if (c != NULL)
		client_set_negotiated(c);
	req_reply(r, NULL);
}

static void
cmd_query_commands_one(const struct cmd_entry *e, void *arg)
{
	json_array_append_new(arg, json_pack("{s:s}", "name", e->name));
}

static void
cmd_query_commands(struct req *r, json_t *args)
{
	json_t	*list;

	if (req_unpack(r, args, "{}") == -1)
		return;
	list = json_array();
	cmd_foreach(cmd_query_commands_one, list);
	req_reply(r, list);
}

static void
cmd_query_version(struct req *r, json_t *args)
{
	const struct qmp_version	*v = daemon_version();

	if (req_unpack(r, args, "{}") == -1)
		return;
	req_reply(r, json_pack("{s:{s:i,s:i,s:i},s:s}", "qemu",
	    "major", v->major, "minor", v->minor, "micro", v->micro,
	    "package", v->package));
}

const struct cmd_entry cmd_base_table[] = {
	{ "qmp_capabilities", cmd_qmp_capabilities, CMD_PRECAP },
	{ "query-commands", cmd_query_commands, 0 },
	{ "query-version", cmd_query_version, 0 },
	{ NULL, NULL, 0 }
};
