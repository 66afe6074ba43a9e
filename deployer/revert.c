#include "revert.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "digest.h"
#include "containerd.h"
#include "flavour.h"
#include "fsroot.h"
#include "strv.h"
#include "toml.h"

#define MAX_TABLE_PARTS 16
#define QUOTE_MAX 60u  /* bytes of one line quoted in a message */
#define QUOTE_LINES 3u /* lines quoted per table; the rest are counted */

/* A line that belongs to no table: blank, or only a comment. */
/* A blank or comment line as TOML has it (n excludes the '\n'; a final '\r' is CRLF's): no
 * control character but tab, so that the text kept is still TOML (fuzz-revert found a NUL). */
static bool line_is_note(const char *s, size_t n)
{
	size_t i = 0;
	if (n && s[n - 1] == '\r')
		n--;
	while (i < n && (s[i] == ' ' || s[i] == '\t'))
		i++;
	if (i == n)
		return true;
	if (s[i] != '#')
		return false;
	for (i++; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return false;
	}
	return true;
}

static size_t line_len(const char *s, const char *end)
{
	const char *nl = memchr(s, '\n', (size_t)(end - s));
	return nl ? (size_t)(nl - s) + 1 : (size_t)(end - s);
}

/* Append fmt (one "%.*s") with s[0, n) to buf. */
static void append(char *buf, size_t size, const char *fmt, const char *s, size_t n)
{
	size_t l = strlen(buf);
	if (l + 1 < size)
		snprintf(buf + l, size - l, fmt, (int)n, s);
}

/* Quote one line (without its indentation) into buf, ", " between quotes. */
static void quote(char *buf, size_t size, bool first, const char *line, size_t n)
{
	while (n && (*line == ' ' || *line == '\t'))
		line++, n--;
	append(buf, size, first ? "'%.*s'" : ", '%.*s'", line, n < QUOTE_MAX ? n : QUOTE_MAX);
}

/* How one of our tables differs from what we wrote: its lines now against the recorded ones,
 * matched in order (a line found further on in the record means the ones skipped are gone).
 * Added comment and blank lines go to kept (verbatim); added lines of any other kind are quoted
 * in edits, and recorded lines no longer there are counted in *ret_gone. */
typedef struct table_diff {
	char *kept;
	size_t kept_len, n_kept, n_added, n_gone;
	char kept_quotes[512], added_quotes[512];
} table_diff;

static int diff_table(const char *now, size_t now_len, const char *was, table_diff *d)
{
	const char *p = now, *end = now + now_len, *w = was, *wend = was + strlen(was);

	memset(d, 0, sizeof(*d));
	if (!(d->kept = malloc(now_len + 1)))
		return -ENOMEM;
	while (p < end) {
		size_t n = line_len(p, end), body = n - (p[n - 1] == '\n');
		const char *q = w;
		while (q < wend) {
			size_t m = line_len(q, wend);
			if (m - (q[m - 1] == '\n') == body && memcmp(q, p, body) == 0)
				break;
			q += m;
		}
		if (q < wend) { /* found: the recorded lines before it are gone */
			for (const char *g = w; g < q; g += line_len(g, wend))
				d->n_gone += !line_is_note(g, line_len(g, wend));
			w = q + line_len(q, wend);
		} else if (line_is_note(p, body)) {
			memcpy(d->kept + d->kept_len, p, n);
			d->kept_len += n;
			if (body && d->n_kept++ < QUOTE_LINES)
				quote(d->kept_quotes, sizeof(d->kept_quotes), d->n_kept == 1, p,
				      body);
		} else if (d->n_added++ < QUOTE_LINES) {
			quote(d->added_quotes, sizeof(d->added_quotes), d->n_added == 1, p, body);
		}
		p += n;
	}
	for (; w < wend; w += line_len(w, wend))
		d->n_gone += !line_is_note(w, line_len(w, wend));
	/* A line at the end of the file keeps a newline when moved out of the table. */
	if (d->kept_len && d->kept[d->kept_len - 1] != '\n')
		d->kept[d->kept_len++] = '\n';
	d->kept[d->kept_len] = '\0';
	return 0;
}

