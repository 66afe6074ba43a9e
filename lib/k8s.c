#include "k8s.h"

#include <ctype.h>
#include <fcntl.h>
#include <inttypes.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>

#include "http.h"
#include "json.h"
#include "log.h"
#include "yaml.h"

struct kd_k8s {
	char *server;
	char *source;
	char *ns;
	/* TLS material as file paths: the kubeconfig's own files, or *-data decoded into memfds
	 * (opened by curl as /proc/self/fd/N, so no key ever lands on disk). */
	char *ca_file, *cert_file, *key_file;
	int memfds[3];
	char *token;
	char *token_file; /* re-read when it changes: kubelet rotates projected tokens */
	struct stat token_st;
	kd_http_opts http;
	long timeout_s;
	uint64_t requests, failures, conflicts, token_reloads; /* __atomic */
};

static void count(uint64_t *c)
{
	__atomic_add_fetch(c, 1, __ATOMIC_RELAXED);
}

/* Read a small file with a limit into a NUL-terminated buffer. */
static int read_small(const char *path, size_t max, char **ret, size_t *ret_len, kd_error *err)
{
	/* O_NONBLOCK: a FIFO would block the open itself; the type is checked before reading. */
	_cleanup_close_ int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	_cleanup_free_ char *buf = NULL;
	size_t len = 0;
	struct stat st;

	if (fd < 0)
		return kd_err_errno(err, negative_errno(), "open %s", path);
	if (fstat(fd, &st) < 0)
		return kd_err_errno(err, negative_errno(), "stat %s", path);
	if (!S_ISREG(st.st_mode))
		return kd_err(err, -EINVAL, "%s: not a regular file (a %s)", path,
			      S_ISFIFO(st.st_mode)  ? "FIFO"
			      : S_ISDIR(st.st_mode) ? "directory"
						    : "special file");
	buf = malloc(max + 1);
	if (!buf)
		return kd_err(err, -ENOMEM, "%s: out of memory", path);
	for (;;) {
		ssize_t n = read(fd, buf + len, max + 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return kd_err_errno(err, negative_errno(), "read %s", path);
		if (n == 0)
			break;
		len += (size_t)n;
		if (len > max)
			return kd_err(err, -EFBIG, "%s: larger than the limit of %zu bytes", path,
				      max);
	}
	buf[len] = '\0';
	if (ret_len)
		*ret_len = len;
	*ret = TAKE_PTR(buf);
	return 0;
}

static void trim(char *s)
{
	size_t n = strlen(s);
	while (n > 0 && isspace((unsigned char)s[n - 1]))
		s[--n] = '\0';
	size_t i = 0;
	while (s[i] && isspace((unsigned char)s[i]))
		i++;
	memmove(s, s + i, n - i + 1);
}

static int load_token(kd_k8s *k, bool force, kd_error *err)
{
	struct stat st;
	_cleanup_free_ char *tok = NULL;
	int r;

	if (!k->token_file)
		return 0;
	if (stat(k->token_file, &st) < 0)
		return kd_err_errno(err, negative_errno(), "token file %s", k->token_file);
	if (!force && k->token && st.st_ino == k->token_st.st_ino &&
	    st.st_dev == k->token_st.st_dev && st.st_size == k->token_st.st_size &&
	    st.st_mtim.tv_sec == k->token_st.st_mtim.tv_sec &&
	    st.st_mtim.tv_nsec == k->token_st.st_mtim.tv_nsec)
		return 0;
	r = read_small(k->token_file, KD_K8S_TOKEN_MAX, &tok, NULL, err);
	if (r < 0)
		return kd_err_wrap(err, r, "token");
	trim(tok);
	if (!*tok)
		return kd_err(err, -EINVAL, "token file %s is empty", k->token_file);
	if (k->token && strcmp(k->token, tok) != 0) {
		count(&k->token_reloads);
		kd_debug("k8s: token in %s changed, using the new one", k->token_file);
	}
	free(k->token);
	k->token = TAKE_PTR(tok);
	k->token_st = st;
	return 0;
}

/* RFC 4648 base64 (padding optional, whitespace ignored). */
static int b64_decode(const char *in, unsigned char **ret, size_t *ret_len)
{
	size_t n = strlen(in), o = 0;
	unsigned acc = 0;
	int bits = 0;
	_cleanup_free_ unsigned char *out = malloc(n / 4 * 3 + 4);

	if (!out)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)in[i];
		int v;
		if (c >= 'A' && c <= 'Z')
			v = c - 'A';
		else if (c >= 'a' && c <= 'z')
			v = c - 'a' + 26;
		else if (c >= '0' && c <= '9')
			v = c - '0' + 52;
		else if (c == '+')
			v = 62;
		else if (c == '/')
			v = 63;
		else if (c == '=')
			break;
		else if (isspace(c))
			continue;
		else
			return -EINVAL;
		acc = (acc << 6) | (unsigned)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (unsigned char)(acc >> bits);
		}
	}
	*ret = TAKE_PTR(out);
	*ret_len = o;
	return 0;
}

