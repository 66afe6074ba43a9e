#include "containerd.h"

#include <fnmatch.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsroot.h"
#include "log.h"
#include "strv.h"

#define CONFIG_MAX_SIZE KD_TOML_MAX_SIZE
#define KEY_MAX 1024

const char *kd_containerd_runtime_plugin(int version)
{
	if (version <= 1)
		return "cri";
	if (version == 2)
		return "io.containerd.grpc.v1.cri";
	return "io.containerd.cri.v1.runtime";
}

const char *kd_containerd_skeleton(int version)
{
	static char buf[160];
	snprintf(buf, sizeof(buf),
		 "# Written by kata-deploy: Kata Containers runtime handlers.\n"
		 "# Removed by 'kata-deploy uninstall'.\nversion = %d\n",
		 version);
	return buf;
}

static bool bare_key(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '_' || *s == '-'))
			return false;
	return true;
}

int kd_toml_key_join(const char *const *parts, size_t n, char *out, size_t size)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		if (strchr(parts[i], '"') || strchr(parts[i], '\\') || strchr(parts[i], '\n'))
			return -EINVAL;
		int k = snprintf(out + o, size - o, bare_key(parts[i]) ? "%s%s" : "%s\"%s\"",
				 i ? "." : "", parts[i]);
		if (k < 0 || (size_t)k >= size - o)
			return -ENAMETOOLONG;
		o += (size_t)k;
	}
	return 0;
}

int kd_toml_key_split(const char *key, char *buf, size_t size, const char **parts, size_t max)
{
	size_t n = 0, o = 0;
	const char *p = key;
	while (*p) {
		if (n == max || o >= size)
			return -E2BIG;
		parts[n++] = buf + o;
		if (*p == '"') {
			p++;
			while (*p && *p != '"' && o + 1 < size)
				buf[o++] = *p++;
			if (*p != '"')
				return -EINVAL;
			p++;
		} else {
			while (*p && *p != '.' && o + 1 < size)
				buf[o++] = *p++;
		}
		buf[o++] = '\0';
		if (*p == '.')
			p++;
		else if (*p)
			return -EINVAL;
	}
	return (int)n;
}

static int read_doc(int rootfd, const char *path, kd_toml_doc **ret, kd_error *err)
{
	_cleanup_free_ char *data = NULL;
	size_t len;
	int r = kd_read_file(rootfd, path, CONFIG_MAX_SIZE, &data, &len, err);
	if (r < 0)
		return r;
	char name[KD_PATH_MAX];
	snprintf(name, sizeof(name), "/%s", path);
	return kd_toml_parse(name, data, len, ret, err);
}

bool kd_containerd_imports_cover(char *const *imports, const char *dir, const char *abs)
{
	char pat[KD_PATH_MAX];
	for (size_t i = 0; imports && imports[i]; i++) {
		if (imports[i][0] == '/')
			snprintf(pat, sizeof(pat), "%s", imports[i]);
		else
			snprintf(pat, sizeof(pat), "/%s/%s", dir, imports[i]);
		if (fnmatch(pat, abs, FNM_PATHNAME) == 0)
			return true;
	}
	return false;
}

/* Does node hold only the chain keys[0].keys[1]... down to a table whose entries are all named
 * kata-*? Their number, or -1. */
static int kata_only(const kd_toml_node *node, const char *const *keys, size_t n)
{
	if (kd_toml_type_of(node) != KD_TOML_TABLE)
		return -1;
	if (n > 0)
		return kd_toml_count(node) == 1 && kd_toml_get(node, keys[0])
			       ? kata_only(kd_toml_get(node, keys[0]), keys + 1, n - 1)
			       : -1;
	int c = 0;
	for (const kd_toml_node *e = kd_toml_first(node); e; e = kd_toml_next(e), c++)
		if (strncmp(kd_toml_key(e, NULL), "kata-", 5) != 0)
			return -1;
	return c;
}

/* A k3s/rke2 template we wrote: the base line, then only kata-* handler tables (and their
 * runtime_platforms). An admin's template may well start with the same line. */
