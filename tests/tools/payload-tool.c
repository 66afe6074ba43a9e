/* A thin CLI over lib/payload for benchmarks and manual checks:
 *   payload-tool pack SRCDIR OUT [SPEC]
 *   payload-tool extract PAYLOAD DESTDIR [SHIM...]
 * extract prints the stats and the wall time of open + extract. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/payload.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int do_extract(int argc, char **argv)
{
	kd_error err = {0};
	kd_payload *p = NULL;
	kd_extract_stats st = {0};
	bool mask[1024];
	double t0 = now();
	int fd = open(argv[2], O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		perror(argv[2]);
		return 1;
	}
	if (kd_payload_open(fd, argv[2], NULL, &p, &err) < 0)
		goto fail;
	double t1 = now();
	const kd_manifest *m = kd_payload_manifest(p);
	kd_extract_opts o = {.reuse_dirfd = -1};
	if (argc > 4) {
		if (m->n_components > 1024 ||
		    kd_manifest_select(m, (const char *const *)argv + 4, (size_t)(argc - 4), mask,
				       &err) < 0)
			goto fail;
		o.component_mask = mask;
	}
	mkdir(argv[3], 0755);
	int dfd = open(argv[3], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		perror(argv[3]);
		return 1;
	}
	if (kd_payload_extract(p, dfd, &o, &st, &err) < 0)
		goto fail;
	double t2 = now();
	printf("open %.3fs extract %.3fs total %.3fs: %llu files written, %llu linked, %llu bytes, "
	       "%llu skipped, %llu bytes read, %llu bytes decompressed\n",
	       t1 - t0, t2 - t1, t2 - t0, (unsigned long long)st.files_written,
	       (unsigned long long)st.files_linked, (unsigned long long)st.bytes_written,
	       (unsigned long long)st.entries_skipped, (unsigned long long)st.bytes_read,
	       (unsigned long long)st.bytes_decompressed);
	close(dfd);
	close(fd);
	kd_payload_free(p);
	return 0;
fail:
	fprintf(stderr, "payload-tool: %s\n", kd_err_msg(&err));
	return 1;
}

int main(int argc, char **argv)
{
	kd_error err = {0};

	if (argc >= 4 && strcmp(argv[1], "pack") == 0) {
		kd_pack_opts o = {.spec_path = argc > 4 ? argv[4] : NULL,
				  .version = argc > 4 ? NULL : "0.0.0"};
		double t0 = now();
		if (kd_payload_pack(argv[2], argv[3], &o, &err) < 0) {
			fprintf(stderr, "payload-tool: %s\n", kd_err_msg(&err));
			return 1;
		}
		printf("pack %.3fs\n", now() - t0);
		return 0;
	}
	if (argc >= 4 && strcmp(argv[1], "extract") == 0)
		return do_extract(argc, argv);
	fprintf(stderr,
		"usage: payload-tool pack SRCDIR OUT [SPEC] | extract PAYLOAD DEST [SHIM...]\n");
	return 2;
}