/* Decode base64 data into a memfd; *ret_path = "/proc/self/fd/N". */
static int data_file(kd_k8s *k, int slot, const char *what, const char *b64, char **ret_path,
		     kd_error *err)
{
	_cleanup_free_ unsigned char *data = NULL;
	size_t len = 0, off = 0;
	int fd;

	if (strlen(b64) > KD_K8S_CERT_MAX * 4 / 3 + 8)
		return kd_err(err, -EFBIG, "%s: larger than the limit of %u bytes", what,
			      KD_K8S_CERT_MAX);
	if (b64_decode(b64, &data, &len) < 0)
		return kd_err(err, -EINVAL, "%s: not valid base64", what);
	fd = memfd_create(what, MFD_CLOEXEC);
	if (fd < 0)
		return kd_err_errno(err, negative_errno(), "%s: memfd_create", what);
	k->memfds[slot] = fd;
	while (off < len) {
		ssize_t w = write(fd, data + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return kd_err_errno(err, negative_errno(), "%s: write", what);
		off += (size_t)w;
	}
	if (asprintf(ret_path, "/proc/self/fd/%d", fd) < 0)
		return kd_err(err, -ENOMEM, "out of memory");
	return 0;
}

static int set_str(char **dst, const char *s)
{
	free(*dst);
	*dst = s ? strdup(s) : NULL;
	return !s || *dst ? 0 : -ENOMEM;
}

/* A path from a kubeconfig: relative ones are relative to the kubeconfig's directory. */
static int kc_path(const char *kubeconfig, const char *p, char **ret)
{
	const char *slash = strrchr(kubeconfig, '/');
	if (p[0] == '/' || !slash)
		*ret = strdup(p);
	else if (asprintf(ret, "%.*s/%s", (int)(slash - kubeconfig), kubeconfig, p) < 0)
		*ret = NULL;
	return *ret ? 0 : -ENOMEM;
}

/* kubeconfig list entry by name: {name: x, <field>: {...}}. */
static struct json_object *kc_find(struct json_object *root, const char *list, const char *field,
				   const char *name)
{
	struct json_object *arr, *e, *v;

	if (!json_object_object_get_ex(root, list, &arr) ||
	    !json_object_is_type(arr, json_type_array))
		return NULL;
	for (size_t i = 0; i < json_object_array_length(arr); i++) {
		e = json_object_array_get_idx(arr, i);
		if (!json_object_is_type(e, json_type_object) ||
		    !json_object_object_get_ex(e, "name", &v) ||
		    !json_object_is_type(v, json_type_string) ||
		    strcmp(json_object_get_string(v), name) != 0)
			continue;
		if (json_object_object_get_ex(e, field, &v) &&
		    json_object_is_type(v, json_type_object))
			return v;
		return NULL;
	}
	return NULL;
}

static int load_kubeconfig(kd_k8s *k, const char *path, const char *context, kd_error *err)
{
	_cleanup_json_ struct json_object *root = NULL;
	struct json_object *ctx, *cluster, *user, *v;
	const char *ctx_name = context, *cluster_name = NULL, *user_name = NULL, *ns = NULL;
	const char *server = NULL, *s = NULL;
	bool insecure = false;
	int r;

	_cleanup_free_ char *text = NULL;
	size_t tlen = 0;
	/* read_small: a FIFO or device named by KUBECONFIG is refused, never waited on. */
	r = read_small(path, KD_K8S_KUBECONFIG_MAX, &text, &tlen, err);
	if (r >= 0)
		r = kd_yaml_parse(text, tlen, path, &root, err);
	if (r < 0)
		return kd_err_wrap(err, r, "kubeconfig");
	if (!root || !json_object_is_type(root, json_type_object))
		return kd_err(err, -EINVAL, "kubeconfig %s: not a mapping", path);
	if (!ctx_name &&
	    (r = kd_json_get_string(root, "", "current-context", false, &ctx_name, err)) < 0)
		return kd_err_wrap(err, r, "kubeconfig %s", path);
	if (!ctx_name || !*ctx_name)
		return kd_err(err, -EINVAL, "kubeconfig %s: no current-context and none given",
			      path);
	ctx = kc_find(root, "contexts", "context", ctx_name);
	if (!ctx)
		return kd_err(err, -ENOENT, "kubeconfig %s: no context named '%s'", path, ctx_name);
	if ((r = kd_json_get_string(ctx, "context", "cluster", true, &cluster_name, err)) < 0 ||
	    (r = kd_json_get_string(ctx, "context", "user", false, &user_name, err)) < 0 ||
	    (r = kd_json_get_string(ctx, "context", "namespace", false, &ns, err)) < 0)
		return kd_err_wrap(err, r, "kubeconfig %s: context '%s'", path, ctx_name);
	cluster = kc_find(root, "clusters", "cluster", cluster_name);
	if (!cluster)
		return kd_err(err, -ENOENT, "kubeconfig %s: no cluster named '%s'", path,
			      cluster_name);
	if ((r = kd_json_get_string(cluster, "cluster", "server", true, &server, err)) < 0 ||
	    (r = kd_json_get_bool(cluster, "cluster", "insecure-skip-tls-verify", false, &insecure,
				  err)) < 0)
		return kd_err_wrap(err, r, "kubeconfig %s: cluster '%s'", path, cluster_name);
	if (insecure)
		return kd_err(err, -EINVAL,
			      "kubeconfig %s: cluster '%s': insecure-skip-tls-verify is refused: "
			      "TLS is always verified; give certificate-authority(-data)",
			      path, cluster_name);
	if (strncmp(server, "https://", 8) != 0)
		return kd_err(err, -EINVAL,
			      "kubeconfig %s: cluster '%s': server '%s' is not https://", path,
			      cluster_name, server);
	if (set_str(&k->server, server) < 0)
		return kd_err(err, -ENOMEM, "out of memory");
	while (k->server[0] && k->server[strlen(k->server) - 1] == '/')
		k->server[strlen(k->server) - 1] = '\0';
	if ((r = kd_json_get_string(cluster, "cluster", "certificate-authority-data", false, &s,
				    err)) < 0)
		return kd_err_wrap(err, r, "kubeconfig %s", path);
	if (s) {
		if ((r = data_file(k, 0, "certificate-authority-data", s, &k->ca_file, err)) < 0)
			return kd_err_wrap(err, r, "kubeconfig %s", path);
	} else {
		if ((r = kd_json_get_string(cluster, "cluster", "certificate-authority", false, &s,
					    err)) < 0)
			return kd_err_wrap(err, r, "kubeconfig %s", path);
		if (s && kc_path(path, s, &k->ca_file) < 0)
			return kd_err(err, -ENOMEM, "out of memory");
	}

	user = user_name ? kc_find(root, "users", "user", user_name) : NULL;
	if (user_name && !user)
		return kd_err(err, -ENOENT, "kubeconfig %s: no user named '%s'", path, user_name);
	if (user) {
		static const char *const unsupported[] = {
			"exec", "auth-provider", "username", "password", "as", "impersonate"};
		for (size_t i = 0; i < ELEMENTSOF(unsupported); i++)
			if (json_object_object_get_ex(user, unsupported[i], &v) && v)
				return kd_err(err, -EOPNOTSUPP,
					      "kubeconfig %s: user '%s': '%s' is not supported "
					      "(use a token, tokenFile or client certificate)",
					      path, user_name, unsupported[i]);
		static const struct {
			const char *data, *file;
			int slot;
			size_t off;
		} pem[] = {
			{"client-certificate-data", "client-certificate", 1,
			 offsetof(kd_k8s, cert_file)},
			{"client-key-data", "client-key", 2, offsetof(kd_k8s, key_file)},
		};
		for (size_t i = 0; i < ELEMENTSOF(pem); i++) {
			char **dst = (char **)((char *)k + pem[i].off);
			s = NULL;
			if ((r = kd_json_get_string(user, "user", pem[i].data, false, &s, err)) < 0)
				return kd_err_wrap(err, r, "kubeconfig %s", path);
			if (s) {
				if ((r = data_file(k, pem[i].slot, pem[i].data, s, dst, err)) < 0)
					return kd_err_wrap(err, r, "kubeconfig %s", path);
				continue;
			}
			s = NULL;
			if ((r = kd_json_get_string(user, "user", pem[i].file, false, &s, err)) < 0)
				return kd_err_wrap(err, r, "kubeconfig %s", path);
			if (s && kc_path(path, s, dst) < 0)
				return kd_err(err, -ENOMEM, "out of memory");
		}
		if (!k->cert_file != !k->key_file)
			return kd_err(err, -EINVAL,
				      "kubeconfig %s: user '%s': a client certificate needs both "
				      "client-certificate and client-key",
				      path, user_name);
		s = NULL;
		if ((r = kd_json_get_string(user, "user", "token", false, &s, err)) < 0)
			return kd_err_wrap(err, r, "kubeconfig %s", path);
		if (s && set_str(&k->token, s) < 0)
			return kd_err(err, -ENOMEM, "out of memory");
		if (!s) {
			s = NULL;
			if ((r = kd_json_get_string(user, "user", "tokenFile", false, &s, err)) < 0)
				return kd_err_wrap(err, r, "kubeconfig %s", path);
			if (s && kc_path(path, s, &k->token_file) < 0)
				return kd_err(err, -ENOMEM, "out of memory");
		}
	}
	if (set_str(&k->ns, ns && *ns ? ns : "default") < 0 ||
	    asprintf(&k->source, "kubeconfig %s context %s", path, ctx_name) < 0)
		return kd_err(err, -ENOMEM, "out of memory");
	return 0;
}

static int load_in_cluster(kd_k8s *k, const char *dir, kd_error *err)
{
	const char *host = getenv("KUBERNETES_SERVICE_HOST");
	const char *port = getenv("KUBERNETES_SERVICE_PORT");
	_cleanup_free_ char *ns = NULL;
	int r;

	if (!host || !*host)
		return kd_err(
			err, -ENOENT,
			"no Kubernetes configuration: KUBERNETES_SERVICE_HOST is not set (not "
			"in a pod) and no kubeconfig was given (--kubeconfig, KUBECONFIG)");
	if (asprintf(&k->server, strchr(host, ':') ? "https://[%s]:%s" : "https://%s:%s", host,
		     port && *port ? port : "443") < 0 ||
	    asprintf(&k->token_file, "%s/token", dir) < 0 ||
	    asprintf(&k->ca_file, "%s/ca.crt", dir) < 0 ||
	    asprintf(&k->source, "in-cluster %s", dir) < 0)
		return kd_err(err, -ENOMEM, "out of memory");
	if (access(k->ca_file, R_OK) < 0)
		return kd_err_errno(err, negative_errno(), "in-cluster CA %s", k->ca_file);
	r = load_token(k, true, err);
	if (r < 0)
		return kd_err_wrap(err, r, "in-cluster");
	if (asprintf(&ns, "%s/namespace", dir) < 0)
		return kd_err(err, -ENOMEM, "out of memory");
	{
		_cleanup_free_ char *data = NULL;
		if (read_small(ns, 256, &data, NULL, NULL) == 0) {
			trim(data);
			if (*data)
				k->ns = TAKE_PTR(data);
		}
	}
	if (!k->ns && set_str(&k->ns, "default") < 0)
		return kd_err(err, -ENOMEM, "out of memory");
	return 0;
}

int kd_k8s_new(const kd_k8s_opts *o, kd_k8s **ret, kd_error *err)
{
	static const kd_k8s_opts none;
	_cleanup_k8s_ kd_k8s *k = NULL;
	const char *kc;
	_cleanup_free_ char *env_kc = NULL;
	int r;

	if (!o)
		o = &none;
	k = calloc(1, sizeof(*k));
	if (!k)
		return kd_err(err, -ENOMEM, "out of memory");
	k->memfds[0] = k->memfds[1] = k->memfds[2] = -1;
	kc = o->kubeconfig;
	if (!kc && !o->in_cluster && getenv("KUBECONFIG") && *getenv("KUBECONFIG")) {
		/* A list like kubectl's; we take the first file that exists (no merging). */
		env_kc = strdup(getenv("KUBECONFIG"));
		if (!env_kc)
			return kd_err(err, -ENOMEM, "out of memory");
		for (char *save = NULL, *p = strtok_r(env_kc, ":", &save); p;
		     p = strtok_r(NULL, ":", &save))
			if (access(p, F_OK) == 0) {
				kc = p;
				break;
			}
		if (!kc)
			return kd_err(err, -ENOENT, "KUBECONFIG=%s: no such file",
				      getenv("KUBECONFIG"));
	}
	r = kc ? load_kubeconfig(k, kc, o->context, err)
	       : load_in_cluster(k, o->sa_dir ? o->sa_dir : KD_K8S_SA_DIR, err);
	if (r < 0)
		return r;
	if (k->token_file && !k->token && (r = load_token(k, true, err)) < 0)
		return r;
	k->http = (kd_http_opts){
		.retries = o->retries ? o->retries : KD_K8S_DEFAULT_RETRIES,
		.backoff_ms = o->backoff_ms > 0 ? o->backoff_ms : KD_K8S_DEFAULT_BACKOFF_MS,
		.ca_file = k->ca_file,
		.user_agent = o->user_agent ? o->user_agent : "kata-deploy",
		.max_redirects = -1,
		.connect_timeout_s = 5,
	};
	k->timeout_s = o->timeout_s > 0 ? o->timeout_s : KD_K8S_DEFAULT_TIMEOUT_S;
	*ret = TAKE_PTR(k);
	return 0;
}

void kd_k8s_free(kd_k8s *k)
{
	if (!k)
		return;
	for (int i = 0; i < 3; i++)
		if (k->memfds[i] >= 0)
			close(k->memfds[i]);
	free(k->server);
	free(k->source);
	free(k->ns);
	free(k->ca_file);
	free(k->cert_file);
	free(k->key_file);
	if (k->token)
		explicit_bzero(k->token, strlen(k->token));
	free(k->token);
	free(k->token_file);
	free(k);
}

const char *kd_k8s_server(const kd_k8s *k)
{
	return k->server;
}

const char *kd_k8s_source(const kd_k8s *k)
{
	return k->source;
}

const char *kd_k8s_namespace(const kd_k8s *k)
{
	return k->ns;
}

void kd_k8s_get_stats(const kd_k8s *k, kd_k8s_stats *ret)
{
	ret->requests = __atomic_load_n(&k->requests, __ATOMIC_RELAXED);
	ret->failures = __atomic_load_n(&k->failures, __ATOMIC_RELAXED);
	ret->conflicts = __atomic_load_n(&k->conflicts, __ATOMIC_RELAXED);
	ret->token_reloads = __atomic_load_n(&k->token_reloads, __ATOMIC_RELAXED);
}

int kd_k8s_escape(const char *s, char *buf, size_t size)
{
	size_t o = 0;

	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
			if (o + 1 >= size)
				return -ENAMETOOLONG;
			buf[o++] = (char)c;
		} else {
			if (o + 3 >= size)
				return -ENAMETOOLONG;
			snprintf(buf + o, 4, "%%%02X", c);
			o += 3;
		}
	}
	if (o >= size)
		return -ENAMETOOLONG;
	buf[o] = '\0';
	return 0;
}

