/* Component builds. Layout of one build (in the cache, so sources hardlink into it):
 *   work/<name>/{src,files,inputs/<component>,build,out,home,tmp} and work/<name>/build.log
 * Steps run as `bash -eo pipefail -c STEP` in build/ with a cleared environment; see
 * docs/RECIPES.md for the variables they get. */
#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "build.h"
#include "digest.h"
#include "fsroot.h"
#include "log.h"
#include "strv.h"
#include "tarball.h"
#include "toolchain.h"

DEFINE_CLEANUP(DIR *, closedir)

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

char *kd_recipe_path(const kd_build_opts *o, const char *name)
{
	char *p;
	return asprintf(&p, "%s/recipes/%s.yaml", o->artifacts_dir, name) < 0 ? NULL : p;
}

static int load_recipe(const kd_build_opts *o, const char *name, kd_recipe **ret, kd_error *err)
{
	_cleanup_free_ char *path = kd_recipe_path(o, name);
	if (!path)
		return kd_err(err, -ENOMEM, "out of memory");
	if (access(path, F_OK) < 0)
		return kd_err(err, -ENOENT, "component '%s': no recipe %s", name, path);
	return kd_recipe_load(path, o->versions, ret, err);
}

static int mkdir_p(const char *path, mode_t mode, kd_error *err)
{
	_cleanup_free_ char *p = strdup(path);
	if (!p)
		return kd_err(err, -ENOMEM, "out of memory");
	for (char *s = p + 1;; s++) {
		if (*s == '/' || !*s) {
			char c = *s;
			*s = '\0';
			if (mkdir(p, mode) < 0 && errno != EEXIST)
				return kd_err_errno(err, negative_errno(), "mkdir %s", p);
			*s = c;
			if (!c)
				break;
		}
	}
	return 0;
}

static int hash_file(const char *path, char hex[65], kd_error *err)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	uint8_t d[KD_SHA256_LEN];
	if (fd < 0)
		return kd_err_errno(err, negative_errno(), "open %s", path);
	int r = kd_sha256_fd(fd, d, NULL, err);
	if (r < 0)
		return kd_err_wrap(err, r, "hash %s", path);
	kd_hex(d, sizeof(d), hex);
	return 0;
}

static int fetch_steps(const kd_build_opts *o, const kd_recipe *rc, kd_error *err);

int kd_component_fetch(const kd_build_opts *o, const char *name, kd_error *err)
{
	_cleanup_recipe_ kd_recipe *rc = NULL;
	int r = load_recipe(o, name, &rc, err);
	if (r < 0)
		return r;
	for (char **in = rc->inputs; in && *in; in++)
		if ((r = kd_component_fetch(o, *in, err)) < 0)
			return r;
	for (size_t i = 0; i < rc->n_sources; i++) {
		_cleanup_free_ char *path = NULL;
		char d[65];
		kd_fetch_opts fo = {.progress = o->progress, .mirror = o->mirror};
		r = kd_cache_fetch(o->cache, &rc->sources[i], &fo, &path, d, err);
		if (r < 0)
			return kd_err_wrap(err, r, "component %s", name);
		kd_debug("%s: source %s %s (%s)", name, rc->sources[i].name, d,
			 r ? "cached" : "fetched");
	}
	return rc->fetch ? fetch_steps(o, rc, err) : 0;
}

/* The inputs being followed, outermost first: a name met again closes a cycle, named in full. */
typedef struct input_chain {
	const char *names[KD_BUILD_MAX_DEPTH + 1];
	int n;
} input_chain;

static int chain_push(input_chain *c, const char *name, kd_error *err)
{
	for (int i = 0; i < c->n; i++) {
		if (strcmp(c->names[i], name) != 0)
			continue;
		char path[1024] = "";
		size_t l = 0;
		for (int k = i; k < c->n && l < sizeof(path); k++)
			l += (size_t)snprintf(path + l, sizeof(path) - l, "%s → ", c->names[k]);
		if (l < sizeof(path))
			snprintf(path + l, sizeof(path) - l, "%s", name);
		return kd_err(err, -ELOOP, "component %s: its inputs form a cycle: %s", c->names[0],
			      path);
	}
	if (c->n > KD_BUILD_MAX_DEPTH)
		return kd_err(err, -ELOOP, "component %s: inputs nest deeper than %d", c->names[0],
			      KD_BUILD_MAX_DEPTH);
	c->names[c->n++] = name;
	return 0;
}

