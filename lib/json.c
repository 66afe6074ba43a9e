#include "json.h"

#include <inttypes.h>
#include <string.h>

#include "fsroot.h"

const char *kd_json_type_name(struct json_object *v)
{
	switch (json_object_get_type(v)) {
	case json_type_null:
		return "null";
	case json_type_boolean:
		return "bool";
	case json_type_double:
		return "double";
	case json_type_int:
		return "int";
	case json_type_object:
		return "object";
	case json_type_array:
		return "array";
	case json_type_string:
		return "string";
	}
	return "unknown";
}

/* Line and column (1-based) of a byte offset, for parse errors. */
static void offset_to_line_col(const char *data, size_t len, size_t off, size_t *line, size_t *col)
{
	size_t l = 1, c = 1;

	for (size_t i = 0; i < off && i < len; i++) {
		if (data[i] == '\n') {
			l++;
			c = 1;
		} else {
			c++;
		}
	}
	*line = l;
	*col = c;
}

/* Two things json-c 0.16 lets through that we must not: 'single-quoted' object keys (even in
 * strict mode), and keys holding \u0000, which it silently cuts at the NUL, so that
 * {"a\u0000x":1,"a\u0000y":2} would read as {"a":2}. Outside a string a quote is never JSON, and
 * a key is a string followed by ':'. Returns the offset of the first offence, or len. */
static size_t find_unsupported(const char *data, size_t len, const char **ret_what)
{
	bool in_string = false, has_nul = false;
	size_t start = 0;

	for (size_t i = 0; i < len; i++) {
		if (in_string) {
			if (data[i] == '\\') {
				if (i + 5 < len && memcmp(data + i + 1, "u0000", 5) == 0)
					has_nul = true;
				i++;
			} else if (data[i] == '"') {
				size_t j = i + 1;
				in_string = false;
				while (j < len && strchr(" \t\r\n", data[j]))
					j++;
				if (has_nul && j < len && data[j] == ':') {
					*ret_what = "NUL character (\\u0000) in an object key";
					return start;
				}
			}
		} else if (data[i] == '"') {
			in_string = true;
			has_nul = false;
			start = i;
		} else if (data[i] == '\'') {
			*ret_what = "unexpected character";
			return i;
		}
	}
	return len;
}

int kd_json_parse_limits(const char *data, size_t len, const char *name, size_t max_size,
			 int max_depth, struct json_object **ret, kd_error *err)
{
	_cleanup_json_ struct json_object *obj = NULL;
	struct json_tokener *tok;
	enum json_tokener_error jerr;
	size_t off, line, col;
	const char *what = NULL;

	if (!name)
		name = "JSON";
	if (max_size == 0)
		max_size = KD_JSON_MAX_SIZE;
	if (max_depth <= 0)
		max_depth = KD_JSON_MAX_DEPTH;
	if (len > max_size)
		return kd_err(err, -EFBIG, "%s: JSON document is %zu bytes, limit is %zu", name,
			      len, max_size);
	/* The tokener takes an int length. */
	if (len > INT32_MAX)
		return kd_err(err, -EFBIG, "%s: JSON document too large", name);

	tok = json_tokener_new_ex(max_depth);
	if (!tok)
		return kd_err(err, -ENOMEM, "%s: out of memory", name);
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	obj = json_tokener_parse_ex(tok, data, (int)len);
	jerr = json_tokener_get_error(tok);
	off = json_tokener_get_parse_end(tok);
	if (jerr == json_tokener_continue) {
		/* Input ended inside a value; a bare number is only complete once json-c sees
		 * the terminating NUL, anything else is truncated. */
		obj = json_tokener_parse_ex(tok, "", 1);
		jerr = json_tokener_get_error(tok);
		off = len;
		if (jerr == json_tokener_continue ||
		    (jerr == json_tokener_success && !obj && len == 0)) {
			json_tokener_free(tok);
			offset_to_line_col(data, len, len, &line, &col);
			return kd_err(err, -EINVAL, "%s:%zu:%zu: unexpected end of JSON input",
				      name, line, col);
		}
	}
	json_tokener_free(tok);

	if (jerr != json_tokener_success) {
		offset_to_line_col(data, len, off, &line, &col);
		if (jerr == json_tokener_error_depth)
			return kd_err(err, -ELOOP, "%s:%zu:%zu: JSON nested deeper than %d levels",
				      name, line, col, max_depth);
		return kd_err(err, -EINVAL, "%s:%zu:%zu: %s", name, line, col,
			      json_tokener_error_desc(jerr));
	}
	for (size_t i = off; i < len; i++) {
		char c = data[i];
		if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
			offset_to_line_col(data, len, i, &line, &col);
			return kd_err(err, -EINVAL, "%s:%zu:%zu: trailing data after JSON value",
				      name, line, col);
		}
	}
	off = find_unsupported(data, len, &what);
	if (off < len) {
		offset_to_line_col(data, len, off, &line, &col);
		return kd_err(err, -EINVAL, "%s:%zu:%zu: %s", name, line, col, what);
	}
	*ret = TAKE_PTR(obj);
	return 0;
}

