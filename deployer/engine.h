/* The host install engine: install a payload into a versioned directory under a root and switch
 * to it atomically, roll back to the previous version, uninstall everything byte for byte, and
 * report status. Every change goes through the journal (journal.h) under a host lock. The CLI
 * (main.c) and the node agent both drive the host only through this API. */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>

#include "err.h"
#include "journal.h"
#include "payload.h"
#include "runtime.h"

#define KD_DEFAULT_PREFIX "/opt/kata"
#define KD_DEFAULT_STATE_DIR "/var/lib/kata-deploy"
#define KD_DEFAULT_LOCK_TIMEOUT_S 60
#define KD_VERSIONS_DIR ".versions"
#define KD_CURRENT_LINK "current"
/* The host lock <root>/run/KD_LOCK_DIR_NAME/KD_LOCK_FILE_NAME (engine.c). */
#define KD_LOCK_DIR_NAME "kata-deploy"
#define KD_LOCK_FILE_NAME "lock"

typedef struct kd_engine_opts {
	const char *prefix;    /* NULL = KD_DEFAULT_PREFIX */
	const char *state_dir; /* NULL = KD_DEFAULT_STATE_DIR */
	int lock_timeout_s;    /* 0 = KD_DEFAULT_LOCK_TIMEOUT_S, < 0 = fail at once */
	const char *restart; /* uninstall / rollback: override the --restart recorded at install */
} kd_engine_opts;

typedef struct kd_install_opts {
	kd_engine_opts e;
	const char *payload;	/* local path, http(s) URL or oci://REGISTRY/REPO:TAG */
	const char *sha256;	/* expected payload digest (oci://: of the artifact's manifest) */
	const char *public_key; /* verify <payload>.sig (or signature) with this key */
	const char *signature;	/* default: payload + ".sig" */
	char **shims;		/* NULL = every shim of the payload */
	bool progress;		/* download and extraction progress on stderr (docs/ERRORS.md) */
	/* Shims the payload does not have are left out (and listed in the result) instead of
	 * refused; the install fails only when none of the shims is in the payload. */
	bool skip_missing_shims;
	const char *arch; /* the root's machine architecture; NULL: this machine's */
	/* oci:// payloads (deployer/pull.h) */
	const char *registry_auth; /* docker config JSON with the registry's credentials */
	const char *registry_ca;   /* CA bundle for the registry's TLS, NULL: the system's */
	const char *blob_cache;	   /* NULL: $TMPDIR or /var/tmp + /kata-deploy-blobs */
	bool plain_http;	   /* the registry over http:// */
	kd_runtime_opts rt;	   /* runtime configuration (docs/RUNTIME-CONFIG.md) */
} kd_install_opts;

typedef struct kd_install_result {
	bool changed;	     /* false: the same payload and shims were already installed */
	bool config_changed; /* a runtime config file changed */
	char id[17];	     /* version directory */
	char version[128];   /* payload version */
	kd_extract_stats stats;
	char **shims;	/* the shims installed (sorted); free with kd_install_result_done */
	char **skipped; /* asked for, not in the payload (skip_missing_shims); may be empty */
} kd_install_result;

void kd_install_result_done(kd_install_result *r);

int kd_engine_install(int rootfd, const kd_install_opts *o, kd_install_result *ret, kd_error *err);
/* Removes every version, link, directory and state file we created; *ret_changed is false when
 * nothing was installed. *ret_kept (may be NULL) counts what could not be restored or removed
 * exactly (a config file changed since install, a link or directory no longer only ours), each
 * named in a warning: 0 means the root is as it was before the first install. */
int kd_engine_uninstall(int rootfd, const kd_engine_opts *o, bool *ret_changed, unsigned *ret_kept,
			kd_error *err);
/* Switch back to the previous version (which becomes the new previous). */
int kd_engine_rollback(int rootfd, const kd_engine_opts *o, kd_error *err);
/* Finish or undo an interrupted install, rollback or uninstall, and nothing else. */
int kd_engine_recover(int rootfd, const kd_engine_opts *o, kd_error *err);
/* Installed versions, shims, links and journal state as JSON (NULL fields when not installed). */
int kd_engine_status(int rootfd, const kd_engine_opts *o, struct json_object **ret, kd_error *err);
/* What install with these options would do, without writing anything to the root (a shared lock
 * only): a summary of the payload step and a unified diff of every runtime config file, and the
 * restart. *ret_text is new; *ret_changes is false when the install would change nothing. */
