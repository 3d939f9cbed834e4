/*
 * The shared libvirt connection and the blocking calls on it.
 */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libvirt/libvirt.h>
#include <libvirt/libvirt-qemu.h>
#include <libvirt/virterror.h>

#include "hv/virt.h"

#define VIRT_BACKOFF_MIN_MS	200
#define VIRT_BACKOFF_MAX_MS	30000

static pthread_mutex_t	 virt_mtx = PTHREAD_MUTEX_INITIALIZER;
static virConnectPtr	 virt_conn;		/* under virt_mtx */
static char		*virt_uri_s;
static const struct virt_ops *virt_owner;
static void		*virt_owner_arg;
static int		 virt_backoff_ms;	/* under virt_mtx */
static struct timespec	 virt_next_try;		/* under virt_mtx */
static char		 virt_last_err[256];	/* under virt_mtx */
static int		 virt_qemu_cb = -1;	/* under virt_mtx */
static int		 virt_life_cb = -1;	/* under virt_mtx */

static const char *virt_state_names[] = {
	[VIR_DOMAIN_NOSTATE] = "nostate",
	[VIR_DOMAIN_RUNNING] = "running",
	[VIR_DOMAIN_BLOCKED] = "blocked",
	[VIR_DOMAIN_PAUSED] = "paused",
	[VIR_DOMAIN_SHUTDOWN] = "shutdown",
	[VIR_DOMAIN_SHUTOFF] = "shutoff",
	[VIR_DOMAIN_CRASHED] = "crashed",
	[VIR_DOMAIN_PMSUSPENDED] = "pmsuspended",
};

const char *
virt_state_name(int s)
{
	if (s == VIRT_STATE_GONE)
		return ("gone");
	if (s < 0 || (size_t)s >= sizeof virt_state_names /
	    sizeof virt_state_names[0] || virt_state_names[s] == NULL)
		return ("unknown");
	return (virt_state_names[s]);
}

/* libvirt prints every error to stderr by default; we report them. */
static void
virt_quiet(void *unused, virErrorPtr e)
{
}

static void
virt_close_cb(virConnectPtr c, int reason, void *unused)
{
	static const char *why[] = { "error", "end of file", "keepalive timeout",
	    "client closed" };

	if (virt_owner != NULL && virt_owner->lost != NULL)
		virt_owner->lost(reason >= 0 && reason < 4 ? why[reason] :
		    "closed", virt_owner_arg);
}

static void
virt_qemu_event_cb(virConnectPtr c, virDomainPtr dom, const char *event,
    long long seconds, unsigned int micros, const char *details, void *unused)
{
	json_t	*data = NULL;

	if (details != NULL)
		data = json_loads(details, JSON_DECODE_ANY, NULL);
	if (data != NULL && !json_is_object(data)) {
		json_decref(data);
		data = NULL;
	}
	if (virt_owner != NULL && virt_owner->qemu_event != NULL)
		virt_owner->qemu_event(virDomainGetName(dom), event, seconds,
		    micros, data, virt_owner_arg);
	json_decref(data);
}

static void
virt_life_event_cb(virConnectPtr c, virDomainPtr dom, int event, int detail,
    void *unused)
{
	bool	running;

	if (event == VIR_DOMAIN_EVENT_STARTED)
		running = true;
	else if (event == VIR_DOMAIN_EVENT_STOPPED ||
	    event == VIR_DOMAIN_EVENT_CRASHED)
		running = false;
	else
		return;
	if (virt_owner != NULL && virt_owner->lifecycle != NULL)
		virt_owner->lifecycle(virDomainGetName(dom), running,
		    virt_owner_arg);
}

/* Runs on the loop, through libvirt's own event loop, once per open. */
static void
virt_opened_cb(int timer, void *unused)
{
	virEventRemoveTimeout(timer);
	if (virt_owner != NULL && virt_owner->opened != NULL)
		virt_owner->opened(virt_owner_arg);
}

void
virt_init(const char *uri, const struct virt_ops *ops, void *arg)
{
	pthread_mutex_lock(&virt_mtx);
	free(virt_uri_s);
	virt_uri_s = strdup(uri != NULL ? uri : VIRT_DEFAULT_URI);
	virt_owner = ops;
	virt_owner_arg = arg;
	virt_backoff_ms = 0;
	pthread_mutex_unlock(&virt_mtx);
	virSetErrorFunc(NULL, virt_quiet);
}

/* Under virt_mtx. */
static void
virt_drop(void)
{
	if (virt_conn == NULL)
		return;
	if (virt_qemu_cb != -1)
		virConnectDomainQemuMonitorEventDeregister(virt_conn,
		    virt_qemu_cb);
	virt_qemu_cb = -1;
	if (virt_life_cb != -1)
		virConnectDomainEventDeregisterAny(virt_conn, virt_life_cb);
	virt_life_cb = -1;
	virConnectUnregisterCloseCallback(virt_conn, virt_close_cb);
	virConnectClose(virt_conn);
	virt_conn = NULL;
}

