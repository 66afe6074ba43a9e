#include "agent.h"

#include <fcntl.h>
#include <inttypes.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>

#include "deployer/engine.h"
#include "deployer/flavour.h"
#include "deployer/hostcheck.h"
#include "deployer/restart.h"
#include "detect.h"
#include "fsroot.h"
#include "health.h"
#include "json.h"
#include "k8s.h"
#include "log.h"
#include "strv.h"

#define EVENT_MESSAGE_MAX KD_AGENT_EVENT_MESSAGE_MAX
#define EVENT_COMPONENT "kata-deploy-agent"
#define PATH_BUF 512

sigset_t kd_agent_term_signals;
static _Atomic bool terminating; /* the dispatcher's workers share it */

typedef struct agent {
	const kd_agent_settings *s;
	kd_k8s *k;
	int rootfd;
	char node_path[PATH_BUF];
	char ns[254];
	char events_ns[254];
	char owner[128];
	char identity_key[128]; /* install.kata-deploy.katacontainers.io/<suffix or default> */
	char *identity;		/* its value once installed: JSON, see install_identity() */
	char node_uid[64];
	char **handlers;  /* to wait for in status.runtimeHandlers */
	char **installed; /* the shims the engine installed (the payload has them) */
	kd_agent_runtime rt;
	char *annotations; /* ALLOWED_HYPERVISOR_ANNOTATIONS as the engine reads them */
	char *snapshotters;
	char *setup_snapshotter;
	char *force_guest_pull;
	char *pull_types;
	char ctd_config[PATH_BUF]; /* etc/containerd/<CONTAINERD_CONFIG_FILE_NAME>, "" = default */
	bool claimed; /* our claim labels are on the Node (released when the install fails) */
	kd_agent_job_result *collect; /* a per-node Job: its Events go into its result */
} agent;

static void agent_done(agent *a)
{
	kd_k8s_free(a->k);
	if (a->rootfd >= 0)
		close(a->rootfd);
	kd_strv_free(a->handlers);
	kd_strv_free(a->installed);
	free(a->annotations);
	free(a->snapshotters);
	free(a->setup_snapshotter);
	free(a->force_guest_pull);
	free(a->pull_types);
	free(a->identity);
}

bool kd_agent_terminating(void)
{
	struct timespec zero = {0, 0};

	if (!terminating && sigtimedwait(&kd_agent_term_signals, NULL, &zero) > 0)
		terminating = true;
	return terminating;
}

/* Sleep, unless a termination signal arrives first (then true). */
static bool wait_or_term(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	if (terminating)
		return true;
	for (;;) {
		int sig = sigtimedwait(&kd_agent_term_signals, NULL, &ts);
		if (sig > 0) {
			terminating = true;
			return true;
		}
		if (errno == EAGAIN)
			return false;
		if (errno != EINTR)
			return false;
	}
}

bool kd_agent_sleep(int ms)
{
	return wait_or_term(ms);
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sync_metrics(const agent *a)
{
	kd_k8s_stats st;

	if (!a->k)
		return;
	kd_k8s_get_stats(a->k, &st);
	kd_agent_metric_set(&kd_agent_metrics_now.api_requests, st.requests);
	kd_agent_metric_set(&kd_agent_metrics_now.api_failures, st.failures);
	kd_agent_metric_set(&kd_agent_metrics_now.api_conflicts, st.conflicts);
}

static int agent_open(agent *a, const kd_agent_settings *s, const char *kubeconfig, bool with_root,
		      kd_error *err)
{
	kd_k8s_opts ko = {
		.kubeconfig = kubeconfig ? kubeconfig : (*s->kubeconfig ? s->kubeconfig : NULL),
		.sa_dir = s->sa_dir,
		.in_cluster = true,
		.retries = s->api_retries ? s->api_retries : -1,
		.user_agent = "kata-deploy-agent",
	};
	char name[256];
	int r;

	*a = (agent){.s = s, .rootfd = -1};
	r = kd_k8s_new(&ko, &a->k, err);
	if (r < 0)
		return r;
	kd_info("Kubernetes API %s (%s)", kd_k8s_server(a->k), kd_k8s_source(a->k));
	snprintf(a->ns, sizeof(a->ns), "%s",
		 *s->pod_namespace ? s->pod_namespace : kd_k8s_namespace(a->k));
	/* kube-apiserver accepts an Event whose involvedObject is cluster-scoped (our Node) only in
	 * "default" or "kube-system" (and only with eventTime set: ValidateEventCreate); the chart
	 * grants events in "default" when it is installed elsewhere. */
	snprintf(a->events_ns, sizeof(a->events_ns), "%s",
		 strcmp(a->ns, "default") == 0 || strcmp(a->ns, "kube-system") == 0 ? a->ns
										    : "default");
	if (kd_k8s_escape(s->node_name, name, sizeof(name)) < 0)
		return kd_err(err, -EINVAL, "NODE_NAME=%s: too long", s->node_name);
	snprintf(a->node_path, sizeof(a->node_path), "/api/v1/nodes/%s", name);
	kd_agent_owner_label(s, a->owner, sizeof(a->owner));
	kd_agent_identity_annotation(s, a->identity_key, sizeof(a->identity_key));
	a->handlers = kd_agent_handlers(s, NULL);
	if (!a->handlers)
		return kd_err(err, -ENOMEM, "out of memory");
	if (!with_root) /* job mode's dispatcher: the host is its per-node Jobs' */
		return 0;
	a->rootfd = kd_root_open(s->host_root, err);
	if (a->rootfd < 0)
		return kd_err_wrap(err, a->rootfd, "HOST_ROOT=%s", s->host_root);
	return 0;
}

/* GET our Node; a missing one gets a message that names NODE_NAME. */
static int get_node(agent *a, struct json_object **ret, kd_error *err)
{
	int r = kd_k8s_get(a->k, a->node_path, ret, err);
	if (r == -ENOENT)
		return kd_err_wrap(err, r, "NODE_NAME=%s: no such Node", a->s->node_name);
	if (r >= 0 && !a->node_uid[0]) {
		struct json_object *meta = NULL;
		const char *uid = NULL;
		if (kd_json_get_object(*ret, "", "metadata", false, &meta, NULL) > 0 &&
		    kd_json_get_string(meta, "", "uid", false, &uid, NULL) > 0)
			snprintf(a->node_uid, sizeof(a->node_uid), "%s", uid);
	}
	return r;
}

static void rfc3339_micro(char *buf, size_t size)
{
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000);
}

/* The reasons of the Events the host part of an install posts (host_check,
 * refuse_cri_disabled): a per-node Job carries them in its result, and its dispatcher re-posts
 * only these. */
static const char *const host_event_reasons[] = {"HostCheckWarning", "CRIDisabled"};

bool kd_agent_host_event_known(const char *reason)
{
	for (size_t i = 0; reason && i < ELEMENTSOF(host_event_reasons); i++)
		if (strcmp(reason, host_event_reasons[i]) == 0)
			return true;
	return false;
}

static void collect_event(kd_agent_job_result *res, bool warning, const char *reason,
			  const char *action, const char *msg)
{
	kd_agent_host_event *e;

	if (res->n_events >= KD_AGENT_HOST_EVENTS_MAX) {
		res->events_dropped++;
		return;
	}
	e = &res->events[res->n_events++];
	e->warning = warning;
	snprintf(e->reason, sizeof(e->reason), "%s", reason);
	snprintf(e->action, sizeof(e->action), "%s", action);
	snprintf(e->message, sizeof(e->message), "%s", msg);
}

