/*
 * Shared per-VM monitors: RUNDIR/vm/NAME.qmp behaves like the VM's own
 * QMP socket, but any number of clients may hold it at once (QEMU takes
 * one). Each gets QEMU's greeting, negotiates on its own and keeps its own
 * ids: a request becomes a command of the VM's single monitor, whose ids
 * the monitor makes, and the reply goes back under the client's id. Every
 * event of the VM goes to every negotiated client, as QEMU sends it.
 *
 * A client that connects before QEMU has greeted the broker waits for
 * the greeting; when QEMU goes away its shared clients are closed, as
 * QEMU's own would be.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker/broker.h"

struct share {
	struct vm		*vm;
	struct lsn		*lsn;
	LIST_HEAD(, client)	 clients;
};

static void
share_accept(int fd, void *arg)
{
	struct share	*s = arg;
	struct client	*c;
	struct peer	 p;

	if (ctl_admit(fd, &p, lsn_path(s->lsn)) == -1)
		return;
	if (!ctl_vm_allowed(&p, vm_name(s->vm))) {
		log_warn("%s: refused uid %u gid %u pid %ld (vm-allow)",
		    lsn_path(s->lsn), (unsigned)p.uid, (unsigned)p.gid,
		    (long)p.pid);
		ctl_refuse(fd, "Permission denied");
		return;
	}
	if ((c = client_new(fd, CLIENT_SHARE, &p, s->vm)) == NULL) {
		ctl_refuse(fd, "out of memory");
		return;
	}
	c->share = s;
	LIST_INSERT_HEAD(&s->clients, c, share_entry);
	if (vm_state(s->vm) == MON_READY)
		client_greet(c);
}

struct share *
share_open(struct vm *vm, char *err, size_t errlen)
{
	struct share	*s;
	char		 path[128];

	if ((size_t)snprintf(path, sizeof path, "%s/vm/%s.qmp", conf.run_dir,
	    vm_name(vm)) >= sizeof path) {
		snprintf(err, errlen, "run dir path too long for %s",
		    vm_name(vm));
		return (NULL);
	}
	if ((s = calloc(1, sizeof *s)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return (NULL);
	}
	s->vm = vm;
	LIST_INIT(&s->clients);
	s->lsn = lsn_open(path, 0660, conf.socket_gid, 0, share_accept, s,
	    err, errlen);
	if (s->lsn == NULL) {
		free(s);
		return (NULL);
	}
	return (s);
}

void
share_detach(struct client *c)
{
	LIST_REMOVE(c, share_entry);
	c->share = NULL;
}

void
share_close(struct share *s)
{
	struct client	*c;

	if (s == NULL)
		return;
	while ((c = LIST_FIRST(&s->clients)) != NULL) {
		share_detach(c);
		c->vm = NULL;
		/* Commands in flight fail when the monitor goes; their
		   errors go out before the close. */
		client_shutdown_idle(c);
	}
	lsn_close(s->lsn);
	free(s);
}

const char *
share_path(const struct share *s)
{
	return (lsn_path(s->lsn));
}

void
share_vm_ready(struct share *s)
{
	struct client	*c;

	LIST_FOREACH(c, &s->clients, share_entry)
		client_greet(c);
}

void
share_vm_down(struct share *s)
{
	struct client	*c, *c1;

	LIST_FOREACH_SAFE(c, &s->clients, share_entry, c1) {
		if (c->greeted)
			client_shutdown_idle(c);
	}
}

void
share_event(struct share *s, json_t *ev)
{
	struct client	*c;
	char		*buf = NULL;
	size_t		 len;

	LIST_FOREACH(c, &s->clients, share_entry) {
		if (!c->negotiated)
			continue;
		if (buf == NULL && (buf = qmp_dump(ev, &len)) == NULL)
			return;
		client_send_event(c, buf, len);
	}
	free(buf);
}

void
share_request(struct req *r, struct client *c, const char *name,
    json_t *args)
{
	int	fds[16];
	size_t	n, i;

	if (c->vm == NULL) {
		req_error(r, QMP_CLS_GENERIC, "The VM has been removed");
		return;
	}
	n = req_nfds(r);
	if (n > sizeof fds / sizeof fds[0]) {
		req_error(r, QMP_CLS_GENERIC, "Too many file descriptors");
		return;
	}
	for (i = 0; i < n; i++)
		fds[i] = req_take_fd(r, i);
	/* The monitor dups what it sends, so ours close at once. */
	vm_execute(c->vm, name, json_incref(args), fds, n, vm_reply_req, r);
	for (i = 0; i < n; i++)
		close(fds[i]);
}
