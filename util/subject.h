/*
 * NATS subject tokens from arbitrary names (host ids, VM names, event
 * names): the escaping docs/nats.md documents, shared by the broker's
 * publisher and the fleet tool.
 */
#ifndef UTIL_SUBJECT_H
#define UTIL_SUBJECT_H

#include <stddef.h>

/*
 * One NATS subject token from any string: every byte outside
 * [A-Za-z0-9_-] becomes %XX (upper-case hex), '%' included, and a token
 * that is exactly "_" (the broker-wide VM token) becomes "%5F", so two
 * different names never give the same token and no name can add a
 * level ('.') or a wildcard ('*', '>'). The empty string (which NATS
 * forbids as a token) gives "%", which no escape can produce. Returns
 * the length written, or 0 if dst (size len) is too small.
 */
size_t	subject_token(char *dst, size_t len, const char *s);

/* Splits a comma list of NATS URLs in place (libnats takes a list only
   as an array): the count, or -1 if there are more than max. */
#define SUBJECT_URLS_MAX	32
int	subject_urls(char *list, const char **urls, int max);

#endif
