"""The lab's Anubis STAND-IN (tests/lab/anubis_standin.py, not Anubis) behaves as
upstream v1.27.0 does where the formula and the lab client depend on it (issue 12 item
3). Each test names the upstream file it checks against. The stand-in runs in this
process behind a real HTTP server on 127.0.0.1; requests go over real sockets."""

from __future__ import annotations

import gzip
import hashlib
import http.client
import http.server
import json
import re
import threading
import urllib.parse

import pytest

from tests.lab import anubis_standin as standin

KEY = "ab" * 32
POLICY = {
    "bots": [
        {"name": "api", "path_regex": "^/api/", "action": "ALLOW"},
        {"name": "browser", "user_agent_regex": "Mozilla", "action": "CHALLENGE"},
    ],
    "status_codes": {"CHALLENGE": 200, "DENY": 403},
}
BROWSER = "Mozilla/5.0 test"


@pytest.fixture
def serve(monkeypatch):
    """Start the stand-in with the given environment and policy; returns a request
    function (method, path, headers) -> (status, headers as a list, body)."""
    servers = []

    def start(env, policy=POLICY):
        for name in ("TARGET", "REDIRECT_DOMAINS", "COOKIE_DOMAIN", "CUSTOM_REAL_IP_HEADER"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("ED25519_PRIVATE_KEY_HEX", KEY)
        monkeypatch.setenv("TARGET", " ")  # subrequest mode: nothing to proxy to
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        cfg = standin.Settings()
        standin.Handler.app = standin.App(cfg, standin.Policy(policy, cfg), standin.load_key(cfg))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), standin.Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)

        def request(method, path, headers=None):
            conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
            sent = {"User-Agent": BROWSER, "X-Real-IP": "192.0.2.7", **(headers or {})}
            conn.request(method, path, headers=sent)
            resp = conn.getresponse()
            body = resp.read()
            conn.close()
            return resp.status, resp.getheaders(), body

        return request

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _cookies(headers):
    return [v for k, v in headers if k.lower() == "set-cookie"]


def _challenge(request, path="/page", gzip_ok=True):
    """GET a challenge page; return (test cookie pair, challenge JSON)."""
    headers = {"Accept-Encoding": "gzip"} if gzip_ok else {}
    status, heads, body = request("GET", path, headers)
    assert status == 200, body
    assert dict(heads).get("Content-Encoding") == ("gzip" if gzip_ok else None)
    page = gzip.decompress(body) if gzip_ok else body
    data = json.loads(re.search(rb'id="anubis_challenge" type="application/json">(.*?)<', page)[1])
    pair = next(c.split(";")[0] for c in _cookies(heads) if "cookie-verification" in c)
    return pair, data


def _solve(data):
    nonce = 0
    prefix = "0" * data["rules"]["difficulty"]
    while True:
        digest = hashlib.sha256(f"{data['challenge']['randomData']}{nonce}".encode()).hexdigest()
        if digest.startswith(prefix):
            return nonce, digest
        nonce += 1


def _pass(request, test_cookie, data, redir, **extra):
    nonce, digest = _solve(data)
    query = {"id": data["challenge"]["id"], "response": digest, "nonce": nonce, "redir": redir}
    query.update(extra)
    query = {k: v for k, v in query.items() if v is not None}
    path = "/.within.website/x/cmd/anubis/api/pass-challenge?" + urllib.parse.urlencode(query)
    return request("GET", path, {"Cookie": test_cookie})


