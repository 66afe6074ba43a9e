#include "settings.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>
#include <sys/utsname.h>

#include "deployer/custom.h"
#include "deployer/hostcheck.h"
#include "deployer/kataconfig.h"
#include "log.h"
#include "strv.h"

typedef enum {
	T_STRING,
	T_BOOL,
	T_INT,
	T_WORDS, /* space separated */
	T_LIST,	 /* comma or space separated */
} stype;

typedef struct setting {
	const char *name; /* "<ARCH>" is replaced by the machine's architecture */
	stype type;
	size_t offset;
	const char *def;
	int min, max;	     /* T_INT */
	const char *allowed; /* T_STRING: '|' separated values ("" allowed when it
				starts so) */
	const char *help;
} setting;

#define OFF(f) offsetof(kd_agent_settings, f)

static const setting table[] = {
	{"NODE_NAME", T_STRING, OFF(node_name), "", 0, 0, NULL, "this node (downward API)"},
	{"POD_NAMESPACE", T_STRING, OFF(pod_namespace), "", 0, 0, NULL,
	 "events and DaemonSet namespace; empty: the service account's"},
	{"DAEMONSET_NAME", T_STRING, OFF(daemonset_name), "kata-deploy", 0, 0, NULL,
	 "own DaemonSet, to tell a rolling restart from an uninstall"},
	{"DEBUG", T_BOOL, OFF(debug), "false", 0, 0, NULL,
	 "debug logs, runtime debug, kata-<shim>-debug handlers"},
	{"DEVKIT", T_BOOL, OFF(devkit), "false", 0, 0, NULL,
	 "kata-<shim>-devkit handlers (needs DEBUG)"},
	{"CUSTOM_RUNTIMES_ENABLED", T_BOOL, OFF(custom_runtimes), "false", 0, 0, NULL,
	 "handlers of CUSTOM_CONFIGS_DIR/custom-runtimes.list"},
	{"CUSTOM_CONFIGS_DIR", T_STRING, OFF(custom_configs), "/custom-configs", 0, 0, NULL,
	 "dropin-<shim|handler>.toml, custom-runtimes.list (chart ConfigMap)"},
	{"K8S_DISTRIBUTION", T_STRING, OFF(k8s_distribution), "", 0, 0,
	 "|k8s|k3s|rke2|k0s|microk8s", "declared distribution, cross-checked"},
	{"HEALTH_PORT", T_INT, OFF(health_port), "8090", 0, 65535, NULL,
	 "/healthz /readyz /metrics; 0 = off"},
	{"HEALTH_ADDRESS", T_STRING, OFF(health_address), "0.0.0.0", 0, 0, NULL,
	 "IPv4 address the health server binds"},
	{"INSTALLATION_PREFIX", T_STRING, OFF(installation_prefix), "", 0, 0, NULL,
	 "Kata goes to <prefix>/opt/kata"},
	{"MULTI_INSTALL_SUFFIX", T_STRING, OFF(multi_install_suffix), "", 0, 0, NULL,
	 "side-by-side install name"},
	{"STARTUP_TAINTS", T_LIST, OFF(startup_taints), "", 0, 0, NULL,
	 "taints key[:effect] removed when ready"},
	{"AGENT_HTTPS_PROXY", T_STRING, OFF(agent_https_proxy), "", 0, 0, NULL,
	 "URL, or shim=URL;shim=URL"},
	{"AGENT_NO_PROXY", T_STRING, OFF(agent_no_proxy), "", 0, 0, NULL,
	 "list, or shim=list;shim=list"},
	{"SHIMS_<ARCH>", T_WORDS, OFF(shims), "qemu", 0, 0, NULL, "enabled shims"},
	{"DEFAULT_SHIM_<ARCH>", T_STRING, OFF(default_shim), "", 0, 0, NULL,
	 "one of the shims; empty: the first"},
	{"ALLOWED_HYPERVISOR_ANNOTATIONS_<ARCH>", T_WORDS, OFF(allowed_hypervisor_annotations), "",
	 0, 0, NULL, "shim:a,b or global words"},
	{"SNAPSHOTTER_HANDLER_MAPPING_<ARCH>", T_LIST, OFF(snapshotter_mapping), "", 0, 0, NULL,
	 "shim:snapshotter,..."},
	{"PULL_TYPE_MAPPING_<ARCH>", T_LIST, OFF(pull_type_mapping), "", 0, 0, NULL,
	 "shim:guest-pull,..."},
	{"EXPERIMENTAL_SETUP_SNAPSHOTTER", T_LIST, OFF(setup_snapshotter), "", 0, 0, NULL,
	 "snapshotters to set up (containerd): nydus, erofs"},
	{"EROFS_MERGE_MODE", T_STRING, OFF(erofs_merge_mode), "merged", 0, 0, "merged|unmerged",
	 "erofs layers merged into one fsmeta.erofs (runtime-rs only) or not"},
	{"EROFS_SNAPSHOTTER_MODE", T_STRING, OFF(erofs_snapshotter_mode), "disk", 0, 0,
	 "disk|memory", "erofs rw layer: 10G on disk, or in memory"},
	{"EROFS_DMVERITY", T_STRING, OFF(erofs_dmverity_value), "", 0, 0, NULL,
	 "\"dmverity\" (upstream's value; true also): dm-verity for the erofs layers"},
	{"EXPERIMENTAL_FORCE_GUEST_PULL_<ARCH>", T_LIST, OFF(force_guest_pull), "", 0, 0, NULL,
	 "shims whose runtime pulls every image in the guest"},
	{"HOST_ROOT", T_STRING, OFF(host_root), KD_AGENT_DEFAULT_HOST_ROOT, 0, 0, NULL,
	 "the host's / as mounted in the pod"},
	{"PAYLOAD", T_STRING, OFF(payload), KD_AGENT_DEFAULT_PAYLOAD, 0, 0, NULL,
	 "payload file in the image, a URL, or oci://REGISTRY/REPO:TAG"},
	{"PAYLOAD_SHA256", T_STRING, OFF(payload_sha256), "", 0, 0, NULL,
	 "expected payload digest (oci://: of the artifact's manifest)"},
	{"PAYLOAD_PUBLIC_KEY", T_STRING, OFF(payload_public_key), "", 0, 0, NULL,
	 "verify the payload signature"},
	{"PAYLOAD_REGISTRY_AUTH", T_STRING, OFF(payload_registry_auth), "", 0, 0, NULL,
	 "oci:// payload: registry credentials, a dockerconfigjson file"},
	{"PAYLOAD_REGISTRY_CA", T_STRING, OFF(payload_registry_ca), "", 0, 0, NULL,
	 "oci:// payload: CA certificates (PEM) for the registry's TLS"},
	{"PAYLOAD_PLAIN_HTTP", T_BOOL, OFF(payload_plain_http), "false", 0, 0, NULL,
	 "oci:// payload: the registry over http (needs PAYLOAD_SHA256 or a key)"},
	{"RUNTIME_RESTART", T_STRING, OFF(runtime_restart), "systemd", 0, 0, NULL,
	 "systemd | none | command:<cmd>"},
	{"NODE_READY_TIMEOUT", T_INT, OFF(node_ready_timeout_s), "300", 1, 86400, NULL,
	 "seconds to wait for Ready after a restart"},
	{"RUNTIME_HANDLERS_TIMEOUT", T_INT, OFF(handlers_timeout_s), "120", 0, 86400, NULL,
	 "seconds to wait for status.runtimeHandlers"},
	{"POLL_INTERVAL_MS", T_INT, OFF(poll_interval_ms), "2000", 10, 600000, NULL,
	 "between reads of the Node"},
	{"LABEL_STABLE_READS", T_INT, OFF(label_stable_reads), "3", 1, 100, NULL,
	 "reads that must see our labels unchanged"},
	{"SERVICEACCOUNT_DIR", T_STRING, OFF(sa_dir),
	 "/var/run/secrets/kubernetes.io/serviceaccount", 0, 0, NULL,
	 "in-cluster token, ca.crt, namespace"},
	{"KUBECONFIG", T_STRING, OFF(kubeconfig), "", 0, 0, NULL,
	 "kubeconfig instead of in-cluster"},
	{"API_RETRIES", T_INT, OFF(api_retries), "8", 0, 50, NULL,
	 "retries of one API call (backoff from 0.4 s)"},
	{"HOST_CHECK", T_BOOL, OFF(host_check), "true", 0, 0, NULL,
	 "refuse when no enabled shim can run here"},
	{"HOST_CHECK_ROOT", T_STRING, OFF(host_check_root), "/", 0, 0, NULL,
	 "where the host checks see /proc, /sys, /dev (a privileged pod: its own /)"},
	{"LOG_LEVEL", T_STRING, OFF(log_level), "", 0, 0, "|error|warn|info|debug|trace",
	 "the agent's log level (--log-level; empty: debug with DEBUG, else info)"},
	{"CONTAINERD_CONFIG_FILE_NAME", T_STRING, OFF(containerd_config_file_name), "", 0, 0, NULL,
	 "containerd's config file in /etc/containerd (k8s; empty: config.toml)"},
	{"CONTAINERD_USER_DROP_IN_SOURCE_FILE", T_STRING, OFF(containerd_user_drop_in), "", 0, 0,
	 NULL, "upstream's user containerd drop-in: not supported yet (a warning)"},
	{"NODE_RUNTIME_VERSION", T_STRING, OFF(node_runtime_version), "", 0, 0, NULL,
	 "job mode: the Node's containerRuntimeVersion (set by the dispatcher)"},
};

