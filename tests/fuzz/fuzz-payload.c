/* Fuzz payload open + extract: the input is a payload file (tar, any compression). Whatever
 * happens, nothing may be created outside the scratch directory; extraction of an accepted
 * payload must verify, and no link of the extracted tree may lead out of it (each is opened
 * with openat2(RESOLVE_BENEATH), which fails with EXDEV at the first step outside). Limits
 * are lowered so one input stays small. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "lib/fsroot.h"
#include "lib/digest.h"
#include "lib/payload.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char scratch[] = "/tmp/kd-fuzz-payload-XXXXXX";

static void remove_scratch(void)
{
	rmdir(scratch);
}

static int count_entries(int dirfd)
{
	int n = 0, fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;

	if (!d)
		abort();
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

static void check_links(const kd_manifest *m, int dfd)
{
	for (size_t i = 0; i < m->n_files; i++) {
		if (m->files[i].type != KD_FILE_SYMLINK)
			continue;
		struct open_how how = {.flags = O_PATH | O_CLOEXEC, .resolve = RESOLVE_BENEATH};
		int fd = (int)syscall(SYS_openat2, dfd, m->files[i].path, &how, sizeof(how));
		if (fd < 0 && errno == EXDEV)
			abort();
		if (fd >= 0)
			close(fd);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	kd_error err = {0};
	kd_payload *p = NULL;
	static int rootfd = -1;
	kd_payload_limits lim = {
		.max_entries = 64, .max_entry_size = 1 << 20, .max_total = 4 << 20};
	kd_extract_opts o = {.reuse_dirfd = -1, .limits = &lim};

	if (rootfd < 0) {
		if (!mkdtemp(scratch))
			abort();
		rootfd = kd_root_open(scratch, NULL);
		if (rootfd < 0)
			abort();
		atexit(remove_scratch);
	}
	int fd = memfd_create("payload", MFD_CLOEXEC);
	if (fd < 0 || write(fd, data, size) != (ssize_t)size)
		abort();
	if (kd_payload_open(fd, "fuzz", NULL, &p, &err) >= 0) {
		if (mkdirat(rootfd, "dest", 0755) < 0)
			abort();
		int dfd = kd_openat(rootfd, "dest", O_RDONLY | O_DIRECTORY, 0, KD_NOFOLLOW, NULL);
		if (dfd < 0)
			abort();
		if (kd_payload_extract(p, dfd, &o, NULL, &err) >= 0) {
			if (kd_payload_verify_tree(kd_payload_manifest(p), NULL, dfd, true, &err) <
			    0)
				abort();
			check_links(kd_payload_manifest(p), dfd);
		}
		close(dfd);
		if (kd_remove_tree(rootfd, "dest", &err) < 0)
			abort();
		kd_payload_free(p);
	}
	/* Again as an install of an unauthenticated payload opens it: the digest hashed on a
	 * thread beside the extraction, the components' frames not hashed. Whatever the frames
	 * hold, an extraction that succeeds holds the manifest's bytes, and the digest is the
	 * one an eager open finds. */
	kd_payload_verify dv = {.defer_digest = true};
	if (kd_payload_open(fd, "fuzz", &dv, &p, &err) >= 0) {
		char eager[KD_SHA256_HEX_LEN + 1] = "";
		kd_payload *q = NULL;
		if (kd_payload_open(fd, "fuzz", NULL, &q, &err) >= 0)
			snprintf(eager, sizeof(eager), "%s", kd_payload_digest(q));
		kd_payload_free(q);
		if (mkdirat(rootfd, "dest", 0755) < 0)
			abort();
		int dfd = kd_openat(rootfd, "dest", O_RDONLY | O_DIRECTORY, 0, KD_NOFOLLOW, NULL);
		if (dfd < 0 || kd_payload_digest_start(p, &err) < 0)
			abort();
		if (kd_payload_extract(p, dfd, &o, NULL, &err) >= 0) {
			if (kd_payload_verify_tree(kd_payload_manifest(p), NULL, dfd, true, &err) <
			    0)
				abort();
			check_links(kd_payload_manifest(p), dfd);
		}
		if (kd_payload_digest_wait(p, &err) < 0 ||
		    (eager[0] && strcmp(eager, kd_payload_digest(p)) != 0))
			abort();
		close(dfd);
		if (kd_remove_tree(rootfd, "dest", &err) < 0)
			abort();
		kd_payload_free(p);
	}
	close(fd);
	/* Only "dest" may ever have been created, and it is gone again. */
	if (count_entries(rootfd) != 0)
		abort();
	return 0;
}
