#!/usr/bin/env bash
# Runtime config with the real containerd loaders: Debian's containerd 1.6, containerd 2.2 and
# 2.4 (config version 4; built by scripts/peers/containerd2.sh / containerd24.sh, cached).
# For each starting point: install, then
# `containerd config dump` (imports resolved inside the root: a private mount namespace binds
# the root's /etc and /var over the host's) lists every handler with its options and still has
# every original setting; uninstall gives back the files byte for byte and the same dump.
# Also: bad inputs are refused with file:line and nothing written; an admin's edit survives
# uninstall (three-way revert); the 2.x daemon starts with our config.
source "$(dirname "$0")/../lib.sh"
cd "$ROOTDIR"

CTD1=/usr/bin/containerd
scripts/peers/containerd2.sh >&2
PEERS=${KD_PEERS_DIR:-$HOME/.cache/kata-deploy-peers}
CTD2=$PEERS/bin/containerd2 CTR2=$PEERS/bin/ctr2
P=$T/p.tar.zst
"$KD" payload pack artifacts/demo/tree --spec artifacts/demo/payload.yaml -o "$P" >/dev/null

dump() { # dump BIN ROOT CONFIG(relative) > out
	unshare -m bash -c "mount --bind '$2/etc' /etc && { [ ! -d '$2/var' ] || mount --bind '$2/var' /var; } && exec '$1' --config '/$3' config dump"
}

# Two dumps are the same config if they are equal but for the order of the files in `imports`,
# which containerd 1.6 prints in Go map order (it differs from run to run).
imports_of() { sed -n 's/^imports = \[\(.*\)\]$/\1/p' "$1" | tr ',' '\n' | tr -d ' ' | LC_ALL=C sort; }
same_dump() { cmp -s <(grep -v '^imports = ' "$1") <(grep -v '^imports = ' "$2") && cmp -s <(imports_of "$1") <(imports_of "$2"); }

