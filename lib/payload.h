/* The payload format (docs/PAYLOAD.md): one zstd-compressed tar whose first entry is the
 * manifest "kata-payload.json", followed by the tree under "opt/kata/", and an optional detached
 * signature "<payload>.sig" over the payload's sha256. Format 2 (written) puts every component
 * in its own zstd frame, named in the manifest by sha256 and size and found through an index
 * at the end, so that extraction reads only the selected components; format 1 (one stream,
 * sorted entries) is still read. This module packs a payload from a directory, opens and
 * verifies one, and extracts selected components into a directory fd with every entry checked
 * against the manifest. It knows nothing of installs. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "digest.h"
#include "err.h"
#include "strpool.h"

#define KD_PAYLOAD_FORMAT 2	/* written */
#define KD_PAYLOAD_FORMAT_MIN 1 /* oldest still read */
#define KD_PAYLOAD_MANIFEST_NAME "kata-payload.json"
#define KD_PAYLOAD_TREE_PREFIX "opt/kata/"
/* The signed message is this context followed by the payload's hex sha256. */
#define KD_PAYLOAD_SIG_CONTEXT "kata-deploy payload v1\n"

/* Limits on what a payload may contain; each has its own error message. */
#define KD_PAYLOAD_MAX_MANIFEST (16u << 20)    /* manifest JSON bytes */
#define KD_PAYLOAD_MAX_ENTRIES 200000u	       /* tar entries */
#define KD_PAYLOAD_MAX_ENTRY_SIZE (4ull << 30) /* one file */
#define KD_PAYLOAD_MAX_TOTAL (32ull << 30)     /* all files, uncompressed */

typedef enum kd_file_type {
	KD_FILE_REG,
	KD_FILE_DIR,
	KD_FILE_SYMLINK,
	KD_FILE_HARDLINK,
} kd_file_type;

typedef struct kd_pfile {
	char *path; /* relative to opt/kata/, e.g. "bin/containerd-shim-kata-v2" */
	kd_file_type type;
	mode_t mode;	  /* permission bits only; setuid/setgid/sticky are refused */
	uint64_t size;	  /* KD_FILE_REG */
	char *target;	  /* KD_FILE_SYMLINK: link text (relative, stays inside the tree);
			     KD_FILE_HARDLINK: path (relative to opt/kata/) of an earlier file */
	size_t component; /* index into kd_manifest.components */
	/* KD_FILE_REG (and a hardlink: its target's): the digest itself, not its hex (the JSON
	 * form), which would double the largest part of a manifest held in memory. */
	uint8_t sha256[KD_SHA256_LEN];
} kd_pfile;

typedef struct kd_component {
	char *name;
	char *version;
	/* Format 2: the component's zstd frame (its "blob"), which holds its tar entries. */
	char blob_sha256[65]; /* lowercase hex sha256 of the compressed frame */
	uint64_t blob_size;   /* compressed bytes */
	uint64_t tar_size;    /* tar bytes it decompresses to */
} kd_component;

typedef struct kd_shim {
	char *name;	   /* "qemu", "clh", ... */
	char **components; /* names of the components this shim needs */
	size_t n_components;
} kd_shim;

typedef struct kd_manifest {
	int format;
	char *version; /* payload version, e.g. "3.21.0" */
	char *arch;    /* "x86_64", "aarch64", ... */
	kd_component *components;
	size_t n_components;
	kd_pfile *files; /* sorted by path */
	size_t n_files;
	kd_shim *shims; /* sorted by name */
	size_t n_shims;
	char *signing_key;   /* sha256 fingerprint of the key that signs this payload, or NULL */
	kd_strpool *strings; /* the files' path and target strings */
} kd_manifest;

int kd_manifest_parse(const char *json, size_t len, kd_manifest **ret, kd_error *err);
int kd_manifest_to_json(const kd_manifest *m, char **ret_json, kd_error *err);
void kd_manifest_free(kd_manifest *m);
const kd_pfile *kd_manifest_find(const kd_manifest *m, const char *path);
const kd_shim *kd_manifest_find_shim(const kd_manifest *m, const char *name);
/* Mark in mask (n_components entries) the components the given shims need. shims == NULL means
 * every shim. An unknown shim fails with a message listing the known ones. */
int kd_manifest_select(const kd_manifest *m, const char *const *shims, size_t n_shims, bool *mask,
		       kd_error *err);

typedef struct kd_pack_opts {
	/* YAML/JSON: version, arch, components (name, version, paths), shims; NULL = one
	 * component "kata" with every file and shims inferred from
	 * share/defaults/kata-containers/configuration-<shim>.toml */
	const char *spec_path;
	const char *version;	 /* overrides the spec's */
	const char *arch;	 /* default: the build machine's */
	const char *sign_key;	 /* private key PEM: also writes <out>.sig */
	const char *sign_pubkey; /* its public key PEM: recorded as signing_key in the manifest
				    (so installs require the signature) and checked against the
				    signature just made; optional */
	int zstd_level;		 /* default 10 */
	int threads;		 /* zstd workers, 0 = number of CPUs */
	int64_t mtime;		 /* every entry's mtime (SOURCE_DATE_EPOCH), default 0 */
} kd_pack_opts;

