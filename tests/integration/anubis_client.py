"""A small HTTPS client that goes through an Anubis challenge the way a browser does.

It follows no redirects by itself (the tests look at every step), verifies TLS against
the site's certificate, and can send from a chosen local address (the tests use two
RFC 1918 addresses of the lab host). What it does is what upstream's page script does
(TecharoHQ/anubis v1.27.0 ``web/js/main.ts``, ``web/js/algorithms/fast.ts``): it sends
``Accept-Encoding: gzip`` like every browser (Anubis gzips the challenge page and
refuses one render in 64 to clients that do not accept gzip, ``lib/http.go``), reads
``anubis_challenge`` (``{"rules": {...}, "challenge": {...}}``, ``web/index.go``), solves
the "fast" proof of work (sha256 of randomData + nonce with ``difficulty`` leading hex
zeroes), and calls ``pass-challenge`` with ``id``, ``response``, ``nonce``, ``redir`` --
the page's own absolute URL, as ``window.location.href`` is -- and ``elapsedTime``.
Cookies are found by upstream's names: ``techaro.lol-anubis-auth-<settings hash>`` and
``techaro.lol-anubis-cookie-verification-<settings hash>``. The challenge it solves is
the lab stand-in's (tests/lab/anubis_standin.py).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import http.client
import json
import os
import re
import socket
import ssl
import struct
import time
import urllib.parse

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) opskit-integration-test"
CHALLENGE_RE = re.compile(r'<script id="anubis_challenge" type="application/json">(.*?)</script>')
AUTH_COOKIE = "techaro.lol-anubis-auth-"
TEST_COOKIE = "techaro.lol-anubis-cookie-verification-"
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3


class Site:
    """One TLS site: where to connect, the Host header to send, the CA to verify with."""

    def __init__(self, base, host, cafile, source=None):
        url = urllib.parse.urlsplit(base)
        self.address, self.port = url.hostname, url.port or 443
        self.host = host
        self.context = ssl.create_default_context(cafile=cafile)
        self.source = (source, 0) if source else None

    def url(self, path):
        """The absolute URL a browser shows for ``path`` (window.location.href)."""
        return f"https://{self.host}{path}"

    def connect(self, timeout=60):
        return http.client.HTTPSConnection(
            self.address,
            self.port,
            context=self.context,
            timeout=timeout,
            source_address=self.source,
        )

    def request(self, method, path, headers=None, body=None, timeout=60):
        """(status, {lower-case header: value}, body bytes) of one request, no redirects;
        a gzip'd body is decompressed, as a browser does."""
        conn = self.connect(timeout)
        try:
            sent = {"Host": self.host, "User-Agent": BROWSER, "Accept-Encoding": "gzip"}
            sent.update(headers or {})
            conn.request(method, path, body=body, headers=sent)
            resp = conn.getresponse()
            data = resp.read()
            heads = {}  # Set-Cookie may repeat: keep every value, one per line
            for name, value in resp.getheaders():
                key = name.lower()
                heads[key] = f"{heads[key]}\n{value}" if key in heads else value
            if heads.get("content-encoding") == "gzip":
                data = gzip.decompress(data)
            return resp.status, heads, data
        finally:
            conn.close()


def cookie(headers, name_prefix):
    """The ``name=value`` pair of the first cookie set whose name starts with the prefix
    (upstream's names end in a hash of the cookie settings) and whose value is not empty
    (Anubis also sends expired, empty cookies to clear old ones)."""
    for line in headers.get("set-cookie", "").splitlines():
        pair = line.split(";", 1)[0]
        name, _, value = pair.partition("=")
        if name.startswith(name_prefix) and value:
            return pair
    raise AssertionError(f"no {name_prefix}* cookie in {headers.get('set-cookie')!r}")


def solve(page: bytes):
    data = json.loads(CHALLENGE_RE.search(page.decode()).group(1))
    challenge, rules = data["challenge"], data["rules"]
    assert rules.get("algorithm", "fast") == "fast", rules
    prefix, nonce = "0" * rules.get("difficulty", 0), 0
    while True:
        digest = hashlib.sha256(f"{challenge['randomData']}{nonce}".encode()).hexdigest()
        if digest.startswith(prefix):
            return challenge["id"], nonce, digest
        nonce += 1


