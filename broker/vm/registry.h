/*
 * Where VMs come from and how they survive a restart: vm-add's VMs in
 * STATE_DIR/vms.json, the config file's, and the watched --vm-dir.
 */
#ifndef BROKER_VM_REGISTRY_H
#define BROKER_VM_REGISTRY_H

#include <stddef.h>

#include "broker/vm/vm.h"

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
