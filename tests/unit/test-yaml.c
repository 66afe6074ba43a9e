/* lib/yaml: YAML into json-c trees: core-schema typing, anchors and merge keys, multi-document
 * streams, positioned errors, and the limits that stop alias bombs and deep nesting. */
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "json.h"
#include "tap.h"
#include "yaml.h"

static int y(const char *s, struct json_object **ret, kd_error *err)
{
	kd_err_clear(err);
	return kd_yaml_parse(s, strlen(s), "t.yaml", ret, err);
}

/* Parse YAML and compare its canonical JSON with the expected text. */
static void expect_json(const char *yaml, const char *want)
{
	_cleanup_json_ struct json_object *o = NULL;
	_cleanup_free_ char *s = NULL;
	kd_error err = {0};
	int r = y(yaml, &o, &err);

	if (r < 0) {
		printf("#   parse failed: %s\n", err.msg);
		CHECK_INT(r, 0);
		return;
	}
	if (o && json_object_is_type(o, json_type_double))
		s = strdup(json_object_to_json_string(o));
	else
		CHECK_INT(kd_json_format(o, KD_JSON_CANONICAL, &s, NULL, &err), 0);
	CHECK_STR(s, want);
}

static void expect_error(const char *yaml, int code, const char *msg)
{
	struct json_object *o = NULL;
	kd_error err = {0};

	CHECK_INT(y(yaml, &o, &err), code);
	CHECK(o == NULL);
	if (!strstr(err.msg, msg)) {
		printf("#   error \"%s\" lacks \"%s\"\n", err.msg, msg);
		CHECK(0);
	}
}

TEST(mapping_and_sequence)
{
	expect_json("name: qemu\nversion: \"8.2\"\nfiles:\n  - bin/a\n  - {path: b, mode: 0o755}\n",
		    "{\"files\":[\"bin/a\",{\"mode\":493,\"path\":\"b\"}],\"name\":\"qemu\","
		    "\"version\":\"8.2\"}");
	expect_json("[1, [2, [3]], {}]", "[1,[2,[3]],{}]");
}

TEST(core_schema)
{
	expect_json("a:\nb: ~\n", "{\"a\":null,\"b\":null}");
	expect_json("[null, Null, NULL, ~, true, True, FALSE, 'true', \"null\", 12, -7, +3, 0x1F,"
		    " 0o17, 007, yes, no, on, 1_000, 9223372036854775807, 18446744073709551615]",
		    "[null,null,null,null,true,true,false,\"true\",\"null\",12,-7,3,31,15,7,"
		    "\"yes\",\"no\",\"on\",\"1_000\",9223372036854775807,18446744073709551615]");
	expect_json(
		"a: |\n  line1\n  line2\nb: >\n  folded\n  text\nc: 0x\nd: 1.2.3\ne: .inf1\n",
		"{\"a\":\"line1\\nline2\\n\",\"b\":\"folded text\\n\",\"c\":\"0x\",\"d\":\"1.2.3\","
		"\"e\":\".inf1\"}");
	/* Keys are text whatever they look like. */
	expect_json("1: a\ntrue: b\nnull: c\n", "{\"1\":\"a\",\"null\":\"c\",\"true\":\"b\"}");
}

TEST(floats)
{
	struct json_object *o = NULL;
	kd_error err = {0};
	const char *floats[] = {"1.5",	"-0.25", ".5",	  "1e3", "+2.",
				"1E-2", ".inf",	 "-.Inf", ".NaN"};

	for (size_t i = 0; i < ELEMENTSOF(floats); i++) {
		CHECK_INT(y(floats[i], &o, &err), 0);
		if (!json_object_is_type(o, json_type_double)) {
			printf("#   %s is not a double\n", floats[i]);
			CHECK(0);
		}
		json_object_put(o);
	}
	CHECK_INT(y("1e3", &o, &err), 0);
	CHECK(json_object_get_double(o) == 1000.0);
	json_object_put(o);
}

