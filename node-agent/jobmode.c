/* Job mode (the chart's deploymentMode: job; docs/AGENT.md "Job mode").
 *
 * node-install / node-cleanup: the per-node Job's one-shot work on the host root. It holds no
 * service-account token and makes no API call; its result (the shims installed, whether the
 * runtime's config changed, or the error) is one JSON line in the container's termination
 * message, which the kubelet puts into the pod's status.
 *
 * dispatch install|cleanup: the Helm hook. It selects the nodes (the per-node Job template's
 * nodeSelector, required node affinity and tolerations, as the scheduler would place a
 * DaemonSet pod; or an explicit list), waits for nodes whose labels arrive late, creates one Job
 * pinned to each node (spec.nodeName), at most `parallelism` at once, reads each Job's result
 * and does the API work for its node (claim, labels, Events, Ready and handler waits, startup
 * taints), and exits 1 when any node failed. */
#include "jobmode.h"

#include <pthread.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "digest.h"
#include "json.h"
#include "k8s.h"
#include "log.h"
#include "strv.h"
#include "yaml.h"

#define RESULT_MAX KD_AGENT_RESULT_MAX
#define JOB_NAME_MAX 63		    /* a Job's name is a label value (job-name) */
#define JOB_READ_ERROR_BUDGET_S 300 /* a Job unreadable that long fails its node */
#define PATH_BUF 768
#define DISPATCH_LABEL "kata-deploy.katacontainers.io/dispatcher"
#define NODE_LABEL "kata-deploy.katacontainers.io/node"

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- the per-node Job ---------------------------------------------------------------- */

static struct json_object *strv_json(char *const *v)
{
	struct json_object *a = json_object_new_array();
	for (char *const *i = v; a && i && *i; i++)
		json_object_array_add(a, json_object_new_string(*i));
	return a;
}

/* Cut s (a JSON string's text) to at most len bytes, at a UTF-8 character boundary, and mark
 * the cut with "...". */
static int shorten(struct json_object *str, size_t len)
{
	const char *old = json_object_get_string(str);
	size_t n = len > 3 ? len - 3 : 0;
	char buf[RESULT_MAX];

	if (n >= sizeof(buf) - 4)
		n = sizeof(buf) - 4;
	while (n > 0 && ((unsigned char)old[n] & 0xC0) == 0x80)
		n--;
	memcpy(buf, old, n);
	memcpy(buf + n, "...", 4);
	return json_object_set_string(str, buf) ? 0 : -ENOMEM;
}

static const char *plain(struct json_object *o)
{
	return json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
							 JSON_C_TO_STRING_NOSLASHESCAPE);
}

/* Fit o into KD_AGENT_RESULT_TEXT_MAX bytes, the error kept longest: first the Events'
 * messages are cut to one length (the longest first, none below RESULT_CUT_FLOOR), then the
 * error, then the last Events are dropped (counted in eventsDropped). A byte cut takes at least
 * one byte off the text (JSON escapes only lengthen), so one cut per step suffices. */
#define RESULT_CUT_FLOOR 160
static int fit_result(struct json_object *o, struct json_object *events, unsigned dropped)
{
	for (int round = 0; round < KD_AGENT_HOST_EVENTS_MAX + 8; round++) {
		struct json_object *msgs[KD_AGENT_HOST_EVENTS_MAX], *e;
		size_t lens[KD_AGENT_HOST_EVENTS_MAX], n = 0, top = 0, len = strlen(plain(o)), over;

		if (len <= KD_AGENT_RESULT_TEXT_MAX)
			return 0;
		over = len - KD_AGENT_RESULT_TEXT_MAX;
		for (size_t i = 0;
		     events && i < json_object_array_length(events) && n < ELEMENTSOF(msgs); i++) {
			struct json_object *m = json_object_object_get(
				json_object_array_get_idx(events, i), "message");
			if (!m)
				continue;
			msgs[n] = m;
			lens[n] = strlen(json_object_get_string(m));
			top = lens[n] > top ? lens[n] : top;
			n++;
		}
		if (top > RESULT_CUT_FLOOR) {
			/* The longest level L whose cuts (each message to L) gain enough. */
			size_t lo = RESULT_CUT_FLOOR, hi = top - 1;
			while (lo < hi) {
				size_t mid = (lo + hi + 1) / 2, gain = 0;
				for (size_t i = 0; i < n; i++)
					gain += lens[i] > mid ? lens[i] - mid : 0;
				if (gain >= over)
					lo = mid;
				else
					hi = mid - 1;
			}
			for (size_t i = 0; i < n; i++)
				if (lens[i] > lo && shorten(msgs[i], lo) < 0)
					return -ENOMEM;
			continue;
		}
		if ((e = json_object_object_get(o, "error")) &&
		    (len = strlen(json_object_get_string(e))) > RESULT_CUT_FLOOR) {
			if (shorten(e, len > over + RESULT_CUT_FLOOR ? len - over
								     : RESULT_CUT_FLOOR) < 0)
				return -ENOMEM;
			continue;
		}
		if (events && json_object_array_length(events) > 0) {
			json_object_array_del_idx(events, json_object_array_length(events) - 1, 1);
			json_object_object_add(o, "eventsDropped",
					       json_object_new_int64(++dropped));
			continue;
		}
		break;
	}
	return -E2BIG;
}

