/* <yaml.h> resolves to lib/yaml.h, which pulls in libyaml's header with this set. */
#define KD_YAML_WANT_LIBYAML 1
#include <yaml.h>

#include <fcntl.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>

#include "json.h"

#define TAG_PREFIX "tag:yaml.org,2002:"

/* One open mapping or sequence. */
typedef struct frame {
	struct json_object *node; /* object or array being filled */
	bool is_map;
	char *key;	   /* pending key of a mapping; NULL while we wait for one */
	bool key_is_merge; /* the pending key is the merge key "<<" */
	yaml_mark_t key_mark;
	char *anchor;		    /* anchor of this container, registered when it ends */
	uint64_t nodes;		    /* nodes in this subtree so far, itself included */
	struct json_object *merges; /* mappings named by "<<", merged when the mapping ends */
} frame;

typedef struct ctx {
	const char *name;
	kd_error *err;
	frame stack[KD_YAML_MAX_DEPTH];
	int depth;
	struct json_object *anchors; /* name -> [node, node count]; per document */
	uint64_t nodes, aliases, alias_nodes;
	struct json_object *doc; /* root of the current document */
	bool have_doc;
} ctx;

static int at(ctx *c, int code, yaml_mark_t m, const char *fmt, ...) _printf_(4, 5);
static int at(ctx *c, int code, yaml_mark_t m, const char *fmt, ...)
{
	char msg[KD_ERROR_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return kd_err(c->err, code, "%s:%zu:%zu: %s", c->name, m.line + 1, m.column + 1, msg);
}

static void frame_free(frame *f)
{
	json_object_put(f->node);
	json_object_put(f->merges);
	free(f->key);
	free(f->anchor);
	*f = (frame){0};
}

static int count_node(ctx *c, uint64_t n, yaml_mark_t m)
{
	c->nodes += n;
	if (c->nodes > KD_YAML_MAX_NODES)
		return at(c, -E2BIG, m, "more than %d nodes (after expanding aliases)",
			  KD_YAML_MAX_NODES);
	return 0;
}

static int register_anchor(ctx *c, const char *anchor, struct json_object *v, uint64_t nodes)
{
	struct json_object *entry = json_object_new_array_ext(2);

	if (!entry)
		return kd_err(c->err, -ENOMEM, "%s: out of memory", c->name);
	json_object_array_add(entry, json_object_get(v));
	json_object_array_add(entry, json_object_new_uint64(nodes));
	/* A later anchor of the same name replaces the earlier one, as YAML says. */
	if (json_object_object_add(c->anchors, anchor, entry) < 0) {
		json_object_put(entry);
		return kd_err(c->err, -ENOMEM, "%s: out of memory", c->name);
	}
	return 0;
}

static bool is_mapping_list(struct json_object *v)
{
	if (json_object_is_type(v, json_type_object))
		return true;
	if (!json_object_is_type(v, json_type_array))
		return false;
	for (size_t i = 0; i < json_object_array_length(v); i++)
		if (!json_object_is_type(json_object_array_get_idx(v, i), json_type_object))
			return false;
	return true;
}

/* Put a finished node (owned) into its parent or make it the document. */
static int add_node(ctx *c, struct json_object *v, uint64_t nodes, const char *anchor,
		    yaml_mark_t m)
{
	frame *top;
	int r = 0;

	if (anchor) {
		r = register_anchor(c, anchor, v, nodes);
		if (r < 0)
			goto fail;
	}
	if (c->depth == 0) {
		c->doc = v;
		c->have_doc = true;
		return 0;
	}
	top = &c->stack[c->depth - 1];
	top->nodes += nodes;
	if (!top->is_map) {
		if (json_object_array_add(top->node, v) < 0) {
			r = kd_err(c->err, -ENOMEM, "%s: out of memory", c->name);
			goto fail;
		}
		return 0;
	}
	if (!top->key) {
		r = at(c, -EINVAL, m, "mapping keys must be scalars");
		goto fail;
	}
	if (top->key_is_merge) {
		if (!is_mapping_list(v)) {
			r = at(c, -EINVAL, top->key_mark,
			       "merge key '<<' needs a mapping or a list of mappings");
			goto fail;
		}
		if (!top->merges)
			top->merges = json_object_new_array();
		if (!top->merges || json_object_array_add(top->merges, v) < 0) {
			r = kd_err(c->err, -ENOMEM, "%s: out of memory", c->name);
			goto fail;
		}
	} else {
		if (json_object_object_get_ex(top->node, top->key, NULL)) {
			r = at(c, -EINVAL, top->key_mark, "duplicate key '%s'", top->key);
			goto fail;
		}
		if (json_object_object_add(top->node, top->key, v) < 0) {
			r = kd_err(c->err, -ENOMEM, "%s: out of memory", c->name);
			goto fail;
		}
	}
	free(top->key);
	top->key = NULL;
	top->key_is_merge = false;
	return 0;
fail:
	json_object_put(v);
	return r;
}

/* Keys already present (explicit or from an earlier merge source) win, as in YAML 1.1's
 * merge-key spec that Kubernetes tooling follows. */
static void merge_one(struct json_object *dst, struct json_object *src)
{
	json_object_object_foreach(src, key, val)
	{
		if (!json_object_object_get_ex(dst, key, NULL))
			json_object_object_add(dst, key, json_object_get(val));
	}
}

static void apply_merges(frame *f)
{
	size_t n = json_object_array_length(f->merges);

	for (size_t i = 0; i < n; i++) {
		struct json_object *m = json_object_array_get_idx(f->merges, i);
		if (json_object_is_type(m, json_type_object)) {
			merge_one(f->node, m);
		} else {
			for (size_t j = 0; j < json_object_array_length(m); j++)
				merge_one(f->node, json_object_array_get_idx(m, j));
		}
	}
}

static int push(ctx *c, bool is_map, const yaml_char_t *anchor, yaml_mark_t m)
{
	frame *f;
	int r;

	if (c->depth > 0 && c->stack[c->depth - 1].is_map && !c->stack[c->depth - 1].key)
		return at(c, -EINVAL, m, "mapping keys must be scalars");
	if (c->depth >= KD_YAML_MAX_DEPTH)
		return at(c, -ELOOP, m, "nested deeper than %d levels", KD_YAML_MAX_DEPTH);
	r = count_node(c, 1, m);
	if (r < 0)
		return r;
	f = &c->stack[c->depth];
	*f = (frame){.is_map = is_map, .nodes = 1};
	f->node = is_map ? json_object_new_object() : json_object_new_array();
	if (anchor)
		f->anchor = strdup((const char *)anchor);
	if (!f->node || (anchor && !f->anchor)) {
		frame_free(f);
		return kd_err(c->err, -ENOMEM, "%s: out of memory", c->name);
	}
	c->depth++;
	return 0;
}

static int pop(ctx *c, yaml_mark_t m)
{
	frame f;
	int r;

	c->depth--;
	f = c->stack[c->depth];
	c->stack[c->depth] = (frame){0};
	if (f.is_map && f.merges)
		apply_merges(&f);
	r = add_node(c, TAKE_PTR(f.node), f.nodes, f.anchor, m);
	frame_free(&f);
	return r;
}

static bool all_digits(const char *s, const char *set)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!strchr(set, *s))
			return false;
	return true;
}

