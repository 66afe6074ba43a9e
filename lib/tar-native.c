/* Our own reader of what every install reads: tar (ustar, pax, GNU long names) plain or in zstd
 * frames, which is what `payload pack` writes and what upstream's kata-static tarballs are.
 * libarchive stays the reader of everything else (xz, gzip, old formats) and the writer, but it
 * is loaded only then (lib/tarball.c): linking it maps libxml2, ICU and libstdc++ into every run,
 * 3.2 MiB of an install's peak RSS. Reading directly also spares a copy of every byte (zstd
 * decompresses into the blocks the caller hashes and writes) and libarchive's per-entry name
 * conversions. docs/DEPENDENCIES.md says why this much tar is ours to read.
 *
 * The stream is cut into blocks of NBLOCK tar bytes, a multiple of 512: every block but the last
 * is full, so a header never straddles two blocks and entry data is handed out in place. With
 * a decompression thread, the blocks form a ring of NBLOCKS filled ahead of the parser, and a
 * block the parser is done with may stay lent (kd_tar_lend_block: the caller's writer thread
 * still writes from it) until every loan is returned: in ring order, [tail, head) are lent,
 * head is the parser's, [head, head + count) are filled, the rest are free. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "tarball-internal.h"

#define NBLOCK (256u << 10)

/* The parser's block and the blocks lent to a writer (lib/fwriter.c holds up to 3 chunks, each
 * with at most one lent block): the decompressor fills ahead into what the writer has given
 * back. 256 KiB blocks: half the hand-offs (and futex wake-ups) of 128 KiB ones, measured 6 %
 * less CPU on a first install; 4 of them rather than 6: 0.5 MiB less peak RSS for no measurable
 * time on the qemu set (docs/BENCH.md). */
#define NBLOCKS 4u
#define PAX_MAX (64u << 10)	/* bytes of one pax or GNU long-name header's data */
#define ZSTD_WINDOW_LOG_MAX 27u /* zstd's own default limit (128 MiB) */
#define MSG_MAX 256

struct tar_native {
	/* The producer: tar bytes from the file (plain) or from the zstd decoder. */
	bool zstd;
	ZSTD_DStream *ds;
	uint8_t *in;
	size_t in_cap;
	ZSTD_inBuffer zin;
	bool in_eof, out_eof;
	size_t frame_left; /* zstd's hint: 0 when the last frame read is complete */
	/* The ring: blocks filled by the producer (on the thread when threaded). */
	bool threaded, started, stop;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	uint8_t *blk[NBLOCKS];
	size_t len[NBLOCKS];
	unsigned head, count;
	unsigned tail, lent;	/* the lent blocks: [tail, head) */
	unsigned refs[NBLOCKS]; /* loans not returned, per block */
	bool holding;		/* the parser holds blk[head] */
	bool eof;		/* the producer is done */
	int err;		/* -errno of a producer failure, 0 if none */
	char msg[MSG_MAX];
	/* The parser. */
	const uint8_t *cur;
	size_t cur_len, cur_pos;
	bool at_end; /* no more blocks */
	uint64_t tar_bytes;
	uint64_t data_left; /* of the current file */
	uint64_t skip;	    /* bytes before the next header: unread data and padding */
	bool end;	    /* the end-of-archive block was read */
	char *link;
	size_t link_cap;
	/* pax ('x') and GNU ('L', 'K') records for the next entry */
	char *x_path, *x_link;
	bool x_size_set, x_sparse;
	uint64_t x_size;
	uint8_t *meta; /* PAX_MAX + 1 bytes */
};

int kd_tar_native_detect(const uint8_t *head, size_t n)
{
	if (n >= 4 && head[0] == 0x28 && head[1] == 0xb5 && head[2] == 0x2f && head[3] == 0xfd)
		return 1;
	/* A skippable frame first (0x184D2A5?): zstd reads past it. */
	if (n >= 4 && (head[0] & 0xf0) == 0x50 && head[1] == 0x2a && head[2] == 0x4d &&
	    head[3] == 0x18)
		return 1;
	if (n >= 263 && memcmp(head + 257, "ustar", 5) == 0)
		return 1;
	return 0;
}

