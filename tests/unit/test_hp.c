/*
 * The hotplug step engine against a small in-process model of QEMU's
 * hotplug state (named fds, netdevs, block nodes, fdsets, devices), so
 * that every rollback can be checked by comparing the model before and
 * after, and every command's arguments can be looked at. Faults: an
 * error reply at the Nth command of a name, or a "lost" reply (the
 * command takes effect but the answer is a monitor error).
 *
 * The model is QEMU behind a VM endpoint (hv/vmq.h) with a test backend,
 * as libvirt-qemu is one: hp drives it as it drives any VM.
 */
#include <sys/stat.h>

#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>
#include <cmocka.h>

#include <event2/event.h>

#include "hv/hp.h"
#include "hv/vmq.h"
#include "util/defer.h"

static struct event_base *base;

/* --- the model ----------------------------------------------------------- */

static json_t	*model;		/* {"fds":{}, "netdevs":{}, "nodes":{},
				    "fdsets":{}, "devices":{}} */
static json_t	*calls;		/* [{"cmd", "args", "nfds"}] */
static json_t	*rec_pci, *rec_periph;
static char	 fail_cmd[64];
static int	 fail_nth;	/* 1-based occurrence that fails */
static int	 fail_lost;	/* the failing command takes effect */
static int	 seen_nth;
static int	 deleted_mode;	/* 0: event after reply, 1: before,
				   2: never */
static int	 resize_mode;	/* MEMORY_DEVICE_SIZE_CHANGE after a
				   qom-set: as deleted_mode */
static bool	 ready = true;
static json_t	*journal;	/* [rec...] and null for "over" */
static int	 journal_fail;
static json_t	*unplugged;
static json_t	*missing_cmds;
static int	 next_fdset;	/* add-fd's next fdset-id */
static json_t	*trace;		/* when set: what went out, a line each
				   (see test_transcripts) */

struct pending {
	vmq_reply_fn		*cb;
	void			*arg;
	json_t			*ret;
	struct qmp_error	 err;
	bool			 failed;
	json_t			*event;		/* emitted before the reply */
	json_t			*event_after;
	struct hp_vm		*vm;
};

static struct hp_vm	*cur_vm;
static struct vmq	*cur_q;		/* cur_vm's endpoint */

static void
deliver(evutil_socket_t fd, short ev, void *arg)
{
	struct pending	*p = arg;

	if (p->event != NULL) {
		hp_vm_event(p->vm, p->event);
		json_decref(p->event);
	}
	p->cb(p->failed ? NULL : p->ret, p->failed ? &p->err : NULL, p->arg);
	json_decref(p->ret);
	if (p->event_after != NULL) {
		hp_vm_event(p->vm, p->event_after);
		json_decref(p->event_after);
	}
	free(p);
}

static json_t *
set_of(const char *name)
{
	return (json_object_get(model, name));
}

static void
model_reset(void)
{
	json_decref(model);
	model = json_pack("{s:{}, s:{}, s:{}, s:{}, s:{}, s:{}, s:{}}", "fds",
	    "netdevs", "nodes", "fdsets", "devices", "objects", "vmem");
	json_decref(calls);
	calls = json_array();
	json_decref(journal);
	journal = json_array();
	json_decref(unplugged);
	unplugged = json_array();
	json_decref(missing_cmds);
	missing_cmds = json_array();
	fail_cmd[0] = '\0';
	next_fdset = 1;
	fail_nth = 1;
	fail_lost = 0;
	seen_nth = 0;
	deleted_mode = 0;
	resize_mode = 0;
	journal_fail = 0;
	ready = true;
}

/* Applies cmd to the model; returns the reply or sets err. */
static json_t *
model_apply(const char *cmd, json_t *a, size_t nfds, struct qmp_error *err)
{
	const char	*s;
	char		*names, *tok, *save;
	json_t		*ret = json_object(), *v, *tok_v;

	if (strcmp(cmd, "query-pci") == 0) {
		const char	*k;
		json_t		*q, *devs;

		/* the recording, plus what was plugged into pci.0 */
		json_decref(ret);
		q = json_deep_copy(rec_pci);
		devs = json_object_get(json_array_get(q, 0), "devices");
		json_object_foreach(set_of("devices"), k, v) {
			s = json_string_value(json_object_get(v, "addr"));
			if (s == NULL || strcmp(json_string_value(
			    json_object_get(v, "bus")), "pci.0") != 0)
				continue;
			json_array_append_new(devs, json_pack("{s:i, s:i, "
			    "s:s, s:{s:i}}", "slot", (int)strtol(s, NULL, 16),
			    "function", 0, "qdev_id", k, "class_info",
			    "class", 512));
		}
		return (q);
	}
	if (strcmp(cmd, "qom-list") == 0) {
		json_decref(ret);
		if (strcmp(json_string_value(json_object_get(a, "path")),
		    "/machine/peripheral") != 0)
			return (json_array());
		ret = json_deep_copy(rec_periph);
		json_object_foreach(set_of("devices"), s, v)
			json_array_append_new(ret, json_pack("{s:s, s:s}",
			    "name", s, "type", "child<virtio-net-pci>"));
		return (ret);
	}
	if (strcmp(cmd, "getfd") == 0) {
		if (nfds != 1)
			goto nofd;
		json_object_set_new(set_of("fds"), json_string_value(
		    json_object_get(a, "fdname")), json_true());
		return (ret);
	}
	if (strcmp(cmd, "closefd") == 0) {
		s = json_string_value(json_object_get(a, "fdname"));
		if (json_object_del(set_of("fds"), s) != 0)
			goto notfound;
		return (ret);
	}
	if (strcmp(cmd, "netdev_add") == 0) {
		s = json_string_value(json_object_get(a, "fds"));
		if (s == NULL)
			s = json_string_value(json_object_get(a, "fd"));
		names = strdup(s);
		for (tok = strtok_r(names, ":", &save); tok != NULL;
		    tok = strtok_r(NULL, ":", &save)) {
			if (json_object_del(set_of("fds"), tok) != 0) {
				free(names);
				goto notfound;
			}
		}
		free(names);
		json_object_set(set_of("netdevs"), json_string_value(
		    json_object_get(a, "id")), a);
		return (ret);
	}
	if (strcmp(cmd, "netdev_del") == 0) {
		if (json_object_del(set_of("netdevs"), json_string_value(
		    json_object_get(a, "id"))) != 0)
			goto notfound;
		return (ret);
	}
	if (strcmp(cmd, "add-fd") == 0) {
		char	id[16];

		if (nfds != 1)
			goto nofd;
		snprintf(id, sizeof id, "%d", next_fdset);
		json_object_set(set_of("fdsets"), id, a);
		json_decref(ret);
		return (json_pack("{s:i, s:i}", "fdset-id", next_fdset++,
		    "fd", 30));
	}
	if (strcmp(cmd, "remove-fd") == 0) {
		char	id[16];

		snprintf(id, sizeof id, "%lld", (long long)json_integer_value(
		    json_object_get(a, "fdset-id")));
		if (json_object_del(set_of("fdsets"), id) != 0)
			goto notfound;
		return (ret);
	}
	if (strcmp(cmd, "query-fdsets") == 0) {
		const char	*k;

		json_decref(ret);
		ret = json_array();
		json_object_foreach(set_of("fdsets"), k, v)
			json_array_append_new(ret, json_pack("{s:i, s:[{s:i, "
			    "s:O}]}", "fdset-id", atoi(k), "fds", "fd", 30,
			    "opaque", json_object_get(v, "opaque")));
		return (ret);
	}
	if (strcmp(cmd, "blockdev-add") == 0) {
		json_object_set(set_of("nodes"), json_string_value(
		    json_object_get(a, "node-name")), a);
		return (ret);
	}
	if (strcmp(cmd, "blockdev-del") == 0) {
		if (json_object_del(set_of("nodes"), json_string_value(
		    json_object_get(a, "node-name"))) != 0)
			goto notfound;
		return (ret);
	}
	if (strcmp(cmd, "device_add") == 0) {
		s = json_string_value(json_object_get(a, "id"));
		if (json_object_get(set_of("devices"), s) != NULL) {
			qmp_error_set(err, "GenericError", "Duplicate ID");
			json_decref(ret);
			return (NULL);
		}
		json_object_set(set_of("devices"), s, a);
		return (ret);
	}
	if (strcmp(cmd, "device_del") == 0) {
		s = json_string_value(json_object_get(a, "id"));
		if (json_object_get(set_of("devices"), s) == NULL) {
			qmp_error_set(err, "DeviceNotFound", "Device '%s' not "
			    "found", s);
			json_decref(ret);
			return (NULL);
		}
		return (ret);
	}
	/* CPUs: -smp 1,maxcpus=3, listed highest first as QEMU does */
	if (strcmp(cmd, "query-hotpluggable-cpus") == 0) {
		const char	*k;
		char		 path[128];
		int		 core;

		json_decref(ret);
		ret = json_array();
		for (core = 2; core >= 0; core--) {
			v = json_pack("{s:s, s:i, s:{s:i, s:i, s:i}}", "type",
			    "qemu64-x86_64-cpu", "vcpus-count", 1, "props",
			    "socket-id", 0, "core-id", core, "thread-id", 0);
			if (core == 0)
				json_object_set_new(v, "qom-path", json_string(
				    "/machine/unattached/device[0]"));
			json_object_foreach(set_of("devices"), k, tok_v) {
				if (json_integer_value(json_object_get(tok_v,
				    "core-id")) != core || json_object_get(
				    tok_v, "core-id") == NULL)
					continue;
				snprintf(path, sizeof path,
				    "/machine/peripheral/%s", k);
				json_object_set_new(v, "qom-path",
				    json_string(path));
			}
			json_array_append_new(ret, v);
		}
		return (ret);
	}
	/* memory: -m 256,slots=2,maxmem=512M */
	if (strcmp(cmd, "qom-get") == 0) {
		json_decref(ret);
		return (json_pack("{s:I, s:i, s:I}", "size",
		    (json_int_t)256 << 20, "slots", 2, "max-size",
		    (json_int_t)512 << 20));
	}
	if (strcmp(cmd, "query-memory-devices") == 0) {
		const char	*k;
		char		 md[128];

		json_decref(ret);
		ret = json_array();
		json_object_foreach(set_of("devices"), k, tok_v) {
			s = json_string_value(json_object_get(tok_v,
			    "memdev"));
			if (s == NULL)
				continue;
			snprintf(md, sizeof md, "/objects/%s", s);
			json_array_append_new(ret, json_pack("{s:s, s:{s:s, "
			    "s:s, s:O}}", "type", "dimm", "data", "id", k,
			    "memdev", md, "size", json_object_get(json_object_get(
			    set_of("objects"), s), "size")));
		}
		/* {"ID": {size, requested-size, max-size}}: 2 MiB blocks */
		json_object_foreach(set_of("vmem"), k, tok_v) {
			v = json_deep_copy(tok_v);
			json_object_set_new(v, "id", json_string(k));
			json_object_set_new(v, "memdev", json_string("/objects/x"));
			json_object_set_new(v, "block-size",
			    json_integer(2 << 20));
			json_array_append_new(ret, json_pack("{s:s, s:o}",
			    "type", "virtio-mem", "data", v));
		}
		return (ret);
	}
	if (strcmp(cmd, "qom-set") == 0) {
		s = json_string_value(json_object_get(a, "path"));
		v = s != NULL && strncmp(s, "/machine/peripheral/", 20) == 0 ?
		    json_object_get(set_of("vmem"), s + 20) : NULL;
		if (v == NULL)
			goto notfound;
		json_object_set(v, "requested-size", json_object_get(a,
		    "value"));
		return (ret);
	}
	if (strcmp(cmd, "object-add") == 0) {
		s = json_string_value(json_object_get(a, "id"));
		if (json_object_get(set_of("objects"), s) != NULL)
			goto notfound;
		json_object_set(set_of("objects"), s, a);
		return (ret);
	}
	if (strcmp(cmd, "object-del") == 0) {
		if (json_object_del(set_of("objects"), json_string_value(
		    json_object_get(a, "id"))) != 0)
			goto notfound;
		return (ret);
	}
	if (strcmp(cmd, "query-named-block-nodes") == 0) {
		const char	*k;

		json_decref(ret);
		ret = json_array();
		json_object_foreach(set_of("nodes"), k, v)
			json_array_append_new(ret, json_pack("{s:s}",
			    "node-name", k));
		return (ret);
	}
	qmp_error_set(err, "CommandNotFound", "The command %s has not been "
	    "found", cmd);
	json_decref(ret);
	return (NULL);
nofd:
	qmp_error_set(err, "GenericError", "No file descriptor supplied via "
	    "SCM_RIGHTS");
	json_decref(ret);
	return (NULL);
notfound:
	qmp_error_set(err, "GenericError", "not found");
	json_decref(ret);
	return (NULL);
}

