/* lib/sign: Ed25519 key generation, sign and verify; tampering, wrong keys and broken
 * signatures give -EBADMSG naming the key; ECDSA P-256 works; RSA and other curves are refused. */
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

#include "digest.h"
#include "sign.h"
#include "tap.h"

static char dir[] = "/tmp/kd-test-sign-XXXXXX";
static char priv[600], pub[600], priv2[600], pub2[600];

static const char *path(char *buf, const char *name)
{
	snprintf(buf, 600, "%s/%s", dir, name);
	return buf;
}

static int sh(const char *fmt, const char *a, const char *b)
{
	char cmd[2048];

	snprintf(cmd, sizeof(cmd), fmt, a, b);
	return system(cmd);
}

TEST(keygen)
{
	struct stat st;
	kd_error err = {0};

	CHECK_INT(kd_sign_keygen(priv, pub, &err), 0);
	CHECK_INT(stat(priv, &st), 0);
	CHECK_INT(st.st_mode & 0777, 0600);
	CHECK_INT(stat(pub, &st), 0);
	CHECK_INT(st.st_mode & 0777, 0644);
	/* Never overwrite a key. */
	CHECK_INT(kd_sign_keygen(priv, pub, &err), -EEXIST);
	CHECK(strstr(err.msg, priv) != NULL);
	CHECK_INT(kd_sign_keygen(priv2, pub2, &err), 0);
}

TEST(sign_verify)
{
	const char *msg = "{\"format\":1,\"payload\":\"x\"}";
	_cleanup_free_ uint8_t *sig = NULL;
	size_t siglen = 0;
	kd_error err = {0};

	CHECK_INT(kd_sign_buf(priv, msg, strlen(msg), &sig, &siglen, &err), 0);
	CHECK_INT(siglen, 64);
	CHECK_INT(kd_verify_buf(pub, msg, strlen(msg), sig, siglen, &err), 0);
	/* Ed25519 is deterministic. */
	{
		_cleanup_free_ uint8_t *sig2 = NULL;
		size_t n2 = 0;
		CHECK_INT(kd_sign_buf(priv, msg, strlen(msg), &sig2, &n2, &err), 0);
		CHECK(n2 == siglen && memcmp(sig, sig2, siglen) == 0);
	}
}

TEST(tamper)
{
	char msg[] = "payload manifest bytes";
	_cleanup_free_ uint8_t *sig = NULL;
	size_t siglen = 0;
	kd_error err = {0};
	char want[700];

	CHECK_INT(kd_sign_buf(priv, msg, strlen(msg), &sig, &siglen, &err), 0);
	msg[0] ^= 1;
	CHECK_INT(kd_verify_buf(pub, msg, strlen(msg), sig, siglen, &err), -EBADMSG);
	snprintf(want, sizeof(want), "signature does not verify with key %s", pub);
	CHECK_STR(err.msg, want);
	msg[0] ^= 1;
	sig[10] ^= 0x40;
	CHECK_INT(kd_verify_buf(pub, msg, strlen(msg), sig, siglen, &err), -EBADMSG);
	sig[10] ^= 0x40;
	CHECK_INT(kd_verify_buf(pub, msg, strlen(msg), sig, siglen - 1, &err), -EBADMSG);
	CHECK_INT(kd_verify_buf(pub, msg, strlen(msg), sig, 0, &err), -EBADMSG);
	CHECK_INT(kd_verify_buf(pub, msg, strlen(msg), sig, siglen, &err), 0);
}

TEST(wrong_key)
{
	const char *msg = "m";
	_cleanup_free_ uint8_t *sig = NULL;
	size_t siglen = 0;
	kd_error err = {0};

	CHECK_INT(kd_sign_buf(priv, msg, 1, &sig, &siglen, &err), 0);
	CHECK_INT(kd_verify_buf(pub2, msg, 1, sig, siglen, &err), -EBADMSG);
	CHECK(strstr(err.msg, pub2) != NULL);
	/* A private key where a public one belongs, a missing file, garbage. */
	CHECK_INT(kd_verify_buf(priv, msg, 1, sig, siglen, &err), -EINVAL);
	CHECK(strstr(err.msg, "not a PEM public key") != NULL);
	CHECK_INT(kd_verify_buf("/nonexistent/pub.pem", msg, 1, sig, siglen, &err), -ENOENT);
	CHECK(strstr(err.msg, "/nonexistent/pub.pem") != NULL);
	CHECK_INT(kd_sign_buf(pub, msg, 1, &sig, &siglen, &err), -EINVAL);
}

TEST(fingerprint)
{
	char fp[65], fp2[65], der[600];
	_cleanup_free_ char *out = NULL;
	kd_error err = {0};
	FILE *f;

	CHECK_INT(kd_pubkey_fingerprint(pub, fp, &err), 0);
	CHECK(kd_sha256_hex_valid(fp));
	CHECK_INT(kd_pubkey_fingerprint(pub2, fp2, &err), 0);
	CHECK(strcmp(fp, fp2) != 0);
	/* A private key has the fingerprint of its public half; a public key is not private. */
	{
		char pfp[65] = "";
		CHECK_INT(kd_privkey_fingerprint(priv, pfp, &err), 0);
		CHECK_STR(pfp, fp);
		CHECK_INT(kd_privkey_fingerprint(priv2, pfp, &err), 0);
		CHECK_STR(pfp, fp2);
		CHECK(kd_privkey_fingerprint(pub, pfp, &err) < 0);
	}
	/* Same as hashing the DER SubjectPublicKeyInfo with the openssl tool. */
	path(der, "pub.der");
	CHECK_INT(sh("openssl pkey -pubin -in %s -outform DER -out %s", pub, der), 0);
	{
		char cmd[700], line[200] = "";
		snprintf(cmd, sizeof(cmd), "sha256sum %s", der);
		f = popen(cmd, "r");
		CHECK(f && fgets(line, sizeof(line), f));
		if (f)
			pclose(f);
		line[64] = '\0';
		CHECK_STR(fp, line);
	}
}

