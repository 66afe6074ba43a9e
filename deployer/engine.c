/* Engine context: path options, the host lock, recovery of interrupted runs. */
#include "engine.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fsroot.h"
#include "journal.h"
#include "log.h"
#include "state.h"

static int normalize(const char *in, char *out, size_t size, const char *what, kd_error *err)
{
	while (*in == '/')
		in++;
	size_t n = strlen(in);
	while (n > 0 && in[n - 1] == '/')
		n--;
	if (n == 0 || n >= size)
		return kd_err(err, -EINVAL, "%s: must be a directory below the root", what);
	memcpy(out, in, n);
	out[n] = '\0';
	if (!kd_path_is_safe(out))
		return kd_err(err, -EINVAL,
			      "%s '/%s': '.', '..' and empty components are not allowed", what,
			      out);
	return 0;
}

/* The node-wide lock: <root>/run/kata-deploy/lock, one file for every run on this host (every
 * MULTI_INSTALL_SUFFIX, the node agent and the host CLI), since they share the state directory's
 * parent, /opt and the runtime's config. Only its owner (root) can open it: the directory is
 * ours and not writable by others, the file 0600, both opened without following symlinks, so no
 * other local user can hold it and make an install wait or fail. flock is released when the
 * process dies, so a killed run never leaves a stale lock. A root without a run/ directory is
 * not a host (a test or image tree): its directory itself is locked. */
static int open_lock_file(kd_ctx *c, kd_error *err)
{
	struct stat st;
	if (fstatat(c->rootfd, "run", &st, AT_SYMLINK_NOFOLLOW) < 0 && errno == ENOENT) {
		c->lockfd = openat(c->rootfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (c->lockfd < 0)
			return kd_err_errno(err, negative_errno(), "open root for locking");
		return 0;
	}
	_cleanup_close_ int run =
		kd_openat(c->rootfd, "run", O_RDONLY | O_DIRECTORY, 0, KD_NOFOLLOW, err);
	if (run < 0)
		return kd_err_wrap(err, run, "lock: /run");
	if (mkdirat(run, KD_LOCK_DIR_NAME, 0700) < 0 && errno != EEXIST)
		return kd_err_errno(err, negative_errno(), "lock: create /run/%s",
				    KD_LOCK_DIR_NAME);
	_cleanup_close_ int dir =
		openat(run, KD_LOCK_DIR_NAME, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dir < 0 || fstat(dir, &st) < 0)
		return kd_err_errno(err, negative_errno(), "lock: open /run/%s", KD_LOCK_DIR_NAME);
	if (st.st_uid != geteuid() || (st.st_mode & 022))
		return kd_err(err, -EPERM,
			      "lock: /run/%s is owned by uid %u with mode %04o; it must be ours "
			      "(uid %u) and writable by nobody else: remove it",
			      KD_LOCK_DIR_NAME, (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777),
			      (unsigned)geteuid());
	for (int tries = 0;; tries++) {
		int fd = openat(dir, KD_LOCK_FILE_NAME,
				O_RDWR | O_CREAT | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC, 0600);
		if (fd < 0)
			return kd_err_errno(err, negative_errno(), "lock: open /run/%s/%s",
					    KD_LOCK_DIR_NAME, KD_LOCK_FILE_NAME);
		if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid() &&
		    !(st.st_mode & 077) && st.st_nlink == 1) {
			c->lockfd = fd;
			c->lockdir = TAKE_FD(dir);
			return 0;
		}
		/* Not a file only we could have opened (made by another tool, or hard-linked):
		 * anyone may hold a descriptor of it. Replace it. */
		close(fd);
		if (tries >= 3 || unlinkat(dir, KD_LOCK_FILE_NAME, 0) < 0)
			return kd_err(err, -EPERM,
				      "lock: /run/%s/%s is not a 0600 file of uid %u and cannot be "
				      "replaced",
				      KD_LOCK_DIR_NAME, KD_LOCK_FILE_NAME, (unsigned)geteuid());
	}
}

/* Whether the locked file is still the one at the path: a run that replaced a bad lock file
 * may have unlinked the one we waited on. */
