"""The monitoring formula's pure parts: checking what minions published to the mine,
splitting it into file_sd files, and the configurations Prometheus and Alertmanager
get (checked with the real promtool and amtool from Debian's packages)."""

from __future__ import annotations

import copy
import shutil
import subprocess

import opskit_monitoring as om
import opskit_schema
import opskit_settings_monitoring
import pytest
import yaml

from tests.conftest import REPO

NODE = {
    "targets": ["db-01.lab:9100"],
    "labels": {
        "job": "node_exporter",
        "__scheme__": "http",
        "__metrics_path__": "/metrics",
        "minion": "db-01.lab",
        "roles": ",database,",
    },
}


def node(**labels):
    group = copy.deepcopy(NODE)
    group["labels"].update(labels)
    return group


def settings(**scrape):
    return {
        "group": "prometheus",
        "prometheus": {
            "url": "http://127.0.0.1:9090",
            "rules_dir": "/etc/prometheus/rules",
            "global": {
                "scrape_interval": "30s",
                "scrape_timeout": "10s",
                "evaluation_interval": "30s",
                "external_labels": {"site": "lab"},
            },
        },
        "targets": {"dir": "/etc/prometheus/file_sd"},
        "scrape": {"secrets_dir": "/etc/prometheus/opskit-secrets", "tls": {}, **scrape},
        "alertmanager": {
            "url": "http://127.0.0.1:9093",
            "receivers": {},
            "route": {
                "receiver": None,
                "group_by": ["alertname", "minion"],
                "group_wait": "30s",
                "group_interval": "5m",
                "repeat_interval": "4h",
                "routes": [],
            },
        },
    }


# --- what minions publish ---------------------------------------------------------------
def test_published_groups_are_kept_and_labelled_with_the_mine_key():
    groups, problems = om.mine_groups({"db-01.lab": [node(minion="someone-else")]})
    assert problems == []
    assert groups == [node()]  # the minion label is the id the master stored it under


@pytest.mark.parametrize(
    ("group", "expected"),
    [
        (node(job="node\nexporter"), "label job"),
        (node(roles=",database,\u2028"), "holds control characters"),
        (node(__scheme__="ftp"), "label __scheme__ = 'ftp' is not a valid value"),
        (node(__metrics_path__="/metrics?x=1"), "label __metrics_path__"),
        (node(__address__="evil:1"), "label __address__ is reserved"),
        (node(**{"bad-name": "x"}), "'bad-name' is not a Prometheus label name"),
        (node(instance=7), "label instance must be a string"),
        ({"targets": ["db-01.lab:9100"]}, "exactly targets and labels"),
        ({"targets": [], "labels": {"job": "x"}}, "targets must be a non-empty list"),
        ({"targets": ["db-01.lab"], "labels": {"job": "x"}}, "is not host:port"),
        ({"targets": ["db-01.lab:0"], "labels": {"job": "x"}}, "is not host:port"),
        ({"targets": ["db 01:9100"], "labels": {"job": "x"}}, "is not host:port"),
        ({"targets": ["[::1:9100"], "labels": {"job": "x"}}, "is not host:port"),
        ({"targets": ["a:9100\n- evil"], "labels": {"job": "x"}}, "is not host:port"),
        ("not a group", "must be a mapping"),
    ],
)
def test_hostile_groups_are_refused_naming_minion_and_label(group, expected):
    groups, problems = om.mine_groups({"web-01.lab": [node(), group]})
    assert len(problems) >= 1
    assert all(p.startswith("web-01.lab: opskit_targets[1]") for p in problems), problems
    assert expected in " ".join(problems)
    assert groups == [node(minion="web-01.lab")]  # the valid group only; callers refuse all


def test_addresses():
    for good in ("db-01.lab:9100", "10.0.0.1:9100", "[fe80::1]:9100", "host.:1"):
        assert om.valid_address(good), good
    for bad in ("10.0.0.1:99999", "db:09100", "[10.0.0.1]:80", "-x.lab:1", ":9100", "a:b"):
        assert not om.valid_address(bad), bad


def test_a_minion_publishing_something_else_than_a_list_is_named():
    _, problems = om.mine_groups({"db-01.lab": {"node_exporter": {"target": "x"}}})
    assert problems == [
        "db-01.lab: opskit_targets must be a list of target groups, got "
        "{'node_exporter': {'target': 'x'}}; re-apply the common formula there "
        "(salt db-01.lab state.apply common.mine)"
    ]


