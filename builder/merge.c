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
#include "toml.h"

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

#define MERGE_MAX_CONFIG (1u << 20) /* bytes of one Kata configuration read here */

/* Does opt/kata/<rel> (an absolute /opt/kata/... path from a configuration) exist in the tree
 * as a file, or a symlink to one inside the tree? */
static bool tree_has(int treefd, const char *abs)
{
	static const char prefix[] = "/opt/kata/";
	if (strncmp(abs, prefix, sizeof(prefix) - 1) != 0)
		return false;
	_cleanup_close_ int fd = kd_openat(treefd, abs, O_PATH, 0, KD_IN_ROOT, NULL);
	struct stat st;
	return fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
}

/* A shim goes into the payload only when it can run: its runtime binary, its configuration,
 * and every file that configuration starts a VM with (hypervisor, kernel, guest image or
 * initrd) are in the tree. Upstream's layout: Go runtime shims under bin/ and
 * share/defaults/kata-containers/, runtime-rs shims under runtime-rs/. */
static int check_shim(int treefd, const char *shim, kd_error *err)
{
	size_t len = strlen(shim);
	bool rs = len > 11 && strcmp(shim + len - 11, "-runtime-rs") == 0;
	const char *bin = rs ? "/opt/kata/runtime-rs/bin/containerd-shim-kata-v2"
			     : "/opt/kata/bin/containerd-shim-kata-v2";
	_cleanup_free_ char *cfg = NULL, *text = NULL;
	_cleanup_toml_ kd_toml_doc *doc = NULL;
	size_t tlen = 0;
	int r;

	if (!tree_has(treefd, bin))
		return kd_err(err, -ENOENT, "shim %s: no runtime binary %s", shim, bin);
	if (asprintf(&cfg, "/opt/kata/share/defaults/kata-containers/%sconfiguration-%s.toml",
		     rs ? "runtime-rs/" : "", shim) < 0)
		return kd_err(err, -ENOMEM, "out of memory");
	if (!tree_has(treefd, cfg))
		return kd_err(err, -ENOENT, "shim %s: no configuration %s", shim, cfg);
	if ((r = kd_read_file(treefd, cfg, MERGE_MAX_CONFIG, &text, &tlen, err)) < 0)
		return kd_err_wrap(err, r, "shim %s", shim);
	if ((r = kd_toml_parse(cfg, text, tlen, &doc, err)) < 0)
		return kd_err_wrap(err, r, "shim %s", shim);
	const kd_toml_node *hvs = kd_toml_get(kd_toml_root(doc), "hypervisor");
	if (!hvs || kd_toml_count(hvs) != 1)
		return kd_err(err, -EINVAL, "shim %s: %s has no single [hypervisor.*] table", shim,
			      cfg);
	const kd_toml_node *hv = kd_toml_first(hvs);
	static const char *const keys[] = {"path", "kernel", "image", "initrd"};
	bool guest = false;
	for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
		const char *v = NULL;
		const kd_toml_node *n = kd_toml_get(hv, keys[i]);
		if (!n || kd_toml_get_string(n, &v, NULL) < 0 || !*v) {
			if (i < 2)
				return kd_err(err, -EINVAL, "shim %s: %s sets no hypervisor %s",
					      shim, cfg, keys[i]);
			continue;
		}
		if (!tree_has(treefd, v))
			return kd_err(err, -ENOENT,
				      "shim %s: its configuration's %s %s is not in the payload",
				      shim, keys[i], v);
		guest = guest || i >= 2;
	}
	if (!guest)
		return kd_err(err, -EINVAL, "shim %s: %s names no guest image or initrd", shim,
			      cfg);
	return 0;
}

int kd_build_payload(const kd_build_opts *o, const kd_shims *shims, const kd_payload_build_opts *po,
		     char ret_sha256[65], kd_error *err)
{
	_cleanup_strv_ char **names =
		kd_strv_copy(po->components ? po->components : shims->payload);
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
	{
		_cleanup_close_ int treefd = kd_root_open(tree, err);
		if (treefd < 0) {
			r = treefd;
			goto out;
		}
		json_object_object_foreach(sh, shim, _comps)
		{
			(void)_comps;
			if ((r = check_shim(treefd, shim, err)) < 0) {
				r = kd_err_wrap(err, r, "payload");
				goto out;
			}
		}
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
