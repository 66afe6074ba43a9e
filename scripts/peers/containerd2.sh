#!/usr/bin/env bash
# Build containerd 2.x (daemon + ctr) from github.com/containerd/containerd/v2 at a
# pinned release. Installs $KD_PEERS_DIR/bin/containerd2 and $KD_PEERS_DIR/bin/ctr2
# (KD_CONTAINERD2_NAME=containerd24: containerd24 and ctr24, for a second version).
# Pure Go (CGO_ENABLED=0); the btrfs, devmapper and zfs snapshotters and tracing are
# left out by build tags; the CRI plugin is kept (its config is what we test).
# Cached: a rerun with the same version is instant.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

KD_CONTAINERD2_VERSION=${KD_CONTAINERD2_VERSION:-v2.2.9}
name=${KD_CONTAINERD2_NAME:-containerd2}
ctr=ctr${name#containerd}
mod=github.com/containerd/containerd/v2

if peers_is_built "$name" "$KD_CONTAINERD2_VERSION" "$name" "$ctr"; then
	peers_log "$name $KD_CONTAINERD2_VERSION already built ($KD_PEERS_BIN/$name, $ctr)"
	exit 0
fi
peers_need_go
peers_lock
peers_is_built "$name" "$KD_CONTAINERD2_VERSION" "$name" "$ctr" && exit 0

t0=$(date +%s)
peers_log "building $name $KD_CONTAINERD2_VERSION (log: $KD_PEERS_LOGS/$name.log)"
d=$(peers_module_dir "$name")
printf 'module kd-peers/%s\n\ngo 1.23\n\nrequire %s %s\n' "$name" "$mod" "$KD_CONTAINERD2_VERSION" > "$d/go.mod"
v=${KD_CONTAINERD2_VERSION#v}
(
	cd "$d"
	# Seed go.sum with containerd's own (robust against checksum-database gaps).
	src=$(go mod download -json "$mod" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	[ -f "$src/go.sum" ] && cp "$src/go.sum" go.sum && chmod u+w go.sum
	mkdir -p out
	CGO_ENABLED=0 peers_go build -mod=mod -trimpath \
		-tags "no_btrfs no_devmapper no_zfs no_tracing urfave_cli_no_docs" \
		-ldflags "-s -w -X $mod/version.Version=$v -X $mod/version.Revision=kd-peers -X $mod/version.Package=$mod" \
		-o out/ "$mod/cmd/containerd" "$mod/cmd/ctr"
) > "$KD_PEERS_LOGS/$name.log" 2>&1 || { tail -30 "$KD_PEERS_LOGS/$name.log" >&2; peers_die "$name build failed"; }
peers_install "$d/out/containerd" "$name"
peers_install "$d/out/ctr" "$ctr"
rm -rf "$d/out"
t1=$(date +%s)
peers_mark_built "$name" "$KD_CONTAINERD2_VERSION" $((t1 - t0))
peers_log "$name $KD_CONTAINERD2_VERSION built in $((t1 - t0)) s: $("$KD_PEERS_BIN/$name" --version)"
