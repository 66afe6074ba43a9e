/* The content-addressed source cache under ${KD_BUILD_CACHE:-$HOME/.cache/kata-build}: sources
 * are stored as sources/sha256/<hex> only after their sha256 was checked (a bad download is
 * deleted, not kept). URL downloads go through lib/http into a partial file a later run resumes;
 * Debian packages come from `apt-get download`, indexed by name and version; git archives by
 * the tree id they were verified against (git/<tree>). build.c stores
 * component results under components/<key>/, each with a digest stamp (below). */
#pragma once

#include <stdbool.h>

#include "err.h"
#include "recipe.h"

#define KD_CACHE_ENV "KD_BUILD_CACHE"
#define KD_CACHE_MAX_SOURCE (4ULL << 30) /* bytes of one downloaded source */
#define KD_CACHE_MAX_RESUME (1ULL << 30) /* bytes fetched in memory when resuming */

typedef struct kd_cache kd_cache;

/* dir NULL: $KD_BUILD_CACHE, else $HOME/.cache/kata-build. Creates the layout. */
int kd_cache_open(const char *dir, kd_cache **ret, kd_error *err);
void kd_cache_free(kd_cache *c);
const char *kd_cache_dir(const kd_cache *c);

typedef struct kd_fetch_opts {
	bool progress;	    /* progress bar on a TTY */
	const char *mirror; /* a local directory of source files by name, tried before the
			     * network (URL and git sources; still verified) */
	int retries;	    /* lib/http retries; 0 = its default */
} kd_fetch_opts;

/* Make a source present in the cache, verified. ret_path (malloc'ed) is the cached file and
 * ret_sha256 its digest (the pinned one for URLs, apt's verified file for debs). Returns 1 when
 * it was already cached, 0 when it was fetched now. */
int kd_cache_fetch(kd_cache *c, const kd_source *s, const kd_fetch_opts *o, char **ret_path,
		   char ret_sha256[65], kd_error *err);

/* The digest of a source without fetching it: URLs carry it; a deb is known once fetched.
 * Returns 1 with ret_sha256 filled, 0 when unknown. */
int kd_cache_source_digest(kd_cache *c, const kd_source *s, char ret_sha256[65], kd_error *err);

/* Re-hash a cached file and compare with its name: a cache corrupted on disk is not used. */
int kd_cache_check(kd_cache *c, const char *sha256, kd_error *err);

/* Digest stamps: <file>.sha256 beside a cached file holds its sha256 with the size, mtime (ns)
 * and inode the file had when it was hashed, and the time the hash started, so that a cache hit
 * need not read the file again. Hash the file at path (complete, no longer written) and store
 * its stamp atomically; ret_sha256 gets the digest. */
int kd_cache_stamp(const char *path, char ret_sha256[65], kd_error *err);

/* The sha256 of a cached file: its stamp's when the size, mtime and inode still match it and the
 * mtime is older than the hash (a write in the same clock tick would not move the mtime), else a
 * rehash. A rehash that differs from the stamp is -EBADMSG: the file changed since it was stored,
 * so it and its stamp are removed and the caller must not use it. A missing, unreadable or stale
 * stamp is rewritten after a rehash. Returns 1 when the stamp was used, 0 after a rehash. */
int kd_cache_stamped_sha256(const char *path, char ret_sha256[65], kd_error *err);

DEFINE_CLEANUP(kd_cache *, kd_cache_free)
#define _cleanup_cache_ _cleanup_(kd_cache_freep)
