#include "state.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "fsroot.h"
#include "json.h"
#include "strv.h"

void kd_state_init(kd_state *s)
{
	memset(s, 0, sizeof(*s));
}

void kd_version_done(kd_version *v)
{
	free(v->version);
	kd_strv_free(v->shims);
	kd_strv_free(v->components);
	free(v->installed_at);
	memset(v, 0, sizeof(*v));
}

int kd_version_copy(kd_version *dst, const kd_version *src)
{
	memset(dst, 0, sizeof(*dst));
	memcpy(dst->id, src->id, sizeof(dst->id));
	memcpy(dst->digest, src->digest, sizeof(dst->digest));
	dst->version = src->version ? strdup(src->version) : NULL;
	dst->installed_at = src->installed_at ? strdup(src->installed_at) : NULL;
	dst->shims = kd_strv_copy(src->shims);
	dst->components = kd_strv_copy(src->components);
	if ((src->version && !dst->version) || !dst->shims || !dst->components) {
		kd_version_done(dst);
		return -ENOMEM;
	}
	return 0;
}

void kd_config_file_done(kd_config_file *f)
{
	free(f->path);
	free(f->base);
	kd_strv_free(f->tables);
	kd_strv_free(f->texts);
	kd_strv_free(f->imports);
	memset(f, 0, sizeof(*f));
}

void kd_state_done(kd_state *s)
{
	for (size_t i = 0; i < s->n_config; i++)
		kd_config_file_done(&s->config[i]);
	free(s->config);
	free(s->runtime_json);
	free(s->prefix);
	free(s->phase);
	kd_version_done(&s->current);
	kd_version_done(&s->previous);
	kd_strv_free(s->created_dirs);
	kd_strv_free(s->state_dirs);
	kd_strv_free(s->links);
	kd_strv_free(s->shared_dirs);
	kd_strv_free(s->config_files);
	free(s->source.path);
	memset(s, 0, sizeof(*s));
}

static int get_strv(struct json_object *o, const char *where, const char *key, char ***ret,
		    kd_error *err)
{
	struct json_object *a = NULL;
	char path[128];
	int r = kd_json_get_array(o, where, key, false, &a, err);
	if (r < 0)
		return r;
	char **v = calloc(1, sizeof(char *));
	if (!v)
		return -ENOMEM;
	for (size_t i = 0; a && i < json_object_array_length(a); i++) {
		const char *s;
		kd_json_path_index(path, sizeof(path), key, i);
		r = kd_json_as_string(json_object_array_get_idx(a, i), path, &s, err);
		if (r < 0 || kd_strv_push(&v, s) < 0) {
			kd_strv_free(v);
			return r < 0 ? r : -ENOMEM;
		}
	}
	kd_strv_free(*ret);
	*ret = v;
	return 0;
}

static int dup_string(struct json_object *o, const char *where, const char *key, bool required,
		      char **ret, kd_error *err)
{
	const char *s = NULL;
	int r = kd_json_get_string(o, where, key, required, &s, err);
	if (r <= 0)
		return r;
	free(*ret);
	*ret = strdup(s);
	return *ret ? 0 : -ENOMEM;
}

static int copy_hex(struct json_object *o, const char *where, const char *key, char *out,
		    size_t size, kd_error *err)
{
	const char *s = NULL;
	int r = kd_json_get_string(o, where, key, true, &s, err);
	if (r < 0)
		return r;
	if (strlen(s) >= size)
		return kd_err(err, -EINVAL, "%s.%s: too long", where, key);
	memcpy(out, s, strlen(s) + 1);
	return 0;
}

static int load_version(struct json_object *o, const char *where, kd_version *v, kd_error *err)
{
	int r;
	if ((r = copy_hex(o, where, "id", v->id, sizeof(v->id), err)) < 0 ||
	    (r = copy_hex(o, where, "digest", v->digest, sizeof(v->digest), err)) < 0 ||
	    (r = dup_string(o, where, "version", true, &v->version, err)) < 0 ||
	    (r = dup_string(o, where, "installed_at", false, &v->installed_at, err)) < 0 ||
	    (r = get_strv(o, where, "shims", &v->shims, err)) < 0 ||
	    (r = get_strv(o, where, "components", &v->components, err)) < 0)
		return r;
	return 0;
}

