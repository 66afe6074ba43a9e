#!/usr/bin/env bash
# The real Kata payload on a real, sandboxed Kubernetes node (docs/NODE-TEST.md, docs/KATA.md;
# issue 12, flow 2): the qemu shim's payload that kata-build makes from upstream 4.1.0 (shim-v2,
# kata-agent in the guest initrd, kernel, static QEMU, virtiofsd; built like test-kata.sh, cached
# by key in the shared cache) goes into the agent image (`kata-build image --payload`), the image
# into the node's containerd, and `kubectl apply -f manifests/` (pointed at it by the override)
# installs it on the node's host. Then a pod with runtimeClassName kata-qemu must reach OUR
# installed containerd-shim-kata-v2, which loads OUR installed configuration, resolves OUR QEMU,
# kernel, initrd and virtiofsd under /opt/kata, and fails for the host reason only: this machine
# has no /dev/vhost-vsock (and /dev/kvm only through kvm_pvm), so no Kata VM can start here.
# The pod's FailedCreatePodSandBox Event must say exactly that and name our installed config.
# The two-step delete must leave the node's host byte for byte as before, and the machine's own
# /etc/containerd, /opt, /var/lib/kata-deploy, /run/nri … must not change.
# A real node has a syslog socket (journald's /dev/log); Kata's shim refuses to start without
# one ("Unix syslog delivery error"). The node has none: this test serves one at /run/syslog in
# the node's mount namespace (Go's log/syslog tries /dev/log, /var/run/syslog, /var/run/log), in
# the node's PID namespace, so it ends with the node. Its lines land in $T/node-syslog.log.
# Needs root, the peers of test-node.sh, and the Kata components (a cold cache builds them: about
# an hour on 2 cores). Prints the figures of docs/NODE-TEST.md (image size, apply → labelled).
source "$(dirname "$0")/../lib.sh"
set +e
cd "$ROOTDIR"
export PATH=/usr/local/go/bin:$PATH
t_start=$SECONDS
say() { echo "# [$((SECONDS - t_start))s] $*"; }
source tests/peers/node-fingerprint.sh

[ "$(id -u)" = 0 ] || { not_ok "test-node-kata needs root (unshare, mounts, cgroups)"; finish; exit 1; }
scripts/peers/all.sh kube-node kubectl containerd2 >"$T/peers.log" 2>&1 ||
	{ cat "$T/peers.log"; not_ok "peers"; finish; exit 1; }
KB=$KD_BUILD/kata-build
[ -x "$KB" ] && [ -x "$KD_BUILD/kata-deploy-agent" ] || { not_ok "build kata-build and the agent first"; finish; exit 1; }
CACHE=${KD_BUILD_CACHE:-$HOME/.cache/kata-build}
PEERS=${KD_PEERS_DIR:-$HOME/.cache/kata-deploy-peers}
OUT=$T/kata-static

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

kd_machine_fp >"$T/machine.before"

# --- the payload (as test-kata.sh builds it: the shared cache, by key) and the node ------------
say "node up (background); the real payload; the agent image"
python3 tests/tools/oci-image.py --out "$T/kubectl.tar" --name kd.test/kubectl:1 \
	--file "$PEERS/bin/kubectl:/usr/local/bin/kubectl:0755" --dir tmp:1777 >/dev/null
KD_NODE_IMAGES="$T/kubectl.tar" tests/peers/node-up.sh "$N" >"$T/node-up.log" 2>&1 &
up_pid=$!
t0=$SECONDS
if [ -n "${KD_NODE_KATA_PAYLOAD:-}" ]; then # debugging the test itself: a payload made elsewhere
	mkdir -p "$OUT" && cp "$KD_NODE_KATA_PAYLOAD" "$OUT/payload.tar.zst"
	prc=$?
else
	"$KB" --cache "$CACHE" --mirror "$KD_SHARED_SOURCES" --out "$OUT" payload >"$T/payload.log" 2>&1
	prc=$?
fi
grep -Es '^(payload|[a-z0-9-]+ [0-9a-f]{64} )' "$T/payload.log" | sed 's/^/# /'
if [ $prc -ne 0 ]; then
	tail -40 "$T/payload.log"
	not_ok "kata-build payload (qemu shim) from upstream 4.1.0 sources"
	wait $up_pid
	finish
	exit 1
