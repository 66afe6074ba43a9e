/* The TOML document model: lookups and typed getters over the index built by toml-parse.c, the
 * serialiser, and the edits. An edit computes one splice of the text (the bytes of one key,
 * inline entry or run of sections), applies it to a copy and re-parses the copy; only if that
 * succeeds does the document take the new text, so a failed edit changes nothing. */
#include "toml-internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- documents ---- */

int kd_toml_parse(const char *name, const char *text, size_t len, kd_toml_doc **ret, kd_error *err)
{
	if (!name)
		name = "<toml>";
	if (len > KD_TOML_MAX_SIZE)
		return kd_err(err, -EFBIG, "%s: document is larger than %u bytes", name,
			      KD_TOML_MAX_SIZE);
	kd_toml_doc *doc = calloc(1, sizeof(*doc));
	if (!doc)
		return kd_err(err, -ENOMEM, "%s: out of memory", name);
	doc->name = strdup(name);
	doc->text = malloc(len + 1);
	if (!doc->name || !doc->text) {
		kd_toml_free(doc);
		return kd_err(err, -ENOMEM, "%s: out of memory", name);
	}
	if (len)
		memcpy(doc->text, text, len);
	doc->text[len] = '\0';
	doc->len = len;
	int r = kd_toml_index(doc, err);
	if (r < 0) {
		kd_toml_free(doc);
		return r;
	}
	*ret = doc;
	return 0;
}

void kd_toml_free(kd_toml_doc *doc)
{
	if (!doc)
		return;
	kd_toml_index_free(doc);
	free(doc->text);
	free(doc->name);
	free(doc);
}

const char *kd_toml_text(const kd_toml_doc *doc, size_t *ret_len)
{
	if (ret_len)
		*ret_len = doc->len;
	return doc->text;
}

int kd_toml_emit(const kd_toml_doc *doc, char **ret, size_t *ret_len, kd_error *err)
{
	size_t off = 0;

	/* The sections must tile the text: a gap or an overlap is a parser bug. */
	for (size_t i = 0; i < doc->nsections; i++) {
		const kd_toml_section *s = &doc->sections[i];
		if (s->start != off || s->end < s->start || s->content_end < s->start ||
		    s->content_end > s->end)
			return kd_err(err, -EIO, "%s: internal error: section %zu does not tile",
				      doc->name, i);
		off = s->end;
	}
	if (off != doc->len)
		return kd_err(err, -EIO, "%s: internal error: sections end at %zu of %zu",
			      doc->name, off, doc->len);
	char *out = malloc(doc->len + 1);
	if (!out)
		return kd_err(err, -ENOMEM, "%s: out of memory", doc->name);
	for (size_t i = 0; i < doc->nsections; i++) {
		const kd_toml_section *s = &doc->sections[i];
		memcpy(out + s->start, doc->text + s->start, s->end - s->start);
	}
	out[doc->len] = '\0';
	*ret = out;
	if (ret_len)
		*ret_len = doc->len;
	return 0;
}

/* ---- lookups and getters ---- */

const kd_toml_node *kd_toml_root(const kd_toml_doc *doc)
{
	return doc->root;
}

static kd_toml_node *get(const kd_toml_doc *doc, const kd_toml_node *table, const char *key)
{
	if (!table || !key)
		return NULL;
	if (table->type == KD_TOML_ARRAY && table->origin == KD_TOML_AOT)
		table = table->last;
	if (!table || table->type != KD_TOML_TABLE)
		return NULL;
	return kd_toml_lookup(doc, table, key, strlen(key));
}

const kd_toml_node *kd_toml_get(const kd_toml_node *table, const char *key)
{
	if (!table || !key || table->type != KD_TOML_TABLE)
		return NULL;
	size_t len = strlen(key);
	for (const kd_toml_node *c = table->first; c; c = c->next)
		if (c->key_len == len && memcmp(c->key, key, len) == 0)
			return c;
	return NULL;
}

static kd_toml_node *walk(const kd_toml_doc *doc, const char *const *path, size_t n)
{
	kd_toml_node *t = doc->root;
	for (size_t i = 0; i < n && t; i++)
		t = get(doc, t, path[i]);
	return t;
}

const kd_toml_node *kd_toml_path(const kd_toml_doc *doc, const char *const *path, size_t n)
{
	return walk(doc, path, n);
}

