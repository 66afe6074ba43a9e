/* Recipe, versions and shim-map parsing: YAML through lib/yaml into json-c, then a key table
 * per object type turns it into typed structs. lib/yaml keeps no positions in the tree, so a
 * bad key or value is located by finding its first occurrence in the text (recipes are small
 * and flat; docs/RECIPES.md says so). */
#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "digest.h"
#include "json.h"
#include "recipe.h"
#include "strv.h"
#include "yaml.h"

typedef enum field_type {
	F_STRING,
	F_BOOL,
	F_INT64,
	F_STRV,
	F_SOURCES,
	F_VARS,
	F_SHIMS,
	F_UPSTREAM_ONLY,
} field_type;

typedef struct field {
	const char *key;
	field_type type;
	size_t offset;
	bool required;
} field;

typedef struct ctx {
	const char *name; /* file name for messages */
	const char *text;
	size_t len;
	const kd_versions *versions;
	kd_error *err;
} ctx;

/* 1-based line of the first line whose key (after indentation and "- ") is key; 0 if none. */
static size_t key_line(const ctx *c, const char *key)
{
	size_t line = 1, klen = strlen(key);
	const char *p = c->text, *end = c->text + c->len;

	while (p < end) {
		const char *q = p;
		while (q < end && (*q == ' ' || *q == '-'))
			q++;
		if (*q == '"' || *q == '\'')
			q++;
		if ((size_t)(end - q) > klen && memcmp(q, key, klen) == 0) {
			const char *t = q + klen;
			if (t < end && (*t == '"' || *t == '\''))
				t++;
			while (t < end && *t == ' ')
				t++;
			if (t < end && *t == ':')
				return line;
		}
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		if (!nl)
			break;
		p = nl + 1;
		line++;
	}
	return 0;
}

/* 1-based line of the first line containing needle; 0 if none. */
static size_t text_line(const ctx *c, const char *needle)
{
	const char *hit = memmem(c->text, c->len, needle, strlen(needle));
	size_t line = 1;
	if (!hit || !*needle)
		return 0;
	for (const char *p = c->text; p < hit; p++)
		line += *p == '\n';
	return line;
}

static int fail_at(const ctx *c, size_t line, int code, const char *fmt, ...) _printf_(4, 5);
static int fail_at(const ctx *c, size_t line, int code, const char *fmt, ...)
{
	char msg[KD_ERROR_MAX / 2];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (line)
		return kd_err(c->err, code, "%s:%zu: %s", c->name, line, msg);
	return kd_err(c->err, code, "%s: %s", c->name, msg);
}

bool kd_recipe_path_safe(const char *s, bool dir_ok)
{
	size_t n = strlen(s);
	if (n == 0 || n >= 4096 || s[0] == '/')
		return false;
	if (s[n - 1] == '/') {
		if (!dir_ok)
			return false;
		n--;
	}
	const char *p = s, *end = s + n;
	while (p < end) {
		const char *slash = memchr(p, '/', (size_t)(end - p));
		size_t len = slash ? (size_t)(slash - p) : (size_t)(end - p);
		if (len == 0 || (len == 1 && p[0] == '.') ||
		    (len == 2 && p[0] == '.' && p[1] == '.'))
			return false;
		for (size_t i = 0; i < len; i++)
			if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f)
				return false;
		p += len + 1;
	}
	return true;
}

static bool name_valid(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > KD_RECIPE_NAME_MAX ||
	    !(islower((unsigned char)s[0]) || isdigit((unsigned char)s[0])))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!islower((unsigned char)s[i]) && !isdigit((unsigned char)s[i]) && s[i] != '-' &&
		    s[i] != '_' && s[i] != '.')
			return false;
	return true;
}

const char *kd_versions_get(const kd_versions *v, const char *name)
{
	for (size_t i = 0; v && i < v->n_vars; i++)
		if (strcmp(v->vars[i].name, name) == 0)
			return v->vars[i].value;
	return NULL;
}

