#!/usr/bin/env bash
# make test's cache warmer: builds the Kata components the tests use (test-builder's qemu and
# kernel, test-kata's default payload and vhost-device-vsock) into the real build cache in the
# background, while the test peers (Go) build in the foreground. On a cold machine these are the
# long parts of CI and none of them keeps both cores busy alone, so they overlap, the prebuild at
# a lower priority, in two lanes started together, each one `kata-build component` run:
#   a: qemu kernel shim-v2 guest-initrd        C and Go (guest-initrd takes kata-agent from b)
#   b: kata-agent virtiofsd vhost-device-vsock kata-ctl   Rust, one cargo target dir, serial
# Lane a starts with what test-builder needs; lane b with kata-agent, which lane a's
# guest-initrd needs (lane a gets there after ~25 min, lane b has it after ~16), and ends with
# kata-ctl: a test's payload build takes kata-ctl before virtiofsd (it builds in name order), so
# once it has kata-ctl's lock lane b is done and no second cargo build runs in the shared target
# dir. The tests take the components from the cache by key; a build that gets to a component
# another one is building waits on kata-build's per-component lock, never builds it twice.
# Nothing here decides a result: a failed prebuild only means the test builds the component
# itself and reports the real error. docs/TEST-PEERS.md has the figures.
#   prebuild-kata.sh start   start both lanes (returns at once); O= as for make
#   prebuild-kata.sh wait    wait for both, print how each went and how long it took
#   prebuild-kata.sh stop    stop what still runs (make test's exit trap: a failed step)
set -euo pipefail
cd "$(dirname "$0")/.."
O=${O:-build}
CACHE=${KD_BUILD_CACHE:-$HOME/.cache/kata-build}
LANES="a b"
lane_components() {
	case $1 in
	a) echo "qemu kernel shim-v2 guest-initrd" ;;
	b) echo "kata-agent virtiofsd vhost-device-vsock kata-ctl" ;;
	esac
}
# Per lane: its log, its pidfile (the lane's process group: setsid makes it the leader) and its
# own --out directory (each build links the components it takes into its out dir).
log() { echo "$O/prebuild-kata-$1.log"; }
pidfile() { echo "$O/prebuild-kata-$1.pid"; }

# PID is the leader of a lane this script started (its bash -c, which says "prebuild-kata lane").
is_lane() { grep -qa 'prebuild-kata lane' "/proc/$1/cmdline" 2>/dev/null; }

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
	for l in $LANES; do
		# setsid: out of make's process group, so that make's own end does not stop it;
		# `wait` (or the tests' lock waits) joins it.
		# nice 10: it takes the CPU the peers' builds and the tests leave idle, and gives it
		# back when they want it (the tests have timing checks that a loaded machine can
		# fail).
		setsid nice -n 10 bash -c 'start=$(date +%s)
			"$0/kata-build" --cache "$1" --mirror "$2" --out "$0/prebuild-kata-$3" -q \
				component $4
			rc=$?
			echo "prebuild-kata lane $3: exit $rc after $(( $(date +%s) - start )) s"' \
			"$O" "$CACHE" "$src" "$l" "$(lane_components "$l")" \
			</dev/null >"$(log "$l")" 2>&1 &
		echo $! >"$(pidfile "$l")"
		echo "prebuild-kata: lane $l builds $(lane_components "$l") in the background (log $(log "$l"))"
	done
	;;
wait)
	for l in $LANES; do
		[ -f "$(pidfile "$l")" ] || continue
		pid=$(cat "$(pidfile "$l")")
		while is_lane "$pid"; do sleep 1; done
		rm -f "$(pidfile "$l")"
		tail -n 3 "$(log "$l")"
	done
	;;
stop)
	for l in $LANES; do
		[ -f "$(pidfile "$l")" ] || continue
		pid=$(cat "$(pidfile "$l")")
		rm -f "$(pidfile "$l")"
		# A pidfile left by a run that was killed names a process that may be gone and its
		# PID (and group) reused: signal the group only while its leader is still our lane.
		is_lane "$pid" || continue
		kill -TERM -- "-$pid" 2>/dev/null || continue
		for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || continue 2; sleep 0.1; done
		kill -KILL -- "-$pid" 2>/dev/null || :
	done
	;;
*)
	echo "usage: $0 start|wait|stop" >&2
	exit 2
	;;
esac
