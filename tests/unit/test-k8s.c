/* lib/k8s without a server: kubeconfig and in-cluster configuration (and their refusals), the
 * scheduler's nodeSelector / node affinity rules, Ready. Requests against a real kube-apiserver
 * are in tests/integration/test-agent.sh. */
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "k8s.h"
#include "tap.h"

static char dir[] = "/tmp/kd-test-k8s.XXXXXX";

static const char *put(const char *name, const char *data)
{
	static char path[512];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	if (f) {
		fputs(data, f);
		fclose(f);
	}
	return path;
}

static int load(const char *kc_text, kd_k8s **ret, kd_error *err)
{
	kd_k8s_opts o = {.kubeconfig = put("kubeconfig", kc_text)};
	return kd_k8s_new(&o, ret, err);
}

#define KC_HEAD                                                                                    \
	"apiVersion: v1\nkind: Config\ncurrent-context: c1\ncontexts:\n- name: c1\n  context: "    \
	"{cluster: k1, user: u1, namespace: ns1}\n"

TEST(kubeconfig_token_and_ca_data)
{
	_cleanup_k8s_ kd_k8s *k = NULL;
	kd_error err = {0};
	/* "-----BEGIN CERTIFICATE-----\n" in base64 */
	int r = load(KC_HEAD
		     "clusters:\n- name: k1\n  cluster: {server: 'https://127.0.0.1:6443/', "
		     "certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==}\n"
		     "users:\n- name: u1\n  user: {token: abc}\n",
		     &k, &err);
	CHECK_INT(r, 0);
	if (r < 0) {
		printf("# %s\n", kd_err_msg(&err));
		return;
	}
	CHECK_STR(kd_k8s_server(k), "https://127.0.0.1:6443");
	CHECK_STR(kd_k8s_namespace(k), "ns1");
	CHECK(strstr(kd_k8s_source(k), "context c1") != NULL);
}

TEST(kubeconfig_refusals)
{
	static const struct {
		const char *text, *want;
	} cases[] = {
		{KC_HEAD
		 "clusters:\n- name: k1\n  cluster: {server: 'https://h', "
		 "insecure-skip-tls-verify: true}\nusers:\n- name: u1\n  user: {token: t}\n",
		 "insecure-skip-tls-verify is refused"},
		{KC_HEAD "clusters:\n- name: k1\n  cluster: {server: 'http://h'}\nusers:\n- name: "
			 "u1\n  user: {token: t}\n",
		 "is not https://"},
		{KC_HEAD "clusters:\n- name: k1\n  cluster: {server: 'https://h'}\nusers:\n- name: "
			 "u1\n  user: {exec: {command: x}}\n",
		 "'exec' is not supported"},
		{KC_HEAD "clusters:\n- name: k1\n  cluster: {server: 'https://h'}\nusers:\n- name: "
			 "u1\n  user: {client-certificate: c.pem}\n",
		 "needs both client-certificate and client-key"},
		{KC_HEAD "clusters:\n- name: k2\n  cluster: {server: 'https://h'}\n",
		 "no cluster named 'k1'"},
		{"apiVersion: v1\ncurrent-context: nope\ncontexts: []\n",
		 "no context named 'nope'"},
		{KC_HEAD
		 "clusters:\n- name: k1\n  cluster: {server: 'https://h', "
		 "certificate-authority-data: '!!!'}\nusers:\n- name: u1\n  user: {token: t}\n",
		 "not valid base64"},
	};
	for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
		_cleanup_k8s_ kd_k8s *k = NULL;
		kd_error err = {0};
		int r = load(cases[i].text, &k, &err);
		CHECK(r < 0);
		if (!strstr(kd_err_msg(&err), cases[i].want)) {
			printf("#   case %zu: got '%s', want '%s'\n", i, kd_err_msg(&err),
			       cases[i].want);
			CHECK(0);
		}
	}
}

TEST(kubeconfig_relative_files)
{
	_cleanup_k8s_ kd_k8s *k = NULL;
	kd_error err = {0};
	put("tok", "  secret-token\n");
	int r = load(KC_HEAD "clusters:\n- name: k1\n  cluster: {server: 'https://h:1', "
			     "certificate-authority: ca.crt}\nusers:\n- name: u1\n  user: "
			     "{tokenFile: tok}\n",
		     &k, &err);
	CHECK_INT(r, 0);
	if (r < 0)
		printf("# %s\n", kd_err_msg(&err));
	put("kubeconfig", KC_HEAD "clusters:\n- name: k1\n  cluster: {server: 'https://h:1'}\n"
				  "users:\n- name: u1\n  user: {tokenFile: missing}\n");
	kd_k8s_free(k);
	k = NULL;
	kd_k8s_opts o = {.kubeconfig =
				 put("kubeconfig2", KC_HEAD
				     "clusters:\n- name: k1\n  cluster: {server: 'https://h:1'}\n"
				     "users:\n- name: u1\n  user: {tokenFile: missing}\n")};
	r = kd_k8s_new(&o, &k, &err);
	CHECK_INT(r, -ENOENT);
	CHECK(strstr(kd_err_msg(&err), "missing") != NULL);
}