char *kd_agent_job_result_text(bool cleanup, const kd_agent_job_result *res, const char *error)
{
	_cleanup_json_ struct json_object *o = json_object_new_object();
	struct json_object *events = NULL;
	char *text;
	int r;

	if (!o)
		return NULL;
	json_object_object_add(o, "action",
			       json_object_new_string(cleanup ? "cleanup" : "install"));
	if (error) {
		json_object_object_add(o, "error", json_object_new_string(error));
	} else {
		json_object_object_add(o, "runtime", json_object_new_string(res->runtime));
		json_object_object_add(o, "prefix", json_object_new_string(res->prefix));
		json_object_object_add(o, "configChanged",
				       json_object_new_boolean(res->config_changed));
		if (cleanup) {
			json_object_object_add(o, "kept", json_object_new_int64(res->kept));
		} else {
			json_object_object_add(o, "version", json_object_new_string(res->version));
			json_object_object_add(o, "id", json_object_new_string(res->id));
			json_object_object_add(o, "source", json_object_new_string(res->source));
			json_object_object_add(o, "installed", strv_json(res->installed));
			json_object_object_add(o, "skipped", strv_json(res->skipped));
		}
	}
	if (res->n_events) {
		events = json_object_new_array();
		json_object_object_add(o, "events", events);
		for (size_t i = 0; i < res->n_events && i < KD_AGENT_HOST_EVENTS_MAX; i++) {
			const kd_agent_host_event *e = &res->events[i];
			struct json_object *j = json_object_new_object();
			json_object_object_add(
				j, "type",
				json_object_new_string(e->warning ? "Warning" : "Normal"));
			json_object_object_add(j, "reason", json_object_new_string(e->reason));
			json_object_object_add(j, "action", json_object_new_string(e->action));
			json_object_object_add(j, "message", json_object_new_string(e->message));
			json_object_array_add(events, j);
		}
	}
	if (res->events_dropped)
		json_object_object_add(o, "eventsDropped",
				       json_object_new_int64(res->events_dropped));
	r = fit_result(o, events, res->events_dropped);
	if (r == -E2BIG) {
		/* Nothing left to cut: never a truncated line the dispatcher cannot read. */
		_cleanup_json_ struct json_object *e = json_object_new_object();
		char msg[256];
		snprintf(msg, sizeof(msg),
			 "the %s result is longer than the %d bytes of a termination message: see "
			 "the Job's log",
			 cleanup ? "cleanup" : "install", RESULT_MAX);
		json_object_object_add(e, "action",
				       json_object_new_string(cleanup ? "cleanup" : "install"));
		json_object_object_add(e, "error", json_object_new_string(msg));
		return strdup(plain(e));
	}
	if (r < 0)
		return NULL;
	text = strdup(plain(o));
	return text;
}

static void write_result(const char *path, const char *text)
{
	FILE *f;

	kd_info("result: %s", text);
	if (!path || !*path)
		return;
	f = fopen(path, "we");
	if (!f) {
		kd_warn("result not written to %s: %m", path);
		return;
	}
	fprintf(f, "%s\n", text);
	if (fclose(f) != 0)
		kd_warn("result not written to %s: %m", path);
}

int kd_agent_job_node_main(const kd_agent_settings *s, bool cleanup, const char *result_path)
{
	_cleanup_free_ char *text = NULL;
	kd_agent_job_result res;
	kd_error err = {0};
	int r;

	kd_info("job mode: %s on node %s (%s), no API access", cleanup ? "cleanup" : "install",
		s->node_name,
		*s->node_runtime_version ? s->node_runtime_version : "runtime unknown");
	r = kd_agent_job_host(s, cleanup, &res, &err);
	if (r < 0)
		kd_error_log("%s failed: %s", cleanup ? "cleanup" : "install", kd_err_msg(&err));
	text = kd_agent_job_result_text(cleanup, &res, r < 0 ? kd_err_msg(&err) : NULL);
	kd_agent_job_result_done(&res);
	if (!text) {
		kd_error_log("result: out of memory");
		return 1;
	}
	write_result(result_path, text);
	return r < 0 ? 1 : 0;
}

/* ---- the dispatcher ------------------------------------------------------------------ */

typedef struct dispatcher {
	const kd_agent_settings *s;
	const kd_agent_dispatch_opts *o;
	kd_k8s *k;
	char ns[254];
	char run_id[16];      /* in every Job name: a re-run never meets the last run's Jobs */
	char owner_uid[64];   /* the dispatcher's own Job: owner of the per-node Jobs */
	char release[254];    /* its app.kubernetes.io/instance label: the Helm release */
	char owner_text[600]; /* "<namespace>/<its name>", in the nodes' release identity */
	struct json_object *tmpl[2]; /* install, cleanup Job templates */
	/* the current round */
	char **nodes;
	bool cleanup;
	size_t next;
	pthread_mutex_t mu;
	char **failed; /* "node: error" */
	size_t ok;
} dispatcher;

static int k8s_open(const dispatcher *d, kd_k8s **ret, kd_error *err)
{
	kd_k8s_opts ko = {
		.kubeconfig = *d->s->kubeconfig ? d->s->kubeconfig : NULL,
		.sa_dir = d->s->sa_dir,
		.in_cluster = true,
		.retries = d->s->api_retries ? d->s->api_retries : -1,
		.user_agent = "kata-deploy-dispatcher",
	};
	return kd_k8s_new(&ko, ret, err);
}

static struct json_object *pod_spec(struct json_object *job)
{
	struct json_object *spec = NULL, *tmpl = NULL, *ps = NULL;
	if (json_object_object_get_ex(job, "spec", &spec) &&
	    json_object_object_get_ex(spec, "template", &tmpl) &&
	    json_object_object_get_ex(tmpl, "spec", &ps) &&
	    json_object_is_type(ps, json_type_object))
		return ps;
	return NULL;
}

static int load_template(const char *path, struct json_object **ret, kd_error *err)
{
	struct json_object *ps, *c;
	int r = kd_yaml_parse_file(path, ret, err);

	if (r < 0)
		return r;
	ps = pod_spec(*ret);
	if (!ps || !json_object_object_get_ex(ps, "containers", &c) ||
	    !json_object_is_type(c, json_type_array) || json_object_array_length(c) == 0)
		return kd_err(err, -EINVAL, "%s: not a Job with spec.template.spec.containers",
			      path);
	return 0;
}

static const char *str_at(struct json_object *o, const char *key)
{
	struct json_object *v;
	return o && json_object_object_get_ex(o, key, &v) &&
			       json_object_is_type(v, json_type_string)
		       ? json_object_get_string(v)
		       : NULL;
}

static const char *node_name(struct json_object *node)
{
	struct json_object *meta = NULL;
	json_object_object_get_ex(node, "metadata", &meta);
	return str_at(meta, "name");
}

