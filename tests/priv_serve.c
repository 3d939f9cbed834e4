/*
 * priv-serve: the privileged helper's request loop alone, on fd FD, for
 * tests/integration/test_privsep_helper.py: the same code the broker's
 * root parent runs (broker/privsep.c), fed raw datagrams by the test.
 *
 * usage: priv-serve FD [--monitor-root DIR] [--qemu-nbd PATH]
 *	  [--nbd-sysfs DIR] [--nbd-dev-dir DIR] IMAGE_ROOT...
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "broker/core/conf.h"
#include "broker/core/log.h"
#include "broker/privsep.h"

int
main(int argc, char **argv)
{
	int	i = 2;

	if (argc < 2) {
		fprintf(stderr, "usage: priv-serve FD [--monitor-root DIR] "
		    "[--qemu-nbd PATH] [--nbd-sysfs DIR] [--nbd-dev-dir DIR] "
		    "IMAGE_ROOT...\n");
		return (2);
	}
	log_open(LOG_DEBUG, 0);
	/* Options (each with a value) before the roots. */
	for (; i + 1 < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
		if (strcmp(argv[i], "--monitor-root") == 0)
			conf.monitor_root = argv[i + 1];
		else if (strcmp(argv[i], "--qemu-nbd") == 0)
			conf.qemu_nbd_path = argv[i + 1];
		else if (strcmp(argv[i], "--nbd-sysfs") == 0)
			conf.nbd_sysfs = argv[i + 1];
		else if (strcmp(argv[i], "--nbd-dev-dir") == 0)
			conf.nbd_dev_dir = argv[i + 1];
		else {
			fprintf(stderr, "priv-serve: unknown %s\n", argv[i]);
			return (2);
		}
	}
	for (; i < argc && conf.n_image_roots < CONF_MAX_ROOTS; i++)
		conf.image_roots[conf.n_image_roots++] = argv[i];
	privsep_serve(atoi(argv[1]));
	return (0);
}