static bool k3s_template_is_ours(int rootfd, const char *path)
{
	_cleanup_free_ char *text = NULL;
	size_t len, bl = strlen(KD_K3S_TEMPLATE_BASE);
	_cleanup_toml_ kd_toml_doc *d = NULL;
	if (kd_read_file(rootfd, path, CONFIG_MAX_SIZE, &text, &len, NULL) < 0 || len < bl ||
	    strncmp(text, KD_K3S_TEMPLATE_BASE, bl) != 0 ||
	    kd_toml_parse(path, text + bl, len - bl, &d, NULL) < 0)
		return false;
	static const char *const plugins[] = {"plugins"};
	static const char *const runtimes[] = {"containerd", "runtimes"};
	static const char *const platforms[] = {"runtime_platforms"};
	const kd_toml_node *t = kd_toml_table(d, plugins, 1);
	if (!t || kd_toml_count(kd_toml_root(d)) != 1)
		return false;
	int handlers = 0;
	for (const kd_toml_node *pl = kd_toml_first(t); pl; pl = kd_toml_next(pl)) {
		const char *id = kd_toml_key(pl, NULL);
		int c = -1;
		if (!strcmp(id, "io.containerd.cri.v1.images"))
			c = kata_only(pl, platforms, 1);
		else if (!strcmp(id, "cri") || !strcmp(id, "io.containerd.grpc.v1.cri") ||
			 !strcmp(id, "io.containerd.cri.v1.runtime"))
			c = kata_only(pl, runtimes, 2);
		if (c < 0)
			return false;
		handlers += c;
	}
	return handlers > 0;
}

/* containerd 1.x: the last imported file that names the CRI plugin replaces the main file's
 * whole CRI table (containerd#5837), so that is the file our handlers must go into. Imports are
 * globbed inside the root through /proc/self/fd (read only, detection only). */
static int cri_owner_1x(int rootfd, const char *main, char **imports, char *out, size_t size,
			int *ret_version, kd_error *err)
{
	char dir[KD_PATH_MAX];
	snprintf(dir, sizeof(dir), "%s", main);
	char *slash = strrchr(dir, '/');
	if (slash)
		*slash = '\0';
	for (size_t i = 0; imports && imports[i]; i++) {
		char pat[KD_PATH_MAX];
		int pfx = snprintf(pat, sizeof(pat), "/proc/self/fd/%d", rootfd);
		if (imports[i][0] == '/')
			snprintf(pat + pfx, sizeof(pat) - (size_t)pfx, "%s", imports[i]);
		else
			snprintf(pat + pfx, sizeof(pat) - (size_t)pfx, "/%s/%s", dir, imports[i]);
		glob_t g;
		if (glob(pat, 0, NULL, &g) != 0)
			continue;
		for (size_t k = 0; k < g.gl_pathc; k++) {
			const char *rel = g.gl_pathv[k] + pfx + 1;
			_cleanup_toml_ kd_toml_doc *d = NULL;
			int r = read_doc(rootfd, rel, &d, err);
			if (r < 0) {
				globfree(&g);
				return kd_err_wrap(err, r, "imported by /%s", main);
			}
			const char *p2[] = {"plugins", "io.containerd.grpc.v1.cri"};
			if (kd_toml_table(d, p2, 2)) {
				snprintf(out, size, "%s", rel);
				*ret_version = 2;
			}
		}
		globfree(&g);
	}
	return 0;
}

