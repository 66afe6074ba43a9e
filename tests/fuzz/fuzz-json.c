/* Fuzz lib/json: any bytes either parse, or fail with a message. A parsed tree must survive
 * the canonical writer (or be refused for holding a float), and canonical output must parse
 * back to the same canonical bytes. */
#include <stdint.h>
#include <string.h>

#include "json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	_cleanup_json_ struct json_object *o = NULL, *back = NULL;
	_cleanup_free_ char *c1 = NULL, *c2 = NULL, *pretty = NULL;
	size_t n1 = 0, n2 = 0;
	kd_error err = {0};

	if (kd_json_parse((const char *)data, size, "fuzz.json", &o, &err) < 0) {
		if (!err.msg[0])
			__builtin_trap();
		return 0;
	}
	if (kd_json_format(o, KD_JSON_PRETTY, &pretty, NULL, &err) < 0)
		__builtin_trap();
	if (kd_json_format(o, KD_JSON_CANONICAL, &c1, &n1, &err) < 0)
		return 0; /* floats are refused by design */
	if (kd_json_parse(c1, n1, "canonical", &back, &err) < 0)
		__builtin_trap();
	if (kd_json_format(back, KD_JSON_CANONICAL, &c2, &n2, &err) < 0)
		__builtin_trap();
	if (n1 != n2 || memcmp(c1, c2, n1) != 0)
		__builtin_trap();
	return 0;
}
