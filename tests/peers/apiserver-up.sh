#!/usr/bin/env bash
# Start a real etcd + kube-apiserver on loopback (free ports) inside DIR.
#
#   tests/peers/apiserver-up.sh DIR          # run: prints the env file path on stdout
#   . tests/peers/apiserver-up.sh DIR        # source: also exports the KD_* variables
#
# Writes into DIR:
#   pki/ca.{crt,key} pki/apiserver.{crt,key} pki/sa.{key,pub}  (openssl; self-signed CA)
#   tokens.csv      static tokens: admin (system:masters) and "limited" (no groups, no RBAC)
#   kubeconfig      admin kubeconfig (token auth, CA-verified)
#   apiserver.env   KD_APISERVER_URL/CA/TOKEN/LIMITED_TOKEN/KUBECONFIG, KD_ETCD_URL, PIDs
#   etcd.log kube-apiserver.log, etcd-data/
# Stop with tests/peers/apiserver-down.sh DIR (kills by PID).
#
# Binaries: kube-apiserver from $KD_APISERVER_BIN, $KD_PEERS_DIR/bin or PATH;
#           etcd from $KD_ETCD_BIN, $KD_PEERS_DIR/bin or PATH (Debian's etcd-server works).
# KD_APISERVER_EXTRA_ARGS: more flags for kube-apiserver (word-split).
# No controller-manager runs: the ServiceAccount admission plugin is disabled so pods
# can be created without a "default" ServiceAccount; TokenRequest still works
# (kubectl create token) because the signing key is given.

