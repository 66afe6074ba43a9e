#include "http.h"

#include <ctype.h>
#include <curl/curl.h>
#include <dlfcn.h>
#include <inttypes.h>
#include <pthread.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>

#include "log.h"

#define PROGRESS_INTERVAL_MS 200
/* Not a terminal (a pod's log, a pipe): one line this often instead of a redrawn bar. */
#define PROGRESS_LINE_INTERVAL_MS 5000
#define DISPLAY_URL_MAX 1024

#define LIBCURL_SONAME "libcurl.so.4"

/* libcurl is loaded on first use, not linked: only a URL payload, a push or the agent's API
 * client needs it, and linking it maps ~25 libraries (HTTP/2, IDN, SSH, LDAP, Kerberos, GnuTLS
 * through librtmp, ...) into every run of kata-deploy, ~11 MiB of its peak RSS. The soname
 * pins the ABI (curl keeps libcurl.so.4 compatible); every function we call is in the table. */
static struct {
	CURLcode (*global_init)(long flags);
	CURL *(*easy_init)(void);
	CURLcode (*easy_setopt)(CURL *c, CURLoption opt, ...);
	CURLcode (*easy_perform)(CURL *c);
	CURLcode (*easy_getinfo)(CURL *c, CURLINFO info, ...);
	void (*easy_cleanup)(CURL *c);
	const char *(*easy_strerror)(CURLcode rc);
	struct curl_slist *(*slist_append)(struct curl_slist *l, const char *s);
	void (*slist_free_all)(struct curl_slist *l);
	time_t (*getdate)(const char *s, const time_t *unused);
} cu;

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static char global_msg[256]; /* why loading libcurl failed, "" when it did not */

static void *load_sym(void *h, const char *name)
{
	void *f = dlsym(h, name);

	if (!f && !global_msg[0])
		snprintf(global_msg, sizeof(global_msg), "%s: no symbol %s", LIBCURL_SONAME, name);
	return f;
}

static void global_init(void)
{
	/* Never closed: libcurl keeps global state (TLS backend) until the process exits. */
	void *h = dlopen(LIBCURL_SONAME, RTLD_NOW | RTLD_LOCAL);
	const char *e;

	if (!h) {
		e = dlerror();
		snprintf(global_msg, sizeof(global_msg), "cannot load %s: %s", LIBCURL_SONAME,
			 e ? e : "unknown error");
		return;
	}
	cu.global_init = (CURLcode(*)(long))load_sym(h, "curl_global_init");
	cu.easy_init = (CURL * (*)(void)) load_sym(h, "curl_easy_init");
	cu.easy_setopt = (CURLcode(*)(CURL *, CURLoption, ...))load_sym(h, "curl_easy_setopt");
	cu.easy_perform = (CURLcode(*)(CURL *))load_sym(h, "curl_easy_perform");
	cu.easy_getinfo = (CURLcode(*)(CURL *, CURLINFO, ...))load_sym(h, "curl_easy_getinfo");
	cu.easy_cleanup = (void (*)(CURL *))load_sym(h, "curl_easy_cleanup");
	cu.easy_strerror = (const char *(*)(CURLcode))load_sym(h, "curl_easy_strerror");
	cu.slist_append = (struct curl_slist * (*)(struct curl_slist *, const char *))
		load_sym(h, "curl_slist_append");
	cu.slist_free_all = (void (*)(struct curl_slist *))load_sym(h, "curl_slist_free_all");
	cu.getdate = (time_t(*)(const char *, const time_t *))load_sym(h, "curl_getdate");
	if (global_msg[0])
		return;
	CURLcode rc = cu.global_init(CURL_GLOBAL_DEFAULT);
	if (rc != CURLE_OK)
		snprintf(global_msg, sizeof(global_msg), "curl_global_init: %s",
			 cu.easy_strerror(rc));
}

static void easy_cleanupp(CURL **c)
{
	if (*c)
		cu.easy_cleanup(*c);
}

static void slist_free_allp(struct curl_slist **l)
{
	if (*l)
		cu.slist_free_all(*l);
}

int kd_http_load(kd_error *err)
{
	pthread_once(&global_once, global_init);
	if (global_msg[0])
		return kd_err(err, -ENOPKG, "%s", global_msg);
	return 0;
}

bool kd_is_url(const char *s)
{
	return s && (strncasecmp(s, "http://", 7) == 0 || strncasecmp(s, "https://", 8) == 0);
}

