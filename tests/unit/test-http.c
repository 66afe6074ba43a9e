/* lib/http against real servers on loopback: python3 -m http.server for plain files and
 * tests/tools/httpd.py for the misbehaving ones (404, 500 then 200, 429 + Retry-After, slow,
 * redirect loops, oversize, dropped and resumed bodies, TLS with our own CA). Every test that
 * waits is bounded to a few seconds by its options. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "digest.h"
#include "http.h"
#include "json.h"
#include "tap.h"

static char tmpdir[] = "/tmp/kd-test-http-XXXXXX";
static pid_t files_pid = -1, httpd_pid = -1, tls_pid = -1;
static int files_port, httpd_port, tls_port;
static char url[512];

static const kd_http_opts fast = {.backoff_ms = 10, .low_speed_time_s = 5};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static pid_t spawn(char *const argv[])
{
	pid_t pid = fork();

	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		dup2(null, STDOUT_FILENO);
		dup2(null, STDERR_FILENO);
		execvp(argv[0], argv);
		_exit(127);
	}
	return pid;
}

static int free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	bind(fd, (struct sockaddr *)&a, sizeof(a));
	getsockname(fd, (struct sockaddr *)&a, &len);
	port = ntohs(a.sin_port);
	close(fd);
	return port;
}

static bool port_open(int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK),
				.sin_port = htons((uint16_t)port)};
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	bool ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;

	close(fd);
	return ok;
}

/* Wait up to 15 s for a server to listen (python3 behind a pyenv shim starts slowly). */
static int wait_port(int port, const char *portfile)
{
	for (int i = 0; i < 300; i++) {
		if (portfile) {
			FILE *f = fopen(portfile, "r");
			if (f) {
				if (fscanf(f, "%d", &port) != 1)
					port = 0;
				fclose(f);
			}
		}
		if (port > 0 && port_open(port))
			return port;
		usleep(50000);
	}
	return -1;
}

static int start_httpd(const char *portname, const char *cert, const char *key, pid_t *pid)
{
	char portfile[512];

	snprintf(portfile, sizeof(portfile), "%s/%s", tmpdir, portname);
	if (cert) {
		char *argv[] = {"python3", "tests/tools/httpd.py", portfile,
				"--tls",   (char *)cert,	   (char *)key,
				NULL};
		*pid = spawn(argv);
	} else {
		char *argv[] = {"python3", "tests/tools/httpd.py", portfile, NULL};
		*pid = spawn(argv);
	}
	return wait_port(0, portfile);
}

static const char *u(int port, const char *path)
{
	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
	return url;
}

static long stat_hits(const char *path)
{
	char p[256], *data = NULL;
	size_t len = 0;
	long n = -1;

	snprintf(p, sizeof(p), "/stats%s", path);
	if (kd_http_get_buf(u(httpd_port, p), &fast, &data, &len, NULL, NULL) == 0)
		n = strtol(data, NULL, 10);
	free(data);
	return n;
}

static int write_file(const char *name, const void *data, size_t len)
{
	char path[512];
	int fd;

	snprintf(path, sizeof(path), "%s/files/%s", tmpdir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, data, len) != (ssize_t)len)
		return -1;
	return close(fd);
}

static int tmpfile_fd(void)
{
	char path[512];
	int fd;

	snprintf(path, sizeof(path), "%s/out-XXXXXX", tmpdir);
	fd = mkstemp(path);
	unlink(path);
	return fd;
}

TEST(is_url_and_status)
{
	CHECK(kd_is_url("http://x"));
	CHECK(kd_is_url("HTTPS://x/y"));
	CHECK(!kd_is_url("ftp://x"));
	CHECK(!kd_is_url("/tmp/payload.tar.zst"));
	CHECK(!kd_is_url(NULL));
	CHECK_INT(kd_http_status_errno(204), 0);
	CHECK_INT(kd_http_status_errno(404), -ENOENT);
	CHECK_INT(kd_http_status_errno(403), -EACCES);
	CHECK_INT(kd_http_status_errno(409), -EEXIST);
	CHECK_INT(kd_http_status_errno(429), -EAGAIN);
	CHECK_INT(kd_http_status_errno(500), -EIO);
	CHECK_STR(kd_http_reason(404), "Not Found");
}

