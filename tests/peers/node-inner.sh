#!/usr/bin/env bash
# PID 1 of the sandboxed node (started by node-up.sh inside unshare --pid --mount --net): mounts
# the sandbox, sets up the network, starts etcd, the control plane, containerd and kubelet under
# small supervisors, then becomes tests/tools/pause (reaps; SIGTERM ends the namespace).
#   node-inner.sh DIR NODE_NAME "EXTRA_IMAGE_TARS"
# Supervisors (DIR/run/): <name>.ipid is the daemon's PID inside the namespace, <name>.starts
# counts its starts; a daemon that exits is started again after 0.2 s (like systemd's
# Restart=always), except while <name>.hold exists; a line "restart" written to the FIFO
# <name>.ctl makes the supervisor stop (SIGTERM, 10 s, SIGKILL) and start it again, as
# `systemctl restart` would; so does a file /opt/kd-node/run/<name>.service.restart in the
# sandbox (tests/tools/node-restart.c creates it from the agent's pod: the agent's
# RUNTIME_RESTART=command: of the node test; see docs/NODE-TEST.md). Like `systemctl restart` of a
# Type=notify unit, the request is done (its file removed) only once the daemon is up again and
# ready (ready_<name>, where defined): a per-node Job pod that exits right after asking must not
# exit while containerd is down (its exit event would be lost: the pod ends Unknown, then Failed).
set -u
D=$1 NAME=$2 EXTRA=${3:-}
log() { echo "[node $(date +%T.%3N)] $*"; }
fail() {
	log "FAILED: $*"
	touch "$D/run/failed"
	exit 1
}
export PATH=$D/bin:$PATH

# --- mounts ---------------------------------------------------------------------------
for d in etc opt var run; do
	mount -t overlay "kd-node-$d" -o "lowerdir=/$d,upperdir=$D/ovl/$d/upper,workdir=$D/ovl/$d/work" "/$d" ||
		fail "overlay on /$d"