TEST(tags)
{
	_cleanup_json_ struct json_object *o = NULL;
	kd_error err = {0};

	expect_json("[!!str 12, !!int \"12\", !!bool true, !!null null, ! 12]",
		    "[\"12\",12,true,null,\"12\"]");
	CHECK_INT(y("!!float 1", &o, &err), 0);
	CHECK(json_object_is_type(o, json_type_double));
	expect_error("a: !!int abc\n", -EINVAL, "t.yaml:1:4: 'abc' is not a valid int");
	expect_error("a: !Ref foo\n", -EINVAL, "t.yaml:1:4: unsupported tag '!Ref'");
}

TEST(empty_and_null_docs)
{
	struct json_object *o = (struct json_object *)1;
	kd_error err = {0};

	CHECK_INT(y("", &o, &err), 0);
	CHECK(o == NULL);
	o = (struct json_object *)1;
	CHECK_INT(y("# only a comment\n", &o, &err), 0);
	CHECK(o == NULL);
	o = (struct json_object *)1;
	CHECK_INT(y("---\nnull\n...\n", &o, &err), 0);
	CHECK(o == NULL);
}

TEST(anchors_and_merge)
{
	expect_json("base: &b {cpu: 1, mem: 2}\nx:\n  <<: *b\n  mem: 3\ny: *b\n",
		    "{\"base\":{\"cpu\":1,\"mem\":2},\"x\":{\"cpu\":1,\"mem\":3},"
		    "\"y\":{\"cpu\":1,\"mem\":2}}");
	/* Explicit keys win over merged ones whatever the order; earlier sources win. */
	expect_json("a: &a {k: 1, p: a}\nb: &b {k: 2, q: b}\nc: {k: 0, <<: [*a, *b]}\n",
		    "{\"a\":{\"k\":1,\"p\":\"a\"},\"b\":{\"k\":2,\"q\":\"b\"},"
		    "\"c\":{\"k\":0,\"p\":\"a\",\"q\":\"b\"}}");
	expect_json("- &s hello\n- *s\n- &k key\n- {*k : v}\n",
		    "[\"hello\",\"hello\",\"key\",{\"key\":\"v\"}]");
	/* A quoted "<<" is an ordinary key. */
	expect_json("\"<<\": 1\n", "{\"<<\":1}");
	expect_error("x:\n  <<: 5\n", -EINVAL, "t.yaml:2:3: merge key '<<' needs a mapping");
	expect_error("a: *nope\n", -EINVAL, "t.yaml:1:4: unknown anchor 'nope'");
}

TEST(alias_copies_are_independent)
{
	_cleanup_json_ struct json_object *o = NULL;
	kd_error err = {0};
	struct json_object *a, *b;

	CHECK_INT(y("a: &x {k: 1}\nb: *x\n", &o, &err), 0);
	a = json_object_object_get(o, "a");
	b = json_object_object_get(o, "b");
	CHECK(a != b);
	json_object_object_add(b, "k", json_object_new_int(2));
	CHECK_INT(json_object_get_int(json_object_object_get(a, "k")), 1);
}

TEST(errors_have_positions)
{
	expect_error("a: 1\nb: 2\na: 3\n", -EINVAL, "t.yaml:3:1: duplicate key 'a'");
	expect_error("a: [1, 2\n", -EINVAL, "t.yaml:2:1:");
	expect_error("a:\n  - b\n c: d\n", -EINVAL, "t.yaml:3:");
	expect_error("? [1, 2]\n: v\n", -EINVAL, "t.yaml:1:3: mapping keys must be scalars");
	expect_error("key: \"x\\0y\"\n\"a\\0b\": 1\n", -EINVAL,
		     "t.yaml:2:1: NUL character in a key");
	expect_error("a: \xff\xfe\x00x\n", -EINVAL, "t.yaml");
}