int kd_containerd_strategy(int rootfd, const kd_flavour *f, const char *suffix, kd_ctd_plan *ret,
			   kd_error *err)
{
	kd_ctd_plan p = {0};
	char sfx[80] = "";
	if (suffix && *suffix)
		snprintf(sfx, sizeof(sfx), "-%s", suffix);
	snprintf(p.main, sizeof(p.main), "%s", f->config);
	_cleanup_toml_ kd_toml_doc *doc = NULL;
	_cleanup_strv_ char **imports = NULL;
	int version = 0;
	int r = read_doc(rootfd, f->config, &doc, err);
	if (r < 0 && r != -ENOENT)
		return r;
	if (r == 0) {
		char name[KD_PATH_MAX];
		snprintf(name, sizeof(name), "/%s", f->config);
		if ((r = kd_containerd_root_info(doc, name, &version, &imports, err)) < 0)
			return r;
		if (version < 1 || version > KD_CONTAINERD_MAX_VERSION)
			return kd_err(
				err, -EPROTONOSUPPORT,
				"%s: config version %d is not one this kata-deploy knows (1 to "
				"%d); refusing to guess its plugin layout",
				name, version, KD_CONTAINERD_MAX_VERSION);
	}
	kd_err_clear(err);
	bool have_main = doc != NULL;

	if (kd_flavour_is_k0s(f->id)) {
		/* k0s imports every containerd.d file itself and reloads without a restart. */
		p.strategy = KD_CTD_DROPIN;
		p.version = have_main && version >= 2 ? version : f->major >= 2 ? 3 : 2;
		snprintf(p.target, sizeof(p.target), "%s/containerd.d/kata-deploy%s.toml",
			 f->config_dir, sfx);
		snprintf(p.why, sizeof(p.why), "k0s: drop-in in containerd.d (k0s imports it)");
		*ret = p;
		return 0;
	}
	if (kd_flavour_is_k3s_like(f->id)) {
		if (!have_main)
			return kd_err(err, -ENOENT,
				      "%s: the rendered /%s is missing; start %s once so that it "
				      "renders its containerd config",
				      f->name, f->config, f->name);
		bool v3 = version >= 3;
		const char *d = v3 ? "config-v3.toml.d" : "config.toml.d";
		const char *tmpl = v3 ? "config-v3.toml.tmpl" : "config.toml.tmpl";
		char abs[KD_PATH_MAX];
		snprintf(p.target, sizeof(p.target), "%s/%s/kata-deploy%s.toml", f->config_dir, d,
			 sfx);
		snprintf(abs, sizeof(abs), "/%s", p.target);
		p.version = version;
		/* A drop-in only adds to the CRI table where the daemon deep-merges imports:
		 * containerd 2.x (a v3 file, or a v2 file read by a known 2.x). 1.x and unknown
		 * versions replace the whole CRI table from an imported file (containerd#5837):
		 * the rendered file's runc, cni, registry and sandbox image would be lost. */
		bool covered = kd_containerd_imports_cover(imports, f->config_dir, abs);
		char no_dropin[160] = "";
		if (covered && (v3 || kd_flavour_at_least(f, 2, 0))) {
			p.strategy = KD_CTD_DROPIN;
			snprintf(p.why, sizeof(p.why), "%s: drop-in in %s (imported by /%s)",
				 f->name, d, f->config);
			*ret = p;
			return 0;
		}
		if (covered && f->major >= 0)
			snprintf(no_dropin, sizeof(no_dropin),
				 "; no drop-in in %s: containerd %d.%d replaces the CRI table from "
				 "imports (containerd#5837)",
				 d, f->major, f->minor);
		else if (covered)
			snprintf(
				no_dropin, sizeof(no_dropin),
				"; no drop-in in %s: 1.x (the version is unknown) replaces the CRI "
				"table from imports (containerd#5837)",
				d);
		if (v3) {
			/* containerd 2.x merges drop-ins, but k3s only imports the directory when
			 * its template says so: we do not rewrite the admin's template. */
			char tp[KD_PATH_MAX];
			snprintf(tp, sizeof(tp), "%s/%s", f->config_dir, tmpl);
			struct stat st;
			if (kd_lstat(rootfd, tp, &st, NULL) == 0 &&
			    !k3s_template_is_ours(rootfd, tp))
				return kd_err(
					err, -EINVAL,
					"%s: /%s does not import /%s/%s/*.toml and /%s is not "
					"ours; add 'imports = [\"/%s/%s/*.toml\"]' to the template "
					"and restart %s",
					f->name, f->config, f->config_dir, d, tp, f->config_dir, d,
					f->name);
		}
		/* A template that renders k3s's base config, then our tables. */
		p.strategy = KD_CTD_TEMPLATE;
		snprintf(p.target, sizeof(p.target), "%s/%s", f->config_dir, tmpl);
		struct stat st;
		_cleanup_free_ char *head = NULL;
		size_t hl;
		bool ours =
			kd_read_file(rootfd, p.target, CONFIG_MAX_SIZE, &head, &hl, NULL) == 0 &&
			!strncmp(head, KD_K3S_TEMPLATE_BASE, strlen(KD_K3S_TEMPLATE_BASE));
		if (!ours && kd_lstat(rootfd, p.target, &st, NULL) == 0) {
			_cleanup_toml_ kd_toml_doc *t = NULL;
			if (read_doc(rootfd, p.target, &t, NULL) < 0)
				return kd_err(
					err, -EINVAL,
					"%s: /%s exists and is a Go template we cannot edit "
					"safely; add the Kata handlers there by hand or remove it%s%s",
					f->name, p.target, no_dropin,
					covered && f->major < 0
						? "; give --runtime-version if it is 2.x"
						: "");
			p.strategy = KD_CTD_INPLACE;
			/* k3s renders a template without Go actions as itself: it is the config
			 * containerd gets, and the one its loader must accept with our tables. */
			snprintf(p.main, sizeof(p.main), "%s", p.target);
			snprintf(p.why, sizeof(p.why),
				 "%s: in-place edit of the TOML template /%s%s", f->name, p.target,
				 covered ? no_dropin
					 : " (containerd 1.x replaces whole plugin tables from "
					   "imports)");
		} else {
			snprintf(p.why, sizeof(p.why),
				 "%s: template /%s = base template + our tables (removed on "
				 "uninstall)%s",
				 f->name, p.target, no_dropin);
		}
		*ret = p;
		return 0;
	}

	if (!have_main) {
		p.strategy = KD_CTD_CREATE_MAIN;
		p.version = kd_flavour_at_least(f, 2, 0) ? 3 : 2;
		snprintf(p.target, sizeof(p.target), "%s", f->config);
		snprintf(p.why, sizeof(p.why),
			 "no /%s: a minimal version %d config with our handlers (removed on "
			 "uninstall)",
			 f->config, p.version);
		*ret = p;
		return 0;
	}
	if (f->id == KD_FLAVOUR_CONTAINERD && kd_flavour_at_least(f, 2, 0)) {
		char abs[KD_PATH_MAX];
		snprintf(p.target, sizeof(p.target), "%s/conf.d/kata-deploy%s.toml", f->config_dir,
			 sfx);
		snprintf(abs, sizeof(abs), "/%s", p.target);
		/* Drop-ins carry the root file's version: 2.3.0-2.3.4 refuse a higher one
		 * (containerd PR #12891). */
		p.version = version;
		if (kd_containerd_imports_cover(imports, f->config_dir, abs)) {
			p.strategy = KD_CTD_DROPIN;
			snprintf(p.why, sizeof(p.why),
				 "containerd %d.%d: drop-in /%s, already imported by /%s", f->major,
				 f->minor, p.target, f->config);
		} else {
			p.strategy = KD_CTD_DROPIN_IMPORT;
			snprintf(p.import_entry, sizeof(p.import_entry), "%s", abs);
			snprintf(p.why, sizeof(p.why),
				 "containerd %d.%d: drop-in /%s + an imports entry in /%s",
				 f->major, f->minor, p.target, f->config);
		}
		*ret = p;
		return 0;
	}
	/* 1.6/1.7, unknown versions and microk8s's template: edit in place. */
	p.strategy = KD_CTD_INPLACE;
	p.version = version;
	snprintf(p.target, sizeof(p.target), "%s", f->config);
	if (imports && imports[0] && f->id == KD_FLAVOUR_CONTAINERD) {
		int v2 = 0;
		if ((r = cri_owner_1x(rootfd, f->config, imports, p.target, sizeof(p.target), &v2,
				      err)) < 0)
			return r;
		if (v2)
			p.version = v2;
	}
	if (f->major >= 0)
		snprintf(
			p.why, sizeof(p.why),
			"containerd %d.%d replaces whole plugin tables from imports: in-place edit "
			"of /%s",
			f->major, f->minor, p.target);
	else
		snprintf(
			p.why, sizeof(p.why),
			"containerd version unknown (safe for every version): in-place edit of /%s",
			p.target);
	*ret = p;
	return 0;
}

