#!/usr/bin/env bash
# CRI-O with its own config loader (crio v1.34 built by scripts/peers/crio.sh, cached): install
# writes crio.conf.d/99-kata-deploy, validated during install by `crio --config F --config-dir D
# config`; afterwards the same command on the root's files shows every handler with its options
# and keeps the admin's settings; a second TOML implementation (Python's tomllib) decodes our
# drop-in to exactly what lib/toml decodes; a drop-in set CRI-O refuses aborts the install with
# nothing written; uninstall gives the root back byte for byte and the same effective config.
source "$(dirname "$0")/../lib.sh"
cd "$ROOTDIR"

scripts/peers/crio.sh >&2
PEERS=${KD_PEERS_DIR:-$HOME/.cache/kata-deploy-peers}
CRIO=$PEERS/bin/crio
P=$T/p.tar.zst
"$KD" payload pack artifacts/demo/tree --spec artifacts/demo/payload.yaml -o "$P" >/dev/null

R=$T/root
mkdir -p "$R/etc/crio/crio.conf.d"
# Every path CRI-O might touch points into the test dir.
cat >"$R/etc/crio/crio.conf" <<EOF
[crio]
root = "$T/crio/root"
runroot = "$T/crio/run"
version_file = "$T/crio/run/version"
version_file_persist = "$T/crio/root/version"
clean_shutdown_file = "$T/crio/root/clean.shutdown"
[crio.api]
listen = "$T/crio/crio.sock"
[crio.runtime]
default_runtime = "runc"
cgroup_manager = "cgroupfs"
conmon_cgroup = "pod"
[crio.runtime.runtimes.runc]
runtime_path = "/usr/bin/runc"
runtime_type = "oci"
runtime_root = "$T/crio/run/runc"
[crio.network]
network_dir = "$T/crio/cni"
plugin_dirs = ["$T/crio/cni-bin"]
EOF
printf '[crio.image]\npause_image = "registry.example/pause:3.10-admin"\n' >"$R/etc/crio/crio.conf.d/10-admin.conf"
crio_cfg() { "$CRIO" --config "$1/etc/crio/crio.conf" --config-dir "$1/etc/crio/crio.conf.d" config 2>"$T/crio.err"; }
block() { awk -v h="$2" '$0 == h {on=1; print; next} on && /^ *\[/ {exit} on {print}' "$1"; }

snapshot "$R" >"$T/before"
crio_cfg "$R" >"$T/eff0" || { not_ok "the starting config does not load: $(tail -3 "$T/crio.err")"; finish; }

if "$KD" install --root "$R" --payload "$P" --runtime crio --runtime-binary "$CRIO" >"$T/inst" 2>&1; then
	ok "install with --runtime crio --runtime-binary crio"
else
	not_ok "install failed: $(tail -3 "$T/inst")"
fi
check "install validated with CRI-O's own loader" grep -q "CRI-O's own loader ($CRIO) accepts the new config" "$T/inst"
check "the drop-in is crio.conf.d/99-kata-deploy" test -f "$R/etc/crio/crio.conf.d/99-kata-deploy"
check "the main crio.conf is not edited" cmp -s <(grep " ./etc/crio/crio.conf " "$T/before") <(snapshot "$R" | grep " ./etc/crio/crio.conf ")

if crio_cfg "$R" >"$T/eff1"; then ok "crio config accepts the root's files after install"; else not_ok "crio config after install: $(tail -3 "$T/crio.err")"; fi
for shim in qemu clh; do
	block "$T/eff1" "[crio.runtime.runtimes.kata-$shim]" >"$T/h-$shim"
	check "effective config: kata-$shim handler" test -s "$T/h-$shim"
	check "kata-$shim: runtime_type = vm" grep -q 'runtime_type = "vm"' "$T/h-$shim"
	check "kata-$shim: runtime_path" grep -q 'runtime_path = "/opt/kata/bin/containerd-shim-kata-v2"' "$T/h-$shim"
	check "kata-$shim: runtime_config_path" grep -q "runtime_config_path = \"/opt/kata/runtimes/$shim/configuration-$shim.toml\"" "$T/h-$shim"
	check "kata-$shim: privileged_without_host_devices" grep -q 'privileged_without_host_devices = true' "$T/h-$shim"
	check "kata-$shim: allowed_annotations" grep -qF '"io.katacontainers.*"' "$T/h-$shim"