/* Replace every {{name}} with the pinned value. */
static int expand(const ctx *c, const char *key, const char *in, char **ret)
{
	_cleanup_free_ char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	if (!f)
		return kd_err(c->err, -ENOMEM, "out of memory");
	for (const char *p = in; *p;) {
		const char *open = strstr(p, "{{");
		if (!open) {
			fputs(p, f);
			break;
		}
		fwrite(p, 1, (size_t)(open - p), f);
		const char *close_ = strstr(open + 2, "}}");
		char name[KD_RECIPE_NAME_MAX + 1];
		size_t n = close_ ? (size_t)(close_ - open - 2) : 0;
		if (!close_ || n == 0 || n > KD_RECIPE_NAME_MAX) {
			fclose(f);
			return fail_at(c, key_line(c, key), -EINVAL,
				       "%s: unterminated or empty '{{'", key);
		}
		memcpy(name, open + 2, n);
		name[n] = '\0';
		const char *v = kd_versions_get(c->versions, name);
		if (!v) {
			char needle[KD_RECIPE_NAME_MAX + 5];
			snprintf(needle, sizeof(needle), "{{%s}}", name);
			fclose(f);
			return fail_at(c, text_line(c, needle), -EINVAL,
				       "%s: unknown variable '%s' (not in versions.yaml vars)", key,
				       name);
		}
		fputs(v, f);
		p = close_ + 2;
	}
	if (fclose(f) != 0)
		return kd_err(c->err, -ENOMEM, "out of memory");
	*ret = TAKE_PTR(out);
	return 0;
}

static int get_string(const ctx *c, struct json_object *v, const char *key, char **ret)
{
	if (!json_object_is_type(v, json_type_string) && !json_object_is_type(v, json_type_int))
		return fail_at(c, key_line(c, key), -EINVAL, "%s: expected a string, got %s%s", key,
			       kd_json_type_name(v),
			       json_object_is_type(v, json_type_double) ? " (quote it)" : "");
	return expand(c, key, json_object_get_string(v), ret);
}

static int get_strv(const ctx *c, struct json_object *v, const char *key, char ***ret)
{
	_cleanup_strv_ char **out = NULL;
	if (!json_object_is_type(v, json_type_array))
		return fail_at(c, key_line(c, key), -EINVAL, "%s: expected a list, got %s", key,
			       kd_json_type_name(v));
	size_t n = json_object_array_length(v);
	if (n > KD_RECIPE_MAX_ITEMS)
		return fail_at(c, key_line(c, key), -E2BIG, "%s: more than %u items", key,
			       KD_RECIPE_MAX_ITEMS);
	out = calloc(n + 1, sizeof(char *));
	if (!out)
		return kd_err(c->err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		int r = get_string(c, json_object_array_get_idx(v, i), key, &out[i]);
		if (r < 0)
			return r;
	}
	*ret = TAKE_PTR(out);
	return 0;
}

static int parse_object(const ctx *c, struct json_object *obj, const char *where,
			const field *table, size_t n_table, void *base);

static void source_free(kd_source *s)
{
	free(s->name);
	free(s->url);
	free(s->sha256);
	free(s->deb);
	free(s->version);
	free(s->git);
	free(s->tag);
	free(s->commit);
	free(s->tree);
}

typedef struct source_raw {
	char *url, *sha256, *file, *deb, *version, *git, *tag, *commit, *tree;
} source_raw;

static const field source_fields[] = {
	{"url", F_STRING, offsetof(source_raw, url), false},
	{"sha256", F_STRING, offsetof(source_raw, sha256), false},
	{"file", F_STRING, offsetof(source_raw, file), false},
	{"deb", F_STRING, offsetof(source_raw, deb), false},
	{"version", F_STRING, offsetof(source_raw, version), false},
	{"git", F_STRING, offsetof(source_raw, git), false},
	{"tag", F_STRING, offsetof(source_raw, tag), false},
	{"commit", F_STRING, offsetof(source_raw, commit), false},
	{"tree", F_STRING, offsetof(source_raw, tree), false},
};

/* Debian policy §5.6.1: lowercase alphanumerics, '+', '-', '.'; at least two characters,
 * starting with an alphanumeric (so never an option to apt-get). */
