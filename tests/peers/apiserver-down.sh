#!/usr/bin/env bash
# Stop the etcd + kube-apiserver started by apiserver-up.sh DIR, by PID (never by name).
# Keeps DIR (logs) unless KD_APISERVER_RM=1.
dir=${1:?usage: apiserver-down.sh DIR}
rc=0
kd__stop_pid() { # PIDFILE NAME
	local f=$1 pid
	[ -f "$f" ] || return 0
	pid=$(cat "$f")
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		# only our process: its command line must mention DIR
		if tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF "$dir"; then
			kill -TERM "$pid" 2>/dev/null
			local i; for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
			if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null; sleep 0.2; fi
			kill -0 "$pid" 2>/dev/null && { echo "apiserver-down: $2 ($pid) still alive" >&2; rc=1; }
		fi
	fi
	rm -f "$f"
}
dir=$(cd "$dir" 2>/dev/null && pwd) || exit 0
kd__stop_pid "$dir/kube-apiserver.pid" kube-apiserver
kd__stop_pid "$dir/etcd.pid" etcd
[ "${KD_APISERVER_RM:-0}" = 1 ] && rm -rf "$dir"
exit $rc
