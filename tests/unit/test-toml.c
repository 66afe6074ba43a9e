/* Unit tests for lib/toml: byte-exact round trips, lookups and getters, each edit with the exact
 * resulting text (containerd config v2 and v3 runtime tables added and removed again), errors
 * with file:line:column, and the size and depth limits. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "toml.h"

static kd_toml_doc *parse_ok(const char *text)
{
	kd_toml_doc *doc = NULL;
	kd_error err = {0};
	if (kd_toml_parse("config.toml", text, strlen(text), &doc, &err) < 0) {
		printf("#   unexpected parse error: %s\n", kd_err_msg(&err));
		return NULL;
	}
	return doc;
}

/* Parse must fail with exactly this message. */
static void parse_fails(const char *text, const char *msg)
{
	kd_toml_doc *doc = NULL;
	kd_error err = {0};
	int r = kd_toml_parse("config.toml", text, strlen(text), &doc, &err);
	CHECK(r < 0);
	CHECK(doc == NULL);
	if (r < 0)
		CHECK_STR(kd_err_msg(&err), msg);
	kd_toml_free(doc);
}

static const char *text_of(const kd_toml_doc *doc)
{
	return kd_toml_text(doc, NULL);
}

static void check_emit(const kd_toml_doc *doc, const char *text, size_t len)
{
	char *out = NULL;
	size_t olen = 0;
	kd_error err = {0};
	CHECK_INT(kd_toml_emit(doc, &out, &olen, &err), 0);
	CHECK_INT(olen, len);
	CHECK(out && memcmp(out, text, len) == 0);
	free(out);
}

/* ---- round trips ---- */

static const char tricky[] = "# leading comment\r\n"
			     "title = 'TOML' # trailing\r\n"
			     "\"quoted key\" = \"\\u00e9\\t\"\r\n"
			     "  a.b .c = 0x_dead_beef_is_bad_so_not_this\r\n";

TEST(roundtrip_tricky)
{
	static const char *const docs[] = {
		"",
		"\n\n  \t\n",
		"# only a comment",
		"a = 1",
		"a = 1\r\nb = 2\r\n",
		"x = \"\"\"\nline one\\\n   continued \"\"\"\"\"\n",
		"y = '''\r\nraw \\ text\r\n'''\n",
		"arr = [ 1,\n  2, # two\n\n  3, ]\n",
		"inl = {a = 1,   b.c = [ {d = 'e'} ] }\n",
		"[[fruit]]\n  name = 'apple'\n  [fruit.physical]\n  color = 'red'\n[[fruit]]\nname = 'x'\n",
		"  [ a . \"b\" . 'c' ]  # spaced header\n\tk\t=\t+1_000\n",
		"f = [1e10, -0.0, +inf, nan, 6.626e-34, 1_0.0_1]\n",
		"d = 1979-05-27 07:32:00.999-07:00\nt = 07:32:00\nl = 1979-05-27T07:32:00\n",
		"unicode = \"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\" # \xe2\x9c\x93\n",
	};
	for (size_t i = 0; i < ELEMENTSOF(docs); i++) {
		kd_toml_doc *doc = parse_ok(docs[i]);
		CHECK(doc != NULL);
		if (!doc)
			continue;
		size_t len;
		const char *t = kd_toml_text(doc, &len);
		CHECK_INT(len, strlen(docs[i]));
		CHECK(memcmp(t, docs[i], len) == 0);
		check_emit(doc, docs[i], strlen(docs[i]));
		kd_toml_free(doc);
	}
	/* tricky[] holds an invalid hex number on purpose */
	parse_fails(tricky, "config.toml:4:12: invalid number '0x_dead_beef_is_bad_so_not_this'");
}

/* ---- lookups ---- */

static const char lookups[] =
	"version = 2\n"
	"root_str = \"r\" # c\n"
	"[plugins.\"io.containerd.grpc.v1.cri\".containerd]\n"
	"  runtimes.runc.runtime_type = \"io.containerd.runc.v2\"\n"
	"  runtimes.runc.options = { SystemdCgroup = true, BinaryName = 'runc' }\n"
	"  n = -17\n"
	"  f = 1.5e3\n"
	"  when = 1979-05-27T07:32:00Z\n"
	"  list = [\"a\", 'b', \"\"\"c\"\"\"]\n";

