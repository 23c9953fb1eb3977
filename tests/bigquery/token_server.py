"""An OAuth 2.0 token endpoint for service-account keys, as Google's serves them.

    python token_server.py DIR

Creates two RSA service-account keys in DIR: `good-key.json`, whose public key this server
knows, and `revoked-key.json`, whose key it does not know (a deleted or revoked key). Each key
file names this server as its `token_uri`. A POST of a JWT-bearer grant signed with a known key
gets an access token; any other signature gets Google's answer for a revoked key:
400 {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}. Every grant
received is appended to DIR/grants.log. The port is written to DIR/port once listening. Keys are told apart by the
JWT's issuer (the key's `client_email`), since Google's client libraries send no key id.
"""

import base64
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

DIR = sys.argv[1]
KNOWN = {}


def b64decode(part):
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def new_key(name, email, port, known):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    key_id = f"{name}-id"
    if known:
        KNOWN[email] = key.public_key()
    document = {
        "type": "service_account",
        "project_id": "test-project",
        "private_key_id": key_id,
        "private_key": pem,
        "client_email": email,
        "client_id": "1",
        "auth_uri": f"http://127.0.0.1:{port}/auth",
        "token_uri": f"http://127.0.0.1:{port}/token",
    }
    path = os.path.join(DIR, f"{name}.json")
    with open(path + ".tmp", "w") as f:
        json.dump(document, f)
    os.replace(path + ".tmp", path)


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        form = parse_qs(self.rfile.read(length).decode())
        grant = form.get("grant_type", [""])[0]
        assertion = form.get("assertion", [""])[0]
        with open(os.path.join(DIR, "grants.log"), "a") as log:
            log.write(grant + "\n")
        if grant != "urn:ietf:params:oauth:grant-type:jwt-bearer" or assertion.count(".") != 2:
            return self.answer(400, {"error": "unsupported_grant_type"})
        header, claims, signature = assertion.split(".")
        try:
            body = json.loads(b64decode(claims))
            public = KNOWN[body.get("iss")]
            public.verify(
                b64decode(signature),
                f"{header}.{claims}".encode(),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
        except Exception:  # any bad or unknown signature: what Google answers
            return self.answer(
                400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
            )
        if body.get("exp", 0) < time.time():
            return self.answer(
                400, {"error": "invalid_grant", "error_description": "Invalid JWT: Token must be a short-lived token"}
            )
        self.answer(
            200,
            {"access_token": "ya29.test-" + str(int(time.time())), "expires_in": 3599, "token_type": "Bearer"},
        )


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
port = server.server_address[1]
new_key("good-key", "loader@test-project.iam.gserviceaccount.com", port, True)
new_key("revoked-key", "revoked@test-project.iam.gserviceaccount.com", port, False)
with open(os.path.join(DIR, "port.tmp"), "w") as f:
    f.write(f"{port}\n")
os.replace(os.path.join(DIR, "port.tmp"), os.path.join(DIR, "port"))
server.serve_forever()
