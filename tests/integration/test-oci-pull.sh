#!/usr/bin/env bash
# oci:// payloads (issue 13 part 4, docs/PAYLOAD.md "In a registry"): `kata-build push --payload`
# publishes a payload as an artifact with one layer per component on a real registry (Debian's
# docker-registry on loopback, as in test-builder.sh), and `kata-deploy install --payload
# oci://…` pulls only the blobs of the chosen shims. Counted from the registry's own access log:
# the bytes each node pulls are its components' blobs, the payload manifest's frame and the tail,
# nothing else; an upgrade in which only another shim's component changed pulls two small blobs.
# A corrupted blob is refused before the host is touched (the root snapshot is unchanged, no
# lock file either); a download cut mid-blob resumes with Range from the partial file on the next
# run; the registry's token auth (docker-registry verifying JWTs from an issuer at its realm)
# with credentials from a dockerconfigjson file; pins, signatures and the plain-http rule; the
# node agent with PAYLOAD=oci://… against a real kube-apiserver.
source "$(dirname "$0")/../lib.sh"
cd "$ROOTDIR"
KB=$KD_BUILD/kata-build
command -v docker-registry >/dev/null || { echo "# docker-registry missing"; not_ok "docker-registry"; finish; }

pids=()
cleanup_servers() { for p in "${pids[@]}"; do { kill -9 "$p"; wait "$p"; } 2>/dev/null || :; done; }
trap 'rc=$?; set +e; cleanup_servers; (exit $rc); _kd_cleanup' EXIT
export TMPDIR=$T/tmp # the default blob cache is $TMPDIR/kata-deploy-blobs
mkdir -p "$TMPDIR"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 100); do curl -s -o /dev/null "$@" && return 0; sleep 0.1; done; return 1; }
wait_file() { for _ in $(seq 100); do [ -s "$1" ] && return 0; sleep 0.1; done; return 1; }

# ---- a payload with components of distinct sizes ----
mktree() { # DIR QEMU_SEED CLH_SEED
	cp -r artifacts/demo/tree "$1"
	python3 - "$1/opt/kata/bin" "$2" "$3" <<'EOF'
import random, sys
d, qs, cs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for name, seed, n in (("qemu-system-x86_64", qs, 3000000), ("cloud-hypervisor", cs, 2000000)):
    with open(f"{d}/{name}", "ab") as f:
        f.write(random.Random(seed).randbytes(n))
EOF
}
mktree "$T/tree1" 1 2
mktree "$T/tree2" 1 3 # only cloud-hypervisor differs
sed 's/^version: .*/version: "3.99.2-demo"/' artifacts/demo/payload.yaml >"$T/spec2.yaml"
"$KD" payload pack "$T/tree1" --spec artifacts/demo/payload.yaml -o "$T/p1.tar.zst" >/dev/null
"$KD" payload pack "$T/tree2" --spec "$T/spec2.yaml" -o "$T/p2.tar.zst" >/dev/null
openssl genpkey -algorithm ed25519 -out "$T/key.pem" 2>/dev/null
openssl pkey -in "$T/key.pem" -pubout -out "$T/pub.pem"
openssl genpkey -algorithm ed25519 -out "$T/other.pem" 2>/dev/null
openssl pkey -in "$T/other.pem" -pubout -out "$T/otherpub.pem"

# ---- the registry, its access log on ----
start_registry() { # NAME [AUTH-YAML]
	local port
	port=$(free_port)
	mkdir -p "$T/$1/data"
	cat >"$T/$1/config.yml" <<CFG
version: 0.1
log: {level: error, accesslog: {disabled: false}}
storage:
  filesystem: {rootdirectory: $T/$1/data}
http:
  addr: 127.0.0.1:$port
${2:-}
CFG
	docker-registry serve "$T/$1/config.yml" >"$T/$1/log" 2>&1 &
	pids+=($!)
	echo "$port" >"$T/$1/port"
	wait_http "http://127.0.0.1:$port/v2/"
}
start_registry reg1 || { not_ok "docker-registry starts"; finish; }
R=127.0.0.1:$(cat "$T/reg1/port")
REF=oci://$R/kata/payload

