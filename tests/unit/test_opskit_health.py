"""_utils/opskit_health.py against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import http.server
import socket
import threading
import time

import opskit_health
import pytest


@pytest.fixture
def server():
    state = {"status": 503, "body": b"starting", "hits": 0}

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            state["hits"] += 1
            self.send_response(state["status"])
            self.send_header("Content-Length", str(len(state["body"])))
            self.end_headers()
            self.wfile.write(state["body"])

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", state
    httpd.shutdown()
    httpd.server_close()


def test_waits_until_healthy(server):
    url, state = server

    def heal():
        time.sleep(0.6)
        state.update(status=200, body=b"pong")

    threading.Thread(target=heal, daemon=True).start()
    answer = opskit_health.wait_healthy(url + "/ping", timeout=10, interval=0.1, expect="pong")
    assert answer["healthy"]
    assert answer["status"] == 200
    assert answer["attempts"] > 1


def test_deadline_error_names_url_without_credentials_and_last_status(server):
    url, _ = server
    secret_url = url.replace("http://", "http://admin:hunter2@") + "/healthz"
    started = time.monotonic()
    with pytest.raises(opskit_health.HealthError) as err:
        opskit_health.wait_healthy(secret_url, timeout=1, interval=0.2, what="anubis@app")
    assert time.monotonic() - started < 3
    message = str(err.value)
    assert "hunter2" not in message
    assert "admin" not in message
    assert message.startswith("anubis@app at http://<redacted>@127.0.0.1:")
    assert "HTTP 503 'starting'" in message
    assert err.value.answer["healthy"] is False


def test_nothing_listening_reports_the_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    answer = opskit_health.wait_healthy(
        f"http://127.0.0.1:{port}/", timeout=0.5, interval=0.1, raise_error=False
    )
    assert answer["status"] is None
    assert answer["healthy"] is False
    assert "Connection refused" in answer["error"] or "refused" in answer["error"].lower()


def test_body_expectation(server):
    url, state = server
    state.update(status=200, body=b"not yet")
    answer = opskit_health.probe(url, expect="pong")
    assert answer["status"] == 200
    assert answer["healthy"] is False


def test_body_limit_none_returns_the_whole_body(server):
    url, state = server
    state.update(status=200, body=b"x" * 5000 + b"END")
    assert opskit_health.probe(url)["body"] == "x" * 512
    whole = opskit_health.probe(url, body_limit=None)["body"]
    assert len(whole) == 5003
    assert whole.endswith("END")


def test_a_tls_handshake_failure_is_marked_tls(server):
    url, _ = server  # plain HTTP: a TLS client gets no handshake from it
    answer = opskit_health.probe(url.replace("http://", "https://"), verify=False)
    assert answer["status"] is None
    assert answer["tls"] is True
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    refused = opskit_health.probe(f"https://127.0.0.1:{port}/", verify=False)
    assert refused["status"] is None
    assert refused["tls"] is False


def test_wait_until_stops_when_done_and_counts_attempts():
    calls = []

    def look(left):
        calls.append(left)
        return len(calls) == 3, f"look {len(calls)}"

    seen = opskit_health.wait_until(look, timeout=10, interval=0.01)
    assert (seen.done, seen.value, seen.attempts) == (True, "look 3", 3)
    assert all(0 < left <= 10 for left in calls)


def test_wait_until_gives_up_at_the_deadline_with_the_last_value():
    started = time.monotonic()
    seen = opskit_health.wait_until(lambda left: (False, "never"), timeout=0.5, interval=0.1)
    took = time.monotonic() - started
    assert seen.done is False
    assert seen.value == "never"
    assert 2 <= seen.attempts <= 6
    assert took < 2


def test_wait_until_lets_an_error_from_the_check_end_the_wait():
    def look(left):
        raise ValueError("hard failure")

    with pytest.raises(ValueError, match="hard failure"):
        opskit_health.wait_until(look, timeout=5, interval=0.1)
