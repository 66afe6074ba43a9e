#!/usr/bin/env bash
# Kata itself, built by kata-build from upstream 4.1.0 (docs/KATA.md), as far as this machine
# allows (no /dev/vhost-vsock; /dev/kvm only through kvm_pvm):
#  1. the qemu shim's components and the payload build (cached by key in the real cache, so a
#     warm run takes seconds), and each equals the committed reference (artifacts/reference);
#  2. `kata-deploy install` puts the payload on a temp host root;
#  3. upstream's own loader, `kata-runtime env`, on the installed configuration finds every
#     path (hypervisor, kernel, initrd, virtiofsd) and reports the pinned versions;
#  4. containerd 2.x with the configuration we wrote runs a container with our kata-qemu
#     handler: our shim starts with our configuration and the run fails for the host reason
#     only (no vhost-vsock);
#  5. our kernel and initrd boot under QEMU TCG with a vhost-user vsock served by
#     vhost-device-vsock, and upstream's kata-agent-ctl gets answers to Check and
#     GetGuestDetails from our agent (version 4.1.0).
#  6. upstream's real kata-ctl (recipes/kata-ctl.yaml, in the default payload as shims.yaml's
#     debug tool), equal to its reference: not installed by the install of part 2 (no --debug),
#     installed with --debug, where it runs (version 4.1.0, its host checks), removed again
#     without it.
# Everything that needs /opt/kata or /run runs in a private mount namespace over temp dirs:
# nothing on the machine changes.
source "$(dirname "$0")/../lib.sh"
KB=$KD_BUILD/kata-build
SHARED_SOURCES=$KD_SHARED_SOURCES
CACHE=${KD_BUILD_CACHE:-$HOME/.cache/kata-build}
PEERS=${KD_PEERS_DIR:-$HOME/.cache/kata-deploy-peers}/bin
OUT=$T/kata-static
REF=$ROOTDIR/artifacts/reference/kata.sha256
pids=()
cleanup() { for p in "${pids[@]}"; do { kill "$p"; wait "$p"; } 2>/dev/null || :; done; }
trap 'rc=$?; set +e; cleanup; (exit $rc); _kd_cleanup' EXIT

# ---- 1. build ----
KBC="$KB --cache $CACHE --mirror $SHARED_SOURCES --out $OUT"
start=$(date +%s)
# The default payload: the qemu shim's components and the debug tool kata-ctl (shims.yaml).
check "kata-build payload (qemu shim, kata-ctl) from upstream 4.1.0 sources" \
	sh -c "$KBC payload >'$T/payload.log' 2>&1 || { tail -40 '$T/payload.log'; exit 1; }"
check "kata-build component vhost-device-vsock" \
	sh -c "$KBC component vhost-device-vsock >'$T/vsock.log' 2>&1 || { tail -20 '$T/vsock.log'; exit 1; }"
echo "# build (cached by key in $CACHE): $(( $(date +%s) - start )) s"
grep -E '^(payload|[a-z0-9-]+ [0-9a-f]{64} )' "$T/payload.log" "$T/vsock.log" | sed 's/^/# /' || :
# The reference holds the components no other reference covers (the kernel has
# artifacts/kernel/reference): each one's sha256 from a clean build that a second clean build
# (kata-build verify) matched.
ref_ok() {
	local c want got rc=0
	for c in shim-v2 kata-agent guest-initrd virtiofsd vhost-device-vsock kata-ctl; do
		grep -q "^$c " "$REF" || { echo "# $REF lacks $c"; rc=1; }
	done
	while read -r c want; do
		case $c in \#* | "") continue ;; esac
		got=$(sha256sum <"$OUT/kata-static-$c.tar.zst" | cut -c1-64)
		[ "$want" = "$got" ] && continue
		echo "# $c: built $got, the reference says $want"
		rc=1
	done <"$REF"
	if [ $rc -ne 0 ]; then
		echo "# if the inputs changed on purpose: kata-build verify <component> (a second clean"
		echo "# build must agree), then put these lines in $REF:"
		for c in $(awk '!/^#/ {print $1}' "$REF"); do
			[ -e "$OUT/kata-static-$c.tar.zst" ] || continue
			echo "#ref $c $(sha256sum <"$OUT/kata-static-$c.tar.zst" | cut -c1-64)"
		done
	fi
	return $rc
}
check "every Kata component equals the reference ($REF)" ref_ok
P=$OUT/payload.tar.zst
# The payload is a function of its components: merged again into another output directory (the
# components from the cache, the merge and the pack run again), it is the same file. With the
# components equal to the references, two clean builds give the same payload.
check "kata-build payload again (another output directory): the same sha256" sh -c \
	"$KB --cache $CACHE --mirror $SHARED_SOURCES --out '$T/kata-static2' payload >'$T/payload2.log' 2>&1 &&
	 a=\$(sha256sum <'$P' | cut -c1-64) && b=\$(sha256sum <'$T/kata-static2/payload.tar.zst' | cut -c1-64) &&
	 echo \"# payload sha256 \$a (again: \$b)\" && [ \"\$a\" = \"\$b\" ]"

