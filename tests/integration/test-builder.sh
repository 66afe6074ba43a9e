#!/usr/bin/env bash
# kata-build end to end: two builds from clean caches give the same bytes (every component, the
# payload, the image manifest); a cache hit is fast and takes the sha256 from the stamp stored
# with the tarball, a cached tarball changed on disk is refused; verify names a differing entry;
# the image goes to a real registry (Debian's docker-registry) and comes back by digest, and its
# payload installs with kata-deploy; bad sources, recipes and registries fail with clear errors.
# The guest kernel (a real build, ~9 min on 2 idle cores), by KD_TEST_KERNEL:
#   ref (default): built once per key in the real cache (shared with test-kata); its sha256 must equal the one recorded in
#                  artifacts/kernel/reference (a reproducibility check across machines and runs),
#                  then it boots under QEMU TCG into tests/tools/kb-guest-init.c
#   1 (make kernel-repro): also part of both clean builds, which must agree with each other
#   0: no kernel
# KD_TEST_ROOTFS=0 drops the rootfs. Under KD_ASAN the slow recipes are off by default: they
# test gcc and mmdebstrap, not our C.
# QEMU is built from source (tens of minutes): once per recipe key in the real cache,
# ${KD_BUILD_CACHE:-~/.cache/kata-build} (as test-kata does), and copied into both clean caches
# (the two builds compare kata-config, the payload and the image around it; KD_TEST_QEMU=repro
# also builds QEMU from a clean cache and requires the same sha256). Its --version and the kernel's TCG boot run
# in a root that holds nothing but the installed payload's opt/kata and glibc (chroot in a
# private mount namespace).
source "$(dirname "$0")/../lib.sh"
KB=$KD_BUILD/kata-build
if [ -n "${KD_ASAN:-}" ]; then
	KD_TEST_KERNEL=${KD_TEST_KERNEL:-0} KD_TEST_ROOTFS=${KD_TEST_ROOTFS:-0}
fi
KD_TEST_KERNEL=${KD_TEST_KERNEL:-ref}
KD_TEST_ROOTFS=${KD_TEST_ROOTFS:-1}
COMPONENTS="kata-config qemu"
[ "$KD_TEST_ROOTFS" = 1 ] && COMPONENTS="$COMPONENTS rootfs"
[ "$KD_TEST_KERNEL" = 1 ] && COMPONENTS="$COMPONENTS kernel"
echo "# components: $COMPONENTS"

AGENT=$KD_BUILD/kata-deploy-agent
[ -x "$AGENT" ] || AGENT=$KD_BUILD/kata-deploy
cp "$AGENT" "$T/agent" # a copy: a rebuild of the agent during the test must not change it
# and its waiter, which `kata-build image` takes from <agent>-wait
[ -x "$AGENT-wait" ] && cp "$AGENT-wait" "$T/agent-wait"

ART=$T/art
mkdir -p "$ART"
cp -r "$ROOTDIR/artifacts/versions.yaml" "$ROOTDIR/artifacts/recipes" "$ROOTDIR/artifacts/scripts" \
	"$ROOTDIR/artifacts/kernel" "$ART/"
# kata-config: a cheap fixture component (tests/fixtures/builder/recipes/kata-config.yaml)
cp -r "$ROOTDIR/tests/fixtures/builder/config" "$ART/"
cp "$ROOTDIR/tests/fixtures/builder/recipes/kata-config.yaml" "$ART/recipes/"
printf 'shims:\n  qemu: [%s]\n' "$(echo $COMPONENTS | sed 's/ /, /g')" >"$ART/shims.yaml"

pids=()
cleanup_servers() { for p in "${pids[@]}"; do { kill "$p"; wait "$p"; } 2>/dev/null || :; done; }
trap 'rc=$?; set +e; cleanup_servers; (exit $rc); _kd_cleanup' EXIT

# ---- QEMU from source, by key, in the real cache ----
QCACHE=${KD_BUILD_CACHE:-$HOME/.cache/kata-build}
build_qemu() { # CACHE OUT LOG
	$KB --artifacts "$ART" --cache "$1" --out "$2" component qemu >"$3" 2>&1 ||
		{ tail -40 "$3"; return 1; }
}
start=$(date +%s)
if ! check "qemu built from source (or taken from $QCACHE by its key)" \
	build_qemu "$QCACHE" "$T/oq" "$T/qemu.out"; then
	finish
	exit 1
fi
echo "# qemu: $(awk '$1 == "qemu" {print $2, $3}' "$T/qemu.out") in $(( $(date +%s) - start ))s"
qkey=$(awk '$1 == "qemu" {sub("key=", "", $5); print $5}' "$T/qemu.out")
seed_qemu() { # CACHE: the qemu component and its Debian packages, as a clean cache would hold them
	local d sha
	mkdir -p "$1/components" "$1/debs" "$1/sources/sha256"
	cp -r "$QCACHE/components/$qkey" "$1/components/"
	for d in "$QCACHE"/debs/seabios_* "$QCACHE"/debs/ipxe-qemu_*; do
		sha=$(head -1 "$d")
		cp "$d" "$1/debs/" && cp "$QCACHE/sources/sha256/$sha" "$1/sources/sha256/" || return 1
	done
}
if [ "${KD_TEST_QEMU:-}" = repro ]; then
	start=$(date +%s)
	check "qemu built again from a clean cache" build_qemu "$T/cq" "$T/oqr" "$T/qemu-repro.out"
	echo "# qemu clean build: $(( $(date +%s) - start ))s"
	check "qemu: both builds give the same sha256" \
		test "$(awk '$1 == "qemu" {print $2}' "$T/qemu.out")" = "$(awk '$1 == "qemu" {print $2}' "$T/qemu-repro.out")"
