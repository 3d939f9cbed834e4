/*
 * Journal files. See journal.h.
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker/core/journal.h"

#define JOURNAL_MAX	65536

static int
journal_name_ok(const char *s)
{
	size_t	n = strlen(s);

	if (n == 0 || n > 64 || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
		return (0);
	for (; *s != '\0'; s++)
		if (*s == '/')
			return (0);
	return (1);
}

static int
journal_mkdir(const char *path, struct qmp_error *err)
{
	if (mkdir(path, 0700) != 0 && errno != EEXIST) {
		qmp_error_set(err, QMP_CLS_GENERIC, "mkdir %s: %s", path,
		    strerror(errno));
		return (-1);
	}
	return (0);
}

static int
journal_fsync_dir(const char *dir)
{
	int	fd, rc;

	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return (-1);
	rc = fsync(fd);
	close(fd);
	return (rc);
}

int
journal_write(const char *state_dir, const char *area, const char *group,
    const char *id, const json_t *rec, struct qmp_error *err)
{
	char	 dir[PATH_MAX], path[PATH_MAX], tmp[PATH_MAX], *buf;
	size_t	 len, off;
	ssize_t	 n;
	int	 fd;

	if (state_dir == NULL || *state_dir == '\0')
		return (0);
	if (!journal_name_ok(area) || !journal_name_ok(group) ||
	    !journal_name_ok(id)) {
		qmp_error_set(err, QMP_CLS_GENERIC, "bad journal name");
		return (-1);
	}
	snprintf(dir, sizeof dir, "%s/%s", state_dir, area);
	if (journal_mkdir(dir, err) != 0)
		return (-1);
	snprintf(dir, sizeof dir, "%s/%s/%s", state_dir, area, group);
	if (journal_mkdir(dir, err) != 0)
		return (-1);
	if ((size_t)snprintf(path, sizeof path, "%s/%s.json", dir, id) >=
	    sizeof path || (size_t)snprintf(tmp, sizeof tmp, "%s/.%s.tmp",
	    dir, id) >= sizeof tmp) {
		qmp_error_set(err, QMP_CLS_GENERIC, "journal path too long");
		return (-1);
	}
	if (rec == NULL) {
		if (unlink(path) != 0 && errno != ENOENT) {
			qmp_error_set(err, QMP_CLS_GENERIC, "unlink %s: %s",
			    path, strerror(errno));
			return (-1);
		}
		journal_fsync_dir(dir);
		return (0);
	}

	if ((buf = json_dumps(rec, JSON_COMPACT | JSON_SORT_KEYS)) == NULL) {
		qmp_error_set(err, QMP_CLS_GENERIC,
		    "cannot serialise journal record");
		return (-1);
	}
	len = strlen(buf);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
	    0600);
	if (fd < 0) {
		qmp_error_set(err, QMP_CLS_GENERIC, "%s: %s", tmp,
		    strerror(errno));
		free(buf);
		return (-1);
	}
	for (off = 0; off < len; off += (size_t)n) {
		n = write(fd, buf + off, len - off);
		if (n < 0 && errno == EINTR) {
			n = 0;
			continue;
		}
		if (n <= 0)
			break;
	}
	free(buf);
	if (off != len || fsync(fd) != 0) {
		qmp_error_set(err, QMP_CLS_GENERIC, "writing %s: %s", tmp,
		    strerror(errno));
		close(fd);
		unlink(tmp);
		return (-1);
	}
	close(fd);
	if (rename(tmp, path) != 0) {
		qmp_error_set(err, QMP_CLS_GENERIC, "rename %s: %s", tmp,
		    strerror(errno));
		unlink(tmp);
		return (-1);
	}
	if (journal_fsync_dir(dir) != 0) {
		qmp_error_set(err, QMP_CLS_GENERIC, "fsync %s: %s", dir,
		    strerror(errno));
		return (-1);
	}
	return (0);
}

static void
journal_set_aside(const char *path, const char *why, journal_bad_fn *bad,
    void *arg)
{
	char	aside[PATH_MAX + 8];

	snprintf(aside, sizeof aside, "%s.bad", path);
	rename(path, aside);
	if (bad != NULL)
		bad(path, why, arg);
}

static int
journal_load_group(const char *vmdir, const char *group, journal_fn *fn,
    journal_bad_fn *bad, void *arg)
{
	DIR		*d;
	struct dirent	*e;
	char		 path[PATH_MAX], id[128];
	json_error_t	 jerr;
	json_t		*rec;
	struct stat	 st;
	size_t		 n;
	int		 count = 0;

	if ((d = opendir(vmdir)) == NULL)
		return (0);
	while ((e = readdir(d)) != NULL) {
		n = strlen(e->d_name);
		if (e->d_name[0] == '.') {
			/* a temp file a crash left behind: never renamed,
			   so never a record */
			if (n > 4 && strcmp(e->d_name + n - 4, ".tmp") == 0) {
				if ((size_t)snprintf(path, sizeof path,
				    "%s/%s", vmdir, e->d_name) < sizeof path)
					unlink(path);
			}
			continue;
		}
		if (n <= 5 || strcmp(e->d_name + n - 5, ".json") != 0 ||
		    n - 5 >= sizeof id)
			continue;
		memcpy(id, e->d_name, n - 5);
		id[n - 5] = '\0';
		if ((size_t)snprintf(path, sizeof path, "%s/%s", vmdir,
		    e->d_name) >= sizeof path)
			continue;
		/* a record is a few hundred bytes: anything big is not ours */
		if (stat(path, &st) != 0 || !S_ISREG(st.st_mode) ||
		    st.st_size > JOURNAL_MAX) {
			journal_set_aside(path, "not a journal record", bad,
			    arg);
			continue;
		}
		rec = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
		if (rec == NULL || !json_is_object(rec)) {
			journal_set_aside(path, rec == NULL ? jerr.text :
			    "not an object", bad, arg);
			json_decref(rec);
			continue;
		}
		fn(group, id, rec, arg);
		json_decref(rec);
		count++;
	}
	closedir(d);
	return (count);
}

int
journal_load(const char *state_dir, const char *area, journal_fn *fn,
    journal_bad_fn *bad, void *arg)
{
	DIR		*d;
	struct dirent	*e;
	char		 dir[PATH_MAX], vmdir[PATH_MAX];
	int		 count = 0;

	if (state_dir == NULL || *state_dir == '\0')
		return (0);
	if (!journal_name_ok(area))
		return (-1);
	snprintf(dir, sizeof dir, "%s/%s", state_dir, area);
	if ((d = opendir(dir)) == NULL)
		return (errno == ENOENT ? 0 : -1);
	while ((e = readdir(d)) != NULL) {
		if (!journal_name_ok(e->d_name) || e->d_name[0] == '.')
			continue;
		if ((size_t)snprintf(vmdir, sizeof vmdir, "%s/%s", dir,
		    e->d_name) >= sizeof vmdir)
			continue;
		count += journal_load_group(vmdir, e->d_name, fn, bad, arg);
	}
	closedir(d);
	return (count);
}