void
virt_shutdown(void)
{
	pthread_mutex_lock(&virt_mtx);
	virt_drop();
	free(virt_uri_s);
	virt_uri_s = NULL;
	virt_owner = NULL;
	pthread_mutex_unlock(&virt_mtx);
}

bool
virt_has_qemu(void)
{
	bool	yes;

	pthread_mutex_lock(&virt_mtx);
	yes = virt_conn != NULL && virt_qemu_cb != -1;
	pthread_mutex_unlock(&virt_mtx);
	return (yes);
}

const char *
virt_uri(void)
{
	return (virt_uri_s != NULL ? virt_uri_s : VIRT_DEFAULT_URI);
}

bool
virt_connected(void)
{
	bool	up;

	pthread_mutex_lock(&virt_mtx);
	up = virt_conn != NULL && virConnectIsAlive(virt_conn) == 1;
	pthread_mutex_unlock(&virt_mtx);
	return (up);
}

static const char *
virt_errmsg(void)
{
	virErrorPtr	e = virGetLastError();

	return (e != NULL && e->message != NULL ? e->message : "unknown error");
}

static long
virt_ms_until(const struct timespec *t)
{
	struct timespec	now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return ((t->tv_sec - now.tv_sec) * 1000 +
	    (t->tv_nsec - now.tv_nsec) / 1000000);
}

/* A referenced connection, opened or reopened if need be. */
static virConnectPtr
virt_get(struct qmp_error *err)
{
	virConnectPtr	c;
	long		wait;

	pthread_mutex_lock(&virt_mtx);
	if (virt_uri_s == NULL) {
		pthread_mutex_unlock(&virt_mtx);
		qmp_error_set(err, QMP_CLS_GENERIC, "libvirt is not set up");
		return (NULL);
	}
	if (virt_conn != NULL && virConnectIsAlive(virt_conn) != 1)
		virt_drop();
	if (virt_conn == NULL) {
		if (virt_backoff_ms > 0 &&
		    (wait = virt_ms_until(&virt_next_try)) > 0) {
			qmp_error_set(err, QMP_CLS_GENERIC,
			    "libvirt at %s is unavailable (%s); next attempt in "
			    "%ld ms", virt_uri_s, virt_last_err, wait);
			pthread_mutex_unlock(&virt_mtx);
			return (NULL);
		}
		if ((virt_conn = virConnectOpen(virt_uri_s)) == NULL) {
			snprintf(virt_last_err, sizeof virt_last_err, "%s",
			    virt_errmsg());
			virt_backoff_ms = virt_backoff_ms == 0 ?
			    VIRT_BACKOFF_MIN_MS : virt_backoff_ms * 2;
			if (virt_backoff_ms > VIRT_BACKOFF_MAX_MS)
				virt_backoff_ms = VIRT_BACKOFF_MAX_MS;
			clock_gettime(CLOCK_MONOTONIC, &virt_next_try);
			virt_next_try.tv_sec += virt_backoff_ms / 1000;
			virt_next_try.tv_nsec += (virt_backoff_ms % 1000) *
			    1000000L;
			if (virt_next_try.tv_nsec >= 1000000000L) {
				virt_next_try.tv_sec++;
				virt_next_try.tv_nsec -= 1000000000L;
			}
			qmp_error_set(err, QMP_CLS_GENERIC,
			    "cannot connect to libvirt at %s: %s", virt_uri_s,
			    virt_last_err);
			pthread_mutex_unlock(&virt_mtx);
			return (NULL);
		}
		virt_backoff_ms = 0;
		virConnectRegisterCloseCallback(virt_conn, virt_close_cb, NULL,
		    NULL);
		/* Only drivers that run QEMU offer this (not test://). */
		virt_qemu_cb = virConnectDomainQemuMonitorEventRegister(
		    virt_conn, NULL, NULL, virt_qemu_event_cb, NULL, NULL, 0);
		virt_life_cb = virConnectDomainEventRegisterAny(virt_conn, NULL,
		    VIR_DOMAIN_EVENT_ID_LIFECYCLE,
		    VIR_DOMAIN_EVENT_CALLBACK(virt_life_event_cb), NULL, NULL);
		virResetLastError();
		/* Tell the owner, on the loop. */
		virEventAddTimeout(0, virt_opened_cb, NULL, NULL);
	}
	c = virt_conn;
	virConnectRef(c);
	pthread_mutex_unlock(&virt_mtx);
	return (c);
}

static void
virt_release(virConnectPtr c)
{
	virConnectClose(c);	/* drops our reference */
}