/* "patch nodes/n1", "create events in kube-system", "list daemonsets in kube-system": the
 * words of an RBAC denial, so an error names the verb and resource to grant. */
static void describe(const char *method, const char *path, char *buf, size_t size)
{
	char p[KD_K8S_URL_MAX], *segs[16], *save = NULL, *ns = NULL;
	size_t n = 0, i = 0, o;
	const char *verb;

	snprintf(p, sizeof(p), "%s", path);
	p[strcspn(p, "?")] = '\0';
	for (char *t = strtok_r(p, "/", &save); t && n < ELEMENTSOF(segs);
	     t = strtok_r(NULL, "/", &save))
		segs[n++] = t;
	if (n > 0 && strcmp(segs[0], "api") == 0)
		i = 2;
	else if (n > 0 && strcmp(segs[0], "apis") == 0)
		i = 3;
	if (i + 3 <= n && strcmp(segs[i], "namespaces") == 0) {
		ns = segs[i + 1];
		i += 2;
	}
	if (strcmp(method, "GET") == 0)
		verb = n - i == 1 ? "list" : "get";
	else if (strcmp(method, "POST") == 0)
		verb = "create";
	else if (strcmp(method, "PUT") == 0)
		verb = "update";
	else if (strcmp(method, "PATCH") == 0)
		verb = "patch";
	else if (strcmp(method, "DELETE") == 0)
		verb = "delete";
	else
		verb = method;
	if (i >= n) {
		snprintf(buf, size, "%s %s", verb, path);
		return;
	}
	o = (size_t)snprintf(buf, size, "%s ", verb);
	for (size_t j = i; j < n && o < size; j++)
		o += (size_t)snprintf(buf + o, size - o, "%s%s", j > i ? "/" : "", segs[j]);
	if (ns && o < size)
		snprintf(buf + o, size - o, " in %s", ns);
}

