/* HTTP(S) client over libcurl: downloads into an fd or a buffer, and one general request for
 * the Kubernetes client and the OCI registry push. Owns every limit on what a server can make us
 * do (size, redirects, speed, retries) and turns curl and HTTP failures into our errors
 * ("GET http://host/x: HTTP 404 Not Found"). TLS verification is always on. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define KD_HTTP_DEFAULT_MAX (2ULL * 1024 * 1024 * 1024) /* bytes of a response body */
#define KD_HTTP_DEFAULT_MAX_REDIRECTS 5L
#define KD_HTTP_DEFAULT_CONNECT_TIMEOUT_S 10L
#define KD_HTTP_DEFAULT_LOW_SPEED_TIME_S 30L
#define KD_HTTP_LOW_SPEED_LIMIT 1024L /* bytes per second */
#define KD_HTTP_DEFAULT_RETRIES 3
#define KD_HTTP_DEFAULT_BACKOFF_MS 500L
#define KD_HTTP_MAX_BACKOFF_MS 30000L  /* one wait never exceeds this ... */
#define KD_HTTP_MAX_RETRY_AFTER_S 60L  /* ... nor what a server's Retry-After asks for */
#define KD_HTTP_HEADER_MAX 8192	       /* bytes of one captured response header value */
#define KD_HTTP_MAX_REQUEST_HEADERS 64 /* extra request headers */

typedef struct kd_http_opts {
	uint64_t max_bytes;	/* 0 = KD_HTTP_DEFAULT_MAX (2 GiB) */
	long max_redirects;	/* default 5 when 0; negative = do not follow redirects */
	long connect_timeout_s; /* default 10 */
	long low_speed_time_s;	/* abort if below 1 KiB/s for this long; default 30 */
	int retries;		/* on connection errors / 5xx / 429 / timeouts, default 3 when 0,
				   negative = none; never on other 4xx */
	long backoff_ms;	/* first backoff, doubled each retry with jitter; default 500 */
	const char *ca_file;	/* optional CA bundle; TLS verification is ALWAYS on */
	const char *user_agent; /* default "kata-deploy" */
	bool progress;		/* progress on stderr: a bar (bytes, %, rate) on a TTY, else a
				   line every 5 s */
} kd_http_opts;

/* Download url into fd (truncated first; on retry, resume with Range when the server allows it,
 * else start over). opts may be NULL. Returns 0 on a 2xx answer, else -ENOENT (404/410),
 * -EACCES (401/403), -EFBIG (size limit), -ETIMEDOUT, -ELOOP (redirects), -ECONNREFUSED,
 * -EHOSTUNREACH (DNS), -EPROTO (TLS), -EIO (other); err says "GET http://...: HTTP 404 Not
 * Found" etc. *ret_status (may be NULL) gets the last HTTP status, also on failure. */
int kd_http_download_fd(const char *url, int fd, const kd_http_opts *opts, long *ret_status,
			kd_error *err);

/* Resume a download: fd already holds the resource's first `from` bytes (a partial file kept
 * from an earlier run), so ask for the rest with Range (If-Range on retries) and append; a
 * server that answers 200 instead of 206 starts the file over. headers: NULL-terminated
 * "Name: value" lines added to every attempt (Authorization). Otherwise as
 * kd_http_download_fd (which is this with from = 0). */
int kd_http_download_at(const char *url, const char *const *headers, int fd, uint64_t from,
			const kd_http_opts *opts, long *ret_status, kd_error *err);

/* Same into a malloc'ed NUL-terminated buffer (the NUL is not counted in *ret_len). */
int kd_http_get_buf(const char *url, const kd_http_opts *opts, char **ret_data, size_t *ret_len,
		    long *ret_status, kd_error *err);

/* Load libcurl now (it is otherwise loaded on first use): 0, or why it cannot be loaded. */
int kd_http_load(kd_error *err);

/* True for "http://..." and "https://..." (case-insensitive scheme). */
bool kd_is_url(const char *s);

/* The general request. Any HTTP answer is a success (0) with its status in the response: the
 * caller decides what a 404 or 409 means (kd_http_status_errno() maps one the usual way).
 * Connection errors, timeouts, 5xx and 429 are retried as in kd_http_opts, honouring
 * Retry-After (POST and PATCH only after connection failures, 429 and 503); a body from an fd is
 * re-read from body_fd_offset on each attempt. Redirects are followed for GET and HEAD only; other
 * methods get the 3xx and its Location. */
typedef struct kd_http_request {
	const char *method; /* default "GET" ("HEAD" sends no body and reads none) */
	const char *url;
	const char *const *headers; /* NULL-terminated "Name: value" lines, optional */
	const void *body;	    /* request body from memory ... */
	size_t body_len;
	int body_fd; /* ... or from this fd when body_fd_len > 0 (read with pread) */
	uint64_t body_fd_offset;
	uint64_t body_fd_len;
	const char *bearer_token; /* "Authorization: Bearer <token>" */
	const char *client_cert;  /* PEM files for TLS client authentication */
	const char *client_key;
	uint64_t max_response; /* response body limit; 0 = KD_HTTP_DEFAULT_MAX_RESPONSE */
	long timeout_s;	       /* whole attempt, 0 = none (the low-speed limit still applies) */
} kd_http_request;

#define KD_HTTP_DEFAULT_MAX_RESPONSE (64ULL * 1024 * 1024)

typedef struct kd_http_response {
	long status;
	char *body; /* NUL-terminated; body_len excludes the NUL */
	size_t body_len;
	/* Captured response headers (of the final answer after redirects), NULL when absent. */
	char *location;
	char *docker_content_digest;
	char *retry_after;
	char *www_authenticate;
	char *etag;
	char *content_type;
} kd_http_response;

int kd_http_do(const kd_http_request *req, const kd_http_opts *opts, kd_http_response *ret,
	       kd_error *err);
void kd_http_response_free(kd_http_response *r);

/* 2xx -> 0, 404/410 -> -ENOENT, 401/403 -> -EACCES, 409 -> -EEXIST, 413 -> -EFBIG,
 * 408/504 -> -ETIMEDOUT, 429/503 -> -EAGAIN, others -> -EIO. */
int kd_http_status_errno(long status);

/* "Not Found" for 404 and so on; "" for codes we do not name. */
const char *kd_http_reason(long status);

static inline void kd_http_response_freep(kd_http_response *r)
{
	kd_http_response_free(r);
}
#define _cleanup_http_response_ _cleanup_(kd_http_response_freep)
