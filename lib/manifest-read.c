/* The payload manifest reader: kd_manifest_parse, with every validation rule of docs/PAYLOAD.md.
 * A json-c tree costs about 1 KiB per file entry (a hash table per object) on top of the text
 * and of kd_manifest, which made parsing the peak of an install's memory. This reader walks the
 * text twice instead and allocates nothing per value: a syntax pass (strict RFC 8259: strings
 * with every escape and surrogate pairs, valid UTF-8 and no raw control characters, numbers,
 * literals, depth, duplicate keys) that reports "kata-payload.json:LINE:COL: ...", then a schema
 * pass that fills kd_manifest directly, checking fields in the same order (and with the same
 * messages) as the typed getters of lib/json.h. Unknown keys are skipped, as they always were. */
#include <inttypes.h>
#include <string.h>

#include "digest.h"
#include "fsroot.h"
#include "json.h"
#include "payload-internal.h"

static int file_type_from(const char *s, kd_file_type *ret)
{
	static const kd_file_type all[] = {KD_FILE_REG, KD_FILE_DIR, KD_FILE_SYMLINK,
					   KD_FILE_HARDLINK};
	for (size_t i = 0; i < ELEMENTSOF(all); i++)
		if (strcmp(s, kd_file_type_name(all[i])) == 0) {
			*ret = all[i];
			return 0;
		}
	return -EINVAL;
}

static int cmp_pfile(const void *a, const void *b)
{
	return strcmp(((const kd_pfile *)a)->path, ((const kd_pfile *)b)->path);
}

/* Parse "0755": octal digits only, at most 07777. */
static int parse_mode(const char *s, mode_t *ret)
{
	unsigned v = 0;
	size_t n = strlen(s);

	if (n == 0 || n > 5)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '7')
			return -EINVAL;
		v = v * 8 + (unsigned)(s[i] - '0');
	}
	if (v > 07777)
		return -EINVAL;
	*ret = (mode_t)v;
	return 0;
}

/* Does the relative link text, placed at path (relative to the tree), stay inside the tree
 * when resolved lexically? */
static bool link_stays_inside(const char *path, const char *target)
{
	long depth = 0;
	const char *p, *c;

	if (!*target || target[0] == '/')
		return false;
	for (p = path; (c = strchr(p, '/')); p = c + 1)
		depth++;
	for (p = target; *p; p = *c ? c + 1 : c) {
		c = strchrnul(p, '/');
		size_t n = (size_t)(c - p);
		if (n == 0 || (n == 1 && p[0] == '.'))
			continue;
		if (n == 2 && p[0] == '.' && p[1] == '.') {
			if (--depth < 0)
				return false;
		} else {
			depth++;
		}
	}
	return true;
}

/* ---- links resolved against the tree ---- */

/* The kernel's MAXSYMLINKS: links followed in one path lookup, nested ones included. */
#define LINK_MAX_HOPS 40u
/* Where a chain of links may lead while it is resolved (the tree's own paths are shorter). */
#define LINK_MAX_RESOLVED (2u * KD_PATH_MAX)

/* Where each symlink of the manifest leads: the path it resolves to relative to the tree
 * ("" = the tree's root), resolved as the kernel would resolve it in the installed tree. */
typedef struct link_res {
	char *to;
	unsigned hops; /* links followed to get there, this one included */
	uint8_t state; /* 0 not yet, 1 being resolved, 2 done */
} link_res;

typedef struct link_walk {
	const kd_manifest *m;
	link_res *res;
	kd_error *err;
} link_walk;

/* The kernel resolves a link's text from the link's directory, component by component; a
 * component that is itself a link is replaced by where that link leads, wherever it is in the
 * text (so "s/../../x" through "s -> ../.." climbs from where s leads, not from s). A chain
 * that leaves the tree at any step is refused, whatever it reaches afterwards. Components the
 * manifest does not have (and files in the middle of a path) are walked as directories: the
 * kernel would fail there, so this only refuses more. */
static int resolve_link(link_walk *w, size_t i, unsigned depth)
{
	const kd_pfile *f = &w->m->files[i];
	link_res *lr = &w->res[i];
	char cur[LINK_MAX_RESOLVED + 1];
	const char *via = NULL, *p, *c;
	size_t len;

	if (lr->state == 2)
		return 0;
	if (lr->state == 1)
		return kd_err(w->err, -ELOOP, "manifest: symlink '%s' -> '%s' is part of a cycle",
			      f->path, f->target);
	if (depth >= LINK_MAX_HOPS)
		return kd_err(w->err, -ELOOP,
			      "manifest: symlink '%s' -> '%s': more than %u links in a chain",
			      f->path, f->target, LINK_MAX_HOPS);
	lr->state = 1;
	lr->hops = 1;
	p = strrchr(f->path, '/');
	len = p ? (size_t)(p - f->path) : 0;
	memcpy(cur, f->path, len);
	cur[len] = '\0';
	for (p = f->target; *p; p = *c ? c + 1 : c) {
		c = strchrnul(p, '/');
		size_t n = (size_t)(c - p);
		if (n == 0 || (n == 1 && p[0] == '.'))
			continue;
		if (n == 2 && p[0] == '.' && p[1] == '.') {
			if (len == 0) {
				if (via)
					return kd_err(w->err, -EPERM,
						      "manifest: symlink '%s' -> '%s' escapes %s "
						      "through the link '%s'",
						      f->path, f->target, PREFIX, via);
				return kd_err(w->err, -EPERM,
					      "manifest: symlink '%s' -> '%s' escapes %s", f->path,
					      f->target, PREFIX);
			}
			char *s = strrchr(cur, '/');
			len = s ? (size_t)(s - cur) : 0;
			cur[len] = '\0';
			continue;
		}
		if (len + 1 + n > LINK_MAX_RESOLVED)
			return kd_err(w->err, -ENAMETOOLONG,
				      "manifest: symlink '%s' -> '%s' leads to a path longer than "
				      "%u bytes",
				      f->path, f->target, LINK_MAX_RESOLVED);
		if (len)
			cur[len++] = '/';
		memcpy(cur + len, p, n);
		len += n;
		cur[len] = '\0';
		const kd_pfile *t = len <= KD_PATH_MAX ? kd_manifest_find(w->m, cur) : NULL;
		if (!t || t->type != KD_FILE_SYMLINK)
			continue;
		size_t j = (size_t)(t - w->m->files);
		int r = resolve_link(w, j, depth + 1);
		if (r < 0)
			return r;
		lr->hops += w->res[j].hops;
		if (lr->hops > LINK_MAX_HOPS)
			return kd_err(
				w->err, -ELOOP,
				"manifest: symlink '%s' -> '%s': more than %u links in a chain",
				f->path, f->target, LINK_MAX_HOPS);
		via = t->path;
		len = strlen(w->res[j].to);
		memcpy(cur, w->res[j].to, len + 1);
	}
	if (!(lr->to = strdup(cur)))
		return kd_err(w->err, -ENOMEM, "out of memory");
	lr->state = 2;
	return 0;
}

