/*
 * Test helpers: child processes, fd accounting, a guarded event loop.
 */
#include "config.h"

#include <sys/types.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tests/unit/testutil.h"

extern char **environ;

unsigned long long
tu_now_ms(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *
tu_build_path(const char *name)
{
	static char	 buf[PATH_MAX + 64];
	char		 self[PATH_MAX], *slash;
	const char	*dir;
	ssize_t		 n;
	int		 i;

	if ((dir = getenv("QB_BUILDDIR")) != NULL && *dir != '\0') {
		snprintf(buf, sizeof buf, "%.*s/%s", PATH_MAX - 1, dir, name);
		return buf;
	}
	/* BUILDDIR/tests/unit/test_x: up three components */
	if ((n = readlink("/proc/self/exe", self, sizeof self - 1)) <= 0)
		return name;
	self[n] = '\0';
	for (i = 0; i < 3; i++) {
		if ((slash = strrchr(self, '/')) == NULL)
			return name;
		*slash = '\0';
	}
	snprintf(buf, sizeof buf, "%s/%s", self[0] != '\0' ? self : "/", name);
	return buf;
}

int
tu_fd_count(void)
{
	DIR		*d;
	struct dirent	*de;
	int		 n = 0;

	if ((d = opendir("/proc/self/fd")) == NULL)
		return -1;
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1;	/* the directory's own fd */
}

/* Is there a listening unix socket bound to path? */
static int
tu_listening(const char *path)
{
	FILE		*f;
	char		 line[512], p[256];
	unsigned long	 flags;
	int		 found = 0;

	if ((f = fopen("/proc/net/unix", "re")) == NULL)
		return 0;
	while (fgets(line, sizeof line, f) != NULL) {
		/* Num RefCount Protocol Flags Type St Inode Path */
		if (sscanf(line, "%*s %*s %*s %lx %*s %*s %*s %255s", &flags,
		    p) != 2)
			continue;
		if ((flags & 0x10000) && strcmp(p, path) == 0) {
			found = 1;
			break;
		}
	}
	fclose(f);
	return found;
}

int
tu_wait_listening(const char *path, pid_t pid)
{
	unsigned long long	 end = tu_now_ms() + TU_DEADLINE_MS;
	struct timespec		 ts = { 0, 5 * 1000 * 1000 };
	int			 status;

	/* Polling the kernel's table rather than connecting: a probe
	   connection would be the server's first client and eat 'once'
	   fault directives. */
	while (!tu_listening(path)) {
		if (pid > 0 && waitpid(pid, &status, WNOHANG) == pid) {
			fprintf(stderr, "server for %s exited early (%d)\n",
			    path, status);
			return -1;
		}
		if (tu_now_ms() > end) {
			fprintf(stderr, "nothing listens on %s\n", path);
			return -1;
		}
		nanosleep(&ts, NULL);
	}
	return 0;
}

static int
tu_fake_spawn(struct tu_fake *f)
{
	const char	*argv[10];
	const char	*bin = tu_build_path("fake-qemu");
	int		 argc = 0, rc;

	argv[argc++] = bin;
	argv[argc++] = "--socket";
	argv[argc++] = f->sock;
	if (f->faults[0] != '\0') {
		argv[argc++] = "--faults";
		argv[argc++] = f->faults;
	}
	if (f->machine[0] != '\0') {
		argv[argc++] = "--machine";
		argv[argc++] = f->machine;
	}
	argv[argc] = NULL;
	unlink(f->sock);
	rc = posix_spawn(&f->pid, bin, NULL, NULL, (char *const *)argv,
	    environ);
	if (rc != 0) {
		fprintf(stderr, "spawn %s: %s\n", bin, strerror(rc));
		f->pid = -1;
		return -1;
	}
	if (tu_wait_listening(f->sock, f->pid) == -1) {
		tu_fake_kill(f);
		return -1;
	}
	return 0;
}

int
tu_fake_start(struct tu_fake *f, const char *faults)
{
	FILE	*fp;

	memset(f, 0, sizeof *f);
	f->pid = -1;
	snprintf(f->dir, sizeof f->dir, "/tmp/qb-test.XXXXXX");
	if (mkdtemp(f->dir) == NULL) {
		perror("mkdtemp");
		return -1;
	}
	snprintf(f->sock, sizeof f->sock, "%s/qmp.sock", f->dir);
	if (faults != NULL) {
		snprintf(f->faults, sizeof f->faults, "%s/faults", f->dir);
		if ((fp = fopen(f->faults, "we")) == NULL) {
			perror(f->faults);
			return -1;
		}
		fputs(faults, fp);
		fclose(fp);
	}
	return tu_fake_spawn(f);
}

void
tu_fake_kill(struct tu_fake *f)
{
	if (f->pid <= 0)
		return;
	kill(f->pid, SIGKILL);
	while (waitpid(f->pid, NULL, 0) == -1 && errno == EINTR)
		;
	f->pid = -1;
}

int
tu_fake_restart(struct tu_fake *f)
{
	tu_fake_kill(f);
	return tu_fake_spawn(f);
}

void
tu_fake_stop(struct tu_fake *f)
{
	unsigned long long	end;
	struct timespec		ts = { 0, 5 * 1000 * 1000 };

	if (f->pid > 0) {
		kill(f->pid, SIGTERM);
		end = tu_now_ms() + TU_DEADLINE_MS;
		while (waitpid(f->pid, NULL, WNOHANG) == 0) {
			if (tu_now_ms() > end) {
				tu_fake_kill(f);
				break;
			}
			nanosleep(&ts, NULL);
		}
		f->pid = -1;
	}
	if (f->faults[0] != '\0')
		unlink(f->faults);
	if (f->sock[0] != '\0')
		unlink(f->sock);
	if (f->dir[0] != '\0')
		rmdir(f->dir);
}

static void
tu_tick(evutil_socket_t fd, short what, void *arg)
{
	/* only there to make EVLOOP_ONCE come back to check the deadline */
}

void
tu_guard_init(struct tu_guard *g, struct event_base *base, int ms)
{
	struct timeval	tv = { 0, 50 * 1000 };

	g->base = base;
	g->end = tu_now_ms() + (unsigned long long)ms;
	g->tick = event_new(base, -1, EV_PERSIST, tu_tick, NULL);
	event_add(g->tick, &tv);
}

int
tu_guard_step(struct tu_guard *g)
{
	if (tu_now_ms() > g->end)
		return -1;
	event_base_loop(g->base, EVLOOP_ONCE);
	return 0;
}

void
tu_guard_done(struct tu_guard *g)
{
	event_free(g->tick);
}

void
tu_spin(struct event_base *base, int rounds)
{
	while (rounds-- > 0)
		event_base_loop(base, EVLOOP_NONBLOCK);
}
