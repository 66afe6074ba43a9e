#!/usr/bin/env bash
# Kill tests: kata-deploy install / upgrade / rollback / uninstall are killed with SIGKILL at
# every fault point in turn (KD_FAULT_AT=N; points sit after each journal record and each step).
# After each kill, the next run must converge: install again gives the same tree as a clean
# install, and uninstall gives the original root byte for byte.
source "$(dirname "$0")/../lib.sh"
cd "$ROOTDIR"

P1=$T/p1.tar.zst P2=$T/p2.tar.zst
"$KD" payload pack artifacts/demo/tree --spec artifacts/demo/payload.yaml -o "$P1" >/dev/null
cp -a artifacts/demo/tree "$T/tree2"
echo "v2" >>"$T/tree2/opt/kata/share/kata-containers/vmlinux-6.1.demo"
sed 's/3.99.0-demo"$/3.99.1-demo"/' artifacts/demo/payload.yaml >"$T/spec2.yaml"
"$KD" payload pack "$T/tree2" --spec "$T/spec2.yaml" -o "$P2" >/dev/null

# Snapshot without the fields that differ between any two runs (install times).
state_snapshot() {
	snapshot "$1" | grep -v ' ./var/lib/kata-deploy/state.json '
	if [ -f "$1/var/lib/kata-deploy/state.json" ]; then
		grep -v installed_at "$1/var/lib/kata-deploy/state.json"
	fi
}

ORIG=$T/orig
make_host_root "$ORIG"
snapshot "$ORIG" >"$T/orig.snap"

# Reference results from clean runs.
ref() { # ref NAME setup-commands...
	local name=$1; shift
	rm -rf "$T/ref"; cp -a "$ORIG" "$T/ref"
	for cmd in "$@"; do eval "$cmd" >/dev/null 2>&1; done
	state_snapshot "$T/ref" >"$T/ref-$name.snap"
}
I1='"$KD" install --root "$R" --payload "$P1" --shims qemu'
I2='"$KD" install --root "$R" --payload "$P2" --shims qemu,clh'
RB='"$KD" rollback --root "$R"'
UN='"$KD" uninstall --root "$R"'
R=$T/ref; ref install "$I1"
R=$T/ref; ref upgrade "$I1" "$I2"
R=$T/ref; ref rollback "$I1" "$I2" "$RB"

# run_faults NAME SETUP_CMDS VICTIM_CMD BEFORE_SNAPSHOT AFTER_SNAPSHOT
# After each kill, `recover` must leave the root exactly as it was before the victim ran or
# exactly as a clean run leaves it; if it was undone, running the victim again must give the
# clean result. Then uninstall must give the original root.
run_faults() {
	local name=$1 setup=$2 victim=$3 before=$4 after=$5 n=1 kills=0 bad=0 undone=0 done_=0
	while :; do
		R=$T/r-$name; rm -rf "$R"; cp -a "$ORIG" "$R"
		eval "$setup" >/dev/null 2>&1
		local rc=0
		KD_FAULT_AT=$n eval "$victim" >/dev/null 2>&1 || rc=$?
		if [ "$rc" -ne 137 ]; then
			[ "$rc" -eq 0 ] || { not_ok "$name: run with fault point $n failed with rc=$rc"; bad=1; }
			break
		fi
		kills=$((kills + 1))
		"$KD" recover --root "$R" >/dev/null 2>&1 || { not_ok "$name: recover after kill $n failed"; bad=1; }
		state_snapshot "$R" >"$T/now.snap"
		if cmp -s "$T/now.snap" "$after"; then
			done_=$((done_ + 1))
		elif cmp -s "$T/now.snap" "$before"; then
			undone=$((undone + 1))
			eval "$victim" >/dev/null 2>&1 || { not_ok "$name: rerun after kill $n failed"; bad=1; }
			if ! state_snapshot "$R" | diff - "$after" >"$T/diff"; then
				not_ok "$name: after kill at point $n and rerun, the tree differs from a clean run:"
				head -20 "$T/diff"; bad=1
			fi
		else
			not_ok "$name: after kill at point $n, recover left a half-done root:"
			diff "$T/now.snap" "$after" | head -20; bad=1
		fi
		"$KD" uninstall --root "$R" >/dev/null 2>&1 || { not_ok "$name: uninstall after kill $n failed"; bad=1; }
		if ! diff <(snapshot "$R") "$T/orig.snap" >"$T/diff"; then
			not_ok "$name: after kill at point $n, uninstall left a different root:"
			head -20 "$T/diff"; bad=1
		fi
		n=$((n + 1))
		[ "$n" -lt 200 ] || { not_ok "$name: too many fault points"; bad=1; break; }
	done
	if [ "$kills" -lt 3 ]; then
		not_ok "$name: only $kills fault points were reached"
	elif [ "$bad" -eq 0 ]; then
		ok "$name: killed at each of $kills points ($undone undone, $done_ finished by recover); reruns converged, uninstall restored the root"
	fi
}

