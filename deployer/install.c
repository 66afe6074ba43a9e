/* kd_engine_install: payload → versioned directory → atomic switch (see docs/ARCHITECTURE.md,
 * "Data flow of an install"). */
#include <dirent.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "digest.h"
#include "engine.h"
#include "fsroot.h"
#include "http.h"
#include "journal.h"
#include "kataconfig.h"
#include "json.h"
#include "log.h"
#include "pull.h"
#include "snapshotter.h"
#include "state.h"
#include "strv.h"

#define SIG_MAX 4096

static void now_rfc3339(char *buf, size_t size)
{
	time_t t = time(NULL);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* The version directory name: the payload digest and the selected components. */
void kd_install_version_id(const char *digest, char **components, char out[17])
{
	char buf[8192], hex[KD_SHA256_HEX_LEN + 1];
	size_t n = (size_t)snprintf(buf, sizeof(buf), "%s", digest);
	for (size_t i = 0; components && components[i] && n < sizeof(buf); i++)
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "\n%s", components[i]);
	kd_sha256_buf(buf, n < sizeof(buf) ? n : sizeof(buf), hex);
	memcpy(out, hex, 16);
	out[16] = '\0';
}

static uint64_t st_payload_size(int fd)
{
	struct stat st;
	return fstat(fd, &st) == 0 ? (uint64_t)st.st_size : 0;
}

