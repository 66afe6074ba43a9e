/* Tar archives over libarchive, wrapped once: a streaming reader over an fd (pax, GNU and ustar
 * tar; zstd, xz, gzip or no compression) that reports every entry as our own struct, devices and
 * FIFOs included so callers can refuse them, and a writer that produces deterministic tar (pax
 * restricted, caller-sorted entries, uid/gid 0, no owner names, one fixed mtime, no atime, ctime
 * or xattrs). libarchive's errors become "archive: <message>"; none of its types leak out.
 * Named tarball.h, not archive.h: with -Ilib our header would shadow libarchive's <archive.h>. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "err.h"

#define KD_TAR_MAX_ENTRIES 1000000u /* default limit on entries read */
#define KD_TAR_MAX_PATH 4096u	    /* default limit on an entry's path (and link) bytes */
/* Bytes read from the fd per call, and per block of the decompression pipe (1 MiB cost 2.2 MiB
 * more peak RSS in an install, for no speed). */
#define KD_TAR_READ_BLOCK (256u << 10)
#define KD_TAR_PIPE_BUFFERS 2u /* decompressed blocks in flight with decompress_thread */
/* zstd window of what we write: readers need this much memory (1 MiB) to decompress it, however
 * high the level. */
#define KD_TAR_ZSTD_WINDOW_LOG 20

typedef enum kd_entry_type {
	KD_ENTRY_FILE,
	KD_ENTRY_DIR,
	KD_ENTRY_SYMLINK,
	KD_ENTRY_HARDLINK, /* link holds the path of the earlier entry */
	KD_ENTRY_CHR,
	KD_ENTRY_BLK,
	KD_ENTRY_FIFO,
	KD_ENTRY_SOCK,
	KD_ENTRY_OTHER,
} kd_entry_type;

/* "file", "directory", "symlink", "hardlink", "character device", ... */
const char *kd_entry_type_name(kd_entry_type t);

typedef struct kd_tar_entry {
	const char *path; /* as stored, trailing '/' of directories removed */
	kd_entry_type type;
	mode_t mode;	  /* permission bits including 07000 (setuid, setgid, sticky) */
	uint64_t size;	  /* data bytes that follow (0 for everything but files) */
	const char *link; /* symlink text or hardlink target, else NULL */
} kd_tar_entry;

typedef struct kd_tar_range {
	uint64_t offset, length;
} kd_tar_range;

typedef struct kd_tar_read_opts {
	uint64_t max_entries; /* 0 = KD_TAR_MAX_ENTRIES */
	size_t max_path;      /* 0 = KD_TAR_MAX_PATH */
	/* Decompress on a second thread, KD_TAR_PIPE_BUFFERS blocks ahead of the caller, so that
	 * decompression overlaps hashing and writing. For reading a whole archive. */
	bool decompress_thread;
	/* Read only these byte ranges of the file, in order, as if they were one file (NULL =
	 * the whole file). Each range must hold whole compressed frames so that their
	 * concatenation is a valid stream: a payload's selected components. */
	const kd_tar_range *ranges;
	size_t n_ranges;
} kd_tar_read_opts;

typedef struct kd_tar_reader kd_tar_reader;

/* Start reading the archive in fd from offset 0 (pread: the fd's offset is not used, so the
 * same fd may be read again later). Compression is detected. o may be NULL. */
int kd_tar_open(int fd, const kd_tar_read_opts *o, kd_tar_reader **ret, kd_error *err);
/* Next entry: 1 with *ret filled (its strings live until the next call), 0 at the end. Fails
 * on corrupt or truncated input and when a limit is exceeded. */
int kd_tar_next(kd_tar_reader *r, kd_tar_entry *ret, kd_error *err);
/* Zero-copy data of the current entry: 1 with a block in *ret_buf / *ret_len, 0 at its end.
 * Sparse entries (holes) are refused. */
