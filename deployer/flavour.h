/* What runs on a host root: the container runtime (containerd or CRI-O) and the Kubernetes
 * distribution that packages it (k3s, rke2, k0s, microk8s), found from systemd unit files and
 * binaries under the root; the runtime version (given by the caller, or asked from the binary
 * only when the root is "/"); where each flavour keeps its config; and what a containerd root
 * config says about itself (schema `version`, `imports`). */
#pragma once

#include <stdbool.h>

#include "err.h"
#include "toml.h"

#define KD_FLAVOUR_PATH_MAX 512
#define KD_CONTAINERD_MAX_IMPORTS 256

typedef enum kd_flavour_id {
	KD_FLAVOUR_NONE = 0,
	KD_FLAVOUR_CONTAINERD,
	KD_FLAVOUR_CRIO,
	KD_FLAVOUR_K3S,
	KD_FLAVOUR_K3S_AGENT,
	KD_FLAVOUR_RKE2_SERVER,
	KD_FLAVOUR_RKE2_AGENT,
	KD_FLAVOUR_K0S_CONTROLLER,
	KD_FLAVOUR_K0S_WORKER,
	KD_FLAVOUR_MICROK8S,
} kd_flavour_id;

typedef struct kd_flavour_opts {
	const char *runtime;	     /* "containerd", "crio", "auto" (NULL), "none" */
	const char *runtime_version; /* "1.7.22", "v2.2.0", "cri-o 1.30"; NULL: ask the binary */
	const char *distribution;    /* k8s|k3s|rke2|k0s|microk8s|auto (NULL) */
	const char *config_path;     /* override of the main config file, relative to the root */
	const char *binary;	     /* runtime binary to ask for its version (host path) */
	bool root_is_host;	     /* the root is "/": the runtime's own binary may be run */
} kd_flavour_opts;

typedef struct kd_flavour {
	kd_flavour_id id;
	bool crio;			      /* CRI-O, else a containerd flavour */
	char name[32];			      /* "containerd", "k3s-agent", ... */
	char unit[64];			      /* systemd unit to restart; "" = none (k0s) */
	char config[KD_FLAVOUR_PATH_MAX];     /* main config file, relative to the root */
	char config_dir[KD_FLAVOUR_PATH_MAX]; /* its directory */
	int major, minor, patch;	      /* runtime version; major < 0 when unknown */
} kd_flavour;

/* Detect the flavour; KD_FLAVOUR_NONE (and 0) when no runtime is found and none was asked for.
 * A declared distribution that contradicts the host is an error naming the value to use. */
int kd_flavour_detect(int rootfd, const kd_flavour_opts *o, kd_flavour *ret, kd_error *err);
const char *kd_flavour_name(kd_flavour_id id);
bool kd_flavour_is_k3s_like(kd_flavour_id id); /* k3s or rke2: rendered config + templates */
bool kd_flavour_is_k0s(kd_flavour_id id);
/* "containerd github.com/containerd/containerd v1.6.20 ...", "1.6.20~ds1", "v2.2.0",
 * "crio version 1.30.2": the first dotted number. -EINVAL if there is none. */
int kd_version_parse(const char *s, int *ret_major, int *ret_minor, int *ret_patch);
/* 0 when kd_version_parse reads s; else why not, naming it as what: no x.y at all, or numbers
 * out of range. */
int kd_version_check(const char *what, const char *s, kd_error *err);
/* True if the known version is >= major.minor (false when unknown). */
bool kd_flavour_at_least(const kd_flavour *f, int major, int minor);

/* A containerd config's root `version` (1 when absent) and `imports` (a new strv, possibly
 * empty). Errors name file:line: a version that is not an integer, imports that are not an
 * array of strings. */
int kd_containerd_root_info(const kd_toml_doc *doc, const char *name, int *ret_version,
			    char ***ret_imports, kd_error *err);
