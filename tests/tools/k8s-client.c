/* Test driver for lib/k8s against a real API server.
 *
 *   k8s-client KUBECONFIG get PATH                 print the object (JSON)
 *   k8s-client KUBECONFIG conflict NODE            guarded label update that provokes a 409:
 *                                                  between our GET and PATCH another write
 *                                                  changes the Node; prints "conflicts=N"
 *   k8s-client KUBECONFIG apply PATH FILE.json     server-side apply, prints the result
 *
 * Exit 0 on success, 1 with the error chain on stderr. */
#include <stdio.h>
#include <string.h>

#include "json.h"
#include "k8s.h"
#include "log.h"

typedef struct ctx {
	kd_k8s *k;
	const char *path;
	int calls;
} ctx;

static int mutate(struct json_object *node, struct json_object **ret_patch, void *ud, kd_error *err)
{
	ctx *c = ud;
	char buf[128];
	int r;

	(void)node;
	if (c->calls++ == 0) {
		/* Someone else writes in between: our resourceVersion is now stale. */
		snprintf(buf, sizeof(buf),
			 "{\"metadata\":{\"annotations\":{\"kd-test/interloper\":\"%d\"}}}",
			 c->calls);
		r = kd_k8s_request(c->k, "PATCH", c->path, "application/merge-patch+json", buf,
				   strlen(buf), NULL, err);
		if (r < 0)
			return r;
	}
	*ret_patch =
		json_tokener_parse("{\"metadata\":{\"labels\":{\"kd-test/guarded\":\"yes\"}}}");
	return *ret_patch ? 0 : kd_err(err, -ENOMEM, "out of memory");
}

int main(int argc, char **argv)
{
	_cleanup_k8s_ kd_k8s *k = NULL;
	_cleanup_json_ struct json_object *obj = NULL;
	kd_k8s_opts o = {0};
	kd_error err = {0};
	int r;

	kd_log_setup("k8s-client", getenv("KD_DEBUG") ? KD_LOG_DEBUG : KD_LOG_INFO, false);
	if (argc < 4) {
		fprintf(stderr, "usage: k8s-client KUBECONFIG get|conflict|apply ARGS\n");
		return 2;
	}
	o.kubeconfig = argv[1];
	if (kd_k8s_new(&o, &k, &err) < 0)
		goto fail;
	if (strcmp(argv[2], "get") == 0) {
		if (kd_k8s_get(k, argv[3], &obj, &err) < 0)
			goto fail;
		puts(json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN));
	} else if (strcmp(argv[2], "conflict") == 0) {
		char path[512];
		kd_k8s_stats st;
		ctx c = {k, path, 0};
		snprintf(path, sizeof(path), "/api/v1/nodes/%s", argv[3]);
		r = kd_k8s_patch_guarded(k, path, mutate, &c, NULL, &err);
		if (r < 0)
			goto fail;
		kd_k8s_get_stats(k, &st);
		printf("conflicts=%llu calls=%d\n", (unsigned long long)st.conflicts, c.calls);
	} else if (strcmp(argv[2], "apply") == 0 && argc == 5) {
		_cleanup_json_ struct json_object *in = json_object_from_file(argv[4]);
		if (!in || kd_k8s_apply(k, argv[3], in, "kd-test", true, &obj, &err) < 0)
			goto fail;
		puts(json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN));
	} else {
		fprintf(stderr, "k8s-client: unknown command %s\n", argv[2]);
		return 2;
	}
	return 0;
fail:
	fprintf(stderr, "k8s-client: %s\n", kd_err_msg(&err));
	return 1;
}
