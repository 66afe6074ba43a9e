/* node-agent without a server: the settings table (defaults, empty values, every refusal names
 * the variable, the value and what is allowed), handler and owner-label names, and runtime
 * detection from containerRuntimeVersion plus systemd units in a temp host root. The flows that
 * talk to the API are in tests/integration/test-agent.sh. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsroot.h"
#include "log.h"
#include "node-agent/detect.h"
#include "node-agent/settings.h"
#include "strv.h"
#include "tap.h"

static char arch[16];

/* Clear the environment, set NAME=value pairs ("<ARCH>" replaced), load for action. */
static int load(kd_agent_settings *s, kd_error *err, const char *action, ...)
{
	va_list ap;
	const char *kv;

	clearenv();
	va_start(ap, action);
	while ((kv = va_arg(ap, const char *))) {
		char name[128];
		const char *eq = strchr(kv, '='), *a = strstr(kv, "<ARCH>");
		if (a && a < eq)
			snprintf(name, sizeof(name), "%.*s%s%.*s", (int)(a - kv), kv, arch,
				 (int)(eq - a - 6), a + 6);
		else
			snprintf(name, sizeof(name), "%.*s", (int)(eq - kv), kv);
		setenv(name, eq + 1, 1);
	}
	va_end(ap);
	kd_err_clear(err);
	return kd_agent_settings_load(s, action, err);
}

/* The load must fail and its message contain want ("<ARCH>" replaced). */
static void refused(const char *want, const char *kv1, const char *kv2)
{
	kd_agent_settings s;
	kd_error err = {0};
	char w[512];
	size_t o = 0;
	int r;

	for (const char *p = want; *p && o < sizeof(w) - 1;)
		if (strncmp(p, "<ARCH>", 6) == 0) {
			o += (size_t)snprintf(w + o, sizeof(w) - o, "%s", arch);
			p += 6;
		} else
			w[o++] = *p++;
	w[o < sizeof(w) ? o : sizeof(w) - 1] = '\0';
	r = load(&s, &err, "install", "NODE_NAME=n1", kv1, kv2, NULL);
	CHECK_INT(r, -EINVAL);
	if (!strstr(kd_err_msg(&err), w)) {
		printf("#   got \"%s\"\n#   want \"%s\"\n", kd_err_msg(&err), w);
		tap_cur_failed = 1;
	}
	kd_agent_settings_free(&s);
}

TEST(defaults)
{
	kd_agent_settings s;
	kd_error err = {0};

	CHECK_INT(load(&s, &err, "install", "NODE_NAME=n1", NULL), 0);
	CHECK_STR(s.node_name, "n1");
	CHECK_STR(s.daemonset_name, "kata-deploy");
	CHECK_STR(s.host_root, "/host");
	CHECK_STR(s.host_check_root, "/");
	CHECK_STR(s.payload, KD_AGENT_DEFAULT_PAYLOAD);
	CHECK_STR(s.runtime_restart, "systemd");
	CHECK_INT(s.health_port, 8090);
	CHECK_INT(s.node_ready_timeout_s, 300);
	CHECK_INT(s.poll_interval_ms, 2000);
	CHECK_INT(s.api_retries, 8);
	CHECK(s.host_check);
	CHECK(!s.debug);
	CHECK_INT(kd_strv_length(s.shims), 1);
	CHECK_STR(s.shims[0], "qemu");
	CHECK_STR(s.default_shim, "qemu");
	CHECK_INT(kd_strv_length(s.startup_taints), 0);
	kd_agent_settings_free(&s);
}

/* The chart passes every variable, empty when unset: empty scalars mean the default, an empty
 * list is an empty list. */
TEST(empty_values)
{
	kd_agent_settings s;
	kd_error err = {0};

	CHECK_INT(load(&s, &err, "install", "NODE_NAME=n1", "HEALTH_PORT=", "DEBUG=",
		       "RUNTIME_RESTART=", "STARTUP_TAINTS=", "DEFAULT_SHIM_<ARCH>=", NULL),
		  0);
	CHECK_INT(s.health_port, 8090);
	CHECK_STR(s.runtime_restart, "systemd");
	CHECK_INT(kd_strv_length(s.startup_taints), 0);
	kd_agent_settings_free(&s);
	refused("SHIMS_<ARCH> is empty: enable at least one shim", "SHIMS_<ARCH>=", NULL);
}