/* One line of the transcript: what went to QEMU or to the journal, as
   compact JSON with sorted keys, so that it can be compared as text. */
static void
trace_add(const char *what, const char *cmd, const json_t *v, int nfds)
{
	char	*js, line[4096];

	js = v != NULL ? json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS |
	    JSON_ENCODE_ANY) : NULL;
	if (cmd != NULL)
		snprintf(line, sizeof line, "%s %s %s %d", what, cmd,
		    js != NULL ? js : "-", nfds);
	else
		snprintf(line, sizeof line, "%s %s", what,
		    js != NULL ? js : "null");
	free(js);
	json_array_append_new(trace, json_string(line));
}

static void
mock_execute(struct vmq *q, void *be_arg, const char *cmd, json_t *args,
    const int *fds, size_t nfds, vmq_reply_fn *cb, void *arg)
{
	struct pending	*p = calloc(1, sizeof *p);
	const char	*id;
	json_t		*ev;

	assert_non_null(p);
	p->cb = cb;
	p->arg = arg;
	p->vm = cur_vm;
	json_array_append_new(calls, json_pack("{s:s, s:O, s:i}", "cmd", cmd,
	    "args", args != NULL ? args : json_null(), "nfds", (int)nfds));
	if (trace != NULL)
		trace_add(">", cmd, args, (int)nfds);
	if (!ready) {
		qmp_error_set(&p->err, "GenericError", "monitor not connected");
		p->failed = true;
	} else if (strcmp(cmd, fail_cmd) == 0 && ++seen_nth == fail_nth) {
		if (fail_lost) {
			/* QEMU acted, the reply was lost */
			json_decref(model_apply(cmd, args, nfds, &p->err));
			qmp_error_set(&p->err, "GenericError", "command timed "
			    "out");
		} else
			qmp_error_set(&p->err, "GenericError", "injected %s",
			    cmd);
		p->failed = true;
	} else {
		p->ret = model_apply(cmd, args, nfds, &p->err);
		p->failed = p->ret == NULL;
	}
	if (!p->failed && strcmp(cmd, "qom-set") == 0 && resize_mode != 2) {
		/* the guest follows */
		id = json_string_value(json_object_get(args, "path")) + 20;
		json_object_set(json_object_get(set_of("vmem"), id), "size",
		    json_object_get(args, "value"));
		ev = json_pack("{s:s, s:{s:s, s:O}}", "event",
		    "MEMORY_DEVICE_SIZE_CHANGE", "data", "id", id, "size",
		    json_object_get(args, "value"));
		if (resize_mode == 1)
			p->event = ev;
		else
			p->event_after = ev;
	}
	if (!p->failed && strcmp(cmd, "device_del") == 0 &&
	    deleted_mode != 2) {
		id = json_string_value(json_object_get(args, "id"));
		json_object_del(set_of("devices"), id);
		/* the virtio-backend one first, as QEMU sends it */
		ev = json_pack("{s:s, s:{s:s}}", "event", "DEVICE_DELETED",
		    "data", "path", "/machine/peripheral/x/virtio-backend");
		hp_vm_event(cur_vm, ev);
		json_decref(ev);
		ev = json_pack("{s:s, s:{s:s, s:s}}", "event",
		    "DEVICE_DELETED", "data", "device", id, "path",
		    "/machine/peripheral/x");
		if (deleted_mode == 1)
			p->event = ev;
		else
			p->event_after = ev;
	}
	json_decref(args);
	event_base_once(base, -1, EV_TIMEOUT, deliver, p, NULL);
}

static bool
mock_has(void *be_arg, const char *cmd)
{
	size_t	 i;
	json_t	*v;

	json_array_foreach(missing_cmds, i, v)
		if (strcmp(json_string_value(v), cmd) == 0)
			return (false);
	return (true);
}

static const struct qmp_version *
mock_version(void *be_arg)
{
	return (NULL);
}

static void
mock_gone(void *be_arg)
{
}

static const struct vmq_backend mock_backend = {
	mock_execute, mock_version, mock_has, mock_gone
};

/* What the monitor would say: its state, and the model's replies. */
static void
set_ready(bool r)
{
	ready = r;
	vmq_backend_state(cur_q, r ? MON_READY : MON_DISCONNECTED,
	    r ? NULL : "test");
}

static int
mock_journal(void *ctx, const char *id, const json_t *rec)
{
	if (journal_fail)
		return (-1);
	if (trace != NULL)
		trace_add("J", NULL, rec, -1);
	json_array_append_new(journal, rec != NULL ? json_deep_copy(rec) :
	    json_null());
	return (0);
}

static void
mock_unplugged(void *ctx, const char *id)
{
	json_array_append_new(unplugged, json_string(id));
}

/* What hp tells the operator is part of the transcript too; the step by
   step debug lines are not (they are for post-mortems, not a contract). */
static void
mock_log(void *ctx, int prio, const char *msg)
{
	char	line[1200];

	if (trace == NULL || prio == LOG_DEBUG)
		return;
	snprintf(line, sizeof line, "L %d %s", prio, msg);
	json_array_append_new(trace, json_string(line));
}

static const struct hp_ops mock_ops = {
	mock_journal, mock_unplugged, mock_log
};

/* --- helpers --------------------------------------------------------------- */

struct result {
	int			 n;
	json_t			*ret;
	struct qmp_error	 err;
	bool			 ok;
};

static void
done_cb(json_t *ret, const struct qmp_error *err, void *arg)
{
	struct result	*r = arg;
	json_t		*e;

	if (trace != NULL && err != NULL) {
		e = json_pack("{s:s, s:s}", "class", err->cls, "desc",
		    err->desc);
		trace_add("= error", NULL, e, -1);
		json_decref(e);
	} else if (trace != NULL)
		trace_add("= ok", NULL, ret, -1);
	r->n++;
	r->ok = err == NULL;
	json_decref(r->ret);
	r->ret = ret;
	if (err != NULL)
		r->err = *err;
}

static void
run_until(struct result *r, int n)
{
	int	i;

	for (i = 0; i < 100000 && r->n < n; i++)
		event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	assert_int_equal(r->n, n);
}

static void
run_idle(void)
{
	int	i;

	for (i = 0; i < 1000; i++)
		event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
}

static const char *
call_cmd(size_t i)
{
	return (json_string_value(json_object_get(json_array_get(calls, i),
	    "cmd")));
}

static json_t *
call_args(size_t i)
{
	return (json_object_get(json_array_get(calls, i), "args"));
}

static int
find_call(const char *cmd, int nth)
{
	size_t	i;

	for (i = 0; i < json_array_size(calls); i++)
		if (strcmp(call_cmd(i), cmd) == 0 && nth-- == 0)
			return ((int)i);
	return (-1);
}

static void
fd_pair(int *fds, size_t n)
{
	size_t	i;

	for (i = 0; i < n; i++) {
		fds[i] = open("/dev/null", O_RDWR);
		assert_true(fds[i] >= 0);
	}
}

static void
assert_closed(const int *fds, size_t n)
{
	size_t	i;

	for (i = 0; i < n; i++)
		assert_int_equal(fcntl(fds[i], F_GETFD), -1);
}

static struct hp_vm *
new_vm(int timeout_ms)
{
	cur_q = vmq_new_backend(base, "test", &mock_backend, NULL, NULL,
	    NULL);
	assert_non_null(cur_q);
	set_ready(true);
	cur_vm = hp_vm_new(base, cur_q, &mock_ops, NULL, timeout_ms);
	assert_non_null(cur_vm);
	return (cur_vm);
}

/* As the broker removes a VM: its hotplug state, then its endpoint. */
static void
free_vm(struct hp_vm *vm)
{
	hp_vm_free(vm);
	vmq_free(cur_q);
}

static void
nic_init(struct hp_nic *n, const char *id, size_t q, bool vhost)
{
	memset(n, 0, sizeof *n);
	snprintf(n->id, sizeof n->id, "%s", id);
	n->queues = q;
	n->vhost = vhost;
	n->slot = -1;
	n->nfds = vhost ? 2 * q : q;
	fd_pair(n->fds, n->nfds);
}

/* --- tests ----------------------------------------------------------------- */

