#!/usr/bin/env bash
# kata-deploy plan: writes nothing (tree, bytes, mtimes and ctimes identical), takes only a shared
# lock, and its diff is exactly what install then does: the plan's diff applied with git apply (strict: no fuzz) to
# a copy of the root gives the same runtime config files as the install. Then: no-op plan after
# install, an option change (--debug) shown as a diff of Kata drop-ins, containerd 2.x drop-in +
# imports, CRI-O drop-in, refusals (journal left by a killed run, bad config, exclusive lock).
source "$(dirname "$0")/../lib.sh"
cd "$ROOTDIR"

P=$T/p.tar.zst
"$KD" payload pack artifacts/demo/tree --spec artifacts/demo/payload.yaml -o "$P" >/dev/null
CTD1=/usr/bin/containerd

stamp() { (cd "$1" && find . -printf '%p %y %m %s %T@ %C@ %l\n' | LC_ALL=C sort); }

# plan_case NAME ARGS...: plan on $R writes nothing; git apply (strict: no fuzz) of its diff = what install writes.
plan_case() {
	local name=$1
	shift
	snapshot "$R" >"$T/$name.snap0"
	stamp "$R" >"$T/$name.stamp0"
	if ! "$KD" plan --root "$R" --payload "$P" "$@" >"$T/$name.plan" 2>"$T/$name.err"; then
		not_ok "$name: plan failed: $(tail -3 "$T/$name.err")"
		return
	fi
	if diff "$T/$name.snap0" <(snapshot "$R") >/dev/null && diff "$T/$name.stamp0" <(stamp "$R") >/dev/null; then
		ok "$name: plan wrote nothing (bytes, modes, mtimes, ctimes identical)"
	else
		not_ok "$name: plan changed the root"
	fi
	rm -rf "$T/$name.copy"
	cp -a "$R" "$T/$name.copy"
	sed -n '/^--- /,/^[a-z]*: /p' "$T/$name.plan" | grep -v '^[a-z]*: ' >"$T/$name.diff" || true
	if ! (cd "$T/$name.copy" && git apply -p1 --whitespace=nowarn "$T/$name.diff") >"$T/$name.patch" 2>&1; then
		not_ok "$name: the plan's diff does not apply: $(head -3 "$T/$name.patch")"
		return
	fi
	"$KD" install --root "$R" --payload "$P" "$@" >"$T/$name.inst" 2>&1 || { not_ok "$name: install failed: $(tail -3 "$T/$name.inst")"; return; }
	local bad=0 f
	for f in $(grep '^+++ b/' "$T/$name.diff" | cut -c7-); do
		cmp -s "$R/$f" "$T/$name.copy/$f" || { not_ok "$name: /$f differs from the plan"; bad=1; }
	done
	local n
	n=$(grep -c '^+++ ' "$T/$name.diff" || true)
	[ "$bad" = 1 ] || ok "$name: install wrote exactly the $n files the plan's diff shows"
}

# containerd 1.6, in-place edit of the main file.
R=$T/c16; make_host_root "$R"
plan_case c16 --shims qemu --runtime-version 1.6.20 --runtime-binary "$CTD1"
check "c16: unified diff headers of the main config" \
	grep -qx -- '--- a/etc/containerd/config.toml' "$T/c16.plan"
check "c16: +++ header" grep -qx -- '+++ b/etc/containerd/config.toml' "$T/c16.plan"
check "c16: the Kata config copy is a new file" \
	grep -qx -- '+++ b/opt/kata/runtimes/qemu/configuration-qemu.toml' "$T/c16.plan"
check "c16: payload summary names the version dir and the file count" \
	grep -Eq '^payload: 3.99.0-demo: create /opt/kata/.versions/[0-9a-f]{16}/ \([0-9]+ files' "$T/c16.plan"
check "c16: the links that switch" grep -q '^payload: create link /opt/kata/current -> .versions/' "$T/c16.plan"
check "c16: the restart" grep -q '^restart: none (--restart none' "$T/c16.plan"
check "c16: handler shown in the diff" \
	grep -qxF '+[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.kata-qemu]' "$T/c16.plan"

# After the install: nothing to do, and plan says so.
"$KD" plan --root "$R" --payload "$P" --shims qemu --runtime-version 1.6.20 >"$T/noop.plan" 2>/dev/null
check "no-op: payload already installed" grep -q 'is already installed: no change' "$T/noop.plan"
check "no-op: no config byte would change" grep -q '^restart: none (no runtime config byte would change)' "$T/noop.plan"
check "no-op: no diff" bash -c "! grep -q '^--- ' '$T/noop.plan'"
check "no-op: summary" grep -qx 'plan: install would change nothing' "$T/noop.plan"

