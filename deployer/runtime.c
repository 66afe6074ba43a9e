#include "runtime.h"

#include <dirent.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <glob.h>
#include <poll.h>
#include <signal.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "crio.h"
#include "custom.h"
#include "digest.h"
#include "fsroot.h"
#include "kataconfig.h"
#include "log.h"
#include "revert.h"
#include "snapshotter.h"
#include "strv.h"

#define CONFIG_MAX_SIZE KD_TOML_MAX_SIZE
#define MAX_CHANGES 256
#define MAX_TABLE_PARTS 16
#define LOADER_OUTPUT_MAX (4u << 20)
#define MIRROR_DEPTH_MAX 4
#define LOADER_TIMEOUT_SEC 60 /* the runtime's own loader (`config dump`, `crio config`) */

/* ---- options <-> JSON ------------------------------------------------------------------ */

#define OPT_FIELDS(X)                                                                              \
	X(runtime)                                                                                 \
	X(runtime_version)                                                                         \
	X(runtime_binary)                                                                          \
	X(distribution)                                                                            \
	X(config_path)                                                                             \
	X(restart)                                                                                 \
	X(suffix)                                                                                  \
	X(agent_https_proxy)                                                                       \
	X(agent_no_proxy)                                                                          \
	X(allowed_hypervisor_annotations)                                                          \
	X(snapshotter_handler_mapping)                                                             \
	X(pull_type_mapping)                                                                       \
	X(default_shim)                                                                            \
	X(custom_configs)                                                                          \
	X(absent_shims)                                                                            \
	X(snapshotter_setup)                                                                       \
	X(erofs_merge_mode)                                                                        \
	X(erofs_snapshotter_mode)                                                                  \
	X(force_guest_pull)                                                                        \
	X(containerd_user_dropin)

static char *opts_to_json(const kd_runtime_opts *o, const kd_flavour *f)
{
	struct json_object *j = json_object_new_object();
#define ADD(name)                                                                                  \
	if (o->name)                                                                               \
		json_object_object_add(j, #name, json_object_new_string(o->name));
	OPT_FIELDS(ADD)
#undef ADD
	json_object_object_add(j, "debug", json_object_new_boolean(o->debug));
	if (o->devkit)
		json_object_object_add(j, "devkit", json_object_new_boolean(true));
	if (o->custom_runtimes)
		json_object_object_add(j, "custom_runtimes", json_object_new_boolean(true));
	if (o->erofs_dmverity)
		json_object_object_add(j, "erofs_dmverity", json_object_new_boolean(true));
	if (o->snapshotter_optional)
		json_object_object_add(j, "snapshotter_optional", json_object_new_boolean(true));
	json_object_object_add(j, "flavour", json_object_new_string(f->name));
	json_object_object_add(j, "unit", json_object_new_string(f->unit));
	json_object_object_add(j, "crio", json_object_new_boolean(f->crio));
	json_object_object_add(j, "major", json_object_new_int(f->major));
	json_object_object_add(j, "minor", json_object_new_int(f->minor));
	char *s = strdup(json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN));
	json_object_put(j);
	return s;
}

