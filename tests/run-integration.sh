#!/usr/bin/env bash
# Runs every tests/integration/test-*.sh; each prints its own lines and exits non-zero on failure.
# Set TESTS="name ..." to run a subset.
set -u
cd "$(dirname "$0")/.."
export O=${O:-build}
export KD_BUILD=$PWD/$O
pass=0 fail=0 failed=()
list=${TESTS:-$(cd tests/integration && ls test-*.sh | sed 's/\.sh$//')}
for t in $list; do
	start=$(date +%s)
	if bash "tests/integration/$t.sh" >"$O/$t.log" 2>&1; then
		pass=$((pass + 1)); echo "ok - $t ($(( $(date +%s) - start ))s)"
	else
		fail=$((fail + 1)); failed+=("$t"); echo "not ok - $t ($(( $(date +%s) - start ))s)"
		tail -n 40 "$O/$t.log" | sed 's/^/#   /'
	fi
done
echo "integration: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