/* ---- the producer ------------------------------------------------------------------------ */

/* Fill buf with up to cap tar bytes: all of cap unless the stream ends. */
static int produce(kd_tar_reader *r, uint8_t *buf, size_t cap, size_t *ret_len, char msg[MSG_MAX])
{
	tar_native *n = r->native;
	size_t len = 0;

	while (len < cap && !n->out_eof) {
		if (!n->zstd) {
			ssize_t k = kd_tar_input(r, buf + len, cap - len, msg, MSG_MAX);
			if (k < 0)
				return (int)k;
			if (k == 0)
				n->out_eof = true;
			len += (size_t)k;
			continue;
		}
		if (n->zin.pos == n->zin.size && !n->in_eof) {
			ssize_t k = kd_tar_input(r, n->in, n->in_cap, msg, MSG_MAX);
			if (k < 0)
				return (int)k;
			n->in_eof = k == 0;
			n->zin = (ZSTD_inBuffer){.src = n->in, .size = (size_t)k, .pos = 0};
		}
		ZSTD_outBuffer out = {.dst = buf + len, .size = cap - len, .pos = 0};
		size_t in_pos = n->zin.pos;
		size_t rc = ZSTD_decompressStream(n->ds, &out, &n->zin);
		if (ZSTD_isError(rc)) {
			snprintf(msg, MSG_MAX, "zstd: %s", ZSTD_getErrorName(rc));
			return -EILSEQ;
		}
		len += out.pos;
		/* With no input, zstd asks for the next frame's header: that is no truncation. */
		if (out.pos > 0 || n->zin.pos > in_pos)
			n->frame_left = rc;
		if (n->in_eof && n->zin.pos == n->zin.size && out.pos == 0) {
			if (n->frame_left != 0) {
				snprintf(msg, MSG_MAX, "truncated input (inside a zstd frame)");
				return -EIO;
			}
			n->out_eof = true;
		}
	}
	*ret_len = len;
	return 0;
}

static void *thread_main(void *userdata)
{
	kd_tar_reader *r = userdata;
	tar_native *n = r->native;

	for (;;) {
		pthread_mutex_lock(&n->mu);
		while (!n->stop && n->lent + n->count == NBLOCKS)
			pthread_cond_wait(&n->cv, &n->mu);
		bool stop = n->stop;
		unsigned slot = (n->head + n->count) % NBLOCKS;
		pthread_mutex_unlock(&n->mu);
		if (stop)
			return NULL;

		/* Fill one block outside the lock: the parser never touches free slots. */
		char msg[MSG_MAX] = "";
		size_t len = 0;
		int e = produce(r, n->blk[slot], NBLOCK, &len, msg);

		pthread_mutex_lock(&n->mu);
		if (e == 0 && len > 0) {
			n->len[slot] = len;
			n->count++;
		}
		if (e < 0) {
			n->err = e;
			memcpy(n->msg, msg, sizeof(msg));
		}
		bool done = e < 0 || len < NBLOCK;
		if (done)
			n->eof = true;
		pthread_cond_broadcast(&n->cv);
		pthread_mutex_unlock(&n->mu);
		if (done)
			return NULL;
	}
}

/* ---- blocks for the parser ---------------------------------------------------------------- */

/* Free the oldest lent blocks whose loans are all back (under mu). */
static void reap(tar_native *n)
{
	while (n->lent > 0 && n->refs[n->tail] == 0) {
		n->tail = (n->tail + 1) % NBLOCKS;
		n->lent--;
	}
}

