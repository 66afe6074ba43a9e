/* JSON documents are json-c trees (struct json_object) across the code base; this module owns
 * parsing them with limits and positioned errors, typed field access whose errors name the field
 * path ("components[2].files[5].sha256: expected string, got int"), a canonical writer (sorted
 * keys, no spaces: the bytes we digest and sign), pretty printing, and atomic writes. */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "err.h"

#define KD_JSON_MAX_SIZE (64 * 1024 * 1024) /* bytes of a document we parse */
#define KD_JSON_MAX_DEPTH 64		    /* nesting of objects and arrays */
#define KD_JSON_PATH_MAX 512		    /* bytes of a field path in messages */

DEFINE_CLEANUP(struct json_object *, json_object_put)
#define _cleanup_json_ _cleanup_(json_object_putp)

/* Parse exactly one JSON value (strict RFC 8259; trailing whitespace only). name is used in
 * messages ("manifest.json:3:14: unexpected character"). JSON null gives *ret == NULL. */
int kd_json_parse(const char *data, size_t len, const char *name, struct json_object **ret,
		  kd_error *err);
/* Same with explicit limits (0 = the defaults above). */
int kd_json_parse_limits(const char *data, size_t len, const char *name, size_t max_size,
			 int max_depth, struct json_object **ret, kd_error *err);

/* Typed access to obj[key]; `where` is obj's own path for messages ("components[2]"; NULL or ""
 * for the root). Return 1 when present and well typed (*ret set), 0 when absent and !required
 * (*ret untouched, so it may hold a default), negative errno otherwise: -ENOENT when required
 * and absent, -EINVAL for a wrong type or range. A JSON null counts as absent. Strings point
 * into obj. Integers must be JSON integers (no fraction, no exponent). */
int kd_json_get_string(struct json_object *obj, const char *where, const char *key, bool required,
		       const char **ret, kd_error *err);
int kd_json_get_int64(struct json_object *obj, const char *where, const char *key, bool required,
		      int64_t *ret, kd_error *err);
int kd_json_get_uint64(struct json_object *obj, const char *where, const char *key, bool required,
		       uint64_t *ret, kd_error *err);
int kd_json_get_bool(struct json_object *obj, const char *where, const char *key, bool required,
		     bool *ret, kd_error *err);
int kd_json_get_object(struct json_object *obj, const char *where, const char *key, bool required,
		       struct json_object **ret, kd_error *err);
int kd_json_get_array(struct json_object *obj, const char *where, const char *key, bool required,
		      struct json_object **ret, kd_error *err);

/* Check one value (an array element, say); `where` is its path. 0 or -EINVAL. */
int kd_json_as_string(struct json_object *v, const char *where, const char **ret, kd_error *err);
int kd_json_as_object(struct json_object *v, const char *where, kd_error *err);

/* Build child paths for messages: "parent.key" and "parent[i]" (truncated to size). */
const char *kd_json_path_key(char *buf, size_t size, const char *parent, const char *key);
const char *kd_json_path_index(char *buf, size_t size, const char *parent, size_t index);

/* A new JSON array of the strings of a NULL-terminated vector (NULL gives an empty array). */
struct json_object *kd_json_from_strv(char *const *v);

/* Name of a value's type for messages: "object", "array", "string", "int", "double", "bool",
 * "null". */
const char *kd_json_type_name(struct json_object *v);

enum {
	KD_JSON_CANONICAL = 0, /* keys sorted bytewise, no whitespace, no trailing newline */
	KD_JSON_PRETTY = 1,    /* two-space indent, insertion order, trailing newline */
};

/* Serialise into a malloc'ed NUL-terminated string. Canonical output is stable across runs and
 * json-c versions; it covers objects, arrays, strings, integers, bools and null, and refuses
 * floating-point numbers (-EINVAL), which have no single spelling. */
int kd_json_format(struct json_object *v, int mode, char **ret, size_t *ret_len, kd_error *err);

/* Serialise and write atomically to path under rootfd (lib/fsroot.h). */
int kd_json_write_atomic(int rootfd, const char *path, struct json_object *v, int mode,
			 mode_t file_mode, kd_error *err);
