/*
 * Image URIs to blockdev-add protocol nodes. See uri.h for the grammar.
 *
 * The parser is deliberately narrow: a URI carries a host, a port, a
 * path and a handful of named options, and anything beyond that (user
 * info, fragments, unknown options, stray characters) is an error, since
 * a string that reaches QEMU half-understood is worse than a refusal.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "disk/uri.h"

#define URI_MAX_OPTS	4

struct uri {
	char		 scheme[32];
	char		 host[256];	/* brackets stripped */
	bool		 has_host;
	char		 port[8];	/* digits; "" if none */
	char		 path[URI_MAX];	/* percent-decoded */
	struct {
		char	 key[32];
		char	 val[URI_MAX];	/* percent-decoded */
	}		 opt[URI_MAX_OPTS];
	size_t		 nopt;
};

static int
uri_hex(int c)
{
	if (c >= '0' && c <= '9')
		return (c - '0');
	c = tolower((unsigned char)c);
	if (c >= 'a' && c <= 'f')
		return (c - 'a' + 10);
	return (-1);
}

static bool
uri_utf8(const char *s, size_t n)
{
	json_t	*j;

	if ((j = json_stringn(s, n)) == NULL)
		return (false);
	json_decref(j);
	return (true);
}

/* Copies [s, s+n) decoding %XX into out (size outlen). Refuses %00 and
   control characters, which no file or export name needs and which
   would only hide something from a log. */
static int
uri_decode(const char *s, size_t n, char *out, size_t outlen,
    struct qmp_error *err)
{
	size_t	i, o = 0;
	int	c, h, l;

	for (i = 0; i < n; i++) {
		c = (unsigned char)s[i];
		if (c == '%') {
			if (i + 2 >= n) {
				qmp_error_set(err, QMP_CLS_GENERIC,
				    "truncated percent escape in URI");
				return (-1);
			}
			h = uri_hex(s[i + 1]);
			l = uri_hex(s[i + 2]);
			if (h < 0 || l < 0) {
				qmp_error_set(err, QMP_CLS_GENERIC,
				    "bad percent escape in URI");
				return (-1);
			}
			c = h * 16 + l;
			i += 2;
		}
		if (c < 0x20 || c == 0x7f) {
			qmp_error_set(err, QMP_CLS_GENERIC,
			    "control character in URI");
			return (-1);
		}
		if (o + 1 >= outlen) {
			qmp_error_set(err, QMP_CLS_GENERIC, "URI part too long");
			return (-1);
		}
		out[o++] = (char)c;
	}
	out[o] = '\0';
	/* what decodes to bytes that are not UTF-8 cannot become a JSON
	   string for QEMU: say so here rather than fail without a word */
	if (!uri_utf8(out, o)) {
		qmp_error_set(err, QMP_CLS_GENERIC,
		    "URI part is not valid UTF-8");
		return (-1);
	}
	return (0);
}

static bool
uri_host_char(int c)
{
	return (isalnum(c) || c == '.' || c == '-' || c == '_');
}

