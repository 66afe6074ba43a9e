#!/usr/bin/env bash
# Hostile input outside the payload reader (issue 14): FIFOs where a file is expected, prefixes
# and state directories that overlap or sit on kernel file systems, crafted journal records, a
# removed link that a plain re-install must repair. Every case: a clear error (or the repair),
# returned promptly, and nothing of the root lost.
source "$(dirname "$0")/../lib.sh"
cd "$ROOTDIR"

P=$T/p.tar.zst
"$KD" payload pack artifacts/demo/tree --spec artifacts/demo/payload.yaml -o "$P" >/dev/null

fresh() { # fresh NAME: a demo host root in $R
	R=$T/$1
	rm -rf "$R"
	make_host_root "$R"
}

# expect_fail with a time bound: a FIFO must never make a run wait (it would hold the host lock).
quick_fail() { # quick_fail DESC TEXT CMD...
	local d=$1 want=$2 out rc=0
	shift 2
	out=$(timeout 20 "$@" 2>&1) || rc=$?
	if [ "$rc" = 124 ]; then
		not_ok "$d (hangs: killed after 20 s)"
	elif [ "$rc" -ne 0 ] && grep -qF -- "$want" <<<"$out"; then
		ok "$d"
	else
		not_ok "$d (rc=$rc, wanted '$want', got: $(head -c 400 <<<"$out"))"
	fi
}

# ---- item 1: a chain of links that leaves the prefix ----------------------------------------
# The issue's payload: d1/…/d6/s -> ../../../../../.. and d1/…/d6/x -> s/../…/etc/shadow, each
# inside when read alone; kata-containers.img -> x reached the host's /etc/shadow.
python3 tests/tools/mkhostile.py --tree artifacts/demo/tree chain-escape "$T/chain.tar.zst"
fresh chain
snapshot "$R" >"$T/chain.before"
chain_msg="symlink 'd1/d2/d3/d4/d5/d6/x' -> 's/../../../../../../../etc/shadow' escapes opt/kata/ through the link 'd1/d2/d3/d4/d5/d6/s'"
expect_fail "a chain of links out of the prefix: install refuses it, naming both links" \
	"$chain_msg" "$KD" install --root "$R" --payload "$T/chain.tar.zst" --runtime-version 1.7
expect_fail "… plan refuses it the same way" \
	"$chain_msg" "$KD" plan --root "$R" --payload "$T/chain.tar.zst" --runtime-version 1.7
check "… and nothing was written to the root" diff -q "$T/chain.before" <(snapshot "$R")
check "… no link under the root resolves outside it" \
	bash -c "! find '$R' -type l -exec realpath -m {} + | grep -v '^$R/'"
# The same tree packed: refused by the packer (it reads its manifest back) before any payload.
mkdir -p "$T/chaintree" && tar -I zstd -xf "$T/chain.tar.zst" -C "$T/chaintree" opt
expect_fail "payload pack refuses the chain too" "escapes opt/kata/ through the link" \
	"$KD" payload pack "$T/chaintree" --version 1 --arch x86_64 -o "$T/chain-packed.tar.zst"

# ---- item 2: nothing installed may be writable by group or others ---------------------------
fresh writable
snapshot "$R" >"$T/writable.before"
for c in "writable-exec bin/w 0777 group and others" "writable-file share/w 0666 group and others" \
	"writable-dir wdir 0777 group and others" "group-writable-dir gdir 0775 its group"; do
	read -r case entry mode who <<<"$c"
	python3 tests/tools/mkhostile.py --tree artifacts/demo/tree "$case" "$T/$case.tar.zst"
	expect_fail "a $mode entry ($case) is refused by install, naming it" \
		"'$entry': mode $mode lets $who write it" \
		"$KD" install --root "$R" --payload "$T/$case.tar.zst" --runtime-version 1.7
	expect_fail "… and by plan" "'$entry': mode $mode lets $who write it" \
		"$KD" plan --root "$R" --payload "$T/$case.tar.zst" --runtime-version 1.7
done
check "refused writable entries wrote nothing" diff -q "$T/writable.before" <(snapshot "$R")

