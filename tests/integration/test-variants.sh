#!/usr/bin/env bash
# Debug and devkit handler variants, end to end with the real containerd 2.x loader:
# `install --debug --devkit` gives kata-<shim>, kata-<shim>-debug and kata-<shim>-devkit
# handlers, each pointing at its own Kata configuration directory; debug settings live only in
# the -debug directories; the devkit image is appended to the payload's guest extension images;
# the drop-ins merge (Python's tomllib, a second TOML implementation) into the settings we mean.
# Turning debug off removes the variants (files, directories, handlers) and nothing else;
# a kill at any point of that change converges; uninstall restores the root byte for byte.
source "$(dirname "$0")/../lib.sh"
cd "$ROOTDIR"

scripts/peers/containerd2.sh >&2
PEERS=${KD_PEERS_DIR:-$HOME/.cache/kata-deploy-peers}
CTD2=$PEERS/bin/containerd2

# The demo payload plus a devkit guest extension image and its dm-verity parameters; the qemu
# configuration lists one image of its own (re-emitted before devkit's).
cp -a artifacts/demo/tree "$T/tree"
K=$T/tree/opt/kata/share/kata-containers
head -c 8192 /dev/zero >"$K/kata-containers-devkit-extension.img"
printf 'root_hash=%064d,salt=%064d,data_blocks=2,data_block_size=4096,hash_block_size=4096\n' 1 2 \
	>"$K/root_hash_devkit-extension.txt"
cat >>"$T/tree/opt/kata/share/defaults/kata-containers/configuration-qemu.toml" <<'EOF'

[[hypervisor.qemu.guest_extension_images]]
name = "coco"
path = "/opt/kata/share/kata-containers/kata-containers-coco-extension.img"
verity_params = "root_hash=aa"
EOF
printf '#!/bin/sh\necho "qemu args: $*"\n' >"$T/tree/opt/kata/bin/qemu-system-x86_64"
sed 's|paths: \["share/kata-containers/kata-containers-demo.img", "share/kata-containers/kata-containers.img"\]|paths: ["share/kata-containers/kata-containers-demo.img", "share/kata-containers/kata-containers.img", "share/kata-containers/kata-containers-devkit-extension.img", "share/kata-containers/root_hash_devkit-extension.txt"]|' \
	artifacts/demo/payload.yaml >"$T/spec.yaml"
grep -q devkit "$T/spec.yaml" || { not_ok "the payload spec edit did not apply"; finish; }
P=$T/p.tar.zst
"$KD" payload pack "$T/tree" --spec "$T/spec.yaml" -o "$P" >/dev/null
P0=$T/p0.tar.zst # the demo payload, without the devkit image
"$KD" payload pack artifacts/demo/tree --spec artifacts/demo/payload.yaml -o "$P0" >/dev/null

dump() { # dump ROOT > out: containerd 2.x's view of the root's config (imports resolved inside it)
	unshare -m bash -c "mount --bind '$1/etc' /etc && exec '$CTD2' --config /etc/containerd/config.toml config dump"
}
block() { awk -v h="$2" 'index($0, h) && /^ *\[/ {on=1; print; next} on && /^ *\[/ {exit} on {print}' "$1"; }
export -f block

R=$T/root
mkdir -p "$R/etc/containerd"
printf 'version = 3\n\n[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]\n  runtime_type = "io.containerd.runc.v2"\n' \
	>"$R/etc/containerd/config.toml"
snapshot "$R" >"$T/orig.snap"
ORIG=$T/orig-root
cp -a "$R" "$ORIG"
dump "$R" >"$T/dump0" || { not_ok "the starting config does not load"; finish; }
INST=("$KD" install --root "$R" --payload "$P" --runtime-version 2.2.9 --runtime-binary "$CTD2")

# --- refusals first: nothing written
expect_fail "--devkit without --debug is refused" "--devkit needs --debug" "${INST[@]}" --devkit
expect_fail "--devkit with a payload that has no devkit image is refused" \
	"the payload has no share/kata-containers/kata-containers-devkit-extension.img" \
	"$KD" install --root "$R" --payload "$P0" --runtime-version 2.2.9 --debug --devkit
check "refusals wrote nothing" cmp -s "$T/orig.snap" <(snapshot "$R")

# --- install with both variants
"$KD" plan --root "$R" --payload "$P" --runtime-version 2.2.9 --runtime-binary "$CTD2" --debug --devkit \
	>"$T/plan1" 2>&1 || not_ok "plan failed: $(tail -3 "$T/plan1")"
