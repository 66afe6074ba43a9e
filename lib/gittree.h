/* The git tree id of a tar archive's contents, computed the way `git add -A && git write-tree`
 * does in a fresh repository: blobs for files ("100644" or "100755", by the owner execute bit)
 * and symlinks ("120000", the link text), trees sorted in git's order, empty directories
 * dropped. A source pinned by tree id is then verified whether it came from a forge's tag
 * archive or from a local mirror: the bytes of the two archives differ, the tree does not. */
#pragma once

#include <stdint.h>

#include "digest.h"
#include "err.h"

#define KD_GITTREE_MAX_ENTRIES 200000u	 /* entries of one archive */
#define KD_GITTREE_MAX_FILE (2ULL << 30) /* bytes of one file */

/* Read the archive in fd (any compression lib/tarball reads) and compute the tree id of its
 * contents below `strip` leading path components (1 for `git archive --prefix=name/`: every
 * entry must then sit under one and the same top directory). Hard links are hashed as copies
 * of their target; devices, FIFOs and sockets are refused (git cannot hold them). */
int kd_git_tree_id(int fd, unsigned strip, char ret_hex[KD_SHA1_HEX_LEN + 1], kd_error *err);
