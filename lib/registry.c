/* OCI distribution client. Every request goes through kd_registry_do(), which adds the current
 * Authorization header and, on a 401, answers the challenge once and repeats the request. */
#include "registry.h"

#include <ctype.h>
#include <fcntl.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "digest.h"
#include "fsroot.h"
#include "json.h"
#include "log.h"

struct kd_registry {
	char *base; /* "https://host:port" */
	char *host;
	char *repo;
	char *actions;
	char *user, *password;
	char *cred_hint;
	char *auth;	 /* "Authorization: ..." or NULL */
	char *challenge; /* the last WWW-Authenticate we answered */
	kd_http_opts http;
};

/* ---- references ------------------------------------------------------------------------ */

void kd_registry_ref_done(kd_registry_ref *r)
{
	free(r->host);
	free(r->repo);
	free(r->tag);
	free(r->digest);
	*r = (kd_registry_ref){0};
}

static bool repo_valid(const char *s, size_t n)
{
	/* path-component ::= [a-z0-9]+ (separator [a-z0-9]+)*, separator ::= [_.] | __ | -+ */
	bool need_alnum = true;
	if (n == 0 || n > 255)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
			need_alnum = false;
			continue;
		}
		if (need_alnum || !strchr("._-/", c))
			return false;
		if (c == '/' || c == '.')
			need_alnum = true;
		else if (i + 1 < n && s[i + 1] == '/')
			return false;
	}
	return !need_alnum;
}

static bool host_valid(const char *s, size_t n)
{
	if (n == 0 || n > 255)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && !strchr(".-:[]", s[i]))
			return false;
	return true;
}

int kd_registry_ref_parse(const char *s, kd_registry_ref *ret, kd_error *err)
{
	kd_registry_ref r = {0};
	size_t len = strlen(s);
	if (len == 0 || len > KD_REGISTRY_MAX_REF)
		return kd_err(err, -EINVAL, "reference '%.80s': empty or longer than %u bytes", s,
			      KD_REGISTRY_MAX_REF);
	const char *slash = strchr(s, '/');
	if (!slash || !host_valid(s, (size_t)(slash - s)))
		return kd_err(err, -EINVAL,
			      "reference '%s': not REGISTRY[:PORT]/REPOSITORY[:TAG|@sha256:HEX]",
			      s);
	const char *rest = slash + 1, *at = strchr(rest, '@');
	const char *end = at ? at : rest + strlen(rest);
	const char *colon = memrchr(rest, ':', (size_t)(end - rest));
	const char *repo_end = colon ? colon : end;
	if (!repo_valid(rest, (size_t)(repo_end - rest)))
		return kd_err(err, -EINVAL,
			      "reference '%s': repository '%.*s' is not lowercase letters, digits "
			      "and . _ - / separators",
			      s, (int)(repo_end - rest), rest);
	if (colon) {
		size_t n = (size_t)(end - colon - 1);
		const char *t = colon + 1;
		bool ok = n > 0 && n <= 128 && (isalnum((unsigned char)t[0]) || t[0] == '_');
		for (size_t i = 0; ok && i < n; i++)
			ok = isalnum((unsigned char)t[i]) || strchr("._-", t[i]);
		if (!ok)
			return kd_err(err, -EINVAL, "reference '%s': bad tag '%.*s'", s, (int)n, t);
	}
	if (at && (strncmp(at + 1, "sha256:", 7) != 0 || !kd_sha256_hex_valid(at + 8)))
		return kd_err(err, -EINVAL,
			      "reference '%s': a digest must be sha256:<64 hex digits>", s);
	if (!colon && !at)
		return kd_err(err, -EINVAL,
			      "reference '%s': name a tag (:TAG) or a digest (@sha256:HEX)", s);
	r.host = strndup(s, (size_t)(slash - s));
	r.repo = strndup(rest, (size_t)(repo_end - rest));
	r.tag = colon ? strndup(colon + 1, (size_t)(end - colon - 1)) : NULL;
	r.digest = at ? strdup(at + 1) : NULL;
	if (!r.host || !r.repo || (colon && !r.tag) || (at && !r.digest)) {
		kd_registry_ref_done(&r);
		return kd_err(err, -ENOMEM, "out of memory");
	}
	*ret = r;
	return 0;
}

/* ---- base64 -------------------------------------------------------------------------------- */

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

/* Decode standard base64 (padding optional); NULL on a bad character or a NUL in the output. */
static char *unbase64(const char *in)
{
	size_t n = strlen(in);
	char *out = malloc(n / 4 * 3 + 4), *p = out;
	unsigned v = 0, bits = 0;
	if (!out)
		return NULL;
	for (size_t i = 0; i < n && in[i] != '='; i++) {
		const char *c = strchr(b64, in[i]);
		if (!c || !in[i]) {
			free(out);
			return NULL;
		}
		v = (v << 6) | (unsigned)(c - b64);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			char ch = (char)((v >> bits) & 0xff);
			if (!ch) {
				free(out);
				return NULL;
			}
			*p++ = ch;
		}
	}
	*p = '\0';
	return out;
}