fi

# ---- two builds from clean caches ----
build_all() { # N
	local n=$1 kb
	kb="$KB --artifacts $ART --cache $T/c$n --out $T/o$n"
	$kb payload >"$T/payload$n.log" 2>&1 || { cat "$T/payload$n.log"; return 1; }
	$kb image --agent "$T/agent" --tag repro >"$T/image$n.log" 2>&1 ||
		{ cat "$T/image$n.log"; return 1; }
	(cd "$T/o$n" && sha256sum kata-static-*.tar.zst payload.tar.zst) >"$T/sums$n"
	awk '/^image /{print "manifest", $3}' "$T/image$n.log" >>"$T/sums$n"
}
seed_qemu "$T/c1" && seed_qemu "$T/c2" || not_ok "qemu copied into the clean caches"
start=$(date +%s)
check "build 1 from a clean cache" build_all 1
b1=$(( $(date +%s) - start ))
start=$(date +%s)
check "build 2 from another clean cache" build_all 2
echo "# build times: ${b1}s, $(( $(date +%s) - start ))s"
for c in $COMPONENTS; do
	[ "$c" = qemu ] && continue # copied into both caches: KD_TEST_QEMU=repro compares two builds
	check "component $c identical in both builds" \
		test "$(grep " kata-static-$c.tar.zst" "$T/sums1")" = "$(grep " kata-static-$c.tar.zst" "$T/sums2")"
done
check "recipes outside shims.yaml are reported" grep -q \
	"info: recipe shim-v2: not in shims.yaml, built only when named" "$T/payload1.log"
check "payload identical" test "$(grep payload "$T/sums1")" = "$(grep payload "$T/sums2")"
check "image manifest identical" test "$(grep manifest "$T/sums1")" = "$(grep manifest "$T/sums2")"
cat "$T/sums1" | sed 's/^/# /'

# ---- cache hit ----
hit() {
	local t0 t1
	t0=$(date +%s%N)
	$KB --artifacts "$ART" --cache "$T/c1" --out "$T/o1" component $COMPONENTS >"$T/hit.out" 2>&1 || return 1
	t1=$(date +%s%N)
	echo "# cache-hit rebuild of $COMPONENTS: $(( (t1 - t0) / 1000000 )) ms"
	[ "$(grep -cE '^[a-z0-9._-]+ [0-9a-f]{64} cached ' "$T/hit.out")" -eq "$(echo $COMPONENTS | wc -w)" ] &&
		[ $(( (t1 - t0) / 1000000 )) -le 1000 ]
}
check "unchanged components are not rebuilt, all in <= 1 s" hit
echo "# changed template" >>"$ART/config/configuration-qemu.toml.in"
$KB --artifacts "$ART" --cache "$T/c1" --out "$T/o1x" component kata-config >"$T/chg.out" 2>&1
check "a changed recipe file rebuilds the component" grep -q ' built ' "$T/chg.out"
sed -i '$d' "$ART/config/configuration-qemu.toml.in"

# ---- two kata-build processes at once on one cache (make test's prebuild lanes) ----
# Lane a's guest-initrd takes kata-agent, which lane b builds: the second process waits on the
# component's lock and takes the first one's result, it never builds it again. Fixtures: kb-slow
# (counts its builds, sleeps) and kb-user (kb-slow as its input); kb-user's build starts while
# kb-slow's runs.
LA=$T/art-lanes
mkdir -p "$LA/recipes"
cp "$ROOTDIR/artifacts/versions.yaml" "$LA/"
printf 'shims:\n  qemu: [kb-user]\n' >"$LA/shims.yaml"
cat >"$LA/recipes/kb-slow.yaml" <<EOF
name: kb-slow
version: "1"
description: test fixture (test-builder.sh)
steps:
  - |
    echo built >>"$T/lanes-builds"
    sleep 3
    mkdir -p "\$KB_OUT/opt/kata/share/slow" && echo slow >"\$KB_OUT/opt/kata/share/slow/x"
outputs:
  - opt/kata/share/slow/x
EOF
cat >"$LA/recipes/kb-user.yaml" <<'EOF'
name: kb-user
version: "1"
description: test fixture (test-builder.sh)
inputs: [kb-slow]
steps:
  - |
    mkdir -p "$KB_OUT/opt/kata/share/user"
    cp "$KB_INPUTS/kb-slow/opt/kata/share/slow/x" "$KB_OUT/opt/kata/share/user/x"
outputs:
  - opt/kata/share/user/x
