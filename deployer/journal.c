#include "journal.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine.h"
#include "fsroot.h"
#include "log.h"

#define FIELD_MAX 4200

void kd_fault_point(const char *where)
{
	static long at = -1, count;
	if (at < 0) {
		const char *e = getenv("KD_FAULT_AT");
		at = e ? strtol(e, NULL, 10) : 0;
	}
	count++;
	const char *logf = getenv("KD_FAULT_LOG");
	if (logf) {
		FILE *f = fopen(logf, "ae");
		if (f) {
			fprintf(f, "%ld %s\n", count, where);
			fclose(f);
		}
	}
	if (at > 0 && count == at)
		raise(SIGKILL);
}

static void escape(const char *in, char *out, size_t size)
{
	size_t o = 0;
	for (; *in && o + 4 < size; in++) {
		unsigned char c = (unsigned char)*in;
		if (c == '\t' || c == '\n' || c == '%' || c < 0x20)
			o += (size_t)snprintf(out + o, size - o, "%%%02X", c);
		else
			out[o++] = (char)c;
	}
	out[o] = '\0';
}

static void unescape(char *s)
{
	char *w = s;
	for (char *r = s; *r; r++) {
		if (r[0] == '%' && r[1] && r[2]) {
			char hex[3] = {r[1], r[2], 0};
			*w++ = (char)strtol(hex, NULL, 16);
			r += 2;
		} else {
			*w++ = *r;
		}
	}
	*w = '\0';
}

static int append(kd_journal *j, const char *kind, const char *a, const char *b, const char *c,
		  kd_error *err)
{
	char ea[FIELD_MAX], eb[FIELD_MAX], line[3 * FIELD_MAX];
	escape(a ? a : "", ea, sizeof(ea));
	escape(b ? b : "", eb, sizeof(eb));
	int n = snprintf(line, sizeof(line), "%s\t%s\t%s\t%s\n", kind, ea, eb, c ? c : "");
	if (n < 0 || (size_t)n >= sizeof(line))
		return kd_err(err, -ENAMETOOLONG, "journal record too long");
	/* One write per record: a torn last line (no '\n') is ignored on recovery. */
	if (write(j->fd, line, (size_t)n) != n)
		return kd_err_errno(err, negative_errno(), "append to journal");
	if (fdatasync(j->fd) < 0)
		return kd_err_errno(err, negative_errno(), "fsync journal");
	kd_fault_point(kind);
	return 0;
}

static void join(char *buf, size_t size, const char *dir, const char *name)
{
	snprintf(buf, size, "%s/%s", dir, name);
}

int kd_journal_begin(kd_journal *j, int rootfd, const char *state_dir, const char *op,
		     kd_error *err)
{
	char path[KD_PATH_MAX];
	int r;

	memset(j, 0, sizeof(*j));
	j->rootfd = rootfd;
	j->fd = -1;
	snprintf(j->state_dir, sizeof(j->state_dir), "%s", state_dir);
	join(path, sizeof(path), state_dir, KD_JOURNAL_BACKUP_DIR);
	r = kd_remove_tree(rootfd, path, err);
	if (r < 0)
		return r;
	r = kd_mkdir_p(rootfd, path, 0700, NULL, NULL, err);
	if (r < 0)
		return r;
	join(path, sizeof(path), state_dir, KD_JOURNAL_NAME);
	j->fd = kd_openat(rootfd, path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND, 0600, KD_NOFOLLOW,
			  err);
	if (j->fd < 0)
		return kd_err_wrap(err, j->fd, "start journal");
	const char *base;
	_cleanup_close_ int dfd = kd_open_parent(rootfd, path, &base, err);
	if (dfd < 0 || fsync(dfd) < 0)
		return kd_err_errno(err, -EIO, "fsync state directory");
	return append(j, "begin", op, NULL, NULL, err);
}

int kd_journal_mkdir(kd_journal *j, const char *path, kd_error *err)
{
	return append(j, "mkdir", path, NULL, NULL, err);
}

int kd_journal_tree(kd_journal *j, const char *path, kd_error *err)
{
	return append(j, "tree", path, NULL, NULL, err);
}

int kd_journal_statedir(kd_journal *j, const char *top, kd_error *err)
{
	return append(j, "statedir", top, NULL, NULL, err);
}

void kd_journal_set_dir(kd_journal *j, const char *state_dir)
{
	snprintf(j->state_dir, sizeof(j->state_dir), "%s", state_dir);
}

int kd_journal_rename(kd_journal *j, const char *from, const char *to, kd_error *err)
{
	return append(j, "rename", from, to, NULL, err);
}

