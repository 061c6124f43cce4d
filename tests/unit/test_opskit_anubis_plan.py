"""_utils/opskit_settings_anubis.py (the anubis formula's schema) and
_utils/opskit_anubis_plan.py (what the formula builds from validated settings), run
directly: instance defaults, rules across keys, the drop-in, the nginx parameters and
the listen-address checks against a host's sockets."""

from __future__ import annotations

import copy

import opskit_anubis_plan as plan
import opskit_formats
import opskit_schema
import opskit_settings_anubis as settings_schema
import pytest
import yaml

from tests.conftest import REPO

DEFAULTS = yaml.safe_load((REPO / "salt/anubis/parameters/defaults.yaml").read_text())["anubis"]
TLS = {"certificate": "/etc/ssl/certs/a.pem", "key": "/etc/ssl/private/a.key"}


def _instance(**extra):
    inst = {
        "bind": "127.0.0.1:8931",
        "metrics_bind": "0.0.0.0:9231",
        "upstream": "http://127.0.0.1:8080",
        "site": {"server_name": ["a.example.org"], "tls": dict(TLS)},
    }
    inst.update(extra)
    return inst


def _validate(instances, **top):
    data = copy.deepcopy(DEFAULTS)
    data["release"]["sha256"] = "ab" * 32
    data["instances"] = instances
    data.update(top)
    result = opskit_schema.validate(settings_schema.SCHEMA, data, root="anubis")
    problems = list(settings_schema.check(result))
    return result, problems


def _plan(result, live=None, pillar=None, cpu="x86_64"):
    return plan.plan(result, minion="web-01", cpu=cpu, pillar=pillar or {}, live=live or [])


def test_instance_defaults_merge_under_each_instance_and_lists_are_replaced():
    bots = [{"name": "only", "user_agent_regex": "x", "action": "DENY"}]
    result, problems = _validate({"a": _instance(policy={"bots": bots})})
    assert problems == []
    policy = result["instances"]["a"]["policy"]
    assert policy["bots"] == bots  # the instance's list replaces the default one
    assert policy["status_codes"] == {"CHALLENGE": 200, "DENY": 403}  # mappings merge
    assert result["instances"]["a"]["site"]["listen"] == 443


def test_the_deprecated_mine_name_is_ignored_with_a_warning_saying_what_replaced_it(caplog):
    with caplog.at_level("WARNING", logger="opskit_schema"):
        result, problems = _validate({"a": _instance()}, mine_name="anubis_targets")
    assert problems == []
    assert "mine_name" not in result
    (message,) = [r.getMessage() for r in caplog.records if r.name == "opskit_schema"]
    assert message == (
        f"anubis:mine_name is deprecated and ignored: {settings_schema.MINE_NAME_DEPRECATED}"
    )
    assert "opskit.targets" in message
    assert "anubis_targets" not in message  # the key path and the advice, not the value


def test_a_bad_instance_default_is_reported_under_instance_defaults():
    with pytest.raises(opskit_schema.SettingsError) as err:
        _validate(
            {"a": _instance()},
            instance_defaults={**DEFAULTS["instance_defaults"], "difficulty": "x\ny"},
        )
    assert [p[0] for p in err.value.problems] == ["anubis:instance_defaults:difficulty"]


def test_the_signing_key_cannot_be_an_instance_default():
    with pytest.raises(opskit_schema.SettingsError) as err:
        _validate(
            {"a": _instance()},
            instance_defaults={
                **DEFAULTS["instance_defaults"],
                "ed25519_private_key_hex": "ab" * 32,
            },
        )
    ((path, _, message),) = err.value.problems
    assert path == "anubis:instance_defaults:ed25519_private_key_hex"
    assert "unknown key" in message


def test_plan_never_carries_the_signing_key():
    key = "5f" * 32
    result, problems = _validate({"a": _instance(ed25519_private_key_hex=key)})
    assert problems == []
    planned = _plan(result)
    assert key not in repr(planned)
    assert planned["instances"][0]["key_pillar_path"] == (
        "anubis:instances:a:ed25519_private_key_hex"
    )


