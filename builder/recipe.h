/* Recipes (docs/RECIPES.md): one YAML file per component in artifacts/recipes/, parsed once
 * through a key table into typed structs; the pinned versions file (artifacts/versions.yaml) and
 * the shim -> components map (artifacts/shims.yaml). Unknown keys, outputs outside opt/kata/ and
 * unknown {{variables}} are refused naming file:line. Nothing here builds or fetches. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define KD_RECIPE_MAX_SIZE (256u * 1024)    /* bytes of one recipe or versions file */
#define KD_RECIPE_MAX_ITEMS 256u	    /* sources, steps, outputs, files, inputs, vars */
#define KD_RECIPE_NAME_MAX 64u		    /* component, shim and variable names */
#define KD_RECIPE_OUTPUT_PREFIX "opt/kata/" /* every output lives here */
#define KD_RECIPE_UNPINNED "unpinned"	    /* a sha256 in versions.yaml nobody could pin yet */

typedef enum kd_source_kind {
	KD_SOURCE_URL, /* url + sha256, fetched into the content-addressed cache */
	KD_SOURCE_DEB, /* Debian package + exact version, fetched with apt-get download */
	KD_SOURCE_GIT, /* a forge's archive of a tag or commit, verified by its git tree id */
} kd_source_kind;

typedef struct kd_source {
	kd_source_kind kind;
	char *name;    /* file name in the build's source directory */
	char *url;     /* KD_SOURCE_URL */
	char *sha256;  /* KD_SOURCE_URL: pinned lowercase hex */
	char *deb;     /* KD_SOURCE_DEB: package name */
	char *version; /* KD_SOURCE_DEB: exact Debian version */
	char *git;     /* KD_SOURCE_GIT: repository URL (https://github.com/org/repo) */
	char *tag;     /* KD_SOURCE_GIT: tag, or */
	char *commit;  /* KD_SOURCE_GIT: full commit id (40 hex) */
	char *tree;    /* KD_SOURCE_GIT: the git tree id its archive must have (40 hex) */
} kd_source;

typedef struct kd_recipe {
	char *path;    /* file it was read from */
	char *name;    /* component name, equal to the file's base name */
	char *version; /* component version (usually {{var}} from versions.yaml) */
	char *description;
	char **inputs; /* components whose outputs this build reads (NULL-terminated) */
	char **files;  /* artifacts/ files copied into the build (NULL-terminated) */
	kd_source *sources;
	size_t n_sources;
	char **fetch;	   /* shell scripts run with the network in the fetch phase: language
			    * dependencies pinned by lock files (NULL-terminated, may be NULL) */
	char **toolchains; /* "rust", "go": put on PATH, their versions in the key */
	char **steps;	   /* shell scripts, run in order (NULL-terminated) */
	char **outputs;	   /* "opt/kata/..." paths; a trailing '/' means a whole directory */
	bool network;	   /* steps may use the network (default false: unshare -n) */
	char *bytes;	   /* the recipe file as read: part of the component's cache key */
	size_t len;
} kd_recipe;

typedef struct kd_var {
	char *name;
	char *value;
} kd_var;

typedef struct kd_versions {
	char *path;
	int64_t source_date_epoch;
	char *version; /* payload version */
	kd_var *vars;  /* pinned versions, usable as {{name}} in recipes */
	size_t n_vars;
	char *bytes;
	size_t len;
} kd_versions;

typedef struct kd_shim_map {
	char *name;
	char **components;
} kd_shim_map;

typedef struct kd_shims {
	kd_shim_map *shims; /* sorted by name */
	size_t n_shims;
	char **components;    /* union of all shims' components, sorted */
	char **upstream_only; /* upstream's shims no recipe here builds (sorted); may be NULL */
	char **debug_tools; /* components in no shim that installs add only with debug; may be NULL
			     */
	char **payload;	    /* the default payload: components + debug_tools, sorted */
} kd_shims;

int kd_versions_load(const char *path, kd_versions **ret, kd_error *err);
void kd_versions_free(kd_versions *v);
const char *kd_versions_get(const kd_versions *v, const char *name);

/* Parse a recipe; {{name}} in string values is replaced from versions (may be NULL: then any
 * {{...}} is an error). */
int kd_recipe_load(const char *path, const kd_versions *versions, kd_recipe **ret, kd_error *err);
int kd_recipe_parse(const char *data, size_t len, const char *name, const kd_versions *versions,
		    kd_recipe **ret, kd_error *err);
void kd_recipe_free(kd_recipe *r);

int kd_shims_load(const char *path, kd_shims **ret, kd_error *err);
void kd_shims_free(kd_shims *s);

/* True when s is a safe relative path: no empty, "." or ".." components, no leading '/'. A
 * trailing '/' is allowed when dir_ok. */
bool kd_recipe_path_safe(const char *s, bool dir_ok);

DEFINE_CLEANUP(kd_recipe *, kd_recipe_free)
DEFINE_CLEANUP(kd_versions *, kd_versions_free)
DEFINE_CLEANUP(kd_shims *, kd_shims_free)
#define _cleanup_recipe_ _cleanup_(kd_recipe_freep)
#define _cleanup_versions_ _cleanup_(kd_versions_freep)
#define _cleanup_shims_ _cleanup_(kd_shims_freep)
