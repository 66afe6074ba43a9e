#!/usr/bin/env bash
# Node Feature Discovery and the TEE shims (docs/HELM.md, "Node Feature Discovery and TEE shims"),
# with real Helm, a REAL etcd + kube-apiserver + kube-scheduler (v1.33, scripts/peers) on loopback
# and NFD's own CRDs (crds/nfd-api-crds.yaml of the node-feature-discovery 0.19.0 chart that
# upstream Kata 4.1.0 vendors, read from ../shared/sources; not copied into this repository):
#   - renders: the NodeFeatureRule, the TEE keys in overhead.podFixed and the TEE node selectors
#     for each nodeFeatureRules.create / node-feature-discovery.enabled / NFD-found combination
#     (tests/helm/check-nfd.py);
#   - without NFD's API the rule is refused by the apiserver and `auto` renders none;
#   - the apiserver accepts the rendered rule (schema validation: a broken one is refused);
#   - helm install / upgrade against the cluster: `auto` follows NFD's API (Capabilities) and an
#     NFD found running (lookup), the release creates and deletes the rule;
#   - nodes labelled as nfd-master would from the rule (labels and extended resources taken from
#     the rule in the cluster; no nfd-master runs here, the test stands in for it) and the real
#     scheduler: a pod of each TEE RuntimeClass lands only on its TEE's node, and the keys run out.
source "$(dirname "$0")/../lib.sh"
cd "$ROOTDIR"

scripts/peers/all.sh kube-node kubectl >"$T/peers.log" 2>&1 || { cat "$T/peers.log"; exit 1; }
scripts/peers/helm.sh >>"$T/peers.log" 2>&1 || { cat "$T/peers.log"; exit 1; }
PEERS=${KD_PEERS_DIR:-$HOME/.cache/kata-deploy-peers}
KUBECTL=$PEERS/bin/kubectl HELM=$PEERS/bin/helm SCHED=$PEERS/bin/kube-scheduler
CHART=helm/kata-deploy

_nfd_cleanup() {
	local rc=$?
	set +e
	[ -f "$T/sched.pid" ] && { kill "$(cat "$T/sched.pid")" 2>/dev/null; wait "$(cat "$T/sched.pid")" 2>/dev/null; }
	bash tests/peers/apiserver-down.sh "$T/api" >/dev/null 2>&1 || true
	[ "${KD_KEEP:-0}" = 1 ] && echo "kept $T" || rm -rf "$T"
	exit $rc
}
trap _nfd_cleanup EXIT

# Helm and kubectl keep their caches and config in the temp dir.
mkdir -p "$T/home"
export KD_PEERS_DIR=$PEERS HOME=$T/home HELM_CACHE_HOME=$T/helm HELM_CONFIG_HOME=$T/helm HELM_DATA_HOME=$T/helm
. tests/peers/apiserver-up.sh "$T/api" >/dev/null
export KUBECONFIG=$KD_APISERVER_KUBECONFIG
k() { "$KUBECTL" "$@"; }
q() { "$@" >"$T/q.out" 2>&1 || { sed 's/^/#   /' "$T/q.out" | tail -20; return 1; }; }
h() { "$HELM" "$@"; }
not() { ! "$@"; }

# --- the TEE shims of upstream's try-kata-tee values, the nvidia-gpu snp/tdx ones, a plain one;
#     debug (the -debug classes), the default class on qemu-snp, a custom runtime on qemu-tdx.
cat >"$T/tee.yaml" <<'Y'
kubectlImage: ""
debug: true
shims:
  disableAll: true
  qemu-snp: {enabled: true}
  qemu-snp-runtime-rs: {enabled: true}
  qemu-tdx: {enabled: true}
  qemu-tdx-runtime-rs: {enabled: true}
  qemu-se: {enabled: true}
  qemu-se-runtime-rs: {enabled: true}
  qemu-coco-dev: {enabled: true}
  qemu-nvidia-gpu-snp: {enabled: true}
  qemu-nvidia-gpu-tdx-runtime-rs: {enabled: true}