/* A core/v1 Event about our Node in events_ns. Best effort: a failure is
 * logged, never fatal (events are for people; the install itself must not
 * depend on them). */
static void post_event(agent *a, bool warning, const char *reason, const char *action,
		       const char *fmt, ...) _printf_(5, 6);
static void post_event(agent *a, bool warning, const char *reason, const char *action,
		       const char *fmt, ...)
{
	_cleanup_json_ struct json_object *ev = NULL;
	char msg[EVENT_MESSAGE_MAX + 1], t[64], path[PATH_BUF], gen[300], ns[300];
	kd_error err = {0};
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	msg[EVENT_MESSAGE_MAX] = '\0';
	if (!a->k) { /* a per-node Job holds no token: its dispatcher posts the Events */
		if (a->collect)
			collect_event(a->collect, warning, reason, action, msg);
		return;
	}
	rfc3339_micro(t, sizeof(t));
	snprintf(gen, sizeof(gen), "kata-deploy.%.200s.", a->s->node_name);
	ev = json_object_new_object();
	struct json_object *meta = json_object_new_object(), *io = json_object_new_object(),
			   *src = json_object_new_object();
	json_object_object_add(meta, "generateName", json_object_new_string(gen));
	json_object_object_add(meta, "namespace", json_object_new_string(a->events_ns));
	json_object_object_add(ev, "metadata", meta);
	json_object_object_add(io, "apiVersion", json_object_new_string("v1"));
	json_object_object_add(io, "kind", json_object_new_string("Node"));
	json_object_object_add(io, "name", json_object_new_string(a->s->node_name));
	if (a->node_uid[0])
		json_object_object_add(io, "uid", json_object_new_string(a->node_uid));
	json_object_object_add(ev, "involvedObject", io);
	json_object_object_add(ev, "type", json_object_new_string(warning ? "Warning" : "Normal"));
	json_object_object_add(ev, "reason", json_object_new_string(reason));
	json_object_object_add(ev, "action", json_object_new_string(action));
	json_object_object_add(ev, "message", json_object_new_string(msg));
	json_object_object_add(ev, "eventTime", json_object_new_string(t));
	json_object_object_add(ev, "reportingComponent", json_object_new_string(EVENT_COMPONENT));
	json_object_object_add(ev, "reportingInstance", json_object_new_string(a->s->node_name));
	json_object_object_add(src, "component", json_object_new_string(EVENT_COMPONENT));
	json_object_object_add(src, "host", json_object_new_string(a->s->node_name));
	json_object_object_add(ev, "source", src);
	if (kd_k8s_escape(a->events_ns, ns, sizeof(ns)) == 0) {
		snprintf(path, sizeof(path), "/api/v1/namespaces/%s/events", ns);
		if (kd_k8s_create(a->k, path, ev, NULL, &err) < 0)
			kd_warn("event %s not posted: %s", reason, kd_err_msg(&err));
	}
	sync_metrics(a);
}

/* ---- labels
 * --------------------------------------------------------------------------------
 */

static const char *meta_get(struct json_object *node, const char *map, const char *key)
{
	struct json_object *meta, *labels, *v;
	if (json_object_object_get_ex(node, "metadata", &meta) &&
	    json_object_object_get_ex(meta, map, &labels) &&
	    json_object_object_get_ex(labels, key, &v) && json_object_is_type(v, json_type_string))
		return json_object_get_string(v);
	return NULL;
}

static const char *labels_get(struct json_object *node, const char *key)
{
	return meta_get(node, "labels", key);
}

/* Other installs' owner labels: any true (1), all false (0), none (-1). */
static int other_owners(struct json_object *node, const char *own)
{
	struct json_object *meta, *labels;
	int res = -1;

	if (!json_object_object_get_ex(node, "metadata", &meta) ||
	    !json_object_object_get_ex(meta, "labels", &labels))
		return -1;
	json_object_object_foreach(labels, key, val)
	{
		if (strncmp(key, KD_AGENT_OWNER_PREFIX, strlen(KD_AGENT_OWNER_PREFIX)) != 0 ||
		    strcmp(key, own) == 0)
			continue;
		if (json_object_is_type(val, json_type_string) &&
		    strcmp(json_object_get_string(val), "true") == 0)
			return 1;
		res = 0;
	}
	return res;
}

typedef enum { LABELS_CLAIM, LABELS_READY, LABELS_RELEASE, LABELS_UNCLAIM } label_op;
typedef struct label_ctx {
	const agent *a;
	label_op op;
} label_ctx;

static struct json_object *label_value(const char *v)
{
	return v ? json_object_new_string(v) : NULL; /* NULL = JSON null = remove */
}

/* Add key: want (NULL: remove) to the labels patch l unless the node has it so already. */
static void label_want(struct json_object *node, struct json_object *l, const char *key,
		       const char *want)
{
	const char *have = labels_get(node, key);
	if (want ? !have || strcmp(have, want) != 0 : have != NULL)
		json_object_object_add(l, key, label_value(want));
}

/* The per-shim labels (kd_agent_shim_label): READY sets those of the installed shims and
 * removes those of every other shim this agent knows, with our suffix; RELEASE removes them
 * all; CLAIM leaves them (a rolling update keeps serving the old install meanwhile). */
static void shim_labels(const label_ctx *c, struct json_object *node, struct json_object *l)
{
	char key[256];
	const char *shim;

	if (c->op == LABELS_CLAIM)
		return;
	for (size_t i = 0; (shim = kd_hostcheck_shim_at(i)); i++) {
		bool on = c->op == LABELS_READY && kd_strv_find(c->a->installed, shim);
		kd_agent_shim_label(c->a->s, shim, key, sizeof(key));
		label_want(node, l, key, on ? "true" : NULL);
	}
}

static int labels_mutate(struct json_object *node, struct json_object **ret_patch, void *ud,
			 kd_error *err)
{
	const label_ctx *c = ud;
	const char *own_want = NULL, *shared_want = NULL;
	const char *own = labels_get(node, c->a->owner), *shared = labels_get(node, KD_AGENT_LABEL);
	int others = other_owners(node, c->a->owner);

	/* A failed install takes back its claim, unless the claim kept "true": the installed
	 * version (the engine undid the failed run) still serves. */
	if (c->op == LABELS_UNCLAIM && own && strcmp(own, "true") == 0) {
		*ret_patch = NULL;
		return 0;
	}
	switch (c->op) {
	case LABELS_CLAIM:
		/* Never take "true" away from an install that is serving: another one, or ours
		 * (a rolling update, a restarted pod: the old version serves until the switch). */
		if (own && strcmp(own, "true") == 0 && shared && strcmp(shared, "true") == 0) {
			own_want = shared_want = "true";
			break;
		}
		own_want = "false";
		shared_want =
			shared && strcmp(shared, "true") == 0 && others == 1 ? "true" : "false";
		break;
	case LABELS_READY:
		own_want = shared_want = "true";
		break;
	case LABELS_RELEASE:
	case LABELS_UNCLAIM:
		own_want = NULL;
		shared_want = others == 1 ? "true" : others == 0 ? "false" : NULL;
		if (others == 1 && shared && strcmp(shared, "true") == 0)
			shared_want = shared;
		break;
	}
	struct json_object *p = json_object_new_object(), *m = json_object_new_object(),
			   *l = json_object_new_object();
	if (!p || !m || !l) {
		json_object_put(p);
		json_object_put(m);
		json_object_put(l);
		return kd_err(err, -ENOMEM, "out of memory");
	}
	label_want(node, l, c->a->owner, own_want);
	label_want(node, l, KD_AGENT_LABEL, shared_want);
	shim_labels(c, node, l);
	/* The release identity (which release installed which payload here): set with the ready
	 * labels, removed with them; a claim leaves the serving install's. */
	struct json_object *an = json_object_new_object();
	if (!an) {
		json_object_put(p);
		json_object_put(m);
		json_object_put(l);
		return kd_err(err, -ENOMEM, "out of memory");
	}
	if (c->op != LABELS_CLAIM) {
		const char *want = c->op == LABELS_READY ? c->a->identity : NULL;
		const char *have = meta_get(node, "annotations", c->a->identity_key);
		if (want ? !have || strcmp(have, want) != 0 : have != NULL)
			json_object_object_add(an, c->a->identity_key, label_value(want));
	}
	if (json_object_object_length(l) == 0 && json_object_object_length(an) == 0) {
		json_object_put(p);
		json_object_put(m);
		json_object_put(l);
		json_object_put(an);
		*ret_patch = NULL;
		return 0;
	}
	if (json_object_object_length(an))
		json_object_object_add(m, "annotations", an);
	else
		json_object_put(an);
	json_object_object_add(m, "labels", l);
	json_object_object_add(p, "metadata", m);
	*ret_patch = p;
	return 0;
}

