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
#define LOOP_ARGV_MAX	8

/* argv for "losetup --find --show [--read-only] PATH"; pointers into the
   arguments, valid while they are. */
void	loop_attach_argv(const char *losetup, const char *path, bool ro,
	    char *argv[LOOP_ARGV_MAX]);
void	loop_detach_argv(const char *losetup, const char *dev,
	    char *argv[LOOP_ARGV_MAX]);

/* losetup --show's output must be exactly one /dev/loopN line. */
int	loop_parse_device(const char *out, char *dev, size_t len,
	    struct qmp_error *err);
bool	loop_device_name_ok(const char *dev);
/* True when losetup failed because every loop device is taken (worth a
   retry: another may be freed, or made, meanwhile). */
bool	loop_out_of_devices(const char *stderr_text);

#endif
