#!/usr/bin/env bash
# deploymentMode: job end to end on the real sandboxed node (tests/peers/node-up.sh,
# docs/NODE-TEST.md): real kubelet, Job controller, garbage collector and Helm hooks.
#   helm install --set deploymentMode=job → the install dispatcher (post-install hook) runs one
#   per-node Job on the node: no DaemonSet, the per-node pod has no service-account token, Kata
#   on the node's host, containerd restarted, node labelled (and annotated with the release
#   identity), runtimeHandlers, helm returns only
#   once it is done; helm upgrade → the dispatcher runs again, nothing changes on the host;
#   helm uninstall → the pre-delete dispatcher's cleanup Job: the host byte for byte as before.
# Needs what test-node.sh needs (root, scripts/peers/all.sh kube-node kubectl containerd2 + helm).
source "$(dirname "$0")/../lib.sh"
set +e
cd "$ROOTDIR"
export PATH=/usr/local/go/bin:$PATH
t_start=$SECONDS
say() { echo "# [$((SECONDS - t_start))s] $*"; }

[ "$(id -u)" = 0 ] || { not_ok "test-node-jobmode needs root (unshare, mounts, cgroups)"; finish; exit 1; }
scripts/peers/all.sh kube-node kubectl containerd2 >"$T/peers.log" 2>&1 ||
	{ cat "$T/peers.log"; not_ok "peers"; finish; exit 1; }
HELM=$(scripts/peers/helm.sh 2>>"$T/peers.log") || { not_ok "helm peer"; finish; exit 1; }
export HELM_CACHE_HOME=$T/helm HELM_CONFIG_HOME=$T/helm HELM_DATA_HOME=$T/helm
PEERS=${KD_PEERS_DIR:-$HOME/.cache/kata-deploy-peers}
KB=$KD_BUILD/kata-build
[ -x "$KB" ] && [ -x "$KD_BUILD/kata-deploy-agent" ] || { not_ok "build kata-build and the agent first"; finish; exit 1; }

N=$T/node
_node_cleanup() {
	local rc=$?
	if [ -f "$N/node.pid" ]; then
		tests/peers/node-down.sh "$N" >/dev/null 2>&1 || echo "# node-down failed" >&2
	fi
	if [ "${KD_KEEP:-0}" = 1 ]; then
		echo "# kept $T"
		exit $rc
	fi
	(exit $rc)
	_kd_cleanup
}
trap _node_cleanup EXIT
source tests/peers/node-fingerprint.sh
kd_machine_fp >"$T/machine.before"

say "node up; payload and image"
python3 tests/tools/oci-image.py --out "$T/kubectl.tar" --name kd.test/kubectl:1 \
	--file "$PEERS/bin/kubectl:/usr/local/bin/kubectl:0755" --dir tmp:1777 >/dev/null
KD_NODE_IMAGES="$T/kubectl.tar" tests/peers/node-up.sh "$N" >"$T/node-up.log" 2>&1 &
up_pid=$!
"$KD" payload pack artifacts/demo/tree --spec artifacts/demo/payload.yaml -o "$T/payload-a.tar.zst" >/dev/null
"$KB" --out "$T/kb" --cache "$T/kb-cache" image --agent "$KD_BUILD/kata-deploy-agent" \
	--payload "$T/payload-a.tar.zst" --layout "$T/layout" --tag a >"$T/image.log" 2>&1 &&
	tar -C "$T/layout" -cf "$T/agent-a.tar" . || { cat "$T/image.log"; not_ok "kata-build image"; finish; exit 1; }
wait $up_pid || { cat "$T/node-up.log"; not_ok "node up"; finish; exit 1; }
. "$N/node.env"
ok "node $KD_NODE_NAME Ready in ${KD_NODE_UP_SECONDS}s"
K() { kd_node_kubectl "$@"; }
H() { kd_node_net "$HELM" --kubeconfig "$KD_NODE_KUBECONFIG" "$@"; }
kd_node_ctr images import --base-name kd.test/kata-deploy "$T/agent-a.tar" >"$T/import.log" 2>&1 ||
	{ cat "$T/import.log"; not_ok "image import"; }