check "plan lists the devkit drop-in" grep -qx '+++ b/opt/kata/runtimes/qemu-devkit/config.d/25-devkit.toml' "$T/plan1"
"${INST[@]}" --debug --devkit >"$T/out1" 2>&1 || { not_ok "install --debug --devkit: $(tail -3 "$T/out1")"; finish; }
snapshot "$R" >"$T/debug.snap"
dump "$R" >"$T/dump1" 2>"$T/dump1.err" || not_ok "containerd 2.x refuses the config: $(head -3 "$T/dump1.err")"
for shim in qemu clh; do
	for v in "" -debug -devkit; do
		h=kata-$shim$v
		block "$T/dump1" "runtimes.$h]" | grep -q "runtime_type = 'io.containerd.$h.v2'" ||
			not_ok "dump: $h runtime_type"
		block "$T/dump1" "runtimes.$h.options]" |
			grep -q "ConfigPath = '/opt/kata/runtimes/$shim$v/configuration-$shim.toml'" ||
			not_ok "dump: $h ConfigPath"
		[ -f "$R/opt/kata/runtimes/$shim$v/configuration-$shim.toml" ] || not_ok "no configuration for $h"
	done
done
ok "containerd 2.x dump: 6 handlers (qemu, clh x plain, -debug, -devkit), each with its own ConfigPath"
check "containerd's own debug logging is on" bash -c "block '$T/dump1' '[debug]' | grep -q \"level = 'debug'\""
check "no debug drop-in for the plain handlers" bash -c "! ls '$R'/opt/kata/runtimes/{qemu,clh}/config.d/20-debug.toml 2>/dev/null"
check "debug drop-in for the debug handlers" test -f "$R/opt/kata/runtimes/qemu-debug/config.d/20-debug.toml" -a \
	-f "$R/opt/kata/runtimes/clh-debug/config.d/20-debug.toml"

# Kata merges config.d/ in name order on top of the copy: do the same with a second TOML
# implementation and look at the settings that result.
merged() { # merged DIR SHIM EXPR
	python3 - "$@" <<'EOF'
import sys, tomllib, pathlib
d, shim, expr = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
def merge(a, b):
    for k, v in b.items():
        a[k] = merge(a[k], v) if isinstance(v, dict) and isinstance(a.get(k), dict) else v
    return a
cfg = tomllib.loads((d / f"configuration-{shim}.toml").read_text())
for f in sorted((d / "config.d").glob("*.toml")) if (d / "config.d").is_dir() else []:
    cfg = merge(cfg, tomllib.loads(f.read_text()))
print(eval(expr, {"c": cfg}))
EOF
}
export -f merged
RT=$R/opt/kata/runtimes
check "merged kata-qemu-debug: runtime, hypervisor and agent debug, console" \
	test "$(merged "$RT/qemu-debug" qemu '[c["runtime"]["enable_debug"], c["hypervisor"]["qemu"]["enable_debug"], c["agent"]["kata"]["enable_debug"], c["agent"]["kata"]["debug_console_enabled"]]')" = "[True, True, True, True]"
check "merged kata-qemu-debug: guest debug logging on the kernel command line" \
	bash -c "merged '$RT/qemu-debug' qemu 'c[\"hypervisor\"][\"qemu\"][\"kernel_params\"]' | grep -q 'agent.log=debug initcall_debug'"
check "merged kata-qemu: no debug" test "$(merged "$RT/qemu" qemu 'c.get("runtime", {}).get("enable_debug", False)')" = False
check "merged kata-qemu-devkit: the payload's image, then devkit's with its dm-verity parameters" \
	test "$(merged "$RT/qemu-devkit" qemu '[(i["name"], i["path"], i.get("verity_params", "")[:12]) for i in c["hypervisor"]["qemu"]["guest_extension_images"]]')" = \
	"[('coco', '/opt/kata/share/kata-containers/kata-containers-coco-extension.img', 'root_hash=aa'), ('devkit', '/opt/kata/share/kata-containers/kata-containers-devkit-extension.img', 'root_hash=00')]"
check "merged kata-qemu-devkit: debug console" test "$(merged "$RT/qemu-devkit" qemu 'c["agent"]["kata"]["debug_console_enabled"]')" = True

