#!/usr/bin/env bash
# Smoke test for containerd 2.x (scripts/peers/containerd2.sh): config dump of a v3
# config with a conf.d drop-in shows the merged result (deep merge, unlike 1.6), a v2
# config is migrated to v3 on load, a broken drop-in is refused, and the daemon starts
# on a unix socket in a temp dir, answers `ctr2 version`, and is stopped by PID.
set -euo pipefail
peers=${KD_PEERS_DIR:-$HOME/.cache/kata-deploy-peers}
CTD=${KD_CONTAINERD2:-$peers/bin/containerd2}
CTR=${KD_CTR2:-$peers/bin/ctr2}
[ -x "$CTD" ] || { echo "smoke-containerd2: $CTD missing (scripts/peers/containerd2.sh)" >&2; exit 1; }

W=$(mktemp -d /tmp/kd-smoke-containerd2.XXXXXX)
pid=""
cleanup() {
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid"; sleep 1; kill -KILL "$pid" 2>/dev/null || true; fi
	[ "${KD_KEEP:-0}" = 1 ] || { umount -R "$W/root" 2>/dev/null || true; rm -rf "$W"; }
}
trap cleanup EXIT
n=0 fails=0
ok()  { n=$((n + 1)); echo "ok $n - $*"; }
bad() { n=$((n + 1)); fails=$((fails + 1)); echo "not ok $n - $*"; }
has() { # DESC FILE REGEX
	if grep -Eq -- "$3" "$2"; then ok "$1"; else bad "$1 (no /$3/ in $2)"; sed 's/^/#   /' "$2" | head -60; fi
}

ok "$("$CTD" --version)"
mkdir -p "$W/conf.d" "$W/root" "$W/state"
cat > "$W/config.toml" <<T
version = 3
root = "$W/root"
state = "$W/state"
imports = ["$W/conf.d/*.toml"]
[grpc]
  address = "$W/containerd.sock"
[ttrpc]
  address = "$W/containerd.sock.ttrpc"
[debug]
  address = "$W/debug.sock"
# Everything the daemon would create outside root/state goes to $W too: NRI's socket
# (default /var/run/nri/nri.sock), the opt plugin's dir (/opt/containerd), CNI's conf dir.
[plugins."io.containerd.nri.v1.nri"]
  socket_path = "$W/nri/nri.sock"
  plugin_path = "$W/nri/plugins"
  plugin_config_path = "$W/nri/conf.d"
[plugins."io.containerd.internal.v1.opt"]
  path = "$W/opt"
[plugins."io.containerd.cri.v1.runtime".cni]
  conf_dir = "$W/cni/net.d"
  bin_dirs = ["$W/cni/bin"]
[plugins."io.containerd.cri.v1.images".pinned_images]
  sandbox = "registry.example/pause:3.10-custom"
[plugins."io.containerd.cri.v1.runtime".containerd]
  default_runtime_name = "runc"
[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
  SystemdCgroup = true
T
cat > "$W/conf.d/50-kata-qemu.toml" <<'T'
version = 3
[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.kata-qemu]
  runtime_type = "io.containerd.kata-qemu.v2"
  runtime_path = "/opt/kata/bin/containerd-shim-kata-v2"
  privileged_without_host_devices = true
  pod_annotations = ["io.katacontainers.*"]
[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.kata-qemu.options]
  ConfigPath = "/opt/kata/share/defaults/kata-containers/configuration-qemu.toml"
T
cat > "$W/conf.d/60-kata-clh.toml" <<'T'
version = 3
[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.kata-clh]
  runtime_type = "io.containerd.kata-clh.v2"
T

if "$CTD" --config "$W/config.toml" config dump > "$W/dump.toml" 2> "$W/dump.err"; then ok "config dump (v3 + 2 drop-ins) rc=0"; else bad "config dump rc!=0"; sed 's/^/#   /' "$W/dump.err"; fi
has "dump: version = 3" "$W/dump.toml" '^version = 3$'
has "dump: main file's pinned sandbox image kept" "$W/dump.toml" 'sandbox = .registry.example/pause:3.10-custom.'
has "dump: runc runtime kept" "$W/dump.toml" 'runtimes\.runc\]'
has "dump: runc SystemdCgroup = true kept" "$W/dump.toml" 'SystemdCgroup = true'
has "dump: drop-in 50 kata-qemu merged" "$W/dump.toml" 'runtimes\.kata-qemu\]'
has "dump: kata-qemu ConfigPath merged" "$W/dump.toml" 'ConfigPath = ./opt/kata/share/defaults/kata-containers/configuration-qemu.toml.'
has "dump: drop-in 60 kata-clh merged too" "$W/dump.toml" 'runtimes\.kata-clh\]'
has "dump: our imports glob listed" "$W/dump.toml" "^imports = .*'$W/conf.d/\\*\\.toml'"
# 2.2: `config default` carries imports = ['/etc/containerd/conf.d/*.toml']; the loader only
# resolves imports that a loaded file lists itself (see docs/TEST-PEERS.md).
"$CTD" config default > "$W/default.toml" 2>/dev/null || true
has "config default imports /etc/containerd/conf.d" "$W/default.toml" "^imports = \\['/etc/containerd/conf.d/\\*\\.toml'\\]"

# A version 2 main file is migrated to v3 on load.
mkdir -p "$W/v2/conf.d"
cat > "$W/v2/config.toml" <<T
version = 2
root = "$W/root"
state = "$W/state"
imports = ["$W/v2/conf.d/*.toml"]
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.example/pause:3.9-v2"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  SystemdCgroup = true
T
cat > "$W/v2/conf.d/kata.toml" <<'T'
version = 2
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.kata-qemu]
  runtime_type = "io.containerd.kata-qemu.v2"
