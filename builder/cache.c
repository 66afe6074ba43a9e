/* Source cache: sources/sha256/<hex> (verified content), partial/<hex> (a download in progress,
 * resumed by the next run), debs/<package>_<version> (the sha256 of an apt-fetched package),
 * git/<tree id> (the sha256 of an archive whose contents have that git tree id).
 * A download is hashed before the rename that makes it visible; a mismatch deletes it. Digest
 * stamps (<file>.sha256) let a component cache hit skip rehashing an unchanged tarball. */
#include <dirent.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cache.h"
#include "digest.h"
#include "gittree.h"
#include "http.h"
#include "log.h"

DEFINE_CLEANUP(DIR *, closedir)

struct kd_cache {
	char *dir;
};

static const char *const layout[] = {"sources", "sources/sha256", "partial", "debs",
				     "git",	"components",	  "work"};

const char *kd_cache_dir(const kd_cache *c)
{
	return c->dir;
}

void kd_cache_free(kd_cache *c)
{
	if (!c)
		return;
	free(c->dir);
	free(c);
}

static int mkdir_p(const char *path, kd_error *err)
{
	_cleanup_free_ char *p = strdup(path);
	if (!p)
		return kd_err(err, -ENOMEM, "out of memory");
	for (char *s = p + 1;; s++) {
		if (*s == '/' || !*s) {
			char c = *s;
			*s = '\0';
			if (mkdir(p, 0755) < 0 && errno != EEXIST)
				return kd_err_errno(err, negative_errno(), "mkdir %s", p);
			*s = c;
			if (!c)
				break;
		}
	}
	return 0;
}

int kd_cache_open(const char *dir, kd_cache **ret, kd_error *err)
{
	_cleanup_(kd_cache_freep) kd_cache *c = calloc(1, sizeof(*c));
	const char *env = getenv(KD_CACHE_ENV), *home = getenv("HOME");
	int r;

	if (!c)
		return kd_err(err, -ENOMEM, "out of memory");
	if (dir && *dir)
		c->dir = strdup(dir);
	else if (env && *env)
		c->dir = strdup(env);
	else if (asprintf(&c->dir, "%s/.cache/kata-build", home && *home ? home : "/root") < 0)
		c->dir = NULL;
	if (!c->dir)
		return kd_err(err, -ENOMEM, "out of memory");
	if (c->dir[0] != '/') {
		char cwd[4096];
		_cleanup_free_ char *rel = TAKE_PTR(c->dir);
		if (!getcwd(cwd, sizeof(cwd)) || asprintf(&c->dir, "%s/%s", cwd, rel) < 0)
			return kd_err(err, -ENOMEM, "cache: cannot make '%s' absolute", rel);
	}
	for (size_t i = 0; i < ELEMENTSOF(layout); i++) {
		_cleanup_free_ char *p = NULL;
		if (asprintf(&p, "%s/%s", c->dir, layout[i]) < 0)
			return kd_err(err, -ENOMEM, "out of memory");
		if ((r = mkdir_p(p, err)) < 0)
			return kd_err_wrap(err, r, "cache %s", c->dir);
	}
	*ret = TAKE_PTR(c);
	return 0;
}

static int hash_path(const char *path, char hex[65], uint64_t *ret_size, kd_error *err)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	uint8_t d[KD_SHA256_LEN];
	if (fd < 0)
		return kd_err_errno(err, negative_errno(), "open %s", path);
	int r = kd_sha256_fd(fd, d, ret_size, err);
	if (r < 0)
		return kd_err_wrap(err, r, "hash %s", path);
	kd_hex(d, sizeof(d), hex);
	return 0;
}

