#include "kataconfig.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fsroot.h"
#include "payload.h"
#include "strv.h"
#include "toml.h"

#define KATA_CONFIG_MAX (1u << 20)
#define VALUE_MAX 4096

static const char banner[] = "# Managed by kata-deploy: a copy of the payload's file. Put your "
			     "changes in config.d/, which\n# Kata merges on top of it.\n";
static const char dropin_banner[] = "# Written by kata-deploy.\n";

bool kd_shim_is_rust(const char *shim)
{
	size_t n = strlen(shim), k = strlen("-runtime-rs");
	return !strcmp(shim, "dragonball") || !strcmp(shim, "cloud-hypervisor") ||
	       (n > k && !strcmp(shim + n - k, "-runtime-rs"));
}

const char *kd_shim_hypervisor(const char *shim)
{
	if (!strncmp(shim, "qemu", 4))
		return "qemu";
	if (!strncmp(shim, "clh", 3) || !strcmp(shim, "cloud-hypervisor"))
		return "clh";
	if (!strcmp(shim, "fc") || !strcmp(shim, "firecracker"))
		return "firecracker";
	if (!strncmp(shim, "openvmm", 7))
		return "openvmm";
	return shim; /* dragonball, remote, stratovirt */
}

const char *kd_variant_suffix(kd_variant v)
{
	return v == KD_VARIANT_DEBUG ? "-debug" : v == KD_VARIANT_DEVKIT ? "-devkit" : "";
}

/* The target's directory, relative to the prefix. */
static void target_dir(const kd_kata_target *t, char *buf, size_t size)
{
	if (t->custom)
		snprintf(buf, size, "%s/%s/%s", KD_KATA_RUNTIMES_DIR, KD_KATA_CUSTOM_DIR,
			 t->custom);
	else
		snprintf(buf, size, "%s/%s%s", KD_KATA_RUNTIMES_DIR, t->shim,
			 kd_variant_suffix(t->variant));
}

void kd_kata_target_paths(const char *prefix, const kd_kata_target *t, char *runtime_path,
			  size_t rsize, char *config_path, size_t csize)
{
	char dir[KD_PATH_MAX];
	target_dir(t, dir, sizeof(dir));
	snprintf(runtime_path, rsize, "%s%s/bin/containerd-shim-kata-v2", prefix,
		 kd_shim_is_rust(t->shim) ? "/runtime-rs" : "");
	snprintf(config_path, csize, "%s/%s/configuration-%s.toml", prefix, dir, t->shim);
}

void kd_kata_paths(const char *prefix, const char *shim, kd_variant v, char *runtime_path,
		   size_t rsize, char *config_path, size_t csize)
{
	kd_kata_target t = {.shim = shim, .variant = v};
	kd_kata_target_paths(prefix, &t, runtime_path, rsize, config_path, csize);
}

/* "URL" or "shim=URL;shim=URL" -> the value for shim, "" if none. */
static void per_shim(const char *spec, const char *shim, char *out, size_t size)
{
	out[0] = '\0';
	if (!spec || !*spec)
		return;
	if (!strchr(spec, '=') || strstr(spec, "://") < strchr(spec, '=')) {
		if (!strchr(spec, ';')) {
			snprintf(out, size, "%s", spec);
			return;
		}
	}
	_cleanup_strv_ char **items = kd_strv_split(spec, ';');
	for (size_t i = 0; items && items[i]; i++) {
		char *eq = strchr(items[i], '=');
		if (eq && (size_t)(eq - items[i]) == strlen(shim) &&
		    !strncmp(items[i], shim, strlen(shim)))
			snprintf(out, size, "%s", eq + 1);
	}
}

