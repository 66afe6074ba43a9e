#include "digest.h"

/* SHA-256 uses OpenSSL's one-algorithm API (SHA256_Init/Update/Final), deprecated in 3.0 but
 * kept by it: the same assembly (SHA-NI, AVX2) as EVP, without EVP's provider machinery, whose
 * first use costs 2 MiB of resident memory (measured: 6.0 vs 4.3 MiB for a program that hashes
 * 300 MB) — most of what a payload install added to its peak RSS beyond its buffers. SHA-1
 * (git ids, the builder only) stays on EVP. */
#define OPENSSL_SUPPRESS_DEPRECATED

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <string.h>

/* Big reads keep the syscall count low on multi-hundred-MB payloads; SHA-256 itself is the
 * bottleneck above this size. */
#define KD_SHA256_READ_BUF (128 * 1024)

/* One EVP context per digest object (SHA-1). */
static int ctx_init(void **ctx, const EVP_MD *md, const char *name, kd_error *err)
{
	EVP_MD_CTX *c = EVP_MD_CTX_new();

	*ctx = NULL;
	if (!c)
		return kd_err(err, -ENOMEM, "%s: out of memory", name);
	if (EVP_DigestInit_ex(c, md, NULL) != 1) {
		EVP_MD_CTX_free(c);
		return kd_err(err, -EIO, "%s: cannot initialise digest", name);
	}
	*ctx = c;
	return 0;
}

static void ctx_free(void **ctx)
{
	if (*ctx) {
		EVP_MD_CTX_free(*ctx);
		*ctx = NULL;
	}
}

static void ctx_update(void **ctx, const void *data, size_t len)
{
	if (!*ctx || len == 0)
		return;
	if (EVP_DigestUpdate(*ctx, data, len) != 1)
		ctx_free(ctx);
}

static int ctx_final(void **ctx, uint8_t *out, unsigned want, const char *name, kd_error *err)
{
	unsigned n = 0;
	int r = 0;

	if (!*ctx)
		return kd_err(err, -EINVAL, "%s: digest not initialised or update failed", name);
	if (EVP_DigestFinal_ex(*ctx, out, &n) != 1 || n != want)
		r = kd_err(err, -EIO, "%s: cannot finalise digest", name);
	ctx_free(ctx);
	return r;
}

int kd_sha256_init(kd_sha256 *h, kd_error *err)
{
	SHA256_CTX *ctx = malloc(sizeof(*ctx));

	h->ctx = NULL;
	if (!ctx)
		return kd_err(err, -ENOMEM, "sha256: out of memory");
	if (SHA256_Init(ctx) != 1) {
		free(ctx);
		return kd_err(err, -EIO, "sha256: cannot initialise digest");
	}
	h->ctx = ctx;
	return 0;
}

void kd_sha256_update(kd_sha256 *h, const void *data, size_t len)
{
	if (!h->ctx || len == 0)
		return;
	if (SHA256_Update(h->ctx, data, len) != 1)
		kd_sha256_free(h);
}

int kd_sha256_final(kd_sha256 *h, uint8_t out[KD_SHA256_LEN], kd_error *err)
{
	int r = 0;

	if (!h->ctx)
		return kd_err(err, -EINVAL, "sha256: digest not initialised or update failed");
	if (SHA256_Final(out, h->ctx) != 1)
		r = kd_err(err, -EIO, "sha256: cannot finalise digest");
	kd_sha256_free(h);
	return r;
}

void kd_sha256_free(kd_sha256 *h)
{
	if (h && h->ctx) {
		OPENSSL_cleanse(h->ctx, sizeof(SHA256_CTX));
		free(h->ctx);
		h->ctx = NULL;
	}
}

void kd_hex(const uint8_t *bin, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < len; i++) {
		out[2 * i] = digits[bin[i] >> 4];
		out[2 * i + 1] = digits[bin[i] & 0xf];
	}
	out[2 * len] = '\0';
}

int kd_sha256_fd(int fd, uint8_t out[KD_SHA256_LEN], uint64_t *ret_size, kd_error *err)
{
	_cleanup_sha256_ kd_sha256 h = {0};
	_cleanup_free_ uint8_t *buf = NULL;
	uint64_t total = 0;
	int r;

	buf = malloc(KD_SHA256_READ_BUF);
	if (!buf)
		return kd_err(err, -ENOMEM, "sha256: out of memory");
	r = kd_sha256_init(&h, err);
	if (r < 0)
		return r;
	(void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	for (;;) {
		ssize_t n = read(fd, buf, KD_SHA256_READ_BUF);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return kd_err_errno(err, negative_errno(), "sha256: read");
		}
		if (n == 0)
			break;
		kd_sha256_update(&h, buf, (size_t)n);
		total += (uint64_t)n;
	}
	r = kd_sha256_final(&h, out, err);
	if (r < 0)
		return r;
	if (ret_size)
		*ret_size = total;
	return 0;
}

int kd_sha256_buf(const void *data, size_t len, char out_hex[KD_SHA256_HEX_LEN + 1])
{
	uint8_t md[KD_SHA256_LEN];
	SHA256_CTX c;

	/* Not SHA256(): OpenSSL 3 implements the one-shot form through EVP. */
	if (SHA256_Init(&c) != 1 || SHA256_Update(&c, data, len) != 1 || SHA256_Final(md, &c) != 1)
		return -EIO;
	OPENSSL_cleanse(&c, sizeof(c));
	kd_hex(md, sizeof(md), out_hex);
	return 0;
}

bool kd_sha256_hex_valid(const char *s)
{
	if (!s)
		return false;
	for (size_t i = 0; i < KD_SHA256_HEX_LEN; i++) {
		char c = s[i];
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return false;
	}
	return s[KD_SHA256_HEX_LEN] == '\0';
}

static unsigned hex_value(char c)
{
	return c <= '9' ? (unsigned)(c - '0') : (unsigned)(c - 'a' + 10);
}

bool kd_sha256_from_hex(const char *s, uint8_t out[KD_SHA256_LEN])
{
	if (!kd_sha256_hex_valid(s))
		return false;
	for (size_t i = 0; i < KD_SHA256_LEN; i++)
		out[i] = (uint8_t)(hex_value(s[2 * i]) << 4 | hex_value(s[2 * i + 1]));
	return true;
}

bool kd_sha256_equal(const uint8_t a[KD_SHA256_LEN], const uint8_t b[KD_SHA256_LEN])
{
	return CRYPTO_memcmp(a, b, KD_SHA256_LEN) == 0;
}

int kd_sha1_init(kd_sha1 *h, kd_error *err)
{
	return ctx_init(&h->ctx, EVP_sha1(), "sha1", err);
}

void kd_sha1_update(kd_sha1 *h, const void *data, size_t len)
{
	ctx_update(&h->ctx, data, len);
}

int kd_sha1_final(kd_sha1 *h, uint8_t out[KD_SHA1_LEN], kd_error *err)
{
	return ctx_final(&h->ctx, out, KD_SHA1_LEN, "sha1", err);
}

void kd_sha1_free(kd_sha1 *h)
{
	if (h)
		ctx_free(&h->ctx);
}

bool kd_sha1_hex_valid(const char *s)
{
	if (!s)
		return false;
	for (size_t i = 0; i < KD_SHA1_HEX_LEN; i++) {
		char c = s[i];
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return false;
	}
	return s[KD_SHA1_HEX_LEN] == '\0';
}
