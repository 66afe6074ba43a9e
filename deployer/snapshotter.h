/* The managed nydus snapshotter (upstream's nydus-for-kata-tee service): the payload's
 * nydus-snapshotter component (containerd-nydus-grpc, nydus-overlayfs under
 * libexec/nydus-snapshotter/), run by a systemd unit of ours with a config file of ours, and
 * pulled in by the runtime's unit through a drop-in. Every file is a runtime-config change
 * (journaled, reverted by uninstall); the restart step reloads systemd and (re)starts or stops
 * the service before it restarts the runtime. The containerd side (proxy_plugins) is in
 * containerd.c. See docs/RUNTIME-CONFIG.md. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "err.h"
#include "payload.h"

#define KD_NYDUS_COMPONENT "nydus-snapshotter"
#define KD_NYDUS_BIN_DIR "libexec/nydus-snapshotter" /* in the version tree */
#define KD_NYDUS_GRPC KD_NYDUS_BIN_DIR "/containerd-nydus-grpc"
#define KD_NYDUS_OVERLAYFS KD_NYDUS_BIN_DIR "/nydus-overlayfs"
#define KD_NYDUS_CONFIG_DIR "snapshotter" /* <prefix>/snapshotter/<name>.toml */

/* Whether a comma-separated --setup-snapshotter list names s. */
bool kd_snapshotter_listed(const char *setup, const char *s);
/* With nydus in setup, select the payload's nydus-snapshotter component too (when the payload
 * has one; the runtime plan refuses a nydus setup without its binaries). */
void kd_snapshotter_select(const kd_manifest *m, const char *setup, bool *mask);

typedef struct kd_nydus_files {
	char unit_path[256];   /* etc/systemd/system/<name>.service */
	char *unit;	       /* its text */
	char dropin_path[256]; /* etc/systemd/system/<runtime unit>.d/kata-deploy-<name>.conf */
	char *dropin;
	char config_path[256]; /* <prefix>/snapshotter/<name>.toml */
	char *config;
} kd_nydus_files;

/* The files of the service named name (nydus-for-kata-tee[-suffix]) for an install under prefix
 * (relative to the root), bound to the runtime's systemd unit. */
int kd_nydus_render(const char *name, const char *prefix, const char *runtime_unit,
		    kd_nydus_files *ret, kd_error *err);
void kd_nydus_files_done(kd_nydus_files *f);