static bool lock_is_current(kd_ctx *c)
{
	struct stat a, b;
	if (c->lockdir < 0)
		return true;
	return fstat(c->lockfd, &a) == 0 &&
	       fstatat(c->lockdir, KD_LOCK_FILE_NAME, &b, AT_SYMLINK_NOFOLLOW) == 0 &&
	       a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

static void lock_close(kd_ctx *c)
{
	if (c->lockfd >= 0)
		close(c->lockfd);
	if (c->lockdir >= 0)
		close(c->lockdir);
	c->lockfd = c->lockdir = -1;
}

static int lock_root(kd_ctx *c, int timeout_s, int how, kd_error *err)
{
	int r;
	if (timeout_s == 0)
		timeout_s = KD_DEFAULT_LOCK_TIMEOUT_S;
	struct timespec start, now;
	clock_gettime(CLOCK_MONOTONIC, &start);
	bool told = false;
	for (;;) {
		if (c->lockfd < 0 && (r = open_lock_file(c, err)) < 0)
			return r;
		if (flock(c->lockfd, how | LOCK_NB) == 0) {
			if (lock_is_current(c))
				return 0;
			lock_close(c);
			continue;
		}
		if (errno != EWOULDBLOCK)
			return kd_err_errno(err, negative_errno(), "lock");
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (timeout_s < 0 || now.tv_sec - start.tv_sec >= timeout_s)
			return kd_err(
				err, -EBUSY,
				"another kata-deploy run holds the lock on this host (waited %d s)",
				timeout_s < 0 ? 0 : timeout_s);
		if (!told) {
			kd_info("waiting for another kata-deploy run to finish (the host lock)");
			told = true;
		}
		usleep(100 * 1000);
	}
}

/* a is dir or inside it (both normalized, relative to the root). */
static bool path_within(const char *a, const char *dir)
{
	size_t n = strlen(dir);
	return strncmp(a, dir, n) == 0 && (a[n] == '/' || a[n] == '\0');
}

static int ctx_open(kd_ctx *c, int rootfd, const kd_engine_opts *o, int how, kd_error *err)
{
	int r;
	memset(c, 0, sizeof(*c));
	c->rootfd = rootfd;
	c->lockfd = c->lockdir = -1;
	r = normalize(o && o->prefix ? o->prefix : KD_DEFAULT_PREFIX, c->prefix, sizeof(c->prefix),
		      "prefix", err);
	if (r < 0)
		return r;
	r = normalize(o && o->state_dir ? o->state_dir : KD_DEFAULT_STATE_DIR, c->state_dir,
		      sizeof(c->state_dir), "state directory", err);
	if (r < 0)
		return r;
	if (path_within(c->state_dir, c->prefix))
		return kd_err(err, -EINVAL,
			      "the state directory /%s must not be inside the prefix /%s",
			      c->state_dir, c->prefix);
	/* The journal empties journal.d at commit and uninstall removes the state dir: a prefix
	 * in there would be deleted under the installed runtime. */
	if (path_within(c->prefix, c->state_dir))
		return kd_err(err, -EINVAL,
			      "the prefix /%s must not be inside the state directory /%s",
			      c->prefix, c->state_dir);
	/* Kernel and runtime file systems: nothing installed there survives or belongs there. */
	static const char *const virt[] = {"proc", "sys", "dev", "run"};
	for (size_t i = 0; i < sizeof(virt) / sizeof(virt[0]); i++) {
		if (path_within(c->prefix, virt[i]))
			return kd_err(err, -EINVAL, "the prefix /%s is under /%s: refused",
				      c->prefix, virt[i]);
		if (path_within(c->state_dir, virt[i]))
			return kd_err(err, -EINVAL,
				      "the state directory /%s is under /%s: refused (it must "
				      "survive a reboot)",
				      c->state_dir, virt[i]);
	}
	return lock_root(c, o ? o->lock_timeout_s : 0, how, err);
}

int kd_ctx_open(kd_ctx *c, int rootfd, const kd_engine_opts *o, kd_error *err)
{
	return ctx_open(c, rootfd, o, LOCK_EX, err);
}

int kd_ctx_open_shared(kd_ctx *c, int rootfd, const kd_engine_opts *o, kd_error *err)
{
	return ctx_open(c, rootfd, o, LOCK_SH, err);
}

void kd_ctx_close(kd_ctx *c)
{
	lock_close(c);
}

/* Debris (KD_TMP_PREFIX names) can only appear where we write: the ancestors of the state dir,
 * the state dir, the prefix and its versions dir. */
static int remove_all_debris(kd_ctx *c, kd_error *err)
{
	char path[KD_PATH_MAX];
	int r = kd_remove_debris(c->rootfd, ".", err);
	const char *dirs[] = {c->state_dir, c->prefix};
	for (size_t i = 0; r >= 0 && i < ELEMENTSOF(dirs); i++) {
		snprintf(path, sizeof(path), "%s", dirs[i]);
		for (char *s = path; r >= 0; s++) {
			if (*s == '/' || *s == '\0') {
				char saved = *s;
				*s = '\0';
				r = kd_remove_debris(c->rootfd, path, err);
				*s = saved;
				if (!saved)
					break;
			}
		}
	}
	snprintf(path, sizeof(path), "%s/%s", c->prefix, KD_VERSIONS_DIR);
	if (r >= 0)
		r = kd_remove_debris(c->rootfd, path, err);
	return r < 0 ? kd_err_wrap(err, r, "remove temporary files of an interrupted run") : 0;
}

int kd_ctx_recover(kd_ctx *c, kd_error *err)
{
	int r = kd_journal_recover(c->rootfd, c->state_dir, err);
	if (r < 0)
		return r;
	if (r > 0)
		kd_debug("undid an interrupted run recorded in /%s/journal", c->state_dir);
	r = remove_all_debris(c, err);
	if (r < 0)
		return r;

	kd_state s;
	kd_error e2 = {0};
	r = kd_state_load(c->rootfd, c->state_dir, &s, &e2);
	if (r == -ENOENT)
		return 0;
	if (r < 0)
		return kd_err(err, r, "%s", e2.msg);
	bool uninstalling = s.phase && strcmp(s.phase, "uninstalling") == 0;
	if (uninstalling) {
		kd_state_done(&s);
		kd_debug("finishing an interrupted uninstall");
		return kd_engine_uninstall_locked(c, NULL, NULL, NULL, err);
	}
	/* A run killed after its commit may have left empty directories to remove. Only the
	 * state's list of them needs the disk: on a full one, the list keeps names that are gone,
	 * which every later prune and uninstall takes as already removed. */
	kd_error e3 = {0};
	r = kd_engine_prune_dirs(c, &s, &e3);
	kd_state_done(&s);
	if (r == -ENOSPC) {
		kd_info("recover: %s (the disk is full): the state is updated by the next run",
			e3.msg);
		return 0;
	}
	return r < 0 ? kd_err(err, r, "%s", e3.msg) : 0;
}

int kd_engine_recover(int rootfd, const kd_engine_opts *o, kd_error *err)
{
	kd_ctx c;
	int r = kd_ctx_open(&c, rootfd, o, err);
	if (r >= 0)
		r = kd_ctx_recover(&c, err);
	kd_ctx_close(&c);
	return r < 0 ? kd_err_wrap(err, r, "recover") : 0;
}