# --- debug off: the variants go, nothing else changes
"$KD" plan --root "$R" --payload "$P" --runtime-version 2.2.9 --runtime-binary "$CTD2" >"$T/plan2" 2>&1 || true
check "plan (debug off) removes the debug drop-in" grep -qx -- '--- a/opt/kata/runtimes/qemu-debug/config.d/20-debug.toml' "$T/plan2"
"${INST[@]}" >"$T/out2" 2>&1 || not_ok "install without --debug: $(tail -3 "$T/out2")"
check "debug off: the variant directories are gone" bash -c "! ls -d '$RT'/*-debug '$RT'/*-devkit 2>/dev/null"
dump "$R" >"$T/dump2"
check "debug off: no variant handler in containerd's dump" bash -c "! grep -Eq 'runtimes.kata-[a-z]+-(debug|devkit)' '$T/dump2'"
check "debug off: kata-qemu still there" grep -q 'runtimes.kata-qemu]' "$T/dump2"
"${INST[@]}" --debug --devkit >/dev/null 2>&1 || not_ok "install --debug --devkit again"
diff <(grep -v state.json "$T/debug.snap") <(snapshot "$R" | grep -v state.json) >"$T/again.diff" && ok "debug on again: the same tree as the first debug install" || { not_ok "debug on again differs:"; head -20 "$T/again.diff"; }
"$KD" uninstall --root "$R" >/dev/null 2>&1 || not_ok "uninstall failed"
check "uninstall restored every file byte for byte" cmp -s "$T/orig.snap" <(snapshot "$R")
dump "$R" >"$T/dump3"
check "the dump after uninstall equals the original dump" cmp -s "$T/dump0" "$T/dump3"

# --- kill at every fault point of "debug off" (a config-only transaction): recover leaves the
# root as before or as after; a rerun converges; uninstall restores the root.
state_snap() { snapshot "$1" | grep -v ' ./var/lib/kata-deploy/state.json '; }
fresh() { rm -rf "$R"; cp -a "$ORIG" "$R"; }
fresh; "${INST[@]}" --debug --devkit >/dev/null 2>&1; state_snap "$R" >"$T/before.snap"
"${INST[@]}" >/dev/null 2>&1; state_snap "$R" >"$T/after.snap"
n=1 kills=0 bad=0
while :; do
	fresh; "${INST[@]}" --debug --devkit >/dev/null 2>&1
	rc=0; { KD_FAULT_AT=$n "${INST[@]}" >/dev/null 2>&1; } 2>/dev/null || rc=$?
	[ "$rc" -eq 137 ] || { [ "$rc" -eq 0 ] || { not_ok "debug off with fault point $n: rc=$rc"; bad=1; }; break; }
	kills=$((kills + 1))
	"$KD" recover --root "$R" >/dev/null 2>&1 || { not_ok "recover after kill $n"; bad=1; }
	if ! cmp -s <(state_snap "$R") "$T/after.snap"; then
		if cmp -s <(state_snap "$R") "$T/before.snap"; then
			"${INST[@]}" >/dev/null 2>&1
			cmp -s <(state_snap "$R") "$T/after.snap" || { not_ok "kill $n: rerun did not converge"; bad=1; }
		else
			not_ok "kill $n: half-done root:"; diff <(state_snap "$R") "$T/after.snap" | head; bad=1
		fi
	fi
	"$KD" uninstall --root "$R" >/dev/null 2>&1
	cmp -s <(snapshot "$R") <(snapshot "$ORIG") || { not_ok "kill $n: uninstall left a different root"; bad=1; }
	n=$((n + 1)); [ $n -lt 100 ] || break
done
if [ $kills -ge 3 ] && [ $bad = 0 ]; then
	ok "debug off killed at each of $kills points: recover gave before or after, reruns converged, uninstall restored the root"
elif [ $bad = 0 ]; then
	not_ok "only $kills fault points reached"
fi

