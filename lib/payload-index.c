/* The frame index of a format 2 payload (docs/PAYLOAD.md, "Format 2"): a zstd skippable frame
 * at the end of the file that lists every zstd frame before it (the manifest's, one per
 * component, the end-of-archive's) with its offset, compressed size, tar size and sha256. The
 * index is not trusted: it only says where to look. Every field is checked here against the
 * file's size and the other records, and the caller checks sizes and digests against the
 * manifest, which the payload's digest or signature covers. */
#include <string.h>
#include <unistd.h>

#include "payload-internal.h"

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p + 4, (uint32_t)(v >> 32));
}

void kd_payload_index_free(kd_payload_index *ix)
{
	if (!ix)
		return;
	free(ix->frames);
	free(ix);
}

/* The content length of an index of n frames, and of the whole skippable frame. */
static uint64_t content_len(uint64_t n)
{
	return n * KD_PINDEX_RECORD + KD_PINDEX_TRAILER;
}

int kd_payload_index_trailer(const uint8_t *tail, uint64_t file_size, uint64_t *ret_len,
			     kd_error *err)
{
	if (file_size < KD_PINDEX_TRAILER ||
	    memcmp(tail + KD_PINDEX_TRAILER - 8, KD_PINDEX_MAGIC, 8) != 0)
		return 0;
	uint32_t n = get32(tail);
	if (n < 2 || n > KD_PINDEX_MAX_FRAMES)
		return kd_err(err, -EBADMSG, "frame index: %u frames (2 to %u allowed)", n,
			      KD_PINDEX_MAX_FRAMES);
	if (get32(tail + 4) != 0)
		return kd_err(err, -EBADMSG, "frame index: unknown flags %#x", get32(tail + 4));
	uint64_t len = KD_PINDEX_SKIP_HEADER + content_len(n);
	if (len > file_size)
		return kd_err(err, -EBADMSG,
			      "frame index: truncated (%llu bytes of index in a %llu-byte file)",
			      (unsigned long long)len, (unsigned long long)file_size);
	*ret_len = len;
	return 1;
}

int kd_payload_index_parse(const uint8_t *buf, size_t len, uint64_t file_size,
			   kd_payload_index **ret, kd_error *err)
{
	_cleanup_(kd_payload_index_freep) kd_payload_index *ix = NULL;
	uint64_t need = 0;
	int r;

	if (len < KD_PINDEX_TRAILER)
		return kd_err(err, -EBADMSG, "frame index: truncated");
	r = kd_payload_index_trailer(buf + len - KD_PINDEX_TRAILER, file_size, &need, err);
	if (r <= 0)
		return r < 0 ? r : kd_err(err, -EBADMSG, "frame index: no index at the end");
	if (need != len)
		return kd_err(err, -EBADMSG, "frame index: %zu bytes, the trailer says %llu", len,
			      (unsigned long long)need);
	uint32_t n = get32(buf + len - KD_PINDEX_TRAILER);
	uint64_t start = file_size - len; /* offset of the skippable frame */
	if (get32(buf) != KD_PINDEX_SKIP_MAGIC || get32(buf + 4) != content_len(n))
		return kd_err(err, -EBADMSG,
			      "frame index: not a skippable frame of %llu bytes at offset %llu",
			      (unsigned long long)content_len(n), (unsigned long long)start);
	ix = calloc(1, sizeof(*ix));
	if (!ix || !(ix->frames = calloc(n, sizeof(kd_pframe))))
		return kd_err(err, -ENOMEM, "out of memory");
	ix->n = n;
	ix->index_offset = start;
	uint64_t at = 0;
	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *rec = buf + KD_PINDEX_SKIP_HEADER + (size_t)i * KD_PINDEX_RECORD;
		kd_pframe *f = &ix->frames[i];
		f->offset = get64(rec);
		f->size = get64(rec + 8);
		f->tar_size = get64(rec + 16);
		memcpy(f->sha256, rec + 24, sizeof(f->sha256));
		if (f->offset != at)
			return kd_err(err, -EBADMSG,
				      "frame index: frame %u starts at %llu, expected %llu", i,
				      (unsigned long long)f->offset, (unsigned long long)at);
		if (f->size < KD_PINDEX_MIN_FRAME || f->size > start - at)
			return kd_err(
				err, -EBADMSG,
				"frame index: frame %u (%llu bytes at %llu) does not fit before "
				"the index at %llu",
				i, (unsigned long long)f->size, (unsigned long long)at,
				(unsigned long long)start);
		if (f->tar_size % 512 != 0 || f->tar_size > KD_PINDEX_MAX_TAR)
			return kd_err(err, -EBADMSG, "frame index: frame %u: bad tar size %llu", i,
				      (unsigned long long)f->tar_size);
		at += f->size;
	}
	if (at != start)
		return kd_err(err, -EBADMSG,
			      "frame index: the frames end at %llu, the index starts at %llu",
			      (unsigned long long)at, (unsigned long long)start);
	*ret = TAKE_PTR(ix);
	return 0;
}

int kd_payload_index_read(int fd, uint64_t file_size, kd_payload_index **ret, kd_error *err)
{
	uint8_t tail[KD_PINDEX_TRAILER];
	uint64_t len = 0;
	ssize_t n;
	int r;

	if (file_size < KD_PINDEX_TRAILER)
		return 0;
	n = pread(fd, tail, sizeof(tail), (off_t)(file_size - sizeof(tail)));
	if (n < 0)
		return kd_err_errno(err, negative_errno(), "read");
	if ((size_t)n != sizeof(tail))
		return kd_err(err, -EIO, "read: the file shrank");
	if ((r = kd_payload_index_trailer(tail, file_size, &len, err)) <= 0)
		return r;
	_cleanup_free_ uint8_t *buf = malloc(len);
	if (!buf)
		return kd_err(err, -ENOMEM, "out of memory");
	n = pread(fd, buf, len, (off_t)(file_size - len));
	if (n < 0)
		return kd_err_errno(err, negative_errno(), "read");
	if ((uint64_t)n != len)
		return kd_err(err, -EIO, "read: the file shrank");
	if ((r = kd_payload_index_parse(buf, len, file_size, ret, err)) < 0)
		return r;
	return 1;
}

int kd_payload_index_format(const kd_pframe *frames, uint32_t n, uint8_t **ret, size_t *ret_len,
			    kd_error *err)
{
	size_t len = KD_PINDEX_SKIP_HEADER + content_len(n);
	uint8_t *buf = calloc(1, len);

	if (!buf)
		return kd_err(err, -ENOMEM, "out of memory");
	put32(buf, KD_PINDEX_SKIP_MAGIC);
	put32(buf + 4, (uint32_t)content_len(n));
	for (uint32_t i = 0; i < n; i++) {
		uint8_t *rec = buf + KD_PINDEX_SKIP_HEADER + (size_t)i * KD_PINDEX_RECORD;
		put64(rec, frames[i].offset);
		put64(rec + 8, frames[i].size);
		put64(rec + 16, frames[i].tar_size);
		memcpy(rec + 24, frames[i].sha256, sizeof(frames[i].sha256));
	}
	put32(buf + len - KD_PINDEX_TRAILER, n);
	memcpy(buf + len - 8, KD_PINDEX_MAGIC, 8);
	*ret = buf;
	*ret_len = len;
	return 0;
}