static void
test_nic_add(void **state)
{
	struct hp_vm	*vm;
	struct hp_nic	 nic;
	struct result	 r = { 0 };
	int		 fds[HP_MAX_FDS];
	json_t		*a;
	int		 i;

	model_reset();
	vm = new_vm(1000);
	nic_init(&nic, "net1", 1, false);
	snprintf(nic.mac, sizeof nic.mac, "52:54:00:12:34:56");
	memcpy(fds, nic.fds, sizeof fds);
	hp_nic_add(vm, &nic, done_cb, &r);
	assert_int_equal(json_array_size(calls), 0);	/* never inline */
	run_until(&r, 1);
	assert_true(r.ok);
	assert_string_equal(json_string_value(json_object_get(r.ret, "bus")),
	    "pci.0");
	assert_string_equal(json_string_value(json_object_get(r.ret, "addr")),
	    "0x2");
	assert_string_equal(call_cmd(0), "query-pci");
	i = find_call("getfd", 0);
	assert_true(i > 0);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(
	    calls, i), "nfds")), 1);
	a = call_args(find_call("netdev_add", 0));
	assert_string_equal(json_string_value(json_object_get(a, "type")),
	    "tap");
	assert_string_equal(json_string_value(json_object_get(a, "fd")),
	    json_string_value(json_object_get(call_args(i), "fdname")));
	assert_null(json_object_get(a, "vhost"));
	a = call_args(find_call("device_add", 0));
	assert_string_equal(json_string_value(json_object_get(a, "driver")),
	    "virtio-net-pci");
	assert_string_equal(json_string_value(json_object_get(a, "netdev")),
	    json_string_value(json_object_get(call_args(find_call(
	    "netdev_add", 0)), "id")));
	assert_string_equal(json_string_value(json_object_get(a, "mac")),
	    "52:54:00:12:34:56");
	assert_string_equal(json_string_value(json_object_get(a, "addr")),
	    "0x2");
	assert_null(json_object_get(a, "mq"));
	assert_int_equal(json_object_size(set_of("fds")), 0);
	assert_int_equal(json_object_size(set_of("netdevs")), 1);
	assert_non_null(json_object_get(set_of("devices"), "net1"));
	assert_closed(fds, 1);
	/* journal: one record per step, then "over" */
	assert_int_equal(json_array_size(journal), 4 + 1);
	assert_true(json_is_null(json_array_get(journal, 4)));
	assert_string_equal(json_string_value(json_object_get(
	    json_array_get(journal, 2), "step")), "netdev_add");

	/* and out again: DEVICE_DELETED then netdev_del */
	hp_del(vm, HP_NIC, "net1", done_cb, &r);
	run_until(&r, 2);
	assert_true(r.ok);
	assert_int_equal(json_object_size(set_of("devices")), 0);
	assert_int_equal(json_object_size(set_of("netdevs")), 0);
	assert_int_equal(json_array_size(unplugged), 0);
	free_vm(vm);
	json_decref(r.ret);
}

static void
test_nic_mq_vhost(void **state)
{
	struct hp_vm	*vm;
	struct hp_nic	 nic;
	struct result	 r = { 0 };
	json_t		*a, *d;
	char		 want[512];

	model_reset();
	vm = new_vm(1000);
	nic_init(&nic, "mq0", 2, true);
	hp_nic_add(vm, &nic, done_cb, &r);
	run_until(&r, 1);
	assert_true(r.ok);
	assert_int_equal(find_call("getfd", 3) > 0, 1);
	assert_int_equal(find_call("getfd", 4), -1);
	a = call_args(find_call("netdev_add", 0));
	snprintf(want, sizeof want, "%s:%s",
	    json_string_value(json_object_get(call_args(find_call("getfd", 0)),
	    "fdname")), json_string_value(json_object_get(call_args(find_call(
	    "getfd", 1)), "fdname")));
	assert_string_equal(json_string_value(json_object_get(a, "fds")), want);
	snprintf(want, sizeof want, "%s:%s",
	    json_string_value(json_object_get(call_args(find_call("getfd", 2)),
	    "fdname")), json_string_value(json_object_get(call_args(find_call(
	    "getfd", 3)), "fdname")));
	assert_string_equal(json_string_value(json_object_get(a, "vhostfds")),
	    want);
	assert_true(json_is_true(json_object_get(a, "vhost")));
	assert_null(json_object_get(a, "fd"));
	d = call_args(find_call("device_add", 0));
	assert_true(json_is_true(json_object_get(d, "mq")));
	assert_int_equal(json_integer_value(json_object_get(d, "vectors")), 6);
	free_vm(vm);
	json_decref(r.ret);
}

/* Every step of nic-add and disk-add failing, by error reply and by lost
   reply: the model ends as it began, the fds are closed, the client
   gets the step's error, and the slot is free again. */
static void
fault_matrix(bool disk)
{
	static const char *const nic_steps[] = { "query-pci", "getfd",
	    "netdev_add", "device_add", NULL };
	static const char *const disk_steps[] = { "query-pci", "add-fd",
	    "blockdev-add", "remove-fd", "device_add", NULL };
	const char *const	*st;
	struct hp_vm		*vm;
	struct hp_nic		 nic;
	struct hp_disk		 dk;
	struct result		 r;
	json_t			*before;
	int			 fds[HP_MAX_FDS], lost, nth;

	for (st = disk ? disk_steps : nic_steps; *st != NULL; st++) {
	for (lost = 0; lost < 2; lost++) {
	for (nth = 1; nth <= (strcmp(*st, "getfd") == 0 ? 2 : 1); nth++) {
		model_reset();
		snprintf(fail_cmd, sizeof fail_cmd, "%s", *st);
		fail_nth = nth;
		fail_lost = lost;
		vm = new_vm(1000);
		before = json_deep_copy(model);
		memset(&r, 0, sizeof r);
		if (disk) {
			memset(&dk, 0, sizeof dk);
			snprintf(dk.id, sizeof dk.id, "d0");
			snprintf(dk.format, sizeof dk.format, "qcow2");
			dk.slot = -1;
			fd_pair(&dk.fd, 1);
			fds[0] = dk.fd;
			hp_disk_add(vm, &dk, done_cb, &r);
		} else {
			nic_init(&nic, "n0", 2, false);
			memcpy(fds, nic.fds, sizeof fds);
			hp_nic_add(vm, &nic, done_cb, &r);
		}
		run_until(&r, 1);
		if (r.ok)
			fail_msg("%s fault at %s#%d (lost %d): succeeded",
			    disk ? "disk" : "nic", *st, nth, lost);
		if (strstr(r.err.desc, lost ? "timed out" : "injected") ==
		    NULL)
			fail_msg("%s: error '%s'", *st, r.err.desc);
		run_idle();
		if (!json_equal(before, model)) {
			char *m = json_dumps(model, JSON_SORT_KEYS);
			fail_msg("%s fault at %s#%d (lost %d): left %s",
			    disk ? "disk" : "nic", *st, nth, lost, m);
		}
		assert_closed(fds, disk ? 1 : 2);
		assert_int_equal(hp_vm_busy(vm), 0);
		/* the journal ends with "over" */
		assert_true(json_is_null(json_array_get(journal,
		    json_array_size(journal) - 1)));
		/* the slot is free again: asking for 0x2 by name gets it
		   (automatic allocation would rather take a fresh slot) */
		fail_cmd[0] = '\0';
		if (!disk) {
			nic_init(&nic, "n0", 1, false);
			nic.slot = 2;
			hp_nic_add(vm, &nic, done_cb, &r);
			run_until(&r, 2);
			assert_true(r.ok);
			assert_string_equal(json_string_value(json_object_get(
			    r.ret, "addr")), "0x2");
		}
		free_vm(vm);
		json_decref(before);
		json_decref(r.ret);
	}
	}
	}
}

static void
test_nic_faults(void **state)
{
	fault_matrix(false);
}

static void
test_disk_faults(void **state)
{
	fault_matrix(true);
}

static void
test_disk_add(void **state)
{
	struct hp_vm	*vm;
	struct hp_disk	 dk;
	struct result	 r = { 0 };
	json_t		*a, *file;
	int		 fd;

	model_reset();
	vm = new_vm(1000);
	memset(&dk, 0, sizeof dk);
	snprintf(dk.id, sizeof dk.id, "disk1");
	dk.readonly = true;
	dk.slot = 9;
	snprintf(dk.bus, sizeof dk.bus, "pci.0");
	fd_pair(&dk.fd, 1);
	fd = dk.fd;
	hp_disk_add(vm, &dk, done_cb, &r);
	run_until(&r, 1);
	assert_true(r.ok);
	assert_string_equal(json_string_value(json_object_get(r.ret, "addr")),
	    "0x9");
	a = call_args(find_call("add-fd", 0));
	assert_non_null(strstr(json_string_value(json_object_get(a, "opaque")),
	    "disk1"));
	a = call_args(find_call("blockdev-add", 0));
	assert_string_equal(json_string_value(json_object_get(a, "driver")),
	    "raw");
	assert_true(json_is_true(json_object_get(a, "read-only")));
	file = json_object_get(a, "file");
	assert_string_equal(json_string_value(json_object_get(file, "driver")),
	    "file");
	assert_string_equal(json_string_value(json_object_get(file,
	    "filename")), "/dev/fdset/1");
	assert_true(find_call("remove-fd", 0) < find_call("device_add", 0));
	a = call_args(find_call("device_add", 0));
	assert_string_equal(json_string_value(json_object_get(a, "drive")),
	    json_string_value(json_object_get(call_args(find_call(
	    "blockdev-add", 0)), "node-name")));
	assert_true(strlen(json_string_value(json_object_get(a, "drive"))) < 32);
	assert_int_equal(json_object_size(set_of("fdsets")), 0);
	assert_closed(&fd, 1);

	/* the slot is taken now; a second disk asking for it is refused
	   before anything is sent */
	memset(&dk, 0, sizeof dk);
	snprintf(dk.id, sizeof dk.id, "disk2");
	dk.fd = -1;
	dk.slot = 9;
	snprintf(dk.bus, sizeof dk.bus, "pci.0");
	dk.node = json_pack("{s:s}", "driver", "nbd");
	json_array_clear(calls);
	hp_disk_add(vm, &dk, done_cb, &r);
	run_until(&r, 2);
	assert_false(r.ok);
	if (strstr(r.err.desc, "0x9") == NULL)
		fail_msg("%s", r.err.desc);
	assert_int_equal(find_call("blockdev-add", 0), -1);

	hp_del(vm, HP_DISK, "disk1", done_cb, &r);
	run_until(&r, 3);
	assert_true(r.ok);
	assert_int_equal(json_object_size(set_of("nodes")), 0);
	free_vm(vm);
	json_decref(r.ret);
}

