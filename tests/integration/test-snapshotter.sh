#!/usr/bin/env bash
# Snapshotter setup (upstream's EXPERIMENTAL_SETUP_SNAPSHOTTER / snapshotter.setup) with real
# peers: containerd 2.2 and 2.4 (scripts/peers/containerd2.sh, containerd24.sh), nydus-snapshotter v0.15.15, the version
# upstream Kata 4.1.0 pins (scripts/peers/nydus-snapshotter.sh), Debian's containerd 1.6.
#   erofs: containerd's `config dump` of what we wrote has the erofs snapshotter, differ,
#     diff-service and images settings of upstream's merge / snapshotter / dm-verity modes and
#     every original setting; the 2.2 daemon started with it lists the erofs snapshotter
#     plugin; merged erofs is refused for Go shims; the host checks (containerd >= 2.2, kernel,
#     mkfs.erofs options, dm-verity) on test roots; uninstall restores every byte.
#   nydus: the payload's nydus-snapshotter component (the peer's binaries), the unit, config and
#     runtime drop-in, proxy_plugins and the mapping rewritten to nydus-for-kata-tee; the real
#     containerd-nydus-grpc runs the unit's ExecStart with our config (sockets moved into the
#     test dir) and the 2.2 daemon lists it as its proxy snapshotter, and prepares a snapshot
#     through it; an admin's table is left alone (refused, naming what to set) on an in-place
#     1.x edit; uninstall restores every byte.
# systemd itself is not run here: `systemd-analyze verify` checks the unit file; the Reload /
# restart / stop of the service through a real systemd is test-systemd-nydus.sh's.
source "$(dirname "$0")/../lib.sh"
cd "$ROOTDIR"

scripts/peers/containerd2.sh >&2
source tests/peers/nydus-payload.sh
PEERS=${KD_PEERS_DIR:-$HOME/.cache/kata-deploy-peers}
CTD2=$PEERS/bin/containerd2 CTR2=$PEERS/bin/ctr2 CTD1=/usr/bin/containerd

P=$T/p.tar.zst P0=$T/p0.tar.zst
nydus_payload "$P"
"$KD" payload pack artifacts/demo/tree --spec artifacts/demo/payload.yaml -o "$P0" >/dev/null

dump() { # dump BIN ROOT CONFIG(relative) > out
	unshare -m bash -c "mount --bind '$2/etc' /etc && { [ ! -d '$2/var' ] || mount --bind '$2/var' /var; } && exec '$1' --config '/$3' config dump"
}
# The block of a [table] in a dump: from its header to the next header.
block() { awk -v h="$2" 'index($0, h) && /^ *\[/ {on=1; print; next} on && /^ *\[/ {exit} on {print}' "$1"; }
# Lines of the original dump missing from the new one, but for the keys the setup sets.
lost_settings() { # lost_settings DUMP0 DUMP1 KEY-REGEX
	awk 'NR == FNR { have[$0] = 1; next } ($0 in have) || /^imports = / { next } { print }' "$2" "$1" |
		grep -Ev "^ *($3) = " || true
}
has() { # has DUMP TABLE LINE...: every line in the table's block (indentation aside)
	local d=$1 t=$2 l; shift 2
	for l in "$@"; do
		block "$d" "$t" | sed 's/^[[:space:]]*//' | grep -qxF -- "${l#"${l%%[! ]*}"}" ||
			{ echo "[$t] lacks '$l'"; return 1; }
	done
}

CUSTOM_V3='version = 3
[plugins."io.containerd.cri.v1.images".pinned_images]
  sandbox = "registry.example/pause:3.10-custom"
[plugins."io.containerd.cri.v1.runtime".containerd]
  default_runtime_name = "runc"
