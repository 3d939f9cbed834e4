/*
 * Internals shared by hp.c (the step engine), hp_args.c (each step's
 * arguments), hp_ops.c (the operations and their step lists), hp_scan.c (reading the slot map and device
 * presence from QEMU) and hp_query.c (questions and reconciliation).
 *
 * Every kind of step is one row of hp.c's hp_steps[]: its command, how
 * its arguments are built from the operation, its undo, and what its
 * reply means. Adding a step is that row, its builder, and its place in
 * an operation's step list.
 *
 * Every command an operation sends goes through hp_exec, whose reply
 * handling starts the same way for all (the operation is no longer in
 * flight; one whose VM was removed meanwhile is freed) before the
 * callback runs: callbacks never see a removed VM.
 */
#ifndef HV_HP_INT_H
#define HV_HP_INT_H

#include <sys/queue.h>

#include "hv/hp.h"
#include "hv/pci.h"
#include "hv/vmq.h"
#include "util/defer.h"

#define HP_MAX_STEPS	24
#define HP_NAME_MAX	96

enum hp_stepk {
	ST_NONE,		/* no step: ends a row's undo list (0, so
				   that a row may leave it out) */
	ST_SCAN,		/* read slots, reserve one */
	ST_GETFD,		/* arg: fd index */
	ST_CLOSEFD,		/* arg: fd index */
	ST_NETDEV_ADD,
	ST_NETDEV_DEL,
	ST_ADDFD,
	ST_REMOVEFD,		/* the fdset add-fd made */
	ST_REMOVEFD_OPAQUE,	/* every fdset carrying our opaque */
	ST_BLOCKDEV_ADD,
	ST_BLOCKDEV_DEL,	/* the format node */
	ST_BLOCKDEV_DEL_FILE,	/* the file node under it */
	ST_DEVICE_ADD,
	ST_DEVICE_DEL,		/* and wait for DEVICE_DELETED */
	ST_CPU_SCAN,		/* query-hotpluggable-cpus, pick the CPUs */
	ST_MEM_CHECK,		/* limits (add) or the DIMM's backend (del) */
	ST_OBJECT_ADD,		/* the memory backend */
	ST_OBJECT_DEL,
	ST_MEM_RESIZE,		/* qom-set requested-size, wait for the
				   guest (MEMORY_DEVICE_SIZE_CHANGE) */
	ST_MEM_RESIZE_BACK,	/* its undo: the requested-size before */
	ST_NKINDS
};

struct hp_step {
	enum hp_stepk	 k;
	int		 arg;
};

struct hp_op;
/* A command's reply, for a VM still there; ret is borrowed. */
typedef void hp_exec_fn(struct hp_op *, json_t *ret,
		    const struct qmp_error *);
/* The slot map (NULL and err on failure), for a VM still there. */
typedef void hp_scan_fn(struct hp_op *, struct pci_map *,
		    const struct qmp_error *);

struct hp_scan {
	json_t		*query_pci;
	json_t		*peripheral;
	json_t		*need;		/* bridge ids to read via QOM */
	size_t		 ineed;
	json_t		*children;	/* child[N] names of the bus read */
	size_t		 ichild;
	json_t		*buses;		/* {"ID": [devfn...]} */
	hp_scan_fn	*cb;
};

struct hp_vm {
	struct event_base	*base;
	struct vmq		*q;
	const struct hp_ops	*ops;
	void			*ctx;
	int			 unplug_timeout_ms;
	LIST_HEAD(, hp_op)	 ops_list;
	size_t			 nops;		/* ops_list, and hp_vm_free
						   while it runs: what holds
						   the memory once dead */
	struct pci_resv		*resv;
	struct pci_hist		*hist;		/* made at first allocation */
	unsigned		 scanning;
	bool			 dead;		/* hp_vm_free was called */
	bool			 cpu_unplugged;	/* a CPU left this QEMU */
	struct defer		 reap;
	uint32_t		 seq;
};

struct hp_op {
	struct hp_vm		*vm;
	LIST_ENTRY(hp_op)	 entry;
	const char		*name;		/* "nic-add", ... */
	enum hp_kind		 kind;
	bool			 add;
	char			 id[HP_ID_MAX + 1];

	struct hp_step		 steps[HP_MAX_STEPS];
	size_t			 nsteps, cur;
	struct hp_step		 undo[HP_MAX_STEPS];
	size_t			 nundo;
	bool			 undoing;
	struct hp_step		 step;		/* the one in flight */

	/* what this operation made or will make in QEMU */
	int			 fds[HP_MAX_FDS];
	size_t			 nfds;
	char			 fdname[HP_MAX_FDS][HP_NAME_MAX];
	char			 netdev[HP_NAME_MAX];
	char			 node[32], fnode[32];
	char			 opaque[HP_NAME_MAX];
	long long		 fdset;
	json_t			*fdsets;	/* REMOVEFD_OPAQUE worklist */
	size_t			 ifdset;

