#!/usr/bin/env bash
# Install of a subset of shims, format 1 vs format 2 of the same payload, in one run (issue 13
# part 3): a ~BENCH_MB (300) MB Kata-shaped tree (bench/gen-tree.py) packed with three
# components (kata: shim, configs, kernel, image, small files; qemu; clh) and two shims
# (qemu = kata + qemu, clh = kata + clh), then `kata-deploy install --shims qemu` into an empty
# root, alternating format 1 (tests/tools/payload-v1.py of the same payload: one zstd stream)
# and format 2 (one frame per component), RUNS (5) times each. Prints medians of wall time,
# peak RSS (/usr/bin/time -v) and the bytes the install read and decompressed (its
# --log-level debug line), and the machine's load.
set -euo pipefail
cd "$(dirname "$0")/.."
O=${O:-build}
KD=$PWD/$O/kata-deploy
RUNS=${RUNS:-5}
W=$(mktemp -d "${BENCH_DIR:-/var/tmp}/kd-bench-subset.XXXXXX")
trap 'rm -rf "$W"' EXIT
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

python3 bench/gen-tree.py "$W/src" "${BENCH_MB:-300}"
cat >"$W/spec.yaml" <<'SPEC'
version: 1.0-bench
components:
  - name: kata
    paths: [bin/containerd-shim-kata-v2, share/defaults/, share/kata-containers/]
  - name: qemu
    paths: [bin/qemu-system-x86_64]
  - name: clh
    paths: [bin/cloud-hypervisor]
shims:
  qemu: [kata, qemu]
  clh: [kata, clh]
SPEC
"$KD" payload pack "$W/src" --spec "$W/spec.yaml" -o "$W/f2.tar.zst" >/dev/null
python3 tests/tools/payload-v1.py "$W/f2.tar.zst" "$W/f1.tar.zst"
echo "tree: $(du -sm "$W/src" | cut -f1) MB; payload: format 2 $(du -m "$W/f2.tar.zst" | cut -f1) MB, format 1 $(du -m "$W/f1.tar.zst" | cut -f1) MB"
for i in $(seq "$RUNS"); do
	for f in 1 2; do
		rm -rf "$W/root"; mkdir -p "$W/root"; sync
		/usr/bin/time -f '%e %M' -o "$W/time" \
			"$KD" install --root "$W/root" --payload "$W/f$f.tar.zst" --shims qemu \
			--log-level debug 2>"$W/log" >/dev/null
		read -r t rss <"$W/time"
		echo "$t" >>"$W/t$f"; echo "$rss" >>"$W/rss$f"
		grep -o '[0-9]* bytes decompressed' "$W/log" | cut -d' ' -f1 >>"$W/dec$f"
		grep -o '[0-9]* bytes of [0-9]* read' "$W/log" | cut -d' ' -f1 >>"$W/read$f"
	done
done
for f in 1 2; do
	printf 'install --shims qemu, format %s: %s s, peak RSS %s KiB, read %s MB, decompressed %s MB\n' \
		"$f" "$(median <"$W/t$f")" "$(median <"$W/rss$f")" \
		"$(echo "scale=1; $(median <"$W/read$f") / 1000000" | bc)" \
		"$(echo "scale=1; $(median <"$W/dec$f") / 1000000" | bc)"
done
echo "ratio format 2 / format 1: time $(echo "scale=2; $(median <"$W/t2") / $(median <"$W/t1")" | bc)," \
	"decompressed $(echo "scale=2; $(median <"$W/dec2") / $(median <"$W/dec1")" | bc)"
echo "load: $(uptime)"