static const struct {
	long status;
	const char *reason;
} reasons[] = {
	{200, "OK"},
	{201, "Created"},
	{202, "Accepted"},
	{204, "No Content"},
	{206, "Partial Content"},
	{301, "Moved Permanently"},
	{302, "Found"},
	{303, "See Other"},
	{304, "Not Modified"},
	{307, "Temporary Redirect"},
	{308, "Permanent Redirect"},
	{400, "Bad Request"},
	{401, "Unauthorized"},
	{403, "Forbidden"},
	{404, "Not Found"},
	{405, "Method Not Allowed"},
	{408, "Request Timeout"},
	{409, "Conflict"},
	{410, "Gone"},
	{412, "Precondition Failed"},
	{413, "Content Too Large"},
	{415, "Unsupported Media Type"},
	{416, "Range Not Satisfiable"},
	{422, "Unprocessable Content"},
	{429, "Too Many Requests"},
	{500, "Internal Server Error"},
	{501, "Not Implemented"},
	{502, "Bad Gateway"},
	{503, "Service Unavailable"},
	{504, "Gateway Timeout"},
};

const char *kd_http_reason(long status)
{
	for (size_t i = 0; i < ELEMENTSOF(reasons); i++)
		if (reasons[i].status == status)
			return reasons[i].reason;
	return "";
}

int kd_http_status_errno(long status)
{
	if (status >= 200 && status < 300)
		return 0;
	switch (status) {
	case 404:
	case 410:
		return -ENOENT;
	case 401:
	case 403:
		return -EACCES;
	case 409:
		return -EEXIST;
	case 413:
		return -EFBIG;
	case 408:
	case 504:
		return -ETIMEDOUT;
	case 429:
	case 503:
		return -EAGAIN;
	}
	return -EIO;
}

void kd_http_response_free(kd_http_response *r)
{
	if (!r)
		return;
	free(r->body);
	free(r->location);
	free(r->docker_content_digest);
	free(r->retry_after);
	free(r->www_authenticate);
	free(r->etag);
	free(r->content_type);
	*r = (kd_http_response){0};
}

/* The URL for messages: without "user:password@", which must never reach a log. */
static const char *display_url(const char *url, char buf[DISPLAY_URL_MAX])
{
	const char *auth = strstr(url, "://"), *end, *at;

	if (!auth) {
		snprintf(buf, DISPLAY_URL_MAX, "%s", url);
		return buf;
	}
	auth += 3;
	end = auth + strcspn(auth, "/?#");
	at = memchr(auth, '@', (size_t)(end - auth));
	if (!at)
		snprintf(buf, DISPLAY_URL_MAX, "%s", url);
	else
		snprintf(buf, DISPLAY_URL_MAX, "%.*s%s", (int)(auth - url), url, at + 1);
	return buf;
}

enum sink_kind { SINK_FD, SINK_BUF };

/* State of one request across its attempts. */
typedef struct xfer {
	const char *method;
	char url[DISPLAY_URL_MAX];
	enum sink_kind sink;
	bool keep_error_body; /* general requests keep a non-2xx body; downloads drop it */
	uint64_t max;

	/* sink */
	int fd;
	bool seekable;
	uint64_t written; /* bytes in fd / buf that belong to the current response */
	char *buf;
	size_t cap;

	/* per attempt */
	uint64_t resume_from; /* Range start asked for in this attempt, 0 = whole */
	char *resume_etag;    /* ETag of the response we resume, for If-Range */
	CURLcode rc;
	bool first_data;
	bool too_big;
	bool dropped; /* write callback stopped a non-2xx body on purpose */
	int write_errno;
	long status;
	char reason[128];
	bool accept_ranges;
	int64_t range_start; /* from Content-Range, -1 when absent */
	kd_http_response hdr;

	/* request body */
	const uint8_t *body;
	int body_fd;
	uint64_t body_off, body_len, body_pos;
	int read_errno;

	/* progress */
	bool progress, progress_tty;
	struct timespec last_progress, progress_start;
	bool progress_shown;
} xfer;

static void hdr_reset(xfer *x)
{
	kd_http_response_free(&x->hdr);
	x->status = 0;
	x->reason[0] = '\0';
	x->accept_ranges = false;
	x->range_start = -1;
}

static char *trimmed_dup(const char *s, size_t n)
{
	while (n > 0 && isspace((unsigned char)*s)) {
		s++;
		n--;
	}
	while (n > 0 && isspace((unsigned char)s[n - 1]))
		n--;
	if (n > KD_HTTP_HEADER_MAX)
		n = KD_HTTP_HEADER_MAX;
	return strndup(s, n);
}

