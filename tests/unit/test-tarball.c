/* lib/tarball: write with every compression and read back (with and without the decompression
 * thread), deterministic output, entry types including devices and FIFOs, limits, GNU tar
 * interoperability, truncated and corrupt input. */
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/tarball.h"
#include "tap.h"

static char dir[] = "/tmp/kd-test-tarball-XXXXXX";

static char *path_of(const char *name)
{
	static char buf[8][512];
	static int i;
	i = (i + 1) % 8;
	snprintf(buf[i], sizeof(buf[i]), "%s/%s", dir, name);
	return buf[i];
}

static uint8_t big[3 << 20];

static bool has_str(const char *s, const char *want)
{
	if (strcmp(s, want) == 0)
		return true;
	printf("#   got \"%s\", want \"%s\"\n", s, want);
	return false;
}

/* Writes: d/, d/f (3 MiB), d/l -> f, d/h => d/f, d/fifo, d/null (char 0), d/empty. */
static int write_sample(const char *path, kd_compression c, int threads, kd_error *err)
{
	kd_tar_writer *w = NULL;
	kd_tar_write_opts o = {.compression = c, .level = 3, .threads = threads, .mtime = 42};
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	int r;

	if (fd < 0)
		return -errno;
	const kd_tar_entry es[] = {
		{.path = "d", .type = KD_ENTRY_DIR, .mode = 0755},
		{.path = "d/empty", .type = KD_ENTRY_FILE, .mode = 0644, .size = 0},
		{.path = "d/f", .type = KD_ENTRY_FILE, .mode = 04755, .size = sizeof(big)},
		{.path = "d/fifo", .type = KD_ENTRY_FIFO, .mode = 0600},
		{.path = "d/h", .type = KD_ENTRY_HARDLINK, .mode = 0755, .link = "d/f"},
		{.path = "d/l", .type = KD_ENTRY_SYMLINK, .mode = 0777, .link = "f"},
		{.path = "d/null", .type = KD_ENTRY_CHR, .mode = 0666},
	};
	r = kd_tar_writer_open(fd, &o, &w, err);
	for (size_t i = 0; r >= 0 && i < ELEMENTSOF(es); i++) {
		r = kd_tar_write_header(w, &es[i], err);
		if (r >= 0 && es[i].type == KD_ENTRY_FILE && es[i].size)
			r = kd_tar_write_data(w, big, sizeof(big), err);
	}
	if (r >= 0)
		r = kd_tar_writer_close(w, err);
	kd_tar_writer_free(w);
	close(fd);
	return r;
}

static void read_sample(const char *path, bool thread)
{
	kd_error err = {0};
	kd_tar_reader *r = NULL;
	kd_tar_entry e;
	kd_tar_read_opts o = {.decompress_thread = thread};
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	CHECK(fd >= 0);
	CHECK_INT(kd_tar_open(fd, &o, &r, &err), 0);
	if (!r) {
		printf("#   %s\n", err.msg);
		return;
	}
	static const struct {
		const char *path;
		kd_entry_type type;
		mode_t mode;
		uint64_t size;
		const char *link;
	} want[] = {
		{"d", KD_ENTRY_DIR, 0755, 0, NULL},
		{"d/empty", KD_ENTRY_FILE, 0644, 0, NULL},
		{"d/f", KD_ENTRY_FILE, 04755, sizeof(big), NULL},
		{"d/fifo", KD_ENTRY_FIFO, 0600, 0, NULL},
		{"d/h", KD_ENTRY_HARDLINK, 0755, 0, "d/f"},
		{"d/l", KD_ENTRY_SYMLINK, 0777, 0, "f"},
		{"d/null", KD_ENTRY_CHR, 0666, 0, NULL},
	};
	for (size_t i = 0; i < ELEMENTSOF(want); i++) {
		CHECK_INT(kd_tar_next(r, &e, &err), 1);
		CHECK_STR(e.path, want[i].path);
		CHECK_INT(e.type, want[i].type);
		CHECK_INT(e.mode, want[i].mode);
		CHECK_INT(e.size, want[i].size);
		if (want[i].link)
			CHECK_STR(e.link, want[i].link);
		else
			CHECK(e.link == NULL);
		if (want[i].size) {
			const void *b;
			size_t len, off = 0;
			bool same = true;
			int rc;
			while ((rc = kd_tar_read_block(r, &b, &len, &err)) > 0) {
				if (off + len > sizeof(big) || memcmp(big + off, b, len) != 0)
					same = false;
				off += len;
			}
			CHECK_INT(rc, 0);
			CHECK_INT(off, sizeof(big));
			CHECK(same);
		}
	}
	CHECK_INT(kd_tar_next(r, &e, &err), 0);
	CHECK_INT(kd_tar_entries(r), ELEMENTSOF(want));
	kd_tar_reader_free(r);
	close(fd);
}