[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
  SystemdCgroup = true
'
new_root() { R=$T/$1; rm -rf "$R"; mkdir -p "$R/etc/containerd"; printf '%s' "$CUSTOM_V3" >"$R/etc/containerd/config.toml"; }

# A 2.x daemon on the root's config (imports and the proxy socket moved into the test dir) in a
# mount namespace with a tmpfs on /run; its socket is $D/c.sock. start_daemon DIR ROOT [SED]
start_daemon() {
	D=$1
	mkdir -p "$D/conf.d"
	# The imported drop-ins too, with the same substitutions.
	for f in "$2"/etc/containerd/conf.d/*.toml; do
		[ -f "$f" ] && sed "${3:-s/^//}" "$f" >"$D/conf.d/${f##*/}"
	done
	{ echo "root = \"$D/root\""; echo "state = \"$D/state\""; cat "$2/etc/containerd/config.toml"
	  printf '[grpc]\n  address = "%s/c.sock"\n[ttrpc]\n  address = "%s/c.sock.ttrpc"\n' "$D" "$D"
	  printf '[plugins."io.containerd.nri.v1.nri"]\n  socket_path = "%s/nri.sock"\n' "$D"
	  printf '[plugins."io.containerd.internal.v1.opt"]\n  path = "%s/opt"\n' "$D"
	  printf '[plugins."io.containerd.cri.v1.runtime".cni]\n  conf_dir = "%s/cni"\n' "$D"; } |
		sed "s#\"/etc/containerd/conf.d/#\"$D/conf.d/#${3:+;$3}" >"$D/config.toml"
	unshare -m --propagation private sh -c 'mount -t tmpfs -o mode=0755 kd-test-run /run && exec "$0" "$@"' \
		"$CTD2" --config "$D/config.toml" >"$D/log" 2>&1 </dev/null &
	DPID=$!
	for _ in $(seq 1 100); do [ -S "$D/c.sock" ] && break; sleep 0.1; done
}
stop_pid() { kill -TERM "$1" 2>/dev/null; wait "$1" 2>/dev/null || true; }

# ---- erofs ----------------------------------------------------------------------------------
new_root erofs
snapshot "$R" >"$T/erofs.before"
dump "$CTD2" "$R" etc/containerd/config.toml >"$T/erofs.dump0"
KDE=("$KD" install --root "$R" --payload "$P0" --runtime-version 2.2 --runtime-binary "$CTD2")
expect_fail "erofs: merged erofs refused for a Go shim" \
	"shim 'qemu': the Go runtime does not support merged erofs (fsmeta.erofs)" \
	"${KDE[@]}" --setup-snapshotter erofs --snapshotter-handler-mapping qemu:erofs
expect_fail "erofs: refused with containerd 2.1" "the erofs snapshotter needs containerd 2.2 or newer (this is 2.1)" \
	"$KD" install --root "$R" --payload "$P0" --runtime-version 2.1 --setup-snapshotter erofs
expect_fail "erofs: an unknown snapshotter is refused" "'overlay' is not a snapshotter kata-deploy sets up (nydus, erofs)" \
	"${KDE[@]}" --setup-snapshotter overlay