# ---- item 15: our reserved names ------------------------------------------------------------
# A top-level .#kd.* entry became <prefix>/.#kd.* (a link), which the next recover deleted as
# our debris.
fresh reserved
snapshot "$R" >"$T/reserved.before"
python3 tests/tools/mkhostile.py --tree artifacts/demo/tree reserved-name "$T/reserved.tar.zst"
expect_fail "a payload entry named .#kd.* is refused by install" \
	"'.#kd.staging-x': names starting with '.#kd.' are reserved for kata-deploy's temporary files" \
	"$KD" install --root "$R" --payload "$T/reserved.tar.zst" --runtime-version 1.7
expect_fail "… and by plan" "names starting with '.#kd.' are reserved" \
	"$KD" plan --root "$R" --payload "$T/reserved.tar.zst" --runtime-version 1.7
check "… nothing written" diff -q "$T/reserved.before" <(snapshot "$R")

# ---- item 14: plan and install validate the same way ---------------------------------------
# configuration-qemu.toml a link (to a file beside it): plan showed a plan (rc 0), install
# refused it, after the switch. Both now refuse it before anything, with the same message.
fresh cfglink
snapshot "$R" >"$T/cfglink.before"
python3 tests/tools/mkhostile.py --tree artifacts/demo/tree config-symlink "$T/cfglink.tar.zst"
cfg_msg="the configuration of shim 'qemu', opt/kata/share/defaults/kata-containers/configuration-qemu.toml is a symlink in the payload"
expect_fail "a shim configuration that is a symlink: plan refuses it" "$cfg_msg" \
	"$KD" plan --root "$R" --payload "$T/cfglink.tar.zst" --runtime-version 1.7
expect_fail "… install refuses it with the same message" "$cfg_msg" \
	"$KD" install --root "$R" --payload "$T/cfglink.tar.zst" --runtime-version 1.7
check "… before writing anything" diff -q "$T/cfglink.before" <(snapshot "$R")
check "… a shim that does not read it (clh): plan agrees with install" bash -c \
	"'$KD' plan --root '$R' --payload '$T/cfglink.tar.zst' --runtime-version 1.7 --shims clh >/dev/null 2>&1 &&
	 '$KD' install --root '$R' --payload '$T/cfglink.tar.zst' --runtime-version 1.7 --shims clh >/dev/null 2>&1"

# ---- item 13: an upgrade reuses only files proven equal -------------------------------------
# A file of the installed version edited in place (same size, same mode, same inode) was
# hard-linked into the new version, whose manifest says otherwise.
cp -a artifacts/demo/tree "$T/tree2"
echo "qemu 2" >"$T/tree2/opt/kata/bin/qemu-system-x86_64"
"$KD" payload pack "$T/tree2" --spec artifacts/demo/payload.yaml -o "$T/p2.tar.zst" >/dev/null
sha_of() { tar -I zstd -xOf "$1" kata-payload.json | python3 -c \
	"import json,sys; print([f['sha256'] for c in json.load(sys.stdin)['components'] for f in c['files'] if f['path']=='$2'][0])"; }
want=$(sha_of "$T/p2.tar.zst" bin/kata-runtime)
fresh tamper
"$KD" install --root "$R" --payload "$P" --runtime-version 1.7 >/dev/null 2>&1
f=$R/opt/kata/current/bin/kata-runtime
size=$(stat -c %s "$f")
python3 - "$f" <<'PY'
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
b[-2] ^= 0x20  # one byte flipped, the same size, written in place (same inode)
open(p, "r+b").write(b)
PY
check "(the tampered file kept its size)" test "$(stat -c %s "$f")" = "$size"
"$KD" install --root "$R" --payload "$T/p2.tar.zst" --runtime-version 1.7 >"$T/tamper.out" 2>&1 ||
	not_ok "upgrade over a tampered file failed: $(tail -2 "$T/tamper.out")"
check "upgrade: the new version's file has its manifest's sha256, not the tampered bytes" \
	test "$(sha256sum "$R/opt/kata/current/bin/kata-runtime" | cut -c1-64)" = "$want"
check "… and the install says a file of the installed version was changed in place, naming it" \
	grep -q "1 file(s) of the installed version .* no longer hash to their manifest's sha256 (changed in place; the first: /opt/kata/bin/kata-runtime)" "$T/tamper.out"
check "… the untouched files are still reused (hard-linked)" \
	grep -qE "installed .*: [0-9]+ files written, [1-9][0-9]* reused" "$T/tamper.out"
