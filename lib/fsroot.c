#include "fsroot.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "log.h"

/* Split-and-walk resolution: each component is opened with O_NOFOLLOW relative to the previous
 * one, so a symlink anywhere in the path fails with ELOOP/ENOTDIR instead of being followed. */

static const char *skip_slashes(const char *p)
{
	while (*p == '/')
		p++;
	return p;
}

bool kd_path_is_safe(const char *path)
{
	size_t len = strnlen(path, KD_PATH_MAX + 1);
	const char *p = path, *c;

	if (len == 0 || len > KD_PATH_MAX || path[0] == '/')
		return false;
	while (*p) {
		c = strchrnul(p, '/');
		size_t n = (size_t)(c - p);
		if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
			return false;
		if (n > 255)
			return false;
		p = *c ? c + 1 : c;
		if (*c && !*p)
			return false; /* trailing slash */
	}
	return true;
}

int kd_root_open(const char *dir, kd_error *err)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return kd_err_errno(err, negative_errno(), "open root directory '%s'", dir);
	return fd;
}

/* Walk all but the last component of path starting at rootfd; returns a dir fd (the caller
 * closes it; may be a dup of rootfd) and the last component in *ret_base. */
static int walk_parent(int rootfd, const char *path, const char **ret_base, kd_error *err)
{
	char comp[256];
	const char *p = skip_slashes(path), *c;
	_cleanup_close_ int dfd = fcntl(rootfd, F_DUPFD_CLOEXEC, 3);

	if (dfd < 0)
		return kd_err_errno(err, negative_errno(), "dup root fd");
	if (strnlen(path, KD_PATH_MAX + 1) > KD_PATH_MAX)
		return kd_err(err, -ENAMETOOLONG, "path too long (limit %d bytes)", KD_PATH_MAX);
	for (;;) {
		c = strchr(p, '/');
		if (!c)
			break;
		size_t n = (size_t)(c - p);
		if (n == 0 || (n == 1 && p[0] == '.')) {
			p = c + 1;
			continue;
		}
		if (n >= sizeof(comp))
			return kd_err(err, -ENAMETOOLONG, "'%s': path component too long", path);
		memcpy(comp, p, n);
		comp[n] = '\0';
		if (strcmp(comp, "..") == 0)
			return kd_err(err, -EINVAL, "'%s': '..' is not allowed", path);
		int nfd = openat(dfd, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (nfd < 0) {
			int r = negative_errno();
			if (r == -ENOTDIR || r == -ELOOP)
				return kd_err(err, -ELOOP,
					      "'%s': '%.*s' is a symlink or not a directory", path,
					      (int)(c - skip_slashes(path)), skip_slashes(path));
			return kd_err_errno(err, r, "'%s': open '%.*s'", path,
					    (int)(c - skip_slashes(path)), skip_slashes(path));
		}
		close(dfd);
		dfd = nfd;
		p = skip_slashes(c + 1);
	}
	if (*p == '\0' || strcmp(p, "..") == 0)
		return kd_err(err, -EINVAL, "'%s': not a file path", path);
	*ret_base = p;
	return TAKE_FD(dfd);
}

int kd_open_parent(int rootfd, const char *path, const char **ret_base, kd_error *err)
{
	const char *base;
	int fd = walk_parent(rootfd, path, &base, err);
	if (fd < 0)
		return fd;
	/* O_PATH fds cannot be fsync'ed or used for fdopendir: reopen the directory properly. */
	int dfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int r = negative_errno();
	close(fd);
	if (dfd < 0)
		return kd_err_errno(err, r, "'%s': open parent directory", path);
	*ret_base = base;
	return dfd;
}

int kd_openat(int rootfd, const char *path, int flags, mode_t mode, int resolve, kd_error *err)
{
	if (resolve == KD_IN_ROOT) {
		struct open_how how = {
			.flags = (uint64_t)(flags | O_CLOEXEC),
			.mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0,
			.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
		};
		const char *p = skip_slashes(path);
		int fd = (int)syscall(SYS_openat2, rootfd, *p ? p : ".", &how, sizeof(how));
		if (fd < 0)
			return kd_err_errno(err, negative_errno(), "open '/%s'", p);
		return fd;
	}

	const char *base;
	_cleanup_close_ int dfd = walk_parent(rootfd, path, &base, err);
	if (dfd < 0) {
		/* The root itself ("" or "/") */
		if (*skip_slashes(path) == '\0') {
			kd_err_clear(err);
			int fd = openat(rootfd, ".", flags | O_CLOEXEC, mode);
			return fd < 0 ? kd_err_errno(err, negative_errno(), "open root") : fd;
		}
		return dfd;
	}
	int fd = openat(dfd, base, flags | O_NOFOLLOW | O_CLOEXEC, mode);
	if (fd < 0) {
		int r = negative_errno();
		if (r == -ELOOP)
			return kd_err(err, r, "'%s' is a symlink", path);
		return kd_err_errno(err, r, "open '%s'", path);
	}
	return fd;
}

int kd_lstat(int rootfd, const char *path, struct stat *ret_st, kd_error *err)
{
	const char *base;
	_cleanup_close_ int dfd = walk_parent(rootfd, path, &base, err);
	if (dfd < 0)
		return dfd;
	if (fstatat(dfd, base, ret_st, AT_SYMLINK_NOFOLLOW) < 0) {
		int r = negative_errno();
		if (r == -ENOENT)
			return kd_err(err, r, "'%s' does not exist", path);
		return kd_err_errno(err, r, "stat '%s'", path);
	}
	return 0;
}

int kd_readlink(int rootfd, const char *path, char *buf, size_t size, kd_error *err)
{
	const char *base;
	_cleanup_close_ int dfd = walk_parent(rootfd, path, &base, err);
	if (dfd < 0)
		return dfd;
	ssize_t n = readlinkat(dfd, base, buf, size);
	if (n < 0)
		return kd_err_errno(err, negative_errno(), "readlink '%s'", path);
	if ((size_t)n >= size)
		return kd_err(err, -ENAMETOOLONG, "readlink '%s': target too long", path);
	buf[n] = '\0';
	return (int)n;
}

void kd_dircache_init(kd_dircache *dc, int rootfd, bool create)
{
	memset(dc, 0, sizeof(*dc));
	dc->rootfd = rootfd;
	dc->create = create;
	for (size_t i = 0; i < KD_DIRCACHE_SLOTS; i++)
		dc->slot[i].fd = -1;
}

void kd_dircache_done(kd_dircache *dc)
{
	for (size_t i = 0; i < KD_DIRCACHE_SLOTS; i++) {
		if (dc->slot[i].fd >= 0)
			close(dc->slot[i].fd);
		free(dc->slot[i].path);
		dc->slot[i].fd = -1;
		dc->slot[i].path = NULL;
	}
}

/* The fd of the directory made of the first len bytes of path. */
static int dircache_get(kd_dircache *dc, const char *path, size_t len, kd_error *err)
{
	size_t victim = 0;

	if (len == 0)
		return dc->rootfd;
	for (size_t i = 0; i < KD_DIRCACHE_SLOTS; i++)
		if (dc->slot[i].fd >= 0 && dc->slot[i].len == len &&
		    memcmp(dc->slot[i].path, path, len) == 0) {
			dc->slot[i].used = ++dc->tick;
			return dc->slot[i].fd;
		}
	const char *slash = memrchr(path, '/', len);
	size_t plen = slash ? (size_t)(slash - path) : 0;
	const char *name = slash ? slash + 1 : path;
	size_t nlen = len - (size_t)(name - path);
	char comp[256];
	if (nlen == 0 || (nlen == 1 && name[0] == '.') ||
	    (nlen == 2 && name[0] == '.' && name[1] == '.'))
		return kd_err(err, -EINVAL, "'%.*s': '.', '..' or empty path components", (int)len,
			      path);
	if (nlen >= sizeof(comp))
		return kd_err(err, -ENAMETOOLONG, "'%.*s': path component too long", (int)len,
			      path);
	memcpy(comp, name, nlen);
	comp[nlen] = '\0';
	int pfd = dircache_get(dc, path, plen, err);
	if (pfd < 0)
		return pfd;
	int fd = openat(pfd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT && dc->create) {
		if (mkdirat(pfd, comp, 0755) < 0 && errno != EEXIST)
			return kd_err_errno(err, negative_errno(), "mkdir '%.*s'", (int)len, path);
		fd = openat(pfd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		/* mkdir honours umask; make the mode exact. */
		if (fd >= 0 && fchmod(fd, 0755) < 0) {
			int r = negative_errno();
			close(fd);
			return kd_err_errno(err, r, "chmod '%.*s'", (int)len, path);
		}
	}
	if (fd < 0) {
		int r = negative_errno();
		if (r == -ENOTDIR || r == -ELOOP)
			return kd_err(err, -ELOOP, "'%.*s' is a symlink or not a directory",
				      (int)len, path);
		return kd_err_errno(err, r, "open '%.*s'", (int)len, path);
	}
	char *copy = strndup(path, len);
	if (!copy) {
		close(fd);
		return kd_err(err, -ENOMEM, "out of memory");
	}
	/* The least recently used slot (the parent, just used, is not it). */
	for (size_t i = 1; i < KD_DIRCACHE_SLOTS; i++)
		if (dc->slot[i].used < dc->slot[victim].used)
			victim = i;
	if (dc->slot[victim].fd >= 0)
		close(dc->slot[victim].fd);
	free(dc->slot[victim].path);
	dc->slot[victim].path = copy;
	dc->slot[victim].len = len;
	dc->slot[victim].fd = fd;
	dc->slot[victim].used = ++dc->tick;
	return fd;
}

int kd_dircache_dir(kd_dircache *dc, const char *path, kd_error *err)
{
	size_t len = strnlen(path, KD_PATH_MAX + 1);
	if (len > KD_PATH_MAX)
		return kd_err(err, -ENAMETOOLONG, "path too long (limit %d bytes)", KD_PATH_MAX);
	if (path[0] == '/')
		return kd_err(err, -EINVAL, "'%s': not a relative path", path);
	return dircache_get(dc, path, len, err);
}

int kd_dircache_parent(kd_dircache *dc, const char *path, const char **ret_base, kd_error *err)
{
	size_t len = strnlen(path, KD_PATH_MAX + 1);
	if (len > KD_PATH_MAX)
		return kd_err(err, -ENAMETOOLONG, "path too long (limit %d bytes)", KD_PATH_MAX);
	if (path[0] == '/')
		return kd_err(err, -EINVAL, "'%s': not a relative path", path);
	const char *slash = memrchr(path, '/', len);
	const char *base = slash ? slash + 1 : path;
	if (*base == '\0' || strcmp(base, ".") == 0 || strcmp(base, "..") == 0)
		return kd_err(err, -EINVAL, "'%s': not a file path", path);
	int fd = dircache_get(dc, path, slash ? (size_t)(slash - path) : 0, err);
	if (fd >= 0)
		*ret_base = base;
	return fd;
}

int kd_mkdir_p(int rootfd, const char *path, mode_t mode, kd_mkdir_cb created, void *userdata,
	       kd_error *err)
{
	char buf[KD_PATH_MAX + 1];
	const char *p = skip_slashes(path);
	size_t len = strlen(p);

	if (len > KD_PATH_MAX)
		return kd_err(err, -ENAMETOOLONG, "path too long (limit %d bytes)", KD_PATH_MAX);
	memcpy(buf, p, len + 1);
	while (len > 0 && buf[len - 1] == '/')
		buf[--len] = '\0';
	if (len == 0)
		return 0;

	_cleanup_close_ int dfd = fcntl(rootfd, F_DUPFD_CLOEXEC, 3);
	if (dfd < 0)
		return kd_err_errno(err, negative_errno(), "dup root fd");
	for (char *s = buf, *e;; s = e + 1) {
		e = strchrnul(s, '/');
		bool last = *e == '\0';
		*e = '\0';
		if (*s == '\0' || strcmp(s, ".") == 0) {
			if (last)
				break;
			*e = '/';
			continue;
		}
		if (strcmp(s, "..") == 0)
			return kd_err(err, -EINVAL, "mkdir '%s': '..' is not allowed", path);
		if (mkdirat(dfd, s, mode) == 0) {
			/* mkdir honours umask; make the mode exact. */
			if (fchmodat(dfd, s, mode, 0) < 0)
				return kd_err_errno(err, negative_errno(), "chmod '%s'", buf);
			if (created) {
				int r = created(buf, userdata);
				if (r < 0)
					return kd_err_wrap(err, r, "mkdir '%s'", buf);
			}
		} else if (errno != EEXIST) {
			return kd_err_errno(err, negative_errno(), "mkdir '%s'", buf);
		}
		int nfd = openat(dfd, s, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (nfd < 0)
			return kd_err(err, -ENOTDIR, "mkdir '%s': exists and is not a directory",
				      buf);
		close(dfd);
		dfd = nfd;
		if (last)
			break;
		*e = '/';
	}
	return 0;
}

static void fill_tmpname(char *buf, size_t size, const char *base)
{
	static unsigned counter;
	snprintf(buf, size, KD_TMP_PREFIX "%d.%u.%.24s", getpid(),
		 __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED), base);
}

int kd_atomic_begin(int rootfd, const char *path, mode_t mode, kd_atomic_file *af, kd_error *err)
{
	const char *base;

	af->fd = -1;
	af->dirfd = kd_open_parent(rootfd, path, &base, err);
	if (af->dirfd < 0)
		return af->dirfd;
	if (strlen(base) >= sizeof(af->base)) {
		close(af->dirfd);
		af->dirfd = -1;
		return kd_err(err, -ENAMETOOLONG, "'%s': file name too long", path);
	}
	snprintf(af->base, sizeof(af->base), "%s", base);
	fill_tmpname(af->tmpname, sizeof(af->tmpname), base);
	af->fd = openat(af->dirfd, af->tmpname,
			O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
	if (af->fd < 0) {
		int r = negative_errno();
		close(af->dirfd);
		af->dirfd = -1;
		return kd_err_errno(err, r, "create temporary file for '%s'", path);
	}
	if (fchmod(af->fd, mode) < 0) {
		int r = negative_errno();
		kd_atomic_abort(af);
		return kd_err_errno(err, r, "chmod temporary file for '%s'", path);
	}
	return 0;
}

void kd_atomic_abort(kd_atomic_file *af)
{
	if (af->fd >= 0) {
		close(af->fd);
		af->fd = -1;
	}
	if (af->dirfd >= 0) {
		unlinkat(af->dirfd, af->tmpname, 0);
		close(af->dirfd);
		af->dirfd = -1;
	}
}

int kd_atomic_commit(kd_atomic_file *af, bool sync, kd_error *err)
{
	int r = 0;

	if (sync && fsync(af->fd) < 0)
		r = kd_err_errno(err, negative_errno(), "fsync '%s'", af->base);
	if (r == 0 && close(af->fd) < 0)
		r = kd_err_errno(err, negative_errno(), "close '%s'", af->base);
	af->fd = -1;
	if (r == 0 && renameat(af->dirfd, af->tmpname, af->dirfd, af->base) < 0)
		r = kd_err_errno(err, negative_errno(), "rename into '%s'", af->base);
	if (r == 0 && sync && fsync(af->dirfd) < 0)
		r = kd_err_errno(err, negative_errno(), "fsync directory of '%s'", af->base);
	if (r < 0) {
		kd_atomic_abort(af);
		return r;
	}
	close(af->dirfd);
	af->dirfd = -1;
	return 0;
}

int kd_write_all(int fd, const void *data, size_t len)
{
	const char *p = data;
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

int kd_write_atomic(int rootfd, const char *path, const void *data, size_t len, mode_t mode,
		    kd_error *err)
{
	kd_atomic_file af;
	int r = kd_atomic_begin(rootfd, path, mode, &af, err);
	if (r < 0)
		return r;
	if ((r = kd_write_all(af.fd, data, len)) < 0) {
		r = kd_err_errno(err, r, "write '%s'", path);
		kd_atomic_abort(&af);
		return r;
	}
	r = kd_atomic_commit(&af, true, err);
	return r < 0 ? kd_err_wrap(err, r, "write '%s'", path) : 0;
}

int kd_symlink_atomic(int rootfd, const char *path, const char *target, kd_error *err)
{
	const char *base;
	char tmp[300];
	_cleanup_close_ int dfd = kd_open_parent(rootfd, path, &base, err);

	if (dfd < 0)
		return dfd;
	fill_tmpname(tmp, sizeof(tmp), base);
	if (symlinkat(target, dfd, tmp) < 0)
		return kd_err_errno(err, negative_errno(), "symlink '%s'", path);
	if (renameat(dfd, tmp, dfd, base) < 0) {
		int r = negative_errno();
		unlinkat(dfd, tmp, 0);
		return kd_err_errno(err, r, "rename symlink into '%s'", path);
	}
	if (fsync(dfd) < 0)
		return kd_err_errno(err, negative_errno(), "fsync directory of '%s'", path);
	return 0;
}

const char *kd_mode_type_name(mode_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFREG:
		return "regular file";
	case S_IFDIR:
		return "directory";
	case S_IFLNK:
		return "symlink";
	case S_IFIFO:
		return "FIFO";
	case S_IFSOCK:
		return "socket";
	case S_IFCHR:
		return "character device";
	case S_IFBLK:
		return "block device";
	default:
		return "file of unknown type";
	}
}

int kd_read_file(int rootfd, const char *path, size_t max, char **ret_data, size_t *ret_len,
		 kd_error *err)
{
	/* O_NONBLOCK: opening a FIFO for reading would wait for a writer (forever, holding the
	 * host lock); a regular file ignores the flag. The type is checked before any read. */
	_cleanup_close_ int fd =
		kd_openat(rootfd, path, O_RDONLY | O_NONBLOCK | O_NOCTTY, 0, KD_NOFOLLOW, err);
	struct stat st;

	if (fd < 0)
		return fd;
	if (fstat(fd, &st) < 0)
		return kd_err_errno(err, negative_errno(), "stat '%s'", path);
	if (!S_ISREG(st.st_mode))
		return kd_err(err, -EINVAL, "'%s' is not a regular file (a %s)", path,
			      kd_mode_type_name(st.st_mode));
	if ((uint64_t)st.st_size > max)
		return kd_err(err, -EFBIG, "'%s' is too large (%lld bytes, limit %zu)", path,
			      (long long)st.st_size, max);
	size_t cap = (size_t)st.st_size + 1, len = 0;
	_cleanup_free_ char *buf = malloc(cap);
	if (!buf)
		return kd_err(err, -ENOMEM, "read '%s': out of memory", path);
	for (;;) {
		if (len + 1 >= cap) {
			if (cap > max + 1)
				return kd_err(err, -EFBIG, "'%s' grew beyond %zu bytes", path, max);
			char *nb = realloc(buf, cap * 2);
			if (!nb)
				return kd_err(err, -ENOMEM, "read '%s': out of memory", path);
			buf = nb;
			cap *= 2;
		}
		ssize_t n = read(fd, buf + len, cap - len - 1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return kd_err_errno(err, negative_errno(), "read '%s'", path);
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	if (len > max)
		return kd_err(err, -EFBIG, "'%s' is too large (limit %zu bytes)", path, max);
	buf[len] = '\0';
	*ret_data = TAKE_PTR(buf);
	if (ret_len)
		*ret_len = len;
	return 0;
}

static int remove_children(int dfd, const char *path, int depth, kd_error *err)
{
	if (depth > 256)
		return kd_err(err, -ELOOP, "remove '%s': directory tree too deep", path);
	int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return kd_err_errno(err, negative_errno(), "open '%s'", path);
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return kd_err_errno(err, negative_errno(), "opendir '%s'", path);
	}
	int r = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (de->d_type == DT_DIR || de->d_type == DT_UNKNOWN) {
			int cfd = openat(dirfd(d), de->d_name,
					 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (cfd >= 0) {
				r = remove_children(cfd, path, depth + 1, err);
				close(cfd);
				if (r < 0)
					break;
				if (unlinkat(dirfd(d), de->d_name, AT_REMOVEDIR) < 0) {
					r = kd_err_errno(err, negative_errno(), "rmdir '%s/%s'",
							 path, de->d_name);
					break;
				}
				continue;
			}
		}
		if (unlinkat(dirfd(d), de->d_name, 0) < 0) {
			r = kd_err_errno(err, negative_errno(), "unlink '%s/%s'", path, de->d_name);
			break;
		}
	}
	closedir(d);
	return r;
}

int kd_remove_tree(int rootfd, const char *path, kd_error *err)
{
	const char *base;
	struct stat st;
	_cleanup_close_ int dfd = walk_parent(rootfd, path, &base, err);

	if (dfd < 0) {
		if (dfd == -ENOENT) {
			kd_err_clear(err);
			return 0;
		}
		return dfd;
	}
	if (fstatat(dfd, base, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		if (errno == ENOENT)
			return 0;
		return kd_err_errno(err, negative_errno(), "stat '%s'", path);
	}
	if (S_ISDIR(st.st_mode)) {
		_cleanup_close_ int cfd =
			openat(dfd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (cfd < 0)
			return kd_err_errno(err, negative_errno(), "open '%s'", path);
		int r = remove_children(cfd, path, 0, err);
		if (r < 0)
			return r;
		if (unlinkat(dfd, base, AT_REMOVEDIR) < 0)
			return kd_err_errno(err, negative_errno(), "rmdir '%s'", path);
		return 0;
	}
	if (unlinkat(dfd, base, 0) < 0 && errno != ENOENT)
		return kd_err_errno(err, negative_errno(), "unlink '%s'", path);
	return 0;
}

int kd_rmdir(int rootfd, const char *path, kd_error *err)
{
	const char *base;
	_cleanup_close_ int dfd = walk_parent(rootfd, path, &base, err);

	if (dfd < 0)
		return dfd;
	if (unlinkat(dfd, base, AT_REMOVEDIR) < 0) {
		int r = negative_errno();
		if (r == -EEXIST)
			r = -ENOTEMPTY;
		return kd_err_errno(err, r, "rmdir '%s'", path);
	}
	return 0;
}

int kd_remove_debris(int rootfd, const char *dir, kd_error *err)
{
	_cleanup_close_ int dfd =
		kd_openat(rootfd, dir, O_RDONLY | O_DIRECTORY, 0, KD_NOFOLLOW, NULL);
	if (dfd < 0)
		return 0;
	DIR *d = fdopendir(dfd);
	if (!d)
		return kd_err_errno(err, negative_errno(), "opendir '%s'", dir);
	dfd = -1;
	int r = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (strncmp(de->d_name, KD_TMP_PREFIX, strlen(KD_TMP_PREFIX)) != 0)
			continue;
		char path[KD_PATH_MAX];
		snprintf(path, sizeof(path), "%s/%s", *skip_slashes(dir) ? dir : ".", de->d_name);
		kd_debug("removing debris '%s'", path);
		r = kd_remove_tree(rootfd, path, err);
		if (r < 0)
			break;
	}
	closedir(d);
	return r;
}

int kd_remove_tree_atomic(int rootfd, const char *path, kd_error *err)
{
	const char *base;
	char tmp[300];
	_cleanup_close_ int dfd = kd_open_parent(rootfd, path, &base, err);
	if (dfd < 0)
		return dfd == -ENOENT ? 0 : dfd;
	fill_tmpname(tmp, sizeof(tmp), base);
	if (renameat(dfd, base, dfd, tmp) < 0) {
		if (errno == ENOENT)
			return 0;
		return kd_err_errno(err, negative_errno(), "rename '%s' for removal", path);
	}
	fsync(dfd);
	char full[KD_PATH_MAX];
	size_t dl = (size_t)(base - path);
	snprintf(full, sizeof(full), "%.*s%s", (int)dl, path, tmp);
	return kd_remove_tree(rootfd, full, err);
}
