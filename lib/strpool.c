#include "strpool.h"

#include <stdlib.h>
#include <string.h>

#define BLOCK (64u << 10)

struct kd_strpool {
	struct kd_strpool *next; /* older blocks */
	size_t used, cap;
	char data[];
};

static struct kd_strpool *block_new(size_t cap, struct kd_strpool *next)
{
	struct kd_strpool *b = malloc(sizeof(*b) + cap);
	if (b)
		*b = (struct kd_strpool){.next = next, .cap = cap};
	return b;
}

char *kd_strpool_dup(kd_strpool **p, const char *s)
{
	size_t n = strlen(s) + 1;
	struct kd_strpool *b = *p;

	if (n > BLOCK / 4) {
		/* A long string gets a block of its own, behind the current one, so that the
		 * current block's free space is not given up. */
		struct kd_strpool *own = block_new(n, b ? b->next : NULL);
		if (!own)
			return NULL;
		own->used = n;
		if (b)
			b->next = own;
		else
			*p = own;
		return memcpy(own->data, s, n);
	}
	if (!b || b->cap - b->used < n) {
		if (!(b = block_new(BLOCK - sizeof(*b), b)))
			return NULL;
		*p = b;
	}
	char *r = memcpy(b->data + b->used, s, n);
	b->used += n;
	return r;
}

void kd_strpool_free(kd_strpool *p)
{
	while (p) {
		struct kd_strpool *next = p->next;
		free(p);
		p = next;
	}
}
