/* lib/json: parsing with limits and positions, typed getters naming the field path, the
 * canonical and pretty writers, atomic writes under a root. */
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>

#include "fsroot.h"
#include "json.h"
#include "tap.h"

static int parse(const char *s, struct json_object **ret, kd_error *err)
{
	kd_err_clear(err);
	return kd_json_parse(s, strlen(s), "t.json", ret, err);
}

TEST(parse_ok)
{
	_cleanup_json_ struct json_object *o = NULL;
	kd_error err = {0};

	CHECK_INT(parse(" {\"a\": [1, 2, {\"b\": true}], \"c\": \"x\"}\n", &o, &err), 0);
	CHECK(json_object_is_type(o, json_type_object));
	CHECK_INT(json_object_array_length(json_object_object_get(o, "a")), 3);
}

TEST(parse_scalars)
{
	struct json_object *o = NULL;
	kd_error err = {0};

	CHECK_INT(parse("123", &o, &err), 0);
	CHECK(json_object_is_type(o, json_type_int));
	CHECK_INT(json_object_get_int64(o), 123);
	json_object_put(o);
	CHECK_INT(parse("\"s\"", &o, &err), 0);
	CHECK_STR(json_object_get_string(o), "s");
	json_object_put(o);
	o = (struct json_object *)1;
	CHECK_INT(parse("null", &o, &err), 0);
	CHECK(o == NULL);
}

TEST(parse_errors)
{
	struct json_object *o = NULL;
	kd_error err = {0};

	CHECK_INT(parse("", &o, &err), -EINVAL);
	CHECK(strncmp(err.msg, "t.json:1:1: unexpected end", 26) == 0);
	CHECK_INT(parse("   \n", &o, &err), -EINVAL);
	CHECK_INT(parse("{\"a\": [1,", &o, &err), -EINVAL);
	CHECK(strstr(err.msg, "unexpected end") != NULL);
	CHECK_INT(parse("{}\n x", &o, &err), -EINVAL);
	CHECK_STR(err.msg, "t.json:2:2: unexpected character");
	CHECK_INT(parse("{\n  \"a\": 1,\n  }", &o, &err), -EINVAL);
	CHECK(strncmp(err.msg, "t.json:3:", 9) == 0);
	CHECK_INT(parse("{'a': 1}", &o, &err), -EINVAL);
	CHECK_STR(err.msg, "t.json:1:2: unexpected character");
	CHECK_INT(parse("{\"it's\": \"\\\"'\"}", &o, &err), 0);
	json_object_put(o);
	o = NULL;
	CHECK_INT(parse("[1] [2]", &o, &err), -EINVAL);
	CHECK_INT(parse("{\"a\\u0000x\": 1, \"a\\u0000y\": 2}", &o, &err), -EINVAL);
	CHECK_STR(err.msg, "t.json:1:2: NUL character (\\u0000) in an object key");
	/* An escaped backslash before "u0000" is just text. */
	CHECK_INT(parse("{\"a\\\\u0000\": 1}", &o, &err), 0);
	json_object_put(o);
	o = NULL;
	CHECK_INT(parse("[01]", &o, &err), -EINVAL);
	CHECK(o == NULL);
	/* Embedded NUL is not JSON. */
	kd_err_clear(&err);
	CHECK(kd_json_parse("[1]\0", 4, "t.json", &o, &err) < 0);
}

TEST(parse_limits)
{
	struct json_object *o = NULL;
	kd_error err = {0};
	char deep[300];
	size_t n = 0;

	for (int i = 0; i < KD_JSON_MAX_DEPTH + 1; i++)
		deep[n++] = '[';
	for (int i = 0; i < KD_JSON_MAX_DEPTH + 1; i++)
		deep[n++] = ']';
	CHECK_INT(kd_json_parse(deep, n, "d.json", &o, &err), -ELOOP);
	CHECK(strstr(err.msg, "nested deeper than 64") != NULL);
	/* One level less is fine. */
	CHECK_INT(kd_json_parse(deep + 1, n - 2, "d.json", &o, &err), 0);
	json_object_put(o);

	CHECK_INT(kd_json_parse_limits("[1, 2, 3]", 9, "s.json", 8, 0, &o, &err), -EFBIG);
	CHECK_STR(err.msg, "s.json: JSON document is 9 bytes, limit is 8");
	CHECK_INT(kd_json_parse_limits("[[1]]", 5, "s.json", 0, 1, &o, &err), -ELOOP);
}

