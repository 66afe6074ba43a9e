#!/usr/bin/env bash
# The official TOML test suite (toml-test, built by scripts/peers/toml-test.sh) against
# lib/toml through the decoder adapter build/tests/toml-decoder: every valid test must decode
# to the expected tagged JSON, every invalid test must be rejected. Then a round trip: for every
# valid test file, parse + emit must give the identical bytes.
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${KD_BUILD:-$PWD/build}
DEC=$B/tests/toml-decoder
[ -x "$DEC" ] || { echo "missing $DEC (make all)"; exit 1; }
TT=$(scripts/peers/toml-test.sh)
echo "toml-test: $("$TT" version)"

W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT

rc=0
NO_COLOR=1 "$TT" test -toml=1.0 -timeout=5s -decoder="$DEC" >"$W/report" 2>&1 || rc=$?
strip() { sed 's/\x1b\[[0-9;]*m//g' "$1"; }
vp=$(strip "$W/report" | sed -n 's/.*valid tests: *\([0-9]*\) passed, *\([0-9]*\) failed.*/\1 \2/p' | head -n1)
ip=$(strip "$W/report" | sed -n 's/.*invalid tests: *\([0-9]*\) passed, *\([0-9]*\) failed.*/\1 \2/p' | head -n1)
if [ -z "$vp" ] || [ -z "$ip" ]; then
	strip "$W/report" | tail -n 40
	echo "FAIL: could not read the toml-test summary"
	exit 1
fi
set -- $vp; vpass=$1 vfail=$2
set -- $ip; ipass=$1 ifail=$2
echo "valid: $vpass/$((vpass + vfail)), invalid: $ipass/$((ipass + ifail)) passed"
if [ "$rc" -ne 0 ] || [ "$vfail" -ne 0 ] || [ "$ifail" -ne 0 ]; then
	strip "$W/report" | grep -A 25 'FAIL' | head -n 200
	echo "FAIL: toml-test reported failures (exit $rc)"
	exit 1
fi
[ "$vpass" -gt 100 ] && [ "$ipass" -gt 100 ] || { echo "FAIL: suspiciously few tests ran"; exit 1; }

# Round trip over the suite's own valid files.
"$TT" copy -toml=1.0 "$W/suite" >/dev/null
n=0 bad=0
while IFS= read -r -d '' f; do
	n=$((n + 1))
	if ! "$DEC" --roundtrip <"$f" >"$W/out" 2>"$W/err" || ! cmp -s "$f" "$W/out"; then
		bad=$((bad + 1))
		echo "round trip differs: ${f#"$W/suite/"} ($(cat "$W/err"))"
	fi
done < <(find "$W/suite/valid" -name '*.toml' -print0)
echo "round trip: $((n - bad))/$n valid files re-emitted byte for byte"
[ "$n" -gt 100 ] || { echo "FAIL: toml-test copy gave only $n valid files"; exit 1; }
[ "$bad" -eq 0 ] || { echo "FAIL: $bad files changed on parse + emit"; exit 1; }
echo "PASS"
