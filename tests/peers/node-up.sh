#!/usr/bin/env bash
# Start a real one-node Kubernetes cluster whose host is sandboxed (docs/NODE-TEST.md):
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd 2.x (+ runc, the
# bridge CNI) and kubelet, all inside ONE
#   unshare --pid --fork --kill-child --mount --net --propagation private --mount-proc
# whose mount namespace puts overlays over /etc /opt /var /run (stray writes land in DIR) and
# plain directories of DIR over the paths the node's runtime and kata-deploy write
# (/etc/containerd, /opt/kata, /var/lib/kata-deploy, /var/lib/kubelet, /var/lib/containerd,
# /run/containerd, /etc/cni/net.d, /var/log/pods, /var/log/containers), and whose network
# namespace has only lo and a veth pair (node IP 10.250.0.1). Nothing changes on the machine but
# DIR and a cgroup root /kd-node-<id> in each cgroup v1 controller (removed by node-down.sh).
#
#   tests/peers/node-up.sh DIR         # run: prints DIR/node.env on stdout
#   . tests/peers/node-up.sh DIR       # source: also exports the KD_NODE_* variables + helpers
#   tests/peers/node-down.sh DIR       # stop everything, remove the cgroup root (KD_NODE_RM=1: DIR)
#
# After it returns the node is Ready, the default ServiceAccount exists and the images
# registry.k8s.io/pause:3.10 (tests/tools/pause.c) and kd.test/busybox:1 (Debian's
# busybox-static) are in containerd's k8s.io namespace. Nothing comes from the internet.
# Knobs: KD_NODE_IMAGES="a.tar b.tar" more OCI archives to import before kubelet starts;
# KD_NODE_CONTAINERD_CONFIG a file to use as /etc/containerd/config.toml instead of ours.
# Binaries: $KD_PEERS_DIR/bin (scripts/peers/all.sh kube-node kubectl containerd2), Debian's
# etcd, runc, containernetworking-plugins, busybox-static.

kd__node_up() {
	local dir=$1
	[ -n "$dir" ] || { echo "usage: node-up.sh DIR" >&2; return 2; }
	mkdir -p "$dir" || return 1
	dir=$(cd "$dir" && pwd)
	local here
	here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
	local root=$here/../..
	local peers=${KD_PEERS_DIR:-$HOME/.cache/kata-deploy-peers}
	local b missing=""
	for b in kube-apiserver kube-controller-manager kube-scheduler kubelet containerd2 ctr2 \
		containerd2-shim-runc-v2; do
		[ -x "$peers/bin/$b" ] || missing="$missing $b"
	done
	for b in /usr/bin/etcd /usr/sbin/runc /usr/lib/cni/bridge /usr/lib/cni/host-local \
		/usr/lib/cni/loopback /bin/busybox; do
		[ -x "$b" ] || missing="$missing $b"
	done
	if [ -n "$missing" ]; then
		echo "node-up: missing:$missing (scripts/peers/all.sh kube-node kubectl containerd2;" \
			"scripts/install-deps.sh)" >&2
		return 1
	fi
	local id name cg
	id=$(head -c 3 /dev/urandom | od -An -tx1 | tr -d ' \n')
	name=kd-node-$id
	cg=/$name
	mkdir -p "$dir"/{pki,cfg,logs,bin,images,sysctl,run} || return 1
	local h
	for h in etc-containerd opt-kata var-lib-kata-deploy var-lib-kubelet var-lib-containerd \
		run-containerd etc-cni-net.d var-log-pods var-log-containers; do
		mkdir -p "$dir/host/$h"
	done
	for h in etc opt var run; do mkdir -p "$dir/ovl/$h/upper" "$dir/ovl/$h/work"; done

	# --- binaries the node runs -------------------------------------------------
	ln -sf "$peers/bin/containerd2-shim-runc-v2" "$dir/bin/containerd-shim-runc-v2"
	ln -sf "$peers/bin/containerd2" "$dir/bin/containerd"
	ln -sf "$peers/bin/ctr2" "$dir/bin/ctr"
	ln -sf /usr/sbin/runc "$dir/bin/runc"
	mkdir -p "$dir/kd-node-bin" "$dir/kd-node-run"
	cc -static -O2 -o "$dir/bin/pause" "$root/tests/tools/pause.c" &&
		cc -static -O2 -o "$dir/kd-node-bin/node-restart" "$root/tests/tools/node-restart.c" ||
		{ echo "node-up: cannot build tests/tools/{pause,node-restart}.c statically" >&2; return 1; }

	# --- images (no registry) ----------------------------------------------------
	python3 "$root/tests/tools/oci-image.py" --out "$dir/images/pause.tar" \
		--name registry.k8s.io/pause:3.10 --entrypoint /pause --file "$dir/bin/pause:/pause:0755" \
		>/dev/null || return 1
	local bb=(--out "$dir/images/busybox.tar" --name kd.test/busybox:1 --cmd /bin/sh
		--file /bin/busybox:/bin/busybox:0755 --dir tmp:1777)
	local applet
	for applet in sh sleep cat ls echo true false id ps kill wget test grep mkdir; do
		bb+=(--symlink "/bin/$applet:busybox")
	done
	python3 "$root/tests/tools/oci-image.py" "${bb[@]}" >/dev/null || return 1

	# --- PKI (EC P-256: fast) ------------------------------------------------------
	local pki=$dir/pki
	kd__cert() { # NAME SUBJECT [EXT...]
		local n=$1 subj=$2; shift 2
		openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "$subj" \
			-keyout "$pki/$n.key" -out "$pki/$n.csr" >/dev/null 2>&1 || return 1
		printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" "$@" \
			>"$pki/$n.ext"
		openssl x509 -req -in "$pki/$n.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
			-days 30 -extfile "$pki/$n.ext" -out "$pki/$n.crt" >/dev/null 2>&1 || return 1
	}
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
		-subj "/CN=kd-node-ca" -keyout "$pki/ca.key" -out "$pki/ca.crt" \
		-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
		>/dev/null 2>&1 || { echo "node-up: CA generation failed" >&2; return 1; }
	kd__cert apiserver "/CN=kube-apiserver" "extendedKeyUsage=serverAuth" \
		"subjectAltName=IP:10.250.0.1,IP:10.96.0.1,IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local" &&
		kd__cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "extendedKeyUsage=clientAuth" &&
		kd__cert admin "/O=system:masters/CN=kd-admin" "extendedKeyUsage=clientAuth" &&
		kd__cert controller-manager "/CN=system:kube-controller-manager" "extendedKeyUsage=clientAuth" &&
		kd__cert scheduler "/CN=system:kube-scheduler" "extendedKeyUsage=clientAuth" &&
		kd__cert kubelet-client "/O=system:nodes/CN=system:node:$name" "extendedKeyUsage=clientAuth" &&
		kd__cert kubelet "/CN=$name" "extendedKeyUsage=serverAuth" "subjectAltName=IP:10.250.0.1,DNS:$name" ||
		{ echo "node-up: certificates failed" >&2; return 1; }
	openssl ecparam -name prime256v1 -genkey -noout -out "$pki/sa.key" 2>/dev/null &&
		openssl ec -in "$pki/sa.key" -pubout -out "$pki/sa.pub" >/dev/null 2>&1 || return 1
	local kc
	for kc in admin controller-manager scheduler kubelet-client; do
		cat >"$dir/cfg/$kc.kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: kd-node
  cluster: {server: "https://10.250.0.1:443", certificate-authority: "$pki/ca.crt"}
users:
- name: u
  user: {client-certificate: "$pki/$kc.crt", client-key: "$pki/$kc.key"}
contexts:
- name: kd-node
  context: {cluster: kd-node, user: u}
current-context: kd-node
KC
	done
	# Every request is recorded (bench/node.sh counts requests per user from it).
	cat >"$dir/cfg/audit-policy.yaml" <<'AP'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
AP

	# --- node configuration -------------------------------------------------------
	if [ -n "${KD_NODE_CONTAINERD_CONFIG:-}" ]; then
		cp "$KD_NODE_CONTAINERD_CONFIG" "$dir/host/etc-containerd/config.toml" || return 1
	else
		# What a containerd 2.2 node has: `containerd config default`'s imports line, runc as
		# the default runtime. restrict_oom_score_adj: root lacks CAP_SYS_RESOURCE here, so
		# runc cannot set the pause container's oom_score_adj -998 (node-sandbox.md).
		cat >"$dir/host/etc-containerd/config.toml" <<'CT'
version = 3
imports = ['/etc/containerd/conf.d/*.toml']

[plugins]
  [plugins.'io.containerd.cri.v1.images']
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = 'registry.k8s.io/pause:3.10'

  [plugins.'io.containerd.cri.v1.runtime']
    restrict_oom_score_adj = true

    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = 'runc'

      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes]
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
          runtime_type = 'io.containerd.runc.v2'

          [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
            SystemdCgroup = false

    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ['/usr/lib/cni']
      conf_dir = '/etc/cni/net.d'
CT
	fi
	cat >"$dir/host/etc-cni-net.d/10-kd-bridge.conflist" <<'CNI'
{
  "cniVersion": "1.0.0",
  "name": "kd-node",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "kd-cni0",
      "isGateway": true,
      "ipMasq": false,
      "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.251.0.0/24"}]],
               "routes": [{"dst": "0.0.0.0/0"}]}
    },
    {"type": "loopback"}
  ]
}
CNI
	cat >"$dir/cfg/kubelet.yaml" <<KL
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 10.250.0.1
cgroupDriver: cgroupfs
cgroupRoot: $cg
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix:///run/containerd/containerd.sock
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: "$pki/ca.crt"}
authorization: {mode: Webhook}
tlsCertFile: "$pki/kubelet.crt"
tlsPrivateKeyFile: "$pki/kubelet.key"
rotateCertificates: false
serverTLSBootstrap: false
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
evictionHard: {memory.available: "50Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
nodeStatusUpdateFrequency: 4s
nodeStatusReportFrequency: 10s
syncFrequency: 10s
fileCheckFrequency: 60s
runtimeRequestTimeout: 2m
shutdownGracePeriod: 0s
KL

	# kubelet sets machine-wide sysctls: it gets plain files over them instead.
	local s
	for s in vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops \
		kernel/keys/root_maxkeys kernel/keys/root_maxbytes; do
		cat "/proc/sys/$s" >"$dir/sysctl/${s//\//.}"
	done

	# cgroups are not namespaced: kubelet gets a cgroup root of its own in every v1 controller.
	: >"$dir/cgroups"
	local c
	for c in /sys/fs/cgroup/*; do
		[ "$(stat -f -c %T "$c" 2>/dev/null)" = cgroupfs ] || continue
		mkdir "$c$cg" 2>/dev/null || continue
		echo "$c$cg" >>"$dir/cgroups"
		if [ -f "$c/cpuset.cpus" ]; then
			cat "$c/cpuset.cpus" >"$c$cg/cpuset.cpus"
			cat "$c/cpuset.mems" >"$c$cg/cpuset.mems"
		fi
	done

	cat >"$dir/node.env" <<ENV
export KD_NODE_DIR='$dir'
export KD_NODE_NAME='$name'
export KD_NODE_CGROUP_ROOT='$cg'
export KD_NODE_KUBECONFIG='$dir/cfg/admin.kubeconfig'
export KD_NODE_CONTAINERD_SOCK='$dir/host/run-containerd/containerd.sock'
export KD_NODE_IP=10.250.0.1
export KD_NODE_API=https://10.250.0.1:443
export KD_NODE_PEERS_BIN='$peers/bin'
ENV

	# --- the sandbox ----------------------------------------------------------------
	rm -f "$dir/run/ready" "$dir/run/failed"
	unshare --pid --fork --kill-child --mount --net --propagation private --mount-proc \
		bash "$here/node-inner.sh" "$dir" "$name" "${KD_NODE_IMAGES:-}" \
		>"$dir/logs/node.log" 2>&1 </dev/null &
	local upid=$!
	echo "$upid" >"$dir/unshare.pid"
	local i pid1=""
	for i in $(seq 1 100); do
		pid1=$(cat "/proc/$upid/task/$upid/children" 2>/dev/null | awk '{print $1}')
		[ -n "$pid1" ] && break
		sleep 0.05
	done
	[ -n "$pid1" ] || { echo "node-up: the sandbox did not start:" >&2; cat "$dir/logs/node.log" >&2; return 1; }
	echo "$pid1" >"$dir/node.pid"
	cat >>"$dir/node.env" <<ENV
export KD_NODE_PID='$pid1'
ENV
	cat "$here/node-helpers.sh" >>"$dir/node.env"
	. "$dir/node.env"

	# Ready: apiserver, node Ready, default ServiceAccount (a pod before it gets 403).
	local t0=$SECONDS ok=0
	while [ $((SECONDS - t0)) -lt 180 ]; do
		if [ -e "$dir/run/failed" ] || ! kill -0 "$pid1" 2>/dev/null; then
			echo "node-up: the sandbox failed:" >&2; tail -30 "$dir/logs/node.log" >&2; return 1
		fi
		if [ -e "$dir/run/ready" ] &&
			kd_node_kubectl get node "$name" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null | grep -qx True &&
			kd_node_kubectl -n default get serviceaccount default >/dev/null 2>&1; then
			ok=1; break
		fi
		sleep 0.5
	done
	if [ "$ok" != 1 ]; then
		echo "node-up: node $name not Ready after 180 s" >&2
		tail -5 "$dir"/logs/*.log >&2
		return 1
	fi
	echo "KD_NODE_UP_SECONDS=$((SECONDS - t0))" >>"$dir/node.env"
	return 0
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	kd__node_up "${1:-}" || exit 1
	echo "$KD_NODE_DIR/node.env"
else
	kd__node_up "${1:-}"
fi
