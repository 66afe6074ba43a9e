#include "tarball.h"

#include <archive.h>
#include <archive_entry.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "digest.h"
#include "fsroot.h"
#include "log.h"
#include "tarball-internal.h"

#define LIBARCHIVE_SONAME "libarchive.so.13"

/* libarchive is loaded on first use, not linked: it reads what our own reader does not (xz,
 * gzip, old tar dialects) and writes, and linking it maps libxml2, ICU and libstdc++ into every
 * run of kata-deploy (3.2 MiB of an install's peak RSS) though an install reads only tar.zst
 * (lib/tar-native.c). The soname pins the ABI; every function we call is in the table. */
#define LA_FUNCS(X)                                                                                \
	X(archive_entry_clear)                                                                     \
	X(archive_entry_copy_hardlink)                                                             \
	X(archive_entry_copy_pathname)                                                             \
	X(archive_entry_copy_symlink)                                                              \
	X(archive_entry_filetype)                                                                  \
	X(archive_entry_free)                                                                      \
	X(archive_entry_hardlink)                                                                  \
	X(archive_entry_new)                                                                       \
	X(archive_entry_pathname)                                                                  \
	X(archive_entry_perm)                                                                      \
	X(archive_entry_set_filetype)                                                              \
	X(archive_entry_set_gid)                                                                   \
	X(archive_entry_set_mtime)                                                                 \
	X(archive_entry_set_perm)                                                                  \
	X(archive_entry_set_size)                                                                  \
	X(archive_entry_set_uid)                                                                   \
	X(archive_entry_size)                                                                      \
	X(archive_entry_size_is_set)                                                               \
	X(archive_entry_symlink)                                                                   \
	X(archive_errno)                                                                           \
	X(archive_error_string)                                                                    \
	X(archive_filter_bytes)                                                                    \
	X(archive_filter_code)                                                                     \
	X(archive_read_data_block)                                                                 \
	X(archive_read_data_skip)                                                                  \
	X(archive_read_free)                                                                       \
	X(archive_read_new)                                                                        \
	X(archive_read_next_header)                                                                \
	X(archive_read_open1)                                                                      \
	X(archive_read_set_callback_data)                                                          \
	X(archive_read_set_read_callback)                                                          \
	X(archive_read_set_skip_callback)                                                          \
	X(archive_read_support_filter_gzip)                                                        \
	X(archive_read_support_filter_xz)                                                          \
	X(archive_read_support_filter_zstd)                                                        \
	X(archive_read_support_format_raw)                                                         \
	X(archive_read_support_format_tar)                                                         \
	X(archive_set_error)                                                                       \
	X(archive_write_add_filter_gzip)                                                           \
	X(archive_write_add_filter_xz)                                                             \
	X(archive_write_close)                                                                     \
	X(archive_write_data)                                                                      \
	X(archive_write_finish_entry)                                                              \
	X(archive_write_free)                                                                      \
	X(archive_write_header)                                                                    \
	X(archive_write_new)                                                                       \
	X(archive_write_open2)                                                                     \
	X(archive_write_open_fd)                                                                   \
	X(archive_write_set_bytes_in_last_block)                                                   \
	X(archive_write_set_bytes_per_block)                                                       \
	X(archive_write_set_filter_option)                                                         \
	X(archive_write_set_format_pax_restricted)

static struct {
#define X(f) __typeof__(f) *f;
	LA_FUNCS(X)
#undef X
} la;

static pthread_once_t la_once = PTHREAD_ONCE_INIT;
static char la_msg[256]; /* why loading libarchive failed, "" when it did not */

