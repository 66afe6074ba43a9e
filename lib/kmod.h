/* Kernel modules through libkmod, on any host root: is a module built in, loaded, available
 * (a .ko the modules index knows) or missing, and load it (or only plan the load: dry run).
 * libkmod always reads the real /sys/module for "loaded", so loaded-ness is computed here from
 * <root>/sys/module/<name>/initstate and <root>/proc/modules; tests point everything at a fake
 * root. No libkmod type leaves this module. */
#pragma once

#include <stdbool.h>

#include "err.h"

/* Largest index file we are willing to hand to libkmod (real ones are < 2 MiB). */
#define KD_KMOD_INDEX_MAX (64u * 1024 * 1024)
/* Longest module name accepted (the kernel's MODULE_NAME_LEN is 56). */
#define KD_KMOD_NAME_MAX 64

typedef struct kd_kmod kd_kmod;

typedef enum kd_module_state {
	KD_MODULE_MISSING = 0, /* not built in, not loaded, no .ko in the index */
	KD_MODULE_AVAILABLE,   /* a loadable .ko exists */
	KD_MODULE_LOADED,      /* present in <root>/sys/module or <root>/proc/modules */
	KD_MODULE_BUILTIN,     /* compiled into the kernel (modules.builtin) */
} kd_module_state;

/* Open a module context.
 * rootfd: the host root whose sys/module and proc/modules tell what is loaded.
 * modules_dir: absolute path of the modules tree (".../lib/modules/<release>"), which must hold
 *   the binary indexes depmod writes; they are sanity-checked before libkmod maps them, so a
 *   broken index is a clear error rather than a crash.
 * config_dirs: NULL-terminated list of modprobe.d directories, or NULL for libkmod's defaults. */
int kd_kmod_open(int rootfd, const char *modules_dir, const char *const *config_dirs, kd_kmod **ret,
		 kd_error *err);
void kd_kmod_free(kd_kmod *k);
DEFINE_CLEANUP(kd_kmod *, kd_kmod_free)
#define _cleanup_kmod_ _cleanup_(kd_kmod_freep)

const char *kd_kmod_dirname(const kd_kmod *k);

/* State of a module given by name or alias ("vhost-vsock", "char-major-10-241"). When ret_path
 * is not NULL and the module is backed by a .ko, *ret_path gets its absolute path (malloc'd),
 * else NULL. */
int kd_kmod_state(kd_kmod *k, const char *name, kd_module_state *ret_state, char **ret_path,
		  kd_error *err);

enum {
	KD_KMOD_LOAD_DRY_RUN = 1 << 0, /* only report what would be inserted */
};

/* Called once per module insmod'ed (or, in a dry run, that would be): path and options. */
typedef void (*kd_kmod_action_fn)(const char *module, const char *path, const char *options,
				  void *userdata);

/* Load a module with its dependencies and modprobe.d options, honouring blacklists. Modules
 * that <root> reports loaded are not inserted again. */
int kd_kmod_load(kd_kmod *k, const char *name, unsigned flags, kd_kmod_action_fn action,
		 void *userdata, kd_error *err);

const char *kd_module_state_to_string(kd_module_state s);
