/* The payload manifest: parsing with every validation rule of docs/PAYLOAD.md, canonical
 * serialisation, lookups and shim → component selection. */
#include <string.h>

#include "digest.h"
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
	for (size_t i = 0; i < m->n_files; i++) {
		free(m->files[i].path);
		free(m->files[i].target);
	}
	free(m->files);
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

static int file_type_from(const char *s, kd_file_type *ret)
{
	static const kd_file_type all[] = {KD_FILE_REG, KD_FILE_DIR, KD_FILE_SYMLINK,
					   KD_FILE_HARDLINK};
	for (size_t i = 0; i < ELEMENTSOF(all); i++)
		if (strcmp(s, kd_file_type_name(all[i])) == 0) {
			*ret = all[i];
			return 0;
		}
	return -EINVAL;
}

static int cmp_pfile(const void *a, const void *b)
{
	return strcmp(((const kd_pfile *)a)->path, ((const kd_pfile *)b)->path);
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

/* Parse "0755": octal digits only, at most 07777. */
static int parse_mode(const char *s, mode_t *ret)
{
	unsigned v = 0;
	size_t n = strlen(s);

	if (n == 0 || n > 5)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '7')
			return -EINVAL;
		v = v * 8 + (unsigned)(s[i] - '0');
	}
	if (v > 07777)
		return -EINVAL;
	*ret = (mode_t)v;
	return 0;
}

/* Does the relative link text, placed at path (relative to the tree), stay inside the tree
 * when resolved lexically? */