TEST(nul_in_quoted_value)
{
	_cleanup_json_ struct json_object *o = NULL;
	kd_error err = {0};

	/* A NUL is kept in a value (json-c strings have a length); getters refuse it. */
	CHECK_INT(y("a: \"x\\0y\"\n", &o, &err), 0);
	CHECK_INT(json_object_get_string_len(json_object_object_get(o, "a")), 3);
}

TEST(single_vs_multi)
{
	_cleanup_json_ struct json_object *all = NULL;
	kd_error err = {0};
	const char *s = "---\napiVersion: v1\nkind: A\n---\n---\n# empty\n---\nkind: B\n...\n";

	expect_error(s, -EINVAL, "t.yaml:4:1: a second document where one was expected");
	CHECK_INT(kd_yaml_parse_all(s, strlen(s), "t.yaml", &all, &err), 0);
	CHECK(json_object_is_type(all, json_type_array));
	CHECK_INT(json_object_array_length(all), 2);
	CHECK_STR(json_object_get_string(
			  json_object_object_get(json_object_array_get_idx(all, 1), "kind")),
		  "B");
}

TEST(anchors_are_per_document)
{
	_cleanup_json_ struct json_object *all = NULL;
	kd_error err = {0};
	const char *s = "a: &x 1\n---\nb: *x\n";

	CHECK_INT(kd_yaml_parse_all(s, strlen(s), "m.yaml", &all, &err), -EINVAL);
	CHECK_STR(err.msg, "m.yaml:3:4: unknown anchor 'x'");
}

TEST(alias_bomb)
{
	const char *bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
			   "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
			   "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
			   "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
			   "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
			   "f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
			   "g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n"
			   "h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]\n"
			   "i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h, *h]\n";

	double t0 = (double)clock();

	expect_error(bomb, -E2BIG, "aliases expand to more than 100000 nodes");
	/* Refused early: well under a second of CPU. */
	CHECK(((double)clock() - t0) / CLOCKS_PER_SEC < 0.5);
}

TEST(alias_count_limit)
{
	_cleanup_free_ char *s = malloc(20 + 5 * (KD_YAML_MAX_ALIASES + 1));
	size_t n;

	CHECK(s != NULL);
	n = (size_t)sprintf(s, "- &a 1\n");
	for (int i = 0; i <= KD_YAML_MAX_ALIASES; i++)
		n += (size_t)sprintf(s + n, "- *a\n");
	expect_error(s, -E2BIG, "more than 10000 aliases");
}

TEST(node_and_document_limits)
{
	size_t n = 2 * (KD_YAML_MAX_NODES + 1) + 8, len = 0;
	_cleanup_free_ char *s = malloc(n);
	_cleanup_free_ char *docs = malloc(6 * (KD_YAML_MAX_DOCUMENTS + 1) + 1);
	_cleanup_json_ struct json_object *all = NULL;
	kd_error err = {0};

	CHECK(s && docs);
	/* The array itself is a node, so this is one node over. */
	s[len++] = '[';
	for (int i = 0; i < KD_YAML_MAX_NODES; i++) {
		s[len++] = '0';
		s[len++] = ',';
	}
	s[len - 1] = ']';
	s[len] = '\0';
	expect_error(s, -E2BIG, "more than 1000000 nodes");

	len = 0;
	for (int i = 0; i <= KD_YAML_MAX_DOCUMENTS; i++)
		len += (size_t)sprintf(docs + len, "---\na\n");
	CHECK_INT(kd_yaml_parse_all(docs, len, "m.yaml", &all, &err), -E2BIG);
	CHECK(strstr(err.msg, "more than 10000 documents") != NULL);
	/* One fewer is fine. */
	CHECK_INT(kd_yaml_parse_all(docs, len - 6, "m.yaml", &all, &err), 0);
	CHECK_INT(json_object_array_length(all), KD_YAML_MAX_DOCUMENTS);
}

