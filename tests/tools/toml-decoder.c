/* toml-test decoder adapter: reads TOML on stdin, prints toml-test's tagged JSON on stdout
 * ({"type":"integer","value":"1"}), exits 1 with the error on stderr for invalid input.
 * With --roundtrip it instead prints the document re-emitted by kd_toml_emit(). */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "toml.h"

static void json_string(FILE *f, const char *s, size_t n)
{
	fputc('"', f);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20 || c == 0x7f)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

static void tagged(FILE *f, const char *type, const char *v, size_t n)
{
	fprintf(f, "{\"type\":\"%s\",\"value\":", type);
	json_string(f, v, n);
	fputc('}', f);
}

static void dump(FILE *f, const kd_toml_node *n)
{
	char buf[64];
	const char *s;
	size_t len;
	int64_t i;
	double d;
	bool b;

	switch (kd_toml_type_of(n)) {
	case KD_TOML_TABLE:
		fputc('{', f);
		for (const kd_toml_node *c = kd_toml_first(n); c; c = kd_toml_next(c)) {
			if (c != kd_toml_first(n))
				fputc(',', f);
			size_t klen;
			const char *k = kd_toml_key(c, &klen);
			json_string(f, k, klen);
			fputc(':', f);
			dump(f, c);
		}
		fputc('}', f);
		break;
	case KD_TOML_ARRAY:
		fputc('[', f);
		for (const kd_toml_node *c = kd_toml_first(n); c; c = kd_toml_next(c)) {
			if (c != kd_toml_first(n))
				fputc(',', f);
			dump(f, c);
		}
		fputc(']', f);
		break;
	case KD_TOML_STRING:
		kd_toml_get_string(n, &s, &len);
		tagged(f, "string", s, len);
		break;
	case KD_TOML_INTEGER:
		kd_toml_get_int(n, &i);
		snprintf(buf, sizeof(buf), "%" PRId64, i);
		tagged(f, "integer", buf, strlen(buf));
		break;
	case KD_TOML_FLOAT:
		kd_toml_get_float(n, &d);
		if (isnan(d))
			snprintf(buf, sizeof(buf), "nan");
		else if (isinf(d))
			snprintf(buf, sizeof(buf), "%sinf", d < 0 ? "-" : "+");
		else
			snprintf(buf, sizeof(buf), "%.17g", d);
		tagged(f, "float", buf, strlen(buf));
		break;
	case KD_TOML_BOOL:
		kd_toml_get_bool(n, &b);
		tagged(f, "bool", b ? "true" : "false", b ? 4 : 5);
		break;
	case KD_TOML_DATETIME:
	case KD_TOML_DATETIME_LOCAL:
	case KD_TOML_DATE_LOCAL:
	case KD_TOML_TIME_LOCAL: {
		static const char *const names[] = {"datetime", "datetime-local", "date-local",
						    "time-local"};
		kd_toml_get_datetime(n, &s, &len);
		tagged(f, names[kd_toml_type_of(n) - KD_TOML_DATETIME], s, len);
		break;
	}
	case KD_TOML_NONE:
		fputs("null", f);
		break;
	}
}

int main(int argc, char **argv)
{
	bool roundtrip = argc > 1 && strcmp(argv[1], "--roundtrip") == 0;
	size_t cap = 1 << 16, len = 0, n;
	char *buf = malloc(cap);
	kd_error err = {0};

	if (!buf)
		return 2;
	while ((n = fread(buf + len, 1, cap - len, stdin)) > 0) {
		len += n;
		if (len == cap) {
			if (cap > KD_TOML_MAX_SIZE)
				break;
			char *nb = realloc(buf, cap *= 2);
			if (!nb)
				return 2;
			buf = nb;
		}
	}
	_cleanup_toml_ kd_toml_doc *doc = NULL;
	if (kd_toml_parse("<stdin>", buf, len, &doc, &err) < 0) {
		fprintf(stderr, "%s\n", kd_err_msg(&err));
		free(buf);
		return 1;
	}
	if (roundtrip) {
		_cleanup_free_ char *out = NULL;
		size_t olen;
		if (kd_toml_emit(doc, &out, &olen, &err) < 0) {
			fprintf(stderr, "%s\n", kd_err_msg(&err));
			free(buf);
			return 2;
		}
		fwrite(out, 1, olen, stdout);
	} else {
		dump(stdout, kd_toml_root(doc));
		fputc('\n', stdout);
	}
	free(buf);
	return fflush(stdout) == 0 ? 0 : 2;
}