kd__apiserver_up() {
	local dir=$1
	[ -n "$dir" ] || { echo "usage: apiserver-up.sh DIR" >&2; return 2; }
	mkdir -p "$dir" || return 1
	dir=$(cd "$dir" && pwd)
	local peers=${KD_PEERS_DIR:-$HOME/.cache/kata-deploy-peers}
	local api=${KD_APISERVER_BIN:-} etcd=${KD_ETCD_BIN:-}
	[ -n "$api" ] || { [ -x "$peers/bin/kube-apiserver" ] && api=$peers/bin/kube-apiserver; } || api=$(command -v kube-apiserver) || true
	[ -n "$etcd" ] || { [ -x "$peers/bin/etcd" ] && etcd=$peers/bin/etcd; } || etcd=$(command -v etcd) || true
	[ -x "$api" ] || { echo "apiserver-up: kube-apiserver not found (run scripts/peers/kube-apiserver.sh)" >&2; return 1; }
	[ -x "$etcd" ] || { echo "apiserver-up: etcd not found (apt-get install etcd-server)" >&2; return 1; }

	local port
	kd__port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
	local etcd_client etcd_peer api_port
	etcd_client=$(kd__port); etcd_peer=$(kd__port); api_port=$(kd__port)
	while [ "$etcd_peer" = "$etcd_client" ]; do etcd_peer=$(kd__port); done
	while [ "$api_port" = "$etcd_client" ] || [ "$api_port" = "$etcd_peer" ]; do api_port=$(kd__port); done

	# --- PKI -------------------------------------------------------------------
	local pki=$dir/pki
	mkdir -p "$pki" && chmod 700 "$pki"
	if [ ! -f "$pki/apiserver.crt" ]; then
		openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=kd-test-ca" \
			-keyout "$pki/ca.key" -out "$pki/ca.crt" \
			-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
			>/dev/null 2>&1 || { echo "apiserver-up: CA generation failed" >&2; return 1; }
		openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
			-keyout "$pki/apiserver.key" -out "$pki/apiserver.csr" >/dev/null 2>&1 || return 1
		printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,IP:10.96.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' > "$pki/apiserver.ext"
		openssl x509 -req -in "$pki/apiserver.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
			-days 30 -extfile "$pki/apiserver.ext" -out "$pki/apiserver.crt" >/dev/null 2>&1 \
			|| { echo "apiserver-up: serving cert failed" >&2; return 1; }
		openssl genrsa -out "$pki/sa.key" 2048 >/dev/null 2>&1 || return 1
		openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" >/dev/null 2>&1 || return 1
	fi
	local admin_token limited_token
	admin_token=$(openssl rand -hex 24); limited_token=$(openssl rand -hex 24)
	printf '%s,admin,kd-admin-uid,"system:masters"\n%s,limited,kd-limited-uid\n' "$admin_token" "$limited_token" > "$dir/tokens.csv"
	chmod 600 "$dir/tokens.csv"

	# --- etcd ------------------------------------------------------------------
	local etcd_url=http://127.0.0.1:$etcd_client
	rm -rf "$dir/etcd-data"
	"$etcd" --name kd-test --data-dir "$dir/etcd-data" \
		--listen-client-urls "$etcd_url" --advertise-client-urls "$etcd_url" \
		--listen-peer-urls "http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
		--initial-cluster "kd-test=http://127.0.0.1:$etcd_peer" --initial-cluster-state new \
		--quota-backend-bytes 1073741824 \
		> "$dir/etcd.log" 2>&1 < /dev/null &
	local etcd_pid=$!
	echo "$etcd_pid" > "$dir/etcd.pid"
	local i
	for i in $(seq 1 100); do
		curl -fsS "$etcd_url/health" 2>/dev/null | grep -q '"health":"true"' && break
		kill -0 "$etcd_pid" 2>/dev/null || { echo "apiserver-up: etcd died:" >&2; tail -20 "$dir/etcd.log" >&2; return 1; }
		sleep 0.1
	done
	curl -fsS "$etcd_url/health" 2>/dev/null | grep -q '"health":"true"' \
		|| { echo "apiserver-up: etcd not healthy after 10 s" >&2; kill "$etcd_pid"; return 1; }

	# --- kube-apiserver ----------------------------------------------------------
	local url=https://127.0.0.1:$api_port
	mkdir -p "$dir/cert-dir"
	# shellcheck disable=SC2086
	"$api" \
		--etcd-servers="$etcd_url" --etcd-prefix=/registry \
		--bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$api_port" \
		--cert-dir="$dir/cert-dir" \
		--tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
		--client-ca-file="$pki/ca.crt" \
		--token-auth-file="$dir/tokens.csv" \
		--authorization-mode=Node,RBAC \
		--service-account-issuer=https://kubernetes.default.svc.cluster.local \
		--service-account-key-file="$pki/sa.pub" \
		--service-account-signing-key-file="$pki/sa.key" \
		--service-cluster-ip-range=10.96.0.0/24 \
		--disable-admission-plugins=ServiceAccount \
		--allow-privileged=true \
		--profiling=false \
		--endpoint-reconciler-type=none \
		--v=1 \
		${KD_APISERVER_EXTRA_ARGS:-} \
		> "$dir/kube-apiserver.log" 2>&1 < /dev/null &
	local api_pid=$!
	echo "$api_pid" > "$dir/kube-apiserver.pid"
	local ok=0
	for i in $(seq 1 240); do
		if curl -fsS --cacert "$pki/ca.crt" -H "Authorization: Bearer $admin_token" "$url/readyz" 2>/dev/null | grep -q '^ok$'; then
			ok=1; break
		fi
		kill -0 "$api_pid" 2>/dev/null || break
		sleep 0.25
	done
	if [ "$ok" != 1 ]; then
		echo "apiserver-up: kube-apiserver not ready after 60 s:" >&2; tail -30 "$dir/kube-apiserver.log" >&2
		kill "$api_pid" "$etcd_pid" 2>/dev/null; return 1
	fi

	cat > "$dir/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: kd-test
  cluster:
    server: $url
    certificate-authority: $pki/ca.crt
users:
- name: admin
  user:
    token: $admin_token
contexts:
- name: kd-test
  context: {cluster: kd-test, user: admin}
current-context: kd-test
KC
	chmod 600 "$dir/kubeconfig"
	cat > "$dir/apiserver.env" <<ENV
export KD_APISERVER_DIR='$dir'
export KD_APISERVER_URL='$url'
export KD_APISERVER_CA='$pki/ca.crt'
export KD_APISERVER_TOKEN='$admin_token'
export KD_APISERVER_LIMITED_TOKEN='$limited_token'
export KD_APISERVER_KUBECONFIG='$dir/kubeconfig'
export KD_APISERVER_PID='$api_pid'
export KD_ETCD_URL='$etcd_url'
export KD_ETCD_PID='$etcd_pid'
ENV
	. "$dir/apiserver.env"
	return 0
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	kd__apiserver_up "${1:-}" || exit 1
	echo "${KD_APISERVER_DIR}/apiserver.env"
else
	kd__apiserver_up "${1:-}"
fi