const kd_toml_node *kd_toml_table(const kd_toml_doc *doc, const char *const *path, size_t n)
{
	kd_toml_node *t = walk(doc, path, n);
	if (t && t->type == KD_TOML_ARRAY && t->origin == KD_TOML_AOT)
		t = t->last;
	return t && t->type == KD_TOML_TABLE ? t : NULL;
}

kd_toml_type kd_toml_type_of(const kd_toml_node *node)
{
	return node ? node->type : KD_TOML_NONE;
}

const char *kd_toml_type_name(kd_toml_type type)
{
	static const char *const names[] = {
		[KD_TOML_NONE] = "nothing",
		[KD_TOML_TABLE] = "a table",
		[KD_TOML_ARRAY] = "an array",
		[KD_TOML_STRING] = "a string",
		[KD_TOML_INTEGER] = "an integer",
		[KD_TOML_FLOAT] = "a float",
		[KD_TOML_BOOL] = "a boolean",
		[KD_TOML_DATETIME] = "an offset date-time",
		[KD_TOML_DATETIME_LOCAL] = "a local date-time",
		[KD_TOML_DATE_LOCAL] = "a local date",
		[KD_TOML_TIME_LOCAL] = "a local time",
	};
	return (unsigned)type < ELEMENTSOF(names) ? names[type] : "?";
}

kd_toml_origin kd_toml_origin_of(const kd_toml_node *node)
{
	return node ? node->origin : KD_TOML_VALUE;
}

const char *kd_toml_key(const kd_toml_node *node, size_t *ret_len)
{
	if (ret_len)
		*ret_len = node ? node->key_len : 0;
	return node ? node->key : NULL;
}

size_t kd_toml_count(const kd_toml_node *node)
{
	return node && (node->type == KD_TOML_TABLE || node->type == KD_TOML_ARRAY) ? node->count
										    : 0;
}

const kd_toml_node *kd_toml_first(const kd_toml_node *node)
{
	return node && (node->type == KD_TOML_TABLE || node->type == KD_TOML_ARRAY) ? node->first
										    : NULL;
}

const kd_toml_node *kd_toml_next(const kd_toml_node *node)
{
	return node ? node->next : NULL;
}

const kd_toml_node *kd_toml_at(const kd_toml_node *array, size_t i)
{
	if (!array || array->type != KD_TOML_ARRAY || i >= array->count)
		return NULL;
	const kd_toml_node *e = array->first;
	while (i--)
		e = e->next;
	return e;
}

int kd_toml_get_string(const kd_toml_node *node, const char **ret, size_t *ret_len)
{
	if (!node || node->type != KD_TOML_STRING)
		return -EINVAL;
	*ret = node->str;
	if (ret_len)
		*ret_len = node->str_len;
	return 0;
}

int kd_toml_get_int(const kd_toml_node *node, int64_t *ret)
{
	if (!node || node->type != KD_TOML_INTEGER)
		return -EINVAL;
	*ret = node->v.i;
	return 0;
}

int kd_toml_get_float(const kd_toml_node *node, double *ret)
{
	if (!node || node->type != KD_TOML_FLOAT)
		return -EINVAL;
	*ret = node->v.f;
	return 0;
}

int kd_toml_get_bool(const kd_toml_node *node, bool *ret)
{
	if (!node || node->type != KD_TOML_BOOL)
		return -EINVAL;
	*ret = node->v.b;
	return 0;
}

int kd_toml_get_datetime(const kd_toml_node *node, const char **ret, size_t *ret_len)
{
	if (!node || node->type < KD_TOML_DATETIME || node->type > KD_TOML_TIME_LOCAL)
		return -EINVAL;
	*ret = node->str;
	if (ret_len)
		*ret_len = node->str_len;
	return 0;
}

void kd_toml_position(const kd_toml_doc *doc, const kd_toml_node *node, unsigned *ret_line,
		      unsigned *ret_col)
{
	kd_toml_linecol(doc->text, doc->len, node ? node->key_start : 0, ret_line, ret_col);
}

int kd_toml_value_range(const kd_toml_node *node, size_t *ret_start, size_t *ret_end)
{
	if (!node || node->vend <= node->vstart)
		return -ENOENT;
	*ret_start = node->vstart;
	*ret_end = node->vend;
	return 0;
}

/* ---- text building ---- */

typedef struct sb {
	char *s;
	size_t len, cap;
	bool oom;
} sb;

static void sb_put(sb *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 128;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *p = realloc(b->s, cap);
		if (!p) {
			b->oom = true;
			return;
		}
		b->s = p;
		b->cap = cap;
	}
	memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = '\0';
}

