/* Fuzz the payload manifest reader: anything it accepts must serialise to what the json-c
 * canonical writer prints for the same document, and parse back to the same bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/json.h"
#include "lib/payload.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	kd_error err = {0};
	kd_manifest *m = NULL, *m2 = NULL;
	char *json = NULL, *json2 = NULL, *ref = NULL;
	struct json_object *tree = NULL;
	bool mask[64];

	if (kd_manifest_parse((const char *)data, size, &m, &err) < 0)
		return 0;
	if (kd_manifest_to_json(m, &json, &err) < 0 ||
	    kd_manifest_parse(json, strlen(json), &m2, &err) < 0 ||
	    kd_manifest_to_json(m2, &json2, &err) < 0 || strcmp(json, json2) != 0)
		abort();
	if (kd_json_parse(json, strlen(json), "canonical", &tree, &err) < 0 ||
	    kd_json_format(tree, KD_JSON_CANONICAL, &ref, NULL, &err) < 0 || strcmp(json, ref) != 0)
		abort();
	for (size_t i = 0; i < m->n_files; i++)
		if (kd_manifest_find(m, m->files[i].path) != &m->files[i])
			abort();
	if (m->n_components <= 64)
		(void)kd_manifest_select(m, NULL, 0, mask, &err);
	json_object_put(tree);
	free(ref);
	free(json);
	free(json2);
	kd_manifest_free(m);
	kd_manifest_free(m2);
	return 0;
}