int
virt_connect(struct qmp_error *err)
{
	virConnectPtr	c;

	if ((c = virt_get(err)) == NULL)
		return (-1);
	virt_release(c);
	return (0);
}

/* Fills err after a failed call on c, telling a lost connection apart. */
static void
virt_fail(virConnectPtr c, struct qmp_error *err, const char *what,
    const char *domain)
{
	char		 msg[400];

	/* Copied: the next libvirt call (IsAlive) frees the last error. */
	snprintf(msg, sizeof msg, "%s", virt_errmsg());
	if (virConnectIsAlive(c) != 1)
		qmp_error_set(err, QMP_CLS_GENERIC,
		    "libvirt connection lost during %s: %s", what, msg);
	else if (domain != NULL)
		qmp_error_set(err, QMP_CLS_GENERIC, "%s of domain '%s': %s",
		    what, domain, msg);
	else
		qmp_error_set(err, QMP_CLS_GENERIC, "%s: %s", what, msg);
}

int
virt_domain_state(const char *domain, int *state, bool *managed_save,
    struct qmp_error *err)
{
	virConnectPtr	c;
	virDomainPtr	d;
	virErrorPtr	e;
	int		st, reason, rc = -1;

	if ((c = virt_get(err)) == NULL)
		return (-1);
	if ((d = virDomainLookupByName(c, domain)) == NULL) {
		e = virGetLastError();
		if (e != NULL && e->code == VIR_ERR_NO_DOMAIN) {
			*state = VIRT_STATE_GONE;
			if (managed_save != NULL)
				*managed_save = false;
			rc = 0;
		} else
			virt_fail(c, err, "lookup", domain);
		virt_release(c);
		return (rc);
	}
	if (virDomainGetState(d, &st, &reason, 0) == -1)
		virt_fail(c, err, "state query", domain);
	else {
		*state = st;
		if (managed_save != NULL)
			*managed_save = virDomainHasManagedSaveImage(d, 0) == 1;
		rc = 0;
	}
	virDomainFree(d);
	virt_release(c);
	return (rc);
}

static int
virt_migrate(virDomainPtr d, const struct virt_args *a)
{
	virTypedParameterPtr	p = NULL;
	int			np = 0, maxp = 0, rc;
	unsigned		flags = VIR_MIGRATE_PEER2PEER;

	if (a->live)
		flags |= VIR_MIGRATE_LIVE;
	if (a->bandwidth > 0 && virTypedParamsAddULLong(&p, &np, &maxp,
	    VIR_MIGRATE_PARAM_BANDWIDTH, a->bandwidth) == -1)
		return (-1);
	rc = virDomainMigrateToURI3(d, a->arg, p, np, flags);
	virTypedParamsFree(p, np);
	return (rc);
}

static int
virt_snapshot(virDomainPtr d, enum virt_op op, const char *name)
{
	virDomainSnapshotPtr	s;
	char			xml[256];
	int			rc = 0;

	if (op == VIRT_SNAPSHOT) {
		/* The broker admits [A-Za-z0-9_.-] only: nothing to escape. */
		snprintf(xml, sizeof xml,
		    "<domainsnapshot><name>%s</name></domainsnapshot>", name);
		s = virDomainSnapshotCreateXML(d, xml, 0);
		if (s == NULL)
			return (-1);
		virDomainSnapshotFree(s);
		return (0);
	}
	if ((s = virDomainSnapshotLookupByName(d, name, 0)) == NULL)
		return (-1);
	if (op == VIRT_SNAPSHOT_REVERT)
		rc = virDomainRevertToSnapshot(s, 0);
	else
		rc = virDomainSnapshotDelete(s, 0);
	virDomainSnapshotFree(s);
	return (rc);
}

static const char *virt_op_names[] = {
	[VIRT_DEFINE] = "define",
	[VIRT_UNDEFINE] = "undefine",
	[VIRT_START] = "start",
	[VIRT_SHUTDOWN] = "shutdown",
	[VIRT_DESTROY] = "destroy",
	[VIRT_REBOOT] = "reboot",
	[VIRT_SUSPEND] = "suspend",
	[VIRT_RESUME] = "resume",
	[VIRT_SAVE] = "managed save",
	[VIRT_SNAPSHOT] = "snapshot",
	[VIRT_SNAPSHOT_DELETE] = "snapshot delete",
	[VIRT_SNAPSHOT_REVERT] = "snapshot revert",
	[VIRT_MIGRATE] = "migration",
	[VIRT_ABORT_JOB] = "job abort",
};