static void sb_puts(sb *b, const char *s)
{
	sb_put(b, s, strlen(s));
}

static void sb_nl(sb *b, const kd_toml_doc *doc)
{
	sb_puts(b, doc->crlf ? "\r\n" : "\n");
}

static void sb_string(sb *b, const char *s, size_t n)
{
	sb_put(b, "\"", 1);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		char esc[8];
		switch (c) {
		case '"':
			sb_puts(b, "\\\"");
			break;
		case '\\':
			sb_puts(b, "\\\\");
			break;
		case '\n':
			sb_puts(b, "\\n");
			break;
		case '\t':
			sb_puts(b, "\\t");
			break;
		case '\r':
			sb_puts(b, "\\r");
			break;
		default:
			if (c < 0x20 || c == 0x7f) {
				snprintf(esc, sizeof(esc), "\\u%04X", c);
				sb_puts(b, esc);
			} else {
				sb_put(b, (const char *)&s[i], 1);
			}
		}
	}
	sb_put(b, "\"", 1);
}

static void sb_key(sb *b, const char *k)
{
	bool bare = *k != '\0';
	for (const char *c = k; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
		      (*c >= '0' && *c <= '9') || *c == '_' || *c == '-'))
			bare = false;
	if (bare)
		sb_puts(b, k);
	else
		sb_string(b, k, strlen(k));
}

static void sb_path(sb *b, const char *const *path, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (i)
			sb_put(b, ".", 1);
		sb_key(b, path[i]);
	}
}

/* Keys from scope (exclusive) down to t, as "a.b." for a dotted key prefix. */
static void sb_rel(sb *b, const kd_toml_node *scope, const kd_toml_node *t)
{
	const kd_toml_node *chain[KD_TOML_MAX_DEPTH];
	size_t n = 0;
	for (const kd_toml_node *u = t; u && u != scope && n < ELEMENTSOF(chain); u = u->parent)
		chain[n++] = u;
	while (n--) {
		sb_key(b, chain[n]->key);
		sb_put(b, ".", 1);
	}
}

/* Path text for messages, in a static-free caller buffer. */
static const char *path_str(char *buf, size_t size, const char *const *path, size_t n)
{
	sb b = {0};
	sb_path(&b, path, n);
	snprintf(buf, size, "%s", b.oom || !b.s ? (n ? "?" : "(root)") : b.s);
	free(b.s);
	return buf;
}

/* The whitespace that starts the line at off. */
static size_t indent_len(const kd_toml_doc *doc, size_t off)
{
	size_t i = off;
	while (i < doc->len && (doc->text[i] == ' ' || doc->text[i] == '\t'))
		i++;
	return i - off;
}

/* ---- the splice ---- */

static int splice(kd_toml_doc *doc, size_t off, size_t del, const char *ins, size_t inslen,
		  kd_error *err)
{
	size_t len = doc->len - del + inslen;
	if (len > KD_TOML_MAX_SIZE)
		return kd_err(err, -EFBIG, "%s: document would be larger than %u bytes", doc->name,
			      KD_TOML_MAX_SIZE);
	char *text = malloc(len + 1);
	if (!text)
		return kd_err(err, -ENOMEM, "%s: out of memory", doc->name);
	memcpy(text, doc->text, off);
	if (inslen)
		memcpy(text + off, ins, inslen);
	memcpy(text + off + inslen, doc->text + off + del, doc->len - off - del);
	text[len] = '\0';

	kd_toml_doc tmp = {.name = doc->name, .text = text, .len = len};
	int r = kd_toml_index(&tmp, err);
	if (r < 0) {
		free(text);
		return kd_err_wrap(err, r, "edit would make the document invalid");
	}
	kd_toml_index_free(doc);
	free(doc->text);
	doc->text = text;
	doc->len = len;
	doc->crlf = tmp.crlf;
	doc->arena = tmp.arena;
	doc->root = tmp.root;
	doc->sections = tmp.sections;
	doc->nsections = tmp.nsections;
	doc->sections_cap = tmp.sections_cap;
	doc->hash = tmp.hash;
	doc->hash_cap = tmp.hash_cap;
	doc->hash_used = tmp.hash_used;
	doc->edit_offset = off;
	doc->edit_removed = del;
	doc->edit_inserted = inslen;
	return 0;
}

