#!/usr/bin/env bash
# The host install engine end to end: pack, install, no-op, upgrade with reuse, replace a running
# binary, rollback, status, uninstall byte for byte, lock, URL (real HTTP server), signatures,
# bad roots.
source "$(dirname "$0")/../lib.sh"
cd "$ROOTDIR"

P=$T/payload.tar.zst
"$KD" payload pack artifacts/demo/tree --spec artifacts/demo/payload.yaml -o "$P" >/dev/null
"$KD" payload pack artifacts/demo/tree --spec artifacts/demo/payload.yaml -o "$T/again.tar.zst" >/dev/null
check "pack is reproducible" cmp -s "$P" "$T/again.tar.zst"

R=$T/root
make_host_root "$R"
snapshot "$R" >"$T/before"

out=$("$KD" install --root "$R" --payload "$P" --shims qemu 2>&1)
check "install succeeds" grep -q "^installed 3.99.0-demo" <<<"$out"
check "shim binary installed through the prefix links" \
	cmp -s "$R/opt/kata/bin/containerd-shim-kata-v2" artifacts/demo/tree/opt/kata/bin/containerd-shim-kata-v2
check "only the qemu shim's components are extracted" test ! -e "$R/opt/kata/bin/cloud-hypervisor"
check "modes kept" test "$(stat -c %a "$R/opt/kata/bin/qemu-system-x86_64")" = 755
check "symlinks of the payload kept" test "$(readlink "$R/opt/kata/share/kata-containers/vmlinux.container")" = vmlinux-6.1.demo
check "current points at a version dir" grep -q '^\.versions/[0-9a-f]\{16\}$' <<<"$(readlink "$R/opt/kata/current")"
check "the containerd config is untouched by the payload step" \
	grep -q "$(sha256sum <"$R/etc/containerd/config.toml" | cut -c1-64)" <<<"$(cd "$R" && sha256sum etc/containerd/config.toml)"
# Nothing authenticates this payload and nothing was installed: its sha256 was hashed beside the
# extraction (docs/PAYLOAD.md, "The digest"), and is still the file's.
check "the payload's sha256 in the state is the file's (hashed beside the extraction)" \
	test "$("$KD" status --root "$R" --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)["current"]["payload_sha256"])')" \
	= "$(sha256sum <"$P" | cut -c1-64)"
check "the version directory is named after it, no staging left" \
	test "$(ls -A "$R/opt/kata/.versions")" = "$(basename "$(readlink "$R/opt/kata/current")")
$(basename "$(readlink "$R/opt/kata/current")").json"

# A no-op re-install touches nothing: same listing and same mtimes everywhere.
find "$R" -printf '%p %T@ %C@\n' | sort >"$T/mt1"
out=$("$KD" install --root "$R" --payload "$P" --shims qemu 2>&1)
find "$R" -printf '%p %T@ %C@\n' | sort >"$T/mt2"
check "re-install says nothing to do" grep -q "already installed" <<<"$out"
check "re-install writes nothing (mtimes and ctimes unchanged)" cmp -s "$T/mt1" "$T/mt2"
# The same payload copied elsewhere (new inode): hashed again, still a no-op.
cp "$P" "$T/copy.tar.zst"
out=$("$KD" install --root "$R" --payload "$T/copy.tar.zst" --shims qemu 2>&1)
find "$R" -printf '%p %T@ %C@\n' | sort >"$T/mt3"
check "re-install from a copy is a no-op too" cmp -s "$T/mt1" "$T/mt3"
# A known manifest whose bytes the kept versions/<id>.json does not match (another packer's JSON;
# here the kept file gets a trailing newline): the digest, hashed beside the extraction, names
# the current version; the install undoes the extraction, starts again digest first, no-op.
id=$(basename "$(readlink "$R/opt/kata/current")")
printf '\n' >>"$R/opt/kata/.versions/$id.json"
cp "$P" "$T/copy2.tar.zst"
out=$("$KD" install --root "$R" --payload "$T/copy2.tar.zst" --shims qemu --log-level debug 2>&1)
check "a known manifest in other bytes: found to be the current version after all, a no-op" \
	grep -q "already installed" <<<"$out"