defaultShim: {amd64: qemu-snp, arm64: qemu-snp, s390x: qemu-se, ppc64le: qemu-snp}
runtimeClasses: {createDefault: true}
customRuntimes:
  enabled: true
  runtimes:
    kata-tdx-big: {baseConfig: qemu-tdx}
Y
TEE=(-f "$T/tee.yaml")
CUSTOM=(kata-tdx-big=qemu-tdx)
API=(--api-versions nfd.k8s-sigs.io/v1alpha1)

render_check() { # NAME RULES SELECTORS SFX helm-template-args...
	local name=$1 rules=$2 sel=$3 sfx=$4; shift 4
	if ! h template kata-deploy "$CHART" -n kube-system "$@" >"$T/$name.yaml" 2>"$T/$name.err"; then
		not_ok "helm template ($name): $(tail -3 "$T/$name.err")"; return
	fi
	if python3 tests/helm/check-nfd.py "$rules" "$sel" "$sfx" "${CUSTOM[@]}" <"$T/$name.yaml" >"$T/$name.check"; then
		ok "render $name: rule=$rules selectors=$sel ($(grep -c '^ok' "$T/$name.check") checks)"
	else
		not_ok "render $name"; grep '^not ok' "$T/$name.check" | sed 's/^/#   /'
	fi
}

# --- renders without a cluster ------------------------------------------------------------------
h template kata-deploy "$CHART" -n kube-system >"$T/default.yaml" 2>&1
check "defaults: no NodeFeatureRule, no TEE key" not grep -qE 'NodeFeatureRule|sev-snp.amd.com|tdx.intel.com' "$T/default.yaml"
h template kata-deploy "$CHART" -n kube-system "${API[@]}" >"$T/default-api.yaml" 2>&1
check "defaults + NFD's API: the rule, no TEE key (qemu only)" \
	eval 'grep -q "^kind: NodeFeatureRule" "$T/default-api.yaml" && ! grep -qE "sev-snp.amd.com/esids: \"1\"|tdx.intel.com/keys: \"1\"" "$T/default-api.yaml"'
check "helm lint --strict (TEE values + node-feature-discovery.enabled)" \
	q h lint --strict "$CHART" "${TEE[@]}" --set node-feature-discovery.enabled=true
render_check auto-nothing 0 0 "" "${TEE[@]}"
render_check auto-api 1 0 "" "${TEE[@]}" "${API[@]}"
render_check nfd-enabled 1 1 "" "${TEE[@]}" --set node-feature-discovery.enabled=true
render_check create-true 1 0 "" "${TEE[@]}" --set nodeFeatureRules.create=true
render_check create-false 0 1 "" "${TEE[@]}" --set node-feature-discovery.enabled=true --set nodeFeatureRules.create=false
render_check create-false-api 0 0 "" "${TEE[@]}" "${API[@]}" --set-string nodeFeatureRules.create=false
render_check suffix 1 1 "-tee" "${TEE[@]}" --set node-feature-discovery.enabled=true --set env.multiInstallSuffix=tee
# a shim's own runtimeClass.nodeSelector replaces NFD's label (as upstream)
h template kata-deploy "$CHART" -n kube-system "${TEE[@]}" --set node-feature-discovery.enabled=true \
	--set shims.qemu-snp.runtimeClass.nodeSelector.example\\.com/snp-pool=yes --show-only templates/runtimeclasses.yaml >"$T/own.yaml"
check "a shim's own nodeSelector replaces NFD's label" python3 - "$T/own.yaml" <<'PY'
import sys, yaml
rc = {d["metadata"]["name"]: d for d in yaml.safe_load_all(open(sys.argv[1])) if d}
s = rc["kata-qemu-snp"]["scheduling"]["nodeSelector"]
o = rc["kata-qemu-snp"]["overhead"]["podFixed"]
sys.exit(0 if s.get("example.com/snp-pool") == "yes" and "amd.feature.node.kubernetes.io/snp" not in s
         and o.get("sev-snp.amd.com/esids") == "1" else 1)
PY
grep -F '# WARNING:' "$T/create-false.yaml" >"$T/w.txt" || true
check "create: false with TEE selectors warns for the labels only a rule sets" \
	grep -qF 'RuntimeClass kata-qemu-snp selects amd.feature.node.kubernetes.io/snp, which NFD sets only with a NodeFeatureRule' "$T/w.txt"