T
if "$CTD" --config "$W/v2/config.toml" config dump > "$W/dump2.toml" 2> "$W/dump2.err"; then ok "config dump (v2 main + v2 drop-in) rc=0"; else bad "config dump v2"; sed 's/^/#   /' "$W/dump2.err"; fi
has "v2 dump: migrated to version 3" "$W/dump2.toml" '^version = 3$'
has "v2 dump: sandbox image migrated" "$W/dump2.toml" 'sandbox = .registry.example/pause:3.9-v2.'
has "v2 dump: runc SystemdCgroup kept" "$W/dump2.toml" 'SystemdCgroup = true'
has "v2 dump: kata-qemu from v2 drop-in" "$W/dump2.toml" 'io.containerd.cri.v1.runtime.\.containerd\.runtimes\.kata-qemu\]'

# A broken drop-in is refused.
mkdir -p "$W/bad/conf.d"
sed "s#$W/conf.d#$W/bad/conf.d#" "$W/config.toml" > "$W/bad/config.toml"
printf 'version = 3\n[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.kata-qemu\n  runtime_type = 1\n' > "$W/bad/conf.d/99-broken.toml"
if "$CTD" --config "$W/bad/config.toml" config dump > /dev/null 2> "$W/bad.err"; then bad "broken drop-in accepted"; else ok "broken drop-in refused: $(head -c 150 "$W/bad.err" | tr '\n' ' ')"; fi

# The daemon itself. It must create nothing outside $W: the paths it would use by default and
# that are absent now must still be absent after it stopped.
absent=()
for p in /run/nri /opt/containerd /etc/cni /var/lib/containerd /run/containerd /var/lib/nri; do
	[ -e "$p" ] || absent+=("$p")
done
# containerd 2.x also creates /run/containerd (its shims' socket dir, not configurable): it runs
# in a mount namespace of its own with a tmpfs on /run.
unshare -m --propagation private sh -c 'mount -t tmpfs -o mode=0755 kd-smoke-run /run && exec "$0" "$@"' \
	"$CTD" --config "$W/config.toml" --log-level info > "$W/containerd.log" 2>&1 < /dev/null &
pid=$!
for i in $(seq 1 100); do [ -S "$W/containerd.sock" ] && break; kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
if [ -S "$W/containerd.sock" ]; then ok "daemon up (pid $pid) on $W/containerd.sock"; else bad "daemon did not start"; tail -20 "$W/containerd.log" | sed 's/^/#   /'; fi
if [ -x "$CTR" ]; then
	if "$CTR" --address "$W/containerd.sock" version > "$W/ctr.out" 2>&1; then ok "ctr2 version answers"; else bad "ctr2 version"; sed 's/^/#   /' "$W/ctr.out"; fi
	has "server reports its 2.x version" "$W/ctr.out" 'Server:|Version: +v?2\.'
	if "$CTR" --address "$W/containerd.sock" plugins ls > "$W/plugins.out" 2>&1; then ok "ctr2 plugins ls"; else bad "ctr2 plugins ls"; fi
	has "CRI runtime plugin loaded" "$W/plugins.out" 'io.containerd.cri.v1 +runtime +.* ok'
fi
kill -TERM "$pid"
for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$pid" 2>/dev/null; then bad "daemon still running after SIGTERM"; else ok "daemon stopped by PID"; pid=""; fi
left=""
for p in "${absent[@]}"; do [ -e "$p" ] && left="$left $p"; done
if [ -z "$left" ]; then ok "daemon created nothing outside its temp dir (${absent[*]:-nothing to watch} still absent)"; else bad "daemon left on the machine:$left"; fi
echo "1..$n"
echo "smoke-containerd2: $((n - fails)) passed, $fails failed"
[ "$fails" -eq 0 ]