def pass_challenge(site, path, mode):
    """Go through the challenge for ``path``; return (auth cookie, steps)."""
    steps = []
    status, heads, body = site.request("GET", path)
    steps.append({"path": path, "status": status, "location": heads.get("location")})
    if mode == "sidecar":
        # nginx: 307 to /.within.website/?redir=...; the challenge page is there
        if status != 307:
            raise AssertionError(f"expected 307 to the challenge, got {steps}")
        target = urllib.parse.urlsplit(heads["location"])
        page_path = f"{target.path}?{target.query}"
        status, heads, body = site.request("GET", page_path)
        steps.append({"path": page_path, "status": status})
    else:
        page_path = path
    if status != 200 or b"anubis_challenge" not in body:
        raise AssertionError(f"expected the challenge page, got {steps}: {body[:300]!r}")
    test_cookie = cookie(heads, TEST_COOKIE)
    started = time.monotonic()
    challenge_id, nonce, digest = solve(body)
    query = urllib.parse.urlencode(
        {
            "id": challenge_id,
            "response": digest,
            "nonce": nonce,
            "redir": site.url(page_path),
            "elapsedTime": f"{(time.monotonic() - started) * 1000:.0f}",
        }
    )
    pass_path = f"/.within.website/x/cmd/anubis/api/pass-challenge?{query}"
    status, heads, body = site.request("GET", pass_path, {"Cookie": test_cookie})
    steps.append({"path": "pass-challenge", "status": status, "location": heads.get("location")})
    if status != 302:
        raise AssertionError(f"the challenge was not accepted: {steps}: {body[:300]!r}")
    auth = cookie(heads, AUTH_COOKIE)
    if mode == "sidecar":
        # back to /.within.website/?redir=<original URL>: Anubis sends the browser on
        location = urllib.parse.urlsplit(heads["location"])
        back = f"{location.path}?{location.query}"
        status, heads, _ = site.request("GET", back, {"Cookie": auth})
        steps.append({"path": back, "status": status, "location": heads.get("location")})
        if status != 302:
            raise AssertionError(f"Anubis did not send the browser on: {steps}")
    return auth, steps


class WebSocket:
    """A minimal RFC 6455 client over the site's TLS connection: text frames only."""

    def __init__(self, site, path, headers=None, timeout=30):
        self.key = base64.b64encode(os.urandom(16)).decode()
        raw = socket.create_connection(
            (site.address, site.port), timeout=timeout, source_address=site.source
        )
        self.sock = site.context.wrap_socket(raw, server_hostname=site.address)
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {site.host}",
            f"User-Agent: {BROWSER}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {self.key}",
            "Sec-WebSocket-Version: 13",
            *(f"{k}: {v}" for k, v in (headers or {}).items()),
        ]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.buffer = b""
        head = self._read_until(b"\r\n\r\n").decode("latin-1")
        self.status = int(head.split(" ", 2)[1])
        self.headers = {
            k.strip().lower(): v.strip()
            for k, _, v in (line.partition(":") for line in head.split("\r\n")[1:])
        }

    def accepted(self):
        """101 with the Sec-WebSocket-Accept RFC 6455 derives from our key."""
        expected = base64.b64encode(
            hashlib.sha1((self.key + WS_GUID).encode(), usedforsecurity=False).digest()
        )
        return self.status == 101 and self.headers.get("sec-websocket-accept") == expected.decode()

    def _read_until(self, marker):
        while marker not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"connection closed; got {self.buffer[:300]!r}")
            self.buffer += chunk
        head, _, self.buffer = self.buffer.partition(marker)
        return head

    def _read(self, count):
        while len(self.buffer) < count:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed in a frame")
            self.buffer += chunk
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def send(self, text):
        payload = text.encode()
        mask = os.urandom(4)
        size = len(payload)
        head = struct.pack("!B", 0x81)
        if size < 126:
            head += struct.pack("!B", 0x80 | size)
        else:
            head += struct.pack("!BH", 0x80 | 126, size)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(head + mask + masked)

    def receive(self):
        first, second = self._read(2)
        size = second & 0x7F
        if size == 126:
            size = struct.unpack("!H", self._read(2))[0]
        elif size == 127:
            size = struct.unpack("!Q", self._read(8))[0]
        payload = self._read(size)
        if first & 0x0F != 0x1:
            raise AssertionError(f"expected a text frame, got opcode {first & 0x0F}")
        return payload.decode()

    def close(self):
        self.sock.close()
