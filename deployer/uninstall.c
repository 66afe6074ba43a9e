/* kd_engine_uninstall: roll forward, step by idempotent step, driven by state.json whose phase
 * says "uninstalling" from the first step on; a killed uninstall is finished by the next run. */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine.h"
#include "fsroot.h"
#include "journal.h"
#include "log.h"
#include "restart.h"
#include "runtime.h"
#include "state.h"
#include "strv.h"

/* Remove the state dir and the ancestors we created for it, as far as they hold nothing else. */
static int remove_state_dirs(kd_ctx *c, char **chain, kd_error *err)
{
	size_t n = kd_strv_length(chain);
	if (n == 0) {
		/* The state dir existed before us: remove only what we put in it. */
		const char *ours[] = {KD_STATE_FILE, KD_JOURNAL_NAME, KD_JOURNAL_BACKUP_DIR};
		for (size_t i = 0; i < ELEMENTSOF(ours); i++) {
			char path[KD_PATH_MAX];
			snprintf(path, sizeof(path), "%s/%s", c->state_dir, ours[i]);
			int r = kd_remove_tree(c->rootfd, path, err);
			if (r < 0)
				return r;
		}
		return 0;
	}
	/* Walk down from the top: a created ancestor that holds anything but the next link of
	 * the chain was shared since; keep it and start removing one level below. */
	size_t top = 0;
	for (size_t i = 0; i + 1 < n; i++) {
		_cleanup_close_ int dfd = kd_openat(c->rootfd, chain[i], O_RDONLY | O_DIRECTORY, 0,
						    KD_NOFOLLOW, NULL);
		if (dfd < 0)
			break;
		DIR *d = fdopendir(TAKE_FD(dfd));
		if (!d)
			break;
		const char *next = strrchr(chain[i + 1], '/');
		next = next ? next + 1 : chain[i + 1];
		bool foreign = false;
		struct dirent *de;
		while ((de = readdir(d)))
			if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") &&
			    strcmp(de->d_name, next))
				foreign = true;
		closedir(d);
		if (foreign) {
			kd_debug("keeping '/%s': it holds files that are not ours", chain[i]);
			top = i + 1;
		}
	}
	return kd_remove_tree_atomic(c->rootfd, chain[top], err);
}

/* Another install's state names dir (created or shared): it is kept for that install, not left
 * behind. others is read once, on first use. */
static bool shared_with_other(kd_ctx *c, char ***others, const char *dir)
{
	if (!*others &&
	    (!(*others = calloc(1, sizeof(char *))) || kd_engine_others_dirs(c, others) < 0))
		return false;
	return kd_strv_find(*others, dir);
}

static int deeper_first(const void *a, const void *b)
{
	size_t la = strlen(*(char *const *)a), lb = strlen(*(char *const *)b);
	return la < lb ? 1 : la > lb ? -1 : 0;
}

/* Directories another install created and ours used too (state.h): the last install to go
 * removes them, when empty, after its state directory (one may be that directory's parent).
 * Deepest first, so a shared parent goes after its shared child. The state is gone by now: a
 * run killed here leaves them (empty) behind. */
static void remove_shared_dirs(kd_ctx *c, char **dirs)
{
	size_t n = kd_strv_length(dirs);

	if (n == 0)
		return;
	qsort(dirs, n, sizeof(*dirs), deeper_first);
	for (size_t i = 0; i < n; i++) {
		kd_error e2 = {0};
		int r = kd_rmdir(c->rootfd, dirs[i], &e2);
		if (r == 0)
			kd_debug("removed '/%s': the last install that used it is gone", dirs[i]);
		else if (r == -ENOTEMPTY || r == -ENOENT)
			kd_debug("keeping '/%s': %s", dirs[i],
				 r == -ENOENT ? "already gone"
					      : "another install or the host uses it");
		else
			kd_warn("keeping '/%s': %s", dirs[i], e2.msg);
	}
}

/* The runtime configs first, three-way (runtime.c), then the restart that makes the runtime
 * drop our handlers (kata-containers#11072). restart_pending survives a kill in between. */
static int revert_configs(kd_ctx *c, kd_state *s, const char *restart, unsigned *kept,
			  kd_error *err)
{
	kd_config_plan p = {0};
	bool host = kd_root_is_host(c->rootfd);
	int r = kd_runtime_plan_revert(c->rootfd, s, host, &p, err);
	if (r < 0)
		return kd_err_wrap(err, r, "revert runtime config");
	*kept += p.inexact;
	if (kd_runtime_changed(&p) && s->runtime_json && !s->restart_pending) {
		s->restart_pending = true;
		if ((r = kd_state_save(c->rootfd, c->state_dir, s, err)) < 0)
			goto out;
	}
	if ((r = kd_runtime_apply_direct(c->rootfd, &p, err)) < 0)
		goto out;
	if (s->restart_pending) {
		if ((r = kd_restart_from_state(c->rootfd, s, restart, host, err)) < 0)
			goto out;
		s->restart_pending = false;
	}
	for (size_t i = 0; i < s->n_config; i++)
		kd_config_file_done(&s->config[i]);
	s->n_config = 0;
	r = kd_state_save(c->rootfd, c->state_dir, s, err);
	kd_fault_point("uninstall-config");
out:
	kd_config_plan_done(&p);
	return r;
}

