/*
 * QMP messages: classification, command building and checking, errors.
 *
 * Commands from clients are hostile input, so qmp_cmd_parse is as strict as
 * QEMU's own dispatcher and uses its wording: a client that talks to us
 * gets the same answers it would get from QEMU.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/qmp_msg.h"
#include "proto/qmp_out.h"

/*
 * Replace every byte that does not start a valid UTF-8 sequence with '?'.
 * snprintf truncation can cut a character in half, and jansson refuses to
 * build a string from invalid UTF-8: an error we cannot serialise would be
 * an error lost.
 */
static void
qmp_utf8_fix(char *s)
{
	unsigned char	*p = (unsigned char *)s;
	size_t		 n, i;
	unsigned int	 cp;

	while (*p != '\0') {
		if (*p < 0x80) {
			p++;
			continue;
		}
		/* U+0000 as QEMU holds it in a C string (qmp_jstream) */
		if (p[0] == 0xc0 && p[1] == 0x80) {
			p += 2;
			continue;
		}
		if (*p >= 0xc2 && *p <= 0xdf) {
			n = 1;
			cp = *p & 0x1f;
		} else if (*p >= 0xe0 && *p <= 0xef) {
			n = 2;
			cp = *p & 0x0f;
		} else if (*p >= 0xf0 && *p <= 0xf4) {
			n = 3;
			cp = *p & 0x07;
		} else {
			*p++ = '?';
			continue;
		}
		for (i = 1; i <= n; i++) {
			if ((p[i] & 0xc0) != 0x80)
				break;
			cp = (cp << 6) | (p[i] & 0x3f);
		}
		/* Overlong forms, surrogates and past U+10FFFF are invalid. */
		if (i <= n || (n == 2 && cp < 0x800) ||
		    (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
		    (cp >= 0xd800 && cp <= 0xdfff)) {
			*p++ = '?';
			continue;
		}
		p += n + 1;
	}
}

/* Lets the compiler check that fmt really is a format passed through. */
void	qmp_error_vset(struct qmp_error *, const char *, const char *, va_list)
	    __attribute__((format(printf, 3, 0)));

void
qmp_error_vset(struct qmp_error *err, const char *cls, const char *fmt,
    va_list ap)
{
	if (err == NULL)
		return;
	snprintf(err->cls, sizeof err->cls, "%s",
	    cls != NULL ? cls : QMP_CLS_GENERIC);
	vsnprintf(err->desc, sizeof err->desc, fmt, ap);
	qmp_utf8_fix(err->cls);
	qmp_utf8_fix(err->desc);
}

void
qmp_error_set(struct qmp_error *err, const char *cls, const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	qmp_error_vset(err, cls, fmt, ap);
	va_end(ap);
}

json_t *
qmp_error_json(const struct qmp_error *err)
{
	json_t	*j = json_object();

	/* nocheck: class and desc may hold U+0000 as "\xC0\x80" (a name
	   a client sent), which qmp_out writes as QEMU does; qmp_utf8_fix
	   made the rest valid */
	const char	*cls = err->cls[0] != '\0' ? err->cls : QMP_CLS_GENERIC;

	if (j == NULL || json_object_set_new(j, "class",
	    json_stringn_nocheck(cls, strlen(cls))) != 0 ||
	    json_object_set_new(j, "desc", json_stringn_nocheck(err->desc,
	    strlen(err->desc))) != 0) {
		json_decref(j);
		return (NULL);
	}
	return (j);
}

void
qmp_error_from_json(struct qmp_error *err, const json_t *error)
{
	const char	*cls = NULL, *desc = NULL;

	if (json_is_object(error)) {
		cls = json_string_value(json_object_get(error, "class"));
		desc = json_string_value(json_object_get(error, "desc"));
	}
	qmp_error_set(err, cls != NULL ? cls : QMP_CLS_GENERIC, "%s",
	    desc != NULL ? desc : "error reply without a description");
}

/*
 * One pass over the members: a QMP message has exactly one member that
 * says what it is. An object with two of them is not something QEMU sends,
 * so it is INVALID rather than guessed at (except execute with exec-oob,
 * which is a command that qmp_cmd_parse refuses with a precise error).
 */
enum qmp_msg_type
qmp_msg_classify(const json_t *msg)
{
	const char		*key;
	json_t			*v;
	enum qmp_msg_type	 type = QMP_MSG_INVALID, t;

	if (!json_is_object(msg))
		return (QMP_MSG_INVALID);
	json_object_foreach((json_t *)msg, key, v) {
		if (strcmp(key, "return") == 0)
			t = QMP_MSG_RETURN;
		else if (strcmp(key, "error") == 0) {
			if (!json_is_object(v))
				return (QMP_MSG_INVALID);
			t = QMP_MSG_ERROR;
		} else if (strcmp(key, "event") == 0) {
			if (!json_is_string(v))
				return (QMP_MSG_INVALID);
			t = QMP_MSG_EVENT;
		} else if (strcmp(key, "execute") == 0 ||
		    strcmp(key, "exec-oob") == 0) {
			if (!json_is_string(v))
				return (QMP_MSG_INVALID);
			t = QMP_MSG_COMMAND;
		} else if (strcmp(key, "QMP") == 0) {
			if (!json_is_object(v))
				return (QMP_MSG_INVALID);
			t = QMP_MSG_GREETING;
		} else
			continue;
		if (type != QMP_MSG_INVALID &&
		    !(type == QMP_MSG_COMMAND && t == QMP_MSG_COMMAND))
			return (QMP_MSG_INVALID);
		type = t;
	}
	/* Subscribers read an event's data as an object without checking. */
	if (type == QMP_MSG_EVENT) {
		v = json_object_get(msg, "data");
		if (v != NULL && !json_is_object(v))
			return (QMP_MSG_INVALID);
	}
	return (type);
}

const char *
qmp_msg_type_name(enum qmp_msg_type type)
{
	static const char *const names[] = {
		[QMP_MSG_INVALID] = "invalid",
		[QMP_MSG_GREETING] = "greeting",
		[QMP_MSG_RETURN] = "return",
		[QMP_MSG_ERROR] = "error",
		[QMP_MSG_EVENT] = "event",
		[QMP_MSG_COMMAND] = "command",
	};

	if ((unsigned int)type >= sizeof names / sizeof names[0] ||
	    names[type] == NULL)
		return ("unknown");
	return (names[type]);
}

json_t *
qmp_cmd_new(const char *name, json_t *args, json_t *id)
{
	json_t	*cmd, *s;

	cmd = json_object();
	s = name != NULL ? json_string(name) : NULL;
	if (cmd == NULL || s == NULL ||
	    json_object_set_new(cmd, "execute", s) != 0)
		goto fail;
	if (args != NULL && json_object_set_new(cmd, "arguments", args) != 0) {
		args = NULL;	/* set_new consumed it even on failure */
		goto fail;
	}
	args = NULL;
	if (id != NULL && json_object_set_new(cmd, "id", id) != 0) {
		id = NULL;
		goto fail;
	}
	return (cmd);

fail:
	json_decref(cmd);
	json_decref(args);
	json_decref(id);
	return (NULL);
}

int
qmp_cmd_parse(const json_t *msg, const char **name, json_t **args,
    json_t **id, struct qmp_error *err)
{
	bool	oob;

	return (qmp_cmd_parse_oob(msg, false, name, args, id, &oob, err));
}

/* QEMU's qmp_dispatch_check_obj, member by member */
struct qmp_chk {
	bool			 allow_oob;
	const char		*exec_key;
	json_t			*exec, *args;
	struct qmp_error	*err;
};

static int
qmp_chk_member(const char *key, size_t klen, json_t *v, void *arg)
{
	struct qmp_chk	*k = arg;

	(void)klen;
	if (strcmp(key, "execute") == 0 ||
	    (k->allow_oob && strcmp(key, "exec-oob") == 0)) {
		if (!json_is_string(v)) {
			qmp_error_set(k->err, QMP_CLS_GENERIC, "QMP input "
			    "member '%s' must be a string", key);
			return (1);
		}
		if (k->exec_key != NULL) {
			qmp_error_set(k->err, QMP_CLS_GENERIC, "QMP input "
			    "member '%s' clashes with '%s'", key, k->exec_key);
			return (1);
		}
		k->exec_key = key;
		k->exec = v;
	} else if (strcmp(key, "arguments") == 0) {
		if (!json_is_object(v)) {
			qmp_error_set(k->err, QMP_CLS_GENERIC, "QMP input "
			    "member 'arguments' must be an object");
			return (1);
		}
		k->args = v;
	} else if (strcmp(key, "id") != 0) {
		qmp_error_set(k->err, QMP_CLS_GENERIC,
		    "QMP input member '%s' is unexpected", key);
		return (1);
	}
	return (0);
}

int
qmp_cmd_parse_oob(const json_t *msg, bool allow_oob, const char **name,
    json_t **args, json_t **id, bool *oob, struct qmp_error *err)
{
	struct qmp_chk	 k = { allow_oob, NULL, NULL, NULL, err };
	const char	*key;
	size_t		 klen;
	json_t		*v;

	*oob = false;
	if (name != NULL)
		*name = NULL;
	if (args != NULL)
		*args = NULL;
	if (id != NULL)
		*id = json_object_get(msg, "id");

	if (!json_is_object(msg)) {
		qmp_error_set(err, QMP_CLS_GENERIC,
		    "QMP input must be a JSON object");
		return (-1);
	}
	json_object_keylen_foreach((json_t *)msg, key, klen, v) {
		if (qmp_chk_member(key, klen, v, &k) == 0)
			continue;
		/*
		 * Which member QEMU names depends on the order it iterates
		 * them in, its QDict's: again in that order (only here, a
		 * command that passes costs no sort).
		 */
		if (json_object_size(msg) > 1) {
			k.exec_key = NULL;
			k.exec = k.args = NULL;
			(void)qmp_out_qdict_foreach(msg, qmp_chk_member, &k);
		}
		return (-1);
	}
	if (k.exec == NULL) {
		qmp_error_set(err, QMP_CLS_GENERIC,
		    "QMP input lacks member 'execute'");
		return (-1);
	}
	*oob = strcmp(k.exec_key, "exec-oob") == 0;
	if (name != NULL)
		*name = json_string_value(k.exec);
	if (args != NULL)
		*args = k.args;
	return (0);
}

static int
qmp_json_int(const json_t *obj, const char *key)
{
	json_int_t	v;

	v = json_integer_value(json_object_get(obj, key));
	if (v < 0 || v > 0x7fffffff)
		return (0);
	return ((int)v);
}

int
qmp_greeting_parse(const json_t *msg, struct qmp_version *ver)
{
	json_t		*qmp, *v, *qemu;
	const char	*pkg;

	memset(ver, 0, sizeof *ver);
	qmp = json_object_get(msg, "QMP");
	if (!json_is_object(qmp))
		return (-1);
	v = json_object_get(qmp, "version");
	qemu = json_object_get(v, "qemu");
	ver->major = qmp_json_int(qemu, "major");
	ver->minor = qmp_json_int(qemu, "minor");
	ver->micro = qmp_json_int(qemu, "micro");
	pkg = json_string_value(json_object_get(v, "package"));
	if (pkg != NULL) {
		snprintf(ver->package, sizeof ver->package, "%s", pkg);
		qmp_utf8_fix(ver->package);
	}
	return (0);
}

/* capabilities (may be NULL: none) is stolen, as args are in qmp_cmd_new. */
json_t *
qmp_greeting_new(const struct qmp_version *ver, json_t *capabilities)
{
	json_t	*g;

	if (capabilities == NULL)
		capabilities = json_array();
	/* the package as QEMU gave it: U+0000 kept as C0 80 (which
	   json_pack's "s" would refuse), written back as \u0000 */
	g = json_pack("{s:{s:{s:{s:i, s:i, s:i}, s:o}, s:o}}", "QMP",
	    "version", "qemu",
	    "micro", ver->micro, "minor", ver->minor, "major", ver->major,
	    "package", json_stringn_nocheck(ver->package,
	    strlen(ver->package)),
	    "capabilities", capabilities);
	/* json_pack's "o" steals even when packing fails. */
	return (g);
}

const char *
qmp_event_name(const json_t *msg)
{
	return (json_string_value(json_object_get(msg, "event")));
}

char *
qmp_dump(const json_t *msg, size_t *len)
{
	char	*s, *t;
	size_t	 n;

	/* No JSON_ENSURE_ASCII: QEMU sends UTF-8 as is, and so do we. */
	s = json_dumps(msg, JSON_COMPACT | JSON_ENCODE_ANY);
	if (s == NULL)
		return (NULL);
	n = strlen(s);
	t = realloc(s, n + 3);
	if (t == NULL) {
		free(s);
		return (NULL);
	}
	memcpy(t + n, "\r\n", 3);
	if (len != NULL)
		*len = n + 2;
	return (t);
}