static void
test_unplug_pending(void **state)
{
	struct hp_vm	*vm;
	struct hp_nic	 nic;
	struct result	 r = { 0 }, r2 = { 0 };

	model_reset();
	vm = new_vm(50);
	nic_init(&nic, "slow", 1, false);
	hp_nic_add(vm, &nic, done_cb, &r);
	run_until(&r, 1);
	deleted_mode = 2;		/* the guest never answers */
	hp_del(vm, HP_NIC, "slow", done_cb, &r);
	while (r.n < 2)
		event_base_loop(base, EVLOOP_ONCE);
	assert_false(r.ok);
	assert_non_null(strstr(r.err.desc, "still pending"));
	assert_int_equal(json_object_size(set_of("netdevs")), 1);

	/* a second del says so, and sends nothing */
	json_array_clear(calls);
	hp_del(vm, HP_NIC, "slow", done_cb, &r2);
	run_until(&r2, 1);
	assert_false(r2.ok);
	assert_non_null(strstr(r2.err.desc, "already pending"));
	assert_int_equal(json_array_size(calls), 0);
	/* as does an add on the same id */
	nic_init(&nic, "slow", 1, false);
	hp_nic_add(vm, &nic, done_cb, &r2);
	run_until(&r2, 2);
	assert_non_null(strstr(r2.err.desc, "already pending"));

	/* the late DEVICE_DELETED finishes it and tells subscribers */
	json_object_del(set_of("devices"), "slow");
	{
		json_t *ev = json_pack("{s:s, s:{s:s}}", "event",
		    "DEVICE_DELETED", "data", "device", "slow");

		hp_vm_event(vm, ev);
		json_decref(ev);
	}
	run_idle();
	assert_int_equal(json_object_size(set_of("netdevs")), 0);
	assert_int_equal(json_array_size(unplugged), 1);
	assert_int_equal(r.n, 2);		/* answered once only */
	assert_int_equal(hp_vm_busy(vm), 0);
	free_vm(vm);
	json_decref(r.ret);
	json_decref(r2.ret);
}

static void
test_deleted_before_reply(void **state)
{
	struct hp_vm	*vm;
	struct hp_nic	 nic;
	struct result	 r = { 0 };

	model_reset();
	vm = new_vm(5000);
	nic_init(&nic, "fast", 1, false);
	hp_nic_add(vm, &nic, done_cb, &r);
	run_until(&r, 1);
	deleted_mode = 1;
	hp_del(vm, HP_NIC, "fast", done_cb, &r);
	run_until(&r, 2);
	assert_true(r.ok);
	assert_int_equal(json_object_size(set_of("netdevs")), 0);
	free_vm(vm);
	json_decref(r.ret);
}

static void
test_gate_and_refusals(void **state)
{
	struct hp_vm	*vm;
	struct hp_nic	 nic;
	struct result	 r = { 0 };
	int		 fds[HP_MAX_FDS];

	model_reset();
	vm = new_vm(1000);
	json_array_append_new(missing_cmds, json_string("netdev_add"));
	nic_init(&nic, "g0", 1, false);
	memcpy(fds, nic.fds, sizeof fds);
	hp_nic_add(vm, &nic, done_cb, &r);
	run_until(&r, 1);
	assert_non_null(strstr(r.err.desc, "lacks the 'netdev_add'"));
	assert_int_equal(json_array_size(calls), 0);
	assert_closed(fds, 1);
	json_array_clear(missing_cmds);

	nic_init(&nic, "9bad", 1, false);
	hp_nic_add(vm, &nic, done_cb, &r);
	run_until(&r, 2);
	assert_non_null(strstr(r.err.desc, "invalid device id"));

	nic_init(&nic, "g1", 2, false);
	nic.nfds = 1;
	close(nic.fds[1]);
	hp_nic_add(vm, &nic, done_cb, &r);
	run_until(&r, 3);
	assert_non_null(strstr(r.err.desc, "needs 2 fd"));

	nic_init(&nic, "g2", 1, false);
	snprintf(nic.mac, sizeof nic.mac, "zz:54:00:12:34:56");
	hp_nic_add(vm, &nic, done_cb, &r);
	run_until(&r, 4);
	assert_non_null(strstr(r.err.desc, "mac"));

	set_ready(false);
	nic_init(&nic, "g3", 1, false);
	hp_nic_add(vm, &nic, done_cb, &r);
	run_until(&r, 5);
	assert_non_null(strstr(r.err.desc, "not ready"));
	set_ready(true);

	journal_fail = 1;
	nic_init(&nic, "g4", 1, false);
	hp_nic_add(vm, &nic, done_cb, &r);
	run_until(&r, 6);
	assert_non_null(strstr(r.err.desc, "journal"));
	assert_int_equal(json_array_size(calls), 0);
	journal_fail = 0;

	hp_del(vm, HP_NIC, "nosuch", done_cb, &r);
	run_until(&r, 7);
	assert_non_null(strstr(r.err.desc, "not found"));
	assert_int_equal(json_array_size(calls), 1);	/* device_del only */
	assert_int_equal(hp_vm_busy(vm), 0);
	free_vm(vm);
	json_decref(r.ret);
}

static void
test_concurrent(void **state)
{
	struct hp_vm	*vm;
	struct hp_nic	 nic;
	struct result	 r[5];
	char		 id[16];
	int		 i, seen[32] = { 0 }, slot;

	model_reset();
	vm = new_vm(1000);
	memset(r, 0, sizeof r);
	for (i = 0; i < 4; i++) {
		snprintf(id, sizeof id, "c%d", i);
		nic_init(&nic, id, 1, false);
		hp_nic_add(vm, &nic, done_cb, &r[i]);
	}
	/* the same id while its add is in flight */
	nic_init(&nic, "c0", 1, false);
	hp_nic_add(vm, &nic, done_cb, &r[4]);
	for (i = 0; i < 5; i++)
		run_until(&r[i], 1);
	assert_non_null(strstr(r[4].err.desc, "already in progress"));
	for (i = 0; i < 4; i++) {
		assert_true(r[i].ok);
		slot = (int)strtol(json_string_value(json_object_get(r[i].ret,
		    "addr")), NULL, 16);
		assert_int_equal(seen[slot]++, 0);
		json_decref(r[i].ret);
	}
	json_decref(r[4].ret);
	free_vm(vm);
}

static void
test_vm_free_inflight(void **state)
{
	struct hp_vm	*vm;
	struct hp_nic	 nic;
	struct result	 r = { 0 };
	int		 fds[HP_MAX_FDS];

	model_reset();
	vm = new_vm(1000);
	nic_init(&nic, "gone", 1, false);
	memcpy(fds, nic.fds, sizeof fds);
	hp_nic_add(vm, &nic, done_cb, &r);
	hp_vm_free(vm);		/* its first step is due from the loop */
	assert_int_equal(r.n, 1);
	assert_non_null(strstr(r.err.desc, "removed"));
	assert_closed(fds, 1);
	run_idle();
	assert_int_equal(r.n, 1);
	vmq_free(cur_q);
}

/* The endpoint itself: a command on a removed VM's fails from the loop,
   never inside the call, with the text vm-execute has always given; and
   the removed endpoint reads as disconnected until its memory goes. */
static void
test_vmq_removed(void **state)
{
	struct result	 r = { 0 };
	struct vmq	*q;

	model_reset();
	q = vmq_new_backend(base, "gone", &mock_backend, NULL, NULL, NULL);
	assert_non_null(q);
	vmq_backend_state(q, MON_READY, NULL);
	assert_int_equal(vmq_state(q), MON_READY);
	vmq_free(q);
	assert_int_equal(vmq_state(q), MON_DISCONNECTED);
	assert_false(vmq_has_command(q, "query-status"));
	vmq_execute(q, "query-status", NULL, NULL, 0, done_cb, &r);
	assert_int_equal(r.n, 0);
	run_until(&r, 1);
	assert_string_equal(r.err.cls, "GenericError");
	assert_string_equal(r.err.desc, "VM 'gone' has been removed");
	assert_int_equal(json_array_size(calls), 0);
}

static void
test_reconcile(void **state)
{
	struct hp_vm	*vm;
	struct result	 r = { 0 };
	json_t		*rec;

	/* a nic-add that died after netdev_add: no device, so undone */
	model_reset();
	vm = new_vm(1000);
	json_object_set_new(set_of("netdevs"), "qbnet-r0", json_object());
	json_object_set_new(set_of("fds"), "qb-tap1-x", json_true());
	rec = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:[s, s]}", "op",
	    "nic-add", "id", "r0", "kind", "nic", "step", "device_add",
	    "netdev", "qbnet-r0", "opaque", "qmpbroker:r0:1", "fdnames",
	    "qb-tap0-x", "qb-tap1-x");
	hp_reconcile(vm, rec, done_cb, &r);
	run_until(&r, 1);
	assert_string_equal(json_string_value(json_object_get(r.ret,
	    "action")), "undone");
	run_idle();
	assert_int_equal(json_object_size(set_of("netdevs")), 0);
	assert_int_equal(json_object_size(set_of("fds")), 0);
	json_decref(rec);

	/* a disk-add that died after device_add: finished; the fdset the
	   dead broker never removed goes */
	json_object_set_new(set_of("devices"), "r1", json_object());
	json_object_set_new(set_of("fdsets"), "7", json_pack("{s:s}",
	    "opaque", "qmpbroker:r1:2"));
	json_object_set_new(set_of("fdsets"), "8", json_pack("{s:s}",
	    "opaque", "someone-else"));
	rec = json_pack("{s:s, s:s, s:s, s:s, s:s, s:[]}", "op", "disk-add",
	    "id", "r1", "kind", "disk", "node", "qbd1", "opaque",
	    "qmpbroker:r1:2", "fdnames");
	hp_reconcile(vm, rec, done_cb, &r);
	run_until(&r, 2);
	assert_string_equal(json_string_value(json_object_get(r.ret,
	    "action")), "finished");
	run_idle();
	assert_null(json_object_get(set_of("fdsets"), "7"));
	assert_non_null(json_object_get(set_of("fdsets"), "8"));
	assert_non_null(json_object_get(set_of("devices"), "r1"));
	json_decref(rec);

	/* a nic-del whose device is still there: pending, then finished by
	   the guest's DEVICE_DELETED */
	json_object_set_new(set_of("netdevs"), "qbnet-r1", json_object());
	rec = json_pack("{s:s, s:s, s:s, s:s, s:[]}", "op", "nic-del", "id",
	    "r1", "kind", "nic", "netdev", "qbnet-r1", "fdnames");
	hp_reconcile(vm, rec, done_cb, &r);
	run_until(&r, 3);
	assert_string_equal(json_string_value(json_object_get(r.ret,
	    "action")), "pending");
	run_idle();
	assert_null(json_object_get(set_of("netdevs"), "qbnet-r1"));
	assert_int_equal(json_array_size(unplugged), 1);
	json_decref(rec);
	json_decref(r.ret);
	free_vm(vm);
}

