/*
 * Internals shared by vm.c (the set of VMs) and vm_exec.c (commands,
 * events and state through them). Not for outside vm/vm.
 */
#ifndef BROKER_VM_VM_INT_H
#define BROKER_VM_VM_INT_H

#include <sys/queue.h>

#include <stddef.h>

#include "broker/vm/vm.h"
#include "hv/mon.h"

#define VM_OBSERVERS	4
#define VM_SLOTS	4

struct vm_listener {
	struct vm		*vm;
	vm_event_fn		*fn;
	void			*arg;
	int			 dead;
	LIST_ENTRY(vm_listener)	 entry;
};

struct vm {
	struct vm		*hnext;
	TAILQ_ENTRY(vm)		 entry;
	struct mon		*mon;
	const struct vm_backend	*be;		/* instead of mon */
	void			*be_arg;
	enum mon_state		 be_state;
	void			*slots[VM_SLOTS];
	LIST_HEAD(, vm_listener) listeners;
	char			*socket;
	unsigned		 origin;
	enum vm_share_pref	 share_pref;
	unsigned		 calls;		/* vm_execute in flight */
	int			 removed;
	int			 dispatching;
	int			 was_ready;
	int			 said_down;
	char			 name[];
};

struct vm_obs_slot {
	const struct vm_observer	*ops;
	void				*arg;
};

/* vm.c */
extern struct vm_obs_slot	vm_obs[VM_OBSERVERS];
extern size_t			vm_nobs;
extern struct event		*vm_reaper;	/* frees removed VMs */

/* vm_exec.c */
extern const struct mon_ops	vm_mon_ops;

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
