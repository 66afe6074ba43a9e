#!/usr/bin/env bash
# Side by side with upstream's own kata-deploy (issue 13): the same Kata components, installed
# by this kata-deploy and by upstream 4.1.0's Rust binary, in one run, alternating, RUNS (5)
# times each, medians. Not part of `make check` (docs/BENCH.md).
#
# Input: the qemu shim's components as kata-build makes them from upstream 4.1.0 source
# (kata-static-<component>.tar.zst, built or taken from the cache by key), the same bytes for
# both tools:
#   upstream  /opt/kata-artifacts/tarballs/kata-static-<c>.tar.zst + shim-components.json
#             (qemu -> those components) + versions.yaml, as its image holds them; its staged
#             action `install-stage-artifacts` (no API server: CONTAINER_RUNTIME_VERSION set)
#             in a chroot whose /opt/kata is a directory of the bench, in a private mount
#             namespace; upstream's binary built by kata-build (recipe upstream-kata-deploy).
#   ours      the payload of the same component tarballs (`kata-deploy payload pack` of their
#             union, one component per tarball), `kata-deploy install --shims qemu` into an
#             empty root.
# INPUT=synthetic instead: issue 13's own tree (bench/gen-tree.py, 300 MB, ~7,000 files; BENCH_MB
# to change its size) as two components, kata (the shim, share/) and qemu (its binary), the
# shape of the figures in the issue.
# Scenarios: first install (empty target); no-op (the same input again); upgrade (5 % of the
# files changed, one byte appended, in new tarballs / a new payload). Wall time, CPU time and
# peak RSS (/usr/bin/time) of each, and the bytes each wrote (its file system outputs, %O).
# Upstream verifies nothing per file and does not sync; ours hashes every file, checks the
# manifest, syncs the file system and switches atomically: the figures include that work.
source "$(dirname "$0")/lib.sh"
CACHE=${KD_BUILD_CACHE:-$HOME/.cache/kata-build}
SRC=$(shared_sources) || { echo "upstream.sh: no ../shared/sources (set KD_SHARED_SOURCES)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "upstream.sh: needs root (unshare, chroot)" >&2; exit 1; }
bench_workdir upstream
trap 'rm -rf "$W"' EXIT
INPUT=${INPUT:-kata}
COMPONENTS="shim-v2 qemu kernel guest-initrd virtiofsd"
[ "$INPUT" = synthetic ] && COMPONENTS="kata qemu"
case $INPUT in kata | synthetic) ;; *) echo "upstream.sh: INPUT is kata or synthetic" >&2; exit 2 ;; esac

# ---- the inputs ----
KBC="$KB --cache $CACHE --mirror $SRC --out $W/kb -q"
KB_COMPONENTS=$COMPONENTS
[ "$INPUT" = synthetic ] && KB_COMPONENTS=
echo "building (or taking from the cache) upstream-kata-deploy${KB_COMPONENTS:+ and the qemu set: $KB_COMPONENTS}"
$KBC component upstream-kata-deploy $KB_COMPONENTS >"$W/kb.log" 2>&1 || { tail -30 "$W/kb.log"; exit 1; }
mkdir -p "$W/up-bin"
tar -I zstd -xf "$W/kb/kata-static-upstream-kata-deploy.tar.zst" -C "$W/up-bin"
UPBIN=$W/up-bin/opt/kata/bin/upstream-kata-deploy
SHIMJSON=$W/up-bin/opt/kata/share/upstream-kata-deploy/shim-components.json

# inputs a (as built) and b (5 % of the files changed): per component a tree, its tarball for
# upstream, and our payload of the union.
mkdir -p "$W/a"
if [ "$INPUT" = synthetic ]; then
	# gen-tree.py's tree, split as bench/lib.sh's synthetic spec: qemu = its binary, kata = the
	# rest but cloud-hypervisor (the clh shim's)
	python3 bench/gen-tree.py "$W/gen" "${BENCH_MB:-300}" >/dev/null
	mkdir -p "$W/a/qemu/opt/kata/bin"
	mv "$W/gen/opt/kata/bin/qemu-system-x86_64" "$W/a/qemu/opt/kata/bin/"
	rm -f "$W/gen/opt/kata/bin/cloud-hypervisor"
	mv "$W/gen" "$W/a/kata"