fi
P=$OUT/payload.tar.zst
ok "kata-build payload: the real qemu shim payload ($(($(stat -c %s "$P") / 1000000)) MB, $((SECONDS - t0)) s)"
check "the payload holds the real shim, the agent's initrd, the kernel, QEMU, virtiofsd and kata-ctl" sh -c "
	tar --zstd -tf '$P' >'$T/payload.list' &&
	for f in bin/containerd-shim-kata-v2 share/kata-containers/kata-containers-initrd share/kata-containers/vmlinux \
		bin/qemu-system-x86_64 libexec/virtiofsd bin/kata-ctl; do grep -q \"\$f\" '$T/payload.list' || { echo \"# no \$f\"; exit 1; }; done"

t0=$SECONDS
"$KB" --out "$T/kb" --cache "$T/kb-cache" image --agent "$KD_BUILD/kata-deploy-agent" \
	--payload "$P" --layout "$T/layout" --tag kata >"$T/image.log" 2>&1 &&
	tar -C "$T/layout" -cf "$T/agent-kata.tar" . ||
	{ cat "$T/image.log"; not_ok "kata-build image --payload (real payload)"; wait $up_pid; finish; exit 1; }
# The image's size: what a node pulls (the compressed blobs: layers, config, manifest) and the
# unpacked layers.
blobs=$(find "$T/layout/blobs" -type f -printf '%s\n' | awk '{s += $1} END {print s}')
man=$T/layout/blobs/sha256/$(jq -r '.manifests[0].digest' "$T/layout/index.json" | cut -d: -f2)
unpacked=0
while read -r mt dg; do
	l=$T/layout/blobs/sha256/${dg#sha256:}
	case $mt in
	*+gzip) n=$(gzip -dc <"$l" | wc -c) ;;
	*) n=$(stat -c %s "$l") ;;
	esac
	unpacked=$((unpacked + n))
done < <(jq -r '.layers[] | "\(.mediaType) \(.digest)"' "$man")
ok "kata-build image with the real payload ($((SECONDS - t0)) s): $((blobs / 1000000)) MB of blobs, $((unpacked / 1000000)) MB unpacked"
echo "# figure: image size with the real payload: ${blobs} bytes compressed (blobs), ${unpacked} bytes of layers unpacked; payload $(stat -c %s "$P") bytes"

wait $up_pid || { cat "$T/node-up.log"; not_ok "node up"; finish; exit 1; }
. "$N/node.env"
ok "node $KD_NODE_NAME Ready in ${KD_NODE_UP_SECONDS}s"
K() { kd_node_kubectl "$@"; }
t0=$SECONDS
kd_node_ctr images import --base-name kd.test/kata-deploy "$T/agent-kata.tar" >"$T/import.log" 2>&1
check "agent image with the real payload imported as kd.test/kata-deploy:kata ($((SECONDS - t0)) s)" \
	sh -c "'$KD_NODE_PEERS_BIN/ctr2' --address '$KD_NODE_CONTAINERD_SOCK' -n k8s.io images ls -q 2>/dev/null | grep -qx kd.test/kata-deploy:kata"