static void la_init(void)
{
	/* Never closed: a reader or writer may be open until the process exits. */
	void *h = dlopen(LIBARCHIVE_SONAME, RTLD_NOW | RTLD_LOCAL);
	const char *e;

	if (!h) {
		e = dlerror();
		snprintf(la_msg, sizeof(la_msg), "cannot load %s: %s", LIBARCHIVE_SONAME,
			 e ? e : "unknown error");
		return;
	}
#define X(f)                                                                                       \
	if (!(la.f = (__typeof__(f) *)dlsym(h, #f)) && !la_msg[0])                                 \
		snprintf(la_msg, sizeof(la_msg), "%s: no symbol %s", LIBARCHIVE_SONAME, #f);
	LA_FUNCS(X)
#undef X
}

static int la_load(kd_error *err)
{
	pthread_once(&la_once, la_init);
	if (la_msg[0])
		return kd_err(err, -ENOPKG, "archive: %s", la_msg);
	return 0;
}

/* With decompress_thread, a second libarchive handle (raw format, compression filters) runs on
 * its own thread and fills a ring of KD_TAR_PIPE_BUFFERS blocks; the tar parser reads them
 * uncompressed. The consumer owns the block at head until its next read callback. */
struct tar_pipe {
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct archive *raw;
	uint8_t *buf[KD_TAR_PIPE_BUFFERS];
	size_t len[KD_TAR_PIPE_BUFFERS];
	unsigned head, count;
	bool holding; /* the consumer holds buf[head] */
	bool eof, stop, started;
	int err;       /* errno of a failure in the thread, 0 if none */
	char msg[256]; /* its libarchive message */
};

/* zstd output is made here, not by libarchive's filter: its window would follow the level
 * (4 MiB at level 10) and every reader would need that much memory, and it writes no frame
 * checksum. libarchive writes plain tar into write_zstd(). */
struct kd_tar_writer {
	struct archive *a;
	struct archive_entry *e;
	int64_t mtime;
	int fd;
	ZSTD_CCtx *z; /* NULL unless compression is zstd */
	uint8_t *zout;
	size_t zout_cap;
	bool frames;
	/* The frame being written: tar bytes in, compressed bytes out and their sha256. */
	uint64_t frame_in, frame_out;
	kd_sha256 frame_hash;
};

const char *kd_entry_type_name(kd_entry_type t)
{
	switch (t) {
	case KD_ENTRY_FILE:
		return "file";
	case KD_ENTRY_DIR:
		return "directory";
	case KD_ENTRY_SYMLINK:
		return "symlink";
	case KD_ENTRY_HARDLINK:
		return "hardlink";
	case KD_ENTRY_CHR:
		return "character device";
	case KD_ENTRY_BLK:
		return "block device";
	case KD_ENTRY_FIFO:
		return "FIFO";
	case KD_ENTRY_SOCK:
		return "socket";
	case KD_ENTRY_OTHER:
		break;
	}
	return "unknown entry type";
}

/* libarchive's errno is a real errno or ARCHIVE_ERRNO_MISC (-1); format errors use EILSEQ. */
static int archive_fail(struct archive *a, kd_error *err, const char *what)
{
	int e = a ? la.archive_errno(a) : 0;
	const char *s = a ? la.archive_error_string(a) : NULL;
	int code = e > 0 && e != EILSEQ ? -e : -EBADMSG;

	if (what)
		return kd_err(err, code, "archive: %s: %s", what, s ? s : "unknown error");
	return kd_err(err, code, "archive: %s", s ? s : "unknown error");
}

ssize_t kd_tar_input(kd_tar_reader *r, void *buf, size_t len, char *msg, size_t msg_size)
{
	ssize_t n;

	while (r->range < r->n_ranges && r->range_at == r->ranges[r->range].length) {
		r->range++;
		r->range_at = 0;
	}
	if (r->range == r->n_ranges)
		return 0;
	const kd_tar_range *g = &r->ranges[r->range];
	uint64_t want = g->length - r->range_at;
	if (want > len)
		want = len;
	do
		n = pread(r->fd, buf, (size_t)want, (off_t)(g->offset + r->range_at));
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		int e = errno;
		snprintf(msg, msg_size, "read: %s", strerror(e));
		return -e;
	}
	if (n == 0 && g->length != UINT64_MAX) {
		snprintf(msg, msg_size, "read: the file ends inside bytes %llu-%llu",
			 (unsigned long long)g->offset,
			 (unsigned long long)(g->offset + g->length));
		return -EIO;
	}
	if (n == 0) /* the end of a whole-file range */
		r->range = r->n_ranges;
	r->range_at += (uint64_t)n;
	__atomic_fetch_add(&r->bytes_read, (uint64_t)n, __ATOMIC_RELAXED);
	return n;
}

void kd_tar_input_rewind(kd_tar_reader *r)
{
	r->range = 0;
	r->range_at = 0;
	r->bytes_read = 0;
}

static la_ssize_t reader_read(struct archive *a, void *userdata, const void **ret_buf)
{
	kd_tar_reader *r = userdata;
	char msg[256];
	ssize_t n = kd_tar_input(r, r->buf, KD_TAR_READ_BLOCK, msg, sizeof(msg));

	if (n < 0) {
		la.archive_set_error(a, (int)-n, "%s", msg);
		return -1;
	}
	*ret_buf = r->buf;
	return n;
}

static la_int64_t reader_skip(struct archive *a, void *userdata, la_int64_t request)
{
	kd_tar_reader *r = userdata;
	la_int64_t done = 0;
	(void)a;
	/* Only whole-block skips of uncompressed input end up here; sizes are checked by reads. */
	while (done < request && r->range < r->n_ranges) {
		const kd_tar_range *g = &r->ranges[r->range];
		uint64_t left = g->length - r->range_at, k = (uint64_t)(request - done);
		if (k > left)
			k = left;
		r->range_at += k;
		done += (la_int64_t)k;
		if (r->range_at == g->length) {
			r->range++;
			r->range_at = 0;
		}
	}
	return done;
}

static void *pipe_main(void *userdata)
{
	kd_tar_reader *r = userdata;
	tar_pipe *p = r->pipe;
	const void *blk = NULL;
	size_t blen = 0;
	la_int64_t off;
	bool eof = false;

	for (;;) {
		pthread_mutex_lock(&p->mu);
		while (!p->stop && p->count == KD_TAR_PIPE_BUFFERS)
			pthread_cond_wait(&p->cv, &p->mu);
		bool stop = p->stop;
		unsigned slot = (p->head + p->count) % KD_TAR_PIPE_BUFFERS;
		pthread_mutex_unlock(&p->mu);
		if (stop)
			return NULL;

		/* Fill one block outside the lock: the consumer never touches free slots. */
		size_t n = 0;
		int e = 0;
		while (n < KD_TAR_READ_BLOCK && !eof) {
			if (blen == 0) {
				int rc = la.archive_read_data_block(p->raw, &blk, &blen, &off);
				if (rc == ARCHIVE_EOF) {
					eof = true;
					break;
				}
				if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN) {
					const char *m = la.archive_error_string(p->raw);
					e = la.archive_errno(p->raw);
					snprintf(p->msg, sizeof(p->msg), "%s",
						 m ? m : "read error");
					if (e <= 0)
						e = EILSEQ;
					break;
				}
			}
			size_t k = blen < KD_TAR_READ_BLOCK - n ? blen : KD_TAR_READ_BLOCK - n;
			memcpy(p->buf[slot] + n, blk, k);
			n += k;
			blk = (const uint8_t *)blk + k;
			blen -= k;
		}

		pthread_mutex_lock(&p->mu);
		if (n > 0) {
			p->len[slot] = n;
			p->count++;
		}
		if (e)
			p->err = e;
		if (eof)
			p->eof = true;
		pthread_cond_broadcast(&p->cv);
		pthread_mutex_unlock(&p->mu);
		if (e || eof)
			return NULL;
	}
}

static la_ssize_t pipe_read(struct archive *a, void *userdata, const void **ret_buf)
{
	kd_tar_reader *r = userdata;
	tar_pipe *p = r->pipe;
	la_ssize_t n;

	pthread_mutex_lock(&p->mu);
	if (p->holding) {
		p->head = (p->head + 1) % KD_TAR_PIPE_BUFFERS;
		p->count--;
		p->holding = false;
		pthread_cond_broadcast(&p->cv);
	}
	while (p->count == 0 && !p->eof && !p->err)
		pthread_cond_wait(&p->cv, &p->mu);
	if (p->count > 0) {
		*ret_buf = p->buf[p->head];
		n = (la_ssize_t)p->len[p->head];
		p->holding = true;
	} else if (p->err) {
		la.archive_set_error(a, p->err, "%s", p->msg);
		n = -1;
	} else {
		n = 0;
	}
	pthread_mutex_unlock(&p->mu);
	return n;
}

static void pipe_free(tar_pipe *p)
{
	if (!p)
		return;
	if (p->started) {
		pthread_mutex_lock(&p->mu);
		p->stop = true;
		pthread_cond_broadcast(&p->cv);
		pthread_mutex_unlock(&p->mu);
		pthread_join(p->thread, NULL);
	}
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->cv);
	if (p->raw)
		la.archive_read_free(p->raw);
	for (unsigned i = 0; i < KD_TAR_PIPE_BUFFERS; i++)
		free(p->buf[i]);
	free(p);
}

static int support_filters(struct archive *a)
{
	if (la.archive_read_support_filter_zstd(a) != ARCHIVE_OK ||
	    la.archive_read_support_filter_xz(a) != ARCHIVE_OK ||
	    la.archive_read_support_filter_gzip(a) != ARCHIVE_OK)
		return -1;
	return 0;
}

/* Open the raw decompressor. 1 when the input is compressed and the thread runs, 0 when it is
 * plain tar (no thread: nothing to overlap). */
static int pipe_start(kd_tar_reader *r, kd_error *err)
{
	struct archive_entry *e;
	tar_pipe *p = calloc(1, sizeof(*p));
	int rc;

	if (!p)
		return kd_err(err, -ENOMEM, "archive: out of memory");
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	r->pipe = p;
	p->raw = la.archive_read_new();
	if (!p->raw)
		return kd_err(err, -ENOMEM, "archive: out of memory");
	if (la.archive_read_support_format_raw(p->raw) != ARCHIVE_OK || support_filters(p->raw) < 0)
		return archive_fail(p->raw, err, NULL);
	la.archive_read_set_callback_data(p->raw, r);
	la.archive_read_set_read_callback(p->raw, reader_read);
	if (la.archive_read_open1(p->raw) != ARCHIVE_OK)
		return archive_fail(p->raw, err, NULL);
	if (la.archive_filter_code(p->raw, 0) == ARCHIVE_FILTER_NONE) {
		pipe_free(TAKE_PTR(r->pipe));
		kd_tar_input_rewind(r);
		return 0;
	}
	rc = la.archive_read_next_header(p->raw, &e);
	if (rc == ARCHIVE_EOF) {
		p->eof = true;
		return 1;
	}
	if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN)
		return archive_fail(p->raw, err, NULL);
	for (unsigned i = 0; i < KD_TAR_PIPE_BUFFERS; i++)
		if (!(p->buf[i] = malloc(KD_TAR_READ_BLOCK)))
			return kd_err(err, -ENOMEM, "archive: out of memory");
	rc = pthread_create(&p->thread, NULL, pipe_main, r);
	if (rc)
		return kd_err(err, -rc, "archive: cannot start the decompression thread");
	p->started = true;
	return 1;
}

