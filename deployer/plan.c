/* kd_engine_plan: what `kata-deploy install` with the same options would do, computed by the same
 * code (payload verification, component selection, kd_runtime_plan, kd_runtime_validate) but
 * with nothing written to the root: the lock is shared, there is no recovery, no journal, and
 * Kata's pristine configuration files are read from the payload stream instead of a version
 * tree. Output: one summary block for the payload, a unified diff per runtime config file, and
 * the restart. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "diff.h"
#include "digest.h"
#include "engine.h"
#include "fsroot.h"
#include "http.h"
#include "kataconfig.h"
#include "log.h"
#include "restart.h"
#include "snapshotter.h"
#include "state.h"
#include "strv.h"
#include "tarball.h"

#define PLAN_CONFIG_DIR "share/defaults/kata-containers/"
#define PLAN_MAX_CONFIG_FILE (1u << 20) /* one pristine Kata configuration file */
#define PLAN_MAX_CONFIG_FILES 256u	/* files kept from that directory */

/* The files of share/defaults/kata-containers/ (selected components), read from the payload
 * and checked against the manifest like an extraction would. */
typedef struct pristine {
	const kd_manifest *m;
	char *path[PLAN_MAX_CONFIG_FILES]; /* relative to opt/kata/ */
	char *data[PLAN_MAX_CONFIG_FILES];
	size_t len[PLAN_MAX_CONFIG_FILES];
	size_t n;
} pristine;

static void pristine_done(pristine *p)
{
	for (size_t i = 0; i < p->n; i++) {
		free(p->path[i]);
		free(p->data[i]);
	}
	p->n = 0;
}

static int read_entry(kd_tar_reader *tr, const kd_pfile *f, char **ret, kd_error *err)
{
	_cleanup_free_ char *buf = malloc(f->size + 1);
	_cleanup_(kd_sha256_freep) kd_sha256 h = {0};
	uint8_t bin[KD_SHA256_LEN];
	size_t n = 0;
	int r;
	if (!buf)
		return -ENOMEM;
	if ((r = kd_sha256_init(&h, err)) < 0)
		return r;
	for (;;) {
		const void *b;
		size_t l;
		if ((r = kd_tar_read_block(tr, &b, &l, err)) < 0)
			return r;
		if (r == 0)
			break;
		if (l > f->size - n)
			return kd_err(err, -EBADMSG, "'%s': larger than the manifest says",
				      f->path);
		memcpy(buf + n, b, l);
		kd_sha256_update(&h, b, l);
		n += l;
	}
	if ((r = kd_sha256_final(&h, bin, err)) < 0)
		return r;
	if (n != f->size || memcmp(bin, f->sha256, sizeof(bin)) != 0)
		return kd_err(err, -EBADMSG, "'%s': does not match its sha256 in the manifest",
			      f->path);
	buf[n] = '\0';
	*ret = TAKE_PTR(buf);
	return 0;
}

/* devkit: also the devkit image's dm-verity parameters (further on in the sorted payload). Only
 * the selected components are read (format 2: only their frames). */
