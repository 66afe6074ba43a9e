/* The TOML 1.0 parser: one pass over the text that builds the node tree, the section list and
 * the (parent, key) hash of a kd_toml_doc. Nothing is copied but decoded keys and strings. */
#include "toml-internal.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ARENA_BLOCK_MIN 4096
#define ARENA_BLOCK_MAX (256u * 1024)
#define HASH_MIN 64

struct kd_toml_arena {
	kd_toml_arena *next;
	size_t used, cap;
	_Alignas(16) char data[];
};

typedef struct keypart {
	const char *s;
	size_t len;
	size_t pos;
} keypart;

typedef struct parser {
	kd_toml_doc *doc;
	const char *s;
	size_t len, pos;
	kd_error *err;
	unsigned depth;
	kd_toml_node *table; /* table of the current section */
	int section;
	char *buf; /* scratch for decoding strings */
	size_t buf_len, buf_cap;
	keypart parts[KD_TOML_MAX_DEPTH];
} parser;

static void *arena_alloc(kd_toml_doc *doc, size_t n)
{
	kd_toml_arena *a = doc->arena;

	n = (n + 15) & ~(size_t)15;
	if (!a || a->cap - a->used < n) {
		size_t cap = a ? a->cap * 2 : ARENA_BLOCK_MIN;
		if (cap > ARENA_BLOCK_MAX)
			cap = ARENA_BLOCK_MAX;
		if (cap < n)
			cap = n;
		kd_toml_arena *b = malloc(sizeof(*b) + cap);
		if (!b)
			return NULL;
		b->next = a;
		b->used = 0;
		b->cap = cap;
		doc->arena = a = b;
	}
	void *p = a->data + a->used;
	a->used += n;
	memset(p, 0, n);
	return p;
}

static char *arena_strdup(kd_toml_doc *doc, const char *s, size_t n)
{
	char *d = arena_alloc(doc, n + 1);
	if (d) {
		memcpy(d, s, n);
		d[n] = '\0';
	}
	return d;
}

void kd_toml_index_free(kd_toml_doc *doc)
{
	while (doc->arena) {
		kd_toml_arena *next = doc->arena->next;
		free(doc->arena);
		doc->arena = next;
	}
	free(doc->sections);
	free(doc->hash);
	doc->sections = NULL;
	doc->nsections = doc->sections_cap = 0;
	doc->hash = NULL;
	doc->hash_cap = doc->hash_used = 0;
	doc->root = NULL;
}

void kd_toml_linecol(const char *text, size_t len, size_t off, unsigned *ret_line,
		     unsigned *ret_col)
{
	unsigned line = 1, col = 1;

	if (off > len)
		off = len;
	for (size_t i = 0; i < off; i++) {
		if (text[i] == '\n') {
			line++;
			col = 1;
		} else if (((unsigned char)text[i] & 0xc0) != 0x80) {
			col++;
		}
	}
	*ret_line = line;
	*ret_col = col;
}

static int perr_code(parser *p, int code, size_t at, const char *fmt, ...) _printf_(4, 5);
static int perr_code(parser *p, int code, size_t at, const char *fmt, ...)
{
	char msg[512];
	unsigned line, col;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	kd_toml_linecol(p->s, p->len, at, &line, &col);
	return kd_err(p->err, code, "%s:%u:%u: %s", p->doc->name, line, col, msg);
}

#define perr(p, at, ...) perr_code(p, -EINVAL, at, __VA_ARGS__)

static int oom(parser *p)
{
	return kd_err(p->err, -ENOMEM, "%s: out of memory", p->doc->name);
}

/* How a byte looks in an error message. */
static const char *show(parser *p, size_t at, char tmp[static 16])
{
	if (at >= p->len)
		return "end of file";
	unsigned char c = (unsigned char)p->s[at];
	if (c == '\n' || c == '\r')
		return "end of line";
	if (c >= 0x20 && c < 0x7f)
		snprintf(tmp, 16, "'%c'", c);
	else
		snprintf(tmp, 16, "byte 0x%02x", c);
	return tmp;
}

/* ---- hash of (parent, key) -> node ---- */

static uint64_t hash_key(const kd_toml_node *parent, const char *k, size_t n)
{
	uint64_t h = 1469598103934665603ULL ^ (uint64_t)(uintptr_t)parent;
	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)k[i];
		h *= 1099511628211ULL;
	}
	return h ^ (h >> 29);
}

kd_toml_node *kd_toml_lookup(const kd_toml_doc *doc, const kd_toml_node *table, const char *key,
			     size_t len)
{
	if (!doc->hash_cap || !table)
		return NULL;
	size_t mask = doc->hash_cap - 1;
	for (size_t i = hash_key(table, key, len) & mask;; i = (i + 1) & mask) {
		kd_toml_node *n = doc->hash[i];
		if (!n)
			return NULL;
		if (n->parent == table && n->key_len == len && memcmp(n->key, key, len) == 0)
			return n;
	}
}