static void capture(char **slot, const char *v, size_t n)
{
	free(*slot);
	*slot = trimmed_dup(v, n);
}

static size_t header_cb(char *data, size_t size, size_t nmemb, void *userdata)
{
	xfer *x = userdata;
	size_t n = size * nmemb;
	static const struct {
		const char *name;
		size_t off;
	} wanted[] = {
		{"location", offsetof(kd_http_response, location)},
		{"docker-content-digest", offsetof(kd_http_response, docker_content_digest)},
		{"retry-after", offsetof(kd_http_response, retry_after)},
		{"www-authenticate", offsetof(kd_http_response, www_authenticate)},
		{"etag", offsetof(kd_http_response, etag)},
		{"content-type", offsetof(kd_http_response, content_type)},
	};
	const char *colon;
	size_t name_len;

	/* Each response (a redirect, a 100 Continue, the final one) starts with a status line
	 * and gets a fresh set of headers. */
	if (n >= 5 && strncmp(data, "HTTP/", 5) == 0) {
		const char *p = memchr(data, ' ', n), *end = data + n;
		hdr_reset(x);
		if (p) {
			x->status = strtol(p + 1, NULL, 10);
			p = memchr(p + 1, ' ', (size_t)(end - p - 1));
			if (p) {
				char *r = trimmed_dup(p + 1, (size_t)(end - p - 1));
				if (r)
					snprintf(x->reason, sizeof(x->reason), "%s", r);
				free(r);
			}
		}
		return n;
	}
	colon = memchr(data, ':', n);
	if (!colon)
		return n;
	name_len = (size_t)(colon - data);
	for (size_t i = 0; i < ELEMENTSOF(wanted); i++) {
		if (strlen(wanted[i].name) == name_len &&
		    strncasecmp(data, wanted[i].name, name_len) == 0) {
			capture((char **)((char *)&x->hdr + wanted[i].off), colon + 1,
				n - name_len - 1);
			return n;
		}
	}
	if (name_len == 13 && strncasecmp(data, "accept-ranges", 13) == 0) {
		_cleanup_free_ char *v = trimmed_dup(colon + 1, n - name_len - 1);
		x->accept_ranges = v && strcasecmp(v, "bytes") == 0;
	} else if (name_len == 13 && strncasecmp(data, "content-range", 13) == 0) {
		_cleanup_free_ char *v = trimmed_dup(colon + 1, n - name_len - 1);
		unsigned long long start;
		if (v && sscanf(v, "bytes %llu-", &start) == 1 && start <= INT64_MAX)
			x->range_start = (int64_t)start;
	}
	return n;
}

static int sink_restart(xfer *x)
{
	x->written = 0;
	if (x->sink == SINK_BUF)
		return 0;
	if (!x->seekable)
		return 0;
	if (ftruncate(x->fd, 0) < 0 || lseek(x->fd, 0, SEEK_SET) < 0)
		return -errno;
	return 0;
}

static size_t write_cb(char *data, size_t size, size_t nmemb, void *userdata)
{
	xfer *x = userdata;
	size_t n = size * nmemb;
	bool ok = x->status >= 200 && x->status < 300;

	if (!ok && !x->keep_error_body) {
		/* Nobody reads an error page we download; stop here, the status says it all. */
		x->dropped = true;
		return 0;
	}
	if (x->first_data) {
		x->first_data = false;
		/* Resume only when the server sent exactly the range we asked for; a 200 means
		 * it ignored Range (or the resource changed under If-Range): start over. */
		if (x->resume_from > 0 &&
		    !(x->status == 206 && x->range_start == (int64_t)x->resume_from)) {
			int r = sink_restart(x);
			if (r < 0) {
				x->write_errno = -r;
				return 0;
			}
		}
	}
	if (x->written + n > x->max) {
		x->too_big = true;
		return 0;
	}
	if (x->sink == SINK_BUF) {
		if (x->written + n + 1 > x->cap) {
			size_t cap = x->cap ? x->cap : 16 * 1024;
			char *p;
			while (cap < x->written + n + 1)
				cap *= 2;
			p = realloc(x->buf, cap);
			if (!p) {
				x->write_errno = ENOMEM;
				return 0;
			}
			x->buf = p;
			x->cap = cap;
		}
		memcpy(x->buf + x->written, data, n);
		x->buf[x->written + n] = '\0';
	} else {
		for (size_t done = 0; done < n;) {
			ssize_t w = write(x->fd, data + done, n - done);
			if (w < 0) {
				if (errno == EINTR)
					continue;
				x->write_errno = errno;
				return 0;
			}
			done += (size_t)w;
		}
	}
	x->written += n;
	return n;
}

