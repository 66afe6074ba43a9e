#!/usr/bin/env bash
# Build kube-apiserver from k8s.io/kubernetes at a pinned release, via a throwaway
# module whose replace directives map every staging module to its published version.
# Installs $KD_PEERS_DIR/bin/kube-apiserver. Cached: a rerun with the same version is instant.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

KD_K8S_VERSION=${KD_K8S_VERSION:-v1.33.13}
name=kube-apiserver

if peers_is_built "$name" "$KD_K8S_VERSION" kube-apiserver; then
	peers_log "$name $KD_K8S_VERSION already built ($KD_PEERS_BIN/kube-apiserver)"
	exit 0
fi
peers_need_go
peers_lock
peers_is_built "$name" "$KD_K8S_VERSION" kube-apiserver && exit 0

t0=$(date +%s)
peers_log "building $name $KD_K8S_VERSION (log: $KD_PEERS_LOGS/$name.log)"
d=$(peers_k8s_module "$KD_K8S_VERSION")
(
	cd "$d"
	CGO_ENABLED=0 peers_go build -mod=mod -trimpath -tags providerless \
		-ldflags "$(peers_k8s_ldflags "$KD_K8S_VERSION")" \
		-o "$d/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
) > "$KD_PEERS_LOGS/$name.log" 2>&1 || { tail -30 "$KD_PEERS_LOGS/$name.log" >&2; peers_die "$name build failed"; }
peers_install "$d/kube-apiserver" kube-apiserver
rm -f "$d/kube-apiserver"
t1=$(date +%s)
peers_mark_built "$name" "$KD_K8S_VERSION" $((t1 - t0))
peers_log "$name $KD_K8S_VERSION built in $((t1 - t0)) s: $("$KD_PEERS_BIN/kube-apiserver" --version)"
