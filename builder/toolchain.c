#include "toolchain.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include "digest.h"
#include "macro.h"

#define TOOLCHAIN_VERSION_MAX 4096 /* bytes of a compiler's version text */

DEFINE_CLEANUP(DIR *, closedir)

/* Run argv[0] (an absolute path) and capture its stdout. */
static int capture(char *const argv[], char **ret, kd_error *err)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return kd_err_errno(err, negative_errno(), "pipe");
	pid_t pid = fork();
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		return kd_err_errno(err, negative_errno(), "fork");
	}
	if (pid == 0) {
		dup2(p[1], STDOUT_FILENO);
		execv(argv[0], argv);
		_exit(127);
	}
	close(p[1]);
	_cleanup_free_ char *buf = calloc(1, TOOLCHAIN_VERSION_MAX + 1);
	size_t len = 0;
	ssize_t n = 0;
	while (buf && len < TOOLCHAIN_VERSION_MAX &&
	       (n = read(p[0], buf + len, TOOLCHAIN_VERSION_MAX - len)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			break;
		len += (size_t)n;
	}
	close(p[0]);
	int status;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (!buf)
		return kd_err(err, -ENOMEM, "out of memory");
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || len == 0)
		return kd_err(err, -ENOEXEC, "%s %s failed", argv[0], argv[1] ? argv[1] : "");
	*ret = TAKE_PTR(buf);
	return 0;
}

/* The toolchain whose rustc is release `want`: <rustup home>/toolchains/<want>-<triple> when
 * rustup installed it under that name, else any installed toolchain (stable, …) that is it. */
static int rust_dir(const kd_versions *v, char **ret_dir, char **ret_text, kd_error *err)
{
	const char *want = kd_versions_get(v, "rust_toolchain");
	const char *home = getenv("RUSTUP_HOME"), *h = getenv("HOME");
	_cleanup_free_ char *tdir = NULL, *first = NULL, *needle = NULL;
	struct utsname u;

	if (!want)
		return kd_err(err, -EINVAL, "toolchain rust: versions.yaml has no rust_toolchain");
	if (uname(&u) < 0)
		return kd_err_errno(err, negative_errno(), "uname");
	if ((home ? asprintf(&tdir, "%s/toolchains", home)
		  : asprintf(&tdir, "%s/.rustup/toolchains", h ? h : "/root")) < 0 ||
	    asprintf(&first, "%s-%s-unknown-linux-gnu", want, u.machine) < 0 ||
	    asprintf(&needle, "release: %s\n", want) < 0)
		return kd_err(err, -ENOMEM, "out of memory");
	_cleanup_(closedirp) DIR *d = opendir(tdir);
	struct dirent *de = NULL;
	for (const char *name = first; name; name = (d && (de = readdir(d))) ? de->d_name : NULL) {
		_cleanup_free_ char *dir = NULL, *rustc = NULL, *text = NULL;
		if (name[0] == '.' || (name != first && strcmp(name, first) == 0))
			continue;
		if (asprintf(&dir, "%s/%s/bin", tdir, name) < 0 ||
		    asprintf(&rustc, "%s/rustc", dir) < 0)
			return kd_err(err, -ENOMEM, "out of memory");
		if (access(rustc, X_OK) < 0)
			continue;
		char *argv[] = {rustc, "-vV", NULL};
		if (capture(argv, &text, NULL) < 0 || !strstr(text, needle))
			continue;
		*ret_dir = TAKE_PTR(dir);
		*ret_text = TAKE_PTR(text);
		return 0;
	}
	return kd_err(err, -ENOENT,
		      "toolchain rust: no rustup toolchain in %s is rustc %s (rustup toolchain "
		      "install %s)",
		      tdir, want, want);
}

static int go_dir(char **ret_dir, char **ret_text, kd_error *err)
{
	const char *path = getenv("PATH");
	_cleanup_free_ char *search = NULL, *found = NULL, *text = NULL;
	if (asprintf(&search, "%s:/usr/local/go/bin", path ? path : "") < 0)
		return kd_err(err, -ENOMEM, "out of memory");
	for (char *save = NULL, *d = strtok_r(search, ":", &save); d && !found;
	     d = strtok_r(NULL, ":", &save)) {
		_cleanup_free_ char *go = NULL;
		if (*d != '/' || asprintf(&go, "%s/go", d) < 0)
			continue;
		if (access(go, X_OK) == 0)
			found = realpath(go, NULL);
	}
	if (!found)
		return kd_err(err, -ENOENT, "toolchain go: no go on PATH or in /usr/local/go/bin");
	char *argv[] = {found, "version", NULL};
	int r = capture(argv, &text, err);
	if (r < 0)
		return kd_err_wrap(err, r, "toolchain go");
	*strrchr(found, '/') = '\0';
	*ret_dir = TAKE_PTR(found);
	*ret_text = TAKE_PTR(text);
	return 0;
}

int kd_toolchains_resolve(const kd_versions *v, char *const *names, kd_toolchains *ret,
			  kd_error *err)
{
	_cleanup_free_ char *path = strdup(""), *key = strdup("");
	if (!path || !key)
		return kd_err(err, -ENOMEM, "out of memory");
	for (char *const *n = names; n && *n; n++) {
		_cleanup_free_ char *dir = NULL, *text = NULL;
		char d[65];
		int r = strcmp(*n, "rust") == 0 ? rust_dir(v, &dir, &text, err)
						: go_dir(&dir, &text, err);
		if (r < 0)
			return r;
		kd_sha256_buf(text, strlen(text), d);
		char *np = NULL, *nk = NULL;
		if (asprintf(&np, "%s%s%s", path, *path ? ":" : "", dir) < 0 ||
		    asprintf(&nk, "%stoolchain %s %s\n", key, *n, d) < 0) {
			free(np);
			return kd_err(err, -ENOMEM, "out of memory");
		}
		free(path);
		free(key);
		path = np;
		key = nk;
	}
	*ret = (kd_toolchains){.path = TAKE_PTR(path), .key_text = TAKE_PTR(key)};
	return 0;
}

void kd_toolchains_done(kd_toolchains *t)
{
	free(t->path);
	free(t->key_text);
	*t = (kd_toolchains){0};
}