static int pristine_load(kd_payload *payload, const kd_manifest *m, const bool *mask, bool devkit,
			 pristine *p, kd_error *err)
{
	_cleanup_(kd_tar_reader_freep) kd_tar_reader *tr = NULL;
	const size_t pl = strlen(KD_PAYLOAD_TREE_PREFIX), dl = strlen(PLAN_CONFIG_DIR);
	const char *last = devkit ? KD_DEVKIT_ROOT_HASH : PLAN_CONFIG_DIR "\x7f";
	bool inside = false;
	/* Format 1 sorts all entries by path; format 2 sorts them within each component. */
	bool sorted = kd_payload_format(payload) == 1;
	kd_tar_entry e;
	int r = kd_payload_tar_open(payload, mask, &tr, err);
	p->m = m;
	while (r >= 0 && (r = kd_tar_next(tr, &e, err)) > 0) {
		const char *rel =
			strncmp(e.path, KD_PAYLOAD_TREE_PREFIX, pl) == 0 ? e.path + pl : NULL;
		bool wanted = rel && (strncmp(rel, PLAN_CONFIG_DIR, dl) == 0 ||
				      (devkit && strcmp(rel, KD_DEVKIT_ROOT_HASH) == 0));
		if (!wanted || e.type != KD_ENTRY_FILE) {
			/* Entries are sorted: past the last wanted name, nothing more is needed. */
			if (sorted && inside && (!rel || strcmp(rel, last) > 0))
				break;
			r = kd_tar_skip(tr, err);
			continue;
		}
		inside = true;
		const kd_pfile *f = kd_manifest_find(m, rel);
		if (!f || f->type != KD_FILE_REG || !mask[f->component] ||
		    f->size > PLAN_MAX_CONFIG_FILE) {
			if (!f || f->type != KD_FILE_REG)
				return kd_err(err, -EBADMSG,
					      "'%s' is not in the manifest as a file", e.path);
			r = kd_tar_skip(tr, err);
			continue;
		}
		if (p->n == PLAN_MAX_CONFIG_FILES)
			return kd_err(err, -E2BIG, "more than %u files in %s%s",
				      PLAN_MAX_CONFIG_FILES, KD_PAYLOAD_TREE_PREFIX,
				      PLAN_CONFIG_DIR);
		if ((r = read_entry(tr, f, &p->data[p->n], err)) < 0)
			return r;
		p->len[p->n] = f->size;
		if (!(p->path[p->n++] = strdup(rel)))
			return -ENOMEM;
	}
	return r < 0 ? kd_err_wrap(err, r, "read the payload's Kata configuration") : 0;
}

/* kd_tree_read_fn over the pristine files. Like install's read from the version tree, links are
 * not followed (kd_kata_check_sources refuses them first); a hardlink is its target's data. */
static int pristine_read(void *userdata, const char *path, size_t max, char **ret_data,
			 size_t *ret_len, kd_error *err)
{
	pristine *p = userdata;
	const kd_pfile *f = kd_manifest_find(p->m, path);
	if (f && f->type == KD_FILE_SYMLINK)
		return kd_err(err, -ELOOP, "'%s' is a symlink", path);
	const char *cur = f && f->type == KD_FILE_HARDLINK ? f->target : path;
	for (size_t i = 0; i < p->n; i++) {
		if (strcmp(p->path[i], cur) != 0)
			continue;
		if (p->len[i] > max)
			return kd_err(err, -EFBIG, "'%s': larger than %zu bytes", path, max);
		if (!(*ret_data = malloc(p->len[i] + 1)))
			return -ENOMEM;
		memcpy(*ret_data, p->data[i], p->len[i] + 1);
		*ret_len = p->len[i];
		return 0;
	}
	return kd_err(err, -ENOENT, "'/%s': not in the selected components", path);
}

static bool pristine_exists(void *userdata, const char *path)
{
	const pristine *p = userdata;
	return kd_manifest_find(p->m, path) != NULL;
}