int kd_cache_check(kd_cache *c, const char *sha256, kd_error *err)
{
	_cleanup_free_ char *path = NULL;
	char got[65];
	if (asprintf(&path, "%s/sources/sha256/%s", c->dir, sha256) < 0)
		return kd_err(err, -ENOMEM, "out of memory");
	int r = hash_path(path, got, NULL, err);
	if (r < 0)
		return r;
	if (strcmp(got, sha256) != 0) {
		unlink(path);
		return kd_err(err, -EBADMSG,
			      "cache: %s holds content with sha256 %s; removed it, fetch again",
			      path, got);
	}
	return 0;
}

/* ---- digest stamps ---- */

#define STAMP_SUFFIX ".sha256"
#define STAMP_MAX 256 /* bytes of a stamp file */

/* Every field on its own line; a stamp is trusted only when it is exactly this text for the
 * file's current stat. hashed: CLOCK_REALTIME_COARSE (the clock of file timestamps) read before
 * the hash started. */
static void stamp_text(char buf[STAMP_MAX], const char *hex, const struct stat *st,
		       const struct timespec *hashed)
{
	snprintf(buf, STAMP_MAX,
		 "sha256 %s\nsize %lld\nmtime %lld.%09ld\ninode %llu\nhashed %lld.%09ld\n", hex,
		 (long long)st->st_size, (long long)st->st_mtim.tv_sec, st->st_mtim.tv_nsec,
		 (unsigned long long)st->st_ino, (long long)hashed->tv_sec, hashed->tv_nsec);
}

