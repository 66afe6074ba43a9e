#!/usr/bin/env bash
# The image `kata-build image` makes holds everything the agent uses at run time (issue 12):
# every library ldd lists for the agent and its waiter, every library the sources dlopen (found
# by reading the dlopen calls, not from the builder's own list) with its dependencies, the
# waiter at the path the agent execs, the CA bundle at the path libcurl reads, a writable /tmp
# and /var/tmp. Then the image's root filesystem (its layers extracted into a temp dir) runs
# the agent in a private mount namespace under chroot: --version, --help and `self-check`, which
# dlopens libsystemd and libcurl the way the agent does. Removing a library or the waiter from
# that tree makes self-check fail, naming it.
source "$(dirname "$0")/../lib.sh"
cd "$ROOTDIR"
KB=$KD_BUILD/kata-build
AGENT=$KD_BUILD/kata-deploy-agent
WAITER=$KD_BUILD/kata-deploy-agent-wait

P=$T/p.tar.zst
"$KD" payload pack artifacts/demo/tree --spec artifacts/demo/payload.yaml -o "$P" >/dev/null
L=$T/img
if ! "$KB" image --payload "$P" --agent "$AGENT" --layout "$L" --tag test >"$T/image.log" 2>&1; then
	sed 's/^/#   /' "$T/image.log"
	not_ok "kata-build image"
	finish
fi
ok "kata-build image"
mapfile -t LAYERS < <(python3 - "$L" <<'EOF'
import json, sys
l = sys.argv[1]
m = json.load(open(f"{l}/index.json"))["manifests"][0]["digest"].split(":")[1]
for d in json.load(open(f"{l}/blobs/sha256/{m}"))["layers"]:
    print(f"{l}/blobs/sha256/" + d["digest"].split(":")[1])
EOF
)
check "two layers" [ "${#LAYERS[@]}" = 2 ]
: >"$T/listing"
for b in "${LAYERS[@]}"; do tar -tvf "$b" >>"$T/listing"; done
# "/path" when the image has it as a file (or directory, with a trailing /). Lists and lookups go
# through files, never `producer | grep -q` or `| awk '{…; exit}'`: under pipefail the producer's
# SIGPIPE, when the reader stops early, would fail the test at random (it did, in CI).
awk '{print "/" $6}' "$T/listing" >"$T/paths"
has() { grep -qxF -- "$1" "$T/paths"; }

# ---- what the agent may open at run time ----
# dlopen calls in the sources: a literal soname, or a macro #defined to one.
grep -rhoE 'dlopen\(([A-Z_][A-Z0-9_]*|"[^"]+")' lib deployer node-agent | sed 's/^dlopen(//' | sort -u >"$T/dlopen.args"
: >"$T/sonames"
while read -r a; do
	case $a in
	\"*) echo "${a//\"/}" >>"$T/sonames" ;;
	*) grep -rhE "^#define $a \"[^\"]+\"" lib deployer node-agent | sed -nE '1s/.*"([^"]+)".*/\1/p' >>"$T/sonames" ;;
	esac
done <"$T/dlopen.args"
sort -u -o "$T/sonames" "$T/sonames"
echo "# dlopen'ed by the sources: $(tr '\n' ' ' <"$T/sonames")"
check "the sources dlopen libsystemd.so.0 and libcurl.so.4 (at least)" \
	sh -c "grep -qx libsystemd.so.0 '$T/sonames' && grep -qx libcurl.so.4 '$T/sonames'"
check "every dlopen argument resolved to a soname" [ "$(wc -l <"$T/sonames")" -ge "$(wc -l <"$T/dlopen.args")" ]
# The builder's list (builder/oci.h) must name each of them.
for s in $(cat "$T/sonames"); do
	check "KD_OCI_DLOPEN_LIBS names $s" grep -qF "\"$s\"" <(sed -n '/#define KD_OCI_DLOPEN_LIBS/,/}/p' builder/oci.h)
done

ldd_paths() { ldd "$1" | sed -nE 's/.*=> (\/[^ ]+) .*/\1/p; s/^[[:space:]]*(\/[^ ]+) .*/\1/p'; }
: >"$T/need"
ldd_paths "$AGENT" >>"$T/need"
ldd_paths "$WAITER" >>"$T/need"
ldconfig -p >"$T/ldcache"
for s in $(cat "$T/sonames"); do
	p=$(awk -v s="$s" '$1 == s && /x86-64|64bit|AArch64/ {print $NF; exit}' "$T/ldcache")
	[ -n "$p" ] || p=$(awk -v s="$s" '$1 == s {print $NF; exit}' "$T/ldcache")
	if [ -z "$p" ]; then not_ok "$s is on this machine (ldconfig -p)"; continue; fi
	echo "$p" >>"$T/need"
	ldd_paths "$p" >>"$T/need"
done
sort -u -o "$T/need" "$T/need"
missing=$(while read -r f; do has "$f" || echo "$f"; done <"$T/need")
echo "# $(wc -l <"$T/need") libraries needed at run time"
check "the image holds every library the agent, its waiter and the dlopen'ed ones map${missing:+ (missing: $missing)}" [ -z "$missing" ]
check "the image holds the agent" has /usr/bin/kata-deploy-agent
check "the image holds the waiter where the agent execs it (<agent>-wait)" has /usr/bin/kata-deploy-agent-wait
CA=/etc/ssl/certs/ca-certificates.crt
check "the image holds the CA bundle" has "$CA"
if command -v curl-config >/dev/null; then
	check "it is where libcurl looks ($(curl-config --ca))" [ "$(curl-config --ca)" = "$CA" ]