int kd_engine_plan(int rootfd, const kd_install_opts *o, char **ret_text, bool *ret_changes,
		   kd_error *err);

/* Shared by the engine's files (not for callers outside deployer/). */
typedef struct kd_ctx {
	int rootfd;
	int lockfd;	     /* the locked file (or the root itself, see engine.c) */
	int lockdir;	     /* <root>/run/kata-deploy, -1 when the root is locked */
	char prefix[512];    /* relative to the root, no leading '/' */
	char state_dir[512]; /* relative to the root */
} kd_ctx;

int kd_ctx_open(kd_ctx *c, int rootfd, const kd_engine_opts *o, kd_error *err);
/* The same with a shared lock: readers (plan) run beside each other, never beside a writer. */
int kd_ctx_open_shared(kd_ctx *c, int rootfd, const kd_engine_opts *o, kd_error *err);
void kd_ctx_close(kd_ctx *c);
/* Recover an interrupted run and remove temporary debris; then finish an interrupted
 * uninstall if the state says one was under way. */
int kd_ctx_recover(kd_ctx *c, kd_error *err);
int kd_engine_uninstall_locked(kd_ctx *c, const char *restart, bool *ret_changed,
			       unsigned *ret_kept, kd_error *err);
/* The runtime-config step inside a transaction (install, rollback): plan against the version
 * tree id, validate, apply, update s. *ret_changed: a config file changed. */
int kd_engine_config_step(kd_ctx *c, kd_journal *j, kd_state *s, const char *id, char *const *shims,
			  const kd_runtime_opts *o, char ***created_dirs, bool *ret_changed,
			  kd_error *err);
/* After the commit: remove the now empty Kata configuration directories of handlers no longer
 * configured, then restart the runtime if s says one is pending and clear the flag. */
int kd_engine_after_commit(kd_ctx *c, kd_state *s, const char *restart, kd_error *err);
/* Directories made for the files of a handler no longer configured (a debug variant turned
 * off): removed once empty, and dropped from s (saved). Only the Kata configuration directories
 * under <prefix>/runtimes/ are considered. After a commit, and by recover (a run killed between
 * its commit and this). */
int kd_engine_prune_dirs(kd_ctx *c, kd_state *s, kd_error *err);
/* The directories other kata-deploy installs on this root record as created, state or shared
 * dirs (their states under the default state dir, its subdirectories and ours), appended to *ret
 * (a string vector). Called with the host lock held. */
int kd_engine_others_dirs(kd_ctx *c, char ***ret);
bool kd_root_is_host(int rootfd);
/* Whether a config change makes kd_restart do something (a unit, a mode other than none). */
bool kd_engine_restart_needed(const char *restart, const kd_flavour *f, bool root_is_host);
/* install.c's steps that plan.c repeats without writing. */
/* The payload of o, opened and verified: a local file, an http(s) download, or an oci:// pull
 * of only the chosen shims' components (deployer/pull.h). */
/* defer_digest: kd_payload_verify's, for a payload nothing authenticates. */
int kd_install_open_payload(const kd_install_opts *o, bool defer_digest, kd_payload **ret,
			    kd_error *err);
void kd_install_version_id(const char *digest, char **components, char out[17]);
/* A payload built for another architecture than the root's machine (arch, or this machine's) is
 * refused; x86_64/amd64 and aarch64/arm64 are the same. */
int kd_install_check_arch(const kd_manifest *m, const char *arch, kd_error *err);
int kd_install_toplevel_names(const kd_manifest *m, const bool *mask, char ***ret, kd_error *err);
int kd_install_check_links(kd_ctx *c, char **names, kd_error *err);
int kd_install_load_manifest(kd_ctx *c, const char *id, kd_manifest **ret, kd_error *err);
int kd_install_version_intact(kd_ctx *c, const kd_version *v, bool rehash, kd_error *err);
