/* A small Kubernetes API client over lib/http: configuration from inside a pod (service-account
 * token re-read when it rotates, CA, namespace) or from a kubeconfig file; JSON requests with
 * retries, a response limit and errors that carry the API's Status ("patch nodes/n1: 403
 * Forbidden: nodes \"n1\" is forbidden: ..."); merge patches guarded by resourceVersion,
 * server-side apply, and the nodeSelector / node affinity rules the scheduler applies. */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define KD_K8S_SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"
#define KD_K8S_MAX_RESPONSE (32u * 1024 * 1024)	 /* bytes of one API answer */
#define KD_K8S_TOKEN_MAX (64u * 1024)		 /* bytes of a bearer token file */
#define KD_K8S_CERT_MAX (1u * 1024 * 1024)	 /* bytes of decoded *-data in a kubeconfig */
#define KD_K8S_KUBECONFIG_MAX (4u * 1024 * 1024) /* bytes of a kubeconfig file */
#define KD_K8S_DEFAULT_RETRIES 8      /* on connection errors, 429 and 5xx (about 100 s) */
#define KD_K8S_DEFAULT_BACKOFF_MS 400 /* first wait, doubled each retry, with jitter */
#define KD_K8S_DEFAULT_TIMEOUT_S 30   /* one attempt */
#define KD_K8S_CONFLICT_RETRIES 8     /* re-reads of an object after 409 Conflict */
#define KD_K8S_URL_MAX 2048
#define KD_K8S_READYZ_MAX (64u * 1024) /* bytes of /readyz, asked after a 403 */

typedef struct kd_k8s kd_k8s;

typedef struct kd_k8s_opts {
	const char *kubeconfig; /* a kubeconfig path; NULL: $KUBECONFIG (first existing entry),
				   then in-cluster */
	const char *context;	/* kubeconfig context; NULL: current-context */
	const char *sa_dir;	/* in-cluster files; NULL: KD_K8S_SA_DIR */
	bool in_cluster;	/* ignore $KUBECONFIG: in-cluster unless kubeconfig is given */
	int retries;		/* 0: KD_K8S_DEFAULT_RETRIES; < 0: none */
	long backoff_ms;	/* 0: KD_K8S_DEFAULT_BACKOFF_MS */
	long timeout_s;		/* 0: KD_K8S_DEFAULT_TIMEOUT_S */
	const char *user_agent; /* NULL: "kata-deploy" */
} kd_k8s_opts;

/* Counters since kd_k8s_new, safe to read from another thread. */
typedef struct kd_k8s_stats {
	uint64_t requests;  /* API calls made (a call retried by lib/http counts once) */
	uint64_t failures;  /* calls that ended in an error (transport or non-2xx) */
	uint64_t conflicts; /* 409 Conflict answers to guarded patches */
	uint64_t token_reloads;
} kd_k8s_stats;

int kd_k8s_new(const kd_k8s_opts *o, kd_k8s **ret, kd_error *err);
void kd_k8s_free(kd_k8s *k);
DEFINE_CLEANUP(kd_k8s *, kd_k8s_free)
#define _cleanup_k8s_ _cleanup_(kd_k8s_freep)

/* "https://10.96.0.1:443"; where the configuration came from ("in-cluster /var/run/...",
 * "kubeconfig /root/.kube/config context kind"); the namespace of the context or of the
 * service account ("default" when neither says). */
const char *kd_k8s_server(const kd_k8s *k);
const char *kd_k8s_source(const kd_k8s *k);
const char *kd_k8s_namespace(const kd_k8s *k);
void kd_k8s_get_stats(const kd_k8s *k, kd_k8s_stats *ret);

/* One call. path is absolute ("/api/v1/nodes/n1"), query included. body may be NULL. On a 2xx
 * answer returns 0 and *ret (may be NULL) gets the parsed body (NULL for an empty one). Other
 * answers return -ENOENT (404, 410), -EACCES (401, 403), -ESTALE (409 Conflict), -EEXIST (409
 * AlreadyExists), -EINVAL (400, 422), -EAGAIN (429, 503 after the retries), -EIO (others), and
 * err reads "<verb> <resource>/<name>: <code> <reason>: <Status message>". */
int kd_k8s_request(kd_k8s *k, const char *method, const char *path, const char *content_type,
		   const char *body, size_t body_len, struct json_object **ret, kd_error *err);

int kd_k8s_get(kd_k8s *k, const char *path, struct json_object **ret, kd_error *err);
int kd_k8s_create(kd_k8s *k, const char *path, struct json_object *obj, struct json_object **ret,
		  kd_error *err);
int kd_k8s_replace(kd_k8s *k, const char *path, struct json_object *obj, struct json_object **ret,
		   kd_error *err);
int kd_k8s_delete(kd_k8s *k, const char *path, kd_error *err);
/* application/merge-patch+json. */
int kd_k8s_merge_patch(kd_k8s *k, const char *path, struct json_object *patch,
		       struct json_object **ret, kd_error *err);
/* Server-side apply (application/apply-patch+yaml; JSON is YAML) with a field manager. */
int kd_k8s_apply(kd_k8s *k, const char *path, struct json_object *obj, const char *field_manager,
		 bool force, struct json_object **ret, kd_error *err);

/* Read-modify-write without lost updates: GET path, let fn compute a merge patch from the
 * object (*ret_patch = NULL: nothing to change), send it with metadata.resourceVersion set to
 * what was read, and start over on 409 Conflict (at most KD_K8S_CONFLICT_RETRIES times). *ret
 * (may be NULL) gets the object as it is afterwards. Returns 1 when a patch was sent, 0 when fn
 * had nothing to change. */
typedef int (*kd_k8s_mutate_fn)(struct json_object *obj, struct json_object **ret_patch,
				void *userdata, kd_error *err);
int kd_k8s_patch_guarded(kd_k8s *k, const char *path, kd_k8s_mutate_fn fn, void *userdata,
			 struct json_object **ret, kd_error *err);

/* Would a pod with this spec (its nodeSelector and required node affinity) be placed on this
 * Node? Errors (-EINVAL) name the malformed field. Taints are not considered. */
int kd_k8s_pod_spec_selects_node(struct json_object *pod_spec, struct json_object *node, bool *ret,
				 kd_error *err);

/* "status.conditions[type=Ready].status == True". */
bool kd_k8s_node_ready(struct json_object *node);

/* Percent-encode one path segment or query value. */
int kd_k8s_escape(const char *s, char *buf, size_t size);
