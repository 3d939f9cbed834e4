/*
 * A QMP client connection for the benchmark: hv/chan underneath (the same
 * framing and buffers the broker uses), greeting and qmp_capabilities
 * handled here, then replies by id and events to the scenario.
 */
#include "config.h"

#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hv/chan.h"
#include "tools/qmpbench/qmpbench.h"

#define QB_CAPS_ID	0

struct qb_conn {
	struct chan	*ch;
	int		 greeted;
	int		 ready;
	int		 dead;
	const char	*why;
	qb_reply_fn	*reply;
	qb_event_fn	*event;
	void		*arg;
	/* qb_conn_call */
	uint64_t	 call_id;
	json_t		*call_ret;
	int		 waiting;
};

static void
qb_conn_msg(struct chan *ch, json_t *msg, int *fds, size_t nfds, void *arg)
{
	struct qb_conn	*c = arg;
	json_t		*id;
	uint64_t	 v;
	size_t		 i;

	for (i = 0; i < nfds; i++)
		close(fds[i]);
	if (!c->greeted) {
		if (json_object_get(msg, "QMP") == NULL) {
			c->dead = 1;
			c->why = "no greeting";
			event_base_loopbreak(qb_base);
			return;
		}
		c->greeted = 1;
		static const char caps[] =
		    "{\"execute\":\"qmp_capabilities\",\"id\":0}\r\n";

		qb_conn_send(c, caps, sizeof caps - 1, NULL, 0);
		return;
	}
	if (json_object_get(msg, "event") != NULL) {
		if (c->event != NULL)
			c->event(c, msg, c->arg);
		return;
	}
	id = json_object_get(msg, "id");
	v = json_is_integer(id) ? (uint64_t)json_integer_value(id) : 0;
	if (!c->ready) {
		if (v != QB_CAPS_ID || json_object_get(msg, "return") == NULL) {
			c->dead = 1;
			c->why = "qmp_capabilities refused";
		} else
			c->ready = 1;
		event_base_loopbreak(qb_base);
		return;
	}
	if (c->waiting && v == c->call_id) {
		c->call_ret = json_incref(msg);
		c->waiting = 0;
		event_base_loopbreak(qb_base);
		return;
	}
	if (c->reply != NULL)
		c->reply(c, msg, v, c->arg);
}

static void
qb_conn_closed(struct chan *ch, const char *why, void *arg)
{
	struct qb_conn	*c = arg;

	c->dead = 1;
	c->why = "connection closed";
	event_base_loopbreak(qb_base);
}

static const struct chan_ops qb_conn_ops = {
	.msg = qb_conn_msg,
	.closed = qb_conn_closed,
};

struct qb_conn *
qb_conn_open(const char *path, qb_reply_fn *reply, qb_event_fn *event,
    void *arg, const char **why)
{
	struct sockaddr_un	 sun;
	struct qb_conn		*c;
	double			 until;
	int			 fd;

	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof sun.sun_path) {
		*why = "path too long";
		return (NULL);
	}
	memcpy(sun.sun_path, path, strlen(path) + 1);	/* length checked */
	if ((fd = socket(AF_UNIX, SOCK_STREAM|SOCK_CLOEXEC, 0)) == -1) {
		*why = strerror(errno);
		return (NULL);
	}
	if (connect(fd, (struct sockaddr *)&sun, sizeof sun) == -1) {
		*why = strerror(errno);
		close(fd);
		return (NULL);
	}
	if ((c = calloc(1, sizeof *c)) == NULL)
		qb_fatal("out of memory");
	c->reply = reply;
	c->event = event;
	c->arg = arg;
	if ((c->ch = chan_new(qb_base, fd, NULL, &qb_conn_ops, c)) == NULL)
		qb_fatal("chan_new failed");
	until = qb_now() + 30;
	while (!c->ready && !c->dead && qb_now() < until)
		qb_run_for(until - qb_now());
	if (!c->ready) {
		*why = c->dead ? c->why : "negotiation timed out";
		qb_conn_close(c);
		return (NULL);
	}
	return (c);
}

void
qb_conn_close(struct qb_conn *c)
{
	if (c == NULL)
		return;
	chan_free(c->ch);
	json_decref(c->call_ret);
	free(c);
}

int
qb_conn_dead(const struct qb_conn *c)
{
	return (c->dead);
}

void *
qb_conn_arg(const struct qb_conn *c)
{
	return (c->arg);
}

int
qb_conn_send(struct qb_conn *c, const char *buf, size_t len, const int *fds,
    size_t nfds)
{
	if (c->dead)
		return (-1);
	return (chan_send(c->ch, buf, len, fds, nfds));
}

json_t *
qb_conn_call(struct qb_conn *c, const char *name, json_t *args,
    double timeout)
{
	static uint64_t	 next = 1ULL << 62;	/* apart from scenario ids */
	json_t		*cmd, *ret;
	double		 until;

	cmd = json_pack("{s:s,s:I}", "execute", name, "id",
	    (json_int_t)++next);
	if (args != NULL)
		json_object_set_new(cmd, "arguments", args);
	c->call_id = next;
	c->waiting = 1;
	if (cmd == NULL || chan_send_json(c->ch, cmd) == -1) {
		json_decref(cmd);
		c->waiting = 0;
		return (NULL);
	}
	json_decref(cmd);
	until = qb_now() + timeout;
	while (c->waiting && !c->dead && qb_now() < until)
		qb_run_for(until - qb_now());
	c->waiting = 0;
	ret = c->call_ret;
	c->call_ret = NULL;
	return (ret);
}