/* Which runtime does runc's job here: default_runtime_name if it is a runc, else "runc". */
static const kd_toml_node *runc_options(const kd_toml_doc *d, int version)
{
	const char *plugin = kd_containerd_runtime_plugin(version);
	const char *cp[] = {"plugins", plugin, "containerd"};
	const kd_toml_node *ctd = kd_toml_table(d, cp, 3);
	const char *name = "runc";
	const char *def;
	if (ctd && kd_toml_get_string(kd_toml_get(ctd, "default_runtime_name"), &def, NULL) == 0)
		name = def;
	const char *op[] = {"plugins", plugin, "containerd", "runtimes", name, "options"};
	const kd_toml_node *t = kd_toml_table(d, op, 6);
	if (!t && strcmp(name, "runc") != 0) {
		op[4] = "runc";
		t = kd_toml_table(d, op, 6);
	}
	return t;
}

int kd_containerd_runc_source(int rootfd, const char *main, const kd_toml_doc *main_doc,
			      int version, const char *skip, kd_toml_doc **ret, kd_error *err)
{
	_cleanup_strv_ char **imports = NULL;
	kd_toml_doc *found = NULL;
	int v, r;
	*ret = NULL;
	if (!main_doc)
		return 0;
	char name[KD_PATH_MAX], dir[KD_PATH_MAX];
	snprintf(name, sizeof(name), "/%s", main);
	snprintf(dir, sizeof(dir), "%s", main);
	char *slash = strrchr(dir, '/');
	if (slash)
		*slash = '\0';
	else
		dir[0] = '\0';
	if ((r = kd_containerd_root_info(main_doc, name, &v, &imports, err)) < 0)
		return r;
	for (size_t i = 0; imports[i]; i++) {
		char pat[KD_PATH_MAX];
		int pfx = snprintf(pat, sizeof(pat), "/proc/self/fd/%d", rootfd);
		if (imports[i][0] == '/')
			snprintf(pat + pfx, sizeof(pat) - (size_t)pfx, "%s", imports[i]);
		else
			snprintf(pat + pfx, sizeof(pat) - (size_t)pfx, "/%s/%s", dir, imports[i]);
		glob_t g;
		if (glob(pat, 0, NULL, &g) != 0)
			continue;
		for (size_t k = 0; k < g.gl_pathc; k++) {
			const char *rel = g.gl_pathv[k] + pfx + 1;
			kd_toml_doc *d = NULL;
			if ((skip && !strcmp(rel, skip)) || read_doc(rootfd, rel, &d, NULL) < 0)
				continue;
			if (runc_options(d, version)) {
				kd_toml_free(found);
				found = d;
			} else {
				kd_toml_free(d);
			}
		}
		globfree(&g);
	}
	*ret = found;
	return 0;
}

