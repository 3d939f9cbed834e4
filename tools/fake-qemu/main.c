/*
 * fake-qemu: a QEMU 7.2 stand-in for tests and benchmarks.
 *
 *   fake-qemu --socket PATH [--faults FILE] [--machine pc|q35]
 *             [--root-ports N] [--unplug-delay MS] [--running]
 *             [--incoming-defer] [--smp N] [--maxcpus M]
 *             [--mem-slots S] [--maxmem MIB]
 *   fake-qemu --sockets DIR --count N [--first F] [same options]
 *
 * The second form serves DIR/vm{F}.qmp .. DIR/vm{F+N-1}.qmp (F is 0 by
 * default) from one process, each an independent VM, so a benchmark can
 * hold thousands of VMs without thousands of processes; --first lets
 * several such processes share one dir and one naming when a single
 * process's fd limit cannot hold them all. Exits 0 once every VM got
 * "quit" (or on SIGTERM/SIGINT), removing its sockets; 2 on bad usage or
 * fault file.
 *
 * Known differences from QEMU 7.2, on purpose or for lack of a guest:
 * - the greeting's package says "(fake-qemu)";
 * - query-commands lists only what is implemented here;
 * - query-pci shows bridges numbered as firmware leaves them (QEMU with
 *   -S never run shows secondary 0 and no "devices");
 * - device_del with --unplug-delay 0 (default) completes at once, events
 *   before the reply, as QEMU does when unplug is synchronous; with a
 *   delay they follow it; -1 never (a guest that ignores the request);
 * - tap netdevs need fd/fds from getfd (checked with TUNGETIFF, as
 *   QEMU does); vhostfds are taken as they come (no /dev/vhost-net);
 * - blockdev-add really opens files and dups fdset fds, reads qcow2
 *   headers, records nbd/gluster without connecting, takes no locks;
 * - error, no-reply and eof-on faults swallow the command unexecuted;
 * - CPU and memory hotplug (cpumem.c): one socket, one thread per core;
 *   an unplugged CPU reports only its lapic's DEVICE_DELETED (QEMU 7.2
 *   under TCG); the limits of -smp/-m come from the options above;
 * - migration (migrate.c, --incoming-defer for a destination) sends 16 MiB
 *   of zeros paced by max-bandwidth over a real socket, in one pass plus
 *   a final one; the fault "migrate-fail N" fails it at N%.
 */
#include "config.h"

#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools/fake-qemu/fake.h"

#define FAKE_MAX_COUNT	100000

void *
xcalloc(size_t n, size_t sz)
{
	void	*p;

	if ((p = calloc(n == 0 ? 1 : n, sz == 0 ? 1 : sz)) == NULL)
		fake_fatal("out of memory");
	return (p);
}

void *
xreallocarray(void *p, size_t n, size_t sz)
{
	if (sz != 0 && n > SIZE_MAX / sz)
		fake_fatal("size overflow");
	if ((p = realloc(p, n * sz == 0 ? 1 : n * sz)) == NULL)
		fake_fatal("out of memory");
	return (p);
}

char *
xstrdup(const char *s)
{
	char	*p;

	if ((p = strdup(s)) == NULL)
		fake_fatal("out of memory");
	return (p);
}

/* Only for failures that leave nothing sane to serve (allocation). */
void
fake_fatal(const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	fputs("fake-qemu: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}

static void
vm_accept_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct vm	*vm = arg;

	if (vm->lev != NULL && vm->conn == NULL)
		event_add(vm->lev, NULL);
}

static void
vm_accept_cb(evutil_socket_t lfd, short what, void *arg)
{
	struct vm	*vm = arg;
	struct timeval	 retry = { 0, 200 * 1000 };
	int		 fd;

	if (vm->conn != NULL)
		return;
	fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0) {
		if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
			return;
		fprintf(stderr, "fake-qemu: accept %s: %s\n", vm->path,
		    strerror(errno));
		/* Out of fds: the pending client stays in the backlog; try
		   again later rather than spinning on a readable listener. */
		event_del(vm->lev);
		event_base_once(vm->fake->base, -1, EV_TIMEOUT,
		    vm_accept_retry_cb, vm, &retry);
		return;
	}
	conn_accept(vm, fd);
}

