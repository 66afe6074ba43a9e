/* kd_engine_rollback: switch "current" back to the previous version, journaled like install. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "engine.h"
#include "fsroot.h"
#include "journal.h"
#include "log.h"
#include "runtime.h"
#include "state.h"
#include "strv.h"

static int do_rollback(kd_ctx *c, const char *restart, kd_error *err)
{
	kd_state s;
	kd_journal j;
	char path[KD_PATH_MAX], target[KD_PATH_MAX];
	struct stat st;
	int r = kd_state_load(c->rootfd, c->state_dir, &s, err);
	if (r == -ENOENT)
		return kd_err(err, r, "kata-deploy is not installed on this root");
	if (r < 0)
		return r;
	if (!s.has_previous) {
		r = kd_err(err, -ENOENT, "there is no previous version to roll back to");
		goto out;
	}
	snprintf(path, sizeof(path), "%s/%s/%s", s.prefix, KD_VERSIONS_DIR, s.previous.id);
	if (kd_lstat(c->rootfd, path, &st, NULL) < 0 || !S_ISDIR(st.st_mode)) {
		r = kd_err(err, -ENOENT, "previous version directory '/%s' is missing", path);
		goto out;
	}
	if ((r = kd_journal_begin(&j, c->rootfd, c->state_dir, "rollback", err)) < 0)
		goto out;
	snprintf(path, sizeof(path), "%s/%s", s.prefix, KD_CURRENT_LINK);
	snprintf(target, sizeof(target), "%s/%s", KD_VERSIONS_DIR, s.previous.id);
	if ((r = kd_journal_symlink(&j, path, err)) < 0 ||
	    (r = kd_symlink_atomic(c->rootfd, path, target, err)) < 0)
		goto abort;
	/* Top-level links that the previous version needs and the current one did not have:
	 * the links are the union over time, so nothing to add unless a link was removed. */
	kd_version tmp = s.current;
	s.current = s.previous;
	s.previous = tmp;
	free(s.source.path);
	memset(&s.source, 0, sizeof(s.source)); /* the source now describes the other version */
	/* The previous version's shims may differ: its runtime config is re-applied. */
	if (s.runtime_json) {
		kd_runtime_opts ro;
		_cleanup_strv_ char **store = NULL;
		bool changed = false;
		if ((r = kd_runtime_opts_from_json(s.runtime_json, &ro, &store, err)) < 0)
			goto abort;
		if (restart)
			ro.restart = restart;
		/* With shims left out of the install (skip_missing_shims), the options may name
		 * shims that this version lacks and the other had: absent here too. */
		_cleanup_free_ char *absent = NULL;
		if (ro.absent_shims) {
			size_t len = strlen(ro.absent_shims) + 1;
			for (char **x = tmp.shims; x && *x; x++)
				len += strlen(*x) + 1;
			if (!(absent = malloc(len))) {
				r = -ENOMEM;
				goto abort;
			}
			strcpy(absent, ro.absent_shims);
			for (char **x = tmp.shims; x && *x; x++)
				if (!kd_strv_find(s.current.shims, *x))
					strcat(strcat(absent, ","), *x);
			ro.absent_shims = absent;
		}
		if ((r = kd_engine_config_step(c, &j, &s, s.current.id, s.current.shims, &ro,
					       &s.created_dirs, &changed, err)) < 0)
			goto abort;
	}
	snprintf(path, sizeof(path), "%s/%s", c->state_dir, KD_STATE_FILE);
	if ((r = kd_journal_file(&j, path, err)) < 0 ||
	    (r = kd_state_save(c->rootfd, c->state_dir, &s, err)) < 0)
		goto abort;
	kd_fault_point("rollback-state-saved");
	if ((r = kd_journal_commit(&j, err)) < 0)
		goto out;
	r = kd_engine_after_commit(c, &s, restart, err);
	goto out;
abort:;
	kd_error e2 = {0};
	if (kd_journal_abort(&j, &e2) < 0)
		kd_err_wrap(err, r, "(undo failed too: %s)", e2.msg);
out:
	kd_state_done(&s);
	return r;
}

int kd_engine_rollback(int rootfd, const kd_engine_opts *o, kd_error *err)
{
	kd_ctx c;
	int r = kd_ctx_open(&c, rootfd, o, err);
	if (r >= 0)
		r = kd_ctx_recover(&c, err);
	if (r >= 0)
		r = do_rollback(&c, o->restart, err);
	kd_ctx_close(&c);
	return r < 0 ? kd_err_wrap(err, r, "rollback") : 0;
}
