#!/usr/bin/env bash
# kata-deploy payload import: upstream's release tarballs in both layouts (3.x: Go runtime
# configurations, .tar.xz; 4.x: + runtime-rs, .tar.zst), made by tests/tools/mkupstream.py the
# way upstream's build scripts lay them out. Import (pinned and not, reproducible), the shim →
# components map, install a subset of shims with Debian's containerd 1.6 loading the result,
# uninstall byte for byte; a wrong --sha256; hostile tarballs (nothing written anywhere); an
# upstream tarball given to install; payload pack of a runtime-rs tree.
source "$(dirname "$0")/../lib.sh"
cd "$ROOTDIR"

MK="python3 tests/tools/mkupstream.py"
CTD=/usr/bin/containerd
$MK tree 3 "$T/t3"
$MK tree 4 "$T/t4"
mkdir -p "$T/in" "$T/out"
U3=$T/in/kata-static-3.21.0-amd64.tar.xz
U4=$T/in/kata-static-4.1.0-amd64.tar.zst
$MK tar "$T/t3" "$U3"
$MK tar "$T/t4" "$U4"
SHA4=$(sha256sum "$U4" | cut -c1-64)
SHA3=$(sha256sum "$U3" | cut -c1-64)

has() { grep -qF -- "$1" <<<"$2"; }
lacks() { ! grep -qF -- "$1" <<<"$2"; }
quiet() { "$@" >/dev/null 2>&1; }

# The manifest of a payload, as one line per shim: "shim: comp comp ...".
shims_of() {
	tar -xOf "$1" kata-payload.json | python3 -c '
import json, sys
m = json.load(sys.stdin)
for s, c in sorted(m["shims"].items()):
    print(s + ": " + " ".join(c))'
}

# --- 4.x, pinned ---
P4=$T/out/p4.tar.zst
out=$("$KD" payload import "$U4" --sha256 "$SHA4" -o "$P4" 2>&1) || not_ok "failed: $out"
check "4.x import succeeds" test -s "$P4"
check "4.x: no warning about the digest when pinned" lacks 'no --sha256' "$out"
check "4.x: both runtimes' configurations are counted" grep -q "configurations: 6 Go runtime, 6 runtime-rs" <<<"$out"
shims_of "$P4" >"$T/shims4"
cat >"$T/want4" <<'EOF'
clh: cloud-hypervisor common kernel rootfs-image shim-v2-go virtiofsd
clh-runtime-rs: cloud-hypervisor common kernel rootfs-image shim-v2-rust virtiofsd
dragonball: common kernel-dragonball-experimental rootfs-image shim-v2-rust
fc: common firecracker kernel rootfs-image shim-v2-go
qemu: common kernel qemu rootfs-image shim-v2-go virtiofsd
qemu-coco-dev-runtime-rs: common kernel-confidential qemu-no-shared-fs rootfs-image rootfs-image-coco-extension shim-v2-rust virtiofsd
qemu-runtime-rs: common kernel qemu rootfs-image shim-v2-rust virtiofsd
qemu-snp: common kernel-confidential ovmf-sev qemu rootfs-initrd-confidential shim-v2-go virtiofsd
remote: common shim-v2-go
EOF
check "4.x: the shim → components map (runtime-rs shims included)" diff -u "$T/want4" "$T/shims4"
check "4.x: stratovirt is left out, naming the missing binary" \
	grep -q 'left out stratovirt: hypervisor.stratovirt.path = "/opt/kata/bin/stratovirt" is not in the tarball' <<<"$out"
check "4.x: runtime-rs's rs-fc is left out, saying why" has 'runtime-rs/configuration-rs-fc.toml: a runtime-rs configuration' "$out"
check "4.x: and runtime-rs's remote" has 'runtime-rs/configuration-remote.toml: a runtime-rs configuration' "$out"
check "4.x: version from opt/kata/VERSION, arch from the name" \
	bash -c "tar -xOf '$P4' kata-payload.json | grep -q '\"arch\":\"x86_64\".*\"version\":\"4.1.0\"'"