int kd_tar_open(int fd, const kd_tar_read_opts *o, kd_tar_reader **ret, kd_error *err)
{
	kd_tar_reader *r = calloc(1, sizeof(*r));
	int rc, piped = 0;

	if (!r)
		return kd_err(err, -ENOMEM, "archive: out of memory");
	r->fd = fd;
	r->n_ranges = o && o->ranges ? o->n_ranges : 1;
	r->ranges = calloc(r->n_ranges ? r->n_ranges : 1, sizeof(kd_tar_range));
	if (r->ranges && o && o->ranges)
		memcpy(r->ranges, o->ranges, r->n_ranges * sizeof(kd_tar_range));
	else if (r->ranges)
		r->ranges[0] = (kd_tar_range){0, UINT64_MAX};
	r->max_entries = o && o->max_entries ? o->max_entries : KD_TAR_MAX_ENTRIES;
	r->max_path = o && o->max_path ? o->max_path : KD_TAR_MAX_PATH;
	if (!r->ranges) {
		kd_tar_reader_free(r);
		return kd_err(err, -ENOMEM, "archive: out of memory");
	}
	/* tar and tar.zst: our reader, without libarchive. */
	uint8_t head[512];
	char msg[256];
	ssize_t k = kd_tar_input(r, head, sizeof(head), msg, sizeof(msg));
	if (k < 0) {
		kd_tar_reader_free(r);
		return kd_err(err, (int)k, "archive: %s", msg);
	}
	kd_tar_input_rewind(r);
	if (kd_tar_native_detect(head, (size_t)k)) {
		if ((rc = kd_tar_native_open(r, o && o->decompress_thread, err)) < 0) {
			kd_tar_reader_free(r);
			return rc;
		}
		*ret = r;
		return 0;
	}
	if ((rc = la_load(err)) < 0) {
		kd_tar_reader_free(r);
		return rc;
	}
	r->buf = malloc(KD_TAR_READ_BLOCK);
	r->a = la.archive_read_new();
	if (!r->buf || !r->a) {
		kd_tar_reader_free(r);
		return kd_err(err, -ENOMEM, "archive: out of memory");
	}
	if (o && o->decompress_thread) {
		piped = pipe_start(r, err);
		if (piped < 0) {
			kd_tar_reader_free(r);
			return piped;
		}
	}
	if (la.archive_read_support_format_tar(r->a) != ARCHIVE_OK ||
	    (!piped && support_filters(r->a) < 0)) {
		rc = archive_fail(r->a, err, NULL);
		kd_tar_reader_free(r);
		return rc;
	}
	la.archive_read_set_callback_data(r->a, r);
	if (piped) {
		la.archive_read_set_read_callback(r->a, pipe_read);
	} else {
		la.archive_read_set_read_callback(r->a, reader_read);
		la.archive_read_set_skip_callback(r->a, reader_skip);
	}
	if (la.archive_read_open1(r->a) != ARCHIVE_OK) {
		rc = archive_fail(r->a, err, NULL);
		kd_tar_reader_free(r);
		return rc;
	}
	*ret = r;
	return 0;
}