/* The transcript as text, a line each, with every operation's random
   nonce (the 8 hex digits after "qmpbroker:ID:") written as XXXXXXXX
   wherever it appears (opaque, fd names). */
static char *
trace_text(void)
{
	char	*text, *p, *q, nonce[9];
	size_t	 i, len = 0;
	json_t	*v;

	json_array_foreach(trace, i, v)
		len += strlen(json_string_value(v)) + 1;
	text = calloc(1, len + 1);
	assert_non_null(text);
	json_array_foreach(trace, i, v) {
		strcat(text, json_string_value(v));
		strcat(text, "\n");
	}
	for (p = text; (p = strstr(p, "qmpbroker:")) != NULL; p++) {
		if ((q = strchr(p + strlen("qmpbroker:"), ':')) == NULL ||
		    strspn(q + 1, "0123456789abcdef") < 8)
			continue;
		memcpy(nonce, q + 1, 8);
		nonce[8] = '\0';
		if (strcmp(nonce, "XXXXXXXX") == 0)
			continue;
		for (q = text; (q = strstr(q, nonce)) != NULL; q += 8)
			memcpy(q, "XXXXXXXX", 8);
	}
	return (text);
}

static void
trace_check(const char *what, const char *want)
{
	char	*got = trace_text();

	if (getenv("HP_TRACE_PRINT") != NULL)
		printf("--- %s\n%s", what, got);
	else if (strcmp(got, want) != 0)
		fail_msg("%s: transcript differs:\n--- want\n%s--- got\n%s",
		    what, want, got);
	free(got);
	json_array_clear(trace);
}

/* The transcripts test_transcripts expects: "> cmd args nfds" went to
   QEMU, "J" to the journal, "L prio" to the log, "=" to the caller. */
static const char trace_nic_add[] =
	"J {\"fdnames\":[\"qb-tap0-t0-XXXXXXXX\",\"qb-tap1-t0-XXXXXXXX\",\"qb-v"
	"host0-t0-XXXXXXXX\",\"qb-vhost1-t0-XXXXXXXX\"],\"id\":\"t0\",\"kind\":"
	"\"nic\",\"netdev\":\"qbnet-t0\",\"node\":\"qbd0944ee69\",\"op\":\"nic-"
	"add\",\"opaque\":\"qmpbroker:t0:XXXXXXXX\",\"phase\":\"do\",\"step\":"
	"\"query-pci\"}\n"
	"> query-pci - 0\n"
	"> qom-list {\"path\":\"/machine/peripheral\"} 0\n"
	"J {\"bus\":\"pci.0\",\"fdnames\":[\"qb-tap0-t0-XXXXXXXX\",\"qb-tap1-t0"
	"-XXXXXXXX\",\"qb-vhost0-t0-XXXXXXXX\",\"qb-vhost1-t0-XXXXXXXX\"],\"id"
	"\":\"t0\",\"kind\":\"nic\",\"netdev\":\"qbnet-t0\",\"node\":\"qbd0944e"
	"e69\",\"op\":\"nic-add\",\"opaque\":\"qmpbroker:t0:XXXXXXXX\",\"phase"
	"\":\"do\",\"slot\":2,\"step\":\"getfd\"}\n"
	"> getfd {\"fdname\":\"qb-tap0-t0-XXXXXXXX\"} 1\n"
	"J {\"bus\":\"pci.0\",\"fdnames\":[\"qb-tap0-t0-XXXXXXXX\",\"qb-tap1-t0"
	"-XXXXXXXX\",\"qb-vhost0-t0-XXXXXXXX\",\"qb-vhost1-t0-XXXXXXXX\"],\"id"
	"\":\"t0\",\"kind\":\"nic\",\"netdev\":\"qbnet-t0\",\"node\":\"qbd0944e"
	"e69\",\"op\":\"nic-add\",\"opaque\":\"qmpbroker:t0:XXXXXXXX\",\"phase"
	"\":\"do\",\"slot\":2,\"step\":\"getfd\"}\n"
	"> getfd {\"fdname\":\"qb-tap1-t0-XXXXXXXX\"} 1\n"
	"J {\"bus\":\"pci.0\",\"fdnames\":[\"qb-tap0-t0-XXXXXXXX\",\"qb-tap1-t0"
	"-XXXXXXXX\",\"qb-vhost0-t0-XXXXXXXX\",\"qb-vhost1-t0-XXXXXXXX\"],\"id"
	"\":\"t0\",\"kind\":\"nic\",\"netdev\":\"qbnet-t0\",\"node\":\"qbd0944e"
	"e69\",\"op\":\"nic-add\",\"opaque\":\"qmpbroker:t0:XXXXXXXX\",\"phase"
	"\":\"do\",\"slot\":2,\"step\":\"getfd\"}\n"
	"> getfd {\"fdname\":\"qb-vhost0-t0-XXXXXXXX\"} 1\n"
	"J {\"bus\":\"pci.0\",\"fdnames\":[\"qb-tap0-t0-XXXXXXXX\",\"qb-tap1-t0"
	"-XXXXXXXX\",\"qb-vhost0-t0-XXXXXXXX\",\"qb-vhost1-t0-XXXXXXXX\"],\"id"
	"\":\"t0\",\"kind\":\"nic\",\"netdev\":\"qbnet-t0\",\"node\":\"qbd0944e"
	"e69\",\"op\":\"nic-add\",\"opaque\":\"qmpbroker:t0:XXXXXXXX\",\"phase"
	"\":\"do\",\"slot\":2,\"step\":\"getfd\"}\n"
	"> getfd {\"fdname\":\"qb-vhost1-t0-XXXXXXXX\"} 1\n"
	"J {\"bus\":\"pci.0\",\"fdnames\":[\"qb-tap0-t0-XXXXXXXX\",\"qb-tap1-t0"
	"-XXXXXXXX\",\"qb-vhost0-t0-XXXXXXXX\",\"qb-vhost1-t0-XXXXXXXX\"],\"id"
	"\":\"t0\",\"kind\":\"nic\",\"netdev\":\"qbnet-t0\",\"node\":\"qbd0944e"
	"e69\",\"op\":\"nic-add\",\"opaque\":\"qmpbroker:t0:XXXXXXXX\",\"phase"
	"\":\"do\",\"slot\":2,\"step\":\"netdev_add\"}\n"
	"> netdev_add {\"fds\":\"qb-tap0-t0-XXXXXXXX:qb-tap1-t0-XXXXXXXX\",\"id"
	"\":\"qbnet-t0\",\"type\":\"tap\",\"vhost\":true,\"vhostfds\":\"qb-vhos"
	"t0-t0-XXXXXXXX:qb-vhost1-t0-XXXXXXXX\"} 0\n"
	"J {\"bus\":\"pci.0\",\"fdnames\":[\"qb-tap0-t0-XXXXXXXX\",\"qb-tap1-t0"
	"-XXXXXXXX\",\"qb-vhost0-t0-XXXXXXXX\",\"qb-vhost1-t0-XXXXXXXX\"],\"id"
	"\":\"t0\",\"kind\":\"nic\",\"netdev\":\"qbnet-t0\",\"node\":\"qbd0944e"
	"e69\",\"op\":\"nic-add\",\"opaque\":\"qmpbroker:t0:XXXXXXXX\",\"phase"
	"\":\"do\",\"slot\":2,\"step\":\"device_add\"}\n"
	"> device_add {\"addr\":\"0x2\",\"bus\":\"pci.0\",\"driver\":\"virtio-n"
	"et-pci\",\"id\":\"t0\",\"mac\":\"52:54:00:12:34:56\",\"mq\":true,\"net"
	"dev\":\"qbnet-t0\",\"vectors\":6} 0\n"
	"J null\n"
	"L 6 nic-add t0: plugged at pci.0 0x2\n"
	"= ok {\"addr\":\"0x2\",\"bus\":\"pci.0\",\"id\":\"t0\"}\n";

static const char trace_nic_del[] =
	"J {\"fdnames\":[],\"id\":\"t0\",\"kind\":\"nic\",\"netdev\":\"qbnet-t0"
	"\",\"node\":\"qbd0944ee69\",\"op\":\"nic-del\",\"opaque\":\"qmpbroker:"
	"t0:XXXXXXXX\",\"phase\":\"do\",\"step\":\"device_del\"}\n"
	"> device_del {\"id\":\"t0\"} 0\n"
	"J {\"fdnames\":[],\"id\":\"t0\",\"kind\":\"nic\",\"netdev\":\"qbnet-t0"
	"\",\"node\":\"qbd0944ee69\",\"op\":\"nic-del\",\"opaque\":\"qmpbroker:"
	"t0:XXXXXXXX\",\"phase\":\"do\",\"step\":\"netdev_del\"}\n"
	"> netdev_del {\"id\":\"qbnet-t0\"} 0\n"
	"J null\n"
	"L 6 nic-del t0: unplugged\n"
	"= ok {}\n";