int kd_json_parse(const char *data, size_t len, const char *name, struct json_object **ret,
		  kd_error *err)
{
	return kd_json_parse_limits(data, len, name, 0, 0, ret, err);
}

const char *kd_json_path_key(char *buf, size_t size, const char *parent, const char *key)
{
	if (parent && parent[0])
		snprintf(buf, size, "%s.%s", parent, key);
	else
		snprintf(buf, size, "%s", key);
	return buf;
}

const char *kd_json_path_index(char *buf, size_t size, const char *parent, size_t index)
{
	snprintf(buf, size, "%s[%zu]", parent ? parent : "", index);
	return buf;
}

static int wrong_type(const char *where, const char *want, struct json_object *v, kd_error *err)
{
	return kd_err(err, -EINVAL, "%s: expected %s, got %s", where && where[0] ? where : "(root)",
		      want, kd_json_type_name(v));
}

/* Fetch obj[key]: 1 present, 0 absent (and optional), < 0 error. */
static int lookup(struct json_object *obj, const char *where, const char *key, bool required,
		  struct json_object **ret, char *path, size_t path_size, kd_error *err)
{
	struct json_object *v = NULL;

	kd_json_path_key(path, path_size, where, key);
	if (!json_object_is_type(obj, json_type_object))
		return wrong_type(where, "object", obj, err);
	if (!json_object_object_get_ex(obj, key, &v) || !v) {
		if (required)
			return kd_err(err, -ENOENT, "%s: missing", path);
		return 0;
	}
	*ret = v;
	return 1;
}

int kd_json_as_string(struct json_object *v, const char *where, const char **ret, kd_error *err)
{
	if (!json_object_is_type(v, json_type_string))
		return wrong_type(where, "string", v, err);
	/* "bin/x\u0000../y" must not pass as "bin/x". */
	if (strlen(json_object_get_string(v)) != (size_t)json_object_get_string_len(v))
		return kd_err(err, -EINVAL, "%s: string contains a NUL character",
			      where && where[0] ? where : "(root)");
	*ret = json_object_get_string(v);
	return 0;
}

int kd_json_as_object(struct json_object *v, const char *where, kd_error *err)
{
	if (!json_object_is_type(v, json_type_object))
		return wrong_type(where, "object", v, err);
	return 0;
}

int kd_json_get_string(struct json_object *obj, const char *where, const char *key, bool required,
		       const char **ret, kd_error *err)
{
	char path[KD_JSON_PATH_MAX];
	struct json_object *v;
	int r;

	r = lookup(obj, where, key, required, &v, path, sizeof(path), err);
	if (r <= 0)
		return r;
	r = kd_json_as_string(v, path, ret, err);
	return r < 0 ? r : 1;
}

int kd_json_get_int64(struct json_object *obj, const char *where, const char *key, bool required,
		      int64_t *ret, kd_error *err)
{
	char path[KD_JSON_PATH_MAX];
	struct json_object *v;
	int64_t x;
	int r;

	r = lookup(obj, where, key, required, &v, path, sizeof(path), err);
	if (r <= 0)
		return r;
	if (!json_object_is_type(v, json_type_int))
		return wrong_type(path, "integer", v, err);
	/* json-c saturates a uint64 above INT64_MAX to INT64_MAX: tell them apart. */
	x = json_object_get_int64(v);
	if (x == INT64_MAX && json_object_get_uint64(v) != (uint64_t)INT64_MAX)
		return kd_err(err, -ERANGE, "%s: integer out of range", path);
	*ret = x;
	return 1;
}