static const char *machine_arch(void)
{
	struct utsname u;

	if (uname(&u) < 0)
		return "X86_64";
	if (strcmp(u.machine, "aarch64") == 0 || strcmp(u.machine, "arm64") == 0)
		return "AARCH64";
	if (strcmp(u.machine, "s390x") == 0)
		return "S390X";
	if (strncmp(u.machine, "ppc64", 5) == 0 || strncmp(u.machine, "powerpc64", 9) == 0)
		return "PPC64LE";
	return "X86_64";
}

static void var_name(const setting *t, const char *arch, char *buf, size_t size)
{
	const char *p = strstr(t->name, "<ARCH>");
	if (p)
		snprintf(buf, size, "%.*s%s", (int)(p - t->name), t->name, arch);
	else
		snprintf(buf, size, "%s", t->name);
}

static bool allowed(const char *list, const char *v)
{
	size_t n = strlen(v);
	for (const char *p = list;; p++) {
		const char *e = strchr(p, '|');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		if (len == n && strncmp(p, v, n) == 0)
			return true;
		if (!e)
			return false;
		p = e;
	}
}

static int parse_one(kd_agent_settings *s, const setting *t, const char *name, const char *v,
		     kd_error *err)
{
	void *dst = (char *)s + t->offset;
	char *end;
	long n;

	if (strlen(v) > KD_AGENT_VALUE_MAX)
		return kd_err(err, -EINVAL, "%s: value longer than %d bytes", name,
			      KD_AGENT_VALUE_MAX);
	switch (t->type) {
	case T_STRING:
		if (t->allowed && !allowed(t->allowed, v))
			return kd_err(err, -EINVAL, "%s=%s: not allowed; use one of: %s%s", name, v,
				      t->allowed[0] == '|' ? "(empty)" : "", t->allowed);
		*(char **)dst = strdup(v);
		return *(char **)dst ? 0 : kd_err(err, -ENOMEM, "out of memory");
	case T_BOOL:
		if (strcmp(v, "true") == 0 || strcmp(v, "1") == 0 || strcmp(v, "yes") == 0)
			*(bool *)dst = true;
		else if (strcmp(v, "false") == 0 || strcmp(v, "0") == 0 || strcmp(v, "no") == 0 ||
			 !*v)
			*(bool *)dst = false;
		else
			return kd_err(err, -EINVAL, "%s=%s: not a boolean; use true or false", name,
				      v);
		return 0;
	case T_INT:
		errno = 0;
		n = strtol(v, &end, 10);
		if (!*v || *end || errno || n < t->min || n > t->max)
			return kd_err(err, -EINVAL, "%s=%s: not an integer in %d..%d", name, v,
				      t->min, t->max);
		*(int *)dst = (int)n;
		return 0;
	case T_WORDS:
	case T_LIST: {
		_cleanup_free_ char *copy = strdup(v);
		if (!copy)
			return kd_err(err, -ENOMEM, "out of memory");
		for (char *p = copy; *p; p++)
			if (isspace((unsigned char)*p) || (t->type == T_LIST && *p == ','))
				*p = '\x1f';
		*(char ***)dst = kd_strv_split(copy, '\x1f');
		return *(char ***)dst ? 0 : kd_err(err, -ENOMEM, "out of memory");
	}
	}
	return -EINVAL;
}

