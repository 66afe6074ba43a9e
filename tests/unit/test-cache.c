/* builder/cache.c digest stamps: a cache hit takes the stored sha256 only while the file's size,
 * mtime and inode are those it was hashed with (and the mtime is older than the hash); anything
 * else rehashes, and content that differs from the stamp is refused and removed. */
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "builder/cache.h"
#include "lib/digest.h"
#include "tap.h"

static char base_dir[] = "/tmp/kd-test-cache-XXXXXX";
static int counter;

/* A file with the given bytes (mode 0444, like a cached tarball) and mtime now + offset. */
static char *cached_file(const char *data, long offset)
{
	char *p;
	if (asprintf(&p, "%s/f%d.tar.zst", base_dir, counter++) < 0)
		abort();
	int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
	if (fd < 0 || write(fd, data, strlen(data)) != (ssize_t)strlen(data))
		abort();
	struct timespec ts[2] = {{.tv_nsec = UTIME_OMIT}, {0}};
	clock_gettime(CLOCK_REALTIME, &ts[1]);
	ts[1].tv_sec += offset;
	if (futimens(fd, ts) < 0)
		abort();
	close(fd);
	return p;
}

static void set_mtime(const char *path, long offset)
{
	struct timespec ts[2] = {{.tv_nsec = UTIME_OMIT}, {0}};
	clock_gettime(CLOCK_REALTIME, &ts[1]);
	ts[1].tv_sec += offset;
	if (utimensat(AT_FDCWD, path, ts, 0) < 0)
		abort();
}

/* Replace byte 0 in place: same size, same inode. */
static void poke(const char *path, char c)
{
	chmod(path, 0644);
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || pwrite(fd, &c, 1, 0) != 1)
		abort();
	close(fd);
	chmod(path, 0444);
}

static bool exists(const char *path, const char *suffix)
{
	char p[512];
	snprintf(p, sizeof(p), "%s%s", path, suffix);
	return access(p, F_OK) == 0;
}

TEST(stamp_is_used_while_the_file_is_unchanged)
{
	_cleanup_free_ char *p = cached_file("component bytes", -3600);
	char want[65], got[65] = "", again[65] = "";
	kd_error err = {0};

	kd_sha256_buf("component bytes", 15, want);
	CHECK_INT(kd_cache_stamp(p, got, &err), 0);
	CHECK_STR(got, want);
	CHECK(exists(p, ".sha256"));
	CHECK_INT(kd_cache_stamped_sha256(p, again, &err), 1);
	CHECK_STR(again, want);
}

TEST(touched_file_is_rehashed_and_restamped)
{
	_cleanup_free_ char *p = cached_file("abc", -3600);
	char want[65], got[65] = "";
	kd_error err = {0};

	kd_sha256_buf("abc", 3, want);
	CHECK_INT(kd_cache_stamp(p, got, &err), 0);
	set_mtime(p, -1800); /* touched, same bytes */
	CHECK_INT(kd_cache_stamped_sha256(p, got, &err), 0);
	CHECK_STR(got, want);
	CHECK_INT(kd_cache_stamped_sha256(p, got, &err), 1); /* the rehash rewrote the stamp */
	CHECK_STR(got, want);
}

TEST(tampered_file_same_size_is_refused_and_removed)
{
	_cleanup_free_ char *p = cached_file("abc", -3600);
	char got[65] = "";
	kd_error err = {0};

	CHECK_INT(kd_cache_stamp(p, got, &err), 0);
	poke(p, 'x');
	set_mtime(p, -1800);
	CHECK_INT(kd_cache_stamped_sha256(p, got, &err), -EBADMSG);
	CHECK(strstr(kd_err_msg(&err), "changed since it was stored") != NULL);
	CHECK(!exists(p, ""));
	CHECK(!exists(p, ".sha256"));
}