# Lines of the original dump missing from the new one (imports lists the files loaded). A zero
# value (Go decodes an absent key as its zero value) missing from the new dump is the same setting
# only when its table is still there.
lost_settings() {
	awk 'NR == FNR { have[$0] = 1; next }
	     /^ *\[/ { tbl = $0 }
	     ($0 in have) || /^imports = / { next }
	     / = (""|\047\047|0|false|\[\])$/ && (tbl in have) { next }
	     { print }' "$2" "$1"
}
# Every runtime the original dump had is still a runtime; default_runtime_name names one.
lost_runtimes() { # lost_runtimes DUMP0 DUMP1
	local h d
	for h in $(grep -o 'containerd\.runtimes\.[A-Za-z0-9_-]*\]' "$1" | sort -u); do
		grep -q "containerd\.${h#containerd.}" "$2" || echo "runtime ${h%]} lost"
	done
	for d in $(sed -n "s/^ *default_runtime_name = [\"']\(.*\)[\"']$/\1/p" "$2"); do
		grep -q "containerd\.runtimes\.$d\]" "$2" || echo "default_runtime_name '$d' names no runtime"
	done
}

# The block of a [table] in a dump: from its header to the next header.
block() { awk -v h="$2" 'index($0, h) && /^ *\[/ {on=1; print; next} on && /^ *\[/ {exit} on {print}' "$1"; }

# kata-deploy plan before each install: it writes nothing, and its diff applied with git apply (strict: no fuzz)
# to a copy of the root gives exactly the files the install then writes.
plan_pre() { # plan_pre NAME ARGS...
	local name=$1
	shift
	rm -rf "$T/$name.pcopy"
	if ! "$KD" plan --root "$R" --payload "$P" "$@" >"$T/$name.plan" 2>"$T/$name.planerr"; then
		not_ok "$name: plan failed: $(tail -2 "$T/$name.planerr")"
		return
	fi
	diff -q "$T/$name.before" <(snapshot "$R") >/dev/null || not_ok "$name: plan changed the root"
	cp -a "$R" "$T/$name.pcopy"
	sed -n '/^--- /,/^[a-z]*: /p' "$T/$name.plan" | grep -v '^[a-z]*: ' >"$T/$name.pdiff" || true
	(cd "$T/$name.pcopy" && git apply -p1 --whitespace=nowarn "$T/$name.pdiff") >/dev/null 2>&1 ||
		{ not_ok "$name: the plan's diff does not apply"; rm -rf "$T/$name.pcopy"; }
}
plan_post() { # plan_post NAME: after the install
	local name=$1 f bad=0
	[ -d "$T/$name.pcopy" ] || return 0
	for f in $(grep '^+++ b/' "$T/$name.pdiff" | cut -c7-); do
		cmp -s "$R/$f" "$T/$name.pcopy/$f" || { not_ok "$name: plan: /$f differs from what install wrote"; bad=1; }
	done
	[ $bad = 1 ] || ok "$name: plan wrote nothing; its diff ($(grep -c '^+++ ' "$T/$name.pdiff") files) is exactly what install wrote"
}

start_case() { # start_case NAME: fresh root in $R with the demo host layout
	R=$T/$1
	rm -rf "$R"
	mkdir -p "$R/etc/containerd"
}

# run_case NAME BIN VERSION CONFIG(relative) [install args...]
run_case() {
	local name=$1 bin=$2 ver=$3 cfg=$4
	shift 4
	snapshot "$R" >"$T/$name.before"
	local have_cfg=0
	[ -f "$R/$cfg" ] && have_cfg=1
	if [ $have_cfg = 1 ]; then
		dump "$bin" "$R" "$cfg" >"$T/$name.dump0" 2>"$T/$name.err0" ||
			{ not_ok "$name: original config does not load"; cat "$T/$name.err0"; return; }
	else # the daemon's built-in defaults
		"$bin" config default >"$T/$name.dump0"
	fi
	plan_pre "$name" --runtime-version "$ver" --runtime-binary "$bin" "$@"
	if ! "$KD" install --root "$R" --payload "$P" --runtime-version "$ver" \
		--runtime-binary "$bin" "$@" >"$T/$name.out" 2>&1; then
		not_ok "$name: install failed: $(tail -3 "$T/$name.out")"
		return
	fi
	plan_post "$name"
	local droot=$R tmpl
	tmpl=$(ls "$R/$(dirname "$cfg")"/config*.toml.tmpl 2>/dev/null || true)
	if [ -n "$tmpl" ]; then
		# What k3s renders at start: its base config, then the rest of the template.
		droot=$T/$name.rendered
		rm -rf "$droot"; cp -a "$R" "$droot"
		{ cat "$R/$cfg"; echo; tail -n +2 "$tmpl"; } >"$droot/$cfg"
	fi
	if ! dump "$bin" "$droot" "$cfg" >"$T/$name.dump1" 2>"$T/$name.err1"; then
		not_ok "$name: containerd refuses the installed config: $(head -3 "$T/$name.err1")"
		return
	fi
	local bad=0
	for shim in qemu clh; do
		grep -q "runtimes.kata-$shim\]" "$T/$name.dump1" || { not_ok "$name: no kata-$shim in dump"; bad=1; }
		# 2.x prints strings with single quotes, 1.6 with double quotes.
		block "$T/$name.dump1" "runtimes.kata-$shim]" | grep -Eq "runtime_type = [\"']io.containerd.kata-$shim.v2[\"']" ||
			{ not_ok "$name: kata-$shim runtime_type"; bad=1; }
		block "$T/$name.dump1" "runtimes.kata-$shim.options]" |
			grep -Eq "ConfigPath = [\"']/opt/kata/runtimes/$shim/configuration-$shim.toml[\"']" ||
			{ not_ok "$name: kata-$shim ConfigPath"; bad=1; }
	done
	if [ "${EXPECT_SYSTEMD_CGROUP:-0}" = 1 ]; then
		block "$T/$name.dump1" "runtimes.kata-qemu.options]" | grep -q 'SystemdCgroup = true' ||
			{ not_ok "$name: SystemdCgroup not inherited"; block "$T/$name.dump1" "runtimes.kata-qemu.options]"; bad=1; }
	fi
	lost_runtimes "$T/$name.dump0" "$T/$name.dump1" >"$T/$name.lostrt"
	[ ! -s "$T/$name.lostrt" ] || { not_ok "$name: $(head -3 "$T/$name.lostrt" | tr '\n' ' ')"; bad=1; }
	if [ $have_cfg = 1 ] || [ "$ver" != 1.6 ]; then # 1.6's `config default` differs from its dump of a file
		lost_settings "$T/$name.dump0" "$T/$name.dump1" >"$T/$name.lost"
		[ ! -s "$T/$name.lost" ] || { not_ok "$name: settings lost: $(head -5 "$T/$name.lost")"; bad=1; }
	fi
	[ $bad = 1 ] || ok "$name: $(grep -o 'containerd config: .*' "$T/$name.out" | head -1 | cut -c20-90)…; dump shows kata-qemu, kata-clh with runtime_type, ConfigPath${EXPECT_SYSTEMD_CGROUP:+, SystemdCgroup}; every runtime kept, default_runtime_name resolves; no original setting lost"
	[ -z "${CASE_HOOK:-}" ] || "$CASE_HOOK" "$name"
	"$KD" install --root "$R" --payload "$P" --runtime-version "$ver" --runtime-binary "$bin" "$@" >"$T/$name.out2" 2>&1 || true
	check "$name: reinstall changes nothing" grep -q 'nothing to do' "$T/$name.out2"
	"$KD" uninstall --root "$R" >/dev/null 2>&1 || not_ok "$name: uninstall failed"
	if diff "$T/$name.before" <(snapshot "$R") >"$T/$name.diff"; then
		ok "$name: uninstall restored every file byte for byte"
	else
		not_ok "$name: uninstall left differences: $(head -5 "$T/$name.diff")"
	fi
	if [ $have_cfg = 1 ]; then
		dump "$bin" "$R" "$cfg" >"$T/$name.dump2" 2>/dev/null
		check "$name: dump after uninstall equals the original dump" same_dump "$T/$name.dump0" "$T/$name.dump2"
	fi
}

CUSTOM_V2='version = 2
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.example/pause:3.9-custom"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = true
'
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

# What Debian 12's containerd package ships as /etc/containerd/config.toml (1.6.20~ds1-1+deb12u3):
# no runtimes table, so runc is containerd's built-in one. 1.6 replaces the whole runtimes map
# when a file sets one: our handlers alone would leave the daemon without runc (issue 14 item 17).
DEBIAN_PKG_V2='version = 2

[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/usr/lib/cni"
      conf_dir = "/etc/cni/net.d"
  [plugins."io.containerd.internal.v1.opt"]
    path = "/var/lib/containerd/opt"
'

matrix() { # matrix LABEL BIN VERSION
	local l=$1 bin=$2 ver=$3
	start_case "$l-noconfig" # containerd is there (its unit), its config is not
	mkdir -p "$R/etc/systemd/system" && touch "$R/etc/systemd/system/containerd.service"
	run_case "$l-noconfig" "$bin" "$ver" etc/containerd/config.toml

	start_case "$l-default"
	"$bin" config default >"$R/etc/containerd/config.toml"
	run_case "$l-default" "$bin" "$ver" etc/containerd/config.toml

	start_case "$l-debian-pkg"
	printf '%s' "$DEBIAN_PKG_V2" >"$R/etc/containerd/config.toml"
	run_case "$l-debian-pkg" "$bin" "$ver" etc/containerd/config.toml

	start_case "$l-custom"
	printf '%s' "$CUSTOM_V2" >"$R/etc/containerd/config.toml"
	EXPECT_SYSTEMD_CGROUP=1 run_case "$l-custom" "$bin" "$ver" etc/containerd/config.toml

	start_case "$l-imports"
	mkdir -p "$R/etc/containerd/conf.d"
	{ echo 'version = 2'; echo 'imports = ["/etc/containerd/conf.d/*.toml"]'; echo '[debug]'; echo '  level = "info"'; } >"$R/etc/containerd/config.toml"
	printf '%s' "$CUSTOM_V2" >"$R/etc/containerd/conf.d/10-cri.toml"
	EXPECT_SYSTEMD_CGROUP=1 run_case "$l-imports" "$bin" "$ver" etc/containerd/config.toml

	start_case "$l-k3s"
	mkdir -p "$R/etc/systemd/system" "$R/var/lib/rancher/k3s/agent/etc/containerd"
	touch "$R/etc/systemd/system/k3s.service"
	if [ "$ver" = 1.6 ]; then
		printf '%s' "$CUSTOM_V2" >"$R/var/lib/rancher/k3s/agent/etc/containerd/config.toml"
	else
		{ printf '%s' "$CUSTOM_V3"; echo 'imports = []'; } | sed '1a imports = ["/var/lib/rancher/k3s/agent/etc/containerd/config-v3.toml.d/*.toml"]' |
			grep -v '^imports = \[\]' >"$R/var/lib/rancher/k3s/agent/etc/containerd/config.toml"
	fi
	EXPECT_SYSTEMD_CGROUP=1 run_case "$l-k3s" "$bin" "$ver" var/lib/rancher/k3s/agent/etc/containerd/config.toml
}

matrix c16 "$CTD1" 1.6

# The loader compares containerd's effective config before and after: told (wrongly) that the
# 1.6 daemon is 2.2, the drop-in it chooses would replace 1.6's whole CRI table and lose runc;
# install and plan refuse, and nothing is written.
start_case c16-lied
printf '%s' "$DEBIAN_PKG_V2" >"$R/etc/containerd/config.toml"
snapshot "$R" >"$T/lied.before"
expect_fail "c16 told 2.2: install refuses to drop runc from the effective config" \
	"would drop runtime 'runc' from containerd's effective config" \
	"$KD" install --root "$R" --payload "$P" --runtime-version 2.2 --runtime-binary "$CTD1"
expect_fail "c16 told 2.2: plan refuses the same" "would drop runtime 'runc'" \
	"$KD" plan --root "$R" --payload "$P" --runtime-version 2.2 --runtime-binary "$CTD1"
check "c16 told 2.2: the root is unchanged" diff -q "$T/lied.before" <(snapshot "$R")
# The loader is bounded in time and killed (it runs under the host lock); a missing one is named.
printf '#!/bin/sh\nsleep 600 &\necho $! $$ >"%s"\nexec sleep 600\n' "$T/loader.pids" >"$T/blocking-loader"
chmod +x "$T/blocking-loader"
start=$(date +%s)
KD_TEST_LOADER_TIMEOUT_MS=1500 expect_fail "a blocking --runtime-binary is killed after its bound" \
	"did not finish within 1500 ms: killed" \
	"$KD" install --root "$R" --payload "$P" --runtime-version 1.6 --runtime-binary "$T/blocking-loader"
check "… within seconds, and the lock is free again" test $(($(date +%s) - start)) -lt 10
gone() { # dead: no such process, or a zombie its new parent has not reaped yet
	local p st
	for p in $(cat "$T/loader.pids"); do
		st=$(ps -o stat= -p "$p" || true)
		[ -z "$st" ] || [ "${st#Z}" != "$st" ] || return 1
	done
}
check "… and nothing of the loader is left running (it and its child)" gone
check "… and the root is unchanged" diff -q "$T/lied.before" <(snapshot "$R")
expect_fail "--runtime-binary /nonexistent: the reason is named" \
	"--runtime-binary /nonexistent: cannot execute it: No such file or directory" \
	"$KD" install --root "$R" --payload "$P" --runtime-version 1.6 --runtime-binary /nonexistent
matrix c2 "$CTD2" 2.2
start_case c2-v3
printf '%s' "$CUSTOM_V3" >"$R/etc/containerd/config.toml"
EXPECT_SYSTEMD_CGROUP=1 run_case c2-v3 "$CTD2" 2.2 etc/containerd/config.toml
start_case c2-v3-confd
{ echo 'imports = ["/etc/containerd/conf.d/*.toml"]'; printf '%s' "$CUSTOM_V3"; } >"$R/etc/containerd/config.toml"
EXPECT_SYSTEMD_CGROUP=1 run_case c2-v3-confd "$CTD2" 2.2 etc/containerd/config.toml
check "c2-v3-confd: conf.d already imported: main file not edited" grep -q 'already imported' "$T/c2-v3-confd.out"

# containerd.userDropIn (--containerd-user-drop-in): the admin's TOML, copied beside our drop-in
# as zz-kata-deploy-user.toml and merged after it by containerd 2.2's own loader: its runtime is
# in the dump and its key wins over ours. run_case holds the rest to the same rules: plan = install,
# no original setting lost, reinstall a no-op, uninstall byte for byte.
printf '%s' '[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.gvisor]
  runtime_type = "io.containerd.runsc.v1"
[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.kata-qemu]
  privileged_without_host_devices = false
' >"$T/user.toml"
user_wins() { block "$T/$1.dump1" "runtimes.kata-qemu]" | grep -q "privileged_without_host_devices = false"; }
user_hook() {
	local name=$1
	check "$name: the copy is the user's file byte for byte" cmp -s "$T/user.toml" "$R/etc/containerd/conf.d/zz-kata-deploy-user.toml"
	check "$name: containerd's dump has the user's runtime" grep -q 'runtimes.gvisor\]' "$T/$name.dump1"
	check "$name: the user's key wins over ours (merged after our drop-in)" user_wins "$name"
}
start_case c2-user-import # no imports: our drop-in and the user's each get an entry, ours first
printf '%s' "$CUSTOM_V3" >"$R/etc/containerd/config.toml"
CASE_HOOK=user_hook EXPECT_SYSTEMD_CGROUP=1 run_case c2-user-import "$CTD2" 2.2 etc/containerd/config.toml --containerd-user-drop-in "$T/user.toml"
start_case c2-user-confd # conf.d/*.toml already covers both: the root config is not touched
{ echo 'imports = ["/etc/containerd/conf.d/*.toml"]'; printf '%s' "$CUSTOM_V3"; } >"$R/etc/containerd/config.toml"
cp "$R/etc/containerd/config.toml" "$T/confd-main.toml"
confd_hook() { user_hook "$1"; check "$1: conf.d/*.toml covers both files: root config unchanged" cmp -s "$T/confd-main.toml" "$R/etc/containerd/config.toml"; }
CASE_HOOK=confd_hook EXPECT_SYSTEMD_CGROUP=1 run_case c2-user-confd "$CTD2" 2.2 etc/containerd/config.toml --containerd-user-drop-in "$T/user.toml"
start_case c2-user-noconfig # the config we create imports the copy
mkdir -p "$R/etc/systemd/system" && touch "$R/etc/systemd/system/containerd.service"
CASE_HOOK=user_hook run_case c2-user-noconfig "$CTD2" 2.2 etc/containerd/config.toml --containerd-user-drop-in "$T/user.toml"
# On, off, changed, on again: the records follow (the copy and both imports entries come and go),
# and uninstall still gives the root back byte for byte.
start_case c2-user-toggle
printf '%s' "$CUSTOM_V3" >"$R/etc/containerd/config.toml"
snapshot "$R" >"$T/toggle.before"
kdi() { "$KD" install --root "$R" --payload "$P" --runtime-version 2.2 --runtime-binary "$CTD2" "$@" >"$T/toggle.out" 2>&1; }
kdi
cp "$R/etc/containerd/config.toml" "$T/toggle.ours"
kdi --containerd-user-drop-in "$T/user.toml"
check "user drop-in added later: the root config imports ours, then the user's" \
	grep -qx 'imports = \["/etc/containerd/conf.d/kata-deploy.toml", "/etc/containerd/conf.d/zz-kata-deploy-user.toml"\]' "$R/etc/containerd/config.toml"
sed 's/= false/= true/' "$T/user.toml" >"$T/user2.toml"
kdi --containerd-user-drop-in "$T/user2.toml"
check "user drop-in changed: the copy follows" cmp -s "$T/user2.toml" "$R/etc/containerd/conf.d/zz-kata-deploy-user.toml"
kdi
check "user drop-in dropped: the copy is removed" test ! -e "$R/etc/containerd/conf.d/zz-kata-deploy-user.toml"
check "… and the root config is as our install alone made it" cmp -s "$T/toggle.ours" "$R/etc/containerd/config.toml"
kdi --containerd-user-drop-in "$T/user.toml"
"$KD" uninstall --root "$R" >/dev/null 2>&1 || not_ok "c2-user-toggle: uninstall failed"
check "c2-user-toggle: uninstall restored every file byte for byte" diff -q "$T/toggle.before" <(snapshot "$R")
# Refused, with the reason, and nothing written: containerd 1.6 (it would replace our whole CRI
# table from the user's file), a user file that is not TOML, a FIFO (without blocking), a missing file.
start_case c16-user
printf '%s' "$DEBIAN_PKG_V2" >"$R/etc/containerd/config.toml"
snapshot "$R" >"$T/c16-user.before"
expect_fail "user drop-in on containerd 1.6: refused, saying why" "needs containerd 2.x reading drop-ins" \
	"$KD" install --root "$R" --payload "$P" --runtime-version 1.6 --runtime-binary "$CTD1" --containerd-user-drop-in "$T/user.toml"
printf '[plugins\n' >"$T/user-bad.toml"
expect_fail "user drop-in not TOML: refused with file:line" "user-bad.toml:1:" \
	"$KD" install --root "$R" --payload "$P" --runtime-version 2.2 --containerd-user-drop-in "$T/user-bad.toml"
mkfifo "$T/user-fifo"
expect_fail "user drop-in a FIFO: refused without blocking" "not a regular file" \
	timeout 20 "$KD" install --root "$R" --payload "$P" --runtime-version 2.2 --containerd-user-drop-in "$T/user-fifo"
expect_fail "user drop-in missing: a usage error that names it" "user-none.toml': No such file" \
	"$KD" install --root "$R" --payload "$P" --runtime-version 2.2 --containerd-user-drop-in "$T/user-none.toml"
check "refused user drop-ins: nothing written" diff -q "$T/c16-user.before" <(snapshot "$R")

# Config version 4 (containerd 2.3+) with containerd 2.4's own loader: its default config (which
# imports conf.d) and a custom v4 config without imports.
scripts/peers/containerd24.sh >&2
CTD24=$PEERS/bin/containerd24
start_case c24-v4-default
"$CTD24" config default >"$R/etc/containerd/config.toml"
check "c24: containerd 2.4's default config is version 4" grep -qx 'version = 4' "$R/etc/containerd/config.toml"
run_case c24-v4-default "$CTD24" 2.4 etc/containerd/config.toml
check "c24-v4-default: conf.d already imported: main file not edited" grep -q 'already imported' "$T/c24-v4-default.out"
start_case c24-v4-custom
printf '%s' "$CUSTOM_V3" | sed 's/^version = 3$/version = 4/' >"$R/etc/containerd/config.toml"
EXPECT_SYSTEMD_CGROUP=1 run_case c24-v4-custom "$CTD24" 2.4 etc/containerd/config.toml

# The 2.x daemon starts with our config (temp socket), and lists the CRI runtime plugin.
start_case c2-daemon
printf '%s' "$CUSTOM_V3" >"$R/etc/containerd/config.toml"
"$KD" install --root "$R" --payload "$P" --runtime-version 2.2 --runtime-binary "$CTD2" >/dev/null 2>&1
D=$T/daemon
mkdir -p "$D"
{ echo "root = \"$D/root\""; echo "state = \"$D/state\""; cat "$R/etc/containerd/config.toml"
  printf '[grpc]\n  address = "%s/c.sock"\n[ttrpc]\n  address = "%s/c.sock.ttrpc"\n' "$D" "$D"
  # NRI's socket (default /var/run/nri/nri.sock), the opt plugin's /opt/containerd and CNI's
  # conf dir go to $D too: the daemon must leave nothing on the machine.
  printf '[plugins."io.containerd.nri.v1.nri"]\n  socket_path = "%s/nri.sock"\n' "$D"
  printf '[plugins."io.containerd.internal.v1.opt"]\n  path = "%s/opt"\n' "$D"
  printf '[plugins."io.containerd.cri.v1.runtime".cni]\n  conf_dir = "%s/cni"\n' "$D"; } |
	sed "s#\"/etc/containerd/conf.d/#\"$R/etc/containerd/conf.d/#" >"$D/config.toml"
# In a mount namespace with a tmpfs on /run: containerd 2.x creates /run/containerd (its shims'
# socket dir) whatever the config says.
unshare -m --propagation private sh -c 'mount -t tmpfs -o mode=0755 kd-test-run /run && exec "$0" "$@"' \
	"$CTD2" --config "$D/config.toml" >"$D/log" 2>&1 </dev/null &
dpid=$!
for _ in $(seq 1 100); do [ -S "$D/c.sock" ] && break; sleep 0.1; done
# The socket can appear a moment before ctr gets an answer under load: ask for up to 30 s. (Not
# `ctr ... | grep -q`: with lib.sh's pipefail, grep quitting at its match can fail the pipeline
# through ctr's SIGPIPE: 3 of 200 such calls failed here against a running daemon.)
cri_ok() {
	"$CTR2" --address "$D/c.sock" plugins ls >"$T/plugins" 2>/dev/null
	grep -Eq 'io.containerd.cri.v1 +runtime .* ok' "$T/plugins"
}
for _ in $(seq 1 150); do cri_ok && break; sleep 0.2; done
if cri_ok; then
	ok "containerd 2.x daemon starts with our config; CRI runtime plugin ok"
else
	not_ok "containerd 2.x daemon with our config: $(tail -5 "$D/log")"
	"$CTR2" --address "$D/c.sock" plugins ls 2>&1 | grep -E 'cri|TYPE' | sed 's/^/#   plugins: /'
	grep -Ei 'level=(error|warning)' "$D/log" | tail -8 | sed 's/^/#   log: /'
fi
kill -TERM "$dpid" 2>/dev/null; wait "$dpid" 2>/dev/null || true

# Bad input: clear error naming file:line, nothing written.
bad_case() { # bad_case DESC WANT
	snapshot "$R" >"$T/bad.before"
	expect_fail "$1" "$2" "$KD" install --root "$R" --payload "$P" --runtime-version 1.6
	check "$1: nothing written" diff -q "$T/bad.before" <(snapshot "$R")
}
start_case bad1; printf 'version = 2\n[plugins\n' >"$R/etc/containerd/config.toml"
bad_case "main config not TOML" "/etc/containerd/config.toml:2:"
start_case bad2; printf 'version = 2\n[a]\nx = 1\n[a]\ny = 2\n' >"$R/etc/containerd/config.toml"
bad_case "duplicate table" "/etc/containerd/config.toml:4:"
start_case bad3; printf 'version = 9\n' >"$R/etc/containerd/config.toml"
bad_case "unknown future version" "config version 9 is not one this kata-deploy knows"
start_case bad4; printf 'version = 2\nimports = ["/a.toml", 3]\n' >"$R/etc/containerd/config.toml"
bad_case "imports entry not a string" "/etc/containerd/config.toml:2:"
start_case bad5; printf 'version = 2\n' >"$R/etc/containerd/config.toml"
snapshot "$R" >"$T/ro.before"
out=$(unshare -m bash -c "mount --bind '$R/etc/containerd' '$R/etc/containerd' && mount -o remount,bind,ro '$R/etc/containerd' && '$KD' install --root '$R' --payload '$P' --runtime-version 1.6" 2>&1) && rc=0 || rc=$?
if [ "$rc" -ne 0 ] && grep -q 'cannot write /etc/containerd/config.toml' <<<"$out"; then ok "read-only config dir refused: $(grep -o 'cannot write.*' <<<"$out" | head -1)"; else not_ok "read-only config dir (rc=$rc): $out"; fi
check "read-only config dir: nothing written" diff -q "$T/ro.before" <(snapshot "$R")

# Three-way revert: the admin edits another table after install; uninstall keeps the edit and
# removes only ours. If the admin edits our own table, uninstall removes it whole anyway (its
# shim is gone) and names the edit; an install over it refuses to update the file.
start_case threeway
printf '%s' "$CUSTOM_V2" >"$R/etc/containerd/config.toml"
"$KD" install --root "$R" --payload "$P" --runtime-version 1.6 >/dev/null 2>&1
sed -i 's#registry.example/pause:3.9-custom#registry.example/pause:admin-edit#' "$R/etc/containerd/config.toml"
printf '%s' "$CUSTOM_V2" | sed 's#registry.example/pause:3.9-custom#registry.example/pause:admin-edit#' >"$T/expected.toml"
out=$("$KD" uninstall --root "$R" 2>&1)
check "three-way: admin's edit kept, our tables removed (file = original + admin edit)" cmp -s "$T/expected.toml" "$R/etc/containerd/config.toml"
check "three-way: the warning names the file" grep -q '/etc/containerd/config.toml was changed since' <<<"$out"
start_case ours-edited
printf '%s' "$CUSTOM_V2" >"$R/etc/containerd/config.toml"
"$KD" install --root "$R" --payload "$P" --runtime-version 1.6 >/dev/null 2>&1
sed -i 's#privileged_without_host_devices = true#privileged_without_host_devices = false#' "$R/etc/containerd/config.toml"
cp "$R/etc/containerd/config.toml" "$T/edited.toml"
out=$("$KD" install --root "$R" --payload "$P" --runtime-version 1.6 --debug 2>&1) && rc=0 || rc=$?
check "our table edited: an install that would rewrite it refuses, naming the tables" \
	grep -q 'the kata-deploy tables were edited since install: \[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.kata' <<<"$out"
check "our table edited: … and leaves the file as the admin has it" cmp -s "$T/edited.toml" "$R/etc/containerd/config.toml"
out=$("$KD" uninstall --root "$R" 2>&1)
check "our table edited: uninstall removes our tables all the same" \
	bash -c "! grep -q kata '$R/etc/containerd/config.toml'"
check "our table edited: … and names the edit it removed with them" \
	grep -q "'privileged_without_host_devices = false').* were removed with them" <<<"$out"
check "our table edited: … and does not claim the root is as it was" \
	grep -q "could not be restored exactly" <<<"$out"

# Restart: command mode runs only when the effective config changed.
start_case restart
printf '%s' "$CUSTOM_V2" >"$R/etc/containerd/config.toml"
"$KD" install --root "$R" --payload "$P" --runtime-version 1.6 --restart "command:echo restarted >> $T/restarts" >/dev/null 2>&1
"$KD" install --root "$R" --payload "$P" --runtime-version 1.6 --restart "command:echo restarted >> $T/restarts" >/dev/null 2>&1
check "restart: once for install, not for the no-op reinstall" test "$(wc -l <"$T/restarts")" -eq 1
"$KD" uninstall --root "$R" >/dev/null 2>&1
check "restart: once more for uninstall (recorded mode)" test "$(wc -l <"$T/restarts")" -eq 2
start_case sdbus
printf '%s' "$CUSTOM_V2" >"$R/etc/containerd/config.toml"
expect_fail "restart systemd without a bus: clear error" "connect to systemd" "$KD" install --root "$R" --payload "$P" --runtime-version 1.6 --restart systemd
finish
