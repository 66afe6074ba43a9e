#!/usr/bin/env python3
"""Slow-loris clients for the health-server tests: N connections that each send one byte of an
endless request header every INTERVAL seconds, so an idle timeout (reset by every byte) never
fires.

usage: trickle.py HOST PORT N INTERVAL SECONDS REPORT
Runs for SECONDS (or until SIGTERM), then writes REPORT: one line per connection, the seconds
from its first byte sent (the handshake done: a full accept queue delays it by the kernel's SYN
retransmits) to the server closing it, or "open"; exits 0.
"""
import signal
import socket
import sys
import time

host, port, n, interval, seconds, report = sys.argv[1:7]
n, interval, seconds = int(n), float(interval), float(seconds)
REQUEST = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100000

stop = False


def on_term(*_):
    global stop
    stop = True


signal.signal(signal.SIGTERM, on_term)
conns = []  # [socket, first byte sent at, bytes sent, closed after (s) or None, next send]
for _ in range(n):
    s = socket.socket()
    s.setblocking(False)
    try:
        s.connect((host, int(port)))
    except BlockingIOError:
        pass  # a full accept queue: the kernel finishes the handshake later (or never)
    conns.append([s, time.monotonic(), 0, None, 0.0])
end = time.monotonic() + seconds
while not stop and time.monotonic() < end:
    for c in conns:
        if c[3] is not None:
            continue
        try:
            # The first byte as soon as connected, then one per interval.
            if time.monotonic() >= c[4] and c[0].send(REQUEST[c[2] : c[2] + 1]) == 1:
                if c[2] == 0:
                    c[1] = time.monotonic()
                c[2] += 1
                c[4] = time.monotonic() + interval
            while True:  # drain an answer; EOF means the server closed it
                if c[0].recv(4096, socket.MSG_DONTWAIT) == b"":
                    c[3] = time.monotonic() - c[1]
                    break
        except BlockingIOError:
            pass  # nothing to read, or not connected yet
        except OSError:
            c[3] = time.monotonic() - c[1]
    time.sleep(0.05)  # notice a close within 50 ms
with open(report, "w") as f:
    for c in conns:
        f.write("open\n" if c[3] is None else "%.2f\n" % c[3])