# lib/http.go cookieName / SetCookie; cmd/anubis/main.go COOKIE_PREFIX, COOKIE_PARTITIONED
def test_cookie_names_carry_upstreams_prefix_and_settings_hash(serve):
    request = serve({"COOKIE_DOMAIN": "web-01.lab", "DIFFICULTY": "1"})
    test_cookie, data = _challenge(request)
    # sha256("false|true|true|4|web-01.lab|false|")[:4]: HttpOnly, Secure, Partitioned,
    # SameSite=None (4), domain, dynamic domain, base prefix
    assert test_cookie.startswith("techaro.lol-anubis-cookie-verification-61d36e5e=")
    status, heads, _ = _pass(request, test_cookie, data, "/page", elapsedTime="12")
    assert status == 302
    (auth,) = [c for c in _cookies(heads) if c.startswith("techaro.lol-anubis-auth-61d36e5e=")]
    attributes = [part.strip() for part in auth.split(";")[1:]]
    assert attributes[:2] == ["Path=/", "Domain=web-01.lab"]
    assert attributes[2].startswith("Expires=")
    assert attributes[2].endswith(" GMT")
    assert attributes[3:] == ["Secure", "SameSite=None", "Partitioned"]
    pair = auth.split(";")[0]
    status, _, body = request("GET", "/page", {"Cookie": pair})
    assert (status, b"anubis_challenge" in body) == (200, False)
    # the same token under the unsuffixed name is no pass: the challenge again
    value = pair.split("=", 1)[1]
    status, _, body = request("GET", "/page", {"Cookie": f"techaro.lol-anubis-auth={value}"})
    assert (status, b"anubis_challenge" in body) == (200, True)


def test_other_cookie_settings_give_other_names(serve):
    request = serve({"COOKIE_PARTITIONED": "false", "COOKIE_SECURE": "false"})
    test_cookie, _ = _challenge(request)
    suffix = hashlib.sha256(b"false|false|false|4||false|").hexdigest()[:8]
    assert test_cookie.startswith(f"techaro.lol-anubis-cookie-verification-{suffix}=")


# lib/challenge/proofofwork/proofofwork.go Validate: nonce, elapsedTime, response required
@pytest.mark.parametrize(
    ("extra", "status"),
    [
        ({"elapsedTime": None}, 500),
        ({"elapsedTime": "soon"}, 500),
        ({"elapsedTime": " 12"}, 500),
        ({"elapsedTime": "12.5", "nonce": "x"}, 500),
        ({"elapsedTime": "12.5", "response": "0" * 64}, 403),
        ({"elapsedTime": "12.5"}, 302),
    ],
)
def test_pass_challenge_needs_elapsed_time_and_a_right_answer(serve, extra, status):
    request = serve({"DIFFICULTY": "1"})
    test_cookie, data = _challenge(request)
    assert _pass(request, test_cookie, data, "/page", **extra)[0] == status


# lib/http.go RenderIndex: gzip'd page; 1 in 64 renders refused without Accept-Encoding gzip
def test_challenge_page_without_gzip_is_refused_one_time_in_64(serve, monkeypatch):
    request = serve({})
    asked = []
    monkeypatch.setattr(standin, "random_chance", lambda n: asked.append(n) or True)
    status, _, body = request("GET", "/page")
    assert (status, asked) == (500, [64])
    assert b"anubis_challenge" not in body
    monkeypatch.setattr(standin, "random_chance", lambda n: False)
    _challenge(request, gzip_ok=False)
    asked.clear()
    monkeypatch.setattr(standin, "random_chance", lambda n: asked.append(n) or True)
    _challenge(request, gzip_ok=True)  # a gzip client is never refused
    assert asked == []


# lib/policy/checker.go PathChecker: X-Original-Uri, else X-Forwarded-Uri (subrequest mode)
def test_path_rules_read_x_forwarded_uri_in_subrequest_mode(serve):
    request = serve({"TARGET": " "})
    check = "/.within.website/x/cmd/anubis/api/check"
    assert request("GET", check)[0] == 401
    assert request("GET", check, {"X-Forwarded-Uri": "/api/v4/projects?x=1"})[0] == 200
    assert request("GET", check, {"X-Original-Uri": "/api/v4"})[0] == 200
    # X-Original-Uri wins when both are set
    both = {"X-Original-Uri": "/page", "X-Forwarded-Uri": "/api/v4"}
    assert request("GET", check, both)[0] == 401


