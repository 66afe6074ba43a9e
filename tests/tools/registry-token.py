#!/usr/bin/env python3
"""Token issuer for the real docker-registry of tests/integration/test-oci-pull.sh.

Debian's docker-registry (distribution 2.8) does token auth itself: configured with
`auth: token: {realm, service, issuer, rootcertbundle}` it answers 401 with a Bearer challenge
and verifies every JWT it is sent (signature against the certificate bundle, issuer, audience,
expiry, and the access claim against the request). What it does not contain is the issuer:
that is a separate service at the realm (Docker Hub's auth.docker.io). This is that service,
the smallest one: basic credentials USER:PASSWORD, an RS256 JWT signed with openssl(1) with the
certificate in its x5c header, granting exactly the actions asked for in scope.

usage: registry-token.py PORTFILE KEY.pem CERT.pem SERVICE ISSUER USER:PASSWORD LOG
  GET /token?service=S&scope=repository:NAME:ACTIONS  -> {"token": JWT, "access_token": JWT}
Each issued token is logged to LOG as "token SCOPE"; a refused request as "refused".
Binds 127.0.0.1 on a free port and writes the port to PORTFILE once it listens.
"""
import base64
import json
import os
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def cert_der(path):
    pem = open(path).read()
    body = pem.split("-----BEGIN CERTIFICATE-----")[1].split("-----END CERTIFICATE-----")[0]
    return base64.b64decode("".join(body.split()))


class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def reply(self, code, body):
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def note(self, line):
        with open(LOG, "a") as f:
            f.write(line + "\n")

    def do_GET(self):
        u = urlparse(self.path)
        q = parse_qs(u.query)
        if u.path != "/token":
            return self.reply(404, b"{}")
        if self.headers.get("Authorization") != "Basic " + base64.b64encode(CREDS.encode()).decode():
            self.note("refused")
            return self.reply(401, b'{"details":"bad credentials"}')
        access = []
        for scope in q.get("scope", []):
            t, name, actions = scope.split(":", 2)
            access.append({"type": t, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(CERT).decode()]}
        claims = {"iss": ISSUER, "sub": CREDS.split(":")[0], "aud": SERVICE, "exp": now + 300,
                  "nbf": now - 10, "iat": now, "jti": os.urandom(8).hex(), "access": access}
        signing_input = (b64url(json.dumps(header).encode()) + "." +
                         b64url(json.dumps(claims).encode())).encode()
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", KEY], input=signing_input,
                             capture_output=True, check=True).stdout
        token = signing_input.decode() + "." + b64url(sig)
        self.note("token " + " ".join(q.get("scope", [])))
        self.reply(200, json.dumps({"token": token, "access_token": token,
                                    "expires_in": 300}).encode())


if __name__ == "__main__":
    portfile, KEY, certfile, SERVICE, ISSUER, CREDS, LOG = sys.argv[1:8]
    CERT = cert_der(certfile)
    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    with open(portfile + ".tmp", "w") as f:
        f.write(str(srv.server_address[1]))
    os.rename(portfile + ".tmp", portfile)
    srv.serve_forever()