check "… after an extraction that was undone (it did extract)" grep -q "^kata-deploy: debug: extract:" <<<"$out"
check "… leaving no staging directory" test -z "$(ls -A "$R/opt/kata/.versions" | grep '^\.#kd' || :)"
truncate -s -1 "$R/opt/kata/.versions/$id.json"

# Upgrade: a new payload version whose binary is running while we replace it.
cp -a artifacts/demo/tree "$T/tree2"
cp /bin/sleep "$T/tree2/opt/kata/bin/kata-sleep"
sed 's/3.99.0-demo"$/3.99.1-demo"/; s#"bin/kata-runtime"#"bin/kata-runtime", "bin/kata-sleep"#' \
	artifacts/demo/payload.yaml >"$T/spec2.yaml"
"$KD" payload pack "$T/tree2" --spec "$T/spec2.yaml" -o "$T/p2.tar.zst" >/dev/null
"$KD" install --root "$R" --payload "$T/p2.tar.zst" --shims qemu,clh >"$T/out2" 2>&1
check "upgrade to 3.99.1 with clh" grep -q "^installed 3.99.1-demo" "$T/out2"
check "unchanged files are hard-linked from the previous version" grep -q "[1-9][0-9]* reused" "$T/out2"
"$R/opt/kata/bin/kata-sleep" 30 &
SLEEPER=$!
printf 'changed\n' >>"$T/tree2/opt/kata/share/kata-containers/vmlinux-6.1.demo"
cp /bin/true "$T/tree2/opt/kata/bin/kata-sleep"
sed -i 's/3.99.1-demo"$/3.99.2-demo"/' "$T/spec2.yaml"
"$KD" payload pack "$T/tree2" --spec "$T/spec2.yaml" -o "$T/p3.tar.zst" >/dev/null
check "replacing a running binary works (no 'text file busy')" \
	"$KD" install --root "$R" --payload "$T/p3.tar.zst" --shims qemu,clh
check "the running process is unaffected" kill -0 $SLEEPER
kill $SLEEPER; wait $SLEEPER 2>/dev/null || true
check "new binary in place" cmp -s "$R/opt/kata/bin/kata-sleep" /bin/true
check "two versions kept, older ones removed" test "$(ls "$R/opt/kata/.versions" | grep -vc json)" = 2
check "the upgrade's digest (hashed beside it) is p3's" \
	test "$("$KD" status --root "$R" --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)["current"]["payload_sha256"])')" \
	= "$(sha256sum <"$T/p3.tar.zst" | cut -c1-64)"
# The previous version's payload again, from another file: its manifest is known, so the digest
# decides first and the previous tree is reused, nothing extracted.
cp "$T/p2.tar.zst" "$T/p2-copy.tar.zst"
"$KD" install --root "$R" --payload "$T/p2-copy.tar.zst" --shims qemu,clh >"$T/out-prev" 2>&1
check "re-installing the previous payload reuses its tree: nothing written" \
	grep -q "^installed 3.99.1-demo.*: 0 files written, 0 reused" "$T/out-prev"
"$KD" install --root "$R" --payload "$T/p3.tar.zst" --shims qemu,clh >/dev/null 2>&1

st=$("$KD" status --root "$R" --output json)
check "status json: current 3.99.2, previous 3.99.1" python3 -c '
import json,sys; s=json.loads(sys.argv[1])
assert s["installed"] and s["current"]["version"]=="3.99.2-demo" and s["previous"]["version"]=="3.99.1-demo", s
assert s["current"]["shims"]==["clh","qemu"] and s["journal"]=="clean", s' "$st"
check "status text" grep -q "^version:    3.99.2-demo" <<<"$("$KD" status --root "$R")"

"$KD" rollback --root "$R" >/dev/null
check "rollback switches to 3.99.1" grep -q "^version:    3.99.1-demo" <<<"$("$KD" status --root "$R")"
check "rolled-back binary is the old one" cmp -s "$R/opt/kata/bin/kata-sleep" /bin/sleep
"$KD" rollback --root "$R" >/dev/null
check "rollback again returns to 3.99.2" grep -q "^version:    3.99.2-demo" <<<"$("$KD" status --root "$R")"