TEST(lookup_and_getters)
{
	kd_toml_doc *doc = parse_ok(lookups);
	CHECK(doc != NULL);
	if (!doc)
		return;
	const char *opts[] = {"plugins",    "io.containerd.grpc.v1.cri",
			      "containerd", "runtimes",
			      "runc",	    "options"};
	const kd_toml_node *o = kd_toml_table(doc, opts, 6);
	CHECK(o != NULL);
	CHECK_INT(kd_toml_origin_of(o), KD_TOML_INLINE);
	bool b = false;
	CHECK_INT(kd_toml_get_bool(kd_toml_get(o, "SystemdCgroup"), &b), 0);
	CHECK(b);
	const char *s;
	size_t len;
	CHECK_INT(kd_toml_get_string(kd_toml_get(o, "BinaryName"), &s, &len), 0);
	CHECK_STR(s, "runc");
	CHECK_INT(len, 4);

	const kd_toml_node *runc = kd_toml_table(doc, opts, 5);
	CHECK_INT(kd_toml_origin_of(runc), KD_TOML_DOTTED);
	CHECK_INT(kd_toml_get_string(kd_toml_get(runc, "runtime_type"), &s, NULL), 0);
	CHECK_STR(s, "io.containerd.runc.v2");
	CHECK_INT(kd_toml_origin_of(kd_toml_table(doc, opts, 3)), KD_TOML_HEADER);
	CHECK_INT(kd_toml_origin_of(kd_toml_table(doc, opts, 2)), KD_TOML_IMPLICIT);
	CHECK_INT(kd_toml_origin_of(kd_toml_root(doc)), KD_TOML_ROOT);
	CHECK(kd_toml_table(doc, opts, 0) == kd_toml_root(doc));

	const kd_toml_node *c = kd_toml_table(doc, opts, 3);
	int64_t i = 0;
	double f = 0;
	CHECK_INT(kd_toml_get_int(kd_toml_get(c, "n"), &i), 0);
	CHECK_INT(i, -17);
	CHECK_INT(kd_toml_get_float(kd_toml_get(c, "f"), &f), 0);
	CHECK(f == 1500.0);
	CHECK_INT(kd_toml_get_datetime(kd_toml_get(c, "when"), &s, &len), 0);
	CHECK_STR(s, "1979-05-27T07:32:00Z");
	CHECK_INT(kd_toml_type_of(kd_toml_get(c, "when")), KD_TOML_DATETIME);
	/* wrong types are refused */
	CHECK_INT(kd_toml_get_int(kd_toml_get(c, "f"), &i), -EINVAL);
	CHECK_INT(kd_toml_get_string(kd_toml_get(c, "nope"), &s, NULL), -EINVAL);
	CHECK(kd_toml_table(doc, (const char *[]){"version"}, 1) == NULL);
	CHECK(kd_toml_path(doc, (const char *[]){"version"}, 1) != NULL);

	const kd_toml_node *list = kd_toml_get(c, "list");
	CHECK_INT(kd_toml_type_of(list), KD_TOML_ARRAY);
	CHECK_INT(kd_toml_count(list), 3);
	CHECK_INT(kd_toml_get_string(kd_toml_at(list, 2), &s, NULL), 0);
	CHECK_STR(s, "c");
	CHECK(kd_toml_at(list, 3) == NULL);

	/* keys in document order */
	char keys[128] = "";
	for (const kd_toml_node *k = kd_toml_first(c); k; k = kd_toml_next(k)) {
		strcat(keys, kd_toml_key(k, NULL));
		strcat(keys, ",");
	}
	CHECK_STR(keys, "runtimes,n,f,when,list,");
	CHECK_INT(kd_toml_count(kd_toml_root(doc)), 3);

	/* positions and raw value ranges */
	unsigned line, col;
	kd_toml_position(doc, kd_toml_get(c, "n"), &line, &col);
	CHECK_INT(line, 6);
	CHECK_INT(col, 3);
	size_t vs, ve;
	CHECK_INT(kd_toml_value_range(kd_toml_get(o, "BinaryName"), &vs, &ve), 0);
	CHECK(ve - vs == 6 && memcmp(text_of(doc) + vs, "'runc'", 6) == 0);
	kd_toml_free(doc);
}

TEST(array_of_tables_lookup)
{
	kd_toml_doc *doc = parse_ok("[[a]]\nx = 1\n[[a]]\nx = 2\n[a.sub]\ny = 3\n");
	CHECK(doc != NULL);
	if (!doc)
		return;
	const kd_toml_node *a = kd_toml_path(doc, (const char *[]){"a"}, 1);
	CHECK_INT(kd_toml_origin_of(a), KD_TOML_AOT);
	CHECK_INT(kd_toml_count(a), 2);
	int64_t v = 0;
	CHECK_INT(kd_toml_get_int(kd_toml_get(kd_toml_at(a, 0), "x"), &v), 0);
	CHECK_INT(v, 1);
	/* a path through [[a]] stands for its last element */
	CHECK_INT(kd_toml_get_int(kd_toml_path(doc, (const char *[]){"a", "sub", "y"}, 3), &v), 0);
	CHECK_INT(v, 3);
	CHECK_INT(kd_toml_get_int(kd_toml_path(doc, (const char *[]){"a", "x"}, 2), &v), 0);
	CHECK_INT(v, 2);
	kd_toml_free(doc);
}

/* ---- edits ---- */

