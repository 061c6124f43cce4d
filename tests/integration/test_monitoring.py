"""The monitoring formula on the lab: mon-01 runs Debian's Prometheus 2.42 and
Alertmanager 0.25 (real packages, real systemd units) and scrapes every target the other
minions publish to the Salt mine (``opskit_targets``): node, redis, postgres and nginx
exporters (real binaries) and the Anubis instances on web-01 (the lab's Anubis is a
stand-in, see tests/lab/anubis_standin.py; its metrics listener is what is scraped).

Alerts go from Prometheus to Alertmanager to a webhook receiver this module runs on the
lab host (``http://lab-host:18093/alertmanager``, mon-01's pillar in inventory.yaml).
Nothing here reaches beyond the lab; every wait is bounded and says what it waited for.
"""

from __future__ import annotations

import contextlib
import copy
import http.server
import json
import re
import threading
import time

import pytest
import requests

from tests.integration.lab_helpers import bcrypt_hash
from tests.integration.lab_helpers import changed
from tests.integration.lab_helpers import failures
from tests.integration.lab_helpers import sh
from tests.lab.lab import load_inventory

MON = "mon-01.lab"
DB = "db-01.lab"
THUMB = "thumb-01.lab"
WEBHOOK_PORT = 18093


def record(minion_id: str) -> dict:
    return copy.deepcopy(load_inventory()[minion_id])


def apply(lab, minion_id: str, sls: str, *extra: str) -> dict:
    """state.apply on one minion; returns {state id: state result}."""
    result = lab.salt(minion_id, "state.apply", sls, *extra, timeout=600)
    ret = (result.data or {}).get(minion_id)
    assert isinstance(ret, dict), f"state.apply {sls} on {minion_id}: {result!r}"
    return {state["__id__"]: state for state in ret.values()}


def wait_until(what: str, probe, timeout: float, interval: float = 2.0):
    """Call ``probe`` until it returns something truthy; fail naming ``what`` and the
    last value seen when ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last and last[0]:
            return last
        time.sleep(interval)
    pytest.fail(f"{what} did not happen within {timeout:.0f}s; last seen: {last!r}")


class Prometheus:
    """Prometheus and Alertmanager on mon-01, over their HTTP APIs from the lab host."""

    def __init__(self, lab):
        address = lab.minions[MON].spec.ip
        self.url = f"http://{address}:9090"
        self.alertmanager = f"http://{address}:9093"

    def get(self, path: str, **params):
        response = requests.get(f"{self.url}{path}", params=params, timeout=10)
        response.raise_for_status()
        return response.json()["data"]

    def targets(self) -> list[dict]:
        return self.get("/api/v1/targets", state="active")["activeTargets"]

    def up(self) -> dict[tuple[str, str], float]:
        result = self.get("/api/v1/query", query="up")["result"]
        return {(s["metric"]["job"], s["metric"]["instance"]): float(s["value"][1]) for s in result}

    def rule_groups(self) -> dict[str, list[str]]:
        groups = self.get("/api/v1/rules")["groups"]
        return {g["name"]: sorted(r["name"] for r in g["rules"]) for g in groups}

    def alerts(self, name: str) -> list[dict]:
        response = requests.get(
            f"{self.alertmanager}/api/v2/alerts",
            params={"filter": f'alertname="{name}"', "active": "true"},
            timeout=10,
        )
        response.raise_for_status()
        return response.json()


@pytest.fixture(scope="module")
def monitoring(lab, highstate_once):
    """mon-01 after the session's highstate, converged again (earlier test modules
    changed the other minions' exporters; their mine entries followed)."""
    states = apply(lab, MON, "monitoring")
    assert not failures(states), failures(states)
    return Prometheus(lab)


