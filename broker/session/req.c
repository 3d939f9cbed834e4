/*
 * Requests: one reply promised per command, whoever finishes it.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker/core/audit.h"
#include "broker/session/req.h"
#include "broker/vm/vm.h"
#include "hv/vmq.h"

/* fds one request may pass on to QEMU at once */
#define REQ_FDS_MAX	16

struct req {
	struct req_list	*list;
	struct peer	 peer;
	json_t		*id;
	req_done_fn	*done;
	void		*arg;
	LIST_ENTRY(req)	 entry;
	bool		 oob;
	struct audit_pending *audit;
	size_t		 nfds;
	int		 fds[];
};

struct req *
req_new(struct req_list *list, const struct peer *p, json_t *id, int *fds,
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
	if (p != NULL)
		peer_copy(&r->peer, p);
	else
		peer_self(&r->peer);
	r->id = id;
	r->done = done;
	r->arg = arg;
	r->nfds = nfds;
	if (nfds != 0)
		memcpy(r->fds, fds, nfds * sizeof *fds);
	if ((r->list = list) != NULL)
		LIST_INSERT_HEAD(list, r, entry);
	return (r);
}

void
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
req_orphan(struct req *r)
{
	if (r->list != NULL)
		LIST_REMOVE(r, entry);
	r->list = NULL;
	r->done = NULL;
	r->arg = NULL;
}

