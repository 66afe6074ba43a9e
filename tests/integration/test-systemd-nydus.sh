#!/usr/bin/env bash
# The managed nydus-for-kata-tee service through a REAL systemd (docs/NODE-TEST.md, "A real
# systemd"; docs/RUNTIME-CONFIG.md, "Snapshotter setup"): the sandbox of test-systemd-restart.sh
# (tests/peers/systemd-sandbox.sh: Debian's systemd as PID 1), whose /etc/systemd/system is a
# tmpfs of its own that systemd loads units from, with containerd 2.2 (the containerd2 peer as
# the sandbox's /usr/local/bin/containerd, a version 3 config) as containerd.service: Debian's
# containerd 1.6 has no snapshotter per runtime handler (containerd 1.7 added it), so the engine
# refuses --snapshotter-handler-mapping there (checked first, on a test root).
# `kata-deploy install --setup-snapshotter nydus --snapshotter-handler-mapping qemu:nydus
# --restart systemd` with a payload holding the real nydus-snapshotter v0.15.15
# (tests/peers/nydus-payload.sh) writes the unit, its config and containerd's drop-in; the engine's
# systemd Reload makes systemd see them, RestartUnit starts the service, then containerd restarts.
# Checked: the unit and drop-in loaded from /etc/systemd/system (containerd.service Wants= and
# After= it), the service active with the payload's containerd-nydus-grpc as its MainPID, its
# socket there, containerd listing the proxy snapshotter and preparing a snapshot through it.
# Then an install without nydus, and uninstall: StopUnit, and after the Reload the unit is gone
# (LoadState not-found), the drop-in too, containerd restarted and active, /etc/containerd byte
# for byte, the sandbox's /etc/systemd/system empty.
#   1. the host CLI on the sandbox's "/" (the system bus; it asks /usr/local/bin/containerd its
#      version and runs its config loader)
#   2. the node agent's path: --root R (binds of the sandbox's /etc/containerd, /opt,
#      /etc/systemd/system; a read-only run/systemd), uid 0 with no capability, the runtime
#      version given as the agent gives the Node's: systemd's private socket
# containerd-nydus-grpc runs with our config as it is (fs_driver "proxy": no nydusd, no FUSE; the
# sandbox's /dev has no fuse node).
# Needs root, Debian's systemd, dbus and containerd (scripts/install-deps.sh), Go for the peers.
source "$(dirname "$0")/../lib.sh"
set +e
cd "$ROOTDIR"
source tests/peers/systemd-sandbox.sh
source tests/peers/nydus-payload.sh
scripts/peers/containerd2.sh >&2
PEERS=${KD_PEERS_DIR:-$HOME/.cache/kata-deploy-peers}
for b in "$NGRPC" "$PEERS/bin/containerd2" "$PEERS/bin/ctr2"; do
	[ -x "$b" ] || { not_ok "no $b (scripts/peers/nydus-snapshotter.sh, containerd2.sh)"; finish; exit 1; }
done
P=$T/nydus.tar.zst P0=$T/demo.tar.zst
nydus_payload "$P"
"$KD" payload pack artifacts/demo/tree --spec artifacts/demo/payload.yaml -o "$P0" >/dev/null
NYARGS=(--setup-snapshotter nydus --snapshotter-handler-mapping qemu:nydus --restart systemd)

# Debian's containerd 1.6 (config version 2, in-place edit): refused, nothing written.
R16=$T/r16
mkdir -p "$R16/etc/containerd"
printf 'version = 2\n' >"$R16/etc/containerd/config.toml"
snapshot "$R16" >"$T/r16.before"
expect_fail "containerd 1.6: a snapshotter per handler is refused (1.7 added the runtime's snapshotter)" \
	"a snapshotter per runtime handler needs containerd 1.7 or newer (this is 1.6)" \
	"$KD" install --root "$R16" --payload "$P" --shims qemu --runtime-version 1.6 \
	--runtime-binary /usr/bin/containerd "${NYARGS[@]}"
check "containerd 1.6: nothing written" diff -q "$T/r16.before" <(snapshot "$R16")

sd_sandbox_start "$PEERS/bin/containerd2" "$PEERS/bin/ctr2"
CTDV=$(SD "$SDCTD" --version | cut -d' ' -f3)

NY=nydus-for-kata-tee.service
NSOCK=/run/nydus-for-kata-tee/containerd-nydus-grpc.sock
ETCSD=/etc/systemd/system
DROPIN=$ETCSD/containerd.service.d/kata-deploy-nydus-for-kata-tee.conf
check "before: systemd knows no $NY (LoadState not-found)" test "$(prop $NY LoadState)" = not-found
check "the sandbox's /dev has no fuse node (fs_driver proxy needs none)" not SD test -e /dev/fuse

