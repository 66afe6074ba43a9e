#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err.h"
#include "fsroot.h"
#include "tap.h"

static char tmpl[] = "/tmp/kd-fsroot-XXXXXX";
static int rootfd = -1;

TEST(test_path_is_safe)
{
	CHECK(kd_path_is_safe("a/b/c"));
	CHECK(kd_path_is_safe("opt/kata/bin/x"));
	CHECK(!kd_path_is_safe("/abs"));
	CHECK(!kd_path_is_safe("a/../b"));
	CHECK(!kd_path_is_safe(".."));
	CHECK(!kd_path_is_safe("a//b"));
	CHECK(!kd_path_is_safe("a/./b"));
	CHECK(!kd_path_is_safe("a/"));
	CHECK(!kd_path_is_safe(""));
}

TEST(test_mkdir_write_read)
{
	kd_error err = {0};
	char *data = NULL;
	size_t len = 0;
	struct stat st;

	CHECK_INT(kd_mkdir_p(rootfd, "/etc/containerd/conf.d", 0755, NULL, NULL, &err), 0);
	CHECK_INT(kd_write_atomic(rootfd, "etc/containerd/config.toml", "version = 2\n", 12, 0640,
				  &err),
		  0);
	CHECK_INT(kd_read_file(rootfd, "/etc/containerd/config.toml", 1024, &data, &len, &err), 0);
	CHECK_STR(data, "version = 2\n");
	CHECK_INT(len, 12);
	free(data);
	CHECK_INT(kd_lstat(rootfd, "etc/containerd/config.toml", &st, &err), 0);
	CHECK_INT(st.st_mode & 07777, 0640);
	/* too large for the limit */
	CHECK_INT(kd_read_file(rootfd, "etc/containerd/config.toml", 4, &data, &len, &err), -EFBIG);
	CHECK(strstr(err.msg, "too large") != NULL);
	/* replace keeps it atomic: no temp files left */
	CHECK_INT(kd_write_atomic(rootfd, "etc/containerd/config.toml", "x", 1, 0600, &err), 0);
	CHECK_INT(kd_lstat(rootfd, "etc/containerd/config.toml", &st, &err), 0);
	CHECK_INT(st.st_size, 1);
}

TEST(test_symlinks_refused)
{
	kd_error err = {0};
	char *data = NULL;

	CHECK_INT(symlinkat("/etc", rootfd, "link"), 0);
	CHECK_INT(kd_read_file(rootfd, "link/passwd", 1 << 20, &data, NULL, &err), -ELOOP);
	CHECK(strstr(err.msg, "symlink") != NULL);
	CHECK_INT(kd_write_atomic(rootfd, "link/evil", "x", 1, 0644, &err), -ELOOP);
	CHECK_INT(kd_mkdir_p(rootfd, "link/sub", 0755, NULL, NULL, &err), -ENOTDIR);
	/* IN_ROOT resolution stays inside the root: /etc is the root's etc */
	int fd = kd_openat(rootfd, "link/containerd/config.toml", O_RDONLY, 0, KD_IN_ROOT, &err);
	CHECK(fd >= 0);
	if (fd >= 0)
		close(fd);
	CHECK_INT(symlinkat("../../../../../../../etc/passwd", rootfd, "esc"), 0);
	fd = kd_openat(rootfd, "esc", O_RDONLY, 0, KD_IN_ROOT, &err);
	CHECK(fd < 0); /* resolves to <root>/etc/passwd, which does not exist */
	if (fd >= 0)
		close(fd);
}

TEST(test_symlink_atomic_and_remove)
{
	kd_error err = {0};
	char buf[256];

	CHECK_INT(kd_mkdir_p(rootfd, "opt/kata/.versions/a/bin", 0755, NULL, NULL, &err), 0);
	CHECK_INT(kd_symlink_atomic(rootfd, "opt/kata/current", ".versions/a", &err), 0);
	CHECK_INT(kd_readlink(rootfd, "opt/kata/current", buf, sizeof(buf), &err), 11);
	CHECK_STR(buf, ".versions/a");
	CHECK_INT(kd_symlink_atomic(rootfd, "opt/kata/current", ".versions/b", &err), 0);
	CHECK_INT(kd_readlink(rootfd, "opt/kata/current", buf, sizeof(buf), &err), 11);
	CHECK_STR(buf, ".versions/b");
	CHECK_INT(kd_remove_tree(rootfd, "opt", &err), 0);
	struct stat st;
	CHECK_INT(kd_lstat(rootfd, "opt", &st, &err), -ENOENT);
	CHECK_INT(kd_remove_tree(rootfd, "opt", &err), 0);
}

static int count_cb(const char *path, void *ud)
{
	(void)path;
	(*(int *)ud)++;
	return 0;
}