/* Does a toleration of the list tolerate this taint (the scheduler's rule)? */
static bool tolerated(struct json_object *tols, struct json_object *taint)
{
	const char *key = str_at(taint, "key"), *value = str_at(taint, "value"),
		   *effect = str_at(taint, "effect");

	for (size_t i = 0; tols && i < json_object_array_length(tols); i++) {
		struct json_object *t = json_object_array_get_idx(tols, i);
		const char *tk = str_at(t, "key"), *op = str_at(t, "operator"),
			   *tv = str_at(t, "value"), *te = str_at(t, "effect");
		bool exists = op && strcmp(op, "Exists") == 0;
		if (te && *te && (!effect || strcmp(te, effect) != 0))
			continue;
		if (!tk || !*tk) {
			if (exists)
				return true;
			continue;
		}
		if (!key || strcmp(tk, key) != 0)
			continue;
		if (exists || strcmp(tv ? tv : "", value ? value : "") == 0)
			return true;
	}
	return false;
}

/* The first NoSchedule / NoExecute taint the template does not tolerate, or NULL. */
static struct json_object *untolerated(struct json_object *ps, struct json_object *node)
{
	struct json_object *spec = NULL, *taints = NULL, *tols = NULL;

	json_object_object_get_ex(ps, "tolerations", &tols);
	if (tols && !json_object_is_type(tols, json_type_array))
		tols = NULL;
	if (!json_object_object_get_ex(node, "spec", &spec) ||
	    !json_object_object_get_ex(spec, "taints", &taints) ||
	    !json_object_is_type(taints, json_type_array))
		return NULL;
	for (size_t i = 0; i < json_object_array_length(taints); i++) {
		struct json_object *t = json_object_array_get_idx(taints, i);
		const char *e = str_at(t, "effect");
		if (e && strcmp(e, "PreferNoSchedule") == 0)
			continue;
		if (!tolerated(tols, t))
			return t;
	}
	return NULL;
}

static int list_nodes(dispatcher *d, struct json_object **ret, kd_error *err)
{
	struct json_object *items;
	int r = kd_k8s_get(d->k, "/api/v1/nodes", ret, err);
	if (r < 0)
		return r;
	if (!json_object_object_get_ex(*ret, "items", &items) ||
	    !json_object_is_type(items, json_type_array))
		return kd_err(err, -EINVAL, "list nodes: no items in the answer");
	return 0;
}

/* The nodes the template selects now (sorted); *skipped gets "node (taint k=v:Effect)" for
 * selected nodes whose taints the template does not tolerate (install only). */
static int select_nodes(dispatcher *d, bool cleanup, char ***ret, char ***skipped, kd_error *err)
{
	_cleanup_json_ struct json_object *list = NULL;
	struct json_object *items, *ps = pod_spec(d->tmpl[cleanup]);
	int r;

	*ret = calloc(1, sizeof(char *));
	if (skipped)
		*skipped = calloc(1, sizeof(char *));
	if (!*ret || (skipped && !*skipped))
		return kd_err(err, -ENOMEM, "out of memory");
	if ((r = list_nodes(d, &list, err)) < 0)
		return r;
	json_object_object_get_ex(list, "items", &items);
	for (size_t i = 0; i < json_object_array_length(items); i++) {
		struct json_object *node = json_object_array_get_idx(items, i), *t;
		const char *name = node_name(node);
		bool sel = false;
		if (!name)
			continue;
		r = kd_k8s_pod_spec_selects_node(ps, node, &sel, err);
		if (r < 0)
			return kd_err_wrap(err, r, "the per-node Job template's node selection");
		if (!sel)
			continue;
		if (!cleanup && (t = untolerated(ps, node))) {
			char buf[600];
			const char *v = str_at(t, "value");
			snprintf(buf, sizeof(buf), "%s (taint %s%s%s:%s)", name, str_at(t, "key"),
				 v ? "=" : "", v ? v : "", str_at(t, "effect"));
			if (skipped && kd_strv_push(skipped, buf) < 0)
				return kd_err(err, -ENOMEM, "out of memory");
			continue;
		}
		if (kd_strv_push(ret, name) < 0)
			return kd_err(err, -ENOMEM, "out of memory");
	}
	kd_strv_sort(*ret);
	return 0;
}

/* The nodes that carry this install's owner label but are no longer wanted: not in keep and,
 * when by_selection, not selected by the install template (a selected node whose taint is
 * not tolerated stays as it is). */
static int unwanted_nodes(dispatcher *d, char *const *keep, bool by_selection, char ***ret,
			  kd_error *err)
{
	_cleanup_json_ struct json_object *list = NULL;
	struct json_object *items, *ps = pod_spec(d->tmpl[0]);
	char own[128];
	int r;

	*ret = calloc(1, sizeof(char *));
	if (!*ret)
		return kd_err(err, -ENOMEM, "out of memory");
	if ((r = list_nodes(d, &list, err)) < 0)
		return r;
	kd_agent_owner_label(d->s, own, sizeof(own));
	json_object_object_get_ex(list, "items", &items);
	for (size_t i = 0; i < json_object_array_length(items); i++) {
		struct json_object *node = json_object_array_get_idx(items, i), *meta = NULL,
				   *labels = NULL;
		const char *name = node_name(node);
		bool sel = false;
		if (!name || kd_strv_find(keep, name) ||
		    !json_object_object_get_ex(node, "metadata", &meta) ||
		    !json_object_object_get_ex(meta, "labels", &labels) ||
		    !json_object_object_get_ex(labels, own, NULL))
			continue;
		if (by_selection) {
			if ((r = kd_k8s_pod_spec_selects_node(ps, node, &sel, err)) < 0)
				return kd_err_wrap(err, r,
						   "the per-node Job template's node selection");
			if (sel)
				continue;
		}
		if (kd_strv_push(ret, name) < 0)
			return kd_err(err, -ENOMEM, "out of memory");
	}
	kd_strv_sort(*ret);
	return 0;
}