static bool valid_suffix(const char *s)
{
	size_t n = strlen(s);
	if (n < 1 || n > KD_AGENT_SUFFIX_MAX || s[0] == '-' || s[n - 1] == '-')
		return false;
	for (; *s; s++)
		if (!islower((unsigned char)*s) && !isdigit((unsigned char)*s) && *s != '-')
			return false;
	return true;
}

/* A "shim:value" entry whose shim must be enabled. */
static int check_shim_entry(const kd_agent_settings *s, const char *var, const char *entry,
			    char sep, bool need_value, const char *value_only, kd_error *err)
{
	const char *c = strchr(entry, sep);
	char shim[128];

	if (!c) {
		if (need_value)
			return kd_err(err, -EINVAL, "%s: entry '%s' is not shim%cvalue", var, entry,
				      sep);
		return 0;
	}
	snprintf(shim, sizeof(shim), "%.*s", (int)(c - entry), entry);
	if (!kd_strv_find(s->shims, shim))
		return kd_err(err, -EINVAL,
			      "%s: entry '%s' names shim '%s', which is not enabled "
			      "(SHIMS_%s)",
			      var, entry, shim, s->arch);
	if (!c[1])
		return kd_err(err, -EINVAL, "%s: entry '%s' has an empty value", var, entry);
	if (value_only && strcmp(c + 1, value_only) != 0)
		return kd_err(err, -EINVAL, "%s: entry '%s': value '%s' is not allowed; use %s",
			      var, entry, c + 1, value_only);
	return 0;
}

