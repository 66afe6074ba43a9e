#!/usr/bin/env bash
# Stop the sandboxed node of tests/peers/node-up.sh DIR: SIGTERM to its PID 1 (tests/tools/pause)
# ends every process of its PID namespace (daemons, shims, containers) and drops its mounts and
# network; then the cgroup root /kd-node-<id> is removed from every controller.
# Only our processes: the PID must be the child of the recorded unshare and run DIR's pause.
# Keeps DIR (logs) unless KD_NODE_RM=1.
dir=${1:?usage: node-down.sh DIR}
dir=$(cd "$dir" 2>/dev/null && pwd) || exit 0
rc=0
pid1=$(cat "$dir/node.pid" 2>/dev/null)
upid=$(cat "$dir/unshare.pid" 2>/dev/null)
if [ -n "$pid1" ] && [ "$(readlink "/proc/$pid1/exe" 2>/dev/null)" = "$dir/bin/pause" ] ||
	{ [ -n "$pid1" ] && tr '\0' ' ' <"/proc/$pid1/cmdline" 2>/dev/null | grep -qF "$dir"; }; then
	kill -TERM "$pid1" 2>/dev/null
	for i in $(seq 1 100); do kill -0 "$pid1" 2>/dev/null || break; sleep 0.1; done
	kill -0 "$pid1" 2>/dev/null && kill -KILL "$pid1" 2>/dev/null
fi
if [ -n "$upid" ] && tr '\0' ' ' <"/proc/$upid/cmdline" 2>/dev/null | grep -qF "$dir"; then
	for i in $(seq 1 50); do kill -0 "$upid" 2>/dev/null || break; sleep 0.1; done
	kill -0 "$upid" 2>/dev/null && kill -KILL "$upid" 2>/dev/null
fi
# The cgroups empty once the namespace's last process has been reaped. node-up.sh made the root
# in each v1 controller; runc adds it in the cgroup2 (unified) tree of a hybrid host too.
root=$(sed -n "s/^export KD_NODE_CGROUP_ROOT='\(.*\)'$/\1/p" "$dir/node.env" 2>/dev/null)
case "$root" in
/kd-node-[0-9a-f]*)
	for cg in /sys/fs/cgroup/*"$root"; do
		[ -d "$cg" ] || continue
		for i in $(seq 1 100); do
			find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null
			[ -d "$cg" ] || break
			sleep 0.1
		done
		[ -d "$cg" ] && { echo "node-down: cannot remove $cg" >&2; rc=1; }
	done
	;;
esac
rm -f "$dir/node.pid" "$dir/unshare.pid"
[ "${KD_NODE_RM:-0}" = 1 ] && [ $rc = 0 ] && rm -rf "$dir"
exit $rc
