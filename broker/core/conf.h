/*
 * Daemon configuration: one struct, filled from defaults, then the config
 * file, then command-line flags (flags win). Every option is both.
 */
#ifndef BROKER_CORE_CONF_H
#define BROKER_CORE_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "proto/qmp_msg.h"

#define CONF_MAX_ROOTS	16
#define CONF_MAX_IDS	64

/* A VM named in the config file (`vm NAME SOCKET`, --vm NAME=SOCKET). */
struct conf_vm {
	char	*name;
	char	*socket;
};

/* Who may act on one VM (`vm-allow NAME uid:N,gid:M,...`). */
struct conf_vm_allow {
	char	*name;
	int	 uids[CONF_MAX_IDS];
	size_t	 n_uids;
	int	 gids[CONF_MAX_IDS];
	size_t	 n_gids;
};

struct conf {
	char	*config_path;
	char	*control_path;		/* --control */
	char	*run_dir;		/* --run-dir: shared sockets in DIR/vm/ */
	char	*state_dir;		/* --state-dir: registry, journals */
	char	*vm_dir;		/* --vm-dir: watched *.qmp sockets */
	char	*pid_file;
	int	 vm_sockets;		/* --vm-sockets: RUNDIR/vm/NAME.qmp */
	int	 foreground;
	int	 log_level;		/* syslog LOG_* */
	int	 socket_gid;		/* -1: unchanged */
	int	 allow_uids[CONF_MAX_IDS];
	size_t	 n_allow_uids;
	int	 allow_gids[CONF_MAX_IDS];
	size_t	 n_allow_gids;

	size_t	 max_msg;		/* per message, both directions */
	size_t	 client_queue_max;	/* bytes of events queued per client */
	int	 reply_stall_ms;	/* replies unread this long: disconnect */
	int	 upgrade_timeout_ms;	/* upgrade: in-flight commands' deadline */
	int	 line_timeout_ms;	/* part of a line, then silence: disconnect */
	size_t	 max_clients;
	int	 cmd_timeout_ms;
	int	 log_syslog;		/* -1: syslog unless --foreground */
	size_t	 max_subs;		/* subscriptions per client */
	size_t	 max_fds;		/* fds accepted with one message */
	/* the event log (core/evlog.h), STATE_DIR/events */
	int	 event_log;		/* default yes */
	size_t	 event_log_memory;	/* ring, default 16M */
	size_t	 event_log_segment;	/* segment rotates past, default 16M */
	size_t	 event_log_max;		/* all segments, default 256M */
	int	 event_log_max_age_s;	/* segments older go, default 7 days */
	struct conf_vm *vms;
	size_t	 n_vms;
	struct conf_vm_allow *vm_allows;	/* none for a VM: every peer */
	size_t	 n_vm_allows;

	/* hotplug */
	char	*image_roots[CONF_MAX_ROOTS];	/* --image-root, repeatable */
	size_t	 n_image_roots;
	int	 unplug_timeout_ms;	/* default 10000 */

	/* jobs */
	char	*libvirt_uri;		/* default test:///default */
	int	 workers;		/* default 4 */
	int	 job_keep_s;		/* finished jobs kept, default 600 */
	size_t	 max_jobs;		/* unfinished jobs at once; 0: no limit */

	/* image attach (NULL/0: the built-in defaults) */
	char	*losetup_path;		/* default "losetup" */
	char	*qemu_nbd_path;		/* default "qemu-nbd" */
	char	*loop_sysfs;		/* backing_file after a restart, /sys */
	char	*nbd_sysfs;		/* default /sys */
	char	*nbd_dev_dir;		/* default /dev */
	char	*nbd_lock_dir;		/* default /run/lock/qmpbroker */
	int	 nbd_wait_ms;		/* pid file must appear, default 10000 */
	int	 tool_timeout_ms;	/* losetup, qemu-nbd, default 30000 */

	/* metrics (session/scrape.c); NULL: no HTTP listener */
	char	*metrics_listen;	/* unix:PATH or HOST:PORT */
	int	 metrics_remote;	/* a non-loopback HOST is allowed */
	int	 metrics_per_vm;	/* default yes */
	size_t	 metrics_max_conns;	/* default 64 */
	int	 metrics_timeout_ms;	/* default 10000 */
	/* fleet streaming on NATS JetStream (docs/nats.md); NULL nats_url:
	   off */
	char	*nats_url;		/* --nats nats://HOST:PORT[,...] */
	char	*nats_creds;		/* user credentials file (JWT+seed) */
	char	*nats_nkey;		/* user nkey (public) */
	char	*nats_nkey_seed;	/* file holding its seed */
	char	*nats_tls_ca;		/* CA bundle; implies TLS */
	char	*nats_tls_cert;		/* client certificate (with key) */
	char	*nats_tls_key;
	char	*host_id;		/* default: the host name */
	char	*nats_stream;		/* default QMP_EVENTS */
	char	*nats_subjects;		/* default qmp.*.*.event.* */
	char	*nats_retention;	/* limits|interest|workqueue */
	int	 nats_replicas;		/* default 1 */
	int	 nats_dup_window_s;	/* JetStream dedup window, default 120 */
	size_t	 nats_max_bytes;	/* stream cap; 0: none */
	int	 nats_max_age_s;	/* stream cap; 0: none */
	int	 nats_window;		/* unacked publishes, default 256 */
	int	 nats_ack_timeout_ms;	/* republish after, default 5000 */
	int	 nats_control;		/* serve qmp.HOST.control */
	char	*nats_control_allow;	/* comma list of commands; NULL: none */
	/* policy and audit (docs/policy.md) */
	char	*policy_path;		/* --policy: NULL, the built-in one */
	int	 audit_required;	/* refuse changes when not audited */
	size_t	 audit_rotate;		/* bytes per audit file */
	/* privilege separation (broker/privsep.h, docs/policy.md) */
	char	*user;			/* --user; NULL: qmpbroker if it exists */
	char	*monitor_root;		/* --monitor-root; NULL: vm-dir only */
};

extern struct conf conf;

void	conf_init(struct conf *);		/* defaults */
void	conf_clear(struct conf *);		/* frees what it holds */
/* The next three return 0, or -1 with err (GenericError) saying what
   was refused: the option, the file and line, or the flag. */
int	conf_set(struct conf *, const char *key, const char *value,
	    struct qmp_error *err);
int	conf_load_file(struct conf *, const char *path,
	    struct qmp_error *err);
/* Defaults, then the config file (--config or the default one if it
   exists), then flags. argv[0] is skipped. */
int	conf_build(struct conf *, int argc, char **argv,
	    struct qmp_error *err);
void	conf_usage(FILE *);

/* A VM's name: 1 to VM_NAME_MAX of [A-Za-z0-9_.-], not "." or "..".
   Here because the config file names VMs too. */
#define VM_NAME_MAX	64
bool	conf_vm_name_valid(const char *);

#endif