# The lock: a second run fails clearly instead of interleaving.
flock "$R" sleep 5 &
LOCKER=$!
wait_locked "$R"
rc=0; out=$("$KD" install --root "$R" --payload "$P" --lock-timeout -1 2>&1) || rc=$?
check "a locked root gives exit 3 and a clear message" \
	test "$rc" = 3 -a -n "$(grep 'another kata-deploy run holds the lock' <<<"$out")"
kill $LOCKER; wait $LOCKER 2>/dev/null || true

"$KD" uninstall --root "$R" >/dev/null
snapshot "$R" >"$T/after"
check "uninstall restores the root byte for byte" diff -u "$T/before" "$T/after"
check "uninstall again is a no-op" grep -q "nothing is installed" <<<"$("$KD" uninstall --root "$R")"

# Download from a real HTTP server on loopback.
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
(cd "$T" && exec python3 -m http.server --bind 127.0.0.1 "$PORT" >/dev/null 2>&1) &
HTTPD=$!
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$PORT/" >/dev/null && break; sleep 0.1; done
check "install from a URL" "$KD" install --root "$R" --payload "http://127.0.0.1:$PORT/payload.tar.zst" --shims clh \
	--sha256 "$(sha256sum <"$P" | cut -c1-64)"
check "URL install has clh" test -x "$R/opt/kata/bin/cloud-hypervisor"
"$KD" uninstall --root "$R" >/dev/null
R2=$T/root2; make_host_root "$R2"; snapshot "$R2" >"$T/b2"
expect_fail "a 404 payload URL fails clearly" "404" \
	"$KD" install --root "$R2" --payload "http://127.0.0.1:$PORT/missing.tar.zst" --insecure
snapshot "$R2" >"$T/a2"
check "a failed download leaves the root untouched" cmp -s "$T/b2" "$T/a2"
kill $HTTPD; wait $HTTPD 2>/dev/null || true

# Signatures.
"$KD" payload keygen "$T/key.pem" "$T/pub.pem" >/dev/null
"$KD" payload keygen "$T/other.pem" "$T/otherpub.pem" >/dev/null
"$KD" payload pack artifacts/demo/tree --spec artifacts/demo/payload.yaml -o "$T/signed.tar.zst" --sign "$T/key.pem" \
	--sign-pubkey "$T/pub.pem" >/dev/null
check "the manifest names the signing key's fingerprint" \
	bash -c "tar -xOf '$T/signed.tar.zst' kata-payload.json | grep -q '\"signing_key\"'"
check "signed payload installs with the right key" \
	"$KD" install --root "$R2" --payload "$T/signed.tar.zst" --public-key "$T/pub.pem"
"$KD" uninstall --root "$R2" >/dev/null
expect_fail "the wrong key is refused" "signature" \
	"$KD" install --root "$R2" --payload "$T/signed.tar.zst" --public-key "$T/otherpub.pem"
expect_fail "a signed payload without a key is refused" "public key is required" \
	"$KD" install --root "$R2" --payload "$T/signed.tar.zst"
expect_fail "plan refuses it too" "public key is required" \
	"$KD" plan --root "$R2" --payload "$T/signed.tar.zst"
"$KD" payload pack artifacts/demo/tree --spec artifacts/demo/payload.yaml -o "$T/signed2.tar.zst" --sign "$T/key.pem" >/dev/null
expect_fail "--sign alone also names the key: installing without it is refused" "public key is required" \
	"$KD" install --root "$R2" --payload "$T/signed2.tar.zst"
check "--sign alone: installs with the key" \
	"$KD" install --root "$R2" --payload "$T/signed2.tar.zst" --public-key "$T/pub.pem"
"$KD" uninstall --root "$R2" >/dev/null
expect_fail "--sign-pubkey of another key is refused at pack time" "signature" \
	"$KD" payload pack artifacts/demo/tree --spec artifacts/demo/payload.yaml -o "$T/bad.tar.zst" \
	--sign "$T/key.pem" --sign-pubkey "$T/otherpub.pem"