static kd_entry_type entry_type(struct archive_entry *e)
{
	if (la.archive_entry_hardlink(e))
		return KD_ENTRY_HARDLINK;
	switch (la.archive_entry_filetype(e)) {
	case AE_IFREG:
		return KD_ENTRY_FILE;
	case AE_IFDIR:
		return KD_ENTRY_DIR;
	case AE_IFLNK:
		return KD_ENTRY_SYMLINK;
	case AE_IFCHR:
		return KD_ENTRY_CHR;
	case AE_IFBLK:
		return KD_ENTRY_BLK;
	case AE_IFIFO:
		return KD_ENTRY_FIFO;
	case AE_IFSOCK:
		return KD_ENTRY_SOCK;
	default:
		return KD_ENTRY_OTHER;
	}
}

int kd_tar_next(kd_tar_reader *r, kd_tar_entry *ret, kd_error *err)
{
	struct archive_entry *e;
	if (r->native)
		return kd_tar_native_next(r, ret, err);
	int rc = la.archive_read_next_header(r->a, &e);

	if (rc == ARCHIVE_EOF)
		return 0;
	if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN)
		return archive_fail(r->a, err, NULL);
	if (r->entries >= r->max_entries)
		return kd_err(err, -E2BIG, "archive: more than %llu entries",
			      (unsigned long long)r->max_entries);
	r->entries++;

	const char *path = la.archive_entry_pathname(e);
	if (!path || !*path)
		return kd_err(err, -EBADMSG, "archive: entry %llu has no path",
			      (unsigned long long)r->entries);
	size_t len = strnlen(path, r->max_path + 2);
	if (len > r->max_path)
		return kd_err(err, -ENAMETOOLONG,
			      "archive: entry path '%.64s...' longer than %zu bytes", path,
			      r->max_path);
	if (len + 1 > r->path_cap) {
		char *p = realloc(r->path, len + 1);
		if (!p)
			return kd_err(err, -ENOMEM, "archive: out of memory");
		r->path = p;
		r->path_cap = len + 1;
	}
	memcpy(r->path, path, len + 1);
	while (len > 1 && r->path[len - 1] == '/')
		r->path[--len] = '\0';

	kd_tar_entry out = {
		.path = r->path,
		.type = entry_type(e),
		.mode = la.archive_entry_perm(e) & 07777,
		.size = 0,
		.link = NULL,
	};
	if (out.type == KD_ENTRY_HARDLINK)
		out.link = la.archive_entry_hardlink(e);
	else if (out.type == KD_ENTRY_SYMLINK)
		out.link = la.archive_entry_symlink(e);
	if ((out.type == KD_ENTRY_HARDLINK || out.type == KD_ENTRY_SYMLINK) &&
	    (!out.link || strnlen(out.link, r->max_path + 1) > r->max_path))
		return kd_err(err, -ENAMETOOLONG,
			      "archive: '%s': missing link target or longer than %zu bytes",
			      r->path, r->max_path);
	/* Data belongs to files only (a directory whose header says it has some, e.g. a file
	 * entry named "d/", is skipped with it, as the native reader does). */
	if (out.type == KD_ENTRY_FILE && la.archive_entry_size_is_set(e) &&
	    la.archive_entry_size(e) > 0)
		out.size = (uint64_t)la.archive_entry_size(e);
	r->data_off = 0;
	r->data_left = out.type == KD_ENTRY_FILE;
	*ret = out;
	return 1;
}