/* The payload half: version dir, files, links, state. Returns whether anything changes. */
static int plan_payload(kd_ctx *c, FILE *f, const kd_state *s, bool fresh, const kd_manifest *m,
			const bool *mask, const char *id, bool *ret_changes, kd_error *err)
{
	char path[KD_PATH_MAX], target[KD_PATH_MAX];
	_cleanup_strv_ char **tops = NULL;
	int r;
	if (s->has_current && strcmp(s->current.id, id) == 0 &&
	    kd_install_version_intact(c, &s->current, false, NULL) == 0) {
		fprintf(f, "payload: %s (version dir %s) is already installed: no change\n",
			m->version, id);
		*ret_changes = false;
		return 0;
	}
	if ((r = kd_install_toplevel_names(m, mask, &tops, err)) < 0 ||
	    (r = kd_install_check_links(c, tops, err)) < 0)
		return r;
	*ret_changes = true;
	uint64_t files = 0, bytes = 0, reused = 0, reused_bytes = 0;
	kd_manifest *cur = NULL;
	if (s->has_current)
		kd_install_load_manifest(c, s->current.id, &cur, NULL);
	for (size_t i = 0; i < m->n_files; i++) {
		const kd_pfile *pf = &m->files[i];
		if (!mask[pf->component] || pf->type != KD_FILE_REG)
			continue;
		files++;
		bytes += pf->size;
		const kd_pfile *old = cur ? kd_manifest_find(cur, pf->path) : NULL;
		if (old && old->type == KD_FILE_REG &&
		    memcmp(old->sha256, pf->sha256, sizeof(pf->sha256)) == 0)
			reused++, reused_bytes += pf->size;
	}
	kd_manifest_free(cur);
	char hb[32], hr[32];
	kd_format_bytes((double)(bytes - reused_bytes), hb, sizeof(hb));
	kd_format_bytes((double)reused_bytes, hr, sizeof(hr));
	struct stat st;
	snprintf(path, sizeof(path), "%s", c->prefix);
	for (char *sl = path;; sl++) { /* mkdir -p, outermost first */
		if (*sl != '/' && *sl != '\0')
			continue;
		char saved = *sl;
		*sl = '\0';
		if (kd_lstat(c->rootfd, path, &st, NULL) == -ENOENT)
			fprintf(f, "payload: create directory /%s\n", path);
		if (!(*sl = saved))
			break;
	}
	snprintf(path, sizeof(path), "%s/%s/%s", c->prefix, KD_VERSIONS_DIR, id);
	if (kd_lstat(c->rootfd, path, &st, NULL) == 0) {
		fprintf(f, "payload: %s: reuse the version dir /%s/ (the previous version)\n",
			m->version, path);
	} else {
		fprintf(f,
			"payload: %s: create /%s/ (%llu files, %llu bytes: %llu written = %s, "
			"%llu hard-linked from the current version = %s) and /%s.json\n",
			m->version, path, (unsigned long long)files, (unsigned long long)bytes,
			(unsigned long long)(files - reused), hb, (unsigned long long)reused, hr,
			path);
	}
	snprintf(path, sizeof(path), "%s/%s", c->prefix, KD_CURRENT_LINK);
	if (kd_readlink(c->rootfd, path, target, sizeof(target), NULL) >= 0)
		fprintf(f, "payload: switch /%s: %s -> %s/%s\n", path, target, KD_VERSIONS_DIR, id);
	else
		fprintf(f, "payload: create link /%s -> %s/%s\n", path, KD_VERSIONS_DIR, id);
	for (size_t i = 0; tops[i]; i++) {
		snprintf(path, sizeof(path), "%s/%s", c->prefix, tops[i]);
		if (kd_lstat(c->rootfd, path, &st, NULL) == -ENOENT)
			fprintf(f, "payload: create link /%s -> %s/%s\n", path, KD_CURRENT_LINK,
				tops[i]);
	}
	if (s->has_previous && strcmp(s->previous.id, id) != 0 &&
	    !(s->has_current && strcmp(s->current.id, s->previous.id) == 0))
		fprintf(f, "payload: remove the old version dir /%s/%s/%s/\n", c->prefix,
			KD_VERSIONS_DIR, s->previous.id);
	if (fresh)
		fprintf(f, "state:   create /%s/%s\n", c->state_dir, KD_STATE_FILE);
	else
		fprintf(f, "state:   update /%s/%s\n", c->state_dir, KD_STATE_FILE);
	return 0;
}