/* The key text: every byte a build reads, by digest. Changing any of them changes the key. */
static int key_of(const kd_build_opts *o, const kd_recipe *rc, input_chain *chain, char ret[65],
		  kd_error *err)
{
	_cleanup_free_ char *text = NULL;
	size_t len = 0;
	char d[65];
	int r = 0;

	if ((r = chain_push(chain, rc->name, err)) < 0)
		return r;
	FILE *f = open_memstream(&text, &len);
	if (!f)
		return kd_err(err, -ENOMEM, "out of memory");
	kd_sha256_buf(rc->bytes, rc->len, d);
	fprintf(f, "kata-build component key\nbuilder %s\nname %s\nversion %s\nrecipe %s\n",
		KD_BUILDER_VERSION, rc->name, rc->version, d);
	/* Expanded values: a change in versions.yaml that a recipe uses changes its key. */
	for (char **s = rc->steps; *s; s++) {
		kd_sha256_buf(*s, strlen(*s), d);
		fprintf(f, "step %s\n", d);
	}
	for (char **s = rc->fetch; s && *s; s++) {
		kd_sha256_buf(*s, strlen(*s), d);
		fprintf(f, "fetch %s\n", d);
	}
	for (char **s = rc->outputs; *s; s++)
		fprintf(f, "output %s\n", *s);
	if (rc->toolchains) {
		_cleanup_(kd_toolchains_done) kd_toolchains tc = {0};
		r = kd_toolchains_resolve(o->versions, rc->toolchains, &tc, err);
		if (r >= 0)
			fputs(tc.key_text, f);
	}
	fprintf(f, "network %d\nsource_date_epoch %lld\n", rc->network,
		(long long)o->versions->source_date_epoch);
	for (size_t i = 0; r >= 0 && i < rc->n_sources; i++) {
		const kd_source *s = &rc->sources[i];
		if (s->kind == KD_SOURCE_GIT) { /* the tree, not the archive's bytes: a mirror's
						 * archive of the same tree builds the same */
			fprintf(f, "source %s git %s\n", s->name, s->tree);
			continue;
		}
		r = kd_cache_source_digest(o->cache, s, d, err);
		if (r == 0) { /* a deb never fetched: its digest is known once apt verified it */
			_cleanup_free_ char *path = NULL;
			kd_fetch_opts fo = {.progress = o->progress, .mirror = o->mirror};
			r = kd_cache_fetch(o->cache, s, &fo, &path, d, err);
		}
		if (r >= 0)
			fprintf(f, "source %s %s\n", s->name, d);
	}
	for (char **p = rc->files; r >= 0 && p && *p; p++) {
		_cleanup_free_ char *path = NULL;
		if (asprintf(&path, "%s/%s", o->artifacts_dir, *p) < 0)
			r = kd_err(err, -ENOMEM, "out of memory");
		else if ((r = hash_file(path, d, err)) >= 0)
			fprintf(f, "file %s %s\n", *p, d);
	}
	for (char **in = rc->inputs; r >= 0 && in && *in; in++) {
		_cleanup_recipe_ kd_recipe *irc = NULL;
		if ((r = load_recipe(o, *in, &irc, err)) >= 0 &&
		    (r = key_of(o, irc, chain, d, err)) >= 0)
			fprintf(f, "input %s %s\n", *in, d);
	}
	chain->n--;
	if (fclose(f) != 0 && r >= 0)
		r = kd_err(err, -ENOMEM, "out of memory");
	if (r < 0)
		return kd_err_wrap(err, r, "component %s: key", rc->name);
	kd_debug("%s key text:\n%s", rc->name, text);
	kd_sha256_buf(text, len, ret);
	return 0;
}

int kd_component_key(const kd_build_opts *o, const char *name, char ret_key[65], kd_error *err)
{
	_cleanup_recipe_ kd_recipe *rc = NULL;
	input_chain chain = {0};
	int r = load_recipe(o, name, &rc, err);
	return r < 0 ? r : key_of(o, rc, &chain, ret_key, err);
}

/* ---- packing ---- */

typedef struct pentry {
	char *path; /* "opt/kata/..." */
	kd_entry_type type;
	mode_t mode;
	uint64_t size;
	char *link;
} pentry;

typedef struct plist {
	pentry *e;
	size_t n, cap;
} plist;

static void plist_done(plist *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->e[i].path);
		free(l->e[i].link);
	}
	free(l->e);
}

static int plist_add(plist *l, const char *path, kd_entry_type t, mode_t mode, uint64_t size,
		     const char *link, kd_error *err)
{
	for (size_t i = 0; i < l->n; i++) /* parents are added once per child: keep it small */
		if (l->e[i].type == KD_ENTRY_DIR && t == KD_ENTRY_DIR &&
		    strcmp(l->e[i].path, path) == 0)
			return 0;
	if (l->n >= KD_BUILD_MAX_ENTRIES)
		return kd_err(err, -E2BIG, "more than %u entries", KD_BUILD_MAX_ENTRIES);
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		pentry *e = reallocarray(l->e, cap, sizeof(*e));
		if (!e)
			return kd_err(err, -ENOMEM, "out of memory");
		l->e = e;
		l->cap = cap;
	}
	pentry *e = &l->e[l->n];
	*e = (pentry){.type = t, .mode = mode, .size = size};
	if (!(e->path = strdup(path)) || (link && !(e->link = strdup(link)))) {
		free(e->path);
		return kd_err(err, -ENOMEM, "out of memory");
	}
	l->n++;
	return 0;
}

/* Directories 0755, files 0755 when any x bit is set else 0644, symlinks 0777. */
static mode_t norm_mode(kd_entry_type t, mode_t m)
{
	if (t == KD_ENTRY_DIR)
		return 0755;
	if (t == KD_ENTRY_SYMLINK)
		return 0777;
	return (m & 0111) ? 0755 : 0644;
}