static bool source_unchanged(const kd_state *s, const char *path, const struct stat *st)
{
	return s->source.path && strcmp(s->source.path, path) == 0 &&
	       s->source.dev == (uint64_t)st->st_dev && s->source.ino == (uint64_t)st->st_ino &&
	       s->source.size == (uint64_t)st->st_size &&
	       s->source.mtime_ns ==
		       (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec &&
	       s->source.ctime_ns == (int64_t)st->st_ctim.tv_sec * 1000000000 + st->st_ctim.tv_nsec;
}

int kd_install_load_manifest(kd_ctx *c, const char *id, kd_manifest **ret, kd_error *err)
{
	char path[KD_PATH_MAX];
	_cleanup_free_ char *data = NULL;
	size_t len;
	snprintf(path, sizeof(path), "%s/%s/%s.json", c->prefix, KD_VERSIONS_DIR, id);
	int r = kd_read_file(c->rootfd, path, KD_PAYLOAD_MAX_MANIFEST, &data, &len, err);
	if (r < 0)
		return r;
	return kd_manifest_parse(data, len, ret, err);
}

/* A check that an installed version directory is complete: types, modes and sizes (cheap), and
 * with rehash every file's sha256 (before its files are used again for another install). */
int kd_install_version_intact(kd_ctx *c, const kd_version *v, bool rehash, kd_error *err)
{
	char path[KD_PATH_MAX];
	kd_manifest *m = NULL;
	int r = kd_install_load_manifest(c, v->id, &m, err);
	if (r < 0)
		return r;
	_cleanup_free_ bool *mask = calloc(m->n_components ? m->n_components : 1, sizeof(bool));
	for (size_t i = 0; mask && i < m->n_components; i++)
		mask[i] = kd_strv_find(v->components, m->components[i].name);
	snprintf(path, sizeof(path), "%s/%s/%s", c->prefix, KD_VERSIONS_DIR, v->id);
	_cleanup_close_ int dfd =
		kd_openat(c->rootfd, path, O_RDONLY | O_DIRECTORY, 0, KD_NOFOLLOW, err);
	r = dfd < 0 ? dfd : mask ? kd_payload_verify_tree(m, mask, dfd, rehash, err) : -ENOMEM;
	kd_manifest_free(m);
	return r;
}

/* Split the shims asked for into those the payload has and those it does not. */
static int split_shims(const kd_manifest *m, char *const *asked, char ***ret_have,
		       char ***ret_missing)
{
	_cleanup_strv_ char **have = calloc(1, sizeof(char *)),
			    **missing = calloc(1, sizeof(char *));
	if (!have || !missing)
		return -ENOMEM;
	for (char *const *a = asked; *a; a++)
		if (kd_strv_push(kd_manifest_find_shim(m, *a) ? &have : &missing, *a) < 0)
			return -ENOMEM;
	*ret_have = TAKE_PTR(have);
	*ret_missing = TAKE_PTR(missing);
	return 0;
}

/* The cheap no-op needs the same shims: those asked for (with skip_missing, those of them the
 * payload has), or (no --shims) every shim of the payload, read from the installed manifest,
 * which is the payload's own. *ret_missing: the shims left out. */
static bool same_shims(kd_ctx *c, const kd_install_opts *o, const kd_version *cur,
		       char ***ret_missing)
{
	if (o->shims && !o->skip_missing_shims)
		return kd_strv_equal_set(o->shims, cur->shims);
	kd_manifest *m = NULL;
	if (kd_install_load_manifest(c, cur->id, &m, NULL) < 0)
		return false;
	_cleanup_strv_ char **all = calloc(1, sizeof(char *)), **missing = NULL;
	if (o->shims) {
		kd_strv_free(TAKE_PTR(all));
		if (split_shims(m, o->shims, &all, &missing) < 0)
			all = NULL;
	}
	for (size_t i = 0; !o->shims && all && i < m->n_shims; i++)
		if (kd_strv_push(&all, m->shims[i].name) < 0)
			kd_strv_free(TAKE_PTR(all));
	kd_manifest_free(m);
	if (!all || !kd_strv_equal_set(all, cur->shims))
		return false;
	*ret_missing = TAKE_PTR(missing);
	return true;
}

/* "a<sep>b<sep>c" */
static char *join(char *const *v, const char *sep)
{
	size_t n = 1;
	for (char *const *i = v; i && *i; i++)
		n += strlen(*i) + strlen(sep);
	char *out = calloc(1, n);
	for (char *const *i = v; out && i && *i; i++) {
		if (*out)
			strcat(out, sep);
		strcat(out, *i);
	}
	return out;
}

void kd_install_result_done(kd_install_result *r)
{
	kd_strv_free(r->shims);
	kd_strv_free(r->skipped);
	r->shims = r->skipped = NULL;
}

/* mkdir -p with each created directory journaled first and remembered for uninstall. */
static int mkdir_journaled(kd_ctx *c, kd_journal *j, const char *path, char ***created,
			   kd_error *err)
{
	char buf[KD_PATH_MAX];
	snprintf(buf, sizeof(buf), "%s", path);
	for (char *s = buf;; s++) {
		if (*s != '/' && *s != '\0')
			continue;
		char saved = *s;
		*s = '\0';
		struct stat st;
		int r = kd_lstat(c->rootfd, buf, &st, NULL);
		if (r == -ENOENT) {
			if ((r = kd_journal_mkdir(j, buf, err)) < 0)
				return r;
			if ((r = kd_mkdir_p(c->rootfd, buf, 0755, NULL, NULL, err)) < 0)
				return r;
			if (created && kd_strv_push(created, buf) < 0)
				return -ENOMEM;
		} else if (r < 0 || !S_ISDIR(st.st_mode)) {
			return kd_err(err, -ENOTDIR, "'/%s' exists and is not a directory", buf);
		}
		if (!saved)
			return 0;
		*s = saved;
	}
}

/* The state dir is made in one rename, with the journal already inside, so a kill leaves
 * either nothing (plus debris) or a state dir whose journal says how to remove it. */
static int begin_with_state_dir(kd_ctx *c, kd_journal *j, const char *op, char ***ret_created,
				kd_error *err)
{
	struct stat st;
	char top[KD_PATH_MAX], tmp[KD_PATH_MAX], inner[KD_PATH_MAX];
	int r = kd_lstat(c->rootfd, c->state_dir, &st, NULL);

	if (r == 0) {
		if (!S_ISDIR(st.st_mode))
			return kd_err(err, -ENOTDIR, "state directory '/%s' is not a directory",
				      c->state_dir);
		return kd_journal_begin(j, c->rootfd, c->state_dir, op, err);
	}
	/* Find the outermost missing ancestor "top". */
	snprintf(top, sizeof(top), "%s", c->state_dir);
	for (char *s = top; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (kd_lstat(c->rootfd, top, &st, NULL) == -ENOENT)
			break;
		*s = '/';
	}
	const char *slash = strrchr(top, '/');
	const char *rest = c->state_dir + strlen(top); /* "" or "/lib/kata-deploy" */
	snprintf(tmp, sizeof(tmp), "%.*s%s%d.state", slash ? (int)(slash - top + 1) : 0, top,
		 KD_TMP_PREFIX, getpid());
	snprintf(inner, sizeof(inner), "%s%s", tmp, rest);
	if ((r = kd_remove_tree(c->rootfd, tmp, err)) < 0)
		return kd_err_wrap(err, r, "create state directory '/%s'", c->state_dir);
	/* Until the rename, a failure removes the temporary tree (a full disk must not leave
	 * .#kd.<pid>.state behind; a kill leaves it to the next run's debris cleanup). */
	if ((r = kd_mkdir_p(c->rootfd, inner, 0755, NULL, NULL, err)) < 0)
		r = kd_err_wrap(err, r, "create state directory '/%s'", c->state_dir);
	else if ((r = kd_journal_begin(j, c->rootfd, inner, op, err)) >= 0 &&
		 (r = kd_journal_statedir(j, top, err)) >= 0 &&
		 renameat(c->rootfd, tmp, c->rootfd, top) < 0)
		r = kd_err_errno(err, negative_errno(), "create state directory '/%s'", top);
	if (r < 0) {
		if (j->fd >= 0) {
			close(j->fd);
			j->fd = -1;
		}
		kd_remove_tree(c->rootfd, tmp, NULL);
		return r;
	}
	kd_journal_set_dir(j, c->state_dir);
	kd_fault_point("statedir");
	/* Remember the chain: top and each directory below it. */
	char chain[KD_PATH_MAX];
	snprintf(chain, sizeof(chain), "%s", c->state_dir);
	size_t tl = strlen(top);
	for (char *s = chain + tl;; s++) {
		if (*s == '/' || *s == '\0') {
			char saved = *s;
			*s = '\0';
			if (kd_strv_push(ret_created, chain) < 0)
				return -ENOMEM;
			if (!saved)
				break;
			*s = saved;
		}
	}
	return 0;
}

static int open_source(const kd_install_opts *o, int *ret_fd, kd_error *err)
{
	if (!kd_is_url(o->payload)) {
		int fd = open(o->payload, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return kd_err_errno(err, negative_errno(), "open payload '%s'", o->payload);
		*ret_fd = fd;
		return 0;
	}
	/* Downloads land in an unnamed temporary file outside the root ($TMPDIR, else /var/tmp):
	 * nothing to clean up if we are killed, and nothing reaches the root before the whole
	 * file is verified. */
	const char *tmpdir = getenv("TMPDIR");
	if (!tmpdir || !*tmpdir)
		tmpdir = "/var/tmp";
	int fd = open(tmpdir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0)
		return kd_err_errno(err, negative_errno(), "create download file in '%s'", tmpdir);
	kd_http_opts ho = {.progress = o->progress, .user_agent = "kata-deploy"};
	int r = kd_http_download_fd(o->payload, fd, &ho, NULL, err);
	if (r < 0) {
		close(fd);
		return kd_err_wrap(err, r, "download payload");
	}
	lseek(fd, 0, SEEK_SET);
	*ret_fd = fd;
	return 0;
}

static int read_signature(const kd_install_opts *o, uint8_t **ret, size_t *ret_len, kd_error *err)
{
	char path[KD_PATH_MAX];
	snprintf(path, sizeof(path), "%s%s", o->signature ? o->signature : o->payload,
		 o->signature ? "" : ".sig");
	if (kd_is_url(path)) {
		kd_http_opts ho = {.max_bytes = SIG_MAX, .user_agent = "kata-deploy"};
		char *data = NULL;
		size_t len = 0;
		int r = kd_http_get_buf(path, &ho, &data, &len, NULL, err);
		if (r < 0)
			return kd_err_wrap(err, r, "download signature");
		*ret = (uint8_t *)data;
		*ret_len = len;
		return 0;
	}
	/* A local path, relative to the working directory or absolute. */
	_cleanup_close_ int base =
		open(path[0] == '/' ? "/" : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	char *data = NULL;
	size_t len = 0;
	int r = base < 0 ? kd_err_errno(err, negative_errno(), "open '%s'", path)
			 : kd_read_file(base, path, SIG_MAX, &data, &len, err);
	if (r < 0)
		return kd_err_wrap(err, r, "read signature");
	*ret = (uint8_t *)data;
	*ret_len = len;
	return 0;
}

static const char *arch_name(const char *a)
{
	if (!strcmp(a, "amd64"))
		return "x86_64";
	if (!strcmp(a, "arm64"))
		return "aarch64";
	return a;
}

int kd_install_check_arch(const kd_manifest *m, const char *arch, kd_error *err)
{
	struct utsname u;
	const char *here = arch;
	if (!here) {
		if (uname(&u) < 0)
			return 0;
		here = u.machine;
	}
	if (!strcmp(arch_name(m->arch), arch_name(here)))
		return 0;
	return kd_err(err, -ENOEXEC,
		      "the payload is built for %s, %s is %s: its binaries would not run there "
		      "(--arch %s installs it for a root of a %s machine)",
		      m->arch, arch ? "the root's machine (--arch)" : "this machine", here, m->arch,
		      m->arch);
}

/* oci://: only the chosen shims' blobs, laid out as the whole payload (deployer/pull.c). */
static int open_pulled(const kd_install_opts *o, kd_payload **ret, kd_error *err)
{
	kd_pull_result pr = {.fd = -1};
	kd_pull_opts po = {.ref = o->payload,
			   .pin = o->sha256,
			   .public_key = o->public_key,
			   .signature = o->signature,
			   .shims = o->shims,
			   .skip_missing = o->skip_missing_shims,
			   .snapshotter_setup = o->rt.snapshotter_setup,
			   .debug = o->rt.debug,
			   .arch = o->arch,
			   .auth_file = o->registry_auth,
			   .ca_file = o->registry_ca,
			   .cache_dir = o->blob_cache,
			   .plain_http = o->plain_http,
			   .progress = o->progress};
	int r = kd_pull_payload(&po, &pr, err);
	if (r < 0)
		return r;
	kd_info("pull: %u of %zu layers used (%u fetched, %u from the cache): %llu bytes received, "
		"%llu resumed, %llu from the cache; %llu of the artifact's %llu bytes",
		pr.blobs_fetched + pr.blobs_cached, pr.n_components + 2, pr.blobs_fetched,
		pr.blobs_cached, (unsigned long long)pr.bytes_fetched,
		(unsigned long long)pr.bytes_resumed, (unsigned long long)pr.bytes_cached,
		(unsigned long long)pr.bytes_used, (unsigned long long)pr.bytes_artifact);
	kd_payload_verify v = {.pubkey_path = o->public_key,
			       .manifest_frame_sha256 = pr.frame0_sha256,
			       .present = pr.present,
			       .n_present = pr.n_components,
			       .digest = pr.manifest_digest};
	r = kd_payload_open(pr.fd, o->payload, &v, ret, err);
	kd_pull_result_done(&pr);
	return r;
}

int kd_install_open_payload(const kd_install_opts *o, bool defer_digest, kd_payload **ret,
			    kd_error *err)
{
	_cleanup_close_ int fd = -1;
	_cleanup_free_ uint8_t *sig = NULL;
	size_t siglen = 0;
	int r;
	if (kd_is_oci_ref(o->payload))
		return open_pulled(o, ret, err);
	if ((r = open_source(o, &fd, err)) < 0 ||
	    (o->public_key && (r = read_signature(o, &sig, &siglen, err)) < 0))
		return r;
	kd_payload_verify v = {.expect_sha256 = o->sha256,
			       .pubkey_path = o->public_key,
			       .sig = sig,
			       .siglen = siglen,
			       .defer_digest = defer_digest};
	return kd_payload_open(fd, o->payload, &v, ret, err);
}

/* Top-level entries of the tree (bin, share, libexec, ...) get a link in the prefix pointing
 * through "current", so switching versions is one rename. Anything already there that is not
 * such a link of ours is a conflict: checked before anything is written. */
int kd_install_toplevel_names(const kd_manifest *m, const bool *mask, char ***ret, kd_error *err)
{
	char **v = calloc(1, sizeof(char *));
	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < m->n_files; i++) {
		if (!mask[m->files[i].component])
			continue;
		const char *p = m->files[i].path, *s = strchr(p, '/');
		char name[256];
		snprintf(name, sizeof(name), "%.*s", s ? (int)(s - p) : (int)strlen(p), p);
		if (strcmp(name, KD_VERSIONS_DIR) == 0 || strcmp(name, KD_CURRENT_LINK) == 0) {
			kd_strv_free(v);
			return kd_err(err, -EINVAL, "payload uses the reserved name '%s'", name);
		}
		if (!kd_strv_find(v, name) && kd_strv_push(&v, name) < 0) {
			kd_strv_free(v);
			return -ENOMEM;
		}
	}
	*ret = v;
	return 0;
}

int kd_install_check_links(kd_ctx *c, char **names, kd_error *err)
{
	char path[KD_PATH_MAX], target[KD_PATH_MAX], want[KD_PATH_MAX];
	for (size_t i = 0; names[i]; i++) {
		snprintf(path, sizeof(path), "%s/%s", c->prefix, names[i]);
		snprintf(want, sizeof(want), "%s/%s", KD_CURRENT_LINK, names[i]);
		int r = kd_readlink(c->rootfd, path, target, sizeof(target), NULL);
		if (r == -ENOENT)
			continue;
		if (r >= 0 && strcmp(target, want) == 0)
			continue;
		return kd_err(err, -EEXIST,
			      "'/%s' exists and was not installed by kata-deploy (another Kata "
			      "installation?); remove it or choose another --prefix",
			      path);
	}
	return 0;
}

static void gc_versions(kd_ctx *c, const kd_state *s)
{
	char path[KD_PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", c->prefix, KD_VERSIONS_DIR);
	_cleanup_close_ int dfd =
		kd_openat(c->rootfd, path, O_RDONLY | O_DIRECTORY, 0, KD_NOFOLLOW, NULL);
	if (dfd < 0)
		return;
	DIR *d = fdopendir(TAKE_FD(dfd));
	if (!d)
		return;
	struct dirent *de;
	while ((de = readdir(d))) {
		char id[64];
		if (de->d_name[0] == '.')
			continue;
		snprintf(id, sizeof(id), "%.16s", de->d_name);
		if ((s->has_current && strcmp(id, s->current.id) == 0) ||
		    (s->has_previous && strcmp(id, s->previous.id) == 0))
			continue;
		char victim[KD_PATH_MAX];
		snprintf(victim, sizeof(victim), "%s/%s", path, de->d_name);
		kd_debug("removing old version '/%s'", victim);
		kd_remove_tree_atomic(c->rootfd, victim, NULL);
	}
	closedir(d);
}

static int set_source(kd_state *s, const kd_install_opts *o, int fd, const char *digest)
{
	struct stat st;
	free(s->source.path);
	memset(&s->source, 0, sizeof(s->source));
	if (kd_is_url(o->payload) || kd_is_oci_ref(o->payload) || fstat(fd, &st) < 0)
		return 0; /* only local files get the stat-based no-op shortcut */
	char *abs = realpath(o->payload, NULL);
	if (!abs)
		return 0;
	s->source.path = abs;
	s->source.dev = (uint64_t)st.st_dev;
	s->source.ino = (uint64_t)st.st_ino;
	s->source.size = (uint64_t)st.st_size;
	s->source.mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
	s->source.ctime_ns = (int64_t)st.st_ctim.tv_sec * 1000000000 + st.st_ctim.tv_nsec;
	snprintf(s->source.digest, sizeof(s->source.digest), "%s", digest);
	return 0;
}

/* The payload is installed already: only the runtime config may need an update (other
 * options), in a transaction of its own; nothing is written when it is already right. */
static int config_only(kd_ctx *c, const kd_install_opts *o, kd_state *s, kd_install_result *res,
		       kd_error *err)
{
	kd_journal j;
	bool changed = false;
	_cleanup_strv_ char **created = kd_strv_copy(s->created_dirs);
	int r;
	/* A dry plan first: no journal unless something changes. */
	char tree[KD_PATH_MAX];
	struct stat st;
	snprintf(tree, sizeof(tree), "%s/%s/%s/opt/kata", c->prefix, KD_VERSIONS_DIR,
		 s->current.id);
	if (kd_lstat(c->rootfd, tree, &st, NULL) < 0)
		snprintf(tree, sizeof(tree), "%s/%s/%s", c->prefix, KD_VERSIONS_DIR, s->current.id);
	if (!created)
		return -ENOMEM;
	{
		kd_config_plan p = {0};
		_cleanup_close_ int treefd =
			kd_openat(c->rootfd, tree, O_RDONLY | O_DIRECTORY, 0, KD_NOFOLLOW, err);
		if (treefd < 0)
			return treefd;
		kd_runtime_input in = {.rootfd = c->rootfd,
				       .prefix = c->prefix,
				       .treefd = treefd,
				       .shims = s->current.shims,
				       .root_is_host = kd_root_is_host(c->rootfd),
				       .prev = s};
		r = kd_runtime_plan(&in, &o->rt, &p, err);
		bool ch = r >= 0 && (kd_runtime_changed(&p) ||
				     (p.opts_json && s->runtime_json &&
				      strcmp(p.opts_json, s->runtime_json) != 0) ||
				     (p.opts_json && !s->runtime_json && p.n));
		kd_config_plan_done(&p);
		if (r < 0)
			return kd_err_wrap(err, r, "runtime config");
		if (!ch)
			return kd_engine_after_commit(c, s, o->rt.restart, err);
	}
	if ((r = kd_journal_begin(&j, c->rootfd, c->state_dir, "config", err)) < 0)
		return r;
	if ((r = kd_engine_config_step(c, &j, s, s->current.id, s->current.shims, &o->rt, &created,
				       &changed, err)) < 0)
		goto abort;
	kd_strv_free(s->created_dirs);
	s->created_dirs = TAKE_PTR(created);
	char spath[KD_PATH_MAX];
	snprintf(spath, sizeof(spath), "%s/%s", c->state_dir, KD_STATE_FILE);
	if ((r = kd_journal_file(&j, spath, err)) < 0 ||
	    (r = kd_state_save(c->rootfd, c->state_dir, s, err)) < 0)
		goto abort;
	kd_fault_point("config-state-saved");
	if ((r = kd_journal_commit(&j, err)) < 0)
		return r;
	res->config_changed = changed;
	return kd_engine_after_commit(c, s, o->rt.restart, err);
abort:;
	kd_error e3 = {0};
	if (kd_journal_abort(&j, &e3) < 0)
		kd_err_wrap(err, r, "(undo failed too: %s)", e3.msg);
	return r;
}

/* o, with the runtime options naming the shims left out (they stay in the state's options, so
 * rollback and a later no-op run read the mappings the same way). */
static int absent_opts(const kd_install_opts *o, char *const *missing, kd_install_opts *ret,
		       char **ret_absent)
{
	*ret = *o;
	if (!missing || !missing[0])
		return 0;
	*ret_absent = join(missing, ",");
	if (!*ret_absent)
		return -ENOMEM;
	ret->rt.absent_shims = *ret_absent;
	return 0;
}

/* Extraction progress (issue 16): on a terminal a line drawn with the first bytes and redrawn
 * every 200 ms (bytes, %, rate), in a pod or a pipe a line every 5 s, nothing for an install
 * that ends sooner. Bytes are those
 * of the selected files, written or hardlinked from the current version. */
#define EXTRACT_PROGRESS_TTY_MS 200
#define EXTRACT_PROGRESS_LINE_MS 5000
typedef struct extract_progress {
	bool tty, shown;
	struct timespec start, last;
} extract_progress;

static long ms_between(const struct timespec *a, const struct timespec *b)
{
	return (b->tv_sec - a->tv_sec) * 1000 + (b->tv_nsec - a->tv_nsec) / 1000000;
}

static void show_extract_progress(uint64_t done, uint64_t total, void *userdata)
{
	extract_progress *xp = userdata;
	struct timespec now;
	char d[32], t[32], rate[32];

	clock_gettime(CLOCK_MONOTONIC, &now);
	if (!xp->start.tv_sec && !xp->start.tv_nsec)
		xp->start = xp->last = now;
	long since = ms_between(&xp->last, &now), all = ms_between(&xp->start, &now);
	/* On a terminal the line appears with the first bytes, then is redrawn; a fast install
	 * clears it at once. In a pipe only an install that lasts prints anything. */
	bool first = xp->tty && !xp->shown && done > 0;
	if (!first &&
	    (since < (xp->tty ? EXTRACT_PROGRESS_TTY_MS : EXTRACT_PROGRESS_LINE_MS) || all <= 0))
		return;
	if (all <= 0)
		all = 1;
	xp->last = now;
	kd_format_bytes((double)done, d, sizeof(d));
	kd_format_bytes((double)total, t, sizeof(t));
	kd_format_bytes((double)done * 1000.0 / (double)all, rate, sizeof(rate));
	fprintf(stderr, "%sinstalling: %s / %s (%3.0f%%), %s/s%s", xp->tty ? "\r" : "", d, t,
		total ? 100.0 * (double)done / (double)total : 100.0, rate, xp->tty ? "   " : "\n");
	xp->shown = xp->tty;
}

/* The debug tools (kata-ctl) are in the installed version exactly when debug is asked for;
 * otherwise the full path decides (it opens the payload: a payload without them is then still
 * the same version, and nothing is written). */
static bool debug_tools_as_installed(const kd_install_opts *o, const kd_state *s)
{
	return o->rt.debug == kd_strv_find(s->current.components, KD_KATA_CTL_COMPONENT);
}

static bool nydus_as_installed(const kd_install_opts *o, const kd_state *s)
{
	bool wanted = kd_snapshotter_listed(o->rt.snapshotter_setup, "nydus");
	bool have = kd_strv_find(s->current.components, KD_NYDUS_COMPONENT);
	return wanted ? have || o->rt.snapshotter_optional : !have;
}

/* p's manifest is the current or the previous version's: its bytes hash as that version's
 * versions/<id>.json (streamed: a large manifest is never held twice). A payload packed by other
 * means may have a known manifest in other bytes: do_install then finds the id only after the
 * extraction, and starts again with the digest first. */
static bool known_manifest(kd_ctx *c, const kd_state *s, const kd_payload *p)
{
	const kd_version *v[] = {s->has_current ? &s->current : NULL,
				 s->has_previous ? &s->previous : NULL};
	for (size_t i = 0; i < ELEMENTSOF(v); i++) {
		uint8_t bin[KD_SHA256_LEN];
		char path[KD_PATH_MAX], hex[KD_SHA256_HEX_LEN + 1];
		if (!v[i])
			continue;
		snprintf(path, sizeof(path), "%s/%s/%s.json", c->prefix, KD_VERSIONS_DIR, v[i]->id);
		_cleanup_close_ int fd =
			kd_openat(c->rootfd, path, O_RDONLY | O_NONBLOCK, 0, KD_NOFOLLOW, NULL);
		struct stat st;
		if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
		    kd_sha256_fd(fd, bin, NULL, NULL) < 0)
			return true; /* cannot tell: the digest decides first */
		kd_hex(bin, sizeof(bin), hex);
		if (strcmp(hex, kd_payload_manifest_sha256(p)) == 0)
			return true;
	}
	return false;
}

/* The current version's manifest, for the extraction's reuse of its files, read when asked. */
typedef struct reuse_source {
	kd_ctx *c;
	const char *id;
	kd_manifest *m;
} reuse_source;

static const kd_manifest *load_reuse_manifest(void *userdata)
{
	reuse_source *rs = userdata;
	if (!rs->m && kd_install_load_manifest(rs->c, rs->id, &rs->m, NULL) < 0)
		rs->m = NULL;
	return rs->m;
}

/* do_install's deferred digest named the current or the previous version: run again. */
#define RETRY_DIGEST_FIRST (-ECANCELED)

static int do_install(kd_ctx *c, const kd_install_opts *o, kd_payload **pulled, bool digest_first,
		      kd_install_result *res, kd_error *err)
{
	_cleanup_strv_ char **shims = NULL, **components = NULL, **tops = NULL;
	_cleanup_free_ bool *mask = NULL;
	_cleanup_strv_ char **state_created = NULL, **created = NULL, **links = NULL;
	_cleanup_strv_ char **missing = NULL;
	_cleanup_free_ char *absent = NULL;
	kd_install_opts eff; /* o with the runtime options told which shims are absent */
	kd_payload *p = NULL;
	kd_journal j;
	kd_state s;
	kd_error e2 = {0};
	int r = kd_state_load(c->rootfd, c->state_dir, &s, &e2);
	if (r < 0 && r != -ENOENT)
		return kd_err(err, r, "%s", e2.msg);
	bool fresh = r == -ENOENT;
	if (!fresh && strcmp(s.prefix, c->prefix) != 0) {
		r = kd_err(
			err, -EINVAL,
			"kata-deploy is installed with prefix '/%s'; uninstall it before using '/%s'",
			s.prefix, c->prefix);
		goto out;
	}

	/* The cheap no-op: same local file (by stat), same shims, tree still intact. */
	if (!fresh && s.has_current && !kd_is_url(o->payload) && !kd_is_oci_ref(o->payload) &&
	    !o->public_key) {
		struct stat st;
		_cleanup_free_ char *abs = realpath(o->payload, NULL);
		if (abs && stat(abs, &st) == 0 && source_unchanged(&s, abs, &st) &&
		    (!o->sha256 || strcmp(o->sha256, s.current.digest) == 0) &&
		    strcmp(s.source.digest, s.current.digest) == 0 &&
		    same_shims(c, o, &s.current, &missing) &&
		    /* and the nydus-snapshotter component wanted as installed (the same payload
		     * without it: still without it, and left out when optional) */
		    nydus_as_installed(o, &s) && debug_tools_as_installed(o, &s) &&
		    kd_state_links_intact(c->rootfd, &s) &&
		    kd_install_version_intact(c, &s.current, false, NULL) == 0) {
			res->changed = false;
			snprintf(res->id, sizeof(res->id), "%s", s.current.id);
			snprintf(res->version, sizeof(res->version), "%s", s.current.version);
			if ((r = absent_opts(o, missing, &eff, &absent)) < 0)
				goto out;
			res->shims = kd_strv_copy(s.current.shims);
			res->skipped = missing ? TAKE_PTR(missing) : calloc(1, sizeof(char *));
			if (!res->shims || !res->skipped) {
				r = -ENOMEM;
				goto out;
			}
			r = config_only(c, &eff, &s, res, err);
			goto out;
		}
		kd_strv_free(TAKE_PTR(missing));
	}

	if (pulled)
		p = TAKE_PTR(*pulled);
	else if ((r = kd_install_open_payload(o, true, &p, err)) < 0)
		goto out;
	const kd_manifest *m = kd_payload_manifest(p);
	if ((r = kd_install_check_arch(m, o->arch, err)) < 0)
		goto out_p;
	/* A payload nothing authenticates was opened without its digest, its identity. Whether
	 * it is the installed version (a no-op) or the previous one (its tree reused) is decided
	 * by the digest first, as for any payload, when its manifest is theirs; a manifest new
	 * to this host makes a new version, and the digest is then hashed beside the extraction
	 * and needed only to name the version (docs/PAYLOAD.md, "The digest"). */
	bool deferred = kd_payload_digest_deferred(p) && !digest_first && !known_manifest(c, &s, p);
	if ((deferred && (r = kd_payload_digest_start(p, err)) < 0) ||
	    (!deferred && (r = kd_payload_digest_wait(p, err)) < 0))
		goto out_p;

	/* Which shims, which components. */
	if (o->shims && o->skip_missing_shims) {
		if ((r = split_shims(m, o->shims, &shims, &missing)) < 0)
			goto out_p;
		if (!shims[0]) {
			_cleanup_strv_ char **has = calloc(1, sizeof(char *));
			for (size_t i = 0; has && i < m->n_shims; i++)
				if (kd_strv_push(&has, m->shims[i].name) < 0)
					kd_strv_free(TAKE_PTR(has));
			_cleanup_free_ char *asked = join(o->shims, ","), *known = join(has, ", ");
			r = kd_err(
				err, -ENOENT,
				"none of the shims asked for (%s) is in this payload (it has: %s)",
				asked ? asked : "?", known && *known ? known : "none");
			goto out_p;
		}
		for (char **x = missing; *x; x++)
			kd_warn("shim '%s' is not in this payload: left out", *x);
	} else if (o->shims) {
		shims = kd_strv_copy(o->shims);
	} else {
		shims = calloc(1, sizeof(char *));
		for (size_t i = 0; shims && i < m->n_shims; i++)
			kd_strv_push(&shims, m->shims[i].name);
	}
	mask = calloc(m->n_components + 1, sizeof(bool));
	components = calloc(1, sizeof(char *));
	if (!shims || !mask || !components) {
		r = -ENOMEM;
		goto out_p;
	}
	kd_strv_sort(shims);
	if ((r = absent_opts(o, missing, &eff, &absent)) < 0)
		goto out_p;
	o = &eff;
	res->shims = kd_strv_copy(shims);
	res->skipped = missing ? TAKE_PTR(missing) : calloc(1, sizeof(char *));
	if (!res->shims || !res->skipped) {
		r = -ENOMEM;
		goto out_p;
	}
	r = kd_manifest_select(m, (const char *const *)shims, kd_strv_length(shims), mask, err);
	if (r < 0)
		goto out_p;
	kd_snapshotter_select(m, o->rt.snapshotter_setup, mask);
	if (!kd_debug_tools_select(m, o->rt.debug, mask))
		kd_warn("debug: the payload has no %s component: kata-ctl is not installed "
			"(upstream installs it with debug from its kata-tools bundle)",
			KD_KATA_CTL_COMPONENT);
	/* A damaged frame of a selected component is refused here, before any write, and so is
	 * what plan refuses too (kd_kata_check_sources). */
	if ((r = kd_payload_check_components(p, mask, err)) < 0 ||
	    (r = kd_kata_check_sources(m, mask, shims, o->rt.devkit, err)) < 0)
		goto out_p;
	for (size_t i = 0; i < m->n_components; i++)
		if (mask[i])
			kd_strv_push(&components, m->components[i].name);
	kd_strv_sort(components);
	char id[17] = "";
	if (!deferred)
		kd_install_version_id(kd_payload_digest(p), components, id);
	snprintf(res->id, sizeof(res->id), "%s", id);
	snprintf(res->version, sizeof(res->version), "%s", m->version);

	if (!deferred && !fresh && s.has_current && strcmp(s.current.id, id) == 0 &&
	    kd_state_links_intact(c->rootfd, &s) &&
	    kd_install_version_intact(c, &s.current, false, NULL) == 0) {
		res->changed = false; /* same payload and shims: write nothing */
		r = config_only(c, o, &s, res, err);
		goto out_p;
	}
	if ((r = kd_install_toplevel_names(m, mask, &tops, err)) < 0 ||
	    (r = kd_install_check_links(c, tops, err)) < 0)
		goto out_p;

	/* From here on every change is journaled. */
	state_created = calloc(1, sizeof(char *));
	created = kd_strv_copy(s.created_dirs);
	char versions[KD_PATH_MAX], staging[KD_PATH_MAX], final[KD_PATH_MAX], mpath[KD_PATH_MAX];
	snprintf(versions, sizeof(versions), "%s/%s", c->prefix, KD_VERSIONS_DIR);
	/* Deferred: the id is known once the digest is, after the extraction. */
	if (deferred)
		snprintf(staging, sizeof(staging), "%s/%sstaging-%d", versions, KD_TMP_PREFIX,
			 (int)getpid());
	else
		snprintf(staging, sizeof(staging), "%s/%sstaging-%s", versions, KD_TMP_PREFIX, id);
	snprintf(final, sizeof(final), "%s/%s", versions, id);
	snprintf(mpath, sizeof(mpath), "%s/%s.json", versions, id);
	if (!state_created || !created) {
		r = -ENOMEM;
		goto out_p;
	}
	r = begin_with_state_dir(c, &j, "install", &state_created, err);
	if (r < 0)
		goto out_p;
	if ((r = mkdir_journaled(c, &j, c->prefix, &created, err)) < 0)
		goto abort;
	if ((r = mkdir_journaled(c, &j, versions, NULL, err)) < 0)
		goto abort;

	struct stat st;
	bool have_final = !deferred && kd_lstat(c->rootfd, final, &st, NULL) == 0;
	if (have_final) {
		/* The previous version, or an unfinished GC: reuse it only if every file still
		 * has its manifest's sha256 (a file edited in place keeps its size). */
		kd_version tmpv = {.components = components};
		memcpy(tmpv.id, id, sizeof(tmpv.id));
		if (kd_install_version_intact(c, &tmpv, true, NULL) < 0) {
			if ((r = kd_remove_tree_atomic(c->rootfd, final, err)) < 0)
				goto abort;
			have_final = false;
		}
	}
	if (!have_final) {
		if ((r = kd_journal_tree(&j, staging, err)) < 0 ||
		    (r = kd_mkdir_p(c->rootfd, staging, 0755, NULL, NULL, err)) < 0)
			goto abort;
		_cleanup_close_ int sfd =
			kd_openat(c->rootfd, staging, O_RDONLY | O_DIRECTORY, 0, KD_NOFOLLOW, err);
		if (sfd < 0) {
			r = sfd;
			goto abort;
		}
		/* Files unchanged since the current version are hardlinked, not written (its
		 * manifest is read only if a same-size file turns out changed). */
		reuse_source rs = {.c = c, .id = s.current.id};
		_cleanup_close_ int reuse_fd = -1;
		if (s.has_current) {
			char cur[KD_PATH_MAX];
			snprintf(cur, sizeof(cur), "%s/%s", versions, s.current.id);
			reuse_fd = kd_openat(c->rootfd, cur, O_RDONLY | O_DIRECTORY, 0, KD_NOFOLLOW,
					     NULL);
		}
		extract_progress xp = {.tty = isatty(STDERR_FILENO)};
		kd_extract_opts xo = {.component_mask = mask,
				      .reuse_dirfd = reuse_fd,
				      .reuse_manifest_load = load_reuse_manifest,
				      .reuse_userdata = &rs,
				      .progress = o->progress ? show_extract_progress : NULL,
				      .progress_userdata = &xp};
		malloc_trim(0);
		r = kd_payload_extract(p, sfd, &xo, &res->stats, err);
		if (xp.shown)
			fputs("\r\033[K", stderr);
		kd_manifest_free(rs.m);
		if (r < 0) {
			kd_err_wrap(err, r, "extract payload");
			goto abort;
		}
		kd_debug("extract: payload format %d, %llu bytes of %llu read, %llu bytes "
			 "decompressed, %llu files written, %llu linked, %llu entries skipped",
			 kd_payload_format(p), (unsigned long long)res->stats.bytes_read,
			 (unsigned long long)st_payload_size(kd_payload_fd(p)),
			 (unsigned long long)res->stats.bytes_decompressed,
			 (unsigned long long)res->stats.files_written,
			 (unsigned long long)res->stats.files_linked,
			 (unsigned long long)res->stats.entries_skipped);
		if (res->stats.files_changed)
			kd_warn("%llu file(s) of the installed version %s no longer hash to their "
				"manifest's sha256 (changed in place; the first: /%s/%s): written "
				"from the payload instead of reused",
				(unsigned long long)res->stats.files_changed, s.current.id,
				c->prefix,
				res->stats.first_changed + strlen(KD_PAYLOAD_TREE_PREFIX));
		kd_fault_point("extracted");
		if (syncfs(sfd) < 0) {
			r = kd_err_errno(err, negative_errno(), "sync extracted files");
			goto abort;
		}
		if (deferred) {
			if ((r = kd_payload_digest_wait(p, err)) < 0)
				goto abort;
			kd_install_version_id(kd_payload_digest(p), components, id);
			snprintf(res->id, sizeof(res->id), "%s", id);
			snprintf(final, sizeof(final), "%s/%s", versions, id);
			snprintf(mpath, sizeof(mpath), "%s/%s.json", versions, id);
			/* The current or the previous version after all (its manifest in other
			 * bytes): undo and start again, digest first (a no-op, or its tree). */
			if ((s.has_current && strcmp(s.current.id, id) == 0) ||
			    (s.has_previous && strcmp(s.previous.id, id) == 0)) {
				r = RETRY_DIGEST_FIRST;
				goto abort;
			}
			/* A tree of this id is what an interrupted clean-up left. */
			if (kd_lstat(c->rootfd, final, &st, NULL) == 0 &&
			    (r = kd_remove_tree_atomic(c->rootfd, final, err)) < 0)
				goto abort;
		}
		_cleanup_free_ char *mjson = NULL;
		if ((r = kd_manifest_to_json(m, &mjson, err)) < 0 ||
		    (r = kd_journal_file(&j, mpath, err)) < 0 ||
		    (r = kd_write_atomic(c->rootfd, mpath, mjson, strlen(mjson), 0644, err)) < 0)
			goto abort;
		if ((r = kd_journal_tree(&j, final, err)) < 0)
			goto abort;
		if (renameat(c->rootfd, staging, c->rootfd, final) < 0) {
			r = kd_err_errno(err, negative_errno(), "move '/%s' into place", staging);
			goto abort;
		}
		kd_fault_point("renamed");
	}

	/* The switch: "current" and the top-level links through it. */
	char link[KD_PATH_MAX], target[KD_PATH_MAX];
	snprintf(link, sizeof(link), "%s/%s", c->prefix, KD_CURRENT_LINK);
	snprintf(target, sizeof(target), "%s/%s", KD_VERSIONS_DIR, id);
	if ((r = kd_journal_symlink(&j, link, err)) < 0 ||
	    (r = kd_symlink_atomic(c->rootfd, link, target, err)) < 0)
		goto abort;
	links = kd_strv_copy(s.links);
	if (!links) {
		r = -ENOMEM;
		goto abort;
	}
	if (!kd_strv_find(links, link))
		kd_strv_push(&links, link);
	for (size_t i = 0; tops[i]; i++) {
		snprintf(link, sizeof(link), "%s/%s", c->prefix, tops[i]);
		snprintf(target, sizeof(target), "%s/%s", KD_CURRENT_LINK, tops[i]);
		if (kd_lstat(c->rootfd, link, &st, NULL) == 0)
			continue;
		if ((r = kd_journal_symlink(&j, link, err)) < 0 ||
		    (r = kd_symlink_atomic(c->rootfd, link, target, err)) < 0)
			goto abort;
		kd_strv_push(&links, link);
	}

	/* The runtime config, in the same transaction (docs/RUNTIME-CONFIG.md). */
	if ((r = kd_engine_config_step(c, &j, &s, id, shims, &o->rt, &created, &res->config_changed,
				       err)) < 0)
		goto abort;

	/* The new state, written last: the transaction is complete once it is on disk. */
	char when[32];
	now_rfc3339(when, sizeof(when));
	if (s.has_current && strcmp(s.current.id, id) != 0) {
		kd_version_done(&s.previous);
		s.previous = s.current;
		s.has_previous = true;
	} else {
		kd_version_done(&s.current);
	}
	memset(&s.current, 0, sizeof(s.current));
	s.has_current = true;
	memcpy(s.current.id, id, sizeof(s.current.id));
	snprintf(s.current.digest, sizeof(s.current.digest), "%s", kd_payload_digest(p));
	s.current.version = strdup(m->version);
	s.current.installed_at = strdup(when);
	s.current.shims = TAKE_PTR(shims);
	s.current.components = TAKE_PTR(components);
	if (fresh) {
		s.prefix = strdup(c->prefix);
		kd_strv_free(s.state_dirs);
		s.state_dirs = TAKE_PTR(state_created);
	}
	free(s.phase);
	s.phase = strdup("installed");
	kd_strv_free(s.created_dirs);
	s.created_dirs = TAKE_PTR(created);
	kd_strv_free(s.links);
	s.links = TAKE_PTR(links);
	set_source(&s, o, kd_payload_fd(p), kd_payload_digest(p));
	char spath[KD_PATH_MAX];
	snprintf(spath, sizeof(spath), "%s/%s", c->state_dir, KD_STATE_FILE);
	if ((r = kd_journal_file(&j, spath, err)) < 0 ||
	    (r = kd_state_save(c->rootfd, c->state_dir, &s, err)) < 0)
		goto abort;
	kd_fault_point("state-saved");
	if ((r = kd_journal_commit(&j, err)) < 0)
		goto out_p;
	res->changed = true;
	gc_versions(c, &s);
	r = kd_engine_after_commit(c, &s, o->rt.restart, err);
	goto out_p;

abort:;
	kd_error e3 = {0};
	if (kd_journal_abort(&j, &e3) < 0)
		kd_err_wrap(err, r, "(undo failed too: %s)", e3.msg);
out_p:
	kd_payload_free(p);
out:
	kd_state_done(&s);
	return r;
}

int kd_engine_install(int rootfd, const kd_install_opts *o, kd_install_result *ret, kd_error *err)
{
	kd_ctx c;
	kd_install_result res = {0};
	kd_payload *pulled = NULL;
	int r;
	/* A registry payload is pulled and verified before the host is locked or written to:
	 * a long download holds no lock, and a bad blob leaves the host as it was. */
	if (kd_is_oci_ref(o->payload) && (r = kd_install_open_payload(o, false, &pulled, err)) < 0)
		return kd_err_wrap(err, r, "install");
	r = kd_ctx_open(&c, rootfd, &o->e, err);
	if (r >= 0)
		r = kd_ctx_recover(&c, err);
	if (r >= 0)
		r = do_install(&c, o, pulled ? &pulled : NULL, false, &res, err);
	if (r == RETRY_DIGEST_FIRST) {
		kd_install_result_done(&res);
		memset(&res, 0, sizeof(res));
		r = do_install(&c, o, NULL, true, &res, err);
	}
	kd_ctx_close(&c);
	kd_payload_free(pulled);
	if (r < 0) {
		kd_install_result_done(&res);
		return kd_err_wrap(err, r, "install");
	}
	if (ret)
		*ret = res;
	else
		kd_install_result_done(&res);
	return 0;
}