check "erofs: nothing written by the refused installs" diff -q "$T/erofs.before" <(snapshot "$R")
if "${KDE[@]}" --setup-snapshotter erofs --snapshotter-handler-mapping qemu:erofs --erofs-merge-mode unmerged \
	>"$T/erofs.out" 2>&1 && dump "$CTD2" "$R" etc/containerd/config.toml >"$T/erofs.dump1" 2>"$T/erofs.err1"; then
	bad=0
	# containerd 2.2.9 knows these keys of upstream's; dmverity_mode and enable_dmverity are 2.4's
	# (checked below), max_unmerged_layers is known to neither (upstream writes it for a later
	# containerd): those are checked in our drop-in, and 2.2 loads the file with them.
	E="plugins.'io.containerd.snapshotter.v1.erofs']"
	has "$T/erofs.dump1" "$E" "  enable_fsverity = true" "  set_immutable = true" "  default_size = '10G'" || bad=1
	has "$T/erofs.dump1" "plugins.'io.containerd.differ.v1.erofs']" \
		"  mkfs_options = ['-T0', '--mkfs-time', '--sort=none']" "  enable_tar_index = false" || bad=1
	DI=$R/etc/containerd/conf.d/kata-deploy.toml
	grep -qx 'dmverity_mode = "off"' "$DI" && grep -qx 'enable_dmverity = false' "$DI" ||
		{ echo "drop-in lacks dmverity_mode / enable_dmverity"; bad=1; }
	! grep -q 'max_unmerged_layers' "$DI" || { echo "unmerged: max_unmerged_layers written"; bad=1; }
	has "$T/erofs.dump1" "plugins.'io.containerd.service.v1.diff-service']" "  default = ['erofs', 'walking']" || bad=1
	has "$T/erofs.dump1" "plugins.'io.containerd.cri.v1.images']" "  discard_unpacked_layers = false" || bad=1
	has "$T/erofs.dump1" "runtime_platforms.kata-qemu]" "    snapshotter = 'erofs'" || bad=1
	has "$T/erofs.dump1" "runtimes.kata-qemu]" "      snapshotter = 'erofs'" || bad=1
	lost_settings "$T/erofs.dump0" "$T/erofs.dump1" \
		'default|discard_unpacked_layers|enable_fsverity|set_immutable|dmverity_mode|default_size|mkfs_options|enable_tar_index|enable_dmverity' \
		>"$T/erofs.lost"
	[ ! -s "$T/erofs.lost" ] || { echo "settings lost: $(head -5 "$T/erofs.lost")"; bad=1; }
	[ $bad = 0 ] && ok "erofs: containerd 2.2's dump has the erofs snapshotter, differ, diff-service and images settings (unmerged, disk, no dm-verity) and kata-qemu on erofs; no original setting lost" ||
		not_ok "erofs: dump of the installed config"
else
	not_ok "erofs: install or dump failed: $(tail -3 "$T/erofs.out") $(head -3 "$T/erofs.err1" 2>/dev/null)"
fi
# The other modes: merged (max_unmerged_layers = 0, runtime-rs only: no Go shim on erofs), memory, dm-verity.
"${KDE[@]}" --setup-snapshotter erofs --erofs-snapshotter-mode memory --erofs-dmverity >"$T/erofs.out2" 2>&1 &&
	dump "$CTD2" "$R" etc/containerd/config.toml >"$T/erofs.dump2" 2>/dev/null
if has "$T/erofs.dump2" "$E" "  default_size = '0'" && grep -qx 'max_unmerged_layers = 0' "$DI" &&
	grep -qx 'dmverity_mode = "on"' "$DI" && grep -qx 'enable_dmverity = true' "$DI" &&
	! grep -q "snapshotter = 'erofs'" "$T/erofs.dump2"; then
	ok "erofs: reinstall in merged / memory / dm-verity mode: default_size '0' in 2.2's dump; max_unmerged_layers = 0, dmverity_mode \"on\", enable_dmverity = true written; the unmapped shims keep containerd's snapshotter"
else
	not_ok "erofs: merged / memory / dm-verity: $(tail -2 "$T/erofs.out2")"
fi
"${KDE[@]}" --setup-snapshotter erofs --erofs-snapshotter-mode memory --erofs-dmverity >"$T/erofs.out3" 2>&1 || true
check "erofs: the same install again changes nothing" grep -q 'nothing to do' "$T/erofs.out3"

# The 2.2 daemon loads it and lists the erofs snapshotter and differ as configured.
start_daemon "$T/d-erofs" "$R"
"$CTR2" --address "$D/c.sock" plugins ls >"$D/plugins" 2>&1 || true
"$CTR2" --address "$D/c.sock" plugins ls -d id==erofs >"$D/plugins-erofs" 2>&1 || true
stop_pid "$DPID"
awk '/^Type:/ {t = $2} t == "io.containerd.snapshotter.v1" && /Message:/ {sub(/^[[:space:]]*Message:[[:space:]]*/, ""); print}' \
	"$D/plugins-erofs" >"$D/erofs-errors"
if grep -Eq '^io\.containerd\.snapshotter\.v1 +erofs ' "$D/plugins" &&
	grep -Eq '^io\.containerd\.differ\.v1 +erofs ' "$D/plugins" &&
	grep -Eq 'io\.containerd\.cri\.v1 +runtime .* ok' "$D/plugins"; then
	ok "erofs: containerd 2.2 started with our config lists $(grep -E '^io\.containerd\.(snapshotter|differ)\.v1 +erofs ' "$D/plugins" | awk '{print $1 " " $2 " (" $NF ")"}' | paste -sd, -)$([ -s "$D/erofs-errors" ] && echo "; the snapshotter's error on this machine: $(head -c 200 "$D/erofs-errors")")"
