/* kd_payload_pack: walk SRCDIR/opt/kata without following symlinks, normalise modes, hash,
 * assign components (spec or inferred), compress each component into a zstd frame of its own,
 * build and self-check the manifest (which names those frames), write the deterministic
 * format 2 tar.zst (manifest frame, component frames, end frame, index) atomically and sign
 * it. */
#include <dirent.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "digest.h"
#include "fsroot.h"
#include "json.h"
#include "payload-internal.h"
#include "sign.h"
#include "tarball.h"
#include "yaml.h"

#define SHIM_CONFIG_DIR "share/defaults/kata-containers/"
#define SHIM_CONFIG_PREFIX "configuration-"

DEFINE_CLEANUP(DIR *, closedir)

typedef struct pack_entry {
	char *path;
	kd_file_type type;
	mode_t mode;
	uint64_t size;
	char *target;
	ssize_t component;
	uint8_t sha256[KD_SHA256_LEN];
} pack_entry;

typedef struct pack_state {
	pack_entry *e;
	size_t n, cap;
} pack_state;

static void pack_state_done(pack_state *s)
{
	for (size_t i = 0; i < s->n; i++) {
		free(s->e[i].path);
		free(s->e[i].target);
	}
	free(s->e);
}

static int pack_walk(pack_state *s, int dfd, const char *rel, kd_error *err)
{
	_cleanup_(closedirp) DIR *d = NULL;
	struct dirent *de;
	int r, fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0 || !(d = fdopendir(fd))) {
		r = negative_errno();
		if (fd >= 0)
			close(fd);
		return kd_err_errno(err, r, "open directory '%s%s'", PREFIX, rel);
	}
	while ((errno = 0, de = readdir(d))) {
		struct stat st;
		char path[KD_PATH_MAX + 1];
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if ((size_t)snprintf(path, sizeof(path), "%s%s%s", rel, *rel ? "/" : "",
				     de->d_name) >= sizeof(path) - PREFIX_LEN)
			return kd_err(err, -ENAMETOOLONG, "'%s%s/%s': path too long", PREFIX, rel,
				      de->d_name);
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			return kd_err_errno(err, negative_errno(), "stat '%s%s'", PREFIX, path);
		if (s->n == s->cap) {
			size_t cap = s->cap ? s->cap * 2 : 256;
			pack_entry *e = reallocarray(s->e, cap, sizeof(*e));
			if (!e)
				return kd_err(err, -ENOMEM, "out of memory");
			s->e = e;
			s->cap = cap;
		}
		pack_entry *e = &s->e[s->n];
		*e = (pack_entry){.component = -1};
		e->path = strdup(path);
		if (!e->path)
			return kd_err(err, -ENOMEM, "out of memory");
		s->n++;
		if (S_ISDIR(st.st_mode)) {
			e->type = KD_FILE_DIR;
			e->mode = 0755;
			_cleanup_close_ int sub =
				openat(dirfd(d), de->d_name,
				       O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub < 0)
				return kd_err_errno(err, negative_errno(), "open '%s%s'", PREFIX,
						    path);
			if ((r = pack_walk(s, sub, path, err)) < 0)
				return r;
		} else if (S_ISREG(st.st_mode)) {
			e->type = KD_FILE_REG;
			e->mode = (st.st_mode & 0111) ? 0755 : 0644;
			e->size = (uint64_t)st.st_size;
		} else if (S_ISLNK(st.st_mode)) {
			char buf[KD_PATH_MAX + 1];
			ssize_t n = readlinkat(dirfd(d), de->d_name, buf, sizeof(buf));
			if (n < 0)
				return kd_err_errno(err, negative_errno(), "readlink '%s%s'",
						    PREFIX, path);
			if ((size_t)n >= sizeof(buf))
				return kd_err(err, -ENAMETOOLONG, "'%s%s': link target too long",
					      PREFIX, path);
			buf[n] = '\0';
			e->type = KD_FILE_SYMLINK;
			e->mode = 0777;
			e->target = strdup(buf);
			if (!e->target)
				return kd_err(err, -ENOMEM, "out of memory");
		} else {
			return kd_err(err, -EPERM,
				      "'%s%s': only files, directories and symlinks can be packed",
				      PREFIX, path);
		}
	}
	if (errno)
		return kd_err_errno(err, negative_errno(), "read directory '%s%s'", PREFIX, rel);
	return 0;
}