static int status_errno(long status, const char *reason)
{
	if (status == 409)
		return reason && strcmp(reason, "AlreadyExists") == 0 ? -EEXIST : -ESTALE;
	if (status == 400 || status == 422)
		return -EINVAL;
	return kd_http_status_errno(status);
}

/* A 403 from a kube-apiserver that has just started may only mean its RBAC cache is still empty
 * (measured with v1.33: for a second or so after a restart every request is refused with
 * "RBAC: [clusterrole ... not found, ...]", even system:discovery, or with a plain "cannot get"
 * while the bindings are still loading). Such a server is not ready: its /readyz, which every
 * caller may read once RBAC is loaded, is not 200 either. A 403 is an answer only when it is
 * repeated once the server is ready (it may have become ready between our request and the
 * probe). */
static bool server_ready(kd_k8s *k)
{
	_cleanup_http_response_ kd_http_response resp = {0};
	char url[KD_K8S_URL_MAX];
	const char *hdrs[] = {"Accept: text/plain", NULL};

	snprintf(url, sizeof(url), "%s/readyz", k->server);
	kd_http_request req = {
		.method = "GET",
		.url = url,
		.headers = hdrs,
		.bearer_token = k->token,
		.client_cert = k->cert_file,
		.client_key = k->key_file,
		.max_response = KD_K8S_READYZ_MAX,
		.timeout_s = k->timeout_s,
	};
	count(&k->requests);
	if (kd_http_do(&req, &k->http, &resp, NULL) < 0)
		return false;
	return resp.status == 200;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static int do_request(kd_k8s *k, const char *method, const char *path, const char *content_type,
		      const char *body, size_t body_len, struct json_object **ret, kd_error *err)
{
	_cleanup_http_response_ kd_http_response resp = {0};
	_cleanup_json_ struct json_object *obj = NULL;
	char url[KD_K8S_URL_MAX], what[KD_K8S_URL_MAX + 64], ct[128];
	const char *hdrs[3] = {"Accept: application/json", NULL, NULL};
	const char *msg = NULL, *reason = NULL;
	int r;

	describe(method, path, what, sizeof(what));
	if ((size_t)snprintf(url, sizeof(url), "%s%s", k->server, path) >= sizeof(url))
		return kd_err(err, -ENAMETOOLONG, "%s: URL too long", what);
	if (body) {
		snprintf(ct, sizeof(ct), "Content-Type: %s",
			 content_type ? content_type : "application/json");
		hdrs[1] = ct;
	}
	int forbidden = 0;
	long backoff = k->http.backoff_ms;
	bool reloaded = false, retried_ready = false;
	for (;;) {
		r = load_token(k, false, err);
		if (r < 0)
			return kd_err_wrap(err, r, "%s", what);
		kd_http_request req = {
			.method = method,
			.url = url,
			.headers = hdrs,
			.body = body,
			.body_len = body_len,
			.bearer_token = k->token,
			.client_cert = k->cert_file,
			.client_key = k->key_file,
			.max_response = KD_K8S_MAX_RESPONSE,
			.timeout_s = k->timeout_s,
		};
		char *old_token = NULL;

		count(&k->requests);
		kd_http_response_free(&resp);
		resp = (kd_http_response){0};
		r = kd_http_do(&req, &k->http, &resp, err);
		if (r < 0) {
			count(&k->failures);
			return kd_err_wrap(err, r, "%s", what);
		}
		if (resp.status == 403 && !retried_ready && forbidden < k->http.retries) {
			forbidden++;
			/* Ready now: it may have become so since our request; once more. */
			retried_ready = server_ready(k);
			kd_debug("%s: 403 from a server that %s ready; retrying in %ld ms", what,
				 retried_ready ? "is now" : "is not", backoff);
			sleep_ms(backoff);
			backoff = backoff * 2 > KD_HTTP_MAX_BACKOFF_MS ? KD_HTTP_MAX_BACKOFF_MS
								       : backoff * 2;
			continue;
		}
		/* A rotated token may have been written after our last look: re-read once. */
		if (resp.status != 401 || !k->token_file || reloaded)
			break;
		reloaded = true;
		old_token = k->token ? strdup(k->token) : NULL;
		r = load_token(k, true, NULL);
		bool same = r < 0 || !old_token || !k->token || strcmp(old_token, k->token) == 0;
		free(old_token);
		if (same)
			break;
	}
	if (resp.body_len > 0 &&
	    (resp.status < 300 || (resp.content_type && strstr(resp.content_type, "json")))) {
		r = kd_json_parse(resp.body, resp.body_len, "response", &obj,
				  resp.status < 300 ? err : NULL);
		if (r < 0 && resp.status < 300) {
			count(&k->failures);
			return kd_err_wrap(err, r, "%s", what);
		}
	}
	if (resp.status >= 200 && resp.status < 300) {
		if (ret)
			*ret = TAKE_PTR(obj);
		return 0;
	}
	count(&k->failures);
	if (obj && json_object_is_type(obj, json_type_object)) {
		(void)kd_json_get_string(obj, "", "message", false, &msg, NULL);
		(void)kd_json_get_string(obj, "", "reason", false, &reason, NULL);
	}
	if (!reason || !*reason)
		reason = kd_http_reason(resp.status);
	if (!msg && resp.body_len > 0 && resp.body_len < 512 && !obj)
		msg = resp.body;
	r = status_errno(resp.status, reason);
	return kd_err(err, r, "%s: %ld%s%s%s%s", what, resp.status, *reason ? " " : "", reason,
		      msg && *msg ? ": " : "", msg ? msg : "");
}

int kd_k8s_request(kd_k8s *k, const char *method, const char *path, const char *content_type,
		   const char *body, size_t body_len, struct json_object **ret, kd_error *err)
{
	return do_request(k, method, path, content_type, body, body_len, ret, err);
}

static int send_obj(kd_k8s *k, const char *method, const char *path, const char *ct,
		    struct json_object *obj, struct json_object **ret, kd_error *err)
{
	const char *s = json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN);
	if (!s)
		return kd_err(err, -ENOMEM, "out of memory");
	return do_request(k, method, path, ct, s, strlen(s), ret, err);
}

