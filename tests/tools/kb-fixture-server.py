#!/usr/bin/env python3
"""Loopback server for tests/integration/test-builder.sh: a source mirror and the registry
answers a real registry gives only in bad cases.

usage: kb-fixture-server.py PORTFILE DIR
  GET /files/<name>        DIR/<name>, with Range support (a mirror of upstream sources)
  /v2/auth/...             Bearer auth: 401 + WWW-Authenticate until a token from /token
                           (which wants basic credentials user:secret) is sent; then HEAD blob
                           -> 200 and PUT manifest -> 201 with its digest
  /v2/fail500/...          HTTP 500 on everything
  /v2/deny/...             HTTP 403 on everything
Binds 127.0.0.1 on a free port and writes the port to PORTFILE once it listens.
"""
import base64
import hashlib
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DIR = "."
TOKEN = "tok-123"
CREDS = "Basic " + base64.b64encode(b"user:secret").decode()


class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def reply(self, code, body=b"", headers=None):
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def files(self):
        name = self.path[len("/files/"):]
        p = os.path.join(DIR, os.path.basename(name))
        if not os.path.isfile(p):
            return self.reply(404, b"not found")
        data = open(p, "rb").read()
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            start = int(rng[6:].split("-")[0])
            if start >= len(data):
                return self.reply(416)
            return self.reply(206, data[start:], {
                "Content-Range": "bytes %d-%d/%d" % (start, len(data) - 1, len(data)),
                "Accept-Ranges": "bytes"})
        self.reply(200, data, {"Accept-Ranges": "bytes"})

    def token(self):
        if self.headers.get("Authorization") != CREDS:
            return self.reply(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}')
        self.reply(200, ('{"token":"%s"}' % TOKEN).encode(),
                   {"Content-Type": "application/json"})

    def registry(self):
        data = self.body()
        parts = self.path.split("/")
        repo = parts[2] if len(parts) > 2 else ""
        if repo == "fail500":
            return self.reply(500, b'{"errors":[{"code":"UNKNOWN","message":"disk full"}]}')
        if repo == "deny":
            return self.reply(403, b'{"errors":[{"code":"DENIED","message":"no push"}]}')
        if repo == "auth":
            if self.headers.get("Authorization") != "Bearer " + TOKEN:
                host = self.headers.get("Host")
                return self.reply(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}', {
                    "WWW-Authenticate": 'Bearer realm="http://%s/token",service="fixture",'
                                        'scope="repository:auth/x:pull,push"' % host})
            if self.command == "HEAD" and "/blobs/" in self.path:
                return self.reply(200)
            if self.command == "PUT" and "/manifests/" in self.path:
                d = "sha256:" + hashlib.sha256(data).hexdigest()
                return self.reply(201, b"", {"Docker-Content-Digest": d})
        self.reply(404, b'{"errors":[{"code":"NAME_UNKNOWN"}]}')

    def route(self):
        if self.path.startswith("/files/"):
            return self.files()
        if self.path.startswith("/token"):
            return self.token()
        if self.path.startswith("/v2/"):
            return self.registry()
        self.reply(404)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = route


def main():
    global DIR
    portfile, DIR = sys.argv[1], sys.argv[2]
    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    tmp = portfile + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(srv.server_address[1]))
    os.rename(tmp, portfile)
    srv.serve_forever()


if __name__ == "__main__":
    main()
