/* Component builds: run a recipe's steps in a fixed environment (SOURCE_DATE_EPOCH, TZ=UTC,
 * LC_ALL=C, umask 022, HOME and TMPDIR inside the build, fixed PATH, no network unless the
 * recipe asks), then pack its declared outputs deterministically into
 * kata-static-<name>.tar.zst. Results are cached under a key that hashes everything the build
 * reads, so an unchanged component is never rebuilt. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "cache.h"
#include "err.h"
#include "recipe.h"

/* Bump when a change to kata-build changes what a build produces: every key changes. */
#define KD_BUILDER_VERSION "1"
#define KD_BUILD_MAX_DEPTH 16	     /* nesting of component inputs */
#define KD_BUILD_MAX_ENTRIES 500000u /* entries packed from one component */
#define KD_BUILD_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define KD_BUILD_ZSTD_LEVEL 10
#define KD_BUILD_LOG_TAIL 4096 /* bytes of a failed step's log quoted in the error */

typedef struct kd_build_opts {
	const char *artifacts_dir; /* holds versions.yaml, shims.yaml, recipes/, files */
	const char *out_dir;	   /* kata-static-<name>.tar.zst are placed here */
	kd_cache *cache;
	const kd_versions *versions;
	int jobs;     /* KB_JOBS for the steps; 0 = number of CPUs */
	bool verbose; /* copy step output to stderr too */
	bool force;   /* rebuild even when cached */
	bool progress;
	const char *mirror; /* local directory of source files tried before the network */
} kd_build_opts;

typedef struct kd_build_result {
	char key[65];	 /* component cache key */
	char sha256[65]; /* of the tarball */
	bool cached;	 /* true: taken from the cache, nothing was run */
	double seconds;	 /* wall time of this call */
} kd_build_result;

/* Path of a component's recipe: <artifacts>/recipes/<name>.yaml (malloc'ed). */
char *kd_recipe_path(const kd_build_opts *o, const char *name);

/* Fetch every source of a component (and of its inputs) into the cache. */
int kd_component_fetch(const kd_build_opts *o, const char *name, kd_error *err);

/* The cache key of a component (fetches deb sources whose digest is not known yet). */
int kd_component_key(const kd_build_opts *o, const char *name, char ret_key[65], kd_error *err);

/* Build (or take from the cache) a component and its inputs; place the tarball in out_dir. */
int kd_component_build(const kd_build_opts *o, const char *name, kd_build_result *ret,
		       kd_error *err);

/* Extract a component tarball (opt/kata/... entries only, safe paths, files, dirs and
 * symlinks) into destdir. on_path, if set, gets every entry's path below opt/kata/. */
typedef int (*kd_extract_cb)(const char *path, bool is_dir, void *userdata, kd_error *err);
int kd_component_extract(const char *tarball, const char *destdir, kd_extract_cb on_path,
			 void *userdata, kd_error *err);
