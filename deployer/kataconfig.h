/* Kata's own configuration per shim. The CRI points each handler at a copy of the payload's
 * configuration-<shim>.toml in <prefix>/runtimes/<shim>/ (a managed copy, as upstream does), and
 * our settings go into drop-ins next to it in config.d/, which Kata merges in name order:
 * 10-installation-prefix, 20-debug, 22-k0s-kubelet-root (k0s, Go runtime), 25-devkit,
 * 30-kernel-params (agent proxy, guest debug logging), 40-annotations, 45-force-guest-pull. The
 * copies live outside the versioned tree, which stays exactly as the payload made it.
 *
 * Each shim may have up to three handlers, each with a directory of its own: the plain one
 * (runtimes/<shim>/), a debug variant (runtimes/<shim>-debug/: Kata and guest debug, the debug
 * console) and a devkit variant (runtimes/<shim>-devkit/: the debug console and the devkit
 * guest extension image). The plain handler never carries debug settings. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "err.h"

#define KD_KATA_RUNTIMES_DIR "runtimes"
#define KD_KATA_CUSTOM_DIR "custom" /* runtimes/custom/<handler>/ */
#define KD_KATA_MAX_FILES 10
/* The devkit guest extension image and its dm-verity parameters, in the payload tree. */
#define KD_DEVKIT_IMAGE "share/kata-containers/kata-containers-devkit-extension.img"
#define KD_DEVKIT_ROOT_HASH "share/kata-containers/root_hash_devkit-extension.txt"

typedef enum kd_variant {
	KD_VARIANT_PLAIN = 0,
	KD_VARIANT_DEBUG,  /* kata-<shim>[-suffix]-debug */
	KD_VARIANT_DEVKIT, /* kata-<shim>[-suffix]-devkit */
	KD_VARIANT_CUSTOM, /* a custom runtime based on the shim (custom.h) */
} kd_variant;

typedef struct kd_kata_opts {
	const char *prefix;	 /* absolute install prefix, "/opt/kata" */
	const char *https_proxy; /* URL for every shim, or "shim=URL;shim=URL" */
	const char *no_proxy;	 /* the same forms */
	const char *annotations; /* "a b shim:c,d": bare words for all shims, shim: for one */
	bool k0s;		 /* k0s: 22-k0s-kubelet-root.toml for the Go shims, as upstream */
	const char *force_guest_pull; /* "shim,shim": [runtime] experimental_force_guest_pull */
} kd_kata_opts;

typedef struct kd_kata_file {
	char path[512]; /* relative to the root */
	char *text;	/* owned */
	unsigned mode;	/* 0: 0644; 0755 for the QEMU wrapper (not TOML) */
} kd_kata_file;

bool kd_shim_is_rust(const char *shim);
/* The [hypervisor.X] section name of a shim: qemu, clh, firecracker, dragonball, ... */
const char *kd_shim_hypervisor(const char *shim);
/* "", "-debug" or "-devkit": appended to the handler name and the shim's directory name. */
const char *kd_variant_suffix(kd_variant v);
/* Absolute shim binary and configuration path for a handler of this shim and variant. */
void kd_kata_paths(const char *prefix, const char *shim, kd_variant v, char *runtime_path,
		   size_t rsize, char *config_path, size_t csize);
/* Where the payload's pristine files are read from: the version tree (fd, paths relative to it,
 * holding share/defaults/), or, when read is set, a callback (plan reads the payload itself and
 * has no tree on disk). */
typedef int (*kd_tree_read_fn)(void *userdata, const char *path, size_t max, char **ret_data,
			       size_t *ret_len, kd_error *err);
typedef bool (*kd_tree_exists_fn)(void *userdata, const char *path);
typedef struct kd_tree_src {
	int fd;
	kd_tree_read_fn read;
	void *userdata;
	kd_tree_exists_fn exists; /* with read; NULL: a file exists if read finds it */
} kd_tree_src;

/* What one handler's Kata configuration is made of. */
typedef struct kd_kata_target {
	const char *shim; /* whose pristine configuration and binary */
	kd_variant variant;
	const char *custom;	 /* a custom runtime's handler: runtimes/custom/<handler>/ */
	const char *user_dropin; /* TOML for config.d/50-user-overrides.toml, or NULL */
} kd_kata_target;

/* Absolute shim binary and configuration path for a target's handler. */
void kd_kata_target_paths(const char *prefix, const kd_kata_target *t, char *runtime_path,
			  size_t rsize, char *config_path, size_t csize);
/* The files for one handler, read from the version tree. The devkit variant needs
 * KD_DEVKIT_IMAGE in the tree. */
int kd_kata_render_target(const kd_tree_src *tree, const kd_kata_target *t, const kd_kata_opts *o,
			  kd_kata_file *ret, size_t *ret_n, kd_error *err);
/* The same for a shim's own handler or variant, without a user drop-in. */
int kd_kata_render(const kd_tree_src *tree, const char *shim, kd_variant v, const kd_kata_opts *o,
		   kd_kata_file *ret, size_t *ret_n, kd_error *err);
void kd_kata_files_free(kd_kata_file *f, size_t n);
/* The payload's files that rendering reads (each shim's pristine configuration; with devkit,
 * KD_DEVKIT_ROOT_HASH), checked in the manifest before anything is written: where present they
 * must be regular files (or hardlinks to one), not symlinks, since install reads them from the
 * version tree without following links. install and plan both call it, so both refuse the
 * same payloads with the same message. mask: the selected components. */
struct kd_manifest;
/* Upstream's debug tools: components no shim lists, installed with debug only (upstream's
 * DEBUG_TOOL_COMPONENTS: kata-ctl, from its kata-tools bundle). */
#define KD_KATA_CTL_COMPONENT "kata-ctl"
/* With debug, select the payload's debug tool components into mask; false when debug asks
 * for them and the payload has none (the caller warns: best effort, as upstream). */
bool kd_debug_tools_select(const struct kd_manifest *m, bool debug, bool *mask);
int kd_kata_check_sources(const struct kd_manifest *m, const bool *mask, char *const *shims,
			  bool devkit, kd_error *err);
/* A proxy setting (--agent-https-proxy, --agent-no-proxy, the agent's AGENT_*_PROXY) becomes
 * part of the guest kernel's command line (agent.https_proxy=V): a space or a control
 * character would add kernel parameters of its own, a quote or backslash end the TOML string.
 * what names the option in the message. */
int kd_kata_check_proxy(const char *what, const char *v, kd_error *err);
/* Check the per-shim option syntax against the enabled shims. */
int kd_kata_validate(const kd_kata_opts *o, char *const *shims, kd_error *err);
