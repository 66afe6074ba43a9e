#!/usr/bin/env bash
# Benchmark (not a test) on the sandboxed node of tests/peers/node-up.sh (docs/NODE-TEST.md):
#   apply:     `kubectl apply -f manifests/` → node labelled katacontainers.io/kata-runtime=true
#   delete:    the two-step delete (DaemonSet --cascade=foreground --wait, then the rest) → label gone
#   helm:      `helm install` → labelled;  `helm uninstall` → label gone, node clean
# and the API requests of each phase, per node, from the apiserver's audit log: the agent's
# (service account kata-deploy-sa), the uninstall hook's, and all users'. RUNS (default 3) rounds;
# prints each round and the medians. Needs what tests/integration/test-node.sh needs.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
O=${O:-build}
RUNS=${RUNS:-3}
export PATH=/usr/local/go/bin:$PATH
W=$(mktemp -d /tmp/kd-bench-node.XXXXXX)
N=$W/node
cleanup() {
	[ -f "$N/node.pid" ] && tests/peers/node-down.sh "$N" >/dev/null 2>&1
	rm -rf "$W"
}
trap cleanup EXIT
scripts/peers/all.sh kube-node kubectl containerd2 >"$W/peers.log" 2>&1 || { cat "$W/peers.log"; exit 1; }
HELM=$(scripts/peers/helm.sh 2>>"$W/peers.log")
export HELM_CACHE_HOME=$W/helm HELM_CONFIG_HOME=$W/helm HELM_DATA_HOME=$W/helm
PEERS=${KD_PEERS_DIR:-$HOME/.cache/kata-deploy-peers}

python3 tests/tools/oci-image.py --out "$W/kubectl.tar" --name kd.test/kubectl:1 \
	--file "$PEERS/bin/kubectl:/usr/local/bin/kubectl:0755" --dir tmp:1777 >/dev/null
"$O/kata-deploy" payload pack artifacts/demo/tree --spec artifacts/demo/payload.yaml -o "$W/payload.tar.zst" >/dev/null
"$O/kata-build" --out "$W/kb" --cache "$W/kb-cache" image --agent "$O/kata-deploy-agent" --payload "$W/payload.tar.zst" \
	--layout "$W/layout" --tag a >"$W/image.log" 2>&1
tar -C "$W/layout" -cf "$W/agent.tar" .
KD_NODE_IMAGES="$W/kubectl.tar" tests/peers/node-up.sh "$N" >"$W/node-up.log" 2>&1 || { cat "$W/node-up.log"; exit 1; }
. "$N/node.env"
kd_node_ctr images import --base-name kd.test/kata-deploy "$W/agent.tar" >/dev/null
echo "node $KD_NODE_NAME up in ${KD_NODE_UP_SECONDS}s; load $(cut -d' ' -f1-3 /proc/loadavg)"

K() { kd_node_kubectl "$@"; }
H() { kd_node_net "$HELM" --kubeconfig "$KD_NODE_KUBECONFIG" "$@"; }
RESTART_CMD='command:/host/opt/kd-node/bin/node-restart /host/opt/kd-node/run'
OVR=(--env "RUNTIME_RESTART=$RESTART_CMD" --env HOST_CHECK=false)
mkdir -p "$W/manifests"
for f in manifests/*.yaml; do
	python3 tests/tools/node-override.py --image kd.test/kata-deploy:a "${OVR[@]}" <"$f" >"$W/manifests/$(basename "$f")"
done

label() { K get node "$KD_NODE_NAME" -o jsonpath='{.metadata.labels.katacontainers\.io/kata-runtime}'; }
now() { date +%s.%N; }
wait_label() { # VALUE ("" = absent)
	local i
	for i in $(seq 1 1200); do [ "$(label)" = "$1" ] && return 0; sleep 0.25; done
	echo "bench: label never became '$1'" >&2
	return 1
}
audit_mark() { wc -l <"$N/logs/audit.log"; }
audit_count() { # FROM_LINE → "agent hook all"
	tail -n +"$(($1 + 1))" "$N/logs/audit.log" | python3 -c '
import json, sys
a = h = n = 0
for line in sys.stdin:
    try:
        e = json.loads(line)
    except ValueError:
        continue
    u = e.get("user", {}).get("username", "")
    n += 1
    a += u.endswith(":kata-deploy-sa")
    h += u.startswith("system:serviceaccount:kube-system:kata-deploy-uninstall")
print(a, h, n)'
}
declare -A T R
for r in $(seq 1 "$RUNS"); do
	m=$(audit_mark); t0=$(now)
	K apply -f "$W/manifests/" >/dev/null
	wait_label true
	T[apply,$r]=$(echo "$(now) - $t0" | bc); sleep 3; R[apply,$r]=$(audit_count "$m")
	m=$(audit_mark); t0=$(now)
	K -n kube-system delete -f "$W/manifests/20-daemonset.yaml" --cascade=foreground --wait --timeout=300s >/dev/null
	K delete -f "$W/manifests/" --ignore-not-found --wait >/dev/null
	wait_label ""
	T[delete,$r]=$(echo "$(now) - $t0" | bc); R[delete,$r]=$(audit_count "$m")
	m=$(audit_mark); t0=$(now)
	H install kata-deploy helm/kata-deploy -n kube-system --set image.reference=kd.test/kata-deploy \
		--set image.tag=a --set imagePullPolicy=Never --set kubectlImage=kd.test/kubectl:1 \
		--set-string "runtimeRestart=$RESTART_CMD" --set hostCheck=false >/dev/null
	wait_label true
	T[install,$r]=$(echo "$(now) - $t0" | bc); sleep 3; R[install,$r]=$(audit_count "$m")
	m=$(audit_mark); t0=$(now)
	H uninstall kata-deploy -n kube-system --wait --timeout 300s >/dev/null
	wait_label ""
	T[uninstall,$r]=$(echo "$(now) - $t0" | bc); R[uninstall,$r]=$(audit_count "$m")
	for p in apply delete install uninstall; do
		printf 'round %d %-9s %6.2f s   requests agent/hook/all: %s\n' "$r" "$p" "${T[$p,$r]}" "${R[$p,$r]// //}"
	done
done
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
echo "medians of $RUNS (load $(cut -d' ' -f1-3 /proc/loadavg)):"
for p in apply delete install uninstall; do
	t=$(for r in $(seq 1 "$RUNS"); do echo "${T[$p,$r]}"; done | median)
	a=$(for r in $(seq 1 "$RUNS"); do echo "${R[$p,$r]}" | cut -d' ' -f1; done | median)
	h=$(for r in $(seq 1 "$RUNS"); do echo "${R[$p,$r]}" | cut -d' ' -f2; done | median)
	n=$(for r in $(seq 1 "$RUNS"); do echo "${R[$p,$r]}" | cut -d' ' -f3; done | median)
	printf '  %-9s %6.2f s   agent %s requests, hook %s, all users %s\n' "$p" "$t" "$a" "$h" "$n"
done
