#!/usr/bin/env bash
# Build CRI-O (the crio binary only) from github.com/cri-o/cri-o at a pinned release.
# Installs $KD_PEERS_DIR/bin/crio. Used for its real config loader
# (`crio --config F --config-dir D config`); no conmon/runc/CNI are built.
# Build tags drop every optional C dependency: pure-Go openpgp instead of gpgme, no
# btrfs/devicemapper graph drivers, no ostree, no seccomp/selinux/apparmor/libsubid
# (those tags are simply not given), so no -dev packages are needed.
# Cached: a rerun with the same version is instant.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

KD_CRIO_VERSION=${KD_CRIO_VERSION:-v1.34.0}
name=crio
mod=github.com/cri-o/cri-o

if peers_is_built "$name" "$KD_CRIO_VERSION" crio; then
	peers_log "$name $KD_CRIO_VERSION already built ($KD_PEERS_BIN/crio)"
	exit 0
fi
peers_need_go
peers_lock
peers_is_built "$name" "$KD_CRIO_VERSION" crio && exit 0

t0=$(date +%s)
peers_log "building $name $KD_CRIO_VERSION (log: $KD_PEERS_LOGS/$name.log)"
d=$(peers_module_dir "$name")
printf 'module kd-peers/crio\n\ngo 1.24\n\nrequire %s %s\n' "$mod" "$KD_CRIO_VERSION" > "$d/go.mod"
(
	cd "$d"
	# Seed go.sum with CRI-O's own: some of its pinned pseudo-versions are not in the
	# checksum database the proxy serves, so go must not have to look them up.
	src=$(go mod download -json "$mod" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	[ -f "$src/go.sum" ] && cp "$src/go.sum" go.sum && chmod u+w go.sum
	CGO_ENABLED=${KD_CRIO_CGO:-0} peers_go build -mod=mod -trimpath \
		-tags "containers_image_openpgp containers_image_ostree_stub exclude_graphdriver_btrfs btrfs_noversion exclude_graphdriver_devicemapper" \
		-ldflags "-s -w -X $mod/internal/version.buildDate=1970-01-01T00:00:00Z" \
		-o "$d/crio" "$mod/cmd/crio"
) > "$KD_PEERS_LOGS/$name.log" 2>&1 || { tail -30 "$KD_PEERS_LOGS/$name.log" >&2; peers_die "$name build failed"; }
peers_install "$d/crio" crio
rm -f "$d/crio"
t1=$(date +%s)
peers_mark_built "$name" "$KD_CRIO_VERSION" $((t1 - t0))
peers_log "$name $KD_CRIO_VERSION built in $((t1 - t0)) s: $("$KD_PEERS_BIN/crio" --version | head -1)"
