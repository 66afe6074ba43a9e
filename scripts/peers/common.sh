#!/usr/bin/env bash
# Shared helpers for scripts/peers/*.sh: build real test peers (containerd 2.x,
# kube-apiserver, CRI-O, ...) from Go modules, cached under $KD_PEERS_DIR.
#
# Layout:
#   $KD_PEERS_DIR/bin/          installed binaries (add to PATH or use $KD_PEERS_BIN)
#   $KD_PEERS_DIR/stamps/       one stamp per peer+version; a present stamp + binary = skip
#   $KD_PEERS_DIR/go/           GOPATH, GOMODCACHE, GOCACHE (self-contained cache)
#   $KD_PEERS_DIR/src/<peer>/   throwaway build modules
#   $KD_PEERS_DIR/logs/         build logs
#   $KD_PEERS_DIR/.lock         flock so two builds never run at once
#
# Env knobs: KD_PEERS_DIR, KD_PEERS_FORCE=1 (rebuild), KD_PEERS_JOBS (go -p, default 2),
#            KD_PEERS_NICE (default 15), GOPROXY (default https://proxy.golang.org).
# Sourced, not run.

set -euo pipefail

KD_PEERS_DIR=${KD_PEERS_DIR:-$HOME/.cache/kata-deploy-peers}
KD_PEERS_BIN=$KD_PEERS_DIR/bin
KD_PEERS_STAMPS=$KD_PEERS_DIR/stamps
KD_PEERS_SRC=$KD_PEERS_DIR/src
KD_PEERS_LOGS=$KD_PEERS_DIR/logs
KD_PEERS_JOBS=${KD_PEERS_JOBS:-2}
KD_PEERS_NICE=${KD_PEERS_NICE:-15}
export KD_PEERS_DIR KD_PEERS_BIN

mkdir -p "$KD_PEERS_BIN" "$KD_PEERS_STAMPS" "$KD_PEERS_SRC" "$KD_PEERS_LOGS" "$KD_PEERS_DIR/go"

