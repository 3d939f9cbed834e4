/*
 * The daemon's life on its loop: start (dirs, control socket, registry),
 * reload (SIGHUP), and a clean stop that answers every pending command
 * with an error and unlinks every socket before the loop ends.
 */
#include "config.h"

#include <sys/stat.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker/broker.h"
#include "broker/cmd_hp.h"
#include "broker/jobs.h"

#define DAEMON_FLUSH_MS	2000	/* clients get this long to read */

struct event_base	*broker_base;

static int		 daemon_stop_flag;
static struct event	*daemon_flush_ev;
static struct qmp_version daemon_ver;
static int		 daemon_argc;
static char		**daemon_argv;
/* Configurations replaced by SIGHUP: other modules (and job workers)
   may still hold their strings, so they live until exit. */
static struct conf	*daemon_retired;
static size_t		 daemon_nretired;

const struct qmp_version *
daemon_version(void)
{
	if (daemon_ver.package[0] == '\0') {
		sscanf(PACKAGE_VERSION, "%d.%d.%d", &daemon_ver.major,
		    &daemon_ver.minor, &daemon_ver.micro);
		snprintf(daemon_ver.package, sizeof daemon_ver.package,
		    "qmpbroker %s", PACKAGE_VERSION);
	}
	return (&daemon_ver);
}

int
daemon_stopping(void)
{
	return (daemon_stop_flag);
}

/* mkdir -p, leaving existing dirs as they are. */
static int
daemon_mkdirs(const char *path, mode_t mode, char *err, size_t errlen)
{
	char	*p, *s, c;

	if ((p = strdup(path)) == NULL)
		return (-1);
	for (s = p + 1; ; s++) {
		if (*s != '/' && *s != '\0')
			continue;
		c = *s;
		*s = '\0';
		if (mkdir(p, mode) == -1 && errno != EEXIST) {
			snprintf(err, errlen, "mkdir %s: %s", p,
			    strerror(errno));
			free(p);
			return (-1);
		}
		if (c == '\0')
			break;
		*s = c;
	}
	free(p);
	return (0);
}

int
daemon_mkdirs_for(const char *file, char *err, size_t errlen)
{
	char	*d, *slash;
	int	 rc = 0;

	if ((d = strdup(file)) == NULL)
		return (-1);
	if ((slash = strrchr(d, '/')) != NULL && slash != d) {
		*slash = '\0';
		rc = daemon_mkdirs(d, 0755, err, errlen);
	}
	free(d);
	return (rc);
}

int
daemon_start(int argc, char **argv, char *err, size_t errlen)
{
	char	*vmdir;

	daemon_argc = argc;
	daemon_argv = argv;
	if (daemon_mkdirs(conf.run_dir, 0755, err, errlen) == -1 ||
	    daemon_mkdirs(conf.state_dir, 0700, err, errlen) == -1 ||
	    daemon_mkdirs_for(conf.control_path, err, errlen) == -1)
		return (-1);
	if (asprintf(&vmdir, "%s/vm", conf.run_dir) == -1)
		return (-1);
	if (daemon_mkdirs(vmdir, 0755, err, errlen) == -1) {
		free(vmdir);
		return (-1);
	}
	if (conf.socket_gid != -1 &&
	    chown(vmdir, (uid_t)-1, (gid_t)conf.socket_gid) == -1)
		log_warn("chown %s: %s", vmdir, strerror(errno));
	free(vmdir);
	if (jobs_start(broker_base) == -1) {
		snprintf(err, errlen, "cannot start %d job workers or libvirt's "
		    "event loop", conf.workers);
		return (-1);
	}
	/* The control socket first: it fails if another broker runs here,
	   before we touch that broker's shared sockets. */
	if (ctl_open(err, errlen) == -1)
		return (-1);
	if (registry_start(err, errlen) == -1) {
		ctl_close();
		return (-1);
	}
	/* After the registry: journal records wait for their VMs. */
	cmd_hp_init();
	image_recover();
	log_notice("qmpbrokerd %s ready on %s (%zu VMs)", PACKAGE_VERSION,
	    conf.control_path, vm_count());
	return (0);
}

static void
daemon_flush_timeout(evutil_socket_t fd, short what, void *arg)
{
	log_warn("%zu clients did not read their last replies", nclients);
	event_base_loopexit(broker_base, NULL);
}

void
daemon_stop(void)
{
	struct timeval	tv = { DAEMON_FLUSH_MS / 1000,
			    (DAEMON_FLUSH_MS % 1000) * 1000 };

	if (daemon_stop_flag)
		return;
	daemon_stop_flag = 1;
	log_notice("shutting down");
	ctl_close();
	registry_stop();
	/* Every pending command and job fails now, into the clients'
	   queues. */
	jobs_stop();
	vm_remove_all();
	cmd_hp_shutdown();
	client_shutdown_all();
	if (nclients == 0) {
		event_base_loopexit(broker_base, NULL);
		return;
	}
	daemon_flush_ev = evtimer_new(broker_base, daemon_flush_timeout, NULL);
	if (daemon_flush_ev == NULL || evtimer_add(daemon_flush_ev, &tv) == -1)
		event_base_loopexit(broker_base, NULL);
}

/* After the loop: whatever is left goes. */
void
daemon_cleanup(void)
{
	struct client	*c;

	if (!daemon_stop_flag) {
		daemon_stop_flag = 1;
		ctl_close();
		registry_stop();
		jobs_stop();
	}
	while ((c = TAILQ_FIRST(&clients)) != NULL)
		client_free(c);
	vm_cleanup();
	cmd_hp_shutdown();
	if (daemon_flush_ev != NULL)
		event_free(daemon_flush_ev);
	daemon_flush_ev = NULL;
	while (daemon_nretired > 0)
		conf_clear(&daemon_retired[--daemon_nretired]);
	free(daemon_retired);
	daemon_retired = NULL;
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
	struct conf	 n, *old;
	char		 err[1024];
	char		*keep[5];

	if (daemon_stop_flag)
		return;
	if (conf_build(&n, daemon_argc, daemon_argv, err, sizeof err) == -1) {
		log_err("reload failed, configuration unchanged: %s", err);
		conf_clear(&n);
		return;
	}
	if (!daemon_same(n.control_path, conf.control_path) ||
	    !daemon_same(n.run_dir, conf.run_dir) ||
	    !daemon_same(n.state_dir, conf.state_dir) ||
	    !daemon_same(n.vm_dir, conf.vm_dir) ||
	    !daemon_same(n.pid_file, conf.pid_file))
		log_warn("reload: paths changed; they take effect on restart");
	if ((old = reallocarray(daemon_retired, daemon_nretired + 1,
	    sizeof *old)) == NULL) {
		log_err("reload: out of memory, configuration unchanged");
		conf_clear(&n);
		return;
	}
	daemon_retired = old;
	/* The paths in use stay; the retired struct frees the new ones. */
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
	daemon_retired[daemon_nretired++] = conf;
	conf = n;
	log_set_level(conf.log_level);
	/* Before the config's VMs: those added now get what it says. */
	vm_foreach(vm_share_sync, NULL);
	registry_sync_config();
	log_notice("configuration reloaded (%zu VMs)", vm_count());
}