int kd_tar_native_lend(kd_tar_reader *r)
{
	tar_native *n = r->native;
	if (!n->threaded || !n->holding)
		return -1;
	pthread_mutex_lock(&n->mu);
	n->refs[n->head]++;
	pthread_mutex_unlock(&n->mu);
	return (int)n->head;
}

void kd_tar_native_give_back(kd_tar_reader *r, int ticket)
{
	tar_native *n = r->native;
	pthread_mutex_lock(&n->mu);
	if (ticket >= 0 && (unsigned)ticket < NBLOCKS && n->refs[ticket] > 0 &&
	    --n->refs[ticket] == 0) {
		reap(n);
		pthread_cond_broadcast(&n->cv);
	}
	pthread_mutex_unlock(&n->mu);
}

/* The next block into cur: 1, 0 at the end of the stream, -errno. */
static int next_block(kd_tar_reader *r, kd_error *err)
{
	tar_native *n = r->native;
	char msg[MSG_MAX] = "";
	int e = 0;

	n->cur = NULL;
	n->cur_len = n->cur_pos = 0;
	if (n->at_end)
		return 0;
	if (!n->threaded) {
		size_t len = 0;
		if ((e = produce(r, n->blk[0], NBLOCK, &len, msg)) < 0)
			return kd_err(err, e, "archive: %s", msg);
		if (len == 0) {
			n->at_end = true;
			return 0;
		}
		n->cur = n->blk[0];
		n->cur_len = len;
		n->tar_bytes += len;
		return 1;
	}
	pthread_mutex_lock(&n->mu);
	if (n->holding) {
		/* Done with it: lent until its loans come back (at once if it has none). */
		n->head = (n->head + 1) % NBLOCKS;
		n->count--;
		n->lent++;
		n->holding = false;
		reap(n);
		pthread_cond_broadcast(&n->cv);
	}
	while (n->count == 0 && !n->eof)
		pthread_cond_wait(&n->cv, &n->mu);
	if (n->count > 0) {
		n->cur = n->blk[n->head];
		n->cur_len = n->len[n->head];
		n->holding = true;
	} else if (n->err) {
		e = n->err;
		memcpy(msg, n->msg, sizeof(msg));
	}
	pthread_mutex_unlock(&n->mu);
	if (e)
		return kd_err(err, e, "archive: %s", msg);
	if (!n->cur) {
		n->at_end = true;
		return 0;
	}
	n->tar_bytes += n->cur_len;
	return 1;
}

/* Bytes available in place (at least one), 0 at the end of the stream, -errno. */
static ssize_t avail(kd_tar_reader *r, kd_error *err)
{
	tar_native *n = r->native;
	if (n->cur_pos == n->cur_len) {
		int e = next_block(r, err);
		if (e <= 0)
			return e;
	}
	return (ssize_t)(n->cur_len - n->cur_pos);
}

static int truncated(kd_tar_reader *r, kd_error *err)
{
	return kd_err(err, -EIO, "archive: truncated input (at byte %llu of the tar stream)",
		      (unsigned long long)(r->native->tar_bytes - r->native->cur_len +
					   r->native->cur_pos));
}

static int skip_bytes(kd_tar_reader *r, uint64_t len, kd_error *err)
{
	tar_native *n = r->native;
	while (len > 0) {
		ssize_t a = avail(r, err);
		if (a < 0)
			return (int)a;
		if (a == 0)
			return truncated(r, err);
		size_t k = (uint64_t)a < len ? (size_t)a : (size_t)len;
		n->cur_pos += k;
		len -= k;
	}
	return 0;
}

static uint64_t padded(uint64_t size)
{
	return (size + 511) & ~(uint64_t)511;
}

