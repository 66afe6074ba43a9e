#!/usr/bin/env bash
# kata-deploy-agent and lib/k8s against a REAL etcd + kube-apiserver on loopback
# (tests/peers/apiserver-up.sh; binaries built from Go modules by scripts/peers, cached).
# The agent runs with the chart's ServiceAccount + RBAC (manifests/10-rbac.yaml) and a token minted
# for it (kubectl create token), written as its in-cluster token file. A Node object stands in for
# the kubelet: the test sets its status (runtime version, Ready, runtimeHandlers).
# Also: manifests/ and every rendered chart example pass `kubectl apply --dry-run=server`.
source "$(dirname "$0")/../lib.sh"
cd "$ROOTDIR"

scripts/peers/all.sh kube-apiserver kubectl >"$T/peers.log" 2>&1 || { cat "$T/peers.log"; exit 1; }
scripts/peers/helm.sh >>"$T/peers.log" 2>&1 || { cat "$T/peers.log"; exit 1; }
PEERS=${KD_PEERS_DIR:-$HOME/.cache/kata-deploy-peers}
KUBECTL=$PEERS/bin/kubectl HELM=$PEERS/bin/helm
AGENT=$KD_BUILD/kata-deploy-agent K8SC=$KD_BUILD/tests/k8s-client

