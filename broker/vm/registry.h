/*
 * Where VMs come from and how they survive a restart: vm-add's VMs in
 * STATE_DIR/vms.json, the config file's, and the watched --vm-dir.
 */
#ifndef BROKER_VM_REGISTRY_H
#define BROKER_VM_REGISTRY_H

#include <stddef.h>

#include "broker/vm/vm.h"
#include "proto/qmp_msg.h"

struct reg_entry {
	char	*name;
	char	*socket;
	enum vm_share_pref share;	/* "shared-socket", if saved */
	int	 pid;			/* "pid" of vm-add; 0: none */
	unsigned long long pid_start;	/* "pid-start": its start time */
};
/* Pure parser of the state file's bytes: valid entries go to *out,
   problems are counted in *bad and described in why (GenericError, the
   reasons joined by "; " while they fit; desc "" when there are none).
   Returns -1 if the file as a whole is unusable. */
int	registry_parse(const char *buf, size_t len, struct reg_entry **out,
	    size_t *n, size_t *bad, struct qmp_error *why);
void	registry_entries_free(struct reg_entry *, size_t);
/* temp file, fsync, rename, fsync dir. -1 with err (GenericError) naming
   the file and the call that failed. */
int	registry_write_atomic(const char *path, const char *buf, size_t len,
	    struct qmp_error *err);
char	*registry_serialise(size_t *len);
/* Loads the saved registry, adds the config's VMs, watches --vm-dir.
   -1 with err (GenericError) when the broker cannot run so. */
int	registry_start(struct qmp_error *err);
void	registry_stop(void);

/* Once the change is on disk: err NULL, or why it could not be saved
   (the change itself is made). */
typedef void registry_saved_fn(const struct qmp_error *err, void *arg);
/* Something persistent changed: save soon, with every other change of
   this loop pass. fn (may be NULL) runs once the save is done, never
   inside this call. -1 (fn will not run) if there is no memory to wait. */
int	registry_dirty(registry_saved_fn *, void *arg);
void	registry_sync_config(void);
void	registry_sync_dir(void);

#endif