cp "$T/signed.tar.zst" "$T/tampered.tar.zst"; printf 'x' | dd of="$T/tampered.tar.zst" bs=1 seek=100 conv=notrunc 2>/dev/null
cp "$T/signed.tar.zst.sig" "$T/tampered.tar.zst.sig"
expect_fail "a tampered payload fails the signature check" "signature" \
	"$KD" install --root "$R2" --payload "$T/tampered.tar.zst" --public-key "$T/pub.pem"
expect_fail "a wrong --sha256 is refused" "sha256" \
	"$KD" install --root "$R2" --payload "$P" --sha256 "$(printf '0%.0s' $(seq 64))"
snapshot "$R2" >"$T/a3"
check "refused payloads leave the root untouched" cmp -s "$T/b2" "$T/a3"

# Format 2 (docs/PAYLOAD.md): one zstd frame per component, an index at the end.
index() { # PAYLOAD: "offset size tar_size" per frame, from the index at the end of the file
	python3 -c '
import struct, sys
d = open(sys.argv[1], "rb").read()
assert d[-8:] == b"KDPAYIX2", "no index"
n = struct.unpack("<I", d[-16:-12])[0]
start = len(d) - 16 - 56 * n
for i in range(n):
    print(*struct.unpack("<QQQ", d[start + 56 * i:start + 56 * i + 24]))' "$1"
}
comp_frame() { # PAYLOAD COMPONENT: the component's frame number (manifest order + 1)
	tar -xOf "$1" kata-payload.json | python3 -c '
import json, sys
names = [c["name"] for c in json.load(sys.stdin)["components"]]
print(names.index(sys.argv[1]) + 1)' "$2"
}
index "$P" >"$T/index"
check "format 2: the manifest, 5 components and the end of the archive are frames" \
	test "$(wc -l <"$T/index")" = 7
Q=$(comp_frame "$P" qemu)
# clh needs every component but qemu: the bytes decompressed are every frame's but qemu's.
want=$(awk -v q="$Q" 'NR - 1 != q {s += $3} END {print s}' "$T/index")
want_read=$(awk -v q="$Q" 'NR - 1 != q {s += $2} END {print s}' "$T/index")
R3=$T/root3; make_host_root "$R3"; snapshot "$R3" >"$T/b5"
out=$("$KD" install --root "$R3" --payload "$P" --shims clh --log-level debug 2>&1)
got=$(grep -o '[0-9]* bytes decompressed' <<<"$out" | cut -d' ' -f1)
got_read=$(grep -o '[0-9]* bytes of [0-9]* read' <<<"$out" | cut -d' ' -f1)
check "format 2: install of clh decompresses only its components ($got = $want bytes)" \
	test -n "$got" -a "$got" = "$want"
check "format 2: and reads only their frames ($got_read = $want_read bytes)" \
	test -n "$got_read" -a "$got_read" = "$want_read"
check "format 2: qemu is not there" test ! -e "$R3/opt/kata/bin/qemu-system-x86_64"
"$KD" uninstall --root "$R3" >/dev/null
# Damage qemu's frame: installing clh does not read it, installing qemu refuses before any write.
read -r qoff qsize _ < <(sed -n "$((Q + 1))p" "$T/index")
cp "$P" "$T/qdamaged.tar.zst"
printf 'XXXX' | dd of="$T/qdamaged.tar.zst" bs=1 seek=$((qoff + qsize / 2)) conv=notrunc 2>/dev/null
check "format 2: a damaged frame of an unneeded component does not matter" \
	"$KD" install --root "$R3" --payload "$T/qdamaged.tar.zst" --shims clh
"$KD" uninstall --root "$R3" >/dev/null
expect_fail "format 2: a damaged frame of a needed component is refused" \
	"component 'qemu' is damaged" \
	"$KD" install --root "$R3" --payload "$T/qdamaged.tar.zst" --shims qemu