static int check_proxy(const kd_agent_settings *s, const char *var, const char *v, kd_error *err)
{
	int r = kd_kata_check_proxy(var, v, err);
	if (r < 0)
		return r;
	if (!strchr(v, '='))
		return 0; /* one value for every shim */
	_cleanup_strv_ char **items = kd_strv_split(v, ';');
	if (!items)
		return kd_err(err, -ENOMEM, "out of memory");
	for (char **i = items; *i; i++)
		if ((r = check_shim_entry(s, var, *i, '=', true, NULL, err)) < 0)
			return r;
	return 0;
}

/* CUSTOM_RUNTIMES_ENABLED: the list is read (and checked) now, so that a bad one stops the
 * agent before it touches the host, and the handlers are known to wait for. */
static int load_custom(kd_agent_settings *s, kd_error *err)
{
	_cleanup_free_ kd_custom_runtime *c = NULL;
	size_t n = 0;
	int r = kd_custom_load(s->custom_configs, &c, &n, err);
	if (r < 0)
		return kd_err_wrap(err, r, "CUSTOM_RUNTIMES_ENABLED=true");
	kd_strv_free(s->custom_handlers);
	kd_strv_free(s->custom_bases);
	s->custom_handlers = calloc(1, sizeof(char *));
	s->custom_bases = calloc(1, sizeof(char *));
	if (!s->custom_handlers || !s->custom_bases)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		if (s->shims && !kd_strv_find(s->shims, c[i].base))
			return kd_err(err, -EINVAL,
				      "custom runtime '%s' in %s/%s: base shim '%s' is not in "
				      "SHIMS_%s",
				      c[i].handler, s->custom_configs, KD_CUSTOM_LIST, c[i].base,
				      s->arch);
		if (kd_strv_push(&s->custom_handlers, c[i].handler) < 0 ||
		    kd_strv_push(&s->custom_bases, c[i].base) < 0)
			return -ENOMEM;
	}
	return 0;
}

