/* Engine context: path options, the host lock, recovery of interrupted runs. */
#include "engine.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
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

/* flock on the root directory itself: it creates nothing on the host, and it is released when
 * the process dies, so a killed run never leaves a stale lock. */
static int lock_root(kd_ctx *c, int timeout_s, int how, kd_error *err)
{
	c->lockfd = openat(c->rootfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (c->lockfd < 0)
		return kd_err_errno(err, negative_errno(), "open root for locking");
	if (timeout_s == 0)
		timeout_s = KD_DEFAULT_LOCK_TIMEOUT_S;
	struct timespec start, now;
	clock_gettime(CLOCK_MONOTONIC, &start);
	bool told = false;
	for (;;) {
		if (flock(c->lockfd, how | LOCK_NB) == 0)
			return 0;
		if (errno != EWOULDBLOCK)
			return kd_err_errno(err, negative_errno(), "lock root");
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (timeout_s < 0 || now.tv_sec - start.tv_sec >= timeout_s)
			return kd_err(
				err, -EBUSY,
				"another kata-deploy run holds the lock on this root (waited %d s)",
				timeout_s < 0 ? 0 : timeout_s);
		if (!told) {
			kd_debug("waiting for another kata-deploy run to finish");
			told = true;
		}
		usleep(100 * 1000);
	}
}

static int ctx_open(kd_ctx *c, int rootfd, const kd_engine_opts *o, int how, kd_error *err)
{
	int r;
	memset(c, 0, sizeof(*c));
	c->rootfd = rootfd;
	c->lockfd = -1;
	r = normalize(o && o->prefix ? o->prefix : KD_DEFAULT_PREFIX, c->prefix, sizeof(c->prefix),
		      "prefix", err);
	if (r < 0)
		return r;
	r = normalize(o && o->state_dir ? o->state_dir : KD_DEFAULT_STATE_DIR, c->state_dir,
		      sizeof(c->state_dir), "state directory", err);
	if (r < 0)
		return r;
	size_t pl = strlen(c->prefix);
	if (strncmp(c->state_dir, c->prefix, pl) == 0 &&
	    (c->state_dir[pl] == '/' || c->state_dir[pl] == '\0'))
		return kd_err(err, -EINVAL, "the state directory must not be inside the prefix");
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
	if (c->lockfd >= 0)
		close(c->lockfd);
	c->lockfd = -1;
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
		return kd_engine_uninstall_locked(c, NULL, NULL, err);
	}
	/* A run killed after its commit may have left empty directories to remove. */
	r = kd_engine_prune_dirs(c, &s, err);
	kd_state_done(&s);
	return r;
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
