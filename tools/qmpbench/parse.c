/*
 * Scenario 6, parse floor: a recording repeated to a few MB, run through
 * a proto reader (reads of 64 KiB, as a socket would give them) plus
 * qmp_msg_classify, next to bare json_loadb on the same lines split by
 * memchr. The ratio is what framing and classification cost over jansson
 * itself. --reader line: the line framer (QEMU's output to the broker);
 * --reader jstream: QEMU's input grammar (clients' input to the broker).
 * --input names the recording in the rows.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/qmp_framer.h"
#include "proto/qmp_jstream.h"
#include "proto/qmp_msg.h"
#include "tools/qmpbench/qmpbench.h"

#define PARSE_READ	65536

static char *
parse_load(const char *path, size_t *len)
{
	FILE	*f;
	char	*buf = NULL;
	size_t	 cap = 0, n;

	if ((f = fopen(path, "rb")) == NULL)
		qb_fatal("parse: %s: cannot open", path);
	*len = 0;
	for (;;) {
		if (*len == cap && (buf = realloc(buf, cap = cap * 2 + 65536)) ==
		    NULL)
			qb_fatal("out of memory");
		if ((n = fread(buf + *len, 1, cap - *len, f)) == 0)
			break;
		*len += n;
	}
	fclose(f);
	if (*len == 0 || buf[*len - 1] != '\n')
		qb_fatal("parse: %s: empty or not ending in a newline", path);
	return (buf);
}

static double
parse_framer(const char *data, size_t len, size_t *msgs)
{
	struct qmp_framer	 fr;
	struct qmp_error	 err;
	json_t			*j;
	size_t			 off = 0, n, avail, types[8] = { 0 };
	char			*p;
	double			 t0 = qb_now();
	enum qmp_frame_rc	 rc;

	*msgs = 0;
	qmp_framer_init(&fr, 0);
	while (off < len) {
		if ((p = qmp_framer_reserve(&fr, PARSE_READ, &avail)) == NULL)
			qb_fatal("parse: framer refused room");
		n = len - off < PARSE_READ ? len - off : PARSE_READ;
		if (n > avail)
			n = avail;
		memcpy(p, data + off, n);
		qmp_framer_commit(&fr, n);
		off += n;
		while ((rc = qmp_framer_next(&fr, &j, &err)) == QMP_FRAME_MSG) {
			types[qmp_msg_classify(j) & 7]++;
			json_decref(j);
			(*msgs)++;
		}
		if (rc != QMP_FRAME_NONE)
			qb_fatal("parse: framer: %s", err.desc);
	}
	qmp_framer_free(&fr);
	return (qb_now() - t0);
}

static double
parse_jstream(const char *data, size_t len, size_t *msgs)
{
	struct qmp_jstream	 js;
	struct qmp_error	 err;
	json_t			*j;
	size_t			 off = 0, n, avail, types[8] = { 0 };
	char			*p;
	double			 t0 = qb_now();
	enum qmp_frame_rc	 rc;

	*msgs = 0;
	qmp_jstream_init(&js, 0);
	while (off < len) {
		if ((p = qmp_jstream_reserve(&js, PARSE_READ, &avail)) == NULL)
			qb_fatal("parse: jstream refused room");
		n = len - off < PARSE_READ ? len - off : PARSE_READ;
		if (n > avail)
			n = avail;
		memcpy(p, data + off, n);
		qmp_jstream_commit(&js, n);
		off += n;
		while ((rc = qmp_jstream_next(&js, &j, &err)) == QMP_FRAME_MSG) {
			types[qmp_msg_classify(j) & 7]++;
			json_decref(j);
			(*msgs)++;
		}
		if (rc != QMP_FRAME_NONE)
			qb_fatal("parse: jstream: %s", err.desc);
	}
	qmp_jstream_free(&js);
	return (qb_now() - t0);
}

static double
parse_bare(const char *data, size_t len, size_t *msgs)
{
	const char	*p = data, *lf, *end = data + len;
	json_error_t	 e;
	json_t		*j;
	double		 t0 = qb_now();

	*msgs = 0;
	while (p < end && (lf = memchr(p, '\n', (size_t)(end - p))) != NULL) {
		if (lf > p) {
			if ((j = json_loadb(p, (size_t)(lf - p), 0, &e)) ==
			    NULL)
				qb_fatal("parse: json_loadb: %s", e.text);
			json_decref(j);
			(*msgs)++;
		}
		p = lf + 1;
	}
	return (qb_now() - t0);
}

int
bench_parse(int argc, char **argv)
{
	const char	*path = qb_arg(argc, argv, "file", NULL);
	const char	*reader = qb_arg(argc, argv, "reader", "line");
	const char	*input = qb_arg(argc, argv, "input", "session");
	double		(*run)(const char *, size_t, size_t *);
	int		 js;
	long		 mb = qb_arg_l(argc, argv, "mb", 64), r;
	char		*one, *all;
	size_t		 len, total, n, msgs_f = 0, msgs_b = 0;
	double		 tf = 1e9, tb = 1e9, t;

	if (path == NULL || mb < 1)
		qb_fatal("parse: --file needed");
	if ((js = strcmp(reader, "jstream") == 0) == 0 &&
	    strcmp(reader, "line") != 0)
		qb_fatal("parse: --reader line or jstream");
	run = js ? parse_jstream : parse_framer;
	one = parse_load(path, &len);
	total = ((size_t)mb * 1024 * 1024 / len + 1) * len;
	if ((all = malloc(total)) == NULL)
		qb_fatal("out of memory");
	for (n = 0; n < total; n += len)
		memcpy(all + n, one, len);
	/* best of three each, interleaved: the least disturbed run */
	for (r = 0; r < 3; r++) {
		if ((t = run(all, total, &msgs_f)) < tf)
			tf = t;
		if ((t = parse_bare(all, total, &msgs_b)) < tb)
			tb = t;
	}
	if (msgs_f != msgs_b)
		qb_fatal("parse: framer saw %zu messages, json_loadb %zu",
		    msgs_f, msgs_b);
	if (!js) {
		printf("R parse framer mb_s=%.1f msgs_s=%.0f\n",
		    (double)total / tf / 1e6, (double)msgs_f / tf);
		printf("R parse jansson mb_s=%.1f msgs_s=%.0f\n",
		    (double)total / tb / 1e6, (double)msgs_b / tb);
		printf("R parseratio framer_over_jansson=%.3f\n", tf / tb);
	} else {
		printf("R parse jstream-%s mb_s=%.1f msgs_s=%.0f\n", input,
		    (double)total / tf / 1e6, (double)msgs_f / tf);
		printf("R parse jansson-%s mb_s=%.1f msgs_s=%.0f\n", input,
		    (double)total / tb / 1e6, (double)msgs_b / tb);
		printf("R parseratio jstream_over_jansson=%.3f input=%s\n",
		    tf / tb, input);
	}
	free(one);
	free(all);
	return (0);
}