static int hash_insert(kd_toml_doc *doc, kd_toml_node *node)
{
	if ((doc->hash_used + 1) * 2 > doc->hash_cap) {
		size_t cap = doc->hash_cap ? doc->hash_cap * 2 : HASH_MIN;
		kd_toml_node **h = calloc(cap, sizeof(*h));
		if (!h)
			return -ENOMEM;
		for (size_t i = 0; i < doc->hash_cap; i++) {
			kd_toml_node *n = doc->hash[i];
			if (!n)
				continue;
			size_t j = hash_key(n->parent, n->key, n->key_len) & (cap - 1);
			while (h[j])
				j = (j + 1) & (cap - 1);
			h[j] = n;
		}
		free(doc->hash);
		doc->hash = h;
		doc->hash_cap = cap;
	}
	size_t mask = doc->hash_cap - 1;
	size_t i = hash_key(node->parent, node->key, node->key_len) & mask;
	while (doc->hash[i])
		i = (i + 1) & mask;
	doc->hash[i] = node;
	doc->hash_used++;
	return 0;
}

/* A new child of parent; keyed children are entered in the hash. */
static kd_toml_node *new_node(parser *p, kd_toml_node *parent, const keypart *key,
			      kd_toml_type type, kd_toml_origin origin)
{
	kd_toml_node *n = arena_alloc(p->doc, sizeof(*n));
	if (!n)
		return NULL;
	n->type = type;
	n->origin = origin;
	n->parent = parent;
	n->section = -1;
	if (key) {
		n->key = arena_strdup(p->doc, key->s, key->len);
		if (!n->key)
			return NULL;
		n->key_len = key->len;
		if (hash_insert(p->doc, n) < 0)
			return NULL;
	}
	if (parent) {
		if (parent->last)
			parent->last->next = n;
		else
			parent->first = n;
		parent->last = n;
		parent->count++;
	}
	return n;
}

/* ---- lexical helpers ---- */

static size_t utf8_invalid(const unsigned char *s, size_t len)
{
	size_t i = 0;

	while (i < len) {
		unsigned c = s[i], n, cp;
		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			n = 1;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			n = 2;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			n = 3;
			cp = c & 0x07;
		} else {
			return i;
		}
		if (i + n >= len)
			return i;
		for (unsigned k = 1; k <= n; k++) {
			unsigned b = s[i + k];
			if ((b & 0xc0) != 0x80)
				return i;
			cp = cp << 6 | (b & 0x3f);
		}
		if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return i;
		i += n + 1;
	}
	return len;
}

