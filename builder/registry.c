/* OCI distribution push. Every request goes through do_req(), which adds the current
 * Authorization header and, on a 401, answers the challenge once and repeats the request. */
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "http.h"
#include "json.h"
#include "log.h"
#include "registry.h"

typedef struct reg {
	const kd_push_opts *o;
	char *base; /* "https://host:port" */
	char *repo;
	char *auth; /* "Authorization: ..." or NULL */
	kd_http_opts http;
} reg;

static void reg_done(reg *g)
{
	free(g->base);
	free(g->repo);
	free(g->auth);
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static char *base64(const char *in)
{
	size_t n = strlen(in);
	char *out = malloc(4 * ((n + 2) / 3) + 1), *p = out;
	if (!out)
		return NULL;
	for (size_t i = 0; i < n; i += 3) {
		unsigned v = (unsigned char)in[i] << 16;
		if (i + 1 < n)
			v |= (unsigned char)in[i + 1] << 8;
		if (i + 2 < n)
			v |= (unsigned char)in[i + 2];
		*p++ = b64[(v >> 18) & 63];
		*p++ = b64[(v >> 12) & 63];
		*p++ = i + 1 < n ? b64[(v >> 6) & 63] : '=';
		*p++ = i + 2 < n ? b64[v & 63] : '=';
	}
	*p = '\0';
	return out;
}

static char *pct_encode(const char *s)
{
	char *out = malloc(strlen(s) * 3 + 1), *p = out;
	if (!out)
		return NULL;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    strchr("-._~:/,", c))
			*p++ = (char)c;
		else
			p += sprintf(p, "%%%02X", c);
	}
	*p = '\0';
	return out;
}

/* Value of param in a challenge like: Bearer realm="x",service="y",scope="z". */
static char *challenge_param(const char *h, const char *param)
{
	size_t n = strlen(param);
	for (const char *p = h; (p = strstr(p, param)); p += n) {
		if (p != h && p[-1] != ' ' && p[-1] != ',')
			continue;
		if (p[n] != '=')
			continue;
		const char *v = p + n + 1;
		if (*v == '"') {
			const char *e = strchr(v + 1, '"');
			return e ? strndup(v + 1, (size_t)(e - v - 1)) : NULL;
		}
		return strndup(v, strcspn(v, ", "));
	}
	return NULL;
}

static char *basic_credentials(void)
{
	const char *u = getenv(KD_REGISTRY_USER_ENV), *pw = getenv(KD_REGISTRY_PASSWORD_ENV);
	_cleanup_free_ char *pair = NULL;
	if (!u || !*u)
		return NULL;
	if (asprintf(&pair, "%s:%s", u, pw ? pw : "") < 0)
		return NULL;
	return base64(pair);
}

/* Answer a 401: set g->auth from the challenge. */
static int authenticate(reg *g, const char *challenge, kd_error *err)
{
	_cleanup_free_ char *creds = basic_credentials();
	if (!challenge)
		return kd_err(err, -EACCES,
			      "%s: HTTP 401 Unauthorized without a WWW-Authenticate "
			      "challenge",
			      g->base);
	if (strncasecmp(challenge, "Basic", 5) == 0) {
		if (!creds)
			return kd_err(err, -EACCES, "%s asks for basic credentials: set %s and %s",
				      g->base, KD_REGISTRY_USER_ENV, KD_REGISTRY_PASSWORD_ENV);
		free(g->auth);
		return asprintf(&g->auth, "Authorization: Basic %s", creds) < 0 ? -ENOMEM : 0;
	}
	if (strncasecmp(challenge, "Bearer", 6) != 0)
		return kd_err(err, -EACCES, "%s: unsupported authentication challenge '%.80s'",
			      g->base, challenge);
	_cleanup_free_ char *realm = challenge_param(challenge, "realm"),
			    *service = challenge_param(challenge, "service"),
			    *scope = challenge_param(challenge, "scope"), *url = NULL, *es = NULL,
			    *esc = NULL, *basic = NULL, *defscope = NULL;
	if (!realm || (strncmp(realm, "https://", 8) != 0 && strncmp(realm, "http://", 7) != 0))
		return kd_err(err, -EACCES, "%s: bearer challenge without a usable realm ('%.80s')",
			      g->base, challenge);
	if (!scope && asprintf(&defscope, "repository:%s:pull,push", g->repo) < 0)
		return -ENOMEM;
	es = service ? pct_encode(service) : NULL;
	esc = pct_encode(scope ? scope : defscope);
	if (!esc || asprintf(&url, "%s%s%s%s%sscope=%s", realm, strchr(realm, '?') ? "&" : "?",
			     es ? "service=" : "", es ? es : "", es ? "&" : "", esc) < 0)
		return kd_err(err, -ENOMEM, "out of memory");
	const char *hdrs[2] = {NULL, NULL};
	if (creds && asprintf(&basic, "Authorization: Basic %s", creds) >= 0)
		hdrs[0] = basic;
	kd_http_request req = {.method = "GET",
			       .url = url,
			       .headers = hdrs,
			       .max_response = KD_REGISTRY_MAX_TOKEN};
	_cleanup_http_response_ kd_http_response resp = {0};
	int r = kd_http_do(&req, &g->http, &resp, err);
	if (r < 0)
		return kd_err_wrap(err, r, "token from %s", realm);
	if (resp.status != 200)
		return kd_err(err, kd_http_status_errno(resp.status),
			      "token from %s: HTTP %ld %s%s", realm, resp.status,
			      kd_http_reason(resp.status),
			      creds ? ""
				    : " (no credentials: set " KD_REGISTRY_USER_ENV
				      " and " KD_REGISTRY_PASSWORD_ENV ")");
	_cleanup_json_ struct json_object *tok = NULL;
	const char *t = NULL;
	if ((r = kd_json_parse(resp.body, resp.body_len, "token answer", &tok, err)) < 0)
		return r;
	if ((r = kd_json_get_string(tok, NULL, "token", false, &t, err)) < 0 ||
	    (!t && (r = kd_json_get_string(tok, NULL, "access_token", true, &t, err)) < 0))
		return kd_err_wrap(err, r, "token from %s", realm);
	free(g->auth);
	return asprintf(&g->auth, "Authorization: Bearer %s", t) < 0 ? -ENOMEM : 0;
}