push() { # PAYLOAD TAG LAYOUT: prints the manifest digest
	"$KB" --out "$T/kb" push --payload "$1" --registry "$R/kata/payload" --tag "$2" --layout "$3" \
		--plain-http --sign-key "$T/key.pem" >"$T/push.out" 2>&1 &&
		awk '/^payload artifact/{print $4}' "$T/push.out"
}
D1=$(push "$T/p1.tar.zst" v1 "$T/l1") || { cat "$T/push.out"; not_ok "kata-build push --payload"; finish; }
ok "kata-build push --payload (and its signature): $D1"
D2=$(push "$T/p2.tar.zst" v2 "$T/l2")
check "the signature is under the tag sha256-<hex>.sig" \
	curl -sf -o /dev/null -H "Accept: application/vnd.oci.image.manifest.v1+json" \
	"http://$R/v2/kata/payload/manifests/sha256-${D1#sha256:}.sig"

# Layer sizes and digests by component name ("manifest", "tail" for the first and last).
layers() { # LAYOUT DIGEST
	python3 - "$1" "$2" <<'EOF'
import json, sys
l, d = sys.argv[1], sys.argv[2].split(":")[1]
m = json.load(open(f"{l}/blobs/sha256/{d}"))
n = len(m["layers"])
for i, x in enumerate(m["layers"]):
    name = "manifest" if i == 0 else "tail" if i == n - 1 else x["annotations"]["io.katacontainers.deploy.payload.component"]
    print(name, x["digest"].split(":")[1], x["size"])
EOF
}
layers "$T/l1" "$D1" >"$T/layers1"
layers "$T/l2" "$D2" >"$T/layers2"
size_of() { awk -v n="$2" '$1 == n {print $3}' "$1"; }
hex_of() { awk -v n="$2" '$1 == n {print $2}' "$1"; }
cat_layers() { while read -r _ h _; do cat "$2/blobs/sha256/$h"; done <"$1"; }
check "7 layers: the manifest's frame, 5 components, the tail" [ "$(wc -l <"$T/layers1")" = 7 ]
check "the layers, concatenated, are the payload file" cmp <(cat_layers "$T/layers1" "$T/l1") "$T/p1.tar.zst"
check "v2 shares every layer but the manifest, cloud-hypervisor and the tail" \
	[ "$(comm -12 <(awk '{print $2}' "$T/layers1" | sort) <(awk '{print $2}' "$T/layers2" | sort) | wc -l)" = 4 ]

