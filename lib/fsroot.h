/* File operations on a host reached through a root directory fd. Every path is relative to the
 * root ("etc/containerd/config.toml"; a leading '/' is ignored) and resolution never leaves it:
 * symlinks in the path are refused (KD_NOFOLLOW) or resolved inside the root (openat2
 * RESOLVE_IN_ROOT). Writes are atomic: temp file in the same directory, fsync, rename, fsync dir.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "err.h"

#define KD_PATH_MAX 4096

/* Open DIR as a root; the fd is O_DIRECTORY|O_RDONLY|O_CLOEXEC. */
int kd_root_open(const char *dir, kd_error *err);

/* Path resolution modes for kd_openat. */
enum {
	KD_NOFOLLOW = 0, /* any symlink in the path (including the last component) fails: ELOOP */
	KD_IN_ROOT = 1,	 /* symlinks are followed but resolved as if rootfd were "/" */
};

/* Open a path under rootfd with open(2) flags; O_CLOEXEC is always added. */
int kd_openat(int rootfd, const char *path, int flags, mode_t mode, int resolve, kd_error *err);

/* Open the parent directory of path (no symlinks) and return its fd; *ret_base points into
 * path at the last component. Fails with -ENOENT if a parent is missing. */
int kd_open_parent(int rootfd, const char *path, const char **ret_base, kd_error *err);

/* Directory fds kept open by path, for walks over many entries of one tree (an extraction, a
 * verification): each directory is opened once, relative to its cached parent, instead of every
 * path being walked from the root. Resolution is the same as kd_open_parent's (no symlinks, no
 * '.', '..' or empty components). The fds belong to the cache. */
#define KD_DIRCACHE_SLOTS 32
typedef struct kd_dircache {
	int rootfd;
	bool create; /* missing directories are created, mode 0755 */
	unsigned long tick;
	struct {
		char *path;
		size_t len;
		int fd;
		unsigned long used;
	} slot[KD_DIRCACHE_SLOTS];
} kd_dircache;
void kd_dircache_init(kd_dircache *dc, int rootfd, bool create);
/* The fd of the directory path itself ("" is the root). */
int kd_dircache_dir(kd_dircache *dc, const char *path, kd_error *err);
/* The fd of path's parent directory; *ret_base points into path at the last component. */
int kd_dircache_parent(kd_dircache *dc, const char *path, const char **ret_base, kd_error *err);
void kd_dircache_done(kd_dircache *dc);

/* mkdir -p under the root, refusing symlinks; newly created directories get mode.
 * If created is not NULL, it is called for each directory this call created (outermost first). */
typedef int (*kd_mkdir_cb)(const char *path, void *userdata);
int kd_mkdir_p(int rootfd, const char *path, mode_t mode, kd_mkdir_cb created, void *userdata,
	       kd_error *err);

/* Atomically replace (or create) a regular file with data. The parent must exist. */
/* write(2) until all of len is written (EINTR retried): 0, or -errno. */
int kd_write_all(int fd, const void *data, size_t len);
int kd_write_atomic(int rootfd, const char *path, const void *data, size_t len, mode_t mode,
		    kd_error *err);

/* Streaming atomic write: begin gives an fd to a temp file next to path; commit fsyncs (unless
 * no_sync), renames over path and fsyncs the dir; abort unlinks the temp file. */
typedef struct kd_atomic_file {
	int dirfd;
	int fd;
	char tmpname[64];
	char base[256];
} kd_atomic_file;
int kd_atomic_begin(int rootfd, const char *path, mode_t mode, kd_atomic_file *af, kd_error *err);
int kd_atomic_commit(kd_atomic_file *af, bool sync, kd_error *err);
void kd_atomic_abort(kd_atomic_file *af);

/* Atomically make path a symlink to target (symlink to a temp name, rename over path). */
int kd_symlink_atomic(int rootfd, const char *path, const char *target, kd_error *err);

/* "regular file", "FIFO", "directory", ... for error messages. */
const char *kd_mode_type_name(mode_t mode);
/* Read a whole regular file (no symlinks) of at most max bytes into a NUL-terminated buffer.
 * Anything else (a FIFO, a device) is refused before it is read, without blocking. */
int kd_read_file(int rootfd, const char *path, size_t max, char **ret_data, size_t *ret_len,
		 kd_error *err);

/* lstat under the root. Returns -ENOENT when absent. */
int kd_lstat(int rootfd, const char *path, struct stat *ret_st, kd_error *err);

/* readlink under the root (the link itself, not followed). */
int kd_readlink(int rootfd, const char *path, char *buf, size_t size, kd_error *err);

/* Remove a file, symlink or whole tree (like rm -rf, never following symlinks). Absent is ok. */
int kd_remove_tree(int rootfd, const char *path, kd_error *err);

/* Remove an empty directory; absent or not empty is reported as -ENOENT / -ENOTEMPTY. */
int kd_rmdir(int rootfd, const char *path, kd_error *err);

/* Temporary names we create start with this prefix; a run killed mid-write may leave one. */
#define KD_TMP_PREFIX ".#kd."

/* Remove every KD_TMP_PREFIX entry (file or tree) directly in dir. An absent dir is fine. */
int kd_remove_debris(int rootfd, const char *dir, kd_error *err);

/* Remove a tree so that a kill at any moment leaves either the whole tree or only debris:
 * rename it to a KD_TMP_PREFIX sibling first, then remove that. */
int kd_remove_tree_atomic(int rootfd, const char *path, kd_error *err);

/* True if the path (relative, no leading '/') is clean: no "..", no "." components, no empty
 * components, no NUL, at most KD_PATH_MAX bytes. */
bool kd_path_is_safe(const char *path);
