/*
 * Image attachment records and tool locks. See imgrec.h.
 */
#include "config.h"

#include <sys/file.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

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

/* STATE_DIR/images/GROUP/ID.lock; with mk, its folders are made. */
static int
imgrec_lock_path(const char *state_dir, bool nbd, const char *device,
    bool mk, char *path, size_t len, struct qmp_error *err)
{
	const char	*group = nbd ? "nbd" : "loop";

	if ((size_t)snprintf(path, len, "%s/%s/%s/%s.lock", state_dir,
	    IMGREC_AREA, group, imgrec_id(device)) >= len) {
		qmp_error_set(err, QMP_CLS_GENERIC, "tool lock path of %.64s "
		    "too long", device);
		return (-1);
	}
	if (!mk)
		return (0);
	snprintf(path, len, "%s/%s", state_dir, IMGREC_AREA);
	if (mkdir(path, 0700) != 0 && errno != EEXIST)
		goto fail;
	snprintf(path, len, "%s/%s/%s", state_dir, IMGREC_AREA, group);
	if (mkdir(path, 0700) != 0 && errno != EEXIST)
		goto fail;
	snprintf(path, len, "%s/%s/%s/%s.lock", state_dir, IMGREC_AREA,
	    group, imgrec_id(device));
	return (0);
fail:
	qmp_error_set(err, QMP_CLS_GENERIC, "mkdir %s: %s", path,
	    strerror(errno));
	return (-1);
}

int
imgrec_tool_lock(const char *state_dir, bool nbd, const char *device,
    struct qmp_error *err)
{
	char	path[PATH_MAX];
	int	fd;

	if (imgrec_lock_path(state_dir, nbd, device, true, path, sizeof path,
	    err) != 0)
		return (-1);
	if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW,
	    0600)) == -1) {
		qmp_error_set(err, QMP_CLS_GENERIC, "open %s: %s", path,
		    strerror(errno));
		return (-1);
	}
	if (flock(fd, LOCK_EX | LOCK_NB) == 0)
		return (fd);
	if (errno == EWOULDBLOCK) {
		close(fd);
		return (IMGREC_BUSY);
	}
	qmp_error_set(err, QMP_CLS_GENERIC, "flock %s: %s", path,
	    strerror(errno));
	close(fd);
	return (-1);
}

bool
imgrec_tool_busy(const char *state_dir, bool nbd, const char *device)
{
	struct qmp_error	err;
	char			path[PATH_MAX];
	int			fd;
	bool			busy;

	if (imgrec_lock_path(state_dir, nbd, device, false, path, sizeof path,
	    &err) != 0)
		return (false);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) == -1)
		return (false);
	busy = flock(fd, LOCK_EX | LOCK_NB) == -1 && errno == EWOULDBLOCK;
	close(fd);
	return (busy);
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
