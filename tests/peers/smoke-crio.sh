#!/usr/bin/env bash
# Smoke test for CRI-O's real config loader (scripts/peers/crio.sh):
# `crio --config F --config-dir D config` prints the effective config, including a runtime
# handler added by a crio.conf.d drop-in, and a broken drop-in makes crio fail.
set -euo pipefail
peers=${KD_PEERS_DIR:-$HOME/.cache/kata-deploy-peers}
CRIO=${KD_CRIO:-$peers/bin/crio}
[ -x "$CRIO" ] || { echo "smoke-crio: $CRIO missing (scripts/peers/crio.sh)" >&2; exit 1; }

W=$(mktemp -d /tmp/kd-smoke-crio.XXXXXX)
cleanup() { [ "${KD_KEEP:-0}" = 1 ] || rm -rf "$W"; }
trap cleanup EXIT
n=0 fails=0
ok()  { n=$((n + 1)); echo "ok $n - $*"; }
bad() { n=$((n + 1)); fails=$((fails + 1)); echo "not ok $n - $*"; }
has() { if grep -Eq -- "$3" "$2"; then ok "$1"; else bad "$1 (no /$3/ in $2)"; grep -n 'runtimes\|^\[' "$2" | head -40 | sed 's/^/#   /'; fi; }
hasnt() { if grep -Eq -- "$3" "$2"; then bad "$1 (/$3/ found in $2)"; else ok "$1"; fi; }

ok "$("$CRIO" --version 2>/dev/null | tr -s ' \n' ' ' | head -c 80)"
mkdir -p "$W/crio.conf.d" "$W/root" "$W/run"
cat > "$W/crio.conf" <<T
[crio]
root = "$W/root"
runroot = "$W/run"
version_file = "$W/run/version"
version_file_persist = "$W/root/version"
clean_shutdown_file = "$W/root/clean.shutdown"
[crio.api]
listen = "$W/crio.sock"
[crio.runtime]
default_runtime = "runc"
cgroup_manager = "cgroupfs"
conmon_cgroup = "pod"
[crio.runtime.runtimes.runc]
runtime_path = "/usr/bin/runc"
runtime_type = "oci"
runtime_root = "$W/run/runc"
[crio.image]
pause_image = "registry.example/pause:3.10-custom"
[crio.network]
network_dir = "$W/cni"
plugin_dirs = ["$W/cni-bin"]
T
cat > "$W/crio.conf.d/99-kata-deploy.conf" <<'T'
[crio.runtime.runtimes.kata-qemu]
runtime_path = "/opt/kata/bin/containerd-shim-kata-v2"
runtime_type = "vm"
runtime_root = "/run/vc"
runtime_config_path = "/opt/kata/share/defaults/kata-containers/configuration-qemu.toml"
privileged_without_host_devices = true
allowed_annotations = ["io.katacontainers.*"]
T
crio_cfg() { "$CRIO" --config "$1" --config-dir "$2" config; }

if crio_cfg "$W/crio.conf" "$W/crio.conf.d" > "$W/eff.toml" 2> "$W/eff.err"; then ok "crio config (main + drop-in) rc=0"; else bad "crio config rc!=0"; sed 's/^/#   /' "$W/eff.err" | tail -20; fi
has "effective: kata-qemu handler from the drop-in" "$W/eff.toml" '^\[crio\.runtime\.runtimes\.kata-qemu\]'
has "effective: kata-qemu runtime_type = vm" "$W/eff.toml" 'runtime_type = "vm"'
has "effective: kata-qemu runtime_config_path" "$W/eff.toml" 'runtime_config_path = "/opt/kata/share/defaults/kata-containers/configuration-qemu.toml"'
has "effective: runc handler from the main file kept" "$W/eff.toml" '^\[crio\.runtime\.runtimes\.runc\]'
has "effective: pause_image from the main file kept" "$W/eff.toml" 'pause_image = "registry.example/pause:3.10-custom"'
has "effective: cgroup_manager cgroupfs kept" "$W/eff.toml" 'cgroup_manager = "cgroupfs"'

# Drop-ins are applied in lexical order: a later file overrides a scalar of an earlier one.
mkdir -p "$W/d2"; cp "$W/crio.conf.d/99-kata-deploy.conf" "$W/d2/10-kata.conf"
printf '[crio.image]\npause_image = "registry.example/pause:from-dropin"\n' > "$W/d2/20-pause.conf"
if crio_cfg "$W/crio.conf" "$W/d2" > "$W/eff2.toml" 2> "$W/eff2.err"; then ok "crio config with two drop-ins rc=0"; else bad "crio config two drop-ins"; sed 's/^/#   /' "$W/eff2.err" | tail; fi
has "later drop-in overrides pause_image" "$W/eff2.toml" 'pause_image = "registry.example/pause:from-dropin"'
has "earlier drop-in's handler survives" "$W/eff2.toml" '^\[crio\.runtime\.runtimes\.kata-qemu\]'

# Without the drop-in dir the handler is absent.
mkdir -p "$W/empty"
crio_cfg "$W/crio.conf" "$W/empty" > "$W/eff0.toml" 2>/dev/null || true
hasnt "no drop-in: no kata-qemu handler" "$W/eff0.toml" 'runtimes\.kata-qemu\]'

# A syntactically broken drop-in makes crio fail.
mkdir -p "$W/bad"
printf '[crio.runtime.runtimes.kata-qemu\nruntime_path = "/x"\n' > "$W/bad/99-kata-deploy.conf"
if crio_cfg "$W/crio.conf" "$W/bad" > /dev/null 2> "$W/bad.err"; then bad "broken drop-in accepted"; else ok "broken drop-in refused: $(tail -c 160 "$W/bad.err" | tr '\n' ' ')"; fi
# Well-formed drop-ins with invalid values: a wrong TOML type is refused at decode time,
# and default_runtime naming a handler that no table defines is refused by validation.
# (`crio config` validates with onExecution=false: runtime_type/runtime_path of a handler
# are only checked when the daemon starts, so runtime_type = "bogus" passes here.)
mkdir -p "$W/bad2" "$W/bad3"
printf '[crio.runtime.runtimes.kata-qemu]\nruntime_path = "/x"\nprivileged_without_host_devices = "yes"\n' > "$W/bad2/99-kata-deploy.conf"
if crio_cfg "$W/crio.conf" "$W/bad2" > /dev/null 2> "$W/bad2.err"; then bad "string for a bool accepted"; else ok "string for a bool refused: $(tail -c 160 "$W/bad2.err" | tr '\n' ' ')"; fi
printf '[crio.runtime]\ndefault_runtime = "kata-missing"\n' > "$W/bad3/99-kata-deploy.conf"
if crio_cfg "$W/crio.conf" "$W/bad3" > /dev/null 2> "$W/bad3.err"; then bad "default_runtime without a table accepted"; else ok "default_runtime without a table refused: $(tail -c 160 "$W/bad3.err" | tr '\n' ' ')"; fi
echo "1..$n"
echo "smoke-crio: $((n - fails)) passed, $fails failed"
[ "$fails" -eq 0 ]