/* Every symlink, resolved through the others, stays inside the tree. */
static int validate_links(const kd_manifest *m, kd_error *err)
{
	link_walk w = {.m = m, .err = err};
	int r = 0;

	if (!(w.res = calloc(m->n_files ? m->n_files : 1, sizeof(link_res))))
		return kd_err(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < m->n_files && r >= 0; i++)
		if (m->files[i].type == KD_FILE_SYMLINK)
			r = resolve_link(&w, i, 0);
	for (size_t i = 0; i < m->n_files; i++)
		free(w.res[i].to);
	free(w.res);
	return r;
}

/* Cross-entry rules: unique paths, parents are directories, hardlinks point at earlier regular
 * files of the same component, total size. */
static int validate_files(kd_manifest *m, kd_error *err)
{
	uint64_t total = 0;

	qsort(m->files, m->n_files, sizeof(kd_pfile), cmp_pfile);
	for (size_t i = 0; i < m->n_files; i++) {
		kd_pfile *f = &m->files[i];
		if (i > 0 && strcmp(m->files[i - 1].path, f->path) == 0)
			return kd_err(err, -EINVAL, "manifest: duplicate path '%s'", f->path);
		const char *slash = strrchr(f->path, '/');
		if (slash) {
			char dir[KD_PATH_MAX + 1];
			snprintf(dir, sizeof(dir), "%.*s", (int)(slash - f->path), f->path);
			const kd_pfile *parent = kd_manifest_find(m, dir);
			if (!parent || parent->type != KD_FILE_DIR)
				return kd_err(
					err, -EINVAL,
					"manifest: parent of '%s' is not a directory in the manifest",
					f->path);
		}
		if (f->type == KD_FILE_REG) {
			total += f->size;
			if (total > KD_PAYLOAD_MAX_TOTAL)
				return kd_err(err, -EFBIG,
					      "manifest: files exceed %llu bytes in total",
					      (unsigned long long)KD_PAYLOAD_MAX_TOTAL);
		}
	}
	for (size_t i = 0; i < m->n_files; i++) {
		kd_pfile *f = &m->files[i];
		if (f->type != KD_FILE_HARDLINK)
			continue;
		const kd_pfile *t = kd_manifest_find(m, f->target);
		if (!t || t->type != KD_FILE_REG || strcmp(t->path, f->path) >= 0 ||
		    t->component != f->component)
			return kd_err(
				err, -EPERM,
				"manifest: hardlink '%s' -> '%s' must point at an earlier file of its component",
				f->path, f->target);
		f->size = t->size;
		memcpy(f->sha256, t->sha256, sizeof(f->sha256));
	}
	return validate_links(m, err);
}

/* ---- the text reader ---- */

#define MANIFEST_MAX_DEPTH KD_JSON_MAX_DEPTH /* nesting of objects and arrays */
#define SMALL_OBJECT 8u	      /* objects with more keys are sorted to find duplicates */
#define MAX_KEY_IN_MESSAGE 64 /* bytes of a duplicate key quoted in its message */
#define ABSENT SIZE_MAX	      /* field position: not in the object, or null */

typedef struct sbuf {
	char *s;
	size_t len, cap;
} sbuf;

/* Scratch strings of the schema pass, one per field read at the same time. */
enum { S_KEY, S_A, S_B, S_C, S_D, S_E, N_SCRATCH };

typedef struct reader {
	const char *s;
	size_t len;
	kd_error *err;
	uint32_t *keys; /* syntax pass: offsets of the keys of the objects being read */
	size_t n_keys, cap_keys;
	sbuf str[N_SCRATCH];
} reader;

static void reader_done(reader *p)
{
	free(p->keys);
	for (size_t i = 0; i < N_SCRATCH; i++)
		free(p->str[i].s);
}

static int sb_put(sbuf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 64;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *q = realloc(b->s, cap);
		if (!q)
			return -ENOMEM;
		b->s = q;
		b->cap = cap;
	}
	memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = '\0';
	return 0;
}

/* A syntax error at byte pos, positioned like kd_json_parse's. */
static int fail_at(const reader *p, size_t pos, int code, const char *what)
{
	size_t line = 1, col = 1;

	for (size_t i = 0; i < pos && i < p->len; i++) {
		if (p->s[i] == '\n') {
			line++;
			col = 1;
		} else {
			col++;
		}
	}
	return kd_err(p->err, code, "%s:%zu:%zu: %s", KD_PAYLOAD_MANIFEST_NAME, line, col, what);
}

static int fail_eof(const reader *p)
{
	return fail_at(p, p->len, -EINVAL, "unexpected end of JSON input");
}

static size_t skip_ws(const reader *p, size_t i)
{
	while (i < p->len &&
	       (p->s[i] == ' ' || p->s[i] == '\t' || p->s[i] == '\n' || p->s[i] == '\r'))
		i++;
	return i;
}