int
virt_domain_op(const char *domain, enum virt_op op, const struct virt_args *a,
    char **name, struct qmp_error *err)
{
	virConnectPtr	c;
	virDomainPtr	d;
	int		rc = -1, st, reason;

	if ((c = virt_get(err)) == NULL)
		return (-1);
	if (op == VIRT_DEFINE) {
		if ((d = virDomainDefineXML(c, a->arg)) == NULL) {
			virt_fail(c, err, "define", NULL);
			virt_release(c);
			return (-1);
		}
		if (name != NULL)
			*name = strdup(virDomainGetName(d));
		virDomainFree(d);
		virt_release(c);
		return (0);
	}
	if ((d = virDomainLookupByName(c, domain)) == NULL) {
		virt_fail(c, err, virt_op_names[op], domain);
		virt_release(c);
		return (-1);
	}
	switch (op) {
	case VIRT_UNDEFINE:
		rc = virDomainUndefineFlags(d,
		    VIR_DOMAIN_UNDEFINE_MANAGED_SAVE |
		    VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA);
		break;
	case VIRT_START:
		rc = virDomainCreate(d);
		break;
	case VIRT_SHUTDOWN:
		rc = virDomainShutdown(d);
		break;
	case VIRT_DESTROY:
		/* Already off is what destroy promises: success. */
		if (virDomainGetState(d, &st, &reason, 0) == 0 &&
		    st == VIR_DOMAIN_SHUTOFF) {
			rc = 0;
			break;
		}
		rc = virDomainDestroy(d);
		if (rc == -1 && virDomainGetState(d, &st, &reason, 0) == 0 &&
		    st == VIR_DOMAIN_SHUTOFF)
			rc = 0;	/* it went down by itself meanwhile */
		break;
	case VIRT_REBOOT:
		rc = virDomainReboot(d, 0);
		break;
	case VIRT_SUSPEND:
		rc = virDomainSuspend(d);
		break;
	case VIRT_RESUME:
		rc = virDomainResume(d);
		break;
	case VIRT_SAVE:
		rc = virDomainManagedSave(d, 0);
		break;
	case VIRT_SNAPSHOT:
	case VIRT_SNAPSHOT_DELETE:
	case VIRT_SNAPSHOT_REVERT:
		rc = virt_snapshot(d, op, a->arg);
		break;
	case VIRT_MIGRATE:
		rc = virt_migrate(d, a);
		break;
	case VIRT_ABORT_JOB:
		rc = virDomainAbortJob(d);
		break;
	case VIRT_DEFINE:
		break;
	}
	if (rc == -1)
		virt_fail(c, err, virt_op_names[op], domain);
	virDomainFree(d);
	virt_release(c);
	return (rc == -1 ? -1 : 0);
}

json_t *
virt_list_domains(struct qmp_error *err)
{
	virConnectPtr	 c;
	virDomainPtr	*doms = NULL;
	char		 uuid[VIR_UUID_STRING_BUFLEN];
	json_t		*a;
	int		 n, i, st, reason;

	if ((c = virt_get(err)) == NULL)
		return (NULL);
	if ((n = virConnectListAllDomains(c, &doms, 0)) < 0) {
		virt_fail(c, err, "listing domains", NULL);
		virt_release(c);
		return (NULL);
	}
	a = json_array();
	for (i = 0; i < n; i++) {
		if (virDomainGetUUIDString(doms[i], uuid) == -1)
			uuid[0] = '\0';
		if (virDomainGetState(doms[i], &st, &reason, 0) == -1)
			st = VIRT_STATE_GONE;
		json_array_append_new(a, json_pack("{s:s,s:s,s:s,s:b}",
		    "name", virDomainGetName(doms[i]), "uuid", uuid,
		    "state", virt_state_name(st),
		    "persistent", virDomainIsPersistent(doms[i]) == 1));
		virDomainFree(doms[i]);
	}
	free(doms);
	virt_release(c);
	return (a);
}

json_t *
virt_qemu_command(const char *domain, const char *cmdjson,
    struct qmp_error *err)
{
	virConnectPtr	 c;
	virDomainPtr	 d;
	char		*out = NULL;
	json_t		*reply = NULL;

	if ((c = virt_get(err)) == NULL)
		return (NULL);
	if ((d = virDomainLookupByName(c, domain)) == NULL) {
		virt_fail(c, err, "lookup", domain);
		virt_release(c);
		return (NULL);
	}
	if (virDomainQemuMonitorCommand(d, cmdjson, &out, 0) == -1)
		virt_fail(c, err, "monitor command", domain);
	else if ((reply = json_loads(out, 0, NULL)) == NULL ||
	    !json_is_object(reply)) {
		json_decref(reply);
		reply = NULL;
		qmp_error_set(err, QMP_CLS_GENERIC,
		    "libvirt returned a monitor reply that is not JSON");
	}
	free(out);
	virDomainFree(d);
	virt_release(c);
	return (reply);
}