done
bindd() {
	mkdir -p "$2" && mount --bind "$1" "$2" || fail "bind $1 on $2"
}
bindd "$D/host/etc-containerd" /etc/containerd
bindd "$D/host/opt-kata" /opt/kata
bindd "$D/host/var-lib-kata-deploy" /var/lib/kata-deploy
bindd "$D/host/var-lib-kubelet" /var/lib/kubelet
bindd "$D/host/var-lib-containerd" /var/lib/containerd
bindd "$D/host/run-containerd" /run/containerd
bindd "$D/host/etc-cni-net.d" /etc/cni/net.d
bindd "$D/host/var-log-pods" /var/log/pods
bindd "$D/host/var-log-containers" /var/log/containers
# The node's `systemctl restart` for pods (tests/tools/node-restart.c; see supervise below):
# the program and the directory of restart requests, under /opt which the agent's pod mounts.
bindd "$D/kd-node-bin" /opt/kd-node/bin
bindd "$D/kd-node-run" /opt/kd-node/run
REQ=/opt/kd-node/run
for f in "$D"/sysctl/*; do
	t=/proc/sys/$(basename "$f" | tr . /)
	mount --bind "$f" "$t" || fail "bind over $t"
done
echo "10.250.0.1 $NAME" >>/etc/hosts

# --- network: lo, a veth pair, the service IP of the apiserver on lo ---------------------
ip link set lo up &&
	ip link add kd-veth0 type veth peer name kd-veth1 &&
	ip addr add 10.250.0.1/24 dev kd-veth0 &&
	ip link set kd-veth0 up && ip link set kd-veth1 up &&
	ip route add default via 10.250.0.254 dev kd-veth0 onlink &&
	ip addr add 10.96.0.1/32 dev lo || fail "network"

# supervise NAME CMD... : keep CMD running (see the header). The supervisor sleeps in `read -t`
# on its control FIFO (a builtin: no process per poll on a shared 2-core machine).
supervise() {
	local n=$1
	shift
	mkfifo "$D/run/$n.ctl" || fail "mkfifo $n.ctl"
	(
		starts=0 pending=0
		while :; do
			while [ -e "$D/run/$n.hold" ]; do read -r -t 0.2 _ <>"$D/run/$n.ctl"; done
			"$@" >>"$D/logs/$n.log" 2>&1 </dev/null &
			pid=$!
			starts=$((starts + 1))
			echo "$pid" >"$D/run/$n.ipid"
			echo "$starts" >"$D/run/$n.starts"
			log "$n started (pid $pid, start $starts)"
			if [ "$pending" = 1 ]; then # a requested restart is done when the daemon is ready
				if declare -F "ready_$n" >/dev/null; then
					for _ in $(seq 1 300); do "ready_$n" >/dev/null 2>&1 && break; read -r -t 0.1 _ <>"$D/run/$n.ctl"; done
				fi
				rm -f "$REQ/$n.service.restart"
				pending=0
				log "$n: restart done"
			fi
			while kill -0 "$pid" 2>/dev/null; do
				cmd=
				read -r -t 0.5 cmd <>"$D/run/$n.ctl"
				if [ "$pending" = 0 ] && [ -e "$REQ/$n.service.restart" ]; then
					pending=1
					cmd=restart
				fi
				if [ "$cmd" = restart ]; then
					log "$n: restart requested"
					kill -TERM "$pid"
					for i in $(seq 1 100); do
						kill -0 "$pid" 2>/dev/null || break
						read -r -t 0.1 _ <>"$D/run/$n.ctl"
					done
					kill -KILL "$pid" 2>/dev/null
				fi
			done
			wait "$pid"
			log "$n exited (status $?)"
			read -r -t 0.2 _ <>"$D/run/$n.ctl"
		done
	) &
}

wait_for() { # SECONDS DESC CMD...
	local t=$1 what=$2 i
	shift 2
	for i in $(seq 1 $((t * 10))); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	fail "$what not ready after $t s"
}

P=$D/pki
BIN=${KD_PEERS_DIR:-$HOME/.cache/kata-deploy-peers}/bin
log "starting etcd"
supervise etcd /usr/bin/etcd --name kd-node --data-dir "$D/etcd-data" \
	--listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
	--listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
	--initial-cluster kd-node=http://127.0.0.1:2380 --initial-cluster-state new \
	--quota-backend-bytes 1073741824
wait_for 30 etcd curl -fsS http://127.0.0.1:2379/health

log "starting kube-apiserver"
supervise kube-apiserver "$BIN/kube-apiserver" \
	--etcd-servers=http://127.0.0.1:2379 --bind-address=0.0.0.0 --secure-port=443 \
	--advertise-address=10.250.0.1 --cert-dir="$D/run/apiserver-certs" \
	--tls-cert-file="$P/apiserver.crt" --tls-private-key-file="$P/apiserver.key" \
	--client-ca-file="$P/ca.crt" \
	--kubelet-client-certificate="$P/apiserver-kubelet-client.crt" \
	--kubelet-client-key="$P/apiserver-kubelet-client.key" \
	--kubelet-certificate-authority="$P/ca.crt" --kubelet-preferred-address-types=InternalIP \
	--authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
	--service-account-issuer=https://kubernetes.default.svc.cluster.local \
	--service-account-key-file="$P/sa.pub" --service-account-signing-key-file="$P/sa.key" \
	--service-cluster-ip-range=10.96.0.0/24 --allow-privileged=true --profiling=false \
	--endpoint-reconciler-type=none \
	--audit-policy-file="$D/cfg/audit-policy.yaml" --audit-log-path="$D/logs/audit.log" \
	--audit-log-maxsize=200 --v=1
wait_for 90 kube-apiserver curl -fsS --cacert "$P/ca.crt" --cert "$P/admin.crt" --key "$P/admin.key" \
	https://10.250.0.1:443/readyz

log "starting kube-controller-manager, kube-scheduler"
supervise kube-controller-manager "$BIN/kube-controller-manager" \
	--kubeconfig="$D/cfg/controller-manager.kubeconfig" \
	--authentication-kubeconfig="$D/cfg/controller-manager.kubeconfig" \
	--authorization-kubeconfig="$D/cfg/controller-manager.kubeconfig" \
	--bind-address=127.0.0.1 --secure-port=10257 \
	--use-service-account-credentials --service-account-private-key-file="$P/sa.key" \
	--root-ca-file="$P/ca.crt" --cluster-signing-cert-file="$P/ca.crt" \
	--cluster-signing-key-file="$P/ca.key" --leader-elect=false --allocate-node-cidrs=false \
	--controllers='*,-bootstrapsigner,-tokencleaner' --v=1
supervise kube-scheduler "$BIN/kube-scheduler" --kubeconfig="$D/cfg/scheduler.kubeconfig" \
	--authentication-kubeconfig="$D/cfg/scheduler.kubeconfig" \
	--authorization-kubeconfig="$D/cfg/scheduler.kubeconfig" \
	--bind-address=127.0.0.1 --secure-port=10259 --leader-elect=false --v=1

log "starting containerd"
ready_containerd() { ctr --address /run/containerd/containerd.sock version; }
supervise containerd "$D/bin/containerd" --config /etc/containerd/config.toml
wait_for 30 containerd ctr --address /run/containerd/containerd.sock version
for t in "$D"/images/*.tar $EXTRA; do
	ctr --address /run/containerd/containerd.sock -n k8s.io images import "$t" >>"$D/logs/images.log" 2>&1 ||
		fail "import $t"
done

log "starting kubelet"
supervise kubelet "$BIN/kubelet" --config="$D/cfg/kubelet.yaml" \
	--kubeconfig="$D/cfg/kubelet-client.kubeconfig" --node-ip=10.250.0.1 \
	--hostname-override="$NAME" --v=2
touch "$D/run/ready"
log "ready"
exec "$D/bin/pause"
