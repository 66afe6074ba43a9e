/* `kata-build verify`: rebuild components (and the payload) with a clean component cache into a
 * scratch directory and compare every output with the one in the output directory bit for bit.
 * On a difference it names the file and the first tar entry that differs, and how. */
#pragma once

#include "build.h"
#include "merge.h"

typedef struct kd_verify_report {
	unsigned compared, differing;
} kd_verify_report;

/* names NULL = every component of the shim map. payload != NULL: also rebuild the payload and
 * compare it with that file. keep_dir: leave the scratch build there (for diffoscope). */
int kd_verify(const kd_build_opts *o, const kd_shims *shims, char **names, const char *payload,
	      const char *keep_dir, kd_verify_report *ret, kd_error *err);

/* Compare two tar archives entry by entry. 0 when identical in content, -EBADMSG with a message
 * naming the first differing entry otherwise. */
int kd_tar_compare(const char *a, const char *b, kd_error *err);