TEST(download_file)
{
	size_t n = 3 * 1024 * 1024 + 17;
	_cleanup_free_ uint8_t *data = malloc(n);
	_cleanup_close_ int fd = tmpfile_fd();
	uint8_t want[KD_SHA256_LEN], got[KD_SHA256_LEN];
	char want_hex[65], got_hex[65];
	kd_error err = {0};
	uint64_t size = 0;
	long status = 0;

	for (size_t i = 0; i < n; i++)
		data[i] = (uint8_t)(i * 7 + (i >> 11));
	CHECK_INT(write_file("payload.bin", data, n), 0);
	/* The target is truncated first: old longer content must not survive. */
	CHECK(write(fd, data, n) == (ssize_t)n && write(fd, "tail", 4) == 4);
	CHECK_INT(kd_http_download_fd(u(files_port, "/payload.bin"), fd, &fast, &status, &err), 0);
	CHECK_INT(status, 200);
	CHECK(lseek(fd, 0, SEEK_SET) == 0);
	CHECK_INT(kd_sha256_fd(fd, got, &size, &err), 0);
	CHECK_INT(size, n);
	CHECK_INT(kd_sha256_buf(data, n, want_hex), 0);
	kd_hex(got, sizeof(got), got_hex);
	CHECK_STR(got_hex, want_hex);
	(void)want;
}

TEST(no_progress_without_tty)
{
	kd_http_opts o = fast;
	_cleanup_close_ int fd = tmpfile_fd(), errfd = tmpfile_fd();
	int saved = dup(STDERR_FILENO);
	kd_error err = {0};

	o.progress = true;
	/* stderr is a file here, not a TTY: a progress bar would only litter logs. */
	CHECK(dup2(errfd, STDERR_FILENO) == STDERR_FILENO);
	CHECK_INT(kd_http_download_fd(u(files_port, "/payload.bin"), fd, &o, NULL, &err), 0);
	dup2(saved, STDERR_FILENO);
	close(saved);
	CHECK_INT(lseek(errfd, 0, SEEK_END), 0);
	CHECK(lseek(fd, 0, SEEK_END) > 3 * 1024 * 1024);
}

TEST(get_buf)
{
	_cleanup_free_ char *data = NULL;
	kd_error err = {0};
	size_t len = 0;

	CHECK_INT(write_file("hello.txt", "hello\n", 6), 0);
	CHECK_INT(kd_http_get_buf(u(files_port, "/hello.txt"), NULL, &data, &len, NULL, &err), 0);
	CHECK_INT(len, 6);
	CHECK_STR(data, "hello\n");
	free(TAKE_PTR(data));
	CHECK_INT(write_file("empty.txt", "", 0), 0);
	CHECK_INT(kd_http_get_buf(u(files_port, "/empty.txt"), NULL, &data, &len, NULL, &err), 0);
	CHECK_INT(len, 0);
	CHECK_STR(data, "");
}

TEST(not_found_is_not_retried)
{
	_cleanup_close_ int fd = tmpfile_fd();
	char want[600];
	kd_error err = {0};
	long status = 0;

	CHECK_INT(kd_http_download_fd(u(httpd_port, "/status/404"), fd, &fast, &status, &err),
		  -ENOENT);
	CHECK_INT(status, 404);
	snprintf(want, sizeof(want), "GET http://127.0.0.1:%d/status/404: HTTP 404 Not Found",
		 httpd_port);
	CHECK_STR(err.msg, want);
	CHECK_INT(stat_hits("/status/404"), 1);
	/* The error page is not left in the output. */
	CHECK_INT(lseek(fd, 0, SEEK_END), 0);
	/* python's own server, its own reason phrase. */
	CHECK_INT(kd_http_download_fd(u(files_port, "/nope"), fd, &fast, NULL, &err), -ENOENT);
	CHECK(strstr(err.msg, "/nope: HTTP 404 File not found") != NULL);
}