# Back to the first payload: its version dir is still there as the previous one; a file of it
# edited in place must not be taken back either.
prev=$(readlink "$R/opt/kata/current")
g=$(ls -d "$R"/opt/kata/.versions/*/ | grep -v "${prev##*/}" | head -1)share/defaults/kata-containers/configuration-clh.toml
sed -i 's/clh/CLH/' "$g"
"$KD" install --root "$R" --payload "$P" --runtime-version 1.7 >"$T/back.out" 2>&1 ||
	not_ok "reinstall of the previous payload failed: $(tail -2 "$T/back.out")"
check "re-installing the previous version: its tampered file is not reused" \
	test "$(sha256sum "$R/opt/kata/current/share/defaults/kata-containers/configuration-clh.toml" | cut -c1-64)" = \
	"$(sha256sum artifacts/demo/tree/opt/kata/share/defaults/kata-containers/configuration-clh.toml | cut -c1-64)"

# ---- item 11: a line an admin appends does not defeat uninstall -----------------------------
fresh appended
cp "$R/etc/containerd/config.toml" "$T/appended.orig"
snapshot "$R" >"$T/appended.before"
"$KD" install --root "$R" --payload "$P" --runtime-version 1.7 >/dev/null 2>&1
printf '# c\n' >>"$R/etc/containerd/config.toml"
out=$("$KD" uninstall --root "$R" 2>&1) && rc=0 || rc=$?
check "a line appended to config.toml: uninstall succeeds" test "$rc" = 0
check "… no Kata line is left in config.toml" bash -c "! grep -qi kata '$R/etc/containerd/config.toml'"
check "… the file is the original plus the admin's line" \
	cmp -s <(cat "$T/appended.orig"; printf '# c\n') "$R/etc/containerd/config.toml"
check "… the warning says which line was kept and why" \
	grep -qF "1 line(s) were added after what kata-deploy wrote since install ('# c'): removed kata-deploy's part, kept those lines" <<<"$out"
check "… and uninstall does not claim the root is as it was" \
	bash -c "grep -q 'could not be restored exactly' <<<\"\$1\" && ! grep -q 'the root is as it was' <<<\"\$1\"" _ "$out"
check "… the rest of the root is as before" \
	diff <(grep -v etc/containerd/config.toml "$T/appended.before") <(snapshot "$R" | grep -v etc/containerd/config.toml)
# A key added at the end lands inside our last table: removed with it, and quoted.
fresh appended-key
"$KD" install --root "$R" --payload "$P" --runtime-version 1.7 >/dev/null 2>&1
printf '  foo = 1\n' >>"$R/etc/containerd/config.toml"
out=$("$KD" uninstall --root "$R" 2>&1) && rc=0 || rc=$?
check "a key appended inside our last table: uninstall removes our tables (rc 0)" \
	bash -c "[ $rc = 0 ] && ! grep -qi 'kata\|foo' '$R/etc/containerd/config.toml'"
check "… and names the line it removed with them" grep -qF "(1 line(s) added: 'foo = 1')" <<<"$out"

# ---- clear errors: names are escaped ---------------------------------------------------------
python3 tests/tools/mkhostile.py newline-name "$T/nl.tar.zst"
fresh nlname
out=$("$KD" install --root "$R" --payload "$T/nl.tar.zst" 2>&1) || true
check "a name with a newline cannot print a line of its own" \
	bash -c "! grep -q '^kata-deploy: info: installed fine' <<<\"\$1\" && grep -qF '  | kata-deploy: info: installed fine\\x1b[2J' <<<\"\$1\"" _ "$out"
check "… nor reach the terminal as an escape sequence" bash -c "! grep -q \$'\\x1b' <<<\"\$1\"" _ "$out"

# ---- item 6: FIFOs ------------------------------------------------------------------------
fresh fifo-root
mkfifo "$T/fifo"
quick_fail "--payload naming a FIFO: refused at once" \
	"--payload $T/fifo: not a regular file (a FIFO)" \
	"$KD" install --root "$R" --payload "$T/fifo"
quick_fail "plan --payload naming a FIFO: refused at once" \
	"--payload $T/fifo: not a regular file (a FIFO)" \
	"$KD" plan --root "$R" --payload "$T/fifo"
"$KD" payload keygen "$T/key.pem" "$T/pub.pem" >/dev/null
quick_fail "--public-key naming a FIFO: refused at once" \
	"--public-key $T/fifo: not a regular file (a FIFO)" \
	"$KD" install --root "$R" --payload "$P" --public-key "$T/fifo"