static bool ts_before(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

/* Read the stamp at sp for a file with stat st. 1: trusted, ret_hex is the file's sha256; 0:
 * stale (the file's stat moved on, or it was written in the tick its hash started), ret_hex is
 * the sha256 the file had; -1: no stamp, or not one (ret_hex ""). */
static int stamp_read(const char *sp, const struct stat *st, char ret_hex[65])
{
	_cleanup_close_ int fd = open(sp, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	char buf[STAMP_MAX], want[STAMP_MAX];
	struct timespec hashed;
	long long sec;
	long nsec;
	ssize_t n;

	ret_hex[0] = '\0';
	if (fd < 0 || (n = read(fd, buf, sizeof(buf) - 1)) <= 0 || n == sizeof(buf) - 1)
		return -1;
	buf[n] = '\0';
	if ((size_t)n < 7 + 64 + 1 || strncmp(buf, "sha256 ", 7) != 0 || buf[7 + 64] != '\n')
		return -1;
	memcpy(ret_hex, buf + 7, 64);
	ret_hex[64] = '\0';
	if (!kd_sha256_hex_valid(ret_hex)) {
		ret_hex[0] = '\0';
		return -1;
	}
	const char *h = strstr(buf, "\nhashed ");
	if (!h || sscanf(h + 8, "%lld.%ld", &sec, &nsec) != 2 || nsec < 0 || nsec > 999999999)
		return 0;
	hashed = (struct timespec){.tv_sec = (time_t)sec, .tv_nsec = nsec};
	stamp_text(want, ret_hex, st, &hashed);
	return strcmp(buf, want) == 0 && ts_before(&st->st_mtim, &hashed) ? 1 : 0;
}

/* Hash fd from its start: ret_hashed is the clock before the hash, ret_st the stat after it. */
static int hash_stat(const char *path, int fd, char ret_hex[65], struct stat *ret_st,
		     struct timespec *ret_hashed, kd_error *err)
{
	uint8_t d[KD_SHA256_LEN];
	int r;

	clock_gettime(CLOCK_REALTIME_COARSE, ret_hashed);
	if (lseek(fd, 0, SEEK_SET) < 0)
		return kd_err_errno(err, negative_errno(), "seek %s", path);
	if ((r = kd_sha256_fd(fd, d, NULL, err)) < 0)
		return kd_err_wrap(err, r, "hash %s", path);
	if (fstat(fd, ret_st) < 0)
		return kd_err_errno(err, negative_errno(), "stat %s", path);
	kd_hex(d, sizeof(d), ret_hex);
	return 0;
}

/* Write <path>.sha256 through a temp file and rename: a reader sees the old or the new one. */
static int stamp_write(const char *path, const char *hex, const struct stat *st,
		       const struct timespec *hashed, kd_error *err)
{
	_cleanup_free_ char *sp = NULL, *tmp = NULL;
	_cleanup_close_ int fd = -1;
	char text[STAMP_MAX];
	size_t len;

	if (asprintf(&sp, "%s" STAMP_SUFFIX, path) < 0 ||
	    asprintf(&tmp, "%s" STAMP_SUFFIX ".XXXXXX", path) < 0)
		return kd_err(err, -ENOMEM, "out of memory");
	stamp_text(text, hex, st, hashed);
	len = strlen(text);
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return kd_err_errno(err, negative_errno(), "create %s", tmp);
	errno = EIO; /* a short write sets none */
	if (write(fd, text, len) != (ssize_t)len || fchmod(fd, 0444) < 0 || fsync(fd) < 0 ||
	    rename(tmp, sp) < 0) {
		int r = kd_err_errno(err, negative_errno(), "write %s", sp);
		unlink(tmp);
		return r;
	}
	return 0;
}

int kd_cache_stamp(const char *path, char ret_sha256[65], kd_error *err)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	struct timespec hashed;
	struct stat st;
	char hex[65];
	int r;

	if (fd < 0)
		return kd_err_errno(err, negative_errno(), "open %s", path);
	if ((r = hash_stat(path, fd, hex, &st, &hashed, err)) < 0 ||
	    (r = stamp_write(path, hex, &st, &hashed, err)) < 0)
		return r;
	memcpy(ret_sha256, hex, 65);
	return 0;
}

int kd_cache_stamped_sha256(const char *path, char ret_sha256[65], kd_error *err)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	_cleanup_free_ char *sp = NULL;
	char stored[65], got[65];
	struct timespec hashed;
	struct stat st;
	kd_error e = {0};
	int r, s;

	if (fd < 0 || fstat(fd, &st) < 0)
		return kd_err_errno(err, negative_errno(), "open %s", path);
	if (asprintf(&sp, "%s" STAMP_SUFFIX, path) < 0)
		return kd_err(err, -ENOMEM, "out of memory");
	s = stamp_read(sp, &st, stored);
	if (s == 1) {
		kd_debug("%s: sha256 from its stamp", path);
		memcpy(ret_sha256, stored, 65);
		return 1;
	}
	if ((r = hash_stat(path, fd, got, &st, &hashed, err)) < 0)
		return r;
	if (s == 0 && strcmp(stored, got) != 0) {
		unlink(path);
		unlink(sp);
		return kd_err(err, -EBADMSG,
			      "cache: %s changed since it was stored (sha256 %s, stored %s); "
			      "removed it",
			      path, got, stored);
	}
	/* Only an optimisation: a stamp that cannot be written costs a rehash next time. */
	if (stamp_write(path, got, &st, &hashed, &e) < 0)
		kd_debug("%s: stamp not rewritten: %s", path, kd_err_msg(&e));
	kd_debug("%s: rehashed (%s stamp)", path, s == 0 ? "stale" : "no");
	memcpy(ret_sha256, got, 65);
	return 0;
}

/* Debian versions may hold ':' and '~'; index files use a name without them. */
static int deb_index_path(const kd_cache *c, const kd_source *s, char **ret)
{
	_cleanup_free_ char *v = strdup(s->version);
	if (!v)
		return -ENOMEM;
	for (char *p = v; *p; p++)
		if (*p == ':' || *p == '/')
			*p = '%';
	return asprintf(ret, "%s/debs/%s_%s", c->dir, s->deb, v) < 0 ? -ENOMEM : 0;
}

