/* Opening a payload (digest, signature, manifest), extracting selected components with every
 * entry checked against the manifest, and verifying an extracted tree. */
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "digest.h"
#include "fsroot.h"
#include "fwriter.h"
#include "payload-internal.h"
#include "sign.h"
#include "tarball.h"

/* Bytes per read while hashing the payload: a larger buffer is no faster and costs peak memory. */
#define HASH_BUF (64u << 10)
/* Pieces of file data of at least this size are written without a copy (kd_tar_lend_block). */
#define LEND_MIN (64u << 10)
/* Files of at least this size have their writeback started as soon as they are written. */
#define KICK_WRITEBACK_MIN (1u << 20)

struct kd_payload {
	int fd;
	char *name;
	char digest[KD_SHA256_HEX_LEN + 1];
	char manifest_sha256[KD_SHA256_HEX_LEN + 1]; /* of its kata-payload.json entry's bytes */
	kd_manifest *manifest;
	kd_payload_index *index; /* format 2, else NULL */
	bool *component_ok;	 /* format 2: the component's frame matched the manifest */
	bool *absent;		 /* a partial payload: the component's frame is not here */
	/* kd_payload_verify.defer_digest: digest is not hashed at open (digest_deferred) but on
	 * digest_thread from kd_payload_digest_start (digest_pending until joined), or by
	 * kd_payload_digest_wait; the components' frames are not hashed at all: each file is
	 * checked against the manifest as it is extracted. */
	bool digest_deferred;
	bool frames_unchecked; /* opened with defer_digest */
	bool digest_pending;
	pthread_t digest_thread;
	uint64_t digest_size; /* the file's size at open */
	int digest_r;
	kd_error digest_err;
};

DEFINE_CLEANUP(kd_payload *, kd_payload_free)

/* ---- open --------------------------------------------------------------------------------- */

/* The sha256 of the whole file and, with an index, of every frame it lists (ret_frames[i]), in
 * one pass. size: the file's size when the index was read; the file must still have it. */
static int hash_whole(int fd, const kd_payload_index *ix, uint64_t size,
		      char out[KD_SHA256_HEX_LEN + 1], uint8_t (*ret_frames)[KD_SHA256_LEN],
		      kd_error *err)
{
	_cleanup_free_ uint8_t *buf = malloc(HASH_BUF);
	_cleanup_sha256_ kd_sha256 h = {0}, fh = {0};
	uint8_t bin[KD_SHA256_LEN];
	uint64_t off = 0;
	uint32_t k = 0; /* the frame being hashed */
	int r;

	if (!buf)
		return kd_err(err, -ENOMEM, "out of memory");
	if ((r = kd_sha256_init(&h, err)) < 0 || (ix && (r = kd_sha256_init(&fh, err)) < 0))
		return r;
	for (;;) {
		ssize_t n = pread(fd, buf, HASH_BUF, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return kd_err_errno(err, negative_errno(), "read");
		if (n == 0)
			break;
		kd_sha256_update(&h, buf, (size_t)n);
		for (uint64_t at = off, end = off + (uint64_t)n; ix && k < ix->n && at < end;) {
			const kd_pframe *f = &ix->frames[k];
			uint64_t stop = f->offset + f->size < end ? f->offset + f->size : end;
			kd_sha256_update(&fh, buf + (at - off), (size_t)(stop - at));
			at = stop;
			if (stop == f->offset + f->size) {
				if ((r = kd_sha256_final(&fh, ret_frames[k++], err)) < 0 ||
				    (r = kd_sha256_init(&fh, err)) < 0)
					return r;
			}
		}
		off += (uint64_t)n;
	}
	if (ix && off != size)
		return kd_err(err, -EIO, "read: the file changed size while it was read");
	if ((r = kd_sha256_final(&h, bin, err)) < 0)
		return r;
	kd_hex(bin, sizeof(bin), out);
	return 0;
}

/* A partial payload: the sha256 of frame 0, of the end frame and of the frames of the present
 * components (want[k] for frame k), each read with pread; the others stay zero. */
static int hash_frames(int fd, const kd_payload_index *ix, const bool *want,
		       uint8_t (*ret_frames)[KD_SHA256_LEN], kd_error *err)
{
	_cleanup_free_ uint8_t *buf = malloc(HASH_BUF);
	int r;
	if (!buf)
		return kd_err(err, -ENOMEM, "out of memory");
	for (uint32_t k = 0; k < ix->n; k++) {
		_cleanup_sha256_ kd_sha256 h = {0};
		const kd_pframe *f = &ix->frames[k];
		if (!want[k])
			continue;
		if ((r = kd_sha256_init(&h, err)) < 0)
			return r;
		for (uint64_t at = f->offset, end = f->offset + f->size; at < end;) {
			size_t len = end - at < HASH_BUF ? (size_t)(end - at) : HASH_BUF;
			ssize_t n = pread(fd, buf, len, (off_t)at);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0)
				return kd_err_errno(err, negative_errno(), "read");
			if (n == 0)
				return kd_err(err, -EIO,
					      "read: the file is shorter than its index");
			kd_sha256_update(&h, buf, (size_t)n);
			at += (uint64_t)n;
		}
		if ((r = kd_sha256_final(&h, ret_frames[k], err)) < 0)
			return r;
	}
	return 0;
}

static void *digest_main(void *userdata)
{
	kd_payload *p = userdata;
	p->digest_r = hash_whole(p->fd, NULL, 0, p->digest, NULL, &p->digest_err);
	struct stat st;
	if (p->digest_r >= 0 && (fstat(p->fd, &st) < 0 || (uint64_t)st.st_size != p->digest_size))
		p->digest_r = kd_err(&p->digest_err, -EIO,
				     "read: the file changed size while it was read");
	return NULL;
}

int kd_payload_digest_start(kd_payload *p, kd_error *err)
{
	if (!p->digest_deferred || p->digest_pending)
		return 0;
	p->digest_pending = true; /* before the thread looks at it */
	int rc = pthread_create(&p->digest_thread, NULL, digest_main, p);
	if (rc != 0) {
		p->digest_pending = false;
		return kd_err(err, -rc, "payload '%s': cannot start the digest thread", p->name);
	}
	return 0;
}