static bool is_bare(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '-';
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool is_control(unsigned char c)
{
	return (c < 0x20 && c != '\t') || c == 0x7f;
}

static char at(const parser *p, size_t i)
{
	return i < p->len ? p->s[i] : '\0';
}

static void skip_ws(parser *p)
{
	while (p->pos < p->len && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t'))
		p->pos++;
}

/* Consume a line break; false if there is none here. */
static bool newline(parser *p)
{
	if (at(p, p->pos) == '\n') {
		p->pos++;
		return true;
	}
	if (at(p, p->pos) == '\r' && at(p, p->pos + 1) == '\n') {
		p->pos += 2;
		return true;
	}
	return false;
}

/* A comment from '#' up to (not including) the line break. */
static int comment(parser *p)
{
	p->pos++;
	while (p->pos < p->len) {
		unsigned char c = (unsigned char)p->s[p->pos];
		if (c == '\n' || (c == '\r' && at(p, p->pos + 1) == '\n'))
			return 0;
		if (is_control(c))
			return perr(p, p->pos, "control character U+%04X in comment", c);
		p->pos++;
	}
	return 0;
}

/* Whitespace, an optional comment, then a line break or the end of the file. */
static int end_of_line(parser *p, const char *after)
{
	char tmp[16];
	int r;

	skip_ws(p);
	if (at(p, p->pos) == '#') {
		r = comment(p);
		if (r < 0)
			return r;
	}
	if (p->pos >= p->len || newline(p))
		return 0;
	return perr(p, p->pos, "expected end of line after %s, found %s", after,
		    show(p, p->pos, tmp));
}

/* Whitespace, comments and line breaks (inside arrays). */
static int skip_ws_nl(parser *p)
{
	int r;

	for (;;) {
		skip_ws(p);
		if (at(p, p->pos) == '#') {
			r = comment(p);
			if (r < 0)
				return r;
		}
		if (!newline(p))
			return 0;
	}
}

/* ---- strings ---- */

static int buf_put(parser *p, const char *s, size_t n)
{
	if (p->buf_len + n + 1 > p->buf_cap) {
		size_t cap = p->buf_cap ? p->buf_cap : 256;
		while (cap < p->buf_len + n + 1)
			cap *= 2;
		char *b = realloc(p->buf, cap);
		if (!b)
			return oom(p);
		p->buf = b;
		p->buf_cap = cap;
	}
	memcpy(p->buf + p->buf_len, s, n);
	p->buf_len += n;
	return 0;
}

static int buf_utf8(parser *p, uint32_t cp)
{
	char b[4];
	size_t n;

	if (cp < 0x80) {
		b[0] = (char)cp;
		n = 1;
	} else if (cp < 0x800) {
		b[0] = (char)(0xc0 | cp >> 6);
		b[1] = (char)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		b[0] = (char)(0xe0 | cp >> 12);
		b[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		b[2] = (char)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		b[0] = (char)(0xf0 | cp >> 18);
		b[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
		b[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
		b[3] = (char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	return buf_put(p, b, n);
}

static int escape(parser *p)
{
	size_t start = p->pos;
	char e = at(p, p->pos + 1);
	const char *rep = NULL;
	unsigned digits = 0;
	char tmp[16];

	switch (e) {
	case 'b':
		rep = "\b";
		break;
	case 't':
		rep = "\t";
		break;
	case 'n':
		rep = "\n";
		break;
	case 'f':
		rep = "\f";
		break;
	case 'r':
		rep = "\r";
		break;
	case '"':
		rep = "\"";
		break;
	case '\\':
		rep = "\\";
		break;
	case 'u':
		digits = 4;
		break;
	case 'U':
		digits = 8;
		break;
	default:
		return perr(p, start, "invalid escape sequence in string: \\ followed by %s",
			    show(p, p->pos + 1, tmp));
	}
	if (rep) {
		p->pos += 2;
		return buf_put(p, rep, 1);
	}
	uint32_t cp = 0;
	for (unsigned i = 0; i < digits; i++) {
		char c = at(p, p->pos + 2 + i);
		unsigned v;
		if (c >= '0' && c <= '9')
			v = (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v = (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v = (unsigned)(c - 'A' + 10);
		else
			return perr(p, start, "invalid escape sequence: \\%c needs %u hex digits",
				    e, digits);
		cp = cp << 4 | v;
	}
	if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return perr(p, start, "escape \\%c%.*s is not a Unicode scalar value", e,
			    (int)digits, p->s + p->pos + 2);
	p->pos += 2 + digits;
	return buf_utf8(p, cp);
}

/* A basic or literal string, single- or multi-line, decoded into p->buf. */
static int string(parser *p, bool allow_multiline)
{
	size_t start = p->pos;
	char q = p->s[p->pos];
	bool ml = at(p, p->pos + 1) == q && at(p, p->pos + 2) == q;
	int r;

	p->buf_len = 0;
	r = buf_put(p, "", 0);
	if (r < 0)
		return r;
	if (ml) {
		if (!allow_multiline)
			return perr(p, start, "a multi-line string cannot be a key");
		p->pos += 3;
		newline(p); /* a line break right after the opening quotes is trimmed */
	} else {
		p->pos++;
	}
	for (;;) {
		if (p->pos >= p->len)
			return perr(p, start, "unterminated string");
		unsigned char c = (unsigned char)p->s[p->pos];
		if (c == (unsigned char)q) {
			if (!ml) {
				p->pos++;
				break;
			}
			size_t n = 0;
			while (at(p, p->pos + n) == q)
				n++;
			if (n >= 3) {
				if (n > 5)
					return perr(
						p, p->pos + 5,
						"too many quotes at the end of a multi-line string");
				r = buf_put(p, p->s + p->pos, n - 3);
				if (r < 0)
					return r;
				p->pos += n;
				break;
			}
			r = buf_put(p, p->s + p->pos, n);
			if (r < 0)
				return r;
			p->pos += n;
			continue;
		}
		if (c == '\\' && q == '"') {
			if (ml) {
				/* line-ending backslash: trim whitespace and line breaks */
				size_t j = p->pos + 1;
				while (at(p, j) == ' ' || at(p, j) == '\t')
					j++;
				if (at(p, j) == '\n' ||
				    (at(p, j) == '\r' && at(p, j + 1) == '\n')) {
					p->pos = j;
					while (p->pos < p->len) {
						char w = p->s[p->pos];
						if (w == ' ' || w == '\t')
							p->pos++;
						else if (!newline(p))
							break;
					}
					continue;
				}
			}
			r = escape(p);
			if (r < 0)
				return r;
			continue;
		}
		if (c == '\n' || c == '\r') {
			if (!ml)
				return perr(p, start,
					    "unterminated string (line break before the "
					    "closing quote)");
			size_t nl = p->pos;
			if (!newline(p))
				return perr(p, nl, "carriage return without line feed");
			r = buf_put(p, "\n", 1);
			if (r < 0)
				return r;
			continue;
		}
		if (is_control(c))
			return perr(p, p->pos, "control character U+%04X in string", c);
		size_t run = p->pos + 1;
		while (run < p->len && p->s[run] != q && p->s[run] != '\\' &&
		       !is_control((unsigned char)p->s[run]))
			run++;
		r = buf_put(p, p->s + p->pos, run - p->pos);
		if (r < 0)
			return r;
		p->pos = run;
	}
	p->buf[p->buf_len] = '\0';
	return 0;
}

/* ---- keys ---- */

static int key(parser *p, size_t *ret_n)
{
	size_t n = 0;
	char tmp[16];
	int r;

	for (;;) {
		keypart *k = &p->parts[n];
		if (n == KD_TOML_MAX_DEPTH)
			return perr_code(p, -E2BIG, p->pos, "key has more than %d parts",
					 KD_TOML_MAX_DEPTH);
		k->pos = p->pos;
		char c = at(p, p->pos);
		if (p->pos < p->len && is_bare(c)) {
			size_t s = p->pos;
			while (p->pos < p->len && is_bare(p->s[p->pos]))
				p->pos++;
			k->s = p->s + s;
			k->len = p->pos - s;
		} else if (c == '"' || c == '\'') {
			r = string(p, false);
			if (r < 0)
				return r;
			k->s = arena_strdup(p->doc, p->buf, p->buf_len);
			if (!k->s)
				return oom(p);
			k->len = p->buf_len;
		} else {
			return perr(p, p->pos, "expected a key, found %s", show(p, p->pos, tmp));
		}
		n++;
		skip_ws(p);
		if (at(p, p->pos) != '.')
			break;
		p->pos++;
		skip_ws(p);
	}
	*ret_n = n;
	return 0;
}

static const char *what(const kd_toml_node *n)
{
	if (n->type == KD_TOML_TABLE) {
		switch (n->origin) {
		case KD_TOML_HEADER:
		case KD_TOML_AOT_ELEM:
			return "a table defined by a [header]";
		case KD_TOML_DOTTED:
			return "a table defined by dotted keys";
		case KD_TOML_INLINE:
			return "an inline table";
		default:
			return "a table";
		}
	}
	if (n->origin == KD_TOML_AOT)
		return "an array of tables";
	return kd_toml_type_name(n->type);
}

/* ---- values ---- */

static int value(parser *p, kd_toml_node *n);

static bool value_end(char c)
{
	return c == '\0' || c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '#' ||
	       c == ',' || c == ']' || c == '}';
}

static int digits2(parser *p, size_t i, unsigned *ret)
{
	if (!is_digit(at(p, i)) || !is_digit(at(p, i + 1)))
		return -1;
	*ret = (unsigned)(p->s[i] - '0') * 10 + (unsigned)(p->s[i + 1] - '0');
	return 0;
}

/* HH:MM:SS[.frac] at p->pos. */
static int time_part(parser *p, size_t start)
{
	unsigned h, m, sec;

	if (digits2(p, p->pos, &h) < 0 || at(p, p->pos + 2) != ':' ||
	    digits2(p, p->pos + 3, &m) < 0 || at(p, p->pos + 5) != ':' ||
	    digits2(p, p->pos + 6, &sec) < 0)
		return perr(p, start, "invalid time: expected HH:MM:SS");
	if (h > 23 || m > 59 || sec > 60)
		return perr(p, start, "invalid time: %02u:%02u:%02u is out of range", h, m, sec);
	p->pos += 8;
	if (at(p, p->pos) == '.') {
		p->pos++;
		if (!is_digit(at(p, p->pos)))
			return perr(p, start, "invalid time: expected digits after '.'");
		while (is_digit(at(p, p->pos)))
			p->pos++;
	}
	return 0;
}

static int datetime(parser *p, kd_toml_node *n)
{
	static const unsigned mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	size_t start = p->pos;
	unsigned y1, y2, mo, d;
	int r;

	if (at(p, p->pos + 2) == ':') {
		r = time_part(p, start);
		if (r < 0)
			return r;
		n->type = KD_TOML_TIME_LOCAL;
		goto out;
	}
	if (digits2(p, p->pos, &y1) < 0 || digits2(p, p->pos + 2, &y2) < 0 ||
	    at(p, p->pos + 4) != '-' || digits2(p, p->pos + 5, &mo) < 0 ||
	    at(p, p->pos + 7) != '-' || digits2(p, p->pos + 8, &d) < 0)
		return perr(p, start, "invalid date: expected YYYY-MM-DD");
	unsigned y = y1 * 100 + y2;
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || (mo == 2 && d == 29 && !leap))
		return perr(p, start, "invalid date: %04u-%02u-%02u does not exist", y, mo, d);
	p->pos += 10;
	char c = at(p, p->pos);
	if (c == 'T' || c == 't' ||
	    (c == ' ' && is_digit(at(p, p->pos + 1)) && is_digit(at(p, p->pos + 2)) &&
	     at(p, p->pos + 3) == ':')) {
		p->pos++;
		r = time_part(p, start);
		if (r < 0)
			return r;
		c = at(p, p->pos);
		if (c == 'Z' || c == 'z') {
			p->pos++;
			n->type = KD_TOML_DATETIME;
		} else if (c == '+' || c == '-') {
			unsigned oh, om;
			if (digits2(p, p->pos + 1, &oh) < 0 || at(p, p->pos + 3) != ':' ||
			    digits2(p, p->pos + 4, &om) < 0)
				return perr(p, p->pos, "invalid time offset: expected +HH:MM");
			if (oh > 23 || om > 59)
				return perr(p, p->pos, "invalid time offset: out of range");
			p->pos += 6;
			n->type = KD_TOML_DATETIME;
		} else {
			n->type = KD_TOML_DATETIME_LOCAL;
		}
	} else {
		n->type = KD_TOML_DATE_LOCAL;
	}
out:
	if (!value_end(at(p, p->pos)))
		return perr(p, start, "invalid date-time");
	n->str = arena_strdup(p->doc, p->s + start, p->pos - start);
	if (!n->str)
		return oom(p);
	n->str_len = p->pos - start;
	return 0;
}

/* Digits of base with single underscores between them, from t[*i]. Returns how many digits
 * (0 when none or when an underscore is misplaced: *bad set). */
static size_t digit_run(const char *t, size_t len, size_t *i, int base, bool *bad)
{
	size_t nd = 0;

	while (*i < len) {
		char c = t[*i];
		int v;
		if (c >= '0' && c <= '9')
			v = c - '0';
		else if (c >= 'a' && c <= 'f')
			v = c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			v = c - 'A' + 10;
		else if (c == '_') {
			if (nd == 0 || *i + 1 >= len || t[*i + 1] == '_') {
				*bad = true;
				return 0;
			}
			(*i)++;
			continue;
		} else {
			break;
		}
		if (v >= base)
			break;
		nd++;
		(*i)++;
	}
	if (*i > 0 && t[*i - 1] == '_')
		*bad = true;
	return nd;
}

static int number(parser *p, kd_toml_node *n)
{
	size_t start = p->pos, end = p->pos;
	while (end < p->len && (is_bare(p->s[end]) || p->s[end] == '+' || p->s[end] == '.'))
		end++;
	const char *t = p->s + start;
	size_t len = end - start, i = 0;
	bool neg = false, sign = false, bad = false;

	if (len == 0)
		goto invalid;
	if (t[0] == '+' || t[0] == '-') {
		neg = t[0] == '-';
		sign = true;
		i = 1;
	}
	if (len - i == 3 && (memcmp(t + i, "inf", 3) == 0 || memcmp(t + i, "nan", 3) == 0)) {
		n->type = KD_TOML_FLOAT;
		n->v.f = t[i] == 'i' ? (neg ? -INFINITY : INFINITY) : (neg ? -NAN : NAN);
		goto out;
	}
	if (len - i > 2 && t[i] == '0' && (t[i + 1] == 'x' || t[i + 1] == 'o' || t[i + 1] == 'b')) {
		int base = t[i + 1] == 'x' ? 16 : t[i + 1] == 'o' ? 8 : 2;
		if (sign)
			return perr(p, start, "a sign is not allowed on a %s integer",
				    base == 16	? "hexadecimal"
				    : base == 8 ? "octal"
						: "binary");
		i += 2;
		size_t d0 = i;
		if (t[i] == '_' || digit_run(t, len, &i, base, &bad) == 0 || bad || i != len)
			goto invalid;
		uint64_t v = 0;
		for (size_t k = d0; k < len; k++) {
			if (t[k] == '_')
				continue;
			unsigned dv = (unsigned)(is_digit(t[k])			? t[k] - '0'
						 : (t[k] >= 'a' && t[k] <= 'f') ? t[k] - 'a' + 10
										: t[k] - 'A' + 10);
			if (v > ((uint64_t)INT64_MAX - dv) / (uint64_t)base)
				return perr(p, start, "integer out of range (64-bit signed)");
			v = v * (uint64_t)base + dv;
		}
		n->type = KD_TOML_INTEGER;
		n->v.i = (int64_t)v;
		goto out;
	}
	size_t int0 = i;
	if (digit_run(t, len, &i, 10, &bad) == 0 || bad)
		goto invalid;
	if (t[int0] == '0' && i - int0 > 1)
		return perr(p, start, "leading zeros are not allowed in a number");
	bool is_float = false;
	if (i < len && t[i] == '.') {
		i++;
		if (i >= len || !is_digit(t[i]) || digit_run(t, len, &i, 10, &bad) == 0 || bad)
			goto invalid;
		is_float = true;
	}
	if (i < len && (t[i] == 'e' || t[i] == 'E')) {
		i++;
		if (i < len && (t[i] == '+' || t[i] == '-'))
			i++;
		if (i >= len || !is_digit(t[i]) || digit_run(t, len, &i, 10, &bad) == 0 || bad)
			goto invalid;
		is_float = true;
	}
	if (i != len)
		goto invalid;
	if (is_float) {
		char tmp[128], *heap = NULL, *d = tmp;
		if (len >= sizeof(tmp)) {
			heap = d = malloc(len + 1);
			if (!heap)
				return oom(p);
		}
		size_t k = 0;
		for (size_t j = 0; j < len; j++)
			if (t[j] != '_')
				d[k++] = t[j];
		d[k] = '\0';
		n->type = KD_TOML_FLOAT;
		n->v.f = strtod(d, NULL);
		free(heap);
		goto out;
	}
	uint64_t v = 0, lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	for (size_t k = int0; k < len; k++) {
		if (t[k] == '_')
			continue;
		unsigned dv = (unsigned)(t[k] - '0');
		if (v > (lim - dv) / 10)
			return perr(p, start, "integer out of range (64-bit signed)");
		v = v * 10 + dv;
	}
	n->type = KD_TOML_INTEGER;
	n->v.i = neg ? (int64_t)(0 - v) : (int64_t)v;
out:
	p->pos = end;
	if (!value_end(at(p, p->pos)))
		goto invalid;
	return 0;
invalid:
	return perr(p, start, "invalid number '%.*s'", (int)(len > 40 ? 40 : len), t);
}

static void seal(kd_toml_node *t)
{
	t->sealed = true;
	for (kd_toml_node *c = t->first; c; c = c->next)
		if (c->type == KD_TOML_TABLE && !c->sealed)
			seal(c);
}

static int keyval(parser *p, kd_toml_node *table, bool in_inline, kd_toml_node **ret);

static int inline_table(parser *p, kd_toml_node *n)
{
	size_t start = p->pos;
	char tmp[16];
	int r;

	n->type = KD_TOML_TABLE;
	n->origin = KD_TOML_INLINE;
	p->pos++;
	skip_ws(p);
	if (at(p, p->pos) != '}') {
		for (;;) {
			kd_toml_node *kv;
			r = keyval(p, n, true, &kv);
			if (r < 0)
				return r;
			skip_ws(p);
			char c = at(p, p->pos);
			if (c == ',') {
				p->pos++;
				skip_ws(p);
				if (at(p, p->pos) == '}')
					return perr(
						p, p->pos,
						"trailing comma in inline table (not allowed in "
						"TOML 1.0)");
				continue;
			}
			if (c == '}')
				break;
			if (p->pos >= p->len)
				return perr(p, start, "unterminated inline table");
			return perr(p, p->pos, "expected ',' or '}' in inline table, found %s",
				    show(p, p->pos, tmp));
		}
	}
	p->pos++;
	seal(n);
	return 0;
}

static int array(parser *p, kd_toml_node *n)
{
	size_t start = p->pos;
	char tmp[16];
	int r;

	n->type = KD_TOML_ARRAY;
	p->pos++;
	for (;;) {
		r = skip_ws_nl(p);
		if (r < 0)
			return r;
		if (at(p, p->pos) == ']')
			break;
		kd_toml_node *e = new_node(p, n, NULL, KD_TOML_NONE, KD_TOML_VALUE);
		if (!e)
			return oom(p);
		e->in_inline = true;
		e->section = p->section;
		e->key_start = e->stmt_start = p->pos;
		r = value(p, e);
		if (r < 0)
			return r;
		e->stmt_end = p->pos;
		r = skip_ws_nl(p);
		if (r < 0)
			return r;
		char c = at(p, p->pos);
		if (c == ',') {
			p->pos++;
			continue;
		}
		if (c == ']')
			break;
		if (p->pos >= p->len)
			return perr(p, start, "unterminated array");
		return perr(p, p->pos, "expected ',' or ']' in array, found %s",
			    show(p, p->pos, tmp));
	}
	p->pos++;
	return 0;
}

static int value(parser *p, kd_toml_node *n)
{
	char c = at(p, p->pos);
	char tmp[16];
	int r;

	n->vstart = p->pos;
	if (c == '"' || c == '\'') {
		r = string(p, true);
		if (r < 0)
			return r;
		n->type = KD_TOML_STRING;
		n->str = arena_strdup(p->doc, p->buf, p->buf_len);
		if (!n->str)
			return oom(p);
		n->str_len = p->buf_len;
	} else if (c == '[' || c == '{') {
		if (p->depth >= KD_TOML_MAX_DEPTH)
			return perr_code(p, -E2BIG, p->pos,
					 "arrays and inline tables nested deeper than %d",
					 KD_TOML_MAX_DEPTH);
		p->depth++;
		r = c == '[' ? array(p, n) : inline_table(p, n);
		p->depth--;
		if (r < 0)
			return r;
	} else if (c == 't' && p->len - p->pos >= 4 && memcmp(p->s + p->pos, "true", 4) == 0 &&
		   value_end(at(p, p->pos + 4))) {
		n->type = KD_TOML_BOOL;
		n->v.b = true;
		p->pos += 4;
	} else if (c == 'f' && p->len - p->pos >= 5 && memcmp(p->s + p->pos, "false", 5) == 0 &&
		   value_end(at(p, p->pos + 5))) {
		n->type = KD_TOML_BOOL;
		n->v.b = false;
		p->pos += 5;
	} else if (is_digit(c) && is_digit(at(p, p->pos + 1)) &&
		   (at(p, p->pos + 2) == ':' ||
		    (is_digit(at(p, p->pos + 2)) && is_digit(at(p, p->pos + 3)) &&
		     at(p, p->pos + 4) == '-'))) {
		r = datetime(p, n);
		if (r < 0)
			return r;
	} else if (is_digit(c) || c == '+' || c == '-' || c == 'i' || c == 'n') {
		r = number(p, n);
		if (r < 0)
			return r;
	} else {
		return perr(p, p->pos, "expected a value, found %s", show(p, p->pos, tmp));
	}
	n->vend = p->pos;
	return 0;
}

/* key = value, into table (the section's table, or an inline table). */
static int keyval(parser *p, kd_toml_node *table, bool in_inline, kd_toml_node **ret)
{
	size_t start = p->pos, nparts;
	char tmp[16];
	int r;

	r = key(p, &nparts);
	if (r < 0)
		return r;
	if (at(p, p->pos) != '=')
		return perr(p, p->pos, "expected '=' after key, found %s", show(p, p->pos, tmp));
	p->pos++;
	skip_ws(p);

	kd_toml_node *t = table;
	for (size_t i = 0; i + 1 < nparts; i++) {
		keypart *k = &p->parts[i];
		kd_toml_node *c = kd_toml_lookup(p->doc, t, k->s, k->len);
		if (!c) {
			c = new_node(p, t, k, KD_TOML_TABLE, KD_TOML_DOTTED);
			if (!c)
				return oom(p);
			c->scope = table;
			c->section = p->section;
			c->in_inline = in_inline;
			c->key_start = k->pos;
		} else if (c->type != KD_TOML_TABLE || c->sealed ||
			   (c->origin != KD_TOML_DOTTED && c->origin != KD_TOML_IMPLICIT)) {
			return perr(p, k->pos, "cannot add keys to '%.*s': it is %s", (int)k->len,
				    k->s, what(c));
		} else if (c->origin == KD_TOML_IMPLICIT) {
			c->origin = KD_TOML_DOTTED;
			c->scope = table;
			c->section = p->section;
		}
		t = c;
	}
	keypart *k = &p->parts[nparts - 1];
	kd_toml_node *old = kd_toml_lookup(p->doc, t, k->s, k->len);
	if (old) {
		if (old->type == KD_TOML_TABLE && old->origin == KD_TOML_IMPLICIT)
			return perr(p, k->pos,
				    "duplicate key '%.*s': a [header] already made it a "
				    "table",
				    (int)k->len, k->s);
		return perr(p, k->pos, "duplicate key '%.*s'", (int)k->len, k->s);
	}
	kd_toml_node *n = new_node(p, t, k, KD_TOML_NONE, KD_TOML_VALUE);
	if (!n)
		return oom(p);
	n->key_start = start;
	n->stmt_start = start;
	n->section = p->section;
	n->in_inline = in_inline;
	r = value(p, n);
	if (r < 0)
		return r;
	n->stmt_end = p->pos;
	for (kd_toml_node *u = t;; u = u->parent) {
		u->last_start = start;
		u->last_end = p->pos;
		u->has_last = true;
		if (u == table)
			break;
	}
	*ret = n;
	return 0;
}

static int add_section(parser *p, size_t start, kd_toml_node *table)
{
	kd_toml_doc *doc = p->doc;

	if (doc->nsections == doc->sections_cap) {
		size_t cap = doc->sections_cap ? doc->sections_cap * 2 : 16;
		kd_toml_section *s = realloc(doc->sections, cap * sizeof(*s));
		if (!s)
			return oom(p);
		doc->sections = s;
		doc->sections_cap = cap;
	}
	if (doc->nsections > 0)
		doc->sections[doc->nsections - 1].end = start;
	doc->sections[doc->nsections] = (kd_toml_section){
		.start = start, .end = p->len, .content_end = start, .table = table};
	p->section = (int)doc->nsections++;
	p->table = table;
	return 0;
}

static int header(parser *p, size_t line_start)
{
	size_t start = p->pos, nparts;
	bool aot = at(p, p->pos + 1) == '[';
	char tmp[16];
	int r;

	p->pos += aot ? 2 : 1;
	skip_ws(p);
	r = key(p, &nparts);
	if (r < 0)
		return r;
	if (at(p, p->pos) != ']' || (aot && at(p, p->pos + 1) != ']'))
		return perr(p, p->pos, "expected '%s' to close the table header, found %s",
			    aot ? "]]" : "]", show(p, p->pos, tmp));
	p->pos += aot ? 2 : 1;

	kd_toml_node *t = p->doc->root;
	for (size_t i = 0; i + 1 < nparts; i++) {
		keypart *k = &p->parts[i];
		kd_toml_node *c = kd_toml_lookup(p->doc, t, k->s, k->len);
		if (!c) {
			c = new_node(p, t, k, KD_TOML_TABLE, KD_TOML_IMPLICIT);
			if (!c)
				return oom(p);
			c->key_start = k->pos;
		} else if (c->type == KD_TOML_ARRAY && c->origin == KD_TOML_AOT) {
			c = c->last;
		} else if (c->type != KD_TOML_TABLE || c->sealed) {
			return perr(p, k->pos, "cannot define a table inside '%.*s': it is %s",
				    (int)k->len, k->s, what(c));
		}
		t = c;
	}
	keypart *k = &p->parts[nparts - 1];
	kd_toml_node *c = kd_toml_lookup(p->doc, t, k->s, k->len);
	if (!aot) {
		if (!c) {
			c = new_node(p, t, k, KD_TOML_TABLE, KD_TOML_HEADER);
			if (!c)
				return oom(p);
		} else if (c->type == KD_TOML_TABLE && c->origin == KD_TOML_IMPLICIT) {
			c->origin = KD_TOML_HEADER;
		} else if (c->type == KD_TOML_TABLE && c->origin == KD_TOML_HEADER) {
			return perr(p, start, "table '%.*s' is defined twice", (int)k->len, k->s);
		} else {
			return perr(p, start, "cannot define table '%.*s': it is already %s",
				    (int)k->len, k->s, what(c));
		}
	} else {
		if (!c) {
			c = new_node(p, t, k, KD_TOML_ARRAY, KD_TOML_AOT);
			if (!c)
				return oom(p);
			c->key_start = start;
		} else if (c->type != KD_TOML_ARRAY || c->origin != KD_TOML_AOT) {
			return perr(p, start,
				    "cannot append to '%.*s' as an array of tables: it is %s",
				    (int)k->len, k->s, what(c));
		}
		c = new_node(p, c, NULL, KD_TOML_TABLE, KD_TOML_AOT_ELEM);
		if (!c)
			return oom(p);
	}
	c->key_start = start;
	c->stmt_start = line_start;
	r = end_of_line(p, "table header");
	if (r < 0)
		return r;
	c->stmt_end = p->pos;
	r = add_section(p, line_start, c);
	if (r < 0)
		return r;
	c->section = p->section;
	p->doc->sections[p->section].content_end = p->pos;
	return 0;
}

int kd_toml_index(kd_toml_doc *doc, kd_error *err)
{
	parser p = {.doc = doc, .s = doc->text, .len = doc->len, .err = err};
	int r;

	kd_toml_index_free(doc);
	if (doc->len > KD_TOML_MAX_SIZE)
		return kd_err(err, -EFBIG, "%s: document is larger than %u bytes", doc->name,
			      KD_TOML_MAX_SIZE);
	size_t bad = utf8_invalid((const unsigned char *)doc->text, doc->len);
	if (bad < doc->len) {
		r = perr(&p, bad, "invalid UTF-8");
		goto fail;
	}
	const char *nl = memchr(doc->text, '\n', doc->len);
	doc->crlf = nl && nl > doc->text && nl[-1] == '\r';
	doc->root = new_node(&p, NULL, NULL, KD_TOML_TABLE, KD_TOML_ROOT);
	if (!doc->root) {
		r = oom(&p);
		goto fail;
	}
	r = add_section(&p, 0, doc->root);
	if (r < 0)
		goto fail;
	doc->root->section = 0;

	while (p.pos < p.len) {
		size_t line_start = p.pos;
		skip_ws(&p);
		char c = at(&p, p.pos);
		if (p.pos >= p.len)
			break;
		if (c == '#' || c == '\n' || c == '\r') {
			r = end_of_line(&p, "comment");
		} else if (c == '[') {
			r = header(&p, line_start);
		} else {
			kd_toml_node *n;
			r = keyval(&p, p.table, false, &n);
			if (r < 0)
				goto fail;
			r = end_of_line(&p, "value");
			if (r < 0)
				goto fail;
			n->stmt_start = line_start;
			n->stmt_end = p.pos;
			for (kd_toml_node *u = n->parent;; u = u->parent) {
				u->last_start = line_start;
				u->last_end = p.pos;
				if (u == p.table)
					break;
			}
			doc->sections[p.section].content_end = p.pos;
		}
		if (r < 0)
			goto fail;
	}
	free(p.buf);
	return 0;
fail:
	free(p.buf);
	kd_toml_index_free(doc);
	return r;
}