/* Length of the well-formed UTF-8 sequence (no overlong forms, no surrogates, at most
 * U+10FFFF) at s, or 0. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
	size_t k;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		k = 2;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		k = 3;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		k = 4;
	else
		return 0;
	if (n < k)
		return 0;
	for (size_t i = 1; i < k; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] >= 0xa0) ||
	    (s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] >= 0x90))
		return 0;
	return k;
}

static int hex4(const char *s, unsigned *ret)
{
	unsigned v = 0;

	for (int i = 0; i < 4; i++) {
		char c = s[i];
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned)(c - 'A' + 10);
		else
			return -EINVAL;
	}
	*ret = v;
	return 0;
}

static size_t utf8_put(unsigned cp, char out[4])
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xc0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xe0 | (cp >> 12));
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		out[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (char)(0xf0 | (cp >> 18));
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	out[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/* The escape at s[*i] == '\\': its code point, *i moved past it. */
static int read_escape(const reader *p, size_t *i, unsigned *ret)
{
	size_t at = *i;
	unsigned cp, lo;

	if (at + 1 >= p->len)
		return fail_eof(p);
	switch (p->s[at + 1]) {
	case '"':
	case '\\':
	case '/':
		*ret = (unsigned char)p->s[at + 1];
		*i = at + 2;
		return 0;
	case 'b':
		*ret = '\b';
		*i = at + 2;
		return 0;
	case 'f':
		*ret = '\f';
		*i = at + 2;
		return 0;
	case 'n':
		*ret = '\n';
		*i = at + 2;
		return 0;
	case 'r':
		*ret = '\r';
		*i = at + 2;
		return 0;
	case 't':
		*ret = '\t';
		*i = at + 2;
		return 0;
	case 'u':
		break;
	default:
		return fail_at(p, at, -EINVAL, "invalid escape sequence in a string");
	}
	if (at + 6 > p->len)
		return fail_eof(p);
	if (hex4(p->s + at + 2, &cp) < 0)
		return fail_at(p, at, -EINVAL, "invalid \\u escape in a string");
	*i = at + 6;
	if (cp >= 0xdc00 && cp <= 0xdfff)
		return fail_at(p, at, -EINVAL, "unpaired UTF-16 surrogate in a string");
	if (cp >= 0xd800 && cp <= 0xdbff) {
		if (at + 8 <= p->len && (p->s[at + 6] != '\\' || p->s[at + 7] != 'u'))
			return fail_at(p, at, -EINVAL, "unpaired UTF-16 surrogate in a string");
		if (at + 12 > p->len)
			return fail_eof(p);
		if (hex4(p->s + at + 8, &lo) < 0 || lo < 0xdc00 || lo > 0xdfff)
			return fail_at(p, at, -EINVAL, "unpaired UTF-16 surrogate in a string");
		cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
		*i = at + 12;
	}
	*ret = cp;
	return 0;
}

/* The string at s[*pos] == '"': checked, and decoded into out (NUL-terminated) when out is not
 * NULL. *ret_nul tells whether it holds U+0000. *pos moves past the closing quote. */
static int read_string(const reader *p, size_t *pos, sbuf *out, bool *ret_nul)
{
	const unsigned char *s = (const unsigned char *)p->s;
	size_t i = *pos + 1;
	bool nul = false;
	int r;

	if (out) {
		out->len = 0;
		if (sb_put(out, "", 0) < 0) /* "" must be a string too */
			return kd_err(p->err, -ENOMEM, "out of memory");
	}
	for (;;) {
		size_t start = i;
		while (i < p->len && s[i] != '"' && s[i] != '\\' && s[i] >= 0x20 && s[i] < 0x80)
			i++;
		if (out && i > start && sb_put(out, p->s + start, i - start) < 0)
			return kd_err(p->err, -ENOMEM, "out of memory");
		if (i >= p->len)
			return fail_eof(p);
		if (s[i] == '"')
			break;
		if (s[i] < 0x20)
			return fail_at(p, i, -EINVAL, "control character in a string");
		if (s[i] >= 0x80) {
			size_t k = utf8_seq(s + i, p->len - i);
			if (!k)
				return fail_at(p, i, -EINVAL, "invalid UTF-8 in a string");
			if (out && sb_put(out, p->s + i, k) < 0)
				return kd_err(p->err, -ENOMEM, "out of memory");
			i += k;
			continue;
		}
		unsigned cp;
		char u[4];
		if ((r = read_escape(p, &i, &cp)) < 0)
			return r;
		nul |= cp == 0;
		if (out && sb_put(out, u, utf8_put(cp, u)) < 0)
			return kd_err(p->err, -ENOMEM, "out of memory");
	}
	*pos = i + 1;
	if (ret_nul)
		*ret_nul = nul;
	return 0;
}

/* The number at *pos (RFC 8259 grammar); *ret_int: no fraction and no exponent. */
static int read_number(const reader *p, size_t *pos, bool *ret_int)
{
	const char *s = p->s;
	size_t i = *pos, n = p->len;
	bool integer = true;

	if (i < n && s[i] == '-')
		i++;
	if (i >= n)
		return fail_eof(p);
	if (s[i] == '0')
		i++;
	else if (s[i] >= '1' && s[i] <= '9')
		while (i < n && s[i] >= '0' && s[i] <= '9')
			i++;
	else
		return fail_at(p, i, -EINVAL, "unexpected character");
	if (i < n && s[i] == '.') {
		integer = false;
		if (++i >= n)
			return fail_eof(p);
		if (s[i] < '0' || s[i] > '9')
			return fail_at(p, i, -EINVAL, "unexpected character");
		while (i < n && s[i] >= '0' && s[i] <= '9')
			i++;
	}
	if (i < n && (s[i] == 'e' || s[i] == 'E')) {
		integer = false;
		if (++i < n && (s[i] == '+' || s[i] == '-'))
			i++;
		if (i >= n)
			return fail_eof(p);
		if (s[i] < '0' || s[i] > '9')
			return fail_at(p, i, -EINVAL, "unexpected character");
		while (i < n && s[i] >= '0' && s[i] <= '9')
			i++;
	}
	*pos = i;
	if (ret_int)
		*ret_int = integer;
	return 0;
}