static int splice_sb(kd_toml_doc *doc, size_t off, size_t del, sb *b, kd_error *err)
{
	if (b->oom) {
		free(b->s);
		return kd_err(err, -ENOMEM, "%s: out of memory", doc->name);
	}
	int r = splice(doc, off, del, b->s ? b->s : "", b->len, err);
	free(b->s);
	return r;
}

void kd_toml_last_edit(const kd_toml_doc *doc, size_t *ret_offset, size_t *ret_removed,
		       size_t *ret_inserted)
{
	if (ret_offset)
		*ret_offset = doc->edit_offset;
	if (ret_removed)
		*ret_removed = doc->edit_removed;
	if (ret_inserted)
		*ret_inserted = doc->edit_inserted;
}

/* ---- editing helpers ---- */

static int find_table(kd_toml_doc *doc, const char *const *path, size_t n, kd_toml_node **ret,
		      kd_error *err)
{
	char pbuf[512];
	kd_toml_node *t = walk(doc, path, n);
	if (t && t->type == KD_TOML_ARRAY && t->origin == KD_TOML_AOT)
		t = t->last;
	if (!t)
		return kd_err(err, -ENOENT, "%s: table '%s' not found", doc->name,
			      path_str(pbuf, sizeof(pbuf), path, n));
	if (t->type != KD_TOML_TABLE)
		return kd_err(err, -ENOTDIR, "%s: '%s' is %s, not a table", doc->name,
			      path_str(pbuf, sizeof(pbuf), path, n), kd_toml_type_name(t->type));
	*ret = t;
	return 0;
}

/* End of a section's content plus the blank lines right after it: where text can be added
 * without separating a comment from the header it describes. */
static size_t trim_end(const kd_toml_doc *doc, const kd_toml_section *s)
{
	size_t e = s->content_end;
	for (;;) {
		size_t i = e;
		while (i < s->end && (doc->text[i] == ' ' || doc->text[i] == '\t'))
			i++;
		if (i < s->end && doc->text[i] == '\n')
			e = i + 1;
		else if (i + 1 < s->end && doc->text[i] == '\r' && doc->text[i + 1] == '\n')
			e = i + 2;
		else
			return e;
	}
}

static bool in_subtree(const kd_toml_node *n, const kd_toml_node *top)
{
	for (; n; n = n->parent)
		if (n == top)
			return true;
	return false;
}

/* Indentation step between a header and its sub-table's header, and between a header and its
 * keys, as the document does it already ("" when it does not indent). */
static void guess_steps(const kd_toml_doc *doc, size_t *hdr_off, size_t *hdr_len, size_t *key_off,
			size_t *key_len)
{
	*hdr_len = *key_len = 0;
	*hdr_off = *key_off = 0;
	bool hdr = false, key = false;
	for (size_t i = 1; i < doc->nsections && !(hdr && key); i++) {
		const kd_toml_node *t = doc->sections[i].table;
		size_t ti = indent_len(doc, t->stmt_start);
		const kd_toml_node *p = t->parent;
		if (p && p->origin == KD_TOML_AOT)
			p = p->parent;
		if (!hdr && p && p->section > 0 &&
		    (p->origin == KD_TOML_HEADER || p->origin == KD_TOML_AOT_ELEM)) {
			size_t pi = indent_len(doc, p->stmt_start);
			if (ti > pi &&
			    memcmp(doc->text + p->stmt_start, doc->text + t->stmt_start, pi) == 0) {
				*hdr_off = t->stmt_start + pi;
				*hdr_len = ti - pi;
				hdr = true;
			}
		}
		if (!key && t->has_last) {
			size_t ki = indent_len(doc, t->last_start);
			if (ki > ti &&
			    memcmp(doc->text + t->last_start, doc->text + t->stmt_start, ti) == 0) {
				*key_off = t->last_start + ti;
				*key_len = ki - ti;
				key = true;
			}
		}
	}
}