# --- custom runtimes and user drop-ins, from a directory shaped like a mounted ConfigMap
# (every file a link into ..data/).
CC=$T/custom-configs
mkdir -p "$CC/..2026_11_23/"
ln -s ..2026_11_23 "$CC/..data"
printf '# handler:baseShim:snapshotter:pullType\nkata-mine:qemu:native:\n' >"$CC/..data/custom-runtimes.list"
printf '[hypervisor.qemu]\ndefault_vcpus = 2\n' >"$CC/..data/dropin-qemu.toml"
printf '[hypervisor.qemu]\ndefault_memory = 4096\n' >"$CC/..data/dropin-kata-mine.toml"
for f in custom-runtimes.list dropin-qemu.toml dropin-kata-mine.toml; do ln -s "..data/$f" "$CC/$f"; done
fresh
"${INST[@]}" --custom-configs "$CC" --custom-runtimes >"$T/out-c" 2>&1 || not_ok "install --custom-runtimes: $(tail -3 "$T/out-c")"
dump "$R" >"$T/dump-c" 2>"$T/dump-c.err" || not_ok "containerd 2.x refuses the custom runtime config: $(head -3 "$T/dump-c.err")"
check "custom runtime: kata-mine in containerd's dump with its runtime_type" bash -c "block '$T/dump-c' 'runtimes.kata-mine]' | grep -q \"runtime_type = 'io.containerd.kata-mine.v2'\""
check "custom runtime: kata-mine's ConfigPath in runtimes/custom/" bash -c "block '$T/dump-c' 'runtimes.kata-mine.options]' | grep -q \"ConfigPath = '/opt/kata/runtimes/custom/kata-mine/configuration-qemu.toml'\""
check "custom runtime: kata-mine's snapshotter" bash -c "block '$T/dump-c' 'runtimes.kata-mine]' | grep -q \"snapshotter = 'native'\""
check "custom runtime: merged kata-mine has its drop-in, not qemu's" \
	test "$(merged "$RT/custom/kata-mine" qemu '[c["hypervisor"]["qemu"].get("default_memory"), c["hypervisor"]["qemu"].get("default_vcpus")]')" = "[4096, 1]"
check "user drop-in: merged kata-qemu has default_vcpus = 2" \
	test "$(merged "$RT/qemu" qemu 'c["hypervisor"]["qemu"].get("default_vcpus")')" = 2
printf 'kata-mine:qemu:native:\nkata-Bad:qemu\n' >"$CC/..data/custom-runtimes.list"
snapshot "$R" >"$T/c.snap"
expect_fail "a bad list line is refused with file:line" "custom-runtimes.list:2: handler 'kata-Bad'" \
	"${INST[@]}" --custom-configs "$CC" --custom-runtimes
check "the refused list wrote nothing" cmp -s "$T/c.snap" <(snapshot "$R")
"${INST[@]}" --custom-configs "$CC" >/dev/null 2>&1 || not_ok "install without --custom-runtimes"
check "custom runtimes off: runtimes/custom/ is gone" test ! -e "$RT/custom"
check "custom runtimes off: the user drop-in of qemu stays" test -f "$RT/qemu/config.d/50-user-overrides.toml"
"$KD" uninstall --root "$R" >/dev/null 2>&1 || not_ok "uninstall (custom)"
check "custom: uninstall restored every file byte for byte" cmp -s "$T/orig.snap" <(snapshot "$R")

# --- another installation prefix: QEMU is started through a wrapper that names its firmware
# directory; every /opt/kata path of the hypervisor table moves (valid_hypervisor_paths too).
fresh
"${INST[@]}" --prefix /srv/kata >"$T/out-p" 2>&1 || not_ok "install --prefix /srv/kata: $(tail -3 "$T/out-p")"
W=/srv/kata/runtimes/bin/qemu-system-x86_64-installation-prefix
check "prefix: the wrapper is executable" test -x "$R$W"
out=$(unshare -m bash -c "mount --bind '$R/srv' /srv && exec $W -version" 2>&1 || true)
check "prefix: the wrapper runs the payload's QEMU with -L <prefix>/share/kata-qemu/qemu/ (got: $out)" \
	test "$out" = "qemu args: -L /srv/kata/share/kata-qemu/qemu/ -version"
check "prefix: merged kata-qemu uses the wrapper, which valid_hypervisor_paths admits" \
	test "$(merged "$R/srv/kata/runtimes/qemu" qemu '[c["hypervisor"]["qemu"]["path"] in c["hypervisor"]["qemu"].get("valid_hypervisor_paths", [c["hypervisor"]["qemu"]["path"]]), c["hypervisor"]["qemu"]["path"]]')" = "[True, '$W']"
check "prefix: no /opt/kata path left in the merged hypervisor table" \
	bash -c "! merged '$R/srv/kata/runtimes/qemu' qemu 'c[\"hypervisor\"][\"qemu\"]' | grep -q /opt/kata"
dump "$R" >"$T/dump-p" 2>/dev/null
check "prefix: containerd's dump points kata-qemu at /srv/kata" bash -c "block '$T/dump-p' 'runtimes.kata-qemu.options]' | grep -q \"ConfigPath = '/srv/kata/runtimes/qemu/configuration-qemu.toml'\""
"$KD" uninstall --root "$R" >/dev/null 2>&1 || not_ok "uninstall (prefix)"
check "prefix: uninstall restored every file byte for byte" cmp -s "$T/orig.snap" <(snapshot "$R")
finish