static int parse_named(const char *path, const char *text, size_t len, kd_toml_doc **ret,
		       kd_error *err)
{
	char name[KD_PATH_MAX];
	snprintf(name, sizeof(name), "/%s", path);
	return kd_toml_parse(name, text, len, ret, err);
}

/* Remove one table; text (the notes that were inside it) takes its place. */
static int remove_keeping(kd_toml_doc **doc, const char *path, const char *const *parts, size_t n,
			  const char *text, size_t len, kd_error *err)
{
	size_t s, e, tl;
	int r = kd_toml_table_range(*doc, parts, n, &s, &e);
	if (r < 0)
		return r;
	if ((r = kd_toml_remove_table(*doc, parts, n, err)) < 0 || !len)
		return r;
	const char *t = kd_toml_text(*doc, &tl);
	_cleanup_free_ char *joined = malloc(tl + len + 1);
	if (!joined)
		return -ENOMEM;
	memcpy(joined, t, s);
	memcpy(joined + s, text, len);
	memcpy(joined + s + len, t + s, tl - s);
	kd_toml_doc *nd = NULL;
	if ((r = parse_named(path, joined, tl + len, &nd, err)) < 0)
		return kd_err_wrap(err, r, "/%s: keep the lines added inside a kata-deploy table",
				   path);
	kd_toml_free(*doc);
	*doc = nd;
	return 0;
}

/* Whether [s, s + n) is whole lines of notes (comments, blank lines); quotes the first ones. */
static bool all_notes(const char *s, size_t n, size_t *ret_lines, char *quotes, size_t qsize)
{
	const char *end = s + n;
	*ret_lines = 0;
	quotes[0] = '\0';
	for (const char *p = s; p < end;) {
		size_t l = line_len(p, end), body = l - (p[l - 1] == '\n');
		if (!line_is_note(p, body))
			return false;
		if (body && (*ret_lines)++ < QUOTE_LINES)
			quote(quotes, qsize, *ret_lines == 1, p, body);
		p += l;
	}
	return true;
}

/* What kata-deploy wrote is still there byte for byte, with only comment or blank lines
 * written after or before it: the original content with those lines. 0 when not so. */
static int added_notes(const kd_config_file *rec, const char *cur, size_t cur_len, char **ret_text,
		       size_t *ret_len, char *why, size_t why_size)
{
	char sha[KD_SHA256_HEX_LEN + 1], quotes[512];
	size_t n = (size_t)rec->result_len, lines;
	const char *base = rec->base ? rec->base : "";
	size_t bl = strlen(base);

	if (!n || n >= cur_len)
		return 0;
	for (int after = 1; after >= 0; after--) {
		const char *ours = after ? cur : cur + (cur_len - n);
		const char *notes = after ? cur + n : cur;
		size_t nl = cur_len - n;
		/* The notes start on a line of their own (after: ours ended with a newline). */
		if ((after ? ours[n - 1] : notes[nl - 1]) != '\n')
			continue;
		kd_sha256_buf(ours, n, sha);
		if (strcmp(sha, rec->result_sha) != 0 ||
		    !all_notes(notes, nl, &lines, quotes, sizeof(quotes)))
			continue;
		char *t = malloc(bl + nl + 2);
		if (!t)
			return -ENOMEM;
		size_t len = 0;
		if (!after) {
			memcpy(t, notes, nl);
			len = nl;
		}
		memcpy(t + len, base, bl);
		len += bl;
		if (after) {
			if (bl && base[bl - 1] != '\n')
				t[len++] = '\n';
			memcpy(t + len, notes, nl);
			len += nl;
		}
		t[len] = '\0';
		*ret_text = t;
		*ret_len = len;
		snprintf(
			why, why_size,
			"/%s: %zu line(s) were added %s what kata-deploy wrote since install (%s%s): "
			"removed kata-deploy's part, kept those lines %s the original content "
			"(comments and blank lines only, so they belong to no kata-deploy table)",
			rec->path, lines ? lines : 1, after ? "after" : "before", quotes,
			lines > QUOTE_LINES ? ", …" : "", after ? "after" : "before");
		return KD_REVERT_TEXT;
	}
	return 0;
}

