#include "payload.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "digest.h"
#include "fsroot.h"
#include "json.h"
#include "log.h"
#include "sign.h"
#include "tarball.h"
#include "yaml.h"

#define PREFIX KD_PAYLOAD_TREE_PREFIX
#define PREFIX_LEN (sizeof(PREFIX) - 1)
#define IO_BUF (1u << 20)	  /* bytes per read while hashing and packing */
#define MAX_SPEC_COMPONENTS 1024u /* components in a manifest or spec */
#define MAX_SHIMS 256u		  /* shims in a manifest or spec */
#define MAX_NAME 128u		  /* bytes of a component, shim, version or arch name */
#define SHIM_CONFIG_DIR "share/defaults/kata-containers/"
#define SHIM_CONFIG_PREFIX "configuration-"

struct kd_payload {
	int fd;
	char *name;
	char digest[KD_SHA256_HEX_LEN + 1];
	kd_manifest *manifest;
};

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
DEFINE_CLEANUP(kd_manifest *, kd_manifest_free)
DEFINE_CLEANUP(DIR *, closedir)

static const char *file_type_name(kd_file_type t)
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
		if (strcmp(s, file_type_name(all[i])) == 0) {
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

static ssize_t find_component(const kd_manifest *m, const char *name)
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
				mask[find_component(m, m->shims[i].components[j])] = true;
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
			mask[find_component(m, s->components[j])] = true;
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

static int dup_name(const char *s, const char *what, char **ret, kd_error *err)
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
		if (find_component(m, name) >= 0)
			return kd_err(err, -EINVAL, "%s: duplicate component '%s'", where, name);
		m->n_components++;
		if ((r = dup_name(name, where, &m->components[i].name, err)) < 0 ||
		    (r = dup_name(version, where, &m->components[i].version, err)) < 0)
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

static int cmp_shim(const void *a, const void *b)
{
	return strcmp(((const kd_shim *)a)->name, ((const kd_shim *)b)->name);
}

static int parse_shims(kd_manifest *m, struct json_object *obj, kd_error *err)
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
		if ((r = dup_name(key, where, &s->name, err)) < 0)
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
			if (find_component(m, c) < 0)
				return kd_err(err, -EINVAL, "%s: unknown component '%s'", ewhere,
					      c);
			s->components[s->n_components] = strdup(c);
			if (!s->components[s->n_components++])
				return kd_err(err, -ENOMEM, "out of memory");
		}
	}
	qsort(m->shims, m->n_shims, sizeof(kd_shim), cmp_shim);
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
	if ((r = dup_name(version, "version", &m->version, err)) < 0 ||
	    (r = dup_name(arch, "arch", &m->arch, err)) < 0)
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
	if (shims && (r = parse_shims(m, shims, err)) < 0)
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
	r |= json_add(o, "type", json_object_new_string(file_type_name(f->type)), NULL);
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

/* ---- selection ---------------------------------------------------------------------------- */

/* Mark the manifest entries to extract: those of selected components, and every directory
 * above one of them (directories are shared between components). */
static int select_files(const kd_manifest *m, const bool *mask, bool **ret)
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

/* ---- pack --------------------------------------------------------------------------------- */

typedef struct pack_entry {
	char *path;
	kd_file_type type;
	mode_t mode;
	uint64_t size;
	char *target;
	ssize_t component;
	char sha256[KD_SHA256_HEX_LEN + 1];
} pack_entry;

typedef struct pack_state {
	pack_entry *e;
	size_t n, cap;
} pack_state;

static void pack_state_done(pack_state *s)
{
	for (size_t i = 0; i < s->n; i++) {
		free(s->e[i].path);
		free(s->e[i].target);
	}
	free(s->e);
}

static int pack_walk(pack_state *s, int dfd, const char *rel, kd_error *err)
{
	_cleanup_(closedirp) DIR *d = NULL;
	struct dirent *de;
	int r, fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0 || !(d = fdopendir(fd))) {
		r = negative_errno();
		if (fd >= 0)
			close(fd);
		return kd_err_errno(err, r, "open directory '%s%s'", PREFIX, rel);
	}
	while ((errno = 0, de = readdir(d))) {
		struct stat st;
		char path[KD_PATH_MAX + 1];
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if ((size_t)snprintf(path, sizeof(path), "%s%s%s", rel, *rel ? "/" : "",
				     de->d_name) >= sizeof(path) - PREFIX_LEN)
			return kd_err(err, -ENAMETOOLONG, "'%s%s/%s': path too long", PREFIX, rel,
				      de->d_name);
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			return kd_err_errno(err, negative_errno(), "stat '%s%s'", PREFIX, path);
		if (s->n == s->cap) {
			size_t cap = s->cap ? s->cap * 2 : 256;
			pack_entry *e = reallocarray(s->e, cap, sizeof(*e));
			if (!e)
				return kd_err(err, -ENOMEM, "out of memory");
			s->e = e;
			s->cap = cap;
		}
		pack_entry *e = &s->e[s->n];
		*e = (pack_entry){.component = -1};
		e->path = strdup(path);
		if (!e->path)
			return kd_err(err, -ENOMEM, "out of memory");
		s->n++;
		if (S_ISDIR(st.st_mode)) {
			e->type = KD_FILE_DIR;
			e->mode = 0755;
			_cleanup_close_ int sub =
				openat(dirfd(d), de->d_name,
				       O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub < 0)
				return kd_err_errno(err, negative_errno(), "open '%s%s'", PREFIX,
						    path);
			if ((r = pack_walk(s, sub, path, err)) < 0)
				return r;
		} else if (S_ISREG(st.st_mode)) {
			e->type = KD_FILE_REG;
			e->mode = (st.st_mode & 0111) ? 0755 : 0644;
			e->size = (uint64_t)st.st_size;
		} else if (S_ISLNK(st.st_mode)) {
			char buf[KD_PATH_MAX + 1];
			ssize_t n = readlinkat(dirfd(d), de->d_name, buf, sizeof(buf));
			if (n < 0)
				return kd_err_errno(err, negative_errno(), "readlink '%s%s'",
						    PREFIX, path);
			if ((size_t)n >= sizeof(buf))
				return kd_err(err, -ENAMETOOLONG, "'%s%s': link target too long",
					      PREFIX, path);
			buf[n] = '\0';
			e->type = KD_FILE_SYMLINK;
			e->mode = 0777;
			e->target = strdup(buf);
			if (!e->target)
				return kd_err(err, -ENOMEM, "out of memory");
		} else {
			return kd_err(err, -EPERM,
				      "'%s%s': only files, directories and symlinks can be packed",
				      PREFIX, path);
		}
	}
	if (errno)
		return kd_err_errno(err, negative_errno(), "read directory '%s%s'", PREFIX, rel);
	return 0;
}

