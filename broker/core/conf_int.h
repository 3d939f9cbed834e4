/*
 * Internals shared by conf.c (the option table, scalar values, file and
 * flags) and conf_list.c (the list-typed options). Not for outside
 * core/conf.
 */
#ifndef BROKER_CORE_CONF_INT_H
#define BROKER_CORE_CONF_INT_H

#include <stddef.h>

#include "broker/core/conf.h"

enum conf_type {
	CT_STR,
	CT_BOOL,
	CT_INT,		/* milliseconds, counts: 0..INT_MAX */
	CT_SIZE,	/* bytes, K/M/G suffixes */
	CT_LEVEL,
	CT_TARGET,	/* stderr | syslog */
	CT_GROUP,
	CT_UIDS,
	CT_GIDS,
	CT_ROOTS,
	CT_VM,
	CT_VMALLOW,
};

/* conf.c */
char	*conf_xstrdup(const char *);	/* exits when out of memory */
int	 conf_number(const char *, long long, long long, int, long long *);

/* conf_list.c */
int	 conf_uid(const char *, int *);
int	 conf_gid(const char *, int *);
/* 0, or -1 with err (GenericError) saying why the value is refused. */
int	 conf_vm(struct conf *, const char *, struct qmp_error *);
int	 conf_vm_allow(struct conf *, const char *, struct qmp_error *);
void	 conf_list_reset(struct conf *, enum conf_type);

#endif
