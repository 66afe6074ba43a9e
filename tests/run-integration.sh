#!/usr/bin/env bash
# Runs every tests/integration/test-*.sh; each prints its own lines and exits non-zero on failure.
# Each test's output goes to $O/<test>.log; one "ok - test (Ns)" line per test as it finishes.
#   TESTS="name ..."          a subset
#   KD_SKIP_TESTS="name ..."  tests left out of this pass (make asan: ASAN_SKIP_TESTS, Makefile)
#   KD_JOBS=N                 up to N tests at once, in lanes (make passes 2). 1, the default
#                             here, runs them one after another in name order.
# With lanes, the tests of ALONE run first, each by itself, then the others longest first (the
# static hint LONGEST, then name order), the next one starting as soon as a lane is free. Tests
# keep everything in their own temp dirs, so any two may run at once; docs/TEST-PEERS.md
# ("Lanes") has the audit and why a test is in ALONE.
set -u
cd "$(dirname "$0")/.."
export O=${O:-build}
export KD_BUILD=$PWD/$O
jobs=${KD_JOBS:-1}
case $jobs in
'' | *[!0-9]* | 0) echo "run-integration: KD_JOBS must be a number >= 1, not '$jobs'" >&2; exit 2 ;;
esac

# Run by themselves, never beside another test (docs/TEST-PEERS.md, "Lanes").
ALONE=""
# The long tests, longest first (seconds of a warm run on 2 cores); the rest follow in name order.
LONGEST="test-node test-builder test-node-jobmode test-upstream-keys test-jobmode test-agent
	test-cli test-node-kata test-oci-pull test-nfd test-agent-waiter test-faults test-variants
	test-containerd test-kata test-systemd-restart test-image test-toml-suite"

list=${TESTS:-$(cd tests/integration && ls test-*.sh | sed 's/\.sh$//')}
in_list() { [[ " $(echo $2) " == *" $1 "* ]]; } # in_list WORD LIST
skipped=""
kept=()
for t in $list; do
	if in_list "$t" "${KD_SKIP_TESTS:-}"; then
		skipped="$skipped $t"
	elif ! in_list "$t" "${kept[*]}"; then
		kept+=("$t")
	fi
done
[ -z "$skipped" ] || echo "# not in this pass:$skipped (KD_SKIP_TESTS)"

# The order: name order with one lane; with lanes ALONE first (one by one), then longest first.
alone=() lanes=()
if [ "$jobs" -eq 1 ]; then
	lanes=("${kept[@]}")
else
	for t in "${kept[@]}"; do in_list "$t" "$ALONE" && alone+=("$t"); done
	for t in $LONGEST; do in_list "$t" "${kept[*]}" && ! in_list "$t" "$ALONE" && lanes+=("$t"); done
	for t in "${kept[@]}"; do
		in_list "$t" "$ALONE" || in_list "$t" "$LONGEST" || lanes+=("$t")
	done
fi

pass=0 fail=0 summed=0
declare -A pid_of=() start_of=()
start() { # TEST: in the background, in a session (and process group) of its own
	setsid bash "tests/integration/$1.sh" >"$O/$1.log" 2>&1 </dev/null &
	pid_of[$1]=$!
	start_of[$1]=$SECONDS
}
reap() { # wait until a running test ends, report it
	local t rc secs
	while :; do
		# (wait -n would miss a test that ended while the runner was not in wait, without job
		# control; `wait PID` gives the status of one that ended any time)
		for t in "${!pid_of[@]}"; do
			kill -0 "${pid_of[$t]}" 2>/dev/null || break 2
		done
		sleep 0.5
	done
	rc=0
	wait "${pid_of[$t]}" || rc=$?
	secs=$((SECONDS - ${start_of[$t]}))
	unset "pid_of[$t]" "start_of[$t]"
	summed=$((summed + secs))
	if [ "$rc" -eq 0 ]; then
		pass=$((pass + 1)); echo "ok - $t (${secs}s)"
	else
		fail=$((fail + 1)); echo "not ok - $t (${secs}s)"
		tail -n 40 "$O/$t.log" | sed 's/^/#   /'
	fi
}
# Interrupted (^C, SIGTERM): no test starts any more; the running ones get SIGTERM in their whole
# process group (their EXIT traps stop their peers and remove their temp dirs) and are reported as
# they end. (A test has a session of its own, so a ^C on the terminal reaches only the runner.)
interrupted=""
stop() {
	local t
	interrupted=$1
	for t in "${!pid_of[@]}"; do kill -TERM -- "-${pid_of[$t]}" 2>/dev/null; done
}
trap 'stop INT' INT
trap 'stop TERM' TERM

t0=$SECONDS
for t in "${alone[@]}"; do
	[ -z "$interrupted" ] || break
	start "$t"
	reap
done
for t in "${lanes[@]}"; do
	[ "${#pid_of[@]}" -lt "$jobs" ] || reap
	[ -z "$interrupted" ] || break
	start "$t"
done
while [ "${#pid_of[@]}" -gt 0 ]; do reap; done
[ "$jobs" -eq 1 ] || echo "# $jobs lanes: $((SECONDS - t0))s wall for ${summed}s of tests"
if [ -n "$interrupted" ]; then
	echo "integration: interrupted (SIG$interrupted): $pass passed, $fail failed"
	exit $((128 + $(kill -l "$interrupted")))
fi
echo "integration: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