/* YAML 1.2 core schema float: [-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )? */
static bool is_core_float(const char *s)
{
	bool digits = false;

	if (*s == '-' || *s == '+')
		s++;
	while (*s >= '0' && *s <= '9') {
		s++;
		digits = true;
	}
	if (*s == '.') {
		s++;
		while (*s >= '0' && *s <= '9') {
			s++;
			digits = true;
		}
	}
	if (!digits)
		return false;
	if (*s == 'e' || *s == 'E') {
		s++;
		if (*s == '-' || *s == '+')
			s++;
		if (!(*s >= '0' && *s <= '9'))
			return false;
		while (*s >= '0' && *s <= '9')
			s++;
	}
	return *s == '\0';
}

static bool str_in(const char *s, const char *const *set)
{
	for (; *set; set++)
		if (strcmp(s, *set) == 0)
			return true;
	return false;
}

enum { RES_STR, RES_NULL, RES_BOOL, RES_INT, RES_FLOAT, RES_OOM };

/* Digits in base 8, 10 or 16 that fit 64 bits make an integer (int64 when they fit it, for
 * uniform comparisons); decimal beyond that becomes a float, octal and hex a string. */
static int resolve_unsigned(const char *s, const char *digits, int base, struct json_object **v)
{
	unsigned long long x;

	errno = 0;
	x = strtoull(digits, NULL, base);
	if (errno == 0 && x <= INT64_MAX)
		*v = json_object_new_int64((int64_t)x);
	else if (errno == 0)
		*v = json_object_new_uint64(x);
	else if (base == 10)
		*v = json_object_new_double(strtod(s, NULL));
	else {
		*v = json_object_new_string(s);
		return RES_STR;
	}
	return RES_INT;
}