# Self-contained Go environment: nothing from the user's GOPATH or caches.
export GOPATH=$KD_PEERS_DIR/go
export GOMODCACHE=$KD_PEERS_DIR/go/pkg/mod
export GOCACHE=$KD_PEERS_DIR/go/cache
export GOFLAGS="-p=$KD_PEERS_JOBS -buildvcs=false -modcacherw"
export GOTOOLCHAIN=local
export GOPROXY=${GOPROXY:-https://proxy.golang.org,direct}
export GO111MODULE=on
export GOWORK=off
export CGO_ENABLED=${CGO_ENABLED:-1}

peers_log() { printf '[peers] %s\n' "$*" >&2; }
peers_die() { printf '[peers] ERROR: %s\n' "$*" >&2; exit 1; }

peers_need_go() {
	command -v go >/dev/null 2>&1 || peers_die "go not found in PATH (need Go >= 1.23)"
	local v; v=$(go env GOVERSION); v=${v#go}
	local maj=${v%%.*} rest=${v#*.}; local min=${rest%%.*}
	if [ "$maj" -lt 1 ] || { [ "$maj" -eq 1 ] && [ "$min" -lt 23 ]; }; then
		peers_die "go $v is too old (need >= 1.23)"
	fi
}

# peers_stamp NAME VERSION -> path of the stamp file
peers_stamp() { printf '%s/%s@%s\n' "$KD_PEERS_STAMPS" "$1" "$2"; }

# peers_is_built NAME VERSION BIN... : true if the stamp exists and every binary is there.
peers_is_built() {
	local name=$1 ver=$2; shift 2
	[ "${KD_PEERS_FORCE:-0}" = 1 ] && return 1
	[ -f "$(peers_stamp "$name" "$ver")" ] || return 1
	local b; for b in "$@"; do [ -x "$KD_PEERS_BIN/$b" ] || return 1; done
	return 0
}

# peers_mark_built NAME VERSION SECONDS : write the stamp (and clear older versions of NAME).
peers_mark_built() {
	local name=$1 ver=$2 secs=${3:-0}
	rm -f "$KD_PEERS_STAMPS/$name@"*
	printf 'name=%s\nversion=%s\nbuild_seconds=%s\ngo=%s\ndate=%s\n' \
		"$name" "$ver" "$secs" "$(go env GOVERSION)" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
		> "$(peers_stamp "$name" "$ver")"
}

# peers_lock : take the exclusive build lock for the rest of the calling shell (fd 9).
peers_lock() {
	exec 9>"$KD_PEERS_DIR/.lock"
	if ! flock -n 9; then
		peers_log "waiting for the build lock $KD_PEERS_DIR/.lock"
		flock 9
	fi
}

# peers_go ARGS... : run go niced (the machine is shared).
peers_go() { nice -n "$KD_PEERS_NICE" go "$@"; }

# peers_install SRC NAME : install a built binary atomically as $KD_PEERS_BIN/NAME.
peers_install() {
	local src=$1 name=$2
	install -m 0755 "$src" "$KD_PEERS_BIN/.$name.tmp"
	mv -f "$KD_PEERS_BIN/.$name.tmp" "$KD_PEERS_BIN/$name"
}

# peers_module_dir NAME : fresh throwaway module dir for NAME.
peers_module_dir() {
	local d=$KD_PEERS_SRC/$1
	rm -rf "$d"; mkdir -p "$d"; printf '%s\n' "$d"
}

# peers_free_port : print a free TCP port on 127.0.0.1.
peers_free_port() {
	python3 - <<'PY'
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()
PY
}

# peers_k8s_module VERSION : print the dir of a throwaway module that requires
# k8s.io/kubernetes@VERSION with every staging module (k8s.io/api, apimachinery,
# client-go, ...) replaced by its published v0.<minor>.<patch> release. The list
# comes from kubernetes' own go.mod replace block, so it is always complete.
# Shared by kube-apiserver.sh and kubectl.sh so they reuse one module graph.
peers_k8s_module() {
	local ver=$1 d=$KD_PEERS_SRC/k8s-$1
	local staging=v0.${ver#v1.}
	if [ -f "$d/.ready" ]; then printf '%s\n' "$d"; return 0; fi
	rm -rf "$d"; mkdir -p "$d"
	local gomod json
	json=$(cd "$d" && go mod download -json "k8s.io/kubernetes@$ver")
	gomod=$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
	[ -f "$gomod" ] || peers_die "could not download k8s.io/kubernetes@$ver go.mod"
	local gov; gov=$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$gomod")
	{
		printf 'module kd-peers/k8s\n\ngo %s\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "$gov" "$ver"
		sed -n '/^replace (/,/^)/p' "$gomod" | sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\t\1 => \1 '"$staging"'#p'
		printf ')\n'
	} > "$d/go.mod"
	# Seed go.sum with kubernetes' own (robust against checksum-database gaps).
	local src; src=$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	[ -f "$src/go.sum" ] && cp "$src/go.sum" "$d/go.sum" && chmod u+w "$d/go.sum"
	# Resolve the rest of the graph once (writes go.sum); later builds are offline-fast.
	(cd "$d" && go mod download k8s.io/kubernetes >/dev/null)
	touch "$d/.ready"
	printf '%s\n' "$d"
}

# peers_k8s_ldflags VERSION : -X flags so the binary reports its real version
# (kube-apiserver derives its emulation/compatibility version from it).
peers_k8s_ldflags() {
	local ver=$1 rest=${1#v1.}; local minor=${rest%%.*}
	local p f=""
	for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		f="$f -X $p.gitVersion=$ver -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
		f="$f -X $p.buildDate=1970-01-01T00:00:00Z -X $p.gitCommit=0000000000000000000000000000000000000000"
	done
	printf -- '-s -w%s\n' "$f"
}
