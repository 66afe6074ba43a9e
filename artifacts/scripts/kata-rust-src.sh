# Sourced by the Rust recipes (kata-agent, agent-ctl, …): one prepared copy of upstream's Rust
# workspace per tree id under $KB_SHARED, so every component builds from the same path and the
# shared cargo target dir ($CARGO_TARGET_DIR) reuses what the others compiled. Prepared once,
# under a lock: the release archive, its GitHub git dependencies (sources in the recipe, each
# pinned by tree id) wired in with cargo [patch] entries, and Cargo.lock with only the `source`
# lines of those git packages removed (what [patch] changes; every crates.io checksum stays, so
# `--locked` still holds). Sets KATA_SRC and KATA_RUSTFLAGS.
kata_src_prepare() {
	local ver=$1 tree=$2
	# The git dependencies sit beside the workspace, not in it: cargo makes every path
	# dependency under a workspace's directory a member of that workspace.
	local root=$KB_SHARED/kata-src/$tree
	KATA_SRC=$root/kata-containers
	mkdir -p "$KB_SHARED/kata-src"
	exec 9>"$KB_SHARED/kata-src/.lock"
	flock 9
	if [ ! -e "$root/.kb-ready" ]; then
		rm -rf "$root"
		mkdir -p "$KATA_SRC" "$root/deps"
		tar -xzf "$KB_SRC/kata-containers-$ver.tar.gz" -C "$KATA_SRC" --strip-components=1
		local d
		for d in cloud-hypervisor micro-http s390-tools regorus devicemapper-rs pcilibs-rs; do
			mkdir "$root/deps/$d"
			tar -xzf "$KB_SRC"/"$d"-*.tar.gz -C "$root/deps/$d" --strip-components=1
		done
		mkdir -p "$KATA_SRC/.cargo"
		cat > "$KATA_SRC/.cargo/config.toml" <<-'TOML'
		[patch."https://github.com/cloud-hypervisor/cloud-hypervisor"]
		api_client = { path = "../deps/cloud-hypervisor/api_client" }
		[patch."https://github.com/firecracker-microvm/micro-http"]
		micro_http = { path = "../deps/micro-http" }
		[patch."https://github.com/ibm-s390-linux/s390-tools"]
		s390_pv_core = { path = "../deps/s390-tools/rust/pv_core" }
		[patch."https://github.com/microsoft/regorus"]
		regorus = { path = "../deps/regorus" }
		[patch."https://github.com/stratis-storage/devicemapper-rs"]
		devicemapper = { path = "../deps/devicemapper-rs" }
		devicemapper-sys = { path = "../deps/devicemapper-rs/devicemapper-rs-sys" }
		[patch."https://github.com/zvonkok/pcilibs-rs"]
		pcilibs-rs = { path = "../deps/pcilibs-rs" }
		TOML
		sed -i '/^source = "git+https:\/\/github\.com\//d' "$KATA_SRC/Cargo.lock"
		touch "$root/.kb-ready"
	fi
	flock -u 9
	# Static glibc (the agent is PID 1 in an initrd with nothing else in it); no build paths
	# in the binaries. The same flags for every component keep the target dir shared.
	KATA_RUSTFLAGS="-C target-feature=+crt-static --remap-path-prefix=$root=/kata --remap-path-prefix=$CARGO_HOME=/cargo"
	export LIBSECCOMP_LINK_TYPE=static LIBSECCOMP_LIB_PATH=/usr/lib/x86_64-linux-gnu
}