TEST(depth_limit)
{
	char s[2 * KD_YAML_MAX_DEPTH + 8];
	struct json_object *o = NULL;
	kd_error err = {0};
	size_t n = 0;

	for (int i = 0; i < KD_YAML_MAX_DEPTH; i++)
		s[n++] = '[';
	for (int i = 0; i < KD_YAML_MAX_DEPTH; i++)
		s[n++] = ']';
	s[n] = '\0';
	CHECK_INT(y(s, &o, &err), 0);
	json_object_put(o);
	memmove(s + 1, s, n + 1);
	s[0] = '[';
	s[n + 1] = ']';
	s[n + 2] = '\0';
	expect_error(s, -ELOOP, "t.yaml:1:65: nested deeper than 64 levels");
}

TEST(size_limit)
{
	struct json_object *o = NULL;
	kd_error err = {0};

	CHECK_INT(kd_yaml_parse("a: 1", (size_t)KD_YAML_MAX_SIZE + 1, "big.yaml", &o, &err),
		  -EFBIG);
	CHECK_STR(err.msg, "big.yaml: YAML document is 16777217 bytes, limit is 16777216");
}

TEST(files)
{
	char path[] = "/tmp/kd-test-yaml-XXXXXX";
	_cleanup_json_ struct json_object *o = NULL, *all = NULL;
	kd_error err = {0};
	int fd = mkstemp(path);
	const char *s = "kind: A\n---\nkind: B\n";

	CHECK(fd >= 0);
	CHECK_INT(write(fd, s, strlen(s)), strlen(s));
	close(fd);
	CHECK_INT(kd_yaml_parse_file(path, &o, &err), -EINVAL);
	CHECK(strncmp(err.msg, path, strlen(path)) == 0);
	CHECK(strstr(err.msg, ":2:1: a second document") != NULL);
	CHECK_INT(kd_yaml_parse_file_all(path, &all, &err), 0);
	CHECK_INT(json_object_array_length(all), 2);
	unlink(path);
	CHECK_INT(kd_yaml_parse_file(path, &o, &err), -ENOENT);
	CHECK(strstr(err.msg, "No such file") != NULL);
	CHECK_INT(kd_yaml_parse_file("/tmp", &o, &err), -EISDIR);
}

TEST(kubernetes_manifest)
{
	_cleanup_json_ struct json_object *all = NULL;
	kd_error err = {0};
	const char *s = "apiVersion: node.k8s.io/v1\n"
			"kind: RuntimeClass\n"
			"metadata:\n"
			"  name: kata-qemu\n"
			"handler: kata-qemu\n"
			"overhead:\n"
			"  podFixed:\n"
			"    memory: \"160Mi\"\n"
			"    cpu: \"250m\"\n"
			"scheduling:\n"
			"  nodeSelector:\n"
			"    katacontainers.io/kata-runtime: \"true\"\n";
	const char *v = NULL;
	struct json_object *doc, *meta = NULL;

	CHECK_INT(kd_yaml_parse_all(s, strlen(s), "rc.yaml", &all, &err), 0);
	doc = json_object_array_get_idx(all, 0);
	CHECK_INT(kd_json_get_object(doc, NULL, "metadata", true, &meta, &err), 1);
	CHECK_INT(kd_json_get_string(meta, "metadata", "name", true, &v, &err), 1);
	CHECK_STR(v, "kata-qemu");
}

int main(void)
{
	RUN(mapping_and_sequence);
	RUN(core_schema);
	RUN(floats);
	RUN(tags);
	RUN(empty_and_null_docs);
	RUN(anchors_and_merge);
	RUN(alias_copies_are_independent);
	RUN(errors_have_positions);
	RUN(nul_in_quoted_value);
	RUN(single_vs_multi);
	RUN(anchors_are_per_document);
	RUN(alias_bomb);
	RUN(alias_count_limit);
	RUN(node_and_document_limits);
	RUN(depth_limit);
	RUN(size_limit);
	RUN(files);
	RUN(kubernetes_manifest);
	TAP_END();
}