static size_t read_cb(char *buffer, size_t size, size_t nitems, void *userdata)
{
	xfer *x = userdata;
	size_t want = size * nitems;
	uint64_t left = x->body_len - x->body_pos;

	if (want > left)
		want = (size_t)left;
	if (want == 0)
		return 0;
	if (x->body) {
		memcpy(buffer, x->body + x->body_pos, want);
	} else {
		ssize_t n;
		do
			n = pread(x->body_fd, buffer, want, (off_t)(x->body_off + x->body_pos));
		while (n < 0 && errno == EINTR);
		if (n < 0) {
			x->read_errno = errno;
			return CURL_READFUNC_ABORT;
		}
		if (n == 0) {
			x->read_errno = EIO; /* file shrank under us */
			return CURL_READFUNC_ABORT;
		}
		want = (size_t)n;
	}
	x->body_pos += want;
	return want;
}

static int progress_cb(void *userdata, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
		       curl_off_t ulnow)
{
	xfer *x = userdata;
	struct timespec now;
	char a[32], b[32];
	long ms;

	(void)ultotal;
	(void)ulnow;
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (!x->progress_start.tv_sec && !x->progress_start.tv_nsec) {
		x->progress_start = now;
		x->last_progress = now;
	}
	ms = (now.tv_sec - x->last_progress.tv_sec) * 1000 +
	     (now.tv_nsec - x->last_progress.tv_nsec) / 1000000;
	if (ms < (x->progress_tty ? PROGRESS_INTERVAL_MS : PROGRESS_LINE_INTERVAL_MS) || dlnow == 0)
		return 0;
	x->last_progress = now;
	double secs = (double)(now.tv_sec - x->progress_start.tv_sec) +
		      (double)(now.tv_nsec - x->progress_start.tv_nsec) / 1e9;
	char rate[32];
	kd_format_bytes(secs > 0 ? (double)dlnow / secs : 0, rate, sizeof(rate));
	kd_format_bytes((double)(x->resume_from + (uint64_t)dlnow), a, sizeof(a));
	const char *lead = x->progress_tty ? "\r" : "", *tail = x->progress_tty ? "   " : "\n";
	if (!x->progress_tty)
		fprintf(stderr, "GET %s: ", x->url);
	if (dltotal > 0) {
		double total = (double)(x->resume_from + (uint64_t)dltotal);
		kd_format_bytes(total, b, sizeof(b));
		fprintf(stderr, "%s%s / %s (%3.0f%%), %s/s%s", lead, a, b,
			100.0 * (double)(x->resume_from + (uint64_t)dlnow) / total, rate, tail);
	} else {
		fprintf(stderr, "%s%s, %s/s%s", lead, a, rate, tail);
	}
	x->progress_shown = x->progress_tty;
	return 0;
}

typedef struct eff_opts {
	uint64_t max;
	long max_redirects, connect_timeout_s, low_speed_time_s, backoff_ms;
	int retries;
	const char *ca_file, *user_agent;
	bool progress;
} eff_opts;

static eff_opts effective(const kd_http_opts *o)
{
	static const kd_http_opts none;
	eff_opts e;

	if (!o)
		o = &none;
	e.max = o->max_bytes ? o->max_bytes : KD_HTTP_DEFAULT_MAX;
	e.max_redirects = o->max_redirects ? o->max_redirects : KD_HTTP_DEFAULT_MAX_REDIRECTS;
	e.connect_timeout_s =
		o->connect_timeout_s > 0 ? o->connect_timeout_s : KD_HTTP_DEFAULT_CONNECT_TIMEOUT_S;
	e.low_speed_time_s =
		o->low_speed_time_s > 0 ? o->low_speed_time_s : KD_HTTP_DEFAULT_LOW_SPEED_TIME_S;
	e.retries = o->retries > 0 ? o->retries : (o->retries < 0 ? 0 : KD_HTTP_DEFAULT_RETRIES);
	e.backoff_ms = o->backoff_ms > 0 ? o->backoff_ms : KD_HTTP_DEFAULT_BACKOFF_MS;
	e.ca_file = o->ca_file;
	e.user_agent = o->user_agent ? o->user_agent : "kata-deploy";
	e.progress = o->progress;
	return e;
}