int kd_tar_read_block(kd_tar_reader *r, const void **ret_buf, size_t *ret_len, kd_error *err)
{
	const void *buf;
	size_t len;
	la_int64_t off;
	if (r->native)
		return kd_tar_native_read_block(r, ret_buf, ret_len, err);
	if (!r->data_left)
		return 0;
	int rc = la.archive_read_data_block(r->a, &buf, &len, &off);

	if (rc == ARCHIVE_EOF)
		return 0;
	if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN)
		return archive_fail(r->a, err, r->path);
	if (off != r->data_off)
		return kd_err(err, -EBADMSG, "archive: '%s': sparse entries are not supported",
			      r->path);
	r->data_off += (int64_t)len;
	*ret_buf = buf;
	*ret_len = len;
	return 1;
}

int kd_tar_lend_block(kd_tar_reader *r)
{
	return r->native ? kd_tar_native_lend(r) : -1;
}

void kd_tar_give_back(kd_tar_reader *r, int ticket)
{
	if (r->native)
		kd_tar_native_give_back(r, ticket);
}

int kd_tar_skip(kd_tar_reader *r, kd_error *err)
{
	if (r->native)
		return kd_tar_native_skip(r, err);
	if (la.archive_read_data_skip(r->a) != ARCHIVE_OK)
		return archive_fail(r->a, err, r->path);
	return 0;
}

