/* A payload pulled from an OCI registry (oci://HOST[:PORT]/REPO:TAG or @sha256:HEX, published by
 * `kata-build push --payload`): the artifact's manifest, authenticated by a pinned digest or a
 * signature, then only the blobs of the chosen shims' components (resumable, cached by digest,
 * each checked before use), laid out in an unnamed file exactly where they sit in the whole
 * payload, for kd_payload_open's partial mode (docs/PAYLOAD.md "In a registry"). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "err.h"

#define KD_PULL_SCHEME "oci://"
#define KD_PULL_CACHE_NAME "kata-deploy-blobs" /* under $TMPDIR or /var/tmp */
#define KD_PULL_MAX_LAYERS 1026u	       /* the payload's frame limit */
#define KD_PULL_SIG_MAX 4096u		       /* bytes of a signature blob */

typedef struct kd_pull_opts {
	const char *ref;	/* "oci://..." */
	const char *pin;	/* hex sha256 the artifact's manifest must have, or NULL */
	const char *public_key; /* verify the manifest's signature with this key */
	const char *signature;	/* its file or URL; NULL: the registry's tag sha256-<hex>.sig */
	char *const *shims;	/* NULL: every shim of the payload */
	const char *arch;	/* the root's machine (kd_install_check_arch), NULL: ours */
	bool skip_missing;	/* shims the payload lacks are left out (the engine says
				   which), not refused */
	const char *auth_file;	/* docker config JSON with credentials, optional */
	const char *ca_file;	/* CA bundle for the registry (and token realm), optional */
	const char *cache_dir;	/* NULL: $TMPDIR (else /var/tmp) / KD_PULL_CACHE_NAME */
	bool plain_http;	/* http:// to the registry */
	bool progress;		/* download progress on stderr */
	const char *snapshotter_setup; /* "nydus": the nydus-snapshotter component too */
	bool debug;		       /* the debug tools' components too (kata-ctl) */
} kd_pull_opts;

typedef struct kd_pull_result {
	int fd;			  /* the assembled payload (unnamed file), -1 */
	char manifest_digest[65]; /* hex sha256 of the artifact's manifest */
	char frame0_sha256[65];	  /* hex sha256 of the payload manifest's frame */
	bool *present;		  /* per component: its frame is in fd */
	size_t n_components;
	unsigned blobs_fetched, blobs_cached; /* of the blobs used */
	uint64_t bytes_fetched;		      /* received from the registry in this run */
	uint64_t bytes_cached;		      /* taken from complete blobs in the cache */
	uint64_t bytes_resumed;		      /* partial downloads kept from an earlier run */
	uint64_t bytes_used, bytes_artifact;  /* blobs used; every layer of the artifact */
} kd_pull_result;

bool kd_is_oci_ref(const char *s);
int kd_pull_payload(const kd_pull_opts *o, kd_pull_result *ret, kd_error *err);
void kd_pull_result_done(kd_pull_result *r);
