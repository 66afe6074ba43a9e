#!/usr/bin/env bash
# Installs the pinned toml-test (github.com/toml-lang/toml-test, the official TOML test suite)
# and prints its path on stdout.
#
# Built with Go from the Go module proxy:
#   GOBIN=<cache>/bin go install github.com/toml-lang/toml-test/v2/cmd/toml-test@v2.2.0
# v2.2.0 is the newest release (`go list -m -versions github.com/toml-lang/toml-test/v2`); the
# v1 line's last tag (v1.6.0) depends on a pseudo-version of BurntSushi/toml that the proxy no
# longer serves. The binary is cached in ${KD_PEERS_DIR:-$HOME/.cache/kata-deploy-peers}/bin,
# with its own GOPATH/GOCACHE there, so a second run only checks the cached version.
set -euo pipefail

TOML_TEST_MODULE=github.com/toml-lang/toml-test/v2/cmd/toml-test
TOML_TEST_VERSION=v2.2.0

PEERS=${KD_PEERS_DIR:-$HOME/.cache/kata-deploy-peers}
BIN=$PEERS/bin/toml-test

log() { echo "peers/toml-test: $*" >&2; }

check_version() {
	"$1" version 2>/dev/null | grep -q "toml-test $TOML_TEST_VERSION"
}

if [ -x "$BIN" ] && check_version "$BIN"; then
	echo "$BIN"
	exit 0
fi

command -v go >/dev/null || { log "missing tool: go (Debian: golang-go, or /usr/local/go/bin)"; exit 1; }
mkdir -p "$PEERS/bin" "$PEERS/go"
W=$(mktemp -d "$PEERS/.toml-test.XXXXXX")
trap 'rm -rf "$W"' EXIT
log "building $TOML_TEST_MODULE@$TOML_TEST_VERSION"
(
	cd "$W"
	export GOPATH=$PEERS/go GOMODCACHE=$PEERS/go/pkg/mod GOCACHE=$PEERS/go/cache
	export GOFLAGS="-modcacherw -buildvcs=false" GOWORK=off GO111MODULE=on
	export GOTOOLCHAIN=${GOTOOLCHAIN:-local} CGO_ENABLED=0
	GOBIN="$W/bin" nice -n 10 go install "$TOML_TEST_MODULE@$TOML_TEST_VERSION"
)
check_version "$W/bin/toml-test" || { log "built binary does not report $TOML_TEST_VERSION"; exit 1; }
mv -f "$W/bin/toml-test" "$BIN.tmp.$$"
mv -f "$BIN.tmp.$$" "$BIN"
log "installed $BIN ($TOML_TEST_VERSION)"
echo "$BIN"
