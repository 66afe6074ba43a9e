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
