/* lib/registry: reference parsing (good and bad), credentials from docker config files. The
 * requests, token flow and resumable blobs run against a real registry in
 * tests/integration/test-oci-pull.sh. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "registry.h"
#include "tap.h"

static const char *hex64 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

TEST(ref_good)
{
	kd_registry_ref r = {0};
	kd_error err = {0};
	char s[256];

	CHECK_INT(kd_registry_ref_parse("127.0.0.1:5000/kata/payload:v1", &r, &err), 0);
	CHECK_STR(r.host, "127.0.0.1:5000");
	CHECK_STR(r.repo, "kata/payload");
	CHECK_STR(r.tag, "v1");
	CHECK(r.digest == NULL);
	kd_registry_ref_done(&r);

	snprintf(s, sizeof(s), "quay.io/kata-containers/kata-deploy@sha256:%s", hex64);
	CHECK_INT(kd_registry_ref_parse(s, &r, &err), 0);
	CHECK_STR(r.host, "quay.io");
	CHECK_STR(r.repo, "kata-containers/kata-deploy");
	CHECK(r.tag == NULL);
	CHECK(r.digest && strncmp(r.digest, "sha256:", 7) == 0 && strcmp(r.digest + 7, hex64) == 0);
	kd_registry_ref_done(&r);

	snprintf(s, sizeof(s), "reg.example:443/a/b_c.d-e:3.21.0-x86_64@sha256:%s", hex64);
	CHECK_INT(kd_registry_ref_parse(s, &r, &err), 0);
	CHECK_STR(r.repo, "a/b_c.d-e");
	CHECK_STR(r.tag, "3.21.0-x86_64");
	CHECK(r.digest != NULL);
	kd_registry_ref_done(&r);
}

TEST(ref_bad)
{
	static const char *const bad[] = {
		"",
		"payload:v1",	       /* no registry */
		"reg/Kata:v1",	       /* uppercase repository */
		"reg/kata",	       /* neither tag nor digest */
		"reg/kata:",	       /* empty tag */
		"reg/kata:-x",	       /* tag starts with '-' */
		"reg/kata@sha256:abc", /* short digest */
		"reg/kata@md5:00",     /* other algorithm */
		"reg/kata//x:v1",      /* empty component */
		"reg/kata/:v1",	       /* trailing separator */
		"reg/../x:v1",	       /* dot component */
		"reg host/kata:v1",    /* space in the host */
		"reg/kata:v1 extra",   /* space in the tag */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		kd_registry_ref r = {0};
		kd_error err = {0};
		int rc = kd_registry_ref_parse(bad[i], &r, &err);
		if (rc != -EINVAL)
			printf("#   '%s' parsed (%d)\n", bad[i], rc);
		CHECK_INT(rc, -EINVAL);
		CHECK(strstr(err.msg, "reference") != NULL);
		kd_registry_ref_done(&r);
	}
}

static void write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		abort();
	close(fd);
}

TEST(auth_file)
{
	char dir[] = "/tmp/kd-registry-XXXXXX", path[64];
	char *u = NULL, *p = NULL;
	kd_error err = {0};
	if (!mkdtemp(dir))
		abort();
	snprintf(path, sizeof(path), "%s/config.json", dir);
	/* base64("user:pa:ss") = dXNlcjpwYTpzcw== */
	write_file(path, "{\"auths\":{\"https://other.example\":{\"auth\":\"eDp5\"},"
			 "\"reg.example:5000\":{\"auth\":\"dXNlcjpwYTpzcw==\"},"
			 "\"plain.example\":{\"username\":\"bob\",\"password\":\"pw\"}}}");
	CHECK_INT(kd_registry_auth_file(path, "reg.example:5000", &u, &p, &err), 0);
	CHECK_STR(u, "user");
	CHECK_STR(p, "pa:ss");
	free(u);
	free(p);
	CHECK_INT(kd_registry_auth_file(path, "plain.example", &u, &p, &err), 0);
	CHECK_STR(u, "bob");
	CHECK_STR(p, "pw");
	free(u);
	free(p);
	CHECK_INT(kd_registry_auth_file(path, "other.example", &u, &p, &err), 0);
	CHECK_STR(u, "x");
	CHECK_STR(p, "y");
	free(u);
	free(p);
	CHECK_INT(kd_registry_auth_file(path, "none.example", &u, &p, &err), 0);
	CHECK(u == NULL && p == NULL);

	write_file(path, "{\"auths\":{\"reg\":{\"auth\":\"!!!\"}}}");
	CHECK_INT(kd_registry_auth_file(path, "reg", &u, &p, &err), -EINVAL);
	CHECK(strstr(err.msg, "not base64 of user:password") != NULL);
	write_file(path, "{\"auths\":{\"reg\":{\"identitytoken\":\"t\"}}}");
	CHECK_INT(kd_registry_auth_file(path, "reg", &u, &p, &err), -EINVAL);
	CHECK(strstr(err.msg, "identity tokens are not supported") != NULL);
	write_file(path, "{\"credsStore\":\"desktop\"}");
	CHECK(kd_registry_auth_file(path, "reg", &u, &p, &err) < 0);
	CHECK(strstr(err.msg, "auths") != NULL);
	unlink(path);
	CHECK(kd_registry_auth_file(path, "reg", &u, &p, &err) < 0);
	rmdir(dir);
}

int main(void)
{
	RUN(ref_good);
	RUN(ref_bad);
	RUN(auth_file);
	TAP_END();
}
