/* OCI layout writer and reader. Layers are written with lib/tarball: the agent layer twice
 * (plain, for its diff_id, and gzip, the blob), the payload layer once, uncompressed: the
 * payload is already zstd, so gzip would only cost time. */
#include <dlfcn.h>
#include <fcntl.h>
#include <link.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "digest.h"
#include "fsroot.h"
#include "json.h"
#include "log.h"
#include "oci.h"
#include "payload.h"
#include "sign.h"
#include "strv.h"
#include "tarball.h"

const char *kd_oci_arch(void)
{
	struct utsname u;
	if (uname(&u) < 0)
		return "unknown";
	if (strcmp(u.machine, "x86_64") == 0)
		return "amd64";
	if (strcmp(u.machine, "aarch64") == 0)
		return "arm64";
	if (strcmp(u.machine, "ppc64le") == 0)
		return "ppc64le";
	if (strcmp(u.machine, "s390x") == 0)
		return "s390x";
	return "unknown";
}

char *kd_oci_blob_path(const char *layout, const char *digest)
{
	char *p;
	if (strncmp(digest, "sha256:", 7) != 0 || !kd_sha256_hex_valid(digest + 7))
		return NULL;
	return asprintf(&p, "%s/blobs/sha256/%s", layout, digest + 7) < 0 ? NULL : p;
}

typedef struct lentry {
	char *path;   /* in the image, no leading '/' */
	char *source; /* file to copy, NULL for a directory */
	mode_t mode;
} lentry;

static int cmp_lentry(const void *a, const void *b)
{
	return strcmp(((const lentry *)a)->path, ((const lentry *)b)->path);
}

static int write_layer(lentry *e, size_t n, kd_compression comp, int64_t mtime, int fd,
		       kd_error *err)
{
	_cleanup_tar_writer_ kd_tar_writer *w = NULL;
	kd_tar_write_opts wo = {
		.compression = comp, .level = comp == KD_COMPRESS_GZIP ? 9 : 0, .mtime = mtime};
	char buf[1 << 16];
	int r;

	if ((r = kd_tar_writer_open(fd, &wo, &w, err)) < 0)
		return r;
	for (size_t i = 0; i < n; i++) {
		struct stat st = {0};
		_cleanup_close_ int in = -1;
		if (e[i].source) {
			in = open(e[i].source, O_RDONLY | O_CLOEXEC);
			if (in < 0 || fstat(in, &st) < 0)
				return kd_err_errno(err, negative_errno(), "open %s", e[i].source);
		}
		kd_tar_entry te = {.path = e[i].path,
				   .type = e[i].source ? KD_ENTRY_FILE : KD_ENTRY_DIR,
				   .mode = e[i].mode,
				   .size = e[i].source ? (uint64_t)st.st_size : 0};
		if ((r = kd_tar_write_header(w, &te, err)) < 0)
			return r;
		for (uint64_t left = te.size; left > 0;) {
			ssize_t k = read(in, buf, left < sizeof(buf) ? (size_t)left : sizeof(buf));
			if (k < 0 && errno == EINTR)
				continue;
			if (k <= 0)
				return kd_err_errno(err, k < 0 ? negative_errno() : -EIO, "read %s",
						    e[i].source);
			if ((r = kd_tar_write_data(w, buf, (size_t)k, err)) < 0)
				return r;
			left -= (uint64_t)k;
		}
	}
	return kd_tar_writer_close(w, err);
}

/* Move a finished temp file into blobs/sha256/<hex>; ret gets "sha256:<hex>" and its size. */
static int store_blob(const char *layout, const char *tmp, char ret[KD_OCI_DIGEST_MAX],
		      uint64_t *ret_size, kd_error *err)
{
	_cleanup_close_ int fd = open(tmp, O_RDONLY | O_CLOEXEC);
	uint8_t d[KD_SHA256_LEN];
	char hex[65];
	int r;
	if (fd < 0)
		return kd_err_errno(err, negative_errno(), "open %s", tmp);
	if ((r = kd_sha256_fd(fd, d, ret_size, err)) < 0)
		return r;
	kd_hex(d, sizeof(d), hex);
	snprintf(ret, KD_OCI_DIGEST_MAX, "sha256:%s", hex);
	_cleanup_free_ char *dst = kd_oci_blob_path(layout, ret);
	if (!dst)
		return kd_err(err, -ENOMEM, "out of memory");
	if (chmod(tmp, 0644) < 0 || rename(tmp, dst) < 0)
		return kd_err_errno(err, negative_errno(), "store %s", dst);
	return 0;
}

