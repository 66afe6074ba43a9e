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
finish