/* The data of a pax or long-name header (size bytes, then its padding) into n->meta. */
static int read_meta(kd_tar_reader *r, uint64_t size, kd_error *err)
{
	tar_native *n = r->native;
	size_t got = 0;

	if (size > PAX_MAX)
		return kd_err(err, -E2BIG, "archive: an extended header of %llu bytes (limit %u)",
			      (unsigned long long)size, PAX_MAX);
	while (got < size) {
		ssize_t a = avail(r, err);
		if (a < 0)
			return (int)a;
		if (a == 0)
			return truncated(r, err);
		size_t k = (size_t)a < size - got ? (size_t)a : (size_t)size - got;
		memcpy(n->meta + got, n->cur + n->cur_pos, k);
		n->cur_pos += k;
		got += k;
	}
	n->meta[size] = '\0';
	return skip_bytes(r, padded(size) - size, err);
}

/* ---- headers ------------------------------------------------------------------------------ */

/* A numeric field: octal digits (leading spaces, ended by a space or NUL), or base-256 (GNU,
 * high bit set, non-negative only). */
static int parse_num(const uint8_t *f, size_t len, uint64_t *ret)
{
	uint64_t v = 0;
	size_t i = 0;

	if (f[0] & 0x80) {
		if (f[0] != 0x80)
			return -1;
		for (i = 1; i < len; i++) {
			if (v >> 55)
				return -1;
			v = v << 8 | f[i];
		}
		*ret = v;
		return 0;
	}
	while (i < len && f[i] == ' ')
		i++;
	for (; i < len && f[i] >= '0' && f[i] <= '7'; i++) {
		if (v >> 60)
			return -1;
		v = v << 3 | (uint64_t)(f[i] - '0');
	}
	for (; i < len; i++)
		if (f[i] != ' ' && f[i] != '\0')
			return -1;
	*ret = v;
	return 0;
}

static bool checksum_ok(const uint8_t *h)
{
	uint64_t want;
	unsigned long us = 0;
	long ss = 0;

	if (parse_num(h + 148, 8, &want) < 0)
		return false;
	for (size_t i = 0; i < 512; i++) {
		uint8_t c = i >= 148 && i < 156 ? ' ' : h[i];
		us += c;
		ss += (signed char)c;
	}
	return want == us || (uint64_t)(long)want == (uint64_t)ss;
}

static bool all_zero(const uint8_t *h)
{
	for (size_t i = 0; i < 512; i++)
		if (h[i])
			return false;
	return true;
}

static void clear_ext(tar_native *n)
{
	free(n->x_path);
	free(n->x_link);
	n->x_path = n->x_link = NULL;
	n->x_size_set = n->x_sparse = false;
}

static int set_str(char **dst, const char *s, size_t len)
{
	char *c = strndup(s, len);
	if (!c)
		return -ENOMEM;
	free(*dst);
	*dst = c;
	return 0;
}

/* The records "<len> <key>=<value>\n" of a pax header in n->meta (len bytes). */
static int parse_pax(kd_tar_reader *r, size_t len, kd_error *err)
{
	tar_native *n = r->native;
	const char *p = (const char *)n->meta, *end = p + len;

	while (p < end) {
		size_t rl = 0;
		const char *q = p;
		while (q < end && *q >= '0' && *q <= '9' && rl < PAX_MAX)
			rl = rl * 10 + (size_t)(*q++ - '0');
		/* At least "<len> k=\n", within the header. */
		if (q == p || q >= end || *q != ' ' || rl < (size_t)(q - p) + 4 ||
		    rl > (size_t)(end - p) || p[rl - 1] != '\n')
			return kd_err(err, -EBADMSG, "archive: damaged pax header");
		const char *key = q + 1, *rec_end = p + rl - 1;
		const char *eq = memchr(key, '=', (size_t)(rec_end - key));
		if (!eq || eq == key)
			return kd_err(err, -EBADMSG, "archive: damaged pax header");
		size_t klen = (size_t)(eq - key), vlen = (size_t)(rec_end - eq - 1);
		const char *val = eq + 1;
		int e = 0;
		if (klen == 4 && memcmp(key, "path", 4) == 0) {
			if (memchr(val, '\0', vlen))
				return kd_err(err, -EBADMSG, "archive: a NUL in a pax path");
			e = set_str(&n->x_path, val, vlen);
		} else if (klen == 8 && memcmp(key, "linkpath", 8) == 0) {
			if (memchr(val, '\0', vlen))
				return kd_err(err, -EBADMSG, "archive: a NUL in a pax linkpath");
			e = set_str(&n->x_link, val, vlen);
		} else if (klen == 4 && memcmp(key, "size", 4) == 0) {
			uint64_t v = 0;
			if (vlen == 0 || vlen > 19)
				return kd_err(err, -EBADMSG, "archive: bad pax size");
			for (size_t i = 0; i < vlen; i++) {
				if (val[i] < '0' || val[i] > '9')
					return kd_err(err, -EBADMSG, "archive: bad pax size");
				v = v * 10 + (uint64_t)(val[i] - '0');
			}
			n->x_size = v;
			n->x_size_set = true;
		} else if (klen > 11 && memcmp(key, "GNU.sparse.", 11) == 0) {
			n->x_sparse = true;
		}
		if (e < 0)
			return kd_err(err, e, "archive: out of memory");
		p += rl;
	}
	return 0;
}