static int store_json(const char *layout, struct json_object *v, char ret[KD_OCI_DIGEST_MAX],
		      uint64_t *ret_size, kd_error *err)
{
	_cleanup_free_ char *text = NULL, *tmp = NULL;
	size_t len;
	int r = kd_json_format(v, KD_JSON_CANONICAL, &text, &len, err);
	if (r < 0)
		return r;
	if (asprintf(&tmp, "%s/blobs/sha256/.#kd.json", layout) < 0)
		return kd_err(err, -ENOMEM, "out of memory");
	_cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || write(fd, text, len) != (ssize_t)len)
		return kd_err_errno(err, negative_errno(), "write %s", tmp);
	return store_blob(layout, tmp, ret, ret_size, err);
}

/* Adds the libraries the dynamic loader maps for bin, as ldd lists them, to *libs. */
static int ldd_libs(const char *bin, char ***libs, kd_error *err)
{
	_cleanup_free_ char *cmd = NULL;
	char line[4096];
	if (strchr(bin, '\''))
		return kd_err(err, -EINVAL, "path '%s' has a quote", bin);
	if (asprintf(&cmd, "ldd '%s' 2>&1", bin) < 0)
		return kd_err(err, -ENOMEM, "out of memory");
	FILE *p = popen(cmd, "re");
	if (!p)
		return kd_err_errno(err, negative_errno(), "ldd %s", bin);
	while (fgets(line, sizeof(line), p)) {
		/* "\tlibz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x...)" or
		 * "\t/lib64/ld-linux-x86-64.so.2 (0x...)"; vdso lines have no path. */
		char *path = strstr(line, "=> ");
		if (path && strncmp(path + 3, "not found", 9) == 0) {
			pclose(p);
			line[strcspn(line, "\n")] = '\0';
			return kd_err(err, -ENOENT, "%s needs a library this machine lacks:%s", bin,
				      line);
		}
		path = path ? path + 3 : line + strspn(line, " \t");
		if (path[0] != '/')
			continue;
		path[strcspn(path, " \n")] = '\0';
		if (kd_strv_find(*libs, path))
			continue;
		if (kd_strv_length(*libs) >= KD_OCI_MAX_LIBS) {
			pclose(p);
			return kd_err(err, -E2BIG, "the image would hold more than %u libraries",
				      KD_OCI_MAX_LIBS);
		}
		if (kd_strv_push(libs, path) < 0) {
			pclose(p);
			return kd_err(err, -ENOMEM, "out of memory");
		}
	}
	(void)pclose(p); /* a static binary: "not a dynamic executable", exit 1 */
	return 0;
}

/* Where this machine's loader finds a soname (the path dlopen would map), in ret. */
static int resolve_soname(const char *soname, char *ret, size_t size, kd_error *err)
{
	void *h = dlopen(soname, RTLD_LAZY | RTLD_LOCAL);
	if (!h) {
		const char *e = dlerror();
		return kd_err(
			err, -ENOENT,
			"the agent dlopens %s, which this machine does not have (%s): install "
			"it, or build with --no-libs",
			soname, e ? e : "not found");
	}
	struct link_map *lm = NULL;
	int r = 0;
	if (dlinfo(h, RTLD_DI_LINKMAP, &lm) < 0 || !lm || !lm->l_name || lm->l_name[0] != '/')
		r = kd_err(err, -ENOENT, "cannot tell where %s was loaded from", soname);
	else
		snprintf(ret, size, "%s", lm->l_name);
	dlclose(h);
	return r;
}

/* Every library the agent maps or opens at run time: ldd of the agent and of its waiter, and
 * each KD_OCI_DLOPEN_LIBS soname (at the path the loader finds it under) with its own ldd. */
static int runtime_libs(const kd_oci_opts *o, char ***ret, kd_error *err)
{
	static const char *const dl[] = KD_OCI_DLOPEN_LIBS;
	_cleanup_strv_ char **libs = calloc(1, sizeof(char *));
	char path[4096];
	int r;
	if (!libs)
		return kd_err(err, -ENOMEM, "out of memory");
	if ((r = ldd_libs(o->agent, &libs, err)) < 0 ||
	    (o->waiter && (r = ldd_libs(o->waiter, &libs, err)) < 0))
		return r;
	for (size_t i = 0; i < ELEMENTSOF(dl); i++) {
		if ((r = resolve_soname(dl[i], path, sizeof(path), err)) < 0)
			return r;
		if (!kd_strv_find(libs, path) && kd_strv_push(&libs, path) < 0)
			return kd_err(err, -ENOMEM, "out of memory");
		if ((r = ldd_libs(path, &libs, err)) < 0)
			return r;
		kd_debug("image: %s from %s", dl[i], path);
	}
	*ret = TAKE_PTR(libs);
	return 0;
}