TEST(values)
{
	kd_agent_settings s;
	kd_error err = {0};
	char owner[128];
	_cleanup_strv_ char **h = NULL;

	CHECK_INT(load(&s, &err, "install", "NODE_NAME=n1", "SHIMS_<ARCH>=qemu  clh\tfc",
		       "DEFAULT_SHIM_<ARCH>=clh", "MULTI_INSTALL_SUFFIX=blue-2", "DEBUG=yes",
		       "STARTUP_TAINTS=a.example/x:NoSchedule, b.example/y c:NoExecute",
		       "SNAPSHOTTER_HANDLER_MAPPING_<ARCH>=clh:nydus,fc:devmapper",
		       "PULL_TYPE_MAPPING_<ARCH>=qemu:guest-pull",
		       "ALLOWED_HYPERVISOR_ANNOTATIONS_<ARCH>=default_vcpus clh:kernel_params",
		       "AGENT_HTTPS_PROXY=qemu=http://p:3128;clh=http://q:3128",
		       "RUNTIME_RESTART=command:systemctl restart containerd", "HEALTH_PORT=0",
		       "POLL_INTERVAL_MS=10", NULL),
		  0);
	CHECK_INT(kd_strv_length(s.shims), 3);
	CHECK_STR(s.shims[2], "fc");
	CHECK_STR(s.default_shim, "clh");
	CHECK(s.debug);
	CHECK_INT(s.health_port, 0);
	CHECK_INT(s.poll_interval_ms, 10);
	CHECK_INT(kd_strv_length(s.startup_taints), 3);
	CHECK_STR(s.startup_taints[1], "b.example/y");
	CHECK_INT(kd_strv_length(s.snapshotter_mapping), 2);
	CHECK_INT(kd_strv_length(s.allowed_hypervisor_annotations), 2);
	/* DEBUG adds a -debug handler after each shim's own. */
	h = kd_agent_handlers(&s, NULL);
	CHECK(h && kd_strv_length(h) == 6);
	if (h && kd_strv_length(h) == 6) {
		CHECK_STR(h[1], "kata-qemu-blue-2-debug");
		CHECK_STR(h[2], "kata-clh-blue-2");
	}
	kd_agent_owner_label(&s, owner, sizeof(owner));
	CHECK_STR(owner, "kata-deploy.katacontainers.io/blue-2");
	kd_agent_settings_free(&s);

	CHECK_INT(load(&s, &err, "install", "NODE_NAME=n1", "DEBUG=true", "DEVKIT=true", NULL), 0);
	CHECK(s.devkit);
	kd_strv_free(h);
	h = kd_agent_handlers(&s, NULL);
	CHECK(h && kd_strv_length(h) == 3);
	if (h && kd_strv_length(h) == 3) {
		CHECK_STR(h[0], "kata-qemu");
		CHECK_STR(h[1], "kata-qemu-debug");
		CHECK_STR(h[2], "kata-qemu-devkit");
	}
	kd_agent_settings_free(&s);

	CHECK_INT(load(&s, &err, "install", "NODE_NAME=n1", NULL), 0);
	CHECK(!s.devkit);
	kd_agent_owner_label(&s, owner, sizeof(owner));
	CHECK_STR(owner, "kata-deploy.katacontainers.io/default");
	kd_agent_settings_free(&s);
}

