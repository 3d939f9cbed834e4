/*
 * Internals shared by the daemon's own modules (tmux.h style). Other
 * layers and helpers' modules use only cmd.h, vm.h, sub.h and conf.h.
 */
#ifndef BROKER_BROKER_H
#define BROKER_BROKER_H

#include <sys/types.h>
#include <sys/queue.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <syslog.h>
#include <event2/event.h>
#include <jansson.h>

#include "broker/cmd.h"
#include "broker/conf.h"
#include "broker/vm.h"
#include "proto/qmp_msg.h"

/* glibc's sys/queue.h lacks the _SAFE walkers. */
#ifndef TAILQ_FOREACH_SAFE
#define TAILQ_FOREACH_SAFE(var, head, field, tvar)			\
	for ((var) = TAILQ_FIRST(head);					\
	    (var) && ((tvar) = TAILQ_NEXT(var, field), 1);		\
	    (var) = (tvar))
#endif
#ifndef LIST_FOREACH_SAFE
#define LIST_FOREACH_SAFE(var, head, field, tvar)			\
	for ((var) = LIST_FIRST(head);					\
	    (var) && ((tvar) = LIST_NEXT(var, field), 1);		\
	    (var) = (tvar))
#endif

extern struct event_base *broker_base;

/* ---- log.c ---- */
void	log_open(int level, int use_syslog);
void	log_set_level(int);
int	log_get_level(void);
int	log_level_parse(const char *);		/* -1 if unknown */
const char *log_level_name(int);
void	log_msg(int prio, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));
#define log_debug(...)	log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...)	log_msg(LOG_INFO, __VA_ARGS__)
#define log_notice(...)	log_msg(LOG_NOTICE, __VA_ARGS__)
#define log_warn(...)	log_msg(LOG_WARNING, __VA_ARGS__)
#define log_err(...)	log_msg(LOG_ERR, __VA_ARGS__)

/* ---- conf.c ---- */
void	conf_init(struct conf *);		/* defaults */
void	conf_clear(struct conf *);		/* frees what it holds */
int	conf_set(struct conf *, const char *key, const char *value,
	    char *err, size_t errlen);
int	conf_load_file(struct conf *, const char *path, char *err,
	    size_t errlen);
/* Defaults, then the config file (--config or the default one if it
   exists), then flags. argv[0] is skipped. */
int	conf_build(struct conf *, int argc, char **argv, char *err,
	    size_t errlen);
void	conf_usage(FILE *);

/* ---- listen.c: listening unix sockets ---- */
struct lsn;
typedef void lsn_accept_fn(int fd, void *arg);
struct lsn *lsn_open(const char *path, int mode, int gid, int check_live,
	    lsn_accept_fn *, void *arg, char *err, size_t errlen);
/* Closes and unlinks the socket path. */
void	lsn_close(struct lsn *);
const char *lsn_path(const struct lsn *);
/* accept() failed with EMFILE somewhere: every listener backs off. */
void	lsn_resume_all(void);

/* ---- ctl.c: the control socket and the access policy ---- */
struct peer {
	uid_t	uid;
	gid_t	gid;
	pid_t	pid;
};
int	ctl_open(char *err, size_t errlen);
void	ctl_close(void);
/* Fills *p from SO_PEERCRED; 0 if the peer may connect. */
int	ctl_peer_check(int fd, struct peer *p, const char *what);
/* 1 if p may act on VM name (vm-allow); a VM without a list: everyone. */
int	ctl_vm_allowed(const struct peer *p, const char *name);
/* Best-effort error line, then close(fd). */
void	ctl_refuse(int fd, const char *desc);
/* Common admission for every accepted socket: peer check and max
   clients. Returns 0 with *p filled, or -1 having refused fd. */
int	ctl_admit(int fd, struct peer *p, const char *what);

/* ---- cmd.c: requests ---- */
struct req;
typedef void req_done_fn(struct req *, json_t *ret,
	    const struct qmp_error *err, void *arg);
/* id and fds are stolen. done (the finisher) gets ret stolen, err
   borrowed, and must not free the req: req_finish does. */
struct req *req_new(struct client *, const struct peer *, json_t *id,
	    int *fds, size_t nfds, req_done_fn *, void *arg);
json_t	*req_id(const struct req *);
void	*req_arg(const struct req *);
void	req_detach(struct req *);		/* the client is gone */
/* A request of c finished (c may resume reading). */
void	client_req_finished(struct client *);
/* Runs name with args on behalf of r (validating PRECAP/FDS). */
void	cmd_dispatch(struct req *, const char *name, json_t *args,
	    int negotiated);
int	cmd_precap_only(const char *name);

/* ---- client.c: one session on a control or shared socket ---- */
enum client_kind {
	CLIENT_CONTROL,
	CLIENT_SHARE,
};

struct sub;
TAILQ_HEAD(sub_head, sub);
LIST_HEAD(req_list, req);

struct client {
	uint64_t		 id;
	enum client_kind	 kind;
	struct chan		*chan;
	struct peer		 peer;
	struct vm		*vm;		/* CLIENT_SHARE; NULL once gone */
	struct share		*share;
	LIST_ENTRY(client)	 share_entry;

	int			 greeted;
	int			 negotiated;
	int			 closing;	/* no more input */
	int			 draining;	/* closing once nreqs is 0 */
	int			 paused;

