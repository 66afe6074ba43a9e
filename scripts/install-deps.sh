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
	libmicrohttpd-dev
	clang libclang-rt-14-dev clang-format
	zstd xz-utils curl unzip python3 kmod
	containerd runc
	docker-registry etcd-server etcd-client
)
if ! dpkg -s "${PKGS[@]}" >/dev/null 2>&1; then
	$SUDO apt-get update -qq
	$SUDO apt-get install -y -qq --no-install-recommends "${PKGS[@]}" >/dev/null
fi
echo "install-deps: all packages present"
