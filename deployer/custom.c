#include "custom.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hostcheck.h"
#include "macro.h"
#include "toml.h"

static bool dns_label(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 63 || s[0] == '-' || s[n - 1] == '-')
		return false;
	for (; *s; s++)
		if (!islower((unsigned char)*s) && !isdigit((unsigned char)*s) && *s != '-')
			return false;
	return true;
}

static void trim(char *s)
{
	char *e = s + strlen(s), *b = s;
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	while (isspace((unsigned char)*b))
		b++;
	memmove(s, b, strlen(b) + 1);
}

int kd_custom_parse(const char *name, const char *text, kd_custom_runtime **ret, size_t *ret_n,
		    kd_error *err)
{
	_cleanup_free_ char *copy = strdup(text);
	_cleanup_free_ kd_custom_runtime *v = calloc(KD_CUSTOM_MAX, sizeof(*v));
	size_t n = 0;
	if (!copy || !v)
		return -ENOMEM;
	char *next = copy;
	for (size_t i = 0; next; i++) {
		char *l = strsep(&next, "\n"), *hash = strchr(l, '#');
		if (hash)
			*hash = '\0';
		trim(l);
		if (!*l)
			continue;
		char *f[5] = {l, NULL, NULL, NULL, NULL};
		size_t nf = 1;
		for (char *c = l; *c; c++)
			if (*c == ':') {
				*c = '\0';
				if (nf == 4)
					return kd_err(
						err, -EINVAL,
						"%s:%zu: more than 4 fields (handler:baseShim:"
						"snapshotter:pullType)",
						name, i + 1);
				f[nf++] = c + 1;
			}
		for (size_t k = 0; k < nf; k++)
			trim(f[k]);
		if (n == KD_CUSTOM_MAX)
			return kd_err(err, -E2BIG, "%s:%zu: more than %d custom runtimes", name,
				      i + 1, KD_CUSTOM_MAX);
		kd_custom_runtime *c = &v[n];
		if (!dns_label(f[0]))
			return kd_err(err, -EINVAL,
				      "%s:%zu: handler '%s' must be 1-63 lowercase letters, digits "
				      "or '-' (it becomes a RuntimeClass handler)",
				      name, i + 1, f[0]);
		if (nf < 2 || !*f[1])
			return kd_err(err, -EINVAL, "%s:%zu: custom runtime '%s' has no base shim",
				      name, i + 1, f[0]);
		if (!kd_hostcheck_shim_known(f[1]))
			return kd_err(err, -EINVAL, "%s:%zu: unknown base shim '%s'", name, i + 1,
				      f[1]);
		const char *pull = nf > 3 ? f[3] : "";
		if (*pull && strcmp(pull, "default") != 0 && strcmp(pull, "guest-pull") != 0)
			return kd_err(err, -EINVAL,
				      "%s:%zu: pull type '%s' of '%s' is not guest-pull or default",
				      name, i + 1, pull, f[0]);
		for (size_t k = 0; k < n; k++)
			if (!strcmp(v[k].handler, f[0]))
				return kd_err(err, -EINVAL, "%s:%zu: handler '%s' is listed twice",
					      name, i + 1, f[0]);
		snprintf(c->handler, sizeof(c->handler), "%s", f[0]);
		snprintf(c->base, sizeof(c->base), "%s", f[1]);
		if (nf > 2 && strlen(f[2]) >= sizeof(c->snapshotter))
			return kd_err(err, -EINVAL, "%s:%zu: snapshotter name too long", name,
				      i + 1);
		snprintf(c->snapshotter, sizeof(c->snapshotter), "%s", nf > 2 ? f[2] : "");
		c->guest_pull = !strcmp(pull, "guest-pull");
		n++;
	}
	*ret = TAKE_PTR(v);
	*ret_n = n;
	return 0;
}

/* A host file (symlinks followed: ConfigMap mounts are links into ..data/). */
static int read_host(const char *path, char **ret, kd_error *err)
{
	/* O_NONBLOCK: a FIFO put where a file belongs must not hang us (the type check below
	 * refuses it); a regular file reads the same either way. */
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	struct stat st;
	if (fd < 0)
		return errno == ENOENT ? -ENOENT : kd_err_errno(err, -errno, "open '%s'", path);
	if (fstat(fd, &st) < 0)
		return kd_err_errno(err, -errno, "stat '%s'", path);
	if (!S_ISREG(st.st_mode) || st.st_size > (off_t)KD_CUSTOM_FILE_MAX)
		return kd_err(err, -EINVAL, "'%s': not a regular file of at most %u bytes", path,
			      KD_CUSTOM_FILE_MAX);
	_cleanup_free_ char *buf = malloc((size_t)st.st_size + 1);
	size_t n = 0;
	if (!buf)
		return -ENOMEM;
	while (n < (size_t)st.st_size) {
		ssize_t k = read(fd, buf + n, (size_t)st.st_size - n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return kd_err_errno(err, -errno, "read '%s'", path);
		if (k == 0)
			break;
		n += (size_t)k;
	}
	buf[n] = '\0';
	if (strlen(buf) != n)
		return kd_err(err, -EINVAL, "'%s': contains a NUL byte", path);
	*ret = TAKE_PTR(buf);
	return 0;
}

int kd_custom_load(const char *dir, kd_custom_runtime **ret, size_t *ret_n, kd_error *err)
{
	char path[4096];
	_cleanup_free_ char *text = NULL;
	snprintf(path, sizeof(path), "%s/%s", dir, KD_CUSTOM_LIST);
	int r = read_host(path, &text, err);
	if (r == -ENOENT) {
		*ret = calloc(1, sizeof(**ret));
		*ret_n = 0;
		return *ret ? 0 : -ENOMEM;
	}
	if (r < 0)
		return r;
	return kd_custom_parse(path, text, ret, ret_n, err);
}

int kd_custom_dropin(const char *dir, const char *name, char **ret, kd_error *err)
{
	char path[4096];
	_cleanup_free_ char *text = NULL;
	*ret = NULL;
	if (!dir)
		return 0;
	snprintf(path, sizeof(path), "%s/dropin-%s.toml", dir, name);
	int r = read_host(path, &text, err);
	if (r == -ENOENT)
		return 0;
	if (r < 0)
		return r;
	_cleanup_toml_ kd_toml_doc *d = NULL;
	if ((r = kd_toml_parse(path, text, strlen(text), &d, err)) < 0)
		return r;
	*ret = TAKE_PTR(text);
	return 0;
}

int kd_custom_read_toml(const char *path, char **ret, kd_error *err)
{
	_cleanup_free_ char *text = NULL;
	*ret = NULL;
	int r = read_host(path, &text, err);
	if (r == -ENOENT)
		return kd_err(err, r, "'%s' does not exist", path);
	if (r < 0)
		return r;
	_cleanup_toml_ kd_toml_doc *d = NULL;
	if ((r = kd_toml_parse(path, text, strlen(text), &d, err)) < 0)
		return r;
	*ret = TAKE_PTR(text);
	return 0;
}
