#!/usr/bin/env bash
# Runs the smoke test of every real test peer (tests/peers/smoke-*.sh).
# Peers that are not built yet are built first (scripts/peers/all.sh, cached: instant when
# they are); nothing is skipped. Set KD_PEERS_SMOKE="crio containerd2" for a subset.
set -u
cd "$(dirname "$0")/../.."
peers=${KD_PEERS_DIR:-$HOME/.cache/kata-deploy-peers}
pass=0 fail=0
need() { # smoke name -> binaries it needs
	case $1 in
	kube-apiserver) echo "kube-apiserver" ;;
	containerd2) echo "containerd2" ;;
	crio) echo "crio" ;;
	*) echo "" ;;
	esac
}
bash scripts/peers/all.sh kube-apiserver kubectl containerd2 crio >/dev/null || {
	echo "not ok - building the test peers failed (logs in $peers/logs)"; exit 1; }
list=${KD_PEERS_SMOKE:-$(cd tests/peers && ls smoke-*.sh | sed 's/^smoke-//; s/\.sh$//')}
for s in $list; do
	missing=""
	for b in $(need "$s"); do [ -x "$peers/bin/$b" ] || missing="$missing $b"; done
	if [ "$s" = kube-apiserver ]; then
		{ [ -x "$peers/bin/kubectl" ] || command -v kubectl >/dev/null; } || missing="$missing kubectl"
		{ [ -x "$peers/bin/etcd" ] || command -v etcd >/dev/null; } || missing="$missing etcd"
	fi
	if [ -n "$missing" ]; then
		fail=$((fail + 1)); echo "not ok - smoke-$s: missing after the build:$missing"; continue
	fi
	t0=$(date +%s)
	if bash "tests/peers/smoke-$s.sh" > "/tmp/kd-smoke-$s.$$.log" 2>&1; then
		pass=$((pass + 1)); echo "ok - smoke-$s ($(( $(date +%s) - t0 )) s, $(grep -c '^ok ' "/tmp/kd-smoke-$s.$$.log") checks)"
	else
		fail=$((fail + 1)); echo "not ok - smoke-$s ($(( $(date +%s) - t0 )) s)"
		sed 's/^/#   /' "/tmp/kd-smoke-$s.$$.log" | tail -40
	fi
	rm -f "/tmp/kd-smoke-$s.$$.log"
done
echo "peers-smoke: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