static int
uri_split(const char *src, struct uri *u, struct qmp_error *err)
{
	const char	*p, *sep, *auth, *aend, *q, *amp, *eq, *hend;
	size_t		 n;

	memset(u, 0, sizeof *u);
	for (p = src; *p != '\0'; p++) {
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f) {
			qmp_error_set(err, QMP_CLS_GENERIC,
			    "URI contains a space, control or non-ASCII "
			    "character");
			return (-1);
		}
	}
	if (strchr(src, '#') != NULL) {
		qmp_error_set(err, QMP_CLS_GENERIC, "URI fragments are not "
		    "supported");
		return (-1);
	}
	sep = strstr(src, "://");
	if (sep == NULL || sep == src || (size_t)(sep - src) >= sizeof u->scheme) {
		qmp_error_set(err, QMP_CLS_GENERIC, "image source must be an "
		    "absolute path or a URI (scheme://...)");
		return (-1);
	}
	for (p = src; p < sep; p++) {
		if (!isalnum((unsigned char)*p) && *p != '+' && *p != '-' &&
		    *p != '.') {
			qmp_error_set(err, QMP_CLS_GENERIC, "bad URI scheme");
			return (-1);
		}
		u->scheme[p - src] = (char)tolower((unsigned char)*p);
	}

	auth = sep + 3;
	aend = auth + strcspn(auth, "/?");
	if (memchr(auth, '@', aend - auth) != NULL) {
		qmp_error_set(err, QMP_CLS_GENERIC, "user information in URIs "
		    "is not supported");
		return (-1);
	}
	p = auth;
	if (p < aend && *p == '[') {
		hend = memchr(p, ']', aend - p);
		if (hend == NULL) {
			qmp_error_set(err, QMP_CLS_GENERIC,
			    "unterminated IPv6 address in URI");
			return (-1);
		}
		n = hend - (p + 1);
		if (n == 0 || n >= sizeof u->host) {
			qmp_error_set(err, QMP_CLS_GENERIC,
			    "bad IPv6 address in URI");
			return (-1);
		}
		memcpy(u->host, p + 1, n);
		u->host[n] = '\0';
		{
			struct in6_addr a6;

			if (inet_pton(AF_INET6, u->host, &a6) != 1) {
				qmp_error_set(err, QMP_CLS_GENERIC,
				    "bad IPv6 address in URI: %s", u->host);
				return (-1);
			}
		}
		u->has_host = true;
		p = hend + 1;
	} else {
		hend = memchr(p, ':', aend - p);
		if (hend == NULL)
			hend = aend;
		n = hend - p;
		if (n >= sizeof u->host) {
			qmp_error_set(err, QMP_CLS_GENERIC,
			    "host name in URI too long");
			return (-1);
		}
		for (q = p; q < hend; q++) {
			if (!uri_host_char((unsigned char)*q)) {
				qmp_error_set(err, QMP_CLS_GENERIC,
				    "bad character in URI host");
				return (-1);
			}
		}
		memcpy(u->host, p, n);
		u->host[n] = '\0';
		u->has_host = n > 0;
		p = hend;
	}
	if (p < aend) {
		unsigned long	 port;
		char		*end;

		if (*p != ':' || p + 1 == aend || aend - (p + 1) > 5) {
			qmp_error_set(err, QMP_CLS_GENERIC, "bad port in URI");
			return (-1);
		}
		for (q = p + 1; q < aend; q++) {
			if (!isdigit((unsigned char)*q)) {
				qmp_error_set(err, QMP_CLS_GENERIC,
				    "bad port in URI");
				return (-1);
			}
		}
		port = strtoul(p + 1, &end, 10);
		if (port == 0 || port > 65535) {
			qmp_error_set(err, QMP_CLS_GENERIC,
			    "port out of range in URI");
			return (-1);
		}
		if (!u->has_host) {
			qmp_error_set(err, QMP_CLS_GENERIC,
			    "port without a host in URI");
			return (-1);
		}
		memcpy(u->port, p + 1, aend - (p + 1));
	}

	q = aend + strcspn(aend, "?");
	if (uri_decode(aend, q - aend, u->path, sizeof u->path, err) != 0)
		return (-1);
	if (*q != '?')
		return (0);
	for (p = q + 1; ; p = amp + 1) {
		amp = p + strcspn(p, "&");
		eq = memchr(p, '=', amp - p);
		if (amp == p) {
			qmp_error_set(err, QMP_CLS_GENERIC, "empty URI option");
			return (-1);
		}
		if (eq == NULL || eq == p ||
		    (size_t)(eq - p) >= sizeof u->opt[0].key) {
			qmp_error_set(err, QMP_CLS_GENERIC,
			    "URI options must be key=value");
			return (-1);
		}
		if (u->nopt == URI_MAX_OPTS) {
			qmp_error_set(err, QMP_CLS_GENERIC,
			    "too many URI options");
			return (-1);
		}
		memcpy(u->opt[u->nopt].key, p, eq - p);
		u->opt[u->nopt].key[eq - p] = '\0';
		if (uri_decode(eq + 1, amp - (eq + 1), u->opt[u->nopt].val,
		    sizeof u->opt[0].val, err) != 0)
			return (-1);
		u->nopt++;
		if (*amp == '\0')
			break;
	}
	return (0);
}