static int plan_config(kd_ctx *c, FILE *f, const kd_install_opts *o, kd_state *s,
		       char *const *shims, pristine *pr, bool payload_changes, bool *ret_changes,
		       kd_error *err)
{
	bool host = kd_root_is_host(c->rootfd);
	kd_runtime_input in = {.rootfd = c->rootfd,
			       .prefix = c->prefix,
			       .treefd = -1,
			       .read_tree = pristine_read,
			       .read_tree_userdata = pr,
			       .tree_exists = pristine_exists,
			       .shims = shims,
			       .root_is_host = host,
			       .prev = s};
	kd_config_plan p = {0};
	int r = kd_restart_validate(o->rt.restart, err);
	if (r >= 0)
		r = kd_runtime_plan(&in, &o->rt, &p, err);
	if (r >= 0)
		r = kd_runtime_validate(c->rootfd, &p, &o->rt, err);
	if (r < 0) {
		kd_config_plan_done(&p);
		return kd_err_wrap(err, r, "runtime config");
	}
	bool changed = kd_runtime_changed(&p);
	if (p.flavour.id == KD_FLAVOUR_NONE) {
		fprintf(f, "runtime: none found on this root: no runtime configuration\n");
	} else {
		char ver[32] = "version unknown";
		if (p.flavour.major >= 0)
			snprintf(ver, sizeof(ver), "%d.%d.%d", p.flavour.major, p.flavour.minor,
				 p.flavour.patch);
		fprintf(f, "runtime: %s (%s)%s%s\n", p.flavour.name, ver,
			p.flavour.crio ? "" : ": ", p.flavour.crio ? "" : p.ctd.why);
	}
	size_t pl = strlen(c->prefix);
	for (size_t i = 0; p.dirs && p.dirs[i]; i++) {
		/* The prefix and its ancestors are made by the payload step, before this one. */
		size_t dl = strlen(p.dirs[i]);
		if (payload_changes && dl <= pl && strncmp(c->prefix, p.dirs[i], dl) == 0 &&
		    (c->prefix[dl] == '/' || c->prefix[dl] == '\0'))
			continue;
		fprintf(f, "runtime: create directory /%s\n", p.dirs[i]);
	}
	for (size_t i = 0; i < p.n && r >= 0; i++) {
		const kd_change *ch = &p.changes[i];
		bool same = (!ch->old && !ch->new_text) ||
			    (ch->old && ch->new_text && ch->old_len == ch->new_len &&
			     memcmp(ch->old, ch->new_text, ch->old_len) == 0);
		if (same)
			continue;
		char la[KD_PATH_MAX + 2], lb[KD_PATH_MAX + 2];
		snprintf(la, sizeof(la), ch->old ? "a/%s" : "/dev/null", ch->path);
		snprintf(lb, sizeof(lb), ch->new_text ? "b/%s" : "/dev/null", ch->path);
		_cleanup_free_ char *d = NULL;
		r = kd_diff_unified(ch->old, ch->old_len, ch->new_text, ch->new_len, la, lb,
				    KD_DIFF_CONTEXT, &d, err);
		if (r >= 0)
			fputs(d, f);
	}
	if (r >= 0) {
		char what[512];
		kd_restart_describe(o->rt.restart, &p.flavour, host, what, sizeof(what));
		if (changed)
			fprintf(f, "restart: %s\n", what);
		else
			fprintf(f, "restart: none (no runtime config byte would change)\n");
	}
	kd_config_plan_done(&p);
	*ret_changes = changed;
	return r;
}

