/* Fuzz kata-deploy payload import: the input is an upstream tarball (tar, any compression).
 * Whatever happens, nothing may be left in the scratch directory but an accepted payload, and
 * an accepted payload must open and name only shims that select. Limits are lowered so one
 * input stays small. */
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "deployer/import.h"
#include "lib/fsroot.h"
#include "lib/payload.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char scratch[] = "/tmp/kd-fuzz-import-XXXXXX";

static void remove_scratch(void)
{
	char out[sizeof(scratch) + 16];
	snprintf(out, sizeof(out), "%s/p.tar.zst", scratch);
	unlink(out);
	rmdir(scratch);
}

static int count_entries(const char *dir)
{
	int n = 0;
	DIR *d = opendir(dir);
	struct dirent *de;
	if (!d)
		abort();
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool ready;
	kd_error err = {0};
	kd_import_result res = {0};
	kd_payload_limits lim = {
		.max_entries = 64, .max_entry_size = 1 << 20, .max_total = 4 << 20};
	kd_import_opts o = {
		.version = "1.0", .arch = "x86_64", .limits = &lim, .threads = 1, .zstd_level = 1};
	char in[64], out[sizeof(scratch) + 16];

	if (!ready) {
		if (!mkdtemp(scratch))
			abort();
		atexit(remove_scratch);
		ready = true;
	}
	int fd = memfd_create("upstream", MFD_CLOEXEC);
	if (fd < 0 || write(fd, data, size) != (ssize_t)size)
		abort();
	snprintf(in, sizeof(in), "/proc/self/fd/%d", fd);
	snprintf(out, sizeof(out), "%s/p.tar.zst", scratch);
	(void)kd_import_sniff(fd);
	int r = kd_import(in, out, &o, &res, &err);
	close(fd);
	if (r < 0) {
		if (count_entries(scratch) != 0)
			abort();
		return 0;
	}
	if (res.n_shims == 0 || count_entries(scratch) != 1)
		abort();
	kd_payload *p = NULL;
	int pfd = open(out, O_RDONLY | O_CLOEXEC);
	if (pfd < 0 || kd_payload_open(pfd, out, NULL, &p, &err) < 0)
		abort();
	const kd_manifest *m = kd_payload_manifest(p);
	bool mask[1024];
	if (m->n_shims != res.n_shims || m->n_components > 1024 ||
	    kd_manifest_select(m, NULL, 0, mask, &err) < 0)
		abort();
	kd_payload_free(p);
	close(pfd);
	unlink(out);
	kd_import_result_done(&res);
	return 0;
}