	struct req_list		 reqs;		/* in flight */
	size_t			 nreqs;

	/* Output accounting: bytes ever queued, so "was this reply
	   written?" is queued - outq >= its end. */
	uint64_t		 queued;
	uint64_t		 last_reply_end;
	uint64_t		 stall_mark;
	struct event		*stall_ev;
	uint64_t		 dropped;	/* events not queued */
	uint64_t		 dropped_total;

	struct sub_head		 subs;
	uint32_t		 next_sub;
	size_t			 nsubs;
	TAILQ_ENTRY(client)	 sub_entry;	/* clients with subs */

	TAILQ_ENTRY(client)	 entry;		/* all clients */
};
TAILQ_HEAD(client_head, client);
extern struct client_head clients;
extern size_t nclients;

struct client *client_new(int fd, enum client_kind, const struct peer *,
	    struct vm *);
void	client_free(struct client *);
void	client_greet(struct client *);
void	client_set_negotiated(struct client *);
/* Queue an event's bytes, subject to the queue limit. */
void	client_send_event(struct client *, const char *, size_t);
/* Stop reading, flush, then go (shutdown, shared VM gone). */
void	client_shutdown(struct client *);
/* The same, once every request in flight has been answered. */
void	client_shutdown_idle(struct client *);
void	client_shutdown_all(void);

/* ---- sub.c ---- */
/* True if any of the client's subscriptions matches. vm may be NULL. */
bool	sub_wants(const struct client *, const char *vm, const char *event);
bool	sub_glob_ok(const char *);
void	sub_client_free(struct client *);
/* A VM event from QEMU: to subscribers, with "vm" added. */
void	sub_vm_event(const char *vm, json_t *event);
json_t	*sub_timestamp_now(void);

/* ---- vm.c ---- */
#define VM_NAME_MAX	64
enum vm_origin {
	VM_ORIGIN_API	 = 0x1,
	VM_ORIGIN_CONFIG = 0x2,
	VM_ORIGIN_DIR	 = 0x4,
	VM_ORIGIN_LIBVIRT = 0x8,	/* a domain libvirt runs; not saved */
};
bool	vm_name_valid(const char *);
/* A VM's own say on its shared socket (vm-add's "shared-socket"). */
enum vm_share_pref {
	VM_SHARE_CONF = -1,		/* as vm-sockets says */
	VM_SHARE_NO = 0,
	VM_SHARE_YES = 1,
};
/* Validates; err says why on failure (NULL returned). */
struct vm *vm_add(const char *name, const char *socket, unsigned origin,
	    enum vm_share_pref, struct qmp_error *err);
void	vm_remove(struct vm *);
void	vm_remove_all(void);
void	vm_cleanup(void);		/* at exit */
const char *vm_socket(const struct vm *);
unsigned vm_origin(const struct vm *);
void	vm_set_origin(struct vm *, unsigned);
const char *vm_shared_path(const struct vm *);
enum vm_share_pref vm_share_pref(const struct vm *);
const struct qmp_version *vm_version(const struct vm *);
size_t	vm_count(void);
/* All VMs, sorted by name; caller frees the array. */
struct vm **vm_list(size_t *n);
void	vm_foreach(void (*)(struct vm *, void *), void *);
struct share *vm_share(const struct vm *);
/* Shared socket opened or closed to match the VM's own preference, else
   conf.vm_sockets (vm_foreach on reload); arg unused. */
void	vm_share_sync(struct vm *, void *);

/* ---- share.c: RUNDIR/vm/NAME.qmp ---- */
struct share;
struct share *share_open(struct vm *, char *err, size_t errlen);
void	share_close(struct share *);
const char *share_path(const struct share *);
/* A request on a shared socket (after qmp_capabilities): to QEMU. */
void	share_request(struct req *, struct client *, const char *name,
	    json_t *args);
void	share_detach(struct client *);
void	share_vm_ready(struct share *);
void	share_vm_down(struct share *);
void	share_event(struct share *, json_t *event);

/* ---- registry.c ---- */
struct reg_entry {
	char	*name;
	char	*socket;
	enum vm_share_pref share;	/* "shared-socket", if saved */
};
/* Pure parser of the state file's bytes: valid entries go to *out,
   problems are counted in *bad and described in why. Returns -1 if
   the file as a whole is unusable. */
int	registry_parse(const char *buf, size_t len, struct reg_entry **out,
	    size_t *n, size_t *bad, char *why, size_t whylen);
void	registry_entries_free(struct reg_entry *, size_t);
/* temp file, fsync, rename, fsync dir. */
int	registry_write_atomic(const char *path, const char *buf, size_t len,
	    char *err, size_t errlen);
char	*registry_serialise(size_t *len);
int	registry_start(char *err, size_t errlen);
void	registry_stop(void);
/* Something persistent changed: save soon. r (may be NULL) is answered
   with ret once the save is on disk. */
void	registry_dirty(struct req *r, json_t *ret);
void	registry_sync_config(void);
void	registry_sync_dir(void);

/* ---- daemon.c ---- */
int	daemon_start(int argc, char **argv, char *err, size_t errlen);
void	daemon_stop(void);
void	daemon_reload(void);
void	daemon_cleanup(void);
/* mkdir -p of a file's directory. */
int	daemon_mkdirs_for(const char *file, char *err, size_t errlen);
int	daemon_stopping(void);
const struct qmp_version *daemon_version(void);

#endif