/* Pack SRCDIR (which contains opt/kata/) into OUT, deterministically: sorted entries, uid/gid 0,
 * fixed mtime, normalised modes (0755 dirs and executables, 0644 others), no xattrs. */
int kd_payload_pack(const char *srcdir, const char *out_path, const kd_pack_opts *opts,
		    kd_error *err);

typedef struct kd_payload kd_payload;

/* Open a payload file: hash it (sha256 of the whole file; format 2: every frame's too, in the
 * same pass), check it against expect_sha256 when given, verify the detached signature with
 * pubkey_path when given (sig/siglen; -EBADMSG on a bad one), then read and validate the
 * manifest (format 2: and the index against it). A manifest with signing_key set but no
 * pubkey_path fails with a message naming the fingerprint; one with no shims is refused. A
 * component whose frame does not match the manifest is remembered, and refused only by an
 * extraction that selects it. The fd is dup'ed. */
typedef struct kd_payload_verify {
	const char *expect_sha256; /* optional */
	const char *pubkey_path;   /* optional */
	const uint8_t *sig;	   /* required when pubkey_path is set */
	size_t siglen;
	/* A format 2 payload of which only some frames are present (pulled from a registry, one
	 * blob per frame; docs/PAYLOAD.md "In a registry"): the file has the whole payload's
	 * layout, but only the manifest's frame, the end frame, the index and the frames of the
	 * components set in present (n_present flags, NULL = none) hold their bytes; the
	 * others may be holes. Only those frames are hashed. No whole-file sha256 or signature
	 * is checked here (expect_sha256 and sig are ignored): the caller has authenticated
	 * manifest_frame_sha256 (hex), and the manifest names every other frame by digest. A
	 * selected component that is not present is refused like a damaged one. digest (hex) is
	 * what kd_payload_digest() returns. The signing_key rule still applies to pubkey_path. */
	const char *manifest_frame_sha256;
	const bool *present;
	size_t n_present;
	const char *digest;
	/* Nothing to authenticate (no expect_sha256, no pubkey_path, not partial) and format 2:
	 * the whole file's sha256 is then only its identity, and it is not hashed at open. The
	 * caller hashes it beside its extraction (kd_payload_digest_start) or right away
	 * (kd_payload_digest_wait); the components' frames are not hashed (every file extracted
	 * is checked against the manifest, which is checked against the index). Ignored
	 * otherwise. */
	bool defer_digest;
} kd_payload_verify;
int kd_payload_open(int fd, const char *name, const kd_payload_verify *v, kd_payload **ret,
		    kd_error *err);
const kd_manifest *kd_payload_manifest(const kd_payload *p);
/* hex sha256 of the manifest entry's bytes (kd_manifest_to_json's text for a payload we packed,
 * which is also what an install keeps as versions/<id>.json) */
const char *kd_payload_manifest_sha256(const kd_payload *p);
/* hex sha256 of the payload file; deferred, it is hashed or waited for first ("" if that failed:
 * kd_payload_digest_wait() says why). */
const char *kd_payload_digest(kd_payload *p);
bool kd_payload_digest_deferred(const kd_payload *p);	   /* not hashed yet (defer_digest) */
int kd_payload_digest_start(kd_payload *p, kd_error *err); /* on a thread, from now */
int kd_payload_digest_wait(kd_payload *p, kd_error *err);  /* hashed, or why not */
int kd_payload_format(const kd_payload *p);		   /* 1 or 2 */
int kd_payload_fd(const kd_payload *p);			   /* its (dup'ed) fd, for fstat */
void kd_payload_free(kd_payload *p);

/* ---- a payload in a registry (docs/PAYLOAD.md "In a registry") ---- */

/* An OCI artifact with one layer per frame range of kd_payload_blobs(), in that order. */
#define KD_PAYLOAD_OCI_ARTIFACT_TYPE "application/vnd.katacontainers.deploy.payload.v2"
#define KD_PAYLOAD_OCI_MT_MANIFEST "application/vnd.katacontainers.deploy.payload.manifest.v2+zstd"
#define KD_PAYLOAD_OCI_MT_COMPONENT                                                                \
	"application/vnd.katacontainers.deploy.payload.component.v2+zstd"
