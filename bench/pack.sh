#!/usr/bin/env bash
# kata-build packing and cache hits, against the physical baseline in the same run:
#   pack:      kata-build component (fixed-env step + deterministic tar.zst of the outputs)
#              vs  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner | zstd -T0 -10
#   cache hit: kata-build component of an unchanged component (key, lookup, link to out/)
# Medians of BENCH_RUNS (5) runs over a generated ~BENCH_MB (300) MB Kata-shaped tree.
# Our figure includes the step that hardlinks the tree into the build's output dir.
set -euo pipefail
cd "$(dirname "$0")/.."
KB=${O:-build}/kata-build
RUNS=${BENCH_RUNS:-5}
W=$(mktemp -d /tmp/kb-bench.XXXXXX)
trap 'rm -rf "$W"' EXIT
now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

python3 bench/gen-tree.py "$W/src" "${BENCH_MB:-300}"
mkdir -p "$W/art/recipes"
cp artifacts/versions.yaml "$W/art/"
printf 'shims:\n  bench: [bench]\n' >"$W/art/shims.yaml"
cat >"$W/art/recipes/bench.yaml" <<REC
name: bench
version: "1"
steps:
  - mkdir -p "\$KB_OUT" && cp -al "$W/src/opt" "\$KB_OUT/"
outputs: # recipes may not claim opt/kata/ itself, only paths under it
  - opt/kata/bin/
  - opt/kata/share/
REC
kb() { "$KB" --artifacts "$W/art" --cache "$W/cache" --out "$W/out" "$@" >/dev/null 2>&1; }
kb component bench # warm the page cache and the cache dir
: >"$W/t_ours"; : >"$W/t_tar"; : >"$W/t_hit"
for _ in $(seq "$RUNS"); do
	s=$(now); kb --force component bench; e=$(now)
	echo "$e - $s" | bc >>"$W/t_ours"
	s=$(now)
	tar -C "$W/src" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf - opt |
		zstd -q -T0 -10 >"$W/base.tar.zst"
	e=$(now)
	echo "$e - $s" | bc >>"$W/t_tar"
	s=$(now); kb component bench; e=$(now)
	echo "$e - $s" | bc >>"$W/t_hit"
done
ours=$(median <"$W/t_ours"); base=$(median <"$W/t_tar"); hit=$(median <"$W/t_hit")
echo "tree: $(du -sm "$W/src" | cut -f1) MB, $(find "$W/src" | wc -l) entries"
echo "pack:      kata-build $ours s   tar|zstd -T0 -10 $base s   ratio $(echo "scale=2; $ours / $base" | bc)   (ours $(du -m "$W/out/kata-static-bench.tar.zst" | cut -f1) MB, baseline $(du -m "$W/base.tar.zst" | cut -f1) MB)"
echo "cache hit: kata-build component (unchanged) $hit s"