int kd_payload_digest_wait(kd_payload *p, kd_error *err)
{
	if (p->digest_pending) {
		pthread_join(p->digest_thread, NULL);
		p->digest_pending = false;
		p->digest_deferred = false;
	} else if (p->digest_deferred) {
		digest_main(p);
		p->digest_deferred = false;
	}
	if (p->digest_r < 0) {
		p->digest[0] = '\0';
		return kd_err(err, p->digest_r, "payload '%s': %s", p->name, p->digest_err.msg);
	}
	return 0;
}

const char *kd_payload_manifest_sha256(const kd_payload *p)
{
	return p->manifest_sha256;
}

bool kd_payload_digest_deferred(const kd_payload *p)
{
	return p->digest_deferred;
}

/* The first entry of the archive (format 2: of its first frame, the only one read), its text. */
static int read_manifest(int fd, const kd_payload_index *ix, char **ret, size_t *ret_len,
			 kd_error *err)
{
	_cleanup_(kd_tar_reader_freep) kd_tar_reader *tr = NULL;
	_cleanup_free_ char *json = NULL;
	kd_tar_range range = {0};
	kd_tar_read_opts o = {.max_entries = 1};
	kd_tar_entry e;
	const void *blk;
	size_t len, off = 0;
	int r;

	if (ix) {
		range = (kd_tar_range){ix->frames[0].offset, ix->frames[0].size};
		o.ranges = &range;
		o.n_ranges = 1;
	}
	if ((r = kd_tar_open(fd, &o, &tr, err)) < 0)
		return r;
	if ((r = kd_tar_next(tr, &e, err)) < 0)
		return r;
	if (r == 0 || e.type != KD_ENTRY_FILE || strcmp(e.path, KD_PAYLOAD_MANIFEST_NAME) != 0)
		return kd_err(err, -EBADMSG, "the first entry is not %s", KD_PAYLOAD_MANIFEST_NAME);
	if (e.size > KD_PAYLOAD_MAX_MANIFEST)
		return kd_err(err, -EFBIG, "%s: larger than %u bytes", KD_PAYLOAD_MANIFEST_NAME,
			      KD_PAYLOAD_MAX_MANIFEST);
	json = malloc(e.size + 1);
	if (!json)
		return kd_err(err, -ENOMEM, "out of memory");
	while ((r = kd_tar_read_block(tr, &blk, &len, err)) > 0) {
		if (len > e.size - off)
			return kd_err(err, -EBADMSG, "%s: more data than its size",
				      KD_PAYLOAD_MANIFEST_NAME);
		memcpy(json + off, blk, len);
		off += len;
	}
	if (r < 0)
		return r;
	if (off != e.size)
		return kd_err(err, -EBADMSG, "%s: truncated", KD_PAYLOAD_MANIFEST_NAME);
	json[off] = '\0';
	*ret = TAKE_PTR(json);
	*ret_len = off;
	return 0;
}

static void hex_of(const uint8_t bin[KD_SHA256_LEN], char out[KD_SHA256_HEX_LEN + 1])
{
	kd_hex(bin, KD_SHA256_LEN, out);
}

/* Format 2: the index against the manifest. Sizes and digests that disagree make the file
 * malformed; a frame whose bytes do not hash to the manifest's digest only marks its component
 * (a damaged component nobody selects does not matter). */
static int check_frames(kd_payload *p, uint8_t (*got)[KD_SHA256_LEN], kd_error *err)
{
	const kd_manifest *m = p->manifest;
	const kd_payload_index *ix = p->index;
	char hex[KD_SHA256_HEX_LEN + 1], want[KD_SHA256_HEX_LEN + 1];

	if (m->format < 2)
		return kd_err(err, -EBADMSG,
			      "a format %d manifest in a file with a frame index (format 2)",
			      m->format);
	if (ix->n != m->n_components + 2)
		return kd_err(err, -EBADMSG,
			      "frame index: %u frames for %zu components (expected %zu)", ix->n,
			      m->n_components, m->n_components + 2);
	for (size_t i = 0; i < m->n_components; i++) {
		const kd_component *c = &m->components[i];
		const kd_pframe *f = &ix->frames[i + 1];
		hex_of(f->sha256, want);
		if (f->size != c->blob_size || f->tar_size != c->tar_size ||
		    strcmp(want, c->blob_sha256) != 0)
			return kd_err(
				err, -EBADMSG,
				"frame index: component '%s' is %llu bytes (%llu of tar) with "
				"sha256 %s in the index, %llu (%llu) with %s in the manifest",
				c->name, (unsigned long long)f->size,
				(unsigned long long)f->tar_size, want,
				(unsigned long long)c->blob_size, (unsigned long long)c->tar_size,
				c->blob_sha256);
		if (!got) {
			p->component_ok[i] = true; /* frames_unchecked */
			continue;
		}
		hex_of(got[i + 1], hex);
		p->component_ok[i] = strcmp(hex, c->blob_sha256) == 0;
	}
	return 0;
}