#define EDIT_OK(expr)                                                                              \
	do {                                                                                       \
		kd_error _e = {0};                                                                 \
		kd_error *err = &_e;                                                               \
		int _r = (expr);                                                                   \
		if (_r < 0)                                                                        \
			printf("#   %s: %s\n", #expr, kd_err_msg(&_e));                            \
		CHECK_INT(_r, 0);                                                                  \
	} while (0)

TEST(set_existing_keeps_line)
{
	kd_toml_doc *doc = parse_ok("[a]\n  k = 'old' # keep me\n  n = 0x10\n  b = true\n"
				    "  l = [1,\n  2]\n");
	CHECK(doc != NULL);
	if (!doc)
		return;
	const char *a[] = {"a"};
	EDIT_OK(kd_toml_set_string(doc, a, 1, "k", "new \"v\"\n", err));
	EDIT_OK(kd_toml_set_int(doc, a, 1, "n", -5, err));
	EDIT_OK(kd_toml_set_bool(doc, a, 1, "b", false, err));
	const char *vals[] = {"x", "y"};
	EDIT_OK(kd_toml_set_strings(doc, a, 1, "l", vals, 2, err));
	CHECK_STR(text_of(doc), "[a]\n  k = \"new \\\"v\\\"\\n\" # keep me\n  n = -5\n"
				"  b = false\n  l = [\"x\", \"y\"]\n");
	const char *s;
	CHECK_INT(kd_toml_get_string(kd_toml_path(doc, (const char *[]){"a", "k"}, 2), &s, NULL),
		  0);
	CHECK_STR(s, "new \"v\"\n");
	size_t off, rem, ins;
	kd_toml_last_edit(doc, &off, &rem, &ins);
	CHECK_INT(rem, strlen("[1,\n  2]"));
	CHECK_INT(ins, strlen("[\"x\", \"y\"]"));
	CHECK(memcmp(text_of(doc) + off, "[\"x\", \"y\"]", ins) == 0);
	kd_toml_free(doc);
}

TEST(add_keys)
{
	kd_toml_doc *doc = parse_ok("top = 1\n\n[t]\n    a = 1 # c\n    b.c = 2\n\n[e]\n"
				    "[i]\nx = { }\ny = {}\nz = { p = 1 }\n");
	CHECK(doc != NULL);
	if (!doc)
		return;
	EDIT_OK(kd_toml_set_string(doc, NULL, 0, "second", "s", err));
	EDIT_OK(kd_toml_set_int(doc, (const char *[]){"t"}, 1, "new", 7, err));
	EDIT_OK(kd_toml_set_int(doc, (const char *[]){"t", "b"}, 2, "d", 3, err));
	EDIT_OK(kd_toml_set_bool(doc, (const char *[]){"e"}, 1, "on", true, err));
	EDIT_OK(kd_toml_set_int(doc, (const char *[]){"i", "x"}, 2, "q", 1, err));
	EDIT_OK(kd_toml_set_int(doc, (const char *[]){"i", "y"}, 2, "q", 1, err));
	EDIT_OK(kd_toml_set_string(doc, (const char *[]){"i", "z"}, 2, "key with space", "v", err));
	CHECK_STR(text_of(doc), "top = 1\nsecond = \"s\"\n\n[t]\n    a = 1 # c\n    b.c = 2\n"
				"    b.d = 3\n    new = 7\n\n[e]\n    on = true\n"
				"[i]\nx = { q = 1 }\ny = { q = 1 }\n"
				"z = { p = 1, \"key with space\" = \"v\" }\n");
	kd_toml_free(doc);

	/* a root without keys gets them at the top; a table only implied by a sub-table header
	 * gets a header of its own */
	doc = parse_ok("[a.b]\nx = 1\n");
	CHECK(doc != NULL);
	if (!doc)
		return;
	EDIT_OK(kd_toml_set_int(doc, NULL, 0, "version", 3, err));
	EDIT_OK(kd_toml_set_int(doc, (const char *[]){"a"}, 1, "y", 2, err));
	CHECK_STR(text_of(doc), "version = 3\n[a.b]\nx = 1\n\n[a]\ny = 2\n");
	kd_toml_free(doc);

	/* no final newline; CRLF documents get CRLF */
	doc = parse_ok("[a]\r\nx = 1");
	CHECK(doc != NULL);
	if (!doc)
		return;
	EDIT_OK(kd_toml_set_int(doc, (const char *[]){"a"}, 1, "y", 2, err));
	CHECK_STR(text_of(doc), "[a]\r\nx = 1\r\ny = 2\r\n");
	kd_toml_free(doc);
}

TEST(remove_keys)
{
	kd_toml_doc *doc = parse_ok("a = 1\nb = 2 # two\nc = { x = 1, y = 2 , z = 3 }\n"
				    "d = {only = 1}\ne.f = 1\ne.g = 2\n");
	CHECK(doc != NULL);
	if (!doc)
		return;
	EDIT_OK(kd_toml_remove_key(doc, NULL, 0, "b", err));
	CHECK_STR(text_of(doc), "a = 1\nc = { x = 1, y = 2 , z = 3 }\nd = {only = 1}\n"
				"e.f = 1\ne.g = 2\n");
	EDIT_OK(kd_toml_remove_key(doc, (const char *[]){"c"}, 1, "y", err));
	CHECK_STR(text_of(doc), "a = 1\nc = { x = 1, z = 3 }\nd = {only = 1}\ne.f = 1\ne.g = 2\n");
	EDIT_OK(kd_toml_remove_key(doc, (const char *[]){"c"}, 1, "z", err));
	EDIT_OK(kd_toml_remove_key(doc, (const char *[]){"c"}, 1, "x", err));
	EDIT_OK(kd_toml_remove_key(doc, (const char *[]){"d"}, 1, "only", err));
	CHECK_STR(text_of(doc), "a = 1\nc = {  }\nd = {}\ne.f = 1\ne.g = 2\n");
	EDIT_OK(kd_toml_remove_key(doc, NULL, 0, "e", err));
	CHECK_STR(text_of(doc), "a = 1\nc = {  }\nd = {}\n");
	kd_error ke = {0};
	CHECK_INT(kd_toml_remove_key(doc, NULL, 0, "nope", &ke), -ENOENT);
	CHECK_STR(kd_err_msg(&ke), "config.toml: remove 'nope': no such key in '(root)'");
	kd_toml_free(doc);
}

TEST(failed_edit_changes_nothing)
{
	const char *orig = "[a]\nk = 1\n[b]\n";
	kd_toml_doc *doc = parse_ok(orig);
	CHECK(doc != NULL);
	if (!doc)
		return;
	kd_error ke = {0};
	CHECK_INT(kd_toml_set_raw(doc, (const char *[]){"a"}, 1, "k", "[1,", &ke), -EINVAL);
	CHECK_STR(kd_err_msg(&ke), "set 'k' in 'a': edit would make the document invalid: "
				   "config.toml:3:2: expected a value, found 'b'");
	CHECK_STR(text_of(doc), orig);
	kd_err_clear(&ke);
	CHECK_INT(kd_toml_set_int(doc, (const char *[]){"zz"}, 1, "k", 1, &ke), -ENOENT);
	CHECK_STR(kd_err_msg(&ke), "config.toml: table 'zz' not found");
	kd_err_clear(&ke);
	CHECK_INT(kd_toml_set_int(doc, NULL, 0, "a", 1, &ke), -EEXIST);
	CHECK_INT(kd_toml_add_table(doc, (const char *[]){"b"}, 1, &ke), -EEXIST);
	CHECK_INT(kd_toml_add_table(doc, (const char *[]){"a", "k", "x"}, 3, &ke), -ENOTDIR);
	CHECK_INT(kd_toml_remove_table(doc, NULL, 0, &ke), -EINVAL);
	CHECK_STR(text_of(doc), orig);
	/* the edit was valid: the document still parses and is usable */
	EDIT_OK(kd_toml_set_raw(doc, (const char *[]){"a"}, 1, "k", "{ x = [1, 2] }", err));
	CHECK_STR(text_of(doc), "[a]\nk = { x = [1, 2] }\n[b]\n");
	kd_toml_free(doc);
}

/* containerd 1.6/1.7 `config default` style (config version 2, indented sub-tables) */
static const char containerd_v2[] =
	"version = 2\n"
	"\n"
	"[plugins]\n"
	"\n"
	"  [plugins.\"io.containerd.grpc.v1.cri\"]\n"
	"    sandbox_image = \"registry.k8s.io/pause:3.6\"\n"
	"\n"
	"    [plugins.\"io.containerd.grpc.v1.cri\".containerd]\n"
	"      default_runtime_name = \"runc\"\n"
	"      snapshotter = \"overlayfs\"\n"
	"\n"
	"      [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes]\n"
	"\n"
	"        [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n"
	"          runtime_type = \"io.containerd.runc.v2\"\n"
	"\n"
	"          [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\n"
	"            SystemdCgroup = true\n"
	"\n"
	"    # registry settings\n"
	"    [plugins.\"io.containerd.grpc.v1.cri\".registry]\n"
	"      config_path = \"\"\n"
	"\n"
	"[timeouts]\n"
	"  \"io.containerd.timeout.shutdown\" = \"5s\"\n";

static const char containerd_v2_kata[] =
	"version = 2\n"
	"\n"
	"[plugins]\n"
	"\n"
	"  [plugins.\"io.containerd.grpc.v1.cri\"]\n"
	"    sandbox_image = \"registry.k8s.io/pause:3.6\"\n"
	"\n"
	"    [plugins.\"io.containerd.grpc.v1.cri\".containerd]\n"
	"      default_runtime_name = \"runc\"\n"
	"      snapshotter = \"overlayfs\"\n"
	"\n"
	"      [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes]\n"
	"\n"
	"        [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n"
	"          runtime_type = \"io.containerd.runc.v2\"\n"
	"\n"
	"          [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\n"
	"            SystemdCgroup = true\n"
	"\n"
	"        [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.kata-qemu]\n"
	"          runtime_type = \"io.containerd.kata-qemu.v2\"\n"
	"          privileged_without_host_devices = true\n"
	"          pod_annotations = [\"io.katacontainers.*\"]\n"
	"\n"
	"          [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.kata-qemu.options]\n"
	"            ConfigPath = \"/opt/kata/share/defaults/kata-containers/"
	"configuration-qemu.toml\"\n"
	"            SystemdCgroup = true\n"
	"\n"
	"    # registry settings\n"
	"    [plugins.\"io.containerd.grpc.v1.cri\".registry]\n"
	"      config_path = \"\"\n"
	"\n"
	"[timeouts]\n"
	"  \"io.containerd.timeout.shutdown\" = \"5s\"\n";

static void add_kata(kd_toml_doc *doc, const char *plugin)
{
	const char *rt[] = {"plugins", plugin, "containerd", "runtimes", "kata-qemu", "options"};
	const char *ann[] = {"io.katacontainers.*"};
	EDIT_OK(kd_toml_add_table(doc, rt, 5, err));
	EDIT_OK(kd_toml_set_string(doc, rt, 5, "runtime_type", "io.containerd.kata-qemu.v2", err));
	EDIT_OK(kd_toml_set_bool(doc, rt, 5, "privileged_without_host_devices", true, err));
	EDIT_OK(kd_toml_set_strings(doc, rt, 5, "pod_annotations", ann, 1, err));
	EDIT_OK(kd_toml_add_table(doc, rt, 6, err));
	EDIT_OK(kd_toml_set_string(
		doc, rt, 6, "ConfigPath",
		"/opt/kata/share/defaults/kata-containers/configuration-qemu.toml", err));
	EDIT_OK(kd_toml_set_bool(doc, rt, 6, "SystemdCgroup", true, err));
}

TEST(containerd_v2_add_and_remove_runtime)
{
	kd_toml_doc *doc = parse_ok(containerd_v2);
	CHECK(doc != NULL);
	if (!doc)
		return;
	add_kata(doc, "io.containerd.grpc.v1.cri");
	CHECK_STR(text_of(doc), containerd_v2_kata);

	/* what was inserted is exactly the table's range */
	const char *rt[] = {"plugins", "io.containerd.grpc.v1.cri", "containerd", "runtimes",
			    "kata-qemu"};
	size_t s, e;
	CHECK_INT(kd_toml_table_range(doc, rt, 5, &s, &e), 0);
	CHECK_INT(e - s, strlen(containerd_v2_kata) - strlen(containerd_v2));
	CHECK(memcmp(text_of(doc), containerd_v2, s) == 0);
	CHECK_STR(text_of(doc) + e, containerd_v2 + s);

	EDIT_OK(kd_toml_remove_table(doc, rt, 5, err));
	CHECK_STR(text_of(doc), containerd_v2);
	size_t off, rem, ins;
	kd_toml_last_edit(doc, &off, &rem, &ins);
	CHECK_INT(off, s);
	CHECK_INT(rem, e - s);
	CHECK_INT(ins, 0);
	kd_toml_free(doc);
}

/* containerd 2.x `config default` style (config version 3, single-quoted plugin ids, runtimes
 * table implied by its sub-tables, no blank line at the end) */
static const char containerd_v3[] =
	"version = 3\n"
	"\n"
	"[plugins.'io.containerd.cri.v1.runtime']\n"
	"  enable_selinux = false\n"
	"\n"
	"  [plugins.'io.containerd.cri.v1.runtime'.containerd]\n"
	"    default_runtime_name = 'runc'\n"
	"\n"
	"    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]\n"
	"      runtime_type = 'io.containerd.runc.v2'\n"
	"\n"
	"      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]\n"
	"        SystemdCgroup = false\n";

static const char containerd_v3_kata[] =
	"version = 3\n"
	"\n"
	"[plugins.'io.containerd.cri.v1.runtime']\n"
	"  enable_selinux = false\n"
	"\n"
	"  [plugins.'io.containerd.cri.v1.runtime'.containerd]\n"
	"    default_runtime_name = 'runc'\n"
	"\n"
	"    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]\n"
	"      runtime_type = 'io.containerd.runc.v2'\n"
	"\n"
	"      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]\n"
	"        SystemdCgroup = false\n"
	"\n"
	"    [plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.kata-qemu]\n"
	"      runtime_type = \"io.containerd.kata-qemu.v2\"\n"
	"      privileged_without_host_devices = true\n"
	"      pod_annotations = [\"io.katacontainers.*\"]\n"
	"\n"
	"      [plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.kata-qemu.options]\n"
	"        ConfigPath = \"/opt/kata/share/defaults/kata-containers/"
	"configuration-qemu.toml\"\n"
	"        SystemdCgroup = true\n";

TEST(containerd_v3_add_and_remove_runtime)
{
	kd_toml_doc *doc = parse_ok(containerd_v3);
	CHECK(doc != NULL);
	if (!doc)
		return;
	add_kata(doc, "io.containerd.cri.v1.runtime");
	CHECK_STR(text_of(doc), containerd_v3_kata);
	/* the new runtime reads back like any other */
	const char *rt[] = {"plugins",	    "io.containerd.cri.v1.runtime",
			    "containerd",   "runtimes",
			    "kata-qemu",    "options",
			    "SystemdCgroup"};
	bool b = false;
	CHECK_INT(kd_toml_get_bool(kd_toml_path(doc, rt, 7), &b), 0);
	CHECK(b);
	CHECK_INT(kd_toml_count(kd_toml_table(doc, rt, 4)), 2);
	EDIT_OK(kd_toml_remove_table(doc, rt, 5, err));
	CHECK_STR(text_of(doc), containerd_v3);
	kd_toml_free(doc);
}

TEST(add_runtime_other_shapes)
{
	/* no runtimes table yet; keys indented under the header, at the end of the file */
	const char *v2 = "version = 2\n"
			 "[plugins.\"io.containerd.grpc.v1.cri\".containerd]\n"
			 "  snapshotter = \"overlayfs\"\n";
	const char *rt[] = {"plugins", "io.containerd.grpc.v1.cri", "containerd", "runtimes",
			    "kata"};
	kd_toml_doc *doc = parse_ok(v2);
	CHECK(doc != NULL);
	if (!doc)
		return;
	EDIT_OK(kd_toml_add_table(doc, rt, 5, err));
	EDIT_OK(kd_toml_set_string(doc, rt, 5, "runtime_type", "io.containerd.kata.v2", err));
	CHECK_STR(text_of(doc), "version = 2\n"
				"[plugins.\"io.containerd.grpc.v1.cri\".containerd]\n"
				"  snapshotter = \"overlayfs\"\n"
				"\n"
				"[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.kata]\n"
				"  runtime_type = \"io.containerd.kata.v2\"\n");
	EDIT_OK(kd_toml_remove_table(doc, rt, 5, err));
	CHECK_STR(text_of(doc), v2);
	kd_toml_free(doc);

	/* the containerd table written with dotted keys in the root */
	const char *dotted =
		"version = 2\n"
		"plugins.\"io.containerd.grpc.v1.cri\".containerd.snapshotter = \"x\"\n"
		"\n"
		"[metrics]\n"
		"  address = \"\"\n";
	doc = parse_ok(dotted);
	CHECK(doc != NULL);
	if (!doc)
		return;
	EDIT_OK(kd_toml_set_string(doc, rt, 3, "default_runtime_name", "kata", err));
	EDIT_OK(kd_toml_add_table(doc, rt, 5, err));
	EDIT_OK(kd_toml_set_string(doc, rt, 5, "runtime_type", "io.containerd.kata.v2", err));
	CHECK_STR(
		text_of(doc),
		"version = 2\n"
		"plugins.\"io.containerd.grpc.v1.cri\".containerd.snapshotter = \"x\"\n"
		"plugins.\"io.containerd.grpc.v1.cri\".containerd.default_runtime_name = \"kata\"\n"
		"\n"
		"[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.kata]\n"
		"  runtime_type = \"io.containerd.kata.v2\"\n"
		"\n"
		"[metrics]\n"
		"  address = \"\"\n");
	const char *s;
	CHECK_INT(kd_toml_get_string(kd_toml_get(kd_toml_table(doc, rt, 3), "default_runtime_name"),
				     &s, NULL),
		  0);
	CHECK_STR(s, "kata");
	EDIT_OK(kd_toml_remove_table(doc, rt, 5, err));
	EDIT_OK(kd_toml_remove_key(doc, rt, 3, "default_runtime_name", err));
	CHECK_STR(text_of(doc), dotted);
	kd_toml_free(doc);

	/* a CRI-O drop-in written from nothing */
	doc = parse_ok("");
	CHECK(doc != NULL);
	if (!doc)
		return;
	const char *crio[] = {"crio", "runtime", "runtimes", "kata-qemu"};
	EDIT_OK(kd_toml_add_table(doc, crio, 4, err));
	EDIT_OK(kd_toml_set_string(doc, crio, 4, "runtime_path", "/opt/kata/bin/shim", err));
	EDIT_OK(kd_toml_set_string(doc, crio, 4, "runtime_type", "vm", err));
	EDIT_OK(kd_toml_set_bool(doc, crio, 4, "privileged_without_host_devices", true, err));
	CHECK_STR(text_of(doc), "[crio.runtime.runtimes.kata-qemu]\n"
				"runtime_path = \"/opt/kata/bin/shim\"\n"
				"runtime_type = \"vm\"\n"
				"privileged_without_host_devices = true\n");
	kd_toml_free(doc);
}

TEST(add_table_placement)
{
	/* root ancestor: appended at the end, one blank line before; removed with it */
	const char *orig = "a = 1\n[x]\ny = 2";
	kd_toml_doc *doc = parse_ok(orig);
	CHECK(doc != NULL);
	if (!doc)
		return;
	EDIT_OK(kd_toml_add_table(doc, (const char *[]){"new", "t"}, 2, err));
	CHECK_STR(text_of(doc), "a = 1\n[x]\ny = 2\n\n[new.t]\n");
	EDIT_OK(kd_toml_remove_table(doc, (const char *[]){"new"}, 1, err));
	/* the missing final newline had to be added for the table: that stays */
	CHECK_STR(text_of(doc), "a = 1\n[x]\ny = 2\n");
	kd_toml_free(doc);

	/* inside a table followed by a commented table: before the comment */
	orig = "[a]\nk = 1\n\n# about b\n[b]\n";
	doc = parse_ok(orig);
	CHECK(doc != NULL);
	if (!doc)
		return;
	EDIT_OK(kd_toml_add_table(doc, (const char *[]){"a", "c"}, 2, err));
	EDIT_OK(kd_toml_set_int(doc, (const char *[]){"a", "c"}, 2, "v", 1, err));
	CHECK_STR(text_of(doc), "[a]\nk = 1\n\n[a.c]\nv = 1\n\n# about b\n[b]\n");
	EDIT_OK(kd_toml_remove_table(doc, (const char *[]){"a", "c"}, 2, err));
	CHECK_STR(text_of(doc), orig);
	/* empty document */
	kd_toml_free(doc);
	doc = parse_ok("");
	CHECK(doc != NULL);
	if (!doc)
		return;
	EDIT_OK(kd_toml_add_table(doc, (const char *[]){"a"}, 1, err));
	EDIT_OK(kd_toml_set_string(doc, (const char *[]){"a"}, 1, "k", "v", err));
	CHECK_STR(text_of(doc), "[a]\nk = \"v\"\n");
	EDIT_OK(kd_toml_remove_table(doc, (const char *[]){"a"}, 1, err));
	CHECK_STR(text_of(doc), "");
	kd_toml_free(doc);
}

TEST(remove_tables)
{
	/* a table with sub-tables, dotted keys, and pieces elsewhere */
	kd_toml_doc *doc = parse_ok("top = 1\n"
				    "[a]\nx = 1\nsub.y = 2 # dotted\n\n"
				    "[a.b]\nz = 3\n\n"
				    "[other]\nq = 1\n\n"
				    "[a.c]\nw = 4\n\n"
				    "[last]\n");
	CHECK(doc != NULL);
	if (!doc)
		return;
	size_t s, e;
	CHECK_INT(kd_toml_table_range(doc, (const char *[]){"a"}, 1, &s, &e), 0);
	CHECK_INT(s, 8);
	CHECK_STR(text_of(doc) + e, "[last]\n");
	EDIT_OK(kd_toml_remove_table(doc, (const char *[]){"a"}, 1, err));
	CHECK_STR(text_of(doc), "top = 1\n[other]\nq = 1\n\n[last]\n");
	kd_toml_free(doc);

	/* dotted-key tables and an implied table */
	doc = parse_ok("a.b.c = 1\na.b.d = 2\na.e = 3\n[x.y]\nk = 1\n[x.z]\n");
	CHECK(doc != NULL);
	if (!doc)
		return;
	EDIT_OK(kd_toml_remove_table(doc, (const char *[]){"a", "b"}, 2, err));
	CHECK_STR(text_of(doc), "a.e = 3\n[x.y]\nk = 1\n[x.z]\n");
	EDIT_OK(kd_toml_remove_table(doc, (const char *[]){"x"}, 1, err));
	CHECK_STR(text_of(doc), "a.e = 3\n");
	kd_error ke = {0};
	CHECK_INT(kd_toml_remove_table(doc, (const char *[]){"x"}, 1, &ke), -ENOENT);
	CHECK_STR(kd_err_msg(&ke), "remove table 'x': config.toml: table 'x' not found");
	kd_toml_free(doc);

	/* an inline table is removed as its key */
	doc = parse_ok("[r]\nopts = { a = 1 }\nk = 2\n");
	CHECK(doc != NULL);
	if (!doc)
		return;
	EDIT_OK(kd_toml_remove_key(doc, (const char *[]){"r"}, 1, "opts", err));
	CHECK_STR(text_of(doc), "[r]\nk = 2\n");
	kd_toml_free(doc);
}

/* ---- errors ---- */

TEST(errors_with_positions)
{
	parse_fails("[plugins]\n  runtime_type = 'a'\n\n  runtime_type = 'b'\n",
		    "config.toml:4:3: duplicate key 'runtime_type'");
	parse_fails("[a]\n[b]\n[a]\n", "config.toml:3:1: table 'a' is defined twice");
	parse_fails("[a]\nb.c = 1\n[a.b]\n",
		    "config.toml:3:1: cannot define table 'b': it is already a table defined by "
		    "dotted keys");
	parse_fails("a = {b = 1}\na.c = 2\n",
		    "config.toml:2:1: cannot add keys to 'a': it is an inline table");
	parse_fails("a = [1]\n[[a]]\n",
		    "config.toml:2:1: cannot append to 'a' as an array of tables: it is an array");
	parse_fails("s = \"bad \\x41\"\n",
		    "config.toml:1:10: invalid escape sequence in string: \\ followed by 'x'");
	parse_fails("d = 2023-02-29\n", "config.toml:1:5: invalid date: 2023-02-29 does not exist");
	parse_fails("t = 24:00:00\n", "config.toml:1:5: invalid time: 24:00:00 is out of range");
	parse_fails("n = 0123\n", "config.toml:1:5: leading zeros are not allowed in a number");
	parse_fails("n = 1__0\n", "config.toml:1:5: invalid number '1__0'");
	parse_fails("n = 9223372036854775808\n",
		    "config.toml:1:5: integer out of range (64-bit signed)");
	parse_fails("s = \"a\x01\"\n", "config.toml:1:7: control character U+0001 in string");
	parse_fails("# \x7f\n", "config.toml:1:3: control character U+007F in comment");
	parse_fails("k = \"\xc3\xa9\xff\"\n", "config.toml:1:7: invalid UTF-8");
	parse_fails("k = 'open\n", "config.toml:1:5: unterminated string (line break before the "
				   "closing quote)");
	parse_fails("a = 1 b = 2\n",
		    "config.toml:1:7: expected end of line after value, found 'b'");
	parse_fails("a = {x = 1,}\n", "config.toml:1:12: trailing comma in inline table (not "
				      "allowed in TOML 1.0)");
	parse_fails("a = \n", "config.toml:1:5: expected a value, found end of line");
	parse_fails("= 1\n", "config.toml:1:1: expected a key, found '='");
	parse_fails("a\r = 1\n", "config.toml:1:2: expected '=' after key, found end of line");
	parse_fails("[a\n", "config.toml:1:3: expected ']' to close the table header, found end "
			    "of line");
	parse_fails("k = \"\"\"a\"\"\"\"\"\"\n",
		    "config.toml:1:14: too many quotes at the end of a multi-line string");
	/* columns count characters, not bytes */
	parse_fails("\"\xc3\xa9\xc3\xa9\" = 1\n\"\xc3\xa9\xc3\xa9\" = 2\n",
		    "config.toml:2:1: duplicate key '\xc3\xa9\xc3\xa9'");
}

TEST(limits)
{
	size_t depth = KD_TOML_MAX_DEPTH;
	char *deep = malloc(2 * depth + 16);
	CHECK(deep != NULL);
	if (!deep)
		return;
	/* exactly at the limit: fine */
	strcpy(deep, "a = ");
	size_t n = 4;
	for (size_t i = 0; i < depth; i++)
		deep[n++] = '[';
	for (size_t i = 0; i < depth; i++)
		deep[n++] = ']';
	deep[n] = '\0';
	kd_toml_doc *doc = parse_ok(deep);
	CHECK(doc != NULL);
	kd_toml_free(doc);
	/* one more: refused with its own error */
	n = 4;
	for (size_t i = 0; i <= depth; i++)
		deep[n++] = i % 2 ? '[' : '[';
	for (size_t i = 0; i <= depth; i++)
		deep[n++] = ']';
	deep[n] = '\0';
	kd_error err = {0};
	CHECK_INT(kd_toml_parse("deep.toml", deep, n, &doc, &err), -E2BIG);
	CHECK_STR(kd_err_msg(&err),
		  "deep.toml:1:133: arrays and inline tables nested deeper than 128");
	free(deep);

	/* inline tables count too */
	char buf[1024] = "a = ";
	for (size_t i = 0; i <= depth; i++)
		strcat(buf, "{b=");
	strcat(buf, "1");
	for (size_t i = 0; i <= depth; i++)
		strcat(buf, "}");
	kd_err_clear(&err);
	CHECK_INT(kd_toml_parse("deep.toml", buf, strlen(buf), &doc, &err), -E2BIG);

	/* keys with too many parts */
	char key[1024] = "";
	for (size_t i = 0; i <= depth; i++)
		strcat(key, "k.");
	strcat(key, "k = 1");
	kd_err_clear(&err);
	CHECK_INT(kd_toml_parse("keys.toml", key, strlen(key), &doc, &err), -E2BIG);
	CHECK_STR(kd_err_msg(&err), "keys.toml:1:257: key has more than 128 parts");

	/* size */
	size_t big = KD_TOML_MAX_SIZE + 1;
	char *huge = malloc(big);
	CHECK(huge != NULL);
	if (!huge)
		return;
	memset(huge, '\n', big);
	kd_err_clear(&err);
	CHECK_INT(kd_toml_parse("huge.toml", huge, big, &doc, &err), -EFBIG);
	CHECK_STR(kd_err_msg(&err), "huge.toml: document is larger than 16777216 bytes");
	/* exactly at the limit: parsed */
	CHECK_INT(kd_toml_parse("huge.toml", huge, big - 1, &doc, &err), 0);
	kd_toml_free(doc);
	free(huge);
}

TEST(many_keys_fast)
{
	/* the (parent, key) hash keeps duplicate checks linear */
	size_t nkeys = 100000;
	char *t = malloc(nkeys * 16);
	CHECK(t != NULL);
	if (!t)
		return;
	size_t n = 0;
	for (size_t i = 0; i < nkeys; i++)
		n += (size_t)sprintf(t + n, "k%zu = %zu\n", i, i);
	kd_toml_doc *doc = parse_ok(t);
	CHECK(doc != NULL);
	CHECK_INT(kd_toml_count(kd_toml_root(doc)), nkeys);
	int64_t v = 0;
	CHECK_INT(kd_toml_get_int(kd_toml_path(doc, (const char *[]){"k99999"}, 1), &v), 0);
	CHECK_INT(v, 99999);
	kd_toml_free(doc);
	n += (size_t)sprintf(t + n, "k5 = 1\n");
	kd_error err = {0};
	CHECK_INT(kd_toml_parse("many.toml", t, n, &doc, &err), -EINVAL);
	CHECK_STR(kd_err_msg(&err), "many.toml:100001:1: duplicate key 'k5'");
	free(t);
}

int main(void)
{
	RUN(roundtrip_tricky);
	RUN(lookup_and_getters);
	RUN(array_of_tables_lookup);
	RUN(set_existing_keeps_line);
	RUN(add_keys);
	RUN(remove_keys);
	RUN(failed_edit_changes_nothing);
	RUN(containerd_v2_add_and_remove_runtime);
	RUN(containerd_v3_add_and_remove_runtime);
	RUN(add_runtime_other_shapes);
	RUN(add_table_placement);
	RUN(remove_tables);
	RUN(errors_with_positions);
	RUN(limits);
	RUN(many_keys_fast);
	TAP_END();
}
