/*
 * Domains libvirt runs, as VMs of the broker: their QMP goes through
 * libvirt-qemu (virDomainQemuMonitorCommand on a worker, monitor events
 * from libvirt's event loop on ours), behind a VM endpoint's backend
 * interface (hv/vmq.h), so vm-execute, hotplug, subscriptions, shared
 * sockets and query-vms treat them as socket VMs.
 *
 * Only drivers that run QEMU take part (not test://). A domain is a VM
 * while its QEMU runs: added when it starts (or is found running when the
 * connection opens), "negotiating" until query-version and query-commands
 * have answered, removed when it stops. A lost connection marks them
 * disconnected; the reopen rediscovers them.
 *
 * The libvirt connection itself lives here too (domain_init): its
 * libvirt-qemu events are these VMs' events, and it is reopened with a
 * backoff when lost.
 */
#include "config.h"

#include <sys/queue.h>

#include <stdlib.h>
#include <string.h>

#include "broker/core/bus.h"
#include "broker/core/conf.h"
#include "broker/core/job.h"
#include "broker/core/log.h"
#include "broker/core/loop.h"
#include "broker/core/work.h"
#include "broker/svc/domain.h"
#include "broker/vm/vm.h"
#include "hv/virt.h"
#include "hv/vmq.h"

struct lv_vm {
	struct vm		*vm;
	struct qmp_version	 ver;
	bool			 have_ver;
	json_t			*commands;	/* {name: true} */
	bool			 negotiating;
	LIST_ENTRY(lv_vm)	 entry;
	char			 name[];
};
static LIST_HEAD(, lv_vm)	lv_all = LIST_HEAD_INITIALIZER(lv_all);
static bool			lv_listing;

static struct lv_vm *
lv_find(const char *name)
{
	struct lv_vm	*l;

	LIST_FOREACH(l, &lv_all, entry)
		if (strcmp(l->name, name) == 0)
			return (l);
	return (NULL);
}

/* ---- commands through libvirt-qemu ---- */

struct lv_call {
	char			*domain;
	char			*cmd;
	json_t			*reply;
	struct qmp_error	 err;
	vmq_reply_fn		*fn;
	void			*cbarg;
};

static void
lv_call_fn(void *arg)
{
	struct lv_call	*c = arg;

	c->reply = virt_qemu_command(c->domain, c->cmd, &c->err);
}

static void
lv_call_finish(struct lv_call *c)
{
	struct qmp_error	 err;
	json_t			*e;

	if (c->reply == NULL)
		c->fn(NULL, &c->err, c->cbarg);
	else if ((e = json_object_get(c->reply, "error")) != NULL) {
		qmp_error_from_json(&err, e);
		c->fn(NULL, &err, c->cbarg);
	} else
		c->fn(json_object_get(c->reply, "return"), NULL, c->cbarg);
	json_decref(c->reply);
	free(c->domain);
	free(c->cmd);
	free(c);
}

static void
lv_call_done(void *arg, bool ran)
{
	struct lv_call	*c = arg;

	if (!ran) {
		json_decref(c->reply);
		c->reply = NULL;
		qmp_error_set(&c->err, QMP_CLS_GENERIC,
		    "broker shutting down");
	}
	lv_call_finish(c);
}

static void
lv_call_later(evutil_socket_t fd, short what, void *arg)
{
	lv_call_finish(arg);
}

