#!/usr/bin/env bash
# Build containerd 2.x (daemon + ctr) from github.com/containerd/containerd/v2 at a
# pinned release. Installs $KD_PEERS_DIR/bin/containerd2 and $KD_PEERS_DIR/bin/ctr2
# (KD_CONTAINERD2_NAME=containerd24: containerd24 and ctr24, for a second version).
# containerd2 also gets its runc shim, $KD_PEERS_DIR/bin/containerd2-shim-runc-v2, built in the
# same `go build` (same module); it is installed under that name so it never shadows Debian's
# containerd-shim-runc-v2 in PATH: tests/peers/node-up.sh links it as containerd-shim-runc-v2
# into a directory of its own (KD_CONTAINERD2_SHIM=0 skips it, KD_CONTAINERD2_SHIM=1 forces it).
# Pure Go (CGO_ENABLED=0); the btrfs, devmapper and zfs snapshotters and tracing are
# left out by build tags; the CRI plugin is kept (its config is what we test).
# Cached: a rerun with the same version is instant.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

KD_CONTAINERD2_VERSION=${KD_CONTAINERD2_VERSION:-v2.2.9}
name=${KD_CONTAINERD2_NAME:-containerd2}
ctr=ctr${name#containerd}
mod=github.com/containerd/containerd/v2
shim_default=0
[ "$name" = containerd2 ] && shim_default=1
with_shim=${KD_CONTAINERD2_SHIM:-$shim_default}
bins=("$name" "$ctr")
cmds=("$mod/cmd/containerd" "$mod/cmd/ctr")
if [ "$with_shim" = 1 ]; then
	bins+=("$name-shim-runc-v2")
	cmds+=("$mod/cmd/containerd-shim-runc-v2")
fi

if peers_is_built "$name" "$KD_CONTAINERD2_VERSION" "${bins[@]}"; then
	peers_log "$name $KD_CONTAINERD2_VERSION already built (${bins[*]} in $KD_PEERS_BIN)"
	exit 0
fi
peers_need_go
peers_lock
peers_is_built "$name" "$KD_CONTAINERD2_VERSION" "${bins[@]}" && exit 0

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
		-o out/ "${cmds[@]}"
) > "$KD_PEERS_LOGS/$name.log" 2>&1 || { tail -30 "$KD_PEERS_LOGS/$name.log" >&2; peers_die "$name build failed"; }
peers_install "$d/out/containerd" "$name"
peers_install "$d/out/ctr" "$ctr"
[ "$with_shim" = 1 ] && peers_install "$d/out/containerd-shim-runc-v2" "$name-shim-runc-v2"
rm -rf "$d/out"
t1=$(date +%s)
peers_mark_built "$name" "$KD_CONTAINERD2_VERSION" $((t1 - t0))
peers_log "$name $KD_CONTAINERD2_VERSION built in $((t1 - t0)) s: $("$KD_PEERS_BIN/$name" --version)"
