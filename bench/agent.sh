#!/usr/bin/env bash
# Node agent figures against the real kube-apiserver (tests/peers/apiserver-up.sh):
#   - time from agent start to /readyz 200 (= node labelled true) on an already-installed host
#   - Kubernetes API calls per install (fresh host and already installed)
#   - RSS of the idle waiter, and peak RSS over an agent's life (install + wait + SIGTERM)
# Usage: bench/agent.sh [RUNS]   (O=build dir; binaries must be built)
# POLL_INTERVAL_MS / LABEL_STABLE_READS as for the agent (defaults 2000 / 3): with the defaults,
# start -> ready includes the (LABEL_STABLE_READS - 1) re-reads that check the labels stay put;
# LABEL_STABLE_READS=1 measures start -> labelled alone. RUNTIME_RESTART=none throughout.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
O=${O:-build}
AGENT=$PWD/$O/kata-deploy-agent KD=$PWD/$O/kata-deploy
PEERS=${KD_PEERS_DIR:-$HOME/.cache/kata-deploy-peers}
scripts/peers/all.sh kube-apiserver kubectl >/dev/null 2>&1
KUBECTL=$PEERS/bin/kubectl
source scripts/hostroot.sh
W=$(mktemp -d /tmp/kd-bench-agent.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
	bash tests/peers/apiserver-down.sh "$W/api" >/dev/null 2>&1 || true
	rm -rf "$W"
}
trap cleanup EXIT
. tests/peers/apiserver-up.sh "$W/api" >/dev/null
k() { "$KUBECTL" --kubeconfig "$KD_APISERVER_KUBECONFIG" "$@"; }
k apply -f manifests/ >/dev/null
k apply -f - >/dev/null <<'Y'
apiVersion: v1
kind: Node
metadata: {name: bench-node}
Y
k patch node bench-node --subresource=status --type=merge -p '{"status":{"nodeInfo":{"containerRuntimeVersion":"containerd://1.7.2","kubeletVersion":"v1.33.0","osImage":"x","kernelVersion":"x","operatingSystem":"linux","architecture":"amd64","machineID":"m","systemUUID":"u","bootID":"b","kubeProxyVersion":""},"conditions":[{"type":"Ready","status":"True","reason":"r","message":"m","lastHeartbeatTime":"2025-01-01T00:00:00Z","lastTransitionTime":"2025-01-01T00:00:00Z"}],"runtimeHandlers":[{"name":"kata-qemu","features":{"recursiveReadOnlyMounts":false,"userNamespaces":false}}]}}' >/dev/null
mkdir -p "$W/sa"
cp "$KD_APISERVER_CA" "$W/sa/ca.crt"
echo kube-system >"$W/sa/namespace"
k create token kata-deploy-sa -n kube-system --duration=1h >"$W/sa/token"
"$KD" payload pack artifacts/demo/tree --spec artifacts/demo/payload.yaml -o "$W/p.tar.zst" >/dev/null
make_host_root "$W/root"
HC=$W/hc
tests/tools/mkfakeko.sh tree "$HC" 6.1.0-fake >/dev/null 2>&1
mkdir -p "$HC/proc/sys/kernel" "$HC/dev" "$HC/sys/fs/cgroup"
printf 'processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu lm sse4_1 sse4_2 vmx\n' >"$HC/proc/cpuinfo"
echo 6.1.0-fake >"$HC/proc/sys/kernel/osrelease"
echo "cpu memory" >"$HC/sys/fs/cgroup/cgroup.controllers"
: >"$HC/dev/kvm"
HP=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')

one() { # -> "ms requests waiter_rss_kib peak_rss_kib"
	local t0 pid i ms=-1
	t0=$(date +%s%N)
	env KUBERNETES_SERVICE_HOST=127.0.0.1 KUBERNETES_SERVICE_PORT="${KD_APISERVER_URL##*:}" \
		SERVICEACCOUNT_DIR="$W/sa" NODE_NAME=bench-node POD_NAMESPACE=kube-system \
		HOST_ROOT="$W/root" PAYLOAD="$W/p.tar.zst" HOST_CHECK_ROOT="$HC" RUNTIME_RESTART=none \
		POLL_INTERVAL_MS="${POLL_INTERVAL_MS:-2000}" LABEL_STABLE_READS="${LABEL_STABLE_READS:-3}" \
		HEALTH_ADDRESS=127.0.0.1 HEALTH_PORT="$HP" \
		/usr/bin/time -f "%M" -o "$W/time" "$AGENT" install >"$W/agent.log" 2>&1 &
	pid=$!
	pids+=("$pid")
	for i in $(seq 1 3000); do
		if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$HP/readyz")" = 200 ]; then
			ms=$(( ($(date +%s%N) - t0) / 1000000 )); break
		fi
		sleep 0.01
	done
	local req apid rss
	req=$(curl -s "http://127.0.0.1:$HP/metrics" | awk '/^kata_deploy_agent_api_requests_total/{print $2}')
	sleep 0.3
	apid=$(pgrep -P "$pid" -f "kata-deploy-agent" | head -1 || true)
	rss=$(awk '/VmRSS/{print $2}' "/proc/${apid:-$pid}/status" 2>/dev/null || echo ?)
	kill -TERM "${apid:-$pid}" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	echo "$ms $req $rss $(cat "$W/time" 2>/dev/null | tail -1)"
}

echo "agent bench: $RUNS runs, POLL_INTERVAL_MS=${POLL_INTERVAL_MS:-2000} LABEL_STABLE_READS=${LABEL_STABLE_READS:-3}"
read -r ms req rss peak < <(one)
echo "fresh host:     start -> ready ${ms} ms, ${req} API calls, idle waiter RSS ${rss} KiB, peak RSS ${peak} KiB"
for r in $(seq 1 "$RUNS"); do
	read -r ms req rss peak < <(one)
	echo "installed host: start -> ready ${ms} ms, ${req} API calls, idle waiter RSS ${rss} KiB, peak RSS ${peak} KiB"
	echo "$ms $rss $peak" >>"$W/runs"
done
median() { sort -n | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
echo "installed host, median of $RUNS: start -> ready $(cut -d' ' -f1 "$W/runs" | median) ms," \
	"idle waiter RSS $(cut -d' ' -f2 "$W/runs" | median) KiB, peak RSS $(cut -d' ' -f3 "$W/runs" | median) KiB"
