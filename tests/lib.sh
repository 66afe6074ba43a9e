# Shared helpers for integration tests (sourced). Every test works in its own temp dir and
# cleans up on exit; nothing outside it is touched.
set -euo pipefail
ROOTDIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KD_BUILD=${KD_BUILD:-$ROOTDIR/build}
KD=$KD_BUILD/kata-deploy
T=$(mktemp -d /tmp/kd-test.XXXXXX)
# Upstream sources pinned by the recipes (Kata 4.1.0 and its git dependencies), used as the
# builder's --mirror: ../shared/sources beside the checkout, or the workplace's copy.
if [ -z "${KD_SHARED_SOURCES:-}" ]; then
	for d in "$ROOTDIR/../shared/sources" /work/shared/sources; do
		[ -f "$d/SHA256SUMS" ] && { KD_SHARED_SOURCES=$(cd "$d" && pwd); break; }
	done
fi
export KD_SHARED_SOURCES=${KD_SHARED_SOURCES:-$ROOTDIR/../shared/sources}
_kd_cleanup() { local rc=$?; chmod -R u+w "$T" 2>/dev/null || true; rm -rf "$T"; exit $rc; }
trap _kd_cleanup EXIT
# kubectl and helm keep API discovery and HTTP caches in ~/.kube/cache by default, keyed by the
# server's host:port: every sandboxed node is 10.250.0.1:443, so two node tests at once would
# share (and the machine would keep) them.
export KUBECACHEDIR=$T/kube-cache
npass=0
nfail=0

ok() { npass=$((npass + 1)); echo "ok - $*"; }
not_ok() { nfail=$((nfail + 1)); echo "not ok - $*"; }
check() { # check "description" command...
	local d=$1; shift
	if "$@"; then ok "$d"; else not_ok "$d"; fi
}
finish() {
	echo "$npass passed, $nfail failed"
	[ "$nfail" -eq 0 ]
}

source "$ROOTDIR/scripts/hostroot.sh"

# wait_locked PATH: until another process holds a lock on PATH (flock(1) started in the background
# has taken it), at most 10 s. A fixed sleep before relying on it is a race on a loaded machine.
wait_locked() {
	local i
	for i in $(seq 1 200); do
		flock -n -x "$1" true 2>/dev/null || return 0
		sleep 0.05
	done
	echo "# nobody took a lock on $1 within 10 s" >&2
	return 1
}

# expect_fail "description" "text the error must contain" command...
expect_fail() {
	local d=$1 want=$2; shift 2
	local out rc=0
	out=$("$@" 2>&1) || rc=$?
	if [ "$rc" -ne 0 ] && grep -qF -- "$want" <<<"$out"; then
		ok "$d"
	else
		not_ok "$d (rc=$rc, wanted '$want', got: $(head -c 400 <<<"$out"))"
	fi
}