check "node-feature-discovery.enabled warns that NFD is not installed" \
	grep -qF 'node-feature-discovery.enabled does not install NFD here' "$T/w.txt"
check "no such warning once the rule is rendered" not grep -q 'which NFD sets only with a NodeFeatureRule' "$T/nfd-enabled.yaml"
expect_fail "nodeFeatureRules.create: maybe is refused" 'nodeFeatureRules.create must be one of the following' \
	h template kata-deploy "$CHART" --set nodeFeatureRules.create=maybe

# --- the apiserver without NFD's CRDs -----------------------------------------------------------
expect_fail "without NFD's CRDs the apiserver has no NodeFeatureRule (create: true needs them)" \
	'no matches for kind "NodeFeatureRule"' k apply --dry-run=server -f "$T/create-true.yaml"
check "dry-run=server of the auto render (no rule): accepted" q k apply --dry-run=server -f "$T/auto-nothing.yaml"
check "helm install (auto, cluster without NFD)" q h install kata-deploy "$CHART" -n kube-system "${TEE[@]}"
rc_json() { k get runtimeclass "$1" -o jsonpath="{.overhead.podFixed}{\"|\"}{.scheduling.nodeSelector}"; }
check "no rule, so the release notes do not name one" \
	eval 'h get notes kata-deploy -n kube-system >"$T/notes" && grep -q "^RuntimeClasses:" "$T/notes" && ! grep -q "^NodeFeatureRule kata-tee-keys" "$T/notes"'
check "installed kata-qemu-snp: no key, no NFD label" \
	eval 'rc_json kata-qemu-snp >"$T/rc" && grep -q "\"cpu\":\"1\"" "$T/rc" && ! grep -qE "esids|amd.feature" "$T/rc"'
expect_fail "no NodeFeatureRule API yet" 'the server doesn'"'"'t have a resource type "nodefeaturerules"' \
	k get nodefeaturerules

# --- NFD's CRDs, from the node-feature-discovery chart that upstream Kata 4.1.0 vendors ---------
SRC=$KD_SHARED_SOURCES/kata-containers-4.1.0.tar.gz
tar -xzf "$SRC" -O kata-containers-4.1.0/tools/packaging/kata-deploy/helm-chart/kata-deploy/charts/node-feature-discovery-0.19.0.tgz |
	tar -xzf - -O node-feature-discovery/crds/nfd-api-crds.yaml >"$T/nfd-crds.yaml"
check "NFD 0.19.0 CRDs from $(basename "$SRC"): $(grep -c '^kind: CustomResourceDefinition' "$T/nfd-crds.yaml") CRDs" \
	grep -q 'name: nodefeaturerules.nfd.k8s-sigs.io' "$T/nfd-crds.yaml"
check "kubectl apply NFD's CRDs" q k apply -f "$T/nfd-crds.yaml"
check "NodeFeatureRule CRD established" q k wait --for condition=established --timeout=60s crd/nodefeaturerules.nfd.k8s-sigs.io
for c in nfd-enabled suffix create-true; do
	check "dry-run=server of the $c render: the apiserver accepts the rule" q k apply --dry-run=server -f "$T/$c.yaml"
done
# the apiserver really validates: a broken copy of our rule is refused
sed 's/{op: Exists}/{op: Bogus}/' "$T/create-true.yaml" >"$T/bogus.yaml"
expect_fail "a rule with an unknown op is refused by the CRD schema" 'Unsupported value: "Bogus"' \
	k apply --dry-run=server -f "$T/bogus.yaml"
python3 - "$T/create-true.yaml" >"$T/noname.yaml" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] == "NodeFeatureRule"]
del docs[0]["spec"]["rules"][0]["name"]
print(yaml.safe_dump(docs[0]))
PY
expect_fail "a rule without a name is refused by the CRD schema" 'name: Required value' \
	k apply --dry-run=server -f "$T/noname.yaml"