TEST(mtime_not_older_than_the_hash_is_never_trusted)
{
	/* A write in the clock tick the hash started in keeps the mtime: such a stamp is not
	 * trusted, so even a change that restores size and mtime exactly is found. */
	_cleanup_free_ char *p = cached_file("abc", 3600);
	struct stat st;
	char got[65] = "";
	kd_error err = {0};

	CHECK_INT(kd_cache_stamp(p, got, &err), 0);
	CHECK_INT(stat(p, &st), 0);
	poke(p, 'x');
	struct timespec ts[2] = {{.tv_nsec = UTIME_OMIT}, st.st_mtim};
	CHECK_INT(utimensat(AT_FDCWD, p, ts, 0), 0);
	CHECK_INT(kd_cache_stamped_sha256(p, got, &err), -EBADMSG);
}

TEST(new_inode_is_rehashed)
{
	_cleanup_free_ char *p = cached_file("abc", -3600), *q = NULL;
	char want[65], got[65] = "";
	kd_error err = {0};
	struct stat st;

	kd_sha256_buf("abc", 3, want);
	CHECK_INT(kd_cache_stamp(p, got, &err), 0);
	CHECK_INT(stat(p, &st), 0);
	/* The same bytes and mtime under a new inode (a copy renamed over it). */
	if (asprintf(&q, "%s.copy", p) < 0)
		abort();
	int fd = open(q, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
	CHECK(fd >= 0 && write(fd, "abc", 3) == 3);
	struct timespec ts[2] = {{.tv_nsec = UTIME_OMIT}, st.st_mtim};
	CHECK_INT(futimens(fd, ts), 0);
	close(fd);
	CHECK_INT(rename(q, p), 0);
	CHECK_INT(kd_cache_stamped_sha256(p, got, &err), 0);
	CHECK_STR(got, want);
}

TEST(missing_or_garbage_stamp_is_rehashed_and_written)
{
	_cleanup_free_ char *p = cached_file("abc", -3600), *sp = NULL;
	char want[65], got[65] = "";
	kd_error err = {0};

	kd_sha256_buf("abc", 3, want);
	CHECK_INT(kd_cache_stamped_sha256(p, got, &err), 0); /* a cache from before stamps */
	CHECK_STR(got, want);
	CHECK_INT(kd_cache_stamped_sha256(p, got, &err), 1);
	if (asprintf(&sp, "%s.sha256", p) < 0)
		abort();
	unlink(sp);
	int fd = open(sp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	CHECK(fd >= 0 && write(fd, "garbage\n", 8) == 8);
	close(fd);
	CHECK_INT(kd_cache_stamped_sha256(p, got, &err), 0);
	CHECK_STR(got, want);
	CHECK_INT(kd_cache_stamped_sha256(p, got, &err), 1);
}

TEST(edited_stamp_fields_are_not_trusted)
{
	_cleanup_free_ char *p = cached_file("abc", -3600), *sp = NULL;
	char want[65], got[65] = "", text[256];
	kd_error err = {0};

	kd_sha256_buf("abc", 3, want);
	CHECK_INT(kd_cache_stamp(p, got, &err), 0);
	if (asprintf(&sp, "%s.sha256", p) < 0)
		abort();
	int fd = open(sp, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, text, sizeof(text) - 1) : -1;
	close(fd);
	CHECK(n > 0);
	text[n > 0 ? n : 0] = '\0';
	char *size = strstr(text, "\nsize 3\n");
	CHECK(size != NULL);
	if (!size)
		return;
	size[6] = '4'; /* a stamp for another size: rehash, and the hash still matches */
	unlink(sp);
	fd = open(sp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	CHECK(fd >= 0 && write(fd, text, (size_t)n) == n);
	close(fd);
	CHECK_INT(kd_cache_stamped_sha256(p, got, &err), 0);
	CHECK_STR(got, want);
}

int main(void)
{
	if (!mkdtemp(base_dir))
		return 1;
	RUN(stamp_is_used_while_the_file_is_unchanged);
	RUN(touched_file_is_rehashed_and_restamped);
	RUN(tampered_file_same_size_is_refused_and_removed);
	RUN(mtime_not_older_than_the_hash_is_never_trusted);
	RUN(new_inode_is_rehashed);
	RUN(missing_or_garbage_stamp_is_rehashed_and_written);
	RUN(edited_stamp_fields_are_not_trusted);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base_dir);
	if (system(cmd) != 0)
		printf("# could not remove %s\n", base_dir);
	TAP_END();
}
