/* TOML 1.0 documents that keep every byte. The parser indexes the text instead of replacing it:
 * emitting an unmodified document returns the input bytes, and an edit splices only the bytes of
 * the key or table it touches, then re-parses, so a document is never left invalid. Lookups by key
 * path, typed getters, and the edits the containerd / CRI-O configurators need. See docs/TOML.md.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* Limits on what an outsider controls, each with its own error message. */
#define KD_TOML_MAX_SIZE (16u << 20) /* bytes of one document */
#define KD_TOML_MAX_DEPTH 128	     /* nesting of arrays / inline tables, and parts of one key */

typedef struct kd_toml_doc kd_toml_doc;
typedef struct kd_toml_node kd_toml_node;

typedef enum kd_toml_type {
	KD_TOML_NONE = 0,
	KD_TOML_TABLE,
	KD_TOML_ARRAY,
	KD_TOML_STRING,
	KD_TOML_INTEGER,
	KD_TOML_FLOAT,
	KD_TOML_BOOL,
	KD_TOML_DATETIME,	/* offset date-time, 1979-05-27T07:32:00Z */
	KD_TOML_DATETIME_LOCAL, /* 1979-05-27T07:32:00 */
	KD_TOML_DATE_LOCAL,	/* 1979-05-27 */
	KD_TOML_TIME_LOCAL,	/* 07:32:00 */
} kd_toml_type;

/* How a table (or array) came to exist; decides where an edit may write. */
typedef enum kd_toml_origin {
	KD_TOML_ROOT = 0,
	KD_TOML_IMPLICIT, /* only named on the way to a [header]: [a.b] makes a implicit */
	KD_TOML_HEADER,	  /* [header] */
	KD_TOML_DOTTED,	  /* by dotted keys: a.b = 1 makes table a */
	KD_TOML_INLINE,	  /* a = { ... } */
	KD_TOML_AOT,	  /* the array made by [[header]] */
	KD_TOML_AOT_ELEM, /* one [[header]] table */
	KD_TOML_VALUE, /* a value written after '=' (scalars, static arrays) or an array element */
} kd_toml_origin;

/* Parse len bytes of text. name is used in error messages ("config.toml:12:5: duplicate key
 * 'runtime_type'"). The document keeps its own copy of the text. */
int kd_toml_parse(const char *name, const char *text, size_t len, kd_toml_doc **ret, kd_error *err);
void kd_toml_free(kd_toml_doc *doc);
DEFINE_CLEANUP(kd_toml_doc *, kd_toml_free)
#define _cleanup_toml_ _cleanup_(kd_toml_freep)

/* The current text (owned by doc, valid until the next edit or free). */
const char *kd_toml_text(const kd_toml_doc *doc, size_t *ret_len);
/* Serialise the document into a new NUL-terminated buffer, rebuilt from its sections. */
int kd_toml_emit(const kd_toml_doc *doc, char **ret, size_t *ret_len, kd_error *err);

/* Lookups. Nodes belong to doc and are invalidated by any edit. A path walks tables by key; an
 * array of tables ([[x]]) on the way stands for its last element, as in a [header]. */
const kd_toml_node *kd_toml_root(const kd_toml_doc *doc);
const kd_toml_node *kd_toml_get(const kd_toml_node *table, const char *key);
const kd_toml_node *kd_toml_path(const kd_toml_doc *doc, const char *const *path, size_t n);
/* Like kd_toml_path, but NULL unless the node is a table. */
const kd_toml_node *kd_toml_table(const kd_toml_doc *doc, const char *const *path, size_t n);

kd_toml_type kd_toml_type_of(const kd_toml_node *node);
const char *kd_toml_type_name(kd_toml_type type);
kd_toml_origin kd_toml_origin_of(const kd_toml_node *node);
/* The decoded key of a table entry (NULL for array elements and the root); ret_len may be NULL
 * (a quoted key may hold U+0000). */