uint64_t kd_tar_entries(const kd_tar_reader *r)
{
	return r->entries;
}

uint64_t kd_tar_bytes_read(const kd_tar_reader *r)
{
	/* The decompression thread may update it while it runs. */
	return __atomic_load_n(&r->bytes_read, __ATOMIC_RELAXED);
}

uint64_t kd_tar_bytes_decompressed(const kd_tar_reader *r)
{
	if (r->native)
		return kd_tar_native_bytes_decompressed(r);
	/* Filter 0 is the uncompressed stream the tar parser consumed (in the piped case, the
	 * pipe's output). */
	la_int64_t n = la.archive_filter_bytes(r->a, 0);
	return n > 0 ? (uint64_t)n : 0;
}

void kd_tar_reader_free(kd_tar_reader *r)
{
	if (!r)
		return;
	if (r->a)
		la.archive_read_free(r->a);
	kd_tar_native_free(r->native);
	pipe_free(r->pipe);
	free(r->ranges);
	free(r->buf);
	free(r->path);
	free(r);
}

/* Feed len bytes of tar (len 0 with ZSTD_e_end: finish the frame) and write what comes out. */
static int zstd_feed(kd_tar_writer *w, const void *buf, size_t len, ZSTD_EndDirective mode,
		     const char **ret_msg)
{
	ZSTD_inBuffer in = {.src = buf, .size = len, .pos = 0};
	size_t left;

	do {
		ZSTD_outBuffer out = {.dst = w->zout, .size = w->zout_cap, .pos = 0};
		left = ZSTD_compressStream2(w->z, &out, &in, mode);
		if (ZSTD_isError(left)) {
			*ret_msg = ZSTD_getErrorName(left);
			return -EIO;
		}
		int r = kd_write_all(w->fd, w->zout, out.pos);
		if (r < 0) {
			*ret_msg = strerror(-r);
			return r;
		}
		if (w->frames) {
			w->frame_out += out.pos;
			kd_sha256_update(&w->frame_hash, w->zout, out.pos);
		}
	} while (mode == ZSTD_e_end ? left > 0 : in.pos < in.size);
	return 0;
}

static la_ssize_t write_zstd(struct archive *a, void *userdata, const void *buf, size_t len)
{
	kd_tar_writer *w = userdata;
	const char *msg = NULL;
	int r = zstd_feed(w, buf, len, ZSTD_e_continue, &msg);

	w->frame_in += len;
	if (r < 0) {
		la.archive_set_error(a, -r, "zstd: %s", msg);
		return -1;
	}
	return (la_ssize_t)len;
}

static int writer_zstd_open(kd_tar_writer *w, const kd_tar_write_opts *o, kd_error *err)
{
	/* Worker threads even for one: zstd's multi-threaded output is the same for any count. */
	int workers = o->threads > 0 ? o->threads : 1;
	const struct {
		ZSTD_cParameter p;
		int v;
		const char *name;
	} params[] = {
		{ZSTD_c_compressionLevel, o->level ? o->level : ZSTD_CLEVEL_DEFAULT, "level"},
		{ZSTD_c_windowLog, KD_TAR_ZSTD_WINDOW_LOG, "window log"},
		{ZSTD_c_checksumFlag, 1, "checksum"},
		{ZSTD_c_nbWorkers, workers, "threads"},
	};

	w->z = ZSTD_createCCtx();
	w->zout_cap = ZSTD_CStreamOutSize();
	w->zout = malloc(w->zout_cap);
	if (!w->z || !w->zout)
		return kd_err(err, -ENOMEM, "archive: out of memory");
	for (size_t i = 0; i < ELEMENTSOF(params); i++) {
		size_t rc = ZSTD_CCtx_setParameter(w->z, params[i].p, params[i].v);
		if (ZSTD_isError(rc))
			return kd_err(err, -EINVAL, "archive: zstd %s %d: %s", params[i].name,
				      params[i].v, ZSTD_getErrorName(rc));
	}
	if (o->frames) {
		w->frames = true;
		/* Unblocked: every entry reaches write_zstd() when it is written, so a frame can
		 * end right after it. */
		if (la.archive_write_set_bytes_per_block(w->a, 0) != ARCHIVE_OK)
			return archive_fail(w->a, err, NULL);
		int r = kd_sha256_init(&w->frame_hash, err);
		if (r < 0)
			return r;
	}
	if (la.archive_write_open2(w->a, w, NULL, write_zstd, NULL, NULL) != ARCHIVE_OK)
		return archive_fail(w->a, err, NULL);
	return 0;
}