static int validate(kd_agent_settings *s, const char *action, kd_error *err)
{
	char var[96];
	int r;

	if (strcmp(action, "wait") != 0 && strcmp(action, "dispatch") != 0 && !*s->node_name)
		return kd_err(err, -EINVAL,
			      "NODE_NAME is not set: give the node name (the chart "
			      "sets it from spec.nodeName)");
	if (s->host_root[0] != '/')
		return kd_err(err, -EINVAL, "HOST_ROOT=%s: must be an absolute path", s->host_root);
	struct in_addr a;
	if (inet_pton(AF_INET, s->health_address, &a) != 1)
		return kd_err(err, -EINVAL,
			      "HEALTH_ADDRESS=%s: not an IPv4 address (e.g. 0.0.0.0, 127.0.0.1)",
			      s->health_address);
	if (s->host_check_root[0] != '/')
		return kd_err(err, -EINVAL, "HOST_CHECK_ROOT=%s: must be an absolute path",
			      s->host_check_root);
	if (*s->installation_prefix &&
	    (s->installation_prefix[0] != '/' || strstr(s->installation_prefix, "..")))
		return kd_err(err, -EINVAL,
			      "INSTALLATION_PREFIX=%s: must be an absolute path without '..'",
			      s->installation_prefix);
	if (*s->multi_install_suffix && !valid_suffix(s->multi_install_suffix))
		return kd_err(err, -EINVAL,
			      "MULTI_INSTALL_SUFFIX=%s: use 1-%d lowercase letters, digits or '-' "
			      "(not first or last)",
			      s->multi_install_suffix, KD_AGENT_SUFFIX_MAX);
	if (s->devkit && !s->debug)
		return kd_err(err, -EINVAL,
			      "DEVKIT=true needs DEBUG=true (devkit handlers are debug handlers "
			      "with the devkit guest image)");
	if (s->custom_runtimes && (r = load_custom(s, err)) < 0)
		return r;
	snprintf(var, sizeof(var), "SHIMS_%s", s->arch);
	if (!s->shims || !s->shims[0])
		return kd_err(err, -EINVAL, "%s is empty: enable at least one shim", var);
	for (char **i = s->shims; *i; i++)
		if (!kd_hostcheck_shim_known(*i)) {
			char known[2048];
			(void)kd_hostcheck_known_shims(known, sizeof(known));
			return kd_err(err, -EINVAL, "%s: unknown shim '%s'%s (known: %s)", var, *i,
				      strcmp(*i, "firecracker") == 0
					      ? ": upstream kata-deploy 4.x calls it 'fc'"
					      : "",
				      known);
		}
	if (!*s->default_shim) {
		free(s->default_shim);
		s->default_shim = strdup(s->shims[0]);
		if (!s->default_shim)
			return kd_err(err, -ENOMEM, "out of memory");
	} else if (!kd_strv_find(s->shims, s->default_shim)) {
		char list[KD_AGENT_VALUE_MAX + 1] = "";
		for (char **i = s->shims; *i; i++)
			snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s",
				 i == s->shims ? "" : " ", *i);
		return kd_err(err, -EINVAL,
			      "DEFAULT_SHIM_%s=%s: not among the enabled shims (%s=%s)", s->arch,
			      s->default_shim, var, list);
	}
	snprintf(var, sizeof(var), "SNAPSHOTTER_HANDLER_MAPPING_%s", s->arch);
	for (char **i = s->snapshotter_mapping; i && *i; i++)
		if ((r = check_shim_entry(s, var, *i, ':', true, NULL, err)) < 0)
			return r;
	snprintf(var, sizeof(var), "PULL_TYPE_MAPPING_%s", s->arch);
	for (char **i = s->pull_type_mapping; i && *i; i++)
		if ((r = check_shim_entry(s, var, *i, ':', true, "guest-pull", err)) < 0)
			return r;
	if (*s->erofs_dmverity_value && strcasecmp(s->erofs_dmverity_value, "dmverity") != 0 &&
	    strcasecmp(s->erofs_dmverity_value, "true") != 0 &&
	    strcasecmp(s->erofs_dmverity_value, "false") != 0)
		return kd_err(err, -EINVAL,
			      "EROFS_DMVERITY=%s: use dmverity (or true), or leave it "
			      "empty",
			      s->erofs_dmverity_value);
	s->erofs_dmverity = !strcasecmp(s->erofs_dmverity_value, "dmverity") ||
			    !strcasecmp(s->erofs_dmverity_value, "true");
	for (char **i = s->setup_snapshotter; i && *i; i++)
		if (strcmp(*i, "nydus") != 0 && strcmp(*i, "erofs") != 0)
			return kd_err(err, -EINVAL,
				      "EXPERIMENTAL_SETUP_SNAPSHOTTER: '%s' is not a supported "
				      "snapshotter (nydus, erofs)",
				      *i);
	snprintf(var, sizeof(var), "EXPERIMENTAL_FORCE_GUEST_PULL_%s", s->arch);
	for (char **i = s->force_guest_pull; i && *i; i++)
		if (!kd_strv_find(s->shims, *i))
			return kd_err(err, -EINVAL, "%s: shim '%s' is not among the enabled shims",
				      var, *i);
	snprintf(var, sizeof(var), "ALLOWED_HYPERVISOR_ANNOTATIONS_%s", s->arch);
	for (char **i = s->allowed_hypervisor_annotations; i && *i; i++)
		if ((r = check_shim_entry(s, var, *i, ':', false, NULL, err)) < 0)
			return r;
	if ((r = check_proxy(s, "AGENT_HTTPS_PROXY", s->agent_https_proxy, err)) < 0 ||
	    (r = check_proxy(s, "AGENT_NO_PROXY", s->agent_no_proxy, err)) < 0)
		return r;
	for (char **i = s->startup_taints; i && *i; i++) {
		const char *c = strchr(*i, ':');
		if (c == *i || (c && !allowed("NoSchedule|PreferNoSchedule|NoExecute", c + 1)))
			return kd_err(err, -EINVAL,
				      "STARTUP_TAINTS: '%s' is not key[:effect] with effect "
				      "NoSchedule, PreferNoSchedule or NoExecute",
				      *i);
	}
	if (strcmp(s->runtime_restart, "systemd") != 0 && strcmp(s->runtime_restart, "none") != 0 &&
	    (strncmp(s->runtime_restart, "command:", 8) != 0 || !s->runtime_restart[8]))
		return kd_err(err, -EINVAL,
			      "RUNTIME_RESTART=%s: use systemd, none or command:<shell command>",
			      s->runtime_restart);
	bool oci = strncmp(s->payload, "oci://", 6) == 0;
	if (!oci && (s->payload_plain_http || *s->payload_registry_auth || *s->payload_registry_ca))
		return kd_err(
			err, -EINVAL,
			"PAYLOAD_PLAIN_HTTP, PAYLOAD_REGISTRY_AUTH and PAYLOAD_REGISTRY_CA are "
			"for an oci:// PAYLOAD, not '%s'",
			s->payload);
	if (oci && s->payload_plain_http && !*s->payload_sha256 && !*s->payload_public_key &&
	    !strstr(s->payload, "@sha256:"))
		return kd_err(
			err, -EINVAL,
			"PAYLOAD_PLAIN_HTTP: a payload pulled over plain http must be pinned: "
			"set PAYLOAD_SHA256 (the artifact manifest's digest), use "
			"PAYLOAD=oci://...@sha256:<hex>, or PAYLOAD_PUBLIC_KEY");
	if (*s->containerd_config_file_name && (strchr(s->containerd_config_file_name, '/') ||
						strcmp(s->containerd_config_file_name, ".") == 0 ||
						strcmp(s->containerd_config_file_name, "..") == 0))
		return kd_err(err, -EINVAL,
			      "CONTAINERD_CONFIG_FILE_NAME=%s: must be a file name in "
			      "/etc/containerd, without '/'",
			      s->containerd_config_file_name);
	if (*s->containerd_user_drop_in && s->containerd_user_drop_in[0] != '/')
		return kd_err(err, -EINVAL,
			      "CONTAINERD_USER_DROP_IN_SOURCE_FILE=%s: must be an absolute path",
			      s->containerd_user_drop_in);
	if (*s->payload_sha256) {
		size_t n = strlen(s->payload_sha256);
		if (n != 64 || strspn(s->payload_sha256, "0123456789abcdef") != n)
			return kd_err(err, -EINVAL,
				      "PAYLOAD_SHA256=%s: not 64 lowercase hex digits",
				      s->payload_sha256);
	}
	return 0;
}