# A syslog socket in the node (see the header): in its mount, net and PID namespaces.
(nsenter -t "$KD_NODE_PID" -m -n -p -- python3 -c '
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("/run/syslog")
f = open(sys.argv[1], "ab", 0)
while True:
    f.write(s.recv(65536) + b"\n")
' "$T/node-syslog.log" >/dev/null 2>&1 &)
syslog_up() { kd_node_host test -S /run/syslog; }
for _ in $(seq 50); do syslog_up && break; sleep 0.1; done
check "the node has a syslog socket (/run/syslog, as journald's /dev/log on a real node)" syslog_up

kd_node_host_fp "$N" >"$T/host.pristine"

LABEL=katacontainers.io/kata-runtime
label() { K get node "$KD_NODE_NAME" -o jsonpath="{.metadata.labels.katacontainers\.io/kata-runtime}"; }
handlers() { K get node "$KD_NODE_NAME" -o jsonpath='{range .status.runtimeHandlers[*]}{.name}{" "}{end}'; }
label_is() { [ "$(label)" = "$1" ]; }
has_handlers() { local h; h=$(handlers); for x in "$@"; do [[ " $h " == *" $x "* ]] || return 1; done; }
no_runtimeclass() { ! K get runtimeclass "$1" >/dev/null 2>&1; }
ctd_up() { kd_node_ctr version >/dev/null 2>&1; }
wait_until() { # SECONDS DESC CMD... (polls every 0.5 s)
	local t=$1 d=$2 t0=$SECONDS
	shift 2
	while [ $((SECONDS - t0)) -lt "$t" ]; do
		"$@" >/dev/null 2>&1 && { ok "$d ($((SECONDS - t0))s)"; return 0; }
		sleep 0.5
	done
	not_ok "$d: not within ${t}s"
	return 1
}
dump_agent() {
	local p
	p=$(K -n kube-system get pods -l name=kata-deploy -o jsonpath='{.items[0].metadata.name}' 2>/dev/null)
	echo "# --- agent $p"
	[ -n "$p" ] && K -n kube-system logs "$p" --tail=40 2>&1 | sed 's/^/#   /'
	K get events -A --sort-by=.lastTimestamp 2>/dev/null | tail -15 | sed 's/^/#   /'
}

# === kubectl apply -f manifests/ with the real payload ========================================
say "kubectl apply -f manifests/ (agent image with the real payload)"
RESTART_CMD='command:/host/opt/kd-node/bin/node-restart /host/opt/kd-node/run'
mkdir -p "$T/manifests"
for f in manifests/*.yaml; do
	python3 tests/tools/node-override.py --image kd.test/kata-deploy:kata \
		--env "RUNTIME_RESTART=$RESTART_CMD" --env HOST_CHECK=false <"$f" >"$T/manifests/$(basename "$f")"
done
t_apply=$(date +%s.%N)
K apply -f "$T/manifests/" >"$T/apply.log" 2>&1 || { cat "$T/apply.log"; not_ok "kubectl apply"; }
labelled=0
for _ in $(seq 1 1200); do # 0.25 s polls, 300 s
	label_is true && { labelled=1; break; }
	sleep 0.25
done
t_label=$(date +%s.%N)
apply_s=$(awk -v a="$t_apply" -v b="$t_label" 'BEGIN {printf "%.1f", b - a}')
if [ $labelled = 1 ]; then
	ok "kubectl apply → node labelled $LABEL=true with the real payload: ${apply_s} s"
	echo "# figure: kubectl apply -f manifests/ → node labelled, real payload: ${apply_s} s"
else
	not_ok "kubectl apply → node labelled $LABEL=true: not within 300 s"
	dump_agent
fi
check "runtimeHandlers list kata-qemu" has_handlers kata-qemu
SHIM=$N/host/opt-kata/bin/containerd-shim-kata-v2
check "the node's host has the real containerd-shim-kata-v2 (an ELF executable, not the demo's script)" \
	sh -c "[ \"\$(head -c 4 '$SHIM' | od -An -c | tr -d ' ')\" = 177ELF ]"
# kata-ctl, the payload's debug tool, only with debug (the manifests' default is without).
check "... and not kata-ctl (debug is off)" test ! -e "$N/host/opt-kata/bin/kata-ctl" -a -e "$SHIM"
# The installed configuration names our QEMU, kernel, initrd and virtiofsd under /opt/kata.
CFG=$N/host/opt-kata/runtimes/qemu/configuration-qemu.toml
cfg_paths_ours() {
	local k p
	for k in path kernel initrd virtio_fs_daemon; do
		p=$(awk -F'"' -v k="$k" '$1 ~ "^"k" *= *$" {print $2; exit}' "$CFG")
		case $p in /opt/kata/*) ;; *) echo "# $k = '$p'"; return 1 ;; esac
		kd_node_host test -e "$p" || { echo "# $k = $p: missing on the node's host"; return 1; }
	done
}
check "the installed configuration's hypervisor, kernel, initrd and virtiofsd are ours (/opt/kata/...), present on the node's host" cfg_paths_ours

# === a pod on kata-qemu: our shim, our configuration, the host reason ==========================
say "a pod with runtimeClassName: kata-qemu"
cat >"$T/pod.yaml" <<'POD'
apiVersion: v1
kind: Pod
metadata: {name: on-kata-qemu, namespace: default}
spec:
  runtimeClassName: kata-qemu
  terminationGracePeriodSeconds: 1
  containers:
  - name: w
    image: kd.test/busybox:1
    imagePullPolicy: Never
    command: ["/bin/sh", "-c", "sleep 3600"]
POD
K apply -f "$T/pod.yaml" >/dev/null
WANT="failed to create shim task: /opt/kata/runtimes/qemu/configuration-qemu.toml: host system doesn't support vsock: stat /dev/vhost-vsock: no such file or directory"
sandbox_event() {
	K get events -n default --field-selector "involvedObject.name=on-kata-qemu,reason=FailedCreatePodSandBox" \
		-o jsonpath='{range .items[*]}{.message}{"\n"}{end}' 2>/dev/null | tr -d '\0' >"$T/events"
	[ -s "$T/events" ]
}
wait_until 120 "the kata-qemu pod's sandbox fails (FailedCreatePodSandBox Event)" sandbox_event ||
	K describe pod on-kata-qemu | tail -10 | sed 's/^/#   /'
echo "# the pod's Event: $(head -1 "$T/events")"
check "... for the host reason only: our installed shim loaded our installed configuration up to the vsock check" \
	grep -qF "$WANT" "$T/events"
check "... every FailedCreatePodSandBox Event says so (nothing else failed, no retry failed otherwise)" \
	sh -c "! grep -vF \"\$1\" '$T/events'" _ "$WANT"
check "... and the shim that said so is ours: it logged to the node's syslog as containerd-kata-shim-v2" \
	grep -q "source=containerd-kata-shim-v2" "$T/node-syslog.log"
check "... and it loaded /opt/kata/runtimes/qemu/configuration-qemu.toml" \
	grep -q 'file=/opt/kata/runtimes/qemu/configuration-qemu.toml.*loaded configuration\|loaded configuration.*file=/opt/kata/runtimes/qemu/configuration-qemu.toml' "$T/node-syslog.log"
check "... and nothing failed before it (no missing path, no config error)" \
	sh -c "! grep -Eiq 'no such file.*(qemu-system|vmlinux|initrd|virtiofsd)|invalid config|syslog delivery' '$T/events' '$T/node-syslog.log'"
grep -h 'level=' "$T/node-syslog.log" | grep -v 'level=debug' | head -5 | cut -c1-300 | sed 's/^/#   syslog: /'
K delete pod on-kata-qemu --wait --timeout=60s >/dev/null 2>&1
pod_gone() { ! K get pod on-kata-qemu >/dev/null 2>&1; }
wait_until 60 "the kata-qemu pod is gone" pod_gone

# === the documented two-step delete: the node's host exactly as before ========================
say "two-step delete"
t0=$SECONDS
K -n kube-system delete -f "$T/manifests/20-daemonset.yaml" --cascade=foreground --wait --timeout=180s \
	>"$T/delete.log" 2>&1 || { cat "$T/delete.log"; not_ok "kubectl delete daemonset"; }
K delete -f "$T/manifests/" --ignore-not-found --wait --timeout=60s >>"$T/delete.log" 2>&1
ok "two-step delete returned ($((SECONDS - t0)) s)"
check "deleted: label gone" label_is ""
check "deleted: RuntimeClass kata-qemu gone" no_runtimeclass kata-qemu
kd_node_host_fp "$N" >"$T/host.after"
check "deleted: the node's host is byte for byte as before the install of the real payload" \
	diff -u "$T/host.pristine" "$T/host.after"
check "deleted: containerd runs" ctd_up

say "node down"
tests/peers/node-down.sh "$N" >"$T/node-down.log" 2>&1 || { cat "$T/node-down.log"; not_ok "node down"; }
check "the node's cgroup root is gone from every controller" kd_node_cgroups_gone "$N"
kd_machine_fp >"$T/machine.after"
check "the machine's /etc/containerd, /opt, /var/lib/kata-deploy, /run/nri, /dev/log, … unchanged" \
	diff -u "$T/machine.before" "$T/machine.after"
say "done"
finish
