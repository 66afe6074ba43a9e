#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "diff.h"
#include "tap.h"

static char *diff(const char *a, const char *b)
{
	char *out = NULL;
	kd_error err = {0};
	if (kd_diff_unified(a, a ? strlen(a) : 0, b, b ? strlen(b) : 0, "a/f", "b/f",
			    KD_DIFF_CONTEXT, &out, &err) < 0)
		return NULL;
	return out;
}

#define CHECK_DIFF(a, b, want)                                                                     \
	do {                                                                                       \
		char *_d = diff(a, b);                                                             \
		CHECK_STR(_d, want);                                                               \
		free(_d);                                                                          \
	} while (0)

TEST(test_equal)
{
	CHECK_DIFF("", "", "");
	CHECK_DIFF(NULL, NULL, "");
	CHECK_DIFF("a\nb\n", "a\nb\n", "");
}

TEST(test_create_and_delete)
{
	CHECK_DIFF(NULL, "x\ny\n", "--- a/f\n+++ b/f\n@@ -0,0 +1,2 @@\n+x\n+y\n");
	CHECK_DIFF("x\n", "", "--- a/f\n+++ b/f\n@@ -1 +0,0 @@\n-x\n");
}

TEST(test_context_and_ranges)
{
	/* One changed line in the middle of ten: 3 lines of context each side. */
	const char *a = "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n";
	const char *b = "1\n2\n3\n4\n5\nsix\n7\n8\n9\n10\n";
	CHECK_DIFF(a, b, "--- a/f\n+++ b/f\n@@ -3,7 +3,7 @@\n 3\n 4\n 5\n-6\n+six\n 7\n 8\n 9\n");
	/* An insertion at the top and an append at the end. */
	CHECK_DIFF("a\nb\n", "top\na\nb\nend\n",
		   "--- a/f\n+++ b/f\n@@ -1,2 +1,4 @@\n+top\n a\n b\n+end\n");
}

TEST(test_pure_insertion_range)
{
	/* An empty old range names the line before it (GNU diff). */
	const char *a = "1\n2\n3\n4\n5\n6\n7\n8\n";
	const char *b = "1\n2\n3\n4\nnew\n5\n6\n7\n8\n";
	CHECK_DIFF(a, b, "--- a/f\n+++ b/f\n@@ -2,6 +2,7 @@\n 2\n 3\n 4\n+new\n 5\n 6\n 7\n");
	/* Far from the context: an empty range with a start line. */
	CHECK_DIFF("1\n2\n3\n4\n5\n6\n7\n8\n9\n", "1\n2\n3\n4\n5\n6\n7\n8\n9\nX\n",
		   "--- a/f\n+++ b/f\n@@ -7,3 +7,4 @@\n 7\n 8\n 9\n+X\n");
}

TEST(test_hunks_merge_and_split)
{
	/* Changes 6 equal lines apart share one hunk (<= 2 * context)... */
	const char *a = "a\n1\n2\n3\n4\n5\n6\nb\n";
	const char *b = "A\n1\n2\n3\n4\n5\n6\nB\n";
	CHECK_DIFF(a, b,
		   "--- a/f\n+++ b/f\n@@ -1,8 +1,8 @@\n-a\n+A\n 1\n 2\n 3\n 4\n 5\n 6\n-b\n+B\n");
	/* ...7 apart make two. */
	const char *c = "a\n1\n2\n3\n4\n5\n6\n7\nb\n";
	const char *d = "A\n1\n2\n3\n4\n5\n6\n7\nB\n";
	CHECK_DIFF(c, d,
		   "--- a/f\n+++ b/f\n@@ -1,4 +1,4 @@\n-a\n+A\n 1\n 2\n 3\n@@ -6,4 +6,4 @@\n 5\n "
		   "6\n 7\n-b\n+B\n");
}

TEST(test_no_newline_at_end)
{
	CHECK_DIFF("a\nb", "a\nb\n",
		   "--- a/f\n+++ b/f\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+b\n");
	CHECK_DIFF("x", "y",
		   "--- a/f\n+++ b/f\n@@ -1 +1 @@\n-x\n\\ No newline at end of file\n+y\n\\ No "
		   "newline at end of file\n");
}

TEST(test_toml_handler_added)
{
	/* The shape plan prints for a containerd config that gets a handler. */
	const char *a = "version = 2\n"
			"[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n"
			"  runtime_type = \"io.containerd.runc.v2\"\n";
	const char *b = "version = 2\n"
			"[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n"
			"  runtime_type = \"io.containerd.runc.v2\"\n"
			"\n"
			"[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.kata-qemu]\n"
			"runtime_type = \"io.containerd.kata-qemu.v2\"\n";
	CHECK_DIFF(a, b,
		   "--- a/f\n+++ b/f\n@@ -1,3 +1,6 @@\n version = 2\n "
		   "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n   "
		   "runtime_type = \"io.containerd.runc.v2\"\n+\n"
		   "+[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.kata-qemu]\n"
		   "+runtime_type = \"io.containerd.kata-qemu.v2\"\n");
}

