# Shared helpers for integration tests (sourced). Every test works in its own temp dir and
# cleans up on exit; nothing outside it is touched.
set -euo pipefail
ROOTDIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KD_BUILD=${KD_BUILD:-$ROOTDIR/build}
KD=$KD_BUILD/kata-deploy
T=$(mktemp -d /tmp/kd-test.XXXXXX)
_kd_cleanup() { local rc=$?; chmod -R u+w "$T" 2>/dev/null || true; rm -rf "$T"; exit $rc; }
trap _kd_cleanup EXIT
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