def test_environment_by_mode():
    result, _ = _validate(
        {
            "side": _instance(),
            "prox": _instance(
                mode="proxy",
                bind="127.0.0.1:8932",
                metrics_bind="0.0.0.0:9232",
                site={"server_name": ["b.example.org"], "listen": 8443, "tls": TLS},
            ),
        }
    )
    by_name = {inst["name"]: inst for inst in _plan(result)["instances"]}
    assert by_name["side"]["env"]["TARGET"] == " "
    assert by_name["side"]["env"]["XFF_STRIP_PRIVATE"] == "true"
    assert by_name["prox"]["env"]["TARGET"] == "http://127.0.0.1:8080"
    assert by_name["prox"]["env"]["XFF_STRIP_PRIVATE"] == "false"
    assert by_name["prox"]["env"]["REDIRECT_DOMAINS"] == "b.example.org:8443"


def test_dropin_reads_back_as_systemd_reads_it():
    result, _ = _validate({"a": _instance()})
    result["release"]["method"] = "tarball"
    text = _plan(result)["instances"][0]["dropin"]
    assert "ExecStart=\nExecStart=/opt/anubis/anubis-1.27.0-linux-amd64/bin/anubis\n" in text
    assert opskit_formats.parse_systemd_environment_lines(text) == {
        "ED25519_PRIVATE_KEY_HEX_FILE": "%d/ed25519-private-key"
    }
    assert "LoadCredential=ed25519-private-key:/etc/anubis/keys/a.key\n" in text


def test_nginx_values_are_quoted_one_parameter_each():
    """The schema already keeps such values out; the plan quotes regardless."""
    result, _ = _validate({"a": _instance()})
    inst = result["instances"]["a"]
    inst["site"]["tls"]["certificate"] = '/etc/ssl/a b;"c".pem'
    site = plan.nginx_site("a", inst, "http://127.0.0.1:8931")
    assert site["certificate"] == '"/etc/ssl/a b;\\"c\\".pem"'
    assert site["server_name"] == "a.example.org"
    inst["upstream"] = "http://$host"
    with pytest.raises(opskit_formats.UnsafeValue, match="anubis:instances:a:upstream"):
        plan.nginx_site("a", inst, "http://127.0.0.1:8931")


def test_live_sockets_of_others_are_refused_ours_and_nginxs_are_not():
    result, _ = _validate({"a": _instance()})
    live = [
        {"address": "127.0.0.1", "port": 8931, "pid": 10, "unit": "anubis@a.service"},
        {"address": "0.0.0.0", "port": 443, "pid": 11, "unit": "nginx.service"},  # noqa: S104
        {"address": "::", "port": 9231, "pid": 12, "unit": None, "command": "python3"},
    ]
    with pytest.raises(opskit_schema.SettingsError) as err:
        _plan(result, live=live)
    ((path, shown, message),) = err.value.problems
    assert (path, shown) == ("anubis:instances:a:metrics_bind", "'0.0.0.0:9231'")
    assert "already in use on this host by process python3 (listening on :9231, pid 12)" in (
        message
    )


def test_an_unknown_cpu_has_no_package():
    result, _ = _validate({"a": _instance()})
    with pytest.raises(opskit_schema.SettingsError, match="anubis:release:arch = 'sparc64'"):
        _plan(result, cpu="sparc64")


def test_redirect_domains_from_names_go_would_not_parse_are_refused():
    site = {"server_name": ["1st.example.org"], "listen": 8443, "tls": TLS}
    _, problems = _validate({"a": _instance(site=site)})
    assert [(p[0], p[1]) for p in problems] == [
        ("anubis:instances:a:redirect_domains", "1st.example.org:8443")
    ]
    assert "url.Parse" in problems[0][2]
