/* OCI distribution push over lib/registry (which answers the registry's 401 challenges). */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "http.h"
#include "json.h"
#include "log.h"
#include "push.h"
#include "registry.h"

typedef struct reg {
	const kd_push_opts *o;
	kd_registry *r;
} reg;

static int do_req(reg *g, kd_http_request *req, const char *extra_hdr, kd_http_response *resp,
		  kd_error *err)
{
	return kd_registry_do(g->r, req, extra_hdr, resp, err);
}

static int unexpected(const kd_http_request *req, const kd_http_response *resp, kd_error *err)
{
	return kd_registry_unexpected(req, resp, err);
}

static char *resolve(const reg *g, const char *location)
{
	char *u;
	const char *base = kd_registry_base(g->r);
	if (strncmp(location, "http://", 7) == 0 || strncmp(location, "https://", 8) == 0)
		return strdup(location);
	return asprintf(&u, "%s%s%s", base, location[0] == '/' ? "" : "/", location) < 0 ? NULL : u;
}

static int push_blob(reg *g, const kd_oci_blob *b, kd_push_stats *st, kd_error *err)
{
	_cleanup_free_ char *url = NULL, *path = NULL, *put = NULL, *loc = NULL;
	_cleanup_http_response_ kd_http_response resp = {0};
	int r;

	if (asprintf(&url, "%s/v2/%s/blobs/%s", kd_registry_base(g->r), kd_registry_repo(g->r),
		     b->digest) < 0)
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
		if (asprintf(&url, "%s/v2/%s/blobs/uploads/?mount=%s&from=%s",
			     kd_registry_base(g->r), kd_registry_repo(g->r), b->digest,
			     g->o->mount_from) < 0)
			return kd_err(err, -ENOMEM, "out of memory");
	} else if (asprintf(&url, "%s/v2/%s/blobs/uploads/", kd_registry_base(g->r),
			    kd_registry_repo(g->r)) < 0)
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
	_cleanup_free_ char *url = NULL, *ct = NULL, *host = NULL;
	_cleanup_http_response_ kd_http_response resp = {0};
	_cleanup_registry_ kd_registry *client = NULL;
	kd_push_stats st = {0};
	reg g = {.o = o};
	int r;

	const char *slash = strchr(o->target, '/');
	if (!slash || slash == o->target || !slash[1] || strchr(o->target, ' '))
		return kd_err(err, -EINVAL, "push: target '%s' is not HOST[:PORT]/REPOSITORY",
			      o->target);
	if (!(host = strndup(o->target, (size_t)(slash - o->target))))
		return kd_err(err, -ENOMEM, "out of memory");
	kd_registry_opts ro = {
		.host = host,
		.repo = slash + 1,
		.plain_http = o->plain_http,
		.actions = "pull,push",
		.username = getenv(KD_REGISTRY_USER_ENV),
		.password = getenv(KD_REGISTRY_PASSWORD_ENV),
		.cred_hint = "check " KD_REGISTRY_USER_ENV " and " KD_REGISTRY_PASSWORD_ENV,
		.http = {.ca_file = o->ca_file, .retries = o->retries, .user_agent = "kata-build"}};
	if (ro.username && !*ro.username)
		ro.username = NULL;
	if (!ro.username)
		ro.cred_hint = "set " KD_REGISTRY_USER_ENV " and " KD_REGISTRY_PASSWORD_ENV;
	if ((r = kd_registry_new(&ro, &client, err)) < 0)
		return r;
	g.r = client;
	if ((r = kd_oci_read(o->layout, &img, err)) < 0)
		goto out;
	for (size_t i = 0; i < img->n_blobs; i++)
		if ((r = push_blob(&g, &img->blobs[i], &st, err)) < 0)
			goto out;
	if (asprintf(&url, "%s/v2/%s/manifests/%s", kd_registry_base(client),
		     kd_registry_repo(client), o->tag) < 0 ||
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
	return r < 0 ? kd_err_wrap(err, r, "push %s:%s", o->target, o->tag) : 0;
}