int kd_kata_check_proxy(const char *what, const char *v, kd_error *err)
{
	for (const char *p = v; p && *p; p++) {
		unsigned char c = (unsigned char)*p;
		if (c > ' ' && c != 0x7f && c != '"' && c != '\\')
			continue;
		const char *name = c == ' '    ? "a space"
				   : c == '"'  ? "a quote"
				   : c == '\\' ? "a backslash"
					       : "a control character";
		return kd_err(err, -EINVAL,
			      "%s '%s' contains %s at byte %zu: the value goes into the guest "
			      "kernel's command line, where it would add parameters of its own",
			      what, v, name, (size_t)(p - v) + 1);
	}
	return 0;
}

int kd_kata_validate(const kd_kata_opts *o, char *const *shims, kd_error *err)
{
	int r;
	if ((r = kd_kata_check_proxy("--agent-https-proxy", o->https_proxy, err)) < 0 ||
	    (r = kd_kata_check_proxy("--agent-no-proxy", o->no_proxy, err)) < 0)
		return r;
	_cleanup_strv_ char **words = o->annotations ? kd_strv_split(o->annotations, ' ') : NULL;
	for (size_t i = 0; words && words[i]; i++) {
		char *c = strchr(words[i], ':');
		if (!c)
			continue;
		*c = '\0';
		if (!kd_strv_find(shims, words[i]))
			return kd_err(err, -EINVAL,
				      "--allowed-hypervisor-annotations: shim '%s' is not enabled",
				      words[i]);
	}
	_cleanup_strv_ char **gp =
		o->force_guest_pull ? kd_strv_split(o->force_guest_pull, ',') : NULL;
	for (size_t i = 0; gp && gp[i]; i++)
		if (gp[i][0] && !kd_strv_find(shims, gp[i]))
			return kd_err(err, -EINVAL, "--force-guest-pull: shim '%s' is not enabled",
				      gp[i]);
	return 0;
}

/* Set a key in a table that may not exist yet. */
static int ensure(kd_toml_doc *d, const char *const *path, size_t n, kd_error *err)
{
	int r = kd_toml_add_table(d, path, n, err);
	if (r == -EEXIST) {
		kd_err_clear(err);
		return 0;
	}
	return r;
}

static int add_text(kd_kata_file *f, size_t *n, const char *dir, const char *name,
		    const kd_toml_doc *doc, kd_error *err)
{
	if (*n >= KD_KATA_MAX_FILES)
		return kd_err(err, -E2BIG, "too many Kata drop-ins");
	(void)err;
	/* The banner goes on top afterwards: the editor keeps a lone trailing comment last. */
	size_t len, bl = strlen(dropin_banner);
	const char *t = kd_toml_text(doc, &len);
	f[*n].text = malloc(bl + len + 1);
	if (!f[*n].text)
		return -ENOMEM;
	memcpy(f[*n].text, dropin_banner, bl);
	memcpy(f[*n].text + bl, t, len);
	f[*n].text[bl + len] = '\0';
	snprintf(f[*n].path, sizeof(f[*n].path), "%s/config.d/%s", dir, name);
	f[*n].mode = 0;
	(*n)++;
	return 0;
}

static int tree_read(const kd_tree_src *tree, const char *path, char **data, size_t *len,
		     kd_error *err)
{
	return tree->read ? tree->read(tree->userdata, path, KATA_CONFIG_MAX, data, len, err)
			  : kd_read_file(tree->fd, path, KATA_CONFIG_MAX, data, len, err);
}

static bool tree_has(const kd_tree_src *tree, const char *path)
{
	if (tree->read && tree->exists)
		return tree->exists(tree->userdata, path);
	if (tree->read) {
		_cleanup_free_ char *data = NULL;
		size_t len;
		kd_error e = {0};
		int r = tree_read(tree, path, &data, &len, &e);
		return r == 0 || r == -EFBIG;
	}
	struct stat st;
	return fstatat(tree->fd, path, &st, 0) == 0 && S_ISREG(st.st_mode);
}

/* A string value from the payload, with /opt/kata/ moved under the install prefix. */
/* A string of the payload under /opt/kata/, moved under prefix; false when it is not one. */
static bool moved(const char *s, const char *prefix, char *out, size_t size)
{
	if (strncmp(s, "/opt/kata/", 10) != 0)
		return false;
	snprintf(out, size, "%s/%s", prefix, s + 10);
	return true;
}