static struct json_object *version_json(const kd_version *v)
{
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "id", json_object_new_string(v->id));
	json_object_object_add(o, "digest", json_object_new_string(v->digest));
	json_object_object_add(o, "version", json_object_new_string(v->version ? v->version : ""));
	if (v->installed_at)
		json_object_object_add(o, "installed_at", json_object_new_string(v->installed_at));
	json_object_object_add(o, "shims", kd_json_from_strv(v->shims));
	json_object_object_add(o, "components", kd_json_from_strv(v->components));
	return o;
}

static int load_config(struct json_object *o, kd_state *s, kd_error *err)
{
	struct json_object *a = NULL, *rt = NULL, *rp = NULL;
	int r = kd_json_get_array(o, "", "config", false, &a, err);
	if (r < 0)
		return r;
	size_t n = a ? json_object_array_length(a) : 0;
	s->config = calloc(n + 1, sizeof(*s->config));
	if (!s->config)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		struct json_object *e = json_object_array_get_idx(a, i), *v;
		kd_config_file *f = &s->config[i];
		char where[64];
		s->n_config = i + 1;
		snprintf(where, sizeof(where), "config[%zu]", i);
		if (!json_object_is_type(e, json_type_object))
			return kd_err(err, -EINVAL, "%s: not an object", where);
		if ((r = dup_string(e, where, "path", true, &f->path, err)) < 0 ||
		    (r = copy_hex(e, where, "result_sha256", f->result_sha, sizeof(f->result_sha),
				  err)) < 0 ||
		    (r = get_strv(e, where, "tables", &f->tables, err)) < 0 ||
		    (r = get_strv(e, where, "texts", &f->texts, err)) < 0)
			return r;
		if (json_object_object_get_ex(e, "base", &v) &&
		    json_object_is_type(v, json_type_string) &&
		    !(f->base = strndup(json_object_get_string(v),
					(size_t)json_object_get_string_len(v))))
			return -ENOMEM;
		/* "imports" holds every entry we added; a state with one entry (and every state
		 * of a kata-deploy before the user drop-in) has only "import". */
		if (json_object_object_get_ex(e, "imports", &v)) {
			if ((r = get_strv(e, where, "imports", &f->imports, err)) < 0)
				return r;
		} else if (json_object_object_get_ex(e, "import", &v) &&
			   json_object_is_type(v, json_type_string)) {
			if (kd_strv_push(&f->imports, json_object_get_string(v)) < 0)
				return -ENOMEM;
		}
		f->created = json_object_get_boolean(json_object_object_get(e, "created"));
		f->whole = json_object_get_boolean(json_object_object_get(e, "whole"));
		f->import_key = json_object_get_boolean(json_object_object_get(e, "import_key"));
		f->mode = (unsigned)json_object_get_int(json_object_object_get(e, "mode")) & 07777;
		if (json_object_object_get_ex(e, "result_len", &v) &&
		    json_object_is_type(v, json_type_int) && json_object_get_int64(v) > 0)
			f->result_len = (uint64_t)json_object_get_int64(v);
		if (kd_strv_length(f->tables) != kd_strv_length(f->texts))
			return kd_err(err, -EINVAL, "%s: tables and texts differ in length", where);
	}
	if (json_object_object_get_ex(o, "runtime", &rt) &&
	    json_object_is_type(rt, json_type_object) &&
	    !(s->runtime_json = strdup(json_object_to_json_string_ext(rt, JSON_C_TO_STRING_PLAIN))))
		return -ENOMEM;
	if (json_object_object_get_ex(o, "restart_pending", &rp))
		s->restart_pending = json_object_get_boolean(rp);
	return 0;
}

