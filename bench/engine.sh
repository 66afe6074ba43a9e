#!/usr/bin/env bash
# The install engine on issue 13's many-small-files tree, optionally against another build of
# kata-deploy (BASE=/path/to/kata-deploy, e.g. main's before a change): bench/gen-tree.py's
# ~320 MB tree (7,952 entries) packed with bench/lib.sh's synthetic spec, `install --shims qemu`
# (kata + qemu: 7,156 files, 245 MB). Scenarios: first install (empty root); upgrade (the same
# tree with 5 % of the files one byte longer, over an install of the first). Wall time, CPU
# time (user + sys) and peak RSS from /usr/bin/time, RUNS (5) alternating runs, medians; then
# the system calls of one first install of each (strace -f -c).
#
# Every run installs into a new directory and the directories are removed only at the end: on
# ext4 without a journal (these machines) a file created soon after many were deleted makes
# the kernel scan past every recently deleted inode of its group (find_inode_bit ->
# recently_deleted), which took 60 % of an install's CPU when the bench removed the previous
# tree right before. Not part of `make check`.
source "$(dirname "$0")/lib.sh"
BASE=${BASE:-}
bench_workdir engine
trap 'rm -rf "$W"' EXIT

python3 bench/gen-tree.py "$W/a" "${BENCH_MB:-300}" >/dev/null
synthetic_spec >"$W/spec.yaml"
cp -a "$W/a" "$W/b"
python3 - "$W/b" <<'EOF'
import os, sys
files = sorted(os.path.join(dp, f) for dp, _, fn in os.walk(sys.argv[1]) for f in fn
               if not os.path.islink(os.path.join(dp, f)))
n = max(1, len(files) * 5 // 100)
for p in files[::max(1, len(files) // n)][:n]:
    with open(p, "ab") as f:
        f.write(b"\n")
EOF
for v in a b; do "$KD" payload pack "$W/$v" --spec "$W/spec.yaml" -o "$W/$v.tar.zst" >/dev/null; done
echo "tree: $(find "$W/a" | wc -l) entries, $(du -sm "$W/a" | cut -f1) MB; payload $(du -m "$W/a.tar.zst" | cut -f1) MB"

tools="ours"
[ -n "$BASE" ] && tools="base ours"
bin() { [ "$1" = base ] && echo "$BASE" || echo "$KD"; }
n=0
run() { # run TOOL SCENARIO: one timed run into a new root
	local tool=$1 sc=$2 root
	n=$((n + 1))
	root=$W/r$n
	mkdir "$root"
	if [ "$sc" = upgrade ]; then
		"$(bin "$tool")" install --root "$root" --payload "$W/a.tar.zst" --shims qemu --log-level error >/dev/null
	fi
	sync
	local in=a
	[ "$sc" = upgrade ] && in=b
	/usr/bin/time -f '%e %U %S %M' -o "$W/time" "$(bin "$tool")" install --root "$root" \
		--payload "$W/$in.tar.zst" --shims qemu --log-level error >/dev/null
	read -r t u s rss <"$W/time"
	echo "$t" >>"$W/t-$tool-$sc"
	echo "$u + $s" | bc >>"$W/cpu-$tool-$sc"
	echo "$rss" >>"$W/rss-$tool-$sc"
}
load0=$(cut -d' ' -f1-3 /proc/loadavg)
for i in $(seq "$RUNS"); do
	order=$tools
	[ $((i % 2)) = 1 ] || order=$(echo "$tools" | tr ' ' '\n' | tac | paste -sd' ')
	for tool in $order; do
		run "$tool" first
		run "$tool" upgrade
	done
done
load1=$(cut -d' ' -f1-3 /proc/loadavg)
for tool in $tools; do
	mkdir "$W/s-$tool"
	strace -f -c -o "$W/strace-$tool" "$(bin "$tool")" install --root "$W/s-$tool" \
		--payload "$W/a.tar.zst" --shims qemu --log-level error >/dev/null
done

printf '\n%-10s %-6s %9s %9s %9s\n' scenario tool "wall s" "cpu s" "RSS MiB"
for sc in first upgrade; do
	for tool in $tools; do
		printf '%-10s %-6s %9.3f %9.3f %9.1f\n' $sc $tool "$(median <"$W/t-$tool-$sc")" \
			"$(median <"$W/cpu-$tool-$sc")" "$(echo "$(median <"$W/rss-$tool-$sc") / 1024" | bc -l)"
	done
done
echo
echo "system calls of one first install (strace -f -c):"
printf '%-18s' syscall
for tool in $tools; do printf ' %8s' "$tool"; done
echo
for sc in total openat close fchmod sync_file_range write fcntl futex mkdirat linkat; do
	printf '%-18s' "$sc"
	for tool in $tools; do
		# "% time, seconds, usecs/call, calls, [errors,] syscall": calls is the 4th
		c=$(awk -v s="$sc" '$NF == s {print $4}' "$W/strace-$tool")
		printf ' %8s' "${c:-0}"
	done
	echo
done
echo
echo "runs: $RUNS each, alternating; medians"
echo "load average before: $load0, after: $load1; $(nproc) CPUs"
