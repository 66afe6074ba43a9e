#!/usr/bin/env bash
# Smoke test: real etcd + kube-apiserver on loopback, driven with kubectl and curl.
# Node object + status subresource, node label, RuntimeClass, Namespace + ServiceAccount,
# TokenRequest (kubectl create token), RBAC allow/deny with that token, server-side
# dry-run of a DaemonSet. Everything is stopped by PID at exit.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
peers=${KD_PEERS_DIR:-$HOME/.cache/kata-deploy-peers}
KUBECTL=${KUBECTL:-}
[ -n "$KUBECTL" ] || { [ -x "$peers/bin/kubectl" ] && KUBECTL=$peers/bin/kubectl; } || KUBECTL=$(command -v kubectl) || true
[ -x "$KUBECTL" ] || { echo "smoke-kube-apiserver: kubectl not found (scripts/peers/kubectl.sh)" >&2; exit 1; }

W=$(mktemp -d /tmp/kd-smoke-apiserver.XXXXXX)
export KUBECACHEDIR=$W/kube-cache # not ~/.kube/cache
cleanup() { bash "$here/apiserver-down.sh" "$W/api" || true; [ "${KD_KEEP:-0}" = 1 ] || rm -rf "$W"; }
trap cleanup EXIT
n=0 fails=0
ok()  { n=$((n + 1)); echo "ok $n - $*"; }
bad() { n=$((n + 1)); fails=$((fails + 1)); echo "not ok $n - $*"; }
check() { local d=$1; shift; if "$@" >"$W/out" 2>&1; then ok "$d"; else bad "$d"; sed 's/^/#   /' "$W/out" | tail -15; fi; }

t0=$(date +%s.%N)
. "$here/apiserver-up.sh" "$W/api"
t1=$(date +%s.%N)
ok "etcd + kube-apiserver ready in $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}') s at $KD_APISERVER_URL"
k() { "$KUBECTL" --kubeconfig "$KD_APISERVER_KUBECONFIG" "$@"; }

check "server version $(k version -o json 2>/dev/null | jq -r .serverVersion.gitVersion)" \
	sh -c "'$KUBECTL' --kubeconfig '$KD_APISERVER_KUBECONFIG' version -o json | jq -e '.serverVersion.gitVersion | startswith(\"v1.\")'"

cat > "$W/node.yaml" <<'Y'
apiVersion: v1
kind: Node
metadata:
  name: kd-smoke-node
  labels: {kubernetes.io/os: linux}
spec: {}
Y
check "kubectl apply Node" k apply -f "$W/node.yaml"
check "patch node status (subresource)" k patch node kd-smoke-node --subresource=status --type=merge -p \
	'{"status":{"nodeInfo":{"containerRuntimeVersion":"containerd://2.2.0","kubeletVersion":"v1.33.0","osImage":"Debian 12","kernelVersion":"6.1.0","operatingSystem":"linux","architecture":"amd64","machineID":"m","systemUUID":"u","bootID":"b","kubeProxyVersion":""},"runtimeHandlers":[{"name":"kata-qemu","features":{"recursiveReadOnlyMounts":false,"userNamespaces":false}}]}}'
check "node status reads back" sh -c "'$KUBECTL' --kubeconfig '$KD_APISERVER_KUBECONFIG' get node kd-smoke-node -o json | jq -e '.status.nodeInfo.containerRuntimeVersion == \"containerd://2.2.0\" and .status.runtimeHandlers[0].name == \"kata-qemu\"'"
check "label node" k label node kd-smoke-node katacontainers.io/kata-runtime=true
check "label reads back" sh -c "'$KUBECTL' --kubeconfig '$KD_APISERVER_KUBECONFIG' get nodes -l katacontainers.io/kata-runtime=true -o name | grep -qx node/kd-smoke-node"

cat > "$W/rc.yaml" <<'Y'
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata:
  name: kata-qemu
handler: kata-qemu
overhead:
  podFixed: {memory: 160Mi, cpu: 250m}
scheduling:
  nodeSelector: {katacontainers.io/kata-runtime: "true"}
Y
check "create RuntimeClass" k apply -f "$W/rc.yaml"
check "RuntimeClass reads back" sh -c "'$KUBECTL' --kubeconfig '$KD_APISERVER_KUBECONFIG' get runtimeclass kata-qemu -o json | jq -e '.handler == \"kata-qemu\" and .overhead.podFixed.memory == \"160Mi\"'"

