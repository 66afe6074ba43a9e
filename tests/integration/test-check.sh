#!/usr/bin/env bash
# `kata-deploy check` (through build/tests/kd-check) against fake host roots, Debian's real QEMU
# under TCG, a hanging fake QEMU, and the real host. Exit codes: 0 all shims ok, 1 some not, 2 usage.
set -euo pipefail
cd "$(dirname "$0")/../.."
SRC=$PWD
B=${KD_BUILD:-$SRC/build}
CHECK=$B/tests/kd-check
QEMU=/usr/bin/qemu-system-x86_64
W=$(mktemp -d /tmp/kd-check-it.XXXXXX)
trap 'rm -rf "$W"' EXIT
fails=0
REL=6.1.0-fake

ok() { echo "ok - $*"; }
bad() { echo "not ok - $*"; fails=$((fails + 1)); }
# expect RC DESC -- command...; output in $W/out
expect() {
	local want=$1 desc=$2 rc=0
	shift 3
	"$@" >"$W/out" 2>"$W/err" || rc=$?
	if [ "$rc" -eq "$want" ]; then ok "$desc (exit $rc)"; else
		bad "$desc: exit $rc, expected $want"
		sed 's/^/#   /' "$W/out" "$W/err" | head -40
	fi
}
has() { # has FILE TEXT DESC
	if grep -qF -- "$2" "$1"; then ok "$3"; else
		bad "$3: '$2' not in output"
		sed 's/^/#   /' "$1" | head -40
	fi
}

mkhost() { # mkhost DIR VENDOR FLAGS
	local r=$1
	"$SRC/tests/tools/mkfakeko.sh" tree "$r" "$REL" >/dev/null 2>&1
	mkdir -p "$r/proc/sys/kernel" "$r/dev" "$r/sys/fs/cgroup" "$r/etc/containerd"
	if [ -n "$2" ]; then
		printf 'processor\t: 0\nvendor_id\t: %s\nflags\t\t: %s\n' "$2" "$3" >"$r/proc/cpuinfo"
	fi
	echo "$REL" >"$r/proc/sys/kernel/osrelease"
	: >"$r/dev/kvm"
	echo "cpu memory" >"$r/sys/fs/cgroup/cgroup.controllers"
	printf 'version = 2\n' >"$r/etc/containerd/config.toml"
}
FLAGS="fpu lm sse4_1 vmx"
RT=--runtime-version=containerd://1.7.2

# 1. A good Intel host: vmx, modules available (not loaded), no payload yet.
mkhost "$W/good" GenuineIntel "$FLAGS"
expect 0 "good host, all default shims" -- "$CHECK" --root "$W/good" $RT
has "$W/out" "module.vhost_vsock" "table lists module.vhost_vsock"
has "$W/out" "fix: modprobe vhost_vsock (or kata-deploy check --fix)" "fix text for an available module"
has "$W/out" "kata-qemu                        can run" "verdict for kata-qemu"
has "$W/out" "kata-dragonball                  can run" "verdict for kata-dragonball"

# 2. --fix on a fake root only plans (KMOD_PROBE_DRY_RUN); nothing is loaded.
expect 0 "--fix on a fake root" -- "$CHECK" --root "$W/good" $RT --fix --shims qemu
has "$W/out" "--fix would run (dry run):" "--fix is a dry run for a root other than /"
has "$W/out" "insmod $W/good/lib/modules/$REL/kernel/drivers/vhost/vhost_vsock.ko" "planned insmod"
expect 0 "--fix --output json" -- "$CHECK" --root "$W/good" $RT --fix --shims qemu --output json
python3 - "$W/out" <<'EOF' && ok "json: fix actions, dry run, verdicts" || bad "json structure"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["ok"] is True and d["fix"]["dry_run"] is True, d
assert any(a.endswith("/vhost_vsock.ko") for a in d["fix"]["actions"]), d["fix"]
assert d["shims"] == [{"name": "qemu", "runtime_class": "kata-qemu", "ok": True, "failed": []}], d["shims"]
ids = {c["id"]: c for c in d["checks"]}
assert ids["cpu.virt"]["status"] == "pass" and ids["kvm.create_vm"]["status"] == "skip"
EOF

