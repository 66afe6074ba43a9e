#!/usr/bin/env bash
# Issue 15 items 6 and 7: the smaller upstream kata-deploy 4.1.0 keys, with real Helm
# (scripts/peers/helm.sh) and, where a peer is needed, the real kube-apiserver
# (tests/peers/apiserver-up.sh) and containerd 2.x (scripts/peers/containerd2.sh):
#   - every example of upstream's chart (try-kata-*.values.yaml, the values blocks and
#     `helm install --set` lines of docs/helm-configuration.md: tests/helm/upstream-examples.py)
#     renders, or is refused with a message that names one of the keys it sets
#   - docs/HELM.md's upstream key table covers every key of upstream's values.yaml, and each
#     row's verdict holds for each key (tests/helm/check-key-table.py): "supported" changes the
#     rendered objects, "warning" changes none and warns, "not applicable" changes none
#   - the keys themselves: logLevel, containerd.configFileName, health.*Probe.enabled and
#     upstream's probe shapes, kubectlImage {reference, tag}, the RuntimeClasses' owner label
#     (kata-deploy.katacontainers.io/default) and Kata version annotation
#   - with the apiserver (item 7): each rendered example passes --dry-run=server; helm install
#     records the release in <release>-kata-deploy-state (and an upgrade that changes the suffix
#     is refused from it); the agent (the chart's service account, a Node object, a host root)
#     annotates the Node with install.kata-deploy.katacontainers.io/default (release, DaemonSet,
#     payload version and id, source, shims) and removes it on uninstall; CONTAINERD_CONFIG_FILE_NAME
#     puts the handlers into /etc/containerd/<name> (loaded by Debian's containerd 1.6); LOG_LEVEL
# Needs python3 with PyYAML, upstream's source archive (../shared/sources).
source "$(dirname "$0")/../lib.sh"
cd "$ROOTDIR"
CHART=helm/kata-deploy
HELM=$(scripts/peers/helm.sh 2>"$T/helm-peer.log") || { cat "$T/helm-peer.log"; echo "not ok - cannot install Helm"; exit 1; }
export HELM_CACHE_HOME=$T/helm HELM_CONFIG_HOME=$T/helm HELM_DATA_HOME=$T/helm KUBECONFIG=$T/none
UP=$T/up
mkdir -p "$UP"
tar -xzf "$KD_SHARED_SOURCES/kata-containers-4.1.0.tar.gz" -C "$UP" \
	kata-containers-4.1.0/tools/packaging/kata-deploy kata-containers-4.1.0/docs/helm-configuration.md ||
	{ echo "not ok - upstream 4.1.0 sources from $KD_SHARED_SOURCES"; exit 1; }
UP=$UP/kata-containers-4.1.0
UPV=$UP/tools/packaging/kata-deploy/helm-chart/kata-deploy/values.yaml

render() { # render OUT [helm args...]
	local out=$1; shift
	"$HELM" template kata-deploy "$CHART" --namespace kube-system "$@" >"$out" 2>"$out.err"
}
# The rendered objects without comments (# Source, # WARNING), for "changes nothing".
objects() { grep -v -e '^ *#' -e '^---$' "$1"; }
yq() { # yq FILE PYTHON-EXPR(docs): prints the expression over the list of rendered documents
	python3 -c 'import sys, yaml; docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]; print(eval(sys.argv[2]))' "$1" "$2"
}
DS='[d for d in docs if d["kind"] == "DaemonSet"][0]["spec"]["template"]["spec"]["containers"][0]'

# --- 1. upstream's examples ---------------------------------------------------------------------
EX=$T/examples
n=$(python3 tests/helm/upstream-examples.py "$UP" "$EX" 2>"$T/examples.skipped") ||
	{ not_ok "upstream-examples.py: $(cat "$T/examples.skipped")"; n=0; }
sed 's/^/# not a case: /' "$T/examples.skipped"
[ "$n" -ge 25 ] && ok "$n upstream chart examples (3 try-kata files, helm-configuration.md blocks and commands)" ||
	not_ok "only $n upstream chart examples found"
