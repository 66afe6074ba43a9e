#!/usr/bin/env bash
# The demo: a throw-away host root with a minimal containerd config; pack the demo payload from
# artifacts/demo, install it, show status and what was written, uninstall, and show the root is
# byte-for-byte what it was. Run through `make demo` (or scripts/demo.sh after `make`).
set -euo pipefail
cd "$(dirname "$0")/.."
O=${O:-build}
KD=$PWD/$O/kata-deploy
W=$(mktemp -d /tmp/kata-deploy-demo.XXXXXX)
trap 'rm -rf "$W"' EXIT
source scripts/hostroot.sh

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

ROOT=$W/host
make_host_root "$ROOT"
snapshot "$ROOT" >"$W/before"

say "1. A throw-away host root"
(cd "$ROOT" && find . | sort)
echo "--- etc/containerd/config.toml:"; cat "$ROOT/etc/containerd/config.toml"

say "2. Pack the demo payload (artifacts/demo) into a reproducible tar.zst"
"$KD" payload pack artifacts/demo/tree --spec artifacts/demo/payload.yaml -o "$W/payload.tar.zst"
ls -l "$W/payload.tar.zst"; sha256sum "$W/payload.tar.zst"

say "3. kata-deploy install --root $ROOT --shims qemu"
"$KD" install --root "$ROOT" --payload "$W/payload.tar.zst" --shims qemu

say "4. kata-deploy status"
"$KD" status --root "$ROOT"

say "5. What was installed under the root"
(cd "$ROOT" && find . -path ./var/lib/kata-deploy -prune -o -print | sort | sed 's/^/  /')
echo "--- readlink opt/kata/bin: $(readlink "$ROOT/opt/kata/bin")   current -> $(readlink "$ROOT/opt/kata/current")"
"$ROOT/opt/kata/bin/containerd-shim-kata-v2" --version

say "6. Install again: a no-op that writes nothing"
"$KD" install --root "$ROOT" --payload "$W/payload.tar.zst" --shims qemu

say "7. Add the clh shim: a new version dir, unchanged files hard-linked from the current one"
"$KD" install --root "$ROOT" --payload "$W/payload.tar.zst" --shims qemu,clh
"$KD" status --root "$ROOT"

say "8. Roll back to the previous version"
"$KD" rollback --root "$ROOT"
"$KD" status --root "$ROOT" | head -3

say "9. Uninstall"
"$KD" uninstall --root "$ROOT"
snapshot "$ROOT" >"$W/after"
if diff -u "$W/before" "$W/after"; then
	echo "The root is byte-for-byte as it was before the first install:"
	(cd "$ROOT" && find . | sort)
else
	echo "DEMO FAILED: the root differs from before" >&2
	exit 1
fi
