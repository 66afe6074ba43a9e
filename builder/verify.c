/* Rebuild-and-compare. The scratch cache shares the verified source store with the real one
 * (sources are named by their sha256 and checked before use), but has no components: every
 * component really runs again, in a different directory. */
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "digest.h"
#include "fsroot.h"
#include "log.h"
#include "strv.h"
#include "tarball.h"
#include "verify.h"

typedef struct tar_side {
	kd_tar_reader *r;
	int fd;
	kd_tar_entry e;
	char *path, *link;
	char sha[65];
} tar_side;

static int side_next(tar_side *s, kd_error *err)
{
	free(s->path);
	free(s->link);
	s->path = s->link = NULL;
	int r = kd_tar_next(s->r, &s->e, err);
	if (r <= 0)
		return r;
	s->path = strdup(s->e.path);
	s->link = s->e.link ? strdup(s->e.link) : NULL;
	if (!s->path || (s->e.link && !s->link))
		return kd_err(err, -ENOMEM, "out of memory");
	kd_sha256 h = {0};
	uint8_t d[KD_SHA256_LEN];
	const void *buf;
	size_t n;
	if ((r = kd_sha256_init(&h, err)) < 0)
		return r;
	while ((r = kd_tar_read_block(s->r, &buf, &n, err)) > 0)
		kd_sha256_update(&h, buf, n);
	if (r < 0) {
		kd_sha256_free(&h);
		return r;
	}
	if ((r = kd_sha256_final(&h, d, err)) < 0)
		return r;
	kd_hex(d, sizeof(d), s->sha);
	return 1;
}

int kd_tar_compare(const char *a, const char *b, kd_error *err)
{
	tar_side s[2] = {{.fd = -1}, {.fd = -1}};
	const char *names[2] = {a, b};
	int r = 0;

	for (int i = 0; i < 2 && r >= 0; i++) {
		s[i].fd = open(names[i], O_RDONLY | O_CLOEXEC);
		if (s[i].fd < 0)
			r = kd_err_errno(err, negative_errno(), "open %s", names[i]);
		else
			r = kd_tar_open(s[i].fd, NULL, &s[i].r, err);
	}
	for (unsigned idx = 0; r >= 0; idx++) {
		int ra = side_next(&s[0], err);
		int rb = ra < 0 ? ra : side_next(&s[1], err);
		if (ra < 0 || rb < 0) {
			r = ra < 0 ? ra : rb;
			break;
		}
		if (ra == 0 && rb == 0) {
			r = 0;
			break;
		}
		const char *what = NULL;
		if (ra == 0 || rb == 0)
			what = "present in only one archive";
		else if (strcmp(s[0].path, s[1].path) != 0)
			what = "path";
		else if (s[0].e.type != s[1].e.type)
			what = "type";
		else if (s[0].e.mode != s[1].e.mode)
			what = "mode";
		else if (s[0].e.size != s[1].e.size)
			what = "size";
		else if (!!s[0].link != !!s[1].link || (s[0].link && strcmp(s[0].link, s[1].link)))
			what = "link target";
		else if (strcmp(s[0].sha, s[1].sha) != 0)
			what = "content";
		if (what) {
			r = kd_err(err, -EBADMSG,
				   "first differing entry #%u '%s' vs '%s': %s differs (%s vs %s)",
				   idx + 1, ra ? s[0].path : "(end)", rb ? s[1].path : "(end)",
				   what, ra ? s[0].sha : "-", rb ? s[1].sha : "-");
			break;
		}
	}
	for (int i = 0; i < 2; i++) {
		free(s[i].path);
		free(s[i].link);
		if (s[i].r)
			kd_tar_reader_free(s[i].r);
		if (s[i].fd >= 0)
			close(s[i].fd);
	}
	return r;
}

static int file_sha(const char *path, char hex[65], kd_error *err)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	uint8_t d[KD_SHA256_LEN];
	if (fd < 0)
		return kd_err_errno(err, negative_errno(), "open %s", path);
	int r = kd_sha256_fd(fd, d, NULL, err);
	if (r >= 0)
		kd_hex(d, sizeof(d), hex);
	return r;
}

/* Compare two files; count and describe a difference (logged, not fatal). */
static int compare(const char *ref, const char *got, kd_verify_report *rep, kd_error *err)
{
	char a[65], b[65];
	int r;
	if ((r = file_sha(ref, a, err)) < 0 || (r = file_sha(got, b, err)) < 0)
		return r;
	rep->compared++;
	if (strcmp(a, b) == 0) {
		kd_info("identical: %s (sha256 %s)", ref, a);
		return 0;
	}
	rep->differing++;
	kd_error e = {0};
	r = kd_tar_compare(ref, got, &e);
	if (r == 0)
		kd_error_log("DIFFERS: %s (sha256 %s, rebuilt %s): every entry is equal; the "
			     "compressed stream differs",
			     ref, a, b);
	else
		kd_error_log("DIFFERS: %s (sha256 %s, rebuilt %s): %s", ref, a, b, kd_err_msg(&e));
	return 0;
}