static int set_labels(agent *a, label_op op, kd_error *err)
{
	label_ctx c = {a, op};
	static const char *const what[] = {"claim", "label ready", "release labels on",
					   "take back the claim on"};
	int r = kd_k8s_patch_guarded(a->k, a->node_path, labels_mutate, &c, NULL, err);
	sync_metrics(a);
	if (r < 0)
		return kd_err_wrap(err, r, "%s node %s", what[op], a->s->node_name);
	if (op == LABELS_CLAIM)
		kd_info("node %s claimed (%s, %s)", a->s->node_name, KD_AGENT_LABEL, a->owner);
	return 0;
}

/* Set the labels to true, then re-read until LABEL_STABLE_READS reads in a row
 * see them (some controllers revert labels they do not know). */
static int label_ready_stable(agent *a, kd_error *err)
{
	int stable = 0, r;

	for (int applies = 0; applies < 12; applies++) {
		r = set_labels(a, LABELS_READY, err);
		if (r < 0)
			return r;
		kd_info("node %s labelled %s=true and %s=true", a->s->node_name, KD_AGENT_LABEL,
			a->owner);
		for (stable = 1; stable < a->s->label_stable_reads; stable++) {
			_cleanup_json_ struct json_object *node = NULL;
			const char *v1, *v2;
			if (wait_or_term(a->s->poll_interval_ms))
				return 0;
			if ((r = get_node(a, &node, err)) < 0)
				return r;
			v1 = labels_get(node, KD_AGENT_LABEL);
			v2 = labels_get(node, a->owner);
			if (!v1 || !v2 || strcmp(v1, "true") != 0 || strcmp(v2, "true") != 0) {
				kd_warn("node %s: labels changed by someone else (%s=%s); setting "
					"them again",
					a->s->node_name, KD_AGENT_LABEL, v1 ? v1 : "(none)");
				break;
			}
		}
		if (stable >= a->s->label_stable_reads)
			return 0;
	}
	return kd_err(err, -EAGAIN, "node %s: labels keep being reverted by another writer",
		      a->s->node_name);
}

/* ---- taints
 * --------------------------------------------------------------------------------
 */

static bool taint_listed(const kd_agent_settings *s, const char *key, const char *effect)
{
	for (char **t = s->startup_taints; t && *t; t++) {
		const char *c = strchr(*t, ':');
		size_t klen = c ? (size_t)(c - *t) : strlen(*t);
		if (strlen(key) == klen && strncmp(*t, key, klen) == 0 &&
		    (!c || (effect && strcmp(c + 1, effect) == 0)))
			return true;
	}
	return false;
}

static int taints_mutate(struct json_object *node, struct json_object **ret_patch, void *ud,
			 kd_error *err)
{
	const agent *a = ud;
	struct json_object *spec = NULL, *taints = NULL, *keep;
	size_t removed = 0;

	if (json_object_object_get_ex(node, "spec", &spec))
		json_object_object_get_ex(spec, "taints", &taints);
	*ret_patch = NULL;
	if (!taints || !json_object_is_type(taints, json_type_array))
		return 0;
	keep = json_object_new_array();
	if (!keep)
		return kd_err(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < json_object_array_length(taints); i++) {
		struct json_object *t = json_object_array_get_idx(taints, i), *k = NULL, *e = NULL;
		json_object_object_get_ex(t, "key", &k);
		json_object_object_get_ex(t, "effect", &e);
		if (k && taint_listed(a->s, json_object_get_string(k),
				      e ? json_object_get_string(e) : NULL)) {
			removed++;
			continue;
		}
		json_object_array_add(keep, json_object_get(t));
	}
	if (!removed) {
		json_object_put(keep);
		return 0;
	}
	struct json_object *p = json_object_new_object(), *sp = json_object_new_object();
	json_object_object_add(sp, "taints", keep);
	json_object_object_add(p, "spec", sp);
	*ret_patch = p;
	return 0;
}

/* ---- the waits after a runtime restart
 * -------------------------------------------------- */

static int wait_ready(agent *a, kd_error *err)
{
	uint64_t deadline = now_ms() + (uint64_t)a->s->node_ready_timeout_s * 1000;

	for (;;) {
		_cleanup_json_ struct json_object *node = NULL;
		int r = get_node(a, &node, err);
		sync_metrics(a);
		if (r < 0)
			return r;
		if (kd_k8s_node_ready(node))
			return 0;
		if (now_ms() >= deadline)
			return kd_err(err, -ETIMEDOUT, "node %s not Ready after %d s",
				      a->s->node_name, a->s->node_ready_timeout_s);
		if (wait_or_term(a->s->poll_interval_ms))
			return kd_err(err, -EINTR, "terminated while waiting for node Ready");
	}
}

/* Our handlers in status.runtimeHandlers: all there = 0; some = warning; none
 * by the deadline = failure; the field absent (older kubelets) = nothing to
 * check. */
static int wait_handlers(agent *a, kd_error *err)
{
	uint64_t deadline = now_ms() + (uint64_t)a->s->handlers_timeout_s * 1000;

	for (;;) {
		_cleanup_json_ struct json_object *node = NULL;
		struct json_object *status = NULL, *list = NULL;
		size_t found = 0, want = kd_strv_length(a->handlers);
		char missing[512] = "";
		int r = get_node(a, &node, err);

		sync_metrics(a);
		if (r < 0)
			return r;
		if (json_object_object_get_ex(node, "status", &status))
			json_object_object_get_ex(status, "runtimeHandlers", &list);
		if (!list || !json_object_is_type(list, json_type_array)) {
			kd_info("node %s reports no status.runtimeHandlers; not checked",
				a->s->node_name);
			return 0;
		}
		for (char **h = a->handlers; *h; h++) {
			bool there = false;
			for (size_t i = 0; i < json_object_array_length(list) && !there; i++) {
				struct json_object *n = NULL;
				json_object_object_get_ex(json_object_array_get_idx(list, i),
							  "name", &n);
				there = n && strcmp(json_object_get_string(n), *h) == 0;
			}
			if (there)
				found++;
			else
				snprintf(missing + strlen(missing),
					 sizeof(missing) - strlen(missing), "%s%s",
					 missing[0] ? ", " : "", *h);
		}
		if (found == want)
			return 0;
		if (now_ms() >= deadline) {
			if (found > 0) {
				kd_warn("node %s: runtime handlers missing: %s", a->s->node_name,
					missing);
				return 0;
			}
			return kd_err(err, -ETIMEDOUT,
				      "node %s: the runtime does not report our handlers (%s) in "
				      "status.runtimeHandlers after %d s",
				      a->s->node_name, missing, a->s->handlers_timeout_s);
		}
		if (wait_or_term(a->s->poll_interval_ms))
			return kd_err(err, -EINTR, "terminated while waiting for runtime handlers");
	}
}