fi
check "/tmp is 1777" grep -qE '^drwxrwxrwt .* tmp/$' "$T/listing"
check "/var/tmp is 1777" grep -qE '^drwxrwxrwt .* var/tmp/$' "$T/listing"
check "the payload is in the image" has /opt/kata-artifacts/payload.tar.zst

# ---- run the image's root filesystem ----
R=$T/rootfs
mkdir -p "$R"
for b in "${LAYERS[@]}"; do tar -xf "$b" -C "$R"; done
mkdir -p "$R/proc" # a container runtime makes and mounts it
in_image() { # in_image CMD...: run in the image's tree, in a private mount namespace
	unshare --mount --propagation private -- sh -c 'mount -t proc proc "$0/proc" && exec chroot "$0" "$@"' "$R" "$@"
}
out=$(in_image /usr/bin/kata-deploy-agent --version 2>&1) && rc=0 || rc=$?
check "in the image: --version (rc $rc: $out)" [ "$rc" = 0 ] && [ "$out" = "$("$AGENT" --version)" ]
out=$(in_image /usr/bin/kata-deploy-agent --help 2>&1) && rc=0 || rc=$?
check "in the image: --help (rc $rc)" grep -q "^usage: kata-deploy-agent" <<<"$out"
in_image /usr/bin/kata-deploy-agent self-check >"$T/self" 2>&1 && rc=0 || rc=$?
sed 's/^/#   /' "$T/self"
check "in the image: self-check passes (rc $rc)" [ "$rc" = 0 ]
for w in libsystemd.so.0 libcurl.so.4 ca-certificates waiter download-dir validation-dir payload; do
	check "in the image: self-check $w ok" grep -qE "^ok +$w " "$T/self"
done
check "in the image: libcurl read the CA bundle's certificates" grep -qE "^ok +ca-certificates +$CA \([1-9][0-9]* certificates\)" "$T/self"

# The engine in the image: kata-deploy (the same libraries as the agent) installs a payload
# from a URL on loopback (libcurl, a download file in /var/tmp) into a host root, and runs a
# restart command without a shell (the image has none).
cp "$KD" "$R/usr/bin/kata-deploy"
make_host_root "$R/host"
mkdir -p "$R/host/run"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
(cd "$T" && exec python3 -m http.server --bind 127.0.0.1 "$PORT") >/dev/null 2>&1 &
HTTPD=$!
trap 'rc=$?; kill $HTTPD 2>/dev/null || :; wait $HTTPD 2>/dev/null || :; chmod -R u+w "$T" 2>/dev/null || :; rm -rf "$T"; exit $rc' EXIT
for _ in $(seq 50); do curl -sf -o /dev/null "http://127.0.0.1:$PORT/p.tar.zst" && break; sleep 0.1; done
# A plain-http payload must be pinned (issue 16): its sha256, as the chart's payload digest does.
in_image /usr/bin/kata-deploy install --root /host --payload "http://127.0.0.1:$PORT/p.tar.zst" \
	--sha256 "$(sha256sum <"$T/p.tar.zst" | cut -c1-64)" --runtime-version 1.7 --restart 'command:/usr/bin/kata-deploy-agent --version' >"$T/inst" 2>&1 && rc=0 || rc=$?
sed 's/^/#   /' "$T/inst" | tail -5
check "in the image: install of a URL payload (rc $rc)" [ "$rc" = 0 ]
check "in the image: the restart command ran without a shell" grep -q "^kata-deploy-agent " "$T/inst"
check "in the image: installed" [ -L "$R/host/opt/kata/current" ]
in_image /usr/bin/kata-deploy uninstall --root /host --restart 'command:kata-deploy-agent --version' >"$T/un" 2>&1 && rc=0 || rc=$?
check "in the image: a restart command that is not an absolute path is refused (rc $rc)" \
	grep -q "there is no /bin/sh here, so it must be an absolute path" "$T/un"
kill $HTTPD 2>/dev/null; wait $HTTPD 2>/dev/null || true

# The check can fail: without libsystemd (the image before issue 12) and without the waiter.
rm "$R"/lib/*/libsystemd.so.0
mv "$R/usr/bin/kata-deploy-agent-wait" "$T/waiter.moved"
in_image /usr/bin/kata-deploy-agent self-check >"$T/self2" 2>&1 && rc=0 || rc=$?
check "without libsystemd and the waiter: self-check fails (rc $rc)" [ "$rc" = 1 ]
check "... naming libsystemd.so.0" grep -qE "^FAIL +libsystemd.so.0 +--restart systemd needs libsystemd.so.0" "$T/self2"
check "... naming the waiter" grep -qE "^FAIL +waiter +/usr/bin/kata-deploy-agent-wait" "$T/self2"
check "... and nothing else" [ "$(grep -c '^FAIL' "$T/self2")" = 2 ]

finish