/* A new key line (or inline entry) for a table that does not have this key yet. */
static int add_key(kd_toml_doc *doc, kd_toml_node *t, const char *key, const char *val,
		   kd_error *err)
{
	sb b = {0};

	if (t->sealed || t->in_inline || t->origin == KD_TOML_INLINE) {
		kd_toml_node *r = t;
		while (r && r->origin != KD_TOML_INLINE)
			r = r->parent;
		if (!r || r->stmt_end == 0)
			return kd_err(err, -EINVAL, "%s: cannot add '%s': table is inside an array",
				      doc->name, key);
		size_t pos;
		if (r->count > 0 && r->has_last) {
			pos = r->last_end;
			sb_puts(&b, ", ");
		} else {
			pos = r->vstart + 1;
			sb_puts(&b, " ");
		}
		sb_rel(&b, r, t);
		sb_key(&b, key);
		sb_puts(&b, " = ");
		sb_puts(&b, val);
		if (r->count == 0 && doc->text[pos] == '}')
			sb_puts(&b, " ");
		return splice_sb(doc, pos, 0, &b, err);
	}

	size_t pos, ind_off, ind_len;
	if (t->has_last) {
		pos = t->last_end;
		ind_off = t->last_start;
		ind_len = indent_len(doc, t->last_start);
		if (pos > 0 && doc->text[pos - 1] != '\n')
			sb_nl(&b, doc);
		sb_put(&b, doc->text + ind_off, ind_len);
	} else if (t->origin == KD_TOML_ROOT) {
		pos = 0;
	} else if (t->origin == KD_TOML_HEADER || t->origin == KD_TOML_AOT_ELEM) {
		size_t ho, hl, ko, kl;
		guess_steps(doc, &ho, &hl, &ko, &kl);
		pos = t->stmt_end;
		if (pos > 0 && doc->text[pos - 1] != '\n')
			sb_nl(&b, doc);
		sb_put(&b, doc->text + t->stmt_start, indent_len(doc, t->stmt_start));
		sb_put(&b, doc->text + ko, kl);
	} else {
		return kd_err(err, -EINVAL, "%s: cannot add '%s' to this table", doc->name, key);
	}
	if (t->origin == KD_TOML_DOTTED)
		sb_rel(&b, t->scope, t);
	sb_key(&b, key);
	sb_puts(&b, " = ");
	sb_puts(&b, val);
	sb_nl(&b, doc);
	return splice_sb(doc, pos, 0, &b, err);
}

static int set_value(kd_toml_doc *doc, const char *const *path, size_t n, const char *key,
		     const char *val, kd_error *err)
{
	kd_toml_node *t;
	char pbuf[512];
	int r;

	if (!key)
		return kd_err(err, -EINVAL, "%s: no key given", doc->name);
	r = find_table(doc, path, n, &t, err);
	if (r < 0)
		return r;
	kd_toml_node *old = kd_toml_lookup(doc, t, key, strlen(key));
	if (old) {
		if ((old->type == KD_TOML_TABLE && old->origin != KD_TOML_INLINE) ||
		    old->origin == KD_TOML_AOT)
			return kd_err(err, -EEXIST, "%s: cannot set '%s' in '%s': it is %s",
				      doc->name, key, path_str(pbuf, sizeof(pbuf), path, n),
				      old->origin == KD_TOML_AOT ? "an array of tables"
								 : "a table");
		r = splice(doc, old->vstart, old->vend - old->vstart, val, strlen(val), err);
	} else if (t->origin == KD_TOML_IMPLICIT) {
		r = kd_toml_add_table(doc, path, n, err);
		if (r >= 0)
			r = set_value(doc, path, n, key, val, err);
	} else {
		r = add_key(doc, t, key, val, err);
	}
	if (r < 0)
		return kd_err_wrap(err, r, "set '%s' in '%s'", key,
				   path_str(pbuf, sizeof(pbuf), path, n));
	return 0;
}

int kd_toml_set_raw(kd_toml_doc *doc, const char *const *path, size_t n, const char *key,
		    const char *value, kd_error *err)
{
	return set_value(doc, path, n, key, value, err);
}

static int set_sb(kd_toml_doc *doc, const char *const *path, size_t n, const char *key, sb *b,
		  kd_error *err)
{
	if (b->oom) {
		free(b->s);
		return kd_err(err, -ENOMEM, "%s: out of memory", doc->name);
	}
	int r = set_value(doc, path, n, key, b->s, err);
	free(b->s);
	return r;
}

char *kd_toml_quote(const char *s)
{
	sb b = {0};
	sb_string(&b, s, strlen(s));
	if (b.oom) {
		free(b.s);
		return NULL;
	}
	return b.s;
}

int kd_toml_set_string(kd_toml_doc *doc, const char *const *path, size_t n, const char *key,
		       const char *value, kd_error *err)
{
	sb b = {0};
	sb_string(&b, value, strlen(value));
	return set_sb(doc, path, n, key, &b, err);
}

int kd_toml_set_bool(kd_toml_doc *doc, const char *const *path, size_t n, const char *key,
		     bool value, kd_error *err)
{
	return set_value(doc, path, n, key, value ? "true" : "false", err);
}

