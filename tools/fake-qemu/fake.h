/*
 * fake-qemu: a QEMU 7.2 stand-in for tests. Shared types.
 *
 * One process serves one or many "VMs"; each VM is a listening unix socket
 * with its own device model and at most one client at a time, as QEMU's
 * QMP monitor does. The shapes of replies, events and errors are copied
 * from qemu-system-x86_64 7.2 (see tools/fake-qemu/README in the report).
 */
#ifndef FAKE_H
#define FAKE_H

#include <stddef.h>
#include <stdint.h>
#include <event2/event.h>
#include <event2/buffer.h>
#include <jansson.h>

#include "proto/qmp_framer.h"
#include "proto/qmp_msg.h"

#define FAKE_MAX_FDS	16	/* fds taken from one recvmsg */
#define FAKE_MAX_OUTQ	(64u * 1024 * 1024)	/* a client that never reads */
#define FAKE_FLOOD_OUTQ	(1u * 1024 * 1024)	/* flood waits below this */

/* ---- faults (fault.c) ---- */
enum fault_type {
	F_CHUNK,
	F_DELAY,
	F_DELAY_CMD,
	F_CLOSE_AFTER,
	F_GARBAGE,
	F_SECOND_GREETING,
	F_NO_GREETING,
	F_ERROR,
	F_NO_REPLY,
	F_EOF_ON,
	F_FLOOD,
	F_REFUSE_FDS,
	F_STOP_READING,
	F_MIGRATE_FAIL,
};

struct fault {
	enum fault_type	 type;
	int		 once;		/* first connection only */
	long		 n;		/* bytes, ms, messages or rate */
	char		*name;		/* command or event name */
	char		*cls;		/* error class */
	char		*desc;		/* error text */
};

struct faults {
	struct fault	*v;
	size_t		 n;
};

int	 fault_load(struct faults *, const char *path);
/* First directive of that type (and command name, if given) in force for
   connection number nconn (0 = first). */
const struct fault *fault_get(const struct faults *, unsigned nconn,
	    enum fault_type, const char *name);

/* ---- device model (pci.c, block.c, cmds.c) ---- */
enum machine { M_PC, M_Q35 };

struct named_fd {
	char	*name;
	int	 fd;
};

struct fdset_fd {
	int	 fd;
	char	*opaque;
	int	 removed;
};

struct fdset {
	int64_t		 id;
	struct fdset_fd	*fds;
	size_t		 nfds;
	unsigned	 dups;		/* block nodes holding a dup */
};

struct netdev {
	char	*id;
	int	*fds;		/* tap fds, then vhost fds */
	size_t	 nfds;
	char	*user;		/* NIC id using it, or NULL */
};

struct bus;
struct dev;
struct fmig;
struct bnode;
struct fcm;

struct vm {
	struct fake	*fake;
	char		*path;
	int		 lfd;
	struct event	*lev;
	struct conn	*conn;		/* the one client, or NULL */
	unsigned	 nconn;		/* connections accepted so far */
	int		 running;	/* 0: prelaunch/paused */
	int		 started;	/* left prelaunch once */
	int		 quitting;
	int		 inmigrate;	/* --incoming-defer, until migrated in */
	struct fmig	*mig;		/* migrate.c's, or NULL */
	struct fcm	*cm;		/* cpumem.c's, or NULL */

	struct named_fd	*nfds;	size_t nnfds;
	struct fdset	*fdsets; size_t nfdsets;
	struct netdev	*netdevs; size_t nnetdevs;
	struct dev	**devs;	size_t ndevs;
	unsigned	 anon;		/* peripheral-anon counter */
	int		 pci_built;	/* machine devices made (lazily) */
	struct bnode	**nodes; size_t nnodes;
	unsigned	 implicit;	/* #blockN counter */
};