# lib/http.go matchRedirectDomain compares host:port; main.go url.Parse at start
def test_redirect_domains_compare_host_and_port(serve):
    request = serve({"REDIRECT_DOMAINS": "web-01.lab", "DIFFICULTY": "1"})
    test_cookie, data = _challenge(request)
    status, _, body = _pass(
        request, test_cookie, data, "https://web-01.lab:8443/page", elapsedTime="1"
    )
    assert status == 500
    assert b"Redirect domain not allowed" in body

    request = serve({"REDIRECT_DOMAINS": "web-01.lab:8443", "DIFFICULTY": "1"})
    test_cookie, data = _challenge(request)
    status, heads, _ = _pass(
        request, test_cookie, data, "https://web-01.lab:8443/page", elapsedTime="1"
    )
    assert (status, dict(heads)["Location"]) == (302, "https://web-01.lab:8443/page")


@pytest.mark.parametrize("domain", ["*.example.org:8443", "192.0.2.7:8443"])
def test_redirect_domain_go_cannot_parse_stops_the_start(monkeypatch, domain):
    monkeypatch.setenv("REDIRECT_DOMAINS", f"example.org,{domain}")
    with pytest.raises(standin.Fatal, match="first path segment in URL cannot contain colon"):
        standin.Settings()


# lib/store/bbolt/factory.go: bbolt.Open without a timeout waits for the file lock
def test_bbolt_store_waits_for_the_lock_of_another_opener(tmp_path):
    spec = {"backend": "bbolt", "parameters": {"path": str(tmp_path / "anubis.bdb")}}
    first = standin.Store.open(spec)
    opened = []
    waiter = threading.Thread(target=lambda: opened.append(standin.Store.open(spec)))
    waiter.start()
    waiter.join(0.5)
    assert waiter.is_alive()
    assert not opened
    first.handle.close()
    waiter.join(5)
    assert opened
    assert opened[0].path == spec["parameters"]["path"]
    opened[0].handle.close()


# lib/config/config.go, threshold.go: the stand-in refuses what upstream refuses
@pytest.mark.parametrize(
    ("policy", "message"),
    [
        (
            {"thresholds": [{"name": "t", "expression": "weight > 0", "action": "CHALLENGE"}]},
            "must have challenge set",
        ),
        (
            {"bots": [{"name": "ip", "remote_addresses": ["10.0.0.1"], "action": "ALLOW"}]},
            "invalid CIDR",
        ),
        (
            {"bots": [{"name": "la", "path_regex": "(?=x)", "action": "ALLOW"}]},
            "invalid or unsupported Perl syntax",
        ),
    ],
)
def test_standin_refuses_invalid_policies_like_upstream(monkeypatch, policy, message):
    monkeypatch.setenv("TARGET", " ")
    policy = {"bots": POLICY["bots"], **policy}
    with pytest.raises(standin.Fatal, match=re.escape(message)):
        standin.Policy(policy, standin.Settings())


def test_standin_matches_with_go_semantics(serve):
    """Go's `$` is the end of the text (Python's also matches before a final newline);
    `a{01}` is literal text in Go."""
    policy = {
        "bots": [
            {"name": "deny-exact", "path_regex": "^/exact$", "action": "DENY"},
            {"name": "deny-braces", "path_regex": "^/a{01}", "action": "DENY"},
            {"name": "rest", "path_regex": ".*", "action": "ALLOW"},
        ],
        "status_codes": {"CHALLENGE": 200, "DENY": 403},
    }
    request = serve({"TARGET": " "}, policy)
    check = "/.within.website/x/cmd/anubis/api/check"
    assert request("GET", check, {"X-Original-Uri": "/exact"})[0] == 403
    assert request("GET", check, {"X-Original-Uri": "/exact%0A"})[0] == 200
    assert request("GET", check, {"X-Original-Uri": "/a{01}"})[0] == 403
    assert request("GET", check, {"X-Original-Uri": "/a"})[0] == 200