/* CUSTOM_RUNTIMES_ENABLED: the list is read at load; its handlers are waited for. */
TEST(custom_runtimes)
{
	kd_agent_settings s;
	kd_error err = {0};
	char dir[] = "/tmp/kd-agent-cc-XXXXXX", path[64], env[96];
	_cleanup_strv_ char **h = NULL;
	CHECK(mkdtemp(dir) != NULL);
	snprintf(path, sizeof(path), "%s/custom-runtimes.list", dir);
	FILE *f = fopen(path, "w");
	if (f) {
		fputs("kata-mine:qemu:nydus:\n", f);
		fclose(f);
	}
	snprintf(env, sizeof(env), "CUSTOM_CONFIGS_DIR=%s", dir);
	CHECK_INT(load(&s, &err, "install", "NODE_NAME=n1", "CUSTOM_RUNTIMES_ENABLED=true", env,
		       NULL),
		  0);
	h = kd_agent_handlers(&s, NULL);
	CHECK(h && kd_strv_length(h) == 2);
	if (h && kd_strv_length(h) == 2)
		CHECK_STR(h[1], "kata-mine");
	/* Its base shim not installed (not in the payload): not waited for either. */
	{
		char *none_of_qemu[] = {"clh", NULL};
		_cleanup_strv_ char **h2 = kd_agent_handlers(&s, none_of_qemu);
		CHECK(h2 && kd_strv_length(h2) == 1);
		if (h2 && h2[0])
			CHECK_STR(h2[0], "kata-clh");
	}
	kd_agent_settings_free(&s);
	/* The list is not read when disabled. */
	CHECK_INT(load(&s, &err, "install", "NODE_NAME=n1", env, NULL), 0);
	kd_strv_free(h);
	h = kd_agent_handlers(&s, NULL);
	CHECK(h && kd_strv_length(h) == 1);
	kd_agent_settings_free(&s);
	/* A base shim that is not enabled, a bad line: refused before anything happens. */
	CHECK(load(&s, &err, "install", "NODE_NAME=n1", "CUSTOM_RUNTIMES_ENABLED=true", env,
		   "SHIMS_<ARCH>=clh", NULL) < 0);
	CHECK(strstr(kd_err_msg(&err), "base shim 'qemu' is not in SHIMS_") != NULL);
	kd_agent_settings_free(&s);
	f = fopen(path, "w");
	if (f) {
		fputs("kata mine:qemu\n", f);
		fclose(f);
	}
	CHECK(load(&s, &err, "install", "NODE_NAME=n1", "CUSTOM_RUNTIMES_ENABLED=true", env, NULL) <
	      0);
	CHECK(strstr(kd_err_msg(&err), "custom-runtimes.list:1: handler 'kata mine'") != NULL);
	kd_agent_settings_free(&s);
	unlink(path);
	rmdir(dir);
}

/* Upstream 4.1.0's values.yaml enables these on x86_64 (its shims.*.enabled: ~): all load. */
TEST(upstream_41_shims)
{
	kd_agent_settings s;
	kd_error err = {0};
	char label[256];
	char *installed[] = {"clh-azure", "qemu", NULL};
	_cleanup_strv_ char **h = NULL;

	CHECK_INT(
		load(&s, &err, "install", "NODE_NAME=n1",
		     "SHIMS_<ARCH>=clh clh-azure clh-azure-runtime-rs clh-runtime-rs dragonball fc "
		     "openvmm-azure-runtime-rs qemu qemu-coco-dev qemu-coco-dev-runtime-rs "
		     "qemu-nvidia-cpu qemu-nvidia-cpu-runtime-rs qemu-nvidia-gpu "
		     "qemu-nvidia-gpu-runtime-rs qemu-nvidia-gpu-snp qemu-nvidia-gpu-snp-runtime-rs "
		     "qemu-nvidia-gpu-tdx qemu-nvidia-gpu-tdx-runtime-rs qemu-runtime-rs qemu-snp "
		     "qemu-snp-runtime-rs qemu-tdx qemu-tdx-runtime-rs",
		     "DEFAULT_SHIM_<ARCH>=qemu-runtime-rs", NULL),
		0);
	if (err.msg[0])
		printf("# %s\n", kd_err_msg(&err));
	CHECK_INT(kd_strv_length(s.shims), 23);
	/* Only the installed shims' handlers are waited for. */
	h = kd_agent_handlers(&s, installed);
	CHECK(h && kd_strv_length(h) == 2);
	if (h && kd_strv_length(h) == 2)
		CHECK_STR(h[0], "kata-clh-azure");
	kd_agent_shim_label(&s, "qemu-nvidia-gpu-snp-runtime-rs", label, sizeof(label));
	CHECK_STR(label,
		  "handler.kata-deploy.katacontainers.io/kata-qemu-nvidia-gpu-snp-runtime-rs");
	kd_agent_settings_free(&s);
	CHECK_INT(load(&s, &err, "install", "NODE_NAME=n1", "MULTI_INSTALL_SUFFIX=abcdefghijklmnop",
		       NULL),
		  0);
	/* The longest shim with the longest suffix still fits a label name (63). */
	kd_agent_shim_label(&s, "qemu-nvidia-gpu-snp-runtime-rs", label, sizeof(label));
	CHECK(strlen(strchr(label, '/') + 1) <= 63);
	kd_agent_settings_free(&s);
}

