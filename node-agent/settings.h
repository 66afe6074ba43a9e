/* The agent's settings: upstream kata-deploy's environment variables (plus a few of our own),
 * parsed through one table into a typed struct and validated before the host is touched. A bad
 * value names the variable, the value and what is allowed. */
#pragma once

#include <stdbool.h>
#include <stdio.h>

#include "err.h"

#define KD_AGENT_DEFAULT_HOST_ROOT "/host"
#define KD_AGENT_DEFAULT_PAYLOAD "/opt/kata-artifacts/payload.tar.zst"
#define KD_AGENT_SUFFIX_MAX 16 /* fits handler names and label keys (63) */
#define KD_AGENT_VALUE_MAX 4096

typedef struct kd_agent_settings {
	char *node_name;
	char *pod_namespace; /* "" = the service account's namespace */
	char *daemonset_name;
	bool debug;		/* runtime debug logging + kata-<shim>-debug handlers */
	bool devkit;		/* + kata-<shim>-devkit handlers (needs debug) */
	bool custom_runtimes;	/* CUSTOM_RUNTIMES_ENABLED */
	char *custom_configs;	/* dir: dropin-<name>.toml, custom-runtimes.list */
	char **custom_handlers; /* from the list when custom_runtimes */
	char **custom_bases;	/* the base shim of each custom handler (same order) */
	char *k8s_distribution; /* "" = not declared */
	int health_port;	/* 0 = no health server */
	char *health_address;
	char *installation_prefix;
	char *multi_install_suffix;
	char **startup_taints; /* "key" or "key:effect" */
	char *agent_https_proxy, *agent_no_proxy;
	const char *arch; /* X86_64, AARCH64, S390X, PPC64LE */
	char **shims;
	char *default_shim;
	char **allowed_hypervisor_annotations; /* "shim:a,b" or "a" */
	char **snapshotter_mapping;	       /* "shim:snapshotter" */
	char **pull_type_mapping;	       /* "shim:guest-pull" */
	char **setup_snapshotter;	       /* EXPERIMENTAL_SETUP_SNAPSHOTTER: nydus, erofs */
	char *erofs_merge_mode;		       /* merged | unmerged */
	char *erofs_snapshotter_mode;	       /* disk | memory */
	char *erofs_dmverity_value;	       /* EROFS_DMVERITY as given */
	bool erofs_dmverity;		       /* it says "dmverity" (or "true") */
	char **force_guest_pull;	       /* EXPERIMENTAL_FORCE_GUEST_PULL_<ARCH>: shims */
	char *host_root;
	char *payload;
	char *payload_sha256;
	char *payload_public_key;
	char *payload_registry_auth; /* oci://: dockerconfigjson file, "" = none */
	char *payload_registry_ca;   /* oci://: CA bundle for the registry, "" = the image's */
	bool payload_plain_http;     /* oci://: http:// to the registry */
	char *runtime_restart;	     /* "systemd", "none" or "command:<shell command>" */
	int node_ready_timeout_s;
	int handlers_timeout_s;
	int poll_interval_ms;
	int label_stable_reads;
	char *sa_dir;
	char *kubeconfig;
	int api_retries;
	bool host_check;
	char *host_check_root; /* where /proc, /sys, /dev and /lib/modules are seen */
	char *log_level;       /* "" (info, debug with DEBUG), error, warn, info, debug, trace */
	char *containerd_config_file_name; /* "" = config.toml, in /etc/containerd (k8s) */
	char *containerd_user_drop_in;	   /* upstream's: the admin's containerd drop-in */
	char *node_runtime_version; /* job mode: containerRuntimeVersion, from the dispatcher */
} kd_agent_settings;

/* Read every setting from the environment (getenv) and validate it; the action decides what is
 * required ("install", "cleanup", "reset", "wait"). */
int kd_agent_settings_load(kd_agent_settings *s, const char *action, kd_error *err);
void kd_agent_settings_free(kd_agent_settings *s);
/* One line per effective setting: "NAME=value" and where it came from. */
void kd_agent_settings_log(const kd_agent_settings *s);
/* The log level LOG_LEVEL (upstream's --log-level) asks for, else debug with DEBUG, else info. */
int kd_agent_log_level(const kd_agent_settings *s);

/* The handler names we configure: "kata-<shim>[-<suffix>][-debug|-devkit]" for each of shims
 * (NULL: every enabled shim), then the custom handlers whose base is one of them;
 * NULL-terminated. */
char **kd_agent_handlers(const kd_agent_settings *s, char *const *shims);
/* "kata-deploy.katacontainers.io/<suffix or default>" */
void kd_agent_owner_label(const kd_agent_settings *s, char *buf, size_t size);
/* KD_AGENT_IDENTITY_PREFIX "<suffix or default>" */
void kd_agent_identity_annotation(const kd_agent_settings *s, char *buf, size_t size);
/* The node label that says a shim is installed here: KD_AGENT_SHIM_LABEL_PREFIX
 * "kata-<shim>[-<suffix>]" (its plain handler). The chart's RuntimeClasses of the shim, its
 * variants and the custom runtimes based on it select it. */
void kd_agent_shim_label(const kd_agent_settings *s, const char *shim, char *buf, size_t size);

#define KD_AGENT_LABEL "katacontainers.io/kata-runtime"
#define KD_AGENT_OWNER_PREFIX "kata-deploy.katacontainers.io/"
#define KD_AGENT_SHIM_LABEL_PREFIX "handler.kata-deploy.katacontainers.io/"
/* Node annotation with the release identity of an install (JSON: release, daemonSet, payload,
 * id, source, shims), set when the node is labelled ready, removed with the labels. */
#define KD_AGENT_IDENTITY_PREFIX "install.kata-deploy.katacontainers.io/"