int kd_payload_open(int fd, const char *name, const kd_payload_verify *v, kd_payload **ret,
		    kd_error *err)
{
	_cleanup_close_ int dfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	_cleanup_(kd_payload_freep) kd_payload *p = NULL;
	_cleanup_free_ uint8_t(*frames)[KD_SHA256_LEN] = NULL;
	char digest[KD_SHA256_HEX_LEN + 1];
	struct stat st;
	bool partial = v && v->manifest_frame_sha256;
	bool defer = v && v->defer_digest && !partial && !v->expect_sha256 && !v->pubkey_path;
	int r;

	if (dfd < 0)
		return kd_err_errno(err, negative_errno(), "payload '%s': dup", name);
	if (fstat(dfd, &st) < 0)
		return kd_err_errno(err, negative_errno(), "payload '%s': stat", name);
	if (!S_ISREG(st.st_mode))
		return kd_err(err, -EINVAL, "payload '%s': not a regular file", name);
	p = calloc(1, sizeof(*p));
	if (!p || !(p->name = strdup(name)))
		return kd_err(err, -ENOMEM, "out of memory");
	p->fd = TAKE_FD(dfd);
	/* The index is read before the file is authenticated: it only says where the frames
	 * are, it is checked against the file's size here and against the manifest below. */
	r = kd_payload_index_read(p->fd, (uint64_t)st.st_size, &p->index, err);
	if (r < 0)
		return kd_err_wrap(err, r, "payload '%s'", name);
	if (p->index && !(frames = calloc(p->index->n, KD_SHA256_LEN)))
		return kd_err(err, -ENOMEM, "out of memory");
	if (partial) {
		_cleanup_free_ bool *want = NULL;
		if (!p->index)
			return kd_err(
				err, -EBADMSG,
				"payload '%s': no frame index: only format 2 can be read from "
				"its frames",
				name);
		if (!kd_sha256_hex_valid(v->manifest_frame_sha256) || !v->digest ||
		    !kd_sha256_hex_valid(v->digest))
			return kd_err(err, -EINVAL, "payload '%s': bad frame or payload digest",
				      name);
		if (!(want = calloc(p->index->n, sizeof(bool))))
			return kd_err(err, -ENOMEM, "out of memory");
		want[0] = want[p->index->n - 1] = true;
		for (uint32_t k = 1; v->present && k + 1 < p->index->n && k - 1 < v->n_present; k++)
			want[k] = v->present[k - 1];
		if ((r = hash_frames(p->fd, p->index, want, frames, err)) < 0)
			return kd_err_wrap(err, r, "payload '%s'", name);
		char hex[KD_SHA256_HEX_LEN + 1];
		hex_of(frames[0], hex);
		if (strcmp(hex, v->manifest_frame_sha256) != 0)
			return kd_err(
				err, -EBADMSG,
				"payload '%s': the manifest's frame has sha256 %s, expected %s",
				name, hex, v->manifest_frame_sha256);
		if (memcmp(frames[p->index->n - 1], p->index->frames[p->index->n - 1].sha256,
			   KD_SHA256_LEN) != 0)
			return kd_err(err, -EBADMSG,
				      "payload '%s': the end frame does not match the index", name);
		snprintf(digest, sizeof(digest), "%s", v->digest);
	} else if (defer && p->index) {
		/* Only the manifest's frame now; the whole file on a thread (digest_main). */
		_cleanup_free_ bool *want = calloc(p->index->n, sizeof(bool));
		if (!want)
			return kd_err(err, -ENOMEM, "out of memory");
		want[0] = true;
		if ((r = hash_frames(p->fd, p->index, want, frames, err)) < 0)
			return kd_err_wrap(err, r, "payload '%s'", name);
		digest[0] = '\0';
	} else if ((r = hash_whole(p->fd, p->index, (uint64_t)st.st_size, digest, frames, err)) < 0)
		return kd_err_wrap(err, r, "payload '%s'", name);
	defer = defer && p->index;
	if (!partial && v && v->expect_sha256 && strcmp(v->expect_sha256, digest) != 0)
		return kd_err(err, -EBADMSG, "payload '%s': sha256 is %s, expected %s", name,
			      digest, v->expect_sha256);
	if (!partial && v && v->pubkey_path) {
		char msg[sizeof(KD_PAYLOAD_SIG_CONTEXT) + KD_SHA256_HEX_LEN];
		if (!v->sig || !v->siglen)
			return kd_err(err, -EINVAL, "payload '%s': no signature to verify", name);
		snprintf(msg, sizeof(msg), "%s%s", KD_PAYLOAD_SIG_CONTEXT, digest);
		r = kd_verify_buf(v->pubkey_path, msg, strlen(msg), v->sig, v->siglen, err);
		if (r < 0)
			return kd_err_wrap(err, r, "payload '%s': signature", name);
	}
	if (p->index && memcmp(frames[0], p->index->frames[0].sha256, KD_SHA256_LEN) != 0) {
		char hex[KD_SHA256_HEX_LEN + 1], want[KD_SHA256_HEX_LEN + 1];
		hex_of(frames[0], hex);
		hex_of(p->index->frames[0].sha256, want);
		return kd_err(err, -EBADMSG,
			      "payload '%s': the manifest's frame has sha256 %s, the index says %s",
			      name, hex, want);
	}
	{
		_cleanup_free_ char *json = NULL;
		size_t len = 0;
		/* The decompressor (its 1 MiB window) is gone before the manifest's structures
		 * come. A manifest that is there but refused is named as such, not as a missing
		 * index. */
		if ((r = read_manifest(p->fd, p->index, &json, &len, err)) < 0 && !p->index)
			return kd_err_wrap(err, r,
					   "payload '%s': no frame index at the end of the file "
					   "(format 1, or format 2 truncated)",
					   name);
		if (r < 0 || (r = kd_manifest_parse(json, len, &p->manifest, err)) < 0)
			return kd_err_wrap(err, r, "payload '%s'", name);
		kd_sha256_buf(json, len, p->manifest_sha256);
	}
	if (!p->index && p->manifest->format >= 2)
		return kd_err(err, -EBADMSG,
			      "payload '%s': a format %d manifest but no frame index at the end of "
			      "the file (truncated?)",
			      name, p->manifest->format);
	if (p->index) {
		p->component_ok = calloc(p->manifest->n_components + 1, sizeof(bool));
		if (!p->component_ok)
			return kd_err(err, -ENOMEM, "out of memory");
		if ((r = check_frames(p, defer ? NULL : frames, err)) < 0)
			return kd_err_wrap(err, r, "payload '%s'", name);
		if (partial) {
			p->absent = calloc(p->manifest->n_components + 1, sizeof(bool));
			if (!p->absent)
				return kd_err(err, -ENOMEM, "out of memory");
			for (size_t i = 0; i < p->manifest->n_components; i++)
				p->absent[i] = !v->present || i >= v->n_present || !v->present[i];
		}
	}
	const kd_manifest *m = p->manifest;
	if (m->signing_key) {
		char fp[KD_SHA256_HEX_LEN + 1];
		if (!v || !v->pubkey_path)
			return kd_err(err, -ENOKEY,
				      "payload '%s' is signed by key %s: a public key is required",
				      name, m->signing_key);
		if ((r = kd_pubkey_fingerprint(v->pubkey_path, fp, err)) < 0)
			return kd_err_wrap(err, r, "payload '%s'", name);
		if (strcmp(fp, m->signing_key) != 0)
			return kd_err(err, -EKEYREJECTED,
				      "payload '%s' is signed by key %s, not by %s (%s)", name,
				      m->signing_key, v->pubkey_path, fp);
	}
	if (m->n_shims == 0)
		return kd_err(err, -EINVAL,
			      "payload '%s' declares no shims (its manifest's \"shims\" is empty): "
			      "nothing could use it; repack it with a spec that maps each shim to "
			      "its components",
			      name);
	memcpy(p->digest, digest, sizeof(digest));
	p->digest_deferred = p->frames_unchecked = defer;
	p->digest_size = (uint64_t)st.st_size;
	*ret = TAKE_PTR(p);
	return 0;
}

