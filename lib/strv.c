#include "strv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

size_t kd_strv_length(char *const *v)
{
	size_t n = 0;
	while (v && v[n])
		n++;
	return n;
}

int kd_strv_push(char ***v, const char *s)
{
	size_t n = kd_strv_length(*v);
	char *c = strdup(s);
	char **nv = c ? realloc(*v, (n + 2) * sizeof(char *)) : NULL;
	if (!nv) {
		free(c);
		return -ENOMEM;
	}
	nv[n] = c;
	nv[n + 1] = NULL;
	*v = nv;
	return 0;
}

char **kd_strv_split(const char *s, char sep)
{
	char **v = calloc(1, sizeof(char *));
	if (!v)
		return NULL;
	while (s && *s) {
		const char *e = strchr(s, sep);
		size_t n = e ? (size_t)(e - s) : strlen(s);
		const char *b = s;
		while (n > 0 && (*b == ' ' || *b == '\t')) {
			b++;
			n--;
		}
		while (n > 0 && (b[n - 1] == ' ' || b[n - 1] == '\t'))
			n--;
		if (n > 0) {
			char *item = strndup(b, n);
			if (!item || kd_strv_push(&v, item) < 0) {
				free(item);
				kd_strv_free(v);
				return NULL;
			}
			free(item);
		}
		s = e ? e + 1 : NULL;
	}
	return v;
}

char **kd_strv_copy(char *const *v)
{
	char **c = calloc(1, sizeof(char *));
	for (size_t i = 0; c && v && v[i]; i++)
		if (kd_strv_push(&c, v[i]) < 0) {
			kd_strv_free(c);
			return NULL;
		}
	return c;
}

bool kd_strv_find(char *const *v, const char *s)
{
	for (size_t i = 0; v && v[i]; i++)
		if (strcmp(v[i], s) == 0)
			return true;
	return false;
}

bool kd_strv_equal_set(char *const *a, char *const *b)
{
	for (size_t i = 0; a && a[i]; i++)
		if (!kd_strv_find(b, a[i]))
			return false;
	for (size_t i = 0; b && b[i]; i++)
		if (!kd_strv_find(a, b[i]))
			return false;
	return true;
}

static int cmp(const void *x, const void *y)
{
	return strcmp(*(char *const *)x, *(char *const *)y);
}

void kd_strv_sort(char **v)
{
	qsort(v, kd_strv_length(v), sizeof(char *), cmp);
}

void kd_strv_free(char **v)
{
	for (size_t i = 0; v && v[i]; i++)
		free(v[i]);
	free(v);
}
