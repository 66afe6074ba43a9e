# A real systemd as PID 1 of a sandbox, for the tests that restart units through it
# (docs/NODE-TEST.md, "A real systemd"): test-systemd-restart.sh, test-systemd-nydus.sh. Sourced
# after tests/lib.sh and `set +e`, in $ROOTDIR:
#   sd_sandbox_start [CONTAINERD CTR]
#                      units (kd.target, sysinit.target, dbus, Debian's containerd.service),
#                      containerd's config, the cgroup; systemd through
#                      tests/peers/systemd-inner.sh; checks that it came up with containerd.service active. CONTAINERD and
#                      CTR (another release's binaries): containerd.service runs them as
#                      /usr/local/bin/containerd (the sandbox's /usr/local/bin gets them in front,
#                      where `kata-deploy` on "/" asks the binary first) with a version 3 config;
#                      by default Debian's /usr/bin/containerd with a version 2 config.
#   sd_sandbox_end     SIGKILL to systemd; checks that its cgroup is empty, removes it, and that
#                      the machine's fingerprint (taken by sd_sandbox_start) is unchanged
# It sets W (the sandbox's directory), SOCK (containerd's socket), SDCTD and SDCTR (the
# sandbox's containerd and ctr), SDPID, and defines SD (a
# command in all the sandbox's namespaces), prop UNIT PROPERTY, ctd_up, ctd_back, restarted,
# not, logged.
# systemd loads the units of W/units and of the sandbox's /etc/systemd/system, a tmpfs of its
# own (empty at start: the machine's units are never loaded; what an engine writes there is gone
# with the sandbox).
source tests/peers/node-fingerprint.sh

[ "$(id -u)" = 0 ] || { not_ok "${0##*/} needs root (namespaces, mounts, cgroups)"; finish; exit 1; }
for b in /lib/systemd/systemd /usr/bin/systemctl /usr/bin/dbus-daemon /usr/bin/containerd /usr/bin/ctr; do
	[ -x "$b" ] || { not_ok "$b missing: run scripts/install-deps.sh (systemd, dbus, containerd)"; finish; exit 1; }
done

# The machine's paths the sandbox must never change: containerd's and Kata's, systemd's runtime
# directory and unit directory, the nydus service's runtime and state directories.
sd_fp() {
	local p
	kd_machine_fp
	for p in /run/systemd /run/dbus /etc/systemd/system /run/nydus-for-kata-tee /var/lib/nydus-for-kata-tee; do
		if [ -e "$p" ]; then
			find "$p" -xdev -printf '%p %y %m %U %G %T@ %l\n' 2>/dev/null | LC_ALL=C sort
		else
			echo "$p absent"
		fi
	done
	hostname
}

SD() { nsenter -t "$SDPID" -a -- "$@"; }
prop() { SD systemctl show -p "$2" --value "$1"; }
not() { ! "$@"; }
logged() { grep -q "$1" "$2" || { sed 's/^/#   /' "$2"; return 1; }; } # PATTERN LOG (shown when absent)
ctd_up() { SD "$SDCTR" --address "$SOCK" version >/dev/null 2>&1; }
ctd_back() {
	ctd_up && return 0
	{ SD systemctl status --no-pager containerd.service; tail -20 "$W/containerd.log"; } 2>&1 | sed 's/^/#   /'
	return 1
}
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

SDPID= UPID=
_sd_cleanup() {
	local rc=$?
	[ -n "$SDPID" ] && kill -KILL "$SDPID" 2>/dev/null
	[ -n "$UPID" ] && wait "$UPID" 2>/dev/null
	[ -n "${CG:-}" ] && [ -d "$CG" ] && find "$CG" -depth -type d -exec rmdir {} \; 2>/dev/null
	(exit $rc)
	_kd_cleanup
}

sd_sandbox_start() {
	sd_fp >"$T/machine.before"
	W=$T/sd
	mkdir -p "$W/units" "$W/host/etc-containerd" "$W/ctd" "$W/empty"
	cat >"$W/units/kd.target" <<'EOF'
[Unit]
Description=kata-deploy test: containerd and the system bus
DefaultDependencies=no
Wants=containerd.service dbus.socket
EOF
	# What a service with the default dependencies (Requires= and After= sysinit.target) needs
	# to start: a unit of that name (an empty target here: nothing of the machine's boot runs).
	cat >"$W/units/sysinit.target" <<'EOF'
[Unit]
Description=kata-deploy test: system initialization (nothing to do in the sandbox)
DefaultDependencies=no
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
	# Debian's own containerd.service (Type=notify, Delegate=yes, KillMode=process,
	# Restart=always, RestartSec=5, systemd's default start rate limit), less its
	# `ExecStartPre=-/sbin/modprobe overlay` (a module load is the machine's) and its ordering
	# after network.target; its output to a file (there is no journald).
	local cfgv=2
	SDCTD=/usr/bin/containerd SDCTR=/usr/bin/ctr
	if [ $# -ge 2 ]; then
		mkdir -p "$W/usr-local-bin"
		ln -s "$1" "$W/usr-local-bin/containerd"
		ln -s "$2" "$W/usr-local-bin/ctr"
		SDCTD=/usr/local/bin/containerd SDCTR=/usr/local/bin/ctr cfgv=3
	fi
	{
		sed -e '/^ExecStartPre=.*modprobe/d' -e '/^After=/d' -e '/^\[Install\]/,$d' \
			-e 's/^\[Unit\]$/[Unit]\nDefaultDependencies=no/' -e "s#^ExecStart=/usr/bin/containerd\$#ExecStart=$SDCTD#" \
			/lib/systemd/system/containerd.service
		printf 'StandardOutput=append:%s\nStandardError=inherit\n' "$W/containerd.log"
	} >"$W/units/containerd.service"
	grep -q "^ExecStart=$SDCTD\$" "$W/units/containerd.service" ||
		{ not_ok "Debian's containerd.service has no 'ExecStart=/usr/bin/containerd'"; finish; exit 1; }
	SOCK=$W/ctd/containerd.sock
	cat >"$W/host/etc-containerd/config.toml" <<EOF
version = $cfgv
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
	trap _sd_cleanup EXIT

	local t0=$SECONDS i state
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
	check "the sandbox's /etc/systemd/system is a tmpfs of its own, empty, and in systemd's unit path" \
		sd_units_dir_empty_tmpfs
	check "containerd answers on its socket ($(SD "$SDCTD" --version | cut -d' ' -f3))" ctd_up
}

sd_units_dir_empty_tmpfs() {
	test "$(SD stat -fc %T /etc/systemd/system)" = tmpfs &&
		test -z "$(SD find /etc/systemd/system -mindepth 1)" &&
		[[ " $(SD systemctl show -p UnitPath --value) " == *" /etc/systemd/system "* ]]
}

sd_sandbox_end() {
	kill -KILL "$SDPID"
	wait "$UPID" 2>/dev/null
	SDPID= UPID=
	check "no process of the sandbox is left (cgroup empty)" \
		test -z "$(cat "$CG"/cgroup.procs "$CG"/*/cgroup.procs "$CG"/*/*/cgroup.procs 2>/dev/null)"
	find "$CG" -depth -type d -exec rmdir {} \; 2>/dev/null
	check "the sandbox's cgroup $CG removed" test ! -e "$CG"
	sd_fp >"$T/machine.after"
	check "the machine's /etc/containerd, /opt, /var/lib/kata-deploy, /etc/systemd/system, /run/systemd, /run/dbus, hostname, links unchanged" \
		diff -u "$T/machine.before" "$T/machine.after"
}
