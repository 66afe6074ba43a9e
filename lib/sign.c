#include "sign.h"

#include <fcntl.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <string.h>
#include <sys/stat.h>

#include "digest.h"

DEFINE_CLEANUP(EVP_PKEY *, EVP_PKEY_free)
DEFINE_CLEANUP(EVP_MD_CTX *, EVP_MD_CTX_free)
DEFINE_CLEANUP(BIO *, BIO_free)

/* The most recent OpenSSL error as text, clearing the queue so later calls start clean. */
static const char *ssl_error(char *buf, size_t size)
{
	unsigned long e = ERR_peek_last_error();

	if (e == 0)
		snprintf(buf, size, "unknown OpenSSL error");
	else
		ERR_error_string_n(e, buf, size);
	ERR_clear_error();
	return buf;
}

/* Never prompt for a passphrase: an encrypted key is an error, not a terminal dialogue. */
static int no_password(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return -1;
}

/* Read a PEM file into memory with a size limit, so a huge or endless file cannot hang us. */
static int read_pem(const char *path, BIO **ret, kd_error *err)
{
	_cleanup_close_ int fd = -1;
	_cleanup_free_ char *buf = NULL;
	size_t len = 0;
	BIO *bio;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return kd_err_errno(err, negative_errno(), "key %s", path);
	buf = malloc(KD_SIGN_KEY_MAX + 1);
	if (!buf)
		return kd_err(err, -ENOMEM, "key %s: out of memory", path);
	for (;;) {
		ssize_t n = read(fd, buf + len, KD_SIGN_KEY_MAX + 1 - len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return kd_err_errno(err, negative_errno(), "key %s: read", path);
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len > KD_SIGN_KEY_MAX)
			return kd_err(err, -EFBIG, "key %s: larger than %d bytes, not a key file",
				      path, KD_SIGN_KEY_MAX);
	}
	bio = BIO_new(BIO_s_mem());
	if (!bio || BIO_write(bio, buf, (int)len) != (int)len) {
		BIO_free(bio);
		return kd_err(err, -ENOMEM, "key %s: out of memory", path);
	}
	*ret = bio;
	return 0;
}

/* Accept Ed25519 and ECDSA P-256; *ret_md is the digest for EVP_DigestSign (NULL = none). */
static int check_key_type(const char *path, EVP_PKEY *pkey, const EVP_MD **ret_md, kd_error *err)
{
	char group[64] = "";
	const char *type;

	switch (EVP_PKEY_get_base_id(pkey)) {
	case EVP_PKEY_ED25519:
		*ret_md = NULL;
		return 0;
	case EVP_PKEY_EC:
		if (EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group,
						   sizeof(group), NULL) != 1) {
			ERR_clear_error();
			return kd_err(err, -EINVAL, "key %s: EC key without a named curve", path);
		}
		if (strcmp(group, "prime256v1") != 0 && strcmp(group, "P-256") != 0)
			return kd_err(
				err, -EOPNOTSUPP,
				"key %s: unsupported EC curve %s (want Ed25519 or ECDSA P-256)",
				path, group);
		*ret_md = EVP_sha256();
		return 0;
	default:
		type = EVP_PKEY_get0_type_name(pkey);
		return kd_err(err, -EOPNOTSUPP,
			      "key %s: unsupported key type %s (want Ed25519 or ECDSA P-256)", path,
			      type ? type : "unknown");
	}
}

static int load_key(const char *path, bool private, EVP_PKEY **ret, const EVP_MD **ret_md,
		    kd_error *err)
{
	_cleanup_(BIO_freep) BIO *bio = NULL;
	_cleanup_(EVP_PKEY_freep) EVP_PKEY *pkey = NULL;
	char buf[256];
	int r;

	r = read_pem(path, &bio, err);
	if (r < 0)
		return r;
	if (private)
		pkey = PEM_read_bio_PrivateKey(bio, NULL, no_password, NULL);
	else
		pkey = PEM_read_bio_PUBKEY(bio, NULL, no_password, NULL);
	if (!pkey)
		return kd_err(err, -EINVAL, "key %s: not a PEM %s key: %s", path,
			      private ? "private" : "public", ssl_error(buf, sizeof(buf)));
	r = check_key_type(path, pkey, ret_md, err);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(pkey);
	return 0;
}

static int write_pem(const char *path, EVP_PKEY *pkey, bool private, kd_error *err)
{
	_cleanup_close_ int fd = -1;
	_cleanup_fclose_ FILE *f = NULL;
	char buf[256];
	int ok;

	/* O_EXCL: never overwrite an existing key, and never follow a planted symlink. */
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
		  private ? 0600 : 0644);
	if (fd < 0)
		return kd_err_errno(err, negative_errno(), "write key %s", path);
	if (fchmod(fd, private ? 0600 : 0644) < 0)
		return kd_err_errno(err, negative_errno(), "write key %s: chmod", path);
	f = fdopen(fd, "w");
	if (!f)
		return kd_err_errno(err, negative_errno(), "write key %s", path);
	TAKE_FD(fd);
	if (private)
		ok = PEM_write_PrivateKey(f, pkey, NULL, NULL, 0, NULL, NULL);
	else
		ok = PEM_write_PUBKEY(f, pkey);
	if (ok != 1)
		return kd_err(err, -EIO, "write key %s: %s", path, ssl_error(buf, sizeof(buf)));
	if (fflush(f) != 0 || fsync(fileno(f)) < 0)
		return kd_err_errno(err, negative_errno(), "write key %s", path);
	if (fclose(TAKE_PTR(f)) != 0)
		return kd_err_errno(err, negative_errno(), "write key %s", path);
	return 0;
}

