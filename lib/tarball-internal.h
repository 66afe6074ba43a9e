/* Private to lib/tarball.c (the API, libarchive for other formats and for writing) and
 * lib/tar-native.c (our reader of tar and tar.zst): the reader's state and its input. Nothing
 * else includes it. */
#pragma once

#include "tarball.h"

typedef struct tar_pipe tar_pipe;
typedef struct tar_native tar_native;

struct kd_tar_reader {
	struct archive *a; /* libarchive's reader, NULL when native is used */
	tar_native *native;
	int fd;
	kd_tar_range *ranges; /* what to read, in order; one range [0, max) for the whole file */
	size_t n_ranges;
	size_t range;	   /* current range */
	uint64_t range_at; /* bytes of it read */
	uint64_t bytes_read;
	uint64_t entries;
	uint64_t max_entries;
	size_t max_path;
	int64_t data_off; /* next expected data offset in the current entry */
	bool data_left;	  /* libarchive: the current entry is a file, its data is read */
	char *path;	  /* current entry's path, trailing '/' removed */
	size_t path_cap;
	uint8_t *buf; /* KD_TAR_READ_BLOCK bytes (libarchive's input) */
	tar_pipe *pipe;
};

/* Up to len bytes of the selected ranges of the file, in order, into buf: the count, 0 at the
 * end, or -errno with a message in msg (msg_size bytes). */
ssize_t kd_tar_input(kd_tar_reader *r, void *buf, size_t len, char *msg, size_t msg_size);
void kd_tar_input_rewind(kd_tar_reader *r);

/* The native reader (lib/tar-native.c), for ustar, pax and GNU tar, plain or in zstd frames.
 * kd_tar_native_detect: 1 when the first bytes (n of them) are such a stream. */
int kd_tar_native_detect(const uint8_t *head, size_t n);
int kd_tar_native_open(kd_tar_reader *r, bool decompress_thread, kd_error *err);
int kd_tar_native_next(kd_tar_reader *r, kd_tar_entry *ret, kd_error *err);
int kd_tar_native_read_block(kd_tar_reader *r, const void **ret_buf, size_t *ret_len,
			     kd_error *err);
int kd_tar_native_lend(kd_tar_reader *r);
void kd_tar_native_give_back(kd_tar_reader *r, int ticket);
int kd_tar_native_skip(kd_tar_reader *r, kd_error *err);
uint64_t kd_tar_native_bytes_decompressed(const kd_tar_reader *r);
void kd_tar_native_free(tar_native *n);