static int cmp_pack_entry(const void *a, const void *b)
{
	return strcmp(((const pack_entry *)a)->path, ((const pack_entry *)b)->path);
}

/* A spec path "dir/" claims the directory and everything below; any other path claims
 * exactly that entry. */
static bool spec_path_matches(const char *spec, const char *path)
{
	size_t n = strlen(spec);
	if (n > 1 && spec[n - 1] == '/')
		return strncmp(path, spec, n - 1) == 0 &&
		       (path[n - 1] == '\0' || path[n - 1] == '/');
	return strcmp(spec, path) == 0;
}

static int assign_components(pack_state *s, kd_manifest *m, struct json_object *comps,
			     kd_error *err)
{
	char where[KD_JSON_PATH_MAX], pwhere[KD_JSON_PATH_MAX];
	int r;

	for (size_t c = 0; c < m->n_components; c++) {
		struct json_object *paths;
		kd_json_path_index(where, sizeof(where), "components", c);
		r = kd_json_get_array(json_object_array_get_idx(comps, c), where, "paths", true,
				      &paths, err);
		if (r < 0)
			return r;
		for (size_t j = 0; j < json_object_array_length(paths); j++) {
			const char *p;
			bool used = false;
			kd_json_path_index(pwhere, sizeof(pwhere), where, j);
			kd_json_path_key(pwhere, sizeof(pwhere), pwhere, "paths");
			if ((r = kd_json_as_string(json_object_array_get_idx(paths, j), pwhere, &p,
						   err)) < 0)
				return r;
			for (size_t i = 0; i < s->n; i++) {
				pack_entry *e = &s->e[i];
				if (!spec_path_matches(p, e->path))
					continue;
				used = true;
				if (e->component >= 0 && (size_t)e->component != c)
					return kd_err(
						err, -EINVAL,
						"spec: '%s%s' belongs to components '%s' and '%s'",
						PREFIX, e->path, m->components[e->component].name,
						m->components[c].name);
				e->component = (ssize_t)c;
			}
			if (!used)
				return kd_err(err, -ENOENT,
					      "spec: %s: '%s' matches nothing under %s", where, p,
					      PREFIX);
		}
	}
	/* Unclaimed directories go with their first descendant; anything else is an error. */
	for (size_t i = s->n; i-- > 0;) {
		pack_entry *e = &s->e[i];
		if (e->component >= 0)
			continue;
		size_t n = strlen(e->path);
		if (e->type == KD_FILE_DIR && i + 1 < s->n &&
		    strncmp(s->e[i + 1].path, e->path, n) == 0 && s->e[i + 1].path[n] == '/') {
			e->component = s->e[i + 1].component;
			continue;
		}
		return kd_err(err, -EINVAL, "spec: '%s%s' belongs to no component", PREFIX,
			      e->path);
	}
	return 0;
}

static int spec_shims(kd_manifest *m, struct json_object *spec, kd_error *err)
{
	struct json_object *shims = NULL;
	int r = kd_json_get_object(spec, "spec", "shims", false, &shims, err);

	if (r < 0)
		return r;
	if (!shims) {
		m->shims = calloc(1, sizeof(kd_shim));
		return m->shims ? 0 : kd_err(err, -ENOMEM, "out of memory");
	}
	return parse_shims(m, shims, err);
}

static int infer_shims(kd_manifest *m, const pack_state *s, kd_error *err)
{
	size_t dl = strlen(SHIM_CONFIG_DIR), pl = strlen(SHIM_CONFIG_PREFIX);

	m->shims = calloc(s->n ? s->n : 1, sizeof(kd_shim));
	if (!m->shims)
		return kd_err(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < s->n; i++) {
		const char *p = s->e[i].path;
		if (s->e[i].type == KD_FILE_DIR || strncmp(p, SHIM_CONFIG_DIR, dl) != 0 ||
		    strncmp(p + dl, SHIM_CONFIG_PREFIX, pl) != 0)
			continue;
		p += dl + pl;
		size_t n = strlen(p);
		if (n <= 5 || strcmp(p + n - 5, ".toml") != 0 || strchr(p, '/'))
			continue;
		kd_shim *sh = &m->shims[m->n_shims];
		sh->name = strndup(p, n - 5);
		sh->components = calloc(1, sizeof(char *));
		if (!sh->name || !sh->components) {
			free(sh->name);
			free(sh->components);
			return kd_err(err, -ENOMEM, "out of memory");
		}
		m->n_shims++;
		sh->components[0] = strdup(m->components[0].name);
		if (!sh->components[sh->n_components++])
			return kd_err(err, -ENOMEM, "out of memory");
	}
	qsort(m->shims, m->n_shims, sizeof(kd_shim), cmp_shim);
	return 0;
}

static int hash_file(int katafd, const char *path, uint64_t size, char out[65], kd_error *err)
{
	uint8_t bin[KD_SHA256_LEN];
	uint64_t got;
	_cleanup_close_ int fd = kd_openat(katafd, path, O_RDONLY, 0, KD_NOFOLLOW, err);
	int r;

	if (fd < 0)
		return fd;
	r = kd_sha256_fd(fd, bin, &got, err);
	if (r < 0)
		return kd_err_wrap(err, r, "hash '%s%s'", PREFIX, path);
	if (got != size)
		return kd_err(err, -EAGAIN, "'%s%s' changed while packing", PREFIX, path);
	kd_hex(bin, sizeof(bin), out);
	return 0;
}

static int cmp_dedup(const void *a, const void *b, void *userdata)
{
	const pack_entry *e = userdata;
	const pack_entry *x = &e[*(const size_t *)a], *y = &e[*(const size_t *)b];
	int c = strcmp(x->sha256, y->sha256);
	if (c)
		return c;
	if (x->component != y->component)
		return x->component < y->component ? -1 : 1;
	if (x->mode != y->mode)
		return x->mode < y->mode ? -1 : 1;
	return strcmp(x->path, y->path);
}

/* Identical non-empty files of one component and mode are stored once; the later paths (in
 * path order) become hardlinks to the first. */
