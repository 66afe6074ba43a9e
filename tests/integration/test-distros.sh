#!/usr/bin/env bash
# Runtime config on the distributions that carry their own containerd (rke2, k0s, microk8s), with
# the real loaders: Debian's containerd 1.6 and containerd 2.x (scripts/peers/containerd2.sh).
# Each root has the unit files, directories and config files the distribution ships. What the
# distribution does at start is replayed on a copy of the root before `containerd config dump`
# runs on the file it passes to containerd: rke2 renders config.toml from its template, microk8s
# substitutes its template's ${...} placeholders into args/containerd.toml, k0s hands over
# /etc/k0s/containerd.toml as is. Per case: plan writes nothing (and its diff is what install
# writes), install writes exactly the expected file, the dump lists every handler with its
# options and keeps every original setting, the restart is the distribution's (none for k0s),
# a no-op reinstall restarts nothing, uninstall gives back every byte and the original dump.
# Then bad inputs per distribution: refused with the file (and line), nothing written. Also an
# option change after rke2 rendered our template (the loader check must not count our old
# tables twice).
source "$(dirname "$0")/../lib.sh"
cd "$ROOTDIR"

CTD1=/usr/bin/containerd
scripts/peers/containerd2.sh >&2
PEERS=${KD_PEERS_DIR:-$HOME/.cache/kata-deploy-peers}
CTD2=$PEERS/bin/containerd2
P=$T/p.tar.zst
"$KD" payload pack artifacts/demo/tree --spec artifacts/demo/payload.yaml -o "$P" >/dev/null

# containerd resolves absolute imports on the host: run it with the root's /etc and /var bound
# over the host's, in a private mount namespace.
dump() { # dump BIN ROOT CONFIG(relative) > out
	unshare -m bash -c "mount --bind '$2/etc' /etc && { [ ! -d '$2/var' ] || mount --bind '$2/var' /var; } && exec '$1' --config '/$3' config dump"
}

# containerd 1.6 prints the files of `imports` in Go map order: compare them as a set.
imports_of() { sed -n 's/^imports = \[\(.*\)\]$/\1/p' "$1" | tr ',' '\n' | tr -d ' ' | LC_ALL=C sort; }
same_dump() { cmp -s <(grep -v '^imports = ' "$1") <(grep -v '^imports = ' "$2") && cmp -s <(imports_of "$1") <(imports_of "$2"); }
lost_settings() { grep -vxF -f "$2" "$1" | grep -v '^imports = ' || true; }
nlines() { if [ -f "$1" ]; then wc -l <"$1"; else echo 0; fi; }
block() { awk -v h="$2" 'index($0, h) && /^ *\[/ {on=1; print; next} on && /^ *\[/ {exit} on {print}' "$1"; }

RKE2=var/lib/rancher/rke2/agent/etc/containerd
MK8S=var/snap/microk8s/current/args

# What the distribution does when it starts, on a copy of the root: VIEW gets the files its
# containerd reads. rke2 (like k3s) renders config.toml from config[-v3].toml.tmpl when there is
# one: `{{ template "base" . }}` expands to the config it would render anyway, a template without
# Go actions renders as itself. microk8s's run-containerd-with-args does, at every start:
#   sed 's@${SNAP}@...@g;s@${SNAP_DATA}@...@g;...' args/containerd-template.toml > args/containerd.toml
# (with SNAPSHOTTER overlayfs, RUNTIME runc, RUNTIME_TYPE io.containerd.runc.v2 on a plain host)
# and starts containerd with --config ${SNAP_DATA}/args/containerd.toml. k0s passes
# /etc/k0s/containerd.toml, which imports /etc/k0s/containerd.d/*.toml itself.
start_distro() { # start_distro DISTRO ROOT VIEW
	local distro=$1 view=$3 t
	rm -rf "$view"
	cp -a "$2" "$view"
	case $distro in
	rke2)
		t=$view/$RKE2/config-v3.toml.tmpl
		[ -f "$t" ] || t=$view/$RKE2/config.toml.tmpl
		if [ ! -f "$t" ]; then
			:
		elif head -1 "$t" | grep -qF '{{ template "base" . }}'; then
			{ cat "$view/$RKE2/config.toml"; echo; tail -n +2 "$t"; } >"$view/$RKE2/config.toml.new"
			mv "$view/$RKE2/config.toml.new" "$view/$RKE2/config.toml"
		else
			cp "$t" "$view/$RKE2/config.toml"
		fi
		;;
	microk8s)
		sed 's@${SNAP}@/snap/microk8s/current@g;s@${SNAP_DATA}@/var/snap/microk8s/current@g;s@${SNAPSHOTTER}@overlayfs@g;s@${RUNTIME}@runc@g;s@${RUNTIME_TYPE}@io.containerd.runc.v2@g' \
			"$view/$MK8S/containerd-template.toml" >"$view/$MK8S/containerd.toml"
		;;
	esac
}
daemon_config() { # the file the distribution passes to containerd --config
	case $1 in
	rke2) echo "$RKE2/config.toml" ;;
	k0s) echo etc/k0s/containerd.toml ;;
	microk8s) echo "$MK8S/containerd.toml" ;;
	esac
}

