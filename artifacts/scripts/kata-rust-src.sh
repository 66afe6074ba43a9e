# Sourced by the Rust recipes (kata-agent, agent-ctl, …): one prepared copy of upstream's Rust
# workspace per tree id under $KB_SHARED, so every component builds from the same path and the
# shared cargo target dir ($CARGO_TARGET_DIR) reuses what the others compiled. Prepared once,
# under a lock: the release archive, its GitHub git dependencies (sources in the recipe, each
# pinned by tree id) wired in with cargo [patch] entries, and Cargo.lock with only the `source`
# lines of those git packages removed (what [patch] changes; every crates.io checksum stays, so
# `--locked` still holds). Sets KATA_SRC and KATA_RUSTFLAGS.
kata_src_prepare() {
	local ver=$1 tree=$2
	# The git dependencies sit inside the workspace's directory (kb-deps/, added to the
	# workspace's `exclude` so that they stay path dependencies, not members): cargo hashes a
	# path package's location into its -C metadata (so into symbol names and the binary)
	# relative to the workspace root when it is under it, and absolutely when it is not — so
	# outside, the output would depend on where the build cache is (kata-build verify builds in
	# a scratch cache and differed). ".2": the layout of the prepared copy.
	local root=$KB_SHARED/kata-src/$tree.2
	KATA_SRC=$root/kata-containers
	mkdir -p "$KB_SHARED/kata-src"
	exec 9>"$KB_SHARED/kata-src/.lock"
	flock 9
	if [ ! -e "$root/.kb-ready" ]; then
		rm -rf "$root"
		mkdir -p "$KATA_SRC"
		tar -xzf "$KB_SRC/kata-containers-$ver.tar.gz" -C "$KATA_SRC" --strip-components=1
		local d
		for d in cloud-hypervisor micro-http s390-tools regorus devicemapper-rs pcilibs-rs; do
			mkdir -p "$KATA_SRC/kb-deps/$d"
			tar -xzf "$KB_SRC"/"$d"-*.tar.gz -C "$KATA_SRC/kb-deps/$d" --strip-components=1
		done
		mkdir -p "$KATA_SRC/.cargo"
		cat > "$KATA_SRC/.cargo/config.toml" <<-'TOML'
		[patch."https://github.com/cloud-hypervisor/cloud-hypervisor"]
		api_client = { path = "kb-deps/cloud-hypervisor/api_client" }
		[patch."https://github.com/firecracker-microvm/micro-http"]
		micro_http = { path = "kb-deps/micro-http" }
		[patch."https://github.com/ibm-s390-linux/s390-tools"]
		s390_pv_core = { path = "kb-deps/s390-tools/rust/pv_core" }
		[patch."https://github.com/microsoft/regorus"]
		regorus = { path = "kb-deps/regorus" }
		[patch."https://github.com/stratis-storage/devicemapper-rs"]
		devicemapper = { path = "kb-deps/devicemapper-rs" }
		devicemapper-sys = { path = "kb-deps/devicemapper-rs/devicemapper-rs-sys" }
		[patch."https://github.com/zvonkok/pcilibs-rs"]
		pcilibs-rs = { path = "kb-deps/pcilibs-rs" }
		TOML
		sed -i '/^source = "git+https:\/\/github\.com\//d' "$KATA_SRC/Cargo.lock"
		sed -i 's/^exclude = \[$/&\n  "kb-deps",/' "$KATA_SRC/Cargo.toml"
		grep -qx '  "kb-deps",' "$KATA_SRC/Cargo.toml"
		touch "$root/.kb-ready"
	fi
	flock -u 9
	# Static glibc (the agent is PID 1 in an initrd with nothing else in it); no build paths
	# in the binaries. The same flags for every component keep the target dir shared.
	KATA_RUSTFLAGS="-C target-feature=+crt-static --remap-path-prefix=$root=/kata --remap-path-prefix=$CARGO_HOME=/cargo --remap-path-prefix=$CARGO_TARGET_DIR=/target"
	export LIBSECCOMP_LINK_TYPE=static LIBSECCOMP_LIB_PATH=/usr/lib/x86_64-linux-gnu
}
