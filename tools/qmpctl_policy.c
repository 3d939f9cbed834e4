/*
 * qmpctl policy-check UID VM COMMAND [key=value ...] and
 * qmpctl audit-verify [DIR]: the policy's decision, asked of the broker,
 * and the audit trail's hash chain, checked offline from its files.
 */
#include "config.h"

#include <sys/types.h>

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "tools/qmpctl.h"
#include "util/sha256.h"

#define AUDIT_DEFAULT_DIR	"/var/lib/qmpbroker/audit"
#define AUDIT_MAX_FILES		100000

int
ctl_prep_policy_check(struct ctl *ctl, int argc, char **argv)
{
	json_t	*args, *cargs;
	char	*end;
	long	 uid;

	if (argc < 3) {
		ctl_warn("usage: policy-check UID VM COMMAND [key=value ...] "
		    "(VM - for none)");
		return (-1);
	}
	errno = 0;
	uid = strtol(argv[0], &end, 10);
	if (errno != 0 || *end != '\0' || uid < 0) {
		ctl_warn("bad uid '%s'", argv[0]);
		return (-1);
	}
	if (ctl_kv_args(argc - 3, argv + 3, &cargs) != 0)
		return (-1);
	args = json_pack("{s:I,s:s}", "uid", (json_int_t)uid, "command",
	    argv[2]);
	if (args == NULL) {
		json_decref(cargs);
		return (-1);
	}
	if (strcmp(argv[1], "-") != 0)
		json_object_set_new(args, "vm", json_string(argv[1]));
	if (cargs != NULL)
		json_object_set_new(args, "arguments", cargs);
	return (ctl_request(ctl, "policy-check", args));
}

/* ---- audit-verify ---- */

struct av_line {
	char		*text;
	char		 hash[SHA256_HEX];
	char		 prev[SHA256_HEX];
	long long	 seq;		/* -1: not a record */
	const char	*file;
	size_t		 lineno;
};

static int
av_name_cmp(const void *a, const void *b)
{
	return (strcmp(*(char *const *)a, *(char *const *)b));
}

/* The files in chain order: audit.SEQ.jsonl by SEQ, then audit.jsonl. */
static char **
av_files(const char *dir, size_t *n)
{
	struct dirent	*de;
	char		**f = NULL, **nf;
	size_t		 cap = 0, len;
	DIR		*d;
	int		 cur = 0;

	*n = 0;
	if ((d = opendir(dir)) == NULL)
		return (NULL);
	while ((de = readdir(d)) != NULL && *n < AUDIT_MAX_FILES) {
		len = strlen(de->d_name);
		if (strcmp(de->d_name, "audit.jsonl") == 0) {
			cur = 1;
			continue;
		}
		if (strncmp(de->d_name, "audit.", 6) != 0 || len < 12 ||
		    strcmp(de->d_name + len - 6, ".jsonl") != 0)
			continue;
		if (*n == cap) {
			cap = cap ? 2 * cap : 16;
			if ((nf = realloc(f, (cap + 1) * sizeof *f)) == NULL)
				break;
			f = nf;
		}
		if (asprintf(&f[*n], "%s/%s", dir, de->d_name) != -1)
			(*n)++;
	}
	closedir(d);
	if (*n > 0)
		qsort(f, *n, sizeof *f, av_name_cmp);
	if (cur) {
		if ((nf = realloc(f, (*n + 1) * sizeof *f)) == NULL)
			return (f);
		f = nf;
		if (asprintf(&f[*n], "%s/audit.jsonl", dir) != -1)
			(*n)++;
	}
	return (f);
}

