/* OCI distribution API client, both directions (push in builder/, pull in deployer/): image
 * references, requests that answer a 401 with the registry's WWW-Authenticate challenge (Bearer:
 * a token from the realm, with basic credentials when we have them; Basic) and repeat, resumable
 * blob downloads checked against their digest, and credentials from a docker config file
 * ("auths", as in a kubernetes.io/dockerconfigjson Secret). Knows nothing of what images hold. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "http.h"

#define KD_REGISTRY_MAX_TOKEN (64u * 1024)   /* bytes of a token answer */
#define KD_REGISTRY_MAX_AUTH_TRIES 2	     /* 401 answers we act on per request */
#define KD_REGISTRY_MAX_MANIFEST (4u << 20)  /* bytes of a manifest we read */
#define KD_REGISTRY_MAX_AUTH_FILE (1u << 20) /* bytes of a docker config file */
#define KD_REGISTRY_MAX_REF 1024u	     /* bytes of a reference */
#define KD_REGISTRY_DIGEST_MAX 72	     /* "sha256:" + 64 hex + NUL */
#define KD_REGISTRY_MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"

/* "host[:port]/repository[:tag|@sha256:hex]". */
typedef struct kd_registry_ref {
	char *host;   /* "registry.example:5000" */
	char *repo;   /* "kata/payload" */
	char *tag;    /* NULL when the reference is by digest */
	char *digest; /* "sha256:<hex>" or NULL */
} kd_registry_ref;

/* Parse a reference (without a scheme). The repository is lowercase [a-z0-9._/-] components
 * as the distribution spec says; a tag is [A-Za-z0-9_][A-Za-z0-9._-]{0,127}. No default host
 * and no default tag: the caller names the registry, and "latest" is not assumed. */
int kd_registry_ref_parse(const char *s, kd_registry_ref *ret, kd_error *err);
void kd_registry_ref_done(kd_registry_ref *r);

/* Basic credentials for host from a docker config file (`{"auths": {"host": {"auth":
 * base64("user:pass")} | {"username", "password"}}}`, the content of a dockerconfigjson
 * Secret; a key may also be "https://host" or "http://host[/v1/]"). 0 with *ret_user NULL when
 * the file has nothing for host. */
int kd_registry_auth_file(const char *path, const char *host, char **ret_user, char **ret_password,
			  kd_error *err);

typedef struct kd_registry_opts {
	const char *host;     /* "host[:port]" */
	const char *repo;     /* repository */
	bool plain_http;      /* http:// instead of https:// */
	const char *actions;  /* token scope actions: "pull" or "pull,push" */
	const char *username; /* basic credentials (token realm or Basic), optional */
	const char *password;
	const char *cred_hint; /* what to tell a user whose credentials are missing or wrong,
				  e.g. "set KATA_BUILD_REGISTRY_USER and ..." */
	kd_http_opts http;     /* user agent, CA file, retries, progress */
} kd_registry_opts;

typedef struct kd_registry kd_registry;

int kd_registry_new(const kd_registry_opts *o, kd_registry **ret, kd_error *err);
void kd_registry_free(kd_registry *g);
/* "https://host:port" */
const char *kd_registry_base(const kd_registry *g);
const char *kd_registry_repo(const kd_registry *g);

/* A request with the current Authorization header and extra_hdr (one "Name: value" line or
 * NULL); on a 401 answer the challenge once and repeat. Any other answer is returned. */
int kd_registry_do(kd_registry *g, kd_http_request *req, const char *extra_hdr,
		   kd_http_response *resp, kd_error *err);
/* The answer that is not the expected one, as an error ("GET url: HTTP 404 Not Found: ..."). */
int kd_registry_unexpected(const kd_http_request *req, const kd_http_response *resp, kd_error *err);

/* GET /v2/<repo>/manifests/<tag or digest> accepting the OCI manifest type; the bytes (at most
 * KD_REGISTRY_MAX_MANIFEST), their "sha256:<hex>" and media type (malloc'ed). When reference
 * is a digest, the bytes must hash to it. */
int kd_registry_get_manifest(kd_registry *g, const char *reference, char **ret_body,
			     size_t *ret_len, char ret_digest[KD_REGISTRY_DIGEST_MAX],
			     char **ret_media_type, kd_error *err);

/* Download blob digest ("sha256:<hex>", size bytes) into fd, which already holds its first
 * `from` bytes (a partial download kept from an earlier run: Range asks for the rest), then
 * hash the whole file: -EBADMSG when it is not the blob. *ret_fetched (optional) gets the bytes
 * this call received. */
int kd_registry_get_blob(kd_registry *g, const char *digest, uint64_t size, int fd, uint64_t from,
			 uint64_t *ret_fetched, kd_error *err);

static inline void kd_registry_freep(kd_registry **g)
{
	kd_registry_free(*g);
}
#define _cleanup_registry_ _cleanup_(kd_registry_freep)
