/*
 * The daemon's life on its loop. The top of the layers: the one place
 * that knows every module, and wires the callbacks through which the
 * lower layers tell the upper ones what happened (the publish bus, the
 * VM observers, the session's dispatch).
 */
#include "config.h"

#include <sys/stat.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker/cmd/cmd.h"
#include "broker/core/audit.h"
#include "broker/core/bus.h"
#include "broker/core/conf.h"
#include "broker/core/evlog.h"
#include "broker/core/log.h"
#include "broker/core/loop.h"
#include "broker/core/metrics.h"
#include "broker/daemon.h"
#include "broker/fdstore.h"
#include "broker/fleet/fleet.h"
#include "broker/session/client.h"
#include "broker/session/ctl.h"
#include "broker/session/policy.h"
#include "broker/session/scrape.h"
#include "broker/session/share.h"
#include "broker/session/sub.h"
#include "broker/svc/hotplug.h"
#include "broker/svc/jobs.h"
#include "broker/upgrade.h"
#include "broker/vm/registry.h"
#include "broker/vm/vm.h"
#include "broker/vm/vm_metrics.h"

#define DAEMON_FLUSH_MS	2000	/* clients get this long to read */

static struct event	*daemon_flush_ev;
static int		 daemon_argc;
static char		**daemon_argv;

static void
daemon_last_gone(void)
{
	if (loop_stopping())
		event_base_loopexit(loop_base, NULL);
}

static const struct client_hooks daemon_client_hooks = {
	cmd_dispatch,
	daemon_last_gone,
};

int
daemon_start(int argc, char **argv, struct qmp_error *err)
{
	char	*vmdir, *auditdir;

	daemon_argc = argc;
	daemon_argv = argv;
	if (asprintf(&vmdir, "%s/vm", conf.run_dir) == -1) {
		qmp_error_set(err, QMP_CLS_GENERIC, "out of memory");
		return (-1);
	}
	if (loop_mkdirs(conf.run_dir, 0755, err) == -1 ||
	    loop_mkdirs(conf.state_dir, 0700, err) == -1 ||
	    loop_mkdirs_for(conf.control_path, err) == -1 ||
	    loop_mkdirs(vmdir, 0755, err) == -1) {
		free(vmdir);
		return (-1);
	}
	if (conf.socket_gid != -1 &&
	    chown(vmdir, (uid_t)-1, (gid_t)conf.socket_gid) == -1)
		log_warn("chown %s: %s", vmdir, strerror(errno));
	free(vmdir);
	/* The policy before any client: a file that does not parse stops
	   the start, as a bad config file does. */
	policy_set_known(cmd_glob_known);
	if (policy_load(conf.policy_path, err) == -1)
		return (-1);
	if (asprintf(&auditdir, "%s/audit", conf.state_dir) == -1) {
		qmp_error_set(err, QMP_CLS_GENERIC, "out of memory");
		return (-1);
	}
	if (audit_open(auditdir, conf.audit_rotate, err) == -1) {
		free(auditdir);
		return (-1);
	}
	free(auditdir);
	share_set_exec(cmd_share_command);
	cmd_set_upgrade(upgrade_start);
	/* Information flows up through these, wired before anything can
	   happen: events to subscriptions, VMs to their shared sockets and
	   their hotplug state, requests to the command tables. */
	sub_init();
	if (bus_log_start(loop_base, err) == -1)
		return (-1);
	hotplug_init();
	share_init();
	fdstore_init();
	client_set_hooks(&daemon_client_hooks);
	/* The metrics read the layers above core through these, at scrape
	   time: the VMs' totals, the sessions', then the per-VM series,
	   last since they grow with the VMs and go out in parts. */
	if (metrics_init(loop_base) == -1 ||
	    metrics_register(vm_metrics_collect, NULL) == -1 ||
	    metrics_register(scrape_collect, NULL) == -1 ||
	    metrics_register_parts(vm_metrics_parts, vm_metrics_stop,
	    NULL) == -1) {
		qmp_error_set(err, QMP_CLS_GENERIC, "cannot start the metrics");
		return (-1);
	}
	if (jobs_start(loop_base) == -1) {
		qmp_error_set(err, QMP_CLS_GENERIC,
		    "cannot start %d job workers or libvirt's event loop",
		    conf.workers);
		return (-1);
	}
	/* Started by an upgrade: the previous process's listeners and
	   monitors, taken as their modules open them. */
	upgrade_resume_begin();
	/* Restarted by systemd after a crash: the monitors' connections it
	   kept (an upgrade hands over its own instead). */
	if (!upgrade_resuming())
		fdstore_reclaim();
	/* The control socket first: it fails if another broker runs here,
	   before we touch that broker's shared sockets. */
	if (ctl_open(err) == -1)
		return (-1);
	log_debug("control socket up, loading the registry");
	if (registry_start(err) == -1) {
		ctl_close();
		return (-1);
	}
	/* The VMs and their sockets exist: the previous process's clients
	   join them (before the sweep, which would take an inherited but
	   unclaimed socket for a live one). */
	upgrade_resume_end();
	fdstore_reclaim_end();
	/* After the registry, so that the first scrape sees every VM. */
	if (scrape_open(err) == -1) {
		registry_stop();
		ctl_close();
		return (-1);
	}
	/* After the registry: what a killed broker left of VMs that are
	   gone, and journal records that wait for their VMs. */
	share_sweep();
	image_recover();
	/* After the event log: the fleet publishes what it holds. */
	if (fleet_start(err) == -1) {
		scrape_close();
		registry_stop();
		ctl_close();
		return (-1);
	}
	log_notice("qmpbrokerd %s ready on %s (%zu VMs)", PACKAGE_VERSION,
	    conf.control_path, vm_count());
	return (0);
}