int kd_state_load(int rootfd, const char *state_dir, kd_state *s, kd_error *err)
{
	char path[KD_PATH_MAX];
	_cleanup_free_ char *data = NULL;
	_cleanup_json_ struct json_object *o = NULL;
	struct json_object *sub = NULL;
	size_t len;
	int64_t format = 0;
	int r;

	kd_state_init(s);
	snprintf(path, sizeof(path), "%s/%s", state_dir, KD_STATE_FILE);
	r = kd_read_file(rootfd, path, KD_STATE_MAX_SIZE, &data, &len, err);
	if (r < 0)
		return r;
	r = kd_json_parse(data, len, path, &o, err);
	if (r < 0)
		return r;
	if (!o || !json_object_is_type(o, json_type_object))
		return kd_err(err, -EINVAL, "%s: not a JSON object", path);
	if ((r = kd_json_get_int64(o, "", "format", true, &format, err)) < 0)
		goto fail;
	if (format != KD_STATE_FORMAT) {
		r = kd_err(err, -EPROTO, "%s: unsupported format %lld (this kata-deploy reads %d)",
			   path, (long long)format, KD_STATE_FORMAT);
		goto fail;
	}
	if ((r = dup_string(o, "", "prefix", true, &s->prefix, err)) < 0 ||
	    (r = dup_string(o, "", "phase", true, &s->phase, err)) < 0 ||
	    (r = get_strv(o, "", "created_dirs", &s->created_dirs, err)) < 0 ||
	    (r = get_strv(o, "", "state_dirs", &s->state_dirs, err)) < 0 ||
	    (r = get_strv(o, "", "links", &s->links, err)) < 0 ||
	    (r = get_strv(o, "", "shared_dirs", &s->shared_dirs, err)) < 0 ||
	    (r = get_strv(o, "", "config_files", &s->config_files, err)) < 0)
		goto fail;
	if ((r = kd_json_get_object(o, "", "current", false, &sub, err)) < 0)
		goto fail;
	if (r > 0) {
		s->has_current = true;
		if ((r = load_version(sub, "current", &s->current, err)) < 0)
			goto fail;
	}
	sub = NULL;
	if ((r = kd_json_get_object(o, "", "previous", false, &sub, err)) < 0)
		goto fail;
	if (r > 0) {
		s->has_previous = true;
		if ((r = load_version(sub, "previous", &s->previous, err)) < 0)
			goto fail;
	}
	if ((r = load_config(o, s, err)) < 0)
		goto fail;
	sub = NULL;
	if ((r = kd_json_get_object(o, "", "source", false, &sub, err)) < 0)
		goto fail;
	if (r > 0) {
		int64_t v;
		if ((r = dup_string(sub, "source", "path", true, &s->source.path, err)) < 0 ||
		    (r = copy_hex(sub, "source", "digest", s->source.digest,
				  sizeof(s->source.digest), err)) < 0)
			goto fail;
		const char *keys[] = {"dev", "ino", "size", "mtime_ns", "ctime_ns"};
		for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
			if ((r = kd_json_get_int64(sub, "source", keys[i], true, &v, err)) < 0)
				goto fail;
			switch (i) {
			case 0:
				s->source.dev = (uint64_t)v;
				break;
			case 1:
				s->source.ino = (uint64_t)v;
				break;
			case 2:
				s->source.size = (uint64_t)v;
				break;
			case 3:
				s->source.mtime_ns = v;
				break;
			default:
				s->source.ctime_ns = v;
				break;
			}
		}
	}
	return 0;
fail:
	kd_state_done(s);
	return kd_err_wrap(err, r, "read state %s", path);
}

