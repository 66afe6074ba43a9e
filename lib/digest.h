/* SHA-256 over OpenSSL EVP: streaming contexts, whole fds and buffers, hex encoding. This is the
 * only module that touches EVP digests; payload manifests, the content-addressed cache and OCI
 * blobs all name content by the lowercase hex form checked by kd_sha256_hex_valid(). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define KD_SHA256_LEN 32
#define KD_SHA256_HEX_LEN 64

typedef struct kd_sha256 {
	void *ctx; /* opaque EVP_MD_CTX *; NULL when not initialised, finalised or failed */
} kd_sha256;

int kd_sha256_init(kd_sha256 *h, kd_error *err);
/* A failed update drops the context; kd_sha256_final() then reports the failure. */
void kd_sha256_update(kd_sha256 *h, const void *data, size_t len);
/* Writes the digest and frees the context (also on failure). */
int kd_sha256_final(kd_sha256 *h, uint8_t out[KD_SHA256_LEN], kd_error *err);
/* Safe to call twice and after final. */
void kd_sha256_free(kd_sha256 *h);

/* Lowercase hex of len bytes into out, which holds 2 * len + 1 bytes. */
void kd_hex(const uint8_t *bin, size_t len, char *out);

/* Hash fd from its current offset to EOF; *ret_size (may be NULL) gets the byte count. */
int kd_sha256_fd(int fd, uint8_t out[KD_SHA256_LEN], uint64_t *ret_size, kd_error *err);

/* Hash a buffer into lowercase hex. */
int kd_sha256_buf(const void *data, size_t len, char out_hex[KD_SHA256_HEX_LEN + 1]);

/* Exactly 64 lowercase hex digits. */
bool kd_sha256_hex_valid(const char *s);
/* The digest that s (valid for kd_sha256_hex_valid) names; false, out untouched, if s is not. */
bool kd_sha256_from_hex(const char *s, uint8_t out[KD_SHA256_LEN]);

/* Constant-time comparison of two digests. */
bool kd_sha256_equal(const uint8_t a[KD_SHA256_LEN], const uint8_t b[KD_SHA256_LEN]);

/* SHA-1, only for naming git objects (lib/gittree): git's tree ids are SHA-1 and a pin by tree
 * id must be checked the way git computes it. Never used to trust content on its own. */
#define KD_SHA1_LEN 20
#define KD_SHA1_HEX_LEN 40

typedef struct kd_sha1 {
	void *ctx; /* opaque EVP_MD_CTX *, as for kd_sha256 */
} kd_sha1;

int kd_sha1_init(kd_sha1 *h, kd_error *err);
void kd_sha1_update(kd_sha1 *h, const void *data, size_t len);
int kd_sha1_final(kd_sha1 *h, uint8_t out[KD_SHA1_LEN], kd_error *err);
void kd_sha1_free(kd_sha1 *h);

/* Exactly 40 lowercase hex digits. */
bool kd_sha1_hex_valid(const char *s);

static inline void kd_sha1_freep(kd_sha1 *h)
{
	kd_sha1_free(h);
}
#define _cleanup_sha1_ _cleanup_(kd_sha1_freep)

static inline void kd_sha256_freep(kd_sha256 *h)
{
	kd_sha256_free(h);
}
#define _cleanup_sha256_ _cleanup_(kd_sha256_freep)