int kd_toml_set_int(kd_toml_doc *doc, const char *const *path, size_t n, const char *key,
		    int64_t value, kd_error *err)
{
	char buf[32];
	snprintf(buf, sizeof(buf), "%" PRId64, value);
	return set_value(doc, path, n, key, buf, err);
}

int kd_toml_set_strings(kd_toml_doc *doc, const char *const *path, size_t n, const char *key,
			const char *const *values, size_t nvalues, kd_error *err)
{
	sb b = {0};
	sb_put(&b, "[", 1);
	for (size_t i = 0; i < nvalues; i++) {
		if (i)
			sb_puts(&b, ", ");
		sb_string(&b, values[i], strlen(values[i]));
	}
	sb_put(&b, "]", 1);
	return set_sb(doc, path, n, key, &b, err);
}

/* ---- removal ---- */

typedef struct range {
	size_t start, end;
} range;

typedef struct ranges {
	range *v;
	size_t n, cap;
	bool oom;
} ranges;

static void ranges_add(ranges *rs, size_t start, size_t end)
{
	if (rs->oom || end <= start)
		return;
	if (rs->n == rs->cap) {
		size_t cap = rs->cap ? rs->cap * 2 : 16;
		range *v = realloc(rs->v, cap * sizeof(*v));
		if (!v) {
			rs->oom = true;
			return;
		}
		rs->v = v;
		rs->cap = cap;
	}
	rs->v[rs->n++] = (range){start, end};
}

static int range_cmp(const void *a, const void *b)
{
	const range *x = a, *y = b;
	return x->start < y->start ? -1 : x->start > y->start;
}

/* Only blank lines and comments in [a, b). */
static bool only_trivia(const kd_toml_doc *doc, size_t a, size_t b)
{
	bool comment = false;
	for (size_t i = a; i < b; i++) {
		char c = doc->text[i];
		if (c == '\n')
			comment = false;
		else if (comment)
			continue;
		else if (c == '#')
			comment = true;
		else if (c != ' ' && c != '\t' && c != '\r')
			return false;
	}
	return true;
}

static void collect(const kd_toml_doc *doc, const kd_toml_node *n, ranges *rs)
{
	if (n->in_inline)
		return;
	if (n->type != KD_TOML_TABLE && n->origin != KD_TOML_AOT) {
		ranges_add(rs, n->stmt_start, n->stmt_end);
		return;
	}
	if (n->origin == KD_TOML_INLINE) {
		ranges_add(rs, n->stmt_start, n->stmt_end);
		return;
	}
	if ((n->origin == KD_TOML_HEADER || n->origin == KD_TOML_AOT_ELEM) && n->section > 0) {
		const kd_toml_section *s = &doc->sections[n->section];
		ranges_add(rs, s->start, trim_end(doc, s));
	}
	for (const kd_toml_node *c = n->first; c; c = c->next)
		collect(doc, c, rs);
}

/* The byte ranges that make up table t, sorted and merged where only trivia separates them. */
static int table_ranges(const kd_toml_doc *doc, const kd_toml_node *t, ranges *rs, kd_error *err)
{
	collect(doc, t, rs);
	if (rs->oom)
		return kd_err(err, -ENOMEM, "%s: out of memory", doc->name);
	if (rs->n == 0)
		return kd_err(err, -ENOENT, "%s: table has no text of its own", doc->name);
	qsort(rs->v, rs->n, sizeof(range), range_cmp);
	size_t m = 0;
	for (size_t i = 1; i < rs->n; i++) {
		range *cur = &rs->v[m];
		if (rs->v[i].start <= cur->end || only_trivia(doc, cur->end, rs->v[i].start)) {
			if (rs->v[i].end > cur->end)
				cur->end = rs->v[i].end;
		} else {
			rs->v[++m] = rs->v[i];
		}
	}
	rs->n = m + 1;
	/* At the end of the file, take one blank line before the table with it: that is the line
	 * kd_toml_add_table() writes before a table it appends there. */
	range *last = &rs->v[rs->n - 1];
	if (last->end == doc->len && last->start > 0 && doc->text[last->start - 1] == '\n') {
		size_t i = last->start - 1;
		if (i > 0 && doc->text[i - 1] == '\r')
			i--;
		size_t ls = i;
		while (ls > 0 && doc->text[ls - 1] != '\n' && doc->text[ls - 1] != '\r')
			ls--;
		if (ls > 0 && only_trivia(doc, ls, i) && indent_len(doc, ls) == i - ls) {
			size_t prev = 0;
			if (rs->n > 1)
				prev = rs->v[rs->n - 2].end;
			if (ls >= prev)
				last->start = ls;
		}
	}
	return 0;
}