quick_fail "--signature naming a FIFO: refused at once" \
	"--signature $T/fifo: not a regular file (a FIFO)" \
	"$KD" install --root "$R" --payload "$P" --public-key "$T/pub.pem" --signature "$T/fifo"
cp "$P" "$T/q.tar.zst" && mkfifo "$T/q.tar.zst.sig"
quick_fail "the default signature (payload + .sig) a FIFO: refused at once" \
	"(--payload + .sig) $T/q.tar.zst.sig: not a regular file (a FIFO)" \
	"$KD" install --root "$R" --payload "$T/q.tar.zst" --public-key "$T/pub.pem"
snapshot "$R" >"$T/fifo.before"
rm "$R/etc/containerd/config.toml" && mkfifo "$R/etc/containerd/config.toml"
quick_fail "config.toml a FIFO: install refuses it without waiting" "not a regular file (a FIFO)" \
	"$KD" install --root "$R" --payload "$P" --runtime-version 1.7
quick_fail "config.toml a FIFO: plan refuses it without waiting" "not a regular file (a FIFO)" \
	"$KD" plan --root "$R" --payload "$P" --runtime-version 1.7
check "config.toml a FIFO: install left no version, no state" \
	test ! -e "$R/opt/kata/.versions" -a ! -e "$R/var/lib/kata-deploy/state.json"
# A FIFO appearing after install: uninstall must not hang either.
fresh fifo-un
"$KD" install --root "$R" --payload "$P" --runtime-version 1.7 >/dev/null 2>&1
rm "$R/etc/containerd/config.toml" && mkfifo "$R/etc/containerd/config.toml"
quick_fail "config.toml replaced by a FIFO: uninstall says so without waiting" \
	"not a regular file (a FIFO)" "$KD" uninstall --root "$R"

# ---- item 10: prefix / state directory ----------------------------------------------------
fresh overlap
snapshot "$R" >"$T/overlap.before"
expect_fail "a prefix inside the state directory is refused" \
	"the prefix /var/lib/kata-deploy/journal.d must not be inside the state directory" \
	"$KD" install --root "$R" --payload "$P" --prefix /var/lib/kata-deploy/journal.d
expect_fail "the state directory inside the prefix is refused" \
	"the state directory /opt/kata/state must not be inside the prefix /opt/kata" \
	"$KD" install --root "$R" --payload "$P" --state-dir /opt/kata/state
expect_fail "prefix = state directory is refused" "must not be inside" \
	"$KD" install --root "$R" --payload "$P" --prefix /srv/k --state-dir /srv/k
for d in proc sys dev run; do
	expect_fail "a prefix under /$d is refused" "the prefix /$d/kata is under /$d: refused" \
		"$KD" install --root "$R" --payload "$P" --prefix /$d/kata
done
expect_fail "a state directory under /run is refused" "is under /run: refused" \
	"$KD" install --root "$R" --payload "$P" --state-dir /run/kd-state
check "refused prefixes and state dirs wrote nothing" diff -q "$T/overlap.before" <(snapshot "$R")

# ---- item 16: recover does not trust the journal ------------------------------------------
# Each crafted record names something of the root the engine never creates; recover refuses it,
# names it, and deletes nothing. A genuine journal still recovers (test-faults).
fresh journal
"$KD" install --root "$R" --payload "$P" --runtime-version 1.7 >/dev/null 2>&1
mkdir -p "$R/var/lib/extra" && echo keep >"$R/var/lib/extra/data"
snapshot "$R" >"$T/journal.before"
crafted() { # crafted DESC TEXT RECORD: a journal with a begin record and RECORD, then recover
	printf 'begin\tinstall\t\t\n%b\n' "$3" >"$R/var/lib/kata-deploy/journal"
	expect_fail "$1" "$2" "$KD" recover --root "$R"
	rm -f "$R/var/lib/kata-deploy/journal"
	check "$1: nothing deleted" diff -q "$T/journal.before" <(snapshot "$R")
}
crafted "journal 'tree etc' is refused" \
	"tree record names 'etc', which is not a version tree kata-deploy creates" 'tree\tetc\t\t'
crafted "journal 'file etc -' (remove a directory as a file) is refused" \
	"file record names 'etc', which is a directory" 'file\tetc\t\t-'