static int set_path(kd_tar_reader *r, const char *s, size_t len, kd_error *err)
{
	if (len + 1 > r->path_cap) {
		char *p = realloc(r->path, len + 1);
		if (!p)
			return kd_err(err, -ENOMEM, "archive: out of memory");
		r->path = p;
		r->path_cap = len + 1;
	}
	memcpy(r->path, s, len);
	r->path[len] = '\0';
	return 0;
}

static int set_link(tar_native *n, const char *s, size_t len, kd_error *err)
{
	if (len + 1 > n->link_cap) {
		char *p = realloc(n->link, len + 1);
		if (!p)
			return kd_err(err, -ENOMEM, "archive: out of memory");
		n->link = p;
		n->link_cap = len + 1;
	}
	memcpy(n->link, s, len);
	n->link[len] = '\0';
	return 0;
}

static kd_entry_type type_of(uint8_t t)
{
	switch (t) {
	case '0':
	case '\0':
	case '7':
		return KD_ENTRY_FILE;
	case '1':
		return KD_ENTRY_HARDLINK;
	case '2':
		return KD_ENTRY_SYMLINK;
	case '3':
		return KD_ENTRY_CHR;
	case '4':
		return KD_ENTRY_BLK;
	case '5':
		return KD_ENTRY_DIR;
	case '6':
		return KD_ENTRY_FIFO;
	default:
		return KD_ENTRY_OTHER;
	}
}