/* ---- syntax pass ---- */

/* Next code point of an already checked string (i inside it), or -1 at its closing quote. */
static long next_cp(const reader *p, size_t *i)
{
	const unsigned char *s = (const unsigned char *)p->s;
	unsigned cp;

	if (s[*i] == '"')
		return -1;
	if (s[*i] == '\\') {
		if (read_escape(p, i, &cp) < 0)
			return -1;
		return (long)cp;
	}
	size_t k = utf8_seq(s + *i, p->len - *i);
	cp = k == 1 ? s[*i] : (unsigned)(s[*i] & (0x7f >> k));
	for (size_t j = 1; j < k; j++)
		cp = (cp << 6) | (s[*i + j] & 0x3f);
	*i += k ? k : 1;
	return (long)cp;
}

/* Compare two checked keys (offsets of their opening quotes) by their decoded text. */
static int cmp_key_text(const reader *p, size_t a, size_t b)
{
	size_t i = a + 1, j = b + 1;

	for (;;) {
		long x = next_cp(p, &i), y = next_cp(p, &j);
		if (x != y)
			return x < y ? -1 : 1;
		if (x < 0)
			return 0;
	}
}

static int cmp_keys_r(const void *a, const void *b, void *userdata)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	int c = cmp_key_text(userdata, x, y);
	return c ? c : (x < y ? -1 : x > y);
}

static int fail_duplicate(const reader *p, size_t at)
{
	char what[MAX_KEY_IN_MESSAGE + 32];
	size_t i = at + 1, n;

	while (i < p->len && p->s[i] != '"')
		i += p->s[i] == '\\' ? 2 : 1;
	n = i - at - 1;
	if (n > MAX_KEY_IN_MESSAGE) {
		n = MAX_KEY_IN_MESSAGE;
		while (n > 0 && ((unsigned char)p->s[at + 1 + n] & 0xc0) == 0x80)
			n--;
	}
	snprintf(what, sizeof(what), "duplicate key \"%.*s\"%s", (int)n, p->s + at + 1,
		 n < i - at - 1 ? "..." : "");
	return fail_at(p, at, -EINVAL, what);
}

/* Keys first..n_keys belong to one object: refuse the earliest repeated one. */
static int check_duplicates(reader *p, size_t first)
{
	uint32_t *k = p->keys + first;
	size_t n = p->n_keys - first, dup = ABSENT;

	if (n <= SMALL_OBJECT) {
		for (size_t j = 1; j < n; j++)
			for (size_t i = 0; i < j; i++)
				if (cmp_key_text(p, k[i], k[j]) == 0)
					return fail_duplicate(p, k[j]);
		return 0;
	}
	qsort_r(k, n, sizeof(*k), cmp_keys_r, p);
	for (size_t j = 1; j < n; j++)
		if (cmp_key_text(p, k[j - 1], k[j]) == 0 && k[j] < dup)
			dup = k[j];
	return dup == ABSENT ? 0 : fail_duplicate(p, dup);
}

static int push_key(reader *p, size_t at)
{
	if (p->n_keys == p->cap_keys) {
		size_t cap = p->cap_keys ? p->cap_keys * 2 : 64;
		uint32_t *k = reallocarray(p->keys, cap, sizeof(*k));
		if (!k)
			return kd_err(p->err, -ENOMEM, "out of memory");
		p->keys = k;
		p->cap_keys = cap;
	}
	p->keys[p->n_keys++] = (uint32_t)at;
	return 0;
}

static int check_literal(const reader *p, size_t i, const char *word)
{
	for (size_t k = 0; word[k]; k++) {
		if (i + k >= p->len)
			return fail_eof(p);
		if (p->s[i + k] != word[k])
			return fail_at(p, i + k, -EINVAL, "unexpected character");
	}
	return 0;
}

static int check_value(reader *p, size_t *pos, int depth);

static int check_object(reader *p, size_t *pos, int depth)
{
	size_t i = skip_ws(p, *pos + 1), first = p->n_keys;
	int r;

	if (i < p->len && p->s[i] == '}') {
		*pos = i + 1;
		return 0;
	}
	for (;;) {
		bool nul;
		size_t key = i;
		if (i >= p->len)
			return fail_eof(p);
		if (p->s[i] != '"')
			return fail_at(p, i, -EINVAL, "unexpected character");
		if ((r = read_string(p, &i, NULL, &nul)) < 0)
			return r;
		if (nul)
			return fail_at(p, key, -EINVAL, "NUL character (\\u0000) in an object key");
		if ((r = push_key(p, key)) < 0)
			return r;
		i = skip_ws(p, i);
		if (i >= p->len)
			return fail_eof(p);
		if (p->s[i] != ':')
			return fail_at(p, i, -EINVAL,
				       "object property name separator ':' expected");
		i++;
		if ((r = check_value(p, &i, depth)) < 0)
			return r;
		i = skip_ws(p, i);
		if (i >= p->len)
			return fail_eof(p);
		if (p->s[i] == '}')
			break;
		if (p->s[i] != ',')
			return fail_at(p, i, -EINVAL, "object value separator ',' expected");
		i = skip_ws(p, i + 1);
	}
	if ((r = check_duplicates(p, first)) < 0)
		return r;
	p->n_keys = first;
	*pos = i + 1;
	return 0;
}

static int check_array(reader *p, size_t *pos, int depth)
{
	size_t i = skip_ws(p, *pos + 1);
	int r;

	if (i < p->len && p->s[i] == ']') {
		*pos = i + 1;
		return 0;
	}
	for (;;) {
		if ((r = check_value(p, &i, depth)) < 0)
			return r;
		i = skip_ws(p, i);
		if (i >= p->len)
			return fail_eof(p);
		if (p->s[i] == ']')
			break;
		if (p->s[i] != ',')
			return fail_at(p, i, -EINVAL, "array value separator ',' expected");
		i++;
	}
	*pos = i + 1;
	return 0;
}