int kd_revert_text(const kd_config_file *rec, const char *cur, size_t cur_len, bool force,
		   char **ret_text, size_t *ret_len, char *why, size_t why_size, kd_error *err)
{
	char sha[KD_SHA256_HEX_LEN + 1];
	int r;
	*ret_text = NULL;
	why[0] = '\0';
	if (!cur)
		return KD_REVERT_SAME;
	kd_sha256_buf(cur, cur_len, sha);
	if (!strcmp(sha, rec->result_sha)) {
		if (rec->created)
			return KD_REVERT_DELETE;
		*ret_text = strdup(rec->base ? rec->base : "");
		*ret_len = rec->base ? strlen(rec->base) : 0;
		return *ret_text ? KD_REVERT_TEXT : -ENOMEM;
	}
	if (!rec->whole &&
	    (r = added_notes(rec, cur, cur_len, ret_text, ret_len, why, why_size)) != 0)
		return r;
	if (rec->whole) {
		snprintf(
			why, why_size,
			"/%s was changed since kata-deploy wrote it; leaving it: remove it by hand "
			"if nothing needs it",
			rec->path);
		return KD_REVERT_LEAVE;
	}
	_cleanup_toml_ kd_toml_doc *doc = NULL;
	kd_error e2 = {0};
	if (parse_named(rec->path, cur, cur_len, &doc, &e2) < 0) {
		snprintf(why, why_size,
			 "/%s was changed since kata-deploy wrote it and is no longer valid TOML "
			 "(%s); leaving it: remove the kata handlers by hand",
			 rec->path, e2.msg);
		return KD_REVERT_LEAVE;
	}
	size_t nt = kd_strv_length(rec->tables);
	_cleanup_free_ table_diff *d = calloc(nt ? nt : 1, sizeof(table_diff));
	_cleanup_free_ bool *present = calloc(nt ? nt : 1, sizeof(bool));
	char buf[1024], removed[2048] = "", kept[2048] = "", edited[2048] = "";
	const char *parts[MAX_TABLE_PARTS];
	bool any = false;
	r = 0;
	if (!d || !present)
		return -ENOMEM;
	/* First every table, so that nothing changes when one was edited and force is off. */
	for (size_t i = 0; i < nt && r >= 0; i++) {
		int n = kd_toml_key_split(rec->tables[i], buf, sizeof(buf), parts, MAX_TABLE_PARTS);
		size_t s, e, tl;
		if (n <= 0) {
			r = kd_err(err, -EINVAL, "state: bad table key '%s'", rec->tables[i]);
			break;
		}
		if (kd_toml_table_range(doc, parts, (size_t)n, &s, &e) < 0)
			continue;
		present[i] = true;
		const char *txt = kd_toml_text(doc, &tl);
		if ((r = diff_table(txt + s, e - s, rec->texts[i], &d[i])) < 0)
			break;
		append(removed, sizeof(removed), removed[0] ? ", [%.*s]" : "[%.*s]", rec->tables[i],
		       strlen(rec->tables[i]));
		if (d[i].n_kept) {
			size_t l = strlen(kept);
			snprintf(kept + l, sizeof(kept) - l,
				 "%s%zu line(s) added inside [%s] (%s%s)", l ? "; " : "",
				 d[i].n_kept, rec->tables[i], d[i].kept_quotes,
				 d[i].n_kept > QUOTE_LINES ? ", …" : "");
		}
		if (d[i].n_added || d[i].n_gone) {
			size_t l = strlen(edited);
			snprintf(edited + l, sizeof(edited) - l, "%s[%s]", l ? ", " : "",
				 rec->tables[i]);
			l = strlen(edited);
			if (d[i].n_added)
				snprintf(edited + l, sizeof(edited) - l, " (%zu line(s) %s: %s%s)",
					 d[i].n_added, d[i].n_gone ? "changed or added" : "added",
					 d[i].added_quotes,
					 d[i].n_added > QUOTE_LINES ? ", …" : "");
			else
				snprintf(edited + l, sizeof(edited) - l,
					 " (%zu line(s) kata-deploy wrote removed)", d[i].n_gone);
		}
	}
	if (r >= 0 && edited[0] && !force) {
		snprintf(why, why_size,
			 "/%s: the kata-deploy tables were edited since install: %s; leaving the "
			 "file as it is: remove them by hand",
			 rec->path, edited);
		r = KD_REVERT_LEAVE;
	}
	for (size_t i = nt; r == 0 && i-- > 0;) {
		if (!present[i])
			continue;
		int n = kd_toml_key_split(rec->tables[i], buf, sizeof(buf), parts, MAX_TABLE_PARTS);
		r = remove_keeping(&doc, rec->path, parts, (size_t)n, d[i].kept, d[i].kept_len,
				   err);
		if (r == -ENOENT) {
			kd_err_clear(err);
			r = 0;
			continue;
		}
		if (r < 0)
			r = kd_err_wrap(err, r, "/%s: remove [%s]", rec->path, rec->tables[i]);
		any = true;
	}
	for (size_t i = 0; i < nt; i++)
		free(d[i].kept);
	if (r != 0)
		return r;
	bool import_removed = false;
	if (rec->imports && rec->imports[0]) {
		int version;
		_cleanup_strv_ char **imports = NULL;
		r = kd_containerd_root_info(doc, rec->path, &version, &imports, err);
		if (r < 0)
			return r;
		_cleanup_strv_ char **keep = calloc(1, sizeof(char *));
		if (!keep)
			return -ENOMEM;
		for (size_t i = 0; imports[i]; i++)
			if (!kd_strv_find(rec->imports, imports[i]) &&
			    kd_strv_push(&keep, imports[i]) < 0)
				return -ENOMEM;
		if (kd_strv_length(keep) != kd_strv_length(imports)) {
			if (!keep[0] && rec->import_key)
				r = kd_toml_remove_key(doc, NULL, 0, "imports", err);
			else
				r = kd_toml_set_strings(doc, NULL, 0, "imports",
							(const char *const *)keep,
							kd_strv_length(keep), err);
			if (r < 0)
				return kd_err_wrap(err, r, "/%s: remove our imports entry",
						   rec->path);
			any = import_removed = true;
		}
	}
	if (!any)
		return KD_REVERT_SAME;
	size_t len;
	const char *t = kd_toml_text(doc, &len);
	if (rec->created && rec->base && len == strlen(rec->base) && !memcmp(t, rec->base, len))
		return KD_REVERT_DELETE;
	int w = snprintf(why, why_size,
			 "/%s was changed since kata-deploy wrote it, so it is not restored byte "
			 "for byte: removed the kata-deploy table(s) %s%s and kept everything else",
			 rec->path, removed, import_removed ? " and our imports entry" : "");
	if (kept[0] && w > 0 && (size_t)w < why_size)
		w += snprintf(why + w, why_size - (size_t)w,
			      ", including %s: comments and blank lines are no part of a table",
			      kept);
	if (edited[0] && w > 0 && (size_t)w < why_size)
		snprintf(why + w, why_size - (size_t)w,
			 "; the edits made to %s since install were removed with them (a "
			 "kata-deploy table goes whole: its shim is gone)",
			 edited);
	*ret_text = strndup(t, len);
	*ret_len = len;
	return *ret_text ? KD_REVERT_TEXT : -ENOMEM;
}