int kd_journal_symlink(kd_journal *j, const char *path, kd_error *err)
{
	char target[KD_PATH_MAX];
	kd_error e2 = {0};
	int r = kd_readlink(j->rootfd, path, target, sizeof(target), &e2);
	if (r == -ENOENT)
		return append(j, "symlink", path, NULL, "-", err);
	if (r < 0)
		return kd_err(err, r, "%s", e2.msg);
	return append(j, "symlink", path, target, "+", err);
}

int kd_journal_file(kd_journal *j, const char *path, kd_error *err)
{
	char bpath[KD_PATH_MAX], name[32], mode[16];
	struct stat st;
	kd_error e2 = {0};
	int r = kd_lstat(j->rootfd, path, &st, &e2);

	if (r == -ENOENT)
		return append(j, "file", path, NULL, "-", err);
	if (r < 0)
		return kd_err(err, r, "%s", e2.msg);
	if (!S_ISREG(st.st_mode))
		return kd_err(err, -EINVAL, "'%s' is not a regular file", path);
	_cleanup_free_ char *data = NULL;
	size_t len;
	r = kd_read_file(j->rootfd, path, KD_JOURNAL_MAX_SIZE, &data, &len, err);
	if (r < 0)
		return kd_err_wrap(err, r, "back up '%s'", path);
	snprintf(name, sizeof(name), "%u", j->n_backups++);
	snprintf(bpath, sizeof(bpath), "%s/%s/%s", j->state_dir, KD_JOURNAL_BACKUP_DIR, name);
	r = kd_write_atomic(j->rootfd, bpath, data, len, 0600, err);
	if (r < 0)
		return kd_err_wrap(err, r, "back up '%s'", path);
	snprintf(mode, sizeof(mode), "%o", (unsigned)(st.st_mode & 07777));
	return append(j, "file", path, name, mode, err);
}

static int finish(int rootfd, const char *state_dir, kd_error *err)
{
	char path[KD_PATH_MAX];
	join(path, sizeof(path), state_dir, KD_JOURNAL_NAME);
	int r = kd_remove_tree(rootfd, path, err);
	if (r < 0)
		return r;
	join(path, sizeof(path), state_dir, KD_JOURNAL_BACKUP_DIR);
	r = kd_remove_tree(rootfd, path, err);
	if (r < 0)
		return r;
	kd_fault_point("journal-removed");
	return 0;
}

int kd_journal_commit(kd_journal *j, kd_error *err)
{
	int r = append(j, "commit", NULL, NULL, NULL, err);
	close(j->fd);
	j->fd = -1;
	if (r < 0)
		return r;
	return finish(j->rootfd, j->state_dir, err);
}

/* The parent of path is a versions directory (<prefix>/.versions/<name>). */
static bool in_versions_dir(const char *path)
{
	const char *sl = strrchr(path, '/');
	size_t vl = strlen(KD_VERSIONS_DIR);
	return sl && sl[1] && (size_t)(sl - path) >= vl && !strncmp(sl - vl, KD_VERSIONS_DIR, vl) &&
	       (sl - vl == path || sl[-vl - 1] == '/');
}

/* Each directory from top down to the parent of state_dir holds only the next one: the chain the
 * engine created in one rename, with nothing added since. */
static bool only_chain(int rootfd, const char *top, const char *state_dir)
{
	char cur[KD_PATH_MAX];
	snprintf(cur, sizeof(cur), "%s", top);
	while (strcmp(cur, state_dir) != 0) {
		const char *next = state_dir + strlen(cur) + 1;
		const char *end = strchr(next, '/');
		size_t nl = end ? (size_t)(end - next) : strlen(next);
		_cleanup_close_ int fd =
			kd_openat(rootfd, cur, O_RDONLY | O_DIRECTORY, 0, KD_NOFOLLOW, NULL);
		DIR *d = fd >= 0 ? fdopendir(TAKE_FD(fd)) : NULL;
		if (!d)
			return false;
		bool only = true;
		for (struct dirent *de; only && (de = readdir(d));)
			if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") &&
			    (strlen(de->d_name) != nl || strncmp(de->d_name, next, nl)))
				only = false;
		closedir(d);
		if (!only)
			return false;
		size_t cl = strlen(cur);
		snprintf(cur + cl, sizeof(cur) - cl, "/%.*s", (int)nl, next);
	}
	return true;
}

/* A journal record may name only what the engine could have created: a version tree, the state
 * dir chain, a regular file, a symlink, a directory (rmdir only). A record that names anything
 * else (a crafted `tree etc`) is refused before anything is undone. */
