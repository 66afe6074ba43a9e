/* Fuzz lib/yaml: any bytes either parse into a tree that serialises, or fail with a message;
 * both the single- and the multi-document readers. */
#include <stdint.h>
#include <string.h>

#include "json.h"
#include "yaml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct json_object *o = NULL;
	kd_error err = {0};

	if (kd_yaml_parse((const char *)data, size, "fuzz.yaml", &o, &err) == 0) {
		(void)json_object_to_json_string(o);
		json_object_put(o);
	} else if (!err.msg[0]) {
		__builtin_trap(); /* every failure carries a message */
	}
	o = NULL;
	kd_err_clear(&err);
	if (kd_yaml_parse_all((const char *)data, size, "fuzz.yaml", &o, &err) == 0) {
		if (!json_object_is_type(o, json_type_array))
			__builtin_trap();
		json_object_put(o);
	} else if (!err.msg[0]) {
		__builtin_trap();
	}
	return 0;
}