TEST(auth_errors)
{
	_cleanup_close_ int fd = tmpfile_fd();
	kd_error err = {0};

	CHECK_INT(kd_http_download_fd(u(httpd_port, "/status/401"), fd, &fast, NULL, &err),
		  -EACCES);
	CHECK(strstr(err.msg, "HTTP 401 Unauthorized") != NULL);
	CHECK_INT(kd_http_download_fd(u(httpd_port, "/status/403"), fd, &fast, NULL, &err),
		  -EACCES);
	CHECK_INT(stat_hits("/status/403"), 1);
}

TEST(retry_5xx_then_ok)
{
	_cleanup_free_ char *data = NULL;
	kd_error err = {0};
	size_t len = 0;
	long status = 0;

	CHECK_INT(kd_http_get_buf(u(httpd_port, "/flaky/a/2"), &fast, &data, &len, &status, &err),
		  0);
	CHECK_INT(status, 200);
	CHECK_STR(data, "ok after 3\n");
	CHECK_INT(stat_hits("/flaky/a/2"), 3);
}

TEST(retry_5xx_gives_up)
{
	kd_http_opts o = fast;
	_cleanup_close_ int fd = tmpfile_fd();
	kd_error err = {0};
	char want[600];

	o.retries = 1;
	CHECK_INT(kd_http_download_fd(u(httpd_port, "/flaky/b/5"), fd, &o, NULL, &err), -EIO);
	snprintf(want, sizeof(want),
		 "GET http://127.0.0.1:%d/flaky/b/5: HTTP 500 Internal Server Error (after 2 "
		 "attempts)",
		 httpd_port);
	CHECK_STR(err.msg, want);
	CHECK_INT(stat_hits("/flaky/b/5"), 2);
	/* retries < 0: exactly one attempt */
	o.retries = -1;
	CHECK_INT(kd_http_download_fd(u(httpd_port, "/flaky/c/5"), fd, &o, NULL, &err), -EIO);
	CHECK_INT(stat_hits("/flaky/c/5"), 1);
}

TEST(retry_after_429)
{
	_cleanup_free_ char *data = NULL;
	kd_error err = {0};
	size_t len = 0;
	double t0 = now_s(), dt;

	CHECK_INT(kd_http_get_buf(u(httpd_port, "/ratelimit/a"), &fast, &data, &len, NULL, &err),
		  0);
	dt = now_s() - t0;
	CHECK_STR(data, "ok\n");
	CHECK_INT(stat_hits("/ratelimit/a"), 2);
	/* Retry-After: 1 wins over the 10 ms backoff. */
	CHECK(dt >= 0.95 && dt < 5);
}

TEST(slow_body_times_out)
{
	kd_http_opts o = {.low_speed_time_s = 1, .retries = -1};
	_cleanup_close_ int fd = tmpfile_fd();
	kd_error err = {0};
	double t0 = now_s(), dt;

	CHECK_INT(kd_http_download_fd(u(httpd_port, "/slow"), fd, &o, NULL, &err), -ETIMEDOUT);
	dt = now_s() - t0;
	CHECK(dt < 5);
	CHECK(strstr(err.msg, "/slow: timed out") != NULL);
	printf("# %s\n", err.msg);
}

TEST(redirects)
{
	_cleanup_free_ char *data = NULL;
	kd_error err = {0};
	size_t len = 0;
	char want[600];
	kd_http_opts o = fast;

	CHECK_INT(kd_http_get_buf(u(httpd_port, "/redirect/3"), &fast, &data, &len, NULL, &err), 0);
	CHECK_STR(data, "landed\n");
	free(TAKE_PTR(data));
	CHECK_INT(kd_http_get_buf(u(httpd_port, "/loop"), &fast, &data, &len, NULL, &err), -ELOOP);
	snprintf(want, sizeof(want), "GET http://127.0.0.1:%d/loop: more than 5 redirects",
		 httpd_port);
	CHECK_STR(err.msg, want);
	/* 6 hits: the first plus 5 followed redirects; never retried. */
	CHECK_INT(stat_hits("/loop"), 6);
	o.max_redirects = 2;
	CHECK_INT(kd_http_get_buf(u(httpd_port, "/redirect/3"), &o, &data, &len, NULL, &err),
		  -ELOOP);
	o.max_redirects = -1;
	CHECK_INT(kd_http_get_buf(u(httpd_port, "/redirect/1"), &o, &data, &len, NULL, &err), -EIO);
	CHECK(strstr(err.msg, "HTTP 302 Found") != NULL);
}