static int cmp_pack_entry(const void *a, const void *b)
{
	return strcmp(((const pack_entry *)a)->path, ((const pack_entry *)b)->path);
}

/* A spec path "dir/" claims the directory and everything below; any other path claims
 * exactly that entry. */
static bool spec_path_matches(const char *spec, const char *path)
{
	size_t n = strlen(spec);
	if (n > 1 && spec[n - 1] == '/')
		return strncmp(path, spec, n - 1) == 0 &&
		       (path[n - 1] == '\0' || path[n - 1] == '/');
	return strcmp(spec, path) == 0;
}

static int assign_components(pack_state *s, kd_manifest *m, struct json_object *comps,
			     kd_error *err)
{
	char where[KD_JSON_PATH_MAX], pwhere[KD_JSON_PATH_MAX];
	int r;

	for (size_t c = 0; c < m->n_components; c++) {
		struct json_object *paths;
		kd_json_path_index(where, sizeof(where), "components", c);
		r = kd_json_get_array(json_object_array_get_idx(comps, c), where, "paths", true,
				      &paths, err);
		if (r < 0)
			return r;
		for (size_t j = 0; j < json_object_array_length(paths); j++) {
			const char *p;
			bool used = false;
			/* "components[c].paths[j]": no snprintf from pwhere into itself. */
			char pkey[KD_JSON_PATH_MAX];
			kd_json_path_key(pkey, sizeof(pkey), where, "paths");
			kd_json_path_index(pwhere, sizeof(pwhere), pkey, j);
			if ((r = kd_json_as_string(json_object_array_get_idx(paths, j), pwhere, &p,
						   err)) < 0)
				return r;
			for (size_t i = 0; i < s->n; i++) {
				pack_entry *e = &s->e[i];
				if (!spec_path_matches(p, e->path))
					continue;
				used = true;
				if (e->component >= 0 && (size_t)e->component != c)
					return kd_err(
						err, -EINVAL,
						"spec: '%s%s' belongs to components '%s' and '%s'",
						PREFIX, e->path, m->components[e->component].name,
						m->components[c].name);
				e->component = (ssize_t)c;
			}
			if (!used)
				return kd_err(err, -ENOENT,
					      "spec: %s: '%s' matches nothing under %s", where, p,
					      PREFIX);
		}
	}
	/* Unclaimed directories go with their first descendant; anything else is an error. */
	for (size_t i = s->n; i-- > 0;) {
		pack_entry *e = &s->e[i];
		if (e->component >= 0)
			continue;
		size_t n = strlen(e->path);
		if (e->type == KD_FILE_DIR && i + 1 < s->n &&
		    strncmp(s->e[i + 1].path, e->path, n) == 0 && s->e[i + 1].path[n] == '/') {
			e->component = s->e[i + 1].component;
			continue;
		}
		return kd_err(err, -EINVAL, "spec: '%s%s' belongs to no component", PREFIX,
			      e->path);
	}
	return 0;
}

static int spec_shims(kd_manifest *m, struct json_object *spec, kd_error *err)
{
	struct json_object *shims = NULL;
	int r = kd_json_get_object(spec, "spec", "shims", false, &shims, err);

	if (r < 0)
		return r;
	if (!shims) {
		m->shims = calloc(1, sizeof(kd_shim));
		return m->shims ? 0 : kd_err(err, -ENOMEM, "out of memory");
	}
	return kd_manifest_parse_shims(m, shims, err);
}

