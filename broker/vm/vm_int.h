/*
 * Internals shared by vm.c (the set of VMs) and vm_event.c (what comes
 * in through a VM's endpoint: events and state, to its listeners, the
 * observers and the bus). Not for outside vm/vm.
 */
#ifndef BROKER_VM_VM_INT_H
#define BROKER_VM_VM_INT_H

#include <sys/queue.h>

#include <stddef.h>

#include "broker/vm/vm.h"
#include "hv/mon.h"
#include "hv/vmq.h"
#include "util/defer.h"

#define VM_OBSERVERS	8	/* share, hotplug, migrate, and room */
#define VM_SLOTS	4

struct vm_listener {
	vm_event_fn		*fn;
	void			*arg;
	int			 dead;		/* vm_unlisten was called */
	struct defer		 reap;
	LIST_ENTRY(vm_listener)	 entry;
};

struct vm {
	struct vm		*hnext;
	TAILQ_ENTRY(vm)		 entry;
	struct vmq		*q;		/* dead once removed */
	void			*slots[VM_SLOTS];
	LIST_HEAD(, vm_listener) listeners;
	char			*socket;
	unsigned		 origin;
	enum vm_share_pref	 share_pref;
	int			 removed;	/* vm_remove was called */
	struct defer		 reap;
	int			 was_ready;
	int			 said_down;
	/* vm_status.c's */
	char			 status[32];	/* QEMU RunState; "": unknown */
	struct vm **status_asking;	/* the query in flight's arg */
	int			 exit_check;	/* next connect: QEMU gone? */
	int			 shutdown_seen;
	int			 shutdown_guest;
	char			 shutdown_reason[32];
	struct event		*pid_ev;	/* its pidfd readable: gone */
	int			 pid;		/* the one pid_ev watches */
	int			 pid_given;	/* vm_set_pid; 0: SO_PEERCRED */
	unsigned long long	 pid_start;	/* its start time; 0: unknown */
	int			 exit_said;	/* VM_EXITED for this QEMU */
	char			*mlabel;	/* vm="NAME", after name */
	size_t			 mlabel_len;
	char			 name[];
};

struct vm_obs_slot {
	const struct vm_observer	*ops;
	void				*arg;
};

/* vm.c */
extern struct vm_obs_slot	vm_obs[VM_OBSERVERS];
extern size_t			vm_nobs;

/* vm_event.c: the owner's side of every VM's endpoint */
extern const struct vmq_ops	vm_vmq_ops;

/* vm_status.c: the run state, VM_STATUS and VM_EXITED */
void	vm_status_load(struct vm *);
void	vm_status_forget(struct vm *);
void	vm_status_cleanup(void);
void	vm_status_event(struct vm *, json_t *);
void	vm_status_state(struct vm *, enum mon_state, const char *why);

/* Calls member fn of every observer that has one, with these
   arguments and the observer's own. */
#define VM_NOTIFY(fn, ...) do {						\
	size_t	vm_i_;							\
	for (vm_i_ = 0; vm_i_ < vm_nobs; vm_i_++) {			\
		if (vm_obs[vm_i_].ops->fn != NULL)			\
			vm_obs[vm_i_].ops->fn(__VA_ARGS__,		\
			    vm_obs[vm_i_].arg);				\
	}								\
} while (0)

#endif
