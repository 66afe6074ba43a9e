#!/usr/bin/env bash
# The runtime restart through a REAL systemd (docs/NODE-TEST.md, "A real systemd"): Debian's
# systemd runs as PID 1 of its own PID, mount, UTS, IPC, network and cgroup namespaces
# (tests/peers/systemd-inner.sh), with Debian's dbus-daemon (socket-activated system bus) and
# Debian's containerd as containerd.service (Type=notify). Our engine restarts that unit:
#   1. the host CLI on the host root (`kata-deploy install|uninstall --restart systemd`): the
#      system bus (sd_bus_open_system), as on a node where the CLI runs as root
#   2. the node agent's path: a root other than "/" (kata-deploy install --root R), whose
#      run/systemd is a READ-ONLY bind mount of systemd's /run/systemd, run as uid 0 with no
#      capability at all and no_new_privs (the chart's unprivileged pod): systemd's private
#      socket, <root>/run/systemd/private
# Each restart: RestartUnit's job finished, containerd.service active with a new MainPID (not a
# restart by Restart=: NRestarts stays 0), containerd answers on its socket. The machine's
# /etc/containerd, /opt, /var/lib/kata-deploy, /run/systemd, /run/dbus, hostname, network links
# are fingerprinted before and after; the sandbox's cgroup is removed.
# Needs root, Debian's systemd, dbus and containerd (scripts/install-deps.sh).
source "$(dirname "$0")/../lib.sh"
set +e
cd "$ROOTDIR"
source tests/peers/node-fingerprint.sh

[ "$(id -u)" = 0 ] || { not_ok "test-systemd-restart needs root (namespaces, mounts, cgroups)"; finish; exit 1; }
for b in /lib/systemd/systemd /usr/bin/systemctl /usr/bin/dbus-daemon /usr/bin/containerd /usr/bin/ctr; do
	[ -x "$b" ] || { not_ok "$b missing: run scripts/install-deps.sh (systemd, dbus, containerd)"; finish; exit 1; }
done

fp() {
	kd_machine_fp
	for p in /run/systemd /run/dbus; do
		[ -e "$p" ] && find "$p" -xdev -printf '%p %y %m %U %G %T@\n' 2>/dev/null | LC_ALL=C sort
	done
	hostname
}
fp >"$T/machine.before"