/* ---- credentials --------------------------------------------------------------------------- */

/* "https://host/v1/" -> "host" for comparison. */
static bool auth_key_matches(const char *key, const char *host)
{
	const char *k = key;
	if (strncmp(k, "https://", 8) == 0)
		k += 8;
	else if (strncmp(k, "http://", 7) == 0)
		k += 7;
	size_t n = strcspn(k, "/");
	return n == strlen(host) && strncasecmp(k, host, n) == 0;
}

int kd_registry_auth_file(const char *path, const char *host, char **ret_user, char **ret_password,
			  kd_error *err)
{
	_cleanup_close_ int base =
		open(path[0] == '/' ? "/" : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	_cleanup_free_ char *text = NULL, *pair = NULL;
	_cleanup_json_ struct json_object *doc = NULL;
	struct json_object *auths = NULL;
	size_t len;
	int r;

	*ret_user = *ret_password = NULL;
	if (base < 0)
		return kd_err_errno(err, negative_errno(), "registry credentials '%s'", path);
	if ((r = kd_read_file(base, path, KD_REGISTRY_MAX_AUTH_FILE, &text, &len, err)) < 0 ||
	    (r = kd_json_parse(text, len, path, &doc, err)) < 0 ||
	    (r = kd_json_get_object(doc, NULL, "auths", true, &auths, err)) < 0)
		return kd_err_wrap(err, r, "registry credentials '%s'", path);
	json_object_object_foreach(auths, key, val)
	{
		const char *a = NULL, *u = NULL, *pw = NULL;
		char where[300];
		if (!auth_key_matches(key, host))
			continue;
		snprintf(where, sizeof(where), "auths.%.200s", key);
		if ((r = kd_json_as_object(val, where, err)) < 0 ||
		    (r = kd_json_get_string(val, where, "auth", false, &a, err)) < 0 ||
		    (r = kd_json_get_string(val, where, "username", false, &u, err)) < 0 ||
		    (r = kd_json_get_string(val, where, "password", false, &pw, err)) < 0)
			return kd_err_wrap(err, r, "registry credentials '%s'", path);
		if (a && *a) {
			char *colon;
			if (!(pair = unbase64(a)) || !(colon = strchr(pair, ':')))
				return kd_err(err, -EINVAL,
					      "registry credentials '%s': %s.auth is not base64 of "
					      "user:password",
					      path, where);
			*colon = '\0';
			u = pair;
			pw = colon + 1;
		}
		if (!u || !*u)
			return kd_err(err, -EINVAL,
				      "registry credentials '%s': %s has no auth and no username "
				      "(identity tokens are not supported)",
				      path, where);
		*ret_user = strdup(u);
		*ret_password = strdup(pw ? pw : "");
		if (!*ret_user || !*ret_password) {
			free(*ret_user);
			free(*ret_password);
			*ret_user = *ret_password = NULL;
			return kd_err(err, -ENOMEM, "out of memory");
		}
		return 0;
	}
	return 0;
}

/* ---- the client ---------------------------------------------------------------------------- */

int kd_registry_new(const kd_registry_opts *o, kd_registry **ret, kd_error *err)
{
	kd_registry *g = calloc(1, sizeof(*g));
	if (!g)
		return kd_err(err, -ENOMEM, "out of memory");
	g->http = o->http;
	if (asprintf(&g->base, "%s://%s", o->plain_http ? "http" : "https", o->host) < 0)
		g->base = NULL;
	g->host = strdup(o->host);
	g->repo = strdup(o->repo);
	g->actions = strdup(o->actions ? o->actions : "pull");
	g->user = o->username ? strdup(o->username) : NULL;
	g->password = strdup(o->password ? o->password : "");
	g->cred_hint = strdup(o->cred_hint ? o->cred_hint : "check the registry credentials");
	if (!g->base || !g->host || !g->repo || !g->actions || (o->username && !g->user) ||
	    !g->password || !g->cred_hint) {
		kd_registry_free(g);
		return kd_err(err, -ENOMEM, "out of memory");
	}
	*ret = g;
	return 0;
}

void kd_registry_free(kd_registry *g)
{
	if (!g)
		return;
	free(g->base);
	free(g->host);
	free(g->repo);
	free(g->actions);
	free(g->user);
	if (g->password)
		explicit_bzero(g->password, strlen(g->password));
	free(g->password);
	free(g->cred_hint);
	if (g->auth)
		explicit_bzero(g->auth, strlen(g->auth));
	free(g->auth);
	free(g->challenge);
	free(g);
}

const char *kd_registry_base(const kd_registry *g)
{
	return g->base;
}

const char *kd_registry_repo(const kd_registry *g)
{
	return g->repo;
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

static char *basic_credentials(const kd_registry *g)
{
	_cleanup_free_ char *pair = NULL;
	if (!g->user)
		return NULL;
	if (asprintf(&pair, "%s:%s", g->user, g->password) < 0)
		return NULL;
	char *b = base64(pair);
	explicit_bzero(pair, strlen(pair));
	return b;
}

/* Answer a 401: set g->auth from the challenge. */
static int authenticate(kd_registry *g, const char *challenge, kd_error *err)
{
	_cleanup_free_ char *creds = basic_credentials(g);
	if (!challenge)
		return kd_err(err, -EACCES,
			      "%s: HTTP 401 Unauthorized without a WWW-Authenticate "
			      "challenge",
			      g->base);
	if (strncasecmp(challenge, "Basic", 5) == 0) {
		if (!creds)
			return kd_err(err, -EACCES, "%s asks for basic credentials: %s", g->base,
				      g->cred_hint);
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
	/* Credentials go to the realm: never over plain http unless the registry itself is. */
	if (creds && strncmp(realm, "http://", 7) == 0 && strncmp(g->base, "http://", 7) != 0)
		return kd_err(err, -EACCES,
			      "%s: the token realm %s is plain http: credentials are not sent "
			      "there",
			      g->base, realm);
	if (!scope && asprintf(&defscope, "repository:%s:%s", g->repo, g->actions) < 0)
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
	kd_http_opts ho = g->http;
	ho.progress = false;
	int r = kd_http_do(&req, &ho, &resp, err);
	if (basic)
		explicit_bzero(basic, strlen(basic));
	if (r < 0)
		return kd_err_wrap(err, r, "token from %s", realm);
	if (resp.status != 200)
		return kd_err(err, kd_http_status_errno(resp.status),
			      "token from %s: HTTP %ld %s%s%s%s", realm, resp.status,
			      kd_http_reason(resp.status),
			      creds ? "" : " (no credentials: ", creds ? "" : g->cred_hint,
			      creds ? "" : ")");
	_cleanup_json_ struct json_object *tok = NULL;
	const char *t = NULL;
	if ((r = kd_json_parse(resp.body, resp.body_len, "token answer", &tok, err)) < 0)
		return r;
	if ((r = kd_json_get_string(tok, NULL, "token", false, &t, err)) < 0 ||
	    (!t && (r = kd_json_get_string(tok, NULL, "access_token", true, &t, err)) < 0))
		return kd_err_wrap(err, r, "token from %s", realm);
	if (strpbrk(t, "\r\n"))
		return kd_err(err, -EACCES, "token from %s: a line break in the token", realm);
	kd_debug("registry %s: bearer token for %s", g->base, scope ? scope : defscope);
	free(g->auth);
	return asprintf(&g->auth, "Authorization: Bearer %s", t) < 0 ? -ENOMEM : 0;
}

static int remember_challenge(kd_registry *g, const char *challenge)
{
	free(g->challenge);
	g->challenge = challenge ? strdup(challenge) : NULL;
	return challenge && !g->challenge ? -ENOMEM : 0;
}

int kd_registry_do(kd_registry *g, kd_http_request *req, const char *extra_hdr,
		   kd_http_response *resp, kd_error *err)
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
		req->headers = NULL;
		if (r < 0)
			return r;
		if (resp->status != 401)
			return 0;
		if (tries + 1 >= KD_REGISTRY_MAX_AUTH_TRIES)
			return kd_err(err, -EACCES,
				      "%s %s: HTTP 401 Unauthorized after authenticating: %s",
				      req->method, req->url, g->cred_hint);
		if ((r = remember_challenge(g, resp->www_authenticate)) < 0 ||
		    (r = authenticate(g, resp->www_authenticate, err)) < 0)
			return r == -ENOMEM ? kd_err(err, r, "out of memory") : r;
	}
}

int kd_registry_unexpected(const kd_http_request *req, const kd_http_response *resp, kd_error *err)
{
	char body[201] = "";
	if (resp->body)
		snprintf(body, sizeof(body), "%s", resp->body);
	for (char *p = body; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	const char *hint = resp->status == 403	 ? " (denied: check the credentials' rights)"
			   : resp->status >= 500 ? " (registry error)"
						 : "";
	return kd_err(err, kd_http_status_errno(resp->status), "%s %s: HTTP %ld %s%s%s%s",
		      req->method ? req->method : "GET", req->url, resp->status,
		      kd_http_reason(resp->status), hint, *body ? ": " : "", body);
}

int kd_registry_get_manifest(kd_registry *g, const char *reference, char **ret_body,
			     size_t *ret_len, char ret_digest[KD_REGISTRY_DIGEST_MAX],
			     char **ret_media_type, kd_error *err)
{
	_cleanup_free_ char *url = NULL, *mt = NULL;
	_cleanup_http_response_ kd_http_response resp = {0};
	char hex[KD_SHA256_HEX_LEN + 1];
	int r;

	if (asprintf(&url, "%s/v2/%s/manifests/%s", g->base, g->repo, reference) < 0)
		return kd_err(err, -ENOMEM, "out of memory");
	kd_http_request req = {
		.method = "GET", .url = url, .max_response = KD_REGISTRY_MAX_MANIFEST};
	if ((r = kd_registry_do(g, &req, "Accept: " KD_REGISTRY_MT_OCI_MANIFEST, &resp, err)) < 0)
		return r;
	if (resp.status != 200)
		return kd_registry_unexpected(&req, &resp, err);
	if (kd_sha256_buf(resp.body, resp.body_len, hex) < 0)
		return kd_err(err, -EIO, "GET %s: cannot hash the manifest", url);
	snprintf(ret_digest, KD_REGISTRY_DIGEST_MAX, "sha256:%s", hex);
	if (strncmp(reference, "sha256:", 7) == 0 && strcmp(reference, ret_digest) != 0)
		return kd_err(err, -EBADMSG, "GET %s: the manifest's bytes hash to %s", url,
			      ret_digest);
	if (resp.content_type &&
	    !(mt = strndup(resp.content_type, strcspn(resp.content_type, "; "))))
		return kd_err(err, -ENOMEM, "out of memory");
	*ret_body = TAKE_PTR(resp.body);
	*ret_len = resp.body_len;
	*ret_media_type = TAKE_PTR(mt);
	return 0;
}

int kd_registry_get_blob(kd_registry *g, const char *digest, uint64_t size, int fd, uint64_t from,
			 uint64_t *ret_fetched, kd_error *err)
{
	_cleanup_free_ char *url = NULL;
	uint8_t d[KD_SHA256_LEN];
	char hex[KD_SHA256_HEX_LEN + 1];
	uint64_t got = 0;
	struct stat st;
	long status = 0;
	int r;

	if (strncmp(digest, "sha256:", 7) != 0 || !kd_sha256_hex_valid(digest + 7))
		return kd_err(err, -EINVAL, "blob '%.80s': not a sha256 digest", digest);
	if (asprintf(&url, "%s/v2/%s/blobs/%s", g->base, g->repo, digest) < 0)
		return kd_err(err, -ENOMEM, "out of memory");
	if (from > size)
		from = 0;
	kd_http_opts ho = g->http;
	ho.max_bytes = size;
	for (unsigned tries = 0;; tries++) {
		const char *hdrs[2] = {g->auth, NULL};
		kd_error e = {0};
		r = kd_http_download_at(url, hdrs, fd, from, &ho, &status, &e);
		if (r >= 0)
			break;
		if (status == 401 && tries + 1 < KD_REGISTRY_MAX_AUTH_TRIES && g->challenge) {
			/* The token expired between two blobs: a new one, and resume. */
			if (fstat(fd, &st) == 0 && (uint64_t)st.st_size <= size)
				from = (uint64_t)st.st_size;
			if ((r = authenticate(g, g->challenge, err)) < 0)
				return r;
			continue;
		}
		if (status == 416 && ftruncate(fd, 0) < 0) /* our partial file is too long */
			kd_debug("blob %s: truncate: %m", digest);
		if (err)
			*err = e;
		return r;
	}
	if (fstat(fd, &st) < 0)
		return kd_err_errno(err, negative_errno(), "blob %s: stat", digest);
	got = (uint64_t)st.st_size >= from ? (uint64_t)st.st_size - from : 0;
	if (status == 200 && from > 0)
		got = (uint64_t)st.st_size; /* the server sent it whole */
	if (ret_fetched)
		*ret_fetched = got;
	if (lseek(fd, 0, SEEK_SET) < 0 || (r = kd_sha256_fd(fd, d, NULL, err)) < 0)
		return kd_err_wrap(err, r < 0 ? r : -EIO, "blob %s", digest);
	kd_hex(d, sizeof(d), hex);
	if ((uint64_t)st.st_size != size || strcmp(hex, digest + 7) != 0)
		return kd_err(err, -EBADMSG,
			      "blob %s from %s: the %llu bytes received hash to sha256:%s (%llu "
			      "bytes expected)",
			      digest, g->base, (unsigned long long)st.st_size, hex,
			      (unsigned long long)size);
	return 0;
}
