#!/usr/bin/env bash
# Install of a subset of shims (issue 13 part 3): a ~BENCH_MB (300) MB Kata-shaped tree
# (bench/gen-tree.py) packed with three components (kata: shim, configs, kernel, image, small
# files; qemu; clh) and two shims (qemu = kata + qemu, clh = kata + clh), then
# `kata-deploy install --shims qemu` into an empty root, the variants alternating, RUNS (5) each:
#   format2  this kata-deploy, the payload it packs (one zstd frame per component)
#   format1  this kata-deploy, the same payload as format 1 (one zstd stream; made by
#            KD_BEFORE's pack when given, else by tests/tools/payload-v1.py)
#   before   KD_BEFORE (a kata-deploy built from an older commit), the same format 1 payload
# Prints medians of wall time, CPU time (user + system, less sensitive to the machine's load),
# peak RSS (/usr/bin/time), the bytes the install read and decompressed (its --log-level debug
# line; an older binary does not print them), and the load.
source "$(dirname "$0")/lib.sh"
bench_workdir subset
trap 'rm -rf "$W"' EXIT

python3 bench/gen-tree.py "$W/src" "${BENCH_MB:-300}"
synthetic_spec >"$W/spec.yaml"
"$KD" payload pack "$W/src" --spec "$W/spec.yaml" -o "$W/format2.tar.zst" >/dev/null
variants="format2 format1"
if [ -n "${KD_BEFORE:-}" ]; then
	"$KD_BEFORE" payload pack "$W/src" --spec "$W/spec.yaml" -o "$W/format1.tar.zst" >/dev/null
	variants="$variants before"
else
	python3 tests/tools/payload-v1.py "$W/format2.tar.zst" "$W/format1.tar.zst"
fi
cp "$W/format1.tar.zst" "$W/before.tar.zst"
echo "tree: $(du -sm "$W/src" | cut -f1) MB, $(find "$W/src" -type f | wc -l) files;" \
	"payload: format 2 $(du -m "$W/format2.tar.zst" | cut -f1) MB, format 1 $(du -m "$W/format1.tar.zst" | cut -f1) MB"
for _ in $(seq "$RUNS"); do
	for v in $variants; do
		bin=$KD
		[ "$v" = before ] && bin=$KD_BEFORE
		rm -rf "$W/root"; mkdir -p "$W/root"; sync
		/usr/bin/time -f '%e %U %S %M' -o "$W/time" \
			"$bin" install --root "$W/root" --payload "$W/$v.tar.zst" --shims qemu \
			--log-level debug 2>"$W/log" >/dev/null
		read -r t u s rss <"$W/time"
		echo "$t" >>"$W/t-$v"; echo "$u + $s" | bc >>"$W/cpu-$v"; echo "$rss" >>"$W/rss-$v"
		grep -o '[0-9]* bytes decompressed' "$W/log" | cut -d' ' -f1 >>"$W/dec-$v" || true
		grep -o '[0-9]* bytes of [0-9]* read' "$W/log" | cut -d' ' -f1 >>"$W/read-$v" || true
	done
done
mb() { [ -s "$1" ] && echo "$(echo "scale=1; $(median <"$1") / 1000000" | bc) MB" || echo "-"; }
for v in $variants; do
	printf 'install --shims qemu, %-7s: %5s s wall, %5s s CPU, peak RSS %s KiB, read %s, decompressed %s\n' \
		"$v" "$(median <"$W/t-$v")" "$(median <"$W/cpu-$v")" "$(median <"$W/rss-$v")" \
		"$(mb "$W/read-$v")" "$(mb "$W/dec-$v")"
done
ratio() { echo "scale=2; $(median <"$W/$1-$2") / $(median <"$W/$1-$3")" | bc; }
echo "format2 / format1: wall $(ratio t format2 format1), CPU $(ratio cpu format2 format1)," \
	"peak RSS $(ratio rss format2 format1), decompressed $(ratio dec format2 format1)"
[ -n "${KD_BEFORE:-}" ] && echo "format2 / before: wall $(ratio t format2 before)," \
	"CPU $(ratio cpu format2 before), peak RSS $(ratio rss format2 before)"
echo "load: $(uptime)"