static int collect(plist *l, const char *root, const char *rel, kd_error *err)
{
	_cleanup_free_ char *full = NULL;
	struct stat st;
	int r;

	if (asprintf(&full, "%s/%s", root, rel) < 0)
		return kd_err(err, -ENOMEM, "out of memory");
	if (lstat(full, &st) < 0)
		return kd_err_errno(err, negative_errno(), "'%s'", rel);
	if (S_ISDIR(st.st_mode)) {
		if (strlen(rel) > strlen(KD_RECIPE_OUTPUT_PREFIX) - 1 &&
		    (r = plist_add(l, rel, KD_ENTRY_DIR, 0755, 0, NULL, err)) < 0)
			return r;
		_cleanup_(closedirp) DIR *d = opendir(full);
		struct dirent *de;
		if (!d)
			return kd_err_errno(err, negative_errno(), "open '%s'", rel);
		while ((errno = 0, de = readdir(d))) {
			_cleanup_free_ char *child = NULL;
			if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
				continue;
			if (asprintf(&child, "%s/%s", rel, de->d_name) < 0)
				return kd_err(err, -ENOMEM, "out of memory");
			if ((r = collect(l, root, child, err)) < 0)
				return r;
		}
		return errno ? kd_err_errno(err, negative_errno(), "read '%s'", rel) : 0;
	}
	if (S_ISREG(st.st_mode))
		return plist_add(l, rel, KD_ENTRY_FILE, norm_mode(KD_ENTRY_FILE, st.st_mode),
				 (uint64_t)st.st_size, NULL, err);
	if (S_ISLNK(st.st_mode)) {
		char buf[KD_PATH_MAX];
		ssize_t n = readlink(full, buf, sizeof(buf) - 1);
		if (n < 0)
			return kd_err_errno(err, negative_errno(), "readlink '%s'", rel);
		buf[n] = '\0';
		if (buf[0] == '/')
			return kd_err(
				err, -EINVAL,
				"'%s' is an absolute symlink to '%s': outputs need relative links",
				rel, buf);
		return plist_add(l, rel, KD_ENTRY_SYMLINK, 0777, 0, buf, err);
	}
	return kd_err(err, -EINVAL, "'%s' is not a file, directory or symlink", rel);
}

static int cmp_pentry(const void *a, const void *b)
{
	return strcmp(((const pentry *)a)->path, ((const pentry *)b)->path);
}

static int write_tar(const plist *l, const char *root, int fd, int64_t mtime, kd_error *err)
{
	_cleanup_tar_writer_ kd_tar_writer *w = NULL;
	_cleanup_free_ char *buf = malloc(1 << 20);
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	kd_tar_write_opts wo = {.compression = KD_COMPRESS_ZSTD,
				.level = KD_BUILD_ZSTD_LEVEL,
				.threads = ncpu > 0 ? (int)ncpu : 1,
				.mtime = mtime};
	int r;

	if (!buf)
		return kd_err(err, -ENOMEM, "out of memory");
	_cleanup_close_ int rootfd = kd_root_open(root, err);
	if (rootfd < 0)
		return rootfd;
	if ((r = kd_tar_writer_open(fd, &wo, &w, err)) < 0)
		return r;
	for (size_t i = 0; i < l->n; i++) {
		const pentry *e = &l->e[i];
		kd_tar_entry te = {.path = e->path,
				   .type = e->type,
				   .mode = e->mode,
				   .size = e->size,
				   .link = e->link};
		if ((r = kd_tar_write_header(w, &te, err)) < 0)
			return r;
		if (e->type != KD_ENTRY_FILE)
			continue;
		/* Every component opened without following a link: a file is packed only from
		 * inside the output tree (a link above it could point at the host's /etc). */
		_cleanup_close_ int in =
			kd_openat(rootfd, e->path, O_RDONLY | O_NONBLOCK, 0, KD_NOFOLLOW, err);
		if (in < 0)
			return kd_err_wrap(err, in, "pack '%s'", e->path);
		uint64_t left = e->size;
		while (left > 0) {
			ssize_t n = read(in, buf, left < (1 << 20) ? (size_t)left : (1 << 20));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				return kd_err_errno(err, n < 0 ? negative_errno() : -EIO,
						    "read '%s' (changed while packing?)", e->path);
			if ((r = kd_tar_write_data(w, buf, (size_t)n, err)) < 0)
				return r;
			left -= (uint64_t)n;
		}
	}
	return kd_tar_writer_close(w, err);
}