static int add_entry(lentry **e, size_t *n, const char *path, const char *source, mode_t mode)
{
	for (size_t i = 0; i < *n; i++)
		if (strcmp((*e)[i].path, path) == 0)
			return 0;
	lentry *x = reallocarray(*e, *n + 1, sizeof(lentry));
	if (!x)
		return -ENOMEM;
	*e = x;
	x[*n] = (lentry){
		.path = strdup(path), .source = source ? strdup(source) : NULL, .mode = mode};
	if (!x[*n].path || (source && !x[*n].source))
		return -ENOMEM;
	(*n)++;
	return 0;
}

/* path and each of its parent directories. */
static int add_with_parents(lentry **e, size_t *n, const char *path, const char *source,
			    mode_t mode)
{
	_cleanup_free_ char *p = strdup(path);
	if (!p)
		return -ENOMEM;
	for (char *s = strchr(p, '/'); s; s = strchr(s + 1, '/')) {
		*s = '\0';
		int r = add_entry(e, n, p, NULL, 0755);
		*s = '/';
		if (r < 0)
			return r;
	}
	return add_entry(e, n, p, source, mode);
}

static void free_entries(lentry *e, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(e[i].path);
		free(e[i].source);
	}
	free(e);
}

static int make_layer(const char *layout, lentry *e, size_t n, bool gzip, int64_t mtime,
		      char digest[KD_OCI_DIGEST_MAX], uint64_t *size,
		      char diff_id[KD_OCI_DIGEST_MAX], kd_error *err)
{
	_cleanup_free_ char *tmp = NULL;
	int r;
	qsort(e, n, sizeof(lentry), cmp_lentry);
	if (asprintf(&tmp, "%s/blobs/sha256/.#kd.layer", layout) < 0)
		return kd_err(err, -ENOMEM, "out of memory");
	for (int pass = 0; pass < (gzip ? 2 : 1); pass++) {
		_cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd < 0)
			return kd_err_errno(err, negative_errno(), "create %s", tmp);
		r = write_layer(e, n, pass ? KD_COMPRESS_GZIP : KD_COMPRESS_NONE, mtime, fd, err);
		if (r < 0)
			return r;
		if (pass == 0) {
			uint64_t s;
			if ((r = store_blob(layout, tmp, diff_id, &s, err)) < 0)
				return r;
			memcpy(digest, diff_id, KD_OCI_DIGEST_MAX);
			*size = s;
			if (gzip) { /* the plain tar was only for its digest */
				_cleanup_free_ char *p = kd_oci_blob_path(layout, diff_id);
				if (p)
					unlink(p);
			}
		} else if ((r = store_blob(layout, tmp, digest, size, err)) < 0)
			return r;
	}
	return 0;
}

static struct json_object *descriptor(const char *mt, const char *digest, uint64_t size)
{
	struct json_object *d = json_object_new_object();
	json_object_object_add(d, "mediaType", json_object_new_string(mt));
	json_object_object_add(d, "digest", json_object_new_string(digest));
	json_object_object_add(d, "size", json_object_new_int64((int64_t)size));
	return d;
}

