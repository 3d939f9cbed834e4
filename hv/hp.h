/*
 * Hotplug of NICs and disks into one VM, as explicit step lists.
 *
 * Every operation is a list of QMP steps (getfd, netdev_add, add-fd,
 * blockdev-add, remove-fd, device_add; device_del, netdev_del,
 * blockdev-del). Each step that succeeds pushes its undo; the first that
 * fails runs the undos in reverse and answers with QEMU's own error, so
 * the VM ends with the devices, named fds and fdsets it had before. A
 * step whose reply was lost (disconnect, timeout) is undone too: its undo
 * tolerates "not found".
 *
 * hp knows nothing of the daemon: it reaches QEMU through the VM's
 * endpoint (hv/vmq.h: vmq_execute, vmq_has_command, vmq_state), is fed
 * the VM's events, and tells its owner only what goes up (hp_ops): each
 * step, to a journal hook, before taking it so that a restarted broker
 * can reconcile (hp_reconcile); a late unplug; what to log.
 *
 * Lifetime (util/defer.h): hp_vm_free() marks the hp_vm dead and answers
 * everything; operations whose command is still out hold it until their
 * reply is in, and the memory then goes on a later loop pass.
 */
#ifndef HV_HP_H
#define HV_HP_H

#include <stdbool.h>
#include <stddef.h>
#include <event2/event.h>
#include <jansson.h>

#include "hv/tap.h"
#include "hv/vmq.h"
#include "proto/qmp_msg.h"
#include "util/hist.h"

#define HP_ID_MAX	64
#define HP_MAX_FDS	(2 * TAP_MAX_QUEUES)

/* What goes up to the owner; any member may be NULL. ctx is the one
   given to hp_vm_new. */
struct hp_ops {
	/* Called before each step with the operation's record (borrowed),
	   and with NULL once it is over. Returns -1 if the record could
	   not be made durable: the step is then not taken. */
	int	(*journal)(void *ctx, const char *id, const json_t *rec);
	/* A pending unplug finished after its request had been answered. */
	void	(*unplugged)(void *ctx, const char *id);
	/* prio is syslog's. */
	void	(*log)(void *ctx, int prio, const char *msg);
};

/* Done: exactly one call per operation; ret is stolen (NULL: error). */
typedef void hp_done_fn(json_t *ret, const struct qmp_error *err,
		    void *arg);

struct hp_vm;

/*
 *   base: borrowed; the loop of q's.
 *   q: borrowed, the VM's endpoint; must stay valid until hp_vm_free
 *	(hp issues nothing on it after that; replies still out come back
 *	to hp, which needs nothing more of q for them).
 *   ops: borrowed, must outlive the hp_vm; ctx is given to them.
 *   unplug_timeout_ms: how long device_del waits for DEVICE_DELETED
 *	(0: 10000).
 * NULL if out of memory.
 */
struct hp_vm	*hp_vm_new(struct event_base *base, struct vmq *q,
		    const struct hp_ops *ops, void *ctx,
		    int unplug_timeout_ms);
/* Answers every operation in flight with an error (callbacks run inside
   this call), closes every fd, and issues no further command; a second
   call does nothing. The memory goes on a later loop pass once no
   operation's command is out (util/defer.h): a process that stops its
   loop for good calls defer_flush() after. */
void		 hp_vm_free(struct hp_vm *);
/* Every QEMU event of the VM, in arrival order (borrowed). */
void		 hp_vm_event(struct hp_vm *, const json_t *event);
/* Operations in flight or pending unplugs. */
size_t		 hp_vm_busy(const struct hp_vm *);

/* QEMU's rules for a device id, which hp also uses in derived names. */
bool		 hp_id_valid(const char *);

struct hp_nic {
	char		 id[HP_ID_MAX + 1];
	char		 mac[18];		/* "" for QEMU's choice */
	char		 driver[64];		/* "" for virtio-net-pci */
	size_t		 queues;		/* 0 means 1 */
	bool		 vhost;
	char		 bus[128];		/* "" for any */
	int		 slot;			/* -1 for any */
	/* queues tap fds, then queues vhost fds when vhost; owned by hp
	   from the call on (closed when the operation ends) */
	int		 fds[HP_MAX_FDS];
	size_t		 nfds;
};
void	hp_nic_add(struct hp_vm *, struct hp_nic *, hp_done_fn *, void *);

struct hp_disk {
	char		 id[HP_ID_MAX + 1];
	char		 format[32];		/* "" for raw */
	bool		 readonly;
	char		 driver[64];		/* "" for virtio-blk-pci */
	char		 bus[128];		/* "" for any */
	int		 slot;			/* -1 for any */
	/* Either an fd on the image (owned by hp from the call on), or a
	   protocol node for QEMU to open (stolen). */
	int		 fd;			/* -1 if none */
	bool		 blkdev;		/* fd is a block device */
	json_t		*node;
};
void	hp_disk_add(struct hp_vm *, struct hp_disk *, hp_done_fn *, void *);

enum hp_kind {
	HP_NIC,
	HP_DISK,
	HP_CPU,		/* one operation for all CPUs of a request */
	HP_MEM,		/* a pc-dimm and its memory backend */
};
void	hp_del(struct hp_vm *, enum hp_kind, const char *id, hp_done_fn *,
	    void *);

