#!/usr/bin/env bash
# Build the Kubernetes node + control plane for the sandboxed node test (tests/peers/node-up.sh):
# kube-apiserver, kube-controller-manager, kube-scheduler and kubelet from k8s.io/kubernetes at
# the same pinned release as kube-apiserver.sh, in ONE `go build` invocation, so the four share
# every compiled package (kube-apiserver alone would be rebuilt from the same cache anyway).
# Installs $KD_PEERS_DIR/bin/{kube-apiserver,kube-controller-manager,kube-scheduler,kubelet}
# and stamps kube-node (and kube-apiserver: the binary is the same bytes as kube-apiserver.sh's).
# Cached: a rerun with the same version is instant.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

KD_K8S_VERSION=${KD_K8S_VERSION:-v1.33.13}
name=kube-node
bins=(kube-apiserver kube-controller-manager kube-scheduler kubelet)

if peers_is_built "$name" "$KD_K8S_VERSION" "${bins[@]}"; then
	peers_log "$name $KD_K8S_VERSION already built (${bins[*]})"
	exit 0
fi
peers_need_go
peers_lock
peers_is_built "$name" "$KD_K8S_VERSION" "${bins[@]}" && exit 0

t0=$(date +%s)
peers_log "building $name $KD_K8S_VERSION: ${bins[*]} (log: $KD_PEERS_LOGS/$name.log)"
d=$(peers_k8s_module "$KD_K8S_VERSION")
pkgs=()
for b in "${bins[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
(
	cd "$d"
	rm -rf out && mkdir out
	CGO_ENABLED=0 peers_go build -mod=mod -trimpath -tags providerless \
		-ldflags "$(peers_k8s_ldflags "$KD_K8S_VERSION")" \
		-o out/ "${pkgs[@]}"
) > "$KD_PEERS_LOGS/$name.log" 2>&1 || { tail -30 "$KD_PEERS_LOGS/$name.log" >&2; peers_die "$name build failed"; }
for b in "${bins[@]}"; do peers_install "$d/out/$b" "$b"; done
rm -rf "$d/out"
t1=$(date +%s)
peers_mark_built "$name" "$KD_K8S_VERSION" $((t1 - t0))
[ -f "$(peers_stamp kube-apiserver "$KD_K8S_VERSION")" ] || peers_mark_built kube-apiserver "$KD_K8S_VERSION" $((t1 - t0))
peers_log "$name $KD_K8S_VERSION built in $((t1 - t0)) s: $("$KD_PEERS_BIN/kubelet" --version)"