static int check_record(int rootfd, const char *state_dir, const char *kind, const char *a,
			const char *b, const char *c, kd_error *err)
{
	struct stat st;
	if (!strcmp(kind, "begin") || !strcmp(kind, "commit"))
		return 0;
	if (!kd_path_is_safe(a) || !*a)
		return kd_err(err, -EBADMSG, "journal: %s record names an unsafe path '%s'", kind,
			      a);
	if (!strcmp(kind, "mkdir"))
		return 0; /* undone by rmdir: an empty directory at most */
	if (!strcmp(kind, "tree") || !strcmp(kind, "rename")) {
		if (!in_versions_dir(a) ||
		    (!strcmp(kind, "rename") && (!kd_path_is_safe(b) || !in_versions_dir(b))))
			return kd_err(err, -EBADMSG,
				      "journal: %s record names '%s', which is not a version tree "
				      "kata-deploy creates",
				      kind, a);
		return 0;
	}
	if (!strcmp(kind, "statedir")) {
		size_t tl = strlen(a);
		if (strncmp(state_dir, a, tl) != 0 ||
		    (state_dir[tl] != '/' && state_dir[tl] != '\0'))
			return kd_err(
				err, -EBADMSG,
				"journal: statedir record names '%s', which does not hold the "
				"state directory /%s",
				a, state_dir);
		if (!only_chain(rootfd, a, state_dir))
			return kd_err(err, -EBADMSG,
				      "journal: statedir record names '%s', which holds more than "
				      "the state directory /%s: not removed",
				      a, state_dir);
		return 0;
	}
	bool link = !strcmp(kind, "symlink");
	if (!link && strcmp(kind, "file"))
		return 0; /* unknown: undo_one names it */
	int r = kd_lstat(rootfd, a, &st, NULL);
	if (r == -ENOENT)
		r = 0;
	else if (r == 0 && (link ? !S_ISLNK(st.st_mode) : !S_ISREG(st.st_mode)))
		return kd_err(err, -EBADMSG,
			      "journal: %s record names '%s', which is a %s: kata-deploy only "
			      "writes %s there",
			      kind, a, kd_mode_type_name(st.st_mode),
			      link ? "a symlink" : "a regular file");
	if (!link && strcmp(c, "-") &&
	    (strchr(b, '/') || !*b || !strcmp(b, "..") || strspn(c, "01234567") != strlen(c) ||
	     strlen(c) > 4))
		return kd_err(err, -EBADMSG, "journal: file record for '%s' has a bad backup", a);
	return r;
}

static int undo_one(int rootfd, const char *state_dir, char *kind, char *a, char *b, char *c,
		    kd_error *err)
{
	kd_debug("journal: undo %s %s", kind, a);
	if (strcmp(kind, "mkdir") == 0) {
		kd_error e2 = {0};
		int r = kd_rmdir(rootfd, a, &e2);
		if (r < 0 && r != -ENOENT && r != -ENOTEMPTY)
			return kd_err(err, r, "%s", e2.msg);
		return 0;
	}
	if (strcmp(kind, "statedir") == 0)
		return kd_remove_tree_atomic(rootfd, a, err);
	if (strcmp(kind, "tree") == 0)
		return kd_remove_tree(rootfd, a, err);
	if (strcmp(kind, "symlink") == 0) {
		if (strcmp(c, "-") == 0)
			return kd_remove_tree(rootfd, a, err);
		return kd_symlink_atomic(rootfd, a, b, err);
	}
	if (strcmp(kind, "file") == 0) {
		if (strcmp(c, "-") == 0)
			return kd_remove_tree(rootfd, a, err);
		char bpath[KD_PATH_MAX];
		_cleanup_free_ char *data = NULL;
		size_t len;
		snprintf(bpath, sizeof(bpath), "%s/%s/%s", state_dir, KD_JOURNAL_BACKUP_DIR, b);
		kd_error e2 = {0};
		int r = kd_read_file(rootfd, bpath, KD_JOURNAL_MAX_SIZE, &data, &len, &e2);
		if (r == -ENOENT)
			return 0; /* renamed into place by an earlier, interrupted recovery */
		if (r < 0)
			return kd_err(err, r, "restore '%s': %s", a, e2.msg);
		/* Bytes and mode unchanged (the run never got to write it): no rewrite, which on a
		 * full disk could not even be done. */
		mode_t mode = (mode_t)strtol(c, NULL, 8);
		_cleanup_free_ char *now = NULL;
		size_t nlen = 0;
		struct stat st;
		if (kd_lstat(rootfd, a, &st, NULL) == 0 && S_ISREG(st.st_mode) &&
		    (st.st_mode & 07777) == mode && (size_t)st.st_size == len &&
		    kd_read_file(rootfd, a, KD_JOURNAL_MAX_SIZE, &now, &nlen, NULL) == 0 &&
		    nlen == len && !memcmp(now, data, len))
			return 0;
		/* The backup itself goes back into place: a rename needs no free space (a full disk
		 * must not block the undo) and frees the bytes of the file it replaces. Another
		 * file system (EXDEV): a copy. */
		const char *bb, *ab;
		_cleanup_close_ int bdfd = kd_open_parent(rootfd, bpath, &bb, NULL);
		_cleanup_close_ int adfd = kd_open_parent(rootfd, a, &ab, NULL);
		if (bdfd >= 0 && adfd >= 0 && fchmodat(bdfd, bb, mode, 0) == 0) {
			if (renameat(bdfd, bb, adfd, ab) == 0) {
				if (fsync(adfd) < 0)
					return kd_err_errno(err, negative_errno(),
							    "restore '%s': fsync", a);
				return 0;
			}
			if (errno != EXDEV)
				return kd_err_errno(err, negative_errno(), "restore '%s'", a);
		}
		return kd_write_atomic(rootfd, a, data, len, mode, err);
	}
	if (strcmp(kind, "rename") == 0) {
		struct stat st;
		if (kd_lstat(rootfd, b, &st, NULL) == 0 &&
		    kd_lstat(rootfd, a, &st, NULL) == -ENOENT && renameat(rootfd, b, rootfd, a) < 0)
			return kd_err_errno(err, negative_errno(), "rename '%s' back to '%s'", b,
					    a);
		return 0;
	}
	if (strcmp(kind, "begin") == 0)
		return 0;
	return kd_err(err, -EBADMSG, "journal: unknown record '%s'", kind);
}

