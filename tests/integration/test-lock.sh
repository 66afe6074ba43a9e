#!/usr/bin/env bash
# The host lock <root>/run/kata-deploy/lock (deployer/engine.c): one lock for every run on a
# host, whatever its suffix, prefix or state directory (the node agent of each release and the
# host CLI); only root can open it, so no other local user can make an install wait or fail;
# a lock file another tool made with a wider mode is replaced. A root without run/ keeps the
# old rule (its directory is locked): tests/integration/test-install.sh covers that.
source "$(dirname "$0")/../lib.sh"
cd "$ROOTDIR"

P=$T/p.tar.zst
"$KD" payload pack artifacts/demo/tree --spec artifacts/demo/payload.yaml -o "$P" >/dev/null
# The whole path must be reachable by the unprivileged user, or its failures prove nothing.
chmod 0755 "$T"
R=$T/host
make_host_root "$R"
mkdir -p "$R/run"
chmod -R go+rX "$R"
L=$R/run/kata-deploy/lock
NOBODY=(setpriv --reuid=65534 --regid=65534 --clear-groups)
now() { date +%s.%N; }
secs() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$2"; }

# 1. Two installs with different suffixes, prefixes and state directories at once: the second
#    waits for the first (whose restart command takes 2 s), then succeeds.
t0=$(now)
"$KD" install --root "$R" --payload "$P" --suffix a --prefix /opt/kata-a \
	--state-dir /var/lib/kata-deploy/a --runtime-version 1.7 --restart 'command:sleep 2' \
	>"$T/a.out" 2>&1 &
A=$!
for _ in $(seq 50); do [ -e "$L" ] && break; sleep 0.1; done
sleep 0.3
"$KD" install --root "$R" --payload "$P" --suffix b --prefix /opt/kata-b \
	--state-dir /var/lib/kata-deploy/b --runtime-version 1.7 >"$T/b.out" 2>&1 && rcb=0 || rcb=$?
tb=$(now)
wait $A && rca=0 || rca=$?
ta=$(now)
check "suffix a installs (rc $rca)" [ "$rca" = 0 ]
check "suffix b installs after waiting (rc $rcb)" [ "$rcb" = 0 ]
check "suffix b said it waited for the host lock" grep -q "waiting for another kata-deploy run to finish" "$T/b.out"
echo "# a finished after $(secs "$t0" "$ta") s, b after $(secs "$t0" "$tb") s"
check "b finished after a (a's 2 s restart held the lock)" \
	python3 -c "import sys; sys.exit(not float(sys.argv[1]) >= float(sys.argv[2]) - 0.05)" "$tb" "$ta"
check "both handlers are configured" \
	grep -q 'kata-qemu-a' "$R/etc/containerd/config.toml"
check "both handlers are configured (b)" grep -q 'kata-qemu-b' "$R/etc/containerd/config.toml"

# 2. The lock file and its directory: root's, 0700 and 0600.
check "lock directory: root, 0700" [ "$(stat -c '%u %a %F' "$R/run/kata-deploy")" = "0 700 directory" ]
check "lock file: root, 0600" [ "$(stat -c '%u %a %F' "$L")" = "0 600 regular empty file" ]

# 3. An unprivileged user can neither open the lock nor hold anything root's run waits for.
out=$("${NOBODY[@]}" flock -n "$L" true 2>&1) && rc=0 || rc=$?
check "nobody cannot open the lock (rc $rc: $out)" [ "$rc" != 0 ]
check "... because of the permissions" grep -q "Permission denied" <<<"$out"
out=$("${NOBODY[@]}" flock -n "$R/run" true 2>&1) && rc=0 || rc=$?
check "nobody can lock the root and /run (the old lock) (rc $rc)" [ "$rc" = 0 ]
"${NOBODY[@]}" flock "$R" sleep 4 &
N1=$!
"${NOBODY[@]}" flock "$R/run" sleep 4 &
N2=$!
wait_locked "$R" && wait_locked "$R/run"
t0=$(now)
"$KD" uninstall --root "$R" --prefix /opt/kata-a --state-dir /var/lib/kata-deploy/a --lock-timeout -1 \
	>"$T/u.out" 2>&1 && rc=0 || rc=$?
t1=$(now)
check "root's uninstall is not blocked by nobody's flocks (rc $rc, $(secs "$t0" "$t1") s)" [ "$rc" = 0 ]
kill $N1 $N2 2>/dev/null; wait $N1 $N2 2>/dev/null || true