static int infer_shims(kd_manifest *m, const pack_state *s, kd_error *err)
{
	size_t dl = strlen(SHIM_CONFIG_DIR), pl = strlen(SHIM_CONFIG_PREFIX);

	m->shims = calloc(s->n ? s->n : 1, sizeof(kd_shim));
	if (!m->shims)
		return kd_err(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < s->n; i++) {
		const char *p = s->e[i].path;
		if (s->e[i].type == KD_FILE_DIR || strncmp(p, SHIM_CONFIG_DIR, dl) != 0 ||
		    strncmp(p + dl, SHIM_CONFIG_PREFIX, pl) != 0)
			continue;
		p += dl + pl;
		size_t n = strlen(p);
		if (n <= 5 || strcmp(p + n - 5, ".toml") != 0 || strchr(p, '/'))
			continue;
		kd_shim *sh = &m->shims[m->n_shims];
		sh->name = strndup(p, n - 5);
		sh->components = calloc(1, sizeof(char *));
		if (!sh->name || !sh->components) {
			free(sh->name);
			free(sh->components);
			return kd_err(err, -ENOMEM, "out of memory");
		}
		m->n_shims++;
		sh->components[0] = strdup(m->components[0].name);
		if (!sh->components[sh->n_components++])
			return kd_err(err, -ENOMEM, "out of memory");
	}
	qsort(m->shims, m->n_shims, sizeof(kd_shim), kd_manifest_cmp_shim);
	return 0;
}

static int hash_file(int katafd, const char *path, uint64_t size, uint8_t out[KD_SHA256_LEN],
		     kd_error *err)
{
	uint64_t got;
	_cleanup_close_ int fd = kd_openat(katafd, path, O_RDONLY, 0, KD_NOFOLLOW, err);
	int r;

	if (fd < 0)
		return fd;
	r = kd_sha256_fd(fd, out, &got, err);
	if (r < 0)
		return kd_err_wrap(err, r, "hash '%s%s'", PREFIX, path);
	if (got != size)
		return kd_err(err, -EAGAIN, "'%s%s' changed while packing", PREFIX, path);
	return 0;
}

static int cmp_dedup(const void *a, const void *b, void *userdata)
{
	const pack_entry *e = userdata;
	const pack_entry *x = &e[*(const size_t *)a], *y = &e[*(const size_t *)b];
	int c = memcmp(x->sha256, y->sha256, sizeof(x->sha256));
	if (c)
		return c;
	if (x->component != y->component)
		return x->component < y->component ? -1 : 1;
	if (x->mode != y->mode)
		return x->mode < y->mode ? -1 : 1;
	return strcmp(x->path, y->path);
}

/* Identical non-empty files of one component and mode are stored once; the later paths (in
 * path order) become hardlinks to the first. */
static int dedup_files(pack_state *s, kd_error *err)
{
	_cleanup_free_ size_t *idx = calloc(s->n ? s->n : 1, sizeof(size_t));
	size_t k = 0;

	if (!idx)
		return kd_err(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < s->n; i++)
		if (s->e[i].type == KD_FILE_REG && s->e[i].size > 0)
			idx[k++] = i;
	qsort_r(idx, k, sizeof(size_t), cmp_dedup, s->e);
	for (size_t i = 1; i < k; i++) {
		pack_entry *first = NULL;
		for (size_t j = i; j-- > 0;) {
			pack_entry *p = &s->e[idx[j]];
			if (p->type == KD_FILE_REG) {
				first = p;
				break;
			}
		}
		pack_entry *e = &s->e[idx[i]];
		if (!first || memcmp(first->sha256, e->sha256, sizeof(e->sha256)) != 0 ||
		    first->component != e->component || first->mode != e->mode)
			continue;
		e->type = KD_FILE_HARDLINK;
		e->target = strdup(first->path);
		if (!e->target)
			return kd_err(err, -ENOMEM, "out of memory");
	}
	return 0;
}

