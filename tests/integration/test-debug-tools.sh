#!/usr/bin/env bash
# Debug tools (upstream's DEBUG_TOOL_COMPONENTS): a payload component named kata-ctl, listed by
# no shim, is installed with --debug (the agent's DEBUG=true) and only then; a payload without it
# installs with a warning, as upstream's best effort. Toggling debug changes the version (the
# component list is part of its id) and the no-op re-install still holds when nothing changed.
# The kata-ctl here is a stand-in script, so that this runs in every CI in seconds: what is
# tested is which component the engine installs. Upstream's real kata-ctl is built by
# artifacts/recipes/kata-ctl.yaml (shims.yaml's debug tool, in the default payload) and
# installed and run by test-kata.sh (part 6).
source "$(dirname "$0")/../lib.sh"
cd "$ROOTDIR"

cp -a artifacts/demo/tree "$T/tree"
printf '#!/bin/sh\necho "kata-ctl (test stand-in) $*"\n' >"$T/tree/opt/kata/bin/kata-ctl"
chmod 0755 "$T/tree/opt/kata/bin/kata-ctl"
{
	sed '/^shims:/,$d' artifacts/demo/payload.yaml
	printf '  - name: kata-ctl\n    version: "4.1.0"\n    paths: ["bin/kata-ctl"]\n'
	sed -n '/^shims:/,$p' artifacts/demo/payload.yaml
} >"$T/spec.yaml"
P1=$T/with-ctl.tar.zst P0=$T/demo.tar.zst
"$KD" payload pack "$T/tree" --spec "$T/spec.yaml" -o "$P1" >/dev/null || { not_ok "pack"; finish; exit 1; }
"$KD" payload pack artifacts/demo/tree --spec artifacts/demo/payload.yaml -o "$P0" >/dev/null
check "the kata-ctl component is in no shim's list" bash -c "! grep -q 'kata-ctl' <(sed -n '/^shims:/,\$p' '$T/spec.yaml')"

R=$T/root
mkdir -p "$R"
snapshot "$R" >"$T/before"
CTL=$R/opt/kata/bin/kata-ctl
kdi() { "$KD" install --root "$R" --runtime none "$@" >"$T/out" 2>&1 || { not_ok "install $*: $(tail -2 "$T/out")"; return 1; }; }

kdi --payload "$P1"
check "without debug: kata-ctl is not installed" test ! -e "$CTL"
kdi --payload "$P1" --debug
check "with debug: kata-ctl is installed, the payload's bytes" cmp -s "$T/tree/opt/kata/bin/kata-ctl" "$CTL"
check "… and runs" bash -c "'$CTL' version | grep -q 'kata-ctl (test stand-in) version'"
check "… in the version's component list" bash -c "'$KD' status --root '$R' --output json | grep -q '\"kata-ctl\"'"
kdi --payload "$P1" --debug
check "debug again: a no-op re-install" grep -q 'nothing to do' "$T/out"
kdi --payload "$P1"
check "debug off: kata-ctl removed" test ! -e "$CTL"
kdi --payload "$P1"
check "debug off again: a no-op re-install" grep -q 'nothing to do' "$T/out"
kdi --payload "$P0" --debug
check "a payload without kata-ctl, with debug: installed, with a warning that says so" \
	grep -q 'the payload has no kata-ctl component: kata-ctl is not installed' "$T/out"
check "… and no kata-ctl" test ! -e "$CTL"
kdi --payload "$P0" --debug
check "… and its re-install writes nothing" grep -q 'nothing to do' "$T/out"
# plan (on an empty root) counts the files of the version it would create: one more with debug.
mkdir -p "$T/empty"
nfiles() { "$KD" plan --root "$T/empty" --runtime none --payload "$P1" "$@" 2>&1 | sed -n 's/.*create .*(\([0-9]*\) files,.*/\1/p'; }
n0=$(nfiles)
n1=$(nfiles --debug)
check "plan: the version with debug has kata-ctl too ($n0 files without, $n1 with)" test -n "$n0" -a "$n1" = "$((n0 + 1))"
kdi --payload "$P1" --debug
"$KD" uninstall --root "$R" >/dev/null 2>&1 || not_ok "uninstall"
check "uninstall restores the root byte for byte" diff -q "$T/before" <(snapshot "$R")
finish
