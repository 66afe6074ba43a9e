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
sleep 0.3
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
check "install from a URL" "$KD" install --root "$R" --payload "http://127.0.0.1:$PORT/payload.tar.zst" --shims clh
check "URL install has clh" test -x "$R/opt/kata/bin/cloud-hypervisor"
"$KD" uninstall --root "$R" >/dev/null
R2=$T/root2; make_host_root "$R2"; snapshot "$R2" >"$T/b2"
expect_fail "a 404 payload URL fails clearly" "404" \
	"$KD" install --root "$R2" --payload "http://127.0.0.1:$PORT/missing.tar.zst"
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

# Bad roots and arguments.
expect_fail "a missing root is named" "$T/nope" "$KD" install --root "$T/nope" --payload "$P"
expect_fail "an unknown shim is named" "nosuchshim" "$KD" install --root "$R2" --payload "$P" --shims nosuchshim
expect_fail "install without --payload is a usage error" "--payload is required" "$KD" install --root "$R2"
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
