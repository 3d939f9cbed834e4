/*
 * qmpbrokerd: flags and config, daemonising, pid file, signals, loop.
 * Everything else is in the layers' libraries, so tests link the same
 * code.
 */
#include "config.h"

#include <sys/types.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/thread.h>

#include "broker/core/conf.h"
#include "broker/core/log.h"
#include "broker/core/loop.h"
#include "broker/daemon.h"
#include "broker/notify.h"
#include "broker/privsep.h"
#include "broker/upgrade.h"

/* A build may carry a tag in its version (the upgrade test's second
   binary: -DQB_BUILD_TAG='"+next"'), so that an upgrade shows. */
#ifndef QB_BUILD_TAG
#define QB_BUILD_TAG	""
#endif
#define MAIN_VERSION	PACKAGE_VERSION QB_BUILD_TAG

static int	pid_fd = -1;

static void
main_signal(evutil_socket_t sig, short what, void *arg)
{
	if (sig == SIGUSR2) {
		log_notice("SIGUSR2: upgrading");
		upgrade_start(NULL, NULL);
	} else if (sig == SIGHUP) {
		log_notice("SIGHUP: reloading %s", conf.config_path != NULL ?
		    conf.config_path : "flags");
		notify_reloading();
		daemon_reload();
		notify_reloaded();
	} else {
		log_notice("signal %d", (int)sig);
		notify_stopping();
		daemon_stop();
	}
}

/* As many fds as we may: each VM holds one (its monitor), two with its
   shared socket (vm-sockets), and one per shared client. */
static void
main_rlimit(void)
{
	struct rlimit	rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
			log_warn("setrlimit: %s", strerror(errno));
	}
}

/*
 * The pid file is also the lock that keeps a second broker out: a POSIX
 * record lock, which belongs to this process. Not flock: that lock
 * belongs to the open file description, and every child shares the
 * description from its fork until its exec closes it (posix_spawn's
 * closefrom too). A child slow to get there on a loaded machine, or
 * one that outlives a kill -9 of the broker, kept the restarted broker
 * out as "already running" with the dead broker's pid. A record lock
 * goes with this process, and no child ever holds it.
 */