# --- target files ------------------------------------------------------------------------
def test_targets_wanting_basic_auth_go_to_their_jobs_file():
    auth = node(__opskit_basic_auth__="true", __scheme__="https")
    plain = node(job="redis_exporter")
    files, problems = om.target_files([auth, plain], {"node_exporter"}, False, "mon-01.lab")
    assert problems == []
    assert files == {"opskit.json": [plain], "basic-auth-node_exporter.json": [auth]}


def test_targets_wanting_credentials_this_host_lacks_are_refused():
    auth = node(__opskit_basic_auth__="true")
    cert = node(job="redis_exporter", __opskit_client_cert__="true")
    files, problems = om.target_files([auth, cert], set(), False, "mon-01.lab")
    assert problems == [
        "db-01.lab: node_exporter at db-01.lab:9100 wants basic auth, but mon-01.lab has no "
        "credentials for job node_exporter: set "
        "monitoring:scrape:basic_auth:node_exporter:username and password in its pillar",
        "db-01.lab: redis_exporter at db-01.lab:9100 asks for a TLS client certificate, but "
        "mon-01.lab has none: set monitoring:scrape:tls:cert_file and key_file in its pillar",
    ]
    assert files == {"opskit.json": []}


# --- settings (the schema opskit.settings applies at render time) --------------------
DEFAULTS = yaml.safe_load((REPO / "salt/monitoring/parameters/defaults.yaml").read_text())
EXAMPLE = yaml.safe_load((REPO / "salt/monitoring/pillar.example").read_text())