static int replay_undo(int rootfd, const char *state_dir, char *data, kd_error *err)
{
	char *lines[8192];
	size_t n = 0;

	for (char *p = data, *nl; (nl = strchr(p, '\n')); p = nl + 1) {
		*nl = '\0';
		if (n == ELEMENTSOF(lines))
			return kd_err(err, -E2BIG, "journal has too many records");
		lines[n++] = p;
	}
	if (n > 0 && strncmp(lines[n - 1], "commit\t", 7) == 0)
		return 0;
	_cleanup_free_ char *(*fields)[4] = calloc(n ? n : 1, sizeof(*fields));
	if (!fields)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		char **f = fields[i];
		char *s = lines[i];
		f[0] = lines[i];
		/* missing fields: the line's own (writable) terminator, which unescape may write */
		f[1] = f[2] = f[3] = lines[i] + strlen(lines[i]);
		for (int k = 1; k < 4; k++) {
			s = s ? strchr(s, '\t') : NULL;
			if (s) {
				*s++ = '\0';
				f[k] = s;
			}
		}
		unescape(f[1]);
		unescape(f[2]);
		/* Every record is checked before the first one is undone. */
		int r = check_record(rootfd, state_dir, f[0], f[1], f[2], f[3], err);
		if (r < 0)
			return kd_err_wrap(err, r, "journal record %zu: refused, nothing undone",
					   i + 1);
	}
	/* Version trees first: they hold nearly every byte the run wrote, so on a full disk their
	 * removal makes the room the restores below need. Nothing else depends on them. */
	for (int pass = 0; pass < 2; pass++)
		for (size_t i = n; i-- > 0;) {
			char **f = fields[i];
			if ((strcmp(f[0], "tree") == 0) != (pass == 0))
				continue;
			int r = undo_one(rootfd, state_dir, f[0], f[1], f[2], f[3], err);
			if (r < 0)
				return kd_err_wrap(err, r, "undo journal record %zu (%s)", i + 1,
						   f[0]);
			kd_fault_point("undo");
		}
	return 1;
}

int kd_journal_abort(kd_journal *j, kd_error *err)
{
	if (j->fd >= 0) {
		close(j->fd);
		j->fd = -1;
	}
	return kd_journal_recover(j->rootfd, j->state_dir, err);
}

int kd_journal_recover(int rootfd, const char *state_dir, kd_error *err)
{
	char path[KD_PATH_MAX];
	_cleanup_free_ char *data = NULL;
	kd_error e2 = {0};

	join(path, sizeof(path), state_dir, KD_JOURNAL_NAME);
	int r = kd_read_file(rootfd, path, KD_JOURNAL_MAX_SIZE, &data, NULL, &e2);
	if (r == -ENOENT)
		return 0;
	if (r < 0)
		return kd_err(err, r, "read journal: %s", e2.msg);
	r = replay_undo(rootfd, state_dir, data, err);
	if (r < 0)
		return kd_err_wrap(err, r, "recover interrupted run");
	int q = finish(rootfd, state_dir, err);
	return q < 0 ? q : 1;
}