/* Pack the declared outputs of out/ into fd. */
static int pack_outputs(const kd_recipe *rc, const char *outroot, int fd, int64_t mtime,
			kd_error *err)
{
	plist l = {0};
	int r = 0;

	for (char **o = rc->outputs; r >= 0 && *o; o++) {
		_cleanup_free_ char *rel = strdup(*o), *full = NULL;
		struct stat st;
		if (!rel)
			return kd_err(err, -ENOMEM, "out of memory");
		size_t n = strlen(rel);
		bool want_dir = rel[n - 1] == '/';
		if (want_dir)
			rel[n - 1] = '\0';
		if (asprintf(&full, "%s/%s", outroot, rel) < 0) {
			r = kd_err(err, -ENOMEM, "out of memory");
			break;
		}
		_cleanup_close_ int outfd = kd_root_open(outroot, err);
		if (outfd < 0) {
			r = outfd;
			break;
		}
		/* No link above an output: lstat walks each parent without following one. */
		kd_error e2 = {0};
		if ((r = kd_lstat(outfd, rel, &st, &e2)) == -ELOOP || r == -ENOTDIR) {
			r = kd_err(
				err, -EINVAL,
				"%s: output '%s' lies under a symlink or a non-directory in the "
				"output tree (%s): outputs are collected without following links "
				"above them",
				rc->path, *o, e2.msg);
			break;
		}
		if (r < 0) {
			r = kd_err(err, -ENOENT,
				   "%s: output '%s' was not produced by the steps (looked for %s)",
				   rc->path, *o, full);
			break;
		}
		if (want_dir != !!S_ISDIR(st.st_mode)) {
			r = kd_err(err, -EINVAL, "%s: output '%s' is %s", rc->path, *o,
				   want_dir ? "not a directory"
					    : "a directory: write it as '.../'");
			break;
		}
		/* Parents (opt, opt/kata, ...) are entries too, so ordinary tar extracts it. */
		for (char *s = strchr(rel, '/'); s && r >= 0; s = strchr(s + 1, '/')) {
			*s = '\0';
			r = plist_add(&l, rel, KD_ENTRY_DIR, 0755, 0, NULL, err);
			*s = '/';
		}
		if (r >= 0)
			r = collect(&l, outroot, rel, err);
	}
	if (r >= 0) {
		qsort(l.e, l.n, sizeof(pentry), cmp_pentry);
		for (size_t i = 1; r >= 0 && i < l.n; i++)
			if (strcmp(l.e[i].path, l.e[i - 1].path) == 0)
				r = kd_err(err, -EINVAL, "%s: outputs overlap at '%s'", rc->path,
					   l.e[i].path);
	}
	if (r >= 0)
		r = write_tar(&l, outroot, fd, mtime, err);
	plist_done(&l);
	return r < 0 ? kd_err_wrap(err, r, "pack %s", rc->name) : 0;
}

/* ---- extraction ---- */

int kd_component_extract(const char *tarball, const char *destdir, kd_extract_cb on_path,
			 void *userdata, kd_error *err)
{
	_cleanup_close_ int fd = open(tarball, O_RDONLY | O_CLOEXEC);
	_cleanup_close_ int root = -1;
	_cleanup_tar_reader_ kd_tar_reader *rd = NULL;
	kd_tar_entry e;
	int r;

	if (fd < 0)
		return kd_err_errno(err, negative_errno(), "open %s", tarball);
	if ((r = mkdir_p(destdir, 0755, err)) < 0 || (r = kd_root_open(destdir, err)) < 0)
		return r;
	root = r;
	if ((r = kd_tar_open(fd, NULL, &rd, err)) < 0)
		return kd_err_wrap(err, r, "%s", tarball);
	while ((r = kd_tar_next(rd, &e, err)) > 0) {
		const char *rel = e.path;
		size_t plen = strlen(KD_RECIPE_OUTPUT_PREFIX);
		if (strcmp(rel, "opt") == 0 || strcmp(rel, "opt/kata") == 0) {
			if ((r = kd_mkdir_p(root, rel, 0755, NULL, NULL, err)) < 0)
				return r;
			continue;
		}
		if (strncmp(rel, KD_RECIPE_OUTPUT_PREFIX, plen) != 0 ||
		    !kd_recipe_path_safe(rel, false))
			return kd_err(err, -EINVAL, "%s: entry '%s' is not a safe path under %s",
				      tarball, rel, KD_RECIPE_OUTPUT_PREFIX);
		if (on_path && (r = on_path(rel + plen, e.type == KD_ENTRY_DIR, userdata, err)) < 0)
			return r;
		if (e.type == KD_ENTRY_DIR) {
			if ((r = kd_mkdir_p(root, rel, 0755, NULL, NULL, err)) < 0)
				return r;
			continue;
		}
		const char *base;
		_cleanup_close_ int pfd = kd_open_parent(root, rel, &base, err);
		if (pfd < 0)
			return kd_err_wrap(err, pfd, "%s: '%s'", tarball, rel);
		if (e.type == KD_ENTRY_SYMLINK) {
			if (symlinkat(e.link, pfd, base) < 0)
				return kd_err_errno(err, negative_errno(), "%s: symlink '%s'%s",
						    tarball, rel,
						    errno == EEXIST ? " (already provided)" : "");
			continue;
		}
		if (e.type != KD_ENTRY_FILE)
			return kd_err(err, -EINVAL, "%s: '%s' is a %s", tarball, rel,
				      kd_entry_type_name(e.type));
		_cleanup_close_ int out =
			openat(pfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
			       e.mode & 0777);
		if (out < 0)
			return kd_err_errno(err, negative_errno(), "%s: create '%s'%s", tarball,
					    rel, errno == EEXIST ? " (already provided)" : "");
		const void *buf;
		size_t n;
		while ((r = kd_tar_read_block(rd, &buf, &n, err)) > 0)
			for (const char *p = buf; n > 0;) {
				ssize_t w = write(out, p, n);
				if (w < 0 && errno == EINTR)
					continue;
				if (w < 0)
					return kd_err_errno(err, negative_errno(), "write '%s'",
							    rel);
				p += w;
				n -= (size_t)w;
			}
		if (r < 0)
			return r;
	}
	return r;
}

