/*
 * policy-check: what the policy decides for a uid, a VM and a command,
 * and which rule decided it. Admin only (guard_broker): it tells who may
 * do what.
 */
#include "config.h"

#include <fnmatch.h>
#include <string.h>

#include "broker/cmd/cmd.h"
#include "broker/session/policy.h"

/* QEMU's commands (qemu-system-x86_64 7.2, query-commands), so that a
   rule's command glob that matches nothing is refused as a typo. */
static const char *const cmd_qemu_names[] = {
	"add-fd",
	"add_client",
	"announce-self",
	"balloon",
	"block-commit",
	"block-dirty-bitmap-add",
	"block-dirty-bitmap-clear",
	"block-dirty-bitmap-disable",
	"block-dirty-bitmap-enable",
	"block-dirty-bitmap-merge",
	"block-dirty-bitmap-remove",
	"block-export-add",
	"block-export-del",
	"block-job-cancel",
	"block-job-complete",
	"block-job-dismiss",
	"block-job-finalize",
	"block-job-pause",
	"block-job-resume",
	"block-job-set-speed",
	"block-latency-histogram-set",
	"block-set-write-threshold",
	"block-stream",
	"block_resize",
	"block_set_io_throttle",
	"blockdev-add",
	"blockdev-backup",
	"blockdev-change-medium",
	"blockdev-close-tray",
	"blockdev-create",
	"blockdev-del",
	"blockdev-insert-medium",
	"blockdev-mirror",
	"blockdev-open-tray",
	"blockdev-remove-medium",
	"blockdev-reopen",
	"blockdev-snapshot",
	"blockdev-snapshot-delete-internal-sync",
	"blockdev-snapshot-internal-sync",
	"blockdev-snapshot-sync",
	"calc-dirty-rate",
	"cancel-vcpu-dirty-limit",
	"change-backing-file",
	"change-vnc-password",
	"chardev-add",
	"chardev-change",
	"chardev-remove",
	"chardev-send-break",
	"client_migrate_info",
	"closefd",
	"cont",
	"device-list-properties",
	"device_add",
	"device_del",
	"display-reload",
	"display-update",
	"drive-backup",
	"drive-mirror",
	"dump-guest-memory",
	"dumpdtb",
	"eject",
	"expire_password",
	"getfd",
	"human-monitor-command",
	"inject-nmi",
	"input-send-event",
	"job-cancel",
	"job-complete",
	"job-dismiss",
	"job-finalize",
	"job-pause",
	"job-resume",
	"memsave",
	"migrate",
	"migrate-continue",
	"migrate-incoming",
	"migrate-pause",
	"migrate-recover",
	"migrate-set-capabilities",
	"migrate-set-parameters",
	"migrate-start-postcopy",
	"migrate_cancel",
	"nbd-server-add",
	"nbd-server-remove",
	"nbd-server-start",
	"nbd-server-stop",
	"netdev_add",
	"netdev_del",
	"object-add",
	"object-del",
	"pmemsave",
	"qmp_capabilities",
	"qom-get",
	"qom-list",
	"qom-list-properties",
	"qom-list-types",
	"qom-set",
	"query-acpi-ospm-status",
	"query-balloon",
	"query-block",
	"query-block-exports",
	"query-block-jobs",
	"query-blockstats",
	"query-chardev",
	"query-chardev-backends",
	"query-colo-status",
	"query-command-line-options",
	"query-commands",
	"query-cpu-definitions",
	"query-cpu-model-expansion",
	"query-cpus-fast",
	"query-current-machine",
	"query-dirty-rate",
	"query-display-options",
	"query-dump",
	"query-dump-guest-memory-capability",
	"query-fdsets",
	"query-hotpluggable-cpus",
	"query-iothreads",
	"query-jobs",
	"query-kvm",
	"query-machines",
	"query-memdev",
	"query-memory-devices",
	"query-memory-size-summary",
	"query-mice",
	"query-migrate",
	"query-migrate-capabilities",
	"query-migrate-parameters",
	"query-name",
	"query-named-block-nodes",
	"query-pci",
	"query-pr-managers",
	"query-qmp-schema",
	"query-replay",
	"query-rocker",
	"query-rocker-of-dpa-flows",
	"query-rocker-of-dpa-groups",
	"query-rocker-ports",
	"query-rx-filter",
	"query-sev",
	"query-sev-attestation-report",
	"query-sev-capabilities",
	"query-sev-launch-measure",
	"query-sgx",
	"query-sgx-capabilities",
	"query-spice",
	"query-stats",
	"query-stats-schemas",
	"query-status",
	"query-target",
	"query-tpm",
	"query-tpm-models",
	"query-tpm-types",
	"query-uuid",
	"query-vcpu-dirty-limit",
	"query-version",
	"query-vm-generation-id",
	"query-vnc",
	"query-vnc-servers",
	"query-xen-replication-status",
	"query-yank",
	"quit",
	"remove-fd",
	"replay-break",
	"replay-delete-break",
	"replay-seek",
	"ringbuf-read",
	"ringbuf-write",
	"rtc-reset-reinjection",
	"screendump",
	"send-key",
	"set-action",
	"set-numa-node",
	"set-vcpu-dirty-limit",
	"set_link",
	"set_password",
	"sev-inject-launch-secret",
	"snapshot-delete",
	"snapshot-load",
	"snapshot-save",
	"stop",
	"system_powerdown",
	"system_reset",
	"system_wakeup",
	"trace-event-get-state",
	"trace-event-set-state",
	"transaction",
	"watchdog-set-action",
	"x-blockdev-amend",
	"x-blockdev-change",
	"x-blockdev-set-iothread",
	"x-colo-lost-heartbeat",
	"x-debug-block-dirty-bitmap-sha256",
	"x-debug-query-block-graph",
	"x-exit-preconfig",
	"x-query-irq",
	"x-query-jit",
	"x-query-numa",
	"x-query-opcount",
	"x-query-profile",
	"x-query-ramblock",
	"x-query-rdma",
	"x-query-roms",
	"x-query-usb",
	"x-query-virtio",
	"x-query-virtio-queue-element",
	"x-query-virtio-queue-status",
	"x-query-virtio-status",
	"x-query-virtio-vhost-queue-status",
	"xen-colo-do-checkpoint",
	"xen-load-devices-state",
	"xen-save-devices-state",
	"xen-set-global-dirty-log",
	"xen-set-replication",
	"yank",
	/* HMP's, refused by the guards, and newer QEMU's */
	"drive_add", "netdev-add", "migrate-set-parameters", "dump-skeys",
	"xen-save-devices-state", "xen-load-devices-state", NULL
};

