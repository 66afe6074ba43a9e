#!/usr/bin/env python3
"""Loopback HTTP(S) server for tests/unit/test-http.c: the misbehaving answers a real server
gives (404, 500 then 200, 429 with Retry-After, slow bodies, redirect loops, oversize bodies,
dropped connections that can be resumed with Range) and an echo endpoint for the general request.

usage: httpd.py PORTFILE [--tls CERT KEY]
Binds 127.0.0.1 on a free port and writes the port number to PORTFILE once it listens.
Every path's hit count is served at /stats/<path> ("/stats/flaky/a/2" -> "3").
"""
import hashlib
import json
import os
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HITS = {}
RANGED = {}
LOCK = threading.Lock()
PARTIAL_SIZE = 200000
PARTIAL = bytes(i % 251 for i in range(PARTIAL_SIZE))


def hit(path):
    with LOCK:
        HITS[path] = HITS.get(path, 0) + 1
        return HITS[path]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def reply(self, code, body=b"", headers=None, ctype="text/plain"):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def do_HEAD(self):
        self.do_GET()

    def do_POST(self):
        self.do_GET()

    def do_PUT(self):
        self.do_GET()

    def do_PATCH(self):
        self.do_GET()

    def do_DELETE(self):
        self.do_GET()

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        parts = path.strip("/").split("/")
        if parts[0] == "stats":
            key = "/" + "/".join(parts[1:])
            if key.startswith("/ranged/"):
                n = RANGED.get(key[len("/ranged"):], 0)
            else:
                n = HITS.get(key, 0)
            return self.reply(200, str(n).encode())
        n = hit(path)
        route = parts[0]
        if route == "status":
            code = int(parts[1])
            hdrs = {}
            if code == 401:
                hdrs["WWW-Authenticate"] = 'Bearer realm="test"'
            return self.reply(code, b"status %d\n" % code, hdrs)
        if route == "flaky":
            # /flaky/<key>/<n>: 500 for the first n hits, then 200
            if n <= int(parts[2]):
                return self.reply(500, b"try again\n")
            return self.reply(200, b"ok after %d\n" % n)
        if route == "ratelimit":
            if n == 1:
                return self.reply(429, b"slow down\n", {"Retry-After": "1"})
            return self.reply(200, b"ok\n")
        if route == "slow":
            # Promise a lot, then trickle far below 1 KiB/s.
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            try:
                for _ in range(200):
                    self.wfile.write(b"x" * 10)
                    self.wfile.flush()
                    time.sleep(0.5)
            except OSError:
                pass
            self.close_connection = True
            return
        if route == "loop":
            return self.reply(302, b"", {"Location": path})
        if route == "redirect":
            left = int(parts[1])
            if left == 0:
                return self.reply(200, b"landed\n")
            return self.reply(302, b"", {"Location": "/redirect/%d" % (left - 1)})
        if route == "big":
            # An honest Content-Length above the client's limit.
            self.send_response(200)
            self.send_header("Content-Length", str(64 * 1024 * 1024))
            self.end_headers()
            try:
                for _ in range(64):
                    self.wfile.write(b"\0" * (1024 * 1024))
            except OSError:
                pass
            self.close_connection = True
            return
        if route == "endless":
            # No Content-Length: the body ends when the connection does (never, here).
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            try:
                for _ in range(64):
                    self.wfile.write(b"\1" * (1024 * 1024))
            except OSError:
                pass
            self.close_connection = True
            return
        if route == "partial":
            return self.partial(path)
        if route == "echo":
            body = self.read_body()
            out = {
                "method": self.command,
                "path": self.path,
                "authorization": self.headers.get("Authorization"),
                "content_type": self.headers.get("Content-Type"),
                "x_test": self.headers.get("X-Test"),
                "expect": self.headers.get("Expect"),
                "body_len": len(body),
                "body_sha256": hashlib.sha256(body).hexdigest(),
            }
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
            return self.reply(201, json.dumps(out).encode(), {
                "Location": "/v2/x/blobs/uploads/1?_state=abc",
                "Docker-Content-Digest": digest,
                "ETag": '"e1"',
            }, "application/json")
        return self.reply(404, b"no route\n")

    def partial(self, path):
        """A 200000-byte resource that drops the first whole-body answer half-way; ranged
        requests get 206 as RFC 9110 says."""
        rng = self.headers.get("Range")
        hdrs = {"Accept-Ranges": "bytes", "ETag": '"v1"'}
        if rng and rng.startswith("bytes="):
            with LOCK:
                RANGED[path] = RANGED.get(path, 0) + 1
            start = int(rng[6:].split("-")[0])
            body = PARTIAL[start:]
            hdrs["Content-Range"] = "bytes %d-%d/%d" % (start, PARTIAL_SIZE - 1, PARTIAL_SIZE)
            return self.reply(206, body, hdrs, "application/octet-stream")
        self.send_response(200)
        self.send_header("Content-Length", str(PARTIAL_SIZE))
        for k, v in hdrs.items():
            self.send_header(k, v)
        self.end_headers()
        if path.endswith("/whole"):
            self.wfile.write(PARTIAL)
            return
        self.wfile.write(PARTIAL[: PARTIAL_SIZE // 2])
        self.wfile.flush()
        self.close_connection = True


def main():
    portfile = sys.argv[1]
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    if len(sys.argv) >= 5 and sys.argv[2] == "--tls":
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(sys.argv[3], sys.argv[4])
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    tmp = portfile + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % srv.server_address[1])
    os.rename(tmp, portfile)
    srv.serve_forever()


if __name__ == "__main__":
    main()
