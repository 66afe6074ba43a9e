#!/usr/bin/env bash
# The CLI as an operator meets it (issue 16): status shows a node that is not done (a failed
# restart) with its exit code, usage errors exit 2, --output json prints the error object,
# unauthenticated http:// payloads are refused, check follows --prefix and the installed shims,
# --help and --version of every program, errors that name the fix instead of internals.
source "$(dirname "$0")/../lib.sh"
cd "$ROOTDIR"
KB=$KD_BUILD/kata-build
KA=$KD_BUILD/kata-deploy-agent

P=$T/payload.tar.zst
"$KD" payload pack artifacts/demo/tree --spec artifacts/demo/payload.yaml -o "$P" >/dev/null
SHA=$(sha256sum <"$P" | cut -c1-64)

rc_of() { local rc=0; "$@" >/dev/null 2>&1 || rc=$?; echo $rc; }

# 1. A restart that fails leaves the node not done, and status says so.
R=$T/root
make_host_root "$R"
rc=0
"$KD" install --root "$R" --payload "$P" --shims qemu --runtime-version 1.6 --restart "command:false" \
	>"$T/inst.out" 2>&1 || rc=$?
check "install with a failing restart fails" test "$rc" -eq 1
check "state.json keeps restart_pending" grep -q '"restart_pending": *true' "$R/var/lib/kata-deploy/state.json"
rc=0; "$KD" status --root "$R" >"$T/st.txt" 2>&1 || rc=$?
check "status exits 4 while a restart is pending" test "$rc" -eq 4
check "status text: restart pending" grep -q '^restart: *PENDING' "$T/st.txt"
check "status text: NOT DONE" grep -q '^state: *NOT DONE: a runtime restart is pending' "$T/st.txt"
check "status text: handlers written" grep -q '^handlers: .*kata-qemu' "$T/st.txt"
check "status text: config files changed" grep -q '^configs: .*etc/containerd/config.toml' "$T/st.txt"
check "status text: the restart mode" grep -q '^runtime: .*restart command:false' "$T/st.txt"
rc=0; "$KD" status --root "$R" --output json >"$T/st.json" 2>/dev/null || rc=$?
check "status json exits 4 too" test "$rc" -eq 4
check "status json: restart_pending, done, handlers, config files" python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))
assert j["restart_pending"] is True and j["done"] is False, j
assert "kata-qemu" in j["handlers"], j["handlers"]
assert "etc/containerd/config.toml" in j["config_files"], j["config_files"]
assert j["runtime"]["restart"] == "command:false", j["runtime"]
' "$T/st.json"
# The next run retries the restart; once it works the node is done.
"$KD" install --root "$R" --payload "$P" --shims qemu --runtime-version 1.6 --restart "command:true" >/dev/null 2>&1
rc=0; "$KD" status --root "$R" >"$T/st2.txt" 2>&1 || rc=$?
check "after a restart that works: status exits 0" test "$rc" -eq 0
check "after a restart that works: restart done" grep -q '^restart: *done' "$T/st2.txt"
check "nothing installed: status exits 0" test "$(rc_of "$KD" status --root "$T")" -eq 0

# 2. Usage errors exit 2, named once.
for a in "--restart sytemd" "--runtime docker" "--distribution k9s" "--sha256 abc" "--default-shim clh"; do
	# shellcheck disable=SC2086
	check "install $a: usage error (2)" test "$(rc_of "$KD" install --root "$R" --payload "$P" $a)" -eq 2
done
expect_fail "--sha256 abc: says 64 hex digits" "64 hex digits" "$KD" install --root "$R" --payload "$P" --sha256 abc
expect_fail "--restart sytemd: names the choices" "use systemd, none or command:CMD" "$KD" install --root "$R" --payload "$P" --restart sytemd
expect_fail "--runtime docker: names the choices" "containerd|crio|auto|none" "$KD" install --root "$R" --payload "$P" --runtime docker
expect_fail "--default-shim on the host: says it is the agent's" "only the Kubernetes agent" "$KD" install --root "$R" --payload "$P" --default-shim clh
check "uninstall --restart sytemd: usage error (2)" test "$(rc_of "$KD" uninstall --root "$R" --restart sytemd)" -eq 2
"$KD" status --root "$R" --shims qemu >"$T/shims.out" 2>&1 || true
check "status --shims: one error line (+ the hint)" test "$(grep -vc '^Try ' "$T/shims.out")" -eq 1
check "status --shims: names the option" grep -q "'--shims'" "$T/shims.out"

