#!/usr/bin/env bash
# Builds each fuzz target with clang + libFuzzer (+ASan/UBSan) and runs it for N seconds on a
# copy of its corpus. New crashes are left in build-fuzz/<name>/ and fail the run.
set -euo pipefail
secs=$1; shift
cd "$(dirname "$0")/.."
B=build-fuzz
mkdir -p "$B"
CFLAGS="-std=gnu11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer-no-link,address,undefined -Ilib -I. $(pkg-config --cflags libcurl yaml-0.1 json-c libarchive libzstd openssl libkmod)"
LIBS="$(pkg-config --libs yaml-0.1 json-c libarchive libzstd openssl libkmod) -lpthread"
objs=()
# The engine's modules too (not its CLI): fuzz-import drives deployer/import.c.
# An object is rebuilt when its source or any header is newer (a struct changed in a header
# must not leave objects of two layouts in one binary).
newest_h=$(ls -t lib/*.h deployer/*.h | head -1)
for src in lib/*.c $(ls deployer/*.c | grep -v '/main\.c$'); do
	o=$B/$(basename "${src%.c}").o
	[ "$o" -nt "$src" ] && [ "$o" -nt "$newest_h" ] || clang $CFLAGS -c "$src" -o "$o"
	objs+=("$o")
done
fail=0
for f in "$@"; do
	name=$(basename "$f" .c); name=${name#fuzz-}
	bin=$B/fuzz-$name
	clang $CFLAGS -fsanitize=fuzzer "$f" "${objs[@]}" $LIBS -o "$bin"
	work=$B/$name; rm -rf "$work"; mkdir -p "$work/corpus"
	cp tests/fuzz/corpus/$name/* "$work/corpus/" 2>/dev/null || true
	echo "fuzz $name: ${secs}s"
	if ! (cd "$work" && ASAN_OPTIONS=detect_leaks=1 "../fuzz-$name" -max_total_time="$secs" -rss_limit_mb=2048 \
		-max_len=65536 corpus >log 2>&1); then
		echo "fuzz $name: FAILED (see $work/log)"; tail -30 "$work/log"; fail=1
	else
		echo "fuzz $name: $(grep -o '^Done [0-9]* runs' "$work/log" | awk '{print $2}') runs, ok"
	fi
done
exit $fail
