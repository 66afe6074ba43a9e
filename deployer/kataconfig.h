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
/* Where the payload's pristine files are read from: the version tree (fd, paths relative to it,
 * holding share/defaults/), or, when read is set, a callback (plan reads the payload itself and
 * has no tree on disk). */
typedef int (*kd_tree_read_fn)(void *userdata, const char *path, size_t max, char **ret_data,
			       size_t *ret_len, kd_error *err);
typedef struct kd_tree_src {
	int fd;
	kd_tree_read_fn read;
	void *userdata;
} kd_tree_src;

/* The files for one shim, read from the version tree. */
int kd_kata_render(const kd_tree_src *tree, const char *shim, const kd_kata_opts *o,
		   kd_kata_file *ret, size_t *ret_n, kd_error *err);
void kd_kata_files_free(kd_kata_file *f, size_t n);
/* Check the per-shim option syntax against the enabled shims. */
int kd_kata_validate(const kd_kata_opts *o, char *const *shims, kd_error *err);