static char *prefixed_quote(const char *s, const char *prefix)
{
	char buf[VALUE_MAX];
	return kd_toml_quote(moved(s, prefix, buf, sizeof(buf)) ? buf : s);
}

/* Append "{ k = v, ... }" for one guest extension image table of the pristine file. */
static int append_image(char *out, size_t size, size_t *k, const kd_toml_doc *doc,
			const kd_toml_node *t, const char *prefix)
{
	const char *text = kd_toml_text(doc, NULL);
	*k += (size_t)snprintf(out + *k, size - *k, "%s{ ", *k > 1 ? ", " : "");
	for (const kd_toml_node *e = kd_toml_first(t); e && *k < size; e = kd_toml_next(e)) {
		size_t kl, vs, ve;
		const char *key = kd_toml_key(e, &kl), *sv;
		_cleanup_free_ char *qk = strndup(key, kl), *qv = NULL;
		_cleanup_free_ char *quoted = qk ? kd_toml_quote(qk) : NULL;
		if (!quoted)
			return -ENOMEM;
		if (kd_toml_get_string(e, &sv, NULL) == 0)
			qv = prefixed_quote(sv, prefix);
		else if (kd_toml_value_range(e, &vs, &ve) == 0)
			qv = strndup(text + vs, ve - vs);
		else
			return -EINVAL; /* a nested table: not a guest extension image */
		if (!qv)
			return -ENOMEM;
		*k += (size_t)snprintf(out + *k, size - *k, "%s%s = %s",
				       e == kd_toml_first(t) ? "" : ", ", quoted, qv);
	}
	if (*k < size)
		*k += (size_t)snprintf(out + *k, size - *k, " }");
	return *k < size ? 0 : -E2BIG;
}

/* 25-devkit.toml: the debug console, and the devkit image appended to the payload's guest
 * extension images (a drop-in replaces an array, so the base entries are repeated). */
