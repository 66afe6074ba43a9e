/* Myers' greedy O(ND) diff (E. Myers, "An O(ND) Difference Algorithm and Its Variations", 1986)
 * over lines, after stripping the common prefix and suffix, and a unified-format printer that
 * matches GNU diff -u (hunk ranges, merged hunks, the no-newline marker). The trace of V arrays
 * is kept for the backtrack, (D+1)^2 ints: hence KD_DIFF_MAX_EDITS. */
#include "diff.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct line {
	const char *s;
	size_t len; /* including the '\n', if any */
} line;

typedef enum op_kind { OP_EQ, OP_DEL, OP_INS } op_kind;

typedef struct op {
	op_kind kind;
	size_t a, b; /* line index in a (EQ, DEL) and b (EQ, INS) */
} op;

static void free_linesp(line **p)
{
	free(*p);
}
static void free_opsp(op **p)
{
	free(*p);
}

static int split_lines(const char *s, size_t len, line **ret, size_t *ret_n, kd_error *err)
{
	size_t n = 0, cap = 0;
	line *v = NULL;
	for (size_t i = 0; i < len;) {
		const char *nl = memchr(s + i, '\n', len - i);
		size_t l = nl ? (size_t)(nl - (s + i)) + 1 : len - i;
		if (n == KD_DIFF_MAX_LINES) {
			free(v);
			return kd_err(err, -E2BIG, "diff: more than %u lines", KD_DIFF_MAX_LINES);
		}
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			line *nv = realloc(v, cap * sizeof(*v));
			if (!nv) {
				free(v);
				return -ENOMEM;
			}
			v = nv;
		}
		v[n++] = (line){s + i, l};
		i += l;
	}
	*ret = v;
	*ret_n = n;
	return 0;
}

static bool line_eq(const line *x, const line *y)
{
	return x->len == y->len && memcmp(x->s, y->s, x->len) == 0;
}

/* The edit script for a[0..n) -> b[0..m) (already offset), appended to ops in order. Returns
 * false if more than KD_DIFF_MAX_EDITS edits are needed (nothing appended then). */
static int myers(const line *a, size_t n, const line *b, size_t m, size_t aoff, size_t boff,
		 op *ops, size_t *nops, bool *ret_ok)
{
	long max = (long)(n + m), dmax = max < (long)KD_DIFF_MAX_EDITS ? max : KD_DIFF_MAX_EDITS;
	long off = dmax + 1;
	_cleanup_free_ long *v = calloc((size_t)(2 * dmax + 3), sizeof(long));
	_cleanup_free_ long *trace = calloc((size_t)((dmax + 1) * (dmax + 1)), sizeof(long));
	if (!v || !trace)
		return -ENOMEM;
	long D = -1;
	for (long d = 0; d <= dmax && D < 0; d++) {
		/* trace[d] = V before step d, for k in [-d, d] (offset d*d). */
		for (long k = -d; k <= d; k++)
			trace[d * d + (k + d)] = v[off + k];
		for (long k = -d; k <= d; k += 2) {
			long x = (k == -d || (k != d && v[off + k - 1] < v[off + k + 1]))
					 ? v[off + k + 1]
					 : v[off + k - 1] + 1;
			long y = x - k;
			while (x < (long)n && y < (long)m && line_eq(&a[x], &b[y]))
				x++, y++;
			v[off + k] = x;
			if (x >= (long)n && y >= (long)m) {
				D = d;
				break;
			}
		}
	}
	if (D < 0) {
		*ret_ok = false;
		return 0;
	}
	/* Backtrack from (n, m), writing the ops from the end: D edits and (n + m - D) / 2
	 * diagonal moves. */
	size_t total = (n + m + (size_t)D) / 2;
	size_t w = *nops + total;
	long x = (long)n, y = (long)m;
	for (long d = D; d > 0; d--) {
		const long *tv = &trace[d * d + d]; /* tv[k] for k in [-d, d] */
		long k = x - y;
		long pk = (k == -d || (k != d && tv[k - 1] < tv[k + 1])) ? k + 1 : k - 1;
		long px = tv[pk], py = px - pk;
		while (x > px && y > py) {
			x--, y--;
			ops[--w] = (op){OP_EQ, aoff + (size_t)x, boff + (size_t)y};
		}
		if (x == px) {
			y--;
			ops[--w] = (op){OP_INS, aoff + (size_t)x, boff + (size_t)y};
		} else {
			x--;
			ops[--w] = (op){OP_DEL, aoff + (size_t)x, boff + (size_t)y};
		}
	}
	while (x > 0 && y > 0) {
		x--, y--;
		ops[--w] = (op){OP_EQ, aoff + (size_t)x, boff + (size_t)y};
	}
	*nops += total;
	*ret_ok = true;
	return 0;
}