/* Takes the value of option key and marks it used; refuses a repeat. */
static const char *
uri_opt(struct uri *u, const char *key, bool *used, struct qmp_error *err,
    int *bad)
{
	const char	*v = NULL;
	size_t		 i;

	for (i = 0; i < u->nopt; i++) {
		if (strcmp(u->opt[i].key, key) != 0)
			continue;
		if (v != NULL) {
			qmp_error_set(err, QMP_CLS_GENERIC,
			    "URI option '%s' given twice", key);
			*bad = 1;
			return (NULL);
		}
		v = u->opt[i].val;
		used[i] = true;
	}
	return (v);
}

static int
uri_no_extra(const struct uri *u, const bool *used, struct qmp_error *err)
{
	size_t	i;

	for (i = 0; i < u->nopt; i++) {
		if (!used[i]) {
			qmp_error_set(err, QMP_CLS_GENERIC,
			    "unknown URI option '%s'", u->opt[i].key);
			return (-1);
		}
	}
	return (0);
}

static json_t *
uri_inet(const struct uri *u, const char *defport)
{
	return (json_pack("{s:s, s:s, s:s}", "type", "inet", "host", u->host,
	    "port", u->port[0] != '\0' ? u->port : defport));
}

static json_t *
uri_nbd(struct uri *u, const char *transport, struct qmp_error *err)
{
	bool		 used[URI_MAX_OPTS] = { false };
	const char	*sock, *export;
	json_t		*server, *node;
	int		 bad = 0;

	sock = uri_opt(u, "socket", used, err, &bad);
	if (bad || uri_no_extra(u, used, err) != 0)
		return (NULL);
	if (strcmp(transport, "unix") == 0) {
		if (u->has_host || sock == NULL || *sock != '/') {
			qmp_error_set(err, QMP_CLS_GENERIC, "nbd+unix URI needs "
			    "no host and an absolute socket=PATH");
			return (NULL);
		}
		server = json_pack("{s:s, s:s}", "type", "unix", "path", sock);
	} else {
		if (!u->has_host || sock != NULL) {
			qmp_error_set(err, QMP_CLS_GENERIC, "nbd URI needs a "
			    "host and takes no socket option");
			return (NULL);
		}
		server = uri_inet(u, "10809");
	}
	if (server == NULL)
		return (NULL);
	/* QEMU strips exactly one leading slash; an empty export is the
	   server's default one. */
	export = u->path[0] == '/' ? u->path + 1 : u->path;
	node = json_pack("{s:s, s:o}", "driver", "nbd", "server", server);
	if (node != NULL && *export != '\0')
		json_object_set_new(node, "export", json_string(export));
	return (node);
}

