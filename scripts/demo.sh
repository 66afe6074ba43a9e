#!/usr/bin/env bash
# The demo: a throw-away host root with a minimal containerd config; pack the demo payload from
# artifacts/demo, show `kata-deploy plan` (the config diff), install it, show the containerd config
# and containerd's own `config dump` accepting it, status and what was written, uninstall, and
# show the root is byte-for-byte what it was. Run through `make demo` (or scripts/demo.sh after `make`).
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

# containerd's own loader (Debian's 1.6, from scripts/install-deps.sh) validates the config
# during install and shows what it makes of it afterwards.
CTD=${CONTAINERD:-/usr/bin/containerd}
[ -x "$CTD" ] || { echo "demo: $CTD is missing (scripts/install-deps.sh installs containerd)" >&2; exit 1; }
RT=(--runtime-binary "$CTD")

say "3. kata-deploy plan: what install would do, as a unified diff (writes nothing)"
"$KD" plan --root "$ROOT" --payload "$W/payload.tar.zst" --shims qemu "${RT[@]}" 2>/dev/null
snapshot "$ROOT" | diff -q "$W/before" - >/dev/null && echo "(the root is unchanged after plan)"

say "3b. kata-deploy install --root $ROOT --shims qemu --runtime-binary $CTD"
"$KD" install --root "$ROOT" --payload "$W/payload.tar.zst" --shims qemu "${RT[@]}"

say "3c. The resulting containerd config"
cat "$ROOT/etc/containerd/config.toml"

say "3d. containerd's own loader: $CTD --config <root>/etc/containerd/config.toml config dump"
# The config imports nothing, so no private mount namespace is needed for its paths.
"$CTD" --config "$ROOT/etc/containerd/config.toml" config dump >"$W/dump" 2>"$W/dump.err" ||
	{ echo "DEMO FAILED: containerd refuses the config:" >&2; cat "$W/dump.err" >&2; exit 1; }
awk '/runtimes.(runc|kata-qemu)(.options)?\]/ {on=1; print; next} on && /^ *\[/ {on=0} on' "$W/dump"
echo "containerd $("$CTD" --version | awk '{print $3}') accepts it: the kata-qemu handler is in its dump"

say "4. kata-deploy status"
"$KD" status --root "$ROOT"

say "5. What was installed under the root"
(cd "$ROOT" && find . -path ./var/lib/kata-deploy -prune -o -print | sort | sed 's/^/  /')
echo "--- readlink opt/kata/bin: $(readlink "$ROOT/opt/kata/bin")   current -> $(readlink "$ROOT/opt/kata/current")"
"$ROOT/opt/kata/bin/containerd-shim-kata-v2" --version

say "6. Install again: a no-op that writes nothing"
"$KD" install --root "$ROOT" --payload "$W/payload.tar.zst" --shims qemu "${RT[@]}"

say "7. Add the clh shim: a new version dir, unchanged files hard-linked from the current one"
"$KD" plan --root "$ROOT" --payload "$W/payload.tar.zst" --shims qemu,clh "${RT[@]}" 2>/dev/null | grep -v '^+'
echo "(plan above, '+' lines left out; now the install)"
"$KD" install --root "$ROOT" --payload "$W/payload.tar.zst" --shims qemu,clh "${RT[@]}"
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
