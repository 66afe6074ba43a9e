/* Custom runtimes and user drop-ins, from a directory laid out like upstream's /custom-configs
 * ConfigMap: custom-runtimes.list (one `handler:baseShim:snapshotter:pullType` per line) and
 * dropin-<shim|handler>.toml files. A custom runtime is one more handler, named freely, whose
 * Kata configuration starts from an enabled shim's and lives in runtimes/custom/<handler>/;
 * a user drop-in becomes config.d/50-user-overrides.toml of that shim or handler. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "err.h"

#define KD_CUSTOM_LIST "custom-runtimes.list"
#define KD_CUSTOM_MAX 64
#define KD_CUSTOM_FILE_MAX (256u << 10)

typedef struct kd_custom_runtime {
	char handler[64]; /* RuntimeClass handler: a DNS label */
	char base[64];	  /* the enabled shim whose configuration and binary it uses */
	char snapshotter[64];
	bool guest_pull; /* CRI-O runtime_pull_image */
} kd_custom_runtime;

/* Parse a list (name for messages): '#' comments and blank lines skipped; every error names
 * name:line. Handlers must be unique DNS labels; pull type "", default or guest-pull. */
int kd_custom_parse(const char *name, const char *text, kd_custom_runtime **ret, size_t *ret_n,
		    kd_error *err);
/* Read dir/custom-runtimes.list (a host path; symlinks followed, as in a ConfigMap mount).
 * A missing file is an empty list. */
int kd_custom_load(const char *dir, kd_custom_runtime **ret, size_t *ret_n, kd_error *err);
/* dir/dropin-<name>.toml, checked to be TOML: 0 with *ret = NULL when there is none. */
int kd_custom_dropin(const char *dir, const char *name, char **ret, kd_error *err);
/* A TOML file the admin gives on the host (containerd's user drop-in), read whole and checked
 * to be TOML; a missing file is an error that names it. */
int kd_custom_read_toml(const char *path, char **ret, kd_error *err);