static int node_ranges(kd_toml_doc *doc, const char *const *path, size_t n, ranges *rs,
		       kd_error *err)
{
	char pbuf[512];
	kd_toml_node *t = walk(doc, path, n);
	if (!t)
		return kd_err(err, -ENOENT, "%s: table '%s' not found", doc->name,
			      path_str(pbuf, sizeof(pbuf), path, n));
	if (t->origin == KD_TOML_ROOT)
		return kd_err(err, -EINVAL, "%s: cannot remove the root table", doc->name);
	if (t->type != KD_TOML_TABLE && t->origin != KD_TOML_AOT)
		return kd_err(err, -ENOTDIR, "%s: '%s' is %s, not a table", doc->name,
			      path_str(pbuf, sizeof(pbuf), path, n), kd_toml_type_name(t->type));
	if (t->in_inline)
		return kd_err(err, -EOPNOTSUPP, "%s: '%s' is part of an inline table", doc->name,
			      path_str(pbuf, sizeof(pbuf), path, n));
	return table_ranges(doc, t, rs, err);
}

int kd_toml_table_range(const kd_toml_doc *doc, const char *const *path, size_t n,
			size_t *ret_start, size_t *ret_end)
{
	ranges rs = {0};
	int r = node_ranges((kd_toml_doc *)doc, path, n, &rs, NULL);
	if (r >= 0) {
		*ret_start = rs.v[0].start;
		*ret_end = rs.v[rs.n - 1].end;
	}
	free(rs.v);
	return r;
}

/* Cut all ranges in one splice: the span from the first to the last is replaced by what lies
 * between them. */
static int cut(kd_toml_doc *doc, const ranges *rs, kd_error *err)
{
	size_t a = rs->v[0].start, z = rs->v[rs->n - 1].end;
	sb b = {0};
	for (size_t i = 0; i + 1 < rs->n; i++)
		sb_put(&b, doc->text + rs->v[i].end, rs->v[i + 1].start - rs->v[i].end);
	return splice_sb(doc, a, z - a, &b, err);
}

int kd_toml_remove_table(kd_toml_doc *doc, const char *const *path, size_t n, kd_error *err)
{
	char pbuf[512];
	ranges rs = {0};
	int r = node_ranges(doc, path, n, &rs, err);
	if (r >= 0)
		r = cut(doc, &rs, err);
	free(rs.v);
	if (r < 0)
		return kd_err_wrap(err, r, "remove table '%s'",
				   path_str(pbuf, sizeof(pbuf), path, n));
	return 0;
}

int kd_toml_remove_key(kd_toml_doc *doc, const char *const *path, size_t n, const char *key,
		       kd_error *err)
{
	kd_toml_node *t;
	char pbuf[512];
	int r;

	if (!key)
		return kd_err(err, -EINVAL, "%s: no key given", doc->name);
	r = find_table(doc, path, n, &t, err);
	if (r < 0)
		return kd_err_wrap(err, r, "remove '%s'", key);
	kd_toml_node *k = kd_toml_lookup(doc, t, key, strlen(key));
	if (!k)
		return kd_err(err, -ENOENT, "%s: remove '%s': no such key in '%s'", doc->name, key,
			      path_str(pbuf, sizeof(pbuf), path, n));
	if (!k->in_inline) {
		ranges rs = {0};
		if (k->type == KD_TOML_TABLE && k->origin != KD_TOML_INLINE) {
			r = table_ranges(doc, k, &rs, err);
		} else {
			ranges_add(&rs, k->stmt_start, k->stmt_end);
			r = rs.oom ? kd_err(err, -ENOMEM, "%s: out of memory", doc->name) : 0;
		}
		if (r >= 0)
			r = cut(doc, &rs, err);
		free(rs.v);
	} else if (k->type == KD_TOML_TABLE && k->origin != KD_TOML_INLINE) {
		r = kd_err(err, -EOPNOTSUPP,
			   "%s: '%s' is written with dotted keys inside an inline "
			   "table",
			   doc->name, key);
	} else {
		/* An inline table entry: take one neighbouring comma with it. */
		size_t s = k->stmt_start, e = k->stmt_end, j = e;
		while (j < doc->len && (doc->text[j] == ' ' || doc->text[j] == '\t'))
			j++;
		if (j < doc->len && doc->text[j] == ',') {
			j++;
			while (j < doc->len && (doc->text[j] == ' ' || doc->text[j] == '\t'))
				j++;
			e = j;
		} else {
			size_t i = s;
			while (i > 0 && (doc->text[i - 1] == ' ' || doc->text[i - 1] == '\t'))
				i--;
			if (i > 0 && doc->text[i - 1] == ',')
				s = i - 1;
		}
		r = splice(doc, s, e - s, "", 0, err);
	}
	if (r < 0)
		return kd_err_wrap(err, r, "remove '%s' from '%s'", key,
				   path_str(pbuf, sizeof(pbuf), path, n));
	return 0;
}