else
	not_ok "erofs: the 2.2 daemon's plugins: $(grep -E 'erofs|cri' "$D/plugins" | head -5) $(tail -3 "$D/log")"
fi
"$KD" uninstall --root "$R" >"$T/erofs.un" 2>&1 || not_ok "erofs: uninstall failed: $(tail -2 "$T/erofs.un")"
if diff "$T/erofs.before" <(snapshot "$R") >"$T/erofs.diff" &&
	cmp -s <(dump "$CTD2" "$R" etc/containerd/config.toml 2>/dev/null) "$T/erofs.dump0"; then
	ok "erofs: uninstall restores every byte ($(grep -c '' "$T/erofs.before") entries) and the same dump"
else
	not_ok "erofs: uninstall left: $(head -5 "$T/erofs.diff")"
fi

# containerd 2.4 (config version 4, its own default config, which imports conf.d) knows the
# dm-verity keys: they are in its dump.
scripts/peers/containerd24.sh >&2
CTD24=$PEERS/bin/containerd24
R=$T/erofs24; rm -rf "$R"; mkdir -p "$R/etc/containerd"
"$CTD24" config default >"$R/etc/containerd/config.toml"
snapshot "$R" >"$T/erofs24.before"
dump "$CTD24" "$R" etc/containerd/config.toml >"$T/erofs24.dump0"
if "$KD" install --root "$R" --payload "$P0" --runtime-version 2.4 --runtime-binary "$CTD24" \
	--setup-snapshotter erofs --erofs-dmverity >"$T/erofs24.out" 2>&1 &&
	dump "$CTD24" "$R" etc/containerd/config.toml >"$T/erofs24.dump1" 2>&1 &&
	has "$T/erofs24.dump1" "$E" "  enable_fsverity = true" "  set_immutable = true" "  default_size = '10G'" "  dmverity_mode = 'on'" &&
	has "$T/erofs24.dump1" "plugins.'io.containerd.differ.v1.erofs']" "  enable_dmverity = true" \
		"  mkfs_options = ['-T0', '--mkfs-time', '--sort=none']" "  enable_tar_index = false" &&
	has "$T/erofs24.dump1" "plugins.'io.containerd.service.v1.diff-service']" "  default = ['erofs', 'walking']" &&
	has "$T/erofs24.dump1" "plugins.'io.containerd.cri.v1.images']" "  discard_unpacked_layers = false"; then
	lost_settings "$T/erofs24.dump0" "$T/erofs24.dump1" \
		'default|discard_unpacked_layers|enable_fsverity|set_immutable|dmverity_mode|default_size|mkfs_options|enable_tar_index|enable_dmverity' \
		>"$T/erofs24.lost"
	if [ -s "$T/erofs24.lost" ]; then not_ok "erofs 2.4: settings lost: $(head -5 "$T/erofs24.lost")"
	else ok "erofs: containerd 2.4's dump (v4 default config) has dmverity_mode 'on', enable_dmverity = true and the rest; no original setting lost"; fi
else
	not_ok "erofs 2.4: $(tail -3 "$T/erofs24.out") $(block "$T/erofs24.dump1" "$E" 2>/dev/null | head -8)"
fi
"$KD" uninstall --root "$R" >/dev/null 2>&1 || not_ok "erofs 2.4: uninstall failed"
check "erofs 2.4: uninstall restores every byte" diff -q "$T/erofs24.before" <(snapshot "$R")
R=$T/erofs

