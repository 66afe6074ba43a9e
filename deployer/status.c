/* kd_engine_status: what is installed, as JSON (the CLI prints text or this JSON). Takes no
 * lock and changes nothing, so it works while another run is in progress. "done" is false while
 * the node still needs something: a restart that failed or was interrupted (the runtime has not
 * loaded the handlers written), an interrupted run waiting for recovery, an unfinished
 * uninstall. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine.h"
#include "fsroot.h"
#include "containerd.h"
#include "journal.h"
#include "json.h"
#include "state.h"
#include "strv.h"

static struct json_object *version_json(const kd_version *v)
{
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "id", json_object_new_string(v->id));
	json_object_object_add(o, "version", json_object_new_string(v->version ? v->version : ""));
	json_object_object_add(o, "payload_sha256", json_object_new_string(v->digest));
	json_object_object_add(o, "shims", kd_json_from_strv(v->shims));
	json_object_object_add(o, "components", kd_json_from_strv(v->components));
	if (v->installed_at)
		json_object_object_add(o, "installed_at", json_object_new_string(v->installed_at));
	return o;
}

/* The handler names of the runtime tables we added ("...runtimes.<handler>..."). */
static struct json_object *handlers_json(const kd_state *s)
{
	struct json_object *a = json_object_new_array();
	_cleanup_strv_ char **seen = NULL;
	for (size_t i = 0; i < s->n_config; i++)
		for (size_t t = 0; s->config[i].tables && s->config[i].tables[t]; t++) {
			char buf[KD_PATH_MAX];
			const char *parts[16];
			int n = kd_toml_key_split(s->config[i].tables[t], buf, sizeof(buf), parts,
						  16);
			for (int k = 0; k + 1 < n; k++) {
				if (strcmp(parts[k], "runtimes") ||
				    kd_strv_find(seen, parts[k + 1]))
					continue;
				if (kd_strv_push(&seen, parts[k + 1]) < 0)
					return a;
				json_object_array_add(a, json_object_new_string(parts[k + 1]));
			}
		}
	return a;
}

static struct json_object *runtime_json(int rootfd, const kd_state *s)
{
	struct json_object *j = s->runtime_json ? json_tokener_parse(s->runtime_json) : NULL, *v;
	if (!j)
		return NULL;
	struct json_object *o = json_object_new_object();
	static const char *const keys[] = {"flavour", "unit", "restart"};
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (json_object_object_get_ex(j, keys[i], &v))
			json_object_object_add(o, keys[i], json_object_get(v));
	if (!json_object_object_get_ex(o, "restart", NULL)) /* the default, as restart.c has it */
		json_object_object_add(
			o, "restart",
			json_object_new_string(kd_root_is_host(rootfd) ? "systemd" : "none"));
	json_object_put(j);
	return o;
}

/* Whether another run holds the host lock for writing (an install, upgrade, rollback or
 * uninstall under way): a shared try-lock that fails. The lock file is opened read-only and never
 * created, so status still writes nothing; the try-lock is released at once. */
static bool run_in_progress(int rootfd)
{
	struct stat st;
	int fd;
	if (fstatat(rootfd, "run", &st, AT_SYMLINK_NOFOLLOW) < 0 && errno == ENOENT)
		fd = openat(rootfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	else
		fd = kd_openat(rootfd, "run/" KD_LOCK_DIR_NAME "/" KD_LOCK_FILE_NAME,
			       O_RDONLY | O_NONBLOCK | O_NOCTTY, 0, KD_NOFOLLOW, NULL);
	if (fd < 0)
		return false;
	bool held = flock(fd, LOCK_SH | LOCK_NB) < 0 && errno == EWOULDBLOCK;
	close(fd);
	return held;
}

int kd_engine_status(int rootfd, const kd_engine_opts *o, struct json_object **ret, kd_error *err)
{
	kd_ctx c = {.rootfd = rootfd, .lockfd = -1};
	kd_state s;
	char path[KD_PATH_MAX];
	struct stat st;
	const char *prefix = o && o->prefix ? o->prefix : KD_DEFAULT_PREFIX;
	const char *sd = o && o->state_dir ? o->state_dir : KD_DEFAULT_STATE_DIR;
	snprintf(c.prefix, sizeof(c.prefix), "%s", prefix + strspn(prefix, "/"));
	snprintf(c.state_dir, sizeof(c.state_dir), "%s", sd + strspn(sd, "/"));

	struct json_object *out = json_object_new_object();
	int r = kd_state_load(rootfd, c.state_dir, &s, err);
	if (r < 0 && r != -ENOENT) {
		json_object_put(out);
		return kd_err_wrap(err, r, "status");
	}
	kd_err_clear(err);
	bool installed = r == 0 && s.has_current;
	json_object_object_add(out, "installed", json_object_new_boolean(installed));
	json_object_object_add(out, "state_dir", json_object_new_string(c.state_dir));
	if (r == 0) {
		json_object_object_add(out, "prefix", json_object_new_string(s.prefix));
		json_object_object_add(out, "phase", json_object_new_string(s.phase));
		json_object_object_add(out, "current",
				       s.has_current ? version_json(&s.current) : NULL);
		json_object_object_add(out, "previous",
				       s.has_previous ? version_json(&s.previous) : NULL);
		json_object_object_add(out, "links", kd_json_from_strv(s.links));
		json_object_object_add(out, "config_files", kd_json_from_strv(s.config_files));
		json_object_object_add(out, "handlers", handlers_json(&s));
		json_object_object_add(out, "runtime", runtime_json(rootfd, &s));
		json_object_object_add(out, "restart_pending",
				       json_object_new_boolean(s.restart_pending));
	}
	snprintf(path, sizeof(path), "%s/%s", c.state_dir, KD_JOURNAL_NAME);
	bool pending = kd_lstat(rootfd, path, &st, NULL) == 0, busy = run_in_progress(rootfd);
	/* A journal while another run holds the lock is that run's, not an interrupted one. */
	json_object_object_add(out, "journal",
			       json_object_new_string(pending && busy ? "run in progress"
						      : pending ? "interrupted run pending recovery"
								: "clean"));
	json_object_object_add(out, "in_progress", json_object_new_boolean(busy));
	bool done = !pending && !busy &&
		    (r != 0 || (!s.restart_pending && (!s.phase || !strcmp(s.phase, "installed"))));
	json_object_object_add(out, "done", json_object_new_boolean(done));
	if (r == 0)
		kd_state_done(&s);
	*ret = out;
	return 0;
}
