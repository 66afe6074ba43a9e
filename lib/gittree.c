#include "gittree.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "tarball.h"

typedef struct gentry {
	char *path;    /* below the stripped prefix */
	unsigned mode; /* git's: 0100644, 0100755 or 0120000 */
	uint8_t id[KD_SHA1_LEN];
} gentry;

typedef struct glist {
	gentry *e;
	size_t n, cap;
	char *top; /* the stripped top directory, when strip is 1 */
} glist;

static void glist_done(glist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->e[i].path);
	free(l->e);
	free(l->top);
}

/* "blob <size>\0" + data, or "tree <size>\0" + data: git's object header. */
static void object_header(kd_sha1 *h, const char *type, uint64_t size)
{
	char hdr[48];
	int n = snprintf(hdr, sizeof(hdr), "%s %llu", type, (unsigned long long)size);
	kd_sha1_update(h, hdr, (size_t)n + 1);
}

static int hash_buf(const char *type, const void *data, size_t len, uint8_t out[KD_SHA1_LEN],
		    kd_error *err)
{
	_cleanup_sha1_ kd_sha1 h = {0};
	int r = kd_sha1_init(&h, err);
	if (r < 0)
		return r;
	object_header(&h, type, len);
	kd_sha1_update(&h, data, len);
	return kd_sha1_final(&h, out, err);
}

/* Strip `strip` components; NULL (entry skipped) for the top directory itself. */
static int strip_path(glist *l, const char *path, unsigned strip, const char **ret, kd_error *err)
{
	if (strip == 0) {
		*ret = path;
		return 0;
	}
	const char *slash = strchr(path, '/');
	size_t toplen = slash ? (size_t)(slash - path) : strlen(path);
	if (!l->top && !(l->top = strndup(path, toplen)))
		return kd_err(err, -ENOMEM, "out of memory");
	if (strlen(l->top) != toplen || strncmp(l->top, path, toplen) != 0)
		return kd_err(err, -EINVAL, "'%s': not under the archive's top directory '%s/'",
			      path, l->top);
	*ret = slash && slash[1] ? slash + 1 : NULL;
	return 0;
}

static int add_entry(glist *l, const char *path, unsigned mode, const uint8_t id[KD_SHA1_LEN],
		     kd_error *err)
{
	if (l->n >= KD_GITTREE_MAX_ENTRIES)
		return kd_err(err, -E2BIG, "more than %u entries", KD_GITTREE_MAX_ENTRIES);
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 1024;
		gentry *e = realloc(l->e, cap * sizeof(*e));
		if (!e)
			return kd_err(err, -ENOMEM, "out of memory");
		l->e = e;
		l->cap = cap;
	}
	gentry *e = &l->e[l->n];
	if (!(e->path = strdup(path)))
		return kd_err(err, -ENOMEM, "out of memory");
	e->mode = mode;
	memcpy(e->id, id, KD_SHA1_LEN);
	l->n++;
	return 0;
}

static int hash_file(kd_tar_reader *rd, uint64_t size, uint8_t out[KD_SHA1_LEN], kd_error *err)
{
	_cleanup_sha1_ kd_sha1 h = {0};
	const void *buf;
	size_t len;
	uint64_t seen = 0;
	int r = kd_sha1_init(&h, err);
	if (r < 0)
		return r;
	object_header(&h, "blob", size);
	while ((r = kd_tar_read_block(rd, &buf, &len, err)) > 0) {
		kd_sha1_update(&h, buf, len);
		seen += len;
	}
	if (r < 0)
		return r;
	if (seen != size)
		return kd_err(err, -EBADMSG, "%llu bytes where the header says %llu",
			      (unsigned long long)seen, (unsigned long long)size);
	return kd_sha1_final(&h, out, err);
}

static int cmp_entry(const void *a, const void *b)
{
	/* Bytewise full paths give git's order: '/' in the path plays the part of the '/' git
	 * appends to a directory's name when it sorts a tree. */
	return strcmp(((const gentry *)a)->path, ((const gentry *)b)->path);
}

/* The tree of the directory whose entries are e[lo, hi), all starting with the same prefix of
 * plen bytes. */