# Host checks (kata-deploy check --setup-snapshotter erofs) on test roots: /proc, /sys, /boot
# and mkfs.erofs are files of the root. mkfs.erofs here is a file holding the option names the
# way getopt_long keeps them (NUL-terminated strings); the check reads it, never runs it.
hc_root() { # hc_root DIR: no erofs, no mkfs.erofs, kernel 6.1.0-test
	rm -rf "$1"; mkdir -p "$1/proc/sys/kernel" "$1/sys/module" "$1/usr/sbin" "$1/boot"
	echo 6.1.0-test >"$1/proc/sys/kernel/osrelease"
	printf 'nodev\tsysfs\nnodev\tproc\n\text4\n' >"$1/proc/filesystems"
	: >"$1/proc/modules"
}
HC=("$KD" check --no-payload --shims qemu --output json --setup-snapshotter erofs)
hc() { "${HC[@]}" --root "$1" "${@:2}" >"$T/hc.json" 2>/dev/null || true; }
status() { jq -r --arg id "$1" '.checks[] | select(.id == $id) | .status' "$T/hc.json"; }
H=$T/hc
hc_root "$H"
hc "$H" --runtime-version containerd://2.1.3
if [ "$(status snapshotter.erofs.containerd)" = fail ] && [ "$(status snapshotter.erofs.kernel)" = fail ] &&
	[ "$(status snapshotter.erofs.mkfs)" = fail ] && [ "$(status snapshotter.erofs.fs-verity)" = warn ]; then
	ok "host check: containerd 2.1, no erofs, no mkfs.erofs: snapshotter.erofs.{containerd,kernel,mkfs} FAIL, fs-verity warn"
else
	not_ok "host check (nothing there): $(jq -c '[.checks[] | select(.id | startswith("snapshotter")) | [.id, .status]]' "$T/hc.json")"
fi
printf 'nodev\tsysfs\n\terofs\n' >"$H/proc/filesystems"
printf 'x\0--sort=none\0sort\0' >"$H/usr/sbin/mkfs.erofs"; chmod 755 "$H/usr/sbin/mkfs.erofs"
hc "$H" --runtime-version containerd://2.2.1
if [ "$(status snapshotter.erofs.containerd)" = pass ] && [ "$(status snapshotter.erofs.kernel)" = pass ] &&
	[ "$(status snapshotter.erofs.mkfs)" = fail ] &&
	jq -r '.checks[] | select(.id == "snapshotter.erofs.mkfs") | .detail' "$T/hc.json" | grep -q 'does not accept --mkfs-time'; then
	ok "host check: erofs in /proc/filesystems, containerd 2.2 pass; a mkfs.erofs without --mkfs-time FAIL (erofs-utils < 1.8.2)"
else
	not_ok "host check (old mkfs.erofs): $(jq -c '[.checks[] | select(.id | startswith("snapshotter")) | [.id, .status, .detail]]' "$T/hc.json")"
fi
printf 'x\0mkfs-time\0sort\0' >"$H/usr/sbin/mkfs.erofs"
printf 'CONFIG_BLK_DEV_DM=y\nCONFIG_FS_VERITY=y\n' >"$H/boot/config-6.1.0-test"
hc "$H" --runtime-version containerd://2.2.1 --erofs-dmverity
if [ "$(status snapshotter.erofs.mkfs)" = pass ] && [ "$(status snapshotter.erofs.dm-verity)" = fail ] &&
	[ "$(status snapshotter.erofs.fs-verity)" = pass ]; then
	ok "host check: mkfs.erofs with --mkfs-time and --sort pass; dm-verity FAIL without dm_verity, fs-verity from /boot/config"
else
	not_ok "host check (dm-verity): $(jq -c '[.checks[] | select(.id | startswith("snapshotter")) | [.id, .status]]' "$T/hc.json")"
fi
mkdir -p "$H/sys/module/dm_verity"
hc "$H" --runtime-version containerd://2.2.1 --erofs-dmverity
check "host check: every erofs prerequisite there: exit 0 would follow from the snapshotter checks (all pass)" \
	test "$(jq -r '[.checks[] | select(.id | startswith("snapshotter")) | .status] | unique | join(",")' "$T/hc.json")" = pass

# ---- nydus ----------------------------------------------------------------------------------
new_root nydus
snapshot "$R" >"$T/nydus.before"
dump "$CTD2" "$R" etc/containerd/config.toml >"$T/nydus.dump0"
expect_fail "nydus: a payload without the nydus-snapshotter component is refused" \
	"the payload has no nydus-snapshotter component" \
	"$KD" install --root "$R" --payload "$P0" --runtime-version 2.2 --setup-snapshotter nydus