static int write_metadata(const kd_oci_opts *o, const char *l1, uint64_t l1size, const char *l1diff,
			  const char *l2, uint64_t l2size, const char *l2diff,
			  char man[KD_OCI_DIGEST_MAX], kd_error *err)
{
	char cfg[KD_OCI_DIGEST_MAX];
	uint64_t cfgsize, mansize;
	int r;

	/* created as RFC 3339 UTC from SOURCE_DATE_EPOCH. */
	char ts[32];
	time_t t = (time_t)o->created;
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);

	_cleanup_json_ struct json_object *config = json_object_new_object();
	struct json_object *c = json_object_new_object(), *ep = json_object_new_array(),
			   *env = json_object_new_array(), *labels = json_object_new_object(),
			   *rootfs = json_object_new_object(), *diffs = json_object_new_array();
	json_object_array_add(ep, json_object_new_string("/" KD_OCI_AGENT_PATH));
	json_object_array_add(env, json_object_new_string("PATH=/usr/bin:/bin"));
	json_object_object_add(labels, "org.opencontainers.image.version",
			       json_object_new_string(o->version));
	json_object_object_add(c, "Entrypoint", ep);
	json_object_object_add(c, "Env", env);
	json_object_object_add(c, "Labels", labels);
	json_object_array_add(diffs, json_object_new_string(l1diff));
	if (l2)
		json_object_array_add(diffs, json_object_new_string(l2diff));
	json_object_object_add(rootfs, "type", json_object_new_string("layers"));
	json_object_object_add(rootfs, "diff_ids", diffs);
	json_object_object_add(config, "architecture", json_object_new_string(kd_oci_arch()));
	json_object_object_add(config, "os", json_object_new_string("linux"));
	json_object_object_add(config, "created", json_object_new_string(ts));
	json_object_object_add(config, "config", c);
	json_object_object_add(config, "rootfs", rootfs);
	if ((r = store_json(o->layout, config, cfg, &cfgsize, err)) < 0)
		return r;

	_cleanup_json_ struct json_object *manifest = json_object_new_object();
	struct json_object *layers = json_object_new_array(), *ann = json_object_new_object();
	json_object_object_add(manifest, "schemaVersion", json_object_new_int(2));
	json_object_object_add(manifest, "mediaType", json_object_new_string(KD_OCI_MT_MANIFEST));
	json_object_object_add(manifest, "config", descriptor(KD_OCI_MT_CONFIG, cfg, cfgsize));
	json_object_array_add(layers, descriptor(KD_OCI_MT_LAYER_GZIP, l1, l1size));
	if (l2)
		json_object_array_add(layers, descriptor(KD_OCI_MT_LAYER, l2, l2size));
	json_object_object_add(manifest, "layers", layers);
	json_object_object_add(ann, "org.opencontainers.image.created", json_object_new_string(ts));
	json_object_object_add(ann, "org.opencontainers.image.version",
			       json_object_new_string(o->version));
	json_object_object_add(manifest, "annotations", ann);
	if ((r = store_json(o->layout, manifest, man, &mansize, err)) < 0)
		return r;

	_cleanup_json_ struct json_object *index = json_object_new_object();
	struct json_object *mans = json_object_new_array(),
			   *md = descriptor(KD_OCI_MT_MANIFEST, man, mansize),
			   *mann = json_object_new_object(), *plat = json_object_new_object();
	json_object_object_add(mann, "org.opencontainers.image.ref.name",
			       json_object_new_string(o->tag));
	json_object_object_add(md, "annotations", mann);
	json_object_object_add(plat, "architecture", json_object_new_string(kd_oci_arch()));
	json_object_object_add(plat, "os", json_object_new_string("linux"));
	json_object_object_add(md, "platform", plat);
	json_object_array_add(mans, md);
	json_object_object_add(index, "schemaVersion", json_object_new_int(2));
	json_object_object_add(index, "mediaType", json_object_new_string(KD_OCI_MT_INDEX));
	json_object_object_add(index, "manifests", mans);
	_cleanup_json_ struct json_object *layout = json_object_new_object();
	json_object_object_add(layout, "imageLayoutVersion", json_object_new_string("1.0.0"));
	_cleanup_close_ int lfd = kd_root_open(o->layout, err);
	if (lfd < 0)
		return lfd;
	if ((r = kd_json_write_atomic(lfd, "index.json", index, KD_JSON_CANONICAL, 0644, err)) <
		    0 ||
	    (r = kd_json_write_atomic(lfd, "oci-layout", layout, KD_JSON_CANONICAL, 0644, err)) < 0)
		return r;
	return 0;
}