crafted "journal 'symlink etc/containerd/config.toml -' (remove a file as a link) is refused" \
	"symlink record names 'etc/containerd/config.toml', which is a regular file" \
	'symlink\tetc/containerd/config.toml\t\t-'
crafted "journal 'statedir var' (more than the state dir chain) is refused" \
	"statedir record names 'var', which holds more than the state directory" 'statedir\tvar\t\t'
crafted "journal 'statedir etc' (not above the state dir) is refused" \
	"statedir record names 'etc', which does not hold the state directory" 'statedir\tetc\t\t'
crafted "journal '../x' paths are refused" "unsafe path '../x'" 'tree\t../x\t\t'
crafted "journal file record with a backup path outside journal.d is refused" \
	"has a bad backup" 'file\tetc/containerd/config.toml\t../../../../etc/shadow\t644'

# ---- item 12: a plain re-install repairs a removed link -----------------------------------
fresh relink
"$KD" install --root "$R" --payload "$P" --runtime-version 1.7 >/dev/null 2>&1
snapshot "$R" | grep -v state.json >"$T/relink.after-install"
rm "$R/opt/kata/bin"
"$KD" install --root "$R" --payload "$P" --runtime-version 1.7 >"$T/relink.out" 2>&1 ||
	not_ok "re-install after a removed link failed: $(tail -2 "$T/relink.out")"
check "a removed opt/kata/bin: a plain re-install is not a no-op" bash -c "! grep -q 'nothing to do' '$T/relink.out'"
check "… and puts the link back as it was (the rest unchanged)" \
	diff "$T/relink.after-install" <(snapshot "$R" | grep -v state.json)
"$KD" install --root "$R" --payload "$P" --runtime-version 1.7 >"$T/relink.out2" 2>&1
check "… after which a re-install is a no-op again" grep -q 'nothing to do' "$T/relink.out2"

# ---- clear errors ---------------------------------------------------------------------------
fresh sha
SHA=$(sha256sum "$P" | cut -c1-64)
check "--sha256 in upper case (as often published) is accepted" \
	"$KD" install --root "$R" --payload "$P" --sha256 "$(tr a-f A-F <<<"$SHA")" --runtime-version 1.7
expect_fail "--sha256 that is not 64 hex digits is a usage error" "--sha256 must be 64 hex digits" \
	"$KD" install --root "$R" --payload "$P" --sha256 "${SHA}0"
rc_of() { "$@" >/dev/null 2>&1 && echo 0 || echo $?; }
quiet() { "$@" >/dev/null 2>&1; }
other=s390x
[ "$(uname -m)" = s390x ] && other=x86_64
"$KD" payload pack artifacts/demo/tree --spec artifacts/demo/payload.yaml --arch "$other" -o "$T/other.tar.zst" >/dev/null
fresh archroot
expect_fail "a payload built for $other is refused on $(uname -m)" \
	"the payload is built for $other, this machine is $(uname -m): its binaries would not run there" \
	"$KD" install --root "$R" --payload "$T/other.tar.zst" --runtime-version 1.7
expect_fail "… by plan too" "the payload is built for $other" \
	"$KD" plan --root "$R" --payload "$T/other.tar.zst" --runtime-version 1.7
check "… and --arch $other (a root of such a machine) installs it" \
	quiet "$KD" install --root "$R" --payload "$T/other.tar.zst" --runtime-version 1.7 --arch "$other"
expect_fail "--runtime-version with a number out of range says so" \
	"--runtime-version '1.7.0999999999999999999999': a version number is out of range" \
	"$KD" install --root "$R" --payload "$P" --runtime-version 1.7.0999999999999999999999
check "… as a usage error (exit 2)" test "$(rc_of "$KD" install --root "$R" --payload "$P" \
	--runtime-version 1.7.0999999999999999999999)" = 2
expect_fail "--runtime-binary that does not exist says why" \
	"--runtime-binary /nonexistent: cannot execute it: No such file or directory" \
	"$KD" install --root "$R" --payload "$P" --runtime-binary /nonexistent
expect_fail "--runtime-version without x.y says so" "--runtime-version 'abc' has no x.y version number" \
	"$KD" install --root "$R" --payload "$P" --runtime-version abc
expect_fail "a space in --agent-https-proxy is refused (it would add kernel parameters)" \
	"--agent-https-proxy 'http://p:3128 init=/bin/sh' contains a space at byte 14" \
	"$KD" install --root "$R" --payload "$P" --runtime-version 1.7 --agent-https-proxy "http://p:3128 init=/bin/sh"