/*
 * CPUs: cpu-add plugs count CPUs (or one per id in ids) into the free
 * slots query-hotpluggable-cpus lists, lowest first, with the driver and
 * props QEMU gives for each; cpu-del unplugs the CPUs named in ids, or
 * the count hot-plugged last. The whole request is one operation, locked
 * under HP_CPU_LOCK: a CPU that fails undoes the ones plugged before it.
 * ids "" (nids 0) on add: each CPU is named cpu-S-C-T from its slot.
 */
#define HP_CPU_MAX	8
#define HP_CPU_LOCK	"cpus"
struct hp_cpu {
	size_t		 count;
	char		 ids[HP_CPU_MAX][HP_ID_MAX + 1];
	size_t		 nids;
};
void	hp_cpu_add(struct hp_vm *, const struct hp_cpu *, hp_done_fn *,
	    void *);
void	hp_cpu_del(struct hp_vm *, const struct hp_cpu *, hp_done_fn *,
	    void *);

/*
 * Memory: a memory backend (object-add, named qbmem-ID) and a pc-dimm
 * ID on it. size must be a multiple of HP_MEM_BLOCK (the guest's memory
 * block: Linux onlines and offlines whole blocks) and fit in what maxmem
 * and slots leave, both read from QEMU before anything is changed.
 * mem-del is hp_del(HP_MEM): the DIMM, once the guest let go, then its
 * backend.
 *
 * virtio: a virtio-mem-pci device instead of the DIMM, on a PCI slot
 * planned as a NIC's. size is then the most it can give the guest (its
 * backend; all of it counts against maxmem, none against slots), and
 * requested the part asked of the guest at plug time (a multiple of
 * HP_MEM_VBLOCK). hp_mem_resize changes that part later. A virtio-mem
 * device can be deleted only once it gives the guest nothing (QEMU 7.2
 * refuses device_del of one altogether).
 */
#define HP_MEM_BLOCK	(128LL << 20)
/* virtio-mem's block on x86-64 as QEMU 7.2 picks it (the host's THP
   size); the device's own, from query-memory-devices, rules resizes */
#define HP_MEM_VBLOCK	(2LL << 20)
struct hp_mem {
	char		 id[HP_ID_MAX + 1];
	long long	 size;
	char		 backend[8];		/* ram (""), memfd, file */
	char		 path[256];		/* file: mem-path, checked
						   by the caller */
	int		 node;			/* -1: QEMU's choice */
	bool		 virtio;		/* virtio-mem-pci */
	long long	 requested;		/* virtio: requested-size */
	char		 bus[128];		/* virtio: "" for any */
	int		 slot;			/* virtio: -1 for any */
};
void	hp_mem_add(struct hp_vm *, const struct hp_mem *, hp_done_fn *,
	    void *);
/*
 * Sets the requested-size of virtio-mem device id to size (qom-set) and
 * answers {"id", "size"} once QEMU reports with MEMORY_DEVICE_SIZE_CHANGE
 * that the guest plugged or unplugged that much. A guest that does not
 * follow within timeout_ms (0: the unplug timeout), one without the
 * virtio_mem driver for one, fails it: requested-size is set back to
 * what it was and the error says how far the guest got.
 */
#define HP_RESIZE_MAX_MS	600000
void	hp_mem_resize(struct hp_vm *, const char *id, long long size,
	    int timeout_ms, hp_done_fn *, void *);

/* [{"bus","addr","state","device"?}] */
void	hp_slots(struct hp_vm *, hp_done_fn *, void *);
/* {"present": bool} for a PCI device or a block node of that name. */
void	hp_has_device(struct hp_vm *, const char *id, hp_done_fn *, void *);

/* A journal record left by a broker that died: finish or undo it
   against what QEMU shows (query-pci/QOM, query-block, query-fdsets).
   done gets {"id", "action": "finished"|"undone"|"pending"}. */
void	hp_reconcile(struct hp_vm *, const json_t *rec, hp_done_fn *, void *);

/* Operations answered, of every VM since start, by kind and outcome,
   with the time from the request to the answer (a pending unplug is
   answered when QEMU took device_del). Refusals before an operation
   starts (bad id, monitor not ready, busy device) are not counted. */
enum hp_stat_kind {
	HP_ST_NIC_ADD,
	HP_ST_NIC_DEL,
	HP_ST_DISK_ADD,
	HP_ST_DISK_DEL,
	HP_ST_RECONCILE,	/* a dead broker's journal record */
	HP_ST_QUERY,		/* slots, device presence */
	HP_ST_CPU_ADD,
	HP_ST_CPU_DEL,
	HP_ST_MEM_ADD,
	HP_ST_MEM_DEL,
	HP_ST_MEM_RESIZE,
	HP_NSTATKINDS
};
struct hp_stats {
	uint64_t	ok[HP_NSTATKINDS];
	uint64_t	error[HP_NSTATKINDS];
	struct hist	latency[HP_NSTATKINDS];
};
const struct hp_stats *hp_stats(void);
/* "nic-add", ..., "reconcile", "query", "cpu-add", ..., "mem-resize";
   static. */
const char	*hp_stat_kind_name(enum hp_stat_kind);

#endif
