#!/usr/bin/env bash
# The Kata components (docs/KATA.md): for each, the cache hit time (median of $RUNS, the key
# computed and the stamp read, nothing run), the tarball's size, and its files' installed size;
# the payload's size per shim. Cold build times are not re-measured here (an agent build takes
# 20+ minutes): they are the `built <seconds>` lines kata-build printed when the cache was
# filled, kept by this script in <cache>/bench-cold.txt when it sees them, and docs/RECIPES.md
# records the figures measured so far. Needs the components in the cache (make check fills it).
set -euo pipefail
cd "$(dirname "$0")/.."
O=${O:-build}
KB=$PWD/$O/kata-build
RUNS=${RUNS:-5}
CACHE=${KD_BUILD_CACHE:-$HOME/.cache/kata-build}
MIRROR=${KD_SHARED_SOURCES:-$PWD/../shared/sources}
[ -d "$MIRROR" ] || MIRROR=/work/shared/sources
W=$(mktemp -d "${BENCH_DIR:-/var/tmp}/kd-bench-kata.XXXXXX")
trap 'rm -rf "$W"' EXIT
COMPONENTS=${COMPONENTS:-"shim-v2 kata-agent guest-initrd virtiofsd qemu kernel vhost-device-vsock kata-ctl"}
KBC="$KB --cache $CACHE --mirror $MIRROR --out $W/out"
now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

echo "load: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs, cache $CACHE"
printf '%-20s %10s %12s %14s %s\n' component hit-median tarball installed cold
for c in $COMPONENTS; do
	out=$($KBC component "$c" 2>/dev/null) || { echo "$c: not buildable here (see kata-build component $c)"; continue; }
	if grep -q " built " <<<"$out"; then
		echo "$c $(awk '{print $4}' <<<"$out") $(date -u +%FT%TZ)" >>"$CACHE/bench-cold.txt"
	fi
	: >"$W/t"
	for _ in $(seq "$RUNS"); do
		t0=$(now)
		$KBC component "$c" >/dev/null 2>&1
		echo "$(now) - $t0" | bc >>"$W/t"
	done
	tar="$W/out/kata-static-$c.tar.zst"
	inst=$(tar -tvf "$tar" | awk '{s += $3} END {print s}')
	cold=$(awk -v c="$c" '$1 == c {v = $2} END {print v ? v : "-"}' "$CACHE/bench-cold.txt" 2>/dev/null || echo -)
	printf '%-20s %9.3fs %11.1fM %13.1fM %s\n' "$c" "$(median <"$W/t")" \
		"$(echo "$(stat -c %s "$tar") / 1048576" | bc -l)" "$(echo "$inst / 1048576" | bc -l)" "$cold"
done
if $KBC payload >"$W/payload.log" 2>&1; then
	p=$W/out/payload.tar.zst
	# the default payload: every shim's components and shims.yaml's debug_tools
	printf 'payload (%s): %.1f MB\n' \
		"$(jq -r '[.components[].name] | join(" ")' <(tar --zstd -xOf "$p" kata-payload.json))" \
		"$(echo "$(stat -c %s "$p") / 1000000" | bc -l)"
fi
