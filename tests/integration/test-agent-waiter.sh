#!/usr/bin/env bash
# The idle waiter left on every node after an install: serves /healthz, /readyz and the frozen
# /metrics on the inherited socket, stays under 4 MiB RSS, and on SIGTERM hands the socket back
# to the agent ("cleanup") with KD_AGENT_ON_TERM=1.
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
s.bind(("127.0.0.1", int(sys.argv[2]))); s.listen(16); os.set_inheritable(s.fileno(), True)
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
# A client that connects and says nothing must not block the others for long.
python3 -c "import socket,time; s=socket.create_connection(('127.0.0.1',$PORT)); time.sleep(3)" &
SILENT=$!
sleep 0.2
start=$(date +%s%N)
curl -fs -m 5 "http://127.0.0.1:$PORT/healthz" >/dev/null
check "a silent client is dropped within the I/O timeout" test $(( ($(date +%s%N) - start) / 1000000 )) -lt 3000
kill $SILENT 2>/dev/null || true
rss=$(awk '/VmRSS/ {print $2}' /proc/$PID/status)
echo "# waiter RSS: ${rss} KiB"
if [ -n "${KD_ASAN:-}" ]; then
	# The sanitizer runtime alone is several MiB: the size target is checked by the normal build.
	check "waiter RSS under ASan is bounded (${rss} KiB <= 16 MiB)" test "$rss" -le 16384
else
	check "waiter RSS is at most 4 MiB (${rss} KiB)" test "$rss" -le 4096
fi
kill -TERM $PID
wait $PID || true
check "SIGTERM hands over to the agent's cleanup" grep -q "args=cleanup on_term=1 fd=[0-9]* metrics=state=2,ready=1" "$T/agent.out"
finish