check "nydus: nothing written by the refused install" diff -q "$T/nydus.before" <(snapshot "$R")
KDN=("$KD" install --root "$R" --payload "$P" --runtime-version 2.2 --runtime-binary "$CTD2"
	--setup-snapshotter nydus --snapshotter-handler-mapping qemu:nydus)
if "${KDN[@]}" >"$T/nydus.out" 2>&1 && dump "$CTD2" "$R" etc/containerd/config.toml >"$T/nydus.dump1" 2>"$T/nydus.err1"; then
	bad=0
	has "$T/nydus.dump1" "proxy_plugins.nydus-for-kata-tee]" "  type = 'snapshot'" \
		"  address = '/run/nydus-for-kata-tee/containerd-nydus-grpc.sock'" || bad=1
	has "$T/nydus.dump1" "proxy_plugins.nydus-for-kata-tee.exports]" "    root = '/var/lib/nydus-for-kata-tee'" || bad=1
	has "$T/nydus.dump1" "plugins.'io.containerd.cri.v1.images']" "  disable_snapshot_annotations = false" || bad=1
	has "$T/nydus.dump1" "runtime_platforms.kata-qemu]" "    snapshotter = 'nydus-for-kata-tee'" || bad=1
	has "$T/nydus.dump1" "runtimes.kata-qemu]" "      snapshotter = 'nydus-for-kata-tee'" || bad=1
	lost_settings "$T/nydus.dump0" "$T/nydus.dump1" 'disable_snapshot_annotations' >"$T/nydus.lost"
	[ ! -s "$T/nydus.lost" ] || { echo "settings lost: $(head -5 "$T/nydus.lost")"; bad=1; }
	[ $bad = 0 ] && ok "nydus: containerd 2.2's dump has proxy_plugins.nydus-for-kata-tee (snapshot, its socket, exports.root), disable_snapshot_annotations = false, kata-qemu mapped to nydus-for-kata-tee; no original setting lost" ||
		not_ok "nydus: dump of the installed config"
else
	not_ok "nydus: install or dump failed: $(tail -3 "$T/nydus.out") $(head -3 "$T/nydus.err1" 2>/dev/null)"
fi
U=$R/etc/systemd/system/nydus-for-kata-tee.service
check "nydus: unit, config and containerd.service drop-in written" test -f "$U" -a \
	-f "$R/opt/kata/snapshotter/nydus-for-kata-tee.toml" -a \
	-f "$R/etc/systemd/system/containerd.service.d/kata-deploy-nydus-for-kata-tee.conf"
check "nydus: the binaries come from the payload's version tree" \
	cmp -s "$R/opt/kata/libexec/nydus-snapshotter/containerd-nydus-grpc" "$NGRPC"
# (in a mount namespace with a tmpfs on /run: its test manager touches the machine's
# /run/systemd/systemd-units-load, which test-systemd-*'s machine fingerprint compares)
if unshare -m --propagation private sh -c 'mount -t tmpfs -o mode=0755 kd-test-run /run && exec "$@"' \
	sh systemd-analyze verify --man=no "$U" >"$T/verify" 2>&1 ||
	! grep -v -e 'is not executable' -e 'No such file' -e 'Failed to prepare filename' -e 'Command .* is not executable' "$T/verify" | grep -q .; then
	ok "nydus: systemd-analyze verify finds nothing wrong in the unit (but the ExecStart path, which is the host's)"
else
	not_ok "nydus: systemd-analyze verify: $(head -3 "$T/verify")"
fi
"${KDN[@]}" >"$T/nydus.out2" 2>&1 || true
check "nydus: the same install again changes nothing" grep -q 'nothing to do' "$T/nydus.out2"