/* End the zstd frame and describe it; the next one starts empty. */
static int frame_end(kd_tar_writer *w, kd_tar_frame *ret, kd_error *err)
{
	const char *msg = NULL;
	kd_tar_frame f = {0};
	int r = zstd_feed(w, NULL, 0, ZSTD_e_end, &msg);

	if (r < 0)
		return kd_err(err, r, "archive: zstd: %s", msg);
	f.size = w->frame_out;
	f.tar_size = w->frame_in;
	if ((r = kd_sha256_final(&w->frame_hash, f.sha256, err)) < 0)
		return r;
	w->frame_in = w->frame_out = 0;
	if ((r = kd_sha256_init(&w->frame_hash, err)) < 0)
		return r;
	if (ret)
		*ret = f;
	return 0;
}

int kd_tar_writer_end_frame(kd_tar_writer *w, kd_tar_frame *ret, kd_error *err)
{
	if (!w->frames)
		return kd_err(err, -EINVAL, "archive: not writing zstd frames");
	/* The padding of the last entry belongs to this frame. */
	if (la.archive_write_finish_entry(w->a) != ARCHIVE_OK)
		return archive_fail(w->a, err, NULL);
	return frame_end(w, ret, err);
}

void kd_tar_writer_set_fd(kd_tar_writer *w, int fd)
{
	w->fd = fd;
}

int kd_tar_writer_open(int fd, const kd_tar_write_opts *o, kd_tar_writer **ret, kd_error *err)
{
	char num[32];
	int rc = la_load(err);
	if (rc < 0)
		return rc;
	kd_tar_writer *w = calloc(1, sizeof(*w));
	rc = ARCHIVE_OK;
	if (!w)
		return kd_err(err, -ENOMEM, "archive: out of memory");
	w->mtime = o->mtime;
	w->fd = fd;
	w->a = la.archive_write_new();
	w->e = la.archive_entry_new();
	if (!w->a || !w->e) {
		kd_tar_writer_free(w);
		return kd_err(err, -ENOMEM, "archive: out of memory");
	}
	if (la.archive_write_set_format_pax_restricted(w->a) != ARCHIVE_OK)
		goto fail;
	switch (o->compression) {
	case KD_COMPRESS_ZSTD:
		break;
	case KD_COMPRESS_XZ:
		rc = la.archive_write_add_filter_xz(w->a);
		if (rc == ARCHIVE_OK && o->level) {
			snprintf(num, sizeof(num), "%d", o->level);
			rc = la.archive_write_set_filter_option(w->a, "xz", "compression-level",
								num);
		}
		if (rc == ARCHIVE_OK && o->threads > 1) {
			snprintf(num, sizeof(num), "%d", o->threads);
			rc = la.archive_write_set_filter_option(w->a, "xz", "threads", num);
		}
		break;
	case KD_COMPRESS_GZIP:
		rc = la.archive_write_add_filter_gzip(w->a);
		/* No timestamp or name in the gzip header: keep the output reproducible. */
		if (rc == ARCHIVE_OK)
			rc = la.archive_write_set_filter_option(w->a, "gzip", "timestamp", NULL);
		if (rc == ARCHIVE_OK && o->level) {
			snprintf(num, sizeof(num), "%d", o->level);
			rc = la.archive_write_set_filter_option(w->a, "gzip", "compression-level",
								num);
		}
		break;
	case KD_COMPRESS_NONE:
		break;
	}
	if (rc != ARCHIVE_OK)
		goto fail;
	/* No padding of the last block to 10 KiB for compressed output; tar-compatible otherwise.
	 */
	if (o->compression != KD_COMPRESS_NONE)
		la.archive_write_set_bytes_in_last_block(w->a, 1);
	if (o->compression == KD_COMPRESS_ZSTD) {
		if ((rc = writer_zstd_open(w, o, err)) < 0) {
			kd_tar_writer_free(w);
			return rc;
		}
	} else if (la.archive_write_open_fd(w->a, fd) != ARCHIVE_OK) {
		goto fail;
	}
	*ret = w;
	return 0;
fail:
	rc = archive_fail(w->a, err, NULL);
	kd_tar_writer_free(w);
	return rc;
}