int kd_state_save(int rootfd, const char *state_dir, const kd_state *s, kd_error *err)
{
	char path[KD_PATH_MAX];
	_cleanup_json_ struct json_object *o = json_object_new_object();

	json_object_object_add(o, "format", json_object_new_int(KD_STATE_FORMAT));
	json_object_object_add(o, "prefix", json_object_new_string(s->prefix ? s->prefix : ""));
	json_object_object_add(o, "phase",
			       json_object_new_string(s->phase ? s->phase : "installed"));
	if (s->has_current)
		json_object_object_add(o, "current", version_json(&s->current));
	if (s->has_previous)
		json_object_object_add(o, "previous", version_json(&s->previous));
	json_object_object_add(o, "created_dirs", kd_json_from_strv(s->created_dirs));
	json_object_object_add(o, "state_dirs", kd_json_from_strv(s->state_dirs));
	json_object_object_add(o, "links", kd_json_from_strv(s->links));
	if (s->shared_dirs && s->shared_dirs[0])
		json_object_object_add(o, "shared_dirs", kd_json_from_strv(s->shared_dirs));
	json_object_object_add(o, "config_files", kd_json_from_strv(s->config_files));
	if (s->n_config) {
		struct json_object *a = json_object_new_array();
		for (size_t i = 0; i < s->n_config; i++) {
			const kd_config_file *f = &s->config[i];
			struct json_object *e = json_object_new_object();
			json_object_object_add(e, "path", json_object_new_string(f->path));
			json_object_object_add(e, "created", json_object_new_boolean(f->created));
			json_object_object_add(e, "whole", json_object_new_boolean(f->whole));
			json_object_object_add(e, "mode", json_object_new_int((int)f->mode));
			json_object_object_add(e, "result_sha256",
					       json_object_new_string(f->result_sha));
			if (f->result_len)
				json_object_object_add(
					e, "result_len",
					json_object_new_int64((int64_t)f->result_len));
			if (f->base)
				json_object_object_add(e, "base", json_object_new_string(f->base));
			json_object_object_add(e, "tables", kd_json_from_strv(f->tables));
			json_object_object_add(e, "texts", kd_json_from_strv(f->texts));
			/* "import" alone while there is one entry: what every earlier
			 * kata-deploy reads (a rollback to it still removes our entry). */
			size_t ni = kd_strv_length(f->imports);
			if (ni == 1)
				json_object_object_add(e, "import",
						       json_object_new_string(f->imports[0]));
			else if (ni > 1)
				json_object_object_add(e, "imports", kd_json_from_strv(f->imports));
			json_object_object_add(e, "import_key",
					       json_object_new_boolean(f->import_key));
			json_object_array_add(a, e);
		}
		json_object_object_add(o, "config", a);
	}
	if (s->runtime_json) {
		struct json_object *rt = json_tokener_parse(s->runtime_json);
		if (rt)
			json_object_object_add(o, "runtime", rt);
	}
	if (s->restart_pending)
		json_object_object_add(o, "restart_pending", json_object_new_boolean(true));
	if (s->source.path) {
		struct json_object *src = json_object_new_object();
		json_object_object_add(src, "path", json_object_new_string(s->source.path));
		json_object_object_add(src, "digest", json_object_new_string(s->source.digest));
		json_object_object_add(src, "dev", json_object_new_int64((int64_t)s->source.dev));
		json_object_object_add(src, "ino", json_object_new_int64((int64_t)s->source.ino));
		json_object_object_add(src, "size", json_object_new_int64((int64_t)s->source.size));
		json_object_object_add(src, "mtime_ns", json_object_new_int64(s->source.mtime_ns));
		json_object_object_add(src, "ctime_ns", json_object_new_int64(s->source.ctime_ns));
		json_object_object_add(o, "source", src);
	}
	snprintf(path, sizeof(path), "%s/%s", state_dir, KD_STATE_FILE);
	return kd_json_write_atomic(rootfd, path, o, KD_JSON_PRETTY, 0644, err);
}

bool kd_state_links_intact(int rootfd, const kd_state *s)
{
	char want[KD_PATH_MAX], have[KD_PATH_MAX], cur[KD_PATH_MAX];
	if (!s->has_current || !s->prefix)
		return false;
	snprintf(cur, sizeof(cur), "%s/%s", s->prefix, KD_CURRENT_LINK);
	snprintf(want, sizeof(want), "%s/%s", KD_VERSIONS_DIR, s->current.id);
	if (kd_readlink(rootfd, cur, have, sizeof(have), NULL) < 0 || strcmp(have, want))
		return false;
	size_t pl = strlen(s->prefix);
	for (size_t i = 0; s->links && s->links[i]; i++) {
		const char *l = s->links[i];
		if (!strcmp(l, cur))
			continue;
		if (strncmp(l, s->prefix, pl) || l[pl] != '/')
			return false;
		snprintf(want, sizeof(want), "%s/%s", KD_CURRENT_LINK, l + pl + 1);
		if (kd_readlink(rootfd, l, have, sizeof(have), NULL) < 0 || strcmp(have, want))
			return false;
	}
	return true;
}