static int
main_pidfile(struct qmp_error *err)
{
	struct flock	fl;
	char		buf[32];
	int		n;

	pid_fd = open(conf.pid_file, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (pid_fd == -1) {
		qmp_error_set(err, QMP_CLS_GENERIC, "%s: %s", conf.pid_file,
		    strerror(errno));
		return (-1);
	}
	memset(&fl, 0, sizeof fl);
	fl.l_type = F_WRLCK;
	fl.l_whence = SEEK_SET;
	if (fcntl(pid_fd, F_SETLK, &fl) == -1) {
		if (errno != EACCES && errno != EAGAIN) {
			qmp_error_set(err, QMP_CLS_GENERIC, "lock %s: %s",
			    conf.pid_file, strerror(errno));
		} else if (fcntl(pid_fd, F_GETLK, &fl) == 0 &&
		    fl.l_type != F_UNLCK) {
			/* The holder, not what the file says. */
			qmp_error_set(err, QMP_CLS_GENERIC, "already running "
			    "(pid %ld, %s)", (long)fl.l_pid, conf.pid_file);
		} else {
			n = (int)read(pid_fd, buf, sizeof buf - 1);
			buf[n > 0 ? n : 0] = '\0';
			buf[strcspn(buf, "\n")] = '\0';
			qmp_error_set(err, QMP_CLS_GENERIC, "already running "
			    "(pid %s, %s)", buf, conf.pid_file);
		}
		close(pid_fd);
		pid_fd = -1;
		return (-1);
	}
	n = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
	if (ftruncate(pid_fd, 0) == -1 || pwrite(pid_fd, buf, (size_t)n, 0) !=
	    n) {
		qmp_error_set(err, QMP_CLS_GENERIC, "%s: %s", conf.pid_file,
		    strerror(errno));
		return (-1);
	}
	return (0);
}

/* Fork away; the parent waits for the child's word that it listens, so
   "qmpbrokerd && client" works and start-up errors reach the caller. */
static int
main_daemonise(void)
{
	int	p[2], fd, keep_stderr = conf.log_syslog == 0;
	char	c;
	pid_t	pid;

	if (pipe2(p, O_CLOEXEC) == -1)
		return (-1);
	switch (pid = fork()) {
	case -1:
		return (-1);
	case 0:
		break;
	default:
		close(p[1]);
		if (read(p[0], &c, 1) == 1)
			_exit(0);
		_exit(1);
	}
	close(p[0]);
	if (setsid() == -1)
		return (-1);
	switch (fork()) {
	case -1:
		return (-1);
	case 0:
		break;
	default:
		_exit(0);
	}
	if (chdir("/") == -1)
		return (-1);
	if ((fd = open("/dev/null", O_RDWR)) != -1) {
		dup2(fd, 0);
		dup2(fd, 1);
		if (!keep_stderr)
			dup2(fd, 2);
		if (fd > 2)
			close(fd);
	}
	return (p[1]);
}

int
main(int argc, char **argv)
{
	struct event		*sig[4];
	const int		 sigs[] = { SIGTERM, SIGINT, SIGHUP, SIGUSR2 };
	struct qmp_error	 e;
	sigset_t		 unblock;
	int			 i, ready = -1, code = 0;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 ||
		    strcmp(argv[i], "-h") == 0) {
			conf_usage(stdout);
			return (0);
		}
		if (strcmp(argv[i], "--version") == 0 ||
		    strcmp(argv[i], "-V") == 0) {
			printf("qmpbrokerd %s\n", MAIN_VERSION);
			return (0);
		}
		/* What an upgrade asks of its target before handing over
		   (broker/upgrade.h): that it runs, and reads the state. */
		if (strcmp(argv[i], "--upgrade-format") == 0) {
			printf("qmpbrokerd %s\nupgrade-format %d\n",
			    MAIN_VERSION, UPGRADE_FORMAT);
			return (0);
		}
	}
	if (conf_build(&conf, argc, argv, &e) == -1) {
		fprintf(stderr, "qmpbrokerd: %s (see --help)\n", e.desc);
		return (2);
	}
	log_open(conf.log_level, conf.log_syslog == 1 ||
	    (conf.log_syslog == -1 && !conf.foreground));
	signal(SIGPIPE, SIG_IGN);
	main_rlimit();
	umask(022);

	upgrade_init(MAIN_VERSION, argv);
	/* An upgrade execs in place: the process already is the daemon;
	   separated, it is the child again, whose parent holds the pid
	   file and serves (privsep.h). */
	if (privsep_resume(upgrade_resuming(), &e) == -1) {
		log_err("%s", e.desc);
		return (1);
	}
	if (!conf.foreground && !upgrade_resuming() &&
	    (ready = main_daemonise()) == -1) {
		log_err("cannot daemonise: %s", strerror(errno));
		return (1);
	}
	if (!privsep_is_child() && loop_mkdirs_for(conf.pid_file, &e) == -1) {
		log_err("%s", e.desc);
		return (1);
	}
	if (!privsep_is_child() && main_pidfile(&e) == -1) {
		log_err("%s", e.desc);
		return (1);
	}
	/* Before any thread or loop: the privileged parent serves and
	   supervises from here, and only the child goes on. */
	switch (privsep_start(argc, argv, &ready, &code, &e)) {
	case -1:
		log_err("%s", e.desc);
		if (!privsep_is_child())
			unlink(conf.pid_file);
		return (1);
	case 1:
		unlink(conf.pid_file);
		close(pid_fd);
		conf_clear(&conf);
		return (code);
	}
	if (privsep_is_child() && pid_fd != -1) {
		/* The lock is the parent's (a record lock: never ours). */
		close(pid_fd);
		pid_fd = -1;
	}
	/* libvirt's event callbacks are (un)registered from job workers. */
	if (evthread_use_pthreads() == -1 ||
	    (loop_base = event_base_new()) == NULL) {
		log_err("cannot make the event loop");
		return (1);
	}
	if (daemon_start(argc, argv, &e) == -1) {
		log_err("%s", e.desc);
		daemon_cleanup();
		if (!privsep_is_child())
			unlink(conf.pid_file);
		return (1);
	}
	for (i = 0; i < 4; i++) {
		sig[i] = evsignal_new(loop_base, sigs[i], main_signal, NULL);
		if (sig[i] == NULL || evsignal_add(sig[i], NULL) == -1) {
			log_err("cannot watch signal %d", sigs[i]);
			return (1);
		}
	}
	/* An upgrade execs with SIGHUP and SIGUSR2 blocked, so that one
	   sent meanwhile waits for the watch above instead of killing. */
	sigemptyset(&unblock);
	sigaddset(&unblock, SIGHUP);
	sigaddset(&unblock, SIGUSR2);
	sigprocmask(SIG_UNBLOCK, &unblock, NULL);
	/* Started and every signal watched: a SIGHUP from here on is a
	   reload that systemd sees as RELOADING=1, then READY=1. */
	notify_ready();
	if (ready != -1) {
		if (write(ready, "R", 1) != 1)
			log_warn("parent gone before ready");
		close(ready);
	}

	event_base_dispatch(loop_base);

	daemon_cleanup();
	notify_cleanup();
	for (i = 0; i < 4; i++)
		event_free(sig[i]);
	event_base_free(loop_base);
	if (!privsep_is_child()) {
		unlink(conf.pid_file);
		close(pid_fd);
	}
	log_notice("stopped");
	conf_clear(&conf);
	return (0);
}
