"""``monitoring.reload_status`` and the ``monitoring.reloaded`` state inside Salt's real
loaders, against a real HTTP server on 127.0.0.1 that serves what Prometheus's own
/metrics says about its last reload (the metric names are Prometheus's, from
prometheus/config/reload.go's gauges ``prometheus_config_last_reload_successful`` and
``..._last_reload_success_timestamp_seconds``). The reload itself (SIGHUP, same PID) is
proven on mon-01 by tests/integration/test_monitoring.py."""

from __future__ import annotations

import http.server
import os
import socket
import threading
import time

import pytest

METRIC = "prometheus_config"


@pytest.fixture
def daemon():
    """A /metrics endpoint whose reload gauges the test sets; returns (url, state)."""
    state = {"successful": 1, "timestamp": time.time() - 60, "hits": 0, "unavailable": 0}

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            state["hits"] += 1
            body = (
                f"# HELP {METRIC}_last_reload_successful Whether the last reload succeeded.\n"
                f"{METRIC}_last_reload_successful {state['successful']}\n"
                f"{METRIC}_last_reload_success_timestamp_seconds {state['timestamp']:.9e}\n"
            ).encode()
            status = 200
            if self.path != "/metrics":
                body, status = b"404 page not found\n", 404
            elif state["hits"] <= state["unavailable"]:
                body, status = b"Service Unavailable", 503
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", state
    server.shutdown()
    server.server_close()


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_reload_status_reads_the_daemons_gauges(modules, daemon):
    url, state = daemon
    assert modules.monitoring.reload_status(url, METRIC) == {
        "successful": True,
        "timestamp": pytest.approx(state["timestamp"]),
    }
    state["successful"] = 0
    assert modules.monitoring.reload_status(url + "/", METRIC)["successful"] is False


def test_reload_status_ignores_proxies_from_the_environment(modules, daemon, monkeypatch):
    """The daemon is on this host: a proxy in the minion's environment must not be
    asked for it (this failed while reload_status used requests.get directly)."""
    url, state = daemon
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{_free_port()}")
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{_free_port()}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert modules.monitoring.reload_status(url, METRIC)["successful"] is True
    assert state["hits"] == 1


def test_reload_status_errors_name_the_minion_and_the_url_without_credentials(
    modules, daemon, minion_id
):
    from salt.exceptions import CommandExecutionError

    url, _ = daemon
    with pytest.raises(CommandExecutionError) as err:
        modules.monitoring.reload_status(url, "alertmanager_config")
    assert str(err.value) == (
        f"{minion_id}: {url}/metrics has no alertmanager_config_last_reload_successful; "
        "is it the right daemon?"
    )
    nothing = f"http://admin:hunter2@127.0.0.1:{_free_port()}"
    with pytest.raises(CommandExecutionError) as err:
        modules.monitoring.reload_status(nothing, METRIC, timeout=1)
    message = str(err.value)
    assert message.startswith(f"{minion_id}: cannot read http://<redacted>@127.0.0.1:")
    assert "hunter2" not in message
    assert "admin" not in message


def test_reloaded_checks_the_last_reload_when_nothing_changed(states, daemon, tmp_path, testmode):
    url, state = daemon
    config = tmp_path / "prometheus.yml"
    config.write_text("global: {}\n")
    os.utime(config, (state["timestamp"] - 10, state["timestamp"] - 10))
    ret = states.monitoring.reloaded(
        name="prometheus", url=url, metric=METRIC, files=[str(config)], test=testmode
    )
    assert ret.result is True
    assert ret.changes == {}
    assert ret.comment == "prometheus runs with its current configuration (last reload succeeded)."
    state["successful"] = 0
    ret = states.monitoring.reloaded(
        name="prometheus", url=url, metric=METRIC, files=[str(config)], test=testmode
    )
    assert ret.result is False
    assert "its last configuration reload failed" in ret.comment
    assert "journalctl -u prometheus" in ret.comment


def test_reloaded_waits_for_the_daemon_then_names_it_and_the_url(states, tmp_path, testmode):
    url = f"http://127.0.0.1:{_free_port()}"
    started = time.monotonic()
    ret = states.monitoring.reloaded(
        name="prometheus", url=url, metric=METRIC, files=[], timeout=1.5, test=testmode
    )
    took = time.monotonic() - started
    assert ret.result is (None if testmode else False)
    assert ret.comment.startswith(f"prometheus: opskit-functional: cannot read {url}/metrics: ")
    assert 1.0 <= took < 5


def test_reloaded_waits_until_a_starting_daemon_answers(states, daemon, testmode):
    url, state = daemon
    state["unavailable"] = 3  # Prometheus answers 503 while it loads its TSDB
    ret = states.monitoring.reloaded(
        name="prometheus", url=url, metric=METRIC, timeout=10, test=testmode
    )
    assert ret.result is True
    assert state["hits"] == 4