static void put_line(FILE *f, char tag, const line *l)
{
	fputc(tag, f);
	fwrite(l->s, 1, l->len, f);
	if (l->len == 0 || l->s[l->len - 1] != '\n')
		fputs("\n\\ No newline at end of file\n", f);
}

static void put_range(FILE *f, size_t start, size_t count)
{
	/* GNU: an empty range names the line before it; a count of 1 is left out. */
	if (count == 0)
		fprintf(f, "%zu,0", start);
	else if (count == 1)
		fprintf(f, "%zu", start + 1);
	else
		fprintf(f, "%zu,%zu", start + 1, count);
}

static void print_hunks(FILE *f, const op *ops, size_t n, const line *a, const line *b, size_t ctx)
{
	size_t i = 0;
	for (;;) {
		while (i < n && ops[i].kind == OP_EQ)
			i++;
		if (i >= n)
			return;
		size_t start = i > ctx ? i - ctx : 0, last = i, end;
		/* Extend while the next change is at most 2*ctx equal lines away. */
		for (;;) {
			size_t j = last + 1;
			while (j < n && ops[j].kind == OP_EQ)
				j++;
			if (j < n && j - last - 1 <= 2 * ctx)
				last = j;
			else
				break;
		}
		end = last + 1 + ctx < n ? last + 1 + ctx : n;
		size_t na = 0, nb = 0;
		for (size_t k = start; k < end; k++) {
			na += ops[k].kind != OP_INS;
			nb += ops[k].kind != OP_DEL;
		}
		fputs("@@ -", f);
		put_range(f, ops[start].a, na);
		fputs(" +", f);
		put_range(f, ops[start].b, nb);
		fputs(" @@\n", f);
		for (size_t k = start; k < end; k++) {
			if (ops[k].kind == OP_EQ)
				put_line(f, ' ', &a[ops[k].a]);
			else if (ops[k].kind == OP_DEL)
				put_line(f, '-', &a[ops[k].a]);
			else
				put_line(f, '+', &b[ops[k].b]);
		}
		i = end;
	}
}

int kd_diff_unified(const char *a, size_t alen, const char *b, size_t blen, const char *label_a,
		    const char *label_b, unsigned context, char **ret, kd_error *err)
{
	_cleanup_(free_linesp) line *la = NULL;
	_cleanup_(free_linesp) line *lb = NULL;
	size_t n = 0, m = 0;
	int r;
	if ((r = split_lines(a ? a : "", a ? alen : 0, &la, &n, err)) < 0 ||
	    (r = split_lines(b ? b : "", b ? blen : 0, &lb, &m, err)) < 0)
		return r;
	size_t pre = 0, suf = 0;
	while (pre < n && pre < m && line_eq(&la[pre], &lb[pre]))
		pre++;
	while (suf < n - pre && suf < m - pre && line_eq(&la[n - 1 - suf], &lb[m - 1 - suf]))
		suf++;
	if (pre == n && pre == m) {
		*ret = strdup("");
		return *ret ? 0 : -ENOMEM;
	}
	_cleanup_(free_opsp) op *ops = calloc(n + m + 1, sizeof(op));
	if (!ops)
		return -ENOMEM;
	size_t nops = 0;
	for (size_t i = 0; i < pre; i++)
		ops[nops++] = (op){OP_EQ, i, i};
	bool ok = false;
	if ((r = myers(la + pre, n - pre - suf, lb + pre, m - pre - suf, pre, pre, ops, &nops,
		       &ok)) < 0)
		return r;
	if (!ok) {
		for (size_t i = pre; i < n - suf; i++)
			ops[nops++] = (op){OP_DEL, i, pre};
		for (size_t i = pre; i < m - suf; i++)
			ops[nops++] = (op){OP_INS, n - suf, i};
	}
	for (size_t i = 0; i < suf; i++)
		ops[nops++] = (op){OP_EQ, n - suf + i, m - suf + i};

	char *buf = NULL;
	size_t size = 0;
	FILE *f = open_memstream(&buf, &size);
	if (!f)
		return -ENOMEM;
	fprintf(f, "--- %s\n+++ %s\n", label_a, label_b);
	print_hunks(f, ops, nops, la, lb, context);
	if (fclose(f) != 0 || !buf) {
		free(buf);
		return -ENOMEM;
	}
	*ret = buf;
	return 0;
}
