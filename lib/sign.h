/* Detached signatures over OpenSSL EVP_PKEY with PEM key files. The key type decides the
 * algorithm: Ed25519 (pure, no pre-hash) or ECDSA P-256 with SHA-256 (DER signature). Every
 * other key type (RSA, other curves, Ed448) is refused with an error naming the key file. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* Bounds on what we read from outsiders. */
#define KD_SIGN_KEY_MAX (64 * 1024) /* bytes in a PEM key file */
#define KD_SIGN_SIG_MAX 512	    /* bytes in a detached signature */

/* Generate an Ed25519 key pair. The private key is written with mode 0600 and must not exist
 * yet (-EEXIST); the public key (SubjectPublicKeyInfo PEM) is written with mode 0644. */
int kd_sign_keygen(const char *priv_pem_path, const char *pub_pem_path, kd_error *err);

/* Sign msg with a private key; *ret_sig is malloc'ed. */
int kd_sign_buf(const char *priv_pem_path, const void *msg, size_t len, uint8_t **ret_sig,
		size_t *ret_siglen, kd_error *err);

/* Verify a detached signature with a public key PEM. Returns 0 when it verifies, -EBADMSG when
 * it does not (the message names the key file), other negative errno when the key is unusable. */
int kd_verify_buf(const char *pub_pem_path, const void *msg, size_t len, const uint8_t *sig,
		  size_t siglen, kd_error *err);

/* Lowercase hex SHA-256 of the DER SubjectPublicKeyInfo: a stable key identity. */
int kd_pubkey_fingerprint(const char *pub_pem_path, char out_hex[65], kd_error *err);
/* The same fingerprint, of the public half of a private key PEM. */
int kd_privkey_fingerprint(const char *priv_pem_path, char out_hex[65], kd_error *err);