int kd_k8s_get(kd_k8s *k, const char *path, struct json_object **ret, kd_error *err)
{
	return do_request(k, "GET", path, NULL, NULL, 0, ret, err);
}

int kd_k8s_create(kd_k8s *k, const char *path, struct json_object *obj, struct json_object **ret,
		  kd_error *err)
{
	return send_obj(k, "POST", path, "application/json", obj, ret, err);
}

int kd_k8s_replace(kd_k8s *k, const char *path, struct json_object *obj, struct json_object **ret,
		   kd_error *err)
{
	return send_obj(k, "PUT", path, "application/json", obj, ret, err);
}

int kd_k8s_delete(kd_k8s *k, const char *path, kd_error *err)
{
	return do_request(k, "DELETE", path, NULL, NULL, 0, NULL, err);
}

int kd_k8s_merge_patch(kd_k8s *k, const char *path, struct json_object *patch,
		       struct json_object **ret, kd_error *err)
{
	return send_obj(k, "PATCH", path, "application/merge-patch+json", patch, ret, err);
}

int kd_k8s_apply(kd_k8s *k, const char *path, struct json_object *obj, const char *field_manager,
		 bool force, struct json_object **ret, kd_error *err)
{
	char full[KD_K8S_URL_MAX], fm[256];

	if (!field_manager || !*field_manager)
		return kd_err(err, -EINVAL, "server-side apply needs a field manager");
	if (kd_k8s_escape(field_manager, fm, sizeof(fm)) < 0 ||
	    (size_t)snprintf(full, sizeof(full), "%s%cfieldManager=%s%s", path,
			     strchr(path, '?') ? '&' : '?', fm,
			     force ? "&force=true" : "") >= sizeof(full))
		return kd_err(err, -ENAMETOOLONG, "apply %s: URL too long", path);
	return send_obj(k, "PATCH", full, "application/apply-patch+yaml", obj, ret, err);
}