static int index_path(const kd_cache *c, const kd_source *s, char **ret)
{
	if (s->kind == KD_SOURCE_GIT)
		return asprintf(ret, "%s/git/%s", c->dir, s->tree) < 0 ? -ENOMEM : 0;
	return deb_index_path(c, s, ret);
}

static int write_index(const char *idx, const char *sha256, kd_error *err)
{
	FILE *f = fopen(idx, "we");
	if (!f || fprintf(f, "%s\n", sha256) < 0 || fclose(f) != 0)
		return kd_err_errno(err, -EIO, "write %s", idx);
	return 0;
}

int kd_cache_source_digest(kd_cache *c, const kd_source *s, char ret_sha256[65], kd_error *err)
{
	if (s->kind == KD_SOURCE_URL) {
		memcpy(ret_sha256, s->sha256, 65);
		return 1;
	}
	_cleanup_free_ char *idx = NULL, *path = NULL;
	char buf[80] = "";
	if (index_path(c, s, &idx) < 0)
		return kd_err(err, -ENOMEM, "out of memory");
	_cleanup_fclose_ FILE *f = fopen(idx, "re");
	if (!f)
		return errno == ENOENT ? 0 : kd_err_errno(err, negative_errno(), "open %s", idx);
	if (!fgets(buf, sizeof(buf), f))
		return 0;
	buf[strcspn(buf, "\n")] = '\0';
	if (!kd_sha256_hex_valid(buf))
		return 0;
	if (asprintf(&path, "%s/sources/sha256/%s", c->dir, buf) < 0)
		return kd_err(err, -ENOMEM, "out of memory");
	if (access(path, F_OK) < 0)
		return 0;
	memcpy(ret_sha256, buf, 65);
	return 1;
}

/* Copy <mirror>/<name> into fd (a regular file only). 1 when copied, 0 when the mirror has no
 * such file. */
static int copy_from_mirror(const char *mirror, const char *name, int fd, kd_error *err)
{
	_cleanup_free_ char *path = NULL;
	struct stat st;
	if (!mirror)
		return 0;
	if (asprintf(&path, "%s/%s", mirror, name) < 0)
		return kd_err(err, -ENOMEM, "out of memory");
	/* O_NONBLOCK: a FIFO in the mirror must not hang the fetch; it is refused below. */
	_cleanup_close_ int in = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (in < 0)
		return errno == ENOENT ? 0 : kd_err_errno(err, negative_errno(), "open %s", path);
	if (fstat(in, &st) < 0)
		return kd_err_errno(err, negative_errno(), "stat %s", path);
	if (!S_ISREG(st.st_mode))
		return kd_err(err, -EINVAL, "mirror file %s is not a regular file", path);
	if ((uint64_t)st.st_size > KD_CACHE_MAX_SOURCE)
		return kd_err(err, -EFBIG, "mirror file %s: larger than %llu bytes", path,
			      (unsigned long long)KD_CACHE_MAX_SOURCE);
	if (ftruncate(fd, 0) < 0 || lseek(fd, 0, SEEK_SET) < 0)
		return kd_err_errno(err, negative_errno(), "truncate");
	for (off_t off = 0; off < st.st_size;) {
		ssize_t n = copy_file_range(in, NULL, fd, NULL, (size_t)(st.st_size - off), 0);
		if (n < 0 && (errno == EXDEV || errno == ENOSYS || errno == EINVAL)) {
			char buf[65536];
			n = pread(in, buf, sizeof(buf), off);
			if (n > 0 && write(fd, buf, (size_t)n) != n)
				n = -1;
		}
		if (n < 0)
			return kd_err_errno(err, negative_errno(), "copy %s", path);
		if (n == 0)
			return kd_err(err, -EIO, "copy %s: file shrank", path);
		off += n;
	}
	kd_debug("%s: from the mirror %s", name, path);
	return 1;
}

/* Continue a partial download left by an earlier run: ask for the rest with Range and append
 * it. Returns 1 when the file may now be complete, 0 when the caller should start over. */
