/* containerd: which file gets our runtime handlers (the strategy) and what they look like.
 * The strategy follows the merge rules of the daemon that will read the file (docs/
 * RUNTIME-CONFIG.md): 2.x deep-merges drop-ins, 1.6/1.7 replace a whole plugin table from an
 * import (containerd#5837), so 1.x and unknown versions get an in-place edit. The handler tables
 * use the plugin id of the file's schema version and inherit runc's SystemdCgroup. */
#pragma once

#include <stdbool.h>

#include "err.h"
#include "flavour.h"
#include "kataconfig.h"
#include "toml.h"

#define KD_CONTAINERD_MAX_VERSION 4 /* newest config schema we know (containerd 2.3) */
#define KD_HANDLER_NAME_MAX 128

typedef enum kd_ctd_strategy {
	KD_CTD_INPLACE = 1,   /* our tables in an existing file, recorded for an exact revert */
	KD_CTD_CREATE_MAIN,   /* no config: a minimal one with our tables, removed on uninstall */
	KD_CTD_DROPIN,	      /* our own file in a directory the root config already imports */
	KD_CTD_DROPIN_IMPORT, /* our own file + an `imports` entry in the root config */
	KD_CTD_TEMPLATE,      /* k3s/rke2 1.x: a config.toml.tmpl = base template + our tables */
} kd_ctd_strategy;

typedef struct kd_ctd_plan {
	kd_ctd_strategy strategy;
	int version;				/* schema version of the tables we write */
	char target[KD_FLAVOUR_PATH_MAX];	/* file that holds our tables (relative) */
	char main[KD_FLAVOUR_PATH_MAX];		/* the root config (relative) */
	char import_entry[KD_FLAVOUR_PATH_MAX]; /* added to main's imports; "" = none */
	char why[256];				/* one line for logs and `plan` */
} kd_ctd_plan;

/* One runtime handler = one RuntimeClass handler. */
typedef struct kd_handler {
	char name[KD_HANDLER_NAME_MAX]; /* kata-qemu[-suffix][-debug|-devkit] */
	char shim[64];
	char runtime_path[KD_FLAVOUR_PATH_MAX]; /* absolute shim binary */
	char config_path[KD_FLAVOUR_PATH_MAX];	/* absolute Kata configuration */
	char snapshotter[64];			/* "" = containerd's default */
	bool guest_pull;			/* CRI-O: the runtime pulls images in the guest */
	kd_variant variant; /* KD_VARIANT_CUSTOM: a custom runtime, name is its handler */
} kd_handler;

/* Choose the strategy for flavour f (containerd flavours only); reads the root config and, for
 * 1.x, the files it imports. Refuses configs that are not TOML, unknown future versions and bad
 * imports, naming file:line. */
int kd_containerd_strategy(int rootfd, const kd_flavour *f, const char *suffix, kd_ctd_plan *ret,
			   kd_error *err);

/* Does an entry of imports, read from a file in dir (relative to the root), cover the
 * absolute path abs? */
bool kd_containerd_imports_cover(char *const *imports, const char *dir, const char *abs);

/* The CRI runtime plugin id for a schema version: "cri" (1), "io.containerd.grpc.v1.cri" (2),
 * "io.containerd.cri.v1.runtime" (3, 4). */
const char *kd_containerd_runtime_plugin(int version);

/* Add the handler tables to doc (and [debug] level when debug and doc has none). Each table
 * added is appended to *tables as a TOML key ("plugins.\"io.containerd.grpc.v1.cri\"...").
 * SystemdCgroup is copied from inherit_from's runc runtime (may be doc itself, or NULL). */
int kd_containerd_add_handlers(kd_toml_doc *doc, int version, const kd_handler *h, size_t n,
			       const kd_toml_doc *inherit_from, bool debug, char ***tables,
			       kd_error *err);

/* The snapshotters kata-deploy sets up (upstream's EXPERIMENTAL_SETUP_SNAPSHOTTER): nydus is the
 * managed nydus-for-kata-tee[-suffix] proxy snapshotter (a systemd service of ours, see
 * snapshotter.h), erofs is containerd 2.2's built-in erofs snapshotter and differ. */
#define KD_NYDUS_NAME "nydus-for-kata-tee"
typedef struct kd_snap_setup {
	bool nydus;
	char nydus_name[96]; /* nydus-for-kata-tee[-suffix]: proxy plugin, socket and root dir */
	bool erofs;
	bool erofs_unmerged; /* EROFS_MERGE_MODE=unmerged: no max_unmerged_layers = 0 */
	bool erofs_memory;   /* EROFS_SNAPSHOTTER_MODE=memory: default_size "0" (else "10G") */
	bool erofs_dmverity; /* EROFS_DMVERITY */
} kd_snap_setup;

/* Add the plugin settings of the snapshotters in s to doc, each table that doc lacks as a table
 * of ours (appended to *tables). A table doc already has (an admin's) is left alone when it
 * holds our values, and refused otherwise, naming the keys to set: kata-deploy edits no table
 * it did not add. Call it before kd_containerd_add_handlers (the images plugin table then
 * precedes the handlers' runtime_platforms sub-tables). */
int kd_containerd_add_snapshotters(kd_toml_doc *doc, int version, const kd_snap_setup *s,
				   char ***tables, kd_error *err);

/* containerd's built-in runtime (1.6 to 2.x): its name is the built-in default_runtime_name. */
#define KD_CONTAINERD_DEFAULT_RUNTIME "runc"
#define KD_CONTAINERD_DEFAULT_RUNTIME_TYPE "io.containerd.runc.v2"
/* containerd 1.6/1.7 decode a file's `runtimes` table over the built-in map by replacing it, so
 * a file that had none and gets our handlers loses the built-in runc (and default_runtime_name
 * no longer resolves: every non-Kata pod fails). When doc names no runtime, add the built-in one
 * as containerd's default gives it (runtime_type only: its options are all zero values) and
 * record the table in *tables like ours. Returns 1 when it was added, 0 when not needed. */
int kd_containerd_keep_default_runtime(kd_toml_doc *doc, int version, char ***tables,
				       kd_error *err);
/* containerd 2.x merges the main file's imports over it (containerd PR #9982), so the runc
 * options the daemon ends up with come from the last imported file that sets them, else from the
 * main file. *ret is that document (new), or NULL when none sets them; skip (relative path, may be
 * NULL) is our own drop-in. */
int kd_containerd_runc_source(int rootfd, const char *main, const kd_toml_doc *main_doc,
			      int version, const char *skip, kd_toml_doc **ret, kd_error *err);

/* The skeleton of a file we create: a comment and `version = N`. Static storage. */
const char *kd_containerd_skeleton(int version);
/* The first line of a k3s/rke2 template we create. */
#define KD_K3S_TEMPLATE_BASE "{{ template \"base\" . }}\n"

/* TOML keys <-> path parts: "a.\"b.c\".d" <-> {"a", "b.c", "d"}. Returns the number of parts or
 * -EINVAL. parts point into buf. */
int kd_toml_key_split(const char *key, char *buf, size_t size, const char **parts, size_t max);
int kd_toml_key_join(const char *const *parts, size_t n, char *out, size_t size);