# 3. --output json prints the error object on stdout.
rc=0
"$KD" install --root "$T/nonexistent" --payload "$P" --output json >"$T/err.json" 2>/dev/null || rc=$?
check "install --output json failing: exit 1" test "$rc" -eq 1
check "install --output json failing: the error object on stdout" python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))
assert j["ok"] is False and j["exit"] == 1 and "nonexistent" in j["error"], j
' "$T/err.json"

# 4. A plain http:// payload is refused unless something authenticates it.
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
(cd "$T" && exec python3 -m http.server --bind 127.0.0.1 "$PORT" >/dev/null 2>&1) &
HTTPD=$!
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$PORT/" >/dev/null && break; sleep 0.1; done
R3=$T/root3; make_host_root "$R3"; snapshot "$R3" >"$T/b3"
check "unauthenticated http:// payload: usage error (2)" \
	test "$(rc_of "$KD" install --root "$R3" --payload "http://127.0.0.1:$PORT/payload.tar.zst")" -eq 2
expect_fail "unauthenticated http:// payload: says why and how" "--insecure" \
	"$KD" install --root "$R3" --payload "http://127.0.0.1:$PORT/payload.tar.zst"
snapshot "$R3" >"$T/a3"
check "refused http:// payload: root untouched" cmp -s "$T/b3" "$T/a3"
"$KD" install --root "$R3" --payload "http://127.0.0.1:$PORT/payload.tar.zst" --insecure --runtime none >"$T/insecure.out" 2>&1
check "--insecure installs, with a loud warning" grep -q "UNAUTHENTICATED PAYLOAD" "$T/insecure.out"
"$KD" uninstall --root "$R3" >/dev/null 2>&1
check "http:// pinned by --sha256 installs" "$KD" install --root "$R3" --payload "http://127.0.0.1:$PORT/payload.tar.zst" --sha256 "$SHA" --runtime none
"$KD" install --root "$R3" --payload "http://127.0.0.1:$PORT/payload.tar.zst" --sha256 "$SHA" --runtime none >/dev/null 2>"$T/dl.err"
kill $HTTPD; wait $HTTPD 2>/dev/null || true

# 5. check: the common options, the prefix and the installed shims.
R5=$T/root5; make_host_root "$R5"
"$KD" install --root "$R5" --prefix /usr/local/kata --payload "$P" --shims qemu --runtime none >/dev/null 2>&1
rc=0; "$KD" check --root "$R5" --prefix /usr/local/kata --log-level warning --output json >"$T/check.json" 2>"$T/check.err" || rc=$?
check "check accepts --prefix and --log-level" test "$rc" -le 1
check "check defaults to the installed shims (qemu only)" python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))
names = [s["name"] for s in j["shims"]]
assert names == ["qemu"], names
' "$T/check.json"
check "check after install --prefix does not say 'payload not installed'" \
	bash -c "! grep -q 'payload not installed' '$T/check.json'"

# 7. A containerd whose CRI plugin is disabled (Docker's containerd.io default): a warning.
R7=$T/root7; mkdir -p "$R7/etc/containerd"
printf 'version = 2\ndisabled_plugins = ["cri"]\n' >"$R7/etc/containerd/config.toml"
"$KD" plan --root "$R7" --payload "$P" --shims qemu --runtime-version 1.6 >/dev/null 2>"$T/cri.err" || true
check "CRI plugin disabled: install/plan warn" grep -q 'disables containerd.s CRI plugin.*no kubelet' "$T/cri.err"

