/*
 * libFuzzer harness for one QMP line and the message functions.
 *
 * The input is one line as a client or QEMU could send it. Beyond not
 * crashing, it checks what callers rely on: a command that passes
 * qmp_cmd_parse is classified as a command, every error we build can be
 * serialised (even from arbitrary bytes), and what qmp_out writes parses
 * back to the same value.
 */
#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/qmp_framer.h"
#include "proto/qmp_msg.h"
#include "proto/qmp_out.h"
#include "tests/fuzz/fuzz_util.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/* j as the daemon writes it (proto/qmp_out: QEMU's text, U+0000 kept
   as QEMU keeps it and written as \u0000, which jansson's dump refuses),
   CRLF-ended, malloc'd; NULL if it cannot be written. */
static char *
out_line(const json_t *j, size_t *len)
{
	struct qmp_out	 o;
	char		*s = NULL;

	qmp_out_init(&o);
	qmp_out_json(&o, j, QMP_OUT_COMPACT);
	qmp_out_raw(&o, "\r\n", 2);
	if (!o.failed && (s = malloc(o.len)) != NULL) {
		memcpy(s, o.buf, o.len);
		*len = o.len;
	}
	qmp_out_free(&o);
	return (s);
}

static void
error_must_dump(const struct qmp_error *err)
{
	json_t	*e;
	char	*s;
	size_t	 len;

	if ((e = qmp_error_json(err)) == NULL)
		__builtin_trap();
	if ((s = out_line(e, &len)) == NULL)
		__builtin_trap();
	free(s);
	json_decref(e);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct qmp_error	 err;
	struct qmp_version	 v;
	const char		*name;
	json_t			*m, *args, *id, *back, *cmd, *g;
	char			*s, *str;
	size_t			 len;

	/* Arbitrary bytes in an error text or class still make JSON. */
	str = malloc(size + 1);
	if (str == NULL)
		return (0);
	memcpy(str, data, size);
	str[size] = '\0';
	qmp_error_set(&err, str, "%s", str);
	error_must_dump(&err);
	/* An arbitrary name: a command, or NULL, never a crash. */
	cmd = qmp_cmd_new(str, json_object(), json_stringn((const char *)data,
	    size));
	if (cmd != NULL) {
		if (qmp_cmd_parse(cmd, &name, NULL, NULL, &err) != 0 ||
		    strcmp(name, str) != 0)
			__builtin_trap();
		json_decref(cmd);
	}
	free(str);

	m = qmp_parse_line((const char *)data, size, &err);
	if (m == NULL) {
		error_must_dump(&err);
		return (0);
	}
	if (has_nul(m)) {
		json_decref(m);
		return (0);
	}
	if (qmp_cmd_parse(m, &name, &args, &id, &err) == 0) {
		if (qmp_msg_classify(m) != QMP_MSG_COMMAND || name == NULL)
			__builtin_trap();
		if (id != json_object_get(m, "id"))
			__builtin_trap();
		/* Rebuilding the command gives the same object. */
		cmd = qmp_cmd_new(name, json_incref(args), json_incref(id));
		if (cmd == NULL || !json_equal(cmd, m))
			__builtin_trap();
		json_decref(cmd);
	} else
		error_must_dump(&err);

	switch (qmp_msg_classify(m)) {
	case QMP_MSG_ERROR:
		qmp_error_from_json(&err, json_object_get(m, "error"));
		error_must_dump(&err);
		break;
	case QMP_MSG_EVENT:
		if (qmp_event_name(m) == NULL)
			__builtin_trap();
		break;
	case QMP_MSG_GREETING:
		if (qmp_greeting_parse(m, &v) != 0)
			__builtin_trap();
		/* What we parsed, we can greet with again. */
		g = qmp_greeting_new(&v, NULL);
		if (g == NULL)
			__builtin_trap();
		json_decref(g);
		break;
	default:
		break;
	}

	s = out_line(m, &len);
	if (s == NULL || len < 2 || s[len - 1] != '\n' || s[len - 2] != '\r')
		__builtin_trap();
	/* Compact output is one line: the LF is only at the end. */
	if (memchr(s, '\n', len - 1) != NULL)
		__builtin_trap();
	back = qmp_parse_line(s, len - 1, &err);
	if (back == NULL || !json_equal(back, m))
		__builtin_trap();
	json_decref(back);
	free(s);
	json_decref(m);
	return (0);
}