TEST(size_limits)
{
	kd_http_opts o = fast;
	_cleanup_close_ int fd = tmpfile_fd();
	kd_error err = {0};
	char want[600];
	double t0 = now_s();

	o.max_bytes = 1024 * 1024;
	CHECK_INT(kd_http_download_fd(u(httpd_port, "/big"), fd, &o, NULL, &err), -EFBIG);
	snprintf(want, sizeof(want),
		 "GET http://127.0.0.1:%d/big: response larger than the limit of 1048576 bytes",
		 httpd_port);
	CHECK_STR(err.msg, want);
	/* Without a Content-Length the limit stops the stream as it passes. */
	CHECK_INT(kd_http_download_fd(u(httpd_port, "/endless"), fd, &o, NULL, &err), -EFBIG);
	CHECK(lseek(fd, 0, SEEK_END) <= 1024 * 1024);
	CHECK_INT(stat_hits("/endless"), 1);
	CHECK(now_s() - t0 < 5);
}

TEST(resume_with_range)
{
	_cleanup_close_ int fd = tmpfile_fd();
	_cleanup_free_ uint8_t *want = malloc(200000);
	_cleanup_free_ uint8_t *got = malloc(200001);
	kd_error err = {0};
	long status = 0;

	for (int i = 0; i < 200000; i++)
		want[i] = (uint8_t)(i % 251);
	CHECK_INT(kd_http_download_fd(u(httpd_port, "/partial/a"), fd, &fast, &status, &err), 0);
	CHECK_INT(status, 206);
	CHECK_INT(lseek(fd, 0, SEEK_END), 200000);
	CHECK_INT(pread(fd, got, 200001, 0), 200000);
	CHECK(memcmp(got, want, 200000) == 0);
	CHECK_INT(stat_hits("/partial/a"), 2);
	CHECK_INT(stat_hits("/ranged/partial/a"), 1);
}

TEST(resume_impossible_on_pipe)
{
	int p[2];
	kd_error err = {0};

	CHECK_INT(pipe(p), 0);
	/* A pipe cannot be rewound: after half the body went in, no retry. 100000 bytes fit a
	 * 1 MiB pipe buffer. */
	CHECK(fcntl(p[1], F_SETPIPE_SZ, 1024 * 1024) >= 0);
	CHECK_INT(kd_http_download_fd(u(httpd_port, "/partial/b"), p[1], &fast, NULL, &err), -EIO);
	CHECK_INT(stat_hits("/partial/b"), 1);
	close(p[0]);
	close(p[1]);
}

TEST(connection_refused)
{
	kd_http_opts o = fast;
	_cleanup_close_ int fd = tmpfile_fd();
	kd_error err = {0};
	char target[64];

	o.retries = 2;
	snprintf(target, sizeof(target), "http://127.0.0.1:%d/x", free_port());
	CHECK_INT(kd_http_download_fd(target, fd, &o, NULL, &err), -ECONNREFUSED);
	CHECK(strstr(err.msg, "(after retries): cannot connect") != NULL);
	CHECK_INT(kd_http_download_fd("ftp://127.0.0.1/x", fd, &o, NULL, &err), -EINVAL);
	CHECK_STR(err.msg, "GET ftp://127.0.0.1/x: not an http:// or https:// URL");
}

TEST(credentials_not_in_messages)
{
	_cleanup_close_ int fd = tmpfile_fd();
	kd_error err = {0};
	char target[256], want[300];

	snprintf(target, sizeof(target), "http://user:secret@127.0.0.1:%d/status/404", httpd_port);
	CHECK_INT(kd_http_download_fd(target, fd, &fast, NULL, &err), -ENOENT);
	snprintf(want, sizeof(want), "GET http://127.0.0.1:%d/status/404: HTTP 404 Not Found",
		 httpd_port);
	CHECK_STR(err.msg, want);
	CHECK(strstr(err.msg, "secret") == NULL);
}