	struct hp_nic		 nic;
	struct hp_disk		 disk;
	struct hp_cpu		 cpu;		/* as asked */
	struct hp_mem		 mem;
	char			 memdev[HP_NAME_MAX];
	/* mem-resize: requested-size asked and before, the device's size
	   as QEMU last told it, how long the guest has */
	bool			 resize;
	long long		 rs_want, rs_prev, rs_now;
	int			 rs_timeout_ms;
	/* the CPUs picked: device_add args (driver, id, props) on add,
	   ids on del; step arg i is CPU i */
	json_t			*cpus[HP_CPU_MAX];
	size_t			 ncpus;
	char			 bus[128];
	int			 slot;
	struct pci_resv		*resv;
	struct hp_scan		 scan;
	bool			 scanning;

	hp_done_fn		*done;
	void			*arg;
	bool			 answered;
	json_t			*result;
	struct qmp_error	 err;
	bool			 failed;

	/* device_del */
	char			 del_id[HP_ID_MAX + 1];	/* DEVICE_DELETED's */
	bool			 del_wait;
	bool			 del_replied, del_seen;
	bool			 pending;	/* answered: unplug still due */
	struct event		*timer;
	struct event		*retry;
	struct timeval		 retry_until;

	bool			 inflight;
	hp_exec_fn		*exec_cb;	/* the reply's, once in */
	bool			 query;		/* read-only: takes no lock */
	bool			 reconcile;	/* a dead broker's journal */
	uint64_t		 start_us;	/* hp_stats' latency */
};

/* hp.c */
void	hp_op_free(struct hp_op *);
void	hp_answer(struct hp_op *, json_t *ret, const struct qmp_error *);
void	hp_push_undo(struct hp_op *, enum hp_stepk, int arg);
/* The undo of step k as its row has it (several steps for some). */
void	hp_push_undo_of(struct hp_op *, enum hp_stepk k, int arg);
void	hp_start(struct hp_op *);
void	hp_next(struct hp_op *);
void	hp_node_name(char *, size_t, const char *prefix, const char *id);
void	hp_exec(struct hp_op *, const char *cmd, json_t *args,
	    const int *fds, size_t nfds, hp_exec_fn *);
void	hp_log(struct hp_vm *, int prio, const char *fmt, ...)
	    __attribute__((format(printf, 3, 4)));
/* The VM's monitor (or backend) is ready for commands. */
bool	hp_ready(const struct hp_vm *);

/* hp_args.c: the argument builders of hp.c's hp_steps[] rows, and a
   slot as QEMU's "addr" ("0x5") */
json_t	*hp_device_args(const struct hp_op *, int arg, const int **fds);
json_t	*hp_fdname_args(const struct hp_op *, int arg, const int **fds);
json_t	*hp_getfd_args(const struct hp_op *, int arg, const int **fds);
json_t	*hp_netdev_args(const struct hp_op *, int arg, const int **fds);
json_t	*hp_addfd_args(const struct hp_op *, int arg, const int **fds);
json_t	*hp_removefd_args(const struct hp_op *, int arg, const int **fds);
json_t	*hp_blockdev_args(const struct hp_op *, int arg, const int **fds);
json_t	*hp_devdel_args(const struct hp_op *, int arg, const int **fds);
json_t	*hp_object_args(const struct hp_op *, int arg, const int **fds);
/* The id device step arg of op adds or deletes. */
const char *hp_dev_id(const struct hp_op *, int arg);
void	 hp_addr(char *, size_t, int slot);

/* hp_ops.c; hp_op_alloc says "out of memory" in err when it fails */
struct hp_op *hp_op_alloc(struct hp_vm *, const char *name, const char *id,
	    hp_done_fn *, void *, struct qmp_error *err);
struct hp_op *hp_op_find(struct hp_vm *, const char *id);
/* The gate: id, readiness, the commands in needs (NULL-terminated),
   the lock on id; NULL with err set if refused. */
struct hp_op *hp_op_new(struct hp_vm *, const char *name, enum hp_kind,
	    bool add, const char *id, const char *const *needs, hp_done_fn *,
	    void *, struct qmp_error *err);
void	hp_step_add(struct hp_op *, enum hp_stepk, int arg);
void	hp_del_steps(struct hp_op *);
void	hp_refuse(struct hp_vm *, const struct qmp_error *, hp_done_fn *,
	    void *);

/* hp_scan.c: hp_scan_start counts the scan in vm->scanning until
   hp_scan_end, which the callback (or hp_op_free) calls */
void	hp_scan_start(struct hp_op *, hp_scan_fn *);
void	hp_scan_end(struct hp_op *);
void	hp_qom_peripheral(struct hp_op *, hp_exec_fn *);

/* hp_cpumem.c: the sends of ST_CPU_SCAN and ST_MEM_CHECK, which end
   with hp_cpumem_reply (hp.c's step reply) */
void	hp_cpu_scan_send(struct hp_op *);
void	hp_mem_check_send(struct hp_op *);
void	hp_cpumem_reply(struct hp_op *, json_t *, const struct qmp_error *);
/* hp_cpumem.c: the argument builders of ST_MEM_RESIZE(_BACK) */
json_t	*hp_resize_args(const struct hp_op *, int arg, const int **fds);
json_t	*hp_resize_back_args(const struct hp_op *, int arg, const int **fds);

#endif
