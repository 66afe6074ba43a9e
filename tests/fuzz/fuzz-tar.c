/* Fuzz the tar reader (lib/tarball.c; tar and tar.zst reach our own lib/tar-native.c, anything
 * else libarchive): the input is a whole archive file, read entry by entry with every data block,
 * once without and once with the decompression thread. Both reads must agree (entries, bytes),
 * every refusal must say why, and no entry may break the reader's promises: a path within the
 * limit without a trailing '/', a link target for links only, data of files only. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "lib/tarball.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int read_all(int fd, bool thread, uint64_t *ret_entries, uint64_t *ret_bytes)
{
	kd_error err = {0};
	kd_tar_reader *r = NULL;
	kd_tar_read_opts o = {.decompress_thread = thread, .max_entries = 1000, .max_path = 512};
	kd_tar_entry e;
	const void *b;
	size_t len;
	uint64_t entries = 0, bytes = 0;
	int rc = kd_tar_open(fd, &o, &r, &err);

	while (rc >= 0 && (rc = kd_tar_next(r, &e, &err)) > 0) {
		size_t pl = strlen(e.path);
		if (pl == 0 || pl > 512 || (pl > 1 && e.path[pl - 1] == '/'))
			abort();
		if ((e.type == KD_ENTRY_SYMLINK || e.type == KD_ENTRY_HARDLINK) != (e.link != NULL))
			abort();
		if (e.type != KD_ENTRY_FILE && e.size != 0)
			abort();
		entries++;
		uint64_t got = 0;
		while ((rc = kd_tar_read_block(r, &b, &len, &err)) > 0) {
			got += len;
			if (len == 0 || got > e.size)
				abort();
			((volatile const uint8_t *)b)[len - 1]; /* readable */
		}
		if (rc == 0 && got != e.size)
			abort();
		bytes += got;
		if (rc < 0)
			break;
	}
	if (rc < 0 && !err.msg[0])
		abort();
	kd_tar_reader_free(r);
	*ret_entries = entries;
	*ret_bytes = bytes;
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int fd = memfd_create("tar", MFD_CLOEXEC);
	uint64_t e0, b0, e1, b1;

	if (fd < 0 || write(fd, data, size) != (ssize_t)size)
		abort();
	int r0 = read_all(fd, false, &e0, &b0);
	int r1 = read_all(fd, true, &e1, &b1);
	if ((r0 < 0) != (r1 < 0) || e0 != e1 || b0 != b1)
		abort();
	close(fd);
	return 0;
}
