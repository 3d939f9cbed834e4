/*
 * The policy: rules from a file, first match decides.
 */
#include "config.h"

#include <sys/types.h>

#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker/core/conf.h"
#include "broker/core/log.h"
#include "broker/session/policy.h"

#define POLICY_LINE_MAX		1024
#define POLICY_RULES_MAX	4096
#define POLICY_DIRS_MAX		16
#define POLICY_GLOB_MAX		256

enum policy_action { POLICY_ALLOW, POLICY_DENY, POLICY_ROLE };
enum policy_who { WHO_ANY, WHO_UID, WHO_GID };

struct policy_rule {
	enum policy_action	 action;
	enum policy_role	 role;		/* POLICY_ROLE */
	enum policy_who		 who;
	unsigned		 id;		/* uid or gid */
	char			*vm;		/* NULL: any, also none */
	char			*cmd;		/* NULL: any */
	size_t			 line;
	char			*text;		/* the line, for verdicts */
};

struct policy {
	char			*path;		/* NULL: built-in */
	struct policy_rule	*rules;
	size_t			 nrules;
	char			*dirs[POLICY_DIRS_MAX];
	size_t			 ndirs;
};

/* With no file: every admitted peer that is not admin is operator. */
static struct policy_rule policy_builtin_rule = {
	.action = POLICY_ROLE, .role = POLICY_OPERATOR, .who = WHO_ANY,
	.text = "built-in: role operator any"
};
static struct policy	 policy_builtin = { .rules = &policy_builtin_rule,
	.nrules = 1 };
static struct policy	*policy_cur = &policy_builtin;
static policy_known_fn	*policy_known;

static const char *const policy_roles[] = {
	"none", "read-only", "operator", "admin"
};

const char *
policy_role_name(enum policy_role r)
{
	return (policy_roles[r]);
}

void
policy_set_known(policy_known_fn *fn)
{
	policy_known = fn;
}

static void
policy_free(struct policy *p)
{
	size_t	i;

	if (p == NULL || p == &policy_builtin)
		return;
	for (i = 0; i < p->nrules; i++) {
		free(p->rules[i].vm);
		free(p->rules[i].cmd);
		free(p->rules[i].text);
	}
	for (i = 0; i < p->ndirs; i++)
		free(p->dirs[i]);
	free(p->rules);
	free(p->path);
	free(p);
}

void
policy_clear(void)
{
	policy_free(policy_cur);
	policy_cur = &policy_builtin;
}

const char *
policy_path(void)
{
	return (policy_cur->path);
}

/* fnmatch takes an unclosed '[' as a literal; a rule's author meant a
   set, so it is refused rather than never matching. */
static int
policy_glob_ok(const char *g, char *why, size_t len)
{
	const char	*p;

	if (*g == '\0' || strlen(g) > POLICY_GLOB_MAX) {
		snprintf(why, len, "glob '%.40s' empty or longer than %d", g,
		    POLICY_GLOB_MAX);
		return (-1);
	}
	for (p = g; *p != '\0'; p++) {
		if (*p == '\\' && p[1] != '\0')
			p++;
		else if (*p == '[') {
			if (p[1] == '!' || p[1] == '^')
				p++;
			if (p[1] == ']')
				p++;
			if ((p = strchr(p + 1, ']')) == NULL) {
				snprintf(why, len, "glob '%.40s': '[' not "
				    "closed", g);
				return (-1);
			}
		}
	}
	return (0);
}

/* "1000" or a name NSS knows; a uid or group nobody has is refused, as
   a rule for it is a typo. */
static int
policy_id(const char *kind, const char *v, unsigned *id, char *why,
    size_t len)
{
	struct passwd	*pw;
	struct group	*gr;
	char		*end;
	unsigned long	 n;
	bool		 uid = strcmp(kind, "uid") == 0;

	errno = 0;
	n = strtoul(v, &end, 10);
	if (*v != '\0' && *end == '\0' && errno == 0 && n < UINT_MAX) {
		*id = (unsigned)n;
		if (uid ? getpwuid((uid_t)n) != NULL :
		    getgrgid((gid_t)n) != NULL)
			return (0);
		snprintf(why, len, "no %s %lu on this host", uid ? "user" :
		    "group", n);
		return (-1);
	}
	if (uid && (pw = getpwnam(v)) != NULL) {
		*id = pw->pw_uid;
		return (0);
	}
	if (!uid && (gr = getgrnam(v)) != NULL) {
		*id = gr->gr_gid;
		return (0);
	}
	snprintf(why, len, "no %s named '%.40s'", uid ? "user" : "group", v);
	return (-1);
}