int kd_tar_read_block(kd_tar_reader *r, const void **ret_buf, size_t *ret_len, kd_error *err);
/* The block the last kd_tar_read_block() returned stays valid after the reader moves on, until
 * kd_tar_give_back(ticket) (callable from any thread): a ticket, or -1 when this reader cannot
 * lend (no decompression thread, or libarchive's reader): copy the bytes instead. Every ticket
 * must come back before the reader is freed; the reader waits for them when its blocks run out,
 * so the borrower must not wait for the reader. */
int kd_tar_lend_block(kd_tar_reader *r);
void kd_tar_give_back(kd_tar_reader *r, int ticket);
/* Skip the rest of the current entry's data. */
int kd_tar_skip(kd_tar_reader *r, kd_error *err);
/* Entries returned so far. */
uint64_t kd_tar_entries(const kd_tar_reader *r);
/* Bytes read from the file so far (compressed), and bytes the decompressor produced (equal for
 * uncompressed input). */
uint64_t kd_tar_bytes_read(const kd_tar_reader *r);
uint64_t kd_tar_bytes_decompressed(const kd_tar_reader *r);
void kd_tar_reader_free(kd_tar_reader *r);

typedef enum kd_compression {
	KD_COMPRESS_ZSTD,
	KD_COMPRESS_NONE,
	KD_COMPRESS_GZIP,
	KD_COMPRESS_XZ,
} kd_compression;

typedef struct kd_tar_write_opts {
	kd_compression compression;
	int level;     /* compression level; 0 = the filter's default */
	int threads;   /* zstd/xz workers; 0 = one. zstd output does not depend on the count;
			  zstd frames carry a checksum and a KD_TAR_ZSTD_WINDOW_LOG window */
	int64_t mtime; /* of every entry */
	/* zstd only: write unblocked, so that kd_tar_writer_end_frame() can end a zstd frame
	 * exactly after an entry (the output is still one valid tar.zst). */
	bool frames;
} kd_tar_write_opts;

/* One zstd frame written: its compressed bytes (and their sha256) and the tar bytes in it. */
typedef struct kd_tar_frame {
	uint64_t size;	   /* compressed bytes */
	uint64_t tar_size; /* uncompressed bytes */
	uint8_t sha256[32];
} kd_tar_frame;

typedef struct kd_tar_writer kd_tar_writer;

/* Write a tar stream to fd (not closed by the writer). */
int kd_tar_writer_open(int fd, const kd_tar_write_opts *o, kd_tar_writer **ret, kd_error *err);
/* Write an entry header; for KD_ENTRY_FILE, exactly e->size bytes of data must follow.
 * Devices are written with device number 0 (they exist for tests that need hostile input). */
int kd_tar_write_header(kd_tar_writer *w, const kd_tar_entry *e, kd_error *err);
int kd_tar_write_data(kd_tar_writer *w, const void *buf, size_t len, kd_error *err);
/* With frames: end the current zstd frame after the last entry written (its padding
 * included) and describe it in *ret. The next entry starts a new frame. */
int kd_tar_writer_end_frame(kd_tar_writer *w, kd_tar_frame *ret, kd_error *err);
/* With frames, between two frames: write the next frames to fd instead. */
void kd_tar_writer_set_fd(kd_tar_writer *w, int fd);
/* Finish the stream (end-of-archive blocks, compressor flush). Must succeed for a valid file.
 * With frames, the end-of-archive blocks are a frame of their own, described in *ret_frame
 * (may be NULL). */
int kd_tar_writer_close(kd_tar_writer *w, kd_error *err);
int kd_tar_writer_close_frame(kd_tar_writer *w, kd_tar_frame *ret_frame, kd_error *err);
/* Free; an unclosed writer is closed first: its output is incomplete, discard it. */
void kd_tar_writer_free(kd_tar_writer *w);

static inline void kd_tar_reader_freep(kd_tar_reader **r)
{
	if (*r)
		kd_tar_reader_free(*r);
}
static inline void kd_tar_writer_freep(kd_tar_writer **w)
{
	if (*w)
		kd_tar_writer_free(*w);
}
#define _cleanup_tar_reader_ _cleanup_(kd_tar_reader_freep)
#define _cleanup_tar_writer_ _cleanup_(kd_tar_writer_freep)
