/* The engine's runtime-config step: the glue between a transaction (install, rollback) and
 * runtime.c, and the restart that follows a commit. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "engine.h"
#include "fsroot.h"
#include "log.h"
#include "restart.h"
#include "state.h"
#include "strv.h"

bool kd_root_is_host(int rootfd)
{
	struct stat a, b;
	return fstat(rootfd, &a) == 0 && stat("/", &b) == 0 && a.st_dev == b.st_dev &&
	       a.st_ino == b.st_ino;
}

bool kd_engine_restart_needed(const char *restart, const kd_flavour *f, bool host)
{
	const char *r = restart ? restart : host ? "systemd" : "none";
	return f->id != KD_FLAVOUR_NONE && f->unit[0] && strcmp(r, "none") != 0;
}

/* Add the directories that another install's state (created, state or shared dirs) names. */
static int others_add(kd_ctx *c, const char *dir, char ***others)
{
	if (strcmp(dir, c->state_dir) == 0)
		return 0;
	kd_state o;
	kd_error e2 = {0};
	int r = kd_state_load(c->rootfd, dir, &o, &e2);
	if (r < 0) {
		if (r != -ENOENT)
			kd_debug("shared directories: %s: ignored", e2.msg);
		return 0;
	}
	char **lists[] = {o.created_dirs, o.state_dirs, o.shared_dirs};
	r = 0;
	for (size_t l = 0; l < ELEMENTSOF(lists) && r == 0; l++)
		for (char **d = lists[l]; d && *d && r == 0; d++)
			if (!kd_strv_find(*others, *d) && kd_strv_push(others, *d) < 0)
				r = -ENOMEM;
	kd_state_done(&o);
	return r;
}

/* The directories other kata-deploy installs on this root created. Their states are found in
 * the default state directory and its subdirectories (var/lib/kata-deploy/<suffix>: the
 * agent's layout), and in the subdirectories of our own state directory; an install with a
 * state directory elsewhere is not seen. The host lock is held: no other run changes them now. */
int kd_engine_others_dirs(kd_ctx *c, char ***ret)
{
	const char *bases[] = {KD_DEFAULT_STATE_DIR + 1, c->state_dir};
	int r = 0;

	for (size_t b = 0; b < ELEMENTSOF(bases) && r == 0; b++) {
		if (b > 0 && strcmp(bases[b], bases[0]) == 0)
			break;
		if ((r = others_add(c, bases[b], ret)) < 0)
			break;
		_cleanup_close_ int fd = kd_openat(c->rootfd, bases[b], O_RDONLY | O_DIRECTORY, 0,
						   KD_NOFOLLOW, NULL);
		DIR *d = fd >= 0 ? fdopendir(TAKE_FD(fd)) : NULL;
		struct dirent *de;
		while (d && r == 0 && (de = readdir(d))) {
			char sub[KD_PATH_MAX];
			if (de->d_type != DT_DIR || de->d_name[0] == '.')
				continue;
			snprintf(sub, sizeof(sub), "%s/%s", bases[b], de->d_name);
			r = others_add(c, sub, ret);
		}
		if (d)
			closedir(d);
	}
	return r;
}

/* Record the ancestors of path that another install created (others) and we did not. */
static int share_ancestors(kd_state *s, char *const *others, char *const *created, const char *path)
{
	char buf[KD_PATH_MAX];

	snprintf(buf, sizeof(buf), "%s", path);
	for (char *slash = strrchr(buf, '/'); slash; slash = strrchr(buf, '/')) {
		*slash = '\0';
		if (!kd_strv_find(others, buf) || kd_strv_find(created, buf) ||
		    kd_strv_find(s->state_dirs, buf) || kd_strv_find(s->shared_dirs, buf))
			continue;
		if (kd_strv_push(&s->shared_dirs, buf) < 0)
			return -ENOMEM;
		kd_debug("'/%s' was created by another kata-deploy install: shared", buf);
	}
	return 0;
}

/* Directories another install created above the files this one keeps (its drop-in in a conf.d
 * the first install created, the common parent of two state directories): recorded as shared,
 * so the install that is uninstalled last removes them when they are empty, whichever of the
 * two created them. A directory that was there before any kata-deploy install is never ours. */
