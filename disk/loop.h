/*
 * Loop devices through losetup: argv building and output parsing. The
 * broker runs the child (broker/proc.h); nothing here blocks.
 */
#ifndef DISK_LOOP_H
#define DISK_LOOP_H

#include <stdbool.h>
#include <stddef.h>

#include "proto/qmp_msg.h"

#define LOOP_LOSETUP	"losetup"
#define LOOP_SYSFS	"/sys"
#define LOOP_ARGV_MAX	8

/* An attach is two children so the device is known (and journalled)
   before anything is attached: "losetup --find" prints the first free
   /dev/loopN and attaches nothing; "losetup [--read-only] DEV -- PATH"
   then attaches, failing if someone took DEV meanwhile. Pointers into
   the arguments, valid while they are. */
void	loop_find_argv(const char *losetup, char *argv[LOOP_ARGV_MAX]);
void	loop_attach_argv(const char *losetup, const char *dev,
	    const char *path, bool ro, char *argv[LOOP_ARGV_MAX]);
void	loop_detach_argv(const char *losetup, const char *dev,
	    char *argv[LOOP_ARGV_MAX]);

/* losetup --show's output must be exactly one /dev/loopN line. */
int	loop_parse_device(const char *out, char *dev, size_t len,
	    struct qmp_error *err);
bool	loop_device_name_ok(const char *dev);
/* True when losetup failed because every loop device is taken (worth a
   retry: another may be freed, or made, meanwhile). */
bool	loop_out_of_devices(const char *stderr_text);

/* What backs /dev/loopN, from SYSFS/block/loopN/loop/backing_file (no
   trailing newline). -1 when the device is not attached (or unknown);
   blocks on sysfs only, which does not wait. */
int	loop_backing_file(const char *sysfs, const char *dev, char *buf,
	    size_t len);
/* backing_file names path: the same text, or the same followed by the
   kernel's " (deleted)" when the file was unlinked while attached (the
   device still holds it). */
bool	loop_backing_is(const char *backing, const char *path);

#endif