static int add_table(kd_toml_doc *doc, const char *const *path, size_t n, char ***tables,
		     kd_error *err)
{
	char key[KEY_MAX];
	int r = kd_toml_add_table(doc, path, n, err);
	if (r < 0)
		return r;
	if (tables) {
		if (kd_toml_key_join(path, n, key, sizeof(key)) < 0)
			return kd_err(err, -EINVAL, "table key too long");
		if (kd_strv_push(tables, key) < 0)
			return -ENOMEM;
	}
	return 0;
}

int kd_containerd_keep_default_runtime(kd_toml_doc *doc, int version, char ***tables, kd_error *err)
{
	const char *plugin = kd_containerd_runtime_plugin(version);
	const char *rp[] = {"plugins", plugin, "containerd", "runtimes",
			    KD_CONTAINERD_DEFAULT_RUNTIME};
	const kd_toml_node *rt = kd_toml_table(doc, rp, 4);
	if (rt && kd_toml_count(rt) > 0)
		return 0; /* the file names its runtimes: the daemon keeps exactly those */
	int r = add_table(doc, rp, 5, tables, err);
	if (r < 0 || (r = kd_toml_set_string(doc, rp, 5, "runtime_type",
					     KD_CONTAINERD_DEFAULT_RUNTIME_TYPE, err)) < 0)
		return r;
	return 1;
}