# ---- 2. install ----
R=$T/root
make_host_root "$R"
check "kata-deploy install of the payload (qemu shim)" \
	sh -c "'$KD' install --root '$R' --payload '$P' --shims qemu >'$T/install.log' 2>&1 || { cat '$T/install.log'; exit 1; }"
CFG=/opt/kata/runtimes/qemu/configuration-qemu.toml
check "installed: shim, runtime, agent-bearing initrd, qemu, kernel, virtiofsd" \
	test -x "$R/opt/kata/bin/containerd-shim-kata-v2" -a -x "$R/opt/kata/bin/kata-runtime" \
	-a -f "$R/opt/kata/share/kata-containers/kata-containers-initrd.img" \
	-a -x "$R/opt/kata/bin/qemu-system-x86_64" -a -f "$R/opt/kata/share/kata-containers/vmlinux.container" \
	-a -x "$R/opt/kata/libexec/virtiofsd" -a -f "$R$CFG"
check "the payload carries kata-ctl; without --debug it is not installed" sh -c \
	"tar --zstd -tf '$P' | grep -qx 'opt/kata/bin/kata-ctl' && test ! -e '$R/opt/kata/bin/kata-ctl'"

# In a private mount and PID namespace (every process in it ends with it): /opt/kata is the
# installed root's, /run is an empty tmpfs, /dev a tmpfs with the host's basic nodes and a
# syslog socket at /dev/log (Kata logs to syslog; the messages land in $T/syslog.log), /etc and
# /var overlays whose writes land in $T (containerd's CRI plugin creates /etc/cni/net.d: on the
# machine that would show in the fingerprint of a node test running beside this one). With
# STANDIN_VSOCK=1 a plain file stands at /dev/vhost-vsock: see tests/tools/vsock-standin.c.
in_ns() {
	mkdir -p "$T/hostdev" "$T/ovl/etc/u" "$T/ovl/etc/w" "$T/ovl/var/u" "$T/ovl/var/w"
	unshare -m -p -f --mount-proc --propagation private \
		env R="$R" T="$T" STANDIN_VSOCK="${STANDIN_VSOCK:-0}" bash -c '
		set -e
		for d in etc var; do
			mount -t overlay "kd-$d" -o "lowerdir=/$d,upperdir=$T/ovl/$d/u,workdir=$T/ovl/$d/w" "/$d"
		done
		mount -t tmpfs kd-opt /opt && mkdir /opt/kata && mount --bind "$R/opt/kata" /opt/kata
		mount -t tmpfs kd-run /run
		mount --rbind /dev "$T/hostdev"
		mount -t tmpfs -o mode=755 kd-dev /dev
		for n in null zero full random urandom tty; do
			touch "/dev/$n" && mount --bind "$T/hostdev/$n" "/dev/$n"
		done
		mkdir /dev/pts /dev/shm && mount --rbind "$T/hostdev/pts" /dev/pts && mount -t tmpfs shm /dev/shm
		python3 -c "
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(\"/dev/log\")
f = open(sys.argv[1], \"ab\", 0)
while True:
    f.write(s.recv(65536) + b\"\\n\")
" "$T/syslog.log" &
		for i in $(seq 50); do [ -S /dev/log ] && break; sleep 0.1; done
		if [ "$STANDIN_VSOCK" = 1 ]; then touch /dev/vhost-vsock; fi
		"$@" && rc=0 || rc=$?
		exit $rc' in_ns "$@"
}

# ---- 3. kata-runtime env ----
# kata-runtime env reserves a vsock context id as for a VM: vsock-standin answers that one
# ioctl on the stand-in file (the real device cannot exist here); everything else is real.
STANDIN_VSOCK=1 in_ns "$KD_BUILD/tests/vsock-standin" /opt/kata/bin/kata-runtime --config "$CFG" \
	env --json >"$T/env.json" 2>"$T/env.err" || :
# kata-runtime resolves symlinks: its paths are the installed version's files that the
# configuration's /opt/kata/... paths lead to.
in_ns realpath /opt/kata/bin/qemu-system-x86_64 /opt/kata/libexec/virtiofsd \
	/opt/kata/share/kata-containers/vmlinux.container \
	/opt/kata/share/kata-containers/kata-containers-initrd.img >"$T/real.txt" 2>&1 || :
env_ok() {
	local qemu vfsd kern initrd
	{ read -r qemu; read -r vfsd; read -r kern; read -r initrd; } <"$T/real.txt"
	echo "# resolved: $qemu $vfsd $kern $initrd"
	jq -e --arg cfg "$CFG" --arg qemu "$qemu" --arg vfsd "$vfsd" --arg kern "$kern" \
		--arg initrd "$initrd" '
		.Runtime.Config.Path == $cfg and
		.Runtime.Version.Version.Semver == "4.1.0" and
		(.Hypervisor.Path == $qemu or .Hypervisor.Path == "/opt/kata/bin/qemu-system-x86_64") and
		(.Hypervisor.Version | test("QEMU emulator version")) and
		(.Hypervisor.VirtioFSDaemon == $vfsd or .Hypervisor.VirtioFSDaemon == "/opt/kata/libexec/virtiofsd") and
		.Kernel.Path == $kern and ($kern | test("/vmlinux-6\\.1\\.")) and
		.Initrd.Path == $initrd and ($initrd | test("/kata-containers-initrd-4\\.1\\.0\\.img$")) and
		.Image.Path == "" and .Host.SupportVSocks == true' "$T/env.json" >/dev/null ||
		{ cat "$T/env.err"; jq -c '{Kernel, Initrd, Image, H: .Hypervisor.Path, V: .Hypervisor.VirtioFSDaemon}' "$T/env.json"; return 1; }
}
check "kata-runtime env: every path of the installed configuration, runtime 4.1.0" env_ok
check "kata-runtime env: the stand-in answered only the context-id ioctl" \
	grep -q "vsock-standin: answered [1-9][0-9]* VHOST_VSOCK_SET_GUEST_CID" "$T/env.err"
qv=$(jq -r .Hypervisor.Version "$T/env.json" 2>/dev/null | head -1)
echo "# kata-runtime env: runtime $(jq -r .Runtime.Version.Version.Semver "$T/env.json" 2>/dev/null), hypervisor '$qv'"
check "kata-runtime env: the hypervisor is the pinned QEMU" \
	grep -q "QEMU emulator version $(awk -F'"' '/^  qemu_version:/ {print $2}' "$ROOTDIR/artifacts/versions.yaml")" <<<"$qv"
check "kata-runtime env: every path it reports exists in the installed root" sh -c "
	for p in \$(jq -r '.Hypervisor.Path, .Hypervisor.VirtioFSDaemon, .Kernel.Path, .Initrd.Path' '$T/env.json'); do
		test -e '$R'\$p || { echo missing \$p; exit 1; }
	done"

# ---- 4. containerd reaches our shim ----
C2=$PEERS/containerd2
CTR2=$PEERS/ctr2
if [ -x "$C2" ] && [ -x "$CTR2" ]; then
	# The handler as containerd loaded it from the config we wrote.
	"$C2" --config "$R/etc/containerd/config.toml" config dump >"$T/dump.toml" 2>"$T/dump.err"
	rt_path=$(python3 - "$T/dump.toml" <<-'PY'
	import sys, tomllib
	d = tomllib.load(open(sys.argv[1], "rb"))
	p = d["plugins"]
	rts = (p.get("io.containerd.cri.v1.runtime") or p["io.containerd.grpc.v1.cri"]["containerd"])
	rts = rts.get("containerd", rts)["runtimes"]
	k = rts["kata-qemu"]
	print(k["runtime_path"], k["options"]["ConfigPath"])
	PY
	) || rt_path=""
	check "containerd 2.x loads our kata-qemu handler (runtime_path, ConfigPath)" \
		test "$rt_path" = "/opt/kata/bin/containerd-shim-kata-v2 $CFG"
	mkdir -p "$T/rootfs/bin" "$T/c-root" "$T/c-state"
	cp /bin/busybox "$T/rootfs/bin/sh"
	in_ns bash -c "
		'$C2' --config '$R/etc/containerd/config.toml' --root '$T/c-root' --state '$T/c-state' \
			--address '$T/c.sock' >'$T/containerd.log' 2>&1 &
		for i in \$(seq 100); do [ -S '$T/c.sock' ] && break; sleep 0.1; done
		timeout 120 '$CTR2' --address '$T/c.sock' run --rm \
			--runtime /opt/kata/bin/containerd-shim-kata-v2 --runtime-config-path '$CFG' \
			--rootfs '$T/rootfs' kd-kata-1 /bin/sh -c true" >"$T/ctr.out" 2>&1 && ctr_rc=0 || ctr_rc=$?
	sed 's/^/#   ctr: /' "$T/ctr.out" | head -5
	check "ctr run with our shim fails (no vhost-vsock here)" test "$ctr_rc" -ne 0
	check "... for the host reason only: our shim loaded our configuration up to the vsock check" \
		grep -q "failed to create shim task: $CFG: host system doesn't support vsock: stat /dev/vhost-vsock: no such file or directory" "$T/ctr.out"
	check "... and the shim that said so is ours" grep -q "source=containerd-kata-shim-v2" "$T/syslog.log"
	check "... and nothing failed before it (no missing path, no config error)" \
		sh -c "! grep -Eiq 'no such file.*(qemu|vmlinux|initrd|virtiofsd)|invalid config|failed to load' '$T/ctr.out'"
else
	not_ok "containerd 2.x peer not built ($C2): run scripts/peers/all.sh"
fi

# ---- 5. the guest's agent answers ----
AG=$T/agent
mkdir -p "$AG"
tar -C "$AG" -xf "$OUT/kata-static-kata-agent.tar.zst"
tar -C "$AG" -xf "$OUT/kata-static-vhost-device-vsock.tar.zst"
VSOCKD=$AG/opt/kata/bin/vhost-device-vsock
ACTL=$AG/opt/kata/bin/kata-agent-ctl
"$VSOCKD" --vm "guest-cid=3,socket=$T/vhu.sock,uds-path=$T/vm.vsock" >"$T/vsockd.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do [ -S "$T/vhu.sock" ] && break; sleep 0.1; done
in_ns bash -c "
	exec timeout 300 /opt/kata/bin/qemu-system-x86_64 -L /opt/kata/share/kata-qemu/qemu \
		-accel tcg -machine q35,memory-backend=mem -m 512M \
		-object memory-backend-memfd,id=mem,size=512M,share=on -smp 1 -cpu max \
		-kernel /opt/kata/share/kata-containers/vmlinux.container \
		-initrd /opt/kata/share/kata-containers/kata-containers-initrd.img \
		-append 'console=ttyS0 panic=-1 cgroup_no_v1=all systemd.unified_cgroup_hierarchy=1' \
		-chardev socket,id=vu,path='$T/vhu.sock' -device vhost-user-vsock-pci,chardev=vu \
		-display none -serial 'file:$T/console.log' -monitor none -no-reboot -nodefaults" \
	>"$T/qemu.log" 2>&1 &
pids+=($!)
ask() {
	timeout 20 "$ACTL" connect --server-address "unix://$T/vm.vsock" --hybrid-vsock=true \
		-c Check GetGuestDetails >"$T/actl.out" 2>&1
}
answered=0
for _ in $(seq 60); do
	if ask; then answered=1; break; fi
	sleep 2
done
sed 's/^/#   agent-ctl: /' "$T/actl.out" | tail -8
[ "$answered" = 1 ] || { tail -30 "$T/console.log" | sed 's/^/#   guest: /'; tail -5 "$T/qemu.log" | sed 's/^/#   qemu: /'; }
check "kata-agent-ctl Check: the agent in our guest is SERVING" grep -q "SERVING" "$T/actl.out"
check "kata-agent-ctl GetGuestDetails: agent version 4.1.0, running as init, with seccomp" \
	grep -q 'AgentDetails { version: \\"4.1.0\\", init_daemon: true,.*supports_seccomp: true' "$T/actl.out"

# ---- 6. kata-ctl, the debug tool ----
# kata-deploy installs the payload's kata-ctl component only with debug (upstream's
# DEBUG_TOOL_COMPONENTS). kata-ctl's env, exec, metrics and direct-volume read runtime-rs
# configurations and sandboxes (kata-types' loader refuses the Go runtime's configuration-qemu.toml:
# "unknown field `cdh_api_timeout`"); this payload has only the Go runtime's qemu shim, so what
# runs here is what needs none: its version and the host checks.
RD=$T/root-debug
make_host_root "$RD"
kdi_ctl() {
	"$KD" install --root "$RD" --payload "$P" --shims qemu "$@" \
		>"$T/install-ctl.log" 2>&1 || { tail -5 "$T/install-ctl.log"; return 1; }
}
check "install of the payload with kata-ctl, without --debug" kdi_ctl
check "... kata-ctl is not installed" test ! -e "$RD/opt/kata/bin/kata-ctl"
check "install again with --debug" kdi_ctl --debug
mkdir -p "$T/ctl"
tar -C "$T/ctl" -xf "$OUT/kata-static-kata-ctl.tar.zst"
check "... kata-ctl is installed, the component's bytes" \
	cmp "$T/ctl/opt/kata/bin/kata-ctl" "$RD/opt/kata/bin/kata-ctl"
check "... static: no interpreter, no shared libraries" sh -c \
	"! readelf -lW '$RD/opt/kata/bin/kata-ctl' | grep -q 'program interpreter' &&
	 ! readelf -dW '$RD/opt/kata/bin/kata-ctl' | grep -q NEEDED"
KV=$(awk -F'"' '/^  kata_version:/ {print $2}' "$ROOTDIR/artifacts/versions.yaml")
R=$RD in_ns /opt/kata/bin/kata-ctl --json-logging version >"$T/ctl-version.json" 2>&1 || :
sed 's/^/#   kata-ctl version: /' "$T/ctl-version.json" | head -3
check "installed kata-ctl version: upstream's $KV (KATA_CTL_VERSION-crate version)" sh -c \
	"jq -r .msg '$T/ctl-version.json' | grep -qxF 'kata-ctl version \"$KV-0.0.1\" (type: rust)'"
R=$RD in_ns /opt/kata/bin/kata-ctl --json-logging check list >"$T/ctl-list.json" 2>&1 || :
check "installed kata-ctl check list: upstream's three host checks" sh -c \
	"jq -r .msg '$T/ctl-list.json' | grep -Ec '^ - (Cpu|KernelModules|KvmIsUsable) ' | grep -qx 3"
# upstream's no-network-checks is the CPU check (vendor, flags): warnings, not errors, on a
# host without VMX/SVM.
R=$RD in_ns /opt/kata/bin/kata-ctl --json-logging check no-network-checks \
	>"$T/ctl-check.json" 2>&1 && ctl_rc=0 || ctl_rc=$?
jq -r '"#   kata-ctl check: \(.level) \(.msg)"' "$T/ctl-check.json" 2>/dev/null | head -6
check "installed kata-ctl check no-network-checks: the CPU check ran" sh -c \
	"[ $ctl_rc -eq 0 ] && jq -r .msg '$T/ctl-check.json' | grep -qxF 'check CPU: x86_64'"
check "install again without --debug" kdi_ctl
check "... kata-ctl removed" test ! -e "$RD/opt/kata/bin/kata-ctl"
finish