/* Upstream's snapshotter variables: EROFS_DMVERITY takes upstream's "dmverity". */
TEST(snapshotters)
{
	kd_agent_settings s;
	kd_error err = {0};

	CHECK_INT(load(&s, &err, "install", "NODE_NAME=n1", "SHIMS_<ARCH>=qemu clh",
		       "EXPERIMENTAL_SETUP_SNAPSHOTTER=nydus,erofs", "EROFS_MERGE_MODE=unmerged",
		       "EROFS_SNAPSHOTTER_MODE=memory", "EROFS_DMVERITY=dmverity",
		       "EXPERIMENTAL_FORCE_GUEST_PULL_<ARCH>=clh,qemu", NULL),
		  0);
	CHECK_INT(kd_strv_length(s.setup_snapshotter), 2);
	CHECK_STR(s.setup_snapshotter[1], "erofs");
	CHECK_STR(s.erofs_merge_mode, "unmerged");
	CHECK_STR(s.erofs_snapshotter_mode, "memory");
	CHECK(s.erofs_dmverity);
	CHECK_INT(kd_strv_length(s.force_guest_pull), 2);
	kd_agent_settings_free(&s);
	/* Empty (as the chart passes unset values): the defaults. */
	CHECK_INT(load(&s, &err, "install", "NODE_NAME=n1", "EXPERIMENTAL_SETUP_SNAPSHOTTER=",
		       "EROFS_MERGE_MODE=", "EROFS_SNAPSHOTTER_MODE=", "EROFS_DMVERITY=", NULL),
		  0);
	CHECK_INT(kd_strv_length(s.setup_snapshotter), 0);
	CHECK_STR(s.erofs_merge_mode, "merged");
	CHECK_STR(s.erofs_snapshotter_mode, "disk");
	CHECK(!s.erofs_dmverity);
	kd_agent_settings_free(&s);
	refused("EXPERIMENTAL_SETUP_SNAPSHOTTER: 'overlayfs' is not a supported snapshotter",
		"EXPERIMENTAL_SETUP_SNAPSHOTTER=overlayfs", NULL);
	refused("EROFS_MERGE_MODE=half", "EROFS_MERGE_MODE=half", NULL);
	refused("EROFS_SNAPSHOTTER_MODE=tmpfs", "EROFS_SNAPSHOTTER_MODE=tmpfs", NULL);
	refused("EROFS_DMVERITY=yes: use dmverity", "EROFS_DMVERITY=yes", NULL);
	refused("EXPERIMENTAL_FORCE_GUEST_PULL_<ARCH>: shim 'clh' is not among the enabled shims",
		"EXPERIMENTAL_FORCE_GUEST_PULL_<ARCH>=clh", NULL);
}

TEST(node_name_required_except_for_wait)
{
	kd_agent_settings s;
	kd_error err = {0};

	CHECK_INT(load(&s, &err, "install", NULL), -EINVAL);
	CHECK(strstr(kd_err_msg(&err), "NODE_NAME is not set") != NULL);
	kd_agent_settings_free(&s);
	CHECK_INT(load(&s, &err, "wait", NULL), 0);
	kd_agent_settings_free(&s);
}

