/*
 * priv-serve: the privileged helper's request loop alone, on fd FD, for
 * tests/integration/test_privsep_helper.py: the same code the broker's
 * root parent runs (broker/privsep.c), fed raw datagrams by the test.
 *
 * usage: priv-serve FD [--monitor-root DIR] IMAGE_ROOT...
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
		    "IMAGE_ROOT...\n");
		return (2);
	}
	log_open(LOG_DEBUG, 0);
	if (argc > 3 && strcmp(argv[2], "--monitor-root") == 0) {
		conf.monitor_root = argv[3];
		i = 4;
	}
	for (; i < argc && conf.n_image_roots < CONF_MAX_ROOTS; i++)
		conf.image_roots[conf.n_image_roots++] = argv[i];
	privsep_serve(atoi(argv[1]));
	return (0);
}