static void
lv_execute(struct vmq *q, void *arg, const char *cmd, json_t *args,
    const int *fds, size_t nfds, vmq_reply_fn *fn, void *cbarg)
{
	struct timeval	 tv = { 0, 0 };
	struct lv_call	*c;
	json_t		*msg;

	if ((c = calloc(1, sizeof *c)) == NULL) {
		log_err("vm %s: out of memory, command %s lost", vmq_name(q),
		    cmd);
		json_decref(args);
		return;
	}
	c->fn = fn;
	c->cbarg = cbarg;
	c->domain = strdup(vmq_name(q));
	msg = json_pack("{s:s}", "execute", cmd);
	if (msg != NULL && args != NULL)
		json_object_set(msg, "arguments", args);
	json_decref(args);
	if (msg != NULL)
		c->cmd = json_dumps(msg, JSON_COMPACT);
	json_decref(msg);

	if (nfds > 0)
		qmp_error_set(&c->err, QMP_CLS_GENERIC, "VM '%s' runs under "
		    "libvirt: passing fds is not supported", vmq_name(q));
	else if (c->domain == NULL || c->cmd == NULL)
		qmp_error_set(&c->err, QMP_CLS_GENERIC, "out of memory");
	else if (work_submit(lv_call_fn, lv_call_done, c) != NULL)
		return;
	else
		qmp_error_set(&c->err, QMP_CLS_GENERIC,
		    "broker shutting down");
	/* Never from inside the call. */
	if (event_base_once(loop_base, -1, EV_TIMEOUT, lv_call_later, c,
	    &tv) == -1)
		log_err("vm %s: cannot schedule a reply", vmq_name(q));
}

static const struct qmp_version *
lv_version(void *arg)
{
	struct lv_vm	*l = arg;

	return (l->have_ver ? &l->ver : NULL);
}

static bool
lv_has_command(void *arg, const char *cmd)
{
	struct lv_vm	*l = arg;

	return (l->commands != NULL && json_object_get(l->commands, cmd) != NULL);
}

static void
lv_gone(void *arg)
{
	struct lv_vm	*l = arg;

	LIST_REMOVE(l, entry);
	json_decref(l->commands);
	free(l);
}

static const struct vmq_backend lv_backend = {
	lv_execute, lv_version, lv_has_command, lv_gone
};

/* ---- negotiation: what a monitor learns from its greeting ---- */

struct lv_nego {
	char			*domain;
	json_t			*version;
	json_t			*commands;
	struct qmp_error	 err;
};

static void
lv_nego_fn(void *arg)
{
	struct lv_nego	*n = arg;

	n->version = virt_qemu_command(n->domain,
	    "{\"execute\":\"query-version\"}", &n->err);
	if (n->version != NULL)
		n->commands = virt_qemu_command(n->domain,
		    "{\"execute\":\"query-commands\"}", &n->err);
}

static void
lv_nego_done(void *arg, bool ran)
{
	struct lv_nego	*n = arg;
	struct lv_vm	*l = lv_find(n->domain);
	json_t		*ret, *c;
	size_t		 i;

	if (l != NULL && l->vm != NULL)
		l->negotiating = false;
	if (l == NULL || l->vm == NULL || !ran)
		goto out;
	if (n->commands == NULL) {
		vmq_backend_state(vm_vmq(l->vm), MON_DISCONNECTED, n->err.desc);
		goto out;
	}
	ret = json_object_get(json_object_get(n->version, "return"), "qemu");
	l->ver.major = json_integer_value(json_object_get(ret, "major"));
	l->ver.minor = json_integer_value(json_object_get(ret, "minor"));
	l->ver.micro = json_integer_value(json_object_get(ret, "micro"));
	snprintf(l->ver.package, sizeof l->ver.package, "%s",
	    json_string_value(json_object_get(json_object_get(n->version,
	    "return"), "package")) ?: "");
	l->have_ver = true;
	json_decref(l->commands);
	l->commands = json_object();
	json_array_foreach(json_object_get(n->commands, "return"), i, c)
		if (json_is_string(json_object_get(c, "name")))
			json_object_set_new(l->commands, json_string_value(
			    json_object_get(c, "name")), json_true());
	vmq_backend_state(vm_vmq(l->vm), MON_READY, NULL);
out:
	json_decref(n->version);
	json_decref(n->commands);
	free(n->domain);
	free(n);
}

static void
lv_negotiate(struct lv_vm *l)
{
	struct lv_nego	*n;

	if (l->negotiating || (n = calloc(1, sizeof *n)) == NULL)
		return;
	if ((n->domain = strdup(l->name)) == NULL) {
		free(n);
		return;
	}
	vmq_backend_state(vm_vmq(l->vm), MON_NEGOTIATING, NULL);
	if (work_submit(lv_nego_fn, lv_nego_done, n) == NULL) {
		free(n->domain);
		free(n);
		return;
	}
	l->negotiating = true;
}

