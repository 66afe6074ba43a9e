#!/usr/bin/env bash
# Pull only what is needed (issue 13 part 4): the ~BENCH_MB (300) MB Kata-shaped tree of
# bench/subset.sh (three components: kata, qemu, clh; shims qemu = kata + qemu, clh = kata + clh),
# packed, pushed with `kata-build push --payload` to Debian's docker-registry on loopback, then
# `kata-deploy install --shims qemu` into an empty root, alternating, RUNS (5) each:
#   file  from the payload file on disk (what a node does with the payload in its image)
#   oci   from oci://127.0.0.1:PORT/bench/payload@sha256:… with an empty blob cache (a fresh node)
# Prints medians of wall time, CPU time (user + system), peak RSS, and the bytes the registry's
# access log shows each oci run pulled against the payload's size. Not part of make check.
source "$(dirname "$0")/lib.sh"
bench_workdir oci
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$W"' EXIT

python3 bench/gen-tree.py "$W/src" "${BENCH_MB:-300}"
synthetic_spec >"$W/spec.yaml"
"$KD" payload pack "$W/src" --spec "$W/spec.yaml" -o "$W/p.tar.zst" >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$W/reg"
printf 'version: 0.1\nlog: {level: error, accesslog: {disabled: false}}\nstorage:\n  filesystem: {rootdirectory: %s}\nhttp:\n  addr: 127.0.0.1:%s\n' \
	"$W/reg" "$port" >"$W/reg.yml"
docker-registry serve "$W/reg.yml" >"$W/reg.log" 2>&1 &
pid=$!
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/v2/" && break; sleep 0.1; done
digest=$("$KB" --out "$W/kb" push --payload "$W/p.tar.zst" --registry "127.0.0.1:$port/bench/payload" \
	--tag v1 --plain-http 2>/dev/null | awk '/^payload artifact/{print $4}')
psize=$(stat -c %s "$W/p.tar.zst")
echo "tree: $(du -sm "$W/src" | cut -f1) MB, $(find "$W/src" -type f | wc -l) files; payload $psize bytes; artifact $digest"
for _ in $(seq "$RUNS"); do
	for v in file oci; do
		rm -rf "$W/root" "$W/cache"; mkdir -p "$W/root"; sync
		src=$W/p.tar.zst
		extra=()
		[ "$v" = oci ] && src="oci://127.0.0.1:$port/bench/payload@$digest" &&
			extra=(--plain-http --blob-cache "$W/cache")
		m=$(wc -l <"$W/reg.log")
		/usr/bin/time -f '%e %U %S %M' -o "$W/time" \
			"$KD" install --root "$W/root" --payload "$src" "${extra[@]}" --shims qemu \
			--log-level debug 2>"$W/log" >/dev/null
		read -r t u s rss <"$W/time"
		echo "$t" >>"$W/t-$v"; echo "$u + $s" | bc >>"$W/cpu-$v"; echo "$rss" >>"$W/rss-$v"
		if [ "$v" = oci ]; then
			tail -n +$((m + 1)) "$W/reg.log" |
				sed -n 's|.*"GET /v2/[^ ]*/blobs/[^ ]* HTTP/1.1" [0-9]* \([0-9]*\).*|\1|p' |
				awk '{s += $1} END {print s + 0}' >>"$W/pulled"
		fi
	done
done
printf '%-6s %10s %12s %14s\n' "" "wall (s)" "CPU (s)" "peak RSS (KiB)"
for v in file oci; do
	printf '%-6s %10s %12s %14s\n' "$v" "$(median <"$W/t-$v")" "$(median <"$W/cpu-$v")" "$(median <"$W/rss-$v")"
done
echo "oci: pulled $(median <"$W/pulled") bytes of blobs per fresh node, of the payload's $psize"
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