static const char trace_nic_lost[] =
	"J {\"fdnames\":[\"qb-tap0-t6-XXXXXXXX\"],\"id\":\"t6\",\"kind\":\"nic"
	"\",\"netdev\":\"qbnet-t6\",\"node\":\"qbd0b44f18f\",\"op\":\"nic-add\""
	",\"opaque\":\"qmpbroker:t6:XXXXXXXX\",\"phase\":\"do\",\"step\":\"quer"
	"y-pci\"}\n"
	"> query-pci - 0\n"
	"> qom-list {\"path\":\"/machine/peripheral\"} 0\n"
	"J {\"bus\":\"pci.0\",\"fdnames\":[\"qb-tap0-t6-XXXXXXXX\"],\"id\":\"t6"
	"\",\"kind\":\"nic\",\"netdev\":\"qbnet-t6\",\"node\":\"qbd0b44f18f\","
	"\"op\":\"nic-add\",\"opaque\":\"qmpbroker:t6:XXXXXXXX\",\"phase\":\"do"
	"\",\"slot\":3,\"step\":\"getfd\"}\n"
	"> getfd {\"fdname\":\"qb-tap0-t6-XXXXXXXX\"} 1\n"
	"J {\"bus\":\"pci.0\",\"fdnames\":[\"qb-tap0-t6-XXXXXXXX\"],\"id\":\"t6"
	"\",\"kind\":\"nic\",\"netdev\":\"qbnet-t6\",\"node\":\"qbd0b44f18f\","
	"\"op\":\"nic-add\",\"opaque\":\"qmpbroker:t6:XXXXXXXX\",\"phase\":\"do"
	"\",\"slot\":3,\"step\":\"netdev_add\"}\n"
	"> netdev_add {\"fd\":\"qb-tap0-t6-XXXXXXXX\",\"id\":\"qbnet-t6\",\"typ"
	"e\":\"tap\"} 0\n"
	"L 5 nic-add t6: netdev_add failed (command timed out), undoing 2 step("
	"s)\n"
	"J {\"bus\":\"pci.0\",\"fdnames\":[\"qb-tap0-t6-XXXXXXXX\"],\"id\":\"t6"
	"\",\"kind\":\"nic\",\"netdev\":\"qbnet-t6\",\"node\":\"qbd0b44f18f\","
	"\"op\":\"nic-add\",\"opaque\":\"qmpbroker:t6:XXXXXXXX\",\"phase\":\"un"
	"do\",\"slot\":3,\"step\":\"netdev_del\"}\n"
	"> netdev_del {\"id\":\"qbnet-t6\"} 0\n"
	"J {\"bus\":\"pci.0\",\"fdnames\":[\"qb-tap0-t6-XXXXXXXX\"],\"id\":\"t6"
	"\",\"kind\":\"nic\",\"netdev\":\"qbnet-t6\",\"node\":\"qbd0b44f18f\","
	"\"op\":\"nic-add\",\"opaque\":\"qmpbroker:t6:XXXXXXXX\",\"phase\":\"un"
	"do\",\"slot\":3,\"step\":\"closefd\"}\n"
	"> closefd {\"fdname\":\"qb-tap0-t6-XXXXXXXX\"} 0\n"
	"J null\n"
	"L 6 nic-add t6: rolled back: command timed out\n"
	"= error {\"class\":\"GenericError\",\"desc\":\"command timed out\"}\n";

static const char trace_disk_lost[] =
	"J {\"fdnames\":[],\"id\":\"t1\",\"kind\":\"disk\",\"netdev\":\"qbnet-t"
	"1\",\"node\":\"qbd0844ecd6\",\"op\":\"disk-add\",\"opaque\":\"qmpbroke"
	"r:t1:XXXXXXXX\",\"phase\":\"do\",\"step\":\"query-pci\"}\n"
	"> query-pci - 0\n"
	"> qom-list {\"path\":\"/machine/peripheral\"} 0\n"
	"J {\"bus\":\"pci.0\",\"fdnames\":[],\"id\":\"t1\",\"kind\":\"disk\",\""
	"netdev\":\"qbnet-t1\",\"node\":\"qbd0844ecd6\",\"op\":\"disk-add\",\"o"
	"paque\":\"qmpbroker:t1:XXXXXXXX\",\"phase\":\"do\",\"slot\":4,\"step\""
	":\"add-fd\"}\n"
	"> add-fd {\"opaque\":\"qmpbroker:t1:XXXXXXXX\"} 1\n"
	"J {\"bus\":\"pci.0\",\"fdnames\":[],\"fdset\":1,\"id\":\"t1\",\"kind\""
	":\"disk\",\"netdev\":\"qbnet-t1\",\"node\":\"qbd0844ecd6\",\"op\":\"di"
	"sk-add\",\"opaque\":\"qmpbroker:t1:XXXXXXXX\",\"phase\":\"do\",\"slot"
	"\":4,\"step\":\"blockdev-add\"}\n"
	"> blockdev-add {\"driver\":\"qcow2\",\"file\":{\"driver\":\"file\",\"f"
	"ilename\":\"/dev/fdset/1\",\"node-name\":\"qbf0844ecd6\",\"read-only\""
	":false},\"node-name\":\"qbd0844ecd6\",\"read-only\":false} 0\n"
	"L 5 disk-add t1: blockdev-add failed (command timed out), undoing 3 st"
	"ep(s)\n"
	"J {\"bus\":\"pci.0\",\"fdnames\":[],\"fdset\":1,\"id\":\"t1\",\"kind\""
	":\"disk\",\"netdev\":\"qbnet-t1\",\"node\":\"qbd0844ecd6\",\"op\":\"di"
	"sk-add\",\"opaque\":\"qmpbroker:t1:XXXXXXXX\",\"phase\":\"undo\",\"slo"
	"t\":4,\"step\":\"blockdev-del\"}\n"
	"> blockdev-del {\"node-name\":\"qbd0844ecd6\"} 0\n"
	"J {\"bus\":\"pci.0\",\"fdnames\":[],\"fdset\":1,\"id\":\"t1\",\"kind\""
	":\"disk\",\"netdev\":\"qbnet-t1\",\"node\":\"qbd0844ecd6\",\"op\":\"di"
	"sk-add\",\"opaque\":\"qmpbroker:t1:XXXXXXXX\",\"phase\":\"undo\",\"slo"
	"t\":4,\"step\":\"blockdev-del\"}\n"
	"> blockdev-del {\"node-name\":\"qbf0844ecd6\"} 0\n"
	"J {\"bus\":\"pci.0\",\"fdnames\":[],\"fdset\":1,\"id\":\"t1\",\"kind\""
	":\"disk\",\"netdev\":\"qbnet-t1\",\"node\":\"qbd0844ecd6\",\"op\":\"di"
	"sk-add\",\"opaque\":\"qmpbroker:t1:XXXXXXXX\",\"phase\":\"undo\",\"slo"
	"t\":4,\"step\":\"remove-fd\"}\n"
	"> query-fdsets - 0\n"
	"> remove-fd {\"fdset-id\":1} 0\n"
	"J null\n"
	"L 6 disk-add t1: rolled back: command timed out\n"
	"= error {\"class\":\"GenericError\",\"desc\":\"command timed out\"}\n";

static const char trace_disk_fail[] =
	"J {\"fdnames\":[],\"id\":\"t2\",\"kind\":\"disk\",\"netdev\":\"qbnet-t"
	"2\",\"node\":\"qbd0744eb43\",\"op\":\"disk-add\",\"opaque\":\"qmpbroke"
	"r:t2:XXXXXXXX\",\"phase\":\"do\",\"step\":\"query-pci\"}\n"
	"> query-pci - 0\n"
	"> qom-list {\"path\":\"/machine/peripheral\"} 0\n"
	"J {\"bus\":\"pci.0\",\"fdnames\":[],\"id\":\"t2\",\"kind\":\"disk\",\""
	"netdev\":\"qbnet-t2\",\"node\":\"qbd0744eb43\",\"op\":\"disk-add\",\"o"
	"paque\":\"qmpbroker:t2:XXXXXXXX\",\"phase\":\"do\",\"slot\":9,\"step\""
	":\"add-fd\"}\n"
	"> add-fd {\"opaque\":\"qmpbroker:t2:XXXXXXXX\"} 1\n"
	"J {\"bus\":\"pci.0\",\"fdnames\":[],\"fdset\":2,\"id\":\"t2\",\"kind\""
	":\"disk\",\"netdev\":\"qbnet-t2\",\"node\":\"qbd0744eb43\",\"op\":\"di"
	"sk-add\",\"opaque\":\"qmpbroker:t2:XXXXXXXX\",\"phase\":\"do\",\"slot"
	"\":9,\"step\":\"blockdev-add\"}\n"
	"> blockdev-add {\"driver\":\"raw\",\"file\":{\"driver\":\"host_device"
	"\",\"filename\":\"/dev/fdset/2\",\"node-name\":\"qbf0744eb43\",\"read-"
	"only\":true},\"node-name\":\"qbd0744eb43\",\"read-only\":true} 0\n"
	"J {\"bus\":\"pci.0\",\"fdnames\":[],\"fdset\":2,\"id\":\"t2\",\"kind\""
	":\"disk\",\"netdev\":\"qbnet-t2\",\"node\":\"qbd0744eb43\",\"op\":\"di"
	"sk-add\",\"opaque\":\"qmpbroker:t2:XXXXXXXX\",\"phase\":\"do\",\"slot"
	"\":9,\"step\":\"remove-fd\"}\n"
	"> remove-fd {\"fdset-id\":2} 0\n"
	"J {\"bus\":\"pci.0\",\"fdnames\":[],\"fdset\":2,\"id\":\"t2\",\"kind\""
	":\"disk\",\"netdev\":\"qbnet-t2\",\"node\":\"qbd0744eb43\",\"op\":\"di"
	"sk-add\",\"opaque\":\"qmpbroker:t2:XXXXXXXX\",\"phase\":\"do\",\"slot"
	"\":9,\"step\":\"device_add\"}\n"
	"> device_add {\"addr\":\"0x9\",\"bus\":\"pci.0\",\"drive\":\"qbd0744eb"
	"43\",\"driver\":\"virtio-blk-pci\",\"id\":\"t2\"} 0\n"
	"L 5 disk-add t2: device_add failed (injected device_add), undoing 3 st"
	"ep(s)\n"
	"J {\"bus\":\"pci.0\",\"fdnames\":[],\"fdset\":2,\"id\":\"t2\",\"kind\""
	":\"disk\",\"netdev\":\"qbnet-t2\",\"node\":\"qbd0744eb43\",\"op\":\"di"
	"sk-add\",\"opaque\":\"qmpbroker:t2:XXXXXXXX\",\"phase\":\"undo\",\"slo"
	"t\":9,\"step\":\"device_del\"}\n"
	"> device_del {\"id\":\"t2\"} 0\n"
	"J {\"bus\":\"pci.0\",\"fdnames\":[],\"fdset\":2,\"id\":\"t2\",\"kind\""
	":\"disk\",\"netdev\":\"qbnet-t2\",\"node\":\"qbd0744eb43\",\"op\":\"di"
	"sk-add\",\"opaque\":\"qmpbroker:t2:XXXXXXXX\",\"phase\":\"undo\",\"slo"
	"t\":9,\"step\":\"blockdev-del\"}\n"
	"> blockdev-del {\"node-name\":\"qbd0744eb43\"} 0\n"
	"J {\"bus\":\"pci.0\",\"fdnames\":[],\"fdset\":2,\"id\":\"t2\",\"kind\""
	":\"disk\",\"netdev\":\"qbnet-t2\",\"node\":\"qbd0744eb43\",\"op\":\"di"
	"sk-add\",\"opaque\":\"qmpbroker:t2:XXXXXXXX\",\"phase\":\"undo\",\"slo"
	"t\":9,\"step\":\"blockdev-del\"}\n"
	"> blockdev-del {\"node-name\":\"qbf0744eb43\"} 0\n"
	"J null\n"
	"L 6 disk-add t2: rolled back: injected device_add\n"
	"= error {\"class\":\"GenericError\",\"desc\":\"injected device_add\"}"
	"\n";

