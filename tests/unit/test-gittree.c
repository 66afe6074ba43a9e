/* lib/gittree: tree ids equal git's own (`git add -A -f && git write-tree` on the same tree),
 * for git's ordering corner cases, modes, symlinks, empty dirs, hard links; the pinned kata
 * release archive when ../shared/sources is present; hostile archives refused. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gittree.h"
#include "tap.h"

static char tmp[] = "/tmp/kd-gittree.XXXXXX";

static int sh(const char *fmt, const char *arg)
{
	char cmd[2048];
	snprintf(cmd, sizeof(cmd), fmt, arg, arg, arg, arg);
	return system(cmd);
}

/* git's own id of directory dir/top's contents. */
static int git_tree(const char *dir, char out[41])
{
	char cmd[1024];
	snprintf(cmd, sizeof(cmd),
		 "cd '%s' && rm -rf .git && git -c init.defaultBranch=x init -q . && "
		 "git -c core.autocrlf=false add -A -f && git write-tree && rm -rf .git",
		 dir);
	FILE *p = popen(cmd, "r");
	if (!p)
		return -1;
	int ok = fgets(out, 41, p) != NULL;
	pclose(p);
	return ok && strlen(out) == 40 ? 0 : -1;
}

static int ours(const char *tarball, unsigned strip, char out[41], kd_error *err)
{
	int fd = open(tarball, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int r = kd_git_tree_id(fd, strip, out, err);
	close(fd);
	return r;
}

TEST(matches_git)
{
	char dir[512], tb[600], want[41] = "", got[41] = "";
	kd_error err = {0};
	snprintf(dir, sizeof(dir), "%s/t/proj-1.0", tmp);
	/* git's order puts "a.b" and "a-b/" before "a/" and "a0" after it; executables, a
	 * symlink, an empty dir (not in git), a nested tree, an empty file. */
	CHECK_INT(sh("mkdir -p %s/a/x %s/a-b %s/empty/deeper %s/z", dir), 0);
	CHECK_INT(sh("cd %s && echo 1 > a.b && echo 2 > a0 && echo 3 > a/x/f && echo 4 > a-b/g && "
		     ": > z/empty && printf 'x\\n' > run.sh && chmod 755 run.sh && "
		     "ln -s a/x/f link && ln -s ../nowhere a/dangling",
		     dir),
		  0);
	CHECK_INT(git_tree(dir, want), 0);
	snprintf(tb, sizeof(tb), "%s/p.tar.gz", tmp);
	char cmd[1400];
	snprintf(cmd, sizeof(cmd), "tar -C %s/t -czf %s proj-1.0", tmp, tb);
	CHECK_INT(system(cmd), 0);
	CHECK_INT(ours(tb, 1, got, &err), 0);
	CHECK_STR(got, want);
	/* strip 0 over the same archive: the tree that holds proj-1.0/ */
	char outer[41] = "", dir0[512];
	snprintf(dir0, sizeof(dir0), "%s/t", tmp);
	CHECK_INT(git_tree(dir0, outer), 0);
	CHECK_INT(ours(tb, 0, got, &err), 0);
	CHECK_STR(got, outer);
	/* a hard link hashes as its target's content */
	snprintf(cmd, sizeof(cmd),
		 "cd %s/t && ln proj-1.0/a0 proj-1.0/hard && tar --hard-dereference -cf - proj-1.0 "
		 "> /dev/null && tar -cf %s/h.tar proj-1.0",
		 tmp, tmp);
	CHECK_INT(system(cmd), 0);
	CHECK_INT(git_tree(dir, want), 0);
	snprintf(tb, sizeof(tb), "%s/h.tar", tmp);
	CHECK_INT(ours(tb, 1, got, &err), 0);
	CHECK_STR(got, want);
}

TEST(refused)
{
	char cmd[1024], tb[600], got[41];
	kd_error err = {0};
	/* two top directories with strip 1 */
	snprintf(cmd, sizeof(cmd), "mkdir -p %s/two/a %s/two/b && touch %s/two/a/f %s/two/b/g", tmp,
		 tmp, tmp, tmp);
	CHECK_INT(system(cmd), 0);
	snprintf(tb, sizeof(tb), "%s/two.tar", tmp);
	snprintf(cmd, sizeof(cmd), "tar -C %s/two -cf %s a b", tmp, tb);
	CHECK_INT(system(cmd), 0);
	CHECK(ours(tb, 1, got, &err) < 0);
	CHECK(strstr(kd_err_msg(&err), "not under the archive's top directory") != NULL);
	kd_err_clear(&err);
	/* a FIFO */
	snprintf(cmd, sizeof(cmd), "mkdir -p %s/ff/p && mkfifo %s/ff/p/fifo", tmp, tmp);
	CHECK_INT(system(cmd), 0);
	snprintf(tb, sizeof(tb), "%s/ff.tar", tmp);
	snprintf(cmd, sizeof(cmd), "tar -C %s/ff -cf %s p", tmp, tb);
	CHECK_INT(system(cmd), 0);
	CHECK(ours(tb, 1, got, &err) < 0);
	CHECK(strstr(kd_err_msg(&err), "no place in a git tree") != NULL);
	kd_err_clear(&err);
	/* truncated input */
	snprintf(cmd, sizeof(cmd),
		 "f=%s/p.tar.gz; head -c $(( $(stat -c %%s $f) / 2 )) $f > %s/trunc.tar.gz", tmp,
		 tmp);
	CHECK_INT(system(cmd), 0);
	snprintf(tb, sizeof(tb), "%s/trunc.tar.gz", tmp);
	CHECK(ours(tb, 1, got, &err) < 0);
	kd_err_clear(&err);
}

/* The pinned upstream release: its tree id is the one the issue and sources/README.md give. */
TEST(kata_release)
{
	const char *src = getenv("KD_SHARED_SOURCES");
	char path[1024], got[41] = "";
	kd_error err = {0};
	snprintf(path, sizeof(path), "%s/kata-containers-4.1.0.tar.gz",
		 src ? src : "../shared/sources");
	if (!src && access(path, R_OK) < 0) /* the workplace's copy, for a checkout elsewhere */
		snprintf(path, sizeof(path), "/work/shared/sources/kata-containers-4.1.0.tar.gz");
	if (access(path, R_OK) < 0) {
		printf("# %s not readable: the release check needs it\n", path);
		CHECK(!"../shared/sources/kata-containers-4.1.0.tar.gz is required");
		return;
	}
	CHECK_INT(ours(path, 1, got, &err), 0);
	CHECK_STR(got, "8836c9c8192b14a3ecebf3df69aa2863dce15cc1");
}

int main(void)
{
	if (!mkdtemp(tmp))
		return 1;
	RUN(matches_git);
	RUN(refused);
	RUN(kata_release);
	sh("rm -rf %s", tmp);
	TAP_END();
}
