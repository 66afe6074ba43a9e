/* Fuzz the journal's recovery (deployer/journal.c): any bytes as <state>/journal over a small
 * root. Recovery either undoes or refuses, with a message; whatever the records say, it removes
 * nothing the engine never creates (a directory holding a FIFO: etc, var, the keep dirs) and
 * nothing outside the root. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "deployer/journal.h"
#include "fsroot.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char base[] = "/tmp/kd-fuzz-journal-XXXXXX";

static void cleanup(void)
{
	int fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	kd_remove_tree(fd, base + 1, NULL);
	close(fd);
}

static void put(int rootfd, const char *path, const char *text)
{
	char dir[256];
	snprintf(dir, sizeof(dir), "%s", path);
	char *s = strrchr(dir, '/');
	if (s) {
		*s = '\0';
		kd_mkdir_p(rootfd, dir, 0755, NULL, NULL, NULL);
	}
	kd_write_atomic(rootfd, path, text, strlen(text), 0644, NULL);
}

static int is_dir(int rootfd, const char *path)
{
	struct stat st;
	return kd_lstat(rootfd, path, &st, NULL) == 0 && S_ISDIR(st.st_mode);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int outfd = -1;
	if (outfd < 0) {
		if (!mkdtemp(base))
			abort();
		atexit(cleanup);
		outfd = open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		put(outfd, "outside/keep", "outside\n");
	}
	/* A fresh root each time: root/ inside base, a file beside it that must survive. */
	kd_remove_tree(outfd, "root", NULL);
	kd_mkdir_p(outfd, "root", 0755, NULL, NULL, NULL);
	int rootfd = kd_openat(outfd, "root", O_RDONLY | O_DIRECTORY, 0, KD_NOFOLLOW, NULL);
	if (rootfd < 0)
		abort();
	put(rootfd, "etc/containerd/config.toml", "version = 2\n");
	put(rootfd, "etc/keep/data", "keep\n");
	put(rootfd, "opt/kata/.versions/0123456789abcdef/bin/x", "x\n");
	put(rootfd, "var/lib/kata-deploy/journal.d/0", "backup\n");
	put(rootfd, "var/lib/other/data", "other\n");
	if (symlinkat(".versions/0123456789abcdef", rootfd, "opt/kata/current") < 0)
		abort();
	/* Regular files and empty directories a journal may legitimately remove; a FIFO never
	 * (the engine writes none), so the directories holding one must stay. */
	mkfifoat(rootfd, "etc/keep/fifo", 0600);
	mkfifoat(rootfd, "var/lib/other/fifo", 0600);
	kd_write_atomic(rootfd, "var/lib/kata-deploy/journal", (const char *)data, size, 0600,
			NULL);

	kd_error err = {0};
	int r = kd_journal_recover(rootfd, "var/lib/kata-deploy", &err);
	if (r < 0 && !err.msg[0])
		__builtin_trap(); /* a refusal always says why */
	if (!is_dir(rootfd, "etc") || !is_dir(rootfd, "etc/keep") || !is_dir(rootfd, "var") ||
	    !is_dir(rootfd, "var/lib/other") || !is_dir(rootfd, "opt/kata"))
		__builtin_trap(); /* a directory the engine never creates is gone */
	struct stat st;
	if (kd_lstat(outfd, "outside/keep", &st, NULL) < 0)
		__builtin_trap();
	close(rootfd);
	return 0;
}