static int build_tree(const glist *l, size_t lo, size_t hi, size_t plen, uint8_t out[KD_SHA1_LEN],
		      kd_error *err)
{
	_cleanup_free_ char *text = NULL;
	size_t len = 0;
	int r = 0;
	FILE *f = open_memstream(&text, &len);
	if (!f)
		return kd_err(err, -ENOMEM, "out of memory");
	for (size_t i = lo; r >= 0 && i < hi;) {
		const char *name = l->e[i].path + plen;
		const char *slash = strchr(name, '/');
		if (!slash) {
			fprintf(f, "%o %s", l->e[i].mode, name);
			fputc('\0', f);
			fwrite(l->e[i].id, 1, KD_SHA1_LEN, f);
			i++;
			continue;
		}
		size_t nlen = (size_t)(slash - name), j = i;
		while (j < hi && strncmp(l->e[j].path + plen, name, nlen + 1) == 0)
			j++;
		uint8_t sub[KD_SHA1_LEN];
		r = build_tree(l, i, j, plen + nlen + 1, sub, err);
		if (r >= 0) {
			fprintf(f, "40000 %.*s", (int)nlen, name);
			fputc('\0', f);
			fwrite(sub, 1, KD_SHA1_LEN, f);
		}
		i = j;
	}
	if (fclose(f) != 0 && r >= 0)
		r = kd_err(err, -ENOMEM, "out of memory");
	if (r < 0)
		return r;
	return hash_buf("tree", text, len, out, err);
}

int kd_git_tree_id(int fd, unsigned strip, char ret_hex[KD_SHA1_HEX_LEN + 1], kd_error *err)
{
	_cleanup_(glist_done) glist l = {0};
	kd_tar_read_opts o = {.max_entries = KD_GITTREE_MAX_ENTRIES, .decompress_thread = true};
	kd_tar_reader *rd = NULL;
	kd_tar_entry te;
	int r;

	if (strip > 1)
		return kd_err(err, -EINVAL, "git tree: strip %u is not supported", strip);
	r = kd_tar_open(fd, &o, &rd, err);
	if (r < 0)
		return kd_err_wrap(err, r, "git tree");
	while ((r = kd_tar_next(rd, &te, err)) > 0) {
		const char *path;
		uint8_t id[KD_SHA1_LEN];
		if ((r = strip_path(&l, te.path, strip, &path, err)) < 0)
			break;
		if (!path || te.type == KD_ENTRY_DIR)
			continue; /* git keeps no directories, only the files in them */
		switch (te.type) {
		case KD_ENTRY_FILE:
			if (te.size > KD_GITTREE_MAX_FILE) {
				r = kd_err(err, -EFBIG, "'%s': larger than %llu bytes", te.path,
					   (unsigned long long)KD_GITTREE_MAX_FILE);
				break;
			}
			r = hash_file(rd, te.size, id, err);
			if (r >= 0)
				r = add_entry(&l, path, (te.mode & 0100) ? 0100755 : 0100644, id,
					      err);
			break;
		case KD_ENTRY_SYMLINK:
			r = hash_buf("blob", te.link, strlen(te.link), id, err);
			if (r >= 0)
				r = add_entry(&l, path, 0120000, id, err);
			break;
		case KD_ENTRY_HARDLINK: {
			const char *target;
			r = strip_path(&l, te.link, strip, &target, err);
			if (r < 0)
				break;
			r = kd_err(err, -ENOENT, "'%s': hard link to '%s', not an earlier file",
				   te.path, te.link);
			for (size_t i = l.n; target && i-- > 0;)
				if (strcmp(l.e[i].path, target) == 0 && l.e[i].mode != 0120000) {
					memcpy(id, l.e[i].id, KD_SHA1_LEN);
					r = add_entry(&l, path, l.e[i].mode, id, err);
					break;
				}
			break;
		}
		default:
			r = kd_err(err, -EINVAL, "'%s': a %s has no place in a git tree", te.path,
				   kd_entry_type_name(te.type));
		}
		if (r < 0)
			break;
	}
	kd_tar_reader_free(rd);
	if (r < 0)
		return kd_err_wrap(err, r, "git tree");
	qsort(l.e, l.n, sizeof(*l.e), cmp_entry);
	for (size_t i = 1; i < l.n; i++)
		if (strcmp(l.e[i - 1].path, l.e[i].path) == 0)
			return kd_err(err, -EINVAL, "git tree: '%s' appears twice", l.e[i].path);
	uint8_t id[KD_SHA1_LEN];
	r = build_tree(&l, 0, l.n, 0, id, err);
	if (r < 0)
		return kd_err_wrap(err, r, "git tree");
	kd_hex(id, sizeof(id), ret_hex);
	return 0;
}
