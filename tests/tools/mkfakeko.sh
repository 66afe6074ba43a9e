#!/usr/bin/env bash
# Fake kernel modules for libkmod tests (recipe: reference/testinfra.md §6).
#
#   mkfakeko.sh ko OUT.ko EXPORTS_CSV IMPORTS_CSV [key=value ...]
#       one fake .ko: a relocatable object with a .modinfo section; exported symbols go in
#       __ksymtab_strings and dependencies come from undefined symbols (depmod ignores depends=).
#   mkfakeko.sh tree ROOT RELEASE
#       ROOT/lib/modules/RELEASE with the virtualization modules Kata wants, then depmod -b.
#       BUILTIN="name ..." makes those built in instead; SKIP="name ..." leaves them out.
set -euo pipefail

DEPMOD=${DEPMOD:-$(command -v depmod || echo /usr/sbin/depmod)}

mk_ko() {
	local out=$1 exp=$2 imp=$3 c i=0 s="" e m
	shift 3
	c=$(mktemp --suffix=.c)
	for kv in "$@"; do
		echo "static const char mi$i[] __attribute__((section(\".modinfo\"),used,aligned(1))) = \"$kv\";" >>"$c"
		i=$((i + 1))
	done
	if [ -n "$exp" ]; then
		for e in ${exp//,/ }; do
			echo "int $e(void){return 0;}" >>"$c"
			s="$s$e\\0"
		done
		echo "static const char kstr[] __attribute__((section(\"__ksymtab_strings\"),used,aligned(1))) = \"$s\";" >>"$c"
	fi
	if [ -n "$imp" ]; then
		for m in ${imp//,/ }; do echo "extern int $m(void);" >>"$c"; done
		printf 'int init_module(void){ return 0' >>"$c"
		for m in ${imp//,/ }; do printf ' + %s()' "$m" >>"$c"; done
		echo '; }' >>"$c"
	fi
	mkdir -p "$(dirname "$out")"
	gcc -c -O0 -fno-pic -o "$out" "$c"
	rm -f "$c"
}

# name|relative path|exports|imports|modinfo...
MODULES=(
	"kvm|kernel/arch/x86/kvm/kvm.ko|kvm_init|irqbypass_register|license=GPL|alias=devname:kvm|alias=char-major-10-232"
	"kvm_intel|kernel/arch/x86/kvm/kvm-intel.ko||kvm_init|license=GPL|alias=cpu:type:x86,ven*fam*mod*:feature:*0085*"
	"kvm_amd|kernel/arch/x86/kvm/kvm-amd.ko||kvm_init|license=GPL|alias=cpu:type:x86,ven*fam*mod*:feature:*00C2*"
	"irqbypass|kernel/virt/lib/irqbypass.ko|irqbypass_register||license=GPL"
	"vhost|kernel/drivers/vhost/vhost.ko|vhost_dev_init||license=GPL"
	"tap|kernel/drivers/net/tap.ko|tap_get_socket||license=GPL"
	"vhost_net|kernel/drivers/vhost/vhost_net.ko||vhost_dev_init,tap_get_socket|license=GPL|alias=devname:vhost-net|alias=char-major-10-238"
	"vsock|kernel/net/vmw_vsock/vsock.ko|vsock_core_register||license=GPL|alias=net-pf-40"
	"vhost_vsock|kernel/drivers/vhost/vhost_vsock.ko||vhost_dev_init,vsock_core_register|license=GPL|alias=devname:vhost-vsock|alias=char-major-10-241"
)

mk_tree() {
	local root=$1 rel=$2 dir entry name path exp imp builtin_list="" modinfo="" order=""
	dir=$root/lib/modules/$rel
	mkdir -p "$dir"
	for entry in "${MODULES[@]}"; do
		IFS='|' read -r -a f <<<"$entry"
		name=${f[0]} path=${f[1]} exp=${f[2]} imp=${f[3]}
		if [[ " ${SKIP:-} " == *" $name "* ]]; then continue; fi
		if [[ " ${BUILTIN:-} " == *" $name "* ]]; then
			builtin_list+="$path"$'\n'
			modinfo+="$name.license=GPL\\0"
			continue
		fi
		mk_ko "$dir/$path" "$exp" "$imp" "${f[@]:4}"
		order+="$path"$'\n'
	done
	printf '%s' "$order" >"$dir/modules.order"
	printf '%s' "$builtin_list" >"$dir/modules.builtin"
	printf "$modinfo" >"$dir/modules.builtin.modinfo"
	# A real depmod refuses a module whose imports have no exporter; a BUILTIN exporter is fine.
	"$DEPMOD" -b "$root" "$rel"
}

case ${1:-} in
ko)
	shift
	mk_ko "$@"
	;;
tree)
	shift
	mk_tree "$@"
	;;
*)
	echo "usage: $0 ko OUT.ko EXPORTS IMPORTS [k=v...] | tree ROOT RELEASE" >&2
	exit 2
	;;
esac