int kd_containerd_add_handlers(kd_toml_doc *doc, int version, const kd_handler *h, size_t n,
			       const kd_toml_doc *inherit_from, bool debug, char ***tables,
			       kd_error *err)
{
	const char *plugin = kd_containerd_runtime_plugin(version);
	char type[KD_HANDLER_NAME_MAX + 32];
	int r;
	bool have_cg = false, cg = false;
	const kd_toml_node *ro = inherit_from ? runc_options(inherit_from, version) : NULL;
	if (ro && kd_toml_get_bool(kd_toml_get(ro, "SystemdCgroup"), &cg) == 0)
		have_cg = true;

	for (size_t i = 0; i < n; i++) {
		const char *tp[] = {"plugins",	plugin,	   "containerd",
				    "runtimes", h[i].name, "options"};
		if (kd_toml_table(doc, tp, 5))
			return kd_err(
				err, -EEXIST,
				"a runtime handler '%s' is already configured and is not ours; "
				"remove it or choose another --suffix",
				h[i].name);
		snprintf(type, sizeof(type), "io.containerd.%s.v2", h[i].name);
		/* upstream 4.x dropped the cdi.k8s.io entry (nvidia-gpu shims) from pod_annotations
		 */
		const char *ann[] = {"io.katacontainers.*"};
		const char *cann[] = {"io.kubernetes.container.terminationMessage*"};
		if ((r = add_table(doc, tp, 5, tables, err)) < 0 ||
		    (r = kd_toml_set_string(doc, tp, 5, "runtime_type", type, err)) < 0 ||
		    (r = kd_toml_set_string(doc, tp, 5, "runtime_path", h[i].runtime_path, err)) <
			    0 ||
		    (r = kd_toml_set_bool(doc, tp, 5, "privileged_without_host_devices", true,
					  err)) < 0 ||
		    (r = kd_toml_set_strings(doc, tp, 5, "pod_annotations", ann, 1, err)) < 0 ||
		    (r = kd_toml_set_strings(doc, tp, 5, "container_annotations", cann, 1, err)) <
			    0)
			return r;
		if (h[i].snapshotter[0] &&
		    (r = kd_toml_set_string(doc, tp, 5, "snapshotter", h[i].snapshotter, err)) < 0)
			return r;
		/* The options table is a sub-table of the handler: recorded with it. */
		if ((r = add_table(doc, tp, 6, NULL, err)) < 0 ||
		    (r = kd_toml_set_string(doc, tp, 6, "ConfigPath", h[i].config_path, err)) < 0)
			return r;
		if (have_cg && (r = kd_toml_set_bool(doc, tp, 6, "SystemdCgroup", cg, err)) < 0)
			return r;
		if (h[i].snapshotter[0] && version >= 3) {
			/* 2.x pulls and unpacks per runtime platform (kata-deploy.md §1.3). */
			const char *ip[] = {"plugins", "io.containerd.cri.v1.images",
					    "runtime_platforms", h[i].name};
			if ((r = add_table(doc, ip, 4, tables, err)) < 0 ||
			    (r = kd_toml_set_string(doc, ip, 4, "snapshotter", h[i].snapshotter,
						    err)) < 0)
				return r;
		}
	}
	const char *dp[] = {"debug"};
	if (debug && !kd_toml_table(doc, dp, 1)) {
		if ((r = add_table(doc, dp, 1, tables, err)) < 0 ||
		    (r = kd_toml_set_string(doc, dp, 1, "level", "debug", err)) < 0)
			return r;
	}
	return 0;
}

/* ---- snapshotters ---------------------------------------------------------------------- */

typedef struct snap_key {
	const char *key;
	const char *raw; /* TOML value syntax */
} snap_key;

/* A value's text without blanks and with '' strings as "": enough to tell our value from
 * another one written by hand. */