# 4. A lock file another tool made (flock(1) creates it 0644: anyone could open it and hold it)
#    is replaced by a 0600 one; the holder of the old one no longer blocks anything.
rm "$L"
flock "$L" sleep 4 &
HOLD=$!
for _ in $(seq 30); do [ -e "$L" ] && break; sleep 0.1; done
wait_locked "$L"
chmod 0644 "$L"
"$KD" uninstall --root "$R" --prefix /opt/kata-b --state-dir /var/lib/kata-deploy/b --lock-timeout -1 \
	>"$T/u2.out" 2>&1 && rc=0 || rc=$?
check "a 0644 lock file is replaced, not waited on (rc $rc)" [ "$rc" = 0 ]
check "the new lock file is 0600" [ "$(stat -c '%a' "$L")" = 600 ]
kill $HOLD 2>/dev/null; wait $HOLD 2>/dev/null || true

# 5. Root holding the real lock makes a run wait, and fail after --lock-timeout with exit 3.
flock "$L" sleep 3 &
HOLD=$!
wait_locked "$L"
rc=0; out=$("$KD" install --root "$R" --payload "$P" --runtime-version 1.7 --lock-timeout 1 2>&1) || rc=$?
check "held lock: exit 3 after the timeout" [ "$rc" = 3 ]
check "held lock: the message" grep -q "another kata-deploy run holds the lock on this host (waited 1 s)" <<<"$out"
kill $HOLD 2>/dev/null; wait $HOLD 2>/dev/null || true

# 6. A lock directory someone else owns, or that others may write, is refused with its reason.
rm -r "$R/run/kata-deploy"
mkdir -m 0777 "$R/run/kata-deploy"
expect_fail "a world-writable lock directory is refused" "/run/kata-deploy is owned by uid 0 with mode 0777" \
	"$KD" install --root "$R" --payload "$P" --runtime-version 1.7
rm -r "$R/run/kata-deploy"
ln -s /tmp "$R/run/kata-deploy"
expect_fail "a symlinked lock directory is refused" "lock: open /run/kata-deploy" \
	"$KD" install --root "$R" --payload "$P" --runtime-version 1.7
rm "$R/run/kata-deploy"

# 7. Two suffixes on a containerd 2.2 root whose config imports conf.d, which does not exist, nor
#    does /var/lib/kata-deploy: the first install creates both, the second puts its drop-in and
#    its state beside the first's. Uninstalled in either order, the root is byte for byte as
#    before: the directories go with the last install that used them, whichever created them.
#    A conf.d that was there before any install stays.
R2=$T/host2
mkdir -p "$R2/etc/containerd" "$R2/run"
printf "version = 3\nimports = ['/etc/containerd/conf.d/*.toml']\n" >"$R2/etc/containerd/config.toml"
snap2() { snapshot "$R2" | grep -v ' \./run/kata-deploy'; } # the lock stays in /run (a tmpfs)
snap2 >"$T/r2.before"
two() { # SUFFIX VERB
	local extra=()
	[ "$2" = install ] && extra=(--payload "$P" --runtime-version 2.2 --suffix "$1")
	"$KD" "$2" --root "$R2" "${extra[@]}" --prefix "/opt/kata-$1" \
		--state-dir "/var/lib/kata-deploy/$1" >>"$T/two.out" 2>&1
}
shares() { jq -e '.shared_dirs | index("etc/containerd/conf.d") and index("var/lib/kata-deploy")' "$1" >/dev/null; }
for order in "a b" "b a"; do
	two a install && two b install
	check "2.2 conf.d, two suffixes: both drop-ins in the conf.d the first created" \
		test -f "$R2/etc/containerd/conf.d/kata-deploy-a.toml" -a -f "$R2/etc/containerd/conf.d/kata-deploy-b.toml"
	check "2.2 conf.d: the second install shares conf.d and /var/lib/kata-deploy (its state says so)" \
		shares "$R2/var/lib/kata-deploy/b/state.json"
	set -- $order
	two "$1" uninstall
	check "2.2 conf.d: $1 uninstalled first: conf.d stays for the other's drop-in" \
		test -f "$R2/etc/containerd/conf.d/kata-deploy-$2.toml"
	check "2.2 conf.d: ... kept for the other install, not reported as left behind" \
		sh -c "! tail -n 4 '$T/two.out' | grep -Eq 'uninstall kept|not ours'"
	two "$2" uninstall
	snap2 >"$T/r2.after"
	check "2.2 conf.d: uninstalled $1 then $2: no empty conf.d or state dir left, root byte for byte" \
		diff -u "$T/r2.before" "$T/r2.after"
done
mkdir "$R2/etc/containerd/conf.d"
snap2 >"$T/r2.before"
two a install && two b install && two a uninstall && two b uninstall
snap2 >"$T/r2.after"
check "2.2 conf.d: a conf.d that was there before stays (root byte for byte)" \
	diff -u "$T/r2.before" "$T/r2.after"

finish
