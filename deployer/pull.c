/* oci:// payloads: manifest → authenticate → the payload manifest's frame and the tail →
 * choose components → their blobs → one file with the whole payload's layout. Nothing here
 * touches the host root: the blobs and the assembled file live in the cache directory. */
#include "pull.h"

#include "snapshotter.h"

#include <dirent.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "digest.h"
#include "engine.h"
#include "fsroot.h"
#include "http.h"
#include "json.h"
#include "log.h"
#include "payload.h"
#include "registry.h"
#include "sign.h"
#include "strv.h"

typedef struct layer {
	char digest[KD_REGISTRY_DIGEST_MAX];
	uint64_t size, offset; /* offset: where it sits in the whole payload */
} layer;

typedef struct puller {
	const kd_pull_opts *o;
	kd_registry_ref ref;
	kd_registry *g;
	int cachefd;
	layer *layers;
	size_t n;
	kd_pull_result *res;
} puller;

bool kd_is_oci_ref(const char *s)
{
	return s && strncmp(s, KD_PULL_SCHEME, strlen(KD_PULL_SCHEME)) == 0;
}

void kd_pull_result_done(kd_pull_result *r)
{
	if (r->fd >= 0)
		close(r->fd);
	free(r->present);
	*r = (kd_pull_result){.fd = -1};
}

/* ---- the cache directory ------------------------------------------------------------------ */

/* Created 0700; refused when someone else owns it or may write to it (a shared /var/tmp). */
static int open_cache(const char *dir, kd_error *err)
{
	_cleanup_free_ char *def = NULL;
	struct stat st;
	if (!dir) {
		const char *t = getenv("TMPDIR");
		if (asprintf(&def, "%s/%s", t && *t ? t : "/var/tmp", KD_PULL_CACHE_NAME) < 0)
			return kd_err(err, -ENOMEM, "out of memory");
		dir = def;
	}
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return kd_err_errno(err, negative_errno(), "blob cache '%s'", dir);
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return kd_err_errno(err, negative_errno(), "blob cache '%s'", dir);
	if (fstat(fd, &st) < 0 || st.st_uid != geteuid() || (st.st_mode & 022)) {
		close(fd);
		return kd_err(err, -EPERM,
			      "blob cache '%s' is not a directory of ours that only we can write "
			      "to (owner %u, mode %04o)",
			      dir, (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777));
	}
	/* Two pulls into one cache (the CLI beside the agent) wait for each other. */
	if (flock(fd, LOCK_EX) < 0) {
		int r = negative_errno();
		close(fd);
		return kd_err_errno(err, r, "blob cache '%s': lock", dir);
	}
	kd_debug("pull: blob cache %s", dir);
	return fd;
}

static bool hash_matches(int fd, const layer *l)
{
	uint8_t d[KD_SHA256_LEN];
	uint64_t size = 0;
	char hex[KD_SHA256_HEX_LEN + 1];
	if (lseek(fd, 0, SEEK_SET) < 0 || kd_sha256_fd(fd, d, &size, NULL) < 0)
		return false;
	kd_hex(d, sizeof(d), hex);
	return size == l->size && strcmp(hex, l->digest + 7) == 0;
}

/* The blob of layer l as a file of the cache (verified): taken from the cache, resumed from a
 * partial download, or fetched. *ret_fd is open for reading. */
static int fetch_blob(puller *pl, const layer *l, int *ret_fd, kd_error *err)
{
	const char *hex = l->digest + 7;
	char part[KD_SHA256_HEX_LEN + 8];
	struct stat st;
	uint64_t fetched = 0;
	int r;

	snprintf(part, sizeof(part), "%s.part", hex);
	int fd = openat(pl->cachefd, hex, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd >= 0) {
		if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && hash_matches(fd, l)) {
			pl->res->blobs_cached++;
			pl->res->bytes_cached += l->size;
			kd_debug("pull: %s from the cache", l->digest);
			*ret_fd = fd;
			return 0;
		}
		close(fd);
		kd_warn("pull: cached blob %s does not match its digest: fetching it again",
			l->digest);
		(void)unlinkat(pl->cachefd, hex, 0);
	}
	_cleanup_close_ int pfd =
		openat(pl->cachefd, part, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (pfd < 0 || fstat(pfd, &st) < 0)
		return kd_err_errno(err, negative_errno(), "blob cache: %s", part);
	if (!S_ISREG(st.st_mode))
		return kd_err(err, -EINVAL, "blob cache: %s is not a regular file", part);
	uint64_t from = (uint64_t)st.st_size < l->size ? (uint64_t)st.st_size : 0;
	if ((uint64_t)st.st_size == l->size && hash_matches(pfd, l))
		goto done; /* complete, killed before the rename */
	if (from > 0)
		kd_info("pull: resuming %s at byte %llu of %llu", l->digest,
			(unsigned long long)from, (unsigned long long)l->size);
	r = kd_registry_get_blob(pl->g, l->digest, l->size, pfd, from, &fetched, err);
	if (r < 0) {
		/* A blob that is not what its digest says is never kept. */
		if (r == -EBADMSG)
			(void)unlinkat(pl->cachefd, part, 0);
		return r;
	}
	pl->res->bytes_fetched += fetched;
	pl->res->bytes_resumed += l->size - fetched;
	pl->res->blobs_fetched++;
done:
	if (renameat(pl->cachefd, part, pl->cachefd, hex) < 0)
		return kd_err_errno(err, negative_errno(), "blob cache: rename %s", part);
	*ret_fd = TAKE_FD(pfd);
	return 0;
}