# The real snapshotter runs the unit's ExecStart (paths inside the root, its sockets and root dir
# moved into the test dir), and containerd 2.2 uses it as its proxy snapshotter.
N=$T/nydus-run
mkdir -p "$N"
sed -e "s#\"/var/lib/nydus-for-kata-tee\"#\"$N/lib\"#" -e "s#\"/run/nydus-for-kata-tee/#\"$N/run/#" \
	-e "s#\"/opt/kata/#\"$R/opt/kata/#" "$R/opt/kata/snapshotter/nydus-for-kata-tee.toml" >"$N/config.toml"
exec_start=$(sed -n 's/^ExecStart=//p' "$U" | sed -e "s#^/opt/kata/#$R/opt/kata/#" -e "s#--config /opt/kata/snapshotter/nydus-for-kata-tee.toml#--config $N/config.toml#")
# shellcheck disable=SC2086 # the unit's command line, split as systemd does (no quotes in it)
unshare -m --propagation private sh -c 'mount -t tmpfs -o mode=0755 kd-test-run /run && exec "$@"' sh $exec_start >"$N/log" 2>&1 </dev/null &
NPID=$!
for _ in $(seq 1 100); do [ -S "$N/run/containerd-nydus-grpc.sock" ] && break; sleep 0.1; done
start_daemon "$T/d-nydus" "$R" "s#\"/run/nydus-for-kata-tee/containerd-nydus-grpc.sock\"#\"$N/run/containerd-nydus-grpc.sock\"#;s#\"/var/lib/nydus-for-kata-tee\"#\"$N/lib\"#"
"$CTR2" --address "$D/c.sock" plugins ls >"$D/plugins" 2>&1 || true
"$CTR2" --address "$D/c.sock" snapshots --snapshotter nydus-for-kata-tee prepare kd-test-active "" >"$D/prepare" 2>&1 && prep=0 || prep=$?
"$CTR2" --address "$D/c.sock" snapshots --snapshotter nydus-for-kata-tee ls >"$D/snaps" 2>&1 || true
stop_pid "$DPID"
stop_pid "$NPID"
if grep -Eq '^io\.containerd\.snapshotter\.v1 +nydus-for-kata-tee .* ok' "$D/plugins"; then
	ok "nydus: containerd-nydus-grpc $("$NGRPC" --version 2>&1 | grep -o 'v[0-9.]*' | head -1) runs the unit's ExecStart with our config; containerd 2.2 lists io.containerd.snapshotter.v1 nydus-for-kata-tee ok"
else
	not_ok "nydus: proxy snapshotter not listed: $(grep -E 'snapshotter' "$D/plugins" | head -5) $(tail -3 "$N/log") $(tail -3 "$D/log")"
fi
if [ "$prep" = 0 ] && grep -q 'kd-test-active' "$D/snaps" && [ -d "$N/lib/snapshots" ]; then
	ok "nydus: a snapshot prepared through containerd lives in the snapshotter's root ($(ls "$N/lib/snapshots" | wc -l) snapshot dir)"
else
	not_ok "nydus: prepare through the proxy: $(head -3 "$D/prepare") $(tail -3 "$N/log")"
fi

"$KD" uninstall --root "$R" >"$T/nydus.un" 2>&1 || not_ok "nydus: uninstall failed: $(tail -2 "$T/nydus.un")"
if diff "$T/nydus.before" <(snapshot "$R") >"$T/nydus.diff"; then
	ok "nydus: uninstall restores every byte ($(grep -c '' "$T/nydus.before") entries)"
else
	not_ok "nydus: uninstall left: $(head -5 "$T/nydus.diff")"
fi

# An in-place edit (containerd 1.x): our proxy table is added, an admin's CRI table is not edited.
R=$T/inplace
rm -rf "$R"; mkdir -p "$R/etc/containerd"
printf 'version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd]\n  disable_snapshot_annotations = true\n' >"$R/etc/containerd/config.toml"
snapshot "$R" >"$T/inplace.before"
expect_fail "nydus in place: an admin's table that needs a change is refused, naming it" \
	'[plugins."io.containerd.grpc.v1.cri".containerd] is already there and not kata-deploy'"'"'s (kata-deploy adds tables of its own and edits no other): the snapshotter setup needs disable_snapshot_annotations = false in it' \
	"$KD" install --root "$R" --payload "$P" --runtime-version 1.6 --runtime-binary "$CTD1" --setup-snapshotter nydus
