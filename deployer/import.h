/* Upstream's release tarballs (kata-static-<version>-<arch>.tar.zst|xz) as payloads: read the
 * tarball with every entry checked, split its opt/kata tree into upstream's components
 * (kata-static-<component>), find the shims from the Go runtime's and runtime-rs's
 * configuration files and give each shim the components its configuration names, then pack a
 * payload with kd_payload_pack(). Also the layout sniffing behind install's "import it first"
 * message and the shim inference of `payload pack` without a spec. docs/PAYLOAD.md. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "digest.h"
#include "err.h"
#include "payload.h"
#include "tarball.h"

/* The prefix upstream builds with: configuration paths under it are references into the tree. */
#define KD_IMPORT_UPSTREAM_PREFIX "/opt/kata/"
#define KD_IMPORT_GO_CONFIG_DIR "share/defaults/kata-containers/"
#define KD_IMPORT_RS_CONFIG_DIR "share/defaults/kata-containers/runtime-rs/"
#define KD_IMPORT_GO_SHIM_BINARY "bin/containerd-shim-kata-v2"
#define KD_IMPORT_RS_SHIM_BINARY "runtime-rs/bin/containerd-shim-kata-v2"
/* Files of no upstream component go here; every shim needs it. */
#define KD_IMPORT_COMMON "common"
#define KD_IMPORT_MAX_CONFIG (1u << 20) /* bytes of one shim configuration */
#define KD_IMPORT_MAX_SHIM_NAME 40	/* handlers are kata-<shim>[-suffix][-debug]: 63 max */
#define KD_IMPORT_MAX_LINK_HOPS 40

typedef enum kd_import_kind {
	KD_IMPORT_NOT_TAR = 0, /* not a tar archive we can read */
	KD_IMPORT_PAYLOAD,     /* first entry kata-payload.json: our payload */
	KD_IMPORT_UPSTREAM,    /* an opt/kata/ tree without a manifest: upstream's layout */
	KD_IMPORT_OTHER,       /* some other tar */
} kd_import_kind;

/* Classify a tar by the paths of its first entries (as stored). */
kd_import_kind kd_import_detect(const char *const *paths, size_t n);
/* Read at most the first 16 entries of the archive in fd and classify it. Never fails: a file
 * that cannot be read as tar is KD_IMPORT_NOT_TAR. */
kd_import_kind kd_import_sniff(int fd);

/* An upstream entry path ("./opt/kata/bin/x", "opt/kata/bin/x") → the path below opt/kata/.
 * Returns 1 with *ret_rel pointing into path, 0 for the top directories ".", "opt", "opt/kata"
 * (which carry nothing), or -EINVAL with a message naming the path (absolute, "..", outside
 * opt/kata/, ...). */
int kd_import_entry_path(const char *path, const char **ret_rel, kd_error *err);
/* A symlink at rel (below opt/kata/) with text target: relative, and resolved lexically from
 * rel's directory it stays inside opt/kata/. */
bool kd_import_link_ok(const char *rel, const char *target);

/* Is rel (below opt/kata/) a shim configuration? 1: *shim is its name and *ret_rust says which
 * runtime reads it; 0: not a configuration-<name>.toml of either directory; -EINVAL: a
 * configuration the install engine could not use as a shim, *ret_reason says why. The engine
 * reads runtime-rs's copy for exactly the shims kd_shim_is_rust() names, so only those are
 * taken from runtime-rs/ and only the others from the Go runtime's directory. */
int kd_import_config_shim(const char *rel, char *shim, size_t size, bool *ret_rust,
			  const char **ret_reason);

/* The tree of an upstream tarball, in memory. */
typedef struct kd_imp_entry {
	char *path;	    /* below opt/kata/ */
	kd_entry_type type; /* KD_ENTRY_FILE, _DIR or _SYMLINK (hardlinks are files here) */
	char *link;	    /* symlink text */
	uint64_t size;
	char *component; /* after kd_import_assign() */
} kd_imp_entry;