/* Map a curl failure of one attempt to our error; err gets "<detail>". */
static int curl_failure(xfer *x, CURLcode rc, const char *errbuf, const eff_opts *o, kd_error *err)
{
	const char *detail = errbuf[0] ? errbuf : cu.easy_strerror(rc);

	if (x->too_big || rc == CURLE_FILESIZE_EXCEEDED)
		return kd_err(err, -EFBIG, "response larger than the limit of %" PRIu64 " bytes",
			      x->max);
	if (x->write_errno)
		return kd_err_errno(err, -x->write_errno, "write response");
	if (x->read_errno)
		return kd_err_errno(err, -x->read_errno, "read request body");
	switch (rc) {
	case CURLE_OPERATION_TIMEDOUT:
		return kd_err(err, -ETIMEDOUT, "timed out: %s", detail);
	case CURLE_TOO_MANY_REDIRECTS:
		return kd_err(err, -ELOOP, "more than %ld redirects", o->max_redirects);
	case CURLE_COULDNT_CONNECT:
		return kd_err(err, -ECONNREFUSED, "cannot connect: %s", detail);
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		return kd_err(err, -EHOSTUNREACH, "cannot resolve host: %s", detail);
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_CRL_BADFILE:
		return kd_err(err, -EPROTO, "TLS: %s", detail);
	case CURLE_UNSUPPORTED_PROTOCOL:
	case CURLE_URL_MALFORMAT:
		return kd_err(err, -EINVAL, "%s", detail);
	default:
		return kd_err(err, -EIO, "%s", detail);
	}
}

static bool curl_retryable(xfer *x, CURLcode rc)
{
	if (x->too_big || x->write_errno || x->read_errno)
		return false;
	switch (rc) {
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
	/* The handshake failed (a server that is starting resets it), not the peer's
	 * certificate (CURLE_PEER_FAILED_VERIFICATION, never retried). */
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_PARTIAL_FILE:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_HTTP3:
		return true;
	default:
		return false;
	}
}

static bool status_retryable(long status)
{
	return status == 408 || status == 429 || status >= 500;
}