struct fake {
	struct event_base *base;
	struct faults	 faults;
	enum machine	 machine;
	int		 root_ports;
	long		 unplug_delay;	/* ms; -1 never */
	int		 smp, maxcpus;	/* -smp N,maxcpus=M */
	int		 mem_slots;	/* -m 256,slots=S,maxmem=X */
	long long	 maxmem;
	int		 start_running;
	int		 incoming_defer;
	struct vm	**vms;
	size_t		 nvms;
	size_t		 live;		/* VMs not yet quit */
};

/* ---- connection (conn.c) ---- */
struct conn;
void	 conn_accept(struct vm *, int fd);
void	 conn_close(struct conn *);
/* Queue an event for the VM's client, if one is connected. data stolen. */
void	 vm_event(struct vm *, const char *name, json_t *data);
void	 vm_quit_done(struct vm *);

/* ---- command context ---- */
struct cmdctx {
	struct vm	*vm;
	struct conn	*conn;
	int		*fds;		/* fds received with the command */
	size_t		*nfds;
};
/* Take the oldest received fd, or -1. */
int	 cmd_take_fd(struct cmdctx *);

typedef json_t *cmd_fn(struct cmdctx *, json_t *args, struct qmp_error *);

struct cmd_entry {
	const char	*name;
	cmd_fn		*fn;
	int		 noargs;	/* reject any argument */
};
const struct cmd_entry *cmd_find(const char *);
json_t	*cmd_list(void);

/* Argument helpers, with QEMU's wording. */
const char *arg_str(json_t *args, const char *key, int required,
	    struct qmp_error *, int *bad);
int	 arg_int(json_t *args, const char *key, int64_t *out, int *present,
	    struct qmp_error *);
int	 arg_bool(json_t *args, const char *key, int *out,
	    struct qmp_error *);

/* fds held by the VM (cmds.c) */
struct named_fd *vm_named_fd(struct vm *, const char *name);
int	 vm_take_named_fd(struct vm *, const char *name);
struct fdset *vm_fdset(struct vm *, int64_t id);
void	 vm_fdset_cleanup(struct vm *);
struct netdev *vm_netdev(struct vm *, const char *id);
void	 vm_free_state(struct vm *);

/* pci.c */
void	 pci_init(void);
cmd_fn	 pci_device_add, pci_device_del, pci_query_pci, pci_qom_list;
void	 pci_free(struct vm *);

/* true if a PCI device of that id exists */
int	 pci_has_id(struct vm *, const char *id);

/* cpumem.c: device_add/device_del try these first (1: not theirs) */
int	 cm_device_add(struct cmdctx *, json_t *args, json_t **ret,
	    struct qmp_error *);
int	 cm_device_del(struct cmdctx *, const char *id, json_t **ret,
	    struct qmp_error *);
int	 cm_has(struct vm *, const char *id);
cmd_fn	 cm_object_add, cm_object_del, cm_query_cpus, cm_query_memdevs,
	 cm_qom_get, cm_qom_set, cm_query_kvm;
/* The memory part of a virtio-mem-pci device pci.c is adding: -1 with
   err if QEMU would refuse it. */
int	 cm_vmem_add(struct vm *, const char *id, json_t *args,
	    struct qmp_error *);
void	 cm_qom_peripheral(struct vm *, json_t *list);
void	 cm_free(struct vm *);

/* block.c */
cmd_fn	 blk_add, blk_del, blk_query_block, blk_query_nodes;
struct bnode *blk_find(struct vm *, const char *name);
int	 blk_in_use(struct bnode *);
void	 blk_set_user(struct bnode *, const char *qdev);
void	 blk_free(struct vm *);

/* migrate.c */
cmd_fn	 mig_migrate, mig_incoming, mig_cancel, mig_start_postcopy,
	 mig_query, mig_set_caps, mig_set_params, mig_query_params,
	 mig_pause, mig_recover;
int	 mig_postmigrate(const struct vm *);
void	 mig_free(struct vm *);

/* misc */
void	*xcalloc(size_t, size_t);
void	*xreallocarray(void *, size_t, size_t);
char	*xstrdup(const char *);
void	 fake_fatal(const char *, ...) __attribute__((format(printf, 1, 2)));

#endif