int kd_k8s_patch_guarded(kd_k8s *k, const char *path, kd_k8s_mutate_fn fn, void *userdata,
			 struct json_object **ret, kd_error *err)
{
	for (int attempt = 0;; attempt++) {
		_cleanup_json_ struct json_object *obj = NULL, *patch = NULL, *out = NULL;
		struct json_object *meta = NULL;
		const char *rv = NULL;
		int r;

		r = kd_k8s_get(k, path, &obj, err);
		if (r < 0)
			return r;
		if (!obj || kd_json_get_object(obj, "", "metadata", true, &meta, err) < 0 ||
		    kd_json_get_string(meta, "metadata", "resourceVersion", true, &rv, err) < 0)
			return kd_err_wrap(err, -EINVAL, "get %s", path);
		r = fn(obj, &patch, userdata, err);
		if (r < 0)
			return r;
		if (!patch) {
			if (ret)
				*ret = TAKE_PTR(obj);
			return 0;
		}
		struct json_object *pmeta = NULL;
		if (!json_object_object_get_ex(patch, "metadata", &pmeta) || !pmeta) {
			pmeta = json_object_new_object();
			if (!pmeta || json_object_object_add(patch, "metadata", pmeta) < 0)
				return kd_err(err, -ENOMEM, "out of memory");
		}
		if (json_object_object_add(pmeta, "resourceVersion", json_object_new_string(rv)) <
		    0)
			return kd_err(err, -ENOMEM, "out of memory");
		r = kd_k8s_merge_patch(k, path, patch, &out, err);
		if (r == -ESTALE) {
			count(&k->conflicts);
			if (attempt + 1 >= KD_K8S_CONFLICT_RETRIES)
				return kd_err_wrap(err, r, "gave up after %d conflicts",
						   KD_K8S_CONFLICT_RETRIES);
			kd_debug("k8s: %s; reading it again", kd_err_msg(err));
			kd_err_clear(err);
			continue;
		}
		if (r < 0)
			return r;
		if (ret)
			*ret = TAKE_PTR(out);
		return 1;
	}
}