/* One attempt. Returns 0 when an HTTP answer arrived (x->status), < 0 with err set otherwise. */
static int attempt(const kd_http_request *req, const eff_opts *o, xfer *x, bool follow,
		   kd_error *err)
{
	_cleanup_(easy_cleanupp) CURL *c = NULL;
	_cleanup_(slist_free_allp) struct curl_slist *hdrs = NULL;
	char errbuf[CURL_ERROR_SIZE] = "";
	bool https = strncasecmp(req->url, "https://", 8) == 0;
	bool has_body = x->body_len > 0;
	bool head = strcmp(x->method, "HEAD") == 0;
	char range_hdr[KD_HTTP_HEADER_MAX + 16];
	CURLcode rc;
	size_t nh = 0;

	c = cu.easy_init();
	if (!c)
		return kd_err(err, -ENOMEM, "cannot create curl handle");
	hdr_reset(x);
	x->first_data = true;
	x->too_big = x->dropped = false;
	x->write_errno = x->read_errno = 0;
	x->body_pos = 0;

	for (const char *const *h = req->headers; h && *h; h++) {
		struct curl_slist *n;
		if (++nh > KD_HTTP_MAX_REQUEST_HEADERS)
			return kd_err(err, -E2BIG, "more than %d request headers",
				      KD_HTTP_MAX_REQUEST_HEADERS);
		n = cu.slist_append(hdrs, *h);
		if (!n)
			return kd_err(err, -ENOMEM, "out of memory");
		hdrs = n;
	}
	if (has_body) {
		/* No "Expect: 100-continue" round trip. */
		struct curl_slist *n = cu.slist_append(hdrs, "Expect:");
		if (!n)
			return kd_err(err, -ENOMEM, "out of memory");
		hdrs = n;
	}
	if (x->resume_from > 0 && x->resume_etag) {
		/* A changed resource comes back whole (200) instead of a wrong tail. */
		struct curl_slist *n;
		snprintf(range_hdr, sizeof(range_hdr), "If-Range: %s", x->resume_etag);
		n = cu.slist_append(hdrs, range_hdr);
		if (!n)
			return kd_err(err, -ENOMEM, "out of memory");
		hdrs = n;
	}

	cu.easy_setopt(c, CURLOPT_URL, req->url);
	cu.easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	cu.easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
	cu.easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	/* Never let a redirect downgrade https to http. */
	cu.easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, https ? "https" : "http,https");
	cu.easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
	cu.easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
	if (o->ca_file)
		cu.easy_setopt(c, CURLOPT_CAINFO, o->ca_file);
	if (req->client_cert)
		cu.easy_setopt(c, CURLOPT_SSLCERT, req->client_cert);
	if (req->client_key)
		cu.easy_setopt(c, CURLOPT_SSLKEY, req->client_key);
	if (req->bearer_token) {
		cu.easy_setopt(c, CURLOPT_HTTPAUTH, CURLAUTH_BEARER);
		cu.easy_setopt(c, CURLOPT_XOAUTH2_BEARER, req->bearer_token);
	}
	cu.easy_setopt(c, CURLOPT_USERAGENT, o->user_agent);
	cu.easy_setopt(c, CURLOPT_CONNECTTIMEOUT, o->connect_timeout_s);
	cu.easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, KD_HTTP_LOW_SPEED_LIMIT);
	cu.easy_setopt(c, CURLOPT_LOW_SPEED_TIME, o->low_speed_time_s);
	if (req->timeout_s > 0)
		cu.easy_setopt(c, CURLOPT_TIMEOUT, req->timeout_s);
	cu.easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
	if (follow && o->max_redirects > 0) {
		cu.easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
		cu.easy_setopt(c, CURLOPT_MAXREDIRS, o->max_redirects);
	}
	/* Content-Length above the limit fails before any byte is stored. */
	cu.easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE,
		       (curl_off_t)(x->max > INT64_MAX ? INT64_MAX : x->max));
	cu.easy_setopt(c, CURLOPT_HEADERFUNCTION, header_cb);
	cu.easy_setopt(c, CURLOPT_HEADERDATA, x);
	cu.easy_setopt(c, CURLOPT_WRITEFUNCTION, write_cb);
	cu.easy_setopt(c, CURLOPT_WRITEDATA, x);
	if (head)
		cu.easy_setopt(c, CURLOPT_NOBODY, 1L);
	else if (strcmp(x->method, "GET") != 0)
		cu.easy_setopt(c, CURLOPT_CUSTOMREQUEST, x->method);
	if (has_body) {
		cu.easy_setopt(c, CURLOPT_UPLOAD, 1L);
		cu.easy_setopt(c, CURLOPT_READFUNCTION, read_cb);
		cu.easy_setopt(c, CURLOPT_READDATA, x);
		cu.easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)x->body_len);
		/* UPLOAD means PUT unless told otherwise. */
		cu.easy_setopt(c, CURLOPT_CUSTOMREQUEST, x->method);
	}
	if (x->resume_from > 0)
		cu.easy_setopt(c, CURLOPT_RESUME_FROM_LARGE, (curl_off_t)x->resume_from);
	if (hdrs)
		cu.easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	if (x->progress) {
		cu.easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
		cu.easy_setopt(c, CURLOPT_XFERINFOFUNCTION, progress_cb);
		cu.easy_setopt(c, CURLOPT_XFERINFODATA, x);
	}

	rc = cu.easy_perform(c);
	if (x->progress_shown) {
		fputc('\n', stderr);
		x->progress_shown = false;
	}
	if (rc == CURLE_WRITE_ERROR && x->dropped)
		rc = CURLE_OK;
	x->rc = rc;
	if (rc != CURLE_OK) {
		x->status = 0;
		return curl_failure(x, rc, errbuf, o, err);
	}
	cu.easy_getinfo(c, CURLINFO_RESPONSE_CODE, &x->status);
	return 0;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* Retry-After in seconds (delta or HTTP date), -1 when absent or unreadable. */
static long retry_after_s(const char *v)
{
	char *end;
	long s;
	time_t t;

	if (!v || !*v)
		return -1;
	s = strtol(v, &end, 10);
	if (*end == '\0' && s >= 0)
		return s;
	t = cu.getdate(v, NULL);
	if (t < 0)
		return -1;
	return t > time(NULL) ? (long)(t - time(NULL)) : 0;
}