static int build_manifest(pack_state *s, const kd_pack_opts *o, struct json_object *spec,
			  kd_manifest **ret, kd_error *err)
{
	_cleanup_(kd_manifest_freep) kd_manifest *m = calloc(1, sizeof(*m));
	const char *version = o->version, *arch = o->arch;
	struct json_object *comps = NULL;
	struct utsname u;
	int r;

	if (!m)
		return kd_err(err, -ENOMEM, "out of memory");
	m->format = KD_PAYLOAD_FORMAT;
	if (spec) {
		const char *v = NULL, *a = NULL;
		if ((r = kd_json_as_object(spec, "spec", err)) < 0 ||
		    (r = kd_json_get_string(spec, NULL, "version", false, &v, err)) < 0 ||
		    (r = kd_json_get_string(spec, NULL, "arch", false, &a, err)) < 0 ||
		    (r = kd_json_get_array(spec, NULL, "components", true, &comps, err)) < 0)
			return r;
		if (!version)
			version = v;
		if (!arch)
			arch = a;
	}
	if (!version)
		return kd_err(err, -EINVAL, "no payload version (give one in the spec or options)");
	if (!arch) {
		if (uname(&u) < 0)
			return kd_err_errno(err, negative_errno(), "uname");
		arch = u.machine;
	}
	if ((r = kd_manifest_dup_name(version, "version", &m->version, err)) < 0 ||
	    (r = kd_manifest_dup_name(arch, "arch", &m->arch, err)) < 0)
		return r;

	size_t nc = comps ? json_object_array_length(comps) : 1;
	if (nc == 0 || nc > MAX_SPEC_COMPONENTS)
		return kd_err(err, -EINVAL, "spec: components: need 1 to %u", MAX_SPEC_COMPONENTS);
	m->components = calloc(nc, sizeof(kd_component));
	if (!m->components)
		return kd_err(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < nc; i++) {
		const char *name = "kata", *cv = m->version;
		char where[KD_JSON_PATH_MAX];
		if (comps) {
			struct json_object *c = json_object_array_get_idx(comps, i);
			kd_json_path_index(where, sizeof(where), "components", i);
			if ((r = kd_json_as_object(c, where, err)) < 0 ||
			    (r = kd_json_get_string(c, where, "name", true, &name, err)) < 0 ||
			    (r = kd_json_get_string(c, where, "version", false, &cv, err)) < 0)
				return r;
			if (kd_manifest_component(m, name) >= 0)
				return kd_err(err, -EINVAL, "spec: %s: duplicate component '%s'",
					      where, name);
		}
		m->n_components++;
		if ((r = kd_manifest_dup_name(name, "component name", &m->components[i].name,
					      err)) < 0 ||
		    (r = kd_manifest_dup_name(cv, "component version", &m->components[i].version,
					      err)) < 0)
			return r;
	}
	if (comps) {
		if ((r = assign_components(s, m, comps, err)) < 0 ||
		    (r = spec_shims(m, spec, err)) < 0)
			return r;
	} else {
		for (size_t i = 0; i < s->n; i++)
			s->e[i].component = 0;
		if ((r = infer_shims(m, s, err)) < 0)
			return r;
	}
	if (s->n > KD_PAYLOAD_MAX_ENTRIES)
		return kd_err(err, -E2BIG, "more than %u entries under %s", KD_PAYLOAD_MAX_ENTRIES,
			      PREFIX);
	m->files = calloc(s->n ? s->n : 1, sizeof(kd_pfile));
	if (!m->files)
		return kd_err(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < s->n; i++) {
		kd_pfile *f = &m->files[m->n_files++];
		f->path = kd_strpool_dup(&m->strings, s->e[i].path);
		f->target = s->e[i].target ? kd_strpool_dup(&m->strings, s->e[i].target) : NULL;
		if (!f->path || (s->e[i].target && !f->target))
			return kd_err(err, -ENOMEM, "out of memory");
		f->type = s->e[i].type;
		f->mode = s->e[i].mode;
		f->size = f->type == KD_FILE_REG ? s->e[i].size : 0;
		f->component = (size_t)s->e[i].component;
		memcpy(f->sha256, s->e[i].sha256, sizeof(f->sha256));
	}
	*ret = TAKE_PTR(m);
	return 0;
}