int kd_tar_native_next(kd_tar_reader *r, kd_tar_entry *ret, kd_error *err)
{
	tar_native *n = r->native;
	int e;

	if (n->end)
		return 0;
	if ((e = skip_bytes(r, n->data_left + n->skip, err)) < 0)
		return e;
	n->skip = n->data_left = 0;
	for (;;) {
		ssize_t a = avail(r, err);
		if (a < 0)
			return (int)a;
		if (a == 0) /* no end-of-archive blocks: the end all the same, as for libarchive */
			return 0;
		if (a < 512)
			return truncated(r, err);
		const uint8_t *h = n->cur + n->cur_pos;
		if (all_zero(h)) {
			/* The end: two zero blocks, or one (then whatever follows is not read). */
			n->end = true;
			n->cur_pos += 512;
			a = avail(r, err);
			if (a < 0)
				return (int)a;
			if (a >= 512 && all_zero(n->cur + n->cur_pos))
				n->cur_pos += 512;
			return 0;
		}
		if (!checksum_ok(h))
			return kd_err(err, -EBADMSG,
				      "archive: damaged tar header (bad checksum) at byte %llu",
				      (unsigned long long)(n->tar_bytes - n->cur_len + n->cur_pos));
		n->cur_pos += 512;
		uint64_t size, mode;
		if (parse_num(h + 124, 12, &size) < 0 || parse_num(h + 100, 8, &mode) < 0 ||
		    size > INT64_MAX)
			return kd_err(err, -EBADMSG, "archive: damaged tar header (bad number)");
		uint8_t t = h[156];
		switch (t) {
		case 'x':
			if ((e = read_meta(r, size, err)) < 0 ||
			    (e = parse_pax(r, (size_t)size, err)) < 0)
				return e;
			continue;
		case 'L':
		case 'K':
			if ((e = read_meta(r, size, err)) < 0)
				return e;
			e = set_str(t == 'L' ? &n->x_path : &n->x_link, (const char *)n->meta,
				    strnlen((const char *)n->meta, (size_t)size));
			if (e < 0)
				return kd_err(err, e, "archive: out of memory");
			continue;
		case 'g': /* global pax records (git archive's commit id): nothing we use */
		case 'V': /* a volume label */
			if ((e = skip_bytes(r, padded(size), err)) < 0)
				return e;
			continue;
		}

		bool posix = memcmp(h + 257, "ustar\0", 6) == 0;
		if (n->x_path) {
			e = set_path(r, n->x_path, strlen(n->x_path), err);
		} else if (posix && h[345]) {
			char full[256 + 100];
			size_t pl = strnlen((const char *)h + 345, 155),
			       nl = strnlen((const char *)h, 100);
			memcpy(full, h + 345, pl);
			full[pl] = '/';
			memcpy(full + pl + 1, h, nl);
			e = set_path(r, full, pl + 1 + nl, err);
		} else {
			e = set_path(r, (const char *)h, strnlen((const char *)h, 100), err);
		}
		if (e < 0)
			return e;
		const char *link = n->x_link;
		size_t link_len = link ? strlen(link) : strnlen((const char *)h + 157, 100);
		if ((e = set_link(n, link ? link : (const char *)h + 157, link_len, err)) < 0)
			return e;
		if (n->x_size_set)
			size = n->x_size;
		bool sparse = n->x_sparse || t == 'S';
		clear_ext(n);

		size_t len = strlen(r->path);
		kd_entry_type type = type_of(t);
		if (type == KD_ENTRY_FILE && (t == '0' || t == '\0') && len > 0 &&
		    r->path[len - 1] == '/')
			type = KD_ENTRY_DIR; /* the old convention: a trailing '/' */
		if (len == 0)
			return kd_err(err, -EBADMSG, "archive: entry %llu has no path",
				      (unsigned long long)r->entries + 1);
		if (sparse)
			return kd_err(err, -EBADMSG,
				      "archive: '%s': sparse entries are not supported", r->path);
		if (r->entries >= r->max_entries)
			return kd_err(err, -E2BIG, "archive: more than %llu entries",
				      (unsigned long long)r->max_entries);
		r->entries++;
		if (len > r->max_path)
			return kd_err(err, -ENAMETOOLONG,
				      "archive: entry path '%.64s...' longer than %zu bytes",
				      r->path, r->max_path);
		while (len > 1 && r->path[len - 1] == '/')
			r->path[--len] = '\0';
		kd_tar_entry out = {
			.path = r->path,
			.type = type,
			.mode = (mode_t)(mode & 07777),
			.size = type == KD_ENTRY_FILE ? size : 0,
			.link = NULL,
		};
		if (type == KD_ENTRY_HARDLINK || type == KD_ENTRY_SYMLINK) {
			if (link_len == 0 || link_len > r->max_path)
				return kd_err(
					err, -ENAMETOOLONG,
					"archive: '%s': missing link target or longer than %zu bytes",
					r->path, r->max_path);
			out.link = n->link;
		}
		/* Data follows whatever the type says (a hardlink may carry some): the caller
		 * reads a file's, the rest is skipped. */
		n->data_left = out.size;
		n->skip = padded(size) - out.size;
		*ret = out;
		return 1;
	}
}