static json_t *
uri_gluster(struct uri *u, const char *transport, struct qmp_error *err)
{
	bool		 used[URI_MAX_OPTS] = { false };
	const char	*sock, *t, *vol, *slash;
	char		 volume[256];
	json_t		*server;
	int		 bad = 0;

	t = uri_opt(u, "transport", used, err, &bad);
	if (bad)
		return (NULL);
	sock = uri_opt(u, "socket", used, err, &bad);
	if (bad || uri_no_extra(u, used, err) != 0)
		return (NULL);
	if (t != NULL) {
		if (transport != NULL && strcmp(t, transport) != 0) {
			qmp_error_set(err, QMP_CLS_GENERIC, "gluster transport "
			    "given twice and differently");
			return (NULL);
		}
		transport = t;
	}
	if (transport == NULL)
		transport = "tcp";
	if (strcmp(transport, "tcp") != 0 && strcmp(transport, "unix") != 0 &&
	    strcmp(transport, "rdma") != 0) {
		qmp_error_set(err, QMP_CLS_GENERIC,
		    "unknown gluster transport '%s'", transport);
		return (NULL);
	}

	vol = u->path;
	if (*vol != '/') {
		qmp_error_set(err, QMP_CLS_GENERIC,
		    "gluster URI needs /volname/image");
		return (NULL);
	}
	vol++;
	slash = strchr(vol, '/');
	if (slash == NULL || slash == vol || slash[1] == '\0' ||
	    (size_t)(slash - vol) >= sizeof volume) {
		qmp_error_set(err, QMP_CLS_GENERIC,
		    "gluster URI needs /volname/image");
		return (NULL);
	}
	memcpy(volume, vol, slash - vol);
	volume[slash - vol] = '\0';

	if (strcmp(transport, "unix") == 0) {
		if (u->has_host || sock == NULL || *sock != '/') {
			qmp_error_set(err, QMP_CLS_GENERIC, "gluster unix "
			    "transport needs no host and an absolute "
			    "socket=PATH");
			return (NULL);
		}
		server = json_pack("{s:s, s:s}", "type", "unix", "path", sock);
	} else {
		if (!u->has_host || sock != NULL) {
			qmp_error_set(err, QMP_CLS_GENERIC, "gluster URI needs "
			    "a server and takes no socket option");
			return (NULL);
		}
		/* QEMU maps rdma to tcp: libgfapi dropped rdma. */
		server = uri_inet(u, "24007");
	}
	if (server == NULL)
		return (NULL);
	return (json_pack("{s:s, s:s, s:s, s:[o]}", "driver", "gluster",
	    "volume", volume, "path", slash + 1, "server", server));
}

enum uri_kind
uri_parse(const char *src, json_t **node, struct qmp_error *err)
{
	struct uri	*u;
	const char	*plus, *transport;
	size_t		 len;

	*node = NULL;
	err->desc[0] = '\0';
	len = strnlen(src, URI_MAX + 1);
	if (len == 0 || len > URI_MAX) {
		qmp_error_set(err, QMP_CLS_GENERIC,
		    "image source empty or longer than %d bytes", URI_MAX);
		return (URI_BAD);
	}
	if (src[0] == '/')
		return (URI_LOCAL);

	if ((u = malloc(sizeof *u)) == NULL) {
		qmp_error_set(err, QMP_CLS_GENERIC, "out of memory");
		return (URI_BAD);
	}
	if (uri_split(src, u, err) != 0)
		goto bad;

	plus = strchr(u->scheme, '+');
	transport = plus != NULL ? plus + 1 : NULL;
	if (strncmp(u->scheme, "nbd", 3) == 0 &&
	    (u->scheme[3] == '\0' || u->scheme[3] == '+')) {
		if (transport != NULL && strcmp(transport, "tcp") != 0 &&
		    strcmp(transport, "unix") != 0)
			goto scheme;
		*node = uri_nbd(u, transport != NULL ? transport : "tcp", err);
	} else if (strncmp(u->scheme, "gluster", 7) == 0 &&
	    (u->scheme[7] == '\0' || u->scheme[7] == '+')) {
		if (transport != NULL && strcmp(transport, "tcp") != 0 &&
		    strcmp(transport, "unix") != 0 &&
		    strcmp(transport, "rdma") != 0)
			goto scheme;
		*node = uri_gluster(u, transport, err);
	} else
		goto scheme;
	if (*node == NULL) {
		if (err->desc[0] == '\0')
			qmp_error_set(err, QMP_CLS_GENERIC,
			    "malformed image URI");
		goto bad;
	}
	free(u);
	return (URI_NET);

scheme:
	qmp_error_set(err, QMP_CLS_GENERIC, "unsupported image URI scheme "
	    "'%s' (nbd, nbd+unix, gluster)", u->scheme);
bad:
	free(u);
	return (URI_BAD);
}