snapshot "$R3" >"$T/a5"
check "format 2: ... before any write to the root" cmp -s "$T/b5" "$T/a5"
# An index that lies about an offset, and one cut short.
python3 -c '
import struct, sys
d = bytearray(open(sys.argv[1], "rb").read())
n = struct.unpack("<I", d[-16:-12])[0]
o = len(d) - 16 - 56 * n + 56 * 2
d[o:o + 8] = struct.pack("<Q", struct.unpack("<Q", d[o:o + 8])[0] + 100)
open(sys.argv[2], "wb").write(d)' "$P" "$T/lying.tar.zst"
expect_fail "format 2: an index lying about an offset is refused" "frame index: frame 2 starts at" \
	"$KD" install --root "$R3" --payload "$T/lying.tar.zst" --shims qemu
head -c -40 "$P" >"$T/cut.tar.zst"
expect_fail "format 2: a truncated index is refused" "no frame index at the end of the file" \
	"$KD" install --root "$R3" --payload "$T/cut.tar.zst" --shims qemu
snapshot "$R3" >"$T/a6"
check "format 2: refused indexes leave the root untouched" cmp -s "$T/b5" "$T/a6"
# Format 1 payloads (one stream, sorted entries) still install.
python3 tests/tools/payload-v1.py "$P" "$T/v1.tar.zst"
check "format 1: the rewritten payload has no index" bash -c "! tail -c 8 '$T/v1.tar.zst' | grep -q KDPAYIX2"
out=$("$KD" install --root "$R3" --payload "$T/v1.tar.zst" --shims qemu --log-level debug 2>&1)
check "format 1: a format 1 payload installs" grep -q "^installed 3.99.0-demo" <<<"$out"
check "format 1: it was read as format 1" grep -q "payload format 1" <<<"$out"
check "format 1: the shim's binary is the packed one" \
	cmp -s "$R3/opt/kata/bin/qemu-system-x86_64" artifacts/demo/tree/opt/kata/bin/qemu-system-x86_64
"$KD" uninstall --root "$R3" >/dev/null
# A file whose bytes differ from the manifest: the message gives both digests in full.
python3 tests/tools/mkhostile.py digest-mismatch "$T/dm.tar.zst"
expect_fail "a digest mismatch names both digests in full" \
	"sha256 is 92e78d0b032962f47792a9fa95fd981ef63e1e3ef074d536d6304c75eddbe29f, the manifest says 1ea7a9b77da8c725742658e48d686d50bdaaf7f8b0289b1061adec3d249e5071" \
	"$KD" install --root "$R3" --payload "$T/dm.tar.zst"
# A payload with no shims (issue 11): pack refuses it, install refuses one made elsewhere.
mkdir -p "$T/noshims/opt/kata/bin" && cp artifacts/demo/tree/opt/kata/bin/kata-runtime "$T/noshims/opt/kata/bin/"
expect_fail "pack refuses a tree with no shims" "no shims" \
	"$KD" payload pack "$T/noshims" --version 1 -o "$T/noshims.tar.zst"
check "... and writes nothing" test ! -e "$T/noshims.tar.zst"
python3 tests/tools/payload-v1.py "$P" "$T/noshims.tar.zst" --no-shims
expect_fail "install refuses a payload with no shims" "declares no shims" \
	"$KD" install --root "$R3" --payload "$T/noshims.tar.zst"
snapshot "$R3" >"$T/a7"
check "... and leaves the root untouched" cmp -s "$T/b5" "$T/a7"

# Bad roots and arguments.
expect_fail "a missing root is named" "$T/nope" "$KD" install --root "$T/nope" --payload "$P"
expect_fail "an unknown shim is named" "nosuchshim" "$KD" install --root "$R2" --payload "$P" --shims nosuchshim
expect_fail "install without --payload is a usage error" "--payload is required" "$KD" install --root "$R2"

# --skip-missing-shims (the node agent's mode): the shims the payload lacks are left out and
# named; the others install; options naming a left-out shim are accepted and unused; the state
# remembers them, so the re-run is a no-op; uninstall is exact.
R5=$T/skip; make_host_root "$R5"; snapshot "$R5" >"$T/b-skip"
SK=("$KD" install --root "$R5" --payload "$P" --runtime containerd --runtime-version 1.7.2)
expect_fail "--skip-missing-shims: none of the shims in the payload is refused" \
	"none of the shims asked for (clh-azure,fc) is in this payload (it has: clh, qemu)" \
	"${SK[@]}" --shims clh-azure,fc --skip-missing-shims