int kd_agent_settings_load(kd_agent_settings *s, const char *action, kd_error *err)
{
	char name[96];
	int r;

	*s = (kd_agent_settings){.arch = machine_arch()};
	for (size_t i = 0; i < ELEMENTSOF(table); i++) {
		const char *v;
		var_name(&table[i], s->arch, name, sizeof(name));
		v = getenv(name);
		/* The chart passes every variable, empty when unset: empty means the
		 * default, except for lists, where an empty list is a value of its own. */
		if (!v || (!*v && table[i].type != T_WORDS && table[i].type != T_LIST))
			v = table[i].def;
		r = parse_one(s, &table[i], name, v, err);
		if (r < 0)
			return r;
	}
	return validate(s, action, err);
}

void kd_agent_settings_free(kd_agent_settings *s)
{
	for (size_t i = 0; i < ELEMENTSOF(table); i++) {
		void *dst = (char *)s + table[i].offset;
		if (table[i].type == T_STRING)
			free(*(char **)dst);
		else if (table[i].type == T_WORDS || table[i].type == T_LIST)
			kd_strv_free(*(char ***)dst);
	}
	kd_strv_free(s->custom_handlers);
	kd_strv_free(s->custom_bases);
	*s = (kd_agent_settings){0};
}

void kd_agent_settings_log(const kd_agent_settings *s)
{
	char name[96], buf[KD_AGENT_VALUE_MAX + 1];

	kd_info("setting ARCH=%s (from uname)", s->arch);
	for (size_t i = 0; i < ELEMENTSOF(table); i++) {
		const void *src = (const char *)s + table[i].offset;
		var_name(&table[i], s->arch, name, sizeof(name));
		switch (table[i].type) {
		case T_STRING:
			snprintf(buf, sizeof(buf), "%s", *(char *const *)src);
			break;
		case T_BOOL:
			snprintf(buf, sizeof(buf), "%s", *(const bool *)src ? "true" : "false");
			break;
		case T_INT:
			snprintf(buf, sizeof(buf), "%d", *(const int *)src);
			break;
		default: {
			size_t o = 0;
			buf[0] = '\0';
			for (char *const *v = *(char **const *)src; v && *v && o < sizeof(buf); v++)
				o += (size_t)snprintf(buf + o, sizeof(buf) - o, "%s%s",
						      o ? " " : "", *v);
		}
		}
		kd_info("setting %s=%s%s", name, buf, getenv(name) ? "" : " (default)");
	}
}