const char *kd_toml_key(const kd_toml_node *node, size_t *ret_len);
/* Entries of a table or elements of an array, in document order. */
size_t kd_toml_count(const kd_toml_node *node);
const kd_toml_node *kd_toml_first(const kd_toml_node *node);
const kd_toml_node *kd_toml_next(const kd_toml_node *node);
const kd_toml_node *kd_toml_at(const kd_toml_node *array, size_t i);

/* Typed getters: -EINVAL when node is NULL or of another type. Strings are decoded and
 * NUL-terminated (ret_len may be NULL; a string may hold U+0000). Date-times come back as their
 * text. */
int kd_toml_get_string(const kd_toml_node *node, const char **ret, size_t *ret_len);
int kd_toml_get_int(const kd_toml_node *node, int64_t *ret);
int kd_toml_get_float(const kd_toml_node *node, double *ret);
int kd_toml_get_bool(const kd_toml_node *node, bool *ret);
int kd_toml_get_datetime(const kd_toml_node *node, const char **ret, size_t *ret_len);

/* 1-based line and column where node's key (or value, for array elements) starts. */
void kd_toml_position(const kd_toml_doc *doc, const kd_toml_node *node, unsigned *ret_line,
		      unsigned *ret_col);
/* Byte range of a value's text ([start, end) in kd_toml_text()). */
int kd_toml_value_range(const kd_toml_node *node, size_t *ret_start, size_t *ret_end);
/* Byte range that kd_toml_remove_table() would delete, from its first to its last byte (a table
 * whose pieces are scattered yields the span that holds them all). -ENOENT if missing. */
int kd_toml_table_range(const kd_toml_doc *doc, const char *const *path, size_t n,
			size_t *ret_start, size_t *ret_end);

/* Edits. path/n names a table (n = 0: the root). Each edit splices the text and re-parses it; on
 * any failure the document is unchanged. The splice of the last successful edit is reported by
 * kd_toml_last_edit: at offset, `removed` bytes were replaced by `inserted` bytes. */
int kd_toml_set_string(kd_toml_doc *doc, const char *const *path, size_t n, const char *key,
		       const char *value, kd_error *err);
int kd_toml_set_bool(kd_toml_doc *doc, const char *const *path, size_t n, const char *key,
		     bool value, kd_error *err);
int kd_toml_set_int(kd_toml_doc *doc, const char *const *path, size_t n, const char *key,
		    int64_t value, kd_error *err);
int kd_toml_set_strings(kd_toml_doc *doc, const char *const *path, size_t n, const char *key,
			const char *const *values, size_t nvalues, kd_error *err);
/* s as a TOML basic string with its quotes (malloc'ed; NULL when out of memory). */
char *kd_toml_quote(const char *s);
/* value is TOML value syntax, e.g. "[1, 2]" or "{ a = 1 }"; it is checked by the re-parse. */
int kd_toml_set_raw(kd_toml_doc *doc, const char *const *path, size_t n, const char *key,
		    const char *value, kd_error *err);
/* Remove one key (a value, or a table written as a value or by dotted keys). -ENOENT if missing. */
int kd_toml_remove_key(kd_toml_doc *doc, const char *const *path, size_t n, const char *key,
		       kd_error *err);
/* Append an empty [path] section after the last sub-table of its nearest existing ancestor.
 * -EEXIST if the table is already defined (a table only implied by a sub-table header is then
 * given its own header). */
int kd_toml_add_table(kd_toml_doc *doc, const char *const *path, size_t n, kd_error *err);
/* Remove a table and all its sub-tables, whichever way they were written. */
int kd_toml_remove_table(kd_toml_doc *doc, const char *const *path, size_t n, kd_error *err);
void kd_toml_last_edit(const kd_toml_doc *doc, size_t *ret_offset, size_t *ret_removed,
		       size_t *ret_inserted);