#define KD_PAYLOAD_OCI_MT_TAIL "application/vnd.katacontainers.deploy.payload.tail.v2+zstd"
#define KD_PAYLOAD_OCI_ANN_COMPONENT "io.katacontainers.deploy.payload.component"
#define KD_PAYLOAD_OCI_ANN_SHA256 "io.katacontainers.deploy.payload.sha256"
/* The signature of an artifact signs this context followed by "sha256:<hex>" of its OCI
 * manifest; it is published as an artifact of this type under the tag sha256-<hex>.sig. */
#define KD_PAYLOAD_OCI_SIG_CONTEXT "kata-deploy oci payload v1\n"
#define KD_PAYLOAD_OCI_SIG_TYPE "application/vnd.katacontainers.deploy.signature.v1"

typedef struct kd_payload_blob {
	uint64_t offset, size;
} kd_payload_blob;

/* Format 2: the byte ranges that are one registry blob each: [0] the manifest's frame,
 * [1..N] the frames of the N components in manifest order, [N+1] the end frame and the index,
 * to the end of the file. Their concatenation is the file. -EINVAL for format 1. */
int kd_payload_blobs(const kd_payload *p, kd_payload_blob **ret, size_t *ret_n, kd_error *err);

/* Limits applied while extracting; 0 fields mean the KD_PAYLOAD_MAX_* defaults. Tests lower them
 * to exercise each limit's error. */
typedef struct kd_payload_limits {
	uint64_t max_entries;	 /* tar entries after the manifest */
	uint64_t max_entry_size; /* bytes of one file */
	uint64_t max_total;	 /* bytes of all files */
} kd_payload_limits;

typedef struct kd_extract_opts {
	const bool *component_mask; /* n_components entries; NULL = all */
	int reuse_dirfd;	    /* -1, or a previous version's tree: files whose
				       sha256 matches reuse_manifest and whose bytes
				       still hash to it are hardlinked from there
				       instead of written again */
	const kd_manifest *reuse_manifest;
	/* Without reuse_manifest: the candidates are reuse_dirfd's files of the same path, size
	 * and mode, rehashed; the previous manifest is loaded (by this, once) only when a
	 * candidate's bytes differ, to tell a file changed in place (files_changed) from one the
	 * new version changed. A large tree's manifest is MiBs not held during the extraction. */
	const kd_manifest *(*reuse_manifest_load)(void *userdata);
	void *reuse_userdata;
	bool sync;			 /* fsync every written file before returning */
	const kd_payload_limits *limits; /* NULL = defaults */
	/* Called as data lands (every block written, every file reused), with the bytes of the
	 * selected files done so far and their total; the callee decides how often to show it. */
	void (*progress)(uint64_t done, uint64_t total, void *userdata);
	void *progress_userdata;
} kd_extract_opts;

typedef struct kd_extract_stats {
	uint64_t files_written, files_linked, bytes_written, entries_skipped;
	uint64_t bytes_read;	     /* of the payload file, compressed */
	uint64_t bytes_decompressed; /* tar bytes the decompressor produced */
	uint64_t files_changed;	     /* reuse candidates whose bytes no longer match: written */
	char first_changed[256];     /* the first of them, "opt/kata/..." (truncated) */
} kd_extract_stats;

/* Extract into destfd (an empty directory): paths have opt/kata/ stripped. Every tar entry
 * must be in the manifest with the same type, mode, size, sha256 and link target; paths must be
 * safe; no devices, FIFOs, setuid bits, absolute or escaping links, or entries beyond limits;
 * every selected manifest file must be present. Format 2 reads only the frames of the selected
 * components and refuses, before writing anything, a selected component whose frame did not
 * match the manifest. On failure destfd may hold a partial tree: the caller removes it. */
int kd_payload_extract(kd_payload *p, int destfd, const kd_extract_opts *o,
		       kd_extract_stats *ret_stats, kd_error *err);
/* A tar reader (lib/tarball.h) over the manifest's entry followed by the entries of the
 * components set in mask (NULL = all): format 2 reads only their frames, after refusing a
 * damaged one; format 1 reads the whole stream (entries of every component, sorted by path).
 * Entries are not checked against the manifest: the caller does that. */
struct kd_tar_reader;
int kd_payload_tar_open(kd_payload *p, const bool *component_mask, struct kd_tar_reader **ret,
			kd_error *err);
/* Format 2: fail (-EBADMSG, naming the first) if a component set in mask (NULL = all) did not
 * match its sha256 in the manifest when the payload was opened. Format 1: 0. Lets a caller
 * refuse a payload before it writes anything. */
int kd_payload_check_components(const kd_payload *p, const bool *component_mask, kd_error *err);

/* Verify an extracted tree against the manifest (selected components): types, modes, sizes
 * and, if rehash, every sha256. Returns -EBADMSG naming the first difference. */
int kd_payload_verify_tree(const kd_manifest *m, const bool *component_mask, int dirfd, bool rehash,
			   kd_error *err);