# --- helm upgrade: auto now sees NFD's API; then an NFD found running ---------------------------
check "helm upgrade (auto, NFD's API served)" q h upgrade kata-deploy "$CHART" -n kube-system "${TEE[@]}"
check "the release created NodeFeatureRule kata-tee-keys" q k get nodefeaturerule kata-tee-keys
check "the release notes name the rule" eval 'h get notes kata-deploy -n kube-system | grep -q "^NodeFeatureRule kata-tee-keys: "'
check "kata-qemu-snp requests one sev-snp.amd.com/esids; no NFD label yet (no NFD found)" \
	eval 'rc_json kata-qemu-snp | grep -q "\"sev-snp.amd.com/esids\":\"1\"" && ! rc_json kata-qemu-snp | grep -q amd.feature'
check "kata-qemu-tdx-runtime-rs-debug requests one tdx.intel.com/keys" \
	eval 'rc_json kata-qemu-tdx-runtime-rs-debug | grep -q "\"tdx.intel.com/keys\":\"1\""'
# NFD's worker DaemonSet as its chart names it (an object only: no controller runs here)
fake_nfd() { # NAMESPACE KIND NAME
	k create namespace "$1" >/dev/null 2>&1 || true
	cat <<Y | k apply -f - >/dev/null
apiVersion: apps/v1
kind: $2
metadata: {name: $3, namespace: $1}
spec:
  selector: {matchLabels: {app: $3}}
  template:
    metadata: {labels: {app: $3}}
    spec: {containers: [{name: c, image: registry.example/nfd:0.19.0}]}
Y
}
lookup_sel() { # -> does kata-qemu-snp select NFD's label in a --dry-run=server render: 1 or 0
	h template kata-deploy "$CHART" -n kube-system "${TEE[@]}" --dry-run=server --show-only templates/runtimeclasses.yaml |
		python3 -c '
import sys, yaml
rc = {d["metadata"]["name"]: d for d in yaml.safe_load_all(sys.stdin) if d}
print(int("amd.feature.node.kubernetes.io/snp" in rc["kata-qemu-snp"]["scheduling"]["nodeSelector"]))'
}
check "dry-run=server render: no NFD running, no TEE selector" test "$(lookup_sel)" = 0
fake_nfd nfd Deployment nfd-master
check "an NFD found running (Deployment nfd/nfd-master): TEE selectors" test "$(lookup_sel)" = 1
k delete -n nfd deployment nfd-master >/dev/null
fake_nfd node-feature-discovery DaemonSet node-feature-discovery-worker
check "an NFD found running (DaemonSet node-feature-discovery-worker): TEE selectors" test "$(lookup_sel)" = 1
check "helm upgrade (NFD running)" q h upgrade kata-deploy "$CHART" -n kube-system "${TEE[@]}"
check "kata-qemu-snp selects amd.feature.node.kubernetes.io/snp" \
	eval 'rc_json kata-qemu-snp | grep -q "\"amd.feature.node.kubernetes.io/snp\":\"true\""'
check "kata (default class on qemu-snp) requests a key and selects NFD's label" \
	eval 'rc_json kata | grep -q "sev-snp.amd.com/esids" && rc_json kata | grep -q "amd.feature.node.kubernetes.io/snp"'
check "kata-qemu-se selects NFD's cpu-security.se.enabled" \
	eval 'rc_json kata-qemu-se | grep -q "feature.node.kubernetes.io/cpu-security.se.enabled"'
h get manifest kata-deploy -n kube-system >"$T/live.yaml"
if python3 tests/helm/check-nfd.py 1 1 "" "${CUSTOM[@]}" <"$T/live.yaml" >"$T/live.check"; then
	ok "the release's manifest: $(grep -c '^ok' "$T/live.check") checks"
else
	not_ok "the release's manifest"; grep '^not ok' "$T/live.check" | sed 's/^/#   /'
fi