def _merge(base, over):
    out = copy.deepcopy(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(out.get(key), dict) else value
    return out


def validate(pillar):
    """Defaults merged with ``pillar``, validated like opskit.settings does."""
    data = _merge(DEFAULTS["monitoring"], pillar)
    result = opskit_schema.validate(opskit_settings_monitoring.SCHEMA, data, root="monitoring")
    problems = [
        problem[0] + ": " + problem[-1] for problem in opskit_settings_monitoring.check(result)
    ]
    return result, problems


def test_defaults_and_the_pillar_example_are_valid():
    assert validate({})[1] == []
    result, problems = validate(EXAMPLE["monitoring"])
    assert problems == []
    assert result["scrape"]["basic_auth"]["node_exporter"]["username"] == "prometheus"


def test_hostile_settings_are_refused_naming_each_key_and_masking_secrets():
    pillar = {
        "prometheus": {
            "global": {"scrape_interval": "5 minutes"},
            "rules_dir": "rules",
            "rule_groups": [{"name": "site", "rules": [{"alert": "X", "expr": "up\x00"}]}],
        },
        "scrape": {
            "basic_auth": {
                "node exporter": {"username": "p", "password": "x"},
                "redis_exporter": {"username": "a:b", "password": " padded-secret "},
            }
        },
        "alertmanager": {
            "receivers": {
                "ops": {"webhooks": [{"url": "https://user:token@hooks.example.com/x"}]},
                "bad name": {"webhooks": [{"url": "https://hooks.example.com/"}]},
            },
            "route": {"routes": [{"matchers": "severity=critical", "receiver": "ops"}]},
        },
    }
    with pytest.raises(opskit_schema.SettingsError) as caught:
        validate(pillar)
    text = str(caught.value)
    for path in (
        "monitoring:prometheus:global:scrape_interval",
        "monitoring:prometheus:rules_dir",
        "monitoring:prometheus:rule_groups:0:rules:0:expr",
        "monitoring:scrape:basic_auth:'node exporter'",
        "monitoring:scrape:basic_auth:redis_exporter:username",
        "monitoring:scrape:basic_auth:redis_exporter:password",
        "monitoring:alertmanager:receivers:ops:webhooks:0:url",
        "monitoring:alertmanager:receivers:'bad name'",
        "monitoring:alertmanager:route:routes:0:matchers",
    ):
        assert path in text, (path, text)
    assert "padded-secret" not in text
    assert "token" not in text


def test_routes_name_receivers_that_exist():
    pillar = {
        "alertmanager": {
            "receivers": {"ops": {"webhooks": [{"url": "https://hooks.example.com/"}]}},
            "route": {
                "receiver": "nobody",
                "routes": [{"matchers": ['severity="critical"'], "receiver": "dba"}],
            },
        },
        "prometheus": {"rule_groups": [{"name": "g", "rules": [{"expr": "up"}]}]},
        "scrape": {"tls": {"cert_file": "/etc/prometheus/client.pem"}},
    }
    assert validate(pillar)[1] == [
        "monitoring:alertmanager:route:receiver: is not a receiver (receivers: ops)",
        "monitoring:alertmanager:route:routes:0:receiver: is not a receiver (receivers: ops)",
        "monitoring:scrape:tls: set both cert_file and key_file, or neither",
        "monitoring:prometheus:rule_groups:0:rules:0: give exactly one of alert or record",
    ]


# --- configurations, checked by the real tools -------------------------------------------
def _tool(name):
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is missing: run tests/bootstrap (Debian's prometheus packages)")
    return path


def test_prometheus_config_passes_promtool(tmp_path):
    data = settings(
        basic_auth={"node_exporter": {"username": "prometheus", "password": "s3cret"}},
        tls={"ca_file": str(tmp_path / "ca.pem"), "insecure_skip_verify": False},
    )
    data["scrape"]["secrets_dir"] = str(tmp_path)
    data["targets"]["dir"] = str(tmp_path)
    data["prometheus"]["rules_dir"] = str(REPO / "salt" / "monitoring" / "files")
    (tmp_path / "ca.pem").write_text("")
    (tmp_path / "basic-auth-node_exporter.password").write_text("s3cret\n")
    config = om.prometheus_config(data, {"minion": "mon-01.lab", "roles": ",monitoring,"})
    assert "s3cret" not in yaml.safe_dump(config)
    jobs = {c["job_name"]: c for c in config["scrape_configs"]}
    assert sorted(jobs) == [
        "alertmanager",
        "opskit",
        "opskit-basic-auth-node_exporter",
        "prometheus",
    ]
    assert jobs["opskit-basic-auth-node_exporter"]["basic_auth"] == {
        "username": "prometheus",
        "password_file": f"{tmp_path}/basic-auth-node_exporter.password",
    }
    assert jobs["opskit"]["tls_config"] == {"ca_file": str(tmp_path / "ca.pem")}
    path = tmp_path / "prometheus.yml"
    path.write_text(om.document("prometheus", config))
    proc = subprocess.run(
        [_tool("promtool"), "check", "config", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "rules.yml" in proc.stdout  # the rule files it names were checked too


def test_alertmanager_config_passes_amtool(tmp_path):
    data = settings()
    data["alertmanager"]["receivers"] = {
        "ops": {"webhooks": [{"url": "https://alerts.example.com/hook", "send_resolved": True}]},
        "dba": {"webhooks": [{"url": "http://dba.example.com/am", "max_alerts": 10}]},
    }
    data["alertmanager"]["route"]["routes"] = [
        {"matchers": ['alertname=~"RedisDown|PostgresDown"'], "receiver": "dba"}
    ]
    config = om.alertmanager_config(data)
    assert config["route"]["receiver"] == "dba"  # the first by name, none being set
    assert config["route"]["routes"] == [
        {"receiver": "dba", "matchers": ['alertname=~"RedisDown|PostgresDown"']}
    ]
    path = tmp_path / "alertmanager.yml"
    path.write_text(om.document("alertmanager", config))
    proc = subprocess.run(
        [_tool("amtool"), "check-config", str(path)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 receivers" in proc.stdout


def test_without_receivers_alerts_go_to_a_silent_receiver(tmp_path):
    config = om.alertmanager_config(settings())
    assert config["receivers"] == [{"name": "opskit-none"}]
    path = tmp_path / "alertmanager.yml"
    path.write_text(om.document("alertmanager", config))
    proc = subprocess.run(
        [_tool("amtool"), "check-config", str(path)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_site_rules_leave_out_what_the_settings_left_empty(tmp_path):
    """The schema fills in record/for/labels as null or empty; promtool refuses a rule
    with both alert and record keys, so the rule file carries only what was given."""
    result, problems = validate(
        {
            "prometheus": {
                "rule_groups": [{"name": "site", "rules": [{"alert": "A", "expr": "up == 0"}]}]
            }
        }
    )
    assert problems == []
    rules = om.site_rules(result)
    assert rules == {"groups": [{"name": "site", "rules": [{"alert": "A", "expr": "up == 0"}]}]}
    path = tmp_path / "site.yml"
    path.write_text(om.document("site_rules", rules))
    proc = subprocess.run(
        [_tool("promtool"), "check", "rules", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- the shared YAML renderer -------------------------------------------------------
def test_documents_come_from_the_shared_yaml_renderer():
    config = om.alertmanager_config(settings())
    text = om.document("alertmanager", config)
    assert text.startswith("# Managed by Salt (opskit monitoring formula): alertmanager.")
    assert yaml.safe_load(text) == config


@pytest.mark.parametrize("bad", ["a\nb", "a\u2028b", "a\u202eb", "a\x00b"])
def test_the_renderer_refuses_control_characters_naming_the_key(bad):
    rules = {"groups": [{"name": "site", "rules": [{"alert": "A", "labels": {"team": bad}}]}]}
    with pytest.raises(ValueError, match=r"monitoring:prometheus:rule_groups:groups:0:rules:0"):
        om.document("site_rules", rules)
