# Sourced by recipes that build a binary crate published on the crates registry (virtiofsd,
# vhost-device-vsock): the .crate is a url source pinned by the registry's own sha256, and the
# crate's published Cargo.lock pins its dependencies (`--locked`). crate_fetch runs in the fetch
# phase (network: dependencies into $CARGO_HOME), crate_build in the build phase (offline),
# statically linked against glibc and the C libraries it needs, so it runs on a node that has
# only glibc — or nothing at all.
crate_unpack() {
	local name=$1 ver=$2
	CRATE_DIR=$PWD/$name-$ver
	rm -rf "$CRATE_DIR"
	tar -xzf "$KB_SRC/$name-$ver.crate"
	test -f "$CRATE_DIR/Cargo.lock"
}

crate_fetch() {
	crate_unpack "$1" "$2"
	(cd "$CRATE_DIR" && cargo fetch --locked --target x86_64-unknown-linux-gnu)
}

# crate_build NAME VERSION BIN DEST [cargo args...]
crate_build() {
	local name=$1 ver=$2 bin=$3 dest=$4
	shift 4
	crate_unpack "$name" "$ver"
	export LIBSECCOMP_LINK_TYPE=static LIBSECCOMP_LIB_PATH=/usr/lib/x86_64-linux-gnu
	(cd "$CRATE_DIR" &&
		RUSTFLAGS="-C target-feature=+crt-static --remap-path-prefix=$CRATE_DIR=/$name --remap-path-prefix=$CARGO_HOME=/cargo" \
			cargo build --offline --locked --release --target x86_64-unknown-linux-gnu "$@")
	local out=$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release/$bin
	! readelf -l "$out" | grep -q 'Requesting program interpreter'
	install -D -m 0755 "$out" "$KB_OUT/$dest"
}