static long backoff_delay(const eff_opts *o, int n, const char *retry_after)
{
	long d = o->backoff_ms, ra;
	unsigned r = 0;

	for (int i = 0; i < n && d < KD_HTTP_MAX_BACKOFF_MS; i++)
		d *= 2;
	if (d > KD_HTTP_MAX_BACKOFF_MS)
		d = KD_HTTP_MAX_BACKOFF_MS;
	/* Up to 25% jitter so that a fleet of nodes does not retry in lockstep. */
	if (getrandom(&r, sizeof(r), GRND_NONBLOCK) == sizeof(r) && d >= 4)
		d += (long)(r % (unsigned)(d / 4));
	ra = retry_after_s(retry_after);
	if (ra >= 0) {
		if (ra > KD_HTTP_MAX_RETRY_AFTER_S)
			ra = KD_HTTP_MAX_RETRY_AFTER_S;
		if (ra * 1000 > d)
			d = ra * 1000;
	}
	return d;
}

static void status_text(const xfer *x, char *buf, size_t size)
{
	const char *reason = x->reason[0] ? x->reason : kd_http_reason(x->status);

	snprintf(buf, size, "HTTP %ld%s%s", x->status, reason[0] ? " " : "", reason);
}

/* Run attempts until an answer that is not retried, or the retries are used up. Returns 0 with
 * x->status set, or < 0 with err holding the last transport failure. */
static int run(const kd_http_request *req, const eff_opts *o, xfer *x, bool follow,
	       int *ret_attempts, kd_error *err)
{
	/* POST and PATCH are repeated only when the server cannot have acted on them: no
	 * connection, or a 429/503 refusal. */
	bool idempotent = strcmp(x->method, "POST") != 0 && strcmp(x->method, "PATCH") != 0;
	int r = 0, n;

	for (n = 0;; n++) {
		kd_error e = {0};
		bool retry;
		long delay;

		r = attempt(req, o, x, follow, &e);
		if (r < 0) {
			/* Nothing reached the server before the TLS handshake completed. */
			retry = curl_retryable(x, x->rc) &&
				(idempotent || x->rc == CURLE_COULDNT_CONNECT ||
				 x->rc == CURLE_COULDNT_RESOLVE_HOST ||
				 x->rc == CURLE_SSL_CONNECT_ERROR);
			if (err)
				*err = e;
		} else {
			retry = status_retryable(x->status) &&
				(idempotent || x->status == 429 || x->status == 503);
		}
		if (!retry || n >= o->retries)
			break;
		/* A stream we cannot rewind can only be retried if nothing reached it. */
		if (x->sink == SINK_FD && !x->seekable && x->written > 0)
			break;
		delay = backoff_delay(o, n, r == 0 ? x->hdr.retry_after : NULL);
		if (r < 0)
			kd_debug("%s %s: %s; retry %d of %d in %ld ms", x->method, x->url, e.msg,
				 n + 1, o->retries, delay);
		else
			kd_debug("%s %s: HTTP %ld; retry %d of %d in %ld ms", x->method, x->url,
				 x->status, n + 1, o->retries, delay);
		sleep_ms(delay);

		/* Resume a partial 2xx download when the server takes ranges. */
		x->resume_from = 0;
		free(x->resume_etag);
		x->resume_etag = NULL;
		if (r < 0 && x->sink == SINK_FD && x->seekable && x->accept_ranges &&
		    x->written > 0) {
			x->resume_from = x->written;
			if (x->hdr.etag)
				x->resume_etag = strdup(x->hdr.etag);
		} else {
			int k = sink_restart(x);
			if (k < 0)
				return kd_err_errno(err, k, "%s %s: truncate download", x->method,
						    x->url);
		}
	}
	if (ret_attempts)
		*ret_attempts = n + 1;
	return r;
}

static void xfer_free(xfer *x)
{
	kd_http_response_free(&x->hdr);
	free(x->resume_etag);
	free(x->buf);
}