static const char trace_disk_add_del[] =
	"J {\"bus\":\"scsi0.0\",\"fdnames\":[],\"id\":\"t3\",\"kind\":\"disk\","
	"\"netdev\":\"qbnet-t3\",\"node\":\"qbd0644e9b0\",\"op\":\"disk-add\","
	"\"opaque\":\"qmpbroker:t3:XXXXXXXX\",\"phase\":\"do\",\"slot\":-1,\"st"
	"ep\":\"blockdev-add\"}\n"
	"> blockdev-add {\"driver\":\"raw\",\"file\":{\"driver\":\"nbd\",\"expo"
	"rt\":\"e\",\"node-name\":\"qbf0644e9b0\",\"read-only\":false,\"server"
	"\":{\"path\":\"/run/nbd.sock\",\"type\":\"unix\"}},\"node-name\":\"qbd"
	"0644e9b0\",\"read-only\":false} 0\n"
	"J {\"bus\":\"scsi0.0\",\"fdnames\":[],\"id\":\"t3\",\"kind\":\"disk\","
	"\"netdev\":\"qbnet-t3\",\"node\":\"qbd0644e9b0\",\"op\":\"disk-add\","
	"\"opaque\":\"qmpbroker:t3:XXXXXXXX\",\"phase\":\"do\",\"slot\":-1,\"st"
	"ep\":\"device_add\"}\n"
	"> device_add {\"bus\":\"scsi0.0\",\"drive\":\"qbd0644e9b0\",\"driver\""
	":\"scsi-hd\",\"id\":\"t3\"} 0\n"
	"J null\n"
	"L 6 disk-add t3: plugged at scsi0.0 0xfffff\n"
	"= ok {\"addr\":\"0xfffff\",\"bus\":\"scsi0.0\",\"id\":\"t3\"}\n"
	"J {\"fdnames\":[],\"id\":\"t3\",\"kind\":\"disk\",\"netdev\":\"qbnet-t"
	"3\",\"node\":\"qbd0644e9b0\",\"op\":\"disk-del\",\"opaque\":\"qmpbroke"
	"r:t3:XXXXXXXX\",\"phase\":\"do\",\"step\":\"device_del\"}\n"
	"> device_del {\"id\":\"t3\"} 0\n"
	"J {\"fdnames\":[],\"id\":\"t3\",\"kind\":\"disk\",\"netdev\":\"qbnet-t"
	"3\",\"node\":\"qbd0644e9b0\",\"op\":\"disk-del\",\"opaque\":\"qmpbroke"
	"r:t3:XXXXXXXX\",\"phase\":\"do\",\"step\":\"blockdev-del\"}\n"
	"> blockdev-del {\"node-name\":\"qbd0644e9b0\"} 0\n"
	"J {\"fdnames\":[],\"id\":\"t3\",\"kind\":\"disk\",\"netdev\":\"qbnet-t"
	"3\",\"node\":\"qbd0644e9b0\",\"op\":\"disk-del\",\"opaque\":\"qmpbroke"
	"r:t3:XXXXXXXX\",\"phase\":\"do\",\"step\":\"blockdev-del\"}\n"
	"> blockdev-del {\"node-name\":\"qbf0644e9b0\"} 0\n"
	"J null\n"
	"L 6 disk-del t3: unplugged\n"
	"= ok {}\n";

static const char trace_reconcile[] =
	"> qom-list {\"path\":\"/machine/peripheral\"} 0\n"
	"L 5 journal: disk-add t4 was interrupted; device absent: undone\n"
	"= ok {\"action\":\"undone\",\"id\":\"t4\"}\n"
	"J {\"fdnames\":[],\"id\":\"t4\",\"kind\":\"disk\",\"netdev\":\"qbnet-t"
	"4\",\"node\":\"qbd9\",\"op\":\"disk-add\",\"opaque\":\"qmpbroker:t4:XX"
	"XXXXXX\",\"phase\":\"undo\",\"step\":\"blockdev-del\"}\n"
	"> blockdev-del {\"node-name\":\"qbd9\"} 0\n"
	"J {\"fdnames\":[],\"id\":\"t4\",\"kind\":\"disk\",\"netdev\":\"qbnet-t"
	"4\",\"node\":\"qbd9\",\"op\":\"disk-add\",\"opaque\":\"qmpbroker:t4:XX"
	"XXXXXX\",\"phase\":\"undo\",\"step\":\"blockdev-del\"}\n"
	"> blockdev-del {\"node-name\":\"qbf0d44f4b5\"} 0\n"
	"J {\"fdnames\":[],\"id\":\"t4\",\"kind\":\"disk\",\"netdev\":\"qbnet-t"
	"4\",\"node\":\"qbd9\",\"op\":\"disk-add\",\"opaque\":\"qmpbroker:t4:XX"
	"XXXXXX\",\"phase\":\"undo\",\"step\":\"remove-fd\"}\n"
	"> query-fdsets - 0\n"
	"> remove-fd {\"fdset-id\":17} 0\n"
	"J null\n"
	"L 6 disk-add t4: journal reconciled\n"
	"> qom-list {\"path\":\"/machine/peripheral\"} 0\n"
	"L 5 journal: nic-del t5 was interrupted; device absent: finished\n"
	"= ok {\"action\":\"finished\",\"id\":\"t5\"}\n"
	"J {\"fdnames\":[],\"id\":\"t5\",\"kind\":\"nic\",\"netdev\":\"qbnet-t5"
	"\",\"node\":\"qbd0c44f322\",\"op\":\"nic-del\",\"opaque\":\"qmpbroker:"
	"t5:XXXXXXXX\",\"phase\":\"undo\",\"step\":\"netdev_del\"}\n"
	"> netdev_del {\"id\":\"qbnet-t5\"} 0\n"
	"J null\n"
	"L 6 nic-del t5: unplugged (after the request timed out)\n";

/* What goes to QEMU and to the journal, to the byte: the commands, their
   arguments and order, and the journal records that a restarted broker
   reads back, for adds, dels, rollbacks and reconciliation. */
/* CPUs and DIMMs: limits refused before any change, and a failure
   undoes what the operation did. */
static void
test_cpu_mem(void **state)
{
	struct hp_vm	*vm;
	struct hp_cpu	 c;
	struct hp_mem	 m;
	struct result	 r = { 0 };
	int		 i;

	model_reset();
	vm = new_vm(1000);
	memset(&c, 0, sizeof c);
	c.count = 2;

	/* the second CPU's device_add fails: the first is unplugged */
	snprintf(fail_cmd, sizeof fail_cmd, "device_add");
	fail_nth = 2;
	hp_cpu_add(vm, &c, done_cb, &r);
	run_until(&r, 1);
	assert_false(r.ok);
	assert_string_equal(r.err.desc, "injected device_add");
	i = find_call("device_add", 0);
	assert_true(i >= 0);
	assert_string_equal(json_string_value(json_object_get(call_args(i),
	    "id")), "cpu-0-1-0");
	assert_string_equal(json_string_value(json_object_get(call_args(i),
	    "driver")), "qemu64-x86_64-cpu");
	assert_int_equal(json_integer_value(json_object_get(call_args(i),
	    "core-id")), 1);
	/* the failed one's own undo first (its reply may have been lost
	   after QEMU acted), then the first CPU's */
	i = find_call("device_del", 0);
	assert_true(i >= 0);
	assert_string_equal(json_string_value(json_object_get(call_args(i),
	    "id")), "cpu-0-2-0");
	i = find_call("device_del", 1);
	assert_true(i >= 0);
	assert_string_equal(json_string_value(json_object_get(call_args(i),
	    "id")), "cpu-0-1-0");
	assert_int_equal(json_object_size(set_of("devices")), 0);
	fail_cmd[0] = '\0';
	seen_nth = 0;
	fail_nth = 1;

	/* both in, then the last plugged out; a third is past maxcpus */
	hp_cpu_add(vm, &c, done_cb, &r);
	run_until(&r, 2);
	assert_true(r.ok);
	assert_int_equal(json_array_size(json_object_get(r.ret, "ids")), 2);
	c.count = 1;
	hp_cpu_add(vm, &c, done_cb, &r);
	run_until(&r, 3);
	assert_false(r.ok);
	assert_memory_equal(r.err.desc, "maxcpus:", 8);
	hp_cpu_del(vm, &c, done_cb, &r);
	run_until(&r, 4);
	assert_true(r.ok);
	assert_string_equal(json_string_value(json_array_get(json_object_get(
	    r.ret, "ids"), 0)), "cpu-0-2-0");
	assert_int_equal(json_object_size(set_of("devices")), 1);

	/* a size off the memory block: refused, nothing sent */
	json_array_clear(calls);
	memset(&m, 0, sizeof m);
	snprintf(m.id, sizeof m.id, "d1");
	m.node = -1;
	m.size = 100LL << 20;
	hp_mem_add(vm, &m, done_cb, &r);
	run_until(&r, 5);
	assert_false(r.ok);
	assert_int_equal(json_array_size(calls), 0);
	/* past maxmem (256 MiB left): read, then refused unchanged */
	m.size = 384LL << 20;
	hp_mem_add(vm, &m, done_cb, &r);
	run_until(&r, 6);
	assert_false(r.ok);
	assert_memory_equal(r.err.desc, "maxmem:", 7);
	assert_int_equal(find_call("object-add", 0), -1);
	/* device_add fails: the backend goes again */
	m.size = 128LL << 20;
	snprintf(fail_cmd, sizeof fail_cmd, "device_add");
	hp_mem_add(vm, &m, done_cb, &r);
	run_until(&r, 7);
	assert_false(r.ok);
	assert_true(find_call("object-del", 0) > find_call("object-add", 0));
	assert_int_equal(json_object_size(set_of("objects")), 0);
	fail_cmd[0] = '\0';
	seen_nth = 0;
	/* in, then out with its backend */
	hp_mem_add(vm, &m, done_cb, &r);
	run_until(&r, 8);
	assert_true(r.ok);
	assert_int_equal(json_object_size(set_of("objects")), 1);
	hp_del(vm, HP_MEM, "d1", done_cb, &r);
	run_until(&r, 9);
	assert_true(r.ok);
	assert_int_equal(json_object_size(set_of("objects")), 0);
	assert_null(json_object_get(set_of("devices"), "d1"));
	json_decref(r.ret);
	free_vm(vm);
}