/* ---- which domains are VMs ---- */

static void
lv_running(const char *domain)
{
	struct qmp_error	 err;
	struct lv_vm		*l;
	char			 where[512];
	size_t			 len = strlen(domain);

	if (!virt_has_qemu())
		return;
	if ((l = lv_find(domain)) != NULL) {
		if (vm_state(l->vm) != MON_READY)
			lv_negotiate(l);
		return;
	}
	if (!conf_vm_name_valid(domain) || vm_find(domain) != NULL) {
		log_debug("libvirt domain %s: not a VM (name invalid or taken)",
		    domain);
		return;
	}
	if ((l = calloc(1, sizeof *l + len + 1)) == NULL)
		return;
	memcpy(l->name, domain, len + 1);
	snprintf(where, sizeof where, "libvirt:%s", virt_uri());
	if ((l->vm = vm_add_backend(domain, where, &lv_backend, l,
	    &err)) == NULL) {
		log_warn("libvirt domain %s: %s", domain, err.desc);
		free(l);
		return;
	}
	LIST_INSERT_HEAD(&lv_all, l, entry);
	lv_negotiate(l);
}

static void
lv_stopped(const char *domain)
{
	struct lv_vm	*l;

	if ((l = lv_find(domain)) != NULL && l->vm != NULL)
		vm_remove(l->vm);	/* lv_gone frees l, inside */
}

static void
virt_vm_lifecycle(const char *domain, bool running)
{
	if (running)
		lv_running(domain);
	else
		lv_stopped(domain);
}

struct lv_list {
	json_t			*domains;
	struct qmp_error	 err;
};

static void
lv_list_fn(void *arg)
{
	struct lv_list	*ll = arg;

	ll->domains = virt_list_domains(&ll->err);
}

static void
lv_list_done(void *arg, bool ran)
{
	struct lv_list	*ll = arg;
	struct lv_vm	*l, *l1;
	json_t		*d, *live, *v;
	size_t		 i;
	const char	*st, *name;

	lv_listing = false;
	if (ran && ll->domains != NULL) {
		live = json_object();
		json_array_foreach(ll->domains, i, d) {
			st = json_string_value(json_object_get(d, "state"));
			if (st != NULL && strcmp(st, "shutoff") != 0 &&
			    strcmp(st, "crashed") != 0)
				json_object_set_new(live, json_string_value(
				    json_object_get(d, "name")), json_true());
		}
		for (l = LIST_FIRST(&lv_all); l != NULL; l = l1) {
			l1 = LIST_NEXT(l, entry);
			if (json_object_get(live, l->name) == NULL)
				lv_stopped(l->name);
		}
		json_object_foreach(live, name, v)
			lv_running(name);
		json_decref(live);
	}
	json_decref(ll->domains);
	free(ll);
}

static void
virt_vm_opened(void)
{
	struct lv_list	*ll;

	if (lv_listing || !virt_has_qemu() ||
	    (ll = calloc(1, sizeof *ll)) == NULL)
		return;
	if (work_submit(lv_list_fn, lv_list_done, ll) == NULL) {
		free(ll);
		return;
	}
	lv_listing = true;
}

static void
virt_vm_lost(const char *why)
{
	struct lv_vm	*l;

	LIST_FOREACH(l, &lv_all, entry)
		if (l->vm != NULL)
			vmq_backend_state(vm_vmq(l->vm), MON_DISCONNECTED, why);
}

/* Returns false if no VM took the event (the caller publishes it). */
static bool
virt_vm_event(const char *domain, const char *event, long long seconds,
    unsigned micros, json_t *data)
{
	struct lv_vm	*l;
	json_t		*ev;

	if ((l = lv_find(domain)) == NULL || l->vm == NULL)
		return (false);
	ev = json_pack("{s:s,s:o,s:{s:I,s:I}}", "event", event,
	    "data", data != NULL ? json_incref(data) : json_object(),
	    "timestamp",
	    "seconds", (json_int_t)seconds, "microseconds",
	    (json_int_t)micros);
	if (ev == NULL)
		return (false);
	vmq_backend_event(vm_vmq(l->vm), ev);
	json_decref(ev);
	return (true);
}

