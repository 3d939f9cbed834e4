/*
 * What the fuzz harnesses share (tools/fuzz builds each from its .c and
 * the sources it names; this header is included, not linked).
 */
#ifndef TESTS_FUZZ_UTIL_H
#define TESTS_FUZZ_UTIL_H

#include <string.h>

#include <jansson.h>

/* Whether j holds U+0000 (kept as QEMU keeps it, C0 80) in a key or a
   string: such messages are QEMU's business byte for byte, judged by
   the conformance corpus (s-args-nul and the fuzz streams), not by the
   round trips below. */
static inline int
has_nul(const json_t *j)
{
	const char	*k;
	json_t		*v;
	size_t		 i;

	if (json_is_string(j))
		return (memmem(json_string_value(j), json_string_length(j),
		    "\xc0\x80", 2) != NULL);
	if (json_is_array(j)) {
		json_array_foreach(j, i, v)
			if (has_nul(v))
				return (1);
	}
	if (json_is_object(j)) {
		json_object_foreach((json_t *)j, k, v)
			if (strstr(k, "\xc0\x80") != NULL || has_nul(v))
				return (1);
	}
	return (0);
}

#endif