static int
policy_role_parse(const char *s, enum policy_role *r)
{
	size_t	i;

	for (i = POLICY_READ_ONLY; i <= POLICY_ADMIN; i++) {
		if (strcmp(s, policy_roles[i]) == 0) {
			*r = (enum policy_role)i;
			return (0);
		}
	}
	return (-1);
}

/* Splits s on blanks into at most max words; a word may be quoted with
   '...' to hold blanks. -1 on an unclosed quote or too many words. */
static int
policy_words(char *s, char **w, int max)
{
	int	n = 0;

	for (;;) {
		while (*s == ' ' || *s == '\t')
			s++;
		if (*s == '\0' || *s == '#')
			return (n);
		if (n == max)
			return (-1);
		if (*s == '\'') {
			w[n++] = ++s;
			if ((s = strchr(s, '\'')) == NULL)
				return (-1);
		} else {
			w[n++] = s;
			s += strcspn(s, " \t");
		}
		if (*s == '\0')
			return (n);
		*s++ = '\0';
	}
}

/* One line into r (or a dir into p); -1 with why. */
static int
policy_parse_line(struct policy *p, char *line, struct policy_rule *r,
    int *is_rule, char *why, size_t len)
{
	char		*w[8], real[PATH_MAX];
	const char	*kind;
	int		 n, i;

	*is_rule = 0;
	/* the caller frees r's strings on an error: never the last rule's */
	memset(r, 0, sizeof *r);
	if ((n = policy_words(line, w, 8)) == -1) {
		snprintf(why, len, "unclosed quote or too many words");
		return (-1);
	}
	if (n == 0)
		return (0);
	if (strcmp(w[0], "allow-dir") == 0) {
		if (n != 2 || w[1][0] != '/') {
			snprintf(why, len, "allow-dir takes one absolute "
			    "path");
			return (-1);
		}
		/* resolved now, so a later symlink swap of a component
		   cannot move the dir */
		if (realpath(w[1], real) == NULL) {
			snprintf(why, len, "allow-dir %.80s: %s", w[1],
			    strerror(errno));
			return (-1);
		}
		if (p->ndirs == POLICY_DIRS_MAX) {
			snprintf(why, len, "more than %d allow-dir",
			    POLICY_DIRS_MAX);
			return (-1);
		}
		if ((p->dirs[p->ndirs] = strdup(real)) == NULL) {
			snprintf(why, len, "out of memory");
			return (-1);
		}
		p->ndirs++;
		return (0);
	}
	memset(r, 0, sizeof *r);
	i = 1;
	if (strcmp(w[0], "allow") == 0)
		r->action = POLICY_ALLOW;
	else if (strcmp(w[0], "deny") == 0)
		r->action = POLICY_DENY;
	else if (strcmp(w[0], "role") == 0) {
		r->action = POLICY_ROLE;
		if (n < 2 || policy_role_parse(w[1], &r->role) == -1) {
			snprintf(why, len, "unknown role '%.40s' (read-only, "
			    "operator, admin)", n < 2 ? "" : w[1]);
			return (-1);
		}
		i = 2;
	} else {
		snprintf(why, len, "unknown keyword '%.40s' (allow, deny, "
		    "role, allow-dir)", w[0]);
		return (-1);
	}
	if (i >= n) {
		snprintf(why, len, "missing who (uid U, gid G or any)");
		return (-1);
	}
	kind = w[i];
	if (strcmp(kind, "any") == 0) {
		r->who = WHO_ANY;
		i++;
	} else if (strcmp(kind, "uid") == 0 || strcmp(kind, "gid") == 0) {
		if (i + 1 >= n) {
			snprintf(why, len, "%s needs a value", kind);
			return (-1);
		}
		r->who = kind[0] == 'u' ? WHO_UID : WHO_GID;
		if (policy_id(kind, w[i + 1], &r->id, why, len) == -1)
			return (-1);
		i += 2;
	} else {
		snprintf(why, len, "expected uid, gid or any, not '%.40s'",
		    kind);
		return (-1);
	}
	for (; i < n; i += 2) {
		if (i + 1 >= n || (strcmp(w[i], "vm") != 0 &&
		    strcmp(w[i], "command") != 0)) {
			snprintf(why, len, "expected 'vm GLOB' or 'command "
			    "GLOB' at '%.40s'", w[i]);
			return (-1);
		}
		if (policy_glob_ok(w[i + 1], why, len) == -1)
			return (-1);
		if (w[i][0] == 'v') {
			if (r->vm != NULL) {
				snprintf(why, len, "vm given twice");
				return (-1);
			}
			r->vm = strdup(w[i + 1]);
		} else {
			if (r->cmd != NULL) {
				snprintf(why, len, "command given twice");
				return (-1);
			}
			if (policy_known != NULL &&
			    !policy_known(w[i + 1])) {
				snprintf(why, len, "command glob '%.40s' "
				    "matches no broker or QEMU command",
				    w[i + 1]);
				return (-1);
			}
			r->cmd = strdup(w[i + 1]);
		}
	}
	*is_rule = 1;
	return (0);
}