static int devkit_dropin(const kd_tree_src *tree, const kd_toml_doc *pristine, const char *shim,
			 const kd_kata_opts *o, kd_toml_doc **ret, kd_error *err)
{
	const char *hv = kd_shim_hypervisor(shim);
	const char *hp[] = {"hypervisor", hv}, *ap[] = {"agent", "kata"};
	if (!tree_has(tree, KD_DEVKIT_IMAGE))
		return kd_err(err, -ENOENT,
			      "devkit handlers need the devkit guest extension image, but the "
			      "payload has no %s",
			      KD_DEVKIT_IMAGE);
	_cleanup_free_ char *hash = NULL;
	size_t hl = 0;
	kd_error e2 = {0};
	int r = tree_read(tree, KD_DEVKIT_ROOT_HASH, &hash, &hl, &e2);
	if (r < 0 && r != -ENOENT)
		return kd_err(err, r, "%s", e2.msg);
	char verity[VALUE_MAX] = "";
	if (hash) {
		/* One non-empty line: the dm-verity parameters. */
		_cleanup_strv_ char **lines = kd_strv_split(hash, '\n');
		size_t nonempty = 0;
		for (size_t i = 0; lines && lines[i]; i++) {
			char *l = lines[i], *end = l + strlen(l);
			while (*l == ' ' || *l == '\t' || *l == '\r')
				l++;
			while (end > l && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
				*--end = '\0';
			if (*l && nonempty++ == 0)
				snprintf(verity, sizeof(verity), "%s", l);
		}
		if (nonempty != 1)
			return kd_err(err, -EINVAL,
				      "%s: expected one line of dm-verity parameters, "
				      "found %zu",
				      KD_DEVKIT_ROOT_HASH, nonempty);
	}
	_cleanup_free_ char *list = malloc(KATA_CONFIG_MAX);
	_cleanup_free_ char *path = NULL, *qv = NULL;
	char abs[VALUE_MAX];
	size_t k = 0;
	if (!list)
		return -ENOMEM;
	k += (size_t)snprintf(list, KATA_CONFIG_MAX, "[");
	const kd_toml_node *old =
		kd_toml_get(kd_toml_table(pristine, hp, 2), "guest_extension_images");
	for (size_t i = 0; old && i < kd_toml_count(old); i++) {
		const kd_toml_node *t = kd_toml_at(old, i);
		const char *name = NULL;
		kd_toml_get_string(kd_toml_get(t, "name"), &name, NULL);
		if (name && !strcmp(name, "devkit"))
			continue; /* ours replaces it */
		if ((r = append_image(list, KATA_CONFIG_MAX, &k, pristine, t, o->prefix)) < 0)
			return kd_err(err, r,
				      "guest_extension_images of shim '%s' cannot be copied", shim);
	}
	snprintf(abs, sizeof(abs), "%s/%s", o->prefix, KD_DEVKIT_IMAGE);
	path = kd_toml_quote(abs);
	qv = kd_toml_quote(verity);
	if (!path || !qv)
		return -ENOMEM;
	k += (size_t)snprintf(list + k, KATA_CONFIG_MAX - k,
			      "%s{ name = \"devkit\", path = %s%s%s }]", k > 1 ? ", " : "", path,
			      verity[0] ? ", verity_params = " : "", verity[0] ? qv : "");
	if (k >= KATA_CONFIG_MAX)
		return kd_err(err, -E2BIG, "guest_extension_images of shim '%s' too long", shim);
	_cleanup_toml_ kd_toml_doc *d = NULL;
	if ((r = kd_toml_parse("25", "", 0, &d, err)) < 0 || (r = ensure(d, ap, 2, err)) < 0 ||
	    (r = kd_toml_set_bool(d, ap, 2, "debug_console_enabled", true, err)) < 0 ||
	    (r = ensure(d, hp, 2, err)) < 0 ||
	    (r = kd_toml_set_raw(d, hp, 2, "guest_extension_images", list, err)) < 0)
		return r;
	*ret = TAKE_PTR(d);
	return 0;
}

/* 10-installation-prefix.toml: every string and string list of [hypervisor.<hv>] that names a
 * file under /opt/kata/ (path, kernel, image, firmware, valid_hypervisor_paths, ...) moved under
 * the prefix. QEMU finds its firmware only under its build prefix, so its path becomes a
 * wrapper runtimes/bin/<qemu>-installation-prefix that adds -L <prefix>/share/kata-qemu/qemu/;
 * the wrapper is one more file in ret (mode 0755). */
static int prefix_dropin(const kd_toml_doc *pristine, const char *hv, const char *pfx,
			 const char *prefix, kd_toml_doc *d, kd_kata_file *ret, size_t *n,
			 kd_error *err)
{
	const char *hp[] = {"hypervisor", hv};
	const kd_toml_node *t = kd_toml_table(pristine, hp, 2);
	char v[VALUE_MAX], wrapper[VALUE_MAX] = "";
	const char *qemu;
	int r;
	if (!strcmp(hv, "qemu") && kd_toml_get_string(kd_toml_get(t, "path"), &qemu, NULL) == 0 &&
	    !strncmp(qemu, "/opt/kata/bin/", 14) && !strchr(qemu + 14, '/')) {
		if (*n >= KD_KATA_MAX_FILES)
			return kd_err(err, -E2BIG, "too many Kata drop-ins");
		snprintf(wrapper, sizeof(wrapper), "%s/%s/bin/%s-installation-prefix", prefix,
			 KD_KATA_RUNTIMES_DIR, qemu + 14);
		_cleanup_free_ char *bin = NULL, *fw = NULL;
		snprintf(v, sizeof(v), "%s/bin/%s", prefix, qemu + 14);
		bin = kd_toml_quote(v); /* TOML basic strings are valid sh words in '...' */
		snprintf(v, sizeof(v), "%s/share/kata-qemu/qemu/", prefix);
		fw = kd_toml_quote(v);
		if (!bin || !fw)
			return -ENOMEM;
		if (asprintf(
			    &ret[*n].text,
			    "#!/bin/sh\n# Written by kata-deploy: QEMU looks for its firmware under "
			    "its build prefix only;\n# Kata is installed in %s.\nexec %s -L %s "
			    "\"$@\"\n",
			    prefix, bin, fw) < 0)
			return -ENOMEM;
		snprintf(ret[*n].path, sizeof(ret[*n].path), "%s/%s/bin/%s-installation-prefix",
			 pfx, KD_KATA_RUNTIMES_DIR, qemu + 14);
		ret[*n].mode = 0755;
		(*n)++;
	}
	for (const kd_toml_node *e = kd_toml_first(t); e; e = kd_toml_next(e)) {
		const char *key = kd_toml_key(e, NULL), *s;
		if (kd_toml_get_string(e, &s, NULL) == 0) {
			if (!moved(s, prefix, v, sizeof(v)))
				continue;
			if ((r = ensure(d, hp, 2, err)) < 0 ||
			    (r = kd_toml_set_string(
				     d, hp, 2, key,
				     wrapper[0] && !strcmp(key, "path") ? wrapper : v, err)) < 0)
				return r;
			continue;
		}
		if (kd_toml_type_of(e) != KD_TOML_ARRAY)
			continue;
		size_t cnt = kd_toml_count(e), any = 0;
		if (cnt && kd_toml_type_of(kd_toml_at(e, 0)) == KD_TOML_TABLE) {
			/* guest_extension_images: tables re-emitted with their paths moved */
			_cleanup_free_ char *list = malloc(KATA_CONFIG_MAX);
			size_t k = 0;
			if (!list)
				return -ENOMEM;
			k += (size_t)snprintf(list, KATA_CONFIG_MAX, "[");
			for (size_t i = 0; i < cnt; i++)
				if ((r = append_image(list, KATA_CONFIG_MAX - 1, &k, pristine,
						      kd_toml_at(e, i), prefix)) < 0)
					return kd_err(err, r,
						      "%s of [hypervisor.%s] cannot be copied", key,
						      hv);
			snprintf(list + k, KATA_CONFIG_MAX - k, "]");
			if (strstr(list, prefix) &&
			    ((r = ensure(d, hp, 2, err)) < 0 ||
			     (r = kd_toml_set_raw(d, hp, 2, key, list, err)) < 0))
				return r;
			continue;
		}
		_cleanup_strv_ char **list = calloc(1, sizeof(char *));
		if (!list)
			return -ENOMEM;
		for (size_t i = 0; i < cnt; i++) {
			if (kd_toml_get_string(kd_toml_at(e, i), &s, NULL) < 0)
				break;
			bool m = moved(s, prefix, v, sizeof(v));
			any += m;
			if (kd_strv_push(&list, m ? v : s) < 0)
				return -ENOMEM;
		}
		if (!any || kd_strv_length(list) != cnt)
			continue; /* no path of ours, or not a list of strings */
		if (wrapper[0] && !strcmp(key, "valid_hypervisor_paths") &&
		    kd_strv_push(&list, wrapper) < 0)
			return -ENOMEM;
		if ((r = ensure(d, hp, 2, err)) < 0 ||
		    (r = kd_toml_set_strings(d, hp, 2, key, (const char *const *)list,
					     kd_strv_length(list), err)) < 0)
			return r;
	}
	return 0;
}

static void source_path(const char *shim, char *buf, size_t size)
{
	snprintf(buf, size, "share/defaults/kata-containers/%sconfiguration-%s.toml",
		 kd_shim_is_rust(shim) ? "runtime-rs/" : "", shim);
}

static int check_source(const kd_manifest *m, const bool *mask, const char *path, const char *what,
			kd_error *err)
{
	const kd_pfile *f = kd_manifest_find(m, path);
	if (!f || !mask[f->component] || f->type == KD_FILE_REG || f->type == KD_FILE_HARDLINK)
		return 0; /* a missing file is the render's error, the same for install and plan */
	return kd_err(err, -EINVAL,
		      "%s %s%s is a %s in the payload; it must be a regular file (kata-deploy "
		      "reads it without following links)",
		      what, KD_PAYLOAD_TREE_PREFIX, path,
		      f->type == KD_FILE_SYMLINK ? "symlink" : "directory");
}

bool kd_debug_tools_select(const kd_manifest *m, bool debug, bool *mask)
{
	bool found = false;
	for (size_t i = 0; debug && i < m->n_components; i++)
		if (!strcmp(m->components[i].name, KD_KATA_CTL_COMPONENT))
			found = mask[i] = true;
	return found || !debug;
}

int kd_kata_check_sources(const kd_manifest *m, const bool *mask, char *const *shims, bool devkit,
			  kd_error *err)
{
	char path[KD_PATH_MAX], what[128];
	int r;
	for (size_t i = 0; shims && shims[i]; i++) {
		source_path(shims[i], path, sizeof(path));
		snprintf(what, sizeof(what), "the configuration of shim '%s',", shims[i]);
		if ((r = check_source(m, mask, path, what, err)) < 0)
			return r;
	}
	if (devkit)
		return check_source(m, mask, KD_DEVKIT_ROOT_HASH, "the devkit image's root hash,",
				    err);
	return 0;
}

int kd_kata_render(const kd_tree_src *tree, const char *shim, kd_variant v, const kd_kata_opts *o,
		   kd_kata_file *ret, size_t *ret_n, kd_error *err)
{
	kd_kata_target t = {.shim = shim, .variant = v};
	return kd_kata_render_target(tree, &t, o, ret, ret_n, err);
}

int kd_kata_render_target(const kd_tree_src *tree, const kd_kata_target *t, const kd_kata_opts *o,
			  kd_kata_file *ret, size_t *ret_n, kd_error *err)
{
	char src[KD_PATH_MAX], dir[KD_PATH_MAX], sub[KD_PATH_MAX], v[VALUE_MAX];
	const char *shim = t->shim;
	kd_variant variant = t->variant;
	_cleanup_free_ char *data = NULL;
	_cleanup_strv_ char **gp = NULL;
	size_t len, n = 0;
	const char *hv = kd_shim_hypervisor(shim);
	const char *pfx = o->prefix[0] == '/' ? o->prefix + 1 : o->prefix;
	source_path(shim, src, sizeof(src));
	int r = tree_read(tree, src, &data, &len, err);
	if (r < 0)
		return kd_err_wrap(err, r, "the payload has no configuration for shim '%s'", shim);
	_cleanup_toml_ kd_toml_doc *pristine = NULL;
	if ((r = kd_toml_parse(src, data, len, &pristine, err)) < 0)
		return r;
	target_dir(t, sub, sizeof(sub));
	snprintf(dir, sizeof(dir), "%s/%s", pfx, sub);

	/* The managed copy. */
	size_t bl = strlen(banner);
	ret[n].text = malloc(bl + len + 1);
	if (!ret[n].text)
		return -ENOMEM;
	memcpy(ret[n].text, banner, bl);
	memcpy(ret[n].text + bl, data, len + 1);
	snprintf(ret[n].path, sizeof(ret[n].path), "%s/configuration-%s.toml", dir, shim);
	ret[n].mode = 0;
	n++;

	const char *hp[] = {"hypervisor", hv};
	if (strcmp(o->prefix, "/opt/kata") != 0) {
		_cleanup_toml_ kd_toml_doc *d = NULL;
		if ((r = kd_toml_parse("10", "", 0, &d, err)) < 0 ||
		    (r = prefix_dropin(pristine, hv, pfx, o->prefix, d, ret, &n, err)) < 0 ||
		    (r = add_text(ret, &n, dir, "10-installation-prefix.toml", d, err)) < 0)
			goto fail;
	}
	if (variant == KD_VARIANT_DEBUG) {
		_cleanup_toml_ kd_toml_doc *d = NULL;
		const char *rp[] = {"runtime"}, *ap[] = {"agent", "kata"};
		if ((r = kd_toml_parse("20", "", 0, &d, err)) < 0 ||
		    (r = ensure(d, hp, 2, err)) < 0 ||
		    (r = kd_toml_set_bool(d, hp, 2, "enable_debug", true, err)) < 0 ||
		    (r = ensure(d, rp, 1, err)) < 0 ||
		    (r = kd_toml_set_bool(d, rp, 1, "enable_debug", true, err)) < 0 ||
		    (r = ensure(d, ap, 2, err)) < 0 ||
		    (r = kd_toml_set_bool(d, ap, 2, "enable_debug", true, err)) < 0 ||
		    (r = ensure(d, ap, 2, err)) < 0 ||
		    (r = kd_toml_set_bool(d, ap, 2, "debug_console_enabled", true, err)) < 0 ||
		    (r = add_text(ret, &n, dir, "20-debug.toml", d, err)) < 0)
			goto fail;
	}
	if (o->k0s && !kd_shim_is_rust(shim)) {
		/* k0s's kubelet keeps pod volumes under /var/lib/k0s/kubelet: the Go runtime needs
		 * it to recognise ConfigMap / Secret volumes and propagate their updates. */
		_cleanup_toml_ kd_toml_doc *d = NULL;
		const char *rp[] = {"runtime"};
		if ((r = kd_toml_parse("22", "", 0, &d, err)) < 0 ||
		    (r = ensure(d, rp, 1, err)) < 0 ||
		    (r = kd_toml_set_string(d, rp, 1, "kubelet_root_dir", "/var/lib/k0s/kubelet",
					    err)) < 0 ||
		    (r = add_text(ret, &n, dir, "22-k0s-kubelet-root.toml", d, err)) < 0)
			goto fail;
	}
	if (variant == KD_VARIANT_DEVKIT) {
		_cleanup_toml_ kd_toml_doc *d = NULL;
		if ((r = devkit_dropin(tree, pristine, shim, o, &d, err)) < 0 ||
		    (r = add_text(ret, &n, dir, "25-devkit.toml", d, err)) < 0)
			goto fail;
	}
	char https[1024], noproxy[1024];
	per_shim(o->https_proxy, shim, https, sizeof(https));
	per_shim(o->no_proxy, shim, noproxy, sizeof(noproxy));
	bool guest_debug = variant == KD_VARIANT_DEBUG;
	if (https[0] || noproxy[0] || guest_debug) {
		/* One file: a drop-in replaces the whole kernel_params string. */
		const char *base = "";
		kd_toml_get_string(kd_toml_get(kd_toml_table(pristine, hp, 2), "kernel_params"),
				   &base, NULL);
		char *extra[3] = {NULL, NULL, NULL};
		if (https[0] && asprintf(&extra[0], "agent.https_proxy=%s", https) < 0)
			extra[0] = NULL;
		if (noproxy[0] && asprintf(&extra[1], "agent.no_proxy=%s", noproxy) < 0)
			extra[1] = NULL;
		size_t k = (size_t)snprintf(v, sizeof(v), "%s", base);
		for (size_t i = 0; i < 3 && k < sizeof(v); i++) {
			const char *x =
				i == 2 ? (guest_debug ? "agent.log=debug initcall_debug" : NULL)
				       : extra[i];
			if (x)
				k += (size_t)snprintf(v + k, sizeof(v) - k, "%s%s", k ? " " : "",
						      x);
		}
		free(extra[0]);
		free(extra[1]);
		if (k >= sizeof(v)) {
			r = kd_err(err, -E2BIG, "kernel_params of shim '%s' longer than %d bytes",
				   shim, VALUE_MAX - 1);
			goto fail;
		}
		_cleanup_toml_ kd_toml_doc *d = NULL;
		if ((r = kd_toml_parse("30", "", 0, &d, err)) < 0 ||
		    (r = ensure(d, hp, 2, err)) < 0 ||
		    (r = kd_toml_set_string(d, hp, 2, "kernel_params", v, err)) < 0 ||
		    (r = add_text(ret, &n, dir, "30-kernel-params.toml", d, err)) < 0)
			goto fail;
	}
	if (o->annotations && *o->annotations) {
		_cleanup_strv_ char **list = calloc(1, sizeof(char *));
		_cleanup_strv_ char **words = kd_strv_split(o->annotations, ' ');
		const kd_toml_node *old =
			kd_toml_get(kd_toml_table(pristine, hp, 2), "enable_annotations");
		for (size_t i = 0; old && list && i < kd_toml_count(old); i++) {
			const char *s;
			if (kd_toml_get_string(kd_toml_at(old, i), &s, NULL) == 0 &&
			    !kd_strv_find(list, s))
				kd_strv_push(&list, s);
		}
		for (size_t i = 0; words && list && words[i]; i++) {
			char *c = strchr(words[i], ':');
			if (c && (size_t)(c - words[i]) == strlen(shim) &&
			    !strncmp(words[i], shim, strlen(shim))) {
				_cleanup_strv_ char **more = kd_strv_split(c + 1, ',');
				for (size_t k = 0; more && more[k]; k++)
					if (!kd_strv_find(list, more[k]))
						kd_strv_push(&list, more[k]);
			} else if (!c && !kd_strv_find(list, words[i])) {
				kd_strv_push(&list, words[i]);
			}
		}
		if (!list || !words) {
			r = -ENOMEM;
			goto fail;
		}
		kd_strv_sort(list);
		_cleanup_toml_ kd_toml_doc *d = NULL;
		if ((r = kd_toml_parse("40", "", 0, &d, err)) < 0 ||
		    (r = ensure(d, hp, 2, err)) < 0 ||
		    (r = kd_toml_set_strings(d, hp, 2, "enable_annotations",
					     (const char *const *)list, kd_strv_length(list),
					     err)) < 0 ||
		    (r = add_text(ret, &n, dir, "40-annotations.toml", d, err)) < 0)
			goto fail;
	}
	if (o->force_guest_pull)
		gp = kd_strv_split(o->force_guest_pull, ',');
	if (gp && kd_strv_find(gp, shim)) {
		/* Upstream's EXPERIMENTAL_FORCE_GUEST_PULL: the runtime pulls every image in the
		 * guest, whatever the snapshotter. */
		_cleanup_toml_ kd_toml_doc *d = NULL;
		const char *rp[] = {"runtime"};
		if ((r = kd_toml_parse("45", "", 0, &d, err)) < 0 ||
		    (r = ensure(d, rp, 1, err)) < 0 ||
		    (r = kd_toml_set_bool(d, rp, 1, "experimental_force_guest_pull", true, err)) <
			    0 ||
		    (r = add_text(ret, &n, dir, "45-force-guest-pull.toml", d, err)) < 0)
			goto fail;
	}
	if (t->user_dropin) {
		static const char user_banner[] = "# Written by kata-deploy from the user drop-in "
						  "(dropin-<name>.toml); edit that instead.\n";
		size_t ul = strlen(t->user_dropin), bl2 = strlen(user_banner);
		if (n >= KD_KATA_MAX_FILES) {
			r = kd_err(err, -E2BIG, "too many Kata drop-ins");
			goto fail;
		}
		ret[n].text = malloc(bl2 + ul + 1);
		if (!ret[n].text) {
			r = -ENOMEM;
			goto fail;
		}
		memcpy(ret[n].text, user_banner, bl2);
		memcpy(ret[n].text + bl2, t->user_dropin, ul + 1);
		snprintf(ret[n].path, sizeof(ret[n].path), "%s/config.d/50-user-overrides.toml",
			 dir);
		ret[n].mode = 0;
		n++;
	}
	*ret_n = n;
	return 0;
fail:
	kd_kata_files_free(ret, n);
	return r;
}

void kd_kata_files_free(kd_kata_file *f, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(f[i].text);
		f[i].text = NULL;
	}
}
