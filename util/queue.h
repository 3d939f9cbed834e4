/*
 * sys/queue.h for every layer, with the _SAFE walkers that glibc's copy
 * lacks (the BSDs have them): a walk that may unlink or free the element
 * it stands on needs them, and each layer growing its own copy is how
 * they drift apart.
 */
#ifndef UTIL_QUEUE_H
#define UTIL_QUEUE_H

#include <sys/queue.h>

#ifndef TAILQ_FOREACH_SAFE
#define TAILQ_FOREACH_SAFE(var, head, field, tvar)			\
	for ((var) = TAILQ_FIRST(head);					\
	    (var) && ((tvar) = TAILQ_NEXT(var, field), 1);		\
	    (var) = (tvar))
#endif
#ifndef LIST_FOREACH_SAFE
#define LIST_FOREACH_SAFE(var, head, field, tvar)			\
	for ((var) = LIST_FIRST(head);					\
	    (var) && ((tvar) = LIST_NEXT(var, field), 1);		\
	    (var) = (tvar))
#endif

#endif