/* The value of the nth qom-set, or -1. */
static long long
qom_set_value(int nth)
{
	int	i = find_call("qom-set", nth);

	return (i < 0 ? -1 : json_integer_value(json_object_get(call_args(i),
	    "value")));
}

/* mem-resize: the size event before or after qom-set's reply, none
   needed, none coming (undone after the timeout), qom-set failing. */
static void
test_mem_resize(void **state)
{
	struct hp_vm	*vm;
	struct result	 r = { 0 };
	int		 i;

	model_reset();
	vm = new_vm(1000);
	json_object_set_new(set_of("vmem"), "v1", json_pack("{s:i, s:i, s:I}",
	    "size", 0, "requested-size", 0, "max-size", (json_int_t)256 << 20));
	resize_mode = 1;
	hp_mem_resize(vm, "v1", 128 << 20, 0, done_cb, &r);
	run_until(&r, 1);
	assert_true(r.ok);
	assert_int_equal(json_integer_value(json_object_get(r.ret, "size")),
	    128 << 20);
	resize_mode = 0;
	hp_mem_resize(vm, "v1", 64 << 20, 0, done_cb, &r);
	run_until(&r, 2);
	assert_true(r.ok);
	/* nothing to change: nothing sent */
	json_array_clear(calls);
	hp_mem_resize(vm, "v1", 64 << 20, 0, done_cb, &r);
	run_until(&r, 3);
	assert_true(r.ok);
	assert_int_equal(find_call("qom-set", 0), -1);
	/* off the block, past max-size, not virtio-mem: read, refused */
	hp_mem_resize(vm, "v1", 3 << 20, 0, done_cb, &r);
	run_until(&r, 4);
	assert_false(r.ok);
	hp_mem_resize(vm, "v1", 512 << 20, 0, done_cb, &r);
	run_until(&r, 5);
	assert_false(r.ok);
	hp_mem_resize(vm, "v2", 0, 0, done_cb, &r);
	run_until(&r, 6);
	assert_false(r.ok);
	assert_int_equal(find_call("qom-set", 0), -1);
	/* the guest never follows: set back after the timeout */
	resize_mode = 2;
	hp_mem_resize(vm, "v1", 256 << 20, 5, done_cb, &r);
	for (i = 0; i < 1000 && r.n < 7; i++)
		event_base_loop(base, EVLOOP_ONCE);
	assert_int_equal(r.n, 7);
	assert_false(r.ok);
	assert_non_null(strstr(r.err.desc, "did not follow within 5 ms: it "
	    "has 64 MiB of the 256 MiB requested"));
	assert_true(qom_set_value(0) == 256 << 20);
	assert_true(qom_set_value(1) == 64 << 20);
	assert_true(qom_set_value(2) == -1);
	/* qom-set fails: its undo, which tolerates it, then the error */
	resize_mode = 0;
	json_array_clear(calls);
	snprintf(fail_cmd, sizeof fail_cmd, "qom-set");
	seen_nth = 0;
	hp_mem_resize(vm, "v1", 128 << 20, 0, done_cb, &r);
	run_until(&r, 8);
	assert_false(r.ok);
	assert_string_equal(r.err.desc, "injected qom-set");
	assert_true(qom_set_value(1) == 64 << 20);
	json_decref(r.ret);
	free_vm(vm);
}

static void
test_transcripts(void **state)
{
	struct hp_vm	*vm;
	struct hp_nic	 nic;
	struct hp_disk	 dk;
	struct result	 r = { 0 };
	json_t		*rec;

	model_reset();
	trace = json_array();
	vm = new_vm(1000);
	nic_init(&nic, "t0", 2, true);
	snprintf(nic.mac, sizeof nic.mac, "52:54:00:12:34:56");
	hp_nic_add(vm, &nic, done_cb, &r);
	run_until(&r, 1);
	assert_true(r.ok);
	trace_check("nic-add", trace_nic_add);
	hp_del(vm, HP_NIC, "t0", done_cb, &r);
	run_until(&r, 2);
	assert_true(r.ok);
	trace_check("nic-del", trace_nic_del);

	/* netdev_add's reply lost after QEMU acted: netdev and fds undone */
	snprintf(fail_cmd, sizeof fail_cmd, "netdev_add");
	fail_lost = 1;
	nic_init(&nic, "t6", 1, false);
	hp_nic_add(vm, &nic, done_cb, &r);
	run_until(&r, 3);
	assert_false(r.ok);
	run_idle();
	trace_check("nic-add lost netdev_add", trace_nic_lost);
	seen_nth = 0;

	/* add-fd went, blockdev-add's reply was lost after QEMU acted */
	snprintf(fail_cmd, sizeof fail_cmd, "blockdev-add");
	fail_lost = 1;
	memset(&dk, 0, sizeof dk);
	snprintf(dk.id, sizeof dk.id, "t1");
	snprintf(dk.format, sizeof dk.format, "qcow2");
	dk.slot = -1;
	fd_pair(&dk.fd, 1);
	hp_disk_add(vm, &dk, done_cb, &r);
	run_until(&r, 4);
	assert_false(r.ok);
	run_idle();
	trace_check("disk-add lost blockdev-add", trace_disk_lost);

	/* device_add refused: everything after add-fd is undone */
	snprintf(fail_cmd, sizeof fail_cmd, "device_add");
	fail_lost = 0;
	seen_nth = 0;
	memset(&dk, 0, sizeof dk);
	snprintf(dk.id, sizeof dk.id, "t2");
	dk.readonly = true;
	dk.slot = 9;
	snprintf(dk.bus, sizeof dk.bus, "pci.0");
	fd_pair(&dk.fd, 1);
	dk.blkdev = true;
	hp_disk_add(vm, &dk, done_cb, &r);
	run_until(&r, 5);
	assert_false(r.ok);
	run_idle();
	trace_check("disk-add failed device_add", trace_disk_fail);

	/* a network source on a SCSI bus: no fd, no slot map */
	fail_cmd[0] = '\0';
	memset(&dk, 0, sizeof dk);
	snprintf(dk.id, sizeof dk.id, "t3");
	snprintf(dk.driver, sizeof dk.driver, "scsi-hd");
	snprintf(dk.bus, sizeof dk.bus, "scsi0.0");
	dk.fd = -1;
	dk.slot = -1;
	dk.node = json_pack("{s:s, s:{s:s, s:s}, s:s}", "driver", "nbd",
	    "server", "type", "unix", "path", "/run/nbd.sock", "export", "e");
	hp_disk_add(vm, &dk, done_cb, &r);
	run_until(&r, 6);
	assert_true(r.ok);
	hp_del(vm, HP_DISK, "t3", done_cb, &r);
	run_until(&r, 7);
	assert_true(r.ok);
	trace_check("disk-add and disk-del", trace_disk_add_del);

	/* a dead broker's disk-add without its device: undone */
	json_object_set_new(set_of("nodes"), "qbd9", json_object());
	json_object_set_new(set_of("fdsets"), "17", json_pack("{s:s}",
	    "opaque", "qmpbroker:t4:0badcafe"));
	rec = json_pack("{s:s, s:s, s:s, s:s, s:s, s:[]}", "op", "disk-add",
	    "id", "t4", "kind", "disk", "node", "qbd9", "opaque",
	    "qmpbroker:t4:0badcafe", "fdnames");
	hp_reconcile(vm, rec, done_cb, &r);
	run_until(&r, 8);
	run_idle();
	json_decref(rec);
	/* and a nic-del whose device is gone: its backend goes */
	json_object_set_new(set_of("netdevs"), "qbnet-t5", json_object());
	rec = json_pack("{s:s, s:s, s:s, s:s, s:[]}", "op", "nic-del", "id",
	    "t5", "kind", "nic", "netdev", "qbnet-t5", "fdnames");
	hp_reconcile(vm, rec, done_cb, &r);
	run_until(&r, 9);
	run_idle();
	json_decref(rec);
	trace_check("reconcile", trace_reconcile);
	assert_int_equal(hp_vm_busy(vm), 0);
	free_vm(vm);
	json_decref(r.ret);
	json_decref(trace);
	trace = NULL;
}

static int
setup(void **state)
{
	char		 path[1024];
	const char	*src = getenv("QB_SRCDIR");
	json_t		*t;

	base = event_base_new();
	snprintf(path, sizeof path, "%s/tests/data/qemu72-pc-running.json",
	    src != NULL ? src : ".");
	t = json_load_file(path, 0, NULL);
	if (t == NULL)
		return (-1);
	rec_pci = json_incref(json_object_get(t, "query-pci"));
	rec_periph = json_incref(json_object_get(t,
	    "qom-list /machine/peripheral"));
	json_decref(t);
	return (0);
}

static int
teardown(void **state)
{
	json_decref(rec_pci);
	json_decref(rec_periph);
	json_decref(model);
	json_decref(calls);
	json_decref(journal);
	json_decref(unplugged);
	json_decref(missing_cmds);
	/* what hp_vm_free and vmq_free left for a later pass */
	defer_flush();
	event_base_free(base);
	return (0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_nic_add),
		cmocka_unit_test(test_nic_mq_vhost),
		cmocka_unit_test(test_nic_faults),
		cmocka_unit_test(test_disk_add),
		cmocka_unit_test(test_disk_faults),
		cmocka_unit_test(test_unplug_pending),
		cmocka_unit_test(test_deleted_before_reply),
		cmocka_unit_test(test_gate_and_refusals),
		cmocka_unit_test(test_concurrent),
		cmocka_unit_test(test_vm_free_inflight),
		cmocka_unit_test(test_vmq_removed),
		cmocka_unit_test(test_reconcile),
		cmocka_unit_test(test_transcripts),
		cmocka_unit_test(test_cpu_mem),
		cmocka_unit_test(test_mem_resize),
	};

	return (cmocka_run_group_tests(tests, setup, teardown));
}
