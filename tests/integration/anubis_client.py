"""A small HTTPS client that goes through an Anubis challenge the way a browser would.

It follows no redirects by itself (the tests look at every step), verifies TLS against
the site's certificate, and can send from a chosen local address (the tests use two
RFC 1918 addresses of the lab host). The challenge it solves is the lab stand-in's
(sha256 proof of work over the challenge's random data, as upstream's "fast" method
does); see tests/lab/anubis_standin.py.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import re
import ssl
import urllib.parse

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) opskit-integration-test"
CHALLENGE_RE = re.compile(r'<script id="anubis_challenge" type="application/json">(.*?)</script>')


class Site:
    """One TLS site: where to connect, the Host header to send, the CA to verify with."""

    def __init__(self, base, host, cafile, source=None):
        url = urllib.parse.urlsplit(base)
        self.address, self.port = url.hostname, url.port or 443
        self.host = host
        self.context = ssl.create_default_context(cafile=cafile)
        self.source = (source, 0) if source else None

    def request(self, method, path, headers=None, body=None, timeout=60):
        """(status, {lower-case header: value}, body bytes) of one request, no redirects."""
        conn = http.client.HTTPSConnection(
            self.address,
            self.port,
            context=self.context,
            timeout=timeout,
            source_address=self.source,
        )
        try:
            sent = {"Host": self.host, "User-Agent": BROWSER, **(headers or {})}
            conn.request(method, path, body=body, headers=sent)
            resp = conn.getresponse()
            data = resp.read()
            heads = {}  # Set-Cookie may repeat: keep every value, one per line
            for name, value in resp.getheaders():
                key = name.lower()
                heads[key] = f"{heads[key]}\n{value}" if key in heads else value
            return resp.status, heads, data
        finally:
            conn.close()


def cookie(headers, name_prefix):
    for line in headers.get("set-cookie", "").splitlines():
        pair = line.split(";", 1)[0]
        if pair.startswith(name_prefix):
            return pair
    raise AssertionError(f"no {name_prefix} cookie in {headers.get('set-cookie')!r}")


def solve(page: bytes):
    challenge = json.loads(CHALLENGE_RE.search(page.decode()).group(1))["challenge"]
    prefix, nonce = "0" * challenge["difficulty"], 0
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
        challenge_path = f"{target.path}?{target.query}"
        redir = urllib.parse.parse_qs(target.query)["redir"][0]
        status, heads, body = site.request("GET", challenge_path)
        steps.append({"path": challenge_path, "status": status})
    else:
        redir = path
    if status != 200 or b"anubis_challenge" not in body:
        raise AssertionError(f"expected the challenge page, got {steps}")
    test_cookie = cookie(heads, "anubis-cookie-cookie-verification=")
    challenge_id, nonce, digest = solve(body)
    query = urllib.parse.urlencode(
        {"id": challenge_id, "response": digest, "nonce": nonce, "redir": redir}
    )
    pass_path = f"/.within.website/x/cmd/anubis/api/pass-challenge?{query}"
    status, heads, _ = site.request("GET", pass_path, {"Cookie": test_cookie})
    steps.append({"path": "pass-challenge", "status": status, "location": heads.get("location")})
    if status != 302:
        raise AssertionError(f"the challenge was not accepted: {steps}")
    return cookie(heads, "anubis-cookie-auth="), steps