class _Receiver(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.received.append((self.path, json.loads(body)))
        self.send_response(200)
        self.end_headers()


@pytest.fixture(scope="module")
def webhook(lab):
    """A webhook receiver on the lab host: Alertmanager's notifications, as received."""
    server = http.server.ThreadingHTTPServer((lab.cfg.host_ip, WEBHOOK_PORT), _Receiver)
    server.received = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.received
    server.shutdown()
    server.server_close()


def test_every_target_in_the_mine_is_scraped_and_up(lab, monitoring):
    """What the master's mine holds under opskit_targets is exactly what Prometheus
    scrapes from the mine (plus itself and Alertmanager), and every target is up."""
    mine = lab.salt_run("mine.get", "*", "opskit_targets").data
    published = {
        (group["labels"]["job"], target, minion, group["labels"]["roles"])
        for minion, groups in mine.items()
        for group in groups
        for target in group["targets"]
    }
    jobs = {job for job, *_ in published}
    assert {"node_exporter", "redis_exporter", "postgres_exporter", "nginx_exporter"} <= jobs
    assert "anubis" in jobs
    # common.mine runs on every minion; the ones that run exporters publish them.
    assert set(mine) == set(lab.minions)
    inventory = load_inventory()
    exporting = {m for m in lab.minions if inventory[m].get("exporters")}
    assert exporting <= {minion for _, _, minion, _ in published} <= set(lab.minions)

    def all_up():
        scraped = {
            (
                t["labels"]["job"],
                t["labels"]["instance"],
                t["labels"].get("minion"),
                t["labels"].get("roles"),
            )
            for t in monitoring.targets()
            if t["scrapePool"].startswith("opskit")
        }
        up = monitoring.up()
        down = sorted(p for p in published if up.get((p[0], p[1])) != 1)
        return scraped == published and not down, {"down": down, "scraped": scraped}

    started = time.monotonic()
    wait_until("every published target up == 1 in Prometheus", all_up, timeout=90)
    print(f"{len(published)} published targets up after {time.monotonic() - started:.0f}s")
    assert monitoring.up()[("prometheus", "127.0.0.1:9090")] == 1
    assert monitoring.up()[("alertmanager", "127.0.0.1:9093")] == 1


def test_redis_down_fires_an_alert_that_reaches_the_webhook(lab, monitoring, webhook):
    """redis-server stopped on db-01: redis_exporter reports redis_up 0, RedisDown fires
    after its minute, Alertmanager holds it and posts it to the lab's receiver. redis is
    started again and the alert resolves."""
    assert monitoring.alerts("RedisDown") == []
    sh(lab, DB, "systemctl stop redis-server")
    try:
        fired = wait_until(
            "RedisDown for db-01.lab in Alertmanager and at the webhook",
            lambda: _redis_down_seen(monitoring, webhook),
            timeout=180,
        )
    finally:
        started = sh(lab, DB, "systemctl start redis-server 2>&1 && echo started", check=False)
        assert started.strip().endswith("started"), started + sh(
            lab, DB, "journalctl -u redis-server -n 40 --no-pager", check=False
        )
    alert, payload = fired[1]
    assert alert["labels"]["severity"] == "critical"
    assert alert["labels"]["job"] == "redis_exporter"
    assert alert["labels"]["roles"] == ",database,"
    assert payload["receiver"] == "lab-webhook"
    assert payload["status"] == "firing"
    wait_until(
        "redis_up 1 again and a resolved RedisDown at the webhook",
        lambda: (_resolved(webhook) and monitoring.alerts("RedisDown") == [], None),
        timeout=120,
    )


def _redis_down_seen(monitoring, webhook):
    active = [a for a in monitoring.alerts("RedisDown") if a["labels"].get("minion") == DB]
    posted = [
        payload
        for path, payload in webhook
        if path == "/alertmanager"
        and payload["status"] == "firing"
        and any(a["labels"]["alertname"] == "RedisDown" for a in payload["alerts"])
    ]
    return bool(active and posted), (active[0] if active else None, posted[0] if posted else None)


def _resolved(webhook) -> bool:
    return any(
        payload["status"] == "resolved"
        and any(a["labels"]["alertname"] == "RedisDown" for a in payload["alerts"])
        for _, payload in webhook
    )


def test_a_thumbnail_server_restart_fires_service_restarting(lab, monitoring):
    """The thumbnail-server formula's memory guard writes the service's memory, limit
    and systemd restart count for node_exporter's textfile collector; Prometheus has
    them, and a restart (the kill the memory guard or the kernel would send) fires
    ServiceRestarting. The service is the lab's stand-in (tests/lab/thumbnail_standin.py)."""
    unit = 'unit="thumbnail-server.service"'

    def series(name):
        result = monitoring.get("/api/v1/query", query=f"{name}{{{unit}}}")["result"]
        return [(s["metric"]["minion"], float(s["value"][1])) for s in result]

    rss = wait_until(
        "thumbnail-server's memory in Prometheus",
        lambda: (series("opskit_service_memory_rss_bytes"), None),
        timeout=60,
    )[0]
    assert rss[0][0] == THUMB
    assert rss[0][1] > 1024 * 1024
    limit = record(THUMB)["thumbnail_server"]["memory_limit"] * 2**20
    assert series("opskit_service_memory_limit_bytes") == [(THUMB, limit)]
    before = series("opskit_service_restarts_total")
    assert [minion for minion, _ in before] == [THUMB]
    # The main process only, as the kernel's OOM killer picks one process.
    sh(lab, THUMB, "systemctl kill --kill-whom=main --signal=SIGKILL thumbnail-server")

    def fired():
        alerts = monitoring.get("/api/v1/alerts")["alerts"]
        mine = [
            a
            for a in alerts
            if a["labels"]["alertname"] == "ServiceRestarting" and a["labels"]["minion"] == THUMB
        ]
        return bool(mine) and mine[0]["state"] == "firing", mine

    wait_until("ServiceRestarting for thumb-01.lab", fired, timeout=90)
    assert series("opskit_service_restarts_total")[0][1] == before[0][1] + 1
    wait_until(
        "thumbnail-server back up",
        lambda: (
            sh(lab, THUMB, "systemctl is-active thumbnail-server", False).strip() == "active",
        ),
        timeout=60,
    )


def _prometheus_pid(lab) -> str:
    return sh(lab, MON, "systemctl show -p MainPID --value prometheus").strip()


def test_a_bad_rule_from_pillar_never_goes_live(lab, monitoring):
    """A rule group from pillar that promtool refuses fails the run with promtool's
    message; the file is not written, nothing is reloaded, the running Prometheus (same
    PID) keeps its rules. A valid group goes live by reload (same PID), and goes again."""
    pid, rules = _prometheus_pid(lab), monitoring.rule_groups()
    assert "site" not in rules
    assert "opskit-databases" in rules
    bad = {"rule_groups": [{"name": "site", "rules": [{"alert": "Bad", "expr": "up ==="}]}]}
    states = apply(
        lab, MON, "monitoring", f"pillar={json.dumps({'monitoring': {'prometheus': bad}})}"
    )
    comment = failures(states)["monitoring-config-rules-site-file-managed"]
    assert "check_cmd execution failed" in comment
    assert "parse error" in comment, comment
    assert "reloaded" not in json.dumps([s["changes"] for s in states.values()])
    assert sh(lab, MON, "test -e /etc/prometheus/rules/site.yml || echo absent").strip() == "absent"
    assert _prometheus_pid(lab) == pid
    assert monitoring.rule_groups() == rules

    good = {
        "rule_groups": [
            {"name": "site", "rules": [{"alert": "LabSiteRule", "expr": "vector(1) == 0"}]}
        ]
    }
    pillar = f"pillar={json.dumps({'monitoring': {'prometheus': good}})}"
    states = apply(lab, MON, "monitoring", pillar)
    assert not failures(states), failures(states)
    reload = states["monitoring-service-prometheus-monitoring-reloaded"]["changes"]
    assert reload == {"prometheus": {"old": f"running (PID {pid})", "new": f"reloaded (PID {pid})"}}
    assert monitoring.rule_groups()["site"] == ["LabSiteRule"]

    states = apply(lab, MON, "monitoring")
    assert not failures(states), failures(states)
    assert "site" not in monitoring.rule_groups()
    assert _prometheus_pid(lab) == pid


def test_a_second_apply_changes_nothing(lab, monitoring):
    states = apply(lab, MON, "monitoring")
    assert not failures(states), failures(states)
    assert changed(states) == []
    pending = apply(lab, MON, "monitoring", "test=True")
    assert [sid for sid, s in pending.items() if s["result"] is None] == []


def test_an_exporter_with_tls_and_basic_auth_is_scraped_with_credentials(lab, monitoring):
    """db-01's node_exporter switched to TLS (the lab CA's certificate for db-01.lab)
    and basic auth through the CMDB: it publishes https and wants credentials; mon-01,
    given the CA and the password in its own CMDB record, scrapes it in a job of its
    own. The password lives in a 0640 root:prometheus file only: not in prometheus.yml,
    a state's return or a process's arguments."""
    password = "lab-scrape-Pa$$word with spaces"
    ca = sh(lab, DB, "cat /etc/opskit-lab-pki/ca.crt")
    lab.minions[MON].run(
        ["sh", "-c", "mkdir -p /etc/opskit-lab && cat > /etc/opskit-lab/scrape-ca.crt"],
        input_text=ca,
    )
    web = {
        "basic_auth_users": {"prometheus": bcrypt_hash(password)},
        "tls": {"cert": "/etc/opskit-lab-pki/redis.crt", "key": "/etc/opskit-lab-pki/redis.key"},
    }
    scrape = {
        "tls": {"ca_file": "/etc/opskit-lab/scrape-ca.crt"},
        "basic_auth": {"node_exporter": {"username": "prometheus", "password": password}},
    }
    with contextlib.ExitStack() as stack:
        stack.callback(_restore_plain_scraping, lab)
        stack.enter_context(lab.cmdb_record_edited(MON, {"monitoring": {"scrape": scrape}}))
        states = apply(lab, MON, "monitoring")
        assert not failures(states), failures(states)
        dumped = json.dumps(states)
        stack.enter_context(
            lab.cmdb_record_edited(DB, {"exporters": {"node_exporter": {"web": web}}})
        )
        states = apply(lab, DB, "exporters")
        assert not failures(states), failures(states)

        def scraped_with_auth():
            found = [t for t in monitoring.targets() if t["labels"]["instance"] == "db-01.lab:9100"]
            ok = len(found) == 1 and found[0]["health"] == "up"
            return ok and found[0]["scrapePool"] == "opskit-basic-auth-node_exporter", found

        found = wait_until("db-01's node_exporter scraped over https", scraped_with_auth, 90)[1]
        assert found[0]["scrapeUrl"] == "https://db-01.lab:9100/metrics"
        assert monitoring.up()[("node_exporter", "db-01.lab:9100")] == 1

        secret_file = "/etc/prometheus/opskit-secrets/basic-auth-node_exporter.password"
        assert sh(lab, MON, f"stat -c '%a %U %G' {secret_file}").split() == [
            "640",
            "root",
            "prometheus",
        ]
        assert sh(lab, MON, f"cat {secret_file}").strip() == password
        config = sh(lab, MON, "cat /etc/prometheus/prometheus.yml")
        assert f"password_file: {secret_file}" in config
        assert password not in config
        assert password not in dumped
        assert password not in sh(lab, MON, "ps -eo args")
        assert password not in sh(lab, MON, "cat /var/log/salt/minion")
        denied = sh(lab, MON, f"runuser -u nobody -- cat {secret_file} 2>&1", check=False)
        assert password not in denied
    # Back to plain scraping (the callback re-applied both minions with their records).
    assert re.search(r"^node_", sh(lab, DB, "curl -sf http://127.0.0.1:9100/metrics"), re.M)


def _restore_plain_scraping(lab):
    """Runs after both CMDB records are restored: db-01 first (it publishes plain
    http again), then mon-01 (which drops the basic-auth job)."""
    for minion_id, sls in ((DB, "exporters"), (MON, "monitoring")):
        states = apply(lab, minion_id, sls)
        assert not failures(states), (minion_id, failures(states))