static mode_t filetype_of(kd_entry_type t)
{
	switch (t) {
	case KD_ENTRY_FILE:
	case KD_ENTRY_HARDLINK:
		return AE_IFREG;
	case KD_ENTRY_DIR:
		return AE_IFDIR;
	case KD_ENTRY_SYMLINK:
		return AE_IFLNK;
	case KD_ENTRY_CHR:
		return AE_IFCHR;
	case KD_ENTRY_BLK:
		return AE_IFBLK;
	case KD_ENTRY_FIFO:
		return AE_IFIFO;
	case KD_ENTRY_SOCK:
		return AE_IFSOCK;
	case KD_ENTRY_OTHER:
		break;
	}
	return 0;
}

int kd_tar_write_header(kd_tar_writer *w, const kd_tar_entry *e, kd_error *err)
{
	struct archive_entry *ae = w->e;
	mode_t ft = filetype_of(e->type);

	if (!ft)
		return kd_err(err, -EINVAL, "archive: '%s': cannot write entry type %d", e->path,
			      (int)e->type);
	if ((e->type == KD_ENTRY_SYMLINK || e->type == KD_ENTRY_HARDLINK) && !e->link)
		return kd_err(err, -EINVAL, "archive: '%s': link without a target", e->path);
	la.archive_entry_clear(ae);
	la.archive_entry_copy_pathname(ae, e->path);
	la.archive_entry_set_filetype(ae, ft);
	la.archive_entry_set_perm(ae, e->mode & 07777);
	la.archive_entry_set_uid(ae, 0);
	la.archive_entry_set_gid(ae, 0);
	la.archive_entry_set_mtime(ae, w->mtime, 0);
	la.archive_entry_set_size(ae, e->type == KD_ENTRY_FILE ? (la_int64_t)e->size : 0);
	if (e->type == KD_ENTRY_SYMLINK)
		la.archive_entry_copy_symlink(ae, e->link);
	else if (e->type == KD_ENTRY_HARDLINK)
		la.archive_entry_copy_hardlink(ae, e->link);
	if (la.archive_write_header(w->a, ae) != ARCHIVE_OK)
		return archive_fail(w->a, err, e->path);
	return 0;
}

int kd_tar_write_data(kd_tar_writer *w, const void *buf, size_t len, kd_error *err)
{
	const char *p = buf;

	while (len > 0) {
		la_ssize_t n = la.archive_write_data(w->a, p, len);
		if (n <= 0)
			return archive_fail(w->a, err, NULL);
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int kd_tar_writer_close_frame(kd_tar_writer *w, kd_tar_frame *ret_frame, kd_error *err)
{
	const char *msg = NULL;
	int r;

	if (w->frames && la.archive_write_finish_entry(w->a) != ARCHIVE_OK)
		return archive_fail(w->a, err, NULL);
	if (w->frames && w->frame_in > 0 && (r = frame_end(w, NULL, err)) < 0)
		return r;
	if (la.archive_write_close(w->a) != ARCHIVE_OK)
		return archive_fail(w->a, err, NULL);
	if (w->frames)
		return frame_end(w, ret_frame, err);
	if (w->z && (r = zstd_feed(w, NULL, 0, ZSTD_e_end, &msg)) < 0)
		return kd_err(err, r, "archive: zstd: %s", msg);
	return 0;
}

int kd_tar_writer_close(kd_tar_writer *w, kd_error *err)
{
	return kd_tar_writer_close_frame(w, NULL, err);
}

void kd_tar_writer_free(kd_tar_writer *w)
{
	if (!w)
		return;
	/* archive_write_free() closes an open writer (flushing what was written, which the caller
	 * discards); archive_write_fail() would leak libarchive 3.6's client buffer. */
	if (w->a)
		la.archive_write_free(w->a);
	if (w->e)
		la.archive_entry_free(w->e);
	if (w->z)
		ZSTD_freeCCtx(w->z);
	kd_sha256_free(&w->frame_hash);
	free(w->zout);
	free(w);
}