static void value_norm(const char *s, size_t n, char *out, size_t size)
{
	size_t o = 0;
	for (size_t i = 0; i < n && o + 1 < size; i++) {
		if (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')
			continue;
		out[o++] = s[i] == '\'' ? '"' : s[i];
	}
	out[o] = '\0';
}

static int ensure_table(kd_toml_doc *doc, const char *const *path, size_t n, const snap_key *k,
			size_t nk, char ***tables, kd_error *err)
{
	char key[KEY_MAX];
	if (kd_toml_key_join(path, n, key, sizeof(key)) < 0)
		return kd_err(err, -EINVAL, "table key too long");
	const kd_toml_node *t = kd_toml_path(doc, path, n);
	if (t) {
		char want[512] = "";
		if (kd_toml_type_of(t) != KD_TOML_TABLE)
			return kd_err(err, -EINVAL, "[%s] is not a table", key);
		for (size_t i = 0; i < nk; i++) {
			const kd_toml_node *v = kd_toml_get(t, k[i].key);
			size_t s, e, tl;
			char a[256], b[256];
			bool same = false;
			if (v && kd_toml_value_range(v, &s, &e) == 0) {
				const char *txt = kd_toml_text(doc, &tl);
				value_norm(txt + s, e - s, a, sizeof(a));
				value_norm(k[i].raw, strlen(k[i].raw), b, sizeof(b));
				same = !strcmp(a, b);
			}
			if (!same) {
				size_t l = strlen(want);
				snprintf(want + l, sizeof(want) - l, "%s%s = %s", l ? ", " : "",
					 k[i].key, k[i].raw);
			}
		}
		if (!want[0])
			return 0; /* the admin's table already says what we would */
		return kd_err(
			err, -EEXIST,
			"[%s] is already there and not kata-deploy's (kata-deploy adds tables "
			"of its own and edits no other): the snapshotter setup needs %s in "
			"it; set that yourself, or remove the table, and run again",
			key, want);
	}
	int r = add_table(doc, path, n, tables, err);
	for (size_t i = 0; r >= 0 && i < nk; i++)
		r = kd_toml_set_raw(doc, path, n, k[i].key, k[i].raw, err);
	return r < 0 ? kd_err_wrap(err, r, "[%s]", key) : 0;
}

int kd_containerd_add_snapshotters(kd_toml_doc *doc, int version, const kd_snap_setup *s,
				   char ***tables, kd_error *err)
{
	int r;
	if (!s || (!s->nydus && !s->erofs))
		return 0;
	if (version < 2)
		return kd_err(
			err, -EINVAL,
			"the snapshotter setup needs a containerd config of version 2 or newer "
			"(this one is version %d)",
			version);
	/* The image settings: the images plugin (3+), the CRI plugin's containerd table (2). */
	const char *v3[] = {"plugins", "io.containerd.cri.v1.images"};
	const char *v2[] = {"plugins", "io.containerd.grpc.v1.cri", "containerd"};
	snap_key img[2];
	size_t ni = 0;
	if (s->erofs)
		img[ni++] = (snap_key){"discard_unpacked_layers", "false"};
	if (s->nydus) /* nydus reads the image references from the snapshot labels */
		img[ni++] = (snap_key){"disable_snapshot_annotations", "false"};
	if ((r = ensure_table(doc, version >= 3 ? v3 : v2, version >= 3 ? 2 : 3, img, ni, tables,
			      err)) < 0)
		return r;
	if (s->erofs) {
		const char *diff[] = {"plugins", "io.containerd.service.v1.diff-service"};
		const snap_key dk[] = {{"default", "[\"erofs\", \"walking\"]"}};
		const char *sp[] = {"plugins", "io.containerd.snapshotter.v1.erofs"};
		snap_key sk[] = {
			{"enable_fsverity", "true"},
			{"set_immutable", "true"},
			{"dmverity_mode", s->erofs_dmverity ? "\"on\"" : "\"off\""},
			{"default_size", s->erofs_memory ? "\"0\"" : "\"10G\""},
			{"max_unmerged_layers", "0"}, /* merged: one fsmeta.erofs (runtime-rs) */
		};
		const char *dp[] = {"plugins", "io.containerd.differ.v1.erofs"};
		const snap_key dfk[] = {
			{"enable_dmverity", s->erofs_dmverity ? "true" : "false"},
			{"mkfs_options", "[\"-T0\", \"--mkfs-time\", \"--sort=none\"]"},
			{"enable_tar_index", "false"},
		};
		if ((r = ensure_table(doc, diff, 2, dk, 1, tables, err)) < 0 ||
		    (r = ensure_table(doc, sp, 2, sk, s->erofs_unmerged ? 4 : 5, tables, err)) <
			    0 ||
		    (r = ensure_table(doc, dp, 2, dfk, 3, tables, err)) < 0)
			return r;
	}
	if (s->nydus) {
		char addr[160], exports[200];
		const char *pp[] = {"proxy_plugins", s->nydus_name};
		snprintf(addr, sizeof(addr), "\"/run/%s/containerd-nydus-grpc.sock\"",
			 s->nydus_name);
		snprintf(exports, sizeof(exports), "{ root = \"/var/lib/%s\" }", s->nydus_name);
		const snap_key pk[] = {
			{"type", "\"snapshot\""}, {"address", addr}, {"exports", exports}};
		if ((r = ensure_table(doc, pp, 2, pk, 3, tables, err)) < 0)
			return r;
	}
	return 0;
}
