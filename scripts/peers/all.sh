#!/usr/bin/env bash
# Build every real test peer that Debian 12 lacks, from Go modules, into $KD_PEERS_DIR/bin
# (default ~/.cache/kata-deploy-peers/bin). Each peer is cached by a stamp per version, so
# a rerun takes well under a second. Builds run one at a time (they share a lock).
#
#   scripts/peers/all.sh                    # all peers
#   scripts/peers/all.sh kube-apiserver     # a subset, in the order given
#
# Peers: kube-node (kube-apiserver, kube-controller-manager, kube-scheduler, kubelet in one go build)
#        kube-apiserver kubectl containerd2 containerd24 crio nydus-snapshotter, plus helm and
#        toml-test when present  (etcd: Debian's etcd-server 3.4.23 works with kube-apiserver v1.33)
# Then: export PATH="$KD_PEERS_DIR/bin:$PATH"  (or use the smoke scripts' lookup)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/common.sh"
peers=("$@")
if [ ${#peers[@]} -eq 0 ]; then
	peers=(kube-node kube-apiserver kubectl containerd2 containerd24 crio nydus-snapshotter)
	# teammates' peers that are fetched/built the same way (cached under $KD_PEERS_DIR too)
	for extra in helm toml-test; do [ -f "$here/$extra.sh" ] && peers+=("$extra"); done
fi
summary=()
rc=0
for p in "${peers[@]}"; do
	[ -f "$here/$p.sh" ] || peers_die "unknown peer $p"
	t0=$(date +%s)
	if bash "$here/$p.sh" >&2; then
		summary+=("ok      $p ($(( $(date +%s) - t0 )) s)")
	else
		summary+=("FAILED  $p ($(( $(date +%s) - t0 )) s, log in $KD_PEERS_LOGS/)")
		rc=1
	fi
done
printf '[peers] %s\n' "${summary[@]}" >&2
peers_log "binaries in $KD_PEERS_BIN: $(cd "$KD_PEERS_BIN" && ls | tr '\n' ' ')"
exit $rc
