/*
 * Image attachment records. See image_rec.h.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "broker/core/journal.h"
#include "broker/svc/imgrec.h"

#define IMGREC_AREA	"images"

static const char *const imgrec_states[] = {
	[IMGREC_ATTACHING] = "attaching",
	[IMGREC_ATTACHED] = "attached",
	[IMGREC_DETACHING] = "detaching",
};

const char *
imgrec_state_name(enum imgrec_state s)
{
	return (imgrec_states[s]);
}

/* The record's id: the device's name (loop0, nbd3), unique per group. */
static const char *
imgrec_id(const char *device)
{
	const char	*p = strrchr(device, '/');

	return (p != NULL ? p + 1 : device);
}

int
imgrec_write(const char *state_dir, const struct imgrec *r,
    struct qmp_error *err)
{
	json_t	*rec;
	int	 rc;

	rec = json_pack("{s:s,s:s,s:s,s:b,s:s}", "path", r->path, "mode",
	    r->nbd ? "nbd" : "loop", "device", r->device, "readonly", r->ro,
	    "state", imgrec_state_name(r->state));
	if (rec == NULL) {
		qmp_error_set(err, QMP_CLS_GENERIC, "cannot build the record");
		return (-1);
	}
	if (r->format[0] != '\0')
		json_object_set_new(rec, "format", json_string(r->format));
	rc = journal_write(state_dir, IMGREC_AREA, r->nbd ? "nbd" : "loop",
	    imgrec_id(r->device), rec, err);
	json_decref(rec);
	return (rc);
}

int
imgrec_remove(const char *state_dir, bool nbd, const char *device,
    struct qmp_error *err)
{
	return (journal_write(state_dir, IMGREC_AREA, nbd ? "nbd" : "loop",
	    imgrec_id(device), NULL, err));
}

int
imgrec_parse(const char *group, const char *id, const json_t *rec,
    struct imgrec *r, struct qmp_error *err)
{
	const char	*path, *mode, *dev, *state, *format = NULL;
	int		 ro = 0;
	size_t		 i;
	json_error_t	 jerr;

	memset(r, 0, sizeof *r);
	if (json_unpack_ex((json_t *)rec, &jerr, 0, "{s:s,s:s,s:s,s:b,s:s,"
	    "s?s}", "path", &path, "mode", &mode, "device", &dev, "readonly",
	    &ro, "state", &state, "format", &format) != 0) {
		qmp_error_set(err, QMP_CLS_GENERIC, "%s", jerr.text);
		return (-1);
	}
	if (strcmp(mode, group) != 0 || (strcmp(mode, "loop") != 0 &&
	    strcmp(mode, "nbd") != 0)) {
		qmp_error_set(err, QMP_CLS_GENERIC,
		    "mode \"%.16s\" in group %s", mode, group);
		return (-1);
	}
	if (strcmp(imgrec_id(dev), id) != 0) {
		qmp_error_set(err, QMP_CLS_GENERIC,
		    "device %.64s under the name %s", dev, id);
		return (-1);
	}
	for (i = 0; i < sizeof imgrec_states / sizeof imgrec_states[0]; i++)
		if (strcmp(state, imgrec_states[i]) == 0)
			break;
	if (i == sizeof imgrec_states / sizeof imgrec_states[0]) {
		qmp_error_set(err, QMP_CLS_GENERIC, "unknown state \"%.32s\"",
		    state);
		return (-1);
	}
	if ((size_t)snprintf(r->device, sizeof r->device, "%s", dev) >=
	    sizeof r->device || (size_t)snprintf(r->path, sizeof r->path,
	    "%s", path) >= sizeof r->path || path[0] != '/' ||
	    (format != NULL && (size_t)snprintf(r->format, sizeof r->format,
	    "%s", format) >= sizeof r->format)) {
		qmp_error_set(err, QMP_CLS_GENERIC,
		    "a name too long, or a relative path");
		return (-1);
	}
	r->nbd = strcmp(mode, "nbd") == 0;
	r->ro = ro;
	r->state = (enum imgrec_state)i;
	return (0);
}