# Paths (with their type) created, changed or removed between two snapshots, outside Kata's
# prefix and our state directory.
changed_paths() { diff "$1" "$2" | sed -n 's/^[<>] \([a-z]\) [0-7]* \(.* \)\{0,1\}\.\/\([^ ]*\).*/\1 \3/p' | grep -v ' opt\| var/lib/kata-deploy' | LC_ALL=C sort -u || true; }

# run_case NAME DISTRO BIN VERSION 'EXPECTED WHY' 'EXPECTED CHANGED PATHS' UNIT [install args...]
# UNIT is 'unit flavour' as the restart command gets them (KD_UNIT, KD_FLAVOUR), "" for none (k0s).
run_case() {
	local name=$1 distro=$2 bin=$3 ver=$4 why=$5 want_paths=$6 unit=$7
	shift 7
	local cfg restart_cmd args bad=0 shim
	cfg=$(daemon_config "$distro")
	restart_cmd="command:echo \"\$KD_UNIT \$KD_FLAVOUR\" >> $T/$name.restarts"
	args=(--payload "$P" --distribution "$distro" --runtime-version "$ver" --runtime-binary "$bin" --restart "$restart_cmd" "$@")
	snapshot "$R" >"$T/$name.before"
	start_distro "$distro" "$R" "$T/$name.view0"
	dump "$bin" "$T/$name.view0" "$cfg" >"$T/$name.dump0" 2>"$T/$name.err0" ||
		{ not_ok "$name: the distribution's original config does not load: $(head -3 "$T/$name.err0")"; return; }

	# 1. plan writes nothing; its diff applied (git apply, strict) gives what install writes.
	if ! "$KD" plan --root "$R" "${args[@]}" >"$T/$name.plan" 2>"$T/$name.planerr"; then
		not_ok "$name: plan failed: $(tail -2 "$T/$name.planerr")"
		return
	fi
	check "$name: plan wrote nothing" diff -q "$T/$name.before" <(snapshot "$R")
	rm -rf "$T/$name.pcopy"
	cp -a "$R" "$T/$name.pcopy"
	sed -n '/^--- /,/^[a-z]*: /p' "$T/$name.plan" | grep -v '^[a-z]*: ' >"$T/$name.pdiff" || true
	(cd "$T/$name.pcopy" && git apply -p1 --whitespace=nowarn "$T/$name.pdiff") >/dev/null 2>&1 ||
		not_ok "$name: the plan's diff does not apply"

	# 2. install writes where the distribution's containerd reads.
	if ! "$KD" install --root "$R" "${args[@]}" >"$T/$name.out" 2>&1; then
		not_ok "$name: install failed: $(tail -3 "$T/$name.out")"
		return
	fi
	snapshot "$R" >"$T/$name.after"
	rm -rf "$T/$name.installed"
	cp -a "$R" "$T/$name.installed"
	local got_paths
	got_paths=$(changed_paths "$T/$name.before" "$T/$name.after")
	if grep -qF "containerd config: $why" "$T/$name.out" && [ "$got_paths" = "$want_paths" ]; then
		ok "$name: $why; wrote ${got_paths//$'\n'/, }"
	else
		not_ok "$name: strategy/files: wanted '$why' and [$want_paths], got '$(grep -o 'containerd config: .*' "$T/$name.out")' and [$got_paths]"
	fi
	local f
	for f in $(grep '^+++ b/' "$T/$name.pdiff" | cut -c7-); do
		cmp -s "$R/$f" "$T/$name.pcopy/$f" || { not_ok "$name: plan: /$f differs from what install wrote"; bad=1; }
	done
	[ $bad = 1 ] || ok "$name: the plan's diff ($(grep -c '^+++ ' "$T/$name.pdiff") files) is exactly what install wrote"

	start_distro "$distro" "$R" "$T/$name.view1"
	if ! dump "$bin" "$T/$name.view1" "$cfg" >"$T/$name.dump1" 2>"$T/$name.err1"; then
		not_ok "$name: containerd refuses the config the distribution now passes it: $(head -3 "$T/$name.err1")"
		return
	fi
	bad=0
	for shim in qemu clh; do
		# 2.x prints strings with single quotes, 1.6 with double quotes.
		block "$T/$name.dump1" "runtimes.kata-$shim]" >"$T/$name.h"
		grep -Eq "runtime_type = [\"']io.containerd.kata-$shim.v2[\"']" "$T/$name.h" &&
			grep -Eq "runtime_path = [\"']/opt/kata/bin/containerd-shim-kata-v2[\"']" "$T/$name.h" &&
			grep -Eq "privileged_without_host_devices = true" "$T/$name.h" ||
			{ not_ok "$name: kata-$shim in the dump: $(head -c 300 "$T/$name.h")"; bad=1; }
		block "$T/$name.dump1" "runtimes.kata-$shim.options]" >"$T/$name.o"
		grep -Eq "ConfigPath = [\"']/opt/kata/runtimes/$shim/configuration-$shim.toml[\"']" "$T/$name.o" ||
			{ not_ok "$name: kata-$shim ConfigPath: $(head -c 300 "$T/$name.o")"; bad=1; }
		if [ "${EXPECT_SYSTEMD_CGROUP:-0}" = 1 ] && ! grep -q 'SystemdCgroup = true' "$T/$name.o"; then
			not_ok "$name: kata-$shim did not inherit SystemdCgroup = true"
			bad=1
		fi
	done
	lost_settings "$T/$name.dump0" "$T/$name.dump1" >"$T/$name.lost"
	[ ! -s "$T/$name.lost" ] || { not_ok "$name: settings lost: $(head -5 "$T/$name.lost")"; bad=1; }
	[ $bad = 1 ] || ok "$name: $(basename "$bin") config dump of /$cfg: kata-qemu, kata-clh with runtime_type, runtime_path, ConfigPath${EXPECT_SYSTEMD_CGROUP:+, SystemdCgroup}; no original setting lost"

	# 3. The restart: the distribution's unit (what the command mode is given), none for k0s.
	if [ -n "$unit" ]; then
		if grep -q "^restart: run .*(KD_UNIT=${unit%% *})\$" "$T/$name.plan" &&
			grep -q "runtime restart: run .*(KD_UNIT=${unit%% *})\$" "$T/$name.out" &&
			[ "$(cat "$T/$name.restarts" 2>/dev/null)" = "$unit" ]; then
			ok "$name: plan and install restart ${unit%% *} (KD_FLAVOUR=${unit#* }), once"
		else
			not_ok "$name: restart: plan says '$(grep '^restart:' "$T/$name.plan")', ran '$(cat "$T/$name.restarts" 2>/dev/null)'"
		fi
	else
		if grep -qx 'restart: none (k0s-[a-z]* reloads its drop-ins itself)' "$T/$name.plan" &&
			[ ! -e "$T/$name.restarts" ]; then
			ok "$name: no restart, k0s reloads containerd.d itself ($(grep '^restart:' "$T/$name.plan"))"
		else
			not_ok "$name: restart: plan says '$(grep '^restart:' "$T/$name.plan")', ran '$(cat "$T/$name.restarts" 2>/dev/null)'"
		fi
	fi
	local nrestarts
	nrestarts=$(nlines "$T/$name.restarts")
	"$KD" install --root "$R" "${args[@]}" >"$T/$name.out2" 2>&1 || true
	if grep -q 'nothing to do' "$T/$name.out2" && [ "$(nlines "$T/$name.restarts")" = "$nrestarts" ]; then
		ok "$name: reinstall changes nothing and restarts nothing"
	else
		not_ok "$name: reinstall: $(tail -2 "$T/$name.out2")"
	fi

	# 4. uninstall: every byte back, the same dump; the restart again (recorded mode).
	"$KD" uninstall --root "$R" >"$T/$name.un" 2>&1 || not_ok "$name: uninstall failed: $(tail -3 "$T/$name.un")"
	if diff "$T/$name.before" <(snapshot "$R") >"$T/$name.diff"; then
		ok "$name: uninstall restored every file byte for byte"
	else
		not_ok "$name: uninstall left differences: $(head -5 "$T/$name.diff")"
	fi
	start_distro "$distro" "$R" "$T/$name.view2"
	dump "$bin" "$T/$name.view2" "$cfg" >"$T/$name.dump2" 2>/dev/null || true
	check "$name: dump after uninstall equals the original dump" same_dump "$T/$name.dump0" "$T/$name.dump2"
	if [ -n "$unit" ]; then
		check "$name: uninstall restarts ${unit%% *} again (the recorded mode)" test "$(nlines "$T/$name.restarts")" -eq 2
	else
		if grep -q 'runtime restart: none (k0s-[a-z]* reloads its drop-ins itself)' "$T/$name.un" &&
			[ ! -e "$T/$name.restarts" ]; then
			ok "$name: uninstall restarts nothing either"
		else
			not_ok "$name: uninstall: $(grep 'restart' "$T/$name.un")"
		fi
	fi
}