TEST(test_mkdir_reports_created)
{
	kd_error err = {0};
	int n = 0;

	CHECK_INT(kd_mkdir_p(rootfd, "etc/new/a/b", 0700, count_cb, &n, &err), 0);
	CHECK_INT(n, 3);
	n = 0;
	CHECK_INT(kd_mkdir_p(rootfd, "etc/new/a/b", 0700, count_cb, &n, &err), 0);
	CHECK_INT(n, 0);
	CHECK_INT(kd_rmdir(rootfd, "etc/new/a", &err), -ENOTEMPTY);
}

TEST(test_err_chain)
{
	kd_error err = {0};
	int r = kd_err(&err, -EINVAL, "truncated input");
	r = kd_err_wrap(&err, r, "extract '%s'", "bin/qemu");
	r = kd_err_wrap(&err, r, "install %s", "kata-qemu");
	CHECK_INT(r, -EINVAL);
	CHECK_STR(kd_err_msg(&err), "install kata-qemu: extract 'bin/qemu': truncated input");
	kd_err_clear(&err);
	kd_err_wrap(&err, -ENOENT, "open x");
	CHECK_STR(kd_err_msg(&err), "open x: No such file or directory");
}

/* Open fds: how many the process holds now. */
static int open_fds(void)
{
	int n = 0;
	for (int fd = 0; fd < 4096; fd++)
		n += fcntl(fd, F_GETFD) >= 0;
	return n;
}

TEST(test_dircache)
{
	kd_error err = {0};
	kd_dircache dc;
	const char *base = NULL;
	struct stat st;
	char path[64];
	int before = open_fds();

	CHECK_INT(kd_mkdir_p(rootfd, "dc/a/b", 0755, NULL, NULL, &err), 0);
	CHECK_INT(symlinkat("/etc", rootfd, "dc/link"), 0);
	kd_dircache_init(&dc, rootfd, false);
	int fd = kd_dircache_parent(&dc, "dc/a/b/file", &base, &err);
	CHECK(fd >= 0);
	CHECK_STR(base, "file");
	/* the same directory again: the same fd, nothing opened */
	CHECK_INT(kd_dircache_dir(&dc, "dc/a/b", &err), fd);
	CHECK_INT(kd_dircache_parent(&dc, "top", &base, &err), rootfd);
	CHECK_STR(base, "top");
	/* without create, a missing directory is -ENOENT; a symlink, '..' or '.' is refused */
	CHECK_INT(kd_dircache_parent(&dc, "dc/none/x", &base, &err), -ENOENT);
	CHECK_INT(kd_dircache_parent(&dc, "dc/link/passwd", &base, &err), -ELOOP);
	CHECK(strstr(err.msg, "symlink") != NULL);
	CHECK_INT(kd_dircache_parent(&dc, "dc/../x", &base, &err), -EINVAL);
	CHECK_INT(kd_dircache_parent(&dc, "dc/./x", &base, &err), -EINVAL);
	CHECK_INT(kd_dircache_parent(&dc, "dc//x", &base, &err), -EINVAL);
	CHECK_INT(kd_dircache_parent(&dc, "/dc/x", &base, &err), -EINVAL);
	CHECK_INT(kd_dircache_parent(&dc, "dc/a/..", &base, &err), -EINVAL);
	kd_dircache_done(&dc);
	CHECK_INT(open_fds(), before);

	/* with create: missing directories are made (0755 whatever the umask), and more
	 * directories than slots keep working (the least recently used fd is closed) */
	mode_t old = umask(077);
	kd_dircache_init(&dc, rootfd, true);
	for (int i = 0; i < 3 * KD_DIRCACHE_SLOTS; i++) {
		snprintf(path, sizeof(path), "dc/new/d%d/f", i);
		fd = kd_dircache_parent(&dc, path, &base, &err);
		CHECK(fd >= 0);
		CHECK_INT(mknodat(fd, base, S_IFREG | 0644, 0), 0);
		CHECK(open_fds() <= before + KD_DIRCACHE_SLOTS);
	}
	umask(old);
	CHECK_INT(kd_dircache_parent(&dc, "dc/a/b/c/d", &base, &err) >= 0, 1);
	kd_dircache_done(&dc);
	CHECK_INT(open_fds(), before);
	CHECK_INT(kd_lstat(rootfd, "dc/new/d0/f", &st, &err), 0);
	CHECK_INT(kd_lstat(rootfd, "dc/new/d95", &st, &err), 0);
	CHECK_INT(st.st_mode & 07777, 0755);
	CHECK_INT(kd_lstat(rootfd, "dc/a/b/c", &st, &err), 0);
	CHECK(S_ISDIR(st.st_mode));
}

int main(void)
{
	if (!mkdtemp(tmpl))
		return 1;
	rootfd = kd_root_open(tmpl, NULL);
	RUN(test_path_is_safe);
	RUN(test_mkdir_write_read);
	RUN(test_symlinks_refused);
	RUN(test_symlink_atomic_and_remove);
	RUN(test_mkdir_reports_created);
	RUN(test_err_chain);
	RUN(test_dircache);
	int slash = kd_root_open("/", NULL);
	kd_remove_tree(slash, tmpl + 1, NULL);
	close(slash);
	TAP_END();
}
