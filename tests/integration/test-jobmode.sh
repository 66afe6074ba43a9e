#!/usr/bin/env bash
# deploymentMode: job (issue 15 item 2): the chart's job mode rendered by real Helm, and the
# dispatcher (`kata-deploy-agent dispatch`) against a REAL etcd + kube-apiserver
# (tests/peers/apiserver-up.sh) with the chart's RBAC applied for real and a token minted for
# kata-deploy-sa. The dispatcher runs with the env and args of the rendered hook Job and the
# per-node Job templates of the rendered ConfigMap.
#
# There is no kubelet or Job controller here: tests/tools/fake-job-runner.py stands in for them
# (a hand-written fake, since no node can run here; test-node.sh has the real ones). It runs
# each per-node Job's container command with the Job's own env (no token, no API address) on a
# temp host root per node, and reports the result as the kubelet and the Job controller would
# (pod termination message, Job conditions).
#
# Also: explicit job.nodes / job.cleanup.nodes (a named node that does not exist fails the
# dispatcher before any node is touched, as upstream's), the dispatcher Jobs' placement
# (job.dispatcherNodeSelector / dispatcherTolerations) as stored by the API server, the release
# identity annotation the dispatcher writes from each Job's result, and the host Events
# (HostCheckWarning, CRIDisabled) a per-node Job carries in its result for the dispatcher to post.
source "$(dirname "$0")/../lib.sh"
cd "$ROOTDIR"

scripts/peers/all.sh kube-apiserver kubectl >"$T/peers.log" 2>&1 || { cat "$T/peers.log"; exit 1; }
HELM=$(scripts/peers/helm.sh 2>>"$T/peers.log") || { cat "$T/peers.log"; exit 1; }
PEERS=${KD_PEERS_DIR:-$HOME/.cache/kata-deploy-peers}
KUBECTL=$PEERS/bin/kubectl
export KD_AGENT=$KD_BUILD/kata-deploy-agent
CHART=helm/kata-deploy
NS=kube-system

