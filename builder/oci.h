/* OCI image layout (image-spec v1.1 "oci-layout", index.json, blobs/sha256/) of the node agent
 * image: layer 1 everything the agent uses at run time, so the image runs FROM scratch: the
 * agent and its waiter at /usr/bin/, the shared libraries they link and the ones the engine
 * dlopens (KD_OCI_DLOPEN_LIBS) with theirs, the CA bundle libcurl reads, /tmp and /var/tmp;
 * layer 2 (unless left out) the payload at /opt/kata-artifacts/payload.tar.zst. Every byte is
 * a function of the inputs: sorted tar entries, fixed mtime, gzip without a name or time,
 * canonical JSON, created = SOURCE_DATE_EPOCH. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "err.h"

#define KD_OCI_AGENT_PATH "usr/bin/kata-deploy-agent"
/* Where the agent looks for its waiter: next to itself (node-agent/main.c). */
#define KD_OCI_WAITER_PATH "usr/bin/kata-deploy-agent-wait"
/* Where Debian's libcurl looks for CA certificates (its built-in CURLOPT_CAINFO). */
#define KD_OCI_CA_BUNDLE "etc/ssl/certs/ca-certificates.crt"
/* Libraries the agent opens with dlopen, by soname: the systemd restart over D-Bus
 * (deployer/restart.c), URL payloads and the API client (lib/http.c), and archives other than
 * tar and tar.zst (lib/tarball.c).
 * tests/integration/test-image.sh checks this list against the dlopen calls in the sources. */
#define KD_OCI_DLOPEN_LIBS                                                                         \
	{                                                                                          \
		"libsystemd.so.0", "libcurl.so.4", "libarchive.so.13"                              \
	}
#define KD_OCI_PAYLOAD_PATH "opt/kata-artifacts/payload.tar.zst"
#define KD_OCI_MT_INDEX "application/vnd.oci.image.index.v1+json"
#define KD_OCI_MT_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define KD_OCI_MT_CONFIG "application/vnd.oci.image.config.v1+json"
#define KD_OCI_MT_LAYER "application/vnd.oci.image.layer.v1.tar"
#define KD_OCI_MT_LAYER_GZIP "application/vnd.oci.image.layer.v1.tar+gzip"
#define KD_OCI_MT_EMPTY "application/vnd.oci.empty.v1+json"
#define KD_OCI_MAX_JSON (4u << 20) /* bytes of index.json or a manifest we read */
#define KD_OCI_MAX_LIBS 128u	   /* shared libraries bundled with the agent */
#define KD_OCI_DIGEST_MAX 72	   /* "sha256:" + 64 hex + NUL */

typedef struct kd_oci_opts {
	const char *layout;    /* output directory (created; replaced if it exists) */
	const char *agent;     /* node agent binary */
	const char *waiter;    /* its idle waiter binary; NULL: none (the agent idles as itself) */
	const char *ca_bundle; /* CA certificates (PEM) for TLS downloads; NULL: none */
	const char *payload;   /* payload file; NULL: no payload layer (the agent pulls its
				  payload from elsewhere: a URL or an oci:// artifact) */
	const char *tag;       /* org.opencontainers.image.ref.name in index.json */
	const char *version;   /* org.opencontainers.image.version */
	int64_t created;       /* SOURCE_DATE_EPOCH */
	bool bundle_libs;      /* add the shared libraries (ldd, KD_OCI_DLOPEN_LIBS) */
} kd_oci_opts;

int kd_oci_build(const kd_oci_opts *o, char ret_digest[KD_OCI_DIGEST_MAX], kd_error *err);

/* A format 2 payload as an OCI artifact (docs/PAYLOAD.md "In a registry"): an empty config and
 * one layer per kd_payload_blobs() range (the manifest's frame, each component's frame, the end
 * with the index), so a node pulls only the components its shims need. */
typedef struct kd_oci_payload_opts {
	const char *layout;  /* output directory (created; replaced if it exists) */
	const char *payload; /* format 2 payload file */
	const char *tag;     /* org.opencontainers.image.ref.name in index.json */
	int64_t created;     /* SOURCE_DATE_EPOCH */
} kd_oci_payload_opts;
int kd_oci_build_payload(const kd_oci_payload_opts *o, char ret_digest[KD_OCI_DIGEST_MAX],
			 kd_error *err);
/* A signature artifact for the manifest subject ("sha256:<hex>"): its one layer is the
 * signature of KD_PAYLOAD_OCI_SIG_CONTEXT + subject with sign_key, tagged tag. */
int kd_oci_build_signature(const char *layout, const char *subject, const char *sign_key,
			   const char *tag, kd_error *err);

/* The OCI architecture name of this machine ("amd64", "arm64", ...). */
const char *kd_oci_arch(void);

typedef struct kd_oci_blob {
	char digest[KD_OCI_DIGEST_MAX];
	char *media_type;
	uint64_t size;
} kd_oci_blob;

/* The one image of a layout: its manifest (bytes, digest) and the blobs it references,
 * config first. Every digest is checked against the blob file. */
typedef struct kd_oci_image {
	char *manifest;
	size_t manifest_len;
	char manifest_digest[KD_OCI_DIGEST_MAX];
	kd_oci_blob *blobs;
	size_t n_blobs;
} kd_oci_image;

int kd_oci_read(const char *layout, kd_oci_image **ret, kd_error *err);
void kd_oci_image_free(kd_oci_image *img);
/* Path of a blob in a layout (malloc'ed). */
char *kd_oci_blob_path(const char *layout, const char *digest);

DEFINE_CLEANUP(kd_oci_image *, kd_oci_image_free)
#define _cleanup_oci_image_ _cleanup_(kd_oci_image_freep)