kd_node_host_fp "$N" >"$T/host.pristine"

label() { K get node "$KD_NODE_NAME" -o jsonpath="{.metadata.labels.${1//./\\.}}"; }
shim_labels() {
	K get node "$KD_NODE_NAME" -o go-template='{{range $k, $v := .metadata.labels}}{{$k}}={{$v}}{{"\n"}}{{end}}' |
		grep '^handler.kata-deploy.katacontainers.io/' | tr '\n' ' '
}
handlers() { K get node "$KD_NODE_NAME" -o jsonpath='{range .status.runtimeHandlers[*]}{.name}{" "}{end}'; }
ctd_starts() { kd_node_starts containerd; }
not() { ! "$@"; }
dump() {
	K -n kube-system get jobs,pods -o wide 2>&1 | sed 's/^/#   /'
	for p in $(K -n kube-system get pods -o name 2>/dev/null); do
		echo "# --- $p"
		K -n kube-system logs "$p" --tail=30 2>&1 | sed 's/^/#   /'
	done
	K get events -A --sort-by=.lastTimestamp 2>/dev/null | tail -15 | sed 's/^/#   /'
}
RESTART_CMD='command:/host/opt/kd-node/bin/node-restart /host/opt/kd-node/run'
VALS=(--set image.reference=kd.test/kata-deploy --set image.tag=a --set imagePullPolicy=Never
	--set kubectlImage=kd.test/kubectl:1 --set-string "runtimeRestart=$RESTART_CMD" --set hostCheck=false
	--set deploymentMode=job --set job.waitForNodesSeconds=60 --set job.nodeSettleSeconds=2)

# --- install ------------------------------------------------------------------------------------
say "helm install, deploymentMode=job"
starts0=$(ctd_starts)
t0=$SECONDS
if H install kata-deploy helm/kata-deploy -n kube-system "${VALS[@]}" --timeout 300s >"$T/install.log" 2>&1; then
	ok "helm install returned after the install dispatcher hook ($((SECONDS - t0))s)"
else
	cat "$T/install.log"; not_ok "helm install"; dump
fi
check "no DaemonSet in job mode" test -z "$(K -n kube-system get daemonsets -o name)"
check "label katacontainers.io/kata-runtime=true" test "$(label katacontainers.io/kata-runtime)" = true
check "shim label kata-qemu (handler.kata-deploy.katacontainers.io/kata-qemu=true)" \
	test "$(label handler.kata-deploy.katacontainers.io/kata-qemu)" = true
check "runtimeHandlers list kata-qemu ($(handlers))" grep -qw kata-qemu <<<"$(handlers)"
check "Kata installed on the node's host" test -e "$N/host/opt-kata/bin/containerd-shim-kata-v2"
starts1=$(ctd_starts)
check "containerd restarted by the per-node Job ($starts0 → $starts1 starts)" test "$starts1" -gt "$starts0"
K -n kube-system get pods -l kata-deploy/stage=install -o json >"$T/pods.json"
python3 - "$T/pods.json" <<'P' >"$T/pods.out" 2>&1 && ok "per-node pod: $(cat "$T/pods.out")" || { not_ok "per-node pod"; cat "$T/pods.out"; dump; }
import json, sys
items = json.load(open(sys.argv[1]))["items"]
phases = [p["status"]["phase"] for p in items]
for p in items:
    s = p["spec"]
    assert s.get("automountServiceAccountToken") is False, s.get("automountServiceAccountToken")
    vols = [v["name"] for v in s.get("volumes", [])]
    assert not any(v.startswith("kube-api-access") for v in vols), vols
    mounts = [m["mountPath"] for m in s["containers"][0].get("volumeMounts", [])]
    assert not any("serviceaccount" in m for m in mounts), mounts