# --- nodes labelled as nfd-master would from the rule in the cluster, and the real scheduler ----
rule_part() { # RULE-NAME labels|extendedResources -> "key=value" lines
	k get nodefeaturerule kata-tee-keys -o json | python3 -c '
import json, sys
r = [x for x in json.load(sys.stdin)["spec"]["rules"] if x["name"] == sys.argv[1]][0]
for k, v in sorted((r.get(sys.argv[2]) or {}).items()): print(f"{k}={v}")' "$1" "$2"
}
# What the agent labels: kata-runtime, its install's owner label and each installed shim's label.
agent_labels=(katacontainers.io/kata-runtime=true kata-deploy.katacontainers.io/default=true)
for s in qemu-snp qemu-snp-runtime-rs qemu-tdx qemu-tdx-runtime-rs qemu-se qemu-se-runtime-rs qemu-coco-dev \
	qemu-nvidia-gpu-snp qemu-nvidia-gpu-tdx-runtime-rs; do
	agent_labels+=("handler.kata-deploy.katacontainers.io/kata-$s=true")
done
mk_node() { # NAME ARCH "label=v ..." "resource=count ..."
	local n=$1 lab res=""
	lab=$(printf '%s,' "${agent_labels[@]}" $3 "kubernetes.io/arch=$2" "kubernetes.io/hostname=$n")
	k create -f - >/dev/null <<Y
apiVersion: v1
kind: Node
metadata: {name: $n}
Y
	k label node "$n" ${lab//,/ } >/dev/null
	for r in $4; do res="$res,\"${r%%=*}\":\"${r#*=}\""; done
	k patch node "$n" --subresource=status --type=merge -p "{\"status\":{\"capacity\":{\"cpu\":\"16\",\"memory\":\"64Gi\",\"pods\":\"110\"$res},\"allocatable\":{\"cpu\":\"16\",\"memory\":\"64Gi\",\"pods\":\"110\"$res},\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\",\"reason\":\"KubeletReady\",\"message\":\"test\",\"lastHeartbeatTime\":\"2025-01-01T00:00:00Z\",\"lastTransitionTime\":\"2025-01-01T00:00:00Z\"}]}}" >/dev/null
	# the apiserver taints a new node not-ready (TaintNodesByCondition); the node lifecycle
	# controller, which does not run here, lifts it once the node is Ready
	k taint node "$n" node.kubernetes.io/not-ready:NoSchedule- >/dev/null
}
snp_l=$(rule_part kata-deploy.amd.sev-snp labels) || true
tdx_l=$(rule_part kata-deploy.intel.tdx labels) || true
# the counts an SEV-SNP host with one free ESID and a TDX host with two keys report
snp_r=$(rule_part kata-deploy.amd.sev-snp extendedResources | sed 's/=.*/=1/') || true
tdx_r=$(rule_part kata-deploy.intel.tdx extendedResources | sed 's/=.*/=2/') || true
check "the rule gives labels and resources: snp [$snp_l $snp_r] tdx [$tdx_l $tdx_r]" \
	test -n "$snp_l" -a -n "$snp_r" -a -n "$tdx_l" -a -n "$tdx_r"
mk_node kd-snp amd64 "$snp_l" "$snp_r"
mk_node kd-tdx amd64 "$tdx_l" "$tdx_r"
mk_node kd-se s390x "feature.node.kubernetes.io/cpu-security.se.enabled=true" ""
mk_node kd-plain amd64 "" ""
check "4 nodes: kd-snp, kd-tdx, kd-se (NFD's labels), kd-plain (agent labels only)" \
	test "$(k get nodes -o name | wc -l)" = 4
# the RuntimeClass's nodeSelector as a label selector finds exactly the NFD-labelled node
rc_nodes() { k get nodes -o name -l "$(k get runtimeclass "$1" -o json | python3 -c '
import json, sys; print(",".join(f"{k}={v}" for k, v in json.load(sys.stdin)["scheduling"]["nodeSelector"].items()))')" | tr '\n' ' '; }
check "kata-qemu-snp's nodeSelector matches only kd-snp" test "$(rc_nodes kata-qemu-snp)" = "node/kd-snp "
check "kata-qemu-tdx-runtime-rs's nodeSelector matches only kd-tdx" test "$(rc_nodes kata-qemu-tdx-runtime-rs)" = "node/kd-tdx "
check "kata-qemu-se's nodeSelector matches only kd-se" test "$(rc_nodes kata-qemu-se)" = "node/kd-se "
check "kata-qemu-coco-dev's nodeSelector matches every node" test "$(rc_nodes kata-qemu-coco-dev | wc -w)" = 4

sp=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
"$SCHED" --kubeconfig="$KUBECONFIG" --authentication-kubeconfig="$KUBECONFIG" \
	--authorization-kubeconfig="$KUBECONFIG" --bind-address=127.0.0.1 --secure-port="$sp" \
	--cert-dir="$T/sched-certs" --leader-elect=false --v=1 >"$T/sched.log" 2>&1 </dev/null &
echo $! >"$T/sched.pid"
pod() { # NAME RUNTIMECLASS
	k create -f - >/dev/null <<Y
apiVersion: v1
kind: Pod
metadata: {name: $1, namespace: default}
spec:
  runtimeClassName: $2
  containers: [{name: c, image: registry.example/pause:1, resources: {requests: {cpu: 10m, memory: 8Mi}}}]
Y
}
bound() { # POD SECONDS -> node name on stdout
	local i n
	for i in $(seq 1 $(($2 * 5))); do
		n=$(k get pod "$1" -o jsonpath='{.spec.nodeName}')
		[ -n "$n" ] && { echo "$n"; return 0; }
		sleep 0.2
	done
	return 1
}
unsched() { # POD TEXT SECONDS: the scheduler says TEXT in PodScheduled=False
	local i
	for i in $(seq 1 $(($3 * 5))); do
		k get pod "$1" -o jsonpath='{.status.conditions[?(@.type=="PodScheduled")].message}' >"$T/why" 2>/dev/null
		grep -qF -- "$2" "$T/why" && [ -z "$(k get pod "$1" -o jsonpath='{.spec.nodeName}')" ] && return 0
		sleep 0.2
	done
	echo "# $1: $(cat "$T/why")"; return 1
}
pod snp-1 kata-qemu-snp
check "pod snp-1 (kata-qemu-snp) gets the RuntimeClass's overhead with one ESID" \
	eval 'k get pod snp-1 -o jsonpath="{.spec.overhead}" | grep -qF "\"sev-snp.amd.com/esids\":\"1\""'
check "pod snp-1 is scheduled on kd-snp" test "$(bound snp-1 60)" = kd-snp
pod snp-2 kata-qemu-snp-runtime-rs
check "pod snp-2: the node's only ESID is taken -> Insufficient sev-snp.amd.com/esids" \
	unsched snp-2 "Insufficient sev-snp.amd.com/esids" 30
pod tdx-1 kata-qemu-tdx
pod tdx-2 kata-tdx-big
check "pods tdx-1 (kata-qemu-tdx), tdx-2 (custom kata-tdx-big on qemu-tdx) are scheduled on kd-tdx" \
	eval '[ "$(bound tdx-1 30)" = kd-tdx ] && [ "$(bound tdx-2 30)" = kd-tdx ]'
pod tdx-3 kata-qemu-tdx-runtime-rs-debug
check "pod tdx-3: two keys, both taken -> Insufficient tdx.intel.com/keys" \
	unsched tdx-3 "Insufficient tdx.intel.com/keys" 30
pod se-1 kata-qemu-se
check "pod se-1 (kata-qemu-se) is scheduled on kd-se" test "$(bound se-1 30)" = kd-se
pod gpu-1 kata-qemu-nvidia-gpu-snp
check "pod gpu-1 (kata-qemu-nvidia-gpu-snp): no node has nvidia.com/cc.ready.state=true" \
	unsched gpu-1 "didn't match Pod's node affinity/selector" 30
k delete pod snp-1 --grace-period=0 --force >/dev/null 2>&1
check "snp-1 deleted: its ESID is free again and snp-2 is scheduled on kd-snp" test "$(bound snp-2 60)" = kd-snp
k delete pod --all -n default --grace-period=0 --force >/dev/null 2>&1 || true

# --- uninstall: the release takes its rule with it ----------------------------------------------
check "helm uninstall" q h uninstall kata-deploy -n kube-system
check "NodeFeatureRule kata-tee-keys is gone" eval '[ -z "$(k get nodefeaturerules -o name)" ]'
check "RuntimeClasses are gone" eval '[ -z "$(k get runtimeclass -o name)" ]'

finish
