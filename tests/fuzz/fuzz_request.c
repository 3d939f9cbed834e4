/*
 * libFuzzer harness for the control protocol's request path: one line as
 * a client sends it, through the same steps client_msg() takes
 * (qmp_framer, qmp_cmd_parse, req_new, cmd_dispatch) into every command's
 * argument validation, with no VM, no client and no socket.
 *
 * Beyond not crashing it checks the contract of docs/control.md: every
 * request that reaches dispatch finishes exactly once, synchronously here
 * (nothing can be pending without a VM), with a return or an error that
 * has a class and a desc and can be serialised.
 *
 * Commands whose success changes the host (vm-add writes the registry and
 * starts a monitor; jobs start threads and children) are not dispatched:
 * their argument checks run in the unit tests and the integration tests.
 * A fuzzer that creates files and threads per input is no fuzzer.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "broker/cmd/cmd.h"
#include "broker/core/conf.h"
#include "broker/core/loop.h"
#include "broker/session/req.h"
#include "proto/qmp_framer.h"
#include "proto/qmp_msg.h"
#include "proto/qmp_out.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);
int	LLVMFuzzerInitialize(int *, char ***);

static const char *const skip[] = {
	"vm-add", "domain-", "image-", "job-", NULL
};

struct done {
	int	calls;
};

static void
done_cb(struct req *r, json_t *ret, const struct qmp_error *err, void *arg)
{
	struct done	*d = arg;
	struct qmp_out	 o;
	json_t		*e = NULL;

	(void)r;
	d->calls++;
	if (err != NULL) {
		if (err->cls[0] == '\0' || err->desc[0] == '\0' ||
		    memchr(err->desc, '\0', sizeof err->desc) == NULL)
			__builtin_trap();
		if ((e = qmp_error_json(err)) == NULL)
			__builtin_trap();
	} else if (ret == NULL)
		__builtin_trap();
	/* as the daemon writes it (proto/qmp_out: QEMU's text, U+0000
	   included, which jansson's dump refuses) */
	qmp_out_init(&o);
	qmp_out_reply(&o, e == NULL ? ret : NULL, e, NULL);
	if (o.failed)
		__builtin_trap();
	qmp_out_free(&o);
	json_decref(e);
	json_decref(ret);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static char	 dir[] = "/tmp/fuzz_request.XXXXXX";

	(void)argc;
	(void)argv;
	conf_init(&conf);
	conf.log_level = LOG_EMERG;	/* quiet: refusals are expected */
	if (mkdtemp(dir) == NULL)
		abort();
	conf.state_dir = dir;
	conf.run_dir = dir;
	loop_base = event_base_new();
	return (0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct qmp_framer	 fr;
	struct qmp_error	 err;
	struct done		 d;
	struct req		*r;
	const char		*name;
	json_t			*msg, *args, *id;
	char			*p;
	size_t			 avail;
	int			 rc, i, negotiated;

	if (size < 1)
		return (0);
	/* first byte: negotiated or not, as a client may be either */
	negotiated = data[0] & 1;
	data++;
	size--;
	qmp_framer_init(&fr, 65536);
	if ((p = qmp_framer_reserve(&fr, size + 1, &avail)) == NULL) {
		qmp_framer_free(&fr);
		return (0);
	}
	memcpy(p, data, size);
	p[size] = '\n';
	qmp_framer_commit(&fr, size + 1);
	while ((rc = qmp_framer_next(&fr, &msg, &err)) != QMP_FRAME_NONE) {
		if (rc == QMP_FRAME_BROKEN)
			break;
		if (rc == QMP_FRAME_BAD)
			continue;
		id = NULL;
		if (qmp_cmd_parse(msg, &name, &args, &id, &err) == -1) {
			json_decref(msg);
			continue;
		}
		for (i = 0; skip[i] != NULL; i++)
			if (strncmp(name, skip[i], strlen(skip[i])) == 0)
				break;
		if (skip[i] != NULL) {
			json_decref(msg);
			continue;
		}
		memset(&d, 0, sizeof d);
		r = req_new(NULL, NULL, json_incref(id), NULL, 0, done_cb, &d);
		if (r == NULL)
			abort();
		cmd_dispatch(r, name, args, negotiated);
		if (d.calls != 1)
			__builtin_trap();
		json_decref(msg);
	}
	qmp_framer_free(&fr);
	return (0);
}
