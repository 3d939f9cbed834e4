/*
 * What qmpctl's subcommand modules (tools/qmpctl_*.c) use of its core:
 * queueing requests, attaching fds, key=value arguments, warnings.
 */
#ifndef TOOLS_QMPCTL_H
#define TOOLS_QMPCTL_H

#include <jansson.h>

struct ctl;

void	ctl_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Queues a request (args stolen, NULL: none). -1 on error (said). */
int	ctl_request(struct ctl *, const char *name, json_t *args);
/* Attaches fd to the last queued request (SCM_RIGHTS). */
int	ctl_pass_fd(struct ctl *, int fd);
/* key=value words to an object (NULL when argc is 0). */
int	ctl_kv_args(int argc, char **argv, json_t **out);

/* tools/qmpctl_hp.c */
int	ctl_prep_nic_add(struct ctl *, int argc, char **argv);
int	ctl_prep_nic_del(struct ctl *, int argc, char **argv);
int	ctl_prep_disk_add(struct ctl *, int argc, char **argv);
int	ctl_prep_disk_del(struct ctl *, int argc, char **argv);
int	ctl_prep_slots(struct ctl *, int argc, char **argv);
int	ctl_prep_cpu_add(struct ctl *, int argc, char **argv);
int	ctl_prep_cpu_del(struct ctl *, int argc, char **argv);
int	ctl_prep_mem_add(struct ctl *, int argc, char **argv);
int	ctl_prep_mem_del(struct ctl *, int argc, char **argv);
int	ctl_prep_mem_resize(struct ctl *, int argc, char **argv);

/* tools/qmpctl_policy.c */
int	ctl_prep_policy_check(struct ctl *, int argc, char **argv);
/* Offline: argv[0] is "audit-verify". The exit status. */
int	ctl_audit_verify(int argc, char **argv);

#endif
