/* NULL-terminated string vectors (char **): split a comma list, copy, find, free. Small, but
 * shims, components, created paths and CLI lists all use it. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "macro.h"

size_t kd_strv_length(char *const *v);
/* Split s at sep, dropping empty items and surrounding spaces. Returns NULL on ENOMEM. */
char **kd_strv_split(const char *s, char sep);
char **kd_strv_copy(char *const *v);
/* Append a copy of s; returns 0 or -ENOMEM. */
int kd_strv_push(char ***v, const char *s);
bool kd_strv_find(char *const *v, const char *s);
/* Equal as sets (order-insensitive). */
bool kd_strv_equal_set(char *const *a, char *const *b);
void kd_strv_sort(char **v);
void kd_strv_free(char **v);
static inline void kd_strv_freep(char ***v)
{
	kd_strv_free(*v);
}
#define _cleanup_strv_ _cleanup_(kd_strv_freep)