static int do_plan(kd_ctx *c, const kd_install_opts *o, FILE *f, bool *ret_changes, kd_error *err)
{
	_cleanup_strv_ char **shims = NULL;
	_cleanup_free_ bool *mask = NULL;
	_cleanup_strv_ char **components = NULL;
	kd_payload *p = NULL;
	pristine pr = {0};
	kd_state s;
	kd_error e2 = {0};
	char jpath[KD_PATH_MAX];
	struct stat st;

	/* Recovery writes, so plan does not do it: it asks for it. */
	snprintf(jpath, sizeof(jpath), "%s/%s", c->state_dir, KD_JOURNAL_NAME);
	if (kd_lstat(c->rootfd, jpath, &st, NULL) == 0)
		return kd_err(err, -EAGAIN,
			      "an interrupted run left /%s: run 'kata-deploy recover' first "
			      "(plan changes nothing)",
			      jpath);
	int r = kd_state_load(c->rootfd, c->state_dir, &s, &e2);
	if (r < 0 && r != -ENOENT)
		return kd_err(err, r, "%s", e2.msg);
	bool fresh = r == -ENOENT;
	if (!fresh && s.phase && strcmp(s.phase, "uninstalling") == 0) {
		r = kd_err(err, -EAGAIN,
			   "an interrupted uninstall is pending: run 'kata-deploy recover' first");
		goto out;
	}
	if (!fresh && strcmp(s.prefix, c->prefix) != 0) {
		r = kd_err(
			err, -EINVAL,
			"kata-deploy is installed with prefix '/%s'; uninstall it before using '/%s'",
			s.prefix, c->prefix);
		goto out;
	}
	if ((r = kd_install_open_payload(o, false, &p, err)) < 0)
		goto out;
	const kd_manifest *m = kd_payload_manifest(p);
	if ((r = kd_install_check_arch(m, o->arch, err)) < 0)
		goto out;
	shims = o->shims ? kd_strv_copy(o->shims) : calloc(1, sizeof(char *));
	for (size_t i = 0; !o->shims && shims && i < m->n_shims; i++)
		kd_strv_push(&shims, m->shims[i].name);
	mask = calloc(m->n_components + 1, sizeof(bool));
	components = calloc(1, sizeof(char *));
	if (!shims || !mask || !components) {
		r = -ENOMEM;
		goto out;
	}
	kd_strv_sort(shims);
	if ((r = kd_manifest_select(m, (const char *const *)shims, kd_strv_length(shims), mask,
				    err)) < 0 ||
	    (kd_snapshotter_select(m, o->rt.snapshotter_setup, mask), 0) ||
	    (kd_debug_tools_select(m, o->rt.debug, mask), 0) ||
	    (r = kd_payload_check_components(p, mask, err)) < 0 ||
	    (r = kd_kata_check_sources(m, mask, shims, o->rt.devkit, err)) < 0)
		goto out;
	for (size_t i = 0; i < m->n_components; i++)
		if (mask[i])
			kd_strv_push(&components, m->components[i].name);
	kd_strv_sort(components);
	char id[17];
	kd_install_version_id(kd_payload_digest(p), components, id);

	bool pay_changes = false, cfg_changes = false;
	fprintf(f, "plan: install of %s (payload sha256 %.16s…) on this root; nothing is written\n",
		m->version, kd_payload_digest(p));
	if ((r = plan_payload(c, f, &s, fresh, m, mask, id, &pay_changes, err)) < 0 ||
	    (r = pristine_load(p, m, mask, o->rt.devkit, &pr, err)) < 0 ||
	    (r = plan_config(c, f, o, &s, shims, &pr, pay_changes, &cfg_changes, err)) < 0)
		goto out;
	*ret_changes = pay_changes || cfg_changes;
out:
	pristine_done(&pr);
	kd_payload_free(p);
	kd_state_done(&s);
	return r;
}

int kd_engine_plan(int rootfd, const kd_install_opts *o, char **ret_text, bool *ret_changes,
		   kd_error *err)
{
	kd_ctx c;
	char *buf = NULL;
	size_t size = 0;
	bool changes = false;
	int r = kd_ctx_open_shared(&c, rootfd, &o->e, err);
	if (r >= 0) {
		FILE *f = open_memstream(&buf, &size);
		if (!f)
			r = -ENOMEM;
		else {
			r = do_plan(&c, o, f, &changes, err);
			if (fclose(f) != 0 && r >= 0)
				r = -ENOMEM;
		}
	}
	kd_ctx_close(&c);
	if (r < 0) {
		free(buf);
		return kd_err_wrap(err, r, "plan");
	}
	*ret_text = buf;
	*ret_changes = changes;
	return 0;
}
