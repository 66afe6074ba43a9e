#!/usr/bin/env bash
# The first process of a real systemd's sandbox (started by tests/peers/systemd-sandbox.sh inside
# `unshare --pid --fork --mount --uts --ipc --net --cgroup --propagation private
# --mount-proc`): isolates the file system, then becomes systemd (PID 1 of the namespace).
#   systemd-inner.sh DIR
# DIR/ovl/{etc,var,opt}: overlay upper dirs (every write to /etc, /var, /opt lands there);
# DIR/host/etc-containerd: bind-mounted on /etc/containerd. systemd loads units
# (SYSTEMD_UNIT_PATH) from /etc/systemd/system, a new empty tmpfs (what an engine writes there;
# the machine's units are never seen), then from DIR/units (the test's). DIR/usr-local-bin, when
# there, is laid over /usr/local/bin. /run and /dev are new tmpfs (/tmp is the machine's: DIR is
# in it; nothing here writes to /tmp outside DIR, no unit has PrivateTmp); /proc/sys and /sys are
# read-only (systemd as PID 1 writes fs.file-max and fs.nr_open: EROFS here); the cgroup2
# hierarchy of the cgroup namespace is systemd's to manage (unified mode, no controllers).
set -eu
D=$1
log() { echo "[systemd-inner] $*" >&2; }
fail() {
	log "FAILED: $*"
	exit 1
}

for d in etc var opt; do
	mkdir -p "$D/ovl/$d/upper" "$D/ovl/$d/work"
	mount -t overlay "kd-sd-$d" -o "lowerdir=/$d,upperdir=$D/ovl/$d/upper,workdir=$D/ovl/$d/work" "/$d" ||
		fail "overlay on /$d"
done
# DIR/usr-local-bin, when there: another containerd (and its ctr) in front of the machine's
# /usr/local/bin, as a node with a containerd of its own in /usr/local/bin (read-only overlay).
if [ -d "$D/usr-local-bin" ]; then
	mount -t overlay kd-sd-usr-local-bin -o "lowerdir=$D/usr-local-bin:/usr/local/bin" /usr/local/bin ||
		fail "overlay on /usr/local/bin"
fi
mkdir -p /etc/containerd && mount --bind "$D/host/etc-containerd" /etc/containerd || fail "bind /etc/containerd"
mkdir -p /etc/systemd/system && mount -t tmpfs -o mode=0755,nosuid,nodev kd-sd-units /etc/systemd/system ||
	fail "tmpfs /etc/systemd/system"
mount -t tmpfs -o mode=0755,nosuid,nodev kd-sd-run /run || fail "tmpfs /run"

# /dev: a tmpfs with the few nodes a service uses (bind mounts of the machine's), its own devpts.
mkdir -p "$D/dev"
mount -t tmpfs -o mode=0755,nosuid kd-sd-dev "$D/dev" || fail "tmpfs dev"
for n in null zero full random urandom tty; do
	touch "$D/dev/$n" && mount --bind "/dev/$n" "$D/dev/$n" || fail "bind /dev/$n"
done
mkdir -p "$D/dev/pts" "$D/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$D/dev/pts" || fail "devpts"
ln -s pts/ptmx "$D/dev/ptmx"
ln -s /proc/self/fd "$D/dev/fd"
mount -t tmpfs -o mode=1777,nosuid,nodev shm "$D/dev/shm" || fail "shm"
mount --rbind "$D/dev" /dev || fail "bind /dev"

# /proc is this PID namespace's (--mount-proc); its sysctls stay the machine's: read-only.
mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys || fail "ro /proc/sys"
# sysfs of this network namespace, read-only; cgroup2 of this cgroup namespace on top, writable.
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs /sys || fail "sysfs"
mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 /sys/fs/cgroup || fail "cgroup2"
hostname kd-systemd-test

mkdir -p "$D/empty"
log "exec systemd"
exec env -i container=kd-test PATH=/usr/sbin:/usr/bin:/sbin:/bin \
	SYSTEMD_UNIT_PATH="/etc/systemd/system:$D/units" SYSTEMD_GENERATOR_PATH="$D/empty" \
	SYSTEMD_ENVIRONMENT_GENERATOR_PATH="$D/empty" \
	/lib/systemd/systemd --system --unit=kd.target --log-target=console --log-level=info \
	--show-status=false