done
check "runc handler of the main file kept" grep -qx '  \[crio.runtime.runtimes.runc\]\|\[crio.runtime.runtimes.runc\]' "$T/eff1"
check "the admin drop-in's pause_image kept" grep -q 'pause_image = "registry.example/pause:3.10-admin"' "$T/eff1"
check "effective config: storage_option overlay.skip_mount_home=true (upstream's)" grep -qF '"overlay.skip_mount_home=true"' "$T/eff1"
# (our drop-in sets storage_option, as upstream: CRI-O's commented-out default of it is the one
# line that may go)
grep -vxF -f "$T/eff1" "$T/eff0" | grep -vxF '# storage_option = [' >"$T/lost" || true
check "no line of the original effective config lost" test ! -s "$T/lost"

# A second TOML implementation: Python's tomllib decodes the drop-in to what lib/toml decodes.
"$KD_BUILD/tests/toml-decoder" <"$R/etc/crio/crio.conf.d/99-kata-deploy" >"$T/ours.json"
python3 - "$R/etc/crio/crio.conf.d/99-kata-deploy" "$T/ours.json" <<'PY' >"$T/py.out" 2>&1
import datetime, json, sys, tomllib
def tag(v):
    if isinstance(v, dict): return {k: tag(x) for k, x in v.items()}
    if isinstance(v, list): return [tag(x) for x in v]
    if isinstance(v, bool): return {"type": "bool", "value": "true" if v else "false"}
    if isinstance(v, int): return {"type": "integer", "value": str(v)}
    if isinstance(v, float): return {"type": "float", "value": repr(v)}
    if isinstance(v, str): return {"type": "string", "value": v}
    raise SystemExit(f"unexpected type {type(v)} in our drop-in")
with open(sys.argv[1], "rb") as f: py = tag(tomllib.load(f))
with open(sys.argv[2]) as f: ours = json.load(f)
print("equal" if py == ours else f"differ:\npython: {py}\nours:   {ours}")
assert py["crio"]["runtime"]["runtimes"]["kata-qemu"]["runtime_type"]["value"] == "vm"
PY
check "tomllib (Python $(python3 -c 'import sys; print(sys.version.split()[0])')) and lib/toml decode the drop-in identically" grep -qx equal "$T/py.out"

check "reinstall changes nothing" bash -c "'$KD' install --root '$R' --payload '$P' --runtime crio --runtime-binary '$CRIO' 2>&1 | grep -q 'nothing to do'"
"$KD" uninstall --root "$R" >/dev/null 2>&1 || not_ok "uninstall failed"
check "uninstall: the root is byte-identical to the start" diff -q "$T/before" <(snapshot "$R")
crio_cfg "$R" >"$T/eff2" || true
check "uninstall: crio's effective config equals the original" cmp -s "$T/eff0" "$T/eff2"

# PULL_TYPE_MAPPING: guest-pull hands image pulls to the runtime (runtime_pull_image), and CRI-O's
# own loader accepts it; an unknown pull type is refused before anything is written.
"$KD" install --root "$R" --payload "$P" --runtime crio --runtime-binary "$CRIO" \
	--pull-type-mapping qemu:guest-pull >"$T/gp" 2>&1 || not_ok "guest-pull install failed: $(tail -3 "$T/gp")"
check "guest-pull: runtime_pull_image = true in the kata-qemu handler" \
	grep -qx "runtime_pull_image = true" "$R/etc/crio/crio.conf.d/99-kata-deploy"
# (crio's `config` template does not print runtime_pull_image, so acceptance is what we can see.)
check "guest-pull: CRI-O's own loader accepts the drop-in" crio_cfg "$R"
"$KD" uninstall --root "$R" >/dev/null 2>&1 || not_ok "uninstall failed"
check "guest-pull: uninstall restores the root byte for byte" diff -q "$T/before" <(snapshot "$R")
expect_fail "an unknown pull type is refused" "pull type 'lazy' of shim 'qemu' is not guest-pull or default" \
	"$KD" install --root "$R" --payload "$P" --runtime crio --runtime-binary "$CRIO" --pull-type-mapping qemu:lazy
check "refused pull type: nothing written" diff -q "$T/before" <(snapshot "$R")

# A set of drop-ins CRI-O refuses (valid TOML with a wrong type: only CRI-O's loader can tell):
# the install stops before writing anything.
printf '[crio.runtime]\nlog_level = 5\n' >"$R/etc/crio/crio.conf.d/50-admin-bad.conf"
snapshot "$R" >"$T/bad.before"
expect_fail "CRI-O refusing the resulting config aborts the install" "CRI-O's own loader ($CRIO config) refuses the new config" \
	"$KD" install --root "$R" --payload "$P" --runtime crio --runtime-binary "$CRIO"
check "refused: nothing written" diff -q "$T/bad.before" <(snapshot "$R")
finish