# GETs of the payloads' blobs in the registry's access log since line FROM: "DIGEST STATUS
# BYTES" lines (a signature's blob is not counted: it is not part of the payload).
awk '{print $2}' "$T/layers1" "$T/layers2" | sort -u >"$T/payload-blobs"
settle() { # LOG: the registry logs a request after answering it: wait until no line comes
	local a b
	for _ in $(seq 30); do
		a=$(wc -l <"$1"); sleep 0.2; b=$(wc -l <"$1")
		[ "$a" = "$b" ] && return 0
	done
}
blob_gets() { # LOG FROM
	settle "$1"
	tail -n +"$2" "$1" |
		sed -n 's|.*"GET /v2/[^ ]*/blobs/sha256:\([0-9a-f]*\) HTTP/1.1" \([0-9]*\) \([0-9]*\).*|\1 \2 \3|p' |
		{ grep -F -f "$T/payload-blobs" || :; }
}
sum_bytes() { awk '{s += $3} END {print s + 0}'; }
expect_bytes() { # LAYERS NAME...: the sum of those layers' sizes
	local f=$1 s=0 n; shift
	for n in "$@"; do s=$((s + $(size_of "$f" "$n"))); done
	echo "$s"
}
mark() { settle "$T/reg1/log"; wc -l <"$T/reg1/log"; }
same_root() { # ROOT SNAPSHOT [-a ! -e PATH]: the root's snapshot is that file (and PATH is absent)
	snapshot "$1" >"$T/snap.now" && cmp -s "$T/snap.now" "$2" && { [ $# -lt 5 ] || [ ! -e "$5" ]; }
}
KDI() { "$KD" install --runtime-version 1.6 --restart none "$@"; }

# ---- a qemu node and a clh node pull their components only ----
make_host_root "$T/q"
m=$(mark)
check "qemu node: install oci:// pinned by --sha256" \
	KDI --root "$T/q" --payload "$REF:v1" --plain-http --sha256 "${D1#sha256:}" --shims qemu --blob-cache "$T/cq"
blob_gets "$T/reg1/log" $((m + 1)) >"$T/gets-q"
want=$(expect_bytes "$T/layers1" manifest tail shim-v2 qemu kernel image)
got=$(sum_bytes <"$T/gets-q")
echo "# qemu node: $got bytes of blobs pulled, its components $want, the artifact $(cat_layers "$T/layers1" "$T/l1" | wc -c)"
check "qemu node: bytes pulled (registry access log) = its components' blobs" [ "$got" = "$want" ]
check "qemu node: cloud-hypervisor's blob never requested" \
	sh -c "! grep -q '$(hex_of "$T/layers1" cloud-hypervisor)' '$T/gets-q'"
check "qemu node: qemu installed, cloud-hypervisor not" \
	test -x "$T/q/opt/kata/bin/qemu-system-x86_64" -a ! -e "$T/q/opt/kata/bin/cloud-hypervisor"
check "qemu node: the installed qemu is the payload's" \
	cmp "$T/q/opt/kata/bin/qemu-system-x86_64" "$T/tree1/opt/kata/bin/qemu-system-x86_64"

make_host_root "$T/k"
m=$(mark)
check "--skip-missing-shims: a shim the payload lacks is left out, as from a file" \
	KDI --root "$T/k" --payload "$REF:v1" --plain-http --sha256 "${D1#sha256:}" --shims qemu,fc \
	--skip-missing-shims --blob-cache "$T/ck"
check "--skip-missing-shims: bytes pulled = the qemu shim's components" \
	[ "$(blob_gets "$T/reg1/log" $((m + 1)) | sum_bytes)" = "$(expect_bytes "$T/layers1" manifest tail shim-v2 qemu kernel image)" ]
expect_fail "without it, a shim the payload lacks is refused" "fc" \
	KDI --root "$T/k" --payload "$REF:v1" --plain-http --sha256 "${D1#sha256:}" --shims qemu,fc --blob-cache "$T/ck"

make_host_root "$T/c"
m=$(mark)
check "clh node: install oci:// by digest (@sha256:)" \
	KDI --root "$T/c" --payload "$REF@$D1" --plain-http --shims clh --blob-cache "$T/cc"
want=$(expect_bytes "$T/layers1" manifest tail shim-v2 cloud-hypervisor kernel image)
got=$(blob_gets "$T/reg1/log" $((m + 1)) | sum_bytes)
echo "# clh node: $got bytes of blobs pulled, its components $want"
check "clh node: bytes pulled = its components' blobs" [ "$got" = "$want" ]
check "clh node: cloud-hypervisor installed, qemu not" \
	test -x "$T/c/opt/kata/bin/cloud-hypervisor" -a ! -e "$T/c/opt/kata/bin/qemu-system-x86_64"

m=$(mark)
KDI --root "$T/q" --payload "$REF:v1" --plain-http --sha256 "${D1#sha256:}" --shims qemu \
	--blob-cache "$T/cq" >"$T/noop.out" 2>&1 || cat "$T/noop.out"
check "qemu node, again: nothing to do, no blob pulled (the cache)" \
	[ "$(grep -c 'nothing to do' "$T/noop.out")" = 1 -a "$(blob_gets "$T/reg1/log" $((m + 1)) | wc -l)" = 0 ]
check "status names the artifact's manifest digest" \
	sh -c "'$KD' status --root '$T/q' | grep -q 'payload sha256 ${D1:7:16}'"

m=$(mark)
check "qemu node: upgrade to v2 (signed, cloud-hypervisor changed)" \
	KDI --root "$T/q" --payload "$REF:v2" --plain-http --public-key "$T/pub.pem" --shims qemu --blob-cache "$T/cq"
blob_gets "$T/reg1/log" $((m + 1)) >"$T/gets-up"
want=$(expect_bytes "$T/layers2" manifest tail)
got=$(sum_bytes <"$T/gets-up")
echo "# qemu node upgrade: $got bytes of blobs pulled (the new manifest frame and tail: $want)"
check "upgrade: only the new manifest frame and tail are pulled" [ "$got" = "$want" ]
check "upgrade: version 3.99.2-demo installed" sh -c "'$KD' status --root '$T/q' | grep -q 3.99.2-demo"
check "the cache keeps only what the last pull used" [ "$(ls "$T/cq" | wc -l)" = 6 ]

check "plan with oci:// pulls and plans, writes nothing" \
	sh -c "'$KD' plan --root '$T/c' --payload '$REF:v2' --plain-http --public-key '$T/pub.pem' --shims clh --blob-cache '$T/cc' --runtime-version 1.6 --restart none | grep -q 'plan: install of 3.99.2-demo'"

# ---- authentication of the manifest ----
make_host_root "$T/x"
snapshot "$T/x" >"$T/x.before"
expect_fail "plain http without a pin or a signature is refused" "refusing a plain http payload" \
	KDI --root "$T/x" --payload "$REF:v1" --plain-http --shims qemu
expect_fail "a wrong --sha256 of the manifest" "manifest: sha256 is ${D1#sha256:}, expected" \
	KDI --root "$T/x" --payload "$REF:v1" --plain-http --sha256 "${D2#sha256:}" --shims qemu
expect_fail "a signature by another key" "signature of manifest $D1" \
	KDI --root "$T/x" --payload "$REF:v1" --plain-http --public-key "$T/otherpub.pem" --shims qemu
expect_fail "https is the default" "https://$R" \
	KDI --root "$T/x" --payload "$REF:v1" --sha256 "${D1#sha256:}" --shims qemu
expect_fail "--plain-http is for oci:// only" "--blob-cache are for oci:// payloads" \
	KDI --root "$T/x" --payload "$T/p1.tar.zst" --plain-http
expect_fail "a plain image is not a payload artifact" "not a kata-deploy payload" \
	sh -c "'$KB' push --layout '$T/l1.sig' --registry '$R/kata/plain' --tag t --plain-http >/dev/null &&
	'$KD' install --root '$T/x' --payload 'oci://$R/kata/plain:t' --plain-http --insecure --runtime-version 1.6 --restart none"
m=$(mark)
expect_fail "a payload for another architecture is refused" "the payload is built for x86_64" \
	KDI --root "$T/x" --payload "$REF:v1" --plain-http --sha256 "${D1#sha256:}" --shims qemu \
	--arch aarch64 --blob-cache "$T/carch"
check "... before any component blob is pulled" \
	[ "$(blob_gets "$T/reg1/log" $((m + 1)) | sum_bytes)" = "$(expect_bytes "$T/layers1" manifest tail)" ]
check "refusals left the root as it was" same_root "$T/x" "$T/x.before"

# ---- a corrupted blob is refused before any host write ----
qhex=$(hex_of "$T/layers1" qemu)
blob=$T/reg1/data/docker/registry/v2/blobs/sha256/${qhex:0:2}/$qhex/data
cp "$blob" "$T/qemu.blob"
python3 -c 'import sys; p=sys.argv[1]; b=bytearray(open(p,"rb").read()); b[len(b)//2] ^= 1; open(p,"wb").write(b)' "$blob"
expect_fail "a corrupted component blob is refused" "hash to sha256:" \
	KDI --root "$T/x" --payload "$REF:v1" --plain-http --sha256 "${D1#sha256:}" --shims qemu --blob-cache "$T/cx"
check "... before any host write (root snapshot unchanged, not even a lock)" \
	same_root "$T/x" "$T/x.before" -a ! -e "$T/x/run/kata-deploy"
check "... and the bad bytes are not kept in the cache" sh -c "! ls '$T/cx' | grep -q '$qhex'"
cp "$T/qemu.blob" "$blob"

# ---- an interrupted download resumes with Range from the partial file ----
CUT=1000000
start_proxy() {
	rm -f "$T/proxy.port"
	python3 tests/tools/stall-proxy.py "$T/proxy.port" "${R#*:}" "sha256:$qhex" "$CUT" &
	pids+=($!)
	wait_file "$T/proxy.port"
}
start_proxy
P=127.0.0.1:$(cat "$T/proxy.port")
# Not through KDI: $! must be kata-deploy itself, not a subshell around it.
"$KD" install --runtime-version 1.6 --restart none --root "$T/x" --payload "oci://$P/kata/payload:v1" \
	--plain-http --sha256 "${D1#sha256:}" --shims qemu --blob-cache "$T/cr" >"$T/cut.out" 2>&1 &
kpid=$!
for _ in $(seq 300); do
	[ "$(stat -c %s "$T/cr/$qhex.part" 2>/dev/null || echo 0)" -ge "$CUT" ] && break
	sleep 0.1
done
kill -9 "$kpid" 2>/dev/null; wait "$kpid" 2>/dev/null || :
check "interrupted: $CUT bytes of qemu's blob kept as a partial file" \
	[ "$(stat -c %s "$T/cr/$qhex.part" 2>/dev/null)" = "$CUT" ]
check "interrupted: the root untouched" same_root "$T/x" "$T/x.before"
m=$(mark)
KDI --root "$T/x" --payload "$REF:v1" --plain-http --sha256 "${D1#sha256:}" --shims qemu \
	--blob-cache "$T/cr" >"$T/resume.out" 2>&1 || cat "$T/resume.out"
check "resumed: the next run completes the install" test -x "$T/x/opt/kata/bin/qemu-system-x86_64"
qsize=$(size_of "$T/layers1" qemu)
blob_gets "$T/reg1/log" $((m + 1)) | grep "^$qhex " >"$T/gets-r" || :
echo "# resume: $(cat "$T/gets-r")"
check "resumed: qemu's blob fetched once more, as 206 with the $((qsize - CUT)) missing bytes" \
	[ "$(cat "$T/gets-r")" = "$qhex 206 $((qsize - CUT))" ]
grep "resuming" "$T/resume.out" | sed 's/^/# /' || :
check "resumed: the log says so" grep -q "resuming sha256:$qhex at byte $CUT of $qsize" "$T/resume.out"

# ---- token auth: docker-registry verifies the JWTs of an issuer at its realm ----
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/tok.key" -out "$T/tok.crt" -days 2 \
	-subj /CN=kd-token-issuer >/dev/null 2>&1
python3 tests/tools/registry-token.py "$T/tok.port" "$T/tok.key" "$T/tok.crt" kd-registry kd-issuer \
	puller:s3cret "$T/tok.log" &
pids+=($!)
wait_file "$T/tok.port"
start_registry reg2 "auth:
  token: {realm: 'http://127.0.0.1:$(cat "$T/tok.port")/token', service: kd-registry, issuer: kd-issuer, rootcertbundle: $T/tok.crt}" ||
	not_ok "docker-registry with token auth starts"
R2=127.0.0.1:$(cat "$T/reg2/port")
check "the token registry refuses anonymous reads (401 Bearer)" \
	sh -c "curl -s -D - -o /dev/null 'http://$R2/v2/' | grep -qi 'www-authenticate: Bearer realm'"
check "kata-build push --payload through the token flow" \
	env KATA_BUILD_REGISTRY_USER=puller KATA_BUILD_REGISTRY_PASSWORD=s3cret \
	"$KB" --out "$T/kb" push --payload "$T/p1.tar.zst" --registry "$R2/kata/payload" --tag v1 --layout "$T/l1b" --plain-http
make_host_root "$T/a"
expect_fail "pull without credentials: the token endpoint's 401, and what to do" "registry auth file" \
	KDI --root "$T/a" --payload "oci://$R2/kata/payload:v1" --plain-http --sha256 "${D1#sha256:}" --shims qemu
printf '{"auths":{"%s":{"auth":"%s"}}}' "$R2" "$(printf puller:wrong | base64)" >"$T/bad.json"
expect_fail "pull with wrong credentials" "token from http://127.0.0.1:$(cat "$T/tok.port")/token: HTTP 401" \
	KDI --root "$T/a" --payload "oci://$R2/kata/payload:v1" --plain-http --sha256 "${D1#sha256:}" \
	--shims qemu --registry-auth "$T/bad.json"
printf '{"auths":{"other.example":{"auth":"eDp5"},"http://%s":{"auth":"%s"}}}' "$R2" \
	"$(printf puller:s3cret | base64)" >"$T/auth.json"
: >"$T/tok.log"
check "pull with a dockerconfigjson (REGISTRY_AUTH_FILE): bearer token, then only qemu's blobs" \
	env REGISTRY_AUTH_FILE="$T/auth.json" "$KD" install --runtime-version 1.6 --restart none --root "$T/a" \
	--payload "oci://$R2/kata/payload:v1" --plain-http --sha256 "${D1#sha256:}" --shims qemu --blob-cache "$T/ca"
check "the issuer granted pull on kata/payload" grep -qx "token repository:kata/payload:pull" "$T/tok.log"
want=$(expect_bytes "$T/layers1" manifest tail shim-v2 qemu kernel image)
check "token registry: bytes pulled = the qemu node's components" \
	[ "$(blob_gets "$T/reg2/log" 1 | sum_bytes)" = "$want" ]

# ---- https, the default: a registry with its own CA ----
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/tls.key" -out "$T/tls.crt" -days 2 \
	-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 >/dev/null 2>&1
tls_port=$(free_port)
mkdir -p "$T/reg3/data"
cat >"$T/reg3/config.yml" <<CFG
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage:
  filesystem: {rootdirectory: $T/reg3/data}
http:
  addr: 127.0.0.1:$tls_port
  tls: {certificate: $T/tls.crt, key: $T/tls.key}
CFG
docker-registry serve "$T/reg3/config.yml" >"$T/reg3/log" 2>&1 &
pids+=($!)
wait_http "https://127.0.0.1:$tls_port/v2/" --cacert "$T/tls.crt"
R3=127.0.0.1:$tls_port
check "kata-build push --payload over https (--ca)" \
	"$KB" --out "$T/kb" push --payload "$T/p1.tar.zst" --registry "$R3/kata/payload" --tag v1 \
	--layout "$T/l1c" --ca "$T/tls.crt"
make_host_root "$T/s"
expect_fail "https: a registry whose CA we do not know is refused" "https://$R3" \
	KDI --root "$T/s" --payload "oci://$R3/kata/payload:v1" --shims qemu --blob-cache "$T/cs"
KDI --root "$T/s" --payload "oci://$R3/kata/payload:v1" --shims qemu --blob-cache "$T/cs" \
	--registry-ca "$T/tls.crt" >"$T/tls.out" 2>&1 || cat "$T/tls.out"
check "https with --registry-ca, neither pinned nor signed: installed, trusting the TLS origin" \
	sh -c "grep -q 'trusted for its TLS origin' '$T/tls.out' && test -x '$T/s/opt/kata/bin/qemu-system-x86_64'"

# ---- the node agent: PAYLOAD=oci://…, its credentials as the chart mounts them ----
# A real kube-apiserver (tests/peers/apiserver-up.sh) with the chart's RBAC, a Node standing in
# for the kubelet, as in test-agent.sh; the agent installs from the token registry.
PEERS=${KD_PEERS_DIR:-$HOME/.cache/kata-deploy-peers}
AGENT=$KD_BUILD/kata-deploy-agent
if [ -x "$AGENT" ] && scripts/peers/all.sh kube-apiserver kubectl >"$T/peers.log" 2>&1 &&
	. tests/peers/apiserver-up.sh "$T/api" >/dev/null; then
	trap 'rc=$?; set +e; [ -n "${apid:-}" ] && kill -9 "$apid" 2>/dev/null; bash tests/peers/apiserver-down.sh "$T/api" >/dev/null 2>&1; cleanup_servers; (exit $rc); _kd_cleanup' EXIT
	k() { "$PEERS/bin/kubectl" --kubeconfig "$KD_APISERVER_KUBECONFIG" "$@"; }
	k apply -f manifests/ >/dev/null
	NODE=kd-oci-node
	printf 'apiVersion: v1\nkind: Node\nmetadata: {name: %s, labels: {kubernetes.io/os: linux}}\n' "$NODE" | k apply -f - >/dev/null
	k patch node "$NODE" --subresource=status --type=merge -p '{"status":{"nodeInfo":{"containerRuntimeVersion":"containerd://1.7.2","kubeletVersion":"v1.33.0","osImage":"Debian","kernelVersion":"6.1","operatingSystem":"linux","architecture":"amd64","machineID":"m","systemUUID":"u","bootID":"b","kubeProxyVersion":""},"conditions":[{"type":"Ready","status":"True","reason":"KubeletReady","message":"test","lastHeartbeatTime":"2025-01-01T00:00:00Z","lastTransitionTime":"2025-01-01T00:00:00Z"}],"runtimeHandlers":[{"name":"kata-qemu","features":{"recursiveReadOnlyMounts":false,"userNamespaces":false}}]}}' >/dev/null
	mkdir -p "$T/sa"
	cp "$KD_APISERVER_CA" "$T/sa/ca.crt"
	echo kube-system >"$T/sa/namespace"
	k create token kata-deploy-sa -n kube-system --duration=1h >"$T/sa/token"
	HC=$T/hc
	tests/tools/mkfakeko.sh tree "$HC" 6.1.0-fake >/dev/null 2>&1
	mkdir -p "$HC/proc/sys/kernel" "$HC/dev" "$HC/sys/fs/cgroup"
	printf 'processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu lm sse4_1 sse4_2 vmx\n' >"$HC/proc/cpuinfo"
	echo 6.1.0-fake >"$HC/proc/sys/kernel/osrelease"
	echo "cpu memory pids" >"$HC/sys/fs/cgroup/cgroup.controllers"
	: >"$HC/dev/kvm"
	make_host_root "$T/n"
	mkdir -p "$T/agent-tmp"
	hp=$(free_port)
	settle "$T/reg2/log"; m2=$(wc -l <"$T/reg2/log")
	env KUBERNETES_SERVICE_HOST=127.0.0.1 KUBERNETES_SERVICE_PORT="${KD_APISERVER_URL##*:}" \
		SERVICEACCOUNT_DIR="$T/sa" NODE_NAME=$NODE POD_NAMESPACE=kube-system HOST_ROOT="$T/n" \
		HOST_CHECK_ROOT="$HC" RUNTIME_RESTART=none POLL_INTERVAL_MS=100 LABEL_STABLE_READS=2 \
		HEALTH_ADDRESS=127.0.0.1 HEALTH_PORT="$hp" RUNTIME_HANDLERS_TIMEOUT=60 \
		SHIMS_X86_64=qemu PAYLOAD="oci://$R2/kata/payload:v1" PAYLOAD_SHA256="${D1#sha256:}" \
		PAYLOAD_PLAIN_HTTP=true PAYLOAD_REGISTRY_AUTH="$T/auth.json" TMPDIR="$T/agent-tmp" \
		"$AGENT" install >"$T/agent.log" 2>&1 &
	apid=$!
	ready=
	for _ in $(seq 600); do
		[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$hp/readyz")" = 200 ] && { ready=1; break; }
		kill -0 "$apid" 2>/dev/null || break
		sleep 0.1
	done
	if [ -n "$ready" ]; then ok "agent: PAYLOAD=oci:// with PAYLOAD_REGISTRY_AUTH: installed, ready"; else
		not_ok "agent: PAYLOAD=oci:// never ready"; tail -20 "$T/agent.log" | sed 's/^/#   /'; fi
	check "agent: qemu on the host root, cloud-hypervisor not" \
		test -x "$T/n/opt/kata/bin/qemu-system-x86_64" -a ! -e "$T/n/opt/kata/bin/cloud-hypervisor"
	check "agent: bytes pulled = the qemu shim's components" \
		[ "$(blob_gets "$T/reg2/log" $((m2 + 1)) | sum_bytes)" = "$want" ]
	check "agent: its settings logged" grep -q "setting PAYLOAD_PLAIN_HTTP=true" "$T/agent.log"
	kill -9 "$apid" 2>/dev/null; wait "$apid" 2>/dev/null || :
	apid=
else
	echo "# kube-apiserver peer unavailable: $(tail -3 "$T/peers.log" 2>/dev/null)"
	not_ok "agent section: kube-apiserver peer"
fi

# ---- the agent image without the payload: how small ----
if [ -x "$KD_BUILD/kata-deploy-agent" ] &&
	"$KB" image --no-payload --agent "$KD_BUILD/kata-deploy-agent" --layout "$T/img" --tag t >"$T/img.out" 2>&1; then
	python3 - "$T/img" >"$T/img.sizes" <<'EOF'
import json, sys
l = sys.argv[1]
d = json.load(open(f"{l}/index.json"))["manifests"][0]["digest"].split(":")[1]
m = json.load(open(f"{l}/blobs/sha256/{d}"))
print(len(m["layers"]), sum(x["size"] for x in m["layers"]))
EOF
	read -r nl isize <"$T/img.sizes"
	echo "# agent image without the payload: $nl layer, $isize bytes compressed"
	check "kata-build image --no-payload: one layer" [ "$nl" = 1 ]
else
	cat "$T/img.out" 2>/dev/null | sed 's/^/#   /'
	not_ok "kata-build image --no-payload"
fi

finish
