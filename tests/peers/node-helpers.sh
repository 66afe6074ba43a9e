# --- helpers (appended to DIR/node.env by tests/peers/node-up.sh) ---------------------------
# kubectl/helm/curl reach the apiserver only from the node's network namespace: they run there
# through nsenter (net namespace only, so the caller's files stay visible).
KD_NODE_KUBECTL=${KD_NODE_KUBECTL:-$KD_NODE_PEERS_BIN/kubectl}
[ -x "$KD_NODE_KUBECTL" ] || KD_NODE_KUBECTL=$(command -v kubectl)
export KD_NODE_KUBECTL
kd_node_net() { nsenter -t "$KD_NODE_PID" -n -- "$@"; }
kd_node_kubectl() { nsenter -t "$KD_NODE_PID" -n -- "$KD_NODE_KUBECTL" --kubeconfig "$KD_NODE_KUBECONFIG" "$@"; }
# A command in the node's mount + net namespaces: it sees the sandboxed host (/etc/containerd…).
kd_node_host() { nsenter -t "$KD_NODE_PID" -m -n -- "$@"; }
kd_node_ctr() { "$KD_NODE_PEERS_BIN/ctr2" --address "$KD_NODE_CONTAINERD_SOCK" -n k8s.io "$@"; }
# kd_node_pid NAME: the machine-side PID of a supervised daemon (etcd kube-apiserver
# kube-controller-manager kube-scheduler containerd kubelet).
kd_node_pid() {
	local ipid ns p
	ipid=$(cat "$KD_NODE_DIR/run/$1.ipid" 2>/dev/null) || return 1
	ns=$(readlink "/proc/$KD_NODE_PID/ns/pid") || return 1
	for p in /proc/[0-9]*; do
		[ "$(readlink "$p/ns/pid" 2>/dev/null)" = "$ns" ] || continue
		if awk -v i="$ipid" '/^NSpid:/ { f = ($NF == i) } END { exit !f }' "$p/status" 2>/dev/null; then
			echo "${p#/proc/}"
			return 0
		fi
	done
	return 1
}
# kd_node_restart NAME: stop and start a supervised daemon (as `systemctl restart` would).
kd_node_restart() { echo restart >"$KD_NODE_DIR/run/$1.ctl"; }
kd_node_starts() { cat "$KD_NODE_DIR/run/$1.starts"; }
