/* `kata-build payload`: merge component tarballs into the install engine's payload (lib/payload,
 * docs/PAYLOAD.md). Each component becomes a payload component claiming exactly the paths its
 * tarball holds; the shim -> components map comes from artifacts/shims.yaml. */
#pragma once

#include "build.h"

typedef struct kd_payload_build_opts {
	const char *output;	 /* payload file */
	const char *sign_key;	 /* optional private key PEM */
	const char *sign_pubkey; /* optional public key PEM (recorded in the manifest) */
	char **components;	 /* NULL = every component the shims need */
} kd_payload_build_opts;

/* Builds (or takes from the cache) every component first. ret_sha256 gets the payload's. */
int kd_build_payload(const kd_build_opts *o, const kd_shims *shims, const kd_payload_build_opts *po,
		     char ret_sha256[65], kd_error *err);
