/* Kata's own configuration per shim. The CRI points each handler at a copy of the payload's
 * configuration-<shim>.toml in <prefix>/runtimes/<shim>/ (a managed copy, as upstream does), and
 * our settings go into drop-ins next to it in config.d/, which Kata merges in name order:
 * 10-installation-prefix, 20-debug, 30-kernel-params (agent proxy), 40-annotations. The copies
 * live outside the versioned tree, which stays exactly as the payload made it. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "err.h"

#define KD_KATA_RUNTIMES_DIR "runtimes"
#define KD_KATA_MAX_FILES 8

typedef struct kd_kata_opts {
	const char *prefix; /* absolute install prefix, "/opt/kata" */
	bool debug;
	const char *https_proxy; /* URL for every shim, or "shim=URL;shim=URL" */
	const char *no_proxy;	 /* the same forms */
	const char *annotations; /* "a b shim:c,d": bare words for all shims, shim: for one */
} kd_kata_opts;

typedef struct kd_kata_file {
	char path[512]; /* relative to the root */
	char *text;	/* owned */
} kd_kata_file;

bool kd_shim_is_rust(const char *shim);
/* The [hypervisor.X] section name of a shim: qemu, clh, firecracker, dragonball, ... */
const char *kd_shim_hypervisor(const char *shim);
/* Absolute shim binary and configuration path for a handler of this shim. */
void kd_kata_paths(const char *prefix, const char *shim, char *runtime_path, size_t rsize,
		   char *config_path, size_t csize);
/* The files for one shim, read from treefd (the version tree holding share/defaults/). */
int kd_kata_render(int treefd, const char *shim, const kd_kata_opts *o, kd_kata_file *ret,
		   size_t *ret_n, kd_error *err);
void kd_kata_files_free(kd_kata_file *f, size_t n);
/* Check the per-shim option syntax against the enabled shims. */
int kd_kata_validate(const kd_kata_opts *o, char *const *shims, kd_error *err);
