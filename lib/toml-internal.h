/* Internals shared by the TOML parser (toml-parse.c) and the document model and editor
 * (toml.c): the node and section records that index a document's text. Not installed, not
 * included outside lib/toml*.c. */
#pragma once

#include "toml.h"

/* A node is a table, an array or a scalar. Offsets are into doc->text. */
struct kd_toml_node {
	kd_toml_type type;
	kd_toml_origin origin;
	bool sealed;	/* inline table/its dotted parts after '}': closed to further keys */
	bool in_inline; /* written inside an inline table or array: no statement of its own */
	kd_toml_node *parent, *first, *last, *next;
	size_t count;
	const char *key; /* decoded, NUL-terminated; NULL for array elements and the root */
	size_t key_len;
	size_t key_start;	     /* first byte of the statement's key (or of the value) */
	size_t vstart, vend;	     /* value text */
	size_t stmt_start, stmt_end; /* key/value line (or inline entry), header line */
	int section;		     /* section holding the statement or header; -1 none */
	kd_toml_node *scope;	     /* dotted tables: the table their keys are relative to */
	size_t last_start, last_end; /* tables: last key/value statement written into them */
	bool has_last;
	union {
		int64_t i;
		double f;
		bool b;
	} v;
	const char *str; /* strings (decoded) and date-times (text), NUL-terminated */
	size_t str_len;
};

/* The text from one [header] line up to the next (section 0: the root, before any header). */
typedef struct kd_toml_section {
	size_t start, end;   /* [start, end) tiles the document */
	size_t content_end;  /* end of the last header or key/value statement */
	kd_toml_node *table; /* the table the header defines (root for section 0) */
} kd_toml_section;

typedef struct kd_toml_arena kd_toml_arena;

struct kd_toml_doc {
	char *name;
	char *text;
	size_t len;
	bool crlf; /* first line break is CRLF: edits write CRLF too */
	kd_toml_arena *arena;
	kd_toml_node *root;
	kd_toml_section *sections;
	size_t nsections, sections_cap;
	kd_toml_node **hash; /* (parent, key) -> node, open addressing */
	size_t hash_cap, hash_used;
	size_t edit_offset, edit_removed, edit_inserted;
};

/* Parse doc->text (doc->len bytes, NUL-terminated) into doc's index. */
int kd_toml_index(kd_toml_doc *doc, kd_error *err);
/* Release the index (nodes, sections, hash) but not name/text. */
void kd_toml_index_free(kd_toml_doc *doc);
/* Child of table by decoded key, via the hash. */
kd_toml_node *kd_toml_lookup(const kd_toml_doc *doc, const kd_toml_node *table, const char *key,
			     size_t len);
/* 1-based line and column (in characters) of a byte offset. */
void kd_toml_linecol(const char *text, size_t len, size_t off, unsigned *ret_line,
		     unsigned *ret_col);
