#!/usr/bin/env python3
"""An HTTP proxy in front of a registry that interrupts one blob download, for the resume test of
tests/integration/test-oci-pull.sh.

usage: stall-proxy.py PORTFILE UPSTREAM_PORT DIGEST BYTES
Every request is forwarded to 127.0.0.1:UPSTREAM_PORT and answered as it answers, except the
first GET of /v2/.../blobs/DIGEST: of that one only the status, the headers and the first BYTES
bytes of the body are sent, then the connection stalls (no more bytes, never closed) until the
proxy is killed, as a download cut by a network failure or a killed node is. Writes the port to
PORTFILE once it listens.
"""
import http.client
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

stalled = threading.Event()


class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def forward(self):
        c = http.client.HTTPConnection("127.0.0.1", UPSTREAM)
        hdrs = {k: v for k, v in self.headers.items() if k.lower() != "host"}
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else None
        c.request(self.command, self.path, body=body, headers=hdrs)
        r = c.getresponse()
        data = r.read()
        stall = (self.command == "GET" and self.path.endswith("/blobs/" + DIGEST) and
                 not stalled.is_set())
        self.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() not in ("connection", "transfer-encoding"):
                self.send_header(k, v)
        self.end_headers()
        if stall:
            stalled.set()
            self.wfile.write(data[:CUT])
            self.wfile.flush()
            while True:
                time.sleep(3600)
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_HEAD = do_POST = do_PUT = forward


if __name__ == "__main__":
    portfile, up, DIGEST, cut = sys.argv[1:5]
    UPSTREAM, CUT = int(up), int(cut)
    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    srv.daemon_threads = True
    with open(portfile + ".tmp", "w") as f:
        f.write(str(srv.server_address[1]))
    os.rename(portfile + ".tmp", portfile)
    srv.serve_forever()
