"""_utils/opskit_exporter_probe.py: the post-start /metrics check, against real HTTP(S)
servers on 127.0.0.1 (tests/cmdb_servers.py's ScriptedServer: plain, TLS with a
throwaway trustme CA, TLS requiring a client certificate, basic auth). The unit state
comes from a stand-in host object: systemd is the lab's part
(tests/integration/test_exporters.py runs the real units)."""

from __future__ import annotations

import types

import opskit_exporter_catalog as catalog
import opskit_exporter_probe as probe
import pytest

from tests.cmdb_servers import Reply
from tests.cmdb_servers import ScriptedServer
from tests.cmdb_servers import Tls

NODE_OK = b"# HELP node_boot_time_seconds x\nnode_boot_time_seconds 1.7e+09\n"
REDIS_DOWN = b"redis_exporter_build_info 1\nredis_up 0\n"
PG_17 = b'pg_up 1\npg_static{server="db:5432",short_version="17.2",version="x"} 1\n'


@pytest.fixture
def exporter_server(tmp_path):
    """Start ``start(status, body, tls=None|"server"|"client")``: a scripted HTTP(S)
    server on 127.0.0.1 (tests/cmdb_servers.py) whose every answer is ``status`` and
    ``body`` until the test scripts others; returns (port, server)."""
    servers = []
    # The certificate names another host: the probe checks our own service on its
    # loopback address, not the name in its certificate.
    tls_files = Tls.create(tmp_path / "tls", names=("exporter.example",))

    def start(status=200, body=NODE_OK, tls=None):
        context = None
        if tls:  # "client": exporter-toolkit's RequireAndVerifyClientCert
            context = tls_files.server_context(require_client_cert=tls == "client")
        server = ScriptedServer(context)
        headers = {"WWW-Authenticate": 'Basic realm="exporter"'} if status == 401 else {}
        server.script(Reply(status, body, headers))
        servers.append(server)
        return server.port, server

    yield start
    for server in servers:
        server.stop()


def _probe(name, port, **overrides):
    fields = {
        "name": name,
        "exporter": catalog.CATALOG[name],
        "version": None,
        "listen_host": "127.0.0.1",
        "listen_port": port,
        "scheme": "http",
        "basic_auth": False,
        "client_auth": False,
        "verify_up": True,
    }
    fields.update(overrides)
    return probe.Probe(**fields)


def test_a_healthy_exporter_is_scraped_whole(exporter_server):
    big = NODE_OK + b"".join(b'node_cpu_seconds_total{cpu="%d"} 1\n' % i for i in range(500))
    port, _ = exporter_server(body=big)
    problem, result = probe.health(_probe("node_exporter", port))
    assert problem is None
    assert result["detail"] == f"http://127.0.0.1:{port}/metrics answers"
    assert result["body"] == big.decode()  # the whole body, not a health-check excerpt


def test_another_program_on_the_port_is_named(exporter_server):
    port, _ = exporter_server(body=b"go_goroutines 7\n")
    problem, _ = probe.health(_probe("node_exporter", port))
    assert problem == "/metrics has no node_* series: is another program on the port?"


def test_an_exporter_that_cannot_reach_its_service_says_so(exporter_server):
    port, _ = exporter_server(body=REDIS_DOWN)
    problem, _ = probe.health(_probe("redis_exporter", port))
    assert problem.startswith("redis_up is 0: the exporter runs but cannot reach")
    assert probe.health(_probe("redis_exporter", port, verify_up=False))[0] is None


def test_an_http_error_is_reported_with_the_url(exporter_server):
    port, _ = exporter_server(status=500, body=b"boom")
    result = probe.scrape(_probe("node_exporter", port))
    assert result == {
        "ok": False,
        "detail": f"http://127.0.0.1:{port}/metrics answered HTTP 500",
        "body": None,
    }


def test_basic_auth_required_counts_as_answering_only_when_configured(exporter_server):
    port, _ = exporter_server(status=401, body=b"Unauthorized\n")
    assert probe.scrape(_probe("node_exporter", port, basic_auth=True)) == {
        "ok": True,
        "detail": "answers (basic auth required)",
        "body": None,
    }
    assert probe.scrape(_probe("node_exporter", port))["ok"] is False


def test_tls_with_the_hosts_certificate_is_scraped(exporter_server):
    port, _ = exporter_server(tls="server")  # the certificate names another host
    problem, result = probe.health(_probe("node_exporter", port, scheme="https"))
    assert problem is None
    assert result["body"] == NODE_OK.decode()


def test_a_client_certificate_requirement_counts_only_when_configured(exporter_server):
    port, _ = exporter_server(tls="client")
    with_client_auth = probe.scrape(_probe("node_exporter", port, scheme="https", client_auth=True))
    assert with_client_auth == {
        "ok": True,
        "detail": "answers (TLS client certificate required)",
        "body": None,
    }
    without = probe.scrape(_probe("node_exporter", port, scheme="https"))
    assert without["ok"] is False
    assert without["detail"].startswith(f"TLS error on https://127.0.0.1:{port}/metrics: ")


def test_nothing_listening_is_not_a_tls_error():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = probe.scrape(_probe("node_exporter", port, scheme="https", client_auth=True))
    assert result["ok"] is False
    assert result["detail"].startswith(f"https://127.0.0.1:{port}/metrics does not answer: ")


class Host:
    """Stand-in for opskit_exporter_host.Host: the unit states systemd reports, in turn."""

    def __init__(self, *states):
        self.states = list(states)

    def active(self, unit):
        return self.states.pop(0) if len(self.states) > 1 else self.states[0]


def _deployment(name, port, timeout=5, version=None):
    return types.SimpleNamespace(
        **vars(_probe(name, port, version=version)),
        unit_name=f"{name}.service",
        verify_timeout=timeout,
    )


def test_verify_waits_for_the_unit_and_the_series(exporter_server):
    port, server = exporter_server()
    server.script(Reply(503, b"starting"), Reply(200, NODE_OK))
    host = Host("activating", "activating", "active")
    detail = probe.verify(host, _deployment("node_exporter", port), interval=0.1)
    assert len(server.received) == 2  # scraped only once the unit was active
    assert detail == f"http://127.0.0.1:{port}/metrics answers"


def test_verify_gives_up_naming_the_last_problem(exporter_server):
    port, _ = exporter_server(body=REDIS_DOWN)
    with pytest.raises(probe.NotHealthy) as err:
        probe.verify(Host("active"), _deployment("redis_exporter", port, timeout=0.5), 0.1)
    assert str(err.value).startswith("after 0.5s: redis_up is 0")
    assert err.value.hard is False
    with pytest.raises(probe.NotHealthy, match=r"^after 0\.3s: unit node_exporter\.service is"):
        probe.verify(Host("failed"), _deployment("node_exporter", port, timeout=0.3), 0.1)


def test_verify_fails_at_once_for_a_postgres_exporter_too_old_for_the_server(exporter_server):
    port, _ = exporter_server(body=PG_17)
    deployment = _deployment("postgres_exporter", port, timeout=30, version="0.16.0")
    with pytest.raises(probe.NotHealthy, match=r"0\.16\.0 does not work with PostgreSQL 17") as err:
        probe.verify(Host("active"), deployment, interval=0.1)
    assert err.value.hard is True
    newer = _deployment("postgres_exporter", port, timeout=30, version="0.17.0")
    assert probe.verify(Host("active"), newer, interval=0.1).endswith("/metrics answers")