# words LIST WORD: WORD is one of the space-separated LIST. (No `| grep -q` here: with lib.sh's
# pipefail, grep quitting at its first match can fail the pipeline through the writer's SIGPIPE.)
words() { [[ " $1 " == *" $2 "* ]]; }
main_exe() { SD readlink "/proc/$(prop $NY MainPID)/exe"; }
ctr_nydus() { SD "$SDCTR" --address "$SOCK" snapshots --snapshotter nydus-for-kata-tee "$@"; }
plugin_listed() {
	SD "$SDCTR" --address "$SOCK" plugins ls >"$T/plugins" 2>&1
	grep -Eq '^io\.containerd\.snapshotter\.v1 +nydus-for-kata-tee .* ok *$' "$T/plugins" ||
		{ grep -E 'snapshotter|^TYPE' "$T/plugins" | sed 's/^/#   /'; return 1; }
}
snap_prepared() { # NAME: prepared through containerd, listed, living in the snapshotter's root
	ctr_nydus prepare "$1" "" >"$T/prepare.$1" 2>&1 && grep -q "^$1 " <(ctr_nydus ls) &&
		test -n "$(SD find /var/lib/nydus-for-kata-tee/snapshots -mindepth 1 -maxdepth 1)" ||
		{ sed 's/^/#   /' "$T/prepare.$1"; return 1; }
}

# nydus_up DESC LOG CTD_PID: after an install with nydus.
nydus_up() {
	local d=$1 log=$2 npid
	check "$d: the engine reloaded systemd and restarted $NY before containerd" \
		logged "restarting $NY" "$log"
	check "$d: ... then containerd.service" logged 'runtime restart: systemd RestartUnit containerd.service' "$log"
	check "$d: systemd loaded the unit from $ETCSD ($(prop $NY LoadState), $(prop $NY FragmentPath))" \
		test "$(prop $NY LoadState)/$(prop $NY FragmentPath)" = "loaded/$ETCSD/$NY"
	check "$d: containerd.service's drop-in loaded (DropInPaths $(prop containerd.service DropInPaths))" \
		words "$(prop containerd.service DropInPaths)" "$DROPIN"
	check "$d: containerd.service Wants= and After= $NY" \
		eval 'words "$(prop containerd.service Wants)" $NY && words "$(prop containerd.service After)" $NY'
	restarted "$d" "$3"
	npid=$(prop $NY MainPID)
	check "$d: $NY active/running, NRestarts 0 ($(prop $NY ActiveState)/$(prop $NY SubState), MainPID $npid)" \
		test "$(prop $NY ActiveState)/$(prop $NY SubState)/$(prop $NY NRestarts)" = active/running/0 -a "$npid" -gt 0
	check "$d: its MainPID runs the payload's containerd-nydus-grpc ($(main_exe))" \
		eval 'test "$(main_exe)" = "$(SD readlink -f /opt/kata/libexec/nydus-snapshotter/containerd-nydus-grpc)" &&
			SD cmp -s "$(main_exe)" "$NGRPC"'
	check "$d: ... with our config" eval '[[ "$(SD cat /proc/$npid/cmdline | tr "\0" " ") " == \
		*" --config /opt/kata/snapshotter/nydus-for-kata-tee.toml "* ]]'
	check "$d: its socket $NSOCK is there" SD test -S "$NSOCK"
	check "$d: containerd $CTDV lists io.containerd.snapshotter.v1 nydus-for-kata-tee ok" plugin_listed
	check "$d: a snapshot prepared through containerd's proxy lives in the snapshotter's root" \
		snap_prepared "kd-$4"
	ctr_nydus rm "kd-$4" >/dev/null 2>&1
	NPID=$npid
}

etcsd_holds() { # WHAT: the sandbox's /etc/systemd/system holds exactly WHAT ("PATH TYPE" lines)
	local left
	left=$(SD find $ETCSD -mindepth 1 -printf '%p %y\n')
	[ "$left" = "$1" ] || { sed 's/^/#   there: /' <<<"$left"; return 1; }
}

# nydus_gone DESC LOG CTD_PID NYDUS_PID [DIR_LEFT]: after an uninstall or an install without nydus
# (DIR_LEFT).
nydus_gone() {
	local d=$1 log=$2
	check "$d: the engine stopped $NY" logged "stopped $NY" "$log"
	check "$d: $NY inactive and gone after the Reload ($(prop $NY ActiveState), LoadState $(prop $NY LoadState))" \
		test "$(prop $NY ActiveState)/$(prop $NY LoadState)" = inactive/not-found
	check "$d: its process $4 is gone" not SD test -e "/proc/$4"
	check "$d: containerd.service has no drop-in and no Wants= $NY any more" \
		eval 'test -z "$(prop containerd.service DropInPaths)" && not words "$(prop containerd.service Wants)" $NY'
	restarted "$d" "$3"
	check "$d: containerd no longer lists the proxy snapshotter" not grep -q nydus-for-kata-tee \
		<(SD "$SDCTR" --address "$SOCK" plugins ls)
	if [ -n "${5:-}" ]; then
		# The directory the first install created stays (empty) until uninstall removes it.
		check "$d: the unit and the drop-in are gone from $ETCSD ($ETCSD/containerd.service.d, empty, is left for uninstall)" \
			etcsd_holds "$ETCSD/containerd.service.d d"
	else
		check "$d: the unit, the drop-in and its directory are gone from $ETCSD" etcsd_holds ""
	fi
	check "$d: the service's config is gone" not SD test -e /opt/kata/snapshotter/nydus-for-kata-tee.toml
}

