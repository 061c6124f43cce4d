#!/usr/bin/python3
"""opskit lab scaffolding: a tiny web application that echoes what it received.

It stands for the application an Anubis-protected site serves (GitLab, say). Every
request is answered with JSON: method, path, the request headers exactly as they
arrived, the peer address, and the body's length and sha256 (the body is read fully,
so a large upload really crosses every hop). Listens on 127.0.0.1:8080.

Two extras let the lab prove what GitLab needs from the proxy in front:
- an upload that carries ``X-Upload-Id: <id>`` reports its progress while it arrives:
  ``GET /_progress/<id>`` answers ``{"received": <bytes so far>}``, so a client can see
  the application receive the first bytes before it has sent the rest (no buffering);
- a request with ``Upgrade: websocket`` gets the RFC 6455 handshake and an echo of
  every text frame it sends.
"""

import base64
import hashlib
import http.server
import json
import struct
import threading

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3
PROGRESS = {}
LOCK = threading.Lock()


class Echo(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        pass

    def _json(self, data):
        body = json.dumps(data).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.headers.get("Upgrade", "").lower() == "websocket":
            return self.websocket()
        if self.path.startswith("/_progress/"):
            with LOCK:
                return self._json({"received": PROGRESS.get(self.path[11:], 0)})
        upload = self.headers.get("X-Upload-Id")
        length = int(self.headers.get("Content-Length") or 0)
        digest, seen = hashlib.sha256(), 0
        while seen < length:
            chunk = self.rfile.read(min(1 << 16, length - seen))
            if not chunk:
                break
            digest.update(chunk)
            seen += len(chunk)
            if upload:
                with LOCK:
                    PROGRESS[upload] = seen
        return self._json(
            {
                "app": "opskit-lab-echo",
                "method": self.command,
                "path": self.path,
                "peer": self.client_address[0],
                "headers": [[k, v] for k, v in self.headers.items()],
                "body_length": seen,
                "body_sha256": digest.hexdigest(),
            }
        )

    do_POST = do_PUT = do_DELETE = do_GET

    def websocket(self):
        key = self.headers.get("Sec-WebSocket-Key", "")
        accept = base64.b64encode(
            hashlib.sha1((key + WS_GUID).encode(), usedforsecurity=False).digest()
        ).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.wfile.flush()
        while True:
            head = self.rfile.read(2)
            if len(head) < 2:
                break
            opcode, size = head[0] & 0x0F, head[1] & 0x7F
            if size == 126:
                size = struct.unpack("!H", self.rfile.read(2))[0]
            elif size == 127:
                size = struct.unpack("!Q", self.rfile.read(8))[0]
            mask = self.rfile.read(4) if head[1] & 0x80 else b"\0\0\0\0"
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(self.rfile.read(size)))
            if opcode == 0x8:  # close
                break
            reply = b"echo: " + payload
            frame = bytes([0x81])
            frame += (
                bytes([len(reply)]) if len(reply) < 126 else b"\x7e" + struct.pack("!H", len(reply))
            )
            self.wfile.write(frame + reply)
            self.wfile.flush()
        self.close_connection = True


http.server.ThreadingHTTPServer(("127.0.0.1", 8080), Echo).serve_forever()
