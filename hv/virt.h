/*
 * libvirt: one shared connection and the blocking calls the broker's
 * domain jobs make. Every virt_* call below except virt_event_register()
 * and virt_init() blocks and is meant for worker threads; the connection
 * is guarded by a mutex and libvirt's own calls are thread-safe.
 *
 * The connection is opened lazily and reopened after it is lost, no more
 * often than a capped exponential backoff allows; calls made while it is
 * down fail at once with a clear error. Calls in flight when it drops fail
 * with "libvirt connection lost".
 */
#ifndef HV_VIRT_H
#define HV_VIRT_H

#include <stdbool.h>
#include <stddef.h>
#include <event2/event.h>
#include <jansson.h>

#include "proto/qmp_msg.h"

#define VIRT_DEFAULT_URI	"test:///default"

/* libvirt's event loop on this base (virt_event.c); once per process,
   before any connection. The base must be thread-enabled. */
int		 virt_event_register(struct event_base *);
size_t		 virt_event_watches(void);

/* Owner callbacks, made on the loop (through libvirt's event loop). */
struct virt_ops {
	/* A QMP event of a libvirt domain (libvirt-qemu); data borrowed. */
	void	(*qemu_event)(const char *domain, const char *event,
		    long long seconds, unsigned micros, json_t *data, void *);
	/* The connection closed under us. */
	void	(*lost)(const char *why, void *);
	/* A connection was (re)opened. */
	void	(*opened)(void *);
	/* A domain's QEMU started (true) or stopped (false). */
	void	(*lifecycle)(const char *domain, bool running, void *);
};

void		 virt_init(const char *uri, const struct virt_ops *, void *arg);
/* Closes the connection; no worker may be inside a virt_* call. */
void		 virt_shutdown(void);
const char	*virt_uri(void);
/* Opens the connection now if it is down (blocking; respects backoff). */
int		 virt_connect(struct qmp_error *err);
bool		 virt_connected(void);
/* The driver speaks QMP through libvirt-qemu (qemu://, not test://). */
bool		 virt_has_qemu(void);

enum virt_op {
	VIRT_DEFINE,		/* arg: XML */
	VIRT_UNDEFINE,
	VIRT_START,
	VIRT_SHUTDOWN,
	VIRT_DESTROY,
	VIRT_REBOOT,
	VIRT_SUSPEND,
	VIRT_RESUME,
	VIRT_SAVE,		/* managed save */
	VIRT_SNAPSHOT,		/* arg: name */
	VIRT_SNAPSHOT_DELETE,	/* arg: name (undo of VIRT_SNAPSHOT) */
	VIRT_SNAPSHOT_REVERT,	/* arg: name */
	VIRT_MIGRATE,		/* arg: URI; live, bandwidth */
	VIRT_ABORT_JOB,		/* stops a migration in flight */
};

struct virt_args {
	const char	*arg;
	bool		 live;
	unsigned long	 bandwidth;	/* MiB/s, 0: unlimited */
};

/* States as libvirt has them, by name: "running", "paused", "shutoff",
   "shutdown" (going down), "crashed", "pmsuspended", "blocked",
   "nostate"; "gone" when the domain no longer exists. */
const char	*virt_state_name(int);
#define VIRT_STATE_GONE	(-1)

/* One call. For VIRT_DEFINE, *name gets the defined domain's name
   (malloc'd). Returns 0, or -1 with err. */
int		 virt_domain_op(const char *domain, enum virt_op,
		    const struct virt_args *, char **name,
		    struct qmp_error *err);
/* The domain's state (virDomainState), or VIRT_STATE_GONE. Also whether
   it has a managed save image. */
int		 virt_domain_state(const char *domain, int *state,
		    bool *managed_save, struct qmp_error *err);
/* [{"name","uuid","state","persistent"}] or NULL with err. */
json_t		*virt_list_domains(struct qmp_error *err);
/* A QMP command through libvirt-qemu; the reply object (with "return"
   or "error") or NULL with err. */
json_t		*virt_qemu_command(const char *domain, const char *cmdjson,
		    struct qmp_error *err);

#endif