/* Resolve a plain scalar by the core schema; *ret gets a new object (NULL for null). */
static int resolve_plain(const char *s, struct json_object **ret)
{
	static const char *const nulls[] = {"", "~", "null", "Null", "NULL", NULL};
	static const char *const trues[] = {"true", "True", "TRUE", NULL};
	static const char *const falses[] = {"false", "False", "FALSE", NULL};
	static const char *const infs[] = {".inf", ".Inf", ".INF", NULL};
	static const char *const nans[] = {".nan", ".NaN", ".NAN", NULL};
	const char *d = (*s == '-' || *s == '+') ? s + 1 : s;
	struct json_object *v = NULL;
	char *end;
	int kind;

	if (str_in(s, nulls)) {
		*ret = NULL;
		return RES_NULL;
	}
	if (str_in(s, trues) || str_in(s, falses)) {
		v = json_object_new_boolean(str_in(s, trues));
		kind = RES_BOOL;
	} else if (s[0] == '0' && s[1] == 'o' && all_digits(s + 2, "01234567")) {
		kind = resolve_unsigned(s, s + 2, 8, &v);
	} else if (s[0] == '0' && s[1] == 'x' && all_digits(s + 2, "0123456789abcdefABCDEF")) {
		kind = resolve_unsigned(s, s + 2, 16, &v);
	} else if (all_digits(d, "0123456789")) {
		long long x;
		errno = 0;
		x = strtoll(s, &end, 10);
		if (errno == 0) {
			v = json_object_new_int64(x);
			kind = RES_INT;
		} else if (*s == '-') {
			/* Below INT64_MIN: a float, as other YAML readers do. */
			v = json_object_new_double(strtod(s, NULL));
			kind = RES_INT;
		} else {
			kind = resolve_unsigned(s, d, 10, &v);
		}
	} else if (is_core_float(s)) {
		v = json_object_new_double(strtod(s, NULL));
		kind = RES_FLOAT;
	} else if (str_in(d, infs)) {
		v = json_object_new_double(*s == '-' ? -INFINITY : INFINITY);
		kind = RES_FLOAT;
	} else if (str_in(s, nans)) {
		v = json_object_new_double(NAN);
		kind = RES_FLOAT;
	} else {
		v = json_object_new_string(s);
		kind = RES_STR;
	}
	if (!v)
		return RES_OOM;
	*ret = v;
	return kind;
}