TEST(request_post_buffer)
{
	_cleanup_http_response_ kd_http_response resp = {0};
	_cleanup_json_ struct json_object *o = NULL;
	const char *hdrs[] = {"Content-Type: application/json", "X-Test: 1", NULL};
	const char *body = "{\"kind\":\"Node\"}";
	kd_http_request req = {
		.method = "POST",
		.url = u(httpd_port, "/echo/post"),
		.headers = hdrs,
		.body = body,
		.body_len = strlen(body),
		.bearer_token = "tok123",
	};
	char hex[65];
	const char *s = NULL;
	int64_t n = 0;
	kd_error err = {0};

	CHECK_INT(kd_http_do(&req, &fast, &resp, &err), 0);
	CHECK_INT(resp.status, 201);
	CHECK_STR(resp.location, "/v2/x/blobs/uploads/1?_state=abc");
	CHECK_STR(resp.etag, "\"e1\"");
	CHECK_STR(resp.content_type, "application/json");
	CHECK(resp.retry_after == NULL);
	CHECK_INT(kd_json_parse(resp.body, resp.body_len, "echo", &o, &err), 0);
	CHECK_INT(kd_json_get_string(o, NULL, "method", true, &s, &err), 1);
	CHECK_STR(s, "POST");
	CHECK_INT(kd_json_get_string(o, NULL, "authorization", true, &s, &err), 1);
	CHECK_STR(s, "Bearer tok123");
	CHECK_INT(kd_json_get_string(o, NULL, "content_type", true, &s, &err), 1);
	CHECK_STR(s, "application/json");
	CHECK_INT(kd_json_get_string(o, NULL, "x_test", true, &s, &err), 1);
	CHECK_STR(s, "1");
	s = NULL;
	CHECK_INT(kd_json_get_string(o, NULL, "expect", false, &s, &err), 0);
	CHECK_INT(kd_json_get_int64(o, NULL, "body_len", true, &n, &err), 1);
	CHECK_INT(n, strlen(body));
	kd_sha256_buf(body, strlen(body), hex);
	CHECK_INT(kd_json_get_string(o, NULL, "body_sha256", true, &s, &err), 1);
	CHECK_STR(s, hex);
	CHECK(resp.docker_content_digest && strcmp(resp.docker_content_digest + 7, hex) == 0);
}

TEST(request_put_from_fd)
{
	_cleanup_http_response_ kd_http_response resp = {0};
	_cleanup_json_ struct json_object *o = NULL;
	_cleanup_close_ int fd = tmpfile_fd();
	size_t n = 300000;
	_cleanup_free_ char *blob = malloc(n);
	char hex[65];
	const char *s = NULL;
	int64_t len = 0;
	kd_error err = {0};

	for (size_t i = 0; i < n; i++)
		blob[i] = (char)(i % 13);
	CHECK(write(fd, "skip", 4) == 4 && write(fd, blob, n) == (ssize_t)n);
	kd_http_request req = {
		.method = "PUT",
		.url = u(httpd_port, "/echo/put"),
		.body_fd = fd,
		.body_fd_offset = 4,
		.body_fd_len = n,
	};
	CHECK_INT(kd_http_do(&req, NULL, &resp, &err), 0);
	CHECK_INT(resp.status, 201);
	CHECK_INT(kd_json_parse(resp.body, resp.body_len, "echo", &o, &err), 0);
	CHECK_INT(kd_json_get_string(o, NULL, "method", true, &s, &err), 1);
	CHECK_STR(s, "PUT");
	CHECK_INT(kd_json_get_int64(o, NULL, "body_len", true, &len, &err), 1);
	CHECK_INT(len, n);
	kd_sha256_buf(blob, n, hex);
	CHECK_INT(kd_json_get_string(o, NULL, "body_sha256", true, &s, &err), 1);
	CHECK_STR(s, hex);
}