static bool link_stays_inside(const char *path, const char *target)
{
	long depth = 0;
	const char *p, *c;

	if (!*target || target[0] == '/')
		return false;
	for (p = path; (c = strchr(p, '/')); p = c + 1)
		depth++;
	for (p = target; *p; p = *c ? c + 1 : c) {
		c = strchrnul(p, '/');
		size_t n = (size_t)(c - p);
		if (n == 0 || (n == 1 && p[0] == '.'))
			continue;
		if (n == 2 && p[0] == '.' && p[1] == '.') {
			if (--depth < 0)
				return false;
		} else {
			depth++;
		}
	}
	return true;
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

static int parse_file(struct json_object *o, const char *where, size_t comp, kd_pfile *f,
		      kd_error *err)
{
	const char *path, *type, *mode, *sha = NULL, *target = NULL;
	uint64_t size = 0;
	int r;

	if ((r = kd_json_as_object(o, where, err)) < 0 ||
	    (r = kd_json_get_string(o, where, "path", true, &path, err)) < 0 ||
	    (r = kd_json_get_string(o, where, "type", true, &type, err)) < 0 ||
	    (r = kd_json_get_string(o, where, "mode", true, &mode, err)) < 0 ||
	    (r = kd_json_get_uint64(o, where, "size", false, &size, err)) < 0 ||
	    (r = kd_json_get_string(o, where, "sha256", false, &sha, err)) < 0 ||
	    (r = kd_json_get_string(o, where, "target", false, &target, err)) < 0)
		return r;
	f->component = comp;
	if (!kd_path_is_safe(path) || strlen(path) > KD_PATH_MAX - PREFIX_LEN)
		return kd_err(err, -EINVAL, "%s: unsafe path '%s'", where, path);
	f->path = strdup(path);
	if (!f->path)
		return kd_err(err, -ENOMEM, "out of memory");
	if (file_type_from(type, &f->type) < 0)
		return kd_err(err, -EINVAL, "%s: '%s': unknown type '%s'", where, path, type);
	if (parse_mode(mode, &f->mode) < 0)
		return kd_err(err, -EINVAL, "%s: '%s': invalid mode '%s'", where, path, mode);
	if (f->mode & 07000)
		return kd_err(err, -EPERM, "%s: '%s': mode %04o has setuid/setgid/sticky bits",
			      where, path, (unsigned)f->mode);
	if (f->type == KD_FILE_REG) {
		if (!sha || !kd_sha256_hex_valid(sha))
			return kd_err(err, -EINVAL,
				      "%s: '%s': sha256 must be 64 lowercase hex digits", where,
				      path);
		if (size > KD_PAYLOAD_MAX_ENTRY_SIZE)
			return kd_err(err, -EFBIG,
				      "%s: '%s': size %llu exceeds the limit of %llu bytes", where,
				      path, (unsigned long long)size,
				      (unsigned long long)KD_PAYLOAD_MAX_ENTRY_SIZE);
		f->size = size;
		memcpy(f->sha256, sha, sizeof(f->sha256));
	} else if (sha || size) {
		return kd_err(err, -EINVAL, "%s: '%s': a %s has no size or sha256", where, path,
			      type);
	}
	if (f->type == KD_FILE_SYMLINK || f->type == KD_FILE_HARDLINK) {
		if (!target || !*target || strlen(target) > KD_PATH_MAX)
			return kd_err(err, -EINVAL, "%s: '%s': %s needs a target", where, path,
				      type);
		if (f->type == KD_FILE_SYMLINK && !link_stays_inside(path, target))
			return kd_err(err, -EPERM, "%s: symlink '%s' -> '%s' escapes %s", where,
				      path, target, PREFIX);
		f->target = strdup(target);
		if (!f->target)
			return kd_err(err, -ENOMEM, "out of memory");
	} else if (target) {
		return kd_err(err, -EINVAL, "%s: '%s': a %s has no target", where, path, type);
	}
	return 0;
}

static int parse_components(kd_manifest *m, struct json_object *arr, kd_error *err)
{
	size_t n = json_object_array_length(arr), total = 0;
	char where[KD_JSON_PATH_MAX], fwhere[KD_JSON_PATH_MAX];
	int r;

	if (n > MAX_SPEC_COMPONENTS)
		return kd_err(err, -E2BIG, "components: more than %u", MAX_SPEC_COMPONENTS);
	m->components = calloc(n ? n : 1, sizeof(kd_component));
	if (!m->components)
		return kd_err(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		struct json_object *c = json_object_array_get_idx(arr, i), *files;
		const char *name, *version;
		kd_json_path_index(where, sizeof(where), "components", i);
		if ((r = kd_json_as_object(c, where, err)) < 0 ||
		    (r = kd_json_get_string(c, where, "name", true, &name, err)) < 0 ||
		    (r = kd_json_get_string(c, where, "version", true, &version, err)) < 0 ||
		    (r = kd_json_get_array(c, where, "files", true, &files, err)) < 0)
			return r;
		if (kd_manifest_component(m, name) >= 0)
			return kd_err(err, -EINVAL, "%s: duplicate component '%s'", where, name);
		m->n_components++;
		if ((r = kd_manifest_dup_name(name, where, &m->components[i].name, err)) < 0 ||
		    (r = kd_manifest_dup_name(version, where, &m->components[i].version, err)) < 0)
			return r;
		total += json_object_array_length(files);
		if (total > KD_PAYLOAD_MAX_ENTRIES)
			return kd_err(err, -E2BIG, "manifest: more than %u files",
				      KD_PAYLOAD_MAX_ENTRIES);
	}
	m->files = calloc(total ? total : 1, sizeof(kd_pfile));
	if (!m->files)
		return kd_err(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		struct json_object *files =
			json_object_object_get(json_object_array_get_idx(arr, i), "files");
		kd_json_path_index(where, sizeof(where), "components", i);
		kd_json_path_key(where, sizeof(where), where, "files");
		for (size_t j = 0; j < json_object_array_length(files); j++) {
			kd_json_path_index(fwhere, sizeof(fwhere), where, j);
			kd_pfile *f = &m->files[m->n_files++];
			r = parse_file(json_object_array_get_idx(files, j), fwhere, i, f, err);
			if (r < 0)
				return r;
		}
	}
	return 0;
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

/* Cross-entry rules: unique paths, parents are directories, hardlinks point at earlier regular
 * files of the same component, total size. */
static int validate_files(kd_manifest *m, kd_error *err)
{
	uint64_t total = 0;

	qsort(m->files, m->n_files, sizeof(kd_pfile), cmp_pfile);
	for (size_t i = 0; i < m->n_files; i++) {
		kd_pfile *f = &m->files[i];
		if (i > 0 && strcmp(m->files[i - 1].path, f->path) == 0)
			return kd_err(err, -EINVAL, "manifest: duplicate path '%s'", f->path);
		const char *slash = strrchr(f->path, '/');
		if (slash) {
			char dir[KD_PATH_MAX + 1];
			snprintf(dir, sizeof(dir), "%.*s", (int)(slash - f->path), f->path);
			const kd_pfile *parent = kd_manifest_find(m, dir);
			if (!parent || parent->type != KD_FILE_DIR)
				return kd_err(
					err, -EINVAL,
					"manifest: parent of '%s' is not a directory in the manifest",
					f->path);
		}
		if (f->type == KD_FILE_REG) {
			total += f->size;
			if (total > KD_PAYLOAD_MAX_TOTAL)
				return kd_err(err, -EFBIG,
					      "manifest: files exceed %llu bytes in total",
					      (unsigned long long)KD_PAYLOAD_MAX_TOTAL);
		}
	}
	for (size_t i = 0; i < m->n_files; i++) {
		kd_pfile *f = &m->files[i];
		if (f->type != KD_FILE_HARDLINK)
			continue;
		const kd_pfile *t = kd_manifest_find(m, f->target);
		if (!t || t->type != KD_FILE_REG || strcmp(t->path, f->path) >= 0 ||
		    t->component != f->component)
			return kd_err(
				err, -EPERM,
				"manifest: hardlink '%s' -> '%s' must point at an earlier file of its component",
				f->path, f->target);
		f->size = t->size;
		memcpy(f->sha256, t->sha256, sizeof(f->sha256));
	}
	return 0;
}

int kd_manifest_parse(const char *json, size_t len, kd_manifest **ret, kd_error *err)
{
	_cleanup_json_ struct json_object *root = NULL;
	_cleanup_(kd_manifest_freep) kd_manifest *m = NULL;
	struct json_object *comps, *shims = NULL;
	const char *version, *arch, *key = NULL;
	int64_t format;
	int r;

	if (len > KD_PAYLOAD_MAX_MANIFEST)
		return kd_err(err, -EFBIG, "manifest: larger than %u bytes",
			      KD_PAYLOAD_MAX_MANIFEST);
	r = kd_json_parse_limits(json, len, KD_PAYLOAD_MANIFEST_NAME, KD_PAYLOAD_MAX_MANIFEST, 0,
				 &root, err);
	if (r < 0)
		return r;
	if (!root)
		return kd_err(err, -EINVAL, "manifest: expected an object, got null");
	if ((r = kd_json_as_object(root, "manifest", err)) < 0 ||
	    (r = kd_json_get_int64(root, NULL, "format", true, &format, err)) < 0)
		return r;
	if (format != KD_PAYLOAD_FORMAT)
		return kd_err(err, -EPROTONOSUPPORT,
			      "manifest: unsupported format %lld (expected %d)", (long long)format,
			      KD_PAYLOAD_FORMAT);
	if ((r = kd_json_get_string(root, NULL, "version", true, &version, err)) < 0 ||
	    (r = kd_json_get_string(root, NULL, "arch", true, &arch, err)) < 0 ||
	    (r = kd_json_get_array(root, NULL, "components", true, &comps, err)) < 0 ||
	    (r = kd_json_get_object(root, NULL, "shims", false, &shims, err)) < 0 ||
	    (r = kd_json_get_string(root, NULL, "signing_key", false, &key, err)) < 0)
		return r;
	m = calloc(1, sizeof(*m));
	if (!m)
		return kd_err(err, -ENOMEM, "out of memory");
	m->format = (int)format;
	if ((r = kd_manifest_dup_name(version, "version", &m->version, err)) < 0 ||
	    (r = kd_manifest_dup_name(arch, "arch", &m->arch, err)) < 0)
		return r;
	if (key) {
		if (!kd_sha256_hex_valid(key))
			return kd_err(
				err, -EINVAL,
				"signing_key: must be a sha256 fingerprint (64 lowercase hex digits)");
		m->signing_key = strdup(key);
		if (!m->signing_key)
			return kd_err(err, -ENOMEM, "out of memory");
	}
	if ((r = parse_components(m, comps, err)) < 0)
		return r;
	if (shims && (r = kd_manifest_parse_shims(m, shims, err)) < 0)
		return r;
	if ((r = validate_files(m, err)) < 0)
		return r;
	*ret = TAKE_PTR(m);
	return 0;
}

static int json_add(struct json_object *o, const char *key, struct json_object *v, kd_error *err)
{
	if (!v)
		return kd_err(err, -ENOMEM, "out of memory");
	if (json_object_object_add(o, key, v) < 0) {
		json_object_put(v);
		return kd_err(err, -ENOMEM, "out of memory");
	}
	return 0;
}

static int json_append(struct json_object *a, struct json_object *v, kd_error *err)
{
	if (!v)
		return kd_err(err, -ENOMEM, "out of memory");
	if (json_object_array_add(a, v) < 0) {
		json_object_put(v);
		return kd_err(err, -ENOMEM, "out of memory");
	}
	return 0;
}

static struct json_object *file_to_json(const kd_pfile *f)
{
	_cleanup_json_ struct json_object *o = json_object_new_object();
	char mode[8];
	int r = 0;

	if (!o)
		return NULL;
	snprintf(mode, sizeof(mode), "%04o", (unsigned)f->mode & 07777);
	r |= json_add(o, "path", json_object_new_string(f->path), NULL);
	r |= json_add(o, "type", json_object_new_string(kd_file_type_name(f->type)), NULL);
	r |= json_add(o, "mode", json_object_new_string(mode), NULL);
	if (f->type == KD_FILE_REG) {
		r |= json_add(o, "size", json_object_new_int64((int64_t)f->size), NULL);
		r |= json_add(o, "sha256", json_object_new_string(f->sha256), NULL);
	}
	if (f->type == KD_FILE_SYMLINK || f->type == KD_FILE_HARDLINK)
		r |= json_add(o, "target", json_object_new_string(f->target), NULL);
	return r ? NULL : TAKE_PTR(o);
}

int kd_manifest_to_json(const kd_manifest *m, char **ret_json, kd_error *err)
{
	_cleanup_json_ struct json_object *root = json_object_new_object();
	struct json_object *comps = json_object_new_array(), *shims = json_object_new_object();
	int r;

	if (!root || json_add(root, "components", comps, err) < 0 ||
	    json_add(root, "shims", shims, err) < 0)
		return kd_err(err, -ENOMEM, "out of memory");
	if ((r = json_add(root, "format", json_object_new_int(m->format), err)) < 0 ||
	    (r = json_add(root, "version", json_object_new_string(m->version), err)) < 0 ||
	    (r = json_add(root, "arch", json_object_new_string(m->arch), err)) < 0)
		return r;
	if (m->signing_key &&
	    (r = json_add(root, "signing_key", json_object_new_string(m->signing_key), err)) < 0)
		return r;
	for (size_t i = 0; i < m->n_components; i++) {
		struct json_object *c = json_object_new_object(), *files = json_object_new_array();
		if ((r = json_append(comps, c, err)) < 0 ||
		    (r = json_add(c, "files", files, err)) < 0 ||
		    (r = json_add(c, "name", json_object_new_string(m->components[i].name), err)) <
			    0 ||
		    (r = json_add(c, "version", json_object_new_string(m->components[i].version),
				  err)) < 0)
			return r;
		for (size_t j = 0; j < m->n_files; j++)
			if (m->files[j].component == i &&
			    (r = json_append(files, file_to_json(&m->files[j]), err)) < 0)
				return r;
	}
	for (size_t i = 0; i < m->n_shims; i++) {
		struct json_object *a = json_object_new_array();
		if ((r = json_add(shims, m->shims[i].name, a, err)) < 0)
			return r;
		for (size_t j = 0; j < m->shims[i].n_components; j++)
			if ((r = json_append(a, json_object_new_string(m->shims[i].components[j]),
					     err)) < 0)
				return r;
	}
	return kd_json_format(root, KD_JSON_CANONICAL, ret_json, NULL, err);
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