static const char *doc = "{\"components\": [{\"name\": \"qemu\", \"files\": [{\"path\": \"bin/x\","
			 "\"sha256\": 5, \"size\": 12, \"mode\": -1, \"big\": 18446744073709551615,"
			 "\"exec\": true, \"n\": null}]}]}";

TEST(getters)
{
	_cleanup_json_ struct json_object *o = NULL;
	struct json_object *comps = NULL, *c, *files = NULL, *f;
	char where[KD_JSON_PATH_MAX], where2[KD_JSON_PATH_MAX];
	kd_error err = {0};
	const char *s = "default";
	uint64_t u = 0;
	int64_t i = 0;
	bool b = false;

	CHECK_INT(parse(doc, &o, &err), 0);
	CHECK_INT(kd_json_get_array(o, NULL, "components", true, &comps, &err), 1);
	c = json_object_array_get_idx(comps, 0);
	kd_json_path_index(where, sizeof(where), "components", 0);
	CHECK_STR(where, "components[0]");
	CHECK_INT(kd_json_get_string(c, where, "name", true, &s, &err), 1);
	CHECK_STR(s, "qemu");
	CHECK_INT(kd_json_get_array(c, where, "files", true, &files, &err), 1);
	f = json_object_array_get_idx(files, 0);
	kd_json_path_key(where2, sizeof(where2), where, "files");
	kd_json_path_index(where, sizeof(where), where2, 0);
	CHECK_STR(where, "components[0].files[0]");

	CHECK_INT(kd_json_get_string(f, where, "sha256", true, &s, &err), -EINVAL);
	CHECK_STR(err.msg, "components[0].files[0].sha256: expected string, got int");
	CHECK_INT(kd_json_get_string(f, where, "missing", true, &s, &err), -ENOENT);
	CHECK_STR(err.msg, "components[0].files[0].missing: missing");
	s = "default";
	CHECK_INT(kd_json_get_string(f, where, "missing", false, &s, &err), 0);
	CHECK_STR(s, "default");
	CHECK_INT(kd_json_get_string(f, where, "n", false, &s, &err), 0);

	CHECK_INT(kd_json_get_uint64(f, where, "size", true, &u, &err), 1);
	CHECK_INT(u, 12);
	CHECK_INT(kd_json_get_uint64(f, where, "mode", true, &u, &err), -ERANGE);
	CHECK_STR(err.msg, "components[0].files[0].mode: expected a non-negative integer, got -1");
	CHECK_INT(kd_json_get_uint64(f, where, "big", true, &u, &err), 1);
	CHECK(u == UINT64_MAX);
	CHECK_INT(kd_json_get_int64(f, where, "big", true, &i, &err), -ERANGE);
	CHECK_INT(kd_json_get_int64(f, where, "mode", true, &i, &err), 1);
	CHECK_INT(i, -1);
	CHECK_INT(kd_json_get_int64(f, where, "path", true, &i, &err), -EINVAL);
	CHECK_STR(err.msg, "components[0].files[0].path: expected integer, got string");
	CHECK_INT(kd_json_get_bool(f, where, "exec", true, &b, &err), 1);
	CHECK(b);
	CHECK_INT(kd_json_get_bool(f, where, "size", true, &b, &err), -EINVAL);
	CHECK_INT(kd_json_get_object(f, where, "path", true, &c, &err), -EINVAL);
	CHECK_STR(err.msg, "components[0].files[0].path: expected object, got string");
	/* Asking a non-object for a key names the container. */
	CHECK_INT(kd_json_get_string(files, "components[0].files", "x", true, &s, &err), -EINVAL);
	CHECK_STR(err.msg, "components[0].files: expected object, got array");
	{
		_cleanup_json_ struct json_object *nul = NULL;
		CHECK_INT(parse("{\"p\": \"a\\u0000b\"}", &nul, &err), 0);
		CHECK_INT(kd_json_get_string(nul, "f", "p", true, &s, &err), -EINVAL);
		CHECK_STR(err.msg, "f.p: string contains a NUL character");
	}
	CHECK_INT(kd_json_as_string(json_object_object_get(f, "size"), "x[1]", &s, &err), -EINVAL);
	CHECK_STR(err.msg, "x[1]: expected string, got int");
}