static int
vm_listen(struct vm *vm)
{
	struct sockaddr_un	sun;
	int			fd;

	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	/* Bound at the real path, not renamed into place: tests find the
	   server in /proc/net/unix, which keeps the name bound. Like QEMU's
	   server=on, a stale file at the path is replaced. */
	if (strlen(vm->path) >= sizeof sun.sun_path) {
		fprintf(stderr, "fake-qemu: %s: path too long\n", vm->path);
		return (-1);
	}
	memcpy(sun.sun_path, vm->path, strlen(vm->path) + 1);	/* length checked */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		fprintf(stderr, "fake-qemu: socket: %s\n", strerror(errno));
		return (-1);
	}
	unlink(vm->path);
	if (bind(fd, (struct sockaddr *)&sun, sizeof sun) != 0 ||
	    listen(fd, 16) != 0) {
		fprintf(stderr, "fake-qemu: %s: %s\n", vm->path,
		    strerror(errno));
		close(fd);
		return (-1);
	}
	vm->lfd = fd;
	vm->lev = event_new(vm->fake->base, fd, EV_READ | EV_PERSIST,
	    vm_accept_cb, vm);
	if (vm->lev == NULL)
		fake_fatal("out of memory");
	event_add(vm->lev, NULL);
	return (0);
}

static void
vm_unlisten(struct vm *vm)
{
	if (vm->lev == NULL)
		return;
	event_free(vm->lev);
	vm->lev = NULL;
	close(vm->lfd);
	vm->lfd = -1;
	unlink(vm->path);
}

/* After "quit" was answered and the client is gone. */
void
vm_quit_done(struct vm *vm)
{
	struct fake	*fake = vm->fake;

	if (vm->lev == NULL)
		return;
	vm_unlisten(vm);
	vm_free_state(vm);
	if (--fake->live == 0)
		event_base_loopexit(fake->base, NULL);
}

static void
fake_signal_cb(evutil_socket_t sig, short what, void *arg)
{
	event_base_loopexit(arg, NULL);
}

static void
usage(void)
{
	fprintf(stderr, "usage: fake-qemu --socket PATH | --sockets DIR "
	    "--count N [--first F]\n"
	    "       [--faults FILE] [--machine pc|q35] [--root-ports N]\n"
	    "       [--unplug-delay MS] [--running] [--smp N] [--maxcpus M]\n"
	    "       [--mem-slots S] [--maxmem MIB]\n"
	    "       [--incoming-defer]\n");
	exit(2);
}

