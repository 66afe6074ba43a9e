/* Host checks: can this host (a root directory, "/" for the running one) run Kata, shim by shim,
 * and what is missing. Each check has a stable id ("cpu.virt", "module.vhost_vsock",
 * "qemu.device.vhost-vsock-pci"), a status, a detail and, when it failed, a fix. A per-shim
 * table of required checks turns them into a verdict per shim. The CLI (`kata-deploy check`)
 * and the node agent (before an install) both call kd_hostcheck_run. See docs/CHECK.md. */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <stdio.h>

#include "err.h"

#define KD_HOSTCHECK_CPUINFO_MAX (4u * 1024 * 1024) /* bytes of /proc/cpuinfo (~1 KiB per cpu) */
#define KD_HOSTCHECK_FILE_MAX (1u * 1024 * 1024)    /* other files we read (mountinfo, configs) */
#define KD_HOSTCHECK_CMD_TIMEOUT_MS 5000	    /* `containerd --version` and the like */
#define KD_HOSTCHECK_CMD_OUTPUT_MAX 4096	    /* bytes of such a command's output kept */
#define KD_HOSTCHECK_SHIM_MAX 64		    /* bytes of a shim name */
#define KD_HOSTCHECK_DEFAULT_SHIMS "qemu,clh,fc,dragonball"

typedef enum kd_check_status {
	KD_CHECK_PASS = 0,
	KD_CHECK_WARN, /* works, or will once loaded; fix says how to make it clean */
	KD_CHECK_FAIL, /* a shim that requires it cannot run */
	KD_CHECK_SKIP, /* not applicable or not checkable here (e.g. KVM_CREATE_VM on a test root)
			*/
} kd_check_status;

typedef struct kd_check {
	char id[64];
	kd_check_status status;
	char *detail;
	char *fix; /* NULL when there is nothing to do */
} kd_check;

typedef struct kd_shim_verdict {
	char name[KD_HOSTCHECK_SHIM_MAX];
	bool ok;
	char *failed; /* comma-separated ids of the failed required checks, NULL when ok */
} kd_shim_verdict;

typedef struct kd_hostcheck_opts {
	const char *root;	     /* host root directory; NULL means "/" */
	const char *modules_dir;     /* NULL: <root>/lib/modules/<release> */
	const char *config_root;     /* where the runtime's config is (a pod's host root);
					NULL: root */
	const char *prefix;	     /* installation prefix in the root; NULL: /opt/kata */
	const char *qemu;	     /* NULL: <root>/<prefix>/bin/qemu-system-x86_64 */
	const char *runtime_version; /* as the node reports it ("containerd://1.7.2",
					"cri-o://1.30.1"); NULL: detect (run the binary on "/") */
	const char *const *shims;    /* NULL-terminated; NULL: KD_HOSTCHECK_DEFAULT_SHIMS */
	bool fix;		     /* load modules that are available but not loaded */
	bool fix_dry_run;	     /* only plan the loads (always so when root is not "/") */
	bool skip_payload;	     /* do not look at the installed payload (before an install) */
	bool container;		     /* we run in an unprivileged container: its /dev is not the
					host's and no device may be opened, so KVM is looked up in
					sysfs (<root>/sys/class/misc/kvm), /dev/kvm never opened */
	int qmp_timeout_ms;	     /* 0: KD_QMP_TIMEOUT_MS */
	/* Snapshotters to be set up ("erofs,nydus"): erofs adds the snapshotter.erofs.* checks
	 * (containerd >= 2.2, kernel erofs, mkfs.erofs options, dm-verity when erofs_dmverity,
	 * fs-verity as a warning). NULL: none. */
	const char *snapshotters;
	bool erofs_dmverity;
} kd_hostcheck_opts;

typedef struct kd_hostcheck_report {
	char *root;
	kd_check *checks;
	size_t n_checks;
	kd_shim_verdict *shims;
	size_t n_shims;
	char **fix_actions; /* "insmod <path> <options>" done (or, in a dry run, planned) */
	size_t n_fix_actions;
	bool fix_dry_run;
} kd_hostcheck_report;

/* True for a shim name this module has requirements for: upstream 4.1's shims (its
 * shim-components.json) and the names older payloads declare. */
bool kd_hostcheck_shim_known(const char *shim);
/* The i-th known shim name, NULL past the end. */
const char *kd_hostcheck_shim_at(size_t i);
/* "clh, clh-azure, ..." into buf; -ENOSPC when it does not fit (then truncated). */
int kd_hostcheck_known_shims(char *buf, size_t size);
/* > 0 when a containerd config (TOML text) disables the CRI plugin (Docker's containerd.io
 * default, disabled_plugins = ["cri"]); which gets the entry. 0 when enabled, < 0 on a parse
 * error. */
int kd_hostcheck_cri_disabled(const char *text, size_t len, char *which, size_t size,
			      kd_error *err);

/* Run every check the requested shims need. Fails (< 0) only when the checks cannot run at all:
 * the root cannot be opened, a shim name is unknown, out of memory. A host that cannot run a
 * shim is a successful run whose report says so. */
int kd_hostcheck_run(const kd_hostcheck_opts *o, kd_hostcheck_report **ret, kd_error *err);
void kd_hostcheck_report_free(kd_hostcheck_report *r);
DEFINE_CLEANUP(kd_hostcheck_report *, kd_hostcheck_report_free)
#define _cleanup_hostcheck_report_ _cleanup_(kd_hostcheck_report_freep)

/* Every requested shim can run. */
bool kd_hostcheck_all_ok(const kd_hostcheck_report *r);
/* No snapshotter.* check failed. */
bool kd_hostcheck_snapshotters_ok(const kd_hostcheck_report *r);
/* Some requested shim can run. */
bool kd_hostcheck_any_ok(const kd_hostcheck_report *r);
const kd_check *kd_hostcheck_find(const kd_hostcheck_report *r, const char *id);
const kd_shim_verdict *kd_hostcheck_verdict(const kd_hostcheck_report *r, const char *shim);
const char *kd_check_status_to_string(kd_check_status s);

/* {"root", "ok", "checks": [{id, status, detail, fix}], "shims": [{name, ok, failed: [..]}],
 *  "fix": {"dry_run", "actions": [..]}} */
int kd_hostcheck_to_json(const kd_hostcheck_report *r, struct json_object **ret, kd_error *err);
/* The readable table: check, status, detail, fix; then a verdict per shim. */
void kd_hostcheck_print(const kd_hostcheck_report *r, FILE *f);