/* ---- new tables ---- */

int kd_toml_add_table(kd_toml_doc *doc, const char *const *path, size_t n, kd_error *err)
{
	char pbuf[512];
	kd_toml_node *a = doc->root;
	size_t depth = 0;

	if (n == 0)
		return kd_err(err, -EEXIST, "%s: the root table always exists", doc->name);
	for (; depth < n; depth++) {
		kd_toml_node *c = get(doc, a, path[depth]);
		if (!c)
			break;
		if (c->type == KD_TOML_ARRAY && c->origin == KD_TOML_AOT)
			c = c->last;
		if (c->type != KD_TOML_TABLE)
			return kd_err(err, -ENOTDIR, "%s: add table '%s': '%s' is %s", doc->name,
				      path_str(pbuf, sizeof(pbuf), path, n), path[depth],
				      kd_toml_type_name(c->type));
		a = c;
	}
	if (depth == n && a->origin != KD_TOML_IMPLICIT)
		return kd_err(err, -EEXIST, "%s: table '%s' already exists", doc->name,
			      path_str(pbuf, sizeof(pbuf), path, n));
	if (a->sealed || a->in_inline || a->origin == KD_TOML_INLINE)
		return kd_err(err, -EINVAL, "%s: add table '%s': '%s' is an inline table",
			      doc->name, path_str(pbuf, sizeof(pbuf), path, n), a->key);

	/* After the last section of the ancestor's subtree. */
	size_t last = 0;
	for (size_t i = 0; i < doc->nsections; i++)
		if (in_subtree(doc->sections[i].table, a))
			last = i;
	if (a->origin == KD_TOML_DOTTED && (size_t)a->section > last)
		last = (size_t)a->section;
	const kd_toml_section *s = &doc->sections[last];
	size_t pos = trim_end(doc, s);

	/* Indentation: a sibling's header, else the parent's header plus the document's step. */
	sb b = {0}, h = {0};
	const kd_toml_node *sib = NULL;
	if (depth >= n - 1)
		for (const kd_toml_node *c = a->first; c && !sib; c = c->next) {
			const kd_toml_node *e =
				c->type == KD_TOML_ARRAY && c->origin == KD_TOML_AOT ? c->first : c;
			if (e && e != a && e->section > 0 && e->type == KD_TOML_TABLE)
				sib = e;
		}
	if (sib) {
		sb_put(&h, doc->text + sib->stmt_start, indent_len(doc, sib->stmt_start));
	} else if (a->section > 0 &&
		   (a->origin == KD_TOML_HEADER || a->origin == KD_TOML_AOT_ELEM)) {
		size_t ho, hl, ko, kl;
		guess_steps(doc, &ho, &hl, &ko, &kl);
		sb_put(&h, doc->text + a->stmt_start, indent_len(doc, a->stmt_start));
		sb_put(&h, doc->text + ho, hl);
	}
	sb_puts(&h, "[");
	sb_path(&h, path, n);
	sb_puts(&h, "]");
	sb_nl(&h, doc);
	if (h.oom) {
		free(h.s);
		return kd_err(err, -ENOMEM, "%s: out of memory", doc->name);
	}
	if (pos == doc->len) {
		if (doc->len > 0 && doc->text[doc->len - 1] != '\n')
			sb_nl(&b, doc);
		if (doc->len > 0)
			sb_nl(&b, doc);
		sb_put(&b, h.s, h.len);
	} else {
		sb_put(&b, h.s, h.len);
		if (pos > s->content_end)
			sb_nl(&b, doc);
	}
	free(h.s);
	int r = splice_sb(doc, pos, 0, &b, err);
	if (r < 0)
		return kd_err_wrap(err, r, "add table '%s'", path_str(pbuf, sizeof(pbuf), path, n));
	return 0;
}