static int resume_partial(const char *url, int fd, uint64_t have, const kd_fetch_opts *o)
{
	char range[64];
	snprintf(range, sizeof(range), "Range: bytes=%llu-", (unsigned long long)have);
	const char *hdrs[] = {range, NULL};
	kd_http_request req = {
		.method = "GET", .url = url, .headers = hdrs, .max_response = KD_CACHE_MAX_RESUME};
	kd_http_opts ho = {.retries = o ? o->retries : 0};
	_cleanup_http_response_ kd_http_response resp = {0};
	kd_error e = {0};

	if (kd_http_do(&req, &ho, &resp, &e) < 0) {
		kd_debug("resume %s: %s", url, kd_err_msg(&e));
		return 0;
	}
	if (resp.status == 416) /* nothing left to send: maybe it was complete */
		return 1;
	if (resp.status != 206)
		return 0;
	if (pwrite(fd, resp.body, resp.body_len, (off_t)have) != (ssize_t)resp.body_len)
		return 0;
	kd_debug("resumed %s at %llu bytes", url, (unsigned long long)have);
	return 1;
}

static int fetch_url(kd_cache *c, const kd_source *s, const kd_fetch_opts *o, const char *final,
		     kd_error *err)
{
	_cleanup_free_ char *part = NULL;
	_cleanup_close_ int fd = -1;
	struct stat st;
	char got[65];
	int r;

	if (asprintf(&part, "%s/partial/%s", c->dir, s->sha256) < 0)
		return kd_err(err, -ENOMEM, "out of memory");
	fd = open(part, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0)
		return kd_err_errno(err, negative_errno(), "open %s", part);
	if (flock(fd, LOCK_EX) < 0 || fstat(fd, &st) < 0)
		return kd_err_errno(err, negative_errno(), "lock %s", part);
	/* Someone else may have finished it while we waited for the lock. */
	if (access(final, F_OK) == 0)
		return 1;

	bool done = false;
	r = copy_from_mirror(o ? o->mirror : NULL, s->name, fd, err);
	if (r < 0)
		return kd_err_wrap(err, r, "fetch %s", s->name);
	if (r > 0) { /* verified like a download; a mismatch falls through to the network */
		uint8_t d[KD_SHA256_LEN];
		if (lseek(fd, 0, SEEK_SET) == 0 && kd_sha256_fd(fd, d, NULL, NULL) == 0) {
			kd_hex(d, sizeof(d), got);
			done = strcmp(got, s->sha256) == 0;
		}
		if (!done && (ftruncate(fd, 0) < 0 || fstat(fd, &st) < 0))
			return kd_err_errno(err, negative_errno(), "truncate %s", part);
	}
	if (!done && st.st_size > 0 && resume_partial(s->url, fd, (uint64_t)st.st_size, o) == 1) {
		uint8_t d[KD_SHA256_LEN];
		if (lseek(fd, 0, SEEK_SET) == 0 && kd_sha256_fd(fd, d, NULL, NULL) == 0) {
			kd_hex(d, sizeof(d), got);
			done = strcmp(got, s->sha256) == 0;
		}
	}
	if (!done) {
		kd_http_opts ho = {.max_bytes = KD_CACHE_MAX_SOURCE,
				   .progress = o && o->progress,
				   .retries = o ? o->retries : 0};
		r = kd_http_download_fd(s->url, fd, &ho, NULL, err);
		if (r < 0) {
			/* Keep what arrived: the next run resumes it, and it is hashed before use.
			 */
			return kd_err_wrap(err, r, "fetch %s", s->name);
		}
		uint8_t d[KD_SHA256_LEN];
		uint64_t size;
		if (lseek(fd, 0, SEEK_SET) < 0 || (r = kd_sha256_fd(fd, d, &size, err)) < 0) {
			unlink(part);
			return kd_err_wrap(err, r < 0 ? r : -EIO, "fetch %s", s->name);
		}
		kd_hex(d, sizeof(d), got);
		if (strcmp(got, s->sha256) != 0) {
			unlink(part);
			return kd_err(
				err, -EBADMSG,
				"fetch %s: %s: sha256 is %s (%llu bytes), the recipe pins %s; "
				"the download was discarded",
				s->name, s->url, got, (unsigned long long)size, s->sha256);
		}
	}
	if (fsync(fd) < 0 || fchmod(fd, 0444) < 0 || rename(part, final) < 0)
		return kd_err_errno(err, negative_errno(), "store %s", final);
	return 0;
}

