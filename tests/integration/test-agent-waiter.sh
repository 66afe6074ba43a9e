#!/usr/bin/env bash
# The health servers the kubelet probes. The idle waiter left on every node after an install:
# serves /healthz, /readyz and the frozen /metrics on the inherited socket, stays under 4 MiB RSS,
# and on SIGTERM hands the socket back to the agent ("cleanup") with KD_AGENT_ON_TERM=1. Both it
# and the agent's own server (libmicrohttpd) answer while 33 clients trickle header bytes.
source "$(dirname "$0")/../lib.sh"
W=$KD_BUILD/kata-deploy-agent-wait
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$T/agent" <<EOS
#!/bin/sh
echo "args=\$* on_term=\$KD_AGENT_ON_TERM fd=\$KD_AGENT_HEALTH_FD metrics=\$KD_AGENT_METRICS" >"$T/agent.out"
EOS
chmod +x "$T/agent"
# Start the waiter the way the agent does: the listening socket inherited as an fd.
python3 - "$W" "$PORT" "$T/agent" <<'EOP' &
import os, socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[2]))); s.listen(64); os.set_inheritable(s.fileno(), True)
env = dict(os.environ, KD_AGENT_HEALTH_FD=str(s.fileno()), KD_AGENT_EXE=sys.argv[3],
           KD_AGENT_METRICS="state=2,ready=1",
           KD_AGENT_METRICS_TEXT="# TYPE kata_deploy_agent_ready gauge\nkata_deploy_agent_ready 1\n")
os.execve(sys.argv[1], [sys.argv[1], "wait"], env)
EOP
PID=$!
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
check "/healthz answers ok" test "$(curl -fs "http://127.0.0.1:$PORT/healthz")" = ok
check "/readyz answers ok" test "$(curl -fs "http://127.0.0.1:$PORT/readyz")" = ok
check "/metrics serves the agent's figures" grep -q "^kata_deploy_agent_ready 1$" <<<"$(curl -fs "http://127.0.0.1:$PORT/metrics")"
check "unknown paths are 404" test "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/nope")" = 404
check "POST is refused" test "$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$PORT/healthz")" = 405
# A client that connects and says nothing must not hold the others up.
python3 -c "import socket,time; s=socket.create_connection(('127.0.0.1',$PORT)); time.sleep(3)" &
SILENT=$!
sleep 0.2
start=$(date +%s%N)
curl -fs -m 5 "http://127.0.0.1:$PORT/healthz" >/dev/null
check "a silent client does not hold the others up" test $(( ($(date +%s%N) - start) / 1000000 )) -lt 1000
kill $SILENT 2>/dev/null || true
# Issue 14: 33 clients trickling header lines (a byte every 1.5 s resets any idle timeout) must
# not keep the probes out: each answers within 3 s while they trickle, and the server cuts each
# trickler at its total deadline (3 s from accept; the report notices a close within 50 ms).
probe_under_trickle() { # NAME PORT PATH... (the tricklers run for 12 s)
	local name=$1 port=$2 path code slow; shift 2
	python3 "$ROOTDIR/tests/tools/trickle.py" 127.0.0.1 "$port" 33 1.5 12 "$T/trickle-$name" &
	slow=$!
	sleep 1.5
	for path in "$@"; do
		start=$(date +%s%N)
		code=$(curl -s -o /dev/null -m 3 -w '%{http_code}' "http://127.0.0.1:$port$path" || true)
		check "$name: $path answers ($code) within 3 s while 33 clients trickle ($(( ($(date +%s%N) - start) / 1000000 )) ms)" \
			test "$code" != 000
	done
	wait $slow || true
	local open n
	open=$(grep -c open "$T/trickle-$name" || true)
	n=$(wc -l <"$T/trickle-$name")
	check "$name: every trickling client is cut ($open of $n still open after 12 s)" test "$n" = 33 -a "$open" = 0
	check "$name: none lives past the 3 s deadline (latest $(sort -n "$T/trickle-$name" | tail -1) s)" \
		awk '$1 == "open" || $1 > 3.5 {exit 1}' "$T/trickle-$name"
}
probe_under_trickle waiter "$PORT" /healthz /readyz /metrics
rss=$(awk '/VmRSS/ {print $2}' /proc/$PID/status)
echo "# waiter RSS after serving the tricklers: ${rss} KiB"
if [ -n "${KD_ASAN:-}" ]; then
	# The sanitizer runtime alone is several MiB: the size target is checked by the normal build.
	check "waiter RSS under ASan is bounded (${rss} KiB <= 16 MiB)" test "$rss" -le 16384
else
	check "waiter RSS is at most 4 MiB (${rss} KiB)" test "$rss" -le 4096
fi
# SIGTERM while a client trickles: the signal comes first, the cleanup is exec'd within 1 s
# (the kubelet's grace period is all the cleanup gets).
python3 "$ROOTDIR/tests/tools/trickle.py" 127.0.0.1 "$PORT" 1 1.5 10 "$T/trickle-term" &
SLOW=$!
sleep 2
start=$(date +%s%N)
kill -TERM $PID
for _ in $(seq 100); do [ -s "$T/agent.out" ] && break; sleep 0.02; done
ms=$(( ($(date +%s%N) - start) / 1000000 ))
check "SIGTERM with a trickling client: the cleanup runs within 1 s ($ms ms)" test -s "$T/agent.out" -a "$ms" -lt 1000
kill $SLOW 2>/dev/null || true; wait $SLOW || true
wait $PID || true
check "SIGTERM hands over to the agent's cleanup" grep -q "args=cleanup on_term=1 fd=[0-9]* metrics=state=2,ready=1" "$T/agent.out"

# The agent's own health server, while the agent retries an API server that is not there
# (connection refused: retried with backoff, so it stays in the install's first step).
mkdir -p "$T/sa" "$T/root"
echo token >"$T/sa/token"; echo kube-system >"$T/sa/namespace"; : >"$T/sa/ca.crt"
HPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
env KUBERNETES_SERVICE_HOST=127.0.0.1 KUBERNETES_SERVICE_PORT=1 SERVICEACCOUNT_DIR="$T/sa" \
	NODE_NAME=n1 POD_NAMESPACE=kube-system HOST_ROOT="$T/root" HEALTH_ADDRESS=127.0.0.1 \
	HEALTH_PORT="$HPORT" API_RETRIES=30 "$KD_BUILD/kata-deploy-agent" install >"$T/agent.log" 2>&1 &
APID=$!
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$HPORT/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
check "agent: /healthz 200 while installing" test "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$HPORT/healthz")" = 200
probe_under_trickle agent "$HPORT" /healthz /readyz
check "agent: /readyz is 503 'installing' after the tricklers" test "$(curl -s "http://127.0.0.1:$HPORT/readyz")" = installing
check "agent: still in the install's first step (no API server)" kill -0 $APID
kill -KILL $APID; wait $APID 2>/dev/null || true
finish
