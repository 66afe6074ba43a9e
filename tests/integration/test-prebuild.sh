#!/usr/bin/env bash
# scripts/prebuild-kata.sh, make test's background cache warmer: `start` runs its two lanes in
# process groups of their own, `wait` joins them and prints how each ended, `stop` ends both
# groups; a pidfile left by a killed run (its PID now someone else's) is neither waited for nor
# signalled. The script's subject is process control, so the lanes run a stand-in for
# kata-build ($O/kata-build is a shell script here that records its arguments and sleeps): the
# real kata-build's component builds take tens of minutes, and its locking is test-builder's.
source "$(dirname "$0")/../lib.sh"
cd "$ROOTDIR"

O=$T/o
mkdir -p "$O" "$T/src"
: >"$T/src/SHA256SUMS"
cat >"$O/kata-build" <<'EOF'
#!/bin/sh
# stand-in: records its components, then works for $FAKE_SECONDS
echo "$*" >"$FAKE_DIR/args-$$"
exec sleep "${FAKE_SECONDS:-60}"
EOF
chmod +x "$O/kata-build"
export FAKE_DIR=$T KD_SHARED_SOURCES=$T/src KD_BUILD_CACHE=$T/cache
pb() { O=$O scripts/prebuild-kata.sh "$@"; }
alive_group() { pgrep -g "$1" >/dev/null 2>&1; }

# 1. start: two lanes, each a process group of its own, building its own components.
FAKE_SECONDS=60 pb start >"$T/start.out"
check "start names both lanes" grep -q 'lane a builds qemu kernel' "$T/start.out"
check "start: lane b builds the Rust components" grep -q 'lane b builds kata-agent .* kata-ctl' \
	"$T/start.out"
pa=$(cat "$O/prebuild-kata-a.pid") pb_=$(cat "$O/prebuild-kata-b.pid")
for _ in $(seq 50); do [ "$(ls "$T"/args-* 2>/dev/null | wc -l)" = 2 ] && break; sleep 0.1; done
check "each lane runs kata-build with its components" bash -c \
	"grep -q 'component qemu kernel shim-v2 guest-initrd' $T/args-* &&
	 grep -q 'component kata-agent virtiofsd vhost-device-vsock kata-ctl' $T/args-*"
check "the lanes are process groups of their own" bash -c \
	"[ \"\$(ps -o pgid= -p $pa | tr -d ' ')\" = $pa ] && [ \"\$(ps -o pgid= -p $pb_ | tr -d ' ')\" = $pb_ ]"

# 2. stop ends both groups (kata-build included) and removes the pidfiles.
pb stop
gone=1
for _ in $(seq 100); do
	alive_group "$pa" || alive_group "$pb_" || { gone=0; break; }
	sleep 0.1
done
check "stop ends both lanes' process groups" test "$gone" = 0
check "stop removes the pidfiles" bash -c "! ls $O/*.pid 2>/dev/null | grep -q ."

# 3. A stale pidfile naming another process group: stop leaves that group alone, wait does not
#    wait for it.
setsid sleep 60 </dev/null >/dev/null 2>&1 &
other=$!
for _ in $(seq 50); do [ "$(ps -o pgid= -p "$other" | tr -d ' ')" = "$other" ] && break; sleep 0.1; done
echo "$other" >"$O/prebuild-kata-a.pid"
pb stop
check "stop does not signal a group that is not its lane" kill -0 "$other"
check "stop drops the stale pidfile" test ! -e "$O/prebuild-kata-a.pid"
echo "$other" >"$O/prebuild-kata-b.pid"
t0=$(date +%s)
pb wait >/dev/null
check "wait does not wait for a process that is not its lane" test $(($(date +%s) - t0)) -lt 5
kill "$other" 2>/dev/null || :

# 4. wait joins lanes that finish and prints how each ended.
rm -f "$T"/args-*
FAKE_SECONDS=1 pb start >/dev/null
pb wait >"$T/wait.out"
check "wait reports both lanes' exit" bash -c \
	"grep -q 'lane a: exit 0' $T/wait.out && grep -q 'lane b: exit 0' $T/wait.out"
check "wait removes the pidfiles" bash -c "! ls $O/*.pid 2>/dev/null | grep -q ."

finish