static int
av_read(char **files, size_t nfiles, struct av_line **out, size_t *n)
{
	struct av_line	*l = NULL, *nl;
	size_t		 cap = 0, lcap = 0, i, lineno;
	ssize_t		 len;
	char		*buf = NULL;
	json_t		*j;
	FILE		*f;

	*n = 0;
	for (i = 0; i < nfiles; i++) {
		if ((f = fopen(files[i], "re")) == NULL) {
			ctl_warn("%s: %s", files[i], strerror(errno));
			return (-1);
		}
		lineno = 0;
		while ((len = getline(&buf, &lcap, f)) > 0) {
			lineno++;
			if (buf[len - 1] == '\n')
				buf[--len] = '\0';
			if (*n == cap) {
				cap = cap ? 2 * cap : 256;
				if ((nl = realloc(l, cap * sizeof *l)) ==
				    NULL) {
					fclose(f);
					return (-1);
				}
				l = nl;
			}
			nl = &l[(*n)++];
			memset(nl, 0, sizeof *nl);
			nl->text = strdup(buf);
			nl->file = files[i];
			nl->lineno = lineno;
			sha256_hex(buf, (size_t)len, nl->hash);
			nl->seq = -1;
			if ((j = json_loads(buf, 0, NULL)) != NULL &&
			    json_is_integer(json_object_get(j, "seq")) &&
			    json_is_string(json_object_get(j, "prev"))) {
				nl->seq = (long long)json_integer_value(
				    json_object_get(j, "seq"));
				snprintf(nl->prev, sizeof nl->prev, "%s",
				    json_string_value(json_object_get(j,
				    "prev")));
			}
			json_decref(j);
		}
		fclose(f);
	}
	free(buf);
	*out = l;
	return (0);
}

/* The first break of the chain, said; 0 if none. */
static int
av_check(struct av_line *l, size_t n)
{
	size_t	i;

	for (i = 0; i < n; i++) {
		if (l[i].seq == -1) {
			printf("%s:%zu: changed: not an audit record\n",
			    l[i].file, l[i].lineno);
			return (1);
		}
		if (i == 0)
			continue;
		if (strcmp(l[i].prev, l[i - 1].hash) == 0) {
			if (l[i].seq != l[i - 1].seq + 1) {
				printf("%s:%zu: changed: record seq %lld "
				    "follows seq %lld\n", l[i].file,
				    l[i].lineno, l[i].seq, l[i - 1].seq);
				return (1);
			}
			continue;
		}
		if (i + 1 < n && strcmp(l[i + 1].prev, l[i - 1].hash) == 0) {
			printf("%s:%zu: inserted: record seq %lld is not in "
			    "the chain (the next one follows seq %lld)\n",
			    l[i].file, l[i].lineno, l[i].seq, l[i - 1].seq);
			return (1);
		}
		if (l[i].seq > l[i - 1].seq + 1) {
			printf("%s:%zu: removed: records seq %lld to %lld are "
			    "missing before this one\n", l[i].file,
			    l[i].lineno, l[i - 1].seq + 1, l[i].seq - 1);
			return (1);
		}
		if (l[i].seq <= l[i - 1].seq) {
			printf("%s:%zu: inserted: record seq %lld after seq "
			    "%lld\n", l[i].file, l[i].lineno, l[i].seq,
			    l[i - 1].seq);
			return (1);
		}
		printf("%s:%zu: changed: record seq %lld does not hash to "
		    "what seq %lld says\n", l[i - 1].file, l[i - 1].lineno,
		    l[i - 1].seq, l[i].seq);
		return (1);
	}
	return (0);
}

int
ctl_audit_verify(int argc, char **argv)
{
	const char	*dir = argc > 1 ? argv[1] : AUDIT_DEFAULT_DIR;
	struct av_line	*l = NULL;
	char		**files;
	size_t		 nfiles, n = 0, i;
	int		 rc;

	if (argc > 2) {
		ctl_warn("usage: audit-verify [DIR]");
		return (2);
	}
	if ((files = av_files(dir, &nfiles)) == NULL && nfiles == 0) {
		if (errno != 0 && errno != ENOENT) {
			ctl_warn("%s: %s", dir, strerror(errno));
			return (3);
		}
	}
	if (av_read(files, nfiles, &l, &n) == -1)
		rc = 3;
	else if ((rc = av_check(l, n)) == 0) {
		if (n == 0)
			printf("ok: no records in %s\n", dir);
		else
			printf("ok: %zu records, seq %lld to %lld, in %zu "
			    "files; last hash %s%s\n", n, l[0].seq,
			    l[n - 1].seq, nfiles, l[n - 1].hash,
			    l[0].seq != 1 ? " (older files are gone: the "
			    "chain is checked from the first kept)" : "");
	}
	for (i = 0; i < n; i++)
		free(l[i].text);
	free(l);
	for (i = 0; i < nfiles; i++)
		free(files[i]);
	free(files);
	return (rc);
}