static int share_dirs(kd_ctx *c, kd_state *s, char *const *created)
{
	_cleanup_strv_ char **others = calloc(1, sizeof(char *));
	int r;

	if (!others)
		return -ENOMEM;
	if ((r = kd_engine_others_dirs(c, &others)) < 0)
		return r;
	if (!others[0])
		return 0;
	for (char **f = s->config_files; f && *f; f++)
		if ((r = share_ancestors(s, others, created, *f)) < 0)
			return r;
	if ((r = share_ancestors(s, others, created, c->prefix)) < 0)
		return r;
	return share_ancestors(s, others, created, c->state_dir);
}

int kd_engine_config_step(kd_ctx *c, kd_journal *j, kd_state *s, const char *id, char *const *shims,
			  const kd_runtime_opts *o, char ***created_dirs, bool *ret_changed,
			  kd_error *err)
{
	char tree[KD_PATH_MAX];
	snprintf(tree, sizeof(tree), "%s/%s/%s/opt/kata", c->prefix, KD_VERSIONS_DIR, id);
	struct stat st;
	if (kd_lstat(c->rootfd, tree, &st, NULL) < 0) /* payload trees rooted at the prefix */
		snprintf(tree, sizeof(tree), "%s/%s/%s", c->prefix, KD_VERSIONS_DIR, id);
	_cleanup_close_ int treefd =
		kd_openat(c->rootfd, tree, O_RDONLY | O_DIRECTORY, 0, KD_NOFOLLOW, err);
	if (treefd < 0)
		return treefd;
	bool host = kd_root_is_host(c->rootfd);
	kd_runtime_input in = {.rootfd = c->rootfd,
			       .prefix = c->prefix,
			       .treefd = treefd,
			       .shims = shims,
			       .root_is_host = host,
			       .prev = s};
	kd_config_plan p = {0};
	int r = kd_restart_validate(o->restart, err);
	if (r >= 0)
		r = kd_runtime_plan(&in, o, &p, err);
	if (r < 0)
		return kd_err_wrap(err, r, "runtime config");
	bool changed = kd_runtime_changed(&p);
	if ((r = kd_runtime_validate(c->rootfd, &p, o, err)) < 0 ||
	    (r = kd_runtime_apply(j, c->rootfd, &p, created_dirs, err)) < 0 ||
	    (r = kd_runtime_update_state(&p, s)) < 0) {
		kd_config_plan_done(&p);
		return kd_err_wrap(err, r, "runtime config");
	}
	if (changed && kd_engine_restart_needed(o->restart, &p.flavour, host))
		s->restart_pending = true;
	kd_config_plan_done(&p);
	if ((r = share_dirs(c, s, *created_dirs)) < 0)
		return kd_err(err, r, "shared directories: out of memory");
	*ret_changed = changed;
	return 0;
}

int kd_engine_prune_dirs(kd_ctx *c, kd_state *s, kd_error *err)
{
	char top[KD_PATH_MAX];
	int n = snprintf(top, sizeof(top), "%s/%s/", c->prefix, KD_KATA_RUNTIMES_DIR);
	bool pruned = false;
	for (size_t i = kd_strv_length(s->created_dirs); i-- > 0;) {
		const char *d = s->created_dirs[i];
		size_t dl = strlen(d);
		bool used = false;
		if (strncmp(d, top, (size_t)n) != 0)
			continue;
		for (char **f = s->config_files; f && *f && !used; f++)
			used = !strncmp(*f, d, dl) && (*f)[dl] == '/';
		if (used)
			continue;
		kd_error e2 = {0};
		int r = kd_rmdir(c->rootfd, d, &e2);
		if (r == -ENOTEMPTY) {
			kd_debug("keeping '/%s': it holds files that are not ours", d);
			continue;
		}
		if (r < 0 && r != -ENOENT)
			return kd_err(err, r, "%s", e2.msg);
		kd_debug("removed '/%s': no handler uses it any more", d);
		free(s->created_dirs[i]);
		memmove(&s->created_dirs[i], &s->created_dirs[i + 1],
			(kd_strv_length(s->created_dirs) - i) * sizeof(char *));
		pruned = true;
	}
	return pruned ? kd_state_save(c->rootfd, c->state_dir, s, err) : 0;
}

int kd_engine_after_commit(kd_ctx *c, kd_state *s, const char *restart, kd_error *err)
{
	int r = kd_engine_prune_dirs(c, s, err);
	if (r < 0)
		return r;
	if (!s->restart_pending)
		return 0;
	r = kd_restart_from_state(c->rootfd, s, restart, kd_root_is_host(c->rootfd), err);
	if (r < 0)
		return r;
	s->restart_pending = false;
	return kd_state_save(c->rootfd, c->state_dir, s, err);
}