/* ---- install
 * -------------------------------------------------------------------------------
 */

static void engine_opts(const kd_agent_settings *s, kd_engine_opts *e, char *prefix, size_t size,
			char *state, size_t ssize)
{
	snprintf(prefix, size, "%s/opt/kata%s%s", s->installation_prefix,
		 *s->multi_install_suffix ? "-" : "", s->multi_install_suffix);
	if (*s->multi_install_suffix)
		snprintf(state, ssize, "%s/%s", KD_DEFAULT_STATE_DIR, s->multi_install_suffix);
	else
		snprintf(state, ssize, "%s", KD_DEFAULT_STATE_DIR);
	/* Explicit, also for "systemd": the engine's default for a root other than "/" is none. */
	*e = (kd_engine_opts){.prefix = prefix, .state_dir = state, .restart = s->runtime_restart};
}

static char *strv_join(char *const *v, char sep)
{
	size_t n = 1;
	char *out, *p;

	for (char *const *i = v; i && *i; i++)
		n += strlen(*i) + 1;
	out = p = malloc(n);
	if (!out)
		return NULL;
	for (char *const *i = v; i && *i; i++) {
		if (p != out)
			*p++ = sep;
		p = stpcpy(p, *i);
	}
	*p = '\0';
	return out;
}

static const char *nonempty(const char *v)
{
	return v && *v ? v : NULL;
}

/* The user drop-ins and custom runtimes directory, when it is there (an optional ConfigMap). */
static const char *custom_dir(const kd_agent_settings *s)
{
	struct stat st;
	if (!*s->custom_configs)
		return NULL;
	return s->custom_runtimes || (stat(s->custom_configs, &st) == 0 && S_ISDIR(st.st_mode))
		       ? s->custom_configs
		       : NULL;
}

/* The engine's runtime options from the settings and what the Node says it runs: the version
 * comes from containerRuntimeVersion, since the host's binary cannot be run from the pod. */
static int runtime_opts(agent *a, kd_runtime_opts *rt, kd_error *err)
{
	const kd_agent_settings *s = a->s;

	free(a->annotations);
	free(a->snapshotters);
	free(a->pull_types);
	free(a->setup_snapshotter);
	free(a->force_guest_pull);
	a->annotations = strv_join(s->allowed_hypervisor_annotations, ' ');
	a->snapshotters = strv_join(s->snapshotter_mapping, ',');
	a->pull_types = strv_join(s->pull_type_mapping, ',');
	a->setup_snapshotter = strv_join(s->setup_snapshotter, ',');
	a->force_guest_pull = strv_join(s->force_guest_pull, ',');
	if (!a->annotations || !a->snapshotters || !a->pull_types || !a->setup_snapshotter ||
	    !a->force_guest_pull)
		return kd_err(err, -ENOMEM, "out of memory");
	*rt = (kd_runtime_opts){
		.runtime = strcmp(a->rt.id, "crio") == 0 ? "crio" : "containerd",
		.runtime_version = nonempty(a->rt.version),
		.distribution = nonempty(s->k8s_distribution),
		.restart = s->runtime_restart,
		.suffix = nonempty(s->multi_install_suffix),
		.debug = s->debug,
		.devkit = s->devkit,
		.custom_configs = custom_dir(s),
		.custom_runtimes = s->custom_runtimes,
		.agent_https_proxy = nonempty(s->agent_https_proxy),
		.agent_no_proxy = nonempty(s->agent_no_proxy),
		.allowed_hypervisor_annotations = nonempty(a->annotations),
		.snapshotter_handler_mapping = nonempty(a->snapshotters),
		.pull_type_mapping = nonempty(a->pull_types),
		.default_shim = nonempty(s->default_shim),
		.snapshotter_setup = nonempty(a->setup_snapshotter),
		.erofs_merge_mode = nonempty(s->erofs_merge_mode),
		.erofs_snapshotter_mode = nonempty(s->erofs_snapshotter_mode),
		.erofs_dmverity = s->erofs_dmverity,
		.snapshotter_optional = true, /* a payload without nydus fails no node */
		.force_guest_pull = nonempty(a->force_guest_pull),
	};
	/* Upstream's containerd.userDropIn: containerd's, like upstream; CRI-O ignores it. */
	if (*s->containerd_user_drop_in && strcmp(a->rt.id, "crio") != 0)
		rt->containerd_user_dropin = s->containerd_user_drop_in;
	else if (*s->containerd_user_drop_in)
		kd_warn("CONTAINERD_USER_DROP_IN_SOURCE_FILE=%s: a containerd drop-in, and this "
			"node runs CRI-O: not installed",
			s->containerd_user_drop_in);
	/* Upstream's CONTAINERD_CONFIG_FILE_NAME: another file in /etc/containerd; the
	 * distributions keep their own config elsewhere and ignore it (as upstream). */
	a->ctd_config[0] = '\0';
	if (*s->containerd_config_file_name) {
		if (strcmp(a->rt.id, "containerd") == 0) {
			snprintf(a->ctd_config, sizeof(a->ctd_config), "etc/containerd/%s",
				 s->containerd_config_file_name);
			rt->config_path = a->ctd_config;
		} else
			kd_warn("CONTAINERD_CONFIG_FILE_NAME=%s is ignored: the node runs %s, "
				"whose configuration is not in /etc/containerd",
				s->containerd_config_file_name, a->rt.id);
	}
	return 0;
}

