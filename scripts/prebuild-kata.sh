#!/usr/bin/env bash
# make test's cache warmer: builds the Kata components the tests use (test-builder's qemu and
# kernel, test-kata's payload set) into the real build cache in the background, while the test
# peers (Go) build in the foreground. On a cold machine the two are the long parts of CI (about
# 25 and 50 minutes) and neither keeps both cores busy alone (a cold run used 1.07 cores on
# average), so they overlap, the prebuild at a lower priority. The tests then take the
# components from the cache by key; a test that gets there first waits on kata-build's
# per-component lock, never builds twice. Nothing here decides a result: a failed prebuild only
# means the test builds the component itself and reports the real error. docs/TEST-PEERS.md
# has the figures.
#   prebuild-kata.sh start   start it (returns at once); O= as for make
#   prebuild-kata.sh wait    wait for it, print how it went and how long it took
#   prebuild-kata.sh stop    stop it if it still runs (make test's exit trap: a failed step)
set -euo pipefail
cd "$(dirname "$0")/.."
O=${O:-build}
CACHE=${KD_BUILD_CACHE:-$HOME/.cache/kata-build}
LOG=$O/prebuild-kata.log
PIDFILE=$O/prebuild-kata.pid
# Longest first, so that the tail of the chain is short when the tests come to wait for it.
COMPONENTS="qemu kernel kata-agent guest-initrd shim-v2 virtiofsd vhost-device-vsock"

case ${1:-} in
start)
	src=${KD_SHARED_SOURCES:-}
	for d in "$PWD/../shared/sources" /work/shared/sources; do
		[ -n "$src" ] || { [ -f "$d/SHA256SUMS" ] && src=$(cd "$d" && pwd); }
	done
	if [ -z "$src" ] || [ ! -x "$O/kata-build" ]; then
		echo "prebuild-kata: no ../shared/sources or no $O/kata-build: the tests build what they need"
		exit 0
	fi
	mkdir -p "$O"
	# setsid: out of make's process group, so that make's own end does not stop it; `wait`
	# (or the tests' lock waits) joins it.
	# nice 10: it takes the CPU the peers' builds and the tests leave idle, and gives it back
	# when they want it (the tests have timing checks that a loaded machine can fail).
	setsid nice -n 10 bash -c 'start=$(date +%s)
		"$0/kata-build" --cache "$1" --mirror "$2" --out "$0/prebuild-kata" -q component $3
		rc=$?
		echo "prebuild-kata: exit $rc after $(( $(date +%s) - start )) s"' \
		"$O" "$CACHE" "$src" "$COMPONENTS" </dev/null >"$LOG" 2>&1 &
	echo $! >"$PIDFILE"
	echo "prebuild-kata: building $COMPONENTS in the background (log $LOG)"
	;;
wait)
	[ -f "$PIDFILE" ] || exit 0
	pid=$(cat "$PIDFILE")
	while kill -0 "$pid" 2>/dev/null; do sleep 5; done
	rm -f "$PIDFILE"
	tail -n 3 "$LOG"
	;;
stop)
	[ -f "$PIDFILE" ] || exit 0
	pid=$(cat "$PIDFILE")
	rm -f "$PIDFILE"
	kill -TERM -- "-$pid" 2>/dev/null || exit 0
	for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || exit 0; sleep 0.1; done
	kill -KILL -- "-$pid" 2>/dev/null || :
	;;
*)
	echo "usage: $0 start|wait|stop" >&2
	exit 2
	;;
esac
