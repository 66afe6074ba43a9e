/* The runtime-config step of install / rollback / uninstall: compute every file change as
 * (path, old bytes, new bytes) with the record uninstall needs, validate the result with our
 * TOML parser and the runtime's own loader, apply it through the journal, and decide the
 * restart. Uninstall reverts each file three-way: our bytes still there → the original bytes;
 * changed since → only our tables / import entry removed; our own tables edited → left alone
 * with a loud warning. See docs/RUNTIME-CONFIG.md. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "containerd.h"
#include "err.h"
#include "flavour.h"
#include "journal.h"
#include "kataconfig.h"
#include "state.h"

typedef struct kd_runtime_opts {
	const char *runtime;	     /* containerd|crio|auto|none (NULL: auto) */
	const char *runtime_version; /* when the binary cannot be asked */
	const char *runtime_binary;  /* loader for validation and version (host path) */
	const char *distribution;    /* k8s|k3s|rke2|k0s|microk8s|auto */
	const char *config_path;     /* main config override, inside the root */
	const char *restart; /* systemd|none|command:CMD (NULL: systemd on "/", else none) */
	const char *suffix;  /* multi-install: handlers kata-<shim>-<suffix> */
	bool debug;	     /* runtime debug logging + kata-<shim>[-suffix]-debug handlers */
	bool devkit;	     /* + kata-<shim>[-suffix]-devkit handlers (needs debug) */
	const char *agent_https_proxy, *agent_no_proxy;
	const char *allowed_hypervisor_annotations;
	const char *snapshotter_handler_mapping; /* shim:snapshotter,... */
	const char *pull_type_mapping;		 /* shim:guest-pull|default,... (CRI-O) */
	const char *default_shim;
	const char *custom_configs; /* host dir: dropin-<shim|handler>.toml, custom-runtimes.list */
	bool custom_runtimes;	    /* add the handlers of custom_configs/custom-runtimes.list */
	/* Shims asked for that the payload does not have (install's skip_missing_shims),
	 * comma-separated: mapping entries and the default shim may name them (they are unused),
	 * custom runtimes based on them are left out. */
	const char *absent_shims;
	/* Snapshotters to set up (upstream's EXPERIMENTAL_SETUP_SNAPSHOTTER): "nydus,erofs". With
	 * nydus, a mapping to "nydus" names the managed nydus-for-kata-tee[-suffix]. */
	const char *snapshotter_setup;
	const char *erofs_merge_mode;	    /* merged (default) | unmerged */
	const char *erofs_snapshotter_mode; /* disk (default) | memory */
	bool erofs_dmverity;
	/* nydus in snapshotter_setup but no nydus-snapshotter component in the payload: leave
	 * nydus out with a warning instead of refusing (the agent: one missing component must
	 * not fail a whole node; the host CLI refuses). */
	bool snapshotter_optional;
	/* Shims whose Kata runtime pulls images in the guest: experimental_force_guest_pull
	 * (upstream's EXPERIMENTAL_FORCE_GUEST_PULL_<ARCH>), comma-separated. */
	const char *force_guest_pull;
	/* The admin's containerd drop-in (a host path; upstream's containerd.userDropIn), copied
	 * beside ours and merged after it (containerd 2.x only). */
	const char *containerd_user_dropin;
} kd_runtime_opts;

typedef struct kd_change {
	char path[KD_FLAVOUR_PATH_MAX]; /* relative to the root */
	char *old;			/* current bytes, NULL when absent */
	size_t old_len;
	char *new_text; /* bytes to write, NULL: remove the file */
	size_t new_len;
	unsigned mode;
	bool has_record; /* rec describes the file after the change */
	kd_config_file rec;
} kd_change;

typedef struct kd_config_plan {
	kd_flavour flavour;
	kd_ctd_plan ctd;    /* containerd flavours */
	kd_change *changes; /* every file we manage, changed or not */
	size_t n;
	char **dirs;	      /* directories to create first, outermost first */
	char *opts_json;      /* options + flavour, kept in the state for rollback / uninstall */
	char **prev_handlers; /* runtime handlers the previous install configured (may go away) */
	bool root_is_host;
	unsigned inexact; /* files not reverted byte for byte (each said so in a warning) */
} kd_config_plan;

typedef struct kd_runtime_input {
	int rootfd;
	const char *prefix;	   /* relative to the root */
	int treefd;		   /* the version tree (holds share/defaults/kata-containers) */
	kd_tree_read_fn read_tree; /* instead of treefd when set (plan: no tree on disk) */
	void *read_tree_userdata;
	kd_tree_exists_fn tree_exists; /* with read_tree */
	char *const *shims;
	bool root_is_host;
	const kd_state *prev; /* the state before this run (records of earlier runs), or NULL */
} kd_runtime_input;

/* Options from / to the JSON kept in the state. */
int kd_runtime_opts_from_json(const char *json, kd_runtime_opts *ret, char ***ret_storage,
			      kd_error *err);

int kd_runtime_plan(const kd_runtime_input *in, const kd_runtime_opts *o, kd_config_plan *ret,
		    kd_error *err);
/* The plan for uninstall: revert every recorded file. */
int kd_runtime_plan_revert(int rootfd, const kd_state *s, bool root_is_host, kd_config_plan *ret,
			   kd_error *err);
void kd_config_plan_done(kd_config_plan *p);
/* True if applying the plan changes a byte. */
bool kd_runtime_changed(const kd_config_plan *p);
/* Our parser on every new file, then the runtime's own loader when there is one; then a
 * writability check. Nothing is written to the root. */
int kd_runtime_validate(int rootfd, const kd_config_plan *p, const kd_runtime_opts *o,
			kd_error *err);
/* Journal and apply each change; directories made are appended to *created_dirs. */
int kd_runtime_apply(kd_journal *j, int rootfd, const kd_config_plan *p, char ***created_dirs,
		     kd_error *err);
/* Apply without a journal, each write atomic (uninstall rolls forward). */
int kd_runtime_apply_direct(int rootfd, const kd_config_plan *p, kd_error *err);
/* Move the records of the plan into the state (replacing the old ones). */
int kd_runtime_update_state(kd_config_plan *p, kd_state *s);