TEST(request_statuses_are_answers)
{
	_cleanup_http_response_ kd_http_response resp = {0};
	kd_http_request req = {.method = "DELETE", .url = u(httpd_port, "/status/404")};
	kd_error err = {0};

	CHECK_INT(kd_http_do(&req, &fast, &resp, &err), 0);
	CHECK_INT(resp.status, 404);
	CHECK_STR(resp.body, "status 404\n");
	kd_http_response_free(&resp);

	req.method = "GET";
	req.url = u(httpd_port, "/status/401");
	CHECK_INT(kd_http_do(&req, &fast, &resp, &err), 0);
	CHECK_INT(resp.status, 401);
	CHECK_STR(resp.www_authenticate, "Bearer realm=\"test\"");
	kd_http_response_free(&resp);

	/* POST is not redirected: the caller sees the 302 and its Location. */
	req.method = "POST";
	req.url = u(httpd_port, "/redirect/1");
	CHECK_INT(kd_http_do(&req, &fast, &resp, &err), 0);
	CHECK_INT(resp.status, 302);
	CHECK_STR(resp.location, "/redirect/0");
	kd_http_response_free(&resp);

	/* A POST answered 500 may have been acted on: not repeated. A PUT is. */
	req.url = u(httpd_port, "/flaky/post/1");
	CHECK_INT(kd_http_do(&req, &fast, &resp, &err), 0);
	CHECK_INT(resp.status, 500);
	CHECK_INT(stat_hits("/flaky/post/1"), 1);
	kd_http_response_free(&resp);
	req.method = "PUT";
	req.url = u(httpd_port, "/flaky/put/1");
	CHECK_INT(kd_http_do(&req, &fast, &resp, &err), 0);
	CHECK_INT(resp.status, 200);
	CHECK_INT(stat_hits("/flaky/put/1"), 2);
	kd_http_response_free(&resp);
	/* 429 is a refusal: even a POST is repeated, after Retry-After. */
	req.method = "POST";
	req.url = u(httpd_port, "/ratelimit/post");
	CHECK_INT(kd_http_do(&req, &fast, &resp, &err), 0);
	CHECK_INT(resp.status, 200);
	CHECK_INT(stat_hits("/ratelimit/post"), 2);
	kd_http_response_free(&resp);

	req.method = "HEAD";
	req.url = u(httpd_port, "/echo/head");
	CHECK_INT(kd_http_do(&req, &fast, &resp, &err), 0);
	CHECK_INT(resp.status, 201);
	CHECK_INT(resp.body_len, 0);
	kd_http_response_free(&resp);

	/* A body over the response limit. */
	req.method = "GET";
	req.url = u(httpd_port, "/endless");
	req.max_response = 4096;
	CHECK_INT(kd_http_do(&req, &fast, &resp, &err), -EFBIG);
	CHECK(strstr(err.msg, "larger than the limit of 4096 bytes") != NULL);
}

static int make_cert(const char *cert, const char *key)
{
	char cmd[2048];

	snprintf(cmd, sizeof(cmd),
		 "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
		 "-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 -keyout %s -out %s "
		 ">/dev/null 2>&1",
		 key, cert);
	return system(cmd);
}

/* A server that accepts TCP and resets during the TLS handshake (an apiserver that is still
 * starting did this in CI): a transient failure, retried like a refused connection, even for a
 * POST, since no request reached the server. */