int kd_runtime_opts_from_json(const char *json, kd_runtime_opts *ret, char ***ret_storage,
			      kd_error *err)
{
	kd_runtime_opts o = {0};
	struct json_object *j = json ? json_tokener_parse(json) : NULL, *v;
	char **store = calloc(1, sizeof(char *));
	if (!store) {
		json_object_put(j);
		return -ENOMEM;
	}
	if (json && !j) {
		free(store);
		return kd_err(err, -EINVAL, "state: runtime options are not JSON");
	}
#define GET(name)                                                                                  \
	if (j && json_object_object_get_ex(j, #name, &v) &&                                        \
	    json_object_is_type(v, json_type_string)) {                                            \
		kd_strv_push(&store, json_object_get_string(v));                                   \
		o.name = store[kd_strv_length(store) - 1];                                         \
	}
	OPT_FIELDS(GET)
#undef GET
	o.debug = j && json_object_get_boolean(json_object_object_get(j, "debug"));
	o.devkit = j && json_object_get_boolean(json_object_object_get(j, "devkit"));
	o.custom_runtimes =
		j && json_object_get_boolean(json_object_object_get(j, "custom_runtimes"));
	o.erofs_dmverity =
		j && json_object_get_boolean(json_object_object_get(j, "erofs_dmverity"));
	o.snapshotter_optional =
		j && json_object_get_boolean(json_object_object_get(j, "snapshotter_optional"));
	json_object_put(j);
	*ret = o;
	*ret_storage = store;
	return 0;
}

/* ---- small helpers --------------------------------------------------------------------- */

static void sha_of(const char *data, size_t len, char out[65])
{
	kd_sha256_buf(data ? data : "", data ? len : 0, out);
}

static int read_opt(int rootfd, const char *path, char **ret, size_t *ret_len, kd_error *err)
{
	*ret = NULL;
	*ret_len = 0;
	int r = kd_read_file(rootfd, path, CONFIG_MAX_SIZE, ret, ret_len, err);
	if (r == -ENOENT) {
		kd_err_clear(err);
		return 0;
	}
	return r < 0 ? kd_err_wrap(err, r, "read /%s", path) : 1;
}

static const kd_config_file *find_record(const kd_state *s, const char *path)
{
	for (size_t i = 0; s && i < s->n_config; i++)
		if (!strcmp(s->config[i].path, path))
			return &s->config[i];
	return NULL;
}

static int parse_named(const char *path, const char *text, size_t len, kd_toml_doc **ret,
		       kd_error *err)
{
	char name[KD_PATH_MAX];
	snprintf(name, sizeof(name), "/%s", path);
	return kd_toml_parse(name, text, len, ret, err);
}

/* The runtime handler names among table keys ("plugins.<id>.containerd.runtimes.<name>"). */
static int handler_names(char *const *tables, char ***names)
{
	for (size_t i = 0; tables && tables[i]; i++) {
		char buf[KD_PATH_MAX];
		const char *parts[MAX_TABLE_PARTS];
		int n = kd_toml_key_split(tables[i], buf, sizeof(buf), parts, MAX_TABLE_PARTS);
		for (int k = 0; k + 1 < n; k++)
			if (!strcmp(parts[k], "runtimes") && !kd_strv_find(*names, parts[k + 1]) &&
			    kd_strv_push(names, parts[k + 1]) < 0)
				return -ENOMEM;
	}
	return 0;
}

/* The runtime handler names in a whole file of ours (a drop-in, our k3s/rke2 template, whose
 * record lists no tables): plugins.<id>.containerd.runtimes.<name>. Unparsable text: none. */
static int handler_names_in_text(const char *text, size_t len, char ***names)
{
	size_t tl = strlen(KD_K3S_TEMPLATE_BASE);
	if (len >= tl && !strncmp(text, KD_K3S_TEMPLATE_BASE, tl)) {
		text += tl;
		len -= tl;
	}
	_cleanup_toml_ kd_toml_doc *d = NULL;
	if (kd_toml_parse("previous", text, len, &d, NULL) < 0)
		return 0;
	const char *pp[] = {"plugins"};
	for (const kd_toml_node *pl = kd_toml_first(kd_toml_table(d, pp, 1)); pl;
	     pl = kd_toml_next(pl)) {
		const kd_toml_node *rt = kd_toml_get(kd_toml_get(pl, "containerd"), "runtimes");
		if (kd_toml_type_of(rt) != KD_TOML_TABLE)
			continue;
		for (const kd_toml_node *h = kd_toml_first(rt); h; h = kd_toml_next(h))
			if (!kd_strv_find(*names, kd_toml_key(h, NULL)) &&
			    kd_strv_push(names, kd_toml_key(h, NULL)) < 0)
				return -ENOMEM;
	}
	return 0;
}

/* ---- building the plan ----------------------------------------------------------------- */

static void change_free(kd_change *c)
{
	free(c->old);
	free(c->new_text);
	kd_config_file_done(&c->rec);
}

void kd_config_plan_done(kd_config_plan *p)
{
	for (size_t i = 0; i < p->n; i++)
		change_free(&p->changes[i]);
	free(p->changes);
	kd_strv_free(p->dirs);
	kd_strv_free(p->prev_handlers);
	free(p->opts_json);
	memset(p, 0, sizeof(*p));
}

static kd_change *plan_add(kd_config_plan *p, const char *path, kd_error *err)
{
	for (size_t i = 0; i < p->n; i++)
		if (!strcmp(p->changes[i].path, path))
			return &p->changes[i];
	if (p->n >= MAX_CHANGES) {
		kd_err(err, -E2BIG, "more than %d runtime config files", MAX_CHANGES);
		return NULL;
	}
	kd_change *v = realloc(p->changes, (p->n + 1) * sizeof(*v));
	if (!v)
		return NULL;
	p->changes = v;
	kd_change *c = &v[p->n++];
	memset(c, 0, sizeof(*c));
	snprintf(c->path, sizeof(c->path), "%s", path);
	c->mode = 0644;
	return c;
}

/* Read the current bytes and compute the base our new content builds on: the current bytes
 * without what an earlier run of ours added (three-way, as uninstall would). */
static int load_base(kd_config_plan *p, int rootfd, const kd_state *prev, const char *path,
		     bool must_be_ours, kd_change **ret_c, char **ret_base, size_t *ret_blen,
		     kd_error *err)
{
	kd_change *c = plan_add(p, path, err);
	if (!c)
		return -ENOMEM;
	int r;
	if (!c->old) {
		if ((r = read_opt(rootfd, path, &c->old, &c->old_len, err)) < 0)
			return r;
		struct stat st;
		if (c->old && kd_lstat(rootfd, path, &st, NULL) == 0)
			c->mode = st.st_mode & 07777;
	}
	const kd_config_file *rec = find_record(prev, path);
	c->rec.created = rec ? rec->created : !c->old;
	*ret_c = c;
	*ret_base = NULL;
	*ret_blen = 0;
	if (!rec) {
		if (c->old && must_be_ours)
			return kd_err(err, -EEXIST,
				      "/%s exists and was not written by kata-deploy; move it away "
				      "or use --suffix",
				      path);
		if (c->old && !(*ret_base = strndup(c->old, c->old_len)))
			return -ENOMEM;
		*ret_blen = c->old ? c->old_len : 0;
		return 0;
	}
	char why[8192];
	r = kd_revert_text(rec, c->old, c->old_len, false, ret_base, ret_blen, why, sizeof(why),
			   err);
	if (r < 0)
		return r;
	if (r == KD_REVERT_LEAVE)
		return kd_err(err, -EBUSY, "cannot update: %s", why);
	if (r == KD_REVERT_SAME && c->old) {
		*ret_base = strndup(c->old, c->old_len);
		*ret_blen = c->old_len;
	}
	if (why[0])
		kd_warn("%s", why);
	return 0;
}

static int finish_record(kd_change *c, const char *base, kd_toml_doc *doc, char **tables,
			 bool created, bool whole, kd_error *err)
{
	size_t len;
	const char *t = kd_toml_text(doc, &len);
	c->new_text = strndup(t, len);
	c->new_len = len;
	c->has_record = true;
	c->rec.path = strdup(c->path);
	c->rec.created = c->rec.created || created;
	c->rec.whole = whole;
	c->rec.base = base ? strdup(base) : NULL;
	c->rec.mode = c->mode;
	c->rec.texts = calloc(1, sizeof(char *));
	if (!c->new_text || !c->rec.path || !c->rec.texts || (base && !c->rec.base))
		return -ENOMEM;
	sha_of(c->new_text, c->new_len, c->rec.result_sha);
	c->rec.result_len = c->new_len;
	c->rec.tables = kd_strv_copy(tables);
	if (!c->rec.tables)
		return -ENOMEM;
	char buf[1024];
	const char *parts[MAX_TABLE_PARTS];
	for (size_t i = 0; tables && tables[i]; i++) {
		int n = kd_toml_key_split(tables[i], buf, sizeof(buf), parts, MAX_TABLE_PARTS);
		size_t s, e;
		if (n <= 0 || kd_toml_table_range(doc, parts, (size_t)n, &s, &e) < 0)
			return kd_err(err, -EIO, "/%s: table [%s] vanished", c->path, tables[i]);
		_cleanup_free_ char *txt = strndup(t + s, e - s);
		if (!txt || kd_strv_push(&c->rec.texts, txt) < 0)
			return -ENOMEM;
	}
	return 0;
}

/* A file that is ours from the first byte to the last. */
static int whole_file(kd_config_plan *p, int rootfd, const kd_state *prev, const char *path,
		      const char *text, unsigned mode, kd_error *err)
{
	kd_change *c;
	_cleanup_free_ char *base = NULL;
	size_t blen;
	for (size_t i = 0; i < p->n; i++)
		if (!strcmp(p->changes[i].path, path) && p->changes[i].new_text) {
			if (strcmp(p->changes[i].new_text, text) != 0)
				return kd_err(err, -EINVAL, "/%s: two different contents planned",
					      path);
			return 0; /* shared by several handlers (the QEMU wrapper) */
		}
	int r = load_base(p, rootfd, prev, path, true, &c, &base, &blen, err);
	if (r < 0)
		return r;
	if (mode)
		c->mode = mode;
	c->new_text = strdup(text);
	c->new_len = strlen(text);
	c->has_record = true;
	c->rec.path = strdup(path);
	c->rec.created = true;
	c->rec.whole = true;
	c->rec.mode = c->mode;
	c->rec.tables = calloc(1, sizeof(char *));
	c->rec.texts = calloc(1, sizeof(char *));
	if (!c->new_text || !c->rec.path || !c->rec.tables || !c->rec.texts)
		return -ENOMEM;
	sha_of(c->new_text, c->new_len, c->rec.result_sha);
	c->rec.result_len = c->new_len;
	return 0;
}

static int parse_snapshotters(const char *spec, const char *shim, char *out, size_t size,
			      char *const *shims, kd_error *err)
{
	out[0] = '\0';
	_cleanup_strv_ char **items = spec ? kd_strv_split(spec, ',') : NULL;
	for (size_t i = 0; items && items[i]; i++) {
		char *c = strchr(items[i], ':');
		if (!c || c == items[i] || !c[1])
			return kd_err(err, -EINVAL,
				      "--snapshotter-handler-mapping: '%s' is not shim:snapshotter",
				      items[i]);
		*c = '\0';
		if (!kd_strv_find(shims, items[i]))
			return kd_err(err, -EINVAL,
				      "--snapshotter-handler-mapping: shim '%s' is not enabled",
				      items[i]);
		if (!strcmp(items[i], shim))
			snprintf(out, size, "%s", c + 1);
	}
	return 0;
}

/* PULL_TYPE_MAPPING: "shim:guest-pull" makes CRI-O hand image pulls to the runtime
 * (runtime_pull_image); "default" is the runtime's own pull. Anything else is refused. */
static int parse_pull_type(const char *spec, const char *shim, bool *out, char *const *shims,
			   kd_error *err)
{
	*out = false;
	_cleanup_strv_ char **items = spec ? kd_strv_split(spec, ',') : NULL;
	for (size_t i = 0; items && items[i]; i++) {
		char *c = strchr(items[i], ':');
		if (!c || c == items[i] || !c[1])
			return kd_err(err, -EINVAL,
				      "--pull-type-mapping: '%s' is not shim:pull-type", items[i]);
		*c = '\0';
		if (strcmp(c + 1, "guest-pull") != 0 && strcmp(c + 1, "default") != 0)
			return kd_err(err, -EINVAL,
				      "--pull-type-mapping: pull type '%s' of shim '%s' is not "
				      "guest-pull or default",
				      c + 1, items[i]);
		if (!kd_strv_find(shims, items[i]))
			return kd_err(err, -EINVAL, "--pull-type-mapping: shim '%s' is not enabled",
				      items[i]);
		if (!strcmp(items[i], shim))
			*out = strcmp(c + 1, "guest-pull") == 0;
	}
	return 0;
}

/* --setup-snapshotter and the erofs options (upstream's EXPERIMENTAL_SETUP_SNAPSHOTTER,
 * EROFS_MERGE_MODE, EROFS_SNAPSHOTTER_MODE, EROFS_DMVERITY). */
static int snap_setup(const kd_runtime_opts *o, const kd_flavour *f, kd_snap_setup *s,
		      kd_error *err)
{
	memset(s, 0, sizeof(*s));
	_cleanup_strv_ char **items = o->snapshotter_setup && *o->snapshotter_setup
					      ? kd_strv_split(o->snapshotter_setup, ',')
					      : NULL;
	for (size_t i = 0; items && items[i]; i++) {
		if (!strcmp(items[i], "nydus"))
			s->nydus = true;
		else if (!strcmp(items[i], "erofs"))
			s->erofs = true;
		else if (items[i][0])
			return kd_err(err, -EINVAL,
				      "--setup-snapshotter: '%s' is not a snapshotter kata-deploy "
				      "sets up (nydus, erofs)",
				      items[i]);
	}
	const char *mm = o->erofs_merge_mode, *sm = o->erofs_snapshotter_mode;
	if (mm && *mm && strcmp(mm, "merged") && strcmp(mm, "unmerged"))
		return kd_err(err, -EINVAL, "--erofs-merge-mode: '%s' is not merged or unmerged",
			      mm);
	if (sm && *sm && strcmp(sm, "disk") && strcmp(sm, "memory"))
		return kd_err(err, -EINVAL, "--erofs-snapshotter-mode: '%s' is not disk or memory",
			      sm);
	s->erofs_unmerged = mm && !strcmp(mm, "unmerged");
	s->erofs_memory = sm && !strcmp(sm, "memory");
	s->erofs_dmverity = o->erofs_dmverity;
	snprintf(s->nydus_name, sizeof(s->nydus_name), "%s%s%s", KD_NYDUS_NAME,
		 o->suffix && *o->suffix ? "-" : "", o->suffix ? o->suffix : "");
	if ((s->nydus || s->erofs) && f->crio) {
		kd_warn("--setup-snapshotter is ignored: snapshotters are a containerd setting");
		s->nydus = s->erofs = false;
	}
	if (s->erofs && f->major < 0)
		return kd_err(err, -EINVAL,
			      "the erofs snapshotter needs containerd 2.2 or newer, and this "
			      "containerd's version is unknown (--runtime-version)");
	if (s->erofs && (f->major < 2 || (f->major == 2 && f->minor < 2)))
		return kd_err(err, -EINVAL,
			      "the erofs snapshotter needs containerd 2.2 or newer (this is %d.%d)",
			      f->major, f->minor);
	return 0;
}

/* The snapshotter a handler gets: "nydus" names the managed nydus-for-kata-tee when nydus is
 * set up; merged erofs (fsmeta.erofs) is for runtime-rs shims only. */
static int snap_resolve(const kd_snap_setup *s, const char *shim, const char *what, char *snap,
			size_t size, kd_error *err)
{
	if (s->nydus && !strcmp(snap, "nydus"))
		snprintf(snap, size, "%s", s->nydus_name);
	if (s->erofs && !s->erofs_unmerged && !strcmp(snap, "erofs") && !kd_shim_is_rust(shim))
		return kd_err(err, -EINVAL,
			      "%s: the Go runtime does not support merged erofs (fsmeta.erofs); "
			      "set --erofs-merge-mode unmerged (EROFS_MERGE_MODE=unmerged), map "
			      "it to another snapshotter, or use a runtime-rs shim",
			      what);
	return 0;
}

/* A handler's snapshotter / guest pull against what the runtime supports. */
static int check_mapping(const kd_flavour *f, const char *what, char *snap, bool *guest_pull,
			 kd_error *err)
{
	if (*guest_pull && !f->crio) {
		kd_warn("the pull-type mapping applies to CRI-O only; on containerd guest pull "
			"is set up through the snapshotter mapping (%s)",
			what);
		*guest_pull = false;
	}
	if (snap[0] && f->crio) {
		kd_warn("CRI-O has no per-handler snapshotter; ignoring the snapshotter of %s",
			what);
		snap[0] = '\0';
	}
	if (snap[0] && f->major == 1 && f->minor < 7)
		return kd_err(
			err, -EINVAL,
			"a snapshotter per runtime handler needs containerd 1.7 or newer (this "
			"is %d.%d)",
			f->major, f->minor);
	return 0;
}

/* The custom runtimes of the list in o->custom_configs, appended to h. */
static int add_custom(const kd_runtime_input *in, const kd_runtime_opts *o, const kd_flavour *f,
		      const kd_snap_setup *ss, const char *prefix, char *const *absent,
		      kd_handler *h, size_t *n, kd_error *err)
{
	_cleanup_free_ kd_custom_runtime *c = NULL;
	size_t nc = 0;
	int r = kd_custom_load(o->custom_configs, &c, &nc, err);
	if (r < 0)
		return kd_err_wrap(err, r, "custom runtimes");
	for (size_t i = 0; i < nc; i++) {
		char what[128];
		if (absent && kd_strv_find(absent, c[i].base)) {
			kd_info("custom runtime '%s' left out: its base shim '%s' is not in the "
				"payload",
				c[i].handler, c[i].base);
			continue;
		}
		if (!kd_strv_find(in->shims, c[i].base))
			return kd_err(err, -EINVAL,
				      "custom runtime '%s': its base shim '%s' is not enabled (its "
				      "binary and configuration come from that shim)",
				      c[i].handler, c[i].base);
		for (size_t k = 0; k < *n; k++)
			if (!strcmp(h[k].name, c[i].handler))
				return kd_err(err, -EINVAL,
					      "custom runtime '%s': a shim's handler has that name",
					      c[i].handler);
		snprintf(what, sizeof(what), "custom runtime '%s'", c[i].handler);
		if ((r = check_mapping(f, what, c[i].snapshotter, &c[i].guest_pull, err)) < 0 ||
		    (r = snap_resolve(ss, c[i].base, what, c[i].snapshotter,
				      sizeof(c[i].snapshotter), err)) < 0)
			return r;
		kd_handler *x = &h[(*n)++];
		snprintf(x->name, sizeof(x->name), "%s", c[i].handler);
		snprintf(x->shim, sizeof(x->shim), "%s", c[i].base);
		snprintf(x->snapshotter, sizeof(x->snapshotter), "%s", c[i].snapshotter);
		x->guest_pull = c[i].guest_pull;
		x->variant = KD_VARIANT_CUSTOM;
		kd_kata_target t = {.shim = x->shim, .variant = x->variant, .custom = x->name};
		kd_kata_target_paths(prefix, &t, x->runtime_path, sizeof(x->runtime_path),
				     x->config_path, sizeof(x->config_path));
	}
	return 0;
}

/* One handler per shim, and its debug and devkit variants when asked for: the variants share
 * the shim's binary and mappings, each has a Kata configuration directory of its own. Then the
 * custom runtimes. */
static int build_handlers(const kd_runtime_input *in, const kd_runtime_opts *o, const kd_flavour *f,
			  const kd_snap_setup *ss, char *const *named, char *const *absent,
			  kd_handler **ret, size_t *ret_n, kd_error *err)
{
	kd_variant variants[3] = {KD_VARIANT_PLAIN};
	size_t nv = 1;
	if (o->debug)
		variants[nv++] = KD_VARIANT_DEBUG;
	if (o->devkit)
		variants[nv++] = KD_VARIANT_DEVKIT;
	size_t nshims = kd_strv_length(in->shims), n = 0;
	_cleanup_free_ kd_handler *h = calloc(nshims * nv + KD_CUSTOM_MAX + 1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	char prefix[KD_PATH_MAX];
	snprintf(prefix, sizeof(prefix), "/%s", in->prefix);
	for (size_t i = 0; i < nshims; i++) {
		const char *shim = in->shims[i];
		char snap[64], what[128];
		bool guest_pull;
		int r = parse_snapshotters(o->snapshotter_handler_mapping, shim, snap, sizeof(snap),
					   named, err);
		if (r < 0 ||
		    (r = parse_pull_type(o->pull_type_mapping, shim, &guest_pull, named, err)) < 0)
			return r;
		snprintf(what, sizeof(what), "shim '%s'", shim);
		if ((r = check_mapping(f, what, snap, &guest_pull, err)) < 0 ||
		    (r = snap_resolve(ss, shim, what, snap, sizeof(snap), err)) < 0)
			return r;
		for (size_t v = 0; v < nv; v++, n++) {
			kd_handler *x = &h[n];
			x->variant = variants[v];
			snprintf(x->shim, sizeof(x->shim), "%s", shim);
			snprintf(x->name, sizeof(x->name), "kata-%s%s%s%s", shim,
				 o->suffix && *o->suffix ? "-" : "", o->suffix ? o->suffix : "",
				 kd_variant_suffix(x->variant));
			kd_kata_paths(prefix, shim, x->variant, x->runtime_path,
				      sizeof(x->runtime_path), x->config_path,
				      sizeof(x->config_path));
			snprintf(x->snapshotter, sizeof(x->snapshotter), "%s", snap);
			x->guest_pull = guest_pull;
		}
	}
	if (o->custom_runtimes) {
		if (!o->custom_configs)
			return kd_err(err, -EINVAL,
				      "--custom-runtimes needs --custom-configs DIR (where "
				      "custom-runtimes.list is)");
		int r = add_custom(in, o, f, ss, prefix, absent, h, &n, err);
		if (r < 0)
			return r;
	}
	*ret = TAKE_PTR(h);
	*ret_n = n;
	return 0;
}

/* containerd.userDropIn (upstream's CONTAINERD_USER_DROP_IN_SOURCE_FILE): the admin's TOML,
 * copied whole beside our drop-in as zz-kata-deploy-user[-suffix].toml, a name that sorts
 * after ours, so containerd merges it last and its keys win over ours. Only where the daemon
 * deep-merges drop-ins (2.x): 1.x replaces whole plugin tables from an import. Sets path (the
 * copy, relative) and entry (the `imports` entry the root config needs for it, "" if none). */
static int user_dropin_target(const kd_config_plan *p, const kd_ctd_plan *cp, const char *suffix,
			      const kd_toml_doc *main_doc, const kd_config_file *mrec, char *path,
			      size_t path_size, char *entry, size_t entry_size, kd_error *err)
{
	const kd_flavour *f = &p->flavour;
	char sfx[80] = "", dir[KD_PATH_MAX];
	entry[0] = '\0';
	if (suffix && *suffix)
		snprintf(sfx, sizeof(sfx), "-%s", suffix);
	if (cp->strategy == KD_CTD_DROPIN || cp->strategy == KD_CTD_DROPIN_IMPORT) {
		snprintf(dir, sizeof(dir), "%s", cp->target);
		char *sl = strrchr(dir, '/');
		if (sl)
			*sl = '\0';
	} else if (cp->strategy == KD_CTD_CREATE_MAIN && f->id == KD_FLAVOUR_CONTAINERD &&
		   cp->version >= 3) {
		snprintf(dir, sizeof(dir), "%s/conf.d", f->config_dir);
	} else {
		return kd_err(err, -EINVAL,
			      "needs containerd 2.x reading drop-ins (it "
			      "deep-merges them; 1.x replaces whole plugin tables from an import), "
			      "but here: %s",
			      cp->why);
	}
	snprintf(path, path_size, "%s/zz-kata-deploy-user%s.toml", dir, sfx);
	if (kd_flavour_is_k0s(f->id))
		return 0; /* k0s imports every file of containerd.d itself */
	char abs[KD_PATH_MAX];
	snprintf(abs, sizeof(abs), "/%s", path);
	/* Covered by the root config's own imports (not by entries we added last time)? */
	_cleanup_strv_ char **imports = NULL, **theirs = calloc(1, sizeof(char *));
	int v, r;
	if (!theirs)
		return -ENOMEM;
	if (main_doc && cp->strategy != KD_CTD_CREATE_MAIN) {
		if ((r = kd_containerd_root_info(main_doc, cp->main, &v, &imports, err)) < 0)
			return r;
		for (size_t i = 0; imports[i]; i++)
			if (!(mrec && kd_strv_find(mrec->imports, imports[i])) &&
			    kd_strv_push(&theirs, imports[i]) < 0)
				return -ENOMEM;
	}
	if (kd_containerd_imports_cover(theirs, f->config_dir, abs))
		return 0;
	if (kd_flavour_is_k3s_like(f->id))
		return kd_err(err, -EINVAL,
			      "%s's /%s does not import /%s; add it to "
			      "the imports of its template",
			      f->name, cp->main, path);
	snprintf(entry, entry_size, "%s", abs);
	return 0;
}

/* Add entries to the root config's `imports` (kept in order, none twice); records them. */
static int add_imports(kd_toml_doc *doc, const char *name, char *const *add, kd_config_file *rec,
		       kd_error *err)
{
	_cleanup_strv_ char **imports = NULL;
	int v;
	int r = kd_containerd_root_info(doc, name, &v, &imports, err);
	if (r < 0)
		return r;
	rec->import_key = kd_toml_get(kd_toml_root(doc), "imports") == NULL;
	bool changed = false;
	for (size_t i = 0; add && add[i]; i++) {
		if (kd_strv_push(&rec->imports, add[i]) < 0)
			return -ENOMEM;
		if (kd_strv_find(imports, add[i]))
			continue;
		if (kd_strv_push(&imports, add[i]) < 0)
			return -ENOMEM;
		changed = true;
	}
	if (changed &&
	    (r = kd_toml_set_strings(doc, NULL, 0, "imports", (const char *const *)imports,
				     kd_strv_length(imports), err)) < 0)
		return kd_err_wrap(err, r, "/%s", name);
	return 0;
}

static int plan_containerd(kd_config_plan *p, const kd_runtime_input *in, const kd_runtime_opts *o,
			   const kd_snap_setup *ss, const kd_handler *h, size_t n, kd_error *err)
{
	kd_ctd_plan *cp = &p->ctd;
	int r = kd_containerd_strategy(in->rootfd, &p->flavour, o->suffix, cp, err);
	if (r < 0)
		return r;
	const kd_config_file *mrec = find_record(in->prev, cp->main);
	if (mrec && mrec->created && mrec->base && p->flavour.id == KD_FLAVOUR_CONTAINERD) {
		/* The root config is the minimal one we made: it stays ours, whatever the
		 * strategy for a config we found would be. */
		_cleanup_toml_ kd_toml_doc *sk = NULL;
		_cleanup_strv_ char **imp = NULL;
		if ((r = parse_named(cp->main, mrec->base, strlen(mrec->base), &sk, err)) < 0 ||
		    (r = kd_containerd_root_info(sk, cp->main, &cp->version, &imp, err)) < 0)
			return r;
		cp->strategy = KD_CTD_CREATE_MAIN;
		cp->import_entry[0] = '\0';
		snprintf(cp->target, sizeof(cp->target), "%s", cp->main);
		snprintf(cp->why, sizeof(cp->why), "/%s is the minimal config kata-deploy created",
			 cp->main);
	}
	if (cp->strategy == KD_CTD_DROPIN && p->flavour.id == KD_FLAVOUR_CONTAINERD && mrec &&
	    mrec->imports) {
		/* "Already imported" only because of the entry we added last time: it is still
		 * ours (the revert below removes it, this plan adds it back). */
		char abs[KD_PATH_MAX];
		snprintf(abs, sizeof(abs), "/%s", cp->target);
		if (kd_strv_find(mrec->imports, abs)) {
			cp->strategy = KD_CTD_DROPIN_IMPORT;
			snprintf(cp->import_entry, sizeof(cp->import_entry), "%s", abs);
			snprintf(cp->why, sizeof(cp->why),
				 "containerd %d.%d: drop-in /%s + an imports entry in /%s",
				 p->flavour.major, p->flavour.minor, cp->target, cp->main);
		}
	}
	kd_info("containerd config: %s", cp->why);
	kd_change *c;
	_cleanup_free_ char *base = NULL;
	size_t blen;
	_cleanup_strv_ char **tables = calloc(1, sizeof(char *));
	_cleanup_toml_ kd_toml_doc *doc = NULL, *main_doc = NULL;
	if (!tables)
		return -ENOMEM;
	bool own_file = cp->strategy != KD_CTD_INPLACE;
	if ((r = load_base(p, in->rootfd, in->prev, cp->target,
			   cp->strategy == KD_CTD_DROPIN || cp->strategy == KD_CTD_DROPIN_IMPORT ||
				   cp->strategy == KD_CTD_TEMPLATE,
			   &c, &base, &blen, err)) < 0)
		return r;
	/* Files we create build on a skeleton (or on what is left of our earlier file, so an
	 * admin's additions survive); an in-place edit builds on the current file. */
	const char *skel = cp->strategy == KD_CTD_TEMPLATE  ? ""
			   : cp->strategy == KD_CTD_INPLACE ? NULL
							    : kd_containerd_skeleton(cp->version);
	const char *start = base ? base : skel ? skel : "";
	size_t slen = base ? blen : strlen(start);
	if ((r = parse_named(cp->target, start, slen, &doc, err)) < 0)
		return r;
	/* runc's options come from the file the daemon reads them from: the main config. */
	const kd_toml_doc *inherit = doc;
	_cleanup_toml_ kd_toml_doc *imported = NULL;
	if (cp->strategy == KD_CTD_DROPIN || cp->strategy == KD_CTD_DROPIN_IMPORT ||
	    cp->strategy == KD_CTD_TEMPLATE) {
		_cleanup_free_ char *mt = NULL;
		size_t ml;
		if ((r = read_opt(in->rootfd, cp->main, &mt, &ml, err)) < 0)
			return r;
		if (mt && (r = parse_named(cp->main, mt, ml, &main_doc, err)) < 0)
			return r;
		inherit = main_doc;
		/* 2.x: an imported file's runc options override the main file's. */
		if (cp->strategy != KD_CTD_TEMPLATE &&
		    (r = kd_containerd_runc_source(in->rootfd, cp->main, main_doc, cp->version,
						   cp->target, &imported, err)) < 0)
			return r;
		if (imported)
			inherit = imported;
	}
	int schema = cp->version;
	if (cp->strategy == KD_CTD_TEMPLATE && main_doc) {
		_cleanup_strv_ char **imp = NULL;
		if ((r = kd_containerd_root_info(main_doc, cp->main, &schema, &imp, err)) < 0)
			return r;
	}
	/* The user drop-in: where it goes and whether the root config must import it. */
	char user_path[KD_PATH_MAX] = "", user_entry[KD_PATH_MAX] = "";
	_cleanup_free_ char *user_text = NULL;
	if (o->containerd_user_dropin && *o->containerd_user_dropin) {
		if ((r = kd_custom_read_toml(o->containerd_user_dropin, &user_text, err)) < 0 ||
		    (r = user_dropin_target(p, cp, o->suffix,
					    cp->strategy == KD_CTD_CREATE_MAIN ? doc : main_doc,
					    mrec, user_path, sizeof(user_path), user_entry,
					    sizeof(user_entry), err)) < 0)
			return kd_err_wrap(err, r, "containerd user drop-in");
	}
	char *user_add[] = {user_entry, NULL};
	if (ss->nydus && cp->strategy == KD_CTD_TEMPLATE)
		return kd_err(
			err, -EINVAL,
			"--setup-snapshotter nydus: not on %s with containerd %d.x (its base "
			"template has the CRI plugin's tables, which kata-deploy does not edit)",
			p->flavour.name, p->flavour.major);
	/* The snapshotter tables first: the CRI plugin table they may add must not be implied by
	 * the runc table below (an implied table is not ours to add keys to). */
	if ((r = kd_containerd_add_snapshotters(doc, schema, ss, &tables, err)) < 0)
		return kd_err_wrap(err, r, "/%s", cp->target);
	/* 1.x (or unknown) reading a file of ours or an in-place edit: keep the built-in runc. */
	if ((cp->strategy == KD_CTD_INPLACE || cp->strategy == KD_CTD_CREATE_MAIN) &&
	    p->flavour.major < 2 && n > 0 &&
	    (r = kd_containerd_keep_default_runtime(doc, schema, &tables, err)) < 0)
		return kd_err_wrap(err, r, "/%s", cp->target);
	if ((r = kd_containerd_add_handlers(doc, schema, h, n, inherit,
					    o->debug && cp->strategy != KD_CTD_TEMPLATE, &tables,
					    err)) < 0)
		return kd_err_wrap(err, r, "/%s", cp->target);
	if (cp->strategy == KD_CTD_TEMPLATE) {
		size_t tl;
		const char *t = kd_toml_text(doc, &tl);
		size_t bl = strlen(KD_K3S_TEMPLATE_BASE);
		c->new_text = malloc(bl + tl + 2);
		if (!c->new_text)
			return -ENOMEM;
		memcpy(c->new_text, KD_K3S_TEMPLATE_BASE, bl);
		memcpy(c->new_text + bl, t, tl);
		c->new_len = bl + tl;
		c->new_text[c->new_len] = '\0';
		c->has_record = true;
		c->rec.path = strdup(c->path);
		c->rec.created = c->rec.whole = true;
		c->rec.mode = c->mode;
		c->rec.tables = calloc(1, sizeof(char *));
		c->rec.texts = calloc(1, sizeof(char *));
		if (!c->rec.path || !c->rec.tables || !c->rec.texts)
			return -ENOMEM;
		sha_of(c->new_text, c->new_len, c->rec.result_sha);
		c->rec.result_len = c->new_len;
	} else {
		/* The root config we create imports the user drop-in itself. */
		if (cp->strategy == KD_CTD_CREATE_MAIN && user_entry[0] &&
		    (r = add_imports(doc, cp->main, user_add, &c->rec, err)) < 0)
			return r;
		if ((r = finish_record(c, c->rec.created ? skel : base, doc, tables, own_file,
				       false, err)) < 0)
			return r;
	}

	/* Our drop-in's imports entry and / or the user drop-in's, in the root config. */
	char *add[3] = {NULL, NULL, NULL};
	size_t na = 0;
	if (cp->strategy == KD_CTD_DROPIN_IMPORT)
		add[na++] = cp->import_entry;
	if (cp->strategy != KD_CTD_CREATE_MAIN && user_entry[0])
		add[na++] = user_entry;
	if (na > 0) {
		kd_change *m;
		_cleanup_free_ char *mbase = NULL;
		size_t mblen;
		_cleanup_toml_ kd_toml_doc *md = NULL;
		_cleanup_strv_ char **none = calloc(1, sizeof(char *));
		kd_config_file rec = {0};
		if (!none)
			return -ENOMEM;
		if ((r = load_base(p, in->rootfd, in->prev, cp->main, false, &m, &mbase, &mblen,
				   err)) < 0 ||
		    (r = parse_named(cp->main, mbase ? mbase : "", mbase ? mblen : 0, &md, err)) <
			    0 ||
		    (r = add_imports(md, cp->main, add, &rec, err)) < 0 ||
		    (r = finish_record(m, mbase ? mbase : "", md, none, false, false, err)) < 0) {
			kd_config_file_done(&rec);
			return r;
		}
		m->rec.imports = TAKE_PTR(rec.imports);
		m->rec.import_key = rec.import_key;
	}
	if (user_text &&
	    (r = whole_file(p, in->rootfd, in->prev, user_path, user_text, 0, err)) < 0)
		return kd_err_wrap(err, r, "containerd user drop-in");
	return 0;
}

/* Missing directories for a new file, outermost first. */
static int plan_dirs(kd_config_plan *p, int rootfd, const char *path)
{
	char buf[KD_PATH_MAX];
	snprintf(buf, sizeof(buf), "%s", path);
	char *slash = strrchr(buf, '/');
	if (!slash)
		return 0;
	*slash = '\0';
	for (char *s = buf;; s++) {
		if (*s != '/' && *s != '\0')
			continue;
		char saved = *s;
		*s = '\0';
		struct stat st;
		if (kd_lstat(rootfd, buf, &st, NULL) == -ENOENT && !kd_strv_find(p->dirs, buf) &&
		    kd_strv_push(&p->dirs, buf) < 0)
			return -ENOMEM;
		if (!saved)
			return 0;
		*s = saved;
	}
}

/* Records of earlier runs that this run no longer writes: revert them (force: uninstall, which
 * removes our tables even where they were edited). */
static int plan_stale(kd_config_plan *p, int rootfd, const kd_state *prev, bool force,
		      kd_error *err)
{
	for (size_t i = 0; prev && i < prev->n_config; i++) {
		const kd_config_file *rec = &prev->config[i];
		bool wanted = false;
		for (size_t k = 0; k < p->n; k++)
			wanted = wanted || !strcmp(p->changes[k].path, rec->path);
		if (wanted)
			continue;
		kd_change *c = plan_add(p, rec->path, err);
		if (!c)
			return -ENOMEM;
		int r = read_opt(rootfd, rec->path, &c->old, &c->old_len, err);
		if (r < 0)
			return r;
		struct stat st;
		if (c->old && kd_lstat(rootfd, rec->path, &st, NULL) == 0)
			c->mode = st.st_mode & 07777;
		char why[8192];
		r = kd_revert_text(rec, c->old, c->old_len, force, &c->new_text, &c->new_len, why,
				   sizeof(why), err);
		if (r < 0)
			return r;
		if (why[0]) {
			kd_warn("%s", why);
			p->inexact++;
		}
		if (r == KD_REVERT_SAME || r == KD_REVERT_LEAVE) {
			/* unchanged: new = old */
			free(c->new_text);
			c->new_text = c->old ? strndup(c->old, c->old_len) : NULL;
			c->new_len = c->old_len;
		}
	}
	return 0;
}

static bool tree_has(const kd_runtime_input *in, const char *path)
{
	if (in->read_tree && in->tree_exists)
		return in->tree_exists(in->read_tree_userdata, path);
	struct stat st;
	return in->treefd >= 0 && fstatat(in->treefd, path, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	       S_ISREG(st.st_mode);
}

/* The managed nydus service's files (snapshotter.h). */
static int plan_nydus(kd_config_plan *p, const kd_runtime_input *in, const kd_snap_setup *ss,
		      kd_error *err)
{
	if (!tree_has(in, KD_NYDUS_GRPC) || !tree_has(in, KD_NYDUS_OVERLAYFS))
		return kd_err(err, -ENOENT,
			      "--setup-snapshotter nydus: the payload has no %s component (%s, "
			      "%s)",
			      KD_NYDUS_COMPONENT, KD_NYDUS_GRPC, KD_NYDUS_OVERLAYFS);
	if (!p->flavour.unit[0])
		return kd_err(err, -EINVAL,
			      "--setup-snapshotter nydus: %s runs containerd without a systemd "
			      "unit of its own to bind the snapshotter service to",
			      p->flavour.name);
	kd_nydus_files f;
	int r = kd_nydus_render(ss->nydus_name, in->prefix, p->flavour.unit, &f, err);
	if (r < 0)
		return r;
	if ((r = whole_file(p, in->rootfd, in->prev, f.config_path, f.config, 0644, err)) >= 0 &&
	    (r = whole_file(p, in->rootfd, in->prev, f.unit_path, f.unit, 0644, err)) >= 0)
		r = whole_file(p, in->rootfd, in->prev, f.dropin_path, f.dropin, 0644, err);
	kd_nydus_files_done(&f);
	return r;
}

int kd_runtime_plan(const kd_runtime_input *in, const kd_runtime_opts *o, kd_config_plan *ret,
		    kd_error *err)
{
	kd_config_plan p = {.root_is_host = in->root_is_host};
	kd_snap_setup ss = {0};
	_cleanup_free_ kd_handler *h = NULL;
	_cleanup_strv_ char **absent = NULL, **named = NULL;
	size_t n = 0;
	kd_flavour_opts fo = {.runtime = o->runtime,
			      .runtime_version = o->runtime_version,
			      .distribution = o->distribution,
			      .config_path = o->config_path,
			      .binary = o->runtime_binary,
			      .root_is_host = in->root_is_host};
	int r = kd_flavour_detect(in->rootfd, &fo, &p.flavour, err);
	if (r < 0)
		return r;
	p.dirs = calloc(1, sizeof(char *));
	p.prev_handlers = calloc(1, sizeof(char *));
	if (!p.dirs || !p.prev_handlers) {
		kd_config_plan_done(&p);
		return -ENOMEM;
	}
	for (size_t i = 0; in->prev && i < in->prev->n_config; i++)
		if ((r = handler_names(in->prev->config[i].tables, &p.prev_handlers)) < 0)
			goto fail;
	/* The shims options may name: those installed, and those asked for but absent. */
	absent = o->absent_shims ? kd_strv_split(o->absent_shims, ',') : NULL;
	named = kd_strv_copy(in->shims);
	for (size_t i = 0; named && absent && absent[i]; i++)
		if (kd_strv_push(&named, absent[i]) < 0)
			kd_strv_free(TAKE_PTR(named));
	if (!named || (o->absent_shims && !absent)) {
		r = -ENOMEM;
		goto fail;
	}
	if (o->default_shim && !kd_strv_find(named, o->default_shim)) {
		r = kd_err(err, -EINVAL, "--default-shim '%s' is not one of the enabled shims",
			   o->default_shim);
		goto fail;
	}
	if (o->suffix && *o->suffix) {
		for (const char *s = o->suffix; *s; s++)
			if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-')) {
				r = kd_err(err, -EINVAL,
					   "--suffix '%s': only a-z, 0-9 and '-' (it becomes part "
					   "of handler and file names)",
					   o->suffix);
				goto fail;
			}
	}
	if (p.flavour.id == KD_FLAVOUR_NONE) {
		kd_info("no container runtime found on this root: runtime configuration skipped");
	} else {
		if (o->devkit && !o->debug) {
			r = kd_err(err, -EINVAL,
				   "--devkit needs --debug (devkit handlers are debug "
				   "handlers with the devkit guest image)");
			goto fail;
		}
		kd_kata_opts ko = {.https_proxy = o->agent_https_proxy,
				   .no_proxy = o->agent_no_proxy,
				   .annotations = o->allowed_hypervisor_annotations,
				   .k0s = kd_flavour_is_k0s(p.flavour.id),
				   .force_guest_pull = o->force_guest_pull};
		char prefix[KD_PATH_MAX];
		snprintf(prefix, sizeof(prefix), "/%s", in->prefix);
		ko.prefix = prefix;
		if ((r = kd_kata_validate(&ko, named, err)) < 0 ||
		    (r = snap_setup(o, &p.flavour, &ss, err)) < 0)
			goto fail;
		if (ss.nydus && o->snapshotter_optional &&
		    (!tree_has(in, KD_NYDUS_GRPC) || !tree_has(in, KD_NYDUS_OVERLAYFS))) {
			kd_warn("snapshotter nydus is not set up: the payload has no %s component "
				"(%s, %s); handlers mapped to nydus keep the name 'nydus'",
				KD_NYDUS_COMPONENT, KD_NYDUS_GRPC, KD_NYDUS_OVERLAYFS);
			ss.nydus = false;
		}
		if ((r = build_handlers(in, o, &p.flavour, &ss, named, absent, &h, &n, err)) < 0)
			goto fail;
		/* Kata's per-shim configuration first: the CRI points at it. */
		kd_tree_src tree = {in->treefd, in->read_tree, in->read_tree_userdata,
				    in->tree_exists};
		for (size_t i = 0; i < n; i++) {
			kd_kata_file files[KD_KATA_MAX_FILES];
			size_t nf = 0;
			_cleanup_free_ char *user = NULL;
			bool custom = h[i].variant == KD_VARIANT_CUSTOM;
			if ((r = kd_custom_dropin(o->custom_configs, custom ? h[i].name : h[i].shim,
						  &user, err)) < 0)
				goto fail;
			kd_kata_target t = {.shim = h[i].shim,
					    .variant = h[i].variant,
					    .custom = custom ? h[i].name : NULL,
					    .user_dropin = user};
			if ((r = kd_kata_render_target(&tree, &t, &ko, files, &nf, err)) < 0)
				goto fail;
			for (size_t k = 0; k < nf && r >= 0; k++)
				r = whole_file(&p, in->rootfd, in->prev, files[k].path,
					       files[k].text, files[k].mode, err);
			kd_kata_files_free(files, nf);
			if (r < 0)
				goto fail;
		}
		if (p.flavour.crio) {
			char path[KD_PATH_MAX];
			_cleanup_free_ char *text = NULL;
			_cleanup_strv_ char **tables = calloc(1, sizeof(char *));
			kd_crio_dropin_path(o->suffix, path, sizeof(path));
			if (!tables) {
				r = -ENOMEM;
				goto fail;
			}
			if ((r = kd_crio_render(h, n, o->debug, &text, &tables, err)) < 0 ||
			    (r = whole_file(&p, in->rootfd, in->prev, path, text, 0, err)) < 0)
				goto fail;
		} else if ((r = plan_containerd(&p, in, o, &ss, h, n, err)) < 0 ||
			   (ss.nydus && (r = plan_nydus(&p, in, &ss, err)) < 0)) {
			goto fail;
		}
	}
	if ((r = plan_stale(&p, in->rootfd, in->prev, false, err)) < 0)
		goto fail;
	for (size_t i = 0; i < p.n; i++) {
		const kd_config_file *pr = find_record(in->prev, p.changes[i].path);
		if (pr && pr->whole && p.changes[i].old &&
		    (r = handler_names_in_text(p.changes[i].old, p.changes[i].old_len,
					       &p.prev_handlers)) < 0)
			goto fail;
	}
	for (size_t i = 0; i < p.n; i++)
		if (p.changes[i].new_text && !p.changes[i].old &&
		    (r = plan_dirs(&p, in->rootfd, p.changes[i].path)) < 0)
			goto fail;
	p.opts_json = opts_to_json(o, &p.flavour);
	if (!p.opts_json) {
		r = -ENOMEM;
		goto fail;
	}
	*ret = p;
	return 0;
fail:
	kd_config_plan_done(&p);
	return r;
}

int kd_runtime_plan_revert(int rootfd, const kd_state *s, bool root_is_host, kd_config_plan *ret,
			   kd_error *err)
{
	kd_config_plan p = {.root_is_host = root_is_host};
	int r = plan_stale(&p, rootfd, s, true, err);
	if (r < 0) {
		kd_config_plan_done(&p);
		return r;
	}
	*ret = p;
	return 0;
}

bool kd_runtime_changed(const kd_config_plan *p)
{
	for (size_t i = 0; i < p->n; i++) {
		const kd_change *c = &p->changes[i];
		if (!c->old != !c->new_text)
			return true;
		if (c->old && (c->old_len != c->new_len || memcmp(c->old, c->new_text, c->new_len)))
			return true;
	}
	return false;
}

static bool change_is_noop(const kd_change *c)
{
	if (!c->old && !c->new_text)
		return true;
	return c->old && c->new_text && c->old_len == c->new_len &&
	       !memcmp(c->old, c->new_text, c->new_len);
}

/* ---- validation ------------------------------------------------------------------------ */

static const kd_change *change_for(const kd_config_plan *p, const char *path)
{
	for (size_t i = 0; i < p->n; i++)
		if (!strcmp(p->changes[i].path, path))
			return &p->changes[i];
	return NULL;
}

/* The text containerd would read at path after the change (NULL: absent). */
static int text_after(int rootfd, const kd_config_plan *p, const char *path, char **ret,
		      size_t *ret_len, kd_error *err)
{
	const kd_change *c = change_for(p, path);
	if (c) {
		*ret = c->new_text ? strndup(c->new_text, c->new_len) : NULL;
		*ret_len = c->new_len;
		return c->new_text && !*ret ? -ENOMEM : 0;
	}
	return read_opt(rootfd, path, ret, ret_len, err);
}

/* Copy path (after the change) into tmp/<path>, with absolute imports pointed into tmp, and
 * the files those imports match (on the root, and among our new files) as well. */
static int mirror(int rootfd, const kd_config_plan *p, const char *tmp, const char *path,
		  const char *override, int depth, kd_error *err)
{
	_cleanup_free_ char *text = NULL;
	size_t len = 0;
	int r;
	if (override) {
		if (!(text = strdup(override)))
			return -ENOMEM;
		len = strlen(text);
	} else if ((r = text_after(rootfd, p, path, &text, &len, err)) < 0) {
		return r;
	}
	if (!text)
		return 0;
	_cleanup_toml_ kd_toml_doc *doc = NULL;
	_cleanup_strv_ char **imports = NULL, **moved = calloc(1, sizeof(char *));
	int v;
	if ((r = parse_named(path, text, len, &doc, err)) < 0 ||
	    (r = kd_containerd_root_info(doc, path, &v, &imports, err)) < 0)
		return r;
	char dir[KD_PATH_MAX], abs[KD_PATH_MAX];
	snprintf(dir, sizeof(dir), "%s", path);
	char *sl = strrchr(dir, '/');
	if (sl)
		*sl = '\0';
	else
		dir[0] = '\0';
	for (size_t i = 0; imports[i] && moved; i++) {
		if (imports[i][0] == '/')
			snprintf(abs, sizeof(abs), "%s", imports[i]);
		else
			snprintf(abs, sizeof(abs), "/%s/%s", dir, imports[i]);
		char m[KD_PATH_MAX];
		snprintf(m, sizeof(m), "%s%s", tmp, abs);
		kd_strv_push(&moved, imports[i][0] == '/' ? m : imports[i]);
		if (depth >= MIRROR_DEPTH_MAX)
			continue;
		char pat[KD_PATH_MAX];
		int pfx = snprintf(pat, sizeof(pat), "/proc/self/fd/%d", rootfd);
		snprintf(pat + pfx, sizeof(pat) - (size_t)pfx, "%s", abs);
		glob_t g;
		if (glob(pat, 0, NULL, &g) == 0) {
			for (size_t k = 0; k < g.gl_pathc; k++)
				if ((r = mirror(rootfd, p, tmp, g.gl_pathv[k] + pfx + 1, NULL,
						depth + 1, err)) < 0) {
					globfree(&g);
					return r;
				}
			globfree(&g);
		}
		for (size_t k = 0; k < p->n; k++) {
			char cabs[KD_PATH_MAX];
			snprintf(cabs, sizeof(cabs), "/%s", p->changes[k].path);
			if (p->changes[k].new_text && fnmatch(abs, cabs, FNM_PATHNAME) == 0 &&
			    (r = mirror(rootfd, p, tmp, p->changes[k].path, NULL, depth + 1, err)) <
				    0)
				return r;
		}
	}
	if (!moved)
		return -ENOMEM;
	if (imports[0] &&
	    (r = kd_toml_set_strings(doc, NULL, 0, "imports", (const char *const *)moved,
				     kd_strv_length(moved), err)) < 0)
		return r;
	char out[KD_PATH_MAX];
	snprintf(out, sizeof(out), "%s/%s", tmp, path);
	_cleanup_close_ int tfd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	char parent[KD_PATH_MAX];
	snprintf(parent, sizeof(parent), "%s", out);
	*strrchr(parent, '/') = '\0';
	if ((r = kd_mkdir_p(tfd, parent, 0700, NULL, NULL, err)) < 0)
		return r;
	const char *t = kd_toml_text(doc, &len);
	return kd_write_atomic(tfd, out, t, len, 0600, err);
}

static int loader_timeout_ms(void)
{
	/* Test hook, like KD_FAULT_AT: a shorter bound so a test need not wait a minute. */
	const char *e = getenv("KD_TEST_LOADER_TIMEOUT_MS");
	long v = e ? strtol(e, NULL, 10) : 0;
	return v > 0 && v < LOADER_TIMEOUT_SEC * 1000 ? (int)v : LOADER_TIMEOUT_SEC * 1000;
}

/* Run argv with stdout + stderr captured; bounded in time and output. The child leads its own
 * process group, so a loader that forks is killed with everything it started. Returns its exit
 * status (128 + signal when killed by one). */
static int run_capture(char *const argv[], char **ret_out, kd_error *err)
{
	int pfd[2];
	if (pipe2(pfd, O_CLOEXEC) < 0)
		return kd_err_errno(err, negative_errno(), "pipe");
	pid_t pid = fork();
	if (pid < 0) {
		int r = negative_errno();
		close(pfd[0]);
		close(pfd[1]);
		return kd_err_errno(err, r, "fork");
	}
	if (pid == 0) {
		setpgid(0, 0);
		dup2(pfd[1], STDOUT_FILENO);
		dup2(pfd[1], STDERR_FILENO);
		execv(argv[0], argv);
		dprintf(STDERR_FILENO, "cannot execute %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	setpgid(pid, pid); /* both sides: no race with the kill below */
	close(pfd[1]);
	size_t n = 0, cap = 65536;
	char *buf = malloc(cap);
	struct timespec start, now;
	clock_gettime(CLOCK_MONOTONIC, &start);
	int limit = loader_timeout_ms();
	bool timed_out = false;
	while (buf) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		long spent = (now.tv_sec - start.tv_sec) * 1000 +
			     (now.tv_nsec - start.tv_nsec) / 1000000;
		if (spent >= limit) {
			timed_out = true;
			break;
		}
		struct pollfd pl = {.fd = pfd[0], .events = POLLIN};
		int pr = poll(&pl, 1, (int)(limit - spent));
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr <= 0) {
			timed_out = pr == 0;
			break;
		}
		ssize_t k = read(pfd[0], buf + n, cap - n - 1);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		n += (size_t)k;
		if (n + 1 >= cap && cap < LOADER_OUTPUT_MAX) {
			char *nb = realloc(buf, cap * 2);
			if (!nb)
				break;
			buf = nb;
			cap *= 2;
		} else if (n + 1 >= cap) {
			break;
		}
	}
	close(pfd[0]);
	int status = 0;
	/* Output closed (or too much of it): the loader still has the rest of the bound. */
	while (!timed_out && buf) {
		pid_t w = waitpid(pid, &status, WNOHANG);
		if (w == pid || (w < 0 && errno != EINTR))
			break;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000 >=
		    limit)
			timed_out = true;
		else
			nanosleep(&(struct timespec){.tv_nsec = 10 * 1000 * 1000}, NULL);
	}
	if (timed_out || !buf) {
		kill(-pid, SIGKILL);
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
	}
	if (timed_out) {
		free(buf);
		return kd_err(err, -ETIMEDOUT,
			      "the runtime's own loader %s did not finish within %d ms: killed",
			      argv[0], limit);
	}
	if (!buf)
		return -ENOMEM;
	buf[n] = '\0';
	*ret_out = buf;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* The config k3s/rke2 rendered from our previous template holds that template's tables: drop
 * them (they are what the new template replaces) before appending the new one. *ret stays NULL
 * when the template on disk is not ours. */
static int strip_rendered(const char *main, const char *base, size_t blen, const kd_change *c,
			  char **ret, kd_error *err)
{
	size_t tl = strlen(KD_K3S_TEMPLATE_BASE);
	_cleanup_toml_ kd_toml_doc *old = NULL, *doc = NULL;
	*ret = NULL;
	if (!c->old || c->old_len < tl || strncmp(c->old, KD_K3S_TEMPLATE_BASE, tl) != 0 ||
	    kd_toml_parse(c->path, c->old + tl, c->old_len - tl, &old, NULL) < 0)
		return 0;
	int r = parse_named(main, base, blen, &doc, err);
	if (r < 0)
		return r;
	static const char *const plugins[] = {"plugins"};
	const kd_toml_node *pl = kd_toml_table(old, plugins, 1);
	for (const kd_toml_node *id = kd_toml_first(pl); id; id = kd_toml_next(id)) {
		const char *idk = kd_toml_key(id, NULL);
		const char *sub[2] = {"containerd", "runtimes"};
		size_t ns = 2;
		if (!strcmp(idk, "io.containerd.cri.v1.images")) {
			sub[0] = "runtime_platforms";
			ns = 1;
		}
		const kd_toml_node *t = id;
		for (size_t k = 0; k < ns && t; k++)
			t = kd_toml_get(t, sub[k]);
		for (const kd_toml_node *h = kd_toml_first(t); h; h = kd_toml_next(h)) {
			const char *path[5] = {"plugins", idk, sub[0], sub[1], NULL};
			path[2 + ns] = kd_toml_key(h, NULL);
			kd_error e2 = {0};
			r = kd_toml_remove_table(doc, path, 3 + ns, &e2);
			if (r < 0 && r != -ENOENT)
				return kd_err(err, r, "%s", e2.msg);
		}
	}
	size_t len;
	const char *text = kd_toml_text(doc, &len);
	*ret = strndup(text, len);
	return *ret ? 0 : -ENOMEM;
}

/* ---- the effective config before and after -------------------------------------------- */

/* Go decodes an absent key as its zero value: a zero leaf missing from a dump is the same
 * setting as the zero leaf printed. */
static bool toml_zero(const kd_toml_node *n)
{
	const char *s;
	size_t len;
	int64_t i;
	double d;
	bool b;
	switch (kd_toml_type_of(n)) {
	case KD_TOML_STRING:
		return kd_toml_get_string(n, &s, &len) == 0 && len == 0;
	case KD_TOML_INTEGER:
		return kd_toml_get_int(n, &i) == 0 && i == 0;
	case KD_TOML_FLOAT:
		return kd_toml_get_float(n, &d) == 0 && d == 0;
	case KD_TOML_BOOL:
		return kd_toml_get_bool(n, &b) == 0 && !b;
	case KD_TOML_ARRAY:
		return kd_toml_count(n) == 0;
	case KD_TOML_TABLE:
		for (const kd_toml_node *c = kd_toml_first(n); c; c = kd_toml_next(c))
			if (!toml_zero(c))
				return false;
		return true;
	default:
		return false;
	}
}

static bool toml_same(const kd_toml_node *a, const kd_toml_node *b, int depth)
{
	if (!a || !b)
		return (!a || toml_zero(a)) && (!b || toml_zero(b));
	kd_toml_type t = kd_toml_type_of(a);
	if (t != kd_toml_type_of(b) || depth > KD_TOML_MAX_DEPTH)
		return false;
	const char *sa, *sb;
	size_t la, lb;
	int64_t ia, ib;
	double da, db;
	bool ba, bb;
	switch (t) {
	case KD_TOML_STRING:
		return kd_toml_get_string(a, &sa, &la) == 0 &&
		       kd_toml_get_string(b, &sb, &lb) == 0 && la == lb && !memcmp(sa, sb, la);
	case KD_TOML_INTEGER:
		return kd_toml_get_int(a, &ia) == 0 && kd_toml_get_int(b, &ib) == 0 && ia == ib;
	case KD_TOML_FLOAT:
		return kd_toml_get_float(a, &da) == 0 && kd_toml_get_float(b, &db) == 0 && da == db;
	case KD_TOML_BOOL:
		return kd_toml_get_bool(a, &ba) == 0 && kd_toml_get_bool(b, &bb) == 0 && ba == bb;
	case KD_TOML_ARRAY:
		if (kd_toml_count(a) != kd_toml_count(b))
			return false;
		for (size_t i = 0; i < kd_toml_count(a); i++)
			if (!toml_same(kd_toml_at(a, i), kd_toml_at(b, i), depth + 1))
				return false;
		return true;
	case KD_TOML_TABLE:
		for (const kd_toml_node *c = kd_toml_first(a); c; c = kd_toml_next(c))
			if (!toml_same(c, kd_toml_get(b, kd_toml_key(c, NULL)), depth + 1))
				return false;
		for (const kd_toml_node *c = kd_toml_first(b); c; c = kd_toml_next(c))
			if (!kd_toml_get(a, kd_toml_key(c, NULL)) && !toml_zero(c))
				return false;
		return true;
	default:
		return kd_toml_get_datetime(a, &sa, &la) == 0 &&
		       kd_toml_get_datetime(b, &sb, &lb) == 0 && la == lb && !memcmp(sa, sb, la);
	}
}

/* Every runtime of containerd's effective config before the change (but handlers of our own
 * previous install, which this one may drop) is still there with the same settings, and
 * default_runtime_name is unchanged and still names a runtime. Both texts are `config dump`
 * outputs of the same binary. */
static int compare_effective(const char *before, const char *after, char *const *ours,
			     kd_error *err)
{
	_cleanup_toml_ kd_toml_doc *b = NULL, *a = NULL;
	kd_error e2 = {0};
	if (kd_toml_parse("config dump (before)", before, strlen(before), &b, &e2) < 0 ||
	    kd_toml_parse("config dump (after)", after, strlen(after), &a, &e2) < 0)
		return kd_err(err, -EINVAL, "containerd's config dump is not TOML: %s", e2.msg);
	const char *pp[] = {"plugins"};
	const kd_toml_node *bp = kd_toml_table(b, pp, 1), *ap = kd_toml_table(a, pp, 1);
	for (const kd_toml_node *pl = kd_toml_first(bp); pl; pl = kd_toml_next(pl)) {
		const char *id = kd_toml_key(pl, NULL);
		const kd_toml_node *bc = kd_toml_get(pl, "containerd");
		const kd_toml_node *ac = kd_toml_get(kd_toml_get(ap, id), "containerd");
		if (kd_toml_type_of(bc) != KD_TOML_TABLE)
			continue;
		const kd_toml_node *brt = kd_toml_get(bc, "runtimes");
		const kd_toml_node *art = kd_toml_get(ac, "runtimes");
		for (const kd_toml_node *rt = kd_toml_first(brt); rt; rt = kd_toml_next(rt)) {
			const char *name = kd_toml_key(rt, NULL);
			if (kd_strv_find(ours, name) && strcmp(name, KD_CONTAINERD_DEFAULT_RUNTIME))
				continue;
			const kd_toml_node *now = kd_toml_get(art, name);
			if (!now)
				return kd_err(err, -EINVAL,
					      "the new config would drop runtime '%s' from "
					      "containerd's effective config (plugin \"%s\"): "
					      "refused, every runtime that was there must stay",
					      name, id);
			if (!toml_same(rt, now, 0))
				return kd_err(
					err, -EINVAL,
					"the new config would change runtime '%s' in "
					"containerd's effective config (plugin \"%s\"): refused",
					name, id);
		}
		const char *bd = NULL, *ad = NULL;
		kd_toml_get_string(kd_toml_get(bc, "default_runtime_name"), &bd, NULL);
		kd_toml_get_string(kd_toml_get(ac, "default_runtime_name"), &ad, NULL);
		if (bd && (!ad || strcmp(bd, ad)))
			return kd_err(err, -EINVAL,
				      "the new config would change containerd's "
				      "default_runtime_name from '%s' to '%s' (plugin \"%s\"): "
				      "refused",
				      bd, ad ? ad : "", id);
		/* Broken by this change: it named a runtime before (a template placeholder such
		 * as microk8s' "${RUNTIME}" names none before or after). */
		if (ad && *ad && kd_toml_get(brt, ad) && !kd_toml_get(art, ad))
			return kd_err(
				err, -EINVAL,
				"containerd's default_runtime_name '%s' would name no runtime "
				"in the new effective config (plugin \"%s\"): refused",
				ad, id);
	}
	return 0;
}

/* containerd logs to stderr, which the capture shares with the dump (a key its plugins do not
 * know: `time="…" level=warning msg="Ignoring unknown key in TOML for plugin" … key=x`, as 2.2
 * says of the erofs keys only later versions read). Those lines are taken out of the dump; for
 * the new config they are passed on. */
static void drop_log_lines(char *out, bool before)
{
	char *w = out;
	for (char *l = out; l && *l;) {
		char *nl = strchr(l, '\n');
		size_t n = nl ? (size_t)(nl - l) + 1 : strlen(l);
		if (!strncmp(l, "time=\"", 6) && memmem(l, n, " level=", 7)) {
			if (!before)
				kd_info("containerd: %.*s", (int)(n - (nl ? 1 : 0)), l);
		} else {
			memmove(w, l, n);
			w += n;
		}
		l += n;
	}
	*w = '\0';
}

/* Run the loader on a mirror of main as it is on the root (before == true) or as the plan
 * leaves it; *ret_out is its output. A missing main gives containerd's built-in defaults. */
static int dump_config(int rootfd, const kd_config_plan *p, const char *bin, const char *main,
		       const char *rendered, bool before, char **ret_out, kd_error *err)
{
	const char *td = getenv("TMPDIR");
	char tmp[KD_PATH_MAX], cfg[KD_PATH_MAX * 2];
	snprintf(tmp, sizeof(tmp), "%s/kd-validate.XXXXXX", td && *td ? td : "/tmp");
	if (!mkdtemp(tmp))
		return kd_err_errno(err, negative_errno(), "create a validation directory");
	kd_config_plan none = {.root_is_host = p->root_is_host};
	int r = mirror(rootfd, before ? &none : p, tmp, main, before ? NULL : rendered, 0, err);
	*ret_out = NULL;
	if (r >= 0) {
		snprintf(cfg, sizeof(cfg), "%s/%s", tmp, main);
		char *argv[] = {(char *)bin, "--config", cfg, "config", "dump", NULL};
		/* No file: the daemon runs with its defaults (1.6 refuses a missing --config). */
		if (access(cfg, F_OK) < 0) {
			argv[1] = "config";
			argv[2] = "default";
			argv[3] = NULL;
		}
		_cleanup_free_ char *out = NULL;
		int rc = run_capture(argv, &out, err);
		if (rc < 0) {
			r = rc;
		} else if (rc != 0) {
			char *nl = out ? strchr(out, '\n') : NULL;
			if (nl && nl[1] == '\0')
				*nl = '\0';
			r = kd_err(err, -EINVAL,
				   "containerd's own loader (%s config dump) refuses the %s config "
				   "(exit status %d): %.600s",
				   bin, before ? "current" : "new", rc,
				   out && *out ? out : "no output");
		} else {
			drop_log_lines(out, before);
			*ret_out = TAKE_PTR(out);
		}
	}
	_cleanup_close_ int rfd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	kd_remove_tree(rfd, tmp + 1, NULL);
	return r;
}

static int validate_containerd(int rootfd, const kd_config_plan *p, const char *bin, kd_error *err)
{
	_cleanup_free_ char *rendered = NULL;
	int r = 0;
	const char *main = p->ctd.main;
	if (p->ctd.strategy == KD_CTD_TEMPLATE) {
		/* What k3s renders: its base config followed by our part of the template. */
		const kd_change *c = change_for(p, p->ctd.target);
		_cleanup_free_ char *base = NULL, *clean = NULL;
		size_t bl;
		if ((r = read_opt(rootfd, main, &base, &bl, err)) >= 0 && base && c &&
		    (r = strip_rendered(main, base, bl, c, &clean, err)) < 0)
			return r;
		if (r >= 0 && c && c->new_text &&
		    asprintf(&rendered, "%s\n%s",
			     clean  ? clean
			     : base ? base
				    : "",
			     c->new_text + strlen(KD_K3S_TEMPLATE_BASE)) < 0)
			r = -ENOMEM;
		if (r < 0)
			return r;
	}
	_cleanup_free_ char *out = NULL, *before = NULL;
	/* What the daemon runs with now, then what it would run with. */
	if ((r = dump_config(rootfd, p, bin, main, NULL, true, &before, err)) < 0 ||
	    (r = dump_config(rootfd, p, bin, main, rendered, false, &out, err)) < 0)
		return r;
	/* Every handler must be in the merged config (a drop-in in a directory the daemon
	 * does not import is silently ignored: nvidia-container-toolkit#1404). */
	for (size_t i = 0; i < p->n; i++) {
		const kd_config_file *rec = p->changes[i].has_record ? &p->changes[i].rec : NULL;
		for (size_t k = 0; rec && rec->tables && rec->tables[k]; k++) {
			const char *last = strrchr(rec->tables[k], '.');
			char want[256];
			if (!last || !strstr(rec->tables[k], "runtimes."))
				continue;
			snprintf(want, sizeof(want), "runtimes%s]", last);
			if (!strstr(out, want))
				return kd_err(
					err, -EINVAL,
					"containerd's merged config does not show handler '%s' "
					"(is /%s imported?)",
					last + 1, rec->path);
		}
	}
	/* containerd 1.x replaces a whole map from a file (containerd#5837): a runtime of the
	 * built-in defaults or of another file may be gone although every file parses. */
	return compare_effective(before, out, p->prev_handlers, err);
}

static int write_tmp(const char *path, const char *text, size_t len, kd_error *err)
{
	_cleanup_close_ int tfd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return tfd < 0 ? kd_err_errno(err, negative_errno(), "open /")
		       : kd_write_atomic(tfd, path, text, len, 0600, err);
}

/* CRI-O reads its main file, then every file of its config dir in lexical order; a handler
 * table in a later file replaces the earlier one. `crio --config F --config-dir D config`
 * validates with onExecution=false: types, syntax and default_runtime are checked, no directory
 * is created (docs/TEST-PEERS.md). Mirrored into a temp dir as the files will be after the
 * change; every handler we add must show up in its output. */
static int validate_crio(int rootfd, const kd_config_plan *p, const char *bin, kd_error *err)
{
	const char *td = getenv("TMPDIR");
	char tmp[KD_PATH_MAX], path[KD_PATH_MAX * 2], cfg[KD_PATH_MAX + 16], dir[KD_PATH_MAX + 16];
	snprintf(tmp, sizeof(tmp), "%s/kd-validate.XXXXXX", td && *td ? td : "/tmp");
	if (!mkdtemp(tmp))
		return kd_err_errno(err, negative_errno(), "create a validation directory");
	snprintf(cfg, sizeof(cfg), "%s/crio.conf", tmp);
	snprintf(dir, sizeof(dir), "%s/crio.conf.d", tmp);
	_cleanup_free_ char *main_text = NULL, *out = NULL;
	_cleanup_strv_ char **names = calloc(1, sizeof(char *));
	size_t len = 0, dl = strlen(KD_CRIO_DROPIN_DIR);
	int r = names ? 0 : -ENOMEM;
	if (r >= 0 && mkdir(dir, 0700) < 0)
		r = kd_err_errno(err, negative_errno(), "create '%s'", dir);
	if (r >= 0 && (r = text_after(rootfd, p, p->flavour.config, &main_text, &len, err)) >= 0)
		r = write_tmp(cfg, main_text ? main_text : "", main_text ? len : 0, err);
	/* The drop-ins on the root now, and ours (which may be new). */
	_cleanup_close_ int dfd = r < 0 ? -1
					: kd_openat(rootfd, KD_CRIO_DROPIN_DIR,
						    O_RDONLY | O_DIRECTORY, 0, KD_NOFOLLOW, NULL);
	DIR *d = dfd >= 0 ? fdopendir(TAKE_FD(dfd)) : NULL;
	for (struct dirent *de; d && names && (de = readdir(d));)
		if (de->d_name[0] != '.' && (de->d_type == DT_REG || de->d_type == DT_UNKNOWN))
			kd_strv_push(&names, de->d_name);
	if (d)
		closedir(d);
	for (size_t i = 0; names && i < p->n; i++) {
		const char *cp = p->changes[i].path;
		if (!strncmp(cp, KD_CRIO_DROPIN_DIR "/", dl + 1) && !strchr(cp + dl + 1, '/') &&
		    !kd_strv_find(names, cp + dl + 1))
			kd_strv_push(&names, cp + dl + 1);
	}
	for (size_t i = 0; r >= 0 && names && names[i]; i++) {
		_cleanup_free_ char *text = NULL;
		snprintf(path, sizeof(path), "%s/%s", KD_CRIO_DROPIN_DIR, names[i]);
		if ((r = text_after(rootfd, p, path, &text, &len, err)) < 0 || !text)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		r = write_tmp(path, text, len, err);
	}
	if (r >= 0 && !names)
		r = -ENOMEM;
	if (r >= 0) {
		char *argv[] = {(char *)bin, "--config", cfg, "--config-dir", dir, "config", NULL};
		int rc = run_capture(argv, &out, err);
		if (rc < 0)
			r = rc;
		else if (rc != 0)
			r = kd_err(err, -EINVAL,
				   "CRI-O's own loader (%s config) refuses the new config: %.600s",
				   bin, out ? out : "");
	}
	for (size_t i = 0; r >= 0 && out && i < p->n; i++) {
		const kd_config_file *rec = p->changes[i].has_record ? &p->changes[i].rec : NULL;
		for (size_t k = 0; rec && rec->tables && rec->tables[k]; k++) {
			char want[256];
			if (strncmp(rec->tables[k], "crio.runtime.runtimes.", 22) != 0)
				continue;
			snprintf(want, sizeof(want), "[%s]", rec->tables[k]);
			if (!strstr(out, want))
				r = kd_err(err, -EINVAL,
					   "CRI-O's effective config does not show handler '%s'",
					   rec->tables[k] + 22);
		}
	}
	_cleanup_close_ int rfd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	kd_remove_tree(rfd, tmp + 1, NULL);
	return r;
}

static const char *find_loader(const kd_config_plan *p, const kd_runtime_opts *o)
{
	if (o->runtime_binary)
		return o->runtime_binary;
	if (!p->root_is_host ||
	    (p->flavour.id != KD_FLAVOUR_CONTAINERD && p->flavour.id != KD_FLAVOUR_CRIO))
		return NULL;
	const char *ctd[] = {"/usr/local/bin/containerd", "/usr/bin/containerd"};
	const char *crio[] = {"/usr/local/bin/crio", "/usr/bin/crio"};
	const char **cands = p->flavour.crio ? crio : ctd;
	for (size_t i = 0; i < 2; i++)
		if (access(cands[i], X_OK) == 0)
			return cands[i];
	return NULL;
}

int kd_runtime_validate(int rootfd, const kd_config_plan *p, const kd_runtime_opts *o,
			kd_error *err)
{
	int r;
	for (size_t i = 0; i < p->n; i++) {
		const kd_change *c = &p->changes[i];
		if (!c->new_text || change_is_noop(c))
			continue;
		if (c->has_record && c->rec.whole && strstr(c->path, ".tmpl"))
			continue; /* a Go template: checked through its rendering below */
		if (c->mode & 0111)
			continue; /* the QEMU wrapper script */
		if (!strncmp(c->path, "etc/systemd/", 12))
			continue; /* the nydus service's unit and drop-in (INI, not TOML) */
		_cleanup_toml_ kd_toml_doc *d = NULL;
		if ((r = parse_named(c->path, c->new_text, c->new_len, &d, err)) < 0)
			return kd_err_wrap(err, r, "the new config is not valid TOML");
	}
	/* Every directory we write to must be writable: fail before the first write. */
	for (size_t i = 0; i < p->n; i++) {
		const kd_change *c = &p->changes[i];
		if (change_is_noop(c))
			continue;
		char dir[KD_PATH_MAX];
		snprintf(dir, sizeof(dir), "%s", c->path);
		struct stat st;
		bool found = false; /* the nearest existing ancestor, else the root itself */
		for (char *sl = strrchr(dir, '/'); sl && !found; sl = strrchr(dir, '/')) {
			*sl = '\0';
			found = kd_lstat(rootfd, dir, &st, NULL) == 0;
		}
		if (!found)
			snprintf(dir, sizeof(dir), ".");
		if (faccessat(rootfd, dir, W_OK, AT_EACCESS) < 0)
			return kd_err_errno(err, negative_errno(),
					    "cannot write /%s (directory /%s)", c->path, dir);
	}
	const char *bin = find_loader(p, o);
	if (bin && access(bin, X_OK) < 0)
		return kd_err_errno(err, negative_errno(), "--runtime-binary %s: cannot execute it",
				    bin);
	if (bin && p->flavour.crio && kd_runtime_changed(p)) {
		if ((r = validate_crio(rootfd, p, bin, err)) < 0)
			return r;
		kd_info("CRI-O's own loader (%s) accepts the new config", bin);
	}
	if (bin && !p->flavour.crio && p->flavour.id != KD_FLAVOUR_NONE && p->ctd.main[0] &&
	    kd_runtime_changed(p)) {
		if ((r = validate_containerd(rootfd, p, bin, err)) < 0)
			return r;
		kd_info("containerd's own loader (%s) accepts the new config", bin);
	}
	return 0;
}

/* ---- applying ---------------------------------------------------------------------------- */

static int apply_one(kd_journal *j, int rootfd, const kd_change *c, kd_error *err)
{
	int r;
	if (change_is_noop(c))
		return 0;
	if (j && (r = kd_journal_file(j, c->path, err)) < 0)
		return r;
	if (c->new_text)
		r = kd_write_atomic(rootfd, c->path, c->new_text, c->new_len, c->mode, err);
	else
		r = kd_remove_tree(rootfd, c->path, err);
	if (r < 0)
		return kd_err_wrap(err, r, "write /%s", c->path);
	kd_fault_point("runtime-config-file");
	return 0;
}

int kd_runtime_apply(kd_journal *j, int rootfd, const kd_config_plan *p, char ***created_dirs,
		     kd_error *err)
{
	int r;
	for (size_t i = 0; p->dirs && p->dirs[i]; i++) {
		struct stat st;
		if (kd_lstat(rootfd, p->dirs[i], &st, NULL) == 0)
			continue;
		if ((r = kd_journal_mkdir(j, p->dirs[i], err)) < 0 ||
		    (r = kd_mkdir_p(rootfd, p->dirs[i], 0755, NULL, NULL, err)) < 0)
			return r;
		if (created_dirs && !kd_strv_find(*created_dirs, p->dirs[i]) &&
		    kd_strv_push(created_dirs, p->dirs[i]) < 0)
			return -ENOMEM;
		kd_fault_point("runtime-config-dir");
	}
	for (size_t i = 0; i < p->n; i++)
		if ((r = apply_one(j, rootfd, &p->changes[i], err)) < 0)
			return r;
	return 0;
}

int kd_runtime_apply_direct(int rootfd, const kd_config_plan *p, kd_error *err)
{
	for (size_t i = 0; i < p->n; i++) {
		int r = apply_one(NULL, rootfd, &p->changes[i], err);
		if (r < 0)
			return r;
	}
	return 0;
}

int kd_runtime_update_state(kd_config_plan *p, kd_state *s)
{
	for (size_t i = 0; i < s->n_config; i++)
		kd_config_file_done(&s->config[i]);
	free(s->config);
	s->n_config = 0;
	s->config = calloc(p->n + 1, sizeof(*s->config));
	kd_strv_free(s->config_files);
	s->config_files = calloc(1, sizeof(char *));
	if (!s->config || !s->config_files)
		return -ENOMEM;
	for (size_t i = 0; i < p->n; i++) {
		kd_change *c = &p->changes[i];
		if (!c->has_record || !c->new_text)
			continue;
		s->config[s->n_config++] = c->rec;
		memset(&c->rec, 0, sizeof(c->rec));
		c->has_record = false;
		if (kd_strv_push(&s->config_files, c->path) < 0)
			return -ENOMEM;
	}
	free(s->runtime_json);
	s->runtime_json = p->opts_json ? strdup(p->opts_json) : NULL;
	return 0;
}
