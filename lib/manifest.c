/* The payload manifest: canonical serialisation, lookups, shim → component selection and the
 * helpers shared with the reader (manifest-read.c) and the spec parser (payload-pack.c). */
#include <inttypes.h>
#include <string.h>

#include "fsroot.h"
#include "json.h"
#include "payload-internal.h"

static void strv_free(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

void kd_manifest_free(kd_manifest *m)
{
	if (!m)
		return;
	free(m->version);
	free(m->arch);
	for (size_t i = 0; i < m->n_components; i++) {
		free(m->components[i].name);
		free(m->components[i].version);
	}
	free(m->components);
	free(m->files);
	kd_strpool_free(m->strings);
	for (size_t i = 0; i < m->n_shims; i++) {
		free(m->shims[i].name);
		strv_free(m->shims[i].components, m->shims[i].n_components);
	}
	free(m->shims);
	free(m->signing_key);
	free(m);
}

const char *kd_file_type_name(kd_file_type t)
{
	switch (t) {
	case KD_FILE_REG:
		return "file";
	case KD_FILE_DIR:
		return "dir";
	case KD_FILE_SYMLINK:
		return "symlink";
	case KD_FILE_HARDLINK:
		return "hardlink";
	}
	return "?";
}

static int cmp_path_key(const void *key, const void *elem)
{
	return strcmp(key, ((const kd_pfile *)elem)->path);
}

const kd_pfile *kd_manifest_find(const kd_manifest *m, const char *path)
{
	if (!m || !m->n_files)
		return NULL;
	return bsearch(path, m->files, m->n_files, sizeof(kd_pfile), cmp_path_key);
}

const kd_shim *kd_manifest_find_shim(const kd_manifest *m, const char *name)
{
	for (size_t i = 0; i < m->n_shims; i++)
		if (strcmp(m->shims[i].name, name) == 0)
			return &m->shims[i];
	return NULL;
}

ssize_t kd_manifest_component(const kd_manifest *m, const char *name)
{
	for (size_t i = 0; i < m->n_components; i++)
		if (strcmp(m->components[i].name, name) == 0)
			return (ssize_t)i;
	return -1;
}

int kd_manifest_select(const kd_manifest *m, const char *const *shims, size_t n_shims, bool *mask,
		       kd_error *err)
{
	for (size_t i = 0; i < m->n_components; i++)
		mask[i] = false;
	if (!shims) {
		for (size_t i = 0; i < m->n_shims; i++)
			for (size_t j = 0; j < m->shims[i].n_components; j++)
				mask[kd_manifest_component(m, m->shims[i].components[j])] = true;
		return 0;
	}
	for (size_t i = 0; i < n_shims; i++) {
		const kd_shim *s = kd_manifest_find_shim(m, shims[i]);
		if (!s) {
			char known[512] = "";
			size_t off = 0;
			for (size_t j = 0; j < m->n_shims && off < sizeof(known); j++)
				off += (size_t)snprintf(known + off, sizeof(known) - off, "%s%s",
							j ? ", " : "", m->shims[j].name);
			return kd_err(err, -ENOENT, "unknown shim '%s' (this payload has: %s)",
				      shims[i], m->n_shims ? known : "none");
		}
		for (size_t j = 0; j < s->n_components; j++)
			mask[kd_manifest_component(m, s->components[j])] = true;
	}
	return 0;
}

int kd_manifest_dup_name(const char *s, const char *what, char **ret, kd_error *err)
{
	if (!*s || strlen(s) > MAX_NAME)
		return kd_err(err, -EINVAL, "%s: must be 1 to %u bytes", what, MAX_NAME);
	for (const char *p = s; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == '/' || *p == 0x7f)
			return kd_err(err, -EINVAL, "%s: invalid character in '%s'", what, s);
	*ret = strdup(s);
	return *ret ? 0 : kd_err(err, -ENOMEM, "out of memory");
}

int kd_manifest_cmp_shim(const void *a, const void *b)
{
	return strcmp(((const kd_shim *)a)->name, ((const kd_shim *)b)->name);
}

int kd_manifest_parse_shims(kd_manifest *m, struct json_object *obj, kd_error *err)
{
	char where[KD_JSON_PATH_MAX], ewhere[KD_JSON_PATH_MAX];
	size_t n = (size_t)json_object_object_length(obj);
	int r;

	if (n > MAX_SHIMS)
		return kd_err(err, -E2BIG, "shims: more than %u", MAX_SHIMS);
	m->shims = calloc(n ? n : 1, sizeof(kd_shim));
	if (!m->shims)
		return kd_err(err, -ENOMEM, "out of memory");
	json_object_object_foreach(obj, key, val)
	{
		kd_shim *s = &m->shims[m->n_shims++];
		kd_json_path_key(where, sizeof(where), "shims", key);
		if ((r = kd_manifest_dup_name(key, where, &s->name, err)) < 0)
			return r;
		if (!json_object_is_type(val, json_type_array))
			return kd_err(err, -EINVAL, "%s: expected array, got %s", where,
				      kd_json_type_name(val));
		size_t k = json_object_array_length(val);
		if (k > MAX_SPEC_COMPONENTS)
			return kd_err(err, -E2BIG, "%s: too many components", where);
		s->components = calloc(k ? k : 1, sizeof(char *));
		if (!s->components)
			return kd_err(err, -ENOMEM, "out of memory");
		for (size_t i = 0; i < k; i++) {
			const char *c;
			kd_json_path_index(ewhere, sizeof(ewhere), where, i);
			if ((r = kd_json_as_string(json_object_array_get_idx(val, i), ewhere, &c,
						   err)) < 0)
				return r;
			if (kd_manifest_component(m, c) < 0)
				return kd_err(err, -EINVAL, "%s: unknown component '%s'", ewhere,
					      c);
			s->components[s->n_components] = strdup(c);
			if (!s->components[s->n_components++])
				return kd_err(err, -ENOMEM, "out of memory");
		}
	}
	qsort(m->shims, m->n_shims, sizeof(kd_shim), kd_manifest_cmp_shim);
	return 0;
}

/* The canonical JSON of a manifest (what kd_json_format(KD_JSON_CANONICAL) would print for it:
 * keys sorted bytewise, no whitespace, minimal string escapes), written directly. A json-c tree
 * of the manifest would cost about 1 KiB per file, the peak of an install's memory again. The
 * text is measured first (out->s NULL), then written into one exact allocation. */
typedef struct out {
	char *s; /* NULL: only count */
	size_t len;
} out;

static void put(out *o, const char *s, size_t n)
{
	if (o->s)
		memcpy(o->s + o->len, s, n);
	o->len += n;
}

static void puts_(out *o, const char *s)
{
	put(o, s, strlen(s));
}

/* The escapes of lib/json.c's canonical writer. */
static void put_string(out *o, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	size_t start = 0, i;

	put(o, "\"", 1);
	for (i = 0; s[i]; i++) {
		unsigned char c = (unsigned char)s[i];
		char esc[7] = {'\\', 0};
		size_t n = 2;

		switch (c) {
		case '"':
		case '\\':
			esc[1] = (char)c;
			break;
		case '\b':
			esc[1] = 'b';
			break;
		case '\f':
			esc[1] = 'f';
			break;
		case '\n':
			esc[1] = 'n';
			break;
		case '\r':
			esc[1] = 'r';
			break;
		case '\t':
			esc[1] = 't';
			break;
		default:
			if (c >= 0x20)
				continue;
			snprintf(esc, sizeof(esc), "\\u00%c%c", hex[c >> 4], hex[c & 0xf]);
			n = 6;
		}
		put(o, s + start, i - start);
		put(o, esc, n);
		start = i + 1;
	}
	put(o, s + start, i - start);
	put(o, "\"", 1);
}

static void put_key(out *o, const char *sep, const char *key)
{
	puts_(o, sep);
	put_string(o, key);
	put(o, ":", 1);
}

static void put_file(out *o, const kd_pfile *f)
{
	char num[32], hex[KD_SHA256_HEX_LEN + 1];

	snprintf(num, sizeof(num), "\"%04o\"", (unsigned)f->mode & 07777);
	put_key(o, "{", "mode");
	puts_(o, num);
	put_key(o, ",", "path");
	put_string(o, f->path);
	if (f->type == KD_FILE_REG) {
		kd_hex(f->sha256, sizeof(f->sha256), hex);
		put_key(o, ",", "sha256");
		put_string(o, hex);
		snprintf(num, sizeof(num), "%" PRIu64, f->size);
		put_key(o, ",", "size");
		puts_(o, num);
	}
	if (f->type == KD_FILE_SYMLINK || f->type == KD_FILE_HARDLINK) {
		put_key(o, ",", "target");
		put_string(o, f->target);
	}
	put_key(o, ",", "type");
	put_string(o, kd_file_type_name(f->type));
	put(o, "}", 1);
}

static void put_manifest(out *o, const kd_manifest *m)
{
	char num[32];

	put_key(o, "{", "arch");
	put_string(o, m->arch);
	put_key(o, ",", "components");
	for (size_t i = 0; i < m->n_components; i++) {
		const kd_component *c = &m->components[i];
		const char *sep = "[";
		put(o, i ? ",{" : "[{", 2);
		if (m->format >= 2) {
			put_key(o, "", "blob_sha256");
			put_string(o, c->blob_sha256);
			snprintf(num, sizeof(num), "%" PRIu64, c->blob_size);
			put_key(o, ",", "blob_size");
			puts_(o, num);
			put(o, ",", 1);
		}
		put_key(o, "", "files");
		for (size_t j = 0; j < m->n_files; j++)
			if (m->files[j].component == i) {
				puts_(o, sep);
				put_file(o, &m->files[j]);
				sep = ",";
			}
		puts_(o, *sep == '[' ? "[]" : "]");
		put_key(o, ",", "name");
		put_string(o, c->name);
		if (m->format >= 2) {
			snprintf(num, sizeof(num), "%" PRIu64, c->tar_size);
			put_key(o, ",", "tar_size");
			puts_(o, num);
		}
		put_key(o, ",", "version");
		put_string(o, c->version);
		put(o, "}", 1);
	}
	puts_(o, m->n_components ? "]" : "[]");
	snprintf(num, sizeof(num), "%d", m->format);
	put_key(o, ",", "format");
	puts_(o, num);
	put_key(o, ",", "shims");
	put(o, "{", 1);
	for (size_t i = 0; i < m->n_shims; i++) {
		put_key(o, i ? "," : "", m->shims[i].name);
		put(o, "[", 1);
		for (size_t j = 0; j < m->shims[i].n_components; j++) {
			puts_(o, j ? "," : "");
			put_string(o, m->shims[i].components[j]);
		}
		put(o, "]", 1);
	}
	put(o, "}", 1);
	if (m->signing_key) {
		put_key(o, ",", "signing_key");
		put_string(o, m->signing_key);
	}
	put_key(o, ",", "version");
	put_string(o, m->version);
	put(o, "}", 1);
}

int kd_manifest_to_json(const kd_manifest *m, char **ret_json, kd_error *err)
{
	out o = {0};

	put_manifest(&o, m);
	o.s = malloc(o.len + 1);
	if (!o.s)
		return kd_err(err, -ENOMEM, "out of memory");
	o.len = 0;
	put_manifest(&o, m);
	o.s[o.len] = '\0';
	*ret_json = o.s;
	return 0;
}

/* Mark the manifest entries to extract: those of selected components, and every directory
 * above one of them (directories are shared between components). */
int kd_manifest_select_files(const kd_manifest *m, const bool *mask, bool **ret)
{
	bool *sel = calloc(m->n_files ? m->n_files : 1, sizeof(bool));
	char path[KD_PATH_MAX + 1];

	if (!sel)
		return -ENOMEM;
	for (size_t i = 0; i < m->n_files; i++) {
		const kd_pfile *f = &m->files[i];
		if (mask && !mask[f->component])
			continue;
		sel[i] = true;
		snprintf(path, sizeof(path), "%s", f->path);
		for (char *s; (s = strrchr(path, '/'));) {
			*s = '\0';
			const kd_pfile *d = kd_manifest_find(m, path);
			if (!d || sel[d - m->files])
				break;
			sel[d - m->files] = true;
		}
	}
	*ret = sel;
	return 0;
}