static void
req_finish(struct req *r, json_t *ret, const struct qmp_error *err)
{
	req_done_fn	*done = r->done;
	void		*arg = r->arg;

	req_orphan(r);
	if (r->audit != NULL)
		audit_end(r->audit, err);
	if (done != NULL)
		done(r, ret, err, arg);
	else
		json_decref(ret);
	req_close_fds(r);
	peer_release(&r->peer);
	json_decref(r->id);
	free(r);
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

/* Whether v is of json_unpack's type letter; want names the type in
   QEMU's words. -1 for a letter json_unpack does not know. */
static int
req_arg_type(char type, json_t *v, const char **want)
{
	switch (type) {
	case 's':
		*want = "string";
		return (json_is_string(v));
	case 'i':
	case 'I':
		*want = "integer";
		return (json_is_integer(v));
	case 'b':
		*want = "boolean";
		return (json_is_boolean(v));
	case 'F':
		*want = "number";
		return (json_is_number(v));
	case 'o':
	case 'O':
		*want = NULL;
		return (1);
	}
	return (-1);
}

static const struct req_arg *
req_arg_find(const struct req_arg *spec, const char *name)
{
	for (; spec->name != NULL; spec++) {
		if (strcmp(spec->name, name) == 0)
			return (spec);
	}
	return (NULL);
}

/*
 * The members of args that spec does not name, as jansson's strict
 * unpack tells them: all of them, in args' order, in a text cut to what
 * its json_error_t holds; req_unpack_error words it.
 */
static void
req_unexpected(struct req *r, json_t *args, const struct req_arg *spec)
{
	char		 text[JSON_ERROR_TEXT_LENGTH - 1];
	const char	*key, *sep = "";
	json_t		*v;
	long		 n = 0;
	size_t		 len;
	int		 w;

	json_object_foreach(args, key, v) {
		if (req_arg_find(spec, key) == NULL)
			n++;
	}
	w = snprintf(text, sizeof text, "%ld object item(s) left unpacked: ",
	    n);
	len = w < 0 ? 0 : (size_t)w;
	json_object_foreach(args, key, v) {
		if (len >= sizeof text - 1)
			break;
		if (req_arg_find(spec, key) != NULL)
			continue;
		w = snprintf(text + len, sizeof text - len, "%s%s", sep, key);
		len += w < 0 ? 0 : (size_t)w;
		sep = ", ";
	}
	req_unpack_error(r, text);
}

int
req_check_args(struct req *r, json_t *args, const struct req_arg *spec)
{
	const struct req_arg	*a;
	const char		*want;
	json_t			*v;
	size_t			 n = 0;
	int			 ok;

	if (args != NULL && !json_is_object(args)) {
		req_error(r, QMP_CLS_GENERIC, "Invalid parameter: arguments "
		    "must be an object");
		return (-1);
	}
	for (a = spec; a->name != NULL; a++) {
		v = json_object_get(args, a->name);
		if (v == NULL && a->required) {
			req_error(r, QMP_CLS_GENERIC, "Parameter '%s' is "
			    "missing", a->name);
			return (-1);
		}
		if ((ok = req_arg_type(a->type, v, &want)) == -1) {
			req_error(r, QMP_CLS_GENERIC, "Invalid parameter: "
			    "Unexpected format character '%c'", a->type);
			return (-1);
		}
		if (v == NULL)
			continue;
		if (!ok) {
			req_error(r, QMP_CLS_GENERIC, "Invalid parameter type "
			    "for '%s', expected: %s", a->name, want);
			return (-1);
		}
		/* U+0000 reads as QEMU keeps it (C0 80, proto/qmp_jstream):
		   a name, path or URI of ours holding it would name
		   something else than the client wrote */
		if (a->type == 's' && memmem(json_string_value(v),
		    json_string_length(v), "\xc0\x80", 2) != NULL) {
			req_error(r, QMP_CLS_GENERIC, "Invalid parameter '%s': "
			    "U+0000 is not allowed", a->name);
			return (-1);
		}
		n++;
	}
	/* names are unique on both sides: as many known members as
	   args has means none is unknown */
	if (json_object_size(args) != n) {
		req_unexpected(r, args, spec);
		return (-1);
	}
	return (0);
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

void
req_audit(struct req *r, const char *vm, const char *cmd, const char *qemu,
    json_t *args, const char *rule)
{
	struct audit_who	w;

	if (r->audit != NULL)
		return;
	w.uid = r->peer.uid;
	w.gid = r->peer.gid;
	w.pid = r->peer.pid;
	w.exe = peer_exe(&r->peer);
	w.via = peer_via(&r->peer);
	r->audit = audit_begin(&w, vm, cmd, qemu, args, rule);
}

const struct peer *
req_peer(const struct req *r)
{
	return (&r->peer);
}

bool
req_vm_allowed(const struct req *r, const char *name)
{
	return (peer_vm_allowed(&r->peer, name));
}

json_t *
req_id(const struct req *r)
{
	return (r->id);
}

void *
req_owner(const struct req *r, req_done_fn *done)
{
	return (r->done == done ? r->arg : NULL);
}

static void
req_vm_reply(json_t *ret, const struct qmp_error *err, void *arg)
{
	struct req	*r = arg;

	if (err != NULL)
		req_error_qmp(r, err);
	else
		req_reply(r, json_incref(ret));
}

void
req_set_oob(struct req *r)
{
	r->oob = true;
}

bool
req_oob(const struct req *r)
{
	return (r->oob);
}

void
req_vm_execute_oob(struct req *r, struct vm *vm, const char *cmd,
    json_t *args)
{
	req_close_fds(r);
	vmq_execute_oob(vm_vmq(vm), cmd, json_incref(args), req_vm_reply, r);
}

void
req_vm_execute(struct req *r, struct vm *vm, const char *cmd, json_t *args)
{
	int	fds[REQ_FDS_MAX] = { 0 };
	size_t	n, i;

	if ((n = r->nfds) > REQ_FDS_MAX) {
		req_error(r, QMP_CLS_GENERIC, "Too many file descriptors");
		return;
	}
	for (i = 0; i < n; i++)
		fds[i] = req_take_fd(r, i);
	vmq_execute(vm_vmq(vm), cmd, json_incref(args), fds, n, req_vm_reply,
	    r);
	/* The monitor dups what it sends, so ours close at once. */
	for (i = 0; i < n; i++)
		close(fds[i]);
}