int kd_engine_uninstall_locked(kd_ctx *c, const char *restart, bool *ret_changed,
			       unsigned *ret_kept, kd_error *err)
{
	kd_state s;
	_cleanup_strv_ char **others = NULL;
	unsigned kept = 0;
	char path[KD_PATH_MAX];
	int r = kd_state_load(c->rootfd, c->state_dir, &s, err);
	if (r == -ENOENT) {
		kd_err_clear(err);
		if (ret_changed)
			*ret_changed = false;
		return 0;
	}
	if (r < 0)
		return r;
	if (!s.phase || strcmp(s.phase, "uninstalling") != 0) {
		free(s.phase);
		s.phase = strdup("uninstalling");
		if ((r = kd_state_save(c->rootfd, c->state_dir, &s, err)) < 0)
			goto out;
		kd_fault_point("uninstall-begin");
	}
	if ((s.n_config || s.restart_pending) &&
	    (r = revert_configs(c, &s, restart, &kept, err)) < 0)
		goto out;
	/* Links first, so nothing points into a half-removed tree. */
	for (size_t i = kd_strv_length(s.links); i-- > 0;) {
		struct stat st;
		if (kd_lstat(c->rootfd, s.links[i], &st, NULL) == 0 && !S_ISLNK(st.st_mode)) {
			kd_warn("'/%s' is no longer our link; leaving it", s.links[i]);
			kept++;
			continue;
		}
		if ((r = kd_remove_tree(c->rootfd, s.links[i], err)) < 0)
			goto out;
		kd_fault_point("uninstall-link");
	}
	snprintf(path, sizeof(path), "%s/%s", s.prefix, KD_VERSIONS_DIR);
	if ((r = kd_remove_tree_atomic(c->rootfd, path, err)) < 0)
		goto out;
	kd_fault_point("uninstall-versions");
	for (size_t i = kd_strv_length(s.created_dirs); i-- > 0;) {
		kd_error e2 = {0};
		r = kd_rmdir(c->rootfd, s.created_dirs[i], &e2);
		if (r == -ENOTEMPTY && shared_with_other(c, &others, s.created_dirs[i])) {
			kd_info("keeping '/%s': another kata-deploy install uses it (the last one "
				"to go removes it)",
				s.created_dirs[i]);
		} else if (r == -ENOTEMPTY) {
			kd_warn("keeping '/%s': it holds files that are not ours",
				s.created_dirs[i]);
			kept++;
		} else if (r < 0 && r != -ENOENT) {
			r = kd_err(err, r, "%s", e2.msg);
			goto out;
		}
		kd_fault_point("uninstall-dir");
	}
	r = remove_state_dirs(c, s.state_dirs, err);
	if (r < 0)
		goto out;
	kd_fault_point("uninstall-state");
	remove_shared_dirs(c, s.shared_dirs);
	if (ret_changed)
		*ret_changed = true;
	if (ret_kept)
		*ret_kept += kept;
	r = 0;
out:
	kd_state_done(&s);
	return r;
}

int kd_engine_uninstall(int rootfd, const kd_engine_opts *o, bool *ret_changed, unsigned *ret_kept,
			kd_error *err)
{
	kd_ctx c;
	bool changed = false;
	unsigned kept = 0;
	int r = kd_ctx_open(&c, rootfd, o, err);
	if (r >= 0) {
		/* Recovery undoes an interrupted install or rollback (and may itself finish an
		 * interrupted uninstall: then the state is already gone). */
		r = kd_journal_recover(c.rootfd, c.state_dir, err);
		if (r > 0)
			changed = true;
	}
	if (r >= 0) {
		bool ch = false;
		r = kd_engine_uninstall_locked(&c, o->restart, &ch, &kept, err);
		changed = changed || ch;
	}
	if (r >= 0)
		r = kd_ctx_recover(&c, err); /* removes leftover temporary files */
	kd_ctx_close(&c);
	if (r < 0)
		return kd_err_wrap(err, r, "uninstall");
	if (ret_changed)
		*ret_changed = changed;
	if (ret_kept)
		*ret_kept = kept;
	return 0;
}
