# Host-root helpers shared by the demo and the tests (sourced).

# A listing of every path under DIR with type, mode, size, link target and content sha256:
# two equal snapshots mean the trees are equal byte for byte (mtimes aside).
snapshot() {
	(cd "$1" && find . -printf '%y %m %s %p -> %l\n' | LC_ALL=C sort |
		while read -r type mode size path rest; do
			if [ "$type" = f ]; then
				echo "$type $mode $size $path $(sha256sum "$path" | cut -c1-64)"
			else
				echo "$type $mode $path $rest"
			fi
		done)
}

# The demo host root: a minimal containerd config, nothing else.
make_host_root() {
	mkdir -p "$1/etc/containerd"
	printf 'version = 2\n\n[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]\n  runtime_type = "io.containerd.runc.v2"\n' >"$1/etc/containerd/config.toml"
}