/* ---- scheduling rules ---------------------------------------------------------------------- */

static const char *label_of(struct json_object *node, const char *key)
{
	struct json_object *meta, *labels, *v;

	if (json_object_object_get_ex(node, "metadata", &meta) &&
	    json_object_object_get_ex(meta, "labels", &labels) &&
	    json_object_object_get_ex(labels, key, &v) && json_object_is_type(v, json_type_string))
		return json_object_get_string(v);
	return NULL;
}

static const char *node_name(struct json_object *node)
{
	struct json_object *meta, *v;

	if (json_object_object_get_ex(node, "metadata", &meta) &&
	    json_object_object_get_ex(meta, "name", &v) && json_object_is_type(v, json_type_string))
		return json_object_get_string(v);
	return "";
}

static bool in_values(struct json_object *values, const char *s)
{
	for (size_t i = 0; values && i < json_object_array_length(values); i++) {
		struct json_object *v = json_object_array_get_idx(values, i);
		if (json_object_is_type(v, json_type_string) &&
		    strcmp(json_object_get_string(v), s) == 0)
			return true;
	}
	return false;
}

/* One requirement {key, operator, values}; value is the label (or field) value, NULL if absent. */
static int requirement(struct json_object *req, const char *where, bool fields,
		       struct json_object *node, bool *ret, kd_error *err)
{
	const char *key, *op, *val;
	struct json_object *values = NULL;
	int r;

