"""The monitoring formula and its modules inside Salt's real loaders, on this host.

The Salt mine here is the masterless one (``mine_cache`` in the minion's data store,
which ``mine.get`` reads when ``file_client`` is local): the tests put into it what a
minion could publish, hostile values included, and run the real
``monitoring.refresh_targets`` and ``monitoring.targets_written`` against it.
"""

from __future__ import annotations

import grp
import json
import os
import stat

import pytest
import yaml

from tests.conftest import REPO

EXAMPLE = yaml.safe_load((REPO / "salt" / "monitoring" / "pillar.example").read_text())


def _node(minion, **labels):
    return {
        "targets": [f"{minion}:9100"],
        "labels": {"job": "node_exporter", "__scheme__": "http", "minion": minion, **labels},
    }


def _read(path):
    with open(path, encoding="utf-8") as handle:
        return handle.read()


@pytest.fixture
def mine(modules, minion_id):
    """Set what the (masterless) mine holds for this minion under opskit_targets."""

    def publish(groups):
        modules.data.update("mine_cache", {"opskit_targets": groups})

    yield publish
    modules.data.update("mine_cache", {})


@pytest.fixture
def target_settings(tmp_path):
    directory = tmp_path / "file_sd"
    directory.mkdir()
    return {
        "dir": str(directory),
        "group": grp.getgrgid(os.getgid()).gr_name,
        "basic_auth_jobs": ["node_exporter"],
        "client_cert": False,
    }


def test_targets_are_written_from_the_mine(states, mine, minion_id, target_settings, testmode):
    mine([_node(minion_id), _node(minion_id, __opskit_basic_auth__="true")])
    directory = target_settings["dir"]
    ret = states.monitoring.targets_written(directory, settings=target_settings, test=testmode)
    assert ret.result is (None if testmode else True), ret
    assert ret.changes == {
        "opskit.json": {"old": None, "new": [f"{minion_id}:9100 (node_exporter, {minion_id})"]},
        "basic-auth-node_exporter.json": {
            "old": None,
            "new": [f"{minion_id}:9100 (node_exporter, {minion_id})"],
        },
    }
    files = sorted(p for p in os.listdir(directory) if p.endswith(".json"))
    if testmode:
        assert files == []
        return
    assert files == ["basic-auth-node_exporter.json", "opskit.json"]
    with open(f"{directory}/opskit.json", encoding="utf-8") as handle:
        assert json.load(handle) == [_node(minion_id)]
    mode = os.stat(f"{directory}/opskit.json")
    assert stat.S_IMODE(mode.st_mode) == 0o640
    assert mode.st_gid == os.getgid()
    again = states.monitoring.targets_written(directory, settings=target_settings)
    assert again.result is True
    assert again.changes == {}


def test_a_target_file_no_longer_configured_is_removed(states, mine, minion_id, target_settings):
    directory = target_settings["dir"]
    mine([_node(minion_id)])
    assert states.monitoring.targets_written(directory, settings=target_settings).result
    target_settings["basic_auth_jobs"] = []
    ret = states.monitoring.targets_written(directory, settings=target_settings)
    assert ret.changes == {"basic-auth-node_exporter.json": {"old": [], "new": None}}
    assert sorted(os.listdir(directory)) == [".opskit.lock", "opskit.json"]


@pytest.mark.parametrize(
    "case",
    [
        ({"roles": "a\nb"}, "label roles = 'a\\nb' is longer than 512 characters or holds"),
        ({"__scheme__": "gopher"}, "label __scheme__ = 'gopher' is not a valid value"),
        ({"__opskit_client_cert__": "true"}, "asks for a TLS client certificate"),
    ],
)
def test_hostile_or_unservable_targets_change_nothing(
    states, mine, minion_id, target_settings, case
):
    labels, expected = case
    directory = target_settings["dir"]
    mine([_node(minion_id)])
    assert states.monitoring.targets_written(directory, settings=target_settings).result
    before = _read(f"{directory}/opskit.json")
    mine([_node(minion_id, job="other"), _node(minion_id, **labels)])
    ret = states.monitoring.targets_written(directory, settings=target_settings)
    assert ret.result is False
    assert "no target file was changed" in ret.comment
    assert expected in ret.comment, ret.comment
    assert minion_id in ret.comment
    assert _read(f"{directory}/opskit.json") == before


def test_refresh_without_the_formulas_settings_file_does_nothing(modules, mine, minion_id):
    mine([_node(minion_id)])
    assert not os.path.exists("/etc/prometheus/opskit-targets.json")
    assert modules.monitoring.refresh_targets() == {}


def test_pillar_example_renders_secrets_as_pillar_references_only(modules):
    rendered = modules.state.show_sls("monitoring", pillar=EXAMPLE)
    assert isinstance(rendered, dict), rendered
    text = json.dumps(rendered)
    assert "scrape-secret-from-the-cmdb" not in text
    secret = rendered["monitoring-config-secret-basic-auth-node_exporter-file-managed"]["file"]
    args = {k: v for item in secret if isinstance(item, dict) for k, v in item.items()}
    assert args["contents_pillar"] == "monitoring:scrape:basic_auth:node_exporter:password"
    assert args["show_changes"] is False
    assert args["mode"] == "0640"


def test_bad_settings_stop_the_render_naming_the_key(modules):
    pillar = {
        "monitoring": {
            "alertmanager": {
                "receivers": {"ops": {"webhooks": [{"url": "https://u:p@hooks.example.com/"}]}},
            }
        }
    }
    rendered = modules.state.show_sls("monitoring", pillar=pillar)
    assert isinstance(rendered, list), rendered  # render errors come back as a list
    text = "\n".join(rendered)
    assert "monitoring:alertmanager:receivers:ops:webhooks:0:url = <secret" in text
    assert "must not contain credentials" in text
    assert "u:p@" not in text


def test_configurations_are_rendered_yaml_checked_before_they_go_live(modules):
    """prometheus.yml, alertmanager.yml and the site's rules reach the state as text from
    monitoring.render (the shared YAML renderer), each checked by promtool/amtool."""
    rendered = modules.state.show_sls("monitoring", pillar=EXAMPLE)
    assert isinstance(rendered, dict), rendered
    checks = {
        "monitoring-config-prometheus-file-managed": "/usr/bin/promtool check config",
        "monitoring-config-alertmanager-file-managed": "/usr/bin/amtool check-config",
        "monitoring-config-rules-site-file-managed": "/usr/bin/promtool check rules",
    }
    for state_id, check in checks.items():
        items = rendered[state_id]["file"]
        assert "managed" in items, state_id
        args = {k: v for item in items if isinstance(item, dict) for k, v in item.items()}
        assert args["check_cmd"] == check
        assert args["contents"].startswith("# Managed by Salt (opskit monitoring formula)")
        assert yaml.safe_load(args["contents"]), state_id
    prom = rendered["monitoring-config-prometheus-file-managed"]["file"]
    contents = next(
        item["contents"] for item in prom if isinstance(item, dict) and "contents" in item
    )
    assert "scrape-secret-from-the-cmdb" not in contents
    assert "password_file" in contents