int kd_payload_check_components(const kd_payload *p, const bool *mask, kd_error *err)
{
	if (!p->index)
		return 0;
	for (size_t i = 0; i < p->manifest->n_components; i++)
		if ((!mask || mask[i]) && p->absent && p->absent[i])
			return kd_err(
				err, -ENOENT,
				"payload '%s': component '%s' was not pulled (its blob is not "
				"here)",
				p->name, p->manifest->components[i].name);
		else if ((!mask || mask[i]) && !p->component_ok[i])
			return kd_err(
				err, -EBADMSG,
				"payload '%s': component '%s' is damaged: its %llu bytes do not "
				"hash to %s as the manifest says",
				p->name, p->manifest->components[i].name,
				(unsigned long long)p->manifest->components[i].blob_size,
				p->manifest->components[i].blob_sha256);
	return 0;
}

int kd_payload_blobs(const kd_payload *p, kd_payload_blob **ret, size_t *ret_n, kd_error *err)
{
	const kd_payload_index *ix = p->index;
	struct stat st;
	if (!ix)
		return kd_err(err, -EINVAL,
			      "payload '%s' is format %d: only format 2 has a blob per component "
			      "(repack it with kata-deploy payload pack)",
			      p->name, p->manifest->format);
	if (fstat(p->fd, &st) < 0)
		return kd_err_errno(err, negative_errno(), "payload '%s': stat", p->name);
	kd_payload_blob *b = calloc(ix->n, sizeof(*b));
	if (!b)
		return kd_err(err, -ENOMEM, "out of memory");
	for (uint32_t k = 0; k < ix->n; k++)
		b[k] = (kd_payload_blob){ix->frames[k].offset, ix->frames[k].size};
	/* The end frame and the index travel together: the index is what finds the frames. */
	b[ix->n - 1].size = (uint64_t)st.st_size - b[ix->n - 1].offset;
	*ret = b;
	*ret_n = ix->n;
	return 0;
}

int kd_payload_fd(const kd_payload *p)
{
	return p->fd;
}

int kd_payload_format(const kd_payload *p)
{
	return p->manifest->format;
}

const kd_manifest *kd_payload_manifest(const kd_payload *p)
{
	return p->manifest;
}

const char *kd_payload_digest(kd_payload *p)
{
	kd_payload_digest_wait(p, NULL);
	return p->digest;
}

void kd_payload_free(kd_payload *p)
{
	if (!p)
		return;
	if (p->digest_pending)
		pthread_join(p->digest_thread, NULL);
	if (p->fd > 0)
		close(p->fd);
	free(p->name);
	kd_manifest_free(p->manifest);
	kd_payload_index_free(p->index);
	free(p->component_ok);
	free(p->absent);
	free(p);
}

/* ---- extract ------------------------------------------------------------------------------ */

typedef struct extract_state {
	const kd_manifest *m;
	const kd_extract_opts *o;
	const bool *mask; /* selected components; NULL = all */
	bool framed;	  /* format 2: only the selected components' frames are read */
	kd_payload_limits lim;
	int destfd;
	bool *sel;
	uint8_t *seen;
	uint64_t total;
	uint64_t done, sel_bytes; /* progress: bytes of selected files written or reused, all */
	/* The staging tree's directories, each opened once (and created if its entry is absent
	 * from the tar; its mode is fixed at the end). */
	kd_dircache dc;
	mode_t cmask;  /* the umask: a file created with a mode it clears needs a fchmod */
	kd_fwriter *w; /* the files' bytes are written on its thread */
	const kd_manifest *reuse_m; /* reuse_manifest_load's, once asked */
	bool reuse_loaded;
	kd_extract_stats st;
} extract_state;

/* The bits that open(O_CREAT) may clear from a file's mode under destfd: the process's umask,
 * read without changing it (umask(2) would, for every thread). All bits when it cannot be read
 * or when destfd has a default ACL (which then decides instead of the umask, and which every
 * directory created below inherits), so that every mode is set explicitly. */
static mode_t create_mask(int destfd)
{
	_cleanup_fclose_ FILE *f = NULL;
	char line[128];
	unsigned m;

	if (fgetxattr(destfd, "system.posix_acl_default", NULL, 0) >= 0 ||
	    (errno != ENODATA && errno != EOPNOTSUPP))
		return 07777;
	f = fopen("/proc/self/status", "re");
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "Umask: %o", &m) == 1)
			return (mode_t)m & 0777;
	return 07777;
}

/* Hardlink the same file from the previous version's tree. 1 when linked, 0 to write it. The
 * old file is reused only once its bytes hash to the new manifest's sha256: its own manifest
 * says what it was when installed, not what it is now (a file edited in place keeps its size,
 * mode and inode). The link is checked to be the inode that was hashed. */