_agent_cleanup() {
	local rc=$?
	for p in $(cat "$T"/agent-*.pid 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
	bash tests/peers/apiserver-down.sh "$T/api" >/dev/null 2>&1 || true
	chmod -R u+w "$T" 2>/dev/null || true
	[ "${KD_KEEP:-0}" = 1 ] && echo "kept $T" || rm -rf "$T"
	exit $rc
}
trap _agent_cleanup EXIT

. tests/peers/apiserver-up.sh "$T/api" >/dev/null
k() { "$KUBECTL" --kubeconfig "$KD_APISERVER_KUBECONFIG" "$@"; }
q() { "$@" >"$T/q.out" 2>&1 || { sed 's/^/#   /' "$T/q.out" | tail -20; return 1; }; }
API_PORT=${KD_APISERVER_URL##*:}

# --- issue 4: manifests and chart renders against the real API server -------------------------
check "kubectl apply --dry-run=server -f manifests/" q k apply --dry-run=server -f manifests/ -o name
for ex in helm/kata-deploy/examples/*.yaml; do
	"$HELM" template kata-deploy helm/kata-deploy -n kube-system -f "$ex" >"$T/render.yaml" 2>"$T/helm.err" ||
		{ not_ok "helm template $ex: $(cat "$T/helm.err")"; continue; }
	check "dry-run=server of rendered $(basename "$ex")" q k apply --dry-run=server -f "$T/render.yaml" -o name
done
# upstream 4.1.0's own values.yaml with only the image override, and a node without systemd
UPV=$T/upstream-values.yaml
tar -xzf "${KD_SHARED_SOURCES:-$ROOTDIR/../shared/sources}/kata-containers-4.1.0.tar.gz" -O \
	kata-containers-4.1.0/tools/packaging/kata-deploy/helm-chart/kata-deploy/values.yaml >"$UPV" ||
	not_ok "upstream 4.1.0 values.yaml from ../shared/sources"
for v in "-f $UPV --set image.reference=registry.example/kata-deploy-c" \
	"--set runtimeRestart=none --set hostCheck=false --set containerRuntime=containerd"; do
	# shellcheck disable=SC2086
	if "$HELM" template kata-deploy helm/kata-deploy -n kube-system $v >"$T/render.yaml" 2>"$T/helm.err"; then
		check "dry-run=server of the render with ${v/$T\//}" q k apply --dry-run=server -f "$T/render.yaml" -o name
	else
		not_ok "helm template $v: $(cat "$T/helm.err")"
	fi
done
check "kubectl apply -f manifests/ creates the objects" q k apply -f manifests/ -o name
check "objects exist: sa, roles, daemonset, runtimeclass" \
	q k get -n kube-system sa/kata-deploy-sa role/kata-deploy-role rolebinding/kata-deploy-rb \
	clusterrole/kata-deploy-role clusterrolebinding/kata-deploy-rb daemonset/kata-deploy runtimeclass/kata-qemu

# --- a node, a host root, a payload, the agent's service account -------------------------------
NODE=kd-node-1
cat >"$T/node.yaml" <<Y
apiVersion: v1
kind: Node
metadata: {name: $NODE, labels: {kubernetes.io/os: linux, kubernetes.io/hostname: $NODE}}
spec:
  taints:
  - {key: kata.example/startup, effect: NoSchedule}
  - {key: other.example/keep, effect: NoSchedule}
Y
k apply -f "$T/node.yaml" >/dev/null
node_status() { # HANDLERS_JSON
	k patch node "$NODE" --subresource=status --type=merge -p "{\"status\":{\"nodeInfo\":{\"containerRuntimeVersion\":\"containerd://1.7.2\",\"kubeletVersion\":\"v1.33.0\",\"osImage\":\"Debian\",\"kernelVersion\":\"6.1\",\"operatingSystem\":\"linux\",\"architecture\":\"amd64\",\"machineID\":\"m\",\"systemUUID\":\"u\",\"bootID\":\"b\",\"kubeProxyVersion\":\"\"},\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\",\"reason\":\"KubeletReady\",\"message\":\"test\",\"lastHeartbeatTime\":\"2025-01-01T00:00:00Z\",\"lastTransitionTime\":\"2025-01-01T00:00:00Z\"}],\"runtimeHandlers\":$1}}" >/dev/null
}
node_status '[{"name":"kata-qemu","features":{"recursiveReadOnlyMounts":false,"userNamespaces":false}}]'

P=$T/payload.tar.zst
"$KD" payload pack artifacts/demo/tree --spec artifacts/demo/payload.yaml -o "$P" >/dev/null
# The same with the debug tool as a component in no shim (a stand-in kata-ctl: which component
# the agent installs is what is tested here; test-kata runs upstream's real one).
cp -a artifacts/demo/tree "$T/tree-dbg"
printf '#!/bin/sh\necho "kata-ctl (test stand-in) $*"\n' >"$T/tree-dbg/opt/kata/bin/kata-ctl"
chmod 0755 "$T/tree-dbg/opt/kata/bin/kata-ctl"
{
	sed '/^shims:/,$d' artifacts/demo/payload.yaml
	printf '  - name: kata-ctl\n    version: "4.1.0"\n    paths: ["bin/kata-ctl"]\n'
	sed -n '/^shims:/,$p' artifacts/demo/payload.yaml
} >"$T/spec-dbg.yaml"
P_DBG=$T/payload-dbg.tar.zst
"$KD" payload pack "$T/tree-dbg" --spec "$T/spec-dbg.yaml" -o "$P_DBG" >/dev/null
make_host_root "$T/orig"
snapshot "$T/orig" >"$T/orig.snap"
# Host-check root: an Intel CPU with VT-x, the virtualization modules, /dev/kvm, cgroup v2.
HC=$T/hc
tests/tools/mkfakeko.sh tree "$HC" 6.1.0-fake >/dev/null 2>&1
mkdir -p "$HC/proc/sys/kernel" "$HC/dev" "$HC/sys/fs/cgroup"
printf 'processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu lm sse4_1 sse4_2 vmx\n' >"$HC/proc/cpuinfo"
echo 6.1.0-fake >"$HC/proc/sys/kernel/osrelease"
echo "cpu memory pids" >"$HC/sys/fs/cgroup/cgroup.controllers"
: >"$HC/dev/kvm"

mint_sa_dir() { # DIR SERVICEACCOUNT [extra kubectl create token args]
	local d=$1 sa=$2; shift 2
	mkdir -p "$d"
	cp "$KD_APISERVER_CA" "$d/ca.crt"
	echo kube-system >"$d/namespace"
	k create token "$sa" -n kube-system --duration=1h "$@" >"$d/token.new" && mv "$d/token.new" "$d/token"
}
mint_sa_dir "$T/sa" kata-deploy-sa

port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
run_agent() { # NAME ROOT [VAR=value ...] -- starts in the background, pid in $T/agent-NAME.pid
	local name=$1 root=$2; shift 2
	local hp; hp=$(port)
	echo "$hp" >"$T/agent-$name.port"
	env KUBERNETES_SERVICE_HOST=127.0.0.1 KUBERNETES_SERVICE_PORT="$API_PORT" \
		SERVICEACCOUNT_DIR="$T/sa" NODE_NAME=$NODE POD_NAMESPACE=kube-system \
		HOST_ROOT="$root" PAYLOAD="$P" HOST_CHECK_ROOT="$HC" \
		RUNTIME_RESTART="command:echo \$KD_UNIT >>$T/restarts" \
		POLL_INTERVAL_MS=100 LABEL_STABLE_READS=2 HEALTH_ADDRESS=127.0.0.1 HEALTH_PORT="$hp" \
		STARTUP_TAINTS=kata.example/startup:NoSchedule RUNTIME_HANDLERS_TIMEOUT=60 \
		"$@" "$AGENT" "${ACTION:-install}" >"$T/agent-$name.log" 2>&1 &
	echo $! >"$T/agent-$name.pid"
}
agent_pid() { cat "$T/agent-$1.pid"; }
not() { ! "$@"; }
kill_agent() { local p; p=$(agent_pid "$1"); { kill -KILL "$p" && wait "$p"; } 2>/dev/null || true; }
readyz() { curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$(cat "$T/agent-$1.port")/readyz"; }
wait_ready() { # NAME SECONDS
	local i
	for i in $(seq 1 $(($2 * 10))); do
		[ "$(readyz "$1")" = 200 ] && return 0
		kill -0 "$(agent_pid "$1")" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}
wait_exit() { # NAME SECONDS -> exit status in $T/agent-NAME.rc
	local pid i rc=0; pid=$(agent_pid "$1")
	for i in $(seq 1 $(($2 * 10))); do
		if ! kill -0 "$pid" 2>/dev/null; then
			wait "$pid" 2>/dev/null || rc=$?
			echo "$rc" >"$T/agent-$1.rc"
			return 0
		fi
		sleep 0.1
	done
	echo timeout >"$T/agent-$1.rc"
	return 1
}
label() { k get node "$NODE" -o jsonpath="{.metadata.labels.${1//./\\.}}"; }
wait_label() { # KEY VALUE SECONDS
	local i
	for i in $(seq 1 $(($3 * 10))); do [ "$(label "$1")" = "$2" ] && return 0; sleep 0.1; done
	return 1
}
wait_claimed() { # NAME SECONDS: the agent's claim went through (its log says so; the label may
	# already have moved on to true by the time a poll looks, on a slow or sanitizer build)
	local i
	for i in $(seq 1 $(($2 * 10))); do
		grep -q "node $NODE claimed" "$T/agent-$1.log" 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}
events() { # REASON [NAMESPACE]
	k get events -n "${2:-kube-system}" --field-selector "involvedObject.name=$NODE,reason=$1" -o name | wc -l
}
show() { echo "# --- $1"; sed 's/^/#   /' "$T/agent-$1.log" | tail -25; }

# --- install, with the chart's RBAC ------------------------------------------------------------
R1=$T/r1; cp -a "$T/orig" "$R1"
t0=$(date +%s%N)
run_agent a1 "$R1"
if wait_ready a1 60; then ok "install: /readyz 200 after $(( ($(date +%s%N) - t0) / 1000000 )) ms"; else not_ok "install: agent never ready"; show a1; fi
check "label katacontainers.io/kata-runtime=true" [ "$(label katacontainers.io/kata-runtime)" = true ]
check "owner label kata-deploy.katacontainers.io/default=true" [ "$(label kata-deploy.katacontainers.io/default)" = true ]
SHIM_LABEL=handler.kata-deploy.katacontainers.io
check "shim label $SHIM_LABEL/kata-qemu=true" [ "$(label $SHIM_LABEL/kata-qemu)" = true ]
# (kube-apiserver's TaintNodesByCondition admission adds node.kubernetes.io/not-ready on create.)
taints=" $(k get node $NODE -o jsonpath='{.spec.taints[*].key}') "
check "startup taint removed, other taint kept ($taints)" \
	[ "${taints/ kata.example\/startup /}" = "$taints" ] && [ "${taints/ other.example\/keep /}" != "$taints" ]
check "event Installed on the Node in kube-system" [ "$(events Installed)" -ge 1 ]
check "runtime restarted once (containerd.service)" [ "$(cat "$T/restarts")" = containerd.service ]
check "Kata installed on the host root" [ -e "$R1/opt/kata/current" ]
check "every effective setting logged" grep -q "setting SHIMS_X86_64=qemu" "$T/agent-a1.log"
curl -s "http://127.0.0.1:$(cat "$T/agent-a1.port")/metrics" >"$T/metrics"
check "/metrics: state installed, ready 1" grep -qx 'kata_deploy_agent_state{state="installed"} 1' "$T/metrics"
reqs=$(awk '/^kata_deploy_agent_api_requests_total/{print $2}' "$T/metrics")
check "/metrics: API requests counted ($reqs)" [ "${reqs:-0}" -gt 3 ]
check "/healthz 200" [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$(cat "$T/agent-a1.port")/healthz")" = 200 ]
pid=$(agent_pid a1)
rss=$(awk '/VmRSS/{print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
echo "# idle waiter RSS ${rss} KiB (pid $pid, $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null))"
check "idle waiter is the re-executed 'wait' action" grep -q "^kata-deploy-agent.wait" <(tr '\0' ' ' <"/proc/$pid/cmdline")

# SIGTERM while the DaemonSet exists and selects the node: a rolling update, nothing is removed.
kill -TERM "$pid"
wait_exit a1 30 || not_ok "agent did not exit after SIGTERM"
check "SIGTERM with DaemonSet present: exit 0" [ "$(cat "$T/agent-a1.rc")" = 0 ]
check "SIGTERM with DaemonSet present: log says rolling update" grep -q "rolling update" "$T/agent-a1.log"
check "SIGTERM with DaemonSet present: still installed" [ -e "$R1/opt/kata/current" ]
check "SIGTERM with DaemonSet present: label still true" [ "$(label katacontainers.io/kata-runtime)" = true ]

# --- already installed: no restart, straight to labelled ---------------------------------------
# (a rolling update's new pod: its claim keeps the serving node's labels true throughout)
: >"$T/restarts"
k get node "$NODE" --watch -o jsonpath='{.metadata.labels.katacontainers\.io/kata-runtime}{" "}{.metadata.labels.kata-deploy\.katacontainers\.io/default}{"\n"}' \
	>"$T/labels-a2" 2>/dev/null &
watch_pid=$!
run_agent a2 "$R1"
if wait_ready a2 60; then ok "re-run on an installed host: ready"; else not_ok "re-run: not ready"; show a2; fi
kill "$watch_pid" 2>/dev/null; wait "$watch_pid" 2>/dev/null || true
check "re-run on an installed host: no runtime restart" [ ! -s "$T/restarts" ]
check "re-run on an installed host: the labels stayed true ($(sort "$T/labels-a2" | uniq -c | tr -s ' \n' ' '))" \
	[ -s "$T/labels-a2" ] && ! grep -qv '^true true$' "$T/labels-a2"

# DaemonSet deleted -> SIGTERM uninstalls and restores the root byte for byte.
k delete daemonset kata-deploy -n kube-system >/dev/null
kill -TERM "$(agent_pid a2)"
wait_exit a2 60 || not_ok "agent did not exit after SIGTERM (DaemonSet gone)"
check "SIGTERM, DaemonSet gone: exit 0" [ "$(cat "$T/agent-a2.rc")" = 0 ]
snapshot "$R1" >"$T/r1.snap"
if diff -u "$T/orig.snap" "$T/r1.snap" >"$T/diff"; then ok "SIGTERM, DaemonSet gone: root restored byte for byte"; else not_ok "root differs"; sed 's/^/#   /' "$T/diff" | head -20; fi
check "SIGTERM, DaemonSet gone: labels removed" [ -z "$(label katacontainers.io/kata-runtime)$(label kata-deploy.katacontainers.io/default)$(label $SHIM_LABEL/kata-qemu)" ]
check "SIGTERM, DaemonSet gone: runtime restarted" [ "$(cat "$T/restarts")" = containerd.service ]
check "event Uninstalled" [ "$(events Uninstalled)" -ge 1 ]
k apply -f manifests/20-daemonset.yaml >/dev/null

# --- enabled shims the payload does not have (upstream's values enable them all) ---------------
# The demo payload has qemu and clh: clh-azure and openvmm-azure-runtime-rs are named (log,
# ShimsMissing Event) and left out; the node installs the others and is labelled; the missing
# shims' labels are not set (a stale one is removed), so their RuntimeClasses keep pods away.
k label node "$NODE" "$SHIM_LABEL/kata-clh-azure=true" >/dev/null
R4=$T/r4; cp -a "$T/orig" "$R4"
MS=("SHIMS_X86_64=qemu clh-azure openvmm-azure-runtime-rs" DEFAULT_SHIM_X86_64=clh-azure
	SNAPSHOTTER_HANDLER_MAPPING_X86_64=clh-azure:nydus HOST_CHECK=false)
run_agent ms "$R4" "${MS[@]}"
if wait_ready ms 60; then ok "missing shims: the node installs the others, ready"; else not_ok "missing shims: not ready"; show ms; fi
check "missing shims: named in the log" grep -q \
	"enabled shims not in the payload, not installed: clh-azure, openvmm-azure-runtime-rs (SHIMS_X86_64)" "$T/agent-ms.log"
check "missing shims: a ShimsMissing Warning Event" [ "$(events ShimsMissing)" -ge 1 ]
check "missing shims: the Event names them" grep -q "clh-azure, openvmm-azure-runtime-rs" \
	<(k get events -n kube-system --field-selector "involvedObject.name=$NODE,reason=ShimsMissing" -o jsonpath='{.items[*].message}')
check "missing shims: label katacontainers.io/kata-runtime true" [ "$(label katacontainers.io/kata-runtime)" = true ]
check "missing shims: $SHIM_LABEL/kata-qemu=true" [ "$(label $SHIM_LABEL/kata-qemu)" = true ]
check "missing shims: no $SHIM_LABEL/kata-openvmm-azure-runtime-rs" [ -z "$(label $SHIM_LABEL/kata-openvmm-azure-runtime-rs)" ]
check "missing shims: the stale $SHIM_LABEL/kata-clh-azure removed" [ -z "$(label $SHIM_LABEL/kata-clh-azure)" ]
check "missing shims: only kata-qemu configured" [ "$(grep -rhoE 'runtimes\.(\x27|")?kata-[a-z-]+' "$R4/etc/containerd" | sed -E 's/.*(kata-[a-z-]+)/\1/' | sort -u)" = kata-qemu ]
k delete daemonset kata-deploy -n kube-system >/dev/null
kill -TERM "$(agent_pid ms)"
wait_exit ms 60 || not_ok "missing shims: agent did not exit after SIGTERM"
check "missing shims: uninstall removes the shim label it set" [ -z "$(label $SHIM_LABEL/kata-qemu)" ]
check "missing shims: root restored byte for byte" diff -q <(snapshot "$R4") "$T/orig.snap"
k apply -f manifests/20-daemonset.yaml >/dev/null

# --- errors that must be clear ------------------------------------------------------------------
run_agent nonode "$T/orig" NODE_NAME=no-such-node
wait_exit nonode 60 || not_ok "missing node: agent did not exit"
check "NODE_NAME that does not exist: exit 1" [ "$(cat "$T/agent-nonode.rc")" = 1 ]
check "NODE_NAME that does not exist: message" grep -q 'NODE_NAME=no-such-node: no such Node: get nodes/no-such-node: 404 NotFound: nodes "no-such-node" not found' "$T/agent-nonode.log"

expect_fail "bad setting names variable, value and allowed values" \
	"DEFAULT_SHIM_X86_64=clh: not among the enabled shims (SHIMS_X86_64=qemu)" \
	env NODE_NAME=$NODE DEFAULT_SHIM_X86_64=clh "$AGENT" install

# RBAC that forbids a verb: nodes get only.
cat >"$T/rbac-ro.yaml" <<'Y'
apiVersion: v1
kind: ServiceAccount
metadata: {name: kd-readonly, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: kd-readonly}
rules: [{apiGroups: [""], resources: [nodes], verbs: [get]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: kd-readonly}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: kd-readonly}
subjects: [{kind: ServiceAccount, name: kd-readonly, namespace: kube-system}]
Y
k apply -f "$T/rbac-ro.yaml" >/dev/null
mint_sa_dir "$T/sa-ro" kd-readonly
run_agent rbac "$T/orig" SERVICEACCOUNT_DIR="$T/sa-ro"
wait_exit rbac 60 || not_ok "RBAC: agent did not exit"
check "RBAC without patch: exit 1" [ "$(cat "$T/agent-rbac.rc")" = 1 ]
check "RBAC without patch: error names verb and resource" grep -q \
	"claim node $NODE: patch nodes/$NODE: 403 Forbidden: nodes \"$NODE\" is forbidden: User \"system:serviceaccount:kube-system:kd-readonly\" cannot patch resource \"nodes\"" \
	"$T/agent-rbac.log"

# Host check refuses: no enabled shim can run (an empty host-check root), with an Event.
mkdir -p "$T/emptyhc"
R3=$T/r3; cp -a "$T/orig" "$R3"
run_agent hc "$R3" HOST_CHECK_ROOT="$T/emptyhc"
wait_exit hc 60 || not_ok "host check: agent did not exit"
check "host check refuses: exit 1" [ "$(cat "$T/agent-hc.rc")" = 1 ]
check "host check refuses: message" grep -q "host check: no enabled shim can run on this node: qemu (" "$T/agent-hc.log"
check "host check refuses: InstallFailed event" [ "$(events InstallFailed)" -ge 1 ]
check "host check refuses: host root untouched" diff -q <(snapshot "$R3") "$T/orig.snap"
# It had claimed the node ("false"); failed, it exits and waits in CrashLoopBackOff, where no
# agent runs to clean up if the release is uninstalled: the claim must not stay behind.
check "host check refuses: it had claimed the node" grep -q "node $NODE claimed" "$T/agent-hc.log"
check "host check refuses: labels released on exit (not left 'false')" \
	[ -z "$(label katacontainers.io/kata-runtime)$(label kata-deploy.katacontainers.io/default)" ]
check "host check refuses: the release is logged" grep -q "install failed: claim taken back on node $NODE" "$T/agent-hc.log"
# containerd's CRI plugin disabled (the default of Docker's containerd.io package): whatever
# kubelet runs this node does not use that containerd; refused before any host write, with an
# Event that says why (issue 16).
R3c=$T/r3c; cp -a "$T/orig" "$R3c"
sed -i '1a disabled_plugins = ["cri"]' "$R3c/etc/containerd/config.toml"
snapshot "$R3c" >"$T/r3c.snap"
run_agent cri "$R3c" HOST_CHECK=false
wait_exit cri 60 || not_ok "CRI disabled: agent did not exit"
check "CRI disabled: exit 1" [ "$(cat "$T/agent-cri.rc")" = 1 ]
check "CRI disabled: the log says why" grep -q "disables containerd's CRI plugin (disabled_plugins contains \"cri\"): refusing" "$T/agent-cri.log"
check "CRI disabled: a CRIDisabled Warning Event" [ "$(events CRIDisabled)" -ge 1 ]
check "CRI disabled: the Event says what to do" grep -q 'remove "cri" from disabled_plugins and restart containerd' \
	<(k get events -n kube-system --field-selector "involvedObject.name=$NODE,reason=CRIDisabled" -o jsonpath='{.items[*].message}')
check "CRI disabled: host root untouched" diff -q <(snapshot "$R3c") "$T/r3c.snap"
# HOST_CHECK=false (the chart's hostCheck: false): the same node installs, unchecked.
R3b=$T/r3b; cp -a "$T/orig" "$R3b"
run_agent hcoff "$R3b" HOST_CHECK_ROOT="$T/emptyhc" HOST_CHECK=false
if wait_ready hcoff 60; then ok "HOST_CHECK=false: installs where the host check refuses"; else not_ok "HOST_CHECK=false: not ready"; show hcoff; fi
check "HOST_CHECK=false: setting logged" grep -q "setting HOST_CHECK=false" "$T/agent-hcoff.log"
check "HOST_CHECK=false: Kata installed" [ -e "$R3b/opt/kata/current" ]
kill_agent hcoff
# A re-run on that serving install fails (the host check refuses now): its claim kept "true" and
# taking it back leaves it: the installed version still serves.
run_agent hcre "$R3b" HOST_CHECK_ROOT="$T/emptyhc"
wait_exit hcre 60 || not_ok "host check on a serving install: agent did not exit"
check "host check refuses a re-run on a serving install: exit 1" [ "$(cat "$T/agent-hcre.rc")" = 1 ]
check "... the labels stay true (the installed version serves)" \
	[ "$(label katacontainers.io/kata-runtime)/$(label kata-deploy.katacontainers.io/default)/$(label $SHIM_LABEL/kata-qemu)" = true/true/true ]

# --- 409 Conflict on a guarded label update (lib/k8s through the test driver) ----------------
out=$("$K8SC" "$KD_APISERVER_KUBECONFIG" conflict "$NODE" 2>&1) || true
check "409 on a guarded update is retried: $out" [ "$out" = "conflicts=1 calls=2" ]
check "guarded update landed" [ "$(label kd-test/guarded)" = yes ]

# --- token file rotated while the agent waits ---------------------------------------------------
k delete secret tok-a -n kube-system >/dev/null 2>&1 || true
k create secret generic tok-a -n kube-system >/dev/null
k create secret generic tok-b -n kube-system >/dev/null
mkdir -p "$T/sa-rot"
mint_sa_dir "$T/sa-rot" kata-deploy-sa --bound-object-kind Secret --bound-object-name tok-a
node_status '[]'
# (the HOST_CHECK=false scenario left the labels true: remove them, so the wait below sees our claim)
k label node "$NODE" katacontainers.io/kata-runtime- kata-deploy.katacontainers.io/default- >/dev/null
R4=$T/r4; cp -a "$T/orig" "$R4"
run_agent rot "$R4" SERVICEACCOUNT_DIR="$T/sa-rot"
wait_claimed rot 60 || not_ok "rotation: node never claimed"
sleep 0.5
old=$(cat "$T/sa-rot/token")
k create token kata-deploy-sa -n kube-system --duration=1h --bound-object-kind Secret --bound-object-name tok-b >"$T/sa-rot/token.new"
mv "$T/sa-rot/token.new" "$T/sa-rot/token"
k delete secret tok-a -n kube-system >/dev/null
# kube-apiserver caches a successful token authentication for 10 s (TokenSuccessCacheTTL).
t_rej=$(date +%s)
for i in $(seq 1 100); do
	code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$KD_APISERVER_CA" -H "Authorization: Bearer $old" "$KD_APISERVER_URL/api/v1/nodes/$NODE")
	[ "$code" = 401 ] && break
	sleep 0.2
done
check "rotation: the old token is now rejected ($code after $(($(date +%s) - t_rej)) s)" [ "$code" = 401 ]
node_status '[{"name":"kata-qemu","features":{"recursiveReadOnlyMounts":false,"userNamespaces":false}}]'
if wait_ready rot 60; then ok "rotation: agent picked up the new token and finished"; else not_ok "rotation: not ready"; show rot; fi
kill_agent rot

# --- the API server stopped in the middle of an install, then started again --------------------
k label node "$NODE" katacontainers.io/kata-runtime- kata-deploy.katacontainers.io/default- >/dev/null
node_status '[]'
R5=$T/r5; cp -a "$T/orig" "$R5"
run_agent outage "$R5" API_RETRIES=10 DEBUG=true ALLOWED_HYPERVISOR_ANNOTATIONS_X86_64=default_vcpus \
	AGENT_HTTPS_PROXY=http://proxy.example:3128 PAYLOAD="$P_DBG"
wait_claimed outage 60 || not_ok "outage: node never claimed"
api_pid=$(cat "$T/api/kube-apiserver.pid")
mapfile -d '' api_cmd <"/proc/$api_pid/cmdline"
kill -TERM "$api_pid"
for i in $(seq 1 100); do kill -0 "$api_pid" 2>/dev/null || break; sleep 0.1; done
sleep 3
"${api_cmd[@]}" >>"$T/api/kube-apiserver.log" 2>&1 </dev/null &
echo $! >"$T/api/kube-apiserver.pid"
for i in $(seq 1 240); do
	curl -fsS --cacert "$KD_APISERVER_CA" -H "Authorization: Bearer $KD_APISERVER_TOKEN" "$KD_APISERVER_URL/readyz" 2>/dev/null | grep -q '^ok$' && break
	sleep 0.25
done
check "outage: agent still running through the outage" kill -0 "$(agent_pid outage)"
node_status '[{"name":"kata-qemu","features":{"recursiveReadOnlyMounts":false,"userNamespaces":false}},{"name":"kata-qemu-debug","features":{"recursiveReadOnlyMounts":false,"userNamespaces":false}}]'
if wait_ready outage 90; then ok "outage: agent retried and finished"; else not_ok "outage: not ready"; show outage; fi
check "outage: label true" [ "$(label katacontainers.io/kata-runtime)" = true ]
# The agent's runtime settings reached the engine (Kata's per-shim drop-ins on the host root).
KC=$R5/opt/kata/runtimes/qemu/config.d
check "settings to engine: DEBUG -> kata-qemu-debug handler with 20-debug.toml" [ -f "$R5/opt/kata/runtimes/qemu-debug/config.d/20-debug.toml" ]
check "settings to engine: DEBUG leaves kata-qemu without debug" [ ! -e "$KC/20-debug.toml" ]
check "DEBUG: the agent waited for kata-qemu-debug too (no handler reported missing)" bash -c "! grep -q 'runtime handlers missing' '$T/agent-outage.log'"
check "DEBUG: the payload's debug tool kata-ctl is installed and runs" \
	bash -c "'$R5/opt/kata/bin/kata-ctl' version | grep -q 'kata-ctl (test stand-in) version'"
check "settings to engine: AGENT_HTTPS_PROXY -> kernel_params" grep -q 'agent.https_proxy=http://proxy.example:3128' "$KC/30-kernel-params.toml"
check "settings to engine: ALLOWED_HYPERVISOR_ANNOTATIONS -> enable_annotations" grep -q '"default_vcpus"' "$KC/40-annotations.toml"
check "settings to engine: containerd handler kata-qemu" grep -q 'kata-qemu' "$R5/etc/containerd/config.toml"
echo "# outage: $(grep -c '403 from a server that' "$T/agent-outage.log" || true) request(s) refused with 403 while the restarted server loaded RBAC"
kill_agent outage

# --- Events about a Node: which namespaces the API accepts, and the chart outside kube-system ---
node_uid=$(k get node "$NODE" -o jsonpath='{.metadata.uid}')
k create namespace kata-system >/dev/null
ev_probe() { # NAMESPACE -> the API's answer to a core/v1 Event about the Node there
	k create -f - -o name 2>&1 <<Y
apiVersion: v1
kind: Event
metadata: {generateName: probe., namespace: $1}
involvedObject: {apiVersion: v1, kind: Node, name: $NODE, uid: $node_uid}
type: Normal
reason: Probe
action: Probe
message: probe
eventTime: "2025-01-01T00:00:00.000000Z"
reportingComponent: probe
reportingInstance: probe
Y
}
check "Event about a Node accepted in kube-system" grep -q '^event/probe' <<<"$(ev_probe kube-system)"
check "Event about a Node accepted in default" grep -q '^event/probe' <<<"$(ev_probe default)"
out=$(ev_probe kata-system || true)
check "Event about a Node refused in another namespace ($out)" grep -q 'involvedObject.namespace.*does not match event.namespace' <<<"$out"
# The chart installed in kata-system: its Role in default lets the agent post there.
"$HELM" template kata-deploy helm/kata-deploy -n kata-system >"$T/ks.yaml"
check "chart in kata-system: real apply" q k apply -f "$T/ks.yaml" -o name
mkdir -p "$T/sa-ks"
cp "$KD_APISERVER_CA" "$T/sa-ks/ca.crt"
echo kata-system >"$T/sa-ks/namespace"
k create token kata-deploy-sa -n kata-system --duration=1h >"$T/sa-ks/token"
k label node "$NODE" katacontainers.io/kata-runtime- kata-deploy.katacontainers.io/default- >/dev/null
R6=$T/r6; cp -a "$T/orig" "$R6"
run_agent ks "$R6" SERVICEACCOUNT_DIR="$T/sa-ks" POD_NAMESPACE=kata-system
if wait_ready ks 60; then ok "chart in kata-system: agent installed with its token"; else not_ok "chart in kata-system: not ready"; show ks; fi
check "chart in kata-system: Installed event in default" [ "$(events Installed default)" -ge 1 ]
check "chart in kata-system: no event refused" not grep -q 'not posted' "$T/agent-ks.log"
kill_agent ks

# --- reset: labels released, the runtime and (plain containerd) the kubelet restarted ----------
: >"$T/restarts"
ACTION=reset run_agent reset "$R6" SERVICEACCOUNT_DIR="$T/sa-ks" POD_NAMESPACE=kata-system
wait_exit reset 60 || not_ok "reset: agent did not exit"
check "reset: exit 0" [ "$(cat "$T/agent-reset.rc")" = 0 ]
check "reset: containerd then kubelet restarted ($(tr '\n' ' ' <"$T/restarts"))" \
	[ "$(tr '\n' ' ' <"$T/restarts")" = "containerd.service kubelet.service " ]
check "reset: labels released" [ -z "$(label katacontainers.io/kata-runtime)$(label kata-deploy.katacontainers.io/default)" ]
check "reset: Reset event in default" [ "$(events Reset default)" -ge 1 ]
check "reset: Kata itself left installed" [ -e "$R6/opt/kata/current" ]

finish