/* ---- running steps ---- */

static int copy_file(const char *from, const char *to, kd_error *err)
{
	_cleanup_close_ int in = open(from, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (in < 0 || fstat(in, &st) < 0)
		return kd_err_errno(err, negative_errno(), "open %s", from);
	_cleanup_close_ int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
				       (st.st_mode & 0111) ? 0755 : 0644);
	if (out < 0)
		return kd_err_errno(err, negative_errno(), "create %s", to);
	char buf[65536];
	ssize_t n;
	while ((n = read(in, buf, sizeof(buf))) > 0)
		if (write(out, buf, (size_t)n) != n)
			return kd_err_errno(err, negative_errno(), "write %s", to);
	return n < 0 ? kd_err_errno(err, negative_errno(), "read %s", from) : 0;
}

/* One script of a recipe: a fetch step (with the network, language dependencies into the
 * shared caches) or a build step (without it unless the recipe says network: true). */
static size_t count_steps(char **v)
{
	size_t n = 0;
	while (v && v[n])
		n++;
	return n;
}

/* While a step runs: on a terminal one status line, redrawn every second; in a pod or a pipe
 * a line every STEP_PROGRESS_LINE_S seconds (a kernel step runs for many minutes). The log
 * size shows that it moves. Nothing with --quiet. */
#define STEP_PROGRESS_LINE_S 30
static int wait_step(const kd_build_opts *o, const kd_recipe *rc, pid_t pid, const char *what,
		     const char *logpath, int logfd, int *status, kd_error *err)
{
	bool tty = o->progress && isatty(STDERR_FILENO), shown = false;
	double t0 = now_s(), last = t0;

	for (;;) {
		pid_t w = waitpid(pid, status, WNOHANG);
		if (w == pid)
			break;
		if (w < 0 && errno != EINTR)
			return kd_err_errno(err, negative_errno(), "waitpid");
		usleep(200 * 1000);
		double t = now_s();
		if (!o->progress || t - last < (tty ? 1.0 : STEP_PROGRESS_LINE_S))
			continue;
		last = t;
		struct stat st;
		char sz[32] = "?";
		if (fstat(logfd, &st) == 0)
			kd_format_bytes((double)st.st_size, sz, sizeof(sz));
		fprintf(stderr, "%s%s: %s, %.0f s, log %s (%s)%s", tty ? "\r" : "", rc->name, what,
			t - t0, logpath, sz, tty ? "   " : "\n");
		shown = tty;
	}
	if (shown)
		fputs("\r\033[K", stderr);
	return 0;
}

