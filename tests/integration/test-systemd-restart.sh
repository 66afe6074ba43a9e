#!/usr/bin/env bash
# The runtime restart through a REAL systemd (docs/NODE-TEST.md, "A real systemd"): Debian's
# systemd runs as PID 1 of its own PID, mount, UTS, IPC, network and cgroup namespaces
# (tests/peers/systemd-sandbox.sh, systemd-inner.sh), with Debian's dbus-daemon (socket-activated
# system bus) and Debian's containerd as containerd.service (Type=notify). Our engine restarts
# that unit:
#   1. the host CLI on the host root (`kata-deploy install|uninstall --restart systemd`): the
#      system bus (sd_bus_open_system), as on a node where the CLI runs as root
#   2. the node agent's path: a root other than "/" (kata-deploy install --root R), whose
#      run/systemd is a READ-ONLY bind mount of systemd's /run/systemd, run as uid 0 with no
#      capability at all and no_new_privs (the chart's unprivileged pod): systemd's private
#      socket, <root>/run/systemd/private
# Each restart: RestartUnit's job finished, containerd.service active with a new MainPID (not a
# restart by Restart=: NRestarts stays 0), containerd answers on its socket. The machine's
# /etc/containerd, /opt, /var/lib/kata-deploy, /etc/systemd/system, /run/systemd, /run/dbus,
# hostname, network links are fingerprinted before and after; the sandbox's cgroup is removed.
# (The managed nydus service's Reload / restart / stop: test-systemd-nydus.sh, same sandbox.)
# Needs root, Debian's systemd, dbus and containerd (scripts/install-deps.sh).
source "$(dirname "$0")/../lib.sh"
set +e
cd "$ROOTDIR"
source tests/peers/systemd-sandbox.sh

sd_sandbox_start
check "the system bus is not running yet (socket-activated)" test "$(prop dbus.service ActiveState)" = inactive

P=$T/payload.tar.zst
"$KD" payload pack artifacts/demo/tree --spec artifacts/demo/payload.yaml -o "$P" >/dev/null


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
check "nothing was written to the sandbox's /etc/systemd/system" test -z "$(SD find /etc/systemd/system -mindepth 1)"
sd_sandbox_end
finish