	if ((r = kd_json_get_string(req, where, "key", true, &key, err)) < 0 ||
	    (r = kd_json_get_string(req, where, "operator", true, &op, err)) < 0 ||
	    (r = kd_json_get_array(req, where, "values", false, &values, err)) < 0)
		return r;
	if (fields) {
		if (strcmp(key, "metadata.name") != 0)
			return kd_err(err, -EINVAL, "%s.key: field '%s' is not supported", where,
				      key);
		val = node_name(node);
	} else
		val = label_of(node, key);
	if (strcmp(op, "In") == 0)
		*ret = val && in_values(values, val);
	else if (strcmp(op, "NotIn") == 0)
		*ret = !val || !in_values(values, val);
	else if (strcmp(op, "Exists") == 0)
		*ret = val != NULL;
	else if (strcmp(op, "DoesNotExist") == 0)
		*ret = val == NULL;
	else if (strcmp(op, "Gt") == 0 || strcmp(op, "Lt") == 0) {
		struct json_object *v0 = values && json_object_array_length(values) == 1
						 ? json_object_array_get_idx(values, 0)
						 : NULL;
		char *end;
		long long a, b;
		if (!v0 || !json_object_is_type(v0, json_type_string))
			return kd_err(err, -EINVAL, "%s.values: %s needs exactly one value", where,
				      op);
		b = strtoll(json_object_get_string(v0), &end, 10);
		if (*end)
			return kd_err(err, -EINVAL, "%s.values: '%s' is not an integer", where,
				      json_object_get_string(v0));
		*ret = false;
		if (val) {
			a = strtoll(val, &end, 10);
			if (!*end && *val)
				*ret = op[0] == 'G' ? a > b : a < b;
		}
	} else
		return kd_err(err, -EINVAL, "%s.operator: unknown operator '%s'", where, op);
	return 0;
}

int kd_k8s_pod_spec_selects_node(struct json_object *spec, struct json_object *node, bool *ret,
				 kd_error *err)
{
	struct json_object *sel = NULL, *aff = NULL, *na = NULL, *req = NULL, *terms = NULL;
	char w[KD_JSON_PATH_MAX], w2[KD_JSON_PATH_MAX];
	int r;

	if ((r = kd_json_get_object(spec, "spec", "nodeSelector", false, &sel, err)) < 0)
		return r;
	if (sel) {
		json_object_object_foreach(sel, key, val)
		{
			const char *have = label_of(node, key);
			if (!json_object_is_type(val, json_type_string))
				return kd_err(err, -EINVAL, "spec.nodeSelector.%s: expected string",
					      key);
			if (!have || strcmp(have, json_object_get_string(val)) != 0) {
				*ret = false;
				return 0;
			}
		}
	}
	if ((r = kd_json_get_object(spec, "spec", "affinity", false, &aff, err)) < 0 ||
	    (aff &&
	     (r = kd_json_get_object(aff, "spec.affinity", "nodeAffinity", false, &na, err)) < 0) ||
	    (na && (r = kd_json_get_object(na, "spec.affinity.nodeAffinity",
					   "requiredDuringSchedulingIgnoredDuringExecution", false,
					   &req, err)) < 0) ||
	    (req &&
	     (r = kd_json_get_array(req, "required", "nodeSelectorTerms", true, &terms, err)) < 0))
		return r;
	if (!terms) {
		*ret = true;
		return 0;
	}
	/* Terms are ORed; inside a term everything is ANDed; an empty term matches nothing. */
	for (size_t t = 0; t < json_object_array_length(terms); t++) {
		struct json_object *term = json_object_array_get_idx(terms, t);
		bool match = true, any = false;
		kd_json_path_index(w, sizeof(w), "nodeSelectorTerms", t);
		if ((r = kd_json_as_object(term, w, err)) < 0)
			return r;
		static const char *const kinds[] = {"matchExpressions", "matchFields"};
		for (size_t k = 0; k < 2 && match; k++) {
			struct json_object *exprs = NULL;
			if ((r = kd_json_get_array(term, w, kinds[k], false, &exprs, err)) < 0)
				return r;
			for (size_t i = 0; exprs && i < json_object_array_length(exprs) && match;
			     i++) {
				struct json_object *e = json_object_array_get_idx(exprs, i);
				char tmp[KD_JSON_PATH_MAX];
				kd_json_path_index(w2, sizeof(w2),
						   kd_json_path_key(tmp, sizeof(tmp), w, kinds[k]),
						   i);
				if ((r = kd_json_as_object(e, w2, err)) < 0 ||
				    (r = requirement(e, w2, k == 1, node, &match, err)) < 0)
					return r;
				any = true;
			}
		}
		if (match && any) {
			*ret = true;
			return 0;
		}
	}
	*ret = false;
	return 0;
}

bool kd_k8s_node_ready(struct json_object *node)
{
	struct json_object *status, *conds;

	if (!json_object_object_get_ex(node, "status", &status) ||
	    !json_object_object_get_ex(status, "conditions", &conds) ||
	    !json_object_is_type(conds, json_type_array))
		return false;
	for (size_t i = 0; i < json_object_array_length(conds); i++) {
		struct json_object *c = json_object_array_get_idx(conds, i), *t, *s;
		if (json_object_object_get_ex(c, "type", &t) &&
		    json_object_object_get_ex(c, "status", &s) &&
		    json_object_is_type(t, json_type_string) &&
		    json_object_is_type(s, json_type_string) &&
		    strcmp(json_object_get_string(t), "Ready") == 0)
			return strcmp(json_object_get_string(s), "True") == 0;
	}
	return false;
}