static int download(const char *url, const char *const *headers, uint64_t from, enum sink_kind sink,
		    int fd, const kd_http_opts *opts, char **ret_data, size_t *ret_len,
		    long *ret_status, kd_error *err)
{
	eff_opts o = effective(opts);
	xfer x = {.method = "GET",
		  .sink = sink,
		  .fd = fd,
		  .max = o.max,
		  .progress = o.progress,
		  .progress_tty = o.progress && isatty(STDERR_FILENO)};
	kd_http_request req = {.url = url, .headers = headers};
	char st[160];
	int r, attempts = 1;

	display_url(url, x.url);
	pthread_once(&global_once, global_init);
	if (global_msg[0])
		return kd_err(err, -EIO, "GET %s: %s", x.url, global_msg);
	if (!kd_is_url(url))
		return kd_err(err, -EINVAL, "GET %s: not an http:// or https:// URL", x.url);
	if (sink == SINK_FD) {
		if (ftruncate(fd, (off_t)from) == 0 && lseek(fd, (off_t)from, SEEK_SET) >= 0)
			x.seekable = true;
		else if (from > 0 || (errno != EINVAL && errno != ESPIPE))
			return kd_err_errno(err, negative_errno(), "GET %s: truncate output",
					    x.url);
		/* The bytes already in the file are the start of this resource: ask for the
		 * rest; write_cb starts over if the server sends anything else. */
		x.written = x.resume_from = from;
	}
	kd_debug("GET %s (limit %" PRIu64 " bytes, %d retries, from byte %" PRIu64 ")", x.url,
		 o.max, o.retries, from);

	r = run(&req, &o, &x, true, &attempts, err);
	if (ret_status)
		*ret_status = x.status;
	if (r < 0) {
		r = kd_err_wrap(err, r, "GET %s%s", x.url, attempts > 1 ? " (after retries)" : "");
		xfer_free(&x);
		return r;
	}
	r = kd_http_status_errno(x.status);
	if (r < 0) {
		status_text(&x, st, sizeof(st));
		if (attempts > 1)
			r = kd_err(err, r, "GET %s: %s (after %d attempts)", x.url, st, attempts);
		else
			r = kd_err(err, r, "GET %s: %s", x.url, st);
		xfer_free(&x);
		return r;
	}
	if (sink == SINK_BUF) {
		if (!x.buf) {
			x.buf = strdup("");
			if (!x.buf)
				return kd_err(err, -ENOMEM, "GET %s: out of memory", x.url);
		}
		*ret_data = TAKE_PTR(x.buf);
		*ret_len = (size_t)x.written;
	}
	xfer_free(&x);
	return 0;
}

int kd_http_download_fd(const char *url, int fd, const kd_http_opts *opts, long *ret_status,
			kd_error *err)
{
	return download(url, NULL, 0, SINK_FD, fd, opts, NULL, NULL, ret_status, err);
}

int kd_http_download_at(const char *url, const char *const *headers, int fd, uint64_t from,
			const kd_http_opts *opts, long *ret_status, kd_error *err)
{
	return download(url, headers, from, SINK_FD, fd, opts, NULL, NULL, ret_status, err);
}

int kd_http_get_buf(const char *url, const kd_http_opts *opts, char **ret_data, size_t *ret_len,
		    long *ret_status, kd_error *err)
{
	return download(url, NULL, 0, SINK_BUF, -1, opts, ret_data, ret_len, ret_status, err);
}

int kd_http_do(const kd_http_request *req, const kd_http_opts *opts, kd_http_response *ret,
	       kd_error *err)
{
	eff_opts o = effective(opts);
	const char *method = req->method ? req->method : "GET";
	xfer x = {
		.method = method,
		.sink = SINK_BUF,
		.keep_error_body = true,
		.max = req->max_response ? req->max_response : KD_HTTP_DEFAULT_MAX_RESPONSE,
		.fd = -1,
	};
	bool follow = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
	int r, attempts = 1;

	display_url(req->url ? req->url : "", x.url);
	pthread_once(&global_once, global_init);
	if (global_msg[0])
		return kd_err(err, -EIO, "%s %s: %s", method, x.url, global_msg);
	if (!kd_is_url(req->url))
		return kd_err(err, -EINVAL, "%s %s: not an http:// or https:// URL", method, x.url);
	if (req->body) {
		x.body = req->body;
		x.body_len = req->body_len;
	} else if (req->body_fd_len > 0) {
		x.body_fd = req->body_fd;
		x.body_off = req->body_fd_offset;
		x.body_len = req->body_fd_len;
	}
	kd_debug("%s %s", method, x.url);

	r = run(req, &o, &x, follow, &attempts, err);
	if (r < 0) {
		r = kd_err_wrap(err, r, "%s %s%s", method, x.url,
				attempts > 1 ? " (after retries)" : "");
		xfer_free(&x);
		return r;
	}
	*ret = x.hdr;
	x.hdr = (kd_http_response){0};
	ret->status = x.status;
	ret->body = x.buf ? TAKE_PTR(x.buf) : strdup("");
	ret->body_len = (size_t)x.written;
	xfer_free(&x);
	if (!ret->body) {
		kd_http_response_free(ret);
		return kd_err(err, -ENOMEM, "%s %s: out of memory", method, x.url);
	}
	return 0;
}