#define DOM_RECONNECT_MIN_MS	500
#define DOM_RECONNECT_MAX_MS	30000

/* ---- the connection: events from libvirt-qemu, reconnect on loss ---- */

static struct event	*dom_reconnect_ev;
static int		 dom_reconnect_ms;
static bool		 dom_reconnecting;

static void
dom_qemu_event(const char *domain, const char *event, long long seconds,
    unsigned micros, json_t *data, void *arg)
{
	/* The domain's QMP events reach subscribers as its VM's: through
	   the registry when the domain is a VM, directly otherwise. */
	if (!virt_vm_event(domain, event, seconds, micros, data))
		bus_publish(domain, event, data != NULL ? json_incref(data) :
		    NULL);
}

static void
dom_opened(void *arg)
{
	virt_vm_opened();
}

static void
dom_lifecycle(const char *domain, bool running, void *arg)
{
	virt_vm_lifecycle(domain, running);
}

static void	dom_reconnect_later(void);

static void
dom_connect_fn(void *arg)
{
	struct qmp_error	*err = arg;

	if (virt_connect(err) == 0)
		err->cls[0] = '\0';
}

static void
dom_connect_done(void *arg, bool ran)
{
	struct qmp_error	*err = arg;
	bool			 failed = ran && err->cls[0] != '\0';

	free(err);
	dom_reconnecting = false;
	if (failed)
		dom_reconnect_later();
	else
		dom_reconnect_ms = 0;
}

static void
dom_reconnect_cb(evutil_socket_t fd, short events, void *arg)
{
	struct qmp_error	*err;

	if (dom_reconnecting || (err = calloc(1, sizeof *err)) == NULL)
		return;
	qmp_error_set(err, QMP_CLS_GENERIC, "not run");
	if (work_submit(dom_connect_fn, dom_connect_done, err) == NULL) {
		free(err);
		return;
	}
	dom_reconnecting = true;
}

static void
dom_reconnect_later(void)
{
	struct timeval	tv;

	dom_reconnect_ms = dom_reconnect_ms == 0 ? DOM_RECONNECT_MIN_MS :
	    dom_reconnect_ms * 2;
	if (dom_reconnect_ms > DOM_RECONNECT_MAX_MS)
		dom_reconnect_ms = DOM_RECONNECT_MAX_MS;
	tv.tv_sec = dom_reconnect_ms / 1000;
	tv.tv_usec = (dom_reconnect_ms % 1000) * 1000;
	if (dom_reconnect_ev != NULL && !job_stopping())
		evtimer_add(dom_reconnect_ev, &tv);
}

static void
dom_lost(const char *why, void *arg)
{
	/* Calls in flight fail by themselves; bring the connection (and
	   the monitor event stream) back. */
	bus_publish(NULL, "LIBVIRT_DISCONNECTED", json_pack("{s:s,s:s}",
	    "uri", virt_uri(), "reason", why));
	virt_vm_lost("libvirt connection lost");
	dom_reconnect_ms = 0;
	dom_reconnect_later();
}

static const struct virt_ops dom_virt_ops = {
	dom_qemu_event, dom_lost, dom_opened, dom_lifecycle
};

int
domain_init(struct event_base *base)
{
	struct timeval	tv = { 0, 0 };

	if (virt_event_register(base) != 0)
		return (-1);
	virt_init(conf.libvirt_uri, &dom_virt_ops, NULL);
	/* Connect early, so libvirt-qemu events flow and running domains
	   are VMs before any command. The test driver has neither: it is
	   opened on first use. */
	if ((dom_reconnect_ev = evtimer_new(base, dom_reconnect_cb, NULL)) ==
	    NULL)
		return (-1);
	if (strncmp(virt_uri(), "test:", 5) != 0)
		evtimer_add(dom_reconnect_ev, &tv);
	return (0);
}

void
domain_shutdown(void)
{
	if (dom_reconnect_ev != NULL) {
		event_free(dom_reconnect_ev);
		dom_reconnect_ev = NULL;
	}
	virt_shutdown();
}
