/* Line diffs in the unified format of GNU `diff -u`: Myers' O(ND) algorithm over lines compared
 * byte for byte, hunks with N lines of context, "\ No newline at end of file" markers. Used by
 * `kata-deploy plan` to show what an install would change; knows nothing of what the texts are. */
#pragma once

#include <stddef.h>

#include "err.h"

#define KD_DIFF_CONTEXT 3	   /* lines of context around each change, as diff -u */
#define KD_DIFF_MAX_LINES 1000000u /* lines per side */
#define KD_DIFF_MAX_EDITS                                                                          \
	1024u /* beyond this many edits the changed middle is shown as one                         \
		 removal plus one addition (still a correct diff) */

/* Unified diff turning a into b (either may be NULL = empty), headers "--- label_a" and
 * "+++ label_b". *ret is a new string, "" when the texts are equal. -E2BIG when a side has more
 * than KD_DIFF_MAX_LINES lines. */
int kd_diff_unified(const char *a, size_t alen, const char *b, size_t blen, const char *label_a,
		    const char *label_b, unsigned context, char **ret, kd_error *err);
