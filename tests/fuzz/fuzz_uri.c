/*
 * libFuzzer harness for the image-source parser (disk/uri.c).
 *
 * A disk source comes straight from a client. Beyond not crashing, it
 * checks what disk-add relies on: exactly one of the three outcomes, a
 * node only for a network URI (and one jansson can serialise), an error
 * text only for a refusal, and no input past URI_MAX accepted.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "disk/uri.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct qmp_error	 err;
	json_t			*node = NULL;
	char			*src, *s;
	enum uri_kind		 k;

	if ((src = malloc(size + 1)) == NULL)
		return (0);
	memcpy(src, data, size);
	src[size] = '\0';
	memset(&err, 0, sizeof err);
	k = uri_parse(src, &node, &err);
	switch (k) {
	case URI_NET:
		if (node == NULL || !json_is_object(node))
			__builtin_trap();
		if ((s = json_dumps(node, JSON_COMPACT)) == NULL)
			__builtin_trap();
		free(s);
		if (strlen(src) > URI_MAX)
			__builtin_trap();
		break;
	case URI_LOCAL:
		if (node != NULL || src[0] != '/')
			__builtin_trap();
		break;
	case URI_BAD:
		if (node != NULL || err.desc[0] == '\0' ||
		    memchr(err.desc, '\0', sizeof err.desc) == NULL)
			__builtin_trap();
		break;
	default:
		__builtin_trap();
	}
	json_decref(node);
	free(src);
	return (0);
}