int kd_verify(const kd_build_opts *o, const kd_shims *shims, char **names, const char *payload,
	      const char *keep_dir, kd_verify_report *ret, kd_error *err)
{
	_cleanup_free_ char *git = NULL, *git_link = NULL;
	_cleanup_free_ char *scratch = NULL, *src_link = NULL, *deb_link = NULL, *src = NULL,
			    *debs = NULL, *out = NULL, *pout = NULL;
	_cleanup_(kd_cache_freep) kd_cache *cache = NULL;
	kd_verify_report rep = {0};
	char **list = names ? names : shims->payload;
	int r;

	if (keep_dir)
		scratch = strdup(keep_dir);
	else if (asprintf(&scratch, "%s/work/verify.XXXXXX", kd_cache_dir(o->cache)) >= 0 &&
		 !mkdtemp(scratch))
		return kd_err_errno(err, negative_errno(), "verify: mkdtemp");
	if (!scratch)
		return kd_err(err, -ENOMEM, "out of memory");
	if (mkdir(scratch, 0755) < 0 && errno != EEXIST)
		return kd_err_errno(err, negative_errno(), "verify: mkdir %s", scratch);
	if (asprintf(&src, "%s/sources", kd_cache_dir(o->cache)) < 0 ||
	    asprintf(&debs, "%s/debs", kd_cache_dir(o->cache)) < 0 ||
	    asprintf(&src_link, "%s/cache/sources", scratch) < 0 ||
	    asprintf(&deb_link, "%s/cache/debs", scratch) < 0 ||
	    asprintf(&git, "%s/git", kd_cache_dir(o->cache)) < 0 ||
	    asprintf(&git_link, "%s/cache/git", scratch) < 0 ||
	    asprintf(&out, "%s/out", scratch) < 0 ||
	    asprintf(&pout, "%s/out/payload.tar.zst", scratch) < 0)
		return kd_err(err, -ENOMEM, "out of memory");
	{
		_cleanup_free_ char *c = NULL;
		if (asprintf(&c, "%s/cache", scratch) < 0)
			return kd_err(err, -ENOMEM, "out of memory");
		if ((mkdir(c, 0755) < 0 && errno != EEXIST) ||
		    (symlink(src, src_link) < 0 && errno != EEXIST) ||
		    (symlink(debs, deb_link) < 0 && errno != EEXIST) ||
		    (symlink(git, git_link) < 0 && errno != EEXIST))
			return kd_err_errno(err, negative_errno(), "verify: scratch cache");
		if ((r = kd_cache_open(c, &cache, err)) < 0)
			return r;
	}
	kd_build_opts vo = *o;
	vo.cache = cache;
	vo.out_dir = out;
	vo.force = true;
	for (char **n = list; *n; n++) {
		_cleanup_free_ char *ref = NULL, *got = NULL;
		kd_build_result br;
		if ((r = kd_component_build(&vo, *n, &br, err)) < 0)
			return kd_err_wrap(err, r, "verify");
		if (asprintf(&ref, "%s/kata-static-%s.tar.zst", o->out_dir, *n) < 0 ||
		    asprintf(&got, "%s/kata-static-%s.tar.zst", out, *n) < 0)
			return kd_err(err, -ENOMEM, "out of memory");
		if ((r = compare(ref, got, &rep, err)) < 0)
			return kd_err_wrap(err, r, "verify");
	}
	if (payload) {
		kd_payload_build_opts po = {.output = pout, .components = names};
		char sha[65];
		vo.force = false; /* the components were just rebuilt into this scratch cache */
		if ((r = kd_build_payload(&vo, shims, &po, sha, err)) < 0 ||
		    (r = compare(payload, pout, &rep, err)) < 0)
			return kd_err_wrap(err, r, "verify");
	}
	if (!keep_dir) {
		_cleanup_close_ int cfd = kd_root_open(kd_cache_dir(o->cache), NULL);
		if (cfd >= 0)
			kd_remove_tree(cfd, scratch + strlen(kd_cache_dir(o->cache)) + 1, NULL);
	}
	*ret = rep;
	if (rep.differing)
		return kd_err(err, -EBADMSG, "verify: %u of %u outputs differ (see above)",
			      rep.differing, rep.compared);
	return 0;
}