int kd_oci_build(const kd_oci_opts *o, char ret_digest[KD_OCI_DIGEST_MAX], kd_error *err)
{
	_cleanup_free_ char *blobs = NULL, *created = NULL;
	_cleanup_strv_ char **libs = NULL;
	lentry *agent = NULL, *pay = NULL;
	size_t n_agent = 0, n_pay = 0;
	char l1[KD_OCI_DIGEST_MAX], l1diff[KD_OCI_DIGEST_MAX], l2[KD_OCI_DIGEST_MAX],
		l2diff[KD_OCI_DIGEST_MAX];
	uint64_t l1size, l2size = 0;
	int r;

	if (access(o->agent, R_OK) < 0)
		return kd_err_errno(err, negative_errno(), "image: agent %s", o->agent);
	if (o->payload && access(o->payload, R_OK) < 0)
		return kd_err_errno(err, negative_errno(), "image: payload %s", o->payload);
	if (o->waiter && access(o->waiter, R_OK) < 0)
		return kd_err_errno(err, negative_errno(), "image: waiter %s", o->waiter);
	if (o->ca_bundle && access(o->ca_bundle, R_OK) < 0)
		return kd_err_errno(err, negative_errno(), "image: CA bundle %s", o->ca_bundle);
	{
		_cleanup_close_ int root = -1;
		char *slash = strrchr(o->layout, '/');
		_cleanup_free_ char *parent =
			slash ? strndup(o->layout, (size_t)(slash - o->layout)) : strdup(".");
		if (!parent)
			return kd_err(err, -ENOMEM, "out of memory");
		root = kd_root_open(*parent ? parent : "/", err);
		if (root < 0)
			return kd_err_wrap(err, root, "image");
		if ((r = kd_remove_tree(root, slash ? slash + 1 : o->layout, err)) < 0)
			return r;
	}
	if (asprintf(&blobs, "%s/blobs/sha256", o->layout) < 0)
		return kd_err(err, -ENOMEM, "out of memory");
	{
		_cleanup_free_ char *b = NULL;
		if (asprintf(&b, "%s/blobs", o->layout) < 0)
			return kd_err(err, -ENOMEM, "out of memory");
		if (mkdir(o->layout, 0755) < 0 || mkdir(b, 0755) < 0 || mkdir(blobs, 0755) < 0)
			return kd_err_errno(err, negative_errno(), "image: mkdir %s", blobs);
	}

	r = 0;
	if (o->bundle_libs && (r = runtime_libs(o, &libs, err)) < 0)
		goto out;
	if ((r = add_with_parents(&agent, &n_agent, KD_OCI_AGENT_PATH, o->agent, 0755)) < 0 ||
	    (o->waiter &&
	     (r = add_with_parents(&agent, &n_agent, KD_OCI_WAITER_PATH, o->waiter, 0755)) < 0) ||
	    (o->ca_bundle &&
	     (r = add_with_parents(&agent, &n_agent, KD_OCI_CA_BUNDLE, o->ca_bundle, 0644)) < 0))
		goto nomem;
	/* Scratch space: downloads go to $TMPDIR or /var/tmp, validation to /tmp (the chart
	 * mounts volumes there; a plain `docker run` gets these). */
	if ((r = add_entry(&agent, &n_agent, "tmp", NULL, 01777)) < 0 ||
	    (r = add_entry(&agent, &n_agent, "var", NULL, 0755)) < 0 ||
	    (r = add_entry(&agent, &n_agent, "var/tmp", NULL, 01777)) < 0)
		goto nomem;
	for (char **l = libs; l && *l; l++)
		if ((r = add_with_parents(&agent, &n_agent, *l + 1, *l, 0755)) < 0)
			goto nomem;
	if (o->payload &&
	    (r = add_with_parents(&pay, &n_pay, KD_OCI_PAYLOAD_PATH, o->payload, 0644)) < 0)
		goto nomem;
	if ((r = make_layer(o->layout, agent, n_agent, true, o->created, l1, &l1size, l1diff,
			    err)) < 0 ||
	    (o->payload && (r = make_layer(o->layout, pay, n_pay, false, o->created, l2, &l2size,
					   l2diff, err)) < 0))
		goto out;

	if ((r = write_metadata(o, l1, l1size, l1diff, o->payload ? l2 : NULL, l2size, l2diff,
				ret_digest, err)) < 0)
		goto out;
	r = 0;
	goto out;
nomem:
	r = kd_err(err, -ENOMEM, "out of memory");
out:
	free_entries(agent, n_agent);
	free_entries(pay, n_pay);
	return r < 0 ? kd_err_wrap(err, r, "image") : 0;
}

/* ---- a payload as an artifact: one layer per frame range (lib/payload kd_payload_blobs) ---- */

/* An empty layout directory (replacing one that exists). */
static int fresh_layout(const char *layout, kd_error *err)
{
	_cleanup_close_ int root = -1;
	const char *slash = strrchr(layout, '/');
	_cleanup_free_ char *parent =
				    slash ? strndup(layout, (size_t)(slash - layout)) : strdup("."),
			    *b = NULL, *blobs = NULL;
	int r;
	if (!parent)
		return kd_err(err, -ENOMEM, "out of memory");
	for (char *q = parent + 1;; q++) /* mkdir -p */
		if (*q == '/' || !*q) {
			char c = *q;
			*q = '\0';
			if (*parent && mkdir(parent, 0755) < 0 && errno != EEXIST)
				return kd_err_errno(err, negative_errno(), "mkdir %s", parent);
			if (!(*q = c))
				break;
		}
	root = kd_root_open(*parent ? parent : "/", err);
	if (root < 0)
		return root;
	if ((r = kd_remove_tree(root, slash ? slash + 1 : layout, err)) < 0)
		return r;
	if (asprintf(&b, "%s/blobs", layout) < 0 || asprintf(&blobs, "%s/blobs/sha256", layout) < 0)
		return kd_err(err, -ENOMEM, "out of memory");
	if (mkdir(layout, 0755) < 0 || mkdir(b, 0755) < 0 || mkdir(blobs, 0755) < 0)
		return kd_err_errno(err, negative_errno(), "mkdir %s", blobs);
	return 0;
}

