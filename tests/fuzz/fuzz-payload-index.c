/* Fuzz the format 2 frame index reader (lib/payload-index.c): the input is a whole payload file.
 * An index that is accepted must describe frames that tile the file from offset 0 up to the
 * index, and formatting those frames again must give back the index's bytes. Then the payload
 * is opened (digests, manifest, index against manifest) to reach the checks behind the index.
 * This target includes the payload module's private header: it tests that module's insides. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "lib/payload-internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	kd_error err = {0};
	kd_payload_index *ix = NULL;
	kd_payload *p = NULL;
	int fd = memfd_create("payload", MFD_CLOEXEC);

	if (fd < 0 || write(fd, data, size) != (ssize_t)size)
		abort();
	int r = kd_payload_index_read(fd, size, &ix, &err);
	if (r < 0 && !err.msg[0])
		abort(); /* every refusal says why */
	if (r > 0) {
		uint64_t at = 0;
		uint8_t *buf = NULL;
		size_t len = 0;
		for (uint32_t i = 0; i < ix->n; i++) {
			if (ix->frames[i].offset != at || ix->frames[i].size == 0)
				abort();
			at += ix->frames[i].size;
		}
		if (at != ix->index_offset || at > size)
			abort();
		if (kd_payload_index_format(ix->frames, ix->n, &buf, &len, NULL) < 0 ||
		    at + len != size || memcmp(buf, data + at, len) != 0)
			abort();
		free(buf);
		kd_payload_index_free(ix);
	}
	if (kd_payload_open(fd, "fuzz", NULL, &p, &err) >= 0) {
		const kd_manifest *m = kd_payload_manifest(p);
		if (kd_payload_format(p) == 2 && m->format != 2)
			abort();
		kd_payload_free(p);
	}
	close(fd);
	return 0;
}