TEST(in_cluster)
{
	_cleanup_k8s_ kd_k8s *k = NULL;
	kd_error err = {0};
	char sa[600];
	kd_k8s_opts o = {.sa_dir = sa, .in_cluster = true};

	snprintf(sa, sizeof(sa), "%s/sa", dir);
	unsetenv("KUBERNETES_SERVICE_HOST");
	CHECK(kd_k8s_new(&o, &k, &err) == -ENOENT);
	CHECK(strstr(kd_err_msg(&err), "KUBERNETES_SERVICE_HOST is not set") != NULL);
	setenv("KUBERNETES_SERVICE_HOST", "fd00::1", 1);
	setenv("KUBERNETES_SERVICE_PORT", "6443", 1);
	CHECK(kd_k8s_new(&o, &k, &err) < 0); /* no files yet */
	char cmd[700];
	snprintf(cmd, sizeof(cmd), "mkdir -p %s", sa);
	CHECK(system(cmd) == 0);
	put("sa/ca.crt", "x");
	put("sa/token", "tok\n");
	put("sa/namespace", "kube-system\n");
	CHECK_INT(kd_k8s_new(&o, &k, &err), 0);
	if (k) {
		CHECK_STR(kd_k8s_server(k), "https://[fd00::1]:6443");
		CHECK_STR(kd_k8s_namespace(k), "kube-system");
	}
	unsetenv("KUBERNETES_SERVICE_HOST");
}

static bool selects(const char *spec, const char *node)
{
	_cleanup_json_ struct json_object *s = json_tokener_parse(spec),
					  *n = json_tokener_parse(node);
	bool ret = false;
	kd_error err = {0};
	if (kd_k8s_pod_spec_selects_node(s, n, &ret, &err) < 0) {
		printf("#   error: %s\n", kd_err_msg(&err));
		return false;
	}
	return ret;
}

#define NODE "{\"metadata\":{\"name\":\"n1\",\"labels\":{\"os\":\"linux\",\"gen\":\"5\"}}}"

TEST(node_selection)
{
	CHECK(selects("{}", NODE));
	CHECK(selects("{\"nodeSelector\":{\"os\":\"linux\"}}", NODE));
	CHECK(!selects("{\"nodeSelector\":{\"os\":\"windows\"}}", NODE));
	CHECK(!selects("{\"nodeSelector\":{\"missing\":\"x\"}}", NODE));
#define AFF(terms)                                                                                 \
	"{\"affinity\":{\"nodeAffinity\":{\"requiredDuringSchedulingIgnoredDuringExecution\":{"    \
	"\"nodeSelectorTerms\":" terms "}}}}"
	CHECK(selects(AFF("[{\"matchExpressions\":[{\"key\":\"os\",\"operator\":\"In\","
			  "\"values\":[\"linux\"]}]}]"),
		      NODE));
	CHECK(!selects(AFF("[{\"matchExpressions\":[{\"key\":\"os\",\"operator\":\"NotIn\","
			   "\"values\":[\"linux\"]}]}]"),
		       NODE));
	CHECK(selects(AFF("[{\"matchExpressions\":[{\"key\":\"x\",\"operator\":\"DoesNotExist\"}]},"
			  "{\"matchExpressions\":[]}]"),
		      NODE));
	CHECK(!selects(AFF("[{}]"), NODE)); /* an empty term matches nothing */
	CHECK(selects(AFF("[{\"matchExpressions\":[{\"key\":\"gen\",\"operator\":\"Gt\","
			  "\"values\":[\"4\"]}]}]"),
		      NODE));
	CHECK(!selects(AFF("[{\"matchExpressions\":[{\"key\":\"gen\",\"operator\":\"Lt\","
			   "\"values\":[\"4\"]}]}]"),
		       NODE));
	CHECK(selects(AFF("[{\"matchFields\":[{\"key\":\"metadata.name\",\"operator\":\"In\","
			  "\"values\":[\"n1\"]}]}]"),
		      NODE));
	CHECK(!selects(AFF("[{\"matchFields\":[{\"key\":\"metadata.name\",\"operator\":\"In\","
			   "\"values\":[\"n2\"]}]},{\"matchExpressions\":[{\"key\":\"os\","
			   "\"operator\":\"Exists\"},{\"key\":\"gen\",\"operator\":\"In\","
			   "\"values\":[\"6\"]}]}]"),
		       NODE));
	CHECK(!selects(AFF("[{\"matchExpressions\":[{\"key\":\"os\",\"operator\":\"Bogus\"}]}]"),
		       NODE));
}

TEST(ready)
{
	_cleanup_json_ struct json_object *a = json_tokener_parse(
		"{\"status\":{\"conditions\":[{\"type\":\"MemoryPressure\",\"status\":\"False\"},"
		"{\"type\":\"Ready\",\"status\":\"True\"}]}}");
	_cleanup_json_ struct json_object *b = json_tokener_parse(
		"{\"status\":{\"conditions\":[{\"type\":\"Ready\",\"status\":\"Unknown\"}]}}");
	CHECK(kd_k8s_node_ready(a));
	CHECK(!kd_k8s_node_ready(b));
}

TEST(escape)
{
	char buf[32];
	CHECK_INT(kd_k8s_escape("a b/c", buf, sizeof(buf)), 0);
	CHECK_STR(buf, "a%20b%2Fc");
	CHECK(kd_k8s_escape("abcdef", buf, 4) < 0);
}

int main(void)
{
	if (!mkdtemp(dir))
		return 1;
	unsetenv("KUBECONFIG");
	RUN(kubeconfig_token_and_ca_data);
	RUN(kubeconfig_refusals);
	RUN(kubeconfig_relative_files);
	RUN(in_cluster);
	RUN(node_selection);
	RUN(ready);
	RUN(escape);
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		printf("# cleanup failed\n");
	TAP_END();
}