struct cmd_glob {
	const char	*glob;
	bool		 found;
};

static void
cmd_glob_one(const struct cmd_entry *e, void *arg)
{
	struct cmd_glob	*g = arg;

	if (fnmatch(g->glob, e->name, 0) == 0)
		g->found = true;
}

bool
cmd_glob_known(const char *glob)
{
	struct cmd_glob		 g = { glob, false };
	const char *const	*q;

	cmd_foreach(cmd_glob_one, &g);
	for (q = cmd_qemu_names; !g.found && *q != NULL; q++) {
		if (fnmatch(glob, *q, 0) == 0)
			g.found = true;
	}
	return (g.found);
}

static void
cmd_policy_check(struct req *r, json_t *args, const struct cmd_entry *e,
    const struct cmd_target *t)
{
	struct policy_verdict	 v;
	struct peer		 p;
	const char		*cmd, *vm;
	json_t			*cargs, *q;
	json_int_t		 uid;
	enum policy_ns		 ns;

	uid = cmd_arg_int(args, "uid", -1);
	cmd = cmd_arg_str(args, "command");
	vm = cmd_arg_str(args, "vm");
	cargs = json_object_get(args, "arguments");
	q = json_object_get(args, "qemu");
	if (uid < 0 || uid > 0x7fffffff) {
		req_error(r, QMP_CLS_GENERIC, "Parameter 'uid' must be a uid");
		return;
	}
	if (cargs != NULL && !json_is_object(cargs)) {
		req_error(r, QMP_CLS_GENERIC, "Invalid parameter type for "
		    "'arguments', expected: object");
		return;
	}
	if (q != NULL && !json_is_boolean(q)) {
		req_error(r, QMP_CLS_GENERIC, "Invalid parameter type for "
		    "'qemu', expected: boolean");
		return;
	}
	/* a broker command unless it is none or qemu says so */
	ns = json_is_true(q) || (q == NULL && cmd_find(cmd) == NULL) ?
	    POLICY_QEMU : POLICY_BROKER;
	peer_lookup(&p, (uid_t)uid);
	policy_check(&p, vm, cmd, ns, cargs, &v);
	peer_release(&p);
	req_reply(r, json_pack("{s:s,s:s,s:s,s:s,s:s}",
	    "decision", v.allow ? "allow" : "deny",
	    "role", policy_role_name(v.role),
	    "namespace", ns == POLICY_QEMU ? "qemu" : "broker",
	    "rule", v.rule, "reason", v.reason));
}

const struct cmd_entry cmd_policy_table[] = {
	{ .name = "policy-check", .exec = cmd_policy_check,
	    .args = { { "uid", 'I', true }, { "vm", 's', false },
	    { "command", 's', true }, { "arguments", 'o', false },
	    { "qemu", 'o', false } } },
	{ .name = NULL }
};