static void
daemon_flush_timeout(evutil_socket_t fd, short what, void *arg)
{
	log_warn("%zu clients did not read their last replies",
	    client_count());
	event_base_loopexit(loop_base, NULL);
}

void
daemon_stop(void)
{
	struct timeval	tv = { DAEMON_FLUSH_MS / 1000,
			    (DAEMON_FLUSH_MS % 1000) * 1000 };

	if (loop_stopping())
		return;
	loop_set_stopping();
	log_notice("shutting down");
	ctl_close();
	scrape_close();
	fleet_stop();
	registry_stop();
	/* Every pending command and job fails now, into the clients'
	   queues. */
	jobs_stop();
	vm_remove_all();
	hotplug_shutdown();
	/* what the above published reaches the clients before they go */
	evlog_flush();
	client_shutdown_all();
	if (client_count() == 0) {
		event_base_loopexit(loop_base, NULL);
		return;
	}
	daemon_flush_ev = evtimer_new(loop_base, daemon_flush_timeout, NULL);
	if (daemon_flush_ev == NULL || evtimer_add(daemon_flush_ev, &tv) == -1)
		event_base_loopexit(loop_base, NULL);
}

void
daemon_cleanup(void)
{
	if (!loop_stopping()) {
		loop_set_stopping();
		ctl_close();
		scrape_close();
		registry_stop();
		jobs_stop();
	}
	client_free_all();
	/* Before the event log closes: its cursors. */
	fleet_cleanup();
	vm_cleanup();
	hotplug_shutdown();
	metrics_shutdown();
	/* last: what the above published is written */
	bus_log_stop();
	if (daemon_flush_ev != NULL)
		event_free(daemon_flush_ev);
	daemon_flush_ev = NULL;
	/* What client_free and vm_remove left for a later pass. */
	defer_flush();
	audit_close();
	policy_clear();
}

static int
daemon_same(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return (a == b);
	return (strcmp(a, b) == 0);
}

/* Paths are bound at start; the rest takes effect now. */
void
daemon_reload(void)
{
	struct conf		 n;
	struct qmp_error	 err;
	char			*keep[5];

	if (loop_stopping())
		return;
	if (conf_build(&n, daemon_argc, daemon_argv, &err) == -1) {
		log_err("reload failed, configuration unchanged: %s",
		    err.desc);
		conf_clear(&n);
		return;
	}
	/* A policy that does not parse keeps the old one, and the rest of
	   the old configuration with it: the two go together. */
	if (policy_load(n.policy_path, &err) == -1) {
		log_err("reload failed, policy and configuration unchanged: "
		    "%s", err.desc);
		conf_clear(&n);
		return;
	}
	if (!daemon_same(n.control_path, conf.control_path) ||
	    !daemon_same(n.run_dir, conf.run_dir) ||
	    !daemon_same(n.state_dir, conf.state_dir) ||
	    !daemon_same(n.vm_dir, conf.vm_dir) ||
	    !daemon_same(n.pid_file, conf.pid_file) ||
	    !daemon_same(n.metrics_listen, conf.metrics_listen))
		log_warn("reload: paths changed; they take effect on restart");
	/* The paths in use stay; the old struct frees the new ones. */
	keep[0] = n.control_path;
	keep[1] = n.run_dir;
	keep[2] = n.state_dir;
	keep[3] = n.vm_dir;
	keep[4] = n.pid_file;
	n.control_path = conf.control_path;
	n.run_dir = conf.run_dir;
	n.state_dir = conf.state_dir;
	n.vm_dir = conf.vm_dir;
	n.pid_file = conf.pid_file;
	n.foreground = conf.foreground;
	conf.control_path = keep[0];
	conf.run_dir = keep[1];
	conf.state_dir = keep[2];
	conf.vm_dir = keep[3];
	conf.pid_file = keep[4];
	/* Nothing keeps a pointer into conf past a loop pass (the job
	   workers get copies), so the old one can go at once. */
	conf_clear(&conf);
	conf = n;
	log_set_level(conf.log_level);
	/* Before the config's VMs: those added now get what it says. */
	share_sync_all();
	registry_sync_config();
	log_notice("configuration reloaded (%zu VMs)", vm_count());
}
