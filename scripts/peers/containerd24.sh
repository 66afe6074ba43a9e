#!/usr/bin/env bash
# containerd 2.4 (config version 4, which containerd 2.3 introduced) next to the 2.2 peer:
# $KD_PEERS_DIR/bin/containerd24 and ctr24, built by containerd2.sh.
KD_CONTAINERD2_VERSION=${KD_CONTAINERD24_VERSION:-v2.4.2} KD_CONTAINERD2_NAME=containerd24 \
	exec bash "$(dirname "${BASH_SOURCE[0]}")/containerd2.sh"