/* Apply a unified diff to a (both as arrays of one-char lines) and count its edits. */
static int apply(const char *a, const char *d, char *out, int *edits)
{
	const char *p = strstr(d, "@@");
	size_t ai = 0, o = 0;
	*edits = 0;
	while (p && *p) {
		unsigned long as;
		if (sscanf(p, "@@ -%lu", &as) != 1)
			return -1;
		/* Copy unchanged lines up to the hunk (as is 1-based unless the range is empty). */
		const char *range = p + 4;
		size_t first = as;
		const char *comma = strchr(range, ',');
		const char *space = strchr(range, ' ');
		bool empty = comma && comma < space && comma[1] == '0' && comma[2] == ' ';
		size_t upto = empty ? first : first - 1;
		while (ai < upto)
			out[o++] = a[ai++], out[o++] = '\n';
		p = strchr(p, '\n') + 1;
		while (*p && *p != '@') {
			if (*p == ' ')
				out[o++] = a[ai++], out[o++] = '\n';
			else if (*p == '-')
				ai++, (*edits)++;
			else if (*p == '+')
				out[o++] = p[1], out[o++] = '\n', (*edits)++;
			p = strchr(p, '\n') + 1;
		}
	}
	while (a[ai])
		out[o++] = a[ai++], out[o++] = '\n';
	out[o] = '\0';
	return 0;
}

static int lcs(const char *a, const char *b)
{
	size_t n = strlen(a), m = strlen(b);
	int t[40][40] = {{0}};
	for (size_t i = 1; i <= n; i++)
		for (size_t j = 1; j <= m; j++)
			t[i][j] = a[i - 1] == b[j - 1]	      ? t[i - 1][j - 1] + 1
				  : t[i - 1][j] > t[i][j - 1] ? t[i - 1][j]
							      : t[i][j - 1];
	return t[n][m];
}

TEST(test_random_minimal_and_applies)
{
	/* 2000 random pairs over a 3-letter alphabet (many repeats, the hard case for a diff):
	 * the diff applied to a gives b, and has exactly n + m - 2 * LCS edit lines. */
	srand(42);
	int bad = 0;
	for (int t = 0; t < 2000 && bad < 5; t++) {
		char sa[40], sb[40], la[80], lb[80], out[200];
		size_t n = (size_t)(rand() % 30), m = (size_t)(rand() % 30);
		for (size_t i = 0; i < n; i++)
			sa[i] = (char)('a' + rand() % 3);
		for (size_t i = 0; i < m; i++)
			sb[i] = (char)('a' + rand() % 3);
		sa[n] = sb[m] = '\0';
		for (size_t i = 0; i < n; i++)
			la[2 * i] = sa[i], la[2 * i + 1] = '\n';
		for (size_t i = 0; i < m; i++)
			lb[2 * i] = sb[i], lb[2 * i + 1] = '\n';
		la[2 * n] = lb[2 * m] = '\0';
		char *d = diff(la, lb);
		int edits = 0;
		if (!d || apply(sa, d, out, &edits) < 0 || strcmp(out, lb) != 0 ||
		    edits != (int)(n + m) - 2 * lcs(sa, sb)) {
			printf("#   a=%s b=%s edits=%d lcs=%d\n%s", sa, sb, edits, lcs(sa, sb),
			       d ? d : "(null)\n");
			bad++;
		}
		free(d);
	}
	CHECK_INT(bad, 0);
}

TEST(test_edit_cap_fallback)
{
	/* More edits than KD_DIFF_MAX_EDITS: a correct, non-minimal diff. */
	size_t n = 2 * KD_DIFF_MAX_EDITS;
	char *a = malloc(n * 2 + 1), *b = malloc(n * 2 + 1);
	for (size_t i = 0; i < n; i++) {
		a[2 * i] = 'a', a[2 * i + 1] = '\n';
		b[2 * i] = i % 2 ? 'a' : 'b', b[2 * i + 1] = '\n';
	}
	a[2 * n] = b[2 * n] = '\0';
	char *d = diff(a, b);
	CHECK(d != NULL);
	size_t minus = 0, plus = 0;
	for (const char *p = d ? strstr(d, "\n@@") : NULL; p && (p = strchr(p, '\n')); p++) {
		minus += p[1] == '-';
		plus += p[1] == '+';
	}
	CHECK_INT(minus, n - 1); /* every line but the common suffix */
	CHECK_INT(plus, n - 1);
	free(d);
	free(a);
	free(b);
}

TEST(test_line_limit)
{
	size_t n = KD_DIFF_MAX_LINES + 1;
	char *a = malloc(n + 1);
	memset(a, '\n', n);
	a[n] = '\0';
	char *out = NULL;
	kd_error err = {0};
	CHECK_INT(kd_diff_unified(a, n, "", 0, "a", "b", 3, &out, &err), -E2BIG);
	CHECK_STR(err.msg, "diff: more than 1000000 lines");
	free(a);
}

int main(void)
{
	RUN(test_equal);
	RUN(test_create_and_delete);
	RUN(test_context_and_ranges);
	RUN(test_pure_insertion_range);
	RUN(test_hunks_merge_and_split);
	RUN(test_no_newline_at_end);
	RUN(test_toml_handler_added);
	RUN(test_random_minimal_and_applies);
	RUN(test_edit_cap_fallback);
	RUN(test_line_limit);
	TAP_END();
}