comps=$(tar -xOf "$P4" kata-payload.json | python3 -c '
import json, sys
m = json.load(sys.stdin)
owner = {f["path"]: c["name"] for c in m["components"] for f in c["files"]}
for p in ["bin/qemu-system-x86_64", "share/kata-qemu/qemu/bios-256k.bin", "libexec/kata-qemu/qemu-bridge-helper",
          "bin/qemu-system-x86_64-no-shared-fs", "share/kata-containers/vmlinux-6.12.47-170",
          "share/kata-containers/config-6.12.47-170-debug", "share/kata-containers/kata-ubuntu-noble.image",
          "share/kata-containers/root_hash_coco-extension.txt", "runtime-rs/bin/containerd-shim-kata-v2",
          "share/ovmf/OVMF.fd", "libexec/nydusd", "VERSION"]:
    print(p, owner.get(p))')
cat >"$T/wantc" <<'EOF'
bin/qemu-system-x86_64 qemu
share/kata-qemu/qemu/bios-256k.bin qemu
libexec/kata-qemu/qemu-bridge-helper qemu
bin/qemu-system-x86_64-no-shared-fs qemu-no-shared-fs
share/kata-containers/vmlinux-6.12.47-170 kernel
share/kata-containers/config-6.12.47-170-debug kernel-debug
share/kata-containers/kata-ubuntu-noble.image rootfs-image
share/kata-containers/root_hash_coco-extension.txt rootfs-image-coco-extension
runtime-rs/bin/containerd-shim-kata-v2 shim-v2-rust
share/ovmf/OVMF.fd ovmf
libexec/nydusd nydus
VERSION common
EOF
check "4.x: files go to upstream's kata-static-<component> sets" diff -u "$T/wantc" <(echo "$comps")
"$KD" payload import "$U4" --sha256 "$SHA4" -o "$T/out/again.tar.zst" >/dev/null 2>&1 || not_ok "import again failed"
check "import is reproducible (same tarball → same payload bytes)" cmp -s "$P4" "$T/out/again.tar.zst"
check "no staging directory is left next to the output" test -z "$(ls -A "$T/out" | grep -v '\.tar\.zst$')"

# --- 3.x (.tar.xz), not pinned ---
P3=$T/out/p3.tar.zst
out=$("$KD" payload import "$U3" -o "$P3" 2>&1) || not_ok "failed: $out"
check "3.x (xz) import succeeds" test -s "$P3"
check "3.x: without --sha256 the digest is printed with a warning" \
	grep -q "warning: payload import: no --sha256 given: .* has sha256 $SHA3" <<<"$out"
check "3.x: the Go runtime's shims, no runtime-rs" \
	test "$(shims_of "$P3" | cut -d: -f1 | tr '\n' ' ')" = "clh fc qemu qemu-snp remote "
check "3.x: version 3.21.0" bash -c "tar -xOf '$P3' kata-payload.json | grep -q '\"version\":\"3.21.0\"'"

# --- a wrong --sha256 ---
expect_fail "a wrong --sha256 is refused, naming both digests" "sha256 is $SHA4, expected $(printf 'a%.0s' $(seq 64))" \
	"$KD" payload import "$U4" --sha256 "$(printf 'a%.0s' $(seq 64))" -o "$T/out/wrong.tar.zst"
check "nothing written for a wrong --sha256" test ! -e "$T/out/wrong.tar.zst"
expect_fail "--sha256 that is not hex is a usage error" "64 hex digits" \
	"$KD" payload import "$U4" --sha256 xyz -o "$T/out/wrong.tar.zst"

# --- --shims, names, versions ---
"$KD" payload import "$U4" --sha256 "$SHA4" --shims qemu-runtime-rs,qemu -o "$T/out/two.tar.zst" >/dev/null 2>&1 || not_ok "import --shims failed"
check "--shims imports only those" test "$(shims_of "$T/out/two.tar.zst" | cut -d: -f1 | tr '\n' ' ')" = "qemu qemu-runtime-rs "
expect_fail "--shims with a shim that cannot work fails, naming the file" "shim 'stratovirt': hypervisor.stratovirt.path" \
	"$KD" payload import "$U4" --shims stratovirt -o "$T/out/x.tar.zst"
expect_fail "--shims with an unknown shim fails" "shim 'nosuch': no configuration-nosuch.toml" \
	"$KD" payload import "$U4" --shims nosuch -o "$T/out/x.tar.zst"
cp "$U4" "$T/in/upstream.tar.zst"
expect_fail "a file name without the architecture needs --arch" "give --arch" \
	"$KD" payload import "$T/in/upstream.tar.zst" -o "$T/out/x.tar.zst"
check "--arch supplies it" quiet "$KD" payload import "$T/in/upstream.tar.zst" --arch aarch64 -o "$T/out/arm.tar.zst"
check "the payload says aarch64" bash -c "tar -xOf '$T/out/arm.tar.zst' kata-payload.json | grep -q '\"arch\":\"aarch64\"'"
expect_fail "a payload is not imported again" "is already a kata-deploy payload" \
	"$KD" payload import "$P4" -o "$T/out/x.tar.zst"
check "no failed import left anything in the output directory" \
	test "$(ls -A "$T/out" | sort | tr '\n' ' ')" = "again.tar.zst arm.tar.zst p3.tar.zst p4.tar.zst two.tar.zst "

# --- install a subset of shims, loaded by the real containerd 1.6 ---
dump() { unshare -m bash -c "mount --bind '$1/etc' /etc && exec '$CTD' --config /etc/containerd/config.toml config dump"; }
R=$T/root
make_host_root "$R"
snapshot "$R" >"$T/before"
out=$("$KD" plan --root "$R" --payload "$P4" --shims qemu-runtime-rs --runtime-version 1.6 2>&1) || not_ok "plan failed: $out"
check "plan of the imported payload shows the runtime-rs handler" has 'runtimes.kata-qemu-runtime-rs]' "$out"
check "plan wrote nothing" diff -u "$T/before" <(snapshot "$R")
if "$KD" install --root "$R" --payload "$P4" --shims qemu,qemu-runtime-rs,dragonball \
	--runtime-version 1.6 --runtime-binary "$CTD" >"$T/inst" 2>&1; then
	ok "install of the imported 4.x payload (qemu, qemu-runtime-rs, dragonball)"
else
	not_ok "install of the imported 4.x payload: $(tail -3 "$T/inst")"
fi
dump "$R" >"$T/dump" 2>"$T/dumperr" || not_ok "containerd 1.6 does not load the result: $(cat "$T/dumperr")"
for h in qemu:bin qemu-runtime-rs:runtime-rs/bin dragonball:runtime-rs/bin; do
	shim=${h%%:*} bin=${h#*:}
	check "containerd 1.6 sees handler kata-$shim with the $bin shim and its configuration" python3 - "$T/dump" "$shim" "$bin" <<'EOF'
import re, sys
text, shim, b = open(sys.argv[1]).read(), sys.argv[2], sys.argv[3]
head = '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.kata-%s]' % shim
assert head in text, head
block = text.split(head, 1)[1].split("\n        [plugins.", 1)[0]
assert 'runtime_path = "/opt/kata/%s/containerd-shim-kata-v2"' % b in block, block
rest = text.split(head + "\n", 1)[1]
assert 'ConfigPath = "/opt/kata/runtimes/%s/configuration-%s.toml"' % (shim, shim) in rest.split("[plugins.", 3)[0] + rest.split("[plugins.", 3)[1], rest[:600]
EOF
done
check "no handler for shims that were not asked for" bash -c "! grep -q 'runtimes.kata-clh\]' '$T/dump'"
K=$R/opt/kata
check "runtime-rs shim binary installed" cmp -s "$K/runtime-rs/bin/containerd-shim-kata-v2" "$T/t4/opt/kata/runtime-rs/bin/containerd-shim-kata-v2"
check "Go shim binary installed" cmp -s "$K/bin/containerd-shim-kata-v2" "$T/t4/opt/kata/bin/containerd-shim-kata-v2"
check "QEMU and its data installed" cmp -s "$K/share/kata-qemu/qemu/bios-256k.bin" "$T/t4/opt/kata/share/kata-qemu/qemu/bios-256k.bin"
check "the guest kernel link resolves to the kernel" cmp -s "$K/share/kata-containers/vmlinux.container" "$T/t4/opt/kata/share/kata-containers/vmlinux-6.12.47-170"
check "dragonball's kernel installed" test -f "$K/share/kata-containers/vmlinux-dragonball-experimental.container"
check "the image link resolves" cmp -s "$K/share/kata-containers/kata-containers.img" "$T/t4/opt/kata/share/kata-containers/kata-ubuntu-noble.image"
check "virtiofsd installed" test -x "$K/libexec/virtiofsd"
for f in bin/cloud-hypervisor bin/firecracker bin/qemu-system-x86_64-no-shared-fs share/ovmf/AMDSEV.fd \
	share/kata-containers/vmlinux-debug.container libexec/nydusd; do
	check "not installed (no chosen shim needs it): $f" test ! -e "$K/$f"
done
check "the qemu-runtime-rs handler's configuration is runtime-rs's file" \
	bash -c "tail -n +3 '$K/runtimes/qemu-runtime-rs/configuration-qemu-runtime-rs.toml' | cmp -s - '$T/t4/opt/kata/share/defaults/kata-containers/runtime-rs/configuration-qemu-runtime-rs.toml'"
"$KD" install --root "$R" --payload "$P3" --shims clh,fc --runtime-version 1.6 --runtime-binary "$CTD" >"$T/inst3" 2>&1 &&
	ok "upgrade to the imported 3.x payload with clh and fc" || not_ok "install 3.x: $(tail -3 "$T/inst3")"
check "3.x: cloud-hypervisor and firecracker installed" test -x "$K/bin/cloud-hypervisor" -a -x "$K/bin/jailer"
check "3.x: the runtime-rs shim is gone with 4.x" test ! -e "$K/runtime-rs/bin/containerd-shim-kata-v2"
"$KD" uninstall --root "$R" >/dev/null 2>&1
check "uninstall restores the root byte for byte" diff -u "$T/before" <(snapshot "$R")

# --- an upstream tarball given to install or plan ---
R2=$T/root2
make_host_root "$R2"
snapshot "$R2" >"$T/b2"
expect_fail "install of an upstream tarball says to import it" "convert it first with 'kata-deploy payload import $U4 -o payload.tar.zst" \
	"$KD" install --root "$R2" --payload "$U4"
expect_fail "also for a 3.x .tar.xz" "is an upstream Kata release tarball" \
	"$KD" install --root "$R2" --payload "$U3"
expect_fail "plan says so too" "kata-deploy payload import" "$KD" plan --root "$R2" --payload "$U4"
check "the root is untouched" diff -u "$T/b2" <(snapshot "$R2")

# --- hostile tarballs: refused, nothing written inside or outside the output directory ---
H=$T/hostile
mkdir -p "$H/out"
while read -r case want; do
	$MK hostile "$case" "$H/$case.tar.zst"
	expect_fail "hostile '$case' is refused" "$want" "$KD" payload import "$H/$case.tar.zst" --arch x86_64 --version 1 -o "$H/out/p.tar.zst"
done <<'EOF'
outside outside opt/kata/
dotdot unsafe path
absolute absolute path
abs-symlink absolute, or it leaves opt/kata/
escape-symlink absolute, or it leaves opt/kata/
through-symlink exists and is not a directory
hardlink-escape 'etc/passwd': outside opt/kata/
setuid setuid, setgid or sticky mode 4755
device a character device; only files, directories and links
fifo a FIFO; only files, directories and links
huge 5368709120 bytes exceeds the limit of 4294967296 bytes per file
duplicate appears twice in the tarball
payload is already a kata-deploy payload
EOF
check "hostile tarballs left nothing in the output directory" test -z "$(ls -A "$H/out")"
check "and nothing outside it" test "$(find "$T" -name 'evil*' -o -name cron.d | wc -l)" = 0

# --- payload pack infers runtime-rs shims ---
rm -rf "$T/rs" && mkdir -p "$T/rs/opt/kata"
cp -a "$T/t4/opt/kata/runtime-rs" "$T/rs/opt/kata/"
mkdir -p "$T/rs/opt/kata/share/defaults/kata-containers"
cp -a "$T/t4/opt/kata/share/defaults/kata-containers/runtime-rs" "$T/rs/opt/kata/share/defaults/kata-containers/"
out=$("$KD" payload pack "$T/rs" --version 4.1.0 -o "$T/rs.tar.zst" 2>&1) || not_ok "failed: $out"
check "pack of a runtime-rs-only tree has its shims" \
	test "$(shims_of "$T/rs.tar.zst" | tr '\n' ' ')" = "clh-runtime-rs: kata dragonball: kata qemu-coco-dev-runtime-rs: kata qemu-runtime-rs: kata "
check "pack names the runtime-rs configurations that are not shims" grep -q "not a shim: opt/kata/share/defaults/kata-containers/runtime-rs/configuration-rs-fc.toml" <<<"$out"
out=$("$KD" payload pack "$T/t4" --version 4.1.0 -o "$T/all.tar.zst" 2>&1) || not_ok "failed: $out"
check "pack of a whole 4.x tree: Go and runtime-rs shims" \
	test "$(shims_of "$T/all.tar.zst" | cut -d: -f1 | tr '\n' ' ')" = "clh clh-runtime-rs dragonball fc qemu qemu-coco-dev-runtime-rs qemu-runtime-rs qemu-snp remote stratovirt "

# --- signed import ---
"$KD" payload keygen "$T/key.pem" "$T/pub.pem" >/dev/null
"$KD" payload import "$U4" --sha256 "$SHA4" --shims qemu --sign "$T/key.pem" --sign-pubkey "$T/pub.pem" -o "$T/out/signed.tar.zst" >/dev/null 2>&1 || not_ok "signed import failed"
check "a signed import writes the signature" test -s "$T/out/signed.tar.zst.sig"
R3=$T/root3
make_host_root "$R3"
expect_fail "the signed import needs the key to install" "public key is required" "$KD" install --root "$R3" --payload "$T/out/signed.tar.zst"
check "and installs with it" quiet "$KD" install --root "$R3" --payload "$T/out/signed.tar.zst" --public-key "$T/pub.pem"
check "payload --help names import" bash -c "'$KD' payload --help | grep -q 'payload import TARBALL'"
finish
