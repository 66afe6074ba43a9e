#!/usr/bin/env bash
# Replays each fuzz target's corpus (tests/fuzz/corpus/<name>/) through its replay driver.
set -u
fail=0
for r in "$@"; do
	name=${r##*/replay-}
	dir=tests/fuzz/corpus/$name
	if [ ! -d "$dir" ] || [ -z "$(ls -A "$dir")" ]; then echo "replay $name: no corpus in $dir"; fail=1; continue; fi
	if ! "$r" "$dir"/* >/dev/null; then echo "replay $name: FAILED"; fail=1; else echo "replay $name: $(ls "$dir" | wc -l) inputs ok"; fi
done
exit $fail
