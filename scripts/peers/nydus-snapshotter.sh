#!/usr/bin/env bash
# Build nydus-snapshotter (containerd-nydus-grpc + nydus-overlayfs) from the Go module
# github.com/containerd/nydus-snapshotter at the release upstream Kata 4.1.0 pins in its
# versions.yaml (v0.15.15). Installs $KD_PEERS_DIR/bin/containerd-nydus-grpc and
# $KD_PEERS_DIR/bin/nydus-overlayfs.
# The module is built in a copy of its own source tree (its go.mod, go.sum and replace
# directives apply), not as a dependency of a throwaway module.
# Pure Go (CGO_ENABLED=0), -trimpath. Cached: a rerun with the same version is instant.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

KD_NYDUS_SNAPSHOTTER_VERSION=${KD_NYDUS_SNAPSHOTTER_VERSION:-v0.15.15}
name=nydus-snapshotter
mod=github.com/containerd/nydus-snapshotter
bins=(containerd-nydus-grpc nydus-overlayfs)

if peers_is_built "$name" "$KD_NYDUS_SNAPSHOTTER_VERSION" "${bins[@]}"; then
	peers_log "$name $KD_NYDUS_SNAPSHOTTER_VERSION already built (${bins[*]} in $KD_PEERS_BIN)"
	exit 0
fi
peers_need_go
peers_lock
peers_is_built "$name" "$KD_NYDUS_SNAPSHOTTER_VERSION" "${bins[@]}" && exit 0

t0=$(date +%s)
peers_log "building $name $KD_NYDUS_SNAPSHOTTER_VERSION (log: $KD_PEERS_LOGS/$name.log)"
d=$(peers_module_dir "$name")
(
	cd "$d"
	src=$(go mod download -json "$mod@$KD_NYDUS_SNAPSHOTTER_VERSION" |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	[ -f "$src/go.mod" ] || { echo "no source for $mod@$KD_NYDUS_SNAPSHOTTER_VERSION"; exit 1; }
	cp -r "$src" tree && chmod -R u+w tree
	cd tree
	mkdir -p out
	CGO_ENABLED=0 peers_go build -mod=mod -trimpath \
		-ldflags "-s -w -X $mod/version.Version=$KD_NYDUS_SNAPSHOTTER_VERSION -X $mod/version.Revision=kd-peers" \
		-o out/ ./cmd/containerd-nydus-grpc ./cmd/nydus-overlayfs
) > "$KD_PEERS_LOGS/$name.log" 2>&1 || { tail -30 "$KD_PEERS_LOGS/$name.log" >&2; peers_die "$name build failed"; }
for b in "${bins[@]}"; do peers_install "$d/tree/out/$b" "$b"; done
rm -rf "$d"
t1=$(date +%s)
peers_mark_built "$name" "$KD_NYDUS_SNAPSHOTTER_VERSION" $((t1 - t0))
peers_log "$name $KD_NYDUS_SNAPSHOTTER_VERSION built in $((t1 - t0)) s: $("$KD_PEERS_BIN/containerd-nydus-grpc" --version 2>&1 | head -1)"