# An option change: only Kata's drop-in and no payload change; restart named (command mode).
plan_case debug --shims qemu --runtime-version 1.6.20 --debug --restart 'command:true'
check "debug: the Kata debug drop-in is created" \
	grep -qx -- '+++ b/opt/kata/runtimes/qemu-debug/config.d/20-debug.toml' "$T/debug.plan"
check "debug: the restart it would run" grep -qx "restart: run 'true' (KD_UNIT=containerd.service)" "$T/debug.plan"
check "debug: containerd gets [debug] level" grep -qx '+  level = "debug"' "$T/debug.plan"

# An upgrade to two shims: hard links from the current version are counted.
plan_case twoshims --runtime-version 1.6.20
check "twoshims: files reused by hard link are counted" \
	grep -Eq 'hard-linked from the current version' "$T/twoshims.plan"
check "twoshims: install without --shims after a qemu-only install adds clh (every shim)" \
	bash -c "'$KD' status --root '$R' | grep -q '^shims: *clh, qemu'"
check "twoshims: current switches" grep -Eq '^payload: switch /opt/kata/current: .versions/[0-9a-f]{16} -> .versions/' "$T/twoshims.plan"
"$KD" uninstall --root "$R" >/dev/null 2>&1

# containerd 2.x: our drop-in plus an imports entry in the main file.
R=$T/c2; mkdir -p "$R/etc/containerd"
printf 'version = 3\n[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]\n  SystemdCgroup = true\n' >"$R/etc/containerd/config.toml"
plan_case c2 --shims qemu --runtime-version 2.2.9
check "c2: the drop-in is a new file" grep -qx -- '+++ b/etc/containerd/conf.d/kata-deploy.toml' "$T/c2.plan"
check "c2: imports entry added to the main file" grep -qF '+imports = ["/etc/containerd/conf.d/kata-deploy.toml"]' "$T/c2.plan"

# CRI-O: the whole-file drop-in.
R=$T/crio; mkdir -p "$R/etc/crio/crio.conf.d"; printf '[crio.runtime]\n' >"$R/etc/crio/crio.conf"
"$KD" plan --root "$R" --payload "$P" --shims qemu --runtime crio --runtime-version 1.34.0 \
	--restart systemd >"$T/crio-hup.plan" 2>/dev/null
check "crio >= 1.26: the restart is a SIGHUP reload" \
	grep -qx 'restart: SIGHUP to CRI-O 1.34 (reloads runtime handlers)' "$T/crio-hup.plan"
plan_case crio --shims qemu --runtime crio --runtime-version 1.34.0
check "crio: the drop-in" grep -qx -- '+++ b/etc/crio/crio.conf.d/99-kata-deploy' "$T/crio.plan"

# Refusals, each writing nothing.
R=$T/bad; make_host_root "$R"; printf 'version = 2\n[plugins\n' >"$R/etc/containerd/config.toml"
snapshot "$R" >"$T/bad.snap"
expect_fail "bad main config: file:line" "/etc/containerd/config.toml:2:" \
	"$KD" plan --root "$R" --payload "$P" --runtime-version 1.6
check "bad main config: nothing written" diff -q "$T/bad.snap" <(snapshot "$R")

R=$T/killed; make_host_root "$R"
KD_FAULT_AT=3 "$KD" install --root "$R" --payload "$P" --runtime-version 1.6 >/dev/null 2>&1 || true
if [ -e "$R/var/lib/kata-deploy/journal" ]; then
	snapshot "$R" >"$T/killed.snap"
	expect_fail "a journal left by a killed run: plan asks for recover" "kata-deploy recover" \
		"$KD" plan --root "$R" --payload "$P" --runtime-version 1.6
	check "killed run: plan did not recover (journal still there)" diff -q "$T/killed.snap" <(snapshot "$R")
else
	not_ok "KD_FAULT_AT=3 left no journal to test with"
fi

# Locks: plan runs beside another reader, not beside a writer.
R=$T/lock; make_host_root "$R"
flock -s "$R" sleep 3 &
lp=$!
wait_locked "$R"
check "plan runs while another shared lock is held" \
	"$KD" plan --root "$R" --payload "$P" --runtime-version 1.6 --lock-timeout -1
wait $lp
flock -x "$R" sleep 3 &
lp=$!
wait_locked "$R"
rc=0; "$KD" plan --root "$R" --payload "$P" --runtime-version 1.6 --lock-timeout -1 >/dev/null 2>&1 || rc=$?
check "plan waits for / refuses an exclusive holder (exit 3)" test "$rc" -eq 3
wait $lp
finish
