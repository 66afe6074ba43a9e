/* A string pool: many small strings copied into a few large blocks and freed together. A
 * payload manifest holds one path per file (8,000 and more), and one malloc per path costs
 * its header and rounding, about a third of the strings' own size (docs/BENCH.md, memory).
 * glibc's obstack does the same, but reports allocation failure through a handler that must
 * not return; this returns NULL instead, as the rest of lib/ does. */
#pragma once

#include <stddef.h>

typedef struct kd_strpool kd_strpool;

/* A copy of s in pool *p (created on first use); NULL when out of memory. The copy lives until
 * kd_strpool_free(*p). */
char *kd_strpool_dup(kd_strpool **p, const char *s);
void kd_strpool_free(kd_strpool *p);