TEST(ecdsa_p256)
{
	char ec[600], ecpub[600];
	const char *msg = "hello ecdsa";
	_cleanup_free_ uint8_t *sig = NULL;
	size_t siglen = 0;
	kd_error err = {0};
	char sigpath[600], msgpath[600];
	int fd;

	path(ec, "ec.pem");
	path(ecpub, "ec.pub.pem");
	CHECK_INT(sh("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out %s%s", ec,
		     " 2>/dev/null"),
		  0);
	CHECK_INT(sh("openssl pkey -in %s -pubout -out %s", ec, ecpub), 0);
	CHECK_INT(kd_sign_buf(ec, msg, strlen(msg), &sig, &siglen, &err), 0);
	CHECK(siglen > 60 && siglen <= 72);
	CHECK_INT(kd_verify_buf(ecpub, msg, strlen(msg), sig, siglen, &err), 0);
	CHECK_INT(kd_verify_buf(ecpub, "hello ecdsb", strlen(msg), sig, siglen, &err), -EBADMSG);
	/* Broken DER is a bad signature too, not an internal error. */
	sig[1] ^= 0x7f;
	CHECK_INT(kd_verify_buf(ecpub, msg, strlen(msg), sig, siglen, &err), -EBADMSG);
	sig[1] ^= 0x7f;
	/* Interoperable: openssl dgst verifies our signature. */
	path(sigpath, "ec.sig");
	path(msgpath, "ec.msg");
	fd = open(sigpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	CHECK(write(fd, sig, siglen) == (ssize_t)siglen);
	close(fd);
	fd = open(msgpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	CHECK(write(fd, msg, strlen(msg)) == (ssize_t)strlen(msg));
	close(fd);
	{
		char cmd[2048];
		snprintf(cmd, sizeof(cmd),
			 "openssl dgst -sha256 -verify %s -signature %s %s >/dev/null 2>&1", ecpub,
			 sigpath, msgpath);
		CHECK_INT(system(cmd), 0);
	}
}

TEST(rejected_key_types)
{
	char rsa[600], rsapub[600], p384[600];
	_cleanup_free_ uint8_t *sig = NULL;
	size_t siglen = 0;
	kd_error err = {0};
	char want[800];

	path(rsa, "rsa.pem");
	path(rsapub, "rsa.pub.pem");
	path(p384, "p384.pem");
	CHECK_INT(sh("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out %s%s", rsa,
		     " 2>/dev/null"),
		  0);
	CHECK_INT(sh("openssl pkey -in %s -pubout -out %s", rsa, rsapub), 0);
	CHECK_INT(kd_sign_buf(rsa, "m", 1, &sig, &siglen, &err), -EOPNOTSUPP);
	snprintf(want, sizeof(want),
		 "key %s: unsupported key type RSA (want Ed25519 or ECDSA P-256)", rsa);
	CHECK_STR(err.msg, want);
	CHECK_INT(kd_verify_buf(rsapub, "m", 1, (const uint8_t *)"x", 1, &err), -EOPNOTSUPP);
	CHECK_INT(kd_pubkey_fingerprint(rsapub, want, &err), -EOPNOTSUPP);
	CHECK_INT(sh("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out %s%s",
		     p384, " 2>/dev/null"),
		  0);
	CHECK_INT(kd_sign_buf(p384, "m", 1, &sig, &siglen, &err), -EOPNOTSUPP);
	CHECK(strstr(err.msg, "unsupported EC curve secp384r1") != NULL);
}

TEST(encrypted_key_never_prompts)
{
	char enc[600];
	_cleanup_free_ uint8_t *sig = NULL;
	size_t siglen = 0;
	kd_error err = {0};

	path(enc, "enc.pem");
	CHECK_INT(sh("openssl genpkey -algorithm ED25519 -aes256 -pass pass:secret -out %s%s", enc,
		     " 2>/dev/null"),
		  0);
	CHECK_INT(kd_sign_buf(enc, "m", 1, &sig, &siglen, &err), -EINVAL);
	CHECK(strstr(err.msg, "not a PEM private key") != NULL);
}

TEST(oversize_key_file)
{
	char big[600];
	_cleanup_free_ uint8_t *sig = NULL;
	size_t siglen = 0;
	kd_error err = {0};

	path(big, "big.pem");
	CHECK_INT(sh("head -c 70000 /dev/zero > %s%s", big, ""), 0);
	CHECK_INT(kd_sign_buf(big, "m", 1, &sig, &siglen, &err), -EFBIG);
	CHECK(strstr(err.msg, "larger than 65536 bytes") != NULL);
}

int main(void)
{
	if (!mkdtemp(dir))
		return 1;
	path(priv, "key.pem");
	path(pub, "key.pub.pem");
	path(priv2, "key2.pem");
	path(pub2, "key2.pub.pem");
	RUN(keygen);
	RUN(sign_verify);
	RUN(tamper);
	RUN(wrong_key);
	RUN(fingerprint);
	RUN(ecdsa_p256);
	RUN(rejected_key_types);
	RUN(encrypted_key_never_prompts);
	RUN(oversize_key_file);
	sh("rm -rf %s%s", dir, "");
	TAP_END();
}
