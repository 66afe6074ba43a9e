# The demo payload plus a nydus-snapshotter component holding the nydus-snapshotter peer's
# binaries (scripts/peers/nydus-snapshotter.sh, v0.15.15), laid out as
# artifacts/recipes/nydus-snapshotter.yaml builds them. Sourced after tests/lib.sh, in $ROOTDIR,
# by test-snapshotter.sh and test-systemd-nydus.sh. Builds the peer into its cache when missing.
#   nydus_payload OUT    packs it to OUT (its tree and spec in $T/nydus-tree, $T/nydus-spec.yaml)
# Sets NGRPC and NOVL (the peer's containerd-nydus-grpc and nydus-overlayfs).
scripts/peers/nydus-snapshotter.sh >&2
NGRPC=${KD_PEERS_DIR:-$HOME/.cache/kata-deploy-peers}/bin/containerd-nydus-grpc
NOVL=${KD_PEERS_DIR:-$HOME/.cache/kata-deploy-peers}/bin/nydus-overlayfs

nydus_payload() {
	local tree=$T/nydus-tree spec=$T/nydus-spec.yaml
	rm -rf "$tree"
	cp -a artifacts/demo/tree "$tree"
	install -D -m 0755 "$NGRPC" "$tree/opt/kata/libexec/nydus-snapshotter/containerd-nydus-grpc"
	install -D -m 0755 "$NOVL" "$tree/opt/kata/libexec/nydus-snapshotter/nydus-overlayfs"
	{
		sed '/^shims:/,$d' artifacts/demo/payload.yaml
		printf '  - name: nydus-snapshotter\n    version: "v0.15.15"\n    paths: ["libexec/nydus-snapshotter/"]\n'
		sed -n '/^shims:/,$p' artifacts/demo/payload.yaml
	} >"$spec"
	"$KD" payload pack "$tree" --spec "$spec" -o "$1" >/dev/null
}