static int run_step(const kd_build_opts *o, const kd_recipe *rc, const char *work,
		    const char *logpath, const char *script, bool fetching, size_t idx, int logfd,
		    kd_error *err)
{
	_cleanup_(kd_toolchains_done) kd_toolchains tc = {0};
	const char *cd = kd_cache_dir(o->cache);
	bool net = fetching || rc->network;
	char **env = NULL;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	int jobs = o->jobs > 0 ? o->jobs : ncpu > 0 ? (int)ncpu : 1;
	_cleanup_free_ char *bdir = NULL;
	int r = 0;

#define ENV(...)                                                                                   \
	do {                                                                                       \
		char *_s;                                                                          \
		if (asprintf(&_s, __VA_ARGS__) < 0 || kd_strv_push(&env, _s) < 0)                  \
			r = -ENOMEM;                                                               \
		free(_s);                                                                          \
	} while (0)
	if (rc->toolchains &&
	    (r = kd_toolchains_resolve(o->versions, rc->toolchains, &tc, err)) < 0)
		return r;
	ENV("PATH=%s%s%s", tc.path ? tc.path : "", tc.path && *tc.path ? ":" : "", KD_BUILD_PATH);
	ENV("HOME=%s/home", work);
	ENV("TMPDIR=%s/tmp", work);
	ENV("SOURCE_DATE_EPOCH=%lld", (long long)o->versions->source_date_epoch);
	ENV("TZ=UTC");
	ENV("LC_ALL=C");
	ENV("LANG=C");
	ENV("DEBIAN_FRONTEND=noninteractive");
	ENV("KB_NAME=%s", rc->name);
	ENV("KB_VERSION=%s", rc->version);
	ENV("KB_SRC=%s/src", work);
	ENV("KB_FILES=%s/files", work);
	ENV("KB_INPUTS=%s/inputs", work);
	ENV("KB_OUT=%s/out", work);
	ENV("KB_JOBS=%d", jobs);
	/* Shared language caches (docs/RECIPES.md): filled by fetch steps, verified by the lock
	 * files (Cargo.lock checksums, go.sum); the build caches are content-addressed by cargo
	 * and go themselves, so sharing them changes no output. */
	ENV("KB_SHARED=%s/shared", cd);
	for (char **t = rc->toolchains; t && *t; t++) {
		if (strcmp(*t, "rust") == 0) {
			ENV("CARGO_HOME=%s/cargo-home", cd);
			ENV("CARGO_TARGET_DIR=%s/cargo-target", cd);
			ENV("CARGO_NET_OFFLINE=%s", net ? "false" : "true");
			ENV("CARGO_TERM_COLOR=never");
		} else {
			ENV("GOMODCACHE=%s/go/mod", cd);
			ENV("GOCACHE=%s/go/build", cd);
			ENV("GOPATH=%s/home/go", work);
			ENV("GOTOOLCHAIN=local");
			ENV("GOTELEMETRY=off");
			ENV("GOFLAGS=-modcacherw");
			const char *proxy = getenv("GOPROXY");
			ENV("GOPROXY=%s", !net	  ? "off"
					  : proxy ? proxy
						  : "https://proxy.golang.org");
		}
	}
#undef ENV
	if (r < 0 || asprintf(&bdir, "%s/build", work) < 0) {
		kd_strv_free(env);
		return kd_err(err, -ENOMEM, "out of memory");
	}
	dprintf(logfd, "==> %s %zu\n", fetching ? "fetch" : "step", idx + 1);
	pid_t pid = fork();
	if (pid < 0) {
		kd_strv_free(env);
		return kd_err_errno(err, negative_errno(), "fork");
	}
	if (pid == 0) {
		umask(022);
		if (!net && unshare(CLONE_NEWNET) < 0)
			dprintf(logfd, "kata-build: warning: cannot drop the network (%m); "
				       "the step runs with it\n");
		if (chdir(bdir) < 0)
			_exit(126);
		int devnull = open("/dev/null", O_RDONLY);
		if (devnull >= 0)
			dup2(devnull, STDIN_FILENO);
		dup2(logfd, STDOUT_FILENO);
		dup2(logfd, STDERR_FILENO);
		char *argv[] = {"bash", "-eo", "pipefail", "-c", (char *)script, NULL};
		execve("/bin/bash", argv, env);
		_exit(127);
	}
	kd_strv_free(env);
	int status;
	char what[64];
	snprintf(what, sizeof(what), "%s %zu/%zu", fetching ? "fetch" : "step", idx + 1,
		 count_steps(fetching ? rc->fetch : rc->steps));
	kd_info("%s: %s (log %s)", rc->name, what, logpath);
	if ((r = wait_step(o, rc, pid, what, logpath, logfd, &status, err)) < 0)
		return r;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	/* Quote the end of the log: that is where the reason is. */
	char tail[KD_BUILD_LOG_TAIL + 1] = "";
	off_t end = lseek(logfd, 0, SEEK_END);
	off_t from = end > KD_BUILD_LOG_TAIL ? end - KD_BUILD_LOG_TAIL : 0;
	ssize_t n = pread(logfd, tail, KD_BUILD_LOG_TAIL, from);
	tail[n > 0 ? n : 0] = '\0';
	char *start = from > 0 ? strchr(tail, '\n') : NULL;
	return kd_err(err, -EIO, "%s %s %d; log %s ends with:\n%s", what,
		      WIFEXITED(status) ? "exited with status" : "killed by signal",
		      WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), logpath,
		      start ? start + 1 : tail);
}

static int prepare_work(const kd_build_opts *o, const kd_recipe *rc, const char *work,
			kd_error *err)
{
	static const char *const dirs[] = {"src", "files", "inputs", "build", "out", "home", "tmp"};
	int r;
	_cleanup_close_ int cfd = kd_root_open(kd_cache_dir(o->cache), err);
	if (cfd < 0)
		return cfd;
	/* work is <cache>/work/<name>: remove a previous (failed) build first. */
	_cleanup_free_ char *rel = NULL;
	if (asprintf(&rel, "work/%s", rc->name) < 0)
		return kd_err(err, -ENOMEM, "out of memory");
	if ((r = kd_remove_tree(cfd, rel, err)) < 0)
		return r;
	for (size_t i = 0; i < ELEMENTSOF(dirs); i++) {
		_cleanup_free_ char *p = NULL;
		if (asprintf(&p, "%s/%s", work, dirs[i]) < 0)
			return kd_err(err, -ENOMEM, "out of memory");
		if ((r = mkdir_p(p, 0755, err)) < 0)
			return r;
	}
	for (size_t i = 0; i < rc->n_sources; i++) {
		_cleanup_free_ char *path = NULL, *dst = NULL;
		char d[65];
		kd_fetch_opts fo = {.progress = o->progress, .mirror = o->mirror};
		if ((r = kd_cache_fetch(o->cache, &rc->sources[i], &fo, &path, d, err)) < 0)
			return r;
		/* Verified before use: a cache file changed on disk since it was stored fails. */
		if ((r = kd_cache_check(o->cache, d, err)) < 0)
			return r;
		if (asprintf(&dst, "%s/src/%s", work, rc->sources[i].name) < 0)
			return kd_err(err, -ENOMEM, "out of memory");
		if (link(path, dst) < 0 && symlink(path, dst) < 0)
			return kd_err_errno(err, negative_errno(), "link %s", dst);
	}
	for (char **f = rc->files; f && *f; f++) {
		_cleanup_free_ char *from = NULL, *to = NULL;
		if (asprintf(&from, "%s/%s", o->artifacts_dir, *f) < 0 ||
		    asprintf(&to, "%s/files/%s", work, *f) < 0)
			return kd_err(err, -ENOMEM, "out of memory");
		char *slash = strrchr(to, '/');
		*slash = '\0';
		r = mkdir_p(to, 0755, err);
		*slash = '/';
		if (r < 0 || (r = copy_file(from, to, err)) < 0)
			return r;
	}
	return 0;
}

