# Fingerprints for tests on the sandboxed node (tests/peers/node-up.sh; sourced by
# tests/integration/test-node-kata.sh): the machine's own paths a node must never touch, and the
# node's sandboxed host state that kata-deploy changes and must revert byte for byte.

# The machine's /etc/containerd, /opt, /var/lib/kata-deploy, /run/nri, … (paths, types, modes,
# owners, sizes, mtimes; file contents for /etc/containerd and /var/lib/kata-deploy) and its network
# links. Not the kd-node-* cgroups: other node tests may run at the same time; a test checks that
# its own node's cgroup root is gone (kd_node_cgroups_gone).
KD_MACHINE_PATHS=(/etc/containerd /opt /var/lib/kata-deploy /run/nri /etc/crio /etc/cni /var/lib/cni
	/run/netns /var/lib/kubelet /var/lib/containerd /run/containerd /var/log/pods
	/var/log/containers /opt/containerd /etc/nri /opt/nri /run/kata-containers /run/vc /dev/log
	/run/syslog)
kd_machine_fp() {
	local p
	for p in "${KD_MACHINE_PATHS[@]}"; do
		if [ -e "$p" ]; then
			find "$p" -xdev -printf '%p %y %m %U %G %s %T@ %l\n' 2>/dev/null | LC_ALL=C sort
		else
			echo "$p absent"
		fi
	done
	for p in /etc/containerd /var/lib/kata-deploy; do
		[ -d "$p" ] && find "$p" -xdev -type f -exec sha256sum {} + | LC_ALL=C sort
	done
	ip -o link show | awk '{print $2}'
}

# kd_node_cgroups_gone DIR: node-down.sh removed the node's cgroup root from every controller.
kd_node_cgroups_gone() {
	local root
	root=$(sed -n "s/^export KD_NODE_CGROUP_ROOT='\(.*\)'$/\1/p" "$1/node.env")
	[ -n "$root" ] && ! ls -d /sys/fs/cgroup/*"$root" 2>/dev/null | grep -q .
}

# kd_node_host_fp DIR: the node's kata-relevant host state (lib.sh's snapshot of each directory).
kd_node_host_fp() {
	local d
	for d in host/etc-containerd host/opt-kata host/var-lib-kata-deploy ovl/etc/upper ovl/opt/upper; do
		echo "== $d"
		snapshot "$1/$d"
	done
}