# ---- the roots ----------------------------------------------------------------------------

# rke2 with containerd 1.x: config.toml as rke2 renders it from its v2 base template.
RKE2_V2='# File generated by rke2. DO NOT EDIT. Use config.toml.tmpl instead.
version = 2

[plugins."io.containerd.internal.v1.opt"]
  path = "/var/lib/rancher/rke2/agent/containerd"
[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "10010"
  enable_selinux = false
  enable_unprivileged_ports = true
  enable_unprivileged_icmp = true
  sandbox_image = "index.docker.io/rancher/mirrored-pause:3.6"

[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "overlayfs"
  disable_snapshot_annotations = true

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  SystemdCgroup = true

[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = "/var/lib/rancher/rke2/agent/etc/containerd/certs.d"
'
# rke2 with containerd 2.x: the v3 base template; since k3s-io/k3s#13680 it imports the
# versioned drop-in directory config-v3.toml.d.
RKE2_V3='# File generated by rke2. DO NOT EDIT. Use config-v3.toml.tmpl instead.
version = 3
imports = ["/var/lib/rancher/rke2/agent/etc/containerd/config-v3.toml.d/*.toml"]
root = "/var/lib/rancher/rke2/agent/containerd"
state = "/run/k3s/containerd"

[grpc]
  address = "/run/k3s/containerd/containerd.sock"

[plugins.'"'"'io.containerd.internal.v1.opt'"'"']
  path = "/var/lib/rancher/rke2/agent/containerd"

[plugins.'"'"'io.containerd.grpc.v1.cri'"'"']
  stream_server_address = "127.0.0.1"
  stream_server_port = "10010"

[plugins.'"'"'io.containerd.cri.v1.runtime'"'"']
  enable_selinux = false
  enable_unprivileged_ports = true
  enable_unprivileged_icmp = true
  device_ownership_from_security_context = false

[plugins.'"'"'io.containerd.cri.v1.images'"'"']
  snapshotter = "overlayfs"
  disable_snapshot_annotations = true
  use_local_image_pull = true

[plugins.'"'"'io.containerd.cri.v1.images'"'"'.pinned_images]
  sandbox = "index.docker.io/rancher/mirrored-pause:3.6"

[plugins.'"'"'io.containerd.cri.v1.runtime'"'"'.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins.'"'"'io.containerd.cri.v1.runtime'"'"'.containerd.runtimes.runc.options]
  SystemdCgroup = true

[plugins.'"'"'io.containerd.cri.v1.images'"'"'.registry]
  config_path = "/var/lib/rancher/rke2/agent/etc/containerd/certs.d"
'
rke2_root() { # rke2_root UNIT-DIR UNIT RENDERED-CONFIG
	R=$T/$CASE
	rm -rf "$R"
	mkdir -p "$R/$1" "$R/$RKE2" "$R/etc/rancher/rke2"
	touch "$R/$1/$2"
	printf 'token: demo\n' >"$R/etc/rancher/rke2/config.yaml"
	printf '%s' "$3" >"$R/$RKE2/config.toml"
}

# k0s with containerd 2.x: /etc/k0s/containerd.toml as k0s writes it (its marker, then its
# go-toml rendering, which imports /etc/k0s/containerd.d/*.toml), and two admin drop-ins of
# the shapes k0s's docs show (registry hosts; runc's cgroup driver).
K0S_MAIN='# k0s_managed=true
# This is a placeholder configuration for k0s managed containerd.
# If you wish to override the config, remove the first line and replace this file with your custom configuration.
# For reference see https://github.com/containerd/containerd/blob/main/docs/man/containerd-config.toml.5.md
imports = ["/etc/k0s/containerd.d/*.toml"]
version = 3

[plugins]

  [plugins."io.containerd.cri.v1.images"]

    [plugins."io.containerd.cri.v1.images".pinned_images]
      sandbox = "quay.io/k0sproject/pause:3.10.1"

  [plugins."io.containerd.cri.v1.runtime"]
'
k0s_root() { # k0s_root UNIT
	R=$T/$CASE
	rm -rf "$R"
	mkdir -p "$R/etc/systemd/system" "$R/etc/k0s/containerd.d" "$R/var/lib/k0s/bin"
	touch "$R/etc/systemd/system/$1" "$R/var/lib/k0s/bin/containerd"
	printf '%s' "$K0S_MAIN" >"$R/etc/k0s/containerd.toml"
	printf 'version = 3\n\n[plugins."io.containerd.cri.v1.images".registry]\nconfig_path = "/etc/k0s/containerd.d/certs.d"\n' \
		>"$R/etc/k0s/containerd.d/cri-registry.toml"
	printf 'version = 3\n\n[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]\n  SystemdCgroup = true\n' \
		>"$R/etc/k0s/containerd.d/10-cgroup-driver.toml"
}

# microk8s: the snap's args/containerd-template.toml (canonical/microk8s,
# microk8s-resources/default-args), with the placeholders its start script substitutes, and
# the args file that names args/containerd.toml as containerd's config.
MK8S_TEMPLATE='# Use config version 2 to enable new configuration fields.
version = 2
oom_score = 0

[grpc]
  uid = 0
  gid = 0
  max_recv_message_size = 16777216
  max_send_message_size = 16777216

[debug]
  address = ""
  uid = 0
  gid = 0

[metrics]
  address = "127.0.0.1:1338"
  grpc_histogram = false

[cgroup]
  path = ""

# The '"'"'plugins."io.containerd.grpc.v1.cri"'"'"' table contains all of the server options.
[plugins."io.containerd.grpc.v1.cri"]

  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  sandbox_image = "registry.k8s.io/pause:3.7"
  stats_collect_period = 10
  enable_tls_streaming = false
  max_container_log_line_size = 16384

  # '"'"'plugins."io.containerd.grpc.v1.cri".containerd'"'"' contains config related to containerd
  [plugins."io.containerd.grpc.v1.cri".containerd]

    # snapshotter is the snapshotter used by containerd.
    snapshotter = "${SNAPSHOTTER}"

    # no_pivot disables pivot-root (linux only), required when running a container in a RamDisk with runc.
    no_pivot = false

    # default_runtime_name is the default runtime name to use.
    default_runtime_name = "${RUNTIME}"

    # In this example, '"'"'runc'"'"' is the RuntimeHandler string to match.
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      # runtime_type is the runtime type to use in containerd e.g. io.containerd.runtime.v1.linux
      runtime_type = "${RUNTIME_TYPE}"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia-container-runtime]
      runtime_type = "${RUNTIME_TYPE}"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia-container-runtime.options]
        BinaryName = "nvidia-container-runtime"

  # '"'"'plugins."io.containerd.grpc.v1.cri".cni'"'"' contains config related to cni
  [plugins."io.containerd.grpc.v1.cri".cni]

    # bin_dir is the directory in which the binaries for the plugin is kept.
    bin_dir = "${SNAP_DATA}/opt/cni/bin"

    # conf_dir is the directory in which the admin places a CNI conf.
    conf_dir = "${SNAP_DATA}/args/cni-network"

  # '"'"'plugins."io.containerd.grpc.v1.cri".registry'"'"' contains config related to the registry
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "${SNAP_DATA}/args/certs.d"
'
microk8s_root() {
	R=$T/$CASE
	rm -rf "$R"
	mkdir -p "$R/etc/systemd/system" "$R/$MK8S" "$R/snap/microk8s/current/bin" "$R/var/lib"
	touch "$R/etc/systemd/system/snap.microk8s.daemon-containerd.service" "$R/snap/microk8s/current/bin/containerd"
	printf '%s' "$MK8S_TEMPLATE" >"$R/$MK8S/containerd-template.toml"
	printf '%s\n' '--config ${SNAP_DATA}/args/containerd.toml' '--root ${SNAP_COMMON}/var/lib/containerd' \
		'--state ${SNAP_COMMON}/run/containerd' '--address ${SNAP_COMMON}/run/containerd.sock' >"$R/$MK8S/containerd"
}

# ---- the cases ----------------------------------------------------------------------------

# rke2 on containerd 1.x (rke2 v1.24-v1.26 shipped 1.6): no template yet, so ours is
# `{{ template "base" . }}` + our tables; rke2 renders config.toml from it at its restart.
CASE=rke2-v2; rke2_root usr/local/lib/systemd/system rke2-server.service "$RKE2_V2"
EXPECT_SYSTEMD_CGROUP=1 run_case rke2-v2 rke2 "$CTD1" 1.6.20 \
	"rke2-server: template /$RKE2/config.toml.tmpl = base template + our tables (removed on uninstall)" \
	"f $RKE2/config.toml.tmpl" "rke2-server.service rke2-server"

# rke2 agent on 1.x whose admin copied config.toml to config.toml.tmpl (plain TOML, the way
# the docs say) and added an import of config.toml.d: 1.x would replace rke2's whole CRI table
# from a drop-in there (containerd#5837), so the handlers go into the template itself.
CASE=rke2-v2-imports; rke2_root usr/lib/systemd/system rke2-agent.service "$RKE2_V2"
sed -i '2a imports = ["/var/lib/rancher/rke2/agent/etc/containerd/config.toml.d/*.toml"]' "$R/$RKE2/config.toml"
sed 1d "$R/$RKE2/config.toml" >"$R/$RKE2/config.toml.tmpl"
mkdir -p "$R/$RKE2/config.toml.d"
EXPECT_SYSTEMD_CGROUP=1 run_case rke2-v2-imports rke2 "$CTD1" 1.6.20 \
	"rke2-agent: in-place edit of the TOML template /$RKE2/config.toml.tmpl; no drop-in in config.toml.d: containerd 1.6 replaces the CRI table from imports (containerd#5837)" \
	"f $RKE2/config.toml.tmpl" "rke2-agent.service rke2-agent"

# rke2 on containerd 2.x whose rendered config imports config-v3.toml.d: a drop-in there.
CASE=rke2-v3; rke2_root usr/local/lib/systemd/system rke2-server.service "$RKE2_V3"
EXPECT_SYSTEMD_CGROUP=1 run_case rke2-v3 rke2 "$CTD2" 2.2.9 \
	"rke2-server: drop-in in config-v3.toml.d (imported by /$RKE2/config.toml)" \
	"$(printf 'd %s\nf %s' "$RKE2/config-v3.toml.d" "$RKE2/config-v3.toml.d/kata-deploy.toml")" "rke2-server.service rke2-server"

# rke2 on containerd 2.x from before the import (k3s-io/k3s#13680): the v3 template.
CASE=rke2-v3-noimport; rke2_root usr/local/lib/systemd/system rke2-server.service "$(printf '%s' "$RKE2_V3" | sed '/^imports = /d')"
EXPECT_SYSTEMD_CGROUP=1 run_case rke2-v3-noimport rke2 "$CTD2" 2.2.9 \
	"rke2-server: template /$RKE2/config-v3.toml.tmpl = base template + our tables (removed on uninstall)" \
	"f $RKE2/config-v3.toml.tmpl" "rke2-server.service rke2-server"

# k0s worker on containerd 2.x: our drop-in in containerd.d, SystemdCgroup from the admin's
# drop-in (2.x merges imports over the main file), no restart.
CASE=k0s; k0s_root k0sworker.service
EXPECT_SYSTEMD_CGROUP=1 run_case k0s k0s "$CTD2" 2.2.9 \
	"k0s: drop-in in containerd.d (k0s imports it)" \
	"f etc/k0s/containerd.d/kata-deploy.toml" ""

# microk8s (containerd 1.6 in microk8s 1.28): in-place edit of the template, placeholders kept.
CASE=microk8s; microk8s_root
run_case microk8s microk8s "$CTD1" 1.6.20 \
	"containerd 1.6 replaces whole plugin tables from imports: in-place edit of /$MK8S/containerd-template.toml" \
	"f $MK8S/containerd-template.toml" "snap.microk8s.daemon-containerd.service microk8s"
check "microk8s: the template's placeholders survive the edit" \
	grep -q 'snapshotter = "${SNAPSHOTTER}"' "$T/microk8s.installed/$MK8S/containerd-template.toml"

# rke2 renders config.toml from the template at its restart, so the next install whose runtime
# config changes (here: fewer shims) finds our handlers in the rendered file. rke2 renders
# base + the new template, which containerd accepts; kata-deploy's own loader check must too
# (it drops the old template's tables from the rendered file before appending the new ones).
upgrade_after_render() {
	local args=(--payload "$P" --distribution rke2 --runtime-version 1.6.20 --runtime-binary "$CTD1" --restart none)
	"$KD" install --root "$R" "${args[@]}" >"$T/rerender.out1" 2>&1 || return 1
	start_distro rke2 "$R" "$T/rerender.view1" # rke2 restarts: config.toml = base + our tables
	cp "$T/rerender.view1/$RKE2/config.toml" "$R/$RKE2/config.toml"
	"$KD" install --root "$R" "${args[@]}" --shims qemu >"$T/rerender.out2" 2>&1 || return 1
	cp "$T/rerender.base" "$R/$RKE2/config.toml" # and renders base + the new template
	start_distro rke2 "$R" "$T/rerender.view2"
	dump "$CTD1" "$T/rerender.view2" "$RKE2/config.toml" >"$T/rerender.dump" 2>&1 &&
		grep -q 'runtimes.kata-qemu]' "$T/rerender.dump" && ! grep -q 'runtimes.kata-clh]' "$T/rerender.dump"
}
CASE=rke2-rerender; rke2_root usr/local/lib/systemd/system rke2-server.service "$RKE2_V2"
cp "$R/$RKE2/config.toml" "$T/rerender.base"
check "rke2 1.x: an option change after rke2 rendered our template is accepted and renders right" upgrade_after_render

# ---- bad inputs: a clear error naming the file (and line), nothing written -----------------

bad_case() { # bad_case DESC WANT ARGS...
	local desc=$1 want=$2
	shift 2
	snapshot "$R" >"$T/bad.before"
	expect_fail "$desc" "$want" "$KD" install --root "$R" --payload "$P" "$@"
	check "$desc: nothing written" diff -q "$T/bad.before" <(snapshot "$R")
}
CASE=bad-rke2; rke2_root usr/local/lib/systemd/system rke2-server.service "$(printf '%s' "$RKE2_V3" | sed '/^imports = /d')"
printf '{{ template "base" . }}\n[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]\n  cgroup_writable = true\n' >"$R/$RKE2/config-v3.toml.tmpl"
bad_case "rke2 2.x, admin template without the drop-in import: refused with the line to add" \
	"add 'imports = [\"/$RKE2/config-v3.toml.d/*.toml\"]' to the template and restart rke2-server" \
	--distribution rke2 --runtime-version 2.2.9 --runtime-binary "$CTD2"
bad_case "rke2 root declared as k3s: refused, names the right distribution" \
	"the host runs rke2-server, but the distribution was declared as 'k3s'; use --distribution rke2" \
	--distribution k3s --runtime-version 2.2.9
CASE=bad-rke2-unrendered; rke2_root usr/local/lib/systemd/system rke2-server.service ""
rm "$R/$RKE2/config.toml"
bad_case "rke2 that never started: refused, asks to start it once" \
	"the rendered /$RKE2/config.toml is missing; start rke2-server once" --distribution rke2
CASE=bad-k0s; k0s_root k0scontroller.service
printf '[plugins."io.containerd.cri.v1.images".pinned_images\n  sandbox = "x"\n' >>"$R/etc/k0s/containerd.toml"
bad_case "k0s controller, containerd.toml not TOML: refused with file:line" \
	"/etc/k0s/containerd.toml:$(grep -c '' "$R/etc/k0s/containerd.toml" | awk '{print $1 - 1}'):" \
	--distribution k0s --runtime-version 2.2.9 --runtime-binary "$CTD2"
CASE=bad-microk8s; microk8s_root
sed -i 's/^  sandbox_image = .*/  sandbox_image = registry.k8s.io\/pause:3.7/' "$R/$MK8S/containerd-template.toml"
bad_case "microk8s template with an unquoted string: refused with file:line" \
	"/$MK8S/containerd-template.toml:$(grep -n '^  sandbox_image' "$R/$MK8S/containerd-template.toml" | cut -d: -f1):" \
	--distribution microk8s --runtime-version 1.6.20 --runtime-binary "$CTD1"
finish