_jm_cleanup() {
	local rc=$?
	touch "$T/state/stop" 2>/dev/null || true
	for p in $(cat "$T"/*.pid 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
	bash tests/peers/apiserver-down.sh "$T/api" >/dev/null 2>&1 || true
	chmod -R u+w "$T" 2>/dev/null || true
	[ "${KD_KEEP:-0}" = 1 ] && echo "kept $T" || rm -rf "$T"
	exit $rc
}
trap _jm_cleanup EXIT

q() { "$@" >"$T/q.out" 2>&1 || { sed 's/^/#   /' "$T/q.out" | tail -20; return 1; }; }
render() { # OUT [helm args...]
	local out=$1; shift
	"$HELM" template kata-deploy "$CHART" --namespace $NS "$@" >"$out" 2>"$out.err"
}
# py FILE SCRIPT: run a python snippet with the rendered documents as D (list of dicts).
py() {
	local f=$1; shift
	python3 - "$f" "$@" <<PYEOF
import sys, yaml, json
D = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
def obj(kind, name=None):
    for d in D:
        if d["kind"] == kind and (name is None or d["metadata"]["name"] == name):
            return d
    return None
$(cat)
PYEOF
}

# --- Helm: what job mode renders ------------------------------------------------------------
JOBV=(--set deploymentMode=job --set-string 'nodeSelector.kd\.test/kata=yes' --set job.parallelism=2
	--set job.waitForNodesSeconds=30 --set job.nodeSettleSeconds=3)
render "$T/ds.yaml" || not_ok "render daemonset mode: $(cat "$T/ds.yaml.err")"
render "$T/job.yaml" "${JOBV[@]}" || not_ok "render job mode: $(cat "$T/job.yaml.err")"
check "helm lint --strict, job mode" q "$HELM" lint --strict "$CHART" "${JOBV[@]}"
py "$T/job.yaml" "$T/ds.yaml" >"$T/render.out" 2>&1 <<'P' && ok "job-mode render: $(tail -1 "$T/render.out")" || { not_ok "job-mode render"; sed 's/^/#   /' "$T/render.out"; }
DS = [d for d in yaml.safe_load_all(open(sys.argv[2])) if d]
kinds = [(d["kind"], d["metadata"]["name"]) for d in D]
assert not any(k == "DaemonSet" for k, _ in kinds), "a DaemonSet in job mode"
assert ("Job", "kata-deploy-uninstall") not in kinds, "the DaemonSet's uninstall hook in job mode"
assert not any(d["kind"] in ("Job", "ConfigMap") and "dispatcher" in d["metadata"]["name"] + "job-templates" for d in DS if d["metadata"]["name"] != "kata-deploy-uninstall"), "job-mode objects in daemonset mode"
cm = obj("ConfigMap", "kata-deploy-job-templates")
ds = [d for d in DS if d["kind"] == "DaemonSet"][0]["spec"]["template"]["spec"]
dsc = ds["containers"][0]
for stage in ("install", "cleanup"):
    j = yaml.safe_load(cm["data"][f"{stage}-job.yaml"])
    ps = j["spec"]["template"]["spec"]
    assert ps["automountServiceAccountToken"] is False, stage
    assert "serviceAccountName" not in ps, stage
    assert ps["restartPolicy"] == "Never"
    c = ps["containers"][0]
    assert c["args"] == [f"node-{stage}"], c["args"]
    assert c["image"] == dsc["image"] and c["securityContext"] == dsc["securityContext"], stage
    assert c["volumeMounts"] == dsc["volumeMounts"] and ps["volumes"] == ds["volumes"], stage
    assert not any(k in c for k in ("ports", "livenessProbe", "readinessProbe", "startupProbe"))
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["HEALTH_PORT"] == "0" and "DAEMONSET_NAME" not in env
    assert c["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert j["spec"]["backoffLimit"] == 3 and j["spec"]["ttlSecondsAfterFinished"] == 600
    if stage == "install":
        assert ps["nodeSelector"] == {"kd.test/kata": "yes"}, ps.get("nodeSelector")
        keys = {t.get("key") for t in ps["tolerations"]}
        assert "node.kubernetes.io/not-ready" in keys, keys
    else:
        assert "nodeSelector" not in ps and ps["tolerations"] == [{"operator": "Exists"}]
        t = ps["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        assert t == [{"matchExpressions": [{"key": "katacontainers.io/kata-runtime", "operator": "Exists"}]}], t
hooks = {}
for name, hook in (("kata-deploy-install-dispatcher", "post-install,post-upgrade"), ("kata-deploy-cleanup-dispatcher", "pre-delete")):
    d = obj("Job", name)
    assert d["metadata"]["annotations"]["helm.sh/hook"] == hook, name
    ps = d["spec"]["template"]["spec"]
    assert ps["serviceAccountName"] == "kata-deploy-sa"
    sc = ps["containers"][0]["securityContext"]
    assert sc["privileged"] is False and sc["readOnlyRootFilesystem"] is True and sc["capabilities"]["drop"] == ["ALL"]
    assert ps["securityContext"]["runAsNonRoot"] is True
    assert "--parallelism=2" in ps["containers"][0]["args"]
cr = obj("ClusterRole", "kata-deploy-role")
assert cr["rules"][0]["verbs"] == ["get", "list", "patch"], cr["rules"]
r = obj("Role", "kata-deploy-dispatcher")
assert {(tuple(x["apiGroups"]), tuple(x["resources"])): x["verbs"] for x in r["rules"]} == {(("batch",), ("jobs",)): ["create", "get", "delete"], (("",), ("pods",)): ["list"]}
print(f"{len(D)} objects, per-node Jobs without token, dispatcher hooks, RBAC")
P
# The per-node Job is the DaemonSet's pod: a chart change there reaches job mode too.
render "$T/ds-k3s.yaml" --set deploymentMode=job --set k8sDistribution=k3s --set debug=true &&
	py "$T/ds-k3s.yaml" >"$T/k3s.out" 2>&1 <<'P' && ok "job mode follows the DaemonSet's settings (k3s mounts, DEBUG)" || { not_ok "job mode k3s"; cat "$T/k3s.out"; }
j = yaml.safe_load(obj("ConfigMap", "kata-deploy-job-templates")["data"]["install-job.yaml"])
c = j["spec"]["template"]["spec"]["containers"][0]
env = {e["name"]: e.get("value") for e in c["env"]}
assert env["K8S_DISTRIBUTION"] == "k3s" and env["DEBUG"] == "true", env
assert any("k3s" in (v.get("hostPath") or {}).get("path", "") for v in j["spec"]["template"]["spec"]["volumes"])
P
UPV=$T/upstream-values.yaml
tar -xzf "$KD_SHARED_SOURCES/kata-containers-4.1.0.tar.gz" -O \
	kata-containers-4.1.0/tools/packaging/kata-deploy/helm-chart/kata-deploy/values.yaml >"$UPV"
if render "$T/up.yaml" -f "$UPV" --set image.reference=registry.example/kd --set deploymentMode=job; then
	py "$T/up.yaml" >"$T/up.out" 2>&1 <<'P' && ok "upstream 4.1.0 values.yaml with deploymentMode=job: $(cat "$T/up.out")" || { not_ok "upstream values, job mode"; cat "$T/up.out"; }
d = obj("Job", "kata-deploy-install-dispatcher")
img = d["spec"]["template"]["spec"]["containers"][0]["image"]
assert img.startswith("registry.example/kd:"), img
print(f"dispatcher image {img} (upstream's dispatcher image replaced)")
P
	check "upstream dispatcher image replaced: a warning says so" grep -q "job.dispatcherImage" "$T/up.yaml"
else
	not_ok "upstream values, job mode: $(cat "$T/up.yaml.err")"
fi
expect_fail "job.ttlSecondsAfterFinished < 60 refused" "ttlSecondsAfterFinished" \
	"$HELM" template x "$CHART" --set deploymentMode=job --set job.ttlSecondsAfterFinished=30
expect_fail "deploymentMode other than daemonset|job refused" "deploymentMode" \
	"$HELM" template x "$CHART" --set deploymentMode=pods

# --- the real API server: RBAC, templates, nodes ----------------------------------------------
. tests/peers/apiserver-up.sh "$T/api" >/dev/null
k() { "$KUBECTL" --kubeconfig "$KD_APISERVER_KUBECONFIG" "$@"; }
API_PORT=${KD_APISERVER_URL##*:}
check "kubectl apply --dry-run=server of the job-mode render" q k apply --dry-run=server -f "$T/job.yaml"
check "kubectl apply of the job-mode render (hook Jobs as the dispatchers' owners)" q k apply -f "$T/job.yaml"

mkdir -p "$T/sa" "$T/state" "$T/roots"
cp "$KD_APISERVER_CA" "$T/sa/ca.crt"
echo $NS >"$T/sa/namespace"
k create token kata-deploy-sa -n $NS --duration=1h >"$T/sa/token"

# The per-node Job templates and the dispatchers' env and args, from a render: $T/<pfx>install.*,
# $T/<pfx>cleanup.* (env, args, the per-node Job template).
extract() { # RENDER [PREFIX]
	py "$1" "$T" "${2:-}" <<'P'
t, pfx = sys.argv[2], sys.argv[3]
cm = obj("ConfigMap", "kata-deploy-job-templates")
for stage in ("install", "cleanup"):
    open(f"{t}/{pfx}{stage}-job.yaml", "w").write(cm["data"][f"{stage}-job.yaml"])
    c = obj("Job", f"kata-deploy-{stage}-dispatcher")["spec"]["template"]["spec"]["containers"][0]
    with open(f"{t}/{pfx}{stage}.env", "w") as f:
        for e in c["env"]:
            if "value" in e:
                f.write(f"{e['name']}={e['value']}\n")
    args = [a.replace("/etc/kata-deploy/jobs/", f"{t}/{pfx}") for a in c["args"]]
    open(f"{t}/{pfx}{stage}.args", "w").write("\n".join(args) + "\n")
P
}
extract "$T/job.yaml"

node_status() { # NODE
	k patch node "$1" --subresource=status --type=merge -p "{\"status\":{\"nodeInfo\":{\"containerRuntimeVersion\":\"containerd://1.7.2\",\"kubeletVersion\":\"v1.33.0\",\"osImage\":\"Debian\",\"kernelVersion\":\"6.1\",\"operatingSystem\":\"linux\",\"architecture\":\"amd64\",\"machineID\":\"m\",\"systemUUID\":\"u\",\"bootID\":\"b\",\"kubeProxyVersion\":\"\"},\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\",\"reason\":\"KubeletReady\",\"message\":\"test\",\"lastHeartbeatTime\":\"2025-01-01T00:00:00Z\",\"lastTransitionTime\":\"2025-01-01T00:00:00Z\"}],\"runtimeHandlers\":[{\"name\":\"kata-qemu\",\"features\":{\"recursiveReadOnlyMounts\":false,\"userNamespaces\":false}}]}}" >/dev/null
}
new_node() { # NODE [label=value] [taint]
	local n=$1 lab=${2:-} taint=${3:-}
	{
		echo "apiVersion: v1"
		echo "kind: Node"
		echo "metadata: {name: $n, labels: {kubernetes.io/os: linux${lab:+, ${lab%%=*}: \"${lab#*=}\"}}}"
		[ -z "$taint" ] || echo "spec: {taints: [{key: $taint, effect: NoSchedule}]}"
	} | k apply -f - >/dev/null
	# kube-apiserver's TaintNodesByCondition admission adds not-ready:NoSchedule at creation;
	# the node lifecycle controller (not running here) would lift it once Ready.
	k taint node "$n" node.kubernetes.io/not-ready:NoSchedule- >/dev/null 2>&1 || true
	node_status "$n"
	cp -a "$T/orig" "$T/roots/$n"
}
P=$T/payload.tar.zst
"$KD" payload pack artifacts/demo/tree --spec artifacts/demo/payload.yaml -o "$P" >/dev/null
make_host_root "$T/orig"
snapshot "$T/orig" >"$T/orig.snap"
HC=$T/hc
tests/tools/mkfakeko.sh tree "$HC" 6.1.0-fake >/dev/null 2>&1
mkdir -p "$HC/proc/sys/kernel" "$HC/dev" "$HC/sys/fs/cgroup" "$T/nokvm/proc/sys/kernel"
printf 'processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu lm sse4_1 sse4_2 vmx\n' >"$HC/proc/cpuinfo"
echo 6.1.0-fake | tee "$HC/proc/sys/kernel/osrelease" >"$T/nokvm/proc/sys/kernel/osrelease"
echo "cpu memory pids" >"$HC/sys/fs/cgroup/cgroup.controllers"
: >"$HC/dev/kvm"

SEL=kd.test/kata=yes
new_node n1 $SEL
new_node n2 $SEL
new_node n3          # labelled late, while the dispatcher waits
new_node n4          # never selected
new_node n5 $SEL kd.test/dedicated   # selected, taint not tolerated: skipped
new_node n6          # its host check fails (below)
new_node n7          # qemu-snp enabled too, which its host check refuses: HostCheckWarning
new_node n8          # containerd with the CRI plugin disabled: CRIDisabled
sed -i '1a disabled_plugins = ["cri"]' "$T/roots/n8/etc/containerd/config.toml"
snapshot "$T/roots/n8" >"$T/n8.snap"

start_runner() { # extra runner args...
	rm -f "$T/state/stop"
	python3 tests/tools/fake-job-runner.py --kubectl "$KUBECTL" --kubeconfig "$KD_APISERVER_KUBECONFIG" \
		--namespace $NS --state "$T/state" --delay 1 \
		--override PAYLOAD="$P" --override HOST_CHECK_ROOT="$HC" \
		--override "RUNTIME_RESTART=command:echo \$KD_UNIT >>$T/restarts" \
		$(for n in n1 n2 n3 n4 n5 n6 n7 n8; do echo "--node-override $n:HOST_ROOT=$T/roots/$n"; done) \
		--node-override "n6:HOST_CHECK_ROOT=$T/nokvm" --node-override "n7:SHIMS_X86_64=qemu qemu-snp" \
		"$@" >"$T/runner.out" 2>&1 &
	echo $! >"$T/runner.pid"
}
stop_runner() {
	touch "$T/state/stop"
	local p; p=$(cat "$T/runner.pid")
	for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
	wait "$p" 2>/dev/null || true
}
dispatch() { # NAME [PREFIX]STAGE [extra args] -> rc in $T/NAME.rc, log $T/NAME.log
	local name=$1 stage=$2; shift 2
	local rc=0
	mapfile -t args <"$T/$stage.args"
	env -i PATH="$PATH" $(cat "$T/$stage.env") POD_NAMESPACE=$NS \
		KUBERNETES_SERVICE_HOST=127.0.0.1 KUBERNETES_SERVICE_PORT="$API_PORT" SERVICEACCOUNT_DIR="$T/sa" \
		POLL_INTERVAL_MS=200 LABEL_STABLE_READS=1 RUNTIME_HANDLERS_TIMEOUT=5 \
		timeout 120 "$KD_AGENT" "${args[@]}" "$@" >"$T/$name.log" 2>&1 || rc=$?
	echo $rc >"$T/$name.rc"
}
label() { k get node "$1" -o jsonpath="{.metadata.labels.${2//./\\.}}"; }
events() { # NODE REASON
	k get events -n $NS --field-selector "involvedObject.name=$1,reason=$2" -o name | wc -l
}
jobs_on() { awk -v n="$1" '$1 == n' "$T/state/jobs.log" 2>/dev/null | wc -l; }
IDENT=install.kata-deploy.katacontainers.io/default
ident() { k get node "$1" -o jsonpath="{.metadata.annotations.${IDENT//./\\.}}"; }
# ident_is NODE DISPATCHER-JOB: the release identity the dispatcher wrote from the Job's result
ident_is() {
	ident "$1" >"$T/ident-$1.json"
	python3 - "$T/ident-$1.json" "$2" "$P" "$(basename "$(readlink "$T/roots/$1/opt/kata/current")")" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
want = {"release": "kata-deploy", "daemonSet": "", "dispatcher": f"kube-system/{sys.argv[2]}",
        "payload": "3.99.0-demo", "id": sys.argv[4], "source": sys.argv[3], "shims": "qemu"}
assert d == want, f"{d} != {want}"
PY
}
show() { echo "# --- $1"; grep -v ': setting ' "$T/$1.log" | sed 's/^/#   /' | tail -${2:-25}; }
rc_is() { # NAME WANT DESC: the dispatcher NAME exited WANT, else its log
	if [ "$(cat "$T/$1.rc")" = "$2" ]; then ok "$3"; else not_ok "$3 (exit $(cat "$T/$1.rc"))"; show "$1"; fi
}
SHIM=handler.kata-deploy.katacontainers.io/kata-qemu

# --- install: selection, late label, taint, parallelism ----------------------------------------
start_runner
(sleep 2; k label node n3 $SEL >/dev/null) &
t0=$(date +%s%N)
dispatch d1 install
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
stop_runner
if [ "$(cat "$T/d1.rc")" = 0 ]; then ok "install dispatcher: exit 0 in $ms ms"; else not_ok "install dispatcher: exit $(cat "$T/d1.rc")"; show d1; fi
check "per-node Jobs ran on n1, n2 and the late-labelled n3 (once each)" \
	[ "$(jobs_on n1)$(jobs_on n2)$(jobs_on n3)" = 111 ]
check "no Job on the unselected n4 nor the tainted n5" [ "$(jobs_on n4)$(jobs_on n5)" = 00 ]
check "n5 skipped: the log names the taint" grep -q "n5 (taint kd.test/dedicated:NoSchedule)" "$T/d1.log"
check "at most job.parallelism=2 Jobs at once (saw $(cat "$T/state/max-running" 2>/dev/null))" \
	[ "$(cat "$T/state/max-running" 2>/dev/null)" = 2 ]
check "Jobs: no token, bound by nodeName, no selection left (runner found no problem)" \
	[ ! -s "$T/state/problems" ]
for n in n1 n2 n3; do
	check "$n: labels kata-runtime, owner and shim true" \
		[ "$(label $n katacontainers.io/kata-runtime)/$(label $n kata-deploy.katacontainers.io/default)/$(label $n $SHIM)" = true/true/true ]
	check "$n: Kata on its host root, Installed Event" \
		eval '[ -e "$T/roots/$n/opt/kata/current" ] && [ "$(events $n Installed)" -ge 1 ]'
done
for n in n1 n2 n3; do
	check "$n: release identity annotation from its Job's result ($(ident $n | cut -c1-60)...)" \
		ident_is $n kata-deploy-install-dispatcher
done
check "n4, n5: no labels, host roots untouched" \
	eval '[ -z "$(label n4 katacontainers.io/kata-runtime)$(label n5 katacontainers.io/kata-runtime)" ] &&
	diff -q <(snapshot "$T/roots/n5") "$T/orig.snap" >/dev/null'
check "runtime restarted once per installed node" [ "$(grep -c containerd.service "$T/restarts")" = 3 ]
k get jobs -n $NS -l kata-deploy.katacontainers.io/dispatcher -o json >"$T/jobs.json"
python3 - "$T/jobs.json" <<'P' && ok "per-node Jobs owned by the dispatcher's Job, NODE_RUNTIME_VERSION set" || not_ok "per-node Job shape"
import json, sys
for j in json.load(open(sys.argv[1]))["items"]:
    o = j["metadata"]["ownerReferences"][0]
    assert o["kind"] == "Job" and o["name"] == "kata-deploy-install-dispatcher", o
    env = {e["name"]: e.get("value") for e in j["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["NODE_RUNTIME_VERSION"] == "containerd://1.7.2", env
    assert len(j["metadata"]["name"]) <= 63
P

# --- a node whose install fails: the others stay, its claim is taken back ----------------------
k label node n6 $SEL >/dev/null
: >"$T/restarts"
start_runner
dispatch d2 install --wait-for-nodes=0
stop_runner
rc_is d2 1 "a failing node fails the dispatcher (exit 1)"
check "the log names the node and why" grep -q "failed: n6: .*no enabled shim can run" "$T/d2.log"
check "n6: InstallFailed Event, no labels left (claim taken back)" \
	eval '[ "$(events n6 InstallFailed)" -ge 1 ] && [ -z "$(label n6 katacontainers.io/kata-runtime)$(label n6 kata-deploy.katacontainers.io/default)" ]'
check "n6: host root untouched byte for byte" diff -q <(snapshot "$T/roots/n6") "$T/orig.snap"
check "n6: no release identity annotation" [ -z "$(ident n6)" ]
check "n1-n3 re-run: still labelled, no runtime restart" \
	eval '[ "$(label n1 katacontainers.io/kata-runtime)$(label n2 katacontainers.io/kata-runtime)$(label n3 katacontainers.io/kata-runtime)" = truetruetrue ] &&
	[ ! -s "$T/restarts" ]'
k label node n6 kd.test/kata- >/dev/null

# --- upgrade with a narrower selection: the node left out is cleaned up first ------------------
k label node n1 kd.test/kata- >/dev/null
start_runner
dispatch d3 install --wait-for-nodes=0
stop_runner
rc_is d3 0 "narrowed upgrade: exit 0"
check "n1 no longer selected: cleaned up, host root restored byte for byte" \
	diff -q <(snapshot "$T/roots/n1") "$T/orig.snap"
check "n1: labels removed, Uninstalled Event" \
	eval '[ -z "$(label n1 katacontainers.io/kata-runtime)$(label n1 kata-deploy.katacontainers.io/default)$(label n1 $SHIM)" ] &&
	[ "$(events n1 Uninstalled)" -ge 1 ]'
check "n1: release identity annotation removed with the labels" [ -z "$(ident n1)" ]
check "n2, n3 still installed" eval '[ -e "$T/roots/n2/opt/kata/current" ] && [ -e "$T/roots/n3/opt/kata/current" ]'

# --- uninstall (pre-delete): every node carrying the label, back to its original bytes ----------
: >"$T/restarts"
start_runner
dispatch d4 cleanup
stop_runner
rc_is d4 0 "cleanup dispatcher: exit 0"
for n in n2 n3; do
	check "$n: host root restored byte for byte" diff -q <(snapshot "$T/roots/$n") "$T/orig.snap"
	check "$n: every label of ours removed" \
		[ -z "$(label $n katacontainers.io/kata-runtime)$(label $n kata-deploy.katacontainers.io/default)$(label $n $SHIM)" ]
	check "$n: release identity annotation removed" [ -z "$(ident $n)" ]
done
check "cleanup reached only labelled nodes (n2, n3)" \
	[ "$(grep -c -- '-cleanup-' "$T/state/jobs.log")" = 3 ] # n1 in d3, n2 + n3 here
check "runtime restarted by each cleanup" [ "$(grep -c containerd.service "$T/restarts")" = 2 ]

# --- an empty selection: an error after the wait, or nothing to do with waitForNodesSeconds=0 ---
for n in n2 n3 n5; do k label node $n kd.test/kata- >/dev/null; done
dispatch d5 install --wait-for-nodes=2 --node-settle=1
check "empty selection after the wait: exit 1 naming the selection" \
	eval '[ "$(cat "$T/d5.rc")" = 1 ] && grep -qF "no node selected after 2 s (nodeSelector {\"kd.test/kata\":\"yes\"})" "$T/d5.log"'
dispatch d6 install --wait-for-nodes=0
check "empty selection with --wait-for-nodes=0: exit 0, nothing to do" \
	eval '[ "$(cat "$T/d6.rc")" = 0 ] && grep -q "nothing to install" "$T/d6.log"'

# --- explicit job.nodes / job.cleanup.nodes, the dispatchers' placement -----------------------------
NAMEDV=("${JOBV[@]}" --set 'job.nodes={n4,n5}' --set 'job.cleanup.nodes={n4,n5}'
	--set-string 'job.dispatcherNodeSelector.kd\.test/control=yes'
	--set 'job.dispatcherTolerations[0].key=kd.test/control' --set 'job.dispatcherTolerations[0].operator=Exists'
	--set 'job.dispatcherTolerations[0].effect=NoSchedule')
render "$T/named.yaml" "${NAMEDV[@]}" || not_ok "render job.nodes: $(cat "$T/named.yaml.err")"
render "$T/toltop.yaml" "${JOBV[@]}" --set 'tolerations[0].key=kd.test/all' --set 'tolerations[0].operator=Exists' ||
	not_ok "render tolerations: $(cat "$T/toltop.yaml.err")"
py "$T/named.yaml" "$T/toltop.yaml" >"$T/named.out" 2>&1 <<'P' && ok "render: $(tail -1 "$T/named.out")" || { not_ok "job.nodes / dispatcher placement render"; sed 's/^/#   /' "$T/named.out"; }
TOP = [d for d in yaml.safe_load_all(open(sys.argv[2])) if d]
sel, tol = {"kd.test/control": "yes"}, [{"key": "kd.test/control", "operator": "Exists", "effect": "NoSchedule"}]
for stage in ("install", "cleanup"):
    ps = obj("Job", f"kata-deploy-{stage}-dispatcher")["spec"]["template"]["spec"]
    args = ps["containers"][0]["args"]
    assert "--nodes=n4,n5" in args and not any(a.startswith("--wait-for-nodes") for a in args), args
    assert ps["nodeSelector"] == sel and ps["tolerations"] == tol, (stage, ps.get("nodeSelector"), ps.get("tolerations"))
    j = yaml.safe_load(obj("ConfigMap", "kata-deploy-job-templates")["data"][f"{stage}-job.yaml"])
    jps = j["spec"]["template"]["spec"]
    assert jps.get("nodeSelector") != sel and tol[0] not in jps.get("tolerations", []), f"dispatcher placement in the {stage} Job"
    d = [x for x in TOP if x["kind"] == "Job" and x["metadata"]["name"] == f"kata-deploy-{stage}-dispatcher"][0]
    t = d["spec"]["template"]["spec"]["tolerations"]
    assert t == [{"key": "kd.test/all", "operator": "Exists"}], f"dispatcherTolerations empty: {t}"
print("job.nodes / job.cleanup.nodes as --nodes (no node wait); dispatcherNodeSelector and dispatcherTolerations on both dispatchers only; tolerations when dispatcherTolerations is empty")
P
# The API server's copy of the dispatcher Jobs (validated, defaulted) carries the placement.
k delete job -n $NS kata-deploy-install-dispatcher kata-deploy-cleanup-dispatcher >/dev/null
check "kubectl apply of the job.nodes render" q k apply -f "$T/named.yaml"
k get jobs -n $NS -l kata-deploy/dispatcher -o json >"$T/dispatchers.json"
python3 - "$T/dispatchers.json" <<'P' && ok "dispatcher Jobs as stored by kube-apiserver: nodeSelector and tolerations of job.dispatcher*" || not_ok "stored dispatcher Jobs"
import json, sys
items = json.load(open(sys.argv[1]))["items"]
assert len(items) == 2, [j["metadata"]["name"] for j in items]
for j in items:
    ps = j["spec"]["template"]["spec"]
    assert ps["nodeSelector"] == {"kd.test/control": "yes"}, ps.get("nodeSelector")
    assert ps["tolerations"] == [{"key": "kd.test/control", "operator": "Exists", "effect": "NoSchedule"}], ps["tolerations"]
P
extract "$T/named.yaml" named-
njobs() { k get jobs -n $NS -l kata-deploy.katacontainers.io/dispatcher -o name | wc -l; }

# n4 (never selected) and n5 (selected once, its taint not tolerated): named, both installed.
start_runner
before=$(wc -l <"$T/state/jobs.log")
dispatch d7 named-install
stop_runner
rc_is d7 0 "job.nodes={n4,n5}: exit 0"
check "job.nodes: Jobs on n4 and n5 only ($(wc -l <"$T/state/jobs.log") - $before Jobs)" \
	eval '[ "$(jobs_on n4)$(jobs_on n5)" = 11 ] && [ $(( $(wc -l <"$T/state/jobs.log") - before )) = 2 ]'
check "job.nodes: n4, n5 labelled, Kata on their roots" \
	eval '[ "$(label n4 $SHIM)$(label n5 $SHIM)" = truetrue ] && [ -e "$T/roots/n4/opt/kata/current" ] && [ -e "$T/roots/n5/opt/kata/current" ]'
check "job.nodes: n4, n5 release identity" eval 'ident_is n4 kata-deploy-install-dispatcher && ident_is n5 kata-deploy-install-dispatcher'
k get jobs -n $NS -l kata-deploy.katacontainers.io/node=n5 -o json >"$T/n5jobs.json"
python3 - "$T/n5jobs.json" <<'P' && ok "n5's Job (named, tainted node): tolerates every taint, no selection" || not_ok "n5's Job shape"
import json, sys
(j,) = json.load(open(sys.argv[1]))["items"]
ps = j["spec"]["template"]["spec"]
assert ps["nodeName"] == "n5" and ps["tolerations"] == [{"operator": "Exists"}], ps.get("tolerations")
assert "nodeSelector" not in ps and "affinity" not in ps
P

# A named node that does not exist: as upstream's dispatcher, the run fails before any node is
# touched (no Job, no label change; n5, not named here, is not cleaned up either).
n0=$(njobs)
dispatch d8 named-install --nodes=n4,ghost
rc_is d8 1 "job.nodes naming a missing node: exit 1"
check "the log names it" grep -q "node ghost of the job nodes list (--nodes): .*404" "$T/d8.log"
check "no Job created, n4 and n5 still labelled and installed" \
	eval '[ "$(njobs)" = "$n0" ] && [ "$(label n4 $SHIM)$(label n5 $SHIM)" = truetrue ] && [ -e "$T/roots/n5/opt/kata/current" ]'
dispatch d9 named-cleanup --nodes=n4,ghost
rc_is d9 1 "job.cleanup.nodes naming a missing node: exit 1"
check "cleanup: no Job, n4 still labelled and installed" \
	eval '[ "$(njobs)" = "$n0" ] && [ "$(label n4 katacontainers.io/kata-runtime)" = true ] && [ -e "$T/roots/n4/opt/kata/current" ] && [ -n "$(ident n4)" ]'

start_runner
dispatch d10 named-cleanup
stop_runner
rc_is d10 0 "job.cleanup.nodes={n4,n5}: exit 0"
for n in n4 n5; do
	check "$n: host root restored byte for byte, labels and identity removed" \
		eval 'diff -q <(snapshot "$T/roots/$n") "$T/orig.snap" >/dev/null &&
		[ -z "$(label $n katacontainers.io/kata-runtime)$(label $n kata-deploy.katacontainers.io/default)$(label $n $SHIM)$(ident $n)" ]'
done

# --- host Events carried in the result: the dispatcher posts them on the Node -------------------
evmsg() { k get events -n $NS --field-selector "involvedObject.name=$1,reason=$2" -o jsonpath='{.items[*].message}'; }
start_runner
dispatch d11 named-install --nodes=n7,n8
stop_runner
rc_is d11 1 "n7 (a shim refused by its host check) and n8 (CRI disabled): exit 1 for n8"
check "n7: HostCheckWarning Event, from the Job's result, naming qemu-snp" \
	eval '[ "$(events n7 HostCheckWarning)" = 1 ] && evmsg n7 HostCheckWarning | grep -q "some enabled shims cannot run on this node: qemu-snp"'
check "n7: ShimsMissing (qemu-snp not in the payload) and Installed Events, labelled" \
	eval '[ "$(events n7 ShimsMissing)" = 1 ] && [ "$(events n7 Installed)" = 1 ] && [ "$(label n7 $SHIM)" = true ]'
check "n7: release identity" ident_is n7 kata-deploy-install-dispatcher
R7=$(grep -l HostCheckWarning "$T"/state/*.result 2>/dev/null | head -1)
check "n7's result carries the Event, $(wc -c <"${R7:-/dev/null}") bytes (<= 4096)" \
	eval '[ -n "$R7" ] && [ "$(wc -c <"$R7")" -le 4096 ] && python3 -c "import json,sys; r=json.load(open(sys.argv[1])); assert r[\"events\"][0][\"reason\"] == \"HostCheckWarning\"" "$R7"'
check "n8: CRIDisabled Event (what to do) then InstallFailed" \
	eval '[ "$(events n8 CRIDisabled)" = 1 ] && [ "$(events n8 InstallFailed)" = 1 ] &&
	evmsg n8 CRIDisabled | grep -q "remove \"cri\" from disabled_plugins and restart containerd"'
check "n8: no labels, no identity, host root untouched" \
	eval '[ -z "$(label n8 katacontainers.io/kata-runtime)$(ident n8)" ] && diff -q <(snapshot "$T/roots/n8") "$T/n8.snap" >/dev/null'
check "the dispatcher's log names n8's failure" grep -q "failed: n8: .*disables containerd's CRI plugin" "$T/d11.log"
start_runner
dispatch d12 named-cleanup --nodes=n7
stop_runner
rc_is d12 0 "cleanup of n7: exit 0"
check "n7: host root restored byte for byte" diff -q <(snapshot "$T/roots/n7") "$T/orig.snap"

check "fake runner reported no problem" [ ! -s "$T/state/problems" ]
[ ! -s "$T/state/problems" ] || sed 's/^/#   /' "$T/state/problems"
finish