static int try_reuse(extract_state *x, const kd_pfile *f, int pfd, const char *base)
{
	const kd_extract_opts *o = x->o;
	const char *rbase;
	struct stat st, lst;
	uint8_t bin[KD_SHA256_LEN];

	if (o->reuse_dirfd < 0 || (!o->reuse_manifest && !o->reuse_manifest_load))
		return 0;
	const kd_pfile *old =
		o->reuse_manifest ? kd_manifest_find(o->reuse_manifest, f->path) : NULL;
	if (o->reuse_manifest &&
	    (!old || (old->type != KD_FILE_REG && old->type != KD_FILE_HARDLINK) ||
	     old->mode != f->mode || memcmp(old->sha256, f->sha256, sizeof(f->sha256)) != 0))
		return 0;
	_cleanup_close_ int rfd = kd_open_parent(o->reuse_dirfd, f->path, &rbase, NULL);
	if (rfd < 0)
		return 0;
	_cleanup_close_ int ofd =
		openat(rfd, rbase, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (ofd < 0 || fstat(ofd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    (uint64_t)st.st_size != f->size || (st.st_mode & 07777) != f->mode)
		return 0;
	if (kd_sha256_fd(ofd, bin, NULL, NULL) < 0)
		return 0;
	if (memcmp(bin, f->sha256, sizeof(bin)) != 0) {
		/* Changed in place, or changed by the new version? The previous manifest says. */
		if (!o->reuse_manifest && !x->reuse_loaded) {
			x->reuse_loaded = true;
			x->reuse_m = o->reuse_manifest_load(o->reuse_userdata);
		}
		if (!o->reuse_manifest)
			old = x->reuse_m ? kd_manifest_find(x->reuse_m, f->path) : NULL;
		if (old && memcmp(old->sha256, f->sha256, sizeof(f->sha256)) == 0 &&
		    !x->st.files_changed++)
			snprintf(x->st.first_changed, sizeof(x->st.first_changed), "%s%s", PREFIX,
				 f->path);
		return 0;
	}
	if (linkat(rfd, rbase, pfd, base, 0) < 0)
		return 0;
	if (fstatat(pfd, base, &lst, AT_SYMLINK_NOFOLLOW) < 0 || lst.st_ino != st.st_ino ||
	    lst.st_dev != st.st_dev) {
		/* Replaced between the hash and the link: write the file instead. */
		unlinkat(pfd, base, 0);
		return 0;
	}
	return 1;
}

static void progress(extract_state *x, uint64_t n)
{
	x->done += n;
	if (x->o->progress)
		x->o->progress(x->done, x->sel_bytes, x->o->progress_userdata);
}

/* The entry's bytes, hashed and queued for fd (the writer's thread writes them). */
static int write_data(extract_state *x, kd_tar_reader *tr, const kd_pfile *f, int fd,
		      const char *tpath, kd_error *err)
{
	_cleanup_sha256_ kd_sha256 h = {0};
	uint8_t bin[KD_SHA256_LEN];
	char hex[KD_SHA256_HEX_LEN + 1];
	const void *blk;
	size_t len;
	uint64_t got = 0;
	int r;

	if ((f->mode & x->cmask) && fchmod(fd, f->mode) < 0)
		return kd_err_errno(err, negative_errno(), "chmod '%s'", tpath);
	if ((r = kd_sha256_init(&h, err)) < 0)
		return r;
	while ((r = kd_tar_read_block(tr, &blk, &len, err)) > 0) {
		got += len;
		if (got > f->size)
			return kd_err(err, -EBADMSG, "'%s': more data than its size", tpath);
		kd_sha256_update(&h, blk, len);
		/* A large piece is written from the reader's block itself (lent until written);
		 * small ones are copied and written together. */
		int t = len >= LEND_MIN ? kd_tar_lend_block(tr) : -1;
		r = t >= 0 ? kd_fwriter_write_lent(x->w, fd, f->path, blk, len, t, err)
			   : kd_fwriter_write(x->w, fd, f->path, blk, len, err);
		if (r < 0)
			return r;
		progress(x, len);
	}
	if (r < 0)
		return r;
	if (got != f->size)
		return kd_err(err, -EBADMSG, "'%s': truncated (%llu of %llu bytes)", tpath,
			      (unsigned long long)got, (unsigned long long)f->size);
	if ((r = kd_sha256_final(&h, bin, err)) < 0)
		return r;
	if (memcmp(bin, f->sha256, sizeof(bin)) != 0) {
		char want[KD_SHA256_HEX_LEN + 1];
		kd_hex(bin, sizeof(bin), hex);
		kd_hex(f->sha256, sizeof(f->sha256), want);
		return kd_err(err, -EBADMSG, "'%s': sha256 is %s, the manifest says %s", tpath, hex,
			      want);
	}
	return 0;
}

static int extract_file(extract_state *x, kd_tar_reader *tr, const kd_pfile *f, const char *tpath,
			kd_error *err)
{
	const char *base;
	int r, pfd = kd_dircache_parent(&x->dc, f->path, &base, err);

	if (pfd < 0)
		return pfd;
	if ((r = try_reuse(x, f, pfd, base)) > 0) {
		x->st.files_linked++;
		progress(x, f->size);
		return kd_tar_skip(tr, err);
	}
	int fd = openat(pfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, f->mode);
	if (fd < 0)
		return kd_err_errno(err, negative_errno(), "create '%s'", tpath);
	r = write_data(x, tr, f, fd, tpath, err);
	/* Start writeback of a large file once written, without waiting: the caller's single
	 * syncfs() before the switch then finds most data already on its way to disk. Small
	 * files are left to that syncfs(), which submits them together: one call per file cost a
	 * syscall and a separate write request each (7,000 of them on a Kata-shaped tree). */
	unsigned flags = x->o->sync			 ? KD_FWRITER_FSYNC
			 : f->size >= KICK_WRITEBACK_MIN ? KD_FWRITER_WRITEBACK
							 : 0;
	/* fd is the writer's from here, also after a failure: bytes of it may be queued. */
	int r2 = kd_fwriter_close(x->w, fd, f->path, flags, r < 0 ? NULL : err);
	if (r < 0 || r2 < 0)
		return r < 0 ? r : r2;
	x->st.files_written++;
	x->st.bytes_written += f->size;
	return 0;
}

static int extract_other(extract_state *x, const kd_pfile *f, const char *tpath, kd_error *err)
{
	const char *base, *tbase;
	struct stat st;
	int pfd = kd_dircache_parent(&x->dc, f->path, &base, err);

	if (pfd < 0)
		return pfd;
	switch (f->type) {
	case KD_FILE_DIR:
		if (mkdirat(pfd, base, 0755) < 0) {
			int r = negative_errno();
			if (r != -EEXIST || fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
			    !S_ISDIR(st.st_mode))
				return kd_err_errno(err, r, "mkdir '%s'", tpath);
		}
		return 0;
	case KD_FILE_SYMLINK:
		if (symlinkat(f->target, pfd, base) < 0)
			return kd_err_errno(err, negative_errno(), "symlink '%s'", tpath);
		return 0;
	case KD_FILE_HARDLINK: {
		const kd_pfile *t = kd_manifest_find(x->m, f->target);
		if (!t || !x->seen[t - x->m->files] || !x->sel[t - x->m->files])
			return kd_err(err, -EBADMSG,
				      "'%s': hardlink target '%s%s' was not extracted", tpath,
				      PREFIX, f->target);
		int tfd = kd_dircache_parent(&x->dc, f->target, &tbase, err);
		if (tfd < 0)
			return tfd;
		if (linkat(tfd, tbase, pfd, base, 0) < 0)
			return kd_err_errno(err, negative_errno(), "link '%s'", tpath);
		return 0;
	}
	case KD_FILE_REG:
		break;
	}
	return kd_err(err, -EINVAL, "'%s': unexpected type", tpath);
}

static kd_file_type tar_to_file_type(kd_entry_type t)
{
	switch (t) {
	case KD_ENTRY_DIR:
		return KD_FILE_DIR;
	case KD_ENTRY_SYMLINK:
		return KD_FILE_SYMLINK;
	case KD_ENTRY_HARDLINK:
		return KD_FILE_HARDLINK;
	default:
		return KD_FILE_REG;
	}
}

/* Check one tar entry against the rules and the manifest; returns its manifest index. */
static ssize_t check_entry(extract_state *x, const kd_tar_entry *e, kd_error *err)
{
	const char *p = e->path;
	const kd_manifest *m = x->m;

	if (p[0] == '/')
		return kd_err(err, -EPERM, "'%s': absolute paths are refused", p);
	if (strncmp(p, PREFIX, PREFIX_LEN) != 0)
		return kd_err(err, -EPERM, "'%s' is outside %s", p, PREFIX);
	if (!kd_path_is_safe(p + PREFIX_LEN))
		return kd_err(err, -EPERM, "'%s': unsafe path ('..', '.' or empty components)", p);
	switch (e->type) {
	case KD_ENTRY_FILE:
	case KD_ENTRY_DIR:
	case KD_ENTRY_SYMLINK:
	case KD_ENTRY_HARDLINK:
		break;
	default:
		return kd_err(err, -EPERM, "'%s': %s entries are refused", p,
			      kd_entry_type_name(e->type));
	}
	if (e->mode & 07000)
		return kd_err(err, -EPERM, "'%s': mode %04o has setuid/setgid/sticky bits", p,
			      (unsigned)e->mode);
	if ((e->type == KD_ENTRY_FILE || e->type == KD_ENTRY_DIR) && (e->mode & 022))
		return kd_err(err, -EPERM, "'%s': mode %04o lets group or others write it", p,
			      (unsigned)e->mode);
	if (e->type == KD_ENTRY_FILE && e->size > x->lim.max_entry_size)
		return kd_err(
			err, -EFBIG, "'%s': %llu bytes exceeds the limit of %llu bytes per file", p,
			(unsigned long long)e->size, (unsigned long long)x->lim.max_entry_size);
	const kd_pfile *f = kd_manifest_find(m, p + PREFIX_LEN);
	if (!f)
		return kd_err(err, -EPERM, "'%s' is not in the manifest", p);
	size_t i = (size_t)(f - m->files);
	if (x->seen[i])
		return kd_err(err, -EBADMSG, "'%s' appears twice in the archive", p);
	x->seen[i] = 1;
	kd_file_type t = tar_to_file_type(e->type);
	if (t != f->type)
		return kd_err(err, -EBADMSG, "'%s' is a %s in the archive, a %s in the manifest", p,
			      kd_file_type_name(t), kd_file_type_name(f->type));
	if ((t == KD_FILE_REG || t == KD_FILE_DIR) && e->mode != f->mode)
		return kd_err(err, -EBADMSG, "'%s': mode %04o in the archive, %04o in the manifest",
			      p, (unsigned)e->mode, (unsigned)f->mode);
	if (t == KD_FILE_REG && e->size != f->size)
		return kd_err(err, -EBADMSG, "'%s': size %llu in the archive, %llu in the manifest",
			      p, (unsigned long long)e->size, (unsigned long long)f->size);
	if (t == KD_FILE_SYMLINK && strcmp(e->link, f->target) != 0)
		return kd_err(err, -EBADMSG, "'%s': symlink to '%s', the manifest says '%s'", p,
			      e->link, f->target);
	if (t == KD_FILE_HARDLINK && (strncmp(e->link, PREFIX, PREFIX_LEN) != 0 ||
				      strcmp(e->link + PREFIX_LEN, f->target) != 0))
		return kd_err(err, -EBADMSG, "'%s': hardlink to '%s', the manifest says '%s%s'", p,
			      e->link, PREFIX, f->target);
	if (t == KD_FILE_REG) {
		x->total += e->size;
		if (x->total > x->lim.max_total)
			return kd_err(err, -EFBIG, "'%s': files exceed %llu bytes in total", p,
				      (unsigned long long)x->lim.max_total);
	}
	return (ssize_t)i;
}

static int fix_dir_modes(extract_state *x, kd_error *err)
{
	for (size_t i = x->m->n_files; i-- > 0;) {
		const kd_pfile *f = &x->m->files[i];
		if (!x->sel[i] || f->type != KD_FILE_DIR)
			continue;
		int fd = kd_dircache_dir(&x->dc, f->path, err);
		if (fd < 0)
			return fd;
		if (fchmod(fd, f->mode) < 0)
			return kd_err_errno(err, negative_errno(), "chmod '%s%s'", PREFIX, f->path);
		if (x->o->sync && fsync(fd) < 0)
			return kd_err_errno(err, negative_errno(), "fsync '%s%s'", PREFIX, f->path);
	}
	return 0;
}

static int extract_entries(extract_state *x, kd_tar_reader *tr, kd_error *err)
{
	kd_tar_entry e;
	int r;

	if ((r = kd_tar_next(tr, &e, err)) < 0)
		return r;
	if (r == 0 || strcmp(e.path, KD_PAYLOAD_MANIFEST_NAME) != 0)
		return kd_err(err, -EBADMSG, "the first entry is not %s", KD_PAYLOAD_MANIFEST_NAME);
	if ((r = kd_tar_skip(tr, err)) < 0)
		return r;
	while ((r = kd_tar_next(tr, &e, err)) > 0) {
		ssize_t i = check_entry(x, &e, err);
		if (i < 0)
			return (int)i;
		const kd_pfile *f = &x->m->files[i];
		if (x->framed && x->mask && !x->mask[f->component])
			return kd_err(err, -EBADMSG,
				      "'%s' belongs to component '%s', whose frame was not read",
				      e.path, x->m->components[f->component].name);
		if (!x->sel[i]) {
			x->st.entries_skipped++;
			if ((r = kd_tar_skip(tr, err)) < 0)
				return r;
			continue;
		}
		r = f->type == KD_FILE_REG ? extract_file(x, tr, f, e.path, err)
					   : extract_other(x, f, e.path, err);
		if (r < 0)
			return r;
	}
	if (r < 0)
		return r;
	for (size_t i = 0; i < x->m->n_files; i++) {
		const kd_pfile *f = &x->m->files[i];
		/* Format 2: a directory selected only because a selected entry lies below it sits
		 * in another component's frame; that entry's extraction created it. */
		bool want = x->framed ? !x->mask || x->mask[f->component] : x->sel[i];
		if (want && !x->seen[i])
			return kd_err(err, -EBADMSG, "'%s%s' is missing from the archive", PREFIX,
				      f->path);
		if (x->framed && !want)
			x->st.entries_skipped++;
	}
	return 0;
}

/* A reader over the manifest's entry and the selected components' entries: format 2 reads
 * only their frames (and refuses a damaged one first), format 1 the whole stream. */
static int payload_tar_open(kd_payload *p, const bool *mask, kd_tar_read_opts *tl,
			    kd_tar_reader **ret, kd_error *err)
{
	const kd_payload_index *ix = p->index;
	_cleanup_free_ kd_tar_range *ranges = NULL;
	int r;

	if (ix) {
		/* The manifest's frame, the selected components' frames, the end of the archive:
		 * together a valid tar.zst that holds only what is needed. */
		if ((r = kd_payload_check_components(p, mask, err)) < 0)
			return r;
		if (!(ranges = calloc(ix->n, sizeof(*ranges))))
			return kd_err(err, -ENOMEM, "out of memory");
		tl->n_ranges = 0;
		for (uint32_t i = 0; i < ix->n; i++) {
			bool comp = i > 0 && i + 1 < ix->n;
			if (comp && mask && !mask[i - 1])
				continue;
			ranges[tl->n_ranges++] =
				(kd_tar_range){ix->frames[i].offset, ix->frames[i].size};
		}
		tl->ranges = ranges; /* copied by kd_tar_open */
	}
	r = kd_tar_open(p->fd, tl, ret, err);
	tl->ranges = NULL;
	return r;
}

int kd_payload_tar_open(kd_payload *p, const bool *component_mask, kd_tar_reader **ret,
			kd_error *err)
{
	kd_tar_read_opts tl = {.max_path = KD_PATH_MAX};
	int r = payload_tar_open(p, component_mask, &tl, ret, err);
	return r < 0 ? kd_err_wrap(err, r, "read '%s'", p->name) : 0;
}

static void give_back(void *userdata, int ticket)
{
	kd_tar_give_back(userdata, ticket);
}

/* Opened with defer_digest, the frames were not hashed: a failed extraction says whether a
 * selected component's frame is not what the manifest says (the cause, then), as an open that
 * hashed them would have before extracting. r: the failure; kept if the frames are fine. */
static int explain_damage(kd_payload *p, const bool *mask, int r, kd_error *err)
{
	const kd_payload_index *ix = p->index;
	_cleanup_free_ bool *want = ix ? calloc(ix->n, sizeof(bool)) : NULL;
	_cleanup_free_ uint8_t(*got)[KD_SHA256_LEN] = ix ? calloc(ix->n, KD_SHA256_LEN) : NULL;
	char hex[KD_SHA256_HEX_LEN + 1];

	if (!want || !got)
		return r;
	for (size_t i = 0; i < p->manifest->n_components && i + 1 < ix->n; i++)
		want[i + 1] = !mask || mask[i];
	if (hash_frames(p->fd, ix, want, got, NULL) < 0)
		return r;
	for (size_t i = 0; i < p->manifest->n_components && i + 1 < ix->n; i++) {
		const kd_component *c = &p->manifest->components[i];
		hex_of(got[i + 1], hex);
		if (want[i + 1] && strcmp(hex, c->blob_sha256) != 0)
			return kd_err(err, -EBADMSG,
				      "payload '%s': component '%s' is damaged: its %llu bytes do "
				      "not hash to %s as the manifest says",
				      p->name, c->name, (unsigned long long)c->blob_size,
				      c->blob_sha256);
	}
	return r;
}

int kd_payload_extract(kd_payload *p, int destfd, const kd_extract_opts *o,
		       kd_extract_stats *ret_stats, kd_error *err)
{
	static const kd_extract_opts defaults = {.reuse_dirfd = -1};
	_cleanup_(kd_tar_reader_freep) kd_tar_reader *tr = NULL;
	_cleanup_free_ bool *sel = NULL;
	_cleanup_free_ uint8_t *seen = NULL;
	extract_state x = {
		.m = p->manifest,
		.o = o ? o : &defaults,
		.destfd = destfd,
		.lim = {KD_PAYLOAD_MAX_ENTRIES, KD_PAYLOAD_MAX_ENTRY_SIZE, KD_PAYLOAD_MAX_TOTAL},
	};
	int r;

	if (o && o->limits) {
		if (o->limits->max_entries)
			x.lim.max_entries = o->limits->max_entries;
		if (o->limits->max_entry_size)
			x.lim.max_entry_size = o->limits->max_entry_size;
		if (o->limits->max_total)
			x.lim.max_total = o->limits->max_total;
	}
	if (kd_manifest_select_files(x.m, x.o->component_mask, &sel) < 0 ||
	    !(seen = calloc(x.m->n_files ? x.m->n_files : 1, 1)))
		return kd_err(err, -ENOMEM, "out of memory");
	x.sel = sel;
	x.seen = seen;
	x.cmask = create_mask(destfd);
	kd_dircache_init(&x.dc, destfd, true);
	for (size_t i = 0; i < x.m->n_files; i++)
		if (sel[i] && x.m->files[i].type == KD_FILE_REG)
			x.sel_bytes += x.m->files[i].size;
	/* +1: the manifest entry. */
	kd_tar_read_opts tl = {.max_entries = x.lim.max_entries + 1,
			       .max_path = KD_PATH_MAX,
			       .decompress_thread = true};
	x.framed = p->index != NULL;
	x.mask = x.o->component_mask;
	r = payload_tar_open(p, x.o->component_mask, &tl, &tr, err);
	if (r >= 0 && (r = kd_fwriter_new(&x.w, err)) >= 0)
		kd_fwriter_set_lender(x.w, give_back, tr);
	if (r >= 0)
		r = extract_entries(&x, tr, err);
	/* Every byte written and every file closed before the directories' modes are fixed (a
	 * directory without write permission) and before the caller syncs; every lent block
	 * given back before the reader is freed. */
	if (x.w) {
		int r2 = kd_fwriter_finish(x.w, r < 0 ? NULL : err);
		if (r >= 0 && r2 < 0)
			r = r2;
		kd_fwriter_free(x.w);
	}
	if (r >= 0)
		r = fix_dir_modes(&x, err);
	kd_dircache_done(&x.dc);
	if (r < 0 && r != -ENOSPC && r != -EDQUOT && p->frames_unchecked)
		r = explain_damage(p, x.o->component_mask, r, err);
	if (r < 0)
		return kd_err_wrap(err, r, "extract '%s'", p->name);
	x.st.bytes_read = kd_tar_bytes_read(tr);
	x.st.bytes_decompressed = kd_tar_bytes_decompressed(tr);
	if (ret_stats)
		*ret_stats = x.st;
	return 0;
}

/* ---- verify tree -------------------------------------------------------------------------- */

static int verify_one(const kd_manifest *m, const kd_pfile *f, kd_dircache *dc, bool rehash,
		      kd_error *err)
{
	const kd_pfile *data = f;
	const char *base;
	struct stat st;
	int pfd = kd_dircache_parent(dc, f->path, &base, err);

	if (pfd == -ENOENT)
		return kd_err(err, -EBADMSG, "'%s%s' is missing", PREFIX, f->path);
	if (pfd < 0)
		return pfd;
	if (fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		int r = negative_errno();
		if (r == -ENOENT)
			return kd_err(err, -EBADMSG, "'%s%s' is missing", PREFIX, f->path);
		return kd_err_errno(err, r, "stat '%s%s'", PREFIX, f->path);
	}
	if (f->type == KD_FILE_HARDLINK)
		data = kd_manifest_find(m, f->target);
	switch (f->type) {
	case KD_FILE_REG:
	case KD_FILE_HARDLINK:
		if (!S_ISREG(st.st_mode))
			return kd_err(err, -EBADMSG, "'%s%s' is not a regular file", PREFIX,
				      f->path);
		if ((uint64_t)st.st_size != data->size)
			return kd_err(err, -EBADMSG, "'%s%s': size %llu, the manifest says %llu",
				      PREFIX, f->path, (unsigned long long)st.st_size,
				      (unsigned long long)data->size);
		break;
	case KD_FILE_DIR:
		if (!S_ISDIR(st.st_mode))
			return kd_err(err, -EBADMSG, "'%s%s' is not a directory", PREFIX, f->path);
		break;
	case KD_FILE_SYMLINK: {
		char buf[KD_PATH_MAX + 1];
		if (!S_ISLNK(st.st_mode))
			return kd_err(err, -EBADMSG, "'%s%s' is not a symlink", PREFIX, f->path);
		ssize_t n = readlinkat(pfd, base, buf, sizeof(buf));
		if (n < 0)
			return kd_err_errno(err, negative_errno(), "readlink '%s%s'", PREFIX,
					    f->path);
		if ((size_t)n >= sizeof(buf))
			return kd_err(err, -EBADMSG, "'%s%s': link text longer than %d bytes",
				      PREFIX, f->path, KD_PATH_MAX);
		buf[n] = '\0';
		if (strcmp(buf, f->target) != 0)
			return kd_err(err, -EBADMSG,
				      "'%s%s' points to '%s', the manifest says '%s'", PREFIX,
				      f->path, buf, f->target);
		return 0;
	}
	}
	if ((st.st_mode & 07777) != data->mode)
		return kd_err(err, -EBADMSG, "'%s%s': mode %04o, the manifest says %04o", PREFIX,
			      f->path, (unsigned)(st.st_mode & 07777), (unsigned)data->mode);
	if (rehash && S_ISREG(st.st_mode)) {
		uint8_t bin[KD_SHA256_LEN];
		char hex[KD_SHA256_HEX_LEN + 1];
		_cleanup_close_ int fd = openat(pfd, base, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			return kd_err_errno(err, negative_errno(), "open '%s%s'", PREFIX, f->path);
		int r = kd_sha256_fd(fd, bin, NULL, err);
		if (r < 0)
			return r;
		if (memcmp(bin, data->sha256, sizeof(bin)) != 0) {
			char want[KD_SHA256_HEX_LEN + 1];
			kd_hex(bin, sizeof(bin), hex);
			kd_hex(data->sha256, sizeof(data->sha256), want);
			return kd_err(err, -EBADMSG, "'%s%s': sha256 is %s, the manifest says %s",
				      PREFIX, f->path, hex, want);
		}
	}
	return 0;
}

int kd_payload_verify_tree(const kd_manifest *m, const bool *component_mask, int dirfd, bool rehash,
			   kd_error *err)
{
	_cleanup_free_ bool *sel = NULL;

	if (kd_manifest_select_files(m, component_mask, &sel) < 0)
		return kd_err(err, -ENOMEM, "out of memory");
	kd_dircache dc;
	kd_dircache_init(&dc, dirfd, false);
	int r = 0;
	for (size_t i = 0; i < m->n_files && r >= 0; i++)
		if (sel[i])
			r = verify_one(m, &m->files[i], &dc, rehash, err);
	kd_dircache_done(&dc);
	return r < 0 ? kd_err_wrap(err, r, "verify") : 0;
}