TEST(oci_payload)
{
	kd_agent_settings s;
	kd_error err = {0};
	CHECK_INT(
		load(&s, &err, "install", "NODE_NAME=n1", "PAYLOAD=oci://reg:5000/kata/p:v1",
		     "PAYLOAD_PLAIN_HTTP=true", "PAYLOAD_REGISTRY_AUTH=/etc/auth/.dockerconfigjson",
		     "PAYLOAD_SHA256=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		     NULL),
		0);
	CHECK(s.payload_plain_http);
	CHECK_STR(s.payload_registry_auth, "/etc/auth/.dockerconfigjson");
	kd_agent_settings_free(&s);
	refused("a payload pulled over plain http must be pinned", "PAYLOAD=oci://reg/kata/p:v1",
		"PAYLOAD_PLAIN_HTTP=true");
	refused("are for an oci:// PAYLOAD", "PAYLOAD_PLAIN_HTTP=true", NULL);
	refused("are for an oci:// PAYLOAD", "PAYLOAD_REGISTRY_AUTH=/x", NULL);
}

TEST(refusals)
{
	refused("DEFAULT_SHIM_<ARCH>=clh: not among the enabled shims (SHIMS_<ARCH>=qemu)",
		"DEFAULT_SHIM_<ARCH>=clh", NULL);
	refused("DEFAULT_SHIM_<ARCH>=fc: not among the enabled shims (SHIMS_<ARCH>=qemu clh)",
		"DEFAULT_SHIM_<ARCH>=fc", "SHIMS_<ARCH>=qemu clh");
	refused("SHIMS_<ARCH>: unknown shim 'qemuu' (known: clh, clh-azure, ",
		"SHIMS_<ARCH>=qemu qemuu", NULL);
	refused("SHIMS_<ARCH>: unknown shim 'firecracker': upstream kata-deploy 4.x calls it 'fc'",
		"SHIMS_<ARCH>=qemu firecracker", NULL);
	refused("HEALTH_PORT=70000: not an integer in 0..65535", "HEALTH_PORT=70000", NULL);
	refused("POLL_INTERVAL_MS=5x: not an integer in 10..600000", "POLL_INTERVAL_MS=5x", NULL);
	refused("DEBUG=maybe: not a boolean; use true or false", "DEBUG=maybe", NULL);
	refused("DEVKIT=true needs DEBUG=true", "DEVKIT=true", NULL);
	refused("K8S_DISTRIBUTION=k9s: not allowed; use one of: (empty)|k8s|k3s|rke2|k0s|microk8s",
		"K8S_DISTRIBUTION=k9s", NULL);
	refused("MULTI_INSTALL_SUFFIX=Blue: use 1-16 lowercase letters",
		"MULTI_INSTALL_SUFFIX=Blue", NULL);
	refused("MULTI_INSTALL_SUFFIX=-a: use 1-16", "MULTI_INSTALL_SUFFIX=-a", NULL);
	refused("MULTI_INSTALL_SUFFIX=abcdefghijklmnopq: use 1-16",
		"MULTI_INSTALL_SUFFIX=abcdefghijklmnopq", NULL);
	refused("INSTALLATION_PREFIX=opt/x: must be an absolute path without '..'",
		"INSTALLATION_PREFIX=opt/x", NULL);
	refused("INSTALLATION_PREFIX=/a/../b: must be an absolute path",
		"INSTALLATION_PREFIX=/a/../b", NULL);
	refused("HOST_ROOT=host: must be an absolute path", "HOST_ROOT=host", NULL);
	refused("HOST_CHECK_ROOT=proc: must be an absolute path", "HOST_CHECK_ROOT=proc", NULL);
	refused("STARTUP_TAINTS: 'k:NoRun' is not key[:effect]", "STARTUP_TAINTS=k:NoRun", NULL);
	refused("STARTUP_TAINTS: ':NoSchedule' is not key[:effect]", "STARTUP_TAINTS=:NoSchedule",
		NULL);
	refused("RUNTIME_RESTART=reboot: use systemd, none or command:<shell command>",
		"RUNTIME_RESTART=reboot", NULL);
	refused("RUNTIME_RESTART=command:: use systemd", "RUNTIME_RESTART=command:", NULL);
	refused("PAYLOAD_SHA256=ABC: not 64 lowercase hex digits", "PAYLOAD_SHA256=ABC", NULL);
	refused("SNAPSHOTTER_HANDLER_MAPPING_<ARCH>: entry 'clh:nydus' names shim 'clh', which is "
		"not enabled (SHIMS_<ARCH>)",
		"SNAPSHOTTER_HANDLER_MAPPING_<ARCH>=clh:nydus", NULL);
	refused("SNAPSHOTTER_HANDLER_MAPPING_<ARCH>: entry 'nydus' is not shim:value",
		"SNAPSHOTTER_HANDLER_MAPPING_<ARCH>=nydus", NULL);
	refused("SNAPSHOTTER_HANDLER_MAPPING_<ARCH>: entry 'qemu:' has an empty value",
		"SNAPSHOTTER_HANDLER_MAPPING_<ARCH>=qemu:", NULL);
	refused("PULL_TYPE_MAPPING_<ARCH>: entry 'qemu:local': value 'local' is not allowed; use "
		"guest-pull",
		"PULL_TYPE_MAPPING_<ARCH>=qemu:local", NULL);
	refused("ALLOWED_HYPERVISOR_ANNOTATIONS_<ARCH>: entry 'fc:x' names shim 'fc'",
		"ALLOWED_HYPERVISOR_ANNOTATIONS_<ARCH>=fc:x", NULL);
	refused("AGENT_HTTPS_PROXY: entry 'clh=http://p' names shim 'clh'",
		"AGENT_HTTPS_PROXY=qemu=http://q;clh=http://p", NULL);
	refused("AGENT_NO_PROXY: entry 'qemu=' has an empty value", "AGENT_NO_PROXY=qemu=", NULL);
	/* Issue 14: a space went into the guest kernel's command line as parameters of its own. */
	refused("AGENT_HTTPS_PROXY 'http://p:3128 init=/bin/sh' contains a space at byte 14",
		"AGENT_HTTPS_PROXY=http://p:3128 init=/bin/sh", NULL);
	refused("AGENT_NO_PROXY 'qemu=a\tb' contains a control character",
		"AGENT_NO_PROXY=qemu=a\tb", NULL);
	refused("HEALTH_ADDRESS=not-an-ip: not an IPv4 address", "HEALTH_ADDRESS=not-an-ip", NULL);
	refused("NODE_READY_TIMEOUT=0: not an integer in 1..86400", "NODE_READY_TIMEOUT=0", NULL);
	refused("LOG_LEVEL=verbose: not allowed; use one of: (empty)|error|warn|info|debug|trace",
		"LOG_LEVEL=verbose", NULL);
	refused("CONTAINERD_CONFIG_FILE_NAME=../etc/shadow: must be a file name in /etc/containerd",
		"CONTAINERD_CONFIG_FILE_NAME=../etc/shadow", NULL);
	refused("CONTAINERD_CONFIG_FILE_NAME=..: must be a file name",
		"CONTAINERD_CONFIG_FILE_NAME=..", NULL);
	refused("CONTAINERD_USER_DROP_IN_SOURCE_FILE=x.toml: must be an absolute path",
		"CONTAINERD_USER_DROP_IN_SOURCE_FILE=x.toml", NULL);
}

/* Upstream's --log-level (LOG_LEVEL): it wins over DEBUG; empty: debug with DEBUG, else info. */
TEST(log_level)
{
	static const struct {
		const char *level, *debug;
		int want;
	} cases[] = {
		{"", "false", KD_LOG_INFO},	  {"", "true", KD_LOG_DEBUG},
		{"warn", "true", KD_LOG_WARNING}, {"error", "false", KD_LOG_ERROR},
		{"info", "true", KD_LOG_INFO},	  {"trace", "false", KD_LOG_DEBUG},
		{"debug", "false", KD_LOG_DEBUG},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		kd_agent_settings s;
		kd_error err = {0};
		char l[64], d[64];
		snprintf(l, sizeof(l), "LOG_LEVEL=%s", cases[i].level);
		snprintf(d, sizeof(d), "DEBUG=%s", cases[i].debug);
		CHECK_INT(load(&s, &err, "install", "NODE_NAME=n1", l, d, NULL), 0);
		CHECK_INT(kd_agent_log_level(&s), cases[i].want);
		kd_agent_settings_free(&s);
	}
	kd_agent_settings s;
	kd_error err = {0};
	CHECK_INT(load(&s, &err, "install", "NODE_NAME=n1",
		       "CONTAINERD_CONFIG_FILE_NAME=config.v2.toml", NULL),
		  0);
	CHECK_STR(s.containerd_config_file_name, "config.v2.toml");
	kd_agent_settings_free(&s);
}

TEST(value_limit)
{
	char *big = malloc(KD_AGENT_VALUE_MAX + 32);
	CHECK(big != NULL);
	if (!big)
		return;
	snprintf(big, 32, "PAYLOAD=");
	memset(big + 8, 'a', KD_AGENT_VALUE_MAX + 1);
	big[8 + KD_AGENT_VALUE_MAX + 1] = '\0';
	refused("PAYLOAD: value longer than 4096 bytes", big, NULL);
	free(big);
}

/* ---- detection */

static char root[] = "/tmp/kd-test-agent-detect.XXXXXX";

static void touch(const char *rel)
{
	char p[512], cmd[1200];
	snprintf(p, sizeof(p), "%s/%s", root, rel);
	snprintf(cmd, sizeof(cmd), "mkdir -p \"$(dirname '%s')\" && : >'%s'", p, p);
	CHECK_INT(system(cmd), 0);
}

static void enable(const char *unit)
{
	char p[512], cmd[1200];
	snprintf(p, sizeof(p), "%s/etc/systemd/system/multi-user.target.wants/%s", root, unit);
	snprintf(cmd, sizeof(cmd),
		 "mkdir -p \"$(dirname '%s')\" && ln -sf /lib/systemd/system/%s '%s'", p, unit, p);
	CHECK_INT(system(cmd), 0);
}

static void reset_root(void)
{
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s' && mkdir -p '%s'", root, root);
	CHECK_INT(system(cmd), 0);
}

static int detect(const char *rv, const char *dist, kd_agent_runtime *rt, kd_error *err)
{
	kd_error e = {0};
	_cleanup_close_ int fd = kd_root_open(root, &e);
	kd_err_clear(err);
	if (fd < 0)
		return fd;
	return kd_agent_detect(fd, rv, dist, rt, err);
}

TEST(detect_plain_runtimes)
{
	kd_agent_runtime rt;
	kd_error err = {0};

	reset_root();
	CHECK_INT(detect("containerd://1.7.2", "", &rt, &err), 0);
	CHECK_STR(rt.id, "containerd");
	CHECK_STR(rt.unit, "containerd.service");
	CHECK_STR(rt.version, "1.7.2");
	CHECK_INT(detect("cri-o://1.30.1", "", &rt, &err), 0);
	CHECK_STR(rt.id, "crio");
	CHECK_STR(rt.unit, "crio.service");
	/* CRI-O goes with any declared distribution. */
	CHECK_INT(detect("cri-o://1.30.1", "k8s", &rt, &err), 0);
	CHECK_INT(detect("containerd://2.0.0", "k8s", &rt, &err), 0);
}

TEST(detect_distributions)
{
	kd_agent_runtime rt;
	kd_error err = {0};

	reset_root();
	touch("etc/systemd/system/k3s.service");
	CHECK_INT(detect("containerd://1.7.2-k3s1", "", &rt, &err), 0);
	CHECK_STR(rt.id, "k3s");
	CHECK_STR(rt.unit, "k3s.service");
	CHECK_STR(rt.evidence, "containerd://1.7.2-k3s1, unit k3s.service present");
	CHECK_INT(detect("containerd://1.7.2-k3s1", "k8s", &rt, &err), -EINVAL);
	CHECK_STR(kd_err_msg(&err),
		  "K8S_DISTRIBUTION=k8s does not match this node: detected k3s "
		  "(containerd://1.7.2-k3s1, unit k3s.service present); set K8S_DISTRIBUTION=k3s "
		  "(chart value k8sDistribution)");

	/* rke2 installs both units; the enabled one wins. */
	reset_root();
	touch("usr/lib/systemd/system/rke2-server.service");
	touch("usr/lib/systemd/system/rke2-agent.service");
	enable("rke2-server.service");
	CHECK_INT(detect("containerd://1.7.11-k3s2", "rke2", &rt, &err), 0);
	CHECK_STR(rt.id, "rke2-server");
	CHECK_STR(rt.evidence, "containerd://1.7.11-k3s2, unit rke2-server.service enabled");

	reset_root();
	touch("lib/systemd/system/k0sworker.service");
	CHECK_INT(detect("containerd://1.7.2", "k0s", &rt, &err), 0);
	CHECK_STR(rt.id, "k0s-worker");
	CHECK_INT(detect("containerd://1.7.2", "k3s", &rt, &err), -EINVAL);
	CHECK(strstr(kd_err_msg(&err), "set K8S_DISTRIBUTION=k0s") != NULL);

	reset_root();
	touch("etc/systemd/system/snap.microk8s.daemon-containerd.service");
	CHECK_INT(detect("containerd://1.6.28", "", &rt, &err), 0);
	CHECK_STR(rt.id, "microk8s");
	CHECK_STR(rt.unit, "snap.microk8s.daemon-containerd.service");
	/* Declared microk8s needs no unit (snap confinement hides it). */
	reset_root();
	CHECK_INT(detect("containerd://1.6.28", "microk8s", &rt, &err), 0);
	CHECK_STR(rt.id, "microk8s");
}

TEST(detect_refusals)
{
	kd_agent_runtime rt;
	kd_error err = {0};

	reset_root();
	CHECK_INT(detect(NULL, "", &rt, &err), -EINVAL);
	CHECK_STR(kd_err_msg(&err), "the Node reports no status.nodeInfo.containerRuntimeVersion");
	CHECK_INT(detect("containerd-1.7", "", &rt, &err), -EINVAL);
	CHECK_STR(kd_err_msg(&err),
		  "containerRuntimeVersion 'containerd-1.7' is not <runtime>://<version>");
	CHECK_INT(detect("docker://24.0.5", "", &rt, &err), -EOPNOTSUPP);
	CHECK_STR(kd_err_msg(&err), "container runtime 'docker' (docker://24.0.5) is not "
				    "supported: containerd and CRI-O are");
	CHECK_INT(detect("containerd://1.7.2", "k3s", &rt, &err), -EINVAL);
	CHECK(strstr(kd_err_msg(&err), "detected containerd") != NULL);
}

int main(void)
{
	kd_agent_settings s;
	kd_error err = {0};

	if (!mkdtemp(root))
		return EXIT_FAILURE;
	/* The architecture as the settings see it (uname). */
	clearenv();
	setenv("NODE_NAME", "n", 1);
	if (kd_agent_settings_load(&s, "install", &err) < 0)
		return EXIT_FAILURE;
	snprintf(arch, sizeof(arch), "%s", s.arch);
	kd_agent_settings_free(&s);

	RUN(defaults);
	RUN(empty_values);
	RUN(values);
	RUN(custom_runtimes);
	RUN(upstream_41_shims);
	RUN(snapshotters);
	RUN(node_name_required_except_for_wait);
	RUN(oci_payload);
	RUN(refusals);
	RUN(value_limit);
	RUN(log_level);
	RUN(detect_plain_runtimes);
	RUN(detect_distributions);
	RUN(detect_refusals);

	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	if (system(cmd) != 0)
		return EXIT_FAILURE;
	TAP_END();
}