ok = [p for p in items if p["status"]["phase"] == "Succeeded"]
assert len(ok) == 1, phases
# The node's restart returns once containerd is ready again (as `systemctl restart` does): the pod
# that asked for it exits to a running containerd and is not retried.
assert len(items) == 1, f"the Job needed {len(items)} pods: {phases}"
msg = ok[0]["status"]["containerStatuses"][0]["state"]["terminated"]["message"]
r = json.loads(msg)
assert r["action"] == "install" and r["installed"] == ["qemu"], r
print(f"{len(items)} pod(s) {phases}, none with a token or an API volume; result {msg.strip()}")
P
check "Installed Event on the node" test -n "$(K get events -n kube-system --field-selector reason=Installed -o name)"
ident() { K get node "$KD_NODE_NAME" -o jsonpath='{.metadata.annotations.install\.kata-deploy\.katacontainers\.io/default}'; }
ident >"$T/ident.json"
python3 - "$T/ident.json" <<'P' >"$T/ident.out" 2>&1 && ok "release identity annotation by the dispatcher: $(cat "$T/ident.json")" || { not_ok "release identity"; cat "$T/ident.out"; }
import json, sys
d = json.load(open(sys.argv[1]))
assert d["release"] == "kata-deploy" and d["daemonSet"] == "", d
assert d["dispatcher"] == "kube-system/kata-deploy-install-dispatcher", d
assert d["payload"] == "3.99.0-demo" and len(d["id"]) == 16 and d["shims"] == "qemu", d
assert d["source"] == "/opt/kata-artifacts/payload.tar.zst", d
P

# --- upgrade: the dispatcher runs again; an installed node changes nothing ------------------------
say "helm upgrade"
if H upgrade kata-deploy helm/kata-deploy -n kube-system --reuse-values --timeout 300s >"$T/upgrade.log" 2>&1; then
	ok "helm upgrade returned"
else
	cat "$T/upgrade.log"; not_ok "helm upgrade"; dump
fi
check "upgrade: a new per-node Job ran and succeeded" \
	test "$(K -n kube-system get pods -l kata-deploy/stage=install -o jsonpath='{.items[*].status.phase}')" = Succeeded
check "upgrade: containerd not restarted again" test "$(ctd_starts)" = "$starts1"
check "upgrade: label still true" test "$(label katacontainers.io/kata-runtime)" = true

# --- uninstall: the pre-delete dispatcher's cleanup Job ------------------------------------------
say "helm uninstall"
t0=$SECONDS
if H uninstall kata-deploy -n kube-system --wait --timeout 300s >"$T/uninstall.log" 2>&1; then
	ok "helm uninstall returned after the cleanup dispatcher hook ($((SECONDS - t0))s)"
else
	cat "$T/uninstall.log"; not_ok "helm uninstall"; dump
fi
check "uninstall: label gone" test -z "$(label katacontainers.io/kata-runtime)"
check "uninstall: no shim label left ($(shim_labels))" test -z "$(shim_labels)"
check "uninstall: release identity annotation removed" test -z "$(ident)"
check "uninstall: RuntimeClass kata-qemu gone" not K get runtimeclass kata-qemu
kd_node_host_fp "$N" >"$T/host.after"
check "uninstall: the node's host is byte for byte as before" diff -u "$T/host.pristine" "$T/host.after"
check "uninstall: containerd runs" kd_node_ctr version

say "node down"
tests/peers/node-down.sh "$N" >"$T/node-down.log" 2>&1 || { cat "$T/node-down.log"; not_ok "node down"; }
kd_machine_fp >"$T/machine.after"
check "the machine's /etc/containerd, /opt, /var/lib/kata-deploy, /run/nri, … unchanged" \
	diff -u "$T/machine.before" "$T/machine.after"
say "done"
finish
