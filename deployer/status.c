/* kd_engine_status: what is installed, as JSON (the CLI prints text or this JSON). Takes no
 * lock and changes nothing, so it works while another run is in progress. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "engine.h"
#include "fsroot.h"
#include "journal.h"
#include "json.h"
#include "state.h"

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
	}
	snprintf(path, sizeof(path), "%s/%s", c.state_dir, KD_JOURNAL_NAME);
	bool pending = kd_lstat(rootfd, path, &st, NULL) == 0;
	json_object_object_add(
		out, "journal",
		json_object_new_string(pending ? "interrupted run pending recovery" : "clean"));
	if (r == 0)
		kd_state_done(&s);
	*ret = out;
	return 0;
}