else
	for c in $COMPONENTS; do
		mkdir -p "$W/a/$c" && tar -I zstd -xf "$W/kb/kata-static-$c.tar.zst" -C "$W/a/$c"
	done
fi
spec() { # spec DIR: our payload spec, one component per upstream tarball
	if [ "$INPUT" = synthetic ]; then # bench/lib.sh's, clh left out
		synthetic_spec | sed '/name: clh/,/cloud-hypervisor/d; /^  clh:/d'
		return
	fi
	echo "version: 4.1.0-bench"
	echo "components:"
	for c in $COMPONENTS; do
		echo "  - name: $c"
		echo "    paths: [$( (cd "$1/$c/opt/kata" && find . ! -type d | sed 's|^\./||' | sort) | paste -sd, -)]"
	done
	echo "shims:"
	echo "  qemu: [$(echo $COMPONENTS | tr ' ' ,)]"
}
mkinput() { # mkinput a|b: tarballs (upstream's layout) and the payload (ours)
	local v=$1 c
	mkdir -p "$W/$v/art/tarballs" "$W/$v/union"
	for c in $COMPONENTS; do
		tar --sort=name --owner=0 --group=0 --numeric-owner -C "$W/$v/$c" -cf - opt |
			zstd -q -T0 -10 -o "$W/$v/art/tarballs/kata-static-$c.tar.zst"
		cp -a "$W/$v/$c/." "$W/$v/union/"
	done
	python3 - "$SHIMJSON" "$COMPONENTS" >"$W/$v/art/shim-components.json" <<-'PY'
		import json, sys
		doc = json.load(open(sys.argv[1]))
		doc["shims"] = {"qemu": {"x86_64": sys.argv[2].split()}}
		json.dump(doc, sys.stdout, indent=1)
	PY
	tar -xzf "$SRC/kata-containers-4.1.0.tar.gz" -O kata-containers-4.1.0/versions.yaml >"$W/$v/art/versions.yaml"
	spec "$W/$v" >"$W/$v/spec.yaml"
	"$KD" payload pack "$W/$v/union" --spec "$W/$v/spec.yaml" -o "$W/$v/payload.tar.zst" >/dev/null
}
cp -a "$W/a" "$W/b"
python3 - "$W/b" $COMPONENTS <<'PY'
import os, sys
files = sorted(os.path.join(dp, f) for c in sys.argv[2:] for dp, _, fn in os.walk(os.path.join(sys.argv[1], c)) for f in fn
               if not os.path.islink(os.path.join(dp, f)))