typedef struct kd_imp_tree {
	kd_imp_entry *e;
	size_t n, cap;
	bool sorted;
} kd_imp_tree;

int kd_imp_tree_add(kd_imp_tree *t, const char *path, kd_entry_type type, const char *link,
		    uint64_t size, kd_error *err);
void kd_imp_tree_done(kd_imp_tree *t);
const kd_imp_entry *kd_imp_tree_find(const kd_imp_tree *t, const char *path);

/* Sort the tree and give every entry its upstream component (docs/PAYLOAD.md, "Importing
 * upstream release tarballs"): path rules for the runtimes, hypervisors, virtiofsd, nydus and
 * firmware; in share/kata-containers/ the kernel and guest image symlinks name the component
 * of what they point at; a kernel's config-/System.map- files follow its vmlinux; anything
 * else is KD_IMPORT_COMMON. */
int kd_import_assign(kd_imp_tree *t, kd_error *err);

/* The components one shim needs: its runtime's (configuration and shim binary), every
 * component on the way to each /opt/kata/ path its configuration names (symlinks followed,
 * all of a directory), and KD_IMPORT_COMMON when the tree has it. A path given as a plain
 * value must exist (-ENOENT names the key and the path); array entries (allowlists such as
 * valid_hypervisor_paths) count only when they exist. *ret is sorted. */
int kd_import_shim_components(const kd_imp_tree *t, const char *shim, bool rust, const char *config,
			      size_t len, char ***ret, kd_error *err);

typedef struct kd_import_opts {
	const char *sha256;   /* expected sha256 of the input file; NULL: not checked */
	const char *version;  /* default: opt/kata/VERSION, else the file name */
	const char *arch;     /* default: from the file name (amd64 → x86_64, ...) */
	char *const *shims;   /* import only these (each must work); NULL: every shim that works */
	const char *sign_key; /* as kd_pack_opts */
	const char *sign_pubkey; /* as kd_pack_opts */
	int zstd_level;
	int threads;
	int64_t mtime;
	const kd_payload_limits *limits; /* NULL: the KD_PAYLOAD_MAX_* defaults */
} kd_import_opts;

typedef struct kd_import_shim {
	char *name;
	bool rust;
	char **components;
	uint64_t bytes; /* of the files of its components */
} kd_import_shim;

typedef struct kd_import_result {
	char sha256[KD_SHA256_HEX_LEN + 1];
	char *version, *arch;
	size_t go_configs, rs_configs; /* configuration-*.toml files seen in each directory */
	kd_import_shim *shims;
	size_t n_shims;
	char **left_out;   /* "shim: reason" for each configuration not imported */
	char **components; /* "name (N files, B bytes)" */
	uint64_t files, bytes;
} kd_import_result;

/* Import in_path into a payload at out_path. The input is hashed first (and compared with
 * o->sha256), then read once; it must not change meanwhile. The tree is staged in a
 * KD_TMP_PREFIX directory next to out_path, removed again whatever happens. */
int kd_import(const char *in_path, const char *out_path, const kd_import_opts *o,
	      kd_import_result *ret, kd_error *err);
void kd_import_result_done(kd_import_result *r);

/* `payload pack DIR` without a spec: a spec (JSON, written to a temporary file whose path is
 * returned; the caller unlinks it) with one component "kata" holding the whole tree and a shim
 * for every configuration of either runtime that kd_import_config_shim() accepts. The version
 * is left to the caller. *ret_left_out lists the configurations that were not shims and why. */
int kd_import_pack_spec(const char *srcdir, char **ret_spec_path, char ***ret_left_out,
			kd_error *err);

/* "kata-static-4.1.0-amd64.tar.zst" (any directory, kata-go-static- too) → "4.1.0" and
 * "x86_64" (amd64 → x86_64, arm64 → aarch64). Each is "" when the name does not tell. */
void kd_import_parse_name(const char *path, char *ret_version, size_t vsize, char *ret_arch,
			  size_t asize);