check "… and nothing of it reached a Kata configuration" \
	bash -c "! grep -rq 'init=/bin/sh' '$R/opt/kata/runtimes'"
check "… as a usage error (exit 2)" test "$(rc_of "$KD" install --root "$R" --payload "$P" \
	--runtime-version 1.7 --agent-no-proxy "a b")" = 2
AGENT=$KD_BUILD/kata-deploy-agent
expect_fail "HEALTH_ADDRESS=not-an-ip: the agent says so" \
	"HEALTH_ADDRESS=not-an-ip: not an IPv4 address" env NODE_NAME=n HEALTH_ADDRESS=not-an-ip "$AGENT" install
check "… as a settings error (exit 2)" \
	test "$(rc_of env NODE_NAME=n HEALTH_ADDRESS=not-an-ip "$AGENT" install)" = 2
expect_fail "AGENT_HTTPS_PROXY with a space: the agent refuses it" "AGENT_HTTPS_PROXY 'http://a b' contains a space" \
	env NODE_NAME=n AGENT_HTTPS_PROXY="http://a b" "$AGENT" install
# status while another run holds the host lock (its journal there): in progress, not interrupted.
fresh busy
mkdir -p "$R/run"
"$KD" install --root "$R" --payload "$P" --runtime-version 1.7 >/dev/null 2>&1
touch "$R/var/lib/kata-deploy/journal"
flock -x -o "$R/run/kata-deploy/lock" sleep 3 &
holder=$!
wait_locked "$R/run/kata-deploy/lock"
out=$("$KD" status --root "$R" 2>&1) && rc=0 || rc=$?
check "status while a run holds the lock: 'run in progress'" grep -q "^journal: *run in progress" <<<"$out"
check "… and why it is not done (exit 4)" \
	bash -c "[ $rc = 4 ] && grep -q 'NOT DONE: another kata-deploy run is in progress' <<<\"\$1\"" _ "$out"
wait "$holder"
check "… once the run is gone, the journal left is an interrupted run again" \
	bash -c "'$KD' status --root '$R' | grep -q '^journal: *interrupted run pending recovery'"

# ---- item 3: kata-build collects outputs without following links above them --------------
KB=$KD_BUILD/kata-build
mkdir -p "$T/art/recipes"
cp artifacts/versions.yaml "$T/art/"
printf 'shims:\n  qemu: [linkup]\n' >"$T/art/shims.yaml"
printf '%s\n' "name: linkup
version: '1'
steps: ['mkdir -p \$KB_OUT/opt && ln -s /etc \$KB_OUT/opt/kata']
outputs: [opt/kata/hostname]" >"$T/art/recipes/linkup.yaml"
expect_fail "kata-build: an output under a symlinked parent (opt/kata -> /etc) is refused" \
	"output 'opt/kata/hostname' lies under a symlink" \
	"$KB" --artifacts "$T/art" --cache "$T/kbc" --out "$T/kbo" component linkup
check "kata-build: no component tarball holds the host's file" \
	test ! -e "$T/kbo/kata-static-linkup.tar.zst"
# An input cycle is named as one, not as nesting too deep.
for pair in "cyca cycb" "cycb cyca"; do
	read -r me other <<<"$pair"
	printf '%s\n' "name: $me
version: '1'
inputs: [$other]
steps: ['true']
outputs: [opt/kata/$me]" >"$T/art/recipes/$me.yaml"
done
# A sha256 of 64 digits unquoted is a number to YAML: say to quote it (not "url needs sha256").
printf '%s\n' "name: digits
version: '1'
sources:
  - url: http://127.0.0.1:9/x.tar.gz
    sha256: $(printf '1%.0s' $(seq 64))
steps: ['true']
outputs: [opt/kata/x]" >"$T/art/recipes/digits.yaml"
expect_fail "kata-build: an unquoted all-digit sha256 is named as a number to quote" \
	"digits.yaml:5: sha256: expected a string, got double (quote it)" \
	"$KB" --artifacts "$T/art" --cache "$T/kbc" --out "$T/kbo" component digits
expect_fail "kata-build: an input cycle is named (component)" \
	"component cyca: its inputs form a cycle: cyca → cycb → cyca" \
	"$KB" --artifacts "$T/art" --cache "$T/kbc" --out "$T/kbo" component cyca

finish