TEST(roundtrip_all_compressions)
{
	static const kd_compression cs[] = {KD_COMPRESS_ZSTD, KD_COMPRESS_NONE, KD_COMPRESS_GZIP,
					    KD_COMPRESS_XZ};
	kd_error err = {0};

	for (size_t i = 0; i < ELEMENTSOF(cs); i++) {
		char name[32];
		snprintf(name, sizeof(name), "sample-%zu.tar", i);
		CHECK_INT(write_sample(path_of(name), cs[i], 1, &err), 0);
		read_sample(path_of(name), false);
		read_sample(path_of(name), true);
	}
}

TEST(deterministic_zstd)
{
	kd_error err = {0};
	char cmd[1200];

	CHECK_INT(write_sample(path_of("a.tar.zst"), KD_COMPRESS_ZSTD, 1, &err), 0);
	CHECK_INT(write_sample(path_of("b.tar.zst"), KD_COMPRESS_ZSTD, 2, &err), 0);
	CHECK_INT(write_sample(path_of("c.tar.gz"), KD_COMPRESS_GZIP, 1, &err), 0);
	sleep(1); /* a timestamp in the gzip header would now differ */
	CHECK_INT(write_sample(path_of("d.tar.gz"), KD_COMPRESS_GZIP, 1, &err), 0);
	snprintf(cmd, sizeof(cmd), "cmp -s '%s' '%s' && cmp -s '%s' '%s'", path_of("a.tar.zst"),
		 path_of("b.tar.zst"), path_of("c.tar.gz"), path_of("d.tar.gz"));
	CHECK_INT(system(cmd), 0);
}

/* Our zstd frames: a checksum, a window of at most 1 << KD_TAR_ZSTD_WINDOW_LOG bytes whatever
 * the level (readers' memory), and the zstd tool accepts them. */