# 8. Progress: in a pipe, a line every few seconds with bytes and rate; --quiet silences.
head -c 60000 /dev/urandom >"$T/slow.bin"
SPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 - "$SPORT" "$T/slow.bin" <<'PY' &
import http.server, sys, time
data = open(sys.argv[2], "rb").read()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        for i in range(0, len(data), 5000):  # 60 kB in ~7 s
            self.wfile.write(data[i:i + 5000]); self.wfile.flush(); time.sleep(0.6)
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
SLOW=$!
for _ in $(seq 50); do curl -fs -o /dev/null -r 0-0 "http://127.0.0.1:$SPORT/" 2>/dev/null && break; sleep 0.1; done
R8=$T/root8; make_host_root "$R8"
"$KD" install --root "$R8" --payload "http://127.0.0.1:$SPORT/slow.bin" --insecure --runtime none 2>&1 | cat >"$T/progress.out" || true
check "download progress in a pipe: a line with bytes and rate" \
	grep -qE '^GET http://127.0.0.1:[0-9]+/slow.bin: [0-9.]+ [KMG]?i?B / 58.6 KiB \( *[0-9]+%\), [0-9.]+ [KMG]?i?B/s$' "$T/progress.out"
"$KD" install --root "$R8" --payload "http://127.0.0.1:$SPORT/slow.bin" --insecure --runtime none --quiet 2>&1 | cat >"$T/quiet.out" || true
check "--quiet: no progress, no info lines" bash -c "! grep -qE '^GET |: info: ' '$T/quiet.out'"
kill $SLOW; wait $SLOW 2>/dev/null || true

# 6. --help, --version, clear errors.
for v in install plan uninstall rollback status recover check; do
	out=$("$KD" $v --help 2>/dev/null) && rc=0 || rc=$?
	check "kata-deploy $v --help: stdout, exit 0, its own usage" \
		bash -c "[ $rc -eq 0 ] && grep -q '^Usage: kata-deploy $v' <<<\"\$1\"" _ "$out"
done
for v in fetch component payload image push ci verify; do
	out=$("$KB" $v --help 2>/dev/null) && rc=0 || rc=$?
	check "kata-build $v --help: stdout, exit 0, its own usage" \
		bash -c "[ $rc -eq 0 ] && grep -q '^Usage: kata-build $v' <<<\"\$1\"" _ "$out"
done
check "kata-build --version" grep -q '^kata-build [0-9]' <<<"$("$KB" --version)"
# kata-deploy install on a terminal: a progress line (bytes, %, rate) redrawn while it extracts;
# in a pipe nothing for an install shorter than 5 s (issue 16). 128 MiB that do not compress.
mkdir -p "$T/big/opt/kata"
cp -a artifacts/demo/tree/opt/kata/. "$T/big/opt/kata/"
rm "$T/big/opt/kata/bin/qemu-system-x86_64"
head -c 134217728 /dev/urandom >"$T/big/opt/kata/bin/qemu-system-x86_64"
chmod 755 "$T/big/opt/kata/bin/qemu-system-x86_64"
"$KD" payload pack "$T/big" --spec artifacts/demo/payload.yaml -o "$T/big.tar.zst" >/dev/null
RB=$T/rootbig; make_host_root "$RB"
script -qec "'$KD' install --root '$RB' --payload '$T/big.tar.zst' --runtime none --shims qemu" /dev/null >"$T/big.tty" 2>&1 || :
check "install on a terminal: the extraction's progress line (bytes / total, %, rate)" \
	grep -qE $'\rinstalling: [0-9.]+ [KMG]?i?B / 1[0-9.]+ MiB \\( *[0-9]+%\\), [0-9.]+ [KMG]?i?B/s' "$T/big.tty"
check "install on a terminal: the progress line is cleared when extraction ends" grep -q $'\r\033\\[K' "$T/big.tty"
# kata-build says which step runs and where its log is; on a terminal a status line with the
# elapsed time and the log's size, redrawn every second, while the step runs (issue 16).
A=$T/kb-art
mkdir -p "$A/recipes"
printf 'version: "1"\nsource_date_epoch: 1700000000\nvars: {}\n' >"$A/versions.yaml"
printf 'shims:\n  qemu: [slow]\n' >"$A/shims.yaml"
cat >"$A/recipes/slow.yaml" <<-'RECIPE'
	name: slow
	version: "1"
	steps:
	  - |
	    echo first; sleep 3; mkdir -p "$KB_OUT/opt/kata" && echo x >"$KB_OUT/opt/kata/x"
	  - |
	    echo second
	outputs: [opt/kata/x]
	RECIPE
"$KB" --artifacts "$A" --cache "$T/kbc" --out "$T/kbo" component slow >"$T/kb.out" 2>"$T/kb.err" || cat "$T/kb.err"
check "kata-build: names each step and its log" \
	bash -c "grep -q 'slow: step 1/2 (log $T/kbc/work/slow/build.log)' '$T/kb.err' && grep -q 'slow: step 2/2 (log' '$T/kb.err'"
