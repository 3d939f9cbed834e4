/*
 * NATS subject tokens: percent-escaping of what a token cannot hold.
 */
#include "config.h"

#include <string.h>

#include "util/subject.h"

size_t
subject_token(char *dst, size_t len, const char *s)
{
	static const char	hex[] = "0123456789ABCDEF";
	size_t			n = 0;
	unsigned char		c;

	if (*s == '\0' || strcmp(s, "_") == 0) {
		if (len < 4)
			return (0);
		memcpy(dst, *s == '\0' ? "%" : "%5F", *s == '\0' ? 2 : 4);
		return (*s == '\0' ? 1 : 3);
	}
	for (; *s != '\0'; s++) {
		c = (unsigned char)*s;
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '_' || c == '-') {
			if (n + 2 > len)
				return (0);
			dst[n++] = (char)c;
		} else {
			if (n + 4 > len)
				return (0);
			dst[n++] = '%';
			dst[n++] = hex[c >> 4];
			dst[n++] = hex[c & 15];
		}
	}
	dst[n] = '\0';
	return (n);
}

int
subject_urls(char *list, const char **urls, int max)
{
	char	*p, *tok, *save = NULL;
	int	 n = 0;

	for (p = list; (tok = strtok_r(p, ", \t", &save)) != NULL; p = NULL) {
		if (n == max)
			return (-1);
		urls[n++] = tok;
	}
	return (n);
}