int kd_json_get_uint64(struct json_object *obj, const char *where, const char *key, bool required,
		       uint64_t *ret, kd_error *err)
{
	char path[KD_JSON_PATH_MAX];
	struct json_object *v;
	int r;

	r = lookup(obj, where, key, required, &v, path, sizeof(path), err);
	if (r <= 0)
		return r;
	if (!json_object_is_type(v, json_type_int))
		return wrong_type(path, "integer", v, err);
	if (json_object_get_int64(v) < 0)
		return kd_err(err, -ERANGE, "%s: expected a non-negative integer, got %" PRId64,
			      path, json_object_get_int64(v));
	*ret = json_object_get_uint64(v);
	return 1;
}

int kd_json_get_bool(struct json_object *obj, const char *where, const char *key, bool required,
		     bool *ret, kd_error *err)
{
	char path[KD_JSON_PATH_MAX];
	struct json_object *v;
	int r;

	r = lookup(obj, where, key, required, &v, path, sizeof(path), err);
	if (r <= 0)
		return r;
	if (!json_object_is_type(v, json_type_boolean))
		return wrong_type(path, "bool", v, err);
	*ret = json_object_get_boolean(v);
	return 1;
}

int kd_json_get_object(struct json_object *obj, const char *where, const char *key, bool required,
		       struct json_object **ret, kd_error *err)
{
	char path[KD_JSON_PATH_MAX];
	struct json_object *v;
	int r;

	r = lookup(obj, where, key, required, &v, path, sizeof(path), err);
	if (r <= 0)
		return r;
	if (!json_object_is_type(v, json_type_object))
		return wrong_type(path, "object", v, err);
	*ret = v;
	return 1;
}

int kd_json_get_array(struct json_object *obj, const char *where, const char *key, bool required,
		      struct json_object **ret, kd_error *err)
{
	char path[KD_JSON_PATH_MAX];
	struct json_object *v;
	int r;

	r = lookup(obj, where, key, required, &v, path, sizeof(path), err);
	if (r <= 0)
		return r;
	if (!json_object_is_type(v, json_type_array))
		return wrong_type(path, "array", v, err);
	*ret = v;
	return 1;
}

/* A growable string for the canonical writer. */
typedef struct strbuf {
	char *s;
	size_t len, cap;
	bool oom;
} strbuf;

static void sb_add(strbuf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		char *p;
		while (cap < b->len + n + 1)
			cap *= 2;
		p = realloc(b->s, cap);
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

static void sb_adds(strbuf *b, const char *s)
{
	sb_add(b, s, strlen(s));
}

/* Strings escaped per RFC 8259 with the minimal escapes (and '/' left alone), so the bytes do
 * not depend on json-c's escaping choices. */
static void sb_add_json_string(strbuf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t start = 0;

	sb_add(b, "\"", 1);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		char esc[7];
		const char *e = NULL;

		switch (c) {
		case '"':
			e = "\\\"";
			break;
		case '\\':
			e = "\\\\";
			break;
		case '\b':
			e = "\\b";
			break;
		case '\f':
			e = "\\f";
			break;
		case '\n':
			e = "\\n";
			break;
		case '\r':
			e = "\\r";
			break;
		case '\t':
			e = "\\t";
			break;
		default:
			if (c < 0x20) {
				esc[0] = '\\';
				esc[1] = 'u';
				esc[2] = '0';
				esc[3] = '0';
				esc[4] = hex[c >> 4];
				esc[5] = hex[c & 0xf];
				esc[6] = '\0';
				e = esc;
			}
		}
		if (e) {
			sb_add(b, s + start, i - start);
			sb_adds(b, e);
			start = i + 1;
		}
	}
	sb_add(b, s + start, n - start);
	sb_add(b, "\"", 1);
}

