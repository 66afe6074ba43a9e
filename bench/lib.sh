# Sourced by the benchmarks: errexit, the repository root as the working directory, the
# programs of $O, RUNS, median, a work directory, the shared upstream sources and the spec of the
# synthetic tree's three components (bench/gen-tree.py).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
O=${O:-build}
KD=$PWD/$O/kata-deploy
KB=$PWD/$O/kata-build
RUNS=${RUNS:-5}
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
# bench_workdir NAME: W, a new directory under $BENCH_DIR (default /var/tmp); the caller's EXIT
# trap removes it.
bench_workdir() { W=$(mktemp -d "${BENCH_DIR:-/var/tmp}/kd-bench-$1.XXXXXX"); }
# shared_sources: the directory of upstream's source archives (../shared/sources beside the
# checkout, or the workplace's copy), or fail.
shared_sources() {
	local d
	for d in "${KD_SHARED_SOURCES:-}" "$PWD/../shared/sources" /work/shared/sources; do
		[ -n "$d" ] && [ -f "$d/SHA256SUMS" ] && { (cd "$d" && pwd); return 0; }
	done
	return 1
}
# synthetic_spec: the payload spec of gen-tree.py's tree: kata (shim, configs, kernel, image,
# small files), qemu, clh; shims qemu = kata + qemu, clh = kata + clh.
synthetic_spec() {
	cat <<-'SPEC'
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
}