static int dedup_files(pack_state *s, kd_error *err)
{
	_cleanup_free_ size_t *idx = calloc(s->n ? s->n : 1, sizeof(size_t));
	size_t k = 0;

	if (!idx)
		return kd_err(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < s->n; i++)
		if (s->e[i].type == KD_FILE_REG && s->e[i].size > 0)
			idx[k++] = i;
	qsort_r(idx, k, sizeof(size_t), cmp_dedup, s->e);
	for (size_t i = 1; i < k; i++) {
		pack_entry *first = NULL;
		for (size_t j = i; j-- > 0;) {
			pack_entry *p = &s->e[idx[j]];
			if (p->type == KD_FILE_REG) {
				first = p;
				break;
			}
		}
		pack_entry *e = &s->e[idx[i]];
		if (!first || strcmp(first->sha256, e->sha256) != 0 ||
		    first->component != e->component || first->mode != e->mode)
			continue;
		e->type = KD_FILE_HARDLINK;
		e->target = strdup(first->path);
		if (!e->target)
			return kd_err(err, -ENOMEM, "out of memory");
	}
	return 0;
}

static int build_manifest(pack_state *s, const kd_pack_opts *o, struct json_object *spec,
			  kd_manifest **ret, kd_error *err)
{
	_cleanup_(kd_manifest_freep) kd_manifest *m = calloc(1, sizeof(*m));
	const char *version = o->version, *arch = o->arch;
	struct json_object *comps = NULL;
	struct utsname u;
	int r;

	if (!m)
		return kd_err(err, -ENOMEM, "out of memory");
	m->format = KD_PAYLOAD_FORMAT;
	if (spec) {
		const char *v = NULL, *a = NULL;
		if ((r = kd_json_as_object(spec, "spec", err)) < 0 ||
		    (r = kd_json_get_string(spec, NULL, "version", false, &v, err)) < 0 ||
		    (r = kd_json_get_string(spec, NULL, "arch", false, &a, err)) < 0 ||
		    (r = kd_json_get_array(spec, NULL, "components", true, &comps, err)) < 0)
			return r;
		if (!version)
			version = v;
		if (!arch)
			arch = a;
	}
	if (!version)
		return kd_err(err, -EINVAL, "no payload version (give one in the spec or options)");
	if (!arch) {
		if (uname(&u) < 0)
			return kd_err_errno(err, negative_errno(), "uname");
		arch = u.machine;
	}
	if ((r = dup_name(version, "version", &m->version, err)) < 0 ||
	    (r = dup_name(arch, "arch", &m->arch, err)) < 0)
		return r;

	size_t nc = comps ? json_object_array_length(comps) : 1;
	if (nc == 0 || nc > MAX_SPEC_COMPONENTS)
		return kd_err(err, -EINVAL, "spec: components: need 1 to %u", MAX_SPEC_COMPONENTS);
	m->components = calloc(nc, sizeof(kd_component));
	if (!m->components)
		return kd_err(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < nc; i++) {
		const char *name = "kata", *cv = m->version;
		char where[KD_JSON_PATH_MAX];
		if (comps) {
			struct json_object *c = json_object_array_get_idx(comps, i);
			kd_json_path_index(where, sizeof(where), "components", i);
			if ((r = kd_json_as_object(c, where, err)) < 0 ||
			    (r = kd_json_get_string(c, where, "name", true, &name, err)) < 0 ||
			    (r = kd_json_get_string(c, where, "version", false, &cv, err)) < 0)
				return r;
			if (find_component(m, name) >= 0)
				return kd_err(err, -EINVAL, "spec: %s: duplicate component '%s'",
					      where, name);
		}
		m->n_components++;
		if ((r = dup_name(name, "component name", &m->components[i].name, err)) < 0 ||
		    (r = dup_name(cv, "component version", &m->components[i].version, err)) < 0)
			return r;
	}
	if (comps) {
		if ((r = assign_components(s, m, comps, err)) < 0 ||
		    (r = spec_shims(m, spec, err)) < 0)
			return r;
	} else {
		for (size_t i = 0; i < s->n; i++)
			s->e[i].component = 0;
		if ((r = infer_shims(m, s, err)) < 0)
			return r;
	}
	if (s->n > KD_PAYLOAD_MAX_ENTRIES)
		return kd_err(err, -E2BIG, "more than %u entries under %s", KD_PAYLOAD_MAX_ENTRIES,
			      PREFIX);
	m->files = calloc(s->n ? s->n : 1, sizeof(kd_pfile));
	if (!m->files)
		return kd_err(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < s->n; i++) {
		kd_pfile *f = &m->files[m->n_files++];
		f->path = strdup(s->e[i].path);
		f->target = s->e[i].target ? strdup(s->e[i].target) : NULL;
		if (!f->path || (s->e[i].target && !f->target))
			return kd_err(err, -ENOMEM, "out of memory");
		f->type = s->e[i].type;
		f->mode = s->e[i].mode;
		f->size = f->type == KD_FILE_REG ? s->e[i].size : 0;
		f->component = (size_t)s->e[i].component;
		memcpy(f->sha256, s->e[i].sha256, sizeof(f->sha256));
	}
	*ret = TAKE_PTR(m);
	return 0;
}

static int write_tar(kd_tar_writer *w, int katafd, const pack_state *s, const char *manifest,
		     uint8_t *buf, kd_error *err)
{
	char path[KD_PATH_MAX + 1], target[KD_PATH_MAX + 1];
	kd_tar_entry te = {
		.path = KD_PAYLOAD_MANIFEST_NAME,
		.type = KD_ENTRY_FILE,
		.mode = 0644,
		.size = strlen(manifest),
	};
	int r;

	if ((r = kd_tar_write_header(w, &te, err)) < 0 ||
	    (r = kd_tar_write_data(w, manifest, te.size, err)) < 0)
		return r;
	for (size_t i = 0; i < s->n; i++) {
		const pack_entry *e = &s->e[i];
		snprintf(path, sizeof(path), "%s%s", PREFIX, e->path);
		te = (kd_tar_entry){.path = path, .mode = e->mode, .link = e->target};
		switch (e->type) {
		case KD_FILE_REG:
			te.type = KD_ENTRY_FILE;
			te.size = e->size;
			break;
		case KD_FILE_DIR:
			te.type = KD_ENTRY_DIR;
			break;
		case KD_FILE_SYMLINK:
			te.type = KD_ENTRY_SYMLINK;
			break;
		case KD_FILE_HARDLINK:
			te.type = KD_ENTRY_HARDLINK;
			snprintf(target, sizeof(target), "%s%s", PREFIX, e->target);
			te.link = target;
			break;
		}
		if ((r = kd_tar_write_header(w, &te, err)) < 0)
			return kd_err_wrap(err, r, "pack '%s'", path);
		if (e->type != KD_FILE_REG)
			continue;
		_cleanup_close_ int fd = kd_openat(katafd, e->path, O_RDONLY, 0, KD_NOFOLLOW, err);
		if (fd < 0)
			return kd_err_wrap(err, fd, "pack");
		uint64_t left = e->size;
		while (left > 0) {
			ssize_t n = read(fd, buf, left < IO_BUF ? left : IO_BUF);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0)
				return kd_err_errno(err, negative_errno(), "read '%s'", path);
			if (n == 0)
				return kd_err(err, -EAGAIN, "'%s' changed while packing", path);
			if ((r = kd_tar_write_data(w, buf, (size_t)n, err)) < 0)
				return kd_err_wrap(err, r, "pack '%s'", path);
			left -= (uint64_t)n;
		}
	}
	return 0;
}