step = max(1, len(files) // max(1, len(files) * 5 // 100))
for p in files[::step][: max(1, len(files) * 5 // 100)]:
    with open(p, "ab") as f:
        f.write(b"\n")
PY
mkinput a
mkinput b
files=$(find "$W/a/union" ! -type d | wc -l)
echo "input: $files files, $(du -sm "$W/a/union" | cut -f1) MB installed;" \
	"upstream tarballs $(du -cm "$W"/a/art/tarballs/* | tail -1 | cut -f1) MB, our payload $(du -m "$W/a/payload.tar.zst" | cut -f1) MB"

# ---- the two installers ----
# upstream: a chroot holding its static binary, /opt/kata (the target), /opt/kata-artifacts
# (bind-mounted input), /host-run-lock (its node lock), /proc and /dev.
UPROOT=$W/uproot
mkdir -p "$UPROOT"/{opt/kata,opt/kata-artifacts,host-run-lock,proc,dev,tmp,bin}
cp "$UPBIN" "$UPROOT/bin/kata-deploy"
up_env=(NODE_NAME=bench CONTAINER_RUNTIME_VERSION=containerd://2.2.9 SHIMS_X86_64=qemu
	DEFAULT_SHIM_X86_64=qemu RUST_LOG=warn)
cmd_up() { # cmd_up a|b: argv of upstream's install of input a or b
	cmd=(unshare --mount --propagation private -- sh -c '
		mount --bind "$1" "$0/opt/kata-artifacts" && mount -t proc proc "$0/proc" &&
		mount --rbind /dev "$0/dev" && shift && exec env -i "$@" /usr/sbin/chroot "$0" /bin/kata-deploy install-stage-artifacts' \
		"$UPROOT" "$W/$1/art" "${up_env[@]}")
}
cmd_our() { cmd=("$KD" install --root "$W/our" --payload "$W/$1/payload.tar.zst" --shims qemu --log-level error); }
target() { [ "$1" = up ] && echo "$UPROOT/opt/kata" || echo "$W/our"; }
reset_target() { rm -rf "$(target "$1")"; mkdir -p "$(target "$1")"; }

measure() { # measure TOOL SCENARIO INPUT: one timed run, appended to the figures
	local tool=$1 sc=$2 in=$3
	sync
	"cmd_$tool" "$in"
	# %O: file system outputs in 512-byte units (the bytes the run dirtied in the page cache,
	# so what it wrote; a hardlink or a restored mtime changes nothing in it)
	if ! /usr/bin/time -f '%e %U %S %M %O' -o "$W/time" "${cmd[@]}" >"$W/$tool.log" 2>&1; then
		echo "$tool $sc failed:" >&2; tail -20 "$W/$tool.log" >&2; exit 1
	fi
	read -r t u s rss out <"$W/time"
	echo "$t" >>"$W/t-$tool-$sc"; echo "$u + $s" | bc >>"$W/cpu-$tool-$sc"; echo "$rss" >>"$W/rss-$tool-$sc"
	echo "$out * 512 / 1000000" | bc -l >>"$W/mb-$tool-$sc"
}
load0=$(cut -d' ' -f1-3 /proc/loadavg)
for i in $(seq "$RUNS"); do
	order="up our"
	[ $((i % 2)) = 1 ] || order="our up"
	for tool in $order; do
		reset_target $tool
		measure $tool first a
		measure $tool noop a
		measure $tool upgrade b
	done
done
load1=$(cut -d' ' -f1-3 /proc/loadavg)

# Both ended on input b: every file of b must be in both trees with b's bytes (upstream edits
# the shims' configuration files in place, so those are left out of its comparison).
(cd "$W/b/union/opt/kata" && find . -type f | sort) >"$W/files"
bad=0
while read -r f; do
	for t in "$W/our/opt/kata" "$UPROOT/opt/kata"; do
		case $t:$f in "$UPROOT"*:./share/defaults/*) continue ;; esac
		cmp -s "$W/b/union/opt/kata/$f" "$t/$f" || { echo "warning: $t/$f is not input b's" >&2; bad=1; }
	done
done <"$W/files"
[ $bad = 1 ] || echo "both installs hold input b's $(wc -l <"$W/files") files, byte for byte"

printf '\n%-10s %-8s %9s %9s %9s %11s\n' scenario tool "wall s" "cpu s" "RSS MiB" "written MB"
for sc in first noop upgrade; do
	for tool in our up; do
		printf '%-10s %-8s %9.3f %9.3f %9.1f %11.1f\n' $sc $([ $tool = up ] && echo upstream || echo ours) \
			"$(median <"$W/t-$tool-$sc")" "$(median <"$W/cpu-$tool-$sc")" \
			"$(echo "$(median <"$W/rss-$tool-$sc") / 1024" | bc -l)" "$(median <"$W/mb-$tool-$sc")"
	done
	printf '%-10s %-8s %9.2f %9.2f %9.2f\n' $sc "ratio" \
		"$(echo "$(median <"$W/t-our-$sc") / $(median <"$W/t-up-$sc")" | bc -l)" \
		"$(echo "$(median <"$W/cpu-our-$sc") / $(median <"$W/cpu-up-$sc")" | bc -l)" \
		"$(echo "$(median <"$W/rss-our-$sc") / $(median <"$W/rss-up-$sc")" | bc -l)"
done
echo
echo "runs: $RUNS each, alternating; medians; ratio = ours / upstream"
echo "load average before: $load0, after: $load1; $(nproc) CPUs"
