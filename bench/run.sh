#!/usr/bin/env bash
# Benchmarks against the physical baselines, in one run, medians of $RUNS (default 5):
#   install:    kata-deploy install  vs  tar -I zstd -xf of the same payload into an empty dir,
#               and vs the durable baseline `tar -I zstd -xf ... && sync` (install ends with a
#               syncfs() before its atomic switch, plain tar leaves its data in the page cache)
#   no-op:      kata-deploy install of the same payload again (target <= 3% of a full install)
#   peak RSS:   of kata-deploy install (target <= 16 MiB)
#   pack:       kata-deploy payload pack  vs  tar --sort=name ... | zstd -T0 -10
# The payload is generated (bench/gen-tree.py): a few large binaries + a few thousand small
# files, ~300 MB, like a real Kata payload. Work files go to $BENCH_DIR (default /var/tmp).
set -euo pipefail
cd "$(dirname "$0")/.."
O=${O:-build}
KD=$PWD/$O/kata-deploy
RUNS=${RUNS:-5}
W=$(mktemp -d "${BENCH_DIR:-/var/tmp}/kd-bench.XXXXXX")
trap 'rm -rf "$W"' EXIT

python3 bench/gen-tree.py "$W/src" "${BENCH_MB:-300}"
size=$(du -sm "$W/src" | cut -f1); files=$(find "$W/src" -type f | wc -l)
echo "tree: ${size} MB, $files files"

now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
maxrss_kb() { python3 -c 'import resource,subprocess,sys
r=subprocess.run(sys.argv[1:],stdout=subprocess.DEVNULL,stderr=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss if r.returncode==0 else -1)' "$@"; }

# pack
: >"$W/t_pack"; : >"$W/t_tarzstd"
for i in $(seq "$RUNS"); do
	s=$(now); "$KD" payload pack "$W/src" --version 1.0-bench -o "$W/payload.tar.zst" >/dev/null; e=$(now)
	echo "$e - $s" | bc >>"$W/t_pack"
	s=$(now)
	tar -C "$W/src" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf - . | zstd -q -T0 -10 >"$W/base.tar.zst"
	e=$(now); echo "$e - $s" | bc >>"$W/t_tarzstd"
done
pk=$(median <"$W/t_pack"); tz=$(median <"$W/t_tarzstd")
echo "pack:      ours $pk s   tar|zstd -T0 -10 $tz s   ratio $(echo "scale=2; $pk / $tz" | bc)   (payload $(du -m "$W/payload.tar.zst" | cut -f1) MB, baseline $(du -m "$W/base.tar.zst" | cut -f1) MB)"

# install vs tar -x
: >"$W/t_inst"; : >"$W/t_tarx"; : >"$W/t_tarxs"; : >"$W/t_noop"
for i in $(seq "$RUNS"); do
	rm -rf "$W/x" "$W/root"; mkdir -p "$W/x" "$W/root"; sync
	s=$(now); tar -I zstd -xf "$W/payload.tar.zst" -C "$W/x"; e=$(now)
	echo "$e - $s" | bc >>"$W/t_tarx"
	rm -rf "$W/x"; mkdir -p "$W/x"; sync
	s=$(now); tar -I zstd -xf "$W/payload.tar.zst" -C "$W/x" && sync; e=$(now)
	echo "$e - $s" | bc >>"$W/t_tarxs"
	rm -rf "$W/x"; sync
	s=$(now); "$KD" install --root "$W/root" --payload "$W/payload.tar.zst" --log-level error >/dev/null; e=$(now)
	echo "$e - $s" | bc >>"$W/t_inst"
	s=$(now); "$KD" install --root "$W/root" --payload "$W/payload.tar.zst" --log-level error >/dev/null; e=$(now)
	echo "$e - $s" | bc >>"$W/t_noop"
done
ti=$(median <"$W/t_inst"); tx=$(median <"$W/t_tarx"); txs=$(median <"$W/t_tarxs"); tn=$(median <"$W/t_noop")
echo "install:   ours $ti s   tar -I zstd -xf $tx s   ratio $(echo "scale=2; $ti / $tx" | bc)   (target <= 1.2)"
echo "install:   ours $ti s   tar -I zstd -xf && sync $txs s   ratio $(echo "scale=2; $ti / $txs" | bc)   (durable baseline)"
echo "no-op:     ours $tn s   = $(echo "scale=2; 100 * $tn / $ti" | bc)% of a full install   (target <= 3%)"
rm -rf "$W/root"; mkdir -p "$W/root"
rss=$(maxrss_kb "$KD" install --root "$W/root" --payload "$W/payload.tar.zst" --log-level error)
echo "peak RSS:  install $((rss / 1024)) MiB ($rss KiB)   (target <= 16 MiB)"
rss=$(maxrss_kb "$KD" install --root "$W/root" --payload "$W/payload.tar.zst" --log-level error)
echo "peak RSS:  no-op install $((rss / 1024)) MiB ($rss KiB)"