TEST(canonical)
{
	_cleanup_json_ struct json_object *o = NULL;
	_cleanup_free_ char *s = NULL;
	kd_error err = {0};
	size_t len = 0;

	CHECK_INT(
		parse("{\"z\": 1, \"a\": {\"y\": [true, null, \"a/b\\\"\\n\\u0001é\"], \"b\": -5},"
		      " \"m\": 18446744073709551615}",
		      &o, &err),
		0);
	CHECK_INT(kd_json_format(o, KD_JSON_CANONICAL, &s, &len, &err), 0);
	CHECK_STR(s, "{\"a\":{\"b\":-5,\"y\":[true,null,\"a/b\\\"\\n\\u0001é\"]},"
		     "\"m\":18446744073709551615,\"z\":1}");
	CHECK_INT(len, strlen(s));
}

TEST(canonical_roundtrip_stable)
{
	_cleanup_json_ struct json_object *a = NULL, *b = NULL;
	_cleanup_free_ char *s1 = NULL, *s2 = NULL;
	kd_error err = {0};

	CHECK_INT(parse("{\"b\":[1,{\"d\":1,\"c\":2}],\"a\":\"x\"}", &a, &err), 0);
	CHECK_INT(parse("{ \"a\" : \"x\", \"b\" : [ 1 , { \"c\":2, \"d\":1 } ] }", &b, &err), 0);
	CHECK_INT(kd_json_format(a, KD_JSON_CANONICAL, &s1, NULL, &err), 0);
	CHECK_INT(kd_json_format(b, KD_JSON_CANONICAL, &s2, NULL, &err), 0);
	CHECK_STR(s1, s2);
}

TEST(canonical_rejects_double)
{
	_cleanup_json_ struct json_object *o = NULL;
	char *s = NULL;
	kd_error err = {0};

	CHECK_INT(parse("{\"a\": 1.5}", &o, &err), 0);
	CHECK_INT(kd_json_format(o, KD_JSON_CANONICAL, &s, NULL, &err), -EINVAL);
	CHECK(s == NULL);
	CHECK(strstr(err.msg, "floating-point") != NULL);
}

TEST(pretty)
{
	_cleanup_json_ struct json_object *o = NULL;
	_cleanup_free_ char *s = NULL;
	kd_error err = {0};

	CHECK_INT(parse("{\"b\":1,\"a\":\"x/y\"}", &o, &err), 0);
	CHECK_INT(kd_json_format(o, KD_JSON_PRETTY, &s, NULL, &err), 0);
	CHECK_STR(s, "{\n  \"b\":1,\n  \"a\":\"x/y\"\n}\n");
}

TEST(write_atomic)
{
	char dir[] = "/tmp/kd-test-json-XXXXXX";
	_cleanup_json_ struct json_object *o = NULL, *back = NULL;
	_cleanup_free_ char *data = NULL;
	_cleanup_close_ int rootfd = -1;
	kd_error err = {0};
	struct stat st;
	size_t len = 0;
	char path[PATH_MAX];

	CHECK(mkdtemp(dir) != NULL);
	rootfd = kd_root_open(dir, &err);
	CHECK(rootfd >= 0);
	CHECK_INT(parse("{\"b\": 2, \"a\": 1}", &o, &err), 0);
	CHECK_INT(kd_json_write_atomic(rootfd, "m.json", o, KD_JSON_CANONICAL, 0640, &err), 0);
	CHECK_INT(kd_read_file(rootfd, "m.json", 1024, &data, &len, &err), 0);
	CHECK_STR(data, "{\"a\":1,\"b\":2}");
	snprintf(path, sizeof(path), "%s/m.json", dir);
	CHECK_INT(stat(path, &st), 0);
	CHECK_INT(st.st_mode & 07777, 0640);
	CHECK_INT(kd_json_parse(data, len, "m.json", &back, &err), 0);
	CHECK(json_object_equal(o, back));
	CHECK(kd_json_write_atomic(rootfd, "nodir/m.json", o, KD_JSON_PRETTY, 0644, &err) < 0);
	unlink(path);
	rmdir(dir);
}

int main(void)
{
	RUN(parse_ok);
	RUN(parse_scalars);
	RUN(parse_errors);
	RUN(parse_limits);
	RUN(getters);
	RUN(canonical);
	RUN(canonical_roundtrip_stable);
	RUN(canonical_rejects_double);
	RUN(pretty);
	RUN(write_atomic);
	TAP_END();
}