static int sign_payload(const kd_atomic_file *af, const char *out_path, const kd_pack_opts *o,
			kd_error *err)
{
	uint8_t bin[KD_SHA256_LEN];
	char msg[sizeof(KD_PAYLOAD_SIG_CONTEXT) + KD_SHA256_HEX_LEN];
	_cleanup_free_ uint8_t *sig = NULL;
	_cleanup_free_ char *sig_path = NULL, *dir = NULL;
	size_t siglen;
	int r;

	/* The temp file was opened write-only: read it back through its name. */
	_cleanup_close_ int fd = openat(af->dirfd, af->tmpname, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return kd_err_errno(err, negative_errno(), "reopen '%s'", out_path);
	if ((r = kd_sha256_fd(fd, bin, NULL, err)) < 0)
		return r;
	memcpy(msg, KD_PAYLOAD_SIG_CONTEXT, strlen(KD_PAYLOAD_SIG_CONTEXT));
	kd_hex(bin, sizeof(bin), msg + strlen(KD_PAYLOAD_SIG_CONTEXT));
	size_t len = strlen(KD_PAYLOAD_SIG_CONTEXT) + KD_SHA256_HEX_LEN;
	if ((r = kd_sign_buf(o->sign_key, msg, len, &sig, &siglen, err)) < 0)
		return kd_err_wrap(err, r, "sign '%s'", out_path);
	if (o->sign_pubkey && (r = kd_verify_buf(o->sign_pubkey, msg, len, sig, siglen, err)) < 0)
		return kd_err_wrap(err, r, "sign '%s': %s does not match %s", out_path,
				   o->sign_pubkey, o->sign_key);
	if (asprintf(&sig_path, "%s.sig", out_path) < 0)
		return kd_err(err, -ENOMEM, "out of memory");
	dir = strdup(sig_path);
	if (!dir)
		return kd_err(err, -ENOMEM, "out of memory");
	char *slash = strrchr(dir, '/');
	const char *base = slash ? sig_path + (slash - dir) + 1 : sig_path;
	if (slash)
		slash[1] = '\0';
	_cleanup_close_ int dfd = kd_root_open(slash ? dir : ".", err);
	if (dfd < 0)
		return dfd;
	return kd_write_atomic(dfd, base, sig, siglen, 0644, err);
}

int kd_payload_pack(const char *srcdir, const char *out_path, const kd_pack_opts *opts,
		    kd_error *err)
{
	static const kd_pack_opts defaults = {0};
	const kd_pack_opts *o = opts ? opts : &defaults;
	_cleanup_(pack_state_done) pack_state s = {0};
	_cleanup_json_ struct json_object *spec = NULL;
	_cleanup_(kd_manifest_freep) kd_manifest *m = NULL, *check = NULL;
	_cleanup_free_ char *json = NULL, *dir = NULL;
	_cleanup_free_ uint8_t *buf = NULL;
	_cleanup_(kd_tar_writer_freep) kd_tar_writer *w = NULL;
	_cleanup_close_ int rootfd = -1, katafd = -1, outdir = -1;
	kd_atomic_file af = {.fd = -1, .dirfd = -1};
	int r;

	rootfd = kd_root_open(srcdir, err);
	if (rootfd < 0)
		return rootfd;
	katafd = kd_openat(rootfd, "opt/kata", O_RDONLY | O_DIRECTORY, 0, KD_NOFOLLOW, err);
	if (katafd < 0)
		return kd_err_wrap(err, katafd, "pack '%s'", srcdir);
	if ((r = pack_walk(&s, katafd, "", err)) < 0)
		return kd_err_wrap(err, r, "pack '%s'", srcdir);
	qsort(s.e, s.n, sizeof(pack_entry), cmp_pack_entry);
	for (size_t i = 0; i < s.n; i++)
		if (s.e[i].type == KD_FILE_REG &&
		    (r = hash_file(katafd, s.e[i].path, s.e[i].size, s.e[i].sha256, err)) < 0)
			return kd_err_wrap(err, r, "pack '%s'", srcdir);
	if (o->spec_path && (r = kd_yaml_parse_file(o->spec_path, &spec, err)) < 0)
		return kd_err_wrap(err, r, "pack: spec");
	if (o->spec_path && !spec)
		return kd_err(err, -EINVAL, "pack: spec %s is empty", o->spec_path);
	if ((r = build_manifest(&s, o, spec, &m, err)) < 0)
		return kd_err_wrap(err, r, "pack '%s'", srcdir);
	if ((r = dedup_files(&s, err)) < 0)
		return r;
	for (size_t i = 0; i < s.n; i++) {
		m->files[i].type = s.e[i].type;
		if (s.e[i].type == KD_FILE_HARDLINK) {
			m->files[i].size = 0;
			m->files[i].sha256[0] = '\0';
			m->files[i].target = strdup(s.e[i].target);
			if (!m->files[i].target)
				return kd_err(err, -ENOMEM, "out of memory");
		}
	}
	if (o->sign_key && o->sign_pubkey) {
		char fp[KD_SHA256_HEX_LEN + 1];
		if ((r = kd_pubkey_fingerprint(o->sign_pubkey, fp, err)) < 0)
			return kd_err_wrap(err, r, "pack");
		m->signing_key = strdup(fp);
		if (!m->signing_key)
			return kd_err(err, -ENOMEM, "out of memory");
	}
	if ((r = kd_manifest_to_json(m, &json, err)) < 0)
		return kd_err_wrap(err, r, "pack: manifest");
	/* What we write must be what kd_payload_open accepts. */
	if ((r = kd_manifest_parse(json, strlen(json), &check, err)) < 0)
		return kd_err_wrap(err, r, "pack: generated manifest is invalid");

	dir = strdup(out_path);
	if (!dir)
		return kd_err(err, -ENOMEM, "out of memory");
	char *slash = strrchr(dir, '/');
	const char *base = slash ? out_path + (slash - dir) + 1 : out_path;
	if (slash)
		slash[1] = '\0';
	outdir = kd_root_open(slash ? dir : ".", err);
	if (outdir < 0)
		return outdir;
	if ((r = kd_atomic_begin(outdir, base, 0644, &af, err)) < 0)
		return kd_err_wrap(err, r, "pack: create '%s'", out_path);

	buf = malloc(IO_BUF);
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	kd_tar_write_opts wo = {
		.compression = KD_COMPRESS_ZSTD,
		.level = o->zstd_level ? o->zstd_level : 10,
		/* Always at least one worker: zstd's output is then the same for any count. */
		.threads = o->threads > 0 ? o->threads : (ncpu > 0 ? (int)ncpu : 1),
		.mtime = o->mtime,
	};
	if (!buf)
		r = kd_err(err, -ENOMEM, "out of memory");
	else if ((r = kd_tar_writer_open(af.fd, &wo, &w, err)) >= 0 &&
		 (r = write_tar(w, katafd, &s, json, buf, err)) >= 0)
		r = kd_tar_writer_close(w, err);
	if (r >= 0 && o->sign_key)
		r = sign_payload(&af, out_path, o, err);
	if (r >= 0)
		r = kd_atomic_commit(&af, true, err);
	if (r < 0) {
		kd_atomic_abort(&af);
		return kd_err_wrap(err, r, "pack '%s'", out_path);
	}
	return 0;
}

/* ---- open --------------------------------------------------------------------------------- */

static int hash_whole(int fd, char out[KD_SHA256_HEX_LEN + 1], kd_error *err)
{
	_cleanup_free_ uint8_t *buf = malloc(IO_BUF);
	_cleanup_sha256_ kd_sha256 h = {0};
	uint8_t bin[KD_SHA256_LEN];
	off_t off = 0;
	int r;

	if (!buf)
		return kd_err(err, -ENOMEM, "out of memory");
	if ((r = kd_sha256_init(&h, err)) < 0)
		return r;
	for (;;) {
		ssize_t n = pread(fd, buf, IO_BUF, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return kd_err_errno(err, negative_errno(), "read");
		if (n == 0)
			break;
		kd_sha256_update(&h, buf, (size_t)n);
		off += n;
	}
	if ((r = kd_sha256_final(&h, bin, err)) < 0)
		return r;
	kd_hex(bin, sizeof(bin), out);
	return 0;
}

static int read_manifest(int fd, kd_manifest **ret, kd_error *err)
{
	_cleanup_(kd_tar_reader_freep) kd_tar_reader *tr = NULL;
	_cleanup_free_ char *json = NULL;
	kd_tar_entry e;
	const void *blk;
	size_t len, off = 0;
	int r;

	if ((r = kd_tar_open(fd, NULL, &tr, err)) < 0)
		return r;
	if ((r = kd_tar_next(tr, &e, err)) < 0)
		return r;
	if (r == 0 || e.type != KD_ENTRY_FILE || strcmp(e.path, KD_PAYLOAD_MANIFEST_NAME) != 0)
		return kd_err(err, -EBADMSG, "the first entry is not %s", KD_PAYLOAD_MANIFEST_NAME);
	if (e.size > KD_PAYLOAD_MAX_MANIFEST)
		return kd_err(err, -EFBIG, "%s: larger than %u bytes", KD_PAYLOAD_MANIFEST_NAME,
			      KD_PAYLOAD_MAX_MANIFEST);
	json = malloc(e.size + 1);
	if (!json)
		return kd_err(err, -ENOMEM, "out of memory");
	while ((r = kd_tar_read_block(tr, &blk, &len, err)) > 0) {
		if (len > e.size - off)
			return kd_err(err, -EBADMSG, "%s: more data than its size",
				      KD_PAYLOAD_MANIFEST_NAME);
		memcpy(json + off, blk, len);
		off += len;
	}
	if (r < 0)
		return r;
	if (off != e.size)
		return kd_err(err, -EBADMSG, "%s: truncated", KD_PAYLOAD_MANIFEST_NAME);
	json[off] = '\0';
	return kd_manifest_parse(json, off, ret, err);
}

int kd_payload_open(int fd, const char *name, const kd_payload_verify *v, kd_payload **ret,
		    kd_error *err)
{
	_cleanup_close_ int dfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	_cleanup_(kd_manifest_freep) kd_manifest *m = NULL;
	char digest[KD_SHA256_HEX_LEN + 1];
	struct stat st;
	int r;

	if (dfd < 0)
		return kd_err_errno(err, negative_errno(), "payload '%s': dup", name);
	if (fstat(dfd, &st) < 0)
		return kd_err_errno(err, negative_errno(), "payload '%s': stat", name);
	if (!S_ISREG(st.st_mode))
		return kd_err(err, -EINVAL, "payload '%s': not a regular file", name);
	if ((r = hash_whole(dfd, digest, err)) < 0)
		return kd_err_wrap(err, r, "payload '%s'", name);
	if (v && v->expect_sha256 && strcmp(v->expect_sha256, digest) != 0)
		return kd_err(err, -EBADMSG, "payload '%s': sha256 is %s, expected %s", name,
			      digest, v->expect_sha256);
	if (v && v->pubkey_path) {
		char msg[sizeof(KD_PAYLOAD_SIG_CONTEXT) + KD_SHA256_HEX_LEN];
		if (!v->sig || !v->siglen)
			return kd_err(err, -EINVAL, "payload '%s': no signature to verify", name);
		snprintf(msg, sizeof(msg), "%s%s", KD_PAYLOAD_SIG_CONTEXT, digest);
		r = kd_verify_buf(v->pubkey_path, msg, strlen(msg), v->sig, v->siglen, err);
		if (r < 0)
			return kd_err_wrap(err, r, "payload '%s': signature", name);
	}
	if ((r = read_manifest(dfd, &m, err)) < 0)
		return kd_err_wrap(err, r, "payload '%s'", name);
	if (m->signing_key) {
		char fp[KD_SHA256_HEX_LEN + 1];
		if (!v || !v->pubkey_path)
			return kd_err(err, -ENOKEY,
				      "payload '%s' is signed by key %s: a public key is required",
				      name, m->signing_key);
		if ((r = kd_pubkey_fingerprint(v->pubkey_path, fp, err)) < 0)
			return kd_err_wrap(err, r, "payload '%s'", name);
		if (strcmp(fp, m->signing_key) != 0)
			return kd_err(err, -EKEYREJECTED,
				      "payload '%s' is signed by key %s, not by %s (%s)", name,
				      m->signing_key, v->pubkey_path, fp);
	}
	kd_payload *p = calloc(1, sizeof(*p));
	if (!p || !(p->name = strdup(name))) {
		free(p);
		return kd_err(err, -ENOMEM, "out of memory");
	}
	memcpy(p->digest, digest, sizeof(digest));
	p->manifest = TAKE_PTR(m);
	p->fd = TAKE_FD(dfd);
	*ret = p;
	return 0;
}

const kd_manifest *kd_payload_manifest(const kd_payload *p)
{
	return p->manifest;
}

const char *kd_payload_digest(const kd_payload *p)
{
	return p->digest;
}

void kd_payload_free(kd_payload *p)
{
	if (!p)
		return;
	if (p->fd >= 0)
		close(p->fd);
	free(p->name);
	kd_manifest_free(p->manifest);
	free(p);
}

/* ---- extract ------------------------------------------------------------------------------ */

typedef struct extract_state {
	const kd_manifest *m;
	const kd_extract_opts *o;
	kd_payload_limits lim;
	int destfd;
	bool *sel;
	uint8_t *seen;
	uint64_t total;
	/* The parent directory of the previous entry: entries come sorted, so most share it. */
	char parent[KD_PATH_MAX + 1];
	int parentfd;
	kd_extract_stats st;
} extract_state;

static int open_parent_cached(extract_state *x, const char *rel, const char **ret_base,
			      kd_error *err)
{
	const char *slash = strrchr(rel, '/');
	size_t n = slash ? (size_t)(slash - rel) : 0;

	*ret_base = slash ? slash + 1 : rel;
	if (x->parentfd >= 0 && strlen(x->parent) == n && strncmp(x->parent, rel, n) == 0)
		return x->parentfd;
	if (x->parentfd >= 0 && x->parentfd != x->destfd)
		close(x->parentfd);
	x->parentfd = -1;
	if (!slash) {
		x->parent[0] = '\0';
		return x->parentfd = x->destfd;
	}
	const char *base;
	int fd = kd_open_parent(x->destfd, rel, &base, NULL);
	if (fd == -ENOENT) {
		/* The directory entry was absent from the tar: create it, the mode is fixed later.
		 */
		char dir[KD_PATH_MAX + 1];
		snprintf(dir, sizeof(dir), "%.*s", (int)n, rel);
		int r = kd_mkdir_p(x->destfd, dir, 0755, NULL, NULL, err);
		if (r < 0)
			return r;
		fd = kd_open_parent(x->destfd, rel, &base, err);
	} else if (fd < 0) {
		fd = kd_open_parent(x->destfd, rel, &base, err);
	}
	if (fd < 0)
		return fd;
	memcpy(x->parent, rel, n);
	x->parent[n] = '\0';
	return x->parentfd = fd;
}

static int write_all(int fd, const uint8_t *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return negative_errno();
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Hardlink the same file from the previous version's tree. 1 when linked, 0 to write it. */
static int try_reuse(extract_state *x, const kd_pfile *f, int pfd, const char *base)
{
	const kd_extract_opts *o = x->o;
	const char *rbase;
	struct stat st;

	if (o->reuse_dirfd < 0 || !o->reuse_manifest)
		return 0;
	const kd_pfile *old = kd_manifest_find(o->reuse_manifest, f->path);
	if (!old || (old->type != KD_FILE_REG && old->type != KD_FILE_HARDLINK) ||
	    old->mode != f->mode || strcmp(old->sha256, f->sha256) != 0)
		return 0;
	_cleanup_close_ int rfd = kd_open_parent(o->reuse_dirfd, f->path, &rbase, NULL);
	if (rfd < 0)
		return 0;
	if (fstatat(rfd, rbase, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode) ||
	    (uint64_t)st.st_size != f->size || (st.st_mode & 07777) != f->mode)
		return 0;
	if (linkat(rfd, rbase, pfd, base, 0) < 0)
		return 0;
	return 1;
}

static int extract_file(extract_state *x, kd_tar_reader *tr, const kd_pfile *f, const char *tpath,
			kd_error *err)
{
	_cleanup_sha256_ kd_sha256 h = {0};
	uint8_t bin[KD_SHA256_LEN];
	char hex[KD_SHA256_HEX_LEN + 1];
	const char *base;
	const void *blk;
	size_t len;
	uint64_t got = 0;
	int r, pfd = open_parent_cached(x, f->path, &base, err);

	if (pfd < 0)
		return pfd;
	if ((r = try_reuse(x, f, pfd, base)) > 0) {
		x->st.files_linked++;
		return kd_tar_skip(tr, err);
	}
	_cleanup_close_ int fd =
		openat(pfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, f->mode);
	if (fd < 0)
		return kd_err_errno(err, negative_errno(), "create '%s'", tpath);
	if (fchmod(fd, f->mode) < 0)
		return kd_err_errno(err, negative_errno(), "chmod '%s'", tpath);
	if ((r = kd_sha256_init(&h, err)) < 0)
		return r;
	while ((r = kd_tar_read_block(tr, &blk, &len, err)) > 0) {
		got += len;
		if (got > f->size)
			return kd_err(err, -EBADMSG, "'%s': more data than its size", tpath);
		kd_sha256_update(&h, blk, len);
		if ((r = write_all(fd, blk, len)) < 0)
			return kd_err_errno(err, r, "write '%s'", tpath);
	}
	if (r < 0)
		return r;
	if (got != f->size)
		return kd_err(err, -EBADMSG, "'%s': truncated (%llu of %llu bytes)", tpath,
			      (unsigned long long)got, (unsigned long long)f->size);
	if ((r = kd_sha256_final(&h, bin, err)) < 0)
		return r;
	kd_hex(bin, sizeof(bin), hex);
	if (strcmp(hex, f->sha256) != 0)
		return kd_err(err, -EBADMSG, "'%s': sha256 is %s, the manifest says %s", tpath, hex,
			      f->sha256);
	if (x->o->sync && fsync(fd) < 0)
		return kd_err_errno(err, negative_errno(), "fsync '%s'", tpath);
	x->st.files_written++;
	x->st.bytes_written += got;
	return 0;
}

static int extract_other(extract_state *x, const kd_pfile *f, const char *tpath, kd_error *err)
{
	const char *base, *tbase;
	struct stat st;
	int pfd = open_parent_cached(x, f->path, &base, err);

	if (pfd < 0)
		return pfd;
	switch (f->type) {
	case KD_FILE_DIR:
		if (mkdirat(pfd, base, 0755) < 0) {
			int r = negative_errno();
			if (r != -EEXIST || fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
			    !S_ISDIR(st.st_mode))
				return kd_err_errno(err, r, "mkdir '%s'", tpath);
		}
		return 0;
	case KD_FILE_SYMLINK:
		if (symlinkat(f->target, pfd, base) < 0)
			return kd_err_errno(err, negative_errno(), "symlink '%s'", tpath);
		return 0;
	case KD_FILE_HARDLINK: {
		const kd_pfile *t = kd_manifest_find(x->m, f->target);
		if (!t || !x->seen[t - x->m->files] || !x->sel[t - x->m->files])
			return kd_err(err, -EBADMSG,
				      "'%s': hardlink target '%s%s' was not extracted", tpath,
				      PREFIX, f->target);
		_cleanup_close_ int tfd = kd_open_parent(x->destfd, f->target, &tbase, err);
		if (tfd < 0)
			return tfd;
		if (linkat(tfd, tbase, pfd, base, 0) < 0)
			return kd_err_errno(err, negative_errno(), "link '%s'", tpath);
		return 0;
	}
	case KD_FILE_REG:
		break;
	}
	return kd_err(err, -EINVAL, "'%s': unexpected type", tpath);
}

static kd_file_type tar_to_file_type(kd_entry_type t)
{
	switch (t) {
	case KD_ENTRY_DIR:
		return KD_FILE_DIR;
	case KD_ENTRY_SYMLINK:
		return KD_FILE_SYMLINK;
	case KD_ENTRY_HARDLINK:
		return KD_FILE_HARDLINK;
	default:
		return KD_FILE_REG;
	}
}

/* Check one tar entry against the rules and the manifest; returns its manifest index. */
static ssize_t check_entry(extract_state *x, const kd_tar_entry *e, kd_error *err)
{
	const char *p = e->path;
	const kd_manifest *m = x->m;

	if (p[0] == '/')
		return kd_err(err, -EPERM, "'%s': absolute paths are refused", p);
	if (strncmp(p, PREFIX, PREFIX_LEN) != 0)
		return kd_err(err, -EPERM, "'%s' is outside %s", p, PREFIX);
	if (!kd_path_is_safe(p + PREFIX_LEN))
		return kd_err(err, -EPERM, "'%s': unsafe path ('..', '.' or empty components)", p);
	switch (e->type) {
	case KD_ENTRY_FILE:
	case KD_ENTRY_DIR:
	case KD_ENTRY_SYMLINK:
	case KD_ENTRY_HARDLINK:
		break;
	default:
		return kd_err(err, -EPERM, "'%s': %s entries are refused", p,
			      kd_entry_type_name(e->type));
	}
	if (e->mode & 07000)
		return kd_err(err, -EPERM, "'%s': mode %04o has setuid/setgid/sticky bits", p,
			      (unsigned)e->mode);
	if (e->type == KD_ENTRY_FILE && e->size > x->lim.max_entry_size)
		return kd_err(
			err, -EFBIG, "'%s': %llu bytes exceeds the limit of %llu bytes per file", p,
			(unsigned long long)e->size, (unsigned long long)x->lim.max_entry_size);
	const kd_pfile *f = kd_manifest_find(m, p + PREFIX_LEN);
	if (!f)
		return kd_err(err, -EPERM, "'%s' is not in the manifest", p);
	size_t i = (size_t)(f - m->files);
	if (x->seen[i])
		return kd_err(err, -EBADMSG, "'%s' appears twice in the archive", p);
	x->seen[i] = 1;
	kd_file_type t = tar_to_file_type(e->type);
	if (t != f->type)
		return kd_err(err, -EBADMSG, "'%s' is a %s in the archive, a %s in the manifest", p,
			      file_type_name(t), file_type_name(f->type));
	if ((t == KD_FILE_REG || t == KD_FILE_DIR) && e->mode != f->mode)
		return kd_err(err, -EBADMSG, "'%s': mode %04o in the archive, %04o in the manifest",
			      p, (unsigned)e->mode, (unsigned)f->mode);
	if (t == KD_FILE_REG && e->size != f->size)
		return kd_err(err, -EBADMSG, "'%s': size %llu in the archive, %llu in the manifest",
			      p, (unsigned long long)e->size, (unsigned long long)f->size);
	if (t == KD_FILE_SYMLINK && strcmp(e->link, f->target) != 0)
		return kd_err(err, -EBADMSG, "'%s': symlink to '%s', the manifest says '%s'", p,
			      e->link, f->target);
	if (t == KD_FILE_HARDLINK && (strncmp(e->link, PREFIX, PREFIX_LEN) != 0 ||
				      strcmp(e->link + PREFIX_LEN, f->target) != 0))
		return kd_err(err, -EBADMSG, "'%s': hardlink to '%s', the manifest says '%s%s'", p,
			      e->link, PREFIX, f->target);
	if (t == KD_FILE_REG) {
		x->total += e->size;
		if (x->total > x->lim.max_total)
			return kd_err(err, -EFBIG, "'%s': files exceed %llu bytes in total", p,
				      (unsigned long long)x->lim.max_total);
	}
	return (ssize_t)i;
}

static int fix_dir_modes(extract_state *x, kd_error *err)
{
	for (size_t i = x->m->n_files; i-- > 0;) {
		const kd_pfile *f = &x->m->files[i];
		if (!x->sel[i] || f->type != KD_FILE_DIR)
			continue;
		_cleanup_close_ int fd =
			kd_openat(x->destfd, f->path, O_RDONLY | O_DIRECTORY, 0, KD_NOFOLLOW, err);
		if (fd < 0)
			return fd;
		if (fchmod(fd, f->mode) < 0)
			return kd_err_errno(err, negative_errno(), "chmod '%s%s'", PREFIX, f->path);
		if (x->o->sync && fsync(fd) < 0)
			return kd_err_errno(err, negative_errno(), "fsync '%s%s'", PREFIX, f->path);
	}
	return 0;
}

static int extract_entries(extract_state *x, kd_tar_reader *tr, kd_error *err)
{
	kd_tar_entry e;
	int r;

	if ((r = kd_tar_next(tr, &e, err)) < 0)
		return r;
	if (r == 0 || strcmp(e.path, KD_PAYLOAD_MANIFEST_NAME) != 0)
		return kd_err(err, -EBADMSG, "the first entry is not %s", KD_PAYLOAD_MANIFEST_NAME);
	if ((r = kd_tar_skip(tr, err)) < 0)
		return r;
	while ((r = kd_tar_next(tr, &e, err)) > 0) {
		ssize_t i = check_entry(x, &e, err);
		if (i < 0)
			return (int)i;
		const kd_pfile *f = &x->m->files[i];
		if (!x->sel[i]) {
			x->st.entries_skipped++;
			if ((r = kd_tar_skip(tr, err)) < 0)
				return r;
			continue;
		}
		r = f->type == KD_FILE_REG ? extract_file(x, tr, f, e.path, err)
					   : extract_other(x, f, e.path, err);
		if (r < 0)
			return r;
	}
	if (r < 0)
		return r;
	for (size_t i = 0; i < x->m->n_files; i++)
		if (x->sel[i] && !x->seen[i])
			return kd_err(err, -EBADMSG, "'%s%s' is missing from the archive", PREFIX,
				      x->m->files[i].path);
	return fix_dir_modes(x, err);
}

int kd_payload_extract(kd_payload *p, int destfd, const kd_extract_opts *o,
		       kd_extract_stats *ret_stats, kd_error *err)
{
	static const kd_extract_opts defaults = {.reuse_dirfd = -1};
	_cleanup_(kd_tar_reader_freep) kd_tar_reader *tr = NULL;
	_cleanup_free_ bool *sel = NULL;
	_cleanup_free_ uint8_t *seen = NULL;
	extract_state x = {
		.m = p->manifest,
		.o = o ? o : &defaults,
		.destfd = destfd,
		.parentfd = -1,
		.lim = {KD_PAYLOAD_MAX_ENTRIES, KD_PAYLOAD_MAX_ENTRY_SIZE, KD_PAYLOAD_MAX_TOTAL},
	};
	int r;

	if (o && o->limits) {
		if (o->limits->max_entries)
			x.lim.max_entries = o->limits->max_entries;
		if (o->limits->max_entry_size)
			x.lim.max_entry_size = o->limits->max_entry_size;
		if (o->limits->max_total)
			x.lim.max_total = o->limits->max_total;
	}
	if (select_files(x.m, x.o->component_mask, &sel) < 0 ||
	    !(seen = calloc(x.m->n_files ? x.m->n_files : 1, 1)))
		return kd_err(err, -ENOMEM, "out of memory");
	x.sel = sel;
	x.seen = seen;
	/* +1: the manifest entry. */
	kd_tar_read_opts tl = {.max_entries = x.lim.max_entries + 1,
			       .max_path = KD_PATH_MAX,
			       .decompress_thread = true};
	r = kd_tar_open(p->fd, &tl, &tr, err);
	if (r >= 0)
		r = extract_entries(&x, tr, err);
	if (x.parentfd >= 0 && x.parentfd != destfd)
		close(x.parentfd);
	if (r < 0)
		return kd_err_wrap(err, r, "extract '%s'", p->name);
	if (ret_stats)
		*ret_stats = x.st;
	return 0;
}

/* ---- verify tree -------------------------------------------------------------------------- */

static int verify_one(const kd_manifest *m, const kd_pfile *f, int dirfd, bool rehash,
		      kd_error *err)
{
	const kd_pfile *data = f;
	struct stat st;
	int r = kd_lstat(dirfd, f->path, &st, NULL);

	if (r < 0)
		return kd_err_errno(err, r, "'%s%s'", PREFIX, f->path);
	if (f->type == KD_FILE_HARDLINK)
		data = kd_manifest_find(m, f->target);
	switch (f->type) {
	case KD_FILE_REG:
	case KD_FILE_HARDLINK:
		if (!S_ISREG(st.st_mode))
			return kd_err(err, -EBADMSG, "'%s%s' is not a regular file", PREFIX,
				      f->path);
		if ((uint64_t)st.st_size != data->size)
			return kd_err(err, -EBADMSG, "'%s%s': size %llu, the manifest says %llu",
				      PREFIX, f->path, (unsigned long long)st.st_size,
				      (unsigned long long)data->size);
		break;
	case KD_FILE_DIR:
		if (!S_ISDIR(st.st_mode))
			return kd_err(err, -EBADMSG, "'%s%s' is not a directory", PREFIX, f->path);
		break;
	case KD_FILE_SYMLINK: {
		char buf[KD_PATH_MAX + 1];
		if (!S_ISLNK(st.st_mode))
			return kd_err(err, -EBADMSG, "'%s%s' is not a symlink", PREFIX, f->path);
		if ((r = kd_readlink(dirfd, f->path, buf, sizeof(buf), err)) < 0)
			return r;
		if (strcmp(buf, f->target) != 0)
			return kd_err(err, -EBADMSG,
				      "'%s%s' points to '%s', the manifest says '%s'", PREFIX,
				      f->path, buf, f->target);
		return 0;
	}
	}
	if ((st.st_mode & 07777) != data->mode)
		return kd_err(err, -EBADMSG, "'%s%s': mode %04o, the manifest says %04o", PREFIX,
			      f->path, (unsigned)(st.st_mode & 07777), (unsigned)data->mode);
	if (rehash && S_ISREG(st.st_mode)) {
		uint8_t bin[KD_SHA256_LEN];
		char hex[KD_SHA256_HEX_LEN + 1];
		_cleanup_close_ int fd = kd_openat(dirfd, f->path, O_RDONLY, 0, KD_NOFOLLOW, err);
		if (fd < 0)
			return fd;
		if ((r = kd_sha256_fd(fd, bin, NULL, err)) < 0)
			return r;
		kd_hex(bin, sizeof(bin), hex);
		if (strcmp(hex, data->sha256) != 0)
			return kd_err(err, -EBADMSG, "'%s%s': sha256 is %s, the manifest says %s",
				      PREFIX, f->path, hex, data->sha256);
	}
	return 0;
}

int kd_payload_verify_tree(const kd_manifest *m, const bool *component_mask, int dirfd, bool rehash,
			   kd_error *err)
{
	_cleanup_free_ bool *sel = NULL;

	if (select_files(m, component_mask, &sel) < 0)
		return kd_err(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < m->n_files; i++) {
		if (!sel[i])
			continue;
		int r = verify_one(m, &m->files[i], dirfd, rehash, err);
		if (r < 0)
			return kd_err_wrap(err, r, "verify");
	}
	return 0;
}