static int scalar_value(ctx *c, const yaml_event_t *ev, struct json_object **ret)
{
	const char *s = (const char *)ev->data.scalar.value;
	size_t len = ev->data.scalar.length;
	const char *tag = (const char *)ev->data.scalar.tag;
	struct json_object *v = NULL;
	int kind, want;

	if (tag && strcmp(tag, "!") == 0)
		tag = TAG_PREFIX "str";
	if (!tag && ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		tag = TAG_PREFIX "str";
	if (tag && strcmp(tag, TAG_PREFIX "str") == 0) {
		v = json_object_new_string_len(s, (int)len);
		if (!v)
			return kd_err(c->err, -ENOMEM, "%s: out of memory", c->name);
		*ret = v;
		return 0;
	}
	if (strlen(s) != len)
		return at(c, -EINVAL, ev->start_mark, "NUL character in a plain scalar");
	kind = resolve_plain(s, &v);
	if (kind == RES_OOM)
		return kd_err(c->err, -ENOMEM, "%s: out of memory", c->name);
	if (!tag) {
		*ret = v;
		return 0;
	}
	if (strcmp(tag, TAG_PREFIX "null") == 0)
		want = RES_NULL;
	else if (strcmp(tag, TAG_PREFIX "bool") == 0)
		want = RES_BOOL;
	else if (strcmp(tag, TAG_PREFIX "int") == 0)
		want = RES_INT;
	else if (strcmp(tag, TAG_PREFIX "float") == 0)
		want = RES_FLOAT;
	else {
		json_object_put(v);
		return at(c, -EINVAL, ev->start_mark, "unsupported tag '%s'", tag);
	}
	if (want == RES_FLOAT && kind == RES_INT) {
		double d = json_object_get_double(v);
		json_object_put(v);
		v = json_object_new_double(d);
		if (!v)
			return kd_err(c->err, -ENOMEM, "%s: out of memory", c->name);
		kind = RES_FLOAT;
	}
	if (kind != want) {
		json_object_put(v);
		return at(c, -EINVAL, ev->start_mark, "'%s' is not a valid %s", s,
			  tag + strlen(TAG_PREFIX));
	}
	*ret = v;
	return 0;
}

/* A scalar where a mapping expects a key. Keys are the scalar's text, whatever it resolves to. */
static int set_key(ctx *c, frame *top, const char *s, size_t len, bool merge, yaml_mark_t m)
{
	if (strlen(s) != len)
		return at(c, -EINVAL, m, "NUL character in a key");
	top->key = strdup(s);
	if (!top->key)
		return kd_err(c->err, -ENOMEM, "%s: out of memory", c->name);
	top->key_is_merge = merge;
	top->key_mark = m;
	return 0;
}

static int on_scalar(ctx *c, const yaml_event_t *ev)
{
	frame *top = c->depth > 0 ? &c->stack[c->depth - 1] : NULL;
	const char *anchor = (const char *)ev->data.scalar.anchor;
	struct json_object *v = NULL;
	int r;

	r = count_node(c, 1, ev->start_mark);
	if (r < 0)
		return r;
	if (top && top->is_map && !top->key) {
		const char *s = (const char *)ev->data.scalar.value;
		bool merge = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
			     !ev->data.scalar.tag && strcmp(s, "<<") == 0;
		r = set_key(c, top, s, ev->data.scalar.length, merge, ev->start_mark);
		if (r < 0)
			return r;
		if (anchor) {
			v = json_object_new_string(s);
			if (!v)
				return kd_err(c->err, -ENOMEM, "%s: out of memory", c->name);
			r = register_anchor(c, anchor, v, 1);
			json_object_put(v);
		}
		return r;
	}
	r = scalar_value(c, ev, &v);
	if (r < 0)
		return r;
	return add_node(c, v, 1, anchor, ev->start_mark);
}

static int on_alias(ctx *c, const yaml_event_t *ev)
{
	const char *name = (const char *)ev->data.alias.anchor;
	frame *top = c->depth > 0 ? &c->stack[c->depth - 1] : NULL;
	struct json_object *entry, *node, *copy = NULL;
	uint64_t nodes;
	int r;

	if (++c->aliases > KD_YAML_MAX_ALIASES)
		return at(c, -E2BIG, ev->start_mark, "more than %d aliases", KD_YAML_MAX_ALIASES);
	if (!json_object_object_get_ex(c->anchors, name, &entry))
		return at(c, -EINVAL, ev->start_mark, "unknown anchor '%s'", name);
	node = json_object_array_get_idx(entry, 0);
	nodes = json_object_get_uint64(json_object_array_get_idx(entry, 1));
	c->alias_nodes += nodes;
	if (c->alias_nodes > KD_YAML_MAX_ALIAS_NODES)
		return at(c, -E2BIG, ev->start_mark, "aliases expand to more than %d nodes",
			  KD_YAML_MAX_ALIAS_NODES);
	r = count_node(c, nodes, ev->start_mark);
	if (r < 0)
		return r;
	if (top && top->is_map && !top->key) {
		if (json_object_is_type(node, json_type_object) ||
		    json_object_is_type(node, json_type_array))
			return at(c, -EINVAL, ev->start_mark, "mapping keys must be scalars");
		const char *s = node ? json_object_get_string(node) : "";
		return set_key(c, top, s, strlen(s), false, ev->start_mark);
	}
	/* A deep copy, so a caller editing one place does not edit another; the node limit
	 * above bounds what the copies cost. */
	if (node && json_object_deep_copy(node, &copy, NULL) < 0)
		return kd_err(c->err, -ENOMEM, "%s: out of memory", c->name);
	return add_node(c, copy, nodes, NULL, ev->start_mark);
}

static int parser_error(ctx *c, const yaml_parser_t *p)
{
	const char *problem = p->problem ? p->problem : "parse error";

	if (p->error == YAML_MEMORY_ERROR)
		return kd_err(c->err, -ENOMEM, "%s: out of memory", c->name);
	if (p->error == YAML_READER_ERROR)
		return kd_err(c->err, -EINVAL, "%s: byte %zu: %s", c->name, p->problem_offset,
			      problem);
	if (p->context)
		return kd_err(c->err, -EINVAL, "%s:%zu:%zu: %s %s", c->name,
			      p->problem_mark.line + 1, p->problem_mark.column + 1, problem,
			      p->context);
	return kd_err(c->err, -EINVAL, "%s:%zu:%zu: %s", c->name, p->problem_mark.line + 1,
		      p->problem_mark.column + 1, problem);
}

DEFINE_CLEANUP(yaml_parser_t *, yaml_parser_delete)

static int parse_stream(const char *data, size_t len, const char *name, bool multi,
			struct json_object **ret, kd_error *err)
{
	ctx c = {.name = name ? name : "YAML", .err = err};
	yaml_parser_t parser;
	_cleanup_(yaml_parser_deletep) _unused_ yaml_parser_t *pp = NULL;
	_cleanup_json_ struct json_object *docs = NULL;
	size_t ndocs = 0;
	bool done = false;
	int r = 0;

	if (len > KD_YAML_MAX_SIZE)
		return kd_err(err, -EFBIG, "%s: YAML document is %zu bytes, limit is %d", c.name,
			      len, KD_YAML_MAX_SIZE);
	if (!yaml_parser_initialize(&parser))
		return kd_err(err, -ENOMEM, "%s: out of memory", c.name);
	pp = &parser;
	yaml_parser_set_input_string(&parser, (const unsigned char *)data, len);
	docs = json_object_new_array();
	if (!docs)
		return kd_err(err, -ENOMEM, "%s: out of memory", c.name);

	while (!done && r >= 0) {
		yaml_event_t ev;

		if (!yaml_parser_parse(&parser, &ev)) {
			r = parser_error(&c, &parser);
			break;
		}
		switch (ev.type) {
		case YAML_STREAM_END_EVENT:
			done = true;
			break;
		case YAML_DOCUMENT_START_EVENT:
			if (!multi && ndocs > 0) {
				r = at(&c, -EINVAL, ev.start_mark,
				       "a second document where one was expected");
				break;
			}
			if (++ndocs > KD_YAML_MAX_DOCUMENTS) {
				r = at(&c, -E2BIG, ev.start_mark, "more than %d documents",
				       KD_YAML_MAX_DOCUMENTS);
				break;
			}
			json_object_put(c.anchors);
			c.anchors = json_object_new_object();
			c.doc = NULL;
			c.have_doc = false;
			if (!c.anchors)
				r = kd_err(err, -ENOMEM, "%s: out of memory", c.name);
			break;
		case YAML_DOCUMENT_END_EVENT:
			if (c.doc && json_object_array_add(docs, TAKE_PTR(c.doc)) < 0)
				r = kd_err(err, -ENOMEM, "%s: out of memory", c.name);
			c.have_doc = false;
			break;
		case YAML_MAPPING_START_EVENT:
			r = push(&c, true, ev.data.mapping_start.anchor, ev.start_mark);
			break;
		case YAML_SEQUENCE_START_EVENT:
			r = push(&c, false, ev.data.sequence_start.anchor, ev.start_mark);
			break;
		case YAML_MAPPING_END_EVENT:
		case YAML_SEQUENCE_END_EVENT:
			r = pop(&c, ev.start_mark);
			break;
		case YAML_SCALAR_EVENT:
			r = on_scalar(&c, &ev);
			break;
		case YAML_ALIAS_EVENT:
			r = on_alias(&c, &ev);
			break;
		default:
			break;
		}
		yaml_event_delete(&ev);
	}

	while (c.depth > 0)
		frame_free(&c.stack[--c.depth]);
	json_object_put(c.doc);
	json_object_put(c.anchors);
	if (r < 0)
		return r;
	if (multi) {
		*ret = TAKE_PTR(docs);
	} else {
		struct json_object *d = json_object_array_get_idx(docs, 0);
		*ret = json_object_get(d);
	}
	return 0;
}

int kd_yaml_parse(const char *data, size_t len, const char *name, struct json_object **ret,
		  kd_error *err)
{
	return parse_stream(data, len, name, false, ret, err);
}

int kd_yaml_parse_all(const char *data, size_t len, const char *name, struct json_object **ret,
		      kd_error *err)
{
	return parse_stream(data, len, name, true, ret, err);
}

static int read_limited(const char *path, char **ret, size_t *ret_len, kd_error *err)
{
	_cleanup_close_ int fd = -1;
	_cleanup_free_ char *buf = NULL;
	size_t len = 0, cap = 0;
	struct stat st;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return kd_err_errno(err, negative_errno(), "%s", path);
	if (fstat(fd, &st) < 0)
		return kd_err_errno(err, negative_errno(), "%s", path);
	if (S_ISDIR(st.st_mode))
		return kd_err(err, -EISDIR, "%s: is a directory", path);
	for (;;) {
		ssize_t n;
		if (len == cap) {
			size_t ncap = cap ? cap * 2 : 64 * 1024;
			char *p;
			if (ncap > (size_t)KD_YAML_MAX_SIZE + 1)
				ncap = (size_t)KD_YAML_MAX_SIZE + 1;
			if (ncap == cap)
				return kd_err(err, -EFBIG, "%s: larger than %d bytes", path,
					      KD_YAML_MAX_SIZE);
			p = realloc(buf, ncap);
			if (!p)
				return kd_err(err, -ENOMEM, "%s: out of memory", path);
			buf = p;
			cap = ncap;
		}
		n = read(fd, buf + len, cap - len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return kd_err_errno(err, negative_errno(), "%s: read", path);
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	*ret = TAKE_PTR(buf);
	*ret_len = len;
	return 0;
}

static int parse_file(const char *path, bool multi, struct json_object **ret, kd_error *err)
{
	_cleanup_free_ char *data = NULL;
	size_t len = 0;
	int r;

	r = read_limited(path, &data, &len, err);
	if (r < 0)
		return r;
	return parse_stream(data ? data : "", len, path, multi, ret, err);
}

int kd_yaml_parse_file(const char *path, struct json_object **ret, kd_error *err)
{
	return parse_file(path, false, ret, err);
}

int kd_yaml_parse_file_all(const char *path, struct json_object **ret, kd_error *err)
{
	return parse_file(path, true, ret, err);
}