static int host_check(agent *a, const char *rv, kd_error *err)
{
	_cleanup_hostcheck_report_ kd_hostcheck_report *rep = NULL;
	char modules[PATH_BUF];
	struct utsname u;
	_cleanup_free_ char *snaps = strv_join(a->s->setup_snapshotter, ',');
	if (!snaps)
		return kd_err(err, -ENOMEM, "out of memory");
	kd_hostcheck_opts o = {
		.root = a->s->host_check_root,
		.runtime_version = rv,
		.shims = (const char *const *)a->s->shims,
		.skip_payload = true,
		.snapshotters = nonempty(snaps),
		.erofs_dmverity = a->s->erofs_dmverity,
	};
	char failed[EVENT_MESSAGE_MAX] = "";
	int r;

	/* The pod sees the host's /proc and /sys at "/" (its /dev is its own, and it may open no
	 * device), its modules and the runtime's config only under the host root. */
	if (strcmp(a->s->host_check_root, "/") == 0 && strcmp(a->s->host_root, "/") != 0 &&
	    uname(&u) == 0) {
		snprintf(modules, sizeof(modules), "%s/lib/modules/%s", a->s->host_root, u.release);
		o.modules_dir = modules;
		o.config_root = a->s->host_root;
		o.container = true;
	}
	r = kd_hostcheck_run(&o, &rep, err);
	if (r < 0)
		return kd_err_wrap(err, r, "host check");
	for (size_t i = 0; i < rep->n_shims; i++)
		if (!rep->shims[i].ok)
			snprintf(failed + strlen(failed), sizeof(failed) - strlen(failed),
				 "%s%s (%s)", failed[0] ? "; " : "", rep->shims[i].name,
				 rep->shims[i].failed ? rep->shims[i].failed : "?");
	if (!kd_hostcheck_any_ok(rep))
		return kd_err(err, -EOPNOTSUPP,
			      "host check: no enabled shim can run on this node: %s", failed);
	/* Upstream's host-check stage: a snapshotter that cannot work fails the node. */
	for (size_t i = 0; i < rep->n_checks; i++)
		if (!strncmp(rep->checks[i].id, "snapshotter.", 12) &&
		    rep->checks[i].status == KD_CHECK_FAIL)
			return kd_err(err, -EOPNOTSUPP,
				      "host check: EXPERIMENTAL_SETUP_SNAPSHOTTER: %s: %s%s%s",
				      rep->checks[i].id, rep->checks[i].detail,
				      rep->checks[i].fix ? "; " : "",
				      rep->checks[i].fix ? rep->checks[i].fix : "");
	if (failed[0]) {
		kd_warn("host check: some shims cannot run here: %s", failed);
		post_event(a, true, "HostCheckWarning", "HostCheck",
			   "some enabled shims cannot run on this node: %s", failed);
	}
	return 0;
}

/* The release identity this node records for the install (issue 15 item 7, what upstream's
 * state ConfigMap says per release, here per node): the Helm release, what manages the install
 * (daemonSet "<ns>/<name>"; in job mode "" and dispatcher "<ns>/<Job>"), the payload's version
 * and version directory, where it came from and the shims installed. JSON, readable with
 * kubectl get node -o jsonpath. */
