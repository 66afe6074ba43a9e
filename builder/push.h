/* Push an OCI layout to a registry with the distribution API over lib/registry: HEAD to skip
 * blobs the repository has, a cross-repository mount when asked, a monolithic POST + PUT upload
 * otherwise, then the manifest PUT by tag. lib/registry answers 401 with the registry's
 * challenge: Bearer (token from the realm, basic credentials from the environment) or Basic. */
#pragma once

#include <stdbool.h>

#include "err.h"
#include "oci.h"

#define KD_REGISTRY_USER_ENV "KATA_BUILD_REGISTRY_USER"
#define KD_REGISTRY_PASSWORD_ENV "KATA_BUILD_REGISTRY_PASSWORD"

typedef struct kd_push_opts {
	const char *layout;	/* OCI layout directory (kd_oci_build) */
	const char *target;	/* HOST[:PORT]/REPOSITORY */
	const char *tag;	/* manifest tag */
	bool plain_http;	/* http:// instead of https:// (loopback test registries) */
	const char *mount_from; /* optional repository on the same registry to mount blobs from */
	const char *ca_file;	/* optional CA bundle */
	int retries;		/* lib/http retries on 5xx/timeouts; 0 = its default, <0 none */
} kd_push_opts;

typedef struct kd_push_stats {
	unsigned blobs_uploaded, blobs_present, blobs_mounted;
} kd_push_stats;

/* ret_digest gets the manifest digest the registry stored ("sha256:..."). */
int kd_registry_push(const kd_push_opts *o, char ret_digest[KD_OCI_DIGEST_MAX],
		     kd_push_stats *ret_stats, kd_error *err);