static int write_entry(kd_tar_writer *w, int katafd, const pack_entry *e, uint8_t *buf,
		       kd_error *err)
{
	char path[KD_PATH_MAX + 1], target[KD_PATH_MAX + 1];
	kd_tar_entry te;
	int r;

	snprintf(path, sizeof(path), "%s%s", PREFIX, e->path);
	te = (kd_tar_entry){.path = path, .mode = e->mode, .link = e->target};
	switch (e->type) {
	case KD_FILE_REG:
		te.type = KD_ENTRY_FILE;
		te.size = e->size;
		break;
	case KD_FILE_DIR:
		te.type = KD_ENTRY_DIR;
		break;
	case KD_FILE_SYMLINK:
		te.type = KD_ENTRY_SYMLINK;
		break;
	case KD_FILE_HARDLINK:
		te.type = KD_ENTRY_HARDLINK;
		snprintf(target, sizeof(target), "%s%s", PREFIX, e->target);
		te.link = target;
		break;
	}
	if ((r = kd_tar_write_header(w, &te, err)) < 0)
		return kd_err_wrap(err, r, "pack '%s'", path);
	if (e->type != KD_FILE_REG)
		return 0;
	_cleanup_close_ int fd = kd_openat(katafd, e->path, O_RDONLY, 0, KD_NOFOLLOW, err);
	if (fd < 0)
		return kd_err_wrap(err, fd, "pack");
	_cleanup_sha256_ kd_sha256 h = {0};
	uint8_t bin[KD_SHA256_LEN];
	uint64_t left = e->size;
	if ((r = kd_sha256_init(&h, err)) < 0)
		return r;
	while (left > 0) {
		ssize_t n = read(fd, buf, left < IO_BUF ? left : IO_BUF);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return kd_err_errno(err, negative_errno(), "read '%s'", path);
		if (n == 0)
			return kd_err(err, -EAGAIN, "'%s' changed while packing", path);
		kd_sha256_update(&h, buf, (size_t)n);
		if ((r = kd_tar_write_data(w, buf, (size_t)n, err)) < 0)
			return kd_err_wrap(err, r, "pack '%s'", path);
		left -= (uint64_t)n;
	}
	/* The manifest was written with the first hash: the bytes must not have changed. */
	if ((r = kd_sha256_final(&h, bin, err)) < 0)
		return r;
	if (memcmp(bin, e->sha256, sizeof(bin)) != 0)
		return kd_err(err, -EAGAIN, "'%s' changed while packing", path);
	return 0;
}

/* Every component's entries (in path order) into a zstd frame of its own, written to w's fd;
 * frames[c + 1] describes component c's. */
static int write_components(kd_tar_writer *w, int katafd, const pack_state *s, const kd_manifest *m,
			    kd_pframe *frames, uint8_t *buf, kd_error *err)
{
	uint64_t at = 0;
	int r;

	for (size_t c = 0; c < m->n_components; c++) {
		kd_tar_frame f;
		for (size_t i = 0; i < s->n; i++)
			if ((size_t)s->e[i].component == c &&
			    (r = write_entry(w, katafd, &s->e[i], buf, err)) < 0)
				return r;
		if ((r = kd_tar_writer_end_frame(w, &f, err)) < 0)
			return r;
		frames[c + 1] = (kd_pframe){.offset = at, .size = f.size, .tar_size = f.tar_size};
		memcpy(frames[c + 1].sha256, f.sha256, sizeof(f.sha256));
		at += f.size;
	}
	return 0;
}

