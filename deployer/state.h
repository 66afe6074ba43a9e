/* What kata-deploy has done to a host, kept in <state dir>/state.json: the installed versions
 * (current and previous), the directories and links we created, the runtime config files we
 * changed, and the payload source we last installed from (for the cheap no-op check). Loaded and
 * saved as a typed struct; the journal makes each save part of a transaction. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "err.h"

#define KD_STATE_FORMAT 1
#define KD_STATE_FILE "state.json"
#define KD_STATE_MAX_SIZE (16u << 20)

typedef struct kd_version {
	char id[17];	 /* version directory name: hash of payload digest + components */
	char digest[65]; /* sha256 of the payload file */
	char *version;	 /* payload version from its manifest */
	char **shims;
	char **components;
	char *installed_at; /* RFC 3339 UTC */
} kd_version;

typedef struct kd_source_stat {
	char *path; /* absolute path of the payload file on the host running us, or URL */
	uint64_t dev, ino, size;
	int64_t mtime_ns, ctime_ns;
	char digest[65];
} kd_source_stat;

/* One runtime config file we changed, with what uninstall needs for a three-way revert
 * (docs/RUNTIME-CONFIG.md): the bytes before our change, the digest of what we wrote, and each
 * table / import entry we inserted. */
typedef struct kd_config_file {
	char *path;	     /* relative to the root */
	bool created;	     /* it did not exist: removed on uninstall */
	bool whole;	     /* every byte is ours (drop-ins, copies): no table-level revert */
	char *base;	     /* bytes before our change (created: the skeleton we built on) */
	char result_sha[65]; /* sha256 of the bytes we wrote */
	uint64_t result_len; /* how many (0: not recorded, a state of an older kata-deploy) */
	unsigned mode;	     /* file mode we wrote with */
	char **tables;	     /* tables we added, as TOML keys, in the order we added them */
	char **texts;	     /* the exact text of each table as we wrote it */
	char **imports;	     /* the `imports` entries we added, in order, or NULL */
	bool import_key;     /* we created the `imports` key itself */
} kd_config_file;

void kd_config_file_done(kd_config_file *f);

typedef struct kd_state {
	char *prefix; /* relative to the root, e.g. "opt/kata" */
	char *phase;  /* "installed" or "uninstalling" */
	bool has_current, has_previous;
	kd_version current, previous;
	char **created_dirs; /* directories we created outside the state dir, outermost first */
	char **state_dirs;  /* the state dir and the ancestors we created for it, outermost first */
	char **links;	    /* links we created in the prefix (relative to the root) */
	char **shared_dirs; /* directories another kata-deploy install created that ours uses too
			     * (e.g. etc/containerd/conf.d for both suffixes): whoever uninstalls
			     * last removes them, if empty */
	char **config_files; /* runtime config files we changed (the runtime-config step owns them)
			      */
	kd_source_stat source;
	kd_config_file *config; /* the runtime-config step's records (runtime.c) */
	size_t n_config;
	char *runtime_json;   /* runtime options and detected flavour, JSON text (runtime.c) */
	bool restart_pending; /* the runtime must still be restarted to load the config */
} kd_state;

void kd_state_init(kd_state *s);
void kd_state_done(kd_state *s);
void kd_version_done(kd_version *v);
int kd_version_copy(kd_version *dst, const kd_version *src);

/* Load state_dir/state.json; -ENOENT when there is none (s is then initialised and empty). */
int kd_state_load(int rootfd, const char *state_dir, kd_state *s, kd_error *err);
/* The links of the installed version are there as the install made them: <prefix>/current ->
 * .versions/<current id>, and every top-level link we created -> current/<name>. A no-op
 * re-install needs this (a removed opt/kata/bin is repaired by re-installing). */
bool kd_state_links_intact(int rootfd, const kd_state *s);
/* Save atomically (the caller journals the file first). */
int kd_state_save(int rootfd, const char *state_dir, const kd_state *s, kd_error *err);