static long
num_arg(const char *opt, const char *s, long min, long max)
{
	char	*end;
	long	 v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || *s == '\0' || *end != '\0' || v < min || v > max) {
		fprintf(stderr, "fake-qemu: %s: bad value '%s' (%ld..%ld)\n",
		    opt, s, min, max);
		exit(2);
	}
	return (v);
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "socket",	  required_argument, NULL, 's' },
		{ "sockets",	  required_argument, NULL, 'S' },
		{ "count",	  required_argument, NULL, 'n' },
		{ "first",	  required_argument, NULL, 'F' },
		{ "faults",	  required_argument, NULL, 'f' },
		{ "machine",	  required_argument, NULL, 'm' },
		{ "root-ports",	  required_argument, NULL, 'r' },
		{ "unplug-delay", required_argument, NULL, 'u' },
		{ "smp",	  required_argument, NULL, 'c' },
		{ "maxcpus",	  required_argument, NULL, 'C' },
		{ "mem-slots",	  required_argument, NULL, 'M' },
		{ "maxmem",	  required_argument, NULL, 'X' },
		{ "running",	  no_argument,	     NULL, 'R' },
		{ "incoming-defer", no_argument,     NULL, 'I' },
		{ NULL,		  0,		     NULL, 0 },
	};
	struct fake	 fake;
	struct vm	*vm;
	struct event	*sigterm, *sigint;
	struct rlimit	 rl;
	const char	*sock = NULL, *dir = NULL, *faults = NULL;
	long		 count = 0, first = -1;
	size_t		 i, j;
	int		 ch, rc = 0;
	char		 path[4096];

	memset(&fake, 0, sizeof fake);
	fake.machine = M_PC;
	fake.root_ports = 4;
	fake.smp = fake.maxcpus = 1;
	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 's':
			sock = optarg;
			break;
		case 'S':
			dir = optarg;
			break;
		case 'n':
			count = num_arg("--count", optarg, 1, FAKE_MAX_COUNT);
			break;
		case 'F':
			first = num_arg("--first", optarg, 0, FAKE_MAX_COUNT);
			break;
		case 'f':
			faults = optarg;
			break;
		case 'm':
			if (strcmp(optarg, "pc") == 0)
				fake.machine = M_PC;
			else if (strcmp(optarg, "q35") == 0)
				fake.machine = M_Q35;
			else {
				fprintf(stderr, "fake-qemu: --machine: pc or "
				    "q35\n");
				exit(2);
			}
			break;
		case 'r':
			fake.root_ports = num_arg("--root-ports", optarg, 0,
			    29);
			break;
		case 'u':
			fake.unplug_delay = num_arg("--unplug-delay", optarg,
			    -1, 3600000);
			break;
		case 'c':
			fake.smp = num_arg("--smp", optarg, 1, 255);
			break;
		case 'C':
			fake.maxcpus = num_arg("--maxcpus", optarg, 1, 255);
			break;
		case 'M':
			fake.mem_slots = num_arg("--mem-slots", optarg, 0, 256);
			break;
		case 'X':
			/* MiB */
			fake.maxmem = (long long)num_arg("--maxmem", optarg,
			    0, 1 << 20) << 20;
			break;
		case 'R':
			fake.start_running = 1;
			break;
		case 'I':
			fake.incoming_defer = 1;
			break;
		default:
			usage();
		}
	}
	if (optind != argc || (sock == NULL) == (dir == NULL) ||
	    (dir != NULL && count == 0) || (sock != NULL && count != 0) ||
	    (sock != NULL && first != -1))
		usage();
	if (first == -1)
		first = 0;
	if (fake.maxcpus < fake.smp)
		fake.maxcpus = fake.smp;
	if (faults != NULL && fault_load(&fake.faults, faults) != 0)
		exit(2);

	signal(SIGPIPE, SIG_IGN);
	/* Two fds per VM (listener and client) in scale mode, plus what a
	   client passes; root may raise the hard limit too. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rlim_t want = 2 * (rlim_t)(count > 0 ? count : 1) + 1024;
		if (rl.rlim_max < want) {
			struct rlimit more = { want, want };
			if (setrlimit(RLIMIT_NOFILE, &more) == 0)
				rl = more;
		}
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if ((fake.base = event_base_new()) == NULL)
		fake_fatal("event_base_new failed");
	pci_init();

	/* Before any socket exists, so SIGTERM always cleans up. */
	sigterm = evsignal_new(fake.base, SIGTERM, fake_signal_cb, fake.base);
	sigint = evsignal_new(fake.base, SIGINT, fake_signal_cb, fake.base);
	evsignal_add(sigterm, NULL);
	evsignal_add(sigint, NULL);
	fake.nvms = sock != NULL ? 1 : (size_t)count;
	fake.vms = xcalloc(fake.nvms, sizeof *fake.vms);
	for (i = 0; i < fake.nvms; i++) {
		vm = fake.vms[i] = xcalloc(1, sizeof *vm);
		vm->fake = &fake;
		vm->lfd = -1;
		vm->running = vm->started = fake.start_running &&
		    !fake.incoming_defer;
		vm->inmigrate = fake.incoming_defer;
		if (sock != NULL)
			vm->path = xstrdup(sock);
		else {
			snprintf(path, sizeof path, "%s/vm%ld.qmp", dir,
			    first + (long)i);
			vm->path = xstrdup(path);
		}
		if (vm_listen(vm) != 0) {
			for (j = 0; j < i; j++)
				vm_unlisten(fake.vms[j]);
			exit(2);
		}
		fake.live++;
	}

	if (event_base_dispatch(fake.base) < 0)
		rc = 1;

	for (i = 0; i < fake.nvms; i++) {
		vm = fake.vms[i];
		if (vm->conn != NULL)
			conn_close(vm->conn);
		vm_unlisten(vm);
		vm_free_state(vm);
		free(vm->path);
		free(vm);
	}
	free(fake.vms);
	event_free(sigterm);
	event_free(sigint);
	/* Run the deferred frees of closed connections. */
	event_base_loop(fake.base, EVLOOP_NONBLOCK);
	event_base_free(fake.base);
	for (i = 0; i < fake.faults.n; i++) {
		free(fake.faults.v[i].name);
		free(fake.faults.v[i].cls);
		free(fake.faults.v[i].desc);
	}
	free(fake.faults.v);
	return (rc);
}
