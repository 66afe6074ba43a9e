/* Private to the payload module (lib/manifest.c, lib/manifest-read.c, lib/payload-pack.c,
 * lib/payload.c): shared constants and helpers. Nothing outside these files includes it. */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <sys/types.h>

#include "payload.h"

#define PREFIX KD_PAYLOAD_TREE_PREFIX
#define PREFIX_LEN (sizeof(PREFIX) - 1)
#define IO_BUF (1u << 20)	  /* bytes per read while hashing and packing */
#define MAX_SPEC_COMPONENTS 1024u /* components in a manifest or spec */
#define MAX_SHIMS 256u		  /* shims in a manifest or spec */
#define MAX_NAME 128u		  /* bytes of a component, shim, version or arch name */

DEFINE_CLEANUP(kd_manifest *, kd_manifest_free)

/* "file", "dir", "symlink", "hardlink": the manifest's spelling. */
const char *kd_file_type_name(kd_file_type t);
/* Index of the component called name, or -1. */
ssize_t kd_manifest_component(const kd_manifest *m, const char *name);
/* Copy a version/arch/component/shim name after checking it (1 to MAX_NAME bytes, no '/' or
 * control characters); what names it in the message. */
int kd_manifest_dup_name(const char *s, const char *what, char **ret, kd_error *err);
/* Parse the "shims" object into m->shims (sorted); components must already be known. */
int kd_manifest_parse_shims(kd_manifest *m, struct json_object *obj, kd_error *err);
int kd_manifest_cmp_shim(const void *a, const void *b);
/* Mark the manifest entries to extract (n_files bools, malloc'ed): those of the components set
 * in mask (NULL = all) and every directory above one of them. -ENOMEM or 0. */
int kd_manifest_select_files(const kd_manifest *m, const bool *mask, bool **ret);

/* ---- the frame index of format 2 (lib/payload-index.c) ---- */

#define KD_PINDEX_SKIP_MAGIC 0x184D2A5Bu /* a zstd skippable frame (0x184D2A50-5F) */
#define KD_PINDEX_MAGIC "KDPAYIX2"	 /* the file's last 8 bytes */
#define KD_PINDEX_SKIP_HEADER 8u	 /* magic, content length (little endian) */
#define KD_PINDEX_RECORD 56u		 /* offset, size, tar size (u64 LE), sha256 */
#define KD_PINDEX_TRAILER 16u		 /* frame count (u32 LE), flags (0), magic */
#define KD_PINDEX_MAX_FRAMES (MAX_SPEC_COMPONENTS + 2u) /* manifest, components, end */
#define KD_PINDEX_MIN_FRAME 9u /* the smallest zstd frame: header and one empty block */
/* Tar bytes of one frame: the files plus their headers (1 KiB each at most for our paths). */
#define KD_PINDEX_MAX_TAR (KD_PAYLOAD_MAX_TOTAL + (uint64_t)KD_PAYLOAD_MAX_ENTRIES * 12288u)

typedef struct kd_pframe {
	uint64_t offset, size, tar_size;
	uint8_t sha256[32];
} kd_pframe;

typedef struct kd_payload_index {
	kd_pframe *frames; /* [0] the manifest, [1..n-2] the components in manifest order,
			      [n-1] the end of the archive */
	uint32_t n;
	uint64_t index_offset; /* where the skippable frame starts = the end of the frames */
} kd_payload_index;

void kd_payload_index_free(kd_payload_index *ix);
DEFINE_CLEANUP(kd_payload_index *, kd_payload_index_free)
/* The last KD_PINDEX_TRAILER bytes of a file of file_size bytes: 0 when they are not an index
 * trailer (a format 1 payload), 1 with *ret_len = the bytes of the whole skippable frame, or an
 * error for a trailer that cannot be right. */
int kd_payload_index_trailer(const uint8_t *tail, uint64_t file_size, uint64_t *ret_len,
			     kd_error *err);
/* Parse and check the index held in the last len bytes (buf) of a file of file_size bytes:
 * frames contiguous from offset 0 up to the index, each within limits. */
int kd_payload_index_parse(const uint8_t *buf, size_t len, uint64_t file_size,
			   kd_payload_index **ret, kd_error *err);
/* Read the index of the file in fd: 0 when it has none (format 1), 1 with *ret, or an error. */
int kd_payload_index_read(int fd, uint64_t file_size, kd_payload_index **ret, kd_error *err);
/* The skippable frame that indexes frames[0..n-1]. */
int kd_payload_index_format(const kd_pframe *frames, uint32_t n, uint8_t **ret, size_t *ret_len,
			    kd_error *err);