/* Copy blob fd to its place in the assembled file. */
static int place(int out, int in, const layer *l, kd_error *err)
{
	loff_t src = 0, dst = (loff_t)l->offset;
	for (uint64_t left = l->size; left > 0;) {
		ssize_t n = copy_file_range(in, &src, out, &dst, (size_t)left, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return kd_err_errno(err, n < 0 ? negative_errno() : -EIO,
					    "assemble the payload");
		left -= (uint64_t)n;
	}
	return 0;
}

static int fetch_and_place(puller *pl, size_t i, kd_error *err)
{
	_cleanup_close_ int fd = -1;
	int r = fetch_blob(pl, &pl->layers[i], &fd, err);
	if (r < 0)
		return kd_err_wrap(err, r, "layer %zu (%s)", i, pl->layers[i].digest);
	pl->res->bytes_used += pl->layers[i].size;
	return place(pl->res->fd, fd, &pl->layers[i], err);
}

/* Remove what this pull did not use: blobs of other versions and components, stale parts. */
static void prune(puller *pl, const bool *used)
{
	_cleanup_close_ int dfd = openat(pl->cachefd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = dfd >= 0 ? fdopendir(TAKE_FD(dfd)) : NULL;
	struct dirent *de;
	if (!d)
		return;
	while ((de = readdir(d))) {
		bool keep = de->d_name[0] == '.';
		for (size_t i = 0; !keep && i < pl->n; i++)
			keep = used[i] && strcmp(de->d_name, pl->layers[i].digest + 7) == 0;
		if (!keep && unlinkat(pl->cachefd, de->d_name, 0) == 0)
			kd_debug("pull: removed %s from the blob cache", de->d_name);
	}
	closedir(d);
}

/* ---- the artifact's manifest -------------------------------------------------------------- */

static int parse_descriptor(struct json_object *d, const char *where, const char *want_mt, layer *l,
			    kd_error *err)
{
	const char *mt, *dg;
	uint64_t size;
	int r;
	if ((r = kd_json_as_object(d, where, err)) < 0 ||
	    (r = kd_json_get_string(d, where, "mediaType", true, &mt, err)) < 0 ||
	    (r = kd_json_get_string(d, where, "digest", true, &dg, err)) < 0 ||
	    (r = kd_json_get_uint64(d, where, "size", true, &size, err)) < 0)
		return r;
	if (strcmp(mt, want_mt) != 0)
		return kd_err(err, -EBADMSG, "%s: media type '%s', expected '%s'", where, mt,
			      want_mt);
	if (strncmp(dg, "sha256:", 7) != 0 || !kd_sha256_hex_valid(dg + 7))
		return kd_err(err, -EBADMSG, "%s: digest '%.80s' is not sha256:<hex>", where, dg);
	if (size == 0 || size > KD_PAYLOAD_MAX_TOTAL)
		return kd_err(err, -EFBIG, "%s: size %llu is out of bounds", where,
			      (unsigned long long)size);
	snprintf(l->digest, sizeof(l->digest), "%s", dg);
	l->size = size;
	return 0;
}

static int parse_artifact(puller *pl, const char *body, size_t len, kd_error *err)
{
	_cleanup_json_ struct json_object *doc = NULL;
	struct json_object *layers = NULL;
	const char *mt = NULL, *at = NULL;
	int64_t sv = 0;
	int r;
	if ((r = kd_json_parse(body, len, "manifest", &doc, err)) < 0 ||
	    (r = kd_json_get_int64(doc, NULL, "schemaVersion", true, &sv, err)) < 0 ||
	    (r = kd_json_get_string(doc, NULL, "mediaType", false, &mt, err)) < 0 ||
	    (r = kd_json_get_string(doc, NULL, "artifactType", false, &at, err)) < 0 ||
	    (r = kd_json_get_array(doc, NULL, "layers", true, &layers, err)) < 0)
		return r;
	if (sv != 2 || (mt && strcmp(mt, KD_REGISTRY_MT_OCI_MANIFEST) != 0))
		return kd_err(err, -EBADMSG, "not an OCI image manifest (schemaVersion %lld, %s)",
			      (long long)sv, mt ? mt : "no mediaType");
	if (!at || strcmp(at, KD_PAYLOAD_OCI_ARTIFACT_TYPE) != 0)
		return kd_err(err, -EBADMSG,
			      "not a kata-deploy payload (artifactType %s, expected %s): publish "
			      "one with 'kata-build push --payload'",
			      at ? at : "none", KD_PAYLOAD_OCI_ARTIFACT_TYPE);
	size_t n = json_object_array_length(layers);
	if (n < 3 || n > KD_PULL_MAX_LAYERS)
		return kd_err(err, -EBADMSG, "%zu layers: a payload has 3 to %u", n,
			      KD_PULL_MAX_LAYERS);
	if (!(pl->layers = calloc(n, sizeof(layer))))
		return kd_err(err, -ENOMEM, "out of memory");
	pl->n = n;
	uint64_t off = 0;
	for (size_t i = 0; i < n; i++) {
		char where[32];
		snprintf(where, sizeof(where), "layers[%zu]", i);
		const char *want = i == 0	? KD_PAYLOAD_OCI_MT_MANIFEST
				   : i + 1 == n ? KD_PAYLOAD_OCI_MT_TAIL
						: KD_PAYLOAD_OCI_MT_COMPONENT;
		if ((r = parse_descriptor(json_object_array_get_idx(layers, i), where, want,
					  &pl->layers[i], err)) < 0)
			return r;
		pl->layers[i].offset = off;
		off += pl->layers[i].size;
		if (off > KD_PAYLOAD_MAX_TOTAL)
			return kd_err(err, -EFBIG, "the layers add up to more than %llu bytes",
				      (unsigned long long)KD_PAYLOAD_MAX_TOTAL);
	}
	pl->res->bytes_artifact = off;
	return 0;
}

/* ---- the signature ------------------------------------------------------------------------ */

static int signature_from_registry(puller *pl, uint8_t **ret, size_t *ret_len, kd_error *err)
{
	_cleanup_free_ char *body = NULL, *mt = NULL, *tag = NULL;
	_cleanup_json_ struct json_object *doc = NULL;
	struct json_object *layers = NULL;
	char dg[KD_REGISTRY_DIGEST_MAX];
	size_t len;
	layer l = {0};
	int r;
	if (asprintf(&tag, "sha256-%s.sig", pl->res->manifest_digest) < 0)
		return kd_err(err, -ENOMEM, "out of memory");
	if ((r = kd_registry_get_manifest(pl->g, tag, &body, &len, dg, &mt, err)) < 0 ||
	    (r = kd_json_parse(body, len, "signature manifest", &doc, err)) < 0 ||
	    (r = kd_json_get_array(doc, NULL, "layers", true, &layers, err)) < 0)
		return kd_err_wrap(err, r, "signature (tag %s)", tag);
	if (json_object_array_length(layers) != 1 ||
	    (r = parse_descriptor(json_object_array_get_idx(layers, 0), "layers[0]",
				  KD_PAYLOAD_OCI_SIG_TYPE, &l, err)) < 0)
		return kd_err_wrap(err, r < 0 ? r : -EBADMSG, "signature (tag %s): one layer", tag);
	if (l.size > KD_PULL_SIG_MAX)
		return kd_err(err, -EFBIG, "signature (tag %s): %llu bytes", tag,
			      (unsigned long long)l.size);
	_cleanup_close_ int fd = openat(pl->cachefd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0)
		return kd_err_errno(err, negative_errno(), "blob cache: temporary file");
	if ((r = kd_registry_get_blob(pl->g, l.digest, l.size, fd, 0, NULL, err)) < 0)
		return kd_err_wrap(err, r, "signature (tag %s)", tag);
	uint8_t *sig = malloc(l.size);
	if (!sig)
		return kd_err(err, -ENOMEM, "out of memory");
	if (pread(fd, sig, l.size, 0) != (ssize_t)l.size) {
		free(sig);
		return kd_err_errno(err, -EIO, "signature: read");
	}
	*ret = sig;
	*ret_len = l.size;
	return 0;
}

static int signature_from(const char *path, uint8_t **ret, size_t *ret_len, kd_error *err)
{
	char *data = NULL;
	size_t len = 0;
	int r;
	if (kd_is_url(path)) {
		kd_http_opts ho = {.max_bytes = KD_PULL_SIG_MAX, .user_agent = "kata-deploy"};
		r = kd_http_get_buf(path, &ho, &data, &len, NULL, err);
	} else {
		_cleanup_close_ int base =
			open(path[0] == '/' ? "/" : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		r = base < 0 ? kd_err_errno(err, negative_errno(), "open '%s'", path)
			     : kd_read_file(base, path, KD_PULL_SIG_MAX, &data, &len, err);
	}
	if (r < 0)
		return kd_err_wrap(err, r, "signature '%s'", path);
	*ret = (uint8_t *)data;
	*ret_len = len;
	return 0;
}

static int verify_signature(puller *pl, kd_error *err)
{
	_cleanup_free_ uint8_t *sig = NULL;
	_cleanup_free_ char *msg = NULL;
	size_t siglen = 0;
	int r = pl->o->signature ? signature_from(pl->o->signature, &sig, &siglen, err)
				 : signature_from_registry(pl, &sig, &siglen, err);
	if (r < 0)
		return r;
	if (asprintf(&msg, "%ssha256:%s", KD_PAYLOAD_OCI_SIG_CONTEXT, pl->res->manifest_digest) < 0)
		return kd_err(err, -ENOMEM, "out of memory");
	if ((r = kd_verify_buf(pl->o->public_key, msg, strlen(msg), sig, siglen, err)) < 0)
		return kd_err_wrap(err, r, "signature of manifest sha256:%s",
				   pl->res->manifest_digest);
	return 0;
}

/* ---- the pull ----------------------------------------------------------------------------- */

static int connect_registry(puller *pl, kd_error *err)
{
	_cleanup_free_ char *user = NULL, *password = NULL;
	const kd_pull_opts *o = pl->o;
	int r;
	if (o->auth_file &&
	    (r = kd_registry_auth_file(o->auth_file, pl->ref.host, &user, &password, err)) < 0)
		return r;
	if (o->auth_file && !user)
		kd_info("pull: %s has no credentials for %s: pulling anonymously", o->auth_file,
			pl->ref.host);
	kd_registry_opts ro = {
		.host = pl->ref.host,
		.repo = pl->ref.repo,
		.plain_http = o->plain_http,
		.actions = "pull",
		.username = user,
		.password = password,
		.cred_hint = o->auth_file ? "check the credentials in the registry auth file"
					  : "give credentials with a registry auth file "
					    "(--registry-auth, a dockerconfigjson)",
		.http = {.user_agent = "kata-deploy",
			 .progress = o->progress,
			 .ca_file = o->ca_file}};
	r = kd_registry_new(&ro, &pl->g, err);
	if (password)
		explicit_bzero(password, strlen(password));
	return r;
}

static int pull(puller *pl, kd_error *err)
{
	const kd_pull_opts *o = pl->o;
	kd_pull_result *res = pl->res;
	_cleanup_free_ char *body = NULL, *mt = NULL;
	_cleanup_free_ bool *used = NULL;
	_cleanup_strv_ char **shims = NULL; /* before any goto out */
	char dg[KD_REGISTRY_DIGEST_MAX];
	kd_payload *p = NULL;
	size_t len;
	int r;

	if ((r = kd_registry_ref_parse(o->ref + strlen(KD_PULL_SCHEME), &pl->ref, err)) < 0 ||
	    (r = connect_registry(pl, err)) < 0)
		return r;
	if ((r = kd_registry_get_manifest(pl->g, pl->ref.digest ? pl->ref.digest : pl->ref.tag,
					  &body, &len, dg, &mt, err)) < 0)
		return r;
	snprintf(res->manifest_digest, sizeof(res->manifest_digest), "%s", dg + 7);
	if (o->pin && strcmp(o->pin, res->manifest_digest) != 0)
		return kd_err(err, -EBADMSG, "manifest: sha256 is %s, expected %s",
			      res->manifest_digest, o->pin);
	if (o->public_key && (r = verify_signature(pl, err)) < 0)
		return r;
	kd_info("pull: manifest sha256:%s%s", res->manifest_digest,
		o->pin || pl->ref.digest ? " (pinned)"
		: o->public_key		 ? " (signature verified)"
					 : " (not pinned, not signed: trusted for its TLS origin)");
	if ((r = parse_artifact(pl, body, len, err)) < 0)
		return kd_err_wrap(err, r, "manifest sha256:%s", res->manifest_digest);

	/* The payload manifest's frame and the tail first: they say what the rest is. */
	res->fd = openat(pl->cachefd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (res->fd < 0)
		return kd_err_errno(err, negative_errno(), "blob cache: temporary file");
	if (ftruncate(res->fd, (off_t)res->bytes_artifact) < 0)
		return kd_err_errno(err, negative_errno(), "blob cache: size the payload file");
	if ((r = fetch_and_place(pl, 0, err)) < 0 || (r = fetch_and_place(pl, pl->n - 1, err)) < 0)
		return r;
	snprintf(res->frame0_sha256, sizeof(res->frame0_sha256), "%s", pl->layers[0].digest + 7);
	kd_payload_verify v = {.pubkey_path = o->public_key,
			       .manifest_frame_sha256 = res->frame0_sha256,
			       .digest = res->manifest_digest};
	if ((r = kd_payload_open(res->fd, o->ref, &v, &p, err)) < 0)
		return r;
	const kd_manifest *m = kd_payload_manifest(p);
	/* A payload for another machine is refused before its components are pulled. */
	if ((r = kd_install_check_arch(m, o->arch, err)) < 0)
		goto out;
	if (m->n_components + 2 != pl->n) {
		r = kd_err(err, -EBADMSG, "%zu layers for the payload's %zu components", pl->n,
			   m->n_components);
		goto out;
	}
	for (size_t i = 0; i < m->n_components; i++) {
		const layer *l = &pl->layers[i + 1];
		if (strcmp(l->digest + 7, m->components[i].blob_sha256) != 0 ||
		    l->size != m->components[i].blob_size) {
			r = kd_err(err, -EBADMSG,
				   "layers[%zu] is %s (%llu bytes), the payload manifest's "
				   "component '%s' is sha256:%s (%llu bytes)",
				   i + 1, l->digest, (unsigned long long)l->size,
				   m->components[i].name, m->components[i].blob_sha256,
				   (unsigned long long)m->components[i].blob_size);
			goto out;
		}
	}
	res->n_components = m->n_components;
	res->present = calloc(m->n_components + 1, sizeof(bool));
	used = calloc(pl->n, sizeof(bool));
	if (!res->present || !used) {
		r = kd_err(err, -ENOMEM, "out of memory");
		goto out;
	}
	/* The engine's rule: with skip_missing, the shims the payload has (it refuses the
	 * install when there is none, naming them). */
	shims = o->shims ? calloc(1, sizeof(char *)) : NULL;
	for (char *const *x = o->shims; x && *x && shims; x++)
		if ((!o->skip_missing || kd_manifest_find_shim(m, *x)) &&
		    kd_strv_push(&shims, *x) < 0)
			kd_strv_free(TAKE_PTR(shims));
	if (o->shims && !shims) {
		r = kd_err(err, -ENOMEM, "out of memory");
		goto out;
	}
	if ((r = kd_manifest_select(m, (const char *const *)shims, kd_strv_length(shims),
				    res->present, err)) < 0)
		goto out;
	kd_snapshotter_select(m, o->snapshotter_setup, res->present);
	kd_debug_tools_select(m, o->debug, res->present);
	used[0] = used[pl->n - 1] = true;
	for (size_t i = 0; i < m->n_components; i++) {
		if (!res->present[i])
			continue;
		used[i + 1] = true;
		if ((r = fetch_and_place(pl, i + 1, err)) < 0) {
			r = kd_err_wrap(err, r, "component '%s'", m->components[i].name);
			goto out;
		}
	}
	prune(pl, used);
	r = 0;
out:
	kd_payload_free(p);
	return r;
}

int kd_pull_payload(const kd_pull_opts *o, kd_pull_result *ret, kd_error *err)
{
	kd_pull_result res = {.fd = -1};
	puller pl = {.o = o, .res = &res, .cachefd = -1};
	int r;

	if (!kd_is_oci_ref(o->ref))
		return kd_err(err, -EINVAL, "'%s' is not an oci:// reference", o->ref);
	pl.cachefd = open_cache(o->cache_dir, err);
	r = pl.cachefd < 0 ? pl.cachefd : pull(&pl, err);
	if (pl.cachefd >= 0)
		close(pl.cachefd);
	kd_registry_free(pl.g);
	kd_registry_ref_done(&pl.ref);
	free(pl.layers);
	if (r < 0) {
		kd_pull_result_done(&res);
		return kd_err_wrap(err, r, "pull %s", o->ref);
	}
	*ret = res;
	return 0;
}