/* `kata-build fetch` of a recipe with fetch steps: run them in a fresh work dir, so that a
 * later build finds every language dependency without the network. */
static int fetch_steps(const kd_build_opts *o, const kd_recipe *rc, kd_error *err)
{
	_cleanup_free_ char *work = NULL, *log = NULL;
	const char *cd = kd_cache_dir(o->cache);
	int r;
	if (asprintf(&work, "%s/work/%s", cd, rc->name) < 0 ||
	    asprintf(&log, "%s/fetch.log", work) < 0)
		return kd_err(err, -ENOMEM, "out of memory");
	if ((r = prepare_work(o, rc, work, err)) < 0)
		return kd_err_wrap(err, r, "component %s", rc->name);
	_cleanup_close_ int logfd =
		open(log, O_RDWR | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
	if (logfd < 0)
		return kd_err_errno(err, negative_errno(), "open %s", log);
	for (size_t i = 0; rc->fetch[i]; i++)
		if ((r = run_step(o, rc, work, log, rc->fetch[i], true, i, logfd, err)) < 0)
			return kd_err_wrap(err, r, "component %s", rc->name);
	_cleanup_close_ int cfd = kd_root_open(cd, err);
	_cleanup_free_ char *rel = NULL;
	if (cfd >= 0 && asprintf(&rel, "work/%s/build", rc->name) >= 0)
		kd_remove_tree(cfd, rel, NULL);
	return 0;
}

static int store_result(const kd_build_opts *o, const char *name, const char *cached_tar,
			kd_error *err)
{
	_cleanup_free_ char *dst = NULL, *tmp = NULL;
	if (mkdir_p(o->out_dir, 0755, err) < 0)
		return -EIO;
	if (asprintf(&dst, "%s/kata-static-%s.tar.zst", o->out_dir, name) < 0 ||
	    asprintf(&tmp, "%s/.#kd.kata-static-%s.tar.zst", o->out_dir, name) < 0)
		return kd_err(err, -ENOMEM, "out of memory");
	unlink(tmp);
	if (link(cached_tar, tmp) < 0) {
		int r = copy_file(cached_tar, tmp, err);
		if (r < 0)
			return r;
	}
	if (rename(tmp, dst) < 0)
		return kd_err_errno(err, negative_errno(), "rename %s", dst);
	unlink(tmp); /* rename() does nothing when both names are links to one file */
	return 0;
}

/* A cached tarball that changed on disk was also linked into the output dir by an earlier
 * hit: remove that name too when it is the same file. */
static void drop_out_link(const kd_build_opts *o, const char *name, const struct stat *cached)
{
	_cleanup_free_ char *dst = NULL;
	struct stat st;
	if (asprintf(&dst, "%s/kata-static-%s.tar.zst", o->out_dir, name) >= 0 &&
	    lstat(dst, &st) == 0 && st.st_dev == cached->st_dev && st.st_ino == cached->st_ino)
		unlink(dst);
}

static int build_one(const kd_build_opts *o, const char *name, input_chain *chain,
		     kd_build_result *ret, kd_error *err)
{
	_cleanup_recipe_ kd_recipe *rc = NULL;
	_cleanup_free_ char *cdir = NULL, *ctar = NULL, *work = NULL, *log = NULL, *tmpdir = NULL,
			    *tmptar = NULL, *lockp = NULL;
	double t0 = now_s();
	kd_build_result res = {0};
	int r;

	if ((r = chain_push(chain, name, err)) < 0)
		return r;
	if ((r = load_recipe(o, name, &rc, err)) < 0)
		return r;
	/* Inputs first: their tarballs are read by this build, their keys are part of ours. A
	 * cycle is reported once, from where it closes. */
	for (char **in = rc->inputs; in && *in; in++) {
		kd_build_result ir;
		if ((r = build_one(o, *in, chain, &ir, err)) < 0)
			return r == -ELOOP ? r : kd_err_wrap(err, r, "component %s: input", name);
	}
	chain->n--;
	input_chain kc = {0};
	if ((r = key_of(o, rc, &kc, res.key, err)) < 0)
		return r;
	const char *cd = kd_cache_dir(o->cache);
	if (asprintf(&cdir, "%s/components/%s", cd, res.key) < 0 ||
	    asprintf(&ctar, "%s/kata-static-%s.tar.zst", cdir, name) < 0 ||
	    asprintf(&lockp, "%s/work/%s.lock", cd, name) < 0)
		return kd_err(err, -ENOMEM, "out of memory");

	/* One build of a component at a time per cache. */
	_cleanup_close_ int lockfd = open(lockp, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (lockfd < 0 || flock(lockfd, LOCK_EX) < 0)
		return kd_err_errno(err, negative_errno(), "lock %s", lockp);

	if (!o->force && access(ctar, F_OK) == 0) {
		/* The stamp written with the tarball gives its sha256 unless the file changed. */
		struct stat st;
		bool have_st = stat(ctar, &st) == 0;
		r = kd_cache_stamped_sha256(ctar, res.sha256, err);
		if (r == -EBADMSG && have_st)
			drop_out_link(o, name, &st);
		if (r < 0)
			return kd_err_wrap(err, r, "component %s (the next run builds it again)",
					   name);
		res.cached = true;
	} else {
		if (asprintf(&work, "%s/work/%s", cd, name) < 0 ||
		    asprintf(&log, "%s/build.log", work) < 0)
			return kd_err(err, -ENOMEM, "out of memory");
		if ((r = prepare_work(o, rc, work, err)) < 0)
			return kd_err_wrap(err, r, "component %s", name);
		for (char **in = rc->inputs; in && *in; in++) {
			_cleanup_free_ char *itar = NULL, *idir = NULL;
			if (asprintf(&itar, "%s/kata-static-%s.tar.zst", o->out_dir, *in) < 0 ||
			    asprintf(&idir, "%s/inputs/%s", work, *in) < 0)
				return kd_err(err, -ENOMEM, "out of memory");
			if ((r = kd_component_extract(itar, idir, NULL, NULL, err)) < 0)
				return kd_err_wrap(err, r, "component %s: input %s", name, *in);
		}
		_cleanup_close_ int logfd =
			open(log, O_RDWR | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
		if (logfd < 0)
			return kd_err_errno(err, negative_errno(), "open %s", log);
		/* Fetch steps first, with the network: on a warm cache they find everything and
		 * download nothing; the build steps then run without it. */
		for (size_t i = 0; rc->fetch && rc->fetch[i]; i++)
			if ((r = run_step(o, rc, work, log, rc->fetch[i], true, i, logfd, err)) < 0)
				return kd_err_wrap(err, r, "component %s", name);
		for (size_t i = 0; rc->steps[i]; i++)
			if ((r = run_step(o, rc, work, log, rc->steps[i], false, i, logfd, err)) <
			    0)
				return kd_err_wrap(err, r, "component %s", name);
		/* Pack into a temp dir, then rename: a killed build leaves no half result. */
		if (asprintf(&tmpdir, "%s/components/.#kd.%s.%d", cd, res.key, (int)getpid()) < 0 ||
		    asprintf(&tmptar, "%s/kata-static-%s.tar.zst", tmpdir, name) < 0)
			return kd_err(err, -ENOMEM, "out of memory");
		if (mkdir(tmpdir, 0755) < 0 && errno != EEXIST)
			return kd_err_errno(err, negative_errno(), "mkdir %s", tmpdir);
		_cleanup_free_ char *outroot = NULL;
		if (asprintf(&outroot, "%s/out", work) < 0)
			return kd_err(err, -ENOMEM, "out of memory");
		_cleanup_close_ int tfd =
			open(tmptar, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0444);
		if (tfd < 0)
			return kd_err_errno(err, negative_errno(), "create %s", tmptar);
		r = pack_outputs(rc, outroot, tfd, o->versions->source_date_epoch, err);
		if (r >= 0 && fsync(tfd) < 0)
			r = kd_err_errno(err, negative_errno(), "fsync %s", tmptar);
		if (r >= 0)
			r = kd_cache_stamp(tmptar, res.sha256, err);
		if (r >= 0 && o->force) {
			_cleanup_close_ int cfd = kd_root_open(cd, err);
			_cleanup_free_ char *rel = NULL;
			if (cfd >= 0 && asprintf(&rel, "components/%s", res.key) >= 0)
				kd_remove_tree(cfd, rel, NULL);
		}
		if (r >= 0 && rename(tmpdir, cdir) < 0)
			r = kd_err_errno(err, negative_errno(), "store %s", cdir);
		if (r < 0) {
			_cleanup_free_ char *stamp = NULL;
			if (asprintf(&stamp, "%s.sha256", tmptar) >= 0)
				unlink(stamp);
			unlink(tmptar);
			rmdir(tmpdir);
			return kd_err_wrap(err, r, "component %s", name);
		}
		/* The work tree is large (a kernel tree is 1.5 GB): keep only the log. */
		_cleanup_close_ int cfd = kd_root_open(cd, err);
		if (cfd >= 0) {
			static const char *const big[] = {"src", "files", "inputs", "build",
							  "out", "home",  "tmp"};
			for (size_t i = 0; i < ELEMENTSOF(big); i++) {
				_cleanup_free_ char *rel = NULL;
				if (asprintf(&rel, "work/%s/%s", name, big[i]) >= 0)
					kd_remove_tree(cfd, rel, NULL);
			}
		}
	}
	if ((r = store_result(o, name, ctar, err)) < 0)
		return kd_err_wrap(err, r, "component %s", name);
	res.seconds = now_s() - t0;
	*ret = res;
	return 0;
}

int kd_component_build(const kd_build_opts *o, const char *name, kd_build_result *ret,
		       kd_error *err)
{
	input_chain chain = {0};
	return build_one(o, name, &chain, ret, err);
}
