/*
 * QMP messages: classification, command building, errors.
 * Pure code on jansson values.
 */
#ifndef QMP_MSG_H
#define QMP_MSG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>

/* QMP error classes, as QEMU names them. */
#define QMP_CLS_GENERIC		"GenericError"
#define QMP_CLS_NOTFOUND	"CommandNotFound"
#define QMP_CLS_DEVNOTFOUND	"DeviceNotFound"
#define QMP_CLS_DEVNOTACTIVE	"DeviceNotActive"
#define QMP_CLS_KVMMISSING	"KVMMissingCap"

struct qmp_error {
	char	cls[32];
	char	desc[512];
};

void	qmp_error_set(struct qmp_error *, const char *cls, const char *fmt, ...)
	    __attribute__((format(printf, 3, 4)));
void	qmp_error_vset(struct qmp_error *, const char *cls, const char *fmt,
	    va_list);
/* {"class": C, "desc": D} as a new object. */
json_t	*qmp_error_json(const struct qmp_error *);
/* From a QMP reply's "error" member; tolerant of missing fields. */
void	 qmp_error_from_json(struct qmp_error *, const json_t *error);

enum qmp_msg_type {
	QMP_MSG_INVALID,	/* an object that is none of the below */
	QMP_MSG_GREETING,	/* {"QMP": {...}} */
	QMP_MSG_RETURN,		/* {"return": X, "id"?: ...} */
	QMP_MSG_ERROR,		/* {"error": {"class","desc"}, "id"?: ...} */
	QMP_MSG_EVENT,		/* {"event": S, "data"?: {}, "timestamp": {}} */
	QMP_MSG_COMMAND,	/* {"execute"|"exec-oob": S, "arguments"?: {}, "id"?} */
};

enum qmp_msg_type qmp_msg_classify(const json_t *);
const char *qmp_msg_type_name(enum qmp_msg_type);

/* A command object. args (may be NULL) and id (may be NULL) are stolen. */
json_t	*qmp_cmd_new(const char *name, json_t *args, json_t *id);

/* Validates a command sent by a client: "execute" a string, "arguments"
   absent or an object, no unknown members. On success the name and
   arguments (borrowed, may be NULL) are returned; id (borrowed, may be
   NULL) is filled whenever present, even on failure, so the error reply
   can carry it. */
int	 qmp_cmd_parse(const json_t *, const char **name, json_t **args,
	    json_t **id, struct qmp_error *err);
/* The same with QEMU's rules for exec-oob: allowed only when allow_oob
   (the client enabled oob), then instead of "execute"; *oob says which
   it was. */
int	 qmp_cmd_parse_oob(const json_t *, bool allow_oob, const char **name,
	    json_t **args, json_t **id, bool *oob, struct qmp_error *err);

/* Greeting fields. Returns 0 and fills what it can, -1 if not a greeting. */
struct qmp_version {
	int	major, minor, micro;
	char	package[128];
};
int	 qmp_greeting_parse(const json_t *, struct qmp_version *);
/* capabilities (may be NULL: none) is stolen, like qmp_cmd_new's args. */
json_t	*qmp_greeting_new(const struct qmp_version *, json_t *capabilities);

/* Event pieces; NULL when absent. */
const char *qmp_event_name(const json_t *);

/* Serialise compactly, terminated by CRLF as QEMU does. The buffer is
   malloc'd; *len excludes the NUL. */
char	*qmp_dump(const json_t *, size_t *len);

#endif