EOF
lanes() {
	local pa rc=0
	$KB --artifacts "$LA" --cache "$T/c-lanes" --out "$T/o-lane-a" component kb-slow \
		>"$T/lane-a.out" 2>&1 &
	pa=$!
	for _ in $(seq 100); do [ -s "$T/lanes-builds" ] && break; sleep 0.1; done
	$KB --artifacts "$LA" --cache "$T/c-lanes" --out "$T/o-lane-b" component kb-user \
		>"$T/lane-b.out" 2>&1 || rc=1
	wait $pa || rc=1
	[ $rc -eq 0 ] || { cat "$T/lane-a.out" "$T/lane-b.out"; return 1; }
	grep -q '^kb-slow [0-9a-f]\{64\} built ' "$T/lane-a.out" &&
		grep -q '^kb-user [0-9a-f]\{64\} built ' "$T/lane-b.out" &&
		cmp "$T/o-lane-a/kata-static-kb-slow.tar.zst" "$T/o-lane-b/kata-static-kb-slow.tar.zst"
}
check "two kata-build at once: the second waits for the component the first builds" lanes
check "... which is built once" test "$(cat "$T/lanes-builds")" = built

# ---- digest stamps: a hit takes the sha256 stored beside the tarball unless the file changed ----
KBC="$KB --artifacts $ART --cache $T/c1 --out $T/o1"
ckey=$(awk '$1 == "kata-config" {sub("key=", "", $5); print $5}' "$T/hit.out")
csum=$(awk '$1 == "kata-config" {print $2}' "$T/hit.out")
ctar=$T/c1/components/$ckey/kata-static-kata-config.tar.zst
stamps_match() {
	local f
	for f in "$T"/c1/components/*/kata-static-*.tar.zst; do
		[ "$(head -1 "$f.sha256")" = "sha256 $(sha256sum <"$f" | cut -d' ' -f1)" ] || return 1
	done
}
check "every cached component has a stamp holding its sha256" stamps_match
$KBC -v component kata-config >"$T/stamp.out" 2>&1
check "a cache hit takes the sha256 from the stamp, not a rehash" sh -c \
	"grep -q 'kata-static-kata-config.tar.zst: sha256 from its stamp' '$T/stamp.out' &&
	 grep -q '^kata-config $csum cached ' '$T/stamp.out'"
touch "$ctar"
$KBC -v component kata-config >"$T/stamp.out" 2>&1
check "a touched cached tarball is rehashed: same sha256, still a hit" sh -c \
	"grep -q 'kata-static-kata-config.tar.zst: rehashed (stale stamp)' '$T/stamp.out' &&
	 grep -q '^kata-config $csum cached ' '$T/stamp.out'"
size=$(stat -c %s "$ctar")
python3 -c 'import sys; f = open(sys.argv[1], "r+b"); f.seek(100); b = f.read(1); f.seek(100); f.write(bytes([b[0] ^ 0xff]))' "$ctar"
check "tampered: same size, new mtime" test "$(stat -c %s "$ctar")" = "$size"
expect_fail "a cached tarball changed on disk is refused" \
	"component kata-config (the next run builds it again): cache: $ctar changed since it was stored" \
	$KBC component kata-config
check "the changed tarball is gone from the cache and from the output dir" \
	test ! -e "$ctar" -a ! -e "$ctar.sha256" -a ! -e "$T/o1/kata-static-kata-config.tar.zst"
check "the next run builds it again, to the same sha256" sh -c \
	"$KBC component kata-config | grep -q '^kata-config $csum built '"

# ---- verify ----
check "verify: rebuild of kata-config identical" \
	$KB --artifacts "$ART" --cache "$T/c1" --out "$T/o1" verify kata-config
mkdir -p "$T/tamper" && tar -C "$T/tamper" -xf "$T/o1/kata-static-kata-config.tar.zst"
echo "x = 1" >>"$T/tamper/opt/kata/share/defaults/kata-containers/configuration-qemu.toml"
cp -r "$T/o1" "$T/o1t" && rm -f "$T/o1t/kata-static-kata-config.tar.zst"
tar -C "$T/tamper" --sort=name --mtime=@1700000000 --owner=0 --group=0 --numeric-owner \
	-I zstd -cf "$T/o1t/kata-static-kata-config.tar.zst" opt
expect_fail "verify names the differing file and entry" \
	"kata-static-kata-config.tar.zst (sha256" \
	$KB --artifacts "$ART" --cache "$T/c1" --out "$T/o1t" verify kata-config
$KB --artifacts "$ART" --cache "$T/c1" --out "$T/o1t" verify kata-config >"$T/v.out" 2>&1 || true
check "verify message names the entry" \
	grep -q "'opt/kata/share/defaults/kata-containers/configuration-qemu.toml' vs .*: size differs" "$T/v.out"

# ---- real registry on loopback ----
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$T/reg/data"
cat >"$T/reg/config.yml" <<CFG
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage:
  filesystem: {rootdirectory: $T/reg/data}
http:
  addr: 127.0.0.1:$port
CFG
docker-registry serve "$T/reg/config.yml" >"$T/reg/log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.1; done
R=127.0.0.1:$port
check "push to docker-registry" $KB push --layout "$T/o1/image" --registry "$R/kata/deploy" \
	--tag t1 --plain-http
digest=$(awk '/^manifest/{print $2}' "$T/sums1")
curl -sf -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
	"http://$R/v2/kata/deploy/manifests/$digest" -o "$T/pulled-manifest"
check "manifest pulled by digest is byte-identical" \
	cmp "$T/pulled-manifest" "$T/o1/image/blobs/sha256/${digest#sha256:}"
pull_blobs() {
	local d
	for d in $(python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print(m["config"]["digest"]); [print(l["digest"]) for l in m["layers"]]' "$T/pulled-manifest"); do
		curl -sfL "http://$R/v2/kata/deploy/blobs/$d" -o "$T/blob" || return 1
		[ "sha256:$(sha256sum <"$T/blob" | cut -d' ' -f1)" = "$d" ] || return 1
		cp "$T/blob" "$T/pulled-${d#sha256:}"
	done
}
check "every blob pulled by digest matches" pull_blobs
layer2=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["layers"][1]["digest"][7:])' "$T/pulled-manifest")
mkdir -p "$T/img-x" && tar -C "$T/img-x" -xf "$T/pulled-$layer2"
check "payload in the pulled image is the built payload" \
	cmp "$T/img-x/opt/kata-artifacts/payload.tar.zst" "$T/o1/payload.tar.zst"
make_host_root "$T/host"
check "payload from the pulled image installs with kata-deploy" \
	"$KD" install --root "$T/host" --payload "$T/img-x/opt/kata-artifacts/payload.tar.zst" \
	--runtime-version 1.6 --restart none
check "installed: qemu binary and configuration" test -x "$T/host/opt/kata/bin/qemu-system-x86_64" -a \
	-f "$T/host/opt/kata/share/defaults/kata-containers/configuration-qemu.toml"
check "second push finds every blob present" \
	sh -c "$KB push --layout '$T/o1/image' --registry '$R/kata/deploy' --tag t2 --plain-http | grep -q '3 present'"
check "push with cross-repository mount" \
	sh -c "$KB push --layout '$T/o1/image' --registry '$R/kata/other' --tag t1 --plain-http --mount-from kata/deploy | grep -q '3 mounted'"
check "ci: builds and pushes <pr>-<sha>-<arch>" \
	$KB --artifacts "$ART" --cache "$T/c1" --out "$T/o1" ci --pr 42 --sha 0abc123 \
	--agent "$T/agent" --registry "$R/kata/ci" --plain-http
check "ci tag is listed by the registry" \
	sh -c "curl -sf http://$R/v2/kata/ci/tags/list | grep -q '42-0abc123-amd64'"

# ---- fixture server: mirror and bad registries ----
mkdir -p "$T/mirror"
head -c 300000 /dev/urandom >"$T/mirror/kata-src.tar.gz"
tar -C "$T" -czf "$T/mirror/kata-vendor.tar.gz" mirror/kata-src.tar.gz
python3 "$ROOTDIR/tests/tools/kb-fixture-server.py" "$T/fx.port" "$T/mirror" &
pids+=($!)
for _ in $(seq 50); do [ -s "$T/fx.port" ] && break; sleep 0.1; done
F=127.0.0.1:$(cat "$T/fx.port")
src_sha=$(sha256sum <"$T/mirror/kata-src.tar.gz" | cut -d' ' -f1)
ven_sha=$(sha256sum <"$T/mirror/kata-vendor.tar.gz" | cut -d' ' -f1)
# A recipe with URL sources on the loopback server (a stand-in for an upstream release).
mkdir -p "$T/art2/recipes" && cp "$ART/versions.yaml" "$T/art2/"
printf 'shims:\n  qemu: [kata-config]\n' >"$T/art2/shims.yaml"
url_recipe() { # BASE-URL
	cat >"$T/art2/recipes/urlsrc.yaml" <<-RECIPE
	name: urlsrc
	version: "1"
	sources:
	  - url: $1/kata-src.tar.gz
	    sha256: "$src_sha"
	  - url: $1/kata-vendor.tar.gz
	    sha256: "$ven_sha"
	steps: ['true']
	outputs: [opt/kata/x]
	RECIPE
}
url_recipe "http://$F/files"
KB2="$KB --artifacts $T/art2 --cache $T/c3 --out $T/o3"
check "url sources fetch from the loopback server, verified" $KB2 fetch urlsrc
check "fetched sources are stored by sha256" \
	test -f "$T/c3/sources/sha256/$src_sha" -a -f "$T/c3/sources/sha256/$ven_sha"
check "a second fetch is a cache hit (works with the server gone too)" \
	$KB --artifacts "$T/art2" --cache "$T/c3" fetch urlsrc
# Resume: a partial download left by a killed run is continued with Range.
mkdir -p "$T/c4/partial" && head -c 100000 "$T/mirror/kata-src.tar.gz" >"$T/c4/partial/$src_sha"
check "a partial download is resumed" $KB --artifacts "$T/art2" --cache "$T/c4" fetch urlsrc
check "resumed file is complete and verified" cmp "$T/c4/sources/sha256/$src_sha" "$T/mirror/kata-src.tar.gz"
mkdir -p "$T/c5/partial" && head -c 100000 /dev/urandom >"$T/c5/partial/$src_sha"
check "a corrupt partial is discarded and fetched again" \
	$KB --artifacts "$T/art2" --cache "$T/c5" fetch urlsrc
url_recipe "http://127.0.0.1:9/nowhere"
check "a url source comes from --mirror first (the URL is unreachable)" \
	$KB --artifacts "$T/art2" --cache "$T/c5m" --mirror "$T/mirror" fetch urlsrc

# ---- git sources: pinned by tree id, from a forge's tag archive or a mirror ----
mkdir -p "$T/gitproj"
(cd "$T/gitproj" && git -c init.defaultBranch=m init -q &&
	mkdir -p src && echo 'fn main() {}' >src/main.rs && printf '#!/bin/sh\n' >run.sh &&
	chmod 755 run.sh && ln -s src/main.rs link && git add -A &&
	git -c user.name=t -c user.email=t@t commit -qm one && git tag v1 &&
	git archive --prefix=proj-v1/ v1 | gzip -n -9 >"$T/mirror/v1.tar.gz")
gtree=$(git -C "$T/gitproj" rev-parse 'v1^{tree}')
# The same tree, archived another way (GNU tar, other mtimes): the mirror's copy.
(cd "$T" && mkdir -p m2/proj-v1 && git -C gitproj archive v1 | tar -C m2/proj-v1 -x &&
	tar -C m2 -czf "$T/mirror/proj-v1.tar.gz" proj-v1)
git_recipe() { # TREE URL
	cat >"$T/art2/recipes/gitsrc.yaml" <<-RECIPE
	name: gitsrc
	version: "1"
	sources:
	  - git: $2
	    tag: v1
	    tree: "$1"
	    file: proj-v1.tar.gz
	steps: ['tar -xzf \$KB_SRC/proj-v1.tar.gz && install -D proj-v1/run.sh \$KB_OUT/opt/kata/bin/run.sh']
	outputs: [opt/kata/bin/run.sh]
	RECIPE
}
git_recipe "$gtree" "http://$F/files/proj"
check "git source: the tag archive from the forge URL, its tree id verified" \
	$KB --artifacts "$T/art2" --cache "$T/g1" fetch gitsrc
check "git source: stored by sha256, indexed by tree" \
	sh -c "test -f '$T/g1/sources/sha256/'\$(cat '$T/g1/git/$gtree')"
git_recipe "$gtree" "http://127.0.0.1:9/nowhere"
check "git source: from --mirror with the forge unreachable" \
	$KB --artifacts "$T/art2" --cache "$T/g2" --mirror "$T/mirror" fetch gitsrc
check "git source: KATA_BUILD_MIRROR does the same" \
	env KATA_BUILD_MIRROR="$T/mirror" $KB --artifacts "$T/art2" --cache "$T/g2b" fetch gitsrc
check "git source: the two archives differ in bytes" \
	sh -c "! cmp -s '$T/g1/sources/sha256/'\$(cat '$T/g1/git/$gtree') '$T/g2/sources/sha256/'\$(cat '$T/g2/git/$gtree')"
k1=$($KB --artifacts "$T/art2" --cache "$T/g1" --out "$T/go1" component gitsrc 2>/dev/null | awk '{print $2, $5}')
k2=$($KB --artifacts "$T/art2" --cache "$T/g2" --out "$T/go2" component gitsrc 2>/dev/null | awk '{print $2, $5}')
echo "# gitsrc from the forge: $k1; from the mirror: $k2"
check "git source: another archive of the same tree gives the same key and bytes" \
	sh -c "[ -n '$k1' ] && [ '$k1' = '$k2' ]"
zero=$(printf '%040d' 0)
git_recipe "$zero" "http://$F/files/proj"
expect_fail "git source: an archive whose tree differs from the pin is refused" \
	"its git tree is $gtree, the recipe pins $zero; the archive was discarded" \
	$KB --artifacts "$T/art2" --cache "$T/g3" fetch gitsrc
check "git source: the refused archive was not kept" \
	sh -c "! ls '$T/g3/sources/sha256/' '$T/g3/git/' '$T/g3/partial/' | grep -q '^[0-9a-f]'"
git_recipe "$gtree" "http://$F/files/proj"
sed -i "s/    tag: v1/    tag: v1\n    commit: $zero/" "$T/art2/recipes/gitsrc.yaml"
expect_fail "git source: tag and commit together are refused" "git needs exactly one of tag, commit" \
	$KB --artifacts "$T/art2" --cache "$T/g3" fetch gitsrc
rm -f "$T/art2/recipes/gitsrc.yaml"
# The real pins of the Kata recipes against the copies in ../shared/sources (the mirror the
# suite uses): every git source of kata-agent (the release and its six git dependencies).
SHARED_SOURCES=$KD_SHARED_SOURCES
gitfetch() {
	mkdir -p "$T/art4/recipes" && cp "$ROOTDIR/artifacts/versions.yaml" "$T/art4/" &&
		printf 'shims:\n  qemu: [kgit]\n' >"$T/art4/shims.yaml" &&
		{
			printf 'name: kgit\nversion: "1"\n'
			sed -n '/^sources:/,/^fetch:/p' "$ROOTDIR/artifacts/recipes/kata-agent.yaml" | sed '$d'
			printf "steps: ['true']\noutputs: [opt/kata/x]\n"
		} >"$T/art4/recipes/kgit.yaml" &&
		$KB --artifacts "$T/art4" --cache "$T/g4" --mirror "$SHARED_SOURCES" fetch kgit &&
		[ "$(ls "$T/g4/git" | wc -l)" -eq 7 ]
}
check "the kata-agent recipe's 7 git pins verify against $SHARED_SOURCES" gitfetch

bad_recipe() { # NAME BODY: a recipe in a copy of the artifacts
	mkdir -p "$T/art3/recipes"
	cp "$ART/versions.yaml" "$T/art3/"
	printf 'shims:\n  qemu: [%s]\n' "$1" >"$T/art3/shims.yaml"
	printf '%s\n' "$2" >"$T/art3/recipes/$1.yaml"
}
KB3="$KB --artifacts $T/art3 --cache $T/c6 --out $T/o6"
bad_recipe badsum "name: badsum
version: '1'
sources:
  - url: http://$F/files/kata-src.tar.gz
    sha256: '$(printf '%064d' 0)'
steps: ['true']
outputs: [opt/kata/x]"
expect_fail "source whose sha256 differs" "sha256 is $src_sha" $KB3 fetch badsum
check "the mismatching download was not kept" \
	sh -c "! ls '$T/c6/sources/sha256/' | grep -q . && ! ls '$T/c6/partial/' | grep -q ."
bad_recipe missing "name: missing
version: '1'
sources:
  - url: http://$F/files/nope.tar.gz
    sha256: $src_sha
steps: ['true']
outputs: [opt/kata/x]"
expect_fail "source that answers 404" "HTTP 404" $KB3 fetch missing
bad_recipe unknown "name: unknown
version: '1'
stpes: [true]
steps: ['true']
outputs: [opt/kata/x]"
expect_fail "recipe with an unknown key names file:line" "unknown.yaml:3: recipe: unknown key 'stpes'" \
	$KB3 component unknown
bad_recipe outside "name: outside
version: '1'
steps: ['true']
outputs:
  - opt/kata/ok
  - etc/passwd"
expect_fail "output outside opt/kata/" "outside.yaml:6: outputs: 'etc/passwd' is not a path under opt/kata/" \
	$KB3 component outside
bad_recipe noout "name: noout
version: '1'
steps: ['mkdir -p \$KB_OUT/opt/kata && echo hi > \$KB_OUT/opt/kata/a']
outputs: [opt/kata/a, opt/kata/b]"
expect_fail "recipe with a missing output" "output 'opt/kata/b' was not produced" $KB3 component noout
bad_recipe env "name: env
version: '1'
steps:
  - |
    if curl -s -m 2 -o /dev/null http://$F/files/kata-src.tar.gz; then echo network-reachable; exit 1; fi
    mkdir -p \$KB_OUT/opt/kata
    { env | LC_ALL=C sort; echo umask=\$(umask); } > \$KB_OUT/opt/kata/env
outputs: [opt/kata/env]"
check "steps run without network, in the fixed environment" $KB3 component env
mkdir -p "$T/envx" && tar -C "$T/envx" -xf "$T/o6/kata-static-env.tar.zst"
check "fixed environment: SOURCE_DATE_EPOCH TZ LC_ALL umask HOME" sh -c "
	grep -qx SOURCE_DATE_EPOCH=1700000000 '$T/envx/opt/kata/env' &&
	grep -qx TZ=UTC '$T/envx/opt/kata/env' && grep -qx LC_ALL=C '$T/envx/opt/kata/env' &&
	grep -qx umask=0022 '$T/envx/opt/kata/env' && grep -q '^HOME=$T/c6/work/env/home' '$T/envx/opt/kata/env'"

expect_fail "registry 500 is a clear error" "HTTP 500 Internal Server Error (registry error)" \
	$KB push --layout "$T/o1/image" --registry "$F/fail500/x" --tag t --plain-http
expect_fail "registry 403 is a clear error" "HTTP 403 Forbidden (denied" \
	$KB push --layout "$T/o1/image" --registry "$F/deny/x" --tag t --plain-http
expect_fail "registry 401 without credentials" "HTTP 401" \
	env -u KATA_BUILD_REGISTRY_USER $KB push --layout "$T/o1/image" --registry "$F/auth/x" --tag t --plain-http
check "bearer token flow with basic credentials from the environment" \
	env KATA_BUILD_REGISTRY_USER=user KATA_BUILD_REGISTRY_PASSWORD=secret \
	$KB push --layout "$T/o1/image" --registry "$F/auth/x" --tag t --plain-http
expect_fail "wrong credentials" "HTTP 401" env KATA_BUILD_REGISTRY_USER=user \
	KATA_BUILD_REGISTRY_PASSWORD=wrong $KB push --layout "$T/o1/image" --registry "$F/auth/x" --tag t --plain-http
# ---- the guest kernel: recorded reference, boot under QEMU TCG ----
# "TYPE MODE SIZE SHA256-or-TARGET PATH" for every entry of a component tarball.
tar_listing() {
	zstd -dc "$1" | python3 -c '
import hashlib, sys, tarfile
with tarfile.open(fileobj=sys.stdin.buffer, mode="r|") as t:
    for m in t:
        h = hashlib.sha256(t.extractfile(m).read()).hexdigest() if m.isfile() else (m.linkname or "-")
        print("%s %o %d %s %s" % (m.type.decode() or "0", m.mode, m.size, h, m.name))'
}
kernel_vs_reference() { # TARBALL KEY
	local ref="$ROOTDIR/artifacts/kernel/reference" want got
	[ -f "$1" ] || { echo "# no kernel component: $1"; return 1; }
	want=$(awk '$1 == "sha256" {print $2}' "$ref")
	got=$(sha256sum <"$1" | cut -d' ' -f1)
	echo "# kernel sha256: built $got, reference ${want:-(none in $ref)}"
	[ ${#want} = 64 ] && [ "$got" = "$want" ] && return 0
	[ "$2" = "$(awk '$1 == "key" {print $2}' "$ref")" ] ||
		echo "# the kernel's inputs changed (key $2 is not the reference's): after make kernel-repro, record the new reference (docs/RECIPES.md)"
	tar_listing "$1" >"$T/kernel.entries"
	grep '^entry ' "$ref" | cut -d' ' -f2- | diff - "$T/kernel.entries" >"$T/kernel.diff" ||
		true
	grep -m2 '^[<>]' "$T/kernel.diff" |
		sed 's/^</# first differing entry, reference:/; s/^>/# first differing entry, built:    /'
	[ -s "$T/kernel.diff" ] || echo "# every entry equals the reference: only the compressed" \
		"stream differs (lib/tarball's zstd writer changed? bump KD_BUILDER_VERSION)"
	echo "# this build as a reference (docs/RECIPES.md, 'The kernel reference'):"
	{ echo "key $2"; echo "sha256 $got"; sed 's/^/entry /' "$T/kernel.entries"; } | sed 's/^/#ref /'
	return 1
}
# The root QEMU runs in: the installed payload's opt/kata, glibc's shared objects (libc6's
# files), empty dev/ proc/ tmp/ and test/ for the guest's files; nothing else. in_root runs a
# command chrooted there in a private mount namespace (the host's /dev and /proc bound in, gone
# with the namespace).
R=$T/qroot
make_qemu_root() {
	local f
	mkdir -p "$R/dev" "$R/proc" "$R/tmp" "$R/test" "$R/opt" && cp -a "$T/host/opt/kata" "$R/opt/" ||
		return 1
	for f in $(dpkg -L libc6 | grep -E '/[^/]+\.so(\.[0-9]+)*$'); do
		[ -e "$f" ] && { cp -L --parents "$f" "$R" || return 1; }
	done
	echo "# qemu root: $(find "$R" -type f | wc -l) files, $(find "$R" -type f -path "$R/opt/kata/*" | wc -l) of them the payload's"
}
in_root() {
	timeout 300 unshare -m --propagation private sh -c 'r=$1; shift
		mount --rbind /dev "$r/dev" && mount -t proc proc "$r/proc" && exec chroot "$r" "$@"' \
		sh "$R" "$@"
}
qemu_pin=$(awk '/^  qemu_version:/{gsub("\"", ""); print $2}' "$ART/versions.yaml")
check "qemu root: the installed payload and glibc only" make_qemu_root
check "qemu: a static binary" sh -c "! readelf -lW '$R/opt/kata/bin/qemu-system-x86_64' | grep -q INTERP"
in_root /opt/kata/bin/qemu-system-x86_64 --version >"$T/qemu-version" 2>&1 || true
sed 's/^/# /' "$T/qemu-version"
check "qemu --version in the root is the pin ($qemu_pin)" \
	grep -q "^QEMU emulator version $qemu_pin (kata-deploy " "$T/qemu-version"
in_root /opt/kata/bin/qemu-system-x86_64 -device help >"$T/qemu-devices" 2>&1 || true
qemu_devices() {
	local d
	for d in virtio-blk-pci virtio-scsi-pci scsi-hd virtio-net-pci virtio-rng-pci virtio-serial-pci \
		virtconsole virtio-balloon-pci virtio-9p-pci vhost-vsock-pci vhost-user-vsock-pci \
		vhost-user-fs-pci vhost-user-blk-pci pcie-root-port pci-bridge nvdimm pc-dimm vfio-pci \
		pvpanic; do
		grep -q "^name \"$d\"" "$T/qemu-devices" || { echo "# missing device $d"; return 1; }
	done
}
check "qemu: the devices Kata's qemu shim uses" qemu_devices
boot_kernel() { # VMLINUX: boot to kb-guest-init under the payload's QEMU in the root; serial in $T/boot.log
	mkdir -p "$T/initrd" "$R/test/share" && echo kb-9p-ok >"$R/test/share/marker" &&
		cc -static -Os -o "$T/initrd/init" "$ROOTDIR/tests/tools/kb-guest-init.c" &&
		(cd "$T/initrd" && find . | LC_ALL=C sort | cpio -o -H newc --quiet) >"$R/test/initrd.cpio" &&
		cp "$1" "$R/test/vmlinux" && truncate -s 8M "$R/test/disk.img" &&
		truncate -s 128M "$R/test/nvdimm.img" || return 1
	in_root /opt/kata/bin/qemu-system-x86_64 -machine q35,nvdimm=on -accel tcg -smp 2 \
		-m 256,slots=2,maxmem=1G -nodefaults -display none -serial stdio -no-reboot \
		-kernel /test/vmlinux -initrd /test/initrd.cpio -append 'console=ttyS0 panic=-1' \
		-drive file=/test/disk.img,format=raw,if=none,id=d0 -device virtio-blk-pci,drive=d0 \
		-device virtio-rng-pci -device virtio-serial-pci -device virtio-scsi-pci \
		-device virtio-balloon-pci \
		-object memory-backend-file,id=nv0,mem-path=/test/nvdimm.img,size=128M,share=on \
		-device nvdimm,memdev=nv0,id=nv0dev \
		-virtfs local,path=/test/share,mount_tag=kbshare,security_model=none,id=fs0 \
		>"$T/boot.log" 2>&1
}
if [ "$KD_TEST_KERNEL" != 0 ]; then
	kc=$T/c1 ko=$T/o1
	if [ "$KD_TEST_KERNEL" = ref ]; then
		# By key in the real cache, like QEMU: built once (and shared with test-kata), a hit
		# on later runs; the sha256 is compared with the reference either way, and a hit's
		# tarball is rehashed against its stamp. make kernel-repro builds it from clean caches.
		kc=${KD_BUILD_CACHE:-$HOME/.cache/kata-build} ko=$T/o7
		start=$(date +%s)
		check "kernel built (or taken from $kc by its key)" sh -c \
			"$KB --artifacts '$ART' --cache '$kc' --out '$ko' component kernel >'$T/kernel.out' 2>&1"
		echo "# kernel build: $(( $(date +%s) - start ))s"
	else
		$KB --artifacts "$ART" --cache "$kc" --out "$ko" component kernel >"$T/kernel.out" 2>&1
	fi
	tail -3 "$T/kernel.out" | sed 's/^/# /'
	kkey=$(awk '$1 == "kernel" {sub("key=", "", $5); print $5}' "$T/kernel.out")
	check "kernel sha256 equals the recorded reference" kernel_vs_reference "$ko/kata-static-kernel.tar.zst" "$kkey"
	mkdir -p "$T/kx" && tar -C "$T/kx" -xf "$ko/kata-static-kernel.tar.zst"
	start=$(date +%s)
	check "vmlinux.container boots under the payload's qemu-system-x86_64 -machine q35 (TCG, 2 vCPUs) in the root" \
		boot_kernel "$T/kx/opt/kata/share/kata-containers/vmlinux.container"
	echo "# boot: $(( $(date +%s) - start ))s"
	grep -a '^KB' "$T/boot.log" | tr -d '\r' | sed 's/^/# /'
	check "guest: release is the pinned kernel" grep -aq "^KB-GUEST-UP release=$(awk '/kernel_version:/{gsub("\"", ""); print $2}' "$ART/versions.yaml") machine=x86_64" "$T/boot.log"
	check "guest: both vCPUs online (SMP)" grep -aq '^KB cpus=0-1' "$T/boot.log"
	check "guest: virtio-pci blk, console, rng, balloon, scsi, 9p bound to their drivers" sh -c "
		grep -a '^KB virtio=' '$T/boot.log' | grep -q '0x0002:virtio_blk' &&
		grep -a '^KB virtio=' '$T/boot.log' | grep -q '0x0003:virtio_console' &&
		grep -a '^KB virtio=' '$T/boot.log' | grep -q '0x0004:virtio_rng' &&
		grep -a '^KB virtio=' '$T/boot.log' | grep -q '0x0005:virtio_balloon' &&
		grep -a '^KB virtio=' '$T/boot.log' | grep -q '0x0008:virtio_scsi' &&
		grep -a '^KB virtio=' '$T/boot.log' | grep -q '0x0009:9pnet_virtio'"
	check "guest: ext4, 9p, virtiofs, overlay filesystems" sh -c "
		grep -a '^KB fs=' '$T/boot.log' | grep -qw ext4 && grep -a '^KB fs=' '$T/boot.log' | grep -qw 9p &&
		grep -a '^KB fs=' '$T/boot.log' | grep -qw virtiofs && grep -a '^KB fs=' '$T/boot.log' | grep -qw overlay"
	check "guest: vsock socket, a file read over virtio-9p, the virtio disk" sh -c "
		grep -aq '^KB vsock=ok' '$T/boot.log' && grep -aq '^KB 9p=kb-9p-ok' '$T/boot.log' &&
		grep -aq '^KB blk=16384' '$T/boot.log' && grep -aq '^KB-GUEST-DONE' '$T/boot.log'"
	check "guest: the NVDIMM as /dev/pmem0 (how Kata attaches its image)" grep -aq '^KB pmem=262144' "$T/boot.log"
	cgroup_controllers() {
		local c
		for c in cpuset cpu io memory hugetlb pids; do
			grep -a '^KB cgroup2=' "$T/boot.log" | tr -d '\r' | grep -qw "$c" ||
				{ echo "# cgroup2 controller $c missing"; return 1; }
		done
	}
	check "guest: cgroup2 mounts with the cpuset cpu io memory hugetlb pids controllers" cgroup_controllers
	check "guest: user/mount/pid/net/uts/ipc/cgroup namespaces, a seccomp filter, inotify" sh -c "
		grep -aq '^KB ns=ok' '$T/boot.log' && grep -aq '^KB seccomp=ok' '$T/boot.log' &&
		grep -aq '^KB inotify=ok' '$T/boot.log'"
fi
finish
