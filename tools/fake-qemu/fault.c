/*
 * Fault scripts: one directive a line, '#' comments, optional "once "
 * prefix. The grammar is the shared spec in BRIEF.md; anything outside it
 * is refused with file:line so a typo never silently tests nothing.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/fake-qemu/fake.h"

#define FAULT_MAX_LINE	1024
#define FAULT_MAX	256

struct fault_syntax {
	const char	*word;
	enum fault_type	 type;
	int		 name;		/* takes NAME first */
	int		 num;		/* 1: takes N, 2: N optional (unused) */
	long		 min, max;
};

/* Static so the grammar is visible in one place. */
static const struct fault_syntax fault_syntax[] = {
	{ "chunk",		F_CHUNK,		0, 1, 1, 1 << 20 },
	{ "delay",		F_DELAY,		0, 1, 0, 3600000 },
	{ "delay-cmd",		F_DELAY_CMD,		1, 1, 0, 3600000 },
	{ "close-after",	F_CLOSE_AFTER,		0, 1, 1, LONG_MAX },
	{ "garbage",		F_GARBAGE,		0, 0, 0, 0 },
	{ "second-greeting",	F_SECOND_GREETING,	0, 0, 0, 0 },
	{ "no-greeting",	F_NO_GREETING,		0, 0, 0, 0 },
	{ "error",		F_ERROR,		1, 0, 0, 0 },
	{ "no-reply",		F_NO_REPLY,		1, 0, 0, 0 },
	{ "eof-on",		F_EOF_ON,		1, 0, 0, 0 },
	{ "flood",		F_FLOOD,		0, 1, 1, 10000000 },
	{ "refuse-fds",		F_REFUSE_FDS,		0, 0, 0, 0 },
	{ "stop-reading",	F_STOP_READING,		0, 0, 0, 0 },
	{ "migrate-fail",	F_MIGRATE_FAIL,		0, 1, 0, 100 },
};

/* A QMP command or event name: what QEMU's schema allows. */
static int
fault_ident(const char *s)
{
	if (*s == '\0' || strlen(s) > 128)
		return (0);
	for (; *s != '\0'; s++) {
		if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_' &&
		    *s != '.')
			return (0);
	}
	return (1);
}

static char *
fault_word(char **p)
{
	char	*s = *p, *w;

	while (*s == ' ' || *s == '\t')
		s++;
	if (*s == '\0') {
		*p = s;
		return (NULL);
	}
	w = s;
	while (*s != '\0' && *s != ' ' && *s != '\t')
		s++;
	if (*s != '\0')
		*s++ = '\0';
	*p = s;
	return (w);
}

static int
fault_num(const char *w, long min, long max, long *out)
{
	char	*end;
	long	 v;

	if (w == NULL || !isdigit((unsigned char)*w))
		return (-1);
	errno = 0;
	v = strtol(w, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return (-1);
	*out = v;
	return (0);
}

/* Parses one non-empty line. Returns NULL or the reason it is wrong. */
static const char *
fault_parse(char *line, struct fault *f)
{
	const struct fault_syntax	*fs = NULL;
	char				*p = line, *w, *rest;
	size_t				 i;

	memset(f, 0, sizeof *f);
	w = fault_word(&p);
	if (w != NULL && strcmp(w, "once") == 0) {
		f->once = 1;
		w = fault_word(&p);
		if (w == NULL)
			return ("'once' needs a directive");
	}
	for (i = 0; i < sizeof fault_syntax / sizeof fault_syntax[0]; i++) {
		if (strcmp(fault_syntax[i].word, w) == 0)
			fs = &fault_syntax[i];
	}
	if (fs == NULL)
		return ("unknown directive");
	f->type = fs->type;

	if (fs->name) {
		w = fault_word(&p);
		if (w == NULL)
			return ("missing command NAME");
		if (!fault_ident(w))
			return ("NAME is not a QMP command name");
		f->name = xstrdup(w);
	}
	if (fs->num) {
		if (fault_num(fault_word(&p), fs->min, fs->max, &f->n) != 0)
			return ("missing or out-of-range number");
	}
	switch (f->type) {
	case F_ERROR:
		/* error NAME [CLASS [DESC...]]: DESC is the rest of the line. */
		w = fault_word(&p);
		if (w != NULL && !fault_ident(w))
			return ("CLASS is not an identifier");
		f->cls = xstrdup(w != NULL ? w : QMP_CLS_GENERIC);
		while (*p == ' ' || *p == '\t')
			p++;
		f->desc = xstrdup(*p != '\0' ? p : "injected fault");
		return (NULL);
	case F_FLOOD:
		w = fault_word(&p);
		if (w != NULL && !fault_ident(w))
			return ("EVENT is not an event name");
		f->name = xstrdup(w != NULL ? w : "FAKE_TICK");
		break;
	default:
		break;
	}
	rest = fault_word(&p);
	if (rest != NULL)
		return ("unexpected extra words");
	return (NULL);
}

int
fault_load(struct faults *fs, const char *path)
{
	FILE		*fp;
	char		 line[FAULT_MAX_LINE + 2], *s, *e;
	unsigned	 lineno = 0;
	const char	*why;
	struct fault	 f;
	size_t		 len;

	if ((fp = fopen(path, "r")) == NULL) {
		fprintf(stderr, "fake-qemu: %s: %s\n", path, strerror(errno));
		return (-1);
	}
	while (fgets(line, sizeof line, fp) != NULL) {
		lineno++;
		len = strlen(line);
		if (len > FAULT_MAX_LINE) {
			fprintf(stderr, "fake-qemu: %s:%u: line too long\n",
			    path, lineno);
			goto fail;
		}
		if ((s = strchr(line, '#')) != NULL)
			*s = '\0';
		for (e = line + strlen(line); e > line &&
		    isspace((unsigned char)e[-1]); e--)
			e[-1] = '\0';
		for (s = line; isspace((unsigned char)*s); s++)
			;
		if (*s == '\0')
			continue;
		if ((why = fault_parse(s, &f)) != NULL) {
			fprintf(stderr, "fake-qemu: %s:%u: %s\n", path, lineno,
			    why);
			free(f.name);
			free(f.cls);
			free(f.desc);
			goto fail;
		}
		if (fs->n == FAULT_MAX) {
			fprintf(stderr, "fake-qemu: %s:%u: too many directives\n",
			    path, lineno);
			goto fail;
		}
		fs->v = xreallocarray(fs->v, fs->n + 1, sizeof *fs->v);
		fs->v[fs->n++] = f;
	}
	if (ferror(fp)) {
		fprintf(stderr, "fake-qemu: %s: read error\n", path);
		goto fail;
	}
	fclose(fp);
	return (0);
fail:
	fclose(fp);
	return (-1);
}

const struct fault *
fault_get(const struct faults *fs, unsigned nconn, enum fault_type type,
    const char *name)
{
	size_t	i;

	for (i = 0; i < fs->n; i++) {
		if (fs->v[i].type != type || (fs->v[i].once && nconn != 0))
			continue;
		if (name != NULL && fs->v[i].name != NULL &&
		    strcmp(fs->v[i].name, name) != 0)
			continue;
		return (&fs->v[i]);
	}
	return (NULL);
}
