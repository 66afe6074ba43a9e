/* The engine's runtime-config step: the glue between a transaction (install, rollback) and
 * runtime.c, and the restart that follows a commit. */
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