static char *strv_text(char *const *v)
{
	size_t n = 1;
	for (char *const *i = v; i && *i; i++)
		n += strlen(*i) + 2;
	char *out = calloc(1, n);
	for (char *const *i = v; out && i && *i; i++) {
		if (i != v)
			strcat(out, ", ");
		strcat(out, *i);
	}
	return out;
}

static void selection_text(dispatcher *d, char *buf, size_t size)
{
	struct json_object *ps = pod_spec(d->tmpl[0]), *v;
	buf[0] = '\0';
	if (json_object_object_get_ex(ps, "nodeSelector", &v))
		snprintf(buf, size, "nodeSelector %s",
			 json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN |
								   JSON_C_TO_STRING_NOSLASHESCAPE));
	if (json_object_object_get_ex(ps, "affinity", &v))
		snprintf(buf + strlen(buf), size - strlen(buf), "%saffinity %s", buf[0] ? ", " : "",
			 json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN |
								   JSON_C_TO_STRING_NOSLASHESCAPE));
	if (!buf[0])
		snprintf(buf, size, "every node");
}

/* Install: the selected nodes, waiting up to wait_for_nodes_s for the first one and until the
 * set has not changed for node_settle_s (labels arrive one node at a time). */
static int resolve_install(dispatcher *d, char ***ret, kd_error *err)
{
	const kd_agent_dispatch_opts *o = d->o;
	uint64_t t0 = mono_ms(), changed = t0;
	uint64_t deadline = t0 + (uint64_t)o->wait_for_nodes_s * 1000;
	_cleanup_free_ char *last = NULL;
	int r;

	for (;;) {
		_cleanup_strv_ char **skipped = NULL;
		char **sel = NULL;
		if ((r = select_nodes(d, false, &sel, &skipped, err)) < 0) {
			kd_strv_free(sel);
			return r;
		}
		_cleanup_free_ char *now = strv_text(sel), *sk = strv_text(skipped);
		if (!now || !sk) {
			kd_strv_free(sel);
			return kd_err(err, -ENOMEM, "out of memory");
		}
		if (!last || strcmp(now, last) != 0) {
			kd_info("selected %zu node(s): %s%s%s", kd_strv_length(sel),
				*now ? now : "none", *sk ? "; skipped, taint not tolerated: " : "",
				sk);
			free(last);
			last = TAKE_PTR(now);
			changed = mono_ms();
		}
		bool settled = mono_ms() - changed >= (uint64_t)o->node_settle_s * 1000;
		if (o->wait_for_nodes_s == 0 || (sel[0] && settled) || mono_ms() >= deadline) {
			if (!sel[0] && o->wait_for_nodes_s > 0) {
				char what[1024];
				kd_strv_free(sel);
				selection_text(d, what, sizeof(what));
				return kd_err(
					err, -ENOENT,
					"no node selected after %d s (%s)%s%s; in job mode an "
					"empty selection does not heal later: fix the "
					"selection, or set job.waitForNodesSeconds=0 to "
					"accept it",
					o->wait_for_nodes_s, what,
					*sk ? "; skipped, taint not tolerated: " : "", sk);
			}
			*ret = sel;
			return 0;
		}
		kd_strv_free(sel);
		if (kd_agent_sleep(1000))
			return kd_err(err, -EINTR, "terminated while waiting for nodes");
	}
}

