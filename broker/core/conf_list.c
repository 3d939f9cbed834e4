/*
 * The options that accumulate rather than replace: allow-uid/allow-gid,
 * image-root, vm and vm-allow, and the user and group names they take.
 * Parsing one entry and emptying a list (flags replace the file's list)
 * are here; conf.c's table and conf_set dispatch to them. Apart because
 * these are the options with structure of their own (vm, vm-allow), and
 * the scalar options read better without them.
 */
#include "config.h"

#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/core/conf.h"
#include "broker/core/conf_int.h"

#define CONF_MAX_VMS		100000

int
conf_uid(const char *v, int *out)
{
	long long	 n;
	struct passwd	*pw;

	if (conf_number(v, 0, INT_MAX, 0, &n) == 0) {
		*out = (int)n;
		return (0);
	}
	if ((pw = getpwnam(v)) == NULL)
		return (-1);
	*out = (int)pw->pw_uid;
	return (0);
}

int
conf_gid(const char *v, int *out)
{
	long long	 n;
	struct group	*gr;

	if (conf_number(v, 0, INT_MAX, 0, &n) == 0) {
		*out = (int)n;
		return (0);
	}
	if ((gr = getgrnam(v)) == NULL)
		return (-1);
	*out = (int)gr->gr_gid;
	return (0);
}

int
conf_vm(struct conf *c, const char *v, struct qmp_error *err)
{
	const char	*sep;
	char		*name;
	struct conf_vm	*n;
	size_t		 len, i;

	sep = strchr(v, '=');
	if (sep == NULL)
		sep = v + strcspn(v, " \t");
	len = (size_t)(sep - v);
	if (*sep == '\0' || len == 0) {
		qmp_error_set(err, QMP_CLS_GENERIC, "vm: expected NAME=SOCKET");
		return (-1);
	}
	sep++;
	while (*sep == ' ' || *sep == '\t')
		sep++;
	if ((name = strndup(v, len)) == NULL) {
		qmp_error_set(err, QMP_CLS_GENERIC, "out of memory");
		return (-1);
	}
	if (!conf_vm_name_valid(name) || *sep != '/') {
		qmp_error_set(err, QMP_CLS_GENERIC,
		    "vm: bad name or non-absolute socket: %s", v);
		free(name);
		return (-1);
	}
	for (i = 0; i < c->n_vms; i++) {
		if (strcmp(c->vms[i].name, name) == 0) {
			qmp_error_set(err, QMP_CLS_GENERIC,
			    "vm: %s named twice", name);
			free(name);
			return (-1);
		}
	}
	if (c->n_vms >= CONF_MAX_VMS ||
	    (n = reallocarray(c->vms, c->n_vms + 1, sizeof *n)) == NULL) {
		qmp_error_set(err, QMP_CLS_GENERIC, "vm: too many");
		free(name);
		return (-1);
	}
	c->vms = n;
	c->vms[c->n_vms].name = name;
	c->vms[c->n_vms].socket = conf_xstrdup(sep);
	c->n_vms++;
	return (0);
}

/* "NAME uid:N,gid:M,..." (users and groups by name or number). */
int
conf_vm_allow(struct conf *c, const char *v, struct qmp_error *err)
{
	struct conf_vm_allow	*a, *n;
	char			*s, *name, *ids, *tok, *save;
	size_t			 i;
	int			 id;

	s = conf_xstrdup(v);
	name = s;
	ids = s + strcspn(s, " \t=");
	if (*ids == '\0' || ids == name) {
		qmp_error_set(err, QMP_CLS_GENERIC,
		    "vm-allow: expected 'NAME uid:N,gid:M'");
		free(s);
		return (-1);
	}
	*ids++ = '\0';
	ids += strspn(ids, " \t");
	a = NULL;
	for (i = 0; i < c->n_vm_allows; i++)
		if (strcmp(c->vm_allows[i].name, name) == 0)
			a = &c->vm_allows[i];
	if (a == NULL) {
		if (c->n_vm_allows >= CONF_MAX_VMS || (n = reallocarray(
		    c->vm_allows, c->n_vm_allows + 1, sizeof *n)) == NULL) {
			qmp_error_set(err, QMP_CLS_GENERIC,
			    "vm-allow: too many");
			free(s);
			return (-1);
		}
		c->vm_allows = n;
		a = &c->vm_allows[c->n_vm_allows++];
		memset(a, 0, sizeof *a);
		a->name = conf_xstrdup(name);
	}
	for (tok = strtok_r(ids, ", \t", &save); tok != NULL;
	    tok = strtok_r(NULL, ", \t", &save)) {
		if (strncmp(tok, "uid:", 4) == 0 &&
		    conf_uid(tok + 4, &id) == 0 && a->n_uids < CONF_MAX_IDS)
			a->uids[a->n_uids++] = id;
		else if (strncmp(tok, "gid:", 4) == 0 &&
		    conf_gid(tok + 4, &id) == 0 && a->n_gids < CONF_MAX_IDS)
			a->gids[a->n_gids++] = id;
		else {
			qmp_error_set(err, QMP_CLS_GENERIC,
			    "vm-allow %s: bad or too many '%s' (uid:USER or "
			    "gid:GROUP)", name, tok);
			free(s);
			return (-1);
		}
	}
	free(s);
	return (0);
}

void
conf_list_reset(struct conf *c, enum conf_type t)
{
	size_t	i;

	switch (t) {
	case CT_UIDS:
		c->n_allow_uids = 0;
		break;
	case CT_GIDS:
		c->n_allow_gids = 0;
		break;
	case CT_ROOTS:
		for (i = 0; i < c->n_image_roots; i++)
			free(c->image_roots[i]);
		c->n_image_roots = 0;
		break;
	case CT_VM:
		for (i = 0; i < c->n_vms; i++) {
			free(c->vms[i].name);
			free(c->vms[i].socket);
		}
		c->n_vms = 0;
		break;
	case CT_VMALLOW:
		for (i = 0; i < c->n_vm_allows; i++)
			free(c->vm_allows[i].name);
		c->n_vm_allows = 0;
		break;
	default:
		break;
	}
}