R=$T/ref; ref none
R=$T/ref; ref v1 "$I1"
R=$T/ref; ref none-after-uninstall "$I1" "$I2" "$UN"
run_faults "first install" ":" "$I1" "$T/ref-none.snap" "$T/ref-install.snap"
run_faults "upgrade" "$I1" "$I2" "$T/ref-v1.snap" "$T/ref-upgrade.snap"
run_faults "rollback" "$I1; $I2" "$RB" "$T/ref-upgrade.snap" "$T/ref-rollback.snap"
run_faults "uninstall" "$I1; $I2" "$UN" "$T/ref-upgrade.snap" "$T/ref-none-after-uninstall.snap"

# The same kills, then the disk fills up before anyone recovers (issue 14 item 9): the root is a
# small tmpfs in a private mount namespace; after the kill a filler takes every free byte, and
# `recover` must still converge on the full disk (it removes version trees first, which frees
# the room its restores need, and never rewrites a file whose bytes did not change). The filler
# is then removed and the root compared as above.
export KD ORIG T P1 P2
export -f snapshot state_snapshot
full_faults() { # full_faults NAME SETUP VICTIM BEFORE AFTER
	local name=$1 setup=$2 victim=$3 before=$4 after=$5 n=1 kills=0 bad=0 rc
	R=$T/full-root
	mkdir -p "$R"
	export R
	while :; do
		rc=0
		KD_N=$n SETUP=$setup VICTIM=$victim unshare -m bash -c '
			set -u
			mount -t tmpfs -o size=128k,mode=755 kdfull "$R" || exit 90
			cp -a "$ORIG/." "$R/"
			eval "$SETUP" >/dev/null 2>&1 || exit 91
			KD_FAULT_AT=$KD_N eval "$VICTIM" >/dev/null 2>&1 && exit 0
			dd if=/dev/zero of="$R/.filler" bs=1k >/dev/null 2>&1
			[ "$(df --output=avail "$R" | tail -1)" -eq 0 ] || exit 92
			"$KD" recover --root "$R" >"$T/full-recover.out" 2>&1 || exit 93
			rm -f "$R/.filler"
			# the next run (any verb) records what a full disk kept recover from writing
			"$KD" recover --root "$R" >/dev/null 2>&1 || exit 93
			state_snapshot "$R" | LC_ALL=C sort >"$T/full-now.snap"
			exit 137' || rc=$?
		case $rc in
		0) break ;;
		137) kills=$((kills + 1)) ;;
		93) not_ok "$name on a full disk: recover after kill $n failed: $(tail -1 "$T/full-recover.out")"; bad=1 ;;
		*) not_ok "$name on a full disk: point $n: setup failed (rc=$rc)"; bad=1; break ;;
		esac
		# (sorted: snapshot orders by directory size, which differs on tmpfs)
		if [ "$rc" = 137 ] && ! cmp -s "$T/full-now.snap" <(LC_ALL=C sort "$before") &&
			! cmp -s "$T/full-now.snap" <(LC_ALL=C sort "$after"); then
			not_ok "$name on a full disk: after kill at point $n, recover left a half-done root:"
			{ diff "$T/full-now.snap" <(LC_ALL=C sort "$after") | head -10; } || true
			bad=1
		fi
		n=$((n + 1))
		[ "$n" -lt 200 ] || { not_ok "$name on a full disk: too many fault points"; bad=1; break; }
	done
	if [ "$kills" -lt 3 ]; then
		not_ok "$name on a full disk: only $kills fault points were reached"
	elif [ "$bad" -eq 0 ]; then
		ok "$name on a full disk: killed at each of $kills points, disk filled, recover converged each time"
	fi
}
# The run itself meets the full disk: roots of 8 KiB to 128 KiB; an install or upgrade that fails
# with ENOSPC undoes itself on that disk (version trees first, files whose bytes it never changed
# left alone), leaves no journal and no .#kd.* debris, and the root is as it was before.
full_sizes() { # full_sizes NAME SETUP VICTIM BEFORE
	local name=$1 setup=$2 victim=$3 before=$4 k rc failed=0 bad=0
	R=$T/full-root
	mkdir -p "$R"
	export R
	for k in 8 16 24 32 40 48 56 64 72 80 96 112 128; do
		rc=0
		KB=$k SETUP=$setup VICTIM=$victim unshare -m bash -c '
			set -u
			mount -t tmpfs -o size=${KB}k,mode=755 kdfull "$R" || exit 90
			cp -a "$ORIG/." "$R/"
			eval "$SETUP" >/dev/null 2>&1 || exit 91
			eval "$VICTIM" >"$T/full-run.out" 2>&1 && exit 0
			grep -q "No space left on device" "$T/full-run.out" || exit 94
			[ ! -e "$R/var/lib/kata-deploy/journal" ] || exit 95
			! find "$R" -name ".#kd.*" | grep -q . || exit 96
			state_snapshot "$R" | LC_ALL=C sort >"$T/full-now.snap"
			exit 137' || rc=$?
		case $rc in
		0) continue ;;
		91) continue ;; # the setup itself does not fit
		137) failed=$((failed + 1))
			cmp -s "$T/full-now.snap" <(LC_ALL=C sort "$before") ||
				{ not_ok "$name in ${k} KiB: the failed run left the root changed"; bad=1; } ;;
		94) not_ok "$name in ${k} KiB: failed, but not for lack of space: $(tail -1 "$T/full-run.out")"; bad=1 ;;
		95) not_ok "$name in ${k} KiB: the failed run left its journal: $(tail -1 "$T/full-run.out")"; bad=1 ;;
		96) not_ok "$name in ${k} KiB: the failed run left .#kd.* debris"; bad=1 ;;
		*) not_ok "$name in ${k} KiB: rc=$rc"; bad=1 ;;
		esac
	done
	if [ "$failed" -lt 2 ]; then
		not_ok "$name: only $failed sizes were too small"
	elif [ "$bad" -eq 0 ]; then
		ok "$name: at $failed root sizes it ran out of space and undid itself on the full disk"
	fi
}
# The same with too few inodes (the state dir's creation fails first): no .#kd.*.state left.
full_inodes() {
	local k rc bad=0 failed=0
	R=$T/full-root
	mkdir -p "$R"
	export R
	for k in 6 8 10 14 20 28 38; do
		rc=0
		KN=$k unshare -m bash -c '
			mount -t tmpfs -o size=1m,nr_inodes=$KN,mode=755 kdfull "$R" || exit 90
			cp -a "$ORIG/." "$R/" 2>/dev/null || exit 91
			eval "$I1" >"$T/full-run.out" 2>&1 && exit 0
			! find "$R" -name ".#kd.*" | grep -q . || exit 96
			[ ! -e "$R/var/lib/kata-deploy/journal" ] || exit 95
			state_snapshot "$R" | LC_ALL=C sort >"$T/full-now.snap"
			exit 137' || rc=$?
		case $rc in
		0 | 91) ;;
		137) failed=$((failed + 1))
			cmp -s "$T/full-now.snap" <(LC_ALL=C sort "$T/ref-none.snap") ||
				{ not_ok "install with $k inodes: the failed run left the root changed"; bad=1; } ;;
		96) not_ok "install with $k inodes: .#kd.* debris left: $(tail -1 "$T/full-run.out")"; bad=1 ;;
		*) not_ok "install with $k inodes: rc=$rc: $(tail -1 "$T/full-run.out")"; bad=1 ;;
		esac
	done
	[ "$bad" = 1 ] || ok "install out of inodes at $failed sizes (the state dir's creation included): root as before, no debris"
}
export I1
full_inodes
full_sizes "first install" ":" "$I1" "$T/ref-none.snap"
full_sizes "upgrade" "$I1" "$I2" "$T/ref-v1.snap"
full_faults "first install" ":" "$I1" "$T/ref-none.snap" "$T/ref-install.snap"
full_faults "upgrade" "$I1" "$I2" "$T/ref-v1.snap" "$T/ref-upgrade.snap"
full_faults "rollback" "$I1; $I2" "$RB" "$T/ref-upgrade.snap" "$T/ref-rollback.snap"
finish