/* The temporary file of the component frames: unnamed in the output's directory. */
static int open_scratch(int dirfd, kd_error *err)
{
	int fd = openat(dirfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd >= 0)
		return fd;
	/* Filesystems without O_TMPFILE: a named file, unlinked at once. */
	for (unsigned i = 0; i < 100; i++) {
		char name[64];
		snprintf(name, sizeof(name), ".kd-pack-%ld-%u", (long)getpid(), i);
		fd = openat(dirfd, name, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (fd >= 0) {
			unlinkat(dirfd, name, 0);
			return fd;
		}
		if (errno != EEXIST)
			break;
	}
	return kd_err_errno(err, negative_errno(), "create a temporary file");
}

static int copy_range(int from, int to, uint64_t len, uint8_t *buf, kd_error *err)
{
	loff_t in = 0;
	bool plain = false;

	while (len > 0) {
		ssize_t n;
		if (!plain) {
			n = copy_file_range(from, &in, to, NULL, len, 0);
			if (n < 0 && (errno == EXDEV || errno == ENOSYS || errno == EINVAL ||
				      errno == EOPNOTSUPP)) {
				plain = true;
				continue;
			}
		} else {
			n = pread(from, buf, len < IO_BUF ? len : IO_BUF, in);
			if (n > 0) {
				int r = kd_write_all(to, buf, (size_t)n);
				if (r < 0)
					return kd_err_errno(err, r, "write");
				in += n;
			}
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return kd_err_errno(err, negative_errno(), "copy the component frames");
		if (n == 0)
			return kd_err(err, -EIO, "copy the component frames: short file");
		len -= (uint64_t)n;
	}
	return 0;
}

/* Format 2 (docs/PAYLOAD.md): the manifest's frame, the component frames (compressed first into
 * a temporary file, since the manifest names them by digest), the end-of-archive frame, the
 * index. */
static int write_payload(int outfd, int outdir, int katafd, const pack_state *s, kd_manifest *m,
			 const kd_tar_write_opts *wo, uint8_t *buf, kd_error *err)
{
	_cleanup_(kd_tar_writer_freep) kd_tar_writer *w = NULL;
	_cleanup_(kd_manifest_freep) kd_manifest *check = NULL;
	_cleanup_free_ kd_pframe *frames = calloc(m->n_components + 2, sizeof(kd_pframe));
	_cleanup_free_ char *json = NULL;
	_cleanup_free_ uint8_t *index = NULL;
	_cleanup_close_ int tmp = -1;
	size_t index_len;
	kd_tar_frame f;
	int r;

	if (!frames)
		return kd_err(err, -ENOMEM, "out of memory");
	if ((tmp = open_scratch(outdir, err)) < 0)
		return tmp;
	if ((r = kd_tar_writer_open(tmp, wo, &w, err)) < 0 ||
	    (r = write_components(w, katafd, s, m, frames, buf, err)) < 0)
		return r;
	for (size_t c = 0; c < m->n_components; c++) {
		kd_component *mc = &m->components[c];
		kd_hex(frames[c + 1].sha256, KD_SHA256_LEN, mc->blob_sha256);
		mc->blob_size = frames[c + 1].size;
		mc->tar_size = frames[c + 1].tar_size;
	}
	if ((r = kd_manifest_to_json(m, &json, err)) < 0)
		return kd_err_wrap(err, r, "pack: manifest");
	/* What we write must be what kd_payload_open accepts. */
	if ((r = kd_manifest_parse(json, strlen(json), &check, err)) < 0)
		return kd_err_wrap(err, r, "pack: generated manifest is invalid");

	kd_tar_entry te = {
		.path = KD_PAYLOAD_MANIFEST_NAME,
		.type = KD_ENTRY_FILE,
		.mode = 0644,
		.size = strlen(json),
	};
	kd_tar_writer_set_fd(w, outfd);
	if ((r = kd_tar_write_header(w, &te, err)) < 0 ||
	    (r = kd_tar_write_data(w, json, te.size, err)) < 0 ||
	    (r = kd_tar_writer_end_frame(w, &f, err)) < 0)
		return r;
	frames[0] = (kd_pframe){.offset = 0, .size = f.size, .tar_size = f.tar_size};
	memcpy(frames[0].sha256, f.sha256, sizeof(f.sha256));
	uint64_t at = f.size;
	for (size_t c = 0; c < m->n_components; c++) {
		frames[c + 1].offset = at;
		at += frames[c + 1].size;
	}
	if ((r = copy_range(tmp, outfd, at - f.size, buf, err)) < 0)
		return r;
	if ((r = kd_tar_writer_close_frame(w, &f, err)) < 0)
		return r;
	size_t last = m->n_components + 1;
	frames[last] = (kd_pframe){.offset = at, .size = f.size, .tar_size = f.tar_size};
	memcpy(frames[last].sha256, f.sha256, sizeof(f.sha256));
	if ((r = kd_payload_index_format(frames, (uint32_t)(last + 1), &index, &index_len, err)) <
	    0)
		return r;
	if ((r = kd_write_all(outfd, index, index_len)) < 0)
		return kd_err_errno(err, r, "write the frame index");
	return 0;
}

static int sign_payload(const kd_atomic_file *af, const char *out_path, const kd_pack_opts *o,
			kd_error *err)
{
	uint8_t bin[KD_SHA256_LEN];
	char msg[sizeof(KD_PAYLOAD_SIG_CONTEXT) + KD_SHA256_HEX_LEN];
	_cleanup_free_ uint8_t *sig = NULL;
	_cleanup_free_ char *sig_path = NULL, *dir = NULL;
	size_t siglen;
	int r;

	/* The temp file was opened write-only: read it back through its name. */
	_cleanup_close_ int fd = openat(af->dirfd, af->tmpname, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return kd_err_errno(err, negative_errno(), "reopen '%s'", out_path);
	if ((r = kd_sha256_fd(fd, bin, NULL, err)) < 0)
		return r;
	memcpy(msg, KD_PAYLOAD_SIG_CONTEXT, strlen(KD_PAYLOAD_SIG_CONTEXT));
	kd_hex(bin, sizeof(bin), msg + strlen(KD_PAYLOAD_SIG_CONTEXT));
	size_t len = strlen(KD_PAYLOAD_SIG_CONTEXT) + KD_SHA256_HEX_LEN;
	if ((r = kd_sign_buf(o->sign_key, msg, len, &sig, &siglen, err)) < 0)
		return kd_err_wrap(err, r, "sign '%s'", out_path);
	if (o->sign_pubkey && (r = kd_verify_buf(o->sign_pubkey, msg, len, sig, siglen, err)) < 0)
		return kd_err_wrap(err, r, "sign '%s': %s does not match %s", out_path,
				   o->sign_pubkey, o->sign_key);
	if (asprintf(&sig_path, "%s.sig", out_path) < 0)
		return kd_err(err, -ENOMEM, "out of memory");
	dir = strdup(sig_path);
	if (!dir)
		return kd_err(err, -ENOMEM, "out of memory");
	char *slash = strrchr(dir, '/');
	const char *base = slash ? sig_path + (slash - dir) + 1 : sig_path;
	if (slash)
		slash[1] = '\0';
	_cleanup_close_ int dfd = kd_root_open(slash ? dir : ".", err);
	if (dfd < 0)
		return dfd;
	return kd_write_atomic(dfd, base, sig, siglen, 0644, err);
}

int kd_payload_pack(const char *srcdir, const char *out_path, const kd_pack_opts *opts,
		    kd_error *err)
{
	static const kd_pack_opts defaults = {0};
	const kd_pack_opts *o = opts ? opts : &defaults;
	_cleanup_(pack_state_done) pack_state s = {0};
	_cleanup_json_ struct json_object *spec = NULL;
	_cleanup_(kd_manifest_freep) kd_manifest *m = NULL;
	_cleanup_free_ char *dir = NULL;
	_cleanup_free_ uint8_t *buf = NULL;
	_cleanup_close_ int rootfd = -1, katafd = -1, outdir = -1;
	kd_atomic_file af = {.fd = -1, .dirfd = -1};
	int r;

	rootfd = kd_root_open(srcdir, err);
	if (rootfd < 0)
		return rootfd;
	katafd = kd_openat(rootfd, "opt/kata", O_RDONLY | O_DIRECTORY, 0, KD_NOFOLLOW, err);
	if (katafd < 0)
		return kd_err_wrap(err, katafd, "pack '%s'", srcdir);
	if ((r = pack_walk(&s, katafd, "", err)) < 0)
		return kd_err_wrap(err, r, "pack '%s'", srcdir);
	qsort(s.e, s.n, sizeof(pack_entry), cmp_pack_entry);
	for (size_t i = 0; i < s.n; i++)
		if (s.e[i].type == KD_FILE_REG &&
		    (r = hash_file(katafd, s.e[i].path, s.e[i].size, s.e[i].sha256, err)) < 0)
			return kd_err_wrap(err, r, "pack '%s'", srcdir);
	if (o->spec_path && (r = kd_yaml_parse_file(o->spec_path, &spec, err)) < 0)
		return kd_err_wrap(err, r, "pack: spec");
	if (o->spec_path && !spec)
		return kd_err(err, -EINVAL, "pack: spec %s is empty", o->spec_path);
	if ((r = build_manifest(&s, o, spec, &m, err)) < 0)
		return kd_err_wrap(err, r, "pack '%s'", srcdir);
	if (m->n_shims == 0 && o->spec_path)
		return kd_err(err, -EINVAL,
			      "pack '%s': the spec declares no shims: a payload must map at least "
			      "one shim to its components",
			      srcdir);
	if (m->n_shims == 0)
		return kd_err(err, -EINVAL,
			      "pack '%s': no shims: the tree has no opt/kata/" SHIM_CONFIG_DIR
				      SHIM_CONFIG_PREFIX
			      "<shim>.toml to infer them from; give a spec "
			      "with shims",
			      srcdir);
	if ((r = dedup_files(&s, err)) < 0)
		return r;
	for (size_t i = 0; i < s.n; i++) {
		m->files[i].type = s.e[i].type;
		if (s.e[i].type == KD_FILE_HARDLINK) {
			m->files[i].size = 0;
			memset(m->files[i].sha256, 0, sizeof(m->files[i].sha256));
			m->files[i].target = kd_strpool_dup(&m->strings, s.e[i].target);
			if (!m->files[i].target)
				return kd_err(err, -ENOMEM, "out of memory");
		}
	}
	if (o->sign_key) {
		/* A signed payload always names its key, so an install without the public key
		 * is refused instead of skipping the signature check. */
		char fp[KD_SHA256_HEX_LEN + 1];
		r = o->sign_pubkey ? kd_pubkey_fingerprint(o->sign_pubkey, fp, err)
				   : kd_privkey_fingerprint(o->sign_key, fp, err);
		if (r < 0)
			return kd_err_wrap(err, r, "pack");
		m->signing_key = strdup(fp);
		if (!m->signing_key)
			return kd_err(err, -ENOMEM, "out of memory");
	}
	dir = strdup(out_path);
	if (!dir)
		return kd_err(err, -ENOMEM, "out of memory");
	char *slash = strrchr(dir, '/');
	const char *base = slash ? out_path + (slash - dir) + 1 : out_path;
	if (slash)
		slash[1] = '\0';
	outdir = kd_root_open(slash ? dir : ".", err);
	if (outdir < 0)
		return outdir;
	if ((r = kd_atomic_begin(outdir, base, 0644, &af, err)) < 0)
		return kd_err_wrap(err, r, "pack: create '%s'", out_path);

	buf = malloc(IO_BUF);
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	kd_tar_write_opts wo = {
		.compression = KD_COMPRESS_ZSTD,
		.level = o->zstd_level ? o->zstd_level : 10,
		/* Always at least one worker: zstd's output is then the same for any count. */
		.threads = o->threads > 0 ? o->threads : (ncpu > 0 ? (int)ncpu : 1),
		.mtime = o->mtime,
		.frames = true,
	};
	if (!buf)
		r = kd_err(err, -ENOMEM, "out of memory");
	else
		r = write_payload(af.fd, outdir, katafd, &s, m, &wo, buf, err);
	if (r >= 0 && o->sign_key)
		r = sign_payload(&af, out_path, o, err);
	if (r >= 0)
		r = kd_atomic_commit(&af, true, err);
	if (r < 0) {
		kd_atomic_abort(&af);
		return kd_err_wrap(err, r, "pack '%s'", out_path);
	}
	return 0;
}
