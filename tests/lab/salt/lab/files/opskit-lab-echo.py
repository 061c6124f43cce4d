#!/usr/bin/python3
"""opskit lab scaffolding: a tiny web application that echoes what it received.

It stands for the application an Anubis-protected site serves (GitLab, say). Every
request is answered with JSON: method, path, the request headers exactly as they
arrived, the peer address, and the body's length and sha256 (the body is read fully,
so a large upload really crosses every hop). Listens on 127.0.0.1:8080.
"""

import hashlib
import http.server
import json


class Echo(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        length = int(self.headers.get("Content-Length") or 0)
        digest, seen = hashlib.sha256(), 0
        while seen < length:
            chunk = self.rfile.read(min(1 << 16, length - seen))
            if not chunk:
                break
            digest.update(chunk)
            seen += len(chunk)
        body = json.dumps(
            {
                "app": "opskit-lab-echo",
                "method": self.command,
                "path": self.path,
                "peer": self.client_address[0],
                "headers": [[k, v] for k, v in self.headers.items()],
                "body_length": seen,
                "body_sha256": digest.hexdigest(),
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_PUT = do_DELETE = do_GET


http.server.ThreadingHTTPServer(("127.0.0.1", 8080), Echo).serve_forever()