for v in "$EX"/*.values; do
	c=$(basename "$v" .values)
	mapfile -t args <"$EX/$c.args"
	if render "$T/ex.yaml" -f "$v" "${args[@]}"; then
		ok "example $c renders ($(grep -c '^kind:' "$T/ex.yaml") objects$(grep -c '^# WARNING' "$T/ex.yaml" | sed 's/^0$//;s/^./, & warnings/'))"
	else
		msg=$(grep -m1 -E 'Error|error' "$T/ex.yaml.err" | head -c 300)
		named=
		while read -r key; do
			# the key, or its last part / parent as schema and template messages name it
			for form in "$key" "${key%.*}" "${key##*.}"; do
				[ -n "$form" ] && grep -qF -- "$form" "$T/ex.yaml.err" && { named=$key; break 2; }
			done
		done <"$EX/$c.keys"
		[ -n "$named" ] && ok "example $c is refused naming $named: $msg" ||
			not_ok "example $c fails without naming a key it sets: $(cat "$T/ex.yaml.err")"
	fi
done

# --- 2. docs/HELM.md's key table: every upstream key, and each row's verdict holds -------------
KT=$T/keytable
python3 tests/helm/check-key-table.py "$UPV" docs/HELM.md "$KT" >"$T/kt.out" 2>&1 &&
	ok "HELM.md's table covers each of upstream's $(grep -c '^ok' "$T/kt.out") keys" ||
	{ not_ok "HELM.md's table vs upstream's values.yaml:"; grep -v '^ok' "$T/kt.out" | sed 's/^/#   /'; }
for y in "$KT"/[0-9][0-9][0-9].yaml; do
	i=${y%.yaml} key=$(cat "${y%.yaml}.key") verdict=$(cat "${y%.yaml}.verdict")
	render "$T/base.yaml" -f "$i.base.yaml" || { not_ok "$key: base render fails: $(head -3 "$T/base.yaml.err")"; continue; }
	if ! render "$T/key.yaml" -f "$y"; then
		if [[ $verdict == *refused-ok* ]] && grep -qF -- "$key" "$T/key.yaml.err"; then
			ok "$key ($verdict): $(sed -n 1p "$y" | head -c 60) refused naming the key"
		else
			not_ok "$key ($verdict): $(tr '\n' ' ' <"$y" | head -c 100) fails: $(head -3 "$T/key.yaml.err")"
		fi
		continue
	fi
	same=0
	cmp -s <(objects "$T/base.yaml") <(objects "$T/key.yaml") && same=1
	warned=0
	comm -13 <(grep '^# WARNING' "$T/base.yaml" | sort) <(grep '^# WARNING' "$T/key.yaml" | sort) |
		grep -qF -- "$(cut -d. -f1 <<<"$key")" && warned=1
	case ${verdict%% *} in
	supported) [ $same = 0 ] && ok "$key (supported): changes the rendered objects" ||
		not_ok "$key is called supported but $(tr '\n' ' ' <"$y" | head -c 100) changes nothing" ;;
	not-applicable) [ $same = 1 ] && ok "$key (not applicable): accepted, changes nothing" ||
		not_ok "$key is called not applicable but changes the objects" ;;
	warning) [ $same = 1 ] && [ $warned = 1 ] && ok "$key (warning): changes nothing, warns" ||
		not_ok "$key (warning): same=$same warned=$warned" ;;
	warning-when) [ $same = 1 ] && ok "$key (warning when ...): changes nothing$([ $warned = 1 ] && echo ', warns')" ||
		not_ok "$key (warning when ...) changes the objects" ;;
	*) not_ok "$key: unknown verdict '$verdict'" ;;
	esac
done

# --- 3. the keys one by one -----------------------------------------------------------------------
# logLevel: upstream's --log-level flag of the agent; empty: no flag (DEBUG decides).
render "$T/r.yaml" --set logLevel=warn
check "logLevel=warn: args --log-level warn install" [ "$(yq "$T/r.yaml" "$DS[\"args\"]")" = "['--log-level', 'warn', 'install']" ]
render "$T/r.yaml" --set debug=true
check "logLevel empty: args install (DEBUG gives debug logs)" [ "$(yq "$T/r.yaml" "$DS[\"args\"]")" = "['install']" ]
render "$T/r.yaml" --set logLevel=verbose && not_ok "logLevel=verbose accepted" ||
	check "logLevel=verbose refused by the schema" grep -qF 'logLevel: logLevel must be one of the following' "$T/r.yaml.err"

# containerd.configFileName -> CONTAINERD_CONFIG_FILE_NAME (a file name in /etc/containerd)
env_of() { yq "$1" "{e['name']: e.get('value') for e in $DS['env']}.get('$2')"; }
render "$T/r.yaml" --set containerd.configFileName=" config-kd.toml "
check "containerd.configFileName -> CONTAINERD_CONFIG_FILE_NAME=config-kd.toml (trimmed)" [ "$(env_of "$T/r.yaml" CONTAINERD_CONFIG_FILE_NAME)" = config-kd.toml ]
render "$T/r.yaml"
check "no containerd.configFileName: no CONTAINERD_CONFIG_FILE_NAME" [ "$(env_of "$T/r.yaml" CONTAINERD_CONFIG_FILE_NAME)" = None ]
for bad in ../etc/shadow sub/config.toml ..; do
	render "$T/r.yaml" --set containerd.configFileName="$bad" && not_ok "configFileName $bad accepted" ||
		check "containerd.configFileName=$bad refused" grep -qF "containerd.configFileName \"$bad\" must be a file name" "$T/r.yaml.err"
done
render "$T/r.yaml" --set containerd.configFileName=x.toml -f "$CHART/examples/k3s.yaml"
check "containerd.configFileName with k3s: warning (k3s's containerd does not read /etc/containerd)" \
	grep -qF '# WARNING: containerd.configFileName is ignored with k8sDistribution k3s' "$T/r.yaml"

# health.*Probe.enabled, in upstream's shapes (its liveness/readiness have no initialDelaySeconds)
for p in startupProbe livenessProbe readinessProbe; do
	render "$T/r.yaml" --set health.$p.enabled=false
	check "health.$p.enabled=false leaves the probe out" [ "$(yq "$T/r.yaml" "'$p' in $DS")" = False ]
done
render "$T/r.yaml" -f "$UPV" --set image.reference=registry.example/kata-deploy-c
check "upstream's probe shapes: liveness = its values, no initialDelaySeconds" \
	[ "$(yq "$T/r.yaml" "$DS['livenessProbe']")" = "{'httpGet': {'path': '/healthz', 'port': 'health'}, 'failureThreshold': 3, 'periodSeconds': 30, 'timeoutSeconds': 3}" ]
check "upstream's probe shapes: startup = its values" \
	[ "$(yq "$T/r.yaml" "$DS['startupProbe']")" = "{'httpGet': {'path': '/readyz', 'port': 'health'}, 'failureThreshold': 60, 'initialDelaySeconds': 1, 'periodSeconds': 10, 'timeoutSeconds': 3}" ]

# kubectlImage as upstream's {reference, tag}, a digest, or our string form: the hook Job's image
hook_image() { yq "$1" "[d for d in docs if d['kind'] == 'Job'][0]['spec']['template']['spec']['containers'][0]['image']"; }
render "$T/r.yaml" -f "$UPV" --set image.reference=registry.example/kata-deploy-c
check "kubectlImage {reference, tag} (upstream's values) -> quay.io/kata-containers/kubectl:latest" [ "$(hook_image "$T/r.yaml")" = quay.io/kata-containers/kubectl:latest ]
check "upstream's values.yaml: no Helm warning (its map shapes are ours: kubectlImage, probes)" [ ! -s "$T/r.yaml.err" ]
render "$T/r.yaml" --set kubectlImage.reference=registry.example/kubectl --set kubectlImage.tag=1.33
check "kubectlImage {reference, tag} -> reference:tag" [ "$(hook_image "$T/r.yaml")" = registry.example/kubectl:1.33 ]
render "$T/r.yaml" --set kubectlImage.reference=
check "kubectlImage with an empty reference: no hook Job" [ "$(yq "$T/r.yaml" "[d['kind'] for d in docs].count('Job')")" = 0 ]
render "$T/r.yaml" --set kubectlImage.reference=registry.example/kubectl@sha256:0123 --set kubectlImage.tag=1.33
check "kubectlImage with a digest: the reference alone" [ "$(hook_image "$T/r.yaml")" = registry.example/kubectl@sha256:0123 ]
render "$T/r.yaml" --set kubectlImage=registry.example/kubectl:v1
check "kubectlImage as a string" [ "$(hook_image "$T/r.yaml")" = registry.example/kubectl:v1 ]

# RuntimeClasses: the owner label like upstream's, Kata's version (not the chart's)
KV=$(python3 -c 'import yaml; print(yaml.safe_load(open("artifacts/versions.yaml"))["vars"]["kata_version"])')
CV=$(python3 -c 'import yaml; print(yaml.safe_load(open("helm/kata-deploy/Chart.yaml"))["annotations"]["katacontainers.io/kata-version"])')
check "Chart.yaml's katacontainers.io/kata-version ($CV) = artifacts/versions.yaml kata_version ($KV)" [ "$CV" = "$KV" ]
rcs() { yq "$1" "sorted((d['metadata']['name'], d['metadata']['annotations']['katacontainers.io/kata-version'], d['scheduling']['nodeSelector'].get('$2')) for d in docs if d['kind'] == 'RuntimeClass')"; }
render "$T/r.yaml" --set debug=true --set runtimeClasses.createDefault=true \
	--set customRuntimes.enabled=true --set customRuntimes.runtimes.kata-big.baseConfig=qemu
check "every RuntimeClass selects kata-deploy.katacontainers.io/default and carries Kata $KV" \
	[ "$(rcs "$T/r.yaml" kata-deploy.katacontainers.io/default)" = "[('kata', '$KV', 'true'), ('kata-big', '$KV', 'true'), ('kata-qemu', '$KV', 'true'), ('kata-qemu-debug', '$KV', 'true')]" ]
render "$T/r.yaml" --set env.multiInstallSuffix=blue --set-string 'shims.qemu.runtimeClass.nodeSelector.kata-deploy\.katacontainers\.io/blue=false'
check "with a suffix: kata-deploy.katacontainers.io/blue, a shim's nodeSelector cannot override it" \
	[ "$(rcs "$T/r.yaml" kata-deploy.katacontainers.io/blue)" = "[('kata-qemu-blue', '$KV', 'true')]" ]

# --- 4. against the real kube-apiserver: renders, the release's identity, the agent's keys -------
scripts/peers/all.sh kube-apiserver kubectl >"$T/peers.log" 2>&1 || { cat "$T/peers.log"; not_ok "apiserver peers"; finish; exit 1; }
PEERS=${KD_PEERS_DIR:-$HOME/.cache/kata-deploy-peers}
KUBECTL=$PEERS/bin/kubectl AGENT=$KD_BUILD/kata-deploy-agent
_keys_cleanup() {
	local rc=$?
	for p in $(cat "$T"/agent-*.pid 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
	bash tests/peers/apiserver-down.sh "$T/api" >/dev/null 2>&1 || true
	chmod -R u+w "$T" 2>/dev/null || true
	rm -rf "$T"
	exit $rc
}
trap _keys_cleanup EXIT
. tests/peers/apiserver-up.sh "$T/api" >/dev/null
export KUBECONFIG=$KD_APISERVER_KUBECONFIG
k() { "$KUBECTL" "$@"; }
q() { "$@" >"$T/q.out" 2>&1 || { sed 's/^/#   /' "$T/q.out" | tail -20; return 1; }; }
API_PORT=${KD_APISERVER_URL##*:}

# Every upstream example that renders is accepted by the API server as it is.
for v in "$EX"/*.values; do
	c=$(basename "$v" .values)
	mapfile -t args <"$EX/$c.args"
	render "$T/ex.yaml" -f "$v" "${args[@]}" || continue
	check "example $c: kubectl apply --dry-run=server" q k apply --dry-run=server -f "$T/ex.yaml" -o name
done

# Item 7: helm install (no hooks: no controller runs the pre-delete Job here) records the release.
"$HELM" install kd1 "$CHART" -n kube-system --no-hooks --set payload.source=oci://registry.example/kata/payload:4.1.0 \
	>"$T/install.out" 2>&1 && ok "helm install kd1 against the API server" || { not_ok "helm install kd1: $(cat "$T/install.out")"; }
cm() { k get configmap kd1-kata-deploy-state -n kube-system -o jsonpath="{.data.$1}"; }
check "kubectl reads the release's state: kd1-kata-deploy-state release=kd1, kataVersion=$KV, payload oci://..., suffix \"\", mode daemonset" \
	[ "$(cm release)/$(cm kataVersion)/$(cm payload)/$(cm multiInstallSuffix)/$(cm deploymentMode)" = "kd1/$KV/oci://registry.example/kata/payload:4.1.0//daemonset" ]
"$HELM" upgrade kd1 "$CHART" -n kube-system --no-hooks --set env.multiInstallSuffix=blue >"$T/upgrade.out" 2>&1 &&
	not_ok "helm upgrade with another suffix accepted" ||
	check "helm upgrade with another suffix: refused ($(grep -o 'kata-deploy: .*cannot change on upgrade[^;(]*' "$T/upgrade.out" | head -1))" grep -qF 'env.multiInstallSuffix cannot change on upgrade' "$T/upgrade.out"
# The state ConfigMap alone refuses it too (a release whose DaemonSet is gone, e.g. deleted by hand).
k delete daemonset kata-deploy -n kube-system >/dev/null
"$HELM" upgrade kd1 "$CHART" -n kube-system --no-hooks --set env.multiInstallSuffix=blue >"$T/upgrade.out" 2>&1 &&
	not_ok "helm upgrade with another suffix accepted without the DaemonSet" ||
	check "... also from the state ConfigMap alone" grep -qF 'env.multiInstallSuffix cannot change on upgrade: release "kd1" was installed with "" (ConfigMap kd1-kata-deploy-state)' "$T/upgrade.out"
"$HELM" upgrade kd1 "$CHART" -n kube-system --no-hooks --set logLevel=debug >"$T/upgrade.out" 2>&1 &&
	ok "helm upgrade with the same suffix (logLevel=debug)" || not_ok "helm upgrade kd1: $(cat "$T/upgrade.out")"
check "the upgraded DaemonSet runs the agent with --log-level debug" \
	[ "$(k get ds kata-deploy -n kube-system -o jsonpath='{.spec.template.spec.containers[0].args}')" = '["--log-level","debug","install"]' ]

# The agent on a node (as test-agent.sh: the chart's service account, a Node object standing in for
# the kubelet, a host root): it records which release installed which payload on the node, reads
# containerd's config from CONTAINERD_CONFIG_FILE_NAME, and logs at LOG_LEVEL.
NODE=kd-keys-node
k apply -f - >/dev/null <<Y
apiVersion: v1
kind: Node
metadata: {name: $NODE, labels: {kubernetes.io/os: linux}}
Y
k patch node "$NODE" --subresource=status --type=merge -p '{"status":{"nodeInfo":{"containerRuntimeVersion":"containerd://1.7.2","kubeletVersion":"v1.33.0","osImage":"Debian","kernelVersion":"6.1","operatingSystem":"linux","architecture":"amd64","machineID":"m","systemUUID":"u","bootID":"b","kubeProxyVersion":""},"conditions":[{"type":"Ready","status":"True","reason":"KubeletReady","message":"test","lastHeartbeatTime":"2025-01-01T00:00:00Z","lastTransitionTime":"2025-01-01T00:00:00Z"}],"runtimeHandlers":[{"name":"kata-qemu","features":{"recursiveReadOnlyMounts":false,"userNamespaces":false}}]}}' >/dev/null
P=$T/payload.tar.zst
"$KD" payload pack artifacts/demo/tree --spec artifacts/demo/payload.yaml -o "$P" >/dev/null
PV=$(python3 -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["version"])' artifacts/demo/payload.yaml)
R=$T/root
make_host_root "$R"
mv "$R/etc/containerd/config.toml" "$R/etc/containerd/config-kd.toml"
snapshot "$R" >"$T/orig.snap"
HC=$T/hc
tests/tools/mkfakeko.sh tree "$HC" 6.1.0-fake >/dev/null 2>&1
mkdir -p "$HC/proc/sys/kernel" "$HC/dev" "$HC/sys/fs/cgroup"
printf 'processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu lm sse4_1 sse4_2 vmx\n' >"$HC/proc/cpuinfo"
echo 6.1.0-fake >"$HC/proc/sys/kernel/osrelease"
echo "cpu memory pids" >"$HC/sys/fs/cgroup/cgroup.controllers"
: >"$HC/dev/kvm"
mkdir -p "$T/sa"
cp "$KD_APISERVER_CA" "$T/sa/ca.crt"
echo kube-system >"$T/sa/namespace"
k create token kata-deploy-sa -n kube-system --duration=1h >"$T/sa/token"
run_agent() { # NAME [VAR=value ...]: "install" in the background, its pid in $T/agent-NAME.pid
	local name=$1; shift
	env KUBERNETES_SERVICE_HOST=127.0.0.1 KUBERNETES_SERVICE_PORT="$API_PORT" \
		SERVICEACCOUNT_DIR="$T/sa" NODE_NAME=$NODE POD_NAMESPACE=kube-system DAEMONSET_NAME=kata-deploy \
		HOST_ROOT="$R" PAYLOAD="$P" HOST_CHECK_ROOT="$HC" RUNTIME_RESTART=none HEALTH_PORT=0 \
		POLL_INTERVAL_MS=100 LABEL_STABLE_READS=2 RUNTIME_HANDLERS_TIMEOUT=30 SHIMS_X86_64=qemu \
		CONTAINERD_CONFIG_FILE_NAME=config-kd.toml "$@" \
		"$AGENT" install >"$T/agent-$name.log" 2>&1 &
	echo $! >"$T/agent-$name.pid"
}
not() { ! "$@"; }
ident() { k get node "$NODE" -o jsonpath='{.metadata.annotations.install\.kata-deploy\.katacontainers\.io/default}'; }
# "install" stays as the waiter until SIGTERM: wait for the annotation.
run_agent a1 LOG_LEVEL=warn
for i in $(seq 1 600); do [ -n "$(ident)" ] && break; kill -0 "$(cat "$T/agent-a1.pid")" 2>/dev/null || break; sleep 0.1; done
ident >"$T/ident.json"
python3 - "$T/ident.json" "$PV" >"$T/ident.out" 2>&1 <<'PY' && ok "node annotation install.kata-deploy.katacontainers.io/default: $(cat "$T/ident.json")" || { not_ok "node identity: $(cat "$T/ident.out")"; sed 's/^/#   /' "$T/agent-a1.log" | tail -20; }
import json, sys
d = json.load(open(sys.argv[1]))
assert d["release"] == "kd1", d
assert d["daemonSet"] == "kube-system/kata-deploy", d
assert d["payload"] == sys.argv[2], (d, sys.argv[2])
assert len(d["id"]) == 16 and d["source"].endswith("payload.tar.zst") and d["shims"] == "qemu", d
PY
check "CONTAINERD_CONFIG_FILE_NAME=config-kd.toml: the handlers are in /etc/containerd/config-kd.toml" grep -q 'kata-qemu' "$R/etc/containerd/config-kd.toml"
check "CONTAINERD_CONFIG_FILE_NAME: no /etc/containerd/config.toml created" [ ! -e "$R/etc/containerd/config.toml" ]
containerd --config "$R/etc/containerd/config-kd.toml" config dump >"$T/dump" 2>"$T/dump.err" &&
	check "containerd $(containerd --version | awk '{print $3}') loads config-kd.toml with kata-qemu" grep -q 'runtimes.kata-qemu\]' "$T/dump" ||
	not_ok "containerd config dump of config-kd.toml: $(head -3 "$T/dump.err")"
check "LOG_LEVEL=warn: no info lines in the agent's log" not grep -q ': info: ' "$T/agent-a1.log"
check "a readable summary: kubectl custom-columns" \
	bash -c "'$KUBECTL' get nodes -o custom-columns='NODE:.metadata.name,KATA:.metadata.annotations.install\.kata-deploy\.katacontainers\.io/default' | grep -q '^$NODE .*\"release\":\"kd1\"'"
# Uninstall (the DaemonSet gone, SIGTERM): the identity goes with the labels, the root is as it was.
k delete daemonset kata-deploy -n kube-system >/dev/null
kill -TERM "$(cat "$T/agent-a1.pid")"
rc=0; wait "$(cat "$T/agent-a1.pid")" 2>/dev/null || rc=$?
check "SIGTERM, DaemonSet gone: the agent exits 0 ($rc)" [ "$rc" = 0 ]
check "uninstall removes the node's identity annotation" [ -z "$(ident)" ]
snapshot "$R" >"$T/after.snap"
check "uninstall restores the host root (config-kd.toml) byte for byte" cmp -s "$T/orig.snap" "$T/after.snap"
# CONTAINERD_CONFIG_FILE_NAME is refused before anything happens when it is not a file name.
run_agent bad CONTAINERD_CONFIG_FILE_NAME=../shadow
rc=0; wait "$(cat "$T/agent-bad.pid")" || rc=$?
check "CONTAINERD_CONFIG_FILE_NAME=../shadow: exit 2 ($rc)" [ "$rc" = 2 ]
check "CONTAINERD_CONFIG_FILE_NAME=../shadow: the message names the variable" grep -qF 'CONTAINERD_CONFIG_FILE_NAME=../shadow: must be a file name' "$T/agent-bad.log"

finish