script -qec "'$KB' --artifacts '$A' --cache '$T/kbc' --out '$T/kbo' --force component slow" /dev/null >"$T/kb.tty" 2>&1 || :
check "kata-build on a terminal: the running step's status line is redrawn (elapsed, log size)" \
	bash -c "[ \$(grep -o \$'\\rslow: step 1/2, [0-9]* s, log [^ ]*build.log ([0-9.]* [KM]*i*B)' '$T/kb.tty' | wc -l) -ge 2 ]"
sed -i 's/echo second/echo second; exit 3/' "$A/recipes/slow.yaml"
expect_fail "kata-build: a failed step is named with its log" \
	"step 2/2 exited with status 3; log $T/kbc/work/slow/build.log ends with:" \
	"$KB" --artifacts "$A" --cache "$T/kbc" --out "$T/kbo" component slow
check "kata-deploy --version" grep -q '^kata-deploy [0-9]' <<<"$("$KD" --version)"
check "kata-deploy-agent --version" grep -q '^kata-deploy-agent [0-9]' <<<"$("$KA" --version 2>&1)"
mkdir -p "$T/x/opt/kata/bin"
expect_fail "payload pack x/opt/kata: DIR must hold opt/kata" "does not hold opt/kata/" \
	"$KD" payload pack "$T/x/opt/kata" -o "$T/bad.tar.zst"
if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null; then
	R6=$T/root6; make_host_root "$R6"; chmod 755 "$T"
	expect_fail "non-root: says it needs root" "run it as root" \
		setpriv --reuid=65534 --regid=65534 --clear-groups "$KD" install --root "$R6" --payload "$P" --runtime none
fi
# 9. make install puts the man pages and the bash completion in place; the completion loads
# and completes the verbs.
D=$T/dest
# O as the build was made (relative to the checkout): an absolute spelling of the same directory
# would rewrite its .d files with other target names, and later builds would miss header changes.
make -s -C "$ROOTDIR" O="$(realpath --relative-to="$ROOTDIR" "$KD_BUILD")" install DESTDIR="$D" \
	PREFIX=/usr >"$T/make-install.out" 2>&1 ||
	not_ok "make install DESTDIR: $(tail -3 "$T/make-install.out")"
for m in man1/kata-build.1 man8/kata-deploy.8 man8/kata-deploy-agent.8; do
	check "make install: $m" test -s "$D/usr/share/man/$m"
	check "$m renders without warnings" bash -c "[ -z \"\$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l '$D/usr/share/man/$m' 2>&1 >/dev/null)\" ]"
done
check "kata-deploy(8) documents exit status 4" bash -c "LC_ALL=C.UTF-8 MANWIDTH=80 man -l '$D/usr/share/man/man8/kata-deploy.8' 2>/dev/null | grep -q 'the node is not done'"
C=$D/usr/share/bash-completion/completions
for p in kata-deploy kata-build kata-deploy-agent; do
	check "make install: completion for $p" test -e "$C/$p"
done
complete_words() { # complete_words FILE FUNCTION WORD... -> the candidates for the last word
	local f=$1 fn=$2; shift 2
	bash -c 'source "$1"; fn=$2; shift 2; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); $fn; echo "${COMPREPLY[*]}"' _ "$f" "$fn" "$@"
}
check "completion: kata-deploy in<TAB> -> install" test "$(complete_words "$C/kata-deploy" _kata_deploy kata-deploy in)" = install
check "completion: kata-deploy <TAB> lists every verb" \
	grep -q "install plan uninstall rollback status recover check payload" <<<"$(complete_words "$C/kata-deploy" _kata_deploy kata-deploy '')"
check "completion: install --restart <TAB>" test "$(complete_words "$C/kata-deploy" _kata_deploy kata-deploy install --restart '')" = "systemd none command:"
check "completion: kata-build co<TAB> -> component" test "$(complete_words "$C/kata-build" _kata_build kata-build co)" = component
check "completion: kata-deploy-agent cl<TAB> -> cleanup" test "$(complete_words "$C/kata-deploy-agent" _kata_deploy_agent kata-deploy-agent cl)" = cleanup
finish