int kd_sign_keygen(const char *priv_pem_path, const char *pub_pem_path, kd_error *err)
{
	_cleanup_(EVP_PKEY_freep) EVP_PKEY *pkey = NULL;
	char buf[256];
	int r;

	pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	if (!pkey)
		return kd_err(err, -EIO, "generate Ed25519 key: %s", ssl_error(buf, sizeof(buf)));
	r = write_pem(priv_pem_path, pkey, true, err);
	if (r < 0)
		return r;
	r = write_pem(pub_pem_path, pkey, false, err);
	if (r < 0) {
		/* Do not leave half a key pair behind. */
		(void)unlink(priv_pem_path);
		return r;
	}
	return 0;
}

int kd_sign_buf(const char *priv_pem_path, const void *msg, size_t len, uint8_t **ret_sig,
		size_t *ret_siglen, kd_error *err)
{
	_cleanup_(EVP_PKEY_freep) EVP_PKEY *pkey = NULL;
	_cleanup_(EVP_MD_CTX_freep) EVP_MD_CTX *ctx = NULL;
	_cleanup_free_ uint8_t *sig = NULL;
	const EVP_MD *md = NULL;
	size_t siglen = 0;
	char buf[256];
	int r;

	r = load_key(priv_pem_path, true, &pkey, &md, err);
	if (r < 0)
		return r;
	ctx = EVP_MD_CTX_new();
	if (!ctx)
		return kd_err(err, -ENOMEM, "sign with %s: out of memory", priv_pem_path);
	if (EVP_DigestSignInit(ctx, NULL, md, NULL, pkey) != 1 ||
	    EVP_DigestSign(ctx, NULL, &siglen, msg, len) != 1)
		return kd_err(err, -EIO, "sign with %s: %s", priv_pem_path,
			      ssl_error(buf, sizeof(buf)));
	sig = malloc(siglen ? siglen : 1);
	if (!sig)
		return kd_err(err, -ENOMEM, "sign with %s: out of memory", priv_pem_path);
	if (EVP_DigestSign(ctx, sig, &siglen, msg, len) != 1)
		return kd_err(err, -EIO, "sign with %s: %s", priv_pem_path,
			      ssl_error(buf, sizeof(buf)));
	*ret_sig = TAKE_PTR(sig);
	*ret_siglen = siglen;
	return 0;
}

int kd_verify_buf(const char *pub_pem_path, const void *msg, size_t len, const uint8_t *sig,
		  size_t siglen, kd_error *err)
{
	_cleanup_(EVP_PKEY_freep) EVP_PKEY *pkey = NULL;
	_cleanup_(EVP_MD_CTX_freep) EVP_MD_CTX *ctx = NULL;
	const EVP_MD *md = NULL;
	char buf[256];
	int r;

	if (siglen == 0 || siglen > KD_SIGN_SIG_MAX)
		return kd_err(err, -EBADMSG,
			      "signature does not verify with key %s: signature is %zu bytes",
			      pub_pem_path, siglen);
	r = load_key(pub_pem_path, false, &pkey, &md, err);
	if (r < 0)
		return r;
	ctx = EVP_MD_CTX_new();
	if (!ctx)
		return kd_err(err, -ENOMEM, "verify with %s: out of memory", pub_pem_path);
	if (EVP_DigestVerifyInit(ctx, NULL, md, NULL, pkey) != 1)
		return kd_err(err, -EIO, "verify with %s: %s", pub_pem_path,
			      ssl_error(buf, sizeof(buf)));
	/* 1 is a good signature; 0 a bad one; < 0 a malformed one (e.g. broken DER for ECDSA),
	 * which is just as much "does not verify". */
	r = EVP_DigestVerify(ctx, sig, siglen, msg, len);
	ERR_clear_error();
	if (r != 1)
		return kd_err(err, -EBADMSG, "signature does not verify with key %s", pub_pem_path);
	return 0;
}

static int fingerprint(const char *pem_path, bool private, char out_hex[65], kd_error *err)
{
	_cleanup_(EVP_PKEY_freep) EVP_PKEY *pkey = NULL;
	const EVP_MD *md = NULL;
	unsigned char *der = NULL;
	char buf[256];
	int r, n;

	r = load_key(pem_path, private, &pkey, &md, err);
	if (r < 0)
		return r;
	/* For a private key this encodes its public half: the same bytes as the public PEM. */
	n = i2d_PUBKEY(pkey, &der);
	if (n <= 0)
		return kd_err(err, -EIO, "key %s: %s", pem_path, ssl_error(buf, sizeof(buf)));
	r = kd_sha256_buf(der, (size_t)n, out_hex);
	OPENSSL_free(der);
	if (r < 0)
		return kd_err(err, r, "key %s: cannot hash public key", pem_path);
	return 0;
}

int kd_pubkey_fingerprint(const char *pub_pem_path, char out_hex[65], kd_error *err)
{
	return fingerprint(pub_pem_path, false, out_hex, err);
}

int kd_privkey_fingerprint(const char *priv_pem_path, char out_hex[65], kd_error *err)
{
	return fingerprint(priv_pem_path, true, out_hex, err);
}