int
policy_load(const char *path, struct qmp_error *err)
{
	struct policy		*p;
	struct policy_rule	 r, *nr;
	FILE			*f;
	char			 line[POLICY_LINE_MAX], copy[POLICY_LINE_MAX];
	char			 why[POLICY_TEXT_MAX];
	size_t			 lineno = 0, cap = 0;
	int			 is_rule, rc = 0;

	if (path == NULL) {
		policy_clear();
		return (0);
	}
	if ((f = fopen(path, "re")) == NULL) {
		qmp_error_set(err, QMP_CLS_GENERIC, "policy %s: %s", path,
		    strerror(errno));
		return (-1);
	}
	if ((p = calloc(1, sizeof *p)) == NULL ||
	    (p->path = strdup(path)) == NULL) {
		free(p);
		fclose(f);
		qmp_error_set(err, QMP_CLS_GENERIC, "out of memory");
		return (-1);
	}
	while (rc == 0 && fgets(line, sizeof line, f) != NULL) {
		lineno++;
		if (strchr(line, '\n') == NULL && !feof(f)) {
			snprintf(why, sizeof why, "line too long");
			rc = -1;
			break;
		}
		line[strcspn(line, "\r\n")] = '\0';
		memcpy(copy, line, sizeof copy);
		if (policy_parse_line(p, line, &r, &is_rule, why,
		    sizeof why) == -1) {
			free(r.vm);
			free(r.cmd);
			rc = -1;
			break;
		}
		if (!is_rule)
			continue;
		if (p->nrules == POLICY_RULES_MAX) {
			free(r.vm);
			free(r.cmd);
			snprintf(why, sizeof why, "more than %d rules",
			    POLICY_RULES_MAX);
			rc = -1;
			break;
		}
		if (p->nrules == cap) {
			cap = cap ? 2 * cap : 16;
			if ((nr = realloc(p->rules, cap * sizeof *nr)) ==
			    NULL) {
				free(r.vm);
				free(r.cmd);
				snprintf(why, sizeof why, "out of memory");
				rc = -1;
				break;
			}
			p->rules = nr;
		}
		r.line = lineno;
		if (asprintf(&r.text, "%s:%zu: %s", path, lineno,
		    copy + strspn(copy, " \t")) == -1)
			r.text = NULL;
		p->rules[p->nrules++] = r;
	}
	if (rc == 0 && ferror(f)) {
		snprintf(why, sizeof why, "read error");
		rc = -1;
	}
	fclose(f);
	if (rc == -1) {
		qmp_error_set(err, QMP_CLS_GENERIC, "%s:%zu: %s", path,
		    lineno, why);
		policy_free(p);
		return (-1);
	}
	policy_free(policy_cur);
	policy_cur = p;
	return (0);
}

static bool
policy_glob(const char *g, const char *s)
{
	if (g == NULL || (g[0] == '*' && g[1] == '\0'))
		return (true);
	return (s != NULL && fnmatch(g, s, 0) == 0);
}

static bool
policy_rule_matches(const struct policy_rule *r, const struct peer *p,
    const char *vm, const char *cmd)
{
	switch (r->who) {
	case WHO_UID:
		if (p->uid != (uid_t)r->id)
			return (false);
		break;
	case WHO_GID:
		if (!peer_has_gid(p, (gid_t)r->id))
			return (false);
		break;
	case WHO_ANY:
		break;
	}
	/* A command that names no VM (subscribe, query-vms, query-jobs,
	   image-attach) is one any VM's rule may allow: what it shows is
	   filtered by visibility. A deny scoped to some VMs does not
	   refuse it. */
	if (vm == NULL && r->vm != NULL && r->action != POLICY_DENY)
		return (policy_glob(r->cmd, cmd));
	return (policy_glob(r->vm, vm) && policy_glob(r->cmd, cmd));
}

/*
 * What changes nothing. vm-execute is only the carrier of a QEMU
 * command, which is judged on its own: so read-only may send it.
 */
