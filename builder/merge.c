/* Payload assembly: extract each component tarball into one temp tree (a path provided by two
 * components fails), write a pack spec naming every component's paths and the shims whose
 * components are all present, and hand both to kd_payload_pack(). */
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "digest.h"
#include "fsroot.h"
#include "json.h"
#include "merge.h"
#include "payload.h"
#include "strv.h"

typedef struct claims {
	char **files; /* files and symlinks */
	char **dirs;
} claims;

static int on_path(const char *path, bool is_dir, void *userdata, kd_error *err)
{
	claims *c = userdata;
	if (kd_strv_push(is_dir ? &c->dirs : &c->files, path) < 0)
		return kd_err(err, -ENOMEM, "out of memory");
	return 0;
}

/* A directory is claimed explicitly only when nothing (of any component) lies below it. */
static bool has_child(claims *all, size_t n, const char *dir)
{
	size_t len = strlen(dir);
	for (size_t i = 0; i < n; i++) {
		for (char **p = all[i].files; p && *p; p++)
			if (strncmp(*p, dir, len) == 0 && (*p)[len] == '/')
				return true;
		for (char **p = all[i].dirs; p && *p; p++)
			if (strncmp(*p, dir, len) == 0 && (*p)[len] == '/')
				return true;
	}
	return false;
}

int kd_build_payload(const kd_build_opts *o, const kd_shims *shims, const kd_payload_build_opts *po,
		     char ret_sha256[65], kd_error *err)
{
	_cleanup_strv_ char **names =
		kd_strv_copy(po->components ? po->components : shims->components);
	_cleanup_free_ char *tmp = NULL, *tree = NULL, *spec_path = NULL, *spec_text = NULL;
	_cleanup_json_ struct json_object *spec = json_object_new_object();
	_cleanup_close_ int fd = -1;
	claims *all = NULL;
	size_t n = kd_strv_length(names);
	int r = 0;

	if (!names || !spec)
		return kd_err(err, -ENOMEM, "out of memory");
	if (n == 0)
		return kd_err(err, -EINVAL, "payload: no components");
	kd_strv_sort(names);
	if (asprintf(&tmp, "%s/work/payload.XXXXXX", kd_cache_dir(o->cache)) < 0 || !mkdtemp(tmp))
		return kd_err_errno(err, -EIO, "payload: temp dir");
	if (asprintf(&tree, "%s/tree", tmp) < 0 || asprintf(&spec_path, "%s/spec.json", tmp) < 0 ||
	    !(all = calloc(n, sizeof(*all)))) {
		r = kd_err(err, -ENOMEM, "out of memory");
		goto out;
	}
	struct json_object *comps = json_object_new_array();
	json_object_object_add(spec, "components", comps);
	json_object_object_add(spec, "version", json_object_new_string(o->versions->version));
	for (size_t i = 0; i < n; i++) {
		kd_build_result br;
		_cleanup_free_ char *tar = NULL;
		_cleanup_recipe_ kd_recipe *rc = NULL;
		_cleanup_free_ char *rpath = kd_recipe_path(o, names[i]);
		if ((r = kd_component_build(o, names[i], &br, err)) < 0)
			goto out;
		if (!rpath || (r = kd_recipe_load(rpath, o->versions, &rc, err)) < 0)
			goto out;
		if (asprintf(&tar, "%s/kata-static-%s.tar.zst", o->out_dir, names[i]) < 0) {
			r = kd_err(err, -ENOMEM, "out of memory");
			goto out;
		}
		if ((r = kd_component_extract(tar, tree, on_path, &all[i], err)) < 0) {
			r = kd_err_wrap(err, r, "payload: component %s", names[i]);
			goto out;
		}
		struct json_object *c = json_object_new_object(), *paths = json_object_new_array();
		json_object_object_add(c, "name", json_object_new_string(names[i]));
		json_object_object_add(c, "version", json_object_new_string(rc->version));
		json_object_object_add(c, "paths", paths);
		json_object_array_add(comps, c);
	}
	for (size_t i = 0; i < n; i++) {
		struct json_object *paths = NULL;
		json_object_object_get_ex(json_object_array_get_idx(comps, i), "paths", &paths);
		for (char **p = all[i].files; p && *p; p++)
			json_object_array_add(paths, json_object_new_string(*p));
		for (char **p = all[i].dirs; p && *p; p++)
			if (!has_child(all, n, *p)) {
				_cleanup_free_ char *d = NULL;
				if (asprintf(&d, "%s/", *p) >= 0)
					json_object_array_add(paths, json_object_new_string(d));
			}
		if (json_object_array_length(paths) == 0) {
			r = kd_err(err, -EINVAL, "payload: component %s has no files", names[i]);
			goto out;
		}
	}
	/* Only shims whose every component is in this payload. */
	struct json_object *sh = json_object_new_object();
	json_object_object_add(spec, "shims", sh);
	for (size_t i = 0; i < shims->n_shims; i++) {
		bool all_in = true;
		for (char **c = shims->shims[i].components; *c; c++)
			all_in = all_in && kd_strv_find(names, *c);
		if (!all_in)
			continue;
		struct json_object *a = json_object_new_array();
		for (char **c = shims->shims[i].components; *c; c++)
			json_object_array_add(a, json_object_new_string(*c));
		json_object_object_add(sh, shims->shims[i].name, a);
	}
	if (json_object_object_length(sh) == 0) {
		r = kd_err(err, -EINVAL, "payload: no shim has all its components in this payload");
		goto out;
	}
	if ((r = kd_json_format(spec, KD_JSON_PRETTY, &spec_text, NULL, err)) < 0)
		goto out;
	FILE *f = fopen(spec_path, "we");
	if (!f || fputs(spec_text, f) < 0 || fclose(f) != 0) {
		r = kd_err_errno(err, -EIO, "write %s", spec_path);
		goto out;
	}
	kd_pack_opts po2 = {.spec_path = spec_path,
			    .sign_key = po->sign_key,
			    .sign_pubkey = po->sign_pubkey,
			    .mtime = o->versions->source_date_epoch};
	if ((r = kd_payload_pack(tree, po->output, &po2, err)) < 0) {
		r = kd_err_wrap(err, r, "payload");
		goto out;
	}
	fd = open(po->output, O_RDONLY | O_CLOEXEC);
	uint8_t d[KD_SHA256_LEN];
	if (fd < 0 || (r = kd_sha256_fd(fd, d, NULL, err)) < 0) {
		r = kd_err_errno(err, r < 0 ? r : negative_errno(), "read %s", po->output);
		goto out;
	}
	kd_hex(d, sizeof(d), ret_sha256);
out:
	for (size_t i = 0; all && i < n; i++) {
		kd_strv_free(all[i].files);
		kd_strv_free(all[i].dirs);
	}
	free(all);
	if (tmp) {
		_cleanup_close_ int cfd = kd_root_open(kd_cache_dir(o->cache), NULL);
		const char *rel = tmp + strlen(kd_cache_dir(o->cache)) + 1;
		if (cfd >= 0)
			kd_remove_tree(cfd, rel, NULL);
	}
	return r;
}
