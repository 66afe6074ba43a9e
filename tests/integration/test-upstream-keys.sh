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

finish