cat > "$W/rbac.yaml" <<'Y'
apiVersion: v1
kind: Namespace
metadata: {name: kd-smoke}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: kd-agent, namespace: kd-smoke}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: kd-smoke-agent}
rules:
- {apiGroups: [""], resources: [nodes], verbs: [get, list, patch]}
- {apiGroups: [node.k8s.io], resources: [runtimeclasses], verbs: [get, list]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: kd-smoke-agent}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: kd-smoke-agent}
subjects:
- {kind: ServiceAccount, name: kd-agent, namespace: kd-smoke}
Y
check "Namespace + ServiceAccount + RBAC" k apply -f "$W/rbac.yaml"
sa_token=$(k create token kd-agent -n kd-smoke --duration=10m 2>"$W/tokerr") || true
if [ -n "$sa_token" ]; then ok "kubectl create token (TokenRequest)"; else bad "kubectl create token"; sed 's/^/#   /' "$W/tokerr"; fi

code() { # TOKEN METHOD PATH [DATA]
	curl -s -o "$W/body" -w '%{http_code}' --cacert "$KD_APISERVER_CA" -H "Authorization: Bearer $1" \
		-X "$2" ${4:+-H 'Content-Type: application/merge-patch+json' --data "$4"} "$KD_APISERVER_URL$3"
}
expect() { # DESC WANT TOKEN METHOD PATH [DATA]
	local d=$1 want=$2; shift 2; local got; got=$(code "$@")
	if [ "$got" = "$want" ]; then ok "$d -> $got"; else bad "$d -> $got (want $want)"; head -c 400 "$W/body" | sed 's/^/#   /'; echo; fi
}
expect "SA token: GET node" 200 "$sa_token" GET /api/v1/nodes/kd-smoke-node
expect "SA token: PATCH node label" 200 "$sa_token" PATCH /api/v1/nodes/kd-smoke-node '{"metadata":{"labels":{"kd-smoke":"patched"}}}'
expect "SA token: GET runtimeclass" 200 "$sa_token" GET /apis/node.k8s.io/v1/runtimeclasses/kata-qemu
expect "SA token: DELETE node is forbidden" 403 "$sa_token" DELETE /api/v1/nodes/kd-smoke-node
expect "SA token: list secrets is forbidden" 403 "$sa_token" GET /api/v1/namespaces/kd-smoke/secrets
expect "limited static user: GET node is forbidden" 403 "$KD_APISERVER_LIMITED_TOKEN" GET /api/v1/nodes/kd-smoke-node
expect "bad token is unauthorized" 401 not-a-token GET /api/v1/nodes
check "SelfSubjectReview names the SA" sh -c "curl -fsS --cacert '$KD_APISERVER_CA' -H 'Authorization: Bearer $sa_token' -H 'Content-Type: application/json' -X POST \
	--data '{\"apiVersion\":\"authentication.k8s.io/v1\",\"kind\":\"SelfSubjectReview\"}' '$KD_APISERVER_URL/apis/authentication.k8s.io/v1/selfsubjectreviews' \
	| jq -e '.status.userInfo.username == \"system:serviceaccount:kd-smoke:kd-agent\"'"

cat > "$W/ds.yaml" <<'Y'
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: kata-deploy, namespace: kd-smoke}
spec:
  selector: {matchLabels: {name: kata-deploy}}
  template:
    metadata: {labels: {name: kata-deploy}}
    spec:
      serviceAccountName: kd-agent
      hostPID: true
      containers:
      - name: kube-kata
        image: registry.example/kata-deploy:test
        securityContext: {privileged: true}
        volumeMounts: [{name: host, mountPath: /host}]
      volumes: [{name: host, hostPath: {path: /}}]
Y
check "kubectl apply --dry-run=server DaemonSet" k apply --dry-run=server -f "$W/ds.yaml"
check "dry-run created nothing" sh -c "! '$KUBECTL' --kubeconfig '$KD_APISERVER_KUBECONFIG' get ds -n kd-smoke kata-deploy"

api_pid=$KD_APISERVER_PID etcd_pid=$KD_ETCD_PID
bash "$here/apiserver-down.sh" "$W/api"
if kill -0 "$api_pid" 2>/dev/null || kill -0 "$etcd_pid" 2>/dev/null; then bad "stopped by PID"; else ok "stopped by PID"; fi
echo "1..$n"
echo "smoke-kube-apiserver: $((n - fails)) passed, $fails failed"
[ "$fails" -eq 0 ]