bool
policy_is_query(const char *cmd, enum policy_ns ns)
{
	static const char *const broker[] = { "qmp_capabilities",
	    "query-commands", "query-version", "has-device", "subscribe",
	    "unsubscribe", NULL };
	static const char *const qemu[] = { "qom-get", "qom-list",
	    "qom-list-types", "qom-list-properties",
	    "device-list-properties", NULL };
	const char *const	*l;

	if (strncmp(cmd, "query-", 6) == 0 ||
	    strncmp(cmd, "x-query-", 8) == 0)
		return (true);
	for (l = ns == POLICY_BROKER ? broker : qemu; *l != NULL; l++) {
		if (strcmp(*l, cmd) == 0)
			return (true);
	}
	return (false);
}

static void
policy_refuse(struct policy_verdict *v, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
policy_refuse(struct policy_verdict *v, const char *fmt, ...)
{
	va_list	ap;

	v->allow = false;
	va_start(ap, fmt);
	vsnprintf(v->reason, sizeof v->reason, fmt, ap);
	va_end(ap);
}

/* The allowed dirs: the image roots, then the policy's. */
static size_t
policy_dirs(char **dirs, size_t max)
{
	size_t	n = 0, i;

	for (i = 0; i < conf.n_image_roots && n < max; i++)
		dirs[n++] = conf.image_roots[i];
	for (i = 0; i < policy_cur->ndirs && n < max; i++)
		dirs[n++] = policy_cur->dirs[i];
	return (n);
}

/* s into a verdict's text, cut to fit: no format to parse per request */
static void
policy_copy(char *dst, const char *s)
{
	size_t	n = strnlen(s, POLICY_TEXT_MAX - 1);

	memcpy(dst, s, n);
	dst[n] = '\0';
}

bool
policy_check(const struct peer *p, const char *vm, const char *cmd,
    enum policy_ns ns, json_t *args, struct policy_verdict *v)
{
	const struct policy_rule	*r = NULL;
	char				*dirs[CONF_MAX_ROOTS + POLICY_DIRS_MAX];
	size_t				 i, nd;
	int				 g;

	static const char	 admin[] = "built-in: uid 0 and the broker's "
				    "own uid are admin";

	/* the hot path (vm-execute, shared sockets) of root's clients:
	   nothing more than this */
	if (peer_is_admin(p)) {
		v->allow = true;
		v->role = POLICY_ADMIN;
		memcpy(v->rule, admin, sizeof admin);
		v->reason[0] = '\0';
		return (true);
	}
	v->allow = false;
	v->role = POLICY_NONE;
	v->reason[0] = '\0';
	for (i = 0; i < policy_cur->nrules; i++) {
		if (policy_rule_matches(&policy_cur->rules[i], p, vm, cmd)) {
			r = &policy_cur->rules[i];
			break;
		}
	}
	if (r == NULL) {
		snprintf(v->rule, sizeof v->rule, "%s: no rule matches",
		    policy_cur->path != NULL ? policy_cur->path : "built-in");
		policy_refuse(v, "no policy rule allows %s", cmd);
		return (false);
	}
	policy_copy(v->rule, r->text != NULL ? r->text : "?");
	switch (r->action) {
	case POLICY_DENY:
		policy_refuse(v, "%s is denied by policy", cmd);
		return (false);
	case POLICY_ALLOW:
		v->role = POLICY_OPERATOR;
		break;
	case POLICY_ROLE:
		v->role = r->role;
		break;
	}
	if (v->role == POLICY_ADMIN) {
		v->allow = true;
		return (true);
	}
	if (v->role == POLICY_READ_ONLY && !policy_is_query(cmd, ns) &&
	    !(ns == POLICY_BROKER && strcmp(cmd, "vm-execute") == 0)) {
		policy_refuse(v, "role read-only may not run %s", cmd);
		return (false);
	}
	nd = policy_dirs(dirs, sizeof dirs / sizeof dirs[0]);
	if (ns == POLICY_QEMU)
		g = guard_qemu(cmd, args, dirs, nd, v->reason,
		    sizeof v->reason);
	else
		g = guard_broker(cmd, args, dirs, nd, v->reason,
		    sizeof v->reason);
	v->allow = g == 0;
	return (v->allow);
}

bool
policy_vm_visible(const struct peer *p, const char *vm)
{
	struct policy_verdict	v;

	if (peer_is_admin(p))
		return (true);
	return (peer_vm_allowed(p, vm) &&
	    policy_check(p, vm, "query-vms", POLICY_BROKER, NULL, &v));
}