# --- the sandbox ----------------------------------------------------------------------------------
W=$T/sd
mkdir -p "$W/units" "$W/host/etc-containerd" "$W/ctd" "$W/empty"
cat >"$W/units/kd.target" <<'EOF'
[Unit]
Description=kata-deploy test: containerd and the system bus
DefaultDependencies=no
Wants=containerd.service dbus.socket
EOF
cat >"$W/units/dbus.socket" <<'EOF'
[Unit]
Description=D-Bus system bus socket
DefaultDependencies=no
[Socket]
ListenStream=/run/dbus/system_bus_socket
EOF
cat >"$W/units/dbus.service" <<'EOF'
[Unit]
Description=D-Bus system bus (Debian's dbus-daemon)
DefaultDependencies=no
Requires=dbus.socket
[Service]
ExecStart=/usr/bin/dbus-daemon --system --address=systemd: --nofork --nopidfile --systemd-activation --nosyslog
EOF
# Debian's own containerd.service (Type=notify, Delegate=yes, KillMode=process, Restart=always,
# RestartSec=5, systemd's default start rate limit), less its `ExecStartPre=-/sbin/modprobe
# overlay` (a module load is the machine's) and its ordering after network.target; its output
# to a file (there is no journald).
{
	sed -e '/^ExecStartPre=.*modprobe/d' -e '/^After=/d' -e '/^\[Install\]/,$d' \
		-e 's/^\[Unit\]$/[Unit]\nDefaultDependencies=no/' /lib/systemd/system/containerd.service
	printf 'StandardOutput=append:%s\nStandardError=inherit\n' "$W/containerd.log"
} >"$W/units/containerd.service"
grep -q '^ExecStart=/usr/bin/containerd$' "$W/units/containerd.service" ||
	{ not_ok "Debian's containerd.service has no 'ExecStart=/usr/bin/containerd'"; finish; exit 1; }
SOCK=$W/ctd/containerd.sock
cat >"$W/host/etc-containerd/config.toml" <<EOF
version = 2
root = "$W/ctd/root"
state = "$W/ctd/state"
[grpc]
  address = "$SOCK"
EOF
cp -a "$W/host/etc-containerd" "$T/etc-containerd.pristine"

# The cgroup2 hierarchy: the unified mount of a hybrid machine, or /sys/fs/cgroup itself.
if [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ]; then CG2=/sys/fs/cgroup
elif [ "$(stat -fc %T /sys/fs/cgroup/unified 2>/dev/null)" = cgroup2fs ]; then CG2=/sys/fs/cgroup/unified
else not_ok "no cgroup2 hierarchy (systemd needs one to track its units)"; finish; exit 1; fi
CG=$CG2/kd-sd-$$
mkdir "$CG" || { not_ok "mkdir $CG"; finish; exit 1; }
SDPID=
_sd_cleanup() {
	local rc=$?
	[ -n "$SDPID" ] && kill -KILL "$SDPID" 2>/dev/null
	[ -n "${UPID:-}" ] && wait "$UPID" 2>/dev/null
	[ -d "$CG" ] && find "$CG" -depth -type d -exec rmdir {} \; 2>/dev/null
	(exit $rc)
	_kd_cleanup
}
trap _sd_cleanup EXIT

t0=$SECONDS
(
	echo "$BASHPID" >"$CG/cgroup.procs" &&
		exec unshare --pid --fork --mount --uts --ipc --net --cgroup --propagation private \
			--mount-proc -- tests/peers/systemd-inner.sh "$W"
) >"$W/systemd.log" 2>&1 &
UPID=$!
for i in $(seq 1 100); do
	SDPID=$(pgrep -P "$UPID" 2>/dev/null | head -1)
	[ -n "$SDPID" ] && [ "$(cat "/proc/$SDPID/comm" 2>/dev/null)" = systemd ] && break
	SDPID=
	sleep 0.1
done
[ -n "$SDPID" ] || { cat "$W/systemd.log"; not_ok "systemd did not start"; finish; exit 1; }
SD() { nsenter -t "$SDPID" -a -- "$@"; }
prop() { SD systemctl show -p "$2" --value "$1"; }
not() { ! "$@"; }
for i in $(seq 1 100); do
	[ "$(prop containerd.service ActiveState 2>/dev/null)" = active ] && break
	sleep 0.1
done
ok "systemd up, containerd.service active ($((SECONDS - t0))s)"
check "PID 1 of the namespace is Debian's systemd ($(SD systemctl --version | head -1))" \
	test "$(SD cat /proc/1/comm)" = systemd -a "$(readlink "/proc/$SDPID/exe")" = "$(readlink -f /lib/systemd/systemd)"
state=$(SD systemctl is-system-running 2>&1)
check "systemd reports the system running ($state)" test "$state" = running
check "systemd's private socket is root's only (srwx------ root)" \
	test "$(SD stat -c '%A %U' /run/systemd/private)" = "srwx------ root"
ctd_up() { SD ctr --address "$SOCK" version >/dev/null 2>&1; }
check "containerd answers on its socket" ctd_up
check "the system bus is not running yet (socket-activated)" test "$(prop dbus.service ActiveState)" = inactive

P=$T/payload.tar.zst
logged() { grep -q "$1" "$2" || { sed 's/^/#   /' "$2"; return 1; }; } # PATTERN LOG (shown when absent)
"$KD" payload pack artifacts/demo/tree --spec artifacts/demo/payload.yaml -o "$P" >/dev/null

# restarted DESC PID_BEFORE: containerd.service was restarted by the call (a new MainPID, not by
# Restart=), is active and answers.
restarted() {
	local pid
	pid=$(prop containerd.service MainPID)
	check "$1: containerd.service restarted (MainPID $2 → $pid)" test "$pid" -gt 0 -a "$pid" != "$2"
	check "$1: containerd.service active, NRestarts 0 (the RestartUnit job, not Restart=always)" \
		test "$(prop containerd.service ActiveState)/$(prop containerd.service NRestarts)" = active/0
	check "$1: containerd came back (answers on its socket)" ctd_back
}
ctd_back() {
	ctd_up && return 0
	{ SD systemctl status --no-pager containerd.service; tail -20 "$W/containerd.log"; } 2>&1 | sed 's/^/#   /'
	return 1
}

# === 1. the host CLI on the host root: the system bus ==========================================
pid0=$(prop containerd.service MainPID)
SD "$KD" install --payload "$P" --shims qemu --restart systemd >"$T/install-host.log" 2>&1
check "host CLI: install --restart systemd succeeds" logged '^installed 3.99.0-demo' "$T/install-host.log"
check "host CLI: it restarted through systemd" logged 'runtime restart: systemd RestartUnit containerd.service' "$T/install-host.log"
restarted "host CLI install" "$pid0"
check "host CLI: the system bus was activated by the call (dbus.service active)" \
	test "$(prop dbus.service ActiveState)" = active
check "host CLI: containerd's config has the kata-qemu handler" grep -q kata-qemu "$W/host/etc-containerd/config.toml"
check "host CLI: Kata in the sandbox's /opt/kata, not the machine's" test -e "$W/ovl/opt/upper/kata/bin/containerd-shim-kata-v2" -a ! -e /opt/kata
pid1=$(prop containerd.service MainPID)
SD "$KD" uninstall --restart systemd >"$T/uninstall-host.log" 2>&1
check "host CLI: uninstall --restart systemd succeeds" logged '^uninstalled' "$T/uninstall-host.log"
restarted "host CLI uninstall" "$pid1"
check "host CLI: containerd's config is byte for byte as before" diff -r "$T/etc-containerd.pristine" "$W/host/etc-containerd"

# === 2. the agent's path: another root, private socket, read-only mount, no capability ==========
R=$W/aroot
mkdir -p "$R/etc/containerd" "$R/opt" "$R/var/lib/kata-deploy" "$R/run/systemd" "$R/run/kata-deploy"
SD sh -c "mount --bind /etc/containerd '$R/etc/containerd' && mount --bind /opt '$R/opt' &&
	mount --bind /run/systemd '$R/run/systemd' && mount -o remount,bind,ro '$R/run/systemd'" ||
	not_ok "agent root: bind mounts"
ro_mount() { SD findmnt -n -o OPTIONS "$1" -O ro >/dev/null; }
check "agent root: run/systemd is a read-only mount" ro_mount "$R/run/systemd"
# As the chart's pod: uid 0, no capability (bounding set empty), no_new_privs.
NOCAP=(setpriv --bounding-set=-all --inh-caps=-all --ambient-caps=-all --no-new-privs --)
nocap_kd() { # LOG ARGS...: kata-deploy without capabilities; LOG gets its /proc/self/status Cap lines first
	local log=$1
	shift
	SD "${NOCAP[@]}" sh -c 'grep -E "^(Cap(Prm|Eff|Bnd)|NoNewPrivs):" /proc/self/status; exec "$@"' sh \
		"$KD" "$@" >"$log" 2>&1
}
pid2=$(prop containerd.service MainPID)
nocap_kd "$T/install-agent.log" install --root "$R" --payload "$P" --shims qemu --restart systemd
check "agent path: the engine ran with no capability and no_new_privs" \
	test "$(grep -cE '^(Cap(Prm|Eff|Bnd):\s+0+|NoNewPrivs:\s+1)$' "$T/install-agent.log")" = 4
check "agent path: install --root R --restart systemd succeeds" logged '^installed 3.99.0-demo' "$T/install-agent.log"
restarted "agent path install" "$pid2"
pid3=$(prop containerd.service MainPID)
nocap_kd "$T/uninstall-agent.log" uninstall --root "$R" --restart systemd
check "agent path: uninstall succeeds" logged '^uninstalled' "$T/uninstall-agent.log"
restarted "agent path uninstall" "$pid3"
check "agent path: containerd's config is byte for byte as before" diff -r "$T/etc-containerd.pristine" "$W/host/etc-containerd"

# === 3. a stopped unit; systemd's start rate limit =============================================
# RestartUnit of a stopped unit starts it. (reset-failed first: the starts above count against
# the unit's StartLimitBurst=, 5 in 10 s by default.)
SD systemctl reset-failed containerd.service
SD systemctl stop containerd.service
check "containerd.service stopped (MainPID 0)" test "$(prop containerd.service MainPID)" = 0
nocap_kd "$T/install-stopped.log" install --root "$R" --payload "$P" --shims qemu --restart systemd
check "agent path, containerd stopped: install succeeds" logged '^installed 3.99.0-demo' "$T/install-stopped.log"
restarted "agent path, containerd stopped" 0
# Starts in quick succession (an install, an uninstall, a second release's install, an admin's
# restart) exhaust the start rate limit: systemd then refuses to start the unit and containerd
# stays down (Result=start-limit-hit). Our restart resets the counter and restarts once more.
# systemd's window is fixed (10 s from its first start): an admin's drop-in with a long one keeps
# the engine's restart below inside it, whatever the machine's speed.
mkdir -p "$W/units/containerd.service.d"
printf '[Unit]\nStartLimitIntervalSec=1h\nStartLimitBurst=3\n' >"$W/units/containerd.service.d/limit.conf"
SD systemctl daemon-reload
for i in $(seq 1 8); do
	SD systemctl restart containerd.service >/dev/null 2>&1 || break
done
check "systemctl restart in a loop fails ($i restarts: $(prop containerd.service ActiveState), Result=$(prop containerd.service Result))" \
	test "$(prop containerd.service ActiveState)" = failed
# Result is start-limit-hit, or the exit-code of a containerd stopped while it was starting
# (systemd keeps the first failure's): either way, systemd now refuses to start it.
SD systemctl start containerd.service >"$T/start-refused.log" 2>&1
check "... systemctl start is refused: the start rate limit holds ($(head -1 "$T/start-refused.log"))" \
	test "$(prop containerd.service ActiveState)" = failed
check "... and containerd is down" not ctd_up
nocap_kd "$T/uninstall-limit.log" uninstall --root "$R" --restart systemd
check "agent path, start limit hit: uninstall succeeds" logged '^uninstalled' "$T/uninstall-limit.log"
check "agent path, start limit hit: the engine says it reset the counter" \
	logged 'containerd.service failed to start again (Result=.*): reset-failed and restart it once more' "$T/uninstall-limit.log"
restarted "agent path, start limit hit" 0
check "agent path: containerd's config is byte for byte as before, again" diff -r "$T/etc-containerd.pristine" "$W/host/etc-containerd"

# === the end ======================================================================================
kill -KILL "$SDPID"
wait "$UPID" 2>/dev/null
SDPID=
check "no process of the sandbox is left (cgroup empty)" test -z "$(cat "$CG"/cgroup.procs "$CG"/*/cgroup.procs "$CG"/*/*/cgroup.procs 2>/dev/null)"
find "$CG" -depth -type d -exec rmdir {} \; 2>/dev/null
check "the sandbox's cgroup $CG removed" test ! -e "$CG"
fp >"$T/machine.after"
check "the machine's /etc/containerd, /opt, /var/lib/kata-deploy, /run/systemd, /run/dbus, hostname, links unchanged" \
	diff -u "$T/machine.before" "$T/machine.after"
finish