check "nydus in place: nothing written by the refused install" diff -q "$T/inplace.before" <(snapshot "$R")
sed -i 's/= true/= false/' "$R/etc/containerd/config.toml"
snapshot "$R" >"$T/inplace.before"
if "$KD" install --root "$R" --payload "$P" --runtime-version 1.6 --runtime-binary "$CTD1" --setup-snapshotter nydus >"$T/inplace.out" 2>&1 &&
	dump "$CTD1" "$R" etc/containerd/config.toml >"$T/inplace.dump" 2>&1 &&
	grep -q '\[proxy_plugins.nydus-for-kata-tee\]' "$T/inplace.dump" &&
	grep -q 'disable_snapshot_annotations = false' "$T/inplace.dump"; then
	ok "nydus in place: the admin's table already says disable_snapshot_annotations = false: kept as it is, [proxy_plugins.nydus-for-kata-tee] added; containerd 1.6 loads it"
else
	not_ok "nydus in place: $(tail -2 "$T/inplace.out") $(head -3 "$T/inplace.dump" 2>/dev/null)"
fi
"$KD" uninstall --root "$R" >/dev/null 2>&1 || not_ok "nydus in place: uninstall failed"
check "nydus in place: uninstall restores every byte" diff -q "$T/inplace.before" <(snapshot "$R")

# Debian 12's containerd.io config (no CRI containerd table): ours is added, with the built-in
# runc and the handlers under it; an admin's edit elsewhere survives uninstall (three-way), which
# removes our tables, the parent and its sub-tables.
printf 'version = 2\n\n[plugins]\n  [plugins."io.containerd.grpc.v1.cri"]\n    [plugins."io.containerd.grpc.v1.cri".cni]\n      bin_dir = "/usr/lib/cni"\n      conf_dir = "/etc/cni/net.d"\n  [plugins."io.containerd.internal.v1.opt"]\n    path = "/var/lib/containerd/opt"\n' \
	>"$R/etc/containerd/config.toml"
snapshot "$R" >"$T/deb.before"
cp "$R/etc/containerd/config.toml" "$T/deb.orig"
if "$KD" install --root "$R" --payload "$P" --runtime-version 1.6 --runtime-binary "$CTD1" --setup-snapshotter nydus >"$T/deb.out" 2>&1 &&
	dump "$CTD1" "$R" etc/containerd/config.toml >"$T/deb.dump" 2>&1 &&
	grep -q 'disable_snapshot_annotations = false' "$T/deb.dump" && grep -q '\[proxy_plugins.nydus-for-kata-tee\]' "$T/deb.dump" &&
	grep -q 'runtimes.runc\]' "$T/deb.dump"; then
	ok "nydus in place on Debian's config: [plugins.\"io.containerd.grpc.v1.cri\".containerd] added with disable_snapshot_annotations = false, runc kept; containerd 1.6 loads it"
else
	not_ok "nydus in place on Debian's config: $(tail -2 "$T/deb.out")"
fi
"$KD" uninstall --root "$R" >/dev/null 2>&1
check "nydus in place on Debian's config: uninstall restores every byte" diff -q "$T/deb.before" <(snapshot "$R")
"$KD" install --root "$R" --payload "$P" --runtime-version 1.6 --runtime-binary "$CTD1" --setup-snapshotter nydus >/dev/null 2>&1
sed -i 's#path = "/var/lib/containerd/opt"#path = "/var/lib/containerd/opt2"#' "$R/etc/containerd/config.toml"
"$KD" uninstall --root "$R" >"$T/deb.un" 2>&1 || true
if sed 's#/var/lib/containerd/opt"#/var/lib/containerd/opt2"#' "$T/deb.orig" | cmp -s - "$R/etc/containerd/config.toml"; then
	ok "nydus in place: an admin's edit of another table survives uninstall; our tables (the CRI containerd table and its sub-tables, the proxy plugin) are gone"
else
	not_ok "nydus in place three-way: $(diff "$T/deb.orig" "$R/etc/containerd/config.toml" | head -5)"
fi

finish