static int fetch_git(kd_cache *c, const kd_source *s, const kd_fetch_opts *o, char got[65],
		     kd_error *err)
{
	_cleanup_free_ char *part = NULL, *url = NULL, *final = NULL, *idx = NULL;
	_cleanup_close_ int fd = -1;
	char tree[KD_SHA1_HEX_LEN + 1];
	uint8_t d[KD_SHA256_LEN];
	int r;

	if (asprintf(&part, "%s/partial/git-%s", c->dir, s->tree) < 0 || index_path(c, s, &idx) < 0)
		return kd_err(err, -ENOMEM, "out of memory");
	if (s->tag)
		r = asprintf(&url, "%s/archive/refs/tags/%s.tar.gz", s->git, s->tag);
	else
		r = asprintf(&url, "%s/archive/%s.tar.gz", s->git, s->commit);
	if (r < 0)
		return kd_err(err, -ENOMEM, "out of memory");
	fd = open(part, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0)
		return kd_err_errno(err, negative_errno(), "open %s", part);
	if (flock(fd, LOCK_EX) < 0)
		return kd_err_errno(err, negative_errno(), "lock %s", part);
	r = copy_from_mirror(o ? o->mirror : NULL, s->name, fd, err);
	if (r < 0)
		return kd_err_wrap(err, r, "fetch %s", s->name);
	const char *from = r > 0 ? "the mirror" : url;
	if (r == 0) {
		kd_http_opts ho = {.max_bytes = KD_CACHE_MAX_SOURCE,
				   .progress = o && o->progress,
				   .retries = o ? o->retries : 0};
		if (ftruncate(fd, 0) < 0)
			return kd_err_errno(err, negative_errno(), "truncate %s", part);
		r = kd_http_download_fd(url, fd, &ho, NULL, err);
		if (r < 0) {
			unlink(part);
			return kd_err_wrap(err, r, "fetch %s", s->name);
		}
	}
	r = kd_git_tree_id(fd, 1, tree, err);
	if (r < 0) {
		unlink(part);
		return kd_err_wrap(err, r, "fetch %s from %s", s->name, from);
	}
	if (strcmp(tree, s->tree) != 0) {
		unlink(part);
		return kd_err(err, -EBADMSG,
			      "fetch %s from %s: its git tree is %s, the recipe pins %s; the "
			      "archive was discarded",
			      s->name, from, tree, s->tree);
	}
	if (lseek(fd, 0, SEEK_SET) < 0 || (r = kd_sha256_fd(fd, d, NULL, err)) < 0) {
		unlink(part);
		return kd_err_wrap(err, r < 0 ? r : -EIO, "fetch %s", s->name);
	}
	kd_hex(d, sizeof(d), got);
	if (asprintf(&final, "%s/sources/sha256/%s", c->dir, got) < 0)
		return kd_err(err, -ENOMEM, "out of memory");
	if (fsync(fd) < 0 || fchmod(fd, 0444) < 0 || rename(part, final) < 0)
		return kd_err_errno(err, negative_errno(), "store %s", final);
	return write_index(idx, got, err);
}