static bool deb_name_valid(const char *s)
{
	if (strlen(s) < 2 || strlen(s) > 128 ||
	    !((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9')))
		return false;
	return s[strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789+-.")] == '\0';
}

/* Debian policy §5.6.12: [epoch:]upstream[-revision], alphanumerics and . + ~ - :, starting
 * with a digit. */
static bool deb_version_valid(const char *s)
{
	if (!*s || strlen(s) > 128 || !(*s >= '0' && *s <= '9'))
		return false;
	return s[strspn(s,
			"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.+~-:")] ==
	       '\0';
}

static bool hex40(const char *s)
{
	return kd_sha1_hex_valid(s);
}

/* A tag: git's ref rules, kept simple: printable, no space, no "..", no leading '-'. */
static bool tag_valid(const char *s)
{
	if (!*s || *s == '-' || strlen(s) > 128 || strstr(s, ".."))
		return false;
	for (const char *p = s; *p; p++)
		if ((unsigned char)*p <= ' ' || *p == 0x7f || strchr("~^:?*[\\", *p))
			return false;
	return true;
}

static int parse_git_source(const ctx *c, const char *where, source_raw *s, kd_source *out)
{
	size_t line = text_line(c, s->git);
	if (s->url || s->deb || s->sha256 || s->version)
		return fail_at(c, line, -EINVAL,
			       "%s: a git source takes git, tag or commit, tree and file only",
			       where);
	/* http:// too: the tree id, not the transport, is what verifies the archive. */
	if ((strncmp(s->git, "https://", 8) != 0 && strncmp(s->git, "http://", 7) != 0) ||
	    strchr(s->git, '?') || strchr(s->git, '#'))
		return fail_at(c, line, -EINVAL, "%s: git: an http(s):// repository URL", where);
	if (!!s->tag == !!s->commit)
		return fail_at(c, line, -EINVAL, "%s: git needs exactly one of tag, commit", where);
	if (s->tag && !tag_valid(s->tag))
		return fail_at(c, text_line(c, s->tag), -EINVAL, "%s: tag '%s' is not a valid tag",
			       where, s->tag);
	if (s->commit && !hex40(s->commit))
		return fail_at(c, text_line(c, s->commit), -EINVAL,
			       "%s: commit: 40 lowercase hex digits", where);
	if (!s->tree || !hex40(s->tree))
		return fail_at(c, s->tree ? text_line(c, s->tree) : line, -EINVAL,
			       "%s: git needs tree: the 40-hex git tree id of that %s", where,
			       s->tag ? "tag" : "commit");
	if (!s->file)
		return fail_at(
			c, line, -EINVAL,
			"%s: git needs file: the archive's name in the cache and in a mirror",
			where);
	out->kind = KD_SOURCE_GIT;
	out->git = TAKE_PTR(s->git);
	out->tag = TAKE_PTR(s->tag);
	out->commit = TAKE_PTR(s->commit);
	out->tree = TAKE_PTR(s->tree);
	out->name = TAKE_PTR(s->file);
	return 0;
}

static int parse_source(const ctx *c, struct json_object *v, size_t idx, kd_source *out)
{
	char where[64];
	source_raw s = {0};
	int r;

	snprintf(where, sizeof(where), "sources[%zu]", idx);
	if (!json_object_is_type(v, json_type_object))
		return fail_at(c, key_line(c, "sources"), -EINVAL, "%s: expected a mapping", where);
	r = parse_object(c, v, where, source_fields, ELEMENTSOF(source_fields), &s);
	if (r >= 0 && s.git) {
		r = parse_git_source(c, where, &s, out);
		free(s.git);
		free(s.tag);
		free(s.commit);
		free(s.tree);
		free(s.file);
		*out = (kd_source){.kind = out->kind,
				   .name = out->name,
				   .git = out->git,
				   .tag = out->tag,
				   .commit = out->commit,
				   .tree = out->tree,
				   .url = s.url,
				   .sha256 = s.sha256,
				   .deb = s.deb,
				   .version = s.version};
		if (r < 0)
			return r;
		if (!kd_recipe_path_safe(out->name, false) || strchr(out->name, '/'))
			return fail_at(c, text_line(c, out->name), -EINVAL,
				       "%s: bad file name '%s'", where, out->name);
		return 0;
	}
	free(s.tag);
	free(s.commit);
	free(s.tree);
	*out = (kd_source){.url = s.url, .sha256 = s.sha256, .deb = s.deb, .version = s.version};
	if (r < 0) {
		free(s.file);
		return r;
	}
	if (!!s.url == !!s.deb) {
		free(s.file);
		return fail_at(c, key_line(c, "sources"), -EINVAL,
			       "%s: needs exactly one of url, deb, git", where);
	}
	if (s.url) {
		if (s.sha256 && strcmp(s.sha256, KD_RECIPE_UNPINNED) == 0) {
			/* Upstream sources that nobody here could hash yet: say so, not "bad hex".
			 */
			free(s.file);
			return fail_at(
				c, key_line(c, "sources"), -ENOKEY,
				"%s: sha256 of %s is not pinned ('" KD_RECIPE_UNPINNED
				"' in versions.yaml): pin it to fetch and build this component",
				where, s.url);
		}
		if (!s.sha256 || !kd_sha256_hex_valid(s.sha256)) {
			free(s.file);
			return fail_at(c, s.sha256 ? text_line(c, s.sha256) : text_line(c, s.url),
				       -EINVAL, "%s: url needs sha256: 64 lowercase hex digits",
				       where);
		}
		if (s.version) {
			free(s.file);
			return fail_at(c, text_line(c, s.url), -EINVAL,
				       "%s: version is for deb sources", where);
		}
		const char *base = strrchr(s.url, '/');
		const char *q = s.file ? s.file : base ? base + 1 : s.url;
		out->name = strndup(q, strcspn(q, "?#"));
		out->kind = KD_SOURCE_URL;
	} else {
		if (!s.version || s.sha256) {
			free(s.file);
			return fail_at(c, text_line(c, s.deb), -EINVAL,
				       "%s: deb needs an exact version and no sha256 (apt verifies "
				       "packages against the signed archive index)",
				       where);
		}
		if (!deb_name_valid(s.deb) || !deb_version_valid(s.version)) {
			free(s.file);
			return fail_at(c, text_line(c, s.deb), -EINVAL,
				       "%s: '%s=%s' is not a Debian package name and version "
				       "(policy 5.6.1, 5.6.12)",
				       where, s.deb, s.version);
		}
		if (s.file)
			out->name = strdup(s.file);
		else if (asprintf(&out->name, "%s.deb", s.deb) < 0)
			out->name = NULL;
		out->kind = KD_SOURCE_DEB;
	}
	free(s.file);
	if (!out->name)
		return kd_err(c->err, -ENOMEM, "out of memory");
	if (!kd_recipe_path_safe(out->name, false) || strchr(out->name, '/'))
		return fail_at(c, text_line(c, out->name), -EINVAL, "%s: bad file name '%s'", where,
			       out->name);
	return 0;
}

static int get_sources(const ctx *c, struct json_object *v, kd_recipe *rc)
{
	if (!json_object_is_type(v, json_type_array))
		return fail_at(c, key_line(c, "sources"), -EINVAL, "sources: expected a list");
	size_t n = json_object_array_length(v);
	if (n > KD_RECIPE_MAX_ITEMS)
		return fail_at(c, key_line(c, "sources"), -E2BIG, "sources: more than %u items",
			       KD_RECIPE_MAX_ITEMS);
	rc->sources = calloc(n ? n : 1, sizeof(kd_source));
	if (!rc->sources)
		return kd_err(c->err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		rc->n_sources = i + 1;
		int r = parse_source(c, json_object_array_get_idx(v, i), i, &rc->sources[i]);
		if (r < 0)
			return r;
		for (size_t j = 0; j < i; j++)
			if (strcmp(rc->sources[j].name, rc->sources[i].name) == 0)
				return fail_at(c, text_line(c, rc->sources[i].name), -EINVAL,
					       "sources: two sources named '%s'",
					       rc->sources[i].name);
	}
	return 0;
}

static int get_vars(const ctx *c, struct json_object *v, kd_versions *vs)
{
	if (!json_object_is_type(v, json_type_object))
		return fail_at(c, key_line(c, "vars"), -EINVAL, "vars: expected a mapping");
	size_t n = (size_t)json_object_object_length(v);
	if (n > KD_RECIPE_MAX_ITEMS)
		return fail_at(c, key_line(c, "vars"), -E2BIG, "vars: more than %u",
			       KD_RECIPE_MAX_ITEMS);
	vs->vars = calloc(n ? n : 1, sizeof(kd_var));
	if (!vs->vars)
		return kd_err(c->err, -ENOMEM, "out of memory");
	json_object_object_foreach(v, key, val)
	{
		if (!name_valid(key))
			return fail_at(c, key_line(c, key), -EINVAL, "vars: bad name '%s'", key);
		if (!json_object_is_type(val, json_type_string) &&
		    !json_object_is_type(val, json_type_int))
			return fail_at(c, key_line(c, key), -EINVAL,
				       "vars.%s: expected a string, got %s (quote it)", key,
				       kd_json_type_name(val));
		kd_var *x = &vs->vars[vs->n_vars++];
		x->name = strdup(key);
		x->value = strdup(json_object_get_string(val));
		if (!x->name || !x->value)
			return kd_err(c->err, -ENOMEM, "out of memory");
	}
	return 0;
}

static int cmp_shim(const void *a, const void *b)
{
	return strcmp(((const kd_shim_map *)a)->name, ((const kd_shim_map *)b)->name);
}

static int get_shims(const ctx *c, struct json_object *v, kd_shims *s)
{
	if (!json_object_is_type(v, json_type_object))
		return fail_at(c, key_line(c, "shims"), -EINVAL, "shims: expected a mapping");
	size_t n = (size_t)json_object_object_length(v);
	if (n == 0 || n > KD_RECIPE_MAX_ITEMS)
		return fail_at(c, key_line(c, "shims"), -EINVAL, "shims: need 1 to %u",
			       KD_RECIPE_MAX_ITEMS);
	s->shims = calloc(n, sizeof(kd_shim_map));
	if (!s->shims)
		return kd_err(c->err, -ENOMEM, "out of memory");
	json_object_object_foreach(v, key, val)
	{
		kd_shim_map *m = &s->shims[s->n_shims++];
		if (!(m->name = strdup(key)))
			return kd_err(c->err, -ENOMEM, "out of memory");
		if (!name_valid(key))
			return fail_at(c, key_line(c, key), -EINVAL, "shims: bad shim name '%s'",
				       key);
		int r = get_strv(c, val, key, &m->components);
		if (r < 0)
			return r;
		if (!m->components[0])
			return fail_at(c, key_line(c, key), -EINVAL, "shims.%s: no components",
				       key);
		for (char **p = m->components; *p; p++) {
			if (!name_valid(*p))
				return fail_at(c, key_line(c, key), -EINVAL,
					       "shims.%s: bad component name '%s'", key, *p);
			if (!kd_strv_find(s->components, *p) &&
			    kd_strv_push(&s->components, *p) < 0)
				return kd_err(c->err, -ENOMEM, "out of memory");
		}
	}
	qsort(s->shims, s->n_shims, sizeof(kd_shim_map), cmp_shim);
	kd_strv_sort(s->components);
	return 0;
}

/* upstream_only: shim -> architecture -> upstream's component names (its
 * shim-components.json), for the shims upstream offers that no recipe here builds. Only the
 * names are kept; the rest is checked for shape. */
static int get_upstream_only(const ctx *c, struct json_object *v, kd_shims *s)
{
	static const char *const arches[] = {"x86_64", "aarch64", "s390x", "ppc64le"};

	if (!json_object_is_type(v, json_type_object))
		return fail_at(c, key_line(c, "upstream_only"), -EINVAL,
			       "upstream_only: expected a mapping");
	if ((size_t)json_object_object_length(v) > KD_RECIPE_MAX_ITEMS)
		return fail_at(c, key_line(c, "upstream_only"), -E2BIG,
			       "upstream_only: more than %u shims", KD_RECIPE_MAX_ITEMS);
	json_object_object_foreach(v, key, val)
	{
		if (!name_valid(key))
			return fail_at(c, key_line(c, key), -EINVAL,
				       "upstream_only: bad shim name '%s'", key);
		if (!json_object_is_type(val, json_type_object) ||
		    json_object_object_length(val) == 0)
			return fail_at(c, key_line(c, key), -EINVAL,
				       "upstream_only.%s: expected a mapping of architecture to "
				       "components",
				       key);
		json_object_object_foreach(val, arch, comps)
		{
			bool known = false;
			for (size_t i = 0; i < ELEMENTSOF(arches); i++)
				known |= strcmp(arch, arches[i]) == 0;
			if (!known)
				return fail_at(c, key_line(c, arch), -EINVAL,
					       "upstream_only.%s: unknown architecture '%s' (use "
					       "x86_64, aarch64, s390x or ppc64le)",
					       key, arch);
			_cleanup_strv_ char **names = NULL;
			int r = get_strv(c, comps, arch, &names);
			if (r < 0)
				return r;
			for (char **p = names; *p; p++)
				if (!name_valid(*p))
					return fail_at(c, key_line(c, arch), -EINVAL,
						       "upstream_only.%s.%s: bad component name "
						       "'%s'",
						       key, arch, *p);
		}
		if (kd_strv_push(&s->upstream_only, key) < 0)
			return kd_err(c->err, -ENOMEM, "out of memory");
	}
	kd_strv_sort(s->upstream_only);
	return 0;
}

static int parse_object(const ctx *c, struct json_object *obj, const char *where,
			const field *table, size_t n_table, void *base)
{
	int r;

	if (!json_object_is_type(obj, json_type_object))
		return fail_at(c, 0, -EINVAL, "%s: expected a mapping, got %s", where,
			       kd_json_type_name(obj));
	json_object_object_foreach(obj, key, val)
	{
		const field *f = NULL;
		for (size_t i = 0; i < n_table; i++)
			if (strcmp(table[i].key, key) == 0)
				f = &table[i];
		if (!f) {
			_cleanup_free_ char *known = NULL;
			size_t klen = 0;
			FILE *m = open_memstream(&known, &klen);
			for (size_t i = 0; m && i < n_table; i++)
				fprintf(m, "%s%s", i ? ", " : "", table[i].key);
			if (m)
				fclose(m);
			return fail_at(c, key_line(c, key), -EINVAL,
				       "%s: unknown key '%s' (known: %s)", where, key,
				       known ? known : "?");
		}
		if (!val)
			continue; /* null: as if absent */
		void *dst = (char *)base + f->offset;
		switch (f->type) {
		case F_STRING:
			r = get_string(c, val, key, (char **)dst);
			break;
		case F_STRV:
			r = get_strv(c, val, key, (char ***)dst);
			break;
		case F_BOOL:
			if (!json_object_is_type(val, json_type_boolean))
				return fail_at(c, key_line(c, key), -EINVAL,
					       "%s: expected true or false, got %s", key,
					       kd_json_type_name(val));
			*(bool *)dst = json_object_get_boolean(val);
			r = 0;
			break;
		case F_INT64:
			if (!json_object_is_type(val, json_type_int))
				return fail_at(c, key_line(c, key), -EINVAL,
					       "%s: expected an integer, got %s", key,
					       kd_json_type_name(val));
			*(int64_t *)dst = json_object_get_int64(val);
			r = 0;
			break;
		case F_SOURCES:
			r = get_sources(c, val, base);
			break;
		case F_VARS:
			r = get_vars(c, val, base);
			break;
		case F_SHIMS:
			r = get_shims(c, val, base);
			break;
		case F_UPSTREAM_ONLY:
			r = get_upstream_only(c, val, base);
			break;
		default:
			r = -EINVAL;
		}
		if (r < 0)
			return r;
	}
	for (size_t i = 0; i < n_table; i++) {
		struct json_object *v = NULL;
		if (table[i].required && (!json_object_object_get_ex(obj, table[i].key, &v) || !v))
			return fail_at(c, 0, -EINVAL, "%s: missing required key '%s'", where,
				       table[i].key);
	}
	return 0;
}

static int read_yaml(const char *data, size_t len, const char *name, struct json_object **ret,
		     kd_error *err)
{
	if (len > KD_RECIPE_MAX_SIZE)
		return kd_err(err, -EFBIG, "%s: larger than %u bytes", name, KD_RECIPE_MAX_SIZE);
	int r = kd_yaml_parse(data, len, name, ret, err);
	if (r < 0)
		return r;
	if (!*ret)
		return kd_err(err, -EINVAL, "%s: empty", name);
	return 0;
}

static int slurp(const char *path, char **ret, size_t *ret_len, kd_error *err)
{
	_cleanup_fclose_ FILE *f = fopen(path, "re");
	_cleanup_free_ char *buf = NULL;
	size_t n;
	if (!f)
		return kd_err_errno(err, negative_errno(), "open %s", path);
	buf = malloc(KD_RECIPE_MAX_SIZE + 2);
	if (!buf)
		return kd_err(err, -ENOMEM, "out of memory");
	n = fread(buf, 1, KD_RECIPE_MAX_SIZE + 1, f);
	if (ferror(f))
		return kd_err_errno(err, -EIO, "read %s", path);
	if (n > KD_RECIPE_MAX_SIZE)
		return kd_err(err, -EFBIG, "%s: larger than %u bytes", path, KD_RECIPE_MAX_SIZE);
	buf[n] = '\0';
	*ret = TAKE_PTR(buf);
	*ret_len = n;
	return 0;
}

void kd_versions_free(kd_versions *v)
{
	if (!v)
		return;
	for (size_t i = 0; i < v->n_vars; i++) {
		free(v->vars[i].name);
		free(v->vars[i].value);
	}
	free(v->vars);
	free(v->version);
	free(v->path);
	free(v->bytes);
	free(v);
}

static const field versions_fields[] = {
	{"source_date_epoch", F_INT64, offsetof(kd_versions, source_date_epoch), true},
	{"version", F_STRING, offsetof(kd_versions, version), true},
	{"vars", F_VARS, 0, false},
};

int kd_versions_load(const char *path, kd_versions **ret, kd_error *err)
{
	_cleanup_versions_ kd_versions *v = calloc(1, sizeof(*v));
	_cleanup_json_ struct json_object *root = NULL;
	int r;

	if (!v || !(v->path = strdup(path)))
		return kd_err(err, -ENOMEM, "out of memory");
	v->source_date_epoch = -1;
	if ((r = slurp(path, &v->bytes, &v->len, err)) < 0 ||
	    (r = read_yaml(v->bytes, v->len, path, &root, err)) < 0)
		return r;
	ctx c = {.name = path, .text = v->bytes, .len = v->len, .versions = NULL, .err = err};
	if ((r = parse_object(&c, root, path, versions_fields, ELEMENTSOF(versions_fields), v)) < 0)
		return r;
	if (v->source_date_epoch < 0 || v->source_date_epoch > 253402300799LL)
		return fail_at(&c, key_line(&c, "source_date_epoch"), -EINVAL,
			       "source_date_epoch: out of range");
	*ret = TAKE_PTR(v);
	return 0;
}

void kd_recipe_free(kd_recipe *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n_sources; i++)
		source_free(&r->sources[i]);
	free(r->sources);
	kd_strv_free(r->inputs);
	kd_strv_free(r->files);
	kd_strv_free(r->steps);
	kd_strv_free(r->outputs);
	kd_strv_free(r->fetch);
	kd_strv_free(r->toolchains);
	free(r->path);
	free(r->name);
	free(r->version);
	free(r->description);
	free(r->bytes);
	free(r);
}

static const field recipe_fields[] = {
	{"name", F_STRING, offsetof(kd_recipe, name), true},
	{"version", F_STRING, offsetof(kd_recipe, version), true},
	{"description", F_STRING, offsetof(kd_recipe, description), false},
	{"inputs", F_STRV, offsetof(kd_recipe, inputs), false},
	{"files", F_STRV, offsetof(kd_recipe, files), false},
	{"sources", F_SOURCES, 0, false},
	{"fetch", F_STRV, offsetof(kd_recipe, fetch), false},
	{"toolchains", F_STRV, offsetof(kd_recipe, toolchains), false},
	{"steps", F_STRV, offsetof(kd_recipe, steps), true},
	{"outputs", F_STRV, offsetof(kd_recipe, outputs), true},
	{"network", F_BOOL, offsetof(kd_recipe, network), false},
};

static int recipe_validate(const ctx *c, kd_recipe *rc)
{
	if (!name_valid(rc->name))
		return fail_at(c, key_line(c, "name"), -EINVAL,
			       "name: '%s' is not a valid component name ([a-z0-9][a-z0-9._-]*)",
			       rc->name);
	if (!*rc->version || strlen(rc->version) > 128)
		return fail_at(c, key_line(c, "version"), -EINVAL, "version: 1 to 128 characters");
	if (!rc->steps[0])
		return fail_at(c, key_line(c, "steps"), -EINVAL, "steps: at least one step");
	if (!rc->outputs[0])
		return fail_at(c, key_line(c, "outputs"), -EINVAL, "outputs: at least one output");
	for (char **o = rc->outputs; *o; o++) {
		size_t plen = strlen(KD_RECIPE_OUTPUT_PREFIX);
		if (strncmp(*o, KD_RECIPE_OUTPUT_PREFIX, plen) != 0 || !(*o)[plen] ||
		    !kd_recipe_path_safe(*o, true))
			return fail_at(c, text_line(c, *o), -EINVAL,
				       "outputs: '%s' is not a path under %s", *o,
				       KD_RECIPE_OUTPUT_PREFIX);
		for (char **p = rc->outputs; p < o; p++)
			if (strcmp(*p, *o) == 0)
				return fail_at(c, text_line(c, *o), -EINVAL,
					       "outputs: '%s' listed twice", *o);
	}
	for (char **f = rc->files; f && *f; f++)
		if (!kd_recipe_path_safe(*f, false))
			return fail_at(c, text_line(c, *f), -EINVAL,
				       "files: '%s' is not a safe path relative to artifacts/", *f);
	for (char **i = rc->inputs; i && *i; i++) {
		if (!name_valid(*i))
			return fail_at(c, text_line(c, *i), -EINVAL, "inputs: bad component '%s'",
				       *i);
		if (strcmp(*i, rc->name) == 0)
			return fail_at(c, text_line(c, *i), -EINVAL,
				       "inputs: a component cannot be its own input");
	}
	for (char **t = rc->toolchains; t && *t; t++)
		if (strcmp(*t, "rust") != 0 && strcmp(*t, "go") != 0)
			return fail_at(c, text_line(c, *t), -EINVAL,
				       "toolchains: '%s' is not one of rust, go", *t);
	if (rc->fetch && rc->network)
		return fail_at(c, key_line(c, "fetch"), -EINVAL,
			       "fetch: only for recipes whose steps run without the network");
	return 0;
}

int kd_recipe_parse(const char *data, size_t len, const char *name, const kd_versions *versions,
		    kd_recipe **ret, kd_error *err)
{
	_cleanup_recipe_ kd_recipe *rc = calloc(1, sizeof(*rc));
	_cleanup_json_ struct json_object *root = NULL;
	int r;

	if (!rc || !(rc->path = strdup(name)) || !(rc->bytes = malloc(len + 1)))
		return kd_err(err, -ENOMEM, "out of memory");
	memcpy(rc->bytes, data, len);
	rc->bytes[len] = '\0';
	rc->len = len;
	if ((r = read_yaml(data, len, name, &root, err)) < 0)
		return r;
	ctx c = {.name = name, .text = rc->bytes, .len = len, .versions = versions, .err = err};
	if ((r = parse_object(&c, root, "recipe", recipe_fields, ELEMENTSOF(recipe_fields), rc)) <
		    0 ||
	    (r = recipe_validate(&c, rc)) < 0)
		return r;
	*ret = TAKE_PTR(rc);
	return 0;
}

int kd_recipe_load(const char *path, const kd_versions *versions, kd_recipe **ret, kd_error *err)
{
	_cleanup_free_ char *data = NULL;
	_cleanup_recipe_ kd_recipe *rc = NULL;
	size_t len;
	int r;

	if ((r = slurp(path, &data, &len, err)) < 0 ||
	    (r = kd_recipe_parse(data, len, path, versions, &rc, err)) < 0)
		return r;
	/* The file name is the component name: one place to look for a component's recipe. */
	const char *base = strrchr(path, '/');
	base = base ? base + 1 : path;
	size_t n = strlen(rc->name);
	if (strncmp(base, rc->name, n) != 0 || strcmp(base + n, ".yaml") != 0)
		return kd_err(err, -EINVAL, "%s: name: '%s' does not match the file name", path,
			      rc->name);
	*ret = TAKE_PTR(rc);
	return 0;
}

void kd_shims_free(kd_shims *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n_shims; i++) {
		free(s->shims[i].name);
		kd_strv_free(s->shims[i].components);
	}
	free(s->shims);
	kd_strv_free(s->components);
	kd_strv_free(s->upstream_only);
	kd_strv_free(s->debug_tools);
	kd_strv_free(s->payload);
	free(s);
}

static const field shims_fields[] = {
	{"shims", F_SHIMS, 0, true},
	{"upstream_only", F_UPSTREAM_ONLY, 0, false},
	{"debug_tools", F_STRV, offsetof(kd_shims, debug_tools), false},
};

int kd_shims_load(const char *path, kd_shims **ret, kd_error *err)
{
	_cleanup_shims_ kd_shims *s = calloc(1, sizeof(*s));
	_cleanup_free_ char *data = NULL;
	_cleanup_json_ struct json_object *root = NULL;
	size_t len;
	int r;

	if (!s)
		return kd_err(err, -ENOMEM, "out of memory");
	if ((r = slurp(path, &data, &len, err)) < 0 ||
	    (r = read_yaml(data, len, path, &root, err)) < 0)
		return r;
	ctx c = {.name = path, .text = data, .len = len, .err = err};
	if ((r = parse_object(&c, root, path, shims_fields, ELEMENTSOF(shims_fields), s)) < 0)
		return r;
	for (char **u = s->upstream_only; u && *u; u++)
		for (size_t i = 0; i < s->n_shims; i++)
			if (strcmp(s->shims[i].name, *u) == 0)
				return fail_at(&c, key_line(&c, *u), -EINVAL,
					       "upstream_only.%s: built here (shims.%s): remove it "
					       "from upstream_only",
					       *u, *u);
	/* debug_tools: payload components that no shim lists; kata-deploy installs them only
	 * with debug (kata-ctl, upstream's DEBUG_TOOL_COMPONENTS). */
	if (!(s->payload = kd_strv_copy(s->components)))
		return kd_err(err, -ENOMEM, "out of memory");
	for (char **d = s->debug_tools; d && *d; d++) {
		if (!name_valid(*d))
			return fail_at(&c, key_line(&c, "debug_tools"), -EINVAL,
				       "debug_tools: bad component name '%s'", *d);
		if (kd_strv_find(s->components, *d))
			return fail_at(&c, key_line(&c, "debug_tools"), -EINVAL,
				       "debug_tools: %s is a shim's component", *d);
		if (kd_strv_find(s->payload, *d))
			return fail_at(&c, key_line(&c, "debug_tools"), -EINVAL,
				       "debug_tools: %s listed twice", *d);
		if (kd_strv_push(&s->payload, *d) < 0)
			return kd_err(err, -ENOMEM, "out of memory");
	}
	kd_strv_sort(s->payload);
	*ret = TAKE_PTR(s);
	return 0;
}