int kd_agent_log_level(const kd_agent_settings *s)
{
	const char *l = s->log_level;
	if (!*l)
		return s->debug ? KD_LOG_DEBUG : KD_LOG_INFO;
	/* trace: our finest level is debug */
	return strcmp(l, "error") == 0	? KD_LOG_ERROR
	       : strcmp(l, "warn") == 0 ? KD_LOG_WARNING
	       : strcmp(l, "info") == 0 ? KD_LOG_INFO
					: KD_LOG_DEBUG;
}

char **kd_agent_handlers(const kd_agent_settings *s, char *const *shims)
{
	_cleanup_strv_ char **v = calloc(1, sizeof(char *));
	char h[256];

	if (!v)
		return NULL;
	if (!shims)
		shims = s->shims;
	const char *variants[] = {"", s->debug ? "-debug" : NULL, s->devkit ? "-devkit" : NULL};
	for (char *const *i = shims; *i; i++)
		for (size_t k = 0; k < ELEMENTSOF(variants); k++) {
			if (!variants[k])
				continue;
			snprintf(h, sizeof(h), "kata-%s%s%s%s", *i,
				 *s->multi_install_suffix ? "-" : "", s->multi_install_suffix,
				 variants[k]);
			if (kd_strv_push(&v, h) < 0)
				return NULL;
		}
	for (size_t i = 0; s->custom_handlers && s->custom_handlers[i]; i++)
		if (kd_strv_find(shims, s->custom_bases[i]) &&
		    kd_strv_push(&v, s->custom_handlers[i]) < 0)
			return NULL;
	return TAKE_PTR(v);
}

void kd_agent_shim_label(const kd_agent_settings *s, const char *shim, char *buf, size_t size)
{
	snprintf(buf, size, KD_AGENT_SHIM_LABEL_PREFIX "kata-%s%s%s", shim,
		 *s->multi_install_suffix ? "-" : "", s->multi_install_suffix);
}

void kd_agent_identity_annotation(const kd_agent_settings *s, char *buf, size_t size)
{
	snprintf(buf, size, KD_AGENT_IDENTITY_PREFIX "%s",
		 *s->multi_install_suffix ? s->multi_install_suffix : "default");
}

void kd_agent_owner_label(const kd_agent_settings *s, char *buf, size_t size)
{
	snprintf(buf, size, KD_AGENT_OWNER_PREFIX "%s",
		 *s->multi_install_suffix ? s->multi_install_suffix : "default");
}