int kd_tar_native_read_block(kd_tar_reader *r, const void **ret_buf, size_t *ret_len, kd_error *err)
{
	tar_native *n = r->native;
	if (n->data_left == 0)
		return 0;
	ssize_t a = avail(r, err);
	if (a < 0)
		return (int)a;
	if (a == 0)
		return truncated(r, err);
	size_t k = (uint64_t)a < n->data_left ? (size_t)a : (size_t)n->data_left;
	*ret_buf = n->cur + n->cur_pos;
	*ret_len = k;
	n->cur_pos += k;
	n->data_left -= k;
	return 1;
}

int kd_tar_native_skip(kd_tar_reader *r, kd_error *err)
{
	tar_native *n = r->native;
	n->skip += n->data_left;
	n->data_left = 0;
	(void)err;
	return 0;
}

uint64_t kd_tar_native_bytes_decompressed(const kd_tar_reader *r)
{
	const tar_native *n = r->native;
	return n->tar_bytes - n->cur_len + n->cur_pos;
}

/* ---- open, free --------------------------------------------------------------------------- */

int kd_tar_native_open(kd_tar_reader *r, bool decompress_thread, kd_error *err)
{
	uint8_t head[4];
	char msg[MSG_MAX] = "";
	tar_native *n = calloc(1, sizeof(*n));

	if (!n)
		return kd_err(err, -ENOMEM, "archive: out of memory");
	r->native = n;
	pthread_mutex_init(&n->mu, NULL);
	pthread_cond_init(&n->cv, NULL);
	ssize_t k = kd_tar_input(r, head, sizeof(head), msg, sizeof(msg));
	if (k < 0)
		return kd_err(err, (int)k, "archive: %s", msg);
	kd_tar_input_rewind(r);
	/* kd_tar_open() chose this reader: the stream is zstd or plain tar. */
	n->zstd = k == 4 && kd_tar_native_detect(head, 4);
	n->meta = malloc(PAX_MAX + 1);
	if (!n->meta)
		return kd_err(err, -ENOMEM, "archive: out of memory");
	if (n->zstd) {
		n->ds = ZSTD_createDStream();
		n->frame_left = 1;
		n->in_cap = ZSTD_DStreamInSize();
		n->in = malloc(n->in_cap);
		if (!n->ds || !n->in)
			return kd_err(err, -ENOMEM, "archive: out of memory");
		size_t rc = ZSTD_DCtx_setParameter(n->ds, ZSTD_d_windowLogMax, ZSTD_WINDOW_LOG_MAX);
		if (ZSTD_isError(rc))
			return kd_err(err, -EINVAL, "archive: zstd: %s", ZSTD_getErrorName(rc));
	}
	/* Plain tar is only read: a thread would overlap nothing but copies. */
	n->threaded = decompress_thread && n->zstd;
	for (unsigned i = 0; i < (n->threaded ? NBLOCKS : 1); i++)
		if (!(n->blk[i] = malloc(NBLOCK)))
			return kd_err(err, -ENOMEM, "archive: out of memory");
	if (n->threaded) {
		int rc = pthread_create(&n->thread, NULL, thread_main, r);
		if (rc)
			return kd_err(err, -rc, "archive: cannot start the decompression thread");
		n->started = true;
	}
	return 0;
}

void kd_tar_native_free(tar_native *n)
{
	if (!n)
		return;
	if (n->started) {
		pthread_mutex_lock(&n->mu);
		n->stop = true;
		pthread_cond_broadcast(&n->cv);
		pthread_mutex_unlock(&n->mu);
		pthread_join(n->thread, NULL);
	}
	pthread_mutex_destroy(&n->mu);
	pthread_cond_destroy(&n->cv);
	ZSTD_freeDStream(n->ds);
	free(n->in);
	for (unsigned i = 0; i < NBLOCKS; i++)
		free(n->blk[i]);
	free(n->link);
	free(n->x_path);
	free(n->x_link);
	free(n->meta);
	free(n);
}