/* Bytes [off, off + size) of fd as a blob of the layout. */
static int store_range(const char *layout, int fd, uint64_t off, uint64_t size,
		       char ret[KD_OCI_DIGEST_MAX], kd_error *err)
{
	_cleanup_free_ char *tmp = NULL;
	uint64_t got;
	if (asprintf(&tmp, "%s/blobs/sha256/.#kd.range", layout) < 0)
		return kd_err(err, -ENOMEM, "out of memory");
	_cleanup_close_ int out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (out < 0)
		return kd_err_errno(err, negative_errno(), "create %s", tmp);
	for (loff_t in_off = (loff_t)off, left = (loff_t)size; left > 0;) {
		ssize_t n = copy_file_range(fd, &in_off, out, NULL, (size_t)left, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return kd_err_errno(err, n < 0 ? negative_errno() : -EIO, "copy to %s",
					    tmp);
		left -= n;
	}
	return store_blob(layout, tmp, ret, &got, err);
}

static int write_index(const char *layout, const char *mt, const char *man, uint64_t mansize,
		       const char *tag, kd_error *err)
{
	_cleanup_json_ struct json_object *index = json_object_new_object(),
					  *lo = json_object_new_object();
	struct json_object *mans = json_object_new_array(), *md = descriptor(mt, man, mansize),
			   *ann = json_object_new_object();
	json_object_object_add(ann, "org.opencontainers.image.ref.name",
			       json_object_new_string(tag));
	json_object_object_add(md, "annotations", ann);
	json_object_array_add(mans, md);
	json_object_object_add(index, "schemaVersion", json_object_new_int(2));
	json_object_object_add(index, "mediaType", json_object_new_string(KD_OCI_MT_INDEX));
	json_object_object_add(index, "manifests", mans);
	json_object_object_add(lo, "imageLayoutVersion", json_object_new_string("1.0.0"));
	_cleanup_close_ int lfd = kd_root_open(layout, err);
	int r;
	if (lfd < 0)
		return lfd;
	if ((r = kd_json_write_atomic(lfd, "index.json", index, KD_JSON_CANONICAL, 0644, err)) <
		    0 ||
	    (r = kd_json_write_atomic(lfd, "oci-layout", lo, KD_JSON_CANONICAL, 0644, err)) < 0)
		return r;
	return 0;
}

/* The empty config of an artifact ("{}", application/vnd.oci.empty.v1+json). */
static int store_empty_config(const char *layout, char ret[KD_OCI_DIGEST_MAX], uint64_t *size,
			      kd_error *err)
{
	_cleanup_json_ struct json_object *empty = json_object_new_object();
	return store_json(layout, empty, ret, size, err);
}

static void created_ts(int64_t created, char ts[32])
{
	time_t t = (time_t)created;
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(ts, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int kd_oci_build_payload(const kd_oci_payload_opts *o, char ret_digest[KD_OCI_DIGEST_MAX],
			 kd_error *err)
{
	_cleanup_close_ int fd = open(o->payload, O_RDONLY | O_CLOEXEC);
	_cleanup_free_ kd_payload_blob *blobs = NULL;
	_cleanup_json_ struct json_object *manifest = NULL;
	kd_payload *p = NULL;
	size_t n = 0;
	char cfg[KD_OCI_DIGEST_MAX], man[KD_OCI_DIGEST_MAX], ts[32];
	uint64_t cfgsize, mansize;
	int r;

	if (fd < 0)
		return kd_err_errno(err, negative_errno(), "payload artifact: open %s", o->payload);
	if ((r = kd_payload_open(fd, o->payload, NULL, &p, err)) < 0)
		return kd_err_wrap(err, r, "payload artifact");
	const kd_manifest *m = kd_payload_manifest(p);
	if ((r = kd_payload_blobs(p, &blobs, &n, err)) < 0 ||
	    (r = kd_payload_check_components(p, NULL, err)) < 0 ||
	    (r = fresh_layout(o->layout, err)) < 0 ||
	    (r = store_empty_config(o->layout, cfg, &cfgsize, err)) < 0)
		goto out;
	created_ts(o->created, ts);
	manifest = json_object_new_object();
	struct json_object *layers = json_object_new_array(), *ann = json_object_new_object();
	for (size_t i = 0; i < n; i++) {
		char d[KD_OCI_DIGEST_MAX];
		if ((r = store_range(o->layout, fd, blobs[i].offset, blobs[i].size, d, err)) < 0)
			goto out;
		const char *mt = i == 0	      ? KD_PAYLOAD_OCI_MT_MANIFEST
				 : i + 1 == n ? KD_PAYLOAD_OCI_MT_TAIL
					      : KD_PAYLOAD_OCI_MT_COMPONENT;
		struct json_object *desc = descriptor(mt, d, blobs[i].size);
		if (i > 0 && i + 1 < n) {
			struct json_object *la = json_object_new_object();
			json_object_object_add(la, KD_PAYLOAD_OCI_ANN_COMPONENT,
					       json_object_new_string(m->components[i - 1].name));
			json_object_object_add(desc, "annotations", la);
		}
		json_object_array_add(layers, desc);
	}
	json_object_object_add(manifest, "schemaVersion", json_object_new_int(2));
	json_object_object_add(manifest, "mediaType", json_object_new_string(KD_OCI_MT_MANIFEST));
	json_object_object_add(manifest, "artifactType",
			       json_object_new_string(KD_PAYLOAD_OCI_ARTIFACT_TYPE));
	json_object_object_add(manifest, "config", descriptor(KD_OCI_MT_EMPTY, cfg, cfgsize));
	json_object_object_add(manifest, "layers", layers);
	json_object_object_add(ann, "org.opencontainers.image.created", json_object_new_string(ts));
	json_object_object_add(ann, "org.opencontainers.image.version",
			       json_object_new_string(m->version));
	json_object_object_add(ann, KD_PAYLOAD_OCI_ANN_SHA256,
			       json_object_new_string(kd_payload_digest(p)));
	json_object_object_add(manifest, "annotations", ann);
	if ((r = store_json(o->layout, manifest, man, &mansize, err)) < 0 ||
	    (r = write_index(o->layout, KD_OCI_MT_MANIFEST, man, mansize, o->tag, err)) < 0)
		goto out;
	memcpy(ret_digest, man, KD_OCI_DIGEST_MAX);
	r = 0;
out:
	kd_payload_free(p);
	return r < 0 ? kd_err_wrap(err, r, "payload artifact") : 0;
}

int kd_oci_build_signature(const char *layout, const char *subject, const char *sign_key,
			   const char *tag, kd_error *err)
{
	_cleanup_free_ uint8_t *sig = NULL;
	_cleanup_free_ char *msg = NULL, *tmp = NULL;
	size_t siglen;
	char cfg[KD_OCI_DIGEST_MAX], layer[KD_OCI_DIGEST_MAX], man[KD_OCI_DIGEST_MAX];
	uint64_t cfgsize, lsize, mansize;
	int r;

	if (asprintf(&msg, "%s%s", KD_PAYLOAD_OCI_SIG_CONTEXT, subject) < 0)
		return kd_err(err, -ENOMEM, "out of memory");
	if ((r = kd_sign_buf(sign_key, msg, strlen(msg), &sig, &siglen, err)) < 0 ||
	    (r = fresh_layout(layout, err)) < 0 ||
	    (r = store_empty_config(layout, cfg, &cfgsize, err)) < 0)
		return kd_err_wrap(err, r, "signature of %s", subject);
	if (asprintf(&tmp, "%s/blobs/sha256/.#kd.sig", layout) < 0)
		return kd_err(err, -ENOMEM, "out of memory");
	{
		_cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd < 0 || write(fd, sig, siglen) != (ssize_t)siglen)
			return kd_err_errno(err, negative_errno(), "write %s", tmp);
	}
	if ((r = store_blob(layout, tmp, layer, &lsize, err)) < 0)
		return r;
	_cleanup_json_ struct json_object *manifest = json_object_new_object();
	struct json_object *layers = json_object_new_array(), *ann = json_object_new_object();
	json_object_array_add(layers, descriptor(KD_PAYLOAD_OCI_SIG_TYPE, layer, lsize));
	json_object_object_add(manifest, "schemaVersion", json_object_new_int(2));
	json_object_object_add(manifest, "mediaType", json_object_new_string(KD_OCI_MT_MANIFEST));
	json_object_object_add(manifest, "artifactType",
			       json_object_new_string(KD_PAYLOAD_OCI_SIG_TYPE));
	json_object_object_add(manifest, "config", descriptor(KD_OCI_MT_EMPTY, cfg, cfgsize));
	json_object_object_add(manifest, "layers", layers);
	json_object_object_add(ann, "io.katacontainers.deploy.signature.subject",
			       json_object_new_string(subject));
	json_object_object_add(manifest, "annotations", ann);
	if ((r = store_json(layout, manifest, man, &mansize, err)) < 0 ||
	    (r = write_index(layout, KD_OCI_MT_MANIFEST, man, mansize, tag, err)) < 0)
		return r;
	return 0;
}

void kd_oci_image_free(kd_oci_image *img)
{
	if (!img)
		return;
	for (size_t i = 0; i < img->n_blobs; i++)
		free(img->blobs[i].media_type);
	free(img->blobs);
	free(img->manifest);
	free(img);
}

static int read_whole(const char *path, char **ret, size_t *ret_len, kd_error *err)
{
	_cleanup_close_ int root = kd_root_open("/", err);
	if (root < 0)
		return root;
	return kd_read_file(root, path, KD_OCI_MAX_JSON, ret, ret_len, err);
}

static int check_blob(const char *layout, const char *digest, uint64_t size, kd_error *err)
{
	_cleanup_free_ char *p = kd_oci_blob_path(layout, digest);
	if (!p)
		return kd_err(err, -EINVAL, "bad digest '%s'", digest);
	_cleanup_close_ int fd = open(p, O_RDONLY | O_CLOEXEC);
	uint8_t d[KD_SHA256_LEN];
	uint64_t got;
	char hex[65];
	if (fd < 0)
		return kd_err_errno(err, negative_errno(), "blob %s", digest);
	int r = kd_sha256_fd(fd, d, &got, err);
	if (r < 0)
		return r;
	kd_hex(d, sizeof(d), hex);
	if (strcmp(hex, digest + 7) != 0 || got != size)
		return kd_err(err, -EBADMSG, "blob %s: content has sha256:%s and %llu bytes",
			      digest, hex, (unsigned long long)got);
	return 0;
}

static int read_descriptor(struct json_object *d, const char *where, kd_oci_blob *b, kd_error *err)
{
	const char *mt, *dg;
	int64_t size;
	int r;
	if ((r = kd_json_get_string(d, where, "mediaType", true, &mt, err)) < 0 ||
	    (r = kd_json_get_string(d, where, "digest", true, &dg, err)) < 0 ||
	    (r = kd_json_get_int64(d, where, "size", true, &size, err)) < 0)
		return r;
	if (strncmp(dg, "sha256:", 7) != 0 || !kd_sha256_hex_valid(dg + 7) || size < 0)
		return kd_err(err, -EINVAL, "%s: bad digest or size", where);
	snprintf(b->digest, sizeof(b->digest), "%s", dg);
	b->size = (uint64_t)size;
	b->media_type = strdup(mt);
	return b->media_type ? 0 : kd_err(err, -ENOMEM, "out of memory");
}

int kd_oci_read(const char *layout, kd_oci_image **ret, kd_error *err)
{
	_cleanup_oci_image_ kd_oci_image *img = calloc(1, sizeof(*img));
	_cleanup_free_ char *ipath = NULL, *itext = NULL, *mpath = NULL;
	_cleanup_json_ struct json_object *index = NULL, *man = NULL;
	struct json_object *mans, *layers, *cfg;
	size_t len;
	int r;

	if (!img || asprintf(&ipath, "%s/index.json", layout) < 0)
		return kd_err(err, -ENOMEM, "out of memory");
	if ((r = read_whole(ipath, &itext, &len, err)) < 0 ||
	    (r = kd_json_parse(itext, len, ipath, &index, err)) < 0 ||
	    (r = kd_json_get_array(index, NULL, "manifests", true, &mans, err)) < 0)
		return kd_err_wrap(err, r, "layout %s", layout);
	if (json_object_array_length(mans) != 1)
		return kd_err(err, -EINVAL, "layout %s: index.json must list exactly one manifest",
			      layout);
	kd_oci_blob md = {0};
	r = read_descriptor(json_object_array_get_idx(mans, 0), "manifests[0]", &md, err);
	free(md.media_type);
	if (r < 0 || (r = check_blob(layout, md.digest, md.size, err)) < 0)
		return kd_err_wrap(err, r, "layout %s", layout);
	memcpy(img->manifest_digest, md.digest, sizeof(md.digest));
	if (!(mpath = kd_oci_blob_path(layout, md.digest)))
		return kd_err(err, -ENOMEM, "out of memory");
	if ((r = read_whole(mpath, &img->manifest, &img->manifest_len, err)) < 0 ||
	    (r = kd_json_parse(img->manifest, img->manifest_len, "manifest", &man, err)) < 0 ||
	    (r = kd_json_get_object(man, NULL, "config", true, &cfg, err)) < 0 ||
	    (r = kd_json_get_array(man, NULL, "layers", true, &layers, err)) < 0)
		return kd_err_wrap(err, r, "layout %s", layout);
	size_t n = json_object_array_length(layers);
	img->blobs = calloc(n + 1, sizeof(kd_oci_blob));
	if (!img->blobs)
		return kd_err(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i <= n; i++) {
		char where[32];
		snprintf(where, sizeof(where), i ? "layers[%zu]" : "config", i - 1);
		struct json_object *d = i ? json_object_array_get_idx(layers, i - 1) : cfg;
		img->n_blobs = i + 1;
		if ((r = read_descriptor(d, where, &img->blobs[i], err)) < 0 ||
		    (r = check_blob(layout, img->blobs[i].digest, img->blobs[i].size, err)) < 0)
			return kd_err_wrap(err, r, "layout %s", layout);
	}
	*ret = TAKE_PTR(img);
	return 0;
}
