/* lib/digest: SHA-256 against known vectors, streaming equals one-shot, fds, hex checks. */
#include <fcntl.h>
#include <string.h>

#include "digest.h"
#include "tap.h"

static const char *empty_hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
static const char *abc_hex = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
/* FIPS 180-2 long vector: one million 'a'. */
static const char *million_a_hex =
	"cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";

TEST(vectors)
{
	char hex[KD_SHA256_HEX_LEN + 1];

	CHECK_INT(kd_sha256_buf("", 0, hex), 0);
	CHECK_STR(hex, empty_hex);
	CHECK_INT(kd_sha256_buf("abc", 3, hex), 0);
	CHECK_STR(hex, abc_hex);
}

TEST(streaming)
{
	_cleanup_sha256_ kd_sha256 h = {0};
	uint8_t md[KD_SHA256_LEN];
	char hex[KD_SHA256_HEX_LEN + 1], chunk[1000];
	kd_error err = {0};

	memset(chunk, 'a', sizeof(chunk));
	CHECK_INT(kd_sha256_init(&h, &err), 0);
	for (int i = 0; i < 1000; i++)
		kd_sha256_update(&h, chunk, sizeof(chunk));
	kd_sha256_update(&h, NULL, 0);
	CHECK_INT(kd_sha256_final(&h, md, &err), 0);
	CHECK(h.ctx == NULL);
	kd_hex(md, sizeof(md), hex);
	CHECK_STR(hex, million_a_hex);
	/* After final: free is a no-op, a second final is an error, not a crash. */
	kd_sha256_free(&h);
	kd_sha256_free(&h);
	CHECK_INT(kd_sha256_final(&h, md, &err), -EINVAL);
	CHECK(strstr(err.msg, "sha256") != NULL);
}

TEST(fd)
{
	char path[] = "/tmp/kd-test-digest-XXXXXX";
	int fd = mkstemp(path);
	uint8_t md[KD_SHA256_LEN], md2[KD_SHA256_LEN];
	char hex[KD_SHA256_HEX_LEN + 1];
	kd_error err = {0};
	uint64_t size = 0;
	_cleanup_free_ char *big = malloc(3000000);

	CHECK(fd >= 0 && big);
	memset(big, 'a', 1000000);
	CHECK(write(fd, "xyz", 3) == 3);
	CHECK(write(fd, big, 1000000) == 1000000);
	/* From the current offset: skip the 3-byte prefix. */
	CHECK(lseek(fd, 3, SEEK_SET) == 3);
	CHECK_INT(kd_sha256_fd(fd, md, &size, &err), 0);
	CHECK_INT(size, 1000000);
	kd_hex(md, sizeof(md), hex);
	CHECK_STR(hex, million_a_hex);
	/* Larger than the read buffer, compared with the one-shot hash. */
	for (int i = 0; i < 3000000; i++)
		big[i] = (char)(i * 31 + (i >> 9));
	CHECK_INT(ftruncate(fd, 0), 0);
	CHECK(pwrite(fd, big, 3000000, 0) == 3000000);
	CHECK(lseek(fd, 0, SEEK_SET) == 0);
	CHECK_INT(kd_sha256_fd(fd, md, NULL, &err), 0);
	{
		char want[KD_SHA256_HEX_LEN + 1];
		CHECK_INT(kd_sha256_buf(big, 3000000, want), 0);
		kd_hex(md, sizeof(md), hex);
		CHECK_STR(hex, want);
	}
	memcpy(md2, md, sizeof(md));
	CHECK(kd_sha256_equal(md, md2));
	md2[31] ^= 1;
	CHECK(!kd_sha256_equal(md, md2));
	close(fd);
	unlink(path);
	/* A closed fd fails with a message. */
	CHECK_INT(kd_sha256_fd(fd, md, NULL, &err), -EBADF);
	CHECK(strstr(err.msg, "sha256: read") != NULL);
}

TEST(hex_valid)
{
	char upper[KD_SHA256_HEX_LEN + 1];

	CHECK(kd_sha256_hex_valid(abc_hex));
	CHECK(!kd_sha256_hex_valid(NULL));
	CHECK(!kd_sha256_hex_valid(""));
	CHECK(!kd_sha256_hex_valid("abc"));
	snprintf(upper, sizeof(upper), "%s", abc_hex);
	upper[0] = 'B';
	CHECK(!kd_sha256_hex_valid(upper));
	upper[0] = 'g';
	CHECK(!kd_sha256_hex_valid(upper));
	{
		char longer[KD_SHA256_HEX_LEN + 2];
		snprintf(longer, sizeof(longer), "%s0", abc_hex);
		CHECK(!kd_sha256_hex_valid(longer));
	}
}

TEST(hex)
{
	const uint8_t b[] = {0x00, 0x0f, 0xa5, 0xff};
	char out[9];

	kd_hex(b, sizeof(b), out);
	CHECK_STR(out, "000fa5ff");
	kd_hex(b, 0, out);
	CHECK_STR(out, "");
}

TEST(from_hex)
{
	uint8_t bin[KD_SHA256_LEN], want[KD_SHA256_LEN], keep[KD_SHA256_LEN];
	char hex[KD_SHA256_HEX_LEN + 1];

	CHECK(kd_sha256_from_hex(abc_hex, bin));
	kd_hex(bin, sizeof(bin), hex);
	CHECK_STR(hex, abc_hex);
	CHECK(kd_sha256_from_hex(million_a_hex, want));
	CHECK(want[0] == 0xcd && want[31] == 0xd0);
	/* Not a digest: false, out untouched. */
	memcpy(keep, want, sizeof(keep));
	CHECK(!kd_sha256_from_hex("ABC", want));
	CHECK(!kd_sha256_from_hex(NULL, want));
	CHECK(memcmp(keep, want, sizeof(keep)) == 0);
}

int main(void)
{
	RUN(vectors);
	RUN(streaming);
	RUN(fd);
	RUN(hex_valid);
	RUN(hex);
	RUN(from_hex);
	TAP_END();
}