/* One value at *pos (after optional whitespace); depth counts the arrays and objects around
 * it. */
static int check_value(reader *p, size_t *pos, int depth)
{
	size_t i = skip_ws(p, *pos);
	int r;

	if (i >= p->len)
		return fail_eof(p);
	switch (p->s[i]) {
	case '{':
	case '[':
		if (depth >= MANIFEST_MAX_DEPTH) {
			char what[64];
			snprintf(what, sizeof(what), "JSON nested deeper than %d levels",
				 MANIFEST_MAX_DEPTH);
			return fail_at(p, i, -ELOOP, what);
		}
		r = p->s[i] == '{' ? check_object(p, &i, depth + 1) : check_array(p, &i, depth + 1);
		break;
	case '"':
		r = read_string(p, &i, NULL, NULL);
		break;
	case 't':
		r = check_literal(p, i, "true");
		i += 4;
		break;
	case 'f':
		r = check_literal(p, i, "false");
		i += 5;
		break;
	case 'n':
		r = check_literal(p, i, "null");
		i += 4;
		break;
	default:
		if (p->s[i] != '-' && (p->s[i] < '0' || p->s[i] > '9'))
			return fail_at(p, i, -EINVAL, "unexpected character");
		r = read_number(p, &i, NULL);
	}
	if (r < 0)
		return r;
	*pos = i;
	return 0;
}

/* The whole text is one value and trailing whitespace; *ret_root: where the value starts. */
static int check_document(reader *p, size_t *ret_root)
{
	size_t i = 0, root = skip_ws(p, 0);
	int r;

	if ((r = check_value(p, &i, 0)) < 0)
		return r;
	i = skip_ws(p, i);
	if (i < p->len)
		return fail_at(p, i, -EINVAL, "trailing data after JSON value");
	*ret_root = root;
	return 0;
}

/* ---- schema pass: the text is known to be valid JSON from here on ---- */

/* Position just after the value at i. */
static size_t skip_value(const reader *p, size_t i)
{
	int depth = 0;

	do {
		i = skip_ws(p, i);
		if (i >= p->len)
			return p->len;
		switch (p->s[i]) {
		case '"':
			for (i++; i < p->len && p->s[i] != '"';)
				i += p->s[i] == '\\' ? 2 : 1;
			i++;
			break;
		case '{':
		case '[':
			depth++;
			i++;
			break;
		case '}':
		case ']':
			depth--;
			i++;
			break;
		case ',':
		case ':':
			i++;
			break;
		default:
			while (i < p->len && !strchr(",:]} \t\r\n", p->s[i]))
				i++;
		}
	} while (depth > 0);
	return i;
}

/* First element of the array at pos, or ABSENT. */
static size_t array_first(const reader *p, size_t pos)
{
	size_t i = skip_ws(p, pos + 1);
	return i < p->len && p->s[i] != ']' ? i : ABSENT;
}

/* Element after the one at i, or ABSENT. */
static size_t array_next(const reader *p, size_t i)
{
	i = skip_ws(p, skip_value(p, i));
	return i < p->len && p->s[i] == ',' ? skip_ws(p, i + 1) : ABSENT;
}

static size_t array_length(const reader *p, size_t pos)
{
	size_t n = 0;
	for (size_t i = array_first(p, pos); i != ABSENT; i = array_next(p, i))
		n++;
	return n;
}

/* Member after the one whose key is at i (or the first one when i is the '{'), or ABSENT;
 * reads its key into str[S_KEY] and sets *ret_value. */
static size_t object_next(reader *p, size_t i, size_t *ret_value, int *ret)
{
	*ret = 0;
	if (p->s[i] != '{') {
		i = skip_ws(p, i);
		i = skip_ws(p, skip_value(p, skip_ws(p, skip_value(p, i)) + 1));
		if (i >= p->len || p->s[i] != ',')
			return ABSENT;
	}
	i = skip_ws(p, i + 1);
	if (i >= p->len || p->s[i] != '"')
		return ABSENT;
	size_t at = i;
	if ((*ret = read_string(p, &i, &p->str[S_KEY], NULL)) < 0)
		return ABSENT;
	*ret_value = skip_ws(p, skip_ws(p, i) + 1);
	return at;
}

typedef struct field {
	const char *key;
	size_t pos; /* of its value; ABSENT when missing or null */
} field;

/* Find the fields' values in the object at pos; other keys are skipped. */
static int read_fields(reader *p, size_t pos, field *f, size_t n)
{
	size_t v;
	int r;

	for (size_t k = 0; k < n; k++)
		f[k].pos = ABSENT;
	for (size_t i = object_next(p, pos, &v, &r); i != ABSENT; i = object_next(p, i, &v, &r))
		for (size_t k = 0; k < n; k++)
			if (strcmp(p->str[S_KEY].s, f[k].key) == 0) {
				f[k].pos = p->s[v] == 'n' ? ABSENT : v;
				break;
			}
	return r;
}

/* kd_json_type_name's word for the value at pos. */
static const char *type_at(const reader *p, size_t pos)
{
	bool integer = true;

	switch (p->s[pos]) {
	case '{':
		return "object";
	case '[':
		return "array";
	case '"':
		return "string";
	case 't':
	case 'f':
		return "bool";
	case 'n':
		return "null";
	}
	if (read_number(p, &pos, &integer) < 0)
		return "unknown";
	return integer ? "int" : "double";
}

static int wrong_type(const reader *p, size_t pos, const char *where, const char *want)
{
	return kd_err(p->err, -EINVAL, "%s: expected %s, got %s",
		      where && *where ? where : "(root)", want, type_at(p, pos));
}

static int as_string(reader *p, size_t pos, const char *where, int slot, const char **ret)
{
	bool nul;
	int r;

	if (p->s[pos] != '"')
		return wrong_type(p, pos, where, "string");
	if ((r = read_string(p, &pos, &p->str[slot], &nul)) < 0)
		return r;
	if (nul)
		return kd_err(p->err, -EINVAL, "%s: string contains a NUL character",
			      where && *where ? where : "(root)");
	*ret = p->str[slot].s;
	return 0;
}