check "... and writes nothing" cmp -s "$T/b-skip" <(snapshot "$R5")
expect_fail "without --skip-missing-shims a missing shim is refused" "unknown shim 'clh-azure'" \
	"${SK[@]}" --shims qemu,clh-azure
out=$("${SK[@]}" --shims qemu,clh-azure,openvmm-azure-runtime-rs --skip-missing-shims \
	--snapshotter-handler-mapping clh-azure:nydus,qemu:overlayfs --output json 2>"$T/skip.err")
check "--skip-missing-shims: installs the shims the payload has ($out)" \
	grep -q '"shims":\["qemu"\],"skipped":\["clh-azure","openvmm-azure-runtime-rs"\]' <<<"$out"
check "--skip-missing-shims: each left-out shim is named on stderr" \
	grep -q "shim 'openvmm-azure-runtime-rs' is not in this payload: left out" "$T/skip.err"
check "--skip-missing-shims: only kata-qemu is configured" \
	test "$(grep -rhoE 'runtimes\.(\x27|")?kata-[a-z-]+' "$R5/etc/containerd" | sort -u | sed -E 's/.*(kata-[a-z-]+)/\1/')" = kata-qemu
cur_shims() { "$KD" status --root "$R5" --output json | jq -c .current.shims; }
check "--skip-missing-shims: the state records the installed shims ($(cur_shims))" test "$(cur_shims)" = '["qemu"]'
find "$R5" -printf '%p %T@ %C@\n' | sort >"$T/mt-skip1"
out=$("${SK[@]}" --shims qemu,clh-azure,openvmm-azure-runtime-rs --skip-missing-shims \
	--snapshotter-handler-mapping clh-azure:nydus,qemu:overlayfs 2>&1)
check "--skip-missing-shims: the re-run is a no-op that names the left-out shims again" \
	grep -q "already installed: nothing to do" <<<"$out"
check "... (left out: clh-azure openvmm-azure-runtime-rs)" \
	grep -q "left out, not in the payload: clh-azure openvmm-azure-runtime-rs" <<<"$out"
find "$R5" -printf '%p %T@ %C@\n' | sort >"$T/mt-skip2"
check "... and writes nothing" cmp -s "$T/mt-skip1" "$T/mt-skip2"
out=$("${SK[@]}" --shims qemu,clh,clh-azure --skip-missing-shims --snapshotter-handler-mapping clh:overlayfs 2>&1)
check "--skip-missing-shims: clh (in the payload) enabled later installs" \
	grep -q "left out, not in the payload: clh-azure" <<<"$out"
check "... kata-clh configured" grep -rq "kata-clh" "$R5/etc/containerd"
# The mapping names clh, which the version rolled back to does not have: absent there too.
"$KD" rollback --root "$R5" >"$T/skip-rb.log" 2>&1
check "--skip-missing-shims: rollback to the qemu-only version ($(tail -1 "$T/skip-rb.log"))" \
	test "$(cur_shims)" = '["qemu"]'
check "... kata-clh no longer configured" test -z "$(grep -rl kata-clh "$R5/etc/containerd")"
"$KD" uninstall --root "$R5" >/dev/null 2>&1
check "--skip-missing-shims: uninstall restores the root byte for byte" cmp -s "$T/b-skip" <(snapshot "$R5")
rc=0; "$KD" install --root "$R2" >/dev/null 2>&1 || rc=$?
check "usage errors exit 2" test "$rc" = 2
RO=$T/ro; make_host_root "$RO"; snapshot "$RO" >"$T/b4"
rc=0; out=$(unshare -m sh -c "mount --bind '$RO' '$RO' && mount -o remount,bind,ro '$RO' && '$KD' install --root '$RO' --payload '$P'" 2>&1) || rc=$?
check "a read-only root fails clearly" test "$rc" = 1 -a -n "$(grep -i 'read-only' <<<"$out")"
snapshot "$RO" >"$T/a4"
check "the read-only root is untouched" cmp -s "$T/b4" "$T/a4"
for verb in install uninstall rollback status payload check; do
	check "$verb --help" "$KD" $verb --help
done
finish