TEST(zstd_frame)
{
	kd_error err = {0};
	char cmd[1200];
	kd_tar_writer *w = NULL;
	const char *tz = path_of("z.tar.zst");
	kd_tar_write_opts o = {.compression = KD_COMPRESS_ZSTD, .level = 19, .threads = 2};
	kd_tar_entry e = {.path = "f", .type = KD_ENTRY_FILE, .mode = 0644, .size = sizeof(big)};
	int fd = open(tz, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	CHECK(fd >= 0);
	CHECK_INT(kd_tar_writer_open(fd, &o, &w, &err), 0);
	CHECK_INT(kd_tar_write_header(w, &e, &err), 0);
	CHECK_INT(kd_tar_write_data(w, big, sizeof(big), &err), 0);
	CHECK_INT(kd_tar_writer_close(w, &err), 0);
	kd_tar_writer_free(w);
	close(fd);
	snprintf(cmd, sizeof(cmd),
		 "zstd -q -t '%s' && zstd -lv '%s' | grep -q 'Check: XXH64' && "
		 "test \"$(zstd -lv '%s' | sed -n 's/^Window Size:.*(\\([0-9]*\\) B)$/\\1/p')\" "
		 "-le %u",
		 tz, tz, tz, 1u << KD_TAR_ZSTD_WINDOW_LOG);
	CHECK_INT(system(cmd), 0);
	/* And libarchive (our reader) reads it back. */
	kd_tar_reader *r = NULL;
	kd_tar_read_opts ro = {.decompress_thread = true};
	const void *b;
	size_t len, total = 0;
	fd = open(tz, O_RDONLY | O_CLOEXEC);
	CHECK(fd >= 0);
	CHECK_INT(kd_tar_open(fd, &ro, &r, &err), 0);
	if (!r)
		return;
	CHECK_INT(kd_tar_next(r, &e, &err), 1);
	while (kd_tar_read_block(r, &b, &len, &err) > 0)
		total += len;
	CHECK_INT(total, sizeof(big));
	CHECK_INT(kd_tar_next(r, &e, &err), 0);
	kd_tar_reader_free(r);
	close(fd);
}

/* Frames: each group of entries ends its own zstd frame; a reader given some of the frames (as
 * ranges) sees exactly their entries, with or without the decompression thread, and counts the
 * bytes it read and decompressed. */
TEST(frames_and_ranges)
{
	kd_error err = {0};
	kd_tar_writer *w = NULL;
	const char *tz = path_of("frames.tar.zst");
	kd_tar_write_opts o = {
		.compression = KD_COMPRESS_ZSTD, .level = 3, .threads = 2, .frames = true};
	kd_tar_frame f[4];
	const char *names[3] = {"a", "b", "c"};
	int fd = open(tz, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	char cmd[1200];

	CHECK(fd >= 0);
	CHECK_INT(kd_tar_writer_open(fd, &o, &w, &err), 0);
	if (!w)
		return;
	for (int i = 0; i < 3; i++) {
		/* Frame i: a directory and a file of (i + 1) * 100000 bytes. */
		kd_tar_entry d = {.path = names[i], .type = KD_ENTRY_DIR, .mode = 0755};
		char p[8];
		snprintf(p, sizeof(p), "%s/f", names[i]);
		kd_tar_entry e = {.path = p,
				  .type = KD_ENTRY_FILE,
				  .mode = 0644,
				  .size = (uint64_t)(i + 1) * 100000};
		CHECK_INT(kd_tar_write_header(w, &d, &err), 0);
		CHECK_INT(kd_tar_write_header(w, &e, &err), 0);
		CHECK_INT(kd_tar_write_data(w, big, e.size, &err), 0);
		CHECK_INT(kd_tar_writer_end_frame(w, &f[i], &err), 0);
		/* Header, data padded to 512, directory header. */
		CHECK(f[i].tar_size == 512 + (e.size + 511) / 512 * 512 + 512);
	}
	CHECK_INT(kd_tar_writer_close_frame(w, &f[3], &err), 0);
	CHECK(f[3].tar_size == 1024);
	kd_tar_writer_free(w);
	close(fd);
	struct stat st;
	CHECK(stat(tz, &st) == 0 &&
	      (uint64_t)st.st_size == f[0].size + f[1].size + f[2].size + f[3].size);
	/* Four frames for zstd, one archive for GNU tar. */
	snprintf(cmd, sizeof(cmd),
		 "test \"$(zstd -lv '%s' | sed -n 's/^# Zstandard Frames: *//p')\" = 4 && "
		 "test \"$(tar -I zstd -tf '%s' | tr '\\n' ' ')\" = 'a/ a/f b/ b/f c/ c/f '",
		 tz, tz);
	CHECK_INT(system(cmd), 0);

	/* Frames 0 and 2 and the end: a and c only. */
	kd_tar_range rg[3] = {{0, f[0].size},
			      {f[0].size + f[1].size, f[2].size},
			      {f[0].size + f[1].size + f[2].size, f[3].size}};
	for (int thread = 0; thread < 2; thread++) {
		kd_tar_reader *r = NULL;
		kd_tar_read_opts ro = {.decompress_thread = thread, .ranges = rg, .n_ranges = 3};
		kd_tar_entry e;
		char seen[64] = "";
		fd = open(tz, O_RDONLY | O_CLOEXEC);
		CHECK_INT(kd_tar_open(fd, &ro, &r, &err), 0);
		if (!r)
			return;
		while (kd_tar_next(r, &e, &err) > 0) {
			strncat(seen, e.path, sizeof(seen) - strlen(seen) - 2);
			strcat(seen, " ");
		}
		CHECK(has_str(seen, "a a/f c c/f "));
		CHECK(kd_tar_bytes_read(r) == f[0].size + f[2].size + f[3].size);
		CHECK(kd_tar_bytes_decompressed(r) ==
		      f[0].tar_size + f[2].tar_size + f[3].tar_size);
		kd_tar_reader_free(r);
		close(fd);
	}
	/* A file that ends inside a range is an error, not a short archive. */
	snprintf(cmd, sizeof(cmd), "head -c %llu '%s' > '%s'",
		 (unsigned long long)(f[0].size + f[1].size / 2), tz, path_of("cut.tar.zst"));
	CHECK_INT(system(cmd), 0);
	kd_tar_range cut[2] = {{0, f[0].size}, {f[0].size, f[1].size}};
	kd_tar_read_opts ro = {.ranges = cut, .n_ranges = 2};
	kd_tar_reader *r = NULL;
	kd_tar_entry e;
	const void *b;
	size_t n;
	int rc = 0;
	fd = open(path_of("cut.tar.zst"), O_RDONLY | O_CLOEXEC);
	err = (kd_error){0};
	/* libarchive reads ahead: the error may come when it opens the archive. */
	rc = kd_tar_open(fd, &ro, &r, &err);
	while (r && (rc = kd_tar_next(r, &e, &err)) > 0)
		while ((rc = kd_tar_read_block(r, &b, &n, &err)) > 0)
			;
	kd_tar_reader_free(r);
	CHECK(rc < 0 && strstr(err.msg, "read: the file ends inside bytes"));
	close(fd);
	/* end_frame needs frames mode. */
	fd = open(path_of("noframes.tar.zst"), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	o.frames = false;
	CHECK_INT(kd_tar_writer_open(fd, &o, &w, &err), 0);
	CHECK(kd_tar_writer_end_frame(w, &f[0], &err) == -EINVAL);
	kd_tar_writer_free(w);
	close(fd);
}

/* Every entry of an archive as "path type size [-> link] [:data]" lines. */
static int list_all(const char *path, bool thread, char *out, size_t cap, kd_error *err)
{
	kd_tar_reader *r = NULL;
	kd_tar_read_opts o = {.decompress_thread = thread};
	kd_tar_entry e;
	const void *b;
	size_t len;
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc;

	out[0] = '\0';
	if (fd < 0)
		return -errno;
	rc = kd_tar_open(fd, &o, &r, err);
	while (rc >= 0 && (rc = kd_tar_next(r, &e, err)) > 0) {
		size_t at = strlen(out);
		snprintf(out + at, cap - at, "%s %s %llu%s%s", e.path, kd_entry_type_name(e.type),
			 (unsigned long long)e.size, e.link ? " -> " : "", e.link ? e.link : "");
		if (e.size && e.size < 64) {
			strncat(out, " :", cap - strlen(out) - 1);
			while ((rc = kd_tar_read_block(r, &b, &len, err)) > 0)
				strncat(out, b, len < cap - strlen(out) - 1 ? len : 0);
			if (rc < 0)
				break;
		}
		strncat(out, "\n", cap - strlen(out) - 1);
	}
	kd_tar_reader_free(r);
	close(fd);
	return rc;
}

/* Our reader (lib/tar-native.c) on GNU tar's ustar (name + prefix), pax (long names and link
 * targets) and GNU (long names, sparse) output, plain and through zstd, with and without the
 * thread; damaged headers and sparse entries are refused; xz still goes through libarchive. */
TEST(native_reader_formats)
{
	kd_error err = {0};
	char cmd[8192], got[4096];
	/* 150 bytes: fits ustar's prefix + name; 300 bytes: needs a pax or GNU long name. */
	char mid[151], lng[301];
	memset(mid, 'm', 150);
	mid[150] = '\0';
	memset(lng, 'L', 300);
	lng[300] = '\0';
	mid[60] = lng[100] = lng[200] = '/';
	snprintf(cmd, sizeof(cmd),
		 "set -e; cd '%s' && rm -rf nt && mkdir -p nt/'%s' nt/'%s' && cd nt && "
		 "printf hello > '%s/f' && printf world > '%s/f' && ln -s '%s/f' sl && "
		 "ln '%s/f' hl && "
		 "tar --sort=name --format=ustar -cf ../ustar.tar '%s/f' && "
		 "tar --sort=name --format=pax -cf ../pax.tar '%s/f' '%s/f' sl hl && "
		 "tar --sort=name --format=gnu -cf ../gnu.tar '%s/f' sl && "
		 "zstd -q -f ../pax.tar -o ../pax.tar.zst && xz -kf ../gnu.tar && "
		 "truncate -s 1M sparse && printf x >> sparse && "
		 "tar --sparse --format=gnu -cf ../sparse-gnu.tar sparse && "
		 "tar --sparse --format=pax -cf ../sparse-pax.tar sparse",
		 dir, mid, lng, mid, lng, lng, mid, mid, mid, lng, lng);
	CHECK_INT(system(cmd), 0);

	char want[4096];
	CHECK_INT(list_all(path_of("ustar.tar"), false, got, sizeof(got), &err), 0);
	snprintf(want, sizeof(want), "%s/f file 5 :hello\n", mid);
	CHECK(has_str(got, want));
	snprintf(want, sizeof(want),
		 "%s/f file 5 :hello\n%s/f file 5 :world\nsl symlink 0 -> %s/f\nhl hardlink 0 -> "
		 "%s/f\n",
		 mid, lng, lng, mid);
	for (int thread = 0; thread < 2; thread++) {
		CHECK_INT(list_all(path_of("pax.tar"), thread, got, sizeof(got), &err), 0);
		CHECK(has_str(got, want));
		CHECK_INT(list_all(path_of("pax.tar.zst"), thread, got, sizeof(got), &err), 0);
		CHECK(has_str(got, want));
	}
	snprintf(want, sizeof(want), "%s/f file 5 :world\nsl symlink 0 -> %s/f\n", lng, lng);
	CHECK_INT(list_all(path_of("gnu.tar"), false, got, sizeof(got), &err), 0);
	CHECK(has_str(got, want));
	CHECK_INT(list_all(path_of("gnu.tar.xz"), false, got, sizeof(got), &err), 0);
	CHECK(has_str(got, want));

	CHECK_INT(list_all(path_of("sparse-gnu.tar"), false, got, sizeof(got), &err), -EBADMSG);
	CHECK_STR(err.msg, "archive: 'sparse': sparse entries are not supported");
	CHECK_INT(list_all(path_of("sparse-pax.tar"), false, got, sizeof(got), &err), -EBADMSG);
	CHECK(strstr(err.msg, "sparse entries are not supported") != NULL);

	/* One byte of the header's name changed: its checksum no longer matches. */
	snprintf(cmd, sizeof(cmd),
		 "cp '%s' '%s' && printf X | dd of='%s' bs=1 seek=10 conv=notrunc status=none",
		 path_of("ustar.tar"), path_of("bad.tar"), path_of("bad.tar"));
	CHECK_INT(system(cmd), 0);
	CHECK_INT(list_all(path_of("bad.tar"), false, got, sizeof(got), &err), -EBADMSG);
	CHECK(strstr(err.msg, "archive: damaged tar header (bad checksum)") != NULL);
	/* Cut inside an entry's data: truncated, not a short file. */
	snprintf(cmd, sizeof(cmd), "head -c 700 '%s' > '%s'", path_of("ustar.tar"),
		 path_of("cut.tar"));
	CHECK_INT(system(cmd), 0);
	CHECK_INT(list_all(path_of("cut.tar"), false, got, sizeof(got), &err), -EIO);
	CHECK(strstr(err.msg, "archive: truncated input") != NULL);
}

TEST(gnu_tar_reads_ours)
{
	kd_error err = {0};
	char cmd[1200];

	char tz[512], list[512];
	snprintf(tz, sizeof(tz), "%s", path_of("g.tar.zst"));
	snprintf(list, sizeof(list), "%s", path_of("g.list"));
	CHECK_INT(write_sample(tz, KD_COMPRESS_ZSTD, 1, &err), 0);
	/* uid/gid 0, empty owner names, mtime 42 for every entry; no pax atime/ctime records. */
	snprintf(
		cmd, sizeof(cmd),
		"tar -I zstd --numeric-owner --full-time -tvf '%s' > '%s' && test $(wc -l < '%s') = 7 && "
		"! grep -v ' 0/0 ' '%s' && ! grep -v '1970-01-01 00:00:42' '%s' && "
		"! zstd -dc '%s' | grep -a -q -e 'atime=' -e 'ctime=' -e 'SCHILY.xattr'",
		path_of("g.tar.zst"), path_of("g.list"), path_of("g.list"), path_of("g.list"),
		path_of("g.list"), path_of("g.tar.zst"));
	CHECK_INT(system(cmd), 0);
}

TEST(reads_gnu_tar)
{
	kd_error err = {0};
	kd_tar_reader *r = NULL;
	kd_tar_entry e;
	char cmd[1200];
	int n = 0, files = 0;

	/* GNU format with a long name, written by GNU tar and compressed by the zstd CLI. */
	snprintf(
		cmd, sizeof(cmd),
		"cd '%s' && mkdir -p src/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/"
		"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb && "
		"echo hi > src/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/"
		"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb/file && "
		"tar --format=gnu -I zstd -cf gnu.tar.zst src",
		dir);
	CHECK_INT(system(cmd), 0);
	int fd = open(path_of("gnu.tar.zst"), O_RDONLY);
	CHECK_INT(kd_tar_open(fd, NULL, &r, &err), 0);
	if (!r)
		return;
	int rc;
	while ((rc = kd_tar_next(r, &e, &err)) > 0) {
		n++;
		if (e.type == KD_ENTRY_FILE) {
			files++;
			CHECK(strlen(e.path) > 140);
			CHECK_INT(e.size, 3);
		}
	}
	CHECK_INT(rc, 0);
	CHECK_INT(n, 4);
	CHECK_INT(files, 1);
	kd_tar_reader_free(r);
	close(fd);
}

static int read_all(const char *path, const kd_tar_read_opts *o, kd_error *err)
{
	kd_tar_reader *r = NULL;
	kd_tar_entry e;
	const void *b;
	size_t len;
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc;

	if (fd < 0)
		return -errno;
	rc = kd_tar_open(fd, o, &r, err);
	while (rc >= 0 && (rc = kd_tar_next(r, &e, err)) > 0)
		while ((rc = kd_tar_read_block(r, &b, &len, err)) > 0)
			;
	kd_tar_reader_free(r);
	close(fd);
	return rc;
}

TEST(limits)
{
	kd_error err = {0};
	kd_tar_read_opts o = {.max_entries = 3};

	CHECK_INT(write_sample(path_of("l.tar.zst"), KD_COMPRESS_ZSTD, 1, &err), 0);
	CHECK_INT(read_all(path_of("l.tar.zst"), &o, &err), -E2BIG);
	CHECK_STR(err.msg, "archive: more than 3 entries");
	o = (kd_tar_read_opts){.max_path = 4};
	CHECK_INT(read_all(path_of("l.tar.zst"), &o, &err), -ENAMETOOLONG);
	CHECK(strstr(err.msg, "'d/empty") && strstr(err.msg, "longer than 4 bytes"));
}

static void damage_and_read(const char *tag, bool truncate_it, bool thread)
{
	kd_error err = {0};
	char name[64], cmd[1200];
	kd_tar_read_opts o = {.decompress_thread = thread};
	struct stat st;

	snprintf(name, sizeof(name), "%s-%d.tar.zst", tag, thread);
	CHECK_INT(write_sample(path_of(name), KD_COMPRESS_ZSTD, 1, &err), 0);
	CHECK_INT(stat(path_of(name), &st), 0);
	if (truncate_it) {
		CHECK_INT(truncate(path_of(name), st.st_size / 2), 0);
	} else {
		snprintf(
			cmd, sizeof(cmd),
			"printf 'garbage-garbage-garbage' | dd of='%s' bs=1 seek=%lld conv=notrunc "
			"status=none",
			path_of(name), (long long)st.st_size / 3);
		CHECK_INT(system(cmd), 0);
	}
	int rc = read_all(path_of(name), &o, &err);
	CHECK(rc < 0);
	CHECK(strncmp(err.msg, "archive: ", 9) == 0);
	printf("#   %s (thread %d): %s\n", tag, thread, err.msg);
}

TEST(truncated)
{
	damage_and_read("trunc", true, false);
	damage_and_read("trunc", true, true);
}

TEST(corrupt)
{
	damage_and_read("corrupt", false, false);
	damage_and_read("corrupt", false, true);
}

TEST(not_an_archive)
{
	kd_error err = {0};
	int fd = open(path_of("junk"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
	CHECK(write(fd, "this is not a tar file at all\n", 30) == 30);
	close(fd);
	CHECK(read_all(path_of("junk"), NULL, &err) < 0);
	CHECK(strncmp(err.msg, "archive: ", 9) == 0);
	kd_tar_read_opts o = {.decompress_thread = true};
	CHECK(read_all(path_of("junk"), &o, &err) < 0);
	/* An empty file has no entries. */
	fd = open(path_of("empty"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
	close(fd);
	CHECK(read_all(path_of("empty"), &o, &err) <= 0);
}

TEST(bad_writer_input)
{
	kd_error err = {0};
	kd_tar_writer *w = NULL;
	kd_tar_write_opts o = {.compression = KD_COMPRESS_NONE};
	int fd = open(path_of("bad.tar"), O_WRONLY | O_CREAT | O_TRUNC, 0644);

	CHECK_INT(kd_tar_writer_open(fd, &o, &w, &err), 0);
	kd_tar_entry e = {.path = "x", .type = KD_ENTRY_SYMLINK, .mode = 0777};
	CHECK_INT(kd_tar_write_header(w, &e, &err), -EINVAL);
	CHECK(strstr(err.msg, "'x'") != NULL);
	kd_tar_writer_free(w);
	close(fd);
	CHECK_STR(kd_entry_type_name(KD_ENTRY_BLK), "block device");
}

/* Lent blocks (kd_tar_lend_block): they keep their bytes while the reader moves on, up to the
 * ring's size; a loan given back frees its block; the plain-tar and libarchive readers and a
 * reader without a thread do not lend. */
TEST(lend_blocks)
{
	kd_error err = {0};
	kd_tar_reader *r = NULL;
	kd_tar_entry e;
	kd_tar_read_opts o = {.decompress_thread = true};
	const char *zst = path_of("lend.tar.zst");
	CHECK_INT(write_sample(zst, KD_COMPRESS_ZSTD, 1, &err), 0);
	int fd = open(zst, O_RDONLY | O_CLOEXEC);
	CHECK_INT(kd_tar_open(fd, &o, &r, &err), 0);
	while (r && kd_tar_next(r, &e, &err) == 1 && strcmp(e.path, "d/f") != 0)
		;
	/* Keep up to 3 loans outstanding (what the writer holds: lib/fwriter.c's NCHUNK chunks,
	 * one lent block each), checking each block's bytes only when it comes back, after the
	 * reader went on. */
	struct {
		const uint8_t *b;
		size_t len, off;
		int t;
	} held[3];
	size_t nheld = 0, off = 0, loans = 0;
	bool same = true;
	const void *b;
	size_t len;
	int rc;
	while (r && (rc = kd_tar_read_block(r, &b, &len, &err)) > 0) {
		int t = kd_tar_lend_block(r);
		CHECK(t >= 0);
		if (nheld == 3) {
			same = same && memcmp(big + held[0].off, held[0].b, held[0].len) == 0;
			kd_tar_give_back(r, held[0].t);
			memmove(held, held + 1, 2 * sizeof(held[0]));
			nheld--;
		}
		held[nheld++] = (__typeof__(held[0])){b, len, off, t};
		off += len;
		loans++;
	}
	for (size_t i = 0; i < nheld; i++) {
		same = same && memcmp(big + held[i].off, held[i].b, held[i].len) == 0;
		kd_tar_give_back(r, held[i].t);
	}
	CHECK(same);
	CHECK_INT(off, sizeof(big));
	CHECK(loans >= 10); /* 3 MiB in 256 KiB blocks: the ring was reused under loans */
	CHECK_INT(kd_tar_next(r, &e, &err), 1); /* and reading goes on */
	kd_tar_reader_free(r);
	close(fd);

	/* No thread, or plain tar: nothing to lend. */
	o.decompress_thread = false;
	fd = open(zst, O_RDONLY | O_CLOEXEC);
	CHECK_INT(kd_tar_open(fd, &o, &r, &err), 0);
	while (r && kd_tar_next(r, &e, &err) == 1 && strcmp(e.path, "d/f") != 0)
		;
	CHECK(r && kd_tar_read_block(r, &b, &len, &err) == 1 && kd_tar_lend_block(r) == -1);
	kd_tar_reader_free(r);
	close(fd);
}

int main(void)
{
	if (!mkdtemp(dir))
		return 1;
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)((i * 2654435761u) >> 13);
	RUN(roundtrip_all_compressions);
	RUN(deterministic_zstd);
	RUN(lend_blocks);
	RUN(zstd_frame);
	RUN(frames_and_ranges);
	RUN(gnu_tar_reads_ours);
	RUN(reads_gnu_tar);
	RUN(native_reader_formats);
	RUN(limits);
	RUN(truncated);
	RUN(corrupt);
	RUN(not_an_archive);
	RUN(bad_writer_input);
	if (!tap_failed) {
		char cmd[200];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		if (system(cmd) != 0)
			return 1;
	}
	TAP_END();
}
