/* Fuzz target for lib/toml: any input either fails with a message or parses; a parsed document
 * must emit exactly its input bytes, and a few edits on its first tables must keep it valid and,
 * where the edit API promises it, be undone byte for byte by the matching removal. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "toml-internal.h"

#define FUZZ_MAX_INPUT (64u * 1024)
#define FUZZ_PATH_MAX 4

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void must(bool cond)
{
	if (!cond)
		__builtin_trap();
}

static bool same_text(const kd_toml_doc *doc, const char *text, size_t len)
{
	size_t l;
	const char *t = kd_toml_text(doc, &l);
	return l == len && memcmp(t, text, len) == 0;
}

/* The first chain of (non-inline) tables under the root, as a key path. */
static size_t pick_path(const kd_toml_doc *doc, const char **path, const kd_toml_node **ret)
{
	const kd_toml_node *t = kd_toml_root(doc);
	size_t n = 0;
	while (n < FUZZ_PATH_MAX) {
		const kd_toml_node *next = NULL;
		for (const kd_toml_node *c = kd_toml_first(t); c && !next; c = kd_toml_next(c)) {
			size_t klen;
			const char *k = kd_toml_key(c, &klen);
			if (k && strlen(k) == klen && kd_toml_type_of(c) == KD_TOML_TABLE &&
			    kd_toml_origin_of(c) != KD_TOML_INLINE)
				next = c;
		}
		if (!next)
			break;
		path[n++] = kd_toml_key(next, NULL);
		t = next;
	}
	*ret = t;
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	kd_toml_doc *doc = NULL;
	kd_error err = {0};

	if (size > FUZZ_MAX_INPUT)
		return 0;
	const char *in = (const char *)data;
	if (kd_toml_parse("fuzz.toml", in, size, &doc, &err) < 0) {
		must(err.code < 0 && err.msg[0] != '\0');
		return 0;
	}

	char *out = NULL;
	size_t olen = 0;
	must(kd_toml_emit(doc, &out, &olen, &err) == 0);
	must(olen == size && memcmp(out, in, size) == 0);
	free(out);

	/* Edits work on paths; keep a copy since the document's keys move with each edit. */
	const char *path[FUZZ_PATH_MAX + 1];
	const kd_toml_node *t;
	size_t n = pick_path(doc, path, &t);
	char *keys[FUZZ_PATH_MAX + 1] = {0};
	for (size_t i = 0; i < n; i++) {
		keys[i] = strdup(path[i]);
		must(keys[i] != NULL);
		path[i] = keys[i];
	}
	kd_toml_origin origin = kd_toml_origin_of(t);
	bool has_keys = false;
	for (const kd_toml_node *c = kd_toml_first(t); c; c = kd_toml_next(c))
		if (kd_toml_type_of(c) != KD_TOML_TABLE)
			has_keys = true;

	/* Adding to text without a final line break adds one, and it stays after the removal. */
	bool ends_nl = size == 0 || in[size - 1] == '\n';

	/* a new key, read back, then removed */
	kd_err_clear(&err);
	if (kd_toml_set_string(doc, path, n, "fuzz-key", "v\n\"", &err) == 0) {
		const char *s;
		const kd_toml_node *t2 = kd_toml_table(doc, path, n);
		must(kd_toml_get_string(kd_toml_get(t2, "fuzz-key"), &s, NULL) == 0);
		must(strcmp(s, "v\n\"") == 0);
		must(kd_toml_remove_key(doc, path, n, "fuzz-key", &err) == 0);
		if (ends_nl &&
		    (origin == KD_TOML_ROOT || origin == KD_TOML_DOTTED ||
		     ((origin == KD_TOML_HEADER || origin == KD_TOML_AOT_ELEM) && has_keys)))
			must(same_text(doc, in, size));
	}

	/* a new table under it, then removed */
	size_t len0;
	const char *t0 = kd_toml_text(doc, &len0);
	char *before = malloc(len0 + 1);
	must(before != NULL);
	memcpy(before, t0, len0);
	path[n] = "fuzz new";
	kd_err_clear(&err);
	if (kd_toml_add_table(doc, path, n + 1, &err) == 0) {
		must(kd_toml_table(doc, path, n + 1) != NULL);
		must(kd_toml_set_int(doc, path, n + 1, "k", 1, &err) == 0);
		must(kd_toml_remove_table(doc, path, n + 1, &err) == 0);
		if (ends_nl)
			must(same_text(doc, before, len0));
	}
	free(before);

	/* remove the whole chain's top table; whatever is left must still parse (edits re-parse) */
	if (n > 0) {
		kd_err_clear(&err);
		if (kd_toml_remove_table(doc, path, 1, &err) == 0)
			must(kd_toml_path(doc, path, 1) == NULL);
	}
	for (size_t i = 0; i < n; i++)
		free(keys[i]);
	kd_toml_free(doc);
	return 0;
}