# 3. No /proc/cpuinfo under the root: a clear failure, not a crash.
mkhost "$W/nocpu" "" ""
expect 1 "no /proc/cpuinfo" -- "$CHECK" --root "$W/nocpu" $RT --shims qemu
has "$W/out" "cannot read $W/nocpu/proc/cpuinfo" "names the missing cpuinfo"
has "$W/out" "CANNOT RUN: cpu.info, cpu.virt, cpu.lm" "verdict names the cpu checks"

# 4. Broken module indexes.
mkhost "$W/broken" GenuineIntel "$FLAGS"
head -c 100 /dev/urandom >"$W/broken/lib/modules/$REL/modules.alias.bin"
expect 1 "garbage modules.alias.bin" -- "$CHECK" --root "$W/broken" $RT --shims fc
has "$W/out" "modules.alias.bin is corrupt: bad magic" "corrupt index named"
has "$W/out" "fix: rebuild the module indexes: depmod $REL" "depmod fix"
rm "$W/broken/lib/modules/$REL"/*.bin
expect 1 "text-only modules tree (no .bin)" -- "$CHECK" --root "$W/broken" $RT --shims fc
has "$W/out" "modules.dep.bin (run depmod): No such file or directory" "missing index named"
mkhost "$W/gone" GenuineIntel "$FLAGS"
# No tree: a module that is not loaded but has its device node is loaded on first use (a
# warning, not refused); without the node it fails. A loaded one is still seen in sysfs.
mkdir -p "$W/gone/sys/module/kvm_intel" && echo live >"$W/gone/sys/module/kvm_intel/initstate"
: >"$W/gone/dev/vhost-vsock"; : >"$W/gone/dev/vhost-net"
expect 0 "--modules-dir pointing nowhere, device nodes present: not refused" -- "$CHECK" --root "$W/gone" $RT --shims fc --modules-dir /nonexistent/mods
has "$W/out" "no modules tree at /nonexistent/mods" "missing modules dir named"
grep -E '^module.vhost_vsock +warn +not loaded; /dev/vhost-vsock exists: loaded on first use' "$W/out" >/dev/null && ok "no tree: vhost_vsock loaded on first use" || bad "no tree: vhost_vsock loaded on first use"
grep -E '^module.kvm_intel +pass +loaded$' "$W/out" >/dev/null && ok "no tree: kvm_intel loaded per sysfs" || bad "no tree: kvm_intel loaded per sysfs"
rm "$W/gone/dev/vhost-vsock"
expect 1 "--modules-dir pointing nowhere, no /dev/vhost-vsock" -- "$CHECK" --root "$W/gone" $RT --shims fc --modules-dir /nonexistent/mods
has "$W/out" "CANNOT RUN: module.vhost_vsock" "no tree, no device node: vhost_vsock refused"
# A tree with the module not loaded: loaded on first use, not refused.
expect 0 "available modules: not refused" -- "$CHECK" --root "$W/gone" $RT --shims fc
grep -E '^module.vhost_vsock +warn +not loaded, loadable: loaded on first use \(' "$W/out" >/dev/null && ok "available: loaded on first use" || bad "available: loaded on first use"

# 5. Loaded per the fake sysfs, built in per modules.builtin.
mkdir -p "$W/good/sys/module/vhost_vsock" && echo live >"$W/good/sys/module/vhost_vsock/initstate"
expect 0 "loaded per fake sysfs" -- "$CHECK" --root "$W/good" $RT --shims qemu
grep -E '^module.vhost_vsock +pass +loaded$' "$W/out" >/dev/null && ok "vhost_vsock loaded" || bad "vhost_vsock loaded"
BUILTIN="kvm irqbypass vhost vhost_vsock vsock" mkhost "$W/builtin" AuthenticAMD "fpu lm sse4_1 svm"
expect 0 "built-in modules, AMD" -- "$CHECK" --root "$W/builtin" $RT --shims clh
grep -E '^module.kvm +pass +built into the kernel$' "$W/out" >/dev/null && ok "kvm built in" || bad "kvm built in"
has "$W/out" "module.kvm_amd" "AMD host checks kvm_amd"

# 6. CRI disabled in containerd's config (Docker's containerd.io default).
mkhost "$W/cri" GenuineIntel "$FLAGS"
printf 'disabled_plugins = ["cri"]\n' >"$W/cri/etc/containerd/config.toml"
expect 1 "CRI plugin disabled" -- "$CHECK" --root "$W/cri" $RT --shims qemu
has "$W/out" 'fix: remove "cri" from disabled_plugins' "fix for disabled CRI"

# 7. Payload with Debian's real QEMU (TCG) and a QEMU that hangs.
mkhost "$W/payload" GenuineIntel "$FLAGS"
mkdir -p "$W/payload/opt/kata/bin"
ln -s "$QEMU" "$W/payload/opt/kata/bin/qemu-system-x86_64"
printf '#!/bin/sh\n' >"$W/payload/opt/kata/bin/containerd-shim-kata-v2"
chmod 755 "$W/payload/opt/kata/bin/containerd-shim-kata-v2"
expect 0 "payload QEMU probed over QMP" -- "$CHECK" --root "$W/payload" $RT --shims qemu
grep -E '^qemu.qmp +pass +QEMU 7\.' "$W/out" >/dev/null && ok "QEMU version from QMP" || bad "QEMU version from QMP"
grep -E '^qemu.device.vhost-vsock-pci +pass' "$W/out" >/dev/null && ok "vhost-vsock-pci found" || bad "vhost-vsock-pci"
expect 1 "payload without clh binary" -- "$CHECK" --root "$W/payload" $RT --shims qemu,clh
has "$W/out" "kata-clh                         CANNOT RUN: payload.cloud-hypervisor" "clh verdict"
# (each records its PID: "left running" means ours, not another test's fake QEMU)
for m in hang garbage; do
	printf '#!/bin/sh\necho $$ >>%s/fake.pids\nexec python3 %s/tests/tools/fakeqmp.py %s "$@"\n' \
		"$W" "$SRC" "$m" >"$W/$m"
done
chmod 755 "$W/hang" "$W/garbage"
start=$(date +%s)
expect 1 "hanging QEMU" -- "$CHECK" --root "$W/payload" $RT --shims qemu --qemu "$W/hang" --qmp-timeout 1000
[ $(($(date +%s) - start)) -le 5 ] && ok "hang bounded by --qmp-timeout" || bad "hang took too long"
has "$W/out" "QEMU did not answer the QMP greeting within 1000 ms (killed)" "time-out message"
expect 1 "QEMU printing garbage" -- "$CHECK" --root "$W/payload" $RT --shims qemu --qemu "$W/garbage"
has "$W/out" "QEMU sent something that is not QMP" "garbage message"
fake_left() { # a fake QEMU of this test still runs (a PID of fake.pids running fakeqmp.py)
	local p
	for p in $(cat "$W/fake.pids"); do grep -qs fakeqmp.py "/proc/$p/cmdline" && return 0; done
	return 1
}
[ "$(wc -l <"$W/fake.pids")" = 2 ] && ! fake_left && ok "no fake QEMU left running" || bad "fake QEMU left running"

# 8. TEE shims on a host without the flags.
expect 1 "qemu-snp on Intel" -- "$CHECK" --root "$W/good" $RT --shims qemu,qemu-snp
has "$W/out" "kata-qemu-snp                    CANNOT RUN: cpu.sev_snp" "snp verdict"

# 9. Usage errors exit 2.
expect 2 "unknown shim" -- "$CHECK" --shims qemu,bogus
has "$W/err" "unknown shim 'bogus'" "unknown shim named"
expect 2 "bad --output" -- "$CHECK" --output yaml
expect 2 "unknown option" -- "$CHECK" --frobnicate
expect 2 "missing root" -- "$CHECK" --root "$W/does-not-exist" $RT
expect 0 "--help" -- "$CHECK" --help
has "$W/out" "Exit status: 0 every requested shim can run" "help documents exit codes"

# 9b. Runtime detection (kata-deploy plan): an empty /etc/crio, what a DaemonSet's
#     DirectoryOrCreate hostPath leaves on a containerd node, is not CRI-O (and the reverse).
KD=$B/kata-deploy
"$KD" payload pack artifacts/demo/tree --spec artifacts/demo/payload.yaml -o "$W/p.tar.zst" >/dev/null
R=$W/flavour
mkdir -p "$R/etc/containerd" "$R/etc/crio"
printf 'version = 2\n' >"$R/etc/containerd/config.toml"
expect 0 "containerd + empty /etc/crio: planned" -- "$KD" plan --root "$R" --payload "$W/p.tar.zst" --runtime-version 1.6
has "$W/out" "runtime: containerd (1.6.0)" "containerd + empty /etc/crio: containerd detected"
mkdir -p "$R/etc/crio/crio.conf.d" && printf '[crio.runtime]\n' >"$R/etc/crio/crio.conf.d/10-crio.conf"
expect 1 "containerd + a used /etc/crio: refused" -- "$KD" plan --root "$R" --payload "$W/p.tar.zst" --runtime-version 1.6
has "$W/err" "both containerd and CRI-O are on this host" "both runtimes named"
rm -r "$R/etc/containerd/config.toml"
expect 0 "CRI-O + empty /etc/containerd: planned" -- "$KD" plan --root "$R" --payload "$W/p.tar.zst" --runtime-version 1.29
has "$W/out" "runtime: crio" "CRI-O + empty /etc/containerd: CRI-O detected"

# 10. The real host. It has no vhost modules here (and, per machine, maybe no /dev/kvm): assert
#     the verdict agrees with what the host shows, and that each failure has a fix.
rc=0
"$CHECK" --output json --shims qemu --no-payload >"$W/real.json" 2>"$W/err" || rc=$?
if [ "$rc" -eq 0 ] || [ "$rc" -eq 1 ]; then ok "real host run (exit $rc)"; else bad "real host exit $rc"; cat "$W/err"; fi
python3 - "$W/real.json" "$rc" <<'EOF' && ok "real host verdict consistent, fixes present" || bad "real host verdict"
import json, os, sys
d = json.load(open(sys.argv[1])); rc = int(sys.argv[2])
ids = {c["id"]: c for c in d["checks"]}
v = d["shims"][0]
assert v["ok"] == (rc == 0) == d["ok"], (v, rc)
for c in d["checks"]:
    if c["status"] == "fail":
        assert c["fix"], c
    assert c["id"] not in v["failed"] or c["status"] == "fail"
if not os.path.exists("/dev/kvm"):
    assert ids["kvm.device"]["status"] == "fail" and "modprobe" in ids["kvm.device"]["fix"]
    assert not v["ok"]
if not os.path.exists("/dev/vhost-vsock") and not os.path.isdir("/sys/module/vhost_vsock"):
    assert ids["module.vhost_vsock"]["status"] == "fail", ids["module.vhost_vsock"]
    assert "module.vhost_vsock" in v["failed"] and not v["ok"]
assert ids["kvm.create_vm"]["status"] in ("pass", "fail", "skip")
EOF

echo "test-check: $fails failure(s)"
[ "$fails" -eq 0 ]