static int set_identity(agent *a, const char *release, const char *daemonset,
			const char *dispatcher, const char *version, const char *id,
			const char *source, kd_error *err)
{
	_cleanup_json_ struct json_object *o = json_object_new_object();
	_cleanup_free_ char *shims = strv_join(a->installed, ' ');

	if (!o || !shims || json_object_object_add(o, "release", json_object_new_string(release)) ||
	    json_object_object_add(o, "daemonSet", json_object_new_string(daemonset)) ||
	    (dispatcher &&
	     json_object_object_add(o, "dispatcher", json_object_new_string(dispatcher))) ||
	    json_object_object_add(o, "payload", json_object_new_string(version)) ||
	    json_object_object_add(o, "id", json_object_new_string(id)) ||
	    json_object_object_add(o, "source", json_object_new_string(source)) ||
	    json_object_object_add(o, "shims", json_object_new_string(shims)))
		return kd_err(err, -ENOMEM, "out of memory");
	free(a->identity);
	a->identity = strdup(json_object_to_json_string_ext(
		o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	return a->identity ? 0 : kd_err(err, -ENOMEM, "out of memory");
}

/* DaemonSet mode: the release is our DaemonSet's app.kubernetes.io/instance label ("" when it
 * has none or cannot be read). */
static int install_identity(agent *a, const char *version, const char *id, kd_error *err)
{
	_cleanup_json_ struct json_object *ds = NULL;
	struct json_object *meta, *labels, *v;
	const char *release = "";
	char ns[300], name[300], path[PATH_BUF], dsname[600];
	kd_error e2 = {0};

	if (kd_k8s_escape(a->ns, ns, sizeof(ns)) == 0 &&
	    kd_k8s_escape(a->s->daemonset_name, name, sizeof(name)) == 0) {
		snprintf(path, sizeof(path), "/apis/apps/v1/namespaces/%s/daemonsets/%s", ns, name);
		if (kd_k8s_get(a->k, path, &ds, &e2) < 0)
			kd_debug("no release name: %s", kd_err_msg(&e2));
		else if (json_object_object_get_ex(ds, "metadata", &meta) &&
			 json_object_object_get_ex(meta, "labels", &labels) &&
			 json_object_object_get_ex(labels, "app.kubernetes.io/instance", &v) &&
			 json_object_is_type(v, json_type_string))
			release = json_object_get_string(v);
		sync_metrics(a);
	}
	snprintf(dsname, sizeof(dsname), "%s/%s", a->ns, a->s->daemonset_name);
	return set_identity(a, release, dsname, NULL, version, id, a->s->payload, err);
}

/* What the engine installed (installed is taken): the handlers to wait for and the shim labels
 * follow it. Enabled shims the payload does not have (skipped) are named (log, Warning Event)
 * into missing, not fatal: their RuntimeClasses select a shim label this node will not get. */
static int shims_installed(agent *a, char **installed, char *const *skipped, char *missing,
			   size_t size, kd_error *err)
{
	kd_strv_free(a->installed);
	kd_strv_free(a->handlers);
	a->installed = installed;
	a->handlers = kd_agent_handlers(a->s, a->installed);
	if (!a->installed || !a->handlers)
		return kd_err(err, -ENOMEM, "out of memory");
	missing[0] = '\0';
	for (char *const *x = skipped; x && *x; x++)
		snprintf(missing + strlen(missing), size - strlen(missing), "%s%s",
			 missing[0] ? ", " : "", *x);
	if (!missing[0])
		return 0;
	kd_warn("enabled shims not in the payload, not installed: %s (SHIMS_%s); their "
		"RuntimeClasses keep pods off this node",
		missing, a->s->arch);
	post_event(a, true, "ShimsMissing", "Install",
		   "enabled shims not in the payload, not installed on this node: %s; the others "
		   "are installed and their RuntimeClasses select %s<handler>",
		   missing, KD_AGENT_SHIM_LABEL_PREFIX);
	return 0;
}

/* A plain containerd whose config disables the CRI plugin (Docker's containerd.io package does
 * by default) serves no kubelet: the kubelet of this node talks to another runtime, and
 * handlers written here would never be used. Refused, with an Event that says why. */
static int refuse_cri_disabled(agent *a, kd_error *err)
{
	char path[PATH_BUF];
	_cleanup_free_ char *text = NULL;
	size_t len;
	char which[64];
	kd_error e = {0};

	snprintf(path, sizeof(path), "etc/containerd/%s",
		 *a->s->containerd_config_file_name ? a->s->containerd_config_file_name
						    : "config.toml");
	if (strcmp(a->rt.id, "containerd") != 0 ||
	    kd_read_file(a->rootfd, path, 4u << 20, &text, &len, &e) < 0 ||
	    kd_hostcheck_cri_disabled(text, len, which, sizeof(which), &e) <= 0)
		return 0;
	post_event(
		a, true, "CRIDisabled", "Install",
		"/%s disables containerd's CRI plugin (disabled_plugins contains \"%s\"): this "
		"node's kubelet cannot be using this containerd, so Kata handlers written to it "
		"would serve no pod; remove \"%s\" from disabled_plugins and restart containerd, "
		"or point the chart at the runtime the kubelet uses",
		path, which, which);
	return kd_err(err, -EOPNOTSUPP,
		      "/%s disables containerd's CRI plugin (disabled_plugins contains \"%s\"): "
		      "refusing to install Kata handlers that no kubelet would use",
		      path, which);
}

static const char *node_runtime_version(struct json_object *node)
{
	struct json_object *status = NULL, *info = NULL;
	const char *rv = NULL;

	if (json_object_object_get_ex(node, "status", &status) &&
	    json_object_object_get_ex(status, "nodeInfo", &info))
		(void)kd_json_get_string(info, "status.nodeInfo", "containerRuntimeVersion", false,
					 &rv, NULL);
	return rv;
}

/* The host's runtime from containerRuntimeVersion and the units; a CRI-disabled containerd is
 * refused. No API call: also the per-node Job's first step. */
static int host_detect(agent *a, const char *rv, kd_error *err)
{
	int r = kd_agent_detect(a->rootfd, rv, a->s->k8s_distribution, &a->rt, err);
	if (r < 0)
		return kd_err_wrap(err, r, "detect runtime");
	kd_info("runtime %s %s (%s), unit %s", a->rt.id, a->rt.version, a->rt.evidence, a->rt.unit);
	return refuse_cri_disabled(a, err);
}

/* Host checks and the engine: the host part of an install, no API call. */
static int host_install(agent *a, const char *rv, char *prefix, size_t psize,
			kd_install_result *res, kd_error *err)
{
	const kd_agent_settings *s = a->s;
	char state[PATH_BUF];
	kd_install_opts io = {0};
	int r;

	if (s->host_check && (r = host_check(a, rv, err)) < 0)
		return r;
	if (kd_agent_terminating())
		return kd_err(err, -EINTR, "terminated before the install");
	engine_opts(s, &io.e, prefix, psize, state, sizeof(state));
	io.payload = s->payload;
	io.sha256 = *s->payload_sha256 ? s->payload_sha256 : NULL;
	io.public_key = *s->payload_public_key ? s->payload_public_key : NULL;
	io.registry_auth = *s->payload_registry_auth ? s->payload_registry_auth : NULL;
	io.registry_ca = *s->payload_registry_ca ? s->payload_registry_ca : NULL;
	io.plain_http = s->payload_plain_http;
	io.shims = s->shims;
	io.skip_missing_shims = true; /* one missing component must not fail the node */
	if ((r = runtime_opts(a, &io.rt, err)) < 0)
		return r;
	r = kd_engine_install(a->rootfd, &io, res, err);
	if (r < 0)
		return kd_err_wrap(err, r, "install on %s", s->host_root);
	kd_info("payload %s %s in %s (%s); runtime config %s", res->version,
		res->changed ? "installed" : "already installed", prefix, res->id,
		res->config_changed ? "changed" : "unchanged");
	return 0;
}

/* After the engine: wait for Ready (when the runtime config changed and so the runtime was
 * restarted) and for the handlers, label, drop the startup taints, tell. */
static int finish_install(agent *a, uint64_t t0, bool config_changed, const char *version,
			  const char *prefix, const char *missing, kd_error *err)
{
	const kd_agent_settings *s = a->s;
	int r;

	if (config_changed) {
		if (strcmp(s->runtime_restart, "none") != 0)
			kd_agent_metric_inc(&kd_agent_metrics_now.runtime_restarts);
		if ((r = wait_ready(a, err)) < 0)
			return r;
	}
	if ((r = wait_handlers(a, err)) < 0)
		return r;
	if ((r = label_ready_stable(a, err)) < 0)
		return r;
	kd_agent_metric_set(&kd_agent_metrics_now.install_duration_ms, now_ms() - t0);
	if (s->startup_taints && s->startup_taints[0]) {
		kd_error terr = {0};
		r = kd_k8s_patch_guarded(a->k, a->node_path, taints_mutate, a, NULL, &terr);
		if (r < 0)
			kd_warn("startup taints not removed: %s", kd_err_msg(&terr));
		else if (r > 0)
			kd_info("startup taints removed from node %s", s->node_name);
	}
	post_event(a, false, "Installed", "Install",
		   "Kata Containers %s installed in %s (handlers %s...), runtime %s; "
		   "node labelled "
		   "%s=true in %.1f s%s%s",
		   version, prefix, a->handlers[0] ? a->handlers[0] : "none",
		   a->rt.id[0] ? a->rt.id : "?", KD_AGENT_LABEL, (double)(now_ms() - t0) / 1000.0,
		   missing[0] ? "; not in the payload, left out: " : "", missing);
	return 0;
}

static int install_steps(agent *a, uint64_t t0, kd_error *err)
{
	_cleanup_json_ struct json_object *node = NULL;
	const char *rv;
	char prefix[PATH_BUF], missing[EVENT_MESSAGE_MAX / 2] = "", version[128];
	kd_install_result res = {0};
	bool config_changed;
	int r;

	r = get_node(a, &node, err);
	sync_metrics(a);
	if (r < 0)
		return r;
	rv = node_runtime_version(node);
	if ((r = host_detect(a, rv, err)) < 0)
		return r;
	r = set_labels(a, LABELS_CLAIM, err);
	if (r < 0)
		return r;
	a->claimed = true;
	if ((r = host_install(a, rv, prefix, sizeof(prefix), &res, err)) < 0)
		return r;
	r = shims_installed(a, TAKE_PTR(res.shims), res.skipped, missing, sizeof(missing), err);
	if (r >= 0)
		r = install_identity(a, res.version, res.id, err);
	snprintf(version, sizeof(version), "%s", res.version);
	config_changed = res.config_changed;
	kd_install_result_done(&res);
	if (r < 0)
		return r;
	return finish_install(a, t0, config_changed, version, prefix, missing, err);
}

/* A failed install exits and the kubelet restarts the agent after a back-off: our claim ("false")
 * must not stay on the Node meanwhile, or after the release is uninstalled while the pod waits
 * in CrashLoopBackOff (no agent runs then to clean up): the labels are released as on uninstall
 * (the shared label stays "true" when another install serves the node). A claim that kept
 * "true" (a re-run or upgrade of a serving install) stays: that install still serves. Terminated,
 * the cleanup that follows decides. Best effort: the install's error is the one reported. */
static void release_failed_claim(agent *a)
{
	kd_error e2 = {0};

	if (!a->claimed || kd_agent_terminating())
		return;
	if (set_labels(a, LABELS_UNCLAIM, &e2) < 0)
		kd_warn("install failed and the claim stays on the node: %s", kd_err_msg(&e2));
	else
		kd_info("install failed: claim taken back on node %s (labels released unless "
			"the installed version serves)",
			a->s->node_name);
	kd_err_clear(&e2);
}

int kd_agent_install(const kd_agent_settings *s, const char *kubeconfig, kd_error *err)
{
	agent a;
	uint64_t t0 = now_ms();
	int r;

	kd_agent_metric_set(&kd_agent_metrics_now.state, KD_AGENT_INSTALLING);
	r = agent_open(&a, s, kubeconfig, true, err);
	if (r >= 0)
		r = install_steps(&a, t0, err);
	if (r < 0) {
		kd_agent_metric_inc(&kd_agent_metrics_now.errors);
		kd_agent_metric_set(&kd_agent_metrics_now.state, KD_AGENT_FAILED);
		if (a.k && a.node_uid[0])
			post_event(&a, true, "InstallFailed", "Install", "%s", kd_err_msg(err));
		release_failed_claim(&a);
	} else {
		kd_agent_metric_set(&kd_agent_metrics_now.state, KD_AGENT_INSTALLED);
		kd_agent_metric_set(&kd_agent_metrics_now.ready, 1);
	}
	sync_metrics(&a);
	agent_done(&a);
	return r;
}

/* ---- cleanup and reset
 * --------------------------------------------------------------------- */

/* Does our DaemonSet (existing, not being deleted) still select this node? */
static int daemonset_selects(agent *a, bool *ret, kd_error *err)
{
	_cleanup_json_ struct json_object *ds = NULL, *node = NULL;
	struct json_object *meta = NULL, *spec = NULL, *tmpl = NULL, *pspec = NULL, *dt = NULL;
	char ns[300], name[300], path[PATH_BUF];
	int r;

	if (kd_k8s_escape(a->ns, ns, sizeof(ns)) < 0 ||
	    kd_k8s_escape(a->s->daemonset_name, name, sizeof(name)) < 0)
		return kd_err(err, -EINVAL, "DAEMONSET_NAME or POD_NAMESPACE too long");
	snprintf(path, sizeof(path), "/apis/apps/v1/namespaces/%s/daemonsets/%s", ns, name);
	r = kd_k8s_get(a->k, path, &ds, err);
	sync_metrics(a);
	if (r == -ENOENT) {
		kd_info("DaemonSet %s/%s is gone: uninstalling", a->ns, a->s->daemonset_name);
		*ret = false;
		return 0;
	}
	if (r < 0)
		return r;
	if (json_object_object_get_ex(ds, "metadata", &meta) &&
	    json_object_object_get_ex(meta, "deletionTimestamp", &dt) && dt) {
		kd_info("DaemonSet %s/%s is being deleted: uninstalling", a->ns,
			a->s->daemonset_name);
		*ret = false;
		return 0;
	}
	if ((r = kd_json_get_object(ds, "", "spec", true, &spec, err)) < 0 ||
	    (r = kd_json_get_object(spec, "spec", "template", true, &tmpl, err)) < 0 ||
	    (r = kd_json_get_object(tmpl, "spec.template", "spec", true, &pspec, err)) < 0)
		return kd_err_wrap(err, r, "DaemonSet %s/%s", a->ns, a->s->daemonset_name);
	if ((r = get_node(a, &node, err)) < 0)
		return r;
	r = kd_k8s_pod_spec_selects_node(pspec, node, ret, err);
	if (r < 0)
		return kd_err_wrap(err, r, "DaemonSet %s/%s", a->ns, a->s->daemonset_name);
	kd_info("DaemonSet %s/%s %s node %s", a->ns, a->s->daemonset_name,
		*ret ? "still selects" : "no longer selects", a->s->node_name);
	return 0;
}

static int cleanup_steps(agent *a, bool force, kd_error *err)
{
	const kd_agent_settings *s = a->s;
	char prefix[PATH_BUF], state[PATH_BUF];
	kd_engine_opts eo;
	bool selects = false, changed = false;
	int r;

	if (!force) {
		r = daemonset_selects(a, &selects, err);
		if (r < 0)
			return kd_err_wrap(err, r,
					   "cannot tell a rolling update from an uninstall; "
					   "leaving the node installed");
		if (selects) {
			kd_info("rolling update: node %s stays installed", s->node_name);
			return 0;
		}
	}
	kd_agent_metric_set(&kd_agent_metrics_now.ready, 0);
	kd_agent_metric_set(&kd_agent_metrics_now.state, KD_AGENT_CLEANING);
	if ((r = set_labels(a, LABELS_RELEASE, err)) < 0)
		return r;
	{
		_cleanup_json_ struct json_object *node = NULL;
		struct json_object *status = NULL, *info = NULL;
		const char *rv = NULL;
		if ((r = get_node(a, &node, err)) < 0)
			return r;
		if (json_object_object_get_ex(node, "status", &status) &&
		    json_object_object_get_ex(status, "nodeInfo", &info))
			(void)kd_json_get_string(info, "", "containerRuntimeVersion", false, &rv,
						 NULL);
		if ((r = kd_agent_detect(a->rootfd, rv, s->k8s_distribution, &a->rt, err)) < 0)
			return kd_err_wrap(err, r, "detect runtime");
	}
	engine_opts(s, &eo, prefix, sizeof(prefix), state, sizeof(state));
	unsigned kept = 0;
	r = kd_engine_uninstall(a->rootfd, &eo, &changed, &kept, err);
	if (r < 0)
		return kd_err_wrap(err, r, "uninstall from %s", s->host_root);
	kd_info("%s", changed ? "Kata removed from the host" : "nothing was installed");
	if (changed) {
		if (strcmp(s->runtime_restart, "none") != 0)
			kd_agent_metric_inc(&kd_agent_metrics_now.runtime_restarts);
		terminating = false; /* the wait below must run during our own termination */
		if ((r = wait_ready(a, err)) < 0)
			return r;
	}
	post_event(a, false, "Uninstalled", "Uninstall", "Kata Containers removed from %s (%s%s)",
		   prefix, changed ? "runtime restarted" : "nothing was installed",
		   kept ? "; some host files changed since install were not restored exactly: see "
			  "the agent's log"
			: "");
	return 0;
}

int kd_agent_cleanup(const kd_agent_settings *s, const char *kubeconfig, bool force, kd_error *err)
{
	agent a;
	int r = agent_open(&a, s, kubeconfig, true, err);

	if (r >= 0)
		r = cleanup_steps(&a, force, err);
	if (r < 0) {
		kd_agent_metric_inc(&kd_agent_metrics_now.errors);
		if (a.k && a.node_uid[0])
			post_event(&a, true, "UninstallFailed", "Uninstall", "%s", kd_err_msg(err));
	}
	agent_done(&a);
	return r;
}

/* Reset restarts through the engine's restart (restart.h), as install and uninstall do: the
 * runtime of the flavour found on the host root, then, for plain containerd and CRI-O, the
 * kubelet, so it re-reads the runtime's handlers (k3s, rke2 and microk8s restart their kubelet
 * with the runtime unit; k0s reloads containerd.d itself). */
static int reset_restart(agent *a, kd_error *err)
{
	kd_runtime_opts rt;
	kd_flavour f, kubelet;
	int r;

	if ((r = runtime_opts(a, &rt, err)) < 0)
		return r;
	kd_flavour_opts fo = {
		.runtime = rt.runtime,
		.runtime_version = rt.runtime_version,
		.distribution = rt.distribution,
		.root_is_host = kd_root_is_host(a->rootfd),
	};
	if ((r = kd_flavour_detect(a->rootfd, &fo, &f, err)) < 0)
		return kd_err_wrap(err, r, "detect runtime on %s", a->s->host_root);
	if ((r = kd_restart(a->rootfd, a->s->runtime_restart, &f, fo.root_is_host, err)) < 0)
		return r;
	if (strcmp(a->s->runtime_restart, "none") != 0 && f.unit[0])
		kd_agent_metric_inc(&kd_agent_metrics_now.runtime_restarts);
	if (f.id != KD_FLAVOUR_CONTAINERD && f.id != KD_FLAVOUR_CRIO)
		return 0;
	/* A plain unit restart: never the CRI-O SIGHUP path. */
	kubelet = (kd_flavour){.id = KD_FLAVOUR_CONTAINERD, .major = -1};
	snprintf(kubelet.name, sizeof(kubelet.name), "kubelet");
	snprintf(kubelet.unit, sizeof(kubelet.unit), "kubelet.service");
	return kd_restart(a->rootfd, a->s->runtime_restart, &kubelet, fo.root_is_host, err);
}

int kd_agent_reset(const kd_agent_settings *s, const char *kubeconfig, kd_error *err)
{
	_cleanup_json_ struct json_object *node = NULL;
	struct json_object *status = NULL, *info = NULL;
	const char *rv = NULL;
	agent a;
	int r = agent_open(&a, s, kubeconfig, true, err);

	if (r >= 0)
		r = get_node(&a, &node, err);
	if (r >= 0) {
		if (json_object_object_get_ex(node, "status", &status) &&
		    json_object_object_get_ex(status, "nodeInfo", &info))
			(void)kd_json_get_string(info, "", "containerRuntimeVersion", false, &rv,
						 NULL);
		r = kd_agent_detect(a.rootfd, rv, s->k8s_distribution, &a.rt, err);
	}
	if (r >= 0)
		r = set_labels(&a, LABELS_RELEASE, err);
	if (r >= 0)
		r = reset_restart(&a, err);
	if (r >= 0)
		r = wait_ready(&a, err);
	if (r >= 0)
		post_event(&a, false, "Reset", "Reset", "labels released, %s restarted", a.rt.unit);
	else if (a.k && a.node_uid[0])
		post_event(&a, true, "ResetFailed", "Reset", "%s", kd_err_msg(err));
	agent_done(&a);
	return r;
}

/* ---- job mode (node-agent/jobmode.c): the host part in the per-node Job, the API part in
 * the dispatcher ------------------------------------------------------------------------- */

void kd_agent_job_result_done(kd_agent_job_result *r)
{
	kd_strv_free(r->installed);
	kd_strv_free(r->skipped);
	*r = (kd_agent_job_result){0};
}

int kd_agent_job_host(const kd_agent_settings *s, bool cleanup, kd_agent_job_result *res,
		      kd_error *err)
{
	const char *rv = *s->node_runtime_version ? s->node_runtime_version : NULL;
	char prefix[PATH_BUF], state[PATH_BUF];
	agent a = {.s = s, .rootfd = -1, .collect = res};
	int r;

	*res = (kd_agent_job_result){0};
	a.rootfd = kd_root_open(s->host_root, err);
	if (a.rootfd < 0) {
		r = kd_err_wrap(err, a.rootfd, "HOST_ROOT=%s", s->host_root);
		goto out;
	}
	if (cleanup) {
		kd_engine_opts eo;
		bool changed = false;
		r = kd_agent_detect(a.rootfd, rv, s->k8s_distribution, &a.rt, err);
		if (r < 0) {
			r = kd_err_wrap(err, r, "detect runtime");
			goto out;
		}
		engine_opts(s, &eo, prefix, sizeof(prefix), state, sizeof(state));
		r = kd_engine_uninstall(a.rootfd, &eo, &changed, &res->kept, err);
		if (r < 0) {
			r = kd_err_wrap(err, r, "uninstall from %s", s->host_root);
			goto out;
		}
		kd_info("%s", changed ? "Kata removed from the host" : "nothing was installed");
		res->config_changed = changed;
	} else {
		kd_install_result ir = {0};
		if ((r = host_detect(&a, rv, err)) < 0 ||
		    (r = host_install(&a, rv, prefix, sizeof(prefix), &ir, err)) < 0)
			goto out;
		res->installed = TAKE_PTR(ir.shims);
		res->skipped = TAKE_PTR(ir.skipped);
		res->config_changed = ir.config_changed;
		snprintf(res->version, sizeof(res->version), "%s", ir.version);
		snprintf(res->id, sizeof(res->id), "%s", ir.id);
		snprintf(res->source, sizeof(res->source), "%s", s->payload);
		kd_install_result_done(&ir);
		if (!res->installed) {
			r = kd_err(err, -ENOMEM, "out of memory");
			goto out;
		}
	}
	snprintf(res->prefix, sizeof(res->prefix), "%s", prefix);
	snprintf(res->runtime, sizeof(res->runtime), "%s", a.rt.id);
	r = 0;
out:
	agent_done(&a);
	return r;
}

/* The host Events a per-node Job's result carried, posted on its Node as the DaemonSet's agent
 * would have; only the reasons the host part posts. */
static void post_host_events(agent *a, const kd_agent_job_result *jr)
{
	for (size_t i = 0; i < jr->n_events && i < KD_AGENT_HOST_EVENTS_MAX; i++) {
		const kd_agent_host_event *e = &jr->events[i];
		if (!kd_agent_host_event_known(e->reason)) {
			kd_warn("node %s: the Job's result carries an Event %s we do not post: ignored",
				a->s->node_name, e->reason);
			continue;
		}
		post_event(a, e->warning, e->reason, e->action, "%s", e->message);
	}
	if (jr->events_dropped)
		kd_warn("node %s: %u Event(s) of the Job were left out of its result (too many or "
			"too long): see the Job's log",
			a->s->node_name, jr->events_dropped);
}

int kd_agent_job_dispatch(const kd_agent_settings *s, const char *kubeconfig, bool cleanup,
			  const kd_agent_job_owner *owner, kd_agent_job_run_fn run, void *ud,
			  kd_error *err)
{
	_cleanup_json_ struct json_object *node = NULL;
	kd_agent_job_result jr = {0};
	char missing[EVENT_MESSAGE_MAX / 2] = "";
	uint64_t t0 = now_ms();
	agent a;
	int r = agent_open(&a, s, kubeconfig, false, err);
	bool ran = false;

	if (r >= 0)
		r = get_node(&a, &node, err);
	if (r >= 0)
		r = set_labels(&a, cleanup ? LABELS_RELEASE : LABELS_CLAIM, err);
	if (r >= 0) {
		a.claimed = !cleanup;
		r = run(node_runtime_version(node), &jr, ud, err);
		ran = true;
	}
	if (ran && a.node_uid[0])
		post_host_events(&a, &jr);
	if (r >= 0) {
		snprintf(a.rt.id, sizeof(a.rt.id), "%s", jr.runtime);
		if (cleanup) {
			r = wait_ready(&a, err);
			if (r >= 0)
				post_event(
					&a, false, "Uninstalled", "Uninstall",
					"Kata Containers removed from %s by a per-node Job (%s%s)",
					jr.prefix,
					jr.config_changed ? "runtime restarted"
							  : "nothing was installed",
					jr.kept ? "; some host files changed since install were "
						  "not restored exactly: see the Job's log"
						: "");
		} else {
			r = shims_installed(&a, TAKE_PTR(jr.installed), jr.skipped, missing,
					    sizeof(missing), err);
			/* The identity goes on with the ready labels (labels_mutate). */
			if (r >= 0)
				r = set_identity(
					&a, owner && owner->release ? owner->release : "", "",
					owner && owner->dispatcher ? owner->dispatcher : "",
					jr.version, jr.id, jr.source, err);
			/* Ready is always waited for: the result may come from a retried
			 * pod (the first one's exit fell into the runtime's restart and the
			 * kubelet reported it Unknown), whose re-run changed nothing. */
			if (r >= 0)
				r = finish_install(&a, t0, true, jr.version, jr.prefix, missing,
						   err);
		}
	}
	if (r < 0 && a.k && a.node_uid[0]) {
		post_event(&a, true, cleanup ? "UninstallFailed" : "InstallFailed",
			   cleanup ? "Uninstall" : "Install", "%s", kd_err_msg(err));
		if (!cleanup)
			release_failed_claim(&a);
	}
	kd_agent_job_result_done(&jr);
	agent_done(&a);
	return r;
}