static int cmp_keys(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int canonical(strbuf *b, struct json_object *v, int depth, kd_error *err)
{
	char num[32];

	if (depth > KD_JSON_MAX_DEPTH)
		return kd_err(err, -ELOOP, "JSON nested deeper than %d levels", KD_JSON_MAX_DEPTH);
	switch (json_object_get_type(v)) {
	case json_type_null:
		sb_adds(b, "null");
		break;
	case json_type_boolean:
		sb_adds(b, json_object_get_boolean(v) ? "true" : "false");
		break;
	case json_type_int:
		if (json_object_get_int64(v) < 0)
			snprintf(num, sizeof(num), "%" PRId64, json_object_get_int64(v));
		else
			snprintf(num, sizeof(num), "%" PRIu64, json_object_get_uint64(v));
		sb_adds(b, num);
		break;
	case json_type_double:
		/* Digests and signatures cover integers only; a double has no single
		 * spelling we could promise. */
		return kd_err(err, -EINVAL, "canonical JSON: floating-point numbers not allowed");
	case json_type_string:
		sb_add_json_string(b, json_object_get_string(v),
				   (size_t)json_object_get_string_len(v));
		break;
	case json_type_array: {
		size_t n = json_object_array_length(v);
		sb_add(b, "[", 1);
		for (size_t i = 0; i < n; i++) {
			int r;
			if (i)
				sb_add(b, ",", 1);
			r = canonical(b, json_object_array_get_idx(v, i), depth + 1, err);
			if (r < 0)
				return r;
		}
		sb_add(b, "]", 1);
		break;
	}
	case json_type_object: {
		_cleanup_free_ const char **keys = NULL;
		size_t n = (size_t)json_object_object_length(v), i = 0;

		keys = calloc(n ? n : 1, sizeof(*keys));
		if (!keys)
			return kd_err(err, -ENOMEM, "canonical JSON: out of memory");
		json_object_object_foreach(v, key, val)
		{
			(void)val;
			keys[i++] = key;
		}
		qsort(keys, n, sizeof(*keys), cmp_keys);
		sb_add(b, "{", 1);
		for (i = 0; i < n; i++) {
			int r;
			if (i)
				sb_add(b, ",", 1);
			sb_add_json_string(b, keys[i], strlen(keys[i]));
			sb_add(b, ":", 1);
			r = canonical(b, json_object_object_get(v, keys[i]), depth + 1, err);
			if (r < 0)
				return r;
		}
		sb_add(b, "}", 1);
		break;
	}
	}
	return 0;
}

int kd_json_format(struct json_object *v, int mode, char **ret, size_t *ret_len, kd_error *err)
{
	strbuf b = {0};
	int r;

	if (mode == KD_JSON_PRETTY) {
		size_t n = 0;
		const char *s = json_object_to_json_string_length(
			v, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
		if (!s)
			return kd_err(err, -ENOMEM, "format JSON: out of memory");
		sb_add(&b, s, n);
		sb_add(&b, "\n", 1);
	} else {
		r = canonical(&b, v, 0, err);
		if (r < 0) {
			free(b.s);
			return r;
		}
		if (!b.s)
			sb_add(&b, "", 0);
	}
	if (b.oom) {
		free(b.s);
		return kd_err(err, -ENOMEM, "format JSON: out of memory");
	}
	*ret = b.s;
	if (ret_len)
		*ret_len = b.len;
	return 0;
}

int kd_json_write_atomic(int rootfd, const char *path, struct json_object *v, int mode,
			 mode_t file_mode, kd_error *err)
{
	_cleanup_free_ char *s = NULL;
	size_t len = 0;
	int r;

	r = kd_json_format(v, mode, &s, &len, err);
	if (r < 0)
		return kd_err_wrap(err, r, "write %s", path);
	return kd_write_atomic(rootfd, path, s, len, file_mode, err);
}

struct json_object *kd_json_from_strv(char *const *v)
{
	struct json_object *a = json_object_new_array();
	for (size_t i = 0; a && v && v[i]; i++)
		json_object_array_add(a, json_object_new_string(v[i]));
	return a;
}