/* Make a request; on 401 authenticate and repeat. Any other answer is returned to the caller. */
static int do_req(reg *g, kd_http_request *req, const char *extra_hdr, kd_http_response *resp,
		  kd_error *err)
{
	for (unsigned tries = 0;; tries++) {
		const char *hdrs[3] = {NULL, NULL, NULL};
		size_t n = 0;
		if (g->auth)
			hdrs[n++] = g->auth;
		if (extra_hdr)
			hdrs[n++] = extra_hdr;
		req->headers = hdrs;
		kd_http_response_free(resp);
		*resp = (kd_http_response){0};
		int r = kd_http_do(req, &g->http, resp, err);
		if (r < 0)
			return r;
		if (resp->status != 401)
			return 0;
		if (tries + 1 >= KD_REGISTRY_MAX_AUTH_TRIES)
			return kd_err(err, -EACCES,
				      "%s %s: HTTP 401 Unauthorized after authenticating: check %s "
				      "and %s",
				      req->method, req->url, KD_REGISTRY_USER_ENV,
				      KD_REGISTRY_PASSWORD_ENV);
		if ((r = authenticate(g, resp->www_authenticate, err)) < 0)
			return r == -ENOMEM ? kd_err(err, r, "out of memory") : r;
	}
}

/* An answer that is not the expected one, as a clear error. */
static int unexpected(const kd_http_request *req, const kd_http_response *resp, kd_error *err)
{
	char body[201] = "";
	if (resp->body)
		snprintf(body, sizeof(body), "%s", resp->body);
	for (char *p = body; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	const char *hint = resp->status == 403	 ? " (denied: the credentials may not push here)"
			   : resp->status >= 500 ? " (registry error)"
						 : "";
	return kd_err(err, kd_http_status_errno(resp->status), "%s %s: HTTP %ld %s%s%s%s",
		      req->method, req->url, resp->status, kd_http_reason(resp->status), hint,
		      *body ? ": " : "", body);
}

static char *resolve(const reg *g, const char *location)
{
	char *u;
	if (strncmp(location, "http://", 7) == 0 || strncmp(location, "https://", 8) == 0)
		return strdup(location);
	return asprintf(&u, "%s%s%s", g->base, location[0] == '/' ? "" : "/", location) < 0 ? NULL
											    : u;
}

static int push_blob(reg *g, const kd_oci_blob *b, kd_push_stats *st, kd_error *err)
{
	_cleanup_free_ char *url = NULL, *path = NULL, *put = NULL, *loc = NULL;
	_cleanup_http_response_ kd_http_response resp = {0};
	int r;

	if (asprintf(&url, "%s/v2/%s/blobs/%s", g->base, g->repo, b->digest) < 0)
		return kd_err(err, -ENOMEM, "out of memory");
	kd_http_request head = {.method = "HEAD", .url = url};
	if ((r = do_req(g, &head, NULL, &resp, err)) < 0)
		return r;
	if (resp.status == 200) {
		st->blobs_present++;
		return 0;
	}
	if (resp.status != 404)
		return unexpected(&head, &resp, err);

	free(url);
	url = NULL;
	if (g->o->mount_from) {
		if (asprintf(&url, "%s/v2/%s/blobs/uploads/?mount=%s&from=%s", g->base, g->repo,
			     b->digest, g->o->mount_from) < 0)
			return kd_err(err, -ENOMEM, "out of memory");
	} else if (asprintf(&url, "%s/v2/%s/blobs/uploads/", g->base, g->repo) < 0)
		return kd_err(err, -ENOMEM, "out of memory");
	kd_http_request post = {.method = "POST", .url = url};
	if ((r = do_req(g, &post, NULL, &resp, err)) < 0)
		return r;
	if (resp.status == 201 && g->o->mount_from) {
		st->blobs_mounted++;
		return 0;
	}
	if (resp.status != 202 || !resp.location)
		return unexpected(&post, &resp, err);
	if (!(loc = resolve(g, resp.location)) ||
	    asprintf(&put, "%s%sdigest=%s", loc, strchr(loc, '?') ? "&" : "?", b->digest) < 0 ||
	    !(path = kd_oci_blob_path(g->o->layout, b->digest)))
		return kd_err(err, -ENOMEM, "out of memory");
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return kd_err_errno(err, negative_errno(), "open %s", path);
	kd_http_request req = {.method = "PUT", .url = put, .body_fd = fd, .body_fd_len = b->size};
	if (b->size == 0)
		req.body_fd = -1;
	if ((r = do_req(g, &req, "Content-Type: application/octet-stream", &resp, err)) < 0)
		return r;
	if (resp.status != 201)
		return unexpected(&req, &resp, err);
	st->blobs_uploaded++;
	return 0;
}

int kd_registry_push(const kd_push_opts *o, char ret_digest[KD_OCI_DIGEST_MAX],
		     kd_push_stats *ret_stats, kd_error *err)
{
	_cleanup_oci_image_ kd_oci_image *img = NULL;
	_cleanup_free_ char *url = NULL, *ct = NULL;
	_cleanup_http_response_ kd_http_response resp = {0};
	kd_push_stats st = {0};
	reg g = {
		.o = o,
		.http = {.ca_file = o->ca_file, .retries = o->retries, .user_agent = "kata-build"}};
	int r;

	const char *slash = strchr(o->target, '/');
	if (!slash || slash == o->target || !slash[1] || strchr(o->target, ' '))
		return kd_err(err, -EINVAL, "push: target '%s' is not HOST[:PORT]/REPOSITORY",
			      o->target);
	if (asprintf(&g.base, "%s://%.*s", o->plain_http ? "http" : "https",
		     (int)(slash - o->target), o->target) < 0 ||
	    !(g.repo = strdup(slash + 1))) {
		reg_done(&g);
		return kd_err(err, -ENOMEM, "out of memory");
	}
	if ((r = kd_oci_read(o->layout, &img, err)) < 0)
		goto out;
	for (size_t i = 0; i < img->n_blobs; i++)
		if ((r = push_blob(&g, &img->blobs[i], &st, err)) < 0)
			goto out;
	if (asprintf(&url, "%s/v2/%s/manifests/%s", g.base, g.repo, o->tag) < 0 ||
	    asprintf(&ct, "Content-Type: %s", KD_OCI_MT_MANIFEST) < 0) {
		r = kd_err(err, -ENOMEM, "out of memory");
		goto out;
	}
	kd_http_request req = {
		.method = "PUT", .url = url, .body = img->manifest, .body_len = img->manifest_len};
	if ((r = do_req(&g, &req, ct, &resp, err)) < 0)
		goto out;
	if (resp.status != 201) {
		r = unexpected(&req, &resp, err);
		goto out;
	}
	if (resp.docker_content_digest &&
	    strcmp(resp.docker_content_digest, img->manifest_digest) != 0) {
		r = kd_err(err, -EBADMSG, "PUT %s: the registry stored digest %s, we sent %s", url,
			   resp.docker_content_digest, img->manifest_digest);
		goto out;
	}
	memcpy(ret_digest, img->manifest_digest, KD_OCI_DIGEST_MAX);
	if (ret_stats)
		*ret_stats = st;
	r = 0;
out:
	reg_done(&g);
	return r < 0 ? kd_err_wrap(err, r, "push %s:%s", o->target, o->tag) : 0;
}