/* Like kd_json_get_*: 1 present, 0 absent and optional, < 0 error. */
static int get_field(const reader *p, const field *f, const char *where, bool required, char *path,
		     size_t size)
{
	kd_json_path_key(path, size, where, f->key);
	if (f->pos != ABSENT)
		return 1;
	return required ? kd_err(p->err, -ENOENT, "%s: missing", path) : 0;
}

static int get_string(reader *p, const field *f, const char *where, bool required, int slot,
		      const char **ret)
{
	char path[KD_JSON_PATH_MAX];
	int r = get_field(p, f, where, required, path, sizeof(path));
	if (r <= 0)
		return r;
	r = as_string(p, f->pos, path, slot, ret);
	return r < 0 ? r : 1;
}

static int get_container(reader *p, const field *f, const char *where, bool required, char open,
			 size_t *ret)
{
	char path[KD_JSON_PATH_MAX];
	int r = get_field(p, f, where, required, path, sizeof(path));
	if (r <= 0)
		return r;
	if (p->s[f->pos] != open)
		return wrong_type(p, f->pos, path, open == '{' ? "object" : "array");
	*ret = f->pos;
	return 1;
}

/* An integer field: *ret_neg and the magnitude in *ret_abs. */
static int get_integer(reader *p, const field *f, const char *where, bool required, bool *ret_neg,
		       uint64_t *ret_abs)
{
	char path[KD_JSON_PATH_MAX];
	size_t i = f->pos;
	uint64_t v = 0;
	bool integer;
	int r = get_field(p, f, where, required, path, sizeof(path));

	if (r <= 0)
		return r;
	if (p->s[i] != '-' && (p->s[i] < '0' || p->s[i] > '9'))
		return wrong_type(p, i, path, "integer");
	if (read_number(p, &i, &integer) < 0 || !integer)
		return wrong_type(p, f->pos, path, "integer");
	for (size_t k = f->pos + (p->s[f->pos] == '-'); k < i; k++) {
		unsigned d = (unsigned)(p->s[k] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return kd_err(p->err, -ERANGE, "%s: integer out of range", path);
		v = v * 10 + d;
	}
	*ret_neg = p->s[f->pos] == '-' && v > 0;
	*ret_abs = v;
	return 1;
}

static int get_int64(reader *p, const field *f, const char *where, bool required, int64_t *ret)
{
	char path[KD_JSON_PATH_MAX];
	uint64_t v;
	bool neg;
	int r = get_integer(p, f, where, required, &neg, &v);

	if (r <= 0)
		return r;
	if (v > (uint64_t)INT64_MAX + neg)
		return kd_err(p->err, -ERANGE, "%s: integer out of range",
			      kd_json_path_key(path, sizeof(path), where, f->key));
	*ret = neg ? (int64_t)(0 - v) : (int64_t)v;
	return 1;
}

static int get_uint64(reader *p, const field *f, const char *where, bool required, uint64_t *ret)
{
	char path[KD_JSON_PATH_MAX];
	uint64_t v;
	bool neg;
	int r = get_integer(p, f, where, required, &neg, &v);

	if (r <= 0)
		return r;
	kd_json_path_key(path, sizeof(path), where, f->key);
	if (neg && v > (uint64_t)INT64_MAX + 1)
		return kd_err(p->err, -ERANGE, "%s: integer out of range", path);
	if (neg)
		return kd_err(p->err, -ERANGE, "%s: expected a non-negative integer, got %" PRId64,
			      path, (int64_t)(0 - v));
	*ret = v;
	return 1;
}

/* KD_TMP_PREFIX names are ours: temporary files that recovery removes as debris wherever the
 * engine writes (the prefix, .versions/, the state directory), so a payload may not use them. */
static int check_reserved(const char *path, const char *where, kd_error *err)
{
	const size_t n = strlen(KD_TMP_PREFIX);
	for (const char *c = path; c; c = strchr(c, '/')) {
		c += *c == '/';
		if (strncmp(c, KD_TMP_PREFIX, n) == 0)
			return kd_err(err, -EPERM,
				      "%s: '%s': names starting with '%s' are reserved for "
				      "kata-deploy's temporary files",
				      where, path, KD_TMP_PREFIX);
	}
	return 0;
}

static int parse_file(reader *p, size_t pos, const char *where, size_t comp, kd_strpool **strings,
		      kd_pfile *f)
{
	field fl[] = {{"path", 0}, {"type", 0},	  {"mode", 0},
		      {"size", 0}, {"sha256", 0}, {"target", 0}};
	const char *path, *type, *mode, *sha = NULL, *target = NULL;
	kd_error *err = p->err;
	uint64_t size = 0;
	int r;

	if (p->s[pos] != '{')
		return wrong_type(p, pos, where, "object");
	if ((r = read_fields(p, pos, fl, ELEMENTSOF(fl))) < 0 ||
	    (r = get_string(p, &fl[0], where, true, S_A, &path)) < 0 ||
	    (r = get_string(p, &fl[1], where, true, S_B, &type)) < 0 ||
	    (r = get_string(p, &fl[2], where, true, S_C, &mode)) < 0 ||
	    (r = get_uint64(p, &fl[3], where, false, &size)) < 0 ||
	    (r = get_string(p, &fl[4], where, false, S_D, &sha)) < 0 ||
	    (r = get_string(p, &fl[5], where, false, S_E, &target)) < 0)
		return r;
	f->component = comp;
	if (!kd_path_is_safe(path) || strlen(path) > KD_PATH_MAX - PREFIX_LEN)
		return kd_err(err, -EINVAL, "%s: unsafe path '%s'", where, path);
	if ((r = check_reserved(path, where, err)) < 0)
		return r;
	f->path = kd_strpool_dup(strings, path);
	if (!f->path)
		return kd_err(err, -ENOMEM, "out of memory");
	if (file_type_from(type, &f->type) < 0)
		return kd_err(err, -EINVAL, "%s: '%s': unknown type '%s'", where, path, type);
	if (parse_mode(mode, &f->mode) < 0)
		return kd_err(err, -EINVAL, "%s: '%s': invalid mode '%s'", where, path, mode);
	if (f->mode & 07000)
		return kd_err(err, -EPERM, "%s: '%s': mode %04o has setuid/setgid/sticky bits",
			      where, path, (unsigned)f->mode);
	/* Anyone who may write a file we install may change what runs as root (a symlink's
	 * own mode means nothing; a hardlink has its target's). */
	if ((f->type == KD_FILE_REG || f->type == KD_FILE_DIR) && (f->mode & 022))
		return kd_err(err, -EPERM,
			      "%s: '%s': mode %04o lets %s write it: files and directories "
			      "installed as root may be writable by their owner only",
			      where, path, (unsigned)f->mode,
			      (f->mode & 022) == 022 ? "group and others"
			      : f->mode & 02	     ? "others"
						     : "its group");
	if (f->type == KD_FILE_REG) {
		if (!sha || !kd_sha256_hex_valid(sha))
			return kd_err(err, -EINVAL,
				      "%s: '%s': sha256 must be 64 lowercase hex digits", where,
				      path);
		if (size > KD_PAYLOAD_MAX_ENTRY_SIZE)
			return kd_err(err, -EFBIG,
				      "%s: '%s': size %llu exceeds the limit of %llu bytes", where,
				      path, (unsigned long long)size,
				      (unsigned long long)KD_PAYLOAD_MAX_ENTRY_SIZE);
		f->size = size;
		kd_sha256_from_hex(sha, f->sha256);
	} else if (sha || size) {
		return kd_err(err, -EINVAL, "%s: '%s': a %s has no size or sha256", where, path,
			      type);
	}
	if (f->type == KD_FILE_SYMLINK || f->type == KD_FILE_HARDLINK) {
		if (!target || !*target || strlen(target) > KD_PATH_MAX)
			return kd_err(err, -EINVAL, "%s: '%s': %s needs a target", where, path,
				      type);
		if (f->type == KD_FILE_SYMLINK && !link_stays_inside(path, target))
			return kd_err(err, -EPERM, "%s: symlink '%s' -> '%s' escapes %s", where,
				      path, target, PREFIX);
		f->target = kd_strpool_dup(strings, target);
		if (!f->target)
			return kd_err(err, -ENOMEM, "out of memory");
	} else if (target) {
		return kd_err(err, -EINVAL, "%s: '%s': a %s has no target", where, path, type);
	}
	return 0;
}

/* Format 2: the component's frame, "blob_sha256", "blob_size" and "tar_size". */
static int parse_blob(reader *p, field *fl, const char *where, kd_component *c)
{
	const char *sha;
	int r;

	if ((r = get_string(p, &fl[0], where, true, S_C, &sha)) < 0 ||
	    (r = get_uint64(p, &fl[1], where, true, &c->blob_size)) < 0 ||
	    (r = get_uint64(p, &fl[2], where, true, &c->tar_size)) < 0)
		return r;
	if (!kd_sha256_hex_valid(sha))
		return kd_err(p->err, -EINVAL, "%s: blob_sha256 must be 64 lowercase hex digits",
			      where);
	memcpy(c->blob_sha256, sha, sizeof(c->blob_sha256));
	return 0;
}

static int parse_components(reader *p, kd_manifest *m, size_t arr)
{
	_cleanup_free_ size_t *files = NULL;
	char where[KD_JSON_PATH_MAX], fwhere[KD_JSON_PATH_MAX], comp[KD_JSON_PATH_MAX];
	size_t n = array_length(p, arr), total = 0, i = 0;
	kd_error *err = p->err;
	int r;

	if (n > MAX_SPEC_COMPONENTS)
		return kd_err(err, -E2BIG, "components: more than %u", MAX_SPEC_COMPONENTS);
	m->components = calloc(n ? n : 1, sizeof(kd_component));
	files = calloc(n ? n : 1, sizeof(size_t));
	if (!m->components || !files)
		return kd_err(err, -ENOMEM, "out of memory");
	for (size_t c = array_first(p, arr); c != ABSENT; c = array_next(p, c), i++) {
		field fl[] = {{"name", 0},	  {"version", 0},   {"files", 0},
			      {"blob_sha256", 0}, {"blob_size", 0}, {"tar_size", 0}};
		const char *name, *version;
		kd_json_path_index(where, sizeof(where), "components", i);
		if (p->s[c] != '{')
			return wrong_type(p, c, where, "object");
		if ((r = read_fields(p, c, fl, ELEMENTSOF(fl))) < 0 ||
		    (r = get_string(p, &fl[0], where, true, S_A, &name)) < 0 ||
		    (r = get_string(p, &fl[1], where, true, S_B, &version)) < 0 ||
		    (r = get_container(p, &fl[2], where, true, '[', &files[i])) < 0)
			return r;
		if (kd_manifest_component(m, name) >= 0)
			return kd_err(err, -EINVAL, "%s: duplicate component '%s'", where, name);
		m->n_components++;
		if ((r = kd_manifest_dup_name(name, where, &m->components[i].name, err)) < 0 ||
		    (r = kd_manifest_dup_name(version, where, &m->components[i].version, err)) < 0)
			return r;
		if (m->format >= 2 && (r = parse_blob(p, &fl[3], where, &m->components[i])) < 0)
			return r;
		total += array_length(p, files[i]);
		if (total > KD_PAYLOAD_MAX_ENTRIES)
			return kd_err(err, -E2BIG, "manifest: more than %u files",
				      KD_PAYLOAD_MAX_ENTRIES);
	}
	m->files = calloc(total ? total : 1, sizeof(kd_pfile));
	if (!m->files)
		return kd_err(err, -ENOMEM, "out of memory");
	for (i = 0; i < n; i++) {
		size_t j = 0;
		kd_json_path_index(comp, sizeof(comp), "components", i);
		kd_json_path_key(where, sizeof(where), comp, "files");
		for (size_t f = array_first(p, files[i]); f != ABSENT; f = array_next(p, f), j++) {
			kd_json_path_index(fwhere, sizeof(fwhere), where, j);
			if ((r = parse_file(p, f, fwhere, i, &m->strings,
					    &m->files[m->n_files++])) < 0)
				return r;
		}
	}
	return 0;
}

/* The "shims" object; the same rules as kd_manifest_parse_shims, which reads a spec. */
static int parse_shims(reader *p, kd_manifest *m, size_t obj)
{
	char where[KD_JSON_PATH_MAX], ewhere[KD_JSON_PATH_MAX];
	kd_error *err = p->err;
	size_t n = 0, v;
	int r;

	for (size_t i = object_next(p, obj, &v, &r); i != ABSENT; i = object_next(p, i, &v, &r))
		n++;
	if (r < 0)
		return r;
	if (n > MAX_SHIMS)
		return kd_err(err, -E2BIG, "shims: more than %u", MAX_SHIMS);
	m->shims = calloc(n ? n : 1, sizeof(kd_shim));
	if (!m->shims)
		return kd_err(err, -ENOMEM, "out of memory");
	for (size_t i = object_next(p, obj, &v, &r); i != ABSENT; i = object_next(p, i, &v, &r)) {
		kd_shim *s = &m->shims[m->n_shims++];
		kd_json_path_key(where, sizeof(where), "shims", p->str[S_KEY].s);
		if ((r = kd_manifest_dup_name(p->str[S_KEY].s, where, &s->name, err)) < 0)
			return r;
		if (p->s[v] != '[')
			return wrong_type(p, v, where, "array");
		size_t k = array_length(p, v), j = 0;
		if (k > MAX_SPEC_COMPONENTS)
			return kd_err(err, -E2BIG, "%s: too many components", where);
		s->components = calloc(k ? k : 1, sizeof(char *));
		if (!s->components)
			return kd_err(err, -ENOMEM, "out of memory");
		for (size_t e = array_first(p, v); e != ABSENT; e = array_next(p, e), j++) {
			const char *c;
			kd_json_path_index(ewhere, sizeof(ewhere), where, j);
			if ((r = as_string(p, e, ewhere, S_A, &c)) < 0)
				return r;
			if (kd_manifest_component(m, c) < 0)
				return kd_err(err, -EINVAL, "%s: unknown component '%s'", ewhere,
					      c);
			s->components[s->n_components] = strdup(c);
			if (!s->components[s->n_components++])
				return kd_err(err, -ENOMEM, "out of memory");
		}
	}
	if (r < 0)
		return r;
	qsort(m->shims, m->n_shims, sizeof(kd_shim), kd_manifest_cmp_shim);
	return 0;
}

int kd_manifest_parse(const char *json, size_t len, kd_manifest **ret, kd_error *err)
{
	_cleanup_(reader_done) reader p = {.s = json, .len = len, .err = err};
	_cleanup_(kd_manifest_freep) kd_manifest *m = NULL;
	field fl[] = {{"format", 0},	 {"version", 0}, {"arch", 0},
		      {"components", 0}, {"shims", 0},	 {"signing_key", 0}};
	const char *version, *arch, *key = NULL;
	size_t root = 0, comps = 0, shims = ABSENT;
	int64_t format = 0;
	int r;

	if (len > KD_PAYLOAD_MAX_MANIFEST)
		return kd_err(err, -EFBIG, "manifest: larger than %u bytes",
			      KD_PAYLOAD_MAX_MANIFEST);
	if ((r = check_document(&p, &root)) < 0)
		return r;
	if (json[root] == 'n')
		return kd_err(err, -EINVAL, "manifest: expected an object, got null");
	if (json[root] != '{')
		return wrong_type(&p, root, "manifest", "object");
	if ((r = read_fields(&p, root, fl, ELEMENTSOF(fl))) < 0 ||
	    (r = get_int64(&p, &fl[0], NULL, true, &format)) < 0)
		return r;
	if (format < KD_PAYLOAD_FORMAT_MIN || format > KD_PAYLOAD_FORMAT)
		return kd_err(err, -EPROTONOSUPPORT,
			      "manifest: unsupported format %lld (expected %d to %d)",
			      (long long)format, KD_PAYLOAD_FORMAT_MIN, KD_PAYLOAD_FORMAT);
	if ((r = get_string(&p, &fl[1], NULL, true, S_A, &version)) < 0 ||
	    (r = get_string(&p, &fl[2], NULL, true, S_B, &arch)) < 0 ||
	    (r = get_container(&p, &fl[3], NULL, true, '[', &comps)) < 0 ||
	    (r = get_container(&p, &fl[4], NULL, false, '{', &shims)) < 0 ||
	    (r = get_string(&p, &fl[5], NULL, false, S_C, &key)) < 0)
		return r;
	m = calloc(1, sizeof(*m));
	if (!m)
		return kd_err(err, -ENOMEM, "out of memory");
	m->format = (int)format;
	if ((r = kd_manifest_dup_name(version, "version", &m->version, err)) < 0 ||
	    (r = kd_manifest_dup_name(arch, "arch", &m->arch, err)) < 0)
		return r;
	if (key) {
		if (!kd_sha256_hex_valid(key))
			return kd_err(
				err, -EINVAL,
				"signing_key: must be a sha256 fingerprint (64 lowercase hex digits)");
		m->signing_key = strdup(key);
		if (!m->signing_key)
			return kd_err(err, -ENOMEM, "out of memory");
	}
	if ((r = parse_components(&p, m, comps)) < 0)
		return r;
	if (shims != ABSENT && (r = parse_shims(&p, m, shims)) < 0)
		return r;
	if ((r = validate_files(m, err)) < 0)
		return r;
	*ret = TAKE_PTR(m);
	return 0;
}
