#!/usr/bin/env bash
# Snapshotter setup (upstream's EXPERIMENTAL_SETUP_SNAPSHOTTER / snapshotter.setup) with real
# peers: containerd 2.2 (scripts/peers/containerd2.sh).
#   erofs: containerd's `config dump` of what we wrote has the erofs snapshotter, differ,
#     diff-service and images settings of upstream's merge / snapshotter / dm-verity modes and
#     every original setting; the 2.2 daemon started with it lists the erofs snapshotter
#     plugin; merged erofs is refused for Go shims; the host checks (containerd >= 2.2, kernel,
#     mkfs.erofs options, dm-verity) on test roots; uninstall restores every byte.
source "$(dirname "$0")/../lib.sh"
cd "$ROOTDIR"

scripts/peers/containerd2.sh >&2
PEERS=${KD_PEERS_DIR:-$HOME/.cache/kata-deploy-peers}
CTD2=$PEERS/bin/containerd2 CTR2=$PEERS/bin/ctr2

P0=$T/p0.tar.zst
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
	mkdir -p "$D"
	{ echo "root = \"$D/root\""; echo "state = \"$D/state\""; cat "$2/etc/containerd/config.toml"
	  printf '[grpc]\n  address = "%s/c.sock"\n[ttrpc]\n  address = "%s/c.sock.ttrpc"\n' "$D" "$D"
	  printf '[plugins."io.containerd.nri.v1.nri"]\n  socket_path = "%s/nri.sock"\n' "$D"
	  printf '[plugins."io.containerd.internal.v1.opt"]\n  path = "%s/opt"\n' "$D"
	  printf '[plugins."io.containerd.cri.v1.runtime".cni]\n  conf_dir = "%s/cni"\n' "$D"; } |
		sed "s#\"/etc/containerd/conf.d/#\"$2/etc/containerd/conf.d/#${3:+;$3}" >"$D/config.toml"
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

finish