/* kata-deploy[-sfx]-install-<node>-<hash>: at most 63 characters, unique per run and node. */
static void job_name(const dispatcher *d, bool cleanup, const char *node, char *buf, size_t size)
{
	char in[512], hex[KD_SHA256_HEX_LEN + 1], part[64];
	size_t n = 0, room;

	snprintf(in, sizeof(in), "%s/%s", d->run_id, node);
	kd_sha256_buf(in, strlen(in), hex);
	snprintf(buf, size, "%s-%s-", d->o->name_prefix, cleanup ? "cleanup" : "install");
	room = JOB_NAME_MAX - strlen(buf) - 8;
	for (const char *p = node; *p && n < room && n < sizeof(part) - 1; p++)
		part[n++] = (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ? *p : '-';
	while (n > 0 && part[n - 1] == '-')
		n--;
	part[n] = '\0';
	snprintf(buf + strlen(buf), size - strlen(buf), "%s%s%.7s", part, n ? "-" : "", hex);
}

static void set_env(struct json_object *container, const char *name, const char *value)
{
	struct json_object *env = NULL, *e;

	if (!json_object_object_get_ex(container, "env", &env) ||
	    !json_object_is_type(env, json_type_array)) {
		env = json_object_new_array();
		json_object_object_add(container, "env", env);
	}
	for (size_t i = 0; i < json_object_array_length(env); i++) {
		e = json_object_array_get_idx(env, i);
		const char *n = str_at(e, "name");
		if (n && strcmp(n, name) == 0) {
			json_object_object_del(e, "valueFrom");
			json_object_object_add(e, "value", json_object_new_string(value));
			return;
		}
	}
	e = json_object_new_object();
	json_object_object_add(e, "name", json_object_new_string(name));
	json_object_object_add(e, "value", json_object_new_string(value));
	json_object_array_add(env, e);
}

static int build_job(dispatcher *d, bool cleanup, const char *node, const char *name,
		     const char *rv, struct json_object **ret, kd_error *err)
{
	struct json_object *job = NULL, *meta, *labels, *ps, *cs;

	if (json_object_deep_copy(d->tmpl[cleanup], &job, NULL) < 0 || !job)
		return kd_err(err, -ENOMEM, "out of memory");
	if (!json_object_object_get_ex(job, "metadata", &meta) ||
	    !json_object_is_type(meta, json_type_object)) {
		meta = json_object_new_object();
		json_object_object_add(job, "metadata", meta);
	}
	json_object_object_add(meta, "name", json_object_new_string(name));
	json_object_object_add(meta, "namespace", json_object_new_string(d->ns));
	json_object_object_del(meta, "generateName");
	if (!json_object_object_get_ex(meta, "labels", &labels) ||
	    !json_object_is_type(labels, json_type_object)) {
		labels = json_object_new_object();
		json_object_object_add(meta, "labels", labels);
	}
	json_object_object_add(labels, DISPATCH_LABEL, json_object_new_string(d->o->name_prefix));
	if (strlen(node) <= 63)
		json_object_object_add(labels, NODE_LABEL, json_object_new_string(node));
	if (d->owner_uid[0]) {
		struct json_object *refs = json_object_new_array(), *ref = json_object_new_object();
		json_object_object_add(ref, "apiVersion", json_object_new_string("batch/v1"));
		json_object_object_add(ref, "kind", json_object_new_string("Job"));
		json_object_object_add(ref, "name", json_object_new_string(d->o->owner_job));
		json_object_object_add(ref, "uid", json_object_new_string(d->owner_uid));
		json_object_array_add(refs, ref);
		json_object_object_add(meta, "ownerReferences", refs);
	}
	ps = pod_spec(job);
	/* Bound to the node: past the scheduler, and its selection (which for a cleanup may
	 * name the very label the dispatcher has just removed) is not checked again by the
	 * kubelet's admission. */
	json_object_object_add(ps, "nodeName", json_object_new_string(node));
	json_object_object_del(ps, "nodeSelector");
	json_object_object_del(ps, "affinity");
	if (cleanup || (d->o->nodes && *d->o->nodes)) {
		/* A named node, or one to clean up: reach it whatever its taints (a NoExecute
		 * taint would evict the bound pod half way). */
		struct json_object *tols = json_object_new_array(), *t = json_object_new_object();
		json_object_object_add(t, "operator", json_object_new_string("Exists"));
		json_object_array_add(tols, t);
		json_object_object_add(ps, "tolerations", tols);
	}
	json_object_object_get_ex(ps, "containers", &cs);
	for (size_t i = 0; i < json_object_array_length(cs); i++)
		set_env(json_object_array_get_idx(cs, i), "NODE_RUNTIME_VERSION", rv ? rv : "");
	*ret = job;
	return 0;
}

/* A Job's terminal condition: 1 Complete, -1 Failed (reason and message into why), 0 still
 * running. */
static int job_state(struct json_object *job, char *why, size_t size)
{
	struct json_object *status = NULL, *conds = NULL;

	if (!json_object_object_get_ex(job, "status", &status) ||
	    !json_object_object_get_ex(status, "conditions", &conds) ||
	    !json_object_is_type(conds, json_type_array))
		return 0;
	for (size_t i = 0; i < json_object_array_length(conds); i++) {
		struct json_object *c = json_object_array_get_idx(conds, i);
		const char *type = str_at(c, "type"), *st = str_at(c, "status");
		if (!type || !st || strcmp(st, "True") != 0)
			continue;
		if (strcmp(type, "Complete") == 0)
			return 1;
		if (strcmp(type, "Failed") == 0) {
			const char *reason = str_at(c, "reason"), *msg = str_at(c, "message");
			snprintf(why, size, "%s%s%s", reason ? reason : "Failed", msg ? ": " : "",
				 msg ? msg : "");
			return -1;
		}
	}
	return 0;
}

/* The termination message of the Job's pod (the Succeeded one, or the last that failed). */
static int job_message(kd_k8s *k, const dispatcher *d, const char *uid, bool succeeded, char **ret,
		       kd_error *err)
{
	_cleanup_json_ struct json_object *list = NULL;
	struct json_object *items = NULL;
	char path[PATH_BUF], ns[300], sel[200], esc[300];
	const char *best = NULL, *best_t = "";
	int r;

	*ret = NULL;
	snprintf(sel, sizeof(sel), "batch.kubernetes.io/controller-uid=%s", uid);
	if (kd_k8s_escape(d->ns, ns, sizeof(ns)) < 0 || kd_k8s_escape(sel, esc, sizeof(esc)) < 0)
		return kd_err(err, -EINVAL, "namespace too long");
	snprintf(path, sizeof(path), "/api/v1/namespaces/%s/pods?labelSelector=%s", ns, esc);
	if ((r = kd_k8s_get(k, path, &list, err)) < 0)
		return r;
	json_object_object_get_ex(list, "items", &items);
	for (size_t i = 0; items && i < json_object_array_length(items); i++) {
		struct json_object *pod = json_object_array_get_idx(items, i), *st = NULL,
				   *cs = NULL, *meta = NULL;
		const char *phase, *t;
		json_object_object_get_ex(pod, "status", &st);
		json_object_object_get_ex(pod, "metadata", &meta);
		phase = str_at(st, "phase");
		t = str_at(meta, "creationTimestamp");
		if (!phase || strcmp(phase, succeeded ? "Succeeded" : "Failed") != 0)
			continue;
		if (!json_object_object_get_ex(st, "containerStatuses", &cs) ||
		    !json_object_is_type(cs, json_type_array))
			continue;
		for (size_t j = 0; j < json_object_array_length(cs); j++) {
			struct json_object *state = NULL, *term = NULL;
			const char *m;
			json_object_object_get_ex(json_object_array_get_idx(cs, j), "state",
						  &state);
			json_object_object_get_ex(state, "terminated", &term);
			m = str_at(term, "message");
			if (m && *m && (!best || strcmp(t ? t : "", best_t) >= 0)) {
				best = m;
				best_t = t ? t : "";
			}
		}
	}
	if (best && !(*ret = strdup(best)))
		return kd_err(err, -ENOMEM, "out of memory");
	return 0;
}

static char **json_strv(struct json_object *o, const char *key)
{
	struct json_object *a = NULL;
	char **v = calloc(1, sizeof(char *));
	if (!v || !json_object_object_get_ex(o, key, &a) ||
	    !json_object_is_type(a, json_type_array))
		return v;
	for (size_t i = 0; i < json_object_array_length(a); i++) {
		const char *s = json_object_get_string(json_object_array_get_idx(a, i));
		if (s && kd_strv_push(&v, s) < 0) {
			kd_strv_free(v);
			return NULL;
		}
	}
	return v;
}

/* The result's Events: each well-formed one, at most KD_AGENT_HOST_EVENTS_MAX (the rest and
 * the malformed ones counted as dropped). */
static void parse_events(struct json_object *o, kd_agent_job_result *res)
{
	struct json_object *a = NULL, *b;

	if (json_object_object_get_ex(o, "eventsDropped", &b) &&
	    json_object_is_type(b, json_type_int) && json_object_get_int64(b) > 0)
		res->events_dropped = json_object_get_int64(b) > 1000000
					      ? 1000000
					      : (unsigned)json_object_get_int64(b);
	if (!json_object_object_get_ex(o, "events", &a) || !json_object_is_type(a, json_type_array))
		return;
	for (size_t i = 0; i < json_object_array_length(a); i++) {
		struct json_object *e = json_object_array_get_idx(a, i);
		const char *type = str_at(e, "type"), *reason = str_at(e, "reason"),
			   *action = str_at(e, "action"), *msg = str_at(e, "message");
		kd_agent_host_event *h;
		if (res->n_events >= KD_AGENT_HOST_EVENTS_MAX || !type || !reason || !action ||
		    !msg || (strcmp(type, "Warning") != 0 && strcmp(type, "Normal") != 0) ||
		    !*reason || strlen(reason) >= sizeof(h->reason) ||
		    strlen(action) >= sizeof(h->action)) {
			res->events_dropped++;
			continue;
		}
		h = &res->events[res->n_events++];
		h->warning = strcmp(type, "Warning") == 0;
		snprintf(h->reason, sizeof(h->reason), "%s", reason);
		snprintf(h->action, sizeof(h->action), "%s", action);
		snprintf(h->message, sizeof(h->message), "%s", msg);
	}
}

int kd_agent_job_result_parse(const char *msg, bool cleanup, kd_agent_job_result *res,
			      kd_error *err)
{
	_cleanup_json_ struct json_object *o = NULL;
	struct json_object *b;
	kd_error perr = {0};
	const char *e, *a;

	*res = (kd_agent_job_result){0};
	if (kd_json_parse(msg, strlen(msg), "result", &o, &perr) < 0 ||
	    !json_object_is_type(o, json_type_object) || !(a = str_at(o, "action")))
		return kd_err(err, -EIO, "%s", msg);
	parse_events(o, res); /* a failed Job's Events are posted too */
	if ((e = str_at(o, "error")))
		return kd_err(err, -EIO, "%s", e);
	if (strcmp(a, cleanup ? "cleanup" : "install") != 0)
		return kd_err(err, -EIO, "a %s result for a %s", a,
			      cleanup ? "cleanup" : "install");
	snprintf(res->version, sizeof(res->version), "%s", str_at(o, "version") ?: "");
	snprintf(res->id, sizeof(res->id), "%s", str_at(o, "id") ?: "");
	snprintf(res->source, sizeof(res->source), "%s", str_at(o, "source") ?: "");
	snprintf(res->prefix, sizeof(res->prefix), "%s", str_at(o, "prefix") ?: "");
	snprintf(res->runtime, sizeof(res->runtime), "%s", str_at(o, "runtime") ?: "");
	res->config_changed =
		json_object_object_get_ex(o, "configChanged", &b) && json_object_get_boolean(b);
	if (json_object_object_get_ex(o, "kept", &b))
		res->kept = (unsigned)json_object_get_int64(b);
	if (!cleanup) {
		res->installed = json_strv(o, "installed");
		res->skipped = json_strv(o, "skipped");
		if (!res->installed || !res->skipped)
			return kd_err(err, -ENOMEM, "out of memory");
	}
	return 0;
}

/* A message that is not ours (FallbackToLogsOnError puts the log's tail there) or carries an
 * error is returned as the error; Events are read either way. */
static int parse_result(const char *job, const char *msg, bool cleanup, kd_agent_job_result *res,
			kd_error *err)
{
	int r;

	if (!msg)
		return kd_err(err, -EIO,
			      "Job %s: its pod's result is not there (the pod was "
			      "deleted before it was read?)",
			      job);
	r = kd_agent_job_result_parse(msg, cleanup, res, err);
	return r < 0 ? kd_err_wrap(err, r, "Job %s", job) : 0;
}

typedef struct run_ctx {
	dispatcher *d;
	kd_k8s *k;
	const char *node;
	bool cleanup;
} run_ctx;

/* Delete a Job and its pods (background propagation) and wait until it is gone. */
static int delete_job(kd_k8s *k, const char *ns, const char *name, kd_error *err)
{
	static const char body[] = "{\"kind\":\"DeleteOptions\",\"apiVersion\":\"v1\","
				   "\"propagationPolicy\":\"Background\"}";
	char path[PATH_BUF];
	int r;

	snprintf(path, sizeof(path), "/apis/batch/v1/namespaces/%s/jobs/%s", ns, name);
	r = kd_k8s_request(k, "DELETE", path, "application/json", body, sizeof(body) - 1, NULL,
			   err);
	if (r < 0 && r != -ENOENT)
		return r;
	for (int i = 0; i < 600; i++) {
		_cleanup_json_ struct json_object *j = NULL;
		kd_err_clear(err);
		r = kd_k8s_get(k, path, &j, err);
		if (r == -ENOENT) {
			kd_err_clear(err);
			return 0;
		}
		if (r < 0)
			return r;
		if (kd_agent_sleep(100))
			return kd_err(err, -EINTR, "terminated while deleting Job %s", name);
	}
	return kd_err(err, -ETIMEDOUT, "Job %s still there 60 s after its deletion", name);
}

/* Create the node's Job, wait for its end, read its result. */
static int run_job(const char *rv, kd_agent_job_result *res, void *ud, kd_error *err)
{
	run_ctx *c = ud;
	dispatcher *d = c->d;
	_cleanup_json_ struct json_object *job = NULL, *created = NULL;
	_cleanup_free_ char *msg = NULL;
	char name[80], path[PATH_BUF], ns[300], why[1024] = "";
	const char *uid;
	uint64_t bad_since = 0;
	int r;

	job_name(d, c->cleanup, c->node, name, sizeof(name));
	if ((r = build_job(d, c->cleanup, c->node, name, rv, &job, err)) < 0)
		return r;
	if (kd_k8s_escape(d->ns, ns, sizeof(ns)) < 0)
		return kd_err(err, -EINVAL, "namespace too long");
	snprintf(path, sizeof(path), "/apis/batch/v1/namespaces/%s/jobs", ns);
	r = kd_k8s_create(c->k, path, job, &created, err);
	if (r == -EEXIST) {
		/* This run's name is taken: the same dispatcher Job ran before (a retried pod);
		 * that Job's result is not this run's. Delete it and its pods, then create. */
		kd_info("node %s: Job %s exists from an earlier run of this dispatcher: replacing it",
			c->node, name);
		kd_err_clear(err);
		if ((r = delete_job(c->k, ns, name, err)) >= 0)
			r = kd_k8s_create(c->k, path, job, &created, err);
	}
	if (r < 0)
		return kd_err_wrap(err, r, "create the %s Job of node %s",
				   c->cleanup ? "cleanup" : "install", c->node);
	uid = str_at(json_object_object_get(created, "metadata"), "uid");
	kd_info("node %s: Job %s/%s created", c->node, d->ns, name);
	snprintf(path, sizeof(path), "/apis/batch/v1/namespaces/%s/jobs/%s", ns, name);
	for (;;) {
		_cleanup_json_ struct json_object *now = NULL;
		kd_error gerr = {0};
		if (kd_agent_terminating())
			return kd_err(err, -EINTR, "terminated while Job %s ran", name);
		r = kd_k8s_get(c->k, path, &now, &gerr);
		if (r == -ENOENT)
			return kd_err(err, -EIO, "Job %s was deleted before it ended", name);
		if (r < 0) {
			if (!bad_since)
				bad_since = mono_ms();
			if (mono_ms() - bad_since > JOB_READ_ERROR_BUDGET_S * 1000)
				return kd_err(err, r, "Job %s unreadable for %d s: %s", name,
					      JOB_READ_ERROR_BUDGET_S, kd_err_msg(&gerr));
		} else {
			bad_since = 0;
			r = job_state(now, why, sizeof(why));
			if (r != 0) {
				bool ok = r > 0;
				if ((r = job_message(c->k, d, uid ? uid : "", ok, &msg, err)) < 0)
					return kd_err_wrap(err, r, "read the result of Job %s",
							   name);
				if (ok)
					return parse_result(name, msg, c->cleanup, res, err);
				if (msg) {
					r = parse_result(name, msg, c->cleanup, res, err);
					if (r < 0)
						return kd_err_wrap(err, r, "Job %s failed (%s)",
								   name, why);
				}
				return kd_err(err, -EIO, "Job %s failed: %s", name, why);
			}
		}
		if (kd_agent_sleep(d->s->poll_interval_ms))
			return kd_err(err, -EINTR, "terminated while Job %s ran", name);
	}
}

static void *worker(void *ud)
{
	dispatcher *d = ud;
	kd_k8s *k = NULL;
	kd_error err = {0};

	if (k8s_open(d, &k, &err) < 0) {
		kd_error_log("%s", kd_err_msg(&err));
		return NULL;
	}
	for (;;) {
		const char *node;
		kd_agent_settings ns;
		pthread_mutex_lock(&d->mu);
		node = d->nodes[d->next] && !kd_agent_terminating() ? d->nodes[d->next++] : NULL;
		pthread_mutex_unlock(&d->mu);
		if (!node)
			break;
		run_ctx c = {.d = d, .k = k, .node = node, .cleanup = d->cleanup};
		ns = *d->s;
		ns.node_name = (char *)node;
		kd_err_clear(&err);
		kd_agent_job_owner owner = {.release = d->release, .dispatcher = d->owner_text};
		int r = kd_agent_job_dispatch(&ns, NULL, d->cleanup, &owner, run_job, &c, &err);
		pthread_mutex_lock(&d->mu);
		if (r < 0) {
			char line[KD_ERROR_MAX + 300];
			snprintf(line, sizeof(line), "%s: %s", node, kd_err_msg(&err));
			kd_error_log("node %s: %s failed: %s", node,
				     d->cleanup ? "cleanup" : "install", kd_err_msg(&err));
			(void)kd_strv_push(&d->failed, line);
		} else {
			d->ok++;
			kd_info("node %s: %s done", node, d->cleanup ? "cleanup" : "install");
		}
		pthread_mutex_unlock(&d->mu);
	}
	kd_k8s_free(k);
	return NULL;
}

/* One round: every node of nodes through its Job, at most parallelism at once. */
static void run_round(dispatcher *d, char **nodes, bool cleanup)
{
	size_t n = kd_strv_length(nodes), workers = (size_t)d->o->parallelism;
	pthread_t *t;

	if (n == 0)
		return;
	if (workers > n)
		workers = n;
	d->nodes = nodes;
	d->next = 0;
	d->cleanup = cleanup;
	kd_info("%s on %zu node(s), at most %zu at once", cleanup ? "cleanup" : "install", n,
		workers);
	t = calloc(workers, sizeof(*t));
	if (!t) {
		worker(d);
		return;
	}
	size_t started = 0;
	for (; started < workers; started++)
		if (pthread_create(&t[started], NULL, worker, d) != 0)
			break;
	if (started == 0)
		worker(d);
	for (size_t i = 0; i < started; i++)
		pthread_join(t[i], NULL);
	free(t);
}

static int owner_uid(dispatcher *d, kd_error *err)
{
	_cleanup_json_ struct json_object *job = NULL;
	char path[PATH_BUF], ns[300], name[300];
	const char *uid;
	int r;

	if (!d->o->owner_job || !*d->o->owner_job) {
		snprintf(d->run_id, sizeof(d->run_id), "%lx", (unsigned long)time(NULL));
		return 0;
	}
	if (kd_k8s_escape(d->ns, ns, sizeof(ns)) < 0 ||
	    kd_k8s_escape(d->o->owner_job, name, sizeof(name)) < 0)
		return kd_err(err, -EINVAL, "--owner-job too long");
	snprintf(path, sizeof(path), "/apis/batch/v1/namespaces/%s/jobs/%s", ns, name);
	if ((r = kd_k8s_get(d->k, path, &job, err)) < 0)
		return kd_err_wrap(err, r, "the dispatcher's own Job (--owner-job)");
	uid = str_at(json_object_object_get(job, "metadata"), "uid");
	if (!uid)
		return kd_err(err, -EINVAL, "Job %s has no uid", d->o->owner_job);
	snprintf(d->release, sizeof(d->release), "%s",
		 str_at(json_object_object_get(json_object_object_get(job, "metadata"), "labels"),
			"app.kubernetes.io/instance")
			 ?: "");
	snprintf(d->owner_text, sizeof(d->owner_text), "%s/%s", d->ns, d->o->owner_job);
	snprintf(d->owner_uid, sizeof(d->owner_uid), "%s", uid);
	snprintf(d->run_id, sizeof(d->run_id), "%.12s", uid);
	return 0;
}

static int named_nodes(dispatcher *d, char ***ret, kd_error *err)
{
	_cleanup_strv_ char **names = kd_strv_split(d->o->nodes, ',');
	int r;

	*ret = calloc(1, sizeof(char *));
	if (!names || !*ret)
		return kd_err(err, -ENOMEM, "out of memory");
	for (char **n = names; *n; n++) {
		_cleanup_json_ struct json_object *node = NULL;
		char path[PATH_BUF], esc[300];
		if (!**n || kd_strv_find(*ret, *n))
			continue;
		if (kd_k8s_escape(*n, esc, sizeof(esc)) < 0)
			return kd_err(err, -EINVAL, "node name too long: %s", *n);
		snprintf(path, sizeof(path), "/api/v1/nodes/%s", esc);
		/* As upstream's dispatcher: a name that is no Node fails the run before any node
		 * is touched (install and cleanup alike); the list is the admin's, and a typo
		 * must not pass for done. */
		r = kd_k8s_get(d->k, path, &node, err);
		if (r < 0)
			return kd_err_wrap(err, r, "node %s of the job nodes list (--nodes)", *n);
		if (kd_strv_push(ret, *n) < 0)
			return kd_err(err, -ENOMEM, "out of memory");
	}
	kd_strv_sort(*ret);
	return 0;
}

int kd_agent_dispatch_main(const kd_agent_settings *s, bool cleanup,
			   const kd_agent_dispatch_opts *o)
{
	dispatcher d = {.s = s, .o = o, .mu = PTHREAD_MUTEX_INITIALIZER};
	_cleanup_strv_ char **nodes = NULL, **owned = NULL;
	kd_error err = {0};
	uint64_t t0 = mono_ms();
	int r = 0;

	if (!o->job_template || !*o->job_template || !o->name_prefix || !*o->name_prefix ||
	    o->parallelism < 1) {
		kd_error_log("dispatch needs --job-template, --name-prefix and --parallelism >= 1");
		return 2;
	}
	if (!cleanup && o->cleanup_template && *o->cleanup_template &&
	    (r = load_template(o->cleanup_template, &d.tmpl[1], &err)) < 0)
		goto out;
	if ((r = load_template(o->job_template, &d.tmpl[cleanup], &err)) < 0)
		goto out;
	d.failed = calloc(1, sizeof(char *));
	if (!d.failed || (r = k8s_open(&d, &d.k, &err)) < 0) {
		if (!d.failed)
			r = kd_err(&err, -ENOMEM, "out of memory");
		goto out;
	}
	snprintf(d.ns, sizeof(d.ns), "%s",
		 *s->pod_namespace ? s->pod_namespace : kd_k8s_namespace(d.k));
	kd_info("dispatcher: %s, Jobs in namespace %s, Kubernetes API %s (%s)",
		cleanup ? "cleanup" : "install", d.ns, kd_k8s_server(d.k), kd_k8s_source(d.k));
	if ((r = owner_uid(&d, &err)) < 0)
		goto out;
	d.cleanup = cleanup;
	if (o->nodes && *o->nodes)
		r = named_nodes(&d, &nodes, &err);
	else if (cleanup)
		r = select_nodes(&d, true, &nodes, NULL, &err);
	else
		r = resolve_install(&d, &nodes, &err);
	if (r < 0)
		goto out;
	/* An upgrade that narrowed the selection: the nodes left out are cleaned up first, so
	 * selector changes converge both ways. */
	if (!cleanup && (r = unwanted_nodes(&d, nodes, !(o->nodes && *o->nodes), &owned, &err)) < 0)
		goto out;
	if (owned && owned[0]) {
		_cleanup_free_ char *t = strv_text(owned);
		if (d.tmpl[1]) {
			kd_info("no longer selected, cleaning up first: %s", t ? t : "");
			run_round(&d, owned, true);
		} else {
			kd_warn("nodes carry this install's label but are no longer selected (no "
				"cleanup template given: left as they are): %s",
				t ? t : "");
		}
	}
	if (!nodes[0])
		kd_info("no node selected: nothing to %s", cleanup ? "clean up" : "install");
	run_round(&d, nodes, cleanup);
	kd_info("%s: %zu node(s) done, %zu failed, in %.1f s", cleanup ? "cleanup" : "install",
		d.ok, kd_strv_length(d.failed), (double)(mono_ms() - t0) / 1000.0);
	for (char **f = d.failed; f && *f; f++)
		kd_error_log("failed: %s", *f);
	if (kd_agent_terminating())
		r = kd_err(&err, -EINTR, "terminated: some nodes were not dispatched");
	else if (d.failed && d.failed[0])
		r = 1; /* each failure is logged above */
out:
	if (r < 0)
		kd_error_log("dispatch failed: %s", kd_err_msg(&err));
	kd_strv_free(d.failed);
	json_object_put(d.tmpl[0]);
	json_object_put(d.tmpl[1]);
	kd_k8s_free(d.k);
	return r != 0 ? 1 : 0;
}