TEST(tls_reset_during_handshake_is_retried)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t alen = sizeof(a);
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), p[2];
	char target[128], buf[512];
	kd_http_opts o = fast;
	kd_error err = {0};

	CHECK(lfd >= 0 && bind(lfd, (struct sockaddr *)&a, sizeof(a)) == 0 && listen(lfd, 8) == 0 &&
	      getsockname(lfd, (struct sockaddr *)&a, &alen) == 0 && pipe(p) == 0);
	pid_t pid = fork();
	if (pid == 0) {
		for (;;) {
			int c = accept(lfd, NULL, NULL);
			if (c < 0)
				_exit(1);
			(void)!read(c, buf, sizeof(buf)); /* the ClientHello */
			struct linger l = {.l_onoff = 1, .l_linger = 0};
			setsockopt(c, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
			close(c); /* RST */
			(void)!write(p[1], "x", 1);
		}
	}
	close(lfd);
	close(p[1]);
	snprintf(target, sizeof(target), "https://127.0.0.1:%d/x", ntohs(a.sin_port));
	o.retries = 2;
	kd_http_request req = {.method = "POST", .url = target, .body = "{}", .body_len = 2};
	kd_http_response resp = {0};
	CHECK(kd_http_do(&req, &o, &resp, &err) < 0);
	printf("# %s\n", err.msg);
	CHECK(strstr(err.msg, "TLS") != NULL);
	kd_http_response_free(&resp);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	ssize_t n = read(p[0], buf, sizeof(buf));
	close(p[0]);
	CHECK_INT((int)n, 3); /* the first attempt and 2 retries */
}

TEST(tls_verification_always_on)
{
	char target[128];
	kd_http_opts o = fast;
	_cleanup_free_ char *data = NULL;
	char cert[512];
	kd_error err = {0};
	size_t len = 0;

	if (tls_port <= 0) {
		CHECK(!"TLS server did not start");
		return;
	}
	snprintf(cert, sizeof(cert), "%s/cert.pem", tmpdir);
	snprintf(target, sizeof(target), "https://127.0.0.1:%d/status/200", tls_port);
	o.retries = -1;
	/* Self-signed and not in the system store: refused. */
	CHECK_INT(kd_http_get_buf(target, &o, &data, &len, NULL, &err), -EPROTO);
	CHECK(strstr(err.msg, "TLS") != NULL);
	printf("# %s\n", err.msg);
	/* With our CA bundle: accepted. */
	o.ca_file = cert;
	CHECK_INT(kd_http_get_buf(target, &o, &data, &len, NULL, &err), 0);
	CHECK_STR(data, "status 200\n");
}

int main(void)
{
	char dir[600], cert[512], key[512], portstr[16];

	signal(SIGPIPE, SIG_IGN);
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(dir, sizeof(dir), "%s/files", tmpdir);
	mkdir(dir, 0755);

	files_port = free_port();
	snprintf(portstr, sizeof(portstr), "%d", files_port);
	{
		char *argv[] = {"python3",     "-m", "http.server", "--bind", "127.0.0.1",
				"--directory", dir,  portstr,	    NULL};
		files_pid = spawn(argv);
	}
	httpd_port = start_httpd("port", NULL, NULL, &httpd_pid);
	snprintf(cert, sizeof(cert), "%s/cert.pem", tmpdir);
	snprintf(key, sizeof(key), "%s/key.pem", tmpdir);
	if (make_cert(cert, key) == 0)
		tls_port = start_httpd("tlsport", cert, key, &tls_pid);
	files_port = wait_port(files_port, NULL);
	if (files_port < 0 || httpd_port < 0) {
		printf("Bail out! test servers did not start\n");
		return 1;
	}

	RUN(is_url_and_status);
	RUN(download_file);
	RUN(no_progress_without_tty);
	RUN(get_buf);
	RUN(not_found_is_not_retried);
	RUN(auth_errors);
	RUN(retry_5xx_then_ok);
	RUN(retry_5xx_gives_up);
	RUN(retry_after_429);
	RUN(slow_body_times_out);
	RUN(redirects);
	RUN(size_limits);
	RUN(resume_with_range);
	RUN(resume_impossible_on_pipe);
	RUN(connection_refused);
	RUN(credentials_not_in_messages);
	RUN(request_post_buffer);
	RUN(request_put_from_fd);
	RUN(request_statuses_are_answers);
	RUN(tls_reset_during_handshake_is_retried);
	RUN(tls_verification_always_on);

	for (pid_t *p = (pid_t[]){files_pid, httpd_pid, tls_pid, 0}; *p; p++) {
		if (*p > 0) {
			kill(*p, SIGTERM);
			waitpid(*p, NULL, 0);
		}
	}
	{
		char cmd[700];
		snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
		if (system(cmd) != 0)
			printf("# could not remove %s\n", tmpdir);
	}
	TAP_END();
}