# === 1. the host CLI on the sandbox's "/": the system bus =======================================
pid0=$(prop containerd.service MainPID)
SD "$KD" install --payload "$P" --shims qemu "${NYARGS[@]}" >"$T/install-host.log" 2>&1
check "host CLI: install --setup-snapshotter nydus --restart systemd succeeds" logged '^installed 3.99.0-demo' "$T/install-host.log"
nydus_up "host CLI install" "$T/install-host.log" "$pid0" host
check "host CLI: containerd's config maps kata-qemu to nydus-for-kata-tee" \
	grep -rq 'snapshotter = "nydus-for-kata-tee"' "$W/host/etc-containerd"

# An install of the same release without nydus: the engine drops the service.
pid1=$(prop containerd.service MainPID)
SD "$KD" install --payload "$P0" --shims qemu --restart systemd >"$T/install-host-plain.log" 2>&1
check "host CLI: re-install without nydus succeeds" logged '^installed 3.99.0-demo' "$T/install-host-plain.log"
nydus_gone "host CLI install without nydus" "$T/install-host-plain.log" "$pid1" "$NPID" dir-left

# Back to nydus, then uninstall.
pid2=$(prop containerd.service MainPID)
SD "$KD" install --payload "$P" --shims qemu "${NYARGS[@]}" >"$T/install-host2.log" 2>&1
check "host CLI: install with nydus again succeeds" logged '^installed 3.99.0-demo' "$T/install-host2.log"
nydus_up "host CLI install again" "$T/install-host2.log" "$pid2" host2
pid3=$(prop containerd.service MainPID)
SD "$KD" uninstall --restart systemd >"$T/uninstall-host.log" 2>&1
check "host CLI: uninstall --restart systemd succeeds" logged '^uninstalled' "$T/uninstall-host.log"
nydus_gone "host CLI uninstall" "$T/uninstall-host.log" "$pid3" "$NPID"
check "host CLI: containerd's config is byte for byte as before" diff -r "$T/etc-containerd.pristine" "$W/host/etc-containerd"

# === 2. the agent's path: another root, private socket, read-only mount, no capability ==========
R=$W/aroot
mkdir -p "$R/etc/containerd" "$R/etc/systemd/system" "$R/opt" "$R/var/lib/kata-deploy" "$R/run/systemd" "$R/run/kata-deploy"
SD sh -c "mount --bind /etc/containerd '$R/etc/containerd' && mount --bind /opt '$R/opt' &&
	mount --bind $ETCSD '$R/etc/systemd/system' &&
	mount --bind /run/systemd '$R/run/systemd' && mount -o remount,bind,ro '$R/run/systemd'" ||
	not_ok "agent root: bind mounts"
NOCAP=(setpriv --bounding-set=-all --inh-caps=-all --ambient-caps=-all --no-new-privs --)
nocap_kd() { # LOG ARGS...: kata-deploy without capabilities; LOG gets its /proc/self/status Cap lines first
	local log=$1
	shift
	SD "${NOCAP[@]}" sh -c 'grep -E "^(Cap(Prm|Eff|Bnd)|NoNewPrivs):" /proc/self/status; exec "$@"' sh \
		"$KD" "$@" >"$log" 2>&1
}
pid4=$(prop containerd.service MainPID)
nocap_kd "$T/install-agent.log" install --root "$R" --payload "$P" --shims qemu \
	--runtime-version "containerd://${CTDV#v}" "${NYARGS[@]}"
check "agent path: the engine ran with no capability and no_new_privs" \
	test "$(grep -cE '^(Cap(Prm|Eff|Bnd):\s+0+|NoNewPrivs:\s+1)$' "$T/install-agent.log")" = 4
check "agent path: install --root R --setup-snapshotter nydus --restart systemd succeeds" \
	logged '^installed 3.99.0-demo' "$T/install-agent.log"
nydus_up "agent path install" "$T/install-agent.log" "$pid4" agent
pid5=$(prop containerd.service MainPID)
nocap_kd "$T/uninstall-agent.log" uninstall --root "$R" --restart systemd
check "agent path: uninstall succeeds" logged '^uninstalled' "$T/uninstall-agent.log"
nydus_gone "agent path uninstall" "$T/uninstall-agent.log" "$pid5" "$NPID"
check "agent path: containerd's config is byte for byte as before" diff -r "$T/etc-containerd.pristine" "$W/host/etc-containerd"

# === the end ======================================================================================
sd_sandbox_end
finish