static int run_apt_download(const char *dir, const char *spec, kd_error *err)
{
	pid_t pid = fork();
	if (pid < 0)
		return kd_err_errno(err, negative_errno(), "fork");
	if (pid == 0) {
		if (chdir(dir) < 0)
			_exit(127);
		/* apt's own output goes to stderr: stdout belongs to our caller's result lines. */
		dup2(STDERR_FILENO, STDOUT_FILENO);
		execlp("apt-get", "apt-get", "-q", "-o", "APT::Sandbox::User=root", "download",
		       spec, (char *)NULL);
		_exit(127);
	}
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return kd_err_errno(err, negative_errno(), "waitpid");
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return kd_err(
			err, -ENOENT,
			"apt-get download %s failed (status %d): is that version still on the "
			"mirror? Update artifacts/versions.yaml (apt-cache policy shows what "
			"it has)",
			spec, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	return 0;
}

static int fetch_deb(kd_cache *c, const kd_source *s, char got[65], kd_error *err)
{
	_cleanup_free_ char *tmp = NULL, *spec = NULL, *file = NULL, *final = NULL, *idx = NULL;
	int r;

	if (asprintf(&tmp, "%s/partial/deb.XXXXXX", c->dir) < 0 ||
	    asprintf(&spec, "%s=%s", s->deb, s->version) < 0)
		return kd_err(err, -ENOMEM, "out of memory");
	if (!mkdtemp(tmp))
		return kd_err_errno(err, negative_errno(), "mkdtemp %s", tmp);
	r = run_apt_download(tmp, spec, err);
	if (r >= 0) {
		/* apt names it <package>_<version with ':' as %3a>_<arch>.deb: take the only file.
		 */
		_cleanup_(closedirp) DIR *d = opendir(tmp);
		struct dirent *de;
		while (d && (de = readdir(d)))
			if (de->d_name[0] != '.' && !file &&
			    asprintf(&file, "%s/%s", tmp, de->d_name) < 0)
				file = NULL;
		if (!file)
			r = kd_err(err, -ENOENT, "apt-get download %s left no file", spec);
	}
	if (r >= 0 && (r = hash_path(file, got, NULL, err)) >= 0) {
		if (asprintf(&final, "%s/sources/sha256/%s", c->dir, got) < 0 ||
		    deb_index_path(c, s, &idx) < 0)
			r = kd_err(err, -ENOMEM, "out of memory");
		else if (chmod(file, 0444) < 0 || rename(file, final) < 0)
			r = kd_err_errno(err, negative_errno(), "store %s", final);
		else
			r = write_index(idx, got, err);
	}
	if (file)
		unlink(file);
	rmdir(tmp);
	return r < 0 ? kd_err_wrap(err, r, "fetch %s", s->name) : 0;
}

int kd_cache_fetch(kd_cache *c, const kd_source *s, const kd_fetch_opts *o, char **ret_path,
		   char ret_sha256[65], kd_error *err)
{
	_cleanup_free_ char *final = NULL;
	char d[65];
	int r, cached = 0;

	r = kd_cache_source_digest(c, s, d, err);
	if (r < 0)
		return r;
	if (r > 0) {
		if (asprintf(&final, "%s/sources/sha256/%s", c->dir, d) < 0)
			return kd_err(err, -ENOMEM, "out of memory");
		cached = access(final, F_OK) == 0;
	}
	if (!cached) {
		if (s->kind == KD_SOURCE_URL)
			r = fetch_url(c, s, o, final, err);
		else if (s->kind == KD_SOURCE_GIT)
			r = fetch_git(c, s, o, d, err);
		else
			r = fetch_deb(c, s, d, err);
		if (r < 0)
			return r;
		cached = r; /* fetch_url: 1 when another process stored it meanwhile */
		free(final);
		if (asprintf(&final, "%s/sources/sha256/%s", c->dir, d) < 0)
			return kd_err(err, -ENOMEM, "out of memory");
	}
	*ret_path = TAKE_PTR(final);
	memcpy(ret_sha256, d, 65);
	return cached;
}
